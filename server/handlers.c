/* The work of each RPC, run on worker threads: decoding images into network
 * inputs, the batched forward pass, codes, searches, store writes, and
 * thumbnails. Results are packed protobuf replies or Twirp errors. */
#include "server/server_impl.h"

#include "server/json.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int srv_worker_init(struct srv *s, srv_worker_t *w, util_err_t *err) {
    memset(w, 0, sizeof *w);
    w->s = s;
    w->net_batch =
        s->opt.max_batch > s->lim.ten_crop_inputs ? s->opt.max_batch : s->lim.ten_crop_inputs;
    if (!(w->ex = feat_extractor_create_on(s->mf, w->net_batch, NULL, &s->pl, err))) return -1;
    if (s->opt.ae_path && !(w->ae = ae_load(s->opt.ae_path, err))) return -1;
    const model_input_t *mi = feat_extractor_input(w->ex);
    size_t in = (size_t)mi->prep.channels * mi->crop * mi->crop;
    w->x = malloc(sizeof(float) * in * (size_t)w->net_batch);
    w->fc7 = malloc(sizeof(float) * (size_t)s->fc7_dim * (size_t)w->net_batch);
    w->slot_job = calloc((size_t)w->net_batch, sizeof *w->slot_job);
    w->slot_index = calloc((size_t)w->net_batch, sizeof *w->slot_index);
    if (!w->x || !w->fc7 || !w->slot_job || !w->slot_index)
        return util_fail(err, "server: out of memory");
    return 0;
}

void srv_worker_free(srv_worker_t *w) {
    feat_extractor_free(w->ex);
    ae_free(w->ae);
    free(w->x);
    free(w->fc7);
    free(w->slot_job);
    free(w->slot_index);
    memset(w, 0, sizeof *w);
}

void srv_job_free(srv_job_t *j) {
    if (!j) return;
    if (j->thumbs)
        for (int i = 0; i < j->req.n_images; i++)
            free(j->thumbs[i]);
    srv_request_clear(&j->req);
    free(j->resp);
    free(j->fc7);
    free(j->logits);
    free(j->thumbs);
    free(j->thumb_len);
    free(j);
}

static int job_fail(srv_job_t *j, srv_code_t code, const char *fmt, const char *detail) {
    if (j->failed) return -1; /* keep the first error */
    j->failed = 1;
    srv_fail(&j->err, code, fmt, detail);
    return -1;
}

/* The reply in the request's encoding. */
static int pack_reply(srv_job_t *j, const ProtobufCMessage *m) {
    if (j->req.encoding == SRV_JSON) {
        j->resp = (uint8_t *)srv_json_encode(m, &j->resp_len);
        if (!j->resp)
            return job_fail(j, SRV_RESOURCE_EXHAUSTED, "%s", "out of memory for the reply");
        j->content_type = "application/json";
        return 0;
    }
    size_t n = protobuf_c_message_get_packed_size(m);
    j->resp = malloc(n ? n : 1);
    if (!j->resp) return job_fail(j, SRV_RESOURCE_EXHAUSTED, "%s", "out of memory for the reply");
    j->resp_len = protobuf_c_message_pack(m, j->resp);
    j->content_type = "application/protobuf";
    return 0;
}

/* ------------------------------------------------------------ images */

/* Decodes an image (pixel limit checked from its header first) into the
 * stored image of the model's input rule, as `imgret extract` does. */
static data_image_t *decode_stored(srv_worker_t *w, const uint8_t *buf, size_t len,
                                   srv_error_t *e) {
    util_err_t err = {{0}};
    data_image_t *im = feat_extractor_decode(w->ex, buf, len, w->s->opt.max_pixels, &err);
    if (!im) srv_fail(e, SRV_INVALID_ARGUMENT, "%s", err.msg);
    return im;
}

/* A JPEG thumbnail (shorter side SRV_THUMB_SIDE, longer side at most 4x). */
static int thumbnail_jpeg(const data_image_t *im, uint8_t **out, size_t *len, util_err_t *err) {
    const int side = SRV_THUMB_SIDE;
    int w, h;
    if (im->w <= im->h) {
        w = side;
        h = (int)((double)im->h * side / im->w + 0.5);
        if (h > 4 * side) h = 4 * side;
    } else {
        h = side;
        w = (int)((double)im->w * side / im->h + 0.5);
        if (w > 4 * side) w = 4 * side;
    }
    if (h < 1) h = 1;
    if (w < 1) w = 1;
    data_image_t *t = data_resize(im, w, h, err);
    if (!t) return -1;
    int rc = data_encode_jpeg(t, 85, out, len, err);
    data_image_free(t);
    return rc;
}

/* The image bytes of input `i` of a job (the i-th image of the request). */
static const ProtobufCBinaryData *job_image(srv_job_t *j, int i, int *keep_thumb) {
    *keep_thumb = 0;
    switch (j->req.method) {
    case SRV_SEARCH:
        return &((Imgret__V1__SearchRequest *)j->req.msg)->image;
    case SRV_CLASSIFY:
        return &((Imgret__V1__ClassifyRequest *)j->req.msg)->image;
    case SRV_EXTRACT:
        return &((Imgret__V1__ExtractRequest *)j->req.msg)->images[i];
    case SRV_ADD: {
        Imgret__V1__AddRequest *r = (void *)j->req.msg;
        int k = 0;
        for (size_t t = 0; t < r->n_items; t++)
            if (r->items[t]->content_case == IMGRET__V1__NEW_ITEM__CONTENT_IMAGE) {
                if (k == i) {
                    *keep_thumb = r->items[t]->keep_thumbnail;
                    return &r->items[t]->image;
                }
                k++;
            }
        return NULL;
    }
    default:
        return NULL;
    }
}

static int job_ten_crop(const srv_job_t *j) {
    return j->req.method == SRV_CLASSIFY &&
           ((Imgret__V1__ClassifyRequest *)j->req.msg)->crops == IMGRET__V1__CROPS__TEN;
}

/* Forward pass over the filled slots; scatter FC7 and logits to the jobs. */
static void flush_slots(srv_worker_t *w, int n) {
    if (n == 0) return;
    struct srv *s = w->s;
    util_err_t err = {{0}};
    if (feat_extract_batch(w->ex, w->x, n, w->fc7, &err)) {
        for (int i = 0; i < n; i++)
            job_fail(w->slot_job[i], SRV_INTERNAL, "forward pass: %s", err.msg);
        return;
    }
    atomic_fetch_add(&s->batches, 1);
    atomic_fetch_add(&s->batch_inputs, (unsigned long long)n);
    const float *f = w->fc7;
    const float *l = feat_extractor_logits(w->ex, NULL);
    for (int i = 0; i < n; i++) {
        srv_job_t *j = w->slot_job[i];
        size_t k = (size_t)w->slot_index[i];
        memcpy(j->fc7 + k * s->fc7_dim, f + (size_t)i * s->fc7_dim, sizeof(float) * s->fc7_dim);
        memcpy(j->logits + k * s->n_classes, l + (size_t)i * s->n_classes,
               sizeof(float) * s->n_classes);
    }
}

/* Decodes every image of the batch's jobs into network inputs and runs the
 * forward passes, up to net_batch inputs at a time. */
static void forward_jobs(srv_worker_t *w, srv_job_t **jobs, size_t n) {
    struct srv *s = w->s;
    const model_input_t *mi = feat_extractor_input(w->ex);
    const size_t in_size = (size_t)mi->prep.channels * mi->crop * mi->crop;
    int used = 0;
    for (size_t b = 0; b < n; b++) {
        srv_job_t *j = jobs[b];
        if (j->req.n_inputs <= 0 || j->failed) continue;
        j->fc7 = malloc(sizeof(float) * (size_t)j->req.n_inputs * s->fc7_dim);
        j->logits = malloc(sizeof(float) * (size_t)j->req.n_inputs * s->n_classes);
        if (j->req.method == SRV_ADD) {
            j->thumbs = calloc((size_t)j->req.n_images, sizeof *j->thumbs);
            j->thumb_len = calloc((size_t)j->req.n_images, sizeof *j->thumb_len);
        }
        if (!j->fc7 || !j->logits || (j->req.method == SRV_ADD && (!j->thumbs || !j->thumb_len))) {
            job_fail(j, SRV_RESOURCE_EXHAUSTED, "%s", "out of memory");
            continue;
        }
        const int crops = job_ten_crop(j) ? DATA_TEN_CROPS : 1;
        for (int i = 0; i < j->req.n_images && !j->failed; i++) {
            if (atomic_load(&j->abandoned)) {
                job_fail(j, SRV_DEADLINE_EXCEEDED, "%s", "abandoned");
                break;
            }
            int keep = 0;
            const ProtobufCBinaryData *img = job_image(j, i, &keep);
            srv_error_t de;
            memset(&de, 0, sizeof de);
            data_image_t *im = img ? decode_stored(w, img->data, img->len, &de) : NULL;
            if (!im) {
                char what[32];
                snprintf(what, sizeof what, "image %d", i);
                srv_fail(&j->err, SRV_INVALID_ARGUMENT, "%s: %.480s", what,
                         de.msg[0] ? de.msg : "cannot decode");
                j->failed = 1;
                break;
            }
            util_err_t err = {{0}};
            if (keep && thumbnail_jpeg(im, &j->thumbs[i], &j->thumb_len[i], &err)) {
                data_image_free(im);
                job_fail(j, SRV_INTERNAL, "thumbnail: %s", err.msg);
                break;
            }
            if (used + crops > w->net_batch) {
                flush_slots(w, used);
                used = 0;
            }
            float *x = w->x + (size_t)used * in_size;
            int rc = crops == DATA_TEN_CROPS ? data_ten_crop(im, mi->crop, &mi->norm, x, &err)
                                             : data_center_crop(im, mi->crop, &mi->norm, x, &err);
            data_image_free(im);
            if (rc) {
                job_fail(j, SRV_INVALID_ARGUMENT, "crop: %s", err.msg);
                break;
            }
            for (int c = 0; c < crops; c++) {
                w->slot_job[used] = j;
                w->slot_index[used] = i * crops + c;
                used++;
            }
        }
    }
    flush_slots(w, used);
}

/* ------------------------------------------------------------ helpers */

static void softmax_mean(const struct srv *s, const float *logits, int crops, float *probs) {
    float *p = malloc(sizeof(float) * (size_t)crops * s->n_classes);
    if (!p) {
        for (int k = 0; k < s->n_classes; k++)
            probs[k] = 0;
        return;
    }
    model_softmax(crops, s->n_classes, logits, p);
    for (int k = 0; k < s->n_classes; k++) {
        double a = 0;
        for (int c = 0; c < crops; c++)
            a += p[(size_t)c * s->n_classes + k];
        probs[k] = (float)(a / crops);
    }
    free(p);
}

static const char *class_name(const struct srv *s, int k) {
    return k >= 0 && k < s->mf->n_classes ? s->mf->class_names[k] : "";
}

/* Top-k classes of probs into a malloc'd array of ClassScore pointers. */
static Imgret__V1__ClassScore **top_classes(const struct srv *s, const float *probs, int k,
                                            Imgret__V1__ClassScore *store, size_t *n) {
    Imgret__V1__ClassScore **out = malloc(sizeof *out * (size_t)(k > 0 ? k : 1));
    float *p = malloc(sizeof(float) * (size_t)s->n_classes);
    *n = 0;
    if (!out || !p) {
        free(out);
        free(p);
        return NULL;
    }
    memcpy(p, probs, sizeof(float) * (size_t)s->n_classes);
    for (int r = 0; r < k && r < s->n_classes; r++) {
        int best = 0;
        for (int c = 1; c < s->n_classes; c++)
            if (p[c] > p[best]) best = c;
        imgret__v1__class_score__init(&store[r]);
        store[r].index = best;
        store[r].name = (char *)class_name(s, best);
        store[r].probability = p[best];
        p[best] = -1.0f;
        out[(*n)++] = &store[r];
    }
    free(p);
    return out;
}

/* ------------------------------------------------------------ Search */

/* A search on its way: the query (borrowed from the request, the job's FC7,
 * or a stored record) and what to fetch from the index. */
typedef struct search_plan {
    srv_job_t *job;
    int hamming, k, fetch, exclude;
    const float *qfc7;
    const uint8_t *qcode;
    uint8_t *own_code;
    store_record_t qrec;
    index_hit_t *hits; /* fetch entries, filled by the grouped index call */
} search_plan_t;

static void plan_clear(search_plan_t *p) {
    free(p->own_code);
    free(p->hits);
    store_record_clear(&p->qrec);
    memset(p, 0, sizeof *p);
}

/* Resolves the query to an FC7 vector or a code; 0, or -1 with the job failed. */
static int search_prepare(srv_worker_t *w, srv_job_t *j, search_plan_t *p) {
    struct srv *s = w->s;
    Imgret__V1__SearchRequest *r = (void *)j->req.msg;
    util_err_t err = {{0}};
    memset(p, 0, sizeof *p);
    p->job = j;
    p->hamming = srv_search_metric(r) == IMGRET__V1__METRIC__HAMMING;
    p->k = r->k ? (int)r->k : SRV_DEFAULT_K;
    /* Read your writes: this replica's indexes must reflect min_seq first,
     * waited for up to the request's deadline. */
    if (r->min_seq > 0) {
        double left = j->t_arrival + s->opt.timeout_s - util_now();
        int ms = left > 0 ? (int)(left * 1000) : 0;
        if (index_wait_applied(s->ix, r->min_seq, ms, &err))
            return job_fail(j, srv_code_of_kind(util_err_kind(&err)), "min_seq: %s", err.msg);
    }
    switch (r->query_case) {
    case IMGRET__V1__SEARCH_REQUEST__QUERY_IMAGE:
        p->qfc7 = j->fc7;
        break;
    case IMGRET__V1__SEARCH_REQUEST__QUERY_VECTOR:
        p->qfc7 = r->vector->values;
        break;
    case IMGRET__V1__SEARCH_REQUEST__QUERY_CODE:
        p->qcode = r->code.data;
        break;
    case IMGRET__V1__SEARCH_REQUEST__QUERY_ITEM_ID:
        if (index_get(s->ix, r->item_id, &p->qrec, &err))
            return job_fail(j, srv_code_of_kind(util_err_kind(&err)), "%s", err.msg);
        p->qfc7 = p->qrec.fc7;
        p->qcode = p->qrec.code;
        p->exclude = !r->include_query_item;
        break;
    default:
        return job_fail(j, SRV_INVALID_ARGUMENT, "%s", "no query");
    }
    if (p->hamming && !p->qcode) {
        if (!w->ae || !p->qfc7)
            return job_fail(j, SRV_FAILED_PRECONDITION, "%s",
                            p->qfc7 ? "HAMMING search needs an autoencoder"
                                    : "the item has no code");
        /* The autoencoder's code may be shorter than the store's bytes. */
        const int cb = s->code_bits / 8, ab = ae_code_bytes(ae_bits(w->ae));
        p->own_code = calloc(1, (size_t)(ab > cb ? ab : cb));
        if (!p->own_code || ae_encode(w->ae, p->qfc7, 1, NULL, p->own_code, &err))
            return job_fail(j, SRV_INTERNAL, "encoding the query: %s",
                            p->own_code ? err.msg : "out of memory");
        p->qcode = p->own_code;
    }
    if (!p->hamming && !p->qfc7)
        return job_fail(j, SRV_FAILED_PRECONDITION, "%s", "the item has no FC7 vector");
    p->fetch = p->k;
    if (p->hamming && r->rerank) {
        p->fetch = r->rerank_candidates ? (int)r->rerank_candidates : 10 * p->k;
        if (p->fetch > INDEX_MAX_K) p->fetch = INDEX_MAX_K;
        if (p->fetch < p->k) p->fetch = p->k;
    }
    if (p->exclude && p->fetch < INDEX_MAX_K) p->fetch++;
    if (!(p->hits = malloc(sizeof *p->hits * (size_t)p->fetch)))
        return job_fail(j, SRV_RESOURCE_EXHAUSTED, "%s", "out of memory");
    return 0;
}

/* One index call for every plan of a metric: FAISS answers nq queries
 * together much faster than nq single queries (a matrix product instead of
 * nq scans). Each plan receives the first `fetch` hits of its row. */
static void search_grouped(struct srv *s, search_plan_t *plans, size_t n, int hamming) {
    size_t nq = 0;
    int fetch = 0;
    for (size_t i = 0; i < n; i++)
        if (plans[i].job && plans[i].hamming == hamming) {
            nq++;
            if (plans[i].fetch > fetch) fetch = plans[i].fetch;
        }
    if (nq == 0) return;
    const int cb = s->code_bits / 8;
    const size_t row = hamming ? (size_t)cb : sizeof(float) * (size_t)s->fc7_dim;
    uint8_t *q = malloc(row * nq);
    index_hit_t *hits = malloc(sizeof *hits * nq * (size_t)fetch);
    util_err_t err = {{0}};
    int rc = -1;
    if (q && hits) {
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (plans[i].job && plans[i].hamming == hamming)
                memcpy(q + row * m++,
                       hamming ? (const void *)plans[i].qcode : (const void *)plans[i].qfc7, row);
        rc = hamming ? index_search_code(s->ix, q, nq, cb, fetch, hits, &err)
                     : index_search_fc7(s->ix, (const float *)q, nq, s->fc7_dim, fetch, hits, &err);
        atomic_fetch_add(&s->search_batches, 1);
        atomic_fetch_add(&s->search_queries, (unsigned long long)nq);
    } else {
        util_fail_kind(&err, UTIL_ERR_LIMIT, "out of memory");
    }
    for (size_t i = 0, m = 0; i < n; i++) {
        search_plan_t *p = &plans[i];
        if (!p->job || p->hamming != hamming) continue;
        if (rc)
            job_fail(p->job, srv_code_of_kind(util_err_kind(&err)), "search: %s", err.msg);
        else
            memcpy(p->hits, hits + m * (size_t)fetch, sizeof *p->hits * (size_t)p->fetch);
        m++;
    }
    free(q);
    free(hits);
}

typedef struct cand {
    int64_t id;
    float dist;
    store_record_t rec;
} cand_t;

static int cmp_cand(const void *a, const void *b) {
    const cand_t *x = a, *y = b;
    if (x->dist != y->dist) return x->dist < y->dist ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Metadata, the optional rerank, the reply. */
static void search_finish(srv_worker_t *w, search_plan_t *p) {
    struct srv *s = w->s;
    srv_job_t *j = p->job;
    Imgret__V1__SearchRequest *r = (void *)j->req.msg;
    const int rerank = p->hamming && r->rerank;
    util_err_t err = {{0}};
    Imgret__V1__SearchHit *hit_store = NULL;
    Imgret__V1__SearchHit **hit_ptrs = NULL;
    Imgret__V1__ClassScore cls_store[SRV_DEFAULT_CLASSES_K];
    Imgret__V1__ClassScore **cls = NULL;
    cand_t *c = calloc((size_t)p->fetch, sizeof *c);
    if (!c) {
        job_fail(j, SRV_RESOURCE_EXHAUSTED, "%s", "out of memory");
        return;
    }
    size_t nc = 0;
    for (int i = 0; i < p->fetch; i++) {
        const index_hit_t *h = &p->hits[i];
        if (h->id < 0) break;
        if (p->exclude && h->id == r->item_id) continue;
        if (index_get(s->ix, h->id, &c[nc].rec, &err)) {
            /* Removed meanwhile: left out. The store down: the cache still
             * knows the id and the distance; uri and label come back with it. */
            if (util_err_kind(&err) != UTIL_ERR_UNAVAILABLE || rerank) continue;
            memset(&c[nc].rec, 0, sizeof c[nc].rec);
            c[nc].rec.label = -1;
        }
        c[nc].id = h->id;
        c[nc].dist = h->distance;
        if (rerank) {
            if (!c[nc].rec.fc7) {
                store_record_clear(&c[nc].rec);
                continue; /* no FC7 to re-rank by: left out */
            }
            double d = 0;
            for (int t = 0; t < s->fc7_dim; t++) {
                double e = (double)p->qfc7[t] - c[nc].rec.fc7[t];
                d += e * e;
            }
            c[nc].dist = (float)d;
        }
        nc++;
    }
    if (rerank) qsort(c, nc, sizeof *c, cmp_cand);
    const size_t kept = nc < (size_t)p->k ? nc : (size_t)p->k;
    Imgret__V1__SearchResponse resp = IMGRET__V1__SEARCH_RESPONSE__INIT;
    hit_store = calloc(kept ? kept : 1, sizeof *hit_store);
    hit_ptrs = calloc(kept ? kept : 1, sizeof *hit_ptrs);
    if (!hit_store || !hit_ptrs) {
        job_fail(j, SRV_RESOURCE_EXHAUSTED, "%s", "out of memory");
        goto done;
    }
    for (size_t i = 0; i < kept; i++) {
        imgret__v1__search_hit__init(&hit_store[i]);
        hit_store[i].id = c[i].id;
        hit_store[i].distance = c[i].dist;
        hit_store[i].uri = c[i].rec.uri ? c[i].rec.uri : "";
        hit_store[i].label = c[i].rec.label;
        hit_store[i].label_name = (char *)class_name(s, c[i].rec.label);
        hit_ptrs[i] = &hit_store[i];
    }
    resp.n_hits = kept;
    resp.hits = hit_ptrs;
    resp.metric = p->hamming ? IMGRET__V1__METRIC__HAMMING : IMGRET__V1__METRIC__EUCLIDEAN;
    resp.reranked = rerank;
    if (r->query_case == IMGRET__V1__SEARCH_REQUEST__QUERY_IMAGE) {
        float *probs = malloc(sizeof(float) * (size_t)s->n_classes);
        if (probs) {
            softmax_mean(s, j->logits, 1, probs);
            cls = top_classes(s, probs, SRV_DEFAULT_CLASSES_K, cls_store, &resp.n_classes);
            resp.classes = cls;
            free(probs);
        }
    }
    pack_reply(j, &resp.base);
done:
    for (size_t i = 0; i < nc; i++)
        store_record_clear(&c[i].rec);
    free(c);
    free(hit_store);
    free(hit_ptrs);
    free(cls);
}

/* Every Search of a batch: queries resolved one by one, then one index
 * call per metric, then each reply. */
static void run_searches(srv_worker_t *w, srv_job_t **jobs, size_t n) {
    search_plan_t *plans = calloc(n, sizeof *plans);
    if (!plans) {
        for (size_t i = 0; i < n; i++)
            job_fail(jobs[i], SRV_RESOURCE_EXHAUSTED, "%s", "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (search_prepare(w, jobs[i], &plans[i])) plan_clear(&plans[i]);
    search_grouped(w->s, plans, n, 0);
    search_grouped(w->s, plans, n, 1);
    for (size_t i = 0; i < n; i++) {
        if (plans[i].job && !plans[i].job->failed) search_finish(w, &plans[i]);
        plan_clear(&plans[i]);
    }
    free(plans);
}

/* ------------------------------------------------- Classify, Extract */

static void run_classify(struct srv *s, srv_job_t *j) {
    Imgret__V1__ClassifyRequest *r = (void *)j->req.msg;
    int k = r->k ? (int)r->k : SRV_DEFAULT_CLASSES_K;
    if (k > s->n_classes) k = s->n_classes;
    float *probs = malloc(sizeof(float) * (size_t)s->n_classes);
    Imgret__V1__ClassScore *store = calloc((size_t)k, sizeof *store);
    if (!probs || !store) {
        free(probs);
        free(store);
        job_fail(j, SRV_RESOURCE_EXHAUSTED, "%s", "out of memory");
        return;
    }
    softmax_mean(s, j->logits, j->req.n_inputs, probs);
    Imgret__V1__ClassifyResponse resp = IMGRET__V1__CLASSIFY_RESPONSE__INIT;
    resp.classes = top_classes(s, probs, k, store, &resp.n_classes);
    if (!resp.classes)
        job_fail(j, SRV_RESOURCE_EXHAUSTED, "%s", "out of memory");
    else
        pack_reply(j, &resp.base);
    free(resp.classes);
    free(store);
    free(probs);
}

static void run_extract(srv_worker_t *w, srv_job_t *j) {
    struct srv *s = w->s;
    Imgret__V1__ExtractRequest *r = (void *)j->req.msg;
    const size_t n = r->n_images;
    const int want_code = r->want_code, want_fc7 = r->want_fc7 || !r->want_code;
    const int cb = w->ae ? ae_code_bytes(ae_bits(w->ae)) : 0;
    uint8_t *codes = want_code ? calloc(n, (size_t)(cb ? cb : 1)) : NULL;
    Imgret__V1__Extracted *items = calloc(n, sizeof *items);
    Imgret__V1__Extracted **ptrs = calloc(n, sizeof *ptrs);
    Imgret__V1__Vector *vecs = calloc(n, sizeof *vecs);
    util_err_t err = {{0}};
    if ((want_code && !codes) || !items || !ptrs || !vecs) {
        job_fail(j, SRV_RESOURCE_EXHAUSTED, "%s", "out of memory");
    } else if (want_code && (!w->ae || ae_encode(w->ae, j->fc7, n, NULL, codes, &err))) {
        job_fail(j, SRV_INTERNAL, "encoding: %s", w->ae ? err.msg : "no autoencoder");
    } else {
        for (size_t i = 0; i < n; i++) {
            imgret__v1__extracted__init(&items[i]);
            if (want_fc7) {
                imgret__v1__vector__init(&vecs[i]);
                vecs[i].n_values = (size_t)s->fc7_dim;
                vecs[i].values = j->fc7 + i * s->fc7_dim;
                items[i].fc7 = &vecs[i];
            }
            if (want_code) {
                items[i].code.data = codes + i * cb;
                items[i].code.len = (size_t)cb;
            }
            ptrs[i] = &items[i];
        }
        Imgret__V1__ExtractResponse resp = IMGRET__V1__EXTRACT_RESPONSE__INIT;
        resp.n_items = n;
        resp.items = ptrs;
        resp.fc7_dim = (uint32_t)s->fc7_dim;
        resp.code_bits = w->ae ? (uint32_t)ae_bits(w->ae) : 0;
        pack_reply(j, &resp.base);
    }
    free(codes);
    free(items);
    free(ptrs);
    free(vecs);
}

/* ------------------------------------------------------- Add, Remove */

static void thumb_path(const struct srv *s, int64_t id, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/thumbs/%lld.jpg", s->store_dir, (long long)id);
}

/* Writes a kept thumbnail atomically (util_write_file_atomic). Best effort:
 * the item is already durable; a failure only loses the picture. */
static void write_thumb(struct srv *s, int64_t id, const uint8_t *b, size_t n) {
    char dir[1100], path[1200];
    snprintf(dir, sizeof dir, "%s/thumbs", s->store_dir);
    mkdir(dir, 0755);
    thumb_path(s, id, path, sizeof path);
    util_err_t err;
    if (util_write_file_atomic(path, b, n, &err) == 0) return;
    if (s->opt.log) {
        char line[1400];
        snprintf(line, sizeof line, "thumbnail of item %lld not written: %s", (long long)id,
                 err.msg);
        s->opt.log(s->opt.log_ctx, line);
    }
}

static void run_add(srv_worker_t *w, srv_job_t *j) {
    struct srv *s = w->s;
    Imgret__V1__AddRequest *r = (void *)j->req.msg;
    const size_t n = r->n_items;
    const int cb = s->code_bits / 8;
    store_item_t *items = calloc(n, sizeof *items);
    float *fc7 = malloc(sizeof(float) * n * (size_t)s->fc7_dim);
    uint8_t *codes = (w->ae && cb) ? calloc(n, (size_t)cb) : NULL;
    int64_t *ids = malloc(sizeof *ids * n);
    util_err_t err = {{0}};
    if (!items || !fc7 || !ids || (w->ae && cb && !codes)) {
        job_fail(j, SRV_RESOURCE_EXHAUSTED, "%s", "out of memory");
        goto done;
    }
    for (size_t i = 0, img = 0; i < n; i++) {
        const Imgret__V1__NewItem *it = r->items[i];
        const float *src = it->content_case == IMGRET__V1__NEW_ITEM__CONTENT_IMAGE
                               ? j->fc7 + (img++) * s->fc7_dim
                               : it->vector->values;
        memcpy(fc7 + i * s->fc7_dim, src, sizeof(float) * s->fc7_dim);
    }
    if (codes) {
        /* The autoencoder's code may be shorter than the store's bytes
         * (e.g. 28 bits in 4 bytes): encode into its size, then copy. */
        const int ab = ae_code_bytes(ae_bits(w->ae));
        uint8_t *tmp = calloc(n, (size_t)ab);
        if (!tmp || ae_encode(w->ae, fc7, n, NULL, tmp, &err)) {
            free(tmp);
            job_fail(j, SRV_INTERNAL, "encoding: %s", err.msg[0] ? err.msg : "out of memory");
            goto done;
        }
        for (size_t i = 0; i < n; i++)
            memcpy(codes + i * cb, tmp + i * ab, (size_t)(ab < cb ? ab : cb));
        free(tmp);
    }
    for (size_t i = 0; i < n; i++) {
        const Imgret__V1__NewItem *it = r->items[i];
        items[i].id = it->has_id ? it->id : STORE_ID_AUTO;
        items[i].uri = it->uri ? it->uri : "";
        items[i].label = it->label;
        items[i].fc7 = fc7 + i * s->fc7_dim;
        items[i].code = codes ? codes + i * cb : NULL;
    }
    if (atomic_load(&j->abandoned)) {
        job_fail(j, SRV_DEADLINE_EXCEEDED, "%s", "abandoned before the store write");
        goto done;
    }
    if (index_add(s->ix, items, n, &err)) {
        job_fail(j, srv_code_of_kind(util_err_kind(&err)), "%s", err.msg);
        goto done;
    }
    atomic_fetch_add(&s->items, (long long)n);
    for (size_t i = 0, img = 0; i < n; i++) {
        ids[i] = items[i].id;
        if (r->items[i]->content_case == IMGRET__V1__NEW_ITEM__CONTENT_IMAGE) {
            if (j->thumbs && j->thumbs[img])
                write_thumb(s, ids[i], j->thumbs[img], j->thumb_len[img]);
            img++;
        }
    }
    Imgret__V1__AddResponse resp = IMGRET__V1__ADD_RESPONSE__INIT;
    resp.n_ids = n;
    resp.ids = ids;
    resp.seq = n ? items[n - 1].seq : 0;
    pack_reply(j, &resp.base);
done:
    free(items);
    free(fc7);
    free(codes);
    free(ids);
}

static void run_remove(struct srv *s, srv_job_t *j) {
    Imgret__V1__RemoveRequest *r = (void *)j->req.msg;
    util_err_t err = {{0}};
    if (index_remove(s->ix, r->ids, r->n_ids, &err)) {
        job_fail(j, srv_code_of_kind(util_err_kind(&err)), "%s", err.msg);
        return;
    }
    atomic_fetch_sub(&s->items, (long long)r->n_ids);
    for (size_t i = 0; i < r->n_ids; i++) {
        char path[1200];
        thumb_path(s, r->ids[i], path, sizeof path);
        unlink(path);
    }
    Imgret__V1__RemoveResponse resp = IMGRET__V1__REMOVE_RESPONSE__INIT;
    resp.removed = (uint32_t)r->n_ids;
    pack_reply(j, &resp.base);
}

static void run_stats(struct srv *s, srv_job_t *j) {
    index_stats_t st;
    util_err_t err = {{0}};
    if (index_stats(s->ix, &st, &err)) {
        job_fail(j, SRV_INTERNAL, "%s", err.msg);
        return;
    }
    char k1[96], k2[96];
    char *kinds[2];
    size_t nk = 0;
    if (st.fc7_factory[0]) {
        snprintf(k1, sizeof k1, "fc7:%s", st.fc7_factory);
        kinds[nk++] = k1;
    }
    if (st.code_factory[0]) {
        snprintf(k2, sizeof k2, "code:%s", st.code_factory);
        kinds[nk++] = k2;
    }
    Imgret__V1__StatsResponse resp = IMGRET__V1__STATS_RESPONSE__INIT;
    resp.items = st.items;
    resp.n_index_kinds = nk;
    resp.index_kinds = kinds;
    resp.model_name = s->mf->spec.name;
    resp.model_hash = s->model_hash_hex;
    resp.fc7_dim = (uint32_t)s->fc7_dim;
    resp.code_bits = (uint32_t)s->code_bits;
    resp.uptime_seconds = util_now() - s->t_start;
    resp.n_class_names = (size_t)s->mf->n_classes;
    resp.class_names = s->mf->class_names;
    resp.requests = atomic_load(&s->requests);
    resp.version = "imgret 0.1";
    resp.store_seq = st.seq;
    resp.applied_seq = st.applied_seq;
    pack_reply(j, &resp.base);
}

/* ------------------------------------------------------------ thumbnails */

/* "PATH[N]" -> PATH and N; 0 when uri is not of that form. */
static int parse_item_name(const char *uri, char *path, size_t cap, size_t *index) {
    size_t n = strlen(uri);
    if (n < 4 || uri[n - 1] != ']') return 0;
    const char *open = strrchr(uri, '[');
    if (!open || open == uri || (size_t)(open - uri) >= cap) return 0;
    size_t v = 0;
    const char *p = open + 1;
    if (p == uri + n - 1) return 0;
    for (; p < uri + n - 1; p++) {
        if (*p < '0' || *p > '9' || v > (SIZE_MAX - 9) / 10) return 0;
        v = v * 10 + (size_t)(*p - '0');
    }
    memcpy(path, uri, (size_t)(open - uri));
    path[open - uri] = 0;
    *index = v;
    return 1;
}

/* Loads item `index` of the dataset whose images file is `path` (an IDX
 * file, as in imgret extract's uris "FILE.gz[i]"). Datasets are opened once
 * and cached; loads run under the cache lock so eviction never frees a
 * dataset in use. */
static data_image_t *load_dataset_item(struct srv *s, const char *path, size_t index,
                                       const data_decode_opts_t *o, util_err_t *err) {
    pthread_mutex_lock(&s->ds_lock);
    data_dataset_t *ds = NULL;
    for (int i = 0; i < SRV_DS_CACHE && !ds; i++)
        if (s->ds_cache[i].ds && !strcmp(s->ds_cache[i].path, path)) ds = s->ds_cache[i].ds;
    if (!ds) {
        char labels[1024];
        snprintf(labels, sizeof labels, "%s", path);
        char *at = strstr(labels, "images-idx3");
        if (!at) {
            util_fail(err, "%s is not an IDX images file", path);
        } else {
            memcpy(at, "labels-idx1", 11); /* train-images-idx3 -> train-labels-idx1 */
            ds = data_dataset_open_idx(path, labels, NULL, err);
        }
        if (ds) {
            srv_ds_cache_t *c = &s->ds_cache[s->ds_next];
            s->ds_next = (s->ds_next + 1) % SRV_DS_CACHE;
            data_dataset_free(c->ds);
            snprintf(c->path, sizeof c->path, "%s", path);
            c->ds = ds;
        }
    }
    data_image_t *im = ds ? data_dataset_load(ds, index, o, NULL, err) : NULL;
    pthread_mutex_unlock(&s->ds_lock);
    return im;
}

static int read_whole(const char *path, uint8_t **out, size_t *len) {
    util_err_t err;
    return data_read_file(path, 64u << 20, out, len, &err);
}

static void run_thumb(struct srv *s, srv_job_t *j) {
    char path[1200];
    thumb_path(s, j->thumb_id, path, sizeof path);
    struct stat st;
    if (stat(path, &st) == 0 && read_whole(path, &j->resp, &j->resp_len) == 0) {
        j->content_type = "image/jpeg";
        return;
    }
    store_record_t rec;
    util_err_t err = {{0}};
    if (index_get(s->ix, j->thumb_id, &rec, &err)) {
        job_fail(j, srv_code_of_kind(util_err_kind(&err)), "%s", err.msg);
        return;
    }
    const char *uri = rec.uri;
    if (!strncmp(uri, "file://", 7)) uri += 7;
    data_image_t *im = NULL;
    data_decode_opts_t o = {0, SRV_THUMB_SIDE, s->opt.max_pixels, 0}; /* upright */
    char file[1024];
    size_t index;
    if (uri[0] && stat(uri, &st) == 0 && S_ISREG(st.st_mode)) {
        im = data_image_read(uri, &o, &err);
    } else if (parse_item_name(uri, file, sizeof file, &index) && stat(file, &st) == 0) {
        im = load_dataset_item(s, file, index, &o, &err);
    } else {
        util_fail(&err, "its uri names no readable file or dataset item");
    }
    if (!im) {
        char m[600];
        snprintf(m, sizeof m, "no thumbnail for item %lld: %s", (long long)j->thumb_id, err.msg);
        job_fail(j, SRV_NOT_FOUND, "%s", m);
    } else if (thumbnail_jpeg(im, &j->resp, &j->resp_len, &err)) {
        job_fail(j, SRV_INTERNAL, "%s", err.msg);
    } else {
        j->content_type = "image/jpeg";
    }
    data_image_free(im);
    store_record_clear(&rec);
}

/* ------------------------------------------------------------------ run */

void srv_worker_run(srv_worker_t *w, srv_job_t **jobs, size_t n) {
    struct srv *s = w->s;
    forward_jobs(w, jobs, n);
    srv_job_t *searches[64];
    size_t ns = 0;
    for (size_t b = 0; b < n; b++) {
        srv_job_t *j = jobs[b];
        if (j->failed) continue;
        if (atomic_load(&j->abandoned)) {
            job_fail(j, SRV_DEADLINE_EXCEEDED, "%s", "abandoned");
            continue;
        }
        if (j->req.method == SRV_SEARCH && ns < sizeof searches / sizeof searches[0]) {
            searches[ns++] = j; /* together, after the others */
            continue;
        }
        switch (j->req.method) {
        case SRV_SEARCH:
            run_searches(w, &j, 1);
            break;
        case SRV_CLASSIFY:
            run_classify(s, j);
            break;
        case SRV_EXTRACT:
            run_extract(w, j);
            break;
        case SRV_ADD:
            run_add(w, j);
            break;
        case SRV_REMOVE:
            run_remove(s, j);
            break;
        case SRV_STATS:
            run_stats(s, j);
            break;
        case SRV_THUMB:
            run_thumb(s, j);
            break;
        default:
            job_fail(j, SRV_INTERNAL, "%s", "unknown job");
            break;
        }
    }
    if (ns) run_searches(w, searches, ns);
}
