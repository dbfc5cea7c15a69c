/* Private to data/: shared between its files, never included from outside. */
#ifndef IMGRET_DATA_INTERNAL_H
#define IMGRET_DATA_INTERNAL_H

#include "data/data.h"

/* A dataset is a table of operations over private state. */
typedef struct dataset_ops {
    data_image_t *(*load)(const data_dataset_t *ds, size_t i, const data_decode_opts_t *opts,
                          int *label, util_err_t *err);
    int (*label)(const data_dataset_t *ds, size_t i);
    void (*item_name)(const data_dataset_t *ds, size_t i, char *buf, size_t size);
    void (*free_state)(void *state);
} dataset_ops_t;

struct data_dataset {
    const dataset_ops_t *ops;
    void *state;
    size_t count;
    int num_classes;
    char **class_names;  /* num_classes strings, owned */
    int channels;        /* 1, 3, or 0 when it varies */
    int raw_orientation; /* data_dataset_set_raw_orientation */
};

/* Checks w x h against the limits; names the image in the message. */
int image_check_size(int w, int h, size_t max_pixels, const char *name, util_err_t *err);

/* The codec's decoders (codec.c, codec_*.c). Each takes a file of its own
 * format (recognised by data_image_format), checks the stated size against
 * opts' limits before allocating, and returns the picture as the file stores
 * it: 1 channel (greyscale files) or 3, alpha already composited on
 * DATA_ALPHA_BACKGROUND, rows in stored order. *orientation receives the
 * file's EXIF/TIFF orientation (1..8; 1 when none), which data_decode
 * applies; a decoder whose library applies the orientation itself (HEIF)
 * leaves it 1. Errors name the file and the format. */
typedef data_image_t *(*image_decoder_fn)(const uint8_t *buf, size_t len, const char *name,
                                          const data_decode_opts_t *opts, int *orientation,
                                          util_err_t *err);
data_image_t *decode_webp(const uint8_t *buf, size_t len, const char *name,
                          const data_decode_opts_t *opts, int *orientation, util_err_t *err);
data_image_t *decode_gif(const uint8_t *buf, size_t len, const char *name,
                         const data_decode_opts_t *opts, int *orientation, util_err_t *err);
data_image_t *decode_tiff(const uint8_t *buf, size_t len, const char *name,
                          const data_decode_opts_t *opts, int *orientation, util_err_t *err);
data_image_t *decode_bmp(const uint8_t *buf, size_t len, const char *name,
                         const data_decode_opts_t *opts, int *orientation, util_err_t *err);
data_image_t *decode_heif(const uint8_t *buf, size_t len, const char *name,
                          const data_decode_opts_t *opts, int *orientation, util_err_t *err);

/* The orientation tag (0x0112) of an EXIF block: a TIFF header and IFD0,
 * optionally after "Exif\0\0". Every offset is bounds-checked against len;
 * anything missing, damaged or out of range gives 1 (as stored). */
int exif_orientation(const uint8_t *p, size_t len);

/* n pixels of straight (not premultiplied) RGBA to RGB over the background:
 * out = (a * c + (255 - a) * bg + 127) / 255. */
void composite_rgba(const uint8_t *rgba, uint8_t *rgb, size_t n);

#endif
