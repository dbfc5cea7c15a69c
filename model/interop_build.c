/* Above the model file: the paper-shape check and the builder that turns a
 * layer list read from Caffe or ONNX into a checked model file
 * (modelfile.c's model_file_create). */
#include "model/interop_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ paper shape */

static const char *kind_name(model_layer_kind_t k) {
    switch (k) {
    case MODEL_CONV:
        return "convolution";
    case MODEL_RELU:
        return "ReLU";
    case MODEL_LRN:
        return "LRN";
    case MODEL_MAXPOOL:
        return "max pooling";
    case MODEL_FC:
        return "fully connected";
    case MODEL_DROPOUT:
        return "dropout";
    }
    return "unknown";
}

/* The paper's conv geometry: kernel, stride, pad, groups, by conv index. */
static const int paper_conv[5][4] = {
    {11, 4, 0, 1}, {5, 1, 2, 2}, {3, 1, 1, 1}, {3, 1, 1, 2}, {3, 1, 1, 2}};

int model_spec_check_paper_shape(const model_spec_t *spec, util_err_t *err) {
    model_spec_t paper;
    model_spec_alexnet(&paper);
    if (spec->n_layers != paper.n_layers)
        return util_fail(err, "not a paper-shaped AlexNet: %d layers, the paper's has %d",
                         spec->n_layers, paper.n_layers);
    if (spec->in_c != 3)
        return util_fail(err, "not a paper-shaped AlexNet: %d input channels, not 3", spec->in_c);
    int conv = 0;
    for (int i = 0; i < spec->n_layers; i++) {
        const model_layer_spec_t *l = &spec->layer[i], *p = &paper.layer[i];
        if (l->kind != p->kind)
            return util_fail(err,
                             "not a paper-shaped AlexNet: layer %d (%s) is %s where the paper "
                             "has %s (%s)",
                             i, l->name, kind_name(l->kind), kind_name(p->kind), p->name);
        if (l->kind == MODEL_CONV) {
            const int *g = paper_conv[conv++];
            if (l->kernel != g[0] || l->stride != g[1] || l->pad != g[2] || l->groups != g[3])
                return util_fail(err,
                                 "not a paper-shaped AlexNet: %s is %dx%d stride %d pad %d in %d "
                                 "group(s); the paper's is %dx%d stride %d pad %d in %d",
                                 p->name, l->kernel, l->kernel, l->stride, l->pad, l->groups, g[0],
                                 g[0], g[1], g[2], g[3]);
        } else if (l->kind == MODEL_MAXPOOL) {
            if (l->kernel != 3 || l->stride != 2 || l->pad != 0)
                return util_fail(err,
                                 "not a paper-shaped AlexNet: %s pools %dx%d stride %d pad %d; "
                                 "the paper's overlapping pooling is 3x3 stride 2",
                                 p->name, l->kernel, l->kernel, l->stride, l->pad);
        }
    }
    return model_spec_shapes(spec, 1, NULL, err);
}

int model_spec_has_paper_widths(const model_spec_t *spec) {
    model_spec_t paper;
    model_spec_alexnet(&paper);
    if (spec->n_layers != paper.n_layers) return 0;
    for (int i = 0; i < paper.n_layers - 1; i++)
        if (spec->layer[i].kind != paper.layer[i].kind || spec->layer[i].out != paper.layer[i].out)
            return 0;
    return 1;
}

/* ---------------------------------------------------------- import builder */

/* Copies a conv weight (out, in/g, k, k) from src (floats, maybe unaligned),
 * reversing the input channels when the source net took BGR (only conv1
 * sees the image). */
static void copy_conv_weight(float *dst, const uint8_t *src, int out, int in, int kk, int reverse) {
    size_t plane = (size_t)kk;
    for (int o = 0; o < out; o++)
        for (int c = 0; c < in; c++) {
            int sc = reverse ? in - 1 - c : c;
            memcpy(dst + ((size_t)o * in + c) * plane,
                   src + ((size_t)o * in + sc) * plane * sizeof(float), plane * sizeof(float));
        }
}

/* Shapes equal once leading 1s are dropped (Caffe's 2014 (1,1,out,in) fc
 * weights and (1,1,1,out) biases). */
static int same_squeezed(const int *a, int na, const int *b, int nb) {
    while (na > 1 && a[0] == 1)
        a++, na--;
    while (nb > 1 && b[0] == 1)
        b++, nb--;
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static int take_param(model_tensor_t *t, const ix_layer_t *src, int is_bias, int reverse_in,
                      util_err_t *err) {
    /* Read as bytes: raw data in a mapped file need not be aligned. */
    const uint8_t *data = is_bias ? (src->b ? (const uint8_t *)src->b : src->b_raw)
                                  : (src->w ? (const uint8_t *)src->w : src->w_raw);
    size_t count = is_bias ? src->b_count : src->w_count;
    const int *dims = is_bias ? src->b_dims : src->w_dims;
    int ndim = is_bias ? src->b_ndim : src->w_ndim;
    char want[64], have[64];
    ix_dims_str(t->dims, t->ndim, want, sizeof want);
    if (!data)
        return util_fail(err, "%s: %s has no %s", t->name, src->src, is_bias ? "bias" : "weights");
    ix_dims_str(dims, ndim, have, sizeof have);
    int dims_ok;
    if (src->w_in_out && !is_bias) {
        int swapped[2] = {t->dims[1], t->dims[0]};
        dims_ok = same_squeezed(swapped, 2, dims, ndim);
        snprintf(want, sizeof want, "%dx%d (in x out)", t->dims[1], t->dims[0]);
    } else {
        dims_ok = same_squeezed(t->dims, t->ndim, dims, ndim);
    }
    if (!dims_ok || count != t->count)
        return util_fail(err, "%s: expected %s, %s has %s (%zu values)", t->name, want, src->src,
                         have, count);
    if (src->w_in_out && !is_bias) {
        int out = t->dims[0], in = t->dims[1];
        for (int i = 0; i < in; i++)
            for (int o = 0; o < out; o++)
                memcpy(&t->data[(size_t)o * in + i], data + ((size_t)i * out + o) * sizeof(float),
                       sizeof(float));
    } else if (reverse_in && !is_bias) {
        copy_conv_weight(t->data, data, t->dims[0], t->dims[1], t->dims[2] * t->dims[3], 1);
    } else {
        memcpy(t->data, data, count * sizeof(float));
    }
    return 0;
}

model_file_t *ix_build(const ix_layer_t *layers, int n, int in_c, int in_h, int in_w,
                       model_channel_order_t in_order, const char *source, util_err_t *err) {
    model_spec_t paper, spec;
    model_spec_alexnet(&paper);
    memset(&spec, 0, sizeof spec);
    snprintf(spec.name, sizeof spec.name, "alexnet");
    spec.in_c = in_c;
    spec.in_h = in_h;
    spec.in_w = in_w;
    /* Which source layer became which spec layer (-1: dropout added). */
    int from[MODEL_MAX_LAYERS];
    int at = 0;
    for (int i = 0; i < paper.n_layers; i++) {
        const model_layer_spec_t *p = &paper.layer[i];
        model_layer_spec_t *l = &spec.layer[i];
        if (at < n && layers[at].l.kind == p->kind) {
            *l = layers[at].l;
            from[i] = at++;
        } else if (p->kind == MODEL_DROPOUT) {
            /* An inference graph may leave dropout out (torch.onnx.export
             * in eval mode does): it is the identity there, so add it. */
            *l = *p;
            from[i] = -1;
        } else if (at < n) {
            util_fail(err, "not a paper-shaped AlexNet: %s is %s where the paper has %s (%s)%s",
                      layers[at].src, kind_name(layers[at].l.kind), kind_name(p->kind), p->name,
                      p->kind == MODEL_LRN && layers[at].l.kind == MODEL_MAXPOOL
                          ? " (CaffeNet pools before normalising; the paper normalises first)"
                          : "");
            return NULL;
        } else {
            util_fail(err,
                      "not a paper-shaped AlexNet: the net ends after %s; the paper has %s "
                      "(%s) next",
                      n ? layers[n - 1].src : "no layer", kind_name(p->kind), p->name);
            return NULL;
        }
        memcpy(l->name, p->name, sizeof l->name);
        l->weight_std = p->weight_std;
        l->bias_init = p->bias_init;
    }
    if (at < n) {
        util_fail(err, "not a paper-shaped AlexNet: %s follows fc8, the last layer",
                  layers[at].src);
        return NULL;
    }
    spec.n_layers = paper.n_layers;
    if (model_spec_check_paper_shape(&spec, err)) return NULL;
    model_file_t *mf = model_file_create(&spec, err);
    if (!mf) return NULL;
    snprintf(mf->source, sizeof mf->source, "%s", source);
    for (int i = 0; i < mf->n_params; i++) {
        model_tensor_t *t = &mf->param[i];
        /* Params come in spec order: weight then bias of each conv/fc. */
        char lname[24];
        snprintf(lname, sizeof lname, "%s", t->name);
        char *dot = strchr(lname, '.');
        if (dot) *dot = '\0';
        int layer = model_spec_find(&spec, lname);
        const ix_layer_t *src = &layers[from[layer]];
        int is_bias = strcmp(dot + 1, "bias") == 0;
        int reverse = in_order == MODEL_CHANNELS_BGR && strcmp(lname, "conv1") == 0;
        if (take_param(t, src, is_bias, reverse, err)) {
            model_file_free(mf);
            return NULL;
        }
    }
    mf->norm.channel_order = MODEL_CHANNELS_RGB;
    return mf;
}
