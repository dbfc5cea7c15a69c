/* The server under load: C clients (one blocking connection per request,
 * srv_client_call) firing a mix of Search by vector, Search by stored id and
 * Add at a running `imgret serve`, then the same searches straight into the
 * index in-process (index_search_fc7 / index_search_id: FAISS with no HTTP,
 * no protobuf, no queue) on the same store, with the same concurrency.
 *
 *   bench_server_load URL SERVER_PID STORE_DIR [options]
 *     --items N      items preloaded through Add before the run (default 10000)
 *     --clients N    concurrent clients (default 64)
 *     --seconds S    length of the load run (default 60)
 *     --add-pct P    share of Adds in the mix, percent (default 10)
 *     --peer-clients N  threads calling the index directly (default: the
 *                    cores; more only oversubscribes FAISS's OpenMP)
 *
 * Prints per-op figures, then stops the server (SIGTERM), opens its store
 * in-process for the peer, and ends with "figure | imgret | peer | ratio". */
#include "index/index.h"
#include "server/server.h"
#include "server/server_internal.h"

#include <errno.h>
#include <netdb.h>
#include <sys/socket.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

typedef enum { OP_SEARCH_VEC = 0, OP_SEARCH_ID, OP_ADD, N_OPS } op_t;
static const char *const op_names[N_OPS] = {"search_vector", "search_id", "add"};

typedef struct lat {
    double *v;
    size_t n, cap;
} lat_t;

static void lat_push(lat_t *l, double x) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 1024;
        double *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return;
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = x;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(lat_t *l, double p) {
    if (!l->n) return 0;
    size_t i = (size_t)(p * (double)(l->n - 1) + 0.5);
    return l->v[i];
}

typedef struct shared {
    const char *url;
    int dim;
    size_t items;
    const float *queries; /* n_queries x dim */
    size_t n_queries;
    int add_pct;
    double t_end;
    int in_process; /* the peer: index_* instead of HTTP */
    index_t *ix;
    atomic_ullong next_add_seed;
} shared_t;

typedef struct client {
    shared_t *sh;
    unsigned seed;
    lat_t lat[N_OPS];
    size_t errors[N_OPS];
    char first_error[256];
} client_t;

static long rss_kib(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kib = atol(line + 6);
    fclose(f);
    return kib;
}

static unsigned rnd(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (*s >> 8) & 0xffffff;
}

/* One Search or Add over HTTP; returns 0 on a 200 answer. */
static int http_op(client_t *c, op_t op, char *err_out, size_t err_cap) {
    shared_t *sh = c->sh;
    uint8_t *body = NULL, *resp = NULL;
    size_t len = 0, rlen = 0;
    const char *method = "Search";
    if (op == OP_ADD) {
        Imgret__V1__AddRequest r = IMGRET__V1__ADD_REQUEST__INIT;
        Imgret__V1__NewItem it = IMGRET__V1__NEW_ITEM__INIT;
        Imgret__V1__Vector v = IMGRET__V1__VECTOR__INIT;
        Imgret__V1__NewItem *items[1] = {&it};
        v.n_values = (size_t)sh->dim;
        v.values = (float *)sh->queries + (size_t)(rnd(&c->seed) % sh->n_queries) * sh->dim;
        it.content_case = IMGRET__V1__NEW_ITEM__CONTENT_VECTOR;
        it.vector = &v;
        it.label = -1;
        it.uri = (char *)"bench-add";
        r.n_items = 1;
        r.items = items;
        method = "Add";
        len = imgret__v1__add_request__get_packed_size(&r);
        body = malloc(len);
        imgret__v1__add_request__pack(&r, body);
    } else {
        Imgret__V1__SearchRequest r = IMGRET__V1__SEARCH_REQUEST__INIT;
        Imgret__V1__Vector v = IMGRET__V1__VECTOR__INIT;
        r.k = 10;
        if (op == OP_SEARCH_VEC) {
            v.n_values = (size_t)sh->dim;
            v.values = (float *)sh->queries + (size_t)(rnd(&c->seed) % sh->n_queries) * sh->dim;
            r.query_case = IMGRET__V1__SEARCH_REQUEST__QUERY_VECTOR;
            r.vector = &v;
        } else {
            r.query_case = IMGRET__V1__SEARCH_REQUEST__QUERY_ITEM_ID;
            r.item_id = (int64_t)(rnd(&c->seed) % sh->items);
        }
        len = imgret__v1__search_request__get_packed_size(&r);
        body = malloc(len);
        imgret__v1__search_request__pack(&r, body);
    }
    util_err_t err = {{0}};
    int status = 0;
    int rc = srv_client_call(sh->url, method, NULL, body, len, 60, &status, &resp, &rlen, &err);
    if (rc == 0 && status != 200) {
        snprintf(err.msg, sizeof err.msg, "HTTP %d %.200s", status, (const char *)resp);
        rc = -1;
    }
    if (rc) snprintf(err_out, err_cap, "%s: %.200s", op_names[op], err.msg);
    free(body);
    free(resp);
    return rc;
}

static int index_op(client_t *c, op_t op, char *err_out, size_t err_cap) {
    shared_t *sh = c->sh;
    index_hit_t hits[10];
    util_err_t err = {{0}};
    int rc;
    if (op == OP_SEARCH_VEC)
        rc = index_search_fc7(sh->ix,
                              sh->queries + (size_t)(rnd(&c->seed) % sh->n_queries) * sh->dim, 1,
                              sh->dim, 10, hits, &err);
    else
        rc = index_search_id(sh->ix, INDEX_FC7, (int64_t)(rnd(&c->seed) % sh->items), 10, hits,
                             &err);
    if (rc) snprintf(err_out, err_cap, "%s: %.200s", op_names[op], err.msg);
    return rc;
}

static void *client_main(void *arg) {
    client_t *c = arg;
    shared_t *sh = c->sh;
    char e[256];
    while (util_now() < sh->t_end) {
        unsigned r = rnd(&c->seed) % 100;
        op_t op = (int)r < sh->add_pct ? OP_ADD : (r % 2 ? OP_SEARCH_VEC : OP_SEARCH_ID);
        if (sh->in_process) op = r % 2 ? OP_SEARCH_VEC : OP_SEARCH_ID; /* the peer only searches */
        double t0 = util_now();
        int rc = sh->in_process ? index_op(c, op, e, sizeof e) : http_op(c, op, e, sizeof e);
        double dt = util_now() - t0;
        if (rc) {
            c->errors[op]++;
            if (!c->first_error[0]) snprintf(c->first_error, sizeof c->first_error, "%s", e);
        } else {
            lat_push(&c->lat[op], dt);
        }
    }
    return NULL;
}

typedef struct result {
    double qps[N_OPS + 1], p50[N_OPS + 1], p99[N_OPS + 1];
    size_t ok[N_OPS + 1], errors[N_OPS + 1];
} result_t;

/* Runs `clients` clients for `seconds`; index N_OPS holds the searches together. */
static void run(shared_t *sh, int clients, double seconds, result_t *res, const char *label) {
    client_t *c = calloc((size_t)clients, sizeof *c);
    pthread_t *t = calloc((size_t)clients, sizeof *t);
    double t0 = util_now();
    sh->t_end = t0 + seconds;
    for (int i = 0; i < clients; i++) {
        c[i].sh = sh;
        c[i].seed = 1000u + (unsigned)i * 7919u;
        pthread_create(&t[i], NULL, client_main, &c[i]);
    }
    for (int i = 0; i < clients; i++)
        pthread_join(t[i], NULL);
    double elapsed = util_now() - t0;
    memset(res, 0, sizeof *res);
    for (int op = 0; op <= N_OPS; op++) {
        lat_t all = {0};
        for (int i = 0; i < clients; i++)
            for (int o = 0; o < N_OPS; o++) {
                if (op < N_OPS ? o != op : o == OP_ADD) continue;
                for (size_t k = 0; k < c[i].lat[o].n; k++)
                    lat_push(&all, c[i].lat[o].v[k]);
                res->errors[op] += c[i].errors[o];
            }
        qsort(all.v, all.n, sizeof *all.v, cmp_d);
        res->ok[op] = all.n;
        res->qps[op] = (double)all.n / elapsed;
        res->p50[op] = 1e3 * pct(&all, 0.50);
        res->p99[op] = 1e3 * pct(&all, 0.99);
        free(all.v);
    }
    for (int i = 0; i < clients; i++) {
        if (c[i].first_error[0]) {
            fprintf(stderr, "%s: first error: %s\n", label, c[i].first_error);
            break;
        }
    }
    for (int i = 0; i < clients; i++)
        for (int o = 0; o < N_OPS; o++)
            free(c[i].lat[o].v);
    free(c);
    free(t);
    fprintf(stderr, "%s: %.1f s, %d clients\n", label, elapsed, clients);
    for (int op = 0; op <= N_OPS; op++)
        fprintf(stderr, "  %-14s %8zu ok %6zu errors  %8.1f /s  p50 %7.2f ms  p99 %7.2f ms\n",
                op < N_OPS ? op_names[op] : "searches", res->ok[op], res->errors[op], res->qps[op],
                res->p50[op], res->p99[op]);
}

/* Adds n random ReLU-like vectors with ids 0..n-1 in batches. */
static int preload(const char *url, int dim, size_t n, float *pool, size_t pool_n) {
    const size_t batch = 250;
    Imgret__V1__NewItem *items = calloc(batch, sizeof *items);
    Imgret__V1__NewItem **ptrs = calloc(batch, sizeof *ptrs);
    Imgret__V1__Vector *vecs = calloc(batch, sizeof *vecs);
    float *x = malloc(sizeof(float) * batch * (size_t)dim);
    util_rng_t rng;
    util_rng_seed(&rng, 5);
    for (size_t i0 = 0; i0 < n; i0 += batch) {
        size_t m = n - i0 < batch ? n - i0 : batch;
        for (size_t j = 0; j < m; j++) {
            float *v = x + j * dim;
            for (int d = 0; d < dim; d++) {
                float g = (float)util_rng_normal(&rng);
                v[d] = g > 0 ? g : 0;
            }
            if (i0 + j < pool_n) /* queries: stored vectors plus noise */
                for (int d = 0; d < dim; d++)
                    pool[(i0 + j) * dim + d] = v[d] + 0.1f * (float)util_rng_normal(&rng);
            imgret__v1__vector__init(&vecs[j]);
            vecs[j].n_values = (size_t)dim;
            vecs[j].values = v;
            imgret__v1__new_item__init(&items[j]);
            items[j].content_case = IMGRET__V1__NEW_ITEM__CONTENT_VECTOR;
            items[j].vector = &vecs[j];
            items[j].label = (int)((i0 + j) % 10);
            items[j].has_id = 1;
            items[j].id = (int64_t)(i0 + j);
            ptrs[j] = &items[j];
        }
        Imgret__V1__AddRequest r = IMGRET__V1__ADD_REQUEST__INIT;
        r.n_items = m;
        r.items = ptrs;
        size_t len = imgret__v1__add_request__get_packed_size(&r);
        uint8_t *body = malloc(len), *resp = NULL;
        imgret__v1__add_request__pack(&r, body);
        int st = 0;
        size_t rl = 0;
        util_err_t err = {{0}};
        int rc = srv_client_call(url, "Add", NULL, body, len, 120, &st, &resp, &rl, &err);
        free(body);
        if (rc || st != 200) {
            fprintf(stderr, "preload: %s %.300s\n", rc ? err.msg : "HTTP error",
                    rc ? "" : (char *)resp);
            free(resp);
            return -1;
        }
        free(resp);
    }
    free(items);
    free(ptrs);
    free(vecs);
    free(x);
    return 0;
}

static int server_dim(const char *url, int64_t *items) {
    uint8_t *resp = NULL;
    size_t rl = 0;
    int st = 0;
    util_err_t err = {{0}};
    if (srv_client_call(url, "Stats", NULL, NULL, 0, 30, &st, &resp, &rl, &err) || st != 200) {
        fprintf(stderr, "Stats: %s\n", err.msg);
        free(resp);
        return -1;
    }
    Imgret__V1__StatsResponse *s = imgret__v1__stats_response__unpack(NULL, rl, resp);
    free(resp);
    if (!s) return -1;
    int dim = (int)s->fc7_dim;
    *items = s->items;
    imgret__v1__stats_response__free_unpacked(s, NULL);
    return dim;
}

/* The server's batching counters from GET /metrics (a plain socket GET). */
static void print_batching(const char *url) {
    char host[256] = "127.0.0.1";
    int port = 80;
    if (sscanf(url, "http://%255[^:/]:%d", host, &port) < 1) return;
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_socktype = SOCK_STREAM;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &ai)) return;
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen)) {
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return;
    }
    freeaddrinfo(ai);
    const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if (write(fd, req, sizeof req - 1) < 0) {
        close(fd);
        return;
    }
    static char buf[1 << 20];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    close(fd);
    buf[n] = 0;
    double v[4] = {0, 0, 0, 0};
    static const char *const names[4] = {
        "\nimgret_search_batches_total ", "\nimgret_search_queries_total ",
        "\nimgret_forward_batches_total ", "\nimgret_forward_inputs_total "};
    for (int i = 0; i < 4; i++) {
        const char *p = strstr(buf, names[i]);
        if (p) v[i] = atof(p + strlen(names[i]));
    }
    fprintf(stderr, "server batching: %.0f index calls for %.0f searches (%.1f per call)\n", v[0],
            v[1], v[0] > 0 ? v[1] / v[0] : 0.0);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr,
                "usage: bench_server_load URL SERVER_PID STORE_DIR [--items N] [--clients N] "
                "[--seconds S] [--add-pct P]\n");
        return 2;
    }
    const char *url = argv[1], *store = argv[3];
    pid_t pid = (pid_t)atol(argv[2]);
    size_t items = 10000;
    int clients = 64, add_pct = 10, peer_clients = (int)sysconf(_SC_NPROCESSORS_ONLN);
    double seconds = 60;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--items"))
            items = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--clients"))
            clients = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--add-pct"))
            add_pct = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--peer-clients"))
            peer_clients = atoi(argv[i + 1]);
    }
    int64_t have = 0;
    int dim = server_dim(url, &have);
    if (dim <= 0 || items == 0 || clients < 1 || peer_clients < 1) return 1;
    const size_t n_queries = 256;
    float *queries = calloc(n_queries * (size_t)dim, sizeof(float));
    double t0 = util_now();
    if (have == 0 && preload(url, dim, items, queries, n_queries)) return 1;
    if (have) { /* a reused store: queries from the generator alone */
        util_rng_t rng;
        util_rng_seed(&rng, 9);
        for (size_t i = 0; i < n_queries * (size_t)dim; i++) {
            float g = (float)util_rng_normal(&rng);
            queries[i] = g > 0 ? g : 0;
        }
        items = (size_t)have;
    }
    fprintf(stderr, "preload: %zu items of %d floats in %.1f s\n", items, dim, util_now() - t0);

    shared_t sh = {url, dim, items, queries, n_queries, add_pct, 0, 0, NULL, 0};
    long rss_before = rss_kib(pid);
    result_t srv_res, peer_res;
    run(&sh, clients, seconds, &srv_res, "imgret serve (HTTP + Twirp + queue + workers)");
    long rss_after = rss_kib(pid);
    print_batching(url);

    /* Stop the server (snapshot) and open its store here for the peer. */
    kill(pid, SIGTERM);
    for (int i = 0; i < 600 && kill(pid, 0) == 0; i++) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    util_err_t err = {{0}};
    index_t *ix = index_open(store, NULL, &err);
    if (!ix) {
        fprintf(stderr, "peer: %s\n", err.msg);
        return 1;
    }
    sh.in_process = 1;
    sh.ix = ix;
    run(&sh, peer_clients, seconds < 10 ? seconds : 10, &peer_res,
        "in-process index_search (FAISS)");
    index_free(ix);

    double load[1] = {0};
    FILE *la = fopen("/proc/loadavg", "r");
    if (la) {
        if (fscanf(la, "%lf", &load[0]) != 1) load[0] = 0;
        fclose(la);
    }
    printf(
        "\nmachine: %ld cores (load average %.2f at the end); %zu items of %d floats (FAISS "
        "Flat); imgret: %d HTTP clients, mix %d%% Add, the rest Search by vector / by id (k 10); "
        "peer: %d threads calling index_search_fc7 / index_search_id\n",
        sysconf(_SC_NPROCESSORS_ONLN), load[0], items, dim, clients, add_pct, peer_clients);
    printf("server RSS: %.1f MiB before the run, %.1f MiB after\n", rss_before / 1024.0,
           rss_after / 1024.0);
    printf("imgret: %zu errors in %zu requests (add %zu ok %.1f/s, p50 %.2f ms, p99 %.2f ms)\n\n",
           srv_res.errors[0] + srv_res.errors[1] + srv_res.errors[2],
           srv_res.ok[0] + srv_res.ok[1] + srv_res.ok[2] + srv_res.errors[0] + srv_res.errors[1] +
               srv_res.errors[2],
           srv_res.ok[OP_ADD], srv_res.qps[OP_ADD], srv_res.p50[OP_ADD], srv_res.p99[OP_ADD]);
    printf("| %-26s | %10s | %10s | %7s |\n", "figure", "imgret", "peer", "ratio");
    printf("|----------------------------|------------|------------|---------|\n");
    struct {
        const char *name;
        double a, b;
    } rows[] = {
        {"search QPS (all)", srv_res.qps[N_OPS], peer_res.qps[N_OPS]},
        {"search_vector QPS", srv_res.qps[OP_SEARCH_VEC], peer_res.qps[OP_SEARCH_VEC]},
        {"search_vector p50 ms", srv_res.p50[OP_SEARCH_VEC], peer_res.p50[OP_SEARCH_VEC]},
        {"search_vector p99 ms", srv_res.p99[OP_SEARCH_VEC], peer_res.p99[OP_SEARCH_VEC]},
        {"search_id QPS", srv_res.qps[OP_SEARCH_ID], peer_res.qps[OP_SEARCH_ID]},
        {"search_id p50 ms", srv_res.p50[OP_SEARCH_ID], peer_res.p50[OP_SEARCH_ID]},
        {"search_id p99 ms", srv_res.p99[OP_SEARCH_ID], peer_res.p99[OP_SEARCH_ID]},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        printf("| %-26s | %10.2f | %10.2f | %7.3f |\n", rows[i].name, rows[i].a, rows[i].b,
               rows[i].b > 0 ? rows[i].a / rows[i].b : 0.0);
    free(queries);
    return 0;
}
