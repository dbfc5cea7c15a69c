/* BMP, read here (no Debian library reads it from memory with strict
 * checks): BITMAPCOREHEADER (12 bytes), BITMAPINFOHEADER (40) and its
 * V2..V5 extensions (52, 56, 64, 108, 124); 1, 4 and 8 bits through the
 * palette, 24-bit BGR, 32-bit BGRX (BI_RGB) or BI_BITFIELDS with one byte per
 * channel mask (and an alpha mask, composited); rows bottom-up (height > 0)
 * or top-down (height < 0). Every header field is checked against the file
 * before anything is allocated. */
#include "data/internal.h"

#include <string.h>

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static unsigned le16(const uint8_t *p) {
    return (unsigned)p[0] | (unsigned)p[1] << 8;
}

/* The byte a mask selects in a little-endian 32-bit pixel (0..3), or -1
 * when it is not exactly one whole byte. */
static int mask_byte(uint32_t m) {
    for (int k = 0; k < 4; k++)
        if (m == (uint32_t)0xff << (8 * k)) return k;
    return -1;
}

#define BMP_CORRUPT(...)                                                                           \
    do {                                                                                           \
        util_fail_kind(err, UTIL_ERR_CORRUPT, __VA_ARGS__);                                        \
        return NULL;                                                                               \
    } while (0)
#define BMP_UNSUPPORTED(...)                                                                       \
    do {                                                                                           \
        util_fail_kind(err, UTIL_ERR_UNSUPPORTED, __VA_ARGS__);                                    \
        return NULL;                                                                               \
    } while (0)

data_image_t *decode_bmp(const uint8_t *buf, size_t len, const char *name,
                         const data_decode_opts_t *opts, int *orientation, util_err_t *err) {
    (void)orientation;
    if (len < 26) BMP_CORRUPT("%s: truncated BMP header (%zu bytes)", name, len);
    const uint32_t data_off = le32(buf + 10), hs = le32(buf + 14);
    if (len < 14 + (size_t)hs) BMP_CORRUPT("%s: truncated BMP header (%zu bytes)", name, len);
    int64_t w, h;
    unsigned planes, bpp;
    uint32_t comp = 0, colours = 0;
    size_t pal_entry = 4;
    if (hs == 12) {
        w = le16(buf + 18), h = le16(buf + 20), planes = le16(buf + 22), bpp = le16(buf + 24);
        pal_entry = 3;
    } else {
        w = (int32_t)le32(buf + 18), h = (int32_t)le32(buf + 22);
        planes = le16(buf + 26), bpp = le16(buf + 28);
        comp = le32(buf + 30), colours = le32(buf + 46);
    }
    if (planes != 1) BMP_CORRUPT("%s: BMP with %u planes (expected 1)", name, planes);
    const int top_down = h < 0;
    if (h < 0) h = -h;
    if (w <= 0 || h <= 0 || w > DATA_MAX_SIDE || h > DATA_MAX_SIDE) {
        if (w > 0 && h > 0)
            util_fail_kind(err, UTIL_ERR_LIMIT,
                           "%s: image size %lldx%lld exceeds the limit of %d pixels per side", name,
                           (long long)w, (long long)h, DATA_MAX_SIDE);
        else
            util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: BMP of invalid size %lldx%lld", name,
                           (long long)w, (long long)h);
        return NULL;
    }
    if (image_check_size((int)w, (int)h, opts->max_pixels, name, err)) return NULL;
    if (comp == 1 || comp == 2) BMP_UNSUPPORTED("%s: RLE-compressed BMP is not supported", name);
    if (comp != 0 && comp != 3)
        BMP_UNSUPPORTED("%s: BMP compression %u is not supported", name, (unsigned)comp);
    if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 24 && bpp != 32)
        BMP_UNSUPPORTED("%s: %u-bit BMP is not supported", name, bpp);
    if (comp == 3 && bpp != 32)
        BMP_UNSUPPORTED("%s: %u-bit BMP with bit fields is not supported", name, bpp);
    /* Channel bytes in a 32-bit pixel (B, G, R, X by default). */
    int ri = 2, gi = 1, bi = 0, ai = -1;
    size_t after_header = 14 + (size_t)hs;
    if (comp == 3) {
        const uint8_t *m = buf + 54; /* V2+ headers hold the masks; 40 is followed by them */
        if (hs == 40) after_header += 12;
        if (len < 54 + 12 || after_header > len) BMP_CORRUPT("%s: truncated BMP bit masks", name);
        ri = mask_byte(le32(m)), gi = mask_byte(le32(m + 4)), bi = mask_byte(le32(m + 8));
        if (hs >= 56 && le32(m + 12)) ai = mask_byte(le32(m + 12));
        if (ri < 0 || gi < 0 || bi < 0 || (hs >= 56 && le32(m + 12) && ai < 0))
            BMP_UNSUPPORTED("%s: BMP bit masks other than whole bytes are not supported", name);
    }
    uint8_t pal[256][3];
    unsigned npal = 0;
    if (bpp <= 8) {
        npal = colours ? colours : 1u << bpp;
        if (npal > 256) BMP_CORRUPT("%s: BMP palette of %u colours", name, npal);
        if (after_header + npal * pal_entry > len || after_header + npal * pal_entry > data_off)
            BMP_CORRUPT("%s: truncated BMP palette", name);
        for (unsigned i = 0; i < npal; i++) {
            const uint8_t *e = buf + after_header + i * pal_entry;
            pal[i][0] = e[2], pal[i][1] = e[1], pal[i][2] = e[0];
        }
    }
    const size_t stride = ((size_t)w * bpp + 31) / 32 * 4;
    if (data_off < after_header || data_off > len || stride * (size_t)h > len - data_off)
        BMP_CORRUPT("%s: truncated BMP: %zu bytes of pixels at offset %u, the file has %zu", name,
                    stride * (size_t)h, (unsigned)data_off, len);
    data_image_t *im = data_image_create((int)w, (int)h, 3, err);
    if (!im) return NULL;
    for (int y = 0; y < (int)h; y++) {
        const uint8_t *row = buf + data_off + stride * (size_t)(top_down ? y : (int)h - 1 - y);
        uint8_t *o = im->pixels + (size_t)y * (size_t)w * 3;
        for (int x = 0; x < (int)w; x++, o += 3) {
            if (bpp <= 8) {
                const unsigned bit = (unsigned)x * bpp;
                const unsigned idx = (row[bit / 8] >> (8 - bpp - bit % 8)) & ((1u << bpp) - 1);
                if (idx < npal)
                    memcpy(o, pal[idx], 3);
                else
                    o[0] = o[1] = o[2] = 0; /* an index past the palette: black */
            } else if (bpp == 24) {
                const uint8_t *p = row + (size_t)x * 3;
                o[0] = p[2], o[1] = p[1], o[2] = p[0];
            } else {
                const uint8_t *p = row + (size_t)x * 4;
                const unsigned a = ai >= 0 ? p[ai] : 255, bg = DATA_ALPHA_BACKGROUND;
                o[0] = (uint8_t)((a * p[ri] + (255 - a) * bg + 127) / 255);
                o[1] = (uint8_t)((a * p[gi] + (255 - a) * bg + 127) / 255);
                o[2] = (uint8_t)((a * p[bi] + (255 - a) * bg + 127) / 255);
            }
        }
    }
    return im;
}
