/* Convolution with stride, padding and groups, as im2col + sgemm per image.
 * Images are spread over threads (each sgemm then runs single-threaded inside
 * the parallel region); a batch of one runs one multi-threaded sgemm per group. */
#include "model/internal.h"

#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

size_t model_shape_count(model_shape_t s) {
    if (s.n <= 0 || s.c <= 0 || s.h <= 0 || s.w <= 0) return 0;
    return (size_t)s.n * (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

int model_conv_shape(const model_conv_param_t *p, model_shape_t in, model_shape_t *out,
                     util_err_t *err) {
    if (!p) return util_fail(err, "conv: no parameters given");
    if (in.n <= 0 || in.c <= 0 || in.h <= 0 || in.w <= 0 || in.n > MODEL_MAX_DIM ||
        in.c > MODEL_MAX_DIM || in.h > MODEL_MAX_DIM || in.w > MODEL_MAX_DIM)
        return util_fail(err, "conv: input shape %dx%dx%dx%d is not a valid NCHW shape", in.n,
                         in.c, in.h, in.w);
    if (p->in_c != in.c)
        return util_fail(err, "conv: expects %d input channels, input has %d", p->in_c, in.c);
    if (p->groups < 1 || p->out_c < 1 || p->kernel < 1 || p->stride < 1 || p->pad < 0 ||
        p->out_c > MODEL_MAX_DIM || p->kernel > 1024 || p->stride > 1024 || p->pad > 1024)
        return util_fail(err,
                         "conv: impossible settings (out %d, kernel %d, stride %d, pad %d, "
                         "groups %d)",
                         p->out_c, p->kernel, p->stride, p->pad, p->groups);
    if (p->in_c % p->groups || p->out_c % p->groups)
        return util_fail(err, "conv: %d input and %d output channels do not split into %d groups",
                         p->in_c, p->out_c, p->groups);
    if (in.h + 2 * p->pad < p->kernel || in.w + 2 * p->pad < p->kernel)
        return util_fail(err, "conv: kernel %d does not fit a %dx%d input with pad %d", p->kernel,
                         in.h, in.w, p->pad);
    model_shape_t o = {in.n, p->out_c, (in.h + 2 * p->pad - p->kernel) / p->stride + 1,
                       (in.w + 2 * p->pad - p->kernel) / p->stride + 1};
    size_t col = (size_t)(p->in_c / p->groups) * (size_t)p->kernel * (size_t)p->kernel *
                 (size_t)o.h * (size_t)o.w;
    if (model_shape_count(o) > MODEL_MAX_ELEMS || model_shape_count(in) > MODEL_MAX_ELEMS ||
        col > MODEL_MAX_ELEMS)
        return util_fail(err, "conv: %dx%dx%dx%d output is too large", o.n, o.c, o.h, o.w);
    if (out) *out = o;
    return 0;
}

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

/* col (C*k*k, Ho*Wo) from C planes of x (H, W). */
static void im2col(const float *x, int C, int H, int W, int k, int s, int pad, int Ho, int Wo,
                   float *col) {
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * H * W;
        for (int ki = 0; ki < k; ki++) {
            int ylo, yhi;
            valid_range(H, Ho, s, pad, ki, &ylo, &yhi);
            for (int kj = 0; kj < k; kj++) {
                float *dst = col + ((size_t)(c * k + ki) * k + kj) * Ho * Wo;
                int xlo, xhi;
                valid_range(W, Wo, s, pad, kj, &xlo, &xhi);
                if (ylo > 0) memset(dst, 0, sizeof(float) * (size_t)ylo * Wo);
                for (int oy = ylo; oy < yhi; oy++) {
                    float *d = dst + (size_t)oy * Wo;
                    const float *src = xc + (size_t)(oy * s - pad + ki) * W - pad + kj;
                    for (int ox = 0; ox < xlo; ox++) d[ox] = 0.0f;
                    if (s == 1) {
                        memcpy(d + xlo, src + xlo, sizeof(float) * (size_t)(xhi - xlo));
                    } else {
                        for (int ox = xlo; ox < xhi; ox++) d[ox] = src[ox * s];
                    }
                    for (int ox = xhi; ox < Wo; ox++) d[ox] = 0.0f;
                }
                if (yhi < Ho) memset(dst + (size_t)yhi * Wo, 0, sizeof(float) * (size_t)(Ho - yhi) * Wo);
            }
        }
    }
}

/* x (C planes, H, W) += col2im(col). */
static void col2im_add(const float *col, int C, int H, int W, int k, int s, int pad, int Ho, int Wo,
                       float *x) {
    for (int c = 0; c < C; c++) {
        float *xc = x + (size_t)c * H * W;
        for (int ki = 0; ki < k; ki++) {
            int ylo, yhi;
            valid_range(H, Ho, s, pad, ki, &ylo, &yhi);
            for (int kj = 0; kj < k; kj++) {
                const float *srcrow = col + ((size_t)(c * k + ki) * k + kj) * Ho * Wo;
                int xlo, xhi;
                valid_range(W, Wo, s, pad, kj, &xlo, &xhi);
                for (int oy = ylo; oy < yhi; oy++) {
                    const float *src = srcrow + (size_t)oy * Wo;
                    float *d = xc + (size_t)(oy * s - pad + ki) * W - pad + kj;
                    if (s == 1) {
                        for (int ox = xlo; ox < xhi; ox++) d[ox] += src[ox];
                    } else {
                        for (int ox = xlo; ox < xhi; ox++) d[ox * s] += src[ox];
                    }
                }
            }
        }
    }
}

int model_conv_forward(model_workspace_t *ws, const model_conv_param_t *p, model_shape_t in,
                       const float *x, const float *w, const float *b, float *y, util_err_t *err) {
    model_shape_t o = {0, 0, 0, 0};
    if (model_conv_shape(p, in, &o, err)) return -1;
    if (!ws || !x || !w || !b || !y) return util_fail(err, "conv forward: NULL buffer");
    const int G = p->groups, Cg = p->in_c / G, Mg = p->out_c / G, k = p->kernel;
    const int K = Cg * k * k, HWo = o.h * o.w;
    const size_t in_img = (size_t)in.c * in.h * in.w, out_img = (size_t)o.c * HWo;
    const int direct = (k == 1 && p->stride == 1 && p->pad == 0);
    if (!direct && ws_reserve(ws, WS_COL, (size_t)K * HWo, err)) return -1;
    const int T = ws_threads(ws);

#pragma omp parallel for num_threads(T) schedule(static) if (in.n > 1)
    for (int i = 0; i < in.n; i++) {
        float *col = direct ? NULL : ws_buf(ws, WS_COL, thread_id());
        for (int g = 0; g < G; g++) {
            const float *xg = x + i * in_img + (size_t)g * Cg * in.h * in.w;
            float *yg = y + i * out_img + (size_t)g * Mg * HWo;
            const float *src = xg;
            if (!direct) {
                im2col(xg, Cg, in.h, in.w, k, p->stride, p->pad, o.h, o.w, col);
                src = col;
            }
            for (int m = 0; m < Mg; m++) {
                float bv = b[g * Mg + m];
                float *row = yg + (size_t)m * HWo;
                for (int j = 0; j < HWo; j++) row[j] = bv;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Mg, HWo, K, 1.0f,
                        w + (size_t)g * Mg * K, K, src, HWo, 1.0f, yg, HWo);
        }
    }
    return 0;
}

int model_conv_backward(model_workspace_t *ws, const model_conv_param_t *p, model_shape_t in,
                        const float *x, const float *w, const float *dy, float *dx, float *dw,
                        float *db, util_err_t *err) {
    model_shape_t o = {0, 0, 0, 0};
    if (model_conv_shape(p, in, &o, err)) return -1;
    if (!ws || !x || !w || !dy || !dw || !db) return util_fail(err, "conv backward: NULL buffer");
    const int G = p->groups, Cg = p->in_c / G, Mg = p->out_c / G, k = p->kernel;
    const int K = Cg * k * k, HWo = o.h * o.w;
    const size_t in_img = (size_t)in.c * in.h * in.w, out_img = (size_t)o.c * HWo;
    const size_t wcount = (size_t)p->out_c * K;
    if (ws_reserve(ws, WS_COL, 2 * (size_t)K * HWo, err) ||
        ws_reserve(ws, WS_GRAD_W, wcount, err) || ws_reserve(ws, WS_GRAD_B, (size_t)p->out_c, err))
        return -1;
    const int T = ws_threads(ws);
    const int used = in.n < T ? in.n : T;
    for (int t = 0; t < used; t++) {
        memset(ws_buf(ws, WS_GRAD_W, t), 0, sizeof(float) * wcount);
        memset(ws_buf(ws, WS_GRAD_B, t), 0, sizeof(float) * (size_t)p->out_c);
    }

#pragma omp parallel for num_threads(T) schedule(static) if (in.n > 1)
    for (int i = 0; i < in.n; i++) {
        int tid = thread_id();
        float *col = ws_buf(ws, WS_COL, tid), *dcol = col + (size_t)K * HWo;
        float *dwt = ws_buf(ws, WS_GRAD_W, tid), *dbt = ws_buf(ws, WS_GRAD_B, tid);
        if (dx) memset(dx + i * in_img, 0, sizeof(float) * in_img);
        for (int g = 0; g < G; g++) {
            const float *xg = x + i * in_img + (size_t)g * Cg * in.h * in.w;
            const float *dyg = dy + i * out_img + (size_t)g * Mg * HWo;
            im2col(xg, Cg, in.h, in.w, k, p->stride, p->pad, o.h, o.w, col);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Mg, K, HWo, 1.0f, dyg, HWo, col,
                        HWo, 1.0f, dwt + (size_t)g * Mg * K, K);
            for (int m = 0; m < Mg; m++) {
                const float *row = dyg + (size_t)m * HWo;
                float s = 0.0f;
                for (int j = 0; j < HWo; j++) s += row[j];
                dbt[g * Mg + m] += s;
            }
            if (dx) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, HWo, Mg, 1.0f,
                            w + (size_t)g * Mg * K, K, dyg, HWo, 0.0f, dcol, HWo);
                col2im_add(dcol, Cg, in.h, in.w, k, p->stride, p->pad, o.h, o.w,
                           dx + i * in_img + (size_t)g * Cg * in.h * in.w);
            }
        }
    }

#pragma omp parallel for num_threads(T) schedule(static)
    for (size_t j = 0; j < wcount; j++) {
        float s = 0.0f;
        for (int t = 0; t < used; t++) s += ws_buf(ws, WS_GRAD_W, t)[j];
        dw[j] = s;
    }
    for (int j = 0; j < p->out_c; j++) {
        float s = 0.0f;
        for (int t = 0; t < used; t++) s += ws_buf(ws, WS_GRAD_B, t)[j];
        db[j] = s;
    }
    return 0;
}
