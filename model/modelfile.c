/* imgret's model file: a 96-byte header, then one protobuf ModelFile
 * (proto/model_file.proto) in two sections:
 *
 *   0  "IMGRETMF"            magic
 *   8  u32 version (1)       little-endian, as every number here
 *  12  u32 header bytes (96)
 *  16  u64 model section bytes
 *  24  u64 checkpoint section bytes (0: not a checkpoint)
 *  32  SHA-256 of the model section (the content hash, the model's identity)
 *  64  SHA-256 of the checkpoint section (zero when there is none)
 *  96  model section: ModelFile without field 15
 *      checkpoint section: field 15 (key, length, Checkpoint)
 *
 * The lengths are checked against the file size before anything is
 * allocated, the hashes before anything is parsed, and the parsed contents
 * against the spec before the file is handed out. */
#define _DEFAULT_SOURCE /* MADV_HUGEPAGE */
#include "model/interop_internal.h"
#include "model_file.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef Imgret__Model__V1__ModelFile pb_file_t;
typedef Imgret__Model__V1__NetSpec pb_spec_t;
typedef Imgret__Model__V1__LayerSpec pb_layer_t;
typedef Imgret__Model__V1__Tensor pb_tensor_t;
typedef Imgret__Model__V1__Normalization pb_norm_t;
typedef Imgret__Model__V1__Checkpoint pb_ckpt_t;
typedef Imgret__Model__V1__Metric pb_metric_t;

#define MF_MAGIC "IMGRETMF"
#define MF_VERSION 1u
#define MF_HEADER 96
/* Key of ModelFile.checkpoint: field 15, wire type 2 (length-delimited). */
#define MF_CKPT_KEY ((15u << 3) | 2u)

/* ------------------------------------------------------------- in memory */

/* count zeroed floats, freed with free(). Large ones (AlexNet's fc6 weights
 * are 151 MB) go on transparent huge pages where the kernel gives them on
 * request: first touching 233 MB in 4 KiB pages costs ~60,000 page faults,
 * about a second on this VM (an import of bvlc_alexnet touches them all);
 * in 2 MiB pages, about a hundred. */
static float *floats_zeroed(size_t count) {
    const size_t huge = (size_t)2 << 20;
    size_t bytes = count * sizeof(float);
    if (bytes < 4 * huge) return calloc(count ? count : 1, sizeof(float));
    void *p = NULL;
    if (posix_memalign(&p, huge, bytes)) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE); /* advice only: 4 KiB pages if refused */
#endif
    memset(p, 0, bytes);
    return p;
}

static int tensor_alloc(model_tensor_t *t, const char *name, int ndim, const int *dims,
                        util_err_t *err) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->count = 1;
    for (int d = 0; d < ndim; d++) {
        t->dims[d] = dims[d];
        if (util_mul_size(t->count, (size_t)dims[d], &t->count))
            return util_fail(err, "%s: too many values", name);
    }
    if (util_mul_size(t->count, sizeof(float), &(size_t){0}))
        return util_fail(err, "%s: too many values", name);
    t->data = floats_zeroed(t->count);
    if (!t->data) return util_fail(err, "%s: out of memory for %zu values", name, t->count);
    return 0;
}

static void tensors_free(model_tensor_t *t, int n) {
    if (!t) return;
    for (int i = 0; i < n; i++)
        free(t[i].data);
    free(t);
}

static int logits_count(const model_spec_t *spec) {
    return spec->n_layers > 0 ? spec->layer[spec->n_layers - 1].out : 0;
}

/* The parameters a spec implies, named and shaped as model_net_create
 * makes them. shapes: from model_spec_shapes at batch 1. */
typedef struct expected_param {
    char name[24];
    int ndim, dims[4];
} expected_param_t;

static int expected_params(const model_spec_t *spec, expected_param_t *out, int *n,
                           util_err_t *err) {
    model_shape_t shapes[MODEL_MAX_LAYERS];
    if (model_spec_shapes(spec, 1, shapes, err)) return -1;
    *n = 0;
    for (int i = 0; i < spec->n_layers; i++) {
        const model_layer_spec_t *l = &spec->layer[i];
        model_shape_t in =
            i ? shapes[i - 1] : (model_shape_t){1, spec->in_c, spec->in_h, spec->in_w};
        char lname[sizeof l->name + 1];
        memcpy(lname, l->name, sizeof l->name);
        lname[sizeof l->name] = '\0';
        if (l->kind == MODEL_CONV) {
            expected_param_t *w = &out[(*n)++], *b = &out[(*n)++];
            snprintf(w->name, sizeof w->name, "%s.weight", lname);
            w->ndim = 4;
            w->dims[0] = l->out;
            w->dims[1] = in.c / l->groups;
            w->dims[2] = w->dims[3] = l->kernel;
            snprintf(b->name, sizeof b->name, "%s.bias", lname);
            b->ndim = 1;
            b->dims[0] = l->out;
        } else if (l->kind == MODEL_FC) {
            expected_param_t *w = &out[(*n)++], *b = &out[(*n)++];
            snprintf(w->name, sizeof w->name, "%s.weight", lname);
            w->ndim = 2;
            w->dims[0] = l->out;
            w->dims[1] = in.c * in.h * in.w;
            snprintf(b->name, sizeof b->name, "%s.bias", lname);
            b->ndim = 1;
            b->dims[0] = l->out;
        }
    }
    return 0;
}

model_file_t *model_file_create(const model_spec_t *spec, util_err_t *err) {
    expected_param_t ex[2 * MODEL_MAX_LAYERS];
    int n = 0;
    if (expected_params(spec, ex, &n, err)) return NULL;
    model_file_t *mf = calloc(1, sizeof *mf);
    if (!mf) {
        util_fail(err, "model file: out of memory");
        return NULL;
    }
    mf->spec = *spec;
    mf->norm.scale = 1.0f;
    mf->norm.stored_size = 256;
    mf->norm.stored_pad = -1;
    mf->param = calloc((size_t)n + 1, sizeof *mf->param);
    if (!mf->param) {
        free(mf);
        util_fail(err, "model file: out of memory");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (tensor_alloc(&mf->param[i], ex[i].name, ex[i].ndim, ex[i].dims, err)) {
            model_file_free(mf);
            return NULL;
        }
        mf->n_params = i + 1;
    }
    return mf;
}

static void checkpoint_free(model_checkpoint_t *c, int n_params) {
    if (!c) return;
    tensors_free(c->momentum, n_params);
    free(c->history);
    free(c);
}

static void class_names_free(model_file_t *mf) {
    for (int i = 0; i < mf->n_classes; i++)
        free(mf->class_names[i]);
    free(mf->class_names);
    mf->class_names = NULL;
    mf->n_classes = 0;
}

void model_file_free(model_file_t *mf) {
    if (!mf) return;
    tensors_free(mf->param, mf->n_params);
    free(mf->norm.mean_image);
    class_names_free(mf);
    checkpoint_free(mf->checkpoint, mf->n_params);
    free(mf);
}

model_tensor_t *model_file_find_param(model_file_t *mf, const char *name) {
    for (int i = 0; i < mf->n_params; i++)
        if (strcmp(mf->param[i].name, name) == 0) return &mf->param[i];
    return NULL;
}

size_t model_file_param_total(const model_file_t *mf) {
    size_t total = 0;
    for (int i = 0; i < mf->n_params; i++)
        total += mf->param[i].count;
    return total;
}

static int check_tensor_against(const model_tensor_t *t, const expected_param_t *e,
                                const char *what, util_err_t *err) {
    int same = t->ndim == e->ndim;
    for (int d = 0; same && d < e->ndim; d++)
        same = t->dims[d] == e->dims[d];
    if (!same) {
        char want[64], have[64];
        ix_dims_str(e->dims, e->ndim, want, sizeof want);
        ix_dims_str(t->dims, t->ndim, have, sizeof have);
        return util_fail(err, "%s%s: expected %s, file has %s", e->name, what, want, have);
    }
    size_t count = 1;
    for (int d = 0; d < t->ndim; d++)
        count *= (size_t)t->dims[d];
    if (t->count != count || !t->data)
        return util_fail(err, "%s%s: %zu values for a %zu-value shape", e->name, what, t->count,
                         count);
    return 0;
}

static int check_tensor_set(const model_tensor_t *t, int n, const expected_param_t *ex, int nex,
                            const char *what, util_err_t *err) {
    for (int i = 0; i < nex; i++) {
        const model_tensor_t *found = NULL;
        for (int j = 0; j < n && !found; j++)
            if (strcmp(t[j].name, ex[i].name) == 0) found = &t[j];
        if (!found) return util_fail(err, "%s%s: missing from the file", ex[i].name, what);
        if (check_tensor_against(found, &ex[i], what, err)) return -1;
    }
    for (int j = 0; j < n; j++) {
        int known = 0;
        for (int i = 0; i < nex && !known; i++)
            known = strcmp(t[j].name, ex[i].name) == 0;
        if (!known)
            return util_fail(err, "%s%s: the file has it but the spec has no such parameter",
                             t[j].name, what);
        for (int k = 0; k < j; k++)
            if (strcmp(t[j].name, t[k].name) == 0)
                return util_fail(err, "%s%s: appears twice", t[j].name, what);
    }
    return 0;
}

int model_file_check(const model_file_t *mf, util_err_t *err) {
    if (!mf) return util_fail(err, "model file: none given");
    expected_param_t ex[2 * MODEL_MAX_LAYERS];
    int nex = 0;
    if (expected_params(&mf->spec, ex, &nex, err)) return -1;
    if (mf->n_params < 0 || (mf->n_params && !mf->param))
        return util_fail(err, "model file: bad parameter list");
    if (check_tensor_set(mf->param, mf->n_params, ex, nex, "", err)) return -1;
    const model_norm_t *nm = &mf->norm;
    if (nm->channel_order != MODEL_CHANNELS_RGB && nm->channel_order != MODEL_CHANNELS_BGR)
        return util_fail(err, "normalisation: unknown channel order %d", (int)nm->channel_order);
    if (nm->mean_kind < MODEL_MEAN_NONE || nm->mean_kind > MODEL_MEAN_PIXEL)
        return util_fail(err, "normalisation: unknown mean kind %d", (int)nm->mean_kind);
    if (!(nm->scale > 0.0f) || !isfinite(nm->scale))
        return util_fail(err, "normalisation: scale %g is not a positive number",
                         (double)nm->scale);
    if (nm->stored_size < 0 || nm->stored_size > MODEL_MAX_DIM)
        return util_fail(err, "normalisation: stored size %d is not valid", nm->stored_size);
    if (nm->stored_pad < -1 || (nm->stored_pad > 0 && 2 * nm->stored_pad >= nm->stored_size))
        return util_fail(err, "normalisation: stored pad %d does not fit stored size %d",
                         nm->stored_pad, nm->stored_size);
    if (nm->mean_image) {
        if (nm->mean_c != mf->spec.in_c || nm->mean_h < mf->spec.in_h ||
            nm->mean_w < mf->spec.in_w || nm->mean_h > MODEL_MAX_DIM || nm->mean_w > MODEL_MAX_DIM)
            return util_fail(
                err, "normalisation: mean image %dx%dx%d does not cover %dx%dx%d crops", nm->mean_c,
                nm->mean_h, nm->mean_w, mf->spec.in_c, mf->spec.in_h, mf->spec.in_w);
    } else if (nm->mean_kind == MODEL_MEAN_IMAGE) {
        return util_fail(err, "normalisation: mean kind is 'image' but there is no mean image");
    }
    if (mf->n_classes != 0 && mf->n_classes != logits_count(&mf->spec))
        return util_fail(err, "class names: %d names for %d outputs", mf->n_classes,
                         logits_count(&mf->spec));
    for (int i = 0; i < mf->n_classes; i++)
        if (!mf->class_names || !mf->class_names[i])
            return util_fail(err, "class names: name %d missing", i);
    const model_checkpoint_t *c = mf->checkpoint;
    if (c) {
        if (c->momentum && check_tensor_set(c->momentum, mf->n_params, ex, nex, " (momentum)", err))
            return -1;
        if (!c->momentum) return util_fail(err, "checkpoint: no momentum buffers");
        if (c->n_history < 0 || (c->n_history && !c->history))
            return util_fail(err, "checkpoint: bad history");
    }
    return 0;
}

int model_file_add_checkpoint(model_file_t *mf, util_err_t *err) {
    if (mf->checkpoint) return 0;
    model_checkpoint_t *c = calloc(1, sizeof *c);
    if (!c) return util_fail(err, "checkpoint: out of memory");
    c->momentum = calloc((size_t)mf->n_params + 1, sizeof *c->momentum);
    if (!c->momentum) {
        free(c);
        return util_fail(err, "checkpoint: out of memory");
    }
    for (int i = 0; i < mf->n_params; i++) {
        const model_tensor_t *p = &mf->param[i];
        if (tensor_alloc(&c->momentum[i], p->name, p->ndim, p->dims, err)) {
            checkpoint_free(c, i + 1);
            return -1;
        }
    }
    mf->checkpoint = c;
    return 0;
}

int model_file_set_class_names(model_file_t *mf, const char *const *names, int n, util_err_t *err) {
    int want = logits_count(&mf->spec);
    if (n != want) return util_fail(err, "class names: %d names for %d outputs", n, want);
    char **copy = calloc((size_t)n + 1, sizeof *copy);
    if (!copy) return util_fail(err, "class names: out of memory");
    for (int i = 0; i < n; i++) {
        copy[i] = strdup(names[i] ? names[i] : "");
        if (!copy[i]) {
            for (int j = 0; j < i; j++)
                free(copy[j]);
            free(copy);
            return util_fail(err, "class names: out of memory");
        }
    }
    class_names_free(mf);
    mf->class_names = copy;
    mf->n_classes = n;
    return 0;
}

int model_file_read_class_names(model_file_t *mf, const char *path, util_err_t *err) {
    size_t len;
    uint8_t *buf = util_read_file(path, 64u << 20, &len, err);
    if (!buf) return -1;
    int cap = MODEL_MAX_CLASSES, n = 0;
    const char **names = calloc((size_t)cap, sizeof *names);
    char *text = malloc(len + 1);
    if (!names || !text) {
        free(names);
        free(text);
        free(buf);
        return util_fail(err, "%s: out of memory", path);
    }
    memcpy(text, buf, len);
    text[len] = '\0';
    free(buf);
    int rc = 0;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r') line[--l] = '\0';
        if (n == cap) {
            rc = util_fail(err, "%s: more than %d class names", path, cap);
            break;
        }
        names[n++] = line;
        line = nl ? nl + 1 : NULL;
    }
    while (rc == 0 && n > 0 && names[n - 1][0] == '\0')
        n--;
    if (rc == 0 && model_file_set_class_names(mf, names, n, err))
        rc = util_fail_prefix(err, "%s", path);
    free(names);
    free(text);
    return rc;
}

int model_norm_set_mean_image(model_norm_t *norm, int c, int h, int w, const float *mean,
                              util_err_t *err) {
    if (c < 1 || c > 4 || h < 1 || w < 1 || h > MODEL_MAX_DIM || w > MODEL_MAX_DIM)
        return util_fail(err, "mean image: impossible shape %dx%dx%d", c, h, w);
    size_t plane = (size_t)h * w, count = (size_t)c * plane;
    float *copy = malloc(count * sizeof *copy);
    if (!copy) return util_fail(err, "mean image: out of memory");
    memcpy(copy, mean, count * sizeof *copy);
    free(norm->mean_image);
    norm->mean_image = copy;
    norm->mean_c = c;
    norm->mean_h = h;
    norm->mean_w = w;
    norm->mean_kind = MODEL_MEAN_IMAGE;
    memset(norm->mean_pixel, 0, sizeof norm->mean_pixel);
    for (int k = 0; k < c; k++) {
        double s = 0;
        for (size_t i = 0; i < plane; i++)
            s += copy[k * plane + i];
        norm->mean_pixel[k] = (float)(s / (double)plane);
    }
    return 0;
}

void model_hash_hex(const uint8_t hash[MODEL_HASH_BYTES], char hex[2 * MODEL_HASH_BYTES + 1]) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < MODEL_HASH_BYTES; i++) {
        hex[2 * i] = digits[hash[i] >> 4];
        hex[2 * i + 1] = digits[hash[i] & 15];
    }
    hex[2 * MODEL_HASH_BYTES] = '\0';
}

/* ---------------------------------------------------------------- saving */

/* The protobuf structs point into mf (nothing copied); they live on the
 * heap only because of their number. */
typedef struct pb_build {
    pb_file_t file;
    pb_spec_t spec;
    pb_layer_t layers[MODEL_MAX_LAYERS];
    pb_layer_t *layer_ptr[MODEL_MAX_LAYERS];
    char layer_names[MODEL_MAX_LAYERS][17];
    pb_tensor_t *tensors; /* params then momentum */
    pb_tensor_t **param_ptr, **mom_ptr;
    int32_t *dims; /* 4 per tensor */
    pb_norm_t norm;
    pb_tensor_t mean;
    int32_t mean_dims[3];
    pb_ckpt_t ckpt;
    pb_metric_t *metrics;
    pb_metric_t **metric_ptr;
    uint64_t rng[4], drng[4];
} pb_build_t;

static void pb_build_free(pb_build_t *b) {
    if (!b) return;
    free(b->tensors);
    free(b->param_ptr);
    free(b->mom_ptr);
    free(b->dims);
    free(b->metrics);
    free(b->metric_ptr);
    free(b);
}

static void fill_tensor(pb_tensor_t *pt, int32_t *dims, const model_tensor_t *t) {
    imgret__model__v1__tensor__init(pt);
    pt->name = (char *)t->name;
    for (int d = 0; d < t->ndim; d++)
        dims[d] = t->dims[d];
    pt->n_dims = (size_t)t->ndim;
    pt->dims = dims;
    pt->n_data = t->count;
    pt->data = t->data;
}

static pb_build_t *pb_build(const model_file_t *mf, util_err_t *err) {
    pb_build_t *b = calloc(1, sizeof *b);
    int np = mf->n_params, nt = np * (mf->checkpoint ? 2 : 1);
    int nh = mf->checkpoint ? mf->checkpoint->n_history : 0;
    if (b) {
        b->tensors = calloc((size_t)nt + 1, sizeof *b->tensors);
        b->param_ptr = calloc((size_t)np + 1, sizeof *b->param_ptr);
        b->mom_ptr = calloc((size_t)np + 1, sizeof *b->mom_ptr);
        b->dims = calloc(4 * ((size_t)nt + 1), sizeof *b->dims);
        b->metrics = calloc((size_t)nh + 1, sizeof *b->metrics);
        b->metric_ptr = calloc((size_t)nh + 1, sizeof *b->metric_ptr);
    }
    if (!b || !b->tensors || !b->param_ptr || !b->mom_ptr || !b->dims || !b->metrics ||
        !b->metric_ptr) {
        pb_build_free(b);
        util_fail(err, "model file: out of memory");
        return NULL;
    }
    const model_spec_t *s = &mf->spec;
    imgret__model__v1__net_spec__init(&b->spec);
    b->spec.name = (char *)s->name;
    b->spec.has_in_c = b->spec.has_in_h = b->spec.has_in_w = 1;
    b->spec.in_c = s->in_c;
    b->spec.in_h = s->in_h;
    b->spec.in_w = s->in_w;
    int nl = s->n_layers < 0 ? 0 : s->n_layers > MODEL_MAX_LAYERS ? MODEL_MAX_LAYERS : s->n_layers;
    for (int i = 0; i < nl; i++) {
        const model_layer_spec_t *l = &s->layer[i];
        pb_layer_t *p = &b->layers[i];
        imgret__model__v1__layer_spec__init(p);
        memcpy(b->layer_names[i], l->name, sizeof l->name);
        b->layer_names[i][sizeof l->name] = '\0';
        p->name = b->layer_names[i];
        p->has_kind = 1;
        p->kind = (Imgret__Model__V1__LayerSpec__Kind)l->kind;
#define SET(f, v)                                                                                  \
    do {                                                                                           \
        p->has_##f = 1;                                                                            \
        p->f = (v);                                                                                \
    } while (0)
        switch (l->kind) {
        case MODEL_CONV:
            SET(out, l->out);
            SET(kernel, l->kernel);
            SET(stride, l->stride);
            SET(pad, l->pad);
            SET(groups, l->groups);
            SET(weight_std, l->weight_std);
            SET(bias_init, l->bias_init);
            break;
        case MODEL_FC:
            SET(out, l->out);
            SET(weight_std, l->weight_std);
            SET(bias_init, l->bias_init);
            break;
        case MODEL_MAXPOOL:
            SET(kernel, l->kernel);
            SET(stride, l->stride);
            SET(pad, l->pad);
            SET(ceil_mode, l->ceil_mode);
            break;
        case MODEL_LRN:
            SET(lrn_size, l->lrn.size);
            SET(lrn_k, l->lrn.k);
            SET(lrn_alpha, l->lrn.alpha);
            SET(lrn_beta, l->lrn.beta);
            SET(lrn_alpha_mode, (Imgret__Model__V1__LayerSpec__LrnAlpha)l->lrn.alpha_mode);
            break;
        case MODEL_DROPOUT:
            SET(dropout, l->dropout);
            break;
        default:
            break;
        }
#undef SET
        b->layer_ptr[i] = p;
    }
    b->spec.n_layer = (size_t)nl;
    b->spec.layer = b->layer_ptr;

    imgret__model__v1__model_file__init(&b->file);
    b->file.has_format_version = 1;
    b->file.format_version = MF_VERSION;
    b->file.spec = &b->spec;
    for (int i = 0; i < np; i++) {
        fill_tensor(&b->tensors[i], &b->dims[4 * i], &mf->param[i]);
        b->param_ptr[i] = &b->tensors[i];
    }
    b->file.n_param = (size_t)np;
    b->file.param = b->param_ptr;

    const model_norm_t *nm = &mf->norm;
    imgret__model__v1__normalization__init(&b->norm);
    b->norm.has_channel_order = b->norm.has_mean_kind = b->norm.has_scale = 1;
    b->norm.has_stored_size = 1;
    b->norm.channel_order = (Imgret__Model__V1__Normalization__ChannelOrder)nm->channel_order;
    b->norm.mean_kind = (Imgret__Model__V1__Normalization__MeanKind)nm->mean_kind;
    b->norm.scale = nm->scale;
    b->norm.stored_size = nm->stored_size;
    b->norm.has_stored_pad = nm->stored_pad >= 0;
    b->norm.stored_pad = nm->stored_pad;
    int c = s->in_c < 0 ? 0 : s->in_c > 4 ? 4 : s->in_c;
    b->norm.n_mean_pixel = (size_t)c;
    b->norm.mean_pixel = (float *)nm->mean_pixel;
    if (nm->mean_image) {
        imgret__model__v1__tensor__init(&b->mean);
        b->mean.name = "mean";
        b->mean_dims[0] = nm->mean_c;
        b->mean_dims[1] = nm->mean_h;
        b->mean_dims[2] = nm->mean_w;
        b->mean.n_dims = 3;
        b->mean.dims = b->mean_dims;
        b->mean.n_data = (size_t)nm->mean_c * nm->mean_h * nm->mean_w;
        b->mean.data = nm->mean_image;
        b->norm.mean_image = &b->mean;
    }
    if (nm->has_eigen) {
        b->norm.n_eigval = 3;
        b->norm.eigval = (float *)nm->eigval;
        b->norm.n_eigvec = 9;
        b->norm.eigvec = (float *)nm->eigvec;
    }
    b->file.norm = &b->norm;
    b->file.n_class_name = (size_t)mf->n_classes;
    b->file.class_name = mf->class_names;
    b->file.source = (char *)mf->source;

    const model_checkpoint_t *k = mf->checkpoint;
    if (k) {
        pb_ckpt_t *pc = &b->ckpt;
        imgret__model__v1__checkpoint__init(pc);
        pc->has_epoch = pc->has_step = pc->has_lr = pc->has_momentum = pc->has_weight_decay = 1;
        pc->epoch = k->epoch;
        pc->step = k->step;
        pc->lr = k->sgd.lr;
        pc->momentum = k->sgd.momentum;
        pc->weight_decay = k->sgd.weight_decay;
        memcpy(b->rng, k->rng.s, sizeof b->rng);
        memcpy(b->drng, k->dropout_rng.s, sizeof b->drng);
        pc->n_rng_state = pc->n_dropout_rng_state = 4;
        pc->rng_state = b->rng;
        pc->dropout_rng_state = b->drng;
        for (int i = 0; i < np; i++) {
            fill_tensor(&b->tensors[np + i], &b->dims[4 * (np + i)], &k->momentum[i]);
            b->mom_ptr[i] = &b->tensors[np + i];
        }
        pc->n_momentum_buffer = (size_t)np;
        pc->momentum_buffer = b->mom_ptr;
        for (int i = 0; i < nh; i++) {
            const model_metric_t *m = &k->history[i];
            pb_metric_t *pm = &b->metrics[i];
            imgret__model__v1__metric__init(pm);
            pm->has_epoch = pm->has_step = pm->has_lr = pm->has_train_loss = 1;
            pm->has_train_top1_error = pm->has_val_loss = pm->has_val_top1_error = 1;
            pm->has_val_top5_error = pm->has_seconds = 1;
            pm->epoch = m->epoch;
            pm->step = m->step;
            pm->lr = m->lr;
            pm->train_loss = m->train_loss;
            pm->train_top1_error = m->train_top1_error;
            pm->val_loss = m->val_loss;
            pm->val_top1_error = m->val_top1_error;
            pm->val_top5_error = m->val_top5_error;
            pm->seconds = m->seconds;
            b->metric_ptr[i] = pm;
        }
        pc->n_history = (size_t)nh;
        pc->history = b->metric_ptr;
    }
    return b;
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static size_t put_varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    do {
        p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

static int save(model_file_t *mf, const char *path, int checked, util_err_t *err) {
    if (checked && model_file_check(mf, err)) return util_fail_prefix(err, "%s: not saved", path);
    pb_build_t *b = pb_build(mf, err);
    if (!b) return -1;
    uint64_t model_len = protobuf_c_message_get_packed_size(&b->file.base);
    uint64_t ckpt_body = mf->checkpoint ? protobuf_c_message_get_packed_size(&b->ckpt.base) : 0;
    uint8_t key[16];
    size_t key_len = 0;
    if (mf->checkpoint) {
        key_len = put_varint(key, MF_CKPT_KEY);
        key_len += put_varint(key + key_len, ckpt_body);
    }
    uint64_t ckpt_len = mf->checkpoint ? key_len + ckpt_body : 0;
    uint8_t header[MF_HEADER] = {0};
    memcpy(header, MF_MAGIC, 8);
    put_u32(header + 8, MF_VERSION);
    put_u32(header + 12, MF_HEADER);
    put_u64(header + 16, model_len);
    put_u64(header + 24, ckpt_len);
    ix_writer_t w;
    if (ix_writer_open(&w, path, err)) {
        pb_build_free(b);
        return -1;
    }
    uint8_t hash[MODEL_HASH_BYTES];
    ix_writer_write(&w, header, sizeof header);
    int rc = ix_writer_hash_begin(&w, err);
    if (rc == 0) {
        ix_writer_pack(&w, &b->file.base);
        rc = ix_writer_hash_end(&w, hash, err);
    }
    if (rc == 0 && mf->checkpoint) {
        rc = ix_writer_hash_begin(&w, err);
        if (rc == 0) {
            ix_writer_write(&w, key, key_len);
            ix_writer_pack(&w, &b->ckpt.base);
            rc = ix_writer_hash_end(&w, header + 64, err);
        }
    }
    pb_build_free(b);
    memcpy(header + 32, hash, sizeof hash);
    if (rc == 0) rc = ix_writer_pwrite(&w, 0, header, sizeof header, err);
    if (rc) {
        ix_writer_abort(&w);
        return -1;
    }
    if (ix_writer_commit(&w, err)) return -1;
    memcpy(mf->hash, hash, sizeof hash);
    return 0;
}

int model_file_save(model_file_t *mf, const char *path, util_err_t *err) {
    return save(mf, path, 1, err);
}

int mf_save_unchecked(model_file_t *mf, const char *path, util_err_t *err) {
    return save(mf, path, 0, err);
}

/* --------------------------------------------------------------- loading */

/* Takes a parsed tensor into t; the float array is moved, not copied (the
 * unpacked message was allocated by the default allocator, i.e. malloc). */
static int take_tensor(model_tensor_t *t, pb_tensor_t *pt, const char *what, util_err_t *err) {
    memset(t, 0, sizeof *t);
    if (!pt->name || !pt->name[0]) return util_fail(err, "%s: a tensor without a name", what);
    if (strlen(pt->name) >= sizeof t->name)
        return util_fail(err, "%s: tensor name '%.40s' is too long", what, pt->name);
    snprintf(t->name, sizeof t->name, "%s", pt->name);
    if (pt->n_dims < 1 || pt->n_dims > 4)
        return util_fail(err, "%s %s: %zu dimensions (1 to 4 allowed)", what, t->name, pt->n_dims);
    t->ndim = (int)pt->n_dims;
    size_t count = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (pt->dims[d] < 1 || pt->dims[d] > MODEL_MAX_DIM)
            return util_fail(err, "%s %s: dimension %d is %d", what, t->name, d, (int)pt->dims[d]);
        t->dims[d] = pt->dims[d];
        count *= (size_t)pt->dims[d];
    }
    if (count != pt->n_data)
        return util_fail(err, "%s %s: shape %dx... needs %zu values, file has %zu", what, t->name,
                         t->dims[0], count, pt->n_data);
    t->count = count;
    t->data = pt->data;
    pt->data = NULL;
    pt->n_data = 0;
    return 0;
}

static int take_spec(model_spec_t *s, const pb_spec_t *ps, util_err_t *err) {
    memset(s, 0, sizeof *s);
    if (!ps) return util_fail(err, "no network spec");
    if (ps->name && strlen(ps->name) >= sizeof s->name)
        return util_fail(err, "spec name '%.40s...' is too long", ps->name);
    snprintf(s->name, sizeof s->name, "%s", ps->name ? ps->name : "");
    s->in_c = ps->in_c;
    s->in_h = ps->in_h;
    s->in_w = ps->in_w;
    if (ps->n_layer < 1 || ps->n_layer > MODEL_MAX_LAYERS)
        return util_fail(err, "spec: %zu layers (1 to %d allowed)", ps->n_layer, MODEL_MAX_LAYERS);
    s->n_layers = (int)ps->n_layer;
    for (int i = 0; i < s->n_layers; i++) {
        const pb_layer_t *p = ps->layer[i];
        model_layer_spec_t *l = &s->layer[i];
        if (!p->name || !p->name[0] || strlen(p->name) >= sizeof l->name)
            return util_fail(err, "spec: layer %d has no name or one over %zu characters", i,
                             sizeof l->name - 1);
        snprintf(l->name, sizeof l->name, "%s", p->name);
        if (!p->has_kind || (int)p->kind < MODEL_CONV || (int)p->kind > MODEL_DROPOUT)
            return util_fail(err, "spec: layer %d (%s) has unknown kind %d", i, l->name,
                             p->has_kind ? (int)p->kind : -1);
        l->kind = (model_layer_kind_t)p->kind;
        l->out = p->out;
        l->kernel = p->kernel;
        l->stride = p->stride;
        l->pad = p->pad;
        l->groups = p->groups;
        l->ceil_mode = p->ceil_mode;
        l->lrn.size = p->lrn_size;
        l->lrn.k = p->lrn_k;
        l->lrn.alpha = p->lrn_alpha;
        l->lrn.beta = p->lrn_beta;
        l->lrn.alpha_mode = (model_lrn_alpha_t)p->lrn_alpha_mode;
        l->dropout = p->dropout;
        l->weight_std = p->weight_std;
        l->bias_init = p->bias_init;
    }
    return model_spec_shapes(s, 1, NULL, err);
}

static int take_norm(model_norm_t *nm, pb_norm_t *pn, util_err_t *err) {
    memset(nm, 0, sizeof *nm);
    nm->scale = 1.0f;
    nm->stored_size = 256;
    nm->stored_pad = -1;
    if (!pn) return 0;
    nm->channel_order = (model_channel_order_t)pn->channel_order;
    nm->mean_kind = (model_mean_kind_t)pn->mean_kind;
    if (pn->has_scale) nm->scale = pn->scale;
    if (pn->has_stored_size) nm->stored_size = pn->stored_size;
    if (pn->has_stored_pad) nm->stored_pad = pn->stored_pad;
    if (pn->n_mean_pixel > 4)
        return util_fail(err, "normalisation: %zu mean pixel values", pn->n_mean_pixel);
    for (size_t i = 0; i < pn->n_mean_pixel; i++)
        nm->mean_pixel[i] = pn->mean_pixel[i];
    if (pn->n_eigval || pn->n_eigvec) {
        if (pn->n_eigval != 3 || pn->n_eigvec != 9)
            return util_fail(err,
                             "normalisation: eigen data has %zu values and %zu vectors "
                             "(3 and 9 expected)",
                             pn->n_eigval, pn->n_eigvec);
        nm->has_eigen = 1;
        memcpy(nm->eigval, pn->eigval, sizeof nm->eigval);
        memcpy(nm->eigvec, pn->eigvec, sizeof nm->eigvec);
    }
    if (pn->mean_image) {
        model_tensor_t t;
        if (take_tensor(&t, pn->mean_image, "mean image", err)) return -1;
        if (t.ndim != 3) {
            free(t.data);
            return util_fail(err, "mean image: %d dimensions, 3 expected", t.ndim);
        }
        nm->mean_image = t.data;
        nm->mean_c = t.dims[0];
        nm->mean_h = t.dims[1];
        nm->mean_w = t.dims[2];
    }
    return 0;
}

static int take_checkpoint(model_file_t *mf, pb_ckpt_t *pc, util_err_t *err) {
    model_checkpoint_t *c = calloc(1, sizeof *c);
    if (!c) return util_fail(err, "checkpoint: out of memory");
    mf->checkpoint = c;
    c->epoch = pc->epoch;
    c->step = pc->step;
    c->sgd.lr = pc->lr;
    c->sgd.momentum = pc->momentum;
    c->sgd.weight_decay = pc->weight_decay;
    if ((pc->n_rng_state && pc->n_rng_state != 4) ||
        (pc->n_dropout_rng_state && pc->n_dropout_rng_state != 4))
        return util_fail(err, "checkpoint: an RNG state is not 4 words");
    if (pc->n_rng_state) memcpy(c->rng.s, pc->rng_state, sizeof c->rng.s);
    if (pc->n_dropout_rng_state) memcpy(c->dropout_rng.s, pc->dropout_rng_state, sizeof c->rng.s);
    if (pc->n_momentum_buffer != (size_t)mf->n_params)
        return util_fail(err, "checkpoint: %zu momentum buffers for %d parameters",
                         pc->n_momentum_buffer, mf->n_params);
    c->momentum = calloc((size_t)mf->n_params + 1, sizeof *c->momentum);
    if (!c->momentum) return util_fail(err, "checkpoint: out of memory");
    for (int i = 0; i < mf->n_params; i++)
        if (take_tensor(&c->momentum[i], pc->momentum_buffer[i], "momentum", err)) return -1;
    if (pc->n_history > 1000000)
        return util_fail(err, "checkpoint: %zu history entries", pc->n_history);
    c->history = calloc(pc->n_history + 1, sizeof *c->history);
    if (!c->history) return util_fail(err, "checkpoint: out of memory");
    c->n_history = (int)pc->n_history;
    for (int i = 0; i < c->n_history; i++) {
        const pb_metric_t *m = pc->history[i];
        c->history[i] = (model_metric_t){m->epoch,
                                         m->step,
                                         m->lr,
                                         m->train_loss,
                                         m->train_top1_error,
                                         m->val_loss,
                                         m->val_top1_error,
                                         m->val_top5_error,
                                         m->seconds};
    }
    return 0;
}

static model_file_t *from_pb(pb_file_t *pf, util_err_t *err) {
    if (pf->has_format_version && pf->format_version != MF_VERSION) {
        util_fail(err, "body format version %u (this imgret reads %u)", pf->format_version,
                  MF_VERSION);
        return NULL;
    }
    model_file_t *mf = calloc(1, sizeof *mf);
    if (!mf) {
        util_fail(err, "out of memory");
        return NULL;
    }
    if (take_spec(&mf->spec, pf->spec, err)) goto fail;
    if (pf->n_param > 2 * MODEL_MAX_LAYERS) {
        util_fail(err, "%zu parameters, more than any spec has", pf->n_param);
        goto fail;
    }
    mf->param = calloc(pf->n_param + 1, sizeof *mf->param);
    if (!mf->param) {
        util_fail(err, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < pf->n_param; i++) {
        if (take_tensor(&mf->param[i], pf->param[i], "parameter", err)) goto fail;
        mf->n_params = (int)i + 1;
    }
    if (take_norm(&mf->norm, pf->norm, err)) goto fail;
    if (pf->n_class_name > MODEL_MAX_CLASSES) {
        util_fail(err, "%zu class names", pf->n_class_name);
        goto fail;
    }
    if (pf->n_class_name) {
        mf->class_names = calloc(pf->n_class_name, sizeof *mf->class_names);
        if (!mf->class_names) {
            util_fail(err, "out of memory");
            goto fail;
        }
        /* Moved, not copied: these strings are malloc'd by the unpacker. */
        for (size_t i = 0; i < pf->n_class_name; i++) {
            mf->class_names[i] = pf->class_name[i];
            pf->class_name[i] = NULL;
            mf->n_classes = (int)i + 1;
        }
        pf->n_class_name = 0;
    }
    snprintf(mf->source, sizeof mf->source, "%s", pf->source ? pf->source : "");
    return mf;
fail:
    model_file_free(mf);
    return NULL;
}

model_file_t *model_file_load(const char *path, util_err_t *err) {
    model_file_t *mf = NULL;
    uint8_t *body = NULL;
    pb_file_t *pf = NULL;
    pb_ckpt_t *pc = NULL;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        util_fail_kind(err, errno == ENOENT ? UTIL_ERR_NOT_FOUND : UTIL_ERR_IO,
                       "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    uint8_t h[MF_HEADER];
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        util_fail(err, "%s: not a regular file", path);
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8 || pread(fd, h, 8, 0) != 8 || memcmp(h, MF_MAGIC, 8) != 0) {
        util_fail_kind(err, UTIL_ERR_CORRUPT,
                       "%s: not an imgret model file (no '%s' magic at the start)", path, MF_MAGIC);
        goto out;
    }
    if (size < MF_HEADER || pread(fd, h, MF_HEADER, 0) != MF_HEADER) {
        util_fail_kind(err, UTIL_ERR_CORRUPT,
                       "%s: truncated: %llu bytes, shorter than the %d-byte header", path,
                       (unsigned long long)size, MF_HEADER);
        goto out;
    }
    if (get_u32(h + 8) != MF_VERSION || get_u32(h + 12) != MF_HEADER) {
        util_fail_kind(err, UTIL_ERR_UNSUPPORTED,
                       "%s: format version %u with a %u-byte header (this imgret reads version %u)",
                       path, get_u32(h + 8), get_u32(h + 12), MF_VERSION);
        goto out;
    }
    uint64_t model_len = get_u64(h + 16), ckpt_len = get_u64(h + 24);
    if (model_len > MODEL_FILE_MAX_BYTES || ckpt_len > MODEL_FILE_MAX_BYTES) {
        util_fail_kind(err, UTIL_ERR_CORRUPT,
                       "%s: header declares sections of %llu and %llu bytes, over the %llu-byte "
                       "limit (corrupt header)",
                       path, (unsigned long long)model_len, (unsigned long long)ckpt_len,
                       (unsigned long long)MODEL_FILE_MAX_BYTES);
        goto out;
    }
    uint64_t want = MF_HEADER + model_len + ckpt_len;
    if (want != size) {
        util_fail_kind(err, UTIL_ERR_CORRUPT,
                       "%s: %s: the header declares %llu bytes in all, the file has %llu", path,
                       want > size ? "truncated" : "trailing bytes after the body",
                       (unsigned long long)want, (unsigned long long)size);
        goto out;
    }
    body = malloc(model_len + ckpt_len + 1);
    if (!body) {
        util_fail(err, "%s: out of memory for %llu bytes", path,
                  (unsigned long long)(model_len + ckpt_len));
        goto out;
    }
    if (util_pread_all(fd, body, model_len + ckpt_len, MF_HEADER, path, err)) goto out;
    uint8_t hash[MODEL_HASH_BYTES], ckpt_hash[MODEL_HASH_BYTES] = {0};
    if (ix_sha256(body, model_len, hash, err)) goto out;
    if (memcmp(hash, h + 32, MODEL_HASH_BYTES) != 0) {
        util_fail_kind(err, UTIL_ERR_CORRUPT,
                       "%s: content hash mismatch: the model section is corrupt", path);
        goto out;
    }
    if (ckpt_len && ix_sha256(body + model_len, ckpt_len, ckpt_hash, err)) goto out;
    if (memcmp(ckpt_hash, h + 64, MODEL_HASH_BYTES) != 0) {
        util_fail_kind(err, UTIL_ERR_CORRUPT,
                       "%s: checkpoint hash mismatch: the checkpoint section is corrupt", path);
        goto out;
    }
    pf = imgret__model__v1__model_file__unpack(NULL, model_len, body);
    if (!pf) {
        util_fail_kind(err, UTIL_ERR_CORRUPT,
                       "%s: the model section is not a valid ModelFile message", path);
        goto out;
    }
    if (pf->checkpoint) {
        util_fail(err, "%s: the model section holds a checkpoint (it belongs after it)", path);
        goto out;
    }
    if (ckpt_len) {
        /* key, length, Checkpoint: exactly what save wrote. */
        const uint8_t *p = body + model_len, *end = p + ckpt_len;
        uint64_t len = 0;
        int shift = 0;
        int ok = p < end && *p++ == MF_CKPT_KEY;
        while (ok && p < end && shift < 64) {
            len |= (uint64_t)(*p & 0x7f) << shift;
            shift += 7;
            if (!(*p++ & 0x80)) break;
        }
        if (!ok || len != (uint64_t)(end - p)) {
            util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: the checkpoint section is malformed", path);
            goto out;
        }
        pc = imgret__model__v1__checkpoint__unpack(NULL, len, p);
        if (!pc) {
            util_fail_kind(err, UTIL_ERR_CORRUPT,
                           "%s: the checkpoint section is not a valid Checkpoint message", path);
            goto out;
        }
    }
    free(body);
    body = NULL;
    mf = from_pb(pf, err);
    if (mf && pc && take_checkpoint(mf, pc, err)) {
        model_file_free(mf);
        mf = NULL;
    }
    if (mf && model_file_check(mf, err)) {
        model_file_free(mf);
        mf = NULL;
    }
    if (!mf) {
        /* The sections passed their hashes but not the checks: the file was
         * written wrong, which is damage as far as a reader can tell. */
        if (err && util_err_kind(err) == UTIL_ERR_INTERNAL) err->kind = UTIL_ERR_CORRUPT;
        util_fail_prefix(err, "%s", path);
        goto out;
    }
    memcpy(mf->hash, hash, sizeof hash);
out:
    if (pf) imgret__model__v1__model_file__free_unpacked(pf, NULL);
    if (pc) imgret__model__v1__checkpoint__free_unpacked(pc, NULL);
    free(body);
    close(fd);
    return mf;
}

/* ------------------------------------------------------------ net <-> file */

int model_file_to_net(const model_file_t *mf, model_net_t *net, util_err_t *err) {
    if (model_file_check(mf, err)) return -1;
    if (model_net_n_params(net) != mf->n_params)
        return util_fail(err, "net has %d parameters, the file %d", model_net_n_params(net),
                         mf->n_params);
    for (int i = 0; i < mf->n_params; i++) {
        const model_tensor_t *t = &mf->param[i];
        model_param_t *p = model_net_find_param(net, t->name);
        if (!p) return util_fail(err, "%s: the net has no such parameter", t->name);
        int same = p->ndim == t->ndim && p->count == t->count;
        for (int d = 0; same && d < t->ndim; d++)
            same = p->dims[d] == t->dims[d];
        if (!same) {
            char want[64], have[64];
            ix_dims_str(p->dims, p->ndim, want, sizeof want);
            ix_dims_str(t->dims, t->ndim, have, sizeof have);
            return util_fail(err, "%s: expected %s, file has %s", t->name, want, have);
        }
        memcpy(p->data, t->data, t->count * sizeof(float));
        if (mf->checkpoint)
            memcpy(p->momentum, mf->checkpoint->momentum[i].data, t->count * sizeof(float));
        else
            memset(p->momentum, 0, t->count * sizeof(float));
    }
    if (mf->checkpoint) *model_net_rng(net) = mf->checkpoint->dropout_rng;
    return 0;
}

model_net_t *model_net_create_from_file(const model_file_t *mf, int max_batch, util_err_t *err) {
    model_placement_t pl = model_placement_cpu();
    return model_net_create_from_file_on(mf, max_batch, &pl, err);
}

model_net_t *model_net_create_from_file_on(const model_file_t *mf, int max_batch,
                                           const model_placement_t *pl, util_err_t *err) {
    model_net_t *net = model_net_create_on(&mf->spec, max_batch, pl, err);
    if (!net) return NULL;
    if (model_file_to_net(mf, net, err)) {
        model_net_free(net);
        return NULL;
    }
    return net;
}

model_file_t *model_file_from_net(model_net_t *net, int with_checkpoint, util_err_t *err) {
    model_file_t *mf = model_file_create(model_net_spec(net), err);
    if (!mf) return NULL;
    if (with_checkpoint && model_file_add_checkpoint(mf, err)) {
        model_file_free(mf);
        return NULL;
    }
    for (int i = 0; i < mf->n_params; i++) {
        model_param_t *p = model_net_find_param(net, mf->param[i].name);
        if (!p || p->count != mf->param[i].count) {
            util_fail(err, "%s: the net's parameter does not match its spec", mf->param[i].name);
            model_file_free(mf);
            return NULL;
        }
        memcpy(mf->param[i].data, p->data, p->count * sizeof(float));
        if (with_checkpoint)
            memcpy(mf->checkpoint->momentum[i].data, p->momentum, p->count * sizeof(float));
    }
    if (with_checkpoint) mf->checkpoint->dropout_rng = *model_net_rng(net);
    return mf;
}

/* The zero border training put around each image inside the stored size
 * (model.h, model_input_from_file). */
static int stored_pad(const model_spec_t *s, const model_norm_t *n, int stored) {
    if (n->stored_pad >= 0) return n->stored_pad;
    return stored == s->in_h + 4 && s->in_h <= 32 ? 2 : 0;
}

int model_input_from_file(const model_file_t *mf, model_input_t *in, util_err_t *err) {
    memset(in, 0, sizeof *in);
    const model_spec_t *s = &mf->spec;
    const model_norm_t *n = &mf->norm;
    if (s->in_h != s->in_w)
        return util_fail(err, "model %s: non-square input %dx%d", s->name, s->in_h, s->in_w);
    if (n->channel_order != MODEL_CHANNELS_RGB)
        return util_fail(err, "model %s expects BGR input; images are fed RGB", s->name);
    const int mean_image = n->mean_kind == MODEL_MEAN_IMAGE && n->mean_image;
    if (mean_image && (n->mean_c != s->in_c || n->mean_h != n->mean_w))
        return util_fail(err, "model %s: mean image %dx%dx%d does not fit %d-channel square input",
                         s->name, n->mean_c, n->mean_h, n->mean_w, s->in_c);
    /* The mean image is subtracted window by window, so it has the stored
     * geometry whatever stored_size says. */
    int stored = mean_image ? n->mean_h : n->stored_size > 0 ? n->stored_size : s->in_h;
    if (stored < s->in_h) stored = s->in_h; /* a crop must fit the stored image */
    const int pad = stored_pad(s, n, stored);
    if (stored - 2 * pad < 1)
        return util_fail(err, "model %s: stored pad %d leaves nothing of a %d stored image",
                         s->name, pad, stored);
    in->crop = s->in_h;
    in->prep = (data_prep_t){s->in_c, stored - 2 * pad, pad};
    if (!(in->stats = data_stats_create(s->in_c, stored, stored, err))) return -1;
    if (mean_image)
        memcpy(in->stats->mean, n->mean_image, sizeof(float) * (size_t)n->mean_c * stored * stored);
    for (int c = 0; c < s->in_c && c < 3; c++)
        in->stats->channel_mean[c] = n->mean_pixel[c];
    if (n->has_eigen) {
        memcpy(in->stats->eigval, n->eigval, sizeof n->eigval);
        memcpy(in->stats->eigvec, n->eigvec, sizeof n->eigvec);
    }
    in->norm.stats = in->stats;
    in->norm.scale = n->scale > 0 ? n->scale : 1.0f;
    in->norm.mean_mode = mean_image                         ? DATA_MEAN_PIXEL
                         : n->mean_kind == MODEL_MEAN_PIXEL ? DATA_MEAN_CHANNEL
                                                            : DATA_MEAN_NONE;
    return 0;
}

void model_input_free(model_input_t *in) {
    data_stats_free(in->stats);
    memset(in, 0, sizeof *in);
}
