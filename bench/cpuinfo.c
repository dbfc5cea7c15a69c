/* bench: the CPU description and the GEMM floor every CPU benchmark prints
 * (bench/cpuinfo.h). */
#include "bench/cpuinfo.h"
#include "model/internal.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

double bench_spec_gflop(const model_spec_t *spec, int train) {
    model_shape_t shapes[MODEL_MAX_LAYERS];
    if (model_spec_shapes(spec, 1, shapes, NULL)) return -1;
    double total = 0;
    for (int i = 0; i < spec->n_layers; i++) {
        const model_layer_spec_t *l = &spec->layer[i];
        model_shape_t in =
            i ? shapes[i - 1] : (model_shape_t){1, spec->in_c, spec->in_h, spec->in_w};
        model_shape_t out = shapes[i];
        double flop = 0;
        if (l->kind == MODEL_CONV)
            flop = 2.0 * out.c * (in.c / l->groups) * l->kernel * l->kernel * out.h * out.w;
        else if (l->kind == MODEL_FC)
            flop = 2.0 * in.c * in.h * in.w * out.c * out.h * out.w;
        /* Backward: dW costs what forward did; dX too, but not for layer 0. */
        total += train ? (i ? 3 : 2) * flop : flop;
    }
    return total * 1e-9;
}

void bench_spec_demo_small(model_spec_t *spec) {
    if (model_spec_alexnet_small(spec, 1, 28, 10, NULL)) abort(); /* fixed, valid arguments */
    for (int i = 0; i < spec->n_layers; i++)
        if (spec->layer[i].kind == MODEL_DROPOUT) spec->layer[i].dropout = 0.0f;
}

/* The "model name" of /proc/cpuinfo and whether its flags hold each name. */
static void read_cpuinfo(char *model, size_t model_size, const char *const *flags, int *has,
                         int n_flags) {
    snprintf(model, model_size, "unknown (no /proc/cpuinfo)");
    for (int f = 0; f < n_flags; f++)
        has[f] = 0;
    FILE *fp = fopen("/proc/cpuinfo", "r");
    if (!fp) return;
    char line[8192];
    int got_model = 0, got_flags = 0;
    while ((!got_model || !got_flags) && fgets(line, sizeof line, fp)) {
        char *colon = strchr(line, ':');
        if (!colon) continue;
        char *value = colon + 1 + (colon[1] == ' ');
        value[strcspn(value, "\n")] = 0;
        if (!got_model && !strncmp(line, "model name", 10)) {
            snprintf(model, model_size, "%s", value);
            got_model = 1;
        } else if (!got_flags && !strncmp(line, "flags", 5)) {
            for (char *tok = strtok(value, " "); tok; tok = strtok(NULL, " "))
                for (int f = 0; f < n_flags; f++)
                    if (!strcmp(tok, flags[f])) has[f] = 1;
            got_flags = 1;
        }
    }
    fclose(fp);
}

int bench_cpu_describe(FILE *out, int threads) {
    static const char *const flags[] = {"avx2", "fma", "avx512f"};
    int has[3];
    char model[256];
    read_cpuinfo(model, sizeof model, flags, has, 3);
    fprintf(out, "cpu: %s; avx2 %s, fma %s, avx512f %s\n", model, has[0] ? "present" : "absent",
            has[1] ? "present" : "absent", has[2] ? "present" : "absent");
    util_err_t err = {{0}};
    const char *path = model_cpu_kernels(&err);
    const char *forced = getenv("IMGRET_SGEMM");
    if (!path) {
        fprintf(out, "imgret kernel path: none (%s)\n", err.msg);
        return -1;
    }
    fprintf(out, "imgret kernel path: %s (%s)\n", path,
            forced && *forced ? "IMGRET_SGEMM" : "the widest this CPU has");
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    fprintf(out, "openblas core: %s%s%s%s\n", openblas_get_corename(),
            coretype && *coretype ? " (OPENBLAS_CORETYPE=" : " (detected)",
            coretype && *coretype ? coretype : "", coretype && *coretype ? ")" : "");
    const char *conv = getenv("IMGRET_CONV");
    fprintf(out, "convolutions: %s%s\n", conv && *conv ? "IMGRET_CONV=" : "",
            conv && *conv ? conv : "auto (Winograd F(4x4,3x3) where model/conv.c's rule says)");
    fprintf(out, "threads: %d\n", threads);
    return 0;
}

static float *random_matrix(size_t n, util_rng_t *rng) {
    float *v = NULL;
    if (posix_memalign((void **)&v, 64, n * sizeof *v)) return NULL;
    for (size_t j = 0; j < n; j++)
        v[j] = (float)util_rng_normal(rng);
    return v;
}

/* Best seconds of reps calls after one warm-up: OpenBLAS's product on all
 * threads (own = 0), or one own product per thread at once (own = 1; every
 * thread multiplies the same A into its own B and C, as the conv layers
 * multiply one weight matrix into each image's columns). */
static double best_seconds(int own, int n, int threads, int reps, const float *A, float *const *B,
                           float *const *C, float *const *pack) {
    double best = 1e30;
    for (int r = -1; r < reps; r++) {
        double t0 = util_now();
        if (own) {
#pragma omp parallel num_threads(threads)
            {
                int t = omp_get_thread_num();
                sgemm_own(0, 0, n, n, n, 1.0f, A, n, B[t], n, 0.0f, C[t], n, pack[t]);
            }
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, A, n, B[0], n,
                        0.0f, C[0], n);
        }
        double t = util_now() - t0;
        if (r >= 0 && t < best) best = t;
    }
    return best;
}

int bench_sgemm_measure(int n, int threads, int reps, bench_sgemm_rate_t *rate) {
    memset(rate, 0, sizeof *rate);
    util_err_t err = {{0}};
    if (!model_cpu_kernels(&err) || threads < 1 || threads > 256 || n < 1) return -1;
    int own = sgemm_path() != SGEMM_BLAS;
    size_t nn = (size_t)n * n;
    util_rng_t rng;
    util_rng_seed(&rng, 11);
    float *A = random_matrix(nn, &rng);
    float **B = calloc((size_t)threads, sizeof *B), **C = calloc((size_t)threads, sizeof *C);
    float **pack = calloc((size_t)threads, sizeof *pack);
    int rc = A && B && C && pack ? 0 : -1;
    for (int t = 0; !rc && t < threads; t++) {
        B[t] = random_matrix(nn, &rng);
        C[t] = random_matrix(nn, &rng);
        pack[t] = own ? random_matrix(sgemm_pack_floats(), &rng) : NULL;
        if (!B[t] || !C[t] || (own && !pack[t])) rc = -1;
    }
    if (!rc) {
        double flop = 2.0 * n * (double)n * n;
        openblas_set_num_threads(threads);
        rate->blas_gflops = flop / best_seconds(0, n, threads, reps, A, B, C, pack) * 1e-9;
        if (own)
            rate->own_gflops =
                threads * flop / best_seconds(1, n, threads, reps, A, B, C, pack) * 1e-9;
        rate->best_gflops =
            rate->own_gflops > rate->blas_gflops ? rate->own_gflops : rate->blas_gflops;
    }
    for (int t = 0; t < threads && B && C && pack; t++)
        free(B[t]), free(C[t]), free(pack[t]);
    free(A), free(B), free(C), free(pack);
    return rc;
}

int bench_floors(FILE *out, const bench_sgemm_rate_t *rate, bench_floor_t *floors, int max) {
    model_spec_t paper, small;
    model_spec_alexnet(&paper);
    bench_spec_demo_small(&small);
    double fwd = bench_spec_gflop(&paper, 0), train = bench_spec_gflop(&paper, 1);
    double small_train = bench_spec_gflop(&small, 1);
    double g = rate->best_gflops;
    if (out)
        fprintf(
            out,
            "floor (GEMM FLOPs = sum of 2*M*N*K over conv and fc layers, at %.1f GFLOP/s): paper "
            "AlexNet forward %.3f GFLOP/image, training step %.3f (forward + dW + dX but "
            "conv1's); demo's alexnet-small (1x28x28) training step %.3f; direct convolution's "
            "FLOPs: where Winograd runs, a figure can pass its floor\n",
            g, fwd, train, small_train);
    const bench_floor_t all[] = {
        {"infer_b1_ms", fwd / g * 1e3},
        {"infer_b64_img_s", g / fwd},
        {"train_b32_img_s", g / train},
        {"small_train_b128_img_s", g / small_train},
    };
    int n = 0;
    for (size_t k = 0; k < sizeof all / sizeof all[0] && n < max; k++) {
        floors[n++] = all[k];
        if (out) fprintf(out, "floor %s: %.2f\n", all[k].figure, all[k].value);
    }
    return n;
}

int bench_cpu_header(FILE *out, int threads, bench_floor_t *floors, int max) {
    if (bench_cpu_describe(out, threads)) return -1;
    bench_sgemm_rate_t rate;
    const int n = 2048;
    if (bench_sgemm_measure(n, threads, 3, &rate)) {
        fprintf(out, "sgemm %d^3: could not measure (no memory for the matrices)\n", n);
        return -1;
    }
    util_err_t err = {{0}};
    const char *path = model_cpu_kernels(&err);
    if (rate.own_gflops > 0)
        fprintf(out,
                "sgemm %d^3 on %d threads (best of 3): openblas %.1f GFLOP/s; imgret %s %.1f "
                "GFLOP/s (%d products at once, one a thread)\n",
                n, threads, rate.blas_gflops, path, rate.own_gflops, threads);
    else
        fprintf(out, "sgemm %d^3 on %d threads (best of 3): openblas %.1f GFLOP/s\n", n, threads,
                rate.blas_gflops);
    return bench_floors(out, &rate, floors, max);
}
