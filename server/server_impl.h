/* server: the server object and the jobs its workers run. Private to
 * server/ (server.c owns the event loop, handlers.c the work). */
#ifndef IMGRET_SERVER_IMPL_H
#define IMGRET_SERVER_IMPL_H

#include "server/server.h"
#include "server/server_internal.h"

#include "autoencoder/autoencoder.h"
#include "data/data.h"
#include "features/features.h"
#include "index/index.h"
#include "model/model.h"

#include <stdatomic.h>

/* One unit of work: a validated request (or a thumbnail), its result, and
 * the loop-side bookkeeping. The loop creates it, a worker fills the result,
 * the loop replies and frees it; only `abandoned` is touched by both while
 * the job is with a worker. */
typedef struct srv_job {
    srv_qnode_t node; /* first member: queue nodes cast back to jobs */
    srv_request_t req;
    int64_t thumb_id; /* SRV_THUMB */
    double t_arrival;
    atomic_int abandoned; /* the loop already answered (timeout): skip the work */

    /* Result, written by the worker. */
    int failed;
    srv_error_t err;
    uint8_t *resp;
    size_t resp_len;
    const char *content_type;

    /* Worker scratch: network outputs per input (crop). */
    float *fc7;       /* n_inputs x fc7_dim */
    float *logits;    /* n_inputs x classes */
    uint8_t **thumbs; /* Add: per image item, a JPEG when keep_thumbnail */
    size_t *thumb_len;

    /* Loop side. */
    void *http_req; /* struct evhttp_request * */
    void *grpc;     /* struct h2_stream * (grpc.c): the call came over gRPC */
    void *timer;    /* struct event * (the deadline) */
    struct srv *srv;
    struct srv_job *done_next;
} srv_job_t;

/* A dataset opened to render thumbnails of items named "FILE[i]". */
typedef struct srv_ds_cache {
    char path[1024];
    data_dataset_t *ds;
} srv_ds_cache_t;

#define SRV_DS_CACHE 4
#define SRV_THUMB_SIDE 96

struct srv_worker;

struct srv {
    srv_options_t opt;
    char host[256], store_dir[1024], token[256];

    /* The model (each worker's extractor holds how images become its
     * input: features/' one path, as `imgret extract` takes). */
    model_file_t *mf;
    model_placement_t pl; /* every worker's net */
    int fc7_layer, fc7_dim, n_classes;
    char model_hash_hex[2 * MODEL_HASH_BYTES + 1];
    int ae_bits;    /* 0: no autoencoder */
    int code_bits;  /* the store's (a multiple of 8; 0: none) */
    int code_index; /* a code index is open */
    char fc7_kind[64], code_kind[64];

    index_t *ix;
    srv_limits_t lim;
    atomic_llong items;
    atomic_ullong requests;
    double t_start;

    srv_queue_t queue;
    int n_workers;
    struct srv_worker *workers;
    pthread_t *threads;
    int threads_started;

    pthread_mutex_t ds_lock;
    srv_ds_cache_t ds_cache[SRV_DS_CACHE];
    int ds_next;

    /* Completed jobs on their way back to the loop. */
    pthread_mutex_t done_lock;
    srv_job_t *done_head, *done_tail;
    void (*notify_done)(struct srv *s); /* wakes the loop (event_active) */

    /* Forward-pass statistics (read by /metrics; written by workers). */
    atomic_ullong batches, batch_inputs;
    atomic_ullong search_batches, search_queries; /* grouped index calls, queries in them */

    void *loop; /* server.c's libevent state */
};

typedef struct srv_worker {
    struct srv *s;
    feat_extractor_t *ex; /* the net cut at FC7, with the model's input rule */
    int net_batch;
    ae_t *ae;
    float *x;   /* net_batch inputs */
    float *fc7; /* net_batch FC7 vectors of the last forward pass */
    srv_job_t **slot_job;
    int *slot_index; /* input index within its job */
} srv_worker_t;

int srv_worker_init(struct srv *s, srv_worker_t *w, util_err_t *err);
void srv_worker_free(srv_worker_t *w);
/* Runs a batch of jobs (popped together) and fills their results. */
void srv_worker_run(srv_worker_t *w, srv_job_t **jobs, size_t n);
/* Frees a job and everything it owns (not the HTTP request). */
void srv_job_free(srv_job_t *j);

#endif
