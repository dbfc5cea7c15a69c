/* The NCCL part of the fake (see fake_cuda.h): communicators from
 * ncclCommInitAll, and all-reduce collected between ncclGroupStart and
 * ncclGroupEnd, then performed at the outermost ncclGroupEnd (summed in
 * rank order, in place allowed), as one thread driving every rank of a
 * clique must call it. What real NCCL would hang on (a collective that not
 * every rank joined, or a multi-rank collective outside a group from one
 * thread) is reported as ncclInvalidUsage instead. */
#include "tests/gpu/fake_cuda/fake_cuda.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <stdlib.h>
#include <string.h>

typedef struct clique {
    int n;    /* ranks */
    int live; /* communicators not yet destroyed */
} clique_t;

struct ncclComm {
    clique_t *clique;
    int rank;
    int device;
};

typedef struct pending {
    ncclComm_t comm;
    const float *send;
    float *recv;
    size_t count;
    ncclRedOp_t op;
} pending_t;

static _Thread_local int group_depth;
static _Thread_local pending_t *queue;
static _Thread_local size_t queued, queue_cap;

const char *ncclGetErrorString(ncclResult_t result) {
    switch (result) {
    case ncclSuccess:
        return "no error";
    case ncclUnhandledCudaError:
        return "unhandled cuda error";
    case ncclSystemError:
        return "unhandled system error";
    case ncclInternalError:
        return "internal error";
    case ncclInvalidArgument:
        return "invalid argument";
    case ncclInvalidUsage:
        return "invalid usage";
    case ncclRemoteError:
        return "remote process exited or there was a network error";
    case ncclInProgress:
        return "NCCL operation in progress";
    default:
        return "unknown result code";
    }
}

ncclResult_t ncclCommInitAll(ncclComm_t *comm, int ndev, const int *devlist) {
    const char *call = "ncclCommInitAll";
    if (!comm || ndev < 1) {
        fake_cuda_report(call, "%s", !comm ? "NULL comm array" : "fewer than one device");
        return ncclInvalidArgument;
    }
    int count = fake_cuda_device_count();
    for (int i = 0; i < ndev; i++) {
        int d = devlist ? devlist[i] : i;
        if (d < 0 || d >= count) {
            fake_cuda_report(call, "device %d does not exist (%d devices)", d, count);
            return ncclInvalidArgument;
        }
        for (int j = 0; j < i; j++)
            if (devlist && devlist[j] == d) {
                fake_cuda_report(call, "device %d appears twice in the device list", d);
                return ncclInvalidUsage;
            }
    }
    clique_t *c = malloc(sizeof *c);
    if (!c) return ncclSystemError;
    c->n = ndev;
    c->live = 0;
    for (int i = 0; i < ndev; i++) {
        comm[i] = malloc(sizeof *comm[i]);
        if (!comm[i]) {
            for (int j = 0; j < i; j++)
                free(comm[j]);
            free(c);
            return ncclSystemError;
        }
        comm[i]->clique = c;
        comm[i]->rank = i;
        comm[i]->device = devlist ? devlist[i] : i;
        c->live++;
    }
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!comm) return ncclSuccess;
    clique_t *c = comm->clique;
    free(comm);
    if (--c->live == 0) free(c);
    return ncclSuccess;
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int *count) {
    if (!comm || !count) return ncclInvalidArgument;
    *count = comm->clique->n;
    return ncclSuccess;
}

ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int *device) {
    if (!comm || !device) return ncclInvalidArgument;
    *device = comm->device;
    return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank) {
    if (!comm || !rank) return ncclInvalidArgument;
    *rank = comm->rank;
    return ncclSuccess;
}

static void queue_clear(void) {
    free(queue);
    queue = NULL;
    queued = queue_cap = 0;
}

static float reduce(ncclRedOp_t op, float a, float b) {
    switch (op) {
    case ncclProd:
        return a * b;
    case ncclMax:
        return a > b ? a : b;
    case ncclMin:
        return a < b ? a : b;
    default:
        return a + b; /* ncclSum, ncclAvg (divided at the end) */
    }
}

/* Performs the collective of queue[first] with every rank's entry. */
static ncclResult_t run_clique(size_t first, int *done) {
    const char *call = "ncclGroupEnd";
    clique_t *c = queue[first].comm->clique;
    pending_t *by_rank[64] = {0};
    if (c->n > 64) return ncclInternalError;
    for (size_t i = first; i < queued; i++) {
        if (done[i] || queue[i].comm->clique != c) continue;
        pending_t *p = &queue[i];
        if (by_rank[p->comm->rank]) {
            fake_cuda_report(call, "rank %d joined the same all-reduce twice in one group",
                             p->comm->rank);
            return ncclInvalidUsage;
        }
        if (p->count != queue[first].count || p->op != queue[first].op) {
            fake_cuda_report(call,
                             "ranks disagree on the all-reduce: %zu vs %zu elements, op %d "
                             "vs %d",
                             p->count, queue[first].count, (int)p->op, (int)queue[first].op);
            return ncclInvalidUsage;
        }
        by_rank[p->comm->rank] = p;
        done[i] = 1;
    }
    for (int r = 0; r < c->n; r++)
        if (!by_rank[r]) {
            fake_cuda_report(call,
                             "rank %d of %d never joined the all-reduce (real NCCL would "
                             "hang)",
                             r, c->n);
            return ncclInvalidUsage;
        }
    size_t count = queue[first].count;
    float *sum = malloc((count ? count : 1) * sizeof(float));
    if (!sum) return ncclSystemError;
    memcpy(sum, by_rank[0]->send, count * sizeof(float));
    for (int r = 1; r < c->n; r++)
        for (size_t i = 0; i < count; i++)
            sum[i] = reduce(queue[first].op, sum[i], by_rank[r]->send[i]);
    if (queue[first].op == ncclAvg)
        for (size_t i = 0; i < count; i++)
            sum[i] /= (float)c->n;
    for (int r = 0; r < c->n; r++)
        memcpy(by_rank[r]->recv, sum, count * sizeof(float));
    free(sum);
    return ncclSuccess;
}

static ncclResult_t run_queue(void) {
    ncclResult_t r = ncclSuccess;
    int *done = calloc(queued ? queued : 1, sizeof(int));
    if (!done) r = ncclSystemError;
    for (size_t i = 0; r == ncclSuccess && i < queued; i++)
        if (!done[i]) r = run_clique(i, done);
    free(done);
    queue_clear();
    return r;
}

ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count,
                           ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                           cudaStream_t stream) {
    const char *call = "ncclAllReduce";
    if (!comm) {
        fake_cuda_report(call, "NULL communicator");
        return ncclInvalidArgument;
    }
    if (datatype != ncclFloat32) {
        fake_cuda_report(call, "data type %d: the fake reduces ncclFloat32 only", (int)datatype);
        return ncclInvalidArgument;
    }
    if (op < ncclSum || op > ncclAvg) {
        fake_cuda_report(call, "reduction %d is not an ncclRedOp_t", (int)op);
        return ncclInvalidArgument;
    }
    int sd = fake_cuda_stream_device(stream);
    if (sd >= 0 && sd != comm->device) {
        fake_cuda_report(call, "stream of device %d for the communicator of device %d", sd,
                         comm->device);
        return ncclInvalidArgument;
    }
    if (count > 0 &&
        (fake_cuda_check_ptr(call, "sendbuff", sendbuff, count * sizeof(float), comm->device) ||
         fake_cuda_check_ptr(call, "recvbuff", recvbuff, count * sizeof(float), comm->device)))
        return ncclInvalidArgument;
    if (group_depth == 0 && comm->clique->n > 1) {
        fake_cuda_report(call,
                         "rank %d of %d outside ncclGroupStart/End: one thread driving "
                         "every rank would hang here",
                         comm->rank, comm->clique->n);
        return ncclInvalidUsage;
    }
    if (queued == queue_cap) {
        size_t cap = queue_cap ? 2 * queue_cap : 16;
        pending_t *q = realloc(queue, cap * sizeof *q);
        if (!q) return ncclSystemError;
        queue = q;
        queue_cap = cap;
    }
    queue[queued++] = (pending_t){comm, sendbuff, recvbuff, count, op};
    return group_depth == 0 ? run_queue() : ncclSuccess;
}

ncclResult_t ncclGroupStart(void) {
    group_depth++;
    return ncclSuccess;
}

ncclResult_t ncclGroupEnd(void) {
    if (group_depth == 0) {
        fake_cuda_report("ncclGroupEnd", "no ncclGroupStart to end");
        return ncclInvalidUsage;
    }
    if (--group_depth > 0) return ncclSuccess;
    return run_queue();
}
