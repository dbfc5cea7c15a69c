/* The network: a plain array of layers walked in order (forward) and in
 * reverse (backward), each layer's work done by a backend, on one device or
 * spread over several.
 *
 * Placement. Every activation tensor (n, C, h, w) is held by the devices as
 * parts: device d holds images [b0, b1) and channels [c0, c1) of it, laid
 * out (b1-b0, c1-c0, h, w). On one device, and in data parallelism, a device
 * holds every channel (and, in data parallelism, a slice of the batch). In
 * the columns split (the paper's two GPUs) a device holds every image and
 * the channels [C*d/D, C*(d+1)/D). Parameters follow the outputs: a device
 * holds the rows (output channels or units) [out*d/D, out*(d+1)/D) of each
 * weight and bias, or all of them in data parallelism. A layer then runs on
 * each device with the same kernels as on one device, over its part:
 *   local  - ReLU, pooling, dropout, and a conv whose groups divide among the
 *            devices: reads its own channels only;
 *   gather - a conv with one group and every fc: reads all channels of its
 *            input (gathered from the other devices) and computes its own
 *            outputs; backward, the partial gradients of the whole input are
 *            summed over the devices (reduce) and each keeps its channels;
 *   halo   - LRN: reads its channels plus size/2 neighbours on each side.
 * The host holds the model's view: parameters (merged from the devices'
 * slices, split again on the way back), the logits for the loss, and
 * dropout masks drawn in the one-device order, so every placement computes
 * the same numbers. Each device runs on its own thread; layers are
 * separated by a barrier (the exchange points of the paper). */
#include "model/backend.h"
#include "model/internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

enum { MODE_LOCAL = 0, MODE_GATHER, MODE_HALO };
enum { SRC_Y = 0, SRC_AUX, SRC_GRAD };
enum { PARAMS_SYNC = 0, PARAMS_HOST_NEWER, PARAMS_DEVICE_NEWER };

typedef struct layer_plan {
    model_shape_t in, out; /* whole tensors at max_batch */
    int mode;
    int weight, bias; /* param indices, -1 when none */
} layer_plan_t;

typedef struct dev_layer {
    int c0, c1;      /* output channels held */
    int i0, i1;      /* input channels the kernel reads */
    float *y;        /* output part */
    float *aux;      /* LRN scale / dropout mask */
    int32_t *argmax; /* maxpool */
    float *xg;       /* gathered whole input (gather layers on several columns) */
    float *pdx;      /* partial gradient of the whole input (same) */
} dev_layer_t;

typedef struct dev_param {
    float *data, *grad, *momentum;
    size_t off, count; /* slice of the host parameter */
} dev_param_t;

typedef struct net_dev {
    model_backend_t *be;
    int b0, b1; /* images of the current batch held */
    dev_layer_t layer[MODEL_MAX_LAYERS];
    dev_param_t param[2 * MODEL_MAX_LAYERS];
    float *input;     /* (images, in_c, in_h, in_w): every channel */
    float *grad[2];   /* ping-pong activation gradients, parts like the outputs */
    float *halo[5];   /* LRN with neighbours: x, y, scale, dy, dx */
    float *tmp;       /* reduce: another device's partial gradient */
    float *probs_dev; /* softmax on the device (backends with softmax_xent) */
    util_err_t err;
} net_dev_t;

typedef int (*dev_fn_t)(model_net_t *net, int d, void *ctx, util_err_t *err);

typedef struct team {
    int inited;  /* mutex and condition variables exist */
    int started; /* threads running */
    pthread_t thread[MODEL_MAX_DEVICES];
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned gen;
    int pending, quit, omp_threads;
    dev_fn_t fn;
    void *ctx;
    int rc[MODEL_MAX_DEVICES];
} team_t;

typedef struct worker_arg {
    model_net_t *net;
    int d;
} worker_arg_t;

struct model_net {
    model_spec_t spec;
    model_placement_t pl;
    int nd;       /* devices */
    int columns;  /* several devices, columns split */
    int data;     /* several devices, data parallel */
    int mirrored; /* the host parameters are a copy of the devices' */
    int params_state;
    int max_batch, dev_batch, n; /* n: batch of the last forward */
    int input_n;                 /* images the devices' input buffers hold */
    int trained;                 /* last forward kept training state */
    layer_plan_t plan[MODEL_MAX_LAYERS];
    net_dev_t dev[MODEL_MAX_DEVICES];
    int n_params;
    model_param_t param[2 * MODEL_MAX_LAYERS];
    float *probs;                /* softmax of the last backward (host) */
    float *logits_h, *dlogits_h; /* host copies for the loss (mirrored nets) */
    float *mask_h;               /* dropout mask of a whole layer (several devices) */
    float *zeros_h;              /* for clearing a device's gradients */
    float *out_h[MODEL_MAX_LAYERS];
    int broken; /* an SGD step could not reach the devices */
    util_err_t broken_err;
    model_allreduce_t *allreduce; /* data parallelism: the gradient sum */
    int timing;                   /* per-layer timing on */
    double fwd_s[MODEL_MAX_LAYERS], bwd_s[MODEL_MAX_LAYERS]; /* its totals */
    util_rng_t rng;
    team_t team;
    worker_arg_t warg[MODEL_MAX_DEVICES];
};

static model_shape_t at_batch(model_shape_t s, int n) {
    s.n = n;
    return s;
}

static size_t per_image(model_shape_t s) {
    return (size_t)s.c * s.h * s.w;
}

static size_t hw_of(model_shape_t s) {
    return (size_t)s.h * s.w;
}

static int split(int total, int d, int nd) {
    return (int)((long long)total * d / nd);
}

/* ------------------------------------------------------------ device team */

static void *team_worker(void *arg) {
    worker_arg_t *wa = arg;
    model_net_t *net = wa->net;
    team_t *t = &net->team;
    const int d = wa->d;
#ifdef _OPENMP
    omp_set_num_threads(t->omp_threads);
#endif
    unsigned seen = 0;
    pthread_mutex_lock(&t->mu);
    for (;;) {
        while (t->gen == seen && !t->quit)
            pthread_cond_wait(&t->go, &t->mu);
        if (t->quit) break;
        seen = t->gen;
        dev_fn_t fn = t->fn;
        void *ctx = t->ctx;
        pthread_mutex_unlock(&t->mu);
        int rc = fn(net, d, ctx, &net->dev[d].err);
        pthread_mutex_lock(&t->mu);
        t->rc[d] = rc;
        if (--t->pending == 0) pthread_cond_signal(&t->done);
    }
    pthread_mutex_unlock(&t->mu);
    return NULL;
}

static int team_start(model_net_t *net, util_err_t *err) {
    team_t *t = &net->team;
    if (pthread_mutex_init(&t->mu, NULL)) return util_fail(err, "net: cannot create a mutex");
    if (pthread_cond_init(&t->go, NULL) || pthread_cond_init(&t->done, NULL)) {
        pthread_mutex_destroy(&t->mu);
        return util_fail(err, "net: cannot create a condition variable");
    }
    t->inited = 1;
    int threads = util_num_threads() / net->nd;
    t->omp_threads = threads < 1 ? 1 : threads;
    t->started = 0;
    for (int d = 0; d < net->nd; d++) {
        net->warg[d] = (worker_arg_t){net, d};
        if (pthread_create(&t->thread[d], NULL, team_worker, &net->warg[d]))
            return util_fail(err, "net: cannot start the thread of device %d", d);
        t->started++;
    }
    return 0;
}

static void team_stop(model_net_t *net) {
    team_t *t = &net->team;
    if (!t->inited) return;
    pthread_mutex_lock(&t->mu);
    t->quit = 1;
    pthread_cond_broadcast(&t->go);
    pthread_mutex_unlock(&t->mu);
    for (int d = 0; d < t->started; d++)
        pthread_join(t->thread[d], NULL);
    pthread_cond_destroy(&t->go);
    pthread_cond_destroy(&t->done);
    pthread_mutex_destroy(&t->mu);
}

/* Runs fn on every device at once and waits for all: a barrier. */
static int team_run(model_net_t *net, dev_fn_t fn, void *ctx, util_err_t *err) {
    if (net->nd == 1) return fn(net, 0, ctx, err);
    team_t *t = &net->team;
    pthread_mutex_lock(&t->mu);
    t->fn = fn;
    t->ctx = ctx;
    t->pending = net->nd;
    t->gen++;
    pthread_cond_broadcast(&t->go);
    while (t->pending > 0)
        pthread_cond_wait(&t->done, &t->mu);
    pthread_mutex_unlock(&t->mu);
    for (int d = 0; d < net->nd; d++)
        if (t->rc[d]) {
            util_fail(err, "%s", net->dev[d].err.msg);
            return util_fail_prefix(err, "device %d", d);
        }
    return 0;
}

/* --------------------------------------------------------------- copies */

/* count floats from device `from` to device `to`. */
static int xfer(model_net_t *net, int to, float *dst, int from, const float *src, size_t count,
                util_err_t *err) {
    net_dev_t *a = &net->dev[to], *b = &net->dev[from];
    if (to == from) {
        a->be->ops->copy(a->be, dst, src, count);
        return 0;
    }
    if (a->be->ops->copy_between(a->be, dst, b->be, src, count))
        return util_fail(err, "cannot copy %zu floats from device %d to device %d", count, from,
                         to);
    return 0;
}

static const float *part_buffer(model_net_t *net, int s, int layer, int which, int g) {
    net_dev_t *v = &net->dev[s];
    return which == SRC_Y ? v->layer[layer].y : which == SRC_AUX ? v->layer[layer].aux : v->grad[g];
}

/* Channels [k0, k1) of every image of layer `layer`'s output (or aux, or
 * output gradient grad[g]) from the devices holding them into dst on device
 * `to`, laid out (images, k1-k0, h, w). Columns only: all hold every image. */
static int gather(model_net_t *net, int to, float *dst, int layer, int which, int g, int k0, int k1,
                  int images, util_err_t *err) {
    const size_t hw = hw_of(net->plan[layer].out);
    const int width = k1 - k0;
    for (int s = 0; s < net->nd; s++) {
        const dev_layer_t *L = &net->dev[s].layer[layer];
        int a = L->c0 > k0 ? L->c0 : k0, b = L->c1 < k1 ? L->c1 : k1;
        if (a >= b) continue;
        const float *src = part_buffer(net, s, layer, which, g);
        const int held = L->c1 - L->c0;
        for (int i = 0; i < images; i++)
            if (xfer(net, to, dst + ((size_t)i * width + (a - k0)) * hw, s,
                     src + ((size_t)i * held + (a - L->c0)) * hw, (size_t)(b - a) * hw, err))
                return -1;
    }
    return 0;
}

/* Between a whole host tensor (n, C, hw) and device d's part of it. */
static int part_io(model_net_t *net, int d, int up, float *part, float *host, int C, size_t hw,
                   int c0, int c1, util_err_t *err) {
    net_dev_t *v = &net->dev[d];
    const model_backend_ops_t *ops = v->be->ops;
    const int images = v->b1 - v->b0;
    const size_t row = (size_t)(c1 - c0) * hw;
    int rc = 0;
    if (c0 == 0 && c1 == C) {
        float *h = host + (size_t)v->b0 * C * hw;
        rc = up ? ops->upload(v->be, part, h, row * images)
                : ops->download(v->be, h, part, row * images);
    } else {
        for (int i = 0; i < images && !rc; i++) {
            float *h = host + ((size_t)(v->b0 + i) * C + c0) * hw;
            rc = up ? ops->upload(v->be, part + row * i, h, row)
                    : ops->download(v->be, h, part + row * i, row);
        }
    }
    if (rc) return util_fail(err, "cannot copy %s device %d", up ? "to" : "from", d);
    return 0;
}

/* ----------------------------------------------------------- parameters */

static int params_to_host(model_net_t *net, util_err_t *err) {
    if (!net->mirrored || net->params_state != PARAMS_DEVICE_NEWER) return 0;
    const int from = net->columns ? net->nd : 1; /* data parallel: every device is equal */
    for (int i = 0; i < net->n_params; i++) {
        model_param_t *p = &net->param[i];
        for (int d = 0; d < from; d++) {
            net_dev_t *v = &net->dev[d];
            const dev_param_t *q = &v->param[i];
            const model_backend_ops_t *ops = v->be->ops;
            if (ops->download(v->be, p->data + q->off, q->data, q->count) ||
                ops->download(v->be, p->grad + q->off, q->grad, q->count) ||
                ops->download(v->be, p->momentum + q->off, q->momentum, q->count))
                return util_fail(err, "%s: cannot copy from device %d", p->name, d);
        }
    }
    net->params_state = PARAMS_SYNC;
    return 0;
}

static int params_to_devices(model_net_t *net, util_err_t *err) {
    if (net->broken) return util_fail(err, "%s", net->broken_err.msg);
    if (!net->mirrored || net->params_state != PARAMS_HOST_NEWER) return 0;
    for (int i = 0; i < net->n_params; i++) {
        model_param_t *p = &net->param[i];
        for (int d = 0; d < net->nd; d++) {
            net_dev_t *v = &net->dev[d];
            const dev_param_t *q = &v->param[i];
            const model_backend_ops_t *ops = v->be->ops;
            if (ops->upload(v->be, q->data, p->data + q->off, q->count) ||
                ops->upload(v->be, q->grad, p->grad + q->off, q->count) ||
                ops->upload(v->be, q->momentum, p->momentum + q->off, q->count))
                return util_fail(err, "%s: cannot copy to device %d", p->name, d);
        }
    }
    net->params_state = PARAMS_SYNC;
    return 0;
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
    const int idx = net->n_params++; /* counted now so that free releases a partial one */
    const size_t per_row = p->count / (size_t)dims[0];
    for (int d = 0; d < net->nd; d++) {
        net_dev_t *v = &net->dev[d];
        dev_param_t *q = &v->param[idx];
        int r0 = net->columns ? split(dims[0], d, net->nd) : 0;
        int r1 = net->columns ? split(dims[0], d + 1, net->nd) : dims[0];
        q->off = (size_t)r0 * per_row;
        q->count = (size_t)(r1 - r0) * per_row;
        const model_backend_ops_t *ops = v->be->ops;
        q->data = ops->alloc(v->be, q->count);
        q->grad = ops->alloc(v->be, q->count);
        q->momentum = ops->alloc(v->be, q->count);
        if (!q->data || !q->grad || !q->momentum)
            return util_fail(err, "%s: out of memory for %zu parameters on device %d", p->name,
                             q->count, d);
    }
    if (!net->mirrored) {
        p->data = net->dev[0].param[idx].data;
        p->grad = net->dev[0].param[idx].grad;
        p->momentum = net->dev[0].param[idx].momentum;
    } else {
        p->data = calloc(p->count, sizeof(float));
        p->grad = calloc(p->count, sizeof(float));
        p->momentum = calloc(p->count, sizeof(float));
        if (!p->data || !p->grad || !p->momentum)
            return util_fail(err, "%s: out of memory for %zu parameters", p->name, p->count);
    }
    return idx;
}

/* ------------------------------------------------------------- creation */

/* The layer modes of the columns split, and the checks that make it exact. */
static int plan_columns(model_net_t *net, util_err_t *err) {
    const int nd = net->nd;
    for (int i = 0; i < net->spec.n_layers; i++) {
        const model_layer_spec_t *l = &net->spec.layer[i];
        layer_plan_t *P = &net->plan[i];
        if (P->out.c < nd)
            return util_fail(err, "layer %s has %d channels, fewer than the %d devices", l->name,
                             P->out.c, nd);
        if (l->kind == MODEL_FC || (l->kind == MODEL_CONV && l->groups == 1))
            P->mode = MODE_GATHER;
        else if (l->kind == MODEL_CONV && l->groups % nd != 0)
            return util_fail(err, "layer %s has %d groups, which %d devices cannot share", l->name,
                             l->groups, nd);
        else if (l->kind == MODEL_LRN)
            P->mode = MODE_HALO;
        else
            P->mode = MODE_LOCAL;
        if (i == 0 && P->mode != MODE_GATHER)
            return util_fail(err,
                             "the columns split needs a conv with one group or an fc first, "
                             "not %s",
                             l->name);
    }
    return 0;
}

static int alloc_into(net_dev_t *v, void *pp, size_t count) {
    void **p = pp;
    if (count == 0) return 0;
    *p = v->be->ops->alloc(v->be, count);
    return *p ? 0 : -1;
}

static int create_device(model_net_t *net, int d, util_err_t *err) {
    net_dev_t *v = &net->dev[d];
    const model_spec_t *spec = &net->spec;
    const int mb = net->dev_batch;
    size_t biggest = 0, halo = 0;
    if (alloc_into(v, &v->input, (size_t)mb * spec->in_c * spec->in_h * spec->in_w)) goto oom;
    for (int i = 0; i < spec->n_layers; i++) {
        const model_layer_spec_t *l = &spec->layer[i];
        const layer_plan_t *P = &net->plan[i];
        dev_layer_t *L = &v->layer[i];
        const int C = P->out.c, Cin = P->in.c;
        L->c0 = net->columns ? split(C, d, net->nd) : 0;
        L->c1 = net->columns ? split(C, d + 1, net->nd) : C;
        int p0 = i ? v->layer[i - 1].c0 : 0, p1 = i ? v->layer[i - 1].c1 : Cin;
        if (P->mode == MODE_GATHER) {
            L->i0 = 0;
            L->i1 = Cin;
        } else if (P->mode == MODE_HALO) {
            /* size/2 neighbours make the output exact; size-1 make the
             * backward exact also where a backend recomputes the scale
             * from x (cuDNN) instead of reading it. */
            int h = l->lrn.size - 1;
            L->i0 = p0 - h < 0 ? 0 : p0 - h;
            L->i1 = p1 + h > Cin ? Cin : p1 + h;
        } else {
            L->i0 = p0;
            L->i1 = p1;
        }
        const size_t hw_in = hw_of(P->in), hw_out = hw_of(P->out);
        const size_t nout = (size_t)mb * (L->c1 - L->c0) * hw_out;
        if (nout > biggest) biggest = nout;
        if (alloc_into(v, &L->y, nout)) goto oom;
        if (l->kind == MODEL_LRN || l->kind == MODEL_DROPOUT) {
            if (alloc_into(v, &L->aux, nout)) goto oom;
        } else if (l->kind == MODEL_MAXPOOL) {
            if (alloc_into(v, &L->argmax, nout)) goto oom;
        }
        if (P->mode == MODE_GATHER && i > 0 && (p0 != 0 || p1 != Cin)) {
            size_t whole = (size_t)mb * Cin * hw_in;
            if (alloc_into(v, &L->xg, whole) || alloc_into(v, &L->pdx, whole)) goto oom;
        }
        if (P->mode == MODE_HALO && (L->i0 != p0 || L->i1 != p1)) {
            size_t wide = (size_t)mb * (L->i1 - L->i0) * hw_in;
            if (wide > halo) halo = wide;
        }
    }
    if (alloc_into(v, &v->grad[0], biggest) || alloc_into(v, &v->grad[1], biggest)) goto oom;
    for (int k = 0; k < 5; k++)
        if (alloc_into(v, &v->halo[k], halo)) goto oom;
    if (net->columns && alloc_into(v, &v->tmp, biggest)) goto oom;
    if (v->be->ops->softmax_xent && net->nd == 1 &&
        alloc_into(v, &v->probs_dev, model_shape_count(net->plan[spec->n_layers - 1].out)))
        goto oom;
    return 0;
oom:
    return util_fail(err, "net: out of memory on device %d for batch %d", d, net->max_batch);
}

model_net_t *model_net_create_on(const model_spec_t *spec, int max_batch,
                                 const model_placement_t *pl, util_err_t *err) {
    model_shape_t shapes[MODEL_MAX_LAYERS];
    if (max_batch < 1 || max_batch > 4096) {
        util_fail(err, "net: batch size %d is not in [1, 4096]", max_batch);
        return NULL;
    }
    if (!pl || pl->n_devices < 1 || pl->n_devices > MODEL_MAX_DEVICES) {
        util_fail(err, "net: a placement needs 1 to %d devices", MODEL_MAX_DEVICES);
        return NULL;
    }
    if (model_spec_shapes(spec, max_batch, shapes, err)) return NULL;
    model_net_t *net = calloc(1, sizeof *net);
    if (!net) {
        util_fail(err, "net: out of memory");
        return NULL;
    }
    net->spec = *spec;
    net->pl = *pl;
    net->nd = pl->n_devices;
    net->columns = net->nd > 1 && pl->parallel == MODEL_PARALLEL_COLUMNS;
    net->data = net->nd > 1 && pl->parallel == MODEL_PARALLEL_DATA;
    net->max_batch = max_batch;
    net->dev_batch = net->data ? (max_batch + net->nd - 1) / net->nd : max_batch;
    model_shape_t cur = {max_batch, spec->in_c, spec->in_h, spec->in_w};
    for (int i = 0; i < spec->n_layers; i++) {
        net->plan[i].in = cur;
        net->plan[i].out = shapes[i];
        net->plan[i].weight = net->plan[i].bias = -1;
        cur = shapes[i];
    }
    if (net->columns && plan_columns(net, err)) goto fail;
    if (net->data && max_batch < net->nd) {
        util_fail(err, "net: data parallelism over %d devices needs batches of at least %d",
                  net->nd, net->nd);
        goto fail;
    }
    for (int d = 0; d < net->nd; d++) {
        if (!(net->dev[d].be = model_backend_create(&pl->device[d], err))) goto fail;
    }
    net->mirrored = net->nd > 1 || !net->dev[0].be->ops->host_memory;
    for (int d = 0; d < net->nd; d++)
        if (create_device(net, d, err)) goto fail;
    for (int i = 0; i < spec->n_layers; i++) {
        const model_layer_spec_t *l = &spec->layer[i];
        layer_plan_t *P = &net->plan[i];
        if (l->kind == MODEL_CONV) {
            int dims[4] = {l->out, P->in.c / l->groups, l->kernel, l->kernel};
            if ((P->weight = add_param(net, i, "weight", 4, dims, err)) < 0 ||
                (P->bias = add_param(net, i, "bias", 1, &l->out, err)) < 0)
                goto fail;
        } else if (l->kind == MODEL_FC) {
            int dims[2] = {l->out, (int)per_image(P->in)};
            if ((P->weight = add_param(net, i, "weight", 2, dims, err)) < 0 ||
                (P->bias = add_param(net, i, "bias", 1, &l->out, err)) < 0)
                goto fail;
        }
    }
    const size_t logits = model_shape_count(cur);
    net->probs = malloc(logits * sizeof(float));
    if (!net->probs) goto oom;
    if (net->mirrored) {
        net->logits_h = malloc(logits * sizeof(float));
        net->dlogits_h = malloc(logits * sizeof(float));
        if (!net->logits_h || !net->dlogits_h) goto oom;
        size_t mask = 0, zeros = 0;
        for (int i = 0; i < spec->n_layers; i++)
            if (spec->layer[i].kind == MODEL_DROPOUT && model_shape_count(net->plan[i].out) > mask)
                mask = model_shape_count(net->plan[i].out);
        for (int i = 0; i < net->n_params; i++)
            if (net->param[i].count > zeros) zeros = net->param[i].count;
        if (net->nd > 1 && mask && !(net->mask_h = malloc(mask * sizeof(float)))) goto oom;
        if (net->data && !(net->zeros_h = calloc(zeros, sizeof(float)))) goto oom;
    }
    if (net->data) {
        model_backend_t *bes[MODEL_MAX_DEVICES];
        size_t biggest = 0;
        for (int d = 0; d < net->nd; d++)
            bes[d] = net->dev[d].be;
        for (int i = 0; i < net->n_params; i++)
            if (net->param[i].count > biggest) biggest = net->param[i].count;
        if (!(net->allreduce = bes[0]->ops->allreduce_create(bes, net->nd, biggest, err)))
            goto fail;
    }
    if (net->nd > 1 && team_start(net, err)) goto fail;
    util_rng_seed(&net->rng, 0);
    return net;
oom:
    util_fail(err, "net: out of memory for batch %d", max_batch);
fail:
    model_net_free(net);
    return NULL;
}

model_net_t *model_net_create(const model_spec_t *spec, int max_batch, util_err_t *err) {
    model_placement_t pl = model_placement_cpu();
    return model_net_create_on(spec, max_batch, &pl, err);
}

void model_net_free(model_net_t *net) {
    if (!net) return;
    team_stop(net);
    if (net->allreduce) net->allreduce->destroy(net->allreduce);
    for (int d = 0; d < net->nd; d++) {
        net_dev_t *v = &net->dev[d];
        model_backend_t *be = v->be;
        if (!be) continue;
        const model_backend_ops_t *ops = be->ops;
        for (int i = 0; i < net->spec.n_layers; i++) {
            dev_layer_t *L = &v->layer[i];
            ops->release(be, L->y);
            ops->release(be, L->aux);
            ops->release(be, L->argmax);
            ops->release(be, L->xg);
            ops->release(be, L->pdx);
        }
        for (int i = 0; i < net->n_params; i++) {
            ops->release(be, v->param[i].data);
            ops->release(be, v->param[i].grad);
            ops->release(be, v->param[i].momentum);
        }
        ops->release(be, v->input);
        ops->release(be, v->grad[0]);
        ops->release(be, v->grad[1]);
        for (int k = 0; k < 5; k++)
            ops->release(be, v->halo[k]);
        ops->release(be, v->tmp);
        ops->release(be, v->probs_dev);
        ops->destroy(be);
    }
    if (net->mirrored) {
        for (int i = 0; i < net->n_params; i++) {
            free(net->param[i].data);
            free(net->param[i].grad);
            free(net->param[i].momentum);
        }
    }
    for (int i = 0; i < net->spec.n_layers; i++)
        free(net->out_h[i]);
    free(net->probs);
    free(net->logits_h);
    free(net->dlogits_h);
    free(net->mask_h);
    free(net->zeros_h);
    free(net);
}

const model_spec_t *model_net_spec(const model_net_t *net) {
    return &net->spec;
}

const model_placement_t *model_net_placement(const model_net_t *net) {
    return &net->pl;
}

int model_net_max_batch(const model_net_t *net) {
    return net->max_batch;
}

void model_net_init(model_net_t *net, uint64_t seed) {
    util_rng_t rng;
    util_rng_seed(&rng, seed);
    /* Written on the host (the whole of every parameter), sent to the devices
     * by the next pass. */
    for (int i = 0; i < net->n_params; i++) {
        model_param_t *p = &net->param[i];
        const model_layer_spec_t *l = &net->spec.layer[p->layer];
        int is_bias = i == net->plan[p->layer].bias;
        for (size_t j = 0; j < p->count; j++)
            p->data[j] = is_bias ? l->bias_init : (float)(util_rng_normal(&rng) * l->weight_std);
        memset(p->momentum, 0, p->count * sizeof(float));
        memset(p->grad, 0, p->count * sizeof(float));
    }
    if (net->mirrored) net->params_state = PARAMS_HOST_NEWER;
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
    if (i < 0 || i >= net->n_params) return NULL;
    if (net->mirrored) {
        if (params_to_host(net, &net->broken_err)) return NULL;
        net->params_state = PARAMS_HOST_NEWER;
    }
    return &net->param[i];
}

model_param_t *model_net_find_param(model_net_t *net, const char *name) {
    for (int i = 0; i < net->n_params; i++)
        if (strcmp(net->param[i].name, name) == 0) return model_net_param(net, i);
    return NULL;
}

size_t model_net_param_total(const model_net_t *net) {
    size_t total = 0;
    for (int i = 0; i < net->n_params; i++)
        total += net->param[i].count;
    return total;
}

/* --------------------------------------------------------------- forward */

typedef struct pass_ctx {
    int layer, train, g;
} pass_ctx_t;

/* Channels [c0, c1) of a widened part (images, i1-i0, hw) into dst. */
static void take_own(net_dev_t *v, float *dst, const float *wide, int i0, int i1, int c0, int c1,
                     size_t hw, int images) {
    const size_t row = (size_t)(c1 - c0) * hw;
    for (int i = 0; i < images; i++)
        v->be->ops->copy(v->be, dst + row * i, wide + ((size_t)i * (i1 - i0) + (c0 - i0)) * hw,
                         row);
}

static int forward_layer(model_net_t *net, int d, void *pctx, util_err_t *err) {
    const pass_ctx_t *c = pctx;
    const int i = c->layer;
    net_dev_t *v = &net->dev[d];
    const int images = v->b1 - v->b0;
    if (images == 0) return 0;
    model_backend_t *be = v->be;
    const model_backend_ops_t *ops = be->ops;
    const model_layer_spec_t *l = &net->spec.layer[i];
    const layer_plan_t *P = &net->plan[i];
    dev_layer_t *L = &v->layer[i];
    const float *x = i ? v->layer[i - 1].y : v->input;
    model_shape_t in = {images, L->i1 - L->i0, P->in.h, P->in.w};
    const size_t count = model_shape_count(in);
    int rc = 0;
    if (L->xg) {
        if (gather(net, d, L->xg, i - 1, SRC_Y, 0, 0, P->in.c, images, err)) return -1;
        x = L->xg;
    }
    switch (l->kind) {
    case MODEL_CONV: {
        model_conv_param_t p = {in.c,      L->c1 - L->c0, l->kernel,
                                l->stride, l->pad,        l->groups * in.c / P->in.c};
        rc = ops->conv_forward(be, &p, in, x, v->param[P->weight].data, v->param[P->bias].data,
                               L->y, err);
        break;
    }
    case MODEL_RELU:
        ops->relu_forward(be, count, x, L->y);
        break;
    case MODEL_LRN:
        if (L->i0 != L->c0 || L->i1 != L->c1) {
            const size_t hw = hw_of(P->in);
            if (gather(net, d, v->halo[0], i - 1, SRC_Y, 0, L->i0, L->i1, images, err)) return -1;
            rc = ops->lrn_forward(be, &l->lrn, in, v->halo[0], v->halo[1], v->halo[2], err);
            if (rc == 0) {
                take_own(v, L->y, v->halo[1], L->i0, L->i1, L->c0, L->c1, hw, images);
                take_own(v, L->aux, v->halo[2], L->i0, L->i1, L->c0, L->c1, hw, images);
            }
        } else {
            rc = ops->lrn_forward(be, &l->lrn, in, x, L->y, L->aux, err);
        }
        break;
    case MODEL_MAXPOOL: {
        model_pool_param_t p = {l->kernel, l->stride, l->pad, l->ceil_mode};
        rc = ops->pool_forward(be, &p, in, x, L->y, L->argmax, err);
        break;
    }
    case MODEL_FC: {
        model_fc_param_t p = {(int)per_image(in), L->c1 - L->c0};
        rc = ops->fc_forward(be, &p, images, x, v->param[P->weight].data, v->param[P->bias].data,
                             L->y, err);
        break;
    }
    case MODEL_DROPOUT:
        if (!c->train) {
            ops->copy(be, L->y, x, count);
        } else if (net->nd == 1) {
            rc = ops->dropout_forward(be, l->dropout, count, x, L->y, L->aux, &net->rng, err);
        } else {
            /* The mask the one-device net would draw, cut to this part. */
            if (part_io(net, d, 1, L->aux, net->mask_h, P->out.c, hw_of(P->out), L->c0, L->c1, err))
                return -1;
            ops->mask_multiply(be, count, L->aux, x, L->y);
        }
        break;
    }
    return rc ? util_fail_prefix(err, "layer %s", l->name) : 0;
}

static int forward_pass(model_net_t *net, int n, int train, util_err_t *err);

void model_net_time_layers(model_net_t *net, int on) {
    if (!net) return;
    net->timing = on != 0;
    if (on) {
        memset(net->fwd_s, 0, sizeof net->fwd_s);
        memset(net->bwd_s, 0, sizeof net->bwd_s);
    }
}

const double *model_net_layer_seconds(const model_net_t *net, int backward) {
    return !net ? NULL : backward ? net->bwd_s : net->fwd_s;
}

/* Per-layer timing: waits for every device, adds the time since t0. */
static int add_layer_time(model_net_t *net, double *total, double t0, util_err_t *err) {
    for (int d = 0; d < net->nd; d++) {
        model_backend_t *be = net->dev[d].be;
        if (be->ops->sync && be->ops->sync(be))
            return util_fail(err, "device %d (%s) failed", d, be->ops->name);
    }
    *total += util_now() - t0;
    return 0;
}

int model_net_forward(model_net_t *net, const float *x, int n, int train, util_err_t *err) {
    if (!net || !x) return util_fail(err, "forward: NULL net or input");
    if (n < 1 || n > net->max_batch)
        return util_fail(err, "forward: batch of %d images, this net takes 1 to %d", n,
                         net->max_batch);
    if (params_to_devices(net, err)) return util_fail_prefix(err, "forward");
    net->n = 0;       /* invalid until this pass completes */
    net->input_n = 0; /* and the input until it is all copied */
    const size_t row = (size_t)net->spec.in_c * net->spec.in_h * net->spec.in_w;
    for (int d = 0; d < net->nd; d++) {
        net_dev_t *v = &net->dev[d];
        v->b0 = net->data ? split(n, d, net->nd) : 0;
        v->b1 = net->data ? split(n, d + 1, net->nd) : n;
        if (v->b1 > v->b0 &&
            v->be->ops->upload(v->be, v->input, x + row * v->b0, row * (size_t)(v->b1 - v->b0)))
            return util_fail(err, "forward: cannot copy the input to device %d (%s)", d,
                             v->be->ops->name);
    }
    net->input_n = n;
    return forward_pass(net, n, train, err);
}

int model_net_forward_again(model_net_t *net, int train, util_err_t *err) {
    if (!net) return util_fail(err, "forward again: NULL net");
    if (net->input_n < 1)
        return util_fail(err, "forward again: no images on the devices yet (model_net_forward "
                              "copies them in)");
    if (params_to_devices(net, err)) return util_fail_prefix(err, "forward");
    net->n = 0;
    return forward_pass(net, net->input_n, train, err);
}

/* The layers over the n images the devices hold (b0, b1 set). */
static int forward_pass(model_net_t *net, int n, int train, util_err_t *err) {
    for (int i = 0; i < net->spec.n_layers; i++) {
        const model_layer_spec_t *l = &net->spec.layer[i];
        double t0 = net->timing ? util_now() : 0.0;
        if (l->kind == MODEL_DROPOUT && train && net->nd > 1)
            model_dropout_mask(l->dropout, (size_t)n * per_image(net->plan[i].out), net->mask_h,
                               &net->rng);
        pass_ctx_t c = {i, train, 0};
        if (team_run(net, forward_layer, &c, err)) return util_fail_prefix(err, "forward");
        if (net->timing && add_layer_time(net, &net->fwd_s[i], t0, err))
            return util_fail_prefix(err, "forward, layer %s", l->name);
    }
    net->n = n;
    net->trained = train;
    return 0;
}

const float *model_net_output(const model_net_t *cnet, int layer, model_shape_t *shape) {
    if (!cnet || layer < 0 || layer >= cnet->spec.n_layers) return NULL;
    if (shape) *shape = at_batch(cnet->plan[layer].out, cnet->n);
    if (!cnet->mirrored) return cnet->dev[0].layer[layer].y;
    /* The host copy is a cache: assembling it does not change the net. */
    model_net_t *net = (model_net_t *)cnet;
    const layer_plan_t *P = &net->plan[layer];
    if (!net->out_h[layer] &&
        !(net->out_h[layer] = calloc(model_shape_count(P->out), sizeof(float))))
        return NULL;
    if (net->n > 0)
        for (int d = 0; d < net->nd; d++) {
            const dev_layer_t *L = &net->dev[d].layer[layer];
            if (part_io(net, d, 0, L->y, net->out_h[layer], P->out.c, hw_of(P->out), L->c0, L->c1,
                        NULL))
                return NULL;
        }
    return net->out_h[layer];
}

const float *model_net_logits(const model_net_t *net, model_shape_t *shape) {
    return model_net_output(net, net->spec.n_layers - 1, shape);
}

/* -------------------------------------------------------------- backward */

static int backward_layer(model_net_t *net, int d, void *pctx, util_err_t *err) {
    const pass_ctx_t *c = pctx;
    const int i = c->layer, g = c->g;
    net_dev_t *v = &net->dev[d];
    const int images = v->b1 - v->b0;
    if (images == 0) return 0;
    model_backend_t *be = v->be;
    const model_backend_ops_t *ops = be->ops;
    const model_layer_spec_t *l = &net->spec.layer[i];
    const layer_plan_t *P = &net->plan[i];
    dev_layer_t *L = &v->layer[i];
    model_shape_t in = {images, L->i1 - L->i0, P->in.h, P->in.w};
    const size_t count = model_shape_count(in);
    const float *x = L->xg ? L->xg : i ? v->layer[i - 1].y : v->input;
    const float *dy = v->grad[g];
    float *dx = i > 0 ? v->grad[1 - g] : NULL; /* the input needs no gradient */
    float *dxk = L->pdx && dx ? L->pdx : dx;   /* gather layers: partial, summed later */
    int rc = 0;
    switch (l->kind) {
    case MODEL_CONV: {
        model_conv_param_t p = {in.c,      L->c1 - L->c0, l->kernel,
                                l->stride, l->pad,        l->groups * in.c / P->in.c};
        rc = ops->conv_backward(be, &p, in, x, v->param[P->weight].data, dy, dxk,
                                v->param[P->weight].grad, v->param[P->bias].grad, err);
        break;
    }
    case MODEL_RELU:
        if (dx) ops->relu_backward(be, count, L->y, dy, dx);
        break;
    case MODEL_LRN:
        if (!dx) break;
        if (L->i0 != L->c0 || L->i1 != L->c1) {
            const size_t hw = hw_of(P->in);
            if (gather(net, d, v->halo[0], i - 1, SRC_Y, 0, L->i0, L->i1, images, err) ||
                gather(net, d, v->halo[1], i, SRC_Y, 0, L->i0, L->i1, images, err) ||
                gather(net, d, v->halo[2], i, SRC_AUX, 0, L->i0, L->i1, images, err) ||
                gather(net, d, v->halo[3], i, SRC_GRAD, g, L->i0, L->i1, images, err))
                return -1;
            rc = ops->lrn_backward(be, &l->lrn, in, v->halo[0], v->halo[1], v->halo[2], v->halo[3],
                                   v->halo[4], err);
            if (rc == 0) take_own(v, dx, v->halo[4], L->i0, L->i1, L->c0, L->c1, hw, images);
        } else {
            rc = ops->lrn_backward(be, &l->lrn, in, x, L->y, L->aux, dy, dx, err);
        }
        break;
    case MODEL_MAXPOOL: {
        model_pool_param_t p = {l->kernel, l->stride, l->pad, l->ceil_mode};
        if (dx) rc = ops->pool_backward(be, &p, in, x, L->y, dy, L->argmax, dx, err);
        break;
    }
    case MODEL_FC: {
        model_fc_param_t p = {(int)per_image(in), L->c1 - L->c0};
        rc = ops->fc_backward(be, &p, images, x, v->param[P->weight].data, dy, dxk,
                              v->param[P->weight].grad, v->param[P->bias].grad, err);
        break;
    }
    case MODEL_DROPOUT:
        if (dx) ops->mask_multiply(be, count, L->aux, dy, dx);
        break;
    }
    return rc ? util_fail_prefix(err, "layer %s", l->name) : 0;
}

/* After a gather layer: this device's channels of the input gradient are
 * the sum, in device order, of every device's partial gradient there. */
static int reduce_layer(model_net_t *net, int d, void *pctx, util_err_t *err) {
    const pass_ctx_t *c = pctx;
    const int i = c->layer;
    net_dev_t *v = &net->dev[d];
    const int images = v->b1 - v->b0;
    const layer_plan_t *P = &net->plan[i];
    const dev_layer_t *prev = &v->layer[i - 1];
    const size_t hw = hw_of(P->in), row = (size_t)(prev->c1 - prev->c0) * hw;
    float *dx = v->grad[1 - c->g];
    for (int s = 0; s < net->nd; s++) {
        const float *pdx = net->dev[s].layer[i].pdx;
        float *dst = s == 0 ? dx : v->tmp;
        for (int k = 0; k < images; k++)
            if (xfer(net, d, dst + row * k, s, pdx + ((size_t)k * P->in.c + prev->c0) * hw, row,
                     err))
                return -1;
        if (s > 0) v->be->ops->accumulate(v->be, row * images, v->tmp, dx);
    }
    return 0;
}

/* Data parallelism: every device's gradients become their sum. */
static int allreduce_grads(model_net_t *net, util_err_t *err) {
    for (int d = 0; d < net->nd; d++) {
        net_dev_t *v = &net->dev[d];
        if (v->b1 > v->b0) continue; /* no images this batch: contributes zero */
        for (int i = 0; i < net->n_params; i++)
            if (v->be->ops->upload(v->be, v->param[i].grad, net->zeros_h, v->param[i].count))
                return util_fail(err, "cannot clear the gradients of device %d", d);
    }
    float *bufs[MODEL_MAX_DEVICES];
    for (int i = 0; i < net->n_params; i++) {
        for (int d = 0; d < net->nd; d++)
            bufs[d] = net->dev[d].param[i].grad;
        if (net->allreduce->sum(net->allreduce, bufs, net->param[i].count, err))
            return util_fail_prefix(err, "%s", net->param[i].name);
    }
    return 0;
}

int model_net_backward(model_net_t *net, const int *labels, float *loss, float *probs,
                       util_err_t *err) {
    if (!net || !labels || !loss) return util_fail(err, "backward: NULL net, labels or loss");
    if (net->n < 1 || !net->trained)
        return util_fail(err, "backward: needs a completed forward pass with train=1 first");
    if (params_to_devices(net, err)) return util_fail_prefix(err, "backward");
    const int n = net->n, last = net->spec.n_layers - 1;
    const int classes = net->plan[last].out.c;
    /* The loss runs on host memory (n x classes floats: negligible). */
    net_dev_t *v0 = &net->dev[0];
    if (!net->mirrored) {
        if (model_softmax_xent(n, classes, v0->layer[last].y, labels, net->probs, v0->grad[0], loss,
                               err))
            return util_fail_prefix(err, "backward, loss");
    } else if (net->nd == 1 && v0->be->ops->softmax_xent) {
        /* One GPU: the loss on the device; only the probabilities come back. */
        if (v0->be->ops->softmax_xent(v0->be, n, classes, v0->layer[last].y, labels, v0->probs_dev,
                                      v0->grad[0], loss, err) ||
            v0->be->ops->download(v0->be, net->probs, v0->probs_dev, (size_t)n * classes))
            return util_fail_prefix(err, "backward, loss");
    } else {
        for (int d = 0; d < net->nd; d++) {
            const dev_layer_t *L = &net->dev[d].layer[last];
            if (part_io(net, d, 0, L->y, net->logits_h, classes, 1, L->c0, L->c1, err))
                return util_fail_prefix(err, "backward, logits");
        }
        if (model_softmax_xent(n, classes, net->logits_h, labels, net->probs, net->dlogits_h, loss,
                               err))
            return util_fail_prefix(err, "backward, loss");
        for (int d = 0; d < net->nd; d++) {
            const dev_layer_t *L = &net->dev[d].layer[last];
            if (part_io(net, d, 1, net->dev[d].grad[0], net->dlogits_h, classes, 1, L->c0, L->c1,
                        err))
                return util_fail_prefix(err, "backward, loss gradient");
        }
    }
    if (probs) memcpy(probs, net->probs, sizeof(float) * (size_t)n * classes);
    int g = 0; /* grad[g] holds dL/d(output of layer i) */
    for (int i = last; i >= 0; i--) {
        pass_ctx_t c = {i, 1, g};
        double t0 = net->timing ? util_now() : 0.0;
        if (team_run(net, backward_layer, &c, err)) return util_fail_prefix(err, "backward");
        if (i > 0 && net->dev[0].layer[i].pdx && team_run(net, reduce_layer, &c, err))
            return util_fail_prefix(err, "backward, layer %s", net->spec.layer[i].name);
        if (net->timing && add_layer_time(net, &net->bwd_s[i], t0, err))
            return util_fail_prefix(err, "backward, layer %s", net->spec.layer[i].name);
        g = 1 - g;
    }
    if (net->data && allreduce_grads(net, err)) return util_fail_prefix(err, "backward");
    if (net->mirrored) net->params_state = PARAMS_DEVICE_NEWER;
    return 0;
}

static int sgd_device(model_net_t *net, int d, void *ctx, util_err_t *err) {
    (void)err;
    const model_sgd_t *sgd = ctx;
    net_dev_t *v = &net->dev[d];
    for (int i = 0; i < net->n_params; i++) {
        dev_param_t *q = &v->param[i];
        v->be->ops->sgd_update(v->be, q->count, q->data, q->grad, q->momentum, sgd);
    }
    return 0;
}

void model_net_sgd_step(model_net_t *net, const model_sgd_t *sgd) {
    util_err_t err = {{0}};
    if (params_to_devices(net, &err) || team_run(net, sgd_device, (void *)sgd, &err)) {
        /* Reported by the next pass: this call has no status to return. */
        net->broken = 1;
        net->broken_err = err;
        return;
    }
    if (net->mirrored) net->params_state = PARAMS_DEVICE_NEWER;
}
