/* features: batched FC7 extraction and feature files.
 *
 * Feature file, version 1 (all integers little-endian):
 *
 *   header, 128 bytes:
 *     0  "IMGRFEAT"        magic
 *     8  u32 version       1
 *    12  u32 dtype         1 = float32
 *    16  u32 dim           floats per row
 *    20  u32 header_size   128
 *    24  u64 count         committed rows
 *    32  u64 capacity      rows the file has room for
 *    40  u64 uri_bytes     committed length of the uri log
 *    48  u8[32] model      SHA-256 of the model that produced the rows
 *    80  u8[40]            zero
 *   120  u64 checksum      FNV-1a 64 of bytes 0..119
 *   rows    capacity * dim float32, row-major, starting at byte 128
 *   ids     capacity * i64 (the item's index in its dataset)
 *   labels  capacity * i32 (-1: none)
 *   uris    a log of (u32 length, bytes) entries, uri_bytes committed
 *
 * Only the first `count` rows, ids and labels and the first uri_bytes of the
 * log are meaningful. Rows, ids and labels live in fixed slots, so
 * appending never moves committed data: a writer fills the next slots and
 * then rewrites the header (after fsync), which is the commit. A process
 * killed mid-append leaves the last committed state, and reopening for
 * append continues from there. When the capacity is reached the writer
 * rewrites the file with twice the room (temporary file, fsync, rename).
 * The rows of a file are one contiguous count x dim matrix that a reader
 * uses straight from the mapping.
 *
 * Errors: functions return 0 / a pointer, or -1 / NULL with a sentence in
 * err naming the file and the problem; nothing here prints or exits.
 */
#ifndef IMGRET_FEATURES_H
#define IMGRET_FEATURES_H

#include <stddef.h>
#include <stdint.h>

#include "data/data.h"
#include "model/model.h"
#include "util/util.h"

#define FEAT_MAGIC "IMGRFEAT"
#define FEAT_VERSION 1
#define FEAT_DTYPE_F32 1
#define FEAT_HEADER_SIZE 128
#define FEAT_MAX_DIM (1 << 20)
#define FEAT_MAX_URI 4096

/* ------------------------------------------------------------ reading */

typedef struct feat_file feat_file_t;

/* Maps a feature file read-only after checking magic, version, dtype,
 * header checksum, that the file is long enough for its capacity and uri
 * log, and every uri entry. Free with feat_file_close. */
feat_file_t *feat_file_open(const char *path, util_err_t *err);
void feat_file_close(feat_file_t *f); /* accepts NULL */

size_t feat_file_count(const feat_file_t *f);
int feat_file_dim(const feat_file_t *f);
const uint8_t *feat_file_model_hash(const feat_file_t *f); /* MODEL_HASH_BYTES */
/* The count x dim matrix, inside the mapping (valid until close). */
const float *feat_file_rows(const feat_file_t *f);
int64_t feat_file_id(const feat_file_t *f, size_t i);
int32_t feat_file_label(const feat_file_t *f, size_t i);
/* NUL-terminated copy of uri i (owned by the file, valid until close). */
const char *feat_file_uri(const feat_file_t *f, size_t i);

/* ------------------------------------------------------------ writing */

typedef struct feat_writer feat_writer_t;

/* Opens path for appending, creating it (with room for capacity rows,
 * at least 1) when it does not exist. An existing file must have this dim
 * and model hash (model_hash may be NULL to accept any). Free with
 * feat_writer_close, which commits. */
feat_writer_t *feat_writer_open(const char *path, int dim, const uint8_t *model_hash,
                                size_t capacity, util_err_t *err);
/* Commits what was appended (unless the writer failed) and closes. Returns
 * the commit's status; accepts NULL. */
int feat_writer_close(feat_writer_t *w, util_err_t *err);

/* Committed plus appended rows. */
size_t feat_writer_count(const feat_writer_t *w);
/* id of the last row (appended or committed), or -1 when there is none. */
int64_t feat_writer_last_id(const feat_writer_t *w);

/* Appends n rows of dim floats with their ids, labels and uris (uris may be
 * NULL: empty strings; an entry longer than FEAT_MAX_URI is an error).
 * Nothing is durable before feat_writer_commit. */
int feat_writer_append(feat_writer_t *w, size_t n, const float *rows, const int64_t *ids,
                       const int32_t *labels, const char *const *uris, util_err_t *err);
/* Makes the appended rows durable: fsync of the data, then the header
 * with the new count and uri length, fsync again. */
int feat_writer_commit(feat_writer_t *w, util_err_t *err);

/* ---------------------------------------------------------- extraction */

/* A net cut at FC7 with the model's input rule: the one path from an image
 * to its FC7, which `imgret extract` (feat_extract_dataset) and the
 * server's workers both take, so a stored vector and a query vector of the
 * same image are computed alike. */
typedef struct feat_extractor feat_extractor_t;

/* Builds a CPU net for batches of up to `batch` images from mf (borrowed
 * only during the call). The features are the output of the layer named
 * "relu7" (FC7 after ReLU), or of `layer` when that is not NULL. Fails for
 * a model whose input model_input_from_file refuses. */
feat_extractor_t *feat_extractor_create(const model_file_t *mf, int batch, const char *layer,
                                        util_err_t *err);
/* The same with the net on the devices of a placement (NULL: one CPU). */
feat_extractor_t *feat_extractor_create_on(const model_file_t *mf, int batch, const char *layer,
                                           const model_placement_t *pl, util_err_t *err);
void feat_extractor_free(feat_extractor_t *ex); /* accepts NULL */

int feat_extractor_dim(const feat_extractor_t *ex);
const uint8_t *feat_extractor_model_hash(const feat_extractor_t *ex);

/* How an image becomes network input under this model, for every image
 * whatever its size or source: model_input_from_file's rule (model.h:
 * shorter side to stored size - 2 * pad, centre square, pad, centre crop),
 * the model's mean and scale. Owned by the extractor. */
const model_input_t *feat_extractor_input(const feat_extractor_t *ex);

/* An encoded image (any format data_decode reads; at most max_pixels by its header, 0: the
 * codec's limit) as the stored image of that rule: the pixels
 * feat_extract_dataset's loader makes of the same file. Caller frees. */
data_image_t *feat_extractor_decode(const feat_extractor_t *ex, const void *buf, size_t len,
                                    size_t max_pixels, util_err_t *err);

/* Forward pass over n network inputs (NCHW, n <= batch, crops of the stored
 * image by feat_extractor_input) into out (n * dim). */
int feat_extract_batch(feat_extractor_t *ex, const float *x, int n, float *out, util_err_t *err);
/* The class scores (n x classes) of the last feat_extract_batch, inside the
 * net: valid until the next call. classes may be NULL. */
const float *feat_extractor_logits(const feat_extractor_t *ex, int *classes);

typedef struct feat_extract_opts {
    int threads; /* loader (decode) threads, >= 1 */
    /* Progress after every batch: items done (of total), rows written.
     * May be NULL. */
    void (*on_progress)(void *ctx, size_t done, size_t total, size_t rows);
    /* Per item that could not be loaded (skipped, not written). May be NULL. */
    void (*on_skip)(void *ctx, size_t item, const char *message);
    void *ctx;
    volatile int *stop; /* checked after every batch: commit and return 1 */
} feat_extract_opts_t;

/* Extracts every item of ds into w, continuing after the item of the
 * writer's last row (so a rerun after an interruption computes only what is
 * missing). ids are item indexes, labels the dataset's, uris the item
 * names. Commits after every batch. Returns 0 when done, 1 when stopped,
 * -1 on error. */
int feat_extract_dataset(feat_extractor_t *ex, const data_dataset_t *ds, feat_writer_t *w,
                         const feat_extract_opts_t *opts, util_err_t *err);

#endif
