#include "cli/plot.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A 5x7 bitmap font for the few characters the plots print. */
static const struct glyph {
    char ch;
    unsigned char rows[7];
} font[] = {
    {'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},
    {'2', {14, 17, 1, 2, 4, 8, 31}},     {'3', {31, 2, 4, 2, 1, 17, 14}},
    {'4', {2, 6, 10, 18, 31, 2, 2}},     {'5', {31, 16, 30, 1, 1, 17, 14}},
    {'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},
    {'8', {14, 17, 17, 14, 17, 17, 14}}, {'9', {14, 17, 17, 15, 1, 2, 12}},
    {'.', {0, 0, 0, 0, 0, 12, 12}},      {'%', {24, 25, 2, 4, 8, 19, 3}},
    {'-', {0, 0, 0, 31, 0, 0, 0}},       {'(', {2, 4, 8, 8, 8, 4, 2}},
    {')', {8, 4, 2, 2, 2, 4, 8}},        {'a', {0, 0, 14, 1, 15, 17, 15}},
    {'c', {0, 0, 14, 16, 16, 17, 14}},   {'e', {0, 0, 14, 17, 31, 16, 14}},
    {'h', {16, 16, 22, 25, 17, 17, 17}}, {'i', {4, 0, 12, 4, 4, 4, 14}},
    {'l', {12, 4, 4, 4, 4, 4, 14}},      {'n', {0, 0, 22, 25, 17, 17, 17}},
    {'o', {0, 0, 14, 17, 17, 17, 14}},   {'p', {0, 0, 30, 17, 30, 16, 16}},
    {'r', {0, 0, 22, 25, 16, 16, 16}},   {'s', {0, 0, 14, 16, 14, 1, 30}},
    {'t', {8, 8, 28, 8, 8, 9, 6}},       {'v', {0, 0, 17, 17, 17, 10, 4}},
};

static void put(data_image_t *im, int x, int y, const unsigned char rgb[3]) {
    if (x < 0 || y < 0 || x >= im->w || y >= im->h) return;
    memcpy(im->pixels + ((size_t)y * im->w + x) * 3, rgb, 3);
}

static void text(data_image_t *im, int x, int y, const char *s, const unsigned char rgb[3]) {
    for (; *s; s++, x += 6) {
        for (size_t g = 0; g < sizeof font / sizeof font[0]; g++) {
            if (font[g].ch != *s) continue;
            for (int r = 0; r < 7; r++)
                for (int b = 0; b < 5; b++)
                    if (font[g].rows[r] & (16 >> b)) put(im, x + b, y + r, rgb);
        }
    }
}

/* Bresenham, two pixels thick. */
static void line(data_image_t *im, int x0, int y0, int x1, int y1, const unsigned char rgb[3]) {
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1, dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int e = dx + dy;
    for (;;) {
        put(im, x0, y0, rgb);
        put(im, x0, y0 + 1, rgb);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * e;
        if (e2 >= dy) e += dy, x0 += sx;
        if (e2 <= dx) e += dx, y0 += sy;
    }
}

enum { PANEL = 420, MARGIN_L = 56, MARGIN_R = 16, MARGIN_T = 28, MARGIN_B = 36 };

static const unsigned char BLACK[3] = {0, 0, 0}, GREY[3] = {215, 215, 215};
static const unsigned char COLOURS[4][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}};

typedef struct series {
    const char *label;
    float v[MODEL_MAX_EPOCHS];
} series_t;

static void panel(data_image_t *im, int x0, const char *title, const series_t *s, int ns, int n,
                  float scale, const char *unit) {
    const int w = PANEL - MARGIN_L - MARGIN_R, h = PANEL - MARGIN_T - MARGIN_B;
    const int left = x0 + MARGIN_L, top = MARGIN_T;
    float ymax = 0.0f;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < n; i++)
            ymax = fmaxf(ymax, s[k].v[i]);
    if (!(ymax > 0)) ymax = 1;
    char buf[32];
    for (int t = 0; t <= 4; t++) { /* horizontal grid with values */
        int y = top + h - t * h / 4;
        for (int x = left; x < left + w; x++)
            put(im, x, y, GREY);
        snprintf(buf, sizeof buf, "%.3g%s", (double)(ymax * scale * (float)t / 4), unit);
        text(im, x0 + 4, y - 3, buf, BLACK);
    }
    line(im, left, top, left, top + h, BLACK);
    line(im, left, top + h, left + w, top + h, BLACK);
    text(im, left + w / 2 - 6 * (int)strlen(title) / 2, 8, title, BLACK);
    for (int i = 0; i < n; i++) { /* epoch ticks */
        int x = left + (n > 1 ? i * w / (n - 1) : w / 2);
        line(im, x, top + h, x, top + h + 3, BLACK);
        if (n <= 15 || i % 5 == 4 || i == 0) {
            snprintf(buf, sizeof buf, "%d", i + 1);
            text(im, x - 3, top + h + 8, buf, BLACK);
        }
    }
    text(im, left + w / 2 - 15, top + h + 22, "epoch", BLACK);
    for (int k = 0; k < ns; k++) {
        int px = 0, py = 0;
        for (int i = 0; i < n; i++) {
            if (s[k].v[i] < 0) continue; /* no validation */
            int x = left + (n > 1 ? i * w / (n - 1) : w / 2);
            int y = top + h - (int)((float)h * s[k].v[i] / ymax);
            if (i > 0 && s[k].v[i - 1] >= 0) line(im, px, py, x, y, COLOURS[k]);
            for (int d = -2; d <= 2; d++)
                put(im, x + d, y, COLOURS[k]), put(im, x, y + d, COLOURS[k]);
            px = x, py = y;
        }
        line(im, left + w - 110, top + 10 + 12 * k, left + w - 90, top + 10 + 12 * k, COLOURS[k]);
        text(im, left + w - 85, top + 7 + 12 * k, s[k].label, BLACK);
    }
}

int cli_plot_curves(const model_epoch_metrics_t *h, int n, const char *path, util_err_t *err) {
    if (n < 1) return util_fail(err, "plot: no epochs to plot");
    data_image_t *im = data_image_create(2 * PANEL, PANEL, 3, err);
    if (!im) return -1;
    memset(im->pixels, 255, (size_t)im->w * im->h * 3);
    series_t *s = calloc(5, sizeof *s);
    if (!s) {
        data_image_free(im);
        return util_fail(err, "plot: out of memory");
    }
    s[0].label = "train", s[1].label = "val";
    s[2].label = "train top-1", s[3].label = "val top-1", s[4].label = "val top-5";
    for (int i = 0; i < n; i++) {
        s[0].v[i] = h[i].train_loss;
        s[1].v[i] = h[i].val_loss;
        s[2].v[i] = h[i].train_top1;
        s[3].v[i] = h[i].val_top1;
        s[4].v[i] = h[i].val_top5;
    }
    panel(im, 0, "loss", s, 2, n, 1.0f, "");
    panel(im, PANEL, "error", s + 2, 3, n, 100.0f, "%");
    int rc = data_image_write_png(im, path, err);
    free(s);
    data_image_free(im);
    return rc;
}

int cli_plot_conv1(model_net_t *net, const char *path, util_err_t *err) {
    model_param_t *w = model_net_find_param(net, "conv1.weight");
    if (!w) return util_fail(err, "plot: the net has no conv1");
    const int out = w->dims[0], in = w->dims[1], k = w->dims[2];
    const int mag = k >= 8 ? 3 : 6, cell = k * mag + 2;
    const int cols = out >= 32 ? out / 4 : out, rows = (out + cols - 1) / cols;
    data_image_t *im =
        data_image_create(cols * cell + 2, rows * cell + 2 + (rows > 1 ? 4 : 0), 3, err);
    if (!im) return -1;
    memset(im->pixels, 255, (size_t)im->w * im->h * 3);
    for (int o = 0; o < out; o++) {
        const float *kw = w->data + (size_t)o * in * k * k;
        float lo = kw[0], hi = kw[0];
        for (int j = 0; j < in * k * k; j++)
            lo = fminf(lo, kw[j]), hi = fmaxf(hi, kw[j]);
        float range = hi > lo ? hi - lo : 1.0f;
        /* The second half of the kernels (the paper's second GPU) sits below a gap. */
        int gx = (o % cols) * cell + 2,
            gy = (o / cols) * cell + 2 + (o >= out / 2 && rows > 1 ? 4 : 0);
        for (int y = 0; y < k * mag; y++)
            for (int x = 0; x < k * mag; x++) {
                unsigned char rgb[3];
                for (int c = 0; c < 3; c++) {
                    int ch = in == 3 ? c : 0;
                    float v = kw[((size_t)ch * k + y / mag) * k + x / mag];
                    rgb[c] = (unsigned char)lrintf(255.0f * (v - lo) / range);
                }
                put(im, gx + x, gy + y, rgb);
            }
    }
    int rc = data_image_write_png(im, path, err);
    data_image_free(im);
    return rc;
}
