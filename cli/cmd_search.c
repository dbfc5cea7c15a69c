/* imgret search --server URL: a Search call to a running imgret serve. */
#include "cli/commands.h"
#include "data/data.h"
#include "server/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(FILE *f) {
    fprintf(f,
            "usage: imgret search --server URL [options] (IMAGE | --id ID)\n"
            "  --server URL     e.g. http://127.0.0.1:8080\n"
            "  --k K            results (default 10)\n"
            "  --metric M       euclidean (default; FC7) or hamming (codes)\n"
            "  --rerank         hamming: re-order the candidates by FC7 distance\n"
            "  --token T        bearer token\n"
            "  --timeout S      seconds (default 60)\n");
    return f == stdout ? 0 : 2;
}

int cmd_search(int argc, char **argv) {
    const char *url = NULL, *token = NULL, *image = NULL;
    srv_client_search_t q;
    memset(&q, 0, sizeof q);
    q.item_id = -1;
    q.k = 10;
    double timeout = 60;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout);
        if (!strcmp(a, "--rerank")) {
            q.rerank = 1;
            continue;
        }
        if (a[0] != '-') {
            if (image) return usage(stderr);
            image = a;
            continue;
        }
        if (i + 1 >= argc) return usage(stderr);
        const char *v = argv[++i];
        char *end;
        if (!strcmp(a, "--server")) url = v;
        else if (!strcmp(a, "--token")) token = v;
        else if (!strcmp(a, "--k")) {
            q.k = (int)strtol(v, &end, 10);
            if (*end || q.k < 1 || q.k > 4096) return usage(stderr);
        } else if (!strcmp(a, "--id")) {
            q.item_id = strtoll(v, &end, 10);
            if (*end || q.item_id < 0) return usage(stderr);
        } else if (!strcmp(a, "--metric")) {
            if (!strcmp(v, "hamming")) q.hamming = 1;
            else if (strcmp(v, "euclidean")) return usage(stderr);
        } else if (!strcmp(a, "--timeout")) {
            timeout = strtod(v, &end);
            if (*end || timeout <= 0) return usage(stderr);
        } else return usage(stderr);
    }
    if (!url || (!image) == (q.item_id < 0)) return usage(stderr);
    util_err_t err = {{0}};
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (image) {
        if (data_read_file(image, 64u << 20, &bytes, &len, &err)) {
            fprintf(stderr, "imgret search: %s\n", err.msg);
            return 1;
        }
        q.image = bytes;
        q.image_len = len;
    }
    srv_client_hit_t *hits = calloc((size_t)q.k, sizeof *hits);
    int n = 0, status = 0;
    int rc = hits ? srv_client_search(url, token, &q, timeout, hits, &n, &status, &err) : -1;
    free(bytes);
    if (rc) {
        fprintf(stderr, "imgret search: %s\n", hits ? err.msg : "out of memory");
        free(hits);
        return 1;
    }
    for (int i = 0; i < n; i++)
        printf("%2d  id %lld  distance %.4g  label %d%s%s%s  %s\n", i + 1, (long long)hits[i].id,
               (double)hits[i].distance, hits[i].label, hits[i].label_name[0] ? " (" : "",
               hits[i].label_name, hits[i].label_name[0] ? ")" : "", hits[i].uri);
    if (n == 0) printf("no hits\n");
    free(hits);
    return 0;
}
