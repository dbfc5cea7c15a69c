/* imgret index build|add|remove|search|stats|copy: the item store and its
 * FAISS indexes from the command line. Items come from a feature file (imgret
 * extract): its ids, labels, uris and FC7 rows. The store is an index
 * folder's items.db (--dir) or a PostgreSQL database (--store URL). */
#include "cli/cli_args.h"
#include "cli/commands.h"
#include "features/features.h"
#include "index/index.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void log_line(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "index: %s\n", line);
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
        if (index_add(ix, items, m, err))
            rc = util_fail_prefix(err, "%s, rows %zu-%zu", path, i0, i0 + m - 1);
    }
    if (rc == 0) printf("added %zu items from %s\n", n, path);
    free(items);
    feat_file_close(ff);
    return rc;
}

static int search(index_t *ix, long id, const char *features, long row, int k, util_err_t *err) {
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

/* What the subcommands' options fill in. */
typedef struct index_args {
    const char *dir, *store, *features, *fc7, *code;
    long id, row;
    int k;
} index_args_t;

/* clang-format off */
#define OPT_DIR(A)                                                                                 \
    {.name = "--dir", .kind = CLI_STRING, .dst = &(A)->dir, .meta = "DIR",                         \
     .help = "the index folder (items.db and the FAISS snapshots);\n"                              \
             "with --store URL: the snapshots' folder (default: none)"}
#define OPT_STORE(A)                                                                               \
    {.name = "--store", .kind = CLI_STRING, .dst = &(A)->store, .meta = "URL",                     \
     .help = "the store in PostgreSQL: postgresql://[user@]host[:port]/db\n"                       \
             "(a folder here is the same as --dir)"}
#define OPT_FEATURES(A, HELP, REQUIRED)                                                            \
    {.name = "--features", .kind = CLI_STRING, .dst = &(A)->features, .meta = "F",                 \
     .help = (HELP), .required = (REQUIRED)}
/* clang-format on */
/* Elsewhere than build, a factory rebuilds that index with it; without one
 * the index keeps what it was built with. */
#define OPT_FACTORIES(A)                                                                           \
    CLI_OPT_STRING("--fc7", &(A)->fc7, "FACTORY",                                                  \
                   "FAISS factory of the FC7 index: Flat (build's default),\n"                     \
                   "IVF<n>,Flat, HNSW<M> (default: what the index was built with)"),               \
        CLI_OPT_STRING("--code", &(A)->code, "FACTORY",                                            \
                       "of the code index: BFlat, BHash<b> (build's default: none)")

/* The work of every subcommand once its options are read: opens the index
 * in a->dir (only build creates one) and runs cmd. ids: remove's. */
static int index_run(const char *cmd, const index_args_t *a, int n_ids, char **ids) {
    const int remote = store_is_database_url(a->store);
    const char *dir = a->store ? a->store : a->dir, *features = a->features;
    if (!dir || (a->store && !remote && a->dir)) {
        fprintf(stderr,
                "imgret index %s: give --dir DIR or --store URL (see imgret index %s "
                "--help)\n",
                cmd, cmd);
        return 2;
    }
    /* Only build creates an index: elsewhere a mistyped --dir must not become
     * a new empty store. */
    char *db = cli_strdupf("%s/items.db", dir);
    struct stat st;
    if (!db) {
        fprintf(stderr, "imgret index: out of memory\n");
        return 1;
    }
    int missing = !remote && strcmp(cmd, "build") && stat(db, &st);
    free(db);
    if (missing) {
        fprintf(stderr,
                "imgret index: %s: no index there (no items.db); create one with "
                "'imgret index build --dir %s --features FILE'\n",
                dir, dir);
        return 1;
    }
    index_options_t opt;
    index_options_default(&opt);
    opt.log = log_line;
    if (remote) opt.snapshot_dir = a->dir;
    /* Elsewhere than build, NULL keeps what the index was built with. A new
     * index gets no code index unless asked (the features may have codes
     * that are only looked up). */
    opt.fc7_factory = a->fc7;
    opt.code_factory = a->code ? a->code : !strcmp(cmd, "build") ? "" : NULL;
    util_err_t err = {{0}};
    if (!strcmp(cmd, "build")) {
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
        rc = add_features(ix, features, &err);
        if (rc == 0) rc = index_snapshot(ix, &err);
    } else if (!strcmp(cmd, "remove")) {
        /* Every id in one transaction: all are removed or none. */
        int64_t *idv = calloc((size_t)n_ids + 1, sizeof *idv);
        size_t n = 0;
        if (!idv) rc = util_fail(&err, "remove: out of memory");
        for (int i = 0; rc == 0 && i < n_ids; i++) {
            long long rid;
            if (cli_parse_ll(ids[i], 0, INT64_MAX, &rid))
                rc = util_fail(&err, "remove: '%s' is not an item id", ids[i]);
            else
                idv[n++] = rid;
        }
        if (rc == 0) rc = index_remove(ix, idv, n, &err);
        if (rc == 0) printf("removed %zu items\n", n);
        free(idv);
    } else if (!strcmp(cmd, "search")) {
        rc = search(ix, a->id, features, a->row, a->k, &err);
    } else if (!strcmp(cmd, "stats")) {
        index_stats_t s;
        rc = index_stats(ix, &s, &err);
        if (rc == 0)
            printf(
                "items %lld, seq %lld, snapshot seq %lld, fc7 dim %d (%s, %lld vectors), code bits "
                "%d (%s), opened from %s\n",
                (long long)s.items, (long long)s.seq, (long long)s.snapshot_seq, s.fc7_dim,
                s.fc7_factory[0] ? s.fc7_factory : "off", (long long)s.fc7_vectors, s.code_bits,
                s.code_factory[0] ? s.code_factory : "off", s.opened_from);
    }
    if (rc) fprintf(stderr, "imgret index: %s\n", err.msg);
    index_free(ix);
    return rc ? 1 : 0;
}

/* clang-format off */
#define SPEC(CMD, SYNOPSIS, ABOUT, OPTS)                                                           \
    {.command = "index " CMD, .synopsis = (SYNOPSIS), .about = (ABOUT), .opts = (OPTS),            \
     .n_opts = (int)(sizeof(OPTS) / sizeof(OPTS)[0])}
/* clang-format on */

static int sub_build(int argc, char **argv) {
    index_args_t a = {0};
    const cli_opt_t opts[] = {OPT_DIR(&a), OPT_STORE(&a),
                              OPT_FEATURES(&a, "the feature file (imgret extract)", 1),
                              OPT_FACTORIES(&a)};
    const cli_spec_t cli =
        SPEC("build", "(--dir DIR | --store URL) --features F [--fc7 FACTORY] [--code FACTORY]",
             "A new index from a feature file's ids, labels, uris and rows.", opts);
    int go = cli_parse(&cli, argc, argv, NULL);
    return go != CLI_GO ? go : index_run("build", &a, 0, NULL);
}

static int sub_add(int argc, char **argv) {
    index_args_t a = {0};
    const cli_opt_t opts[] = {OPT_DIR(&a), OPT_STORE(&a),
                              OPT_FEATURES(&a, "the feature file (ids must be new)", 1),
                              OPT_FACTORIES(&a)};
    const cli_spec_t cli = SPEC("add", "(--dir DIR | --store URL) --features F",
                                "Adds a feature file's items, in durable batches.", opts);
    int go = cli_parse(&cli, argc, argv, NULL);
    return go != CLI_GO ? go : index_run("add", &a, 0, NULL);
}

static int sub_remove(int argc, char **argv) {
    index_args_t a = {0};
    int n = 0;
    const cli_opt_t opts[] = {OPT_DIR(&a), OPT_STORE(&a), OPT_FACTORIES(&a)};
    cli_spec_t cli = SPEC("remove", "(--dir DIR | --store URL) ID...",
                          "Removes items by id, all in one transaction (all or none).", opts);
    cli.args = "ID...";
    cli.min_args = 1;
    cli.max_args = -1;
    int go = cli_parse(&cli, argc, argv, &n);
    return go != CLI_GO ? go : index_run("remove", &a, n, argv + 1);
}

static int sub_search(int argc, char **argv) {
    index_args_t a = {.id = -1, .row = -1, .k = 10};
    const cli_opt_t opts[] = {
        OPT_DIR(&a),
        OPT_STORE(&a),
        CLI_OPT_LONG("--id", &a.id, 0, LONG_MAX, "ID", "search with a stored item's FC7"),
        OPT_FEATURES(&a, "with --row: search with a row of this feature file", 0),
        CLI_OPT_LONG("--row", &a.row, 0, LONG_MAX, "N", "the row of --features (0 first)"),
        CLI_OPT_INT("--k", &a.k, 1, INDEX_MAX_K, "K", "results (default 10)"),
        OPT_FACTORIES(&a),
    };
    const cli_spec_t cli =
        SPEC("search", "(--dir DIR | --store URL) (--id ID | --features F --row N) [--k K]",
             "The top-k items by FC7 (squared L2 distance).", opts);
    int go = cli_parse(&cli, argc, argv, NULL);
    if (go != CLI_GO) return go;
    const int by_id = a.id >= 0, by_row = a.features || a.row >= 0;
    if (by_id == by_row || (by_row && (!a.features || a.row < 0)))
        return cli_usage_error(&cli, "give --id or --features and --row");
    return index_run("search", &a, 0, NULL);
}

static int sub_stats(int argc, char **argv) {
    index_args_t a = {0};
    const cli_opt_t opts[] = {OPT_DIR(&a), OPT_STORE(&a), OPT_FACTORIES(&a)};
    const cli_spec_t cli = SPEC("stats", "(--dir DIR | --store URL)",
                                "Items, sequence numbers and the indexes.", opts);
    int go = cli_parse(&cli, argc, argv, NULL);
    return go != CLI_GO ? go : index_run("stats", &a, 0, NULL);
}

/* A store as `copy` names it: an index folder (its items.db; the folder is
 * created for the target) or a database URL. */
static store_t *copy_open(const char *where, int create, int fc7_dim, int code_bits,
                          util_err_t *err) {
    if (store_is_database_url(where)) return store_open(where, fc7_dim, code_bits, err);
    if (create && mkdir(where, 0777) && errno != EEXIST) {
        util_fail(err, "%s: cannot create the folder: %s", where, strerror(errno));
        return NULL;
    }
    char *db = cli_strdupf("%s/items.db", where);
    struct stat st;
    store_t *s = NULL;
    if (!db)
        util_fail(err, "out of memory");
    else if (!create && stat(db, &st))
        util_fail(err, "%s: no index there (no items.db)", where);
    else
        s = store_open(db, fc7_dim, code_bits, err);
    free(db);
    return s;
}

static int sub_copy(int argc, char **argv) {
    const char *from = NULL, *to = NULL;
    const cli_opt_t opts[] = {
        {.name = "--from",
         .kind = CLI_STRING,
         .dst = &from,
         .meta = "DIR|URL",
         .help = "the store to copy: an index folder or a postgresql:// URL",
         .required = 1},
        {.name = "--to",
         .kind = CLI_STRING,
         .dst = &to,
         .meta = "DIR|URL",
         .help = "an empty (or new) store of the other backend, or the same",
         .required = 1},
    };
    const cli_spec_t cli =
        SPEC("copy", "--from DIR|URL --to DIR|URL",
             "Copies every item (same ids, labels, uris, vectors, codes) and the index\n"
             "settings from one store to another, e.g. SQLite to PostgreSQL, then checks\n"
             "both counts. The target's FAISS snapshots are built at its first open.",
             opts);
    int go = cli_parse(&cli, argc, argv, NULL);
    if (go != CLI_GO) return go;
    util_err_t err = {{0}};
    int64_t copied = 0;
    store_t *src = copy_open(from, 0, 0, 0, &err), *dst = NULL;
    if (src) dst = copy_open(to, 1, store_fc7_dim(src), store_code_bits(src), &err);
    int rc = src && dst ? store_copy(src, dst, &copied, &err) : -1;
    char a[1024], b[1024];
    store_redact_url(from, a, sizeof a);
    store_redact_url(to, b, sizeof b);
    if (rc == 0)
        printf("copied %lld items from %s to %s (both hold %lld)\n", (long long)copied, a, b,
               (long long)copied);
    else
        fprintf(stderr, "imgret index copy: %s\n", err.msg);
    store_free(dst);
    store_free(src);
    return rc ? 1 : 0;
}

static const cli_command_t subcommands[] = {
    {"build", "a new index from a feature file", sub_build},
    {"add", "add a feature file's items (ids must be new)", sub_add},
    {"remove", "remove items by id", sub_remove},
    {"search", "top-k by FC7 (squared L2) of a stored item or a feature row", sub_search},
    {"stats", "items, sequence numbers, indexes", sub_stats},
    {"copy", "copy a store to another (SQLite <-> PostgreSQL)", sub_copy},
};

int cmd_index(int argc, char **argv) {
    return cli_dispatch("index",
                        "The item store and its FAISS indexes. Items come from a feature file\n"
                        "(imgret extract): its ids, labels, uris and FC7 rows.",
                        subcommands, sizeof subcommands / sizeof subcommands[0], argc, argv);
}
