/* imgret index build|add|remove|search|stats: the item store and its FAISS
 * indexes from the command line. Items come from a feature file (imgret
 * extract): its ids, labels, uris and FC7 rows. */
#include "cli/commands.h"
#include "features/features.h"
#include "index/index.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int usage(FILE *f) {
    fprintf(f,
            "usage: imgret index COMMAND --dir DIR [options]\n"
            "  build  --features F [--fc7 FACTORY] [--code FACTORY]  new index from a feature file\n"
            "  add    --features F        add a feature file's items (ids must be new)\n"
            "  remove ID...               remove items by id\n"
            "  search (--id ID | --features F --row N) [--k K]   top-k by FC7 (squared L2)\n"
            "  stats                      items, sequence numbers, indexes\n"
            "  FACTORY: Flat (default), IVF<n>,Flat, HNSW<M>; codes: BFlat, BHash<b>\n");
    return f == stdout ? 0 : 2;
}

static void log_line(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "index: %s\n", line);
}

/* Parses a whole decimal integer in [lo, hi]; 0 on success. */
static int parse_ll(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* Adds every row of a feature file, in batches (each one durable transaction). */
static int add_features(index_t *ix, const char *path, util_err_t *err) {
    feat_file_t *ff = feat_file_open(path, err);
    if (!ff) return -1;
    const size_t n = feat_file_count(ff), batch = 1024;
    const int dim = feat_file_dim(ff);
    const int store_dim = store_fc7_dim(index_store(ix));
    if (dim != store_dim) {
        feat_file_close(ff);
        return util_fail(err, "%s has %d-dimensional rows, the index's store holds %d", path, dim,
                         store_dim);
    }
    const float *rows = feat_file_rows(ff);
    store_item_t *items = calloc(batch, sizeof *items);
    int rc = items ? 0 : util_fail(err, "index: out of memory");
    for (size_t i0 = 0; rc == 0 && i0 < n; i0 += batch) {
        size_t m = n - i0 < batch ? n - i0 : batch;
        for (size_t j = 0; j < m; j++) {
            memset(&items[j], 0, sizeof items[j]);
            items[j].id = feat_file_id(ff, i0 + j);
            items[j].label = feat_file_label(ff, i0 + j);
            items[j].uri = feat_file_uri(ff, i0 + j);
            items[j].fc7 = rows + (i0 + j) * (size_t)dim;
        }
        if (index_add(ix, items, m, err)) rc = util_fail_prefix(err, "%s, rows %zu-%zu", path, i0, i0 + m - 1);
    }
    if (rc == 0) printf("added %zu items from %s\n", n, path);
    free(items);
    feat_file_close(ff);
    return rc;
}

static int search(index_t *ix, long long id, const char *features, long row, int k,
                  util_err_t *err) {
    index_hit_t *hits = calloc((size_t)k, sizeof *hits);
    if (!hits) return util_fail(err, "index: out of memory");
    int rc;
    if (id >= 0) {
        rc = index_search_id(ix, INDEX_FC7, id, k, hits, err);
    } else {
        feat_file_t *ff = feat_file_open(features, err);
        rc = ff ? 0 : -1;
        if (ff && (row < 0 || (size_t)row >= feat_file_count(ff)))
            rc = util_fail(err, "%s has %zu rows; row %ld does not exist", features,
                           feat_file_count(ff), row);
        if (rc == 0)
            rc = index_search_fc7(ix, feat_file_rows(ff) + (size_t)row * feat_file_dim(ff), 1,
                                  feat_file_dim(ff), k, hits, err);
        feat_file_close(ff);
    }
    for (int i = 0; rc == 0 && i < k && hits[i].id >= 0; i++) {
        store_record_t rec;
        memset(&rec, 0, sizeof rec);
        if (index_get(ix, hits[i].id, &rec, err)) {
            rc = -1;
            break;
        }
        printf("%2d  id %lld  distance %.4g  label %d  %s\n", i + 1, (long long)hits[i].id,
               (double)hits[i].distance, rec.label, rec.uri);
        store_record_clear(&rec);
    }
    free(hits);
    return rc;
}

int cmd_index(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help")) return usage(argc < 2 ? stderr : stdout);
    const char *cmd = argv[1], *dir = NULL, *features = NULL, *fc7 = NULL, *code = NULL;
    long long id = -1, row = -1, k = 10;
    int first_id = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            if (!first_id) first_id = i;
            continue;
        }
        if (i + 1 >= argc) return usage(stderr);
        const char *v = argv[++i];
        if (!strcmp(a, "--dir")) dir = v;
        else if (!strcmp(a, "--features")) features = v;
        else if (!strcmp(a, "--fc7")) fc7 = v;
        else if (!strcmp(a, "--code")) code = v;
        else if (!strcmp(a, "--id") || !strcmp(a, "--row") || !strcmp(a, "--k")) {
            long long *dst = a[2] == 'i' ? &id : a[2] == 'r' ? &row : &k;
            long long lo = a[2] == 'k' ? INT32_MIN : 0;
            if (parse_ll(v, lo, a[2] == 'k' ? INT32_MAX : INT64_MAX, dst)) {
                fprintf(stderr, "imgret index: %s '%s' is not %s\n", a, v,
                        a[2] == 'k' ? "a number" : "a non-negative integer");
                return 2;
            }
        } else return usage(stderr);
    }
    if (!dir) return usage(stderr);
    if (strcmp(cmd, "build") && strcmp(cmd, "add") && strcmp(cmd, "remove") &&
        strcmp(cmd, "search") && strcmp(cmd, "stats"))
        return usage(stderr);
    /* Only build creates an index: elsewhere a mistyped --dir must not become
     * a new empty store. */
    char db[4200];
    struct stat st;
    snprintf(db, sizeof db, "%s/items.db", dir);
    if (strcmp(cmd, "build") && stat(db, &st)) {
        fprintf(stderr, "imgret index: %s: no index there (no items.db); create one with "
                        "'imgret index build --dir %s --features FILE'\n",
                dir, dir);
        return 1;
    }
    index_options_t opt;
    index_options_default(&opt);
    opt.log = log_line;
    /* Elsewhere than build, NULL keeps what the index was built with. A new
     * index gets no code index unless asked (the features may have codes
     * that are only looked up). */
    opt.fc7_factory = fc7;
    opt.code_factory = code ? code : !strcmp(cmd, "build") ? "" : NULL;
    util_err_t err = {{0}};
    if (!strcmp(cmd, "build")) {
        if (!features) return usage(stderr);
        feat_file_t *ff = feat_file_open(features, &err);
        if (!ff) {
            fprintf(stderr, "imgret index: %s\n", err.msg);
            return 1;
        }
        opt.fc7_dim = feat_file_dim(ff);
        feat_file_close(ff);
    }
    index_t *ix = index_open(dir, &opt, &err);
    if (!ix) {
        fprintf(stderr, "imgret index: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (!strcmp(cmd, "build") || !strcmp(cmd, "add")) {
        rc = features ? add_features(ix, features, &err) : util_fail(&err, "--features is needed");
        if (rc == 0) rc = index_snapshot(ix, &err);
    } else if (!strcmp(cmd, "remove")) {
        /* Every id in one transaction: all are removed or none. */
        int64_t *ids = calloc((size_t)argc, sizeof *ids);
        size_t n = 0;
        if (!ids) rc = util_fail(&err, "remove: out of memory");
        else if (!first_id) rc = util_fail(&err, "remove: give the ids to remove");
        for (int i = first_id; rc == 0 && i > 0 && i < argc && argv[i][0] != '-'; i++) {
            long long rid;
            if (parse_ll(argv[i], 0, INT64_MAX, &rid))
                rc = util_fail(&err, "remove: '%s' is not an item id", argv[i]);
            else ids[n++] = rid;
        }
        if (rc == 0) rc = index_remove(ix, ids, n, &err);
        if (rc == 0) printf("removed %zu items\n", n);
        free(ids);
    } else if (!strcmp(cmd, "search")) {
        if (k < 1 || k > INDEX_MAX_K) rc = util_fail(&err, "search: k %lld is not in [1, %d]", k, INDEX_MAX_K);
        else if (id < 0 && (!features || row < 0)) rc = util_fail(&err, "search: give --id or --features and --row");
        else rc = search(ix, id, features, (long)row, (int)k, &err);
    } else if (!strcmp(cmd, "stats")) {
        index_stats_t s;
        rc = index_stats(ix, &s, &err);
        if (rc == 0)
            printf("items %lld, seq %lld, snapshot seq %lld, fc7 dim %d (%s, %lld vectors), code bits "
                   "%d (%s), opened from %s\n",
                   (long long)s.items, (long long)s.seq, (long long)s.snapshot_seq, s.fc7_dim,
                   s.fc7_factory[0] ? s.fc7_factory : "off", (long long)s.fc7_vectors, s.code_bits,
                   s.code_factory[0] ? s.code_factory : "off", s.opened_from);
    }
    if (rc) fprintf(stderr, "imgret index: %s\n", err.msg);
    index_free(ix);
    return rc ? 1 : 0;
}
