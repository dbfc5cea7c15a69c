/* bench: what every CPU benchmark states before its table, in one place —
 * the CPU model and the flags that choose imgret's kernels (avx2, fma,
 * avx512f), the kernel path this process runs, OpenBLAS's core, the threads
 * — and the floor: a net's GEMM FLOPs over an sgemm rate measured on the
 * spot on the same threads (OpenBLAS's threaded 2048^3 product, and imgret's
 * own single-threaded sgemm run once per thread at the same time, as the
 * conv layers run it). bench_cpuinfo prints it for the shell scripts; the C
 * benches call bench_cpu_describe themselves. */
#ifndef IMGRET_BENCH_CPUINFO_H
#define IMGRET_BENCH_CPUINFO_H

#include <stdio.h>

#include "model/model.h"

/* GEMM FLOPs per image (2*M*N*K summed over the conv and fc layers, in GFLOP)
 * of the forward pass (train = 0) or of a training step (train = 1: forward,
 * weight gradient, and input gradient of every layer but the first, whose
 * input needs none). -1 when the spec is invalid. */
double bench_spec_gflop(const model_spec_t *spec, int train);

/* The demo's net (imgret demo, docs/training.md's quick recipe): alexnet-small
 * on Fashion-MNIST's 1x28x28 crops, 10 classes, dropout 0. */
void bench_spec_demo_small(model_spec_t *spec);

/* Prints the CPU model, its avx2/fma/avx512f flags, the kernel path
 * (model_cpu_kernels) with IMGRET_SGEMM when set, OpenBLAS's core (and
 * OPENBLAS_CORETYPE when set), IMGRET_CONV and `threads`, one "key: value"
 * line each.
 * -1 when no kernel path could be chosen (the reason is printed). */
int bench_cpu_describe(FILE *out, int threads);

typedef struct bench_sgemm_rate {
    double blas_gflops; /* OpenBLAS, one product on `threads` threads */
    double own_gflops;  /* imgret's own path, `threads` products at once; 0 on the blas path */
    double best_gflops; /* the larger: the rate the floor assumes */
} bench_sgemm_rate_t;

/* Measures both rates on n x n x n products (best of reps, after a warm-up). */
int bench_sgemm_measure(int n, int threads, int reps, bench_sgemm_rate_t *rate);

/* One floor figure: what a benchmark's figure would be if every GEMM FLOP
 * ran at the measured rate and nothing else took time. */
typedef struct bench_floor {
    const char *figure; /* the name the benchmarks print, e.g. "infer_b64_img_s" */
    double value;       /* img/s, or ms for figures whose name ends in _ms */
} bench_floor_t;

/* The floors of the AlexNet benches (paper net inference at batch 1 and 64,
 * training at batch 32; the demo's small net training at batch 128), from
 * rate->best_gflops. Writes up to max entries to floors and prints how each
 * is computed to out (unless NULL). Returns the number of entries. */
int bench_floors(FILE *out, const bench_sgemm_rate_t *rate, bench_floor_t *floors, int max);

/* All of it: bench_cpu_describe, the rates measured at 2048^3 on `threads`
 * threads (a line), and bench_floors. Returns the number of floors, or -1
 * (with the reason printed) when no kernel path or memory was had. */
int bench_cpu_header(FILE *out, int threads, bench_floor_t *floors, int max);

#endif
