/* The CPU backend: OpenBLAS sgemm + OpenMP, host memory. */
#define _DEFAULT_SOURCE /* madvise */
#include "model/backend.h"
#include "model/internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Buffers from this size on (the paper net's fc weights: 151, 67 and 16 MB,
 * and their gradients and momenta) are 2 MB aligned and asked to be backed
 * by transparent huge pages: a batch-1 forward streams all 234 MB of fc
 * weights, 57,000 4 KB pages against 117 huge ones, and was faster so in
 * 6 of 8 alternating runs of bench_alexnet_cpu b1 (medians 12.7 against
 * 14.8 ms on a busy afternoon). Where THP is off, madvise fails and nothing
 * changes. */
#define HUGE_FROM ((size_t)8 << 20)
#define HUGE_ALIGN ((size_t)2 << 20)

typedef struct cpu_backend {
    model_backend_t base;
    model_workspace_t *ws;
} cpu_backend_t;

static model_workspace_t *ws_of(model_backend_t *be) {
    return ((cpu_backend_t *)be)->ws;
}

static void cpu_destroy(model_backend_t *be) {
    if (!be) return;
    model_workspace_free(ws_of(be));
    free(be);
}

static void *cpu_alloc(model_backend_t *be, size_t count) {
    (void)be;
    size_t bytes;
    if (count == 0 || util_mul_size(count, sizeof(float), &bytes)) return NULL;
    void *p = NULL;
    const size_t align = bytes >= HUGE_FROM ? HUGE_ALIGN : 64;
    const size_t rounded = (bytes + align - 1) & ~(align - 1);
    if (posix_memalign(&p, align, rounded)) return NULL;
#ifdef MADV_HUGEPAGE
    if (align == HUGE_ALIGN) (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
    memset(p, 0, bytes);
    return p;
}

static void cpu_release(model_backend_t *be, void *p) {
    (void)be;
    free(p);
}

static int cpu_transfer(model_backend_t *be, float *dst, const float *src, size_t count) {
    (void)be;
    memcpy(dst, src, count * sizeof(float));
    return 0;
}

static int cpu_conv_forward(model_backend_t *be, const model_conv_param_t *p, model_shape_t in,
                            const float *x, const float *w, const float *b, float *y,
                            util_err_t *err) {
    return model_conv_forward(ws_of(be), p, in, x, w, b, y, err);
}

static int cpu_conv_backward(model_backend_t *be, const model_conv_param_t *p, model_shape_t in,
                             const float *x, const float *w, const float *dy, float *dx, float *dw,
                             float *db, util_err_t *err) {
    return model_conv_backward(ws_of(be), p, in, x, w, dy, dx, dw, db, err);
}

static void cpu_relu_forward(model_backend_t *be, size_t count, const float *x, float *y) {
    (void)be;
    model_relu_forward(count, x, y);
}

static void cpu_relu_backward(model_backend_t *be, size_t count, const float *y, const float *dy,
                              float *dx) {
    (void)be;
    model_relu_backward(count, y, dy, dx);
}

static int cpu_lrn_forward(model_backend_t *be, const model_lrn_param_t *p, model_shape_t in,
                           const float *x, float *y, float *scale, util_err_t *err) {
    (void)be;
    return model_lrn_forward(p, in, x, y, scale, err);
}

static int cpu_lrn_backward(model_backend_t *be, const model_lrn_param_t *p, model_shape_t in,
                            const float *x, const float *y, const float *scale, const float *dy,
                            float *dx, util_err_t *err) {
    (void)be;
    return model_lrn_backward(p, in, x, y, scale, dy, dx, err);
}

static int cpu_pool_forward(model_backend_t *be, const model_pool_param_t *p, model_shape_t in,
                            const float *x, float *y, int32_t *argmax, util_err_t *err) {
    (void)be;
    return model_pool_forward(p, in, x, y, argmax, err);
}

static int cpu_pool_backward(model_backend_t *be, const model_pool_param_t *p, model_shape_t in,
                             const float *x, const float *y, const float *dy, const int32_t *argmax,
                             float *dx, util_err_t *err) {
    (void)be;
    (void)x;
    (void)y;
    return model_pool_backward(p, in, dy, argmax, dx, err);
}

static int cpu_fc_forward(model_backend_t *be, const model_fc_param_t *p, int n, const float *x,
                          const float *w, const float *b, float *y, util_err_t *err) {
    (void)be;
    return model_fc_forward(p, n, x, w, b, y, err);
}

static int cpu_fc_backward(model_backend_t *be, const model_fc_param_t *p, int n, const float *x,
                           const float *w, const float *dy, float *dx, float *dw, float *db,
                           util_err_t *err) {
    (void)be;
    return model_fc_backward(p, n, x, w, dy, dx, dw, db, err);
}

static int cpu_dropout_forward(model_backend_t *be, float p, size_t count, const float *x, float *y,
                               float *mask, util_rng_t *rng, util_err_t *err) {
    (void)be;
    return model_dropout_forward(p, count, x, y, mask, rng, err);
}

static void cpu_mask_multiply(model_backend_t *be, size_t count, const float *mask, const float *x,
                              float *y) {
    (void)be;
    for (size_t j = 0; j < count; j++)
        y[j] = x[j] * mask[j];
}

static void cpu_copy(model_backend_t *be, float *dst, const float *src, size_t count) {
    (void)be;
    memcpy(dst, src, count * sizeof(float));
}

static void cpu_accumulate(model_backend_t *be, size_t count, const float *src, float *dst) {
    (void)be;
#pragma omp parallel for simd schedule(static) if (count > 65536)
    for (size_t j = 0; j < count; j++)
        dst[j] += src[j];
}

static void cpu_sgd_update(model_backend_t *be, size_t count, float *w, const float *g, float *v,
                           const model_sgd_t *sgd) {
    (void)be;
    const float mom = sgd->momentum, decay = sgd->weight_decay * sgd->lr, lr = sgd->lr;
#pragma omp parallel for simd schedule(static) if (count > 65536)
    for (size_t j = 0; j < count; j++) {
        v[j] = mom * v[j] - decay * w[j] - lr * g[j];
        w[j] += v[j];
    }
}

static int cpu_softmax_xent(model_backend_t *be, int n, int classes, const float *logits,
                            const int *labels, float *probs, float *dlogits, float *loss,
                            util_err_t *err) {
    (void)be;
    return model_softmax_xent(n, classes, logits, labels, probs, dlogits, loss, err);
}

static int cpu_copy_between(model_backend_t *dst_be, float *dst, model_backend_t *src_be,
                            const float *src, size_t count) {
    (void)dst_be;
    (void)src_be;
    memcpy(dst, src, count * sizeof(float));
    return 0;
}

#define CPU_OPS                                                                                    \
    .destroy = cpu_destroy, .alloc = cpu_alloc, .release = cpu_release, .upload = cpu_transfer,    \
    .download = cpu_transfer, .conv_forward = cpu_conv_forward,                                    \
    .conv_backward = cpu_conv_backward, .relu_forward = cpu_relu_forward,                          \
    .relu_backward = cpu_relu_backward, .lrn_forward = cpu_lrn_forward,                            \
    .lrn_backward = cpu_lrn_backward, .pool_forward = cpu_pool_forward,                            \
    .pool_backward = cpu_pool_backward, .fc_forward = cpu_fc_forward,                              \
    .fc_backward = cpu_fc_backward, .dropout_forward = cpu_dropout_forward,                        \
    .mask_multiply = cpu_mask_multiply, .copy = cpu_copy, .copy_between = cpu_copy_between,        \
    .accumulate = cpu_accumulate, .sgd_update = cpu_sgd_update,                                    \
    .allreduce_create = model_allreduce_host_create

static const model_backend_ops_t cpu_ops = {.name = "cpu", .host_memory = 1, CPU_OPS};

/* The same kernels on a device the net must treat as having memory of its
 * own (as a GPU): parameters mirrored on the host, copies staged through the
 * host, the loss through the backend's softmax_xent. Tests run the GPU-shaped
 * paths of the net with it, on machines without a GPU. */
static const model_backend_ops_t cpu_staged_ops = {
    .name = "cpu-staged", .host_memory = 0, .softmax_xent = cpu_softmax_xent, CPU_OPS};

static model_backend_t *cpu_create(const model_backend_ops_t *ops) {
    cpu_backend_t *be = calloc(1, sizeof *be);
    if (!be) return NULL;
    be->base.ops = ops;
    be->ws = model_workspace_create();
    if (!be->ws) {
        free(be);
        return NULL;
    }
    return &be->base;
}

model_backend_t *model_backend_cpu_create(void) {
    return cpu_create(&cpu_ops);
}

model_backend_t *model_backend_cpu_staged_create(void) {
    return cpu_create(&cpu_staged_ops);
}
