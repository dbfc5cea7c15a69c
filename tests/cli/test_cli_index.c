/* `imgret index build|add|remove|search|stats` run as a user runs it: the
 * imgret binary (IMGRET_BIN, set by CMake) on feature files written through
 * the features API, checking exit codes, what it prints and what the store
 * then holds. */
#include "features/features.h"
#include "tests/cli/cli_run.h"
#include "tests/test.h"

#define DIM 16

/* Runs `imgret index` with the NULL-terminated arguments. */
static void run_index(run_result_t *r, ...) {
    va_list ap;
    va_start(ap, r);
    run_imgret_v(r, "index", ap);
    va_end(ap);
}

/* A deterministic value in [0, 10) for (id, j): rows of different ids are
 * far apart, so each item's nearest neighbour is itself alone. */
static float value_of(int64_t id, int j) {
    uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ull + (uint64_t)j * 0xBF58476D1CE4E5B9ull;
    x ^= x >> 31;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 29;
    return (float)(x % 10000) / 1000.0f;
}

/* A feature file of n rows of dim floats: id first_id + i, label i % 3,
 * uri img/<id>.jpg. */
static void write_features(const char *path, int dim, size_t n, int64_t first_id) {
    float *rows = malloc(sizeof(float) * n * (size_t)dim);
    int64_t *ids = malloc(sizeof(int64_t) * n);
    int32_t *labels = malloc(sizeof(int32_t) * n);
    char **uris = malloc(sizeof(char *) * n);
    for (size_t i = 0; i < n; i++) {
        ids[i] = first_id + (int64_t)i;
        labels[i] = (int32_t)(i % 3);
        uris[i] = malloc(64);
        snprintf(uris[i], 64, "img/%lld.jpg", (long long)ids[i]);
        for (int j = 0; j < dim; j++)
            rows[i * (size_t)dim + (size_t)j] = value_of(ids[i], j);
    }
    util_err_t err;
    feat_writer_t *w = feat_writer_open(path, dim, NULL, n, &err);
    if (!w || feat_writer_append(w, n, rows, ids, labels, (const char *const *)uris, &err) ||
        feat_writer_close(w, &err)) {
        fprintf(stderr, "cannot write %s: %s\n", path, err.msg);
        exit(2);
    }
    for (size_t i = 0; i < n; i++)
        free(uris[i]);
    free(uris);
    free(labels);
    free(ids);
    free(rows);
}

/* The first result line of a search: "1  id N  distance D ...". */
static int first_hit(const char *out, long long *id, double *dist) {
    const char *p = strstr(out, " 1  id ");
    return p && sscanf(p, " 1  id %lld  distance %lf", id, dist) == 2;
}

static long long stat_items(const char *dir) {
    run_result_t r;
    run_index(&r, "stats", "--dir", dir, NULL);
    long long n = -1;
    if (r.status == 0) sscanf(r.out, "items %lld", &n);
    return n;
}

static char dir[600], feats[600], more[600], narrow[600];

static void setup(void) {
    path_in(dir, sizeof dir, "ix");
    path_in(feats, sizeof feats, "feats.f");
    path_in(more, sizeof more, "more.f");
    path_in(narrow, sizeof narrow, "narrow.f");
    write_features(feats, DIM, 20, 100);
    write_features(more, DIM, 5, 200);
    write_features(narrow, 8, 3, 300);
}

static void test_build_then_search_finds_each_item_itself(void) {
    run_result_t r;
    run_index(&r, "build", "--dir", dir, "--features", feats, NULL);
    CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_MSG(strstr(r.out, "added 20 items"), "stdout: %s", r.out);
    CHECK(stat_items(dir) == 20);

    run_index(&r, "search", "--dir", dir, "--id", "105", "--k", "3", NULL);
    CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
    long long id = -1;
    double d = -1;
    CHECK_MSG(first_hit(r.out, &id, &d) && id == 105 && d == 0, "stdout: %s", r.out);
    CHECK_MSG(strstr(r.out, "label 2  img/105.jpg"), "stdout: %s", r.out);
    CHECK_MSG(strstr(r.out, " 3  id ") && !strstr(r.out, " 4  id "), "k=3: %s", r.out);

    /* By vector: row 7 of the feature file is item 107's vector. */
    run_index(&r, "search", "--dir", dir, "--features", feats, "--row", "7", NULL);
    CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_MSG(first_hit(r.out, &id, &d) && id == 107 && d == 0, "stdout: %s", r.out);
}

static void test_add_then_remove(void) {
    run_result_t r;
    run_index(&r, "add", "--dir", dir, "--features", more, NULL);
    CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_MSG(strstr(r.out, "added 5 items"), "stdout: %s", r.out);
    CHECK(stat_items(dir) == 25);
    long long id = -1;
    double d = -1;
    run_index(&r, "search", "--dir", dir, "--id", "202", NULL);
    CHECK_MSG(r.status == 0 && first_hit(r.out, &id, &d) && id == 202 && d == 0, "%s%s", r.out,
              r.err);

    run_index(&r, "remove", "--dir", dir, "105", "202", NULL);
    CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_MSG(strstr(r.out, "removed 2 items"), "stdout: %s", r.out);
    CHECK(stat_items(dir) == 23);
    /* Gone from the store and from the index: its own vector finds another. */
    run_index(&r, "search", "--dir", dir, "--id", "105", NULL);
    CHECK(r.status != 0);
    CHECK_MSG(strstr(r.err, "no item with id 105"), "stderr: %s", r.err);
    run_index(&r, "search", "--dir", dir, "--features", feats, "--row", "5", NULL);
    CHECK_MSG(r.status == 0 && first_hit(r.out, &id, &d) && id != 105 && d > 0, "%s%s", r.out,
              r.err);
    CHECK_MSG(!strstr(r.out, "id 105 "), "stdout: %s", r.out);
}

static void test_stats_reports_counts(void) {
    run_result_t r;
    run_index(&r, "stats", "--dir", dir, NULL);
    CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
    CHECK_MSG(strstr(r.out, "items 23,") && strstr(r.out, "fc7 dim 16 (Flat, 23 vectors)"),
              "stdout: %s", r.out);
}

/* An index built as HNSW stays HNSW when later commands name no factory
 * (it was silently reopened as Flat and rebuilt). */
static void test_commands_keep_the_built_factory(void) {
    char hdir[600];
    path_in(hdir, sizeof hdir, "hnsw");
    run_result_t r;
    run_index(&r, "build", "--dir", hdir, "--features", feats, "--fc7", "HNSW8", NULL);
    CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
    run_index(&r, "add", "--dir", hdir, "--features", more, NULL);
    CHECK_MSG(r.status == 0, "exit %d: %s", r.status, r.err);
    run_index(&r, "stats", "--dir", hdir, NULL);
    CHECK_MSG(r.status == 0 && strstr(r.out, "fc7 dim 16 (HNSW8, 25 vectors)") &&
                  strstr(r.out, "FC7: snapshot"),
              "stdout: %s stderr: %s", r.out, r.err);
}

static void test_unknown_id_fails_and_changes_nothing(void) {
    run_result_t r;
    /* One transaction: the known id 106 stays because 99999 is unknown. */
    run_index(&r, "remove", "--dir", dir, "106", "99999", NULL);
    CHECK(r.status == 1);
    CHECK_MSG(strstr(r.err, "no item with id 99999"), "stderr: %s", r.err);
    CHECK(stat_items(dir) == 23);
    run_index(&r, "search", "--dir", dir, "--id", "99999", NULL);
    CHECK(r.status == 1);
    CHECK_MSG(strstr(r.err, "no item with id 99999"), "stderr: %s", r.err);
    run_index(&r, "remove", "--dir", dir, "abc", NULL);
    CHECK(r.status == 1);
    CHECK_MSG(strstr(r.err, "'abc' is not an item id"), "stderr: %s", r.err);
    /* Re-adding ids the store holds fails as a whole. */
    run_index(&r, "add", "--dir", dir, "--features", feats, NULL);
    CHECK(r.status == 1);
    CHECK_MSG(strstr(r.err, "already exists"), "stderr: %s", r.err);
    CHECK(stat_items(dir) == 23);
}

static void test_missing_store_is_an_error_not_a_new_store(void) {
    char missing[700];
    snprintf(missing, sizeof missing, "%s/nowhere", tmp);
    run_result_t r;
    const char *cmds[][6] = {{"search", "--dir", missing, "--id", "1", NULL},
                             {"stats", "--dir", missing, NULL},
                             {"remove", "--dir", missing, "1", NULL},
                             {"add", "--dir", missing, "--features", more, NULL}};
    for (int i = 0; i < 4; i++) {
        run_index(&r, cmds[i][0], cmds[i][1], cmds[i][2], cmds[i][3], cmds[i][4], NULL);
        CHECK_MSG(r.status == 1, "%s: exit %d", cmds[i][0], r.status);
        CHECK_MSG(strstr(r.err, "no index") && strstr(r.err, missing), "%s: stderr: %s", cmds[i][0],
                  r.err);
    }
    struct stat st;
    CHECK_MSG(stat(missing, &st) != 0, "%s was created", missing);
    /* A feature file that is not there. */
    char nofile[700];
    snprintf(nofile, sizeof nofile, "%s/none.f", tmp);
    run_index(&r, "add", "--dir", dir, "--features", nofile, NULL);
    CHECK(r.status == 1);
    CHECK_MSG(strstr(r.err, nofile), "stderr: %s", r.err);
}

static void test_wrong_dimension_is_refused(void) {
    run_result_t r;
    run_index(&r, "add", "--dir", dir, "--features", narrow, NULL);
    CHECK(r.status == 1);
    CHECK_MSG(strstr(r.err, "8") && strstr(r.err, "16"), "stderr: %s", r.err);
    CHECK(stat_items(dir) == 23);
    run_index(&r, "search", "--dir", dir, "--features", narrow, "--row", "0", NULL);
    CHECK(r.status == 1);
    CHECK_MSG(strstr(r.err, "query has 8 dimensions, the FC7 index has 16"), "stderr: %s", r.err);
    run_index(&r, "search", "--dir", dir, "--features", feats, "--row", "20", NULL);
    CHECK(r.status == 1);
    CHECK_MSG(strstr(r.err, "row 20 does not exist"), "stderr: %s", r.err);
}

static void test_bad_arguments(void) {
    run_result_t r;
    run_index(&r, "search", "--dir", dir, "--id", "101", "--k", "0", NULL);
    CHECK(r.status == 2);
    CHECK_MSG(strstr(r.err, "--k: expected an integer 1..4096, got '0'"), "stderr: %s", r.err);
    run_index(&r, "search", "--dir", dir, "--id", "101", "--k", "ten", NULL);
    CHECK(r.status != 0);
    CHECK_MSG(strstr(r.err, "'ten'"), "stderr: %s", r.err);
    run_index(&r, "search", "--dir", dir, "--id", "x1", NULL);
    CHECK(r.status != 0);
    CHECK_MSG(strstr(r.err, "'x1'"), "stderr: %s", r.err);
    run_index(&r, "search", "--dir", dir, NULL);
    CHECK(r.status == 2);
    CHECK_MSG(strstr(r.err, "give --id or --features and --row"), "stderr: %s", r.err);
    run_index(&r, "frobnicate", "--dir", dir, NULL);
    CHECK(r.status == 2);
    CHECK_MSG(strstr(r.err, "unknown command 'frobnicate'") &&
                  strstr(r.err, "see imgret index --help"),
              "stderr: %s", r.err);
}

static const test_case_t tests[] = {
    T(test_build_then_search_finds_each_item_itself),
    T(test_add_then_remove),
    T(test_stats_reports_counts),
    T(test_commands_keep_the_built_factory),
    T(test_unknown_id_fails_and_changes_nothing),
    T(test_missing_store_is_an_error_not_a_new_store),
    T(test_wrong_dimension_is_refused),
    T(test_bad_arguments),
};

int main(int argc, char **argv) {
    if (make_tmp("cli-index")) return 2;
    setup();
    /* The cases build on each other (one index, changed step by step): run
     * them all, in order. */
    (void)argc;
    (void)argv;
    int rc = test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), 1, argv);
    rm_tree(tmp);
    return rc;
}
