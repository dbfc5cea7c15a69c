/* gRPC over HTTP/2 on the port evhttp serves (libnghttp2 on the same
 * libevent loop). evhttp makes every accepted connection's bufferevent
 * through srv_conn_bev_new (its bevcb), which puts a callback on the
 * bufferevent's input buffer: it runs when bytes arrive, before evhttp's
 * read callback looks at them. HTTP/1.1 is left alone; the 24-byte HTTP/2
 * preface (cleartext with prior knowledge) makes the connection an nghttp2
 * server session that takes every byte out of the buffer and writes its
 * frames to the same bufferevent, while evhttp keeps waiting for a request
 * line that never comes. libevent 2.1 has no public way to hand an
 * accepted descriptor to evhttp (evhttp_get_request is static; exported
 * only in 2.2), so evhttp owns every connection, and an HTTP/2 session
 * ends with it (evhttp's close callback).
 *
 * A call goes through the same route table, token check, request decoding
 * and validation (request.c), work queue, batching and handlers as Twirp;
 * only the framing and the status mapping (error.c's gRPC column) differ. */
#include "server/grpc.h"
#include "server/grpc_wire.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <nghttp2/nghttp2.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24
/* Streams a client may have open at once (more are refused by nghttp2
 * with REFUSED_STREAM): with each request capped at --max-body this bounds
 * a connection's buffered requests. */
#define H2_MAX_STREAMS 128
#define H2_STREAM_WINDOW (1 << 20)
#define H2_CONN_WINDOW (16 << 20)
/* Frames are produced only while less than this waits for the socket: a
 * client that never reads stops getting more (and its streams wait). */
#define H2_OUT_HIGH ((size_t)1 << 20)

typedef enum conn_mode { CONN_SNIFF, CONN_HTTP1, CONN_H2 } conn_mode_t;

struct h2_conn;

typedef struct h2_stream {
    struct h2_stream *prev, *next; /* the connection's open streams */
    struct h2_conn *c;
    int32_t id;
    double t0;
    /* Request headers. */
    char path[160];
    char authorization[320];
    int post, grpc_type, has_encoding, bad_timeout, path_too_long, auth_too_long;
    double timeout_s; /* grpc-timeout; -1: none given */
    struct evbuffer *body;
    int answered;    /* a response has been submitted */
    int watch;       /* Health/Watch: the message is sent, the stream left open */
    int remote_done; /* END_STREAM seen */
    srv_job_t *job;  /* queued or with a worker (job->grpc == this) */
    /* Response body: the prefixed message, sent by the data provider, then trailers. */
    uint8_t *out;
    size_t out_len, out_off;
} h2_stream_t;

typedef struct h2_conn {
    const srv_grpc_loop_t *loop;
    struct srv *s;
    struct bufferevent *bev; /* the socket's, which evhttp's connection reads */
    struct evbuffer_cb_entry *in_cb, *out_cb;
    struct evbuffer *held; /* the first bytes while they match the preface */
    struct event *hook;    /* on_hook: registers for evhttp's close */
    conn_mode_t mode;
    nghttp2_session *session;
    h2_stream_t *streams;
    int closing; /* close once the output has drained */
    int close_sent;
    int flushing, feeding;
} h2_conn_t;

static void h2_flush(h2_conn_t *c);

/* ----------------------------------------------------------- streams */

static h2_stream_t *stream_new(h2_conn_t *c, int32_t id) {
    h2_stream_t *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    if (!(st->body = evbuffer_new())) {
        free(st);
        return NULL;
    }
    st->c = c;
    st->id = id;
    st->t0 = util_now();
    st->timeout_s = -1;
    st->next = c->streams;
    if (c->streams) c->streams->prev = st;
    c->streams = st;
    return st;
}

static void stream_free(h2_stream_t *st) {
    h2_conn_t *c = st->c;
    if (st->job) { /* the worker's answer has nowhere to go: it is dropped on return */
        atomic_store(&st->job->abandoned, 1);
        st->job->grpc = NULL;
    }
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next) st->next->prev = st->prev;
    evbuffer_free(st->body);
    free(st->out);
    free(st);
}

/* ------------------------------------------------------------ replies */

#define NV(n, v)                                                                                   \
    { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }

static int row_of(const h2_stream_t *st) {
    srv_method_t m;
    if (!strcmp(st->path, SRV_GRPC_HEALTH_CHECK) || !strcmp(st->path, SRV_GRPC_HEALTH_WATCH))
        return SRV_GRPC_ROW_HEALTH;
    return srv_grpc_route(st->path, &m, NULL) == 0 ? (int)m : SRV_GRPC_ROW_OTHER;
}

/* Trailers-Only: one HEADERS frame with the status, END_STREAM. */
static void answer_error(h2_stream_t *st, const srv_error_t *e) {
    if (st->answered) return;
    st->answered = 1;
    char status[16], msg[1024];
    snprintf(status, sizeof status, "%d", srv_code_grpc_status(e->code));
    srv_grpc_percent_encode(e->msg, msg, sizeof msg);
    nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc"),
                       NV("grpc-status", status), NV("grpc-message", msg)};
    /* A stream answered early (a message over the limit) is not reset:
     * grpcio reports RST_STREAM NO_ERROR as INTERNAL instead of the status.
     * What the client still sends is counted against flow control and
     * dropped (on_data_chunk). */
    nghttp2_submit_response(st->c->session, st->id, nv, sizeof nv / sizeof nv[0], NULL);
    st->c->loop->observe(st->c->s, row_of(st), e->code, util_now() - st->t0);
}

/* An HTTP-level refusal (not a gRPC call at all): :status only. */
static void answer_http(h2_stream_t *st, const char *status) {
    if (st->answered) return;
    st->answered = 1;
    nghttp2_nv nv[] = {NV(":status", status)};
    nghttp2_submit_response(st->c->session, st->id, nv, 1, NULL);
    st->c->loop->observe(st->c->s, SRV_GRPC_ROW_OTHER, SRV_BAD_ROUTE, util_now() - st->t0);
}

static ssize_t read_message(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *source, void *user) {
    (void)source, (void)user;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(session, id);
    if (!st) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n = st->out_len - st->out_off;
    if (n > length) n = length;
    if (n == 0 && st->watch) return NGHTTP2_ERR_DEFERRED; /* Watch: the stream stays open */
    memcpy(buf, st->out + st->out_off, n);
    st->out_off += n;
    if (st->out_off == st->out_len && !st->watch) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv nv[] = {NV("grpc-status", "0")};
        if (nghttp2_submit_trailer(session, id, nv, 1))
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return (ssize_t)n;
}

/* HEADERS, one DATA message (5-byte prefix + protobuf), trailers grpc-status 0. */
static void answer_message(h2_stream_t *st, int row, const uint8_t *msg, size_t len) {
    if (st->answered) return;
    if (len > UINT32_MAX || !(st->out = malloc(len + 5))) {
        srv_error_t e;
        srv_fail(&e, SRV_RESOURCE_EXHAUSTED, "out of memory for the reply");
        answer_error(st, &e);
        return;
    }
    st->answered = 1;
    st->out[0] = 0;
    st->out[1] = (uint8_t)(len >> 24);
    st->out[2] = (uint8_t)(len >> 16);
    st->out[3] = (uint8_t)(len >> 8);
    st->out[4] = (uint8_t)len;
    if (len) memcpy(st->out + 5, msg, len);
    st->out_len = len + 5;
    nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
    nghttp2_data_provider dp = {.source.ptr = st, .read_callback = read_message};
    nghttp2_submit_response(st->c->session, st->id, nv, 2, &dp);
    st->c->loop->observe(st->c->s, row, SRV_OK, util_now() - st->t0);
}

void srv_grpc_finish(struct srv *s, srv_job_t *j) {
    (void)s;
    h2_stream_t *st = j->grpc;
    if (!st) return;
    j->grpc = NULL;
    st->job = NULL;
    if (j->failed)
        answer_error(st, &j->err);
    else
        answer_message(st, (int)j->req.method, j->resp, j->resp_len);
    h2_flush(st->c);
}

void srv_grpc_timeout(struct srv *s, srv_job_t *j) {
    (void)s;
    h2_stream_t *st = j->grpc;
    if (!st) return;
    j->grpc = NULL;
    st->job = NULL;
    srv_error_t e;
    srv_fail(&e, SRV_DEADLINE_EXCEEDED, "the deadline passed before the answer was ready");
    answer_error(st, &e);
    h2_flush(st->c);
}

void srv_grpc_forget(srv_job_t *j) {
    h2_stream_t *st = j->grpc;
    if (!st) return;
    st->job = NULL;
    j->grpc = NULL;
}

/* ------------------------------------------------------------ calls */

/* Health/Check, and Health/Watch (watch: the status as the first message
 * of an open stream; SERVICE_UNKNOWN for another service, as the health
 * protocol says). Watch sends no later change: the status changes only at
 * shutdown, when the connection closes. */
static void health_check(h2_stream_t *st, const uint8_t *msg, size_t len, int watch) {
    srv_error_t e;
    char service[128];
    if (srv_grpc_health_service(msg, len, service, sizeof service)) {
        srv_fail(&e, SRV_MALFORMED, "the HealthCheckRequest does not decode");
        answer_error(st, &e);
        return;
    }
    const int known = !service[0] || !strcmp(service, SRV_GRPC_SERVICE);
    if (watch) {
        uint8_t out[2];
        int status = !known                            ? SRV_GRPC_SERVICE_UNKNOWN
                     : st->c->loop->draining(st->c->s) ? SRV_GRPC_NOT_SERVING
                                                       : SRV_GRPC_SERVING;
        st->watch = 1;
        answer_message(st, SRV_GRPC_ROW_HEALTH, out, srv_grpc_health_response(status, out));
        return;
    }
    if (!known) {
        srv_fail(&e, SRV_NOT_FOUND, "no service named '%s' here; there is %s", service,
                 SRV_GRPC_SERVICE);
        answer_error(st, &e);
        return;
    }
    uint8_t out[2];
    size_t n = srv_grpc_health_response(
        st->c->loop->draining(st->c->s) ? SRV_GRPC_NOT_SERVING : SRV_GRPC_SERVING, out);
    answer_message(st, SRV_GRPC_ROW_HEALTH, out, n);
}

/* The request is complete (END_STREAM): check it, decode it and queue it
 * exactly as handle_twirp does for Twirp. */
static void dispatch(h2_stream_t *st) {
    struct srv *s = st->c->s;
    srv_error_t e;
    srv_method_t m;
    if (!st->post) {
        answer_http(st, "405");
        return;
    }
    if (!st->grpc_type) {
        answer_http(st, "415"); /* what the gRPC spec answers a non-gRPC content type */
        return;
    }
    const int watch = !strcmp(st->path, SRV_GRPC_HEALTH_WATCH);
    const int health = watch || !strcmp(st->path, SRV_GRPC_HEALTH_CHECK);
    if (!health) {
        if (st->path_too_long || srv_grpc_route(st->path, &m, &e)) {
            if (st->path_too_long) srv_fail(&e, SRV_BAD_ROUTE, "the :path is too long");
            answer_error(st, &e);
            return;
        }
        if (st->auth_too_long) {
            srv_fail(&e, SRV_PERMISSION_DENIED, "the bearer token is not valid");
            answer_error(st, &e);
            return;
        }
        if (srv_check_token(s->token[0] ? s->token : NULL, s->opt.token_all, m,
                            st->authorization[0] ? st->authorization : NULL, &e)) {
            answer_error(st, &e);
            return;
        }
        if (st->c->loop->draining(s)) {
            srv_fail(&e, SRV_UNAVAILABLE, "the server is shutting down");
            answer_error(st, &e);
            return;
        }
        if (st->bad_timeout) {
            srv_fail(&e, SRV_INVALID_ARGUMENT,
                     "grpc-timeout: expected 1 to 8 digits and a unit (H M S m u n)");
            answer_error(st, &e);
            return;
        }
    }
    const size_t len = evbuffer_get_length(st->body);
    const uint8_t *body = len ? evbuffer_pullup(st->body, -1) : NULL;
    const uint8_t *msg = NULL;
    size_t msg_len = 0;
    if (len && !body) {
        srv_fail(&e, SRV_RESOURCE_EXHAUSTED, "out of memory reading the request");
        answer_error(st, &e);
        return;
    }
    if (srv_grpc_unary_message(body, len, st->has_encoding, s->opt.max_body, &msg, &msg_len, &e)) {
        answer_error(st, &e);
        return;
    }
    if (health) {
        health_check(st, msg, msg_len, watch);
        return;
    }
    srv_job_t *j = calloc(1, sizeof *j);
    if (!j) {
        srv_fail(&e, SRV_RESOURCE_EXHAUSTED, "out of memory");
        answer_error(st, &e);
        return;
    }
    if (srv_request_decode(m, SRV_PROTOBUF, msg, msg_len, &s->lim, &j->req, &e)) {
        free(j);
        answer_error(st, &e);
        return;
    }
    atomic_fetch_add(&s->requests, 1);
    j->t_arrival = st->t0;
    j->grpc = st;
    st->job = j;
    double deadline = s->opt.timeout_s;
    if (st->timeout_s >= 0 && st->timeout_s < deadline) deadline = st->timeout_s; /* "0S" too */
    if (st->c->loop->enqueue(s, j, deadline, &e)) {
        st->job = NULL;
        j->grpc = NULL;
        srv_job_free(j);
        answer_error(st, &e);
    }
}

/* ------------------------------------------------ nghttp2 callbacks */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user) {
    h2_conn_t *c = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    h2_stream_t *st = stream_new(c, frame->hd.stream_id);
    if (!st) return NGHTTP2_ERR_CALLBACK_FAILURE;
    nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, st);
    return 0;
}

static int name_is(const uint8_t *name, size_t len, const char *want) {
    return len == strlen(want) && !memcmp(name, want, len);
}

static void copy_header(char *dst, size_t cap, const uint8_t *v, size_t len, int *too_long) {
    if (len >= cap || memchr(v, 0, len)) {
        *too_long = 1;
        return;
    }
    memcpy(dst, v, len);
    dst[len] = 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user) {
    (void)flags, (void)user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!st) return 0;
    if (name_is(name, namelen, ":path")) {
        copy_header(st->path, sizeof st->path, value, valuelen, &st->path_too_long);
    } else if (name_is(name, namelen, ":method")) {
        st->post = valuelen == 4 && !memcmp(value, "POST", 4);
    } else if (name_is(name, namelen, "content-type")) {
        st->grpc_type = srv_grpc_content_type_ok((const char *)value, valuelen);
    } else if (name_is(name, namelen, "grpc-timeout")) {
        st->bad_timeout =
            srv_grpc_parse_timeout((const char *)value, valuelen, &st->timeout_s) != 0;
    } else if (name_is(name, namelen, "authorization")) {
        copy_header(st->authorization, sizeof st->authorization, value, valuelen,
                    &st->auth_too_long);
    } else if (name_is(name, namelen, "grpc-encoding")) {
        st->has_encoding = !(valuelen == 8 && !memcmp(value, "identity", 8));
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user) {
    (void)flags;
    h2_conn_t *c = user;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(session, id);
    if (!st || st->answered) return 0;
    if (evbuffer_add(st->body, data, len)) return NGHTTP2_ERR_CALLBACK_FAILURE;
    /* A message over the limit is refused as soon as its prefix says so,
     * not after buffering it. */
    const size_t have = evbuffer_get_length(st->body);
    uint8_t prefix[5];
    if (have >= 5 && evbuffer_copyout(st->body, prefix, 5) == 5) {
        const int64_t n = srv_grpc_prefix_length(prefix, 5);
        if ((uint64_t)n > c->s->opt.max_body || have - 5 > c->s->opt.max_body) {
            srv_error_t e;
            srv_fail(&e, SRV_RESOURCE_EXHAUSTED,
                     "the request message is %lld bytes; the limit is %zu (--max-body)",
                     (long long)n, c->s->opt.max_body);
            answer_error(st, &e);
            evbuffer_drain(st->body, have);
        }
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user) {
    (void)user;
    if ((frame->hd.type != NGHTTP2_DATA && frame->hd.type != NGHTTP2_HEADERS) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!st) return 0;
    st->remote_done = 1;
    if (!st->answered) dispatch(st);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error_code, void *user) {
    (void)error_code, (void)user;
    h2_stream_t *st = nghttp2_session_get_stream_user_data(session, id);
    if (st) {
        nghttp2_session_set_stream_user_data(session, id, NULL);
        stream_free(st);
    }
    return 0;
}

/* ------------------------------------------------------- connection */

/* Makes evhttp close the connection (it owns it): an EOF on its
 * bufferevent, deferred so that nothing is freed under the caller. */
static void h2_close(h2_conn_t *c) {
    c->closing = 1;
    if (c->close_sent || evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) return;
    c->close_sent = 1;
    bufferevent_trigger_event(c->bev, BEV_EVENT_EOF | BEV_EVENT_READING, BEV_TRIG_DEFER_CALLBACKS);
}

/* Writes what nghttp2 has to send while the socket keeps up. */
static void h2_flush(h2_conn_t *c) {
    if (!c->session || c->flushing) return;
    c->flushing = 1;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (!c->closing && evbuffer_get_length(out) < H2_OUT_HIGH) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(c->session, &data);
        if (n < 0) {
            c->closing = 1;
            break;
        }
        if (n == 0) break;
        if (evbuffer_add(out, data, (size_t)n)) {
            c->closing = 1;
            break;
        }
    }
    c->flushing = 0;
    if (c->closing ||
        (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)))
        h2_close(c);
}

/* The socket took some of the output: produce more, or close when done. */
static void on_output_drained(struct evbuffer *out, const struct evbuffer_cb_info *info,
                              void *arg) {
    h2_conn_t *c = arg;
    if (!info->n_deleted) return;
    if (c->closing) {
        if (evbuffer_get_length(out) == 0) h2_close(c);
        return;
    }
    if (evbuffer_get_length(out) < H2_OUT_HIGH / 2) h2_flush(c);
}

static int h2_start(h2_conn_t *c) {
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb)) return -1;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    int rc = nghttp2_session_server_new(&c->session, cb, c);
    nghttp2_session_callbacks_del(cb);
    if (rc) return -1;
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
                                   {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW}};
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) ||
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW))
        return -1;
    c->out_cb = evbuffer_add_cb(bufferevent_get_output(c->bev), on_output_drained, c);
    if (!c->out_cb) return -1;
    /* evhttp's read timeout is for a request line, and it disabled writing
     * until it has a reply; an HTTP/2 connection idles between calls and
     * writes whenever nghttp2 has frames. */
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    bufferevent_enable(c->bev, EV_WRITE);
    return 0;
}

/* Hands src's bytes to nghttp2 (and empties src). */
static void h2_feed(h2_conn_t *c, struct evbuffer *src) {
    while (!c->closing && evbuffer_get_length(src) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(src, -1, NULL, &v, 1) < 1) break;
        ssize_t n = nghttp2_session_mem_recv(c->session, v.iov_base, v.iov_len);
        if (n < 0) {
            /* nghttp2 queued a GOAWAY for what it could name; the rest (a
             * callback failure, a flood) ends the session here. */
            nghttp2_session_terminate_session(c->session, NGHTTP2_PROTOCOL_ERROR);
            const uint8_t *data;
            ssize_t k;
            struct evbuffer *out = bufferevent_get_output(c->bev);
            while ((k = nghttp2_session_mem_send(c->session, &data)) > 0)
                evbuffer_add(out, data, (size_t)k);
            c->closing = 1;
            break;
        }
        evbuffer_drain(src, (size_t)n);
    }
    evbuffer_drain(src, evbuffer_get_length(src));
    h2_flush(c);
}

/* Bytes arrived in the connection's input buffer, before evhttp's read
 * callback sees them. Sniffing: the preface's bytes are kept aside while
 * they match; a mismatch gives them back and the connection is evhttp's.
 * HTTP/2: every byte is taken out for nghttp2, so evhttp finds the buffer
 * empty and keeps waiting for a request line. */
static void on_input(struct evbuffer *in, const struct evbuffer_cb_info *info, void *arg) {
    h2_conn_t *c = arg;
    if (!info->n_added || c->mode == CONN_HTTP1 || c->feeding) return;
    c->feeding = 1;
    if (c->mode == CONN_SNIFF) {
        evbuffer_add_buffer(c->held, in);
        uint8_t head[H2_PREFACE_LEN];
        size_t n = evbuffer_get_length(c->held);
        if (n > H2_PREFACE_LEN) n = H2_PREFACE_LEN;
        evbuffer_copyout(c->held, head, n);
        if (memcmp(head, H2_PREFACE, n) != 0) {
            c->mode = CONN_HTTP1;
            evbuffer_prepend_buffer(in, c->held);
        } else if (n == H2_PREFACE_LEN) {
            if (h2_start(c)) {
                c->mode = CONN_HTTP1; /* out of memory: evhttp answers 400 and closes */
                evbuffer_prepend_buffer(in, c->held);
            } else {
                c->mode = CONN_H2;
                evbuffer_prepend_buffer(in, c->held); /* nghttp2 reads the preface too */
            }
        }
    }
    if (c->mode == CONN_H2) h2_feed(c, in);
    c->feeding = 0;
}

static void conn_free(h2_conn_t *c) {
    while (c->streams)
        stream_free(c->streams);
    if (c->in_cb) evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->in_cb);
    if (c->out_cb) evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
    if (c->hook) event_free(c->hook);
    if (c->session) nghttp2_session_del(c->session);
    evbuffer_free(c->held);
    free(c);
}

/* evhttp is freeing the connection (its close callback runs first): the
 * session and its streams go with it. */
static void on_closed(struct evhttp_connection *evcon, void *arg) {
    (void)evcon;
    conn_free(arg);
}

/* One loop turn after the accept, evhttp has made its connection around
 * the bufferevent and named it as the callbacks' argument: register for
 * its close. */
static void on_hook(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    h2_conn_t *c = arg;
    void *cbarg = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, NULL, &cbarg);
    struct evhttp_connection *evcon = cbarg;
    if (evcon && evhttp_connection_get_bufferevent(evcon) == c->bev)
        evhttp_connection_set_closecb(evcon, on_closed, c);
}

struct bufferevent *srv_conn_bev_new(struct event_base *base, void *loop) {
    h2_conn_t *c = calloc(1, sizeof *c);
    if (!c) return NULL; /* evhttp makes its own bufferevent: HTTP/1.1 only */
    c->loop = loop;
    c->s = c->loop->s;
    c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    c->held = evbuffer_new();
    c->hook = event_new(base, -1, 0, on_hook, c);
    if (c->bev && c->held && c->hook)
        c->in_cb = evbuffer_add_cb(bufferevent_get_input(c->bev), on_input, c);
    if (!c->in_cb) {
        if (c->bev) bufferevent_free(c->bev);
        if (c->held) evbuffer_free(c->held);
        if (c->hook) event_free(c->hook);
        free(c);
        return NULL;
    }
    event_active(c->hook, 0, 0);
    return c->bev;
}
