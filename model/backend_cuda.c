/* The CUDA backend: cuDNN 9 (its legacy API) for convolution (grouped, via
 * cudnnSetConvolutionGroupCount), LRN, max pooling, ReLU and softmax;
 * cuBLAS for the fully connected layers and sums; our own kernels
 * (cuda_kernels.cu) only for dropout masks, the SGD update, the loss terms,
 * and the border copies that give cuDNN's floor-only pooling the ceil mode.
 *
 * Buffers are device memory and stay there between layers; the net copies
 * to and from the host only at the edges (input, logits, parameters for
 * files). Everything runs on the device's legacy default stream, so a
 * blocking cudaMemcpy after a layer sees its results.
 *
 * Numerics: strict fp32 by default (cuDNN CUDNN_FMA_MATH, cuBLAS default
 * math: no TF32). IMGRET_CUDA_TF32=1 in the environment allows TF32 tensor
 * cores in both (named as such wherever a figure is reported).
 *
 * Convolution algorithms: IMGRET_CUDNN_ALGO=find (default: cuDNN Find times
 * each on first use of a shape) or heuristic; IMGRET_CUDNN_DETERMINISTIC=1
 * keeps to algorithms that give the same bits run after run (then training
 * resumes bit for bit, as on the CPU); IMGRET_CUDNN_LOG=1 prints each choice.
 *
 * Every CUDA, cuDNN, cuBLAS and NCCL status is checked; an error names the
 * device, the call and the library's message. */
#include "model/backend.h"
#include "model/cuda_kernels.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKSPACE_LIMIT ((size_t)1 << 30) /* cuDNN scratch an algorithm may use */
#define CONV_PLANS 64                     /* convolution shapes kept */

/* The three computations of a convolution, each with its own algorithm. */
typedef enum { CONV_FWD, CONV_DATA, CONV_FILTER, CONV_DIRS } conv_dir_t;

/* What one convolution shape needs, made once and kept: its descriptors and,
 * per direction, the algorithm chosen (have 0: not chosen yet), its
 * workspace bytes and the math type it runs with (TF32 allowed: the chosen
 * entry's; strict fp32: always CUDNN_FMA_MATH). algo holds the direction's
 * cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t. The net calls with a
 * handful of shapes (five layers times the batch sizes in use), so the
 * backend keeps a small table and reuses its oldest slot when full. */
typedef struct conv_plan {
    model_conv_param_t p;
    model_shape_t in;
    cudnnTensorDescriptor_t x, y, b;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    int have[CONV_DIRS], algo[CONV_DIRS];
    size_t bytes[CONV_DIRS];
    cudnnMathType_t math[CONV_DIRS];
} conv_plan_t;

static void conv_plan_free(conv_plan_t *d) {
    if (d->x) cudnnDestroyTensorDescriptor(d->x);
    if (d->y) cudnnDestroyTensorDescriptor(d->y);
    if (d->b) cudnnDestroyTensorDescriptor(d->b);
    if (d->w) cudnnDestroyFilterDescriptor(d->w);
    if (d->conv) cudnnDestroyConvolutionDescriptor(d->conv);
    memset(d, 0, sizeof *d);
}

typedef struct cuda_backend {
    model_backend_t base;
    int device;
    int tf32;
    int search;        /* choose convolution algorithms by timing them (cuDNN Find) */
    int log;           /* IMGRET_CUDNN_LOG=1: each choice on stderr */
    int deterministic; /* IMGRET_CUDNN_DETERMINISTIC=1: only run-to-run reproducible algorithms */
    cudnnHandle_t dnn;
    cublasHandle_t blas;
    /* Descriptors of the ops other than convolution, set on each call. */
    cudnnTensorDescriptor_t t1, t2;
    cudnnActivationDescriptor_t relu;
    cudnnLRNDescriptor_t lrn;
    cudnnPoolingDescriptor_t pool;
    conv_plan_t plans[CONV_PLANS];
    int n_plans, next_evict;
    void *work; /* cuDNN workspace */
    size_t work_bytes;
    float *ones; /* 1s: bias sums through cuBLAS */
    size_t ones_count;
    float *pool_x, *pool_dx; /* ceil pooling: input and gradient with the added border */
    size_t pool_count;
    int *labels;
    float *terms;
    size_t labels_count;
    int failed;        /* an op without a status failed: */
    util_err_t sticky; /* its message, returned by the next op with one */
} cuda_backend_t;

static cuda_backend_t *cb(model_backend_t *be) {
    return (cuda_backend_t *)be;
}

static const char *blas_str(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED:
        return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED:
        return "allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE:
        return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH:
        return "architecture mismatch";
    case CUBLAS_STATUS_MAPPING_ERROR:
        return "mapping error";
    case CUBLAS_STATUS_EXECUTION_FAILED:
        return "execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR:
        return "internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED:
        return "not supported";
    default:
        return "error";
    }
}

/* The checks jump to `fail` of the enclosing function with err filled. */
#define CU(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            util_fail(err, "gpu:%d: %s: %s", B->device, #call, cudaGetErrorString(e_));            \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)
#define DNN(call)                                                                                  \
    do {                                                                                           \
        cudnnStatus_t s_ = (call);                                                                 \
        if (s_ != CUDNN_STATUS_SUCCESS) {                                                          \
            util_fail(err, "gpu:%d: %s: %s", B->device, #call, cudnnGetErrorString(s_));           \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)
#define BLAS(call)                                                                                 \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                         \
            util_fail(err, "gpu:%d: %s: cuBLAS %s", B->device, #call, blas_str(s_));               \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)
#define KERNEL(call)                                                                               \
    do {                                                                                           \
        int k_ = (call);                                                                           \
        if (k_) {                                                                                  \
            util_fail(err, "gpu:%d: %s: %s", B->device, #call,                                     \
                      cudaGetErrorString((cudaError_t)k_));                                        \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)
/* Entry of every op with a status: an earlier silent failure, then the device. */
#define ENTER()                                                                                    \
    do {                                                                                           \
        if (B->failed) {                                                                           \
            util_fail(err, "%s", B->sticky.msg);                                                   \
            goto fail;                                                                             \
        }                                                                                          \
        CU(cudaSetDevice(B->device));                                                              \
    } while (0)

static const float ONE = 1.0f, ZERO = 0.0f;

/* Grows a device buffer of `bytes` (contents not kept). */
static int grow(cuda_backend_t *B, void **buf, size_t *have, size_t want, util_err_t *err) {
    if (*have >= want) return 0;
    void *old = *buf;
    *buf = NULL;
    *have = 0;
    if (old) CU(cudaFree(old));
    CU(cudaMalloc(buf, want));
    *have = want;
    return 0;
fail:
    *buf = NULL;
    return -1;
}

static int ensure_ones(cuda_backend_t *B, size_t count, util_err_t *err) {
    if (B->ones_count >= count) return 0;
    size_t bytes = 0;
    float *host = malloc(count * sizeof(float));
    if (!host) return util_fail(err, "gpu:%d: out of host memory", B->device);
    for (size_t i = 0; i < count; i++)
        host[i] = 1.0f;
    if (grow(B, (void **)&B->ones, &bytes, count * sizeof(float), err)) {
        B->ones_count = 0;
        free(host);
        return -1;
    }
    CU(cudaMemcpy(B->ones, host, count * sizeof(float), cudaMemcpyHostToDevice));
    B->ones_count = count;
    free(host);
    return 0;
fail:
    free(host);
    B->ones_count = 0;
    return -1;
}

/* Remembers the first failure of an op that returns nothing. */
static void remember_failure(cuda_backend_t *B, const util_err_t *err) {
    if (!B->failed) {
        B->failed = 1;
        B->sticky = *err;
    }
}

/* --------------------------------------------------------------- memory */

static void cuda_destroy(model_backend_t *be) {
    if (!be) return;
    cuda_backend_t *B = cb(be);
    cudaSetDevice(B->device);
    cudaFree(B->work);
    cudaFree(B->ones);
    cudaFree(B->pool_x);
    cudaFree(B->pool_dx);
    cudaFree(B->labels);
    cudaFree(B->terms);
    for (int i = 0; i < B->n_plans; i++)
        conv_plan_free(&B->plans[i]);
    if (B->t1) cudnnDestroyTensorDescriptor(B->t1);
    if (B->t2) cudnnDestroyTensorDescriptor(B->t2);
    if (B->relu) cudnnDestroyActivationDescriptor(B->relu);
    if (B->lrn) cudnnDestroyLRNDescriptor(B->lrn);
    if (B->pool) cudnnDestroyPoolingDescriptor(B->pool);
    if (B->dnn) cudnnDestroy(B->dnn);
    if (B->blas) cublasDestroy(B->blas);
    free(B);
}

static void *cuda_alloc(model_backend_t *be, size_t count) {
    cuda_backend_t *B = cb(be);
    void *p = NULL;
    if (count == 0 || cudaSetDevice(B->device) != cudaSuccess) return NULL;
    if (cudaMalloc(&p, count * sizeof(float)) != cudaSuccess) return NULL;
    if (cudaMemset(p, 0, count * sizeof(float)) != cudaSuccess) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void cuda_release(model_backend_t *be, void *p) {
    cuda_backend_t *B = cb(be);
    util_err_t e = {{0}}, *err = &e;
    if (!p) return;
    CU(cudaSetDevice(B->device));
    CU(cudaFree(p));
    return;
fail:
    remember_failure(B, err); /* reported by the next op with a status */
}

static int cuda_upload(model_backend_t *be, float *dst, const float *src, size_t count) {
    cuda_backend_t *B = cb(be);
    util_err_t *err = &B->sticky;
    if (B->failed) return -1;
    CU(cudaSetDevice(B->device));
    CU(cudaMemcpy(dst, src, count * sizeof(float), cudaMemcpyHostToDevice));
    return 0;
fail:
    B->failed = 1;
    return -1;
}

static int cuda_download(model_backend_t *be, float *dst, const float *src, size_t count) {
    cuda_backend_t *B = cb(be);
    util_err_t *err = &B->sticky;
    if (B->failed) return -1;
    CU(cudaSetDevice(B->device));
    CU(cudaMemcpy(dst, src, count * sizeof(float), cudaMemcpyDeviceToHost));
    return 0;
fail:
    B->failed = 1;
    return -1;
}

static void cuda_copy(model_backend_t *be, float *dst, const float *src, size_t count) {
    cuda_backend_t *B = cb(be);
    util_err_t e = {{0}}, *err = &e;
    if (B->failed) return;
    CU(cudaSetDevice(B->device));
    CU(cudaMemcpy(dst, src, count * sizeof(float), cudaMemcpyDeviceToDevice));
    return;
fail:
    remember_failure(B, err);
}

/* A peer copy (through the host inside the driver when the two GPUs have no
 * direct path); on the legacy default stream it is ordered after the work
 * already given to both devices and before the work given them next. */
static int cuda_copy_between(model_backend_t *dst_be, float *dst, model_backend_t *src_be,
                             const float *src, size_t count) {
    cuda_backend_t *B = cb(dst_be), *S = cb(src_be);
    util_err_t *err = &B->sticky;
    if (B->failed) return -1;
    CU(cudaMemcpyPeer(dst, B->device, src, S->device, count * sizeof(float)));
    return 0;
fail:
    B->failed = 1;
    return -1;
}

static int cuda_sync(model_backend_t *be) {
    cuda_backend_t *B = cb(be);
    util_err_t *err = &B->sticky;
    if (B->failed) return -1;
    CU(cudaSetDevice(B->device));
    CU(cudaDeviceSynchronize());
    return 0;
fail:
    B->failed = 1;
    return -1;
}

static void cuda_accumulate(model_backend_t *be, size_t count, const float *src, float *dst) {
    cuda_backend_t *B = cb(be);
    util_err_t e = {{0}}, *err = &e;
    if (B->failed) return;
    CU(cudaSetDevice(B->device));
    BLAS(cublasSaxpy(B->blas, (int)count, &ONE, src, 1, dst, 1));
    return;
fail:
    remember_failure(B, err);
}

/* ---------------------------------------------------------- convolution */

static int conv_plan_make(cuda_backend_t *B, const model_conv_param_t *p, model_shape_t in,
                          conv_plan_t *d, util_err_t *err) {
    model_shape_t out;
    memset(d, 0, sizeof *d);
    if (model_conv_shape(p, in, &out, err)) return -1;
    d->p = *p;
    d->in = in;
    DNN(cudnnCreateTensorDescriptor(&d->x));
    DNN(cudnnCreateTensorDescriptor(&d->y));
    DNN(cudnnCreateTensorDescriptor(&d->b));
    DNN(cudnnCreateFilterDescriptor(&d->w));
    DNN(cudnnCreateConvolutionDescriptor(&d->conv));
    DNN(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, in.n, in.c, in.h,
                                   in.w));
    DNN(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, out.n, out.c, out.h,
                                   out.w));
    DNN(cudnnSetTensor4dDescriptor(d->b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, out.c, 1, 1));
    DNN(cudnnSetFilter4dDescriptor(d->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, p->out_c,
                                   p->in_c / p->groups, p->kernel, p->kernel));
    DNN(cudnnSetConvolution2dDescriptor(d->conv, p->pad, p->pad, p->stride, p->stride, 1, 1,
                                        CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    DNN(cudnnSetConvolutionGroupCount(d->conv, p->groups));
    DNN(cudnnSetConvolutionMathType(d->conv, B->tf32 ? CUDNN_DEFAULT_MATH : CUDNN_FMA_MATH));
    int n, c, h, w;
    DNN(cudnnGetConvolution2dForwardOutputDim(d->conv, d->x, d->w, &n, &c, &h, &w));
    if (n != out.n || c != out.c || h != out.h || w != out.w) {
        util_fail(err, "gpu:%d: cuDNN gives a %dx%dx%dx%d output, the layer expects %dx%dx%dx%d",
                  B->device, n, c, h, w, out.n, out.c, out.h, out.w);
        goto fail;
    }
    return 0;
fail:
    conv_plan_free(d);
    return -1;
}

static int same_conv(const conv_plan_t *d, const model_conv_param_t *p, model_shape_t in) {
    return d->p.in_c == p->in_c && d->p.out_c == p->out_c && d->p.kernel == p->kernel &&
           d->p.stride == p->stride && d->p.pad == p->pad && d->p.groups == p->groups &&
           d->in.n == in.n && d->in.c == in.c && d->in.h == in.h && d->in.w == in.w;
}

/* The plan of this shape, made on first use. */
static conv_plan_t *conv_plan(cuda_backend_t *B, const model_conv_param_t *p, model_shape_t in,
                              util_err_t *err) {
    for (int i = 0; i < B->n_plans; i++)
        if (same_conv(&B->plans[i], p, in)) return &B->plans[i];
    int slot = B->n_plans;
    if (slot == CONV_PLANS) { /* full: the oldest slot is made again */
        slot = B->next_evict;
        B->next_evict = (slot + 1) % CONV_PLANS;
        conv_plan_free(&B->plans[slot]);
    }
    /* A failed make leaves the slot zeroed (batch 0), which matches no shape. */
    if (conv_plan_make(B, p, in, &B->plans[slot], err)) return NULL;
    if (slot == B->n_plans) B->n_plans++;
    return &B->plans[slot];
}

/* Whether an algorithm's entry may be used: it ran, fits the workspace
 * limit, and uses tensor cores only when TF32 is allowed. */
#define ALGO_OK(e)                                                                                 \
    ((e).status == CUDNN_STATUS_SUCCESS && (e).memory <= WORKSPACE_LIMIT &&                        \
     (B->tf32 || (e).mathType == CUDNN_DEFAULT_MATH || (e).mathType == CUDNN_FMA_MATH) &&          \
     (!B->deterministic || (e).determinism == CUDNN_DETERMINISTIC))

/* The first usable entry of perf[0..got) (cuDNN lists them fastest first). */
#define PICK_ALGO(perf, got, chosen, bytes, ms, math)                                              \
    do {                                                                                           \
        int found_ = 0;                                                                            \
        for (int k_ = 0; k_ < (got) && !found_; k_++) {                                            \
            if (!ALGO_OK((perf)[k_])) continue;                                                    \
            (chosen) = (perf)[k_].algo;                                                            \
            (bytes) = (perf)[k_].memory;                                                           \
            (ms) = (perf)[k_].time;                                                                \
            (math) = (perf)[k_].mathType;                                                          \
            found_ = 1;                                                                            \
        }                                                                                          \
        if (!found_) {                                                                             \
            util_fail(err, "gpu:%d: cuDNN offers no convolution algorithm for this layer",         \
                      B->device);                                                                  \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

/* The largest workspace any usable algorithm of perf[0..got) asks for. */
#define MOST_MEMORY(perf, got, most)                                                               \
    do {                                                                                           \
        for (int k_ = 0; k_ < (got); k_++)                                                         \
            if (ALGO_OK((perf)[k_]) && (perf)[k_].memory > (most)) (most) = (perf)[k_].memory;     \
    } while (0)

/* Chooses the plan's algorithm for one direction. cuDNN's heuristics list
 * the algorithms with the workspace each needs; then, unless
 * IMGRET_CUDNN_ALGO=heuristic, cuDNN Find times every one on the real
 * buffers (in1, in2 the inputs; out the output, which it overwrites) with a
 * scratch as large as the largest of those needs (without room for it the
 * heuristics' order stands), and the fastest usable one is kept. */
static int conv_choose(cuda_backend_t *B, conv_plan_t *d, conv_dir_t dir, const float *in1,
                       const float *in2, float *out, util_err_t *err) {
    cudnnConvolutionFwdAlgoPerf_t fwd[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    cudnnConvolutionBwdDataAlgoPerf_t data[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
    cudnnConvolutionBwdFilterAlgoPerf_t filter[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    int got = 0;
    size_t most = 0;
    void *space = NULL;
    const char *call;
    cudnnStatus_t s;
    int algo = 0, searched = 0;
    size_t bytes = 0;
    float ms = -1.0f;
    /* Search from the base math type (another direction's choice may have
     * set the descriptor to its own). */
    if (B->tf32) DNN(cudnnSetConvolutionMathType(d->conv, CUDNN_DEFAULT_MATH));
    switch (dir) {
    case CONV_FWD:
        call = "cudnnGetConvolutionForwardAlgorithm_v7";
        s = cudnnGetConvolutionForwardAlgorithm_v7(B->dnn, d->x, d->w, d->conv, d->y,
                                                   CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, fwd);
        if (s == CUDNN_STATUS_SUCCESS) MOST_MEMORY(fwd, got, most);
        break;
    case CONV_DATA:
        call = "cudnnGetConvolutionBackwardDataAlgorithm_v7";
        s = cudnnGetConvolutionBackwardDataAlgorithm_v7(
            B->dnn, d->w, d->y, d->conv, d->x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, data);
        if (s == CUDNN_STATUS_SUCCESS) MOST_MEMORY(data, got, most);
        break;
    default:
        call = "cudnnGetConvolutionBackwardFilterAlgorithm_v7";
        s = cudnnGetConvolutionBackwardFilterAlgorithm_v7(B->dnn, d->x, d->y, d->conv, d->w,
                                                          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                                                          &got, filter);
        if (s == CUDNN_STATUS_SUCCESS) MOST_MEMORY(filter, got, most);
        break;
    }
    if (s == CUDNN_STATUS_SUCCESS && B->search && most > 0 &&
        cudaMalloc(&space, most) != cudaSuccess) {
        cudaGetLastError(); /* no room to search: not an error of the next launch */
        space = NULL;
    }
    if (s == CUDNN_STATUS_SUCCESS && B->search && (space || most == 0)) {
        switch (dir) {
        case CONV_FWD:
            call = "cudnnFindConvolutionForwardAlgorithmEx";
            s = cudnnFindConvolutionForwardAlgorithmEx(B->dnn, d->x, in1, d->w, in2, d->conv, d->y,
                                                       out, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got,
                                                       fwd, space, most);
            break;
        case CONV_DATA:
            call = "cudnnFindConvolutionBackwardDataAlgorithmEx";
            s = cudnnFindConvolutionBackwardDataAlgorithmEx(
                B->dnn, d->w, in1, d->y, in2, d->conv, d->x, out,
                CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, data, space, most);
            break;
        default:
            call = "cudnnFindConvolutionBackwardFilterAlgorithmEx";
            s = cudnnFindConvolutionBackwardFilterAlgorithmEx(
                B->dnn, d->x, in1, d->y, in2, d->conv, d->w, out,
                CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, filter, space, most);
            break;
        }
        searched = 1;
        cudaError_t freed = cudaFree(space);
        if (s == CUDNN_STATUS_SUCCESS && freed != cudaSuccess) {
            util_fail(err, "gpu:%d: cudaFree of the search scratch: %s", B->device,
                      cudaGetErrorString(freed));
            goto fail;
        }
    }
    if (s != CUDNN_STATUS_SUCCESS) {
        util_fail(err, "gpu:%d: %s: %s", B->device, call, cudnnGetErrorString(s));
        goto fail;
    }
    /* The chosen entry, then the workspace its algorithm needs with the
     * math type it will run with (an entry's memory is for its own math
     * type; cuDNN runs with the descriptor's). */
    cudnnMathType_t math = CUDNN_FMA_MATH;
    switch (dir) {
    case CONV_FWD:
        PICK_ALGO(fwd, got, algo, bytes, ms, math);
        break;
    case CONV_DATA:
        PICK_ALGO(data, got, algo, bytes, ms, math);
        break;
    default:
        PICK_ALGO(filter, got, algo, bytes, ms, math);
        break;
    }
    if (!B->tf32) math = CUDNN_FMA_MATH;
    DNN(cudnnSetConvolutionMathType(d->conv, math));
    size_t need = 0;
    switch (dir) {
    case CONV_FWD:
        DNN(cudnnGetConvolutionForwardWorkspaceSize(B->dnn, d->x, d->w, d->conv, d->y,
                                                    (cudnnConvolutionFwdAlgo_t)algo, &need));
        break;
    case CONV_DATA:
        DNN(cudnnGetConvolutionBackwardDataWorkspaceSize(
            B->dnn, d->w, d->y, d->conv, d->x, (cudnnConvolutionBwdDataAlgo_t)algo, &need));
        break;
    default:
        DNN(cudnnGetConvolutionBackwardFilterWorkspaceSize(
            B->dnn, d->x, d->y, d->conv, d->w, (cudnnConvolutionBwdFilterAlgo_t)algo, &need));
        break;
    }
    if (need > bytes) bytes = need;
    d->algo[dir] = algo;
    d->bytes[dir] = bytes;
    d->math[dir] = math;
    d->have[dir] = 1;
    if (B->log) {
        static const char *const dirs[3] = {"forward", "backward data", "backward filter"};
        const model_conv_param_t *p = &d->p;
        char timed[48] = "";
        if (searched) snprintf(timed, sizeof timed, "%.3f ms, ", (double)ms);
        fprintf(stderr,
                "gpu:%d: conv %d->%d %dx%d/%d groups %d on %dx%dx%dx%d: %s algorithm %d by %s "
                "(%sworkspace %zu bytes)\n",
                B->device, p->in_c, p->out_c, p->kernel, p->kernel, p->stride, p->groups, d->in.n,
                d->in.c, d->in.h, d->in.w, dirs[dir], algo, searched ? "Find" : "heuristics", timed,
                bytes);
    }
    return 0;
fail:
    return -1;
}

/* Direction dir of plan d ready to run: its algorithm chosen (on first
 * use; in1, in2, out as for conv_choose), the workspace grown to it, and
 * with TF32 its math type on the descriptor. */
static int conv_ready(cuda_backend_t *B, conv_plan_t *d, conv_dir_t dir, const float *in1,
                      const float *in2, float *out, util_err_t *err) {
    if (!d->have[dir] && conv_choose(B, d, dir, in1, in2, out, err)) goto fail;
    if (grow(B, &B->work, &B->work_bytes, d->bytes[dir], err)) goto fail;
    if (B->tf32) DNN(cudnnSetConvolutionMathType(d->conv, d->math[dir]));
    return 0;
fail:
    return -1;
}

static int cuda_conv_forward(model_backend_t *be, const model_conv_param_t *p, model_shape_t in,
                             const float *x, const float *w, const float *b, float *y,
                             util_err_t *err) {
    cuda_backend_t *B = cb(be);
    conv_plan_t *d;
    ENTER();
    if (!(d = conv_plan(B, p, in, err))) goto fail;
    if (conv_ready(B, d, CONV_FWD, x, w, y, err)) goto fail;
    DNN(cudnnConvolutionForward(B->dnn, &ONE, d->x, x, d->w, w, d->conv,
                                (cudnnConvolutionFwdAlgo_t)d->algo[CONV_FWD], B->work,
                                d->bytes[CONV_FWD], &ZERO, d->y, y));
    DNN(cudnnAddTensor(B->dnn, &ONE, d->b, b, &ONE, d->y, y));
    return 0;
fail:
    return -1;
}

static int cuda_conv_backward(model_backend_t *be, const model_conv_param_t *p, model_shape_t in,
                              const float *x, const float *w, const float *dy, float *dx, float *dw,
                              float *db, util_err_t *err) {
    cuda_backend_t *B = cb(be);
    conv_plan_t *d;
    ENTER();
    if (!(d = conv_plan(B, p, in, err))) goto fail;
    if (dx) {
        if (conv_ready(B, d, CONV_DATA, w, dy, dx, err)) goto fail;
        DNN(cudnnConvolutionBackwardData(B->dnn, &ONE, d->w, w, d->y, dy, d->conv,
                                         (cudnnConvolutionBwdDataAlgo_t)d->algo[CONV_DATA], B->work,
                                         d->bytes[CONV_DATA], &ZERO, d->x, dx));
    }
    if (conv_ready(B, d, CONV_FILTER, x, dy, dw, err)) goto fail;
    DNN(cudnnConvolutionBackwardFilter(B->dnn, &ONE, d->x, x, d->y, dy, d->conv,
                                       (cudnnConvolutionBwdFilterAlgo_t)d->algo[CONV_FILTER],
                                       B->work, d->bytes[CONV_FILTER], &ZERO, d->w, dw));
    DNN(cudnnConvolutionBackwardBias(B->dnn, &ONE, d->y, dy, &ZERO, d->b, db));
    return 0;
fail:
    return -1;
}

/* ------------------------------------------------------------ ReLU, LRN */

/* t1 as a flat tensor of `count` floats, for the elementwise cuDNN calls. */
static int flat_desc(cuda_backend_t *B, size_t count, util_err_t *err) {
    if (count > (size_t)0x7fffffff) {
        util_fail(err, "gpu:%d: %zu elements in one ReLU call, more than cuDNN takes", B->device,
                  count);
        goto fail;
    }
    DNN(cudnnSetTensor4dDescriptor(B->t1, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, 1, 1,
                                   (int)count));
    return 0;
fail:
    return -1;
}

static void cuda_relu_forward(model_backend_t *be, size_t count, const float *x, float *y) {
    cuda_backend_t *B = cb(be);
    util_err_t e = {{0}}, *err = &e;
    ENTER();
    if (flat_desc(B, count, err)) goto fail;
    DNN(cudnnActivationForward(B->dnn, B->relu, &ONE, B->t1, x, &ZERO, B->t1, y));
    return;
fail:
    remember_failure(B, err);
}

static void cuda_relu_backward(model_backend_t *be, size_t count, const float *y, const float *dy,
                               float *dx) {
    cuda_backend_t *B = cb(be);
    util_err_t e = {{0}}, *err = &e;
    ENTER();
    if (flat_desc(B, count, err)) goto fail;
    /* y > 0 exactly where x > 0: y stands in for the input. */
    DNN(cudnnActivationBackward(B->dnn, B->relu, &ONE, B->t1, y, B->t1, dy, B->t1, y, &ZERO, B->t1,
                                dx));
    return;
fail:
    remember_failure(B, err);
}

/* cuDNN's LRN divides alpha by n (Caffe's convention); the paper's alpha
 * multiplies the sum as it is. Windows agree for odd sizes only. */
static int lrn_desc(cuda_backend_t *B, const model_lrn_param_t *p, model_shape_t in,
                    util_err_t *err) {
    if (model_lrn_check(p, in, err)) return -1;
    if (p->size % 2 == 0 || p->size < CUDNN_LRN_MIN_N || p->size > CUDNN_LRN_MAX_N ||
        p->k < CUDNN_LRN_MIN_K || p->beta < CUDNN_LRN_MIN_BETA) {
        util_fail(err,
                  "gpu:%d: LRN size %d, k %g, beta %g: cuDNN takes odd sizes %d to %d, k >= %g, "
                  "beta >= %g",
                  B->device, p->size, (double)p->k, (double)p->beta, CUDNN_LRN_MIN_N,
                  CUDNN_LRN_MAX_N, CUDNN_LRN_MIN_K, CUDNN_LRN_MIN_BETA);
        goto fail;
    }
    double alpha =
        p->alpha_mode == MODEL_LRN_ALPHA_PAPER ? (double)p->alpha * p->size : (double)p->alpha;
    DNN(cudnnSetLRNDescriptor(B->lrn, (unsigned)p->size, alpha, p->beta, p->k));
    DNN(cudnnSetTensor4dDescriptor(B->t1, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, in.n, in.c, in.h,
                                   in.w));
    return 0;
fail:
    return -1;
}

static int cuda_lrn_forward(model_backend_t *be, const model_lrn_param_t *p, model_shape_t in,
                            const float *x, float *y, float *scale, util_err_t *err) {
    (void)scale; /* cuDNN recomputes what it needs in backward */
    cuda_backend_t *B = cb(be);
    ENTER();
    if (lrn_desc(B, p, in, err)) goto fail;
    DNN(cudnnLRNCrossChannelForward(B->dnn, B->lrn, CUDNN_LRN_CROSS_CHANNEL_DIM1, &ONE, B->t1, x,
                                    &ZERO, B->t1, y));
    return 0;
fail:
    return -1;
}

static int cuda_lrn_backward(model_backend_t *be, const model_lrn_param_t *p, model_shape_t in,
                             const float *x, const float *y, const float *scale, const float *dy,
                             float *dx, util_err_t *err) {
    (void)scale;
    cuda_backend_t *B = cb(be);
    ENTER();
    if (lrn_desc(B, p, in, err)) goto fail;
    DNN(cudnnLRNCrossChannelBackward(B->dnn, B->lrn, CUDNN_LRN_CROSS_CHANNEL_DIM1, &ONE, B->t1, y,
                                     B->t1, dy, B->t1, x, &ZERO, B->t1, dx));
    return 0;
fail:
    return -1;
}

/* -------------------------------------------------------------- pooling */

/* cuDNN pools with the floor rule only. For ceil mode, the input gets a
 * right/bottom border of -FLT_MAX wide enough that the floor rule gives
 * the ceil count: the last windows then see the real values they overlap
 * and nothing else, which is the CPU's (and PyTorch's) ceil semantics. */
typedef struct pool_geom {
    model_shape_t in, out;
    int h2, w2; /* input size handed to cuDNN */
} pool_geom_t;

static int pool_geom(const model_pool_param_t *p, model_shape_t in, pool_geom_t *g,
                     util_err_t *err) {
    g->in = in;
    if (model_pool_shape(p, in, &g->out, err)) return -1;
    int h2 = (g->out.h - 1) * p->stride + p->kernel - 2 * p->pad;
    int w2 = (g->out.w - 1) * p->stride + p->kernel - 2 * p->pad;
    g->h2 = h2 > in.h ? h2 : in.h;
    g->w2 = w2 > in.w ? w2 : in.w;
    return 0;
}

/* pool, t1 (the input, bordered) and t2 (the output) for this layer. */
static int pool_descs(cuda_backend_t *B, const model_pool_param_t *p, const pool_geom_t *g,
                      util_err_t *err) {
    DNN(cudnnSetPooling2dDescriptor(B->pool, CUDNN_POOLING_MAX_DETERMINISTIC,
                                    CUDNN_NOT_PROPAGATE_NAN, p->kernel, p->kernel, p->pad, p->pad,
                                    p->stride, p->stride));
    DNN(cudnnSetTensor4dDescriptor(B->t1, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g->in.n, g->in.c,
                                   g->h2, g->w2));
    DNN(cudnnSetTensor4dDescriptor(B->t2, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, g->out.n, g->out.c,
                                   g->out.h, g->out.w));
    int n, c, h, w;
    DNN(cudnnGetPooling2dForwardOutputDim(B->pool, B->t1, &n, &c, &h, &w));
    if (h != g->out.h || w != g->out.w) {
        util_fail(err, "gpu:%d: pooling gives %dx%d, the layer expects %dx%d", B->device, h, w,
                  g->out.h, g->out.w);
        goto fail;
    }
    return 0;
fail:
    return -1;
}

/* The bordered copies of ceil-mode pooling: room for (planes, h2, w2). */
static int pool_room(cuda_backend_t *B, const pool_geom_t *g, util_err_t *err) {
    size_t count = (size_t)g->in.n * g->in.c * g->h2 * g->w2;
    if (B->pool_count >= count) return 0;
    size_t have = 0, have2 = 0;
    float *x = B->pool_x, *dx = B->pool_dx;
    B->pool_x = B->pool_dx = NULL;
    B->pool_count = 0;
    if (x) CU(cudaFree(x));
    if (dx) CU(cudaFree(dx));
    if (grow(B, (void **)&B->pool_x, &have, count * sizeof(float), err) ||
        grow(B, (void **)&B->pool_dx, &have2, count * sizeof(float), err))
        goto fail;
    B->pool_count = count;
    return 0;
fail:
    return -1;
}

static int cuda_pool_forward(model_backend_t *be, const model_pool_param_t *p, model_shape_t in,
                             const float *x, float *y, int32_t *argmax, util_err_t *err) {
    (void)argmax; /* cuDNN finds the maxima again in backward */
    cuda_backend_t *B = cb(be);
    pool_geom_t g;
    ENTER();
    if (pool_geom(p, in, &g, err) || pool_descs(B, p, &g, err)) goto fail;
    const float *src = x;
    if (g.h2 != in.h || g.w2 != in.w) {
        if (pool_room(B, &g, err)) goto fail;
        KERNEL(imgret_cuda_pad_planes((size_t)in.n * in.c, in.h, in.w, g.h2, g.w2, x, B->pool_x,
                                      -FLT_MAX));
        src = B->pool_x;
    }
    DNN(cudnnPoolingForward(B->dnn, B->pool, &ONE, B->t1, src, &ZERO, B->t2, y));
    return 0;
fail:
    return -1;
}

static int cuda_pool_backward(model_backend_t *be, const model_pool_param_t *p, model_shape_t in,
                              const float *x, const float *y, const float *dy,
                              const int32_t *argmax, float *dx, util_err_t *err) {
    (void)argmax;
    cuda_backend_t *B = cb(be);
    pool_geom_t g;
    ENTER();
    if (pool_geom(p, in, &g, err) || pool_descs(B, p, &g, err)) goto fail;
    if (g.h2 != in.h || g.w2 != in.w) {
        size_t planes = (size_t)in.n * in.c;
        if (pool_room(B, &g, err)) goto fail;
        KERNEL(imgret_cuda_pad_planes(planes, in.h, in.w, g.h2, g.w2, x, B->pool_x, -FLT_MAX));
        DNN(cudnnPoolingBackward(B->dnn, B->pool, &ONE, B->t2, y, B->t2, dy, B->t1, B->pool_x,
                                 &ZERO, B->t1, B->pool_dx));
        KERNEL(imgret_cuda_crop_planes(planes, g.h2, g.w2, in.h, in.w, B->pool_dx, dx));
    } else {
        DNN(cudnnPoolingBackward(B->dnn, B->pool, &ONE, B->t2, y, B->t2, dy, B->t1, x, &ZERO, B->t1,
                                 dx));
    }
    return 0;
fail:
    return -1;
}

/* ------------------------------------------------------- fully connected */

/* Row-major y (n, out) = x (n, in) W^T + b is, column-major, Y (out x n) =
 * W^T' X with the row-major W (out, in) read as a column-major (in x out). */
static int cuda_fc_forward(model_backend_t *be, const model_fc_param_t *p, int n, const float *x,
                           const float *w, const float *b, float *y, util_err_t *err) {
    cuda_backend_t *B = cb(be);
    ENTER();
    if (ensure_ones(B, (size_t)n, err)) goto fail;
    BLAS(cublasSgemm(B->blas, CUBLAS_OP_T, CUBLAS_OP_N, p->out, n, p->in, &ONE, w, p->in, x, p->in,
                     &ZERO, y, p->out));
    /* + b 1^T */
    BLAS(cublasSgemm(B->blas, CUBLAS_OP_N, CUBLAS_OP_N, p->out, n, 1, &ONE, b, p->out, B->ones, 1,
                     &ONE, y, p->out));
    return 0;
fail:
    return -1;
}

static int cuda_fc_backward(model_backend_t *be, const model_fc_param_t *p, int n, const float *x,
                            const float *w, const float *dy, float *dx, float *dw, float *db,
                            util_err_t *err) {
    cuda_backend_t *B = cb(be);
    ENTER();
    if (ensure_ones(B, (size_t)n, err)) goto fail;
    /* dW (out, in) row-major = dY^T X: column-major (in x out) = X dY^T. */
    BLAS(cublasSgemm(B->blas, CUBLAS_OP_N, CUBLAS_OP_T, p->in, p->out, n, &ONE, x, p->in, dy,
                     p->out, &ZERO, dw, p->in));
    /* db = dY^T 1 */
    BLAS(cublasSgemv(B->blas, CUBLAS_OP_N, p->out, n, &ONE, dy, p->out, B->ones, 1, &ZERO, db, 1));
    /* dX (n, in) row-major = dY W: column-major (in x n) = W' dY. */
    if (dx)
        BLAS(cublasSgemm(B->blas, CUBLAS_OP_N, CUBLAS_OP_N, p->in, n, p->out, &ONE, w, p->in, dy,
                         p->out, &ZERO, dx, p->in));
    return 0;
fail:
    return -1;
}

/* --------------------------------------------------- dropout, SGD, loss */

static int cuda_dropout_forward(model_backend_t *be, float p, size_t count, const float *x,
                                float *y, float *mask, util_rng_t *rng, util_err_t *err) {
    cuda_backend_t *B = cb(be);
    if (!(p >= 0.0f && p < 1.0f))
        return util_fail(err, "dropout: probability %g is not in [0, 1)", (double)p);
    ENTER();
    /* One draw from the net's RNG per call: checkpoints resume the same masks. */
    KERNEL(imgret_cuda_dropout_forward(p, count, x, y, mask, util_rng_u64(rng)));
    return 0;
fail:
    return -1;
}

static void cuda_mask_multiply(model_backend_t *be, size_t count, const float *mask, const float *x,
                               float *y) {
    cuda_backend_t *B = cb(be);
    util_err_t e = {{0}}, *err = &e;
    ENTER();
    KERNEL(imgret_cuda_mask_multiply(count, mask, x, y));
    return;
fail:
    remember_failure(B, err);
}

static void cuda_sgd_update(model_backend_t *be, size_t count, float *w, const float *g, float *v,
                            const model_sgd_t *sgd) {
    cuda_backend_t *B = cb(be);
    util_err_t e = {{0}}, *err = &e;
    ENTER();
    KERNEL(imgret_cuda_sgd(count, w, g, v, sgd->lr, sgd->momentum, sgd->weight_decay));
    return;
fail:
    remember_failure(B, err);
}

static int cuda_softmax_xent(model_backend_t *be, int n, int classes, const float *logits,
                             const int *labels, float *probs, float *dlogits, float *loss,
                             util_err_t *err) {
    cuda_backend_t *B = cb(be);
    float *terms = NULL;
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= classes)
            return util_fail(err, "softmax: label %d of image %d is not in [0, %d)", labels[i], i,
                             classes);
    ENTER();
    if (B->labels_count < (size_t)n) {
        int *labels_d = B->labels;
        float *terms_d = B->terms;
        B->labels = NULL;
        B->terms = NULL;
        B->labels_count = 0;
        if (labels_d) CU(cudaFree(labels_d));
        if (terms_d) CU(cudaFree(terms_d));
        CU(cudaMalloc((void **)&B->labels, (size_t)n * sizeof(int)));
        CU(cudaMalloc((void **)&B->terms, (size_t)n * sizeof(float)));
        B->labels_count = (size_t)n;
    }
    CU(cudaMemcpy(B->labels, labels, (size_t)n * sizeof(int), cudaMemcpyHostToDevice));
    DNN(cudnnSetTensor4dDescriptor(B->t1, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, classes, 1, 1));
    DNN(cudnnSoftmaxForward(B->dnn, CUDNN_SOFTMAX_ACCURATE, CUDNN_SOFTMAX_MODE_INSTANCE, &ONE,
                            B->t1, logits, &ZERO, B->t1, probs));
    KERNEL(imgret_cuda_xent(n, classes, probs, B->labels, dlogits, B->terms));
    if (!(terms = malloc((size_t)n * sizeof(float)))) {
        util_fail(err, "gpu:%d: out of host memory", B->device);
        goto fail;
    }
    CU(cudaMemcpy(terms, B->terms, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost));
    double total = 0.0;
    for (int i = 0; i < n; i++)
        total += terms[i];
    *loss = (float)(total / n);
    free(terms);
    return 0;
fail:
    free(terms);
    return -1;
}

static model_allreduce_t *cuda_allreduce_create(model_backend_t *const *be, int n, size_t max_count,
                                                util_err_t *err);

static const model_backend_ops_t cuda_ops = {
    .name = "cuda",
    .host_memory = 0,
    .destroy = cuda_destroy,
    .alloc = cuda_alloc,
    .release = cuda_release,
    .upload = cuda_upload,
    .download = cuda_download,
    .conv_forward = cuda_conv_forward,
    .conv_backward = cuda_conv_backward,
    .relu_forward = cuda_relu_forward,
    .relu_backward = cuda_relu_backward,
    .lrn_forward = cuda_lrn_forward,
    .lrn_backward = cuda_lrn_backward,
    .pool_forward = cuda_pool_forward,
    .pool_backward = cuda_pool_backward,
    .fc_forward = cuda_fc_forward,
    .fc_backward = cuda_fc_backward,
    .dropout_forward = cuda_dropout_forward,
    .mask_multiply = cuda_mask_multiply,
    .copy = cuda_copy,
    .copy_between = cuda_copy_between,
    .accumulate = cuda_accumulate,
    .softmax_xent = cuda_softmax_xent,
    .sgd_update = cuda_sgd_update,
    .sync = cuda_sync,
    .allreduce_create = cuda_allreduce_create,
};

int model_cuda_device_count(util_err_t *why) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        util_fail(why, "cudaGetDeviceCount: %s", cudaGetErrorString(e));
        return 0;
    }
    if (n == 0) util_fail(why, "cudaGetDeviceCount found no device");
    return n;
}

model_backend_t *model_backend_cuda_create(int index, util_err_t *err) {
    cuda_backend_t *B = calloc(1, sizeof *B);
    if (!B) {
        util_fail(err, "gpu:%d: out of host memory", index);
        return NULL;
    }
    B->base.ops = &cuda_ops;
    B->device = index;
    const char *tf32 = getenv("IMGRET_CUDA_TF32");
    B->tf32 = tf32 && !strcmp(tf32, "1");
    const char *algo = getenv("IMGRET_CUDNN_ALGO");
    if (algo && strcmp(algo, "find") && strcmp(algo, "heuristic")) {
        util_fail(err,
                  "IMGRET_CUDNN_ALGO=%s: expected find (time every algorithm, the default) "
                  "or heuristic (cuDNN's guess, no timing)",
                  algo);
        goto fail;
    }
    B->search = !algo || !strcmp(algo, "find");
    const char *log = getenv("IMGRET_CUDNN_LOG");
    B->log = log && !strcmp(log, "1");
    const char *det = getenv("IMGRET_CUDNN_DETERMINISTIC");
    B->deterministic = det && !strcmp(det, "1");
    CU(cudaSetDevice(index));
    DNN(cudnnCreate(&B->dnn));
    DNN(cudnnCreateTensorDescriptor(&B->t1));
    DNN(cudnnCreateTensorDescriptor(&B->t2));
    DNN(cudnnCreateActivationDescriptor(&B->relu));
    DNN(cudnnSetActivationDescriptor(B->relu, CUDNN_ACTIVATION_RELU, CUDNN_NOT_PROPAGATE_NAN, 0.0));
    DNN(cudnnCreateLRNDescriptor(&B->lrn));
    DNN(cudnnCreatePoolingDescriptor(&B->pool));
    BLAS(cublasCreate(&B->blas));
    BLAS(cublasSetMathMode(B->blas, B->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    return &B->base;
fail:
    cuda_destroy(&B->base);
    return NULL;
}

/* ------------------------------------------------------ data parallelism */

/* NCCL over distinct GPUs: one communicator per device, made once. */
typedef struct nccl_allreduce {
    model_allreduce_t base;
    int n;
    int device[MODEL_MAX_DEVICES];
    ncclComm_t comm[MODEL_MAX_DEVICES];
} nccl_allreduce_t;

#define NCCL(call)                                                                                 \
    do {                                                                                           \
        ncclResult_t r_ = (call);                                                                  \
        if (r_ != ncclSuccess) {                                                                   \
            util_fail(err, "%s: %s", #call, ncclGetErrorString(r_));                               \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

static int nccl_sum(model_allreduce_t *r, float *const *buf, size_t count, util_err_t *err) {
    nccl_allreduce_t *g = (nccl_allreduce_t *)r;
    int started = 0;
    NCCL(ncclGroupStart());
    started = 1;
    for (int d = 0; d < g->n; d++) {
        cudaError_t e = cudaSetDevice(g->device[d]);
        if (e != cudaSuccess) {
            util_fail(err, "gpu:%d: cudaSetDevice: %s", g->device[d], cudaGetErrorString(e));
            goto fail;
        }
        NCCL(ncclAllReduce(buf[d], buf[d], count, ncclFloat, ncclSum, g->comm[d], 0));
    }
    started = 0;
    NCCL(ncclGroupEnd());
    return 0;
fail:
    if (started) ncclGroupEnd();
    return -1;
}

static void nccl_destroy(model_allreduce_t *r) {
    nccl_allreduce_t *g = (nccl_allreduce_t *)r;
    if (!g) return;
    for (int d = 0; d < g->n; d++)
        ncclCommDestroy(g->comm[d]);
    free(g);
}

/* NCCL takes each GPU once: a GPU named twice sums through the host. */
static model_allreduce_t *cuda_allreduce_create(model_backend_t *const *be, int n, size_t max_count,
                                                util_err_t *err) {
    if (n < 1 || n > MODEL_MAX_DEVICES) {
        util_fail(err, "nccl: %d devices, expected 1 to %d", n, MODEL_MAX_DEVICES);
        return NULL;
    }
    for (int d = 0; d < n; d++) {
        if (be[d]->ops != &cuda_ops) {
            util_fail(err, "nccl: device %d is not a GPU", d);
            return NULL;
        }
        for (int s = 0; s < d; s++)
            if (cb(be[s])->device == cb(be[d])->device)
                return model_allreduce_host_create(be, n, max_count, err);
    }
    nccl_allreduce_t *g = calloc(1, sizeof *g);
    if (!g) {
        util_fail(err, "nccl: out of host memory");
        return NULL;
    }
    g->base.sum = nccl_sum;
    g->base.destroy = nccl_destroy;
    for (int d = 0; d < n; d++)
        g->device[d] = cb(be[d])->device;
    NCCL(ncclCommInitAll(g->comm, n, g->device));
    g->n = n;
    return &g->base;
fail:
    free(g);
    return NULL;
}
