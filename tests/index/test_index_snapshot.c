/* Snapshots: a reopened index answers as the live one did; changes after a
 * snapshot are replayed from the store; corrupt, truncated, stale or foreign
 * snapshots are detected, logged and replaced by a rebuild. */
#include "index/index.h"
#include "index/vectors.h"
#include "tests/index/index_fixture.h"
#include "tests/test.h"

#include <sys/stat.h>

#define D 16
#define CB 32
#define N 600
#define K 5

static float g_x[N * D];
static uint8_t g_c[N * CB / 8];
static char g_log[4096];

static void log_fn(void *ctx, const char *line) {
    (void)ctx;
    size_t n = strlen(g_log);
    snprintf(g_log + n, sizeof g_log - n, "%s\n", line);
}

static void opts(index_options_t *o, const char *ff, const char *cf) {
    index_options_default(o);
    o->fc7_dim = D;
    o->code_bits = CB;
    o->fc7_factory = ff;
    o->code_factory = cf;
    o->log = log_fn;
}

static int add_range(index_t *ix, int from, int to) {
    store_item_t it[N];
    memset(it, 0, sizeof it);
    for (int i = from; i < to; i++) {
        it[i - from].id = i;
        it[i - from].fc7 = g_x + (size_t)i * D;
        it[i - from].code = g_c + (size_t)i * CB / 8;
    }
    util_err_t err;
    int rc = index_add(ix, it, (size_t)(to - from), &err);
    if (rc) fprintf(stderr, "  index_add: %s\n", err.msg);
    return rc;
}

/* Top-K ids of a few fixed queries, both kinds: the index's observable state. */
static void answers(index_t *ix, int64_t *out) {
    util_err_t err;
    index_hit_t h[K];
    for (int q = 0; q < 8; q++) {
        int i = q * 37;
        if (index_search_fc7(ix, g_x + (size_t)i * D, 1, D, K, h, &err)) h[0].id = -2;
        for (int j = 0; j < K; j++)
            out[(2 * q) * K + j] = h[j].id;
        if (index_search_code(ix, g_c + (size_t)i * CB / 8, 1, CB / 8, K, h, &err)) h[0].id = -2;
        for (int j = 0; j < K; j++)
            out[(2 * q + 1) * K + j] = h[j].id;
    }
}

static void setup(void) {
    static int done;
    if (done) return;
    fx_clustered(g_x, N, D, 12, 5);
    fx_codes(g_c, N, CB / 8, 40, 6);
    done = 1;
}

static void test_reopened_snapshot_answers_like_the_live_index(void) {
    setup();
    const char *ff[] = {"Flat", "HNSW16", "IVF4,Flat"};
    const char *cf[] = {"BFlat", "BHash16", "BHash2x16"};
    for (int t = 0; t < 3; t++) {
        char dir[256];
        fx_tmpdir(dir, sizeof dir, "snap");
        index_options_t o;
        opts(&o, ff[t], cf[t]);
        util_err_t err;
        index_t *ix = index_open(dir, &o, &err);
        CHECK_MSG(ix != NULL, "%s", err.msg);
        if (!ix) continue;
        CHECK(add_range(ix, 0, N) == 0);
        int64_t rm[3] = {0, 74, 111}; /* some of them are query items */
        CHECK(index_remove(ix, rm, 3, &err) == 0);
        int64_t live[16 * K], again[16 * K];
        answers(ix, live);
        CHECK_MSG(index_snapshot(ix, &err) == 0, "%s", err.msg);
        index_free(ix);
        g_log[0] = 0;
        ix = index_open(dir, &o, &err);
        CHECK(ix != NULL);
        if (!ix) continue;
        index_stats_t st;
        CHECK(index_stats(ix, &st, &err) == 0);
        CHECK_MSG(strstr(st.opened_from, "FC7: snapshot") &&
                      strstr(st.opened_from, "code: snapshot"),
                  "%s: %s", ff[t], st.opened_from);
        CHECK(st.snapshot_seq == st.seq && st.items == N - 3);
        answers(ix, again);
        for (int j = 0; j < 16 * K; j++)
            CHECK_MSG(live[j] == again[j], "%s/%s: query %d (%s) rank %d: %lld then %lld", ff[t],
                      cf[t], j / K / 2, (j / K) % 2 ? "code" : "FC7", j % K, (long long)live[j],
                      (long long)again[j]);
        CHECK_MSG(g_log[0] == 0, "%s", g_log);
        index_free(ix);
        fx_rmdir(dir);
    }
}

static void test_changes_after_a_snapshot_are_replayed(void) {
    setup();
    /* Insertion order and batching shape an HNSW graph, so the replay check
     * uses indexes whose answers do not depend on them. */
    const char *ff[] = {"Flat", "IVF4,Flat"};
    const char *cf[] = {"BFlat", "BHash16"};
    for (int t = 0; t < 2; t++) {
        char dir[256], ref[256];
        fx_tmpdir(dir, sizeof dir, "snap");
        fx_tmpdir(ref, sizeof ref, "snapref");
        index_options_t o;
        opts(&o, ff[t], cf[t]);
        util_err_t err;
        index_t *ix = index_open(dir, &o, &err), *rx = index_open(ref, &o, &err);
        if (!ix || !rx) {
            CHECK(0);
            index_free(ix);
            index_free(rx);
            continue;
        }
        CHECK(add_range(ix, 0, 300) == 0);
        CHECK(index_snapshot(ix, &err) == 0);
        CHECK(add_range(ix, 300, N) == 0);
        int64_t rm[2] = {0, 400};
        CHECK(index_remove(ix, rm, 2, &err) == 0);
        index_free(ix); /* no snapshot: the last 302 changes live only in the store */

        ix = index_open(dir, &o, &err);
        CHECK(ix != NULL);
        if (!ix) continue;
        index_stats_t st;
        CHECK(index_stats(ix, &st, &err) == 0);
        CHECK_MSG(strstr(st.opened_from, "snapshot seq 300 + log to 602") != NULL, "%s",
                  st.opened_from);
        /* The same content built in one go answers the same. */
        CHECK(add_range(rx, 0, N) == 0);
        CHECK(index_remove(rx, rm, 2, &err) == 0);
        int64_t a[16 * K], b[16 * K];
        answers(ix, a);
        answers(rx, b);
        CHECK_MSG(!memcmp(a, b, sizeof a), "%s replayed index answers differently", ff[t]);
        index_free(ix);
        index_free(rx);
        fx_rmdir(dir);
        fx_rmdir(ref);
    }
}

static void corrupt_and_check(const char *how) {
    setup();
    char dir[256], path[300];
    fx_tmpdir(dir, sizeof dir, "snap");
    index_options_t o;
    opts(&o, "Flat", "BFlat");
    util_err_t err;
    index_t *ix = index_open(dir, &o, &err);
    if (!ix) {
        CHECK(0);
        return;
    }
    CHECK(add_range(ix, 0, N) == 0);
    int64_t live[16 * K], again[16 * K];
    answers(ix, live);
    CHECK(index_snapshot(ix, &err) == 0);
    index_free(ix);

    snprintf(path, sizeof path, "%s/fc7.index", dir);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    if (!strcmp(how, "flip")) {
        FILE *f = fopen(path, "r+b");
        fseek(f, st.st_size / 2, SEEK_SET);
        int c = fgetc(f);
        fseek(f, st.st_size / 2, SEEK_SET);
        fputc(c ^ 0x10, f);
        fclose(f);
    } else if (!strcmp(how, "truncate")) {
        CHECK(truncate(path, st.st_size - 100) == 0);
    } else if (!strcmp(how, "header")) {
        FILE *f = fopen(path, "r+b");
        fseek(f, 20, SEEK_SET); /* inside the sequence number */
        fputc(0x7f, f);
        fclose(f);
    } else { /* garbage */
        FILE *f = fopen(path, "wb");
        fputs("not a snapshot at all", f);
        fclose(f);
    }
    g_log[0] = 0;
    ix = index_open(dir, &o, &err);
    CHECK_MSG(ix != NULL, "%s", err.msg);
    if (!ix) return;
    CHECK_MSG(strstr(g_log, "FC7 snapshot rejected, rebuilding from the store") != NULL,
              "%s: log was '%s'", how, g_log);
    index_stats_t s;
    CHECK(index_stats(ix, &s, &err) == 0);
    CHECK_MSG(strstr(s.opened_from, "FC7: rebuilt (snapshot rejected)") &&
                  strstr(s.opened_from, "code: snapshot"),
              "%s", s.opened_from);
    answers(ix, again);
    CHECK_MSG(!memcmp(live, again, sizeof live), "%s: rebuilt index answers differently", how);
    /* The next snapshot replaces the bad file. */
    CHECK(index_snapshot(ix, &err) == 0);
    index_free(ix);
    g_log[0] = 0;
    ix = index_open(dir, &o, &err);
    CHECK(ix && g_log[0] == 0);
    index_free(ix);
    fx_rmdir(dir);
}

static void test_corrupt_snapshot_is_rebuilt_with_a_log_line(void) {
    corrupt_and_check("flip");
}
static void test_truncated_snapshot_is_rebuilt_with_a_log_line(void) {
    corrupt_and_check("truncate");
}
static void test_damaged_snapshot_header_is_rebuilt(void) {
    corrupt_and_check("header");
}
static void test_garbage_snapshot_is_rebuilt(void) {
    corrupt_and_check("garbage");
}

static int copy_file(const char *from, const char *to) {
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    int c, ok = a && b;
    while (ok && (c = fgetc(a)) != EOF)
        fputc(c, b);
    if (a) fclose(a);
    if (b) fclose(b);
    return ok ? 0 : -1;
}

static void test_stale_and_foreign_snapshots_are_rebuilt(void) {
    setup();
    char dir[256], other[256], p[300], q[300];
    fx_tmpdir(dir, sizeof dir, "snap");
    fx_tmpdir(other, sizeof other, "snapother");
    index_options_t o;
    opts(&o, "Flat", "BFlat");
    util_err_t err;
    index_t *ix = index_open(dir, &o, &err);
    if (!ix) return;
    CHECK(add_range(ix, 0, 100) == 0);
    CHECK(index_snapshot(ix, &err) == 0);
    snprintf(p, sizeof p, "%s/fc7.index", dir);
    snprintf(q, sizeof q, "%s/old.index", dir);
    CHECK(copy_file(p, q) == 0); /* the snapshot at seq 100 */
    CHECK(add_range(ix, 100, 200) == 0);
    CHECK(index_snapshot(ix, &err) == 0); /* trims the log up to 200 */
    index_free(ix);

    /* An old snapshot whose changes were trimmed from the log is stale. */
    CHECK(rename(q, p) == 0);
    g_log[0] = 0;
    ix = index_open(dir, &o, &err);
    CHECK(ix != NULL);
    CHECK_MSG(strstr(g_log, "FC7 snapshot (seq 100) is stale") != NULL, "%s", g_log);
    index_stats_t st;
    if (ix) {
        CHECK(index_stats(ix, &st, &err) == 0 && st.fc7_vectors == 200);
        index_free(ix);
    }

    /* A snapshot from another store is refused whatever its sequence number. */
    index_t *ox = index_open(other, &o, &err);
    if (ox) {
        CHECK(add_range(ox, 0, 300) == 0);
        index_free(ox);
    }
    snprintf(q, sizeof q, "%s/code.index", dir);
    char oq[300];
    snprintf(oq, sizeof oq, "%s/code.index", other);
    CHECK(copy_file(q, oq) == 0);
    g_log[0] = 0;
    ox = index_open(other, &o, &err);
    CHECK(ox != NULL);
    CHECK_MSG(strstr(g_log, "code snapshot rejected") && strstr(g_log, "another store"), "%s",
              g_log);
    if (ox) {
        CHECK(index_stats(ox, &st, &err) == 0 && st.code_vectors == 300);
        index_free(ox);
    }

    /* Asking for another factory rebuilds rather than loading the old one. */
    opts(&o, "HNSW16", "BFlat");
    g_log[0] = 0;
    ix = index_open(dir, &o, &err);
    CHECK(ix != NULL);
    CHECK_MSG(strstr(g_log, "FC7 snapshot rejected") && strstr(g_log, "wanted HNSW16"), "%s",
              g_log);
    if (ix) {
        CHECK(index_stats(ix, &st, &err) == 0 && st.fc7_vectors == 200);
        CHECK(!strcmp(st.fc7_factory, "HNSW16"));
        index_free(ix);
    }
    fx_rmdir(dir);
    fx_rmdir(other);
}

static void test_automatic_snapshots_follow_snapshot_every(void) {
    setup();
    char dir[256];
    fx_tmpdir(dir, sizeof dir, "snap");
    index_options_t o;
    opts(&o, "Flat", "BFlat");
    o.snapshot_every = 50;
    util_err_t err;
    index_t *ix = index_open(dir, &o, &err);
    if (!ix) return;
    index_stats_t st;
    CHECK(add_range(ix, 0, 40) == 0);
    CHECK(index_stats(ix, &st, &err) == 0 && st.snapshot_seq == -1);
    CHECK(add_range(ix, 40, 60) == 0);
    CHECK(index_stats(ix, &st, &err) == 0 && st.snapshot_seq == 60);
    CHECK(add_range(ix, 60, 70) == 0);
    index_free(ix);
    ix = index_open(dir, &o, &err);
    CHECK(ix && index_stats(ix, &st, &err) == 0);
    CHECK_MSG(strstr(st.opened_from, "snapshot seq 60 + log to 70") != NULL, "%s", st.opened_from);
    index_free(ix);
    fx_rmdir(dir);
}

/* A reopen that names no factory keeps the one the index was built with
 * (from the store, not from the snapshot file), a named one replaces it, and a
 * factory that fails to open is not remembered. */
static void test_reopen_without_factories_keeps_the_built_ones(void) {
    setup();
    char dir[256];
    fx_tmpdir(dir, sizeof dir, "keep");
    index_options_t o;
    opts(&o, "HNSW16", "BHash16");
    util_err_t err;
    index_t *ix = index_open(dir, &o, &err);
    CHECK_MSG(ix != NULL, "%s", err.msg);
    if (!ix) return;
    CHECK(add_range(ix, 0, N) == 0);
    CHECK_MSG(index_snapshot(ix, &err) == 0, "%s", err.msg);
    index_free(ix);

    index_stats_t st;
    opts(&o, NULL, NULL);
    g_log[0] = 0;
    ix = index_open(dir, &o, &err);
    CHECK_MSG(ix != NULL, "%s", err.msg);
    if (!ix) return;
    CHECK(index_stats(ix, &st, &err) == 0);
    CHECK_MSG(!strcmp(st.fc7_factory, "HNSW16") && !strcmp(st.code_factory, "BHash16"), "%s / %s",
              st.fc7_factory, st.code_factory);
    CHECK_MSG(strstr(st.opened_from, "FC7: snapshot") && strstr(st.opened_from, "code: snapshot"),
              "%s", st.opened_from);
    CHECK_MSG(g_log[0] == 0, "%s", g_log);
    index_free(ix);

    opts(&o, "NoSuchIndex", NULL);
    CHECK(index_open(dir, &o, &err) == NULL);
    opts(&o, "Flat", NULL);
    ix = index_open(dir, &o, &err);
    CHECK_MSG(ix != NULL, "%s", err.msg);
    if (!ix) return;
    CHECK(index_stats(ix, &st, &err) == 0);
    CHECK(!strcmp(st.fc7_factory, "Flat") && strstr(st.opened_from, "FC7: rebuilt"));
    CHECK(index_snapshot(ix, &err) == 0);
    index_free(ix);
    opts(&o, NULL, NULL);
    ix = index_open(dir, &o, &err);
    CHECK_MSG(ix != NULL, "%s", err.msg);
    if (!ix) return;
    CHECK(index_stats(ix, &st, &err) == 0);
    CHECK_MSG(!strcmp(st.fc7_factory, "Flat") && !strcmp(st.code_factory, "BHash16") &&
                  strstr(st.opened_from, "FC7: snapshot"),
              "%s / %s: %s", st.fc7_factory, st.code_factory, st.opened_from);
    index_free(ix);
    fx_rmdir(dir);
}

/* vecindex_load's refusals carry their kinds: a missing file is not found,
 * a damaged one corrupt, one of another store a failed precondition. */
static void test_snapshot_load_errors_have_kinds(void) {
    char dir[256], path[300];
    fx_tmpdir(dir, sizeof dir, "snapkind");
    snprintf(path, sizeof path, "%s/fc7.index", dir);
    vec_params_t p = {16, 64, 2};
    util_err_t err = {{0}};
    int64_t seq = 0;
    vecindex_t *v = vecindex_create(INDEX_FC7, 4, "Flat", &p, &err);
    CHECK_MSG(v != NULL, "%s", err.msg);
    if (!v) return;
    CHECK_MSG(vecindex_save(v, path, "uuid-a", 7, &err) == 0, "%s", err.msg);
    vecindex_free(v);
    v = vecindex_load(path, INDEX_FC7, 4, "Flat", &p, "uuid-a", &seq, &err);
    CHECK_MSG(v != NULL && seq == 7, "%s", err.msg);
    vecindex_free(v);
    CHECK(vecindex_load(path, INDEX_FC7, 4, "Flat", &p, "uuid-b", &seq, &err) == NULL);
    CHECK_MSG(util_err_kind(&err) == UTIL_ERR_PRECONDITION, "%s", err.msg);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (f) {
        fseek(f, 2, SEEK_SET); /* inside the magic */
        fputc('X', f);
        fclose(f);
    }
    CHECK(vecindex_load(path, INDEX_FC7, 4, "Flat", &p, "uuid-a", &seq, &err) == NULL);
    CHECK_MSG(util_err_kind(&err) == UTIL_ERR_CORRUPT, "%s", err.msg);
    remove(path);
    CHECK(vecindex_load(path, INDEX_FC7, 4, "Flat", &p, "uuid-a", &seq, &err) == NULL);
    CHECK_MSG(util_err_kind(&err) == UTIL_ERR_NOT_FOUND, "%s", err.msg);
    fx_rmdir(dir);
}

TEST_MAIN(T(test_snapshot_load_errors_have_kinds),
          T(test_reopened_snapshot_answers_like_the_live_index),
          T(test_reopen_without_factories_keeps_the_built_ones),
          T(test_changes_after_a_snapshot_are_replayed),
          T(test_corrupt_snapshot_is_rebuilt_with_a_log_line),
          T(test_truncated_snapshot_is_rebuilt_with_a_log_line),
          T(test_damaged_snapshot_header_is_rebuilt), T(test_garbage_snapshot_is_rebuilt),
          T(test_stale_and_foreign_snapshots_are_rebuilt),
          T(test_automatic_snapshots_follow_snapshot_every))
