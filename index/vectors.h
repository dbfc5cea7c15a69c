/* One FAISS index (float or binary) behind the C API, wrapped in an IDMap so
 * its labels are item ids, with what FAISS lacks for a cache of the store:
 * removal on index types that cannot remove (ids filtered out of results
 * until the next rebuild) and checksummed snapshot files. Private to index/. */
#ifndef IMGRET_INDEX_VECTORS_H
#define IMGRET_INDEX_VECTORS_H

#include "index/index.h"

typedef struct vecindex vecindex_t;

typedef struct vec_params {
    int nprobe, ef_search, nflip; /* as index_options_t, defaults resolved */
} vec_params_t;

/* dim: floats for INDEX_FC7, bits for INDEX_CODE. */
vecindex_t *vecindex_create(index_kind_t kind, int dim, const char *factory,
                            const vec_params_t *params, util_err_t *err);
void vecindex_free(vecindex_t *v);

int vecindex_set_params(vecindex_t *v, const vec_params_t *params, util_err_t *err);
int vecindex_is_trained(const vecindex_t *v);
/* Vectors needed before training is worthwhile (39 per IVF list, FAISS's own
 * warning threshold), and the most worth sampling for it (256 per list). 0
 * when the index needs no training. */
int64_t vecindex_train_min(const vecindex_t *v);
int64_t vecindex_train_max(const vecindex_t *v);
int64_t vecindex_ntotal(const vecindex_t *v);
int64_t vecindex_n_removed(const vecindex_t *v);
/* 1 when id was removed but is still held by a non-removing index. */
int vecindex_holds_removed(const vecindex_t *v, int64_t id);

/* x: n vectors (floats or code bytes). */
int vecindex_train(vecindex_t *v, size_t n, const void *x, util_err_t *err);
int vecindex_add(vecindex_t *v, size_t n, const void *x, const int64_t *ids, util_err_t *err);
/* Ids not in the index are ignored (the caller does not track membership). */
int vecindex_remove(vecindex_t *v, size_t n, const int64_t *ids, util_err_t *err);
/* k already validated; hits nq x k. */
int vecindex_search(const vecindex_t *v, size_t nq, const void *x, int k, index_hit_t *hits,
                    util_err_t *err);

/* Snapshot file: header (magic, kind, dim, factory, store uuid, seq, removed
 * ids, checksums) then FAISS's own serialisation. save writes it atomically
 * (util_atomic_open: temporary file, fsync, rename). load rejects (returning
 * NULL with the reason in err) a file that is truncated, fails a checksum, or
 * belongs to another store, kind, dimension or factory. */
int vecindex_save(const vecindex_t *v, const char *path, const char *store_uuid, int64_t seq,
                  util_err_t *err);
vecindex_t *vecindex_load(const char *path, index_kind_t kind, int dim, const char *factory,
                          const vec_params_t *params, const char *store_uuid, int64_t *seq,
                          util_err_t *err);

#endif
