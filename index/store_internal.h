/* The store's seam: what a backend (SQLite in store_sqlite.c, PostgreSQL in
 * store_pg.c) provides behind store.c's public functions.
 *
 * store.c checks the arguments (shapes, items, ids) once for every backend
 * and then calls through the ops table; a backend only talks to its
 * database. A backend's own struct starts with a store_t (its `base`), so a
 * store_t * is also a pointer to the backend's struct. Private to index/. */
#ifndef IMGRET_STORE_INTERNAL_H
#define IMGRET_STORE_INTERNAL_H

#include "index/index.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

typedef struct store_ops store_ops_t;

struct store {
    const store_ops_t *ops;
    int fc7_dim, code_bits; /* the store's shapes, set by the backend's open */
    char uuid[33];
    char name[1024]; /* for messages: the file, or the URL without its password */
};

/* Every function returns 0 (or a count, or 1/0 for found) on success and -1
 * with err set on failure, as its public twin in index.h. The arguments
 * have been checked by store.c: items are valid for the store's shapes and
 * n >= 1 in add and remove. */
struct store_ops {
    const char *backend; /* "sqlite" or "postgresql" */
    /* Creates the backend's struct and opens `where`. A new store takes
     * fc7_dim, code_bits and uuid; an existing one fills base.fc7_dim,
     * base.code_bits and base.uuid from what it holds (store.c then compares
     * them with what the caller asked for). */
    store_t *(*open)(const char *where, int fc7_dim, int code_bits, const char *uuid,
                     util_err_t *err);
    void (*close)(store_t *s);
    int (*setting_get)(store_t *s, const char *key, char *buf, size_t cap, util_err_t *err);
    int (*setting_set)(store_t *s, const char *key, const char *value, util_err_t *err);
    int64_t (*count)(store_t *s, util_err_t *err);
    int64_t (*last_seq)(store_t *s, util_err_t *err);
    /* One transaction: all or none. On success ids[i] holds each item's id
     * (assigned ones filled in) and *first_seq the sequence number of the
     * first item (item i gets first_seq + i). added_us: the time to record. */
    int (*add)(store_t *s, const store_item_t *items, size_t n, int64_t added_us, int64_t *ids,
               int64_t *first_seq, util_err_t *err);
    int (*remove)(store_t *s, const int64_t *ids, size_t n, util_err_t *err);
    int (*get)(store_t *s, int64_t id, store_record_t *out, util_err_t *err);
    int (*scan)(store_t *s, store_scan_fn fn, void *ctx, int64_t *seq, util_err_t *err);
    int (*changes)(store_t *s, int64_t after_seq, store_change_t **changes, size_t *n,
                   int64_t *oldest_seq, util_err_t *err);
    int (*trim_changes)(store_t *s, int64_t upto_seq, util_err_t *err);
    /* Waits up to timeout_ms for a change after after_seq: 1 when there is
     * one, 0 at the timeout. NULL: store.c polls last_seq instead. */
    int (*wait_change)(store_t *s, int64_t after_seq, int timeout_ms, util_err_t *err);
};

extern const store_ops_t store_sqlite_ops;
extern const store_ops_t store_pg_ops;

/* A backend's get: the borrowed row `it` (valid until the backend moves on)
 * copied into the caller's record, which owns its uri, fc7 and code; 0, or
 * -1 (UTIL_ERR_LIMIT) with *out zeroed when memory runs out. Inline, so the
 * backends call nothing of store.c (which names their ops tables). */
static inline int store_record_from_row(const store_t *s, const store_item_t *it,
                                        store_record_t *out, util_err_t *err) {
    out->id = it->id;
    out->label = it->label;
    out->added_us = it->added_us;
    out->seq = it->seq;
    out->uri = strdup(it->uri);
    const size_t fb = sizeof(float) * (size_t)s->fc7_dim, cb = (size_t)s->code_bits / 8;
    if (it->fc7 && (out->fc7 = malloc(fb))) memcpy(out->fc7, it->fc7, fb);
    if (it->code && (out->code = malloc(cb))) memcpy(out->code, it->code, cb);
    if (out->uri && (!it->fc7 || out->fc7) && (!it->code || out->code)) return 0;
    free(out->uri);
    free(out->fc7);
    free(out->code);
    memset(out, 0, sizeof *out);
    return util_fail_kind(err, UTIL_ERR_LIMIT, "item %" PRId64 ": out of memory", it->id);
}

#endif
