/* data/: crops to float, mean subtraction, ten-crop geometry, eigen
 * decomposition, dataset statistics, and PCA lighting statistics. */
#include "tests/data/fixtures.h"
#include "tests/test.h"

/* Pixel (x, y, ch) = x + 16 * y + 100 * ch: every position is recognisable. */
static data_image_t *coord_image(int w, int h, int c) {
    data_image_t *im = data_image_create(w, h, c, NULL);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++)
                im->pixels[((size_t)y * w + x) * c + ch] = (uint8_t)(x + 16 * y + 100 * ch);
    return im;
}

static float coord(int x, int y, int ch) {
    return (float)(uint8_t)(x + 16 * y + 100 * ch);
}

static void test_crop_to_float_geometry_mirror_and_mean(void) {
    data_image_t *im = coord_image(8, 6, 3);
    float out[3 * 4 * 4];
    util_err_t err;
    CHECK(data_crop_to_float(im, 3, 1, 4, 0, NULL, NULL, out, &err) == 0);
    int ok = 1;
    for (int ch = 0; ch < 3; ch++)
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 4; j++)
                ok &= out[(ch * 4 + r) * 4 + j] == coord(3 + j, 1 + r, ch);
    CHECK(ok);
    CHECK(data_crop_to_float(im, 3, 1, 4, 1, NULL, NULL, out, &err) == 0);
    ok = 1;
    for (int ch = 0; ch < 3; ch++)
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 4; j++)
                ok &= out[(ch * 4 + r) * 4 + j] == coord(3 + 3 - j, 1 + r, ch);
    CHECK(ok);
    /* Per-pixel mean: the mean image's window moves (and mirrors) with the crop. */
    data_stats_t *st = data_stats_create(3, 6, 8, &err);
    for (int i = 0; i < 3 * 6 * 8; i++)
        st->mean[i] = (float)i * 0.5f;
    data_norm_t norm = {DATA_MEAN_PIXEL, st, 2.0f};
    float light[3] = {1, 2, 3};
    CHECK(data_crop_to_float(im, 4, 2, 4, 1, &norm, light, out, &err) == 0);
    ok = 1;
    for (int ch = 0; ch < 3; ch++)
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 4; j++) {
                int sx = 4 + 3 - j, sy = 2 + r;
                float want = (coord(sx, sy, ch) + light[ch] - st->mean[(ch * 6 + sy) * 8 + sx]) * 2;
                ok &= fabsf(out[(ch * 4 + r) * 4 + j] - want) < 1e-4f;
            }
    CHECK(ok);
    /* Per-channel mean. */
    st->channel_mean[0] = 10;
    st->channel_mean[1] = 20;
    st->channel_mean[2] = 30;
    data_norm_t cm = {DATA_MEAN_CHANNEL, st, 0};
    CHECK(data_crop_to_float(im, 0, 0, 4, 0, &cm, NULL, out, &err) == 0);
    CHECK(out[0] == coord(0, 0, 0) - 10 && out[16 + 5] == coord(1, 1, 1) - 20);
    /* Out of bounds and a mean image of another size. */
    CHECK(data_crop_to_float(im, 5, 0, 4, 0, NULL, NULL, out, &err) == -1);
    data_image_t *other = coord_image(7, 6, 3);
    CHECK(data_crop_to_float(other, 0, 0, 4, 0, &norm, NULL, out, &err) == -1);
    CHECK(strstr(err.msg, "mean image") != NULL);
    data_image_free(other);
    data_stats_free(st);
    data_image_free(im);
}

static void test_ten_crop_corners_centre_and_mirrors(void) {
    data_image_t *im = coord_image(9, 7, 1);
    const int s = 4;
    float out[10 * 16];
    util_err_t err;
    CHECK(data_ten_crop(im, s, NULL, out, &err) == 0);
    /* Top-left pixel of each crop, and for mirrors the top-right of the source window. */
    const int x0[5] = {0, 5, 0, 5, 2}, y0[5] = {0, 0, 3, 3, 1};
    for (int k = 0; k < 10; k++) {
        int b = k % 5;
        int ok = 1;
        for (int r = 0; r < s; r++)
            for (int j = 0; j < s; j++) {
                int sx = k < 5 ? x0[b] + j : x0[b] + s - 1 - j;
                ok &= out[k * 16 + r * s + j] == coord(sx, y0[b] + r, 0);
            }
        CHECK_MSG(ok, "crop %d", k);
    }
    float centre[16];
    CHECK(data_center_crop(im, s, NULL, centre, &err) == 0);
    CHECK(memcmp(centre, out + 4 * 16, sizeof centre) == 0);
    CHECK(data_ten_crop(im, 8, NULL, out, &err) == -1);
    data_image_free(im);
}

static void test_eigen_sym_decomposes_known_matrix(void) {
    /* A = V diag(5, 2, 0.5) V^T with an orthonormal V. */
    const double v[3][3] = {{2.0 / 3, -2.0 / 3, 1.0 / 3},
                            {2.0 / 3, 1.0 / 3, -2.0 / 3},
                            {1.0 / 3, 2.0 / 3, 2.0 / 3}}; /* rows: vectors */
    const double lam[3] = {0.5, 5, 2};
    double a[9] = {0};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 3; k++)
                a[i * 3 + j] += lam[k] * v[k][i] * v[k][j];
    double vals[3], vecs[9];
    data_eigen_sym(3, a, vals, vecs);
    CHECK_NEAR(vals[0], 5, 1e-9);
    CHECK_NEAR(vals[1], 2, 1e-9);
    CHECK_NEAR(vals[2], 0.5, 1e-9);
    for (int i = 0; i < 3; i++) /* A p_i = lambda_i p_i */
        for (int r = 0; r < 3; r++) {
            double av = 0;
            for (int k = 0; k < 3; k++)
                av += a[r * 3 + k] * vecs[k * 3 + i];
            CHECK_NEAR(av, vals[i] * vecs[r * 3 + i], 1e-9);
        }
    double one = 4.0, val1, vec1;
    data_eigen_sym(1, &one, &val1, &vec1);
    CHECK(val1 == 4.0 && vec1 == 1.0);
}

/* Grey-ish images: pixel = (t, t, t) + small per-channel offsets, t per image. */
static data_dataset_t *grey_world(int n, util_err_t *err) {
    uint8_t *px = malloc((size_t)n * 5 * 4 * 3);
    int *labels = malloc(sizeof(int) * (size_t)n);
    util_rng_t rng;
    util_rng_seed(&rng, 7);
    for (int i = 0; i < n; i++) {
        int t = (int)util_rng_below(&rng, 200);
        for (int p = 0; p < 20; p++)
            for (int ch = 0; ch < 3; ch++)
                px[((size_t)i * 20 + p) * 3 + ch] = (uint8_t)(t + ch * 20 + p);
        labels[i] = i % 3;
    }
    data_dataset_t *ds = data_dataset_from_memory(n, 5, 4, 3, px, labels, 3, NULL, err);
    free(px);
    free(labels);
    return ds;
}

static void test_stats_mean_and_covariance_eigenvectors(void) {
    util_err_t err;
    data_dataset_t *ds = grey_world(500, &err);
    data_stats_t *a = data_stats_compute(ds, NULL, 1, 0, NULL, &err);
    data_stats_t *b = data_stats_compute(ds, NULL, 3, 0, NULL, &err);
    CHECK(a && b);
    if (a && b) {
        CHECK(a->c == 3 && a->h == 4 && a->w == 5 && a->count == 500 && a->failed == 0);
        /* Independent of the thread count, bit for bit. */
        CHECK(memcmp(a->mean, b->mean, sizeof(float) * 60) == 0);
        CHECK(memcmp(a->eigvec, b->eigvec, sizeof a->eigvec) == 0);
        CHECK(memcmp(a->eigval, b->eigval, sizeof a->eigval) == 0);
        /* The mean image's channel offsets and pixel offsets are exact. */
        CHECK_NEAR(a->mean[1 * 20 + 7] - a->mean[0 * 20 + 7], 20, 1e-3);
        CHECK_NEAR(a->mean[2 * 20 + 3] - a->mean[2 * 20 + 0], 3, 1e-3);
        CHECK_NEAR(a->channel_mean[1] - a->channel_mean[0], 20, 1e-3);
        /* Variation is almost all along grey (1,1,1)/sqrt(3). */
        for (int k = 0; k < 3; k++)
            CHECK_NEAR(a->eigvec[k * 3 + 0], 0.57735, 0.01);
        CHECK(a->eigval[0] > 50 * a->eigval[1] && a->eigval[1] >= a->eigval[2]);
        /* Total variance = trace of the covariance. */
        CHECK_NEAR(a->eigval[0] + a->eigval[1] + a->eigval[2], a->cov[0] + a->cov[4] + a->cov[8],
                   1e-5);
    }
    data_stats_t *sub = data_stats_compute(ds, NULL, 2, 50, NULL, &err);
    CHECK(sub && sub->count == 50);
    data_stats_free(sub);
    data_stats_free(a);
    data_stats_free(b);
    data_dataset_free(ds);
}

static void test_stats_over_fashion_mnist_train(void) {
    util_err_t err;
    data_dataset_t *ds = data_dataset_open_fashion_mnist(NULL, "train", &err);
    CHECK_MSG(ds != NULL, "%s", err.msg);
    if (!ds) return;
    double t0 = util_now();
    data_stats_t *st = data_stats_compute(ds, NULL, 2, 0, NULL, &err);
    double dt = util_now() - t0;
    printf("  stats over 60000 Fashion-MNIST images: %.3f s\n", dt);
    CHECK(st && st->count == 60000 && st->c == 1 && st->h == 28);
    if (st) {
        /* Reference values from Python over the same files. */
        CHECK_NEAR(st->channel_mean[0], 72.94035, 1e-3);
        CHECK_NEAR(st->eigval[0], 0.124626, 1e-5);
        CHECK_NEAR(st->mean[14 * 28 + 14], 139.1602, 1e-3);
        CHECK(st->eigvec[0] == 1.0f);
    }
    data_stats_free(st);
    data_dataset_free(ds);
}

static void test_pca_lighting_statistics(void) {
    /* fb.resnet.torch's ImageNet eigen data (the values its lighting uses). */
    data_stats_t *st = data_stats_create(3, 1, 1, NULL);
    const float vec[9] = {-0.5675f, 0.7192f,  0.4009f,  -0.5808f, -0.0045f,
                          -0.8140f, -0.5836f, -0.6948f, 0.4203f};
    const float val[3] = {0.2175f, 0.0188f, 0.0045f};
    memcpy(st->eigvec, vec, sizeof vec);
    memcpy(st->eigval, val, sizeof val);
    /* Deterministic part: alpha e_0 adds 255 * alpha * lambda_0 * p_0. */
    float alpha[3] = {0.1f, 0, 0}, off[3];
    data_lighting_offset(st, alpha, off);
    for (int k = 0; k < 3; k++)
        CHECK_NEAR(off[k], 255 * 0.1 * 0.2175 * vec[k * 3], 1e-4);
    /* Random part: projected on p_i, the offsets have mean 0 and standard
     * deviation 255 * 0.1 * lambda_i, and the projections are uncorrelated. */
    util_rng_t rng;
    util_rng_seed(&rng, 123);
    const int n = 40000;
    double s[3] = {0}, ss[3] = {0}, s01 = 0;
    for (int t = 0; t < n; t++) {
        data_lighting_draw(st, 0.1f, &rng, off);
        double proj[3];
        for (int i = 0; i < 3; i++) {
            proj[i] = 0;
            for (int k = 0; k < 3; k++)
                proj[i] += off[k] * vec[k * 3 + i];
            s[i] += proj[i];
            ss[i] += proj[i] * proj[i];
        }
        s01 += proj[0] * proj[1];
    }
    for (int i = 0; i < 3; i++) {
        double mean = s[i] / n, sd = sqrt(ss[i] / n - mean * mean);
        double want = 255 * 0.1 * val[i];
        CHECK_MSG(fabs(mean) < 4 * want / sqrt(n), "mean %g", mean);
        CHECK_MSG(fabs(sd / want - 1) < 0.03, "component %d: sd %g want %g", i, sd, want);
    }
    double sd0 = 255 * 0.1 * val[0], sd1 = 255 * 0.1 * val[1];
    CHECK(fabs(s01 / n) / (sd0 * sd1) < 0.03);
    data_stats_free(st);
    /* One channel: the offset is 255 * alpha * variance. */
    data_stats_t *g = data_stats_create(1, 1, 1, NULL);
    g->eigvec[0] = 1;
    g->eigval[0] = 0.125f;
    double gs = 0, gss = 0;
    for (int t = 0; t < n; t++) {
        data_lighting_draw(g, 0.1f, &rng, off);
        gs += off[0];
        gss += off[0] * off[0];
    }
    double gsd = sqrt(gss / n - (gs / n) * (gs / n));
    CHECK_MSG(fabs(gsd / (255 * 0.1 * 0.125) - 1) < 0.03, "sd %g", gsd);
    data_stats_free(g);
}

int main(int argc, char **argv) {
    static const test_case_t tests[] = {
        T(test_crop_to_float_geometry_mirror_and_mean),
        T(test_ten_crop_corners_centre_and_mirrors),
        T(test_eigen_sym_decomposes_known_matrix),
        T(test_stats_mean_and_covariance_eigenvectors),
        T(test_stats_over_fashion_mnist_train),
        T(test_pca_lighting_statistics),
    };
    return test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
}
