#include "features/features.h"
#include "tests/test.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tmp_path(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    if (!tmpdir[0]) {
        snprintf(tmpdir, sizeof tmpdir, "/tmp/imgret_feat_XXXXXX");
        if (!mkdtemp(tmpdir)) abort();
    }
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void fill_rows(float *rows, size_t n, int dim, int64_t first_id) {
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < dim; j++)
            rows[i * dim + j] = (float)(first_id + (int64_t)i) * 100 + j;
}

static int append_n(feat_writer_t *w, size_t n, int dim, int64_t first_id) {
    float rows[64 * 8];
    int64_t ids[64];
    int32_t labels[64];
    char ubuf[64][32];
    const char *uris[64];
    fill_rows(rows, n, dim, first_id);
    for (size_t i = 0; i < n; i++) {
        ids[i] = first_id + (int64_t)i;
        labels[i] = (int32_t)(ids[i] % 7);
        snprintf(ubuf[i], sizeof ubuf[i], "img/%lld.jpg", (long long)ids[i]);
        uris[i] = ubuf[i];
    }
    return feat_writer_append(w, n, rows, ids, labels, uris, NULL);
}

static int file_matches(const char *path, size_t count, int dim) {
    util_err_t err;
    feat_file_t *f = feat_file_open(path, &err);
    if (!f) {
        fprintf(stderr, "  %s\n", err.msg);
        return 0;
    }
    int ok = feat_file_count(f) == count && feat_file_dim(f) == dim;
    const float *r = feat_file_rows(f);
    for (size_t i = 0; ok && i < count; i++) {
        char want[32];
        snprintf(want, sizeof want, "img/%zu.jpg", i);
        ok = feat_file_id(f, i) == (int64_t)i && feat_file_label(f, i) == (int32_t)(i % 7) &&
             !strcmp(feat_file_uri(f, i), want);
        for (int j = 0; ok && j < dim; j++)
            ok = r[i * dim + j] == (float)i * 100 + j;
    }
    feat_file_close(f);
    return ok;
}

static void test_feature_file_round_trip(void) {
    const char *p = tmp_path("rt.feat");
    unlink(p);
    uint8_t hash[MODEL_HASH_BYTES];
    for (int i = 0; i < MODEL_HASH_BYTES; i++)
        hash[i] = (uint8_t)i;
    util_err_t err;
    feat_writer_t *w = feat_writer_open(p, 8, hash, 16, &err);
    CHECK(w != NULL);
    CHECK(feat_writer_last_id(w) == -1);
    CHECK(append_n(w, 5, 8, 0) == 0);
    CHECK(feat_writer_close(w, &err) == 0);
    CHECK(file_matches(p, 5, 8));
    feat_file_t *f = feat_file_open(p, &err);
    CHECK(f && !memcmp(feat_file_model_hash(f), hash, MODEL_HASH_BYTES));
    /* The rows sit at byte 128 of the file: mmap-able as a matrix. */
    CHECK(f && (uintptr_t)feat_file_rows(f) % 64 == 0);
    feat_file_close(f);
    /* A different model or dim is refused for appending. */
    uint8_t other[MODEL_HASH_BYTES] = {9};
    CHECK(feat_writer_open(p, 8, other, 16, &err) == NULL && strstr(err.msg, "model"));
    CHECK(feat_writer_open(p, 9, hash, 16, &err) == NULL && strstr(err.msg, "8-d"));
}

static void test_feature_file_append_grows(void) {
    const char *p = tmp_path("app.feat");
    unlink(p);
    util_err_t err;
    feat_writer_t *w = feat_writer_open(p, 4, NULL, 3, &err);
    CHECK(w && append_n(w, 2, 4, 0) == 0);
    CHECK(feat_writer_close(w, &err) == 0);
    w = feat_writer_open(p, 4, NULL, 3, &err);
    CHECK(w && feat_writer_count(w) == 2 && feat_writer_last_id(w) == 1);
    /* 2 + 5 rows exceed the capacity of 3: the file is rewritten bigger. */
    CHECK(append_n(w, 5, 4, 2) == 0);
    CHECK(append_n(w, 10, 4, 7) == 0);
    CHECK(feat_writer_close(w, &err) == 0);
    CHECK(file_matches(p, 17, 4));
}

static void test_feature_file_uncommitted_rows_are_dropped_after_a_crash(void) {
    const char *p = tmp_path("crash.feat");
    unlink(p);
    util_err_t err;
    feat_writer_t *w = feat_writer_open(p, 4, NULL, 20, &err);
    CHECK(w && append_n(w, 3, 4, 0) == 0 && feat_writer_commit(w, &err) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        /* Appended, not committed, then the process dies. */
        append_n(w, 4, 4, 3);
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    feat_writer_close(w, NULL);
    CHECK(file_matches(p, 3, 4));
    w = feat_writer_open(p, 4, NULL, 20, &err);
    CHECK(w && feat_writer_last_id(w) == 2);
    CHECK(w && append_n(w, 4, 4, 3) == 0);
    CHECK(feat_writer_close(w, &err) == 0);
    CHECK(file_matches(p, 7, 4));
}

static void test_feature_file_truncated_is_an_error(void) {
    const char *p = tmp_path("trunc.feat");
    unlink(p);
    util_err_t err;
    feat_writer_t *w = feat_writer_open(p, 4, NULL, 4, &err);
    CHECK(w && append_n(w, 4, 4, 0) == 0);
    feat_writer_close(w, &err);
    struct stat st;
    stat(p, &st);
    CHECK(truncate(p, st.st_size - 3) == 0);
    CHECK(feat_file_open(p, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "truncated") != NULL, "%s", err.msg);
    CHECK(feat_writer_open(p, 4, NULL, 4, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "truncated") != NULL, "%s", err.msg);
    CHECK(truncate(p, 50) == 0);
    CHECK(feat_file_open(p, &err) == NULL && strstr(err.msg, "shorter than"));
}

static void corrupt_byte(const char *p, long off, uint8_t v) {
    int fd = open(p, O_RDWR);
    CHECK(fd >= 0 && pwrite(fd, &v, 1, off) == 1);
    close(fd);
}

static void test_feature_file_corrupt_header_is_an_error(void) {
    const char *p = tmp_path("bad.feat");
    util_err_t err;
    unlink(p);
    feat_writer_t *w = feat_writer_open(p, 4, NULL, 4, &err);
    CHECK(w && append_n(w, 2, 4, 0) == 0);
    feat_writer_close(w, &err);
    corrupt_byte(p, 16, 5); /* dim */
    CHECK(feat_file_open(p, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "checksum") != NULL, "%s", err.msg);
    corrupt_byte(p, 0, 'X');
    CHECK(feat_file_open(p, &err) == NULL && strstr(err.msg, "bad magic"));
    CHECK(feat_file_open(tmp_path("missing.feat"), &err) == NULL &&
          strstr(err.msg, "missing.feat"));
}

/* ------------------------------------------------------------ extraction */

static void tiny_spec(model_spec_t *s) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "tiny");
    s->in_c = 1;
    s->in_h = s->in_w = 8;
    model_layer_spec_t l[] = {
        {MODEL_CONV, "conv1", 4, 3, 1, 1, 1, 0, {0}, 0, 0.3f, 0.1f},
        {MODEL_RELU, "relu1", 0, 0, 0, 0, 0, 0, {0}, 0, 0, 0},
        {MODEL_FC, "fc6", 16, 0, 0, 0, 0, 0, {0}, 0, 0.2f, 0.1f},
        {MODEL_RELU, "relu6", 0, 0, 0, 0, 0, 0, {0}, 0, 0, 0},
        {MODEL_FC, "fc7", 12, 0, 0, 0, 0, 0, {0}, 0, 0.3f, 0.1f},
        {MODEL_RELU, "relu7", 0, 0, 0, 0, 0, 0, {0}, 0, 0, 0},
        {MODEL_FC, "fc8", 3, 0, 0, 0, 0, 0, {0}, 0, 0.3f, 0},
    };
    s->n_layers = (int)(sizeof l / sizeof l[0]);
    memcpy(s->layer, l, sizeof l);
}

static model_file_t *tiny_model(void) {
    model_spec_t s;
    tiny_spec(&s);
    util_err_t err;
    model_net_t *net = model_net_create(&s, 4, &err);
    model_net_init(net, 7);
    model_file_t *mf = model_file_from_net(net, 0, &err);
    model_net_free(net);
    mf->norm.scale = 1.0f / 64;
    mf->norm.stored_size = 8;
    float mean[64];
    for (int i = 0; i < 64; i++)
        mean[i] = 100.0f + i;
    model_norm_set_mean_image(&mf->norm, 1, 8, 8, mean, &err);
    return mf;
}

static data_dataset_t *tiny_images(int n) {
    uint8_t *px = malloc((size_t)n * 64);
    int *labels = malloc((size_t)n * sizeof *labels);
    for (int i = 0; i < n * 64; i++)
        px[i] = (uint8_t)((i * 37 + i / 64 * 11) % 256);
    for (int i = 0; i < n; i++)
        labels[i] = i % 3;
    data_dataset_t *ds = data_dataset_from_memory(n, 8, 8, 1, px, labels, 3, NULL, NULL);
    free(px);
    free(labels);
    return ds;
}

/* Rows of a straight extraction against model_net_forward's relu7 output. */
static void test_extraction_equals_net_relu7(void) {
    model_file_t *mf = tiny_model();
    data_dataset_t *ds = tiny_images(10);
    util_err_t err;
    feat_extractor_t *ex = feat_extractor_create(mf, 4, NULL, &err);
    CHECK(ex && feat_extractor_dim(ex) == 12);
    const char *p = tmp_path("ex.feat");
    unlink(p);
    feat_writer_t *w = feat_writer_open(p, 12, feat_extractor_model_hash(ex), 10, &err);
    feat_extract_opts_t o = {2, NULL, NULL, NULL, NULL};
    CHECK(feat_extract_dataset(ex, ds, w, &o, &err) == 0);
    CHECK(feat_writer_close(w, &err) == 0);
    feat_file_t *f = feat_file_open(p, &err);
    CHECK(f && feat_file_count(f) == 10);

    model_net_t *net = model_net_create_from_file(mf, 1, &err);
    data_stats_t *st = data_stats_create(1, 8, 8, &err);
    memcpy(st->mean, mf->norm.mean_image, 64 * sizeof(float));
    data_norm_t norm = {DATA_MEAN_PIXEL, st, 1.0f / 64};
    int relu7 = model_spec_find(&mf->spec, "relu7");
    double maxdiff = 0;
    int nonzero = 0;
    for (size_t i = 0; f && i < 10; i++) {
        int label;
        data_image_t *im = data_dataset_load(ds, i, NULL, &label, &err);
        float x[64];
        CHECK(data_center_crop(im, 8, &norm, x, &err) == 0);
        CHECK(model_net_forward(net, x, 1, 0, &err) == 0);
        model_shape_t sh;
        const float *y = model_net_output(net, relu7, &sh);
        const float *r = feat_file_rows(f) + i * 12;
        for (int j = 0; j < 12; j++) {
            double d = fabs((double)y[j] - r[j]);
            if (d > maxdiff) maxdiff = d;
            nonzero += r[j] > 0;
        }
        CHECK(feat_file_id(f, i) == (int64_t)i && feat_file_label(f, i) == (int)i % 3);
        data_image_free(im);
    }
    CHECK_MSG(maxdiff < 1e-5, "max difference %g", maxdiff);
    CHECK(nonzero > 20); /* a test of all-zero rows would prove nothing */
    feat_file_close(f);
    data_stats_free(st);
    model_net_free(net);
    feat_extractor_free(ex);
    data_dataset_free(ds);
    model_file_free(mf);
}

static void die_after_two(void *ctx, size_t done, size_t total, size_t rows) {
    (void)ctx;
    (void)total;
    (void)rows;
    if (done >= 6) _exit(0); /* killed between batches, mid-run */
}

/* The child of the test below: extracts into $IMGRET_FEAT_CHILD and is
 * killed (_exit) after two batches, before main runs. */
__attribute__((constructor)) static void child_extraction(void) {
    const char *path = getenv("IMGRET_FEAT_CHILD");
    if (!path) return;
    model_file_t *mf = tiny_model();
    data_dataset_t *ds = tiny_images(11);
    feat_extractor_t *ex = feat_extractor_create(mf, 3, NULL, NULL);
    feat_writer_t *w = feat_writer_open(path, 12, NULL, 4, NULL);
    feat_extract_opts_t o = {1, die_after_two, NULL, NULL, NULL};
    feat_extract_dataset(ex, ds, w, &o, NULL);
    _exit(3); /* not reached */
}

static void test_extraction_killed_midway_resumes_without_duplicates(void) {
    model_file_t *mf = tiny_model();
    data_dataset_t *ds = tiny_images(11);
    util_err_t err;
    const char *straight = tmp_path("straight.feat"), *resumed = tmp_path("resumed.feat");
    unlink(straight);
    unlink(resumed);
    feat_extractor_t *ex = feat_extractor_create(mf, 3, NULL, &err);
    feat_writer_t *w = feat_writer_open(straight, 12, NULL, 4, &err);
    CHECK(feat_extract_dataset(ex, ds, w, NULL, &err) == 0);
    feat_writer_close(w, &err);
    feat_extractor_free(ex);

    /* A fresh process (fork alone would inherit a used OpenMP pool, which
     * GNU OpenMP does not survive) that dies after its second batch. */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "IMGRET_FEAT_CHILD='%s' /proc/%d/exe", resumed, (int)getpid());
    int status = system(cmd);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    feat_file_t *part = feat_file_open(resumed, &err);
    CHECK(part && feat_file_count(part) == 6);
    feat_file_close(part);

    ex = feat_extractor_create(mf, 3, NULL, &err);
    w = feat_writer_open(resumed, 12, NULL, 4, &err);
    CHECK(w && feat_writer_last_id(w) == 5);
    CHECK(feat_extract_dataset(ex, ds, w, NULL, &err) == 0);
    feat_writer_close(w, &err);
    feat_file_t *a = feat_file_open(straight, &err), *b = feat_file_open(resumed, &err);
    CHECK(a && b && feat_file_count(a) == 11 && feat_file_count(b) == 11);
    for (size_t i = 0; a && b && i < 11; i++)
        CHECK(feat_file_id(b, i) == (int64_t)i);
    CHECK(a && b && !memcmp(feat_file_rows(a), feat_file_rows(b), 11 * 12 * sizeof(float)));
    feat_file_close(a);
    feat_file_close(b);
    feat_extractor_free(ex);
    data_dataset_free(ds);
    model_file_free(mf);
}

static size_t skipped_item = 999;
static void note_skip(void *ctx, size_t item, const char *msg) {
    (void)ctx;
    (void)msg;
    skipped_item = item;
}

static void test_extraction_skips_a_corrupt_image(void) {
    model_file_t *mf = tiny_model();
    util_err_t err;
    char list[512];
    snprintf(list, sizeof list, "%s", tmp_path("list.txt"));
    FILE *lf = fopen(list, "w");
    for (int i = 0; i < 5; i++) {
        char name[64];
        snprintf(name, sizeof name, "im%d.jpg", i);
        if (i == 2) {
            FILE *bad = fopen(tmp_path(name), "w");
            fputs("\xff\xd8\xff\xe0 this is not a jpeg", bad);
            fclose(bad);
        } else {
            data_image_t *im = data_image_create(8, 8, 1, &err);
            for (int k = 0; k < 64; k++)
                im->pixels[k] = (uint8_t)(k * 3 + i * 20);
            CHECK(data_image_write_jpeg(im, tmp_path(name), 95, &err) == 0);
            data_image_free(im);
        }
        fprintf(lf, "%s %d\n", name, i % 2);
    }
    fclose(lf);
    data_dataset_t *ds = data_dataset_open_list(list, NULL, &err);
    CHECK_MSG(ds != NULL, "%s", err.msg);
    const char *p = tmp_path("skip.feat");
    unlink(p);
    feat_extractor_t *ex = feat_extractor_create(mf, 4, NULL, &err);
    feat_writer_t *w = feat_writer_open(p, 12, NULL, 5, &err);
    feat_extract_opts_t o = {2, NULL, note_skip, NULL, NULL};
    CHECK(ds && feat_extract_dataset(ex, ds, w, &o, &err) == 0);
    feat_writer_close(w, &err);
    CHECK(skipped_item == 2);
    feat_file_t *f = feat_file_open(p, &err);
    CHECK(f && feat_file_count(f) == 4);
    int64_t want[4] = {0, 1, 3, 4};
    for (size_t i = 0; f && i < 4; i++) {
        CHECK(feat_file_id(f, i) == want[i]);
        CHECK(strstr(feat_file_uri(f, i), "im") != NULL);
    }
    feat_file_close(f);
    feat_extractor_free(ex);
    data_dataset_free(ds);
    model_file_free(mf);
}

TEST_MAIN(T(test_feature_file_round_trip), T(test_feature_file_append_grows),
          T(test_feature_file_uncommitted_rows_are_dropped_after_a_crash),
          T(test_feature_file_truncated_is_an_error),
          T(test_feature_file_corrupt_header_is_an_error), T(test_extraction_equals_net_relu7),
          T(test_extraction_killed_midway_resumes_without_duplicates),
          T(test_extraction_skips_a_corrupt_image))
