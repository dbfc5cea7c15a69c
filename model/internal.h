/* Private to model/: workspace internals and the BLAS include. */
#ifndef IMGRET_MODEL_INTERNAL_H
#define IMGRET_MODEL_INTERNAL_H

#include "model/model.h"

#include <cblas.h>

enum {
    WS_COL = 0, /* im2col columns (and their gradient), one buffer per thread */
    WS_GRAD_W,  /* per-thread weight-gradient accumulators */
    WS_GRAD_B,  /* per-thread bias-gradient accumulators */
    WS_GEMM,    /* per-thread packing buffers of sgemm_avx512 */
    WS_SLOTS
};

/* Makes sure every thread's buffer in `slot` holds at least `count` floats.
 * Call outside parallel regions. Contents are not kept across a grow. */
int ws_reserve(model_workspace_t *ws, int slot, size_t count, util_err_t *err);
/* The buffer of thread `tid` in `slot` (reserved beforehand). */
float *ws_buf(model_workspace_t *ws, int slot, int tid);
int ws_threads(const model_workspace_t *ws);

/* imgret's own single-threaded AVX-512 sgemm (model/sgemm.c), for the conv
 * layers' per-image path. Row-major C[M x N] = alpha * op(A) * op(B) + beta * C
 * with op(A) M x K (A^T when trans_a: A is then K x M), op(B) K x N (B^T when
 * trans_b); C is not read when beta is 0. `pack`: sgemm_pack_floats() floats,
 * 64-byte aligned, owned by the caller and used by one thread at a time.
 * Call only when sgemm_avx512_ready(). */
void sgemm_avx512(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc, float *pack);
size_t sgemm_pack_floats(void);
/* y[i] += A[i, :] . x for rows 0 .. M-1 of row-major A (K columns, row
 * stride lda), single-threaded: the fc layers' batch-1 matrix-vector product,
 * which streams the weights; the caller splits the rows over threads. Same
 * precondition as sgemm_avx512. */
void sgemv_avx512(int M, int K, const float *A, int lda, const float *x, float *y);
/* 1 when this CPU has AVX-512F and the environment does not say
 * IMGRET_SGEMM=blas (which keeps every sgemm on OpenBLAS). */
int sgemm_avx512_ready(void);

#endif
