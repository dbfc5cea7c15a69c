/* imgret ae-encode: the binary codes of a feature file's rows. */
#include "autoencoder/autoencoder.h"
#include "cli/cli_args.h"
#include "cli/commands.h"
#include "features/features.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_ae_encode(int argc, char **argv) {
    const char *aep = NULL, *feat = NULL, *out = NULL;
    const cli_opt_t opts[] = {
        {.name = "--ae",
         .kind = CLI_STRING,
         .dst = &aep,
         .meta = "AE",
         .help = "the autoencoder (imgret ae-train)",
         .required = 1},
        {.name = "--features",
         .kind = CLI_STRING,
         .dst = &feat,
         .meta = "F",
         .help = "the feature file whose rows are encoded",
         .required = 1},
        {.name = "-o",
         .kind = CLI_STRING,
         .dst = &out,
         .meta = "CODES",
         .help = "the code file to write",
         .required = 1},
    };
    const cli_spec_t cli = {
        .command = "ae-encode",
        .synopsis = "--ae AE --features F -o CODES",
        .notes = "Writes a code file: \"IMGRCODE\", u32 version (1), u32 bits, u64 count\n"
                 "(little-endian), then count codes of ceil(bits/8) bytes (LSB-first;\n"
                 "unused high bits zero), count i64 ids and count i32 labels from F.",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0])};
    int go = cli_parse(&cli, argc, argv, NULL);
    if (go != CLI_GO) return go;
    util_err_t err;
    ae_t *ae = ae_load(aep, &err);
    feat_file_t *f = ae ? feat_file_open(feat, &err) : NULL;
    int rc = f ? 0 : -1;
    if (rc == 0 && feat_file_dim(f) != ae_in_dim(ae))
        rc = util_fail(&err, "%s has %d-d rows, the autoencoder takes %d", feat, feat_file_dim(f),
                       ae_in_dim(ae));
    uint8_t *codes = NULL;
    size_t n = rc == 0 ? feat_file_count(f) : 0;
    int bits = ae ? ae_bits(ae) : 0, nb = ae_code_bytes(bits);
    if (rc == 0 && !(codes = malloc(n * nb + 1))) rc = util_fail(&err, "out of memory");
    if (rc == 0) rc = ae_encode(ae, feat_file_rows(f), n, NULL, codes, &err);
    int64_t *ids = NULL;
    int32_t *labels = NULL;
    if (rc == 0 && (!(ids = malloc(n * 8 + 1)) || !(labels = malloc(n * 4 + 1))))
        rc = util_fail(&err, "out of memory");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        ids[i] = feat_file_id(f, i);
        labels[i] = feat_file_label(f, i);
    }
    if (rc == 0) rc = ae_codes_save(out, bits, n, codes, ids, labels, &err);
    if (rc == 0) fprintf(stderr, "ae-encode: %zu codes of %d bits -> %s\n", n, bits, out);
    free(ids);
    free(labels);
    if (rc) fprintf(stderr, "ae-encode: %s\n", err.msg);
    free(codes);
    feat_file_close(f);
    ae_free(ae);
    return rc ? 1 : 0;
}
