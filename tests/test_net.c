/* The net as a whole: the paper's SGD update, training reduces the loss, and
 * batch independence. (End-to-end gradients are checked against PyTorch by
 * the oracle tests; finite differences through eight layers of kinks are
 * too coarse to say more.) */
#include "model/model.h"
#include "test.h"
#include "tiny_net.h"

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
    CHECK(tiny_net_spec(&s) == 0);
    model_net_t *net = model_net_create(&s, TINY_BATCH, NULL);
    model_net_init(net, 11);
    float x[TINY_BATCH * TINY_SIDE * TINY_SIDE];
    int labels[TINY_BATCH];
    tiny_net_batch(x, labels);
    model_sgd_t sgd = {0.01f, 0.9f, 0.0005f};
    float first = 0, loss = 0;
    for (int step = 0; step < 30; step++) {
        CHECK(model_net_forward(net, x, TINY_BATCH, 1, NULL) == 0);
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
    for (size_t j = 0; j < sizeof x / sizeof x[0]; j++)
        x[j] = (float)util_rng_normal(&rng);
    CHECK(model_net_forward(net, x, 4, 0, NULL) == 0);
    float all[4 * 7];
    memcpy(all, model_net_logits(net, NULL), sizeof all);
    CHECK(model_net_forward(net, x + 2 * 3 * 400, 1, 0, NULL) == 0);
    const float *one = model_net_logits(net, NULL);
    for (int c = 0; c < 7; c++)
        CHECK_NEAR(one[c], all[2 * 7 + c], 1e-5 * (1 + fabs(all[14 + c])));
    model_net_free(net);
}

/* The paper net's logits with conv3-5 as Winograd F(4x4, 3x3) and as
 * im2col + sgemm (IMGRET_CONV forces each), batch 2 from random images:
 * within 1e-4 of the logits' largest magnitude (measured: 4e-7; each
 * layer is checked against the definition in test_layers). */
static void test_paper_net_winograd_matches_direct(void) {
    model_spec_t s;
    model_spec_alexnet(&s);
    model_net_t *net = model_net_create(&s, 2, NULL);
    CHECK(net != NULL);
    if (!net) return;
    model_net_init(net, 3);
    util_rng_t rng;
    util_rng_seed(&rng, 5);
    const size_t n = 2 * 3 * 227 * 227;
    float *x = malloc(n * sizeof *x);
    for (size_t j = 0; j < n; j++)
        x[j] = 50.0f * (float)util_rng_normal(&rng);
    float direct[2 * 1000];
    setenv("IMGRET_CONV", "direct", 1);
    CHECK(model_net_forward(net, x, 2, 0, NULL) == 0);
    memcpy(direct, model_net_logits(net, NULL), sizeof direct);
    setenv("IMGRET_CONV", "winograd", 1);
    CHECK(model_net_forward(net, x, 2, 0, NULL) == 0);
    unsetenv("IMGRET_CONV");
    const float *wino = model_net_logits(net, NULL);
    double scale = 0, worst = 0;
    for (int j = 0; j < 2000; j++) {
        scale = fmax(scale, fabs(direct[j]));
        worst = fmax(worst, fabs(wino[j] - direct[j]));
    }
    CHECK(scale > 0 && worst > 0); /* two different sums, both of them run */
    CHECK_MSG(worst <= 1e-4 * scale, "largest difference %g, logits up to %g", worst, scale);
    free(x);
    model_net_free(net);
}

TEST_MAIN(T(test_sgd_step_is_the_paper_rule), T(test_training_steps_reduce_the_loss),
          T(test_forward_is_batch_independent), T(test_paper_net_winograd_matches_direct))
