/* imgret ae-encode: the binary codes of a feature file's rows. */
#include "autoencoder/autoencoder.h"
#include "cli/commands.h"
#include "features/features.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(FILE *f) {
    fprintf(f,
            "usage: imgret ae-encode --ae AE --features F -o CODES\n"
            "  Writes a code file: \"IMGRCODE\", u32 version (1), u32 bits, u64 count\n"
            "  (little-endian), then count codes of ceil(bits/8) bytes (LSB-first;\n"
            "  unused high bits zero), count i64 ids and count i32 labels from F.\n");
    return f == stdout ? 0 : 2;
}

int cmd_ae_encode(int argc, char **argv) {
    const char *aep = NULL, *feat = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout);
        if (i + 1 >= argc) return usage(stderr);
        const char *v = argv[++i];
        if (!strcmp(a, "--ae")) aep = v;
        else if (!strcmp(a, "--features")) feat = v;
        else if (!strcmp(a, "-o")) out = v;
        else {
            fprintf(stderr, "ae-encode: unknown option %s\n", a);
            return usage(stderr);
        }
    }
    if (!aep || !feat || !out) return usage(stderr);
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
    if (rc == 0) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", out);
        FILE *o = fopen(tmp, "wb");
        uint8_t h[24] = {'I', 'M', 'G', 'R', 'C', 'O', 'D', 'E', 1, 0, 0, 0};
        for (int i = 0; i < 4; i++) h[12 + i] = (uint8_t)((unsigned)bits >> (8 * i));
        for (int i = 0; i < 8; i++) h[16 + i] = (uint8_t)((uint64_t)n >> (8 * i));
        int ok = o && fwrite(h, 1, sizeof h, o) == sizeof h && fwrite(codes, 1, n * nb, o) == n * nb;
        for (size_t i = 0; ok && i < n; i++) {
            int64_t id = feat_file_id(f, i);
            ok = fwrite(&id, 8, 1, o) == 1;
        }
        for (size_t i = 0; ok && i < n; i++) {
            int32_t l = feat_file_label(f, i);
            ok = fwrite(&l, 4, 1, o) == 1;
        }
        if (o && fclose(o)) ok = 0;
        if (!ok || rename(tmp, out)) rc = util_fail(&err, "%s: write failed", out);
        if (rc == 0) fprintf(stderr, "ae-encode: %zu codes of %d bits -> %s\n", n, bits, out);
    }
    if (rc) fprintf(stderr, "ae-encode: %s\n", err.msg);
    free(codes);
    feat_file_close(f);
    ae_free(ae);
    return rc ? 1 : 0;
}
