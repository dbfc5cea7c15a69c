/* bench: does the loader keep up? The paper's AlexNet training step at batch
 * 32 fed by the data loader (JPEG decode, shorter side to 256, random 227
 * crop, mirror, PCA lighting, minus the mean image, in worker threads) beside
 * the same step on a batch already in memory. The paper calls its
 * augmentation "computationally free"; here the loaded figure should be
 * within 10% of the step alone. */
#include "bench/cpuinfo.h"
#include "data/data.h"
#include "model/model.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int make_images(const char *dir, int n) {
    char path[4096];
    /* The longest path below is DIR/cls/N.jpg, N an int. */
    if (strlen(dir) + sizeof "/cls/2147483647.jpg" > sizeof path) {
        fprintf(stderr, "bench: %s: the path is longer than %zu bytes\n", dir,
                sizeof path - sizeof "/cls/2147483647.jpg");
        return -1;
    }
    snprintf(path, sizeof path, "%s/cls", dir);
    mkdir(path, 0755);
    util_rng_t rng;
    util_rng_seed(&rng, 5);
    for (int i = 0; i < n; i++) {
        data_image_t *im = data_image_create(500, 375, 3, NULL);
        /* Smooth colour gradients with noise: JPEG sizes like photographs'. */
        for (int y = 0; y < im->h; y++)
            for (int x = 0; x < im->w; x++)
                for (int c = 0; c < 3; c++)
                    im->pixels[((size_t)y * im->w + x) * 3 + c] =
                        (uint8_t)((x * (c + 1) + y * (3 - c) + i * 17) % 200 +
                                  util_rng_below(&rng, 56));
        snprintf(path, sizeof path, "%s/cls/%04d.jpg", dir, i);
        util_err_t err;
        if (data_image_write_jpeg(im, path, 90, &err)) {
            fprintf(stderr, "bench: %s\n", err.msg);
            return -1;
        }
        data_image_free(im);
    }
    return 0;
}

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 6;
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    const int batch = 32;
    bench_floor_t floors[8];
    int n_floors = bench_cpu_header(stdout, omp_get_max_threads(), floors, 8);
    if (n_floors < 0) return 1;
    double floor = 0;
    for (int k = 0; k < n_floors; k++)
        if (!strcmp(floors[k].figure, "train_b32_img_s")) floor = floors[k].value;
    char dir[] = "/tmp/imgret_bench_loader_XXXXXX";
    if (!mkdtemp(dir) || make_images(dir, batch * (steps + 2))) return 1;
    util_err_t err = {{0}};
    data_dataset_t *ds = data_dataset_open_folder(dir, NULL, &err);
    data_prep_t prep = {3, 256, 0};
    data_stats_t *stats = ds ? data_stats_compute(ds, &prep, 2, 64, NULL, &err) : NULL;
    model_spec_t spec;
    model_spec_alexnet(&spec);
    spec.layer[spec.n_layers - 1].out = 2;
    model_net_t *net = stats ? model_net_create(&spec, batch, &err) : NULL;
    if (!net) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    model_net_init(net, 1);
    data_loader_opts_t lo = data_loader_defaults();
    lo.batch_size = batch;
    lo.prep = prep;
    lo.crop = 227;
    lo.norm.mean_mode = DATA_MEAN_PIXEL;
    lo.norm.stats = stats;
    lo.threads = threads;
    data_loader_t *ld = data_loader_create(ds, &lo, &err);
    if (!ld || data_loader_start_epoch(ld, 0, 0, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    model_sgd_t sgd = {0.01f, 0.9f, 0.0005f};
    double *with = calloc((size_t)steps, sizeof(double)),
           *alone = calloc((size_t)steps, sizeof(double));
    float *fixed = malloc(sizeof(float) * data_loader_batch_floats(ld));
    int fixed_labels[32] = {0};
    float loss;
    /* Warm-up step (first touches), and a batch to reuse for the step alone. */
    {
        const float *x;
        const int *labels;
        int n;
        data_loader_next_view(ld, &x, &labels, &n, NULL, &err);
        memcpy(fixed, x, sizeof(float) * data_loader_batch_floats(ld));
        memcpy(fixed_labels, labels, sizeof(int) * (size_t)n);
        model_net_forward(net, fixed, batch, 1, &err);
        model_net_backward(net, fixed_labels, &loss, NULL, &err);
    }
    for (int s = 0; s < steps; s++) {
        double t0 = util_now();
        const float *x;
        const int *labels;
        int n;
        if (data_loader_next_view(ld, &x, &labels, &n, NULL, &err) != 1 ||
            model_net_forward(net, x, n, 1, &err) ||
            model_net_backward(net, labels, &loss, NULL, &err)) {
            fprintf(stderr, "bench: %s\n", err.msg);
            return 1;
        }
        model_net_sgd_step(net, &sgd);
        double t1 = util_now();
        if (model_net_forward(net, fixed, batch, 1, &err) ||
            model_net_backward(net, fixed_labels, &loss, NULL, &err))
            return 1;
        model_net_sgd_step(net, &sgd);
        with[s] = t1 - t0;
        alone[s] = util_now() - t1;
    }
    double w = batch / util_median(with, (size_t)steps),
           a = batch / util_median(alone, (size_t)steps);
    printf("paper AlexNet training step, batch %d, %d loader threads, median of %d steps\n", batch,
           threads, steps);
    printf("| figure | loader + step | step alone | ratio | floor | of floor (loader + step, step "
           "alone) |\n|---|---|---|---|---|---|\n");
    printf("| train img/s | %.1f | %.1f | %.3f | %.1f | %.2f, %.2f |\n", w, a, w / a, floor,
           w / floor, a / floor);
    data_loader_free(ld);
    model_net_free(net);
    data_stats_free(stats);
    data_dataset_free(ds);
    free(with), free(alone), free(fixed);
    char cmd[sizeof dir + 8];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir); /* dir: the mkdtemp name, sized to fit */
    return system(cmd) ? 1 : 0;
}
