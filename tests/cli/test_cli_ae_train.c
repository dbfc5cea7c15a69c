/* `imgret ae-train` run as a user runs it, on feature files written through
 * the features API: the epoch kept by --val-rows is the one whose codes
 * ranked the held-out rows best (checked by recomputing that mAP from the
 * written autoencoder), unlabelled files train every epoch, and bad
 * --val-rows values are refused. */
#include "autoencoder/autoencoder.h"
#include "features/features.h"
#include "tests/cli/cli_run.h"
#include "tests/test.h"

#define DIM 32
#define ROWS 600
#define CLASSES 4

static void run_ae_train(run_result_t *r, ...) {
    va_list ap;
    va_start(ap, r);
    run_imgret_v(r, "ae-train", ap);
    va_end(ap);
}

/* ROWS rows in CLASSES noisy clusters (ReLU-like, as FC7 is); labels the
 * cluster, or -1 for all when !labelled. */
static void write_clusters(const char *path, int labelled) {
    float *rows = malloc(sizeof(float) * ROWS * DIM), centre[CLASSES][DIM];
    int64_t ids[ROWS];
    int32_t labels[ROWS];
    util_rng_t rng;
    util_rng_seed(&rng, 5);
    for (int c = 0; c < CLASSES; c++)
        for (int j = 0; j < DIM; j++)
            centre[c][j] = (float)(2.0 * util_rng_uniform(&rng));
    for (int i = 0; i < ROWS; i++) {
        const int c = i % CLASSES;
        ids[i] = i;
        labels[i] = labelled ? c : -1;
        for (int j = 0; j < DIM; j++) {
            float v = centre[c][j] + (float)(0.8 * util_rng_normal(&rng));
            rows[(size_t)i * DIM + (size_t)j] = v > 0 ? v : 0;
        }
    }
    util_err_t err;
    feat_writer_t *w = feat_writer_open(path, DIM, NULL, ROWS, &err);
    if (!w || feat_writer_append(w, ROWS, rows, ids, labels, NULL, &err) ||
        feat_writer_close(w, &err)) {
        fprintf(stderr, "cannot write %s: %s\n", path, err.msg);
        exit(2);
    }
    free(rows);
}

static char labelled[600], unlabelled[600], ae_path[600];

static void test_the_kept_epoch_is_the_best_on_the_held_out_rows(void) {
    run_result_t r;
    run_ae_train(&r, "--features", labelled, "-o", ae_path, "--bits", "16", "--hidden", "24",
                 "--epochs", "6", "--noise-ramp", "2", "--lr", "0.002", "--val-rows", "100", NULL);
    CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_MSG(strstr(r.err, "validation: the last 100 rows against the first 500"), "%s", r.err);
    /* The printed mAP of every epoch, and the epoch said to be kept. */
    double map[7] = {0}, best = -1;
    int best_epoch = 0, seen = 0;
    for (const char *p = r.err; (p = strstr(p, "ae-train: epoch ")); p++) {
        int e, total;
        double mse, m;
        if (sscanf(p, "ae-train: epoch %d/%d: training mse %lf, validation mAP %lf", &e, &total,
                   &mse, &m) == 4 &&
            e >= 1 && e <= 6) {
            map[e] = m;
            seen++;
            if (m > best) best = m, best_epoch = e;
        }
    }
    CHECK_MSG(seen == 6, "a validation mAP for each of the 6 epochs: %d in %s", seen, r.err);
    int kept = 0;
    double kept_map = 0;
    const char *k = strstr(r.err, "ae-train: kept epoch ");
    CHECK_MSG(
        k && sscanf(k, "ae-train: kept epoch %d of 6 (validation mAP %lf)", &kept, &kept_map) == 2,
        "%s", r.err);
    CHECK_MSG(kept == best_epoch, "kept epoch %d, best printed %d", kept, best_epoch);
    CHECK_NEAR(kept_map, map[kept], 1e-4);

    /* The written autoencoder is that epoch's: its codes give that mAP. */
    util_err_t err;
    feat_file_t *f = feat_file_open(labelled, &err);
    ae_t *ae = f ? ae_load(ae_path, &err) : NULL;
    CHECK_MSG(ae, "%s", err.msg);
    if (!ae) {
        feat_file_close(f);
        return;
    }
    const float *x = feat_file_rows(f);
    uint8_t qc[100 * 2], dbc[500 * 2];
    int32_t ql[100], dbl[500];
    for (int i = 0; i < 100; i++)
        ql[i] = feat_file_label(f, 500 + (size_t)i);
    for (int i = 0; i < 500; i++)
        dbl[i] = feat_file_label(f, (size_t)i);
    ae_eval_result_t res;
    CHECK(ae_encode(ae, x + 500 * DIM, 100, NULL, qc, &err) == 0);
    CHECK(ae_encode(ae, x, 500, NULL, dbc, &err) == 0);
    CHECK(ae_eval_hamming(qc, 100, dbc, 500, 2, ql, dbl, &res, &err) == 0);
    CHECK_NEAR(res.map, kept_map, 1e-4);
    ae_free(ae);
    feat_file_close(f);
}

static void test_unlabelled_rows_train_every_epoch(void) {
    run_result_t r;
    run_ae_train(&r, "--features", unlabelled, "-o", ae_path, "--bits", "16", "--hidden", "24",
                 "--epochs", "3", NULL);
    CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_MSG(strstr(r.err, "row 0 has no label: no validation, all 3 epochs kept"), "%s", r.err);
    CHECK_MSG(!strstr(r.err, "kept epoch"), "%s", r.err);
    CHECK_MSG(strstr(r.err, "ae-train: 600 rows of 32"), "all rows train: %s", r.err);
}

static void test_default_holds_out_a_tenth_at_most(void) {
    run_result_t r;
    run_ae_train(&r, "--features", labelled, "-o", ae_path, "--bits", "16", "--hidden", "24",
                 "--epochs", "1", NULL);
    CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_MSG(strstr(r.err, "ae-train: 540 rows of 32"), "%s", r.err);
    CHECK_MSG(strstr(r.err, "validation: the last 60 rows against the first 540"), "%s", r.err);
}

static void test_bad_val_rows_are_refused(void) {
    static const char *bad[] = {"600", "5000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        run_result_t r;
        run_ae_train(&r, "--features", labelled, "-o", ae_path, "--val-rows", bad[i], NULL);
        CHECK_MSG(r.status == 2, "--val-rows %s: exit %d", bad[i], r.status);
        CHECK_MSG(strstr(r.err, "--val-rows") && strstr(r.err, "want 0 to 599"), "%s", r.err);
    }
    /* A negative count is refused by the table, before the file is read. */
    run_result_t r;
    run_ae_train(&r, "--features", labelled, "-o", ae_path, "--val-rows", "-3", NULL);
    CHECK_MSG(r.status == 2, "--val-rows -3: exit %d", r.status);
    CHECK_MSG(strstr(r.err, "--val-rows: expected an integer >= 0, got '-3'"), "%s", r.err);
}

static const test_case_t tests[] = {
    T(test_the_kept_epoch_is_the_best_on_the_held_out_rows),
    T(test_unlabelled_rows_train_every_epoch),
    T(test_default_holds_out_a_tenth_at_most),
    T(test_bad_val_rows_are_refused),
};

int main(int argc, char **argv) {
    if (make_tmp("cli-ae-train")) return 2;
    path_in(labelled, sizeof labelled, "labelled.f");
    path_in(unlabelled, sizeof unlabelled, "unlabelled.f");
    path_in(ae_path, sizeof ae_path, "ae.imgret");
    write_clusters(labelled, 1);
    write_clusters(unlabelled, 0);
    int rc = test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
    rm_tree(tmp);
    return rc;
}
