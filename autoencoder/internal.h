/* Private to autoencoder/: shared between its files, never included from
 * outside. */
#ifndef IMGRET_AUTOENCODER_INTERNAL_H
#define IMGRET_AUTOENCODER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* The best k of a stream of (distance, id), kept sorted ascending in
 * dist/ids (have entries, at most k > 0): (d, id) goes in when it beats the
 * current k-th. Returns the new count. Ties by arrival: among equal
 * distances the one inserted first stays first, so a scan in index order
 * ranks ties by index. The same body for each distance type. */
#define TOPK_INSERT(name, dist_t)                                                                  \
    static inline size_t name(dist_t *dist, uint32_t *ids, size_t have, size_t k, dist_t d,        \
                              uint32_t id) {                                                       \
        if (have == k && d >= dist[k - 1]) return have;                                            \
        size_t pos = have < k ? have++ : k - 1;                                                    \
        while (pos > 0 && dist[pos - 1] > d) {                                                     \
            dist[pos] = dist[pos - 1];                                                             \
            ids[pos] = ids[pos - 1];                                                               \
            pos--;                                                                                 \
        }                                                                                          \
        dist[pos] = d;                                                                             \
        ids[pos] = id;                                                                             \
        return have;                                                                               \
    }

TOPK_INSERT(topk_insert_u16, uint16_t) /* Hamming distances */
TOPK_INSERT(topk_insert_f32, float)    /* squared Euclidean distances */

#undef TOPK_INSERT

#endif
