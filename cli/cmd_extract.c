/* imgret extract: FC7 features of a dataset into a feature file, resumable. */
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "features/features.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile int stop_requested;

static void on_sigint(int sig) {
    (void)sig;
    stop_requested = 1;
}

typedef struct extract_ctx {
    cli_progress_t progress;
    double t0;
    size_t first;
    size_t skipped;
} extract_ctx_t;

static void on_progress(void *p, size_t done, size_t total, size_t rows) {
    extract_ctx_t *c = p;
    double now = util_now();
    if (!cli_progress_due(&c->progress, now, done >= total)) return;
    double rate = now > c->t0 ? (double)(done - c->first) / (now - c->t0) : 0.0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0.0;
    if (c->progress.tty) {
        char bar[CLI_PROGRESS_BAR + 1];
        cli_progress_bar(bar, done, total);
        fprintf(stderr, "\r extract [%s] %zu/%zu  %zu rows  %.0f img/s  ETA %02d:%02d ", bar, done,
                total, rows, rate, (int)eta / 60, (int)eta % 60);
        if (done == total) fputc('\n', stderr);
    } else {
        fprintf(stderr, "extract %zu/%zu rows %zu %.0f img/s ETA %ds\n", done, total, rows, rate,
                (int)eta);
    }
}

static void on_skip(void *p, size_t item, const char *message) {
    extract_ctx_t *c = p;
    c->skipped++;
    fprintf(stderr, "%sskipped item %zu: %s\n", c->progress.tty ? "\n" : "", item, message);
}

static int usage(FILE *f) {
    fprintf(f,
            "usage: imgret extract --model M (--data SPEC | --images LIST) -o FILE [options]\n"
            "  --model M       model file (.imgret, or a training checkpoint)\n"
            "  --data SPEC     fashion-mnist (training split), fashion-mnist-test, folder:DIR,\n"
            "                  list:FILE\n"
            "  --images LIST   a list file: one 'path label' per line (same as list:LIST)\n"
            "  --limit N       the first N items only\n"
            "  -o FILE         feature file; an existing one is continued after its last row\n"
            "  --batch N       images per forward pass (default 128)\n"
            "  --threads N     decode threads (default 2)\n"
            "  --layer NAME    layer whose output is stored (default relu7: FC7 after ReLU)\n"
            CLI_DEVICE_USAGE);
    return f == stdout ? 0 : 2;
}

int cmd_extract(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *out = NULL, *layer = NULL;
    long limit = 0;
    int batch = 128, threads = 2;
    char list_spec[4200];
    cli_device_args_t dev = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout);
        if (i + 1 >= argc) {
            fprintf(stderr, "extract: %s needs a value (or is unknown)\n", a);
            return usage(stderr);
        }
        const char *v = argv[++i];
        if (cli_device_arg(&dev, a, v)) continue;
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--images")) {
            snprintf(list_spec, sizeof list_spec, "list:%s", v);
            data = list_spec;
        } else if (!strcmp(a, "--limit")) limit = atol(v);
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) out = v;
        else if (!strcmp(a, "--batch")) batch = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--layer")) layer = v;
        else {
            fprintf(stderr, "extract: unknown option %s\n", a);
            return usage(stderr);
        }
    }
    if (!model || !data || !out) return usage(stderr);
    util_err_t err;
    model_placement_t pl;
    model_file_t *mf = cli_placement(&dev, &pl, &err) ? NULL : model_file_load(model, &err);
    if (!mf) {
        fprintf(stderr, "extract: %s\n", err.msg);
        return 1;
    }
    data_dataset_t *all = cli_open_dataset(data, &err), *ds = all;
    if (all && limit > 0 && (size_t)limit < data_dataset_count(all))
        ds = data_dataset_subset(all, 0, (size_t)limit, &err);
    feat_extractor_t *ex = ds ? feat_extractor_create_on(mf, batch, layer, &pl, &err) : NULL;
    model_file_free(mf);
    feat_writer_t *w = ex ? feat_writer_open(out, feat_extractor_dim(ex),
                                             feat_extractor_model_hash(ex),
                                             data_dataset_count(ds), &err)
                          : NULL;
    int rc = -1;
    extract_ctx_t ctx = {.progress.tty = isatty(2), .t0 = util_now()};
    if (w) {
        size_t before = feat_writer_count(w);
        if (before)
            fprintf(stderr, "extract: %s has %zu rows; continuing after item %lld\n", out, before,
                    (long long)feat_writer_last_id(w));
        ctx.first = feat_writer_last_id(w) < 0 ? 0 : (size_t)feat_writer_last_id(w) + 1;
        signal(SIGINT, on_sigint);
        signal(SIGTERM, on_sigint);
        feat_extract_opts_t o = {threads, on_progress, on_skip, &ctx, &stop_requested};
        rc = feat_extract_dataset(ex, ds, w, &o, &err);
        double secs = util_now() - ctx.t0;
        size_t rows = feat_writer_count(w);
        if (feat_writer_close(w, rc < 0 ? NULL : &err) && rc >= 0) rc = -1;
        if (rc >= 0)
            fprintf(stderr, "extract: %s: %zu rows of %d floats (%zu new, %zu skipped) in %.1f s%s\n",
                    out, rows, feat_extractor_dim(ex), rows - before, ctx.skipped, secs,
                    rc == 1 ? "; stopped, rerun to continue" : "");
    }
    if (rc < 0) fprintf(stderr, "extract: %s\n", err.msg);
    feat_extractor_free(ex);
    if (ds != all) data_dataset_free(ds);
    data_dataset_free(all);
    return rc == 0 ? 0 : 1;
}
