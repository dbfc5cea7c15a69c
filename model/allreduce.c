/* Data parallelism's gradient sum on the host: the reduction of backends
 * without a collective library of their own (the CPU devices, and a GPU named
 * twice, which NCCL does not take). backend_cuda.c has the NCCL one. */
#include "model/backend.h"

#include <stdlib.h>
#include <string.h>

typedef struct host_allreduce {
    model_allreduce_t base;
    int n;
    model_backend_t *be[MODEL_MAX_DEVICES];
    float *sum, *part; /* devices with memory of their own: staged here */
} host_allreduce_t;

/* Host-memory devices: summed into device 0 in device order, then copied
 * back out. */
static int shared_sum(model_allreduce_t *r, float *const *buf, size_t count, util_err_t *err) {
    (void)err;
    host_allreduce_t *h = (host_allreduce_t *)r;
    model_backend_t *be0 = h->be[0];
    for (int d = 1; d < h->n; d++)
        be0->ops->accumulate(be0, count, buf[d], buf[0]);
    for (int d = 1; d < h->n; d++)
        memcpy(buf[d], buf[0], count * sizeof(float));
    return 0;
}

/* Devices with memory of their own: each buffer comes to the host, is summed
 * there in device order (the order of shared_sum), and goes back to every
 * device. */
static int staged_sum(model_allreduce_t *r, float *const *buf, size_t count, util_err_t *err) {
    host_allreduce_t *h = (host_allreduce_t *)r;
    model_backend_t *be0 = h->be[0];
    if (be0->ops->download(be0, h->sum, buf[0], count))
        return util_fail(err, "cannot read the buffer of device 0");
    for (int d = 1; d < h->n; d++) {
        model_backend_t *be = h->be[d];
        if (be->ops->download(be, h->part, buf[d], count))
            return util_fail(err, "cannot read the buffer of device %d", d);
        for (size_t j = 0; j < count; j++)
            h->sum[j] += h->part[j];
    }
    for (int d = 0; d < h->n; d++) {
        model_backend_t *be = h->be[d];
        if (be->ops->upload(be, buf[d], h->sum, count))
            return util_fail(err, "cannot write the sum to device %d", d);
    }
    return 0;
}

static void host_destroy(model_allreduce_t *r) {
    host_allreduce_t *h = (host_allreduce_t *)r;
    if (!h) return;
    free(h->sum);
    free(h->part);
    free(h);
}

model_allreduce_t *model_allreduce_host_create(model_backend_t *const *be, int n, size_t max_count,
                                               util_err_t *err) {
    if (n < 1 || n > MODEL_MAX_DEVICES) {
        util_fail(err, "allreduce: %d devices, expected 1 to %d", n, MODEL_MAX_DEVICES);
        return NULL;
    }
    host_allreduce_t *h = calloc(1, sizeof *h);
    if (!h) goto oom;
    h->n = n;
    memcpy(h->be, be, (size_t)n * sizeof *be);
    h->base.destroy = host_destroy;
    if (be[0]->ops->host_memory) {
        h->base.sum = shared_sum;
        return &h->base;
    }
    h->base.sum = staged_sum;
    if (max_count && (!(h->sum = malloc(max_count * sizeof(float))) ||
                      !(h->part = malloc(max_count * sizeof(float)))))
        goto oom;
    return &h->base;
oom:
    host_destroy(h ? &h->base : NULL);
    util_fail(err, "allreduce: out of host memory for %zu floats", max_count);
    return NULL;
}
