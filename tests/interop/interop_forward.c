/* Test helper for oracle_interop.py: loads an imgret model file, runs the
 * forward pass on a float32 NCHW input file and writes the logits (and,
 * optionally, the model's mean image) as float32.
 *   interop_forward MODEL INPUT.f32 N LOGITS.f32 [MEAN.f32] */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>

static int write_f32(const char *path, const float *v, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(v, sizeof *v, n, f);
    return fclose(f) || w != n ? -1 : 0;
}

int main(int argc, char **argv) {
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: interop_forward MODEL INPUT.f32 N LOGITS.f32 [MEAN.f32]\n");
        return 2;
    }
    util_err_t err = {{0}};
    model_file_t *mf = model_file_load(argv[1], &err);
    int n = atoi(argv[3]);
    model_net_t *net = mf ? model_net_create_from_file(mf, n, &err) : NULL;
    if (!net) {
        fprintf(stderr, "interop_forward: %s\n", err.msg);
        model_file_free(mf);
        return 1;
    }
    const model_spec_t *s = &mf->spec;
    size_t count = (size_t)n * s->in_c * s->in_h * s->in_w;
    float *x = malloc(count * sizeof *x);
    FILE *f = fopen(argv[2], "rb");
    if (!x || !f || fread(x, sizeof *x, count, f) != count) {
        fprintf(stderr, "interop_forward: cannot read %zu floats from %s\n", count, argv[2]);
        return 1;
    }
    fclose(f);
    int rc = 0;
    if (model_net_forward(net, x, n, 0, &err)) {
        fprintf(stderr, "interop_forward: %s\n", err.msg);
        rc = 1;
    } else {
        model_shape_t ls;
        const float *logits = model_net_logits(net, &ls);
        if (write_f32(argv[4], logits, (size_t)n * ls.c)) rc = 1;
        if (argc == 6 && mf->norm.mean_image &&
            write_f32(argv[5], mf->norm.mean_image,
                      (size_t)mf->norm.mean_c * mf->norm.mean_h * mf->norm.mean_w))
            rc = 1;
    }
    free(x);
    model_net_free(net);
    model_file_free(mf);
    return rc;
}
