/* server: gRPC over HTTP/2 beside HTTP/1.1 on the same port (grpc.c), and
 * what grpc.c needs of the loop (server.c gives it). Private to server/;
 * every function runs on the loop thread. */
#ifndef IMGRET_SERVER_GRPC_H
#define IMGRET_SERVER_GRPC_H

#include "server/server_impl.h"

struct bufferevent;
struct event_base;

/* What grpc.c needs of the loop, handed over by server.c as function
 * pointers so that calls go one way (server.c -> grpc.c). */
#define SRV_GRPC_ROW_HEALTH SRV_N_METHODS
#define SRV_GRPC_ROW_OTHER (SRV_N_METHODS + 1)
#define SRV_GRPC_ROWS (SRV_N_METHODS + 2)
typedef struct srv_grpc_loop {
    struct srv *s;
    /* Queues a validated job with a deadline of timeout_s seconds (j->grpc
     * set by the caller). -1 with *e set (resource_exhausted: queue full;
     * unavailable: shutting down) when it cannot be queued; the caller
     * still owns j then. */
    int (*enqueue)(struct srv *s, srv_job_t *j, double timeout_s, srv_error_t *e);
    /* Counts a gRPC call in /metrics (imgret_grpc_requests_total and its
     * duration histogram). row: a method, SRV_GRPC_ROW_HEALTH or
     * SRV_GRPC_ROW_OTHER. */
    void (*observe)(struct srv *s, int row, srv_code_t code, double seconds);
    /* Whether the server is shutting down (new calls get UNAVAILABLE). */
    int (*draining)(const struct srv *s);
} srv_grpc_loop_t;

/* evhttp's bufferevent callback (evhttp_set_bevcb; arg: the
 * srv_grpc_loop_t, which outlives every connection): every accepted
 * connection gets a bufferevent whose first bytes grpc.c sees before
 * evhttp. The 24-byte HTTP/2 preface turns the connection into an nghttp2
 * server session (evhttp then sees no bytes at all); anything else is
 * evhttp's unchanged. evhttp owns the connection either way: when it frees
 * it, the HTTP/2 session goes with it. */
struct bufferevent *srv_conn_bev_new(struct event_base *base, void *loop);

/* A job submitted by grpc.c came back from a worker: answer the stream
 * (when it is still open) and clear j->grpc. */
void srv_grpc_finish(struct srv *s, srv_job_t *j);
/* The job's deadline passed: answer DEADLINE_EXCEEDED now and clear
 * j->grpc (the job is freed when the worker hands it back). */
void srv_grpc_timeout(struct srv *s, srv_job_t *j);
/* The job is freed without an answer (shutdown): unlink it from its stream. */
void srv_grpc_forget(srv_job_t *j);

#endif
