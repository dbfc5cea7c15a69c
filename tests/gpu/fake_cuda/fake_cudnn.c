/* The cuDNN part of the fake (see fake_cuda.h): the legacy API that
 * model/backend_cuda.c uses, computed in plain loops from cuDNN's
 * documented semantics:
 *
 * - out = alpha * result + beta * out everywhere; beta = 0 does not read
 *   the output (NaNs there do not survive), as cuDNN documents for its
 *   scaling parameters.
 * - Convolution: CUDNN_CROSS_CORRELATION or CUDNN_CONVOLUTION (the filter
 *   flipped), groups (input channels = filter channels x groups, output
 *   channels split evenly), padding, strides, dilation; output size
 *   1 + (in + 2 pad - ((f - 1) dilation + 1)) / stride.
 * - LRN: y = x / (k + alpha/n sum x^2)^beta over the channels
 *   [c - floor((n-1)/2), c + n - 1 - floor((n-1)/2)], clipped to the
 *   tensor; alpha is divided by n inside the library.
 * - Pooling: the floor rule 1 + (in + 2 pad - window) / stride; max
 *   pooling ignores padding; backward routes dy to the first maximum of x
 *   in the window, which must equal y (the forward output).
 * - Algorithm queries report several algorithms (one with tensor-op math,
 *   one needing more than 1 GiB of workspace, one unsupported) sorted
 *   fastest first; every supported algorithm computes the same result, and
 *   scribbles NaNs over the workspace it claims to need.
 *
 * Errors: descriptors that do not fit together give CUDNN_STATUS_BAD_PARAM,
 * NULL pointers CUDNN_STATUS_BAD_PARAM_NULL_POINTER, device memory that is
 * missing, too small or on another device CUDNN_STATUS_EXECUTION_FAILED
 * (a real GPU would fault); each with one line on stderr. Only float data
 * is computed. */
#include "tests/gpu/fake_cuda/fake_cuda.h"

#include <cuda_runtime.h>
#include <cudnn.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ handles, errors */

struct cudnnContext {
    int device;
    cudaStream_t stream;
};

size_t cudnnGetVersion(void) {
    return CUDNN_VERSION;
}

const char *cudnnGetErrorString(cudnnStatus_t status) {
    switch (status) {
    case CUDNN_STATUS_SUCCESS:
        return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED:
        return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM:
        return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_BAD_PARAM_NULL_POINTER:
        return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case CUDNN_STATUS_NOT_SUPPORTED:
        return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_INTERNAL_ERROR:
        return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED:
        return "CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED";
    case CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED:
        return "CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED";
    case CUDNN_STATUS_EXECUTION_FAILED:
        return "CUDNN_STATUS_EXECUTION_FAILED";
    default:
        return "CUDNN_STATUS_UNKNOWN";
    }
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle) {
    if (!handle) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    *handle = calloc(1, sizeof **handle);
    if (!*handle) return CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    (*handle)->device = fake_cuda_current_device();
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
    free(handle);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t streamId) {
    if (!handle) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    int sd = fake_cuda_stream_device(streamId);
    if (sd >= 0 && sd != handle->device) {
        fake_cuda_report("cudnnSetStream", "stream of device %d for a handle of device %d", sd,
                         handle->device);
        return CUDNN_STATUS_BAD_PARAM;
    }
    handle->stream = streamId;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetStream(cudnnHandle_t handle, cudaStream_t *streamId) {
    if (!handle || !streamId) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    *streamId = handle->stream;
    return CUDNN_STATUS_SUCCESS;
}

#define TRY(expr)                                                                                  \
    do {                                                                                           \
        cudnnStatus_t s_ = (expr);                                                                 \
        if (s_ != CUDNN_STATUS_SUCCESS) return s_;                                                 \
    } while (0)

static cudnnStatus_t bad(const char *call, const char *why) {
    fake_cuda_report(call, "%s", why);
    return CUDNN_STATUS_BAD_PARAM;
}

/* Every call with a handle: live, and used on the device it was made on. */
static cudnnStatus_t enter(const char *call, cudnnHandle_t h) {
    if (!h) {
        fake_cuda_report(call, "NULL handle");
        return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    }
    if (fake_cuda_on_current(call, "handle", h->device)) return CUDNN_STATUS_EXECUTION_FAILED;
    return CUDNN_STATUS_SUCCESS;
}

/* alpha and beta: host pointers to float for float data. */
static cudnnStatus_t scalars(const char *call, const void *alpha, const void *beta, float *a,
                             float *b) {
    if (!alpha || !beta) {
        fake_cuda_report(call, "NULL alpha or beta");
        return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    }
    *a = *(const float *)alpha;
    *b = *(const float *)beta;
    return CUDNN_STATUS_SUCCESS;
}

/* alpha * v + beta * old, where beta = 0 does not read old. */
static inline float blend(float alpha, float v, float beta, float old) {
    return alpha * v + (beta == 0.0f ? 0.0f : beta * old);
}

/* ---------------------------------------------------------- descriptors */

struct cudnnTensorStruct {
    int set;
    cudnnDataType_t type;
    int n, c, h, w;
    int ns, cs, hs, ws;
};

struct cudnnFilterStruct {
    int set;
    cudnnDataType_t type;
    cudnnTensorFormat_t format;
    int k, c, h, w;
};

struct cudnnConvolutionStruct {
    int set;
    int pad_h, pad_w, u, v, dil_h, dil_w;
    cudnnConvolutionMode_t mode;
    cudnnDataType_t compute;
    int groups;
    cudnnMathType_t math;
};

struct cudnnPoolingStruct {
    int set;
    cudnnPoolingMode_t mode;
    cudnnNanPropagation_t nan;
    int wh, ww, ph, pw, sh, sw;
};

struct cudnnLRNStruct {
    unsigned n;
    double alpha, beta, k;
};

struct cudnnActivationStruct {
    int set;
    cudnnActivationMode_t mode;
    cudnnNanPropagation_t nan;
    double coef;
};

#define CREATE_DESTROY(Name, type_t)                                                               \
    cudnnStatus_t cudnnCreate##Name##Descriptor(type_t *d) {                                       \
        if (!d) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;                                        \
        *d = calloc(1, sizeof **d);                                                                \
        return *d ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;     \
    }                                                                                              \
    cudnnStatus_t cudnnDestroy##Name##Descriptor(type_t d) {                                       \
        free(d);                                                                                   \
        return CUDNN_STATUS_SUCCESS;                                                               \
    }

CREATE_DESTROY(Tensor, cudnnTensorDescriptor_t)
CREATE_DESTROY(Filter, cudnnFilterDescriptor_t)
CREATE_DESTROY(Pooling, cudnnPoolingDescriptor_t)
CREATE_DESTROY(Activation, cudnnActivationDescriptor_t)

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d) {
    if (!d) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    *d = calloc(1, sizeof **d);
    if (!*d) return CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    (*d)->groups = 1;
    (*d)->math = CUDNN_DEFAULT_MATH;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
    free(d);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateLRNDescriptor(cudnnLRNDescriptor_t *d) {
    if (!d) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    *d = malloc(sizeof **d);
    if (!*d) return CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    /* cuDNN's documented defaults */
    (*d)->n = 5;
    (*d)->alpha = 1e-4;
    (*d)->beta = 0.75;
    (*d)->k = 2.0;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnDestroyLRNDescriptor(cudnnLRNDescriptor_t d) {
    free(d);
    return CUDNN_STATUS_SUCCESS;
}

static int type_ok(cudnnDataType_t t) {
    return t >= CUDNN_DATA_FLOAT && t <= CUDNN_DATA_FAST_FLOAT_FOR_FP8;
}

static cudnnStatus_t set_tensor(const char *call, cudnnTensorDescriptor_t d, cudnnDataType_t type,
                                int n, int c, int h, int w, int ns, int cs, int hs, int ws) {
    if (!d) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (n < 1 || c < 1 || h < 1 || w < 1 || ns < 1 || cs < 1 || hs < 1 || ws < 1 ||
        !type_ok(type)) {
        fake_cuda_report(call, "bad tensor: type %d, dims %d x %d x %d x %d, strides %d %d %d %d",
                         (int)type, n, c, h, w, ns, cs, hs, ws);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if ((double)n * c * h * w > 2147483647.0) {
        fake_cuda_report(call, "%d x %d x %d x %d is more than 2^31 elements", n, c, h, w);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    *d = (struct cudnnTensorStruct){1, type, n, c, h, w, ns, cs, hs, ws};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t tensorDesc,
                                         cudnnTensorFormat_t format, cudnnDataType_t dataType,
                                         int n, int c, int h, int w) {
    const char *call = "cudnnSetTensor4dDescriptor";
    if (format == CUDNN_TENSOR_NCHW)
        return set_tensor(call, tensorDesc, dataType, n, c, h, w, c * h * w, h * w, w, 1);
    if (format == CUDNN_TENSOR_NHWC)
        return set_tensor(call, tensorDesc, dataType, n, c, h, w, c * h * w, 1, w * c, c);
    fake_cuda_report(call, "format %d is not NCHW or NHWC", (int)format);
    return CUDNN_STATUS_BAD_PARAM;
}

cudnnStatus_t cudnnSetTensor4dDescriptorEx(cudnnTensorDescriptor_t tensorDesc,
                                           cudnnDataType_t dataType, int n, int c, int h, int w,
                                           int nStride, int cStride, int hStride, int wStride) {
    return set_tensor("cudnnSetTensor4dDescriptorEx", tensorDesc, dataType, n, c, h, w, nStride,
                      cStride, hStride, wStride);
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t filterDesc,
                                         cudnnDataType_t dataType, cudnnTensorFormat_t format,
                                         int k, int c, int h, int w) {
    if (!filterDesc) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (k < 1 || c < 1 || h < 1 || w < 1 || !type_ok(dataType) ||
        (format != CUDNN_TENSOR_NCHW && format != CUDNN_TENSOR_NHWC)) {
        fake_cuda_report("cudnnSetFilter4dDescriptor",
                         "bad filter: type %d, format %d, dims %d x %d x %d x %d", (int)dataType,
                         (int)format, k, c, h, w);
        return CUDNN_STATUS_BAD_PARAM;
    }
    *filterDesc = (struct cudnnFilterStruct){1, dataType, format, k, c, h, w};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t convDesc, int pad_h,
                                              int pad_w, int u, int v, int dilation_h,
                                              int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t computeType) {
    if (!convDesc) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (pad_h < 0 || pad_w < 0 || u < 1 || v < 1 || dilation_h < 1 || dilation_w < 1 ||
        (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) || !type_ok(computeType)) {
        fake_cuda_report("cudnnSetConvolution2dDescriptor",
                         "bad convolution: pad %d %d, stride %d %d, dilation %d %d, mode %d, "
                         "compute type %d",
                         pad_h, pad_w, u, v, dilation_h, dilation_w, (int)mode, (int)computeType);
        return CUDNN_STATUS_BAD_PARAM;
    }
    convDesc->set = 1;
    convDesc->pad_h = pad_h;
    convDesc->pad_w = pad_w;
    convDesc->u = u;
    convDesc->v = v;
    convDesc->dil_h = dilation_h;
    convDesc->dil_w = dilation_w;
    convDesc->mode = mode;
    convDesc->compute = computeType;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t convDesc, int groupCount) {
    if (!convDesc) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (groupCount < 1) return bad("cudnnSetConvolutionGroupCount", "group count below 1");
    convDesc->groups = groupCount;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t convDesc,
                                          cudnnMathType_t mathType) {
    if (!convDesc) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (mathType != CUDNN_DEFAULT_MATH && mathType != CUDNN_TENSOR_OP_MATH &&
        mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION && mathType != CUDNN_FMA_MATH)
        return bad("cudnnSetConvolutionMathType", "not a cudnnMathType_t");
    convDesc->math = mathType;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetPooling2dDescriptor(cudnnPoolingDescriptor_t poolingDesc,
                                          cudnnPoolingMode_t mode,
                                          cudnnNanPropagation_t maxpoolingNanOpt, int windowHeight,
                                          int windowWidth, int verticalPadding,
                                          int horizontalPadding, int verticalStride,
                                          int horizontalStride) {
    if (!poolingDesc) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (windowHeight < 1 || windowWidth < 1 || verticalPadding < 0 || horizontalPadding < 0 ||
        verticalStride < 1 || horizontalStride < 1 || mode < CUDNN_POOLING_MAX ||
        mode > CUDNN_POOLING_MAX_DETERMINISTIC ||
        (maxpoolingNanOpt != CUDNN_NOT_PROPAGATE_NAN && maxpoolingNanOpt != CUDNN_PROPAGATE_NAN)) {
        fake_cuda_report("cudnnSetPooling2dDescriptor",
                         "bad pooling: mode %d, nan %d, window %dx%d, pad %d %d, stride %d %d",
                         (int)mode, (int)maxpoolingNanOpt, windowHeight, windowWidth,
                         verticalPadding, horizontalPadding, verticalStride, horizontalStride);
        return CUDNN_STATUS_BAD_PARAM;
    }
    *poolingDesc = (struct cudnnPoolingStruct){1,
                                               mode,
                                               maxpoolingNanOpt,
                                               windowHeight,
                                               windowWidth,
                                               verticalPadding,
                                               horizontalPadding,
                                               verticalStride,
                                               horizontalStride};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetLRNDescriptor(cudnnLRNDescriptor_t normDesc, unsigned lrnN, double lrnAlpha,
                                    double lrnBeta, double lrnK) {
    if (!normDesc) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (lrnN < CUDNN_LRN_MIN_N || lrnN > CUDNN_LRN_MAX_N || lrnK < CUDNN_LRN_MIN_K ||
        lrnBeta < CUDNN_LRN_MIN_BETA) {
        fake_cuda_report(
            "cudnnSetLRNDescriptor", "n %u (must be %d to %d), k %g (>= %g), beta %g (>= %g)", lrnN,
            CUDNN_LRN_MIN_N, CUDNN_LRN_MAX_N, lrnK, CUDNN_LRN_MIN_K, lrnBeta, CUDNN_LRN_MIN_BETA);
        return CUDNN_STATUS_BAD_PARAM;
    }
    *normDesc = (struct cudnnLRNStruct){lrnN, lrnAlpha, lrnBeta, lrnK};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetActivationDescriptor(cudnnActivationDescriptor_t activationDesc,
                                           cudnnActivationMode_t mode,
                                           cudnnNanPropagation_t reluNanOpt, double coef) {
    if (!activationDesc) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (mode < CUDNN_ACTIVATION_SIGMOID || mode > CUDNN_ACTIVATION_SWISH ||
        (reluNanOpt != CUDNN_NOT_PROPAGATE_NAN && reluNanOpt != CUDNN_PROPAGATE_NAN))
        return bad("cudnnSetActivationDescriptor", "not an activation mode or NaN option");
    *activationDesc = (struct cudnnActivationStruct){1, mode, reluNanOpt, coef};
    return CUDNN_STATUS_SUCCESS;
}

/* ------------------------------------------------ tensors in device memory */

static cudnnStatus_t tensor_ok(const char *call, const char *what, cudnnTensorDescriptor_t t) {
    if (!t) {
        fake_cuda_report(call, "%s descriptor is NULL", what);
        return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    }
    if (!t->set) {
        fake_cuda_report(call, "%s descriptor was never set", what);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (t->type != CUDNN_DATA_FLOAT) {
        fake_cuda_report(call, "%s: data type %d (the fake computes float only)", what,
                         (int)t->type);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    return CUDNN_STATUS_SUCCESS;
}

static size_t tensor_extent(cudnnTensorDescriptor_t t) {
    return 1 + (size_t)(t->n - 1) * t->ns + (size_t)(t->c - 1) * t->cs +
           (size_t)(t->h - 1) * t->hs + (size_t)(t->w - 1) * t->ws;
}

static size_t tensor_count(cudnnTensorDescriptor_t t) {
    return (size_t)t->n * t->c * t->h * t->w;
}

static int same_dims(cudnnTensorDescriptor_t a, cudnnTensorDescriptor_t b) {
    return a->n == b->n && a->c == b->c && a->h == b->h && a->w == b->w;
}

static cudnnStatus_t dims_match(const char *call, const char *an, cudnnTensorDescriptor_t a,
                                const char *bn, cudnnTensorDescriptor_t b) {
    if (same_dims(a, b)) return CUDNN_STATUS_SUCCESS;
    fake_cuda_report(call, "%s is %dx%dx%dx%d but %s is %dx%dx%dx%d", an, a->n, a->c, a->h, a->w,
                     bn, b->n, b->c, b->h, b->w);
    return CUDNN_STATUS_BAD_PARAM;
}

/* The device memory of a tensor: the whole strided extent on the handle's
 * device. */
static cudnnStatus_t tensor_mem(const char *call, cudnnHandle_t h, const char *what,
                                cudnnTensorDescriptor_t t, const void *p) {
    if (!p) {
        fake_cuda_report(call, "%s is NULL", what);
        return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    }
    if (fake_cuda_check_ptr(call, what, p, tensor_extent(t) * sizeof(float), h->device))
        return CUDNN_STATUS_EXECUTION_FAILED;
    return CUDNN_STATUS_SUCCESS;
}

static size_t toff(cudnnTensorDescriptor_t t, int n, int c, int h, int w) {
    return (size_t)n * t->ns + (size_t)c * t->cs + (size_t)h * t->hs + (size_t)w * t->ws;
}

/* A tensor copied into packed NCHW order (NULL: out of host memory). */
static float *gather(cudnnTensorDescriptor_t t, const float *p) {
    float *out = malloc(tensor_count(t) * sizeof(float)), *o = out;
    if (!out) return NULL;
    for (int n = 0; n < t->n; n++)
        for (int c = 0; c < t->c; c++)
            for (int h = 0; h < t->h; h++)
                for (int w = 0; w < t->w; w++)
                    *o++ = p[toff(t, n, c, h, w)];
    return out;
}

/* p = alpha * packed + beta * p over the tensor. */
static void scatter(cudnnTensorDescriptor_t t, float *p, const float *packed, float alpha,
                    float beta) {
    for (int n = 0; n < t->n; n++)
        for (int c = 0; c < t->c; c++)
            for (int h = 0; h < t->h; h++)
                for (int w = 0; w < t->w; w++) {
                    float *q = p + toff(t, n, c, h, w);
                    *q = blend(alpha, *packed++, beta, *q);
                }
}

/* ------------------------------------------------------------- add tensor */

cudnnStatus_t cudnnAddTensor(cudnnHandle_t handle, const void *alpha,
                             const cudnnTensorDescriptor_t aDesc, const void *A, const void *beta,
                             const cudnnTensorDescriptor_t cDesc, void *C) {
    const char *call = "cudnnAddTensor";
    float al, be;
    TRY(enter(call, handle));
    TRY(tensor_ok(call, "aDesc", aDesc));
    TRY(tensor_ok(call, "cDesc", cDesc));
    TRY(scalars(call, alpha, beta, &al, &be));
    /* Each dimension of A equals C's or is 1 (broadcast). */
    int ad[4] = {aDesc->n, aDesc->c, aDesc->h, aDesc->w},
        cd[4] = {cDesc->n, cDesc->c, cDesc->h, cDesc->w};
    for (int i = 0; i < 4; i++)
        if (ad[i] != cd[i] && ad[i] != 1) {
            fake_cuda_report(call, "A %dx%dx%dx%d does not broadcast to C %dx%dx%dx%d", ad[0],
                             ad[1], ad[2], ad[3], cd[0], cd[1], cd[2], cd[3]);
            return CUDNN_STATUS_BAD_PARAM;
        }
    TRY(tensor_mem(call, handle, "A", aDesc, A));
    TRY(tensor_mem(call, handle, "C", cDesc, C));
    const float *a = A;
    float *c = C;
    for (int n = 0; n < cd[0]; n++)
        for (int ch = 0; ch < cd[1]; ch++)
            for (int h = 0; h < cd[2]; h++)
                for (int w = 0; w < cd[3]; w++) {
                    float av = a[toff(aDesc, ad[0] == 1 ? 0 : n, ad[1] == 1 ? 0 : ch,
                                      ad[2] == 1 ? 0 : h, ad[3] == 1 ? 0 : w)];
                    float *q = c + toff(cDesc, n, ch, h, w);
                    *q = blend(al, av, be, *q);
                }
    return CUDNN_STATUS_SUCCESS;
}

/* ------------------------------------------------------------ convolution */

typedef struct conv_geom {
    int n, c, h, w; /* input */
    int k, r, s;    /* filters: k of (c / groups) x r x s */
    int oh, ow;     /* output */
    int groups;
    int ph, pw, u, v, dh, dw;
    int flip; /* CUDNN_CONVOLUTION: the filter is applied flipped */
} conv_geom_t;

static cudnnStatus_t filter_ok(const char *call, const char *what, cudnnFilterDescriptor_t f) {
    if (!f) {
        fake_cuda_report(call, "%s descriptor is NULL", what);
        return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    }
    if (!f->set) {
        fake_cuda_report(call, "%s descriptor was never set", what);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (f->type != CUDNN_DATA_FLOAT) {
        fake_cuda_report(call, "%s: data type %d (the fake computes float only)", what,
                         (int)f->type);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    return CUDNN_STATUS_SUCCESS;
}

/* The geometry of x (*) w under conv; y, when given, must be its output. */
static cudnnStatus_t conv_geom(const char *call, cudnnTensorDescriptor_t x,
                               cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t conv,
                               cudnnTensorDescriptor_t y, const char *yname, conv_geom_t *g) {
    TRY(tensor_ok(call, "input", x));
    TRY(filter_ok(call, "filter", w));
    if (!conv) {
        fake_cuda_report(call, "convolution descriptor is NULL");
        return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    }
    if (!conv->set) return bad(call, "convolution descriptor was never set");
    if (x->c != w->c * conv->groups || w->k % conv->groups) {
        fake_cuda_report(call,
                         "input has %d channels, filter %d x %d channels in %d groups (needs "
                         "input channels = filter channels x groups, and output channels "
                         "divisible by groups)",
                         x->c, w->k, w->c, conv->groups);
        return CUDNN_STATUS_BAD_PARAM;
    }
    g->n = x->n, g->c = x->c, g->h = x->h, g->w = x->w;
    g->k = w->k, g->r = w->h, g->s = w->w;
    g->groups = conv->groups;
    g->ph = conv->pad_h, g->pw = conv->pad_w, g->u = conv->u, g->v = conv->v;
    g->dh = conv->dil_h, g->dw = conv->dil_w;
    g->flip = conv->mode == CUDNN_CONVOLUTION;
    int eh = (g->r - 1) * g->dh + 1, ew = (g->s - 1) * g->dw + 1;
    if (g->h + 2 * g->ph < eh || g->w + 2 * g->pw < ew) {
        fake_cuda_report(call, "filter %dx%d (dilated) larger than the padded input %dx%d", eh, ew,
                         g->h + 2 * g->ph, g->w + 2 * g->pw);
        return CUDNN_STATUS_BAD_PARAM;
    }
    g->oh = 1 + (g->h + 2 * g->ph - eh) / g->u;
    g->ow = 1 + (g->w + 2 * g->pw - ew) / g->v;
    if (y) {
        TRY(tensor_ok(call, yname, y));
        if (y->n != g->n || y->c != g->k || y->h != g->oh || y->w != g->ow) {
            fake_cuda_report(call, "%s is %dx%dx%dx%d, the convolution gives %dx%dx%dx%d", yname,
                             y->n, y->c, y->h, y->w, g->n, g->k, g->oh, g->ow);
            return CUDNN_STATUS_BAD_PARAM;
        }
    }
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t convDesc,
                                                    const cudnnTensorDescriptor_t inputTensorDesc,
                                                    const cudnnFilterDescriptor_t filterDesc,
                                                    int *n, int *c, int *h, int *w) {
    const char *call = "cudnnGetConvolution2dForwardOutputDim";
    conv_geom_t g;
    if (!n || !c || !h || !w) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    TRY(conv_geom(call, inputTensorDesc, filterDesc, convDesc, NULL, NULL, &g));
    *n = g.n, *c = g.k, *h = g.oh, *w = g.ow;
    return CUDNN_STATUS_SUCCESS;
}

static size_t filter_count(cudnnFilterDescriptor_t f) {
    return (size_t)f->k * f->c * f->h * f->w;
}

static size_t foff(cudnnFilterDescriptor_t f, int k, int c, int r, int s) {
    if (f->format == CUDNN_TENSOR_NHWC) return (((size_t)k * f->h + r) * f->w + s) * f->c + c;
    return (((size_t)k * f->c + c) * f->h + r) * f->w + s;
}

/* A filter in packed KCRS order, flipped in r and s when `flip`. */
static float *gather_filter(cudnnFilterDescriptor_t f, const float *p, int flip) {
    float *out = malloc(filter_count(f) * sizeof(float)), *o = out;
    if (!out) return NULL;
    for (int k = 0; k < f->k; k++)
        for (int c = 0; c < f->c; c++)
            for (int r = 0; r < f->h; r++)
                for (int s = 0; s < f->w; s++)
                    *o++ = p[foff(f, k, c, flip ? f->h - 1 - r : r, flip ? f->w - 1 - s : s)];
    return out;
}

static void scatter_filter(cudnnFilterDescriptor_t f, float *p, const float *packed, int flip,
                           float alpha, float beta) {
    for (int k = 0; k < f->k; k++)
        for (int c = 0; c < f->c; c++)
            for (int r = 0; r < f->h; r++)
                for (int s = 0; s < f->w; s++) {
                    float *q = p + foff(f, k, c, flip ? f->h - 1 - r : r, flip ? f->w - 1 - s : s);
                    *q = blend(alpha, *packed++, beta, *q);
                }
}

/* The output columns [lo, hi) whose input column ow * stride + off lies in
 * [0, in). */
static void col_range(int off, int stride, int in, int out, int *lo, int *hi) {
    int l = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int h = in - 1 - off >= 0 ? (in - 1 - off) / stride + 1 : 0;
    *lo = l < out ? l : out;
    *hi = h < out ? h : out;
    if (*hi < *lo) *hi = *lo;
}

/* y (n, k, oh, ow) = cross-correlation of packed x and packed w. Loops keep
 * one output plane hot and run the innermost loop along a row. */
static void conv_forward_core(const conv_geom_t *g, const float *x, const float *w, float *y) {
    const int cg = g->c / g->groups, kg = g->k / g->groups;
    const size_t in_plane = (size_t)g->h * g->w, out_plane = (size_t)g->oh * g->ow;
    for (int n = 0; n < g->n; n++)
        for (int k = 0; k < g->k; k++) {
            float *yp = y + ((size_t)n * g->k + k) * out_plane;
            memset(yp, 0, out_plane * sizeof(float));
            const int c0 = (k / kg) * cg;
            for (int c = 0; c < cg; c++) {
                const float *xp = x + ((size_t)n * g->c + c0 + c) * in_plane;
                const float *wp = w + ((size_t)k * cg + c) * g->r * g->s;
                for (int r = 0; r < g->r; r++)
                    for (int s = 0; s < g->s; s++) {
                        const float wv = wp[r * g->s + s];
                        const int off = s * g->dw - g->pw;
                        int lo, hi;
                        col_range(off, g->v, g->w, g->ow, &lo, &hi);
                        for (int oh = 0; oh < g->oh; oh++) {
                            const int ih = oh * g->u - g->ph + r * g->dh;
                            if (ih < 0 || ih >= g->h) continue;
                            const float *xr = xp + (size_t)ih * g->w + off;
                            float *yr = yp + (size_t)oh * g->ow;
                            if (g->v == 1)
                                for (int ow = lo; ow < hi; ow++)
                                    yr[ow] += wv * xr[ow];
                            else
                                for (int ow = lo; ow < hi; ow++)
                                    yr[ow] += wv * xr[ow * g->v];
                        }
                    }
            }
        }
}

/* dx (n, c, h, w) from dy and packed w: the transpose of the forward. */
static void conv_backward_data_core(const conv_geom_t *g, const float *w, const float *dy,
                                    float *dx) {
    const int cg = g->c / g->groups, kg = g->k / g->groups;
    const size_t in_plane = (size_t)g->h * g->w, out_plane = (size_t)g->oh * g->ow;
    for (int n = 0; n < g->n; n++)
        for (int c = 0; c < g->c; c++) {
            float *dxp = dx + ((size_t)n * g->c + c) * in_plane;
            memset(dxp, 0, in_plane * sizeof(float));
            const int grp = c / cg, cc = c % cg;
            for (int k = grp * kg; k < (grp + 1) * kg; k++) {
                const float *dyp = dy + ((size_t)n * g->k + k) * out_plane;
                const float *wp = w + ((size_t)k * cg + cc) * g->r * g->s;
                for (int r = 0; r < g->r; r++)
                    for (int s = 0; s < g->s; s++) {
                        const float wv = wp[r * g->s + s];
                        const int off = s * g->dw - g->pw;
                        int lo, hi;
                        col_range(off, g->v, g->w, g->ow, &lo, &hi);
                        for (int oh = 0; oh < g->oh; oh++) {
                            const int ih = oh * g->u - g->ph + r * g->dh;
                            if (ih < 0 || ih >= g->h) continue;
                            float *xr = dxp + (size_t)ih * g->w + off;
                            const float *dyr = dyp + (size_t)oh * g->ow;
                            if (g->v == 1)
                                for (int ow = lo; ow < hi; ow++)
                                    xr[ow] += wv * dyr[ow];
                            else
                                for (int ow = lo; ow < hi; ow++)
                                    xr[ow * g->v] += wv * dyr[ow];
                        }
                    }
            }
        }
}

/* dw (k, c / groups, r, s) from packed x and dy: per filter tap, a sum over
 * images and output rows, kept in one partial sum per output column. */
static void conv_backward_filter_core(const conv_geom_t *g, const float *x, const float *dy,
                                      float *dw, float *lanes) {
    const int cg = g->c / g->groups, kg = g->k / g->groups;
    const size_t in_plane = (size_t)g->h * g->w, out_plane = (size_t)g->oh * g->ow;
    for (int k = 0; k < g->k; k++) {
        const int c0 = (k / kg) * cg;
        for (int c = 0; c < cg; c++)
            for (int r = 0; r < g->r; r++)
                for (int s = 0; s < g->s; s++) {
                    const int off = s * g->dw - g->pw;
                    int lo, hi;
                    col_range(off, g->v, g->w, g->ow, &lo, &hi);
                    memset(lanes, 0, (size_t)g->ow * sizeof(float));
                    for (int n = 0; n < g->n; n++) {
                        const float *xp = x + ((size_t)n * g->c + c0 + c) * in_plane;
                        const float *dyp = dy + ((size_t)n * g->k + k) * out_plane;
                        for (int oh = 0; oh < g->oh; oh++) {
                            const int ih = oh * g->u - g->ph + r * g->dh;
                            if (ih < 0 || ih >= g->h) continue;
                            const float *xr = xp + (size_t)ih * g->w + off;
                            const float *dyr = dyp + (size_t)oh * g->ow;
                            if (g->v == 1)
                                for (int ow = lo; ow < hi; ow++)
                                    lanes[ow] += dyr[ow] * xr[ow];
                            else
                                for (int ow = lo; ow < hi; ow++)
                                    lanes[ow] += dyr[ow] * xr[ow * g->v];
                        }
                    }
                    float sum = 0.0f;
                    for (int ow = 0; ow < g->ow; ow++)
                        sum += lanes[ow];
                    dw[(((size_t)k * cg + c) * g->r + r) * g->s + s] = sum;
                }
    }
}

/* --------------------------------------------- algorithms and workspaces */

/* One entry of the fake's algorithm table. */
typedef struct algo_entry {
    int algo;
    cudnnStatus_t status;
    float time; /* ms: invented, only the order means anything */
    size_t memory;
    cudnnDeterminism_t determinism;
    cudnnMathType_t math;
} algo_entry_t;

#define HUGE_WORKSPACE ((size_t)3 << 30) /* more than any sane workspace limit */
#define MAX_ENTRIES 8

/* The table for one direction (0 forward, 1 backward data, 2 backward
 * filter), fastest first, unsupported last. Workspace sizes grow with the
 * layer so that a caller that reuses a too-small workspace is caught. */
static int algo_table(int dir, const conv_geom_t *g, algo_entry_t *t) {
    const size_t taps = (size_t)(g->c / g->groups) * g->r * g->s;
    const size_t columns = taps * g->oh * g->ow * sizeof(float); /* one image's im2col */
    const size_t indices = taps * sizeof(int);
    const cudnnStatus_t ok = CUDNN_STATUS_SUCCESS, no = CUDNN_STATUS_NOT_SUPPORTED;
    const cudnnDeterminism_t det = CUDNN_DETERMINISTIC, nondet = CUDNN_NON_DETERMINISTIC;
    int n = 0;
    if (dir == 0) {
        t[n++] = (algo_entry_t){CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                                ok,
                                0.5f,
                                indices,
                                det,
                                CUDNN_TENSOR_OP_MATH};
        t[n++] = (algo_entry_t){
            CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING, ok, 0.8f, HUGE_WORKSPACE, det, CUDNN_FMA_MATH};
        t[n++] =
            (algo_entry_t){CUDNN_CONVOLUTION_FWD_ALGO_GEMM, ok, 1.0f, columns, det, CUDNN_FMA_MATH};
        t[n++] = (algo_entry_t){CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                                ok,
                                1.5f,
                                indices,
                                det,
                                CUDNN_FMA_MATH};
        t[n++] = (algo_entry_t){
            CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, ok, 2.0f, 0, det, CUDNN_FMA_MATH};
        t[n++] =
            (algo_entry_t){CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, no, -1.0f, 0, det, CUDNN_FMA_MATH};
    } else if (dir == 1) {
        t[n++] = (algo_entry_t){
            CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, ok, 0.5f, indices, det, CUDNN_TENSOR_OP_MATH};
        t[n++] = (algo_entry_t){CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
                                ok,
                                0.8f,
                                HUGE_WORKSPACE,
                                det,
                                CUDNN_FMA_MATH};
        t[n++] = (algo_entry_t){
            CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, ok, 1.0f, columns, det, CUDNN_FMA_MATH};
        t[n++] =
            (algo_entry_t){CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, ok, 1.5f, 0, nondet, CUDNN_FMA_MATH};
        t[n++] = (algo_entry_t){
            CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD, no, -1.0f, 0, det, CUDNN_FMA_MATH};
    } else {
        t[n++] = (algo_entry_t){
            CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, ok, 0.5f, indices, det, CUDNN_TENSOR_OP_MATH};
        t[n++] = (algo_entry_t){CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING,
                                ok,
                                0.8f,
                                HUGE_WORKSPACE,
                                det,
                                CUDNN_FMA_MATH};
        t[n++] = (algo_entry_t){
            CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, ok, 1.0f, columns, nondet, CUDNN_FMA_MATH};
        t[n++] = (algo_entry_t){
            CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, ok, 1.5f, indices, det, CUDNN_FMA_MATH};
        t[n++] = (algo_entry_t){
            CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, ok, 2.0f, 0, nondet, CUDNN_FMA_MATH};
        t[n++] = (algo_entry_t){
            CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, no, -1.0f, 0, det, CUDNN_FMA_MATH};
    }
    return n;
}

static int algo_count(int dir) {
    return dir == 0   ? CUDNN_CONVOLUTION_FWD_ALGO_COUNT
           : dir == 1 ? CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT
                      : CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
}

/* The workspace `algo` needs: the largest of its table entries (the
 * tensor-op and FMA variants of one algorithm may differ). */
static cudnnStatus_t algo_workspace(const char *call, int dir, const conv_geom_t *g, int algo,
                                    size_t *bytes) {
    algo_entry_t t[MAX_ENTRIES];
    int n = algo_table(dir, g, t), found = 0;
    if (algo < 0 || algo >= algo_count(dir)) {
        fake_cuda_report(call, "algorithm %d is not one of the %d of this direction", algo,
                         algo_count(dir));
        return CUDNN_STATUS_BAD_PARAM;
    }
    *bytes = 0;
    for (int i = 0; i < n; i++)
        if (t[i].algo == algo && t[i].status == CUDNN_STATUS_SUCCESS) {
            found = 1;
            if (t[i].memory > *bytes) *bytes = t[i].memory;
        }
    if (!found) {
        fake_cuda_report(call, "algorithm %d does not support this convolution", algo);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    return CUDNN_STATUS_SUCCESS;
}

/* The workspace handed to a computation: large enough for the algorithm
 * and in device memory of the handle's device; its contents are then
 * overwritten, as the algorithm would. */
static cudnnStatus_t use_workspace(const char *call, cudnnHandle_t h, int dir, const conv_geom_t *g,
                                   int algo, void *ws, size_t ws_bytes) {
    size_t need;
    TRY(algo_workspace(call, dir, g, algo, &need));
    if (ws_bytes < need) {
        fake_cuda_report(call, "algorithm %d needs %zu bytes of workspace, %zu given", algo, need,
                         ws_bytes);
        return CUDNN_STATUS_BAD_PARAM;
    }
    if (ws_bytes > 0 && !ws) {
        fake_cuda_report(call, "workspace is NULL with a size of %zu bytes", ws_bytes);
        return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    }
    if (need > 0) {
        if (fake_cuda_check_ptr(call, "workSpace", ws, need, h->device))
            return CUDNN_STATUS_EXECUTION_FAILED;
        fake_cuda_scribble(ws, need);
    }
    return CUDNN_STATUS_SUCCESS;
}

/* The v7 queries: every algorithm of the table, best first. The perf
 * structs of the three directions share one layout; fill through a macro. */
#define FILL_PERF(perf, t, got)                                                                    \
    do {                                                                                           \
        for (int i_ = 0; i_ < (got); i_++) {                                                       \
            memset(&(perf)[i_], 0, sizeof(perf)[i_]);                                              \
            (perf)[i_].algo = (t)[i_].algo;                                                        \
            (perf)[i_].status = (t)[i_].status;                                                    \
            (perf)[i_].time = (t)[i_].time;                                                        \
            (perf)[i_].memory = (t)[i_].memory;                                                    \
            (perf)[i_].determinism = (t)[i_].determinism;                                          \
            (perf)[i_].mathType = (t)[i_].math;                                                    \
        }                                                                                          \
    } while (0)

static cudnnStatus_t query_args(const char *call, int requested, const int *returned,
                                const void *perf) {
    if (!returned || !perf) {
        fake_cuda_report(call, "NULL returnedAlgoCount or perfResults");
        return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    }
    if (requested < 1) return bad(call, "requestedAlgoCount below 1");
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
    const cudnnFilterDescriptor_t filterDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t destDesc, const int requestedAlgoCount, int *returnedAlgoCount,
    cudnnConvolutionFwdAlgoPerf_t *perfResults) {
    const char *call = "cudnnGetConvolutionForwardAlgorithm_v7";
    conv_geom_t g;
    algo_entry_t t[MAX_ENTRIES];
    TRY(enter(call, handle));
    TRY(query_args(call, requestedAlgoCount, returnedAlgoCount, perfResults));
    TRY(conv_geom(call, srcDesc, filterDesc, convDesc, destDesc, "destDesc", &g));
    int n = algo_table(0, &g, t);
    if (n > requestedAlgoCount) n = requestedAlgoCount;
    FILL_PERF(perfResults, t, n);
    *returnedAlgoCount = n;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t filterDesc,
    const cudnnTensorDescriptor_t diffDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t gradDesc, const int requestedAlgoCount, int *returnedAlgoCount,
    cudnnConvolutionBwdDataAlgoPerf_t *perfResults) {
    const char *call = "cudnnGetConvolutionBackwardDataAlgorithm_v7";
    conv_geom_t g;
    algo_entry_t t[MAX_ENTRIES];
    TRY(enter(call, handle));
    TRY(query_args(call, requestedAlgoCount, returnedAlgoCount, perfResults));
    TRY(conv_geom(call, gradDesc, filterDesc, convDesc, diffDesc, "diffDesc (dy)", &g));
    int n = algo_table(1, &g, t);
    if (n > requestedAlgoCount) n = requestedAlgoCount;
    FILL_PERF(perfResults, t, n);
    *returnedAlgoCount = n;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
    const cudnnTensorDescriptor_t diffDesc, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnFilterDescriptor_t gradDesc, const int requestedAlgoCount, int *returnedAlgoCount,
    cudnnConvolutionBwdFilterAlgoPerf_t *perfResults) {
    const char *call = "cudnnGetConvolutionBackwardFilterAlgorithm_v7";
    conv_geom_t g;
    algo_entry_t t[MAX_ENTRIES];
    TRY(enter(call, handle));
    TRY(query_args(call, requestedAlgoCount, returnedAlgoCount, perfResults));
    TRY(conv_geom(call, srcDesc, gradDesc, convDesc, diffDesc, "diffDesc (dy)", &g));
    int n = algo_table(2, &g, t);
    if (n > requestedAlgoCount) n = requestedAlgoCount;
    FILL_PERF(perfResults, t, n);
    *returnedAlgoCount = n;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const cudnnFilterDescriptor_t wDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t yDesc,
    cudnnConvolutionFwdAlgo_t algo, size_t *sizeInBytes) {
    const char *call = "cudnnGetConvolutionForwardWorkspaceSize";
    conv_geom_t g;
    TRY(enter(call, handle));
    if (!sizeInBytes) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    TRY(conv_geom(call, xDesc, wDesc, convDesc, yDesc, "yDesc", &g));
    return algo_workspace(call, 0, &g, (int)algo, sizeInBytes);
}

cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc, const cudnnTensorDescriptor_t dyDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t dxDesc,
    cudnnConvolutionBwdDataAlgo_t algo, size_t *sizeInBytes) {
    const char *call = "cudnnGetConvolutionBackwardDataWorkspaceSize";
    conv_geom_t g;
    TRY(enter(call, handle));
    if (!sizeInBytes) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    TRY(conv_geom(call, dxDesc, wDesc, convDesc, dyDesc, "dyDesc", &g));
    return algo_workspace(call, 1, &g, (int)algo, sizeInBytes);
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const cudnnTensorDescriptor_t dyDesc,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnFilterDescriptor_t gradDesc,
    cudnnConvolutionBwdFilterAlgo_t algo, size_t *sizeInBytes) {
    const char *call = "cudnnGetConvolutionBackwardFilterWorkspaceSize";
    conv_geom_t g;
    TRY(enter(call, handle));
    if (!sizeInBytes) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    TRY(conv_geom(call, xDesc, gradDesc, convDesc, dyDesc, "dyDesc", &g));
    return algo_workspace(call, 2, &g, (int)algo, sizeInBytes);
}

/* The filter's device memory. */
static cudnnStatus_t filter_mem(const char *call, cudnnHandle_t h, const char *what,
                                cudnnFilterDescriptor_t f, const void *p) {
    if (!p) {
        fake_cuda_report(call, "%s is NULL", what);
        return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    }
    if (fake_cuda_check_ptr(call, what, p, filter_count(f) * sizeof(float), h->device))
        return CUDNN_STATUS_EXECUTION_FAILED;
    return CUDNN_STATUS_SUCCESS;
}

/* The three computations, on checked arguments: out = alpha result + beta out. */
static cudnnStatus_t run_forward(const conv_geom_t *g, cudnnTensorDescriptor_t xd, const float *x,
                                 cudnnFilterDescriptor_t wd, const float *w,
                                 cudnnTensorDescriptor_t yd, float *y, float alpha, float beta) {
    float *px = gather(xd, x), *pw = gather_filter(wd, w, g->flip),
          *py = malloc(tensor_count(yd) * sizeof(float));
    cudnnStatus_t s = CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    if (px && pw && py) {
        conv_forward_core(g, px, pw, py);
        scatter(yd, y, py, alpha, beta);
        s = CUDNN_STATUS_SUCCESS;
    }
    free(px);
    free(pw);
    free(py);
    return s;
}

static cudnnStatus_t run_backward_data(const conv_geom_t *g, cudnnFilterDescriptor_t wd,
                                       const float *w, cudnnTensorDescriptor_t dyd, const float *dy,
                                       cudnnTensorDescriptor_t dxd, float *dx, float alpha,
                                       float beta) {
    float *pw = gather_filter(wd, w, g->flip), *pdy = gather(dyd, dy),
          *pdx = malloc(tensor_count(dxd) * sizeof(float));
    cudnnStatus_t s = CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    if (pw && pdy && pdx) {
        conv_backward_data_core(g, pw, pdy, pdx);
        scatter(dxd, dx, pdx, alpha, beta);
        s = CUDNN_STATUS_SUCCESS;
    }
    free(pw);
    free(pdy);
    free(pdx);
    return s;
}

static cudnnStatus_t run_backward_filter(const conv_geom_t *g, cudnnTensorDescriptor_t xd,
                                         const float *x, cudnnTensorDescriptor_t dyd,
                                         const float *dy, cudnnFilterDescriptor_t dwd, float *dw,
                                         float alpha, float beta) {
    float *px = gather(xd, x), *pdy = gather(dyd, dy),
          *pdw = malloc(filter_count(dwd) * sizeof(float)),
          *lanes = malloc((size_t)g->ow * sizeof(float));
    cudnnStatus_t s = CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    if (px && pdy && pdw && lanes) {
        conv_backward_filter_core(g, px, pdy, pdw, lanes);
        scatter_filter(dwd, dw, pdw, g->flip, alpha, beta);
        s = CUDNN_STATUS_SUCCESS;
    }
    free(px);
    free(pdy);
    free(pdw);
    free(lanes);
    return s;
}

/* The operands of each direction, shared by the computation and its Find:
 * the geometry, then every buffer inside an allocation of the handle's
 * device. */
static cudnnStatus_t fwd_operands(const char *call, cudnnHandle_t h, cudnnTensorDescriptor_t xd,
                                  const void *x, cudnnFilterDescriptor_t wd, const void *w,
                                  cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t yd,
                                  const void *y, conv_geom_t *g) {
    TRY(conv_geom(call, xd, wd, conv, yd, "yDesc", g));
    TRY(tensor_mem(call, h, "x", xd, x));
    TRY(filter_mem(call, h, "w", wd, w));
    return tensor_mem(call, h, "y", yd, y);
}

static cudnnStatus_t data_operands(const char *call, cudnnHandle_t h, cudnnFilterDescriptor_t wd,
                                   const void *w, cudnnTensorDescriptor_t dyd, const void *dy,
                                   cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t dxd,
                                   const void *dx, conv_geom_t *g) {
    TRY(conv_geom(call, dxd, wd, conv, dyd, "dyDesc", g));
    TRY(filter_mem(call, h, "w", wd, w));
    TRY(tensor_mem(call, h, "dy", dyd, dy));
    return tensor_mem(call, h, "dx", dxd, dx);
}

static cudnnStatus_t filter_operands(const char *call, cudnnHandle_t h, cudnnTensorDescriptor_t xd,
                                     const void *x, cudnnTensorDescriptor_t dyd, const void *dy,
                                     cudnnConvolutionDescriptor_t conv, cudnnFilterDescriptor_t dwd,
                                     const void *dw, conv_geom_t *g) {
    TRY(conv_geom(call, xd, dwd, conv, dyd, "dyDesc", g));
    TRY(tensor_mem(call, h, "x", xd, x));
    TRY(tensor_mem(call, h, "dy", dyd, dy));
    return filter_mem(call, h, "dw", dwd, dw);
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void *alpha,
                                      const cudnnTensorDescriptor_t xDesc, const void *x,
                                      const cudnnFilterDescriptor_t wDesc, const void *w,
                                      const cudnnConvolutionDescriptor_t convDesc,
                                      cudnnConvolutionFwdAlgo_t algo, void *workSpace,
                                      size_t workSpaceSizeInBytes, const void *beta,
                                      const cudnnTensorDescriptor_t yDesc, void *y) {
    const char *call = "cudnnConvolutionForward";
    conv_geom_t g;
    float al, be;
    TRY(enter(call, handle));
    TRY(scalars(call, alpha, beta, &al, &be));
    TRY(fwd_operands(call, handle, xDesc, x, wDesc, w, convDesc, yDesc, y, &g));
    TRY(use_workspace(call, handle, 0, &g, (int)algo, workSpace, workSpaceSizeInBytes));
    return run_forward(&g, xDesc, x, wDesc, w, yDesc, y, al, be);
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t handle, const void *alpha,
                                           const cudnnFilterDescriptor_t wDesc, const void *w,
                                           const cudnnTensorDescriptor_t dyDesc, const void *dy,
                                           const cudnnConvolutionDescriptor_t convDesc,
                                           cudnnConvolutionBwdDataAlgo_t algo, void *workSpace,
                                           size_t workSpaceSizeInBytes, const void *beta,
                                           const cudnnTensorDescriptor_t dxDesc, void *dx) {
    const char *call = "cudnnConvolutionBackwardData";
    conv_geom_t g;
    float al, be;
    TRY(enter(call, handle));
    TRY(scalars(call, alpha, beta, &al, &be));
    TRY(data_operands(call, handle, wDesc, w, dyDesc, dy, convDesc, dxDesc, dx, &g));
    TRY(use_workspace(call, handle, 1, &g, (int)algo, workSpace, workSpaceSizeInBytes));
    return run_backward_data(&g, wDesc, w, dyDesc, dy, dxDesc, dx, al, be);
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t handle, const void *alpha,
                                             const cudnnTensorDescriptor_t xDesc, const void *x,
                                             const cudnnTensorDescriptor_t dyDesc, const void *dy,
                                             const cudnnConvolutionDescriptor_t convDesc,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void *workSpace,
                                             size_t workSpaceSizeInBytes, const void *beta,
                                             const cudnnFilterDescriptor_t dwDesc, void *dw) {
    const char *call = "cudnnConvolutionBackwardFilter";
    conv_geom_t g;
    float al, be;
    TRY(enter(call, handle));
    TRY(scalars(call, alpha, beta, &al, &be));
    TRY(filter_operands(call, handle, xDesc, x, dyDesc, dy, convDesc, dwDesc, dw, &g));
    TRY(use_workspace(call, handle, 2, &g, (int)algo, workSpace, workSpaceSizeInBytes));
    return run_backward_filter(&g, xDesc, x, dyDesc, dy, dwDesc, dw, al, be);
}

cudnnStatus_t cudnnConvolutionBackwardBias(cudnnHandle_t handle, const void *alpha,
                                           const cudnnTensorDescriptor_t dyDesc, const void *dy,
                                           const void *beta, const cudnnTensorDescriptor_t dbDesc,
                                           void *db) {
    const char *call = "cudnnConvolutionBackwardBias";
    float al, be;
    TRY(enter(call, handle));
    TRY(scalars(call, alpha, beta, &al, &be));
    TRY(tensor_ok(call, "dyDesc", dyDesc));
    TRY(tensor_ok(call, "dbDesc", dbDesc));
    if (dbDesc->n != 1 || dbDesc->c != dyDesc->c || dbDesc->h != 1 || dbDesc->w != 1) {
        fake_cuda_report(call, "db is %dx%dx%dx%d, expected 1x%dx1x1 for dy's channels", dbDesc->n,
                         dbDesc->c, dbDesc->h, dbDesc->w, dyDesc->c);
        return CUDNN_STATUS_BAD_PARAM;
    }
    TRY(tensor_mem(call, handle, "dy", dyDesc, dy));
    TRY(tensor_mem(call, handle, "db", dbDesc, db));
    const float *g = dy;
    float *out = db;
    for (int c = 0; c < dyDesc->c; c++) {
        float sum = 0.0f;
        for (int n = 0; n < dyDesc->n; n++)
            for (int h = 0; h < dyDesc->h; h++)
                for (int w = 0; w < dyDesc->w; w++)
                    sum += g[toff(dyDesc, n, c, h, w)];
        float *q = out + toff(dbDesc, 0, c, 0, 0);
        *q = blend(al, sum, be, *q);
    }
    return CUDNN_STATUS_SUCCESS;
}

/* Find*Ex: every supported algorithm that fits the given workspace "runs"
 * (they compute the same here, so once), the results sorted fastest first;
 * afterwards the output holds arbitrary values, as documented. */
static int find_results(int dir, const conv_geom_t *g, size_t ws_bytes, int requested,
                        algo_entry_t *t) {
    int n = algo_table(dir, g, t);
    for (int i = 0; i < n; i++)
        if (t[i].status == CUDNN_STATUS_SUCCESS && t[i].memory > ws_bytes) {
            t[i].status = CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED;
            t[i].time = -1.0f;
        }
    /* stable: successes in time order first */
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0; j--) {
            int a_ok = t[j - 1].status == CUDNN_STATUS_SUCCESS,
                b_ok = t[j].status == CUDNN_STATUS_SUCCESS;
            if (a_ok || !b_ok) break;
            algo_entry_t tmp = t[j - 1];
            t[j - 1] = t[j];
            t[j] = tmp;
        }
    return n < requested ? n : requested;
}

static cudnnStatus_t find_workspace(const char *call, cudnnHandle_t h, void *ws, size_t bytes) {
    if (bytes == 0) return CUDNN_STATUS_SUCCESS;
    if (!ws) {
        fake_cuda_report(call, "workspace is NULL with a size of %zu bytes", bytes);
        return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    }
    if (fake_cuda_check_ptr(call, "workSpace", ws, bytes, h->device))
        return CUDNN_STATUS_EXECUTION_FAILED;
    fake_cuda_scribble(ws, bytes);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const void *x,
    const cudnnFilterDescriptor_t wDesc, const void *w, const cudnnConvolutionDescriptor_t convDesc,
    const cudnnTensorDescriptor_t yDesc, void *y, const int requestedAlgoCount,
    int *returnedAlgoCount, cudnnConvolutionFwdAlgoPerf_t *perfResults, void *workSpace,
    size_t workSpaceSizeInBytes) {
    const char *call = "cudnnFindConvolutionForwardAlgorithmEx";
    conv_geom_t g;
    algo_entry_t t[MAX_ENTRIES];
    TRY(enter(call, handle));
    TRY(query_args(call, requestedAlgoCount, returnedAlgoCount, perfResults));
    TRY(fwd_operands(call, handle, xDesc, x, wDesc, w, convDesc, yDesc, y, &g));
    TRY(find_workspace(call, handle, workSpace, workSpaceSizeInBytes));
    TRY(run_forward(&g, xDesc, x, wDesc, w, yDesc, y, 1.0f, 0.0f));
    fake_cuda_scribble(y, tensor_extent(yDesc) * sizeof(float));
    int n = find_results(0, &g, workSpaceSizeInBytes, requestedAlgoCount, t);
    FILL_PERF(perfResults, t, n);
    *returnedAlgoCount = n;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithmEx(
    cudnnHandle_t handle, const cudnnFilterDescriptor_t wDesc, const void *w,
    const cudnnTensorDescriptor_t dyDesc, const void *dy,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnTensorDescriptor_t dxDesc, void *dx,
    const int requestedAlgoCount, int *returnedAlgoCount,
    cudnnConvolutionBwdDataAlgoPerf_t *perfResults, void *workSpace, size_t workSpaceSizeInBytes) {
    const char *call = "cudnnFindConvolutionBackwardDataAlgorithmEx";
    conv_geom_t g;
    algo_entry_t t[MAX_ENTRIES];
    TRY(enter(call, handle));
    TRY(query_args(call, requestedAlgoCount, returnedAlgoCount, perfResults));
    TRY(data_operands(call, handle, wDesc, w, dyDesc, dy, convDesc, dxDesc, dx, &g));
    TRY(find_workspace(call, handle, workSpace, workSpaceSizeInBytes));
    TRY(run_backward_data(&g, wDesc, w, dyDesc, dy, dxDesc, dx, 1.0f, 0.0f));
    fake_cuda_scribble(dx, tensor_extent(dxDesc) * sizeof(float));
    int n = find_results(1, &g, workSpaceSizeInBytes, requestedAlgoCount, t);
    FILL_PERF(perfResults, t, n);
    *returnedAlgoCount = n;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithmEx(
    cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc, const void *x,
    const cudnnTensorDescriptor_t dyDesc, const void *y,
    const cudnnConvolutionDescriptor_t convDesc, const cudnnFilterDescriptor_t dwDesc, void *dw,
    const int requestedAlgoCount, int *returnedAlgoCount,
    cudnnConvolutionBwdFilterAlgoPerf_t *perfResults, void *workSpace,
    size_t workSpaceSizeInBytes) {
    const char *call = "cudnnFindConvolutionBackwardFilterAlgorithmEx";
    conv_geom_t g;
    algo_entry_t t[MAX_ENTRIES];
    TRY(enter(call, handle));
    TRY(query_args(call, requestedAlgoCount, returnedAlgoCount, perfResults));
    TRY(filter_operands(call, handle, xDesc, x, dyDesc, y, convDesc, dwDesc, dw, &g));
    TRY(find_workspace(call, handle, workSpace, workSpaceSizeInBytes));
    TRY(run_backward_filter(&g, xDesc, x, dyDesc, y, dwDesc, dw, 1.0f, 0.0f));
    fake_cuda_scribble(dw, filter_count(dwDesc) * sizeof(float));
    int n = find_results(2, &g, workSpaceSizeInBytes, requestedAlgoCount, t);
    FILL_PERF(perfResults, t, n);
    *returnedAlgoCount = n;
    return CUDNN_STATUS_SUCCESS;
}

/* --------------------------------------------------------- activation */

static cudnnStatus_t activation_ok(const char *call, cudnnActivationDescriptor_t a) {
    if (!a) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    if (!a->set) return bad(call, "activation descriptor was never set");
    if (a->mode != CUDNN_ACTIVATION_RELU && a->mode != CUDNN_ACTIVATION_CLIPPED_RELU &&
        a->mode != CUDNN_ACTIVATION_SIGMOID && a->mode != CUDNN_ACTIVATION_TANH) {
        fake_cuda_report(call,
                         "activation mode %d: the fake has ReLU, clipped ReLU, sigmoid "
                         "and tanh",
                         (int)a->mode);
        return CUDNN_STATUS_NOT_SUPPORTED;
    }
    return CUDNN_STATUS_SUCCESS;
}

static float act(cudnnActivationDescriptor_t a, float x) {
    if (x != x) return a->nan == CUDNN_PROPAGATE_NAN ? x : 0.0f;
    switch (a->mode) {
    case CUDNN_ACTIVATION_RELU:
        return x > 0.0f ? x : 0.0f;
    case CUDNN_ACTIVATION_CLIPPED_RELU:
        return x > 0.0f ? (x < (float)a->coef ? x : (float)a->coef) : 0.0f;
    case CUDNN_ACTIVATION_SIGMOID:
        return 1.0f / (1.0f + expf(-x));
    default:
        return tanhf(x);
    }
}

/* d act / d x at x (output y), times dy. */
static float act_grad(cudnnActivationDescriptor_t a, float x, float y, float dy) {
    switch (a->mode) {
    case CUDNN_ACTIVATION_RELU:
        return x > 0.0f ? dy : 0.0f;
    case CUDNN_ACTIVATION_CLIPPED_RELU:
        return x > 0.0f && x < (float)a->coef ? dy : 0.0f;
    case CUDNN_ACTIVATION_SIGMOID:
        return dy * y * (1.0f - y);
    default:
        return dy * (1.0f - y * y);
    }
}

cudnnStatus_t cudnnActivationForward(cudnnHandle_t handle,
                                     cudnnActivationDescriptor_t activationDesc, const void *alpha,
                                     const cudnnTensorDescriptor_t xDesc, const void *x,
                                     const void *beta, const cudnnTensorDescriptor_t yDesc,
                                     void *y) {
    const char *call = "cudnnActivationForward";
    float al, be;
    TRY(enter(call, handle));
    TRY(activation_ok(call, activationDesc));
    TRY(scalars(call, alpha, beta, &al, &be));
    TRY(tensor_ok(call, "xDesc", xDesc));
    TRY(tensor_ok(call, "yDesc", yDesc));
    TRY(dims_match(call, "x", xDesc, "y", yDesc));
    TRY(tensor_mem(call, handle, "x", xDesc, x));
    TRY(tensor_mem(call, handle, "y", yDesc, y));
    float *px = gather(xDesc, x);
    if (!px) return CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    size_t count = tensor_count(xDesc);
    for (size_t i = 0; i < count; i++)
        px[i] = act(activationDesc, px[i]);
    scatter(yDesc, y, px, al, be);
    free(px);
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnActivationBackward(cudnnHandle_t handle,
                                      cudnnActivationDescriptor_t activationDesc, const void *alpha,
                                      const cudnnTensorDescriptor_t yDesc, const void *y,
                                      const cudnnTensorDescriptor_t dyDesc, const void *dy,
                                      const cudnnTensorDescriptor_t xDesc, const void *x,
                                      const void *beta, const cudnnTensorDescriptor_t dxDesc,
                                      void *dx) {
    const char *call = "cudnnActivationBackward";
    float al, be;
    TRY(enter(call, handle));
    TRY(activation_ok(call, activationDesc));
    TRY(scalars(call, alpha, beta, &al, &be));
    TRY(tensor_ok(call, "yDesc", yDesc));
    TRY(tensor_ok(call, "dyDesc", dyDesc));
    TRY(tensor_ok(call, "xDesc", xDesc));
    TRY(tensor_ok(call, "dxDesc", dxDesc));
    TRY(dims_match(call, "y", yDesc, "dy", dyDesc));
    TRY(dims_match(call, "x", xDesc, "dx", dxDesc));
    TRY(dims_match(call, "x", xDesc, "y", yDesc));
    TRY(tensor_mem(call, handle, "y", yDesc, y));
    TRY(tensor_mem(call, handle, "dy", dyDesc, dy));
    TRY(tensor_mem(call, handle, "x", xDesc, x));
    TRY(tensor_mem(call, handle, "dx", dxDesc, dx));
    float *py = gather(yDesc, y), *pdy = gather(dyDesc, dy), *px = gather(xDesc, x);
    cudnnStatus_t s = CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    if (py && pdy && px) {
        size_t count = tensor_count(xDesc);
        for (size_t i = 0; i < count; i++)
            px[i] = act_grad(activationDesc, px[i], py[i], pdy[i]);
        scatter(dxDesc, dx, px, al, be);
        s = CUDNN_STATUS_SUCCESS;
    }
    free(py);
    free(pdy);
    free(px);
    return s;
}

/* ------------------------------------------------------------------ LRN */

static cudnnStatus_t lrn_ok(const char *call, cudnnLRNDescriptor_t d, cudnnLRNMode_t mode) {
    if (!d) {
        fake_cuda_report(call, "LRN descriptor is NULL");
        return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    }
    if (mode != CUDNN_LRN_CROSS_CHANNEL_DIM1) return bad(call, "mode is not CROSS_CHANNEL_DIM1");
    return CUDNN_STATUS_SUCCESS;
}

/* scale[n, c, h, w] = k + alpha/n sum of x^2 over the channel window, on
 * packed x. */
static void lrn_scale(cudnnLRNDescriptor_t d, cudnnTensorDescriptor_t t, const float *x,
                      double *scale) {
    const int behind = ((int)d->n - 1) / 2, ahead = (int)d->n - 1 - behind;
    const size_t plane = (size_t)t->h * t->w;
    const double a = d->alpha / d->n;
    for (int n = 0; n < t->n; n++)
        for (int c = 0; c < t->c; c++) {
            int lo = c - behind < 0 ? 0 : c - behind, hi = c + ahead >= t->c ? t->c - 1 : c + ahead;
            double *sp = scale + ((size_t)n * t->c + c) * plane;
            for (size_t i = 0; i < plane; i++) {
                double sum = 0.0;
                for (int j = lo; j <= hi; j++) {
                    double v = x[((size_t)n * t->c + j) * plane + i];
                    sum += v * v;
                }
                sp[i] = d->k + a * sum;
            }
        }
}

cudnnStatus_t cudnnLRNCrossChannelForward(cudnnHandle_t handle, cudnnLRNDescriptor_t normDesc,
                                          cudnnLRNMode_t lrnMode, const void *alpha,
                                          const cudnnTensorDescriptor_t xDesc, const void *x,
                                          const void *beta, const cudnnTensorDescriptor_t yDesc,
                                          void *y) {
    const char *call = "cudnnLRNCrossChannelForward";
    float al, be;
    TRY(enter(call, handle));
    TRY(lrn_ok(call, normDesc, lrnMode));
    TRY(scalars(call, alpha, beta, &al, &be));
    TRY(tensor_ok(call, "xDesc", xDesc));
    TRY(tensor_ok(call, "yDesc", yDesc));
    TRY(dims_match(call, "x", xDesc, "y", yDesc));
    TRY(tensor_mem(call, handle, "x", xDesc, x));
    TRY(tensor_mem(call, handle, "y", yDesc, y));
    size_t count = tensor_count(xDesc);
    float *px = gather(xDesc, x);
    double *scale = malloc(count * sizeof(double));
    cudnnStatus_t s = CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    if (px && scale) {
        lrn_scale(normDesc, xDesc, px, scale);
        for (size_t i = 0; i < count; i++)
            px[i] = (float)(px[i] * pow(scale[i], -normDesc->beta));
        scatter(yDesc, y, px, al, be);
        s = CUDNN_STATUS_SUCCESS;
    }
    free(px);
    free(scale);
    return s;
}

/* dx_c = dy_c s_c^-beta - 2 beta alpha/n x_c sum over the windows j that
 * hold c of dy_j y_j / s_j, with y as given (the forward output). */
cudnnStatus_t cudnnLRNCrossChannelBackward(cudnnHandle_t handle, cudnnLRNDescriptor_t normDesc,
                                           cudnnLRNMode_t lrnMode, const void *alpha,
                                           const cudnnTensorDescriptor_t yDesc, const void *y,
                                           const cudnnTensorDescriptor_t dyDesc, const void *dy,
                                           const cudnnTensorDescriptor_t xDesc, const void *x,
                                           const void *beta, const cudnnTensorDescriptor_t dxDesc,
                                           void *dx) {
    const char *call = "cudnnLRNCrossChannelBackward";
    float al, be;
    TRY(enter(call, handle));
    TRY(lrn_ok(call, normDesc, lrnMode));
    TRY(scalars(call, alpha, beta, &al, &be));
    TRY(tensor_ok(call, "yDesc", yDesc));
    TRY(tensor_ok(call, "dyDesc", dyDesc));
    TRY(tensor_ok(call, "xDesc", xDesc));
    TRY(tensor_ok(call, "dxDesc", dxDesc));
    TRY(dims_match(call, "x", xDesc, "y", yDesc));
    TRY(dims_match(call, "y", yDesc, "dy", dyDesc));
    TRY(dims_match(call, "x", xDesc, "dx", dxDesc));
    TRY(tensor_mem(call, handle, "y", yDesc, y));
    TRY(tensor_mem(call, handle, "dy", dyDesc, dy));
    TRY(tensor_mem(call, handle, "x", xDesc, x));
    TRY(tensor_mem(call, handle, "dx", dxDesc, dx));
    const cudnnTensorDescriptor_t t = xDesc;
    size_t count = tensor_count(t), plane = (size_t)t->h * t->w;
    float *px = gather(xDesc, x), *py = gather(yDesc, y), *pdy = gather(dyDesc, dy),
          *out = malloc(count * sizeof(float));
    double *scale = malloc(count * sizeof(double));
    cudnnStatus_t s = CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    if (px && py && pdy && out && scale) {
        const int behind = ((int)normDesc->n - 1) / 2, ahead = (int)normDesc->n - 1 - behind;
        const double coef = 2.0 * normDesc->beta * normDesc->alpha / normDesc->n;
        lrn_scale(normDesc, t, px, scale);
        for (int n = 0; n < t->n; n++)
            for (int c = 0; c < t->c; c++) {
                /* windows of channels j hold c when j - behind <= c <= j + ahead */
                int lo = c - ahead < 0 ? 0 : c - ahead,
                    hi = c + behind >= t->c ? t->c - 1 : c + behind;
                size_t base = ((size_t)n * t->c + c) * plane;
                for (size_t i = 0; i < plane; i++) {
                    double sum = 0.0;
                    for (int j = lo; j <= hi; j++) {
                        size_t o = ((size_t)n * t->c + j) * plane + i;
                        sum += (double)pdy[o] * py[o] / scale[o];
                    }
                    out[base + i] = (float)(pdy[base + i] * pow(scale[base + i], -normDesc->beta) -
                                            coef * px[base + i] * sum);
                }
            }
        scatter(dxDesc, dx, out, al, be);
        s = CUDNN_STATUS_SUCCESS;
    }
    free(px);
    free(py);
    free(pdy);
    free(out);
    free(scale);
    return s;
}

/* -------------------------------------------------------------- pooling */

static cudnnStatus_t pool_out(const char *call, cudnnPoolingDescriptor_t p,
                              cudnnTensorDescriptor_t x, int *oh, int *ow) {
    if (!p) {
        fake_cuda_report(call, "pooling descriptor is NULL");
        return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    }
    if (!p->set) return bad(call, "pooling descriptor was never set");
    TRY(tensor_ok(call, "input", x));
    if (x->h + 2 * p->ph < p->wh || x->w + 2 * p->pw < p->ww) {
        fake_cuda_report(call, "window %dx%d larger than the padded input %dx%d", p->wh, p->ww,
                         x->h + 2 * p->ph, x->w + 2 * p->pw);
        return CUDNN_STATUS_BAD_PARAM;
    }
    *oh = 1 + (x->h + 2 * p->ph - p->wh) / p->sh;
    *ow = 1 + (x->w + 2 * p->pw - p->ww) / p->sw;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetPooling2dForwardOutputDim(const cudnnPoolingDescriptor_t poolingDesc,
                                                const cudnnTensorDescriptor_t inputTensorDesc,
                                                int *n, int *c, int *h, int *w) {
    const char *call = "cudnnGetPooling2dForwardOutputDim";
    if (!n || !c || !h || !w) return CUDNN_STATUS_BAD_PARAM_NULL_POINTER;
    int oh, ow;
    TRY(pool_out(call, poolingDesc, inputTensorDesc, &oh, &ow));
    *n = inputTensorDesc->n, *c = inputTensorDesc->c, *h = oh, *w = ow;
    return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t pool_dims(const char *call, cudnnPoolingDescriptor_t p,
                               cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t y) {
    int oh, ow;
    TRY(pool_out(call, p, x, &oh, &ow));
    TRY(tensor_ok(call, "output", y));
    if (y->n != x->n || y->c != x->c || y->h != oh || y->w != ow) {
        fake_cuda_report(call, "output is %dx%dx%dx%d, pooling %dx%dx%dx%d gives %dx%dx%dx%d", y->n,
                         y->c, y->h, y->w, x->n, x->c, x->h, x->w, x->n, x->c, oh, ow);
        return CUDNN_STATUS_BAD_PARAM;
    }
    return CUDNN_STATUS_SUCCESS;
}

/* The window of output (oh, ow), clipped to the input: rows [*h0, *h1),
 * columns [*w0, *w1). */
static void pool_window(cudnnPoolingDescriptor_t p, cudnnTensorDescriptor_t x, int oh, int ow,
                        int *h0, int *h1, int *w0, int *w1) {
    int hs = oh * p->sh - p->ph, ws = ow * p->sw - p->pw;
    *h0 = hs < 0 ? 0 : hs;
    *w0 = ws < 0 ? 0 : ws;
    *h1 = hs + p->wh > x->h ? x->h : hs + p->wh;
    *w1 = ws + p->ww > x->w ? x->w : ws + p->ww;
}

static int pool_is_max(cudnnPoolingDescriptor_t p) {
    return p->mode == CUDNN_POOLING_MAX || p->mode == CUDNN_POOLING_MAX_DETERMINISTIC;
}

/* The divisor of an average window. */
static float pool_count(cudnnPoolingDescriptor_t p, int h0, int h1, int w0, int w1) {
    if (p->mode == CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING) return (float)(p->wh * p->ww);
    return (float)((h1 - h0) * (w1 - w0));
}

cudnnStatus_t cudnnPoolingForward(cudnnHandle_t handle, const cudnnPoolingDescriptor_t poolingDesc,
                                  const void *alpha, const cudnnTensorDescriptor_t xDesc,
                                  const void *x, const void *beta,
                                  const cudnnTensorDescriptor_t yDesc, void *y) {
    const char *call = "cudnnPoolingForward";
    float al, be;
    TRY(enter(call, handle));
    TRY(scalars(call, alpha, beta, &al, &be));
    TRY(pool_dims(call, poolingDesc, xDesc, yDesc));
    TRY(tensor_mem(call, handle, "x", xDesc, x));
    TRY(tensor_mem(call, handle, "y", yDesc, y));
    const float *px = x;
    float *py = y;
    const cudnnPoolingDescriptor_t p = poolingDesc;
    for (int n = 0; n < xDesc->n; n++)
        for (int c = 0; c < xDesc->c; c++)
            for (int oh = 0; oh < yDesc->h; oh++)
                for (int ow = 0; ow < yDesc->w; ow++) {
                    int h0, h1, w0, w1;
                    pool_window(p, xDesc, oh, ow, &h0, &h1, &w0, &w1);
                    float v = pool_is_max(p) ? -INFINITY : 0.0f;
                    int nan = 0;
                    for (int h = h0; h < h1; h++)
                        for (int w = w0; w < w1; w++) {
                            float e = px[toff(xDesc, n, c, h, w)];
                            if (e != e)
                                nan = 1;
                            else if (pool_is_max(p))
                                v = e > v ? e : v;
                            else
                                v += e;
                        }
                    if (!pool_is_max(p)) v /= pool_count(p, h0, h1, w0, w1);
                    if (nan && (p->nan == CUDNN_PROPAGATE_NAN || !pool_is_max(p))) v = NAN;
                    float *q = py + toff(yDesc, n, c, oh, ow);
                    *q = blend(al, v, be, *q);
                }
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnPoolingBackward(cudnnHandle_t handle, const cudnnPoolingDescriptor_t poolingDesc,
                                   const void *alpha, const cudnnTensorDescriptor_t yDesc,
                                   const void *y, const cudnnTensorDescriptor_t dyDesc,
                                   const void *dy, const cudnnTensorDescriptor_t xDesc,
                                   const void *x, const void *beta,
                                   const cudnnTensorDescriptor_t dxDesc, void *dx) {
    const char *call = "cudnnPoolingBackward";
    float al, be;
    TRY(enter(call, handle));
    TRY(scalars(call, alpha, beta, &al, &be));
    TRY(pool_dims(call, poolingDesc, xDesc, yDesc));
    TRY(tensor_ok(call, "dyDesc", dyDesc));
    TRY(tensor_ok(call, "dxDesc", dxDesc));
    TRY(dims_match(call, "y", yDesc, "dy", dyDesc));
    TRY(dims_match(call, "x", xDesc, "dx", dxDesc));
    TRY(tensor_mem(call, handle, "y", yDesc, y));
    TRY(tensor_mem(call, handle, "dy", dyDesc, dy));
    TRY(tensor_mem(call, handle, "x", xDesc, x));
    TRY(tensor_mem(call, handle, "dx", dxDesc, dx));
    const cudnnPoolingDescriptor_t p = poolingDesc;
    const float *px = x, *py = y, *pdy = dy;
    float *g = calloc(tensor_count(xDesc), sizeof(float));
    if (!g) return CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    const size_t plane = (size_t)xDesc->h * xDesc->w;
    for (int n = 0; n < xDesc->n; n++)
        for (int c = 0; c < xDesc->c; c++) {
            float *gp = g + ((size_t)n * xDesc->c + c) * plane;
            for (int oh = 0; oh < yDesc->h; oh++)
                for (int ow = 0; ow < yDesc->w; ow++) {
                    int h0, h1, w0, w1;
                    pool_window(p, xDesc, oh, ow, &h0, &h1, &w0, &w1);
                    float d = pdy[toff(dyDesc, n, c, oh, ow)];
                    if (!pool_is_max(p)) {
                        float share = d / pool_count(p, h0, h1, w0, w1);
                        for (int h = h0; h < h1; h++)
                            for (int w = w0; w < w1; w++)
                                gp[(size_t)h * xDesc->w + w] += share;
                        continue;
                    }
                    int bh = -1, bw = -1;
                    float best = -INFINITY;
                    for (int h = h0; h < h1; h++)
                        for (int w = w0; w < w1; w++) {
                            float e = px[toff(xDesc, n, c, h, w)];
                            if (bh < 0 || e > best) bh = h, bw = w, best = e;
                        }
                    float yv = py[toff(yDesc, n, c, oh, ow)];
                    if (yv != best && !(yv != yv)) {
                        fake_cuda_report(call,
                                         "y[%d,%d,%d,%d] = %g is not the window maximum of x "
                                         "(%g): y and x are not the forward output and input",
                                         n, c, oh, ow, (double)yv, (double)best);
                        free(g);
                        return CUDNN_STATUS_BAD_PARAM;
                    }
                    gp[(size_t)bh * xDesc->w + bw] += d;
                }
        }
    scatter(dxDesc, dx, g, al, be);
    free(g);
    return CUDNN_STATUS_SUCCESS;
}

/* -------------------------------------------------------------- softmax */

cudnnStatus_t cudnnSoftmaxForward(cudnnHandle_t handle, cudnnSoftmaxAlgorithm_t algo,
                                  cudnnSoftmaxMode_t mode, const void *alpha,
                                  const cudnnTensorDescriptor_t xDesc, const void *x,
                                  const void *beta, const cudnnTensorDescriptor_t yDesc, void *y) {
    const char *call = "cudnnSoftmaxForward";
    float al, be;
    TRY(enter(call, handle));
    TRY(scalars(call, alpha, beta, &al, &be));
    if ((algo != CUDNN_SOFTMAX_FAST && algo != CUDNN_SOFTMAX_ACCURATE &&
         algo != CUDNN_SOFTMAX_LOG) ||
        (mode != CUDNN_SOFTMAX_MODE_INSTANCE && mode != CUDNN_SOFTMAX_MODE_CHANNEL))
        return bad(call, "not a softmax algorithm or mode");
    TRY(tensor_ok(call, "xDesc", xDesc));
    TRY(tensor_ok(call, "yDesc", yDesc));
    TRY(dims_match(call, "x", xDesc, "y", yDesc));
    TRY(tensor_mem(call, handle, "x", xDesc, x));
    TRY(tensor_mem(call, handle, "y", yDesc, y));
    float *v = gather(xDesc, x);
    if (!v) return CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED;
    const size_t plane = (size_t)xDesc->h * xDesc->w, chw = (size_t)xDesc->c * plane;
    /* INSTANCE: over c, h, w of each image; CHANNEL: over c at each (h, w). */
    const size_t groups =
        mode == CUDNN_SOFTMAX_MODE_INSTANCE ? (size_t)xDesc->n : (size_t)xDesc->n * plane;
    const size_t len = mode == CUDNN_SOFTMAX_MODE_INSTANCE ? chw : (size_t)xDesc->c;
    const size_t step = mode == CUDNN_SOFTMAX_MODE_INSTANCE ? 1 : plane;
    for (size_t gi = 0; gi < groups; gi++) {
        float *base = mode == CUDNN_SOFTMAX_MODE_INSTANCE ? v + gi * chw
                                                          : v + (gi / plane) * chw + gi % plane;
        float m = algo == CUDNN_SOFTMAX_FAST ? 0.0f : -INFINITY;
        if (algo != CUDNN_SOFTMAX_FAST)
            for (size_t i = 0; i < len; i++)
                m = base[i * step] > m ? base[i * step] : m;
        double sum = 0.0;
        for (size_t i = 0; i < len; i++)
            sum += exp((double)base[i * step] - m);
        for (size_t i = 0; i < len; i++) {
            double d = (double)base[i * step] - m;
            base[i * step] = (float)(algo == CUDNN_SOFTMAX_LOG ? d - log(sum) : exp(d) / sum);
        }
    }
    scatter(yDesc, y, v, al, be);
    free(v);
    return CUDNN_STATUS_SUCCESS;
}
