/* Twirp v7: error codes, their HTTP statuses and JSON bodies; routing,
 * content type and bearer-token checks. */
#include "server/json.h"
#include "server/server_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    int status;
} codes[SRV_N_CODES] = {
    [SRV_OK] = {"ok", 200},
    [SRV_CANCELED] = {"canceled", 408},
    [SRV_UNKNOWN] = {"unknown", 500},
    [SRV_INVALID_ARGUMENT] = {"invalid_argument", 400},
    [SRV_MALFORMED] = {"malformed", 400},
    [SRV_DEADLINE_EXCEEDED] = {"deadline_exceeded", 408},
    [SRV_NOT_FOUND] = {"not_found", 404},
    [SRV_BAD_ROUTE] = {"bad_route", 404},
    [SRV_ALREADY_EXISTS] = {"already_exists", 409},
    [SRV_PERMISSION_DENIED] = {"permission_denied", 403},
    [SRV_UNAUTHENTICATED] = {"unauthenticated", 401},
    [SRV_RESOURCE_EXHAUSTED] = {"resource_exhausted", 429},
    [SRV_FAILED_PRECONDITION] = {"failed_precondition", 412},
    [SRV_ABORTED] = {"aborted", 409},
    [SRV_OUT_OF_RANGE] = {"out_of_range", 400},
    [SRV_UNIMPLEMENTED] = {"unimplemented", 501},
    [SRV_INTERNAL] = {"internal", 500},
    [SRV_UNAVAILABLE] = {"unavailable", 503},
    [SRV_DATALOSS] = {"dataloss", 500},
};

const char *srv_code_name(srv_code_t code) {
    return (unsigned)code < SRV_N_CODES ? codes[code].name : "internal";
}

int srv_code_http_status(srv_code_t code) {
    return (unsigned)code < SRV_N_CODES ? codes[code].status : 500;
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

size_t srv_utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    unsigned cp = c & (0xFF >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

typedef struct jbuf {
    char *p;
    size_t len, cap; /* cap includes the NUL */
    int full;
} jbuf_t;

static void jput(jbuf_t *b, const char *s, size_t n) {
    if (b->full || b->len + n + 1 > b->cap) {
        b->full = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void jput_sink(void *ctx, const char *p, size_t n) {
    jput(ctx, p, n);
}

static void jstr(jbuf_t *b, const char *s) {
    srv_json_string(s, jput_sink, b);
}

size_t srv_error_json(const srv_error_t *e, char *buf, size_t cap) {
    if (!cap) return 0;
    /* Reserve room for the closing of the object so it always parses. */
    const char *tail = "}";
    jbuf_t b = {buf, 0, cap > 64 ? cap - 4 : cap, 0};
    buf[0] = 0;
    jput(&b, "{\"code\":", 8);
    jstr(&b, srv_code_name(e->code));
    jput(&b, ",\"msg\":", 7);
    size_t before_msg = b.len;
    jstr(&b, e->msg);
    if (b.full) { /* message too long: shorten it rather than break the JSON */
        b.full = 0;
        b.len = before_msg;
        buf[b.len] = 0;
        jstr(&b, "(message too long)");
    }
    jput(&b, ",\"meta\":{", 9);
    if (e->meta_key[0]) {
        jstr(&b, e->meta_key);
        jput(&b, ":", 1);
        jstr(&b, e->meta_value);
    }
    jput(&b, "}", 1);
    b.cap = cap;
    jput(&b, tail, 1);
    return b.len;
}

srv_code_t srv_code_of_index_error(const char *msg, srv_code_t fallback) {
    if (strstr(msg, "no item with id")) return SRV_NOT_FOUND;
    if (strstr(msg, "already exists")) return SRV_ALREADY_EXISTS;
    return fallback;
}

/* ---------------------------------------------------------------- routing */

static const char *const method_names[] = {"Search", "Classify", "Extract", "Add", "Remove",
                                           "Stats", "thumb"};

const char *srv_method_name(srv_method_t m) {
    return (unsigned)m <= SRV_THUMB ? method_names[m] : "?";
}

int srv_method_writes(srv_method_t m) {
    return m == SRV_ADD || m == SRV_REMOVE;
}

int srv_route(const char *path, srv_method_t *m, srv_error_t *e) {
    const size_t plen = strlen(SRV_TWIRP_PREFIX);
    if (!path || strncmp(path, SRV_TWIRP_PREFIX, plen) != 0)
        return srv_fail(e, SRV_BAD_ROUTE, "no handler for path; RPCs are POST %s<Method>",
                        SRV_TWIRP_PREFIX);
    const char *name = path + plen;
    for (int i = 0; i < SRV_N_METHODS; i++)
        if (!strcmp(name, method_names[i])) {
            *m = (srv_method_t)i;
            return 0;
        }
    srv_fail(e, SRV_BAD_ROUTE, "imgret.v1.ImageSearch has no method named in the path");
    srv_error_meta(e, "twirp_invalid_route", "POST /twirp/imgret.v1.ImageSearch/?");
    return -1;
}

int srv_check_content_type(const char *value, srv_encoding_t *enc, srv_error_t *e) {
    if (!value)
        return srv_fail(e, SRV_BAD_ROUTE,
                        "no Content-Type; use application/protobuf or application/json");
    size_t n = strcspn(value, ";");
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t')) n--;
    static const char pb[] = "application/protobuf", js[] = "application/json";
    if (n == sizeof pb - 1 && !strncasecmp(value, pb, n)) {
        *enc = SRV_PROTOBUF;
        return 0;
    }
    if (n == sizeof js - 1 && !strncasecmp(value, js, n)) {
        *enc = SRV_JSON;
        return 0;
    }
    return srv_fail(e, SRV_BAD_ROUTE,
                    "unexpected Content-Type; use application/protobuf or application/json");
}

int srv_check_token(const char *token, int scope_all, srv_method_t m, const char *authorization,
                    srv_error_t *e) {
    if (!token || !token[0]) return 0;
    if (!scope_all && !srv_method_writes(m)) return 0;
    static const char bearer[] = "Bearer ";
    if (!authorization || strncasecmp(authorization, bearer, sizeof bearer - 1) != 0)
        return srv_fail(e, SRV_UNAUTHENTICATED,
                        "this call needs an 'Authorization: Bearer <token>' header");
    const char *given = authorization + sizeof bearer - 1;
    size_t tl = strlen(token), gl = strlen(given);
    unsigned diff = (unsigned)(tl ^ gl);
    for (size_t i = 0; i < tl; i++) diff |= (unsigned char)token[i] ^ (unsigned char)given[i < gl ? i : 0];
    if (diff) return srv_fail(e, SRV_PERMISSION_DENIED, "the bearer token is not valid");
    return 0;
}
