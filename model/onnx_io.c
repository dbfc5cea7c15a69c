/* ONNX import and export of a paper-shaped AlexNet, through the subset
 * proto/onnx.proto. The graph must be one chain of standard ops from the
 * image input to the logits (and an optional final Softmax), as the model
 * zoo's bvlcalexnet and onnx.helper-built files are. */
#include "model/interop_internal.h"
#include "onnx.pb-c.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ attributes */

static const Onnx__AttributeProto *attr(const Onnx__NodeProto *n, const char *name) {
    for (size_t i = 0; i < n->n_attribute; i++)
        if (n->attribute[i]->name && strcmp(n->attribute[i]->name, name) == 0)
            return n->attribute[i];
    return NULL;
}

static int64_t attr_i(const Onnx__NodeProto *n, const char *name, int64_t dflt) {
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_i ? a->i : dflt;
}

static float attr_f(const Onnx__NodeProto *n, const char *name, float dflt) {
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_f ? a->f : dflt;
}

/* ints attribute into out (up to cap); returns the count, 0 when absent. */
static size_t attr_ints(const Onnx__NodeProto *n, const char *name, int64_t *out, size_t cap) {
    const Onnx__AttributeProto *a = attr(n, name);
    if (!a) return 0;
    size_t k = a->n_ints < cap ? a->n_ints : cap;
    for (size_t i = 0; i < k; i++)
        out[i] = a->ints[i];
    return a->n_ints;
}

static int auto_pad_ok(const Onnx__NodeProto *n) {
    const Onnx__AttributeProto *a = attr(n, "auto_pad");
    if (!a || !a->has_s) return 1;
    return (a->s.len == 6 && !memcmp(a->s.data, "NOTSET", 6)) || a->s.len == 0;
}

/* ---------------------------------------------------------------- tensors */

typedef struct named_tensor {
    const char *name;
    const Onnx__TensorProto *t;
} named_tensor_t;

typedef struct onnx_import {
    const char *path;
    Onnx__ModelProto *model;
    named_tensor_t *tensors; /* initializers and Constant outputs */
    size_t n_tensors, cap_tensors;
    float **owned; /* float copies made for misaligned raw data or zero biases */
    size_t n_owned, cap_owned;
} onnx_import_t;

static const Onnx__TensorProto *find_tensor(const onnx_import_t *im, const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < im->n_tensors; i++)
        if (im->tensors[i].name && strcmp(im->tensors[i].name, name) == 0) return im->tensors[i].t;
    return NULL;
}

static int add_tensor(onnx_import_t *im, const char *name, const Onnx__TensorProto *t,
                      util_err_t *err) {
    if (im->n_tensors == im->cap_tensors) {
        size_t cap = im->cap_tensors ? 2 * im->cap_tensors : 64;
        named_tensor_t *nt = realloc(im->tensors, cap * sizeof *nt);
        if (!nt) return util_fail(err, "out of memory");
        im->tensors = nt;
        im->cap_tensors = cap;
    }
    im->tensors[im->n_tensors++] = (named_tensor_t){name, t};
    return 0;
}

/* count zeroed floats that the import owns (freed with it). */
static float *owned_floats(onnx_import_t *im, size_t count, util_err_t *err) {
    if (im->n_owned == im->cap_owned) {
        size_t cap = im->cap_owned ? 2 * im->cap_owned : 16;
        float **o = realloc(im->owned, cap * sizeof *o);
        if (!o) {
            util_fail(err, "out of memory");
            return NULL;
        }
        im->owned = o;
        im->cap_owned = cap;
    }
    float *p = calloc(count ? count : 1, sizeof *p);
    if (!p) {
        util_fail(err, "out of memory for %zu values", count);
        return NULL;
    }
    im->owned[im->n_owned++] = p;
    return p;
}

static int host_is_little_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* A float tensor's values and shape. */
static int tensor_floats(onnx_import_t *im, const Onnx__TensorProto *t, const char *what,
                         const float **data, size_t *count, int *dims, int *ndim, util_err_t *err) {
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return util_fail(err,
                         "%s: stored as external data, which imgret does not read (save the "
                         "model as one file)",
                         what);
    if (t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return util_fail(err, "%s: data type %d, imgret reads float32 (1)", what, t->data_type);
    if (t->n_dims > 4) return util_fail(err, "%s: %zu dimensions", what, t->n_dims);
    size_t want = 1;
    *ndim = (int)t->n_dims;
    for (size_t d = 0; d < t->n_dims; d++) {
        if (t->dims[d] < 1 || t->dims[d] > MODEL_MAX_DIM)
            return util_fail(err, "%s: dimension %zu is %lld", what, d, (long long)t->dims[d]);
        dims[d] = (int)t->dims[d];
        want *= (size_t)t->dims[d];
    }
    if (t->has_raw_data) {
        if (t->raw_data.len != want * sizeof(float))
            return util_fail(err, "%s: %zu bytes of raw data for %zu floats", what, t->raw_data.len,
                             want);
        if (!host_is_little_endian())
            return util_fail(err, "%s: raw data is little-endian; this host is not", what);
        if ((uintptr_t)t->raw_data.data % sizeof(float) == 0) {
            *data = (const float *)(const void *)t->raw_data.data;
        } else {
            float *copy = owned_floats(im, want, err);
            if (!copy) return -1;
            memcpy(copy, t->raw_data.data, want * sizeof(float));
            *data = copy;
        }
    } else {
        if (t->n_float_data != want)
            return util_fail(err, "%s: %zu float values for %zu", what, t->n_float_data, want);
        *data = t->float_data;
    }
    *count = want;
    return 0;
}

/* The int64 values of a small tensor (a Reshape's shape). */
static int tensor_ints(const Onnx__TensorProto *t, int64_t *out, size_t cap, size_t *n) {
    if (t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__INT64) return -1;
    if (t->has_raw_data) {
        if (t->raw_data.len % 8 || t->raw_data.len / 8 > cap || !host_is_little_endian()) return -1;
        *n = t->raw_data.len / 8;
        memcpy(out, t->raw_data.data, t->raw_data.len);
    } else {
        if (t->n_int64_data > cap) return -1;
        *n = t->n_int64_data;
        memcpy(out, t->int64_data, *n * sizeof *out);
    }
    return 0;
}

/* ------------------------------------------------------------------ import */

static int weights_of(onnx_import_t *im, ix_layer_t *l, const Onnx__NodeProto *n, int optional_bias,
                      util_err_t *err) {
    char what[160];
    const Onnx__TensorProto *w = n->n_input > 1 ? find_tensor(im, n->input[1]) : NULL;
    const Onnx__TensorProto *b = n->n_input > 2 ? find_tensor(im, n->input[2]) : NULL;
    if (!w)
        return util_fail(err, "%s: its weights '%s' are not an initializer", l->src,
                         n->n_input > 1 ? n->input[1] : "(none)");
    snprintf(what, sizeof what, "%s weights '%s'", l->src, n->input[1]);
    if (tensor_floats(im, w, what, &l->w, &l->w_count, l->w_dims, &l->w_ndim, err)) return -1;
    if (b) {
        snprintf(what, sizeof what, "%s bias '%s'", l->src, n->input[2]);
        return tensor_floats(im, b, what, &l->b, &l->b_count, l->b_dims, &l->b_ndim, err);
    }
    if (n->n_input > 2 && n->input[2][0])
        return util_fail(err, "%s: its bias '%s' is not an initializer", l->src, n->input[2]);
    if (!optional_bias) return util_fail(err, "%s: no bias", l->src);
    /* A missing bias is a zero bias. */
    int out = l->w_ndim > 0 ? l->w_dims[0] : 0;
    if (l->w_in_out && l->w_ndim == 2) out = l->w_dims[1];
    float *zero = owned_floats(im, (size_t)out, err);
    if (!zero) return -1;
    l->b = zero;
    l->b_count = (size_t)out;
    l->b_ndim = 1;
    l->b_dims[0] = out;
    return 0;
}

#define PAPER_ALPHA_KEY "imgret.lrn_paper_alpha."

/* Not every float alpha is a float quotient alpha'/size, so an LRN in the
 * paper's convention cannot always be written as an ONNX alpha that
 * imgret divides back to the same float. imgret's exporter therefore also
 * writes the paper's alpha into metadata_props; when it is there and agrees
 * with the node, the import restores the paper's convention exactly. */
static void paper_alpha_hint(const onnx_import_t *im, const Onnx__NodeProto *n,
                             model_lrn_param_t *lrn) {
    if (!n->name) return;
    for (size_t i = 0; i < im->model->n_metadata_props; i++) {
        const Onnx__StringStringEntryProto *kv = im->model->metadata_props[i];
        if (!kv->key || !kv->value || strncmp(kv->key, PAPER_ALPHA_KEY, strlen(PAPER_ALPHA_KEY)) ||
            strcmp(kv->key + strlen(PAPER_ALPHA_KEY), n->name))
            continue;
        char *end;
        float a = strtof(kv->value, &end);
        if (*end || !(a > 0.0f)) return;
        if (fabsf(a * (float)lrn->size - lrn->alpha) <= 1e-5f * lrn->alpha) {
            lrn->alpha = a;
            lrn->alpha_mode = MODEL_LRN_ALPHA_PAPER;
        }
        return;
    }
}

/* One node of the chain; *shape (c, h, w at batch 1) follows the data. */
static int convert_node(onnx_import_t *im, const Onnx__NodeProto *n, ix_layer_t *l,
                        model_shape_t *shape, int *emit, int opset, util_err_t *err) {
    memset(l, 0, sizeof *l);
    *emit = 1;
    const char *op = n->op_type;
    snprintf(l->src, sizeof l->src, "node '%.40s' (%.24s)",
             n->name && n->name[0] ? n->name : (n->n_output ? n->output[0] : ""), op);
    int64_t v[8];
    if (!strcmp(op, "Conv")) {
        int64_t k[2] = {0, 0}, s[2] = {1, 1}, p[4] = {0, 0, 0, 0}, d[2] = {1, 1};
        size_t nk = attr_ints(n, "kernel_shape", k, 2), ns = attr_ints(n, "strides", s, 2);
        size_t np = attr_ints(n, "pads", p, 4), nd = attr_ints(n, "dilations", d, 2);
        if ((nk && nk != 2) || (ns && ns != 2) || (np && np != 4) || (nd && nd != 2))
            return util_fail(err, "%s: imgret reads 2-d convolutions only", l->src);
        if (!auto_pad_ok(n)) return util_fail(err, "%s: auto_pad is not supported", l->src);
        if (d[0] != 1 || d[1] != 1) return util_fail(err, "%s: dilated convolution", l->src);
        if (s[0] != s[1] || p[0] != p[1] || p[0] != p[2] || p[0] != p[3] || s[0] < 1 ||
            s[0] > 1024 || p[0] < 0 || p[0] > 1024)
            return util_fail(err,
                             "%s: strides [%lld,%lld] pads [%lld,%lld,%lld,%lld]: imgret "
                             "needs square strides and equal pads",
                             l->src, (long long)s[0], (long long)s[1], (long long)p[0],
                             (long long)p[1], (long long)p[2], (long long)p[3]);
        if (weights_of(im, l, n, 1, err)) return -1;
        if (l->w_ndim != 4 || l->w_dims[2] != l->w_dims[3] ||
            (nk && (k[0] != l->w_dims[2] || k[1] != l->w_dims[3])))
            return util_fail(err, "%s: weights are not square 2-d kernels", l->src);
        int64_t g = attr_i(n, "group", 1);
        if (g < 1 || g > 1024) return util_fail(err, "%s: group %lld", l->src, (long long)g);
        l->l.kind = MODEL_CONV;
        l->l.out = l->w_dims[0];
        l->l.kernel = l->w_dims[2];
        l->l.stride = (int)s[0];
        l->l.pad = (int)p[0];
        l->l.groups = (int)g;
        model_conv_param_t cp = {shape->c,    l->l.out, l->l.kernel,
                                 l->l.stride, l->l.pad, l->l.groups};
        model_shape_t next;
        if (model_conv_shape(&cp, *shape, &next, err)) return util_fail_prefix(err, "%s", l->src);
        *shape = next;
    } else if (!strcmp(op, "Relu")) {
        l->l.kind = MODEL_RELU;
    } else if (!strcmp(op, "LRN")) {
        int64_t size = attr_i(n, "size", 0);
        if (size < 1 || size > 1024)
            return util_fail(err, "%s: size %lld", l->src, (long long)size);
        l->l.kind = MODEL_LRN;
        /* ONNX: square_sum * alpha / size, bias = k: imgret's OVER_N. */
        l->l.lrn =
            (model_lrn_param_t){(int)size, attr_f(n, "bias", 1.0f), attr_f(n, "alpha", 1e-4f),
                                attr_f(n, "beta", 0.75f), MODEL_LRN_ALPHA_OVER_N};
        paper_alpha_hint(im, n, &l->l.lrn);
    } else if (!strcmp(op, "MaxPool")) {
        int64_t k[2] = {0, 0}, s[2] = {1, 1}, p[4] = {0, 0, 0, 0}, d[2] = {1, 1};
        size_t nk = attr_ints(n, "kernel_shape", k, 2), ns = attr_ints(n, "strides", s, 2);
        size_t np = attr_ints(n, "pads", p, 4), nd = attr_ints(n, "dilations", d, 2);
        int64_t ceil = attr_i(n, "ceil_mode", 0);
        if (nk != 2 || (ns && ns != 2) || (np && np != 4) || (nd && nd != 2) || d[0] != 1 ||
            d[1] != 1 || !auto_pad_ok(n) || attr_i(n, "storage_order", 0) != 0 || n->n_output > 1)
            return util_fail(err, "%s: only plain 2-d max pooling is supported", l->src);
        if (k[0] != k[1] || s[0] != s[1] || k[0] < 1 || k[0] > 1024 || s[0] < 1 || s[0] > 1024)
            return util_fail(err, "%s: imgret needs square pooling windows and strides", l->src);
        for (int i = 0; i < 4; i++)
            if (p[i] < 0 || p[i] > 1024) return util_fail(err, "%s: pads out of range", l->src);
        l->l.kind = MODEL_MAXPOOL;
        l->l.kernel = (int)k[0];
        l->l.stride = (int)s[0];
        l->l.pad = (int)p[0];
        l->l.ceil_mode = ceil != 0;
        model_pool_param_t pp = {l->l.kernel, l->l.stride, l->l.pad, l->l.ceil_mode};
        model_shape_t next;
        if (p[0] != p[1] || p[0] != p[2] || p[0] != p[3]) {
            /* Asymmetric pads: the opset-9 way to round up is [0,0,1,1]. Max
             * pooling ignores padding, and the windows start at the same
             * places, so extra end padding is ceil rounding exactly when it
             * yields the same number of windows along each axis. */
            int64_t o_h = (shape->h + p[0] + p[2] - k[0]) / s[0] + 1;
            int64_t o_w = (shape->w + p[1] + p[3] - k[0]) / s[0] + 1;
            pp.ceil_mode = 1;
            int ok = !ceil && p[0] == p[1] && p[2] >= p[0] && p[3] >= p[1] &&
                     model_pool_shape(&pp, *shape, &next, NULL) == 0 && next.h == o_h &&
                     next.w == o_w;
            if (!ok)
                return util_fail(err,
                                 "%s: pads [%lld,%lld,%lld,%lld] on a %dx%d input have no "
                                 "equivalent in imgret's pooling (equal pads, rounding down or "
                                 "up)",
                                 l->src, (long long)p[0], (long long)p[1], (long long)p[2],
                                 (long long)p[3], shape->h, shape->w);
            l->l.ceil_mode = 1;
        }
        if (model_pool_shape(&pp, *shape, &next, err)) return util_fail_prefix(err, "%s", l->src);
        *shape = next;
    } else if (!strcmp(op, "Flatten") || !strcmp(op, "Reshape")) {
        *emit = 0;
        if (!strcmp(op, "Flatten") && attr_i(n, "axis", 1) != 1)
            return util_fail(err, "%s: flattens from axis %lld, not 1", l->src,
                             (long long)attr_i(n, "axis", 1));
        if (!strcmp(op, "Reshape")) {
            const Onnx__TensorProto *t = n->n_input > 1 ? find_tensor(im, n->input[1]) : NULL;
            size_t nv = 0;
            int64_t per = (int64_t)shape->c * shape->h * shape->w;
            if (!t || tensor_ints(t, v, 8, &nv) || nv != 2 ||
                !(v[1] == -1 || v[1] == per || (v[1] == 0 && per == shape->c && shape->h == 1)) ||
                v[0] == -1 * (v[1] == -1))
                return util_fail(err,
                                 "%s: imgret reads a Reshape only as a flatten to (N, %lld) "
                                 "with a constant shape",
                                 l->src, (long long)per);
        }
        shape->c = shape->c * shape->h * shape->w;
        shape->h = shape->w = 1;
    } else if (!strcmp(op, "Gemm")) {
        if (attr_i(n, "transA", 0) != 0 || attr_f(n, "alpha", 1.0f) != 1.0f ||
            attr_f(n, "beta", 1.0f) != 1.0f)
            return util_fail(err, "%s: imgret reads Gemm with transA=0, alpha=1 and beta=1",
                             l->src);
        l->w_in_out = attr_i(n, "transB", 0) == 0;
        if (weights_of(im, l, n, 1, err)) return -1;
        if (l->w_ndim != 2) return util_fail(err, "%s: weights are not a matrix", l->src);
        l->l.kind = MODEL_FC;
        l->l.out = l->w_in_out ? l->w_dims[1] : l->w_dims[0];
        *shape = (model_shape_t){1, l->l.out, 1, 1};
    } else if (!strcmp(op, "Dropout")) {
        l->l.kind = MODEL_DROPOUT;
        l->l.dropout = attr_f(n, "ratio", 0.5f);
        if (opset >= 12 && n->n_input > 1 && n->input[1][0]) {
            const Onnx__TensorProto *t = find_tensor(im, n->input[1]);
            const float *r;
            size_t cnt;
            int dims[4], nd;
            if (!t || tensor_floats(im, t, l->src, &r, &cnt, dims, &nd, err) || cnt != 1)
                return util_fail(err, "%s: its ratio is not a constant float", l->src);
            l->l.dropout = r[0];
        }
    } else if (!strcmp(op, "Identity")) {
        *emit = 0;
    } else {
        return util_fail(err,
                         "%s: op '%s' is not one a paper-shaped AlexNet is written with (Conv, "
                         "Relu, LRN, MaxPool, Flatten, Reshape, Gemm, Dropout, Softmax, Identity)",
                         l->src, op);
    }
    return 0;
}

static int graph_input_shape(const Onnx__ValueInfoProto *vi, int *c, int *h, int *w) {
    const Onnx__TypeProto *t = vi->type;
    if (!t || t->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !t->tensor_type ||
        !t->tensor_type->shape || t->tensor_type->shape->n_dim != 4)
        return -1;
    int64_t v[4];
    for (int d = 0; d < 4; d++) {
        const Onnx__TensorShapeProto__Dimension *dim = t->tensor_type->shape->dim[d];
        v[d] = dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                   ? dim->dim_value
                   : 0;
    }
    if (v[1] < 1 || v[2] < 1 || v[3] < 1 || v[1] > MODEL_MAX_DIM || v[2] > MODEL_MAX_DIM ||
        v[3] > MODEL_MAX_DIM)
        return -1;
    *c = (int)v[1];
    *h = (int)v[2];
    *w = (int)v[3];
    return 0;
}

model_file_t *model_import_onnx(const char *path, const model_onnx_import_opts_t *opts,
                                util_err_t *err) {
    model_onnx_import_opts_t dflt = {0};
    if (!opts) opts = &dflt;
    size_t len;
    uint8_t *buf = util_read_file(path, MODEL_FILE_MAX_BYTES, &len, err);
    if (!buf) return NULL;
    onnx_import_t im = {path, NULL, NULL, 0, 0, NULL, 0, 0};
    im.model = onnx__model_proto__unpack(NULL, len, buf);
    free(buf);
    model_file_t *mf = NULL;
    ix_layer_t *layers = NULL;
    if (!im.model) {
        util_fail(err, "%s: not an ONNX ModelProto (truncated or not an .onnx file)", path);
        return NULL;
    }
    const Onnx__GraphProto *g = im.model->graph;
    if (!g) {
        util_fail(err, "%s: the model has no graph", path);
        goto out;
    }
    int opset = 0;
    for (size_t i = 0; i < im.model->n_opset_import; i++) {
        const Onnx__OperatorSetIdProto *o = im.model->opset_import[i];
        if (!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx")) opset = (int)o->version;
    }
    if (opset < 7 || opset > 21) {
        util_fail(err, "%s: default-domain opset %d; imgret reads opsets 7 to 21", path, opset);
        goto out;
    }
    for (size_t i = 0; i < g->n_initializer; i++)
        if (add_tensor(&im, g->initializer[i]->name, g->initializer[i], err)) goto fail_prefix;
    /* The image input: the graph input that is not an initializer. */
    const Onnx__ValueInfoProto *input = NULL;
    for (size_t i = 0; i < g->n_input && !input; i++)
        if (!find_tensor(&im, g->input[i]->name)) input = g->input[i];
    if (!input || !input->name) {
        util_fail(err, "%s: the graph has no data input", path);
        goto out;
    }
    int in_c = 3, in_h = 0, in_w = 0;
    if (graph_input_shape(input, &in_c, &in_h, &in_w)) in_h = in_w = 0;
    if (opts->input_size) in_h = in_w = opts->input_size;
    if (!in_h) in_h = in_w = 224;
    layers = calloc(g->n_node + 1, sizeof *layers);
    if (!layers) {
        util_fail(err, "%s: out of memory", path);
        goto out;
    }
    int n_layers = 0, done = 0;
    const char *cur = input->name;
    model_shape_t shape = {1, in_c, in_h, in_w};
    for (size_t i = 0; i < g->n_node; i++) {
        const Onnx__NodeProto *n = g->node[i];
        if (!n->op_type) {
            util_fail(err, "%s: node %zu has no op_type", path, i);
            goto out;
        }
        if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx")) {
            util_fail(err, "%s: node '%s' is op '%s' of domain '%s', not a standard op", path,
                      n->name ? n->name : "", n->op_type, n->domain);
            goto out;
        }
        if (!strcmp(n->op_type, "Constant")) {
            const Onnx__AttributeProto *a = attr(n, "value");
            if (n->n_output != 1 || !a || !a->t) {
                util_fail(err, "%s: Constant node '%s' without a tensor value", path,
                          n->name ? n->name : "");
                goto out;
            }
            if (add_tensor(&im, n->output[0], a->t, err)) goto fail_prefix;
            continue;
        }
        if (done) {
            util_fail(err, "%s: node '%s' (%s) follows the final Softmax", path,
                      n->name ? n->name : "", n->op_type);
            goto out;
        }
        if (n->n_input < 1 || n->n_output < 1 || strcmp(n->input[0], cur) != 0) {
            util_fail(err,
                      "%s: the graph is not one chain: node '%s' (%s) reads '%s', expected "
                      "'%s'",
                      path, n->name ? n->name : "", n->op_type, n->n_input ? n->input[0] : "", cur);
            goto out;
        }
        cur = n->output[0];
        if (!strcmp(n->op_type, "Softmax") || !strcmp(n->op_type, "LogSoftmax")) {
            done = 1; /* imgret's net ends at the logits */
            continue;
        }
        int emit;
        if (convert_node(&im, n, &layers[n_layers], &shape, &emit, opset, err)) goto fail_prefix;
        n_layers += emit;
        if (n_layers > MODEL_MAX_LAYERS) {
            util_fail(err, "%s: more than %d layers: not a paper-shaped AlexNet", path,
                      MODEL_MAX_LAYERS);
            goto out;
        }
    }
    const char *base = strrchr(path, '/');
    char source[256];
    snprintf(source, sizeof source, "onnx: %.160s (opset %d, producer '%.40s')%s",
             base ? base + 1 : path, opset, im.model->producer_name ? im.model->producer_name : "",
             opts->bgr ? ", BGR conv1 reordered to RGB" : "");
    mf = ix_build(layers, n_layers, in_c, in_h, in_w,
                  opts->bgr ? MODEL_CHANNELS_BGR : MODEL_CHANNELS_RGB, source, err);
    if (!mf) goto fail_prefix;
    if (opts->has_mean_pixel) {
        mf->norm.mean_kind = MODEL_MEAN_PIXEL;
        memcpy(mf->norm.mean_pixel, opts->mean_pixel, sizeof opts->mean_pixel);
    }
    if (opts->labels_path && model_file_read_class_names(mf, opts->labels_path, err)) {
        model_file_free(mf);
        mf = NULL;
    }
    goto out;
fail_prefix:
    util_fail_prefix(err, "%s", path);
out:
    for (size_t i = 0; i < im.n_owned; i++)
        free(im.owned[i]);
    free(im.owned);
    free(im.tensors);
    free(layers);
    onnx__model_proto__free_unpacked(im.model, NULL);
    return mf;
}

/* ------------------------------------------------------------------ export */

/* Everything the exported message points to, freed at once. */
typedef struct onnx_out {
    Onnx__NodeProto *nodes;
    Onnx__NodeProto **node_ptr;
    Onnx__AttributeProto *attrs;
    Onnx__AttributeProto **attr_ptr;
    int64_t *ints;
    char **strings;
    Onnx__TensorProto *tensors;
    Onnx__TensorProto **tensor_ptr;
    char **owned; /* strings made by out_str */
    size_t n_nodes, n_attrs, n_ints, n_strings, n_tensors, n_owned;
    size_t attr_ptr_used;
} onnx_out_t;

enum { OUT_MAX_NODES = 2 * MODEL_MAX_LAYERS + 2, OUT_MAX_ATTRS = 8 * OUT_MAX_NODES };

/* A formatted name owned by o (freed with it). */
static char *out_str(onnx_out_t *o, const char *fmt, const char *a, const char *b) {
    size_t n = strlen(fmt) + strlen(a) + strlen(b) + 1;
    char *str = malloc(n);
    if (!str) return NULL;
    snprintf(str, n, fmt, a, b);
    o->owned[o->n_owned++] = str;
    return str;
}

static Onnx__AttributeProto *out_attr(onnx_out_t *o, Onnx__NodeProto *n, const char *name,
                                      Onnx__AttributeProto__AttributeType type) {
    Onnx__AttributeProto *a = &o->attrs[o->n_attrs++];
    onnx__attribute_proto__init(a);
    a->name = (char *)name;
    a->has_type = 1;
    a->type = type;
    if (!n->attribute) n->attribute = &o->attr_ptr[o->attr_ptr_used];
    n->attribute[n->n_attribute++] = a;
    o->attr_ptr_used++;
    return a;
}

static void attr_int(onnx_out_t *o, Onnx__NodeProto *n, const char *name, int64_t v) {
    Onnx__AttributeProto *a = out_attr(o, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

static void attr_float(onnx_out_t *o, Onnx__NodeProto *n, const char *name, float v) {
    Onnx__AttributeProto *a = out_attr(o, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
}

static void attr_ints2(onnx_out_t *o, Onnx__NodeProto *n, const char *name, const int64_t *v,
                       size_t count) {
    Onnx__AttributeProto *a = out_attr(o, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->ints = &o->ints[o->n_ints];
    for (size_t i = 0; i < count; i++)
        o->ints[o->n_ints++] = v[i];
    a->n_ints = count;
}

/* A node reading n_in names and writing `out`; the name arrays live in
 * o->strings. */
static Onnx__NodeProto *out_node(onnx_out_t *o, const char *op, const char *name, char *const *in,
                                 size_t n_in, char *out) {
    Onnx__NodeProto *n = &o->nodes[o->n_nodes];
    onnx__node_proto__init(n);
    o->node_ptr[o->n_nodes++] = n;
    n->op_type = (char *)op;
    n->name = (char *)name;
    n->input = &o->strings[o->n_strings];
    for (size_t i = 0; i < n_in; i++)
        o->strings[o->n_strings++] = in[i];
    n->n_input = n_in;
    n->output = &o->strings[o->n_strings];
    o->strings[o->n_strings++] = out;
    n->n_output = 1;
    return n;
}

/* The ONNX alpha for an LRN: ONNX divides alpha by size. For the paper's
 * convention this picks the float whose quotient by size is closest to the
 * paper's alpha (exact when one exists; other runtimes then compute the same
 * normalisation to within one rounding of alpha). */
static float onnx_lrn_alpha(const model_lrn_param_t *p) {
    if (p->alpha_mode == MODEL_LRN_ALPHA_OVER_N) return p->alpha;
    const float size = (float)p->size;
    float x = nextafterf(nextafterf(p->alpha * size, 0.0f), 0.0f), best = p->alpha * size;
    for (int i = 0; i < 5; i++, x = nextafterf(x, INFINITY))
        if (fabsf(x / size - p->alpha) < fabsf(best / size - p->alpha)) best = x;
    return best;
}

/* End padding that makes floor rounding give ceil rounding's windows. */
static int end_pad_for_ceil(const model_layer_spec_t *l, int in, int *extra) {
    model_pool_param_t pp = {l->kernel, l->stride, l->pad, 1};
    model_shape_t s = {1, 1, in, in}, o;
    if (model_pool_shape(&pp, s, &o, NULL)) return -1;
    for (int e = 0; e < l->kernel; e++)
        if ((in + 2 * l->pad + e - l->kernel) / l->stride + 1 == o.h) {
            *extra = e;
            return 0;
        }
    return -1;
}

static Onnx__ValueInfoProto *value_info(Onnx__ValueInfoProto *vi, Onnx__TypeProto *tp,
                                        Onnx__TypeProto__Tensor *tt, Onnx__TensorShapeProto *sp,
                                        Onnx__TensorShapeProto__Dimension *dims,
                                        Onnx__TensorShapeProto__Dimension **dim_ptr,
                                        const char *name, const int *d, int nd) {
    onnx__value_info_proto__init(vi);
    onnx__type_proto__init(tp);
    onnx__type_proto__tensor__init(tt);
    onnx__tensor_shape_proto__init(sp);
    for (int i = 0; i < nd; i++) {
        onnx__tensor_shape_proto__dimension__init(&dims[i]);
        if (d[i] > 0) {
            dims[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dims[i].dim_value = d[i];
        } else {
            dims[i].value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dims[i].dim_param = "N";
        }
        dim_ptr[i] = &dims[i];
    }
    sp->n_dim = (size_t)nd;
    sp->dim = dim_ptr;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sp;
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    vi->name = (char *)name;
    vi->type = tp;
    return vi;
}

int model_export_onnx(const model_file_t *mf, const char *path,
                      const model_onnx_export_opts_t *opts, util_err_t *err) {
    int opset = opts && opts->opset ? opts->opset : 12;
    if (opset != 9 && opset != 12)
        return util_fail(err, "onnx export: opset %d (9 or 12 are written)", opset);
    if (!host_is_little_endian())
        return util_fail(err, "onnx export: raw data is little-endian; this host is not");
    if (model_file_check(mf, err)) return util_fail_prefix(err, "onnx export");
    const model_spec_t *s = &mf->spec;
    model_shape_t shapes[MODEL_MAX_LAYERS];
    if (model_spec_shapes(s, 1, shapes, err)) return -1;
    onnx_out_t o = {0};
    float *ratios = calloc(MODEL_MAX_LAYERS, sizeof *ratios);
    o.nodes = calloc(OUT_MAX_NODES, sizeof *o.nodes);
    o.node_ptr = calloc(OUT_MAX_NODES, sizeof *o.node_ptr);
    o.attrs = calloc(OUT_MAX_ATTRS, sizeof *o.attrs);
    o.attr_ptr = calloc(OUT_MAX_ATTRS, sizeof *o.attr_ptr);
    o.ints = calloc(8 * OUT_MAX_ATTRS, sizeof *o.ints);
    o.strings = calloc(8 * OUT_MAX_NODES, sizeof *o.strings);
    o.tensors = calloc((size_t)mf->n_params + MODEL_MAX_LAYERS, sizeof *o.tensors);
    o.tensor_ptr = calloc((size_t)mf->n_params + MODEL_MAX_LAYERS, sizeof *o.tensor_ptr);
    int64_t *dims = calloc(4 * ((size_t)mf->n_params + MODEL_MAX_LAYERS), sizeof *dims);
    o.owned = calloc(8 * OUT_MAX_NODES, sizeof *o.owned);
    int rc = -1;
    if (!ratios || !o.nodes || !o.node_ptr || !o.attrs || !o.attr_ptr || !o.ints || !o.strings ||
        !o.tensors || !o.tensor_ptr || !dims || !o.owned) {
        util_fail(err, "onnx export: out of memory");
        goto out;
    }
    /* Initializers: the parameters, pointing at mf's floats. */
    for (int i = 0; i < mf->n_params; i++) {
        const model_tensor_t *t = &mf->param[i];
        Onnx__TensorProto *tp = &o.tensors[o.n_tensors];
        onnx__tensor_proto__init(tp);
        tp->name = (char *)t->name;
        tp->has_data_type = 1;
        tp->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
        tp->n_dims = (size_t)t->ndim;
        tp->dims = &dims[4 * o.n_tensors];
        for (int d = 0; d < t->ndim; d++)
            tp->dims[d] = t->dims[d];
        tp->has_raw_data = 1;
        tp->raw_data.len = t->count * sizeof(float);
        tp->raw_data.data = (uint8_t *)t->data;
        o.tensor_ptr[o.n_tensors++] = tp;
    }
    char *cur = "data";
    for (int i = 0; i < s->n_layers; i++) {
        const model_layer_spec_t *l = &s->layer[i];
        model_shape_t in = i ? shapes[i - 1] : (model_shape_t){1, s->in_c, s->in_h, s->in_w};
        char *name = out_str(&o, "%s%s", l->name, "");
        if (!name) goto oom;
        char *y = i == s->n_layers - 1 ? "logits" : name;
        Onnx__NodeProto *n = NULL;
        int64_t v[4];
        switch (l->kind) {
        case MODEL_CONV: {
            char *ins[3] = {cur, out_str(&o, "%s.%s", l->name, "weight"),
                            out_str(&o, "%s.%s", l->name, "bias")};
            if (!ins[1] || !ins[2]) goto oom;
            n = out_node(&o, "Conv", name, ins, 3, y);
            v[0] = v[1] = l->kernel;
            attr_ints2(&o, n, "kernel_shape", v, 2);
            v[0] = v[1] = l->stride;
            attr_ints2(&o, n, "strides", v, 2);
            v[0] = v[1] = v[2] = v[3] = l->pad;
            attr_ints2(&o, n, "pads", v, 4);
            v[0] = v[1] = 1;
            attr_ints2(&o, n, "dilations", v, 2);
            attr_int(&o, n, "group", l->groups);
            break;
        }
        case MODEL_RELU:
            n = out_node(&o, "Relu", name, &cur, 1, y);
            break;
        case MODEL_LRN:
            n = out_node(&o, "LRN", name, &cur, 1, y);
            attr_int(&o, n, "size", l->lrn.size);
            attr_float(&o, n, "alpha", onnx_lrn_alpha(&l->lrn));
            attr_float(&o, n, "beta", l->lrn.beta);
            attr_float(&o, n, "bias", l->lrn.k);
            break;
        case MODEL_MAXPOOL: {
            int eh = 0, ew = 0;
            if (l->ceil_mode && opset < 10 &&
                (end_pad_for_ceil(l, in.h, &eh) || end_pad_for_ceil(l, in.w, &ew))) {
                util_fail(err,
                          "onnx export: %s rounds up at a %dx%d input, which opset %d "
                          "cannot say with end padding",
                          l->name, in.h, in.w, opset);
                goto out;
            }
            n = out_node(&o, "MaxPool", name, &cur, 1, y);
            v[0] = v[1] = l->kernel;
            attr_ints2(&o, n, "kernel_shape", v, 2);
            v[0] = v[1] = l->stride;
            attr_ints2(&o, n, "strides", v, 2);
            /* Opset 9 has no ceil_mode: extra end padding rounds up. */
            v[0] = v[1] = l->pad;
            v[2] = l->pad + eh;
            v[3] = l->pad + ew;
            attr_ints2(&o, n, "pads", v, 4);
            if (opset >= 10) attr_int(&o, n, "ceil_mode", l->ceil_mode);
            break;
        }
        case MODEL_FC: {
            if (in.h != 1 || in.w != 1) {
                char *f = out_str(&o, "flatten_%s%s", l->name, "");
                if (!f) goto oom;
                Onnx__NodeProto *fl = out_node(&o, "Flatten", f, &cur, 1, f);
                attr_int(&o, fl, "axis", 1);
                cur = f;
            }
            char *ins[3] = {cur, out_str(&o, "%s.%s", l->name, "weight"),
                            out_str(&o, "%s.%s", l->name, "bias")};
            if (!ins[1] || !ins[2]) goto oom;
            n = out_node(&o, "Gemm", name, ins, 3, y);
            attr_int(&o, n, "transB", 1);
            break;
        }
        case MODEL_DROPOUT:
            if (opset < 12) {
                n = out_node(&o, "Dropout", name, &cur, 1, y);
                attr_float(&o, n, "ratio", l->dropout);
            } else {
                /* Opset 12 takes the ratio as an input. */
                char *ins[2] = {cur, out_str(&o, "%s.%s", l->name, "ratio")};
                if (!ins[1]) goto oom;
                ratios[i] = l->dropout;
                Onnx__TensorProto *tp = &o.tensors[o.n_tensors];
                onnx__tensor_proto__init(tp);
                tp->name = ins[1];
                tp->has_data_type = 1;
                tp->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
                tp->n_float_data = 1;
                tp->float_data = &ratios[i];
                o.tensor_ptr[o.n_tensors++] = tp;
                n = out_node(&o, "Dropout", name, ins, 2, y);
            }
            break;
        }
        cur = y;
    }
    Onnx__NodeProto *sm = out_node(&o, "Softmax", "prob", &cur, 1, "prob");
    attr_int(&o, sm, "axis", 1);

    int classes = s->layer[s->n_layers - 1].out;
    Onnx__ValueInfoProto vin, vout[2], *vin_ptr = &vin, *vout_ptr[2] = {&vout[0], &vout[1]};
    Onnx__TypeProto tp[3];
    Onnx__TypeProto__Tensor tt[3];
    Onnx__TensorShapeProto sp[3];
    Onnx__TensorShapeProto__Dimension dm[3][4], *dm_ptr[3][4];
    int in_dims[4] = {0, s->in_c, s->in_h, s->in_w}, out_dims[2] = {0, classes};
    value_info(&vin, &tp[0], &tt[0], &sp[0], dm[0], dm_ptr[0], "data", in_dims, 4);
    value_info(&vout[0], &tp[1], &tt[1], &sp[1], dm[1], dm_ptr[1], "logits", out_dims, 2);
    value_info(&vout[1], &tp[2], &tt[2], &sp[2], dm[2], dm_ptr[2], "prob", out_dims, 2);

    Onnx__GraphProto graph;
    onnx__graph_proto__init(&graph);
    graph.name = (char *)s->name;
    graph.n_node = o.n_nodes;
    graph.node = o.node_ptr;
    graph.n_initializer = o.n_tensors;
    graph.initializer = o.tensor_ptr;
    graph.n_input = 1;
    graph.input = &vin_ptr;
    graph.n_output = 2;
    graph.output = vout_ptr;

    /* Metadata: what a runtime needs to feed the net the right pixels. */
    char hash_hex[2 * MODEL_HASH_BYTES + 1], mean[96], scale[32], stored[16];
    model_hash_hex(mf->hash, hash_hex);
    const model_norm_t *nm = &mf->norm;
    snprintf(mean, sizeof mean, "%s %.4f,%.4f,%.4f",
             nm->mean_kind == MODEL_MEAN_IMAGE   ? "image"
             : nm->mean_kind == MODEL_MEAN_PIXEL ? "pixel"
                                                 : "none",
             (double)nm->mean_pixel[0], (double)nm->mean_pixel[1], (double)nm->mean_pixel[2]);
    snprintf(scale, sizeof scale, "%.9g", (double)nm->scale);
    snprintf(stored, sizeof stored, "%d", nm->stored_size);
    Onnx__StringStringEntryProto meta[6 + MODEL_MAX_LAYERS], *meta_ptr[6 + MODEL_MAX_LAYERS];
    char alpha_kv[MODEL_MAX_LAYERS][2][48];
    int n_meta = 6;
    for (int i = 0; i < s->n_layers; i++) {
        const model_layer_spec_t *l = &s->layer[i];
        if (l->kind != MODEL_LRN || l->lrn.alpha_mode != MODEL_LRN_ALPHA_PAPER) continue;
        snprintf(alpha_kv[i][0], sizeof alpha_kv[i][0], "%s%.16s", PAPER_ALPHA_KEY, l->name);
        snprintf(alpha_kv[i][1], sizeof alpha_kv[i][1], "%.9g", (double)l->lrn.alpha);
        onnx__string_string_entry_proto__init(&meta[n_meta]);
        meta[n_meta].key = alpha_kv[i][0];
        meta[n_meta].value = alpha_kv[i][1];
        meta_ptr[n_meta] = &meta[n_meta];
        n_meta++;
    }
    const char *kv[6][2] = {
        {"imgret.content_hash", hash_hex},
        {"imgret.channel_order", nm->channel_order == MODEL_CHANNELS_BGR ? "BGR" : "RGB"},
        {"imgret.mean", mean},
        {"imgret.scale", scale},
        {"imgret.stored_size", stored},
        {"imgret.source", mf->source}};
    for (int i = 0; i < 6; i++) {
        onnx__string_string_entry_proto__init(&meta[i]);
        meta[i].key = (char *)kv[i][0];
        meta[i].value = (char *)kv[i][1];
        meta_ptr[i] = &meta[i];
    }
    Onnx__OperatorSetIdProto os, *os_ptr = &os;
    onnx__operator_set_id_proto__init(&os);
    os.domain = "";
    os.has_version = 1;
    os.version = opset;
    Onnx__ModelProto model;
    onnx__model_proto__init(&model);
    model.has_ir_version = 1;
    model.ir_version = opset >= 12 ? 7 : 4; /* the IR versions released with opsets 12 and 9 */
    model.n_opset_import = 1;
    model.opset_import = &os_ptr;
    model.producer_name = "imgret";
    model.producer_version = "0.1";
    model.graph = &graph;
    model.n_metadata_props = (size_t)n_meta;
    model.metadata_props = meta_ptr;

    ix_writer_t w;
    if (ix_writer_open(&w, path, err)) goto out;
    ix_writer_pack(&w, &model.base);
    rc = ix_writer_commit(&w, err);
    goto out;
oom:
    util_fail(err, "onnx export: out of memory");
out:
    for (size_t i = 0; o.owned && i < o.n_owned; i++)
        free(o.owned[i]);
    free(o.owned);
    free(dims);
    free(o.tensor_ptr);
    free(o.tensors);
    free(o.strings);
    free(o.ints);
    free(o.attr_ptr);
    free(o.attrs);
    free(o.node_ptr);
    free(o.nodes);
    free(ratios);
    return rc;
}
