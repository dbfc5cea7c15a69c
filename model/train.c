/* Training (the paper's SGD recipe over the data loader) and top-1/top-5
 * evaluation with one or ten crops. */
#include "model/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

model_train_opts_t model_train_defaults(void) {
    model_train_opts_t o;
    memset(&o, 0, sizeof o);
    o.epochs = 90;
    o.batch = 128;
    o.sgd = (model_sgd_t){0.01f, 0.9f, 0.0005f};
    o.schedule = MODEL_LR_PLATEAU;
    o.patience = 3;
    o.step_epochs = 30;
    o.lr_factor = 0.1f;
    o.max_lr_drops = 3;
    o.prep = (data_prep_t){3, 256, 0};
    o.crop = 224;
    o.mirror = 1;
    o.lighting_std = 0.1f;
    o.norm.mean_mode = DATA_MEAN_PIXEL;
    o.threads = 2;
    return o;
}

void model_train_state_init(model_train_state_t *st, const model_train_opts_t *opts) {
    memset(st, 0, sizeof *st);
    st->lr = opts->sgd.lr;
    st->best_val_top1 = 2.0f; /* worse than any error */
}

/* Rank of the true class: how many classes have a higher probability. */
static int label_rank(const float *p, int classes, int label) {
    int rank = 0;
    for (int c = 0; c < classes; c++)
        rank += p[c] > p[label];
    return rank;
}

static int check_opts(const model_net_t *net, const model_train_opts_t *o, util_err_t *err) {
    const model_spec_t *s = model_net_spec(net);
    if (o->epochs < 1 || o->epochs > MODEL_MAX_EPOCHS)
        return util_fail(err, "train: %d epochs (1 to %d allowed)", o->epochs, MODEL_MAX_EPOCHS);
    if (o->batch < 1 || o->batch > model_net_max_batch(net))
        return util_fail(err, "train: batch %d, the net was built for 1 to %d", o->batch,
                         model_net_max_batch(net));
    if (o->crop != s->in_h || o->crop != s->in_w)
        return util_fail(err, "train: crop %d does not match the net's %dx%d input", o->crop,
                         s->in_h, s->in_w);
    if (!(o->sgd.lr > 0) || !(o->sgd.momentum >= 0) || !(o->sgd.weight_decay >= 0) ||
        !(o->lr_factor > 0 && o->lr_factor <= 1) || o->patience < 1 || o->step_epochs < 1 ||
        !(o->warmup_epochs >= 0 && o->warmup_epochs <= o->epochs) ||
        o->schedule < MODEL_LR_PLATEAU || o->schedule > MODEL_LR_COSINE)
        return util_fail(err, "train: impossible SGD settings (lr %g, momentum %g, decay %g)",
                         (double)o->sgd.lr, (double)o->sgd.momentum, (double)o->sgd.weight_decay);
    return 0;
}

static data_loader_opts_t loader_opts(const model_net_t *net, const data_prep_t *prep, int crop,
                                      const data_norm_t *norm, int threads) {
    data_loader_opts_t lo = data_loader_defaults();
    lo.prep = *prep;
    if (lo.prep.channels == 0) lo.prep.channels = model_net_spec(net)->in_c;
    lo.crop = crop;
    lo.norm = *norm;
    lo.threads = threads < 1 ? 1 : threads;
    lo.shuffle = 0;
    lo.mirror = 0;
    lo.lighting_std = 0.0f;
    return lo;
}

int model_evaluate(model_net_t *net, const data_dataset_t *ds, const data_prep_t *prep, int crop,
                   const data_norm_t *norm, int ten_crop, int threads, model_eval_result_t *out,
                   util_err_t *err) {
    if (!net || !ds || !prep || !norm || !out) return util_fail(err, "evaluate: NULL argument");
    const model_spec_t *s = model_net_spec(net);
    if (crop != s->in_h || crop != s->in_w)
        return util_fail(err, "evaluate: crop %d does not match the net's %dx%d input", crop,
                         s->in_h, s->in_w);
    const int crops = ten_crop ? DATA_TEN_CROPS : 1;
    const int items = model_net_max_batch(net) / crops;
    if (items < 1)
        return util_fail(err, "evaluate: ten crops need a net built for batches of at least 10");
    data_loader_opts_t lo = loader_opts(net, prep, crop, norm, threads);
    lo.batch_size = items;
    lo.mode = ten_crop ? DATA_CROP_TEN : DATA_CROP_CENTER;
    data_loader_t *ld = data_loader_create(ds, &lo, err);
    if (!ld) return util_fail_prefix(err, "evaluate");
    const int classes = s->layer[s->n_layers - 1].out;
    float *probs = malloc(sizeof(float) * (size_t)crops * items * classes);
    float *avg = malloc(sizeof(float) * (size_t)classes);
    int rc = probs && avg ? data_loader_start_epoch(ld, 0, 0, err)
                          : util_fail(err, "evaluate: out of memory");
    size_t count = 0, wrong1 = 0, wrong5 = 0;
    double loss = 0.0;
    while (rc == 0) {
        const float *x;
        const int *labels;
        int n;
        int got = data_loader_next_view(ld, &x, &labels, &n, NULL, err);
        if (got <= 0) {
            rc = got;
            break;
        }
        if (n == 0) continue;
        if (model_net_forward(net, x, n * crops, 0, err)) {
            rc = -1;
            break;
        }
        model_softmax(n * crops, classes, model_net_logits(net, NULL), probs);
        for (int i = 0; i < n; i++) {
            if (labels[i] < 0 || labels[i] >= classes) {
                rc = util_fail(err, "evaluate: label %d is not one of the net's %d classes",
                               labels[i], classes);
                break;
            }
            for (int c = 0; c < classes; c++) {
                double a = 0.0;
                for (int k = 0; k < crops; k++)
                    a += probs[((size_t)i * crops + k) * classes + c];
                avg[c] = (float)(a / crops);
            }
            int r = label_rank(avg, classes, labels[i]);
            wrong1 += r >= 1;
            wrong5 += r >= 5;
            loss += -log(fmax((double)avg[labels[i]], 1e-30));
            count++;
        }
    }
    if (rc == 0) {
        out->count = count;
        out->skipped = data_loader_skipped(ld);
        out->top1 = count ? (float)wrong1 / (float)count : 1.0f;
        out->top5 = count ? (float)wrong5 / (float)count : 1.0f;
        out->loss = count ? (float)(loss / (double)count) : 0.0f;
        if (count == 0)
            rc = util_fail(err, "evaluate: no image could be loaded (%s)",
                           data_loader_last_error(ld));
    }
    free(probs);
    free(avg);
    data_loader_free(ld);
    return rc;
}

/* The learning rate for the next epoch, from the one just finished. */
static void schedule_lr(const model_train_opts_t *o, model_train_state_t *st, float val_top1) {
    if (o->schedule == MODEL_LR_LINEAR || o->schedule == MODEL_LR_COSINE) return; /* per step */
    if (o->schedule == MODEL_LR_STEP) {
        if ((st->epoch + 1) % o->step_epochs == 0 && st->lr_drops < o->max_lr_drops) {
            st->lr *= o->lr_factor;
            st->lr_drops++;
        }
        return;
    }
    if (val_top1 < st->best_val_top1 - 1e-4f) {
        st->best_val_top1 = val_top1;
        st->bad_epochs = 0;
    } else if (++st->bad_epochs >= o->patience && st->lr_drops < o->max_lr_drops) {
        st->lr *= o->lr_factor;
        st->lr_drops++;
        st->bad_epochs = 0;
    }
}

/* The rate of the step about to run: the epoch's rate (st->lr) for the
 * plateau and step schedules, the per-step decay for linear and cosine, times
 * the warm-up ramp. A function of (epoch, step) only, so a resumed run
 * repeats it exactly. */
float model_train_step_lr(const model_train_opts_t *o, const model_train_state_t *st,
                          size_t steps_per_epoch) {
    const double t = (double)st->epoch * (double)steps_per_epoch + (double)st->step;
    const double total = (double)o->epochs * (double)steps_per_epoch;
    double lr = st->lr;
    if (o->schedule == MODEL_LR_LINEAR && total > 0)
        lr = o->sgd.lr * (1.0 - t / total);
    else if (o->schedule == MODEL_LR_COSINE && total > 0)
        lr = o->sgd.lr * 0.5 * (1.0 + cos(3.14159265358979323846 * t / total));
    const double warm = (double)o->warmup_epochs * (double)steps_per_epoch;
    if (warm >= 1 && t < warm) lr *= (t + 1.0) / warm;
    return (float)lr;
}

int model_train_state_to_checkpoint(const model_train_state_t *st, model_checkpoint_t *ck,
                                    util_err_t *err) {
    if (!st || !ck) return util_fail(err, "checkpoint: NULL argument");
    model_metric_t *h = calloc((size_t)st->n_history + 1, sizeof *h);
    if (!h) return util_fail(err, "checkpoint: out of memory");
    for (int i = 0; i < st->n_history; i++) {
        const model_epoch_metrics_t *m = &st->history[i];
        h[i] = (model_metric_t){m->epoch,    0,           m->lr,       m->train_loss, m->train_top1,
                                m->val_loss, m->val_top1, m->val_top5, m->seconds};
    }
    free(ck->history);
    ck->history = h;
    ck->n_history = st->n_history;
    ck->epoch = st->epoch;
    ck->step = (int64_t)st->step;
    ck->sgd.lr = st->lr;
    return 0;
}

int model_train_state_from_checkpoint(model_train_state_t *st, const model_train_opts_t *opts,
                                      const model_checkpoint_t *ck, util_err_t *err) {
    if (!st || !opts || !ck) return util_fail(err, "resume: NULL argument");
    if (ck->epoch < 0 || ck->epoch > MODEL_MAX_EPOCHS || ck->step < 0 || ck->n_history < 0 ||
        ck->n_history > MODEL_MAX_EPOCHS || ck->n_history > ck->epoch || !(ck->sgd.lr > 0))
        return util_fail(err,
                         "resume: the checkpoint's state is not valid (epoch %d, step %lld, "
                         "%d history lines, lr %g)",
                         ck->epoch, (long long)ck->step, ck->n_history, (double)ck->sgd.lr);
    model_train_state_init(st, opts);
    /* Replay the schedule over the finished epochs to recover its counters. */
    for (int i = 0; i < ck->n_history; i++) {
        const model_metric_t *h = &ck->history[i];
        model_epoch_metrics_t *m = &st->history[st->n_history++];
        memset(m, 0, sizeof *m);
        m->epoch = h->epoch;
        m->lr = h->lr;
        m->train_loss = h->train_loss;
        m->train_top1 = h->train_top1_error;
        m->val_loss = h->val_loss;
        m->val_top1 = h->val_top1_error;
        m->val_top5 = h->val_top5_error;
        m->seconds = h->seconds;
        st->epoch = i;
        schedule_lr(opts, st, h->val_top1_error >= 0 ? h->val_top1_error : h->train_top1_error);
    }
    st->epoch = ck->epoch;
    st->step = (size_t)ck->step;
    st->lr = ck->sgd.lr;
    return 0;
}

int model_train(model_net_t *net, const data_dataset_t *train, const data_dataset_t *val,
                const model_train_opts_t *opts, model_train_state_t *st,
                const model_train_hooks_t *hooks, util_err_t *err) {
    if (!net || !train || !opts || !st) return util_fail(err, "train: NULL argument");
    if (check_opts(net, opts, err)) return -1;
    model_train_hooks_t none = {0};
    if (!hooks) hooks = &none;
    const model_spec_t *s = model_net_spec(net);
    const int classes = s->layer[s->n_layers - 1].out;
    if (data_dataset_num_classes(train) > classes)
        return util_fail(err, "train: the dataset has %d classes, the net %d",
                         data_dataset_num_classes(train), classes);

    data_loader_opts_t lo = loader_opts(net, &opts->prep, opts->crop, &opts->norm, opts->threads);
    lo.batch_size = opts->batch;
    lo.mode = DATA_CROP_RANDOM;
    lo.mirror = opts->mirror;
    lo.lighting_std = opts->lighting_std;
    lo.shuffle = 1;
    lo.seed = opts->seed;
    data_loader_t *ld = data_loader_create(train, &lo, err);
    if (!ld) return util_fail_prefix(err, "train");
    if (hooks->on_skip) data_loader_on_skip(ld, hooks->on_skip, hooks->ctx);
    float *probs = malloc(sizeof(float) * (size_t)opts->batch * classes);
    if (!probs) {
        data_loader_free(ld);
        return util_fail(err, "train: out of memory");
    }
    const size_t steps = data_loader_num_batches(ld);
    int rc = MODEL_TRAIN_DONE;

    for (; st->epoch < opts->epochs && rc == MODEL_TRAIN_DONE;) {
        if (st->step == 0) {
            st->loss_sum = 0.0;
            st->seen = st->wrong1 = st->wrong5 = 0;
            st->seconds = 0.0;
        }
        size_t skipped_before = data_loader_skipped(ld);
        if (data_loader_start_epoch(ld, st->epoch, st->step, err)) {
            rc = -1;
            break;
        }
        for (;;) {
            const float *x;
            const int *labels;
            int n;
            double t0 = util_now();
            int got = data_loader_next_view(ld, &x, &labels, &n, NULL, err);
            if (got < 0) rc = -1;
            if (got <= 0) break;
            float loss = 0.0f;
            if (n > 0) {
                if (model_net_forward(net, x, n, 1, err) ||
                    model_net_backward(net, labels, &loss, probs, err)) {
                    rc = -1;
                    break;
                }
                if (!isfinite(loss)) {
                    rc = util_fail(err,
                                   "train: the loss became %g at epoch %d, step %zu (lr %g); "
                                   "stopped without saving this state — the last checkpoint "
                                   "is the last good one (try a lower --lr)",
                                   (double)loss, st->epoch + 1, st->step + 1, (double)st->lr);
                    break;
                }
                model_sgd_t sgd = opts->sgd;
                sgd.lr = model_train_step_lr(opts, st, steps);
                st->last_lr = sgd.lr;
                model_net_sgd_step(net, &sgd);
                for (int i = 0; i < n; i++) {
                    int r = label_rank(probs + (size_t)i * classes, classes, labels[i]);
                    st->wrong1 += r >= 1;
                    st->wrong5 += r >= 5;
                }
                st->loss_sum += (double)loss * n;
                st->seen += (size_t)n;
            }
            st->step++;
            double dt = util_now() - t0;
            st->seconds += dt;
            if (hooks->on_step) hooks->on_step(hooks->ctx, st, steps, loss, dt > 0 ? n / dt : 0.0);
            if (hooks->stop && *hooks->stop) {
                rc = MODEL_TRAIN_STOPPED;
                break;
            }
        }
        if (rc != MODEL_TRAIN_DONE) break;

        model_epoch_metrics_t m;
        memset(&m, 0, sizeof m);
        m.epoch = st->epoch + 1;
        m.lr = opts->schedule == MODEL_LR_LINEAR || opts->schedule == MODEL_LR_COSINE ? st->last_lr
                                                                                      : st->lr;
        m.seconds = st->seconds;
        m.skipped = data_loader_skipped(ld) - skipped_before;
        m.train_loss = st->seen ? (float)(st->loss_sum / (double)st->seen) : 0.0f;
        m.train_top1 = st->seen ? (float)st->wrong1 / (float)st->seen : 1.0f;
        m.train_top5 = st->seen ? (float)st->wrong5 / (float)st->seen : 1.0f;
        m.val_loss = m.val_top1 = m.val_top5 = -1.0f;
        if (val) {
            model_eval_result_t ev;
            if (model_evaluate(net, val, &opts->prep, opts->crop, &opts->norm, opts->ten_crop_val,
                               opts->threads, &ev, err)) {
                rc = -1;
                break;
            }
            m.val_loss = ev.loss;
            m.val_top1 = ev.top1;
            m.val_top5 = ev.top5;
        }
        schedule_lr(opts, st, val ? m.val_top1 : m.train_top1);
        if (st->n_history < MODEL_MAX_EPOCHS) st->history[st->n_history++] = m;
        st->epoch++;
        st->step = 0;
        st->loss_sum = 0.0;
        st->seen = st->wrong1 = st->wrong5 = 0;
        st->seconds = 0.0;
        if (hooks->on_epoch) hooks->on_epoch(hooks->ctx, &m);
        if (hooks->checkpoint && hooks->checkpoint(hooks->ctx, net, st, err)) {
            rc = -1;
            break;
        }
        if (hooks->stop && *hooks->stop) rc = MODEL_TRAIN_STOPPED;
    }
    if (rc == MODEL_TRAIN_STOPPED && st->step > 0 && hooks->checkpoint &&
        hooks->checkpoint(hooks->ctx, net, st, err))
        rc = -1;
    free(probs);
    data_loader_free(ld);
    return rc;
}
