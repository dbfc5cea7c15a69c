/* The CUDA runtime part of the fake (see fake_cuda.h): devices, memory,
 * copies, streams and events. Streams are synchronous: every call has
 * finished when it returns, which a program written for real asynchronous
 * streams cannot tell apart (it must synchronise before reading anyway). */
#include "tests/gpu/fake_cuda/fake_cuda.h"

#include <cuda_runtime.h>

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ reporting */

void fake_cuda_report(const char *call, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "fake CUDA: %s: %s\n", call, msg);
}

/* ------------------------------------------------------------- devices */

static _Thread_local int current_device;
static _Thread_local cudaError_t last_error;

static cudaError_t fail(cudaError_t e) {
    last_error = e;
    return e;
}

int fake_cuda_current_device(void) {
    return current_device;
}

int fake_cuda_on_current(const char *call, const char *what, int device) {
    if (device == current_device) return 0;
    fake_cuda_report(call, "%s of device %d used while device %d is current", what, device,
                     current_device);
    return -1;
}

int fake_cuda_device_count(void) {
    const char *s = getenv("IMGRET_FAKE_CUDA_DEVICES");
    if (!s || !*s) return 2;
    int n = atoi(s);
    return n < 1 ? 1 : n > 64 ? 64 : n;
}

cudaError_t cudaGetDeviceCount(int *count) {
    if (!count) return fail(cudaErrorInvalidValue);
    *count = fake_cuda_device_count();
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
    if (device < 0 || device >= fake_cuda_device_count()) {
        fake_cuda_report("cudaSetDevice", "device %d does not exist (%d devices)", device,
                         fake_cuda_device_count());
        return fail(cudaErrorInvalidDevice);
    }
    current_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device) {
    if (!device) return fail(cudaErrorInvalidValue);
    *device = current_device;
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) {
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void) {
    cudaError_t e = last_error;
    last_error = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) {
    return last_error;
}

const char *cudaGetErrorString(cudaError_t error) {
    switch (error) {
    case cudaSuccess:
        return "no error";
    case cudaErrorInvalidValue:
        return "invalid argument";
    case cudaErrorMemoryAllocation:
        return "out of memory";
    case cudaErrorInvalidDevice:
        return "invalid device ordinal";
    case cudaErrorInvalidMemcpyDirection:
        return "invalid copy direction for memcpy";
    case cudaErrorInvalidResourceHandle:
        return "invalid resource handle";
    case cudaErrorIllegalAddress:
        return "an illegal memory access was encountered";
    case cudaErrorNotReady:
        return "device not ready";
    default:
        return "unknown error";
    }
}

const char *cudaGetErrorName(cudaError_t error) {
    switch (error) {
    case cudaSuccess:
        return "cudaSuccess";
    case cudaErrorInvalidValue:
        return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
        return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidDevice:
        return "cudaErrorInvalidDevice";
    case cudaErrorInvalidMemcpyDirection:
        return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidResourceHandle:
        return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalAddress:
        return "cudaErrorIllegalAddress";
    case cudaErrorNotReady:
        return "cudaErrorNotReady";
    default:
        return "cudaErrorUnknown";
    }
}

/* -------------------------------------------------- the allocation table */

typedef struct allocation {
    char *base;
    size_t bytes;
    int device;
} allocation_t;

static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static allocation_t *table;
static size_t table_used, table_cap;

/* Index of the allocation holding p, or -1; the caller holds the lock. */
static long find_locked(const void *p) {
    uintptr_t a = (uintptr_t)p;
    for (size_t i = 0; i < table_used; i++) {
        uintptr_t b = (uintptr_t)table[i].base;
        if (a >= b && a < b + table[i].bytes) return (long)i;
    }
    return -1;
}

static int lookup(const void *p, allocation_t *out) {
    pthread_mutex_lock(&table_lock);
    long i = find_locked(p);
    if (i >= 0) *out = table[i];
    pthread_mutex_unlock(&table_lock);
    return i >= 0;
}

int fake_cuda_device_of(const void *p) {
    allocation_t a;
    return p && lookup(p, &a) ? a.device : -1;
}

int fake_cuda_check_ptr(const char *call, const char *what, const void *p, size_t bytes,
                        int device) {
    allocation_t a;
    if (!p) {
        fake_cuda_report(call, "%s is NULL", what);
        return -1;
    }
    if (!lookup(p, &a)) {
        fake_cuda_report(call, "%s (%p) is not device memory (no cudaMalloc holds it)", what, p);
        return -1;
    }
    size_t off = (size_t)((const char *)p - a.base);
    if (bytes > a.bytes - off) {
        fake_cuda_report(call,
                         "%s: %zu bytes from offset %zu overrun its allocation of %zu bytes "
                         "(%zu past the end)",
                         what, bytes, off, a.bytes, bytes - (a.bytes - off));
        return -1;
    }
    if (a.device != device) {
        fake_cuda_report(call, "%s lives on device %d, the call runs on device %d", what, a.device,
                         device);
        return -1;
    }
    return 0;
}

void fake_cuda_scribble(void *p, size_t bytes) {
    /* 0xff bytes: every float is a NaN, every int -1. */
    if (p && bytes) memset(p, 0xff, bytes);
}

cudaError_t cudaMalloc(void **devPtr, size_t size) {
    if (!devPtr) return fail(cudaErrorInvalidValue);
    *devPtr = NULL;
    if (size == 0) return cudaSuccess;
    /* cudaMalloc aligns to at least 256 bytes. */
    size_t rounded = (size + 255) / 256 * 256;
    void *p = aligned_alloc(256, rounded);
    if (!p) return fail(cudaErrorMemoryAllocation);
    fake_cuda_scribble(p, rounded);
    pthread_mutex_lock(&table_lock);
    if (table_used == table_cap) {
        size_t cap = table_cap ? 2 * table_cap : 256;
        allocation_t *t = realloc(table, cap * sizeof *t);
        if (!t) {
            pthread_mutex_unlock(&table_lock);
            free(p);
            return fail(cudaErrorMemoryAllocation);
        }
        table = t;
        table_cap = cap;
    }
    table[table_used++] = (allocation_t){p, size, current_device};
    pthread_mutex_unlock(&table_lock);
    *devPtr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void *devPtr) {
    if (!devPtr) return cudaSuccess;
    pthread_mutex_lock(&table_lock);
    long i = find_locked(devPtr);
    int exact = i >= 0 && table[i].base == devPtr;
    if (exact) table[i] = table[--table_used];
    if (table_used == 0) {
        free(table);
        table = NULL;
        table_cap = 0;
    }
    pthread_mutex_unlock(&table_lock);
    if (!exact) {
        fake_cuda_report("cudaFree", "%p is %s", devPtr,
                         i >= 0 ? "inside an allocation, not its start"
                                : "not a live cudaMalloc allocation (freed twice, or never "
                                  "allocated)");
        return fail(cudaErrorInvalidValue);
    }
    free(devPtr);
    return cudaSuccess;
}

/* ---------------------------------------------------------------- copies */

static const char *kind_name(enum cudaMemcpyKind kind) {
    switch (kind) {
    case cudaMemcpyHostToHost:
        return "host to host";
    case cudaMemcpyHostToDevice:
        return "host to device";
    case cudaMemcpyDeviceToHost:
        return "device to host";
    case cudaMemcpyDeviceToDevice:
        return "device to device";
    case cudaMemcpyDefault:
        return "default";
    default:
        return "invalid";
    }
}

/* One side of a copy: device memory (checked for room; any device, as
 * unified addressing lets a copy reach every device) or host memory. */
static int copy_side(const char *call, const char *what, const void *p, size_t count,
                     int want_device, enum cudaMemcpyKind kind) {
    int dev = fake_cuda_device_of(p);
    if (want_device) {
        if (dev < 0) {
            fake_cuda_report(call, "%s %p is host memory, but the direction is %s", what, p,
                             kind_name(kind));
            return -1;
        }
        return fake_cuda_check_ptr(call, what, p, count, dev);
    }
    if (dev >= 0) {
        fake_cuda_report(call, "%s %p is device memory (device %d), but the direction is %s", what,
                         p, dev, kind_name(kind));
        return -1;
    }
    if (!p) {
        fake_cuda_report(call, "%s is NULL", what);
        return -1;
    }
    return 0;
}

static cudaError_t copy(const char *call, void *dst, const void *src, size_t count,
                        enum cudaMemcpyKind kind) {
    if (count == 0) return cudaSuccess;
    int dst_dev, src_dev;
    switch (kind) {
    case cudaMemcpyHostToHost:
        dst_dev = 0, src_dev = 0;
        break;
    case cudaMemcpyHostToDevice:
        dst_dev = 1, src_dev = 0;
        break;
    case cudaMemcpyDeviceToHost:
        dst_dev = 0, src_dev = 1;
        break;
    case cudaMemcpyDeviceToDevice:
        dst_dev = 1, src_dev = 1;
        break;
    case cudaMemcpyDefault:
        dst_dev = fake_cuda_device_of(dst) >= 0;
        src_dev = fake_cuda_device_of(src) >= 0;
        break;
    default:
        fake_cuda_report(call, "copy kind %d is not a cudaMemcpyKind", (int)kind);
        return fail(cudaErrorInvalidMemcpyDirection);
    }
    if (copy_side(call, "dst", dst, count, dst_dev, kind) ||
        copy_side(call, "src", src, count, src_dev, kind))
        return fail(cudaErrorInvalidValue);
    memmove(dst, src, count);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind) {
    return copy("cudaMemcpy", dst, src, count, kind);
}

/* cudaMemcpyPeer: dst in an allocation of dstDevice, src in one of
 * srcDevice (the same device allowed: a device copy), whatever the current
 * device is. */
cudaError_t cudaMemcpyPeer(void *dst, int dstDevice, const void *src, int srcDevice, size_t count) {
    const char *call = "cudaMemcpyPeer";
    int n = fake_cuda_device_count();
    if (dstDevice < 0 || dstDevice >= n || srcDevice < 0 || srcDevice >= n) {
        fake_cuda_report(call, "device %d or %d is not one of the %d devices", dstDevice, srcDevice,
                         n);
        return fail(cudaErrorInvalidDevice);
    }
    if (count == 0) return cudaSuccess;
    if (fake_cuda_check_ptr(call, "dst", dst, count, dstDevice) ||
        fake_cuda_check_ptr(call, "src", src, count, srcDevice))
        return fail(cudaErrorInvalidValue);
    memmove(dst, src, count);
    return cudaSuccess;
}

/* ------------------------------------------------------- streams, events */

struct CUstream_st {
    int device;
};

struct CUevent_st {
    int device;
    int recorded;
    unsigned long long stamp;
};

int fake_cuda_stream_device(fake_cuda_stream_t stream) {
    return stream ? stream->device : -1;
}

/* Events get increasing stamps, so elapsed times are positive and ordered. */
static unsigned long long event_clock;
static pthread_mutex_t clock_lock = PTHREAD_MUTEX_INITIALIZER;

/* A stream argument: the legacy default stream (0) or one created on the
 * current device. */
static int stream_ok(const char *call, cudaStream_t stream) {
    return !stream || fake_cuda_on_current(call, "stream", stream->device) == 0;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
                            cudaStream_t stream) {
    if (!stream_ok("cudaMemcpyAsync", stream)) return fail(cudaErrorInvalidResourceHandle);
    return copy("cudaMemcpyAsync", dst, src, count, kind);
}

static cudaError_t set(const char *call, void *devPtr, int value, size_t count) {
    if (count == 0) return cudaSuccess;
    if (fake_cuda_check_ptr(call, "devPtr", devPtr, count, current_device))
        return fail(cudaErrorInvalidValue);
    memset(devPtr, value, count);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *devPtr, int value, size_t count) {
    return set("cudaMemset", devPtr, value, count);
}

cudaError_t cudaMemsetAsync(void *devPtr, int value, size_t count, cudaStream_t stream) {
    if (!stream_ok("cudaMemsetAsync", stream)) return fail(cudaErrorInvalidResourceHandle);
    return set("cudaMemsetAsync", devPtr, value, count);
}

cudaError_t cudaStreamCreate(cudaStream_t *pStream) {
    if (!pStream) return fail(cudaErrorInvalidValue);
    *pStream = malloc(sizeof **pStream);
    if (!*pStream) return fail(cudaErrorMemoryAllocation);
    (*pStream)->device = current_device;
    return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
    if (!stream) {
        fake_cuda_report("cudaStreamDestroy", "the default stream cannot be destroyed");
        return fail(cudaErrorInvalidResourceHandle);
    }
    free(stream);
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
    (void)stream;
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *event) {
    if (!event) return fail(cudaErrorInvalidValue);
    *event = calloc(1, sizeof **event);
    if (!*event) return fail(cudaErrorMemoryAllocation);
    (*event)->device = current_device;
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
    if (!event) return fail(cudaErrorInvalidResourceHandle);
    if (!stream_ok("cudaEventRecord", stream)) return fail(cudaErrorInvalidResourceHandle);
    if (event->device != current_device) {
        fake_cuda_report("cudaEventRecord", "event of device %d recorded on device %d",
                         event->device, current_device);
        return fail(cudaErrorInvalidResourceHandle);
    }
    pthread_mutex_lock(&clock_lock);
    event->stamp = ++event_clock;
    pthread_mutex_unlock(&clock_lock);
    event->recorded = 1;
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
    return event ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    if (!ms || !start || !end) return fail(cudaErrorInvalidValue);
    if (!start->recorded || !end->recorded) {
        fake_cuda_report("cudaEventElapsedTime", "an event was never recorded");
        return fail(cudaErrorInvalidResourceHandle);
    }
    /* Not a measurement: 0.01 ms per event recorded in between. */
    *ms = (float)((double)end->stamp - (double)start->stamp) * 0.01f;
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
    if (!event) return fail(cudaErrorInvalidResourceHandle);
    free(event);
    return cudaSuccess;
}
