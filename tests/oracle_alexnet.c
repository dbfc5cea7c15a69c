/* Oracle, part 1 of 2: runs the full paper AlexNet (batch 2) through one
 * forward and cross-entropy backward pass with seeded random weights, and
 * writes weights, input, labels, dropout masks, logits, loss and every
 * parameter gradient to DIR, for oracle_alexnet.py to recompute in PyTorch.
 *
 * Weights are drawn N(0, sqrt(2/fan_in)) (0.3x that in fc6-8; not the paper's
 * 0.01) and biases
 * N(0, 0.1), and the input has the spread of mean-subtracted pixels, so that
 * activations stay O(1)-O(100) through all eight layers and every layer —
 * LRN included — shapes the logits and gradients being compared. */
#include "model/model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE *manifest;
static const char *dir;

static int dump(const char *name, const float *v, const int *dims, int ndim) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.f32", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "oracle: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t count = 1;
    fprintf(manifest, "%s", name);
    for (int d = 0; d < ndim; d++) {
        count *= (size_t)dims[d];
        fprintf(manifest, " %d", dims[d]);
    }
    fprintf(manifest, "\n");
    size_t wrote = fwrite(v, sizeof(float), count, f);
    if (fclose(f) || wrote != count) {
        fprintf(stderr, "oracle: short write to %s\n", path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "small"))) {
        fprintf(stderr, "usage: oracle_alexnet OUTDIR [small]\n");
        return 2;
    }
    const int small = argc == 3;
    dir = argv[1];
    /* Every file written is DIR/NAME.f32 or DIR/manifest.txt, NAME at most
     * 63 bytes (its buffer below): a folder that leaves 80 bytes for that
     * fits every path buffer (4096 bytes). */
    if (strlen(dir) + 80 > 4096) {
        fprintf(stderr, "oracle: %s: the folder's path is longer than %d bytes\n", dir, 4096 - 80);
        return 2;
    }
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s/manifest.txt", dir);
    manifest = fopen(mpath, "w");
    if (!manifest) {
        fprintf(stderr, "oracle: cannot write %s: %s\n", mpath, strerror(errno));
        return 1;
    }
    const int N = small ? 4 : 2;
    model_spec_t spec;
    util_err_t err = {{0}};
    if (small) {
        if (model_spec_alexnet_small(&spec, 1, 28, 10, &err)) {
            fprintf(stderr, "oracle: %s\n", err.msg);
            return 1;
        }
    } else {
        model_spec_alexnet(&spec);
    }
    /* The layer list, for the PyTorch side to build the same network. */
    char spath[4096];
    snprintf(spath, sizeof spath, "%s/spec.txt", dir);
    FILE *sf = fopen(spath, "w");
    if (!sf) {
        fprintf(stderr, "oracle: cannot write %s\n", spath);
        return 1;
    }
    for (int i = 0; i < spec.n_layers; i++) {
        const model_layer_spec_t *l = &spec.layer[i];
        fprintf(sf, "%d %s %d %d %d %d %d %d %g %g %g %d\n", (int)l->kind, l->name, l->out,
                l->kernel, l->stride, l->pad, l->groups, l->ceil_mode, (double)l->lrn.k,
                (double)l->lrn.alpha, (double)l->lrn.beta, l->lrn.size);
    }
    fclose(sf);
    model_net_t *net = model_net_create(&spec, N, &err);
    if (!net) {
        fprintf(stderr, "oracle: %s\n", err.msg);
        return 1;
    }
    util_rng_t rng;
    util_rng_seed(&rng, 2012);
    for (int i = 0; i < model_net_n_params(net); i++) {
        model_param_t *p = model_net_param(net, i);
        double std = 0.1;
        if (p->ndim > 1) {
            size_t fan_in = p->count / (size_t)p->dims[0];
            std = sqrt(2.0 / (double)fan_in);
            if (p->ndim == 2) std *= 0.3; /* keeps the logits O(10): softmax not saturated */
        }
        for (size_t j = 0; j < p->count; j++)
            p->data[j] = (float)(util_rng_normal(&rng) * std);
    }
    model_net_seed_dropout(net, 7);
    size_t nx = (size_t)N * spec.in_c * spec.in_h * spec.in_w;
    float *x = malloc(nx * sizeof *x);
    for (size_t j = 0; j < nx; j++)
        x[j] = (float)(util_rng_normal(&rng) * 60.0);
    int labels[4] = {3, 871 % spec.layer[spec.n_layers - 1].out, 5, 1};
    float loss, flabels[4];
    for (int i = 0; i < 4; i++)
        flabels[i] = (float)labels[i];
    if (model_net_forward(net, x, N, 1, &err) ||
        model_net_backward(net, labels, &loss, NULL, &err)) {
        fprintf(stderr, "oracle: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    int xd[4] = {N, spec.in_c, spec.in_h, spec.in_w}, ld[1] = {N}, one[1] = {1};
    rc |= dump("input", x, xd, 4);
    rc |= dump("labels", flabels, ld, 1);
    rc |= dump("loss", &loss, one, 1);
    model_shape_t s;
    const float *logits = model_net_logits(net, &s);
    int lg[2] = {N, s.c};
    rc |= dump("logits", logits, lg, 2);
    /* Dropout masks (0 or 2 per unit): PyTorch applies the same ones. */
    const char *drops[2] = {"drop6", "drop7"};
    for (int d = 0; d < 2; d++) {
        int li = model_spec_find(&spec, drops[d]);
        const float *in = model_net_output(net, li - 1, &s), *out = model_net_output(net, li, NULL);
        float *mask = malloc(sizeof(float) * (size_t)N * s.c);
        for (int j = 0; j < N * s.c; j++)
            mask[j] = in[j] != 0.0f ? out[j] / in[j] : 0.0f;
        /* Where the ReLU output is 0 the mask is unobservable and irrelevant:
         * the unit is 0 either way and ReLU stops its gradient. */
        int md[2] = {N, s.c};
        char name[32];
        snprintf(name, sizeof name, "%s.mask", drops[d]);
        rc |= dump(name, mask, md, 2);
        free(mask);
    }
    for (int i = 0; i < model_net_n_params(net); i++) {
        model_param_t *p = model_net_param(net, i);
        char name[64];
        rc |= dump(p->name, p->data, p->dims, p->ndim);
        snprintf(name, sizeof name, "%s.grad", p->name);
        rc |= dump(name, p->grad, p->dims, p->ndim);
    }
    fclose(manifest);
    free(x);
    model_net_free(net);
    printf("oracle: wrote %s (loss %.6f)\n", dir, (double)loss);
    return rc ? 1 : 0;
}
