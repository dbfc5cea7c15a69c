/* imgret forward: the paper's AlexNet (or the small variant) forward pass on
 * a device, with the paper's initialisation, on a deterministic input; prints
 * the timing and the top-5 classes. A smoke test of the model core, and with
 * --iters the timing tool of bench/alexnet_gpu.sh: the median of N timed
 * passes after warm-up, inference (forward) or, with --train, a whole SGD
 * step (forward with dropout, loss, backward, update). Each timed pass ends
 * with the logits on the host, so a GPU has finished its work. Each pass
 * copies the batch from host memory to the devices first, unless --resident:
 * then the batch is copied once, before the warm-up, and the timed passes
 * reuse it (model_net_forward_again), as PyTorch's benchmarks time a batch
 * that is already on the GPU. */
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One timed pass; x NULL: the batch the devices hold. */
static double timed_pass(model_net_t *net, const float *x, int batch, int train, const int *labels,
                         util_err_t *err) {
    double t0 = util_now();
    if (x ? model_net_forward(net, x, batch, train, err) : model_net_forward_again(net, train, err))
        return -1;
    if (train) {
        float loss;
        model_sgd_t sgd = {0.01f, 0.9f, 0.0005f};
        if (model_net_backward(net, labels, &loss, NULL, err)) return -1;
        model_net_sgd_step(net, &sgd);
    }
    if (!model_net_logits(net, NULL)) {
        util_fail(err, "cannot read the logits");
        return -1;
    }
    return util_now() - t0;
}

/* --layers: `iters` more passes with per-layer timing (each layer waits for
 * the devices, so these passes are not the headline figure), then the mean
 * milliseconds of each layer per pass. */
static int layer_table(model_net_t *net, const model_spec_t *spec, const float *x, int batch,
                       int train, const int *labels, int iters, util_err_t *err) {
    model_net_time_layers(net, 1);
    double total = 0.0;
    for (int i = 0; i < iters; i++) {
        double t = timed_pass(net, x, batch, train, labels, err);
        if (t < 0) {
            model_net_time_layers(net, 0);
            return -1;
        }
        total += t;
    }
    model_net_time_layers(net, 0);
    const double *f = model_net_layer_seconds(net, 0), *b = model_net_layer_seconds(net, 1);
    double sum_f = 0.0, sum_b = 0.0;
    printf("per layer, mean of %d passes that wait for the devices after each layer (ms):\n",
           iters);
    printf("  %-10s %10s%s\n", "layer", "forward", train ? "   backward" : "");
    for (int i = 0; i < spec->n_layers; i++) {
        sum_f += f[i];
        sum_b += b[i];
        if (train)
            printf("  %-10s %10.3f %10.3f\n", spec->layer[i].name, f[i] * 1e3 / iters,
                   b[i] * 1e3 / iters);
        else
            printf("  %-10s %10.3f\n", spec->layer[i].name, f[i] * 1e3 / iters);
    }
    if (train)
        printf("  sum of the layers: forward %.3f ms, backward %.3f ms; whole pass %.3f ms (the "
               "rest: input copy, loss, SGD update, logits read)\n",
               sum_f * 1e3 / iters, sum_b * 1e3 / iters, total * 1e3 / iters);
    else
        printf("  sum of the layers: %.3f ms; whole pass %.3f ms (the rest: input copy, logits "
               "read)\n",
               sum_f * 1e3 / iters, total * 1e3 / iters);
    return 0;
}

static const char *const net_names[] = {"alexnet", "alexnet-small", NULL};

int cmd_forward(int argc, char **argv) {
    int net_kind = 0, batch = 1, iters = 0, warmup = 3, train = 0, resident = 0, layers = 0;
    uint64_t seed = 1;
    cli_device_args_t dev = {0};
    const cli_opt_t opts[] = {
        CLI_OPT_CHOICE("--net", &net_kind, net_names,
                       "the paper's (default) or the small variant (28x28x1, 10 classes)"),
        CLI_OPT_INT("--batch", &batch, 1, 65536, "N", "images per pass (default 1)"),
        CLI_OPT_U64("--seed", &seed, "S", "initialisation and input (default 1)"),
        CLI_OPT_INT("--iters", &iters, 0, 100000, "N",
                    "time N passes and print the median (default 0: one pass, top-5)"),
        CLI_OPT_INT("--warmup", &warmup, 0, 1000, "N", "untimed passes first (default 3)"),
        CLI_OPT_FLAG("--train", &train, "time a whole SGD step, not inference"),
        CLI_OPT_FLAG("--resident", &resident,
                     "copy the batch to the devices once, before the warm-up"),
        CLI_OPT_FLAG("--layers", &layers, "then the mean time of each layer"),
        CLI_OPTS_DEVICE(&dev),
    };
    const cli_spec_t spec_cli = {.command = "forward",
                                 .synopsis = "[options]",
                                 .about = "The forward pass with the paper's initialisation on a "
                                          "deterministic input.",
                                 .opts = opts,
                                 .n_opts = (int)(sizeof opts / sizeof opts[0])};
    int go = cli_parse(&spec_cli, argc, argv, NULL);
    if (go != CLI_GO) return go;
    if ((resident || layers) && iters == 0)
        return cli_usage_error(&spec_cli, "--resident and --layers time passes: give --iters N");
    model_spec_t spec;
    util_err_t err = {{0}};
    if (net_kind == 0) {
        model_spec_alexnet(&spec);
    } else if (model_spec_alexnet_small(&spec, 1, 28, 10, &err)) {
        goto fail;
    }
    model_placement_t pl;
    if (cli_placement(&dev, &pl, &err)) goto fail;
    model_net_t *net = model_net_create_on(&spec, batch, &pl, &err);
    if (!net) goto fail;
    model_net_init(net, seed);
    size_t n = (size_t)batch * spec.in_c * spec.in_h * spec.in_w;
    float *x = malloc(n * sizeof *x);
    int *labels = malloc(sizeof(int) * (size_t)batch);
    double *times = malloc(sizeof(double) * (size_t)(iters > 0 ? iters : 1));
    if (!x || !labels || !times) {
        free(x);
        free(labels);
        free(times);
        model_net_free(net);
        util_fail(&err, "out of memory");
        goto fail;
    }
    util_rng_t rng;
    util_rng_seed(&rng, seed + 1);
    for (size_t j = 0; j < n; j++)
        x[j] = (float)util_rng_normal(&rng) * 50.0f;
    const int classes = spec.layer[spec.n_layers - 1].out;
    for (int i = 0; i < batch; i++)
        labels[i] = (int)util_rng_below(&rng, (uint32_t)classes);
    char where[128];
    model_placement_str(&pl, where, sizeof where);
    int rc = 0;
    if (iters > 0) {
        if (resident && model_net_forward(net, x, batch, 0, &err)) rc = -1;
        for (int i = 0; i < warmup + iters && rc == 0; i++) {
            double t = timed_pass(net, resident ? NULL : x, batch, train, labels, &err);
            if (t < 0)
                rc = -1;
            else if (i >= warmup)
                times[i - warmup] = t;
        }
        if (rc == 0) {
            qsort(times, (size_t)iters, sizeof(double), cmp_double);
            double med = times[iters / 2];
            printf("%s on %s: %s batch %d%s: median %.3f ms over %d passes (min %.3f), %.1f "
                   "img/s\n",
                   spec.name, where, train ? "training step" : "inference", batch,
                   resident ? " (batch on the device)" : "", med * 1e3, iters, times[0] * 1e3,
                   batch / med);
        }
        if (rc == 0 && layers)
            rc = layer_table(net, &spec, resident ? NULL : x, batch, train, labels, iters, &err);
    }
    double dt = 0;
    if (rc == 0 && iters == 0) {
        dt = timed_pass(net, x, batch, 0, labels, &err);
        if (dt < 0) rc = -1;
    }
    free(x);
    free(labels);
    free(times);
    if (rc) {
        model_net_free(net);
        goto fail;
    }
    if (iters > 0) {
        model_net_free(net);
        return 0;
    }
    model_shape_t ls;
    const float *logits = model_net_logits(net, &ls);
    float *probs = malloc(sizeof(float) * (size_t)ls.c);
    model_softmax(1, ls.c, logits, probs);
    printf("%s on %s: %zu parameters, batch %d forward in %.1f ms (%.1f img/s)\n", spec.name, where,
           model_net_param_total(net), batch, dt * 1e3, batch / dt);
    printf("top-5 classes of image 0 (random weights):");
    for (int k = 0; k < 5 && k < ls.c; k++) {
        int best = 0;
        for (int c = 1; c < ls.c; c++)
            if (probs[c] > probs[best]) best = c;
        printf(" %d (%.4f)", best, probs[best]);
        probs[best] = -1.0f;
    }
    printf("\n");
    free(probs);
    model_net_free(net);
    return 0;
fail:
    fprintf(stderr, "imgret forward: %s\n", err.msg);
    return 1;
}
