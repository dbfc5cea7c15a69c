/* The item store on either backend: round trips, atomic batches, the change
 * log, and clear errors for bad input and bad files. The same cases run on
 * SQLite (test_index_store) and on a real PostgreSQL cluster started by the
 * test (test_index_store_pg: IMGRET_TEST_STORE=postgresql; skipped, exit 77,
 * when the PostgreSQL binaries are not installed). */
#include "index/index.h"
#include "tests/index/index_fixture.h"
#include "tests/pg_fixture.h"
#include "tests/test.h"

#include <math.h>

#define D 8
#define CB 16 /* code bits */

static int on_pg; /* the backend under test: PostgreSQL, else SQLite */

/* Where a new store goes: a file in dir, or a new database of the cluster. */
static void new_store_path(const char *dir, const char *file, char *path, size_t pcap) {
    if (on_pg) {
        if (pgfx_new_db(path, pcap)) {
            fprintf(stderr, "  no PostgreSQL database\n");
            exit(2);
        }
    } else {
        snprintf(path, pcap, "%s/%s", dir, file);
    }
}

static store_t *fresh(char *dir, size_t cap, char *path, size_t pcap) {
    fx_tmpdir(dir, cap, "store");
    new_store_path(dir, "items.db", path, pcap);
    util_err_t err;
    store_t *s = store_open(path, D, CB, &err);
    if (!s) fprintf(stderr, "  store_open: %s\n", err.msg);
    return s;
}

static void test_store_add_get_roundtrip_assigns_ids_and_seqs(void) {
    char dir[256], path[300];
    store_t *s = fresh(dir, sizeof dir, path, sizeof path);
    CHECK(s != NULL);
    if (!s) return;
    float v[2][D];
    uint8_t c[2][CB / 8] = {{0xA5, 0x01}, {0xFF, 0x00}};
    for (int i = 0; i < D; i++)
        v[0][i] = (float)i, v[1][i] = -(float)i;
    store_item_t it[2] = {
        {.id = STORE_ID_AUTO, .uri = "file:///a.jpg", .label = 3, .fc7 = v[0], .code = c[0]},
        {.id = STORE_ID_AUTO, .uri = NULL, .label = -1, .fc7 = v[1], .code = NULL},
    };
    util_err_t err;
    CHECK(store_add(s, it, 2, &err) == 0);
    CHECK(it[0].id == 0 && it[1].id == 1);
    CHECK(it[0].seq == 1 && it[1].seq == 2);
    CHECK(it[0].added_us > 1600000000LL * 1000000);
    CHECK(store_count(s, &err) == 2);
    CHECK(store_last_seq(s, &err) == 2);

    store_record_t r;
    CHECK(store_get(s, 0, &r, &err) == 0);
    CHECK(r.id == 0 && r.label == 3 && !strcmp(r.uri, "file:///a.jpg") && r.seq == 1);
    CHECK(r.fc7 && !memcmp(r.fc7, v[0], sizeof v[0]));
    CHECK(r.code && !memcmp(r.code, c[0], sizeof c[0]));
    store_record_clear(&r);
    CHECK(store_get(s, 1, &r, &err) == 0);
    CHECK(r.code == NULL && r.fc7 != NULL && !strcmp(r.uri, "") && r.label == -1);
    store_record_clear(&r);
    store_record_clear(NULL);

    /* An explicit id moves the automatic ones past it. */
    store_item_t e = {.id = 100, .label = 0};
    CHECK(store_add(s, &e, 1, &err) == 0 && e.id == 100);
    store_item_t a = {.id = STORE_ID_AUTO};
    CHECK(store_add(s, &a, 1, &err) == 0 && a.id == 101);
    store_free(s);

    /* Everything is still there after reopening, shapes taken from the file. */
    s = store_open(path, 0, 0, &err);
    CHECK(s != NULL);
    if (s) {
        CHECK(store_fc7_dim(s) == D && store_code_bits(s) == CB);
        CHECK(store_count(s, &err) == 4);
        CHECK(strlen(store_uuid(s)) == 32);
        store_free(s);
    }
    fx_rmdir(dir);
}

static void test_store_batch_with_duplicate_id_adds_nothing(void) {
    char dir[256], path[300];
    store_t *s = fresh(dir, sizeof dir, path, sizeof path);
    if (!s) return;
    util_err_t err;
    store_item_t one = {.id = 7};
    CHECK(store_add(s, &one, 1, &err) == 0);
    store_item_t batch[3] = {{.id = 8}, {.id = 7}, {.id = 9}};
    CHECK(store_add(s, batch, 3, &err) == -1);
    CHECK_MSG(strstr(err.msg, "id 7 already exists") != NULL, "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_EXISTS);
    CHECK(store_count(s, &err) == 1);
    CHECK(store_last_seq(s, &err) == 1);
    store_record_t r;
    CHECK(store_get(s, 8, &r, &err) == -1);
    CHECK_MSG(strstr(err.msg, "no item with id 8") != NULL, "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_NOT_FOUND);
    store_free(s);
    fx_rmdir(dir);
}

static void test_store_remove_unknown_id_removes_nothing(void) {
    char dir[256], path[300];
    store_t *s = fresh(dir, sizeof dir, path, sizeof path);
    if (!s) return;
    util_err_t err;
    store_item_t it[2] = {{.id = 1}, {.id = 2}};
    CHECK(store_add(s, it, 2, &err) == 0);
    int64_t ids[2] = {1, 42};
    CHECK(store_remove(s, ids, 2, &err) == -1);
    CHECK_MSG(strstr(err.msg, "42") != NULL, "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_NOT_FOUND);
    CHECK(store_count(s, &err) == 2);
    CHECK(store_remove(s, ids, 1, &err) == 0);
    CHECK(store_count(s, &err) == 1);
    CHECK(store_last_seq(s, &err) == 3);
    store_free(s);
    fx_rmdir(dir);
}

static void test_store_rejects_bad_items_naming_them(void) {
    char dir[256], path[300];
    store_t *s = fresh(dir, sizeof dir, path, sizeof path);
    if (!s) return;
    util_err_t err;
    float v[D] = {0};
    v[5] = NAN;
    store_item_t bad_nan[2] = {{.id = 1}, {.id = 2, .fc7 = v}};
    CHECK(store_add(s, bad_nan, 2, &err) == -1);
    CHECK_MSG(strstr(err.msg, "item 1") && strstr(err.msg, "component 5 is NaN"), "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_INVALID);
    v[5] = INFINITY;
    CHECK(store_add(s, &bad_nan[1], 1, &err) == -1);
    CHECK_MSG(strstr(err.msg, "infinite") != NULL, "%s", err.msg);
    store_item_t neg = {.id = -5};
    CHECK(store_add(s, &neg, 1, &err) == -1);
    CHECK_MSG(strstr(err.msg, "negative") != NULL, "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_INVALID);
    char *uri = malloc(STORE_MAX_URI + 2);
    memset(uri, 'a', STORE_MAX_URI + 1);
    uri[STORE_MAX_URI + 1] = 0;
    store_item_t longuri = {.id = 3, .uri = uri};
    CHECK(store_add(s, &longuri, 1, &err) == -1);
    CHECK_MSG(strstr(err.msg, "uri") != NULL, "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_INVALID);
    free(uri);
    CHECK(store_count(s, &err) == 0);
    store_free(s);
    fx_rmdir(dir);
}

static void test_store_shapes_are_fixed_at_creation(void) {
    char dir[256], path[300];
    store_t *s = fresh(dir, sizeof dir, path, sizeof path);
    if (!s) return;
    store_free(s);
    util_err_t err;
    CHECK(store_open(path, D + 1, 0, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "fc7_dim 8, asked for 9") != NULL, "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_PRECONDITION);
    CHECK(store_open(path, 0, 24, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "code_bits") != NULL, "%s", err.msg);
    char p2[300];
    new_store_path(dir, "other.db", p2, sizeof p2);
    CHECK(store_open(p2, 4, 12, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "multiple of 8") != NULL, "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_INVALID);
    CHECK(store_open(p2, -1, 0, &err) == NULL);
    fx_rmdir(dir);
}

/* PostgreSQL's twin of a junk file: tables of the store's names that some
 * other program (or another schema version) wrote. */
static void refuses_databases_that_are_not_stores(void) {
    char url[300], db[64];
    util_err_t err;
    new_store_path(NULL, NULL, url, sizeof url);
    snprintf(db, sizeof db, "%s", strstr(url, ":///") + 4);
    *strchr(db, '?') = 0;
    CHECK(pgfx_exec(db, "CREATE TABLE imgret_items(id bigint PRIMARY KEY, uri text NOT NULL,"
                        " label integer NOT NULL, fc7 bytea, code bytea, added_us bigint NOT NULL,"
                        " seq bigint NOT NULL);"
                        "INSERT INTO imgret_items VALUES(1, '', 0, NULL, NULL, 0, 1)") == 0);
    CHECK(store_open(url, D, 0, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "not an imgret store") != NULL, "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_CORRUPT);
    CHECK(strstr(err.msg, db) != NULL);
    /* Another schema version. */
    new_store_path(NULL, NULL, url, sizeof url);
    store_t *s = store_open(url, D, 0, &err);
    CHECK(s != NULL);
    store_free(s);
    snprintf(db, sizeof db, "%s", strstr(url, ":///") + 4);
    *strchr(db, '?') = 0;
    CHECK(pgfx_exec(db, "UPDATE imgret_meta SET value = 'imgret-store-0' WHERE key = 'format'") ==
          0);
    CHECK(store_open(url, 0, 0, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "imgret-store-0") && strstr(err.msg, "imgret-store-1"), "%s",
              err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_UNSUPPORTED);
}

static void test_store_refuses_files_that_are_not_stores(void) {
    if (on_pg) {
        refuses_databases_that_are_not_stores();
        return;
    }
    char dir[256], path[300];
    fx_tmpdir(dir, sizeof dir, "store");
    snprintf(path, sizeof path, "%s/junk.db", dir);
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 4096; i++)
        fputc(i * 7, f);
    fclose(f);
    util_err_t err;
    CHECK(store_open(path, D, 0, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "junk.db") != NULL, "%s", err.msg);
    CHECK_MSG(util_err_kind(&err) == UTIL_ERR_CORRUPT, "kind %d: %s", (int)util_err_kind(&err),
              err.msg);
    fx_rmdir(dir);
}

static void test_store_change_log_orders_and_trims(void) {
    char dir[256], path[300];
    store_t *s = fresh(dir, sizeof dir, path, sizeof path);
    if (!s) return;
    util_err_t err;
    store_item_t it[3] = {{.id = 1}, {.id = 2}, {.id = 3}};
    CHECK(store_add(s, it, 3, &err) == 0);
    int64_t rm = 2;
    CHECK(store_remove(s, &rm, 1, &err) == 0);
    store_item_t again = {.id = 2};
    CHECK(store_add(s, &again, 1, &err) == 0);
    store_change_t *ch;
    size_t n;
    int64_t oldest;
    CHECK(store_changes(s, 2, &ch, &n, &oldest, &err) == 0);
    CHECK(n == 3 && oldest == 1);
    if (n == 3) {
        CHECK(ch[0].seq == 3 && ch[0].op == STORE_OP_ADD && ch[0].id == 3);
        CHECK(ch[1].seq == 4 && ch[1].op == STORE_OP_REMOVE && ch[1].id == 2);
        CHECK(ch[2].seq == 5 && ch[2].op == STORE_OP_ADD && ch[2].id == 2);
    }
    free(ch);
    CHECK(store_trim_changes(s, 4, &err) == 0);
    CHECK(store_changes(s, 0, &ch, &n, &oldest, &err) == 0);
    CHECK(n == 1 && oldest == 5);
    free(ch);
    CHECK(store_last_seq(s, &err) == 5);
    store_free(s);
    fx_rmdir(dir);
}

typedef struct scan_ctx {
    int64_t sum, n;
} scan_ctx_t;

static int scan_fn(void *ctx, const store_item_t *it, util_err_t *err) {
    scan_ctx_t *c = ctx;
    c->sum += it->id;
    c->n++;
    if (it->id == 99) return util_fail(err, "stop at 99");
    return 0;
}

static void test_store_scan_visits_every_item_once(void) {
    char dir[256], path[300];
    store_t *s = fresh(dir, sizeof dir, path, sizeof path);
    if (!s) return;
    util_err_t err;
    store_item_t it[50];
    memset(it, 0, sizeof it);
    for (int i = 0; i < 50; i++)
        it[i].id = STORE_ID_AUTO;
    CHECK(store_add(s, it, 50, &err) == 0);
    scan_ctx_t c = {0, 0};
    int64_t seq = -1;
    CHECK(store_scan(s, scan_fn, &c, &seq, &err) == 0);
    CHECK(c.n == 50 && c.sum == 49 * 50 / 2 && seq == 50);
    store_item_t stop = {.id = 99};
    CHECK(store_add(s, &stop, 1, &err) == 0);
    c.n = c.sum = 0;
    CHECK(store_scan(s, scan_fn, &c, NULL, &err) == -1);
    CHECK_MSG(!strcmp(err.msg, "stop at 99"), "%s", err.msg);
    store_free(s);
    fx_rmdir(dir);
}

int main(int argc, char **argv) {
    const char *backend = getenv("IMGRET_TEST_STORE");
    on_pg = backend && !strcmp(backend, "postgresql");
    if (on_pg && !pgfx_available()) {
        printf("skipped: the PostgreSQL 15 server binaries are not installed\n");
        return PGFX_SKIP;
    }
    if (on_pg && pgfx_start()) return 1;
    static const test_case_t tests[] = {T(test_store_add_get_roundtrip_assigns_ids_and_seqs),
                                        T(test_store_batch_with_duplicate_id_adds_nothing),
                                        T(test_store_remove_unknown_id_removes_nothing),
                                        T(test_store_rejects_bad_items_naming_them),
                                        T(test_store_shapes_are_fixed_at_creation),
                                        T(test_store_refuses_files_that_are_not_stores),
                                        T(test_store_change_log_orders_and_trims),
                                        T(test_store_scan_visits_every_item_once)};
    return test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
}
