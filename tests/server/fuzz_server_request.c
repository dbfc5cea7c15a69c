/* libFuzzer target: the server's request path from bytes to a validated
 * request or a Twirp error. The input's first byte picks the method (and,
 * with its high bit, a route taken from the input instead), the second the
 * server's limits and, with its high bit, the encoding (JSON instead of
 * protobuf); the rest is the body. Every error is also rendered as its JSON
 * body, which must stay within the buffer and be NUL-terminated.
 *
 * The JSON mapping is checked by round trips: a JSON body that decodes must
 * encode to JSON that decodes to the same message (equal protobuf bytes)
 * and encodes to the same text; a protobuf body that unpacks must encode to
 * JSON that decodes.
 *
 *   clang -fsanitize=fuzzer,address,undefined (IMGRET_FUZZ=ON), then
 *   fuzz_server_request -max_total_time=30 -dict=fuzz_server_request.dict */
#include "server/json.h"
#include "server/server_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *pack(const ProtobufCMessage *m, size_t *len) {
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len ? *len : 1);
    if (!b) abort();
    if (protobuf_c_message_pack(m, b) != *len) abort();
    return b;
}

static void json_round_trip(const ProtobufCMessageDescriptor *desc, int json, const uint8_t *body,
                            size_t len) {
    const srv_json_limits_t lim = {SRV_JSON_MAX_DEPTH, (size_t)256 << 20};
    srv_error_t e;
    ProtobufCMessage *a = NULL, *b = NULL;
    if (json) {
        if (srv_json_decode(desc, body, len, &lim, &a, &e)) {
            if (a || (e.code != SRV_MALFORMED && e.code != SRV_RESOURCE_EXHAUSTED)) abort();
            return;
        }
    } else {
        static const uint8_t empty[1] = {0};
        if (!(a = protobuf_c_message_unpack(desc, NULL, len, len ? body : empty))) return;
    }
    size_t n, n2;
    char *text = srv_json_encode(a, &n);
    if (!text || strlen(text) != n) abort();
    if (srv_json_decode(desc, (const uint8_t *)text, n, &lim, &b, &e)) abort(); /* reads back */
    if (json) {
        size_t la, lb;
        uint8_t *pa = pack(a, &la), *pb = pack(b, &lb);
        if (la != lb || memcmp(pa, pb, la)) abort();
        free(pa);
        free(pb);
        char *text2 = srv_json_encode(b, &n2);
        if (!text2 || n2 != n || memcmp(text, text2, n)) abort();
        free(text2);
    }
    free(text);
    protobuf_c_message_free_unpacked(a, NULL);
    protobuf_c_message_free_unpacked(b, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    srv_limits_t lim;
    srv_limits_default(&lim);
    lim.fc7_dim = 1 + (data[1] & 15);
    lim.code_bits = (data[1] & 16) ? 16 : 0;
    lim.has_ae = (data[1] & 32) != 0;
    lim.n_classes = 10;
    lim.max_k = 4096;
    lim.max_uri_bytes = 4096;
    srv_error_t e;
    memset(&e, 0, sizeof e);
    srv_method_t m = (srv_method_t)(data[0] % SRV_N_METHODS);
    srv_encoding_t enc = (data[1] & 0x80) ? SRV_JSON : SRV_PROTOBUF, ct_enc;
    const uint8_t *body = data + 2;
    size_t len = size - 2;
    if (data[0] & 0x80) {
        /* A path from the input: "/twirp/imgret.v1.ImageSearch/" + bytes up to a NUL. */
        size_t n = strnlen((const char *)body, len < 64 ? len : 64);
        char path[128];
        memcpy(path, SRV_TWIRP_PREFIX, sizeof SRV_TWIRP_PREFIX - 1);
        memcpy(path + sizeof SRV_TWIRP_PREFIX - 1, body, n);
        path[sizeof SRV_TWIRP_PREFIX - 1 + n] = 0;
        if (srv_route(path, &m, &e)) goto render;
        char ctype[80];
        memcpy(ctype, body, n < sizeof ctype - 1 ? n : sizeof ctype - 1);
        ctype[n < sizeof ctype - 1 ? n : sizeof ctype - 1] = 0;
        srv_check_content_type(ctype, &ct_enc, &e);
        srv_check_token("secret", data[1] & 64, m, ctype, &e);
        body += n < len ? n + 1 : len;
        len -= n < len ? n + 1 : len;
    }
    json_round_trip(srv_request_descriptor(m), enc == SRV_JSON, len ? body : NULL, len);
    srv_request_t r;
    if (srv_request_decode(m, enc, len ? body : NULL, len, &lim, &r, &e) == 0) {
        if (r.encoding != enc) abort();
        /* What a worker relies on. */
        if (r.n_inputs < 0 || r.n_images < 0 || (size_t)r.n_images > lim.max_items) abort();
        if (m == SRV_SEARCH) {
            const Imgret__V1__SearchRequest *s = (const void *)r.msg;
            if (s->k > (unsigned)lim.max_k) abort();
            if (s->query_case == IMGRET__V1__SEARCH_REQUEST__QUERY_VECTOR &&
                s->vector->n_values != (size_t)lim.fc7_dim)
                abort();
        }
        srv_request_clear(&r);
        return 0;
    }
render:;
    char buf[4096];
    size_t n = srv_error_json(&e, buf, sizeof buf);
    if (n >= sizeof buf || buf[n] != 0 || buf[0] != '{' || buf[n - 1] != '}') abort();
    return 0;
}
