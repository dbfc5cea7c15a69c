/* Pictures a person watching training wants: the training curves and the
 * learned conv1 kernels (the paper's Figure 3), as PNG files. */
#ifndef IMGRET_CLI_PLOT_H
#define IMGRET_CLI_PLOT_H

#include "model/model.h"

/* Two panels: loss (train, validation) and error (train top-1, validation
 * top-1 and top-5) against the epoch. */
int cli_plot_curves(const model_epoch_metrics_t *h, int n, const char *path, util_err_t *err);

/* conv1's kernels tiled in a grid (the first half of the kernels, the
 * paper's first GPU column, above the second half), each scaled to the full
 * grey/colour range and magnified. */
int cli_plot_conv1(model_net_t *net, const char *path, util_err_t *err);

#endif
