/* 3x3 stride-1 convolution by Winograd's minimal filtering, F(m x m, 3 x 3)
 * (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
 * CVPR 2016): each m x m output tile is A^T [(G g G^T) .* (B^T d B)] A over an
 * (m+2) x (m+2) input tile d. The elementwise products of all tiles and
 * channels are, for each of the (m+2)^2 transform positions, one GEMM of
 * (out channels x in channels) x (in channels x tiles), on the same sgemm as
 * the direct convolution (the own kernel of the chosen path, else OpenBLAS).
 *
 * The tiles of all images of the batch are cut into blocks of at most
 * WINO_BLOCK tiles; each thread transforms, multiplies and transforms back its
 * own blocks (64 measured best of 32 to 512 on conv3-5 of both nets, AVX2 and
 * AVX-512: larger ones leave the cache). With fewer tiles than the threads
 * have lanes (batch 1 of a small map), the threads share each block instead:
 * channels, then (group, position) products, then output channels. The
 * weights are transformed on every call (they change with every SGD step),
 * spread over the threads.
 *
 * The transforms run on WINO_LANES tiles at once (plain C the compiler
 * vectorises). Tiles past the edge of the map read zeros and their extra
 * outputs are dropped. See model/conv.c for when this path is taken. */
#include "model/internal.h"

#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define WINO_M 4                 /* output tile side */
#define WINO_T (WINO_M + 2)      /* input tile side */
#define WINO_P (WINO_T * WINO_T) /* transform positions: one GEMM each */
#define WINO_LANES 16            /* tiles per transform step */
#define WINO_BLOCK 64            /* most tiles per GEMM (its N), a multiple of WINO_LANES */

typedef struct wino_geom {
    int C, H, W, pad, K, Ho, Wo, G, Cg, Mg;
    int tiles_w, tiles_img; /* tiles per row and per image */
    long tiles;             /* of the whole batch */
    int nb;                 /* tiles per block: the GEMMs' N and the rows of V and Mb */
    int flip; /* w is the forward's (G*Cg x Mg x 3 x 3): use it transposed and turned 180 degrees */
} wino_geom_t;

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

int conv_winograd_applies(const model_conv_param_t *p) {
    return p->kernel == 3 && p->stride == 1 && p->pad <= 2;
}

/* The 1-D transforms of F(4, 3) for the points 0, 1, -1, 2, -2 and infinity,
 * each on WINO_LANES tiles at once: B^T (input), G (weights), A^T (output).
 * `s` is the stride between the elements of one vector, in floats. */
static inline void input_1d(const float *d, int sd, float *v, int sv) {
    for (int l = 0; l < WINO_LANES; l++) {
        const float d0 = d[l], d1 = d[sd + l], d2 = d[2 * sd + l], d3 = d[3 * sd + l],
                    d4 = d[4 * sd + l], d5 = d[5 * sd + l];
        v[l] = 4.0f * d0 - 5.0f * d2 + d4;
        v[sv + l] = -4.0f * (d1 + d2) + d3 + d4;
        v[2 * sv + l] = 4.0f * (d1 - d2) - d3 + d4;
        v[3 * sv + l] = 2.0f * (d3 - d1) - d2 + d4;
        v[4 * sv + l] = 2.0f * (d1 - d3) - d2 + d4;
        v[5 * sv + l] = 4.0f * d1 - 5.0f * d3 + d5;
    }
}

static inline void output_1d(const float *m, int sm, float *y, int sy) {
    for (int l = 0; l < WINO_LANES; l++) {
        const float m0 = m[l], m1 = m[sm + l], m2 = m[2 * sm + l], m3 = m[3 * sm + l],
                    m4 = m[4 * sm + l], m5 = m[5 * sm + l];
        const float a = m1 + m2, b = m1 - m2, c = m3 + m4, e = m3 - m4;
        y[l] = m0 + a + c;
        y[sy + l] = b + 2.0f * e;
        y[2 * sy + l] = a + 4.0f * c;
        y[3 * sy + l] = b + 8.0f * e + m5;
    }
}

static inline void weight_1d(const float *g, int sg, float *u, int su) {
    for (int l = 0; l < WINO_LANES; l++) {
        const float g0 = g[l], g1 = g[sg + l], g2 = g[2 * sg + l];
        const float a = (g0 + g2) * (1.0f / 6.0f), c = g1 * (1.0f / 6.0f);
        const float e = g0 * (1.0f / 24.0f) + g2 * (1.0f / 6.0f), f = g1 * (1.0f / 12.0f);
        u[l] = 0.25f * g0;
        u[su + l] = -a - c;
        u[2 * su + l] = c - a;
        u[3 * su + l] = e + f;
        u[4 * su + l] = e - f;
        u[5 * su + l] = g2;
    }
}

/* U[gi][pos] (Cg x Mg, row-major: the GEMM's A transposed) = position pos
 * of G w G^T for input channel ic and every output channel of group gi. */
static void transform_weights(const wino_geom_t *g, const float *w, int gi, int ic, float *U) {
    for (int o0 = 0; o0 < g->Mg; o0 += WINO_LANES) {
        const int lanes = g->Mg - o0 < WINO_LANES ? g->Mg - o0 : WINO_LANES;
        float k[3][3][WINO_LANES], t[WINO_T][3][WINO_LANES], u[WINO_T][WINO_T][WINO_LANES];
        memset(k, 0, sizeof k);
        for (int l = 0; l < lanes; l++) {
            if (g->flip) {
                const float *src = w + (((size_t)gi * g->Cg + ic) * g->Mg + o0 + l) * 9;
                for (int j = 0; j < 9; j++)
                    k[j / 3][j % 3][l] = src[8 - j];
                continue;
            }
            const float *src = w + (((size_t)gi * g->Mg + o0 + l) * g->Cg + ic) * 9;
            for (int j = 0; j < 9; j++)
                k[j / 3][j % 3][l] = src[j];
        }
        for (int c = 0; c < 3; c++)
            weight_1d(k[0][c], 3 * WINO_LANES, t[0][c], 3 * WINO_LANES);
        for (int r = 0; r < WINO_T; r++)
            weight_1d(t[r][0], WINO_LANES, u[r][0], WINO_LANES);
        float *dst = U + ((size_t)gi * WINO_P * g->Cg + ic) * g->Mg + o0;
        for (int pos = 0; pos < WINO_P; pos++)
            memcpy(dst + (size_t)pos * g->Cg * g->Mg, u[pos / WINO_T][pos % WINO_T],
                   sizeof(float) * (size_t)lanes);
    }
}

/* Where tile t of the batch lies: its image and the input row and column of
 * its first (padding-shifted) element. */
static void tile_origin(const wino_geom_t *g, long t, int *img, int *y0, int *x0) {
    const int r = (int)(t % g->tiles_img);
    *img = (int)(t / g->tiles_img);
    *y0 = r / g->tiles_w * WINO_M - g->pad;
    *x0 = r % g->tiles_w * WINO_M - g->pad;
}

/* V[pos][ch][j] (rows of WINO_BLOCK) = position pos of B^T d B for input
 * channel ch and tile t0 + j, for channels c0..c1-1 and j < nt (lanes past nt
 * are zero). */
static void transform_input(const wino_geom_t *g, const float *x, long t0, int nt, int c0, int c1,
                            float *V) {
    for (int lg = 0; lg < nt; lg += WINO_LANES) {
        int img[WINO_LANES], y0[WINO_LANES], x0[WINO_LANES];
        const int lanes = nt - lg < WINO_LANES ? nt - lg : WINO_LANES;
        for (int l = 0; l < lanes; l++)
            tile_origin(g, t0 + lg + l, &img[l], &y0[l], &x0[l]);
        for (int ch = c0; ch < c1; ch++) {
            float d[WINO_T][WINO_T][WINO_LANES], t[WINO_T][WINO_T][WINO_LANES];
            memset(d, 0, sizeof d);
            for (int l = 0; l < lanes; l++) {
                const float *plane = x + ((size_t)img[l] * g->C + ch) * g->H * g->W;
                const int inside =
                    y0[l] >= 0 && x0[l] >= 0 && y0[l] + WINO_T <= g->H && x0[l] + WINO_T <= g->W;
                for (int r = 0; r < WINO_T; r++) {
                    const int iy = y0[l] + r;
                    if (!inside && (iy < 0 || iy >= g->H)) continue;
                    const float *row = plane + (size_t)iy * g->W + x0[l];
                    for (int c = 0; c < WINO_T; c++)
                        if (inside || (x0[l] + c >= 0 && x0[l] + c < g->W)) d[r][c][l] = row[c];
                }
            }
            for (int c = 0; c < WINO_T; c++)
                input_1d(d[0][c], WINO_T * WINO_LANES, t[0][c], WINO_T * WINO_LANES);
            for (int r = 0; r < WINO_T; r++) {
                input_1d(t[r][0], WINO_LANES, d[r][0], WINO_LANES);
                for (int c = 0; c < WINO_T; c++)
                    memcpy(V + ((size_t)(r * WINO_T + c) * g->C + ch) * g->nb + lg, d[r][c],
                           sizeof d[r][c]);
            }
        }
    }
}

/* y (NCHW) = bias + A^T m A for output channels o0..o1-1 of tiles t0 ..
 * t0+nt-1, from Mb[pos][oc][j]; outputs past the map's edge are dropped. */
static void transform_output(const wino_geom_t *g, const float *Mb, const float *b, long t0, int nt,
                             int o0, int o1, float *y) {
    const int K = g->G * g->Mg;
    for (int lg = 0; lg < nt; lg += WINO_LANES) {
        int img[WINO_LANES], y0[WINO_LANES], x0[WINO_LANES];
        const int lanes = nt - lg < WINO_LANES ? nt - lg : WINO_LANES;
        for (int l = 0; l < lanes; l++) {
            tile_origin(g, t0 + lg + l, &img[l], &y0[l], &x0[l]);
            y0[l] += g->pad;
            x0[l] += g->pad;
        }
        for (int oc = o0; oc < o1; oc++) {
            float m[WINO_T][WINO_T][WINO_LANES], t[WINO_M][WINO_T][WINO_LANES];
            float out[WINO_M][WINO_M][WINO_LANES];
            for (int pos = 0; pos < WINO_P; pos++)
                memcpy(m[pos / WINO_T][pos % WINO_T], Mb + ((size_t)pos * K + oc) * g->nb + lg,
                       sizeof m[0][0]);
            for (int c = 0; c < WINO_T; c++)
                output_1d(m[0][c], WINO_T * WINO_LANES, t[0][c], WINO_T * WINO_LANES);
            for (int r = 0; r < WINO_M; r++)
                output_1d(t[r][0], WINO_LANES, out[r][0], WINO_LANES);
            const float bias = b ? b[oc] : 0.0f;
            for (int l = 0; l < lanes; l++) {
                float *plane = y + ((size_t)img[l] * K + oc) * g->Ho * g->Wo;
                const int rows = g->Ho - y0[l] < WINO_M ? g->Ho - y0[l] : WINO_M;
                const int cols = g->Wo - x0[l] < WINO_M ? g->Wo - x0[l] : WINO_M;
                for (int r = 0; r < rows; r++) {
                    float *dst = plane + (size_t)(y0[l] + r) * g->Wo + x0[l];
                    for (int c = 0; c < cols; c++)
                        dst[c] = out[r][c][l] + bias;
                }
            }
        }
    }
}

/* The own sgemm's micro-kernel and packing, or NULL on the OpenBLAS path. */
static const sgemm_kernels_t *own_kernels(void) {
    switch (sgemm_path()) {
    case SGEMM_AVX512:
        return &sgemm_avx512_kernels;
    case SGEMM_AVX2:
        return &sgemm_avx2_kernels;
    default:
        return NULL;
    }
}

/* The GEMMs' depth (Cg) cut into equal slices of at most the kernel's kc,
 * as sgemm_blocked cuts it. */
static int depth_step(const sgemm_kernels_t *k, int K) {
    const int slices = (K + k->kc - 1) / k->kc;
    return (K + slices - 1) / slices;
}

/* Rows of U^T as the kernel's packed panels, padded to whole micro-tiles. */
static int packed_rows(const sgemm_kernels_t *k, const wino_geom_t *g) {
    return (g->Mg + k->mr - 1) / k->mr * k->mr;
}

/* UP[gi][pos] = U[gi][pos]^T packed once per call as the own sgemm packs its
 * A (depth slice p0 at p0 * rows, row block i0 at i0 * kc within it), so the
 * products of every block of tiles reuse it instead of packing it again. */
static void pack_weights(const sgemm_kernels_t *k, const wino_geom_t *g, const float *U, int gi,
                         int pos, float *UP) {
    const int rows = packed_rows(k, g), step = depth_step(k, g->Cg);
    const float *A = U + ((size_t)gi * WINO_P + pos) * g->Cg * g->Mg;
    float *dst = UP + ((size_t)gi * WINO_P + pos) * rows * g->Cg;
    for (int p0 = 0; p0 < g->Cg; p0 += step) {
        const int kc = g->Cg - p0 < step ? g->Cg - p0 : step;
        for (int i0 = 0; i0 < g->Mg; i0 += k->mc) {
            const int mc = g->Mg - i0 < k->mc ? g->Mg - i0 : k->mc;
            k->pack_a(1, A, g->Mg, i0, p0, mc, kc, 1.0f, dst + (size_t)p0 * rows + (size_t)i0 * kc);
        }
    }
}

/* Position pos of group gi: Mb[pos][gi's out channels][0..nt) = U x V, on
 * the own kernel from the packed UP (pack: the thread's packing buffer for
 * V), or on OpenBLAS from U when k is NULL. */
static void position_product(const sgemm_kernels_t *k, const wino_geom_t *g, const float *U,
                             const float *UP, const float *V, float *Mb, int gi, int pos, int nt,
                             float *pack) {
    const float *B = V + ((size_t)pos * g->C + (size_t)gi * g->Cg) * g->nb;
    float *Cm = Mb + ((size_t)pos * g->G * g->Mg + (size_t)gi * g->Mg) * g->nb;
    if (!k) {
        const float *A = U + ((size_t)gi * WINO_P + pos) * g->Cg * g->Mg;
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, g->Mg, nt, g->Cg, 1.0f, A, g->Mg, B,
                    g->nb, 0.0f, Cm, g->nb);
        return;
    }
    const int rows = packed_rows(k, g), step = depth_step(k, g->Cg);
    const float *ap = UP + ((size_t)gi * WINO_P + pos) * rows * g->Cg;
    for (int p0 = 0; p0 < g->Cg; p0 += step) {
        const int kc = g->Cg - p0 < step ? g->Cg - p0 : step;
        k->pack_b(0, B, g->nb, p0, 0, kc, nt, pack);
        for (int i0 = 0; i0 < g->Mg; i0 += k->mc) {
            const int mc = g->Mg - i0 < k->mc ? g->Mg - i0 : k->mc;
            const float *pa = ap + (size_t)p0 * rows + (size_t)i0 * kc;
            for (int jj = 0; jj < nt; jj += k->nr) {
                const int cols = nt - jj < k->nr ? nt - jj : k->nr;
                for (int r = 0; r < mc; r += k->mr)
                    k->tile(mc - r < k->mr ? mc - r : k->mr, cols, kc, pa + (size_t)r * kc,
                            pack + (size_t)jj * kc, Cm + (size_t)(i0 + r) * g->nb + jj, g->nb,
                            p0 == 0, 0.0f);
            }
        }
    }
}

/* y = the convolution of x (n images of C x H x W) with w, plus b (NULL:
 * none), on the geometry g holds (its tile fields are filled here). */
static int winograd(model_workspace_t *ws, wino_geom_t g, int n, const float *x, const float *w,
                    const float *b, float *y, util_err_t *err) {
    g.tiles_w = (g.Wo + WINO_M - 1) / WINO_M;
    g.tiles_img = (g.Ho + WINO_M - 1) / WINO_M * g.tiles_w;
    g.tiles = (long)n * g.tiles_img;
    const int T = ws_threads(ws);
    const sgemm_kernels_t *k = own_kernels();
    /* Each thread its own blocks when there are enough tiles for every
     * thread to fill its lanes; else all threads on each block. */
    const int spread = T > 1 && g.tiles >= (long)T * WINO_LANES;
    const long share = spread ? (g.tiles + T - 1) / T : g.tiles;
    g.nb =
        share < WINO_BLOCK ? (int)(share + WINO_LANES - 1) / WINO_LANES * WINO_LANES : WINO_BLOCK;
    const size_t block = (size_t)WINO_P * (size_t)(g.C + g.K) * g.nb;
    if (ws_reserve_shared(ws, WS_WINO_U, (size_t)WINO_P * g.K * g.Cg, err) ||
        ws_reserve(ws, WS_WINO, block, err) ||
        (k && (ws_reserve(ws, WS_GEMM, sgemm_pack_floats(), err) ||
               ws_reserve_shared(ws, WS_WINO_UP, (size_t)g.G * WINO_P * packed_rows(k, &g) * g.Cg,
                                 err))))
        return -1;
    float *U = ws_buf(ws, WS_WINO_U, 0), *UP = k ? ws_buf(ws, WS_WINO_UP, 0) : NULL;
    const long blocks = (g.tiles + g.nb - 1) / g.nb;

#pragma omp parallel num_threads(T)
    {
        const int tid = thread_id();
        float *pack = k ? ws_buf(ws, WS_GEMM, tid) : NULL;
#pragma omp for schedule(static)
        for (int job = 0; job < g.G * g.Cg; job++)
            transform_weights(&g, w, job / g.Cg, job % g.Cg, U);
        if (k) {
#pragma omp for schedule(static)
            for (int job = 0; job < g.G * WINO_P; job++)
                pack_weights(k, &g, U, job / WINO_P, job % WINO_P, UP);
        }
        if (spread) {
            float *V = ws_buf(ws, WS_WINO, tid);
            float *Mb = V + (size_t)WINO_P * g.C * g.nb;
            /* Static and in order: each thread's blocks are consecutive. */
#pragma omp for schedule(static)
            for (long bl = 0; bl < blocks; bl++) {
                const long t0 = bl * g.nb;
                const int nt = g.tiles - t0 < g.nb ? (int)(g.tiles - t0) : g.nb;
                transform_input(&g, x, t0, nt, 0, g.C, V);
                for (int gi = 0; gi < g.G; gi++)
                    for (int pos = 0; pos < WINO_P; pos++)
                        position_product(k, &g, U, UP, V, Mb, gi, pos, nt, pack);
                transform_output(&g, Mb, b, t0, nt, 0, g.K, y);
            }
        } else {
            float *V = ws_buf(ws, WS_WINO, 0);
            float *Mb = V + (size_t)WINO_P * g.C * g.nb;
            for (long bl = 0; bl < blocks; bl++) {
                const long t0 = bl * g.nb;
                const int nt = g.tiles - t0 < g.nb ? (int)(g.tiles - t0) : g.nb;
#pragma omp for schedule(static)
                for (int ch = 0; ch < g.C; ch++)
                    transform_input(&g, x, t0, nt, ch, ch + 1, V);
#pragma omp for schedule(static)
                for (int job = 0; job < g.G * WINO_P; job++)
                    position_product(k, &g, U, UP, V, Mb, job / WINO_P, job % WINO_P, nt, pack);
#pragma omp for schedule(static)
                for (int oc = 0; oc < g.K; oc++)
                    transform_output(&g, Mb, b, t0, nt, oc, oc + 1, y);
            }
        }
    }
    return 0;
}

int conv_winograd_forward(model_workspace_t *ws, const model_conv_param_t *p, model_shape_t in,
                          const float *x, const float *w, const float *b, float *y,
                          util_err_t *err) {
    model_shape_t o;
    if (!conv_winograd_applies(p))
        return util_fail(err, "conv winograd: needs a 3x3 stride-1 kernel with pad 0..2");
    if (model_conv_shape(p, in, &o, err)) return -1;
    const int G = p->groups;
    const wino_geom_t g = {in.c,     in.h,         in.w, p->pad, p->out_c, o.h, o.w, G,
                           in.c / G, p->out_c / G, 0,    0,      0,        0,   0};
    return winograd(ws, g, in.n, x, w, b, y, err);
}

/* dx is the convolution of dy with the weights transposed (per group) and
 * turned 180 degrees, padded 2 - pad: the same kind of convolution. */
int conv_winograd_backward_data(model_workspace_t *ws, const model_conv_param_t *p,
                                model_shape_t in, const float *w, const float *dy, float *dx,
                                util_err_t *err) {
    model_shape_t o;
    if (!conv_winograd_applies(p))
        return util_fail(err, "conv winograd: needs a 3x3 stride-1 kernel with pad 0..2");
    if (model_conv_shape(p, in, &o, err)) return -1;
    const int G = p->groups;
    const wino_geom_t g = {p->out_c,     o.h,      o.w, 2 - p->pad, in.c, in.h, in.w, G,
                           p->out_c / G, in.c / G, 0,   0,          0,    0,    1};
    return winograd(ws, g, in.n, dy, w, NULL, dx, err);
}
