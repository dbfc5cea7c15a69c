/* imgret serve: the Twirp RPC server (server/server.h) on a model, an
 * optional autoencoder and an item store. */
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "model/model.h"
#include "server/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int usage(FILE *f) {
    fprintf(f,
            "usage: imgret serve --model M --store DIR [options]\n"
            "  --model M          model file (FC7 = relu7; classes from its last layer)\n"
            "  --autoencoder AE   binary-code autoencoder (imgret ae-train): HAMMING search\n"
            "  --store DIR        item store and indexes (created when missing)\n"
            "  --host H           address to bind (default 127.0.0.1)\n"
            "  --port P           port (default 8080; 0: any free port, printed)\n"
            "  --threads N        worker threads (default 2)\n"
            "  --max-batch N      network inputs per batched forward pass (default 32)\n"
            "  --batch-wait-ms T  how long a batch waits for more requests (default 5)\n"
            "  --queue N          requests waiting at most; more get resource_exhausted (default 64)\n"
            "  --max-body BYTES   largest request body; larger get HTTP 413 (default 32 MiB)\n"
            "  --max-pixels N     largest image (pixels, from its header) (default 40000000)\n"
            "  --timeout S        per request (default 30)\n"
            "  --token T          bearer token required (see --token-scope)\n"
            "  --token-scope S    write (Add, Remove; default) or all (every RPC, /thumb, /metrics)\n"
            "  --fc7-index F      FAISS factory for FC7 (default: the store's, else Flat)\n"
            "  --code-index F     FAISS factory for codes (default: the store's, else BFlat)\n"
            CLI_DEVICE_USAGE
            "SIGTERM or SIGINT: stop accepting, finish what is running, snapshot, exit 0.\n");
    return f == stdout ? 0 : 2;
}

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

static int parse_long(const char *v, long lo, long hi, long *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi) return -1;
    *out = x;
    return 0;
}

int cmd_serve(int argc, char **argv) {
    srv_options_t o;
    srv_options_default(&o);
    o.port = 8080;
    o.log = log_line;
    o.on_ready = on_ready;
    cli_device_args_t dev = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout);
        if (i + 1 >= argc) {
            fprintf(stderr, "serve: %s needs a value (or is unknown)\n", a);
            return usage(stderr);
        }
        if (cli_device_arg(&dev, a, argv[i + 1])) {
            i++;
            continue;
        }
        const char *v = argv[++i];
        long x = 0;
        int bad = 0;
        if (!strcmp(a, "--model")) o.model_path = v;
        else if (!strcmp(a, "--autoencoder")) o.ae_path = v;
        else if (!strcmp(a, "--store")) o.store_dir = v;
        else if (!strcmp(a, "--host")) o.host = v;
        else if (!strcmp(a, "--port")) bad = parse_long(v, 0, 65535, &x), o.port = (int)x;
        else if (!strcmp(a, "--threads")) bad = parse_long(v, 1, 256, &x), o.threads = (int)x;
        else if (!strcmp(a, "--max-batch")) bad = parse_long(v, 1, 1024, &x), o.max_batch = (int)x;
        else if (!strcmp(a, "--batch-wait-ms")) {
            char *end;
            o.batch_wait_ms = strtod(v, &end);
            bad = *end || o.batch_wait_ms < 0 || o.batch_wait_ms > 1000;
            if (o.batch_wait_ms == 0) o.batch_wait_ms = -1; /* 0 means: no waiting */
        } else if (!strcmp(a, "--queue")) bad = parse_long(v, 1, 1000000, &x), o.queue = (int)x;
        else if (!strcmp(a, "--max-body")) bad = parse_long(v, 1024, 1L << 31, &x), o.max_body = (size_t)x;
        else if (!strcmp(a, "--max-pixels")) bad = parse_long(v, 1, 100000000, &x), o.max_pixels = (size_t)x;
        else if (!strcmp(a, "--timeout")) {
            char *end;
            o.timeout_s = strtod(v, &end);
            bad = *end || !(o.timeout_s > 0 && o.timeout_s <= 3600);
        } else if (!strcmp(a, "--token")) o.token = v;
        else if (!strcmp(a, "--token-scope")) {
            if (!strcmp(v, "all")) o.token_all = 1;
            else if (!strcmp(v, "write")) o.token_all = 0;
            else bad = 1;
        } else if (!strcmp(a, "--fc7-index")) o.fc7_factory = v;
        else if (!strcmp(a, "--code-index")) o.code_factory = v;
        else {
            fprintf(stderr, "serve: unknown option %s\n", a);
            return usage(stderr);
        }
        if (bad) {
            fprintf(stderr, "serve: bad value '%s' for %s\n", v, a);
            return usage(stderr);
        }
    }
    if (!o.model_path || !o.store_dir) return usage(stderr);
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
