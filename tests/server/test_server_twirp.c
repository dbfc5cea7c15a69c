/* Twirp errors, routing, content type, tokens and request validation: the
 * pure front half of the server, without sockets or a model. */
#include "server/server_internal.h"
#include "tests/server/test_limits.h"
#include "tests/test.h"

#include <stdlib.h>

/* Packs a message into a malloc'd buffer. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *len) {
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len ? *len : 1);
    protobuf_c_message_pack(m, b);
    return b;
}

static srv_code_t decode_code(srv_method_t m, const ProtobufCMessage *msg, const srv_limits_t *l) {
    size_t len;
    uint8_t *b = pack(msg, &len);
    srv_request_t r;
    srv_error_t e;
    memset(&e, 0, sizeof e);
    int rc = srv_request_decode(m, SRV_PROTOBUF, b, len, l, &r, &e);
    free(b);
    if (rc == 0) {
        srv_request_clear(&r);
        return SRV_OK;
    }
    return e.code;
}

static void test_codes_map_to_spec_http_statuses(void) {
    CHECK(srv_code_http_status(SRV_INVALID_ARGUMENT) == 400);
    CHECK(srv_code_http_status(SRV_MALFORMED) == 400);
    CHECK(srv_code_http_status(SRV_OUT_OF_RANGE) == 400);
    CHECK(srv_code_http_status(SRV_UNAUTHENTICATED) == 401);
    CHECK(srv_code_http_status(SRV_PERMISSION_DENIED) == 403);
    CHECK(srv_code_http_status(SRV_NOT_FOUND) == 404);
    CHECK(srv_code_http_status(SRV_BAD_ROUTE) == 404);
    CHECK(srv_code_http_status(SRV_CANCELED) == 408);
    CHECK(srv_code_http_status(SRV_DEADLINE_EXCEEDED) == 408);
    CHECK(srv_code_http_status(SRV_ALREADY_EXISTS) == 409);
    CHECK(srv_code_http_status(SRV_ABORTED) == 409);
    CHECK(srv_code_http_status(SRV_FAILED_PRECONDITION) == 412);
    CHECK(srv_code_http_status(SRV_RESOURCE_EXHAUSTED) == 429);
    CHECK(srv_code_http_status(SRV_UNKNOWN) == 500);
    CHECK(srv_code_http_status(SRV_INTERNAL) == 500);
    CHECK(srv_code_http_status(SRV_DATALOSS) == 500);
    CHECK(srv_code_http_status(SRV_UNIMPLEMENTED) == 501);
    CHECK(srv_code_http_status(SRV_UNAVAILABLE) == 503);
    CHECK(!strcmp(srv_code_name(SRV_DATALOSS), "dataloss"));
    CHECK(!strcmp(srv_code_name(SRV_RESOURCE_EXHAUSTED), "resource_exhausted"));
    CHECK(!strcmp(srv_code_name(SRV_BAD_ROUTE), "bad_route"));
}

static void test_error_json_escapes_and_keeps_utf8_valid(void) {
    srv_error_t e;
    srv_fail(&e, SRV_NOT_FOUND, "no item \"7\"\\ \n\x01 caf\xc3\xa9 bad\xff");
    srv_error_meta(&e, "id", "7");
    char buf[4096];
    size_t n = srv_error_json(&e, buf, sizeof buf);
    CHECK(n == strlen(buf));
    CHECK_MSG(!strcmp(buf, "{\"code\":\"not_found\",\"msg\":\"no item \\\"7\\\"\\\\ \\n\\u0001 "
                           "caf\xc3\xa9 bad\\ufffd\",\"meta\":{\"id\":\"7\"}}"),
              "%s", buf);
    srv_fail(&e, SRV_INTERNAL, "x");
    n = srv_error_json(&e, buf, sizeof buf);
    CHECK(!strcmp(buf, "{\"code\":\"internal\",\"msg\":\"x\",\"meta\":{}}"));
}

static void test_error_json_too_long_still_parses(void) {
    srv_error_t e;
    char msg[600];
    memset(msg, 'm', sizeof msg - 1);
    msg[sizeof msg - 1] = 0;
    srv_fail(&e, SRV_NOT_FOUND, "%s", msg);
    srv_error_meta(&e, "id", "7");
    char buf[128];
    size_t n = srv_error_json(&e, buf, sizeof buf);
    CHECK_MSG(!strcmp(buf, "{\"code\":\"not_found\",\"msg\":\"(message too long)\","
                           "\"meta\":{\"id\":\"7\"}}"),
              "%s", buf);
    CHECK(n == strlen(buf));
    n = srv_error_json(&e, buf, 65); /* room for the short body only without its meta */
    CHECK_MSG(!strcmp(buf, "{\"code\":\"not_found\",\"msg\":\"(message too long)\",\"meta\":{}}"),
              "%s", buf);
    CHECK(srv_error_json(&e, buf, 10) == 0 && buf[0] == 0);
}

/* Each util kind through error.c's table: the Twirp code, its HTTP status
 * and its gRPC status number. A kind added to util.h needs a row here. */
static void test_each_kind_maps_to_twirp_code_http_and_grpc_status(void) {
    static const struct {
        util_err_kind_t kind;
        srv_code_t code;
        const char *name;
        int http, grpc;
    } want[] = {
        {UTIL_ERR_INTERNAL, SRV_INTERNAL, "internal", 500, 13},
        {UTIL_ERR_INVALID, SRV_INVALID_ARGUMENT, "invalid_argument", 400, 3},
        {UTIL_ERR_NOT_FOUND, SRV_NOT_FOUND, "not_found", 404, 5},
        {UTIL_ERR_EXISTS, SRV_ALREADY_EXISTS, "already_exists", 409, 6},
        {UTIL_ERR_LIMIT, SRV_RESOURCE_EXHAUSTED, "resource_exhausted", 429, 8},
        {UTIL_ERR_PRECONDITION, SRV_FAILED_PRECONDITION, "failed_precondition", 412, 9},
        {UTIL_ERR_UNAVAILABLE, SRV_UNAVAILABLE, "unavailable", 503, 14},
        {UTIL_ERR_DEADLINE, SRV_DEADLINE_EXCEEDED, "deadline_exceeded", 408, 4},
        {UTIL_ERR_CANCELLED, SRV_CANCELED, "canceled", 408, 1},
        {UTIL_ERR_CORRUPT, SRV_DATALOSS, "dataloss", 500, 15},
        {UTIL_ERR_IO, SRV_INTERNAL, "internal", 500, 13},
        {UTIL_ERR_UNSUPPORTED, SRV_UNIMPLEMENTED, "unimplemented", 501, 12},
    };
    CHECK(sizeof want / sizeof want[0] == UTIL_ERR_N_KINDS);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        srv_code_t c = srv_code_of_kind(want[i].kind);
        CHECK_MSG(c == want[i].code, "kind %d: code %d, want %d", (int)want[i].kind, (int)c,
                  (int)want[i].code);
        CHECK_MSG(!strcmp(srv_code_name(c), want[i].name), "kind %d: %s, want %s",
                  (int)want[i].kind, srv_code_name(c), want[i].name);
        CHECK_MSG(srv_code_http_status(c) == want[i].http, "kind %d: HTTP %d, want %d",
                  (int)want[i].kind, srv_code_http_status(c), want[i].http);
        CHECK_MSG(srv_code_grpc_status(c) == want[i].grpc, "kind %d: gRPC %d, want %d",
                  (int)want[i].kind, srv_code_grpc_status(c), want[i].grpc);
    }
    CHECK(srv_code_of_kind(UTIL_ERR_N_KINDS) == SRV_INTERNAL);
    CHECK(srv_code_of_kind((util_err_kind_t)-1) == SRV_INTERNAL);
}

/* The codes no util kind reaches still carry the gRPC status a gRPC front
 * end answers with. */
static void test_server_only_codes_have_grpc_statuses(void) {
    CHECK(srv_code_grpc_status(SRV_OK) == 0);
    CHECK(srv_code_grpc_status(SRV_UNKNOWN) == 2);
    CHECK(srv_code_grpc_status(SRV_MALFORMED) == 3);
    CHECK(srv_code_grpc_status(SRV_BAD_ROUTE) == 12);
    CHECK(srv_code_grpc_status(SRV_PERMISSION_DENIED) == 7);
    CHECK(srv_code_grpc_status(SRV_UNAUTHENTICATED) == 16);
    CHECK(srv_code_grpc_status(SRV_ABORTED) == 10);
    CHECK(srv_code_grpc_status(SRV_OUT_OF_RANGE) == 11);
    CHECK(srv_code_grpc_status(SRV_N_CODES) == 13); /* out of range: internal's */
}

/* util_fail's default kind, util_fail_kind, and a prefix keeping the kind:
 * what the table above is fed. */
static void test_error_kind_set_at_origin_survives_prefix(void) {
    util_err_t err;
    memset(&err, 0, sizeof err);
    CHECK(util_err_kind(&err) == UTIL_ERR_INTERNAL);
    err.kind = UTIL_ERR_EXISTS;
    util_fail(&err, "plain");
    CHECK(util_err_kind(&err) == UTIL_ERR_INTERNAL);
    CHECK(util_fail_kind(&err, UTIL_ERR_NOT_FOUND, "no item with id %d", 5) == -1);
    CHECK(util_fail_prefix(&err, "thumb") == -1);
    CHECK(!strcmp(err.msg, "thumb: no item with id 5"));
    CHECK(util_err_kind(&err) == UTIL_ERR_NOT_FOUND);
    CHECK(srv_code_of_kind(util_err_kind(&err)) == SRV_NOT_FOUND);
    CHECK(util_err_kind(NULL) == UTIL_ERR_INTERNAL);
    err.kind = (util_err_kind_t)99;
    CHECK(util_err_kind(&err) == UTIL_ERR_INTERNAL);
    CHECK(util_fail_kind(NULL, UTIL_ERR_LIMIT, "x") == -1);
}

static void test_route_accepts_the_six_methods_only(void) {
    srv_method_t m;
    srv_error_t e;
    CHECK(srv_route("/twirp/imgret.v1.ImageSearch/Search", &m, &e) == 0 && m == SRV_SEARCH);
    CHECK(srv_route("/twirp/imgret.v1.ImageSearch/Stats", &m, &e) == 0 && m == SRV_STATS);
    CHECK(srv_route("/twirp/imgret.v1.ImageSearch/Remove", &m, &e) == 0 && m == SRV_REMOVE);
    CHECK(srv_route("/twirp/imgret.v1.ImageSearch/Nope", &m, &e) == -1 && e.code == SRV_BAD_ROUTE);
    CHECK(srv_route("/twirp/imgret.v1.ImageSearch/search", &m, &e) == -1);
    CHECK(srv_route("/twirp/imgret.v1.ImageSearch/Search/", &m, &e) == -1);
    CHECK(srv_route("/twirp/imgret.v2.ImageSearch/Search", &m, &e) == -1 &&
          e.code == SRV_BAD_ROUTE);
    CHECK(srv_route("/", &m, &e) == -1);
    CHECK(srv_route(NULL, &m, &e) == -1);
}

static void test_content_type_protobuf_or_json(void) {
    srv_error_t e;
    srv_encoding_t enc = SRV_JSON;
    CHECK(srv_check_content_type("application/protobuf", &enc, &e) == 0 && enc == SRV_PROTOBUF);
    CHECK(srv_check_content_type("Application/Protobuf; charset=binary", &enc, &e) == 0 &&
          enc == SRV_PROTOBUF);
    CHECK(srv_check_content_type("application/json", &enc, &e) == 0 && enc == SRV_JSON);
    enc = SRV_PROTOBUF;
    CHECK(srv_check_content_type("Application/JSON ; charset=utf-8", &enc, &e) == 0 &&
          enc == SRV_JSON);
    CHECK(srv_check_content_type("text/plain", &enc, &e) == -1 && e.code == SRV_BAD_ROUTE);
    CHECK(strstr(e.msg, "application/json") != NULL);
    CHECK(srv_check_content_type("application/protobufx", &enc, &e) == -1);
    CHECK(srv_check_content_type("application/jsonx", &enc, &e) == -1);
    CHECK(srv_check_content_type("application/x-protobuf", &enc, &e) == -1);
    CHECK(srv_check_content_type(NULL, &enc, &e) == -1 && e.code == SRV_BAD_ROUTE);
}

static void test_token_missing_is_401_wrong_is_403(void) {
    srv_error_t e;
    CHECK(srv_check_token(NULL, 1, SRV_ADD, NULL, &e) == 0);
    CHECK(srv_check_token("s3cret", 0, SRV_SEARCH, NULL, &e) == 0); /* write scope: reads open */
    CHECK(srv_check_token("s3cret", 0, SRV_ADD, NULL, &e) == -1 && e.code == SRV_UNAUTHENTICATED);
    CHECK(srv_check_token("s3cret", 0, SRV_REMOVE, "Bearer nope", &e) == -1 &&
          e.code == SRV_PERMISSION_DENIED);
    CHECK(srv_check_token("s3cret", 0, SRV_REMOVE, "Bearer s3cre", &e) == -1);
    CHECK(srv_check_token("s3cret", 0, SRV_REMOVE, "Bearer s3cretx", &e) == -1);
    CHECK(srv_check_token("s3cret", 0, SRV_REMOVE, "Bearer ", &e) == -1 &&
          e.code == SRV_PERMISSION_DENIED);
    CHECK(srv_check_token("s3cret", 0, SRV_ADD, "Bearer s3cret", &e) == 0);
    CHECK(srv_check_token("s3cret", 1, SRV_SEARCH, NULL, &e) == -1 &&
          e.code == SRV_UNAUTHENTICATED);
    CHECK(srv_check_token("s3cret", 1, SRV_SEARCH, "Basic abc", &e) == -1 &&
          e.code == SRV_UNAUTHENTICATED);
    CHECK(srv_check_token("s3cret", 1, SRV_STATS, "bearer s3cret", &e) == 0);
}

static void test_malformed_bodies_are_malformed(void) {
    srv_limits_t l = test_limits();
    srv_request_t r;
    srv_error_t e;
    static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff};
    static const uint8_t truncated[] = {0x0a, 0x10, 'a', 'b'}; /* field 1, length 16, 2 bytes */
    for (int m = 0; m < SRV_N_METHODS; m++) {
        CHECK(srv_request_decode((srv_method_t)m, SRV_PROTOBUF, junk, sizeof junk, &l, &r, &e) ==
              -1);
        CHECK(e.code == SRV_MALFORMED);
        CHECK(srv_request_decode((srv_method_t)m, SRV_PROTOBUF, truncated, sizeof truncated, &l, &r,
                                 &e) == -1);
        CHECK(e.code == SRV_MALFORMED);
        CHECK(r.msg == NULL);
    }
    /* An empty body is an empty message: fine for Stats, no query for Search. */
    CHECK(srv_request_decode(SRV_STATS, SRV_PROTOBUF, NULL, 0, &l, &r, &e) == 0);
    srv_request_clear(&r);
    CHECK(srv_request_decode(SRV_SEARCH, SRV_PROTOBUF, NULL, 0, &l, &r, &e) == -1 &&
          e.code == SRV_INVALID_ARGUMENT);
}

static void test_search_validation(void) {
    srv_limits_t l = test_limits();
    Imgret__V1__SearchRequest r = IMGRET__V1__SEARCH_REQUEST__INIT;
    Imgret__V1__Vector v = IMGRET__V1__VECTOR__INIT;
    float vals[4] = {1, 2, 3, 4};
    v.values = vals;
    v.n_values = 4;
    r.query_case = IMGRET__V1__SEARCH_REQUEST__QUERY_VECTOR;
    r.vector = &v;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_OK);
    v.n_values = 3;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_INVALID_ARGUMENT); /* wrong dim */
    v.n_values = 4;
    vals[2] = NAN;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_INVALID_ARGUMENT); /* not finite */
    vals[2] = 3;
    r.k = 4097;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_INVALID_ARGUMENT);
    r.k = 4096;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_OK);
    l.max_k = 100; /* the limit is the one the server was given */
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_INVALID_ARGUMENT);
    r.k = 100;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_OK);
    l.max_k = 4096;
    r.k = 5;
    r.metric = (Imgret__V1__Metric)7;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_INVALID_ARGUMENT);
    r.metric = IMGRET__V1__METRIC__HAMMING;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_OK);
    l.has_ae = 0; /* a vector cannot become a code without an autoencoder */
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_FAILED_PRECONDITION);
    l.has_ae = 1;
    r.rerank = 1;
    r.rerank_candidates = 3; /* fewer than k */
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_INVALID_ARGUMENT);
    r.rerank_candidates = 50;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_OK);
    r.metric = IMGRET__V1__METRIC__EUCLIDEAN; /* rerank is for HAMMING */
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_INVALID_ARGUMENT);
    r.rerank = 0;
    r.rerank_candidates = 0;
    /* codes */
    uint8_t code[2] = {1, 2};
    r.query_case = IMGRET__V1__SEARCH_REQUEST__QUERY_CODE;
    r.code.data = code;
    r.code.len = 2;
    r.metric = IMGRET__V1__METRIC__METRIC_UNSPECIFIED; /* HAMMING for codes */
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_OK);
    r.metric = IMGRET__V1__METRIC__EUCLIDEAN;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_INVALID_ARGUMENT);
    r.metric = IMGRET__V1__METRIC__HAMMING;
    r.code.len = 1;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_INVALID_ARGUMENT);
    r.code.len = 2;
    l.code_bits = 0;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_FAILED_PRECONDITION);
    l.code_bits = 16;
    /* item ids and images */
    r.query_case = IMGRET__V1__SEARCH_REQUEST__QUERY_ITEM_ID;
    r.item_id = -3;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_INVALID_ARGUMENT);
    r.item_id = 3;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_OK);
    r.query_case = IMGRET__V1__SEARCH_REQUEST__QUERY_IMAGE;
    r.image.len = 0;
    r.image.data = NULL;
    CHECK(decode_code(SRV_SEARCH, &r.base, &l) == SRV_INVALID_ARGUMENT);
    uint8_t img[3] = {0xff, 0xd8, 0xff};
    r.image.data = img;
    r.image.len = 3; /* decoded (and rejected) by a worker, not here */
    size_t len;
    uint8_t *b = pack(&r.base, &len);
    srv_request_t q;
    srv_error_t e;
    CHECK(srv_request_decode(SRV_SEARCH, SRV_PROTOBUF, b, len, &l, &q, &e) == 0);
    CHECK(q.n_images == 1 && q.n_inputs == 1);
    srv_request_clear(&q);
    free(b);
}

static void test_classify_extract_validation(void) {
    srv_limits_t l = test_limits();
    uint8_t img[4] = {1, 2, 3, 4};
    Imgret__V1__ClassifyRequest c = IMGRET__V1__CLASSIFY_REQUEST__INIT;
    CHECK(decode_code(SRV_CLASSIFY, &c.base, &l) == SRV_INVALID_ARGUMENT); /* no image */
    c.image.data = img;
    c.image.len = 4;
    CHECK(decode_code(SRV_CLASSIFY, &c.base, &l) == SRV_OK);
    c.k = 11;
    CHECK(decode_code(SRV_CLASSIFY, &c.base, &l) == SRV_INVALID_ARGUMENT);
    c.k = 10;
    c.crops = IMGRET__V1__CROPS__TEN;
    size_t len;
    uint8_t *b = pack(&c.base, &len);
    srv_request_t q;
    srv_error_t e;
    CHECK(srv_request_decode(SRV_CLASSIFY, SRV_PROTOBUF, b, len, &l, &q, &e) == 0);
    CHECK(q.n_inputs == 10 && q.n_images == 1);
    srv_request_clear(&q);
    free(b);
    c.crops = (Imgret__V1__Crops)9;
    CHECK(decode_code(SRV_CLASSIFY, &c.base, &l) == SRV_INVALID_ARGUMENT);

    Imgret__V1__ExtractRequest x = IMGRET__V1__EXTRACT_REQUEST__INIT;
    CHECK(decode_code(SRV_EXTRACT, &x.base, &l) == SRV_INVALID_ARGUMENT); /* no images */
    ProtobufCBinaryData imgs[3] = {{4, img}, {4, img}, {0, NULL}};
    x.images = imgs;
    x.n_images = 2;
    x.want_code = 1;
    CHECK(decode_code(SRV_EXTRACT, &x.base, &l) == SRV_OK);
    l.has_ae = 0;
    CHECK(decode_code(SRV_EXTRACT, &x.base, &l) == SRV_FAILED_PRECONDITION);
    l.has_ae = 1;
    x.n_images = 3; /* an empty one */
    CHECK(decode_code(SRV_EXTRACT, &x.base, &l) == SRV_INVALID_ARGUMENT);
    l.max_images = 1;
    x.n_images = 2;
    CHECK(decode_code(SRV_EXTRACT, &x.base, &l) == SRV_INVALID_ARGUMENT);
}

static void test_add_remove_validation(void) {
    srv_limits_t l = test_limits();
    float vals[4] = {1, 0, 0, 1};
    Imgret__V1__Vector v = IMGRET__V1__VECTOR__INIT;
    v.values = vals;
    v.n_values = 4;
    Imgret__V1__NewItem a = IMGRET__V1__NEW_ITEM__INIT, b = IMGRET__V1__NEW_ITEM__INIT;
    a.content_case = b.content_case = IMGRET__V1__NEW_ITEM__CONTENT_VECTOR;
    a.vector = b.vector = &v;
    a.label = b.label = -1;
    Imgret__V1__NewItem *items[2] = {&a, &b};
    Imgret__V1__AddRequest r = IMGRET__V1__ADD_REQUEST__INIT;
    CHECK(decode_code(SRV_ADD, &r.base, &l) == SRV_INVALID_ARGUMENT); /* no items */
    r.items = items;
    r.n_items = 2;
    CHECK(decode_code(SRV_ADD, &r.base, &l) == SRV_OK);
    a.has_id = b.has_id = 1;
    a.id = b.id = 5;
    CHECK(decode_code(SRV_ADD, &r.base, &l) == SRV_INVALID_ARGUMENT); /* twice */
    b.id = 6;
    CHECK(decode_code(SRV_ADD, &r.base, &l) == SRV_OK);
    b.id = -2;
    CHECK(decode_code(SRV_ADD, &r.base, &l) == SRV_INVALID_ARGUMENT);
    b.has_id = 0;
    b.id = 9; /* id without has_id */
    CHECK(decode_code(SRV_ADD, &r.base, &l) == SRV_INVALID_ARGUMENT);
    b.id = 0;
    b.label = 10;
    CHECK(decode_code(SRV_ADD, &r.base, &l) == SRV_INVALID_ARGUMENT);
    b.label = -2;
    CHECK(decode_code(SRV_ADD, &r.base, &l) == SRV_INVALID_ARGUMENT);
    b.label = 9;
    CHECK(decode_code(SRV_ADD, &r.base, &l) == SRV_OK);
    char *long_uri = malloc(5000);
    memset(long_uri, 'u', 4999);
    long_uri[4999] = 0;
    b.uri = long_uri;
    CHECK(decode_code(SRV_ADD, &r.base, &l) == SRV_INVALID_ARGUMENT);
    free(long_uri);
    b.uri = (char *)"abcdef"; /* the limit is the one the server was given */
    l.max_uri_bytes = 5;
    CHECK(decode_code(SRV_ADD, &r.base, &l) == SRV_INVALID_ARGUMENT);
    l.max_uri_bytes = 6;
    CHECK(decode_code(SRV_ADD, &r.base, &l) == SRV_OK);
    l.max_uri_bytes = 4096;
    b.uri = (char *)"";
    b.keep_thumbnail = 1; /* vectors have no picture */
    CHECK(decode_code(SRV_ADD, &r.base, &l) == SRV_INVALID_ARGUMENT);
    b.keep_thumbnail = 0;
    b.content_case = IMGRET__V1__NEW_ITEM__CONTENT__NOT_SET;
    CHECK(decode_code(SRV_ADD, &r.base, &l) == SRV_INVALID_ARGUMENT);

    Imgret__V1__RemoveRequest rm = IMGRET__V1__REMOVE_REQUEST__INIT;
    CHECK(decode_code(SRV_REMOVE, &rm.base, &l) == SRV_INVALID_ARGUMENT);
    int64_t ids[3] = {1, 2, 1};
    rm.ids = ids;
    rm.n_ids = 2;
    CHECK(decode_code(SRV_REMOVE, &rm.base, &l) == SRV_OK);
    rm.n_ids = 3;
    CHECK(decode_code(SRV_REMOVE, &rm.base, &l) == SRV_INVALID_ARGUMENT);
    ids[2] = -1;
    CHECK(decode_code(SRV_REMOVE, &rm.base, &l) == SRV_INVALID_ARGUMENT);
}

TEST_MAIN(T(test_codes_map_to_spec_http_statuses), T(test_error_json_escapes_and_keeps_utf8_valid),
          T(test_error_json_too_long_still_parses),
          T(test_each_kind_maps_to_twirp_code_http_and_grpc_status),
          T(test_server_only_codes_have_grpc_statuses),
          T(test_error_kind_set_at_origin_survives_prefix),
          T(test_route_accepts_the_six_methods_only), T(test_content_type_protobuf_or_json),
          T(test_token_missing_is_401_wrong_is_403), T(test_malformed_bodies_are_malformed),
          T(test_search_validation), T(test_classify_extract_validation),
          T(test_add_remove_validation))
