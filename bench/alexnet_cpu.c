/* bench: AlexNet on the CPU backend — the paper's net (random weights, paper
 * initialisation): inference at batch 1 and 64, one training step (forward,
 * backward, SGD update) at batch 32; and the demo's alexnet-small
 * (bench_spec_demo_small: Fashion-MNIST's 1x28x28 crops, 10 classes, dropout
 * 0) training step at batch 128. Prints "kernels PATH" (the path that runs),
 * "sgemm_gflops X" and "floor:FIGURE X" (the floors of bench/cpuinfo.h,
 * measured now on OpenMP's threads: the run's load moves them as it moves
 * the figures), then one "figure value" line each; bench/alexnet_cpu.sh runs
 * this beside PyTorch and prints the table. */
#include "bench/cpuinfo.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static model_net_t *make_net(const model_spec_t *spec, int batch) {
    util_err_t err = {{0}};
    model_net_t *net = model_net_create(spec, batch, &err);
    if (!net) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    model_net_init(net, 1);
    return net;
}

/* Normal pixels of the given std: like a mean-subtracted image's. */
static float *make_input(const model_spec_t *spec, int batch, float std) {
    size_t n = (size_t)batch * spec->in_c * spec->in_h * spec->in_w;
    float *x = malloc(n * sizeof *x);
    if (!x) exit(1);
    util_rng_t rng;
    util_rng_seed(&rng, 3);
    for (size_t j = 0; j < n; j++)
        x[j] = (float)util_rng_normal(&rng) * std;
    return x;
}

/* Median seconds per call of forward (train = 0) or a training step. */
static double time_it(const model_spec_t *spec, float std, int batch, int train, int reps) {
    model_net_t *net = make_net(spec, batch);
    float *x = make_input(spec, batch, std);
    int classes = spec->layer[spec->n_layers - 1].out;
    int *labels = malloc(sizeof(int) * (size_t)batch);
    for (int i = 0; i < batch; i++)
        labels[i] = (i * 37) % classes;
    model_sgd_t sgd = {0.01f, 0.9f, 0.0005f};
    double *t = malloc(sizeof(double) * (size_t)reps);
    util_err_t err = {{0}};
    for (int r = -2; r < reps; r++) { /* two warm-up calls */
        double t0 = util_now();
        float loss;
        if (model_net_forward(net, x, batch, train, &err) ||
            (train && model_net_backward(net, labels, &loss, NULL, &err))) {
            fprintf(stderr, "bench: %s\n", err.msg);
            exit(1);
        }
        if (train) model_net_sgd_step(net, &sgd);
        if (r >= 0) t[r] = util_now() - t0;
    }
    double med = util_median(t, (size_t)reps);
    free(t), free(labels), free(x);
    model_net_free(net);
    return med;
}

/* usage: bench_alexnet_cpu [REPS [b1|b64|train|small|floor]]: the last picks
 * one figure (for a profiler, or for alexnet_cpu.sh's turns), or the sgemm
 * rate and floors alone. */
int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    if (reps < 1) reps = 1;
    const char *only = argc > 2 ? argv[2] : "";
    util_err_t err = {{0}};
    const char *path = model_cpu_kernels(&err);
    if (!path) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    printf("kernels %s\n", path);
    model_spec_t paper, small;
    model_spec_alexnet(&paper);
    bench_spec_demo_small(&small);
    if (!*only || !strcmp(only, "floor")) {
        bench_sgemm_rate_t rate;
        bench_floor_t floors[8];
        if (bench_sgemm_measure(2048, omp_get_max_threads(), 3, &rate)) {
            fprintf(stderr, "bench: no memory for the sgemm matrices\n");
            return 1;
        }
        printf("sgemm_gflops %.1f\n", rate.best_gflops);
        int n_floors = bench_floors(NULL, &rate, floors, 8);
        for (int k = 0; k < n_floors; k++)
            printf("floor:%s %.2f\n", floors[k].figure, floors[k].value);
        fflush(stdout);
    }
    if (!*only || !strcmp(only, "b1")) {
        double b1 = time_it(&paper, 50.0f, 1, 0, reps * 3);
        printf("infer_b1_ms %.2f\n", b1 * 1e3);
        fflush(stdout);
    }
    if (!*only || !strcmp(only, "b64")) {
        double b64 = time_it(&paper, 50.0f, 64, 0, reps);
        printf("infer_b64_img_s %.1f\n", 64 / b64);
        fflush(stdout);
    }
    if (!*only || !strcmp(only, "train")) {
        double tr = time_it(&paper, 50.0f, 32, 1, reps);
        printf("train_b32_img_s %.1f\n", 32 / tr);
        fflush(stdout);
    }
    if (!*only || !strcmp(only, "small")) {
        /* Fashion-MNIST less its mean, times the demo's 1/64: std about 1.4. */
        double tr = time_it(&small, 1.4f, 128, 1, reps);
        printf("small_train_b128_img_s %.1f\n", 128 / tr);
    }
    return 0;
}
