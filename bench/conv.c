/* bench: the 3x3 convolutions (conv3, conv4, conv5) of the paper AlexNet and
 * of alexnet-small (the demo's net on 1x28x28 crops), forward, as
 * im2col + sgemm (IMGRET_CONV=direct) and as Winograd F(4x4, 3x3)
 * (IMGRET_CONV=winograd), at the batch sizes the benches and the demo run.
 *
 *   bench_conv [REPS]
 *
 * Prints the CPU, its flags that matter and the kernel path (IMGRET_SGEMM
 * picks one), then one line per layer and batch: the median ms of REPS calls
 * of each (alternating, after a warm-up: the machine is shared), direct /
 * Winograd, and
 * the largest difference |winograd - direct| / (1 + |direct|); for batches
 * over 1 also the backward pass (dx, dw, db), with dx by im2col + col2im or
 * by Winograd (dw and db by im2col + sgemm either way). */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double run_ms(model_workspace_t *ws, const char *algo, const model_conv_param_t *p,
                     model_shape_t in, const float *x, const float *w, const float *b, float *y) {
    setenv("IMGRET_CONV", algo, 1);
    const double t0 = util_now();
    util_err_t err = {{0}};
    if (model_conv_forward(ws, p, in, x, w, b, y, &err)) {
        fprintf(stderr, "bench_conv: %s\n", err.msg);
        exit(1);
    }
    return (util_now() - t0) * 1e3;
}

static double run_backward_ms(model_workspace_t *ws, const char *algo, const model_conv_param_t *p,
                              model_shape_t in, const float *x, const float *w, const float *dy,
                              float *dx, float *dw, float *db) {
    setenv("IMGRET_CONV", algo, 1);
    const double t0 = util_now();
    util_err_t err = {{0}};
    if (model_conv_backward(ws, p, in, x, w, dy, dx, dw, db, &err)) {
        fprintf(stderr, "bench_conv: %s\n", err.msg);
        exit(1);
    }
    return (util_now() - t0) * 1e3;
}

/* Medians of reps calls of each, alternating (after a warm-up of each), so
 * that both see the same share of a shared machine. */
static void median_ms(model_workspace_t *ws, const model_conv_param_t *p, model_shape_t in,
                      const float *x, const float *w, const float *b, float *yd, float *yw,
                      int reps, double *direct, double *wino) {
    double td[64], tw[64];
    if (reps > 64) reps = 64;
    for (int r = -1; r < reps; r++) {
        const double d = run_ms(ws, "direct", p, in, x, w, b, yd);
        const double v = run_ms(ws, "winograd", p, in, x, w, b, yw);
        if (r < 0) continue;
        td[r] = d;
        tw[r] = v;
    }
    unsetenv("IMGRET_CONV");
    qsort(td, (size_t)reps, sizeof td[0], cmp_double);
    qsort(tw, (size_t)reps, sizeof tw[0], cmp_double);
    *direct = td[reps / 2];
    *wino = tw[reps / 2];
}

static void print_cpu(void) {
    char line[4096], name[256] = "unknown";
    int avx2 = 0, fma = 0, avx512f = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10) && strchr(line, ':'))
            snprintf(name, sizeof name, "%s", strchr(line, ':') + 2);
        if (!strncmp(line, "flags", 5)) {
            avx2 = strstr(line, " avx2") != NULL;
            fma = strstr(line, " fma") != NULL;
            avx512f = strstr(line, " avx512f") != NULL;
            break;
        }
    }
    if (f) fclose(f);
    name[strcspn(name, "\n")] = 0;
    util_err_t err = {{0}};
    const char *path = model_cpu_kernels(&err);
    printf("cpu: %s; avx2 %s, fma %s, avx512f %s; kernel path %s; %d threads\n", name,
           avx2 ? "yes" : "no", fma ? "yes" : "no", avx512f ? "yes" : "no", path ? path : err.msg,
           util_num_threads());
}

static void bench_layer(const char *net, const char *layer, const model_conv_param_t *p,
                        model_shape_t in, int reps, util_rng_t *rng) {
    model_shape_t o;
    if (model_conv_shape(p, in, &o, NULL)) return;
    const size_t nx = model_shape_count(in), ny = model_shape_count(o);
    const size_t nw = (size_t)p->out_c * (p->in_c / p->groups) * 9;
    float *x = malloc(nx * sizeof *x), *w = malloc(nw * sizeof *w);
    float *b = malloc((size_t)p->out_c * sizeof *b), *yd = malloc(ny * sizeof *yd),
          *yw = malloc(ny * sizeof *yw);
    if (!x || !w || !b || !yd || !yw) exit(1);
    /* ReLU'd activations and the paper's N(0, 0.01) weights. */
    for (size_t j = 0; j < nx; j++)
        x[j] = fabsf((float)util_rng_normal(rng));
    for (size_t j = 0; j < nw; j++)
        w[j] = 0.01f * (float)util_rng_normal(rng);
    for (int j = 0; j < p->out_c; j++)
        b[j] = 0.1f;
    model_workspace_t *ws = model_workspace_create();
    double direct, wino;
    median_ms(ws, p, in, x, w, b, yd, yw, reps, &direct, &wino);
    /* The training step's backward (dx, dw, db; dy = the forward output). */
    double bd = 0, bw = 0;
    if (in.n > 1) {
        float *dx = malloc(nx * sizeof *dx), *dw = malloc(nw * sizeof *dw);
        float *db = malloc((size_t)p->out_c * sizeof *db);
        if (!dx || !dw || !db) exit(1);
        double td[64], tw[64];
        const int n = reps > 64 ? 64 : reps;
        for (int r = -1; r < n; r++) {
            const double d = run_backward_ms(ws, "direct", p, in, x, w, yd, dx, dw, db);
            const double v = run_backward_ms(ws, "winograd", p, in, x, w, yd, dx, dw, db);
            if (r < 0) continue;
            td[r] = d;
            tw[r] = v;
        }
        unsetenv("IMGRET_CONV");
        qsort(td, (size_t)n, sizeof td[0], cmp_double);
        qsort(tw, (size_t)n, sizeof tw[0], cmp_double);
        bd = td[n / 2];
        bw = tw[n / 2];
        free(dx), free(dw), free(db);
    }
    double err = 0;
    for (size_t j = 0; j < ny; j++)
        err = fmax(err, fabs((double)yw[j] - yd[j]) / (1.0 + fabs((double)yd[j])));
    printf("%-13s %-5s batch %3d  %3d->%3d g%d %2dx%-2d  direct %8.2f ms  winograd %8.2f ms  "
           "%5.2fx  err %.1e",
           net, layer, in.n, p->in_c, p->out_c, p->groups, in.h, in.w, direct, wino, direct / wino,
           err);
    if (bd > 0) printf("  backward direct %8.2f ms  winograd-dx %8.2f ms  %5.2fx", bd, bw, bd / bw);
    printf("\n");
    fflush(stdout);
    model_workspace_free(ws);
    free(x), free(w), free(b), free(yd), free(yw);
}

static void bench_net(const char *net, const model_spec_t *s, const int *batches, int nb, int reps,
                      util_rng_t *rng) {
    model_shape_t shapes[MODEL_MAX_LAYERS];
    for (int k = 0; k < nb; k++) {
        if (model_spec_shapes(s, batches[k], shapes, NULL)) return;
        model_shape_t cur = {batches[k], s->in_c, s->in_h, s->in_w};
        for (int i = 0; i < s->n_layers; i++) {
            const model_layer_spec_t *l = &s->layer[i];
            if (l->kind == MODEL_CONV && l->kernel == 3 && l->stride == 1) {
                model_conv_param_t p = {cur.c, l->out, 3, 1, l->pad, l->groups};
                bench_layer(net, l->name, &p, cur, reps, rng);
            }
            cur = shapes[i];
        }
    }
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 9;
    if (reps < 1) reps = 1;
    print_cpu();
    util_rng_t rng;
    util_rng_seed(&rng, 1);
    model_spec_t s;
    model_spec_alexnet(&s);
    static const int paper[] = {1, 4, 8, 32, 64}, small[] = {1, 16, 32, 128};
    bench_net("alexnet", &s, paper, 5, reps, &rng);
    if (model_spec_alexnet_small(&s, 1, 28, 10, NULL)) return 1;
    bench_net("alexnet-small", &s, small, 4, reps, &rng);
    return 0;
}
