/* Helpers shared by the subcommands: dataset arguments and the default
 * network for a dataset. */
#ifndef IMGRET_CLI_UTIL_H
#define IMGRET_CLI_UTIL_H

#include "data/data.h"
#include "model/model.h"

/* A dataset by name: fashion-mnist (the 60,000 training images),
 * fashion-mnist-test (the 10,000 test images), folder:DIR, list:FILE. */
data_dataset_t *cli_open_dataset(const char *spec, util_err_t *err);

typedef struct cli_data_args {
    const char *data;    /* a cli_open_dataset name */
    const char *val;     /* same; NULL: fashion-mnist-test when data is fashion-mnist */
    long limit;          /* > 0: the first `limit` training items only */
    long val_limit;      /* > 0: the first `val_limit` validation items only */
    int no_val;          /* open no validation set */
    int raw_orientation; /* --raw-orientation: images as stored, EXIF orientation ignored */
} cli_data_args_t;

/* The --raw-orientation option of every command that reads image files. */
#define CLI_RAW_ORIENTATION_HELP                                                                   \
    "keep each image as stored (default: turned upright by its EXIF orientation)"

cli_data_args_t cli_data_args_defaults(void);

typedef struct cli_dataset {
    data_dataset_t *train_all, *train, *val_all, *val; /* train/val may be subsets */
    data_stats_t *stats;                               /* over the training set */
    data_prep_t prep;                                  /* stored geometry */
    int crop;                                          /* network input side */
    int small; /* small images: the small AlexNet variant fits */
} cli_dataset_t;

/* Opens the datasets and computes the training statistics. */
int cli_open_data(const cli_data_args_t *a, cli_dataset_t *d, util_err_t *err);
void cli_close_data(cli_dataset_t *d);

/* alexnet (the paper's, 227 crops) or alexnet-small (28 or 32 crops); NULL
 * picks by the dataset. */
int cli_default_spec(const cli_dataset_t *d, const char *name, model_spec_t *spec, util_err_t *err);

/* Where the net runs: --device cpu|cpu:N|gpu:N (one device), --devices
 * LIST (several, e.g. gpu:0,gpu:1 or cpu:0,cpu:1), --parallel
 * columns|data (how several devices share the net; default columns, the
 * paper's two-column split). */
typedef struct cli_device_args {
    const char *device, *devices, *parallel;
} cli_device_args_t;

/* CLI_OPTS_DEVICE (cli_args.h) puts the three options in a table. */
/* The placement the options name (one CPU device when none is given). */
int cli_placement(const cli_device_args_t *a, model_placement_t *pl, util_err_t *err);

/* A progress line on stderr, redrawn in place with a bar on a terminal and
 * a plain log line otherwise. */
typedef struct cli_progress {
    int tty;     /* isatty(2) */
    double last; /* util_now() when the last line was printed; 0 before */
} cli_progress_t;

#define CLI_PROGRESS_BAR 30 /* the bar's width in characters */

/* 1 when a line is due at `now` (util_now()), and then records now as the
 * last: always when `finished`, else 0.2 s after the last line on a
 * terminal and 30 s in a log. */
int cli_progress_due(cli_progress_t *p, double now, int finished);
/* The bar for done of total: '#' for the part done, '.' for the rest, and
 * a terminating NUL (a full bar when total is 0). */
void cli_progress_bar(char bar[CLI_PROGRESS_BAR + 1], size_t done, size_t total);

#endif
