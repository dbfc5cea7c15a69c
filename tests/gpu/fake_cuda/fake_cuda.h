/* Private to tests/gpu/fake_cuda/: the CPU stand-in for the parts of the CUDA
 * runtime, cuBLAS, cuDNN and NCCL that model/backend_cuda.c calls, written
 * from the libraries' documented semantics (not from our CPU layers), so
 * that test_gpu_fake runs the CUDA backend's glue on a machine without a GPU.
 *
 * It checks the glue (descriptors, argument order, leading dimensions,
 * transposes, alpha/beta, copy directions, which device a pointer lives on),
 * not a GPU: no kernel of ours or NVIDIA's runs here, and numbers are
 * computed in plain loops on the host.
 *
 * Memory model: cudaMalloc returns host memory recorded in a table (pointer,
 * size, device), filled with NaNs as real device memory is filled with
 * garbage. Every library call checks that each device pointer lies inside
 * one allocation with room for the access, on the current device; a
 * violation returns the library's error status and prints one line to
 * stderr naming the call and the problem. */
#ifndef IMGRET_FAKE_CUDA_H
#define IMGRET_FAKE_CUDA_H

#include <stddef.h>

/* The calling thread's current device (cudaSetDevice), 0 at first. */
int fake_cuda_current_device(void);
/* 0 when `device` (where a handle or stream was made) is the current one;
 * else reports "<what> of device D used while device C is current" under
 * `call` and returns -1. */
int fake_cuda_on_current(const char *call, const char *what, int device);
/* IMGRET_FAKE_CUDA_DEVICES from the environment, default 2, at least 1. */
int fake_cuda_device_count(void);

/* One line to stderr: "fake CUDA: <call>: <message>". */
void fake_cuda_report(const char *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The device of the allocation holding p, or -1 when p is not device memory. */
int fake_cuda_device_of(const void *p);

/* Checks that [p, p + bytes) lies in one allocation on `device` (bytes 0:
 * only that p is in one); reports the problem under `call` naming the
 * argument `what` and returns -1 when not. NULL is reported as such. */
int fake_cuda_check_ptr(const char *call, const char *what, const void *p, size_t bytes,
                        int device);

/* The device a stream was created on; -1 for the legacy default stream (0). */
typedef struct CUstream_st *fake_cuda_stream_t;
int fake_cuda_stream_device(fake_cuda_stream_t stream);

/* Overwrites `bytes` of device memory with NaNs (what "arbitrary values"
 * means in the documentation of cuDNN's Find*Ex and workspaces). */
void fake_cuda_scribble(void *p, size_t bytes);

#endif
