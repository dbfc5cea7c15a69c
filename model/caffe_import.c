/* Import of a paper-shaped AlexNet from a Caffe .caffemodel: the 2014 V1
 * format (NetParameter.layers = 2, legacy num/channels/height/width blobs,
 * fully connected weights as (1, 1, out, in)) and the current one
 * (NetParameter.layer = 100, BlobShape), read through the subset
 * proto/caffe.proto. Caffe's conventions are converted: conv1 takes BGR in
 * Caffe and RGB in imgret (its input channels are reversed, and so are the
 * mean image's); LRN keeps Caffe's alpha/size convention and k; pooling
 * rounds up as Caffe's does.
 *
 * Speed: a bvlc_alexnet file is 233 MB of float blobs and a few KB of
 * everything else. The file is mapped, not read; a small walker over the
 * wire format (slim_net) copies everything but the blobs' float data into a
 * slim message that protobuf-c unpacks and checks as before, and records
 * where each blob's packed floats lie in the mapping; ix_build then copies
 * them once, straight into the model's parameters. Anything the walker does
 * not expect (a malformed length, data not packed, data given twice) makes
 * it step aside: the whole file is then unpacked by protobuf-c as it always
 * was, so truncated or corrupt files fail exactly as before. */
#define _DEFAULT_SOURCE /* MAP_POPULATE */
#include "caffe.pb-c.h"
#include "model/interop_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct caffe_layer {
    const char *name, *type;
    size_t n_blobs;
    Caffe__BlobProto **blobs;
    const Caffe__ConvolutionParameter *conv;
    const Caffe__DropoutParameter *dropout;
    const Caffe__InnerProductParameter *ip;
    const Caffe__LRNParameter *lrn;
    const Caffe__PoolingParameter *pool;
} caffe_layer_t;

/* The V1 enum values as the current format's type strings. */
static const char *v1_type(Caffe__V1LayerParameter__LayerType t) {
    switch (t) {
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONVOLUTION:
        return "Convolution";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INNER_PRODUCT:
        return "InnerProduct";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__LRN:
        return "LRN";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__POOLING:
        return "Pooling";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU:
        return "ReLU";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DROPOUT:
        return "Dropout";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SOFTMAX:
        return "Softmax";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SOFTMAX_LOSS:
        return "SoftmaxWithLoss";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ACCURACY:
        return "Accuracy";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DATA:
        return "Data";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__IMAGE_DATA:
        return "ImageData";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__MEMORY_DATA:
        return "MemoryData";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DUMMY_DATA:
        return "DummyData";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__HDF5_DATA:
        return "HDF5Data";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__WINDOW_DATA:
        return "WindowData";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SILENCE:
        return "Silence";
    case CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__SPLIT:
        return "Split";
    default:
        return NULL;
    }
}

/* Layers that carry no weights and do not change the logits: inputs, the
 * final softmax, losses and accuracy. */
static int is_ignored(const char *type) {
    static const char *const ignored[] = {"Data",     "ImageData",       "MemoryData", "DummyData",
                                          "HDF5Data", "WindowData",      "Input",      "Softmax",
                                          "Silence",  "SoftmaxWithLoss", "Accuracy",   "Split"};
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
        if (strcmp(type, ignored[i]) == 0) return 1;
    return 0;
}

/* ------------------------------------------------- the slim message walker */

/* Where one blob's packed float data lies in the mapped file. */
typedef struct blob_span {
    int v1;             /* in NetParameter.layers (V1) rather than .layer */
    size_t layer, blob; /* indexes in that repeated field and in the layer's blobs */
    const uint8_t *p;   /* little-endian floats, not necessarily aligned */
    size_t count;
} blob_span_t;

typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes_t;

typedef struct slim {
    bytes_t net, layer, blob; /* the slim message and two scratch levels */
    blob_span_t *spans;
    size_t n_spans, cap_spans;
} slim_t;

/* Wire types. */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

static int put(bytes_t *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (!q) return -1;
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

static int put_varint(bytes_t *b, uint64_t v) {
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return put(b, tmp, n);
}

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t c = *(*p)++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Reads one field's key at *p and finds its extent: [*start, *next) is the
 * whole field (key included), [*body, *next) its payload for WT_LEN.
 * -1 for anything the walker does not take on (groups, bad lengths). */
static int next_field(const uint8_t **p, const uint8_t *end, uint32_t *field, int *wire,
                      const uint8_t **body) {
    uint64_t key, n;
    if (get_varint(p, end, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff) return -1;
    *field = (uint32_t)(key >> 3);
    *wire = (int)(key & 7);
    switch (*wire) {
    case WT_VARINT:
        *body = *p;
        return get_varint(p, end, &n);
    case WT_I64:
        n = 8;
        break;
    case WT_I32:
        n = 4;
        break;
    case WT_LEN:
        if (get_varint(p, end, &n)) return -1;
        break;
    default:
        return -1;
    }
    if (n > (uint64_t)(end - *p)) return -1;
    *body = *p;
    *p += n;
    return 0;
}

/* Copies one BlobProto into s->blob without its data (5) and diff (6)
 * fields, recording where the data lies. */
static int slim_blob(slim_t *s, const uint8_t *p, const uint8_t *end, int v1, size_t layer,
                     size_t blob) {
    s->blob.len = 0;
    int seen_data = 0;
    while (p < end) {
        const uint8_t *start = p, *body;
        uint32_t field;
        int wire;
        if (next_field(&p, end, &field, &wire, &body)) return -1;
        if (field == 5 || field == 6) {
            /* Only one packed run each: protobuf-c would concatenate more. */
            if (wire != WT_LEN || (p - body) % 4) return -1;
            if (field == 6) continue; /* gradients: not needed */
            if (seen_data++) return -1;
            if (s->n_spans == s->cap_spans) {
                size_t cap = s->cap_spans ? 2 * s->cap_spans : 32;
                blob_span_t *q = realloc(s->spans, cap * sizeof *q);
                if (!q) return -1;
                s->spans = q;
                s->cap_spans = cap;
            }
            s->spans[s->n_spans++] = (blob_span_t){v1, layer, blob, body, (size_t)(p - body) / 4};
            continue;
        }
        if (put(&s->blob, start, (size_t)(p - start))) return -1;
    }
    return 0;
}

/* Copies one layer message into s->layer with its blobs slimmed. */
static int slim_layer(slim_t *s, const uint8_t *p, const uint8_t *end, int v1, size_t layer) {
    const uint32_t blobs_field = v1 ? 6 : 7;
    size_t blob = 0;
    s->layer.len = 0;
    while (p < end) {
        const uint8_t *start = p, *body;
        uint32_t field;
        int wire;
        if (next_field(&p, end, &field, &wire, &body)) return -1;
        if (field == blobs_field && wire == WT_LEN) {
            if (slim_blob(s, body, p, v1, layer, blob++) ||
                put_varint(&s->layer, (uint64_t)blobs_field << 3 | WT_LEN) ||
                put_varint(&s->layer, s->blob.len) || put(&s->layer, s->blob.p, s->blob.len))
                return -1;
            continue;
        }
        if (put(&s->layer, start, (size_t)(p - start))) return -1;
    }
    return 0;
}

/* The whole NetParameter, slimmed into s->net. -1: let protobuf-c read the
 * file instead. */
static int slim_net(slim_t *s, const uint8_t *p, const uint8_t *end) {
    size_t n_v1 = 0, n_new = 0;
    while (p < end) {
        const uint8_t *start = p, *body;
        uint32_t field;
        int wire;
        if (next_field(&p, end, &field, &wire, &body)) return -1;
        if ((field == 2 || field == 100) && wire == WT_LEN) {
            int v1 = field == 2;
            if (slim_layer(s, body, p, v1, v1 ? n_v1++ : n_new++) ||
                put_varint(&s->net, (uint64_t)field << 3 | WT_LEN) ||
                put_varint(&s->net, s->layer.len) || put(&s->net, s->layer.p, s->layer.len))
                return -1;
            continue;
        }
        if (put(&s->net, start, (size_t)(p - start))) return -1;
    }
    return 0;
}

static void slim_free(slim_t *s) {
    free(s->net.p);
    free(s->layer.p);
    free(s->blob.p);
    free(s->spans);
    memset(s, 0, sizeof *s);
}

static const blob_span_t *find_span(const slim_t *s, int v1, size_t layer, size_t blob) {
    for (size_t i = 0; i < s->n_spans; i++)
        if (s->spans[i].v1 == v1 && s->spans[i].layer == layer && s->spans[i].blob == blob)
            return &s->spans[i];
    return NULL;
}

/* ------------------------------------------------------------ conversion */

/* Blob values with the shape from BlobShape or, in old files,
 * num/channels/height/width: *data (aligned floats of the unpacked message,
 * or double_data converted into *owned) or, when the walker took the data
 * out, *raw (span's bytes in the mapped file). */
static int blob_floats(const Caffe__BlobProto *b, const blob_span_t *span, const char *what,
                       const float **data, const uint8_t **raw, size_t *count, int *dims, int *ndim,
                       float **owned, util_err_t *err) {
    *owned = NULL;
    *data = NULL;
    if (raw) *raw = NULL;
    if (b->shape) {
        if (b->shape->n_dim < 1 || b->shape->n_dim > 4)
            return util_fail(err, "%s: %zu dimensions", what, b->shape->n_dim);
        *ndim = (int)b->shape->n_dim;
        for (int d = 0; d < *ndim; d++) {
            if (b->shape->dim[d] < 1 || b->shape->dim[d] > MODEL_MAX_DIM)
                return util_fail(err, "%s: dimension %d is %lld", what, d,
                                 (long long)b->shape->dim[d]);
            dims[d] = (int)b->shape->dim[d];
        }
    } else {
        int legacy[4] = {b->num, b->channels, b->height, b->width};
        *ndim = 4;
        for (int d = 0; d < 4; d++) {
            if (legacy[d] < 1 || legacy[d] > MODEL_MAX_DIM)
                return util_fail(err, "%s: legacy dimension %d is %d", what, d, legacy[d]);
            dims[d] = legacy[d];
        }
    }
    size_t want = 1;
    for (int d = 0; d < *ndim; d++)
        want *= (size_t)dims[d];
    if (span && span->count && raw) {
        *raw = span->p;
        *count = span->count;
    } else if (b->n_data) {
        *data = b->data;
        *count = b->n_data;
    } else if (b->n_double_data) {
        *owned = malloc(b->n_double_data * sizeof(float));
        if (!*owned) return util_fail(err, "%s: out of memory", what);
        for (size_t i = 0; i < b->n_double_data; i++)
            (*owned)[i] = (float)b->double_data[i];
        *data = *owned;
        *count = b->n_double_data;
    } else {
        return util_fail(err, "%s: the blob holds no values", what);
    }
    if (*count != want) {
        char s[64];
        ix_dims_str(dims, *ndim, s, sizeof s);
        return util_fail(err, "%s: shape %s needs %zu values, the blob has %zu", what, s, want,
                         *count);
    }
    return 0;
}

static unsigned first_or(const uint32_t *v, size_t n, unsigned dflt) {
    return n ? v[0] : dflt;
}

/* One Caffe layer as an ix_layer; 1 when it is to be skipped. spans[0..1]:
 * where the walker found its weights' and bias's data (NULL: in the blobs). */
static int convert_layer(const caffe_layer_t *cl, const blob_span_t *const *spans, ix_layer_t *out,
                         float **owned, int *n_owned, util_err_t *err) {
    memset(out, 0, sizeof *out);
    snprintf(out->src, sizeof out->src, "layer '%.40s' (%.24s)", cl->name ? cl->name : "",
             cl->type);
    model_layer_spec_t *l = &out->l;
    const char *t = cl->type;
    int has_weights = 0;
    if (!strcmp(t, "Convolution")) {
        const Caffe__ConvolutionParameter *c = cl->conv;
        if (!c) return util_fail(err, "%s: no convolution_param", out->src);
        unsigned kh = c->has_kernel_h ? c->kernel_h : first_or(c->kernel_size, c->n_kernel_size, 0);
        unsigned kw = c->has_kernel_w ? c->kernel_w : first_or(c->kernel_size, c->n_kernel_size, 0);
        unsigned sh = c->has_stride_h ? c->stride_h : first_or(c->stride, c->n_stride, 1);
        unsigned sw = c->has_stride_w ? c->stride_w : first_or(c->stride, c->n_stride, 1);
        unsigned ph = c->has_pad_h ? c->pad_h : first_or(c->pad, c->n_pad, 0);
        unsigned pw = c->has_pad_w ? c->pad_w : first_or(c->pad, c->n_pad, 0);
        if (kh != kw || sh != sw || ph != pw || kh < 1 || kh > 1024 || sh > 1024 || ph > 1024)
            return util_fail(err,
                             "%s: kernel %ux%u, stride %ux%u, pad %ux%u: imgret needs square "
                             "kernels, strides and pads",
                             out->src, kh, kw, sh, sw, ph, pw);
        if (first_or(c->dilation, c->n_dilation, 1) != 1)
            return util_fail(err, "%s: dilated convolution is not in AlexNet", out->src);
        if (!c->bias_term) return util_fail(err, "%s: no bias term", out->src);
        if (c->num_output < 1 || c->num_output > MODEL_MAX_DIM || c->group < 1)
            return util_fail(err, "%s: %u outputs in %u groups", out->src, c->num_output, c->group);
        l->kind = MODEL_CONV;
        l->out = (int)c->num_output;
        l->kernel = (int)kh;
        l->stride = (int)sh;
        l->pad = (int)ph;
        l->groups = (int)c->group;
        has_weights = 1;
    } else if (!strcmp(t, "InnerProduct")) {
        const Caffe__InnerProductParameter *p = cl->ip;
        if (!p) return util_fail(err, "%s: no inner_product_param", out->src);
        if (!p->bias_term) return util_fail(err, "%s: no bias term", out->src);
        if (p->num_output < 1 || p->num_output > (1u << 24))
            return util_fail(err, "%s: %u outputs", out->src, p->num_output);
        l->kind = MODEL_FC;
        l->out = (int)p->num_output;
        out->w_in_out = p->transpose;
        has_weights = 1;
    } else if (!strcmp(t, "LRN")) {
        Caffe__LRNParameter dflt = CAFFE__LRNPARAMETER__INIT;
        const Caffe__LRNParameter *p = cl->lrn ? cl->lrn : &dflt;
        if (p->norm_region != CAFFE__LRNPARAMETER__NORM_REGION__ACROSS_CHANNELS)
            return util_fail(err,
                             "%s: normalises within channels; AlexNet's LRN is across "
                             "channels",
                             out->src);
        l->kind = MODEL_LRN;
        /* Caffe: scale = k + alpha/size * sum(a^2), which is imgret's
         * OVER_N convention with k from the file (Caffe's default is 1,
         * not the paper's 2). */
        l->lrn = (model_lrn_param_t){(int)p->local_size, p->k, p->alpha, p->beta,
                                     MODEL_LRN_ALPHA_OVER_N};
        if (p->local_size < 1 || p->local_size > 1024)
            return util_fail(err, "%s: local_size %u", out->src, p->local_size);
    } else if (!strcmp(t, "Pooling")) {
        const Caffe__PoolingParameter *p = cl->pool;
        if (!p) return util_fail(err, "%s: no pooling_param", out->src);
        if (p->pool != CAFFE__POOLING_PARAMETER__POOL_METHOD__MAX || p->global_pooling)
            return util_fail(err, "%s: AlexNet pools by the maximum (this is %s pooling)", out->src,
                             p->global_pooling ? "global" : "average or stochastic");
        unsigned kh = p->has_kernel_h ? p->kernel_h : p->kernel_size;
        unsigned kw = p->has_kernel_w ? p->kernel_w : p->kernel_size;
        unsigned sh = p->has_stride_h ? p->stride_h : p->stride;
        unsigned sw = p->has_stride_w ? p->stride_w : p->stride;
        unsigned ph = p->has_pad_h ? p->pad_h : p->pad;
        unsigned pw = p->has_pad_w ? p->pad_w : p->pad;
        if (kh != kw || sh != sw || ph != pw || kh > 1024 || sh > 1024 || ph > 1024)
            return util_fail(err, "%s: imgret needs square pooling windows", out->src);
        l->kind = MODEL_MAXPOOL;
        l->kernel = (int)kh;
        l->stride = (int)sh;
        l->pad = (int)ph;
        l->ceil_mode = 1; /* Caffe's pooling always rounds up */
    } else if (!strcmp(t, "ReLU")) {
        l->kind = MODEL_RELU;
    } else if (!strcmp(t, "Dropout")) {
        l->kind = MODEL_DROPOUT;
        l->dropout = cl->dropout ? cl->dropout->dropout_ratio : 0.5f;
    } else if (is_ignored(t)) {
        return 1;
    } else {
        return util_fail(err, "%s: a layer of type '%s' is not in a paper-shaped AlexNet", out->src,
                         t);
    }
    if (has_weights) {
        if (cl->n_blobs != 2)
            return util_fail(err, "%s: %zu blobs (weights and bias expected)", out->src,
                             cl->n_blobs);
        char what[128];
        snprintf(what, sizeof what, "%s weights", out->src);
        if (blob_floats(cl->blobs[0], spans[0], what, &out->w, &out->w_raw, &out->w_count,
                        out->w_dims, &out->w_ndim, &owned[(*n_owned)++], err))
            return -1;
        snprintf(what, sizeof what, "%s bias", out->src);
        if (blob_floats(cl->blobs[1], spans[1], what, &out->b, &out->b_raw, &out->b_count,
                        out->b_dims, &out->b_ndim, &owned[(*n_owned)++], err))
            return -1;
    } else if (cl->n_blobs) {
        return util_fail(err, "%s: has %zu blobs, expected none", out->src, cl->n_blobs);
    }
    return 0;
}

static int read_mean(model_norm_t *norm, const char *path, util_err_t *err) {
    size_t len;
    uint8_t *buf = util_read_file(path, MODEL_FILE_MAX_BYTES, &len, err);
    if (!buf) return -1;
    Caffe__BlobProto *b = caffe__blob_proto__unpack(NULL, len, buf);
    free(buf);
    if (!b) return util_fail(err, "%s: not a Caffe BlobProto (.binaryproto)", path);
    const float *data = NULL;
    float *owned = NULL;
    size_t count = 0;
    int dims[4], ndim = 0, rc;
    rc = blob_floats(b, NULL, path, &data, NULL, &count, dims, &ndim, &owned, err);
    /* (1, c, h, w) or (c, h, w). */
    const int *chw = ndim == 4 ? dims + 1 : dims;
    if (rc == 0 && !((ndim == 4 && dims[0] == 1) || ndim == 3))
        rc = util_fail(err, "%s: mean blob is not one c x h x w image", path);
    if (rc == 0 && chw[0] != 3)
        rc = util_fail(err, "%s: mean image has %d channels, 3 expected", path, chw[0]);
    if (rc == 0) {
        /* BGR in the file: reversed into RGB like conv1. */
        size_t plane = (size_t)chw[1] * chw[2];
        float *rgb = malloc(3 * plane * sizeof *rgb);
        if (!rgb) {
            rc = util_fail(err, "%s: out of memory", path);
        } else {
            for (int c = 0; c < 3; c++)
                memcpy(rgb + c * plane, data + (2 - c) * plane, plane * sizeof *rgb);
            rc = model_norm_set_mean_image(norm, 3, chw[1], chw[2], rgb, err);
            free(rgb);
        }
    }
    free(owned);
    caffe__blob_proto__free_unpacked(b, NULL);
    return rc;
}

/* Maps a whole file (at most MODEL_FILE_MAX_BYTES) read-only. The pages are
 * faulted in ahead (MAP_POPULATE): one pass over the page cache instead of a
 * trap per page. */
static int map_file(const char *path, const uint8_t **out, size_t *len, util_err_t *err) {
    int fd;
    if (util_open_regular(path, MODEL_FILE_MAX_BYTES, &fd, len, err)) return -1;
    /* An empty file maps one page of zeros: protobuf-c then sees 0 bytes. */
    void *p = mmap(NULL, *len ? *len : 1, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return util_fail(err, "%s: cannot map: %s", path, strerror(e));
    *out = p;
    return 0;
}

model_file_t *model_import_caffe(const char *path, const model_caffe_opts_t *opts,
                                 util_err_t *err) {
    model_caffe_opts_t dflt = {0};
    if (!opts) opts = &dflt;
    const uint8_t *map = NULL;
    size_t len = 0;
    if (map_file(path, &map, &len, err)) return NULL;
    slim_t slim;
    memset(&slim, 0, sizeof slim);
    Caffe__NetParameter *np;
    if (slim_net(&slim, map, map + len) == 0) {
        np = caffe__net_parameter__unpack(NULL, slim.net.len, slim.net.p);
    } else {
        slim_free(&slim); /* no spans: every blob keeps its data */
        np = caffe__net_parameter__unpack(NULL, len, map);
    }
    if (!np) {
        util_fail(err, "%s: not a Caffe NetParameter (truncated or not a .caffemodel)", path);
        slim_free(&slim);
        munmap((void *)map, len ? len : 1);
        return NULL;
    }
    model_file_t *mf = NULL;
    size_t n = np->n_layer ? np->n_layer : np->n_layers;
    caffe_layer_t *cl = calloc(n + 1, sizeof *cl);
    ix_layer_t *il = calloc(n + 1, sizeof *il);
    float **owned = calloc(2 * n + 1, sizeof *owned);
    int n_owned = 0, n_il = 0;
    if (!cl || !il || !owned) {
        util_fail(err, "%s: out of memory", path);
        goto out;
    }
    if (np->n_layer && np->n_layers) {
        util_fail(err, "%s: has both V1 'layers' and current 'layer' fields", path);
        goto out;
    }
    if (n == 0) {
        util_fail(err, "%s: no layers (a .prototxt-only net or not a .caffemodel)", path);
        goto out;
    }
    char unknown_type[32];
    for (size_t i = 0; i < n; i++) {
        if (np->n_layer) {
            const Caffe__LayerParameter *p = np->layer[i];
            cl[i] = (caffe_layer_t){p->name,
                                    p->type ? p->type : "",
                                    p->n_blobs,
                                    p->blobs,
                                    p->convolution_param,
                                    p->dropout_param,
                                    p->inner_product_param,
                                    p->lrn_param,
                                    p->pooling_param};
        } else {
            const Caffe__V1LayerParameter *p = np->layers[i];
            const char *type = v1_type(p->type);
            if (!type) {
                snprintf(unknown_type, sizeof unknown_type, "V1 type %d", (int)p->type);
                type = unknown_type;
            }
            cl[i] = (caffe_layer_t){p->name,
                                    type,
                                    p->n_blobs,
                                    p->blobs,
                                    p->convolution_param,
                                    p->dropout_param,
                                    p->inner_product_param,
                                    p->lrn_param,
                                    p->pooling_param};
        }
        const int v1 = np->n_layer == 0;
        const blob_span_t *spans[2] = {find_span(&slim, v1, i, 0), find_span(&slim, v1, i, 1)};
        int rc = convert_layer(&cl[i], spans, &il[n_il], owned, &n_owned, err);
        if (rc < 0) {
            util_fail_prefix(err, "%s", path);
            goto out;
        }
        if (rc == 0) n_il++;
        if (n_il > MODEL_MAX_LAYERS) {
            util_fail(err, "%s: more than %d layers: not a paper-shaped AlexNet", path,
                      MODEL_MAX_LAYERS);
            goto out;
        }
    }
    int size = opts->input_size ? opts->input_size : 227;
    int in_h = size, in_w = size;
    if (!opts->input_size && np->n_input_dim == 4) {
        in_h = np->input_dim[2];
        in_w = np->input_dim[3];
    }
    const char *base = strrchr(path, '/');
    char source[256];
    snprintf(source, sizeof source, "caffe: %.200s (%s format), BGR conv1 reordered to RGB",
             base ? base + 1 : path, np->n_layer ? "current" : "2014 V1");
    mf = ix_build(il, n_il, 3, in_h, in_w, MODEL_CHANNELS_BGR, source, err);
    if (!mf) {
        util_fail_prefix(err, "%s", path);
        goto out;
    }
    if (opts->mean_path && read_mean(&mf->norm, opts->mean_path, err)) goto fail;
    if (mf->norm.mean_image) mf->norm.stored_size = mf->norm.mean_h;
    if (opts->labels_path && model_file_read_class_names(mf, opts->labels_path, err)) goto fail;
    if (model_file_check(mf, err)) {
        util_fail_prefix(err, "%s", path);
        goto fail;
    }
    goto out;
fail:
    model_file_free(mf);
    mf = NULL;
out:
    for (int i = 0; i < n_owned; i++)
        free(owned[i]);
    free(owned);
    free(cl);
    free(il);
    caffe__net_parameter__free_unpacked(np, NULL);
    slim_free(&slim);
    munmap((void *)map, len ? len : 1);
    return mf;
}
