/* imgret demo: the main job, end to end, on the built-in default. Trains the
 * small AlexNet on Fashion-MNIST with the quick recipe, extracts FC7 for the
 * 60,000 training images, trains the 64-bit autoencoder, fills the item store
 * and its Euclidean and Hamming indexes, and starts the server.
 *
 * Every stage leaves its output in the demo folder and is skipped when that
 * output is complete, so a second run starts serving within seconds. The
 * long stages run as child processes (`imgret train`, `extract`,
 * `ae-train`): Ctrl-C reaches the child, which checkpoints (train), keeps its
 * committed rows (extract) or writes nothing (ae-train); the demo then stops
 * and a rerun resumes. The index stage adds items in durable chunks and
 * resumes after the last one. No stage leaves a half-written file: every
 * output is written atomically (util_atomic_open: temporary file, fsync,
 * rename). */
#include "autoencoder/autoencoder.h"
#include "cli/cli_args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "data/data.h"
#include "features/features.h"
#include "index/index.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define DEMO_STAGES 5
#define INDEX_CHUNK 2000

static volatile sig_atomic_t demo_interrupted;

static void on_sigint(int sig) {
    (void)sig;
    demo_interrupted = 1;
}

typedef struct demo {
    const char *dir;
    char model[4096], ckpt[4096], feat[4096], ae[4096], store[4096], examples[4096];
    char self[4096];
    long limit;     /* training images (0: all 60,000) */
    long val_limit; /* validation images during training (0: all 10,000) */
    int epochs;     /* quick recipe epochs */
    int ae_epochs;
    int threads;
    const char *device; /* --device for training, extraction and serving (NULL: cpu) */
} demo_t;

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void stage(int i, const char *what) {
    fprintf(stderr, "\n== stage %d/%d: %s\n", i, DEMO_STAGES, what);
}

/* Runs `imgret ARGS...` as a child and waits. While it runs the demo ignores
 * SIGINT (the terminal sends it to the child too, which stops cleanly).
 * Returns the child's exit status, or 128 + signal. */
static int run_child(const demo_t *d, char **argv) {
    fprintf(stderr, "   $ imgret");
    for (int i = 1; argv[i]; i++)
        fprintf(stderr, " %s", argv[i]);
    fputc('\n', stderr);
    argv[0] = "imgret";
    struct sigaction ign = {0}, old_int, old_term;
    ign.sa_handler = SIG_IGN;
    sigaction(SIGINT, &ign, &old_int);
    sigaction(SIGTERM, &ign, &old_term);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t dfl;
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGTERM);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawn(&pid, d->self, NULL, &attr, argv, environ);
    posix_spawnattr_destroy(&attr);
    int status = 0;
    if (rc == 0) {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (rc != 0) {
        fprintf(stderr, "imgret demo: cannot start %s: %s\n", d->self, strerror(rc));
        return 1;
    }
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static int stop_here(int stage_no, int rc) {
    fprintf(stderr,
            "\nimgret demo: stopped in stage %d/%d (exit status %d). Everything finished so far "
            "is kept; run `imgret demo` again to resume.\n",
            stage_no, DEMO_STAGES, rc);
    return rc ? rc : 1;
}

/* ---------------------------------------------------------------- stages */

static int stage_train(demo_t *d) {
    stage(1, "train the small AlexNet on Fashion-MNIST (quick recipe)");
    if (file_exists(d->model)) {
        fprintf(stderr, "   reusing %s\n", d->model);
        return 0;
    }
    char epochs[32], limit[32];
    snprintf(epochs, sizeof epochs, "%d", d->epochs);
    snprintf(limit, sizeof limit, "%ld", d->limit);
    /* The quick recipe (docs/training.md): He initialisation with zero biases,
     * a small classifier init and inputs scaled by 1/64; lr 0.03 reached by a
     * linear warm-up over the first fifth of an epoch, then decayed linearly
     * to 0 by the last step; no dropout (it slows a 3-epoch run down more
     * than it regularises it). */
    char *argv[40] = {0};
    int n = 1;
    const char *fixed[] = {
        "train",    "--epochs",   epochs, "--schedule",  "linear", "--warmup",
        "0.2",      "--lr",       "0.03", "--dropout",   "0",      "--init",
        "he",       "--last-std", "0.01", "--bias-init", "zero",   "--input-scale",
        "0.015625", "--seed",     "1",    "-o",          d->model};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        argv[n++] = (char *)fixed[i];
    if (d->limit > 0) {
        argv[n++] = "--limit";
        argv[n++] = limit;
    }
    char val_limit[32];
    snprintf(val_limit, sizeof val_limit, "%ld", d->val_limit);
    if (d->val_limit > 0) {
        argv[n++] = "--val-limit";
        argv[n++] = val_limit;
    }
    if (file_exists(d->ckpt)) {
        fprintf(stderr, "   resuming from %s\n", d->ckpt);
        argv[n++] = "--resume";
        argv[n++] = d->ckpt;
    }
    if (d->device) {
        argv[n++] = "--device";
        argv[n++] = (char *)d->device;
    }
    int rc = run_child(d, argv);
    if (rc != 0 || !file_exists(d->model)) return stop_here(1, rc);
    return 0;
}

/* Rows in a complete feature file, or -1 when it is missing or unreadable. */
static long feature_rows(const char *path) {
    if (!file_exists(path)) return -1;
    util_err_t err = {{0}};
    feat_file_t *f = feat_file_open(path, &err);
    if (!f) return -1;
    long n = (long)feat_file_count(f);
    feat_file_close(f);
    return n;
}

static int stage_extract(demo_t *d) {
    stage(2, "extract FC7 (4096-d) of the training images");
    long want = d->limit > 0 && d->limit < 60000 ? d->limit : 60000;
    if (feature_rows(d->feat) == want) {
        fprintf(stderr, "   reusing %s (%ld rows)\n", d->feat, want);
        return 0;
    }
    char limit[32], threads[32];
    snprintf(limit, sizeof limit, "%ld", want);
    snprintf(threads, sizeof threads, "%d", d->threads);
    char *argv[] = {NULL,      "extract", "--model", d->model, "--data",    "fashion-mnist",
                    "--limit", limit,     "-o",      d->feat,  "--threads", threads,
                    NULL,      NULL,      NULL};
    if (d->device) {
        argv[12] = "--device";
        argv[13] = (char *)d->device;
    }
    int rc = run_child(d, argv);
    if (rc != 0 || feature_rows(d->feat) != want) return stop_here(2, rc);
    return 0;
}

static int stage_ae(demo_t *d) {
    stage(3, "train the 64-bit autoencoder on FC7");
    if (file_exists(d->ae)) {
        fprintf(stderr, "   reusing %s\n", d->ae);
        return 0;
    }
    char epochs[32], ramp[32];
    snprintf(epochs, sizeof epochs, "%d", d->ae_epochs);
    snprintf(ramp, sizeof ramp, "%d", d->ae_epochs > 2 ? d->ae_epochs - 2 : 1);
    /* ae-train's defaults are the recipe of docs/retrieval.md (L2-normalised
     * FC7, one scale, a balance term, the first 10,000 rows, the epoch whose
     * codes rank held-out training rows best); the demo sets the epochs. */
    char *argv[] = {NULL, "ae-train", "--features", d->feat,        "-o", d->ae, "--bits",
                    "64", "--epochs", epochs,       "--noise-ramp", ramp, NULL};
    int rc = run_child(d, argv);
    if (rc != 0 || !file_exists(d->ae)) return stop_here(3, rc);
    return 0;
}

static void index_log(void *ctx, const char *line) {
    (void)ctx;
    fprintf(stderr, "   index: %s\n", line);
}

static void bar(const char *what, size_t done, size_t total, double t0) {
    static cli_progress_t progress;
    double now = util_now();
    progress.tty = isatty(2);
    if (!cli_progress_due(&progress, now, done >= total)) return;
    double rate = now > t0 ? (double)done / (now - t0) : 0;
    if (progress.tty) {
        char b[CLI_PROGRESS_BAR + 1];
        cli_progress_bar(b, done, total);
        fprintf(stderr, "\r %s [%s] %zu/%zu  %.0f items/s ", what, b, done, total, rate);
        if (done == total) fputc('\n', stderr);
    } else {
        fprintf(stderr, "%s %zu/%zu %.0f items/s\n", what, done, total, rate);
    }
}

/* Fills the store with every feature row (FC7, 64-bit code, uri, label) in
 * durable chunks; a rerun continues after the last chunk the store holds. */
static int stage_index(demo_t *d) {
    stage(4, "fill the item store and build the Euclidean and Hamming indexes");
    util_err_t err = {{0}};
    feat_file_t *f = feat_file_open(d->feat, &err);
    ae_t *ae = f ? ae_load(d->ae, &err) : NULL;
    index_t *ix = NULL;
    float *fc7 = NULL;
    uint8_t *codes = NULL;
    store_item_t *items = NULL;
    int rc = -1;
    if (!ae) goto out;
    const int dim = feat_file_dim(f), bits = ae_bits(ae), cb = ae_code_bytes(bits);
    if (ae_in_dim(ae) != dim) {
        util_fail(&err, "the autoencoder takes %d-d input, the features are %d-d", ae_in_dim(ae),
                  dim);
        goto out;
    }
    index_options_t opt;
    index_options_default(&opt);
    opt.fc7_dim = dim;
    opt.code_bits = bits;
    opt.fc7_factory = "Flat";
    opt.code_factory = "BFlat";
    opt.log = index_log;
    ix = index_open(d->store, &opt, &err);
    if (!ix) goto out;
    const size_t total = feat_file_count(f);
    int64_t have = store_count(index_store(ix), &err);
    if (have < 0) goto out;
    if ((size_t)have == total) {
        fprintf(stderr, "   reusing %s (%lld items)\n", d->store, (long long)have);
        rc = 0;
        goto out;
    }
    /* Chunks are added in row order, all or none, so the store holds exactly
     * the first `have` rows; check that before continuing after them. */
    if ((size_t)have > total) {
        util_fail(&err, "%s holds %lld items but %s has only %zu rows; remove %s to rebuild",
                  d->store, (long long)have, d->feat, total, d->store);
        goto out;
    }
    if (have > 0) {
        store_record_t rec;
        memset(&rec, 0, sizeof rec);
        if (store_get(index_store(ix), feat_file_id(f, (size_t)have - 1), &rec, &err)) {
            util_fail(&err, "%s is not a prefix of %s (%s); remove %s to rebuild", d->store,
                      d->feat, err.msg, d->store);
            goto out;
        }
        store_record_clear(&rec);
        fprintf(stderr, "   continuing after %lld items already stored\n", (long long)have);
    }
    fc7 = malloc((size_t)INDEX_CHUNK * dim * sizeof *fc7);
    codes = malloc((size_t)INDEX_CHUNK * cb);
    items = calloc(INDEX_CHUNK, sizeof *items);
    if (!fc7 || !codes || !items) {
        util_fail(&err, "out of memory");
        goto out;
    }
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    double t0 = util_now();
    const float *rows = feat_file_rows(f);
    size_t done = (size_t)have;
    rc = 0;
    while (done < total && rc == 0) {
        if (demo_interrupted) {
            rc = util_fail(&err, "interrupted after %zu items (all of them stored)", done);
            break;
        }
        size_t n = total - done < INDEX_CHUNK ? total - done : INDEX_CHUNK;
        const float *x = rows + done * (size_t)dim;
        if (ae_encode(ae, x, n, NULL, codes, &err)) {
            rc = -1;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            items[i] = (store_item_t){.id = feat_file_id(f, done + i),
                                      .uri = feat_file_uri(f, done + i),
                                      .label = feat_file_label(f, done + i),
                                      .fc7 = x + i * (size_t)dim,
                                      .code = codes + i * (size_t)cb};
        }
        rc = index_add(ix, items, n, &err);
        if (rc == 0) done += n;
        bar("   store", done - (size_t)have, total - (size_t)have, t0);
    }
    sigaction(SIGINT, &old, NULL);
    if (rc == 0) rc = index_snapshot(ix, &err);
    if (rc == 0)
        fprintf(stderr, "   %zu items stored, indexes snapshotted in %.0f s\n", total,
                util_now() - t0);
out:
    if (rc) fprintf(stderr, "imgret demo: %s\n", err.msg);
    free(items);
    free(codes);
    free(fc7);
    index_free(ix);
    ae_free(ae);
    feat_file_close(f);
    return rc ? stop_here(4, 1) : 0;
}

/* One test image per class as PNG, for the tour: searching with a test-set
 * sneaker should bring back sneakers. */
static int write_examples(demo_t *d) {
    if (mkdir(d->examples, 0755) && errno != EEXIST) {
        fprintf(stderr, "imgret demo: cannot create %s: %s\n", d->examples, strerror(errno));
        return -1;
    }
    util_err_t err = {{0}};
    data_dataset_t *ds = cli_open_dataset("fashion-mnist-test", &err);
    if (!ds) {
        fprintf(stderr, "imgret demo: %s\n", err.msg);
        return -1;
    }
    int classes = data_dataset_num_classes(ds), seen = 0, found = 0;
    int rc = 0;
    for (size_t i = 0; i < data_dataset_count(ds) && found < classes && rc == 0; i++) {
        int label = data_dataset_label(ds, i);
        if (label < 0 || label >= classes || label >= 31 || (seen >> label & 1)) continue;
        seen |= 1 << label;
        found++;
        char name[64], path[4200];
        const char *cn = data_dataset_class_name(ds, label);
        size_t k = 0;
        for (const char *p = cn ? cn : "class"; *p && k + 1 < sizeof name; p++)
            name[k++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a')
                        : ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')) ? *p
                                                                                 : '-';
        name[k] = 0;
        snprintf(path, sizeof path, "%s/%s.png", d->examples, name);
        if (file_exists(path)) continue;
        data_image_t *im = data_dataset_load(ds, i, NULL, NULL, &err);
        rc = im ? data_image_write_png(im, path, &err) : -1; /* atomic */
        data_image_free(im);
    }
    if (rc) fprintf(stderr, "imgret demo: example images: %s\n", err.msg);
    data_dataset_free(ds);
    return rc;
}

/* Writes DIR/NAME into buf; -1 after a message when it does not fit. */
static int demo_path(char *buf, size_t cap, const char *dir, const char *name) {
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    if (n >= 0 && (size_t)n < cap) return 0;
    fprintf(stderr, "imgret demo: %s/%s: the path is longer than %zu bytes\n", dir, name, cap - 1);
    return -1;
}

int cmd_demo(int argc, char **argv) {
    demo_t d = {.dir = "imgret-demo", .epochs = 4, .ae_epochs = 8, .threads = 2};
    const char *host = "127.0.0.1";
    int serve = 1, port_number = 8080;
    const cli_opt_t opts[] = {
        CLI_OPT_STRING("--dir", &d.dir, "DIR", "where everything goes (default imgret-demo)"),
        CLI_OPT_INT("--port", &port_number, 0, 65535, "P", "server port (default 8080)"),
        CLI_OPT_STRING("--host", &host, "H", "address to bind (default 127.0.0.1)"),
        CLI_OPT_UNFLAG("--no-serve", &serve, "stop after building everything"),
        CLI_OPT_INT("--epochs", &d.epochs, 1, 100000000, "N", "quick-recipe epochs (default 4)"),
        CLI_OPT_LONG("--limit", &d.limit, 0, 100000000, "N",
                     "train and index only the first N training images (for tests)"),
        CLI_OPT_LONG("--val-limit", &d.val_limit, 0, 100000000, "N",
                     "validate training on the first N test images only (for tests)"),
        CLI_OPT_INT("--ae-epochs", &d.ae_epochs, 1, 100000000, "N",
                    "autoencoder epochs (default 8)"),
        CLI_OPT_INT("--threads", &d.threads, 1, 1024, "N", "decode threads (default 2)"),
        CLI_OPT_STRING("--device", &d.device, "D",
                       "train, extract and serve on D (default cpu; gpu:0 in a CUDA build)"),
    };
    const cli_spec_t cli = {
        .command = "demo",
        .synopsis = "[options]",
        .about = "Trains the small AlexNet on Fashion-MNIST (quick recipe), extracts FC7 of the\n"
                 "training images, trains the 64-bit autoencoder, fills the item store and its\n"
                 "Euclidean and Hamming indexes, then serves search on 127.0.0.1 with a web page.\n"
                 "Finished stages are reused; after Ctrl-C, run it again to resume.",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0])};
    int go = cli_parse(&cli, argc, argv, NULL);
    if (go != CLI_GO) return go;
    char port[16];
    snprintf(port, sizeof port, "%d", port_number);
    ssize_t len = readlink("/proc/self/exe", d.self, sizeof d.self - 1);
    if (len <= 0) {
        fprintf(stderr, "imgret demo: cannot find its own executable: %s\n", strerror(errno));
        return 1;
    }
    d.self[len] = 0;
    if (mkdir(d.dir, 0755) && errno != EEXIST) {
        fprintf(stderr, "imgret demo: cannot create %s: %s\n", d.dir, strerror(errno));
        return 1;
    }
    if (demo_path(d.model, sizeof d.model, d.dir, "model.imgret") ||
        demo_path(d.ckpt, sizeof d.ckpt, d.dir, "model.imgret.ckpt") ||
        demo_path(d.feat, sizeof d.feat, d.dir, "train.feat") ||
        demo_path(d.ae, sizeof d.ae, d.dir, "ae64.imgret") ||
        demo_path(d.store, sizeof d.store, d.dir, "index") ||
        demo_path(d.examples, sizeof d.examples, d.dir, "examples"))
        return 1;
    double t0 = util_now();
    int rc;
    if ((rc = stage_train(&d)) || (rc = stage_extract(&d)) || (rc = stage_ae(&d)) ||
        (rc = stage_index(&d)))
        return rc;
    write_examples(&d);
    stage(5, "serve");
    fprintf(stderr, "   everything ready in %s after %.0f s\n", d.dir, util_now() - t0);
    char url[512];
    if (snprintf(url, sizeof url, "http://%s:%s/", host, port) >= (int)sizeof url)
        return cli_usage_error(&cli, "--host: expected an address, got %zu characters",
                               strlen(host));
    fprintf(stderr,
            "\n   web page:  %s\n"
            "   search:    imgret search --server %s --k 10 %s/sneaker.png\n"
            "              imgret search --server %s --metric hamming --id 0\n"
            "   Python:    see README.md (\"RPC reference\"): POST "
            "%stwirp/imgret.v1.ImageSearch/Search\n"
            "              with a SearchRequest (protobuf), Content-Type: application/protobuf\n\n",
            url, url, d.examples, url, url);
    if (!serve) return 0;
    char *sargv[] = {"imgret", "serve",      "--model", d.model,  "--autoencoder",
                     d.ae,     "--store",    d.store,   "--host", (char *)host,
                     "--port", (char *)port, NULL,      NULL,     NULL};
    if (d.device) {
        sargv[12] = "--device";
        sargv[13] = (char *)d.device;
    }
    execv(d.self, sargv);
    fprintf(stderr, "imgret demo: cannot start the server: %s\n", strerror(errno));
    return 1;
}
