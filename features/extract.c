/* FC7 extraction: the data loader decodes and crops in its worker threads
 * while this thread runs the forward pass, so decode overlaps compute. */
#include "features/features.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct feat_extractor {
    model_net_t *net;
    int layer, dim, batch;
    uint8_t hash[MODEL_HASH_BYTES];
    int in_c, crop, stored_size;
    data_stats_t *stats; /* the model's mean (image or per channel) */
    data_mean_mode_t mean_mode;
    float scale;
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
    ex->batch = batch;
    if (!(ex->net = model_net_create_from_file_on(mf, batch, pl, err))) goto fail;
    memcpy(ex->hash, mf->hash, MODEL_HASH_BYTES);
    ex->in_c = mf->spec.in_c;
    ex->crop = mf->spec.in_h;
    if (mf->spec.in_h != mf->spec.in_w) {
        util_fail(err, "model %s: non-square input %dx%d", mf->spec.name, mf->spec.in_h,
                  mf->spec.in_w);
        goto fail;
    }
    const model_norm_t *nm = &mf->norm;
    ex->stored_size = nm->stored_size > ex->crop ? nm->stored_size : ex->crop;
    ex->scale = nm->scale > 0 ? nm->scale : 1.0f;
    if (nm->channel_order != MODEL_CHANNELS_RGB) {
        util_fail(err, "model %s expects BGR input; extraction feeds RGB", mf->spec.name);
        goto fail;
    }
    if (nm->mean_kind == MODEL_MEAN_IMAGE && nm->mean_image) {
        if (nm->mean_c != ex->in_c || nm->mean_h != nm->mean_w) {
            util_fail(err, "model %s: mean image %dx%dx%d does not fit %d-channel square input",
                      mf->spec.name, nm->mean_c, nm->mean_h, nm->mean_w, ex->in_c);
            goto fail;
        }
        ex->stored_size = nm->mean_h;
        if (!(ex->stats = data_stats_create(nm->mean_c, nm->mean_h, nm->mean_w, err))) goto fail;
        memcpy(ex->stats->mean, nm->mean_image,
               (size_t)nm->mean_c * nm->mean_h * nm->mean_w * sizeof(float));
        ex->mean_mode = DATA_MEAN_PIXEL;
    } else {
        if (!(ex->stats = data_stats_create(ex->in_c, ex->stored_size, ex->stored_size, err)))
            goto fail;
        ex->mean_mode = nm->mean_kind == MODEL_MEAN_PIXEL ? DATA_MEAN_CHANNEL : DATA_MEAN_NONE;
    }
    for (int c = 0; c < ex->in_c && c < 3; c++) ex->stats->channel_mean[c] = nm->mean_pixel[c];
    return ex;
fail:
    feat_extractor_free(ex);
    return NULL;
}

void feat_extractor_free(feat_extractor_t *ex) {
    if (!ex) return;
    model_net_free(ex->net);
    data_stats_free(ex->stats);
    free(ex);
}

int feat_extractor_dim(const feat_extractor_t *ex) { return ex->dim; }
const uint8_t *feat_extractor_model_hash(const feat_extractor_t *ex) { return ex->hash; }

int feat_extractor_prep(const feat_extractor_t *ex, const data_dataset_t *ds, data_prep_t *prep,
                        data_norm_t *norm, int *crop, util_err_t *err) {
    *prep = (data_prep_t){ex->in_c, ex->stored_size, 0};
    /* Small datasets train on crop-sized items padded to the stored size
     * (cli_open_data); resizing them instead would feed a zoomed image. */
    if (ex->stored_size > ex->crop && data_dataset_count(ds) > 0) {
        int label;
        util_err_t e2;
        data_image_t *im = data_dataset_load(ds, 0, NULL, &label, &e2);
        if (im && im->w == ex->crop && im->h == ex->crop && (ex->stored_size - ex->crop) % 2 == 0)
            *prep = (data_prep_t){ex->in_c, 0, (ex->stored_size - ex->crop) / 2};
        data_image_free(im);
    }
    *norm = (data_norm_t){ex->mean_mode, ex->stats, ex->scale};
    *crop = ex->crop;
    (void)err;
    return 0;
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
    feat_extractor_prep(ex, src, &lo.prep, &lo.norm, &lo.crop, err);
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
