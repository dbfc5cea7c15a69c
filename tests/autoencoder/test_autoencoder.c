#include "autoencoder/autoencoder.h"
#include "tests/test.h"

#include <stdlib.h>
#include <unistd.h>

static void test_metrics_match_hand_computed_ranking(void) {
    /* Ranking labels 1 0 1 0 0 1 for a query of label 1 (3 relevant):
     * AP = (1/1 + 2/3 + 3/6) / 3. */
    int32_t labels[6] = {1, 0, 1, 0, 0, 1};
    uint32_t order[6] = {0, 1, 2, 3, 4, 5};
    ae_query_metrics_t m;
    double pr[AE_PR_POINTS];
    ae_ranking_metrics(order, 6, labels, 1, 3, &m, pr);
    CHECK_NEAR(m.ap, (1.0 + 2.0 / 3 + 0.5) / 3, 1e-12);
    CHECK_NEAR(m.p10, 0.5, 1e-12); /* fewer than 10 items: of those there are */
    CHECK_NEAR(pr[0], 1.0, 1e-12);
    CHECK_NEAR(pr[3], 1.0, 1e-12);     /* recall 0.3 <= 1/3 reached at precision 1 */
    CHECK_NEAR(pr[4], 2.0 / 3, 1e-12); /* recall 0.4 first reached at rank 3 */
    CHECK_NEAR(pr[7], 0.5, 1e-12);
    CHECK_NEAR(pr[10], 0.5, 1e-12);
    /* Another order of the same items: relevant at ranks 2, 3, 6. */
    uint32_t order2[6] = {1, 0, 2, 3, 4, 5};
    ae_ranking_metrics(order2, 6, labels, 1, 3, &m, NULL);
    CHECK_NEAR(m.ap, (1.0 / 2 + 2.0 / 3 + 3.0 / 6) / 3, 1e-12);
    /* Precision@10 and @100 over 200 items, relevant every 4th. */
    int32_t l200[200];
    uint32_t o200[200];
    for (int i = 0; i < 200; i++)
        l200[i] = i % 4 == 0, o200[i] = (uint32_t)i;
    ae_ranking_metrics(o200, 200, l200, 1, 50, &m, NULL);
    CHECK_NEAR(m.p10, 0.3, 1e-12);
    CHECK_NEAR(m.p100, 0.25, 1e-12);
}

typedef struct pair {
    int d;
    uint32_t i;
} pair_t;
static int cmp_pair(const void *a, const void *b) {
    const pair_t *x = a, *y = b;
    return x->d != y->d ? x->d - y->d : (x->i > y->i) - (x->i < y->i);
}

static void test_hamming_ranking_equals_brute_force(void) {
    enum { N = 700, BYTES = 5 };
    uint8_t db[N * BYTES], q[BYTES], dbl[N * 32], ql[32];
    util_rng_t rng;
    util_rng_seed(&rng, 3);
    for (int i = 0; i < N * BYTES; i++)
        db[i] = (uint8_t)util_rng_u64(&rng);
    for (int i = 0; i < N * 32; i++)
        dbl[i] = (uint8_t)util_rng_u64(&rng);
    for (int i = 0; i < BYTES; i++)
        q[i] = (uint8_t)util_rng_u64(&rng);
    for (int i = 0; i < 32; i++)
        ql[i] = (uint8_t)util_rng_u64(&rng);
    pair_t p[N];
    for (int i = 0; i < N; i++) {
        int d = 0;
        for (int b = 0; b < BYTES * 8; b++)
            d += ((q[b / 8] ^ db[i * BYTES + b / 8]) >> (b % 8)) & 1;
        p[i] = (pair_t){d, (uint32_t)i};
    }
    qsort(p, N, sizeof p[0], cmp_pair);
    uint32_t order[N];
    uint16_t dist[N];
    CHECK(ae_hamming_rank(q, db, N, BYTES, order, dist) == 0);
    int same = 1;
    for (int i = 0; i < N; i++)
        same &= order[i] == p[i].i && dist[p[i].i] == p[i].d;
    CHECK(same);
    uint32_t ids[10];
    uint16_t kd[10];
    CHECK(ae_hamming_knn(q, db, N, BYTES, 10, ids, kd) == 10);
    for (int i = 0; i < 10; i++)
        CHECK(ids[i] == p[i].i && kd[i] == p[i].d);
    /* Two-stage with the largest radius scans everything and equals the
     * long-code ranking; radius 0 scans only exact short-code matches. */
    uint32_t full[N], two[10];
    size_t scanned;
    ae_hamming_rank(ql, dbl, N, 32, full, NULL);
    CHECK(ae_two_stage_search(q, ql, db, dbl, N, BYTES, 32, 40, 10, two, &scanned) == 10);
    CHECK(scanned == N);
    for (int i = 0; i < 10; i++)
        CHECK(two[i] == full[i]);
    size_t within = 0;
    for (int i = 0; i < N; i++)
        within += p[i].d <= 12;
    ae_two_stage_search(q, ql, db, dbl, N, BYTES, 32, 12, 10, two, &scanned);
    CHECK(scanned == within && within > 0 && within < N);
    /* The hash-table lookup gives the linear scan's results at every radius
     * (the short codes here use 20 bits of 3 bytes). */
    uint8_t sc[N * 3], qs[3] = {q[0], q[1], (uint8_t)(q[2] & 0x0f)};
    for (int i = 0; i < N; i++) {
        memcpy(sc + i * 3, db + i * BYTES, 3);
        sc[i * 3 + 2] &= 0x0f;
    }
    util_err_t err;
    ae_hash_table_t *t = ae_hash_table_create(sc, N, 20, &err);
    CHECK(t != NULL);
    int paths = 0; /* both shortlist methods (lookup, scan) are exercised */
    for (int r = 0; t && r <= 6; r++) {
        uint32_t a[10], b[10];
        size_t sa, sb;
        paths |= 1 << ae_two_stage_scans(t, r);
        size_t na = ae_two_stage_search(qs, ql, sc, dbl, N, 3, 32, r, 10, a, &sa);
        size_t nb = ae_two_stage_search_table(t, qs, ql, dbl, 32, r, 10, b, &sb);
        CHECK(na == nb && sa == sb);
        CHECK(!memcmp(a, b, na * sizeof a[0]));
    }
    CHECK(paths == 3);
    ae_hash_table_free(t);
}

/* Rows around 4 random centres in `dim` dimensions, labels = centre. */
static float *clustered(size_t n, int dim, uint64_t seed, int32_t *labels) {
    util_rng_t rng;
    util_rng_seed(&rng, seed);
    float centres[4][64];
    for (int c = 0; c < 4; c++)
        for (int j = 0; j < dim; j++)
            centres[c][j] = (float)(3 * util_rng_normal(&rng));
    float *x = malloc(n * dim * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        int c = (int)(i % 4);
        if (labels) labels[i] = c;
        for (int j = 0; j < dim; j++)
            x[i * dim + j] = centres[c][j] + (float)util_rng_normal(&rng);
    }
    return x;
}

static void test_lsh_is_deterministic_and_keeps_unused_bits_zero(void) {
    float *x = clustered(200, 16, 1, NULL);
    util_err_t err;
    ae_hasher_t *a = ae_lsh_create(x, 200, 16, 28, 5, &err),
                *b = ae_lsh_create(x, 200, 16, 28, 5, &err),
                *c = ae_lsh_create(x, 200, 16, 28, 6, &err);
    uint8_t ca[200 * 4], cb[200 * 4], cc[200 * 4];
    CHECK(a && b && c);
    ae_hasher_encode(a, x, 200, ca, &err);
    ae_hasher_encode(b, x, 200, cb, &err);
    ae_hasher_encode(c, x, 200, cc, &err);
    CHECK(!memcmp(ca, cb, sizeof ca));
    CHECK(memcmp(ca, cc, sizeof ca) != 0);
    int high = 0, ones = 0;
    for (int i = 0; i < 200; i++) {
        high |= ca[i * 4 + 3] & 0xf0;
        for (int b2 = 0; b2 < 28; b2++)
            ones += (ca[i * 4 + b2 / 8] >> (b2 % 8)) & 1;
    }
    CHECK(high == 0);
    /* Centred data: bits are neither all 0 nor all 1. */
    CHECK(ones > 200 * 28 / 5 && ones < 200 * 28 * 4 / 5);
    ae_hasher_free(a), ae_hasher_free(b), ae_hasher_free(c);
    free(x);
}

static void test_itq_quantisation_loss_decreases(void) {
    float *x = clustered(600, 24, 2, NULL);
    util_err_t err;
    double loss[31];
    ae_hasher_t *h = ae_itq_create(x, 600, 24, 8, 30, 9, loss, &err);
    CHECK_MSG(h != NULL, "%s", err.msg);
    int monotone = 1;
    for (int i = 0; i < 30; i++)
        monotone &= loss[i + 1] <= loss[i] * (1 + 1e-5);
    CHECK(monotone);
    CHECK_MSG(loss[30] < 0.95 * loss[0], "%g -> %g", loss[0], loss[30]);
    ae_hasher_t *h2 = ae_itq_create(x, 600, 24, 8, 30, 9, NULL, &err);
    uint8_t c1[600], c2[600];
    ae_hasher_encode(h, x, 600, c1, &err);
    ae_hasher_encode(h2, x, 600, c2, &err);
    CHECK(!memcmp(c1, c2, sizeof c1));
    ae_hasher_free(h), ae_hasher_free(h2);
    free(x);
}

/* balance: the code balance term's weight (0: reconstruction only). */
static void check_ae_gradient(float balance) {
    int hidden[1] = {5};
    util_err_t err;
    ae_t *ae = ae_create(6, hidden, 1, 4, 11, &err);
    ae_set_balance(ae, balance);
    float *x = clustered(3, 6, 4, NULL);
    CHECK(ae_fit_standardisation(ae, x, 3, 1, &err) == 0);
    float noise[12];
    util_rng_t rng;
    util_rng_seed(&rng, 8);
    for (int i = 0; i < 12; i++)
        noise[i] = (float)util_rng_normal(&rng);
    double loss;
    CHECK(ae_loss_grad(ae, x, 3, noise, &loss, &err) == 0);
    /* Keep the analytic gradients, then probe every parameter. */
    double worst = 0;
    int checked = 0;
    for (int p = 0; p < ae_n_params(ae); p++) {
        float *g;
        size_t cnt;
        float *w = ae_param(ae, p, &g, &cnt);
        float *ana = malloc(cnt * sizeof(float));
        ae_loss_grad(ae, x, 3, noise, &loss, &err); /* the probes below overwrite grads */
        memcpy(ana, g, cnt * sizeof(float));
        for (size_t i = 0; i < cnt; i++) {
            const float eps = 1e-2f;
            float keep = w[i];
            double lp, lm;
            w[i] = keep + eps;
            ae_loss_grad(ae, x, 3, noise, &lp, &err);
            w[i] = keep - eps;
            ae_loss_grad(ae, x, 3, noise, &lm, &err);
            w[i] = keep;
            double num = (lp - lm) / (2 * eps);
            double rel = fabs(num - ana[i]) / fmax(1e-2, fabs(num) + fabs(ana[i]));
            if (rel > worst) worst = rel;
            checked++;
        }
        free(ana);
    }
    CHECK(checked == 6 * 5 + 5 + 5 * 4 + 4 + 4 * 5 + 5 + 5 * 6 + 6);
    CHECK_MSG(worst < 1e-2, "balance %g: worst relative error %g", balance, worst);
    ae_free(ae);
    free(x);
}

static void test_ae_gradient_matches_finite_differences(void) {
    check_ae_gradient(0.0f);
    check_ae_gradient(0.5f);
}

static double middle_fraction(const float *a, size_t n) {
    size_t mid = 0;
    for (size_t i = 0; i < n; i++)
        mid += a[i] > 0.1f && a[i] < 0.9f;
    return (double)mid / (double)n;
}

static void test_ae_training_lowers_error_and_makes_codes_bimodal(void) {
    enum { N = 400, D = 32, B = 8 };
    int32_t labels[N];
    float *x = clustered(N, D, 5, labels);
    int hidden[1] = {16};
    util_err_t err;
    ae_t *ae = ae_create(D, hidden, 1, B, 3, &err);
    CHECK(ae_fit_standardisation(ae, x, N, 1, &err) == 0);
    double before, after;
    float act[N * B];
    CHECK(ae_reconstruction_error(ae, x, N, &before, &err) == 0);
    ae_encode(ae, x, N, act, NULL, &err);
    double mid_before = middle_fraction(act, N * B);
    ae_train_opts_t o = ae_train_defaults();
    o.epochs = 60;
    o.batch = 20;
    o.lr = 0.02f;
    o.noise_std = 4;
    o.noise_ramp = 20;
    CHECK_MSG(ae_train(ae, x, N, &o, &err) == 0, "%s", err.msg);
    CHECK(ae_reconstruction_error(ae, x, N, &after, &err) == 0);
    CHECK_MSG(after < 0.5 * before, "mse %g -> %g", before, after);
    uint8_t codes[N];
    ae_encode(ae, x, N, act, codes, &err);
    double mid_after = middle_fraction(act, N * B);
    CHECK_MSG(mid_after < 0.05 && mid_after < mid_before, "mid fraction %g -> %g", mid_before,
              mid_after);
    /* The codes separate the clusters: each item's nearest code neighbour
     * (other than itself) shares its label for almost all items. */
    int agree = 0;
    for (int i = 0; i < N; i++) {
        int best = -1, bd = 99;
        for (int j = 0; j < N; j++) {
            int d = ae_hamming(codes + i, codes + j, 1);
            if (j != i && d < bd) bd = d, best = j;
        }
        agree += labels[best] == labels[i];
    }
    CHECK_MSG(agree > N * 9 / 10, "%d of %d", agree, N);

    /* Saved and loaded (standardisation folded into the first and last
     * layers), the codes stay the same. */
    char path[] = "/tmp/imgret_ae_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK_MSG(ae_save(ae, path, "test", &err) == 0, "%s", err.msg);
    ae_t *back = ae_load(path, &err);
    CHECK_MSG(back != NULL, "%s", err.msg);
    uint8_t codes2[N];
    float act2[N * B];
    if (back) {
        ae_encode(back, x, N, act2, codes2, &err);
        double md = 0;
        for (int i = 0; i < N * B; i++)
            md = fmax(md, fabs(act[i] - act2[i]));
        CHECK_MSG(md < 1e-4, "activities differ by %g", md);
        CHECK(ae_bits(back) == B && ae_in_dim(back) == D);
    }
    unlink(path);
    ae_free(back);
    ae_free(ae);
    free(x);
}

/* With L2 normalisation the codes depend on each row's direction only, in
 * training, in ae_encode and after a save and load (the file records it). */
static void test_ae_l2_normalisation_is_applied_when_encoding_and_kept_in_the_file(void) {
    enum { N = 200, D = 24, B = 8 };
    float *x = clustered(N, D, 7, NULL), *scaled = malloc(N * D * sizeof(float));
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++)
            scaled[i * D + j] = x[i * D + j] * (0.25f + (float)(i % 5));
    int hidden[1] = {12};
    util_err_t err;
    ae_t *ae = ae_create(D, hidden, 1, B, 5, &err), *plain = ae_create(D, hidden, 1, B, 5, &err);
    CHECK(ae && plain && !ae_l2(ae));
    ae_set_l2(ae, 1);
    CHECK(ae_l2(ae) == 1);
    CHECK(ae_fit_standardisation(ae, x, N, 0, &err) == 0);
    CHECK(ae_fit_standardisation(plain, x, N, 0, &err) == 0);
    ae_train_opts_t o = ae_train_defaults();
    o.epochs = 3;
    o.batch = 20;
    CHECK_MSG(ae_train(ae, scaled, N, &o, &err) == 0, "%s", err.msg);
    float a1[N * B], a2[N * B], a3[N * B];
    uint8_t c1[N], c2[N];
    CHECK(ae_encode(ae, x, N, a1, c1, &err) == 0);
    CHECK(ae_encode(ae, scaled, N, a2, c2, &err) == 0);
    double md = 0;
    for (int i = 0; i < N * B; i++)
        md = fmax(md, fabs(a1[i] - a2[i]));
    CHECK_MSG(md < 1e-5, "scaled rows change the activities by %g", md);
    /* Without it, the scale of a row matters. */
    ae_encode(plain, x, N, a1, NULL, &err);
    ae_encode(plain, scaled, N, a3, NULL, &err);
    md = 0;
    for (int i = 0; i < N * B; i++)
        md = fmax(md, fabs(a1[i] - a3[i]));
    CHECK_MSG(md > 1e-2, "plain autoencoder: activities differ by only %g", md);
    /* A zero row stays finite. */
    float zero[D] = {0}, az[B];
    CHECK(ae_encode(ae, zero, 1, az, NULL, &err) == 0);
    for (int j = 0; j < B; j++)
        CHECK(isfinite(az[j]));

    char path[] = "/tmp/imgret_ae_l2_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK_MSG(ae_save(ae, path, "test", &err) == 0, "%s", err.msg);
    ae_t *back = ae_load(path, &err);
    CHECK_MSG(back != NULL, "%s", err.msg);
    if (back) {
        CHECK(ae_l2(back) == 1);
        float a4[N * B];
        uint8_t c4[N];
        ae_encode(back, scaled, N, a4, c4, &err);
        md = 0;
        for (int i = 0; i < N * B; i++)
            md = fmax(md, fabs(a2[i] - a4[i]));
        CHECK_MSG(md < 1e-4, "loaded: activities differ by %g", md);
        CHECK(!memcmp(c2, c4, sizeof c2) || md > 0);
    }
    ae_free(back);
    CHECK_MSG(ae_save(plain, path, "test", &err) == 0, "%s", err.msg);
    back = ae_load(path, &err);
    CHECK(back && !ae_l2(back));
    ae_free(back);
    unlink(path);
    ae_free(ae);
    ae_free(plain);
    free(x);
    free(scaled);
}

TEST_MAIN(T(test_metrics_match_hand_computed_ranking), T(test_hamming_ranking_equals_brute_force),
          T(test_lsh_is_deterministic_and_keeps_unused_bits_zero),
          T(test_itq_quantisation_loss_decreases), T(test_ae_gradient_matches_finite_differences),
          T(test_ae_training_lowers_error_and_makes_codes_bimodal),
          T(test_ae_l2_normalisation_is_applied_when_encoding_and_kept_in_the_file))
