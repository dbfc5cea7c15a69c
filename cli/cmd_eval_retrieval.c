/* imgret eval-retrieval: retrieval quality and speed of raw pixels, FC7,
 * autoencoder codes, ITQ and LSH, and the two-stage search, as a markdown
 * table (and a precision-recall CSV). */
#include "autoencoder/autoencoder.h"
#include "cli/cli_args.h"
#include "cli/commands.h"
#include "features/features.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BITS_ROWS 8
#define QPS_QUERIES 1000
#define KNN 100

typedef struct eval_row {
    char name[48];
    ae_eval_result_t r;
    double bytes, qps;
} eval_row_t;

typedef struct eval_ctx {
    eval_row_t rows[64];
    int n;
    FILE *csv;
} eval_ctx_t;

static void add_row(eval_ctx_t *c, const char *name, const ae_eval_result_t *r, double bytes,
                    double qps) {
    eval_row_t *row = &c->rows[c->n++];
    snprintf(row->name, sizeof row->name, "%s", name);
    row->r = *r;
    row->bytes = bytes;
    row->qps = qps;
    fprintf(stderr, "eval-retrieval: %-22s mAP %.4f  P@10 %.4f  P@100 %.4f  %8.0f B  %9.0f q/s\n",
            name, r->map, r->p10, r->p100, bytes, qps);
    if (c->csv) {
        fprintf(c->csv, "%s", name);
        for (int l = 0; l < AE_PR_POINTS; l++)
            fprintf(c->csv, ",%.6f", r->pr[l]);
        fputc('\n', c->csv);
        fflush(c->csv);
    }
}

/* Queries per second of exact top-100 L2 search over the first queries. */
static double l2_qps(const float *q, size_t nq, const float *db, size_t ndb, int dim) {
    float *norms = malloc(ndb * sizeof(float));
    uint32_t *ids = malloc(nq * KNN * sizeof *ids);
    double qps = 0;
    if (norms && ids) {
        for (size_t i = 0; i < ndb; i++) {
            double s = 0;
            for (int j = 0; j < dim; j++)
                s += (double)db[i * dim + j] * db[i * dim + j];
            norms[i] = (float)s;
        }
        double t0 = util_now();
        if (ae_l2_knn(q, nq, db, norms, ndb, dim, KNN, ids, NULL) == 0)
            qps = (double)nq / (util_now() - t0);
    }
    free(norms), free(ids);
    return qps;
}

static double hamming_qps(const uint8_t *q, size_t nq, const uint8_t *db, size_t ndb, int bytes) {
    double t0 = util_now();
#pragma omp parallel
    {
        uint32_t ids[KNN];
        uint16_t dist[KNN];
#pragma omp for schedule(dynamic, 16)
        for (long i = 0; i < (long)nq; i++)
            ae_hamming_knn(q + (size_t)i * bytes, db, ndb, bytes, KNN, ids, dist);
    }
    return (double)nq / (util_now() - t0);
}

/* Raw pixels of a dataset's items by id, scaled to [0, 1]. */
static float *pixels_of(const char *split, const feat_file_t *f, size_t n, int *dim,
                        util_err_t *err) {
    data_dataset_t *ds = data_dataset_open_fashion_mnist(NULL, split, err);
    if (!ds) return NULL;
    float *out = NULL;
    for (size_t i = 0; i < n; i++) {
        int label;
        data_image_t *im = data_dataset_load(ds, (size_t)feat_file_id(f, i), NULL, &label, err);
        if (!im) {
            free(out);
            out = NULL;
            break;
        }
        int d = im->w * im->h * im->c;
        if (!out) {
            *dim = d;
            out = malloc(n * (size_t)d * sizeof(float));
            if (!out) {
                util_fail(err, "out of memory");
                data_image_free(im);
                break;
            }
        }
        for (int j = 0; j < d; j++)
            out[i * (size_t)d + j] = im->pixels[j] / 255.0f;
        data_image_free(im);
    }
    data_dataset_free(ds);
    return out;
}

/* --ae BITS=FILE: the file for that code length, into ae_path[BITS]. */
static int parse_ae(const char *v, void *dst, char *msg, size_t cap) {
    const char **ae_path = dst;
    const char *eq = strchr(v, '=');
    char num[16];
    long long b;
    size_t len = eq ? (size_t)(eq - v) : 0;
    if (!eq || len >= sizeof num || !eq[1]) {
        snprintf(msg, cap, "expected BITS=FILE, got '%s'", v);
        return -1;
    }
    memcpy(num, v, len);
    num[len] = 0;
    if (cli_parse_ll(num, 1, AE_MAX_BITS, &b)) {
        snprintf(msg, cap, "expected BITS=FILE with BITS an integer 1..%d, got '%s'", AE_MAX_BITS,
                 v);
        return -1;
    }
    ae_path[b] = eq + 1;
    return 0;
}

/* --bits LIST or none. */
static int parse_bits(const char *v, void *dst, char *msg, size_t cap) {
    if (!strcmp(v, "none")) {
        ((cli_int_list_t *)dst)->n = 0;
        return 0;
    }
    return cli_parse_int_list(v, dst, msg, cap);
}

int cmd_eval_retrieval(int argc, char **argv) {
    const char *dbp = NULL, *qp = NULL, *csvp = NULL, *outp = NULL;
    const char *ae_path[AE_MAX_BITS + 1] = {0};
    int bits[MAX_BITS_ROWS] = {32, 64, 256}, pixels = 1, fc7 = 1, itq_iters = 50;
    int radii[16] = {0, 1, 2, 3, 4, 5, 6}, short_bits = 32, long_bits = 256;
    long qlimit = 0, dblimit = 0, train_limit = 20000;
    cli_int_list_t bits_list = {bits, MAX_BITS_ROWS, 3, 1, AE_MAX_BITS};
    cli_int_list_t radii_list = {radii, 16, 7, 0, AE_MAX_BITS};
    const cli_opt_t opts[] = {
        {.name = "--db",
         .kind = CLI_STRING,
         .dst = &dbp,
         .meta = "F",
         .help = "database feature file (e.g. the 60,000 training images' FC7)",
         .required = 1},
        {.name = "--queries",
         .kind = CLI_STRING,
         .dst = &qp,
         .meta = "F",
         .help = "query feature file (e.g. the 10,000 test images' FC7)",
         .required = 1},
        {.name = "--ae",
         .kind = CLI_CUSTOM,
         .dst = ae_path,
         .parse = parse_ae,
         .meta = "BITS=AE",
         .help = "a trained autoencoder for BITS-bit codes (repeatable)",
         .repeat = 1},
        CLI_OPT_CUSTOM("--bits", &bits_list, parse_bits, "LIST",
                       "code lengths for the ITQ/LSH rows (default 32,64,256; none: no rows)"),
        CLI_OPT_FLAG("--pixels", &pixels,
                     "add the raw-pixel row (Fashion-MNIST by id; default on)"),
        CLI_OPT_UNFLAG("--no-pixels", &pixels, "leave out the raw-pixel row"),
        CLI_OPT_UNFLAG("--no-fc7", &fc7,
                       "leave out the FC7 (L2) row (the slowest; it does not depend\n"
                       "on the codes)"),
        CLI_OPT_LONG("--query-limit", &qlimit, 0, LONG_MAX, "N", "the first N queries only"),
        CLI_OPT_LONG("--db-limit", &dblimit, 0, LONG_MAX, "N", "the first N database rows only"),
        CLI_OPT_LONG("--train-limit", &train_limit, 0, LONG_MAX, "N",
                     "rows ITQ/LSH are fitted on (default 20000, evenly the first)"),
        CLI_OPT_INT("--itq-iters", &itq_iters, 0, 1000000, "N", "(default 50)"),
        CLI_OPT_INT("--short", &short_bits, 1, AE_MAX_BITS, "B",
                    "two-stage short code length (default 32; AE codes)"),
        CLI_OPT_INT("--long", &long_bits, 1, AE_MAX_BITS, "B",
                    "two-stage long code length (default 256; AE codes)"),
        CLI_OPT_CUSTOM("--radii", &radii_list, cli_parse_int_list, "LIST",
                       "two-stage Hamming radii (default 0-6; 5 is the search's default)"),
        CLI_OPT_STRING("--csv", &csvp, "FILE",
                       "precision-recall points (11 recall levels) per row"),
        CLI_OPT_STRING("-o", &outp, "FILE", "the markdown table (default: stdout)"),
    };
    const cli_spec_t cli = {.command = "eval-retrieval",
                            .synopsis = "--db F --queries F [options]",
                            .opts = opts,
                            .n_opts = (int)(sizeof opts / sizeof opts[0])};
    int go = cli_parse(&cli, argc, argv, NULL);
    if (go != CLI_GO) return go;
    const int nbits = bits_list.n, nradii = radii_list.n;
    util_err_t err;
    feat_file_t *fdb = feat_file_open(dbp, &err), *fq = fdb ? feat_file_open(qp, &err) : NULL;
    if (!fq) {
        fprintf(stderr, "eval-retrieval: %s\n", err.msg);
        feat_file_close(fdb);
        return 1;
    }
    int dim = feat_file_dim(fdb);
    size_t ndb = feat_file_count(fdb), nq = feat_file_count(fq);
    if (dblimit > 0 && (size_t)dblimit < ndb) ndb = (size_t)dblimit;
    if (qlimit > 0 && (size_t)qlimit < nq) nq = (size_t)qlimit;
    size_t ntrain = train_limit > 0 && (size_t)train_limit < ndb ? (size_t)train_limit : ndb;
    size_t nqps = nq < QPS_QUERIES ? nq : QPS_QUERIES;
    const float *xdb = feat_file_rows(fdb), *xq = feat_file_rows(fq);
    int32_t *ldb = malloc(ndb * sizeof *ldb), *lq = malloc(nq * sizeof *lq);
    for (size_t i = 0; i < ndb; i++)
        ldb[i] = feat_file_label(fdb, i);
    for (size_t i = 0; i < nq; i++)
        lq[i] = feat_file_label(fq, i);
    eval_ctx_t c = {0};
    c.csv = csvp ? fopen(csvp, "w") : NULL;
    if (c.csv) {
        fprintf(c.csv, "method");
        for (int l = 0; l < AE_PR_POINTS; l++)
            fprintf(c.csv, ",p_at_recall_%.1f", l / 10.0);
        fputc('\n', c.csv);
    }
    fprintf(stderr, "eval-retrieval: %zu queries, %zu database items, %d-d features\n", nq, ndb,
            dim);
    int rc = 0;
    ae_eval_result_t r;
    char name[64];
    if (pixels) {
        int pd = 0;
        float *pdb = pixels_of("train", fdb, ndb, &pd, &err);
        float *pq = pdb ? pixels_of("t10k", fq, nq, &pd, &err) : NULL;
        if (pq && ae_eval_l2(pq, nq, pdb, ndb, pd, lq, ldb, &r, &err) == 0)
            add_row(&c, "raw pixels (L2)", &r, pd * 4.0, l2_qps(pq, nqps, pdb, ndb, pd));
        else
            fprintf(stderr, "eval-retrieval: raw pixels skipped: %s\n", err.msg);
        free(pdb), free(pq);
    }
    if (fc7) {
        if (ae_eval_l2(xq, nq, xdb, ndb, dim, lq, ldb, &r, &err)) goto fail;
        add_row(&c, "FC7 (L2)", &r, dim * 4.0, l2_qps(xq, nqps, xdb, ndb, dim));
    }

    /* Codes kept for the two-stage rows. */
    uint8_t *short_db = NULL, *short_q = NULL, *long_db = NULL, *long_q = NULL;
    int all_bits[MAX_BITS_ROWS + 2], nall = nbits;
    memcpy(all_bits, bits, (size_t)nbits * sizeof *bits);
    for (int b = 1; b <= AE_MAX_BITS; b++) {
        int seen = 0;
        for (int k = 0; k < nall; k++)
            seen |= all_bits[k] == b;
        if (ae_path[b] && !seen && nall < MAX_BITS_ROWS + 2) all_bits[nall++] = b;
    }
    for (int k = 0; k < nall; k++) {
        int b = all_bits[k], nb = ae_code_bytes(b);
        uint8_t *cdb = malloc(ndb * nb), *cq = malloc(nq * nb);
        if (!cdb || !cq) {
            free(cdb), free(cq);
            util_fail(&err, "out of memory for codes");
            goto fail;
        }
        if (ae_path[b]) {
            ae_t *ae = ae_load(ae_path[b], &err);
            if (!ae || ae_bits(ae) != b || ae_in_dim(ae) != dim ||
                ae_encode(ae, xdb, ndb, NULL, cdb, &err) || ae_encode(ae, xq, nq, NULL, cq, &err)) {
                if (ae && (ae_bits(ae) != b || ae_in_dim(ae) != dim))
                    util_fail(&err, "%s: %d bits from %d-d input, not %d bits from %d-d",
                              ae_path[b], ae_bits(ae), ae_in_dim(ae), b, dim);
                ae_free(ae);
                free(cdb), free(cq);
                goto fail;
            }
            ae_free(ae);
            if (ae_eval_hamming(cq, nq, cdb, ndb, nb, lq, ldb, &r, &err)) goto fail;
            snprintf(name, sizeof name, "AE %d bits (Hamming)", b);
            add_row(&c, name, &r, nb, hamming_qps(cq, nqps, cdb, ndb, nb));
            if (b == short_bits && !short_db)
                short_db = cdb, short_q = cq, cdb = cq = NULL;
            else if (b == long_bits && !long_db)
                long_db = cdb, long_q = cq, cdb = cq = NULL;
        }
        int in_bits = 0;
        for (int j = 0; j < nbits; j++)
            in_bits |= bits[j] == b;
        for (int method = 0; in_bits && method < 2; method++) {
            double t0 = util_now();
            ae_hasher_t *h = method == 0
                                 ? ae_itq_create(xdb, ntrain, dim, b, itq_iters, 1, NULL, &err)
                                 : ae_lsh_create(xdb, ntrain, dim, b, 1, &err);
            uint8_t *hdb = cdb ? cdb : malloc(ndb * nb), *hq = cq ? cq : malloc(nq * nb);
            cdb = cq = NULL;
            if (!h || !hdb || !hq || ae_hasher_encode(h, xdb, ndb, hdb, &err) ||
                ae_hasher_encode(h, xq, nq, hq, &err) ||
                ae_eval_hamming(hq, nq, hdb, ndb, nb, lq, ldb, &r, &err)) {
                ae_hasher_free(h);
                free(hdb), free(hq);
                goto fail;
            }
            fprintf(stderr, "eval-retrieval: %s %d bits fitted on %zu rows in %.1f s\n",
                    method ? "LSH" : "ITQ", b, ntrain, util_now() - t0);
            snprintf(name, sizeof name, "%s %d bits (Hamming)", method ? "LSH" : "ITQ", b);
            add_row(&c, name, &r, nb, hamming_qps(hq, nqps, hdb, ndb, nb));
            ae_hasher_free(h);
            free(hdb), free(hq);
        }
        free(cdb), free(cq);
    }

    /* The two-stage search against the full long-code scan. */
    FILE *out = outp ? fopen(outp, "w") : stdout;
    if (!out) {
        util_fail(&err, "%s: cannot write", outp);
        goto fail;
    }
    fprintf(out, "| method | mAP | P@10 | P@100 | bytes/item | queries/s |\n");
    fprintf(out, "|---|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < c.n; i++)
        fprintf(out, "| %s | %.4f | %.4f | %.4f | %.0f | %.0f |\n", c.rows[i].name, c.rows[i].r.map,
                c.rows[i].r.p10, c.rows[i].r.p100, c.rows[i].bytes, c.rows[i].qps);
    ae_hash_table_t *table = short_db && long_db && short_bits <= 64
                                 ? ae_hash_table_create(short_db, ndb, short_bits, &err)
                                 : NULL;
    if (table) {
        int sb = ae_code_bytes(short_bits), lb = ae_code_bytes(long_bits);
        uint32_t *full = malloc(nq * 10 * sizeof *full), *two = malloc(nq * 100 * sizeof *two);
        size_t *got = malloc(nq * sizeof *got), *scanned = malloc(nq * sizeof *scanned);
        double t0 = util_now();
#pragma omp parallel for schedule(dynamic, 16)
        for (long i = 0; i < (long)nq; i++) {
            uint16_t d[10];
            ae_hamming_knn(long_q + (size_t)i * lb, long_db, ndb, lb, 10, full + (size_t)i * 10, d);
        }
        double t_full = util_now() - t0;
        fprintf(out,
                "\nTwo-stage search: %d-bit AE code shortlist within a Hamming radius (hash-table "
                "lookup of every address in the ball, or one pass over the short codes when the "
                "ball holds more addresses than an eighth of the database), re-ranked "
                "by %d-bit AE codes (and, last column, the shortlist's best 100 re-ranked by exact "
                "FC7 distance). Full %d-bit scan: %.0f queries/s.\n\n",
                short_bits, long_bits, long_bits, (double)nq / t_full);
        fprintf(
            out,
            "| radius | shortlist by | database scanned | top-10 overlap with full %d-bit scan | "
            "speed-up | P@10 | P@10 with FC7 re-rank |\n|---:|---|---:|---:|---:|---:|---:|\n",
            long_bits);
        for (int ri = 0; ri < nradii; ri++) {
            t0 = util_now();
#pragma omp parallel for schedule(dynamic, 16)
            for (long i = 0; i < (long)nq; i++)
                got[i] = ae_two_stage_search_table(table, short_q + (size_t)i * sb,
                                                   long_q + (size_t)i * lb, long_db, lb, radii[ri],
                                                   10, two + (size_t)i * 100, &scanned[i]);
            double t_two = util_now() - t0;
            double frac = 0, overlap = 0, p10 = 0, p10f = 0;
            for (size_t i = 0; i < nq; i++) {
                frac += (double)scanned[i] / (double)ndb;
                int ov = 0, hit = 0;
                for (size_t a = 0; a < got[i]; a++) {
                    for (int b2 = 0; b2 < 10; b2++)
                        ov += two[i * 100 + a] == full[i * 10 + b2];
                    hit += ldb[two[i * 100 + a]] == lq[i];
                }
                overlap += ov / 10.0;
                p10 += hit / 10.0;
            }
            /* Exact FC7 re-rank of the shortlist's best 100 by long code. */
#pragma omp parallel for schedule(dynamic, 16) reduction(+ : p10f)
            for (long i = 0; i < (long)nq; i++) {
                uint32_t ids[100];
                size_t sc;
                size_t g = ae_two_stage_search_table(table, short_q + (size_t)i * sb,
                                                     long_q + (size_t)i * lb, long_db, lb,
                                                     radii[ri], 100, ids, &sc);
                float dist[100];
                for (size_t a = 0; a < g; a++) {
                    double s = 0;
                    for (int j = 0; j < dim; j++) {
                        double e = (double)xq[(size_t)i * dim + j] - xdb[(size_t)ids[a] * dim + j];
                        s += e * e;
                    }
                    dist[a] = (float)s;
                }
                int hit = 0;
                for (int t = 0; t < 10 && (size_t)t < g; t++) { /* selection of the 10 nearest */
                    size_t m = (size_t)t;
                    for (size_t a = (size_t)t + 1; a < g; a++)
                        m = dist[a] < dist[m] ? a : m;
                    float td = dist[t];
                    dist[t] = dist[m], dist[m] = td;
                    uint32_t ti = ids[t];
                    ids[t] = ids[m], ids[m] = ti;
                    hit += ldb[ids[t]] == lq[i];
                }
                p10f += hit / 10.0;
            }
            fprintf(out, "| %d%s | %s | %.4f | %.4f | %.1fx | %.4f | %.4f |\n", radii[ri],
                    radii[ri] == AE_TWO_STAGE_RADIUS && short_bits == 32 ? " (default)" : "",
                    ae_two_stage_scans(table, radii[ri]) ? "scan" : "lookup", frac / (double)nq,
                    overlap / (double)nq, t_full / t_two, p10 / (double)nq, p10f / (double)nq);
        }
        free(full), free(two), free(got), free(scanned);
    }
    ae_hash_table_free(table);
    if (out != stdout) fclose(out);
    free(short_db), free(short_q), free(long_db), free(long_q);
    goto done;
fail:
    rc = -1;
    fprintf(stderr, "eval-retrieval: %s\n", err.msg);
done:
    if (c.csv) fclose(c.csv);
    free(ldb), free(lq);
    feat_file_close(fdb);
    feat_file_close(fq);
    return rc ? 1 : 0;
}
