/* GIF through giflib: the first frame only, on the logical screen, with
 * transparent pixels and the screen outside the frame white
 * (DATA_ALPHA_BACKGROUND). Frames after the first are never read, so a file
 * of 10,000 frames costs what its first frame costs. */
#include "data/internal.h"

#include <gif_lib.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t len, off;
} gif_src_t;

static int gif_read(GifFileType *g, GifByteType *dst, int n) {
    gif_src_t *s = g->UserData;
    size_t k = n < 0 ? 0 : (size_t)n;
    if (k > s->len - s->off) k = s->len - s->off;
    memcpy(dst, s->p + s->off, k);
    s->off += k;
    return (int)k;
}

static data_image_t *gif_fail(GifFileType *g, const char *name, int code, util_err_t *err) {
    const char *why = GifErrorString(code);
    util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: corrupt or truncated GIF: %s", name,
                   why ? why : "unknown error");
    int e;
    if (g) DGifCloseFile(g, &e);
    return NULL;
}

data_image_t *decode_gif(const uint8_t *buf, size_t len, const char *name,
                         const data_decode_opts_t *opts, int *orientation, util_err_t *err) {
    (void)orientation;
    gif_src_t src = {buf, len, 0};
    int e = 0;
    GifFileType *g = DGifOpen(&src, gif_read, &e);
    if (!g) return gif_fail(NULL, name, e, err);
    if (g->SWidth <= 0 || g->SHeight <= 0) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: GIF screen of invalid size %dx%d", name,
                       g->SWidth, g->SHeight);
        DGifCloseFile(g, &e);
        return NULL;
    }
    if (image_check_size(g->SWidth, g->SHeight, opts->max_pixels, name, err)) {
        DGifCloseFile(g, &e);
        return NULL;
    }
    int transparent = -1;
    for (;;) {
        GifRecordType t;
        if (DGifGetRecordType(g, &t) == GIF_ERROR) return gif_fail(g, name, g->Error, err);
        if (t == TERMINATE_RECORD_TYPE) {
            util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: GIF holds no image", name);
            DGifCloseFile(g, &e);
            return NULL;
        }
        if (t == EXTENSION_RECORD_TYPE) {
            int code;
            GifByteType *ext;
            if (DGifGetExtension(g, &code, &ext) == GIF_ERROR)
                return gif_fail(g, name, g->Error, err);
            /* Graphic control: flags, delay (2), transparent index. */
            if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4)
                transparent = (ext[1] & 1) ? ext[4] : -1;
            while (ext)
                if (DGifGetExtensionNext(g, &ext) == GIF_ERROR)
                    return gif_fail(g, name, g->Error, err);
            continue;
        }
        if (t == IMAGE_DESC_RECORD_TYPE) break;
    }
    if (DGifGetImageDesc(g) == GIF_ERROR) return gif_fail(g, name, g->Error, err);
    const GifImageDesc *d = &g->Image;
    if (image_check_size(d->Width, d->Height, opts->max_pixels, name, err)) {
        DGifCloseFile(g, &e);
        return NULL;
    }
    const ColorMapObject *cmap = d->ColorMap ? d->ColorMap : g->SColorMap;
    if (!cmap || !cmap->Colors || cmap->ColorCount <= 0) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: GIF has no colour table", name);
        DGifCloseFile(g, &e);
        return NULL;
    }
    data_image_t *im = data_image_create(g->SWidth, g->SHeight, 3, err);
    GifPixelType *line = malloc((size_t)d->Width);
    if (!im || !line) {
        if (im) util_fail_kind(err, UTIL_ERR_LIMIT, "%s: out of memory for a GIF line", name);
        data_image_free(im);
        free(line);
        DGifCloseFile(g, &e);
        return NULL;
    }
    memset(im->pixels, DATA_ALPHA_BACKGROUND, (size_t)im->w * im->h * 3);
    /* Interlaced rows come in four passes: every 8th from 0, every 8th from
     * 4, every 4th from 2, every 2nd from 1. */
    static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
    const int passes = d->Interlace ? 4 : 1;
    for (int p = 0; p < passes; p++) {
        for (int r = d->Interlace ? start[p] : 0; r < d->Height; r += d->Interlace ? step[p] : 1) {
            if (DGifGetLine(g, line, d->Width) == GIF_ERROR) {
                data_image_free(im);
                free(line);
                return gif_fail(g, name, g->Error, err);
            }
            const int y = d->Top + r;
            if (y < 0 || y >= im->h) continue;
            for (int x = 0; x < d->Width; x++) {
                const int px = d->Left + x;
                if (px < 0 || px >= im->w || line[x] == transparent) continue;
                uint8_t *o = im->pixels + ((size_t)y * im->w + px) * 3;
                if (line[x] < cmap->ColorCount) {
                    const GifColorType *col = &cmap->Colors[line[x]];
                    o[0] = col->Red, o[1] = col->Green, o[2] = col->Blue;
                } else {
                    o[0] = o[1] = o[2] = 0; /* an index past the table: black */
                }
            }
        }
    }
    free(line);
    DGifCloseFile(g, &e);
    return im;
}
