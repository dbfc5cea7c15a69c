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

/* s^-beta; the paper's beta = 0.75 avoids powf: s^-3/4 = 1 / (sqrt(s) * s^(1/4)). */
static void inv_pow(size_t n, const float *s, float beta, float *out) {
    if (beta == 0.75f) {
        for (size_t j = 0; j < n; j++) {
            float r = sqrtf(s[j]);
            out[j] = 1.0f / (r * sqrtf(r));
        }
    } else {
        for (size_t j = 0; j < n; j++)
            out[j] = powf(s[j], -beta);
    }
}

int model_lrn_forward(const model_lrn_param_t *p, model_shape_t in, const float *x, float *y,
                      float *scale, util_err_t *err) {
    if (model_lrn_check(p, in, err)) return -1;
    if (!x || !y || !scale) return util_fail(err, "lrn forward: NULL buffer");
    const int C = in.c, before = p->size / 2, after = (p->size - 1) / 2;
    const size_t HW = (size_t)in.h * in.w;
    const float a = effective_alpha(p), k = p->k, beta = p->beta;

#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < in.n; i++) {
        for (int c = 0; c < C; c++) {
            const float *xi = x + (size_t)i * C * HW;
            float *sc = scale + ((size_t)i * C + c) * HW;
            float *yc = y + ((size_t)i * C + c) * HW;
            int lo = c - before < 0 ? 0 : c - before;
            int hi = c + after >= C ? C - 1 : c + after;
            for (size_t j = 0; j < HW; j++)
                sc[j] = 0.0f;
            for (int cc = lo; cc <= hi; cc++) {
                const float *xc = xi + (size_t)cc * HW;
                for (size_t j = 0; j < HW; j++)
                    sc[j] += xc[j] * xc[j];
            }
            for (size_t j = 0; j < HW; j++)
                sc[j] = k + a * sc[j];
            inv_pow(HW, sc, beta, yc);
            const float *xc = xi + (size_t)c * HW;
            for (size_t j = 0; j < HW; j++)
                yc[j] *= xc[j];
        }
    }
    return 0;
}

/* dx_c = dy_c s_c^-beta - 2 a beta x_c sum_{j : c in window(j)} dy_j y_j / s_j,
 * where window(j) = [j - before, j + after], so j runs over [c - after, c + before]. */
int model_lrn_backward(const model_lrn_param_t *p, model_shape_t in, const float *x, const float *y,
                       const float *scale, const float *dy, float *dx, util_err_t *err) {
    if (model_lrn_check(p, in, err)) return -1;
    if (!x || !y || !scale || !dy || !dx) return util_fail(err, "lrn backward: NULL buffer");
    const int C = in.c, before = p->size / 2, after = (p->size - 1) / 2;
    const size_t HW = (size_t)in.h * in.w;
    const float f = 2.0f * effective_alpha(p) * p->beta, beta = p->beta;

#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < in.n; i++) {
        for (int c = 0; c < C; c++) {
            size_t base = (size_t)i * C * HW;
            const size_t off = base + (size_t)c * HW;
            int lo = c - after < 0 ? 0 : c - after;
            int hi = c + before >= C ? C - 1 : c + before;
            float *dxc = dx + off;
            for (size_t j = 0; j < HW; j++)
                dxc[j] = 0.0f;
            for (int cc = lo; cc <= hi; cc++) {
                const size_t o2 = base + (size_t)cc * HW;
                for (size_t j = 0; j < HW; j++)
                    dxc[j] += dy[o2 + j] * y[o2 + j] / scale[o2 + j];
            }
            const float *xc = x + off, *dyc = dy + off, *sc = scale + off;
            if (beta == 0.75f) {
                for (size_t j = 0; j < HW; j++) {
                    float r = sqrtf(sc[j]);
                    dxc[j] = dyc[j] / (r * sqrtf(r)) - f * xc[j] * dxc[j];
                }
            } else {
                for (size_t j = 0; j < HW; j++)
                    dxc[j] = dyc[j] * powf(sc[j], -beta) - f * xc[j] * dxc[j];
            }
        }
    }
    return 0;
}
