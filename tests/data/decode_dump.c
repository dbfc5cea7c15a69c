/* The codec as a command, for tests/data/formats_test.py: decodes one file
 * with data_image_read and writes "P6"/"P5" PNM (binary) to out, or prints
 * the error's kind and sentence and exits 1.
 *   decode_dump [--raw] [--channels N] [--max-pixels N] file out.pnm */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

static const char *kind_name(util_err_kind_t k) {
    switch (k) {
    case UTIL_ERR_INVALID:
        return "INVALID";
    case UTIL_ERR_CORRUPT:
        return "CORRUPT";
    case UTIL_ERR_LIMIT:
        return "LIMIT";
    case UTIL_ERR_UNSUPPORTED:
        return "UNSUPPORTED";
    case UTIL_ERR_IO:
        return "IO";
    case UTIL_ERR_NOT_FOUND:
        return "NOT_FOUND";
    default:
        return "OTHER";
    }
}

int main(int argc, char **argv) {
    data_decode_opts_t o = {0, 0, 0, 0};
    int i = 1;
    for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
        if (!strcmp(argv[i], "--raw"))
            o.raw_orientation = 1;
        else if (!strcmp(argv[i], "--channels") && i + 1 < argc)
            o.channels = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-pixels") && i + 1 < argc)
            o.max_pixels = (size_t)atoll(argv[++i]);
        else if (!strcmp(argv[i], "--min-short-side") && i + 1 < argc)
            o.min_short_side = atoi(argv[++i]);
        else
            break;
    }
    if (argc - i != 2) {
        fprintf(stderr, "usage: decode_dump [--raw] [--channels N] file out.pnm\n");
        return 2;
    }
    util_err_t err;
    data_image_t *im = data_image_read(argv[i], &o, &err);
    if (!im) {
        printf("%s %s\n", kind_name(util_err_kind(&err)), err.msg);
        return 1;
    }
    FILE *f = fopen(argv[i + 1], "wb");
    if (!f) return 3;
    fprintf(f, "P%d\n%d %d\n255\n", im->c == 3 ? 6 : 5, im->w, im->h);
    fwrite(im->pixels, 1, (size_t)im->w * im->h * im->c, f);
    fclose(f);
    data_image_free(im);
    return 0;
}
