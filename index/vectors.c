/* FAISS indexes through the C API: creation from factory strings, IDMap,
 * removal with a fallback for index types that cannot remove, search, and
 * snapshot files. */
#include "index/vectors.h"
#include "index/faiss_ext.h"

#include <faiss/c_api/AutoTune_c.h>
#include <faiss/c_api/IndexBinary_c.h>
#include <faiss/c_api/Index_c.h>
#include <faiss/c_api/MetaIndexes_c.h>
#include <faiss/c_api/error_c.h>
#include <faiss/c_api/impl/AuxIndexStructures_c.h>
#include <faiss/c_api/index_factory_c.h>
#include <faiss/c_api/index_io_c.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* An open-addressing set of ids (>= 0; -1 marks an empty slot). */
typedef struct idset {
    int64_t *slot;
    size_t cap, n; /* cap a power of two */
} idset_t;

static size_t idset_hash(int64_t id, size_t cap) {
    uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 17) & (cap - 1);
}

static int idset_has(const idset_t *s, int64_t id) {
    if (!s->n) return 0;
    for (size_t i = idset_hash(id, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (s->slot[i] == id) return 1;
        if (s->slot[i] < 0) return 0;
    }
}

static int idset_put(idset_t *s, int64_t id) {
    if (2 * (s->n + 1) > s->cap) {
        size_t nc = s->cap ? 2 * s->cap : 64;
        int64_t *ns = malloc(nc * sizeof *ns);
        if (!ns) return -1;
        for (size_t i = 0; i < nc; i++)
            ns[i] = -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i] >= 0) {
                size_t j = idset_hash(s->slot[i], nc);
                while (ns[j] >= 0)
                    j = (j + 1) & (nc - 1);
                ns[j] = s->slot[i];
            }
        free(s->slot);
        s->slot = ns;
        s->cap = nc;
    }
    size_t i = idset_hash(id, s->cap);
    while (s->slot[i] >= 0 && s->slot[i] != id)
        i = (i + 1) & (s->cap - 1);
    if (s->slot[i] < 0) {
        s->slot[i] = id;
        s->n++;
    }
    return 0;
}

struct vecindex {
    index_kind_t kind;
    int dim; /* floats or bits */
    char factory[64];
    vec_params_t params;
    FaissIndex *f;       /* IDMap over the float index (INDEX_FC7) */
    FaissIndexBinary *b; /* IndexBinaryIDMap over the binary index (INDEX_CODE) */
    int can_remove;      /* FAISS implements remove_ids for this type */
    int own_ids;         /* IVF: stores ids itself, no IDMap (see vecindex_create) */
    int64_t nlist;       /* IVF lists, 0 when not IVF */
    idset_t removed;     /* removed ids still inside a non-removing index */
};

static int faiss_fail(util_err_t *err, const char *what) {
    const char *m = faiss_get_last_error();
    return util_fail(err, "%s: %s", what, m ? m : "FAISS failed");
}

static int64_t parse_nlist(const char *factory) {
    const char *p = strstr(factory, "IVF");
    if (!p) return 0;
    long n = strtol(p + 3, NULL, 10);
    return n > 0 ? n : 0;
}

static int apply_params(vecindex_t *v, util_err_t *err) {
    if (v->kind == INDEX_FC7) {
        FaissParameterSpace *ps = NULL;
        if (faiss_ParameterSpace_new(&ps)) return faiss_fail(err, "parameter space");
        int rc = 0;
        if (v->nlist) {
            int64_t nprobe = v->params.nprobe < v->nlist ? v->params.nprobe : v->nlist;
            rc = faiss_ParameterSpace_set_index_parameter(ps, v->f, "nprobe", (double)nprobe);
        }
        if (!rc && strstr(v->factory, "HNSW"))
            rc = faiss_ParameterSpace_set_index_parameter(ps, v->f, "efSearch",
                                                          (double)v->params.ef_search);
        faiss_ParameterSpace_free(ps);
        if (rc) return faiss_fail(err, v->factory);
    } else if (strstr(v->factory, "BHash")) {
        FaissIndexBinary *sub = faiss_IndexBinaryIDMap_sub_index((FaissIndexBinaryIDMap *)v->b);
        if (faiss_IndexBinary_set_nflip(sub, v->params.nflip)) return faiss_fail(err, v->factory);
    }
    return 0;
}

/* Fills the fields that follow from kind/dim/factory; f or b already set. */
static int finish(vecindex_t *v, util_err_t *err) {
    v->nlist = parse_nlist(v->factory);
    v->own_ids = v->nlist > 0;
    /* HNSW graphs and hash tables have no remove_ids in FAISS 1.7.3. */
    v->can_remove = !strstr(v->factory, "HNSW") && !strstr(v->factory, "BHash");
    return apply_params(v, err);
}

static vecindex_t *alloc_vecindex(index_kind_t kind, int dim, const char *factory,
                                  const vec_params_t *params, util_err_t *err) {
    if (strlen(factory) >= sizeof((vecindex_t *)0)->factory) {
        util_fail(err, "factory string '%s' is too long", factory);
        return NULL;
    }
    if (strstr(factory, "IDMap")) {
        util_fail(err, "factory '%s': leave out IDMap, imgret adds it", factory);
        return NULL;
    }
    vecindex_t *v = calloc(1, sizeof *v);
    if (!v) {
        util_fail(err, "out of memory");
        return NULL;
    }
    v->kind = kind;
    v->dim = dim;
    v->params = *params;
    snprintf(v->factory, sizeof v->factory, "%s", factory);
    return v;
}

vecindex_t *vecindex_create(index_kind_t kind, int dim, const char *factory,
                            const vec_params_t *params, util_err_t *err) {
    vecindex_t *v = alloc_vecindex(kind, dim, factory, params, err);
    if (!v) return NULL;
    /* IVF indexes keep ids in their inverted lists and are used bare: under an
     * IDMap, FAISS 1.7.3 compacts the id map on remove_ids while the lists
     * keep the old positions, so later results carry the wrong ids. */
    int bare = parse_nlist(factory) > 0;
    if (kind == INDEX_FC7) {
        FaissIndex *sub = NULL;
        FaissIndexIDMap *map = NULL;
        if (faiss_index_factory(&sub, dim, factory, METRIC_L2)) {
            faiss_fail(err, "FC7 index factory");
            goto fail;
        }
        if (bare) {
            v->f = sub;
            goto done;
        }
        if (faiss_IndexIDMap_new(&map, sub)) {
            faiss_Index_free(sub);
            faiss_fail(err, "FC7 IDMap");
            goto fail;
        }
        faiss_IndexIDMap_set_own_fields(map, 1);
        v->f = (FaissIndex *)map;
    } else {
        FaissIndexBinary *sub = NULL;
        FaissIndexBinaryIDMap *map = NULL;
        if (faiss_index_binary_factory(&sub, dim, factory)) {
            faiss_fail(err, "code index factory");
            goto fail;
        }
        if (bare) {
            v->b = sub;
            goto done;
        }
        if (faiss_IndexBinaryIDMap_new(&map, sub)) {
            faiss_IndexBinary_free(sub);
            faiss_fail(err, "code IDMap");
            goto fail;
        }
        faiss_IndexBinaryIDMap_set_own_fields(map, 1);
        v->b = (FaissIndexBinary *)map;
    }
done:
    if (finish(v, err)) goto fail;
    return v;
fail:
    vecindex_free(v);
    return NULL;
}

void vecindex_free(vecindex_t *v) {
    if (!v) return;
    if (v->f) faiss_Index_free(v->f);
    if (v->b) faiss_IndexBinary_free(v->b);
    free(v->removed.slot);
    free(v);
}

int vecindex_set_params(vecindex_t *v, const vec_params_t *params, util_err_t *err) {
    v->params = *params;
    return apply_params(v, err);
}

int vecindex_is_trained(const vecindex_t *v) {
    return v->f ? faiss_Index_is_trained(v->f) : faiss_IndexBinary_is_trained(v->b);
}

int64_t vecindex_train_min(const vecindex_t *v) {
    if (vecindex_is_trained(v)) return 0;
    return v->nlist ? 39 * v->nlist : 10000;
}

int64_t vecindex_train_max(const vecindex_t *v) {
    if (vecindex_is_trained(v)) return 0;
    return v->nlist ? 256 * v->nlist : 100000;
}

int64_t vecindex_ntotal(const vecindex_t *v) {
    return v->f ? faiss_Index_ntotal(v->f) : faiss_IndexBinary_ntotal(v->b);
}

int64_t vecindex_n_removed(const vecindex_t *v) {
    return (int64_t)v->removed.n;
}

int vecindex_holds_removed(const vecindex_t *v, int64_t id) {
    return idset_has(&v->removed, id);
}

int vecindex_train(vecindex_t *v, size_t n, const void *x, util_err_t *err) {
    int rc =
        v->f ? faiss_Index_train(v->f, (idx_t)n, x) : faiss_IndexBinary_train(v->b, (idx_t)n, x);
    if (rc) return faiss_fail(err, "training");
    return apply_params(v, err);
}

int vecindex_add(vecindex_t *v, size_t n, const void *x, const int64_t *ids, util_err_t *err) {
    if (!n) return 0;
    int rc = v->f ? faiss_Index_add_with_ids(v->f, (idx_t)n, x, ids)
                  : faiss_IndexBinary_add_with_ids(v->b, (idx_t)n, x, ids);
    return rc ? faiss_fail(err, "adding to the index") : 0;
}

int vecindex_remove(vecindex_t *v, size_t n, const int64_t *ids, util_err_t *err) {
    if (!n) return 0;
    if (!v->can_remove) {
        for (size_t i = 0; i < n; i++)
            if (idset_put(&v->removed, ids[i])) return util_fail(err, "out of memory");
        return 0;
    }
    FaissIDSelectorBatch *sel = NULL;
    if (faiss_IDSelectorBatch_new(&sel, n, ids)) return faiss_fail(err, "id selector");
    size_t nr = 0;
    int rc = v->f ? faiss_Index_remove_ids(v->f, (FaissIDSelector *)sel, &nr)
                  : faiss_IndexBinary_remove_ids(v->b, (FaissIDSelector *)sel, &nr);
    faiss_IDSelector_free((FaissIDSelector *)sel);
    return rc ? faiss_fail(err, "removing from the index") : 0;
}

int vecindex_search(const vecindex_t *v, size_t nq, const void *x, int k, index_hit_t *hits,
                    util_err_t *err) {
    if (!vecindex_is_trained(v))
        return util_fail_kind(err, UTIL_ERR_PRECONDITION, "the %s index is not trained yet",
                              v->factory);
    /* Removed ids still inside the index are dropped from the results, so ask
     * for that many more. */
    int64_t kk = (int64_t)k + (int64_t)v->removed.n;
    int64_t ntotal = vecindex_ntotal(v);
    if (kk > ntotal && ntotal >= k) kk = ntotal;
    size_t cells = nq * (size_t)kk;
    idx_t *labels = malloc(cells * sizeof *labels);
    void *dist = malloc(cells * (v->f ? sizeof(float) : sizeof(int32_t)));
    if (!labels || !dist) {
        free(labels);
        free(dist);
        return util_fail_kind(err, UTIL_ERR_LIMIT, "out of memory for %zu results", cells);
    }
    int rc = v->f ? faiss_Index_search(v->f, (idx_t)nq, x, kk, dist, labels)
                  : faiss_IndexBinary_search(v->b, (idx_t)nq, x, kk, dist, labels);
    if (rc) {
        free(labels);
        free(dist);
        return faiss_fail(err, "search");
    }
    for (size_t q = 0; q < nq; q++) {
        index_hit_t *row = hits + q * (size_t)k;
        int out = 0;
        for (int64_t j = 0; j < kk && out < k; j++) {
            size_t c = q * (size_t)kk + (size_t)j;
            if (labels[c] < 0 || idset_has(&v->removed, labels[c])) continue;
            row[out].id = labels[c];
            row[out].distance = v->f ? ((const float *)dist)[c] : (float)((int32_t *)dist)[c];
            out++;
        }
        for (; out < k; out++) {
            row[out].id = -1;
            row[out].distance = INFINITY;
        }
    }
    free(labels);
    free(dist);
    return 0;
}

/* ---- snapshot files ---- */

#define SNAP_MAGIC "IMGRETIX"
#define SNAP_VERSION 1u

typedef struct snap_header {
    char magic[8];
    uint32_t version, kind;
    int64_t seq;
    uint64_t payload_bytes, payload_sum;
    char uuid[40];
    char factory[64];
    int32_t dim;
    uint32_t n_removed; /* followed by n_removed int64 ids, then header_sum */
} snap_header_t;

/* A checksum for detecting damage (not tampering): 64-bit multiply-xor over
 * 8-byte words, then the tail bytes. */
typedef struct {
    uint64_t h;
} sum_t;
static void sum_init(sum_t *s) {
    s->h = 0xcbf29ce484222325ull;
}
static void sum_update(sum_t *s, const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t h = s->h;
    for (; n >= 8; n -= 8, b += 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; n; n--, b++)
        h = (h ^ *b) * 0x100000001b3ull;
    s->h = h;
}

/* Sums `len` bytes of f from offset `off`; -1 when the file is shorter. */
static int sum_file(FILE *f, long off, uint64_t len, uint64_t *out) {
    static const size_t chunk = 1 << 20;
    uint8_t *buf = malloc(chunk);
    if (!buf || fseek(f, off, SEEK_SET)) {
        free(buf);
        return -1;
    }
    sum_t s;
    sum_init(&s);
    while (len) {
        size_t want = len < chunk ? (size_t)len : chunk;
        size_t got = fread(buf, 1, want, f);
        if (got != want) {
            free(buf);
            return -1;
        }
        sum_update(&s, buf, got);
        len -= got;
    }
    free(buf);
    *out = s.h;
    return 0;
}

/* Writes header + removed ids + header checksum at the current position. */
static int write_header(FILE *f, const snap_header_t *h, const vecindex_t *v) {
    sum_t s;
    sum_init(&s);
    sum_update(&s, h, sizeof *h);
    if (fwrite(h, sizeof *h, 1, f) != 1) return -1;
    for (size_t i = 0; i < v->removed.cap; i++)
        if (v->removed.slot[i] >= 0) {
            sum_update(&s, &v->removed.slot[i], 8);
            if (fwrite(&v->removed.slot[i], 8, 1, f) != 1) return -1;
        }
    return fwrite(&s.h, 8, 1, f) == 1 ? 0 : -1;
}

int vecindex_save(const vecindex_t *v, const char *path, const char *store_uuid, int64_t seq,
                  util_err_t *err) {
    snap_header_t h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, SNAP_MAGIC, 8);
    h.version = SNAP_VERSION;
    h.kind = (uint32_t)v->kind;
    h.seq = seq;
    snprintf(h.uuid, sizeof h.uuid, "%s", store_uuid);
    snprintf(h.factory, sizeof h.factory, "%s", v->factory);
    h.dim = v->dim;
    h.n_removed = (uint32_t)v->removed.n;
    long header_len = (long)(sizeof h + 8 * (size_t)h.n_removed + 8);

    /* Atomic (util_atomic_open): a crash leaves the old snapshot or the new. */
    util_atomic_file_t *a = util_atomic_open(path, err);
    if (!a) return -1;
    FILE *f = util_atomic_stream(a);
    if (write_header(f, &h, v)) goto io_fail;
    int rc = v->f ? faiss_write_index(v->f, f) : faiss_write_index_binary(v->b, f);
    if (rc) {
        faiss_fail(err, path);
        goto fail;
    }
    if (fflush(f)) goto io_fail;
    long end = ftell(f);
    if (end < header_len) goto io_fail;
    h.payload_bytes = (uint64_t)(end - header_len);
    if (sum_file(f, header_len, h.payload_bytes, &h.payload_sum)) goto io_fail;
    if (fseek(f, 0, SEEK_SET) || write_header(f, &h, v)) goto io_fail;
    return util_atomic_commit(a, err);
io_fail:
    util_fail_kind(err, UTIL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
fail:
    util_atomic_abort(a);
    return -1;
}

vecindex_t *vecindex_load(const char *path, index_kind_t kind, int dim, const char *factory,
                          const vec_params_t *params, const char *store_uuid, int64_t *seq,
                          util_err_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        util_fail_kind(err, errno == ENOENT ? UTIL_ERR_NOT_FOUND : UTIL_ERR_IO, "%s: %s", path,
                       strerror(errno));
        return NULL;
    }
    vecindex_t *v = NULL;
    snap_header_t h;
    struct stat st;
    if (fstat(fileno(f), &st) || fread(&h, sizeof h, 1, f) != 1) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: truncated header", path);
        goto fail;
    }
    if (memcmp(h.magic, SNAP_MAGIC, 8) || h.version != SNAP_VERSION) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: not an imgret snapshot (bad magic or version)",
                       path);
        goto fail;
    }
    h.uuid[sizeof h.uuid - 1] = h.factory[sizeof h.factory - 1] = 0;
    uint64_t header_len = sizeof h + 8 * (uint64_t)h.n_removed + 8;
    if ((uint64_t)st.st_size < header_len) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: truncated (%lld bytes, header alone needs %llu)",
                       path, (long long)st.st_size, (unsigned long long)header_len);
        goto fail;
    }
    if (!(v = alloc_vecindex(kind, dim, factory, params, err))) goto fail;
    sum_t s;
    sum_init(&s);
    sum_update(&s, &h, sizeof h);
    for (uint32_t i = 0; i < h.n_removed; i++) {
        int64_t id;
        if (fread(&id, 8, 1, f) != 1 || id < 0 || idset_put(&v->removed, id)) {
            util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: bad removed-id list", path);
            goto fail;
        }
        sum_update(&s, &id, 8);
    }
    uint64_t hsum;
    if (fread(&hsum, 8, 1, f) != 1 || hsum != s.h) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: header checksum mismatch (damaged file)", path);
        goto fail;
    }
    if (strcmp(h.uuid, store_uuid)) {
        util_fail_kind(err, UTIL_ERR_PRECONDITION,
                       "%s: snapshot of another store (%s, this one is %s)", path, h.uuid,
                       store_uuid);
        goto fail;
    }
    if (h.kind != (uint32_t)kind || h.dim != dim || strcmp(h.factory, factory)) {
        util_fail_kind(err, UTIL_ERR_PRECONDITION, "%s: snapshot is %s over %d, wanted %s over %d",
                       path, h.factory, h.dim, factory, dim);
        goto fail;
    }
    if ((uint64_t)st.st_size != header_len + h.payload_bytes) {
        util_fail_kind(err, UTIL_ERR_CORRUPT,
                       "%s: truncated or padded (%lld bytes, header says %llu)", path,
                       (long long)st.st_size, (unsigned long long)(header_len + h.payload_bytes));
        goto fail;
    }
    uint64_t psum;
    if (sum_file(f, (long)header_len, h.payload_bytes, &psum) || psum != h.payload_sum) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: checksum mismatch (damaged file)", path);
        goto fail;
    }
    if (fseek(f, (long)header_len, SEEK_SET)) {
        util_fail_kind(err, UTIL_ERR_IO, "%s: seek failed", path);
        goto fail;
    }
    int rc =
        kind == INDEX_FC7 ? faiss_read_index(f, 0, &v->f) : faiss_read_index_binary(f, 0, &v->b);
    if (rc) {
        faiss_fail(err, path);
        goto fail;
    }
    int got_dim = v->f ? faiss_Index_d(v->f) : faiss_IndexBinary_d(v->b);
    int is_map = parse_nlist(factory) > 0 ? 1
                 : v->f                   ? faiss_IndexIDMap_cast(v->f) != NULL
                                          : faiss_IndexBinaryIDMap_cast(v->b) != NULL;
    if (got_dim != dim || !is_map) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: FAISS index has dimension %d (wanted %d)%s",
                       path, got_dim, dim, is_map ? "" : " and no IDMap");
        goto fail;
    }
    if (finish(v, err)) goto fail;
    fclose(f);
    *seq = h.seq;
    return v;
fail:
    vecindex_free(v);
    fclose(f);
    return NULL;
}
