#include "cli/cli_util.h"

#include <stdlib.h>
#include <string.h>

cli_data_args_t cli_data_args_defaults(void) {
    cli_data_args_t a = {"fashion-mnist", NULL, 0, 0, 0, 0};
    return a;
}

data_dataset_t *cli_open_dataset(const char *spec, util_err_t *err) {
    if (!strcmp(spec, "fashion-mnist")) return data_dataset_open_fashion_mnist(NULL, "train", err);
    if (!strcmp(spec, "fashion-mnist-test"))
        return data_dataset_open_fashion_mnist(NULL, "t10k", err);
    if (!strncmp(spec, "folder:", 7)) return data_dataset_open_folder(spec + 7, NULL, err);
    if (!strncmp(spec, "list:", 5)) return data_dataset_open_list(spec + 5, NULL, err);
    util_fail(err,
              "unknown dataset '%s' (fashion-mnist, fashion-mnist-test, folder:DIR, list:FILE)",
              spec);
    return NULL;
}

static data_dataset_t *limit(data_dataset_t *all, long n, util_err_t *err) {
    if (n <= 0 || (size_t)n >= data_dataset_count(all)) return all;
    return data_dataset_subset(all, 0, (size_t)n, err);
}

int cli_open_data(const cli_data_args_t *a, cli_dataset_t *d, util_err_t *err) {
    memset(d, 0, sizeof *d);
    if (!(d->train_all = cli_open_dataset(a->data, err))) return -1;
    data_dataset_set_raw_orientation(d->train_all, a->raw_orientation);
    if (!(d->train = limit(d->train_all, a->limit, err))) goto fail;
    const char *val = a->val;
    if (!val && !strcmp(a->data, "fashion-mnist")) val = "fashion-mnist-test";
    if (a->no_val) val = NULL;
    if (val) {
        if (!(d->val_all = cli_open_dataset(val, err))) goto fail;
        data_dataset_set_raw_orientation(d->val_all, a->raw_orientation);
        if (!(d->val = limit(d->val_all, a->val_limit, err))) goto fail;
    }
    int channels = data_dataset_channels(d->train);
    if (!strncmp(a->data, "fashion-mnist", 13)) {
        /* 28x28 items padded to 32x32; random 28x28 crops (the paper's 256 -> 224, scaled). */
        d->prep = (data_prep_t){1, 0, 2};
        d->crop = 28;
        d->small = 1;
    } else {
        d->prep = (data_prep_t){channels == 1 ? 1 : 3, 256, 0};
        d->crop = 227;
    }
    if (!(d->stats = data_stats_compute(d->train, &d->prep, 2, 0, NULL, err))) goto fail;
    return 0;
fail:
    cli_close_data(d);
    return -1;
}

void cli_close_data(cli_dataset_t *d) {
    if (d->train != d->train_all) data_dataset_free(d->train);
    if (d->val != d->val_all) data_dataset_free(d->val);
    data_dataset_free(d->train_all);
    data_dataset_free(d->val_all);
    data_stats_free(d->stats);
    memset(d, 0, sizeof *d);
}

int cli_default_spec(const cli_dataset_t *d, const char *name, model_spec_t *spec,
                     util_err_t *err) {
    int classes = data_dataset_num_classes(d->train);
    if (!name) name = d->small ? "alexnet-small" : "alexnet";
    if (!strcmp(name, "alexnet-small"))
        return model_spec_alexnet_small(spec, d->prep.channels, d->crop, classes < 2 ? 2 : classes,
                                        err);
    if (!strcmp(name, "alexnet")) {
        model_spec_alexnet(spec);
        spec->in_c = d->prep.channels;
        spec->in_h = spec->in_w = d->crop;
        spec->layer[spec->n_layers - 1].out = classes < 2 ? 2 : classes;
        return model_spec_shapes(spec, 1, NULL, err);
    }
    return util_fail(err, "unknown net '%s' (alexnet or alexnet-small)", name);
}

int cli_placement(const cli_device_args_t *a, model_placement_t *pl, util_err_t *err) {
    if (a->device && a->devices) return util_fail(err, "--device and --devices: give one of them");
    if (a->devices) return model_placement_parse(a->devices, a->parallel, pl, err);
    *pl = model_placement_cpu();
    if (a->parallel && strcmp(a->parallel, "columns") && strcmp(a->parallel, "data"))
        return util_fail(err, "--parallel %s: expected columns or data", a->parallel);
    if (a->device && model_device_parse(a->device, &pl->device[0], err)) return -1;
    return 0;
}

int cli_progress_due(cli_progress_t *p, double now, int finished) {
    if (!finished && now - p->last < (p->tty ? 0.2 : 30.0)) return 0;
    p->last = now;
    return 1;
}

void cli_progress_bar(char bar[CLI_PROGRESS_BAR + 1], size_t done, size_t total) {
    const int k =
        total ? (int)((double)CLI_PROGRESS_BAR * (double)done / (double)total) : CLI_PROGRESS_BAR;
    for (int i = 0; i < CLI_PROGRESS_BAR; i++)
        bar[i] = i < k ? '#' : '.';
    bar[CLI_PROGRESS_BAR] = 0;
}
