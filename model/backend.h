/* Private to model/: the compute backend seam (after ggml). The net walks its
 * layers and calls these entries; it never knows which backend runs them.
 * Buffers passed in are the backend's own memory (host memory for the CPU
 * backend, device memory for a GPU backend). */
#ifndef IMGRET_MODEL_BACKEND_H
#define IMGRET_MODEL_BACKEND_H

#include "model/model.h"

typedef struct model_backend model_backend_t;
typedef struct model_allreduce model_allreduce_t;

typedef struct model_backend_ops {
    const char *name;
    int host_memory; /* buffers are host memory (plain pointers on the CPU) */
    void (*destroy)(model_backend_t *be);
    /* Zero-filled buffer of `count` floats (or int32s), NULL when out of memory. */
    void *(*alloc)(model_backend_t *be, size_t count);
    void (*release)(model_backend_t *be, void *p);
    int (*upload)(model_backend_t *be, float *dst, const float *src, size_t count);
    int (*download)(model_backend_t *be, float *dst, const float *src, size_t count);

    int (*conv_forward)(model_backend_t *be, const model_conv_param_t *p, model_shape_t in,
                        const float *x, const float *w, const float *b, float *y, util_err_t *err);
    int (*conv_backward)(model_backend_t *be, const model_conv_param_t *p, model_shape_t in,
                         const float *x, const float *w, const float *dy, float *dx, float *dw,
                         float *db, util_err_t *err);
    void (*relu_forward)(model_backend_t *be, size_t count, const float *x, float *y);
    void (*relu_backward)(model_backend_t *be, size_t count, const float *y, const float *dy,
                          float *dx);
    int (*lrn_forward)(model_backend_t *be, const model_lrn_param_t *p, model_shape_t in,
                       const float *x, float *y, float *scale, util_err_t *err);
    int (*lrn_backward)(model_backend_t *be, const model_lrn_param_t *p, model_shape_t in,
                        const float *x, const float *y, const float *scale, const float *dy,
                        float *dx, util_err_t *err);
    int (*pool_forward)(model_backend_t *be, const model_pool_param_t *p, model_shape_t in,
                        const float *x, float *y, int32_t *argmax, util_err_t *err);
    /* x and y are the forward input and output (cuDNN routes dy with them;
     * the CPU uses argmax). */
    int (*pool_backward)(model_backend_t *be, const model_pool_param_t *p, model_shape_t in,
                         const float *x, const float *y, const float *dy, const int32_t *argmax,
                         float *dx, util_err_t *err);
    int (*fc_forward)(model_backend_t *be, const model_fc_param_t *p, int n, const float *x,
                      const float *w, const float *b, float *y, util_err_t *err);
    int (*fc_backward)(model_backend_t *be, const model_fc_param_t *p, int n, const float *x,
                       const float *w, const float *dy, float *dx, float *dw, float *db,
                       util_err_t *err);
    int (*dropout_forward)(model_backend_t *be, float p, size_t count, const float *x, float *y,
                           float *mask, util_rng_t *rng, util_err_t *err);
    /* y = x * mask, elementwise: dropout's backward (x the output gradient)
     * and its forward with a mask drawn by the net (several devices). */
    void (*mask_multiply)(model_backend_t *be, size_t count, const float *mask, const float *x,
                          float *y);
    /* Within this backend's memory. */
    void (*copy)(model_backend_t *be, float *dst, const float *src, size_t count);
    /* count floats from src_be's memory to dst_be's, both backends of these
     * ops, without a copy through the caller's host buffers (a GPU: a peer
     * copy; the same GPU twice: a device copy). Ordered after the work each
     * device has been given and before what it is given next. */
    int (*copy_between)(model_backend_t *dst_be, float *dst, model_backend_t *src_be,
                        const float *src, size_t count);
    /* dst += src */
    void (*accumulate)(model_backend_t *be, size_t count, const float *src, float *dst);
    /* Optional (NULL: the net computes it on the host): softmax of logits
     * (n, classes) into probs, the mean cross-entropy against labels (host
     * array) into *loss and its gradient into dlogits, all but labels and
     * loss in backend memory. */
    int (*softmax_xent)(model_backend_t *be, int n, int classes, const float *logits,
                        const int *labels, float *probs, float *dlogits, float *loss,
                        util_err_t *err);
    /* v <- momentum v - wd lr w - lr g; w <- w + v */
    void (*sgd_update)(model_backend_t *be, size_t count, float *w, const float *g, float *v,
                       const model_sgd_t *sgd);
    /* Optional (NULL: every op has finished when it returns): waits until
     * the work given so far has finished; per-layer timing uses it. */
    int (*sync)(model_backend_t *be);
    /* Data parallelism: a sum over the devices be[0..n) (backends of these
     * ops, a device possibly named twice) of buffers of up to max_count
     * floats, made once per net; the caller frees it with its destroy. */
    model_allreduce_t *(*allreduce_create)(model_backend_t *const *be, int n, size_t max_count,
                                           util_err_t *err);
} model_backend_ops_t;

struct model_backend {
    const model_backend_ops_t *ops;
};

struct model_allreduce {
    /* Each buf[d] (count floats, at most max_count, in device d's memory)
     * becomes the sum over the devices of them all. Ordered after the work
     * each device has been given. */
    int (*sum)(model_allreduce_t *r, float *const *buf, size_t count, util_err_t *err);
    void (*destroy)(model_allreduce_t *r);
};

/* model/allreduce.c: the sum on the host, for backends without a collective
 * library (and a GPU named twice, which NCCL does not take). Host-memory
 * devices are summed in place into device 0's buffer; others through host
 * buffers. Either way in device order, so every placement adds the same
 * numbers in the same order. */
model_allreduce_t *model_allreduce_host_create(model_backend_t *const *be, int n, size_t max_count,
                                               util_err_t *err);

model_backend_t *model_backend_cpu_create(void);
/* The CPU kernels behind a "cpu-staged" device: treated by the net as a
 * device with memory of its own (see backend_cpu.c). */
model_backend_t *model_backend_cpu_staged_create(void);

/* A backend for one device (cpu, or gpu:N in a CUDA build); an error that
 * names the device when it cannot be made. */
model_backend_t *model_backend_create(const model_device_t *dev, util_err_t *err);

#ifdef IMGRET_HAVE_CUDA
/* model/backend_cuda.c: cuDNN + cuBLAS on CUDA device `index`. */
model_backend_t *model_backend_cuda_create(int index, util_err_t *err);
int model_cuda_device_count(util_err_t *why);
#endif

/* Private helper of the dropout layer (activation.c): draws the keep mask
 * (0 or 1/(1-p) per unit) from rng in the order model_dropout_forward does. */
void model_dropout_mask(float p, size_t count, float *mask, util_rng_t *rng);

#endif
