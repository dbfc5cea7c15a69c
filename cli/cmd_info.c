/* imgret info: what a model file holds — spec, parameter count,
 * normalisation, class names, content hash, checkpoint state. */
#include "cli/cli_args.h"
#include "cli/commands.h"
#include "model/model.h"

#include <stdio.h>
#include <string.h>

static const char *kind_name(model_layer_kind_t k) {
    static const char *const names[] = {"conv", "relu", "lrn", "maxpool", "fc", "dropout"};
    return (unsigned)k < 6 ? names[k] : "?";
}

int cmd_info(int argc, char **argv) {
    int nargs = 0;
    const cli_spec_t cli = {.command = "info",
                            .synopsis = "MODEL.imgret",
                            .about = "What a model file holds: spec, parameters, normalisation, "
                                     "class names,\ncontent hash, checkpoint state.",
                            .args = "MODEL.imgret",
                            .min_args = 1,
                            .max_args = 1};
    int go = cli_parse(&cli, argc, argv, &nargs);
    if (go != CLI_GO) return go;
    util_err_t err = {{0}};
    model_file_t *mf = model_file_load(argv[1], &err);
    if (!mf) {
        fprintf(stderr, "imgret info: %s\n", err.msg);
        return 1;
    }
    const model_spec_t *s = &mf->spec;
    model_shape_t shapes[MODEL_MAX_LAYERS];
    model_spec_shapes(s, 1, shapes, NULL);
    char hex[2 * MODEL_HASH_BYTES + 1];
    model_hash_hex(mf->hash, hex);
    printf("file:        %s\n", argv[1]);
    printf("content hash %s\n", hex);
    printf("source:      %s\n", mf->source[0] ? mf->source : "(imgret)");
    printf("net:         %s, input %dx%dx%d, %zu parameters, %s%s\n", s->name, s->in_c, s->in_h,
           s->in_w, model_file_param_total(mf),
           model_spec_check_paper_shape(s, NULL) == 0 ? "paper-shaped AlexNet" : "custom spec",
           model_spec_has_paper_widths(s) ? " with the paper's widths" : "");
    for (int i = 0; i < s->n_layers; i++) {
        const model_layer_spec_t *l = &s->layer[i];
        printf("  %-8s %-8s", l->name, kind_name(l->kind));
        switch (l->kind) {
        case MODEL_CONV:
            printf(" %d %dx%d/%d pad %d groups %d", l->out, l->kernel, l->kernel, l->stride, l->pad,
                   l->groups);
            break;
        case MODEL_LRN: {
            /* Both conventions, so a reader can compare with any source. */
            double a = l->lrn.alpha_mode == MODEL_LRN_ALPHA_PAPER ? l->lrn.alpha
                                                                  : l->lrn.alpha / l->lrn.size;
            printf(" size %d k %g beta %g alpha %g (%s convention; paper alpha %g)", l->lrn.size,
                   (double)l->lrn.k, (double)l->lrn.beta, (double)l->lrn.alpha,
                   l->lrn.alpha_mode == MODEL_LRN_ALPHA_PAPER ? "paper" : "alpha/size", a);
            break;
        }
        case MODEL_MAXPOOL:
            printf(" %dx%d/%d pad %d %s", l->kernel, l->kernel, l->stride, l->pad,
                   l->ceil_mode ? "ceil" : "floor");
            break;
        case MODEL_FC:
            printf(" %d", l->out);
            break;
        case MODEL_DROPOUT:
            printf(" p %g", (double)l->dropout);
            break;
        default:
            break;
        }
        printf("  -> %dx%dx%d\n", shapes[i].c, shapes[i].h, shapes[i].w);
    }
    const model_norm_t *n = &mf->norm;
    printf("input:       %s, stored size %d, scale %g, mean ",
           n->channel_order == MODEL_CHANNELS_BGR ? "BGR" : "RGB", n->stored_size,
           (double)n->scale);
    if (n->mean_kind == MODEL_MEAN_IMAGE)
        printf("image %dx%dx%d (channel averages %.2f %.2f %.2f)\n", n->mean_c, n->mean_h,
               n->mean_w, (double)n->mean_pixel[0], (double)n->mean_pixel[1],
               (double)n->mean_pixel[2]);
    else if (n->mean_kind == MODEL_MEAN_PIXEL)
        printf("pixel %.2f %.2f %.2f\n", (double)n->mean_pixel[0], (double)n->mean_pixel[1],
               (double)n->mean_pixel[2]);
    else
        printf("none\n");
    if (n->has_eigen)
        printf("pca:         eigval %g %g %g\n", (double)n->eigval[0], (double)n->eigval[1],
               (double)n->eigval[2]);
    printf("classes:     %d names", mf->n_classes);
    if (mf->n_classes) printf(" (first: %s)", mf->class_names[0]);
    printf("\n");
    if (mf->checkpoint) {
        const model_checkpoint_t *c = mf->checkpoint;
        printf("checkpoint:  epoch %d, step %lld, lr %g, momentum %g, weight decay %g, %d history "
               "entries\n",
               c->epoch, (long long)c->step, (double)c->sgd.lr, (double)c->sgd.momentum,
               (double)c->sgd.weight_decay, c->n_history);
    }
    model_file_free(mf);
    return 0;
}
