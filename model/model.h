/* model: the AlexNet of Krizhevsky, Sutskever & Hinton (2012) — tensors,
 * layers with forward and backward, the network spec as data, the net
 * (forward, backward, SGD) on a compute backend.
 *
 * Layout: every activation is an NCHW float32 array (batch, channels, height,
 * width), row-major. Convolution weights are (out, in/groups, kh, kw); fully
 * connected weights are (out, in). These are the layouts of Caffe and PyTorch,
 * so imported weights need no transposition.
 *
 * Errors: every function that can fail returns 0 on success and -1 on error
 * with a sentence in `err` (which may be NULL); nothing here prints or exits.
 */
#ifndef IMGRET_MODEL_H
#define IMGRET_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "data/data.h"
#include "util/util.h"

/* ---------------------------------------------------------------- shapes */

typedef struct model_shape {
    int n, c, h, w;
} model_shape_t;

/* Number of elements, or 0 when a dimension is not positive. */
size_t model_shape_count(model_shape_t s);

/* Largest dimension and element count a layer accepts: keeps every index
 * inside int and every buffer size far from overflow. */
#define MODEL_MAX_DIM 65536
#define MODEL_MAX_ELEMS ((size_t)1 << 31)

/* ------------------------------------------------------------- workspace */

/* Scratch memory for the layer kernels (im2col columns, per-thread gradient
 * accumulators). Grows on demand and is reused between calls, so a steady
 * forward/backward loop allocates nothing. Not shared between threads that
 * call layer functions concurrently. */
typedef struct model_workspace model_workspace_t;

model_workspace_t *model_workspace_create(void);
void model_workspace_free(model_workspace_t *ws); /* accepts NULL */

/* ---------------------------------------------------------------- layers */

/* Convolution. Output size: (in + 2*pad - kernel) / stride + 1 (floor).
 * groups splits input and output channels into that many independent
 * columns: output channel o of group g sees input channels
 * [g*in_c/groups, (g+1)*in_c/groups) only (the paper's two-GPU columns). */
typedef struct model_conv_param {
    int in_c, out_c, kernel, stride, pad, groups;
} model_conv_param_t;

/* Checks the settings against an input shape and gives the output shape. */
int model_conv_shape(const model_conv_param_t *p, model_shape_t in, model_shape_t *out,
                     util_err_t *err);
/* y (n, out_c, oh, ow) = conv(x) + b. w: out_c*(in_c/groups)*k*k, b: out_c. */
int model_conv_forward(model_workspace_t *ws, const model_conv_param_t *p, model_shape_t in,
                       const float *x, const float *w, const float *b, float *y, util_err_t *err);
/* Given dy, writes dw and db (overwritten, not accumulated) and, when dx is
 * not NULL, dx. x and w are the forward inputs. */
int model_conv_backward(model_workspace_t *ws, const model_conv_param_t *p, model_shape_t in,
                        const float *x, const float *w, const float *dy, float *dx, float *dw,
                        float *db, util_err_t *err);

/* ReLU: y = max(x, 0); backward dx = dy where y > 0. y may alias x, dx may alias dy. */
void model_relu_forward(size_t count, const float *x, float *y);
void model_relu_backward(size_t count, const float *y, const float *dy, float *dx);

/* Local response normalisation across channels:
 *   b_c = a_c / (k + alpha' * sum_{c' in [c - size/2, c + (size-1)/2]} a_c'^2)^beta
 * with alpha' = alpha under the paper's convention (k=2, size=5, alpha=1e-4,
 * beta=0.75) and alpha' = alpha/size under Caffe's, ONNX's and PyTorch's. */
typedef enum model_lrn_alpha {
    MODEL_LRN_ALPHA_PAPER = 0,  /* alpha multiplies the sum, as in the paper */
    MODEL_LRN_ALPHA_OVER_N = 1, /* alpha/size multiplies the sum (Caffe, ONNX, PyTorch) */
} model_lrn_alpha_t;

typedef struct model_lrn_param {
    int size;
    float k, alpha, beta;
    model_lrn_alpha_t alpha_mode;
} model_lrn_param_t;

int model_lrn_check(const model_lrn_param_t *p, model_shape_t in, util_err_t *err);
/* scale (same shape as x) receives k + alpha' * sum(a^2), kept for backward. */
int model_lrn_forward(const model_lrn_param_t *p, model_shape_t in, const float *x, float *y,
                      float *scale, util_err_t *err);
int model_lrn_backward(const model_lrn_param_t *p, model_shape_t in, const float *x, const float *y,
                       const float *scale, const float *dy, float *dx, util_err_t *err);

/* Max pooling with a square window. ceil_mode rounds the output size up (as
 * Caffe always does and ONNX/PyTorch do with ceil_mode=1); a window that
 * would start inside the right/bottom padding only is dropped, as PyTorch
 * does. Padding never wins the max. */
typedef struct model_pool_param {
    int kernel, stride, pad, ceil_mode;
} model_pool_param_t;

int model_pool_shape(const model_pool_param_t *p, model_shape_t in, model_shape_t *out,
                     util_err_t *err);
/* argmax (same count as y) receives the input offset, within the (n, c)
 * plane, of each window's maximum; backward routes dy there. */
int model_pool_forward(const model_pool_param_t *p, model_shape_t in, const float *x, float *y,
                       int32_t *argmax, util_err_t *err);
int model_pool_backward(const model_pool_param_t *p, model_shape_t in, const float *dy,
                        const int32_t *argmax, float *dx, util_err_t *err);

/* Fully connected: y (n, out) = x (n, in) W^T + b, W (out, in). */
typedef struct model_fc_param {
    int in, out;
} model_fc_param_t;

int model_fc_forward(const model_fc_param_t *p, int n, const float *x, const float *w,
                     const float *b, float *y, util_err_t *err);
/* dw, db overwritten; dx written when not NULL. */
int model_fc_backward(const model_fc_param_t *p, int n, const float *x, const float *w,
                      const float *dy, float *dx, float *dw, float *db, util_err_t *err);

/* Dropout. The paper zeroes each unit with probability p while training and
 * multiplies outputs by (1-p) at test time. imgret uses the equivalent
 * "inverted" form: training keeps a unit with probability 1-p and scales it by
 * 1/(1-p); at test time the layer is the identity. Both compute the same
 * function (weights differ by the constant factor), and the inverted form is
 * what Caffe, ONNX and PyTorch weights assume, so imported weights work as
 * they are. mask receives 0 or 1/(1-p) per unit. */
int model_dropout_forward(float p, size_t count, const float *x, float *y, float *mask,
                          util_rng_t *rng, util_err_t *err);
void model_dropout_backward(size_t count, const float *mask, const float *dy, float *dx);

/* Softmax over each row of logits (n, classes) into probs. */
void model_softmax(int n, int classes, const float *logits, float *probs);
/* Softmax + cross-entropy, mean over the batch. probs receives the softmax,
 * dlogits (may be NULL) the gradient of the mean loss. Labels outside
 * [0, classes) are an error. */
int model_softmax_xent(int n, int classes, const float *logits, const int *labels, float *probs,
                       float *dlogits, float *loss, util_err_t *err);

/* ------------------------------------------------------------------ spec */

typedef enum model_layer_kind {
    MODEL_CONV = 0,
    MODEL_RELU,
    MODEL_LRN,
    MODEL_MAXPOOL,
    MODEL_FC,
    MODEL_DROPOUT,
} model_layer_kind_t;

typedef struct model_layer_spec {
    model_layer_kind_t kind;
    char name[16];
    int out;                 /* conv: kernels; fc: outputs */
    int kernel, stride, pad; /* conv, maxpool */
    int groups;              /* conv */
    int ceil_mode;           /* maxpool */
    model_lrn_param_t lrn;   /* lrn */
    float dropout;           /* dropout: probability of zeroing */
    float weight_std;        /* conv, fc: N(0, weight_std) initialisation */
    float bias_init;         /* conv, fc: constant bias initialisation */
} model_layer_spec_t;

#define MODEL_MAX_LAYERS 40

/* A network as data: the input geometry and the layers in order. The last
 * layer is a fully connected layer giving the class logits. */
typedef struct model_spec {
    char name[32];
    int in_c, in_h, in_w;
    int n_layers;
    model_layer_spec_t layer[MODEL_MAX_LAYERS];
} model_spec_t;

/* The paper's network: 3x227x227 in; conv1 96 11x11/4; conv2 256 5x5 pad 2
 * groups 2; conv3 384 3x3 pad 1; conv4 384 3x3 pad 1 groups 2; conv5 256 3x3
 * pad 1 groups 2; ReLU after each; LRN (k=2, n=5, alpha=1e-4, beta=0.75)
 * after relu1 and relu2; max pool 3/2 after LRN1, LRN2 and relu5; fc6 4096,
 * fc7 4096 with ReLU and dropout 0.5; fc8 1000. Initialisation N(0, 0.01);
 * biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere. */
void model_spec_alexnet(model_spec_t *spec);

/* The same layer sequence scaled for small greyscale or colour images (e.g.
 * Fashion-MNIST at 28x28 or CIFAR at 32x32): conv1 64 5x5/1 pad 2, conv2 128
 * 5x5 pad 2 groups 2, conv3 192, conv4 192 groups 2, conv5 128 groups 2 (3x3
 * pad 1), the paper's LRN and 3/2 pooling, fc6 and fc7 4096 (FC7 stays the
 * paper's 4096-d descriptor), fc8 `classes`. in_hw must be at least 15. */
int model_spec_alexnet_small(model_spec_t *spec, int in_c, int in_hw, int classes, util_err_t *err);

/* Checks every layer's settings and computes the output shape of each layer
 * for batch n (shapes may be NULL; else it holds spec->n_layers entries). */
int model_spec_shapes(const model_spec_t *spec, int n, model_shape_t *shapes, util_err_t *err);

/* Index of the layer with this name, or -1. */
int model_spec_find(const model_spec_t *spec, const char *name);

/* --------------------------------------------------------------- devices */

/* Where a net runs. "cpu" (or "cpu:N") is the host through OpenBLAS and
 * OpenMP; "gpu:N" is CUDA device N through cuDNN and cuBLAS (only in a build
 * with CUDA). Several "cpu:N" devices are distinct devices on the same host:
 * each has its own backend, workspace and thread (with its share of the
 * OpenMP threads), which is how the multi-device code runs without GPUs. */
typedef enum model_device_kind {
    MODEL_DEVICE_CPU = 0,
    MODEL_DEVICE_GPU = 1,
    /* "cpu-staged:N": the CPU kernels on a device the net treats as having
     * its own memory, as a GPU (host copies of the parameters, exchanges
     * staged through the host, the loss on the device): for testing those
     * paths where no GPU exists. */
    MODEL_DEVICE_CPU_STAGED = 2,
} model_device_kind_t;

typedef struct model_device {
    model_device_kind_t kind;
    int index;
} model_device_t;

#define MODEL_MAX_DEVICES 8

/* How a net spreads over several devices.
 * COLUMNS: the paper's model parallelism. Every layer's kernels (conv output
 *   channels, fc output units) are split evenly over the devices, and so is
 *   every activation along its channels. A convolution whose groups divide
 *   among the devices (conv2, conv4, conv5 of the paper) reads only its own
 *   device's channels; one with a single group (conv1, conv3) and every fc
 *   layer reads all channels, which the devices exchange (and, backward, sum
 *   the partial input gradients). LRN windows at a column boundary read
 *   size/2 channels of the neighbour (the paper's GPUs did not; imgret keeps
 *   one function for every placement, so a two-column net computes exactly
 *   what the one-device net computes).
 * DATA: every device holds all parameters and a slice of the batch; the
 *   gradients are summed over the devices (NCCL all-reduce on GPUs) before
 *   each device takes the same SGD step. */
typedef enum model_parallel {
    MODEL_PARALLEL_COLUMNS = 0,
    MODEL_PARALLEL_DATA = 1,
} model_parallel_t;

typedef struct model_placement {
    int n_devices; /* 1 to MODEL_MAX_DEVICES */
    model_device_t device[MODEL_MAX_DEVICES];
    model_parallel_t parallel; /* ignored with one device */
} model_placement_t;

/* One device on the host CPU: what model_net_create uses. */
model_placement_t model_placement_cpu(void);
/* Parses "cpu", "cpu:N", "gpu" (= gpu:0) or "gpu:N". Only the syntax is
 * checked here; model_net_create_on says whether the device exists. */
int model_device_parse(const char *name, model_device_t *dev, util_err_t *err);
/* Parses a comma-separated device list ("gpu:0,gpu:1", "cpu:0,cpu:1") and a
 * parallelism name ("columns", "data"; NULL means columns). CPU and GPU
 * devices are not mixed, and a CPU device may not appear twice; a GPU may
 * ("gpu:0,gpu:0": two columns, or two data-parallel halves, sharing one GPU,
 * which lets a one-GPU machine run the several-device paths; NCCL takes each
 * GPU once, so data parallelism then sums through the host). */
int model_placement_parse(const char *devices, const char *parallel, model_placement_t *pl,
                          util_err_t *err);
/* 1 when some device of the placement is named twice. */
int model_placement_repeats(const model_placement_t *pl);
/* "cpu:0,cpu:1 (columns)" and the like. */
void model_placement_str(const model_placement_t *pl, char *buf, size_t size);
/* 1 when this build has the CUDA backend. */
int model_cuda_built(void);
/* Number of visible CUDA devices (0 without a CUDA build, without a driver
 * or without a GPU); why, when 0, goes into why (may be NULL). */
int model_gpu_count(util_err_t *why);

/* The CPU kernel path the CPU backend runs: "avx512" (imgret's own AVX-512
 * sgemm and sgemv), "avx2" (its own AVX2 + FMA ones) or "blas" (OpenBLAS
 * only). Chosen once per process: IMGRET_SGEMM=avx512|avx2|blas forces one,
 * else the widest the CPU has. NULL with the reason in err when IMGRET_SGEMM
 * names a path this CPU lacks or no path at all: CPU backends are then not
 * created (model_backend_create fails with that reason). */
const char *model_cpu_kernels(util_err_t *err);
/* Switches the path ("avx512", "avx2", "blas") for this process; -1 when
 * the CPU lacks it. NULL chooses again as at start (IMGRET_SGEMM as it is
 * now, else the widest path): -1 with the refusal when that names a path the
 * CPU lacks. For tests and benchmarks that run every path: call while no net
 * is computing. */
int model_cpu_set_kernels(const char *name, util_err_t *err);
/* 1 when this CPU can run the named path. */
int model_cpu_has_kernels(const char *name);

/* ------------------------------------------------------------------- net */

typedef struct model_param {
    char name[24]; /* "conv1.weight", "fc8.bias", ... */
    int layer;     /* index in the spec */
    int ndim;
    int dims[4];
    size_t count;
    float *data;     /* the parameter */
    float *grad;     /* gradient of the mean loss, after model_net_backward */
    float *momentum; /* SGD velocity */
} model_param_t;

typedef struct model_net model_net_t;

/* Builds a network for batches of up to max_batch images on one CPU device.
 * Parameters are zero until model_net_init or until written through
 * model_net_param. The net keeps its own copy of the spec. */
model_net_t *model_net_create(const model_spec_t *spec, int max_batch, util_err_t *err);
/* The same on the devices of a placement. A GPU device in a build without
 * CUDA, or one that does not exist, is an error that says so. The columns
 * split needs every conv's groups to be 1 or a multiple of the device
 * count, at least as many channels as devices in every layer, and a conv or
 * fc first layer. */
model_net_t *model_net_create_on(const model_spec_t *spec, int max_batch,
                                 const model_placement_t *pl, util_err_t *err);
const model_placement_t *model_net_placement(const model_net_t *net);
void model_net_free(model_net_t *net); /* accepts NULL */

const model_spec_t *model_net_spec(const model_net_t *net);
int model_net_max_batch(const model_net_t *net);

/* The paper's initialisation: weights N(0, weight_std), biases bias_init,
 * momentum zero; also seeds the dropout RNG. */
void model_net_init(model_net_t *net, uint64_t seed);
/* Reseeds the dropout RNG only. */
void model_net_seed_dropout(model_net_t *net, uint64_t seed);
util_rng_t *model_net_rng(model_net_t *net);

/* Parameters, their gradients and momentum as host arrays in the layouts
 * above, whatever the placement. On one CPU device they are the net's own
 * memory. On a GPU or on several devices they are a host copy of the
 * devices' slices (split on the way in, merged on the way out): these calls
 * bring the copy up to date and mark it as possibly written, so the next
 * forward, backward or SGD step sends it back to the devices. A pointer
 * kept across a step goes stale there: ask again after the step. */
int model_net_n_params(const model_net_t *net);
model_param_t *model_net_param(model_net_t *net, int i);
model_param_t *model_net_find_param(model_net_t *net, const char *name);
size_t model_net_param_total(const model_net_t *net);

/* Forward pass over n images x (n, in_c, in_h, in_w). train=1 applies
 * dropout and keeps what backward needs. */
int model_net_forward(model_net_t *net, const float *x, int n, int train, util_err_t *err);
/* The same pass again over the images of the last model_net_forward, which
 * the devices still hold: no copy from the host. For timing the pass alone
 * (bench/alexnet_gpu.sh, as PyTorch benchmarks time a batch already on the
 * GPU); the result equals model_net_forward on the same x. Fails when no
 * forward pass has copied images in yet. */
int model_net_forward_again(model_net_t *net, int train, util_err_t *err);

/* Per-layer timing, for finding where a pass spends its time (imgret forward
 * --layers): while on, every layer of every forward and backward pass waits
 * for all devices to finish it (which costs a little), and its wall time is
 * added to the layer's totals. Turning it on clears the totals. The totals
 * (seconds, n_layers entries each; backward includes the exchanges of the
 * column split) stay valid until the net is freed. */
void model_net_time_layers(model_net_t *net, int on);
const double *model_net_layer_seconds(const model_net_t *net, int backward);

/* Output of layer i of the last forward pass (NULL when i is out of range);
 * shape receives its shape. The logits are the last layer's output. Host
 * memory: on a GPU or on several devices a copy assembled by this call and
 * valid until the next call for the same layer or the next pass. */
const float *model_net_output(const model_net_t *net, int layer, model_shape_t *shape);
const float *model_net_logits(const model_net_t *net, model_shape_t *shape);

/* After a forward pass with train=1: softmax cross-entropy against labels
 * (mean over the batch) and backward through every layer, leaving the
 * gradient of the mean loss in each param's grad. probs (may be NULL)
 * receives the softmax. */
int model_net_backward(model_net_t *net, const int *labels, float *loss, float *probs,
                       util_err_t *err);

/* The paper's update, for every parameter:
 *   v <- momentum*v - weight_decay*lr*w - lr*grad;  w <- w + v */
typedef struct model_sgd {
    float lr, momentum, weight_decay;
} model_sgd_t;

void model_net_sgd_step(model_net_t *net, const model_sgd_t *sgd);

/* -------------------------------------------------- training and evaluation */

/* The paper's recipe: SGD with momentum 0.9 and weight decay 5e-4, batch 128,
 * lr 0.01 divided by 10 when validation error stops improving (three times
 * in all), random crops + mirrors + PCA lighting, minus the mean image. */
typedef enum model_lr_schedule {
    MODEL_LR_PLATEAU = 0, /* divide when val top-1 error has not improved for `patience` epochs */
    MODEL_LR_STEP = 1,    /* divide every `step_epochs` epochs */
    MODEL_LR_LINEAR = 2,  /* per step, linearly from lr to 0 over the whole run */
    MODEL_LR_COSINE = 3,  /* per step, lr * (1 + cos(pi * done / total)) / 2 */
} model_lr_schedule_t;

typedef struct model_train_opts {
    int epochs;
    int batch;
    model_sgd_t sgd; /* initial lr, momentum, weight decay */
    model_lr_schedule_t schedule;
    int patience;     /* plateau: epochs without improvement before a drop */
    int step_epochs;  /* step: epochs between drops */
    float lr_factor;  /* 0.1 */
    int max_lr_drops; /* 3 */
    /* Linear warm-up from lr / steps to lr over the first warmup_epochs
     * (fractional) epochs' steps, on top of any schedule; 0: none. */
    float warmup_epochs;
    /* Data: the stored geometry, crop, augmentation and normalisation. */
    data_prep_t prep;
    int crop;
    int mirror;
    float lighting_std;
    data_norm_t norm; /* stats borrowed */
    uint64_t seed;    /* data order and augmentation */
    int threads;      /* loader worker threads */
    int ten_crop_val; /* validate with ten crops instead of the centre crop */
} model_train_opts_t;

/* The paper's settings for a stored 256 / crop 224 dataset (callers adjust
 * prep and crop for small images). */
model_train_opts_t model_train_defaults(void);

#define MODEL_MAX_EPOCHS 1000

typedef struct model_epoch_metrics {
    int epoch;
    float lr;
    float train_loss, train_top1, train_top5; /* errors in [0, 1], over the epoch */
    float val_loss, val_top1, val_top5;       /* -1 when there is no validation set */
    double seconds;
    size_t skipped; /* items the loader could not load */
} model_epoch_metrics_t;

/* Everything besides the parameters, momentum and dropout RNG (which the net
 * holds) that a resumed run needs to continue exactly. */
typedef struct model_train_state {
    int epoch;     /* the epoch in progress (0-based) */
    size_t step;   /* batches of that epoch already done */
    float lr;      /* the epoch's rate (plateau/step), the initial one otherwise */
    float last_lr; /* the rate of the last step run */
    float best_val_top1;
    int bad_epochs, lr_drops;
    /* running sums of the epoch in progress */
    double loss_sum;
    size_t seen, wrong1, wrong5;
    double seconds; /* training time of the epoch in progress so far */
    int n_history;
    model_epoch_metrics_t history[MODEL_MAX_EPOCHS];
} model_train_state_t;

/* The learning rate of the step (st->epoch, st->step): schedule and warm-up. */
float model_train_step_lr(const model_train_opts_t *o, const model_train_state_t *st,
                          size_t steps_per_epoch);

/* A fresh state at epoch 0 with the options' lr. */
void model_train_state_init(model_train_state_t *st, const model_train_opts_t *opts);

typedef struct model_train_hooks {
    void *ctx;
    /* After every step (may be NULL). */
    void (*on_step)(void *ctx, const model_train_state_t *st, size_t steps_per_epoch, float loss,
                    double img_per_s);
    /* After every epoch, with its metrics (may be NULL). */
    void (*on_epoch)(void *ctx, const model_epoch_metrics_t *m);
    /* Writes a checkpoint: at the end of every epoch and when stopped (may be
     * NULL). A failure stops training with that error. */
    int (*checkpoint)(void *ctx, const model_net_t *net, const model_train_state_t *st,
                      util_err_t *err);
    /* Per skipped item (may be NULL). */
    void (*on_skip)(void *ctx, size_t item, const char *message);
    /* Checked after every step; when it becomes non-zero, training saves a
     * checkpoint and returns MODEL_TRAIN_STOPPED. */
    volatile int *stop;
} model_train_hooks_t;

#define MODEL_TRAIN_DONE 0
#define MODEL_TRAIN_STOPPED 1

/* Trains net on train (validating on val after every epoch when val is not
 * NULL) from state st (fresh or resumed) to opts->epochs. Returns
 * MODEL_TRAIN_DONE, MODEL_TRAIN_STOPPED, or -1 with err (a NaN or infinite
 * loss stops training at once, before any checkpoint of the bad state). */
int model_train(model_net_t *net, const data_dataset_t *train, const data_dataset_t *val,
                const model_train_opts_t *opts, model_train_state_t *st,
                const model_train_hooks_t *hooks, util_err_t *err);

/* Restores a state from a checkpoint's epoch, step, learning rate and
 * history (declared in the model-file section below); the lr schedule's
 * own counters are replayed from the history. The net's momentum and
 * dropout RNG come back through model_file_to_net. */
struct model_checkpoint;
/* The other way: fills a checkpoint's epoch, step (batches done within
 * that epoch), learning rate and history from st (the history array is
 * allocated; the checkpoint owns it). */
int model_train_state_to_checkpoint(const model_train_state_t *st, struct model_checkpoint *ck,
                                    util_err_t *err);
int model_train_state_from_checkpoint(model_train_state_t *st, const model_train_opts_t *opts,
                                      const struct model_checkpoint *ck, util_err_t *err);

/* Top-1 and top-5 error (in [0, 1]) and mean loss over a dataset, with one
 * centre crop or ten crops (four corners, centre and mirrors; softmax
 * averaged) per image. Items that fail to load are skipped and counted. */
typedef struct model_eval_result {
    size_t count, skipped;
    float top1, top5, loss;
} model_eval_result_t;

int model_evaluate(model_net_t *net, const data_dataset_t *ds, const data_prep_t *prep, int crop,
                   const data_norm_t *norm, int ten_crop, int threads, model_eval_result_t *out,
                   util_err_t *err);

/* ======================================================================
 * Model files and weight interop (Caffe, ONNX). Everything below this line is
 * implemented in model/modelfile.c, model/caffe_import.c, model/onnx_io.c
 * and model/interop_common.c; the file formats are in proto/ and
 * docs/interop.md.
 * ====================================================================== */

/* Largest file the readers accept (.imgret, .caffemodel, .onnx, mean). The
 * paper's net is about 244 MB. */
#define MODEL_FILE_MAX_BYTES ((uint64_t)2 << 30)
#define MODEL_HASH_BYTES 32 /* SHA-256 */
#define MODEL_MAX_CLASSES 100000

typedef enum model_channel_order {
    MODEL_CHANNELS_RGB = 0,
    MODEL_CHANNELS_BGR = 1,
} model_channel_order_t;

typedef enum model_mean_kind {
    MODEL_MEAN_NONE = 0,
    MODEL_MEAN_IMAGE = 1, /* a mean image (the paper; Caffe's imagenet_mean.binaryproto) */
    MODEL_MEAN_PIXEL = 2, /* one mean per channel */
} model_mean_kind_t;

/* How an 8-bit image becomes the network input: the image is resized so
 * its shorter side is stored_size - 2 * stored_pad and centre-cropped to a
 * square, stored_pad zero pixels are added on every side (the "stored"
 * image, stored_size square; model_input_from_file), crops of spec.in_h x
 * spec.in_w are taken from it, and
 *   x = (pixel - mean) * scale
 * per channel, in channel_order. Importers convert Caffe's BGR to RGB (so
 * channel_order is RGB after every import); the field says what the net
 * expects so a file from elsewhere can say BGR. The eigen data follow
 * data_stats_t: eigval descending, eigvec[k*c + i] = channel k of vector i,
 * of pixel values scaled to [0, 1], RGB. */
typedef struct model_norm {
    model_channel_order_t channel_order;
    model_mean_kind_t mean_kind;
    int mean_c, mean_h, mean_w; /* mean image geometry (e.g. 3x256x256) */
    float *mean_image;          /* mean_c*mean_h*mean_w, CHW, 0..255; owned, NULL if none */
    float mean_pixel[4];        /* 0..255, first spec.in_c used */
    float scale;                /* 1 for the paper's 0..255 minus mean */
    int stored_size;            /* 256 */
    int stored_pad;             /* 0 (the paper); 2 for imgret's Fashion-MNIST; -1: not recorded */
    int has_eigen;              /* PCA lighting data present */
    float eigval[3];
    float eigvec[9];
} model_norm_t;

/* A named float32 array: a parameter or a momentum buffer. */
typedef struct model_tensor {
    char name[24]; /* "conv2.weight" */
    int ndim;
    int dims[4];
    size_t count;
    float *data; /* owned */
} model_tensor_t;

/* One line of the training history (a checkpoint's). */
typedef struct model_metric {
    int epoch;
    int64_t step;
    float lr, train_loss, train_top1_error, val_loss, val_top1_error, val_top5_error;
    double seconds;
} model_metric_t;

/* What `imgret train --resume` needs beyond the parameters. */
typedef struct model_checkpoint {
    int epoch;                /* epochs completed */
    int64_t step;             /* SGD steps taken */
    model_sgd_t sgd;          /* current learning rate, momentum, weight decay */
    util_rng_t rng;           /* the trainer's RNG */
    util_rng_t dropout_rng;   /* the net's (model_net_rng) */
    model_tensor_t *momentum; /* n_params, same names, shapes and order as param; owned */
    int n_history;
    model_metric_t *history; /* owned (malloc); n_history entries */
} model_checkpoint_t;

/* A model file in memory. Every pointer is owned by it; model_file_free
 * frees them all. */
typedef struct model_file {
    model_spec_t spec;
    int n_params;
    model_tensor_t *param; /* in model_net_param order, named as the net names them */
    model_norm_t norm;
    int n_classes;      /* 0 (no names) or the number of logits */
    char **class_names; /* n_classes strings, malloc'd */
    char source[256];   /* provenance, e.g. "caffe: bvlc_alexnet.caffemodel (V1 layers)" */
    /* SHA-256 of the model section (spec, params, norm, names, source): the
     * model's identity, unchanged by checkpoint state. Set by save and load;
     * zero on a file never saved or loaded. */
    uint8_t hash[MODEL_HASH_BYTES];
    model_checkpoint_t *checkpoint; /* NULL unless a training checkpoint */
} model_file_t;

/* A file for spec with every parameter allocated and zero, named and
 * ordered as model_net_create names them; norm: RGB, no mean, scale 1,
 * stored size 256. Free with model_file_free. */
model_file_t *model_file_create(const model_spec_t *spec, util_err_t *err);
void model_file_free(model_file_t *mf); /* accepts NULL */

model_tensor_t *model_file_find_param(model_file_t *mf, const char *name);
size_t model_file_param_total(const model_file_t *mf);

/* Checks the spec, every parameter against the shape the spec implies
 * ("conv2.weight: expected 256x48x5x5, file has 256x96x5x5"), missing and
 * extra parameters, the normalisation, class names and checkpoint. */
int model_file_check(const model_file_t *mf, util_err_t *err);

/* Adds a checkpoint with zero momentum buffers (nothing when present). */
int model_file_add_checkpoint(model_file_t *mf, util_err_t *err);
/* Copies n class names (n must equal the number of logits). */
int model_file_set_class_names(model_file_t *mf, const char *const *names, int n, util_err_t *err);
/* One name per line (Caffe's synset_words.txt: "n01440764 tench, Tinca
 * tinca", kept whole); blank trailing lines ignored; the count must equal
 * the number of logits. */
int model_file_read_class_names(model_file_t *mf, const char *path, util_err_t *err);
/* Copies a c x h x w mean image into norm (mean_kind becomes IMAGE, and
 * mean_pixel its per-channel average). */
int model_norm_set_mean_image(model_norm_t *norm, int c, int h, int w, const float *mean,
                              util_err_t *err);

/* Writes atomically (temporary file, fsync, rename, fsync of the folder)
 * after model_file_check; sets mf->hash. */
int model_file_save(model_file_t *mf, const char *path, util_err_t *err);
/* Reads and verifies a file: magic, version, sizes (before allocating),
 * both SHA-256 hashes, the protobuf body, and model_file_check. Errors name
 * the file and what is wrong. */
model_file_t *model_file_load(const char *path, util_err_t *err);

/* How images become this model's input, as data/ sees it: the stored
 * geometry (prep), the crop, and a data_norm_t whose stats hold the model's
 * mean image (or pixel) and eigen data. The one rule, for every image of
 * every size, is the one the model was trained with: shorter side to
 * S = stored_size - 2 * pad, centre S x S square, pad zero pixels on every
 * side, then the centre (or ten) crop(s) of spec.in_h. The paper's models
 * have pad 0 (shorter side to 256, centre 256x256, crop 224/227); imgret's
 * Fashion-MNIST models pad 2 (28x28 items are kept as they are and padded
 * to 32, as training did; an image of another size is first brought to
 * 28x28). pad is norm.stored_pad; files that do not record it (-1) get 2
 * when stored_size = crop + 4 and crop <= 32 (how imgret trained small
 * models before recording it) and 0 otherwise. With a mean image, its side
 * is the stored size. Refuses non-square or BGR input (images are fed RGB).
 * Every path from an image to the net (extraction, the server, classify,
 * eval) takes its preparation from here. */
typedef struct model_input {
    data_stats_t *stats;
    data_norm_t norm;
    data_prep_t prep;
    int crop;
} model_input_t;

int model_input_from_file(const model_file_t *mf, model_input_t *in, util_err_t *err);
void model_input_free(model_input_t *in); /* accepts a zeroed one */
/* Lower-case hex of a hash, NUL-terminated. */
void model_hash_hex(const uint8_t hash[MODEL_HASH_BYTES], char hex[2 * MODEL_HASH_BYTES + 1]);

/* A CPU net for batches up to max_batch with the file's spec and
 * parameters (and, for a checkpoint, momentum and the dropout RNG). */
model_net_t *model_net_create_from_file(const model_file_t *mf, int max_batch, util_err_t *err);
/* The same on the devices of a placement (the parameters are split over
 * the devices; model_file_from_net merges them again). */
model_net_t *model_net_create_from_file_on(const model_file_t *mf, int max_batch,
                                           const model_placement_t *pl, util_err_t *err);
/* Copies the file's parameters (and checkpoint momentum and dropout RNG)
 * into a net built from an equal spec; every shape is checked. */
int model_file_to_net(const model_file_t *mf, model_net_t *net, util_err_t *err);
/* A file holding a copy of the net's spec and parameters. with_checkpoint
 * also copies momentum and the dropout RNG into a new checkpoint whose
 * other fields are zero for the trainer to fill. */
model_file_t *model_file_from_net(model_net_t *net, int with_checkpoint, util_err_t *err);

/* Whether a spec is an AlexNet of the paper's shape: the paper's layer
 * sequence (conv-relu-lrn-pool twice, conv-relu three times, pool,
 * fc-relu-dropout twice, fc), conv1 11x11/4, conv2 5x5 pad 2 in 2 groups,
 * conv3 3x3 pad 1, conv4 and conv5 3x3 pad 1 in 2 groups, pools 3/2, 3
 * input channels. Widths, class count, input size, LRN settings and
 * pooling rounding are free (the paper's widths are 96/256/384/384/256 and
 * 4096/4096). */
int model_spec_check_paper_shape(const model_spec_t *spec, util_err_t *err);
/* 1 when the widths are also the paper's (96, 256, 384, 384, 256, 4096,
 * 4096). */
int model_spec_has_paper_widths(const model_spec_t *spec);

/* Caffe (.caffemodel, both the 2014 V1 format and the current one). */
typedef struct model_caffe_opts {
    const char *mean_path;   /* NULL, or a mean .binaryproto (BGR, e.g. 3x256x256) */
    const char *labels_path; /* NULL, or synset_words.txt */
    int input_size;          /* 0: the file's input_dim, else 227 */
} model_caffe_opts_t;

/* Imports a paper-shaped AlexNet: Caffe's BGR conv1 is reordered to RGB
 * (channel_order RGB), and so is the mean image; LRN keeps Caffe's
 * alpha/size convention with k from the file (MODEL_LRN_ALPHA_OVER_N);
 * pooling rounds up (ceil_mode 1) as Caffe's does. opts may be NULL. */
model_file_t *model_import_caffe(const char *path, const model_caffe_opts_t *opts, util_err_t *err);

/* ONNX. */
typedef struct model_onnx_import_opts {
    int bgr; /* the graph takes BGR (e.g. the zoo's bvlcalexnet, converted
              * from Caffe): conv1 is reordered to RGB */
    int has_mean_pixel;
    float mean_pixel[3];     /* RGB, 0..255, recorded in the normalisation */
    const char *labels_path; /* NULL or one class name per line */
    int input_size;          /* 0: the graph input's size, else 224 when the graph has none */
} model_onnx_import_opts_t;

/* Imports a paper-shaped AlexNet written with the standard ops (Conv, Relu,
 * LRN, MaxPool, Flatten/Reshape, Gemm, Dropout, Softmax, Identity) in one
 * chain, opsets 7 to 17. MaxPool with pads [0,0,1,1] (the opset-9 way to
 * round up) becomes ceil_mode when that gives the same windows at the
 * layer's input size; other asymmetric pads are refused with a message.
 * opts may be NULL. */
model_file_t *model_import_onnx(const char *path, const model_onnx_import_opts_t *opts,
                                util_err_t *err);

typedef struct model_onnx_export_opts {
    int opset; /* 0 or 12: ceil_mode; 9: ceil pooling written as end pads */
} model_onnx_export_opts_t;

/* Writes an ONNX model (atomically): input "data" float[N,C,H,W] (N a
 * symbolic batch), outputs "logits" and "prob" (Softmax), parameters as
 * raw_data initializers, normalisation and content hash in metadata_props.
 * opts may be NULL. */
int model_export_onnx(const model_file_t *mf, const char *path,
                      const model_onnx_export_opts_t *opts, util_err_t *err);

/* ================================================ end of model files and interop */

#endif
