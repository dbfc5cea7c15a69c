/* imgret eval: top-1 and top-5 error of a model on a dataset, with the
 * centre crop and with the paper's ten crops. */
#include "cli/cli_util.h"
#include "cli/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(FILE *f) {
    fprintf(f, "usage: imgret eval --model FILE [--data SPEC] [--limit N] [--batch N]\n"
               "  SPEC: fashion-mnist-test (default), fashion-mnist, folder:DIR, "
               "list:FILE\n" CLI_DEVICE_USAGE);
    return f == stdout ? 0 : 2;
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *data = "fashion-mnist-test";
    long limit = 0;
    int batch = 100;
    cli_device_args_t dev = {0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return usage(stdout);
        if (i + 1 >= argc) return usage(stderr);
        const char *v = argv[++i];
        if (cli_device_arg(&dev, argv[i - 1], v)) continue;
        if (!strcmp(argv[i - 1], "--model"))
            model = v;
        else if (!strcmp(argv[i - 1], "--data"))
            data = v;
        else if (!strcmp(argv[i - 1], "--limit"))
            limit = atol(v);
        else if (!strcmp(argv[i - 1], "--batch"))
            batch = atoi(v);
        else
            return usage(stderr);
    }
    if (!model || batch < 10) return usage(stderr);
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
