/* imgret ae-train: the binary autoencoder on the rows of a feature file. */
#include "autoencoder/autoencoder.h"
#include "cli/cli_args.h"
#include "cli/commands.h"
#include "features/features.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile int stop_requested;

static void on_sigint(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Choosing the epoch: after each one, the codes of held-out rows (queries)
 * are ranked against the codes of training rows (database) by Hamming
 * distance, and the parameters of the epoch with the best mAP (relevant =
 * same label) are kept. */
typedef struct trainer {
    ae_t *ae;
    int epochs;
    const float *q, *db; /* held-out rows, training rows (database) */
    size_t nq, ndb;
    int32_t *q_labels, *db_labels;
    uint8_t *q_codes, *db_codes;
    float **best; /* a copy of each parameter array at the best epoch */
    double best_map;
    int best_epoch; /* 0: none yet */
    int failed;
    util_err_t err;
} trainer_t;

static void on_epoch(void *ctx, int epoch, double mse, double seconds) {
    trainer_t *t = ctx;
    if (!t->nq || t->failed) {
        fprintf(stderr, "ae-train: epoch %d/%d: training mse %.4f (%.1f s)\n", epoch, t->epochs,
                mse, seconds);
        return;
    }
    ae_eval_result_t r;
    const int bytes = ae_code_bytes(ae_bits(t->ae));
    if (ae_encode(t->ae, t->q, t->nq, NULL, t->q_codes, &t->err) ||
        ae_encode(t->ae, t->db, t->ndb, NULL, t->db_codes, &t->err) ||
        ae_eval_hamming(t->q_codes, t->nq, t->db_codes, t->ndb, bytes, t->q_labels, t->db_labels,
                        &r, &t->err)) {
        t->failed = 1;
        return;
    }
    const int better = t->best_epoch == 0 || r.map > t->best_map;
    fprintf(stderr, "ae-train: epoch %d/%d: training mse %.4f, validation mAP %.4f%s (%.1f s)\n",
            epoch, t->epochs, mse, r.map, better ? " (best)" : "", seconds);
    if (!better) return;
    t->best_map = r.map;
    t->best_epoch = epoch;
    for (int i = 0; i < ae_n_params(t->ae); i++) {
        size_t count;
        const float *p = ae_param(t->ae, i, NULL, &count);
        memcpy(t->best[i], p, count * sizeof(float));
    }
}

/* Sets up the held-out rows: the last nval rows of the file, ranked
 * against the first (up to 10,000) training rows. Returns -1 on failure,
 * 0 when it is on or off (t->nq). */
static int setup_validation(trainer_t *t, const feat_file_t *f, size_t n, size_t nval,
                            util_err_t *err) {
    const size_t count = feat_file_count(f);
    const int dim = feat_file_dim(f), bytes = ae_code_bytes(ae_bits(t->ae));
    if (nval == 0) return 0;
    t->nq = nval;
    t->q = feat_file_rows(f) + (count - nval) * (size_t)dim;
    t->db = feat_file_rows(f);
    t->ndb = n < 10000 ? n : 10000;
    t->q_labels = malloc(t->nq * sizeof(int32_t));
    t->db_labels = malloc(t->ndb * sizeof(int32_t));
    t->q_codes = malloc(t->nq * (size_t)bytes);
    t->db_codes = malloc(t->ndb * (size_t)bytes);
    t->best = calloc((size_t)ae_n_params(t->ae), sizeof(float *));
    if (!t->q_labels || !t->db_labels || !t->q_codes || !t->db_codes || !t->best)
        return util_fail(err, "out of memory for the validation rows");
    for (size_t i = 0; i < t->nq; i++)
        t->q_labels[i] = feat_file_label(f, count - nval + i);
    for (size_t i = 0; i < t->ndb; i++)
        t->db_labels[i] = feat_file_label(f, i);
    for (int i = 0; i < ae_n_params(t->ae); i++) {
        size_t c;
        ae_param(t->ae, i, NULL, &c);
        if (!(t->best[i] = malloc(c * sizeof(float))))
            return util_fail(err, "out of memory for a copy of the parameters");
    }
    return 0;
}

/* Puts the best epoch's parameters back. */
static void keep_best(trainer_t *t) {
    if (!t->nq || !t->best_epoch) return;
    for (int i = 0; i < ae_n_params(t->ae); i++) {
        size_t count;
        float *p = ae_param(t->ae, i, NULL, &count);
        memcpy(p, t->best[i], count * sizeof(float));
    }
    fprintf(stderr, "ae-train: kept epoch %d of %d (validation mAP %.4f)\n", t->best_epoch,
            t->epochs, t->best_map);
}

static void trainer_free(trainer_t *t) {
    for (int i = 0; t->best && t->ae && i < ae_n_params(t->ae); i++)
        free(t->best[i]);
    free(t->best);
    free(t->q_labels), free(t->db_labels), free(t->q_codes), free(t->db_codes);
}

/* The defaults are the recipe of docs/retrieval.md, chosen on validation
 * splits of the Fashion-MNIST training images' FC7 from two models (AE-64
 * above ITQ-64 on both): 10,000 rows, and the epoch (of 8) whose codes rank
 * held-out rows best, because the ranking of the whole database gets worse
 * as the reconstruction keeps improving, after a number of steps that
 * depends on the features. */
#define XSTR(x) STR(x)
#define STR(x) #x
#define DEF_HIDDEN "512,128"
#define DEF_EPOCHS 8
#define DEF_RAMP 6
#define DEF_LR 0.0001f
#define DEF_BALANCE 0.03f
#define DEF_LIMIT 10000
#define DEF_VAL 2000

static const char *const standardisations[] = {"global", "per-dim", NULL};
static const char *const normalisations[] = {"l2", "none", NULL};

int cmd_ae_train(int argc, char **argv) {
    const char *feat = NULL, *out = NULL, *hidden_s = DEF_HIDDEN;
    int bits = 64;
    long limit = DEF_LIMIT, val_rows = -1; /* -1: the default */
    int per_dim = 0, no_l2 = 0;
    float balance = DEF_BALANCE;
    uint64_t seed = 1;
    ae_train_opts_t o = ae_train_defaults();
    o.epochs = DEF_EPOCHS;
    o.noise_ramp = DEF_RAMP;
    o.lr = DEF_LR;
    const cli_opt_t opts[] = {
        {.name = "--features",
         .kind = CLI_STRING,
         .dst = &feat,
         .meta = "F",
         .help = "feature file (FC7 rows) to train on",
         .required = 1},
        {.name = "-o",
         .kind = CLI_STRING,
         .dst = &out,
         .meta = "AE",
         .help = "output: the autoencoder as an imgret model file",
         .required = 1},
        CLI_OPT_INT("--bits", &bits, 1, AE_MAX_BITS, "B",
                    "code bits (default 64; 28, 32, 64, 128, 256, ...)"),
        CLI_OPT_STRING("--hidden", &hidden_s, "LIST",
                       "encoder hidden widths, comma-separated (default " DEF_HIDDEN ")"),
        CLI_OPT_INT("--epochs", &o.epochs, 1, 1000000, "N", "(default " XSTR(DEF_EPOCHS) ")"),
        CLI_OPT_INT("--batch", &o.batch, 1, 1 << 20, "N", "(default 100)"),
        CLI_OPT_FLOAT("--lr", &o.lr, 0, 1000, "X", "(default 0.0001)"),
        CLI_OPT_FLOAT("--momentum", &o.momentum, 0, 1, "X", "(default 0.9)"),
        CLI_OPT_FLOAT("--noise", &o.noise_std, 0, 1e6, "X",
                      "std of the noise on the code units' inputs (default 4)"),
        CLI_OPT_INT("--noise-ramp", &o.noise_ramp, 0, 1000000, "N",
                    "epochs over which the noise ramps up from 0 (default " XSTR(DEF_RAMP) ")"),
        CLI_OPT_CHOICE("--standardise", &per_dim, standardisations,
                       "global (default: centre, one common scale) | per-dim"),
        CLI_OPT_CHOICE("--normalise", &no_l2, normalisations,
                       "l2 (default): each row to unit length first, in training\n"
                       "and when encoding (recorded in the file) | none"),
        CLI_OPT_FLOAT("--balance", &balance, 0, 1e6, "X",
                      "weight of the code balance term (default 0.03; 0: off): X\n"
                      "times the sum of the squared batch means of the code units'\n"
                      "inputs"),
        CLI_OPT_LONG("--limit", &limit, 0, LONG_MAX, "N",
                     "train on the first N rows only (default " XSTR(DEF_LIMIT) "; 0: all)"),
        /* clang-format off */
        CLI_OPT_LONG("--val-rows", &val_rows, 0, LONG_MAX, "N",
                     "hold out the last N rows of the file (default " XSTR(DEF_VAL) ", at most\n"
                     "a tenth of the rows; 0: off)\n"
                     "and keep the epoch whose codes rank them best against\n"
                     "the training rows (mAP, relevant = same label; needs\n"
                     "labels, else every epoch is kept)"),
        /* clang-format on */
        CLI_OPT_U64("--seed", &seed, "N", "(default 1)"),
    };
    const cli_spec_t cli = {
        .command = "ae-train",
        .synopsis = "--features F -o AE [options]",
        .notes = "The defaults are the recipe of docs/retrieval.md (few rows, the best epoch\n"
                 "on held-out rows: longer training lowers the mAP of the codes).",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0])};
    int go = cli_parse(&cli, argc, argv, NULL);
    if (go != CLI_GO) return go;
    const int l2 = !no_l2;
    int hidden[AE_MAX_HIDDEN];
    cli_int_list_t hl = {hidden, AE_MAX_HIDDEN, 0, 1, 1 << 20};
    char msg[256];
    if (cli_parse_int_list(hidden_s, &hl, msg, sizeof msg))
        return cli_usage_error(&cli, "--hidden: %s", msg);
    const int nh = hl.n;
    util_err_t err;
    feat_file_t *f = feat_file_open(feat, &err);
    if (!f) {
        fprintf(stderr, "ae-train: %s\n", err.msg);
        return 1;
    }
    const size_t count = feat_file_count(f);
    if (val_rows == -1) val_rows = count / 10 < DEF_VAL ? (long)(count / 10) : DEF_VAL;
    for (size_t i = 0; val_rows > 0 && i < count; i++)
        if (feat_file_label(f, i) < 0) {
            fprintf(stderr, "ae-train: row %zu has no label: no validation, all %d epochs kept\n",
                    i, o.epochs);
            val_rows = 0;
        }
    if (val_rows < 0 || (val_rows > 0 && (size_t)val_rows >= count)) {
        feat_file_close(f);
        return cli_usage_error(&cli, "--val-rows %ld: want 0 to %zu (the file has %zu rows)",
                               val_rows, count ? count - 1 : 0, count);
    }
    /* Training rows: the first ones, never the held-out ones at the end. */
    size_t n = count - (size_t)val_rows;
    if (limit > 0 && (size_t)limit < n) n = (size_t)limit;
    const float *x = feat_file_rows(f);
    int dim = feat_file_dim(f);
    ae_t *ae = ae_create(dim, hidden, nh, bits, seed, &err);
    int rc = ae ? 0 : -1;
    trainer_t tr = {.ae = ae, .epochs = o.epochs};
    if (rc == 0) rc = setup_validation(&tr, f, n, (size_t)val_rows, &err);
    if (rc == 0) ae_set_l2(ae, l2), ae_set_balance(ae, balance);
    if (rc == 0) rc = ae_fit_standardisation(ae, x, n, per_dim, &err);
    double before = 0, after = 0;
    if (rc == 0) rc = ae_reconstruction_error(ae, x, n < 2000 ? n : 2000, &before, &err);
    o.seed = seed;
    o.on_epoch = on_epoch;
    o.ctx = &tr;
    o.stop = &stop_requested;
    signal(SIGINT, on_sigint);
    double t0 = util_now();
    if (rc == 0) {
        fprintf(stderr, "ae-train: %zu rows of %d -> %s -> %d bits, %d epochs\n", n, dim, hidden_s,
                bits, o.epochs);
        if (tr.nq)
            fprintf(stderr, "ae-train: validation: the last %zu rows against the first %zu\n",
                    tr.nq, tr.ndb);
        rc = ae_train(ae, x, n, &o, &err);
        if (rc == 0 && tr.failed) rc = util_fail(&err, "validation: %s", tr.err.msg);
        if (rc == 0 && !stop_requested) keep_best(&tr);
    }
    if (rc == 0 && stop_requested) {
        fprintf(stderr, "ae-train: interrupted; nothing written (rerun to train again)\n");
        trainer_free(&tr);
        ae_free(ae);
        feat_file_close(f);
        return 130;
    }
    if (rc == 0) rc = ae_reconstruction_error(ae, x, n < 2000 ? n : 2000, &after, &err);
    if (rc == 0) {
        /* How binary the code units became: activities away from 0 and 1. */
        size_t m = n < 2000 ? n : 2000, mid = 0;
        int constant = 0; /* bits with the same value in over 99% of the rows */
        float *act = malloc(m * bits * sizeof(float));
        if (act && ae_encode(ae, x, m, act, NULL, &err) == 0) {
            for (size_t i = 0; i < m * (size_t)bits; i++)
                mid += act[i] > 0.1f && act[i] < 0.9f;
            for (int j = 0; j < bits; j++) {
                size_t on = 0;
                for (size_t i = 0; i < m; i++)
                    on += act[i * bits + j] > 0.5f;
                constant += on * 100 < m || on * 100 > m * 99;
            }
        }
        free(act);
        fprintf(stderr,
                "ae-train: mse %.4f -> %.4f (first %zu rows); %.1f%% of code activities in "
                "(0.1, 0.9); %d of %d bits constant; %.0f s\n",
                before, after, m, 100.0 * (double)mid / ((double)m * bits), constant, bits,
                util_now() - t0);
        char src[256];
        snprintf(src, sizeof src, "imgret ae-train on %.200s", feat);
        rc = ae_save(ae, out, src, &err);
    }
    if (rc)
        fprintf(stderr, "ae-train: %s\n", err.msg);
    else
        fprintf(stderr, "ae-train: wrote %s\n", out);
    trainer_free(&tr);
    ae_free(ae);
    feat_file_close(f);
    return rc ? 1 : 0;
}
