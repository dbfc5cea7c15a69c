/* util: errors, RNG, timing. The lowest module: includes nothing of imgret. */
#ifndef IMGRET_UTIL_H
#define IMGRET_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Errors. Library code never prints and never exits: a function that can fail
 * returns an int status (0 ok, -1 error) or NULL, and writes one human
 * sentence into an error buffer owned by the caller. `err` may be NULL. */
typedef struct util_err {
    char msg[512];
} util_err_t;

/* Formats into err->msg (when err is not NULL) and returns -1, so a caller can
 * write `return util_fail(err, "conv2: ...");`. */
int util_fail(util_err_t *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prepends "prefix: " to an existing message (for adding context while an
 * error travels up). Returns -1. */
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

#endif
