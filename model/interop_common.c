/* The low level under the model file and the importers: the model file's
 * atomic write with a running SHA-256 (util's atomic write underneath) and
 * its protobuf sink, SHA-256 of a buffer, dims in messages. Calls only util,
 * OpenSSL and protobuf-c; the import builder above it is interop_build.c. */
#include "model/interop_internal.h"

#include <openssl/evp.h>
#include <protobuf-c/protobuf-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- atomic write */

int ix_sha256(const void *data, size_t len, uint8_t out[MODEL_HASH_BYTES], util_err_t *err) {
    unsigned int n = 0;
    if (!EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) || n != MODEL_HASH_BYTES)
        return util_fail(err, "sha256: OpenSSL failed");
    return 0;
}

int ix_writer_open(ix_writer_t *w, const char *path, util_err_t *err) {
    memset(w, 0, sizeof *w);
    w->a = util_atomic_open(path, err);
    return w->a ? 0 : -1;
}

void ix_writer_write(ix_writer_t *w, const void *data, size_t len) {
    if (w->failed || len == 0) return;
    if (w->sha && !EVP_DigestUpdate((EVP_MD_CTX *)w->sha, data, len)) w->failed = 1;
    /* A failed write is remembered by the atomic file; commit reports it. */
    util_atomic_write(w->a, data, len, NULL);
}

int ix_writer_hash_begin(ix_writer_t *w, util_err_t *err) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(c);
        return util_fail(err, "%s: sha256: OpenSSL failed", util_atomic_path(w->a));
    }
    w->sha = c;
    return 0;
}

int ix_writer_hash_end(ix_writer_t *w, uint8_t out[MODEL_HASH_BYTES], util_err_t *err) {
    unsigned int n = 0;
    EVP_MD_CTX *c = w->sha;
    w->sha = NULL;
    int ok = !w->failed && c && EVP_DigestFinal_ex(c, out, &n) && n == MODEL_HASH_BYTES;
    EVP_MD_CTX_free(c);
    return ok ? 0 : util_fail(err, "%s: sha256: OpenSSL failed", util_atomic_path(w->a));
}

int ix_writer_pwrite(ix_writer_t *w, uint64_t offset, const void *data, size_t len,
                     util_err_t *err) {
    return util_atomic_pwrite(w->a, offset, data, len, err);
}

int ix_writer_commit(ix_writer_t *w, util_err_t *err) {
    int rc;
    if (w->failed) {
        rc = util_fail(err, "%s: sha256: OpenSSL failed", util_atomic_path(w->a));
        util_atomic_abort(w->a);
    } else {
        rc = util_atomic_commit(w->a, err);
    }
    w->a = NULL;
    ix_writer_abort(w);
    return rc;
}

void ix_writer_abort(ix_writer_t *w) {
    util_atomic_abort(w->a);
    EVP_MD_CTX_free((EVP_MD_CTX *)w->sha);
    memset(w, 0, sizeof *w);
}

typedef struct writer_buffer {
    ProtobufCBuffer base;
    ix_writer_t *w;
} writer_buffer_t;

static void writer_append(ProtobufCBuffer *buffer, size_t len, const uint8_t *data) {
    ix_writer_write(((writer_buffer_t *)buffer)->w, data, len);
}

void ix_writer_pack(ix_writer_t *w, const struct ProtobufCMessage *msg) {
    writer_buffer_t b = {{writer_append}, w};
    protobuf_c_message_pack_to_buffer(msg, &b.base);
}

/* ------------------------------------------------------------ messages */

void ix_dims_str(const int *dims, int ndim, char *out, size_t cap) {
    size_t at = 0;
    out[0] = '\0';
    for (int i = 0; i < ndim && at < cap; i++)
        at += (size_t)snprintf(out + at, cap - at, i ? "x%d" : "%d", dims[i]);
}
