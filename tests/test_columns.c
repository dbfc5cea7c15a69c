/* Multi-device placements on CPU devices (each its own backend and thread):
 * the paper's two-column split and data parallelism compute what the
 * one-device net computes (logits, loss, every layer's output, every
 * parameter's gradient, the SGD step), and model files stay the same.
 *
 * Tolerance: for each tensor, max |a - b| over max |b| (b: one device) must
 * be at most 1e-5. The column split sums partial input gradients of conv3,
 * fc6, fc7 and fc8 in another order than one GEMM does, so bitwise equality
 * is not expected; 1e-5 is about 100 float ulps.
 *
 * `test_columns` runs the small net (fast enough for ASan); `test_columns
 * paper` the paper's net at batch 2, one step (a separate, non-ASan ctest). */
#include "model/model.h"
#include "test.h"

#include <stdlib.h>

#define REL_TOL 1e-5

static double rel_diff(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > num || d != d) num = d != d ? INFINITY : d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return den > 0 ? num / den : num;
}

static void small_spec(model_spec_t *s) {
    CHECK(model_spec_alexnet_small(s, 3, 20, 10, NULL) == 0);
    for (int i = 0; i < s->n_layers; i++) {
        model_layer_spec_t *l = &s->layer[i];
        if (l->kind == MODEL_FC && l->out == 4096) l->out = 96;
        if (l->kind == MODEL_CONV) l->weight_std = 0.05f;
    }
}

static float *random_images(const model_spec_t *s, int n, uint64_t seed) {
    size_t count = (size_t)n * s->in_c * s->in_h * s->in_w;
    float *x = malloc(count * sizeof(float));
    util_rng_t rng;
    util_rng_seed(&rng, seed);
    for (size_t i = 0; i < count; i++)
        x[i] = (float)util_rng_normal(&rng) * 20.0f;
    return x;
}

static model_placement_t two_cpus(model_parallel_t how) {
    model_placement_t pl;
    CHECK(model_placement_parse("cpu:0,cpu:1", how == MODEL_PARALLEL_DATA ? "data" : "columns", &pl,
                                NULL) == 0);
    return pl;
}

/* One training step (forward with dropout, backward, SGD) on the one-device
 * net and on `pl`, compared at every stage. */
/* Nets built for batches of max_batch, stepped with batches of n. */
static void compare_steps(const model_spec_t *s, const model_placement_t *pl, int max_batch, int n,
                          int steps) {
    util_err_t err = {{0}};
    model_net_t *one = model_net_create(s, max_batch, &err);
    model_net_t *many = model_net_create_on(s, max_batch, pl, &err);
    CHECK_MSG(one && many, "%s", err.msg);
    if (!one || !many) goto done;
    model_net_init(one, 42);
    model_net_init(many, 42); /* same parameters and dropout RNG */
    float *x = random_images(s, n, 3);
    int labels[16];
    for (int i = 0; i < n; i++)
        labels[i] = (i * 7 + 3) % s->layer[s->n_layers - 1].out;
    for (int step = 0; step < steps; step++) {
        float loss1 = 0, loss2 = 0;
        CHECK_MSG(model_net_forward(one, x, n, 1, &err) == 0, "%s", err.msg);
        CHECK_MSG(model_net_forward(many, x, n, 1, &err) == 0, "%s", err.msg);
        for (int i = 0; i < s->n_layers; i++) {
            model_shape_t sh1, sh2;
            const float *y1 = model_net_output(one, i, &sh1);
            const float *y2 = model_net_output(many, i, &sh2);
            CHECK(sh1.n == sh2.n && sh1.c == sh2.c && sh1.h == sh2.h && sh1.w == sh2.w);
            double r = rel_diff(y2, y1, model_shape_count(sh1));
            CHECK_MSG(r <= REL_TOL, "step %d, output of %s: relative difference %g", step,
                      s->layer[i].name, r);
        }
        CHECK_MSG(model_net_backward(one, labels, &loss1, NULL, &err) == 0, "%s", err.msg);
        CHECK_MSG(model_net_backward(many, labels, &loss2, NULL, &err) == 0, "%s", err.msg);
        CHECK_NEAR(loss1, loss2, 1e-5 * fabs((double)loss1));
        CHECK(model_net_n_params(one) == model_net_n_params(many));
        for (int i = 0; i < model_net_n_params(one); i++) {
            model_param_t *a = model_net_param(one, i), *b = model_net_param(many, i);
            CHECK(a && b && a->count == b->count && !strcmp(a->name, b->name));
            if (!a || !b) continue;
            double r = rel_diff(b->grad, a->grad, a->count);
            CHECK_MSG(r <= REL_TOL, "step %d, gradient of %s: relative difference %g", step,
                      a->name, r);
        }
        model_sgd_t sgd = {0.01f, 0.9f, 0.0005f};
        model_net_sgd_step(one, &sgd);
        model_net_sgd_step(many, &sgd);
        for (int i = 0; i < model_net_n_params(one); i++) {
            model_param_t *a = model_net_param(one, i), *b = model_net_param(many, i);
            if (!a || !b) continue;
            double r = rel_diff(b->data, a->data, a->count);
            double m = rel_diff(b->momentum, a->momentum, a->count);
            CHECK_MSG(r <= REL_TOL && m <= REL_TOL, "step %d, %s after SGD: %g (momentum %g)", step,
                      a->name, r, m);
        }
    }
    free(x);
done:
    model_net_free(one);
    model_net_free(many);
}

static void compare_step(const model_spec_t *s, const model_placement_t *pl, int n) {
    compare_steps(s, pl, n, n, 2);
}

static void test_two_columns_equal_one_device(void) {
    model_spec_t s;
    small_spec(&s);
    model_placement_t pl = two_cpus(MODEL_PARALLEL_COLUMNS);
    compare_step(&s, &pl, 3);
    compare_steps(&s, &pl, 4, 3, 1); /* a batch smaller than the nets were built for */
}

static void test_three_columns_equal_one_device(void) {
    /* Groups of 6 so three devices can share conv2/4/5; uneven splits of
     * 10 logits and 96-unit fc layers. */
    model_spec_t s;
    small_spec(&s);
    const char *conv[5] = {"conv1", "conv2", "conv3", "conv4", "conv5"};
    for (int i = 0; i < 5; i++) {
        model_layer_spec_t *l = &s.layer[model_spec_find(&s, conv[i])];
        l->out = i == 0 ? 48 : 96;
        if (l->groups == 2) l->groups = 6;
    }
    CHECK(model_spec_shapes(&s, 1, NULL, NULL) == 0);
    model_placement_t pl;
    CHECK(model_placement_parse("cpu:0,cpu:1,cpu:2", "columns", &pl, NULL) == 0);
    compare_step(&s, &pl, 2);
}

static void test_data_parallel_equals_one_device(void) {
    model_spec_t s;
    small_spec(&s);
    model_placement_t pl = two_cpus(MODEL_PARALLEL_DATA);
    compare_step(&s, &pl, 5);        /* 2 + 3 images */
    compare_steps(&s, &pl, 4, 1, 2); /* the second device has no image: it adds zero gradients */
}

/* The GPU-shaped paths of the net (host copies of the parameters, the loss
 * through the backend, exchanges staged through host buffers) with the CPU
 * kernels: what a GPU run does besides the kernels themselves. */
static void test_staged_devices_equal_one_device(void) {
    model_spec_t s;
    small_spec(&s);
    const char *lists[3] = {"cpu-staged", "cpu-staged:0,cpu-staged:1", "cpu-staged:0,cpu-staged:1"};
    const char *how[3] = {"columns", "columns", "data"};
    for (int k = 0; k < 3; k++) {
        model_placement_t pl;
        CHECK(model_placement_parse(lists[k], how[k], &pl, NULL) == 0);
        compare_steps(&s, &pl, 4, 3, 2);
    }
}

static void test_model_file_is_the_same_from_any_placement(void) {
    model_spec_t s;
    small_spec(&s);
    util_err_t err = {{0}};
    model_placement_t pl = two_cpus(MODEL_PARALLEL_COLUMNS);
    model_net_t *one = model_net_create(&s, 2, &err);
    CHECK(one != NULL);
    if (!one) return;
    model_net_init(one, 9);
    model_file_t *mf = model_file_from_net(one, 1, &err);
    CHECK_MSG(mf != NULL, "%s", err.msg);
    model_net_t *cols = mf ? model_net_create_from_file_on(mf, 2, &pl, &err) : NULL;
    CHECK_MSG(cols != NULL, "%s", err.msg);
    model_file_t *back = cols ? model_file_from_net(cols, 1, &err) : NULL;
    CHECK_MSG(back != NULL, "%s", err.msg);
    if (mf && back) {
        CHECK(back->n_params == mf->n_params);
        for (int i = 0; i < mf->n_params && i < back->n_params; i++) {
            CHECK(!strcmp(mf->param[i].name, back->param[i].name));
            CHECK(!memcmp(mf->param[i].data, back->param[i].data,
                          mf->param[i].count * sizeof(float)));
        }
        /* And the split net computes the same logits. */
        float *x = random_images(&s, 2, 5);
        CHECK(model_net_forward(one, x, 2, 0, NULL) == 0);
        CHECK(model_net_forward(cols, x, 2, 0, NULL) == 0);
        model_shape_t sh;
        const float *a = model_net_logits(one, &sh), *b = model_net_logits(cols, NULL);
        CHECK(rel_diff(b, a, model_shape_count(sh)) <= REL_TOL);
        free(x);
    }
    model_file_free(mf);
    model_file_free(back);
    model_net_free(one);
    model_net_free(cols);
}

/* model_net_forward_again reruns the pass over the images the devices hold:
 * the logits of the last model_net_forward, bit for bit, on every kind of
 * placement (the pass before it, with dropout, left other logits in the
 * buffers); before any forward it is an error. */
static void test_forward_again_reuses_the_devices_input(void) {
    model_spec_t s;
    small_spec(&s);
    const char *lists[4] = {"cpu", "cpu-staged", "cpu:0,cpu:1", "cpu-staged:0,cpu-staged:1"};
    const char *how[4] = {"columns", "columns", "data", "columns"};
    float *x = random_images(&s, 3, 31), *x2 = random_images(&s, 3, 32);
    for (int k = 0; k < 4; k++) {
        model_placement_t pl;
        util_err_t err = {{0}};
        CHECK(model_placement_parse(lists[k], how[k], &pl, NULL) == 0);
        model_net_t *net = model_net_create_on(&s, 4, &pl, &err);
        CHECK_MSG(net != NULL, "%s: %s", lists[k], err.msg);
        if (!net) continue;
        model_net_init(net, 5);
        CHECK(model_net_forward_again(net, 0, &err) < 0);
        CHECK(strstr(err.msg, "no images") != NULL);
        model_shape_t sh;
        CHECK(model_net_forward(net, x2, 2, 0, &err) == 0);
        CHECK(model_net_forward(net, x, 3, 0, &err) == 0);
        const float *l = model_net_logits(net, &sh);
        size_t count = model_shape_count(sh);
        float *first = malloc(count * sizeof(float));
        memcpy(first, l, count * sizeof(float));
        /* The same images with dropout: other logits, left in the buffers. */
        CHECK(model_net_forward(net, x, 3, 1, &err) == 0);
        l = model_net_logits(net, &sh);
        CHECK_MSG(memcmp(first, l, count * sizeof(float)) != 0, "%s: dropout changed nothing",
                  lists[k]);
        CHECK_MSG(model_net_forward_again(net, 0, &err) == 0, "%s: %s", lists[k], err.msg);
        l = model_net_logits(net, &sh);
        CHECK(model_shape_count(sh) == count);
        CHECK_MSG(memcmp(first, l, count * sizeof(float)) == 0, "%s: logits differ", lists[k]);
        free(first);
        model_net_free(net);
    }
    free(x);
    free(x2);
}

/* Per-layer timing adds every layer's time while on, and only then; turning
 * it on clears the totals. */
static void test_layer_timing_covers_every_layer(void) {
    model_spec_t s;
    small_spec(&s);
    model_placement_t pl;
    util_err_t err = {{0}};
    CHECK(model_placement_parse("cpu-staged:0,cpu-staged:1", NULL, &pl, NULL) == 0);
    model_net_t *net = model_net_create_on(&s, 2, &pl, &err);
    CHECK_MSG(net != NULL, "%s", err.msg);
    if (!net) return;
    model_net_init(net, 2);
    float *x = random_images(&s, 2, 41);
    int labels[2] = {1, 2};
    float loss;
    const double *f = model_net_layer_seconds(net, 0), *b = model_net_layer_seconds(net, 1);
    model_net_time_layers(net, 1);
    CHECK(model_net_forward(net, x, 2, 1, &err) == 0);
    CHECK(model_net_backward(net, labels, &loss, NULL, &err) == 0);
    double kept[MODEL_MAX_LAYERS];
    for (int i = 0; i < s.n_layers; i++) {
        CHECK_MSG(f[i] > 0.0 && b[i] > 0.0, "layer %s: forward %g s, backward %g s",
                  s.layer[i].name, f[i], b[i]);
        kept[i] = f[i];
    }
    model_net_time_layers(net, 0);
    CHECK(model_net_forward(net, x, 2, 0, &err) == 0);
    for (int i = 0; i < s.n_layers; i++)
        CHECK(f[i] == kept[i]);
    model_net_time_layers(net, 1);
    for (int i = 0; i < s.n_layers; i++)
        CHECK(f[i] == 0.0 && b[i] == 0.0);
    free(x);
    model_net_free(net);
}

static void test_placement_errors_are_clear(void) {
    model_placement_t pl;
    util_err_t err = {{0}};
    CHECK(model_placement_parse("cpu:0,cpu:0", NULL, &pl, &err) < 0);
    CHECK(strstr(err.msg, "twice") != NULL);
    CHECK(model_placement_parse("cpu-staged:1,cpu-staged:1", NULL, &pl, &err) < 0);
    /* A GPU named twice: two devices sharing it (the one-GPU test path). */
    CHECK(model_placement_parse("gpu:0,gpu:0", "data", &pl, &err) == 0 && pl.n_devices == 2 &&
          model_placement_repeats(&pl));
    CHECK(model_placement_parse("gpu:0,gpu:1", NULL, &pl, &err) == 0 &&
          !model_placement_repeats(&pl));
    CHECK(model_placement_parse("cpu:0,gpu:1", NULL, &pl, &err) < 0);
    CHECK(strstr(err.msg, "mixed") != NULL);
    CHECK(model_placement_parse("cpu-staged:0,cpu:1", NULL, &pl, &err) < 0);
    CHECK(model_placement_parse("tpu:0", NULL, &pl, &err) < 0);
    CHECK(model_placement_parse("cpu:0,cpu:1", "pipeline", &pl, &err) < 0);
    model_device_t dev;
    CHECK(model_device_parse("gpu:3", &dev, NULL) == 0 && dev.kind == MODEL_DEVICE_GPU &&
          dev.index == 3);
    CHECK(model_device_parse("gpu:x", &dev, NULL) < 0);

    model_spec_t s;
    small_spec(&s);
    /* Three groups cannot be shared by two columns. */
    s.layer[model_spec_find(&s, "conv1")].out = 66;
    s.layer[model_spec_find(&s, "conv2")].out = 126;
    s.layer[model_spec_find(&s, "conv2")].groups = 3;
    CHECK(model_spec_shapes(&s, 1, NULL, NULL) == 0);
    {
        pl = two_cpus(MODEL_PARALLEL_COLUMNS);
        CHECK(model_net_create_on(&s, 2, &pl, &err) == NULL);
        CHECK_MSG(strstr(err.msg, "groups") != NULL, "%s", err.msg);
    }

    /* A GPU on a machine or build without one: an error naming the device. */
    small_spec(&s);
    util_err_t why = {{0}};
    if (model_gpu_count(&why) == 0) {
        CHECK(model_placement_parse("gpu:0", NULL, &pl, NULL) == 0);
        CHECK(model_net_create_on(&s, 2, &pl, &err) == NULL);
        CHECK_MSG(strstr(err.msg, "gpu:0") != NULL, "%s", err.msg);
    }
}

static void test_paper_net_two_columns(void) {
    model_spec_t s;
    model_spec_alexnet(&s);
    model_placement_t pl = two_cpus(MODEL_PARALLEL_COLUMNS);
    compare_steps(&s, &pl, 2, 2, 1); /* one step: the paper net's 61M parameters are slow to copy */
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "paper")) {
        static const test_case_t paper[] = {{"paper_net_two_columns", test_paper_net_two_columns}};
        return test_run_all(paper, 1, 1, argv);
    }
    static const test_case_t tests[] = {
        {"two_columns_equal_one_device", test_two_columns_equal_one_device},
        {"three_columns_equal_one_device", test_three_columns_equal_one_device},
        {"data_parallel_equals_one_device", test_data_parallel_equals_one_device},
        {"staged_devices_equal_one_device", test_staged_devices_equal_one_device},
        {"model_file_is_the_same_from_any_placement",
         test_model_file_is_the_same_from_any_placement},
        {"forward_again_reuses_the_devices_input", test_forward_again_reuses_the_devices_input},
        {"layer_timing_covers_every_layer", test_layer_timing_covers_every_layer},
        {"placement_errors_are_clear", test_placement_errors_are_clear},
    };
    return test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
}
