/* Writes the browser test's model: the small AlexNet for 28x28 greyscale
 * Fashion-MNIST with fc6/fc7 narrowed to 256 (a forward pass in milliseconds),
 * random weights, the Fashion-MNIST class names and the normalisation the
 * CLI reads back (32x32 padded input, one mean pixel, inputs scaled by 1/64).
 * Untrained: the page test checks plumbing and rendering, not accuracy.
 * usage: web_fixture_model OUT.imgret */
#include "model/model.h"

#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: web_fixture_model OUT.imgret\n");
        return 2;
    }
    static const char *const names[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                          "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                          "Bag",         "Ankle boot"};
    util_err_t err = {{0}};
    model_spec_t s;
    if (model_spec_alexnet_small(&s, 1, 28, 10, &err)) goto fail;
    s.layer[model_spec_find(&s, "fc6")].out = 256;
    s.layer[model_spec_find(&s, "fc7")].out = 256;
    for (int i = 0; i < s.n_layers; i++) {
        if (s.layer[i].kind == MODEL_CONV) s.layer[i].weight_std = 0.1f;
        if (s.layer[i].kind == MODEL_FC) s.layer[i].weight_std = 0.05f;
        s.layer[i].bias_init = 0.0f;
    }
    model_net_t *net = model_net_create(&s, 1, &err);
    if (!net) goto fail;
    model_net_init(net, 11);
    model_file_t *mf = model_file_from_net(net, 0, &err);
    model_net_free(net);
    if (!mf) goto fail;
    mf->norm.mean_kind = MODEL_MEAN_PIXEL;
    mf->norm.mean_pixel[0] = 72.94f; /* Fashion-MNIST's mean grey level */
    mf->norm.scale = 1.0f / 64.0f;
    mf->norm.stored_size = 32;
    int rc = model_file_set_class_names(mf, names, 10, &err) || model_file_save(mf, argv[1], &err);
    model_file_free(mf);
    if (rc) goto fail;
    return 0;
fail:
    fprintf(stderr, "web_fixture_model: %s\n", err.msg);
    return 1;
}
