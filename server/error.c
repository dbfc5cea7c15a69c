/* The server's errors: the Twirp codes with everything a transport needs
 * to answer one (wire name, HTTP status, gRPC status), which code answers
 * an error of each util kind, and srv_fail. Depends on nothing else in
 * server/, so every other file can report errors through it. */
#include "server/server_internal.h"

#include <stdarg.h>
#include <stdio.h>

#define KIND(k) (1u << (k))

/* The one table. Each Twirp v7 code (spec_v7.md) with the HTTP status the
 * spec gives it, the gRPC status number a gRPC front end answers with
 * (google.rpc.Code: grpc/status.proto, where Twirp's codes come from), and
 * the util kinds it answers (srv_code_of_kind): each kind on exactly one
 * row. The two Twirp-only codes take the gRPC status gRPC gives the same
 * failure: an unknown method is UNIMPLEMENTED, a body that does not
 * decode INVALID_ARGUMENT (the client's to fix). */
static const struct {
    const char *name;
    int http_status;
    int grpc_status;
    unsigned kinds; /* KIND(UTIL_ERR_...) bits */
} codes[SRV_N_CODES] = {
    [SRV_OK] = {"ok", 200, 0, 0},
    [SRV_CANCELED] = {"canceled", 408, 1, KIND(UTIL_ERR_CANCELLED)},
    [SRV_UNKNOWN] = {"unknown", 500, 2, 0},
    [SRV_INVALID_ARGUMENT] = {"invalid_argument", 400, 3, KIND(UTIL_ERR_INVALID)},
    [SRV_MALFORMED] = {"malformed", 400, 3, 0},
    [SRV_DEADLINE_EXCEEDED] = {"deadline_exceeded", 408, 4, KIND(UTIL_ERR_DEADLINE)},
    [SRV_NOT_FOUND] = {"not_found", 404, 5, KIND(UTIL_ERR_NOT_FOUND)},
    [SRV_BAD_ROUTE] = {"bad_route", 404, 12, 0},
    [SRV_ALREADY_EXISTS] = {"already_exists", 409, 6, KIND(UTIL_ERR_EXISTS)},
    [SRV_PERMISSION_DENIED] = {"permission_denied", 403, 7, 0},
    [SRV_UNAUTHENTICATED] = {"unauthenticated", 401, 16, 0},
    [SRV_RESOURCE_EXHAUSTED] = {"resource_exhausted", 429, 8, KIND(UTIL_ERR_LIMIT)},
    [SRV_FAILED_PRECONDITION] = {"failed_precondition", 412, 9, KIND(UTIL_ERR_PRECONDITION)},
    [SRV_ABORTED] = {"aborted", 409, 10, 0},
    [SRV_OUT_OF_RANGE] = {"out_of_range", 400, 11, 0},
    [SRV_UNIMPLEMENTED] = {"unimplemented", 501, 12, KIND(UTIL_ERR_UNSUPPORTED)},
    /* An I/O failure is the server's, not the caller's: internal, as gRPC
     * advises for errors of the system underneath. */
    [SRV_INTERNAL] = {"internal", 500, 13, KIND(UTIL_ERR_INTERNAL) | KIND(UTIL_ERR_IO)},
    [SRV_UNAVAILABLE] = {"unavailable", 503, 14, KIND(UTIL_ERR_UNAVAILABLE)},
    [SRV_DATALOSS] = {"dataloss", 500, 15, KIND(UTIL_ERR_CORRUPT)},
};

_Static_assert(UTIL_ERR_N_KINDS <= 32, "kinds are bits of an unsigned");

const char *srv_code_name(srv_code_t code) {
    return (unsigned)code < SRV_N_CODES ? codes[code].name : codes[SRV_INTERNAL].name;
}

int srv_code_http_status(srv_code_t code) {
    return (unsigned)code < SRV_N_CODES ? codes[code].http_status : codes[SRV_INTERNAL].http_status;
}

int srv_code_grpc_status(srv_code_t code) {
    return (unsigned)code < SRV_N_CODES ? codes[code].grpc_status : codes[SRV_INTERNAL].grpc_status;
}

srv_code_t srv_code_of_kind(util_err_kind_t kind) {
    if ((unsigned)kind < UTIL_ERR_N_KINDS)
        for (int c = 0; c < SRV_N_CODES; c++)
            if (codes[c].kinds & KIND(kind)) return (srv_code_t)c;
    return SRV_INTERNAL;
}

int srv_fail(srv_error_t *e, srv_code_t code, const char *fmt, ...) {
    if (!e) return -1;
    e->code = code;
    e->meta_key[0] = e->meta_value[0] = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

void srv_error_meta(srv_error_t *e, const char *key, const char *value) {
    snprintf(e->meta_key, sizeof e->meta_key, "%s", key);
    snprintf(e->meta_value, sizeof e->meta_value, "%s", value);
}
