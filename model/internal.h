/* Private to model/: workspace internals and the BLAS include. */
#ifndef IMGRET_MODEL_INTERNAL_H
#define IMGRET_MODEL_INTERNAL_H

#include "model/model.h"

#include <cblas.h>

enum {
    WS_COL = 0, /* im2col columns (and their gradient), one buffer per thread */
    WS_GRAD_W,  /* per-thread weight-gradient accumulators */
    WS_GRAD_B,  /* per-thread bias-gradient accumulators */
    WS_GEMM,    /* per-thread packing buffers of the own sgemm (sgemm_own) */
    WS_WINO,    /* per-thread Winograd tile blocks (model/conv_winograd.c) */
    WS_WINO_U,  /* the transformed weights of a Winograd convolution, shared */
    WS_WINO_UP, /* the same packed for the own sgemm's micro-kernel, shared */
    WS_SLOTS
};

/* Makes sure every thread's buffer in `slot` holds at least `count` floats.
 * Call outside parallel regions. Contents are not kept across a grow. */
int ws_reserve(model_workspace_t *ws, int slot, size_t count, util_err_t *err);
/* The same for thread 0's buffer alone: one buffer all threads share
 * (ws_buf(ws, slot, 0)). A slot is reserved one way or the other, never both. */
int ws_reserve_shared(model_workspace_t *ws, int slot, size_t count, util_err_t *err);
/* The buffer of thread `tid` in `slot` (reserved beforehand). */
float *ws_buf(model_workspace_t *ws, int slot, int tid);
int ws_threads(const model_workspace_t *ws);

/* imgret's own single-threaded sgemm (model/sgemm.c: AVX-512,
 * model/sgemm_avx2.c: AVX2 + FMA), for the conv layers. Row-major
 * C[M x N] = alpha * op(A) * op(B) + beta * C with op(A) M x K (A^T when
 * trans_a: A is then K x M), op(B) K x N (B^T when trans_b); C is not read
 * when beta is 0. `pack`: sgemm_pack_floats() floats, 64-byte aligned, owned
 * by the caller and used by one thread at a time.
 *
 * The path is chosen once per process (sgemm_path): IMGRET_SGEMM, else the
 * widest the CPU has; sgemm_own and sgemv_own run it. Call them only when
 * sgemm_path() != SGEMM_BLAS; the _avx512 and _avx2 entry points only where
 * the CPU has that path (the tests call each directly). */
typedef enum { SGEMM_BLAS = 0, SGEMM_AVX2 = 1, SGEMM_AVX512 = 2 } sgemm_path_t;
sgemm_path_t sgemm_path(void);
void sgemm_own(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc, float *pack);
/* Packing floats and micro-tile rows/columns of the chosen path (whole
 * micro-tiles are how model/conv.c cuts one product over threads). */
size_t sgemm_pack_floats(void);
int sgemm_tile_rows(void);
int sgemm_tile_cols(void);
/* y[i] += A[i, :] . x for rows 0 .. M-1 of row-major A (K columns, row
 * stride lda), single-threaded: the fc layers' batch-1 matrix-vector product,
 * which streams the weights; the caller splits the rows over threads. */
void sgemv_own(int M, int K, const float *A, int lda, const float *x, float *y);

void sgemm_avx512(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc, float *pack);
void sgemv_avx512(int M, int K, const float *A, int lda, const float *x, float *y);
void sgemm_avx2(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc, float *pack);
void sgemv_avx2(int M, int K, const float *A, int lda, const float *x, float *y);

/* One path's micro-kernel, its packing and its block sizes (rows mr and
 * columns nr of a micro-tile, depth kc, rows mc and columns nc of a packed
 * block), run by the blocked driver both paths share. */
typedef struct sgemm_kernels {
    int mr, nr, kc, mc, nc;
    void (*pack_a)(int trans, const float *A, int lda, int i0, int p0, int mc, int kc, float alpha,
                   float *dst);
    void (*pack_b)(int trans, const float *B, int ldb, int p0, int j0, int kc, int nc, float *dst);
    /* C[mr x cols] (cols 1 .. nr) from an a-panel and a b-panel of depth kc. */
    void (*tile)(int mr, int cols, int kc, const float *a, const float *b, float *c, int ldc,
                 int first, float beta);
} sgemm_kernels_t;
extern const sgemm_kernels_t sgemm_avx512_kernels, sgemm_avx2_kernels;
void sgemm_blocked(const sgemm_kernels_t *k, int trans_a, int trans_b, int M, int N, int K,
                   float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                   float *C, int ldc, float *pack);
size_t sgemm_kernels_pack_floats(const sgemm_kernels_t *k);

/* model/conv_winograd.c: the 3x3 stride-1 convolutions (pad 0..2, any
 * groups) by Winograd F(4x4, 3x3), same contract and result as
 * model_conv_forward within float rounding (the tolerance is in
 * model/conv.c). conv_winograd_applies says whether p is such a layer. */
int conv_winograd_applies(const model_conv_param_t *p);
int conv_winograd_forward(model_workspace_t *ws, const model_conv_param_t *p, model_shape_t in,
                          const float *x, const float *w, const float *b, float *y,
                          util_err_t *err);
/* dx (overwritten) of model_conv_backward by the same method. */
int conv_winograd_backward_data(model_workspace_t *ws, const model_conv_param_t *p,
                                model_shape_t in, const float *w, const float *dy, float *dx,
                                util_err_t *err);

#endif
