/* data/: JPEG/PNG codec, bad images, resize and crop geometry. */
#include <png.h>

#include "tests/data/fixtures.h"
#include "tests/test.h"

static char *tmp;

static void test_jpeg_round_trip_rgb(void) {
    data_image_t *im = fx_pattern(64, 48, 3, 0);
    uint8_t *buf;
    size_t len;
    util_err_t err;
    CHECK(data_encode_jpeg(im, 95, &buf, &len, &err) == 0);
    CHECK(len > 100 && buf[0] == 0xff && buf[1] == 0xd8);
    data_image_t *back = data_decode(buf, len, "mem.jpg", NULL, &err);
    CHECK(back && back->w == 64 && back->h == 48 && back->c == 3);
    if (back) CHECK_MSG(fx_mean_abs_diff(im, back) < 3.0, "%f", fx_mean_abs_diff(im, back));
    data_image_free(back);
    free(buf);
    data_image_free(im);
}

static void test_jpeg_round_trip_grey_and_channel_conversion(void) {
    data_image_t *im = fx_pattern(40, 30, 1, 2);
    char path[4096];
    fx_path(path, sizeof path, tmp, "grey.jpg");
    util_err_t err;
    CHECK(data_image_write_jpeg(im, path, 95, &err) == 0);
    data_image_t *g = data_image_read(path, NULL, &err);
    CHECK(g && g->c == 1 && g->w == 40 && g->h == 30);
    if (g) CHECK(fx_mean_abs_diff(im, g) < 3.0);
    data_decode_opts_t o = {3, 0, 0, 0};
    data_image_t *rgb = data_image_read(path, &o, &err);
    CHECK(rgb && rgb->c == 3);
    int equal = 1;
    for (int i = 0; rgb && i < rgb->w * rgb->h; i++)
        equal &= rgb->pixels[3 * i] == rgb->pixels[3 * i + 1] &&
                 rgb->pixels[3 * i] == rgb->pixels[3 * i + 2];
    CHECK(equal);
    /* Colour file decoded to one channel gives the luma. */
    data_image_t *col = fx_pattern(40, 30, 3, 2);
    fx_path(path, sizeof path, tmp, "col.jpg");
    CHECK(data_image_write_jpeg(col, path, 95, &err) == 0);
    data_decode_opts_t o1 = {1, 0, 0, 0};
    data_image_t *luma = data_image_read(path, &o1, &err);
    data_image_t *ref = data_image_convert(col, 1, &err);
    CHECK(luma && luma->c == 1 && ref);
    if (luma && ref)
        CHECK_MSG(fx_mean_abs_diff(luma, ref) < 3.0, "%f", fx_mean_abs_diff(luma, ref));
    data_image_free(col);
    data_image_free(luma);
    data_image_free(ref);
    data_image_free(rgb);
    data_image_free(g);
    data_image_free(im);
}

static void test_image_convert_rgb_to_grey_uses_bt601_luma(void) {
    data_image_t *im = data_image_create(3, 1, 3, NULL);
    uint8_t px[9] = {255, 0, 0, 0, 255, 0, 0, 0, 255};
    memcpy(im->pixels, px, 9);
    data_image_t *g = data_image_convert(im, 1, NULL);
    CHECK(g && g->pixels[0] == 76 && g->pixels[1] == 150 && g->pixels[2] == 29);
    data_image_free(g);
    data_image_free(im);
}

static void test_dct_scaled_decode_picks_smallest_factor_keeping_short_side(void) {
    data_image_t *im = fx_pattern(800, 600, 3, 3);
    uint8_t *buf;
    size_t len;
    CHECK(data_encode_jpeg(im, 90, &buf, &len, NULL) == 0);
    /* 600 * 3/8 = 225 < 256, 600 * 1/2 = 300 >= 256: half size. */
    data_decode_opts_t o = {3, 256, 0, 0};
    util_err_t err;
    data_image_t *half = data_decode(buf, len, "big.jpg", &o, &err);
    CHECK(half && half->w == 400 && half->h == 300);
    /* 600 * 1/8 = 75 >= 64: an eighth. */
    data_decode_opts_t o8 = {3, 64, 0, 0};
    data_image_t *eighth = data_decode(buf, len, "big.jpg", &o8, &err);
    CHECK(eighth && eighth->w == 100 && eighth->h == 75);
    /* The target is larger than the image: full size, never enlarged. */
    data_decode_opts_t ofull = {3, 1000, 0, 0};
    data_image_t *full = data_decode(buf, len, "big.jpg", &ofull, &err);
    CHECK(full && full->w == 800 && full->h == 600);
    /* The scaled decode shows the same picture as a full decode area-resized. */
    if (half && full) {
        data_image_t *ref = data_resize(full, 400, 300, &err);
        CHECK_MSG(fx_mean_abs_diff(ref, half) < 4.0, "%f", fx_mean_abs_diff(ref, half));
        data_image_free(ref);
    }
    data_image_free(full);
    data_image_free(eighth);
    data_image_free(half);
    free(buf);
    data_image_free(im);
}

static void test_png_decode(void) {
    data_image_t *im = fx_pattern(33, 17, 3, 4);
    png_image png;
    memset(&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    png.width = 33;
    png.height = 17;
    png.format = PNG_FORMAT_RGB;
    png_alloc_size_t size = 0;
    CHECK(png_image_write_to_memory(&png, NULL, &size, 0, im->pixels, 0, NULL));
    void *buf = malloc(size);
    CHECK(png_image_write_to_memory(&png, buf, &size, 0, im->pixels, 0, NULL));
    util_err_t err;
    data_image_t *back = data_decode(buf, size, "x.png", NULL, &err);
    CHECK(back && back->w == 33 && back->h == 17 && back->c == 3);
    if (back) CHECK(memcmp(back->pixels, im->pixels, 33 * 17 * 3) == 0); /* lossless */
    /* Truncated PNG: an error naming it. */
    data_image_t *cut = data_decode(buf, size / 2, "cut.png", NULL, &err);
    CHECK(!cut);
    CHECK_MSG(strstr(err.msg, "cut.png") != NULL, "%s", err.msg);
    data_image_free(cut);
    data_image_free(back);
    free(buf);
    data_image_free(im);
}

static void test_each_bad_image_kind_gives_an_error_naming_the_file(void) {
    static const char *const expect[FX_BAD_KINDS] = {"JPEG",
                                                     "corrupt or truncated JPEG",
                                                     "empty file",
                                                     "not a JPEG, PNG, WebP",
                                                     "exceeds the limit",
                                                     "exceeds the limit",
                                                     "corrupt or truncated JPEG"};
    for (int k = 0; k < FX_BAD_KINDS; k++) {
        fx_write_bad(tmp, k);
        char path[4096];
        fx_path(path, sizeof path, tmp, fx_bad_names[k]);
        util_err_t err;
        err.msg[0] = '\0';
        data_image_t *im = data_image_read(path, NULL, &err);
        CHECK_MSG(im == NULL, "%s decoded", fx_bad_names[k]);
        CHECK_MSG(strstr(err.msg, path) != NULL, "%s: %s", fx_bad_names[k], err.msg);
        CHECK_MSG(strstr(err.msg, expect[k]) != NULL, "%s: %s", fx_bad_names[k], err.msg);
        if (k == FX_BAD_HUGE_PNG) CHECK(strstr(err.msg, "100000x100000") != NULL);
        data_image_free(im);
    }
    /* The limits are checked on the header, also with DCT scaling asked for. */
    char path[4096];
    fx_path(path, sizeof path, tmp, fx_bad_names[FX_BAD_HUGE_JPEG]);
    data_decode_opts_t o = {3, 256, 0, 0};
    util_err_t err;
    CHECK(data_image_read(path, &o, &err) == NULL);
    CHECK(strstr(err.msg, "65000x65000") != NULL);
    /* A caller's tighter limit. */
    fx_path(path, sizeof path, tmp, "ok.jpg");
    CHECK(fx_write_jpeg(path, 64, 48, 3, 0) == 0);
    data_decode_opts_t small = {0, 0, 1000, 0};
    CHECK(data_image_read(path, &small, &err) == NULL);
    CHECK(strstr(err.msg, "ok.jpg") && strstr(err.msg, "1000 pixels"));
    CHECK(data_image_read("/nonexistent/x.jpg", NULL, &err) == NULL);
    CHECK(strstr(err.msg, "/nonexistent/x.jpg") != NULL);
}

static void test_resize_area_averages_blocks_exactly(void) {
    data_image_t *im = data_image_create(4, 4, 1, NULL);
    for (int i = 0; i < 16; i++)
        im->pixels[i] = (uint8_t)(i * 10);
    data_image_t *r = data_resize(im, 2, 2, NULL);
    CHECK(r && r->w == 2 && r->h == 2);
    /* Block (0,0): 0 10 40 50 -> 25; (1,0): 20 30 60 70 -> 45; ... */
    if (r) {
        CHECK(r->pixels[0] == 25);
        CHECK(r->pixels[1] == 45);
        CHECK(r->pixels[2] == 105);
        CHECK(r->pixels[3] == 125);
    }
    /* A 3 -> 2 shrink: footprints of 1.5 pixels. [0 90 180] -> [30, 150]. */
    data_image_t *row = data_image_create(3, 1, 1, NULL);
    row->pixels[0] = 0;
    row->pixels[1] = 90;
    row->pixels[2] = 180;
    data_image_t *r2 = data_resize(row, 2, 1, NULL);
    CHECK(r2 && r2->pixels[0] == 30 && r2->pixels[1] == 150);
    data_image_free(r2);
    data_image_free(row);
    data_image_free(r);
    data_image_free(im);
}

static void test_resize_bilinear_when_enlarging(void) {
    data_image_t *im = data_image_create(2, 1, 1, NULL);
    im->pixels[0] = 0;
    im->pixels[1] = 100;
    data_image_t *r = data_resize(im, 4, 1, NULL);
    /* Centres at -0.25 (clamped), 0.25, 0.75, 1.25 (clamped). */
    CHECK(r && r->pixels[0] == 0 && r->pixels[1] == 25 && r->pixels[2] == 75 &&
          r->pixels[3] == 100);
    data_image_free(r);
    data_image_free(im);
}

static void test_center_square_scales_short_side_and_crops_centre(void) {
    /* A horizontal ramp 400x200: value = x * 255 / 399, constant down columns. */
    data_image_t *im = data_image_create(400, 200, 1, NULL);
    for (int y = 0; y < 200; y++)
        for (int x = 0; x < 400; x++)
            im->pixels[y * 400 + x] = (uint8_t)(x * 255 / 399);
    data_image_t *sq = data_resize_center_square(im, 100, NULL);
    CHECK(sq && sq->w == 100 && sq->h == 100);
    /* Scaled to 200x100, the centre square starts at x = 50: output column j
     * averages input columns [2(j+50), 2(j+50)+2). */
    for (int j = 0; sq && j < 100; j += 9) {
        double want = ((2 * (j + 50)) * 255 / 399 + (2 * (j + 50) + 1) * 255 / 399) / 2.0;
        CHECK_NEAR(sq->pixels[50 * 100 + j], want, 1.0);
        CHECK(sq->pixels[j] == sq->pixels[99 * 100 + j]);
    }
    /* Portrait: the vertical centre is kept. */
    data_image_t *tall = data_image_create(50, 150, 3, NULL);
    for (int y = 0; y < 150; y++)
        for (int x = 0; x < 50; x++)
            tall->pixels[(y * 50 + x) * 3] = (uint8_t)y;
    data_image_t *t = data_resize_center_square(tall, 50, NULL);
    CHECK(t && t->w == 50 && t->h == 50);
    if (t) CHECK(t->pixels[0] == 50 && t->pixels[(49 * 50) * 3] == 99);
    /* Same size: an unchanged copy. */
    data_image_t *same = data_resize_center_square(t, 50, NULL);
    CHECK(same && same != t && memcmp(same->pixels, t->pixels, 50 * 50 * 3) == 0);
    data_image_free(same);
    data_image_free(t);
    data_image_free(tall);
    data_image_free(sq);
    data_image_free(im);
}

static void test_prep_pads_with_zeros_and_converts_channels(void) {
    data_image_t *im = fx_pattern(28, 28, 1, 5);
    data_prep_t p = {3, 0, 2};
    data_image_t *out = data_prep_image(im, &p, NULL);
    CHECK(out && out->w == 32 && out->h == 32 && out->c == 3);
    if (out) {
        CHECK(out->pixels[0] == 0 && out->pixels[(31 * 32 + 31) * 3 + 2] == 0);
        CHECK(out->pixels[(2 * 32 + 2) * 3] == im->pixels[0]);
        CHECK(out->pixels[(29 * 32 + 29) * 3 + 1] == im->pixels[27 * 28 + 27]);
    }
    data_prep_t up = {0, 32, 0};
    data_image_t *big = data_prep_image(im, &up, NULL);
    CHECK(big && big->w == 32 && big->h == 32 && big->c == 1);
    data_image_free(big);
    data_image_free(out);
    data_image_free(im);
}

static void test_create_rejects_bad_sizes(void) {
    util_err_t err;
    CHECK(data_image_create(0, 5, 3, &err) == NULL);
    CHECK(data_image_create(100000, 100000, 3, &err) == NULL);
    CHECK(strstr(err.msg, "100000x100000") != NULL);
    CHECK(data_image_create(5, 5, 2, &err) == NULL);
    data_image_free(NULL);
}

static void setup(void) {
    tmp = fx_tmpdir();
}

int main(int argc, char **argv) {
    setup();
    static const test_case_t tests[] = {
        T(test_jpeg_round_trip_rgb),
        T(test_jpeg_round_trip_grey_and_channel_conversion),
        T(test_image_convert_rgb_to_grey_uses_bt601_luma),
        T(test_dct_scaled_decode_picks_smallest_factor_keeping_short_side),
        T(test_png_decode),
        T(test_each_bad_image_kind_gives_an_error_naming_the_file),
        T(test_resize_area_averages_blocks_exactly),
        T(test_resize_bilinear_when_enlarging),
        T(test_center_square_scales_short_side_and_crops_centre),
        T(test_prep_pads_with_zeros_and_converts_channels),
        T(test_create_rejects_bad_sizes),
    };
    int rc = test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
    fx_rmtree(tmp);
    free(tmp);
    return rc;
}
