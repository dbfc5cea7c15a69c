/* imgret serve: the Twirp RPC server (server/server.h) on a model, an
 * optional autoencoder and an item store. */
#include "cli/cli_args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "model/model.h"
#include "server/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void log_line(void *ctx, const char *line) {
    (void)ctx;
    time_t t = time(NULL);
    struct tm tm;
    char ts[32];
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s imgret serve: %s\n", ts, line);
}

/* Printed once SIGTERM/SIGINT are handled, so a caller that reads this line
 * can stop the server cleanly from then on. */
static void on_ready(void *ctx, const char *url) {
    (void)ctx;
    printf("listening on %s\n", url);
    fflush(stdout);
}

static const char *const token_scopes[] = {"write", "all", NULL};

int cmd_serve(int argc, char **argv) {
    srv_options_t o;
    srv_options_default(&o);
    o.port = 8080;
    o.log = log_line;
    o.on_ready = on_ready;
    cli_device_args_t dev = {0};
    long max_body = (long)o.max_body, max_pixels = (long)o.max_pixels;
    double batch_wait_ms = -2; /* not given */
    const cli_opt_t opts[] = {
        {.name = "--model",
         .kind = CLI_STRING,
         .dst = &o.model_path,
         .meta = "M",
         .help = "model file (FC7 = relu7; classes from its last layer)",
         .required = 1},
        CLI_OPT_STRING("--autoencoder", &o.ae_path, "AE",
                       "binary-code autoencoder (imgret ae-train): HAMMING search"),
        {.name = "--store",
         .kind = CLI_STRING,
         .dst = &o.store_dir,
         .meta = "DIR|URL",
         .help = "item store and indexes (created when missing): a folder, or a\n"
                 "postgresql:// URL shared by replicas (they follow its change log)",
         .required = 1},
        CLI_OPT_STRING("--host", &o.host, "H", "address to bind (default 127.0.0.1)"),
        CLI_OPT_INT("--port", &o.port, 0, 65535, "P",
                    "port (default 8080; 0: any free port, printed)"),
        CLI_OPT_INT("--threads", &o.threads, 1, 256, "N", "worker threads (default 2)"),
        CLI_OPT_INT("--max-batch", &o.max_batch, 1, 1024, "N",
                    "network inputs per batched forward pass (default 32)"),
        CLI_OPT_DOUBLE("--batch-wait-ms", &batch_wait_ms, 0, 1000, "T",
                       "how long a batch waits for more requests (default 5; 0: no wait)"),
        CLI_OPT_INT("--queue", &o.queue, 1, 1000000, "N",
                    "requests waiting at most; more get resource_exhausted (default 64)"),
        CLI_OPT_LONG("--max-body", &max_body, 1024, 1L << 31, "BYTES",
                     "largest request body; larger get HTTP 413 (default 32 MiB)"),
        CLI_OPT_LONG("--max-pixels", &max_pixels, 1, 100000000, "N",
                     "largest image (pixels, from its header) (default 40000000)"),
        {.name = "--timeout",
         .kind = CLI_DOUBLE,
         .dst = &o.timeout_s,
         .fmin = 0,
         .fmin_open = 1,
         .fmax = 3600,
         .meta = "S",
         .help = "per request, seconds (default 30)"},
        CLI_OPT_STRING("--token", &o.token, "T", "bearer token required (see --token-scope)"),
        CLI_OPT_CHOICE("--token-scope", &o.token_all, token_scopes,
                       "write (Add, Remove; default) or all (every RPC, /thumb, /metrics)"),
        CLI_OPT_STRING("--fc7-index", &o.fc7_factory, "F",
                       "FAISS factory for FC7 (default: the store's, else Flat)"),
        CLI_OPT_STRING("--code-index", &o.code_factory, "F",
                       "FAISS factory for codes (default: the store's, else BFlat)"),
        CLI_OPTS_DEVICE(&dev),
    };
    const cli_spec_t cli = {
        .command = "serve",
        .synopsis = "--model M --store DIR [options]",
        .notes = "SIGTERM or SIGINT: stop accepting, finish what is running, snapshot, exit 0.",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0])};
    int go = cli_parse(&cli, argc, argv, NULL);
    if (go != CLI_GO) return go;
    o.max_body = (size_t)max_body;
    o.max_pixels = (size_t)max_pixels;
    if (batch_wait_ms == 0)
        o.batch_wait_ms = -1; /* 0 means: no waiting */
    else if (batch_wait_ms > 0)
        o.batch_wait_ms = batch_wait_ms;
    util_err_t err = {{0}};
    model_placement_t pl;
    if (cli_placement(&dev, &pl, &err)) {
        fprintf(stderr, "imgret serve: %s\n", err.msg);
        return 2;
    }
    o.placement = &pl;
    srv_t *s = srv_create(&o, &err);
    if (!s) {
        fprintf(stderr, "imgret serve: %s\n", err.msg);
        return 1;
    }
    int rc = srv_run(s, 1, &err);
    if (rc) fprintf(stderr, "imgret serve: %s\n", err.msg);
    srv_free(s);
    return rc ? 1 : 0;
}
