/* Twirp v7: the JSON error body, routing, content type and bearer-token
 * checks. (The codes and their HTTP statuses are error.c's.) */
#include "server/json.h"
#include "server/server_internal.h"

#include <string.h>
#include <strings.h>

/* The body {"code":...,"msg":msg,"meta":{...}} (meta left empty when
 * with_meta is 0). */
static void error_body(srv_strbuf_t *b, const srv_error_t *e, const char *msg, int with_meta) {
    srv_strbuf_puts(b, "{\"code\":");
    srv_json_string(b, srv_code_name(e->code));
    srv_strbuf_puts(b, ",\"msg\":");
    srv_json_string(b, msg);
    srv_strbuf_puts(b, ",\"meta\":{");
    if (with_meta && e->meta_key[0]) {
        srv_json_string(b, e->meta_key);
        srv_strbuf_puts(b, ":");
        srv_json_string(b, e->meta_value);
    }
    srv_strbuf_puts(b, "}}");
}

size_t srv_error_json(const srv_error_t *e, char *buf, size_t cap) {
    if (!cap) return 0;
    /* A body that does not fit is written again smaller rather than cut,
     * so what is sent always parses: the message shortened, then the meta
     * left out. */
    srv_strbuf_t b;
    srv_strbuf_init_fixed(&b, buf, cap);
    error_body(&b, e, e->msg, 1);
    for (int shorter = 0; b.failed && shorter < 2; shorter++) {
        srv_strbuf_init_fixed(&b, buf, cap);
        error_body(&b, e, "(message too long)", shorter == 0);
    }
    if (b.failed) { /* cap is too small for any body */
        buf[0] = 0;
        return 0;
    }
    return b.len;
}

/* ---------------------------------------------------------------- routing */

static const char *const method_names[] = {"Search", "Classify", "Extract", "Add",
                                           "Remove", "Stats",    "thumb"};

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
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
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
    for (size_t i = 0; i < tl; i++)
        diff |= (unsigned char)token[i] ^ (unsigned char)given[i < gl ? i : 0];
    if (diff) return srv_fail(e, SRV_PERMISSION_DENIED, "the bearer token is not valid");
    return 0;
}
