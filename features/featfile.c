/* The feature file (format in features.h): a mapped reader and an
 * append-only writer whose commit is the header rewrite. */
#include "features/features.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct feat_header {
    uint32_t version, dtype, dim;
    uint64_t count, capacity, uri_bytes;
    uint8_t model[MODEL_HASH_BYTES];
} feat_header_t;

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static uint64_t fnv1a64(const uint8_t *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static void header_encode(const feat_header_t *h, uint8_t out[FEAT_HEADER_SIZE]) {
    memset(out, 0, FEAT_HEADER_SIZE);
    memcpy(out, FEAT_MAGIC, 8);
    put_u32(out + 8, h->version);
    put_u32(out + 12, h->dtype);
    put_u32(out + 16, h->dim);
    put_u32(out + 20, FEAT_HEADER_SIZE);
    put_u64(out + 24, h->count);
    put_u64(out + 32, h->capacity);
    put_u64(out + 40, h->uri_bytes);
    memcpy(out + 48, h->model, MODEL_HASH_BYTES);
    put_u64(out + 120, fnv1a64(out, 120));
}

/* Region offsets for a capacity; -1 when they overflow. */
typedef struct feat_layout {
    uint64_t rows, ids, labels, uris;
} feat_layout_t;

static int layout_for(uint64_t dim, uint64_t capacity, feat_layout_t *l) {
    if (dim == 0 || dim > FEAT_MAX_DIM || capacity > ((uint64_t)1 << 40)) return -1;
    l->rows = FEAT_HEADER_SIZE;
    l->ids = l->rows + capacity * dim * 4;
    l->labels = l->ids + capacity * 8;
    l->uris = l->labels + capacity * 4;
    return 0;
}

/* b holds min(len, FEAT_HEADER_SIZE) bytes of a file of len bytes. */
static int header_decode(const uint8_t *b, size_t len, const char *path, feat_header_t *h,
                         util_err_t *err) {
    if (len < FEAT_HEADER_SIZE)
        return util_fail(err, "%s: %zu bytes, shorter than the %d-byte feature file header", path,
                         len, FEAT_HEADER_SIZE);
    if (memcmp(b, FEAT_MAGIC, 8))
        return util_fail(err, "%s: not an imgret feature file (bad magic)", path);
    if (get_u64(b + 120) != fnv1a64(b, 120))
        return util_fail(err, "%s: feature file header is corrupt (checksum mismatch)", path);
    h->version = get_u32(b + 8);
    h->dtype = get_u32(b + 12);
    h->dim = get_u32(b + 16);
    h->count = get_u64(b + 24);
    h->capacity = get_u64(b + 32);
    h->uri_bytes = get_u64(b + 40);
    memcpy(h->model, b + 48, MODEL_HASH_BYTES);
    if (h->version != FEAT_VERSION)
        return util_fail(err, "%s: feature file version %u (this build reads %d)", path, h->version,
                         FEAT_VERSION);
    if (h->dtype != FEAT_DTYPE_F32)
        return util_fail(err, "%s: dtype %u is not float32 (1)", path, h->dtype);
    if (get_u32(b + 20) != FEAT_HEADER_SIZE)
        return util_fail(err, "%s: header size %u (expected %d)", path, get_u32(b + 20),
                         FEAT_HEADER_SIZE);
    feat_layout_t l;
    if (h->dim == 0 || layout_for(h->dim, h->capacity, &l) || h->count > h->capacity)
        return util_fail(err, "%s: impossible header (dim %u, count %llu, capacity %llu)", path,
                         h->dim, (unsigned long long)h->count, (unsigned long long)h->capacity);
    if ((uint64_t)len < l.uris + h->uri_bytes)
        return util_fail(err,
                         "%s: truncated: the header needs %llu bytes (%llu rows of %u floats), "
                         "the file has %zu",
                         path, (unsigned long long)(l.uris + h->uri_bytes),
                         (unsigned long long)h->capacity, h->dim, len);
    return 0;
}

/* ------------------------------------------------------------- reader */

struct feat_file {
    uint8_t *map;
    size_t len;
    feat_header_t h;
    feat_layout_t l;
    char *uri_text;  /* count NUL-terminated strings */
    size_t *uri_off; /* count offsets into uri_text */
};

feat_file_t *feat_file_open(const char *path, util_err_t *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        util_fail(err, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st)) {
        util_fail(err, "%s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    feat_file_t *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        util_fail(err, "%s: out of memory", path);
        return NULL;
    }
    f->len = (size_t)st.st_size;
    if (f->len > 0) {
        f->map = mmap(NULL, f->len, PROT_READ, MAP_SHARED, fd, 0);
        if (f->map == MAP_FAILED) {
            f->map = NULL;
            util_fail(err, "%s: mmap: %s", path, strerror(errno));
            goto fail;
        }
    }
    close(fd);
    fd = -1;
    if (header_decode(f->map, f->len, path, &f->h, err)) goto fail;
    layout_for(f->h.dim, f->h.capacity, &f->l);
    /* The uri log: exactly count entries filling uri_bytes. */
    f->uri_text = malloc(f->h.uri_bytes + f->h.count + 1);
    f->uri_off = malloc((f->h.count + 1) * sizeof *f->uri_off);
    if (!f->uri_text || !f->uri_off) {
        util_fail(err, "%s: out of memory for %llu uris", path, (unsigned long long)f->h.count);
        goto fail;
    }
    const uint8_t *p = f->map + f->l.uris;
    uint64_t pos = 0, out = 0;
    for (uint64_t i = 0; i < f->h.count; i++) {
        if (pos + 4 > f->h.uri_bytes) {
            util_fail(err, "%s: uri log ends at entry %llu of %llu", path, (unsigned long long)i,
                      (unsigned long long)f->h.count);
            goto fail;
        }
        uint32_t n = get_u32(p + pos);
        pos += 4;
        if (n > FEAT_MAX_URI || pos + n > f->h.uri_bytes) {
            util_fail(err, "%s: uri %llu has impossible length %u", path, (unsigned long long)i, n);
            goto fail;
        }
        f->uri_off[i] = out;
        memcpy(f->uri_text + out, p + pos, n);
        out += n;
        f->uri_text[out++] = 0;
        pos += n;
    }
    if (pos != f->h.uri_bytes) {
        util_fail(err, "%s: uri log holds %llu bytes after the last of %llu entries", path,
                  (unsigned long long)(f->h.uri_bytes - pos), (unsigned long long)f->h.count);
        goto fail;
    }
    return f;
fail:
    if (fd >= 0) close(fd);
    feat_file_close(f);
    return NULL;
}

void feat_file_close(feat_file_t *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->len);
    free(f->uri_text);
    free(f->uri_off);
    free(f);
}

size_t feat_file_count(const feat_file_t *f) {
    return (size_t)f->h.count;
}
int feat_file_dim(const feat_file_t *f) {
    return (int)f->h.dim;
}
const uint8_t *feat_file_model_hash(const feat_file_t *f) {
    return f->h.model;
}
const float *feat_file_rows(const feat_file_t *f) {
    return (const float *)(const void *)(f->map + f->l.rows);
}
int64_t feat_file_id(const feat_file_t *f, size_t i) {
    return (int64_t)get_u64(f->map + f->l.ids + 8 * i);
}
int32_t feat_file_label(const feat_file_t *f, size_t i) {
    return (int32_t)get_u32(f->map + f->l.labels + 4 * i);
}
const char *feat_file_uri(const feat_file_t *f, size_t i) {
    return f->uri_text + f->uri_off[i];
}

/* ------------------------------------------------------------- writer */

struct feat_writer {
    char *path;
    int fd;
    feat_header_t h; /* the committed header */
    feat_layout_t l;
    uint64_t count;     /* committed + appended */
    uint64_t uri_bytes; /* committed + appended */
    int64_t last_id;
    int failed;
};

static int write_header(int fd, const feat_header_t *h, const char *path, util_err_t *err) {
    uint8_t b[FEAT_HEADER_SIZE];
    header_encode(h, b);
    return util_pwrite_all(fd, b, sizeof b, 0, path, err);
}

/* A new empty file at path, written atomically (util_atomic_open). */
static int create_file(const char *path, int dim, const uint8_t *model_hash, uint64_t capacity,
                       util_err_t *err) {
    feat_header_t h = {FEAT_VERSION, FEAT_DTYPE_F32, (uint32_t)dim, 0, capacity, 0, {0}};
    if (model_hash) memcpy(h.model, model_hash, MODEL_HASH_BYTES);
    feat_layout_t l;
    if (layout_for(h.dim, capacity, &l))
        return util_fail(err, "%s: dim %d with capacity %llu is not possible", path, dim,
                         (unsigned long long)capacity);
    util_atomic_file_t *a = util_atomic_open(path, err);
    if (!a) return -1;
    uint8_t b[FEAT_HEADER_SIZE];
    header_encode(&h, b);
    if (util_atomic_resize(a, l.uris, err) || util_atomic_pwrite(a, 0, b, sizeof b, err)) {
        util_atomic_abort(a);
        return -1;
    }
    return util_atomic_commit(a, err);
}

static int writer_load(feat_writer_t *w, util_err_t *err) {
    uint8_t b[FEAT_HEADER_SIZE];
    struct stat st;
    if (fstat(w->fd, &st)) return util_fail(err, "%s: %s", w->path, strerror(errno));
    size_t len = (size_t)st.st_size;
    size_t n = len < sizeof b ? len : sizeof b;
    if (n && util_pread_all(w->fd, b, n, 0, w->path, err)) return -1;
    if (header_decode(b, len, w->path, &w->h, err))
        return util_fail_prefix(err, "cannot append (move the file away to start over)");
    layout_for(w->h.dim, w->h.capacity, &w->l);
    w->count = w->h.count;
    w->uri_bytes = w->h.uri_bytes;
    w->last_id = -1;
    if (w->count) {
        uint8_t idb[8];
        if (util_pread_all(w->fd, idb, 8, w->l.ids + 8 * (w->count - 1), w->path, err)) return -1;
        w->last_id = (int64_t)get_u64(idb);
    }
    return 0;
}

feat_writer_t *feat_writer_open(const char *path, int dim, const uint8_t *model_hash,
                                size_t capacity, util_err_t *err) {
    if (dim < 1 || dim > FEAT_MAX_DIM) {
        util_fail(err, "%s: dim %d is not in [1, %d]", path, dim, FEAT_MAX_DIM);
        return NULL;
    }
    feat_writer_t *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        util_fail(err, "%s: out of memory", path);
        return NULL;
    }
    w->fd = -1;
    if (access(path, F_OK) != 0 && create_file(path, dim, model_hash, capacity ? capacity : 1, err))
        goto fail;
    w->fd = open(path, O_RDWR | O_CLOEXEC);
    if (w->fd < 0) {
        util_fail(err, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (writer_load(w, err)) goto fail;
    if ((int)w->h.dim != dim) {
        util_fail(err, "%s: holds %u-d rows, this extraction makes %d-d rows", path, w->h.dim, dim);
        goto fail;
    }
    if (model_hash && memcmp(model_hash, w->h.model, MODEL_HASH_BYTES)) {
        char a[2 * MODEL_HASH_BYTES + 1], b[2 * MODEL_HASH_BYTES + 1];
        model_hash_hex(w->h.model, a);
        model_hash_hex(model_hash, b);
        util_fail(err, "%s: made by model %.12s, not by this model (%.12s)", path, a, b);
        goto fail;
    }
    return w;
fail:
    if (w->fd >= 0) close(w->fd);
    free(w->path);
    free(w);
    return NULL;
}

size_t feat_writer_count(const feat_writer_t *w) {
    return (size_t)w->count;
}
int64_t feat_writer_last_id(const feat_writer_t *w) {
    return w->last_id;
}

int feat_writer_commit(feat_writer_t *w, util_err_t *err) {
    if (w->failed) return util_fail(err, "%s: an earlier write failed; not committing", w->path);
    if (w->count == w->h.count) return 0;
    if (fdatasync(w->fd)) {
        w->failed = 1;
        return util_fail(err, "%s: fsync: %s", w->path, strerror(errno));
    }
    feat_header_t h = w->h;
    h.count = w->count;
    h.uri_bytes = w->uri_bytes;
    if (write_header(w->fd, &h, w->path, err) || fdatasync(w->fd)) {
        w->failed = 1;
        return util_fail(err, "%s: writing the header failed", w->path);
    }
    w->h = h;
    return 0;
}

/* Rewrites the committed file with room for `capacity` rows (atomically:
 * the old file stays whole until the new one is renamed over it). */
static int writer_grow(feat_writer_t *w, uint64_t capacity, util_err_t *err) {
    if (feat_writer_commit(w, err)) return -1;
    feat_layout_t nl;
    if (layout_for(w->h.dim, capacity, &nl))
        return util_fail(err, "%s: cannot grow to %llu rows", w->path,
                         (unsigned long long)capacity);
    util_atomic_file_t *a = util_atomic_open(w->path, err);
    if (!a) return -1;
    int rc = util_atomic_resize(a, nl.uris + w->h.uri_bytes, err);
    /* Copy the regions in chunks: rows, ids, labels, uri log. */
    uint64_t src[4] = {w->l.rows, w->l.ids, w->l.labels, w->l.uris};
    uint64_t dst[4] = {nl.rows, nl.ids, nl.labels, nl.uris};
    uint64_t len[4] = {w->h.count * w->h.dim * 4, w->h.count * 8, w->h.count * 4, w->h.uri_bytes};
    uint8_t *buf = malloc(1 << 20);
    if (!buf) rc = util_fail(err, "%s: out of memory", w->path);
    for (int r = 0; rc == 0 && r < 4; r++)
        for (uint64_t o = 0; rc == 0 && o < len[r]; o += 1 << 20) {
            size_t k = (size_t)(len[r] - o < (1 << 20) ? len[r] - o : (1 << 20));
            rc = util_pread_all(w->fd, buf, k, src[r] + o, w->path, err);
            if (rc == 0) rc = util_atomic_pwrite(a, dst[r] + o, buf, k, err);
        }
    free(buf);
    feat_header_t h = w->h;
    h.capacity = capacity;
    uint8_t hb[FEAT_HEADER_SIZE];
    header_encode(&h, hb);
    if (rc == 0) rc = util_atomic_pwrite(a, 0, hb, sizeof hb, err);
    if (rc) {
        util_atomic_abort(a);
        return -1;
    }
    if (util_atomic_commit(a, err)) return -1;
    /* The grown file is at path now; append to it from here on. */
    int fd = open(w->path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        w->failed = 1;
        return util_fail(err, "%s: reopening after growing it: %s", w->path, strerror(errno));
    }
    close(w->fd);
    w->fd = fd;
    w->h = h;
    w->l = nl;
    return 0;
}

int feat_writer_append(feat_writer_t *w, size_t n, const float *rows, const int64_t *ids,
                       const int32_t *labels, const char *const *uris, util_err_t *err) {
    if (w->failed) return util_fail(err, "%s: an earlier write failed", w->path);
    if (n == 0) return 0;
    if (w->count + n > w->h.capacity) {
        uint64_t cap = w->h.capacity * 2;
        if (cap < w->count + n) cap = w->count + n;
        if (writer_grow(w, cap, err)) return -1;
    }
    size_t ulen = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = uris && uris[i] ? strlen(uris[i]) : 0;
        if (k > FEAT_MAX_URI)
            return util_fail(err, "%s: uri of id %lld is %zu bytes (at most %d)", w->path,
                             (long long)ids[i], k, FEAT_MAX_URI);
        ulen += 4 + k;
    }
    uint8_t *meta = malloc(n * 12 + ulen);
    if (!meta) return util_fail(err, "%s: out of memory", w->path);
    uint8_t *idb = meta, *lb = meta + 8 * n, *ub = meta + 12 * n, *up = ub;
    for (size_t i = 0; i < n; i++) {
        put_u64(idb + 8 * i, (uint64_t)ids[i]);
        put_u32(lb + 4 * i, (uint32_t)(labels ? labels[i] : -1));
        size_t k = uris && uris[i] ? strlen(uris[i]) : 0;
        put_u32(up, (uint32_t)k);
        if (k) memcpy(up + 4, uris[i], k);
        up += 4 + k;
    }
    /* Rows are host float32; the format is little-endian, which every
     * platform imgret builds for is. */
    int rc = util_pwrite_all(w->fd, rows, n * w->h.dim * 4, w->l.rows + w->count * w->h.dim * 4,
                             w->path, err);
    if (rc == 0) rc = util_pwrite_all(w->fd, idb, 8 * n, w->l.ids + 8 * w->count, w->path, err);
    if (rc == 0) rc = util_pwrite_all(w->fd, lb, 4 * n, w->l.labels + 4 * w->count, w->path, err);
    if (rc == 0) rc = util_pwrite_all(w->fd, ub, ulen, w->l.uris + w->uri_bytes, w->path, err);
    free(meta);
    if (rc) {
        w->failed = 1;
        return -1;
    }
    w->count += n;
    w->uri_bytes += ulen;
    w->last_id = ids[n - 1];
    return 0;
}

int feat_writer_close(feat_writer_t *w, util_err_t *err) {
    if (!w) return 0;
    int rc = w->failed ? 0 : feat_writer_commit(w, err);
    close(w->fd);
    free(w->path);
    free(w);
    return rc;
}
