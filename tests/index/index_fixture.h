/* Helpers shared by the index tests: scratch folders, deterministic data and
 * brute-force references. */
#ifndef IMGRET_TEST_INDEX_FIXTURE_H
#define IMGRET_TEST_INDEX_FIXTURE_H

#include "index/index.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A fresh empty folder under TMPDIR (or /tmp); path written into buf. */
static inline void fx_tmpdir(char *buf, size_t cap, const char *tag) {
    const char *t = getenv("TMPDIR");
    snprintf(buf, cap, "%s/imgret-%s-XXXXXX", t && *t ? t : "/tmp", tag);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(2);
    }
}

/* Removes a flat folder and its files. */
static inline void fx_rmdir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1200];
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
    closedir(d);
    rmdir(dir);
}

/* Clustered data like ReLU features: ncl centres, points = centre + noise,
 * clipped at 0. Deterministic in seed. x: n x d. */
static inline void fx_clustered(float *x, size_t n, int d, int ncl, uint64_t seed) {
    util_rng_t rng;
    util_rng_seed(&rng, seed);
    float *c = malloc(sizeof(float) * (size_t)ncl * (size_t)d);
    for (size_t i = 0; i < (size_t)ncl * (size_t)d; i++)
        c[i] = 2.0f * util_rng_uniform(&rng);
    for (size_t i = 0; i < n; i++) {
        const float *ci = c + (size_t)util_rng_below(&rng, (uint32_t)ncl) * (size_t)d;
        for (int j = 0; j < d; j++) {
            float v = ci[j] + 0.3f * (float)util_rng_normal(&rng);
            x[i * (size_t)d + (size_t)j] = v > 0 ? v : 0;
        }
    }
    free(c);
}

/* Clustered codes: ncl random centres, each code its centre with a few bits
 * flipped (each with probability 1/16). */
static inline void fx_codes(uint8_t *x, size_t n, int bytes, int ncl, uint64_t seed) {
    util_rng_t rng;
    util_rng_seed(&rng, seed);
    uint8_t *c = malloc((size_t)ncl * (size_t)bytes);
    for (size_t i = 0; i < (size_t)ncl * (size_t)bytes; i++)
        c[i] = (uint8_t)util_rng_u64(&rng);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *ci = c + (size_t)util_rng_below(&rng, (uint32_t)ncl) * (size_t)bytes;
        for (int j = 0; j < bytes; j++) {
            uint8_t flip = 0;
            for (int b = 0; b < 8; b++)
                if (util_rng_below(&rng, 16) == 0) flip |= (uint8_t)(1u << b);
            x[i * (size_t)bytes + (size_t)j] = ci[j] ^ flip;
        }
    }
    free(c);
}

static inline double fx_l2sq(const float *a, const float *b, int d) {
    double s = 0;
    for (int j = 0; j < d; j++) {
        double t = (double)a[j] - (double)b[j];
        s += t * t;
    }
    return s;
}

static inline int fx_hamming(const uint8_t *a, const uint8_t *b, int bytes) {
    int s = 0;
    for (int j = 0; j < bytes; j++)
        s += __builtin_popcount((unsigned)(a[j] ^ b[j]));
    return s;
}

/* The k-th smallest of n values (copied; n >= k >= 1). */
static inline int fx_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline double fx_kth(const double *v, size_t n, int k) {
    double *c = malloc(n * sizeof *c);
    memcpy(c, v, n * sizeof *c);
    qsort(c, n, sizeof *c, fx_cmp_double);
    double r = c[k - 1];
    free(c);
    return r;
}

#endif
