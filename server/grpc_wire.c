/* The pure parts of gRPC (grpc/grpc doc/PROTOCOL-HTTP2.md): routing,
 * grpc-timeout, the length-prefixed message, grpc-message encoding and the
 * health messages. grpc.c drives them from nghttp2's callbacks. */
#include "server/grpc_wire.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

int srv_grpc_route(const char *path, srv_method_t *m, srv_error_t *e) {
    const size_t plen = strlen(SRV_GRPC_PREFIX);
    if (!path || strncmp(path, SRV_GRPC_PREFIX, plen) != 0)
        return srv_fail(e, SRV_BAD_ROUTE,
                        "unknown service; this server has %s and grpc.health.v1.Health",
                        SRV_GRPC_SERVICE);
    for (int i = 0; i < SRV_N_METHODS; i++)
        if (!strcmp(path + plen, srv_method_name((srv_method_t)i))) {
            *m = (srv_method_t)i;
            return 0;
        }
    return srv_fail(e, SRV_BAD_ROUTE, "%s has no method named in the path", SRV_GRPC_SERVICE);
}

int srv_grpc_content_type_ok(const char *value, size_t len) {
    static const char ct[] = "application/grpc";
    const size_t n = sizeof ct - 1;
    if (len < n || strncasecmp(value, ct, n) != 0) return 0;
    return len == n || value[n] == '+' || value[n] == ';';
}

int srv_grpc_parse_timeout(const char *value, size_t len, double *seconds) {
    if (len < 2 || len > 9) return -1;
    double v = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (value[i] < '0' || value[i] > '9') return -1;
        v = v * 10 + (value[i] - '0');
    }
    switch (value[len - 1]) {
    case 'H':
        v *= 3600;
        break;
    case 'M':
        v *= 60;
        break;
    case 'S':
        break;
    case 'm':
        v *= 1e-3;
        break;
    case 'u':
        v *= 1e-6;
        break;
    case 'n':
        v *= 1e-9;
        break;
    default:
        return -1;
    }
    *seconds = v;
    return 0;
}

int64_t srv_grpc_prefix_length(const uint8_t *buf, size_t len) {
    if (len < 5) return -1;
    return (int64_t)((uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 |
                     buf[4]);
}

int srv_grpc_unary_message(const uint8_t *buf, size_t len, int has_encoding, size_t max,
                           const uint8_t **msg, size_t *msg_len, srv_error_t *e) {
    if (len == 0) return srv_fail(e, SRV_MALFORMED, "the call carried no request message");
    if (len < 5)
        return srv_fail(e, SRV_MALFORMED,
                        "the request ended inside a message prefix (%zu of 5 bytes)", len);
    if (buf[0] > 1)
        return srv_fail(e, SRV_MALFORMED, "message prefix flag %u: only 0 and 1 exist", buf[0]);
    if (buf[0] == 1)
        return has_encoding
                   ? srv_fail(e, SRV_UNIMPLEMENTED,
                              "compressed messages are not supported; send grpc-encoding identity")
                   : srv_fail(
                         e, SRV_INTERNAL,
                         "the message is flagged compressed but the call has no grpc-encoding");
    const uint64_t n = (uint64_t)srv_grpc_prefix_length(buf, len);
    if (n > max)
        return srv_fail(e, SRV_RESOURCE_EXHAUSTED,
                        "the request message is %llu bytes; the limit is %zu",
                        (unsigned long long)n, max);
    if (n > len - 5)
        return srv_fail(e, SRV_MALFORMED, "the request ended %llu bytes into a %llu-byte message",
                        (unsigned long long)(len - 5), (unsigned long long)n);
    if (n < len - 5)
        return srv_fail(e, SRV_MALFORMED, "a unary call carries one message; %zu bytes follow it",
                        (size_t)(len - 5 - n));
    *msg = buf + 5;
    *msg_len = (size_t)n;
    return 0;
}

size_t srv_grpc_percent_encode(const char *msg, char *out, size_t cap) {
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        const int plain = *p >= 0x20 && *p <= 0x7e && *p != '%';
        const size_t need = plain ? 1 : 3;
        if (o + need >= cap) break;
        if (plain) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = 0;
    return o;
}

/* A protobuf varint at buf[*at] (at most 10 bytes); -1 when cut or too long. */
static int varint(const uint8_t *buf, size_t len, size_t *at, uint64_t *v) {
    *v = 0;
    for (int shift = 0; shift < 64 && *at < len; shift += 7) {
        const uint8_t b = buf[(*at)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

int srv_grpc_health_service(const uint8_t *msg, size_t len, char *out, size_t cap) {
    out[0] = 0;
    size_t at = 0;
    while (at < len) {
        uint64_t key, v;
        if (varint(msg, len, &at, &key)) return -1;
        switch (key & 7) {
        case 0:
            if (varint(msg, len, &at, &v)) return -1;
            break;
        case 1:
            if (len - at < 8) return -1;
            at += 8;
            break;
        case 5:
            if (len - at < 4) return -1;
            at += 4;
            break;
        case 2:
            if (varint(msg, len, &at, &v) || v > len - at) return -1;
            if (key >> 3 == 1) {
                if (v >= cap) return -1;
                memcpy(out, msg + at, (size_t)v);
                out[v] = 0;
            }
            at += (size_t)v;
            break;
        default:
            return -1;
        }
    }
    return 0;
}

size_t srv_grpc_health_response(int status, uint8_t out[2]) {
    out[0] = 0x08; /* field 1, varint */
    out[1] = (uint8_t)status;
    return 2;
}
