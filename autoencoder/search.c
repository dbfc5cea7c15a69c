/* Hamming ranking (counting sort over the few possible distances), the
 * two-stage search, and ranking metrics. */
#include "autoencoder/autoencoder.h"
#include "autoencoder/internal.h"

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
    for (; i < bytes; i++)
        d += __builtin_popcount((unsigned)(a[i] ^ b[i]));
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
    for (int k = 1; k <= maxd + 1; k++)
        start[k] += start[k - 1];
    for (size_t i = 0; i < n; i++)
        order[start[d[i]]++] = (uint32_t)i;
    free(start);
    free(own);
    return 0;
}

/* Hamming distance over a fixed number of 64-bit words: with a constant
 * `words` the compiler unrolls it into loads, xors and popcounts. */
static inline int ham_words(const uint8_t *a, const uint8_t *b, int words) {
    int d = 0;
    for (int w = 0; w < words; w++) {
        uint64_t x, y;
        memcpy(&x, a + 8 * w, 8);
        memcpy(&y, b + 8 * w, 8);
        d += __builtin_popcountll(x ^ y);
    }
    return d;
}

static inline int ham_u32(const uint8_t *a, const uint8_t *b) {
    uint32_t x, y;
    memcpy(&x, a, 4);
    memcpy(&y, b, 4);
    return __builtin_popcount(x ^ y);
}

#define KNN_LOOP(DIST)                                                                             \
    for (size_t i = 0; i < n; i++) {                                                               \
        uint16_t di = (uint16_t)(DIST);                                                            \
        if (have < k || di < dist[k - 1])                                                          \
            have = topk_insert_u16(dist, ids, have, k, di, (uint32_t)i);                           \
    }

size_t ae_hamming_knn(const uint8_t *q, const uint8_t *db, size_t n, int bytes, size_t k,
                      uint32_t *ids, uint16_t *dist) {
    if (k > n) k = n;
    if (k == 0) return 0;
    /* Keep a sorted list of the best k (k is small: 10-100): an insertion
     * happens only for a distance below the current k-th. The common code
     * lengths get an unrolled distance. */
    size_t have = 0;
    switch (bytes) {
    case 4:
        KNN_LOOP(ham_u32(q, db + i * 4));
        break;
    case 8:
        KNN_LOOP(ham_words(q, db + i * 8, 1));
        break;
    case 16:
        KNN_LOOP(ham_words(q, db + i * 16, 2));
        break;
    case 32:
        KNN_LOOP(ham_words(q, db + i * 32, 4));
        break;
    default:
        KNN_LOOP(ae_hamming(q, db + i * (size_t)bytes, bytes));
        break;
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
        if (k > 0) have = topk_insert_u16(dist, ids, have, k, di, (uint32_t)i);
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
        for (int l = 0; l < AE_PR_POINTS; l++)
            pr[l] = best_at[l];
}

/* ------------------------------------------------------- hash table */

typedef struct slot {
    uint64_t key;
    uint32_t start, count; /* count 0: empty */
} slot_t;

struct ae_hash_table {
    int bits, bytes;
    size_t n;
    uint64_t *codes; /* by item id: the scan path's contiguous short codes */
    uint32_t *ids;   /* item ids sorted by code, then id */
    slot_t *slots;
    size_t mask;
};

static uint64_t code_u64(const uint8_t *c, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)c[i] << (8 * i);
    return v;
}

typedef struct keyed {
    uint64_t key;
    uint32_t id;
} keyed_t;

static int cmp_keyed(const void *a, const void *b) {
    const keyed_t *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

ae_hash_table_t *ae_hash_table_create(const uint8_t *codes, size_t n, int bits, util_err_t *err) {
    if (bits < 1 || bits > 64 || n > UINT32_MAX) {
        util_fail(err, "hash table: %d-bit codes for %zu items (at most 64 bits)", bits, n);
        return NULL;
    }
    ae_hash_table_t *t = calloc(1, sizeof *t);
    keyed_t *k = malloc((n ? n : 1) * sizeof *k);
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    if (t) {
        t->ids = malloc((n ? n : 1) * sizeof *t->ids);
        t->codes = malloc((n ? n : 1) * sizeof *t->codes);
        t->slots = calloc(cap, sizeof *t->slots);
    }
    if (!t || !k || !t->ids || !t->codes || !t->slots) {
        free(k);
        ae_hash_table_free(t);
        util_fail(err, "hash table: out of memory");
        return NULL;
    }
    t->bits = bits;
    t->bytes = ae_code_bytes(bits);
    t->mask = cap - 1;
    t->n = n;
    for (size_t i = 0; i < n; i++) {
        t->codes[i] = code_u64(codes + i * t->bytes, t->bytes);
        k[i] = (keyed_t){t->codes[i], (uint32_t)i};
    }
    qsort(k, n, sizeof *k, cmp_keyed);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && k[j].key == k[i].key)
            t->ids[j] = k[j].id, j++;
        size_t h = util_splitmix64(k[i].key) & t->mask;
        while (t->slots[h].count)
            h = (h + 1) & t->mask;
        t->slots[h] = (slot_t){k[i].key, (uint32_t)i, (uint32_t)(j - i)};
        i = j;
    }
    free(k);
    return t;
}

void ae_hash_table_free(ae_hash_table_t *t) {
    if (!t) return;
    free(t->ids);
    free(t->codes);
    free(t->slots);
    free(t);
}

typedef struct probe {
    const ae_hash_table_t *t;
    const uint8_t *q_long, *db_long;
    int long_bytes;
    size_t k, have, scanned;
    uint32_t *ids;
    uint16_t *dist;
} probe_t;

/* A shortlisted item: its long-code distance, into the best k (ties by id). */
static void consider(probe_t *p, uint32_t id) {
    uint16_t di = (uint16_t)(p->long_bytes == 32
                                 ? ham_words(p->q_long, p->db_long + (size_t)id * 32, 4)
                                 : ae_hamming(p->q_long, p->db_long + (size_t)id * p->long_bytes,
                                              p->long_bytes));
    if (p->k == 0) return;
    /* Ties by id: a later id with an equal distance goes after. */
    if (p->have == p->k &&
        (di > p->dist[p->k - 1] || (di == p->dist[p->k - 1] && id > p->ids[p->k - 1])))
        return;
    size_t pos = p->have < p->k ? p->have++ : p->k - 1;
    while (pos > 0 && (p->dist[pos - 1] > di || (p->dist[pos - 1] == di && p->ids[pos - 1] > id))) {
        p->dist[pos] = p->dist[pos - 1];
        p->ids[pos] = p->ids[pos - 1];
        pos--;
    }
    p->dist[pos] = di;
    p->ids[pos] = id;
}

static void visit(probe_t *p, uint64_t addr) {
    const ae_hash_table_t *t = p->t;
    size_t h = util_splitmix64(addr) & t->mask;
    while (t->slots[h].count && t->slots[h].key != addr)
        h = (h + 1) & t->mask;
    const slot_t *s = &t->slots[h];
    if (!s->count) return;
    p->scanned += s->count;
    for (uint32_t m = 0; m < s->count; m++)
        consider(p, t->ids[s->start + m]);
}

/* Every address that differs from addr in `left` more bits, all at
 * positions >= from. */
static void flips(probe_t *p, uint64_t addr, int from, int left) {
    visit(p, addr);
    if (left == 0) return;
    for (int b = from; b < p->t->bits; b++)
        flips(p, addr ^ ((uint64_t)1 << b), b + 1, left - 1);
}

/* Addresses within Hamming distance r of a `bits`-bit code (capped). */
static double ball_size(int bits, int r) {
    double total = 0, c = 1; /* C(bits, d) */
    for (int d = 0; d <= r && d <= bits; d++) {
        total += c;
        c = c * (bits - d) / (d + 1);
    }
    return total;
}

int ae_two_stage_scans(const ae_hash_table_t *t, int radius) {
    /* A lookup (hash, probe, a cache miss) costs about as much as scanning
     * 8 contiguous short codes: past that, one pass over the codes wins. */
    return ball_size(t->bits, radius < 0 ? 0 : radius) * 8.0 > (double)t->n;
}

size_t ae_two_stage_search_table(const ae_hash_table_t *t, const uint8_t *q_short,
                                 const uint8_t *q_long, const uint8_t *db_long, int long_bytes,
                                 int radius, size_t k, uint32_t *ids, size_t *scanned) {
    uint16_t dist_buf[1024];
    probe_t p = {t, q_long, db_long, long_bytes, k < 1024 ? k : 1024, 0, 0, ids, dist_buf};
    const uint64_t q = code_u64(q_short, t->bytes);
    if (radius < 0) radius = 0;
    if (ae_two_stage_scans(t, radius)) {
        /* Branch-free: the shortlist is gathered in blocks (an index is
         * always written, the count moves only when it is within the
         * radius), then re-ranked; a data-dependent branch per item would
         * mispredict on every shortlisted one. */
        const uint64_t *c = t->codes;
        uint32_t hit[512];
        for (size_t i0 = 0; i0 < t->n; i0 += 512) {
            const size_t i1 = t->n - i0 < 512 ? t->n : i0 + 512;
            size_t m = 0;
            for (size_t i = i0; i < i1; i++) {
                hit[m] = (uint32_t)i;
                m += __builtin_popcountll(c[i] ^ q) <= radius;
            }
            p.scanned += m;
            for (size_t j = 0; j < m; j++)
                consider(&p, hit[j]);
        }
    } else {
        flips(&p, q, 0, radius);
    }
    *scanned = p.scanned;
    return p.have;
}
