/* TIFF through libtiff's RGBA interface (TIFFRGBAImage: 1..16 bits per
 * sample, strips or tiles, grey, palette, RGB, CMYK, YCbCr, most
 * compressions); the first page. The file is read from memory; libtiff's
 * errors and warnings go to handlers on this handle (never stderr), and its
 * allocations are capped (TIFFOpenOptionsSetMaxSingleMemAlloc) so a header
 * claiming a huge strip count or strip size is refused instead of allocated. */
#include "data/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <tiffio.h>

typedef struct {
    const uint8_t *p;
    toff_t len, off;
    char msg[256]; /* libtiff's first error */
} tiff_src_t;

static tmsize_t tiff_read(thandle_t h, void *dst, tmsize_t n) {
    tiff_src_t *s = h;
    if (n <= 0 || s->off >= s->len) return 0;
    toff_t k = (toff_t)n;
    if (k > s->len - s->off) k = s->len - s->off;
    memcpy(dst, s->p + s->off, (size_t)k);
    s->off += k;
    return (tmsize_t)k;
}

static tmsize_t tiff_write(thandle_t h, void *src, tmsize_t n) {
    (void)h, (void)src, (void)n;
    return 0;
}

static toff_t tiff_seek(thandle_t h, toff_t off, int whence) {
    tiff_src_t *s = h;
    toff_t base = whence == SEEK_CUR ? s->off : whence == SEEK_END ? s->len : 0;
    if (off > UINT64_MAX - base) return (toff_t)-1;
    s->off = base + off;
    return s->off;
}

static int tiff_close(thandle_t h) {
    (void)h;
    return 0;
}

static toff_t tiff_size(thandle_t h) {
    return ((tiff_src_t *)h)->len;
}

static int tiff_map(thandle_t h, void **base, toff_t *size) {
    tiff_src_t *s = h;
    *base = (void *)s->p; /* read-only: the file is opened "r" */
    *size = s->len;
    return 1;
}

static void tiff_unmap(thandle_t h, void *base, toff_t size) {
    (void)h, (void)base, (void)size;
}

static int tiff_on_error(TIFF *t, void *user, const char *module, const char *fmt, va_list ap) {
    (void)t, (void)module;
    tiff_src_t *s = user;
    if (!s->msg[0]) vsnprintf(s->msg, sizeof s->msg, fmt, ap);
    return 1; /* handled: nothing reaches the global handler (stderr) */
}

static int tiff_on_warning(TIFF *t, void *user, const char *module, const char *fmt, va_list ap) {
    (void)t, (void)user, (void)module, (void)fmt, (void)ap;
    return 1;
}

data_image_t *decode_tiff(const uint8_t *buf, size_t len, const char *name,
                          const data_decode_opts_t *opts, int *orientation, util_err_t *err) {
    tiff_src_t src = {buf, len, 0, ""};
    TIFFOpenOptions *to = TIFFOpenOptionsAlloc();
    if (!to) {
        util_fail(err, "%s: cannot set up a TIFF reader", name);
        return NULL;
    }
    /* One allocation of libtiff's own at most what a limit-sized 16-bit RGBA
     * strip needs; a strip-offset array for billions of strips is refused. */
    TIFFOpenOptionsSetMaxSingleMemAlloc(to, (tmsize_t)(DATA_MAX_PIXELS * 8));
    TIFFOpenOptionsSetErrorHandlerExtR(to, tiff_on_error, &src);
    TIFFOpenOptionsSetWarningHandlerExtR(to, tiff_on_warning, &src);
    /* "O": strip and tile offsets are read when needed, not all at open. */
    TIFF *t = TIFFClientOpenExt(name, "rO", &src, tiff_read, tiff_write, tiff_seek, tiff_close,
                                tiff_size, tiff_map, tiff_unmap, to);
    TIFFOpenOptionsFree(to);
    if (!t) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: not a readable TIFF: %s", name,
                       src.msg[0] ? src.msg : "bad header");
        return NULL;
    }
    data_image_t *im = NULL;
    uint32_t *raster = NULL;
    uint32_t w = 0, h = 0;
    uint16_t photometric = 0, spp = 1, extra = 0, *extra_types = NULL, orient = 1;
    char emsg[1024] = "";
    TIFFRGBAImage img;
    int began = 0;
    if (!TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h)) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: TIFF without an image size", name);
        goto done;
    }
    if (w > DATA_MAX_SIDE || h > DATA_MAX_SIDE) {
        util_fail_kind(err, UTIL_ERR_LIMIT,
                       "%s: image size %ux%u exceeds the limit of %d pixels per side", name,
                       (unsigned)w, (unsigned)h, DATA_MAX_SIDE);
        goto done;
    }
    if (image_check_size((int)w, (int)h, opts->max_pixels, name, err)) goto done;
    TIFFGetFieldDefaulted(t, TIFFTAG_ORIENTATION, &orient);
    TIFFGetFieldDefaulted(t, TIFFTAG_SAMPLESPERPIXEL, &spp);
    TIFFGetFieldDefaulted(t, TIFFTAG_EXTRASAMPLES, &extra, &extra_types);
    TIFFGetField(t, TIFFTAG_PHOTOMETRIC, &photometric);
    if (!TIFFRGBAImageOK(t, emsg)) {
        util_fail_kind(err, UTIL_ERR_UNSUPPORTED, "%s: TIFF variant not supported: %s", name, emsg);
        goto done;
    }
    if (!TIFFRGBAImageBegin(&img, t, 1, emsg)) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: corrupt TIFF: %s", name, emsg);
        goto done;
    }
    began = 1;
    /* Rows as stored: data_decode applies the orientation tag like EXIF's. */
    img.req_orientation = img.orientation;
    const int grey =
        (photometric == PHOTOMETRIC_MINISBLACK || photometric == PHOTOMETRIC_MINISWHITE) &&
        spp - extra == 1;
    if (!(im = data_image_create((int)w, (int)h, grey ? 1 : 3, err))) goto done;
    if (!(raster = malloc((size_t)w * h * 4))) {
        util_fail_kind(err, UTIL_ERR_LIMIT, "%s: out of memory for a %ux%u TIFF", name, (unsigned)w,
                       (unsigned)h);
        goto fail;
    }
    if (!TIFFRGBAImageGet(&img, raster, w, h)) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: corrupt or truncated TIFF: %s", name,
                       src.msg[0] ? src.msg : "pixel data unreadable");
        goto fail;
    }
    /* TIFFRGBAImage gives premultiplied ABGR words (it premultiplies
     * unassociated alpha), so over white: c + (255 - a). */
    const size_t n = (size_t)w * h;
    const unsigned bg = DATA_ALPHA_BACKGROUND;
    for (size_t i = 0; i < n; i++) {
        const uint32_t v = raster[i];
        const unsigned a = TIFFGetA(v), r = TIFFGetR(v), g = TIFFGetG(v), b = TIFFGetB(v);
        const unsigned add = ((255 - a) * bg + 127) / 255;
        if (grey) {
            im->pixels[i] = (uint8_t)(r + add > 255 ? 255 : r + add);
        } else {
            im->pixels[3 * i] = (uint8_t)(r + add > 255 ? 255 : r + add);
            im->pixels[3 * i + 1] = (uint8_t)(g + add > 255 ? 255 : g + add);
            im->pixels[3 * i + 2] = (uint8_t)(b + add > 255 ? 255 : b + add);
        }
    }
    *orientation = orient >= 1 && orient <= 8 ? orient : 1;
    goto done;
fail:
    data_image_free(im);
    im = NULL;
done:
    if (began) TIFFRGBAImageEnd(&img);
    free(raster);
    TIFFClose(t);
    return im;
}
