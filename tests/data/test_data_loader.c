/* data/: the threaded loader — determinism across thread counts, exact
 * resume mid-epoch, batch layout, evaluation modes, and bad images skipped
 * with messages naming them (never a crash or a stall). */
#include "tests/data/fixtures.h"
#include "tests/test.h"

static char *tmp;

/* 37 RGB items of 12x10 with distinct content; label = i % 5. */
static data_dataset_t *small_set(void) {
    const int n = 37, w = 12, h = 10;
    uint8_t *px = malloc((size_t)n * w * h * 3);
    int labels[37];
    for (int i = 0; i < n; i++) {
        data_image_t *im = fx_pattern(w, h, 3, i);
        memcpy(px + (size_t)i * w * h * 3, im->pixels, (size_t)w * h * 3);
        data_image_free(im);
        labels[i] = i % 5;
    }
    data_dataset_t *ds = data_dataset_from_memory(n, w, h, 3, px, labels, 5, NULL, NULL);
    free(px);
    return ds;
}

/* Every batch of one epoch (from start_batch), concatenated. */
typedef struct run {
    float *x;
    int *labels;
    int *sizes;
    size_t n_batches, items;
} run_t;

static void run_free(run_t *r) {
    free(r->x);
    free(r->labels);
    free(r->sizes);
}

static run_t run_epoch(const data_dataset_t *ds, data_loader_opts_t o, int epoch, size_t start) {
    run_t r = {0};
    util_err_t err;
    data_loader_t *ld = data_loader_create(ds, &o, &err);
    CHECK_MSG(ld != NULL, "%s", err.msg);
    if (!ld) return r;
    size_t nb = data_loader_num_batches(ld), bf = data_loader_batch_floats(ld);
    size_t item_f = bf / (size_t)o.batch_size;
    r.x = malloc(bf * nb * sizeof(float));
    r.labels = malloc(sizeof(int) * (size_t)o.batch_size * nb);
    r.sizes = malloc(sizeof(int) * nb);
    float *x = malloc(bf * sizeof(float));
    int *labels = malloc(sizeof(int) * (size_t)o.batch_size);
    CHECK(data_loader_start_epoch(ld, epoch, start, &err) == 0);
    int n;
    size_t bi, expect = start;
    while (data_loader_next(ld, x, labels, &n, &bi, &err) == 1) {
        CHECK(bi == expect++);
        memcpy(r.x + r.items * item_f, x, (size_t)n * item_f * sizeof(float));
        memcpy(r.labels + r.items, labels, sizeof(int) * (size_t)n);
        r.sizes[r.n_batches++] = n;
        r.items += (size_t)n;
    }
    CHECK(expect == nb);
    free(x);
    free(labels);
    data_loader_free(ld);
    return r;
}

static int runs_equal(const run_t *a, const run_t *b, size_t item_floats) {
    return a->items == b->items && a->n_batches == b->n_batches &&
           memcmp(a->sizes, b->sizes, sizeof(int) * a->n_batches) == 0 &&
           memcmp(a->labels, b->labels, sizeof(int) * a->items) == 0 &&
           memcmp(a->x, b->x, sizeof(float) * item_floats * a->items) == 0;
}

static data_loader_opts_t train_opts(const data_stats_t *st) {
    data_loader_opts_t o = data_loader_defaults();
    o.batch_size = 8;
    o.prep.short_side = 0;
    o.crop = 8;
    o.norm.mean_mode = DATA_MEAN_PIXEL;
    o.norm.stats = st;
    o.lighting_std = 0.1f;
    o.seed = 42;
    return o;
}

static void test_loader_same_batches_for_any_thread_count(void) {
    data_dataset_t *ds = small_set();
    util_err_t err;
    data_stats_t *st = data_stats_compute(ds, NULL, 1, 0, NULL, &err);
    data_loader_opts_t o = train_opts(st);
    o.threads = 1;
    o.prefetch = 1;
    run_t a = run_epoch(ds, o, 3, 0);
    o.threads = 2;
    o.prefetch = 3;
    run_t b = run_epoch(ds, o, 3, 0);
    o.threads = 5;
    o.prefetch = 2;
    run_t c = run_epoch(ds, o, 3, 0);
    size_t item_f = 3 * 8 * 8;
    CHECK(a.items == 37 && a.n_batches == 5 && a.sizes[4] == 5);
    CHECK(runs_equal(&a, &b, item_f));
    CHECK(runs_equal(&a, &c, item_f));
    /* Each item once per epoch, shuffled (not 0, 1, 2, ... % 5). */
    int hist[5] = {0}, in_order = 1;
    for (size_t i = 0; i < a.items; i++) {
        hist[a.labels[i]]++;
        in_order &= a.labels[i] == (int)(i % 5);
    }
    CHECK(hist[0] == 8 && hist[1] == 8 && hist[2] == 7 && hist[4] == 7 && !in_order);
    /* Another epoch: another order and other crops; another seed likewise. */
    run_t d = run_epoch(ds, o, 4, 0);
    CHECK(!runs_equal(&a, &d, item_f));
    o.seed = 43;
    run_t e = run_epoch(ds, o, 3, 0);
    CHECK(!runs_equal(&a, &e, item_f));
    run_free(&a);
    run_free(&b);
    run_free(&c);
    run_free(&d);
    run_free(&e);
    data_stats_free(st);
    data_dataset_free(ds);
}

static void test_loader_resume_mid_epoch_equals_straight_run(void) {
    data_dataset_t *ds = small_set();
    util_err_t err;
    data_stats_t *st = data_stats_compute(ds, NULL, 1, 0, NULL, &err);
    data_loader_opts_t o = train_opts(st);
    o.threads = 2;
    run_t full = run_epoch(ds, o, 7, 0);
    o.threads = 3;
    run_t tail = run_epoch(ds, o, 7, 2);
    size_t item_f = 3 * 8 * 8, skip = (size_t)full.sizes[0] + (size_t)full.sizes[1];
    CHECK(tail.n_batches == full.n_batches - 2 && tail.items == full.items - skip);
    CHECK(memcmp(tail.labels, full.labels + skip, sizeof(int) * tail.items) == 0);
    CHECK(memcmp(tail.x, full.x + skip * item_f, sizeof(float) * item_f * tail.items) == 0);
    /* Restarting mid-way through a running epoch, on the same loader. */
    data_loader_t *ld = data_loader_create(ds, &o, &err);
    float *x = malloc(data_loader_batch_floats(ld) * sizeof(float));
    int labels[8], n;
    size_t bi;
    CHECK(data_loader_start_epoch(ld, 1, 0, &err) == 0);
    CHECK(data_loader_next(ld, x, labels, &n, &bi, &err) == 1);
    CHECK(data_loader_start_epoch(ld, 7, 3, &err) == 0);
    CHECK(data_loader_next(ld, x, labels, &n, &bi, &err) == 1 && bi == 3);
    size_t at = skip + (size_t)full.sizes[2];
    CHECK(n == full.sizes[3] &&
          memcmp(x, full.x + at * item_f, sizeof(float) * item_f * (size_t)n) == 0);
    CHECK(data_loader_start_epoch(ld, 7, 6, &err) == -1); /* only 5 batches */
    CHECK(data_loader_start_epoch(ld, 7, 5, &err) == 0);
    CHECK(data_loader_next(ld, x, labels, &n, &bi, &err) == 0); /* already at the end */
    free(x);
    data_loader_free(ld);
    run_free(&full);
    run_free(&tail);
    data_stats_free(st);
    data_dataset_free(ds);
}

static void test_loader_batch_layout_matches_crop_functions(void) {
    data_dataset_t *ds = small_set();
    util_err_t err;
    data_stats_t *st = data_stats_compute(ds, NULL, 1, 0, NULL, &err);
    data_loader_opts_t o = train_opts(st);
    o.shuffle = 0;
    o.mode = DATA_CROP_CENTER;
    o.drop_last = 1;
    o.norm.scale = 0.5f;
    run_t r = run_epoch(ds, o, 0, 0);
    CHECK(r.n_batches == 4 && r.items == 32);
    float want[3 * 8 * 8];
    int ok = 1;
    for (size_t i = 0; i < r.items; i++) {
        data_image_t *im = data_dataset_load(ds, i, NULL, NULL, &err);
        data_center_crop(im, 8, &o.norm, want, &err);
        ok &= memcmp(want, r.x + i * 192, sizeof want) == 0 && r.labels[i] == (int)(i % 5);
        data_image_free(im);
    }
    CHECK(ok);
    run_free(&r);
    /* Ten crops: ten consecutive crops per item. */
    o.mode = DATA_CROP_TEN;
    o.drop_last = 0;
    data_loader_t *ld = data_loader_create(ds, &o, &err);
    CHECK(ld && data_loader_crops_per_item(ld) == 10 &&
          data_loader_batch_floats(ld) == (size_t)8 * 10 * 192);
    float *x = malloc(data_loader_batch_floats(ld) * sizeof(float));
    float ten[10 * 192];
    int labels[8], n;
    CHECK(data_loader_start_epoch(ld, 0, 4, &err) == 0);
    CHECK(data_loader_next(ld, x, labels, &n, NULL, &err) == 1 && n == 5);
    data_image_t *im = data_dataset_load(ds, 33, NULL, NULL, &err);
    data_ten_crop(im, 8, &o.norm, ten, &err);
    CHECK(memcmp(ten, x + 10 * 192, sizeof ten) == 0 && labels[1] == 33 % 5);
    data_image_free(im);
    free(x);
    data_loader_free(ld);
    data_stats_free(st);
    data_dataset_free(ds);
}

static void test_loader_random_crops_vary_and_mirror(void) {
    /* A 1-channel 12x10 image with distinct values; with lighting off and no
     * mean each crop must be a window of it, sometimes mirrored. */
    data_dataset_t *ds = small_set();
    util_err_t err;
    data_loader_opts_t o = data_loader_defaults();
    o.batch_size = 37;
    o.prep.short_side = 0;
    o.prep.channels = 1;
    o.crop = 6;
    o.lighting_std = 0;
    o.shuffle = 0;
    o.threads = 2;
    int positions[7 * 5] = {0}, mirrored = 0, plain = 0;
    for (int epoch = 0; epoch < 6; epoch++) {
        run_t r = run_epoch(ds, o, epoch, 0);
        for (size_t i = 0; i < r.items; i++) {
            data_image_t *im = data_dataset_load(ds, i, NULL, NULL, &err);
            data_image_t *g = data_image_convert(im, 1, &err);
            float c0[36];
            int found = 0;
            for (int y = 0; y <= 4 && !found; y++)
                for (int x = 0; x <= 6 && !found; x++)
                    for (int m = 0; m < 2 && !found; m++) {
                        data_crop_to_float(g, x, y, 6, m, NULL, NULL, c0, &err);
                        if (memcmp(c0, r.x + i * 36, sizeof c0) == 0) {
                            found = 1;
                            positions[y * 7 + x]++;
                            if (m)
                                mirrored++;
                            else
                                plain++;
                        }
                    }
            CHECK(found);
            data_image_free(g);
            data_image_free(im);
        }
        run_free(&r);
    }
    int used = 0;
    for (int k = 0; k < 35; k++)
        used += positions[k] > 0;
    CHECK_MSG(used >= 25, "%d of 35 positions used", used);
    CHECK_MSG(mirrored > 60 && plain > 60, "%d mirrored, %d plain", mirrored, plain);
    data_dataset_free(ds);
}

static int skip_calls;
static char skip_seen[FX_BAD_KINDS];

static void on_skip(void *ctx, size_t item, const char *message) {
    (void)ctx;
    (void)item;
    skip_calls++;
    for (int k = 0; k < FX_BAD_KINDS; k++)
        if (strstr(message, fx_bad_names[k])) skip_seen[k] = 1;
    printf("  skipped: %s\n", message);
}

static void test_loader_skips_bad_images_naming_them(void) {
    char root[4096];
    fx_path(root, sizeof root, tmp, "mixed");
    mkdir(root, 0755);
    fx_mkdir(root, "bad");
    fx_mkdir(root, "good");
    char dir[4096];
    fx_path(dir, sizeof dir, root, "bad");
    for (int k = 0; k < FX_BAD_KINDS; k++)
        fx_write_bad(dir, k);
    for (int i = 0; i < 9; i++) {
        char p[4096];
        if (snprintf(p, sizeof p, "%s/good/g%d.jpg", root, i) >= (int)sizeof p) continue;
        fx_write_jpeg(p, 40 + i, 30, i % 2 ? 3 : 1, i);
    }
    util_err_t err;
    data_dataset_t *ds = data_dataset_open_folder(root, NULL, &err);
    CHECK_MSG(ds && data_dataset_count(ds) == 9 + FX_BAD_KINDS, "%s", err.msg);
    if (!ds) return;
    data_stats_t *st = NULL;
    data_prep_t prep = {3, 24, 0};
    util_err_t first;
    st = data_stats_compute(ds, &prep, 2, 0, &first, &err);
    CHECK(st && st->count == 9 && st->failed == FX_BAD_KINDS && st->h == 24);
    CHECK(strstr(first.msg, "bad/") != NULL);
    data_loader_opts_t o = data_loader_defaults();
    o.batch_size = 4;
    o.prep = prep;
    o.crop = 20;
    o.norm.mean_mode = DATA_MEAN_PIXEL;
    o.norm.stats = st;
    o.threads = 2;
    for (int epoch = 0; epoch < 2; epoch++) {
        data_loader_t *ld = data_loader_create(ds, &o, &err);
        CHECK_MSG(ld != NULL, "%s", err.msg);
        if (!ld) break;
        skip_calls = 0;
        memset(skip_seen, 0, sizeof skip_seen);
        data_loader_on_skip(ld, on_skip, NULL);
        CHECK(data_loader_start_epoch(ld, epoch, 0, &err) == 0);
        const float *x;
        const int *labels;
        int n, total = 0, batches = 0;
        while (data_loader_next_view(ld, &x, &labels, &n, NULL, &err) == 1) {
            total += n;
            batches++;
            for (int i = 0; i < n; i++)
                CHECK(labels[i] == 1);
        }
        CHECK(batches == 4 && total == 9);
        CHECK(data_loader_skipped(ld) == FX_BAD_KINDS && skip_calls == FX_BAD_KINDS);
        for (int k = 0; k < FX_BAD_KINDS; k++)
            CHECK_MSG(skip_seen[k], "%s", fx_bad_names[k]);
        CHECK(strstr(data_loader_last_error(ld), "/bad/") != NULL);
        data_loader_free(ld);
    }
    data_stats_free(st);
    data_dataset_free(ds);
}

static void test_loader_rejects_bad_options(void) {
    data_dataset_t *ds = small_set();
    util_err_t err;
    data_loader_opts_t o = data_loader_defaults();
    o.prep.short_side = 0;
    o.crop = 8;
    o.lighting_std = 0;
    CHECK(data_loader_create(ds, &o, &err) != NULL || 1);
    data_loader_t *ld = data_loader_create(ds, &o, &err);
    CHECK(ld != NULL);
    float x[1];
    int labels[1], n;
    CHECK(data_loader_next(ld, x, labels, &n, NULL, &err) == -1); /* no epoch started */
    data_loader_free(ld);
    o.crop = 11; /* the images are 12x10 */
    CHECK(data_loader_create(ds, &o, &err) == NULL && strstr(err.msg, "crop 11"));
    o.crop = 8;
    o.lighting_std = 0.1f;
    CHECK(data_loader_create(ds, &o, &err) == NULL && strstr(err.msg, "lighting"));
    o.lighting_std = 0;
    o.batch_size = 0;
    CHECK(data_loader_create(ds, &o, &err) == NULL);
    o.batch_size = 4;
    data_stats_t *st = data_stats_create(3, 24, 24, &err);
    o.norm.mean_mode = DATA_MEAN_PIXEL;
    o.norm.stats = st;
    CHECK(data_loader_create(ds, &o, &err) == NULL && strstr(err.msg, "mean image"));
    data_stats_free(st);
    data_loader_free(NULL);
    data_dataset_free(ds);
}

static void test_loader_fashion_mnist_epoch(void) {
    util_err_t err;
    data_dataset_t *ds = data_dataset_open_fashion_mnist(NULL, "t10k", &err);
    CHECK_MSG(ds != NULL, "%s", err.msg);
    if (!ds) return;
    data_prep_t prep = {1, 0, 2};
    data_stats_t *st = data_stats_compute(ds, &prep, 2, 0, NULL, &err);
    data_loader_opts_t o = data_loader_defaults();
    o.batch_size = 128;
    o.prep = prep;
    o.crop = 28;
    o.norm.mean_mode = DATA_MEAN_PIXEL;
    o.norm.stats = st;
    o.norm.scale = 1.0f / 255;
    o.threads = 2;
    data_loader_t *ld = data_loader_create(ds, &o, &err);
    CHECK_MSG(ld != NULL, "%s", err.msg);
    if (ld) {
        const float *x;
        const int *labels;
        int n, items = 0;
        double t0 = util_now(), sum = 0;
        data_loader_start_epoch(ld, 0, 0, &err);
        while (data_loader_next_view(ld, &x, &labels, &n, NULL, &err) == 1) {
            items += n;
            for (int i = 0; i < n * 784; i++)
                sum += x[i];
        }
        double dt = util_now() - t0;
        printf(
            "  Fashion-MNIST t10k epoch (pad 2, random 28 crops, mirror, lighting): %.0f img/s\n",
            items / dt);
        CHECK(items == 10000 && data_loader_num_batches(ld) == 79);
        CHECK_MSG(fabs(sum / (items * 784.0)) < 0.02, "mean %g", sum / (items * 784.0));
    }
    data_loader_free(ld);
    data_stats_free(st);
    data_dataset_free(ds);
}

int main(int argc, char **argv) {
    tmp = fx_tmpdir();
    static const test_case_t tests[] = {
        T(test_loader_same_batches_for_any_thread_count),
        T(test_loader_resume_mid_epoch_equals_straight_run),
        T(test_loader_batch_layout_matches_crop_functions),
        T(test_loader_random_crops_vary_and_mirror),
        T(test_loader_skips_bad_images_naming_them),
        T(test_loader_rejects_bad_options),
        T(test_loader_fashion_mnist_epoch),
    };
    int rc = test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
    fx_rmtree(tmp);
    free(tmp);
    return rc;
}
