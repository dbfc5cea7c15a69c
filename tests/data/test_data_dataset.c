/* data/: IDX files (synthetic and the real Fashion-MNIST), image folders,
 * list files, memory datasets and subsets. */
#include "tests/data/fixtures.h"
#include "tests/test.h"

static char *tmp;

/* Writes an IDX file (gzip-compressed when gz) with the given header bytes
 * and payload. */
static void write_idx(const char *name, int gz, const uint8_t *head, size_t head_len,
                      const uint8_t *data, size_t len) {
    char path[4096];
    fx_path(path, sizeof path, tmp, name);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        gzwrite(f, head, (unsigned)head_len);
        if (len) gzwrite(f, data, (unsigned)len);
        gzclose(f);
    } else {
        uint8_t *all = malloc(head_len + len + 1);
        memcpy(all, head, head_len);
        if (len) memcpy(all + head_len, data, len);
        fx_write(path, all, head_len + len);
        free(all);
    }
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* 3 images of 2x3 (h=2, w=3), pixel = 10 * item + offset; labels 4, 0, 2. */
static void write_small_idx(const char *img, const char *lab, int gz) {
    uint8_t h[16] = {0, 0, 8, 3};
    put32(h + 4, 3);
    put32(h + 8, 2);
    put32(h + 12, 3);
    uint8_t px[18];
    for (int i = 0; i < 18; i++)
        px[i] = (uint8_t)(10 * (i / 6) + i % 6);
    write_idx(img, gz, h, 16, px, 18);
    uint8_t hl[8] = {0, 0, 8, 1};
    put32(hl + 4, 3);
    uint8_t labels[3] = {4, 0, 2};
    write_idx(lab, gz, hl, 8, labels, 3);
}

static data_dataset_t *open_idx(const char *img, const char *lab, util_err_t *err) {
    char pi[4096], pl[4096];
    fx_path(pi, sizeof pi, tmp, img);
    fx_path(pl, sizeof pl, tmp, lab);
    return data_dataset_open_idx(pi, pl, NULL, err);
}

static void test_idx_reads_gz_and_plain_files(void) {
    for (int gz = 0; gz < 2; gz++) {
        write_small_idx("s-img", "s-lab", gz);
        util_err_t err;
        data_dataset_t *ds = open_idx("s-img", "s-lab", &err);
        CHECK_MSG(ds != NULL, "%s", err.msg);
        if (!ds) continue;
        CHECK(data_dataset_count(ds) == 3);
        CHECK(data_dataset_num_classes(ds) == 5);
        CHECK(data_dataset_channels(ds) == 1);
        CHECK(strcmp(data_dataset_class_name(ds, 4), "4") == 0);
        CHECK(data_dataset_class_name(ds, 5) == NULL);
        CHECK(data_dataset_label(ds, 2) == 2 && data_dataset_label(ds, 3) == -1);
        int label = -1;
        data_image_t *im = data_dataset_load(ds, 1, NULL, &label, &err);
        CHECK(im && im->w == 3 && im->h == 2 && im->c == 1 && label == 0);
        if (im) CHECK(im->pixels[0] == 10 && im->pixels[5] == 15);
        data_image_free(im);
        data_decode_opts_t o = {3, 0, 0, 0};
        im = data_dataset_load(ds, 2, &o, &label, &err);
        CHECK(im && im->c == 3 && im->pixels[3 * 4 + 1] == 24 && label == 2);
        data_image_free(im);
        CHECK(data_dataset_load(ds, 3, NULL, &label, &err) == NULL);
        char name[256];
        CHECK(strstr(data_dataset_item_name(ds, 1, name, sizeof name), "s-img[1]") != NULL);
        data_dataset_free(ds);
    }
}

static void test_idx_rejects_bad_headers_and_sizes(void) {
    write_small_idx("ok-img", "ok-lab", 1);
    uint8_t px[64] = {0};
    struct {
        const char *what, *expect;
        uint8_t head[20];
        size_t head_len, data_len;
        int gz;
    } cases[] = {
        {"bad magic",
         "not an IDX file",
         {1, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 3},
         16,
         18,
         1},
        {"float type",
         "0x0d is not supported",
         {0, 0, 0x0d, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 3},
         16,
         18,
         1},
        {"zero dim",
         "dimension 1 is 0",
         {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 3},
         16,
         0,
         1},
        {"count mismatch",
         "holds 4 images but",
         {0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 3},
         16,
         24,
         1},
        {"truncated data",
         "truncated IDX data",
         {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 3},
         16,
         17,
         1},
        {"trailing data",
         "data after",
         {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 3},
         16,
         19,
         0},
        {"absurd count",
         "absurd size",
         {0, 0, 8, 3, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff},
         16,
         18,
         1},
        {"lying count",
         "truncated IDX data",
         {0, 0, 8, 3, 0x10, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 3},
         16,
         18,
         1},
        {"truncated header", "truncated IDX header", {0, 0, 8, 3, 0, 0, 0, 3}, 8, 0, 1},
        {"empty", "empty file", {0}, 0, 0, 0},
        {"labels as images", "dimensions (n, h, w)", {0, 0, 8, 1, 0, 0, 0, 3}, 8, 3, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        write_idx("bad-img", cases[k].gz, cases[k].head, cases[k].head_len, px, cases[k].data_len);
        util_err_t err;
        err.msg[0] = '\0';
        data_dataset_t *ds = open_idx("bad-img", "ok-lab", &err);
        CHECK_MSG(ds == NULL, "%s: opened", cases[k].what);
        CHECK_MSG(strstr(err.msg, cases[k].expect) != NULL, "%s: %s", cases[k].what, err.msg);
        CHECK_MSG(strstr(err.msg, "bad-img") != NULL, "%s: %s", cases[k].what, err.msg);
        data_dataset_free(ds);
    }
    /* Labels with two dimensions. */
    uint8_t hl[12] = {0, 0, 8, 2, 0, 0, 0, 3, 0, 0, 0, 1};
    write_idx("bad-lab", 1, hl, 12, px, 3);
    util_err_t err;
    CHECK(open_idx("ok-img", "bad-lab", &err) == NULL);
    CHECK(strstr(err.msg, "one dimension") != NULL);
    /* A corrupt gzip stream. */
    char path[4096];
    fx_path(path, sizeof path, tmp, "corrupt-gz");
    uint8_t junk[64] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    for (int i = 10; i < 64; i++)
        junk[i] = (uint8_t)(i * 37);
    fx_write(path, junk, sizeof junk);
    CHECK(open_idx("corrupt-gz", "ok-lab", &err) == NULL);
    CHECK_MSG(strstr(err.msg, "corrupt-gz") != NULL, "%s", err.msg);
    CHECK(open_idx("missing", "ok-lab", &err) == NULL);
    CHECK(strstr(err.msg, "missing") != NULL);
}

static void test_fashion_mnist_real_files(void) {
    util_err_t err;
    data_dataset_t *tr = data_dataset_open_fashion_mnist(NULL, "train", &err);
    CHECK_MSG(tr != NULL, "%s", err.msg);
    data_dataset_t *te = data_dataset_open_fashion_mnist(NULL, "t10k", &err);
    CHECK_MSG(te != NULL, "%s", err.msg);
    if (!tr || !te) {
        data_dataset_free(tr);
        data_dataset_free(te);
        return;
    }
    CHECK(data_dataset_count(tr) == 60000 && data_dataset_count(te) == 10000);
    CHECK(data_dataset_num_classes(tr) == 10 && data_dataset_num_classes(te) == 10);
    CHECK(strcmp(data_dataset_class_name(tr, 9), "Ankle boot") == 0);
    CHECK(strcmp(data_dataset_class_name(tr, 0), "T-shirt/top") == 0);
    /* Reference values from Python's gzip module on the same files. */
    static const int train_labels[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
    static const int test_labels[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
    for (int i = 0; i < 10; i++) {
        CHECK(data_dataset_label(tr, (size_t)i) == train_labels[i]);
        CHECK(data_dataset_label(te, (size_t)i) == test_labels[i]);
    }
    struct {
        data_dataset_t *ds;
        size_t i;
        long sum;
        int centre;
    } img[] = {{tr, 0, 76247, 217}, {tr, 1, 84598, -1},  {tr, 59999, 16684, -1},
               {te, 0, 33456, 110}, {te, 1, 100994, -1}, {te, 9999, 24390, -1}};
    for (size_t k = 0; k < sizeof img / sizeof img[0]; k++) {
        int label;
        data_image_t *im = data_dataset_load(img[k].ds, img[k].i, NULL, &label, &err);
        CHECK(im && im->w == 28 && im->h == 28 && im->c == 1);
        if (!im) continue;
        long s = 0;
        for (int p = 0; p < 784; p++)
            s += im->pixels[p];
        CHECK_MSG(s == img[k].sum, "item %zu: sum %ld, want %ld", img[k].i, s, img[k].sum);
        if (img[k].centre >= 0) CHECK(im->pixels[14 * 28 + 14] == img[k].centre);
        data_image_free(im);
    }
    CHECK(data_dataset_open_fashion_mnist(NULL, "val", &err) == NULL);
    CHECK(data_dataset_open_fashion_mnist("/nonexistent", "train", &err) == NULL);
    CHECK(strstr(err.msg, "/nonexistent/train-images-idx3-ubyte.gz") != NULL);
    data_dataset_free(tr);
    data_dataset_free(te);
}

/* root/{zebra,ant,mouse}/..., with a stray text file and a hidden file. */
static char *make_folder(void) {
    char *root = malloc(4096);
    fx_path(root, 4096, tmp, "folder");
    mkdir(root, 0755);
    const char *classes[3] = {"zebra", "ant", "mouse"};
    const int counts[3] = {2, 3, 1};
    for (int c = 0; c < 3; c++) {
        fx_mkdir(root, classes[c]);
        for (int i = 0; i < counts[c]; i++) {
            char p[4096];
            snprintf(p, sizeof p, "%s/%s/img%d.%s", root, classes[c], 2 - i,
                     i == 1 ? "JPEG" : "jpg");
            fx_write_jpeg(p, 20 + c, 16 + i, 3, c * 10 + i);
        }
        char p[4096];
        snprintf(p, sizeof p, "%s/%s/notes.txt", root, classes[c]);
        fx_write(p, "x", 1);
        snprintf(p, sizeof p, "%s/%s/.hidden.jpg", root, classes[c]);
        fx_write(p, "x", 1);
    }
    return root;
}

static void test_folder_dataset_sorts_classes_and_files(void) {
    char *root = make_folder();
    util_err_t err;
    data_dataset_t *ds = data_dataset_open_folder(root, NULL, &err);
    CHECK_MSG(ds != NULL, "%s", err.msg);
    if (ds) {
        CHECK(data_dataset_count(ds) == 6);
        CHECK(data_dataset_num_classes(ds) == 3);
        CHECK(!strcmp(data_dataset_class_name(ds, 0), "ant"));
        CHECK(!strcmp(data_dataset_class_name(ds, 1), "mouse"));
        CHECK(!strcmp(data_dataset_class_name(ds, 2), "zebra"));
        CHECK(data_dataset_channels(ds) == 0);
        static const int want_labels[6] = {0, 0, 0, 1, 2, 2};
        for (size_t i = 0; i < 6; i++)
            CHECK(data_dataset_label(ds, i) == want_labels[i]);
        char name[4096];
        data_dataset_item_name(ds, 0, name, sizeof name);
        CHECK_MSG(strstr(name, "/ant/img0.jpg") != NULL, "%s", name); /* sorted by name */
        int label;
        /* zebra/img1.JPEG (20x17) sorts before zebra/img2.jpg (20x16). */
        data_image_t *im = data_dataset_load(ds, 4, NULL, &label, &err);
        CHECK_MSG(im && label == 2 && im->w == 20 && im->h == 17 && im->c == 3, "%d %dx%dx%d %s",
                  label, im ? im->w : 0, im ? im->h : 0, im ? im->c : 0, im ? "" : err.msg);
        data_image_free(im);
        data_dataset_free(ds);
    }
    /* A labels file fixes the order and gives display names. */
    char lp[4096];
    fx_path(lp, sizeof lp, tmp, "classes.txt");
    const char *text = "# folder display-name\nzebra Zebra, striped\nmouse\nant Ant\nyak\n";
    fx_write(lp, text, strlen(text));
    ds = data_dataset_open_folder(root, lp, &err);
    CHECK_MSG(ds != NULL, "%s", err.msg);
    if (ds) {
        CHECK(data_dataset_num_classes(ds) == 4);
        CHECK(!strcmp(data_dataset_class_name(ds, 0), "Zebra, striped"));
        CHECK(!strcmp(data_dataset_class_name(ds, 1), "mouse"));
        CHECK(!strcmp(data_dataset_class_name(ds, 3), "yak"));
        CHECK(data_dataset_label(ds, 0) == 0 && data_dataset_label(ds, 2) == 1 &&
              data_dataset_label(ds, 5) == 2);
        data_dataset_free(ds);
    }
    /* A folder with images missing from the labels file is an error. */
    const char *partial = "zebra\nant\n";
    fx_write(lp, partial, strlen(partial));
    CHECK(data_dataset_open_folder(root, lp, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "\"mouse\"") != NULL, "%s", err.msg);
    CHECK(data_dataset_open_folder("/nonexistent-root", NULL, &err) == NULL);
    CHECK(strstr(err.msg, "/nonexistent-root") != NULL);
    free(root);
}

static void test_list_file_dataset(void) {
    fx_mkdir(tmp, "list dir");
    char p[4096];
    fx_path(p, sizeof p, tmp, "list dir/a b.jpg");
    fx_write_jpeg(p, 10, 12, 3, 1);
    fx_path(p, sizeof p, tmp, "abs.jpg");
    fx_write_jpeg(p, 14, 9, 1, 2);
    char list[8192];
    snprintf(list, sizeof list, "# comment\n\nlist dir/a b.jpg 3\r\n  %s/abs.jpg\t0\n", tmp);
    char lp[4096];
    fx_path(lp, sizeof lp, tmp, "items.txt");
    fx_write(lp, list, strlen(list));
    util_err_t err;
    data_dataset_t *ds = data_dataset_open_list(lp, NULL, &err);
    CHECK_MSG(ds != NULL, "%s", err.msg);
    if (ds) {
        CHECK(data_dataset_count(ds) == 2 && data_dataset_num_classes(ds) == 4);
        int label;
        data_image_t *im = data_dataset_load(ds, 0, NULL, &label, &err);
        CHECK_MSG(im && im->w == 10 && im->h == 12 && label == 3, "%s", err.msg);
        data_image_free(im);
        im = data_dataset_load(ds, 1, NULL, &label, &err);
        CHECK(im && im->w == 14 && im->c == 1 && label == 0);
        data_image_free(im);
        data_dataset_free(ds);
    }
    /* Names file and a label beyond it. */
    char np[4096];
    fx_path(np, sizeof np, tmp, "names.txt");
    fx_write(np, "zero\none\n", 9);
    CHECK(data_dataset_open_list(lp, np, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "items.txt:3") != NULL, "%s", err.msg);
    const char *bad = "x.jpg cat\n";
    fx_write(lp, bad, strlen(bad));
    CHECK(data_dataset_open_list(lp, NULL, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "items.txt:1") && strstr(err.msg, "\"cat\""), "%s", err.msg);
    fx_write(lp, "7\n", 2);
    CHECK(data_dataset_open_list(lp, NULL, &err) == NULL);
    /* A missing file is an error when loaded, naming it. */
    fx_write(lp, "gone.jpg 1\n", 11);
    ds = data_dataset_open_list(lp, NULL, &err);
    CHECK(ds != NULL);
    if (ds) {
        CHECK(data_dataset_load(ds, 0, NULL, NULL, &err) == NULL);
        CHECK(strstr(err.msg, "gone.jpg") != NULL);
        data_dataset_free(ds);
    }
}

static void test_memory_dataset_and_subset(void) {
    uint8_t px[4 * 2 * 2 * 3];
    for (size_t i = 0; i < sizeof px; i++)
        px[i] = (uint8_t)i;
    int labels[4] = {1, 0, 1, 2};
    const char *names[3] = {"a", "b", "c"};
    util_err_t err;
    data_dataset_t *ds = data_dataset_from_memory(4, 2, 2, 3, px, labels, 3, names, &err);
    CHECK(ds && data_dataset_count(ds) == 4 && !strcmp(data_dataset_class_name(ds, 2), "c"));
    data_dataset_t *sub = ds ? data_dataset_subset(ds, 1, 2, &err) : NULL;
    CHECK(sub && data_dataset_count(sub) == 2 && data_dataset_num_classes(sub) == 3);
    if (sub) {
        int label;
        data_image_t *im = data_dataset_load(sub, 1, NULL, &label, &err);
        CHECK(im && label == 1 && im->pixels[0] == 24);
        data_image_free(im);
        CHECK(data_dataset_subset(ds, 3, 2, &err) == NULL);
    }
    int bad[1] = {5};
    CHECK(data_dataset_from_memory(1, 2, 2, 3, px, bad, 3, NULL, &err) == NULL);
    data_dataset_free(sub);
    data_dataset_free(ds);
    data_dataset_free(NULL);
}

/* A JPEG whose EXIF (APP1, big-endian TIFF, IFD0 holding only the
 * orientation tag) says `orientation`; *len its size. Caller frees. */
static uint8_t *jpeg_with_orientation(int w, int h, int orientation, size_t *len) {
    data_image_t *im = fx_pattern(w, h, 3, 1);
    uint8_t *jpg;
    size_t n;
    if (data_encode_jpeg(im, 90, &jpg, &n, NULL)) abort();
    data_image_free(im);
    static const uint8_t app1_head[] = {0xff, 0xe1, 0, 34, 'E', 'x', 'i', 'f', 0, 0,
                                        'M',  'M',  0, 42, 0,   0,   0,   8,   0, 1,
                                        0x01, 0x12, 0, 3,  0,   0,   0,   1};
    uint8_t *out = malloc(n + 36);
    if (!out) abort();
    memcpy(out, jpg, 2);
    memcpy(out + 2, app1_head, sizeof app1_head);
    uint8_t *v = out + 2 + sizeof app1_head;
    v[0] = 0, v[1] = (uint8_t)orientation, v[2] = v[3] = 0; /* value, padding */
    memset(v + 4, 0, 4);                                    /* no next IFD */
    memcpy(v + 8, jpg + 2, n - 2);
    *len = 2 + sizeof app1_head + 8 + n - 2;
    free(jpg);
    return out;
}

static void test_folder_dataset_picks_images_by_content(void) {
    char root[4096];
    fx_path(root, sizeof root, tmp, "by-content");
    mkdir(root, 0755);
    fx_mkdir(root, "cls");
    char p[4096];
    size_t len;
    uint8_t *jpg = jpeg_with_orientation(24, 16, 6, &len);
    fx_path(p, sizeof p, root, "cls/photo"); /* a JPEG without an extension */
    fx_write(p, jpg, len);
    fx_path(p, sizeof p, root, "cls/scan.dat"); /* a PNG with the wrong one */
    data_image_t *im = fx_pattern(10, 12, 1, 0);
    CHECK(data_image_write_png(im, p, NULL) == 0);
    data_image_free(im);
    fx_path(p, sizeof p, root, "cls/notes.txt");
    fx_write(p, "not an image", 12);
    fx_path(p, sizeof p, root, "cls/empty");
    fx_write(p, "", 0);
    util_err_t err;
    data_dataset_t *ds = data_dataset_open_folder(root, NULL, &err);
    CHECK_MSG(ds != NULL, "%s", err.msg);
    if (ds) {
        CHECK(data_dataset_count(ds) == 2);
        char name[4096];
        data_dataset_item_name(ds, 0, name, sizeof name);
        CHECK_MSG(strstr(name, "/cls/photo") != NULL, "%s", name);
        /* Orientation 6: the 24x16 stored picture is shown 16x24, upright. */
        data_image_t *up = data_dataset_load(ds, 0, NULL, NULL, &err);
        CHECK_MSG(up && up->w == 16 && up->h == 24, "%s", up ? "" : err.msg);
        data_dataset_set_raw_orientation(ds, 1);
        data_image_t *raw = data_dataset_load(ds, 0, NULL, NULL, &err);
        CHECK_MSG(raw && raw->w == 24 && raw->h == 16, "%s", raw ? "" : err.msg);
        /* Upright pixel (x, y) is stored pixel (y, H - 1 - x). */
        int same = up && raw;
        for (int y = 0; same && y < up->h; y++)
            for (int x = 0; x < up->w; x++)
                for (int k = 0; k < 3; k++)
                    same &= up->pixels[((size_t)y * up->w + x) * 3 + k] ==
                            raw->pixels[((size_t)(raw->h - 1 - x) * raw->w + y) * 3 + k];
        CHECK(same);
        data_image_free(up);
        data_image_free(raw);
        data_dataset_free(ds);
    }
    free(jpg);
}

int main(int argc, char **argv) {
    tmp = fx_tmpdir();
    static const test_case_t tests[] = {
        T(test_idx_reads_gz_and_plain_files),
        T(test_idx_rejects_bad_headers_and_sizes),
        T(test_fashion_mnist_real_files),
        T(test_folder_dataset_sorts_classes_and_files),
        T(test_folder_dataset_picks_images_by_content),
        T(test_list_file_dataset),
        T(test_memory_dataset_and_subset),
    };
    int rc = test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
    fx_rmtree(tmp);
    free(tmp);
    return rc;
}
