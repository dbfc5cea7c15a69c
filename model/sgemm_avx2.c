/* imgret's own single-threaded sgemm and sgemv for CPUs with AVX2 and FMA but
 * no AVX-512 (most laptops, many cloud hosts). The same blocked scheme as the
 * AVX-512 kernels of model/sgemm.c, at half the vector width and with the
 * AVX2 register file (16 ymm):
 *
 * for each kc-deep slice of K and nc-wide slice of N, B is packed into
 * kc x NR column panels; for each mc-tall slice of M, alpha * A is packed
 * into MR x kc row panels; the micro-kernel computes each MR x NR tile of C
 * in MR * NR / 8 = 12 ymm accumulators (B read as two vectors, A broadcast one
 * element at a time: 15 of the 16 registers). Edge tiles: the micro-kernel is
 * instantiated for every row count 1..MR and for 8 or 16 columns; columns past
 * N are masked on the C loads and stores of the last panel only (AMD's masked
 * stores are slow: full tiles use plain ones).
 *
 * Only the kernels carry the target attribute, so this file builds without
 * -march; model/sgemm.c holds the blocked driver both paths share
 * (sgemm_blocked, which runs this file's sgemm_avx2_kernels: the calls go
 * one way) and chooses the path at run time. */
#include "model/internal.h"

#include <immintrin.h>

enum {
    MR = 6,   /* rows of C per micro-tile: 6 x 2 = 12 ymm accumulators */
    NR = 16,  /* columns of C per micro-tile: two ymm */
    KC = 256, /* depth of a packed slice: a 16-column B panel is 16 KiB (L1) */
    MC = 240, /* rows of A per packed block: 240 x 256 floats = 240 KiB (L2) */
    NC = 3072 /* columns of B per packed block: 3 MiB (L3) */
};

#define AVX2 __attribute__((target("avx2,fma")))
#define INLINE_AVX2 AVX2 static inline __attribute__((always_inline))

/* Lanes 0 .. n-1 on (n clamped to 0..8), as a maskload/maskstore mask. */
INLINE_AVX2 __m256i lane_mask(int n) {
    n = n < 0 ? 0 : n > 8 ? 8 : n;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Transposes 8 rows of 8 floats in registers: r[i][j] -> r[j][i]. */
INLINE_AVX2 void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int a = 0; a < 4; a++) {
        t[2 * a] = _mm256_unpacklo_ps(r[2 * a], r[2 * a + 1]);
        t[2 * a + 1] = _mm256_unpackhi_ps(r[2 * a], r[2 * a + 1]);
    }
    /* u[4q + m], 128-bit lane L: column 4L + m of rows 4q .. 4q+3. */
    for (int q = 0; q < 2; q++) {
        u[4 * q + 0] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
        u[4 * q + 1] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0xEE);
        u[4 * q + 2] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
        u[4 * q + 3] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xEE);
    }
    for (int m = 0; m < 4; m++) {
        r[m] = _mm256_permute2f128_ps(u[m], u[4 + m], 0x20);
        r[4 + m] = _mm256_permute2f128_ps(u[m], u[4 + m], 0x31);
    }
}

/* Up to 8 floats from src (n of them, 0 past), without reading past n. */
INLINE_AVX2 __m256 load_n(const float *src, int n) {
    return n >= 8 ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, lane_mask(n));
}

/* alpha * op(A)[i0 .. i0+mc, p0 .. p0+kc] into MR-row panels: panel r holds
 * element (i, p) at dst[r*MR*kc + p*MR + i]. Rows past mc are zero. */
AVX2 static void pack_a(int trans, const float *A, int lda, int i0, int p0, int mc, int kc,
                        float alpha, float *dst) {
    const __m256 va = _mm256_set1_ps(alpha);
    for (int r = 0; r < mc; r += MR) {
        const int mr = mc - r < MR ? mc - r : MR;
        float *d = dst + (size_t)r * kc;
        if (trans) {
            /* op(A)(i, p) = A[p*lda + i]: MR contiguous floats per p. */
            for (int p = 0; p < kc; p++) {
                const float *src = A + (size_t)(p0 + p) * lda + i0 + r;
                for (int i = 0; i < MR; i++)
                    d[(size_t)p * MR + i] = i < mr ? alpha * src[i] : 0.0f;
            }
            continue;
        }
        /* op(A)(i, p) = A[i*lda + p]: 8 x 8 blocks through registers (rows
         * MR .. 7 of each block are zero and not stored). */
        for (int pb = 0; pb < kc; pb += 8) {
            const int np = kc - pb < 8 ? kc - pb : 8;
            __m256 x[8];
            for (int i = 0; i < 8; i++)
                x[i] = i < mr ? load_n(A + (size_t)(i0 + r + i) * lda + p0 + pb, np)
                              : _mm256_setzero_ps();
            transpose8(x);
            float tmp[8];
            for (int q = 0; q < np; q++) {
                _mm256_storeu_ps(tmp, _mm256_mul_ps(va, x[q]));
                for (int i = 0; i < MR; i++)
                    d[(size_t)(pb + q) * MR + i] = tmp[i];
            }
        }
    }
}

/* op(B)[p0 .. p0+kc, j0 .. j0+nc] into column panels of NR (the last one 8
 * wide when at most 8 columns remain): the panel starting at column jj holds
 * (p, jj + j) at dst[jj*kc + p*w + j], zero past column nc. */
AVX2 static void pack_b(int trans, const float *B, int ldb, int p0, int j0, int kc, int nc,
                        float *dst) {
    for (int jj = 0; jj < nc; jj += NR) {
        const int n = nc - jj < NR ? nc - jj : NR;
        const int w = n > 8 ? 16 : 8;
        float *d = dst + (size_t)jj * kc;
        if (!trans) {
            for (int p = 0; p < kc; p++) {
                const float *src = B + (size_t)(p0 + p) * ldb + j0 + jj;
                _mm256_store_ps(d + (size_t)p * w, load_n(src, n));
                if (w == 16) _mm256_store_ps(d + (size_t)p * w + 8, load_n(src + 8, n - 8));
            }
            continue;
        }
        /* op(B)(p, j) = B[j*ldb + p]: 8 x 8 blocks through registers. */
        for (int g = 0; g < w; g += 8) {
            for (int pb = 0; pb < kc; pb += 8) {
                const int np = kc - pb < 8 ? kc - pb : 8;
                __m256 r[8];
                for (int j = 0; j < 8; j++) {
                    const int col = jj + g + j;
                    r[j] = col < nc ? load_n(B + (size_t)(j0 + col) * ldb + p0 + pb, np)
                                    : _mm256_setzero_ps();
                }
                transpose8(r);
                for (int q = 0; q < np; q++)
                    _mm256_store_ps(d + (size_t)(pb + q) * w + g, r[q]);
            }
        }
    }
}

/* One mr x (8*nv) tile of C: acc = a-panel * b-panel over kc, then
 * C = acc + beta*C on the first slice of K (C not read when beta is 0) and
 * C += acc on later ones. `cols` < 8*nv masks the columns past N. */
INLINE_AVX2 void micro_tile(const int mr, const int nv, const int full, int kc, const float *a,
                            const float *b, float *c, int ldc, int cols, int first, float beta) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        /* The tile's C rows arrive while the K loop runs (a C larger than
         * L2, conv3's weight gradient, waited on L3 after every tile). */
        if (i < mr) {
            _mm_prefetch((const char *)(c + (size_t)i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + (size_t)i * ldc + 8 * nv - 1), _MM_HINT_T0);
        }
    }
    for (int p = 0; p < kc; p++) {
        const __m256 b0 = _mm256_load_ps(b);
        const __m256 b1 = nv == 2 ? _mm256_load_ps(b + 8) : b0;
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++) {
            if (i >= mr) break;
            const __m256 ai = _mm256_broadcast_ss(a + i);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            if (nv == 2) acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += MR;
        b += 8 * nv;
    }
    const __m256 vb = _mm256_set1_ps(beta);
    const __m256i m0 = lane_mask(cols), m1 = lane_mask(cols - 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++) {
        if (i >= mr) break;
        float *ci = c + (size_t)i * ldc;
        for (int v = 0; v < nv; v++) {
            const __m256i m = v ? m1 : m0;
            __m256 x = acc[i][v];
            if (full) {
                if (!first)
                    x = _mm256_add_ps(x, _mm256_loadu_ps(ci + 8 * v));
                else if (beta != 0.0f)
                    x = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci + 8 * v), x);
                _mm256_storeu_ps(ci + 8 * v, x);
            } else {
                if (!first)
                    x = _mm256_add_ps(x, _mm256_maskload_ps(ci + 8 * v, m));
                else if (beta != 0.0f)
                    x = _mm256_fmadd_ps(vb, _mm256_maskload_ps(ci + 8 * v, m), x);
                _mm256_maskstore_ps(ci + 8 * v, m, x);
            }
        }
    }
}

/* The instances: every row count 1 .. MR; 16 full columns, or a masked
 * 8- or 16-column last panel. */
#define TILE_CASE(R)                                                                               \
    case R:                                                                                        \
        if (cols == 16)                                                                            \
            micro_tile(R, 2, 1, kc, a, b, c, ldc, cols, first, beta);                              \
        else if (cols > 8)                                                                         \
            micro_tile(R, 2, 0, kc, a, b, c, ldc, cols, first, beta);                              \
        else                                                                                       \
            micro_tile(R, 1, 0, kc, a, b, c, ldc, cols, first, beta);                              \
        break;

AVX2 static void tile(int mr, int cols, int kc, const float *a, const float *b, float *c, int ldc,
                      int first, float beta) {
    switch (mr) {
        TILE_CASE(1)
        TILE_CASE(2)
        TILE_CASE(3)
        TILE_CASE(4)
        TILE_CASE(5)
        TILE_CASE(6)
    default:
        break;
    }
}

const sgemm_kernels_t sgemm_avx2_kernels = {MR, NR, KC, MC, NC, pack_a, pack_b, tile};

AVX2 void sgemv_avx2(int M, int K, const float *A, int lda, const float *x, float *y) {
    const int K32 = K & ~31;
    for (int i = 0; i < M; i++) {
        const float *a = A + (size_t)i * lda;
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        int k = 0;
        for (; k < K32; k += 32) {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(x + k), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(x + k + 8), s1);
            s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 16), _mm256_loadu_ps(x + k + 16), s2);
            s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 24), _mm256_loadu_ps(x + k + 24), s3);
        }
        for (; k + 8 <= K; k += 8)
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(x + k), s0);
        if (k < K) s1 = _mm256_fmadd_ps(load_n(a + k, K - k), load_n(x + k, K - k), s1);
        const __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        y[i] += _mm_cvtss_f32(h);
    }
}
