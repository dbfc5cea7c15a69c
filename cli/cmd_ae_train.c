/* imgret ae-train: the binary autoencoder on the rows of a feature file. */
#include "autoencoder/autoencoder.h"
#include "cli/commands.h"
#include "features/features.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile int stop_requested;

static void on_sigint(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void on_epoch(void *ctx, int epoch, double mse, double seconds) {
    int *epochs = ctx;
    fprintf(stderr, "ae-train: epoch %d/%d: training mse %.4f (%.1f s)\n", epoch, *epochs, mse,
            seconds);
}

/* The defaults are the recipe of docs/retrieval.md, chosen on a validation
 * split of the Fashion-MNIST training images (AE-64 above ITQ-64 there and
 * on the test queries): few SGD steps on few rows, because the ranking of
 * the whole database gets worse as the reconstruction keeps improving. */
#define DEF_HIDDEN "512,128"
#define DEF_EPOCHS 3
#define DEF_RAMP 2
#define DEF_LR 0.0001f
#define DEF_BALANCE 0.03f
#define DEF_LIMIT 10000

static int usage(FILE *f) {
    fprintf(f,
            "usage: imgret ae-train --features F -o AE [options]\n"
            "  --features F    feature file (FC7 rows) to train on\n"
            "  -o AE           output: the autoencoder as an imgret model file\n"
            "  --bits B        code bits (default 64; 28, 32, 64, 128, 256, ...)\n"
            "  --hidden LIST   encoder hidden widths, comma-separated (default " DEF_HIDDEN ")\n"
            "  --epochs N      (default %d)   --batch N (default 100)\n"
            "  --lr X          (default %g) --momentum X (default 0.9)\n"
            "  --noise X       std of the noise on the code units' inputs (default 4)\n"
            "  --noise-ramp N  epochs over which the noise ramps up from 0 (default %d)\n"
            "  --standardise S global (default: centre, one common scale) | per-dim\n"
            "  --normalise N   l2 (default): each row to unit length first, in training\n"
            "                  and when encoding (recorded in the file) | none\n"
            "  --balance X     weight of the code balance term (default %g; 0: off): X\n"
            "                  times the sum of the squared batch means of the code units'\n"
            "                  inputs\n"
            "  --limit N       the first N rows only (default %d; 0: all)\n"
            "  --seed N        (default 1)\n"
            "The defaults are the recipe of docs/retrieval.md (few steps on few rows:\n"
            "longer training lowers the mAP of the codes).\n",
            DEF_EPOCHS, (double)DEF_LR, DEF_RAMP, (double)DEF_BALANCE, DEF_LIMIT);
    return f == stdout ? 0 : 2;
}

int cmd_ae_train(int argc, char **argv) {
    const char *feat = NULL, *out = NULL, *hidden_s = DEF_HIDDEN;
    int bits = 64;
    long limit = DEF_LIMIT;
    int per_dim = 0, l2 = 1;
    float balance = DEF_BALANCE;
    uint64_t seed = 1;
    ae_train_opts_t o = ae_train_defaults();
    o.epochs = DEF_EPOCHS;
    o.noise_ramp = DEF_RAMP;
    o.lr = DEF_LR;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout);
        if (i + 1 >= argc) {
            fprintf(stderr, "ae-train: %s needs a value (or is unknown)\n", a);
            return usage(stderr);
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--features")) feat = v;
        else if (!strcmp(a, "-o")) out = v;
        else if (!strcmp(a, "--bits")) bits = atoi(v);
        else if (!strcmp(a, "--hidden")) hidden_s = v;
        else if (!strcmp(a, "--epochs")) o.epochs = atoi(v);
        else if (!strcmp(a, "--batch")) o.batch = atoi(v);
        else if (!strcmp(a, "--lr")) o.lr = strtof(v, NULL);
        else if (!strcmp(a, "--momentum")) o.momentum = strtof(v, NULL);
        else if (!strcmp(a, "--noise")) o.noise_std = strtof(v, NULL);
        else if (!strcmp(a, "--noise-ramp")) o.noise_ramp = atoi(v);
        else if (!strcmp(a, "--limit")) limit = atol(v);
        else if (!strcmp(a, "--standardise") && (!strcmp(v, "per-dim") || !strcmp(v, "global")))
            per_dim = !strcmp(v, "per-dim");
        else if (!strcmp(a, "--normalise") && (!strcmp(v, "l2") || !strcmp(v, "none")))
            l2 = !strcmp(v, "l2");
        else if (!strcmp(a, "--balance")) balance = strtof(v, NULL);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "ae-train: unknown option %s\n", a);
            return usage(stderr);
        }
    }
    if (!feat || !out) return usage(stderr);
    int hidden[AE_MAX_HIDDEN], nh = 0;
    for (const char *p = hidden_s; *p && nh < AE_MAX_HIDDEN;) {
        hidden[nh++] = atoi(p);
        const char *c = strchr(p, ',');
        if (!c) break;
        p = c + 1;
    }
    util_err_t err;
    feat_file_t *f = feat_file_open(feat, &err);
    if (!f) {
        fprintf(stderr, "ae-train: %s\n", err.msg);
        return 1;
    }
    size_t n = feat_file_count(f);
    if (limit > 0 && (size_t)limit < n) n = (size_t)limit;
    const float *x = feat_file_rows(f);
    int dim = feat_file_dim(f);
    ae_t *ae = ae_create(dim, hidden, nh, bits, seed, &err);
    int rc = ae ? 0 : -1;
    if (rc == 0) ae_set_l2(ae, l2), ae_set_balance(ae, balance);
    if (rc == 0) rc = ae_fit_standardisation(ae, x, n, per_dim, &err);
    double before = 0, after = 0;
    if (rc == 0) rc = ae_reconstruction_error(ae, x, n < 2000 ? n : 2000, &before, &err);
    o.seed = seed;
    o.on_epoch = on_epoch;
    o.ctx = &o.epochs;
    o.stop = &stop_requested;
    signal(SIGINT, on_sigint);
    double t0 = util_now();
    if (rc == 0) {
        fprintf(stderr, "ae-train: %zu rows of %d -> %s -> %d bits, %d epochs\n", n, dim, hidden_s,
                bits, o.epochs);
        rc = ae_train(ae, x, n, &o, &err);
    }
    if (rc == 0 && stop_requested) {
        fprintf(stderr, "ae-train: interrupted; nothing written (rerun to train again)\n");
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
            for (size_t i = 0; i < m * (size_t)bits; i++) mid += act[i] > 0.1f && act[i] < 0.9f;
            for (int j = 0; j < bits; j++) {
                size_t on = 0;
                for (size_t i = 0; i < m; i++) on += act[i * bits + j] > 0.5f;
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
    if (rc) fprintf(stderr, "ae-train: %s\n", err.msg);
    else fprintf(stderr, "ae-train: wrote %s\n", out);
    ae_free(ae);
    feat_file_close(f);
    return rc ? 1 : 0;
}
