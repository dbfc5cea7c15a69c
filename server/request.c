/* Request decoding and validation: a method name and a body in, a checked
 * protobuf message (or a Twirp error) out. Everything a worker later relies
 * on (shapes, counts, ranges, finiteness) is checked here, on the event
 * loop, before a job is queued. */
#include "server/server_internal.h"

#include "server/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void srv_limits_default(srv_limits_t *lim) {
    memset(lim, 0, sizeof *lim);
    lim->max_images = 64;
    lim->max_items = 1024;
    lim->ten_crop_inputs = 10;
}

Imgret__V1__Metric srv_search_metric(const Imgret__V1__SearchRequest *r) {
    if (r->metric != IMGRET__V1__METRIC__METRIC_UNSPECIFIED) return r->metric;
    return r->query_case == IMGRET__V1__SEARCH_REQUEST__QUERY_CODE ? IMGRET__V1__METRIC__HAMMING
                                                                   : IMGRET__V1__METRIC__EUCLIDEAN;
}

static int check_vector(const Imgret__V1__Vector *v, int dim, const char *what, srv_error_t *e) {
    if (!v) return srv_fail(e, SRV_INVALID_ARGUMENT, "%s: no vector", what);
    if (v->n_values != (size_t)dim)
        return srv_fail(e, SRV_INVALID_ARGUMENT,
                        "%s: vector has %zu values, the model's FC7 has %d", what, v->n_values,
                        dim);
    for (size_t i = 0; i < v->n_values; i++)
        if (!isfinite(v->values[i]))
            return srv_fail(e, SRV_INVALID_ARGUMENT, "%s: value %zu is not finite", what, i);
    return 0;
}

static int check_image(const ProtobufCBinaryData *b, const char *what, srv_error_t *e) {
    if (b->len == 0) return srv_fail(e, SRV_INVALID_ARGUMENT, "%s: empty image", what);
    return 0;
}

static int validate_search(const Imgret__V1__SearchRequest *r, const srv_limits_t *lim,
                           srv_request_t *out, srv_error_t *e) {
    if (r->k > (unsigned)lim->max_k)
        return srv_fail(e, SRV_INVALID_ARGUMENT, "k %u is over the limit %d", r->k, lim->max_k);
    if (r->metric != IMGRET__V1__METRIC__METRIC_UNSPECIFIED &&
        r->metric != IMGRET__V1__METRIC__EUCLIDEAN && r->metric != IMGRET__V1__METRIC__HAMMING)
        return srv_fail(e, SRV_INVALID_ARGUMENT, "metric %d is not EUCLIDEAN or HAMMING",
                        (int)r->metric);
    const Imgret__V1__Metric metric = srv_search_metric(r);
    const int hamming = metric == IMGRET__V1__METRIC__HAMMING;
    switch (r->query_case) {
    case IMGRET__V1__SEARCH_REQUEST__QUERY_IMAGE:
        if (check_image(&r->image, "query image", e)) return -1;
        out->n_images = out->n_inputs = 1;
        break;
    case IMGRET__V1__SEARCH_REQUEST__QUERY_VECTOR:
        if (check_vector(r->vector, lim->fc7_dim, "query vector", e)) return -1;
        break;
    case IMGRET__V1__SEARCH_REQUEST__QUERY_ITEM_ID:
        if (r->item_id < 0)
            return srv_fail(e, SRV_INVALID_ARGUMENT, "item_id %lld is negative",
                            (long long)r->item_id);
        break;
    case IMGRET__V1__SEARCH_REQUEST__QUERY_CODE:
        if (!hamming) return srv_fail(e, SRV_INVALID_ARGUMENT, "a code query needs metric HAMMING");
        if (lim->code_bits <= 0)
            return srv_fail(e, SRV_FAILED_PRECONDITION, "this server's store holds no codes");
        if (r->code.len != (size_t)lim->code_bits / 8)
            return srv_fail(e, SRV_INVALID_ARGUMENT, "code has %zu bytes, the store's codes %d",
                            r->code.len, lim->code_bits / 8);
        if (r->rerank)
            return srv_fail(e, SRV_INVALID_ARGUMENT,
                            "rerank needs an FC7 query (image, vector or item_id), not a code");
        break;
    default:
        return srv_fail(e, SRV_INVALID_ARGUMENT, "no query: set image, vector, item_id or code");
    }
    if (hamming) {
        if (lim->code_bits <= 0)
            return srv_fail(e, SRV_FAILED_PRECONDITION,
                            "HAMMING search needs codes; the server has no code index");
        int needs_encoder = r->query_case == IMGRET__V1__SEARCH_REQUEST__QUERY_IMAGE ||
                            r->query_case == IMGRET__V1__SEARCH_REQUEST__QUERY_VECTOR;
        if (needs_encoder && !lim->has_ae)
            return srv_fail(e, SRV_FAILED_PRECONDITION,
                            "HAMMING search by image or vector needs an autoencoder "
                            "(imgret serve --autoencoder)");
    } else if (r->rerank) {
        return srv_fail(e, SRV_INVALID_ARGUMENT, "rerank applies to HAMMING searches");
    }
    if (r->rerank_candidates > (unsigned)lim->max_k)
        return srv_fail(e, SRV_INVALID_ARGUMENT, "rerank_candidates %u is over the limit %d",
                        r->rerank_candidates, lim->max_k);
    unsigned k = r->k ? r->k : SRV_DEFAULT_K;
    if (r->rerank && r->rerank_candidates && r->rerank_candidates < k)
        return srv_fail(e, SRV_INVALID_ARGUMENT, "rerank_candidates %u is fewer than k %u",
                        r->rerank_candidates, k);
    return 0;
}

static int validate_classify(const Imgret__V1__ClassifyRequest *r, const srv_limits_t *lim,
                             srv_request_t *out, srv_error_t *e) {
    if (check_image(&r->image, "image", e)) return -1;
    if (r->crops != IMGRET__V1__CROPS__CROPS_UNSPECIFIED && r->crops != IMGRET__V1__CROPS__CENTRE &&
        r->crops != IMGRET__V1__CROPS__TEN)
        return srv_fail(e, SRV_INVALID_ARGUMENT, "crops %d is not CENTRE or TEN", (int)r->crops);
    if (r->k > (unsigned)lim->n_classes)
        return srv_fail(e, SRV_INVALID_ARGUMENT, "k %u is more than the model's %d classes", r->k,
                        lim->n_classes);
    out->n_images = 1;
    out->n_inputs = r->crops == IMGRET__V1__CROPS__TEN ? lim->ten_crop_inputs : 1;
    return 0;
}

static int validate_extract(const Imgret__V1__ExtractRequest *r, const srv_limits_t *lim,
                            srv_request_t *out, srv_error_t *e) {
    if (r->n_images == 0) return srv_fail(e, SRV_INVALID_ARGUMENT, "no images");
    if (r->n_images > lim->max_images)
        return srv_fail(e, SRV_INVALID_ARGUMENT, "%zu images; at most %zu per request", r->n_images,
                        lim->max_images);
    for (size_t i = 0; i < r->n_images; i++)
        if (r->images[i].len == 0)
            return srv_fail(e, SRV_INVALID_ARGUMENT, "image %zu is empty", i);
    if (r->want_code && !lim->has_ae)
        return srv_fail(e, SRV_FAILED_PRECONDITION,
                        "codes need an autoencoder (imgret serve --autoencoder)");
    out->n_images = out->n_inputs = (int)r->n_images;
    return 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Index of a value that appears twice in v (n entries), or -1. */
static long find_duplicate(const int64_t *v, size_t n) {
    if (n < 2) return -1;
    int64_t *s = malloc(n * sizeof *s);
    if (!s) return -1;
    memcpy(s, v, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_i64);
    long dup = -1;
    for (size_t i = 1; i < n && dup < 0; i++)
        if (s[i] == s[i - 1])
            for (size_t j = 0; j < n; j++)
                if (v[j] == s[i]) {
                    dup = (long)j;
                    break;
                }
    free(s);
    return dup;
}

static int validate_add(const Imgret__V1__AddRequest *r, const srv_limits_t *lim,
                        srv_request_t *out, srv_error_t *e) {
    if (r->n_items == 0) return srv_fail(e, SRV_INVALID_ARGUMENT, "no items");
    if (r->n_items > lim->max_items)
        return srv_fail(e, SRV_INVALID_ARGUMENT, "%zu items; at most %zu per request", r->n_items,
                        lim->max_items);
    size_t images = 0, with_id = 0;
    for (size_t i = 0; i < r->n_items; i++) {
        const Imgret__V1__NewItem *it = r->items[i];
        char what[48];
        snprintf(what, sizeof what, "item %zu", i);
        if (it->content_case == IMGRET__V1__NEW_ITEM__CONTENT_IMAGE) {
            if (check_image(&it->image, what, e)) return -1;
            images++;
        } else if (it->content_case == IMGRET__V1__NEW_ITEM__CONTENT_VECTOR) {
            if (check_vector(it->vector, lim->fc7_dim, what, e)) return -1;
            if (it->keep_thumbnail)
                return srv_fail(e, SRV_INVALID_ARGUMENT, "%s: keep_thumbnail needs an image item",
                                what);
        } else {
            return srv_fail(e, SRV_INVALID_ARGUMENT, "%s: set image or vector", what);
        }
        size_t ul = it->uri ? strlen(it->uri) : 0;
        if (ul > lim->max_uri_bytes)
            return srv_fail(e, SRV_INVALID_ARGUMENT, "%s: uri is %zu bytes, the limit is %zu", what,
                            ul, lim->max_uri_bytes);
        if (it->label < -1 || (lim->n_classes > 0 && it->label >= lim->n_classes))
            return srv_fail(e, SRV_INVALID_ARGUMENT, "%s: label %d is not -1 or in [0, %d)", what,
                            (int)it->label, lim->n_classes);
        if (it->has_id) {
            if (it->id < 0)
                return srv_fail(e, SRV_INVALID_ARGUMENT, "%s: id %lld is negative", what,
                                (long long)it->id);
            with_id++;
        } else if (it->id != 0) {
            return srv_fail(e, SRV_INVALID_ARGUMENT, "%s: id is set but has_id is not", what);
        }
    }
    if (images > lim->max_images)
        return srv_fail(e, SRV_INVALID_ARGUMENT, "%zu image items; at most %zu per request", images,
                        lim->max_images);
    if (with_id > 1) {
        int64_t *ids = malloc(with_id * sizeof *ids);
        if (!ids) return srv_fail(e, SRV_RESOURCE_EXHAUSTED, "out of memory");
        size_t m = 0;
        for (size_t i = 0; i < r->n_items; i++)
            if (r->items[i]->has_id) ids[m++] = r->items[i]->id;
        long d = find_duplicate(ids, m);
        int64_t dup = d >= 0 ? ids[d] : 0;
        free(ids);
        if (d >= 0)
            return srv_fail(e, SRV_INVALID_ARGUMENT, "id %lld is given twice", (long long)dup);
    }
    out->n_images = out->n_inputs = (int)images;
    return 0;
}

static int validate_remove(const Imgret__V1__RemoveRequest *r, const srv_limits_t *lim,
                           srv_error_t *e) {
    if (r->n_ids == 0) return srv_fail(e, SRV_INVALID_ARGUMENT, "no ids");
    if (r->n_ids > lim->max_items)
        return srv_fail(e, SRV_INVALID_ARGUMENT, "%zu ids; at most %zu per request", r->n_ids,
                        lim->max_items);
    for (size_t i = 0; i < r->n_ids; i++)
        if (r->ids[i] < 0)
            return srv_fail(e, SRV_INVALID_ARGUMENT, "id %lld is negative", (long long)r->ids[i]);
    long d = find_duplicate(r->ids, r->n_ids);
    if (d >= 0)
        return srv_fail(e, SRV_INVALID_ARGUMENT, "id %lld is given twice", (long long)r->ids[d]);
    return 0;
}

static const ProtobufCMessageDescriptor *const descriptors[SRV_N_METHODS] = {
    &imgret__v1__search_request__descriptor,  &imgret__v1__classify_request__descriptor,
    &imgret__v1__extract_request__descriptor, &imgret__v1__add_request__descriptor,
    &imgret__v1__remove_request__descriptor,  &imgret__v1__stats_request__descriptor,
};

const ProtobufCMessageDescriptor *srv_request_descriptor(srv_method_t m) {
    return (unsigned)m < SRV_N_METHODS ? descriptors[m] : NULL;
}

int srv_request_decode(srv_method_t m, srv_encoding_t enc, const uint8_t *body, size_t len,
                       const srv_limits_t *lim, srv_request_t *out, srv_error_t *e) {
    memset(out, 0, sizeof *out);
    if ((unsigned)m >= SRV_N_METHODS) return srv_fail(e, SRV_BAD_ROUTE, "no such method");
    ProtobufCMessage *msg = NULL;
    if (enc == SRV_JSON) {
        srv_json_limits_t jl;
        srv_json_limits_default(&jl, len);
        if (srv_json_decode(descriptors[m], body, len, &jl, &msg, e)) return -1;
    } else {
        /* protobuf_c_message_unpack reads nothing when len is 0 (an empty
         * message is valid protobuf); body may then be NULL. */
        static const uint8_t empty[1] = {0};
        msg = protobuf_c_message_unpack(descriptors[m], NULL, len, body ? body : empty);
        if (!msg)
            return srv_fail(e, SRV_MALFORMED, "the body is not a valid imgret.v1.%sRequest message",
                            srv_method_name(m));
    }
    out->encoding = enc;
    out->method = m;
    out->msg = msg;
    int rc = 0;
    switch (m) {
    case SRV_SEARCH:
        rc = validate_search((void *)msg, lim, out, e);
        break;
    case SRV_CLASSIFY:
        rc = validate_classify((void *)msg, lim, out, e);
        break;
    case SRV_EXTRACT:
        rc = validate_extract((void *)msg, lim, out, e);
        break;
    case SRV_ADD:
        rc = validate_add((void *)msg, lim, out, e);
        break;
    case SRV_REMOVE:
        rc = validate_remove((void *)msg, lim, e);
        break;
    default:
        break;
    }
    if (rc) srv_request_clear(out);
    return rc;
}

void srv_request_clear(srv_request_t *r) {
    if (r->msg) protobuf_c_message_free_unpacked(r->msg, NULL);
    memset(r, 0, sizeof *r);
}
