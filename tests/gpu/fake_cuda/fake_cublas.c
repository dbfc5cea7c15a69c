/* The cuBLAS part of the fake (see fake_cuda.h): the handle, Sgemm, Sgemv
 * and Saxpy in plain loops, column-major as cuBLAS documents them, host
 * pointer mode (alpha and beta in host memory). beta = 0 means the output
 * is not read (NaNs already there do not survive), alpha = 0 that A and B
 * are not read. Argument errors give CUBLAS_STATUS_INVALID_VALUE as the
 * cuBLAS documentation lists them; a device pointer that is not in an
 * allocation of the handle's device, or too small for the access, gives
 * CUBLAS_STATUS_EXECUTION_FAILED (a real GPU would fault) and a line on
 * stderr. */
#include "tests/gpu/fake_cuda/fake_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct cublasContext {
    int device;
    cudaStream_t stream;
    cublasMath_t math;
};

cublasStatus_t cublasCreate(cublasHandle_t *handle) {
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = calloc(1, sizeof **handle);
    if (!*handle) return CUBLAS_STATUS_ALLOC_FAILED;
    (*handle)->device = fake_cuda_current_device();
    (*handle)->math = CUBLAS_DEFAULT_MATH;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    free(handle);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t streamId) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = streamId;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t *streamId) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!streamId) return CUBLAS_STATUS_INVALID_VALUE;
    *streamId = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
    if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
    unsigned base = (unsigned)mode & ~(unsigned)CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION;
    if (base != CUBLAS_DEFAULT_MATH && base != CUBLAS_TENSOR_OP_MATH &&
        base != CUBLAS_PEDANTIC_MATH && base != CUBLAS_TF32_TENSOR_OP_MATH) {
        fake_cuda_report("cublasSetMathMode", "math mode %d is not a cublasMath_t", (int)mode);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

/* Every call: a live handle used on the device it was created on. */
static cublasStatus_t enter(const char *call, cublasHandle_t h) {
    if (!h) {
        fake_cuda_report(call, "NULL handle");
        return CUBLAS_STATUS_NOT_INITIALIZED;
    }
    if (fake_cuda_on_current(call, "handle", h->device)) return CUBLAS_STATUS_EXECUTION_FAILED;
    return CUBLAS_STATUS_SUCCESS;
}

/* Floats a column-major rows x cols matrix with leading dimension ld
 * touches, and a vector of len elements with increment inc. */
static size_t matrix_extent(int rows, int cols, int ld) {
    return rows > 0 && cols > 0 ? (size_t)(cols - 1) * (size_t)ld + (size_t)rows : 0;
}

static size_t vector_extent(int len, int inc) {
    size_t step = (size_t)(inc < 0 ? -(long)inc : inc);
    return len > 0 ? (size_t)(len - 1) * step + 1 : 0;
}

static int overlaps(const float *a, size_t na, const float *b, size_t nb) {
    uintptr_t a0 = (uintptr_t)a, a1 = (uintptr_t)(a + na), b0 = (uintptr_t)b,
              b1 = (uintptr_t)(b + nb);
    return na && nb && a0 < b1 && b0 < a1;
}

#define CHECK_PTR(what, p, floats)                                                                 \
    do {                                                                                           \
        if (fake_cuda_check_ptr(call, what, p, (floats) * sizeof(float), handle->device))          \
            return CUBLAS_STATUS_EXECUTION_FAILED;                                                 \
    } while (0)

static int op_ok(cublasOperation_t op) {
    return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C;
}

/* Element i of a vector with increment inc (BLAS: a negative increment
 * walks the vector from its far end). */
static size_t vec_index(int i, int len, int inc) {
    return inc >= 0 ? (size_t)i * (size_t)inc : (size_t)(len - 1 - i) * (size_t)(-(long)inc);
}

cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float *alpha,
                           const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc) {
    const char *call = "cublasSgemm";
    cublasStatus_t s = enter(call, handle);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    int ta = transa != CUBLAS_OP_N, tb = transb != CUBLAS_OP_N;
    int a_rows = ta ? k : m, a_cols = ta ? m : k, b_rows = tb ? n : k, b_cols = tb ? k : n;
    if (m < 0 || n < 0 || k < 0 || !op_ok(transa) || !op_ok(transb) ||
        lda < (a_rows > 1 ? a_rows : 1) || ldb < (b_rows > 1 ? b_rows : 1) ||
        ldc < (m > 1 ? m : 1) || !alpha || !beta) {
        fake_cuda_report(call,
                         "invalid value: m %d n %d k %d, trans %d/%d, lda %d (needs >= %d), ldb "
                         "%d (needs >= %d), ldc %d (needs >= %d)%s",
                         m, n, k, (int)transa, (int)transb, lda, a_rows, ldb, b_rows, ldc, m,
                         !alpha || !beta ? ", NULL alpha or beta" : "");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m == 0 || n == 0 || ((*alpha == 0.0f || k == 0) && *beta == 1.0f))
        return CUBLAS_STATUS_SUCCESS;
    int reads_ab = *alpha != 0.0f && k > 0;
    size_t a_n = matrix_extent(a_rows, a_cols, lda), b_n = matrix_extent(b_rows, b_cols, ldb),
           c_n = matrix_extent(m, n, ldc);
    if (reads_ab) {
        CHECK_PTR("A", A, a_n);
        CHECK_PTR("B", B, b_n);
    }
    CHECK_PTR("C", C, c_n);
    if (reads_ab && (overlaps(C, c_n, A, a_n) || overlaps(C, c_n, B, b_n))) {
        fake_cuda_report(call, "C overlaps A or B (the result is undefined)");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    float *col = malloc((size_t)m * sizeof(float));
    if (!col) return CUBLAS_STATUS_ALLOC_FAILED;
    const float al = *alpha, be = *beta;
    for (int j = 0; j < n; j++) {
        for (int i = 0; i < m; i++)
            col[i] = 0.0f;
        if (reads_ab) {
            if (!ta) {
                /* column j of op(A) op(B) = sum over l of A(:, l) op(B)(l, j) */
                for (int l = 0; l < k; l++) {
                    float b = tb ? B[j + (size_t)l * ldb] : B[l + (size_t)j * ldb];
                    const float *a = A + (size_t)l * lda;
                    for (int i = 0; i < m; i++)
                        col[i] += a[i] * b;
                }
            } else {
                for (int i = 0; i < m; i++) {
                    const float *a = A + (size_t)i * lda; /* column i of A = row i of A^T */
                    float acc = 0.0f;
                    if (tb)
                        for (int l = 0; l < k; l++)
                            acc += a[l] * B[j + (size_t)l * ldb];
                    else
                        for (int l = 0; l < k; l++)
                            acc += a[l] * B[l + (size_t)j * ldb];
                    col[i] = acc;
                }
            }
        }
        float *c = C + (size_t)j * ldc;
        for (int i = 0; i < m; i++)
            c[i] = al * col[i] + (be == 0.0f ? 0.0f : be * c[i]);
    }
    free(col);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemv(cublasHandle_t handle, cublasOperation_t trans, int m, int n,
                           const float *alpha, const float *A, int lda, const float *x, int incx,
                           const float *beta, float *y, int incy) {
    const char *call = "cublasSgemv";
    cublasStatus_t s = enter(call, handle);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    if (m < 0 || n < 0 || incx == 0 || incy == 0 || !op_ok(trans) || lda < (m > 1 ? m : 1) ||
        !alpha || !beta) {
        fake_cuda_report(call,
                         "invalid value: m %d n %d, trans %d, lda %d (needs >= %d), incx %d, "
                         "incy %d%s",
                         m, n, (int)trans, lda, m, incx, incy,
                         !alpha || !beta ? ", NULL alpha or beta" : "");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    int t = trans != CUBLAS_OP_N, xl = t ? m : n, yl = t ? n : m;
    if (m == 0 || n == 0 || (*alpha == 0.0f && *beta == 1.0f)) return CUBLAS_STATUS_SUCCESS;
    size_t a_n = matrix_extent(m, n, lda), x_n = vector_extent(xl, incx),
           y_n = vector_extent(yl, incy);
    int reads = *alpha != 0.0f;
    if (reads) {
        CHECK_PTR("A", A, a_n);
        CHECK_PTR("x", x, x_n);
    }
    CHECK_PTR("y", y, y_n);
    if (reads && (overlaps(y, y_n, A, a_n) || overlaps(y, y_n, x, x_n))) {
        fake_cuda_report(call, "y overlaps A or x (the result is undefined)");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    float *r = calloc((size_t)yl, sizeof(float));
    if (!r) return CUBLAS_STATUS_ALLOC_FAILED;
    if (reads) {
        for (int j = 0; j < n; j++) {
            const float *a = A + (size_t)j * lda;
            if (!t) {
                float xj = x[vec_index(j, xl, incx)];
                for (int i = 0; i < m; i++)
                    r[i] += a[i] * xj;
            } else {
                float acc = 0.0f;
                for (int i = 0; i < m; i++)
                    acc += a[i] * x[vec_index(i, xl, incx)];
                r[j] = acc;
            }
        }
    }
    const float al = *alpha, be = *beta;
    for (int i = 0; i < yl; i++) {
        float *yi = y + vec_index(i, yl, incy);
        *yi = al * r[i] + (be == 0.0f ? 0.0f : be * *yi);
    }
    free(r);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSaxpy(cublasHandle_t handle, int n, const float *alpha, const float *x,
                           int incx, float *y, int incy) {
    const char *call = "cublasSaxpy";
    cublasStatus_t s = enter(call, handle);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    if (!alpha) {
        fake_cuda_report(call, "NULL alpha");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (n <= 0) return CUBLAS_STATUS_SUCCESS;
    CHECK_PTR("x", x, vector_extent(n, incx));
    CHECK_PTR("y", y, vector_extent(n, incy));
    const float al = *alpha;
    for (int i = 0; i < n; i++)
        y[vec_index(i, n, incy)] += al * x[vec_index(i, n, incx)];
    return CUBLAS_STATUS_SUCCESS;
}
