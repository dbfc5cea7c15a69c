/* The item store's PostgreSQL backend (libpq): one database that several
 * imgret processes share.
 *
 * Tables (created when missing, under one advisory lock so that processes
 * opening a new database together do not race):
 *   imgret_meta(key text primary key, value text)      format, uuid, shapes, settings
 *   imgret_items(id bigint primary key, uri text, label integer, fc7 bytea,
 *                code bytea, added_us bigint, seq bigint)
 *   imgret_changes(seq bigint primary key, op smallint, id bigint)  the log
 *   imgret_counter(one boolean primary key, last_seq bigint, next_id bigint)
 * FC7 and codes are the same raw host-order bytes as in the SQLite file.
 *
 * The sequence rule: every write is one transaction that first locks the one
 * row of imgret_counter (SELECT ... FOR UPDATE), numbers its changes from
 * last_seq + 1, and writes last_seq back before COMMIT. The row lock is held
 * until the commit, so writers are serialised on it: sequence numbers are
 * dense, and a transaction that took seq N committed before any transaction
 * that took N + 1 could read the counter, so commit order is seq order and
 * every snapshot sees a gap-free prefix of the log. A counter row rather than
 * max(seq) + 1 because the log is trimmed (max of an empty log is not the
 * last seq) and because the row lock is exactly the serialisation point; an
 * advisory lock would do the same but is invisible in the schema. A failed
 * transaction rolls back and leaves no gap. After the counter, a
 * pg_notify('imgret_changes', last_seq) is delivered to listeners on commit.
 *
 * Durability: the session sets synchronous_commit = on whatever the server's
 * default, so a COMMIT that returned is flushed to the WAL on disk (and, with
 * synchronous standbys configured, to them).
 *
 * One connection per store_t, serialised by a mutex; a connection found
 * broken is reset once at the start of the next call, so the store recovers
 * by itself when the database comes back. */
#include "index/store_internal.h"

#include <libpq-fe.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STORE_FORMAT "imgret-store-1"
#define SCHEMA_LOCK "7305424917120475425" /* pg_advisory_xact_lock key: schema creation */
#define SCAN_FETCH "1000"                 /* rows per FETCH of a scan */
#define POLL_MS 1000                      /* a follower re-reads last_seq at least this often */

typedef struct pg {
    store_t b;
    PGconn *conn;
    pthread_mutex_t lock;
    int prepared;   /* the statements below exist on this connection */
    char *url;      /* as given (with its password): for the listening connection */
    PGconn *listen; /* LISTEN imgret_changes; NULL until the first wait */
    pthread_mutex_t listen_lock;
} pg_t;

/* ---- errors ---- */

/* The kind of a failed result (NULL: the connection failed). */
static util_err_kind_t pg_kind(pg_t *s, const PGresult *r) {
    if (PQstatus(s->conn) != CONNECTION_OK) return UTIL_ERR_UNAVAILABLE;
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    if (!st) return UTIL_ERR_UNAVAILABLE; /* no answer from the server */
    if (!strcmp(st, "23505")) return UTIL_ERR_EXISTS;
    if (!strncmp(st, "08", 2) || !strncmp(st, "57P", 3) || !strcmp(st, "40001") ||
        !strcmp(st, "40P01") || !strcmp(st, "55P03") || !strcmp(st, "25006") ||
        !strcmp(st, "53300"))
        return UTIL_ERR_UNAVAILABLE; /* connection, shutdown, conflicts, a read-only standby */
    if (!strncmp(st, "53", 2) || !strncmp(st, "54", 2)) return UTIL_ERR_LIMIT;
    if (!strncmp(st, "22", 2)) return UTIL_ERR_INVALID;
    if (!strncmp(st, "42", 2) || !strncmp(st, "XX", 2)) return UTIL_ERR_CORRUPT;
    if (!strncmp(st, "58", 2)) return UTIL_ERR_IO;
    if (!strncmp(st, "28", 2)) return UTIL_ERR_PRECONDITION;
    return UTIL_ERR_INTERNAL;
}

static void chomp(char *m) {
    size_t n = strlen(m);
    while (n && (m[n - 1] == '\n' || m[n - 1] == ' '))
        m[--n] = 0;
}

/* Fails with the result's (or the connection's) message; clears r. */
static int pg_fail(pg_t *s, PGresult *r, util_err_t *err, const char *what) {
    char msg[400];
    snprintf(msg, sizeof msg, "%s",
             r && *PQresultErrorMessage(r) ? PQresultErrorMessage(r) : PQerrorMessage(s->conn));
    chomp(msg);
    util_err_kind_t kind = pg_kind(s, r);
    PQclear(r);
    return util_fail_kind(err, kind, "%s: %s: %s%s", s->b.name, what, msg,
                          kind == UTIL_ERR_UNAVAILABLE ? " (database unavailable)" : "");
}

/* Runs sql (no parameters); 0 when it returned `want`. */
static int run(pg_t *s, const char *sql, ExecStatusType want, util_err_t *err, const char *what) {
    PGresult *r = PQexec(s->conn, sql);
    if (PQresultStatus(r) != want) return pg_fail(s, r, err, what);
    PQclear(r);
    return 0;
}

static void rollback(pg_t *s) {
    if (PQstatus(s->conn) == CONNECTION_OK && PQtransactionStatus(s->conn) != PQTRANS_IDLE)
        PQclear(PQexec(s->conn, "ROLLBACK"));
}

/* ---- the connection ---- */

static void quiet(void *arg, const char *message) {
    (void)arg;
    (void)message; /* a library prints nothing (NOTICEs of CREATE ... IF NOT EXISTS) */
}

static const struct {
    const char *name, *sql;
    int nparams;
} statements[] = {
    {"imgret_insert_item",
     "WITH i AS (INSERT INTO imgret_items(id, uri, label, fc7, code, added_us, seq)"
     " VALUES($1, $2, $3, $4, $5, $6, $7) RETURNING seq, id)"
     " INSERT INTO imgret_changes(seq, op, id) SELECT seq, 1, id FROM i",
     7},
    {"imgret_delete_item",
     "WITH d AS (DELETE FROM imgret_items WHERE id = $1 RETURNING id)"
     " INSERT INTO imgret_changes(seq, op, id) SELECT $2, 2, id FROM d",
     2},
    {"imgret_get_item",
     "SELECT id, uri, label, fc7, code, added_us, seq FROM imgret_items WHERE id = $1", 1},
    {"imgret_meta_get", "SELECT value FROM imgret_meta WHERE key = $1", 1},
    {"imgret_meta_set",
     "INSERT INTO imgret_meta(key, value) VALUES($1, $2)"
     " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
     2},
    {"imgret_changes", "SELECT seq, op, id FROM imgret_changes WHERE seq > $1 ORDER BY seq", 1},
    {"imgret_trim", "DELETE FROM imgret_changes WHERE seq <= $1", 1},
};

/* The session's settings and prepared statements, after a (re)connect. */
static int session_setup(pg_t *s, util_err_t *err) {
    if (run(s, "SET synchronous_commit = on; SET client_min_messages = warning", PGRES_COMMAND_OK,
            err, "session settings"))
        return -1;
    return 0;
}

static int prepare_all(pg_t *s, util_err_t *err) {
    if (s->prepared) return 0;
    for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
        PGresult *r =
            PQprepare(s->conn, statements[i].name, statements[i].sql, statements[i].nparams, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) return pg_fail(s, r, err, "preparing");
        PQclear(r);
    }
    s->prepared = 1;
    return 0;
}

/* Makes sure the connection works before a call: a broken one (the server
 * restarted, a network cut) is reset once. Called with the lock held. */
static int ensure(pg_t *s, util_err_t *err) {
    if (PQstatus(s->conn) != CONNECTION_OK) {
        s->prepared = 0;
        PQreset(s->conn);
        if (PQstatus(s->conn) != CONNECTION_OK) return pg_fail(s, NULL, err, "reconnecting");
        if (session_setup(s, err)) return -1;
    }
    return prepare_all(s, err);
}

/* Runs a prepared statement; text parameters unless lengths says binary
 * (formats 1 where lengths[i] > 0). Results in binary when `binary`. */
static PGresult *exec_prepared(pg_t *s, const char *name, int n, const char *const *values,
                               const int *lengths, int binary) {
    int formats[8] = {0};
    for (int i = 0; lengths && i < n; i++)
        formats[i] = lengths[i] > 0;
    return PQexecPrepared(s->conn, name, n, values, lengths, formats, binary);
}

static void pg_close(store_t *bs) {
    pg_t *s = (pg_t *)bs;
    if (!s) return;
    PQfinish(s->conn);
    PQfinish(s->listen);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->listen_lock);
    free(s->url);
    free(s);
}

static int meta_get_locked(pg_t *s, const char *key, char *buf, size_t cap, util_err_t *err) {
    const char *v[1] = {key};
    PGresult *r = exec_prepared(s, "imgret_meta_get", 1, v, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) return pg_fail(s, r, err, "reading imgret_meta");
    int found = PQntuples(r) > 0;
    if (found) snprintf(buf, cap, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    return found;
}

static int meta_set_locked(pg_t *s, const char *key, const char *value, util_err_t *err) {
    const char *v[2] = {key, value};
    PGresult *r = exec_prepared(s, "imgret_meta_set", 2, v, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) return pg_fail(s, r, err, "writing imgret_meta");
    PQclear(r);
    return 0;
}

static int meta_get_int(pg_t *s, const char *key, int *out, util_err_t *err) {
    char buf[32];
    int f = meta_get_locked(s, key, buf, sizeof buf, err);
    if (f < 0) return -1;
    char *end;
    long v = f ? strtol(buf, &end, 10) : 0;
    if (!f || *end || end == buf || v < 0 || v > STORE_MAX_FC7_DIM)
        return util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: imgret_meta '%s' is %s (damaged store)",
                              s->b.name, key, f ? "not a number in range" : "missing");
    *out = (int)v;
    return 0;
}

/* Creates the tables when missing and adopts or checks the store. */
static int schema_open(pg_t *s, int fc7_dim, int code_bits, const char *uuid, util_err_t *err) {
    if (run(s,
            "BEGIN;"
            "SELECT pg_advisory_xact_lock(" SCHEMA_LOCK ");"
            "CREATE TABLE IF NOT EXISTS imgret_meta(key text PRIMARY KEY, value text NOT NULL);"
            "CREATE TABLE IF NOT EXISTS imgret_items(id bigint PRIMARY KEY, uri text NOT NULL,"
            " label integer NOT NULL, fc7 bytea, code bytea, added_us bigint NOT NULL,"
            " seq bigint NOT NULL);"
            "CREATE TABLE IF NOT EXISTS imgret_changes(seq bigint PRIMARY KEY,"
            " op smallint NOT NULL, id bigint NOT NULL);"
            "CREATE TABLE IF NOT EXISTS imgret_counter(one boolean PRIMARY KEY DEFAULT true"
            " CHECK (one), last_seq bigint NOT NULL, next_id bigint NOT NULL)",
            PGRES_COMMAND_OK, err, "creating the tables") ||
        prepare_all(s, err)) {
        rollback(s);
        return -1;
    }
    char buf[64];
    int f = meta_get_locked(s, "format", buf, sizeof buf, err);
    if (f < 0) goto fail;
    if (!f) {
        PGresult *r = PQexec(s->conn, "SELECT (SELECT count(*) FROM imgret_items) +"
                                      " (SELECT count(*) FROM imgret_counter)");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            pg_fail(s, r, err, "reading imgret_items");
            goto fail;
        }
        int empty = !strcmp(PQgetvalue(r, 0, 0), "0");
        PQclear(r);
        if (!empty) {
            util_fail_kind(err, UTIL_ERR_CORRUPT,
                           "%s: not an imgret store (imgret_items has rows but imgret_meta no "
                           "format marker)",
                           s->b.name);
            goto fail;
        }
        char d[16], b[16];
        snprintf(d, sizeof d, "%d", fc7_dim);
        snprintf(b, sizeof b, "%d", code_bits);
        if (meta_set_locked(s, "format", STORE_FORMAT, err) ||
            meta_set_locked(s, "uuid", uuid, err) || meta_set_locked(s, "fc7_dim", d, err) ||
            meta_set_locked(s, "code_bits", b, err) ||
            run(s, "INSERT INTO imgret_counter(one, last_seq, next_id) VALUES(true, 0, 0)",
                PGRES_COMMAND_OK, err, "creating the counter"))
            goto fail;
        s->b.fc7_dim = fc7_dim;
        s->b.code_bits = code_bits;
        snprintf(s->b.uuid, sizeof s->b.uuid, "%s", uuid);
    } else {
        if (strcmp(buf, STORE_FORMAT)) {
            util_fail_kind(err, UTIL_ERR_UNSUPPORTED,
                           "%s: store format '%s' (schema version), this build reads '%s'",
                           s->b.name, buf, STORE_FORMAT);
            goto fail;
        }
        if (meta_get_int(s, "fc7_dim", &s->b.fc7_dim, err) ||
            meta_get_int(s, "code_bits", &s->b.code_bits, err))
            goto fail;
        int u = meta_get_locked(s, "uuid", s->b.uuid, sizeof s->b.uuid, err);
        if (u < 0) goto fail;
        if (!u) {
            util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: store has no uuid", s->b.name);
            goto fail;
        }
    }
    return run(s, "COMMIT", PGRES_COMMAND_OK, err, "creating the tables");
fail:
    rollback(s);
    return -1;
}

static store_t *pg_open(const char *url, int fc7_dim, int code_bits, const char *uuid,
                        util_err_t *err) {
    pg_t *s = calloc(1, sizeof *s);
    if (!s) {
        util_fail_kind(err, UTIL_ERR_LIMIT, "store: out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->listen_lock, NULL);
    store_redact_url(url, s->b.name, sizeof s->b.name);
    if (!(s->url = strdup(url))) {
        util_fail_kind(err, UTIL_ERR_LIMIT, "store: out of memory");
        pg_close(&s->b);
        return NULL;
    }
    /* A connect_timeout the URL does not set: a database host that does not
     * answer fails the open instead of hanging it (keywords after dbname
     * would override the URL's own). */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"10", "imgret", url, NULL};
    s->conn = PQconnectdbParams(keys, vals, 1);
    if (!s->conn) {
        util_fail_kind(err, UTIL_ERR_LIMIT, "%s: out of memory", s->b.name);
        pg_close(&s->b);
        return NULL;
    }
    PQsetNoticeProcessor(s->conn, quiet, NULL);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(s->conn));
        chomp(msg);
        util_fail_kind(err, UTIL_ERR_UNAVAILABLE, "%s: cannot connect to PostgreSQL: %s", s->b.name,
                       msg);
        pg_close(&s->b);
        return NULL;
    }
    if (session_setup(s, err) || schema_open(s, fc7_dim, code_bits, uuid, err)) {
        pg_close(&s->b);
        return NULL;
    }
    return &s->b;
}

/* ---- reads ---- */

static int pg_setting_get(store_t *bs, const char *key, char *buf, size_t cap, util_err_t *err) {
    pg_t *s = (pg_t *)bs;
    pthread_mutex_lock(&s->lock);
    int rc = ensure(s, err);
    if (!rc) rc = meta_get_locked(s, key, buf, cap, err);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int pg_setting_set(store_t *bs, const char *key, const char *value, util_err_t *err) {
    pg_t *s = (pg_t *)bs;
    pthread_mutex_lock(&s->lock);
    int rc = ensure(s, err);
    if (!rc) rc = meta_set_locked(s, key, value, err);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int64_t query_i64(pg_t *s, const char *sql, const char *what, util_err_t *err) {
    pthread_mutex_lock(&s->lock);
    int64_t v = -1;
    if (!ensure(s, err)) {
        PGresult *r = PQexec(s->conn, sql);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
            pg_fail(s, r, err, what);
        } else {
            v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            PQclear(r);
        }
    }
    pthread_mutex_unlock(&s->lock);
    return v;
}

static int64_t pg_count(store_t *bs, util_err_t *err) {
    return query_i64((pg_t *)bs, "SELECT count(*) FROM imgret_items", "counting items", err);
}

static int64_t pg_last_seq(store_t *bs, util_err_t *err) {
    return query_i64((pg_t *)bs, "SELECT last_seq FROM imgret_counter", "reading the counter", err);
}

static int64_t be_i64(const char *p) {
    uint32_t hi, lo;
    memcpy(&hi, p, 4);
    memcpy(&lo, p + 4, 4);
    return (int64_t)(((uint64_t)ntohl(hi) << 32) | ntohl(lo));
}

static int32_t be_i32(const char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return (int32_t)ntohl(v);
}

/* Fills *it from row `row` of a binary result of (id, uri, label, fc7, code,
 * added_us, seq); the pointers point into r. Wrong sizes mean the rows were
 * written by something else. */
static int row_item(pg_t *s, const PGresult *r, int row, store_item_t *it, util_err_t *err) {
    memset(it, 0, sizeof *it);
    if (PQgetlength(r, row, 0) != 8 || PQgetlength(r, row, 2) != 4 || PQgetlength(r, row, 5) != 8 ||
        PQgetlength(r, row, 6) != 8)
        return util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: imgret_items: a row of unexpected types",
                              s->b.name);
    it->id = be_i64(PQgetvalue(r, row, 0));
    it->uri = PQgetvalue(r, row, 1);
    it->label = be_i32(PQgetvalue(r, row, 2));
    it->added_us = be_i64(PQgetvalue(r, row, 5));
    it->seq = be_i64(PQgetvalue(r, row, 6));
    const int fb = (int)sizeof(float) * s->b.fc7_dim, cb = s->b.code_bits / 8;
    if (!PQgetisnull(r, row, 3)) {
        if (PQgetlength(r, row, 3) != fb)
            return util_fail_kind(err, UTIL_ERR_CORRUPT,
                                  "%s: item %" PRId64 ": FC7 has %d bytes, expected %d", s->b.name,
                                  it->id, PQgetlength(r, row, 3), fb);
        it->fc7 = (const float *)(const void *)PQgetvalue(r, row, 3);
    }
    if (!PQgetisnull(r, row, 4)) {
        if (PQgetlength(r, row, 4) != cb)
            return util_fail_kind(err, UTIL_ERR_CORRUPT,
                                  "%s: item %" PRId64 ": code has %d bytes, expected %d", s->b.name,
                                  it->id, PQgetlength(r, row, 4), cb);
        it->code = (const uint8_t *)PQgetvalue(r, row, 4);
    }
    return 0;
}

static int pg_get(store_t *bs, int64_t id, store_record_t *out, util_err_t *err) {
    pg_t *s = (pg_t *)bs;
    memset(out, 0, sizeof *out);
    char idbuf[24];
    snprintf(idbuf, sizeof idbuf, "%" PRId64, id);
    const char *v[1] = {idbuf};
    pthread_mutex_lock(&s->lock);
    int ret = ensure(s, err);
    PGresult *r = NULL;
    if (!ret) {
        r = exec_prepared(s, "imgret_get_item", 1, v, NULL, 1);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            ret = pg_fail(s, r, err, "reading an item");
            r = NULL;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (ret) return -1;
    store_item_t it;
    if (PQntuples(r) == 0) {
        ret = util_fail_kind(err, UTIL_ERR_NOT_FOUND, "no item with id %" PRId64, id);
    } else if (!(ret = row_item(s, r, 0, &it, err))) {
        ret = store_record_from_row(&s->b, &it, out, err);
    }
    PQclear(r);
    return ret;
}

static int pg_scan(store_t *bs, store_scan_fn fn, void *ctx, int64_t *seq, util_err_t *err) {
    pg_t *s = (pg_t *)bs;
    pthread_mutex_lock(&s->lock);
    /* One snapshot (REPEATABLE READ): the items and last_seq describe the
     * same state while others write; a cursor keeps memory bounded. */
    int ret = ensure(s, err);
    if (!ret)
        ret = run(s, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", PGRES_COMMAND_OK, err,
                  "scanning items");
    int64_t last = 0;
    if (!ret) {
        PGresult *r = PQexec(s->conn, "SELECT last_seq FROM imgret_counter");
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
            ret = pg_fail(s, r, err, "reading the counter");
        } else {
            last = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            PQclear(r);
        }
    }
    if (!ret)
        ret = run(s,
                  "DECLARE imgret_scan BINARY NO SCROLL CURSOR FOR"
                  " SELECT id, uri, label, fc7, code, added_us, seq FROM imgret_items ORDER BY id",
                  PGRES_COMMAND_OK, err, "scanning items");
    while (!ret) {
        PGresult *r = PQexec(s->conn, "FETCH " SCAN_FETCH " FROM imgret_scan");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            ret = pg_fail(s, r, err, "scanning items");
            break;
        }
        int rows = PQntuples(r);
        for (int i = 0; i < rows && !ret; i++) {
            store_item_t it;
            if (row_item(s, r, i, &it, err) || fn(ctx, &it, err)) ret = -1;
        }
        PQclear(r);
        if (!rows) break;
    }
    if (!ret)
        ret = run(s, "COMMIT", PGRES_COMMAND_OK, err, "scanning items");
    else
        rollback(s);
    pthread_mutex_unlock(&s->lock);
    if (!ret && seq) *seq = last;
    return ret;
}

static int pg_changes(store_t *bs, int64_t after_seq, store_change_t **changes, size_t *n,
                      int64_t *oldest_seq, util_err_t *err) {
    pg_t *s = (pg_t *)bs;
    char after[24];
    snprintf(after, sizeof after, "%" PRId64, after_seq);
    const char *v[1] = {after};
    pthread_mutex_lock(&s->lock);
    PGresult *o = NULL, *r = NULL;
    int ret = ensure(s, err);
    /* Both reads in one snapshot: the oldest entry and the entries agree. */
    if (!ret)
        ret = run(s, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", PGRES_COMMAND_OK, err,
                  "reading the change log");
    if (!ret) {
        o = PQexec(s->conn, "SELECT coalesce(min(seq), 0) FROM imgret_changes");
        if (PQresultStatus(o) != PGRES_TUPLES_OK)
            ret = pg_fail(s, o, err, "reading the change log"), o = NULL;
    }
    if (!ret) {
        r = exec_prepared(s, "imgret_changes", 1, v, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK)
            ret = pg_fail(s, r, err, "reading the change log"), r = NULL;
    }
    if (!ret)
        ret = run(s, "COMMIT", PGRES_COMMAND_OK, err, "reading the change log");
    else
        rollback(s);
    pthread_mutex_unlock(&s->lock);
    if (!ret) {
        *oldest_seq = strtoll(PQgetvalue(o, 0, 0), NULL, 10);
        int rows = PQntuples(r);
        if (rows && !(*changes = malloc((size_t)rows * sizeof **changes))) {
            ret = util_fail_kind(err, UTIL_ERR_LIMIT, "change log: out of memory");
        } else {
            for (int i = 0; i < rows; i++) {
                store_change_t *c = &(*changes)[i];
                c->seq = strtoll(PQgetvalue(r, i, 0), NULL, 10);
                c->op =
                    atoi(PQgetvalue(r, i, 1)) == STORE_OP_REMOVE ? STORE_OP_REMOVE : STORE_OP_ADD;
                c->id = strtoll(PQgetvalue(r, i, 2), NULL, 10);
            }
            *n = (size_t)rows;
        }
    }
    PQclear(o);
    PQclear(r);
    return ret;
}

/* ---- writes ---- */

/* Opens a write transaction and locks the counter: *last_seq and *next_id
 * as the previous writer committed them. */
static int begin_write(pg_t *s, int64_t *last_seq, int64_t *next_id, util_err_t *err) {
    if (ensure(s, err) || run(s, "BEGIN", PGRES_COMMAND_OK, err, "starting a write")) return -1;
    PGresult *r = PQexec(s->conn, "SELECT last_seq, next_id FROM imgret_counter FOR UPDATE");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            PQclear(r);
            rollback(s);
            return util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: imgret_counter has no row",
                                  s->b.name);
        }
        pg_fail(s, r, err, "locking the counter");
        rollback(s);
        return -1;
    }
    *last_seq = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    *next_id = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
    PQclear(r);
    return 0;
}

/* Writes the counter back, notifies, commits. */
static int end_write(pg_t *s, int64_t last_seq, int64_t next_id, util_err_t *err) {
    char a[24], b[24];
    snprintf(a, sizeof a, "%" PRId64, last_seq);
    snprintf(b, sizeof b, "%" PRId64, next_id);
    const char *v[2] = {a, b};
    PGresult *r = PQexecParams(s->conn, "UPDATE imgret_counter SET last_seq = $1, next_id = $2", 2,
                               NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        pg_fail(s, r, err, "writing the counter");
        rollback(s);
        return -1;
    }
    PQclear(r);
    r = PQexecParams(s->conn, "SELECT pg_notify('imgret_changes', $1)", 1, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        pg_fail(s, r, err, "notifying");
        rollback(s);
        return -1;
    }
    PQclear(r);
    /* A COMMIT that fails on a lost connection leaves the outcome unknown to
     * us; the caller is told it failed (unavailable) and must not count it. */
    return run(s, "COMMIT", PGRES_COMMAND_OK, err, "committing");
}

static int pg_add(store_t *bs, const store_item_t *items, size_t n, int64_t t, int64_t *assigned,
                  int64_t *first_seq, util_err_t *err) {
    pg_t *s = (pg_t *)bs;
    pthread_mutex_lock(&s->lock);
    int64_t seq, next_id;
    if (begin_write(s, &seq, &next_id, err)) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    const int fb = (int)sizeof(float) * s->b.fc7_dim, cb = s->b.code_bits / 8;
    char idb[24], labelb[16], tb[24], seqb[24];
    snprintf(tb, sizeof tb, "%" PRId64, t);
    for (size_t i = 0; i < n; i++) {
        const store_item_t *it = &items[i];
        int64_t id = it->id == STORE_ID_AUTO ? next_id : it->id;
        if (id >= next_id) next_id = id + 1;
        assigned[i] = id;
        seq++;
        snprintf(idb, sizeof idb, "%" PRId64, id);
        snprintf(labelb, sizeof labelb, "%d", (int)it->label);
        snprintf(seqb, sizeof seqb, "%" PRId64, seq);
        const char *v[7] = {
            idb, it->uri ? it->uri : "", labelb, (const char *)it->fc7, (const char *)it->code, tb,
            seqb};
        /* bytea in binary; an empty code (0 bytes) cannot happen: cb >= 1. */
        const int len[7] = {0, 0, 0, it->fc7 ? fb : 0, it->code ? cb : 0, 0, 0};
        PGresult *r = exec_prepared(s, "imgret_insert_item", 7, v, len, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            if (pg_kind(s, r) == UTIL_ERR_EXISTS) {
                PQclear(r);
                util_fail_kind(err, UTIL_ERR_EXISTS, "item %zu: id %" PRId64 " already exists", i,
                               id);
            } else {
                pg_fail(s, r, err, "adding an item");
            }
            rollback(s);
            pthread_mutex_unlock(&s->lock);
            return -1;
        }
        PQclear(r);
    }
    int rc = end_write(s, seq, next_id, err);
    pthread_mutex_unlock(&s->lock);
    if (!rc) *first_seq = seq - (int64_t)n + 1;
    return rc;
}

static int pg_remove(store_t *bs, const int64_t *ids, size_t n, util_err_t *err) {
    pg_t *s = (pg_t *)bs;
    pthread_mutex_lock(&s->lock);
    int64_t seq, next_id;
    if (begin_write(s, &seq, &next_id, err)) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    char idb[24], seqb[24];
    for (size_t i = 0; i < n; i++) {
        snprintf(idb, sizeof idb, "%" PRId64, ids[i]);
        snprintf(seqb, sizeof seqb, "%" PRId64, seq + 1);
        const char *v[2] = {idb, seqb};
        PGresult *r = exec_prepared(s, "imgret_delete_item", 2, v, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            pg_fail(s, r, err, "removing an item");
            rollback(s);
            pthread_mutex_unlock(&s->lock);
            return -1;
        }
        int removed = !strcmp(PQcmdTuples(r), "1");
        PQclear(r);
        if (!removed) {
            rollback(s);
            pthread_mutex_unlock(&s->lock);
            return util_fail_kind(err, UTIL_ERR_NOT_FOUND, "no item with id %" PRId64, ids[i]);
        }
        seq++;
    }
    int rc = end_write(s, seq, next_id, err);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

static int pg_trim_changes(store_t *bs, int64_t upto_seq, util_err_t *err) {
    pg_t *s = (pg_t *)bs;
    char upto[24];
    snprintf(upto, sizeof upto, "%" PRId64, upto_seq);
    const char *v[1] = {upto};
    pthread_mutex_lock(&s->lock);
    int ret = ensure(s, err);
    if (!ret) {
        PGresult *r = exec_prepared(s, "imgret_trim", 1, v, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            ret = pg_fail(s, r, err, "trimming the change log");
        else
            PQclear(r);
    }
    pthread_mutex_unlock(&s->lock);
    return ret;
}

/* ---- following ---- */

/* (Re)opens the listening connection; 0 when it listens. */
static int listen_open(pg_t *s) {
    if (s->listen && PQstatus(s->listen) == CONNECTION_OK) return 0;
    PQfinish(s->listen);
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {"10", "imgret-listen", s->url, NULL};
    s->listen = PQconnectdbParams(keys, vals, 1);
    if (!s->listen || PQstatus(s->listen) != CONNECTION_OK) return -1;
    PQsetNoticeProcessor(s->listen, quiet, NULL);
    PGresult *r = PQexec(s->listen, "LISTEN imgret_changes");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? 0 : -1;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps until a notification arrives on the listening connection or
 * ms pass; without a working listener, just sleeps (the polling fallback). */
static void listen_wait(pg_t *s, int ms) {
    pthread_mutex_lock(&s->listen_lock);
    if (listen_open(s) == 0) {
        struct pollfd p = {.fd = PQsocket(s->listen), .events = POLLIN};
        if (p.fd >= 0 && poll(&p, 1, ms) > 0) {
            PQconsumeInput(s->listen);
            PGnotify *n;
            while ((n = PQnotifies(s->listen)))
                PQfreemem(n);
        }
        pthread_mutex_unlock(&s->listen_lock);
        return;
    }
    pthread_mutex_unlock(&s->listen_lock);
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int pg_wait_change(store_t *bs, int64_t after_seq, int timeout_ms, util_err_t *err) {
    pg_t *s = (pg_t *)bs;
    const int64_t end = mono_ms() + timeout_ms;
    for (;;) {
        /* last_seq is the truth; the notification only says when to look. */
        int64_t last = pg_last_seq(bs, err);
        if (last < 0) return -1;
        if (last > after_seq) return 1;
        int64_t left = end - mono_ms();
        if (left <= 0) return 0;
        listen_wait(s, left < POLL_MS ? (int)left : POLL_MS);
    }
}

const store_ops_t store_pg_ops = {
    .backend = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .setting_get = pg_setting_get,
    .setting_set = pg_setting_set,
    .count = pg_count,
    .last_seq = pg_last_seq,
    .add = pg_add,
    .remove = pg_remove,
    .get = pg_get,
    .scan = pg_scan,
    .changes = pg_changes,
    .trim_changes = pg_trim_changes,
    .wait_change = pg_wait_change,
};
