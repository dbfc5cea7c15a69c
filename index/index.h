/* index: the item store and the nearest-neighbour indexes over it.
 *
 * The store (store_*) is the truth: one row per item (id, uri, label, FC7
 * vector, binary code, time added, sequence number of the change that added
 * it) and a log of changes, in one of two backends behind the same functions:
 * a SQLite file in WAL mode (the embedded default) or a PostgreSQL 15
 * database that several processes share (docs/postgresql.md). The indexes
 * (index_*) are caches of the store: a FAISS float index over FC7 (squared
 * Euclidean distance) and a FAISS binary index over codes (Hamming distance),
 * snapshotted to disk with the store sequence number they reflect and rebuilt
 * from the store whenever a snapshot is missing, stale or corrupt.
 *
 * FAISS is reached only through its C API (faiss/c_api). Includes util only.
 *
 * Thread safety: a store_t and an index_t may be shared between threads. An
 * index_t lets searches run concurrently and serialises writes (add, remove,
 * snapshot, rebuild) against everything else. */
#ifndef IMGRET_INDEX_H
#define IMGRET_INDEX_H

#include "util/util.h"

#include <stddef.h>
#include <stdint.h>

/* Limits. Ids are >= 0 (FAISS reserves -1 for "no result"). */
#define STORE_ID_AUTO (-1) /* in store_item_t.id: let the store choose */
#define STORE_MAX_URI 4096 /* bytes, without the terminating NUL */
#define STORE_MAX_FC7_DIM 65536
#define STORE_MAX_CODE_BITS 4096
#define INDEX_MAX_K 4096 /* largest top-k a search accepts */

/* ---------------------------------------------------------------- store -- */

typedef struct store store_t;

/* An item as given to store_add and as passed to store_scan callbacks. The
 * pointers are borrowed: the store copies what it keeps. */
typedef struct store_item {
    int64_t id;          /* >= 0, or STORE_ID_AUTO on add (then set by add) */
    const char *uri;     /* NUL-terminated, <= STORE_MAX_URI bytes; may be NULL */
    int32_t label;       /* class index; -1 for none */
    const float *fc7;    /* store_fc7_dim() floats, all finite; NULL for none */
    const uint8_t *code; /* store_code_bits()/8 bytes, bit i of the code is bit
                            (i % 8) of byte i / 8 (FAISS order); NULL for none */
    int64_t added_us;    /* set by the store: Unix time of the add, microseconds */
    int64_t seq;         /* set by the store: sequence number of the add */
} store_item_t;

/* An item read back from the store. Every pointer is owned by the record:
 * release with store_record_clear. */
typedef struct store_record {
    int64_t id;
    int32_t label;
    int64_t added_us;
    int64_t seq;
    char *uri;     /* "" when the item has none */
    float *fc7;    /* NULL when the item has none */
    uint8_t *code; /* NULL when the item has none */
} store_record_t;

/* Frees what the record owns and zeroes it. Accepts NULL and zeroed records. */
void store_record_clear(store_record_t *rec);

/* Opens (creating when missing) the store at `path`: a SQLite file, or a
 * PostgreSQL database named by a postgresql:// (or postgres://) URL, whose
 * tables are created when missing. For a new store,
 * fc7_dim (floats per FC7 vector, 0 for none) and code_bits (a multiple of 8,
 * 0 for none) fix its shapes for good; for an existing one, 0 means "take the
 * store's" and any other value must match. Returns NULL with err set on
 * failure (not a store, shapes differ, disk full, database unreachable:
 * UTIL_ERR_UNAVAILABLE...). */
store_t *store_open(const char *path, int fc7_dim, int code_bits, util_err_t *err);
void store_free(store_t *store);

/* 1 when `where` names a database (postgresql:// or postgres://), 0 for a
 * file path. */
int store_is_database_url(const char *where);
/* `where` fit for messages and logs: a URL's password replaced by "***". */
void store_redact_url(const char *where, char *out, size_t cap);
/* "sqlite" or "postgresql"; and the store's name as messages give it. */
const char *store_backend(const store_t *store);
const char *store_name(const store_t *store);

int store_fc7_dim(const store_t *store);
int store_code_bits(const store_t *store);
/* A random identity given to the store at creation (32 hex digits). */
const char *store_uuid(const store_t *store);

/* The store's own settings (the index factories, so that a reopen without
 * them keeps what the index was built with). store_setting_get copies the
 * value of key into buf and returns 1, 0 when it was never set, -1 on error;
 * keys are plain names ("fc7_factory"), values text. */
int store_setting_get(store_t *store, const char *key, char *buf, size_t cap, util_err_t *err);
int store_setting_set(store_t *store, const char *key, const char *value, util_err_t *err);
/* Items now in the store, and the sequence number of the last change (0 for
 * a store never changed). -1 on error. */
int64_t store_count(store_t *store, util_err_t *err);
int64_t store_last_seq(store_t *store, util_err_t *err);

/* Adds n items in one transaction: all or none. Sets items[i].id (when
 * STORE_ID_AUTO), .added_us and .seq. Returns only after the transaction is
 * durable (synchronous=FULL: it survives a process kill and a power loss). An
 * id already present, a bad shape, a non-finite FC7 component or a too long
 * uri fails the whole call, naming the item. */
int store_add(store_t *store, store_item_t *items, size_t n, util_err_t *err);

/* Removes n items in one transaction: all or none; an unknown id fails the
 * whole call, naming the id. Durable like store_add. */
int store_remove(store_t *store, const int64_t *ids, size_t n, util_err_t *err);

/* Reads item `id` into *out (overwritten; clear it after use). */
int store_get(store_t *store, int64_t id, store_record_t *out, util_err_t *err);

/* Calls fn for every item in id order, inside one read transaction: *seq
 * (may be NULL) receives the sequence number of the state scanned. The item
 * and its buffers are valid during the call only. fn returns 0 to go on,
 * anything else to stop: the scan then returns -1 and keeps the message fn
 * wrote into err. */
typedef int (*store_scan_fn)(void *ctx, const store_item_t *item, util_err_t *err);
int store_scan(store_t *store, store_scan_fn fn, void *ctx, int64_t *seq, util_err_t *err);

typedef enum store_op { STORE_OP_ADD = 1, STORE_OP_REMOVE = 2 } store_op_t;

typedef struct store_change {
    int64_t seq;
    int64_t id;
    store_op_t op;
} store_change_t;

/* The changes with sequence number > after_seq, in order, in *changes
 * (malloc'd, caller frees; NULL when none). *oldest_seq receives the oldest
 * sequence number the log still holds (0 when it is empty), so a caller can
 * tell whether after_seq is still covered (see store_trim_changes). */
int store_changes(store_t *store, int64_t after_seq, store_change_t **changes, size_t *n,
                  int64_t *oldest_seq, util_err_t *err);

/* Drops change-log entries with sequence number <= upto_seq (they are needed
 * only by snapshots older than that). */
int store_trim_changes(store_t *store, int64_t upto_seq, util_err_t *err);

/* Waits up to timeout_ms (>= 0) until the store holds a change after
 * after_seq, made by any process: 1 when it does, 0 at the timeout, -1 on
 * error. PostgreSQL wakes it by LISTEN/NOTIFY on a connection of its own,
 * and polls last_seq as well (at least once a second), since a listener
 * that lost its connection never gets the notifications it missed; SQLite
 * polls (every 20 ms). */
int store_wait_change(store_t *store, int64_t after_seq, int timeout_ms, util_err_t *err);

/* Copies every item of `from` into `to` (an empty store of the same shapes;
 * either backend) with the same ids, labels, uris, vectors and codes, in
 * batches of one transaction each, and the index settings; then checks that
 * both hold the number copied. The sequence numbers are `to`'s own (its log
 * starts afresh). *copied: the items copied. */
int store_copy(store_t *from, store_t *to, int64_t *copied, util_err_t *err);

/* ---------------------------------------------------------------- index -- */

typedef struct index index_t;

typedef enum index_kind {
    INDEX_FC7 = 0,  /* Euclidean over FC7 vectors */
    INDEX_CODE = 1, /* Hamming over binary codes */
} index_kind_t;

/* Called with one line (no newline) when something worth telling happened
 * (a snapshot was rejected, an index rebuilt). The library prints nothing. */
typedef void (*index_log_fn)(void *ctx, const char *line);

typedef struct index_options {
    int fc7_dim;   /* for a new store (see store_open); 0: the store's */
    int code_bits; /* idem */
    /* FAISS factory strings. FC7: "Flat" (exact), "IVF<n>,Flat" (k-means
     * trained from the store once it holds n vectors), "HNSW<M>". Codes:
     * "BFlat" (exact), "BHash<b>" (hash on the first b bits), "BHash<m>x<b>"
     * (multi-index hashing: m tables of b bits). NULL: what the store was
     * last opened with, and "Flat" / "BFlat" for a new store; "": no index of
     * that kind. The choice is kept in the store. Ids are carried by an IDMap
     * either way. */
    const char *fc7_factory;
    const char *code_factory;
    int nprobe;    /* IVF lists visited per query; 0: 16 */
    int ef_search; /* HNSW search breadth; 0: 64 */
    int nflip;     /* BHash bit flips probed per table; 0: 2 (-1: none) */
    /* Snapshot automatically after this many changes; 0: only when asked. */
    int64_t snapshot_every;
    /* When index_open is given a database URL instead of a folder: the folder
     * of the FAISS snapshots (created when missing); NULL: none, the indexes
     * are rebuilt from the store at every open and index_snapshot writes no
     * file and trims no log (the log is shared with other processes). */
    const char *snapshot_dir;
    /* Follow the store in a thread of the index's own (a replica): changes
     * other processes commit are applied as they come (store_wait_change,
     * then index_follow), and index_wait_applied waits on it. */
    int follow;
    index_log_fn log;
    void *log_ctx;
} index_options_t;

/* Zeroes *opt: FAISS defaults as above, no automatic snapshots, no log. */
void index_options_default(index_options_t *opt);

/* Opens the index in folder `dir` (created when missing): the store
 * dir/items.db and the snapshots dir/fc7.index and dir/code.index; or, when
 * `dir` is a postgresql:// URL, the store in that database and the snapshots
 * in opt->snapshot_dir. A valid
 * snapshot is loaded and the changes made after it applied; a missing, stale,
 * foreign or corrupt one is replaced by a rebuild from the store (logged).
 * opt may be NULL (defaults). Returns NULL with err set on failure. */
index_t *index_open(const char *dir, const index_options_t *opt, util_err_t *err);

/* Frees everything. Does not snapshot: changes since the last snapshot are
 * replayed from the store at the next open. Accepts NULL. */
void index_free(index_t *ix);

/* The store under the index (borrowed; valid until index_free). Writing to it
 * directly bypasses the in-memory indexes until the next open or rebuild. */
store_t *index_store(index_t *ix);

/* Adds n items: to the store first (one durable transaction, as store_add,
 * filling ids/seq/added_us), then to the indexes. An item without FC7 (or
 * code) is simply absent from that index. */
int index_add(index_t *ix, store_item_t *items, size_t n, util_err_t *err);

/* Removes n items (one durable transaction), then from the indexes. */
int index_remove(index_t *ix, const int64_t *ids, size_t n, util_err_t *err);

typedef struct index_hit {
    int64_t id;     /* -1 for an empty slot (fewer than k items) */
    float distance; /* squared L2 for FC7, differing bits for codes;
                       INFINITY for an empty slot */
} index_hit_t;

/* Top-k search for nq queries. queries: nq x dim floats (dim must equal the
 * store's FC7 dimension; every component finite) or nq x code_bytes bytes.
 * hits: nq x k, row i for query i, nearest first. 1 <= k <= INDEX_MAX_K. */
int index_search_fc7(index_t *ix, const float *queries, size_t nq, int dim, int k,
                     index_hit_t *hits, util_err_t *err);
int index_search_code(index_t *ix, const uint8_t *codes, size_t nq, int code_bytes, int k,
                      index_hit_t *hits, util_err_t *err);

/* Top-k neighbours of stored item `id` by its own FC7 vector or code. The
 * item itself is among the hits (distance 0) like any other. */
int index_search_id(index_t *ix, index_kind_t kind, int64_t id, int k, index_hit_t *hits,
                    util_err_t *err);

/* Changes the search-time parameters (same meaning and defaults as in
 * index_options_t) of the open indexes; they hold for later searches. */
int index_set_search_params(index_t *ix, int nprobe, int ef_search, int nflip, util_err_t *err);

/* Reads an item's metadata and vectors from the store (see store_get). */
int index_get(index_t *ix, int64_t id, store_record_t *out, util_err_t *err);

/* Writes both snapshots atomically (temporary file, fsync, rename, fsync of
 * the folder) with the store sequence number they reflect, then trims the
 * change log up to it. */
int index_snapshot(index_t *ix, util_err_t *err);

/* Discards the in-memory indexes and rebuilds them from the store (training
 * IVF when it has enough vectors). */
int index_rebuild(index_t *ix, util_err_t *err);

/* Brings the in-memory indexes up to the store's state, as another process
 * (a replica's peers) wrote it: replays the change log since what they
 * reflect, or rebuilds when the log no longer covers it. Returns the
 * sequence number now applied (index_applied_seq), or -1 with err set (the
 * indexes keep answering from what they hold). A replica calls it after
 * store_wait_change(index_store(ix), index_applied_seq(ix), ...) says there
 * is something new. */
int64_t index_follow(index_t *ix, util_err_t *err);

/* The store sequence number every open index reflects (the least of them;
 * with no index open, the store's as last seen). A search sees every change
 * up to it. */
int64_t index_applied_seq(index_t *ix);

/* The applied seq and the store's last seq as this index last saw them
 * (at open, its own writes, each follow), without waiting for a lock or the
 * store: for metrics. store_seq - applied_seq is the replication lag. */
void index_seqs(index_t *ix, int64_t *store_seq, int64_t *applied_seq);

/* Waits up to timeout_ms until the indexes have applied `seq` (read your
 * writes: seq as an Add returned it, on any replica): 0 when they have, -1
 * with UTIL_ERR_DEADLINE when time ran out first (a store that is down
 * leaves the indexes where they are). Follows by itself when the index has
 * no follower thread. */
int index_wait_applied(index_t *ix, int64_t seq, int timeout_ms, util_err_t *err);

typedef struct index_stats {
    int64_t items;        /* in the store */
    int64_t seq;          /* store's last sequence number */
    int64_t applied_seq;  /* what the indexes reflect (index_applied_seq);
                             seq - applied_seq is this process's lag */
    int64_t snapshot_seq; /* sequence number of the last snapshot written or
                             loaded; -1 when none */
    int fc7_dim, code_bits;
    char fc7_factory[64], code_factory[64]; /* "" when that index is off */
    int64_t fc7_vectors, code_vectors;      /* in the FAISS indexes (incl. removed
                                               ones a hash/HNSW index still holds) */
    int64_t fc7_removed, code_removed;      /* removed, still held, filtered out */
    int fc7_trained;                        /* 0 while an IVF index waits for data */
    char opened_from[160];                  /* how index_open got its indexes */
} index_stats_t;

int index_stats(index_t *ix, index_stats_t *stats, util_err_t *err);

#endif
