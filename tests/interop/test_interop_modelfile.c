/* The imgret model file: exact round trips, checkpoints, atomic writes and
 * every kind of damage giving a clear error (run under ASan + UBSan). */
#include "interop_fixture.h"

#include <dirent.h>
#include <sys/stat.h>

static void fill_norm(model_file_t *mf) {
    float *mean = malloc(3 * 256 * 256 * sizeof *mean);
    for (int i = 0; i < 3 * 256 * 256; i++)
        mean[i] = (float)(i % 251);
    CHECK(model_norm_set_mean_image(&mf->norm, 3, 256, 256, mean, NULL) == 0);
    free(mean);
    mf->norm.has_eigen = 1;
    const float val[3] = {0.2175f, 0.0188f, 0.0045f};
    const float vec[9] = {-0.5675f, 0.7192f,  0.4009f,  -0.5808f, -0.0045f,
                          -0.8140f, -0.5836f, -0.6948f, 0.4203f};
    memcpy(mf->norm.eigval, val, sizeof val);
    memcpy(mf->norm.eigvec, vec, sizeof vec);
    const char *names[10] = {"zero", "one", "two",   "three", "four",
                             "five", "six", "seven", "eight", "nine, with a comma"};
    CHECK(model_file_set_class_names(mf, names, 10, NULL) == 0);
    snprintf(mf->source, sizeof mf->source, "test");
}

static void test_save_load_is_bit_identical(void) {
    char path[256];
    tmp_path(path, sizeof path, "rt.imgret");
    model_file_t *mf = small_file(227, 1);
    fill_norm(mf);
    util_err_t err = {{0}};
    CHECK_MSG(model_file_save(mf, path, &err) == 0, "%s", err.msg);
    model_file_t *back = model_file_load(path, &err);
    CHECK_MSG(back != NULL, "%s", err.msg);
    if (back) {
        CHECK(memcmp(&mf->spec, &back->spec, sizeof mf->spec) == 0);
        CHECK(back->n_params == mf->n_params);
        for (int i = 0; i < mf->n_params && i < back->n_params; i++) {
            CHECK(strcmp(mf->param[i].name, back->param[i].name) == 0);
            CHECK(mf->param[i].count == back->param[i].count);
            CHECK(memcmp(mf->param[i].dims, back->param[i].dims, sizeof mf->param[i].dims) == 0);
            CHECK(memcmp(mf->param[i].data, back->param[i].data,
                         mf->param[i].count * sizeof(float)) == 0);
        }
        CHECK(memcmp(mf->hash, back->hash, MODEL_HASH_BYTES) == 0);
        static const uint8_t zero[MODEL_HASH_BYTES];
        CHECK(memcmp(back->hash, zero, MODEL_HASH_BYTES) != 0);
        CHECK(back->norm.mean_kind == MODEL_MEAN_IMAGE && back->norm.mean_h == 256);
        CHECK(memcmp(back->norm.mean_image, mf->norm.mean_image, 3 * 256 * 256 * 4) == 0);
        CHECK(memcmp(back->norm.eigvec, mf->norm.eigvec, sizeof mf->norm.eigvec) == 0);
        CHECK(back->norm.has_eigen && back->norm.scale == 1.0f);
        CHECK(back->n_classes == 10 && strcmp(back->class_names[9], "nine, with a comma") == 0);
        CHECK(strcmp(back->source, "test") == 0);
        CHECK(back->checkpoint == NULL);
    }
    /* The same content saved again has the same identity. */
    uint8_t h1[MODEL_HASH_BYTES];
    memcpy(h1, mf->hash, sizeof h1);
    CHECK(model_file_save(mf, path, &err) == 0);
    CHECK(memcmp(h1, mf->hash, sizeof h1) == 0);
    model_file_free(back);
    model_file_free(mf);
    unlink(path);
}

static void test_net_from_file_gives_the_same_logits(void) {
    char path[256];
    tmp_path(path, sizeof path, "net.imgret");
    model_spec_t s;
    CHECK(model_spec_alexnet_small(&s, 1, 28, 10, NULL) == 0);
    util_err_t err = {{0}};
    model_net_t *net = model_net_create(&s, 2, &err);
    model_net_init(net, 3);
    model_file_t *mf = model_file_from_net(net, 0, &err);
    CHECK(mf && model_file_save(mf, path, &err) == 0);
    model_file_t *back = model_file_load(path, &err);
    CHECK_MSG(back != NULL, "%s", err.msg);
    size_t n1 = 0, n2 = 0;
    float *a = run_logits(mf, 2, &n1), *b = back ? run_logits(back, 2, &n2) : NULL;
    CHECK(a && b && n1 == n2 && n1 == 20);
    if (a && b) CHECK(memcmp(a, b, n1 * sizeof *a) == 0);
    free(a);
    free(b);
    model_file_free(back);
    model_file_free(mf);
    model_net_free(net);
    unlink(path);
}

static void test_checkpoint_round_trip_keeps_identity(void) {
    char path[256], plain[256];
    tmp_path(path, sizeof path, "ckpt.imgret");
    tmp_path(plain, sizeof plain, "plain.imgret");
    model_spec_t s;
    CHECK(model_spec_alexnet_small(&s, 1, 28, 10, NULL) == 0);
    util_err_t err = {{0}};
    model_net_t *net = model_net_create(&s, 1, &err);
    model_net_init(net, 5);
    for (int i = 0; i < model_net_n_params(net); i++) {
        model_param_t *p = model_net_param(net, i);
        for (size_t j = 0; j < p->count; j++)
            p->momentum[j] = (float)j * 1e-3f - (float)i;
    }
    util_rng_seed(model_net_rng(net), 99);
    model_file_t *mf = model_file_from_net(net, 1, &err);
    CHECK_MSG(mf && mf->checkpoint, "%s", err.msg);
    model_checkpoint_t *c = mf->checkpoint;
    c->epoch = 17;
    c->step = 123456789012LL;
    c->sgd = (model_sgd_t){0.001f, 0.9f, 0.0005f};
    util_rng_seed(&c->rng, 4242);
    c->n_history = 2;
    c->history = calloc(2, sizeof *c->history);
    c->history[0] = (model_metric_t){1, 469, 0.01f, 2.1f, 0.7f, 2.0f, 0.65f, 0.2f, 31.5};
    c->history[1] = (model_metric_t){2, 938, 0.01f, 1.1f, 0.4f, 1.0f, 0.35f, 0.1f, 63.0};
    CHECK_MSG(model_file_save(mf, path, &err) == 0, "%s", err.msg);
    model_file_t *back = model_file_load(path, &err);
    CHECK_MSG(back && back->checkpoint, "%s", err.msg);
    if (back && back->checkpoint) {
        model_checkpoint_t *b = back->checkpoint;
        CHECK(b->epoch == 17 && b->step == 123456789012LL);
        CHECK(b->sgd.lr == 0.001f && b->sgd.momentum == 0.9f && b->sgd.weight_decay == 0.0005f);
        CHECK(memcmp(&b->rng, &c->rng, sizeof b->rng) == 0);
        CHECK(memcmp(&b->dropout_rng, model_net_rng(net), sizeof b->rng) == 0);
        CHECK(b->n_history == 2 && memcmp(b->history, c->history, 2 * sizeof *b->history) == 0);
        for (int i = 0; i < back->n_params; i++)
            CHECK(memcmp(b->momentum[i].data, c->momentum[i].data,
                         c->momentum[i].count * sizeof(float)) == 0);
        /* Resuming: the net gets momentum and dropout RNG back. */
        model_net_t *again = model_net_create_from_file(back, 1, &err);
        CHECK(again != NULL);
        if (again) {
            model_param_t *p = model_net_param(again, 3);
            CHECK(memcmp(p->momentum, c->momentum[3].data, p->count * sizeof(float)) == 0);
            CHECK(memcmp(model_net_rng(again), model_net_rng(net), sizeof(util_rng_t)) == 0);
        }
        model_net_free(again);
    }
    /* Training state does not change the model's identity. */
    model_checkpoint_t *keep = mf->checkpoint;
    mf->checkpoint = NULL;
    CHECK(model_file_save(mf, plain, &err) == 0);
    mf->checkpoint = keep;
    CHECK(back && memcmp(back->hash, mf->hash, MODEL_HASH_BYTES) == 0);
    model_file_free(back);
    model_file_free(mf);
    model_net_free(net);
    unlink(path);
    unlink(plain);
}

/* Saves a small model and returns its bytes. */
static uint8_t *saved_bytes(const char *path, size_t *len, int with_checkpoint) {
    model_file_t *mf = small_file(227, 2);
    if (with_checkpoint) model_file_add_checkpoint(mf, NULL);
    util_err_t err = {{0}};
    CHECK_MSG(model_file_save(mf, path, &err) == 0, "%s", err.msg);
    model_file_free(mf);
    return slurp(path, len);
}

static int load_fails_with(const char *path, const char *text) {
    util_err_t err = {{0}};
    model_file_t *mf = model_file_load(path, &err);
    int ok = mf == NULL && strstr(err.msg, text) != NULL && strstr(err.msg, path) != NULL;
    if (!ok) fprintf(stderr, "  expected an error with '%s', got '%s'\n", text, err.msg);
    model_file_free(mf);
    return ok;
}

static void test_truncated_files_are_named_errors(void) {
    char path[256], cut[256];
    tmp_path(path, sizeof path, "full.imgret");
    tmp_path(cut, sizeof cut, "cut.imgret");
    size_t len = 0;
    uint8_t *buf = saved_bytes(path, &len, 1);
    const size_t cuts[] = {0, 5, 8, 40, 95, 96, 97, 1000, len / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        CHECK(spit(cut, buf, cuts[i]) == 0);
        CHECK_MSG(load_fails_with(cut, cuts[i] < 8 ? "not an imgret model file" : "truncated"),
                  "cut at %zu", cuts[i]);
    }
    /* Bytes after the body are damage too. */
    uint8_t *longer = malloc(len + 3);
    memcpy(longer, buf, len);
    memset(longer + len, 0, 3);
    CHECK(spit(cut, longer, len + 3) == 0);
    CHECK(load_fails_with(cut, "trailing bytes"));
    free(longer);
    free(buf);
    unlink(path);
    unlink(cut);
}

static void test_wrong_magic_and_version(void) {
    char path[256];
    tmp_path(path, sizeof path, "magic.imgret");
    size_t len = 0;
    uint8_t *buf = saved_bytes(path, &len, 0);
    buf[0] = 'X';
    CHECK(spit(path, buf, len) == 0);
    CHECK(load_fails_with(path, "not an imgret model file"));
    buf[0] = 'I';
    buf[8] = 2;
    CHECK(spit(path, buf, len) == 0);
    CHECK(load_fails_with(path, "format version 2"));
    free(buf);
    unlink(path);
}

static void test_flipped_byte_is_a_hash_mismatch(void) {
    char path[256];
    tmp_path(path, sizeof path, "flip.imgret");
    size_t len = 0;
    uint8_t *buf = saved_bytes(path, &len, 1);
    uint64_t model_len = 0;
    for (int i = 7; i >= 0; i--)
        model_len = model_len << 8 | buf[16 + i];
    /* A byte in the parameters, in the spec, in the checkpoint. */
    const size_t at[] = {96 + model_len / 2, 100, 96 + model_len + 10};
    const char *want[] = {"content hash mismatch", "content hash mismatch",
                          "checkpoint hash mismatch"};
    for (int i = 0; i < 3; i++) {
        buf[at[i]] ^= 0x10;
        CHECK(spit(path, buf, len) == 0);
        CHECK(load_fails_with(path, want[i]));
        buf[at[i]] ^= 0x10;
    }
    /* A flipped bit in the stored hash itself. */
    buf[40] ^= 1;
    CHECK(spit(path, buf, len) == 0);
    CHECK(load_fails_with(path, "content hash mismatch"));
    free(buf);
    unlink(path);
}

static void test_huge_declared_sizes_fail_before_allocating(void) {
    char path[256];
    tmp_path(path, sizeof path, "huge.imgret");
    size_t len = 0;
    uint8_t *buf = saved_bytes(path, &len, 0);
    const uint64_t sizes[] = {(uint64_t)2 << 30, ((uint64_t)2 << 30) + 1, UINT64_MAX};
    const char *want[] = {"truncated", "over the", "over the"};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 8; i++)
            buf[16 + i] = (uint8_t)(sizes[k] >> (8 * i));
        CHECK(spit(path, buf, len) == 0);
        CHECK(load_fails_with(path, want[k]));
    }
    free(buf);
    unlink(path);
}

static void test_garbage_body_with_a_valid_hash(void) {
    char path[256];
    tmp_path(path, sizeof path, "garbage.imgret");
    size_t len = 0;
    uint8_t *buf = saved_bytes(path, &len, 0);
    /* Overwrite the body with bytes that are not protobuf (a length prefix
     * far past the end), then fix the hash so only the parser can object. */
    memset(buf + 96, 0xff, 64);
    CHECK(ix_sha256(buf + 96, len - 96, buf + 32, NULL) == 0);
    CHECK(spit(path, buf, len) == 0);
    CHECK(load_fails_with(path, "not a valid ModelFile"));
    free(buf);
    unlink(path);
}

static void test_wrong_shape_is_named(void) {
    char path[256];
    tmp_path(path, sizeof path, "shape.imgret");
    model_file_t *mf = small_file(227, 3);
    model_tensor_t *t = model_file_find_param(mf, "conv2.weight");
    /* conv2 without its groups: 16x8x5x5 instead of 16x4x5x5. */
    t->dims[1] = 8;
    t->count *= 2;
    t->data = realloc(t->data, t->count * sizeof(float));
    memset(t->data, 0, t->count * sizeof(float));
    util_err_t err = {{0}};
    CHECK(model_file_save(mf, path, &err) == -1);
    CHECK_ERR_HAS(err, "conv2.weight: expected 16x4x5x5, file has 16x8x5x5");
    CHECK(mf_save_unchecked(mf, path, &err) == 0);
    CHECK(load_fails_with(path, "conv2.weight: expected 16x4x5x5, file has 16x8x5x5"));
    model_file_free(mf);
    unlink(path);
}

static void test_missing_and_extra_params_are_named(void) {
    char path[256];
    tmp_path(path, sizeof path, "missing.imgret");
    model_file_t *mf = small_file(227, 4);
    mf->n_params--; /* drop fc8.bias */
    util_err_t err = {{0}};
    CHECK(mf_save_unchecked(mf, path, &err) == 0);
    CHECK(load_fails_with(path, "fc8.bias: missing from the file"));
    mf->n_params++;
    snprintf(mf->param[mf->n_params - 1].name, sizeof mf->param[0].name, "fc9.bias");
    CHECK(mf_save_unchecked(mf, path, &err) == 0);
    CHECK(load_fails_with(path, "fc8.bias: missing"));
    model_file_free(mf);
    unlink(path);
}

static void test_unknown_layer_kind_is_named(void) {
    char path[256];
    tmp_path(path, sizeof path, "kind.imgret");
    model_file_t *mf = small_file(227, 5);
    mf->spec.layer[5].kind = (model_layer_kind_t)42;
    util_err_t err = {{0}};
    CHECK(mf_save_unchecked(mf, path, &err) == 0);
    CHECK(load_fails_with(path, "layer 5 (relu2) has unknown kind 42"));
    model_file_free(mf);
    unlink(path);
}

static void test_atomic_save_leaves_no_temporary(void) {
    char dir[256], path[300];
    tmp_path(dir, sizeof dir, "dir");
    CHECK(mkdir(dir, 0700) == 0);
    snprintf(path, sizeof path, "%s/m.imgret", dir);
    model_file_t *mf = small_file(227, 6);
    util_err_t err = {{0}};
    CHECK(model_file_save(mf, path, &err) == 0);
    CHECK(model_file_save(mf, path, &err) == 0); /* replaces */
    DIR *d = opendir(dir);
    int entries = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.') entries++;
    if (d) closedir(d);
    CHECK(entries == 1);
    /* A folder that does not exist: a clear error, nothing written. */
    snprintf(path, sizeof path, "%s/no/such/m.imgret", dir);
    CHECK(model_file_save(mf, path, &err) == -1);
    CHECK_ERR_HAS(err, "cannot create a temporary file");
    snprintf(path, sizeof path, "%s/m.imgret", dir);
    unlink(path);
    rmdir(dir);
    model_file_free(mf);
}

static void test_class_names_file_must_match_outputs(void) {
    char path[256];
    tmp_path(path, sizeof path, "labels.txt");
    model_file_t *mf = small_file(227, 7);
    const char text[] = "n01 tench\nn02 goldfish\nn03\nn04\nn05\nn06\nn07\nn08\nn09\nn10 last\n\n";
    CHECK(spit(path, text, sizeof text - 1) == 0);
    util_err_t err = {{0}};
    CHECK_MSG(model_file_read_class_names(mf, path, &err) == 0, "%s", err.msg);
    CHECK(mf->n_classes == 10 && strcmp(mf->class_names[9], "n10 last") == 0);
    CHECK(spit(path, "a\nb\n", 4) == 0);
    CHECK(model_file_read_class_names(mf, path, &err) == -1);
    CHECK_ERR_HAS(err, "2 names for 10 outputs");
    model_file_free(mf);
    unlink(path);
}

/* model_input_from_file: every image gets the preparation the model was
 * trained with (model.h): shorter side to stored - 2 * pad, pad, crop. */
static void test_input_rule_is_the_training_one(void) {
    model_file_t *mf = small_file(227, 1);
    util_err_t err = {{0}};
    model_input_t in;
    /* The paper: shorter side to 256, no padding, centre crop 227. */
    CHECK_MSG(model_input_from_file(mf, &in, &err) == 0, "%s", err.msg);
    CHECK(in.prep.channels == 3 && in.prep.short_side == 256 && in.prep.pad == 0);
    CHECK(in.crop == 227 && in.stats->h == 256 && in.stats->w == 256);
    model_input_free(&in);
    /* imgret's Fashion-MNIST: 28x28 items padded by 2 to 32, crop 28; an
     * image of another size is brought to 28 first. */
    mf->spec.in_h = mf->spec.in_w = 28;
    mf->norm.stored_size = 32;
    mf->norm.stored_pad = 2;
    CHECK_MSG(model_input_from_file(mf, &in, &err) == 0, "%s", err.msg);
    CHECK(in.prep.short_side == 28 && in.prep.pad == 2 && in.crop == 28 && in.stats->h == 32);
    model_input_free(&in);
    /* Not recorded (files from before stored_pad): stored = crop + 4, crop <= 32 pads 2. */
    mf->norm.stored_pad = -1;
    CHECK_MSG(model_input_from_file(mf, &in, &err) == 0, "%s", err.msg);
    CHECK(in.prep.short_side == 28 && in.prep.pad == 2);
    model_input_free(&in);
    /* Recorded as 0: resized to 32, no padding. */
    mf->norm.stored_pad = 0;
    CHECK_MSG(model_input_from_file(mf, &in, &err) == 0, "%s", err.msg);
    CHECK(in.prep.short_side == 32 && in.prep.pad == 0);
    model_input_free(&in);
    mf->norm.channel_order = MODEL_CHANNELS_BGR;
    CHECK(model_input_from_file(mf, &in, &err) == -1);
    CHECK_ERR_HAS(err, "BGR");
    model_file_free(mf);
}

/* stored_pad survives a save and load; a file without it reads -1. */
static void test_stored_pad_round_trip(void) {
    char path[256];
    tmp_path(path, sizeof path, "pad.imgret");
    util_err_t err = {{0}};
    for (int pad = -1; pad <= 2; pad += 3) {
        model_file_t *mf = small_file(227, 1);
        CHECK(mf->norm.stored_pad == -1);
        mf->norm.stored_pad = pad;
        CHECK_MSG(model_file_save(mf, path, &err) == 0, "%s", err.msg);
        model_file_t *back = model_file_load(path, &err);
        CHECK_MSG(back != NULL, "%s", err.msg);
        if (back) CHECK(back->norm.stored_pad == pad);
        model_file_free(back);
        model_file_free(mf);
    }
    model_file_t *mf = small_file(227, 1);
    mf->norm.stored_pad = 128; /* nothing of a 256 stored image would be left */
    CHECK(model_file_save(mf, path, &err) == -1);
    CHECK_ERR_HAS(err, "stored pad 128");
    model_file_free(mf);
    unlink(path);
}

TEST_MAIN(T(test_save_load_is_bit_identical), T(test_net_from_file_gives_the_same_logits),
          T(test_checkpoint_round_trip_keeps_identity), T(test_truncated_files_are_named_errors),
          T(test_wrong_magic_and_version), T(test_flipped_byte_is_a_hash_mismatch),
          T(test_huge_declared_sizes_fail_before_allocating),
          T(test_garbage_body_with_a_valid_hash), T(test_wrong_shape_is_named),
          T(test_missing_and_extra_params_are_named), T(test_unknown_layer_kind_is_named),
          T(test_atomic_save_leaves_no_temporary), T(test_class_names_file_must_match_outputs),
          T(test_input_rule_is_the_training_one), T(test_stored_pad_round_trip))
