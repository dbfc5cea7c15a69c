/* bench: the paper's AlexNet (random weights, paper initialisation) on the
 * CPU backend — inference at batch 1 and 64, one training step (forward,
 * backward, SGD update) at batch 32. Prints one "figure value" line each;
 * bench/alexnet_cpu.sh runs this beside PyTorch and prints the table. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static model_net_t *make_net(int batch) {
    model_spec_t spec;
    model_spec_alexnet(&spec);
    util_err_t err = {{0}};
    model_net_t *net = model_net_create(&spec, batch, &err);
    if (!net) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    model_net_init(net, 1);
    return net;
}

static float *make_input(int batch) {
    size_t n = (size_t)batch * 3 * 227 * 227;
    float *x = malloc(n * sizeof *x);
    util_rng_t rng;
    util_rng_seed(&rng, 3);
    for (size_t j = 0; j < n; j++) x[j] = (float)util_rng_normal(&rng) * 50.0f;
    return x;
}

/* Median seconds per call of forward (train = 0) or a training step. */
static double time_it(int batch, int train, int reps) {
    model_net_t *net = make_net(batch);
    float *x = make_input(batch);
    int *labels = malloc(sizeof(int) * (size_t)batch);
    for (int i = 0; i < batch; i++) labels[i] = (i * 37) % 1000;
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

/* usage: bench_alexnet_cpu [REPS [b1|b64|train]]: the last picks one figure
 * (for a profiler). */
int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    if (reps < 1) reps = 1;
    const char *only = argc > 2 ? argv[2] : "";
    if (!*only || !strcmp(only, "b1")) {
        double b1 = time_it(1, 0, reps * 3);
        printf("infer_b1_ms %.2f\n", b1 * 1e3);
        fflush(stdout);
    }
    if (!*only || !strcmp(only, "b64")) {
        double b64 = time_it(64, 0, reps);
        printf("infer_b64_img_s %.1f\n", 64 / b64);
        fflush(stdout);
    }
    if (!*only || !strcmp(only, "train")) {
        double tr = time_it(32, 1, reps);
        printf("train_b32_img_s %.1f\n", 32 / tr);
    }
    return 0;
}
