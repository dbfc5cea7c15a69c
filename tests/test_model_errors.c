/* Wrong shapes, NULL buffers and impossible layer settings give a clear
 * error naming what was wrong — never a crash. */
#include "model/model.h"
#include "test.h"

#include <stdlib.h>

static int says(const util_err_t *err, const char *needle) {
    if (strstr(err->msg, needle)) return 1;
    fprintf(stderr, "  message \"%s\" lacks \"%s\"\n", err->msg, needle);
    return 0;
}

static void test_conv_rejects_wrong_channel_count(void) {
    util_err_t err = {{0}};
    model_conv_param_t p = {3, 96, 11, 4, 0, 1};
    CHECK(model_conv_shape(&p, (model_shape_t){1, 4, 227, 227}, NULL, &err) == -1);
    CHECK(says(&err, "expects 3 input channels, input has 4"));
}

static void test_conv_rejects_groups_that_do_not_divide(void) {
    util_err_t err = {{0}};
    model_conv_param_t p = {96, 256, 5, 1, 2, 3};
    CHECK(model_conv_shape(&p, (model_shape_t){1, 96, 27, 27}, NULL, &err) == -1);
    CHECK(says(&err, "do not split into 3 groups"));
}

static void test_conv_rejects_impossible_settings(void) {
    util_err_t err = {{0}};
    model_conv_param_t bad[] = {
        {3, 8, 0, 1, 0, 1}, {3, 8, 3, 0, 0, 1}, {3, 8, 3, 1, -1, 1},
        {3, 0, 3, 1, 0, 1}, {3, 8, 3, 1, 0, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.msg[0] = 0;
        CHECK(model_conv_shape(&bad[i], (model_shape_t){1, 3, 8, 8}, NULL, &err) == -1);
        CHECK(says(&err, "impossible settings"));
    }
    model_conv_param_t big = {3, 8, 11, 1, 0, 1};
    CHECK(model_conv_shape(&big, (model_shape_t){1, 3, 8, 8}, NULL, &err) == -1);
    CHECK(says(&err, "does not fit"));
}

static void test_conv_rejects_huge_dimensions(void) {
    util_err_t err = {{0}};
    model_conv_param_t p = {3, 96, 11, 4, 0, 1};
    CHECK(model_conv_shape(&p, (model_shape_t){1, 3, 100000, 100000}, NULL, &err) == -1);
    CHECK(says(&err, "not a valid NCHW shape"));
    CHECK(model_conv_shape(&p, (model_shape_t){4096, 3, 60000, 60000}, NULL, &err) == -1);
    CHECK(says(&err, "too large"));
}

static void test_layers_reject_null_buffers(void) {
    util_err_t err = {{0}};
    model_workspace_t *ws = model_workspace_create();
    model_conv_param_t p = {2, 2, 3, 1, 1, 1};
    model_shape_t in = {1, 2, 4, 4};
    float buf[64] = {0};
    CHECK(model_conv_forward(ws, &p, in, NULL, buf, buf, buf, &err) == -1);
    CHECK(says(&err, "NULL buffer"));
    CHECK(model_conv_forward(NULL, &p, in, buf, buf, buf, buf, &err) == -1);
    CHECK(model_conv_backward(ws, &p, in, buf, buf, buf, buf, NULL, buf, &err) == -1);
    CHECK(model_conv_forward(ws, NULL, in, buf, buf, buf, buf, &err) == -1);
    CHECK(says(&err, "no parameters"));
    model_lrn_param_t l = {5, 2, 1e-4f, 0.75f, MODEL_LRN_ALPHA_PAPER};
    CHECK(model_lrn_forward(&l, in, buf, NULL, buf, &err) == -1);
    CHECK(model_lrn_backward(&l, in, buf, buf, buf, buf, NULL, &err) == -1);
    model_pool_param_t pp = {3, 2, 0, 0};
    int32_t idx[16];
    CHECK(model_pool_forward(&pp, in, buf, buf, NULL, &err) == -1);
    CHECK(model_pool_backward(&pp, in, NULL, idx, buf, &err) == -1);
    model_fc_param_t f = {4, 2};
    CHECK(model_fc_forward(&f, 1, buf, NULL, buf, buf, &err) == -1);
    CHECK(model_fc_backward(&f, 1, buf, buf, buf, buf, NULL, buf, &err) == -1);
    CHECK(model_dropout_forward(0.5f, 4, buf, buf, buf, NULL, &err) == -1);
    model_workspace_free(ws);
}

static void test_lrn_and_pool_reject_impossible_settings(void) {
    util_err_t err = {{0}};
    model_shape_t in = {1, 4, 5, 5};
    model_lrn_param_t l = {0, 2, 1e-4f, 0.75f, MODEL_LRN_ALPHA_PAPER};
    CHECK(model_lrn_check(&l, in, &err) == -1 && says(&err, "size 0"));
    l = (model_lrn_param_t){5, -1, 1e-4f, 0.75f, MODEL_LRN_ALPHA_PAPER};
    CHECK(model_lrn_check(&l, in, &err) == -1 && says(&err, "k > 0"));
    l = (model_lrn_param_t){5, 2, NAN, 0.75f, MODEL_LRN_ALPHA_PAPER};
    CHECK(model_lrn_check(&l, in, &err) == -1);
    l = (model_lrn_param_t){5, 2, 1e-4f, 0.75f, (model_lrn_alpha_t)7};
    CHECK(model_lrn_check(&l, in, &err) == -1 && says(&err, "alpha convention"));
    model_pool_param_t p = {3, 2, 2, 0};
    CHECK(model_pool_shape(&p, in, NULL, &err) == -1 && says(&err, "more than half"));
    p = (model_pool_param_t){7, 2, 0, 0};
    CHECK(model_pool_shape(&p, in, NULL, &err) == -1 && says(&err, "does not fit"));
    p = (model_pool_param_t){3, 0, 0, 0};
    CHECK(model_pool_shape(&p, in, NULL, &err) == -1 && says(&err, "impossible"));
}

static void test_spec_errors_name_the_layer(void) {
    util_err_t err = {{0}};
    model_spec_t s;
    model_spec_alexnet(&s);
    s.layer[model_spec_find(&s, "conv4")].groups = 5;
    CHECK(model_spec_shapes(&s, 1, NULL, &err) == -1);
    CHECK(says(&err, "conv4"));
    model_spec_alexnet(&s);
    s.in_h = s.in_w = 40; /* too small to reach pool5 */
    CHECK(model_spec_shapes(&s, 1, NULL, &err) == -1);
    CHECK(says(&err, "does not fit"));
    model_spec_alexnet(&s);
    s.n_layers = 0;
    CHECK(model_spec_shapes(&s, 1, NULL, &err) == -1);
    model_spec_alexnet(&s);
    s.layer[s.n_layers - 1].kind = MODEL_RELU;
    CHECK(model_spec_shapes(&s, 1, NULL, &err) == -1 && says(&err, "fully connected"));
}

static void test_net_rejects_bad_batches_and_order(void) {
    util_err_t err = {{0}};
    model_spec_t s;
    CHECK(model_spec_alexnet_small(&s, 1, 16, 10, &err) == 0);
    CHECK(model_net_create(&s, 0, &err) == NULL && says(&err, "batch size 0"));
    CHECK(model_net_create(&s, 100000, &err) == NULL);
    model_net_t *net = model_net_create(&s, 2, &err);
    CHECK(net != NULL);
    if (!net) return;
    model_net_init(net, 1);
    float x[3 * 16 * 16] = {0};
    int labels[3] = {0, 1, 2};
    float loss;
    CHECK(model_net_forward(net, x, 3, 1, &err) == -1 && says(&err, "batch of 3"));
    CHECK(model_net_forward(net, NULL, 1, 1, &err) == -1);
    CHECK(model_net_backward(net, labels, &loss, NULL, &err) == -1 && says(&err, "forward pass"));
    CHECK(model_net_forward(net, x, 2, 0, &err) == 0);
    CHECK(model_net_backward(net, labels, &loss, NULL, &err) == -1); /* not a training pass */
    CHECK(model_net_forward(net, x, 2, 1, &err) == 0);
    labels[1] = 10;
    CHECK(model_net_backward(net, labels, &loss, NULL, &err) == -1 && says(&err, "label 10"));
    CHECK(model_net_output(net, 99, NULL) == NULL);
    CHECK(model_net_find_param(net, "nope") == NULL);
    model_net_free(net);
    model_net_free(NULL);
    model_workspace_free(NULL);
}

TEST_MAIN(T(test_conv_rejects_wrong_channel_count), T(test_conv_rejects_groups_that_do_not_divide),
          T(test_conv_rejects_impossible_settings), T(test_conv_rejects_huge_dimensions),
          T(test_layers_reject_null_buffers), T(test_lrn_and_pool_reject_impossible_settings),
          T(test_spec_errors_name_the_layer), T(test_net_rejects_bad_batches_and_order))
