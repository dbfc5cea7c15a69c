/* The network: a plain array of layers walked in order (forward) and in
 * reverse (backward), each layer's work done by the backend. */
#include "model/backend.h"
#include "model/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct layer_state {
    model_shape_t in, out; /* at max_batch */
    float *y;              /* output, max_batch * out */
    float *aux;            /* LRN scale / dropout mask */
    int32_t *argmax;       /* maxpool */
    int weight, bias;      /* param indices, -1 when none */
} layer_state_t;

struct model_net {
    model_spec_t spec;
    int max_batch, n; /* n: batch of the last forward */
    int trained;      /* last forward kept training state */
    model_backend_t *be;
    layer_state_t layer[MODEL_MAX_LAYERS];
    int n_params;
    model_param_t param[2 * MODEL_MAX_LAYERS];
    float *input;        /* copy of the last forward's input */
    float *grad[2];      /* ping-pong buffers for activation gradients */
    float *probs;        /* softmax of the last backward */
    util_rng_t rng;
};

static model_shape_t at_batch(model_shape_t s, int n) {
    s.n = n;
    return s;
}

static size_t per_image(model_shape_t s) {
    return (size_t)s.c * s.h * s.w;
}

static int add_param(model_net_t *net, int layer, const char *what, int ndim, const int *dims,
                     util_err_t *err) {
    model_param_t *p = &net->param[net->n_params];
    memset(p, 0, sizeof *p);
    char lname[sizeof net->spec.layer[layer].name];
    memcpy(lname, net->spec.layer[layer].name, sizeof lname);
    lname[sizeof lname - 1] = '\0';
    snprintf(p->name, sizeof p->name, "%s.%s", lname, what);
    p->layer = layer;
    p->ndim = ndim;
    p->count = 1;
    for (int d = 0; d < ndim; d++) {
        p->dims[d] = dims[d];
        p->count *= (size_t)dims[d];
    }
    const model_backend_ops_t *ops = net->be->ops;
    p->data = ops->alloc(net->be, p->count);
    p->grad = ops->alloc(net->be, p->count);
    p->momentum = ops->alloc(net->be, p->count);
    if (!p->data || !p->grad || !p->momentum) {
        ops->release(net->be, p->data);
        ops->release(net->be, p->grad);
        ops->release(net->be, p->momentum);
        return util_fail(err, "%s: out of memory for %zu parameters", p->name, p->count);
    }
    return net->n_params++;
}

model_net_t *model_net_create(const model_spec_t *spec, int max_batch, util_err_t *err) {
    model_shape_t shapes[MODEL_MAX_LAYERS];
    if (max_batch < 1 || max_batch > 4096) {
        util_fail(err, "net: batch size %d is not in [1, 4096]", max_batch);
        return NULL;
    }
    if (model_spec_shapes(spec, max_batch, shapes, err)) return NULL;
    model_net_t *net = calloc(1, sizeof *net);
    if (!net) {
        util_fail(err, "net: out of memory");
        return NULL;
    }
    net->spec = *spec;
    net->max_batch = max_batch;
    net->be = model_backend_cpu_create();
    if (!net->be) {
        free(net);
        util_fail(err, "net: cannot create the cpu backend");
        return NULL;
    }
    const model_backend_ops_t *ops = net->be->ops;
    model_shape_t cur = {max_batch, spec->in_c, spec->in_h, spec->in_w};
    size_t biggest = model_shape_count(cur);
    net->input = ops->alloc(net->be, model_shape_count(cur));
    if (!net->input) goto oom;
    for (int i = 0; i < spec->n_layers; i++) {
        const model_layer_spec_t *l = &spec->layer[i];
        layer_state_t *st = &net->layer[i];
        st->in = cur;
        st->out = shapes[i];
        st->weight = st->bias = -1;
        size_t nout = model_shape_count(st->out);
        if (nout > biggest) biggest = nout;
        st->y = ops->alloc(net->be, nout);
        if (!st->y) goto oom;
        if (l->kind == MODEL_LRN || l->kind == MODEL_DROPOUT) {
            st->aux = ops->alloc(net->be, nout);
            if (!st->aux) goto oom;
        } else if (l->kind == MODEL_MAXPOOL) {
            st->argmax = ops->alloc(net->be, nout);
            if (!st->argmax) goto oom;
        } else if (l->kind == MODEL_CONV) {
            int dims[4] = {l->out, cur.c / l->groups, l->kernel, l->kernel};
            if ((st->weight = add_param(net, i, "weight", 4, dims, err)) < 0 ||
                (st->bias = add_param(net, i, "bias", 1, &l->out, err)) < 0)
                goto fail;
        } else if (l->kind == MODEL_FC) {
            int dims[2] = {l->out, (int)per_image(cur)};
            if ((st->weight = add_param(net, i, "weight", 2, dims, err)) < 0 ||
                (st->bias = add_param(net, i, "bias", 1, &l->out, err)) < 0)
                goto fail;
        }
        cur = st->out;
    }
    net->grad[0] = ops->alloc(net->be, biggest);
    net->grad[1] = ops->alloc(net->be, biggest);
    net->probs = ops->alloc(net->be, model_shape_count(cur));
    if (!net->grad[0] || !net->grad[1] || !net->probs) goto oom;
    util_rng_seed(&net->rng, 0);
    return net;
oom:
    util_fail(err, "net: out of memory for batch %d", max_batch);
fail:
    model_net_free(net);
    return NULL;
}

void model_net_free(model_net_t *net) {
    if (!net) return;
    model_backend_t *be = net->be;
    const model_backend_ops_t *ops = be->ops;
    for (int i = 0; i < net->spec.n_layers; i++) {
        ops->release(be, net->layer[i].y);
        ops->release(be, net->layer[i].aux);
        ops->release(be, net->layer[i].argmax);
    }
    for (int i = 0; i < net->n_params; i++) {
        ops->release(be, net->param[i].data);
        ops->release(be, net->param[i].grad);
        ops->release(be, net->param[i].momentum);
    }
    ops->release(be, net->input);
    ops->release(be, net->grad[0]);
    ops->release(be, net->grad[1]);
    ops->release(be, net->probs);
    ops->destroy(be);
    free(net);
}

const model_spec_t *model_net_spec(const model_net_t *net) {
    return &net->spec;
}

int model_net_max_batch(const model_net_t *net) {
    return net->max_batch;
}

void model_net_init(model_net_t *net, uint64_t seed) {
    util_rng_t rng;
    util_rng_seed(&rng, seed);
    for (int i = 0; i < net->n_params; i++) {
        model_param_t *p = &net->param[i];
        const model_layer_spec_t *l = &net->spec.layer[p->layer];
        int is_bias = p == &net->param[net->layer[p->layer].bias];
        /* Host-side fill: parameters of the CPU backend are host memory. */
        for (size_t j = 0; j < p->count; j++)
            p->data[j] = is_bias ? l->bias_init : (float)(util_rng_normal(&rng) * l->weight_std);
        memset(p->momentum, 0, p->count * sizeof(float));
        memset(p->grad, 0, p->count * sizeof(float));
    }
    util_rng_seed(&net->rng, seed ^ 0x64726f706f7574ULL); /* "dropout" */
}

void model_net_seed_dropout(model_net_t *net, uint64_t seed) {
    util_rng_seed(&net->rng, seed);
}

util_rng_t *model_net_rng(model_net_t *net) {
    return &net->rng;
}

int model_net_n_params(const model_net_t *net) {
    return net->n_params;
}

model_param_t *model_net_param(model_net_t *net, int i) {
    return i >= 0 && i < net->n_params ? &net->param[i] : NULL;
}

model_param_t *model_net_find_param(model_net_t *net, const char *name) {
    for (int i = 0; i < net->n_params; i++)
        if (strcmp(net->param[i].name, name) == 0) return &net->param[i];
    return NULL;
}

size_t model_net_param_total(const model_net_t *net) {
    size_t total = 0;
    for (int i = 0; i < net->n_params; i++) total += net->param[i].count;
    return total;
}

int model_net_forward(model_net_t *net, const float *x, int n, int train, util_err_t *err) {
    if (!net || !x) return util_fail(err, "forward: NULL net or input");
    if (n < 1 || n > net->max_batch)
        return util_fail(err, "forward: batch of %d images, this net takes 1 to %d", n,
                         net->max_batch);
    model_backend_t *be = net->be;
    const model_backend_ops_t *ops = be->ops;
    net->n = 0; /* invalid until this pass completes */
    model_shape_t in0 = {n, net->spec.in_c, net->spec.in_h, net->spec.in_w};
    if (ops->upload(be, net->input, x, model_shape_count(in0)))
        return util_fail(err, "forward: cannot copy the input to the %s backend", ops->name);
    const float *cur = net->input;
    for (int i = 0; i < net->spec.n_layers; i++) {
        const model_layer_spec_t *l = &net->spec.layer[i];
        layer_state_t *st = &net->layer[i];
        model_shape_t in = at_batch(st->in, n);
        size_t count = model_shape_count(in);
        int rc = 0;
        switch (l->kind) {
        case MODEL_CONV: {
            model_conv_param_t p = {in.c, l->out, l->kernel, l->stride, l->pad, l->groups};
            rc = ops->conv_forward(be, &p, in, cur, net->param[st->weight].data,
                                   net->param[st->bias].data, st->y, err);
            break;
        }
        case MODEL_RELU:
            ops->relu_forward(be, count, cur, st->y);
            break;
        case MODEL_LRN:
            rc = ops->lrn_forward(be, &l->lrn, in, cur, st->y, st->aux, err);
            break;
        case MODEL_MAXPOOL: {
            model_pool_param_t p = {l->kernel, l->stride, l->pad, l->ceil_mode};
            rc = ops->pool_forward(be, &p, in, cur, st->y, st->argmax, err);
            break;
        }
        case MODEL_FC: {
            model_fc_param_t p = {(int)per_image(in), l->out};
            rc = ops->fc_forward(be, &p, n, cur, net->param[st->weight].data,
                                 net->param[st->bias].data, st->y, err);
            break;
        }
        case MODEL_DROPOUT:
            if (train)
                rc = ops->dropout_forward(be, l->dropout, count, cur, st->y, st->aux, &net->rng,
                                          err);
            else
                ops->copy(be, st->y, cur, count);
            break;
        }
        if (rc) return util_fail_prefix(err, "forward, layer %s", l->name);
        cur = st->y;
    }
    net->n = n;
    net->trained = train;
    return 0;
}

const float *model_net_output(const model_net_t *net, int layer, model_shape_t *shape) {
    if (!net || layer < 0 || layer >= net->spec.n_layers) return NULL;
    if (shape) *shape = at_batch(net->layer[layer].out, net->n);
    return net->layer[layer].y;
}

const float *model_net_logits(const model_net_t *net, model_shape_t *shape) {
    return model_net_output(net, net->spec.n_layers - 1, shape);
}

int model_net_backward(model_net_t *net, const int *labels, float *loss, float *probs,
                       util_err_t *err) {
    if (!net || !labels || !loss) return util_fail(err, "backward: NULL net, labels or loss");
    if (net->n < 1 || !net->trained)
        return util_fail(err, "backward: needs a completed forward pass with train=1 first");
    model_backend_t *be = net->be;
    const model_backend_ops_t *ops = be->ops;
    const int n = net->n, last = net->spec.n_layers - 1;
    const int classes = net->layer[last].out.c;
    /* The loss runs on host memory (n x classes floats: negligible). */
    if (model_softmax_xent(n, classes, net->layer[last].y, labels, net->probs, net->grad[0], loss,
                           err))
        return util_fail_prefix(err, "backward, loss");
    if (probs) memcpy(probs, net->probs, sizeof(float) * (size_t)n * classes);
    int g = 0; /* net->grad[g] holds dL/d(output of layer i) */
    for (int i = last; i >= 0; i--) {
        const model_layer_spec_t *l = &net->spec.layer[i];
        layer_state_t *st = &net->layer[i];
        model_shape_t in = at_batch(st->in, n);
        size_t count = model_shape_count(in);
        const float *x = i > 0 ? net->layer[i - 1].y : net->input;
        const float *dy = net->grad[g];
        float *dx = i > 0 ? net->grad[1 - g] : NULL; /* the input needs no gradient */
        int rc = 0;
        switch (l->kind) {
        case MODEL_CONV: {
            model_conv_param_t p = {in.c, l->out, l->kernel, l->stride, l->pad, l->groups};
            rc = ops->conv_backward(be, &p, in, x, net->param[st->weight].data, dy, dx,
                                    net->param[st->weight].grad, net->param[st->bias].grad, err);
            break;
        }
        case MODEL_RELU:
            if (dx) ops->relu_backward(be, count, st->y, dy, dx);
            break;
        case MODEL_LRN:
            if (dx) rc = ops->lrn_backward(be, &l->lrn, in, x, st->y, st->aux, dy, dx, err);
            break;
        case MODEL_MAXPOOL: {
            model_pool_param_t p = {l->kernel, l->stride, l->pad, l->ceil_mode};
            if (dx) rc = ops->pool_backward(be, &p, in, dy, st->argmax, dx, err);
            break;
        }
        case MODEL_FC: {
            model_fc_param_t p = {(int)per_image(in), l->out};
            rc = ops->fc_backward(be, &p, n, x, net->param[st->weight].data, dy, dx,
                                  net->param[st->weight].grad, net->param[st->bias].grad, err);
            break;
        }
        case MODEL_DROPOUT:
            if (dx) ops->dropout_backward(be, count, st->aux, dy, dx);
            break;
        }
        if (rc) return util_fail_prefix(err, "backward, layer %s", l->name);
        g = 1 - g;
    }
    return 0;
}

void model_net_sgd_step(model_net_t *net, const model_sgd_t *sgd) {
    for (int i = 0; i < net->n_params; i++) {
        model_param_t *p = &net->param[i];
        net->be->ops->sgd_update(net->be, p->count, p->data, p->grad, p->momentum, sgd);
    }
}
