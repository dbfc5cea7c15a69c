/* The bounded batching queue: capacity, FIFO order, batches by weight,
 * weight-0 jobs alone, the latency budget, and close. */
#include "server/server_internal.h"
#include "tests/test.h"

#include <pthread.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void test_push_refuses_beyond_capacity(void) {
    srv_queue_t q;
    CHECK(srv_queue_init(&q, 2) == 0);
    srv_qnode_t a = {0, 1, 0}, b = {0, 1, 0}, c = {0, 1, 0};
    CHECK(srv_queue_push(&q, &a, NULL) == 0);
    CHECK(srv_queue_push(&q, &b, NULL) == 0);
    util_err_t err = {{0}};
    CHECK(srv_queue_push(&q, &c, &err) == -1);
    CHECK(err.kind == UTIL_ERR_LIMIT);
    CHECK(srv_queue_len(&q) == 2);
    srv_qnode_t *out[4];
    CHECK(srv_queue_pop_batch(&q, 8, 0, out, 4) == 2);
    CHECK(out[0] == &a && out[1] == &b);
    CHECK(srv_queue_push(&q, &c, NULL) == 0); /* room again */
    CHECK(srv_queue_pop_batch(&q, 8, 0, out, 4) == 1 && out[0] == &c);
    srv_queue_destroy(&q);
}

static void test_batches_fill_up_to_max_weight_in_order(void) {
    srv_queue_t q;
    srv_queue_init(&q, 16);
    srv_qnode_t n[6] = {{0, 3, 0}, {0, 3, 0}, {0, 10, 0}, {0, 1, 0}, {0, 0, 0}, {0, 2, 0}};
    for (int i = 0; i < 6; i++)
        CHECK(srv_queue_push(&q, &n[i], NULL) == 0);
    srv_qnode_t *out[8];
    /* 3 + 3 fit in 8; the 10 does not: the batch closes before it. */
    CHECK(srv_queue_pop_batch(&q, 8, 0, out, 8) == 2);
    CHECK(out[0] == &n[0] && out[1] == &n[1]);
    /* A first job heavier than the limit goes alone. */
    CHECK(srv_queue_pop_batch(&q, 8, 0, out, 8) == 1 && out[0] == &n[2]);
    /* 1, then a weight-0 job at the head closes the batch. */
    CHECK(srv_queue_pop_batch(&q, 8, 0, out, 8) == 1 && out[0] == &n[3]);
    /* The weight-0 job alone. */
    CHECK(srv_queue_pop_batch(&q, 8, 0, out, 8) == 1 && out[0] == &n[4]);
    CHECK(srv_queue_pop_batch(&q, 8, 0, out, 8) == 1 && out[0] == &n[5]);
    CHECK(srv_queue_len(&q) == 0);
    srv_queue_destroy(&q);
}

static void test_kinds_do_not_share_a_batch(void) {
    srv_queue_t q;
    srv_queue_init(&q, 16);
    srv_qnode_t n[5] = {{0, 1, SRV_KIND_SEARCH},
                        {0, 1, SRV_KIND_SEARCH},
                        {0, 2, SRV_KIND_FORWARD},
                        {0, 1, SRV_KIND_SEARCH},
                        {0, 1, SRV_KIND_SEARCH}};
    for (int i = 0; i < 5; i++)
        srv_queue_push(&q, &n[i], NULL);
    srv_qnode_t *out[8];
    CHECK(srv_queue_pop_batch(&q, 32, 0, out, 8) == 2 && out[0] == &n[0] && out[1] == &n[1]);
    CHECK(srv_queue_pop_batch(&q, 32, 0, out, 8) == 1 && out[0] == &n[2]);
    CHECK(srv_queue_pop_batch(&q, 32, 0, out, 8) == 2 && out[0] == &n[3] && out[1] == &n[4]);
    srv_queue_destroy(&q);
}

static void test_cap_limits_nodes_per_batch(void) {
    srv_queue_t q;
    srv_queue_init(&q, 16);
    srv_qnode_t n[5] = {{0, 1, 0}, {0, 1, 0}, {0, 1, 0}, {0, 1, 0}, {0, 1, 0}};
    for (int i = 0; i < 5; i++)
        srv_queue_push(&q, &n[i], NULL);
    srv_qnode_t *out[3];
    CHECK(srv_queue_pop_batch(&q, 100, 0, out, 3) == 3);
    CHECK(srv_queue_pop_batch(&q, 100, 0, out, 3) == 2);
    srv_queue_destroy(&q);
}

typedef struct late_push {
    srv_queue_t *q;
    srv_qnode_t *n;
    double delay;
} late_push_t;

static void sleep_s(double s) {
    struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&t, NULL);
}

static void *push_later(void *arg) {
    late_push_t *p = arg;
    sleep_s(p->delay);
    srv_queue_push(p->q, p->n, NULL);
    return NULL;
}

static void test_batch_waits_for_company_within_budget(void) {
    srv_queue_t q;
    srv_queue_init(&q, 16);
    srv_qnode_t a = {0, 1, 0}, b = {0, 1, 0};
    srv_queue_push(&q, &a, NULL);
    late_push_t p = {&q, &b, 0.02};
    pthread_t t;
    pthread_create(&t, NULL, push_later, &p);
    srv_qnode_t *out[4];
    /* b arrives 20 ms later, inside a 2 s budget: one batch of two. */
    double t0 = now();
    size_t n = srv_queue_pop_batch(&q, 2, 2.0, out, 4);
    double dt = now() - t0;
    pthread_join(t, NULL);
    CHECK(n == 2 && out[0] == &a && out[1] == &b);
    CHECK_MSG(dt < 1.0, "returned after %.3f s: a full batch must not wait out the budget", dt);
    /* Alone, a job waits the budget (50 ms) and then goes. */
    srv_queue_push(&q, &a, NULL);
    t0 = now();
    n = srv_queue_pop_batch(&q, 8, 0.05, out, 4);
    dt = now() - t0;
    CHECK(n == 1);
    CHECK_MSG(dt >= 0.045 && dt < 1.0, "waited %.3f s", dt);
    srv_queue_destroy(&q);
}

static void *pop_one(void *arg) {
    srv_queue_t *q = arg;
    srv_qnode_t *out[2];
    return (void *)(size_t)srv_queue_pop_batch(q, 4, 0.01, out, 2);
}

static void test_close_wakes_workers_and_drains(void) {
    srv_queue_t q;
    srv_queue_init(&q, 4);
    pthread_t t;
    pthread_create(&t, NULL, pop_one, &q);
    sleep_s(0.02);
    srv_queue_close(&q);
    void *r;
    pthread_join(t, &r);
    CHECK((size_t)r == 0); /* woke up with nothing */
    srv_qnode_t a = {0, 1, 0};
    util_err_t err = {{0}};
    CHECK(srv_queue_push(&q, &a, &err) == -1); /* closed: refused */
    CHECK(err.kind == UTIL_ERR_UNAVAILABLE);
    srv_queue_destroy(&q);
    /* Jobs queued before close are still handed out. */
    srv_queue_init(&q, 4);
    srv_queue_push(&q, &a, NULL);
    srv_queue_close(&q);
    srv_qnode_t *out[2];
    CHECK(srv_queue_pop_batch(&q, 4, 1.0, out, 2) == 1);
    CHECK(srv_queue_pop_batch(&q, 4, 1.0, out, 2) == 0);
    srv_queue_destroy(&q);
}

TEST_MAIN(T(test_push_refuses_beyond_capacity), T(test_batches_fill_up_to_max_weight_in_order),
          T(test_kinds_do_not_share_a_batch), T(test_cap_limits_nodes_per_batch),
          T(test_batch_waits_for_company_within_budget), T(test_close_wakes_workers_and_drains))
