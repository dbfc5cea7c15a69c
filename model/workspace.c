#include "model/internal.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

struct model_workspace {
    int threads;
    float **buf[WS_SLOTS];
    size_t cap[WS_SLOTS];
};

model_workspace_t *model_workspace_create(void) {
    model_workspace_t *ws = calloc(1, sizeof *ws);
    if (!ws) return NULL;
    ws->threads = util_num_threads();
    for (int s = 0; s < WS_SLOTS; s++) {
        ws->buf[s] = calloc((size_t)ws->threads, sizeof(float *));
        if (!ws->buf[s]) {
            model_workspace_free(ws);
            return NULL;
        }
    }
    return ws;
}

void model_workspace_free(model_workspace_t *ws) {
    if (!ws) return;
    for (int s = 0; s < WS_SLOTS; s++) {
        if (!ws->buf[s]) continue;
        for (int t = 0; t < ws->threads; t++)
            free(ws->buf[s][t]);
        free(ws->buf[s]);
    }
    free(ws);
}

static int reserve(model_workspace_t *ws, int slot, size_t count, int threads, util_err_t *err) {
    if (count <= ws->cap[slot]) return 0;
    size_t bytes;
    if (util_mul_size(count, sizeof(float), &bytes))
        return util_fail(err, "workspace: %zu floats overflow", count);
    for (int t = 0; t < threads; t++) {
        /* 64-byte alignment for the vector kernels; contents need not survive. */
        float *p = NULL;
        size_t rounded = (bytes + 63) & ~(size_t)63;
        if (posix_memalign((void **)&p, 64, rounded))
            return util_fail(err, "workspace: out of memory for %zu bytes", bytes);
        free(ws->buf[slot][t]);
        ws->buf[slot][t] = p;
    }
    ws->cap[slot] = count;
    return 0;
}

int ws_reserve(model_workspace_t *ws, int slot, size_t count, util_err_t *err) {
    return reserve(ws, slot, count, ws->threads, err);
}

int ws_reserve_shared(model_workspace_t *ws, int slot, size_t count, util_err_t *err) {
    return reserve(ws, slot, count, 1, err);
}

float *ws_buf(model_workspace_t *ws, int slot, int tid) {
    return ws->buf[slot][tid];
}

int ws_threads(const model_workspace_t *ws) {
    return ws->threads;
}
