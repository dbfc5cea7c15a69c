/* Writes what the server tests serve: a small AlexNet (alexnet-small, 1x28x28
 * input, fc6/fc7 narrowed to 256, 10 named classes, random weights), a
 * 32-bit autoencoder for its FC7 (random weights, standardised on random
 * ReLU-like vectors), and a few images (JPEG grey and colour, PNG).
 *
 *   server_fixture DIR [FC7]  -> DIR/model.imgret DIR/ae.imgret DIR/{a,b}.jpg DIR/c.png
 * (FC7: fc6/fc7 width, default 256; bench/server_load.sh uses the paper's 4096). */
#include "autoencoder/autoencoder.h"
#include "data/data.h"
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *what, const util_err_t *err) {
    fprintf(stderr, "server_fixture: %s: %s\n", what, err->msg);
    return 1;
}

static int write_image(const char *dir, const char *name, int w, int h, int c, uint64_t seed) {
    util_err_t err = {{0}};
    data_image_t *im = data_image_create(w, h, c, &err);
    if (!im) return die(name, &err);
    util_rng_t rng;
    util_rng_seed(&rng, seed);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++)
                im->pixels[((size_t)y * w + x) * c + k] =
                    (uint8_t)((x * 7 + y * 3 + k * 50 + (int)util_rng_below(&rng, 40)) & 255);
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = strstr(name, ".png") ? data_image_write_png(im, path, &err)
                                  : data_image_write_jpeg(im, path, 90, &err);
    data_image_free(im);
    return rc ? die(name, &err) : 0;
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: server_fixture DIR [FC7]\n");
        return 2;
    }
    const char *dir = argv[1];
    const int fc7 = argc == 3 ? atoi(argv[2]) : 256;
    if (fc7 < 16 || fc7 > 4096) {
        fprintf(stderr, "server_fixture: FC7 width %d is not in [16, 4096]\n", fc7);
        return 2;
    }
    util_err_t err = {{0}};
    model_spec_t spec;
    if (model_spec_alexnet_small(&spec, 1, 28, 10, &err)) return die("spec", &err);
    spec.layer[model_spec_find(&spec, "fc6")].out = fc7;
    spec.layer[model_spec_find(&spec, "fc7")].out = fc7;
    snprintf(spec.name, sizeof spec.name, "alexnet-small-test");
    model_net_t *net = model_net_create(&spec, 1, &err);
    if (!net) return die("net", &err);
    model_net_init(net, 42);
    model_file_t *mf = model_file_from_net(net, 0, &err);
    if (!mf) return die("model file", &err);
    static const char *const names[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                          "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                          "Bag",         "Ankle boot"};
    if (model_file_set_class_names(mf, names, 10, &err)) return die("class names", &err);
    mf->norm.stored_size = 32; /* Fashion-MNIST style: 28x28 items padded by 2 */
    mf->norm.mean_kind = MODEL_MEAN_PIXEL;
    mf->norm.mean_pixel[0] = 72.9f;
    mf->norm.scale = 1.0f / 64;
    char path[1200];
    snprintf(path, sizeof path, "%s/model.imgret", dir);
    if (model_file_save(mf, path, &err)) return die(path, &err);
    model_file_free(mf);
    model_net_free(net);

    int hidden[1] = {64};
    ae_t *ae = ae_create(fc7, hidden, 1, 32, 7, &err);
    if (!ae) return die("autoencoder", &err);
    const size_t n = 64;
    float *x = malloc(sizeof(float) * n * (size_t)fc7);
    util_rng_t rng;
    util_rng_seed(&rng, 3);
    for (size_t i = 0; i < n * (size_t)fc7; i++) {
        float v = (float)util_rng_normal(&rng);
        x[i] = v > 0 ? v : 0;
    }
    if (ae_fit_standardisation(ae, x, n, 0, &err)) return die("standardisation", &err);
    snprintf(path, sizeof path, "%s/ae.imgret", dir);
    if (ae_save(ae, path, "server tests: random weights", &err)) return die(path, &err);
    ae_free(ae);
    free(x);

    if (write_image(dir, "a.jpg", 28, 28, 1, 1) || write_image(dir, "b.jpg", 64, 48, 3, 2) ||
        write_image(dir, "c.png", 40, 40, 3, 3))
        return 1;
    printf("fixture written to %s\n", dir);
    return 0;
}
