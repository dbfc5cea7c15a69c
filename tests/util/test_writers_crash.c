/* Every writer on util's atomic write, killed with SIGKILL in the middle of
 * writing a large file: afterwards its target holds exactly the old file or
 * exactly the new one (the feature file: a committed prefix of its rows),
 * never a torn one. The thumbnail and the demo's example images are written
 * by util_write_file_atomic / data_image_write_png, covered here and in
 * test_util_fileio. */
#include "../test.h"
#include "autoencoder/autoencoder.h"
#include "crash_fixture.h"
#include "data/data.h"
#include "features/features.h"
#include "index/vectors.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static uint8_t *slurp(const char *path, size_t *len) {
    return util_read_file(path, (size_t)1 << 30, len, NULL);
}

static void copy_file(const char *from, const char *to) {
    size_t len;
    uint8_t *b = slurp(from, &len);
    CHECK(b != NULL);
    FILE *f = fopen(to, "wb");
    CHECK(f && fwrite(b, 1, len, f) == len);
    if (f) fclose(f);
    free(b);
}

/* Kill points: when the temporary file holds these fractions (in eighths) of
 * the new file's size, some with a delay into the flush, fsync and rename. */
static const int kill_eighths[] = {0, 1, 3, 5, 7, 8, 8, 4};
static const long kill_delay_us[] = {0, 0, 0, 0, 0, 0, 3000, 1500};
#define N_KILLS ((int)(sizeof kill_eighths / sizeof kill_eighths[0]))

/* Writes the old file to target, then for each kill point runs write(arg)
 * in a child killed there, and once to the end; after each run the target
 * must equal old_ref or new_ref byte for byte. */
static void kill_and_compare(const char *name, int (*write)(void *), void *arg, const char *target,
                             const char *old_ref, const char *new_ref) {
    size_t n_old, n_new;
    uint8_t *old = slurp(old_ref, &n_old), *new = slurp(new_ref, &n_new);
    CHECK(old && new);
    if (!old || !new) return;
    CHECK_MSG(n_old != n_new || memcmp(old, new, n_old), "%s: the old and new files are equal",
              name);
    int saw_old = 0, saw_new = 0;
    for (int k = 0; k <= N_KILLS; k++) {
        copy_file(old_ref, target);
        long long at = k < N_KILLS ? (long long)(n_new * (size_t)kill_eighths[k] / 8) : -1;
        crash_outcome_t o = crash_run(write, arg, target, at, k < N_KILLS ? kill_delay_us[k] : 0);
        CHECK_MSG(o != CRASH_FAILED, "%s: the writer failed", name);
        int is_old = crash_file_equals(target, old, n_old);
        int is_new = crash_file_equals(target, new, n_new);
        CHECK_MSG(is_old || is_new, "%s: torn after a kill at %lld bytes", name, at);
        if (o == CRASH_FINISHED) CHECK_MSG(is_new, "%s: finished but not the new file", name);
        saw_old += is_old;
        saw_new += is_new;
        crash_remove_temps(target);
    }
    CHECK_MSG(saw_old >= 3 && saw_new >= 1, "%s: saw the old file %d times, the new %d", name,
              saw_old, saw_new);
    free(old);
    free(new);
}

/* ----------------------------------------------------------- model file */

typedef struct ae_write {
    ae_t *ae;
    const char *path;
} ae_write_t;

static int write_ae(void *arg) {
    ae_write_t *w = arg;
    return ae_save(w->ae, w->path, "crash test", NULL);
}

static void test_killed_model_file_save_leaves_the_old_file_or_the_new(void) {
    int hidden[1] = {512};
    util_err_t err;
    /* 2048-512-64: about 8.5 MB of parameters. */
    ae_t *a = ae_create(2048, hidden, 1, 64, 1, &err), *b = ae_create(2048, hidden, 1, 64, 2, &err);
    CHECK_MSG(a && b, "%s", err.msg);
    if (!a || !b) return;
    const char *old_ref = crash_path_in("ae_old.ref"), *new_ref = crash_path_in("ae_new.ref");
    const char *again = crash_path_in("ae_new.again");
    CHECK_MSG(ae_save(a, old_ref, "crash test", &err) == 0, "%s", err.msg);
    CHECK_MSG(ae_save(b, new_ref, "crash test", &err) == 0, "%s", err.msg);
    CHECK(ae_save(b, again, "crash test", &err) == 0);
    size_t n1, n2;
    uint8_t *r1 = slurp(new_ref, &n1), *r2 = slurp(again, &n2);
    CHECK_MSG(r1 && r2 && n1 == n2 && memcmp(r1, r2, n1) == 0, "ae_save is not deterministic");
    free(r1);
    free(r2);
    ae_write_t w = {b, crash_path_in("model.imgret")};
    kill_and_compare("model file", write_ae, &w, w.path, old_ref, new_ref);
    ae_t *back = ae_load(w.path, &err);
    CHECK_MSG(back != NULL, "%s", err.msg);
    ae_free(back);
    ae_free(a);
    ae_free(b);
}

/* ------------------------------------------------------------ code file */

typedef struct codes_write {
    const char *path;
    size_t n;
    uint8_t *codes;
    int64_t *ids;
    int32_t *labels;
} codes_write_t;

static void make_codes(codes_write_t *c, size_t n, uint64_t seed) {
    c->n = n;
    c->codes = malloc(n * 8);
    c->ids = malloc(n * 8);
    c->labels = malloc(n * 4);
    util_rng_t r;
    util_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        uint64_t v = util_rng_u64(&r);
        memcpy(c->codes + 8 * i, &v, 8);
        c->ids[i] = (int64_t)(seed * 1000000007u + i);
        c->labels[i] = (int32_t)(i % 10) - 1;
    }
}

static void free_codes(codes_write_t *c) {
    free(c->codes);
    free(c->ids);
    free(c->labels);
}

static int write_codes(void *arg) {
    codes_write_t *c = arg;
    return ae_codes_save(c->path, 64, c->n, c->codes, c->ids, c->labels, NULL);
}

static void test_killed_code_file_save_leaves_the_old_file_or_the_new(void) {
    codes_write_t old, new;
    make_codes(&old, 100000, 1);
    make_codes(&new, 500000, 2); /* 10 MB */
    old.path = crash_path_in("codes_old.ref");
    new.path = crash_path_in("codes_new.ref");
    util_err_t err;
    CHECK_MSG(write_codes(&old) == 0 && write_codes(&new) == 0, "code file writes failed");
    new.path = crash_path_in("codes.bin");
    kill_and_compare("code file", write_codes, &new, new.path, old.path,
                     crash_path_in("codes_new.ref"));
    ae_codes_t *back = ae_codes_load(new.path, &err);
    CHECK_MSG(back != NULL, "%s", err.msg);
    CHECK(back && back->count == new.n && back->bits == 64 &&
          memcmp(back->codes, new.codes, new.n * 8) == 0 &&
          memcmp(back->ids, new.ids, new.n * 8) == 0 &&
          memcmp(back->labels, new.labels, new.n * 4) == 0);
    ae_codes_free(back);
    free_codes(&old);
    free_codes(&new);
}

/* ------------------------------------------------------------ snapshot */

typedef struct snap_write {
    vecindex_t *v;
    const char *path;
    int64_t seq;
} snap_write_t;

static int write_snapshot(void *arg) {
    snap_write_t *s = arg;
    return vecindex_save(s->v, s->path, "crash-test-store", s->seq, NULL);
}

static vecindex_t *flat_index(size_t n, uint64_t seed) {
    const vec_params_t params = {1, 16, 0};
    util_err_t err;
    vecindex_t *v = vecindex_create(INDEX_FC7, 64, "Flat", &params, &err);
    CHECK_MSG(v != NULL, "%s", err.msg);
    if (!v) return NULL;
    float *x = malloc(n * 64 * sizeof *x);
    int64_t *ids = malloc(n * sizeof *ids);
    util_rng_t r;
    util_rng_seed(&r, seed);
    for (size_t i = 0; i < n * 64; i++)
        x[i] = util_rng_uniform(&r);
    for (size_t i = 0; i < n; i++)
        ids[i] = (int64_t)i;
    CHECK_MSG(vecindex_add(v, n, x, ids, &err) == 0, "%s", err.msg);
    free(x);
    free(ids);
    return v;
}

static void test_killed_snapshot_save_leaves_the_old_snapshot_or_the_new(void) {
    vecindex_t *a = flat_index(10000, 1), *b = flat_index(40000, 2); /* 10 MB */
    if (!a || !b) return;
    snap_write_t old = {a, crash_path_in("snap_old.ref"), 1},
                 new = {b, crash_path_in("snap_new.ref"), 2};
    CHECK(write_snapshot(&old) == 0 && write_snapshot(&new) == 0);
    new.path = crash_path_in("fc7.snap");
    kill_and_compare("snapshot", write_snapshot, &new, new.path, old.path,
                     crash_path_in("snap_new.ref"));
    const vec_params_t params = {1, 16, 0};
    int64_t seq = -1;
    util_err_t err;
    vecindex_t *back =
        vecindex_load(new.path, INDEX_FC7, 64, "Flat", &params, "crash-test-store", &seq, &err);
    CHECK_MSG(back != NULL, "%s", err.msg);
    CHECK(seq == 2 && back && vecindex_ntotal(back) == 40000);
    vecindex_free(back);
    vecindex_free(a);
    vecindex_free(b);
}

/* ------------------------------------------------------------ PNG, JPEG */

typedef struct image_write {
    data_image_t *im;
    const char *path;
    int jpeg;
} image_write_t;

static int write_image(void *arg) {
    image_write_t *w = arg;
    return w->jpeg ? data_image_write_jpeg(w->im, w->path, 95, NULL)
                   : data_image_write_png(w->im, w->path, NULL);
}

static data_image_t *noise_image(int w, int h, uint64_t seed) {
    data_image_t *im = data_image_create(w, h, 3, NULL);
    util_rng_t r;
    util_rng_seed(&r, seed);
    for (size_t i = 0; im && i < (size_t)w * h * 3; i++)
        im->pixels[i] = (uint8_t)util_rng_u64(&r);
    return im;
}

static void test_killed_image_writes_leave_the_old_image_or_the_new(void) {
    data_image_t *a = noise_image(300, 200, 1), *b = noise_image(700, 500, 2); /* 1 MB */
    CHECK(a && b);
    if (!a || !b) return;
    for (int jpeg = 0; jpeg < 2; jpeg++) {
        image_write_t old = {a, crash_path_in(jpeg ? "old.jpg.ref" : "old.png.ref"), jpeg};
        image_write_t new = {b, crash_path_in(jpeg ? "new.jpg.ref" : "new.png.ref"), jpeg};
        CHECK(write_image(&old) == 0 && write_image(&new) == 0);
        const char *new_ref = new.path;
        new.path = crash_path_in(jpeg ? "example.jpg" : "example.png");
        kill_and_compare(jpeg ? "JPEG" : "PNG", write_image, &new, new.path, old.path, new_ref);
        util_err_t err;
        data_image_t *back = data_image_read(new.path, NULL, &err);
        CHECK_MSG(back && back->w == 700 && back->h == 500, "%s", back ? "size" : err.msg);
        if (!jpeg) CHECK(back && memcmp(back->pixels, b->pixels, (size_t)700 * 500 * 3) == 0);
        data_image_free(back);
    }
    data_image_free(a);
    data_image_free(b);
}

/* --------------------------------------------------------- feature file */

#define FEAT_DIM 256
#define FEAT_OLD_ROWS 1000
#define FEAT_CHUNK 1000
#define FEAT_CHUNKS 12

static float feat_value(size_t row, int j) {
    return (float)(row % 9973) + (float)j / 256.0f;
}

static void feat_chunk(size_t first, float *rows, int64_t *ids, int32_t *labels) {
    for (size_t i = 0; i < FEAT_CHUNK; i++) {
        for (int j = 0; j < FEAT_DIM; j++)
            rows[i * FEAT_DIM + j] = feat_value(first + i, j);
        ids[i] = (int64_t)(first + i);
        labels[i] = (int32_t)((first + i) % 7);
    }
}

/* Appends FEAT_CHUNKS chunks to the feature file at path, committing after
 * each: the file grows (an atomic rewrite) from 1024 rows to 16384. */
static int append_features(void *arg) {
    const char *path = arg;
    feat_writer_t *w = feat_writer_open(path, FEAT_DIM, NULL, 1024, NULL);
    if (!w) return -1;
    float *rows = malloc(sizeof *rows * FEAT_CHUNK * FEAT_DIM);
    int64_t ids[FEAT_CHUNK];
    int32_t labels[FEAT_CHUNK];
    int rc = rows ? 0 : -1;
    for (int c = 0; rc == 0 && c < FEAT_CHUNKS; c++) {
        size_t first = feat_writer_count(w);
        feat_chunk(first, rows, ids, labels);
        rc = feat_writer_append(w, FEAT_CHUNK, rows, ids, labels, NULL, NULL);
        if (rc == 0) rc = feat_writer_commit(w, NULL);
    }
    free(rows);
    if (feat_writer_close(w, NULL)) rc = -1;
    return rc;
}

/* The feature file's promise: it opens, and holds a committed prefix (the
 * old rows plus whole chunks), each row the one written. */
static int features_are_a_committed_prefix(const char *path, size_t base, size_t *count) {
    util_err_t err;
    feat_file_t *f = feat_file_open(path, &err);
    if (!f) {
        fprintf(stderr, "  %s\n", err.msg);
        return 0;
    }
    size_t n = feat_file_count(f);
    *count = n;
    int ok = n >= base && (n - base) % FEAT_CHUNK == 0 && n <= base + FEAT_CHUNK * FEAT_CHUNKS &&
             feat_file_dim(f) == FEAT_DIM;
    const float *rows = feat_file_rows(f);
    for (size_t i = 0; ok && i < n; i++) {
        ok = feat_file_id(f, i) == (int64_t)i && feat_file_label(f, i) == (int32_t)(i % 7);
        for (int j = 0; ok && j < FEAT_DIM; j += 51)
            ok = rows[i * FEAT_DIM + j] == feat_value(i, j);
    }
    feat_file_close(f);
    return ok;
}

static void test_killed_feature_file_growth_leaves_a_committed_prefix(void) {
    const char *ref = crash_path_in("feat_old.ref"), *path = crash_path_in("fc7.feat");
    /* The old file: FEAT_OLD_ROWS rows in room for 1024. */
    feat_writer_t *w = feat_writer_open(ref, FEAT_DIM, NULL, 1024, NULL);
    CHECK(w != NULL);
    if (!w) return;
    float *rows = malloc(sizeof *rows * FEAT_CHUNK * FEAT_DIM);
    int64_t ids[FEAT_CHUNK];
    int32_t labels[FEAT_CHUNK];
    feat_chunk(0, rows, ids, labels);
    CHECK(feat_writer_append(w, FEAT_OLD_ROWS, rows, ids, labels, NULL, NULL) == 0);
    CHECK(feat_writer_close(w, NULL) == 0);
    free(rows);
    int grown_seen = 0, old_seen = 0;
    for (int k = 0; k <= 16; k++) {
        copy_file(ref, path);
        /* The grown file is sized at once (sparse), so the byte count says
         * little here: the kills spread by delay over the copies and appends. */
        long delay = k < 16 ? 400L * k * k : 0;
        crash_outcome_t o = crash_run(append_features, (void *)path, path, k < 16 ? 0 : -1, delay);
        size_t n = 0;
        int ok = features_are_a_committed_prefix(path, FEAT_OLD_ROWS, &n);
        CHECK_MSG(o != CRASH_FAILED && ok, "run %d: %s, %zu rows", k,
                  o == CRASH_FAILED ? "the writer failed" : "torn", n);
        if (o == CRASH_FINISHED) CHECK(n == FEAT_OLD_ROWS + FEAT_CHUNK * FEAT_CHUNKS);
        old_seen += n == FEAT_OLD_ROWS;
        grown_seen += n > 1024;
        crash_remove_temps(path);
    }
    CHECK_MSG(old_seen >= 1 && grown_seen >= 2, "old %d times, grown %d times", old_seen,
              grown_seen);
    /* A kill while the file is first created leaves no file or a committed
     * prefix of the new one. */
    for (int k = 0; k < 4; k++) {
        unlink(path);
        crash_run(append_features, (void *)path, path, 0, 200L * k);
        size_t n = 0;
        struct stat st;
        if (stat(path, &st) == 0)
            CHECK_MSG(features_are_a_committed_prefix(path, 0, &n), "new file torn: %zu rows", n);
        crash_remove_temps(path);
    }
}

TEST_MAIN(T(test_killed_model_file_save_leaves_the_old_file_or_the_new),
          T(test_killed_code_file_save_leaves_the_old_file_or_the_new),
          T(test_killed_snapshot_save_leaves_the_old_snapshot_or_the_new),
          T(test_killed_image_writes_leave_the_old_image_or_the_new),
          T(test_killed_feature_file_growth_leaves_a_committed_prefix))
