/* imgret's own single-threaded sgemm and sgemv, and the run-time choice of
 * the CPU kernel path: AVX-512 (here), AVX2 + FMA (model/sgemm_avx2.c), else
 * OpenBLAS. IMGRET_SGEMM=avx512|avx2|blas forces one; a path the CPU lacks is
 * refused (model_cpu_kernels says why, and CPU backends are not created).
 *
 * The AVX-512 kernels are for the conv layers when each thread takes whole
 * images (model/conv.c). OpenBLAS is pinned to its AVX2 Haswell kernels on
 * some of the machines we run on (its AVX-512 kernels compute wrong results
 * there), which leaves half of the FMA width unused.
 *
 * The classic blocked scheme: for each kc-deep slice of K and nc-wide slice
 * of N, B is packed into kc x NR column panels; for each mc-tall slice of M,
 * alpha * A is packed into MR x kc row panels; a register-blocked micro-kernel
 * then computes each MR x NR tile of C with MR*NR/16 zmm accumulators (B read
 * as NR/16 vectors, A broadcast one element at a time). The transposes live
 * in the packing, so the micro-kernel sees one layout. Edge tiles: the
 * micro-kernel is instantiated for every row count 1..MR and for 16 or 32
 * columns; the columns past N are masked on the C loads and stores.
 *
 * Only the kernels carry the AVX-512 target attribute, so this file builds
 * without -march; the path chosen above decides which kernels run. */
#include "model/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <immintrin.h>

enum {
    MR = 14,  /* rows of C per micro-tile: 14 x 2 = 28 zmm accumulators */
    NR = 32,  /* columns of C per micro-tile: two zmm */
    KC = 256, /* depth of a packed slice: a 32-column B panel is 32 KiB (L1) */
    MC = 504, /* rows of A per packed block: 504 x 256 floats = 504 KiB (L2) */
    NC = 3072 /* columns of B per packed block: 3 MiB (L3) */
};

/* ---------------------------------------------------- the kernel path */

static const char *const path_names[] = {"blas", "avx2", "avx512"};

static int cpu_has(sgemm_path_t p) {
    __builtin_cpu_init();
    switch (p) {
    case SGEMM_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    case SGEMM_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default:
        return 1;
    }
}

/* -1 until first use; then the path, read once from IMGRET_SGEMM or the CPU. */
static int chosen = -1;
static char refusal[200];

static sgemm_path_t choose(void) {
    const char *env = getenv("IMGRET_SGEMM");
    refusal[0] = 0;
    if (env && *env) {
        for (int p = 0; p < 3; p++)
            if (!strcmp(env, path_names[p])) {
                if (cpu_has((sgemm_path_t)p)) return (sgemm_path_t)p;
                snprintf(refusal, sizeof refusal,
                         "IMGRET_SGEMM=%s: this CPU has no %s (choose %s, or unset it for the "
                         "widest path the CPU has)",
                         env, p == SGEMM_AVX512 ? "AVX-512F" : "AVX2 and FMA",
                         cpu_has(SGEMM_AVX2) ? "avx2 or blas" : "blas");
                return SGEMM_BLAS;
            }
        snprintf(refusal, sizeof refusal,
                 "IMGRET_SGEMM=%.40s: unknown kernel path (avx512, avx2 or blas)", env);
        return SGEMM_BLAS;
    }
    return cpu_has(SGEMM_AVX512) ? SGEMM_AVX512 : cpu_has(SGEMM_AVX2) ? SGEMM_AVX2 : SGEMM_BLAS;
}

sgemm_path_t sgemm_path(void) {
    if (chosen < 0) chosen = (int)choose();
    return (sgemm_path_t)chosen;
}

const char *model_cpu_kernels(util_err_t *err) {
    const sgemm_path_t p = sgemm_path();
    if (refusal[0]) {
        util_fail(err, "%s", refusal);
        return NULL;
    }
    return path_names[p];
}

int model_cpu_set_kernels(const char *name, util_err_t *err) {
    if (!name) {
        chosen = (int)choose();
        return model_cpu_kernels(err) ? 0 : -1;
    }
    for (int p = 0; p < 3; p++)
        if (name && !strcmp(name, path_names[p])) {
            if (!cpu_has((sgemm_path_t)p))
                return util_fail(err, "kernel path %s: this CPU has no %s", name,
                                 p == SGEMM_AVX512 ? "AVX-512F" : "AVX2 and FMA");
            chosen = p;
            refusal[0] = 0;
            return 0;
        }
    return util_fail(err, "kernel path '%s': expected avx512, avx2 or blas", name ? name : "");
}

int model_cpu_has_kernels(const char *name) {
    for (int p = 0; p < 3; p++)
        if (name && !strcmp(name, path_names[p])) return cpu_has((sgemm_path_t)p);
    return 0;
}

/* The kernels of the chosen path (AVX-512's when it is blas: sizes only). */
static const sgemm_kernels_t *own_kernels(void) {
    return sgemm_path() == SGEMM_AVX2 ? &sgemm_avx2_kernels : &sgemm_avx512_kernels;
}

size_t sgemm_kernels_pack_floats(const sgemm_kernels_t *k) {
    return (size_t)k->mc * k->kc + (size_t)k->kc * k->nc;
}

size_t sgemm_pack_floats(void) {
    return sgemm_kernels_pack_floats(own_kernels());
}

int sgemm_tile_rows(void) {
    return own_kernels()->mr;
}

int sgemm_tile_cols(void) {
    return own_kernels()->nr;
}

/* C = beta * C (0 when beta is 0, whatever C held). */
static void scale_c(int M, int N, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            float *x = C + (size_t)i * ldc + j;
            *x = beta == 0.0f ? 0.0f : beta * *x;
        }
}

/* The blocked product of both paths: for each nc-wide slice of N and
 * kc-deep slice of K (even slices, none deeper than k->kc), op(B) is packed
 * once; for each mc-tall slice of M, alpha * op(A); then every mr x nr tile
 * of C runs on the micro-kernel, C's columns past N masked inside it. */
void sgemm_blocked(const sgemm_kernels_t *k, int trans_a, int trans_b, int M, int N, int K,
                   float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                   float *C, int ldc, float *pack) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    float *pa = pack, *pb = pack + (size_t)k->mc * k->kc;
    const int kslices = (K + k->kc - 1) / k->kc, kstep = (K + kslices - 1) / kslices;
    for (int j0 = 0; j0 < N; j0 += k->nc) {
        const int nc = N - j0 < k->nc ? N - j0 : k->nc;
        for (int p0 = 0; p0 < K; p0 += kstep) {
            const int kc = K - p0 < kstep ? K - p0 : kstep;
            const int first = p0 == 0;
            k->pack_b(trans_b, B, ldb, p0, j0, kc, nc, pb);
            for (int i0 = 0; i0 < M; i0 += k->mc) {
                const int mc = M - i0 < k->mc ? M - i0 : k->mc;
                k->pack_a(trans_a, A, lda, i0, p0, mc, kc, alpha, pa);
                for (int jj = 0; jj < nc; jj += k->nr) {
                    const int cols = nc - jj < k->nr ? nc - jj : k->nr;
                    const float *b = pb + (size_t)jj * kc;
                    for (int r = 0; r < mc; r += k->mr)
                        k->tile(mc - r < k->mr ? mc - r : k->mr, cols, kc, pa + (size_t)r * kc, b,
                                C + (size_t)(i0 + r) * ldc + j0 + jj, ldc, first, beta);
                }
            }
        }
    }
}

void sgemm_avx2(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                const float *B, int ldb, float beta, float *C, int ldc, float *pack) {
    sgemm_blocked(&sgemm_avx2_kernels, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                  ldc, pack);
}

void sgemm_own(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
               const float *B, int ldb, float beta, float *C, int ldc, float *pack) {
    if (sgemm_path() == SGEMM_AVX512)
        sgemm_avx512(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pack);
    else
        sgemm_avx2(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pack);
}

void sgemv_own(int M, int K, const float *A, int lda, const float *x, float *y) {
    if (sgemm_path() == SGEMM_AVX512)
        sgemv_avx512(M, K, A, lda, x, y);
    else
        sgemv_avx2(M, K, A, lda, x, y);
}

/* ------------------------------------------------------ AVX-512 kernels */

/* Exactly what cpu_has(SGEMM_AVX512) checks for. */
#define AVX512 __attribute__((target("avx512f,fma")))
#define INLINE_AVX512 AVX512 static inline __attribute__((always_inline))

static __mmask16 tail_mask(int n) {
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

/* Transposes 16 rows of 16 floats in registers: r[i][j] -> r[j][i]. */
INLINE_AVX512 void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int a = 0; a < 8; a++) {
        t[2 * a] = _mm512_unpacklo_ps(r[2 * a], r[2 * a + 1]);
        t[2 * a + 1] = _mm512_unpackhi_ps(r[2 * a], r[2 * a + 1]);
    }
    /* u[4q + m], 128-bit lane L: column 4L + m of rows 4q .. 4q+3. */
    for (int q = 0; q < 4; q++) {
        u[4 * q + 0] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
        u[4 * q + 1] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0xEE);
        u[4 * q + 2] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
        u[4 * q + 3] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xEE);
    }
    /* A 4 x 4 transpose of 128-bit lanes for each m. */
    for (int m = 0; m < 4; m++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x44);
        __m512 v1 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xEE);
        __m512 v2 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x44);
        __m512 v3 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xEE);
        r[m] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        r[4 + m] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
        r[8 + m] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        r[12 + m] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
    }
}

/* alpha * op(A)[i0 .. i0+mc, p0 .. p0+kc] into MR-row panels: panel r holds
 * element (i, p) at dst[r*MR*kc + p*MR + i]. Rows past mc are never read. */
AVX512 static void pack_a(int trans, const float *A, int lda, int i0, int p0, int mc, int kc,
                          float alpha, float *dst) {
    const __m512 va = _mm512_set1_ps(alpha);
    for (int r = 0; r < mc; r += MR) {
        const int mr = mc - r < MR ? mc - r : MR;
        const __mmask16 rm = tail_mask(mr);
        float *d = dst + (size_t)r * kc;
        if (trans) {
            for (int p = 0; p < kc; p++)
                _mm512_mask_storeu_ps(
                    d + (size_t)p * MR, rm,
                    _mm512_mul_ps(va,
                                  _mm512_maskz_loadu_ps(rm, A + (size_t)(p0 + p) * lda + i0 + r)));
            continue;
        }
        /* op(A)(i, p) = A[i*lda + p]: 16 x 16 blocks through registers. */
        for (int pb = 0; pb < kc; pb += 16) {
            const int np = kc - pb < 16 ? kc - pb : 16;
            const __mmask16 pm = tail_mask(np);
            __m512 x[16];
            for (int i = 0; i < 16; i++)
                x[i] = i < mr ? _mm512_maskz_loadu_ps(pm, A + (size_t)(i0 + r + i) * lda + p0 + pb)
                              : _mm512_setzero_ps();
            transpose16(x);
            for (int q = 0; q < np; q++)
                _mm512_mask_storeu_ps(d + (size_t)(pb + q) * MR, rm, _mm512_mul_ps(va, x[q]));
        }
    }
}

/* op(B)[p0 .. p0+kc, j0 .. j0+nc] into column panels of NR (the last one 16
 * wide when at most 16 columns remain): the panel starting at column jj holds
 * (p, jj + j) at dst[jj*kc + p*w + j], zero past column nc. */
AVX512 static void pack_b(int trans, const float *B, int ldb, int p0, int j0, int kc, int nc,
                          float *dst) {
    for (int jj = 0; jj < nc; jj += NR) {
        const int n = nc - jj < NR ? nc - jj : NR;
        const int w = n > 16 ? 32 : 16;
        float *d = dst + (size_t)jj * kc;
        if (!trans) {
            const __mmask16 m0 = tail_mask(n), m1 = tail_mask(n > 16 ? n - 16 : 0);
            for (int p = 0; p < kc; p++) {
                const float *src = B + (size_t)(p0 + p) * ldb + j0 + jj;
                _mm512_store_ps(d + (size_t)p * w, _mm512_maskz_loadu_ps(m0, src));
                if (w == 32)
                    _mm512_store_ps(d + (size_t)p * w + 16, _mm512_maskz_loadu_ps(m1, src + 16));
            }
            continue;
        }
        /* op(B)(p, j) = B[j*ldb + p]: 16 x 16 blocks through registers. */
        for (int g = 0; g < w; g += 16) {
            for (int pb = 0; pb < kc; pb += 16) {
                const int np = kc - pb < 16 ? kc - pb : 16;
                const __mmask16 pm = tail_mask(np);
                __m512 r[16];
                for (int j = 0; j < 16; j++) {
                    const int col = jj + g + j;
                    r[j] = col < nc
                               ? _mm512_maskz_loadu_ps(pm, B + (size_t)(j0 + col) * ldb + p0 + pb)
                               : _mm512_setzero_ps();
                }
                transpose16(r);
                for (int q = 0; q < np; q++)
                    _mm512_store_ps(d + (size_t)(pb + q) * w + g, r[q]);
            }
        }
    }
}

/* One MR' x (16*NV) tile of C (mr rows, NV zmm columns; m0/m1 mask the
 * columns): acc = a-panel * b-panel over kc, then C = acc + beta*C on the
 * first slice of K (C not read when beta is 0) and C += acc on later ones. */
INLINE_AVX512 void micro_tile(const int mr, const int nv, int kc, const float *a, const float *b,
                              float *c, int ldc, __mmask16 m0, __mmask16 m1, int first,
                              float beta) {
    __m512 acc[MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        /* The tile's C rows arrive while the K loop runs (a C larger than
         * L2, conv3's weight gradient, waited on L3 after every tile). */
        if (i < mr) {
            const char *ci = (const char *)(c + (size_t)i * ldc);
            _mm_prefetch(ci, _MM_HINT_T0);
            _mm_prefetch(ci + 64, _MM_HINT_T0);
            if (nv == 2) _mm_prefetch(ci + 124, _MM_HINT_T0);
        }
    }
    for (int p = 0; p < kc; p++) {
        const __m512 b0 = _mm512_load_ps(b);
        const __m512 b1 = nv == 2 ? _mm512_load_ps(b + 16) : b0;
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++) {
            if (i >= mr) break;
            const __m512 ai = _mm512_set1_ps(a[i]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            if (nv == 2) acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
        a += MR;
        b += 16 * nv;
    }
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
        if (i >= mr) break;
        float *ci = c + (size_t)i * ldc;
        for (int v = 0; v < nv; v++) {
            const __mmask16 m = v ? m1 : m0;
            __m512 x = acc[i][v];
            if (!first)
                x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(m, ci + 16 * v));
            else if (beta != 0.0f)
                x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, ci + 16 * v), x);
            _mm512_mask_storeu_ps(ci + 16 * v, m, x);
        }
    }
}

/* The instances: every row count 1 .. MR, 16 or 32 columns. */
#define TILE_CASE(R)                                                                               \
    case R:                                                                                        \
        if (nv == 2)                                                                               \
            micro_tile(R, 2, kc, a, b, c, ldc, m0, m1, first, beta);                               \
        else                                                                                       \
            micro_tile(R, 1, kc, a, b, c, ldc, m0, m1, first, beta);                               \
        break;

/* One mr x cols tile (cols 1 .. NR): the instance for its rows, one or two
 * vectors of columns, and the column masks. */
AVX512 static void tile(int mr, int cols, int kc, const float *a, const float *b, float *c, int ldc,
                        int first, float beta) {
    const int nv = cols > 16 ? 2 : 1;
    const __mmask16 m0 = tail_mask(cols), m1 = tail_mask(cols > 16 ? cols - 16 : 0);
    switch (mr) {
        TILE_CASE(1)
        TILE_CASE(2)
        TILE_CASE(3)
        TILE_CASE(4)
        TILE_CASE(5)
        TILE_CASE(6)
        TILE_CASE(7)
        TILE_CASE(8)
        TILE_CASE(9)
        TILE_CASE(10)
        TILE_CASE(11)
        TILE_CASE(12)
        TILE_CASE(13)
        TILE_CASE(14)
    default:
        break;
    }
}

const sgemm_kernels_t sgemm_avx512_kernels = {MR, NR, KC, MC, NC, pack_a, pack_b, tile};

void sgemm_avx512(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc, float *pack) {
    sgemm_blocked(&sgemm_avx512_kernels, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C,
                  ldc, pack);
}

AVX512 void sgemv_avx512(int M, int K, const float *A, int lda, const float *x, float *y) {
    const int K64 = K & ~63;
    const __mmask16 tm = tail_mask(K & 15);
    for (int i = 0; i < M; i++) {
        const float *a = A + (size_t)i * lda;
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        int k = 0;
        for (; k < K64; k += 64) {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(x + k), s0);
            s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 16), _mm512_loadu_ps(x + k + 16), s1);
            s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 32), _mm512_loadu_ps(x + k + 32), s2);
            s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 48), _mm512_loadu_ps(x + k + 48), s3);
        }
        for (; k + 16 <= K; k += 16)
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(x + k), s0);
        if (k < K)
            s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tm, a + k), _mm512_maskz_loadu_ps(tm, x + k),
                                 s1);
        y[i] += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    }
}
