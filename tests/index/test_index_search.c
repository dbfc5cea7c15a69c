/* Searches: exact ones equal a brute-force reference (ties aside), the
 * approximate ones report recall@10 against exact, removals never come back,
 * and bad requests get errors that say what was wrong. */
#include "index/index.h"
#include "tests/index/index_fixture.h"
#include "tests/test.h"

#include <math.h>

#define D 32
#define CB 64
#define N 3000
#define NQ 40
#define K 10

static float *g_x;   /* N x D */
static uint8_t *g_c; /* N x CB/8 */
static float *g_q;   /* NQ x D */
static uint8_t *g_qc;

static void make_data(void) {
    if (g_x) return;
    g_x = malloc(sizeof(float) * N * D);
    g_c = malloc(N * CB / 8);
    g_q = malloc(sizeof(float) * NQ * D);
    g_qc = malloc(NQ * CB / 8);
    fx_clustered(g_x, N, D, 30, 1);
    fx_codes(g_c, N, CB / 8, 60, 2);
    /* Queries from the same distributions (same seeds, so same centres). */
    float *tmp = malloc(sizeof(float) * (N + NQ) * D);
    fx_clustered(tmp, N + NQ, D, 30, 1);
    memcpy(g_q, tmp + (size_t)N * D, sizeof(float) * NQ * D);
    free(tmp);
    uint8_t *tc = malloc((N + NQ) * CB / 8);
    fx_codes(tc, N + NQ, CB / 8, 60, 2);
    memcpy(g_qc, tc + (size_t)N * CB / 8, NQ * CB / 8);
    free(tc);
}

/* Opens a fresh index and adds items 0..N-1 (ids 1000 + i) in batches. */
static index_t *build(char *dir, size_t cap, const char *ff, const char *cf, util_err_t *err) {
    make_data();
    fx_tmpdir(dir, cap, "search");
    index_options_t o;
    index_options_default(&o);
    o.fc7_dim = D;
    o.code_bits = CB;
    o.fc7_factory = ff;
    o.code_factory = cf;
    o.nprobe = 8;
    index_t *ix = index_open(dir, &o, err);
    if (!ix) return NULL;
    store_item_t *it = calloc(N, sizeof *it);
    for (int i = 0; i < N; i++) {
        it[i].id = 1000 + i;
        it[i].fc7 = g_x + (size_t)i * D;
        it[i].code = g_c + (size_t)i * CB / 8;
        it[i].label = i % 10;
    }
    int rc = 0;
    for (int b = 0; b < N && !rc; b += 500)
        rc = index_add(ix, it + b, 500, err);
    free(it);
    if (rc) {
        index_free(ix);
        return NULL;
    }
    return ix;
}

/* Checks hits for one query against brute force: distances right for their
 * ids, sorted, the k-th equal to the true k-th, and every strictly closer item
 * present. `removed` ids (may be NULL) are excluded from the reference. */
static int g_removed[N];

static void check_exact_fc7(const float *q, const index_hit_t *h, int k) {
    double *d = malloc(sizeof(double) * N);
    size_t m = 0;
    for (int i = 0; i < N; i++)
        if (!g_removed[i]) d[m++] = fx_l2sq(q, g_x + (size_t)i * D, D);
    double kth = fx_kth(d, m, k);
    for (int j = 0; j < k; j++) {
        int i = (int)(h[j].id - 1000);
        CHECK(i >= 0 && i < N && !g_removed[i]);
        if (i < 0 || i >= N) continue;
        double t = fx_l2sq(q, g_x + (size_t)i * D, D);
        CHECK_NEAR(h[j].distance, t, 1e-3 * (1 + t));
        if (j) CHECK(h[j].distance >= h[j - 1].distance);
    }
    CHECK_NEAR(h[k - 1].distance, kth, 1e-3 * (1 + kth));
    for (int i = 0; i < N; i++) {
        if (g_removed[i]) continue;
        double t = fx_l2sq(q, g_x + (size_t)i * D, D);
        if (t < kth - 1e-3 * (1 + kth)) {
            int found = 0;
            for (int j = 0; j < k; j++)
                found |= h[j].id == 1000 + i;
            CHECK_MSG(found, "item %d at %g (k-th %g) missing", 1000 + i, t, kth);
        }
    }
    free(d);
}

static void check_exact_code(const uint8_t *q, const index_hit_t *h, int k) {
    double *d = malloc(sizeof(double) * N);
    size_t m = 0;
    for (int i = 0; i < N; i++)
        if (!g_removed[i]) d[m++] = fx_hamming(q, g_c + (size_t)i * CB / 8, CB / 8);
    double kth = fx_kth(d, m, k);
    for (int j = 0; j < k; j++) {
        int i = (int)(h[j].id - 1000);
        CHECK(i >= 0 && i < N && !g_removed[i]);
        if (i < 0 || i >= N) continue;
        CHECK(h[j].distance == (float)fx_hamming(q, g_c + (size_t)i * CB / 8, CB / 8));
        if (j) CHECK(h[j].distance >= h[j - 1].distance);
    }
    CHECK(h[k - 1].distance == (float)kth);
    for (int i = 0; i < N; i++) {
        if (g_removed[i]) continue;
        if (fx_hamming(q, g_c + (size_t)i * CB / 8, CB / 8) < kth) {
            int found = 0;
            for (int j = 0; j < k; j++)
                found |= h[j].id == 1000 + i;
            CHECK_MSG(found, "item %d closer than the k-th missing", 1000 + i);
        }
    }
    free(d);
}

static void test_flat_and_bflat_equal_brute_force(void) {
    char dir[256];
    util_err_t err;
    memset(g_removed, 0, sizeof g_removed);
    index_t *ix = build(dir, sizeof dir, "Flat", "BFlat", &err);
    CHECK_MSG(ix != NULL, "%s", err.msg);
    if (!ix) return;
    index_hit_t h[NQ * K];
    CHECK_MSG(index_search_fc7(ix, g_q, NQ, D, K, h, &err) == 0, "%s", err.msg);
    for (int q = 0; q < NQ; q++)
        check_exact_fc7(g_q + (size_t)q * D, h + q * K, K);
    CHECK_MSG(index_search_code(ix, g_qc, NQ, CB / 8, K, h, &err) == 0, "%s", err.msg);
    for (int q = 0; q < NQ; q++)
        check_exact_code(g_qc + (size_t)q * CB / 8, h + q * K, K);
    index_free(ix);
    fx_rmdir(dir);
}

static void removed_items_never_return(const char *ff, const char *cf) {
    char dir[256];
    util_err_t err;
    memset(g_removed, 0, sizeof g_removed);
    index_t *ix = build(dir, sizeof dir, ff, cf, &err);
    if (!ix) return;
    /* Remove every query's current nearest neighbours, then check again. */
    index_hit_t h[NQ * K];
    CHECK(index_search_fc7(ix, g_q, NQ, D, 3, h, &err) == 0);
    CHECK(index_search_code(ix, g_qc, NQ, CB / 8, 3, h + NQ * 3, &err) == 0);
    int64_t ids[NQ * 6];
    size_t n = 0;
    for (int j = 0; j < NQ * 6; j++) {
        int i = (int)(h[j].id - 1000);
        if (i >= 0 && !g_removed[i]) g_removed[i] = 1, ids[n++] = h[j].id;
    }
    CHECK_MSG(index_remove(ix, ids, n, &err) == 0, "%s", err.msg);
    CHECK(index_search_fc7(ix, g_q, NQ, D, K, h, &err) == 0);
    for (int q = 0; q < NQ; q++)
        check_exact_fc7(g_q + (size_t)q * D, h + q * K, K);
    CHECK(index_search_code(ix, g_qc, NQ, CB / 8, K, h, &err) == 0);
    for (int q = 0; q < NQ; q++)
        check_exact_code(g_qc + (size_t)q * CB / 8, h + q * K, K);
    index_free(ix);
    fx_rmdir(dir);
    memset(g_removed, 0, sizeof g_removed);
}

static void test_removed_items_never_return_exact(void) {
    removed_items_never_return("Flat", "BFlat");
}

/* IVF with nprobe >= nlist is exact too, and removes natively. */
static void test_removed_items_never_return_ivf(void) {
    removed_items_never_return("IVF8,Flat", "BFlat");
}

/* recall@K of hits against exact hits: fraction of exact ids found. */
static double recall(const index_hit_t *approx, const index_hit_t *exact, int nq, int k) {
    int found = 0;
    for (int q = 0; q < nq; q++)
        for (int j = 0; j < k; j++)
            for (int l = 0; l < k; l++)
                if (approx[q * k + l].id == exact[q * k + j].id) {
                    found++;
                    break;
                }
    return (double)found / (nq * k);
}

static void test_approximate_indexes_report_recall_at_10(void) {
    char dir[256], edir[256];
    util_err_t err;
    index_t *ex = build(edir, sizeof edir, "Flat", "BFlat", &err);
    if (!ex) return;
    index_hit_t eh[NQ * K], ec[NQ * K], h[NQ * K];
    CHECK(index_search_fc7(ex, g_q, NQ, D, K, eh, &err) == 0);
    CHECK(index_search_code(ex, g_qc, NQ, CB / 8, K, ec, &err) == 0);
    index_free(ex);
    fx_rmdir(edir);
    const char *ff[] = {"IVF16,Flat", "HNSW32"};
    const char *cf[] = {"BHash4x16", "BHash16"};
    for (int t = 0; t < 2; t++) {
        index_t *ix = build(dir, sizeof dir, ff[t], cf[t], &err);
        CHECK_MSG(ix != NULL, "%s/%s: %s", ff[t], cf[t], err.msg);
        if (!ix) continue;
        index_stats_t st;
        CHECK(index_stats(ix, &st, &err) == 0 && st.fc7_trained && st.fc7_vectors == N);
        CHECK(index_search_fc7(ix, g_q, NQ, D, K, h, &err) == 0);
        double rf = recall(h, eh, NQ, K);
        CHECK(index_search_code(ix, g_qc, NQ, CB / 8, K, h, &err) == 0);
        double rc = recall(h, ec, NQ, K);
        printf("  recall@10: %-10s %.3f   %-9s %.3f\n", ff[t], rf, cf[t], rc);
        CHECK_MSG(rf >= 0.9, "%s recall@10 %.3f", ff[t], rf);
        /* Hash recall depends on codes hashing near each other: these codes
         * differ from their centre by ~4 bits, so most neighbours share a
         * bucket within 2 flips. */
        CHECK_MSG(rc >= 0.5, "%s recall@10 %.3f", cf[t], rc);
        index_free(ix);
        fx_rmdir(dir);
    }
}

static void test_removal_on_indexes_that_cannot_remove(void) {
    char dir[256];
    util_err_t err;
    index_t *ix = build(dir, sizeof dir, "HNSW32", "BHash4x16", &err);
    CHECK_MSG(ix != NULL, "%s", err.msg);
    if (!ix) return;
    /* Each item is its own nearest neighbour; once removed it must vanish. */
    int64_t ids[5] = {1000, 1001, 1500, 2000, 3999};
    CHECK(index_remove(ix, ids, 5, &err) == 0);
    for (int j = 0; j < 4; j++) {
        int i = (int)(ids[j] - 1000);
        index_hit_t h[K];
        CHECK(index_search_fc7(ix, g_x + (size_t)i * D, 1, D, K, h, &err) == 0);
        for (int l = 0; l < K; l++)
            CHECK(h[l].id != ids[j]);
        CHECK(index_search_code(ix, g_c + (size_t)i * CB / 8, 1, CB / 8, K, h, &err) == 0);
        for (int l = 0; l < K; l++)
            CHECK(h[l].id != ids[j]);
    }
    index_stats_t st;
    CHECK(index_stats(ix, &st, &err) == 0);
    CHECK(st.fc7_removed == 5 && st.code_removed == 5 && st.items == N - 5);

    /* Re-adding a removed id with a new vector: found by the new vector only
     * (the index is rebuilt behind the scenes). */
    store_item_t again = {.id = 1000, .fc7 = g_x + 5 * D, .code = g_c + 5 * CB / 8};
    CHECK_MSG(index_add(ix, &again, 1, &err) == 0, "%s", err.msg);
    index_hit_t h[2];
    CHECK(index_search_fc7(ix, g_x + 5 * D, 1, D, 2, h, &err) == 0);
    CHECK((h[0].id == 1000 || h[0].id == 1005) && (h[1].id == 1000 || h[1].id == 1005));
    CHECK(index_search_fc7(ix, g_x, 1, D, 1, h, &err) == 0);
    CHECK(h[0].id != 1000 || fx_l2sq(g_x, g_x + 5 * D, D) < 1e-6);
    CHECK(index_stats(ix, &st, &err) == 0 && st.items == N - 4 && st.fc7_vectors == N - 4);
    CHECK(st.fc7_removed == 0);
    index_free(ix);
    fx_rmdir(dir);
}

static void test_search_by_id_finds_the_item_itself_first(void) {
    char dir[256];
    util_err_t err;
    index_t *ix = build(dir, sizeof dir, "Flat", "BFlat", &err);
    if (!ix) return;
    index_hit_t h[K];
    CHECK(index_search_id(ix, INDEX_FC7, 1234, K, h, &err) == 0);
    CHECK(h[0].id == 1234 && h[0].distance == 0);
    CHECK(index_search_id(ix, INDEX_CODE, 1234, K, h, &err) == 0);
    CHECK(h[0].distance == 0);
    int self = 0;
    for (int j = 0; j < K && h[j].distance == 0; j++)
        self |= h[j].id == 1234;
    CHECK(self);
    store_record_t r;
    CHECK(index_get(ix, 1234, &r, &err) == 0 && r.label == 234 % 10);
    store_record_clear(&r);
    index_free(ix);
    fx_rmdir(dir);
}

static void test_bad_requests_give_clear_errors(void) {
    char dir[256];
    util_err_t err;
    index_t *ix = build(dir, sizeof dir, "Flat", "BFlat", &err);
    if (!ix) return;
    index_hit_t h[K];
    float q[D + 1];
    memcpy(q, g_q, sizeof(float) * D);
    err.msg[0] = 0;
    CHECK(index_search_id(ix, INDEX_FC7, 99999, K, h, &err) == -1);
    CHECK_MSG(strstr(err.msg, "no item with id 99999") != NULL, "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_NOT_FOUND);
    CHECK(index_search_fc7(ix, q, 1, D + 1, K, h, &err) == -1);
    CHECK_MSG(strstr(err.msg, "33 dimensions") && strstr(err.msg, "has 32"), "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_INVALID);
    CHECK(index_search_code(ix, g_qc, 1, 4, K, h, &err) == -1);
    CHECK_MSG(strstr(err.msg, "4 bytes") != NULL, "%s", err.msg);
    CHECK(index_search_fc7(ix, q, 1, D, 0, h, &err) == -1);
    CHECK_MSG(strstr(err.msg, "k must be at least 1 (got 0)") != NULL, "%s", err.msg);
    CHECK(index_search_code(ix, g_qc, 1, CB / 8, -3, h, &err) == -1);
    CHECK_MSG(strstr(err.msg, "got -3") != NULL, "%s", err.msg);
    CHECK(index_search_fc7(ix, q, 1, D, 1000000, h, &err) == -1);
    CHECK_MSG(strstr(err.msg, "exceeds the limit") != NULL, "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_INVALID);
    q[7] = NAN;
    CHECK(index_search_fc7(ix, q, 1, D, K, h, &err) == -1);
    CHECK_MSG(strstr(err.msg, "component 7 is NaN") != NULL, "%s", err.msg);
    q[7] = -INFINITY;
    CHECK(index_search_fc7(ix, q, 1, D, K, h, &err) == -1);
    CHECK_MSG(strstr(err.msg, "infinite") != NULL, "%s", err.msg);
    CHECK(index_search_fc7(ix, NULL, 1, D, K, h, &err) == -1);
    CHECK(index_search_id(ix, (index_kind_t)7, 1000, K, h, &err) == -1);
    int64_t unknown = 424242;
    CHECK(index_remove(ix, &unknown, 1, &err) == -1);
    CHECK_MSG(strstr(err.msg, "424242") != NULL, "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_NOT_FOUND); /* through index_remove */
    float bad[D] = {0};
    bad[3] = NAN;
    store_item_t it = {.id = STORE_ID_AUTO, .fc7 = bad};
    CHECK(index_add(ix, &it, 1, &err) == -1);
    CHECK_MSG(strstr(err.msg, "NaN") != NULL, "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_INVALID);
    store_item_t dup = {.id = 1000, .fc7 = g_q};
    CHECK(index_add(ix, &dup, 1, &err) == -1);
    CHECK_MSG(util_err_kind(&err) == UTIL_ERR_EXISTS, "%s", err.msg); /* through index_add */
    /* k larger than the index: empty slots are marked. */
    index_hit_t *big = malloc(sizeof *big * 4096);
    CHECK(index_search_fc7(ix, g_q, 1, D, 4096, big, &err) == 0);
    CHECK(big[N - 1].id >= 0 && big[N].id == -1 && isinf(big[N].distance));
    free(big);
    index_free(ix);
    fx_rmdir(dir);

    /* Factory strings FAISS does not know are reported, not crashed on. */
    index_options_t o;
    index_options_default(&o);
    o.fc7_dim = D;
    o.fc7_factory = "NoSuchIndex";
    fx_tmpdir(dir, sizeof dir, "search");
    CHECK(index_open(dir, &o, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "FC7") != NULL, "%s", err.msg);
    o.fc7_factory = "Flat";
    o.code_bits = 64;
    o.code_factory = "BWhat";
    CHECK(index_open(dir, &o, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "code") != NULL, "%s", err.msg);
    fx_rmdir(dir);
}

static void test_ivf_waits_for_enough_vectors_then_trains(void) {
    make_data();
    char dir[256];
    fx_tmpdir(dir, sizeof dir, "search");
    index_options_t o;
    index_options_default(&o);
    o.fc7_dim = D;
    o.fc7_factory = "IVF8,Flat";
    util_err_t err;
    index_t *ix = index_open(dir, &o, &err);
    CHECK_MSG(ix != NULL, "%s", err.msg);
    if (!ix) return;
    store_item_t it[400];
    memset(it, 0, sizeof it);
    for (int i = 0; i < 400; i++)
        it[i].id = STORE_ID_AUTO, it[i].fc7 = g_x + (size_t)i * D;
    CHECK(index_add(ix, it, 100, &err) == 0);
    index_hit_t h[K];
    CHECK(index_search_fc7(ix, g_q, 1, D, K, h, &err) == -1);
    CHECK_MSG(strstr(err.msg, "not trained") != NULL, "%s", err.msg);
    /* 39 per list (312 for IVF8) is where training starts. */
    CHECK(index_add(ix, it + 100, 300, &err) == 0);
    index_stats_t st;
    CHECK(index_stats(ix, &st, &err) == 0 && st.fc7_trained && st.fc7_vectors == 400);
    CHECK_MSG(index_search_fc7(ix, g_q, 1, D, K, h, &err) == 0, "%s", err.msg);
    index_free(ix);
    fx_rmdir(dir);
}

static void test_items_without_fc7_are_only_in_the_code_index(void) {
    make_data();
    char dir[256];
    fx_tmpdir(dir, sizeof dir, "search");
    index_options_t o;
    index_options_default(&o);
    o.fc7_dim = D;
    o.code_bits = CB;
    util_err_t err;
    index_t *ix = index_open(dir, &o, &err);
    if (!ix) return;
    store_item_t it[2] = {{.id = 1, .fc7 = g_x, .code = g_c}, {.id = 2, .code = g_c + 8}};
    CHECK(index_add(ix, it, 2, &err) == 0);
    index_stats_t st;
    CHECK(index_stats(ix, &st, &err) == 0 && st.fc7_vectors == 1 && st.code_vectors == 2);
    index_hit_t h[2];
    CHECK(index_search_id(ix, INDEX_FC7, 2, 2, h, &err) == -1);
    CHECK_MSG(strstr(err.msg, "no FC7 vector") != NULL, "%s", err.msg);
    index_free(ix);
    fx_rmdir(dir);
}

int main(int argc, char **argv) {
    static const test_case_t tests[] = {
        T(test_flat_and_bflat_equal_brute_force),
        T(test_removed_items_never_return_exact),
        T(test_removed_items_never_return_ivf),
        T(test_approximate_indexes_report_recall_at_10),
        T(test_removal_on_indexes_that_cannot_remove),
        T(test_search_by_id_finds_the_item_itself_first),
        T(test_bad_requests_give_clear_errors),
        T(test_ivf_waits_for_enough_vectors_then_trains),
        T(test_items_without_fc7_are_only_in_the_code_index),
    };
    int rc = test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
    free(g_x);
    free(g_c);
    free(g_q);
    free(g_qc);
    return rc;
}
