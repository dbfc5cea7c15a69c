/* The code file (format in autoencoder.h) that `imgret ae-encode` writes,
 * through util's atomic write, and its reader. */
#include "autoencoder/autoencoder.h"

#include <stdlib.h>
#include <string.h>

#define CODES_MAGIC "IMGRCODE"
#define CODES_VERSION 1
#define CODES_HEADER 24

static void put_le(uint8_t *p, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Writes n values of `bytes` bytes each, little-endian, in chunks. */
static int write_le(util_atomic_file_t *a, const void *values, size_t n, int bytes,
                    util_err_t *err) {
    uint8_t buf[8 * 4096];
    for (size_t at = 0; at < n;) {
        size_t k = n - at < 4096 ? n - at : 4096;
        for (size_t i = 0; i < k; i++) {
            uint64_t v = bytes == 8 ? (uint64_t)((const int64_t *)values)[at + i]
                                    : (uint64_t)(uint32_t)((const int32_t *)values)[at + i];
            put_le(buf + i * (size_t)bytes, v, bytes);
        }
        if (util_atomic_write(a, buf, k * (size_t)bytes, err)) return -1;
        at += k;
    }
    return 0;
}

int ae_codes_save(const char *path, int bits, size_t n, const uint8_t *codes, const int64_t *ids,
                  const int32_t *labels, util_err_t *err) {
    if (bits < 1 || bits > AE_MAX_BITS)
        return util_fail_kind(err, UTIL_ERR_INVALID, "%s: %d-bit codes (1..%d)", path, bits,
                              AE_MAX_BITS);
    uint8_t h[CODES_HEADER];
    memcpy(h, CODES_MAGIC, 8);
    put_le(h + 8, CODES_VERSION, 4);
    put_le(h + 12, (uint32_t)bits, 4);
    put_le(h + 16, (uint64_t)n, 8);
    util_atomic_file_t *a = util_atomic_open(path, err);
    if (!a) return -1;
    if (util_atomic_write(a, h, sizeof h, err) ||
        util_atomic_write(a, codes, n * (size_t)ae_code_bytes(bits), err) ||
        write_le(a, ids, n, 8, err) || write_le(a, labels, n, 4, err)) {
        util_atomic_abort(a);
        return -1;
    }
    return util_atomic_commit(a, err);
}

void ae_codes_free(ae_codes_t *c) {
    if (!c) return;
    free(c->codes);
    free(c->ids);
    free(c->labels);
    free(c);
}

ae_codes_t *ae_codes_load(const char *path, util_err_t *err) {
    size_t len;
    uint8_t *b = util_read_file(path, AE_CODES_MAX_BYTES, &len, err);
    if (!b) return NULL;
    ae_codes_t *c = NULL;
    if (len < CODES_HEADER || memcmp(b, CODES_MAGIC, 8)) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: not a code file (no IMGRCODE header)", path);
        goto done;
    }
    uint32_t version = (uint32_t)get_le(b + 8, 4), bits = (uint32_t)get_le(b + 12, 4);
    uint64_t n = get_le(b + 16, 8);
    if (version != CODES_VERSION || bits < 1 || bits > AE_MAX_BITS) {
        util_fail_kind(
            err, version != CODES_VERSION ? UTIL_ERR_UNSUPPORTED : UTIL_ERR_CORRUPT,
            "%s: code file version %u with %u-bit codes (this reader: version %d, 1..%d bits)",
            path, version, bits, CODES_VERSION, AE_MAX_BITS);
        goto done;
    }
    size_t nb = (size_t)ae_code_bytes((int)bits);
    if (n > len) {
        util_fail_kind(err, UTIL_ERR_CORRUPT,
                       "%s: header claims %llu codes, more than its %zu bytes can hold", path,
                       (unsigned long long)n, len);
        goto done;
    }
    /* n <= len <= AE_CODES_MAX_BYTES: the products below cannot overflow. */
    uint64_t need = CODES_HEADER + n * (nb + 12);
    if (need != len) {
        util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: %zu bytes, but %llu codes of %u bits need %llu",
                       path, len, (unsigned long long)n, bits, (unsigned long long)need);
        goto done;
    }
    c = calloc(1, sizeof *c);
    if (!c || !(c->codes = malloc(n * nb + 1)) || !(c->ids = malloc(n * 8 + 1)) ||
        !(c->labels = malloc(n * 4 + 1))) {
        ae_codes_free(c);
        c = NULL;
        util_fail_kind(err, UTIL_ERR_LIMIT, "%s: out of memory for %llu codes", path,
                       (unsigned long long)n);
        goto done;
    }
    c->bits = (int)bits;
    c->count = (size_t)n;
    const uint8_t *p = b + CODES_HEADER;
    memcpy(c->codes, p, n * nb);
    p += n * nb;
    for (size_t i = 0; i < n; i++)
        c->ids[i] = (int64_t)get_le(p + 8 * i, 8);
    p += n * 8;
    for (size_t i = 0; i < n; i++)
        c->labels[i] = (int32_t)(uint32_t)get_le(p + 4 * i, 4);
done:
    free(b);
    return c;
}
