#include "util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int util_fail(util_err_t *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->kind = UTIL_ERR_INTERNAL;
    }
    return -1;
}

int util_fail_kind(util_err_t *err, util_err_kind_t kind, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->kind = kind;
    }
    return -1;
}

util_err_kind_t util_err_kind(const util_err_t *err) {
    if (!err || (unsigned)err->kind >= UTIL_ERR_N_KINDS) return UTIL_ERR_INTERNAL;
    return err->kind;
}

int util_fail_prefix(util_err_t *err, const char *fmt, ...) {
    if (err) {
        char prefix[256], old[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        old[sizeof old - 1] = '\0';
        /* Truncation is acceptable here: the message is for people. */
        size_t n = strlen(prefix);
        if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
        memcpy(err->msg, prefix, n);
        memcpy(err->msg + n, ": ", 2);
        size_t rest = sizeof err->msg - n - 3, m = strlen(old);
        if (m > rest) m = rest;
        memcpy(err->msg + n + 2, old, m);
        err->msg[n + 2 + m] = '\0';
    }
    return -1;
}

#define SPLITMIX_GAMMA 0x9e3779b97f4a7c15ULL

uint64_t util_splitmix64(uint64_t x) {
    uint64_t z = x + SPLITMIX_GAMMA;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void util_rng_seed(util_rng_t *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        rng->s[i] = util_splitmix64(seed + (uint64_t)i * SPLITMIX_GAMMA);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t util_rng_u64(util_rng_t *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float util_rng_uniform(util_rng_t *rng) {
    return (float)(util_rng_u64(rng) >> 40) * (1.0f / 16777216.0f);
}

uint32_t util_rng_below(util_rng_t *rng, uint32_t n) {
    /* Lemire's multiply-shift; the tiny bias (< 2^-32) is irrelevant here. */
    return (uint32_t)(((util_rng_u64(rng) >> 32) * (uint64_t)n) >> 32);
}

double util_rng_normal(util_rng_t *rng) {
    /* Box-Muller, one value per call: keeps the state plain (no cached spare). */
    double u1 = ((double)(util_rng_u64(rng) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(util_rng_u64(rng) >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

double util_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int util_num_threads(void) {
#ifdef _OPENMP
    int n = omp_get_max_threads();
    return n > 0 ? n : 1;
#else
    return 1;
#endif
}

int util_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > (size_t)-1 / a) return -1;
    *out = a * b;
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double util_median(double *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}
