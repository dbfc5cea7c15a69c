/* bench: imgret's own sgemm of the chosen kernel path (AVX-512 or AVX2;
 * IMGRET_SGEMM picks one) beside OpenBLAS's, one thread each, on the shapes the paper's AlexNet
 * convolutions run per image and group: the forward pass (NN: weights x columns), the weight
 * gradient (NT: dy x columns^T) and the column gradient (TN: weights^T x dy).
 *
 *   bench_sgemm [REPS]
 *
 * One line per shape: GFLOP/s of each (best of REPS calls after a warm-up:
 * the machine is shared, and the best is the least disturbed) and own/blas,
 * after bench/cpuinfo.h's header (the CPU, the path, the 2048^3 rates on
 * OpenMP's threads and the floors). */
#include "bench/cpuinfo.h"
#include "model/internal.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct shape {
    const char *name;
    int ta, tb, M, N, K;
} shape_t;

static const shape_t shapes[] = {
    {"conv1_fwd_NN", 0, 0, 96, 3025, 363},   {"conv1_dw_NT", 0, 1, 96, 363, 3025},
    {"conv1_dcol_TN", 1, 0, 363, 3025, 96},  {"conv2_fwd_NN", 0, 0, 128, 729, 1200},
    {"conv2_dw_NT", 0, 1, 128, 1200, 729},   {"conv2_dcol_TN", 1, 0, 1200, 729, 128},
    {"conv3_fwd_NN", 0, 0, 384, 169, 2304},  {"conv3_dw_NT", 0, 1, 384, 2304, 169},
    {"conv3_dcol_TN", 1, 0, 2304, 169, 384}, {"conv4_fwd_NN", 0, 0, 192, 169, 1728},
    {"conv4_dw_NT", 0, 1, 192, 1728, 169},   {"conv4_dcol_TN", 1, 0, 1728, 169, 192},
    {"conv5_fwd_NN", 0, 0, 128, 169, 1728},  {"conv5_dw_NT", 0, 1, 128, 1728, 169},
    {"conv5_dcol_TN", 1, 0, 1728, 169, 128},
};

static float *random_floats(size_t n, util_rng_t *rng) {
    float *v = NULL;
    if (posix_memalign((void **)&v, 64, n * sizeof *v)) exit(1);
    for (size_t j = 0; j < n; j++)
        v[j] = (float)util_rng_normal(rng);
    return v;
}

/* Best seconds of one sgemm over reps (own: pack != NULL). */
static double best_time(const shape_t *s, const float *A, const float *B, float *C, float *pack,
                        int reps) {
    const int lda = s->ta ? s->M : s->K, ldb = s->tb ? s->K : s->N;
    double best = 1e30;
    for (int r = -1; r < reps; r++) {
        double t0 = util_now();
        if (pack)
            sgemm_own(s->ta, s->tb, s->M, s->N, s->K, 1.0f, A, lda, B, ldb, 1.0f, C, s->N, pack);
        else
            cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans,
                        s->tb ? CblasTrans : CblasNoTrans, s->M, s->N, s->K, 1.0f, A, lda, B, ldb,
                        1.0f, C, s->N);
        double t = util_now() - t0;
        if (r >= 0 && t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 20;
    if (reps < 1) reps = 1;
    util_err_t err = {{0}};
    const char *path = model_cpu_kernels(&err);
    if (!path || sgemm_path() == SGEMM_BLAS) {
        fprintf(stderr, "bench_sgemm: %s\n",
                path ? "kernel path blas (IMGRET_SGEMM=blas, or no AVX2 here): nothing to compare"
                     : err.msg);
        return 1;
    }
    bench_floor_t floors[8];
    if (bench_cpu_header(stdout, omp_get_max_threads(), floors, 8) < 0) return 1;
    printf("the shapes below: one thread each\n");
    openblas_set_num_threads(1);
    util_rng_t rng;
    util_rng_seed(&rng, 7);
    float *pack = NULL;
    if (posix_memalign((void **)&pack, 64, sgemm_pack_floats() * sizeof *pack)) return 1;
    printf("%-14s %5s %5s %5s %9s %9s %6s\n", "shape", "M", "N", "K", "own_gf/s", "blas_gf/s",
           "ratio");
    double sum_own = 0, sum_blas = 0;
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        const shape_t *s = &shapes[k];
        float *A = random_floats((size_t)s->M * s->K, &rng);
        float *B = random_floats((size_t)s->K * s->N, &rng);
        float *C = random_floats((size_t)s->M * s->N, &rng);
        double own = best_time(s, A, B, C, pack, reps);
        double blas = best_time(s, A, B, C, NULL, reps);
        double flop = 2.0 * s->M * s->N * s->K;
        sum_own += own, sum_blas += blas;
        printf("%-14s %5d %5d %5d %9.1f %9.1f %5.2fx\n", s->name, s->M, s->N, s->K,
               flop / own * 1e-9, flop / blas * 1e-9, blas / own);
        fflush(stdout);
        free(A), free(B), free(C);
    }
    printf("all_shapes_time_ratio %.2fx\n", sum_blas / sum_own);
    free(pack);
    return 0;
}
