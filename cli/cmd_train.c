/* imgret train: the paper's recipe on a dataset (default: Fashion-MNIST from
 * Debian's dataset-fashion-mnist), with a progress bar, a per-epoch CSV and
 * checkpoints. */
#include "cli/cli_args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/plot.h"
#include "model/model.h"

#include <limits.h>
#include <math.h>
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

typedef struct train_ctx {
    cli_progress_t progress;
    int epochs;
    FILE *csv;
    const char *out_path;
    const cli_dataset_t *data;
    const model_train_opts_t *opts;
    float input_scale;
    const char *data_name;
} train_ctx_t;

static void on_step(void *p, const model_train_state_t *st, size_t steps, float loss, double ips) {
    train_ctx_t *c = p;
    double now = util_now();
    int last = st->step == steps;
    if (!cli_progress_due(&c->progress, now, last)) return;
    double per_step = st->step ? st->seconds / (double)st->step : 0.0;
    double eta = per_step * (double)(steps - st->step);
    if (c->progress.tty) {
        char bar[CLI_PROGRESS_BAR + 1];
        cli_progress_bar(bar, st->step, steps);
        fprintf(stderr, "\r epoch %d/%d [%s] %zu/%zu loss %.4f  %.0f img/s  ETA %02d:%02d ",
                st->epoch + 1, c->epochs, bar, st->step, steps, (double)loss, ips, (int)eta / 60,
                (int)eta % 60);
        if (last) fputc('\n', stderr);
    } else {
        fprintf(stderr, "epoch %d/%d step %zu/%zu loss %.4f %.0f img/s ETA %ds\n", st->epoch + 1,
                c->epochs, st->step, steps, (double)loss, ips, (int)eta);
    }
}

static void on_epoch(void *p, const model_epoch_metrics_t *m) {
    train_ctx_t *c = p;
    fprintf(stderr,
            "epoch %d: lr %g, train loss %.4f top-1 err %.2f%% top-5 err %.2f%%, val top-1 err "
            "%.2f%% top-5 err %.2f%% (%.0f s%s)\n",
            m->epoch, (double)m->lr, (double)m->train_loss, 100.0 * m->train_top1,
            100.0 * m->train_top5, 100.0 * m->val_top1, 100.0 * m->val_top5, m->seconds,
            m->skipped ? ", some images skipped" : "");
    if (c->csv) {
        fprintf(c->csv, "%d,%g,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.2f,%zu\n", m->epoch, (double)m->lr,
                (double)m->train_loss, (double)m->train_top1, (double)m->train_top5,
                (double)m->val_loss, (double)m->val_top1, (double)m->val_top5, m->seconds,
                m->skipped);
        fflush(c->csv);
    }
}

/* The model file: spec, parameters, the training set's normalisation and
 * class names, and (for a checkpoint) momentum, dropout RNG and the state. */
static int save_model(train_ctx_t *c, model_net_t *net, const model_train_state_t *st,
                      int checkpoint, const char *path, util_err_t *err) {
    model_file_t *mf = model_file_from_net(net, checkpoint, err);
    if (!mf) return -1;
    const data_stats_t *stats = c->data->stats;
    int rc = model_norm_set_mean_image(&mf->norm, stats->c, stats->h, stats->w, stats->mean, err);
    mf->norm.scale = c->input_scale > 0 ? c->input_scale : 1.0f;
    mf->norm.stored_size = stats->h;
    mf->norm.stored_pad = c->data->prep.pad;
    mf->norm.has_eigen = 1;
    memcpy(mf->norm.eigval, stats->eigval, sizeof stats->eigval);
    memcpy(mf->norm.eigvec, stats->eigvec, sizeof stats->eigvec);
    int n = data_dataset_num_classes(c->data->train);
    const char *names[1024];
    if (rc == 0 && n == mf->spec.layer[mf->spec.n_layers - 1].out && n <= 1024) {
        for (int i = 0; i < n; i++)
            names[i] = data_dataset_class_name(c->data->train, i);
        rc = model_file_set_class_names(mf, names, n, err);
    }
    snprintf(mf->source, sizeof mf->source, "imgret train on %s", c->data_name);
    if (rc == 0 && checkpoint) {
        mf->checkpoint->sgd = c->opts->sgd;
        rc = model_train_state_to_checkpoint(st, mf->checkpoint, err);
    }
    if (rc == 0) rc = model_file_save(mf, path, err);
    model_file_free(mf);
    return rc;
}

/* The pictures are for people: a failure to draw them is reported, not fatal. */
static void write_pictures(train_ctx_t *c, model_net_t *net, const model_train_state_t *st) {
    util_err_t perr = {{0}};
    char *curves = cli_strdupf("%s.curves.png", c->out_path);
    char *conv1 = cli_strdupf("%s.conv1.png", c->out_path);
    if (!curves || !conv1)
        fprintf(stderr, "imgret train: out of memory for the pictures' paths\n");
    else if (st->n_history > 0 && cli_plot_curves(st->history, st->n_history, curves, &perr))
        fprintf(stderr, "imgret train: %s\n", perr.msg);
    if (conv1 && cli_plot_conv1(net, conv1, &perr)) fprintf(stderr, "imgret train: %s\n", perr.msg);
    free(curves);
    free(conv1);
}

static int on_checkpoint(void *p, const model_net_t *net, const model_train_state_t *st,
                         util_err_t *err) {
    train_ctx_t *c = p;
    char *path = cli_strdupf("%s.ckpt", c->out_path);
    if (!path) return util_fail(err, "out of memory for %s.ckpt", c->out_path);
    int rc = save_model(c, (model_net_t *)net, st, 1, path, err);
    free(path);
    if (rc) return -1;
    write_pictures(c, (model_net_t *)net, st);
    return 0;
}

static void on_skip(void *p, size_t item, const char *message) {
    (void)p;
    fprintf(stderr, "\nskipped item %zu: %s\n", item, message);
}

static const char *const schedules[] = {"plateau", "step", "linear", "cosine", NULL};
static const model_lr_schedule_t schedule_of[] = {MODEL_LR_PLATEAU, MODEL_LR_STEP, MODEL_LR_LINEAR,
                                                  MODEL_LR_COSINE};
static const char *const bias_inits[] = {"paper", "caffe", "zero", NULL};
static const char *const inits[] = {"paper", "he", NULL};

int cmd_train(int argc, char **argv) {
    cli_data_args_t da = cli_data_args_defaults();
    cli_device_args_t dev = {0};
    const char *net_name = NULL, *out = "model.imgret", *csv_path = NULL;
    const char *resume = NULL;
    model_train_opts_t o = model_train_defaults();
    o.epochs = 30;
    o.patience = 2;
    o.step_epochs = 10;
    o.seed = 1;
    float weight_std = 0.01f;
    int schedule = 0, bias = 0, he = 0, no_mirror = 0;
    float last_std = 0.0f;
    float input_scale = 0.0f;
    float dropout = -1.0f;
    const cli_opt_t opts[] = {
        CLI_OPT_STRING("--data", &da.data, "SPEC",
                       "fashion-mnist (default), folder:DIR, list:FILE"),
        CLI_OPT_STRING("--val", &da.val, "SPEC",
                       "validation set (default: the test split of fashion-mnist)"),
        CLI_OPT_FLAG("--raw-orientation", &da.raw_orientation, CLI_RAW_ORIENTATION_HELP),
        CLI_OPT_STRING("--net", &net_name, "NAME",
                       "alexnet | alexnet-small (default for small images)"),
        CLI_OPT_INT("--epochs", &o.epochs, 1, 100000, "N", "(default 30)"),
        CLI_OPT_INT("--batch", &o.batch, 1, 65536, "N", "(default 128, the paper's)"),
        CLI_OPT_FLOAT("--lr", &o.sgd.lr, 0, 1000, "X",
                      "initial learning rate (default 0.01, the paper's)"),
        CLI_OPT_CHOICE("--schedule", &schedule, schedules,
                       "plateau (default: /10 when val error stops improving) | step |\n"
                       "linear (to 0 at the last step) | cosine (to 0, half a cosine)"),
        CLI_OPT_FLOAT("--warmup", &o.warmup_epochs, 0, 100000, "X",
                      "ramp the lr up linearly over the first X epochs (default 0)"),
        CLI_OPT_INT("--patience", &o.patience, 0, 100000, "N",
                    "plateau epochs before a drop (default 2)"),
        CLI_OPT_INT("--step-epochs", &o.step_epochs, 1, 100000, "N",
                    "step schedule: epochs between drops (default 10)"),
        CLI_OPT_CHOICE("--bias-init", &bias, bias_inits,
                       "paper (1 in conv2,4,5,fc6,7; default) | caffe (0.1) | zero"),
        CLI_OPT_CHOICE("--init", &he, inits,
                       "paper (N(0, --weight-std); default) | he (N(0, sqrt(2/fan_in)))"),
        CLI_OPT_FLOAT("--weight-std", &weight_std, 0, 100, "X",
                      "N(0, X) weights (default 0.01, the paper's)"),
        CLI_OPT_FLOAT("--last-std", &last_std, 0, 100, "X",
                      "N(0, X) for the classifier (last) layer only (default: as the\n"
                      "others; small values keep the first logits near uniform)"),
        CLI_OPT_FLOAT("--input-scale", &input_scale, 0, 1e6, "X",
                      "multiply the mean-subtracted 0..255 input by X (default 1, the paper's)"),
        CLI_OPT_FLOAT("--dropout", &dropout, 0, 1, "X",
                      "dropout probability of fc6 and fc7, below 1 (default 0.5, the paper's)"),
        CLI_OPT_FLOAT("--lighting", &o.lighting_std, 0, 100, "X",
                      "PCA lighting alpha std (default 0.1, the paper's; 0 off)"),
        CLI_OPT_FLAG("--no-mirror", &no_mirror, "no horizontal mirrors"),
        CLI_OPT_LONG("--limit", &da.limit, 0, LONG_MAX, "N",
                     "use the first N training images (for quick runs; 0: all)"),
        CLI_OPT_LONG("--val-limit", &da.val_limit, 0, LONG_MAX, "N",
                     "validate on the first N validation images (0: all)"),
        CLI_OPTS_DEVICE(&dev),
        CLI_OPT_U64("--seed", &o.seed, "N", "data order and augmentation (default 1)"),
        CLI_OPT_INT("--threads", &o.threads, 1, 1024, "N", "loader threads (default 2)"),
        CLI_OPT_STRING("--csv", &csv_path, "FILE",
                       "per-epoch metrics (default OUT.csv); OUT.curves.png and\n"
                       "OUT.conv1.png (the learned conv1 kernels) after every epoch"),
        CLI_OPT_STRING("--resume", &resume, "CKPT",
                       "continue from OUT.ckpt (repeat the same options)"),
        {.name = "-o",
         .alias = "--out",
         .kind = CLI_STRING,
         .dst = &out,
         .meta = "FILE",
         .help = "model file (default model.imgret)"},
    };
    const cli_spec_t cli = {.command = "train",
                            .synopsis = "[options]",
                            .opts = opts,
                            .n_opts = (int)(sizeof opts / sizeof opts[0])};
    int go = cli_parse(&cli, argc, argv, NULL);
    if (go != CLI_GO) return go;
    o.schedule = schedule_of[schedule];
    if (no_mirror) o.mirror = 0;
    if (dropout >= 1)
        return cli_usage_error(&cli, "--dropout: expected a probability below 1, got 1");

    util_err_t err = {{0}};
    model_placement_t pl;
    if (cli_placement(&dev, &pl, &err)) {
        fprintf(stderr, "imgret train: %s\n", err.msg);
        return 2;
    }
    cli_dataset_t data;
    if (cli_open_data(&da, &data, &err)) {
        fprintf(stderr, "imgret train: %s\n", err.msg);
        return 1;
    }
    model_spec_t spec;
    if (cli_default_spec(&data, net_name, &spec, &err)) goto fail;
    model_shape_t shapes[MODEL_MAX_LAYERS];
    if (model_spec_shapes(&spec, 1, shapes, &err)) goto fail;
    int last_param_layer = -1;
    for (int i = 0; i < spec.n_layers; i++)
        if (spec.layer[i].kind == MODEL_CONV || spec.layer[i].kind == MODEL_FC)
            last_param_layer = i;
    if (dropout >= 0) {
        for (int i = 0; i < spec.n_layers; i++)
            if (spec.layer[i].kind == MODEL_DROPOUT) spec.layer[i].dropout = dropout;
    }
    for (int i = 0; i < spec.n_layers; i++) {
        model_layer_spec_t *l = &spec.layer[i];
        if (l->kind != MODEL_CONV && l->kind != MODEL_FC) continue;
        l->weight_std = weight_std;
        if (he) {
            /* He et al. 2015: std sqrt(2 / fan_in), for ReLU nets trained from scratch. */
            model_shape_t in =
                i ? shapes[i - 1] : (model_shape_t){1, spec.in_c, spec.in_h, spec.in_w};
            double fan_in = l->kind == MODEL_FC ? (double)in.c * in.h * in.w
                                                : (double)in.c / l->groups * l->kernel * l->kernel;
            l->weight_std = (float)sqrt(2.0 / fan_in);
        }
        if (last_std > 0 && i == last_param_layer) l->weight_std = last_std;
        if (bias == 1 && l->bias_init > 0) l->bias_init = 0.1f;
        if (bias == 2) l->bias_init = 0.0f;
    }
    o.prep = data.prep;
    o.crop = data.crop;
    o.norm.mean_mode = DATA_MEAN_PIXEL;
    o.norm.stats = data.stats;
    o.norm.scale = input_scale;
    model_net_t *net = NULL;
    model_train_state_t *st = malloc(sizeof *st);
    if (!st) {
        util_fail(&err, "out of memory");
        goto fail;
    }
    model_train_state_init(st, &o);
    if (resume) {
        /* The same command line plus --resume continues exactly: the data
         * order and augmentation are functions of (seed, epoch, index), and
         * the checkpoint brings parameters, momentum, dropout RNG and state. */
        model_file_t *ck = model_file_load(resume, &err);
        if (!ck) {
            free(st);
            goto fail;
        }
        if (!ck->checkpoint) {
            util_fail(&err, "%s is a model file without training state; resume from the .ckpt file",
                      resume);
            model_file_free(ck);
            free(st);
            goto fail;
        }
        net = model_net_create_from_file_on(ck, o.batch, &pl, &err);
        if (!net || model_train_state_from_checkpoint(st, &o, ck->checkpoint, &err)) {
            model_file_free(ck);
            model_net_free(net);
            free(st);
            goto fail;
        }
        model_file_free(ck);
        fprintf(stderr, "resuming from %s at epoch %d, step %zu, lr %g\n", resume, st->epoch + 1,
                st->step, (double)st->lr);
    } else {
        net = model_net_create_on(&spec, o.batch, &pl, &err);
        if (!net) {
            free(st);
            goto fail;
        }
        model_net_init(net, o.seed);
    }

    char *csv_default = csv_path ? NULL : cli_strdupf("%s.csv", out);
    if (csv_default) csv_path = csv_default;
    train_ctx_t ctx = {.progress.tty = isatty(2),
                       .epochs = o.epochs,
                       .csv = csv_path ? fopen(csv_path, resume ? "a" : "w") : NULL,
                       .out_path = out,
                       .data = &data,
                       .opts = &o,
                       .input_scale = input_scale,
                       .data_name = da.data};
    if (!ctx.csv)
        fprintf(stderr, "imgret train: cannot write %s; no CSV\n", csv_path ? csv_path : out);
    else if (!resume)
        fprintf(ctx.csv, "epoch,lr,train_loss,train_top1_err,train_top5_err,val_loss,val_top1_err,"
                         "val_top5_err,seconds,skipped\n");
    char where[128];
    free(csv_default);
    model_placement_str(&pl, where, sizeof where);
    fprintf(stderr,
            "training %s (%zu parameters) on %s, on %zu images, validating on %zu; %d epochs\n",
            spec.name, model_net_param_total(net), where, data_dataset_count(data.train),
            data.val ? data_dataset_count(data.val) : 0, o.epochs);
    signal(SIGINT, on_sigint);
    model_train_hooks_t hooks = {&ctx, on_step, on_epoch, on_checkpoint, on_skip, &stop_requested};
    double t0 = util_now();
    int rc = model_train(net, data.train, data.val, &o, st, &hooks, &err);
    if (ctx.csv) fclose(ctx.csv);
    if (rc < 0) {
        free(st);
        model_net_free(net);
        goto fail;
    }
    fprintf(stderr, "%s after %.0f s\n", rc == MODEL_TRAIN_STOPPED ? "stopped" : "done",
            util_now() - t0);
    if (rc == MODEL_TRAIN_DONE) {
        if (save_model(&ctx, net, st, 0, out, &err)) {
            free(st);
            model_net_free(net);
            goto fail;
        }
        write_pictures(&ctx, net, st);
        fprintf(stderr, "wrote %s (checkpoint: %s.ckpt; %s.curves.png, %s.conv1.png)\n", out, out,
                out, out);
    } else {
        fprintf(stderr, "checkpoint in %s.ckpt; continue with --resume %s.ckpt\n", out, out);
    }
    if (data.val && rc == MODEL_TRAIN_DONE) {
        model_eval_result_t c1, c10;
        if (model_evaluate(net, data.val, &o.prep, o.crop, &o.norm, 0, o.threads, &c1, &err) ||
            model_evaluate(net, data.val, &o.prep, o.crop, &o.norm, 1, o.threads, &c10, &err)) {
            free(st);
            model_net_free(net);
            goto fail;
        }
        printf("validation (%zu images): centre crop top-1 error %.2f%% top-5 %.2f%%; ten crops "
               "top-1 error %.2f%% top-5 %.2f%%\n",
               c1.count, 100.0 * c1.top1, 100.0 * c1.top5, 100.0 * c10.top1, 100.0 * c10.top5);
    }
    free(st);
    model_net_free(net);
    cli_close_data(&data);
    return rc == MODEL_TRAIN_STOPPED ? 130 : 0; /* 130: stopped by a signal, like a shell */
fail:
    fprintf(stderr, "imgret train: %s\n", err.msg);
    cli_close_data(&data);
    return 1;
}
