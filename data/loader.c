/* The batch loader: worker threads load, prepare and augment items into a
 * ring of batch slots while the consumer takes finished batches in order.
 *
 * Work is handed out one item at a time, in epoch order, under one mutex;
 * position p of the epoch goes to slot (p / batch_size) % prefetch, and a
 * worker may only start a position whose batch is within `prefetch` batches
 * of the oldest one the consumer still holds. Everything random about an
 * item is drawn from its own RNG seeded from (seed, epoch, item), so which
 * thread did it, and when, changes nothing. */
#include "data/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct slot {
    float *x;
    int *labels;
    unsigned char *ok;
    util_err_t *errs;
    size_t batch; /* batch index it holds (valid once claimed) */
    int size;     /* items in that batch */
    int done;     /* items finished */
    int ready;
} slot_t;

typedef struct worker {
    struct data_loader *ld;
    pthread_t tid;
} worker_t;

struct data_loader {
    const data_dataset_t *ds;
    data_loader_opts_t o;
    int c;              /* output channels */
    int cpi;            /* crops per item */
    size_t item_floats; /* cpi * c * crop * crop */
    size_t count, n_batches, end_pos;
    size_t *perm;

    pthread_mutex_t mu;
    pthread_cond_t work_cv, ready_cv, idle_cv;
    int quit, active, busy;
    int epoch;
    size_t next_pos;   /* next epoch position to hand out */
    size_t released;   /* batches below this have free slots */
    size_t next_batch; /* the batch the consumer takes next */
    int holding;       /* the consumer holds next_batch - 1 as a view */
    slot_t *slots;
    int n_slots;
    worker_t *workers;
    int n_workers;

    /* Consumer side. */
    size_t skipped;
    util_err_t last_error;
    data_skip_fn on_skip;
    void *on_skip_ctx;
};

/* Seeds for the permutation of an epoch and for one item of an epoch; the
 * tags keep the two streams apart. */
static uint64_t perm_seed(uint64_t seed, int epoch) {
    return util_splitmix64(util_splitmix64(seed ^ 0x7065726d75746531ULL) +
                           (uint64_t)(int64_t)epoch);
}

static uint64_t item_seed(uint64_t seed, int epoch, size_t item) {
    return util_splitmix64(
        util_splitmix64(util_splitmix64(seed ^ 0x6175676d656e7431ULL) + (uint64_t)(int64_t)epoch) +
        item);
}

data_loader_opts_t data_loader_defaults(void) {
    data_loader_opts_t o;
    memset(&o, 0, sizeof o);
    o.batch_size = 128;
    o.prep.short_side = 256;
    o.crop = 224;
    o.mode = DATA_CROP_RANDOM;
    o.mirror = 1;
    o.lighting_std = 0.1f;
    o.norm.mean_mode = DATA_MEAN_NONE;
    o.shuffle = 1;
    o.seed = 0;
    o.threads = 2;
    o.prefetch = 3;
    o.drop_last = 0;
    return o;
}

/* Loads item `item` and writes its crops and label; 0 ok, -1 with err. */
static int load_item(const data_loader_t *ld, int epoch, size_t item, float *x, int *label,
                     util_err_t *err) {
    const data_loader_opts_t *o = &ld->o;
    data_image_t *im = data_prep_load(ld->ds, item, &o->prep, label, err);
    if (!im) return -1;
    int rc = 0;
    if (im->w < o->crop || im->h < o->crop || im->c != ld->c) {
        rc = util_fail(err, "stored image %dx%dx%d cannot give %dx%dx%d crops", im->w, im->h, im->c,
                       o->crop, o->crop, ld->c);
    } else if (o->mode == DATA_CROP_RANDOM) {
        util_rng_t rng;
        util_rng_seed(&rng, item_seed(o->seed, epoch, item));
        int cx = (int)util_rng_below(&rng, (uint32_t)(im->w - o->crop + 1));
        int cy = (int)util_rng_below(&rng, (uint32_t)(im->h - o->crop + 1));
        int mirror = (int)(util_rng_u64(&rng) >> 63) & (o->mirror != 0);
        float light[3] = {0, 0, 0};
        int use_light = o->lighting_std > 0 && o->norm.stats;
        if (use_light) data_lighting_draw(o->norm.stats, o->lighting_std, &rng, light);
        rc = data_crop_to_float(im, cx, cy, o->crop, mirror, &o->norm, use_light ? light : NULL, x,
                                err);
    } else if (o->mode == DATA_CROP_CENTER) {
        rc = data_center_crop(im, o->crop, &o->norm, x, err);
    } else {
        rc = data_ten_crop(im, o->crop, &o->norm, x, err);
    }
    if (rc) { /* load errors name the file already; these do not */
        char name[512];
        data_dataset_item_name(ld->ds, item, name, sizeof name);
        util_fail_prefix(err, "%s", name);
    }
    data_image_free(im);
    return rc;
}

static void *worker_main(void *arg) {
    data_loader_t *ld = ((worker_t *)arg)->ld;
    const size_t B = (size_t)ld->o.batch_size;
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        if (ld->quit) break;
        if (!ld->active || ld->next_pos >= ld->end_pos ||
            ld->next_pos / B >= ld->released + (size_t)ld->n_slots) {
            pthread_cond_wait(&ld->work_cv, &ld->mu);
            continue;
        }
        size_t p = ld->next_pos++;
        size_t b = p / B;
        slot_t *s = &ld->slots[b % (size_t)ld->n_slots];
        if (p % B == 0) {
            /* First position of the batch (positions go out in order). */
            s->batch = b;
            size_t end = (b + 1) * B < ld->end_pos ? (b + 1) * B : ld->end_pos;
            s->size = (int)(end - b * B);
            s->done = 0;
            s->ready = 0;
        }
        size_t item = ld->perm ? ld->perm[p] : p;
        int epoch = ld->epoch;
        size_t j = p % B;
        ld->busy++;
        pthread_mutex_unlock(&ld->mu);

        util_err_t e;
        e.msg[0] = '\0';
        int rc = load_item(ld, epoch, item, s->x + j * ld->item_floats, &s->labels[j], &e);
        s->ok[j] = rc == 0;
        if (rc) s->errs[j] = e;

        pthread_mutex_lock(&ld->mu);
        ld->busy--;
        if (++s->done == s->size) {
            s->ready = 1;
            pthread_cond_broadcast(&ld->ready_cv);
        }
        if (ld->busy == 0) pthread_cond_broadcast(&ld->idle_cv);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

static void slots_free(data_loader_t *ld) {
    for (int i = 0; ld->slots && i < ld->n_slots; i++) {
        free(ld->slots[i].x);
        free(ld->slots[i].labels);
        free(ld->slots[i].ok);
        free(ld->slots[i].errs);
    }
    free(ld->slots);
}

data_loader_t *data_loader_create(const data_dataset_t *ds, const data_loader_opts_t *opts,
                                  util_err_t *err) {
    data_loader_opts_t o = *opts;
    if (o.batch_size <= 0 || o.batch_size > 65536)
        return util_fail(err, "loader: batch size %d outside 1..65536", o.batch_size), NULL;
    if (o.crop <= 0 || o.crop > DATA_MAX_SIDE)
        return util_fail(err, "loader: crop size %d is invalid", o.crop), NULL;
    if (o.mode != DATA_CROP_RANDOM && o.mode != DATA_CROP_CENTER && o.mode != DATA_CROP_TEN)
        return util_fail(err, "loader: unknown crop mode %d", (int)o.mode), NULL;
    if (o.threads < 1 || o.threads > 256)
        return util_fail(err, "loader: %d threads (expected 1..256)", o.threads), NULL;
    if (o.prefetch < 0 || o.prefetch > 64)
        return util_fail(err, "loader: prefetch %d outside 0..64", o.prefetch), NULL;
    if (o.prefetch == 0) o.prefetch = 2;
    if (o.prep.channels != 0 && o.prep.channels != 1 && o.prep.channels != 3)
        return util_fail(err, "loader: %d channels (expected 1 or 3)", o.prep.channels), NULL;
    if (!o.prep.channels)
        o.prep.channels = data_dataset_channels(ds) ? data_dataset_channels(ds) : 3;
    const data_stats_t *st = o.norm.stats;
    if (o.norm.mean_mode != DATA_MEAN_NONE && !st)
        return util_fail(err, "loader: mean subtraction needs stats"), NULL;
    if (o.mode == DATA_CROP_RANDOM && o.lighting_std > 0 && !st)
        return util_fail(err, "loader: PCA lighting needs stats (eigenvectors and eigenvalues)"),
               NULL;
    if (st && st->c != o.prep.channels)
        return util_fail(err, "loader: the stats are for %d channels, the loader gives %d", st->c,
                         o.prep.channels),
               NULL;
    size_t count = data_dataset_count(ds);
    if (count == 0) return util_fail(err, "loader: empty dataset"), NULL;

    /* Check the geometry on the first item that loads, so a wrong crop or
     * mean image is an error here rather than every item skipped later. */
    for (size_t i = 0; i < count && i < 16; i++) {
        data_image_t *im = data_prep_load(ds, i, &o.prep, NULL, NULL);
        if (!im) continue;
        int w = im->w, h = im->h;
        data_image_free(im);
        if (o.crop > w || o.crop > h)
            return util_fail(err, "loader: crop %d is larger than the stored image %dx%d", o.crop,
                             w, h),
                   NULL;
        if (o.norm.mean_mode == DATA_MEAN_PIXEL && (st->w != w || st->h != h))
            return util_fail(err,
                             "loader: the mean image is %dx%d but stored images are %dx%d "
                             "(compute the stats with the same short side and padding)",
                             st->w, st->h, w, h),
                   NULL;
        break;
    }

    data_loader_t *ld = calloc(1, sizeof *ld);
    if (!ld) return util_fail(err, "loader: out of memory"), NULL;
    ld->ds = ds;
    ld->o = o;
    ld->c = o.prep.channels;
    ld->cpi = o.mode == DATA_CROP_TEN ? DATA_TEN_CROPS : 1;
    ld->item_floats = (size_t)ld->cpi * ld->c * o.crop * o.crop;
    ld->count = count;
    ld->n_batches = o.drop_last ? count / (size_t)o.batch_size
                                : (count + (size_t)o.batch_size - 1) / (size_t)o.batch_size;
    ld->end_pos = o.drop_last ? ld->n_batches * (size_t)o.batch_size : count;
    ld->n_slots = o.prefetch;
    pthread_mutex_init(&ld->mu, NULL);
    pthread_cond_init(&ld->work_cv, NULL);
    pthread_cond_init(&ld->ready_cv, NULL);
    pthread_cond_init(&ld->idle_cv, NULL);
    if (o.shuffle && !(ld->perm = malloc(count * sizeof *ld->perm))) goto oom;
    if (!(ld->slots = calloc((size_t)ld->n_slots, sizeof *ld->slots))) goto oom;
    size_t B = (size_t)o.batch_size;
    for (int i = 0; i < ld->n_slots; i++) {
        slot_t *s = &ld->slots[i];
        if (!(s->x = malloc(B * ld->item_floats * sizeof(float))) ||
            !(s->labels = malloc(B * sizeof(int))) || !(s->ok = malloc(B)) ||
            !(s->errs = malloc(B * sizeof(util_err_t))))
            goto oom;
    }
    if (!(ld->workers = calloc((size_t)o.threads, sizeof *ld->workers))) goto oom;
    for (int t = 0; t < o.threads; t++) {
        ld->workers[t].ld = ld;
        if (pthread_create(&ld->workers[t].tid, NULL, worker_main, &ld->workers[t]) != 0) {
            data_loader_free(ld);
            return util_fail(err, "loader: cannot start worker thread %d", t), NULL;
        }
        ld->n_workers++;
    }
    return ld;
oom:
    data_loader_free(ld);
    return util_fail(err, "loader: out of memory for %d batches of %d items", o.prefetch,
                     o.batch_size),
           NULL;
}

void data_loader_free(data_loader_t *ld) {
    if (!ld) return;
    pthread_mutex_lock(&ld->mu);
    ld->quit = 1;
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mu);
    for (int t = 0; t < ld->n_workers; t++)
        pthread_join(ld->workers[t].tid, NULL);
    free(ld->workers);
    slots_free(ld);
    free(ld->perm);
    pthread_cond_destroy(&ld->work_cv);
    pthread_cond_destroy(&ld->ready_cv);
    pthread_cond_destroy(&ld->idle_cv);
    pthread_mutex_destroy(&ld->mu);
    free(ld);
}

size_t data_loader_num_batches(const data_loader_t *ld) {
    return ld->n_batches;
}

size_t data_loader_batch_floats(const data_loader_t *ld) {
    return (size_t)ld->o.batch_size * ld->item_floats;
}

int data_loader_channels(const data_loader_t *ld) {
    return ld->c;
}

int data_loader_crops_per_item(const data_loader_t *ld) {
    return ld->cpi;
}

int data_loader_start_epoch(data_loader_t *ld, int epoch, size_t start_batch, util_err_t *err) {
    if (start_batch > ld->n_batches)
        return util_fail(err, "loader: start batch %zu beyond the epoch's %zu batches", start_batch,
                         ld->n_batches);
    pthread_mutex_lock(&ld->mu);
    ld->active = 0;
    while (ld->busy > 0)
        pthread_cond_wait(&ld->idle_cv, &ld->mu);
    ld->epoch = epoch;
    if (ld->perm) {
        util_rng_t rng;
        util_rng_seed(&rng, perm_seed(ld->o.seed, epoch));
        for (size_t i = 0; i < ld->count; i++)
            ld->perm[i] = i;
        /* Fisher-Yates; util_rng_below takes 32 bits, so draw 64 for huge sets. */
        for (size_t i = ld->count - 1; i > 0; i--) {
            size_t j = i + 1 <= UINT32_MAX ? util_rng_below(&rng, (uint32_t)(i + 1))
                                           : (size_t)(util_rng_u64(&rng) % (i + 1));
            size_t t = ld->perm[i];
            ld->perm[i] = ld->perm[j];
            ld->perm[j] = t;
        }
    }
    size_t B = (size_t)ld->o.batch_size;
    ld->next_pos = start_batch * B;
    ld->released = start_batch;
    ld->next_batch = start_batch;
    ld->holding = 0;
    for (int i = 0; i < ld->n_slots; i++)
        ld->slots[i].ready = 0;
    ld->active = 1;
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mu);
    return 0;
}

/* Waits for the next batch, compacts out the failed items and reports them.
 * Returns the slot, or NULL at the end of the epoch (*rc 0) or on error (-1). */
static slot_t *take_batch(data_loader_t *ld, int *n, size_t *batch_index, int *rc,
                          util_err_t *err) {
    pthread_mutex_lock(&ld->mu);
    if (!ld->active) {
        pthread_mutex_unlock(&ld->mu);
        *rc = util_fail(err, "loader: no epoch started (call data_loader_start_epoch)");
        return NULL;
    }
    if (ld->holding) {
        ld->holding = 0;
        ld->released = ld->next_batch;
        pthread_cond_broadcast(&ld->work_cv);
    }
    if (ld->next_batch >= ld->n_batches) {
        pthread_mutex_unlock(&ld->mu);
        *rc = 0;
        return NULL;
    }
    size_t b = ld->next_batch;
    slot_t *s = &ld->slots[b % (size_t)ld->n_slots];
    while (!(s->ready && s->batch == b))
        pthread_cond_wait(&ld->ready_cv, &ld->mu);
    pthread_mutex_unlock(&ld->mu);

    int k = 0;
    size_t B = (size_t)ld->o.batch_size;
    for (int j = 0; j < s->size; j++) {
        if (s->ok[j]) {
            if (k != j) {
                memmove(s->x + (size_t)k * ld->item_floats, s->x + (size_t)j * ld->item_floats,
                        ld->item_floats * sizeof(float));
                s->labels[k] = s->labels[j];
            }
            k++;
        } else {
            ld->skipped++;
            ld->last_error = s->errs[j];
            if (ld->on_skip) {
                size_t pos = b * B + (size_t)j;
                ld->on_skip(ld->on_skip_ctx, ld->perm ? ld->perm[pos] : pos, s->errs[j].msg);
            }
        }
    }
    *n = k;
    if (batch_index) *batch_index = b;
    ld->next_batch = b + 1;
    *rc = 1;
    return s;
}

int data_loader_next(data_loader_t *ld, float *x, int *labels, int *n, size_t *batch_index,
                     util_err_t *err) {
    int rc;
    *n = 0;
    slot_t *s = take_batch(ld, n, batch_index, &rc, err);
    if (!s) return rc;
    memcpy(x, s->x, (size_t)*n * ld->item_floats * sizeof(float));
    memcpy(labels, s->labels, (size_t)*n * sizeof(int));
    pthread_mutex_lock(&ld->mu);
    ld->released = ld->next_batch;
    pthread_cond_broadcast(&ld->work_cv);
    pthread_mutex_unlock(&ld->mu);
    return 1;
}

int data_loader_next_view(data_loader_t *ld, const float **x, const int **labels, int *n,
                          size_t *batch_index, util_err_t *err) {
    int rc;
    *n = 0;
    *x = NULL;
    *labels = NULL;
    slot_t *s = take_batch(ld, n, batch_index, &rc, err);
    if (!s) return rc;
    *x = s->x;
    *labels = s->labels;
    pthread_mutex_lock(&ld->mu);
    ld->holding = 1;
    pthread_mutex_unlock(&ld->mu);
    return 1;
}

size_t data_loader_skipped(const data_loader_t *ld) {
    return ld->skipped;
}

const char *data_loader_last_error(const data_loader_t *ld) {
    return ld->last_error.msg;
}

void data_loader_on_skip(data_loader_t *ld, data_skip_fn fn, void *ctx) {
    ld->on_skip = fn;
    ld->on_skip_ctx = ctx;
}
