/* The index: a store plus one FAISS index per kind (FC7, codes), kept in step
 * with the store's change log.
 *
 * Each kind remembers the store sequence number its in-memory index reflects
 * (applied_seq). Our own writes are applied from memory when they directly
 * follow it; otherwise (another process wrote the store) the log is replayed.
 * Replay applies changes in order: a remove removes; an add adds the item's
 * current vector only when the item still carries that add's sequence number
 * (a later remove or re-add supersedes it). An index that cannot remove keeps
 * removed ids in a filter; re-adding such an id needs a rebuild. */
#include "index/index.h"
#include "index/vectors.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define ADD_BATCH 4096   /* vectors handed to FAISS at once during a rebuild */
#define REMOVED_MAX 1024 /* removed ids a hash/HNSW index may hold before a rebuild */

typedef struct slot {
    index_kind_t kind;
    const char *name; /* "FC7" or "code" */
    char factory[64]; /* "" when this kind is off */
    char path[1100];  /* snapshot file */
    int dim;          /* floats or bits */
    size_t row_bytes;
    vecindex_t *v;
    int64_t applied_seq;  /* store state the index reflects */
    int64_t untrained_n;  /* vectors in the store while v is untrained */
    int64_t snapshot_seq; /* -1 when none written or loaded */
} slot_t;

struct index {
    store_t *store;
    index_options_t opt;
    vec_params_t params;
    slot_t slot[2];
    pthread_rwlock_t lock;     /* searches read; writes and rebuilds write */
    pthread_mutex_t snap_lock; /* one snapshot at a time */
    int64_t changes_since_snapshot;
    int64_t seen_seq; /* the store's last seq as last followed (no index open) */
    /* For readers that must not wait for the lock (metrics): the applied seq
     * and the store's last seq as this index last saw them. */
    _Atomic int64_t applied_pub, store_pub;
    /* The follower thread (opt.follow): it broadcasts `followed` after each
     * round; stop asks it to end. */
    pthread_t follower;
    int follower_started, follow_stop;
    pthread_mutex_t follow_lock;
    pthread_cond_t followed;
    char opened_from[160];
};

static void publish_locked(index_t *ix, int64_t store_seq);

static int64_t applied_locked(index_t *ix);
static void ix_log(index_t *ix, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void ix_log(index_t *ix, const char *fmt, ...) {
    if (!ix->opt.log) return;
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ix->opt.log(ix->opt.log_ctx, line);
}

void index_options_default(index_options_t *opt) {
    memset(opt, 0, sizeof *opt);
}

static const void *item_vector(const slot_t *s, const store_item_t *it) {
    return s->kind == INDEX_FC7 ? (const void *)it->fc7 : (const void *)it->code;
}

/* ---- rebuild ---- */

typedef struct sample_ctx {
    slot_t *s;
    uint8_t *buf; /* reservoir of up to cap rows */
    int64_t cap, seen;
    util_rng_t rng;
} sample_ctx_t;

static int sample_fn(void *ctx, const store_item_t *it, util_err_t *err) {
    (void)err;
    sample_ctx_t *c = ctx;
    const void *x = item_vector(c->s, it);
    if (!x) return 0;
    int64_t slot =
        c->seen < c->cap ? c->seen : (int64_t)(util_rng_u64(&c->rng) % (uint64_t)(c->seen + 1));
    if (slot < c->cap) memcpy(c->buf + (size_t)slot * c->s->row_bytes, x, c->s->row_bytes);
    c->seen++;
    return 0;
}

typedef struct fill_ctx {
    slot_t *slots[2];
    int nslots;
    uint8_t *buf[2];
    int64_t *ids[2];
    size_t n[2];
} fill_ctx_t;

static int fill_flush(fill_ctx_t *c, int i, util_err_t *err) {
    if (!c->n[i]) return 0;
    if (vecindex_add(c->slots[i]->v, c->n[i], c->buf[i], c->ids[i], err)) return -1;
    c->n[i] = 0;
    return 0;
}

static int fill_fn(void *ctx, const store_item_t *it, util_err_t *err) {
    fill_ctx_t *c = ctx;
    for (int i = 0; i < c->nslots; i++) {
        const void *x = item_vector(c->slots[i], it);
        if (!x) continue;
        memcpy(c->buf[i] + c->n[i] * c->slots[i]->row_bytes, x, c->slots[i]->row_bytes);
        c->ids[i][c->n[i]++] = it->id;
        if (c->n[i] == ADD_BATCH && fill_flush(c, i, err)) return -1;
    }
    return 0;
}

/* Rebuilds the slots in mask (bit = kind) from the store: fresh FAISS
 * indexes, trained on a sample when they need it, then filled. */
static int rebuild_locked(index_t *ix, unsigned mask, util_err_t *err) {
    fill_ctx_t fc;
    memset(&fc, 0, sizeof fc);
    int ret = -1;
    for (int k = 0; k < 2; k++) {
        slot_t *s = &ix->slot[k];
        if (!(mask & (1u << k)) || !s->factory[0]) continue;
        vecindex_free(s->v);
        s->snapshot_seq = -1;
        s->v = vecindex_create(s->kind, s->dim, s->factory, &ix->params, err);
        if (!s->v) {
            util_fail_prefix(err, "%s index", s->name);
            goto out;
        }
        s->untrained_n = 0;
        if (!vecindex_is_trained(s->v)) {
            sample_ctx_t sc = {.s = s, .cap = vecindex_train_max(s->v)};
            util_rng_seed(&sc.rng, 0x1d3c5);
            size_t bytes;
            if (util_mul_size((size_t)sc.cap, s->row_bytes, &bytes) || !(sc.buf = malloc(bytes))) {
                util_fail(err, "%s index: out of memory for the training sample", s->name);
                goto out;
            }
            int rc = store_scan(ix->store, sample_fn, &sc, NULL, err);
            if (!rc && sc.seen >= vecindex_train_min(s->v)) {
                int64_t n = sc.seen < sc.cap ? sc.seen : sc.cap;
                rc = vecindex_train(s->v, (size_t)n, sc.buf, err);
                if (!rc)
                    ix_log(ix,
                           "index: trained the %s %s index on %" PRId64 " of %" PRId64 " vectors",
                           s->name, s->factory, n, sc.seen);
            } else if (!rc) {
                s->untrained_n = sc.seen;
                ix_log(ix,
                       "index: the %s %s index waits for %" PRId64
                       " vectors before training (the store has %" PRId64 ")",
                       s->name, s->factory, vecindex_train_min(s->v), sc.seen);
            }
            free(sc.buf);
            if (rc) goto out;
        }
        if (!vecindex_is_trained(s->v)) continue; /* nothing can be added yet */
        int i = fc.nslots++;
        fc.slots[i] = s;
        fc.buf[i] = malloc(ADD_BATCH * s->row_bytes);
        fc.ids[i] = malloc(ADD_BATCH * sizeof(int64_t));
        if (!fc.buf[i] || !fc.ids[i]) {
            util_fail(err, "out of memory");
            goto out;
        }
    }
    int64_t seq = 0;
    if (store_scan(ix->store, fill_fn, &fc, &seq, err)) goto out;
    for (int i = 0; i < fc.nslots; i++)
        if (fill_flush(&fc, i, err)) goto out;
    for (int k = 0; k < 2; k++)
        if ((mask & (1u << k)) && ix->slot[k].factory[0]) ix->slot[k].applied_seq = seq;
    ret = 0;
out:
    for (int i = 0; i < fc.nslots; i++) {
        free(fc.buf[i]);
        free(fc.ids[i]);
    }
    if (ret) /* a half-built index must not serve */
        for (int k = 0; k < 2; k++)
            if (mask & (1u << k)) {
                vecindex_free(ix->slot[k].v);
                ix->slot[k].v = NULL;
            }
    return ret;
}

/* ---- catching up with the store ---- */

/* Replays the log after s->applied_seq into s. Returns 1 when the slot needs
 * a rebuild instead (log trimmed past it, or a removed id re-added to an
 * index that cannot remove), 0 when done, -1 on error. */
static int replay_slot(index_t *ix, slot_t *s, util_err_t *err) {
    store_change_t *ch = NULL;
    size_t n = 0;
    int64_t oldest;
    int64_t last = store_last_seq(ix->store, err);
    if (last < 0) return -1;
    if (last == s->applied_seq) return 0;
    if (last < s->applied_seq) return 1; /* the store went back in time (restored?) */
    if (store_changes(ix->store, s->applied_seq, &ch, &n, &oldest, err)) return -1;
    if (!oldest || oldest > s->applied_seq + 1) {
        free(ch);
        return 1;
    }
    int ret = 0;
    store_record_t rec;
    memset(&rec, 0, sizeof rec);
    for (size_t i = 0; i < n && !ret; i++) {
        if (ch[i].op == STORE_OP_REMOVE) {
            ret = vecindex_remove(s->v, 1, &ch[i].id, err);
        } else {
            util_err_t e2;
            if (store_get(ix->store, ch[i].id, &rec, &e2)) continue; /* removed since */
            const void *x = s->kind == INDEX_FC7 ? (const void *)rec.fc7 : (const void *)rec.code;
            if (rec.seq == ch[i].seq && x) {
                if (!vecindex_is_trained(s->v))
                    s->untrained_n++;
                else if (vecindex_holds_removed(s->v, rec.id))
                    ret = 1;
                else
                    ret = vecindex_add(s->v, 1, x, &rec.id, err);
            }
            store_record_clear(&rec);
        }
        if (!ret) s->applied_seq = ch[i].seq;
    }
    /* The log may hold changes committed after `last` was read: applied
     * already, so applied_seq never moves back to `last`. */
    if (!ret && s->applied_seq < last) s->applied_seq = last;
    free(ch);
    return ret;
}

/* Brings every slot up to the store's state; rebuilds when replay cannot. */
static int catch_up_locked(index_t *ix, util_err_t *err) {
    unsigned rebuild = 0;
    for (int k = 0; k < 2; k++) {
        slot_t *s = &ix->slot[k];
        if (!s->factory[0]) continue;
        if (!s->v) {
            rebuild |= 1u << k;
            continue;
        }
        int rc = replay_slot(ix, s, err);
        if (rc < 0) return -1;
        if (rc > 0) rebuild |= 1u << k;
        /* An IVF index that was waiting for data trains once there is enough. */
        if (!rc && s->v && !vecindex_is_trained(s->v) && s->untrained_n >= vecindex_train_min(s->v))
            rebuild |= 1u << k;
    }
    if (!rebuild) return 0;
    return rebuild_locked(ix, rebuild, err);
}

/* ---- following the store (replicas) ---- */

#define FOLLOW_WAIT_MS 200 /* a follower's longest sleep: how soon it sees stop */

static int64_t follow_round(index_t *ix, util_err_t *err);

static int follow_stopping(index_t *ix) {
    pthread_mutex_lock(&ix->follow_lock);
    int stop = ix->follow_stop;
    pthread_mutex_unlock(&ix->follow_lock);
    return stop;
}

static void *follower_main(void *arg) {
    index_t *ix = arg;
    int failing = 0;
    while (!follow_stopping(ix)) {
        util_err_t err;
        int64_t applied = follow_round(ix, &err);
        if (applied < 0 && !failing)
            ix_log(ix,
                   "index: following the store failed (the indexes keep answering from "
                   "what they hold; retrying): %s",
                   err.msg);
        else if (applied >= 0 && failing)
            ix_log(ix, "index: following the store again, at seq %" PRId64, applied);
        failing = applied < 0;
        pthread_mutex_lock(&ix->follow_lock);
        pthread_cond_broadcast(&ix->followed);
        pthread_mutex_unlock(&ix->follow_lock);
        if (failing) {
            struct timespec ts = {0, FOLLOW_WAIT_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

static int follower_start(index_t *ix, util_err_t *err) {
    if (pthread_create(&ix->follower, NULL, follower_main, ix))
        return util_fail_kind(err, UTIL_ERR_LIMIT, "index: cannot start the follower thread");
    ix->follower_started = 1;
    return 0;
}

/* ---- open / free ---- */

static int make_dir(const char *dir, util_err_t *err) {
    if (mkdir(dir, 0777) && errno != EEXIST)
        return util_fail_kind(err, UTIL_ERR_IO, "%s: cannot create folder: %s", dir,
                              strerror(errno));
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return util_fail_kind(err, UTIL_ERR_PRECONDITION, "%s: not a folder", dir);
    return 0;
}

static int resolve_params(vec_params_t *p, int nprobe, int ef_search, int nflip, util_err_t *err) {
    if (nprobe < 0 || ef_search < 0 || nflip < -1)
        return util_fail_kind(err, UTIL_ERR_INVALID,
                              "index: negative nprobe (%d), ef_search (%d) or nflip (%d)", nprobe,
                              ef_search, nflip);
    p->nprobe = nprobe ? nprobe : 16;
    p->ef_search = ef_search ? ef_search : 64;
    p->nflip = nflip == -1 ? 0 : nflip ? nflip : 2;
    return 0;
}

index_t *index_open(const char *dir, const index_options_t *opt, util_err_t *err) {
    index_options_t defaults;
    index_options_default(&defaults);
    if (!opt) opt = &defaults;
    if (!dir || !*dir) {
        util_fail_kind(err, UTIL_ERR_INVALID, "index: empty folder name");
        return NULL;
    }
    if (strlen(dir) > 1000) {
        util_fail_kind(err, UTIL_ERR_INVALID, "index: folder name too long");
        return NULL;
    }
    vec_params_t params;
    if (resolve_params(&params, opt->nprobe, opt->ef_search, opt->nflip, err)) return NULL;
    if (opt->snapshot_every < 0) {
        util_fail_kind(err, UTIL_ERR_INVALID, "index: negative snapshot_every");
        return NULL;
    }
    /* A database URL names the store; the snapshots then go to
     * opt->snapshot_dir, or nowhere. */
    const int remote = store_is_database_url(dir);
    const char *snap_dir = remote ? opt->snapshot_dir : dir;
    if (snap_dir && make_dir(snap_dir, err)) return NULL;
    index_t *ix = calloc(1, sizeof *ix);
    if (!ix) {
        util_fail(err, "index: out of memory");
        return NULL;
    }
    ix->opt = *opt;
    ix->params = params;
    pthread_rwlock_init(&ix->lock, NULL);
    pthread_mutex_init(&ix->snap_lock, NULL);
    pthread_mutex_init(&ix->follow_lock, NULL);
    pthread_cond_init(&ix->followed, NULL);

    /* The folder's files: items.db here, fc7.index and code.index (the
     * longest name) in the slots' path fields below, all as long as these. */
    char path[sizeof ix->slot[0].path];
    if (snap_dir && strlen(snap_dir) + sizeof "/code.index" > sizeof path) {
        util_fail_kind(err, UTIL_ERR_INVALID,
                       "%s: the index folder's path is longer than %zu bytes", snap_dir,
                       sizeof path - sizeof "/code.index");
        index_free(ix);
        return NULL;
    }
    if (remote)
        snprintf(path, sizeof path, "%s", dir);
    else
        snprintf(path, sizeof path, "%s/items.db", dir);
    ix->store = store_open(path, opt->fc7_dim, opt->code_bits, err);
    if (!ix->store) {
        index_free(ix);
        return NULL;
    }
    /* The factories: as given, else as the store was last opened with, else
     * the defaults; the choice is written back so the next open keeps it. */
    static const char *setting[2] = {"fc7_factory", "code_factory"};
    const char *given[2] = {opt->fc7_factory, opt->code_factory};
    char stored[2][64];
    const char *factories[2];
    int found[2];
    for (int k = 0; k < 2; k++) {
        found[k] = store_setting_get(ix->store, setting[k], stored[k], sizeof stored[k], err);
        if (found[k] < 0) {
            index_free(ix);
            return NULL;
        }
        factories[k] = given[k]         ? given[k]
                       : found[k]       ? stored[k]
                       : k == INDEX_FC7 ? "Flat"
                                        : "BFlat";
    }
    int dims[2] = {store_fc7_dim(ix->store), store_code_bits(ix->store)};
    for (int k = 0; k < 2; k++) {
        slot_t *s = &ix->slot[k];
        s->kind = (index_kind_t)k;
        s->name = k == INDEX_FC7 ? "FC7" : "code";
        s->dim = dims[k];
        s->row_bytes = k == INDEX_FC7 ? sizeof(float) * (size_t)dims[k] : (size_t)dims[k] / 8;
        s->snapshot_seq = -1;
        if (snap_dir)
            snprintf(s->path, sizeof s->path, "%s/%s.index", snap_dir,
                     k == INDEX_FC7 ? "fc7" : "code");
        if (strlen(factories[k]) >= sizeof s->factory) {
            util_fail(err, "%s factory '%s' is too long", s->name, factories[k]);
            index_free(ix);
            return NULL;
        }
        if (dims[k]) snprintf(s->factory, sizeof s->factory, "%s", factories[k]);
    }

    /* Load what snapshots there are; anything unusable is rebuilt below. */
    char how[2][64];
    for (int k = 0; k < 2; k++) {
        slot_t *s = &ix->slot[k];
        snprintf(how[k], sizeof how[k], "off");
        if (!s->factory[0]) continue;
        struct stat st;
        if (!s->path[0]) {
            snprintf(how[k], sizeof how[k], "rebuilt (no snapshot folder)");
            continue;
        }
        if (stat(s->path, &st)) {
            snprintf(how[k], sizeof how[k], "rebuilt (no snapshot)");
            continue;
        }
        util_err_t why;
        int64_t seq = 0;
        s->v = vecindex_load(s->path, s->kind, s->dim, s->factory, &ix->params,
                             store_uuid(ix->store), &seq, &why);
        if (!s->v) {
            ix_log(ix, "index: %s snapshot rejected, rebuilding from the store: %s", s->name,
                   why.msg);
            snprintf(how[k], sizeof how[k], "rebuilt (snapshot rejected)");
            continue;
        }
        s->applied_seq = s->snapshot_seq = seq;
        int rc = replay_slot(ix, s, err);
        if (rc < 0) {
            index_free(ix);
            return NULL;
        }
        if (rc > 0) {
            ix_log(ix, "index: %s snapshot (seq %" PRId64 ") is stale, rebuilding from the store",
                   s->name, seq);
            vecindex_free(s->v);
            s->v = NULL;
            s->snapshot_seq = -1;
            snprintf(how[k], sizeof how[k], "rebuilt (stale snapshot)");
        } else {
            snprintf(how[k], sizeof how[k], "snapshot seq %" PRId64 " + log to %" PRId64, seq,
                     s->applied_seq);
        }
    }
    if (catch_up_locked(ix, err)) {
        index_free(ix);
        return NULL;
    }
    /* Kept only once they worked: a mistyped factory is not remembered. */
    for (int k = 0; k < 2; k++)
        if ((!found[k] || strcmp(stored[k], factories[k])) &&
            store_setting_set(ix->store, setting[k], factories[k], err)) {
            index_free(ix);
            return NULL;
        }
    snprintf(ix->opened_from, sizeof ix->opened_from, "FC7: %s; code: %s", how[0], how[1]);
    ix->seen_seq = store_last_seq(ix->store, err);
    if (ix->seen_seq < 0) {
        index_free(ix);
        return NULL;
    }
    publish_locked(ix, ix->seen_seq);
    if (opt->follow && follower_start(ix, err)) {
        index_free(ix);
        return NULL;
    }
    return ix;
}

void index_free(index_t *ix) {
    if (!ix) return;
    if (ix->follower_started) {
        pthread_mutex_lock(&ix->follow_lock);
        ix->follow_stop = 1;
        pthread_mutex_unlock(&ix->follow_lock);
        pthread_join(ix->follower, NULL);
    }
    for (int k = 0; k < 2; k++)
        vecindex_free(ix->slot[k].v);
    store_free(ix->store);
    pthread_rwlock_destroy(&ix->lock);
    pthread_mutex_destroy(&ix->snap_lock);
    pthread_mutex_destroy(&ix->follow_lock);
    pthread_cond_destroy(&ix->followed);
    free(ix);
}

store_t *index_store(index_t *ix) {
    return ix->store;
}

/* ---- snapshots ---- */

static int snapshot_locked(index_t *ix, util_err_t *err) {
    int64_t trim = INT64_MAX;
    for (int k = 0; k < 2; k++) {
        slot_t *s = &ix->slot[k];
        if (!s->factory[0] || !s->v || !s->path[0]) continue;
        if (s->snapshot_seq != s->applied_seq &&
            vecindex_save(s->v, s->path, store_uuid(ix->store), s->applied_seq, err))
            return util_fail_prefix(err, "%s snapshot", s->name);
        s->snapshot_seq = s->applied_seq;
        if (s->applied_seq < trim) trim = s->applied_seq;
    }
    ix->changes_since_snapshot = 0;
    /* A shared (PostgreSQL) log is not trimmed by one of its readers: the
     * other replicas replay it from their own snapshots. */
    if (!strcmp(store_backend(ix->store), "postgresql")) return 0;
    if (trim != INT64_MAX && store_trim_changes(ix->store, trim, err)) return -1;
    return 0;
}

int index_snapshot(index_t *ix, util_err_t *err) {
    pthread_mutex_lock(&ix->snap_lock);
    pthread_rwlock_wrlock(&ix->lock);
    int rc = catch_up_locked(ix, err);
    if (!rc) rc = snapshot_locked(ix, err);
    pthread_rwlock_unlock(&ix->lock);
    pthread_mutex_unlock(&ix->snap_lock);
    return rc;
}

int index_rebuild(index_t *ix, util_err_t *err) {
    pthread_rwlock_wrlock(&ix->lock);
    int rc = rebuild_locked(ix, 3u, err);
    pthread_rwlock_unlock(&ix->lock);
    return rc;
}

/* ---- writes ---- */

/* Publishes the seqs for index_seqs (write lock held). */
static void publish_locked(index_t *ix, int64_t store_seq) {
    atomic_store(&ix->applied_pub, applied_locked(ix));
    if (store_seq > atomic_load(&ix->store_pub)) atomic_store(&ix->store_pub, store_seq);
}

static void after_write_locked(index_t *ix, size_t n) {
    publish_locked(ix, applied_locked(ix));
    ix->changes_since_snapshot += (int64_t)n;
    if (ix->opt.snapshot_every && ix->changes_since_snapshot >= ix->opt.snapshot_every) {
        util_err_t e;
        /* The write itself is durable in the store: a failed snapshot is only
         * reported (the next open replays the log instead). */
        if (snapshot_locked(ix, &e)) ix_log(ix, "index: automatic snapshot failed: %s", e.msg);
    }
}

/* Applies our own add of items[0..n) (seqs first..first+n-1) to slot s. */
static int apply_add(index_t *ix, slot_t *s, const store_item_t *items, size_t n, util_err_t *err) {
    if (!s->v || s->applied_seq != items[0].seq - 1) return 1; /* not in step: replay */
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (item_vector(s, &items[i])) {
            if (vecindex_holds_removed(s->v, items[i].id)) return 1;
            m++;
        }
    if (!vecindex_is_trained(s->v)) {
        s->untrained_n += (int64_t)m;
        s->applied_seq = items[n - 1].seq;
        return s->untrained_n >= vecindex_train_min(s->v) ? 1 : 0;
    }
    uint8_t *buf = malloc(m * s->row_bytes + 1);
    int64_t *ids = malloc(m * sizeof *ids + 1);
    if (!buf || !ids) {
        free(buf);
        free(ids);
        return util_fail(err, "out of memory");
    }
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        const void *x = item_vector(s, &items[i]);
        if (!x) continue;
        memcpy(buf + j * s->row_bytes, x, s->row_bytes);
        ids[j++] = items[i].id;
    }
    int rc = vecindex_add(s->v, m, buf, ids, err);
    free(buf);
    free(ids);
    if (rc) return -1;
    s->applied_seq = items[n - 1].seq;
    (void)ix;
    return 0;
}

int index_add(index_t *ix, store_item_t *items, size_t n, util_err_t *err) {
    if (!n) return 0;
    pthread_rwlock_wrlock(&ix->lock);
    int ret = store_add(ix->store, items, n, err);
    if (ret) {
        pthread_rwlock_unlock(&ix->lock);
        return -1;
    }
    int need_catch_up = 0;
    for (int k = 0; k < 2; k++) {
        slot_t *s = &ix->slot[k];
        if (!s->factory[0]) continue;
        util_err_t e;
        int rc = apply_add(ix, s, items, n, &e);
        if (rc < 0) { /* stored but not indexed: rebuild this one from the store */
            ix_log(ix, "index: adding to the %s index failed (%s); rebuilding it", s->name, e.msg);
            vecindex_free(s->v);
            s->v = NULL;
        }
        if (rc) need_catch_up = 1;
    }
    if (need_catch_up && catch_up_locked(ix, err)) {
        util_fail_prefix(err, "items stored (durably) but not indexed");
        ret = -1;
    }
    after_write_locked(ix, n);
    pthread_rwlock_unlock(&ix->lock);
    return ret;
}

int index_remove(index_t *ix, const int64_t *ids, size_t n, util_err_t *err) {
    if (!n) return 0;
    pthread_rwlock_wrlock(&ix->lock);
    int64_t before = store_last_seq(ix->store, err);
    int ret = before < 0 ? -1 : store_remove(ix->store, ids, n, err);
    if (ret) {
        pthread_rwlock_unlock(&ix->lock);
        return -1;
    }
    /* Our removes took sequence numbers before+1..before+n unless another
     * process wrote in between; then the log replay below sorts it out
     * (removing twice is harmless). */
    int64_t after = store_last_seq(ix->store, err);
    int in_step = after == before + (int64_t)n;
    unsigned rebuild = 0;
    for (int k = 0; k < 2; k++) {
        slot_t *s = &ix->slot[k];
        if (!s->factory[0] || !s->v || s->applied_seq != before) continue;
        util_err_t e;
        if (vecindex_remove(s->v, n, ids, &e)) {
            ix_log(ix, "index: removing from the %s index failed (%s); rebuilding it", s->name,
                   e.msg);
            rebuild |= 1u << k;
            continue;
        }
        if (in_step) s->applied_seq = after;
        /* Every search asks FAISS for k + (removed ids still held) results:
         * past REMOVED_MAX of them a rebuild is cheaper. */
        if (vecindex_n_removed(s->v) > REMOVED_MAX) rebuild |= 1u << k;
    }
    if (rebuild) {
        for (int k = 0; k < 2; k++)
            if (rebuild & (1u << k)) {
                vecindex_free(ix->slot[k].v);
                ix->slot[k].v = NULL;
            }
    }
    if (catch_up_locked(ix, err)) {
        util_fail_prefix(err, "items removed (durably) but the index is behind");
        ret = -1;
    }
    after_write_locked(ix, n);
    pthread_rwlock_unlock(&ix->lock);
    return ret;
}

/* ---- searches ---- */

static int check_search(index_t *ix, const slot_t *s, const void *q, size_t nq, int k,
                        const index_hit_t *hits, util_err_t *err) {
    (void)ix;
    if (!s->factory[0])
        return util_fail_kind(err, UTIL_ERR_PRECONDITION, "this index has no %s index (%s)",
                              s->name, s->dim ? "turned off" : "the store keeps no such vectors");
    if (k <= 0) return util_fail_kind(err, UTIL_ERR_INVALID, "k must be at least 1 (got %d)", k);
    if (k > INDEX_MAX_K)
        return util_fail_kind(err, UTIL_ERR_INVALID, "k=%d exceeds the limit of %d", k,
                              INDEX_MAX_K);
    if (nq && (!q || !hits))
        return util_fail_kind(err, UTIL_ERR_INVALID, "queries or hits is NULL");
    size_t cells;
    if (util_mul_size(nq, (size_t)k, &cells) || util_mul_size(cells, sizeof *hits, &cells))
        return util_fail_kind(err, UTIL_ERR_LIMIT, "%zu queries x k=%d results overflow", nq, k);
    if (!s->v)
        return util_fail_kind(err, UTIL_ERR_UNAVAILABLE,
                              "the %s index is unavailable (rebuild failed)", s->name);
    return 0;
}

int index_search_fc7(index_t *ix, const float *queries, size_t nq, int dim, int k,
                     index_hit_t *hits, util_err_t *err) {
    slot_t *s = &ix->slot[INDEX_FC7];
    if (s->factory[0] && dim != s->dim)
        return util_fail_kind(err, UTIL_ERR_INVALID,
                              "query has %d dimensions, the FC7 index has %d", dim, s->dim);
    for (size_t i = 0; queries && i < nq; i++)
        for (int j = 0; j < dim; j++) {
            float x = queries[i * (size_t)dim + (size_t)j];
            if (!isfinite(x))
                return util_fail_kind(err, UTIL_ERR_INVALID, "query %zu: component %d is %s", i, j,
                                      isnan(x) ? "NaN" : "infinite");
        }
    pthread_rwlock_rdlock(&ix->lock);
    int rc = check_search(ix, s, queries, nq, k, hits, err);
    if (!rc && nq) rc = vecindex_search(s->v, nq, queries, k, hits, err);
    pthread_rwlock_unlock(&ix->lock);
    return rc;
}

int index_search_code(index_t *ix, const uint8_t *codes, size_t nq, int code_bytes, int k,
                      index_hit_t *hits, util_err_t *err) {
    slot_t *s = &ix->slot[INDEX_CODE];
    if (s->factory[0] && code_bytes * 8 != s->dim)
        return util_fail_kind(err, UTIL_ERR_INVALID,
                              "query code has %d bytes, the code index has %d", code_bytes,
                              s->dim / 8);
    pthread_rwlock_rdlock(&ix->lock);
    int rc = check_search(ix, s, codes, nq, k, hits, err);
    if (!rc && nq) rc = vecindex_search(s->v, nq, codes, k, hits, err);
    pthread_rwlock_unlock(&ix->lock);
    return rc;
}

int index_search_id(index_t *ix, index_kind_t kind, int64_t id, int k, index_hit_t *hits,
                    util_err_t *err) {
    if (kind != INDEX_FC7 && kind != INDEX_CODE)
        return util_fail_kind(err, UTIL_ERR_INVALID, "unknown index kind %d", (int)kind);
    store_record_t rec;
    if (store_get(ix->store, id, &rec, err)) return -1;
    int rc;
    if (kind == INDEX_FC7) {
        rc = rec.fc7 ? index_search_fc7(ix, rec.fc7, 1, ix->slot[0].dim, k, hits, err)
                     : util_fail_kind(err, UTIL_ERR_PRECONDITION,
                                      "item %" PRId64 " has no FC7 vector", id);
    } else {
        rc = rec.code
                 ? index_search_code(ix, rec.code, 1, ix->slot[1].dim / 8, k, hits, err)
                 : util_fail_kind(err, UTIL_ERR_PRECONDITION, "item %" PRId64 " has no code", id);
    }
    store_record_clear(&rec);
    return rc;
}

int index_set_search_params(index_t *ix, int nprobe, int ef_search, int nflip, util_err_t *err) {
    vec_params_t p;
    if (resolve_params(&p, nprobe, ef_search, nflip, err)) return -1;
    pthread_rwlock_wrlock(&ix->lock);
    ix->params = p;
    int rc = 0;
    for (int k = 0; k < 2 && !rc; k++)
        if (ix->slot[k].v) rc = vecindex_set_params(ix->slot[k].v, &p, err);
    pthread_rwlock_unlock(&ix->lock);
    return rc;
}

int index_get(index_t *ix, int64_t id, store_record_t *out, util_err_t *err) {
    return store_get(ix->store, id, out, err);
}

static int64_t applied_locked(index_t *ix) {
    int64_t a = INT64_MAX;
    for (int k = 0; k < 2; k++)
        if (ix->slot[k].factory[0] && ix->slot[k].applied_seq < a) a = ix->slot[k].applied_seq;
    return a == INT64_MAX ? ix->seen_seq : a;
}

int64_t index_applied_seq(index_t *ix) {
    pthread_rwlock_rdlock(&ix->lock);
    int64_t a = applied_locked(ix);
    pthread_rwlock_unlock(&ix->lock);
    return a;
}

int64_t index_follow(index_t *ix, util_err_t *err) {
    /* Nothing new (the usual case when woken by a timeout): no write lock. */
    int64_t last = store_last_seq(ix->store, err);
    if (last < 0) return -1;
    if (last == index_applied_seq(ix)) return last;
    pthread_rwlock_wrlock(&ix->lock);
    int rc = catch_up_locked(ix, err);
    if (!rc && ix->seen_seq < last) ix->seen_seq = last;
    int64_t a = applied_locked(ix);
    publish_locked(ix, last);
    pthread_rwlock_unlock(&ix->lock);
    return rc ? -1 : a;
}

void index_seqs(index_t *ix, int64_t *store_seq, int64_t *applied_seq) {
    *applied_seq = atomic_load(&ix->applied_pub);
    *store_seq = atomic_load(&ix->store_pub);
    if (*store_seq < *applied_seq) *store_seq = *applied_seq;
}

/* One wait for a change (up to FOLLOW_WAIT_MS) and, when there is one, the
 * catch-up. The applied seq, or -1. */
static int64_t follow_round(index_t *ix, util_err_t *err) {
    int w = store_wait_change(ix->store, index_applied_seq(ix), FOLLOW_WAIT_MS, err);
    if (w < 0) return -1;
    return w ? index_follow(ix, err) : index_applied_seq(ix);
}

int index_wait_applied(index_t *ix, int64_t seq, int timeout_ms, util_err_t *err) {
    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += timeout_ms / 1000;
    end.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (end.tv_nsec >= 1000000000L) end.tv_sec++, end.tv_nsec -= 1000000000L;
    for (;;) {
        int64_t a = index_applied_seq(ix);
        if (a >= seq) return 0;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        if (now.tv_sec > end.tv_sec || (now.tv_sec == end.tv_sec && now.tv_nsec >= end.tv_nsec))
            return util_fail_kind(err, UTIL_ERR_DEADLINE,
                                  "index: seq %" PRId64 " not applied in %d ms (at %" PRId64 ")",
                                  seq, timeout_ms, a);
        if (ix->follower_started) {
            pthread_mutex_lock(&ix->follow_lock);
            pthread_cond_timedwait(&ix->followed, &ix->follow_lock, &end);
            pthread_mutex_unlock(&ix->follow_lock);
        } else {
            util_err_t e2;
            follow_round(ix, &e2);
        }
    }
}

int index_stats(index_t *ix, index_stats_t *st, util_err_t *err) {
    memset(st, 0, sizeof *st);
    pthread_rwlock_rdlock(&ix->lock);
    st->applied_seq = applied_locked(ix);
    st->items = store_count(ix->store, err);
    st->seq = st->items < 0 ? -1 : store_last_seq(ix->store, err);
    st->fc7_dim = ix->slot[0].dim;
    st->code_bits = ix->slot[1].dim;
    snprintf(st->fc7_factory, sizeof st->fc7_factory, "%s", ix->slot[0].factory);
    snprintf(st->code_factory, sizeof st->code_factory, "%s", ix->slot[1].factory);
    int64_t snap = INT64_MAX;
    for (int k = 0; k < 2; k++)
        if (ix->slot[k].factory[0] && ix->slot[k].snapshot_seq < snap)
            snap = ix->slot[k].snapshot_seq;
    st->snapshot_seq = snap == INT64_MAX ? -1 : snap;
    if (ix->slot[0].v) {
        st->fc7_vectors = vecindex_ntotal(ix->slot[0].v);
        st->fc7_removed = vecindex_n_removed(ix->slot[0].v);
        st->fc7_trained = vecindex_is_trained(ix->slot[0].v);
    }
    if (ix->slot[1].v) {
        st->code_vectors = vecindex_ntotal(ix->slot[1].v);
        st->code_removed = vecindex_n_removed(ix->slot[1].v);
    }
    snprintf(st->opened_from, sizeof st->opened_from, "%s", ix->opened_from);
    pthread_rwlock_unlock(&ix->lock);
    return st->items < 0 || st->seq < 0 ? -1 : 0;
}
