/* imgret eval: top-1 and top-5 error of a model on a dataset, with the
 * centre crop and with the paper's ten crops. */
#include "cli/cli_args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = "fashion-mnist-test";
    long limit = 0;
    int batch = 100, raw_orientation = 0;
    cli_device_args_t dev = {0};
    const cli_opt_t opts[] = {
        {.name = "--model",
         .kind = CLI_STRING,
         .dst = &model,
         .meta = "FILE",
         .help = "model file",
         .required = 1},
        CLI_OPT_STRING("--data", &data, "SPEC",
                       "fashion-mnist-test (default), fashion-mnist, folder:DIR, list:FILE"),
        CLI_OPT_LONG("--limit", &limit, 0, LONG_MAX, "N", "the first N images only (0: all)"),
        CLI_OPT_INT("--batch", &batch, 10, 65536, "N", "images per pass (default 100)"),
        CLI_OPT_FLAG("--raw-orientation", &raw_orientation, CLI_RAW_ORIENTATION_HELP),
        CLI_OPTS_DEVICE(&dev),
    };
    const cli_spec_t cli = {.command = "eval",
                            .synopsis = "--model FILE [options]",
                            .opts = opts,
                            .n_opts = (int)(sizeof opts / sizeof opts[0])};
    int go = cli_parse(&cli, argc, argv, NULL);
    if (go != CLI_GO) return go;
    util_err_t err = {{0}};
    model_file_t *mf = NULL;
    model_net_t *net = NULL;
    data_dataset_t *all = NULL, *ds = NULL;
    model_input_t in = {0};
    int rc = 1;
    model_placement_t pl;
    if (cli_placement(&dev, &pl, &err) || !(mf = model_file_load(model, &err)) ||
        model_input_from_file(mf, &in, &err) ||
        !(net = model_net_create_from_file_on(mf, batch, &pl, &err)))
        goto out;
    if (!(all = cli_open_dataset(data, &err))) goto out;
    data_dataset_set_raw_orientation(all, raw_orientation);
    ds = all;
    if (limit > 0 && (size_t)limit < data_dataset_count(all) &&
        !(ds = data_dataset_subset(all, 0, (size_t)limit, &err)))
        goto out;
    model_eval_result_t c1, c10;
    double t0 = util_now();
    if (model_evaluate(net, ds, &in.prep, in.crop, &in.norm, 0, 2, &c1, &err)) goto out;
    double t1 = util_now();
    if (model_evaluate(net, ds, &in.prep, in.crop, &in.norm, 1, 2, &c10, &err)) goto out;
    double t2 = util_now();
    printf("%s on %s (%zu images%s)\n", model, data, c1.count,
           c1.skipped ? ", some skipped: see messages" : "");
    printf("| crops | top-1 error | top-5 error | top-1 accuracy | seconds |\n");
    printf("|-------|-------------|-------------|----------------|---------|\n");
    printf("| centre | %.2f%% | %.2f%% | %.2f%% | %.1f |\n", 100.0 * c1.top1, 100.0 * c1.top5,
           100.0 * (1 - c1.top1), t1 - t0);
    printf("| ten | %.2f%% | %.2f%% | %.2f%% | %.1f |\n", 100.0 * c10.top1, 100.0 * c10.top5,
           100.0 * (1 - c10.top1), t2 - t1);
    rc = 0;
out:
    if (rc) fprintf(stderr, "imgret eval: %s\n", err.msg);
    if (ds != all) data_dataset_free(ds);
    data_dataset_free(all);
    model_input_free(&in);
    model_net_free(net);
    model_file_free(mf);
    return rc;
}
