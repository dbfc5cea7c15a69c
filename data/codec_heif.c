/* HEIF/HEIC (and AVIF) through libheif: the primary image, 8-bit RGB(A)
 * (deeper images converted by libheif), alpha composited. libheif applies
 * the file's rotation and mirror boxes (irot, imir) and crop (clap) itself;
 * raw_orientation turns that off. The EXIF orientation in a HEIF is not
 * applied on top: HEIF writers record the same turn in irot/imir, and the
 * format says those are what a reader shows. */
#include "data/internal.h"

#include <libheif/heif.h>
#include <stdlib.h>

data_image_t *decode_heif(const uint8_t *buf, size_t len, const char *name,
                          const data_decode_opts_t *opts, int *orientation, util_err_t *err) {
    (void)orientation;
    struct heif_context *ctx = heif_context_alloc();
    if (!ctx) {
        util_fail(err, "%s: cannot create a HEIF decoder", name);
        return NULL;
    }
    /* libheif refuses larger images itself, before decoding (its limit is
     * exclusive: a side must stay below it). */
    heif_context_set_maximum_image_size_limit(ctx, DATA_MAX_SIDE + 1);
    struct heif_image_handle *hd = NULL;
    struct heif_decoding_options *dopt = NULL;
    struct heif_image *img = NULL;
    data_image_t *im = NULL;
    struct heif_error e = heif_context_read_from_memory_without_copy(ctx, buf, len, NULL);
    if (e.code == heif_error_Ok) e = heif_context_get_primary_image_handle(ctx, &hd);
    if (e.code != heif_error_Ok) {
        util_fail_kind(err,
                       e.code == heif_error_Memory_allocation_error ? UTIL_ERR_LIMIT
                       : e.code == heif_error_Unsupported_feature   ? UTIL_ERR_UNSUPPORTED
                                                                    : UTIL_ERR_CORRUPT,
                       "%s: not a readable HEIF: %s", name, e.message);
        goto done;
    }
    const int w = heif_image_handle_get_width(hd), h = heif_image_handle_get_height(hd);
    if (image_check_size(w, h, opts->max_pixels, name, err) ||
        image_check_size(heif_image_handle_get_ispe_width(hd),
                         heif_image_handle_get_ispe_height(hd), opts->max_pixels, name, err))
        goto done;
    const int alpha = heif_image_handle_has_alpha_channel(hd);
    if (!(dopt = heif_decoding_options_alloc())) {
        util_fail(err, "%s: cannot set up HEIF decoding", name);
        goto done;
    }
    dopt->ignore_transformations = opts->raw_orientation ? 1 : 0;
    e = heif_decode_image(hd, &img, heif_colorspace_RGB,
                          alpha ? heif_chroma_interleaved_RGBA : heif_chroma_interleaved_RGB, dopt);
    if (e.code != heif_error_Ok) {
        util_fail_kind(err,
                       e.code == heif_error_Unsupported_feature ||
                               e.code == heif_error_Unsupported_filetype ||
                               (e.code == heif_error_Decoder_plugin_error &&
                                e.subcode == heif_suberror_Unsupported_codec)
                           ? UTIL_ERR_UNSUPPORTED
                       : e.code == heif_error_Memory_allocation_error ? UTIL_ERR_LIMIT
                                                                      : UTIL_ERR_CORRUPT,
                       "%s: corrupt or truncated HEIF: %s", name, e.message);
        goto done;
    }
    int stride = 0;
    const uint8_t *px = heif_image_get_plane_readonly(img, heif_channel_interleaved, &stride);
    const int iw = heif_image_get_width(img, heif_channel_interleaved);
    const int ih = heif_image_get_height(img, heif_channel_interleaved);
    if (!px || image_check_size(iw, ih, opts->max_pixels, name, err)) {
        if (!px) util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: HEIF decoded without pixels", name);
        goto done;
    }
    if (!(im = data_image_create(iw, ih, 3, err))) goto done;
    for (int y = 0; y < ih; y++) {
        const uint8_t *s = px + (size_t)y * (size_t)stride;
        uint8_t *d = im->pixels + (size_t)y * iw * 3;
        if (alpha)
            composite_rgba(s, d, (size_t)iw);
        else
            for (int x = 0; x < iw * 3; x++)
                d[x] = s[x];
    }
done:
    heif_image_release(img);
    heif_decoding_options_free(dopt);
    heif_image_handle_release(hd);
    heif_context_free(ctx);
    return im;
}
