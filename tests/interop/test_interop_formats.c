/* Caffe and ONNX readers and the ONNX writer, in C under ASan + UBSan: a
 * small paper-shaped net written as a .caffemodel (with the protobuf-c code
 * of proto/caffe.proto) and as ONNX (imgret's exporter), read back, and
 * damaged as real files are: a missing or unknown layer, a wrong weight
 * shape, truncated data and lengths past the end. The numerical comparison
 * with PyTorch is in oracle_interop.py. */
#include "caffe.pb-c.h"
#include "interop_fixture.h"

/* ------------------------------------------------------------ caffemodel */

typedef struct caffe_build {
    Caffe__NetParameter net;
    Caffe__V1LayerParameter v1[32], *v1_ptr[32];
    Caffe__BlobProto blobs[16], *blob_ptr[16][2];
    Caffe__ConvolutionParameter conv[5];
    Caffe__InnerProductParameter ip[3];
    Caffe__LRNParameter lrn[2];
    Caffe__PoolingParameter pool[3];
    uint32_t ints[5][3];
    float *bgr_conv1;
} caffe_build_t;

/* The small file's net as a 2014-format caffemodel with a BGR conv1. skip:
 * a spec layer index left out (-1: none). conv2_in: conv2's weight channels
 * as written (4 is right). */
static uint8_t *caffe_bytes(const model_file_t *mf, int skip, int extra_type, size_t *len) {
    caffe_build_t *b = calloc(1, sizeof *b);
    caffe__net_parameter__init(&b->net);
    int n = 0, nb = 0, nc = 0, ni = 0, nl = 0, np = 0;
    for (int i = 0; i < mf->spec.n_layers; i++) {
        if (i == skip) continue;
        const model_layer_spec_t *l = &mf->spec.layer[i];
        Caffe__V1LayerParameter *p = &b->v1[n];
        caffe__v1_layer_parameter__init(p);
        p->name = (char *)l->name;
        p->has_type = 1;
        if (l->kind == MODEL_CONV || l->kind == MODEL_FC) {
            char wn[24], bn[24];
            snprintf(wn, sizeof wn, "%s.weight", l->name);
            snprintf(bn, sizeof bn, "%s.bias", l->name);
            model_tensor_t *w = model_file_find_param((model_file_t *)mf, wn);
            model_tensor_t *bias = model_file_find_param((model_file_t *)mf, bn);
            Caffe__BlobProto *bw = &b->blobs[nb], *bb = &b->blobs[nb + 1];
            caffe__blob_proto__init(bw);
            caffe__blob_proto__init(bb);
            int d4[4] = {1, 1, 1, 1};
            for (int d = 0; d < w->ndim; d++)
                d4[4 - w->ndim + d] = w->dims[d];
            bw->has_num = bw->has_channels = bw->has_height = bw->has_width = 1;
            bw->num = d4[0], bw->channels = d4[1], bw->height = d4[2], bw->width = d4[3];
            bw->n_data = w->count;
            bw->data = w->data;
            if (!strcmp(l->name, "conv1")) {
                /* Caffe's conv1 reads BGR: reverse the channels. */
                b->bgr_conv1 = malloc(w->count * sizeof(float));
                size_t plane = (size_t)w->dims[2] * w->dims[3];
                for (int o = 0; o < w->dims[0]; o++)
                    for (int c = 0; c < 3; c++)
                        memcpy(b->bgr_conv1 + ((size_t)o * 3 + c) * plane,
                               w->data + ((size_t)o * 3 + 2 - c) * plane, plane * sizeof(float));
                bw->data = b->bgr_conv1;
            }
            bb->has_num = bb->has_channels = bb->has_height = bb->has_width = 1;
            bb->num = bb->channels = bb->height = 1;
            bb->width = bias->dims[0];
            bb->n_data = bias->count;
            bb->data = bias->data;
            b->blob_ptr[nb / 2][0] = bw;
            b->blob_ptr[nb / 2][1] = bb;
            p->n_blobs = 2;
            p->blobs = b->blob_ptr[nb / 2];
            nb += 2;
        }
        switch (l->kind) {
        case MODEL_CONV: {
            p->type = CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__CONVOLUTION;
            Caffe__ConvolutionParameter *c = &b->conv[nc];
            caffe__convolution_parameter__init(c);
            c->has_num_output = 1;
            c->num_output = (uint32_t)l->out;
            b->ints[nc][0] = (uint32_t)l->kernel;
            b->ints[nc][1] = (uint32_t)l->stride;
            b->ints[nc][2] = (uint32_t)l->pad;
            c->n_kernel_size = c->n_stride = c->n_pad = 1;
            c->kernel_size = &b->ints[nc][0];
            c->stride = &b->ints[nc][1];
            c->pad = &b->ints[nc][2];
            c->has_group = 1;
            c->group = (uint32_t)l->groups;
            p->convolution_param = c;
            nc++;
            break;
        }
        case MODEL_FC:
            p->type = CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__INNER_PRODUCT;
            caffe__inner_product_parameter__init(&b->ip[ni]);
            b->ip[ni].has_num_output = 1;
            b->ip[ni].num_output = (uint32_t)l->out;
            p->inner_product_param = &b->ip[ni++];
            break;
        case MODEL_LRN:
            p->type = CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__LRN;
            caffe__lrnparameter__init(&b->lrn[nl]);
            b->lrn[nl].has_alpha = 1;
            b->lrn[nl].alpha = 1e-4f; /* k stays Caffe's default 1 */
            p->lrn_param = &b->lrn[nl++];
            break;
        case MODEL_MAXPOOL:
            p->type = CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__POOLING;
            caffe__pooling_parameter__init(&b->pool[np]);
            b->pool[np].has_kernel_size = b->pool[np].has_stride = 1;
            b->pool[np].kernel_size = 3;
            b->pool[np].stride = 2;
            p->pooling_param = &b->pool[np++];
            break;
        case MODEL_RELU:
            p->type = CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__RELU;
            break;
        case MODEL_DROPOUT:
            p->type = CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__DROPOUT;
            break;
        }
        b->v1_ptr[n] = p;
        n++;
        if (i == 4 && extra_type) {
            Caffe__V1LayerParameter *e = &b->v1[n];
            caffe__v1_layer_parameter__init(e);
            e->name = "odd";
            e->has_type = 1;
            e->type = (Caffe__V1LayerParameter__LayerType)extra_type;
            b->v1_ptr[n++] = e;
        }
    }
    b->net.n_layers = (size_t)n;
    b->net.layers = b->v1_ptr;
    *len = caffe__net_parameter__get_packed_size(&b->net);
    uint8_t *buf = malloc(*len);
    caffe__net_parameter__pack(&b->net, buf);
    free(b->bgr_conv1);
    free(b);
    return buf;
}

static model_file_t *import_caffe_bytes(const uint8_t *buf, size_t len, util_err_t *err) {
    char path[256];
    tmp_path(path, sizeof path, "net.caffemodel");
    CHECK(spit(path, buf, len) == 0);
    model_file_t *mf = model_import_caffe(path, NULL, err);
    unlink(path);
    return mf;
}

static void test_caffe_v1_import_converts_bgr_and_lrn(void) {
    model_file_t *mf = small_file(227, 21);
    size_t len;
    uint8_t *buf = caffe_bytes(mf, -1, 0, &len);
    util_err_t err = {{0}};
    model_file_t *got = import_caffe_bytes(buf, len, &err);
    CHECK_MSG(got != NULL, "%s", err.msg);
    if (got) {
        /* Back to RGB: exactly the original conv1 and every other param. */
        for (int i = 0; i < mf->n_params; i++)
            CHECK_MSG(memcmp(mf->param[i].data, got->param[i].data,
                             mf->param[i].count * sizeof(float)) == 0,
                      "%s differs", mf->param[i].name);
        const model_layer_spec_t *norm1 = &got->spec.layer[model_spec_find(&got->spec, "norm1")];
        CHECK(norm1->lrn.alpha_mode == MODEL_LRN_ALPHA_OVER_N && norm1->lrn.k == 1.0f &&
              norm1->lrn.alpha == 1e-4f && norm1->lrn.size == 5);
        CHECK(got->spec.layer[model_spec_find(&got->spec, "pool5")].ceil_mode == 1);
        CHECK(got->norm.channel_order == MODEL_CHANNELS_RGB);
        CHECK(strstr(got->source, "2014 V1") != NULL);
    }
    model_file_free(got);
    free(buf);
    model_file_free(mf);
}

static void test_caffe_missing_layer_is_named(void) {
    model_file_t *mf = small_file(227, 22);
    size_t len;
    uint8_t *buf = caffe_bytes(mf, model_spec_find(&mf->spec, "norm2"), 0, &len);
    util_err_t err = {{0}};
    model_file_t *got = import_caffe_bytes(buf, len, &err);
    CHECK(got == NULL);
    CHECK_ERR_HAS(err, "not a paper-shaped AlexNet: layer 'pool2' (Pooling) is max pooling where "
                       "the paper has LRN (norm2)");
    model_file_free(got);
    free(buf);
    model_file_free(mf);
}

static void test_caffe_unknown_layer_type_is_named(void) {
    model_file_t *mf = small_file(227, 23);
    size_t len;
    uint8_t *buf = caffe_bytes(mf, -1, CAFFE__V1_LAYER_PARAMETER__LAYER_TYPE__ELTWISE, &len);
    util_err_t err = {{0}};
    CHECK(import_caffe_bytes(buf, len, &err) == NULL);
    CHECK_ERR_HAS(err, "layer 'odd' (V1 type 25): a layer of type 'V1 type 25' is not in a "
                       "paper-shaped AlexNet");
    free(buf);
    model_file_free(mf);
}

static void test_caffe_wrong_conv2_shape_is_named(void) {
    model_file_t *mf = small_file(227, 24);
    /* conv2 without groups: weights 16x8x5x5 where the net needs 16x4x5x5. */
    model_tensor_t *t = model_file_find_param(mf, "conv2.weight");
    t->dims[1] = 8;
    t->count *= 2;
    t->data = realloc(t->data, t->count * sizeof(float));
    memset(t->data, 0, t->count * sizeof(float));
    size_t len;
    uint8_t *buf = caffe_bytes(mf, -1, 0, &len);
    util_err_t err = {{0}};
    CHECK(import_caffe_bytes(buf, len, &err) == NULL);
    CHECK_ERR_HAS(err, "conv2.weight: expected 16x4x5x5, layer 'conv2' (Convolution) has "
                       "16x8x5x5");
    free(buf);
    model_file_free(mf);
}

static void test_caffe_truncated_and_huge_lengths_fail_cleanly(void) {
    model_file_t *mf = small_file(227, 25);
    size_t len;
    uint8_t *buf = caffe_bytes(mf, -1, 0, &len);
    util_err_t err = {{0}};
    const size_t cuts[] = {0, 1, 3, 100, len / 3, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        model_file_t *got = import_caffe_bytes(buf, cuts[i], &err);
        CHECK_MSG(got == NULL, "cut at %zu imported", cuts[i]);
        model_file_free(got);
    }
    /* NetParameter.layers with a 2 GB length prefix and 5 bytes behind it. */
    const uint8_t huge[] = {0x12, 0x80, 0x80, 0x80, 0x80, 0x08, 1, 2, 3, 4, 5};
    CHECK(import_caffe_bytes(huge, sizeof huge, &err) == NULL);
    CHECK_ERR_HAS(err, "not a Caffe NetParameter");
    free(buf);
    model_file_free(mf);
}

/* The importer reads blob data in place when it is one packed run (as Caffe
 * writes it) and lets protobuf-c read the file otherwise. These re-encode
 * every blob's data of a V1 file in the other legal ways, and add what a
 * reader must skip, to check both paths give the same model. */
typedef enum { DATA_UNPACKED, DATA_SPLIT, DATA_WITH_DIFF } data_form_t;

typedef struct wbuf {
    uint8_t *p;
    size_t len;
} wbuf_t;

static void wput(wbuf_t *b, const void *p, size_t n) {
    b->p = realloc(b->p, b->len + n + 1);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void wvarint(wbuf_t *b, uint64_t v) {
    do {
        uint8_t c = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        wput(b, &c, 1);
        v >>= 7;
    } while (v);
}

static uint64_t rvarint(const uint8_t **p) {
    uint64_t v = 0;
    for (int s = 0;; s += 7) {
        uint8_t c = *(*p)++;
        v |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80)) return v;
    }
}

/* Rewrites [p, end) of a message at nesting depth (0 net, 1 V1 layer,
 * 2 blob); only length-delimited fields 2 (layers), 6 (blobs) and 5 (data)
 * are opened, everything else is copied. */
static void reencode(wbuf_t *out, const uint8_t *p, const uint8_t *end, int depth,
                     data_form_t form) {
    static const uint32_t open_field[3] = {2, 6, 5};
    while (p < end) {
        const uint8_t *start = p;
        uint64_t key = rvarint(&p);
        uint32_t field = (uint32_t)(key >> 3), wire = (uint32_t)(key & 7);
        uint64_t n = 0;
        if (wire == 0)
            rvarint(&p);
        else
            n = wire == 1 ? 8 : wire == 5 ? 4 : rvarint(&p);
        const uint8_t *body = p;
        p += n;
        if (wire != 2 || field != open_field[depth]) {
            wput(out, start, (size_t)(p - start));
            continue;
        }
        if (depth < 2) {
            wbuf_t sub = {0};
            reencode(&sub, body, p, depth + 1, form);
            wvarint(out, key);
            wvarint(out, sub.len);
            wput(out, sub.p, sub.len);
            free(sub.p);
        } else if (form == DATA_UNPACKED) {
            for (uint64_t i = 0; i < n; i += 4) {
                wvarint(out, 5u << 3 | 5u);
                wput(out, body + i, 4);
            }
        } else if (form == DATA_SPLIT) {
            uint64_t half = n / 8 * 4;
            wvarint(out, key);
            wvarint(out, half);
            wput(out, body, half);
            wvarint(out, key);
            wvarint(out, n - half);
            wput(out, body + half, n - half);
        } else {
            /* A 3-byte field this reader does not know first (so the data
             * lies at an odd offset), then a diff as long as the data, then
             * the data. */
            const uint8_t unknown[] = {9u << 3, 0x81, 0x01};
            wput(out, unknown, sizeof unknown);
            wvarint(out, 6u << 3 | 2u);
            wvarint(out, n);
            wput(out, body, n);
            wput(out, start, (size_t)(p - start));
        }
    }
}

static void test_caffe_data_in_any_legal_form_reads_the_same(void) {
    model_file_t *mf = small_file(227, 26);
    size_t len;
    uint8_t *buf = caffe_bytes(mf, -1, 0, &len);
    const char *names[] = {"unpacked", "split in two runs", "after a diff, unaligned"};
    for (int form = DATA_UNPACKED; form <= DATA_WITH_DIFF; form++) {
        wbuf_t w = {0};
        reencode(&w, buf, buf + len, 0, (data_form_t)form);
        CHECK(w.len != len);
        util_err_t err = {{0}};
        model_file_t *got = import_caffe_bytes(w.p, w.len, &err);
        CHECK_MSG(got != NULL, "%s: %s", names[form], err.msg);
        for (int i = 0; got && i < mf->n_params; i++)
            CHECK_MSG(memcmp(mf->param[i].data, got->param[i].data,
                             mf->param[i].count * sizeof(float)) == 0,
                      "%s: %s differs", names[form], mf->param[i].name);
        model_file_free(got);
        /* Cut short inside the blobs: refused, whichever path reads it. */
        CHECK_MSG(import_caffe_bytes(w.p, w.len - 7, &err) == NULL, "%s: cut imported",
                  names[form]);
        free(w.p);
    }
    free(buf);
    model_file_free(mf);
}

/* ------------------------------------------------------------------ ONNX */

static void test_onnx_export_import_is_exact(void) {
    char path[256];
    tmp_path(path, sizeof path, "rt.onnx");
    for (int opset = 9; opset <= 12; opset += 3) {
        model_file_t *mf = small_file(224, 31);
        /* The paper's LRN convention must survive ONNX's alpha/size. */
        util_err_t err = {{0}};
        model_onnx_export_opts_t o = {opset};
        CHECK_MSG(model_export_onnx(mf, path, &o, &err) == 0, "%s", err.msg);
        model_file_t *back = model_import_onnx(path, NULL, &err);
        CHECK_MSG(back != NULL, "%s", err.msg);
        if (back) {
            CHECK(back->spec.in_h == 224);
            CHECK(back->spec.layer[model_spec_find(&back->spec, "pool1")].ceil_mode == 1);
            for (int i = 0; i < mf->n_params; i++)
                CHECK(memcmp(mf->param[i].data, back->param[i].data,
                             mf->param[i].count * sizeof(float)) == 0);
            size_t n1 = 0, n2 = 0;
            float *a = run_logits(mf, 1, &n1), *b = run_logits(back, 1, &n2);
            CHECK(a && b && n1 == n2 && n1 == 10);
            if (a && b)
                CHECK_MSG(memcmp(a, b, n1 * sizeof *a) == 0, "opset %d logits differ", opset);
            free(a);
            free(b);
        }
        model_file_free(back);
        model_file_free(mf);
    }
    unlink(path);
}

static void replace_bytes(uint8_t *buf, size_t len, const char *from, const char *to) {
    size_t n = strlen(from);
    for (size_t i = 0; i + n <= len; i++)
        if (!memcmp(buf + i, from, n)) {
            memcpy(buf + i, to, n);
            return;
        }
}

static void test_onnx_damage_is_named(void) {
    char path[256];
    tmp_path(path, sizeof path, "dmg.onnx");
    model_file_t *mf = small_file(227, 32);
    util_err_t err = {{0}};
    CHECK(model_export_onnx(mf, path, NULL, &err) == 0);
    size_t len = 0;
    uint8_t *buf = slurp(path, &len);
    const size_t cuts[] = {0, 2, 50, len / 2, len - 2};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        CHECK(spit(path, buf, cuts[i]) == 0);
        model_file_t *got = model_import_onnx(path, NULL, &err);
        CHECK_MSG(got == NULL, "cut at %zu imported", cuts[i]);
        model_file_free(got);
    }
    uint8_t *copy = malloc(len);
    memcpy(copy, buf, len);
    replace_bytes(copy, len, "LRN", "LRX");
    CHECK(spit(path, copy, len) == 0);
    CHECK(model_import_onnx(path, NULL, &err) == NULL);
    CHECK_ERR_HAS(err, "node 'norm1' (LRX): op 'LRX' is not one a paper-shaped AlexNet");
    memcpy(copy, buf, len);
    replace_bytes(copy, len, "MaxPool", "AvgPool");
    CHECK(spit(path, copy, len) == 0);
    CHECK(model_import_onnx(path, NULL, &err) == NULL);
    CHECK_ERR_HAS(err, "op 'AvgPool'");
    free(copy);
    free(buf);
    model_file_free(mf);
    unlink(path);
}

static void test_onnx_pool_pads_without_equivalent_are_refused(void) {
    char path[256];
    tmp_path(path, sizeof path, "pads.onnx");
    /* At 227 the pools do not need rounding up; opset 9 then writes pads
     * [0,0,0,0]. Turn pool1's into [0,0,2,2], which no symmetric pool with
     * either rounding reproduces at a 55x55 input (28 windows, not 27). */
    model_file_t *mf = small_file(227, 33);
    util_err_t err = {{0}};
    model_onnx_export_opts_t o = {9};
    CHECK(model_export_onnx(mf, path, &o, &err) == 0);
    model_file_t *ok = model_import_onnx(path, NULL, &err);
    CHECK_MSG(ok != NULL, "%s", err.msg);
    model_file_free(ok);
    model_file_free(mf);
    size_t len = 0;
    uint8_t *buf = slurp(path, &len);
    /* pads attribute of pool1: "pads" then four ints 0 (field 8 varint). */
    int done = 0;
    size_t from = 0;
    while (from + 7 < len && memcmp(buf + from, "MaxPool", 7))
        from++;
    for (size_t i = from; i + 16 < len && !done; i++)
        if (!memcmp(buf + i, "\x0a\x04pads\x40\x00\x40\x00\x40\x00\x40\x00", 14)) {
            buf[i + 11] = 2;
            buf[i + 13] = 2;
            done = 1;
        }
    CHECK(done);
    CHECK(spit(path, buf, len) == 0);
    CHECK(model_import_onnx(path, NULL, &err) == NULL);
    CHECK_ERR_HAS(err, "pads [0,0,2,2] on a 55x55 input have no equivalent");
    free(buf);
    unlink(path);
}

TEST_MAIN(T(test_caffe_v1_import_converts_bgr_and_lrn), T(test_caffe_missing_layer_is_named),
          T(test_caffe_unknown_layer_type_is_named), T(test_caffe_wrong_conv2_shape_is_named),
          T(test_caffe_truncated_and_huge_lengths_fail_cleanly),
          T(test_caffe_data_in_any_legal_form_reads_the_same), T(test_onnx_export_import_is_exact),
          T(test_onnx_damage_is_named), T(test_onnx_pool_pads_without_equivalent_are_refused))
