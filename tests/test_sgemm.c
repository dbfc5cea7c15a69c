/* imgret's own sgemm and sgemv on every kernel path this CPU has (AVX-512:
 * model/sgemm.c, AVX2 + FMA: model/sgemm_avx2.c) against a double-precision
 * reference and against OpenBLAS: every transpose case, beta 0 / 1 / other,
 * sizes on both sides of each blocking edge of both paths (AVX-512: MR = 14
 * rows, NR = 32 and 16 columns, MC = 504 rows; AVX2: MR = 6 rows, NR = 16 and
 * 8 columns, MC = 240 rows; both KC = 256 deep, NC = 3072 columns), odd
 * leading dimensions. A path the CPU lacks is reported and skipped; a CPU
 * with neither fails nothing (OpenBLAS alone runs there). Then the path
 * choice itself: IMGRET_SGEMM forcing a path, refusing one the CPU lacks. */
#include "model/internal.h"
#include "test.h"

#include "model/backend.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static util_rng_t rng;
static float *pack;

/* The path under test: each test runs once per path the CPU has. */
typedef struct kernel_path {
    const char *name;
    void (*sgemm)(int, int, int, int, int, float, const float *, int, const float *, int, float,
                  float *, int, float *);
    void (*sgemv)(int, int, const float *, int, const float *, float *);
} kernel_path_t;
static const kernel_path_t paths[] = {{"avx512", sgemm_avx512, sgemv_avx512},
                                      {"avx2", sgemm_avx2, sgemv_avx2}};
static const kernel_path_t *cur;

/* Runs body once per kernel path this CPU has, with cur set. */
#define EACH_PATH                                                                                  \
    for (size_t path_i = 0; path_i < sizeof paths / sizeof paths[0]; path_i++)                     \
        if (!model_cpu_has_kernels(paths[path_i].name)) {                                          \
            printf("  (no %s on this CPU: that path is not tested here)\n", paths[path_i].name);   \
        } else if ((cur = &paths[path_i]) != NULL)

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
    cur->sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, pack);
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
                            "  %s: %s%s M=%d N=%d K=%d beta=%g (%d,%d): %.9g, ref %.9g, "
                            "blas %.9g, tol %.3g\n",
                            cur->name, ta ? "T" : "N", tb ? "T" : "N", M, N, K, (double)beta, i, j,
                            (double)C[e], ref, (double)Cb[e], tol);
                bad++;
            }
        }
    }
    free(A), free(B), free(C0), free(C), free(Cb);
    return bad;
}

static void test_sgemm_edges_match_reference_and_openblas(void) {
    static const int ms[] = {1, 2, 5, 6, 7, 12, 13, 14, 15, 28, 29, 43};
    static const int ns[] = {1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 48, 63, 65};
    static const int ks[] = {1, 3, 16, 17, 255, 256, 257, 300, 513};
    EACH_PATH {
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
        CHECK_MSG(bad == 0, "%s: %d wrong elements over %d products", cur->name, bad, n_cases);
    }
}

static void test_sgemm_every_depth_remainder(void) {
    EACH_PATH {
        int bad = 0;
        for (int k = 1; k <= 40; k++)
            for (int t = 0; t < 4; t++)
                bad += check_case(t & 1, t >> 1, 15, 33, k, 1.0f, 1.0f, 1);
        CHECK_MSG(bad == 0, "%s: %d wrong elements", cur->name, bad);
    }
}

static void test_sgemm_general_alpha_beta_and_tt(void) {
    EACH_PATH {
        int bad = 0;
        for (int t = 0; t < 4; t++) {
            bad += check_case(t & 1, t >> 1, 17, 45, 70, 0.5f, 0.75f, 1);
            bad += check_case(t & 1, t >> 1, 5, 9, 11, -2.0f, 0.0f, 0);
        }
        CHECK_MSG(bad == 0, "%s: %d wrong elements", cur->name, bad);
    }
}

/* Beyond one packed block: more than MC rows, NC columns, KC depth. */
static void test_sgemm_beyond_one_block(void) {
    EACH_PATH {
        int bad = 0;
        bad += check_case(0, 0, 505, 40, 20, 1.0f, 1.0f, 1);
        bad += check_case(1, 0, 520, 17, 9, 1.0f, 0.0f, 0);
        bad += check_case(0, 0, 241, 19, 30, 1.0f, 1.0f, 1);
        bad += check_case(1, 1, 250, 23, 12, 1.0f, 0.0f, 2);
        bad += check_case(0, 0, 3, 3100, 5, 1.0f, 1.0f, 2);
        bad += check_case(0, 1, 4, 3075, 6, 1.0f, 0.0f, 1);
        bad += check_case(0, 1, 30, 50, 600, 1.0f, 1.0f, 1);
        CHECK_MSG(bad == 0, "%s: %d wrong elements", cur->name, bad);
    }
}

/* The paper net's conv2 per group, all three products (forward, weight and
 * column gradients). */
static void test_sgemm_conv2_shapes(void) {
    EACH_PATH {
        int bad = 0;
        bad += check_case(0, 0, 128, 729, 1200, 1.0f, 1.0f, 0);
        bad += check_case(0, 1, 128, 1200, 729, 1.0f, 1.0f, 0);
        bad += check_case(1, 0, 1200, 729, 128, 1.0f, 0.0f, 0);
        CHECK_MSG(bad == 0, "%s: %d wrong elements", cur->name, bad);
    }
}

/* K = 0 scales C by beta (zero for beta 0), as BLAS does. */
static void test_sgemm_empty_depth_scales_c(void) {
    EACH_PATH {
        float c[6] = {1, 2, 3, 4, 5, 6}, a = 0, b = 0;
        cur->sgemm(0, 0, 2, 3, 0, 1.0f, &a, 1, &b, 3, 0.5f, c, 3, pack);
        CHECK_NEAR(c[0], 0.5, 0.0);
        CHECK_NEAR(c[5], 3.0, 0.0);
        cur->sgemm(0, 0, 2, 3, 0, 1.0f, &a, 1, &b, 3, 0.0f, c, 3, pack);
        CHECK_NEAR(c[4], 0.0, 0.0);
    }
}

/* y += A x against a double reference, every width remainder of both
 * paths' unrolling (8/16 lanes, 32/64 per step) and a padded row stride. */
static void test_sgemv_matches_reference(void) {
    EACH_PATH {
        int bad = 0;
        for (int K = 1; K <= 140; K += (K < 70 ? 1 : 7)) {
            const int M = 5, lda = K + 3;
            float *A = randn((size_t)M * lda), *x = randn((size_t)K), *y = randn((size_t)M);
            double ref[5], mag[5];
            for (int i = 0; i < M; i++) {
                ref[i] = y[i], mag[i] = fabs(y[i]);
                for (int k = 0; k < K; k++) {
                    ref[i] += (double)A[(size_t)i * lda + k] * x[k];
                    mag[i] += fabs((double)A[(size_t)i * lda + k] * x[k]);
                }
            }
            cur->sgemv(M, K, A, lda, x, y);
            for (int i = 0; i < M; i++) {
                if (!(fabs(y[i] - ref[i]) <= 4.0 * FLT_EPSILON * sqrt(K + 1.0) * mag[i])) {
                    if (bad < 3)
                        fprintf(stderr, "  %s sgemv K=%d row %d: %.9g, ref %.9g\n", cur->name, K, i,
                                (double)y[i], ref[i]);
                    bad++;
                }
            }
            free(A), free(x), free(y);
        }
        CHECK_MSG(bad == 0, "%s: %d wrong sgemv rows", cur->name, bad);
    }
}

/* IMGRET_SGEMM: each path the CPU has is taken when named; blas always; a
 * path the CPU lacks and an unknown name are refused with a sentence that
 * names them; without it the widest path the CPU has runs. In child
 * processes, each choosing as a process starting with that environment. */
static void test_kernel_path_choice_from_environment(void) {
    static const struct {
        const char *env, *want;
    } cases[] = {
        {"avx512", "avx512"}, {"avx2", "avx2"}, {"blas", "blas"}, {"sse9", NULL}, {"", NULL}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const char *env = cases[c].env, *want = cases[c].want;
        if (want && !model_cpu_has_kernels(want)) want = NULL; /* refused here */
        if (!*env)                                             /* unset: the widest path */
            want = model_cpu_has_kernels("avx512") ? "avx512"
                   : model_cpu_has_kernels("avx2") ? "avx2"
                                                   : "blas";
        int fd[2];
        CHECK(pipe(fd) == 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(fd[0]);
            if (*env)
                setenv("IMGRET_SGEMM", env, 1);
            else
                unsetenv("IMGRET_SGEMM");
            util_err_t err = {{0}};
            model_cpu_set_kernels(NULL, NULL); /* as a process starting with this environment */
            const char *got = model_cpu_kernels(&err);
            model_device_t d = {MODEL_DEVICE_CPU, 0};
            model_backend_t *be = model_backend_create(&d, NULL);
            dprintf(fd[1], "%s|%s|%d", got ? got : "-", err.msg, be != NULL);
            _exit(0);
        }
        close(fd[1]);
        char buf[600] = {0};
        ssize_t len = read(fd[0], buf, sizeof buf - 1);
        close(fd[0]);
        waitpid(pid, NULL, 0);
        CHECK(len > 0);
        char *msg = strchr(buf, '|'), *created = msg ? strchr(msg + 1, '|') : NULL;
        CHECK(msg && created);
        if (!msg || !created) continue;
        *msg++ = 0;
        *created++ = 0;
        if (want) {
            CHECK_MSG(!strcmp(buf, want), "IMGRET_SGEMM=%s: path %s, expected %s", env, buf, want);
            CHECK_MSG(*created == '1', "IMGRET_SGEMM=%s: no CPU backend", env);
        } else {
            CHECK_MSG(!strcmp(buf, "-"), "IMGRET_SGEMM=%s: accepted (%s)", env, buf);
            CHECK_MSG(strstr(msg, "IMGRET_SGEMM=") && strstr(msg, env),
                      "IMGRET_SGEMM=%s: the refusal does not name it: %s", env, msg);
            CHECK_MSG(*created == '0', "IMGRET_SGEMM=%s: a CPU backend was created anyway", env);
        }
    }
}

int main(int argc, char **argv) {
    util_rng_seed(&rng, 11);
    openblas_set_num_threads(1);
    const size_t a512 = sgemm_kernels_pack_floats(&sgemm_avx512_kernels),
                 a2 = sgemm_kernels_pack_floats(&sgemm_avx2_kernels);
    const size_t floats = a512 > a2 ? a512 : a2;
    if (posix_memalign((void **)&pack, 64, floats * sizeof *pack)) return 1;
    static const test_case_t tests[] = {T(test_sgemm_edges_match_reference_and_openblas),
                                        T(test_sgemm_every_depth_remainder),
                                        T(test_sgemm_general_alpha_beta_and_tt),
                                        T(test_sgemm_beyond_one_block),
                                        T(test_sgemm_conv2_shapes),
                                        T(test_sgemm_empty_depth_scales_c),
                                        T(test_sgemv_matches_reference),
                                        T(test_kernel_path_choice_from_environment)};
    int rc = test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
    free(pack);
    return rc;
}
