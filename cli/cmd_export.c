/* imgret export onnx: writes an imgret model as an ONNX file other runtimes
 * load (onnxruntime, torch via onnx2torch, TensorRT, ...). */
#include "cli/commands.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(FILE *f) {
    fprintf(f, "usage: imgret export onnx MODEL.imgret [--opset 12|9] -o OUT.onnx\n"
               "\n"
               "Input 'data' float[N,C,H,W] (after the model's normalisation: see imgret info),\n"
               "outputs 'logits' and 'prob' (softmax). Opset 12 writes ceil_mode; opset 9\n"
               "writes rounding up as end padding [0,0,1,1], as the model zoo's opset-9 files.\n");
    return f == stdout ? 0 : 2;
}

int cmd_export(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return usage(argc < 2 ? stderr : stdout);
    if (strcmp(argv[1], "onnx")) {
        fprintf(stderr, "imgret export: unknown format '%s' (onnx)\n", argv[1]);
        return 2;
    }
    const char *in = NULL, *out = NULL;
    int opset = 12;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) return usage(stdout);
        if (argv[i][0] != '-') {
            if (in) return usage(stderr);
            in = argv[i];
        } else if (i + 1 < argc && !strcmp(argv[i], "-o")) {
            out = argv[++i];
        } else if (i + 1 < argc && !strcmp(argv[i], "--opset")) {
            opset = atoi(argv[++i]);
        } else {
            return usage(stderr);
        }
    }
    if (!in || !out) return usage(stderr);
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
