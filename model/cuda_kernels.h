/* Private to model/: the few CUDA kernels of our own (no library call fits
 * them), with C linkage so that backend_cuda.c, plain C, launches them. All
 * run on the calling thread's current device, on the legacy default stream,
 * and return a cudaError_t as an int (0: launched). */
#ifndef IMGRET_MODEL_CUDA_KERNELS_H
#define IMGRET_MODEL_CUDA_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Dropout: mask[j] = (uniform(seed, j) >= p) / (1 - p); y = x * mask. The
 * uniform comes from a counter-based hash of (seed, j), 24 bits. */
int imgret_cuda_dropout_forward(float p, size_t count, const float *x, float *y, float *mask,
                                uint64_t seed);
/* y = x * mask (dropout backward, and forward with a given mask). */
int imgret_cuda_mask_multiply(size_t count, const float *mask, const float *x, float *y);
/* v <- momentum v - decay lr w - lr g; w <- w + v */
int imgret_cuda_sgd(size_t count, float *w, const float *g, float *v, float lr, float momentum,
                    float weight_decay);
/* Softmax cross-entropy from probs (n, classes) already computed: loss_terms
 * (n) receives -log p_label, dlogits (probs - onehot) / n. labels on the
 * device; a label outside [0, classes) gives NaN in its term. */
int imgret_cuda_xent(int n, int classes, const float *probs, const int *labels, float *dlogits,
                     float *loss_terms);
/* Ceil-mode pooling helpers: copy (planes, h, w) into (planes, h2, w2) with
 * value `fill` in the added right/bottom border, and back (crop). */
int imgret_cuda_pad_planes(size_t planes, int h, int w, int h2, int w2, const float *src,
                           float *dst, float fill);
int imgret_cuda_crop_planes(size_t planes, int h2, int w2, int h, int w, const float *src,
                            float *dst);

#ifdef __cplusplus
}
#endif

#endif
