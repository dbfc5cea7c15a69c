/* Shapes under every layer file: element counts and the convolution's
 * geometry check (model_conv_shape), which spec.c, conv.c, conv_winograd.c
 * and the backends call; this file calls nothing else in model/. */
#include "model/model.h"

size_t model_shape_count(model_shape_t s) {
    if (s.n <= 0 || s.c <= 0 || s.h <= 0 || s.w <= 0) return 0;
    return (size_t)s.n * (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

int model_conv_shape(const model_conv_param_t *p, model_shape_t in, model_shape_t *out,
                     util_err_t *err) {
    if (!p) return util_fail(err, "conv: no parameters given");
    if (in.n <= 0 || in.c <= 0 || in.h <= 0 || in.w <= 0 || in.n > MODEL_MAX_DIM ||
        in.c > MODEL_MAX_DIM || in.h > MODEL_MAX_DIM || in.w > MODEL_MAX_DIM)
        return util_fail(err, "conv: input shape %dx%dx%dx%d is not a valid NCHW shape", in.n, in.c,
                         in.h, in.w);
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
