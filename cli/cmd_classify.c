/* imgret classify IMAGE...: the top-5 classes of each image with their
 * probabilities (ten crops, softmax averaged, as the paper tests). */
#include "cli/cli_args.h"
#include "cli/cli_util.h"
#include "cli/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_classify(int argc, char **argv) {
    const char *model = NULL;
    int center = 0, n_images = 0, raw_orientation = 0;
    cli_device_args_t dev = {0};
    const cli_opt_t opts[] = {
        {.name = "--model",
         .kind = CLI_STRING,
         .dst = &model,
         .meta = "FILE",
         .help = "model file",
         .required = 1},
        CLI_OPT_FLAG("--center", &center, "the centre crop only (default: ten crops averaged)"),
        CLI_OPT_FLAG("--raw-orientation", &raw_orientation, CLI_RAW_ORIENTATION_HELP),
        CLI_OPTS_DEVICE(&dev),
    };
    const cli_spec_t cli = {.command = "classify",
                            .synopsis = "--model FILE [options] IMAGE...",
                            .opts = opts,
                            .n_opts = (int)(sizeof opts / sizeof opts[0]),
                            .args = "IMAGE...",
                            .min_args = 1,
                            .max_args = -1};
    int go = cli_parse(&cli, argc, argv, &n_images);
    if (go != CLI_GO) return go;
    const int ten = !center, first_image = 1;
    argc = 1 + n_images; /* the images are argv[1..n_images] now */
    util_err_t err = {{0}};
    model_placement_t pl;
    model_file_t *mf = cli_placement(&dev, &pl, &err) ? NULL : model_file_load(model, &err);
    model_input_t in = {0};
    model_net_t *net = NULL;
    if (!mf || model_input_from_file(mf, &in, &err) ||
        !(net = model_net_create_from_file_on(mf, DATA_TEN_CROPS, &pl, &err))) {
        fprintf(stderr, "imgret classify: %s\n", err.msg);
        model_input_free(&in);
        model_file_free(mf);
        return 1;
    }
    const int classes = mf->spec.layer[mf->spec.n_layers - 1].out;
    const int c = mf->spec.in_c, side = in.crop;
    float *x = malloc(sizeof(float) * DATA_TEN_CROPS * c * side * side);
    float *probs = malloc(sizeof(float) * DATA_TEN_CROPS * classes);
    float *avg = malloc(sizeof(float) * classes);
    int failures = 0;
    for (int i = first_image; i < argc; i++) {
        /* Decoded and prepared as extraction and the server do it. */
        data_decode_opts_t dopt = data_prep_decode_opts(&in.prep, 0);
        dopt.raw_orientation = raw_orientation;
        data_image_t *raw = data_image_read(argv[i], &dopt, &err), *im = NULL;
        int crops = ten ? DATA_TEN_CROPS : 1;
        if (!raw || !(im = data_prep_image(raw, &in.prep, &err)) ||
            (ten ? data_ten_crop(im, side, &in.norm, x, &err)
                 : data_center_crop(im, side, &in.norm, x, &err)) ||
            model_net_forward(net, x, crops, 0, &err)) {
            fprintf(stderr, "imgret classify: %s\n", err.msg);
            failures++;
            data_image_free(raw);
            data_image_free(im);
            continue;
        }
        model_softmax(crops, classes, model_net_logits(net, NULL), probs);
        for (int k = 0; k < classes; k++) {
            double a = 0;
            for (int j = 0; j < crops; j++)
                a += probs[(size_t)j * classes + k];
            avg[k] = (float)(a / crops);
        }
        printf("%s\n", argv[i]);
        for (int r = 0; r < 5 && r < classes; r++) {
            int best = 0;
            for (int k = 1; k < classes; k++)
                if (avg[k] > avg[best]) best = k;
            const char *name = best < mf->n_classes ? mf->class_names[best] : NULL;
            if (name)
                printf("  %6.2f%%  %s\n", 100.0 * avg[best], name);
            else
                printf("  %6.2f%%  class %d\n", 100.0 * avg[best], best);
            avg[best] = -1.0f;
        }
        data_image_free(raw);
        data_image_free(im);
    }
    free(x);
    free(probs);
    free(avg);
    model_input_free(&in);
    model_net_free(net);
    model_file_free(mf);
    return failures ? 1 : 0;
}
