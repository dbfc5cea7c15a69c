/* Overlapping max pooling (section 3.4 of the paper: z = 3, s = 2). */
#include "model/internal.h"

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

/* One window, clipped to the input: the first maximum in row-major order
 * (strict >), as PyTorch and Caffe pick it. */
static void window_max(const float *xp, int H, int W, int y0, int x0, int k, float *best_out,
                       int32_t *idx_out) {
    int y1 = y0 + k, x1 = x0 + k;
    if (y0 < 0) y0 = 0;
    if (y1 > H) y1 = H;
    if (x0 < 0) x0 = 0;
    if (x1 > W) x1 = W;
    /* Start from the window's first input, not -FLT_MAX: a window of -inf
     * gives -inf, as the fast path and PyTorch do. (Every window holds an
     * input: pad <= kernel / 2 and no window starts in the padding only.) */
    int32_t bi = y0 * W + x0;
    float best = xp[bi];
    for (int yy = y0; yy < y1; yy++)
        for (int xx = x0; xx < x1; xx++) {
            float v = xp[yy * W + xx];
            if (v > best) {
                best = v;
                bi = yy * W + xx;
            }
        }
    *best_out = best;
    *idx_out = bi;
}

/* How many of `out` 3-wide stride-2 windows (no padding) lie wholly inside
 * `size`: with ceil rounding the last one may hang over the edge. */
static int inside_windows(int size, int out) {
    const int inside = size >= 3 ? (size - 3) / 2 + 1 : 0;
    return inside < out ? inside : out;
}

/* best, at: the first maximum (strict >) of r[x], r[x + 1], r[x + 2] and its
 * column. Written so GCC if-converts it: with constant offsets for `at` it
 * keeps branches and the loop below stays scalar. */
#define FIRST_MAX3(r, x, best, at)                                                                 \
    float best = (r)[x];                                                                           \
    int32_t at = (x);                                                                              \
    at = (r)[(x) + 1] > best ? (x) + 1 : at;                                                       \
    best = (r)[(x) + 1] > best ? (r)[(x) + 1] : best;                                              \
    at = (r)[(x) + 2] > best ? (x) + 2 : at;                                                       \
    best = (r)[(x) + 2] > best ? (r)[(x) + 2] : best

/* One output row of the paper's 3x3 stride-2 window over input rows r0, r1,
 * r2 (row stride W; `base` the plane index of r0[0]), separably and without
 * buffers: each row's maximum over the window's three columns (the first in
 * the row), then the first row holding the largest. That is the row-major
 * first maximum, branch-free; the loop vectorises (stride-2 loads). Doing
 * the row two windows share twice costs less than the plane-sized row
 * buffers it once went through (a malloc per thread per call, two more
 * passes over memory). */
static void pool3s2_row(const float *restrict r0, const float *restrict r1,
                        const float *restrict r2, int nx, int W, int32_t base, float *restrict yr,
                        int32_t *restrict ar) {
    for (int ox = 0; ox < nx; ox++) {
        FIRST_MAX3(r0, 2 * ox, m0, i0);
        FIRST_MAX3(r1, 2 * ox, m1, i1);
        FIRST_MAX3(r2, 2 * ox, m2, i2);
        float best = m0;
        int32_t at = i0;
        at = m1 > best ? W + i1 : at;
        best = m1 > best ? m1 : best;
        at = m2 > best ? 2 * W + i2 : at;
        best = m2 > best ? m2 : best;
        yr[ox] = best;
        ar[ox] = base + at;
    }
}

/* A plane of the 3x3 stride-2 window: rows of windows wholly inside by
 * pool3s2_row, the rest (ceil rounding's last row and column) the general
 * way. */
static void pool3s2_plane(const float *xp, int H, int W, model_shape_t o, float *yp, int32_t *ap) {
    const int nx = inside_windows(W, o.w), ny = inside_windows(H, o.h);
    for (int oy = 0; oy < o.h; oy++) {
        float *yr = yp + (size_t)oy * o.w;
        int32_t *ar = ap + (size_t)oy * o.w;
        int from = 0;
        if (oy < ny) {
            const float *r0 = xp + (size_t)(2 * oy) * W;
            pool3s2_row(r0, r0 + W, r0 + 2 * W, nx, W, 2 * oy * W, yr, ar);
            from = nx;
        }
        for (int ox = from; ox < o.w; ox++)
            window_max(xp, H, W, 2 * oy, 2 * ox, 3, &yr[ox], &ar[ox]);
    }
}

int model_pool_forward(const model_pool_param_t *p, model_shape_t in, const float *x, float *y,
                       int32_t *argmax, util_err_t *err) {
    model_shape_t o = {0, 0, 0, 0};
    if (model_pool_shape(p, in, &o, err)) return -1;
    if (!x || !y || !argmax) return util_fail(err, "maxpool forward: NULL buffer");
    const int planes = in.n * in.c, H = in.h, W = in.w, k = p->kernel, s = p->stride;
    const size_t ip = (size_t)H * W, op = (size_t)o.h * o.w;
    const int separable = k == 3 && s == 2 && p->pad == 0;

#pragma omp parallel for schedule(static)
    for (int pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * ip;
        float *yp = y + pl * op;
        int32_t *ap = argmax + pl * op;
        if (separable) {
            pool3s2_plane(xp, H, W, o, yp, ap);
            continue;
        }
        for (int oy = 0; oy < o.h; oy++)
            for (int ox = 0; ox < o.w; ox++)
                window_max(xp, H, W, oy * s - p->pad, ox * s - p->pad, k, &yp[oy * o.w + ox],
                           &ap[oy * o.w + ox]);
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
        for (size_t j = 0; j < op; j++)
            dxp[ap[j]] += dyp[j];
    }
    return 0;
}
