/* FC7 extraction: the data loader decodes and crops in its worker threads
 * while this thread runs the forward pass, so decode overlaps compute. */
#include "features/features.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct feat_extractor {
    model_net_t *net;
    int layer, dim, batch, classes;
    uint8_t hash[MODEL_HASH_BYTES];
    model_input_t in; /* the model's one input rule (model_input_from_file) */
};

feat_extractor_t *feat_extractor_create(const model_file_t *mf, int batch, const char *layer,
                                        util_err_t *err) {
    return feat_extractor_create_on(mf, batch, layer, NULL, err);
}

feat_extractor_t *feat_extractor_create_on(const model_file_t *mf, int batch, const char *layer,
                                           const model_placement_t *pl, util_err_t *err) {
    model_placement_t cpu = model_placement_cpu();
    if (!pl) pl = &cpu;
    if (batch < 1) {
        util_fail(err, "extraction batch %d is not positive", batch);
        return NULL;
    }
    feat_extractor_t *ex = calloc(1, sizeof *ex);
    if (!ex) {
        util_fail(err, "extractor: out of memory");
        return NULL;
    }
    const char *name = layer ? layer : "relu7";
    ex->layer = model_spec_find(&mf->spec, name);
    if (ex->layer < 0) {
        util_fail(err, "model %s has no layer named '%s'", mf->spec.name, name);
        goto fail;
    }
    model_shape_t shapes[MODEL_MAX_LAYERS];
    if (model_spec_shapes(&mf->spec, 1, shapes, err)) goto fail;
    ex->dim = (int)model_shape_count(shapes[ex->layer]);
    ex->classes = (int)model_shape_count(shapes[mf->spec.n_layers - 1]);
    ex->batch = batch;
    if (model_input_from_file(mf, &ex->in, err)) goto fail;
    if (!(ex->net = model_net_create_from_file_on(mf, batch, pl, err))) goto fail;
    memcpy(ex->hash, mf->hash, MODEL_HASH_BYTES);
    return ex;
fail:
    feat_extractor_free(ex);
    return NULL;
}

void feat_extractor_free(feat_extractor_t *ex) {
    if (!ex) return;
    model_net_free(ex->net);
    model_input_free(&ex->in);
    free(ex);
}

int feat_extractor_dim(const feat_extractor_t *ex) {
    return ex->dim;
}
const uint8_t *feat_extractor_model_hash(const feat_extractor_t *ex) {
    return ex->hash;
}
const model_input_t *feat_extractor_input(const feat_extractor_t *ex) {
    return &ex->in;
}

data_image_t *feat_extractor_decode(const feat_extractor_t *ex, const void *buf, size_t len,
                                    size_t max_pixels, util_err_t *err) {
    return data_prep_decode(buf, len, "image", &ex->in.prep, max_pixels, err);
}

int feat_extract_batch(feat_extractor_t *ex, const float *x, int n, float *out, util_err_t *err) {
    if (n < 1 || n > ex->batch)
        return util_fail(err, "extraction batch of %d (1 to %d allowed)", n, ex->batch);
    if (model_net_forward(ex->net, x, n, 0, err)) return -1;
    model_shape_t s;
    const float *y = model_net_output(ex->net, ex->layer, &s);
    if (!y) return util_fail(err, "extraction: no output for layer %d", ex->layer);
    memcpy(out, y, (size_t)n * ex->dim * sizeof(float));
    return 0;
}

const float *feat_extractor_logits(const feat_extractor_t *ex, int *classes) {
    if (classes) *classes = ex->classes;
    return model_net_logits(ex->net, NULL);
}

/* Items the loader skipped in the batch being returned (it calls back, in
 * item order, from inside data_loader_next_view). */
typedef struct skip_list {
    size_t *item;
    size_t n, cap;
    size_t offset; /* the subset's first item in the whole dataset */
    const feat_extract_opts_t *opts;
} skip_list_t;

static void collect_skip(void *p, size_t item, const char *message) {
    skip_list_t *s = p;
    if (s->n < s->cap) s->item[s->n++] = item;
    if (s->opts && s->opts->on_skip) s->opts->on_skip(s->opts->ctx, item + s->offset, message);
}

int feat_extract_dataset(feat_extractor_t *ex, const data_dataset_t *ds, feat_writer_t *w,
                         const feat_extract_opts_t *opts, util_err_t *err) {
    size_t total = data_dataset_count(ds);
    int64_t last = feat_writer_last_id(w);
    size_t start = last < 0 ? 0 : (size_t)last + 1;
    if (start >= total) return 0;
    data_dataset_t *sub = NULL;
    const data_dataset_t *src = ds;
    if (start > 0) {
        if (!(sub = data_dataset_subset(ds, start, total - start, err))) return -1;
        src = sub;
    }
    data_loader_opts_t lo = data_loader_defaults();
    lo.batch_size = ex->batch;
    lo.prep = ex->in.prep;
    lo.norm = ex->in.norm;
    lo.crop = ex->in.crop;
    lo.mode = DATA_CROP_CENTER;
    lo.mirror = 0;
    lo.lighting_std = 0;
    lo.shuffle = 0;
    lo.threads = opts && opts->threads > 0 ? opts->threads : 1;
    int rc = -1;
    skip_list_t skips = {NULL, 0, (size_t)ex->batch, start, opts};
    float *feat = malloc((size_t)ex->batch * ex->dim * sizeof(float));
    int64_t *ids = malloc((size_t)ex->batch * sizeof *ids);
    int32_t *labels = malloc((size_t)ex->batch * sizeof *labels);
    char **uris = calloc((size_t)ex->batch, sizeof *uris);
    char *uri_buf = malloc((size_t)ex->batch * 512);
    skips.item = malloc((size_t)ex->batch * sizeof *skips.item);
    data_loader_t *ld = NULL;
    if (!feat || !ids || !labels || !uris || !uri_buf || !skips.item) {
        util_fail(err, "extraction: out of memory");
        goto done;
    }
    if (!(ld = data_loader_create(src, &lo, err))) goto done;
    data_loader_on_skip(ld, collect_skip, &skips);
    if (data_loader_start_epoch(ld, 0, 0, err)) goto done;
    size_t done_items = start;
    for (;;) {
        const float *x;
        const int *lab;
        int n;
        size_t b;
        skips.n = 0;
        int got = data_loader_next_view(ld, &x, &lab, &n, &b, err);
        if (got < 0) goto done;
        if (got == 0) break;
        size_t first = b * (size_t)ex->batch;
        size_t end = first + (size_t)ex->batch;
        if (end > total - start) end = total - start;
        /* The batch's items are [first, end) minus the skipped ones. */
        int k = 0;
        size_t si = 0;
        for (size_t it = first; it < end; it++) {
            if (si < skips.n && skips.item[si] == it) {
                si++;
                continue;
            }
            if (k >= n) break;
            ids[k] = (int64_t)(it + start);
            labels[k] = lab[k];
            uris[k] = uri_buf + (size_t)k * 512;
            data_dataset_item_name(ds, it + start, uris[k], 512);
            k++;
        }
        if (k != n) {
            util_fail(err, "extraction: batch %zu has %d images but %d items are accounted for", b,
                      n, k);
            goto done;
        }
        if (n > 0) {
            if (feat_extract_batch(ex, x, n, feat, err)) goto done;
            if (feat_writer_append(w, (size_t)n, feat, ids, labels, (const char *const *)uris,
                                   err) ||
                feat_writer_commit(w, err))
                goto done;
        }
        done_items = start + end;
        if (opts && opts->on_progress)
            opts->on_progress(opts->ctx, done_items, total, feat_writer_count(w));
        if (opts && opts->stop && *opts->stop) {
            rc = 1;
            goto done;
        }
    }
    rc = 0;
done:
    data_loader_free(ld);
    data_dataset_free(sub);
    free(feat);
    free(ids);
    free(labels);
    free(uris);
    free(uri_buf);
    free(skips.item);
    return rc;
}
