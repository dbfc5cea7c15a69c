/* The item store's SQLite backend: one file in WAL mode.
 *
 * Tables: meta (key/value: format, shapes, uuid, counters), items (one row per
 * item; FC7 and code as raw host-order blobs) and changes (the log the index
 * replays after loading a snapshot: one row per add or remove, keyed by
 * sequence number). Every write is one transaction that also bumps the
 * sequence counter in meta, so sequence numbers are dense and strictly
 * increasing, and an item and its change-log row appear together or not at
 * all. */
#include "index/store_internal.h"

#include <sqlite3.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORE_FORMAT "imgret-store-1"

enum { CHANGE_ADD = STORE_OP_ADD, CHANGE_REMOVE = STORE_OP_REMOVE };

typedef struct sq {
    store_t b;
    sqlite3 *db;
    pthread_mutex_t lock; /* one connection: statements are not shared across threads */
    sqlite3_stmt *insert_item, *insert_change, *delete_item, *get_item, *set_meta;
} sq_t;

/* The kind of SQLite's last error on the connection. */
static util_err_kind_t db_kind(sq_t *s) {
    switch (sqlite3_errcode(s->db) & 0xff) { /* the primary code */
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return UTIL_ERR_CORRUPT;
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
        return UTIL_ERR_IO;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return UTIL_ERR_UNAVAILABLE;
    case SQLITE_NOMEM:
        return UTIL_ERR_LIMIT;
    default:
        return UTIL_ERR_INTERNAL;
    }
}

static int db_fail(sq_t *s, util_err_t *err, const char *what) {
    return util_fail_kind(err, db_kind(s), "%s: %s: %s", s->b.name, what, sqlite3_errmsg(s->db));
}

static int exec(sq_t *s, const char *sql, util_err_t *err) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        util_fail_kind(err, db_kind(s), "%s: %s", s->b.name, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Reads meta[key] as text into buf; returns 1 found, 0 missing, -1 error. */
static int meta_get(sq_t *s, const char *key, char *buf, size_t cap, util_err_t *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL) !=
        SQLITE_OK)
        return db_fail(s, err, "reading meta");
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), found = 0;
    if (rc == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(st, 0);
        snprintf(buf, cap, "%s", v ? (const char *)v : "");
        found = 1;
    } else if (rc != SQLITE_DONE) {
        found = db_fail(s, err, "reading meta");
    }
    sqlite3_finalize(st);
    return found;
}

static int meta_set(sq_t *s, const char *key, const char *value, util_err_t *err) {
    sqlite3_reset(s->set_meta);
    sqlite3_bind_text(s->set_meta, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s->set_meta, 2, value, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(s->set_meta) != SQLITE_DONE) return db_fail(s, err, "writing meta");
    return 0;
}

static int meta_get_i64(sq_t *s, const char *key, int64_t *out, util_err_t *err) {
    char buf[64];
    int f = meta_get(s, key, buf, sizeof buf, err);
    if (f < 0) return -1;
    if (!f)
        return util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: meta key '%s' is missing (damaged store)",
                              s->b.name, key);
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end || end == buf)
        return util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: meta key '%s' holds '%s', not a number",
                              s->b.name, key, buf);
    *out = (int64_t)v;
    return 0;
}

static int meta_set_i64(sq_t *s, const char *key, int64_t v, util_err_t *err) {
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return meta_set(s, key, buf, err);
}

static int prepare(sq_t *s, const char *sql, sqlite3_stmt **st, util_err_t *err) {
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return db_fail(s, err, "preparing a statement");
    return 0;
}

static void sq_close(store_t *bs);

static store_t *sq_open(const char *path, int fc7_dim, int code_bits, const char *uuid,
                        util_err_t *err) {
    sq_t *s = calloc(1, sizeof *s);
    if (!s) {
        util_fail_kind(err, UTIL_ERR_LIMIT, "%s: out of memory", path);
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    snprintf(s->b.name, sizeof s->b.name, "%s", path);
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        if (s->db)
            db_fail(s, err, "cannot open");
        else
            util_fail_kind(err, UTIL_ERR_LIMIT, "%s: cannot open (out of memory)", path);
        sq_close(&s->b);
        return NULL;
    }
    /* Another process (the CLI beside a running server) may hold the write
     * lock for a moment: wait instead of failing at once. */
    sqlite3_busy_timeout(s->db, 10000);

    char mode[16] = "";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        db_fail(s, err, "not an SQLite database, or unreadable");
        sqlite3_finalize(st);
        sq_close(&s->b);
        return NULL;
    }
    snprintf(mode, sizeof mode, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (strcmp(mode, "wal")) {
        util_fail(err, "%s: could not switch to WAL mode (journal mode is '%s')", path, mode);
        sq_close(&s->b);
        return NULL;
    }
    /* synchronous=FULL: in WAL mode SQLite then fsyncs the WAL at every commit,
     * so a transaction that returned is on stable storage and survives a power
     * loss. NORMAL would fsync only at checkpoints: still safe against kill -9
     * (the WAL is in the OS page cache) but a power cut could lose the last
     * acknowledged adds, and an acknowledged Add must be in the store before
     * its reply is sent. The cost is one fsync per transaction; batch adds to
     * amortise it. */
    if (exec(s, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;", err) ||
        exec(s,
             "BEGIN IMMEDIATE;"
             "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
             "CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, uri TEXT NOT NULL,"
             " label INTEGER NOT NULL, fc7 BLOB, code BLOB, added_us INTEGER NOT NULL,"
             " seq INTEGER NOT NULL);"
             "CREATE TABLE IF NOT EXISTS changes(seq INTEGER PRIMARY KEY, op INTEGER NOT NULL,"
             " id INTEGER NOT NULL);",
             err)) {
        sq_close(&s->b);
        return NULL;
    }
    if (prepare(s, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", &s->set_meta, err))
        goto fail_tx;

    char buf[64];
    int f = meta_get(s, "format", buf, sizeof buf, err);
    if (f < 0) goto fail_tx;
    if (!f) {
        /* A new store, or some other SQLite file: only an empty one is adopted. */
        sqlite3_stmt *q = NULL;
        int nitems = -1;
        if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM items", -1, &q, NULL) == SQLITE_OK &&
            sqlite3_step(q) == SQLITE_ROW)
            nitems = sqlite3_column_int(q, 0);
        sqlite3_finalize(q);
        if (nitems != 0) {
            util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: not an imgret store (no format marker)",
                           path);
            goto fail_tx;
        }
        snprintf(s->b.uuid, sizeof s->b.uuid, "%s", uuid);
        s->b.fc7_dim = fc7_dim;
        s->b.code_bits = code_bits;
        if (meta_set(s, "format", STORE_FORMAT, err) || meta_set(s, "uuid", s->b.uuid, err) ||
            meta_set_i64(s, "fc7_dim", fc7_dim, err) ||
            meta_set_i64(s, "code_bits", code_bits, err) || meta_set_i64(s, "last_seq", 0, err) ||
            meta_set_i64(s, "next_id", 0, err))
            goto fail_tx;
    } else {
        if (strcmp(buf, STORE_FORMAT)) {
            util_fail_kind(err, UTIL_ERR_UNSUPPORTED,
                           "%s: store format '%s', this build reads '%s'", path, buf, STORE_FORMAT);
            goto fail_tx;
        }
        int64_t d, b;
        if (meta_get_i64(s, "fc7_dim", &d, err) || meta_get_i64(s, "code_bits", &b, err))
            goto fail_tx;
        s->b.fc7_dim = (int)d;
        s->b.code_bits = (int)b;
        int u = meta_get(s, "uuid", s->b.uuid, sizeof s->b.uuid, err);
        if (u != 1) {
            if (u == 0)
                util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: store has no uuid", path);
            else
                util_fail_prefix(err, "%s: store has no uuid", path);
            goto fail_tx;
        }
    }
    if (exec(s, "COMMIT", err)) goto fail;
    if (prepare(s,
                "INSERT INTO items(id, uri, label, fc7, code, added_us, seq)"
                " VALUES(?, ?, ?, ?, ?, ?, ?)",
                &s->insert_item, err) ||
        prepare(s, "INSERT INTO changes(seq, op, id) VALUES(?, ?, ?)", &s->insert_change, err) ||
        prepare(s, "DELETE FROM items WHERE id = ?", &s->delete_item, err) ||
        prepare(s, "SELECT id, uri, label, fc7, code, added_us, seq FROM items WHERE id = ?",
                &s->get_item, err))
        goto fail;
    return &s->b;

fail_tx:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
fail:
    sq_close(&s->b);
    return NULL;
}

static void sq_close(store_t *bs) {
    sq_t *s = (sq_t *)bs;
    if (!s) return;
    sqlite3_finalize(s->insert_item);
    sqlite3_finalize(s->insert_change);
    sqlite3_finalize(s->delete_item);
    sqlite3_finalize(s->get_item);
    sqlite3_finalize(s->set_meta);
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int sq_setting_get(store_t *bs, const char *key, char *buf, size_t cap, util_err_t *err) {
    return meta_get((sq_t *)bs, key, buf, cap, err);
}

static int sq_setting_set(store_t *bs, const char *key, const char *value, util_err_t *err) {
    return meta_set((sq_t *)bs, key, value, err);
}

static int64_t query_i64(sq_t *s, const char *sql, util_err_t *err) {
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    pthread_mutex_lock(&s->lock);
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        db_fail(s, err, "query");
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return v;
}

static int64_t sq_count(store_t *bs, util_err_t *err) {
    sq_t *s = (sq_t *)bs;
    return query_i64(s, "SELECT count(*) FROM items", err);
}

static int64_t sq_last_seq(store_t *bs, util_err_t *err) {
    sq_t *s = (sq_t *)bs;
    return query_i64(s, "SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'last_seq'", err);
}

static int rollback_fail(sq_t *s) {
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&s->lock);
    return -1;
}

static int sq_add(store_t *bs, const store_item_t *items, size_t n, int64_t t, int64_t *assigned,
                  int64_t *first_seq, util_err_t *err) {
    sq_t *s = (sq_t *)bs;
    pthread_mutex_lock(&s->lock);
    int64_t seq, next_id;
    if (exec(s, "BEGIN IMMEDIATE", err)) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    if (meta_get_i64(s, "last_seq", &seq, err) || meta_get_i64(s, "next_id", &next_id, err))
        return rollback_fail(s);
    for (size_t i = 0; i < n; i++) {
        const store_item_t *it = &items[i];
        int64_t id = it->id == STORE_ID_AUTO ? next_id : it->id;
        if (id >= next_id) next_id = id + 1;
        assigned[i] = id;
        seq++;
        sqlite3_stmt *st = s->insert_item;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, it->uri ? it->uri : "", -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, it->label);
        if (it->fc7)
            sqlite3_bind_blob(st, 4, it->fc7, (int)(sizeof(float) * (size_t)s->b.fc7_dim),
                              SQLITE_STATIC);
        if (it->code) sqlite3_bind_blob(st, 5, it->code, s->b.code_bits / 8, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, t);
        sqlite3_bind_int64(st, 7, seq);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_CONSTRAINT) {
            util_fail_kind(err, UTIL_ERR_EXISTS, "item %zu: id %" PRId64 " already exists", i, id);
            return rollback_fail(s);
        }
        if (rc != SQLITE_DONE) {
            db_fail(s, err, "adding an item");
            return rollback_fail(s);
        }
        st = s->insert_change;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, seq);
        sqlite3_bind_int(st, 2, CHANGE_ADD);
        sqlite3_bind_int64(st, 3, id);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            db_fail(s, err, "logging an add");
            return rollback_fail(s);
        }
    }
    if (meta_set_i64(s, "last_seq", seq, err) || meta_set_i64(s, "next_id", next_id, err) ||
        exec(s, "COMMIT", err))
        return rollback_fail(s);
    pthread_mutex_unlock(&s->lock);
    *first_seq = seq - (int64_t)n + 1;
    return 0;
}

static int sq_remove(store_t *bs, const int64_t *ids, size_t n, util_err_t *err) {
    sq_t *s = (sq_t *)bs;
    pthread_mutex_lock(&s->lock);
    int64_t seq;
    if (exec(s, "BEGIN IMMEDIATE", err)) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    if (meta_get_i64(s, "last_seq", &seq, err)) return rollback_fail(s);
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = s->delete_item;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, ids[i]);
        int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            db_fail(s, err, "removing an item");
            return rollback_fail(s);
        }
        if (sqlite3_changes(s->db) != 1) {
            util_fail_kind(err, UTIL_ERR_NOT_FOUND, "no item with id %" PRId64, ids[i]);
            return rollback_fail(s);
        }
        seq++;
        st = s->insert_change;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, seq);
        sqlite3_bind_int(st, 2, CHANGE_REMOVE);
        sqlite3_bind_int64(st, 3, ids[i]);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            db_fail(s, err, "logging a remove");
            return rollback_fail(s);
        }
    }
    if (meta_set_i64(s, "last_seq", seq, err) || exec(s, "COMMIT", err)) return rollback_fail(s);
    pthread_mutex_unlock(&s->lock);
    return 0;
}

/* Fills *it from a row of (id, uri, label, fc7, code, added_us, seq), checking
 * blob sizes: a wrong size means the file was damaged or written by a
 * different build. The pointers point into the statement's row. */
static int row_item(sq_t *s, sqlite3_stmt *st, store_item_t *it, util_err_t *err) {
    it->id = sqlite3_column_int64(st, 0);
    it->uri = (const char *)sqlite3_column_text(st, 1);
    it->label = sqlite3_column_int(st, 2);
    it->fc7 = sqlite3_column_blob(st, 3);
    int fc7_bytes = sqlite3_column_bytes(st, 3);
    it->code = sqlite3_column_blob(st, 4);
    int code_bytes = sqlite3_column_bytes(st, 4);
    it->added_us = sqlite3_column_int64(st, 5);
    it->seq = sqlite3_column_int64(st, 6);
    if (!it->uri) it->uri = "";
    if (it->fc7 && fc7_bytes != (int)sizeof(float) * s->b.fc7_dim)
        return util_fail_kind(err, UTIL_ERR_CORRUPT,
                              "%s: item %" PRId64 ": FC7 blob has %d bytes, expected %d", s->b.name,
                              it->id, fc7_bytes, (int)sizeof(float) * s->b.fc7_dim);
    if (it->code && code_bytes != s->b.code_bits / 8)
        return util_fail_kind(err, UTIL_ERR_CORRUPT,
                              "%s: item %" PRId64 ": code blob has %d bytes, expected %d",
                              s->b.name, it->id, code_bytes, s->b.code_bits / 8);
    return 0;
}

static int sq_get(store_t *bs, int64_t id, store_record_t *out, util_err_t *err) {
    sq_t *s = (sq_t *)bs;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = s->get_item;
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st), ret = 0;
    if (rc == SQLITE_DONE) {
        ret = util_fail_kind(err, UTIL_ERR_NOT_FOUND, "no item with id %" PRId64, id);
    } else if (rc != SQLITE_ROW) {
        ret = db_fail(s, err, "reading an item");
    } else {
        store_item_t it;
        ret = row_item(s, st, &it, err);
        if (!ret) ret = store_record_from_row(&s->b, &it, out, err);
    }
    sqlite3_reset(st);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

static int sq_scan(store_t *bs, store_scan_fn fn, void *ctx, int64_t *seq, util_err_t *err) {
    sq_t *s = (sq_t *)bs;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = NULL;
    int ret = 0;
    /* One read transaction: the items and last_seq describe the same state
     * even while another process writes. */
    if (exec(s, "BEGIN", err)) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    int64_t last;
    if (meta_get_i64(s, "last_seq", &last, err)) {
        ret = -1;
    } else if (sqlite3_prepare_v2(s->db,
                                  "SELECT id, uri, label, fc7, code, added_us, seq FROM items"
                                  " ORDER BY id",
                                  -1, &st, NULL) != SQLITE_OK) {
        ret = db_fail(s, err, "scanning items");
    } else {
        int rc;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            store_item_t it;
            if (row_item(s, st, &it, err) || fn(ctx, &it, err)) {
                ret = -1;
                break;
            }
        }
        if (!ret && rc != SQLITE_DONE) ret = db_fail(s, err, "scanning items");
    }
    sqlite3_finalize(st);
    sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    pthread_mutex_unlock(&s->lock);
    if (!ret && seq) *seq = last;
    return ret;
}

static int sq_changes(store_t *bs, int64_t after_seq, store_change_t **changes, size_t *n,
                      int64_t *oldest_seq, util_err_t *err) {
    sq_t *s = (sq_t *)bs;
    *changes = NULL;
    *n = 0;
    *oldest_seq = 0;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = NULL;
    int ret = 0;
    size_t cap = 0;
    if (sqlite3_prepare_v2(s->db, "SELECT coalesce(min(seq), 0) FROM changes", -1, &st, NULL) !=
            SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        ret = db_fail(s, err, "reading the change log");
        goto out;
    }
    *oldest_seq = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT seq, op, id FROM changes WHERE seq > ? ORDER BY seq", -1,
                           &st, NULL) != SQLITE_OK) {
        ret = db_fail(s, err, "reading the change log");
        goto out;
    }
    sqlite3_bind_int64(st, 1, after_seq);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 256;
            store_change_t *p = realloc(*changes, nc * sizeof *p);
            if (!p) {
                ret = util_fail_kind(err, UTIL_ERR_LIMIT, "change log: out of memory");
                goto out;
            }
            *changes = p;
            cap = nc;
        }
        store_change_t *c = &(*changes)[(*n)++];
        c->seq = sqlite3_column_int64(st, 0);
        c->op = sqlite3_column_int(st, 1) == CHANGE_REMOVE ? STORE_OP_REMOVE : STORE_OP_ADD;
        c->id = sqlite3_column_int64(st, 2);
    }
    if (rc != SQLITE_DONE) ret = db_fail(s, err, "reading the change log");
out:
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    if (ret) {
        free(*changes);
        *changes = NULL;
        *n = 0;
    }
    return ret;
}

static int sq_trim_changes(store_t *bs, int64_t upto_seq, util_err_t *err) {
    sq_t *s = (sq_t *)bs;
    pthread_mutex_lock(&s->lock);
    sqlite3_stmt *st = NULL;
    int ret = 0;
    if (sqlite3_prepare_v2(s->db, "DELETE FROM changes WHERE seq <= ?", -1, &st, NULL) !=
        SQLITE_OK) {
        ret = db_fail(s, err, "trimming the change log");
    } else {
        sqlite3_bind_int64(st, 1, upto_seq);
        if (sqlite3_step(st) != SQLITE_DONE) ret = db_fail(s, err, "trimming the change log");
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&s->lock);
    return ret;
}

const store_ops_t store_sqlite_ops = {
    .backend = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .setting_get = sq_setting_get,
    .setting_set = sq_setting_set,
    .count = sq_count,
    .last_seq = sq_last_seq,
    .add = sq_add,
    .remove = sq_remove,
    .get = sq_get,
    .scan = sq_scan,
    .changes = sq_changes,
    .trim_changes = sq_trim_changes,
};
