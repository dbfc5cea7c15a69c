/* Retrieval evaluation over whole rankings: Euclidean (blocked sgemm plus
 * a radix argsort) and Hamming (counting sort), queries in parallel. */
#include "autoencoder/autoencoder.h"
#include "autoencoder/internal.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#define QBLOCK 64

static void count_labels(const int32_t *db_labels, size_t ndb, size_t *per_label, int max_label) {
    memset(per_label, 0, (size_t)(max_label + 1) * sizeof *per_label);
    for (size_t i = 0; i < ndb; i++)
        if (db_labels[i] >= 0 && db_labels[i] <= max_label) per_label[db_labels[i]]++;
}

static int max_label_of(const int32_t *a, size_t n, const int32_t *b, size_t m) {
    int mx = 0;
    for (size_t i = 0; i < n; i++)
        mx = a[i] > mx ? a[i] : mx;
    for (size_t i = 0; i < m; i++)
        mx = b[i] > mx ? b[i] : mx;
    return mx;
}

/* Float keys to unsigned keys with the same order. */
static uint32_t float_key(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

/* Stable argsort of n float keys (two 16-bit LSD passes): ties keep index
 * order, as the Hamming ranking does. tmp: n keys + n ids scratch. */
static void radix_argsort(const float *d, size_t n, uint32_t *order, uint32_t *keys,
                          uint32_t *keys2, uint32_t *ids2, uint32_t *count) {
    for (size_t i = 0; i < n; i++)
        keys[i] = float_key(d[i]), order[i] = (uint32_t)i;
    for (int pass = 0; pass < 2; pass++) {
        int sh = 16 * pass;
        memset(count, 0, 65537 * sizeof *count);
        for (size_t i = 0; i < n; i++)
            count[((keys[i] >> sh) & 0xffff) + 1]++;
        for (int k = 1; k <= 65536; k++)
            count[k] += count[k - 1];
        for (size_t i = 0; i < n; i++) {
            uint32_t pos = count[(keys[i] >> sh) & 0xffff]++;
            keys2[pos] = keys[i];
            ids2[pos] = order[i];
        }
        memcpy(keys, keys2, n * sizeof *keys);
        memcpy(order, ids2, n * sizeof *order);
    }
}

static void add_metrics(ae_eval_result_t *out, const ae_query_metrics_t *m, const double *pr) {
    out->map += m->ap;
    out->p10 += m->p10;
    out->p100 += m->p100;
    for (int l = 0; l < AE_PR_POINTS; l++)
        out->pr[l] += pr[l];
}

static void finish(ae_eval_result_t *out, size_t nq) {
    out->map /= (double)nq;
    out->p10 /= (double)nq;
    out->p100 /= (double)nq;
    for (int l = 0; l < AE_PR_POINTS; l++)
        out->pr[l] /= (double)nq;
}

/* The start of an evaluation: *out zeroed, the sizes checked, and the
 * number of database items of each label (a query's relevant items), which
 * the caller frees. NULL, with err set, when there is nothing to evaluate
 * or no memory. */
static size_t *eval_begin(size_t nq, size_t ndb, const int32_t *q_labels, const int32_t *db_labels,
                          ae_eval_result_t *out, util_err_t *err) {
    memset(out, 0, sizeof *out);
    if (nq == 0 || ndb == 0 || ndb > UINT32_MAX) {
        util_fail(err, "eval: no queries or database");
        return NULL;
    }
    int ml = max_label_of(q_labels, nq, db_labels, ndb);
    size_t *per_label = malloc((size_t)(ml + 1) * sizeof *per_label);
    if (!per_label) {
        util_fail(err, "eval: out of memory");
        return NULL;
    }
    count_labels(db_labels, ndb, per_label, ml);
    return per_label;
}

int ae_eval_l2(const float *q, size_t nq, const float *db, size_t ndb, int dim,
               const int32_t *q_labels, const int32_t *db_labels, ae_eval_result_t *out,
               util_err_t *err) {
    size_t *per_label = eval_begin(nq, ndb, q_labels, db_labels, out, err);
    if (!per_label) return -1;
    float *dbn = malloc(ndb * sizeof(float));
    float *dots = malloc((size_t)QBLOCK * ndb * sizeof(float));
    if (!dbn || !dots) {
        free(per_label), free(dbn), free(dots);
        return util_fail(err, "eval: out of memory");
    }
    for (size_t i = 0; i < ndb; i++) {
        double s = 0;
        for (int j = 0; j < dim; j++)
            s += (double)db[i * dim + j] * db[i * dim + j];
        dbn[i] = (float)s;
    }
    int rc = 0;
    for (size_t s = 0; s < nq && rc == 0; s += QBLOCK) {
        int bn = (int)(nq - s < QBLOCK ? nq - s : QBLOCK);
        /* ||q - d||^2 ranks as ||d||^2 - 2 q.d (||q||^2 is the same for all d). */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bn, (int)ndb, dim, -2.0f, q + s * dim,
                    dim, db, dim, 0.0f, dots, (int)ndb);
        ae_eval_result_t part;
        memset(&part, 0, sizeof part);
#pragma omp parallel reduction(+ : rc)
        {
            uint32_t *order = malloc(ndb * 4), *k1 = malloc(ndb * 4), *k2 = malloc(ndb * 4),
                     *i2 = malloc(ndb * 4), *cnt = malloc(65537 * 4);
            ae_eval_result_t mine;
            memset(&mine, 0, sizeof mine);
            if (!order || !k1 || !k2 || !i2 || !cnt) rc += 1;
#pragma omp for schedule(dynamic)
            for (int b = 0; b < bn; b++) {
                if (!order || !k1 || !k2 || !i2 || !cnt) continue;
                float *d = dots + (size_t)b * ndb;
                for (size_t i = 0; i < ndb; i++)
                    d[i] += dbn[i];
                radix_argsort(d, ndb, order, k1, k2, i2, cnt);
                int32_t ql = q_labels[s + b];
                ae_query_metrics_t m;
                double pr[AE_PR_POINTS];
                ae_ranking_metrics(order, ndb, db_labels, ql, ql >= 0 ? per_label[ql] : 0, &m, pr);
                add_metrics(&mine, &m, pr);
            }
#pragma omp critical
            add_metrics(&part, &(ae_query_metrics_t){mine.map, mine.p10, mine.p100}, mine.pr);
            free(order), free(k1), free(k2), free(i2), free(cnt);
        }
        add_metrics(out, &(ae_query_metrics_t){part.map, part.p10, part.p100}, part.pr);
    }
    free(per_label), free(dbn), free(dots);
    if (rc) return util_fail(err, "eval: out of memory");
    finish(out, nq);
    return 0;
}

int ae_eval_hamming(const uint8_t *q, size_t nq, const uint8_t *db, size_t ndb, int bytes,
                    const int32_t *q_labels, const int32_t *db_labels, ae_eval_result_t *out,
                    util_err_t *err) {
    size_t *per_label = eval_begin(nq, ndb, q_labels, db_labels, out, err);
    if (!per_label) return -1;
    int rc = 0;
#pragma omp parallel reduction(+ : rc)
    {
        uint32_t *order = malloc(ndb * sizeof *order);
        uint16_t *dist = malloc(ndb * sizeof *dist);
        ae_eval_result_t mine;
        memset(&mine, 0, sizeof mine);
        if (!order || !dist) rc += 1;
#pragma omp for schedule(dynamic, 16)
        for (long i = 0; i < (long)nq; i++) {
            if (!order || !dist ||
                ae_hamming_rank(q + (size_t)i * bytes, db, ndb, bytes, order, dist)) {
                continue;
            }
            int32_t ql = q_labels[i];
            ae_query_metrics_t m;
            double pr[AE_PR_POINTS];
            ae_ranking_metrics(order, ndb, db_labels, ql, ql >= 0 ? per_label[ql] : 0, &m, pr);
            add_metrics(&mine, &m, pr);
        }
#pragma omp critical
        add_metrics(out, &(ae_query_metrics_t){mine.map, mine.p10, mine.p100}, mine.pr);
        free(order), free(dist);
    }
    free(per_label);
    if (rc) return util_fail(err, "eval: out of memory");
    finish(out, nq);
    return 0;
}

int ae_l2_knn(const float *q, size_t nq, const float *db, const float *db_norms, size_t ndb,
              int dim, size_t k, uint32_t *ids, util_err_t *err) {
    if (k == 0 || k > ndb) return util_fail(err, "knn: k %zu for %zu items", k, ndb);
    float *dots = malloc((size_t)QBLOCK * ndb * sizeof(float));
    if (!dots) return util_fail(err, "knn: out of memory");
    for (size_t s = 0; s < nq; s += QBLOCK) {
        int bn = (int)(nq - s < QBLOCK ? nq - s : QBLOCK);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bn, (int)ndb, dim, -2.0f, q + s * dim,
                    dim, db, dim, 0.0f, dots, (int)ndb);
#pragma omp parallel for schedule(dynamic)
        for (int b = 0; b < bn; b++) {
            const float *d = dots + (size_t)b * ndb;
            uint32_t *id = ids + (s + (size_t)b) * k;
            float best[1024];
            size_t have = 0, kk = k < 1024 ? k : 1024;
            for (size_t i = 0; i < ndb; i++)
                have = topk_insert_f32(best, id, have, kk, d[i] + db_norms[i], (uint32_t)i);
        }
    }
    free(dots);
    return 0;
}
