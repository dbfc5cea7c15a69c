/* The net as a whole: the paper's SGD update, training reduces the loss, and
 * batch independence. (End-to-end gradients are checked against PyTorch by
 * the oracle tests; finite differences through eight layers of kinks are
 * too coarse to say more.) */
#include "model/model.h"
#include "test.h"

#include <stdlib.h>

static void test_sgd_step_is_the_paper_rule(void) {
    model_spec_t s;
    CHECK(model_spec_alexnet_small(&s, 1, 16, 5, NULL) == 0);
    model_net_t *net = model_net_create(&s, 1, NULL);
    model_net_init(net, 1);
    model_param_t *p = model_net_find_param(net, "fc7.weight");
    p->data[10] = 0.5f;
    p->grad[10] = 0.25f;
    p->momentum[10] = 0.125f;
    model_sgd_t sgd = {0.01f, 0.9f, 0.0005f};
    model_net_sgd_step(net, &sgd);
    double v = 0.9 * 0.125 - 0.0005 * 0.01 * 0.5 - 0.01 * 0.25;
    CHECK_NEAR(p->momentum[10], v, 1e-7);
    CHECK_NEAR(p->data[10], 0.5 + v, 1e-7);
    model_net_free(net);
}

static void test_training_steps_reduce_the_loss(void) {
    model_spec_t s;
    CHECK(model_spec_alexnet_small(&s, 1, 16, 4, NULL) == 0);
    /* At this tiny scale the paper's N(0, 0.01) leaves almost no input signal
     * after five conv layers; wider conv weights and Caffe's 0.1 biases let 30
     * steps show learning. */
    for (int i = 0; i < s.n_layers; i++) {
        if (s.layer[i].kind == MODEL_CONV) s.layer[i].weight_std = 0.1f;
        if (s.layer[i].bias_init > 0) s.layer[i].bias_init = 0.1f;
    }
    model_net_t *net = model_net_create(&s, 8, NULL);
    model_net_init(net, 11);
    util_rng_t rng;
    util_rng_seed(&rng, 5);
    float x[8 * 16 * 16];
    int labels[8];
    /* Class c lights up quadrant c: learnable in a few steps. */
    for (int i = 0; i < 8; i++) {
        labels[i] = i % 4;
        for (int j = 0; j < 16 * 16; j++) {
            int q = (j / 16 >= 8) * 2 + (j % 16 >= 8);
            x[i * 256 + j] = (q == labels[i] ? 1.0f : 0.0f) + 0.1f * (float)util_rng_normal(&rng);
        }
    }
    model_sgd_t sgd = {0.01f, 0.9f, 0.0005f};
    float first = 0, loss = 0;
    for (int step = 0; step < 30; step++) {
        CHECK(model_net_forward(net, x, 8, 1, NULL) == 0);
        CHECK(model_net_backward(net, labels, &loss, NULL, NULL) == 0);
        if (step == 0) first = loss;
        model_net_sgd_step(net, &sgd);
    }
    CHECK_MSG(loss < 0.5f * first, "loss %g after 30 steps, %g at first", loss, first);
    model_net_free(net);
}

static void test_forward_is_batch_independent(void) {
    /* Image i's logits do not depend on the other images in its batch. */
    model_spec_t s;
    CHECK(model_spec_alexnet_small(&s, 3, 20, 7, NULL) == 0);
    model_net_t *net = model_net_create(&s, 4, NULL);
    model_net_init(net, 2);
    util_rng_t rng;
    util_rng_seed(&rng, 9);
    float x[4 * 3 * 20 * 20];
    for (size_t j = 0; j < sizeof x / sizeof x[0]; j++) x[j] = (float)util_rng_normal(&rng);
    CHECK(model_net_forward(net, x, 4, 0, NULL) == 0);
    float all[4 * 7];
    memcpy(all, model_net_logits(net, NULL), sizeof all);
    CHECK(model_net_forward(net, x + 2 * 3 * 400, 1, 0, NULL) == 0);
    const float *one = model_net_logits(net, NULL);
    for (int c = 0; c < 7; c++) CHECK_NEAR(one[c], all[2 * 7 + c], 1e-5 * (1 + fabs(all[14 + c])));
    model_net_free(net);
}

TEST_MAIN(T(test_sgd_step_is_the_paper_rule),
          T(test_training_steps_reduce_the_loss), T(test_forward_is_batch_independent))
