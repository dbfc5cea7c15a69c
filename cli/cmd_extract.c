/* imgret extract: FC7 features of a dataset into a feature file, resumable. */
#include "cli/cli_args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "features/features.h"

#include <limits.h>
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

/* The extraction itself: 0 when every item was processed, 1 otherwise. */
static int extract(const char *model, const char *data, const char *out, const char *layer,
                   long limit, int batch, int threads, int raw_orientation,
                   const cli_device_args_t *dev) {
    util_err_t err;
    model_placement_t pl;
    model_file_t *mf = cli_placement(dev, &pl, &err) ? NULL : model_file_load(model, &err);
    if (!mf) {
        fprintf(stderr, "extract: %s\n", err.msg);
        return 1;
    }
    data_dataset_t *all = cli_open_dataset(data, &err), *ds = all;
    if (all) data_dataset_set_raw_orientation(all, raw_orientation);
    if (all && limit > 0 && (size_t)limit < data_dataset_count(all))
        ds = data_dataset_subset(all, 0, (size_t)limit, &err);
    feat_extractor_t *ex = ds ? feat_extractor_create_on(mf, batch, layer, &pl, &err) : NULL;
    model_file_free(mf);
    feat_writer_t *w =
        ex ? feat_writer_open(out, feat_extractor_dim(ex), feat_extractor_model_hash(ex),
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
            fprintf(stderr,
                    "extract: %s: %zu rows of %d floats (%zu new, %zu skipped) in %.1f s%s\n", out,
                    rows, feat_extractor_dim(ex), rows - before, ctx.skipped, secs,
                    rc == 1 ? "; stopped, rerun to continue" : "");
    }
    if (rc < 0) fprintf(stderr, "extract: %s\n", err.msg);
    feat_extractor_free(ex);
    if (ds != all) data_dataset_free(ds);
    data_dataset_free(all);
    return rc == 0 ? 0 : 1;
}

int cmd_extract(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *images = NULL, *out = NULL, *layer = NULL;
    long limit = 0;
    int batch = 128, threads = 2, raw_orientation = 0;
    cli_device_args_t dev = {0};
    const cli_opt_t opts[] = {
        {.name = "--model",
         .kind = CLI_STRING,
         .dst = &model,
         .meta = "M",
         .help = "model file (.imgret, or a training checkpoint)",
         .required = 1},
        CLI_OPT_STRING("--data", &data, "SPEC",
                       "fashion-mnist (training split), fashion-mnist-test, folder:DIR,\n"
                       "list:FILE"),
        CLI_OPT_STRING("--images", &images, "LIST",
                       "a list file: one 'path label' per line (same as list:LIST)"),
        CLI_OPT_LONG("--limit", &limit, 0, LONG_MAX, "N", "the first N items only (0: all)"),
        CLI_OPT_FLAG("--raw-orientation", &raw_orientation, CLI_RAW_ORIENTATION_HELP),
        {.name = "-o",
         .alias = "--output",
         .kind = CLI_STRING,
         .dst = &out,
         .meta = "FILE",
         .help = "feature file; an existing one is continued after its last row",
         .required = 1},
        CLI_OPT_INT("--batch", &batch, 1, 65536, "N", "images per forward pass (default 128)"),
        CLI_OPT_INT("--threads", &threads, 1, 1024, "N", "decode threads (default 2)"),
        CLI_OPT_STRING("--layer", &layer, "NAME",
                       "layer whose output is stored (default relu7: FC7 after ReLU)"),
        CLI_OPTS_DEVICE(&dev),
    };
    const cli_spec_t cli = {.command = "extract",
                            .synopsis = "--model M (--data SPEC | --images LIST) -o FILE [options]",
                            .opts = opts,
                            .n_opts = (int)(sizeof opts / sizeof opts[0])};
    int go = cli_parse(&cli, argc, argv, NULL);
    if (go != CLI_GO) return go;
    if (!data == !images) return cli_usage_error(&cli, "give one of --data SPEC and --images LIST");
    char *list_spec = images ? cli_strdupf("list:%s", images) : NULL;
    if (images && !list_spec) {
        fprintf(stderr, "extract: out of memory\n");
        return 1;
    }
    if (list_spec) data = list_spec;
    int status = extract(model, data, out, layer, limit, batch, threads, raw_orientation, &dev);
    free(list_spec);
    return status;
}
