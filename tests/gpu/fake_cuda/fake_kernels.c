/* Host transcriptions of model/cuda_kernels.cu for the fake CUDA build: the
 * same arithmetic in the same order (the same dropout hash, so masks match
 * a real GPU's bit for bit), one loop instead of a grid. Keep them in step
 * with the .cu file: the fake test cannot check the real kernels. Each
 * checks its device pointers as a launch on the current device would use
 * them and returns cudaErrorIllegalAddress where a real kernel would
 * fault. */
#include "model/cuda_kernels.h"
#include "tests/gpu/fake_cuda/fake_cuda.h"

#include <cuda_runtime.h>

#include <math.h>

#define DEV(call, what, p, bytes)                                                                  \
    do {                                                                                           \
        if (fake_cuda_check_ptr(call, what, p, bytes, fake_cuda_current_device()))                 \
            return (int)cudaErrorIllegalAddress;                                                   \
    } while (0)

static uint64_t splitmix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int imgret_cuda_dropout_forward(float p, size_t count, const float *x, float *y, float *mask,
                                uint64_t seed) {
    const char *call = "imgret_cuda_dropout_forward";
    if (count == 0) return 0;
    DEV(call, "x", x, count * sizeof(float));
    DEV(call, "y", y, count * sizeof(float));
    DEV(call, "mask", mask, count * sizeof(float));
    const float keep = 1.0f / (1.0f - p);
    for (size_t j = 0; j < count; j++) {
        float u =
            (float)(splitmix64(seed ^ (j * 0xd1b54a32d192ed03ULL)) >> 40) * (1.0f / 16777216.0f);
        float m = u >= p ? keep : 0.0f;
        mask[j] = m;
        y[j] = x[j] * m;
    }
    return 0;
}

int imgret_cuda_mask_multiply(size_t count, const float *mask, const float *x, float *y) {
    const char *call = "imgret_cuda_mask_multiply";
    if (count == 0) return 0;
    DEV(call, "mask", mask, count * sizeof(float));
    DEV(call, "x", x, count * sizeof(float));
    DEV(call, "y", y, count * sizeof(float));
    for (size_t j = 0; j < count; j++)
        y[j] = x[j] * mask[j];
    return 0;
}

int imgret_cuda_sgd(size_t count, float *w, const float *g, float *v, float lr, float momentum,
                    float weight_decay) {
    const char *call = "imgret_cuda_sgd";
    if (count == 0) return 0;
    DEV(call, "w", w, count * sizeof(float));
    DEV(call, "g", g, count * sizeof(float));
    DEV(call, "v", v, count * sizeof(float));
    const float decay = weight_decay * lr; /* as the wrapper passes it to the kernel */
    for (size_t j = 0; j < count; j++) {
        float vj = momentum * v[j] - decay * w[j] - lr * g[j];
        v[j] = vj;
        w[j] += vj;
    }
    return 0;
}

int imgret_cuda_xent(int n, int classes, const float *probs, const int *labels, float *dlogits,
                     float *loss_terms) {
    const char *call = "imgret_cuda_xent";
    if (n <= 0) return 0;
    size_t all = (size_t)n * (size_t)classes;
    DEV(call, "probs", probs, all * sizeof(float));
    DEV(call, "labels", labels, (size_t)n * sizeof(int));
    DEV(call, "dlogits", dlogits, all * sizeof(float));
    DEV(call, "loss_terms", loss_terms, (size_t)n * sizeof(float));
    const float inv = 1.0f / (float)n;
    for (int i = 0; i < n; i++) {
        int label = labels[i];
        for (int c = 0; c < classes; c++) {
            size_t o = (size_t)i * classes + c;
            dlogits[o] = (probs[o] - (c == label ? 1.0f : 0.0f)) * inv;
        }
        float pl = label >= 0 && label < classes ? probs[(size_t)i * classes + label] : nanf("");
        loss_terms[i] = -logf(fmaxf(pl, 1e-30f));
    }
    return 0;
}

int imgret_cuda_pad_planes(size_t planes, int h, int w, int h2, int w2, const float *src,
                           float *dst, float fill) {
    const char *call = "imgret_cuda_pad_planes";
    size_t total = planes * h2 * w2;
    if (total == 0) return 0;
    DEV(call, "src", src, planes * h * w * sizeof(float));
    DEV(call, "dst", dst, total * sizeof(float));
    for (size_t j = 0; j < total; j++) {
        int xx = (int)(j % w2), yy = (int)((j / w2) % h2);
        size_t plane = j / ((size_t)w2 * h2);
        dst[j] = yy < h && xx < w ? src[(plane * h + yy) * w + xx] : fill;
    }
    return 0;
}

int imgret_cuda_crop_planes(size_t planes, int h2, int w2, int h, int w, const float *src,
                            float *dst) {
    const char *call = "imgret_cuda_crop_planes";
    size_t total = planes * h * w;
    if (total == 0) return 0;
    DEV(call, "src", src, planes * h2 * w2 * sizeof(float));
    DEV(call, "dst", dst, total * sizeof(float));
    for (size_t j = 0; j < total; j++) {
        int xx = (int)(j % w), yy = (int)((j / w) % h);
        size_t plane = j / ((size_t)w * h);
        dst[j] = src[(plane * h2 + yy) * w2 + xx];
    }
    return 0;
}
