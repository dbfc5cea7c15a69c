/* imgret search --server URL: a Search call to a running imgret serve. */
#include "cli/cli_args.h"
#include "cli/commands.h"
#include "data/data.h"
#include "server/server.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const metrics[] = {"euclidean", "hamming", NULL};

int cmd_search(int argc, char **argv) {
    const char *url = NULL, *token = NULL, *image = NULL;
    srv_client_search_t q;
    memset(&q, 0, sizeof q);
    q.k = 10;
    long id = -1;
    double timeout = 60;
    int n_args = 0;
    const cli_opt_t opts[] = {
        {.name = "--server",
         .kind = CLI_STRING,
         .dst = &url,
         .meta = "URL",
         .help = "e.g. http://127.0.0.1:8080",
         .required = 1},
        CLI_OPT_INT("--k", &q.k, 1, 4096, "K", "results (default 10)"),
        CLI_OPT_CHOICE("--metric", &q.hamming, metrics,
                       "euclidean (default; FC7) or hamming (codes)"),
        CLI_OPT_FLAG("--rerank", &q.rerank, "hamming: re-order the candidates by FC7 distance"),
        CLI_OPT_LONG("--id", &id, 0, LONG_MAX, "ID", "search with a stored item's vector"),
        CLI_OPT_STRING("--token", &token, "T", "bearer token"),
        {.name = "--timeout",
         .kind = CLI_DOUBLE,
         .dst = &timeout,
         .fmin = 0,
         .fmin_open = 1,
         .fmax = 86400,
         .meta = "S",
         .help = "seconds (default 60)"},
    };
    const cli_spec_t cli = {.command = "search",
                            .synopsis = "--server URL [options] (IMAGE | --id ID)",
                            .opts = opts,
                            .n_opts = (int)(sizeof opts / sizeof opts[0]),
                            .args = "IMAGE",
                            .max_args = 1};
    int go = cli_parse(&cli, argc, argv, &n_args);
    if (go != CLI_GO) return go;
    if (n_args) image = argv[1];
    if (!image == (id < 0)) return cli_usage_error(&cli, "give one of IMAGE and --id ID");
    q.item_id = id;
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
