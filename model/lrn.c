/* Local response normalisation across channels (section 3.3 of the paper). */
#include "model/internal.h"

#include <math.h>

int model_lrn_check(const model_lrn_param_t *p, model_shape_t in, util_err_t *err) {
    if (!p) return util_fail(err, "lrn: no parameters given");
    if (model_shape_count(in) == 0 || model_shape_count(in) > MODEL_MAX_ELEMS)
        return util_fail(err, "lrn: input shape %dx%dx%dx%d is not valid", in.n, in.c, in.h, in.w);
    if (p->size < 1 || p->size > 1024)
        return util_fail(err, "lrn: size %d must be between 1 and 1024", p->size);
    if (!(p->k > 0.0f) || !(p->alpha >= 0.0f) || !(p->beta >= 0.0f) || !isfinite(p->k) ||
        !isfinite(p->alpha) || !isfinite(p->beta))
        return util_fail(err, "lrn: needs k > 0, alpha >= 0, beta >= 0 (got k %g alpha %g beta %g)",
                         (double)p->k, (double)p->alpha, (double)p->beta);
    if (p->alpha_mode != MODEL_LRN_ALPHA_PAPER && p->alpha_mode != MODEL_LRN_ALPHA_OVER_N)
        return util_fail(err, "lrn: unknown alpha convention %d", (int)p->alpha_mode);
    return 0;
}

static float effective_alpha(const model_lrn_param_t *p) {
    return p->alpha_mode == MODEL_LRN_ALPHA_OVER_N ? p->alpha / (float)p->size : p->alpha;
}

/* The layer runs over pieces of a plane: up to LRN_PIECE positions of every
 * channel of one image, so the channels a window sums over are read from L1
 * while the piece walks down them, and the work splits over threads by image
 * and piece (a batch of one still fills the cores). Pieces are of equal
 * length, a multiple of 8: a 28x28 plane is one piece of 784, not three of
 * 256 and a 16, whose short tail cost as much per channel as a long one.
 * Backward keeps dy y / s of the channels in a window in a ring of `size`
 * rows: each is divided once instead of once per window it falls in (five
 * divisions per element at the paper's size). The ring holds LRN_RING
 * floats on the stack; with a large size its rows, and the pieces, shrink. */
#define LRN_PIECE 1024
#define LRN_RING 8192

/* The length of the pieces a plane of hw positions is cut into: at most
 * `most` (a multiple of 8, or less than 8), equal, a multiple of 8 but the
 * last. */
static size_t piece_len(size_t hw, size_t most) {
    if (hw <= most) return hw;
    const size_t pieces = (hw + most - 1) / most, len = (hw + pieces - 1) / pieces;
    const size_t up = (len + 7) & ~(size_t)7;
    return up <= most ? up : len;
}

/* s^-beta; the paper's beta = 0.75 avoids powf: s^-3/4 = 1 / (sqrt(s) * s^(1/4)). */
static inline float inv_pow(float s, float beta) {
    if (beta == 0.75f) {
        const float r = sqrtf(s);
        return 1.0f / (r * sqrtf(r));
    }
    return powf(s, -beta);
}

int model_lrn_forward(const model_lrn_param_t *p, model_shape_t in, const float *x, float *y,
                      float *scale, util_err_t *err) {
    if (model_lrn_check(p, in, err)) return -1;
    if (!x || !y || !scale) return util_fail(err, "lrn forward: NULL buffer");
    const int C = in.c, before = p->size / 2, after = (p->size - 1) / 2;
    const size_t HW = (size_t)in.h * in.w;
    const size_t plen = piece_len(HW, LRN_PIECE);
    const int pieces = (int)((HW + plen - 1) / plen);
    const float a = effective_alpha(p), k = p->k, beta = p->beta;

#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < in.n; i++) {
        for (int piece = 0; piece < pieces; piece++) {
            const size_t j0 = (size_t)piece * plen;
            const int len = (int)(HW - j0 < plen ? HW - j0 : plen);
            const float *xi = x + (size_t)i * C * HW + j0;
            float *si = scale + (size_t)i * C * HW + j0, *yi = y + (size_t)i * C * HW + j0;
            for (int c = 0; c < C; c++) {
                const int lo = c - before < 0 ? 0 : c - before;
                const int hi = c + after >= C ? C - 1 : c + after;
                float acc[LRN_PIECE];
                const float *xl = xi + (size_t)lo * HW;
                for (int j = 0; j < len; j++)
                    acc[j] = xl[j] * xl[j];
                for (int cc = lo + 1; cc <= hi; cc++) {
                    const float *xc = xi + (size_t)cc * HW;
                    for (int j = 0; j < len; j++)
                        acc[j] += xc[j] * xc[j];
                }
                const float *xc = xi + (size_t)c * HW;
                float *sc = si + (size_t)c * HW, *yc = yi + (size_t)c * HW;
                if (beta == 0.75f) {
                    for (int j = 0; j < len; j++) {
                        const float sj = k + a * acc[j];
                        sc[j] = sj;
                        yc[j] = inv_pow(sj, 0.75f) * xc[j];
                    }
                } else {
                    for (int j = 0; j < len; j++) {
                        const float sj = k + a * acc[j];
                        sc[j] = sj;
                        yc[j] = inv_pow(sj, beta) * xc[j];
                    }
                }
            }
        }
    }
    return 0;
}

/* dx_c = dy_c s_c^-beta - 2 a beta x_c sum_{j : c in window(j)} dy_j y_j / s_j,
 * where window(j) = [j - before, j + after], so j runs over [c - after, c + before]. */
int model_lrn_backward(const model_lrn_param_t *p, model_shape_t in, const float *x,
                       const float *y, const float *scale, const float *dy, float *dx,
                       util_err_t *err) {
    if (model_lrn_check(p, in, err)) return -1;
    if (!x || !y || !scale || !dy || !dx) return util_fail(err, "lrn backward: NULL buffer");
    const int C = in.c, size = p->size, before = size / 2, after = (size - 1) / 2;
    const size_t HW = (size_t)in.h * in.w;
    const size_t most = LRN_RING / size < LRN_PIECE ? (LRN_RING / size) & ~(size_t)7 : LRN_PIECE;
    const size_t row = piece_len(HW, most ? most : 1);
    const int pieces = (int)((HW + row - 1) / row);
    const float f = 2.0f * effective_alpha(p) * p->beta, beta = p->beta;

#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < in.n; i++) {
        for (int piece = 0; piece < pieces; piece++) {
            const size_t j0 = (size_t)piece * row, base = (size_t)i * C * HW + j0;
            const int len = (int)(HW - j0 < row ? HW - j0 : row);
            float ring[LRN_RING]; /* channel cc's dy y / s in row cc % size */
            int ready = 0;        /* channels 0 .. ready-1 are in the ring */
            for (int c = 0; c < C; c++) {
                const int lo = c - after < 0 ? 0 : c - after;
                const int hi = c + before >= C ? C - 1 : c + before;
                for (; ready <= hi; ready++) {
                    const size_t o = base + (size_t)ready * HW;
                    float *t = ring + (size_t)(ready % size) * row;
                    for (int j = 0; j < len; j++)
                        t[j] = dy[o + j] * y[o + j] / scale[o + j];
                }
                float acc[LRN_PIECE];
                const float *tl = ring + (size_t)(lo % size) * row;
                for (int j = 0; j < len; j++)
                    acc[j] = tl[j];
                for (int cc = lo + 1; cc <= hi; cc++) {
                    const float *t = ring + (size_t)(cc % size) * row;
                    for (int j = 0; j < len; j++)
                        acc[j] += t[j];
                }
                const size_t o = base + (size_t)c * HW;
                const float *xc = x + o, *dyc = dy + o, *sc = scale + o;
                float *dxc = dx + o;
                if (beta == 0.75f) {
                    for (int j = 0; j < len; j++) {
                        const float r = sqrtf(sc[j]);
                        dxc[j] = dyc[j] / (r * sqrtf(r)) - f * xc[j] * acc[j];
                    }
                } else {
                    for (int j = 0; j < len; j++)
                        dxc[j] = dyc[j] * powf(sc[j], -beta) - f * xc[j] * acc[j];
                }
            }
        }
    }
    return 0;
}
