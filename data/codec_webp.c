/* WebP through libwebp: lossy, lossless, alpha (composited), the first
 * frame of an animation (libwebpdemux's animation decoder), and the
 * orientation in the EXIF chunk. */
#include "data/internal.h"

#include <stdlib.h>
#include <string.h>
#include <webp/decode.h>
#include <webp/demux.h>

static int webp_orientation(const uint8_t *buf, size_t len) {
    WebPData data = {buf, len};
    WebPDemuxer *dmx = WebPDemux(&data);
    if (!dmx) return 1;
    int o = 1;
    WebPChunkIterator it;
    if ((WebPDemuxGetI(dmx, WEBP_FF_FORMAT_FLAGS) & EXIF_FLAG) &&
        WebPDemuxGetChunk(dmx, "EXIF", 1, &it)) {
        o = exif_orientation(it.chunk.bytes, it.chunk.size);
        WebPDemuxReleaseChunkIterator(&it);
    }
    WebPDemuxDelete(dmx);
    return o;
}

static data_image_t *first_frame(const uint8_t *buf, size_t len, const char *name,
                                 const data_decode_opts_t *opts, util_err_t *err) {
    WebPAnimDecoderOptions ao;
    if (!WebPAnimDecoderOptionsInit(&ao)) {
        util_fail(err, "%s: cannot set up a WebP animation decoder", name);
        return NULL;
    }
    ao.color_mode = MODE_RGBA;
    ao.use_threads = 0;
    WebPData data = {buf, len};
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&data, &ao);
    if (!dec) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: corrupt or truncated animated WebP", name);
        return NULL;
    }
    data_image_t *im = NULL;
    WebPAnimInfo info;
    uint8_t *rgba = NULL;
    int ts = 0;
    if (!WebPAnimDecoderGetInfo(dec, &info)) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: corrupt animated WebP", name);
    } else if (info.canvas_width > DATA_MAX_SIDE || info.canvas_height > DATA_MAX_SIDE) {
        util_fail_kind(err, UTIL_ERR_LIMIT,
                       "%s: WebP canvas %ux%u exceeds the limit of %d pixels per side", name,
                       info.canvas_width, info.canvas_height, DATA_MAX_SIDE);
    } else if (image_check_size((int)info.canvas_width, (int)info.canvas_height, opts->max_pixels,
                                name, err) == 0) {
        if (!WebPAnimDecoderGetNext(dec, &rgba, &ts))
            util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: corrupt or truncated WebP animation frame",
                           name);
        else if ((im = data_image_create((int)info.canvas_width, (int)info.canvas_height, 3, err)))
            composite_rgba(rgba, im->pixels, (size_t)im->w * im->h);
    }
    WebPAnimDecoderDelete(dec);
    return im;
}

data_image_t *decode_webp(const uint8_t *buf, size_t len, const char *name,
                          const data_decode_opts_t *opts, int *orientation, util_err_t *err) {
    /* An extended file (VP8X) states a canvas of up to 2^24 x 2^24, which
     * libwebp refuses as a bitstream error past 2^32 pixels: checked here
     * first, so a bomb is reported as one. */
    if (len >= 30 && memcmp(buf + 12, "VP8X", 4) == 0) {
        const long cw = 1 + (long)(buf[24] | buf[25] << 8 | buf[26] << 16);
        const long ch = 1 + (long)(buf[27] | buf[28] << 8 | buf[29] << 16);
        if (cw > DATA_MAX_SIDE || ch > DATA_MAX_SIDE) {
            util_fail_kind(err, UTIL_ERR_LIMIT,
                           "%s: WebP canvas %ldx%ld exceeds the limit of %d pixels per side", name,
                           cw, ch, DATA_MAX_SIDE);
            return NULL;
        }
        if (image_check_size((int)cw, (int)ch, opts->max_pixels, name, err)) return NULL;
    }
    WebPBitstreamFeatures f;
    VP8StatusCode st = WebPGetFeatures(buf, len, &f);
    if (st != VP8_STATUS_OK) {
        util_fail_kind(
            err, st == VP8_STATUS_UNSUPPORTED_FEATURE ? UTIL_ERR_UNSUPPORTED : UTIL_ERR_CORRUPT,
            "%s: not a readable WebP (libwebp status %d)", name, (int)st);
        return NULL;
    }
    /* Before any allocation, as for every format. */
    if (image_check_size(f.width, f.height, opts->max_pixels, name, err)) return NULL;
    *orientation = webp_orientation(buf, len);
    if (f.has_animation) return first_frame(buf, len, name, opts, err);
    data_image_t *im = data_image_create(f.width, f.height, 3, err);
    if (!im) return NULL;
    const size_t n = (size_t)f.width * f.height;
    if (!f.has_alpha) {
        if (WebPDecodeRGBInto(buf, len, im->pixels, n * 3, f.width * 3)) return im;
    } else {
        uint8_t *rgba = malloc(n * 4);
        if (!rgba) {
            util_fail_kind(err, UTIL_ERR_LIMIT, "%s: out of memory for a %dx%d WebP", name, f.width,
                           f.height);
            data_image_free(im);
            return NULL;
        }
        uint8_t *ok = WebPDecodeRGBAInto(buf, len, rgba, n * 4, f.width * 4);
        if (ok) composite_rgba(rgba, im->pixels, n);
        free(rgba);
        if (ok) return im;
    }
    util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: corrupt or truncated WebP (%s)", name,
                   f.format == 2 ? "lossless" : "lossy");
    data_image_free(im);
    return NULL;
}
