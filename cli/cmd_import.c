/* imgret import caffe|onnx: converts public trained AlexNet weights (Caffe's
 * bvlc_alexnet, the ONNX zoo's bvlcalexnet, or any paper-shaped AlexNet in
 * those formats) into an imgret model file. */
#include "cli/commands.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(FILE *f) {
    fprintf(f,
            "usage: imgret import caffe MODEL.caffemodel [--mean imagenet_mean.binaryproto]\n"
            "                     [--labels synset_words.txt] [--input-size N] -o OUT.imgret\n"
            "       imgret import onnx MODEL.onnx [--bgr] [--mean-pixel R,G,B]\n"
            "                     [--labels FILE] [--input-size N] -o OUT.imgret\n"
            "\n"
            "caffe: both the 2014 (V1) and current .caffemodel formats; conv1 and the mean\n"
            "  image are converted from Caffe's BGR to RGB; LRN keeps Caffe's alpha/size\n"
            "  convention and k; pooling rounds up as in Caffe. Input size: the file's, else 227.\n"
            "onnx: a single chain of standard ops (Conv, Relu, LRN, MaxPool, Flatten/Reshape,\n"
            "  Gemm, Dropout, Softmax). --bgr: the graph takes BGR (the zoo's bvlcalexnet,\n"
            "  converted from Caffe, does), conv1 is reordered to RGB. --mean-pixel: the\n"
            "  per-channel mean (RGB, 0..255) the graph expects subtracted.\n");
    return f == stdout ? 0 : 2;
}

int cmd_import(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return usage(argc < 2 ? stderr : stdout);
    const char *format = argv[1], *in = NULL, *out = NULL, *mean = NULL, *labels = NULL;
    int bgr = 0, has_pixel = 0, size = 0;
    float pixel[3] = {0, 0, 0};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help")) return usage(stdout);
        if (!strcmp(a, "--bgr")) {
            bgr = 1;
            continue;
        }
        if (a[0] != '-') {
            if (in) return usage(stderr);
            in = a;
            continue;
        }
        if (i + 1 >= argc) return usage(stderr);
        const char *v = argv[++i];
        if (!strcmp(a, "-o")) out = v;
        else if (!strcmp(a, "--mean")) mean = v;
        else if (!strcmp(a, "--labels")) labels = v;
        else if (!strcmp(a, "--input-size")) size = atoi(v);
        else if (!strcmp(a, "--mean-pixel")) {
            if (sscanf(v, "%f,%f,%f", &pixel[0], &pixel[1], &pixel[2]) != 3) {
                fprintf(stderr, "imgret import: --mean-pixel wants R,G,B (got '%s')\n", v);
                return 2;
            }
            has_pixel = 1;
        } else return usage(stderr);
    }
    if (!in || !out) return usage(stderr);
    util_err_t err = {{0}};
    model_file_t *mf = NULL;
    double t0 = util_now();
    if (!strcmp(format, "caffe")) {
        if (bgr || has_pixel) {
            fprintf(stderr, "imgret import caffe: --bgr and --mean-pixel are for onnx (Caffe "
                            "files are always BGR; use --mean)\n");
            return 2;
        }
        model_caffe_opts_t o = {mean, labels, size};
        mf = model_import_caffe(in, &o, &err);
    } else if (!strcmp(format, "onnx")) {
        if (mean) {
            fprintf(stderr, "imgret import onnx: --mean is for caffe; use --mean-pixel\n");
            return 2;
        }
        model_onnx_import_opts_t o = {bgr, has_pixel, {pixel[0], pixel[1], pixel[2]}, labels,
                                      size};
        mf = model_import_onnx(in, &o, &err);
    } else {
        fprintf(stderr, "imgret import: unknown format '%s' (caffe or onnx)\n", format);
        return 2;
    }
    if (!mf || model_file_save(mf, out, &err)) {
        fprintf(stderr, "imgret import: %s\n", err.msg);
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
