// The project's own CUDA kernels (see cuda_kernels.h): dropout masks, the
// SGD update, the cross-entropy terms, and the border copies that give
// cuDNN's floor-mode pooling the ceil mode. Everything else runs in cuDNN
// and cuBLAS.
#include "model/cuda_kernels.h"

#include <cuda_runtime.h>
#include <math.h>

namespace {

const int kThreads = 256;

unsigned blocks_for(size_t count) {
    size_t b = (count + kThreads - 1) / kThreads;
    return (unsigned)(b > 65535u * 8u ? 65535u * 8u : b);
}

__device__ uint64_t splitmix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

__global__ void dropout_forward_kernel(float p, float keep, size_t count, const float *x, float *y,
                                       float *mask, uint64_t seed) {
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < count;
         j += (size_t)gridDim.x * blockDim.x) {
        float u =
            (float)(splitmix64(seed ^ (j * 0xd1b54a32d192ed03ULL)) >> 40) * (1.0f / 16777216.0f);
        float m = u >= p ? keep : 0.0f;
        mask[j] = m;
        y[j] = x[j] * m;
    }
}

__global__ void mask_multiply_kernel(size_t count, const float *mask, const float *x, float *y) {
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < count;
         j += (size_t)gridDim.x * blockDim.x)
        y[j] = x[j] * mask[j];
}

__global__ void sgd_kernel(size_t count, float *w, const float *g, float *v, float lr, float mom,
                           float decay) {
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < count;
         j += (size_t)gridDim.x * blockDim.x) {
        float vj = mom * v[j] - decay * w[j] - lr * g[j];
        v[j] = vj;
        w[j] += vj;
    }
}

__global__ void xent_kernel(int n, int classes, const float *probs, const int *labels,
                            float *dlogits, float *terms) {
    int i = blockIdx.x;
    if (i >= n) return;
    int label = labels[i];
    const float inv = 1.0f / (float)n;
    for (int c = threadIdx.x; c < classes; c += blockDim.x) {
        size_t o = (size_t)i * classes + c;
        dlogits[o] = (probs[o] - (c == label ? 1.0f : 0.0f)) * inv;
    }
    if (threadIdx.x == 0) {
        float pl = label >= 0 && label < classes ? probs[(size_t)i * classes + label] : nanf("");
        terms[i] = -logf(fmaxf(pl, 1e-30f));
    }
}

__global__ void pad_kernel(size_t planes, int h, int w, int h2, int w2, const float *src,
                           float *dst, float fill) {
    size_t total = planes * h2 * w2;
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < total;
         j += (size_t)gridDim.x * blockDim.x) {
        int xx = (int)(j % w2), yy = (int)((j / w2) % h2);
        size_t plane = j / ((size_t)w2 * h2);
        dst[j] = yy < h && xx < w ? src[(plane * h + yy) * w + xx] : fill;
    }
}

__global__ void crop_kernel(size_t planes, int h2, int w2, int h, int w, const float *src,
                            float *dst) {
    size_t total = planes * h * w;
    for (size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x; j < total;
         j += (size_t)gridDim.x * blockDim.x) {
        int xx = (int)(j % w), yy = (int)((j / w) % h);
        size_t plane = j / ((size_t)w * h);
        dst[j] = src[(plane * h2 + yy) * w2 + xx];
    }
}

int launched() {
    return (int)cudaGetLastError();
}

} // namespace

extern "C" int imgret_cuda_dropout_forward(float p, size_t count, const float *x, float *y,
                                           float *mask, uint64_t seed) {
    if (count == 0) return 0;
    dropout_forward_kernel<<<blocks_for(count), kThreads>>>(p, 1.0f / (1.0f - p), count, x, y, mask,
                                                            seed);
    return launched();
}

extern "C" int imgret_cuda_mask_multiply(size_t count, const float *mask, const float *x,
                                         float *y) {
    if (count == 0) return 0;
    mask_multiply_kernel<<<blocks_for(count), kThreads>>>(count, mask, x, y);
    return launched();
}

extern "C" int imgret_cuda_sgd(size_t count, float *w, const float *g, float *v, float lr,
                               float momentum, float weight_decay) {
    if (count == 0) return 0;
    sgd_kernel<<<blocks_for(count), kThreads>>>(count, w, g, v, lr, momentum, weight_decay * lr);
    return launched();
}

extern "C" int imgret_cuda_xent(int n, int classes, const float *probs, const int *labels,
                                float *dlogits, float *loss_terms) {
    if (n <= 0) return 0;
    xent_kernel<<<n, 128>>>(n, classes, probs, labels, dlogits, loss_terms);
    return launched();
}

extern "C" int imgret_cuda_pad_planes(size_t planes, int h, int w, int h2, int w2, const float *src,
                                      float *dst, float fill) {
    size_t total = planes * h2 * w2;
    if (total == 0) return 0;
    pad_kernel<<<blocks_for(total), kThreads>>>(planes, h, w, h2, w2, src, dst, fill);
    return launched();
}

extern "C" int imgret_cuda_crop_planes(size_t planes, int h2, int w2, int h, int w,
                                       const float *src, float *dst) {
    size_t total = planes * h * w;
    if (total == 0) return 0;
    crop_kernel<<<blocks_for(total), kThreads>>>(planes, h2, w2, h, w, src, dst);
    return launched();
}
