/* bench: writes the paper's AlexNet (227x227x3, random weights with the
 * paper's initialisation) as a model file with a per-channel mean, for
 * bench/extract.sh to time `imgret extract` on. Throughput does not depend on
 * the weights, and no command writes an untrained model.
 * Usage: bench_extract_model OUT.imgret R G B (the mean pixel, 0..255). */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: bench_extract_model OUT.imgret R G B\n");
        return 2;
    }
    model_spec_t spec;
    model_spec_alexnet(&spec);
    util_err_t err = {{0}};
    model_net_t *net = model_net_create(&spec, 1, &err);
    model_file_t *mf = NULL;
    if (net) {
        model_net_init(net, 1);
        mf = model_file_from_net(net, 0, &err);
    }
    if (mf) {
        mf->norm.mean_kind = MODEL_MEAN_PIXEL;
        for (int c = 0; c < 3; c++)
            mf->norm.mean_pixel[c] = (float)atof(argv[2 + c]);
        snprintf(mf->source, sizeof mf->source,
                 "bench/extract_model: paper AlexNet, paper initialisation (seed 1), untrained");
    }
    int rc = mf ? model_file_save(mf, argv[1], &err) : -1;
    if (rc) fprintf(stderr, "bench_extract_model: %s\n", err.msg);
    model_file_free(mf);
    model_net_free(net);
    return rc ? 1 : 0;
}
