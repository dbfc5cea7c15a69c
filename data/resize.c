/* Resampling (area when shrinking, bilinear when enlarging), the centre
 * square of the paper's preprocessing, padding, and the stored geometry. */
#include "data/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Taps of one axis: output o (of the range asked for) reads in[start[o] ..
 * start[o] + count[o]) with weights w[offset[o] ..]. */
typedef struct taps {
    int *start, *count, *offset;
    float *w;
} taps_t;

static void taps_free(taps_t *t) {
    free(t->start);
    free(t->count);
    free(t->offset);
    free(t->w);
}

/* Taps for outputs [o0, o0 + n) of an n_in -> n_out resampling. */
static int taps_make(int n_in, int n_out, int o0, int n, taps_t *t) {
    double s = (double)n_in / n_out;
    int max_taps = n_out < n_in ? (int)ceil(s) + 2 : 2;
    t->start = malloc(sizeof(int) * (size_t)n);
    t->count = malloc(sizeof(int) * (size_t)n);
    t->offset = malloc(sizeof(int) * (size_t)n);
    t->w = malloc(sizeof(float) * (size_t)n * (size_t)max_taps);
    if (!t->start || !t->count || !t->offset || !t->w) {
        taps_free(t);
        return -1;
    }
    for (int k = 0; k < n; k++) {
        int o = o0 + k, cnt = 0;
        float *w = t->w + (size_t)k * max_taps;
        t->offset[k] = k * max_taps;
        if (n_out < n_in) {
            /* Area: the footprint [o*s, (o+1)*s) against pixels [i, i+1). */
            double a = o * s, b = (o + 1) * s;
            int i0 = (int)floor(a), i1 = (int)ceil(b);
            if (i1 > n_in) i1 = n_in;
            t->start[k] = i0;
            for (int i = i0; i < i1 && cnt < max_taps; i++) {
                double lo = a > i ? a : i, hi = b < i + 1 ? b : i + 1;
                w[cnt++] = (float)((hi - lo) / s);
            }
        } else {
            /* Bilinear with pixel centres aligned: centre of o is at (o + 0.5) * s - 0.5. */
            double x = (o + 0.5) * s - 0.5;
            if (x < 0) x = 0;
            if (x > n_in - 1) x = n_in - 1;
            int i0 = (int)floor(x);
            double f = x - i0;
            t->start[k] = i0;
            w[cnt++] = (float)(1.0 - f);
            if (i0 + 1 < n_in && f > 0) w[cnt++] = (float)f;
        }
        t->count[k] = cnt;
    }
    return 0;
}

/* Resamples im as if to full_w x full_h and returns the out_w x out_h window
 * at (x0, y0) of that result. */
static data_image_t *resample_window(const data_image_t *im, int full_w, int full_h, int x0, int y0,
                                     int out_w, int out_h, util_err_t *err) {
    data_image_t *out = data_image_create(out_w, out_h, im->c, err);
    if (!out) return NULL;
    taps_t tx = {0}, ty = {0};
    float *tmp = NULL;
    if (taps_make(im->w, full_w, x0, out_w, &tx) || taps_make(im->h, full_h, y0, out_h, &ty))
        goto oom;
    /* Input rows the vertical taps read. */
    int r0 = ty.start[0], r1 = ty.start[out_h - 1] + ty.count[out_h - 1];
    const int c = im->c;
    size_t row = (size_t)out_w * c;
    tmp = malloc(sizeof(float) * row * (size_t)(r1 - r0));
    if (!tmp) goto oom;
    for (int y = r0; y < r1; y++) {
        const uint8_t *src = im->pixels + (size_t)y * im->w * c;
        float *dst = tmp + (size_t)(y - r0) * row;
        for (int x = 0; x < out_w; x++) {
            const float *w = tx.w + tx.offset[x];
            const uint8_t *s = src + (size_t)tx.start[x] * c;
            for (int ch = 0; ch < c; ch++) {
                float acc = 0;
                for (int k = 0; k < tx.count[x]; k++)
                    acc += w[k] * s[k * c + ch];
                dst[x * c + ch] = acc;
            }
        }
    }
    for (int y = 0; y < out_h; y++) {
        const float *w = ty.w + ty.offset[y];
        const float *base = tmp + (size_t)(ty.start[y] - r0) * row;
        uint8_t *dst = out->pixels + (size_t)y * row;
        for (size_t j = 0; j < row; j++) {
            float acc = 0;
            for (int k = 0; k < ty.count[y]; k++)
                acc += w[k] * base[(size_t)k * row + j];
            int v = (int)(acc + 0.5f);
            dst[j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    free(tmp);
    taps_free(&tx);
    taps_free(&ty);
    return out;
oom:
    free(tmp);
    taps_free(&tx);
    taps_free(&ty);
    data_image_free(out);
    util_fail(err, "resize: out of memory");
    return NULL;
}

data_image_t *data_resize(const data_image_t *im, int w, int h, util_err_t *err) {
    if (image_check_size(w, h, 0, "resize target", err)) return NULL;
    if (w == im->w && h == im->h) return data_image_clone(im, err);
    return resample_window(im, w, h, 0, 0, w, h, err);
}

data_image_t *data_resize_center_square(const data_image_t *im, int side, util_err_t *err) {
    if (image_check_size(side, side, 0, "resize target", err)) return NULL;
    if (im->w == side && im->h == side) return data_image_clone(im, err);
    int full_w, full_h;
    if (im->w <= im->h) {
        full_w = side;
        full_h = (int)floor((double)im->h * side / im->w + 0.5);
    } else {
        full_h = side;
        full_w = (int)floor((double)im->w * side / im->h + 0.5);
    }
    if (full_w < side) full_w = side;
    if (full_h < side) full_h = side;
    if (full_w > DATA_MAX_SIDE || full_h > DATA_MAX_SIDE) {
        util_fail(err, "resize: %dx%d scaled to shorter side %d would be %dx%d, over the limit",
                  im->w, im->h, side, full_w, full_h);
        return NULL;
    }
    return resample_window(im, full_w, full_h, (full_w - side) / 2, (full_h - side) / 2, side, side,
                           err);
}

data_image_t *data_image_pad(const data_image_t *im, int pad, util_err_t *err) {
    if (pad < 0) {
        util_fail(err, "pad: negative padding %d", pad);
        return NULL;
    }
    data_image_t *out = data_image_create(im->w + 2 * pad, im->h + 2 * pad, im->c, err);
    if (!out) return NULL;
    size_t row = (size_t)im->w * im->c;
    for (int y = 0; y < im->h; y++)
        memcpy(out->pixels + ((size_t)(y + pad) * out->w + pad) * im->c,
               im->pixels + (size_t)y * row, row);
    return out;
}

data_image_t *data_prep_image(const data_image_t *im, const data_prep_t *prep, util_err_t *err) {
    if (prep->channels != 0 && prep->channels != 1 && prep->channels != 3) {
        util_fail(err, "prep: %d channels (expected 0, 1 or 3)", prep->channels);
        return NULL;
    }
    if (prep->short_side < 0 || prep->pad < 0) {
        util_fail(err, "prep: negative size (short_side %d, pad %d)", prep->short_side, prep->pad);
        return NULL;
    }
    data_image_t *cur = NULL;
    const data_image_t *src = im;
    if (prep->channels && prep->channels != im->c) {
        cur = data_image_convert(im, prep->channels, err);
        if (!cur) return NULL;
        src = cur;
    }
    if (prep->short_side > 0 && !(src->w == prep->short_side && src->h == prep->short_side)) {
        data_image_t *next = data_resize_center_square(src, prep->short_side, err);
        data_image_free(cur);
        if (!next) return NULL;
        cur = next;
        src = cur;
    }
    if (prep->pad > 0) {
        data_image_t *next = data_image_pad(src, prep->pad, err);
        data_image_free(cur);
        return next;
    }
    return cur ? cur : data_image_clone(im, err);
}

data_decode_opts_t data_prep_decode_opts(const data_prep_t *prep, size_t max_pixels) {
    return (data_decode_opts_t){prep->channels, prep->short_side, max_pixels, 0};
}

data_image_t *data_prep_decode(const void *buf, size_t len, const char *name,
                               const data_prep_t *prep, size_t max_pixels, util_err_t *err) {
    const data_decode_opts_t o = data_prep_decode_opts(prep, max_pixels);
    data_image_t *im = data_decode(buf, len, name, &o, err);
    if (!im) return NULL;
    data_image_t *out = data_prep_image(im, prep, err);
    data_image_free(im);
    return out;
}

data_image_t *data_prep_load(const data_dataset_t *ds, size_t i, const data_prep_t *prep,
                             int *label, util_err_t *err) {
    const data_decode_opts_t o = data_prep_decode_opts(prep, 0);
    data_image_t *im = data_dataset_load(ds, i, &o, label, err);
    if (!im) return NULL;
    /* Fast path: nothing to do (the IDX images at their own size). */
    if ((!prep->channels || prep->channels == im->c) &&
        (!prep->short_side || (im->w == prep->short_side && im->h == prep->short_side)) &&
        !prep->pad)
        return im;
    data_image_t *out = data_prep_image(im, prep, err);
    if (!out) {
        char name[512];
        data_dataset_item_name(ds, i, name, sizeof name);
        util_fail_prefix(err, "%s", name);
    }
    data_image_free(im);
    return out;
}
