/* Training: exact resume (2 epochs straight == 1 epoch + checkpoint file +
 * resume + 1 epoch, and the same for a stop in mid-epoch), NaN stop, and
 * evaluation bookkeeping. Tiny data so it runs under ASan in seconds. */
#include "model/model.h"
#include "test.h"
#include "data/fixtures.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

enum { N_IMG = 48, SIDE = 18, CROP = 16, CLASSES = 4 };

static data_dataset_t *make_data(void) {
    static uint8_t px[N_IMG * SIDE * SIDE];
    static int labels[N_IMG];
    util_rng_t rng;
    util_rng_seed(&rng, 42);
    for (int i = 0; i < N_IMG; i++) {
        labels[i] = i % CLASSES;
        for (int j = 0; j < SIDE * SIDE; j++) {
            int q = (j / SIDE >= SIDE / 2) * 2 + (j % SIDE >= SIDE / 2);
            px[i * SIDE * SIDE + j] =
                (uint8_t)((q == labels[i] ? 180 : 40) + util_rng_below(&rng, 40));
        }
    }
    return data_dataset_from_memory(N_IMG, SIDE, SIDE, 1, px, labels, CLASSES, NULL, NULL);
}

static model_train_opts_t opts_for(data_stats_t *stats) {
    model_train_opts_t o = model_train_defaults();
    o.epochs = 2;
    o.batch = 16;
    o.sgd.lr = 0.01f;
    o.prep = (data_prep_t){1, 0, 0};
    o.crop = CROP;
    o.norm.mean_mode = DATA_MEAN_PIXEL;
    o.norm.stats = stats;
    o.norm.scale = 1.0f / 64.0f;
    o.seed = 7;
    o.mirror = 0; /* the classes are quadrants: a mirror would swap them */
    o.threads = 2;
    return o;
}

/* devices: a placement ("cpu-staged:0,cpu-staged:1"), NULL: one CPU. */
static model_net_t *make_net_on(const char *devices) {
    model_spec_t s;
    if (model_spec_alexnet_small(&s, 1, CROP, CLASSES, NULL)) return NULL;
    /* Narrow fc6/fc7 (the spec is data) keep the test fast under ASan; wider
     * weights and zero biases than the paper's let a few steps learn. */
    s.layer[model_spec_find(&s, "fc6")].out = 256;
    s.layer[model_spec_find(&s, "fc7")].out = 256;
    for (int i = 0; i < s.n_layers; i++) {
        if (s.layer[i].kind == MODEL_CONV) s.layer[i].weight_std = 0.1f;
        if (s.layer[i].kind == MODEL_FC) s.layer[i].weight_std = 0.02f;
        s.layer[i].bias_init = 0.0f;
    }
    model_placement_t pl = model_placement_cpu();
    if (devices && model_placement_parse(devices, NULL, &pl, NULL)) return NULL;
    model_net_t *net = model_net_create_on(&s, 16, &pl, NULL);
    model_net_init(net, 3);
    return net;
}

static model_net_t *make_net(void) {
    return make_net_on(NULL);
}

typedef struct {
    const char *path;
    int stop_after; /* steps; 0: never */
    int steps;
    volatile int stop;
} ck_ctx;

static int save_ck(void *p, const model_net_t *net, const model_train_state_t *st,
                   util_err_t *err) {
    ck_ctx *c = p;
    model_file_t *mf = model_file_from_net((model_net_t *)net, 1, err);
    if (!mf) return -1;
    if (model_train_state_to_checkpoint(st, mf->checkpoint, err)) {
        model_file_free(mf);
        return -1;
    }
    int rc = model_file_save(mf, c->path, err);
    model_file_free(mf);
    return rc;
}

static void count_step(void *p, const model_train_state_t *st, size_t steps, float loss,
                       double ips) {
    (void)st, (void)steps, (void)loss, (void)ips;
    ck_ctx *c = p;
    if (++c->steps == c->stop_after) c->stop = 1;
}

static int same_params(model_net_t *a, model_net_t *b) {
    for (int i = 0; i < model_net_n_params(a); i++) {
        model_param_t *pa = model_net_param(a, i), *pb = model_net_param(b, i);
        if (memcmp(pa->data, pb->data, pa->count * sizeof(float)) ||
            memcmp(pa->momentum, pb->momentum, pa->count * sizeof(float))) {
            fprintf(stderr, "  %s differs\n", pa->name);
            return 0;
        }
    }
    return 1;
}

/* Trains 2 epochs with a checkpoint file, stopping after stop_after steps,
 * then resumes from the file; compares with a straight run. */
static void resume_case_on(const char *devices, int stop_after, model_lr_schedule_t schedule,
                           float warmup) {
    data_dataset_t *ds = make_data();
    data_prep_t prep = {1, 0, 0};
    data_stats_t *stats = data_stats_compute(ds, &prep, 1, 0, NULL, NULL);
    model_train_opts_t o = opts_for(stats);
    o.schedule = schedule;
    o.warmup_epochs = warmup;
    util_err_t err = {{0}};
    char path[] = "/tmp/imgret_test_train_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);

    model_net_t *straight = make_net_on(devices);
    model_train_state_t *st = malloc(sizeof *st);
    model_train_state_init(st, &o);
    CHECK_MSG(model_train(straight, ds, ds, &o, st, NULL, &err) == MODEL_TRAIN_DONE, "%s", err.msg);

    model_net_t *first = make_net_on(devices);
    ck_ctx c = {path, stop_after, 0, 0};
    model_train_hooks_t hooks = {&c, count_step, NULL, save_ck, NULL, &c.stop};
    model_train_state_init(st, &o);
    CHECK_MSG(model_train(first, ds, ds, &o, st, &hooks, &err) == MODEL_TRAIN_STOPPED, "%s",
              err.msg);
    model_net_free(first);

    model_file_t *mf = model_file_load(path, &err);
    CHECK_MSG(mf && mf->checkpoint, "%s", err.msg);
    if (mf && mf->checkpoint) {
        model_placement_t pl = model_placement_cpu();
        if (devices) CHECK(model_placement_parse(devices, NULL, &pl, NULL) == 0);
        model_net_t *resumed = model_net_create_from_file_on(mf, 16, &pl, &err);
        CHECK_MSG(resumed != NULL, "%s", err.msg);
        CHECK(model_train_state_from_checkpoint(st, &o, mf->checkpoint, &err) == 0);
        CHECK(st->epoch * 3 + (int)st->step == stop_after); /* 48 / 16 = 3 steps an epoch */
        CHECK_MSG(model_train(resumed, ds, ds, &o, st, NULL, &err) == MODEL_TRAIN_DONE, "%s",
                  err.msg);
        CHECK(st->n_history == 2);
        CHECK(same_params(straight, resumed));
        model_net_free(resumed);
    }
    model_file_free(mf);
    unlink(path);
    free(st);
    model_net_free(straight);
    data_stats_free(stats);
    data_dataset_free(ds);
}

static void resume_case(int stop_after, model_lr_schedule_t schedule, float warmup) {
    resume_case_on(NULL, stop_after, schedule, warmup);
}

/* The same on devices with memory of their own (the paths a GPU run takes:
 * parameters mirrored on the host for the checkpoint, the loss through the
 * backend) and on two such devices in columns: the resumed run repeats the
 * straight one bit for bit there too. */
static void test_resume_on_staged_devices_is_exact(void) {
    resume_case_on("cpu-staged", 4, MODEL_LR_COSINE, 1.0f);
    resume_case_on("cpu-staged:0,cpu-staged:1", 4, MODEL_LR_PLATEAU, 0);
}

static void test_resume_after_one_epoch_is_exact(void) {
    resume_case(3, MODEL_LR_PLATEAU, 0);
}

static void test_resume_in_mid_epoch_is_exact(void) {
    resume_case(4, MODEL_LR_PLATEAU, 0);
}

/* The per-step schedules and the warm-up depend on (epoch, step) only: a
 * resume in mid-warm-up and mid-decay repeats the straight run. */
static void test_resume_with_warmup_and_per_step_decay_is_exact(void) {
    resume_case(2, MODEL_LR_COSINE, 1.0f);
    resume_case(4, MODEL_LR_LINEAR, 0.5f);
}

static void test_step_learning_rates(void) {
    model_train_opts_t o = model_train_defaults();
    o.epochs = 4;
    o.sgd.lr = 0.1f;
    model_train_state_t *st = malloc(sizeof *st);
    model_train_state_init(st, &o);
    /* plateau/step: the epoch's rate */
    st->lr = 0.01f;
    CHECK_NEAR(model_train_step_lr(&o, st, 10), 0.01, 1e-9);
    /* warm-up over 2 epochs of 10 steps: step t runs at lr (t + 1) / 20 */
    o.warmup_epochs = 2;
    st->epoch = 0, st->step = 0;
    CHECK_NEAR(model_train_step_lr(&o, st, 10), 0.01 / 20, 1e-9);
    st->epoch = 1, st->step = 4;
    CHECK_NEAR(model_train_step_lr(&o, st, 10), 0.01 * 15 / 20, 1e-9);
    st->epoch = 2, st->step = 0;
    CHECK_NEAR(model_train_step_lr(&o, st, 10), 0.01, 1e-9);
    /* linear: lr (1 - t / 40) over 4 epochs of 10 steps, whatever st->lr says */
    o.warmup_epochs = 0;
    o.schedule = MODEL_LR_LINEAR;
    st->epoch = 3, st->step = 0;
    CHECK_NEAR(model_train_step_lr(&o, st, 10), 0.1 * 10 / 40, 1e-7);
    /* cosine: half-way is half the rate, the last step is near 0 */
    o.schedule = MODEL_LR_COSINE;
    st->epoch = 2, st->step = 0;
    CHECK_NEAR(model_train_step_lr(&o, st, 10), 0.05, 1e-7);
    st->epoch = 3, st->step = 9;
    CHECK(model_train_step_lr(&o, st, 10) < 0.1 * 0.002);
    /* warm-up multiplies the decay */
    o.warmup_epochs = 0.5f;
    st->epoch = 0, st->step = 1;
    CHECK_NEAR(model_train_step_lr(&o, st, 10),
               0.1 * 0.5 * (1 + cos(3.14159265358979 * 1 / 40)) * 2 / 5, 1e-7);
    free(st);
}

static void test_nan_loss_stops_training_with_a_message(void) {
    data_dataset_t *ds = make_data();
    data_prep_t prep = {1, 0, 0};
    data_stats_t *stats = data_stats_compute(ds, &prep, 1, 0, NULL, NULL);
    model_train_opts_t o = opts_for(stats);
    o.sgd.lr = 1e6f;
    o.norm.scale = 1.0f;
    model_net_t *net = make_net();
    model_train_state_t *st = malloc(sizeof *st);
    model_train_state_init(st, &o);
    util_err_t err = {{0}};
    ck_ctx c = {"/nonexistent/dir/never-written", 0, 0, 0};
    model_train_hooks_t hooks = {&c, count_step, NULL, save_ck, NULL, NULL};
    CHECK(model_train(net, ds, NULL, &o, st, &hooks, &err) == -1);
    /* It stops at the bad step, before any checkpoint (which would fail here). */
    CHECK_MSG(strstr(err.msg, "loss became") != NULL, "%s", err.msg);
    CHECK(c.steps < 3);
    free(st);
    model_net_free(net);
    data_stats_free(stats);
    data_dataset_free(ds);
}

static void test_training_learns_and_ten_crop_evaluates(void) {
    data_dataset_t *ds = make_data();
    data_prep_t prep = {1, 0, 0};
    data_stats_t *stats = data_stats_compute(ds, &prep, 1, 0, NULL, NULL);
    model_train_opts_t o = opts_for(stats);
    o.epochs = 8;
    model_net_t *net = make_net();
    model_train_state_t *st = malloc(sizeof *st);
    model_train_state_init(st, &o);
    util_err_t err = {{0}};
    CHECK_MSG(model_train(net, ds, ds, &o, st, NULL, &err) == MODEL_TRAIN_DONE, "%s", err.msg);
    model_eval_result_t c1, c10;
    CHECK(model_evaluate(net, ds, &o.prep, CROP, &o.norm, 0, 1, &c1, &err) == 0);
    CHECK(model_evaluate(net, ds, &o.prep, CROP, &o.norm, 1, 1, &c10, &err) == 0);
    CHECK(c1.count == N_IMG && c10.count == N_IMG);
    CHECK_MSG(c1.top1 < 0.25f, "centre-crop top-1 error %g after 8 epochs", (double)c1.top1);
    CHECK(c1.top5 == 0.0f); /* 4 classes: the label is always in the top 5 */
    CHECK(st->history[7].val_top1 == c1.top1);
    /* A crop that does not match the net is refused. */
    CHECK(model_evaluate(net, ds, &o.prep, CROP - 1, &o.norm, 0, 1, &c1, &err) == -1);
    free(st);
    model_net_free(net);
    data_stats_free(stats);
    data_dataset_free(ds);
}

typedef struct {
    int skips;
    int named;
} skip_ctx;

static void count_skip(void *p, size_t item, const char *message) {
    (void)item;
    skip_ctx *c = p;
    c->skips++;
    for (int k = 0; k < FX_BAD_KINDS; k++)
        if (strstr(message, fx_bad_names[k])) c->named++;
}

static void test_bad_images_are_skipped_by_name_during_training(void) {
    char *dir = fx_tmpdir();
    char sub[2048], path[4096];
    for (int cls = 0; cls < 2; cls++) {
        snprintf(sub, sizeof sub, "%s/class%d", dir, cls);
        fx_mkdir(dir, cls ? "class1" : "class0");
        for (int i = 0; i < 8; i++) {
            snprintf(path, sizeof path, "%s/good%d.jpg", sub, i);
            fx_write_jpeg(path, 24, 20, 3, cls * 100 + i);
        }
    }
    snprintf(sub, sizeof sub, "%s/class1", dir);
    for (int k = 0; k < FX_BAD_KINDS; k++)
        fx_write_bad(sub, k);
    util_err_t err = {{0}};
    data_dataset_t *ds = data_dataset_open_folder(dir, NULL, &err);
    CHECK_MSG(ds != NULL, "%s", err.msg);
    if (!ds) return;
    data_prep_t prep = {3, 18, 0};
    data_stats_t *stats = data_stats_compute(ds, &prep, 2, 0, NULL, &err);
    CHECK_MSG(stats != NULL, "%s", err.msg);
    model_train_opts_t o = opts_for(stats);
    o.prep = prep;
    o.epochs = 1;
    o.batch = 8;
    model_spec_t spec;
    CHECK(model_spec_alexnet_small(&spec, 3, CROP, 2, NULL) == 0);
    spec.layer[model_spec_find(&spec, "fc6")].out = 256;
    spec.layer[model_spec_find(&spec, "fc7")].out = 256;
    model_net_t *net = model_net_create(&spec, 8, NULL);
    model_net_init(net, 1);
    model_train_state_t *st = malloc(sizeof *st);
    model_train_state_init(st, &o);
    skip_ctx c = {0, 0};
    model_train_hooks_t hooks = {&c, NULL, NULL, NULL, count_skip, NULL};
    CHECK_MSG(model_train(net, ds, ds, &o, st, &hooks, &err) == MODEL_TRAIN_DONE, "%s", err.msg);
    CHECK_MSG(c.skips == FX_BAD_KINDS, "%d skipped", c.skips);
    CHECK_MSG(c.named == FX_BAD_KINDS, "%d messages named their file", c.named);
    CHECK(st->history[0].skipped == FX_BAD_KINDS);
    free(st);
    model_net_free(net);
    data_stats_free(stats);
    data_dataset_free(ds);
    fx_rmtree(dir);
    free(dir);
}

TEST_MAIN(T(test_bad_images_are_skipped_by_name_during_training),
          T(test_resume_on_staged_devices_is_exact), T(test_resume_after_one_epoch_is_exact),
          T(test_resume_in_mid_epoch_is_exact),
          T(test_resume_with_warmup_and_per_step_decay_is_exact), T(test_step_learning_rates),
          T(test_nan_loss_stops_training_with_a_message),
          T(test_training_learns_and_ten_crop_evaluates))
