/* FC7 of image files, for tests/data/formats_test.py: one line of floats per
 * file, through the server's path (feat_extractor_decode: data_decode and
 * the model's input rule, then the centre crop and feat_extract_batch), on a
 * small RGB net with fixed random weights (what matters is a net whose FC7
 * tells images apart). A file that does not decode prints "ERROR message".
 *   fc7_dump file... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/features.h"

#define SIDE 32

static model_file_t *small_model(util_err_t *err) {
    model_spec_t s;
    memset(&s, 0, sizeof s);
    snprintf(s.name, sizeof s.name, "fc7-dump");
    s.in_c = 3;
    s.in_h = s.in_w = SIDE;
    model_layer_spec_t l[] = {
        {MODEL_CONV, "conv1", 8, 5, 2, 2, 1, 0, {0}, 0, 0.05f, 0.1f},
        {MODEL_RELU, "relu1", 0, 0, 0, 0, 0, 0, {0}, 0, 0, 0},
        {MODEL_FC, "fc6", 64, 0, 0, 0, 0, 0, {0}, 0, 0.02f, 0.1f},
        {MODEL_RELU, "relu6", 0, 0, 0, 0, 0, 0, {0}, 0, 0, 0},
        {MODEL_FC, "fc7", 32, 0, 0, 0, 0, 0, {0}, 0, 0.1f, 0.1f},
        {MODEL_RELU, "relu7", 0, 0, 0, 0, 0, 0, {0}, 0, 0, 0},
        {MODEL_FC, "fc8", 3, 0, 0, 0, 0, 0, {0}, 0, 0.1f, 0},
    };
    s.n_layers = (int)(sizeof l / sizeof l[0]);
    memcpy(s.layer, l, sizeof l);
    model_net_t *net = model_net_create(&s, 1, err);
    if (!net) return NULL;
    model_net_init(net, 11);
    model_file_t *mf = model_file_from_net(net, 0, err);
    model_net_free(net);
    if (!mf) return NULL;
    mf->norm.scale = 1.0f / 64;
    mf->norm.stored_size = SIDE;
    static float mean[3 * SIDE * SIDE];
    for (int i = 0; i < 3 * SIDE * SIDE; i++)
        mean[i] = 128.0f;
    if (model_norm_set_mean_image(&mf->norm, 3, SIDE, SIDE, mean, err)) {
        model_file_free(mf);
        return NULL;
    }
    return mf;
}

int main(int argc, char **argv) {
    util_err_t err;
    model_file_t *mf = small_model(&err);
    feat_extractor_t *ex = mf ? feat_extractor_create(mf, 1, NULL, &err) : NULL;
    model_file_free(mf);
    if (!ex) {
        fprintf(stderr, "fc7_dump: %s\n", err.msg);
        return 1;
    }
    const model_input_t *in = feat_extractor_input(ex);
    const int dim = feat_extractor_dim(ex);
    float *x = malloc(sizeof(float) * 3 * in->crop * in->crop), *fc7 = malloc(sizeof(float) * dim);
    for (int i = 1; i < argc && x && fc7; i++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        data_image_t *im = NULL;
        if (data_read_file(argv[i], 0, &buf, &len, &err) ||
            !(im = feat_extractor_decode(ex, buf, len, 0, &err)) ||
            data_center_crop(im, in->crop, &in->norm, x, &err) ||
            feat_extract_batch(ex, x, 1, fc7, &err)) {
            printf("ERROR %s\n", err.msg);
        } else {
            for (int k = 0; k < dim; k++)
                printf("%s%.9g", k ? " " : "", (double)fc7[k]);
            printf("\n");
        }
        data_image_free(im);
        free(buf);
    }
    free(x);
    free(fc7);
    feat_extractor_free(ex);
    return 0;
}
