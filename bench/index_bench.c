/* imgret's side of bench/index.sh: the index module (store + FAISS through
 * the C API) on the data files bench/index_peer.py writes.
 *
 *   bench_index DATA_DIR WORK_DIR
 *
 * Builds every index first, printing 'figure value' lines (build times,
 * memory, recall), then 'ready'; then answers commands on stdin, one a line,
 * so that the driver (index_peer.py drive) can alternate it with the peer
 * in short rounds on this shared machine:
 *
 *   time TAG THREADS NLAT NBATCH  -> TAG_tTHREADS_{latency_ms,latency_cpu_ms,qps,
 *                                    batch_cpu_ms_per_q} lines, done
 *   quit
 *
 * 'time' runs, on a worker thread, NLAT single queries (median latency) and
 * NBATCH whole batches (median QPS) with omp_set_num_threads(THREADS), which also sizes
 * OpenBLAS's OpenMP build, and reports the CPU time they took too
 * (_latency_cpu_ms, _batch_cpu_ms_per_q). (The driver's first round is a
 * warm-up.)
 *
 * Hamming: 1,000,000 64-bit codes, BFlat and BHash4x16 (nflip 2), top-10,
 * 1,000 queries. Euclidean: 100,000 4096-d vectors, Flat and IVF256,Flat
 * with the smallest nprobe reaching recall@10 >= 0.95 against Flat, 100
 * queries. Memory: growth of the resident set while an index is built, less
 * the growth of SQLite's heap (the item store's page cache, at most about
 * 2 MB whatever the index: printed apart as _store_heap_mb), so that
 * _memory_mb is the FAISS index with its id map, as the peer's is. The
 * IVF index is snapshotted into WORK_DIR/fc7/fc7.index so that the peer
 * searches the very same trained index. */
#include "index/index.h"

#include <omp.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NB_CODE 1000000
#define NQ_CODE 1000
#define CODE_BYTES 8
#define NB_FC7 100000
#define NQ_FC7 100
#define D 4096
#define K 10

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double rss_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double mb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) mb = atof(line + 6) / 1024.0;
    if (f) fclose(f);
    return mb;
}

static double sqlite_mb(void) {
    return (double)sqlite3_memory_used() / (1024.0 * 1024.0);
}

static void out(const char *tag, const char *what, double v) {
    printf("%s_%s %.6g\n", tag, what, v);
    fflush(stdout);
}

static void *read_file(const char *dir, const char *name, size_t bytes) {
    char path[1024];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
        fprintf(stderr, "bench_index: %s/%s: the path is longer than %zu bytes\n", dir, name,
                sizeof path - 1);
        exit(1);
    }
    FILE *f = fopen(path, "rb");
    void *p = malloc(bytes);
    if (!f || !p || fread(p, 1, bytes, f) != bytes) {
        fprintf(stderr, "bench_index: cannot read %zu bytes from %s\n", bytes, path);
        exit(1);
    }
    fclose(f);
    return p;
}

static void die(const char *what, const util_err_t *err) {
    fprintf(stderr, "bench_index: %s: %s\n", what, err->msg);
    exit(1);
}

static int search(index_t *ix, int fc7, const void *q, size_t nq, index_hit_t *h, util_err_t *err) {
    return fc7 ? index_search_fc7(ix, q, nq, D, K, h, err)
               : index_search_code(ix, q, nq, CODE_BYTES, K, h, err);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* The resident-set growth since r0 less SQLite's heap growth since s0, and
 * that heap growth. */
static void out_memory(const char *tag, double r0, double s0) {
    const double store = sqlite_mb() - s0;
    out(tag, "memory_mb", rss_mb() - r0 - store);
    out(tag, "store_heap_mb", store);
}

/* One 'time' command: nlat single queries, nbatch batches; wall time and
 * the process's CPU time (all threads), which waiting for a core on a busy
 * machine does not inflate. */
static void time_search_here(index_t *ix, int fc7, const void *q, size_t nq, int threads, int nlat,
                             int nbatch, const char *tag) {
    size_t row = fc7 ? sizeof(float) * D : CODE_BYTES;
    index_hit_t *h = malloc(sizeof *h * nq * K);
    int n = nlat > nbatch ? nlat : nbatch;
    double *wall = malloc(sizeof *wall * (size_t)n), *cpu = malloc(sizeof *cpu * (size_t)n);
    util_err_t err;
    char name[64];
    omp_set_num_threads(threads);
    for (int i = 0; i < nlat; i++) {
        double t0 = now(), c0 = cpu_now();
        if (search(ix, fc7, (const char *)q + (size_t)(i % (int)nq) * row, 1, h, &err))
            die(tag, &err);
        cpu[i] = cpu_now() - c0;
        wall[i] = now() - t0;
    }
    snprintf(name, sizeof name, "t%d_latency_ms", threads);
    out(tag, name, 1000 * median(wall, nlat));
    snprintf(name, sizeof name, "t%d_latency_cpu_ms", threads);
    out(tag, name, 1000 * median(cpu, nlat));
    for (int r = 0; r < nbatch; r++) {
        double t0 = now(), c0 = cpu_now();
        if (search(ix, fc7, q, nq, h, &err)) die(tag, &err);
        cpu[r] = cpu_now() - c0;
        wall[r] = now() - t0;
    }
    snprintf(name, sizeof name, "t%d_qps", threads);
    out(tag, name, (double)nq / median(wall, nbatch));
    snprintf(name, sizeof name, "t%d_batch_cpu_ms_per_q", threads);
    out(tag, name, 1000 * median(cpu, nbatch) / (double)nq);
    free(h);
    free(wall);
    free(cpu);
}

typedef struct timing {
    index_t *ix;
    int fc7;
    const void *q;
    size_t nq;
    int threads, nlat, nbatch;
    const char *tag;
} timing_t;

static void *timing_thread(void *arg) {
    const timing_t *t = arg;
    time_search_here(t->ix, t->fc7, t->q, t->nq, t->threads, t->nlat, t->nbatch, t->tag);
    return NULL;
}

/* time_search_here on a worker thread, as `imgret serve` runs its searches,
 * and as the peer does too: glibc gives a new thread its own malloc arena,
 * while the main thread's heap is the one the build fragmented. FAISS's
 * BHash search allocates a hash-set node per candidate, and on the main
 * thread it ran 1.4-2x slower than on a fresh one, in imgret and in the
 * peer alike, by an amount that depends on what the process did before
 * (docs/index.md) - a measure of the heap, not of the index. */
static void time_search(index_t *ix, int fc7, const void *q, size_t nq, int threads, int nlat,
                        int nbatch, const char *tag) {
    timing_t t = {ix, fc7, q, nq, threads, nlat, nbatch, tag};
    pthread_t th;
    if (pthread_create(&th, NULL, timing_thread, &t) || pthread_join(th, NULL)) {
        fprintf(stderr, "bench_index: cannot start the timing thread\n");
        exit(1);
    }
}

static double recall(const index_hit_t *a, const index_hit_t *e, size_t nq) {
    size_t found = 0;
    for (size_t q = 0; q < nq; q++)
        for (int j = 0; j < K; j++)
            for (int l = 0; l < K; l++)
                if (a[q * K + l].id == e[q * K + j].id) {
                    found++;
                    break;
                }
    return (double)found / (double)(nq * K);
}

static void add_all(index_t *ix, const void *x, size_t n, size_t row, int fc7, size_t batch) {
    store_item_t *it = calloc(batch, sizeof *it);
    util_err_t err;
    for (size_t b = 0; b < n; b += batch) {
        size_t m = n - b < batch ? n - b : batch;
        for (size_t i = 0; i < m; i++) {
            it[i].id = (int64_t)(b + i);
            it[i].label = -1;
            const void *v = (const char *)x + (b + i) * row;
            it[i].fc7 = fc7 ? v : NULL;
            it[i].code = fc7 ? NULL : v;
        }
        if (index_add(ix, it, m, &err)) die("add", &err);
    }
    free(it);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: bench_index DATA_DIR WORK_DIR\n");
        return 2;
    }
    const char *data = argv[1], *work = argv[2];
    char dir[1024];
    if (strlen(work) + sizeof "/codes" > sizeof dir) { /* the longer of codes and fc7 */
        fprintf(stderr, "bench_index: %s: the path is longer than %zu bytes\n", work,
                sizeof dir - sizeof "/codes");
        return 2;
    }
    util_err_t err;
    index_options_t o;

    /* ---- Hamming: BFlat, then BHash rebuilt from the same store ---- */
    uint8_t *codes = read_file(data, "codes.u8", (size_t)NB_CODE * CODE_BYTES);
    uint8_t *qc = read_file(data, "codes_q.u8", (size_t)NQ_CODE * CODE_BYTES);
    snprintf(dir, sizeof dir, "%s/codes", work);
    index_options_default(&o);
    o.code_bits = CODE_BYTES * 8;
    o.fc7_factory = "";
    o.code_factory = "BFlat";
    omp_set_num_threads(2);
    double r0 = rss_mb(), s0 = sqlite_mb(), t0 = now();
    index_t *bflat = index_open(dir, &o, &err);
    if (!bflat) die(dir, &err);
    add_all(bflat, codes, NB_CODE, CODE_BYTES, 0, 10000);
    out("bflat", "add_s", now() - t0); /* store (durable commits) + index */
    out_memory("bflat", r0, s0);
    free(codes);
    index_hit_t *exact = malloc(sizeof *exact * NQ_CODE * K);
    index_hit_t *h = malloc(sizeof *h * NQ_CODE * K);
    if (index_search_code(bflat, qc, NQ_CODE, CODE_BYTES, K, exact, &err)) die("bflat", &err);

    o.code_factory = "BHash4x16";
    o.nflip = 2;
    r0 = rss_mb();
    s0 = sqlite_mb();
    t0 = now();
    index_t *bhash = index_open(dir, &o, &err); /* no snapshot: rebuilt from the store */
    if (!bhash) die(dir, &err);
    out("bhash", "rebuild_s", now() - t0);
    out_memory("bhash", r0, s0);
    if (index_search_code(bhash, qc, NQ_CODE, CODE_BYTES, K, h, &err)) die("bhash", &err);
    out("bhash", "recall10", recall(h, exact, NQ_CODE));

    /* ---- Euclidean: Flat, then IVF trained and filled from the same store ---- */
    float *x = read_file(data, "fc7.f32", sizeof(float) * (size_t)NB_FC7 * D);
    float *q = read_file(data, "fc7_q.f32", sizeof(float) * (size_t)NQ_FC7 * D);
    snprintf(dir, sizeof dir, "%s/fc7", work);
    index_options_default(&o);
    o.fc7_dim = D;
    o.fc7_factory = "Flat";
    o.code_factory = "";
    r0 = rss_mb();
    s0 = sqlite_mb();
    t0 = now();
    index_t *l2flat = index_open(dir, &o, &err);
    if (!l2flat) die(dir, &err);
    add_all(l2flat, x, NB_FC7, sizeof(float) * D, 1, 1000);
    out("l2flat", "add_s", now() - t0);
    out_memory("l2flat", r0, s0);
    free(x);
    if (index_search_fc7(l2flat, q, NQ_FC7, D, K, exact, &err)) die("l2flat", &err);

    o.fc7_factory = "IVF256,Flat";
    t0 = now();
    index_t *ivf = index_open(dir, &o, &err);
    if (!ivf) die(dir, &err);
    out("ivf", "build_s", now() - t0);
    int nprobe = 1;
    double rec = 0;
    for (nprobe = 1; nprobe <= 256; nprobe *= 2) {
        if (index_set_search_params(ivf, nprobe, 0, 0, &err)) die("ivf", &err);
        if (index_search_fc7(ivf, q, NQ_FC7, D, K, h, &err)) die("ivf", &err);
        rec = recall(h, exact, NQ_FC7);
        if (rec >= 0.95) break;
    }
    out("ivf", "nprobe", nprobe);
    out("ivf", "recall10", rec);
    if (index_snapshot(ivf, &err)) die("ivf snapshot", &err);
    free(h);
    free(exact);

    /* ---- timing, on command ---- */
    printf("ready\n");
    fflush(stdout);
    char line[256], tag[32];
    int threads, nlat, nbatch;
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "quit", 4)) break;
        if (sscanf(line, "time %31s %d %d %d", tag, &threads, &nlat, &nbatch) != 4 || threads < 1 ||
            nlat < 1 || nbatch < 1) {
            fprintf(stderr, "bench_index: bad command: %s", line);
            return 2;
        }
        if (!strcmp(tag, "bflat"))
            time_search(bflat, 0, qc, NQ_CODE, threads, nlat, nbatch, tag);
        else if (!strcmp(tag, "bhash"))
            time_search(bhash, 0, qc, NQ_CODE, threads, nlat, nbatch, tag);
        else if (!strcmp(tag, "l2flat"))
            time_search(l2flat, 1, q, NQ_FC7, threads, nlat, nbatch, tag);
        else if (!strcmp(tag, "ivf"))
            time_search(ivf, 1, q, NQ_FC7, threads, nlat, nbatch, tag);
        else {
            fprintf(stderr, "bench_index: unknown index %s\n", tag);
            return 2;
        }
        printf("done\n");
        fflush(stdout);
    }
    index_free(bflat);
    index_free(bhash);
    index_free(l2flat);
    index_free(ivf);
    free(qc);
    free(q);
    return 0;
}
