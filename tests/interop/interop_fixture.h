/* Shared by the interop unit tests: a small paper-shaped AlexNet (the
 * paper's kernels, strides, pads, groups and pooling, narrow widths), temp
 * paths and file byte helpers. */
#ifndef IMGRET_TESTS_INTEROP_FIXTURE_H
#define IMGRET_TESTS_INTEROP_FIXTURE_H

#include "model/interop_internal.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The paper's layers at widths 8/16/24/24/16, fc 32/32, 10 classes. */
static inline void small_paper_spec(model_spec_t *s, int in_hw) {
    model_spec_alexnet(s);
    s->in_h = s->in_w = in_hw;
    static const int outs[8] = {8, 16, 24, 24, 16, 32, 32, 10};
    int k = 0;
    for (int i = 0; i < s->n_layers; i++)
        if (s->layer[i].kind == MODEL_CONV || s->layer[i].kind == MODEL_FC)
            s->layer[i].out = outs[k++];
    if (in_hw != 227)
        for (int i = 0; i < s->n_layers; i++)
            if (s->layer[i].kind == MODEL_MAXPOOL) s->layer[i].ceil_mode = 1;
}

/* A file for the small spec with random weights (N(0, 0.1)), biases 0.1. */
static inline model_file_t *small_file(int in_hw, uint64_t seed) {
    model_spec_t s;
    small_paper_spec(&s, in_hw);
    util_err_t err = {{0}};
    model_file_t *mf = model_file_create(&s, &err);
    if (!mf) {
        fprintf(stderr, "small_file: %s\n", err.msg);
        return NULL;
    }
    util_rng_t rng;
    util_rng_seed(&rng, seed);
    for (int i = 0; i < mf->n_params; i++) {
        model_tensor_t *t = &mf->param[i];
        int bias = strstr(t->name, ".bias") != NULL;
        for (size_t j = 0; j < t->count; j++)
            t->data[j] = bias ? 0.1f : (float)util_rng_normal(&rng) * 0.1f;
    }
    return mf;
}

static inline void tmp_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "/tmp/imgret_interop_%ld_%s", (long)getpid(), name);
}

static inline uint8_t *slurp(const char *path, size_t *len) {
    return util_read_file(path, (size_t)1 << 31, len, NULL);
}

static inline int spit(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(buf, 1, len, f);
    return fclose(f) || w != len ? -1 : 0;
}

/* Forward of n images of a deterministic input; returns malloc'd logits. */
static inline float *run_logits(const model_file_t *mf, int n, size_t *count) {
    util_err_t err = {{0}};
    model_net_t *net = model_net_create_from_file(mf, n, &err);
    if (!net) {
        fprintf(stderr, "run_logits: %s\n", err.msg);
        return NULL;
    }
    const model_spec_t *s = &mf->spec;
    size_t in = (size_t)n * s->in_c * s->in_h * s->in_w;
    float *x = malloc(in * sizeof *x);
    util_rng_t rng;
    util_rng_seed(&rng, 7);
    for (size_t i = 0; i < in; i++)
        x[i] = (float)util_rng_normal(&rng) * 50.0f;
    float *out = NULL;
    if (model_net_forward(net, x, n, 0, &err) == 0) {
        model_shape_t ls;
        const float *l = model_net_logits(net, &ls);
        *count = (size_t)n * ls.c;
        out = malloc(*count * sizeof *out);
        memcpy(out, l, *count * sizeof *out);
    } else {
        fprintf(stderr, "run_logits: %s\n", err.msg);
    }
    free(x);
    model_net_free(net);
    return out;
}

#define CHECK_ERR_HAS(err, text)                                                                   \
    CHECK_MSG(strstr((err).msg, (text)) != NULL, "error '%s' lacks '%s'", (err).msg, (text))

#endif
