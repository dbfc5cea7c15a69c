/* Private to model/: helpers shared by the model file (modelfile.c), the
 * Caffe importer (caffe_import.c) and ONNX import/export (onnx_io.c), in two
 * layers that call one way: interop_common.c (atomic writing with a running
 * SHA-256, dims in messages) under modelfile.c, and interop_build.c (the
 * builder that turns a layer list read from another format into a checked
 * paper-shaped model file) above it. White-box tests (tests/interop/)
 * include it too. */
#ifndef IMGRET_MODEL_INTEROP_INTERNAL_H
#define IMGRET_MODEL_INTEROP_INTERNAL_H

#include "model/model.h"

#include <stdio.h>

/* -------------------------------------------- atomic write (interop_common.c) */

/* Writes a model file atomically through util's atomic write (see
 * util_atomic_open: a crash leaves the old file or the new one, never a torn
 * one), feeding what is written to a running SHA-256 when one is on. The
 * hashing stays here so util needs no OpenSSL. */
typedef struct ix_writer {
    util_atomic_file_t *a;
    int failed; /* hashing failed; commit reports it */
    void *sha;  /* EVP_MD_CTX while hashing, else NULL */
} ix_writer_t;

int ix_writer_open(ix_writer_t *w, const char *path, util_err_t *err);
/* Appends bytes (and feeds them to the running hash when one is on). Errors
 * are remembered and reported by commit. */
void ix_writer_write(ix_writer_t *w, const void *data, size_t len);
/* Starts a SHA-256 over what is written from now on. */
int ix_writer_hash_begin(ix_writer_t *w, util_err_t *err);
/* Ends it: writes the digest into out. */
int ix_writer_hash_end(ix_writer_t *w, uint8_t out[MODEL_HASH_BYTES], util_err_t *err);
/* Overwrites bytes at an absolute offset (e.g. a header filled in last). */
int ix_writer_pwrite(ix_writer_t *w, uint64_t offset, const void *data, size_t len,
                     util_err_t *err);
/* util_atomic_commit: flushes, fsyncs, renames over the target, fsyncs the
 * folder. Frees w's resources. */
int ix_writer_commit(ix_writer_t *w, util_err_t *err);
/* Removes the temporary file. Frees w. Safe after a failed open. */
void ix_writer_abort(ix_writer_t *w);

/* A protobuf-c ProtobufCBuffer (declared in the .c) that forwards to
 * ix_writer_write, so large messages stream to disk without a packed copy. */
struct ProtobufCMessage;
void ix_writer_pack(ix_writer_t *w, const struct ProtobufCMessage *msg);

/* SHA-256 of a buffer. */
int ix_sha256(const void *data, size_t len, uint8_t out[MODEL_HASH_BYTES], util_err_t *err);

/* Formats dims as "256x48x5x5". */
void ix_dims_str(const int *dims, int ndim, char *out, size_t cap);

/* ------------------------------------------- import builder (interop_build.c) */

/* One layer read from a Caffe or ONNX file, in the file's own layout. Kinds
 * are the spec's; the builder checks the sequence and assigns imgret's
 * names. Weights are borrowed from the parsed file. */
typedef struct ix_layer {
    model_layer_spec_t l; /* kind and settings; name is ignored */
    char src[96];         /* "layer 'conv2' (Convolution)": for messages */
    const float *w, *b;   /* NULL when the layer has none */
    /* Or, when w (b) is NULL: the same values as little-endian floats in
     * place in a mapped file (a Caffe blob's packed data), not necessarily
     * aligned, copied straight into the model's parameters. */
    const uint8_t *w_raw, *b_raw;
    size_t w_count, b_count;
    int w_ndim, w_dims[4]; /* as stored in the file */
    int b_ndim, b_dims[4];
    int w_in_out; /* fc weight stored (in, out) (ONNX Gemm transB=0) */
} ix_layer_t;

/* Checks that layers form a paper-shaped AlexNet (model_spec_check_paper_shape:
 * dropout layers may be missing and are then added with p=0.5, being the
 * identity at inference), builds the spec with imgret's layer names and the
 * paper's initialisation settings, and copies the weights, checking each
 * shape against the spec. in_order BGR reorders conv1's input channels so
 * the model takes RGB. Returns a model file with norm defaults (RGB, no
 * mean, scale 1, stored size 256). */
model_file_t *ix_build(const ix_layer_t *layers, int n, int in_c, int in_h, int in_w,
                       model_channel_order_t in_order, const char *source, util_err_t *err);

/* --------------------------------------------------------- white-box hooks */

/* Writes mf as a model file without checking it first, so tests can make
 * files that are wrong in one exact way. */
int mf_save_unchecked(model_file_t *mf, const char *path, util_err_t *err);

#endif
