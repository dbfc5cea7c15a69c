/* kill -9 durability: a child process adds items (single ones and batches of
 * three) in a loop, snapshotting every few changes, and reports each
 * acknowledged add through a pipe; the parent kills it with SIGKILL at a
 * random moment, reopens the index and checks that every acknowledged item is
 * found by search, that each batch is all there or not at all, and that
 * everything present is whole (vectors as written, in both indexes). 25
 * rounds. */
#include "index/index.h"
#include "tests/index/index_fixture.h"
#include "tests/test.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#define D 16
#define CB 64
#define ROUNDS 25
#define MAX_ITEMS 100000

/* Item i's vectors are a function of i alone, so the parent can check them. */
static void item_vectors(int64_t id, float *fc7, uint8_t *code) {
    util_rng_t r;
    util_rng_seed(&r, (uint64_t)id * 7919 + 1);
    for (int j = 0; j < D; j++)
        fc7[j] = (float)id + util_rng_uniform(&r);
    for (int j = 0; j < CB / 8; j++)
        code[j] = (uint8_t)util_rng_u64(&r);
}

static void opts(index_options_t *o) {
    index_options_default(o);
    o->fc7_dim = D;
    o->code_bits = CB;
    o->snapshot_every = 7;
}

/* The child: adds ids start, start+1, ... and writes each acknowledged id to
 * fd. A batch of three is acknowledged as three ids after one commit. */
static void child(const char *dir, int fd, int64_t start) {
    index_options_t o;
    opts(&o);
    util_err_t err;
    index_t *ix = index_open(dir, &o, &err);
    if (!ix) _exit(3);
    float v[3][D];
    uint8_t c[3][CB / 8];
    for (int64_t id = start; id < start + MAX_ITEMS;) {
        int n = (id % 5 == 0) ? 3 : 1;
        store_item_t it[3];
        memset(it, 0, sizeof it);
        for (int j = 0; j < n; j++) {
            item_vectors(id + j, v[j], c[j]);
            it[j].id = id + j;
            it[j].fc7 = v[j];
            it[j].code = c[j];
            it[j].uri = "file:///durable.jpg";
            it[j].label = (int32_t)((id + j) % 1000);
        }
        if (index_add(ix, it, (size_t)n, &err)) _exit(4);
        int64_t ack[3] = {id, id + 1, id + 2};
        if (write(fd, ack, sizeof(int64_t) * (size_t)n) != (ssize_t)(sizeof(int64_t) * (size_t)n))
            _exit(5);
        id += n;
    }
    _exit(0);
}

typedef struct check_ctx {
    int64_t n, bad;
    int64_t first_bad;
} check_ctx_t;

static int check_item(void *ctx, const store_item_t *it, util_err_t *err) {
    (void)err;
    check_ctx_t *c = ctx;
    float v[D];
    uint8_t code[CB / 8];
    item_vectors(it->id, v, code);
    if (!it->fc7 || !it->code || memcmp(it->fc7, v, sizeof v) ||
        memcmp(it->code, code, sizeof code) || strcmp(it->uri, "file:///durable.jpg") ||
        it->label != (int32_t)(it->id % 1000)) {
        if (!c->bad++) c->first_bad = it->id;
    }
    c->n++;
    return 0;
}

static void test_acknowledged_adds_survive_sigkill(void) {
    char dir[256];
    fx_tmpdir(dir, sizeof dir, "durable");
    util_rng_t rng;
    util_rng_seed(&rng, (uint64_t)time(NULL));
    int64_t next = 0; /* first id the next child adds */
    int64_t *acked = malloc(sizeof(int64_t) * MAX_ITEMS);
    size_t nacked = 0;
    for (int round = 0; round < ROUNDS; round++) {
        int p[2];
        CHECK(pipe(p) == 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            child(dir, p[1], next);
        }
        close(p[1]);
        /* Odd rounds first wait (up to a minute) for one acknowledged add, so
         * that a slow, loaded machine still kills mid-storm at least once and
         * not only during the open. */
        if (round % 2 == 1) {
            struct pollfd pf = {p[0], POLLIN, 0};
            int64_t first;
            if (poll(&pf, 1, 60000) == 1 &&
                read(p[0], &first, sizeof first) == (ssize_t)sizeof first) {
                if (nacked < MAX_ITEMS) acked[nacked++] = first;
                if (first >= next) next = first + 1;
            }
        }
        /* Kill somewhere between opening (rebuild/replay included) and a few
         * dozen adds in. */
        struct timespec ts = {0, (long)(5 + util_rng_below(&rng, 120)) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "round %d: child ended on its own (status %d)", round, status);
        int64_t id;
        ssize_t got;
        while ((got = read(p[0], &id, sizeof id)) == (ssize_t)sizeof id) {
            if (nacked < MAX_ITEMS) acked[nacked++] = id;
            if (id >= next) next = id + 1;
        }
        close(p[0]);

        index_options_t o;
        opts(&o);
        util_err_t err;
        index_t *ix = index_open(dir, &o, &err);
        CHECK_MSG(ix != NULL, "round %d: reopen failed: %s", round, err.msg);
        if (!ix) break;
        /* Every acknowledged item is found by search, by both its vectors. */
        int missing = 0;
        for (size_t i = 0; i < nacked; i++) {
            float v[D];
            uint8_t c[CB / 8];
            item_vectors(acked[i], v, c);
            index_hit_t h[1], hc[1];
            if (index_search_fc7(ix, v, 1, D, 1, h, &err) || h[0].id != acked[i] ||
                index_search_code(ix, c, 1, CB / 8, 1, hc, &err) || hc[0].distance != 0)
                missing++;
        }
        CHECK_MSG(missing == 0, "round %d: %d of %zu acknowledged items not found", round, missing,
                  nacked);
        /* Whatever the store holds is whole, and both indexes hold exactly it. */
        check_ctx_t cc = {0, 0, -1};
        CHECK(store_scan(index_store(ix), check_item, &cc, NULL, &err) == 0);
        CHECK_MSG(cc.bad == 0, "round %d: %" PRId64 " damaged items (first %" PRId64 ")", round,
                  cc.bad, cc.first_bad);
        index_stats_t st;
        CHECK(index_stats(ix, &st, &err) == 0);
        CHECK_MSG(st.items == cc.n && st.fc7_vectors == cc.n && st.code_vectors == cc.n,
                  "round %d: store %" PRId64 ", FC7 index %" PRId64 ", code index %" PRId64, round,
                  cc.n, st.fc7_vectors, st.code_vectors);
        /* Batches (first id a multiple of 5) are all present or all absent. */
        for (int64_t b = 0; b < next; b += 5) {
            int present = 0;
            for (int j = 0; j < 3; j++) {
                store_record_t r;
                if (!index_get(ix, b + j, &r, &err)) present++;
                store_record_clear(&r);
            }
            CHECK_MSG(present == 0 || present == 3, "round %d: batch %" PRId64 " has %d of 3",
                      round, b, present);
        }
        /* The ids after the last present item were never acknowledged; the
         * next child starts past everything the store holds. */
        index_free(ix);
        /* Past any committed but unacknowledged batch, at a batch boundary. */
        next = (next + 3 + 4) / 5 * 5;
    }
    printf("  %zu acknowledged adds over %d kills\n", nacked, ROUNDS);
    CHECK(nacked > 0);
    free(acked);
    fx_rmdir(dir);
}

TEST_MAIN(T(test_acknowledged_adds_survive_sigkill))
