/* Device names ("cpu", "cpu:1", "gpu:0"), placements, and the backend of a
 * device. */
#include "model/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

model_placement_t model_placement_cpu(void) {
    model_placement_t pl;
    memset(&pl, 0, sizeof pl);
    pl.n_devices = 1;
    pl.device[0].kind = MODEL_DEVICE_CPU;
    return pl;
}

int model_device_parse(const char *name, model_device_t *dev, util_err_t *err) {
    if (!name || !dev) return util_fail(err, "device: NULL name");
    const char *rest;
    if (!strncmp(name, "cpu-staged", 10)) {
        dev->kind = MODEL_DEVICE_CPU_STAGED;
        rest = name + 10;
    } else if (!strncmp(name, "cpu", 3)) {
        dev->kind = MODEL_DEVICE_CPU;
        rest = name + 3;
    } else if (!strncmp(name, "gpu", 3)) {
        dev->kind = MODEL_DEVICE_GPU;
        rest = name + 3;
    } else if (!strncmp(name, "cuda", 4)) {
        dev->kind = MODEL_DEVICE_GPU;
        rest = name + 4;
    } else {
        return util_fail(err, "device '%s': expected cpu, cpu:N, gpu, gpu:N or cpu-staged:N", name);
    }
    dev->index = 0;
    if (*rest == '\0') return 0;
    char *end;
    long v = *rest == ':' ? strtol(rest + 1, &end, 10) : -1;
    if (*rest != ':' || end == rest + 1 || *end != '\0' || v < 0 || v > 255)
        return util_fail(err, "device '%s': expected cpu, cpu:N, gpu or gpu:N (N from 0 to 255)",
                         name);
    dev->index = (int)v;
    return 0;
}

int model_placement_parse(const char *devices, const char *parallel, model_placement_t *pl,
                          util_err_t *err) {
    if (!devices || !pl) return util_fail(err, "devices: NULL list");
    memset(pl, 0, sizeof *pl);
    if (!parallel || !strcmp(parallel, "columns") || !strcmp(parallel, "model"))
        pl->parallel = MODEL_PARALLEL_COLUMNS;
    else if (!strcmp(parallel, "data"))
        pl->parallel = MODEL_PARALLEL_DATA;
    else
        return util_fail(err, "parallel '%s': expected columns or data", parallel);
    const char *p = devices;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char name[32];
        if (len == 0 || len >= sizeof name)
            return util_fail(err, "devices '%s': empty or overlong name", devices);
        if (pl->n_devices == MODEL_MAX_DEVICES)
            return util_fail(err, "devices '%s': at most %d devices", devices, MODEL_MAX_DEVICES);
        memcpy(name, p, len);
        name[len] = '\0';
        model_device_t *d = &pl->device[pl->n_devices];
        if (model_device_parse(name, d, err)) return -1;
        for (int i = 0; i < pl->n_devices; i++) {
            if (pl->device[i].kind != d->kind)
                return util_fail(err, "devices '%s': devices of different kinds cannot be mixed",
                                 devices);
            /* A GPU may be named twice (two columns sharing one GPU, as the
             * GPU tests do on a one-GPU machine); a CPU device never. */
            if (pl->device[i].index == d->index && d->kind != MODEL_DEVICE_GPU)
                return util_fail(err, "devices '%s': %s appears twice", devices, name);
        }
        pl->n_devices++;
        p += len;
        if (*p == ',') p++;
    }
    if (pl->n_devices == 0) return util_fail(err, "devices: empty list");
    return 0;
}

int model_placement_repeats(const model_placement_t *pl) {
    for (int i = 0; i < pl->n_devices; i++)
        for (int j = 0; j < i; j++)
            if (pl->device[i].kind == pl->device[j].kind &&
                pl->device[i].index == pl->device[j].index)
                return 1;
    return 0;
}

void model_placement_str(const model_placement_t *pl, char *buf, size_t size) {
    size_t used = 0;
    if (size == 0) return;
    buf[0] = '\0';
    for (int i = 0; i < pl->n_devices && used < size; i++) {
        int w = snprintf(buf + used, size - used, "%s%s:%d", i ? "," : "",
                         pl->device[i].kind == MODEL_DEVICE_GPU          ? "gpu"
                         : pl->device[i].kind == MODEL_DEVICE_CPU_STAGED ? "cpu-staged"
                                                                         : "cpu",
                         pl->device[i].index);
        if (w < 0) return;
        used += (size_t)w;
    }
    if (pl->n_devices > 1 && used < size)
        snprintf(buf + used, size - used, " (%s)",
                 pl->parallel == MODEL_PARALLEL_DATA ? "data parallel" : "two-column split");
}

int model_cuda_built(void) {
#ifdef IMGRET_HAVE_CUDA
    return 1;
#else
    return 0;
#endif
}

int model_gpu_count(util_err_t *why) {
#ifdef IMGRET_HAVE_CUDA
    return model_cuda_device_count(why);
#else
    util_fail(why, "this imgret was built without CUDA (configure with -DIMGRET_CUDA=ON on a "
                   "machine with nvcc and cuDNN)");
    return 0;
#endif
}

model_backend_t *model_backend_create(const model_device_t *dev, util_err_t *err) {
    if (dev->kind == MODEL_DEVICE_CPU || dev->kind == MODEL_DEVICE_CPU_STAGED) {
        if (!model_cpu_kernels(err)) return NULL;
        model_backend_t *be = dev->kind == MODEL_DEVICE_CPU ? model_backend_cpu_create()
                                                            : model_backend_cpu_staged_create();
        if (!be) util_fail(err, "cpu:%d: out of memory", dev->index);
        return be;
    }
#ifdef IMGRET_HAVE_CUDA
    util_err_t why = {{0}};
    int n = model_cuda_device_count(&why);
    if (n == 0) {
        util_fail(err, "gpu:%d asked for, but no GPU is usable here (%s)", dev->index, why.msg);
        return NULL;
    }
    if (dev->index >= n) {
        util_fail(err, "gpu:%d asked for, but this machine has %d GPU%s (gpu:0%s)", dev->index, n,
                  n == 1 ? "" : "s", n == 1 ? "" : " and up");
        return NULL;
    }
    return model_backend_cuda_create(dev->index, err);
#else
    util_fail(err,
              "gpu:%d asked for, but this imgret was built without CUDA (configure with "
              "-DIMGRET_CUDA=ON on a machine with nvcc and cuDNN)",
              dev->index);
    return NULL;
#endif
}
