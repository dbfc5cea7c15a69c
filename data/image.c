/* Images in memory (create, free, clone, channel conversion) and what every
 * decoder shares (the size check, alpha over the background): under codec.c,
 * codec_<format>.c and orient.c, which all call it and which it never calls. */
#include "data/internal.h"

#include <stdlib.h>
#include <string.h>

int image_check_size(int w, int h, size_t max_pixels, const char *name, util_err_t *err) {
    if (!name) name = "image";
    if (max_pixels == 0 || max_pixels > DATA_MAX_PIXELS) max_pixels = DATA_MAX_PIXELS;
    if (w <= 0 || h <= 0)
        return util_fail_kind(err, UTIL_ERR_INVALID, "%s: invalid image size %dx%d", name, w, h);
    if (w > DATA_MAX_SIDE || h > DATA_MAX_SIDE)
        return util_fail_kind(err, UTIL_ERR_LIMIT,
                              "%s: image size %dx%d exceeds the limit of %d pixels per side", name,
                              w, h, DATA_MAX_SIDE);
    if ((size_t)w * (size_t)h > max_pixels)
        return util_fail_kind(err, UTIL_ERR_LIMIT,
                              "%s: image size %dx%d (%zu pixels) exceeds the limit of %zu pixels",
                              name, w, h, (size_t)w * (size_t)h, max_pixels);
    return 0;
}

data_image_t *data_image_create(int w, int h, int c, util_err_t *err) {
    if (c != 1 && c != 3) {
        util_fail(err, "image: %d channels (expected 1 or 3)", c);
        return NULL;
    }
    if (image_check_size(w, h, 0, "image", err)) return NULL;
    data_image_t *im = malloc(sizeof *im);
    uint8_t *px = calloc((size_t)w * (size_t)h * (size_t)c, 1);
    if (!im || !px) {
        free(im);
        free(px);
        util_fail(err, "image: out of memory for %dx%dx%d", w, h, c);
        return NULL;
    }
    im->w = w;
    im->h = h;
    im->c = c;
    im->pixels = px;
    return im;
}

void data_image_free(data_image_t *im) {
    if (!im) return;
    free(im->pixels);
    free(im);
}

data_image_t *data_image_clone(const data_image_t *im, util_err_t *err) {
    data_image_t *out = data_image_create(im->w, im->h, im->c, err);
    if (out) memcpy(out->pixels, im->pixels, (size_t)im->w * im->h * im->c);
    return out;
}

data_image_t *data_image_convert(const data_image_t *im, int c, util_err_t *err) {
    if (c == im->c) return data_image_clone(im, err);
    data_image_t *out = data_image_create(im->w, im->h, c, err);
    if (!out) return NULL;
    size_t n = (size_t)im->w * im->h;
    const uint8_t *s = im->pixels;
    uint8_t *d = out->pixels;
    if (c == 3) {
        for (size_t i = 0; i < n; i++)
            d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = s[i];
    } else {
        /* BT.601 luma in 16-bit fixed point: 19595 + 38470 + 7471 = 65536. */
        for (size_t i = 0; i < n; i++)
            d[i] = (uint8_t)((19595u * s[3 * i] + 38470u * s[3 * i + 1] + 7471u * s[3 * i + 2] +
                              32768u) >>
                             16);
    }
    return out;
}

void composite_rgba(const uint8_t *rgba, uint8_t *rgb, size_t n) {
    const unsigned bg = DATA_ALPHA_BACKGROUND;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = rgba + 4 * i;
        unsigned a = s[3];
        for (int k = 0; k < 3; k++)
            rgb[3 * i + k] = (uint8_t)((a * s[k] + (255 - a) * bg + 127) / 255);
    }
}
