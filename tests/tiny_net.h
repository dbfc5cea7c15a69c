/* The tiny training problem of the net tests: the small AlexNet on 16x16
 * greyscale images of 4 classes, and a batch of 8 images on which 30 SGD
 * steps visibly lower the loss. */
#ifndef IMGRET_TESTS_TINY_NET_H
#define IMGRET_TESTS_TINY_NET_H

#include "model/model.h"

#define TINY_SIDE 16
#define TINY_CLASSES 4
#define TINY_BATCH 8

/* At this tiny scale the paper's N(0, 0.01) leaves almost no input signal
 * after five conv layers; wider conv weights and Caffe's 0.1 biases let 30
 * steps show learning. 0 ok. */
static inline int tiny_net_spec(model_spec_t *s) {
    if (model_spec_alexnet_small(s, 1, TINY_SIDE, TINY_CLASSES, NULL)) return -1;
    for (int i = 0; i < s->n_layers; i++) {
        if (s->layer[i].kind == MODEL_CONV) s->layer[i].weight_std = 0.1f;
        if (s->layer[i].bias_init > 0) s->layer[i].bias_init = 0.1f;
    }
    return 0;
}

/* Class c lights up quadrant c, plus N(0, 0.1) noise (seed 5): learnable in
 * a few steps. Labels 0, 1, 2, 3, 0, 1, ... */
static inline void tiny_net_batch(float x[TINY_BATCH * TINY_SIDE * TINY_SIDE],
                                  int labels[TINY_BATCH]) {
    const int half = TINY_SIDE / 2, area = TINY_SIDE * TINY_SIDE;
    util_rng_t rng;
    util_rng_seed(&rng, 5);
    for (int i = 0; i < TINY_BATCH; i++) {
        labels[i] = i % TINY_CLASSES;
        for (int j = 0; j < area; j++) {
            int q = (j / TINY_SIDE >= half) * 2 + (j % TINY_SIDE >= half);
            x[i * area + j] = (q == labels[i] ? 1.0f : 0.0f) + 0.1f * (float)util_rng_normal(&rng);
        }
    }
}

#endif
