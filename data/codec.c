/* Images in memory, and the codecs: JPEG through TurboJPEG, PNG through
 * libpng's simplified API. */
#include "data/internal.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

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

int data_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *out_len,
                   util_err_t *err) {
    *out = util_read_file(path, max_bytes ? max_bytes : (size_t)1 << 30, out_len, err);
    if (!*out) return -1;
    if (*out_len == 0) {
        free(*out);
        *out = NULL;
        return util_fail(err, "%s: empty file (0 bytes)", path);
    }
    return 0;
}

/* ------------------------------------------------------------------ JPEG */

static data_image_t *decode_jpeg(const uint8_t *buf, size_t len, const char *name,
                                 const data_decode_opts_t *opts, util_err_t *err) {
    tjhandle tj = tjInitDecompress();
    if (!tj) {
        util_fail(err, "%s: cannot create a JPEG decoder", name);
        return NULL;
    }
    data_image_t *im = NULL;
    int w = 0, h = 0, subsamp = 0, colorspace = 0;
    if (tjDecompressHeader3(tj, buf, (unsigned long)len, &w, &h, &subsamp, &colorspace) != 0) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: not a readable JPEG: %s", name,
                       tjGetErrorStr2(tj));
        goto done;
    }
    /* Before any allocation: the header's size is what a hostile file lies about. */
    if (image_check_size(w, h, opts->max_pixels, name, err)) goto done;

    int c = opts->channels ? opts->channels : (colorspace == TJCS_GRAY ? 1 : 3);
    int sw = w, sh = h;
    if (opts->min_short_side > 0) {
        int nsf = 0;
        tjscalingfactor *sf = tjGetScalingFactors(&nsf);
        double best = 1.0;
        for (int i = 0; sf && i < nsf; i++) {
            double s = (double)sf[i].num / sf[i].denom;
            if (s >= best) continue;
            int tw = TJSCALED(w, sf[i]), th = TJSCALED(h, sf[i]);
            if ((tw < th ? tw : th) >= opts->min_short_side) {
                best = s;
                sw = tw;
                sh = th;
            }
        }
    }
    im = data_image_create(sw, sh, c, err);
    if (!im) goto done;
    int flags = TJFLAG_STOPONWARNING;
#ifdef TJFLAG_LIMITSCANS
    flags |= TJFLAG_LIMITSCANS; /* a progressive file with thousands of scans cannot stall us */
#endif
    if (tjDecompress2(tj, buf, (unsigned long)len, im->pixels, sw, 0, sh,
                      c == 1 ? TJPF_GRAY : TJPF_RGB, flags) != 0) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: corrupt or truncated JPEG: %s", name,
                       tjGetErrorStr2(tj));
        data_image_free(im);
        im = NULL;
    }
done:
    tjDestroy(tj);
    return im;
}

/* ------------------------------------------------------------------- PNG */

static data_image_t *decode_png(const uint8_t *buf, size_t len, const char *name,
                                const data_decode_opts_t *opts, util_err_t *err) {
    png_image png;
    memset(&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&png, buf, len)) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: not a readable PNG: %s", name, png.message);
        png_image_free(&png);
        return NULL;
    }
    if (png.width > (png_uint_32)DATA_MAX_SIDE || png.height > (png_uint_32)DATA_MAX_SIDE) {
        util_fail_kind(err, UTIL_ERR_LIMIT,
                       "%s: image size %ux%u exceeds the limit of %d pixels per side", name,
                       (unsigned)png.width, (unsigned)png.height, DATA_MAX_SIDE);
        png_image_free(&png);
        return NULL;
    }
    int w = (int)png.width, h = (int)png.height;
    if (image_check_size(w, h, opts->max_pixels, name, err)) {
        png_image_free(&png);
        return NULL;
    }
    int c = opts->channels ? opts->channels : ((png.format & PNG_FORMAT_FLAG_COLOR) ? 3 : 1);
    png.format = c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    data_image_t *im = data_image_create(w, h, c, err);
    if (!im) {
        png_image_free(&png);
        return NULL;
    }
    png_color white = {255, 255, 255}; /* transparent parts become white */
    if (!png_image_finish_read(&png, &white, im->pixels, 0, NULL)) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: corrupt or truncated PNG: %s", name,
                       png.message);
        png_image_free(&png);
        data_image_free(im);
        return NULL;
    }
    png_image_free(&png);
    return im;
}

data_image_t *data_decode(const void *buf, size_t len, const char *name,
                          const data_decode_opts_t *opts, util_err_t *err) {
    static const data_decode_opts_t defaults = {0, 0, 0};
    if (!opts) opts = &defaults;
    if (!name) name = "image";
    if (opts->channels != 0 && opts->channels != 1 && opts->channels != 3) {
        util_fail_kind(err, UTIL_ERR_INVALID, "%s: cannot decode to %d channels (expected 1 or 3)",
                       name, opts->channels);
        return NULL;
    }
    if (!buf || len == 0) {
        util_fail_kind(err, UTIL_ERR_INVALID, "%s: empty file (0 bytes)", name);
        return NULL;
    }
    const uint8_t *b = buf;
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return decode_jpeg(b, len, name, opts, err);
    if (len >= 8 && memcmp(b, png_sig, 8) == 0) return decode_png(b, len, name, opts, err);
    char hex[40] = "";
    for (size_t i = 0; i < len && i < 4; i++)
        snprintf(hex + strlen(hex), sizeof hex - strlen(hex), " %02x", b[i]);
    util_fail_kind(err, UTIL_ERR_INVALID,
                   "%s: not a JPEG or PNG image (%zu bytes, starting with%s)", name, len, hex);
    return NULL;
}

data_image_t *data_image_read(const char *path, const data_decode_opts_t *opts, util_err_t *err) {
    uint8_t *buf;
    size_t len;
    if (data_read_file(path, 0, &buf, &len, err)) return NULL;
    data_image_t *im = data_decode(buf, len, path, opts, err);
    free(buf);
    return im;
}

int data_encode_jpeg(const data_image_t *im, int quality, uint8_t **out, size_t *out_len,
                     util_err_t *err) {
    *out = NULL;
    *out_len = 0;
    if (!im || (im->c != 1 && im->c != 3) || im->w <= 0 || im->h <= 0)
        return util_fail(err, "JPEG encode: invalid image");
    if (quality < 1 || quality > 100)
        return util_fail(err, "JPEG encode: quality %d outside 1..100", quality);
    tjhandle tj = tjInitCompress();
    if (!tj) return util_fail(err, "JPEG encode: cannot create an encoder");
    unsigned char *jbuf = NULL;
    unsigned long jlen = 0;
    int rc = tjCompress2(tj, im->pixels, im->w, 0, im->h, im->c == 1 ? TJPF_GRAY : TJPF_RGB, &jbuf,
                         &jlen, im->c == 1 ? TJSAMP_GRAY : TJSAMP_420, quality, 0);
    if (rc != 0) {
        util_fail(err, "JPEG encode: %s", tjGetErrorStr2(tj));
        tjFree(jbuf);
        tjDestroy(tj);
        return -1;
    }
    tjDestroy(tj);
    uint8_t *copy = malloc(jlen);
    if (!copy) {
        tjFree(jbuf);
        return util_fail(err, "JPEG encode: out of memory");
    }
    memcpy(copy, jbuf, jlen);
    tjFree(jbuf);
    *out = copy;
    *out_len = jlen;
    return 0;
}

int data_image_write_jpeg(const data_image_t *im, const char *path, int quality, util_err_t *err) {
    uint8_t *buf;
    size_t len;
    if (data_encode_jpeg(im, quality, &buf, &len, err)) return util_fail_prefix(err, "%s", path);
    int rc = util_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

int data_image_write_png(const data_image_t *im, const char *path, util_err_t *err) {
    if (!im || !im->pixels || !path) return util_fail(err, "png: NULL image or path");
    if (im->c != 1 && im->c != 3)
        return util_fail(err, "%s: PNG writer takes 1 or 3 channels, not %d", path, im->c);
    png_image png;
    memset(&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    png.width = (png_uint_32)im->w;
    png.height = (png_uint_32)im->h;
    png.format = im->c == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    /* Encoded in memory (a first call sizes it), then written atomically. */
    png_alloc_size_t len = 0;
    uint8_t *buf = NULL;
    if (!png_image_write_to_memory(&png, NULL, &len, 0, im->pixels, 0, NULL) ||
        !(buf = malloc(len ? len : 1)) ||
        !png_image_write_to_memory(&png, buf, &len, 0, im->pixels, 0, NULL)) {
        util_fail(err, "%s: cannot encode PNG: %s", path,
                  (png.warning_or_error & PNG_IMAGE_ERROR) ? png.message : "out of memory");
        png_image_free(&png);
        free(buf);
        return -1;
    }
    int rc = util_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}
