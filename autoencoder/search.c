/* Hamming ranking (counting sort over the few possible distances), the
 * two-stage search, and ranking metrics. */
#include "autoencoder/autoencoder.h"

#include <stdlib.h>
#include <string.h>

int ae_hamming(const uint8_t *a, const uint8_t *b, int bytes) {
    int d = 0, i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        d += __builtin_popcountll(x ^ y);
    }
    for (; i < bytes; i++) d += __builtin_popcount((unsigned)(a[i] ^ b[i]));
    return d;
}

int ae_hamming_rank(const uint8_t *q, const uint8_t *db, size_t n, int bytes, uint32_t *order,
                    uint16_t *dist) {
    int maxd = 8 * bytes;
    size_t *start = calloc((size_t)maxd + 2, sizeof *start);
    uint16_t *own = dist ? NULL : malloc(n * sizeof *own);
    uint16_t *d = dist ? dist : own;
    if (!start || !d) {
        free(start);
        free(own);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        d[i] = (uint16_t)ae_hamming(q, db + i * bytes, bytes);
        start[d[i] + 1]++;
    }
    for (int k = 1; k <= maxd + 1; k++) start[k] += start[k - 1];
    for (size_t i = 0; i < n; i++) order[start[d[i]]++] = (uint32_t)i;
    free(start);
    free(own);
    return 0;
}

size_t ae_hamming_knn(const uint8_t *q, const uint8_t *db, size_t n, int bytes, size_t k,
                      uint32_t *ids, uint16_t *dist) {
    if (k > n) k = n;
    if (k == 0) return 0;
    /* Keep a sorted list of the best k (k is small: 10-100): an insertion
     * happens only for a distance below the current k-th. */
    size_t have = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t di = (uint16_t)ae_hamming(q, db + i * bytes, bytes);
        if (have == k && di >= dist[k - 1]) continue;
        size_t pos = have < k ? have++ : k - 1;
        while (pos > 0 && dist[pos - 1] > di) {
            dist[pos] = dist[pos - 1];
            ids[pos] = ids[pos - 1];
            pos--;
        }
        dist[pos] = di;
        ids[pos] = (uint32_t)i;
    }
    return have;
}

size_t ae_two_stage_search(const uint8_t *q_short, const uint8_t *q_long, const uint8_t *db_short,
                           const uint8_t *db_long, size_t n, int short_bytes, int long_bytes,
                           int radius, size_t k, uint32_t *ids, size_t *scanned) {
    uint16_t *dist = malloc((k ? k : 1) * sizeof *dist);
    size_t have = 0, cand = 0;
    if (!dist) {
        *scanned = 0;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (ae_hamming(q_short, db_short + i * short_bytes, short_bytes) > radius) continue;
        cand++;
        uint16_t di = (uint16_t)ae_hamming(q_long, db_long + i * long_bytes, long_bytes);
        if (k == 0 || (have == k && di >= dist[k - 1])) continue;
        size_t pos = have < k ? have++ : k - 1;
        while (pos > 0 && dist[pos - 1] > di) {
            dist[pos] = dist[pos - 1];
            ids[pos] = ids[pos - 1];
            pos--;
        }
        dist[pos] = di;
        ids[pos] = (uint32_t)i;
    }
    free(dist);
    *scanned = cand;
    return have;
}

void ae_ranking_metrics(const uint32_t *order, size_t n, const int32_t *db_labels, int32_t qlabel,
                        size_t n_relevant, ae_query_metrics_t *m, double pr[AE_PR_POINTS]) {
    double ap = 0;
    size_t hits = 0, hits10 = 0, hits100 = 0;
    double best_at[AE_PR_POINTS] = {0};
    for (size_t r = 0; r < n; r++) {
        if (db_labels[order[r]] != qlabel) continue;
        hits++;
        double prec = (double)hits / (double)(r + 1);
        ap += prec;
        if (r < 10) hits10++;
        if (r < 100) hits100++;
        if (pr && n_relevant) {
            /* Precision at this recall counts for every level at or below it. */
            double recall = (double)hits / (double)n_relevant;
            for (int l = 0; l < AE_PR_POINTS; l++)
                if (recall + 1e-12 >= l / (double)(AE_PR_POINTS - 1) && prec > best_at[l])
                    best_at[l] = prec;
        }
    }
    m->ap = n_relevant ? ap / (double)n_relevant : 0.0;
    m->p10 = (double)hits10 / (double)(n < 10 ? (n ? n : 1) : 10);
    m->p100 = (double)hits100 / (double)(n < 100 ? (n ? n : 1) : 100);
    if (pr)
        for (int l = 0; l < AE_PR_POINTS; l++) pr[l] = best_at[l];
}
