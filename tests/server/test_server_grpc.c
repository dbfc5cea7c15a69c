/* gRPC's pure parts (server/grpc_wire.c): routing to the ImageSearch
 * methods, grpc-timeout units, the one-message framing of a unary call
 * (flags, a length over the limit, short and trailing bytes),
 * grpc-message percent-encoding, the hand-encoded health messages, and the
 * status numbers error.c's table gives the codes gRPC answers with. */
#include "server/grpc_wire.h"
#include "tests/test.h"

#include <math.h>
#include <string.h>

static void test_route_maps_every_method_and_refuses_others(void) {
    srv_method_t m;
    srv_error_t e;
    const char *names[] = {"Search", "Classify", "Extract", "Add", "Remove", "Stats"};
    for (int i = 0; i < SRV_N_METHODS; i++) {
        char path[64];
        snprintf(path, sizeof path, "/imgret.v1.ImageSearch/%s", names[i]);
        CHECK(srv_grpc_route(path, &m, &e) == 0 && m == (srv_method_t)i);
    }
    CHECK(srv_grpc_route("/imgret.v1.ImageSearch/thumb", &m, &e) == -1);
    CHECK(srv_grpc_route("/imgret.v1.ImageSearch/search", &m, &e) == -1);
    CHECK(srv_grpc_route("/twirp/imgret.v1.ImageSearch/Search", &m, &e) == -1);
    CHECK(e.code == SRV_BAD_ROUTE && srv_code_grpc_status(e.code) == 12); /* UNIMPLEMENTED */
    CHECK(srv_grpc_route(NULL, &m, &e) == -1);
}

static void test_content_type_is_application_grpc(void) {
    const char *ok[] = {"application/grpc", "application/grpc+proto", "Application/GRPC",
                        "application/grpc;charset=x"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        CHECK(srv_grpc_content_type_ok(ok[i], strlen(ok[i])));
    const char *bad[] = {"application/grpcx", "application/json", "application/grp", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(!srv_grpc_content_type_ok(bad[i], strlen(bad[i])));
}

static void test_timeout_units(void) {
    double s = -1;
    CHECK(srv_grpc_parse_timeout("1H", 2, &s) == 0 && s == 3600);
    CHECK(srv_grpc_parse_timeout("2M", 2, &s) == 0 && s == 120);
    CHECK(srv_grpc_parse_timeout("30S", 3, &s) == 0 && s == 30);
    CHECK(srv_grpc_parse_timeout("250m", 4, &s) == 0 && fabs(s - 0.25) < 1e-12);
    CHECK(srv_grpc_parse_timeout("99999999u", 9, &s) == 0 && fabs(s - 99.999999) < 1e-9);
    CHECK(srv_grpc_parse_timeout("5n", 2, &s) == 0 && fabs(s - 5e-9) < 1e-18);
    CHECK(srv_grpc_parse_timeout("123456789S", 10, &s) == -1); /* 9 digits */
    CHECK(srv_grpc_parse_timeout("S", 1, &s) == -1);
    CHECK(srv_grpc_parse_timeout("10s", 3, &s) == -1);
    CHECK(srv_grpc_parse_timeout("1.5S", 4, &s) == -1);
    CHECK(srv_grpc_parse_timeout("-1S", 3, &s) == -1);
}

static void test_unary_message_framing(void) {
    srv_error_t e;
    const uint8_t *msg;
    size_t n;
    const uint8_t ok[] = {0, 0, 0, 0, 3, 'a', 'b', 'c'};
    CHECK(srv_grpc_unary_message(ok, sizeof ok, 0, 100, &msg, &n, &e) == 0);
    CHECK(n == 3 && msg == ok + 5);
    const uint8_t empty[] = {0, 0, 0, 0, 0};
    CHECK(srv_grpc_unary_message(empty, 5, 0, 100, &msg, &n, &e) == 0 && n == 0);
    CHECK(srv_grpc_unary_message(NULL, 0, 0, 100, &msg, &n, &e) == -1 && e.code == SRV_MALFORMED);
    CHECK(srv_grpc_unary_message(ok, 4, 0, 100, &msg, &n, &e) == -1 && e.code == SRV_MALFORMED);
    CHECK(srv_grpc_unary_message(ok, 7, 0, 100, &msg, &n, &e) == -1 && e.code == SRV_MALFORMED);
    const uint8_t trailing[] = {0, 0, 0, 0, 1, 'a', 0};
    CHECK(srv_grpc_unary_message(trailing, sizeof trailing, 0, 100, &msg, &n, &e) == -1);
    CHECK(e.code == SRV_MALFORMED);
    const uint8_t huge[] = {0, 0xff, 0xff, 0xff, 0xff, 'x'};
    CHECK(srv_grpc_unary_message(huge, sizeof huge, 0, 1 << 20, &msg, &n, &e) == -1);
    CHECK(e.code == SRV_RESOURCE_EXHAUSTED && srv_code_grpc_status(e.code) == 8);
    CHECK(srv_grpc_prefix_length(huge, sizeof huge) == 0xffffffffLL);
    CHECK(srv_grpc_prefix_length(huge, 4) == -1);
    const uint8_t compressed[] = {1, 0, 0, 0, 0};
    CHECK(srv_grpc_unary_message(compressed, 5, 0, 100, &msg, &n, &e) == -1);
    CHECK(e.code == SRV_INTERNAL && srv_code_grpc_status(e.code) == 13);
    CHECK(srv_grpc_unary_message(compressed, 5, 1, 100, &msg, &n, &e) == -1);
    CHECK(e.code == SRV_UNIMPLEMENTED && srv_code_grpc_status(e.code) == 12);
    const uint8_t flag2[] = {2, 0, 0, 0, 0};
    CHECK(srv_grpc_unary_message(flag2, 5, 0, 100, &msg, &n, &e) == -1 && e.code == SRV_MALFORMED);
    CHECK(srv_code_grpc_status(SRV_MALFORMED) == 3); /* INVALID_ARGUMENT */
}

static void test_percent_encoding(void) {
    char out[64];
    CHECK(srv_grpc_percent_encode("plain text: ok", out, sizeof out) == 14);
    CHECK(!strcmp(out, "plain text: ok"));
    srv_grpc_percent_encode("100% \xc3\xa9\n", out, sizeof out);
    CHECK(!strcmp(out, "100%25 %C3%A9%0A"));
    /* Cut at a whole escape. */
    CHECK(srv_grpc_percent_encode("ab%", out, 5) == 2 && !strcmp(out, "ab"));
    CHECK(srv_grpc_percent_encode("abc", out, 1) == 0 && out[0] == 0);
}

static void test_health_messages(void) {
    char name[32];
    CHECK(srv_grpc_health_service(NULL, 0, name, sizeof name) == 0 && name[0] == 0);
    const uint8_t req[] = {0x0a, 3, 'a', '.', 'b'};
    CHECK(srv_grpc_health_service(req, sizeof req, name, sizeof name) == 0 && !strcmp(name, "a.b"));
    const uint8_t with_unknown[] = {0x10, 0x96, 0x01, 0x0a, 1, 'x', 0x1d, 1, 2, 3, 4};
    CHECK(srv_grpc_health_service(with_unknown, sizeof with_unknown, name, sizeof name) == 0);
    CHECK(!strcmp(name, "x"));
    const uint8_t cut[] = {0x0a, 9, 'a'};
    CHECK(srv_grpc_health_service(cut, sizeof cut, name, sizeof name) == -1);
    CHECK(srv_grpc_health_service(req, sizeof req, name, 3) == -1); /* does not fit */
    const uint8_t bad_wire[] = {0x0b};
    CHECK(srv_grpc_health_service(bad_wire, 1, name, sizeof name) == -1);
    uint8_t out[2];
    CHECK(srv_grpc_health_response(SRV_GRPC_SERVING, out) == 2 && out[0] == 0x08 && out[1] == 1);
    srv_grpc_health_response(SRV_GRPC_NOT_SERVING, out);
    CHECK(out[1] == 2);
}

TEST_MAIN(T(test_route_maps_every_method_and_refuses_others),
          T(test_content_type_is_application_grpc), T(test_timeout_units),
          T(test_unary_message_framing), T(test_percent_encoding), T(test_health_messages))
