/* bench_cpuinfo: the CPU description, the sgemm rates and the GEMM floors
 * (bench/cpuinfo.h) for the benchmark scripts to print before their tables.
 *
 *   bench_cpuinfo [THREADS]     (default: OpenMP's, i.e. OMP_NUM_THREADS or the cores)
 *
 * The floors come as "floor FIGURE: VALUE" lines, named as the benchmarks
 * name their figures. */
#include "bench/cpuinfo.h"

#include <omp.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : omp_get_max_threads();
    if (threads < 1 || threads > 256) {
        fprintf(stderr, "bench_cpuinfo: THREADS: expected 1..256, got %s\n", argv[1]);
        return 2;
    }
    bench_floor_t floors[8];
    return bench_cpu_header(stdout, threads, floors, 8) < 0 ? 1 : 0;
}
