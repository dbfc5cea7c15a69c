/* imgret export onnx: writes an imgret model as an ONNX file other runtimes
 * load (onnxruntime, torch via onnx2torch, TensorRT, ...). */
#include "cli/cli_args.h"
#include "cli/commands.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const opsets[] = {"12", "9", NULL};

static int export_onnx(int argc, char **argv) {
    const char *out = NULL;
    int opset_choice = 0, n = 0;
    const cli_opt_t opts[] = {
        CLI_OPT_CHOICE("--opset", &opset_choice, opsets, "ONNX opset (default 12)"),
        {.name = "-o",
         .kind = CLI_STRING,
         .dst = &out,
         .meta = "OUT.onnx",
         .help = "the ONNX file to write",
         .required = 1},
    };
    const cli_spec_t cli = {
        .command = "export onnx",
        .synopsis = "MODEL.imgret [--opset 12|9] -o OUT.onnx",
        .about = "Input 'data' float[N,C,H,W] (after the model's normalisation: see imgret info),\n"
                 "outputs 'logits' and 'prob' (softmax). Opset 12 writes ceil_mode; opset 9\n"
                 "writes rounding up as end padding [0,0,1,1], as the model zoo's opset-9 files.",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0]),
        .args = "MODEL.imgret",
        .min_args = 1,
        .max_args = 1};
    int go = cli_parse(&cli, argc, argv, &n);
    if (go != CLI_GO) return go;
    const char *in = argv[1];
    const int opset = opset_choice == 0 ? 12 : 9;
    util_err_t err = {{0}};
    model_file_t *mf = model_file_load(in, &err);
    model_onnx_export_opts_t o = {opset};
    if (!mf || model_export_onnx(mf, out, &o, &err)) {
        fprintf(stderr, "imgret export: %s\n", err.msg);
        model_file_free(mf);
        return 1;
    }
    printf("exported %s -> %s (ONNX opset %d)\n", in, out, opset);
    model_file_free(mf);
    return 0;
}

static const cli_command_t formats[] = {
    {"onnx", "an ONNX file other runtimes load (onnxruntime, TensorRT, ...)", export_onnx},
};

int cmd_export(int argc, char **argv) {
    return cli_dispatch("export", NULL, formats, sizeof formats / sizeof formats[0], argc, argv);
}
