/* The AlexNet spec as data, and shape inference over any spec. */
#include "model/internal.h"

#include <stdio.h>
#include <string.h>

static model_layer_spec_t *add(model_spec_t *s, model_layer_kind_t kind, const char *name) {
    model_layer_spec_t *l = &s->layer[s->n_layers++];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    snprintf(l->name, sizeof l->name, "%s", name);
    return l;
}

static void conv(model_spec_t *s, const char *name, int out, int k, int stride, int pad, int groups,
                 float bias) {
    model_layer_spec_t *l = add(s, MODEL_CONV, name);
    l->out = out;
    l->kernel = k;
    l->stride = stride;
    l->pad = pad;
    l->groups = groups;
    l->weight_std = 0.01f;
    l->bias_init = bias;
}

static void relu(model_spec_t *s, const char *name) {
    add(s, MODEL_RELU, name);
}

static void lrn(model_spec_t *s, const char *name) {
    model_layer_spec_t *l = add(s, MODEL_LRN, name);
    l->lrn = (model_lrn_param_t){5, 2.0f, 1e-4f, 0.75f, MODEL_LRN_ALPHA_PAPER};
}

static void pool(model_spec_t *s, const char *name) {
    model_layer_spec_t *l = add(s, MODEL_MAXPOOL, name);
    l->kernel = 3;
    l->stride = 2;
}

static void fc(model_spec_t *s, const char *name, int out, float bias) {
    model_layer_spec_t *l = add(s, MODEL_FC, name);
    l->out = out;
    l->weight_std = 0.01f;
    l->bias_init = bias;
}

static void dropout(model_spec_t *s, const char *name) {
    add(s, MODEL_DROPOUT, name)->dropout = 0.5f;
}

/* The paper's layer sequence with the given widths and first two kernels. */
static void alexnet_body(model_spec_t *s, const int width[5], int k1, int stride1, int pad1, int k2,
                         int classes) {
    conv(s, "conv1", width[0], k1, stride1, pad1, 1, 0.0f);
    relu(s, "relu1");
    lrn(s, "norm1");
    pool(s, "pool1");
    conv(s, "conv2", width[1], k2, 1, k2 / 2, 2, 1.0f);
    relu(s, "relu2");
    lrn(s, "norm2");
    pool(s, "pool2");
    conv(s, "conv3", width[2], 3, 1, 1, 1, 0.0f);
    relu(s, "relu3");
    conv(s, "conv4", width[3], 3, 1, 1, 2, 1.0f);
    relu(s, "relu4");
    conv(s, "conv5", width[4], 3, 1, 1, 2, 1.0f);
    relu(s, "relu5");
    pool(s, "pool5");
    fc(s, "fc6", 4096, 1.0f);
    relu(s, "relu6");
    dropout(s, "drop6");
    fc(s, "fc7", 4096, 1.0f);
    relu(s, "relu7");
    dropout(s, "drop7");
    fc(s, "fc8", classes, 0.0f);
}

void model_spec_alexnet(model_spec_t *spec) {
    memset(spec, 0, sizeof *spec);
    snprintf(spec->name, sizeof spec->name, "alexnet");
    spec->in_c = 3;
    spec->in_h = spec->in_w = 227;
    static const int width[5] = {96, 256, 384, 384, 256};
    alexnet_body(spec, width, 11, 4, 0, 5, 1000);
}

int model_spec_alexnet_small(model_spec_t *spec, int in_c, int in_hw, int classes,
                             util_err_t *err) {
    if (in_c < 1 || in_c > 4 || in_hw < 15 || in_hw > 256 || classes < 2 || classes > 100000)
        return util_fail(err,
                         "alexnet-small: needs 1-4 channels, 15-256 pixels and 2-100000 classes "
                         "(got %d, %d, %d)",
                         in_c, in_hw, classes);
    memset(spec, 0, sizeof *spec);
    snprintf(spec->name, sizeof spec->name, "alexnet-small");
    spec->in_c = in_c;
    spec->in_h = spec->in_w = in_hw;
    static const int width[5] = {64, 128, 192, 192, 128};
    alexnet_body(spec, width, 5, 1, 2, 5, classes);
    return model_spec_shapes(spec, 1, NULL, err);
}

int model_spec_find(const model_spec_t *spec, const char *name) {
    for (int i = 0; i < spec->n_layers; i++)
        if (strcmp(spec->layer[i].name, name) == 0) return i;
    return -1;
}

int model_spec_shapes(const model_spec_t *spec, int n, model_shape_t *shapes, util_err_t *err) {
    if (!spec) return util_fail(err, "spec: none given");
    if (spec->n_layers < 1 || spec->n_layers > MODEL_MAX_LAYERS)
        return util_fail(err, "spec: %d layers (1 to %d allowed)", spec->n_layers,
                         MODEL_MAX_LAYERS);
    model_shape_t cur = {n, spec->in_c, spec->in_h, spec->in_w};
    if (n < 1 || n > MODEL_MAX_DIM || cur.c < 1 || cur.h < 1 || cur.w < 1 ||
        cur.c > MODEL_MAX_DIM || cur.h > MODEL_MAX_DIM || cur.w > MODEL_MAX_DIM)
        return util_fail(err, "spec: input %dx%dx%d at batch %d is not valid", cur.c, cur.h, cur.w,
                         n);
    if (spec->layer[spec->n_layers - 1].kind != MODEL_FC)
        return util_fail(err, "spec: the last layer (%s) must be fully connected",
                         spec->layer[spec->n_layers - 1].name);
    for (int i = 0; i < spec->n_layers; i++) {
        const model_layer_spec_t *l = &spec->layer[i];
        model_shape_t next = cur;
        int rc = 0;
        switch (l->kind) {
        case MODEL_CONV: {
            model_conv_param_t p = {cur.c, l->out, l->kernel, l->stride, l->pad, l->groups};
            rc = model_conv_shape(&p, cur, &next, err);
            break;
        }
        case MODEL_RELU:
            break;
        case MODEL_LRN:
            rc = model_lrn_check(&l->lrn, cur, err);
            break;
        case MODEL_MAXPOOL: {
            model_pool_param_t p = {l->kernel, l->stride, l->pad, l->ceil_mode};
            rc = model_pool_shape(&p, cur, &next, err);
            break;
        }
        case MODEL_FC: {
            size_t in = (size_t)cur.c * cur.h * cur.w;
            if (l->out < 1 || in > (1 << 24) || l->out > (1 << 24) ||
                in * (size_t)l->out > MODEL_MAX_ELEMS)
                rc = util_fail(err, "fc: impossible shape (in %zu, out %d)", in, l->out);
            next = (model_shape_t){n, l->out, 1, 1};
            break;
        }
        case MODEL_DROPOUT:
            if (!(l->dropout >= 0.0f && l->dropout < 1.0f))
                rc = util_fail(err, "dropout: probability %g is not in [0, 1)", (double)l->dropout);
            break;
        default:
            rc = util_fail(err, "unknown layer kind %d", (int)l->kind);
        }
        if (rc) return util_fail_prefix(err, "spec %s, layer %d (%s)", spec->name, i, l->name);
        if (model_shape_count(next) > MODEL_MAX_ELEMS)
            return util_fail(err, "spec %s, layer %s: output too large", spec->name, l->name);
        cur = next;
        if (shapes) shapes[i] = cur;
    }
    return 0;
}
