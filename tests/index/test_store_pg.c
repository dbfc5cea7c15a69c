/* The PostgreSQL store against a real cluster (tests/pg_fixture.h) in what
 * only a shared database has: writers in several processes, a writer or the
 * database killed in the middle of an Add, the database down and back, and
 * copies between the backends (the store API and `imgret index copy`).
 * Skipped (exit 77) when the PostgreSQL binaries are not installed. */
#include "features/features.h"
#include "index/index.h"
#include "tests/cli/cli_run.h"
#include "tests/index/index_fixture.h"
#include "tests/pg_fixture.h"
#include "tests/test.h"

#include <inttypes.h>
#include <signal.h>
#include <time.h>

#define D 8
#define CB 16

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static store_t *open_new(char *url, size_t cap) {
    util_err_t err;
    if (pgfx_new_db(url, cap)) return NULL;
    store_t *s = store_open(url, D, CB, &err);
    if (!s) fprintf(stderr, "  store_open: %s\n", err.msg);
    return s;
}

static void item_vec(int64_t id, float *v, uint8_t *c) {
    for (int j = 0; j < D; j++)
        v[j] = (float)(id * 10 + j) * 0.5f;
    c[0] = (uint8_t)id;
    c[1] = (uint8_t)(id >> 8);
}

/* Each child adds `rounds` batches of 1-3 items and writes, for each
 * acknowledged batch, its first seq and size to fd. */
static void add_storm(const char *url, int rounds, int fd, int seed) {
    util_err_t err;
    store_t *s = store_open(url, 0, 0, &err);
    if (!s) _exit(3);
    for (int r = 0; r < rounds; r++) {
        store_item_t it[3];
        memset(it, 0, sizeof it);
        size_t n = (size_t)(1 + (r + seed) % 3);
        for (size_t i = 0; i < n; i++)
            it[i].id = STORE_ID_AUTO;
        if (store_add(s, it, n, &err)) _exit(4);
        int64_t rec[2] = {it[0].seq, (int64_t)n};
        for (size_t i = 1; i < n; i++)
            if (it[i].seq != it[0].seq + (int64_t)i) _exit(5);
        if (write(fd, rec, sizeof rec) != (ssize_t)sizeof rec) _exit(6);
    }
    store_free(s);
    _exit(0);
}

static void test_concurrent_adds_from_two_processes_get_dense_ordered_seqs(void) {
    char url[600];
    store_t *s = open_new(url, sizeof url);
    CHECK(s != NULL);
    if (!s) return;
    int fds[2][2];
    pid_t pid[2];
    const int rounds = 150;
    for (int c = 0; c < 2; c++) {
        if (pipe(fds[c])) return;
        fflush(NULL);
        pid[c] = fork();
        if (pid[c] == 0) {
            pgfx.started = 0; /* the cluster is the parent's to stop */
            close(fds[c][0]);
            add_storm(url, rounds, fds[c][1], c);
        }
        close(fds[c][1]);
    }
    /* Meanwhile a reader: every state it sees is a gap-free prefix of the
     * log (seq N + 1 is never visible without N: commit order is seq order). */
    util_err_t err;
    int prefixes_ok = 1, reads = 0;
    for (int alive = 2; alive > 0;) {
        store_change_t *ch;
        size_t n;
        int64_t oldest;
        if (store_changes(s, 0, &ch, &n, &oldest, &err) == 0) {
            for (size_t i = 0; i < n; i++)
                if (ch[i].seq != (int64_t)i + 1) prefixes_ok = 0;
            free(ch);
            reads++;
        }
        alive = 0;
        for (int c = 0; c < 2; c++)
            if (pid[c] > 0 && waitpid(pid[c], NULL, WNOHANG) == 0) alive++;
    }
    CHECK(prefixes_ok && reads > 0);
    /* The children's seqs: each one's increasing, together exactly 1..N. */
    int64_t total = 0;
    char *seen = calloc(2000, 1);
    int each_increasing = 1, dup = 0;
    for (int c = 0; c < 2; c++) {
        int64_t rec[2], prev = 0;
        while (read(fds[c][0], rec, sizeof rec) == (ssize_t)sizeof rec) {
            if (rec[0] <= prev) each_increasing = 0;
            prev = rec[0];
            for (int64_t q = rec[0]; q < rec[0] + rec[1]; q++) {
                if (q < 1 || q >= 2000 || seen[q])
                    dup = 1;
                else
                    seen[q] = 1;
            }
            total += rec[1];
        }
        close(fds[c][0]);
    }
    CHECK(each_increasing && !dup);
    int64_t expected = 0;
    for (int c = 0; c < 2; c++)
        for (int r = 0; r < rounds; r++)
            expected += 1 + (r + c) % 3;
    CHECK_MSG(total == expected, "total %" PRId64 ", expected %" PRId64, total, expected);
    CHECK(store_last_seq(s, &err) == total);
    CHECK(store_count(s, &err) == total);
    for (int64_t q = 1; q <= total && q < 2000; q++)
        if (!seen[q]) {
            CHECK_MSG(0, "seq %" PRId64 " was handed to nobody", q);
            break;
        }
    free(seen);
    store_free(s);
}

/* The number of transactions of imgret clients of `db` that have written
 * (hold a transaction id) and not finished. */
static int writers_in_transaction(const char *url) {
    PGconn *c = PQconnectdb(url);
    int n = -1;
    if (PQstatus(c) == CONNECTION_OK) {
        PGresult *r = PQexec(c, "SELECT count(*) FROM pg_stat_activity WHERE datname ="
                                " current_database() AND application_name = 'imgret'"
                                " AND backend_xid IS NOT NULL");
        if (PQresultStatus(r) == PGRES_TUPLES_OK) n = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
    }
    PQfinish(c);
    return n;
}

/* A child that adds one item (acknowledged: a byte on fd), then a batch of
 * `big` items in one transaction, which is killed halfway. Exit 7 when that
 * Add failed as unavailable. */
static pid_t start_big_add(const char *url, int big, int fd) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid) return pid;
    pgfx.started = 0;
    util_err_t err;
    store_t *s = store_open(url, 0, 0, &err);
    if (!s) _exit(3);
    float v[D];
    uint8_t c[CB / 8];
    item_vec(1, v, c);
    store_item_t one = {.id = 1, .uri = "one", .fc7 = v, .code = c};
    if (store_add(s, &one, 1, &err)) _exit(4);
    if (write(fd, "1", 1) != 1) _exit(5);
    store_item_t *items = calloc((size_t)big, sizeof *items);
    for (int i = 0; i < big; i++)
        items[i] = (store_item_t){.id = 10 + i, .fc7 = v, .code = c};
    int rc = store_add(s, items, (size_t)big, &err);
    _exit(rc == 0 ? 0 : util_err_kind(&err) == UTIL_ERR_UNAVAILABLE ? 7 : 8);
}

/* Waits (up to 30 s) until the child's big transaction has written. */
static int wait_mid_transaction(const char *url, int fd) {
    char b;
    if (read(fd, &b, 1) != 1) return -1;
    for (int i = 0; i < 3000; i++) {
        if (writers_in_transaction(url) > 0) return 0;
        sleep_ms(10);
    }
    return -1;
}

static void check_only_first_item(store_t *s) {
    util_err_t err;
    CHECK_MSG(store_count(s, &err) == 1, "count %" PRId64 ": %s", store_count(s, &err), err.msg);
    CHECK(store_last_seq(s, &err) == 1);
    store_change_t *ch;
    size_t n;
    int64_t oldest;
    CHECK(store_changes(s, 0, &ch, &n, &oldest, &err) == 0 && n == 1);
    free(ch);
    /* No gap after the lost transaction: the next Add takes seq 2. */
    store_item_t next = {.id = STORE_ID_AUTO};
    CHECK(store_add(s, &next, 1, &err) == 0 && next.seq == 2);
}

static void test_writer_killed_mid_add_leaves_none_of_it(void) {
    char url[600];
    store_t *s = open_new(url, sizeof url);
    if (!s) return;
    int fd[2];
    if (pipe(fd)) return;
    pid_t pid = start_big_add(url, 200000, fd[1]);
    close(fd[1]);
    CHECK(wait_mid_transaction(url, fd[0]) == 0);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st));
    close(fd[0]);
    /* The server notices the dead client and rolls its transaction back. */
    for (int i = 0; i < 500 && writers_in_transaction(url) > 0; i++)
        sleep_ms(10);
    check_only_first_item(s);
    store_free(s);
}

static void test_database_killed_mid_add_then_down_then_back(void) {
    char url[600];
    store_t *s = open_new(url, sizeof url);
    if (!s) return;
    int fd[2];
    if (pipe(fd)) return;
    pid_t pid = start_big_add(url, 200000, fd[1]);
    close(fd[1]);
    CHECK(wait_mid_transaction(url, fd[0]) == 0);
    pgfx_stop_server(); /* immediate: like a crash */
    int st;
    waitpid(pid, &st, 0);
    CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 7, "the writer's Add: exit %d",
              WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    close(fd[0]);

    /* Down: every call fails as unavailable, none crashes. */
    util_err_t err;
    store_item_t it = {.id = STORE_ID_AUTO};
    CHECK(store_add(s, &it, 1, &err) == -1);
    CHECK_MSG(util_err_kind(&err) == UTIL_ERR_UNAVAILABLE, "kind %d: %s", (int)util_err_kind(&err),
              err.msg);
    CHECK(store_count(s, &err) == -1 && util_err_kind(&err) == UTIL_ERR_UNAVAILABLE);
    store_record_t rec;
    CHECK(store_get(s, 1, &rec, &err) == -1 && util_err_kind(&err) == UTIL_ERR_UNAVAILABLE);
    CHECK(store_open(url, 0, 0, &err) == NULL);
    CHECK_MSG(util_err_kind(&err) == UTIL_ERR_UNAVAILABLE && strstr(err.msg, "cannot connect"),
              "%s", err.msg);

    /* Back (crash recovery): the acknowledged item is there, none of the
     * killed Add, and the same handle works again by itself. */
    CHECK(pgfx_start_server() == 0);
    check_only_first_item(s);
    CHECK(store_get(s, 1, &rec, &err) == 0 && !strcmp(rec.uri, "one"));
    store_record_clear(&rec);
    store_free(s);
}

static int fill_sqlite(store_t *s, int n) {
    util_err_t err;
    store_item_t *it = calloc((size_t)n, sizeof *it);
    float *v = malloc(sizeof(float) * D * (size_t)n);
    uint8_t *c = malloc((size_t)n * CB / 8);
    char(*uri)[32] = malloc(32 * (size_t)n);
    for (int i = 0; i < n; i++) {
        item_vec(i * 3, v + i * D, c + i * CB / 8);
        snprintf(uri[i], sizeof uri[i], "img/%d.jpg", i);
        it[i] = (store_item_t){.id = i * 3,
                               .uri = uri[i],
                               .label = i % 5,
                               .fc7 = i % 7 ? v + i * D : NULL,
                               .code = i % 4 ? c + i * CB / 8 : NULL};
    }
    int rc = store_add(s, it, (size_t)n, &err);
    int64_t rm[2] = {3, 30};
    if (!rc) rc = store_remove(s, rm, 2, &err);
    free(it);
    free(v);
    free(c);
    free(uri);
    return rc;
}

static int same_items(store_t *a, store_t *b, int n) {
    util_err_t err;
    int same = store_count(a, &err) == store_count(b, &err);
    for (int i = 0; i < n && same; i++) {
        store_record_t x, y;
        int ga = store_get(a, i * 3, &x, &err), gb = store_get(b, i * 3, &y, &err);
        same = ga == gb;
        if (!ga && !gb) {
            size_t fb = sizeof(float) * D;
            same = x.label == y.label && !strcmp(x.uri, y.uri) && !x.fc7 == !y.fc7 &&
                   !x.code == !y.code && (!x.fc7 || !memcmp(x.fc7, y.fc7, fb)) &&
                   (!x.code || !memcmp(x.code, y.code, CB / 8));
        }
        store_record_clear(&x);
        store_record_clear(&y);
    }
    return same;
}

static void test_copy_sqlite_to_postgresql_and_back_round_trips(void) {
    char dir[256], p1[300], p2[300], url[600];
    fx_tmpdir(dir, sizeof dir, "copy");
    snprintf(p1, sizeof p1, "%s/a.db", dir);
    snprintf(p2, sizeof p2, "%s/b.db", dir);
    util_err_t err;
    store_t *a = store_open(p1, D, CB, &err), *pg = open_new(url, sizeof url), *b = NULL;
    CHECK(a && pg);
    const int n = 1200;
    CHECK(fill_sqlite(a, n) == 0);
    CHECK(store_setting_set(a, "fc7_factory", "HNSW16", &err) == 0);
    int64_t copied = 0;
    CHECK_MSG(store_copy(a, pg, &copied, &err) == 0, "%s", err.msg);
    CHECK(copied == n - 2);
    CHECK(same_items(a, pg, n));
    char f[64];
    CHECK(store_setting_get(pg, "fc7_factory", f, sizeof f, &err) == 1 && !strcmp(f, "HNSW16"));
    CHECK(store_last_seq(pg, &err) == n - 2); /* the target's own log */
    /* A target that holds items is refused, nothing written. */
    CHECK(store_copy(a, pg, &copied, &err) == -1 && util_err_kind(&err) == UTIL_ERR_EXISTS);
    CHECK(store_count(pg, &err) == n - 2);
    b = store_open(p2, D, CB, &err);
    CHECK(b && store_copy(pg, b, &copied, &err) == 0 && copied == n - 2);
    CHECK(same_items(a, b, n));
    store_free(a);
    store_free(b);
    store_free(pg);
    fx_rmdir(dir);
}

/* ---- replicas: indexes following one database ---- */

/* A writer process: opens an index on url and adds items first..first+n-1
 * (one Add each); exits 0 when all were acknowledged. */
static pid_t start_index_writer(const char *url, int64_t first, int n) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid) return pid;
    pgfx.started = 0;
    util_err_t err;
    index_t *ix = index_open(url, NULL, &err);
    if (!ix) _exit(3);
    for (int i = 0; i < n; i++) {
        float v[D];
        uint8_t c[CB / 8];
        item_vec(first + i, v, c);
        store_item_t it = {.id = first + i, .fc7 = v};
        if (index_add(ix, &it, 1, &err)) _exit(4);
    }
    index_free(ix);
    _exit(0);
}

/* Follows until the index has applied `seq` or 10 s pass; the wait in ms. */
static int64_t follow_until(index_t *ix, int64_t seq) {
    util_err_t err;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 100 && index_applied_seq(ix) < seq; i++) {
        if (store_wait_change(index_store(ix), index_applied_seq(ix), 100, &err) < 0) continue;
        index_follow(ix, &err);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
}

static int finds_itself(index_t *ix, int64_t id) {
    float v[D];
    uint8_t c[CB / 8];
    item_vec(id, v, c);
    index_hit_t hit;
    util_err_t err;
    return index_search_fc7(ix, v, 1, D, 1, &hit, &err) == 0 && hit.id == id && hit.distance == 0;
}

static void test_index_replicas_follow_the_log(void) {
    char url[600];
    if (pgfx_new_db(url, sizeof url)) return;
    util_err_t err;
    index_options_t o;
    index_options_default(&o);
    o.fc7_dim = D;
    index_t *b = index_open(url, &o, &err);
    CHECK_MSG(b != NULL, "%s", b ? "" : err.msg);
    if (!b) return;
    CHECK(index_applied_seq(b) == 0);
    /* Another process adds; this replica is woken (NOTIFY) and applies it. */
    int st;
    pid_t w = start_index_writer(url, 100, 20);
    waitpid(w, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    follow_until(b, 20);
    CHECK_MSG(index_applied_seq(b) == 20, "applied %" PRId64, index_applied_seq(b));
    CHECK(finds_itself(b, 100) && finds_itself(b, 119));
    index_stats_t s;
    CHECK(index_stats(b, &s, &err) == 0 && s.seq == 20 && s.applied_seq == 20);

    /* The database ends the listening connection: the replica still
     * converges, by polling, and listens again. */
    char db[64];
    snprintf(db, sizeof db, "%s", strstr(url, ":///") + 4);
    *strchr(db, '?') = 0;
    CHECK(pgfx_exec(db, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
                        " application_name = 'imgret-listen'") == 0);
    w = start_index_writer(url, 200, 5);
    waitpid(w, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    follow_until(b, 25);
    CHECK(index_applied_seq(b) == 25 && finds_itself(b, 204));

    /* A replica that was down (closed, items added meanwhile) catches up at
     * its next open; its own Adds are seen by the other at once. */
    index_free(b);
    w = start_index_writer(url, 300, 5);
    waitpid(w, &st, 0);
    b = index_open(url, &o, &err);
    CHECK(b && index_applied_seq(b) == 30 && finds_itself(b, 304));
    index_t *a = index_open(url, &o, &err);
    float v[D];
    uint8_t c[CB / 8];
    item_vec(400, v, c);
    store_item_t it = {.id = 400, .fc7 = v};
    CHECK(a && index_add(a, &it, 1, &err) == 0 && it.seq == 31);
    int64_t waited = follow_until(b, it.seq);
    CHECK(index_applied_seq(b) == 31 && finds_itself(b, 400));
    CHECK_MSG(waited < 900, "woken after %" PRId64 " ms: the notification did not wake it", waited);
    index_free(b);

    /* With its own follower thread (opt.follow): read your writes through
     * index_wait_applied, and a seq nobody wrote runs into the deadline. */
    o.follow = 1;
    b = index_open(url, &o, &err);
    CHECK(b != NULL);
    item_vec(401, v, c);
    it = (store_item_t){.id = 401, .fc7 = v};
    CHECK(index_add(a, &it, 1, &err) == 0 && it.seq == 32);
    CHECK_MSG(index_wait_applied(b, it.seq, 5000, &err) == 0, "%s", err.msg);
    CHECK(finds_itself(b, 401));
    CHECK(index_wait_applied(b, 1000, 300, &err) == -1);
    CHECK_MSG(util_err_kind(&err) == UTIL_ERR_DEADLINE && strstr(err.msg, "seq 1000"), "%s",
              err.msg);
    index_free(a);
    index_free(b);
}

/* ---- imgret index on PostgreSQL ---- */

static void write_features(const char *path, size_t n, int64_t first_id) {
    float *rows = malloc(sizeof(float) * n * D);
    int64_t *ids = malloc(sizeof(int64_t) * n);
    int32_t *labels = malloc(sizeof(int32_t) * n);
    char **uris = malloc(sizeof(char *) * n);
    uint8_t c[CB / 8];
    for (size_t i = 0; i < n; i++) {
        ids[i] = first_id + (int64_t)i;
        labels[i] = (int32_t)(i % 3);
        uris[i] = malloc(64);
        snprintf(uris[i], 64, "img/%lld.jpg", (long long)ids[i]);
        item_vec(ids[i] * 7, rows + i * D, c);
    }
    util_err_t err;
    feat_writer_t *w = feat_writer_open(path, D, NULL, n, &err);
    if (!w || feat_writer_append(w, n, rows, ids, labels, (const char *const *)uris, &err) ||
        feat_writer_close(w, &err)) {
        fprintf(stderr, "cannot write %s: %s\n", path, err.msg);
        exit(2);
    }
    for (size_t i = 0; i < n; i++)
        free(uris[i]);
    free(uris);
    free(labels);
    free(ids);
    free(rows);
}

static void run_index(run_result_t *r, ...) {
    va_list ap;
    va_start(ap, r);
    run_imgret_v(r, "index", ap);
    va_end(ap);
}

static void test_index_commands_and_copy_on_postgresql(void) {
    char url[600], feats[600], back[600], snaps[600];
    if (pgfx_new_db(url, sizeof url)) return;
    path_in(feats, sizeof feats, "feats.f");
    path_in(back, sizeof back, "back");
    path_in(snaps, sizeof snaps, "snaps");
    write_features(feats, 30, 100);
    run_result_t r;
    run_index(&r, "build", "--store", url, "--features", feats, NULL);
    CHECK_MSG(r.status == 0 && strstr(r.out, "added 30 items"), "exit %d: %s%s", r.status, r.out,
              r.err);
    run_index(&r, "search", "--store", url, "--id", "107", "--k", "2", NULL);
    CHECK_MSG(r.status == 0 && strstr(r.out, " 1  id 107  distance 0"), "%s%s", r.out, r.err);
    run_index(&r, "remove", "--store", url, "--dir", snaps, "101", "102", NULL);
    CHECK_MSG(r.status == 0 && strstr(r.out, "removed 2 items"), "%s%s", r.out, r.err);
    run_index(&r, "stats", "--store", url, NULL);
    CHECK_MSG(r.status == 0 && strstr(r.out, "items 28, seq 32"), "%s%s", r.out, r.err);
    run_index(&r, "copy", "--from", url, "--to", back, NULL);
    CHECK_MSG(r.status == 0 && strstr(r.out, "copied 28 items"), "%s%s", r.out, r.err);
    run_index(&r, "search", "--dir", back, "--id", "129", "--k", "1", NULL);
    CHECK_MSG(r.status == 0 && strstr(r.out, " 1  id 129  distance 0  label 2  img/129.jpg"),
              "%s%s", r.out, r.err);
    run_index(&r, "copy", "--from", back, "--to", url, NULL);
    CHECK_MSG(r.status == 1 && strstr(r.err, "already holds 28 items"), "%s%s", r.out, r.err);
    /* Bad input names what was wrong. */
    char bad[700];
    snprintf(bad, sizeof bad, "postgresql:///nosuchdb?host=%s&port=%d&user=postgres", pgfx.dir,
             pgfx.port);
    run_index(&r, "stats", "--store", bad, NULL);
    CHECK_MSG(r.status == 1 && strstr(r.err, "nosuchdb") && strstr(r.err, "does not exist"), "%s",
              r.err);
    run_index(&r, "stats", "--store", "postgresql://u:secret@127.0.0.1:1/db", NULL);
    CHECK_MSG(r.status == 1 && strstr(r.err, "cannot connect") && !strstr(r.err, "secret") &&
                  strstr(r.err, "u:***@"),
              "%s", r.err);
    run_index(&r, "stats", NULL);
    CHECK_MSG(r.status == 2 && strstr(r.err, "give --dir DIR or --store URL"), "%s", r.err);
}

int main(int argc, char **argv) {
    if (!pgfx_available()) {
        printf("skipped: the PostgreSQL 15 server binaries are not installed\n");
        return PGFX_SKIP;
    }
    if (pgfx_start() || make_tmp("store-pg")) return 1;
    static const test_case_t tests[] = {
        T(test_concurrent_adds_from_two_processes_get_dense_ordered_seqs),
        T(test_writer_killed_mid_add_leaves_none_of_it),
        T(test_database_killed_mid_add_then_down_then_back),
        T(test_copy_sqlite_to_postgresql_and_back_round_trips),
        T(test_index_replicas_follow_the_log),
        T(test_index_commands_and_copy_on_postgresql),
    };
    int rc = test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
    rm_tree(tmp);
    return rc;
}
