/* server: the imgret RPC service (proto/imgret/v1/service.proto) spoken as
 * Twirp v7 over HTTP/1.1 with libevent's evhttp, plus a tiny blocking client.
 *
 * One thread runs the event loop: it parses HTTP, routes, checks tokens,
 * decodes and validates requests and writes replies; it never runs a
 * forward pass, a search or a store write. Work goes to a bounded queue
 * (full: resource_exhausted, HTTP 429) served by worker threads, each with
 * its own network and autoencoder; requests that need a forward pass are
 * batched (up to max_batch network inputs, waiting at most batch_wait_ms
 * for company). Results come back to the loop thread through event_active.
 *
 * HTTP on the same port: GET /healthz, GET /metrics (Prometheus text),
 * GET / (the web page, embedded at build time), GET /thumb/<id> (a JPEG
 * thumbnail of a stored item, rendered on a worker from its uri: a file, a
 * dataset item "FILE.gz[i]" as imgret extract writes, or a thumbnail kept
 * at Add time).
 *
 * Errors: functions return 0 / a pointer, or -1 / NULL with a sentence in
 * err; the server writes its log lines through the log callback only. */
#ifndef IMGRET_SERVER_H
#define IMGRET_SERVER_H

#include "util/util.h"

#include <stddef.h>
#include <stdint.h>

typedef void (*srv_log_fn)(void *ctx, const char *line);
struct model_placement;

typedef struct srv_options {
    const char *model_path;   /* imgret model file (required) */
    const char *ae_path;      /* autoencoder model file, or NULL: no codes */
    const char *store_dir;    /* index folder (created when missing; required) */
    const char *host;         /* address to bind; NULL: 127.0.0.1 */
    int port;                 /* 0: any free port (see srv_port) */
    int threads;              /* worker threads; 0: 2 */
    int max_batch;            /* network inputs per batched forward; 0: 32 */
    double batch_wait_ms;     /* how long a batch waits for company; 0: 5 ms (< 0: none) */
    int queue;                /* jobs waiting at most; 0: 64 */
    size_t max_body;          /* request body bytes; 0: 32 MiB (over: 413) */
    size_t max_pixels;        /* decoded image pixels, checked from the header; 0: 40 M */
    double timeout_s;         /* per request, from arrival to reply; 0: 30 s */
    const char *token;        /* bearer token, or NULL: open */
    int token_all;            /* 1: every RPC and /thumb, /metrics need it; 0: Add, Remove */
    const char *fc7_factory;  /* FAISS factory for FC7 (NULL: the store's, else Flat) */
    const char *code_factory; /* for codes (NULL: the store's, else BFlat) */
    /* Where each worker's net runs (model/model.h; copied at srv_create):
     * NULL is one CPU device; gpu:0 serves on a GPU (every worker its own
     * net there). */
    const struct model_placement *placement;
    srv_log_fn log;
    void *log_ctx;
    /* Called by srv_run once the signal handlers are in place, just before
     * the loop starts, with the URL served ("http://127.0.0.1:PORT/"). */
    void (*on_ready)(void *ctx, const char *url);
    void *ready_ctx;
} srv_options_t;

void srv_options_default(srv_options_t *o);

typedef struct srv srv_t;

/* Loads the model (and autoencoder), opens the store and its indexes, starts
 * the workers and binds the listening socket. Returns NULL with err set on
 * failure. */
srv_t *srv_create(const srv_options_t *opt, util_err_t *err);

/* The port actually bound (useful with port 0). */
int srv_port(const srv_t *s);

/* Runs the event loop until SIGINT or SIGTERM (when handle_signals) or
 * srv_stop. Then stops accepting, lets in-flight requests finish (at most
 * the request timeout), stops the workers and snapshots the indexes.
 * Returns 0, or -1 with err when the final snapshot failed. */
int srv_run(srv_t *s, int handle_signals, util_err_t *err);

/* Asks a running srv_run to shut down as above. Thread-safe. */
void srv_stop(srv_t *s);

void srv_free(srv_t *s); /* accepts NULL */

/* ------------------------------------------------------------- client */

/* One blocking HTTP/1.1 POST of a Twirp call: url "http://host[:port][/prefix]",
 * method "Search" etc., body a serialised request. On return *status holds
 * the HTTP status and *resp (malloc'd, caller frees) the body (a protobuf
 * reply on 200, a Twirp JSON error otherwise). timeout_s bounds connect,
 * send and receive. token may be NULL. -1 with err on transport errors. */
int srv_client_call(const char *url, const char *method, const char *token, const uint8_t *body,
                    size_t len, double timeout_s, int *status, uint8_t **resp, size_t *resp_len,
                    util_err_t *err);

/* A search hit as the client returns it. */
typedef struct srv_client_hit {
    int64_t id;
    float distance;
    int32_t label;
    char label_name[64];
    char uri[512];
} srv_client_hit_t;

typedef struct srv_client_search {
    const uint8_t *image; /* query image bytes, or NULL */
    size_t image_len;
    const float *vector; /* or an FC7 vector of dim floats, or NULL */
    int dim;
    int64_t item_id; /* or a stored item (when image and vector are NULL) */
    int k;           /* 0: 10 */
    int hamming;     /* metric HAMMING instead of EUCLIDEAN */
    int rerank;
} srv_client_search_t;

/* Search through srv_client_call. hits: room for q->k (or 10) entries;
 * *n_hits receives how many. A Twirp error becomes -1 with "code: msg" in
 * err and its HTTP status in *status (may be NULL). */
int srv_client_search(const char *url, const char *token, const srv_client_search_t *q,
                      double timeout_s, srv_client_hit_t *hits, int *n_hits, int *status,
                      util_err_t *err);

#endif
