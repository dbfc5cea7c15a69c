/* libFuzzer target: data_decode over every format's decoder (JPEG, PNG,
 * WebP, GIF, TIFF, BMP, HEIF) and the EXIF orientation reader. The first
 * byte picks the options (channels 0/1/3, raw orientation, DCT scaling); the
 * rest is the file. A decode either fails with a sentence and a kind or
 * gives an image within the limits whose every byte is readable.
 *
 *   clang -fsanitize=fuzzer,address,undefined (IMGRET_FUZZ=ON), then
 *   fuzz_data_decode -max_total_time=30 tests/data/fuzz_seeds */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static const int channels[4] = {0, 1, 3, 0};
    data_decode_opts_t o = {channels[data[0] & 3], (data[0] & 8) ? 8 : 0,
                            (size_t)1 << 22, /* 4 megapixels: within the RSS limit */
                            (data[0] >> 2) & 1};
    util_err_t err;
    err.msg[0] = '\0';
    data_image_t *im = data_decode(data + 1, size - 1, "fuzz", &o, &err);
    if (!im) {
        if (!err.msg[0] || !memchr(err.msg, '\0', sizeof err.msg)) abort();
        return 0;
    }
    if (im->w <= 0 || im->h <= 0 || (size_t)im->w * im->h > o.max_pixels) abort();
    if (o.channels && im->c != o.channels) abort();
    if (im->c != 1 && im->c != 3) abort();
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)im->w * im->h * im->c; i++)
        sum += im->pixels[i];
    data_image_free(im);
    return (int)(sum & 0);
}
