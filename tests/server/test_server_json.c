/* The proto3 JSON mapping (server/json.c): every message of service.proto
 * round-trips, every mapping rule in both directions, malformed input of
 * every kind is `malformed` with the offset and the field, and a JSON
 * request goes through the same validation as a protobuf one. */
#include "server/json.h"
#include "server/server_internal.h"
#include "tests/server/test_limits.h"
#include "tests/test.h"

#include <float.h>
#include <stdint.h>
#include <stdlib.h>

static const ProtobufCMessageDescriptor *const all_messages[] = {
    &imgret__v1__search_request__descriptor,    &imgret__v1__vector__descriptor,
    &imgret__v1__search_hit__descriptor,        &imgret__v1__search_response__descriptor,
    &imgret__v1__classify_request__descriptor,  &imgret__v1__class_score__descriptor,
    &imgret__v1__classify_response__descriptor, &imgret__v1__extract_request__descriptor,
    &imgret__v1__extracted__descriptor,         &imgret__v1__extract_response__descriptor,
    &imgret__v1__new_item__descriptor,          &imgret__v1__add_request__descriptor,
    &imgret__v1__add_response__descriptor,      &imgret__v1__remove_request__descriptor,
    &imgret__v1__remove_response__descriptor,   &imgret__v1__stats_request__descriptor,
    &imgret__v1__stats_response__descriptor,
};

/* Decodes n bytes of text as desc (lim NULL: the server's limits for it). */
static ProtobufCMessage *dec_n(const ProtobufCMessageDescriptor *desc, const char *text, size_t n,
                               const srv_json_limits_t *lim, srv_error_t *e) {
    srv_json_limits_t l;
    srv_json_limits_default(&l, n);
    ProtobufCMessage *m = NULL;
    memset(e, 0, sizeof *e);
    if (srv_json_decode(desc, (const uint8_t *)text, n, lim ? lim : &l, &m, e)) return NULL;
    return m;
}

static ProtobufCMessage *dec(const ProtobufCMessageDescriptor *desc, const char *text) {
    srv_error_t e;
    ProtobufCMessage *m = dec_n(desc, text, strlen(text), NULL, &e);
    if (!m) fprintf(stderr, "  decoding %s: %s\n", text, e.msg);
    return m;
}

/* Decoding text (a literal: it may hold NULs and bad bytes) fails as
 * malformed with a message containing needle. */
#define EXPECT_MALFORMED(desc, text, needle)                                                       \
    do {                                                                                           \
        srv_error_t e_;                                                                            \
        ProtobufCMessage *m_ = dec_n(desc, text, sizeof(text) - 1, NULL, &e_);                     \
        CHECK_MSG(!m_ && e_.code == SRV_MALFORMED && strstr(e_.msg, needle), "%s -> %s", text,     \
                  m_ ? "(decoded)" : e_.msg);                                                      \
        if (m_) protobuf_c_message_free_unpacked(m_, NULL);                                        \
    } while (0)

static uint8_t *pack(const ProtobufCMessage *m, size_t *len) {
    *len = protobuf_c_message_get_packed_size(m);
    uint8_t *b = malloc(*len ? *len : 1);
    protobuf_c_message_pack(m, b);
    return b;
}

/* Whether a and b are the same message: equal protobuf bytes. */
static int same_message(const ProtobufCMessage *a, const ProtobufCMessage *b) {
    size_t la, lb;
    uint8_t *pa = pack(a, &la), *pb = pack(b, &lb);
    int same = la == lb && !memcmp(pa, pb, la);
    free(pa);
    free(pb);
    return same;
}

static char *enc(const ProtobufCMessage *m) {
    size_t n;
    char *s = srv_json_encode(m, &n);
    CHECK(s && strlen(s) == n);
    return s;
}

/* m encodes to `want` (when not NULL), which decodes back to m and
 * re-encodes to the same text. */
static int round_trip(const ProtobufCMessage *m, const char *want) {
    int ok = 1;
    char *text = enc(m);
    if (!text) return 0;
    if (want && strcmp(text, want)) {
        fprintf(stderr, "  %s encodes as\n    %s\n  wanted\n    %s\n", m->descriptor->name, text,
                want);
        ok = 0;
    }
    ProtobufCMessage *back = dec(m->descriptor, text);
    if (!back || !same_message(m, back)) {
        fprintf(stderr, "  %s does not read back from %s\n", m->descriptor->name, text);
        ok = 0;
    } else {
        char *again = enc(back);
        if (!again || strcmp(again, text)) ok = 0;
        free(again);
    }
    if (back) protobuf_c_message_free_unpacked(back, NULL);
    free(text);
    return ok;
}

/* ------------------------------------------------------------ round trips */

static void test_defaults_encode_as_empty_objects(void) {
    for (size_t i = 0; i < sizeof all_messages / sizeof all_messages[0]; i++) {
        const ProtobufCMessageDescriptor *d = all_messages[i];
        ProtobufCMessage *m = calloc(1, d->sizeof_message);
        protobuf_c_message_init(d, m);
        CHECK_MSG(round_trip(m, "{}"), "%s", d->name);
        ProtobufCMessage *e = dec(d, " {\n} ");
        CHECK_MSG(e && protobuf_c_message_get_packed_size(e) == 0, "%s", d->name);
        if (e) protobuf_c_message_free_unpacked(e, NULL);
        free(m);
    }
}

static void test_search_messages_round_trip(void) {
    uint8_t img[4] = {0xff, 0xd8, 0x00, 0x7f};
    float vals[2] = {1, 2.5f};
    Imgret__V1__Vector v = IMGRET__V1__VECTOR__INIT;
    v.values = vals;
    v.n_values = 2;
    Imgret__V1__SearchRequest r = IMGRET__V1__SEARCH_REQUEST__INIT;
    r.query_case = IMGRET__V1__SEARCH_REQUEST__QUERY_IMAGE;
    r.image.data = img;
    r.image.len = 4;
    r.k = 5;
    CHECK(round_trip(&r.base, "{\"image\":\"/9gAfw==\",\"k\":5}"));
    r.query_case = IMGRET__V1__SEARCH_REQUEST__QUERY_VECTOR;
    r.vector = &v;
    r.metric = IMGRET__V1__METRIC__HAMMING;
    r.rerank = 1;
    r.rerank_candidates = 50;
    r.include_query_item = 1;
    CHECK(round_trip(&r.base,
                     "{\"vector\":{\"values\":[1,2.5]},\"k\":5,\"metric\":\"HAMMING\","
                     "\"rerank\":true,\"rerankCandidates\":50,\"includeQueryItem\":true}"));
    r.query_case = IMGRET__V1__SEARCH_REQUEST__QUERY_ITEM_ID;
    r.item_id = 9007199254740993LL; /* 2^53 + 1: exact only as a string */
    r.rerank = 0;
    r.rerank_candidates = 0;
    r.include_query_item = 0;
    CHECK(round_trip(&r.base, "{\"itemId\":\"9007199254740993\",\"k\":5,\"metric\":\"HAMMING\"}"));
    r.item_id = 0; /* a oneof member is kept even at its default */
    CHECK(round_trip(&r.base, "{\"itemId\":\"0\",\"k\":5,\"metric\":\"HAMMING\"}"));
    r.query_case = IMGRET__V1__SEARCH_REQUEST__QUERY_CODE;
    r.code.data = img;
    r.code.len = 2;
    r.k = 0;
    CHECK(round_trip(&r.base, "{\"metric\":\"HAMMING\",\"code\":\"/9g=\"}"));

    Imgret__V1__SearchHit h1 = IMGRET__V1__SEARCH_HIT__INIT, h2 = IMGRET__V1__SEARCH_HIT__INIT;
    h1.id = 7;
    h1.distance = 0.5f;
    h1.uri = (char *)"photos/a \"b\".jpg";
    h1.label = -1;
    h1.label_name = (char *)"Ankle boot";
    h2.id = INT64_MIN;
    h2.uri = (char *)"caf\xc3\xa9";
    CHECK(round_trip(&h1.base, "{\"id\":\"7\",\"distance\":0.5,\"uri\":\"photos/a \\\"b\\\".jpg\","
                               "\"label\":-1,\"labelName\":\"Ankle boot\"}"));
    Imgret__V1__ClassScore c = IMGRET__V1__CLASS_SCORE__INIT;
    c.index = 9;
    c.name = (char *)"Ankle boot";
    c.probability = 0.25f;
    CHECK(round_trip(&c.base, "{\"index\":9,\"name\":\"Ankle boot\",\"probability\":0.25}"));
    Imgret__V1__SearchHit *hits[2] = {&h1, &h2};
    Imgret__V1__ClassScore *cls[1] = {&c};
    Imgret__V1__SearchResponse s = IMGRET__V1__SEARCH_RESPONSE__INIT;
    s.n_hits = 2;
    s.hits = hits;
    s.metric = IMGRET__V1__METRIC__EUCLIDEAN;
    s.reranked = 1;
    s.n_classes = 1;
    s.classes = cls;
    CHECK(round_trip(&s.base,
                     "{\"hits\":[{\"id\":\"7\",\"distance\":0.5,\"uri\":\"photos/a \\\"b\\\".jpg\","
                     "\"label\":-1,\"labelName\":\"Ankle boot\"},{\"id\":\"-9223372036854775808\","
                     "\"uri\":\"caf\xc3\xa9\"}],\"metric\":\"EUCLIDEAN\",\"reranked\":true,"
                     "\"classes\":[{\"index\":9,\"name\":\"Ankle boot\",\"probability\":0.25}]}"));
}

static void test_classify_extract_messages_round_trip(void) {
    uint8_t img[3] = {0xfb, 0xff, 0x01};
    Imgret__V1__ClassifyRequest r = IMGRET__V1__CLASSIFY_REQUEST__INIT;
    r.image.data = img;
    r.image.len = 3;
    r.k = 3;
    r.crops = IMGRET__V1__CROPS__TEN;
    CHECK(round_trip(&r.base, "{\"image\":\"+/8B\",\"k\":3,\"crops\":\"TEN\"}"));
    Imgret__V1__ClassScore a = IMGRET__V1__CLASS_SCORE__INIT, b = IMGRET__V1__CLASS_SCORE__INIT;
    a.index = 0; /* the default: left out */
    a.name = (char *)"T-shirt/top";
    a.probability = 0.75f;
    b.index = 4;
    b.probability = 1e-7f;
    Imgret__V1__ClassScore *cls[2] = {&a, &b};
    Imgret__V1__ClassifyResponse cr = IMGRET__V1__CLASSIFY_RESPONSE__INIT;
    cr.n_classes = 2;
    cr.classes = cls;
    CHECK(round_trip(&cr.base, "{\"classes\":[{\"name\":\"T-shirt/top\",\"probability\":0.75},"
                               "{\"index\":4,\"probability\":1e-7}]}"));

    ProtobufCBinaryData imgs[3] = {{3, img}, {0, NULL}, {1, img + 1}};
    Imgret__V1__ExtractRequest x = IMGRET__V1__EXTRACT_REQUEST__INIT;
    x.n_images = 3;
    x.images = imgs;
    x.want_fc7 = 1;
    x.want_code = 1;
    CHECK(round_trip(&x.base,
                     "{\"images\":[\"+/8B\",\"\",\"/w==\"],\"wantFc7\":true,\"wantCode\":true}"));
    float fc7[3] = {0.125f, 0, 3};
    Imgret__V1__Vector v = IMGRET__V1__VECTOR__INIT;
    v.values = fc7;
    v.n_values = 3;
    Imgret__V1__Extracted e1 = IMGRET__V1__EXTRACTED__INIT, e2 = IMGRET__V1__EXTRACTED__INIT;
    e1.fc7 = &v;
    e1.code.data = img;
    e1.code.len = 2;
    CHECK(round_trip(&e1.base, "{\"fc7\":{\"values\":[0.125,0,3]},\"code\":\"+/8=\"}"));
    Imgret__V1__Extracted *items[2] = {&e1, &e2};
    Imgret__V1__ExtractResponse xr = IMGRET__V1__EXTRACT_RESPONSE__INIT;
    xr.n_items = 2;
    xr.items = items;
    xr.fc7_dim = 3;
    xr.code_bits = 16;
    CHECK(round_trip(&xr.base,
                     "{\"items\":[{\"fc7\":{\"values\":[0.125,0,3]},\"code\":\"+/8=\"},{}],"
                     "\"fc7Dim\":3,\"codeBits\":16}"));
}

static void test_add_remove_stats_messages_round_trip(void) {
    uint8_t img[1] = {0x42};
    float vals[1] = {-1.5f};
    Imgret__V1__Vector v = IMGRET__V1__VECTOR__INIT;
    v.values = vals;
    v.n_values = 1;
    Imgret__V1__NewItem a = IMGRET__V1__NEW_ITEM__INIT, b = IMGRET__V1__NEW_ITEM__INIT;
    a.content_case = IMGRET__V1__NEW_ITEM__CONTENT_IMAGE;
    a.image.data = img;
    a.image.len = 1;
    a.uri = (char *)"a.jpg";
    a.label = 3;
    a.keep_thumbnail = 1;
    b.content_case = IMGRET__V1__NEW_ITEM__CONTENT_VECTOR;
    b.vector = &v;
    b.has_id = 1;
    b.id = INT64_MAX;
    b.label = -1;
    Imgret__V1__NewItem *items[2] = {&a, &b};
    Imgret__V1__AddRequest r = IMGRET__V1__ADD_REQUEST__INIT;
    r.n_items = 2;
    r.items = items;
    CHECK(round_trip(&r.base,
                     "{\"items\":[{\"image\":\"Qg==\",\"uri\":\"a.jpg\",\"label\":3,"
                     "\"keepThumbnail\":true},{\"vector\":{\"values\":[-1.5]},\"label\":-1,"
                     "\"hasId\":true,\"id\":\"9223372036854775807\"}]}"));
    int64_t ids[3] = {0, 12, -5};
    Imgret__V1__AddResponse ar = IMGRET__V1__ADD_RESPONSE__INIT;
    ar.n_ids = 3;
    ar.ids = ids;
    CHECK(round_trip(&ar.base, "{\"ids\":[\"0\",\"12\",\"-5\"]}"));
    Imgret__V1__RemoveRequest rm = IMGRET__V1__REMOVE_REQUEST__INIT;
    rm.n_ids = 2;
    rm.ids = ids + 1;
    CHECK(round_trip(&rm.base, "{\"ids\":[\"12\",\"-5\"]}"));
    Imgret__V1__RemoveResponse rr = IMGRET__V1__REMOVE_RESPONSE__INIT;
    rr.removed = UINT32_MAX;
    CHECK(round_trip(&rr.base, "{\"removed\":4294967295}"));
    Imgret__V1__StatsRequest sq = IMGRET__V1__STATS_REQUEST__INIT;
    CHECK(round_trip(&sq.base, "{}"));
    char *kinds[2] = {(char *)"fc7:Flat", (char *)"code:BFlat"};
    char *names[3] = {(char *)"T-shirt/top", (char *)"tab\there", (char *)""};
    Imgret__V1__StatsResponse st = IMGRET__V1__STATS_RESPONSE__INIT;
    st.items = 60000;
    st.n_index_kinds = 2;
    st.index_kinds = kinds;
    st.model_name = (char *)"alexnet";
    st.model_hash = (char *)"00ff";
    st.fc7_dim = 4096;
    st.code_bits = 32;
    st.uptime_seconds = 1.0 / 3.0;
    st.n_class_names = 3;
    st.class_names = names;
    st.requests = UINT64_MAX;
    st.version = (char *)"imgret 0.1";
    CHECK(round_trip(&st.base,
                     "{\"items\":\"60000\",\"indexKinds\":[\"fc7:Flat\",\"code:BFlat\"],"
                     "\"modelName\":\"alexnet\",\"modelHash\":\"00ff\",\"fc7Dim\":4096,"
                     "\"codeBits\":32,\"uptimeSeconds\":0.3333333333333333,"
                     "\"classNames\":[\"T-shirt/top\",\"tab\\there\",\"\"],"
                     "\"requests\":\"18446744073709551615\",\"version\":\"imgret 0.1\"}"));
}

/* ---------------------------------------------------------- mapping rules */

static void test_names_lower_camel_out_both_in(void) {
    const char *camel = "{\"itemId\":\"5\",\"rerankCandidates\":20,\"includeQueryItem\":true}";
    const char *proto = "{\"item_id\":\"5\",\"rerank_candidates\":20,\"include_query_item\":true}";
    ProtobufCMessage *a = dec(&imgret__v1__search_request__descriptor, camel);
    ProtobufCMessage *b = dec(&imgret__v1__search_request__descriptor, proto);
    CHECK(a && b && same_message(a, b));
    const Imgret__V1__SearchRequest *r = (const void *)a;
    CHECK(r && r->query_case == IMGRET__V1__SEARCH_REQUEST__QUERY_ITEM_ID && r->item_id == 5 &&
          r->rerank_candidates == 20 && r->include_query_item);
    char *text = a ? enc(a) : NULL;
    CHECK(text && !strcmp(text, camel));
    free(text);
    if (a) protobuf_c_message_free_unpacked(a, NULL);
    if (b) protobuf_c_message_free_unpacked(b, NULL);
    /* Names are case-sensitive: a wrong case is an unknown field (skipped). */
    a = dec(&imgret__v1__search_request__descriptor, "{\"ItemId\":\"5\",\"K\":3}");
    CHECK(a && ((Imgret__V1__SearchRequest *)a)->query_case == 0 &&
          ((Imgret__V1__SearchRequest *)a)->k == 0);
    if (a) protobuf_c_message_free_unpacked(a, NULL);
    /* Both spellings of one field are the field given twice. */
    EXPECT_MALFORMED(&imgret__v1__search_request__descriptor,
                     "{\"itemId\":\"5\",\"item_id\":\"6\"}", "given twice");
    EXPECT_MALFORMED(&imgret__v1__search_request__descriptor, "{\"k\":1,\"k\":1}", "given twice");
    /* A key may be escaped like any string. */
    a = dec(&imgret__v1__new_item__descriptor, "{\"\\u0075ri\":\"x\",\"has\\u005fid\":true}");
    CHECK(a && !strcmp(((Imgret__V1__NewItem *)a)->uri, "x") && ((Imgret__V1__NewItem *)a)->has_id);
    if (a) protobuf_c_message_free_unpacked(a, NULL);
}

static void test_integers_as_numbers_or_strings(void) {
    const ProtobufCMessageDescriptor *rm = &imgret__v1__remove_request__descriptor;
    ProtobufCMessage *m =
        dec(rm, "{\"ids\":[\"1\",2,3e2,\"4.0\",\"5e0\",-0,\"-9223372036854775808\","
                "9223372036854775807,0.07e2,1E+1]}");
    const Imgret__V1__RemoveRequest *r = (const void *)m;
    CHECK(r && r->n_ids == 10);
    if (r && r->n_ids == 10) {
        const int64_t want[10] = {1, 2, 300, 4, 5, 0, INT64_MIN, INT64_MAX, 7, 10};
        for (int i = 0; i < 10; i++)
            CHECK_MSG(r->ids[i] == want[i], "ids[%d] = %lld", i, (long long)r->ids[i]);
    }
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    EXPECT_MALFORMED(rm, "{\"ids\":[9223372036854775808]}", "out of range for int64");
    EXPECT_MALFORMED(rm, "{\"ids\":[\"-9223372036854775809\"]}", "out of range for int64");
    EXPECT_MALFORMED(rm, "{\"ids\":[1e19]}", "out of range");
    EXPECT_MALFORMED(rm, "{\"ids\":[1.5]}", "not a whole number");
    EXPECT_MALFORMED(rm, "{\"ids\":[1e-1]}", "not a whole number");
    EXPECT_MALFORMED(rm, "{\"ids\":[\" 5\"]}", "not a number");
    EXPECT_MALFORMED(rm, "{\"ids\":[\"5 \"]}", "not a number");
    EXPECT_MALFORMED(rm, "{\"ids\":[\"0x10\"]}", "not a number");
    EXPECT_MALFORMED(rm, "{\"ids\":[\"\"]}", "not a number");
    EXPECT_MALFORMED(rm, "{\"ids\":[true]}", "expected a number for int64, found a boolean");
    EXPECT_MALFORMED(rm, "{\"ids\":[100000000000000000000000000000000000000000000000000]}",
                     "out of range");

    const ProtobufCMessageDescriptor *sq = &imgret__v1__search_request__descriptor;
    m = dec(sq, "{\"k\":4294967295,\"rerankCandidates\":\"-0\"}");
    CHECK(m && ((Imgret__V1__SearchRequest *)m)->k == UINT32_MAX);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    EXPECT_MALFORMED(sq, "{\"k\":4294967296}", "4294967296 is out of range for uint32");
    EXPECT_MALFORMED(sq, "{\"k\":-1}", "-1 is out of range for uint32");
    EXPECT_MALFORMED(sq, "{\"k\":\"12abc\"}", "\"12abc\" is not a number for uint32");

    const ProtobufCMessageDescriptor *ni = &imgret__v1__new_item__descriptor;
    m = dec(ni, "{\"label\":-2147483648}");
    CHECK(m && ((Imgret__V1__NewItem *)m)->label == INT32_MIN);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    EXPECT_MALFORMED(ni, "{\"label\":2147483648}", "out of range for int32");
    EXPECT_MALFORMED(ni, "{\"label\":-2147483649}", "out of range for int32");

    const ProtobufCMessageDescriptor *st = &imgret__v1__stats_response__descriptor;
    m = dec(st, "{\"requests\":\"18446744073709551615\",\"items\":\"-1\"}");
    CHECK(m && ((Imgret__V1__StatsResponse *)m)->requests == UINT64_MAX &&
          ((Imgret__V1__StatsResponse *)m)->items == -1);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    m = dec(st, "{\"requests\":1e19}");
    CHECK(m && ((Imgret__V1__StatsResponse *)m)->requests == 10000000000000000000ULL);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    EXPECT_MALFORMED(st, "{\"requests\":\"18446744073709551616\"}", "out of range for uint64");
    EXPECT_MALFORMED(st, "{\"requests\":1e20}", "out of range for uint64");
    EXPECT_MALFORMED(st, "{\"requests\":-1}", "out of range for uint64");
}

static void test_bytes_base64_standard_out_any_in(void) {
    const ProtobufCMessageDescriptor *cq = &imgret__v1__classify_request__descriptor;
    static const uint8_t want[4] = {0x00, 0xfb, 0xef, 0xff};
    static const char *const forms[] = {"\"APvv/w==\"", "\"APvv/w\"", "\"APvv_w==\"", "\"APvv_w\"",
                                        "\"\\u0041Pvv/w==\""};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        char text[64];
        snprintf(text, sizeof text, "{\"image\":%s}", forms[i]);
        ProtobufCMessage *m = dec(cq, text);
        const Imgret__V1__ClassifyRequest *r = (const void *)m;
        CHECK_MSG(r && r->image.len == 4 && !memcmp(r->image.data, want, 4), "%s", forms[i]);
        char *out = m ? enc(m) : NULL;
        CHECK_MSG(out && !strcmp(out, "{\"image\":\"APvv/w==\"}"), "%s", out ? out : "");
        free(out);
        if (m) protobuf_c_message_free_unpacked(m, NULL);
    }
    ProtobufCMessage *m = dec(cq, "{\"image\":\"\"}");
    CHECK(m && ((Imgret__V1__ClassifyRequest *)m)->image.len == 0);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    m = dec(cq, "{\"image\":\"QQ\"}"); /* 1 byte, unpadded */
    CHECK(m && ((Imgret__V1__ClassifyRequest *)m)->image.len == 1 &&
          ((Imgret__V1__ClassifyRequest *)m)->image.data[0] == 'A');
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    EXPECT_MALFORMED(cq, "{\"image\":\"AP+v_w==\"}", "mixes the standard");
    EXPECT_MALFORMED(cq, "{\"image\":\"AP!v\"}", "outside base64 (at character 2)");
    EXPECT_MALFORMED(cq, "{\"image\":\"APvvA\"}", "length");
    EXPECT_MALFORMED(cq, "{\"image\":\"QQ=\"}", "padding");
    EXPECT_MALFORMED(cq, "{\"image\":\"Q===\"}", "'=' before its end");
    EXPECT_MALFORMED(cq, "{\"image\":\"QQ==QQ==\"}", "'=' before its end");
    EXPECT_MALFORMED(cq, "{\"image\":\"QQ\\n==\"}", "outside base64");
    EXPECT_MALFORMED(cq, "{\"image\":[1,2]}", "expected a base64 string for bytes, found an array");
}

static void test_floats_numbers_and_special_strings(void) {
    float vals[9] = {0.1f, -0.0f, 1e-45f, FLT_MAX, NAN, INFINITY, -INFINITY, 16777216.0f, 1e-7f};
    Imgret__V1__Vector v = IMGRET__V1__VECTOR__INIT;
    v.values = vals;
    v.n_values = 9;
    CHECK(round_trip(&v.base, "{\"values\":[0.1,-0,1e-45,3.4028235e38,\"NaN\",\"Infinity\","
                              "\"-Infinity\",16777216,1e-7]}"));
    /* Any finite float and double reads back bit for bit. */
    uint64_t seed = 88172645463325252ULL;
    float many[4096];
    int exact = 1;
    for (int round = 0; round < 16 && exact; round++) {
        for (int i = 0; i < 4096; i++) {
            uint32_t bits;
            do {
                seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
                bits = (uint32_t)(seed >> 16);
                memcpy(&many[i], &bits, 4);
            } while (!isfinite(many[i]));
        }
        v.values = many;
        v.n_values = 4096;
        exact = round_trip(&v.base, NULL);
    }
    CHECK(exact);
    Imgret__V1__StatsResponse sd = IMGRET__V1__STATS_RESPONSE__INIT;
    for (int i = 0; i < 20000 && exact; i++) {
        do {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            memcpy(&sd.uptime_seconds, &seed, 8);
        } while (!isfinite(sd.uptime_seconds));
        exact = round_trip(&sd.base, NULL);
    }
    CHECK(exact);
    /* Plain from 1e-6 to 1e21, as JavaScript writes numbers. */
    float plain[7] = {20, 1e20f, 1.5e-5f, 1e-6f, 1e21f, -1234.5f, 9.999999e-7f};
    v.values = plain;
    v.n_values = 7;
    CHECK(round_trip(&v.base, "{\"values\":[20,100000000000000000000,0.000015,0.000001,1e21,"
                              "-1234.5,9.999999e-7]}"));
    const ProtobufCMessageDescriptor *vd = &imgret__v1__vector__descriptor;
    ProtobufCMessage *m = dec(vd, "{\"values\":[1.5,\"2.25\",-3e2,\"NaN\",\"-Infinity\",1E-2,"
                                  "0.1000000000000000000000000001,7]}");
    const Imgret__V1__Vector *r = (const void *)m;
    CHECK(r && r->n_values == 8);
    if (r && r->n_values == 8) {
        CHECK(r->values[0] == 1.5f && r->values[1] == 2.25f && r->values[2] == -300.0f);
        CHECK(isnan(r->values[3]) && isinf(r->values[4]) && r->values[4] < 0);
        CHECK(r->values[5] == 0.01f && r->values[6] == 0.1f && r->values[7] == 7.0f);
    }
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    /* Only the float's own range: 1e39 is a double, not a float. */
    EXPECT_MALFORMED(vd, "{\"values\":[1e39]}", "1e39 is out of range for float");
    EXPECT_MALFORMED(vd, "{\"values\":[\"-1e39\"]}", "out of range for float");
    EXPECT_MALFORMED(vd, "{\"values\":[\"nan\"]}", "is not a number, \"NaN\"");
    EXPECT_MALFORMED(vd, "{\"values\":[\"Inf\"]}", "is not a number");
    EXPECT_MALFORMED(vd, "{\"values\":[NaN]}", "expected a number for float");
    EXPECT_MALFORMED(vd, "{\"values\":[Infinity]}", "expected a number for float");
    EXPECT_MALFORMED(vd, "{\"values\":[1,,2]}",
                     "expected a number for float, found the character ','");
    const ProtobufCMessageDescriptor *st = &imgret__v1__stats_response__descriptor;
    m = dec(st, "{\"uptimeSeconds\":1e39}");
    CHECK(m && ((Imgret__V1__StatsResponse *)m)->uptime_seconds == 1e39);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    EXPECT_MALFORMED(st, "{\"uptimeSeconds\":1e309}", "out of range for double");
    Imgret__V1__StatsResponse s = IMGRET__V1__STATS_RESPONSE__INIT;
    s.uptime_seconds = 0.1;
    CHECK(round_trip(&s.base, "{\"uptimeSeconds\":0.1}"));
    s.uptime_seconds = 1e300;
    CHECK(round_trip(&s.base, "{\"uptimeSeconds\":1e300}"));
    s.uptime_seconds = -2.5e-300;
    CHECK(round_trip(&s.base, "{\"uptimeSeconds\":-2.5e-300}"));
    s.uptime_seconds = -INFINITY;
    CHECK(round_trip(&s.base, "{\"uptimeSeconds\":\"-Infinity\"}"));
    s.uptime_seconds = 123456.789;
    CHECK(round_trip(&s.base, "{\"uptimeSeconds\":123456.789}"));
}

static void test_enums_names_out_names_or_numbers_in(void) {
    const ProtobufCMessageDescriptor *sq = &imgret__v1__search_request__descriptor;
    ProtobufCMessage *a = dec(sq, "{\"metric\":\"HAMMING\"}"), *b = dec(sq, "{\"metric\":2}");
    CHECK(a && b && ((Imgret__V1__SearchRequest *)a)->metric == IMGRET__V1__METRIC__HAMMING &&
          same_message(a, b));
    char *text = b ? enc(b) : NULL;
    CHECK(text && !strcmp(text, "{\"metric\":\"HAMMING\"}"));
    free(text);
    if (a) protobuf_c_message_free_unpacked(a, NULL);
    if (b) protobuf_c_message_free_unpacked(b, NULL);
    /* proto3 enums are open: an unnamed number is kept, and written as one;
     * the server's validation then refuses it, as for protobuf. */
    a = dec(sq, "{\"metric\":7}");
    CHECK(a && ((Imgret__V1__SearchRequest *)a)->metric == 7);
    text = a ? enc(a) : NULL;
    CHECK(text && !strcmp(text, "{\"metric\":7}"));
    free(text);
    if (a) protobuf_c_message_free_unpacked(a, NULL);
    a = dec(sq, "{\"metric\":\"METRIC_UNSPECIFIED\"}");
    text = a ? enc(a) : NULL;
    CHECK(text && !strcmp(text, "{}")); /* the default: left out */
    free(text);
    if (a) protobuf_c_message_free_unpacked(a, NULL);
    EXPECT_MALFORMED(sq, "{\"metric\":\"hamming\"}",
                     "\"hamming\" is not a value of imgret.v1.Metric");
    EXPECT_MALFORMED(sq, "{\"metric\":\"2\"}", "is not a value of imgret.v1.Metric");
    EXPECT_MALFORMED(sq, "{\"metric\":1.5}", "not a whole number");
    EXPECT_MALFORMED(sq, "{\"metric\":true}", "expected a imgret.v1.Metric name or number");
    EXPECT_MALFORMED(&imgret__v1__classify_request__descriptor, "{\"crops\":\"CENTER\"}",
                     "is not a value of imgret.v1.Crops");
}

static void test_repeated_oneof_null_and_defaults(void) {
    const ProtobufCMessageDescriptor *sq = &imgret__v1__search_request__descriptor;
    /* null is the default: for a scalar, a message, a repeated field and a
     * oneof member (which then leaves the oneof to another member). */
    ProtobufCMessage *m = dec(sq, "{\"k\":null,\"vector\":null,\"image\":null,\"itemId\":\"3\","
                                  "\"metric\":null,\"code\":null}");
    const Imgret__V1__SearchRequest *r = (const void *)m;
    CHECK(r && r->k == 0 && r->query_case == IMGRET__V1__SEARCH_REQUEST__QUERY_ITEM_ID &&
          r->item_id == 3);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    m = dec(&imgret__v1__remove_request__descriptor, "{\"ids\":null}");
    CHECK(m && ((Imgret__V1__RemoveRequest *)m)->n_ids == 0);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    m = dec(&imgret__v1__remove_request__descriptor, "{\"ids\":[]}");
    CHECK(m && ((Imgret__V1__RemoveRequest *)m)->n_ids == 0);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    /* Defaults given explicitly are not written back. */
    m = dec(
        sq,
        "{\"k\":0,\"metric\":\"METRIC_UNSPECIFIED\",\"rerank\":false,\"rerankCandidates\":\"0\"}");
    char *text = m ? enc(m) : NULL;
    CHECK(text && !strcmp(text, "{}"));
    free(text);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    /* The members of a oneof. */
    m = dec(sq, "{\"vector\":{\"values\":[1,2]},\"k\":2}");
    r = (const void *)m;
    CHECK(r && r->query_case == IMGRET__V1__SEARCH_REQUEST__QUERY_VECTOR && r->vector &&
          r->vector->n_values == 2 && r->vector->values[1] == 2.0f);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    EXPECT_MALFORMED(sq, "{\"image\":\"QQ==\",\"vector\":{\"values\":[1]}}",
                     "field vector: image is already set, and only one field of their oneof");
    EXPECT_MALFORMED(sq, "{\"itemId\":1,\"code\":\"QQ==\"}", "item_id is already set");
    m = dec(&imgret__v1__add_request__descriptor,
            "{\"items\":[{\"image\":\"QQ==\"},{\"vector\":{\"values\":[1]}},{}]}");
    const Imgret__V1__AddRequest *ar = (const void *)m;
    CHECK(ar && ar->n_items == 3 &&
          ar->items[0]->content_case == IMGRET__V1__NEW_ITEM__CONTENT_IMAGE &&
          ar->items[1]->content_case == IMGRET__V1__NEW_ITEM__CONTENT_VECTOR &&
          ar->items[2]->content_case == IMGRET__V1__NEW_ITEM__CONTENT__NOT_SET);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    /* Repeated fields are arrays; their elements are never null. */
    EXPECT_MALFORMED(&imgret__v1__remove_request__descriptor, "{\"ids\":[1,null]}",
                     "field ids[1]: null is not allowed in a repeated field");
    EXPECT_MALFORMED(&imgret__v1__remove_request__descriptor, "{\"ids\":5}",
                     "expected an array (a repeated int64), found a number");
    EXPECT_MALFORMED(&imgret__v1__add_request__descriptor, "{\"items\":[{},[]]}",
                     "field items[1]: expected an object for imgret.v1.NewItem, found an array");
    EXPECT_MALFORMED(sq, "{\"vector\":[1,2]}", "expected an object for imgret.v1.Vector");
    EXPECT_MALFORMED(sq, "{\"rerank\":1}", "expected true or false, found a number");
    EXPECT_MALFORMED(sq, "{\"rerank\":\"true\"}", "expected true or false, found a string");
    EXPECT_MALFORMED(sq, "{\"rerank\":tru}", "expected true or false, found the character 't'");
    EXPECT_MALFORMED(&imgret__v1__new_item__descriptor, "{\"uri\":5}",
                     "expected a string, found a number");
}

static void test_unknown_fields_skipped_but_checked(void) {
    const ProtobufCMessageDescriptor *sq = &imgret__v1__search_request__descriptor;
    ProtobufCMessage *m = dec(sq, "{\"future\":{\"a\":[1,{\"b\":null},\"\\u00e9\",-2.5e3,true],"
                                  "\"c\":{}},\"k\":3,\"later\":[]}");
    CHECK(m && ((Imgret__V1__SearchRequest *)m)->k == 3);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    EXPECT_MALFORMED(sq, "{\"future\":[1,}",
                     "offset 13: expected a value, found the character '}'");
    EXPECT_MALFORMED(sq, "{\"future\":{\"a\" 1}}", "expected ':' after a field name");
    EXPECT_MALFORMED(sq, "{\"future\":01}", "malformed number");
    EXPECT_MALFORMED(sq, "{\"future\":\"\\q\"}", "unknown escape \\q");
}

static void test_strings_escapes_and_utf8(void) {
    const ProtobufCMessageDescriptor *ni = &imgret__v1__new_item__descriptor;
    ProtobufCMessage *m =
        dec(ni, "{\"uri\":\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20ac\\ud83d\\ude00"
                "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}");
    const char *want = "a\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9\xe2\x82\xac"
                       "\xf0\x9f\x98\x80";
    CHECK(m && !strcmp(((Imgret__V1__NewItem *)m)->uri, want));
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    /* Written: quotes, backslashes and control characters escaped, UTF-8
     * as it is, bytes that are not UTF-8 replaced so the JSON stays valid. */
    Imgret__V1__NewItem it = IMGRET__V1__NEW_ITEM__INIT;
    it.uri = (char *)"q\"b\\c\x01\x1f\n\xc3\xa9 bad\xff\xc0\x80 end";
    char *text = enc(&it.base);
    CHECK_MSG(text &&
                  !strcmp(text, "{\"uri\":\"q\\\"b\\\\c\\u0001\\u001f\\n\xc3\xa9 bad\\ufffd\\ufffd"
                                "\\ufffd end\"}"),
              "%s", text ? text : "");
    m = text ? dec(ni, text) : NULL;
    CHECK(m && !strcmp(((Imgret__V1__NewItem *)m)->uri,
                       "q\"b\\c\x01\x1f\n\xc3\xa9 bad\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd end"));
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    free(text);
    EXPECT_MALFORMED(ni, "{\"uri\":\"a\\x\"}", "offset 9, field uri: unknown escape \\x");
    EXPECT_MALFORMED(ni, "{\"uri\":\"\\u12\"}", "four hex digits");
    EXPECT_MALFORMED(ni, "{\"uri\":\"\\u12g4\"}", "four hex digits");
    EXPECT_MALFORMED(ni, "{\"uri\":\"\\ud800\"}", "high surrogate without its low half");
    EXPECT_MALFORMED(ni, "{\"uri\":\"\\ud800\\u0041\"}", "high surrogate");
    EXPECT_MALFORMED(ni, "{\"uri\":\"\\udc00\"}", "lone UTF-16 low surrogate");
    EXPECT_MALFORMED(ni, "{\"uri\":\"a\x01\"}", "control character 0x01");
    EXPECT_MALFORMED(ni, "{\"uri\":\"a\tb\"}", "control character 0x09");
    EXPECT_MALFORMED(ni, "{\"uri\":\"a\xff\"}", "offset 9, field uri: invalid UTF-8");
    EXPECT_MALFORMED(ni, "{\"uri\":\"\xc0\x80\"}", "invalid UTF-8");         /* overlong NUL */
    EXPECT_MALFORMED(ni, "{\"uri\":\"\xed\xa0\x80\"}", "invalid UTF-8");     /* a surrogate */
    EXPECT_MALFORMED(ni, "{\"uri\":\"\xf4\x90\x80\x80\"}", "invalid UTF-8"); /* past U+10FFFF */
    EXPECT_MALFORMED(ni, "{\"uri\":\"\xe2\x82\"}", "invalid UTF-8");         /* cut short */
    EXPECT_MALFORMED(ni, "{\"uri\":\"a\\u0000b\"}", "cannot hold U+0000");
    EXPECT_MALFORMED(ni, "{\"uri\":\"a\0b\"}", "control character 0x00");
    EXPECT_MALFORMED(ni, "{\"ur\xff\":1}", "invalid UTF-8");
}

/* ------------------------------------------------------------ malformed */

static void test_syntax_errors_name_the_offset(void) {
    const ProtobufCMessageDescriptor *sq = &imgret__v1__search_request__descriptor;
    EXPECT_MALFORMED(sq, "",
                     "imgret.v1.SearchRequest JSON, offset 0: expected an object (a "
                     "imgret.v1.SearchRequest), found the end of the body");
    EXPECT_MALFORMED(sq, "  \n ", "offset 4: expected an object");
    EXPECT_MALFORMED(sq, "[]", "offset 0: expected an object");
    EXPECT_MALFORMED(sq, "null", "expected an object (a imgret.v1.SearchRequest), found null");
    EXPECT_MALFORMED(sq, "\"{}\"", "found a string");
    EXPECT_MALFORMED(sq, "{} x", "offset 3: the character 'x' after the object");
    EXPECT_MALFORMED(sq, "{}{}", "after the object");
    EXPECT_MALFORMED(sq, "\xef\xbb\xbf{}", "the byte 0xef"); /* no byte-order mark */
    EXPECT_MALFORMED(sq, "{,}", "offset 1: expected a field name in quotes");
    EXPECT_MALFORMED(sq, "{\"k\":1,}",
                     "offset 7: expected a field name in quotes, found the character '}'");
    EXPECT_MALFORMED(sq, "{\"k\" 1}", "offset 5: expected ':'");
    EXPECT_MALFORMED(sq, "{'k':1}", "expected a field name in quotes, found the character '''");
    EXPECT_MALFORMED(sq, "{k:1}", "expected a field name in quotes");
    EXPECT_MALFORMED(sq, "{\"k\":1 \"rerank\":true}",
                     "expected ',' or '}' after a field, found a string");
    EXPECT_MALFORMED(sq, "{\"k\":01}", "offset 5, field k: malformed number");
    EXPECT_MALFORMED(sq, "{\"k\":+1}",
                     "field k: expected a number for uint32, found the character '+'");
    EXPECT_MALFORMED(sq, "{\"k\":.5}", "expected a number");
    EXPECT_MALFORMED(sq, "{\"k\":1.}", "malformed number");
    EXPECT_MALFORMED(sq, "{\"k\":1e}", "malformed number");
    EXPECT_MALFORMED(sq, "{\"k\":-}", "malformed number");
    EXPECT_MALFORMED(sq, "{\"k\":1x}", "malformed number");
    EXPECT_MALFORMED(sq, "{\"k\":1 /* c */}", "expected ',' or '}'");
    EXPECT_MALFORMED(sq, "{\"k\":\"abc\"}",
                     "offset 5, field k: \"abc\" is not a number for uint32");
    EXPECT_MALFORMED(&imgret__v1__add_request__descriptor,
                     "{\"items\":[{\"vector\":{\"values\":[1,\"x\"]}}]}",
                     "offset 33, field items[0].vector.values[1]: \"x\" is not a number");
    EXPECT_MALFORMED(&imgret__v1__add_request__descriptor,
                     "{\"items\":[{\"vector\":{\"values\":[1 2]}}]}",
                     "field items[0].vector.values: expected ',' or ']' after an array element");
}

/* Every proper prefix of valid documents (and a few cut in odd places) is
 * malformed, never a crash or a read past the end. */
static void test_truncated_documents_are_malformed(void) {
    static const char *const docs[] = {
        "{\"items\":[{\"image\":\"QUJD\",\"uri\":\"caf\xc3\xa9 "
        "\\u00e9\\ud83d\\ude00\",\"label\":-1,"
        "\"hasId\":true,\"id\":\"42\",\"keepThumbnail\":true},{\"vector\":{\"values\":[1.5e-3,"
        "\"NaN\",-0,7]}}],\"future\":{\"x\":[true,false,null,{\"y\":1}]}}",
        "{\"itemId\":\"12\",\"k\":10,\"metric\":\"HAMMING\",\"rerank\":true}",
    };
    const ProtobufCMessageDescriptor *types[] = {&imgret__v1__add_request__descriptor,
                                                 &imgret__v1__search_request__descriptor};
    for (int d = 0; d < 2; d++) {
        const size_t n = strlen(docs[d]);
        srv_error_t e;
        ProtobufCMessage *m = dec_n(types[d], docs[d], n, NULL, &e);
        CHECK_MSG(m != NULL, "%s", e.msg);
        if (m) protobuf_c_message_free_unpacked(m, NULL);
        int bad = 0;
        for (size_t k = 0; k < n; k++) {
            char *cut = malloc(k ? k : 1); /* exactly k bytes: ASan sees any overread */
            memcpy(cut, docs[d], k);
            m = dec_n(types[d], cut, k, NULL, &e);
            if (m || e.code != SRV_MALFORMED) {
                bad++;
                fprintf(stderr, "  prefix %zu of doc %d decoded\n", k, d);
            }
            if (m) protobuf_c_message_free_unpacked(m, NULL);
            free(cut);
        }
        CHECK(bad == 0);
    }
}

static void test_depth_and_size_limits(void) {
    const ProtobufCMessageDescriptor *ad = &imgret__v1__add_request__descriptor;
    /* 100,000 nested arrays in an unknown field: refused at the limit, with
     * no deep recursion. */
    const size_t deep = 100000;
    char *text = malloc(2 * deep + 32);
    size_t n = (size_t)sprintf(text, "{\"future\":");
    memset(text + n, '[', deep);
    n += deep;
    memset(text + n, ']', deep);
    n += deep;
    text[n++] = '}';
    srv_error_t e;
    ProtobufCMessage *m = dec_n(ad, text, n, NULL, &e);
    CHECK_MSG(!m && e.code == SRV_MALFORMED && strstr(e.msg, "nested deeper than 64"), "%s", e.msg);
    /* The same nesting where the schema wants a message: refused at once. */
    n = (size_t)sprintf(text, "{\"items\":");
    memset(text + n, '[', deep);
    n += deep;
    m = dec_n(ad, text, n, NULL, &e);
    CHECK_MSG(!m && e.code == SRV_MALFORMED && strstr(e.msg, "field items[0]: expected an object"),
              "%s", e.msg);
    free(text);
    /* AddRequest > items > NewItem > vector > values is 5 deep. */
    const char *add = "{\"items\":[{\"vector\":{\"values\":[1]}}]}";
    srv_json_limits_t lim = {5, (size_t)1 << 20};
    m = dec_n(ad, add, strlen(add), &lim, &e);
    CHECK(m != NULL);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    lim.max_depth = 4;
    m = dec_n(ad, add, strlen(add), &lim, &e);
    CHECK_MSG(!m && strstr(e.msg, "field items[0].vector.values: objects and arrays nested deeper "
                                  "than 4"),
              "%s", e.msg);
    /* A body of empty objects would decode into far more than its size. */
    const size_t items = 200000;
    text = malloc(3 * items + 32);
    n = (size_t)sprintf(text, "{\"items\":[");
    for (size_t i = 0; i < items; i++)
        memcpy(text + n + 3 * i, "{},", 3);
    n += 3 * items - 1;
    memcpy(text + n, "]}", 2);
    n += 2;
    m = dec_n(ad, text, n, NULL, &e);
    CHECK_MSG(!m && e.code == SRV_MALFORMED && strstr(e.msg, "would take more than"), "%s", e.msg);
    lim.max_depth = 64;
    lim.max_bytes = (size_t)256 << 20;
    m = dec_n(ad, text, n, &lim, &e); /* fine with room for it */
    CHECK(m && ((Imgret__V1__AddRequest *)m)->n_items == items);
    if (m) protobuf_c_message_free_unpacked(m, NULL);
    free(text);
    /* A huge string field counts too. */
    lim.max_bytes = 100;
    const char *uri = "{\"uri\":\"0123456789012345678901234567890123456789012345678901234567890123"
                      "456789\"}";
    m = dec_n(&imgret__v1__new_item__descriptor, uri, strlen(uri), &lim, &e);
    CHECK_MSG(!m && strstr(e.msg, "field uri: the decoded message would take more than 100 bytes"),
              "%s", e.msg);
}

/* ------------------------------------------------ the server's request path */

static void test_json_requests_take_the_protobuf_path(void) {
    const srv_limits_t l = test_limits();
    static const struct {
        srv_method_t m;
        const char *json;
        srv_code_t code;
    } cases[] = {
        {SRV_SEARCH, "{\"vector\":{\"values\":[1,2,3,4]},\"k\":5}", SRV_OK},
        {SRV_SEARCH, "{\"vector\":{\"values\":[1,2,3]}}", SRV_INVALID_ARGUMENT},
        {SRV_SEARCH, "{\"vector\":{\"values\":[1,\"NaN\",3,4]}}", SRV_INVALID_ARGUMENT},
        {SRV_SEARCH, "{\"itemId\":\"-3\"}", SRV_INVALID_ARGUMENT},
        {SRV_SEARCH, "{\"item_id\":3,\"k\":4097}", SRV_INVALID_ARGUMENT},
        {SRV_SEARCH, "{\"code\":\"AQI=\"}", SRV_OK},
        {SRV_SEARCH, "{\"code\":\"AQI\",\"metric\":\"EUCLIDEAN\"}", SRV_INVALID_ARGUMENT},
        {SRV_SEARCH, "{\"metric\":5,\"itemId\":1}", SRV_INVALID_ARGUMENT},
        {SRV_SEARCH, "{}", SRV_INVALID_ARGUMENT},
        {SRV_CLASSIFY, "{\"image\":\"/9j/\",\"crops\":\"TEN\",\"k\":10}", SRV_OK},
        {SRV_CLASSIFY, "{\"image\":\"/9j/\",\"k\":11}", SRV_INVALID_ARGUMENT},
        {SRV_EXTRACT, "{\"images\":[\"/9j/\",\"\"]}", SRV_INVALID_ARGUMENT},
        {SRV_EXTRACT, "{\"images\":[\"/9j/\"],\"wantCode\":true}", SRV_OK},
        {SRV_ADD,
         "{\"items\":[{\"vector\":{\"values\":[1,0,0,1]},\"label\":-1,\"hasId\":true,"
         "\"id\":\"5\"},{\"image\":\"/9j/\",\"has_id\":true,\"id\":5}]}",
         SRV_INVALID_ARGUMENT},
        {SRV_ADD,
         "{\"items\":[{\"vector\":{\"values\":[1,0,0,1]},\"label\":-1},{\"image\":\"/9j/\","
         "\"keepThumbnail\":true}]}",
         SRV_OK},
        {SRV_REMOVE, "{\"ids\":[\"1\",2]}", SRV_OK},
        {SRV_REMOVE, "{\"ids\":[1,1]}", SRV_INVALID_ARGUMENT},
        {SRV_STATS, "{}", SRV_OK},
        {SRV_STATS, "{\"anything\":[1]}", SRV_OK},
        {SRV_STATS, "", SRV_MALFORMED},
        {SRV_STATS, "{", SRV_MALFORMED},
        {SRV_REMOVE, "{\"ids\":[1]", SRV_MALFORMED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        srv_request_t r;
        srv_error_t e;
        memset(&e, 0, sizeof e);
        const char *j = cases[i].json;
        int rc = srv_request_decode(cases[i].m, SRV_JSON, strlen(j) ? (const uint8_t *)j : NULL,
                                    strlen(j), &l, &r, &e);
        srv_code_t got = rc ? e.code : SRV_OK;
        CHECK_MSG(got == cases[i].code, "%s %s: %s (%s)", srv_method_name(cases[i].m), j,
                  srv_code_name(got), e.msg);
        if (rc == 0) {
            CHECK(r.encoding == SRV_JSON && r.method == cases[i].m);
            /* The same message as its protobuf form gives, and the same
             * batching weights. */
            size_t len;
            uint8_t *b = pack(r.msg, &len);
            srv_request_t p;
            CHECK(srv_request_decode(cases[i].m, SRV_PROTOBUF, b, len, &l, &p, &e) == 0);
            CHECK(p.encoding == SRV_PROTOBUF && same_message(p.msg, r.msg));
            CHECK(p.n_inputs == r.n_inputs && p.n_images == r.n_images);
            srv_request_clear(&p);
            free(b);
            srv_request_clear(&r);
        } else {
            CHECK(r.msg == NULL);
        }
    }
    srv_request_t r;
    srv_error_t e;
    const char *ten = "{\"image\":\"/9j/\",\"crops\":\"TEN\"}";
    CHECK(srv_request_decode(SRV_CLASSIFY, SRV_JSON, (const uint8_t *)ten, strlen(ten), &l, &r,
                             &e) == 0);
    CHECK(r.n_inputs == 10 && r.n_images == 1);
    srv_request_clear(&r);
    CHECK(srv_request_descriptor(SRV_ADD) == &imgret__v1__add_request__descriptor);
    CHECK(srv_request_descriptor(SRV_N_METHODS) == NULL);
}

TEST_MAIN(T(test_defaults_encode_as_empty_objects), T(test_search_messages_round_trip),
          T(test_classify_extract_messages_round_trip),
          T(test_add_remove_stats_messages_round_trip), T(test_names_lower_camel_out_both_in),
          T(test_integers_as_numbers_or_strings), T(test_bytes_base64_standard_out_any_in),
          T(test_floats_numbers_and_special_strings), T(test_enums_names_out_names_or_numbers_in),
          T(test_repeated_oneof_null_and_defaults), T(test_unknown_fields_skipped_but_checked),
          T(test_strings_escapes_and_utf8), T(test_syntax_errors_name_the_offset),
          T(test_truncated_documents_are_malformed), T(test_depth_and_size_limits),
          T(test_json_requests_take_the_protobuf_path))
