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
    char **class_names; /* num_classes strings, owned */
    int channels;       /* 1, 3, or 0 when it varies */
};

/* Checks w x h against the limits; names the image in the message. */
int image_check_size(int w, int h, size_t max_pixels, const char *name, util_err_t *err);

#endif
