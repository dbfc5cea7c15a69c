/* The format dispatch of data_decode (by content), and the JPEG (TurboJPEG)
 * and PNG (libpng's simplified API) codecs; the other decoders live in
 * codec_<format>.c, images in memory in image.c. */
#include "data/internal.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

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

/* The orientation in the JPEG's EXIF APP1 segment; the markers before the
 * first scan are walked with every length checked against len. */
static int jpeg_orientation(const uint8_t *buf, size_t len) {
    size_t i = 2;
    while (i + 4 <= len) {
        if (buf[i] != 0xff) return 1;
        unsigned m = buf[i + 1];
        if (m == 0xff) { /* fill byte */
            i++;
            continue;
        }
        if (m == 0xda || m == 0xd9) return 1;        /* start of scan, end of image */
        if (m == 0x01 || (m >= 0xd0 && m <= 0xd7)) { /* no length field */
            i += 2;
            continue;
        }
        size_t seg = (size_t)buf[i + 2] << 8 | buf[i + 3];
        if (seg < 2 || i + 2 + seg > len) return 1;
        if (m == 0xe1 && seg >= 8 && memcmp(buf + i + 4, "Exif\0\0", 6) == 0)
            return exif_orientation(buf + i + 10, seg - 8);
        i += 2 + seg;
    }
    return 1;
}

/* Adobe's inverted CMYK (v = 255 * (1 - ink)) to RGB with the naive formula
 * R = 255 (1 - C)(1 - K), rounded as PIL's cmyk2rgb: with nk = v_K,
 * R = nk - round(ink_C * nk / 255). */
static void cmyk_to_rgb(const uint8_t *cmyk, uint8_t *rgb, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = cmyk + 4 * i;
        unsigned nk = s[3];
        for (int k = 0; k < 3; k++) {
            unsigned t = (255u - s[k]) * nk + 128u;
            rgb[3 * i + k] = (uint8_t)(nk - (((t >> 8) + t) >> 8));
        }
    }
}

static data_image_t *decode_jpeg(const uint8_t *buf, size_t len, const char *name,
                                 const data_decode_opts_t *opts, int *orientation,
                                 util_err_t *err) {
    tjhandle tj = tjInitDecompress();
    if (!tj) {
        util_fail(err, "%s: cannot create a JPEG decoder", name);
        return NULL;
    }
    data_image_t *im = NULL;
    uint8_t *cmyk = NULL;
    int w = 0, h = 0, subsamp = 0, colorspace = 0;
    if (tjDecompressHeader3(tj, buf, (unsigned long)len, &w, &h, &subsamp, &colorspace) != 0) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: not a readable JPEG: %s", name,
                       tjGetErrorStr2(tj));
        goto done;
    }
    /* Before any allocation: the header's size is what a hostile file lies about. */
    if (image_check_size(w, h, opts->max_pixels, name, err)) goto done;
    *orientation = jpeg_orientation(buf, len);

    const int is_cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
    int c = opts->channels ? opts->channels : (colorspace == TJCS_GRAY ? 1 : 3);
    if (is_cmyk) c = 3; /* converted to grey, when asked, by data_decode */
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
    if (is_cmyk && !(cmyk = malloc((size_t)sw * sh * 4))) {
        util_fail_kind(err, UTIL_ERR_LIMIT, "%s: out of memory for a %dx%d CMYK JPEG", name, sw,
                       sh);
        goto fail;
    }
    int flags = TJFLAG_STOPONWARNING;
#ifdef TJFLAG_LIMITSCANS
    flags |= TJFLAG_LIMITSCANS; /* a progressive file with thousands of scans cannot stall us */
#endif
    if (tjDecompress2(tj, buf, (unsigned long)len, is_cmyk ? cmyk : im->pixels, sw, 0, sh,
                      is_cmyk  ? TJPF_CMYK
                      : c == 1 ? TJPF_GRAY
                               : TJPF_RGB,
                      flags) != 0) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: corrupt or truncated JPEG: %s", name,
                       tjGetErrorStr2(tj));
        goto fail;
    }
    if (is_cmyk) cmyk_to_rgb(cmyk, im->pixels, (size_t)sw * sh);
    goto done;
fail:
    data_image_free(im);
    im = NULL;
done:
    free(cmyk);
    tjDestroy(tj);
    return im;
}

/* ------------------------------------------------------------------- PNG */

/* The orientation in a PNG's eXIf chunk (a TIFF header and IFD0, as in
 * JPEG's APP1). The chunks are walked by their lengths, each checked against
 * len; libpng's simplified API does not expose eXIf. */
static int png_orientation(const uint8_t *buf, size_t len) {
    size_t i = 8;
    while (len >= 12 && i <= len - 12) {
        const size_t n =
            (size_t)buf[i] << 24 | (size_t)buf[i + 1] << 16 | (size_t)buf[i + 2] << 8 | buf[i + 3];
        const uint8_t *type = buf + i + 4;
        if (n > len - 12 - i) return 1;
        if (memcmp(type, "eXIf", 4) == 0) return exif_orientation(buf + i + 8, n);
        if (memcmp(type, "IEND", 4) == 0) return 1;
        i += 12 + n;
    }
    return 1;
}

static data_image_t *decode_png(const uint8_t *buf, size_t len, const char *name,
                                const data_decode_opts_t *opts, int *orientation, util_err_t *err) {
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
    const int colour = (png.format & PNG_FORMAT_FLAG_COLOR) != 0;
    const int alpha = (png.format & PNG_FORMAT_FLAG_ALPHA) != 0;
    /* Alpha is read as straight RGBA and composited here, in sRGB values like
     * every other format (libpng's own background composes in linear light). */
    const int c = colour ? 3 : 1;
    png.format = colour ? (alpha ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB)
                        : (alpha ? PNG_FORMAT_GA : PNG_FORMAT_GRAY);
    data_image_t *im = data_image_create(w, h, c, err);
    uint8_t *rgba = NULL;
    if (im && alpha && !(rgba = malloc((size_t)w * h * (c + 1)))) {
        util_fail_kind(err, UTIL_ERR_LIMIT, "%s: out of memory for a %dx%d PNG", name, w, h);
        data_image_free(im);
        im = NULL;
    }
    if (!im) {
        png_image_free(&png);
        return NULL;
    }
    if (!png_image_finish_read(&png, NULL, rgba ? rgba : im->pixels, 0, NULL)) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: corrupt or truncated PNG: %s", name,
                       png.message);
        png_image_free(&png);
        data_image_free(im);
        free(rgba);
        return NULL;
    }
    png_image_free(&png);
    *orientation = png_orientation(buf, len);
    if (rgba && c == 3) composite_rgba(rgba, im->pixels, (size_t)w * h);
    for (size_t i = 0; rgba && c == 1 && i < (size_t)w * h; i++) {
        unsigned a = rgba[2 * i + 1];
        im->pixels[i] =
            (uint8_t)((a * rgba[2 * i] + (255 - a) * DATA_ALPHA_BACKGROUND + 127) / 255);
    }
    free(rgba);
    return im;
}

/* -------------------------------------------------------------- dispatch */

static const struct image_format {
    const char *name;
    image_decoder_fn decode;
} formats[] = {
    {"JPEG", decode_jpeg}, {"PNG", decode_png}, {"WebP", decode_webp}, {"GIF", decode_gif},
    {"TIFF", decode_tiff}, {"BMP", decode_bmp}, {"HEIF", decode_heif},
};

static const struct image_format *sniff(const uint8_t *b, size_t len) {
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff) return &formats[0];
    if (len >= 8 && memcmp(b, png_sig, 8) == 0) return &formats[1];
    if (len >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0) return &formats[2];
    if (len >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0))
        return &formats[3];
    /* Classic TIFF (42) and BigTIFF (43), either byte order. */
    if (len >= 4 && ((b[0] == 'I' && b[1] == 'I' && (b[2] == 42 || b[2] == 43) && b[3] == 0) ||
                     (b[0] == 'M' && b[1] == 'M' && b[2] == 0 && (b[3] == 42 || b[3] == 43))))
        return &formats[4];
    if (len >= 18 && b[0] == 'B' && b[1] == 'M') {
        uint32_t hs =
            (uint32_t)b[14] | (uint32_t)b[15] << 8 | (uint32_t)b[16] << 16 | (uint32_t)b[17] << 24;
        if (hs == 12 || hs == 40 || hs == 52 || hs == 56 || hs == 64 || hs == 108 || hs == 124)
            return &formats[5];
    }
    /* ISO base media file: a "ftyp" box whose major brand is an image one. */
    if (len >= 12 && memcmp(b + 4, "ftyp", 4) == 0) {
        static const char brands[][5] = {"heic", "heix", "hevc", "hevx", "heim",
                                         "heis", "mif1", "msf1", "avif", "avis"};
        for (size_t i = 0; i < sizeof brands / sizeof brands[0]; i++)
            if (memcmp(b + 8, brands[i], 4) == 0) return &formats[6];
    }
    return NULL;
}

const char *data_image_format(const void *buf, size_t len) {
    const struct image_format *f = buf ? sniff(buf, len) : NULL;
    return f ? f->name : NULL;
}

data_image_t *data_decode(const void *buf, size_t len, const char *name,
                          const data_decode_opts_t *opts, util_err_t *err) {
    static const data_decode_opts_t defaults = {0, 0, 0, 0};
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
    const struct image_format *f = sniff(b, len);
    if (!f) {
        char hex[40] = "";
        for (size_t i = 0; i < len && i < 4; i++)
            snprintf(hex + strlen(hex), sizeof hex - strlen(hex), " %02x", b[i]);
        util_fail_kind(err, UTIL_ERR_INVALID,
                       "%s: not a JPEG, PNG, WebP, GIF, TIFF, BMP or HEIF image (%zu bytes, "
                       "starting with%s)",
                       name, len, hex);
        return NULL;
    }
    int orientation = 1;
    data_image_t *im = f->decode(b, len, name, opts, &orientation, err);
    if (!im) return NULL;
    if (!opts->raw_orientation && orientation != 1) {
        data_image_t *up = data_image_orient(im, orientation, err);
        data_image_free(im);
        if (!up) return NULL;
        im = up;
    }
    if (opts->channels && im->c != opts->channels) {
        data_image_t *conv = data_image_convert(im, opts->channels, err);
        data_image_free(im);
        im = conv;
    }
    return im;
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
