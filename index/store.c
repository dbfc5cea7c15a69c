/* The item store's front: the public store_* functions of index.h, the same
 * for every backend. It checks arguments and items once, gives a new store
 * its uuid and the time of an add, and calls the backend through its ops
 * table (store_internal.h): SQLite for a file path, PostgreSQL for a
 * postgresql:// or postgres:// URL (libpq's; several hosts may be named). */
#include "index/store_internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int store_is_database_url(const char *where) {
    if (!where) return 0;
    return !strncmp(where, "postgresql://", 13) || !strncmp(where, "postgres://", 11);
}

static void make_uuid(char out[33]) {
    uint8_t b[16];
    int fd = open("/dev/urandom", O_RDONLY);
    ssize_t got = fd >= 0 ? read(fd, b, sizeof b) : -1;
    if (fd >= 0) close(fd);
    if (got != (ssize_t)sizeof b) {
        /* No /dev/urandom: time and pid are unique enough to tell stores apart. */
        util_rng_t rng;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        util_rng_seed(&rng, (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
                                ((uint64_t)getpid() << 40));
        for (int i = 0; i < 16; i++)
            b[i] = (uint8_t)util_rng_u64(&rng);
    }
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", b[i]);
}

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int check_shape(const char *name_of_store, const char *name, int given, int stored, int max,
                       util_err_t *err) {
    if (given < 0 || given > max)
        return util_fail_kind(err, UTIL_ERR_INVALID, "%s: %s %d is out of range (0..%d)",
                              name_of_store, name, given, max);
    if (given && stored >= 0 && given != stored)
        return util_fail_kind(err, UTIL_ERR_PRECONDITION, "%s: the store holds %s %d, asked for %d",
                              name_of_store, name, stored, given);
    return 0;
}

store_t *store_open(const char *where, int fc7_dim, int code_bits, util_err_t *err) {
    if (!where || !*where) {
        util_fail_kind(err, UTIL_ERR_INVALID, "store: empty path");
        return NULL;
    }
    const store_ops_t *ops = store_is_database_url(where) ? &store_pg_ops : &store_sqlite_ops;
    /* Messages name the store; a URL's password is not repeated in them. */
    char name[sizeof((store_t *)0)->name];
    if (strlen(where) >= sizeof name) {
        util_fail_kind(err, UTIL_ERR_INVALID, "%s: the path is longer than %zu bytes", where,
                       sizeof name - 1);
        return NULL;
    }
    store_redact_url(where, name, sizeof name);
    if (check_shape(name, "fc7_dim", fc7_dim, -1, STORE_MAX_FC7_DIM, err) ||
        check_shape(name, "code_bits", code_bits, -1, STORE_MAX_CODE_BITS, err))
        return NULL;
    if (code_bits % 8) {
        util_fail_kind(err, UTIL_ERR_INVALID, "%s: code_bits %d is not a multiple of 8", name,
                       code_bits);
        return NULL;
    }
    char uuid[33];
    make_uuid(uuid);
    store_t *s = ops->open(where, fc7_dim, code_bits, uuid, err);
    if (!s) return NULL;
    s->ops = ops;
    snprintf(s->name, sizeof s->name, "%s", name);
    if (check_shape(name, "fc7_dim", fc7_dim, s->fc7_dim, STORE_MAX_FC7_DIM, err) ||
        check_shape(name, "code_bits", code_bits, s->code_bits, STORE_MAX_CODE_BITS, err)) {
        ops->close(s);
        return NULL;
    }
    return s;
}

void store_free(store_t *s) {
    if (s) s->ops->close(s);
}

const char *store_backend(const store_t *s) {
    return s->ops->backend;
}
const char *store_name(const store_t *s) {
    return s->name;
}

void store_redact_url(const char *where, char *out, size_t cap) {
    snprintf(out, cap, "%s", where);
    if (!store_is_database_url(where)) return;
    /* postgresql://user:secret@host/db -> postgresql://user:***@host/db */
    char *scheme = strstr(out, "://");
    if (scheme) {
        char *at = strchr(scheme + 3, '@'), *colon = strchr(scheme + 3, ':');
        if (at && colon && colon < at) {
            char rest[1024];
            snprintf(rest, sizeof rest, "%s", at);
            snprintf(colon + 1, cap - (size_t)(colon + 1 - out), "***%s", rest);
        }
    }
    /* ... password=secret ... in a URL's query or a key=value string */
    char *pw = strstr(out, "password=");
    if (pw) {
        char *end = pw + 9;
        while (*end && *end != ' ' && *end != '&')
            end++;
        char rest[1024];
        snprintf(rest, sizeof rest, "%s", end);
        snprintf(pw + 9, cap - (size_t)(pw + 9 - out), "***%s", rest);
    }
}

static int setting_key(const char *key, char *full, size_t cap, util_err_t *err) {
    if (!key || !*key || strlen(key) > 60)
        return util_fail_kind(err, UTIL_ERR_INVALID, "store: bad setting name");
    snprintf(full, cap, "setting.%s", key);
    return 0;
}

int store_setting_get(store_t *s, const char *key, char *buf, size_t cap, util_err_t *err) {
    char full[80];
    if (!s || !buf || setting_key(key, full, sizeof full, err)) return -1;
    return s->ops->setting_get(s, full, buf, cap, err);
}

int store_setting_set(store_t *s, const char *key, const char *value, util_err_t *err) {
    char full[80];
    if (!s || !value || setting_key(key, full, sizeof full, err)) return -1;
    return s->ops->setting_set(s, full, value, err);
}

int store_fc7_dim(const store_t *s) {
    return s->fc7_dim;
}
int store_code_bits(const store_t *s) {
    return s->code_bits;
}
const char *store_uuid(const store_t *s) {
    return s->uuid;
}

int64_t store_count(store_t *s, util_err_t *err) {
    return s->ops->count(s, err);
}
int64_t store_last_seq(store_t *s, util_err_t *err) {
    return s->ops->last_seq(s, err);
}

static int validate_item(const store_t *s, const store_item_t *it, size_t i, util_err_t *err) {
    if (it->id < 0 && it->id != STORE_ID_AUTO)
        return util_fail_kind(err, UTIL_ERR_INVALID, "item %zu: id %" PRId64 " is negative", i,
                              it->id);
    if (it->uri && strlen(it->uri) > STORE_MAX_URI)
        return util_fail_kind(err, UTIL_ERR_INVALID, "item %zu: uri is %zu bytes, the limit is %d",
                              i, strlen(it->uri), STORE_MAX_URI);
    if (it->fc7 && !s->fc7_dim)
        return util_fail_kind(err, UTIL_ERR_PRECONDITION,
                              "item %zu: has an FC7 vector but the store keeps none", i);
    if (it->code && !s->code_bits)
        return util_fail_kind(err, UTIL_ERR_PRECONDITION,
                              "item %zu: has a code but the store keeps none", i);
    if (it->fc7)
        for (int j = 0; j < s->fc7_dim; j++)
            if (!isfinite(it->fc7[j]))
                return util_fail_kind(err, UTIL_ERR_INVALID, "item %zu: FC7 component %d is %s", i,
                                      j, isnan(it->fc7[j]) ? "NaN" : "infinite");
    return 0;
}

int store_add(store_t *s, store_item_t *items, size_t n, util_err_t *err) {
    if (n && !items) return util_fail_kind(err, UTIL_ERR_INVALID, "store_add: items is NULL");
    for (size_t i = 0; i < n; i++)
        if (validate_item(s, &items[i], i, err)) return -1;
    if (!n) return 0;
    int64_t *assigned = malloc(n * sizeof *assigned);
    if (!assigned)
        return util_fail_kind(err, UTIL_ERR_LIMIT, "store_add: out of memory for %zu items", n);
    int64_t t = now_us(), first = 0;
    int rc = s->ops->add(s, items, n, t, assigned, &first, err);
    if (rc == 0) /* handed back only once they are committed */
        for (size_t i = 0; i < n; i++) {
            items[i].id = assigned[i];
            items[i].seq = first + (int64_t)i;
            items[i].added_us = t;
        }
    free(assigned);
    return rc;
}

int store_remove(store_t *s, const int64_t *ids, size_t n, util_err_t *err) {
    if (n && !ids) return util_fail_kind(err, UTIL_ERR_INVALID, "store_remove: ids is NULL");
    if (!n) return 0;
    return s->ops->remove(s, ids, n, err);
}

void store_record_clear(store_record_t *rec) {
    if (!rec) return;
    free(rec->uri);
    free(rec->fc7);
    free(rec->code);
    memset(rec, 0, sizeof *rec);
}

int store_get(store_t *s, int64_t id, store_record_t *out, util_err_t *err) {
    return s->ops->get(s, id, out, err);
}

int store_scan(store_t *s, store_scan_fn fn, void *ctx, int64_t *seq, util_err_t *err) {
    return s->ops->scan(s, fn, ctx, seq, err);
}

int store_changes(store_t *s, int64_t after_seq, store_change_t **changes, size_t *n,
                  int64_t *oldest_seq, util_err_t *err) {
    *changes = NULL;
    *n = 0;
    *oldest_seq = 0;
    return s->ops->changes(s, after_seq, changes, n, oldest_seq, err);
}

int store_trim_changes(store_t *s, int64_t upto_seq, util_err_t *err) {
    return s->ops->trim_changes(s, upto_seq, err);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int store_wait_change(store_t *s, int64_t after_seq, int timeout_ms, util_err_t *err) {
    if (timeout_ms < 0) return util_fail_kind(err, UTIL_ERR_INVALID, "store: negative timeout");
    if (s->ops->wait_change) return s->ops->wait_change(s, after_seq, timeout_ms, err);
    const int64_t end = now_ms() + timeout_ms;
    for (;;) {
        int64_t last = store_last_seq(s, err);
        if (last < 0) return -1;
        if (last > after_seq) return 1;
        int64_t left = end - now_ms();
        if (left <= 0) return 0;
        sleep_ms(left < 20 ? (int)left : 20);
    }
}

/* ---- copy ---- */

typedef struct copy_ctx {
    store_t *to;
    store_item_t *batch;
    size_t n, cap;
    int64_t copied;
} copy_ctx_t;

static int copy_flush(copy_ctx_t *c, util_err_t *err) {
    if (!c->n) return 0;
    if (store_add(c->to, c->batch, c->n, err)) return -1;
    c->copied += (int64_t)c->n;
    return 0;
}

/* A scanned item's buffers live only during its callback, so each entry of
 * the batch owns copies of them until the batch is written. */
static void copy_release(copy_ctx_t *c) {
    for (size_t i = 0; i < c->n; i++) {
        free((char *)c->batch[i].uri);
        free((float *)c->batch[i].fc7);
        free((uint8_t *)c->batch[i].code);
    }
    c->n = 0;
}

static int copy_item(void *ctx, const store_item_t *it, util_err_t *err) {
    copy_ctx_t *c = ctx;
    store_item_t *d = &c->batch[c->n];
    memset(d, 0, sizeof *d);
    d->id = it->id;
    d->label = it->label;
    size_t fb = sizeof(float) * (size_t)store_fc7_dim(c->to);
    size_t cb = (size_t)store_code_bits(c->to) / 8;
    int bad = !(d->uri = strdup(it->uri ? it->uri : ""));
    if (it->fc7 && !bad && (d->fc7 = malloc(fb))) memcpy((float *)d->fc7, it->fc7, fb);
    if (it->code && !bad && (d->code = malloc(cb))) memcpy((uint8_t *)d->code, it->code, cb);
    c->n++;
    if (bad || (it->fc7 && !d->fc7) || (it->code && !d->code))
        return util_fail_kind(err, UTIL_ERR_LIMIT, "copy: out of memory");
    if (c->n < c->cap) return 0;
    int rc = copy_flush(c, err);
    copy_release(c);
    return rc;
}

int store_copy(store_t *from, store_t *to, int64_t *copied, util_err_t *err) {
    *copied = 0;
    if (store_fc7_dim(from) != store_fc7_dim(to) || store_code_bits(from) != store_code_bits(to))
        return util_fail_kind(err, UTIL_ERR_PRECONDITION,
                              "copy: %s holds fc7_dim %d and code_bits %d, %s holds %d and %d",
                              from->name, store_fc7_dim(from), store_code_bits(from), to->name,
                              store_fc7_dim(to), store_code_bits(to));
    int64_t there = store_count(to, err);
    if (there < 0) return -1;
    if (there)
        return util_fail_kind(err, UTIL_ERR_EXISTS, "copy: %s already holds %" PRId64 " items",
                              to->name, there);
    copy_ctx_t c = {.to = to, .cap = 512};
    if (!(c.batch = calloc(c.cap, sizeof *c.batch)))
        return util_fail_kind(err, UTIL_ERR_LIMIT, "copy: out of memory");
    int64_t seq = 0;
    int rc = store_scan(from, copy_item, &c, &seq, err);
    if (rc == 0) rc = copy_flush(&c, err);
    copy_release(&c);
    free(c.batch);
    if (rc) return util_fail_prefix(err, "copy from %s to %s", from->name, to->name);
    /* The settings (index factories) travel too. */
    static const char *keys[] = {"fc7_factory", "code_factory"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        char v[256];
        int f = store_setting_get(from, keys[k], v, sizeof v, err);
        if (f < 0 || (f && store_setting_set(to, keys[k], v, err))) return -1;
    }
    int64_t a = store_count(from, err), b = store_count(to, err);
    if (a < 0 || b < 0) return -1;
    if (a != c.copied || b != c.copied)
        return util_fail_kind(err, UTIL_ERR_CORRUPT,
                              "copy: %" PRId64 " items copied, but %s now holds %" PRId64
                              " and %s %" PRId64,
                              c.copied, from->name, a, to->name, b);
    *copied = c.copied;
    return 0;
}
