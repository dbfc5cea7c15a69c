/* The bounded work queue with dynamic batching: requests that need a
 * forward pass are gathered (up to a total number of network inputs, for at
 * most a latency budget) so concurrent callers share one batched forward. */
#include "server/server_internal.h"

#include <errno.h>
#include <time.h>

int srv_queue_init(srv_queue_t *q, size_t cap) {
    q->head = q->tail = NULL;
    q->len = 0;
    q->cap = cap ? cap : 1;
    q->closed = 0;
    if (pthread_mutex_init(&q->lock, NULL)) return -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&q->nonempty, &ca);
    pthread_condattr_destroy(&ca);
    if (rc) {
        pthread_mutex_destroy(&q->lock);
        return -1;
    }
    return 0;
}

void srv_queue_destroy(srv_queue_t *q) {
    pthread_cond_destroy(&q->nonempty);
    pthread_mutex_destroy(&q->lock);
}

int srv_queue_push(srv_queue_t *q, srv_qnode_t *n, util_err_t *err) {
    pthread_mutex_lock(&q->lock);
    if (q->closed || q->len >= q->cap) {
        int closed = q->closed;
        size_t cap = q->cap;
        pthread_mutex_unlock(&q->lock);
        if (closed) return util_fail_kind(err, UTIL_ERR_UNAVAILABLE, "the work queue is closed");
        return util_fail_kind(err, UTIL_ERR_LIMIT, "the work queue holds %zu jobs, its limit", cap);
    }
    n->next = NULL;
    if (q->tail)
        q->tail->next = n;
    else
        q->head = n;
    q->tail = n;
    q->len++;
    pthread_cond_signal(&q->nonempty);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

size_t srv_queue_len(srv_queue_t *q) {
    pthread_mutex_lock(&q->lock);
    size_t n = q->len;
    pthread_mutex_unlock(&q->lock);
    return n;
}

void srv_queue_close(srv_queue_t *q) {
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
    pthread_cond_broadcast(&q->nonempty);
    pthread_mutex_unlock(&q->lock);
}

static srv_qnode_t *take_head(srv_queue_t *q) {
    srv_qnode_t *n = q->head;
    q->head = n->next;
    if (!q->head) q->tail = NULL;
    q->len--;
    n->next = NULL;
    return n;
}

size_t srv_queue_pop_batch(srv_queue_t *q, int max_weight, double wait_s, srv_qnode_t **out,
                           size_t cap) {
    if (cap == 0) return 0;
    pthread_mutex_lock(&q->lock);
    while (!q->head && !q->closed)
        pthread_cond_wait(&q->nonempty, &q->lock);
    if (!q->head) {
        pthread_mutex_unlock(&q->lock);
        return 0;
    }
    size_t n = 0;
    srv_qnode_t *first = take_head(q);
    out[n++] = first;
    if (first->weight <= 0 || first->weight >= max_weight) {
        pthread_mutex_unlock(&q->lock);
        return n;
    }
    int total = first->weight;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    long long ns = (long long)(wait_s > 0 ? wait_s * 1e9 : 0);
    deadline.tv_sec += (time_t)(ns / 1000000000);
    deadline.tv_nsec += (long)(ns % 1000000000);
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    while (n < cap && total < max_weight) {
        if (q->head) {
            if (q->head->weight <= 0 || q->head->kind != first->kind ||
                total + q->head->weight > max_weight)
                break;
            total += q->head->weight;
            out[n++] = take_head(q);
            continue;
        }
        if (q->closed || wait_s <= 0) break;
        int rc = pthread_cond_timedwait(&q->nonempty, &q->lock, &deadline);
        if (rc == ETIMEDOUT && !q->head) break;
    }
    pthread_mutex_unlock(&q->lock);
    return n;
}
