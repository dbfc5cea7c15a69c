/* Private to model/: workspace internals and the BLAS include. */
#ifndef IMGRET_MODEL_INTERNAL_H
#define IMGRET_MODEL_INTERNAL_H

#include "model/model.h"

#include <cblas.h>

enum {
    WS_COL = 0, /* im2col columns (and their gradient), one buffer per thread */
    WS_GRAD_W,  /* per-thread weight-gradient accumulators */
    WS_GRAD_B,  /* per-thread bias-gradient accumulators */
    WS_SLOTS
};

/* Makes sure every thread's buffer in `slot` holds at least `count` floats.
 * Call outside parallel regions. Contents are not kept across a grow. */
int ws_reserve(model_workspace_t *ws, int slot, size_t count, util_err_t *err);
/* The buffer of thread `tid` in `slot` (reserved beforehand). */
float *ws_buf(model_workspace_t *ws, int slot, int tid);
int ws_threads(const model_workspace_t *ws);

#endif
