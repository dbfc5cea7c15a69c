/* imgret forward: the paper's AlexNet (or the small variant) forward pass on
 * the CPU, with the paper's initialisation, on a deterministic input; prints
 * the timing and the top-5 classes. A smoke test of the model core. */
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(FILE *f) {
    fprintf(f, "usage: imgret forward [--net alexnet|alexnet-small] [--batch N] [--seed S]\n"
               CLI_DEVICE_USAGE);
    return f == stdout ? 0 : 2;
}

int cmd_forward(int argc, char **argv) {
    const char *net_name = "alexnet";
    int batch = 1;
    unsigned long long seed = 1;
    cli_device_args_t dev = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return usage(stdout);
        if (i + 1 >= argc) return usage(stderr);
        if (cli_device_arg(&dev, argv[i], argv[i + 1])) i++;
        else if (!strcmp(argv[i], "--net")) net_name = argv[++i];
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed")) seed = strtoull(argv[++i], NULL, 10);
        else return usage(stderr);
    }
    model_spec_t spec;
    util_err_t err = {{0}};
    if (!strcmp(net_name, "alexnet")) {
        model_spec_alexnet(&spec);
    } else if (!strcmp(net_name, "alexnet-small")) {
        if (model_spec_alexnet_small(&spec, 1, 28, 10, &err)) goto fail;
    } else {
        fprintf(stderr, "imgret forward: unknown net '%s'\n", net_name);
        return 2;
    }
    model_placement_t pl;
    if (cli_placement(&dev, &pl, &err)) goto fail;
    model_net_t *net = model_net_create_on(&spec, batch, &pl, &err);
    if (!net) goto fail;
    model_net_init(net, seed);
    size_t n = (size_t)batch * spec.in_c * spec.in_h * spec.in_w;
    float *x = malloc(n * sizeof *x);
    util_rng_t rng;
    util_rng_seed(&rng, seed + 1);
    for (size_t j = 0; j < n; j++) x[j] = (float)util_rng_normal(&rng) * 50.0f;
    double t0 = util_now();
    int rc = model_net_forward(net, x, batch, 0, &err);
    double dt = util_now() - t0;
    free(x);
    if (rc) {
        model_net_free(net);
        goto fail;
    }
    model_shape_t ls;
    const float *logits = model_net_logits(net, &ls);
    float *probs = malloc(sizeof(float) * (size_t)ls.c);
    model_softmax(1, ls.c, logits, probs);
    char where[128];
    model_placement_str(&pl, where, sizeof where);
    printf("%s on %s: %zu parameters, batch %d forward in %.1f ms (%.1f img/s)\n", spec.name,
           where, model_net_param_total(net), batch, dt * 1e3, batch / dt);
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
