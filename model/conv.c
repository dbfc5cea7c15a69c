/* Convolution with stride, padding and groups, as im2col + sgemm: one
 * multi-threaded sgemm per group and chunk of images; im2col, col2im and the
 * layout shuffles are spread over threads by OpenMP. When each thread takes
 * whole images, the sgemms are imgret's own AVX-512 kernel (model/sgemm.c)
 * where the CPU has AVX-512, else OpenBLAS's. */
#include "model/internal.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* Valid output range [lo, hi) along one axis for kernel offset kk: the
 * outputs whose input coordinate o*s - pad + kk lies in [0, size). */
static void valid_range(int size, int out, int s, int pad, int kk, int *lo, int *hi) {
    int off = pad - kk; /* o*s >= off */
    int l = off <= 0 ? 0 : (off + s - 1) / s;
    int h = (size - 1 + off) < 0 ? 0 : (size - 1 + off) / s + 1;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* Rows ki0*k .. ki1*k - 1 of one input channel's im2col: row (ki*k + kj) of
 * `col` (rows ld floats apart) holds, for every output position, the input
 * pixel under kernel tap (ki, kj), or 0 in the padding. */
static void im2col_taps(const float *xc, int H, int W, int k, int s, int pad, int Ho, int Wo,
                        int ki0, int ki1, float *col, size_t ld) {
    for (int ki = ki0; ki < ki1; ki++) {
        int ylo, yhi;
        valid_range(H, Ho, s, pad, ki, &ylo, &yhi);
        for (int kj = 0; kj < k; kj++) {
            float *dst = col + (size_t)(ki * k + kj) * ld;
            int xlo, xhi;
            valid_range(W, Wo, s, pad, kj, &xlo, &xhi);
            if (ylo > 0) memset(dst, 0, sizeof(float) * (size_t)ylo * Wo);
            for (int oy = ylo; oy < yhi; oy++) {
                float *d = dst + (size_t)oy * Wo;
                const float *src = xc + (size_t)(oy * s - pad + ki) * W - pad + kj;
                for (int ox = 0; ox < xlo; ox++)
                    d[ox] = 0.0f;
                if (s == 1) {
                    memcpy(d + xlo, src + xlo, sizeof(float) * (size_t)(xhi - xlo));
                } else {
                    for (int ox = xlo; ox < xhi; ox++)
                        d[ox] = src[ox * s];
                }
                for (int ox = xhi; ox < Wo; ox++)
                    d[ox] = 0.0f;
            }
            if (yhi < Ho)
                memset(dst + (size_t)yhi * Wo, 0, sizeof(float) * (size_t)(Ho - yhi) * Wo);
        }
    }
}

/* All k*k rows of one input channel's im2col. */
static void im2col_channel(const float *xc, int H, int W, int k, int s, int pad, int Ho, int Wo,
                           float *col, size_t ld) {
    im2col_taps(xc, H, W, k, s, pad, Ho, Wo, 0, k, col, ld);
}

/* The inverse: one input channel plane xc += the k*k rows of col. */
static void col2im_channel_add(const float *col, int H, int W, int k, int s, int pad, int Ho,
                               int Wo, size_t ld, float *xc) {
    for (int ki = 0; ki < k; ki++) {
        int ylo, yhi;
        valid_range(H, Ho, s, pad, ki, &ylo, &yhi);
        for (int kj = 0; kj < k; kj++) {
            const float *srcrow = col + (size_t)(ki * k + kj) * ld;
            int xlo, xhi;
            valid_range(W, Wo, s, pad, kj, &xlo, &xhi);
            for (int oy = ylo; oy < yhi; oy++) {
                const float *src = srcrow + (size_t)oy * Wo;
                float *d = xc + (size_t)(oy * s - pad + ki) * W - pad + kj;
                if (s == 1) {
                    for (int ox = xlo; ox < xhi; ox++)
                        d[ox] += src[ox];
                } else {
                    for (int ox = xlo; ox < xhi; ox++)
                        d[ox * s] += src[ox];
                }
            }
        }
    }
}

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

typedef struct conv_geom {
    int G, Cg, Mg, k, K, HWo;
    size_t in_img, out_img, in_plane;
} conv_geom_t;

static conv_geom_t geom(const model_conv_param_t *p, model_shape_t in, model_shape_t o) {
    conv_geom_t g;
    g.G = p->groups;
    g.Cg = p->in_c / g.G;
    g.Mg = p->out_c / g.G;
    g.k = p->kernel;
    g.K = g.Cg * g.k * g.k;
    g.HWo = o.h * o.w;
    g.in_plane = (size_t)in.h * in.w;
    g.in_img = (size_t)in.c * g.in_plane;
    g.out_img = (size_t)o.c * g.HWo;
    return g;
}

/* im2col of image i, group gi, into col (K rows of HWo). With `team`, the
 * channels are spread over the OpenMP threads. */
static void image_im2col(const model_conv_param_t *p, model_shape_t in, model_shape_t o,
                         const conv_geom_t *c, const float *x, int i, int gi, float *col,
                         int team) {
    const float *xg = x + (size_t)i * c->in_img + (size_t)gi * c->Cg * c->in_plane;
#pragma omp parallel for schedule(static) if (team)
    for (int ch = 0; ch < c->Cg; ch++)
        im2col_channel(xg + (size_t)ch * c->in_plane, in.h, in.w, c->k, p->stride, p->pad, o.h, o.w,
                       col + (size_t)ch * c->k * c->k * c->HWo, (size_t)c->HWo);
}

static void image_col2im_add(const model_conv_param_t *p, model_shape_t in, model_shape_t o,
                             const conv_geom_t *c, const float *dcol, int i, int gi, float *dx,
                             int team) {
    float *dxg = dx + (size_t)i * c->in_img + (size_t)gi * c->Cg * c->in_plane;
#pragma omp parallel for schedule(static) if (team)
    for (int ch = 0; ch < c->Cg; ch++)
        col2im_channel_add(dcol + (size_t)ch * c->k * c->k * c->HWo, in.h, in.w, c->k, p->stride,
                           p->pad, o.h, o.w, (size_t)c->HWo, dxg + (size_t)ch * c->in_plane);
}

/* Two ways to spread the work over T threads. With at least T images, each
 * thread takes whole images and runs single-threaded sgemms on them (OpenBLAS's
 * OpenMP build goes single-threaded inside a parallel region): no
 * synchronisation, and every core at its full sgemm rate. With fewer images
 * (latency: batch 1), the images go one after another and the threads share
 * each image (forward_image_shared with the own sgemm; else im2col by channel
 * and OpenBLAS's own threading). */
static int per_image_threads(const model_workspace_t *ws, int n) {
    return n >= ws_threads(ws) && ws_threads(ws) > 1;
}

/* Row-major sgemm on one thread's `pack` buffer (the own sgemm of the
 * chosen kernel path), or on OpenBLAS when pack is NULL. */
static void conv_sgemm(int trans_a, int trans_b, int M, int N, int K, const float *A, int lda,
                       const float *B, int ldb, float beta, float *C, int ldc, float *pack) {
    if (pack)
        sgemm_own(trans_a, trans_b, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc, pack);
    else
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                    trans_b ? CblasTrans : CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, beta, C,
                    ldc);
}

/* Reserves the packing buffers when the per-image path (`spread`) will use
 * the own sgemm; returns 1 then, 0 for OpenBLAS, -1 on failure. */
static int own_sgemm(model_workspace_t *ws, int spread, util_err_t *err) {
    if (!spread || sgemm_path() == SGEMM_BLAS) return 0;
    return ws_reserve(ws, WS_GEMM, sgemm_pack_floats(), err) ? -1 : 1;
}

/* 1x1, stride 1, no padding: image i's group gi planes are already its
 * columns (no im2col). */
static const float *direct_columns(const model_conv_param_t *p, const conv_geom_t *c,
                                   const float *x, int i, int gi) {
    if (c->k != 1 || p->stride != 1 || p->pad != 0) return NULL;
    return x + (size_t)i * c->in_img + (size_t)gi * c->Cg * c->in_plane;
}

/* Rows m0..m1-1 and columns j0..j1-1 of group gi's output for image i: the
 * bias, then += the group's weights x src (its K x HWo columns), on the own
 * sgemm (pack) or OpenBLAS (pack NULL). */
static void group_product(const conv_geom_t *c, const float *src, const float *w, const float *b,
                          float *y, int i, int gi, int m0, int m1, int j0, int j1, float *pack) {
    float *yg = y + (size_t)i * c->out_img + (size_t)gi * c->Mg * c->HWo;
    const float *bg = b + gi * c->Mg;
    for (int m = m0; m < m1; m++)
        for (int j = j0; j < j1; j++)
            yg[(size_t)m * c->HWo + j] = bg[m];
    conv_sgemm(0, 0, m1 - m0, j1 - j0, c->K, w + ((size_t)gi * c->Mg + (size_t)m0) * c->K, c->K,
               src + j0, c->HWo, 1.0f, yg + (size_t)m0 * c->HWo + j0, c->HWo, pack);
}

static void forward_image(const model_conv_param_t *p, model_shape_t in, model_shape_t o,
                          const conv_geom_t *c, const float *x, const float *w, const float *b,
                          float *y, int i, float *col, float *pack, int team) {
    for (int gi = 0; gi < c->G; gi++) {
        const float *src = direct_columns(p, c, x, i, gi);
        if (!src) {
            image_im2col(p, in, o, c, x, i, gi, col, team);
            src = col;
        }
        group_product(c, src, w, b, y, i, gi, 0, c->Mg, 0, c->HWo, pack);
    }
}

/* Image i on all T threads with the own sgemm (latency: fewer images than
 * threads). Group g's columns go to thread g's col buffer, the kernel rows of
 * all channels of all groups spread over the threads; then each group's
 * product is cut into T / G parts, by rows of C when it has more rows than
 * columns (each part packs its rows of the weights and all the columns) and
 * by columns otherwise, on whole micro-tiles. */
static void forward_image_shared(model_workspace_t *ws, const model_conv_param_t *p,
                                 model_shape_t in, model_shape_t o, const conv_geom_t *c,
                                 const float *x, const float *w, const float *b, float *y, int i,
                                 int T) {
    const int direct = direct_columns(p, c, x, i, 0) != NULL;
    const int parts = T / c->G, by_rows = c->Mg > c->HWo;
    const int len = by_rows ? c->Mg : c->HWo,
              align = by_rows ? sgemm_tile_rows() : sgemm_tile_cols();
    const int step = ((len + parts - 1) / parts + align - 1) / align * align;
#pragma omp parallel num_threads(T)
    {
        if (!direct) {
            /* By kernel row: conv1 has only 3 channels for 2 threads. */
#pragma omp for schedule(static)
            for (int r = 0; r < c->G * c->Cg * c->k; r++) {
                const int gc = r / c->k, ki = r % c->k, gi = gc / c->Cg, ch = gc % c->Cg;
                const float *xc = x + (size_t)i * c->in_img + (size_t)gc * c->in_plane;
                im2col_taps(xc, in.h, in.w, c->k, p->stride, p->pad, o.h, o.w, ki, ki + 1,
                            ws_buf(ws, WS_COL, gi) + (size_t)ch * c->k * c->k * c->HWo,
                            (size_t)c->HWo);
            }
        }
#pragma omp for schedule(static)
        for (int job = 0; job < c->G * parts; job++) {
            const int gi = job / parts, part = job % parts;
            const int lo = part * step, hi = lo + step < len ? lo + step : len;
            if (lo >= hi) continue;
            const float *src = direct ? direct_columns(p, c, x, i, gi) : ws_buf(ws, WS_COL, gi);
            group_product(c, src, w, b, y, i, gi, by_rows ? lo : 0, by_rows ? hi : c->Mg,
                          by_rows ? 0 : lo, by_rows ? c->HWo : hi,
                          ws_buf(ws, WS_GEMM, thread_id()));
        }
    }
}

/* Whether the forward pass of p on `in`, and the input gradient of its
 * backward pass, run as Winograd F(4x4, 3x3) (model/conv_winograd.c) rather
 * than im2col + sgemm: IMGRET_CONV=direct or winograd forces one (winograd
 * only where it applies: 3x3, stride 1, pad 0..2); unset or auto, the
 * measured rule. 1 yes, 0 no, -1 refused.
 *
 * The rule, from bench_conv on 2 threads (docs/performance.md, "Winograd"):
 * on conv3-5 of the paper net (13x13 maps, 192-384 channels per group) and
 * of alexnet-small (6x6 maps, 64-192), on the AVX2 and the AVX-512 path
 * alike (medians of 4-6 runs of medians of 7), with at least
 * WINOGRAD_MIN_TILES 4x4 output tiles per thread (paper net batch 32 and
 * 64, the small net batch 128) Winograd's forward is 1.25-1.6x faster on
 * AVX2 and 0.93-1.5x on AVX-512 (conv4 at batch 32 the one row under 1),
 * and the backward pass with dx by Winograd 1.2-1.6x; at 32-128 tiles per
 * thread (paper batch 8, small batch 16-32) the forward is 0.8-1.4x, and at
 * batch 1 it is 3-14x slower (the per-call weight transform and GEMMs of 16
 * tiles cost more than they save). Layers with fewer than 64 channels per
 * group were not measured and keep the direct path. */
#define WINOGRAD_MIN_TILES 256
static int use_winograd(const model_conv_param_t *p, model_shape_t in, int threads,
                        util_err_t *err) {
    const char *force = getenv("IMGRET_CONV");
    if (force && *force && strcmp(force, "auto")) {
        if (!strcmp(force, "direct")) return 0;
        if (!strcmp(force, "winograd")) return conv_winograd_applies(p);
        return util_fail(err, "IMGRET_CONV '%s': expected direct, winograd or auto", force);
    }
    if (!conv_winograd_applies(p) || p->in_c / p->groups < 64 || p->out_c / p->groups < 64)
        return 0;
    const long ho = in.h + 2 * p->pad - 2, wo = in.w + 2 * p->pad - 2;
    const long tiles = (long)in.n * ((ho + 3) / 4) * ((wo + 3) / 4);
    return tiles >= (long)WINOGRAD_MIN_TILES * threads;
}

int model_conv_forward(model_workspace_t *ws, const model_conv_param_t *p, model_shape_t in,
                       const float *x, const float *w, const float *b, float *y, util_err_t *err) {
    model_shape_t o = {0, 0, 0, 0};
    if (model_conv_shape(p, in, &o, err)) return -1;
    if (!ws || !x || !w || !b || !y) return util_fail(err, "conv forward: NULL buffer");
    const int wino = use_winograd(p, in, ws_threads(ws), err);
    if (wino < 0) return -1;
    if (wino) return conv_winograd_forward(ws, p, in, x, w, b, y, err);
    const conv_geom_t c = geom(p, in, o);
    if (ws_reserve(ws, WS_COL, (size_t)c.K * c.HWo, err)) return -1;
    const int spread = per_image_threads(ws, in.n), T = ws_threads(ws);
    const int own = own_sgemm(ws, spread, err);
    if (own < 0) return -1;

    if (spread) {
#pragma omp parallel for num_threads(T) schedule(static)
        for (int i = 0; i < in.n; i++) {
            const int tid = thread_id();
            forward_image(p, in, o, &c, x, w, b, y, i, ws_buf(ws, WS_COL, tid),
                          own ? ws_buf(ws, WS_GEMM, tid) : NULL, 0);
        }
    } else if (T > 1 && c.G <= T && sgemm_path() != SGEMM_BLAS) {
        if (ws_reserve(ws, WS_GEMM, sgemm_pack_floats(), err)) return -1;
        for (int i = 0; i < in.n; i++)
            forward_image_shared(ws, p, in, o, &c, x, w, b, y, i, T);
    } else {
        /* Outside any parallel region, so OpenBLAS and the im2col loops use
         * the whole (pooled) OpenMP team. */
        for (int i = 0; i < in.n; i++)
            forward_image(p, in, o, &c, x, w, b, y, i, ws_buf(ws, WS_COL, 0), NULL, 1);
    }
    return 0;
}

/* Image i's contribution: dw and db accumulate into dwt, dbt; dx (when
 * not NULL) receives the image's input gradient. col holds 2*K*HWo floats. */
static void backward_image(const model_conv_param_t *p, model_shape_t in, model_shape_t o,
                           const conv_geom_t *c, const float *x, const float *w, const float *dy,
                           float *dx, int i, float *col, float *dwt, float *dbt, float *pack,
                           int team) {
    float *dcol = col + (size_t)c->K * c->HWo;
    if (dx) memset(dx + (size_t)i * c->in_img, 0, sizeof(float) * c->in_img);
    for (int gi = 0; gi < c->G; gi++) {
        const float *dyg = dy + (size_t)i * c->out_img + (size_t)gi * c->Mg * c->HWo;
        image_im2col(p, in, o, c, x, i, gi, col, team);
        conv_sgemm(0, 1, c->Mg, c->K, c->HWo, dyg, c->HWo, col, c->HWo, 1.0f,
                   dwt + (size_t)gi * c->Mg * c->K, c->K, pack);
        for (int m = 0; m < c->Mg; m++) {
            const float *row = dyg + (size_t)m * c->HWo;
            float s = 0.0f;
            for (int j = 0; j < c->HWo; j++)
                s += row[j];
            dbt[gi * c->Mg + m] += s;
        }
        if (!dx) continue;
        conv_sgemm(1, 0, c->K, c->HWo, c->Mg, w + (size_t)gi * c->Mg * c->K, c->K, dyg, c->HWo,
                   0.0f, dcol, c->HWo, pack);
        image_col2im_add(p, in, o, c, dcol, i, gi, dx, team);
    }
}

int model_conv_backward(model_workspace_t *ws, const model_conv_param_t *p, model_shape_t in,
                        const float *x, const float *w, const float *dy, float *dx, float *dw,
                        float *db, util_err_t *err) {
    model_shape_t o = {0, 0, 0, 0};
    if (model_conv_shape(p, in, &o, err)) return -1;
    if (!ws || !x || !w || !dy || !dw || !db) return util_fail(err, "conv backward: NULL buffer");
    const conv_geom_t c = geom(p, in, o);
    const size_t wcount = (size_t)p->out_c * c.K;
    if (ws_reserve(ws, WS_COL, 2 * (size_t)c.K * c.HWo, err) ||
        ws_reserve(ws, WS_GRAD_W, wcount, err) || ws_reserve(ws, WS_GRAD_B, (size_t)p->out_c, err))
        return -1;
    const int spread = per_image_threads(ws, in.n), T = ws_threads(ws);
    const int own = own_sgemm(ws, spread, err);
    if (own < 0) return -1;
    const int used = spread ? T : 1;
    /* dx by Winograd (a 3x3 convolution too) where the forward pass uses it;
     * the per-image loops below then compute only dw and db. */
    const int wino = dx ? use_winograd(p, in, T, err) : 0;
    if (wino < 0) return -1;
    float *dx_im2col = wino ? NULL : dx;
    for (int t = 0; t < used; t++) {
        memset(ws_buf(ws, WS_GRAD_W, t), 0, sizeof(float) * wcount);
        memset(ws_buf(ws, WS_GRAD_B, t), 0, sizeof(float) * (size_t)p->out_c);
    }

    if (spread) {
#pragma omp parallel for num_threads(T) schedule(static)
        for (int i = 0; i < in.n; i++) {
            const int tid = thread_id();
            backward_image(p, in, o, &c, x, w, dy, dx_im2col, i, ws_buf(ws, WS_COL, tid),
                           ws_buf(ws, WS_GRAD_W, tid), ws_buf(ws, WS_GRAD_B, tid),
                           own ? ws_buf(ws, WS_GEMM, tid) : NULL, 0);
        }
    } else {
        for (int i = 0; i < in.n; i++)
            backward_image(p, in, o, &c, x, w, dy, dx_im2col, i, ws_buf(ws, WS_COL, 0),
                           ws_buf(ws, WS_GRAD_W, 0), ws_buf(ws, WS_GRAD_B, 0), NULL, 1);
    }

    if (wino && conv_winograd_backward_data(ws, p, in, w, dy, dx, err)) return -1;

        /* Sum the per-thread accumulators. */
#pragma omp parallel for num_threads(T) schedule(static)
    for (size_t j = 0; j < wcount; j++) {
        float s = 0.0f;
        for (int t = 0; t < used; t++)
            s += ws_buf(ws, WS_GRAD_W, t)[j];
        dw[j] = s;
    }
    for (int j = 0; j < p->out_c; j++) {
        float s = 0.0f;
        for (int t = 0; t < used; t++)
            s += ws_buf(ws, WS_GRAD_B, t)[j];
        db[j] = s;
    }
    return 0;
}
