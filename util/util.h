/* util: errors, RNG, timing. The lowest module: includes nothing of imgret. */
#ifndef IMGRET_UTIL_H
#define IMGRET_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Errors. Library code never prints and never exits: a function that can fail
 * returns an int status (0 ok, -1 error) or NULL, and writes one human
 * sentence into an error buffer owned by the caller, with a kind beside it.
 * `err` may be NULL. Callers branch on the kind, never on the sentence (the
 * server maps kinds to Twirp codes in server/error.c). */

/* What went wrong, as far as a caller can act on it. Set where the error
 * starts; a layer that only adds context keeps it (util_fail_prefix). */
typedef enum util_err_kind {
    UTIL_ERR_INTERNAL = 0, /* the default (util_fail, a zeroed util_err_t): not the
                            * caller's doing and nothing it can fix; a bug or an
                            * unexpected failure below */
    UTIL_ERR_INVALID,      /* the caller's argument or input is wrong: a bad value,
                            * bytes that are not an image */
    UTIL_ERR_NOT_FOUND,    /* what it names (an id, a file) does not exist */
    UTIL_ERR_EXISTS,       /* what it would create exists already (a duplicate id) */
    UTIL_ERR_LIMIT,        /* out of a resource: memory, room in a queue, a cap
                            * on the work one call may ask (pixels); an argument
                            * outside its range is UTIL_ERR_INVALID */
    UTIL_ERR_PRECONDITION, /* valid, but the state does not allow it: a store of
                            * another shape, an index not trained */
    UTIL_ERR_UNAVAILABLE,  /* not now (busy, locked, shutting down): a retry may work */
    UTIL_ERR_DEADLINE,     /* ran out of time */
    UTIL_ERR_CANCELLED,    /* the caller gave up */
    UTIL_ERR_CORRUPT,      /* stored data is damaged or not what it claims: a bad
                            * magic, checksum or shape in a file or store */
    UTIL_ERR_IO,           /* the system failed a read, write, open or sync */
    UTIL_ERR_UNSUPPORTED,  /* well formed, but this build or version does not do it */
    UTIL_ERR_N_KINDS
} util_err_kind_t;

/* Both fields sit in one anonymous member, kind first, so the tree's
 * `util_err_t err = {{0}};` zeroes the whole struct without a missing
 * field initializer warning. */
typedef struct util_err {
    struct {
        util_err_kind_t kind; /* meaningful after a failure */
        char msg[512];
    };
} util_err_t;

/* Formats into err->msg (when err is not NULL), sets err->kind to
 * UTIL_ERR_INTERNAL and returns -1, so a caller can write
 * `return util_fail(err, "conv2: ...");`. */
int util_fail(util_err_t *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* util_fail with a kind: `return util_fail_kind(err, UTIL_ERR_NOT_FOUND, "no item
 * with id %lld", id);`. */
int util_fail_kind(util_err_t *err, util_err_kind_t kind, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The kind of a failed call's error: err->kind, UTIL_ERR_INTERNAL for NULL or
 * a value out of range. */
util_err_kind_t util_err_kind(const util_err_t *err);

/* Prepends "prefix: " to an existing message (for adding context while an
 * error travels up); the kind is kept. Returns -1. */
int util_fail_prefix(util_err_t *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Random numbers: xoshiro256** seeded with splitmix64. Deterministic for a
 * given seed on every platform; the state is plain data (can be checkpointed). */
typedef struct util_rng {
    uint64_t s[4];
} util_rng_t;

void util_rng_seed(util_rng_t *rng, uint64_t seed);
/* splitmix64's output for the state x (x plus the golden gamma, then its
 * finaliser): a stateless 64-bit mixer for deriving seeds and hashing keys.
 * The stream of a seed s is util_splitmix64(s), util_splitmix64(s + gamma),
 * ... with gamma = 0x9e3779b97f4a7c15. */
uint64_t util_splitmix64(uint64_t x);
uint64_t util_rng_u64(util_rng_t *rng);
/* Uniform in [0, 1) with 24 random bits. */
float util_rng_uniform(util_rng_t *rng);
/* Uniform integer in [0, n), n > 0. */
uint32_t util_rng_below(util_rng_t *rng, uint32_t n);
/* Standard normal (Box-Muller; both values of a pair are used). */
double util_rng_normal(util_rng_t *rng);

/* Monotonic clock in seconds. */
double util_now(void);

/* Number of worker threads the compute code uses (OpenMP's, at least 1). */
int util_num_threads(void);

/* Checked size arithmetic: returns 0 and sets *out, or -1 on overflow. */
int util_mul_size(size_t a, size_t b, size_t *out);

/* Median of n doubles (the array is sorted in place). n > 0. */
double util_median(double *v, size_t n);

/* File I/O (fileio.c): the one bounded read of a whole file and the one
 * atomic write that every module uses. */

/* Reads the whole file at path into a malloc'd buffer (the caller frees it)
 * with a NUL after the last byte, so text can be parsed in place; *len gets
 * the size. A file (or pipe) of more than max_bytes is refused with a message
 * naming the path and the limit, a regular file before anything is
 * allocated. Returns NULL on error (cannot open, a folder, read failed). */
void *util_read_file(const char *path, size_t max_bytes, size_t *len, util_err_t *err);

/* Opens path read-only after checking it is a regular file of at most
 * max_bytes (for readers that map the file). *fd gets the descriptor (the
 * caller closes it), *len the size. */
int util_open_regular(const char *path, size_t max_bytes, int *fd, size_t *len, util_err_t *err);

/* pread / pwrite of exactly n bytes at offset off, retrying short transfers
 * and interrupted calls. Reading past the end of the file is an error ("file
 * ends early", UTIL_ERR_CORRUPT). Messages name path. */
int util_pread_all(int fd, void *buf, size_t n, uint64_t off, const char *path, util_err_t *err);
int util_pwrite_all(int fd, const void *buf, size_t n, uint64_t off, const char *path,
                    util_err_t *err);

/* An atomic write: everything goes to a temporary file "PATH.tmp.XXXXXX" in
 * the target's folder; commit flushes it, fsyncs it, renames it over path and
 * fsyncs the folder, so a crash at any moment leaves the old file (or none)
 * or the complete new one at path, never a torn one. A crash before commit
 * may leave the temporary file behind; path is untouched. */
typedef struct util_atomic_file util_atomic_file_t;

/* Creates the temporary file (mode 0666 less the umask). NULL on error. */
util_atomic_file_t *util_atomic_open(const char *path, util_err_t *err);
/* Appends len bytes at the stream's position. A failed write is remembered:
 * later writes and commit fail too, so a streaming writer may check only the
 * commit. */
int util_atomic_write(util_atomic_file_t *a, const void *data, size_t len, util_err_t *err);
/* Writes len bytes at an absolute offset (a header filled in last, a sparse
 * layout), leaving the stream's position alone. */
int util_atomic_pwrite(util_atomic_file_t *a, uint64_t offset, const void *data, size_t len,
                       util_err_t *err);
/* Sets the temporary file's size (ftruncate: zeros when it grows). */
int util_atomic_resize(util_atomic_file_t *a, uint64_t size, util_err_t *err);
/* The temporary file as a read-write stdio stream, for writers that hand a
 * FILE * to a library (FAISS) or read back what they wrote. Owned by a; its
 * errors are caught by commit (ferror). */
FILE *util_atomic_stream(util_atomic_file_t *a);
/* The target path (for messages). */
const char *util_atomic_path(const util_atomic_file_t *a);
/* Makes the file durable and puts it at path (see above). Frees a, also on
 * error, when the temporary file is removed and path is untouched. */
int util_atomic_commit(util_atomic_file_t *a, util_err_t *err);
/* Removes the temporary file and frees a; path is untouched. NULL is fine. */
void util_atomic_abort(util_atomic_file_t *a);

/* One-shot atomic write of len bytes to path (open, write, commit). */
int util_write_file_atomic(const char *path, const void *data, size_t len, util_err_t *err);

#endif
