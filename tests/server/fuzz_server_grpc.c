/* libFuzzer target: gRPC's pure parts (server/grpc_wire.c) on arbitrary
 * bytes, then the request path a gRPC call takes. The input's first byte
 * picks the method and whether a grpc-encoding was named; the rest is the
 * stream's DATA bytes: framed as one unary message (flags, length prefix,
 * the limit), decoded and validated as the method's request exactly as
 * grpc.c does. The same bytes are also read as a grpc-timeout value, a
 * HealthCheckRequest and a grpc-message to percent-encode, whose output
 * must be printable ASCII within the buffer.
 *
 *   clang -fsanitize=fuzzer,address,undefined (IMGRET_FUZZ=ON), then
 *   fuzz_server_grpc -max_total_time=30 */
#include "server/grpc_wire.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const srv_method_t m = (srv_method_t)(data[0] % SRV_N_METHODS);
    const int has_encoding = data[0] >> 7;
    const uint8_t *body = data + 1;
    const size_t len = size - 1;

    srv_limits_t lim;
    srv_limits_default(&lim);
    lim.fc7_dim = 4;
    lim.code_bits = 16;
    lim.has_ae = 1;
    lim.n_classes = 10;
    lim.max_k = 4096;
    lim.max_uri_bytes = 4096;
    srv_error_t e;
    const uint8_t *msg = NULL;
    size_t msg_len = 0;
    if (srv_grpc_unary_message(body, len, has_encoding, 4096, &msg, &msg_len, &e) == 0) {
        if (msg < body || msg + msg_len > body + len || msg_len > 4096) abort();
        srv_request_t r = {0};
        if (srv_request_decode(m, SRV_PROTOBUF, msg, msg_len, &lim, &r, &e) == 0) {
            if (r.method != m || !r.msg) abort();
            srv_request_clear(&r);
        } else if (srv_code_grpc_status(e.code) <= 0 || srv_code_grpc_status(e.code) > 16) {
            abort();
        }
    } else if (srv_code_grpc_status(e.code) <= 0 || srv_code_grpc_status(e.code) > 16) {
        abort();
    }
    if (srv_grpc_prefix_length(body, len) < (len >= 5 ? 0 : -1)) abort();

    double t = -1;
    if (srv_grpc_parse_timeout((const char *)body, len, &t) == 0 && (t < 0 || t > 1e8 * 3600))
        abort();
    char name[64];
    if (srv_grpc_health_service(body, len, name, sizeof name) == 0 && strlen(name) >= sizeof name)
        abort();

    char *text = malloc(len + 1);
    if (!text) return 0;
    memcpy(text, body, len);
    text[len] = 0;
    char out[97];
    size_t n = srv_grpc_percent_encode(text, out, sizeof out);
    if (n >= sizeof out || out[n] != 0 || strlen(out) != n) abort();
    for (size_t i = 0; i < n; i++)
        if (out[i] < 0x20 || out[i] > 0x7e) abort();
    free(text);
    return 0;
}
