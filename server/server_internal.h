/* server: private declarations shared by the server's files, its unit tests
 * and its fuzz target. Not a public interface (server/server.h is).
 *
 * The pure parts live here: error codes and the kind table (error.c), the
 * string builder (strbuf.c), the Twirp error body, routing and token
 * checks (twirp.c), request decoding + validation (request.c, with the
 * proto3 JSON mapping in json.c / json.h), and the bounded batching work
 * queue (queue.c). None of them touches libevent, the model or the index,
 * so they are tested (and fuzzed) on their own. The calls go one way:
 * error.c and strbuf.c call no other server file; json.c calls only them;
 * twirp.c and request.c call json.c and them. */
#ifndef IMGRET_SERVER_INTERNAL_H
#define IMGRET_SERVER_INTERNAL_H

#include "imgret/v1/service.pb-c.h"
#include "util/util.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ Twirp errors */

/* The Twirp v7 error codes (spec_v7.md), with SRV_OK for success. */
typedef enum srv_code {
    SRV_OK = 0,
    SRV_CANCELED,
    SRV_UNKNOWN,
    SRV_INVALID_ARGUMENT,
    SRV_MALFORMED,
    SRV_DEADLINE_EXCEEDED,
    SRV_NOT_FOUND,
    SRV_BAD_ROUTE,
    SRV_ALREADY_EXISTS,
    SRV_PERMISSION_DENIED,
    SRV_UNAUTHENTICATED,
    SRV_RESOURCE_EXHAUSTED,
    SRV_FAILED_PRECONDITION,
    SRV_ABORTED,
    SRV_OUT_OF_RANGE,
    SRV_UNIMPLEMENTED,
    SRV_INTERNAL,
    SRV_UNAVAILABLE,
    SRV_DATALOSS,
    SRV_N_CODES
} srv_code_t;

/* The code's wire name ("invalid_argument", "dataloss", ...); "ok" for SRV_OK. */
const char *srv_code_name(srv_code_t code);
/* The HTTP status the spec gives the code (200 for SRV_OK). */
int srv_code_http_status(srv_code_t code);
/* The gRPC status number (google.rpc.Code) for the code: 0 for SRV_OK,
 * 12 UNIMPLEMENTED for bad_route, 3 INVALID_ARGUMENT for malformed. */
int srv_code_grpc_status(srv_code_t code);
/* The code that answers an error of the util kind (error.c's table):
 * invalid -> invalid_argument, not found -> not_found, exists ->
 * already_exists, limit -> resource_exhausted, precondition ->
 * failed_precondition, unavailable, deadline -> deadline_exceeded,
 * cancelled -> canceled, corrupt -> dataloss, unsupported ->
 * unimplemented, internal and I/O -> internal. */
srv_code_t srv_code_of_kind(util_err_kind_t kind);

/* An error on its way to the client: a code, a sentence, and optionally one
 * metadata entry (Twirp's "meta" map of strings). */
typedef struct srv_error {
    srv_code_t code;
    char msg[512];
    char meta_key[32];
    char meta_value[96];
} srv_error_t;

/* Sets *e (when not NULL) and returns -1. */
int srv_fail(srv_error_t *e, srv_code_t code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Adds the metadata entry (key and value are truncated to fit). */
void srv_error_meta(srv_error_t *e, const char *key, const char *value);

/* Writes the Twirp JSON error body {"code":"...","msg":"...","meta":{...}}
 * into buf (NUL-terminated, at most cap - 1 bytes) and returns its length.
 * Strings are JSON-escaped; bytes that are not valid UTF-8 become U+FFFD,
 * so the body is always valid JSON. A body that does not fit has its
 * message replaced by "(message too long)", then its meta left out; a cap
 * too small even for that (under about 70 bytes) gives "" and 0. */
size_t srv_error_json(const srv_error_t *e, char *buf, size_t cap);

/* --------------------------------------------------------- string builder */

/* A NUL-terminated string built by appending (strbuf.c): growing on the
 * heap, or bounded in a caller's buffer. A write that does not fit (bounded)
 * or finds no memory (growing) sets `failed` and is dropped, as is every
 * later one, so a writer checks once at the end. */
typedef struct srv_strbuf {
    char *p;         /* growing: malloc'd (the caller frees it), NULL until the first write */
    size_t len, cap; /* cap counts the NUL */
    int grows;
    int failed;
} srv_strbuf_t;

void srv_strbuf_init(srv_strbuf_t *b);                              /* growing, empty */
void srv_strbuf_init_fixed(srv_strbuf_t *b, char *buf, size_t cap); /* in buf, cap > 0 */
void srv_strbuf_put(srv_strbuf_t *b, const char *s, size_t n);
void srv_strbuf_puts(srv_strbuf_t *b, const char *s);

/* ---------------------------------------------------------------- routing */

typedef enum srv_method {
    SRV_SEARCH = 0,
    SRV_CLASSIFY,
    SRV_EXTRACT,
    SRV_ADD,
    SRV_REMOVE,
    SRV_STATS,
    SRV_N_METHODS,
    SRV_THUMB = SRV_N_METHODS, /* GET /thumb/<id>: work for a worker, not an RPC */
} srv_method_t;

#define SRV_TWIRP_PREFIX "/twirp/imgret.v1.ImageSearch/"

const char *srv_method_name(srv_method_t m); /* "Search", ...; "thumb" */
/* Whether the method changes the store (Add, Remove): the "write" token scope. */
int srv_method_writes(srv_method_t m);

/* Maps a request path (without query string) to a method: "/twirp/imgret.v1.
 * ImageSearch/<Method>" exactly. Anything else is bad_route. */
int srv_route(const char *path, srv_method_t *m, srv_error_t *e);

/* Twirp's two body encodings; replies use the request's. */
typedef enum srv_encoding {
    SRV_PROTOBUF = 0, /* application/protobuf */
    SRV_JSON,         /* application/json: the proto3 JSON mapping (json.h) */
} srv_encoding_t;

/* Checks the request's Content-Type header value (may be NULL):
 * application/protobuf or application/json, case-insensitive, parameters
 * after ';' ignored; sets *enc. Anything else is bad_route (the spec). */
int srv_check_content_type(const char *value, srv_encoding_t *enc, srv_error_t *e);

/* Bearer token check. scope_all: every RPC needs it; else only writes.
 * authorization: the header value or NULL. Missing: unauthenticated; wrong:
 * permission_denied. Compares in constant time. token NULL/"": no check. */
int srv_check_token(const char *token, int scope_all, srv_method_t m, const char *authorization,
                    srv_error_t *e);

/* ------------------------------------------------------ request validation */

/* What the server can do, for validation. */
typedef struct srv_limits {
    int fc7_dim;          /* floats per FC7 vector */
    int code_bits;        /* store's code bits (0: no codes) */
    int has_ae;           /* an autoencoder: codes of new vectors/images */
    int n_classes;        /* logits of the model */
    size_t max_images;    /* images per Extract request, and per Add */
    size_t max_items;     /* items per Add, ids per Remove */
    int ten_crop_inputs;  /* forward inputs of a ten-crop Classify (10) */
    int max_k;            /* largest k (and rerank_candidates) the index accepts */
    size_t max_uri_bytes; /* longest uri the store keeps */
} srv_limits_t;

/* srv_limits_t with the defaults: 64 images, 1024 items, 10 crops. What
 * the model and the store decide (fc7_dim, code_bits, has_ae, n_classes,
 * max_k, max_uri_bytes) is 0: the server fills it from what it opened. */
void srv_limits_default(srv_limits_t *lim);

#define SRV_DEFAULT_K 10
#define SRV_DEFAULT_CLASSES_K 5

/* A decoded, validated request. msg is the protobuf-c message (owned). */
typedef struct srv_request {
    srv_method_t method;
    srv_encoding_t encoding; /* the body's, and so the reply's */
    ProtobufCMessage *msg;
    int n_inputs; /* network inputs (crops) its images need: the batching weight */
    int n_images; /* images to decode */
} srv_request_t;

/* The method's request message type (NULL past SRV_N_METHODS). */
const ProtobufCMessageDescriptor *srv_request_descriptor(srv_method_t m);

/* Decodes body (protobuf, or JSON by the proto3 mapping) as the method's
 * request message and validates it against lim. Both encodings give the
 * same protobuf-c message and go through the same validation. A body that
 * does not decode is malformed (for JSON the sentence names the offset and
 * the field); a decoded one with bad fields is invalid_argument (or
 * failed_precondition for what this server lacks, e.g. HAMMING without
 * codes). On success fills *out (clear it with srv_request_clear). Never
 * reads past len. */
int srv_request_decode(srv_method_t m, srv_encoding_t enc, const uint8_t *body, size_t len,
                       const srv_limits_t *lim, srv_request_t *out, srv_error_t *e);
void srv_request_clear(srv_request_t *r); /* accepts zeroed requests */

/* The effective metric of a search request (UNSPECIFIED resolved). */
Imgret__V1__Metric srv_search_metric(const Imgret__V1__SearchRequest *r);

/* ------------------------------------------------------- batching queue */

/* An intrusive queue node: a job embeds one. weight is what the job brings
 * to a batch (network inputs for a forward pass, 1 for a search); 0 means
 * it is served alone. Only jobs of the same kind share a batch. */
typedef struct srv_qnode {
    struct srv_qnode *next;
    int weight;
    int kind;
} srv_qnode_t;

#define SRV_KIND_FORWARD 0 /* needs a forward pass: batched by crops */
#define SRV_KIND_SEARCH 1  /* a search by vector, id or code: batched into one index call */

/* A bounded FIFO shared by the event loop (push) and the workers (pop). */
typedef struct srv_queue {
    pthread_mutex_t lock;
    pthread_cond_t nonempty;
    srv_qnode_t *head, *tail;
    size_t len, cap;
    int closed;
} srv_queue_t;

int srv_queue_init(srv_queue_t *q, size_t cap);
void srv_queue_destroy(srv_queue_t *q);
/* Appends a job; never blocks. -1 when the queue holds cap jobs already
 * (UTIL_ERR_LIMIT: the caller answers resource_exhausted) or is closed
 * (UTIL_ERR_UNAVAILABLE). err may be NULL. */
int srv_queue_push(srv_queue_t *q, srv_qnode_t *n, util_err_t *err);
size_t srv_queue_len(srv_queue_t *q);
/* Wakes every waiting worker; pop then returns what is left and 0 once empty. */
void srv_queue_close(srv_queue_t *q);

/* Takes a batch: waits for a first job (until the queue is closed and
 * empty: returns 0). A job of weight 0 is returned alone. Otherwise further
 * jobs of the first one's kind with weight > 0 are taken from the head
 * while the total weight stays <= max_weight, waiting up to wait_s seconds
 * (from the first job's pop) for more to arrive; a job of weight 0 or of
 * another kind at the head, a full batch or the end of the wait closes the
 * batch. A first job heavier than max_weight is taken alone. Writes at most
 * cap nodes into out; returns how many. */
size_t srv_queue_pop_batch(srv_queue_t *q, int max_weight, double wait_s, srv_qnode_t **out,
                           size_t cap);

#endif
