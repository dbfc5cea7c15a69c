/* imgret import caffe|onnx: converts public trained AlexNet weights (Caffe's
 * bvlc_alexnet, the ONNX zoo's bvlcalexnet, or any paper-shaped AlexNet in
 * those formats) into an imgret model file. */
#include "cli/cli_args.h"
#include "cli/commands.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mean_pixel {
    int given;
    float rgb[3];
} mean_pixel_t;

/* --mean-pixel R,G,B into a mean_pixel_t. */
static int parse_pixel(const char *v, void *dst, char *msg, size_t cap) {
    mean_pixel_t *p = dst;
    char tail;
    if (sscanf(v, "%f,%f,%f%c", &p->rgb[0], &p->rgb[1], &p->rgb[2], &tail) != 3) {
        snprintf(msg, cap, "expected R,G,B (three numbers), got '%s'", v);
        return -1;
    }
    p->given = 1;
    return 0;
}

/* Saves the imported model and says what it holds. */
static int finish(model_file_t *mf, const char *in, const char *out, double t0, util_err_t *err) {
    if (!mf || model_file_save(mf, out, err)) {
        fprintf(stderr, "imgret import: %s\n", err->msg);
        model_file_free(mf);
        return 1;
    }
    double dt = util_now() - t0;
    char hex[2 * MODEL_HASH_BYTES + 1];
    model_hash_hex(mf->hash, hex);
    printf("imported %s: %s %dx%dx%d, %zu parameters%s, %d class names -> %s (%.2f s)\n"
           "content hash %s\n",
           in, mf->spec.name, mf->spec.in_c, mf->spec.in_h, mf->spec.in_w,
           model_file_param_total(mf),
           model_spec_has_paper_widths(&mf->spec) ? " (the paper's widths)" : "", mf->n_classes,
           out, dt, hex);
    model_file_free(mf);
    return 0;
}

/* clang-format off */
#define OPT_OUT(DST)                                                                               \
    {.name = "-o", .kind = CLI_STRING, .dst = (DST), .meta = "OUT.imgret",                         \
     .help = "the imgret model file to write", .required = 1}
/* clang-format on */
#define OPT_SIZE(DST, HELP) CLI_OPT_INT("--input-size", (DST), 0, 4096, "N", (HELP))

static int import_caffe(int argc, char **argv) {
    const char *out = NULL;
    model_caffe_opts_t o = {NULL, NULL, 0};
    int n = 0;
    const cli_opt_t opts[] = {
        CLI_OPT_STRING("--mean", &o.mean_path, "FILE",
                       "the mean image (imagenet_mean.binaryproto)"),
        CLI_OPT_STRING("--labels", &o.labels_path, "FILE",
                       "class names, one a line (synset_words.txt)"),
        OPT_SIZE(&o.input_size, "input side (default: the file's, else 227)"),
        OPT_OUT(&out),
    };
    const cli_spec_t cli = {
        .command = "import caffe",
        .synopsis = "MODEL.caffemodel [options] -o OUT.imgret",
        .about = "Both the 2014 (V1) and current .caffemodel formats; conv1 and the mean\n"
                 "image are converted from Caffe's BGR to RGB; LRN keeps Caffe's alpha/size\n"
                 "convention and k; pooling rounds up as in Caffe.",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0]),
        .args = "MODEL.caffemodel",
        .min_args = 1,
        .max_args = 1};
    int go = cli_parse(&cli, argc, argv, &n);
    if (go != CLI_GO) return go;
    util_err_t err = {{0}};
    double t0 = util_now();
    return finish(model_import_caffe(argv[1], &o, &err), argv[1], out, t0, &err);
}

static int import_onnx(int argc, char **argv) {
    const char *out = NULL, *labels = NULL;
    int bgr = 0, size = 0, n = 0;
    mean_pixel_t pixel = {0, {0, 0, 0}};
    const cli_opt_t opts[] = {
        CLI_OPT_FLAG("--bgr", &bgr,
                     "the graph takes BGR (the zoo's bvlcalexnet, converted from\n"
                     "Caffe, does); conv1 is reordered to RGB"),
        CLI_OPT_CUSTOM("--mean-pixel", &pixel, parse_pixel, "R,G,B",
                       "the per-channel mean (RGB, 0..255) the graph expects subtracted"),
        CLI_OPT_STRING("--labels", &labels, "FILE", "class names, one a line"),
        OPT_SIZE(&size, "input side (default: the graph input's, else 224)"),
        OPT_OUT(&out),
    };
    const cli_spec_t cli = {
        .command = "import onnx",
        .synopsis = "MODEL.onnx [options] -o OUT.imgret",
        .about = "A single chain of standard ops (Conv, Relu, LRN, MaxPool, Flatten/Reshape,\n"
                 "Gemm, Dropout, Softmax).",
        .opts = opts,
        .n_opts = (int)(sizeof opts / sizeof opts[0]),
        .args = "MODEL.onnx",
        .min_args = 1,
        .max_args = 1};
    int go = cli_parse(&cli, argc, argv, &n);
    if (go != CLI_GO) return go;
    model_onnx_import_opts_t o = {
        bgr, pixel.given, {pixel.rgb[0], pixel.rgb[1], pixel.rgb[2]}, labels, size};
    util_err_t err = {{0}};
    double t0 = util_now();
    return finish(model_import_onnx(argv[1], &o, &err), argv[1], out, t0, &err);
}

static const cli_command_t formats[] = {
    {"caffe", "a .caffemodel (bvlc_alexnet, V1 or current format)", import_caffe},
    {"onnx", "an ONNX file (the zoo's bvlcalexnet, or any paper-shaped AlexNet)", import_onnx},
};

int cmd_import(int argc, char **argv) {
    return cli_dispatch("import", NULL, formats, sizeof formats / sizeof formats[0], argc, argv);
}
