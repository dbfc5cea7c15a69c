/* imgret's own AVX-512 sgemm (model/sgemm.c) against a double-precision
 * reference and against OpenBLAS: every transpose case, beta 0 / 1 / other,
 * sizes on both sides of each blocking edge (MR = 14 rows, NR = 32 and 16
 * columns, KC = 256 deep, MC = 504 rows, NC = 3072 columns), odd leading
 * dimensions. Skipped (passing, with a note) on a CPU without AVX-512. */
#include "model/internal.h"
#include "test.h"

#include <float.h>
#include <stdlib.h>

static util_rng_t rng;
static float *pack;

static float *randn(size_t n) {
    float *v = malloc(n * sizeof *v);
    for (size_t j = 0; j < n; j++)
        v[j] = (float)util_rng_normal(&rng);
    return v;
}

/* op(X)(r, c) of a row-major X with leading dimension ld. */
static float at(const float *x, int trans, int ld, int r, int c) {
    return trans ? x[(size_t)c * ld + r] : x[(size_t)r * ld + c];
}

/* One product; returns the number of mismatching elements (reported). */
static int check_case(int ta, int tb, int M, int N, int K, float alpha, float beta, int pad) {
    const int arows = ta ? K : M, acols = ta ? M : K, brows = tb ? N : K, bcols = tb ? K : N;
    const int lda = acols + pad, ldb = bcols + 2 * pad, ldc = N + 3 * pad;
    float *A = randn((size_t)arows * lda), *B = randn((size_t)brows * ldb);
    float *C0 = randn((size_t)M * ldc);
    float *C = malloc((size_t)M * ldc * sizeof *C), *Cb = malloc((size_t)M * ldc * sizeof *Cb);
    /* beta 0 must not read C: NaN there would show. Padding must stay. */
    for (size_t j = 0; j < (size_t)M * ldc; j++) {
        if (beta == 0.0f && (int)(j % (size_t)ldc) < N) C0[j] = NAN;
        C[j] = Cb[j] = C0[j];
    }
    sgemm_avx512(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pack);
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, A, lda, B, ldb, beta, Cb, ldc);
    int bad = 0;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < ldc; j++) {
            const size_t e = (size_t)i * ldc + j;
            if (j >= N) {
                if (memcmp(&C[e], &C0[e], sizeof(float))) bad++;
                continue;
            }
            double ref = 0.0, mag = 0.0;
            for (int p = 0; p < K; p++) {
                const double t = (double)at(A, ta, lda, i, p) * at(B, tb, ldb, p, j);
                ref += t;
                mag += fabs(t);
            }
            ref *= alpha, mag *= fabs(alpha);
            if (beta != 0.0f) ref += (double)beta * C0[e], mag += fabs((double)beta * C0[e]);
            /* float accumulation of K terms: well inside sqrt(K) roundings */
            const double tol = 4.0 * FLT_EPSILON * sqrt((double)K + 1.0) * (mag + 1e-30);
            if (!(fabs(C[e] - ref) <= tol) || !(fabs((double)C[e] - Cb[e]) <= 2.0 * tol)) {
                if (bad < 3)
                    fprintf(stderr,
                            "  %s%s M=%d N=%d K=%d beta=%g (%d,%d): %.9g, ref %.9g, "
                            "blas %.9g, tol %.3g\n",
                            ta ? "T" : "N", tb ? "T" : "N", M, N, K, (double)beta, i, j,
                            (double)C[e], ref, (double)Cb[e], tol);
                bad++;
            }
        }
    }
    free(A), free(B), free(C0), free(C), free(Cb);
    return bad;
}

static int ready(void) {
    if (sgemm_avx512_ready()) return 1;
    printf("  (no AVX-512 on this CPU, or IMGRET_SGEMM=blas: nothing to compare)\n");
    return 0;
}

static void test_sgemm_edges_match_reference_and_openblas(void) {
    if (!ready()) return;
    static const int ms[] = {1, 2, 13, 14, 15, 28, 29, 43};
    static const int ns[] = {1, 7, 15, 16, 17, 31, 32, 33, 48, 63, 65};
    static const int ks[] = {1, 3, 16, 17, 255, 256, 257, 300, 513};
    int n_cases = 0, bad = 0;
    for (int t = 0; t < 3; t++) { /* NN, NT, TN */
        const int ta = t == 2, tb = t == 1;
        for (size_t mi = 0; mi < sizeof ms / sizeof *ms; mi++)
            for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
                const int k = ks[(mi * 3 + ni + (size_t)t) % (sizeof ks / sizeof *ks)];
                const float beta = (mi + ni) % 2 ? 1.0f : 0.0f;
                bad += check_case(ta, tb, ms[mi], ns[ni], k, 1.0f, beta, (int)(ni % 3));
                n_cases++;
            }
    }
    CHECK_MSG(bad == 0, "%d wrong elements over %d products", bad, n_cases);
}

static void test_sgemm_every_depth_remainder(void) {
    if (!ready()) return;
    int bad = 0;
    for (int k = 1; k <= 40; k++)
        for (int t = 0; t < 4; t++)
            bad += check_case(t & 1, t >> 1, 15, 33, k, 1.0f, 1.0f, 1);
    CHECK_MSG(bad == 0, "%d wrong elements", bad);
}

static void test_sgemm_general_alpha_beta_and_tt(void) {
    if (!ready()) return;
    int bad = 0;
    for (int t = 0; t < 4; t++) {
        bad += check_case(t & 1, t >> 1, 17, 45, 70, 0.5f, 0.75f, 1);
        bad += check_case(t & 1, t >> 1, 5, 9, 11, -2.0f, 0.0f, 0);
    }
    CHECK_MSG(bad == 0, "%d wrong elements", bad);
}

/* Beyond one packed block: more than MC rows, NC columns, KC depth. */
static void test_sgemm_beyond_one_block(void) {
    if (!ready()) return;
    int bad = 0;
    bad += check_case(0, 0, 505, 40, 20, 1.0f, 1.0f, 1);
    bad += check_case(1, 0, 520, 17, 9, 1.0f, 0.0f, 0);
    bad += check_case(0, 0, 3, 3100, 5, 1.0f, 1.0f, 2);
    bad += check_case(0, 1, 4, 3075, 6, 1.0f, 0.0f, 1);
    bad += check_case(0, 1, 30, 50, 600, 1.0f, 1.0f, 1);
    CHECK_MSG(bad == 0, "%d wrong elements", bad);
}

/* The paper net's conv2 per group, all three products (forward, weight and
 * column gradients). */
static void test_sgemm_conv2_shapes(void) {
    if (!ready()) return;
    int bad = 0;
    bad += check_case(0, 0, 128, 729, 1200, 1.0f, 1.0f, 0);
    bad += check_case(0, 1, 128, 1200, 729, 1.0f, 1.0f, 0);
    bad += check_case(1, 0, 1200, 729, 128, 1.0f, 0.0f, 0);
    CHECK_MSG(bad == 0, "%d wrong elements", bad);
}

/* K = 0 scales C by beta (zero for beta 0), as BLAS does. */
static void test_sgemm_empty_depth_scales_c(void) {
    if (!ready()) return;
    float c[6] = {1, 2, 3, 4, 5, 6}, a = 0, b = 0;
    sgemm_avx512(0, 0, 2, 3, 0, 1.0f, &a, 1, &b, 3, 0.5f, c, 3, pack);
    CHECK_NEAR(c[0], 0.5, 0.0);
    CHECK_NEAR(c[5], 3.0, 0.0);
    sgemm_avx512(0, 0, 2, 3, 0, 1.0f, &a, 1, &b, 3, 0.0f, c, 3, pack);
    CHECK_NEAR(c[4], 0.0, 0.0);
}

int main(int argc, char **argv) {
    util_rng_seed(&rng, 11);
    openblas_set_num_threads(1);
    if (posix_memalign((void **)&pack, 64, sgemm_pack_floats() * sizeof *pack)) return 1;
    static const test_case_t tests[] = {T(test_sgemm_edges_match_reference_and_openblas),
                                        T(test_sgemm_every_depth_remainder),
                                        T(test_sgemm_general_alpha_beta_and_tt),
                                        T(test_sgemm_beyond_one_block),
                                        T(test_sgemm_conv2_shapes),
                                        T(test_sgemm_empty_depth_scales_c)};
    int rc = test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
    free(pack);
    return rc;
}
