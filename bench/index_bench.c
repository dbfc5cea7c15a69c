/* imgret's side of bench/index.sh: the index module (store + FAISS through
 * the C API) on the data files bench/index_peer.py writes; prints
 * 'figure value' lines that the driver sets beside the peer's.
 *
 *   bench_index DATA_DIR WORK_DIR
 *
 * Hamming: 1,000,000 64-bit codes, BFlat then BHash4x16 (nflip 2), top-10.
 * Euclidean: 100,000 4096-d vectors, Flat then IVF256,Flat with the smallest
 * nprobe reaching recall@10 >= 0.95 against Flat. Latency: median of single
 * queries; QPS: one batch (best of two); at 1 and 2 threads. Memory: growth
 * of the resident set while the index is built. */
#include "index/index.h"

#include <omp.h>
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
#define LAT_CODE 200
#define LAT_FC7 10

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

static void out(const char *tag, const char *what, double v) {
    printf("%s_%s %.6g\n", tag, what, v);
    fflush(stdout);
}

static void *read_file(const char *dir, const char *name, size_t bytes) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
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

static int search(index_t *ix, int fc7, const void *q, size_t nq, index_hit_t *h,
                  util_err_t *err) {
    return fc7 ? index_search_fc7(ix, q, nq, D, K, h, err)
               : index_search_code(ix, q, nq, CODE_BYTES, K, h, err);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void time_search(index_t *ix, int fc7, const void *q, size_t nq, int nlat,
                        const char *tag) {
    size_t row = fc7 ? sizeof(float) * D : CODE_BYTES;
    index_hit_t *h = malloc(sizeof *h * nq * K);
    double *lat = malloc(sizeof *lat * (size_t)nlat);
    util_err_t err;
    for (int t = 1; t <= 2; t++) {
        omp_set_num_threads(t);
        char name[64];
        for (int i = 0; i < nlat; i++) {
            double t0 = now();
            if (search(ix, fc7, (const char *)q + (size_t)i * row, 1, h, &err)) die(tag, &err);
            lat[i] = now() - t0;
        }
        qsort(lat, (size_t)nlat, sizeof *lat, cmp_double);
        snprintf(name, sizeof name, "t%d_latency_ms", t);
        out(tag, name, 1000 * lat[nlat / 2]);
        double best = 1e30;
        for (int r = 0; r < 2; r++) {
            double t0 = now();
            if (search(ix, fc7, q, nq, h, &err)) die(tag, &err);
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        snprintf(name, sizeof name, "t%d_qps", t);
        out(tag, name, (double)nq / best);
    }
    free(h);
    free(lat);
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
    util_err_t err;
    index_options_t o;

    /* ---- Hamming ---- */
    uint8_t *codes = read_file(data, "codes.u8", (size_t)NB_CODE * CODE_BYTES);
    uint8_t *qc = read_file(data, "codes_q.u8", (size_t)NQ_CODE * CODE_BYTES);
    snprintf(dir, sizeof dir, "%s/codes", work);
    index_options_default(&o);
    o.code_bits = CODE_BYTES * 8;
    o.fc7_factory = "";
    o.code_factory = "BFlat";
    omp_set_num_threads(2);
    double r0 = rss_mb(), t0 = now();
    index_t *ix = index_open(dir, &o, &err);
    if (!ix) die(dir, &err);
    add_all(ix, codes, NB_CODE, CODE_BYTES, 0, 10000);
    out("bflat", "add_s", now() - t0); /* store (durable commits) + index */
    out("bflat", "memory_mb", rss_mb() - r0);
    free(codes);
    time_search(ix, 0, qc, NQ_CODE, LAT_CODE, "bflat");
    index_hit_t *exact = malloc(sizeof *exact * NQ_CODE * K);
    if (index_search_code(ix, qc, NQ_CODE, CODE_BYTES, K, exact, &err)) die("bflat", &err);
    index_free(ix);

    o.code_factory = "BHash4x16";
    o.nflip = 2;
    r0 = rss_mb();
    t0 = now();
    ix = index_open(dir, &o, &err); /* rebuilt from the store */
    if (!ix) die(dir, &err);
    out("bhash", "rebuild_s", now() - t0);
    out("bhash", "memory_mb", rss_mb() - r0);
    time_search(ix, 0, qc, NQ_CODE, LAT_CODE, "bhash");
    index_hit_t *h = malloc(sizeof *h * NQ_CODE * K);
    if (index_search_code(ix, qc, NQ_CODE, CODE_BYTES, K, h, &err)) die("bhash", &err);
    out("bhash", "recall10", recall(h, exact, NQ_CODE));
    index_free(ix);
    free(qc);

    /* ---- Euclidean ---- */
    float *x = read_file(data, "fc7.f32", sizeof(float) * (size_t)NB_FC7 * D);
    float *q = read_file(data, "fc7_q.f32", sizeof(float) * (size_t)NQ_FC7 * D);
    snprintf(dir, sizeof dir, "%s/fc7", work);
    index_options_default(&o);
    o.fc7_dim = D;
    o.fc7_factory = "Flat";
    o.code_factory = "";
    omp_set_num_threads(2);
    r0 = rss_mb();
    t0 = now();
    ix = index_open(dir, &o, &err);
    if (!ix) die(dir, &err);
    add_all(ix, x, NB_FC7, sizeof(float) * D, 1, 1000);
    out("l2flat", "add_s", now() - t0);
    out("l2flat", "memory_mb", rss_mb() - r0);
    free(x);
    time_search(ix, 1, q, NQ_FC7, LAT_FC7, "l2flat");
    if (index_search_fc7(ix, q, NQ_FC7, D, K, exact, &err)) die("l2flat", &err);
    index_free(ix);

    o.fc7_factory = "IVF256,Flat";
    t0 = now();
    ix = index_open(dir, &o, &err); /* trained and filled from the store */
    if (!ix) die(dir, &err);
    out("ivf", "build_s", now() - t0);
    int nprobe = 1;
    double rec = 0;
    for (nprobe = 1; nprobe <= 256; nprobe *= 2) {
        if (index_set_search_params(ix, nprobe, 0, 0, &err)) die("ivf", &err);
        if (index_search_fc7(ix, q, NQ_FC7, D, K, h, &err)) die("ivf", &err);
        rec = recall(h, exact, NQ_FC7);
        if (rec >= 0.95) break;
    }
    out("ivf", "nprobe", nprobe);
    time_search(ix, 1, q, NQ_FC7, LAT_FC7 * 5, "ivf");
    out("ivf", "recall10", rec);
    index_free(ix);
    free(q);
    free(h);
    free(exact);
    return 0;
}
