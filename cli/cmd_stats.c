/* imgret stats: the training set's mean image, per-channel mean and the
 * RGB (or grey) covariance with its eigenvectors and eigenvalues (the data
 * of the paper's PCA lighting); with --model, stores them in that model
 * file's normalisation. imgret train computes and stores them itself. */
#include "cli/cli_args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_stats(int argc, char **argv) {
    cli_data_args_t da = cli_data_args_defaults();
    const char *model = NULL;
    const cli_opt_t opts[] = {
        CLI_OPT_STRING("--data", &da.data, "SPEC",
                       "fashion-mnist (default), folder:DIR, list:FILE"),
        CLI_OPT_LONG("--limit", &da.limit, 0, LONG_MAX, "N", "the first N images only (0: all)"),
        CLI_OPT_FLAG("--raw-orientation", &da.raw_orientation, CLI_RAW_ORIENTATION_HELP),
        CLI_OPT_STRING("--model", &model, "FILE", "store the statistics in this model file"),
    };
    const cli_spec_t cli = {.command = "stats",
                            .synopsis = "[options]",
                            .opts = opts,
                            .n_opts = (int)(sizeof opts / sizeof opts[0])};
    int go = cli_parse(&cli, argc, argv, NULL);
    if (go != CLI_GO) return go;
    da.no_val = 1;
    util_err_t err = {{0}};
    cli_dataset_t d;
    if (cli_open_data(&da, &d, &err)) {
        fprintf(stderr, "imgret stats: %s\n", err.msg);
        return 1;
    }
    const data_stats_t *s = d.stats;
    printf("%zu images (%zu failed), stored %dx%dx%d\n", s->count, s->failed, s->c, s->h, s->w);
    printf("channel mean (0..255):");
    for (int c = 0; c < s->c; c++)
        printf(" %.3f", (double)s->channel_mean[c]);
    printf("\neigenvalues (of [0,1] values):");
    for (int c = 0; c < s->c; c++)
        printf(" %.6g", (double)s->eigval[c]);
    printf("\neigenvectors (columns):\n");
    for (int k = 0; k < s->c; k++) {
        printf(" ");
        for (int i = 0; i < s->c; i++)
            printf(" %8.4f", (double)s->eigvec[k * s->c + i]);
        printf("\n");
    }
    int rc = 0;
    if (model) {
        model_file_t *mf = model_file_load(model, &err);
        if (!mf || model_norm_set_mean_image(&mf->norm, s->c, s->h, s->w, s->mean, &err)) {
            rc = 1;
        } else {
            mf->norm.has_eigen = 1;
            memcpy(mf->norm.eigval, s->eigval, sizeof s->eigval);
            memcpy(mf->norm.eigvec, s->eigvec, sizeof s->eigvec);
            mf->norm.stored_size = s->h;
            mf->norm.stored_pad = d.prep.pad;
            if (model_file_save(mf, model, &err))
                rc = 1;
            else
                printf("stored in %s\n", model);
        }
        if (rc) fprintf(stderr, "imgret stats: %s\n", err.msg);
        model_file_free(mf);
    }
    cli_close_data(&d);
    return rc;
}
