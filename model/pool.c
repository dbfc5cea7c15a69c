/* Overlapping max pooling (section 3.4 of the paper: z = 3, s = 2). */
#include "model/internal.h"

#include <float.h>
#include <string.h>

static int pooled(int size, const model_pool_param_t *p) {
    int span = size + 2 * p->pad - p->kernel;
    int o = (p->ceil_mode ? (span + p->stride - 1) / p->stride : span / p->stride) + 1;
    /* The last window must start inside the input or its left padding. */
    if (p->ceil_mode && (o - 1) * p->stride >= size + p->pad) o--;
    return o;
}

int model_pool_shape(const model_pool_param_t *p, model_shape_t in, model_shape_t *out,
                     util_err_t *err) {
    if (!p) return util_fail(err, "maxpool: no parameters given");
    if (model_shape_count(in) == 0 || in.h > MODEL_MAX_DIM || in.w > MODEL_MAX_DIM ||
        model_shape_count(in) > MODEL_MAX_ELEMS)
        return util_fail(err, "maxpool: input shape %dx%dx%dx%d is not valid", in.n, in.c, in.h,
                         in.w);
    if (p->kernel < 1 || p->stride < 1 || p->pad < 0 || p->kernel > 1024 || p->stride > 1024)
        return util_fail(err, "maxpool: impossible settings (kernel %d, stride %d, pad %d)",
                         p->kernel, p->stride, p->pad);
    if (2 * p->pad > p->kernel)
        return util_fail(err, "maxpool: pad %d is more than half the kernel %d", p->pad, p->kernel);
    if (in.h + 2 * p->pad < p->kernel || in.w + 2 * p->pad < p->kernel)
        return util_fail(err, "maxpool: kernel %d does not fit a %dx%d input with pad %d",
                         p->kernel, in.h, in.w, p->pad);
    if (out) *out = (model_shape_t){in.n, in.c, pooled(in.h, p), pooled(in.w, p)};
    return 0;
}

int model_pool_forward(const model_pool_param_t *p, model_shape_t in, const float *x, float *y,
                       int32_t *argmax, util_err_t *err) {
    model_shape_t o = {0, 0, 0, 0};
    if (model_pool_shape(p, in, &o, err)) return -1;
    if (!x || !y || !argmax) return util_fail(err, "maxpool forward: NULL buffer");
    const int planes = in.n * in.c, H = in.h, W = in.w, k = p->kernel, s = p->stride;
    const size_t ip = (size_t)H * W, op = (size_t)o.h * o.w;

#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * ip;
        float *yp = y + pl * op;
        int32_t *ap = argmax + pl * op;
        for (int oy = 0; oy < o.h; oy++) {
            int y0 = oy * s - p->pad, y1 = y0 + k;
            if (y0 < 0) y0 = 0;
            if (y1 > H) y1 = H;
            for (int ox = 0; ox < o.w; ox++) {
                int x0 = ox * s - p->pad, x1 = x0 + k;
                float best;
                int32_t bi;
                if (k == 3 && y1 - y0 == 3 && x0 >= 0 && x0 + 3 <= W) {
                    /* The paper's 3x3 window, wholly inside: unrolled. */
                    const float *r0 = xp + y0 * W + x0, *r1 = r0 + W, *r2 = r1 + W;
                    int32_t base = y0 * W + x0;
                    best = r0[0], bi = base;
                    if (r0[1] > best) best = r0[1], bi = base + 1;
                    if (r0[2] > best) best = r0[2], bi = base + 2;
                    if (r1[0] > best) best = r1[0], bi = base + W;
                    if (r1[1] > best) best = r1[1], bi = base + W + 1;
                    if (r1[2] > best) best = r1[2], bi = base + W + 2;
                    if (r2[0] > best) best = r2[0], bi = base + 2 * W;
                    if (r2[1] > best) best = r2[1], bi = base + 2 * W + 1;
                    if (r2[2] > best) best = r2[2], bi = base + 2 * W + 2;
                } else {
                    if (x0 < 0) x0 = 0;
                    if (x1 > W) x1 = W;
                    best = -FLT_MAX;
                    bi = y0 * W + x0;
                    for (int yy = y0; yy < y1; yy++)
                        for (int xx = x0; xx < x1; xx++) {
                            float v = xp[yy * W + xx];
                            if (v > best) {
                                best = v;
                                bi = yy * W + xx;
                            }
                        }
                }
                yp[oy * o.w + ox] = best;
                ap[oy * o.w + ox] = bi;
            }
        }
    }
    return 0;
}

int model_pool_backward(const model_pool_param_t *p, model_shape_t in, const float *dy,
                        const int32_t *argmax, float *dx, util_err_t *err) {
    model_shape_t o = {0, 0, 0, 0};
    if (model_pool_shape(p, in, &o, err)) return -1;
    if (!dy || !argmax || !dx) return util_fail(err, "maxpool backward: NULL buffer");
    const int planes = in.n * in.c;
    const size_t ip = (size_t)in.h * in.w, op = (size_t)o.h * o.w;

#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        float *dxp = dx + pl * ip;
        const float *dyp = dy + pl * op;
        const int32_t *ap = argmax + pl * op;
        memset(dxp, 0, sizeof(float) * ip);
        for (size_t j = 0; j < op; j++) dxp[ap[j]] += dyp[j];
    }
    return 0;
}
