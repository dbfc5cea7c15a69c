/* The fake CUDA itself (tests/gpu/fake_cuda) against hand-computed values of
 * the libraries' documented formulas, so that test_gpu_fake does not rest on
 * a fake that shares a misreading with the backend: cuBLAS transposes and
 * beta = 0 over NaNs, cuDNN's LRN alpha/n and window, convolution vs
 * cross-correlation, the pooling floor rule, NCCL's sums, and the misuse
 * the fake must refuse. */
#include "tests/test.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>

#include <stdlib.h>

/* n floats of device memory holding host values v. */
static float *dev(const float *v, size_t n) {
    void *p = NULL;
    CHECK(cudaMalloc(&p, n * sizeof(float)) == cudaSuccess);
    if (v) CHECK(cudaMemcpy(p, v, n * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
    return p;
}

static void host(float *dst, const float *src, size_t n) {
    CHECK(cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
}

static void test_sgemm_is_column_major_with_transposes(void) {
    cublasHandle_t h;
    CHECK(cudaSetDevice(0) == cudaSuccess && cublasCreate(&h) == CUBLAS_STATUS_SUCCESS);
    /* A column-major 2x3 [1 3 5; 2 4 6], B 3x1 [1 1 1]': A B = [9; 12]. */
    const float a[6] = {1, 2, 3, 4, 5, 6}, b[3] = {1, 1, 1}, nan2[2] = {NAN, NAN};
    float *A = dev(a, 6), *B = dev(b, 3), *C = dev(nan2, 2), c[2];
    const float one = 1, zero = 0, two = 2;
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 3, &one, A, 2, B, 3, &zero, C, 2) ==
          CUBLAS_STATUS_SUCCESS);
    host(c, C, 2);
    CHECK(c[0] == 9 && c[1] == 12); /* beta 0: the NaNs did not survive */
    /* A' (3x2) times [1 1]' = [3; 7; 11], plus 2 x the old C = [9 12 ...]. */
    float *D = dev((const float[]){1, 1, 1}, 3), d[3];
    CHECK(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, 3, 1, 2, &one, A, 2, B, 2, &two, D, 3) ==
          CUBLAS_STATUS_SUCCESS);
    host(d, D, 3);
    CHECK(d[0] == 5 && d[1] == 9 && d[2] == 13);
    /* lda below the rows of A, and a B too small for its access. */
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 3, &one, A, 1, B, 3, &zero, C, 2) ==
          CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 2, 3, &one, A, 2, B, 3, &zero, D, 2) ==
          CUBLAS_STATUS_EXECUTION_FAILED);
    /* A handle of device 0 while device 1 is current. */
    CHECK(cudaSetDevice(1) == cudaSuccess);
    CHECK(cublasSaxpy(h, 2, &one, C, 1, C, 1) != CUBLAS_STATUS_SUCCESS);
    CHECK(cudaSetDevice(0) == cudaSuccess);
    cudaFree(A), cudaFree(B), cudaFree(C), cudaFree(D);
    cublasDestroy(h);
}

static void test_memory_misuse_is_refused(void) {
    float x[4] = {0}, *d = dev(NULL, 4);
    CHECK(cudaMemcpy(d, x, sizeof x, cudaMemcpyDeviceToHost) != cudaSuccess);     /* backwards */
    CHECK(cudaMemcpy(d, x, 2 * sizeof x, cudaMemcpyHostToDevice) != cudaSuccess); /* too long */
    CHECK(cudaFree(x) != cudaSuccess);
    CHECK(cudaFree(d) == cudaSuccess);
    CHECK(cudaFree(d) != cudaSuccess); /* twice */
    CHECK(cudaSetDevice(99) != cudaSuccess);
}

static void test_lrn_divides_alpha_by_n(void) {
    cudnnHandle_t h;
    cudnnTensorDescriptor_t t;
    cudnnLRNDescriptor_t l;
    CHECK(cudnnCreate(&h) == CUDNN_STATUS_SUCCESS);
    cudnnCreateTensorDescriptor(&t);
    cudnnCreateLRNDescriptor(&l);
    CHECK(cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 3, 1, 1) ==
          CUDNN_STATUS_SUCCESS);
    /* n 3, alpha 3 (alpha/n = 1), beta 1, k 1 on x = 1, 2, 3:
     * y = x / (1 + sum of x^2 over the neighbours). */
    CHECK(cudnnSetLRNDescriptor(l, 3, 3.0, 1.0, 1.0) == CUDNN_STATUS_SUCCESS);
    float *x = dev((const float[]){1, 2, 3}, 3), *y = dev(NULL, 3), r[3];
    const float one = 1, zero = 0;
    CHECK(cudnnLRNCrossChannelForward(h, l, CUDNN_LRN_CROSS_CHANNEL_DIM1, &one, t, x, &zero, t,
                                      y) == CUDNN_STATUS_SUCCESS);
    host(r, y, 3);
    CHECK_NEAR(r[0], 1.0 / 6, 1e-6);
    CHECK_NEAR(r[1], 2.0 / 15, 1e-6);
    CHECK_NEAR(r[2], 3.0 / 14, 1e-6);
    CHECK(cudnnSetLRNDescriptor(l, 0, 1.0, 1.0, 1.0) == CUDNN_STATUS_BAD_PARAM);
    cudaFree(x), cudaFree(y);
    cudnnDestroyLRNDescriptor(l);
    cudnnDestroyTensorDescriptor(t);
    cudnnDestroy(h);
}

static void test_convolution_mode_flips_the_filter(void) {
    cudnnHandle_t h;
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    cudnnCreate(&h);
    cudnnCreateTensorDescriptor(&xd);
    cudnnCreateTensorDescriptor(&yd);
    cudnnCreateFilterDescriptor(&wd);
    cudnnCreateConvolutionDescriptor(&cd);
    cudnnSetTensor4dDescriptor(xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 3, 3);
    cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 2, 2);
    cudnnSetFilter4dDescriptor(wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 1, 1, 2, 2);
    float *x = dev((const float[]){1, 2, 3, 4, 5, 6, 7, 8, 9}, 9),
          *w = dev((const float[]){1, 0, 0, 0}, 4), *y = dev(NULL, 4), r[4];
    const float one = 1, zero = 0;
    cudnnConvolutionMode_t modes[2] = {CUDNN_CROSS_CORRELATION, CUDNN_CONVOLUTION};
    const float want[2][4] = {{1, 2, 4, 5}, {5, 6, 8, 9}}; /* top-left tap, then bottom-right */
    for (int m = 0; m < 2; m++) {
        CHECK(cudnnSetConvolution2dDescriptor(cd, 0, 0, 1, 1, 1, 1, modes[m], CUDNN_DATA_FLOAT) ==
              CUDNN_STATUS_SUCCESS);
        CHECK(cudnnConvolutionForward(h, &one, xd, x, wd, w, cd,
                                      CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &zero, yd,
                                      y) == CUDNN_STATUS_SUCCESS);
        host(r, y, 4);
        CHECK_MSG(!memcmp(r, want[m], sizeof r), "mode %d: %g %g %g %g", m, r[0], r[1], r[2], r[3]);
    }
    /* GEMM needs a workspace: none given is refused. */
    CHECK(cudnnConvolutionForward(h, &one, xd, x, wd, w, cd, CUDNN_CONVOLUTION_FWD_ALGO_GEMM, NULL,
                                  0, &zero, yd, y) == CUDNN_STATUS_BAD_PARAM);
    /* An output of the wrong size is refused. */
    cudnnSetTensor4dDescriptor(yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 3, 3);
    CHECK(cudnnConvolutionForward(h, &one, xd, x, wd, w, cd,
                                  CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &zero, yd,
                                  y) == CUDNN_STATUS_BAD_PARAM);
    cudaFree(x), cudaFree(w), cudaFree(y);
    cudnnDestroyTensorDescriptor(xd);
    cudnnDestroyTensorDescriptor(yd);
    cudnnDestroyFilterDescriptor(wd);
    cudnnDestroyConvolutionDescriptor(cd);
    cudnnDestroy(h);
}

static void test_pooling_uses_the_floor_rule(void) {
    cudnnPoolingDescriptor_t p;
    cudnnTensorDescriptor_t t;
    cudnnCreatePoolingDescriptor(&p);
    cudnnCreateTensorDescriptor(&t);
    cudnnSetPooling2dDescriptor(p, CUDNN_POOLING_MAX_DETERMINISTIC, CUDNN_NOT_PROPAGATE_NAN, 3, 3,
                                0, 0, 2, 2);
    cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 2, 8, 14, 14);
    int n, c, hh, ww;
    CHECK(cudnnGetPooling2dForwardOutputDim(p, t, &n, &c, &hh, &ww) == CUDNN_STATUS_SUCCESS);
    CHECK(n == 2 && c == 8 && hh == 6 && ww == 6);
    cudnnDestroyPoolingDescriptor(p);
    cudnnDestroyTensorDescriptor(t);
}

static void test_nccl_sums_in_groups_and_refuses_repeated_devices(void) {
    ncclComm_t comm[2];
    int same[2] = {1, 1}, both[2] = {0, 1};
    CHECK(ncclCommInitAll(comm, 2, same) == ncclInvalidUsage);
    CHECK(ncclCommInitAll(comm, 2, both) == ncclSuccess);
    float *buf[2];
    for (int d = 0; d < 2; d++) {
        cudaSetDevice(d);
        buf[d] = dev((const float[]){1.0f + d, 10.0f * (d + 1)}, 2);
    }
    cudaSetDevice(0);
    CHECK(ncclAllReduce(buf[0], buf[0], 2, ncclFloat, ncclSum, comm[0], 0) == ncclInvalidUsage);
    CHECK(ncclGroupStart() == ncclSuccess);
    for (int d = 0; d < 2; d++)
        CHECK(ncclAllReduce(buf[d], buf[d], 2, ncclFloat, ncclSum, comm[d], 0) == ncclSuccess);
    CHECK(ncclGroupEnd() == ncclSuccess);
    for (int d = 0; d < 2; d++) {
        float r[2];
        host(r, buf[d], 2);
        CHECK(r[0] == 3 && r[1] == 30);
        cudaFree(buf[d]);
    }
    /* A buffer on the wrong device. */
    float *wrong = dev(NULL, 2);
    CHECK(ncclAllReduce(wrong, wrong, 2, ncclFloat, ncclSum, comm[1], 0) == ncclInvalidArgument);
    cudaFree(wrong);
    ncclCommDestroy(comm[0]);
    ncclCommDestroy(comm[1]);
}

int main(int argc, char **argv) {
    static const test_case_t tests[] = {
        {"sgemm_is_column_major_with_transposes", test_sgemm_is_column_major_with_transposes},
        {"memory_misuse_is_refused", test_memory_misuse_is_refused},
        {"lrn_divides_alpha_by_n", test_lrn_divides_alpha_by_n},
        {"convolution_mode_flips_the_filter", test_convolution_mode_flips_the_filter},
        {"pooling_uses_the_floor_rule", test_pooling_uses_the_floor_rule},
        {"nccl_sums_in_groups_and_refuses_repeated_devices",
         test_nccl_sums_in_groups_and_refuses_repeated_devices},
    };
    return test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
}
