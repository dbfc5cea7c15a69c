/* EXIF orientation: reading the tag from an EXIF block (a small bounded
 * TIFF-IFD reader: EXIF is hostile input like the rest of the file) and
 * turning a stored picture upright. */
#include "data/internal.h"

#include <string.h>

static unsigned rd16(const uint8_t *p, int le) {
    return le ? (unsigned)p[0] | (unsigned)p[1] << 8 : (unsigned)p[0] << 8 | (unsigned)p[1];
}

static uint32_t rd32(const uint8_t *p, int le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int exif_orientation(const uint8_t *p, size_t len) {
    if (!p) return 1;
    if (len >= 6 && memcmp(p, "Exif\0\0", 6) == 0) {
        p += 6;
        len -= 6;
    }
    if (len < 8) return 1;
    int le;
    if (p[0] == 'I' && p[1] == 'I')
        le = 1;
    else if (p[0] == 'M' && p[1] == 'M')
        le = 0;
    else
        return 1;
    if (rd16(p + 2, le) != 42) return 1;
    uint32_t ifd = rd32(p + 4, le);
    if (ifd < 8 || ifd > len - 2) return 1; /* len >= 8, so no wrap-around */
    unsigned count = rd16(p + ifd, le);
    /* Each entry: tag (2), type (2), count (4), value or offset (4). */
    for (unsigned k = 0; k < count; k++) {
        size_t off = (size_t)ifd + 2 + (size_t)12 * k;
        if (off + 12 > len) break;
        if (rd16(p + off, le) != 0x0112) continue;
        unsigned type = rd16(p + off + 2, le);
        uint32_t n = rd32(p + off + 4, le);
        unsigned v = 0;
        if (type == 3 && n >= 1) /* SHORT, held in the value field */
            v = rd16(p + off + 8, le);
        else if (type == 4 && n >= 1) /* LONG: written by a few tools */
            v = (unsigned)rd32(p + off + 8, le);
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

data_image_t *data_image_orient(const data_image_t *im, int orientation, util_err_t *err) {
    if (orientation < 1 || orientation > 8) {
        util_fail_kind(err, UTIL_ERR_INVALID, "orientation %d (expected 1..8)", orientation);
        return NULL;
    }
    if (orientation == 1) return data_image_clone(im, err);
    const int W = im->w, H = im->h, c = im->c;
    const int swap = orientation >= 5; /* 5..8 exchange width and height */
    data_image_t *out = data_image_create(swap ? H : W, swap ? W : H, c, err);
    if (!out) return NULL;
    const int ow = out->w, oh = out->h;
    /* Output (x, y) reads input (ix, iy) = (x0 + x * dx_x + y * dx_y,
     * y0 + x * dy_x + y * dy_y). */
    int x0 = 0, y0 = 0, dxx = 1, dxy = 0, dyx = 0, dyy = 1;
    switch (orientation) {
    case 2:
        x0 = W - 1, dxx = -1;
        break; /* mirror */
    case 3:
        x0 = W - 1, y0 = H - 1, dxx = -1, dyy = -1;
        break; /* 180 */
    case 4:
        y0 = H - 1, dyy = -1;
        break; /* flip */
    case 5:
        dxx = 0, dxy = 1, dyx = 1, dyy = 0;
        break; /* transpose */
    case 6:
        y0 = H - 1, dxx = 0, dxy = 1, dyx = -1, dyy = 0;
        break; /* 90 cw */
    case 7:
        x0 = W - 1, y0 = H - 1, dxx = 0, dxy = -1, dyx = -1, dyy = 0;
        break; /* transverse */
    case 8:
        x0 = W - 1, dxx = 0, dxy = -1, dyx = 1, dyy = 0;
        break; /* 90 ccw */
    }
    for (int y = 0; y < oh; y++) {
        uint8_t *d = out->pixels + (size_t)y * ow * c;
        int ix = x0 + y * dxy, iy = y0 + y * dyy;
        for (int x = 0; x < ow; x++, ix += dxx, iy += dyx) {
            const uint8_t *s = im->pixels + ((size_t)iy * W + ix) * c;
            for (int k = 0; k < c; k++)
                d[(size_t)x * c + k] = s[k];
        }
    }
    return out;
}
