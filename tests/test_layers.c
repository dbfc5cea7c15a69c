/* Layer tests: finite-difference gradient checks for every layer (input and
 * parameter gradients), forward values against the formulas, shapes. */
#include "model/model.h"
#include "test.h"

#include <stdlib.h>

#include <omp.h>

static util_rng_t rng;

static float *randn(size_t n, float scale) {
    float *v = malloc(n * sizeof *v);
    for (size_t j = 0; j < n; j++)
        v[j] = (float)util_rng_normal(&rng) * scale;
    return v;
}

/* Values spaced at least 0.05 apart (a shuffled ramp), so that neither a max
 * nor a ReLU kink lies within the finite-difference step. */
static float *spaced(size_t n, int signed_values) {
    float *v = malloc(n * sizeof *v);
    for (size_t j = 0; j < n; j++)
        v[j] = 0.05f * (float)(j + 1) - (signed_values ? 0.025f * (float)n : 0.0f);
    if (signed_values)
        for (size_t j = 0; j < n; j++)
            if (fabsf(v[j]) < 0.02f) v[j] = 0.03f;
    for (size_t j = n - 1; j > 0; j--) {
        size_t k = util_rng_below(&rng, (uint32_t)(j + 1));
        float t = v[j];
        v[j] = v[k];
        v[k] = t;
    }
    return v;
}

typedef double (*loss_fn)(void *ctx);

/* Compares analytic[j] with the central difference of f in v[j], for up to
 * max_checks indices spread over the array. Returns the number of mismatches. */
static int gradcheck(const char *what, loss_fn f, void *ctx, float *v, const float *analytic,
                     size_t count, size_t max_checks, float eps) {
    size_t step = count > max_checks ? count / max_checks : 1;
    int bad = 0;
    for (size_t j = 0; j < count; j += step) {
        float save = v[j];
        v[j] = save + eps;
        double lp = f(ctx);
        v[j] = save - eps;
        double lm = f(ctx);
        v[j] = save;
        double num = (lp - lm) / (2.0 * eps), a = analytic[j];
        double tol = 2e-3 + 1e-2 * fmax(fabs(a), fabs(num));
        if (fabs(a - num) > tol) {
            if (bad < 5)
                fprintf(stderr, "  %s[%zu]: analytic %.6g, numeric %.6g\n", what, j, a, num);
            bad++;
        }
    }
    return bad;
}

static double dot(const float *y, const float *r, size_t n) {
    double s = 0.0;
    for (size_t j = 0; j < n; j++)
        s += (double)y[j] * r[j];
    return s;
}

/* ------------------------------------------------------------------ conv */

typedef struct {
    model_workspace_t *ws;
    model_conv_param_t p;
    model_shape_t in, out;
    float *x, *w, *b, *y, *r;
} conv_ctx;

static double conv_loss(void *c) {
    conv_ctx *k = c;
    if (model_conv_forward(k->ws, &k->p, k->in, k->x, k->w, k->b, k->y, NULL)) return NAN;
    return dot(k->y, k->r, model_shape_count(k->out));
}

static void conv_gradcheck(model_conv_param_t p, model_shape_t in) {
    conv_ctx k = {model_workspace_create(), p, in, {0, 0, 0, 0}, NULL, NULL, NULL, NULL, NULL};
    util_err_t err;
    CHECK_MSG(model_conv_shape(&p, in, &k.out, &err) == 0, "%s", err.msg);
    size_t nx = model_shape_count(in), ny = model_shape_count(k.out);
    size_t nw = (size_t)p.out_c * (p.in_c / p.groups) * p.kernel * p.kernel;
    k.x = randn(nx, 1.0f);
    k.w = randn(nw, 0.3f);
    k.b = randn((size_t)p.out_c, 0.3f);
    k.y = malloc(ny * sizeof(float));
    k.r = randn(ny, 1.0f);
    float *dx = malloc(nx * sizeof(float)), *dw = malloc(nw * sizeof(float)),
          *db = malloc((size_t)p.out_c * sizeof(float));
    conv_loss(&k);
    CHECK(model_conv_backward(k.ws, &p, in, k.x, k.w, k.r, dx, dw, db, &err) == 0);
    CHECK(gradcheck("conv dx", conv_loss, &k, k.x, dx, nx, 400, 1e-2f) == 0);
    CHECK(gradcheck("conv dw", conv_loss, &k, k.w, dw, nw, 400, 1e-2f) == 0);
    CHECK(gradcheck("conv db", conv_loss, &k, k.b, db, (size_t)p.out_c, 400, 1e-2f) == 0);
    /* dx = NULL (first layer) still gives the same parameter gradients. */
    float *dw2 = malloc(nw * sizeof(float));
    CHECK(model_conv_backward(k.ws, &p, in, k.x, k.w, k.r, NULL, dw2, db, &err) == 0);
    CHECK(memcmp(dw, dw2, nw * sizeof(float)) == 0);
    free(dw2);
    free(k.x), free(k.w), free(k.b), free(k.y), free(k.r), free(dx), free(dw), free(db);
    model_workspace_free(k.ws);
}

static void test_conv_gradients_groups_stride_padding(void) {
    conv_gradcheck((model_conv_param_t){4, 6, 3, 2, 1, 2}, (model_shape_t){3, 4, 7, 7});
}

static void test_conv_gradients_stride4_like_conv1(void) {
    conv_gradcheck((model_conv_param_t){3, 4, 5, 4, 0, 1}, (model_shape_t){2, 3, 13, 13});
}

static void test_conv_gradients_5x5_pad2_groups2_like_conv2(void) {
    conv_gradcheck((model_conv_param_t){4, 4, 5, 1, 2, 2}, (model_shape_t){2, 4, 6, 6});
}

static void test_conv_gradients_1x1_direct(void) {
    conv_gradcheck((model_conv_param_t){4, 2, 1, 1, 0, 2}, (model_shape_t){2, 4, 5, 5});
}

/* The convolution by its definition, in double. */
static double conv_reference(const model_conv_param_t *p, model_shape_t in, const float *x,
                             const float *w, const float *b, int n, int oc, int oy, int ox) {
    const int cg = p->in_c / p->groups, mg = p->out_c / p->groups, g = oc / mg, k = p->kernel;
    double s = b[oc];
    for (int ic = 0; ic < cg; ic++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                int iy = oy * p->stride - p->pad + ky, ix = ox * p->stride - p->pad + kx;
                if (iy < 0 || iy >= in.h || ix < 0 || ix >= in.w) continue;
                s += (double)w[((oc * cg + ic) * k + ky) * k + kx] *
                     x[(((size_t)n * in.c + g * cg + ic) * in.h + iy) * in.w + ix];
            }
    return s;
}

/* model_conv_forward on `threads` threads against the definition: the
 * largest absolute difference. */
static double conv_forward_error(model_conv_param_t p, model_shape_t in, int threads) {
    model_shape_t o;
    CHECK(model_conv_shape(&p, in, &o, NULL) == 0);
    size_t nw = (size_t)p.out_c * (p.in_c / p.groups) * p.kernel * p.kernel;
    float *x = randn(model_shape_count(in), 1), *w = randn(nw, 1), *b = randn((size_t)p.out_c, 1);
    float *y = malloc(model_shape_count(o) * sizeof(float));
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    model_workspace_t *ws = model_workspace_create();
    CHECK(model_conv_forward(ws, &p, in, x, w, b, y, NULL) == 0);
    omp_set_num_threads(saved);
    double worst = 0;
    for (int n = 0; n < in.n; n++)
        for (int oc = 0; oc < p.out_c; oc++)
            for (int oy = 0; oy < o.h; oy++)
                for (int ox = 0; ox < o.w; ox++) {
                    double got = y[(((size_t)n * o.c + oc) * o.h + oy) * o.w + ox];
                    double want = conv_reference(&p, in, x, w, b, n, oc, oy, ox);
                    worst = fmax(worst, fabs(got - want) / (1.0 + fabs(want)));
                }
    free(x), free(w), free(b), free(y);
    model_workspace_free(ws);
    return worst;
}

static void test_conv_forward_matches_direct_sum(void) {
    model_conv_param_t p = {4, 6, 3, 2, 1, 2};
    model_shape_t in = {2, 4, 7, 6}, o;
    CHECK(model_conv_shape(&p, in, &o, NULL) == 0);
    CHECK(o.h == 4 && o.w == 3);
    CHECK_NEAR(conv_forward_error(p, in, 1), 0, 1e-5);
    CHECK_NEAR(conv_forward_error(p, in, 2), 0, 1e-5);
}

/* Fewer images than threads (batch 1) shares each image among the threads:
 * by groups, then by rows of the output (more channels than pixels) or by
 * columns (the other way), with partial micro-tiles at the cuts; and more
 * groups than threads, and 1x1 convolutions that skip im2col. */
static void test_conv_forward_batch1_on_shared_threads(void) {
    static const struct {
        model_conv_param_t p;
        model_shape_t in;
    } cases[] = {
        {{3, 40, 5, 2, 0, 1}, {1, 3, 41, 39}},   /* by columns: 40 rows, 342 columns */
        {{16, 100, 3, 1, 1, 1}, {1, 16, 7, 6}},  /* by rows: 100 rows, 42 columns */
        {{8, 58, 5, 1, 2, 2}, {1, 8, 9, 9}},     /* one group per thread */
        {{6, 33, 3, 1, 1, 3}, {1, 6, 5, 5}},     /* three groups */
        {{8, 30, 1, 1, 0, 2}, {1, 8, 4, 5}},     /* 1x1, groups */
        {{8, 30, 1, 1, 0, 1}, {1, 8, 4, 5}},     /* 1x1, by rows */
        {{300, 20, 3, 2, 1, 1}, {1, 300, 9, 9}}, /* K = 2700: several slices */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int threads = 1; threads <= 4; threads++) {
            double e = conv_forward_error(cases[c].p, cases[c].in, threads);
            CHECK_MSG(e < 1e-4, "case %zu on %d threads: error %g", c, threads, e);
        }
}

/* model_conv_forward on `threads` threads against the definition: the
 * largest absolute difference over the output's RMS (the scale a whole
 * net's check compares at; a sum of many terms that cancel has rounding
 * errors of its terms' size, not of its own). */
static double conv_forward_error_rms(model_conv_param_t p, model_shape_t in, int threads) {
    model_shape_t o;
    CHECK(model_conv_shape(&p, in, &o, NULL) == 0);
    size_t nw = (size_t)p.out_c * (p.in_c / p.groups) * p.kernel * p.kernel;
    float *x = randn(model_shape_count(in), 1), *w = randn(nw, 1), *b = randn((size_t)p.out_c, 1);
    float *y = malloc(model_shape_count(o) * sizeof(float));
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    model_workspace_t *ws = model_workspace_create();
    CHECK(model_conv_forward(ws, &p, in, x, w, b, y, NULL) == 0);
    omp_set_num_threads(saved);
    double worst = 0, sq = 0;
    for (int n = 0; n < in.n; n++)
        for (int oc = 0; oc < p.out_c; oc++)
            for (int oy = 0; oy < o.h; oy++)
                for (int ox = 0; ox < o.w; ox++) {
                    double got = y[(((size_t)n * o.c + oc) * o.h + oy) * o.w + ox];
                    double want = conv_reference(&p, in, x, w, b, n, oc, oy, ox);
                    worst = fmax(worst, fabs(got - want));
                    sq += want * want;
                }
    free(x), free(w), free(b), free(y);
    model_workspace_free(ws);
    return worst / sqrt(sq / (double)model_shape_count(o));
}

/* Winograd F(4x4, 3x3) (IMGRET_CONV=winograd) against the definition, for
 * 3x3 stride-1 convolutions: pad 0, 1 and 2, groups 1 and 2, odd and even
 * maps (13, 14, 7, 2 and 1: one tile, tiles cut by the edge), channels that
 * fill no vector, batch 1 (the threads share each block) and batch 5 (each
 * thread its own blocks), and channels past the own sgemm's packed blocks,
 * on 1 and 2 threads, within 1e-4 of the output's RMS: the worst case
 * measures 2.7e-5 (im2col + sgemm: 2.6e-6 on the same data), what F(4x4,
 * 3x3)'s transforms (entries up to 8 and 1/24) cost in float. */
static void test_conv_winograd_matches_direct_sum(void) {
    static const struct {
        model_conv_param_t p;
        model_shape_t in;
    } cases[] = {
        {{5, 7, 3, 1, 1, 1}, {1, 5, 13, 13}},
        {{5, 7, 3, 1, 1, 1}, {5, 5, 13, 13}},
        {{6, 10, 3, 1, 0, 2}, {5, 6, 14, 14}},
        {{6, 10, 3, 1, 2, 2}, {1, 6, 14, 13}},
        {{19, 21, 3, 1, 1, 1}, {5, 19, 7, 7}},
        {{18, 34, 3, 1, 1, 2}, {1, 18, 7, 7}},
        {{4, 6, 3, 1, 1, 2}, {5, 4, 2, 2}},
        {{4, 6, 3, 1, 2, 1}, {5, 4, 2, 2}},
        {{3, 5, 3, 1, 1, 1}, {1, 3, 1, 1}},
        {{3, 5, 3, 1, 2, 1}, {5, 3, 1, 1}},
        {{40, 36, 3, 1, 1, 2}, {12, 40, 13, 13}},
        {{17, 9, 3, 1, 0, 1}, {3, 17, 6, 9}},
        /* Deeper than one packed slice (kc 256), more rows than one AVX2 block (mc 240). */
        {{300, 260, 3, 1, 1, 1}, {4, 300, 9, 9}},
    };
    setenv("IMGRET_CONV", "winograd", 1);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int threads = 1; threads <= 2; threads++) {
            double e = conv_forward_error_rms(cases[c].p, cases[c].in, threads);
            CHECK_MSG(e < 1e-4, "case %zu on %d threads: error %g", c, threads, e);
        }
    /* Forced where it does not apply (stride 2), the direct path runs. */
    CHECK(conv_forward_error((model_conv_param_t){4, 6, 3, 2, 1, 2}, (model_shape_t){2, 4, 7, 6},
                             2) < 1e-5);
    unsetenv("IMGRET_CONV");
}

/* The input gradient by Winograd (the convolution of dy with the weights
 * transposed and turned, padded 2 - pad) against im2col + col2im, within
 * 1e-4 of its RMS; dw and db are the same computation either way. And the
 * finite differences of the Winograd forward agree with its gradients. */
static double conv_dx_winograd_error(model_conv_param_t p, model_shape_t in, int *same_dw) {
    model_shape_t o;
    CHECK(model_conv_shape(&p, in, &o, NULL) == 0);
    const size_t nx = model_shape_count(in), ny = model_shape_count(o);
    const size_t nw = (size_t)p.out_c * (p.in_c / p.groups) * 9;
    float *x = randn(nx, 1), *w = randn(nw, 1), *dy = randn(ny, 1);
    float *dx[2], *dw[2], db[2][64];
    model_workspace_t *ws = model_workspace_create();
    for (int a = 0; a < 2; a++) {
        dx[a] = malloc(nx * sizeof(float));
        dw[a] = malloc(nw * sizeof(float));
        setenv("IMGRET_CONV", a ? "winograd" : "direct", 1);
        CHECK(model_conv_backward(ws, &p, in, x, w, dy, dx[a], dw[a], db[a], NULL) == 0);
    }
    unsetenv("IMGRET_CONV");
    double worst = 0, sq = 0;
    for (size_t j = 0; j < nx; j++) {
        worst = fmax(worst, fabs((double)dx[1][j] - dx[0][j]));
        sq += (double)dx[0][j] * dx[0][j];
    }
    *same_dw = !memcmp(dw[0], dw[1], nw * sizeof(float)) &&
               !memcmp(db[0], db[1], (size_t)p.out_c * sizeof(float));
    for (int a = 0; a < 2; a++)
        free(dx[a]), free(dw[a]);
    free(x), free(w), free(dy);
    model_workspace_free(ws);
    return worst / sqrt(sq / (double)nx);
}

static void test_conv_winograd_input_gradient(void) {
    static const struct {
        model_conv_param_t p;
        model_shape_t in;
    } cases[] = {
        {{5, 7, 3, 1, 1, 1}, {1, 5, 13, 13}},    {{6, 10, 3, 1, 0, 2}, {5, 6, 14, 14}},
        {{6, 10, 3, 1, 2, 2}, {3, 6, 7, 6}},     {{19, 21, 3, 1, 1, 1}, {5, 19, 7, 7}},
        {{4, 6, 3, 1, 1, 2}, {5, 4, 2, 2}},      {{3, 5, 3, 1, 1, 1}, {2, 3, 1, 1}},
        {{40, 36, 3, 1, 1, 2}, {6, 40, 13, 13}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int same = 0;
        double e = conv_dx_winograd_error(cases[c].p, cases[c].in, &same);
        CHECK_MSG(e < 1e-4, "case %zu: dx error %g", c, e);
        CHECK_MSG(same, "case %zu: dw or db differ", c);
    }
    setenv("IMGRET_CONV", "winograd", 1);
    conv_gradcheck((model_conv_param_t){4, 6, 3, 1, 1, 2}, (model_shape_t){3, 4, 7, 6});
    conv_gradcheck((model_conv_param_t){3, 4, 3, 1, 0, 1}, (model_shape_t){2, 3, 6, 7});
    unsetenv("IMGRET_CONV");
}

static void test_conv_algorithm_choice_refuses_unknown_names(void) {
    model_conv_param_t p = {2, 2, 3, 1, 1, 1};
    model_shape_t in = {1, 2, 4, 4};
    float x[32] = {0}, w[36] = {0}, b[2] = {0}, y[32];
    model_workspace_t *ws = model_workspace_create();
    util_err_t err = {{0}};
    setenv("IMGRET_CONV", "fft", 1);
    CHECK(model_conv_forward(ws, &p, in, x, w, b, y, &err) != 0);
    CHECK_MSG(strstr(err.msg, "IMGRET_CONV") != NULL, "%s", err.msg);
    setenv("IMGRET_CONV", "auto", 1);
    CHECK(model_conv_forward(ws, &p, in, x, w, b, y, &err) == 0);
    unsetenv("IMGRET_CONV");
    model_workspace_free(ws);
}

/* ------------------------------------------------------------------- lrn */

typedef struct {
    model_lrn_param_t p;
    model_shape_t in;
    float *x, *y, *scale, *r;
} lrn_ctx;

static double lrn_loss(void *c) {
    lrn_ctx *k = c;
    if (model_lrn_forward(&k->p, k->in, k->x, k->y, k->scale, NULL)) return NAN;
    return dot(k->y, k->r, model_shape_count(k->in));
}

static void lrn_gradcheck(model_lrn_param_t p) {
    model_shape_t in = {2, 7, 3, 4};
    size_t n = model_shape_count(in);
    lrn_ctx k = {p, in, randn(n, 1.5f), malloc(n * 4), malloc(n * 4), randn(n, 1.0f)};
    float *dx = malloc(n * 4);
    lrn_loss(&k);
    CHECK(model_lrn_backward(&p, in, k.x, k.y, k.scale, k.r, dx, NULL) == 0);
    CHECK(gradcheck("lrn dx", lrn_loss, &k, k.x, dx, n, 1000, 1e-2f) == 0);
    free(k.x), free(k.y), free(k.scale), free(k.r), free(dx);
}

static void test_lrn_gradients_paper_alpha(void) {
    lrn_gradcheck((model_lrn_param_t){5, 2.0f, 0.1f, 0.75f, MODEL_LRN_ALPHA_PAPER});
}

static void test_lrn_gradients_alpha_over_n(void) {
    lrn_gradcheck((model_lrn_param_t){5, 1.0f, 0.5f, 0.75f, MODEL_LRN_ALPHA_OVER_N});
}

static void test_lrn_gradients_even_size_general_beta(void) {
    lrn_gradcheck((model_lrn_param_t){4, 1.5f, 0.3f, 0.6f, MODEL_LRN_ALPHA_PAPER});
}

static void test_lrn_matches_paper_formula(void) {
    /* b = a / (k + alpha * sum_{n=5 adjacent maps} a^2)^beta with the paper's
     * constants; for the alpha/n convention alpha is divided by 5. */
    model_shape_t in = {1, 8, 2, 2};
    size_t n = model_shape_count(in);
    float *x = randn(n, 20.0f), *y = malloc(n * 4), *s = malloc(n * 4);
    for (int mode = 0; mode < 2; mode++) {
        model_lrn_param_t p = {5, 2.0f, 1e-4f, 0.75f, (model_lrn_alpha_t)mode};
        CHECK(model_lrn_forward(&p, in, x, y, s, NULL) == 0);
        double worst = 0;
        for (int c = 0; c < 8; c++)
            for (int j = 0; j < 4; j++) {
                double sum = 0;
                for (int cc = c - 2; cc <= c + 2; cc++)
                    if (cc >= 0 && cc < 8) sum += (double)x[cc * 4 + j] * x[cc * 4 + j];
                double alpha = mode ? 1e-4 / 5 : 1e-4;
                double want = x[c * 4 + j] / pow(2.0 + alpha * sum, 0.75);
                worst = fmax(worst, fabs(want - y[c * 4 + j]) / fmax(1e-6, fabs(want)));
            }
        CHECK_NEAR(worst, 0, 1e-6);
    }
    free(x), free(y), free(s);
}

/* Forward and backward against the definition in double, on the edges of
 * the channel window: fewer channels than the window (1, 2, 3 of 5), a long
 * window (size 100 on 120 channels), even sizes, a general beta, planes of
 * odd sizes. */
static double lrn_error_against_definition(model_lrn_param_t p, model_shape_t in) {
    const size_t n = model_shape_count(in), hw = (size_t)in.h * in.w;
    float *x = randn(n, 3.0f), *y = malloc(n * 4), *s = malloc(n * 4), *dy = randn(n, 1.0f);
    float *dx = malloc(n * 4);
    double *ws = malloc(n * sizeof *ws), worst = 0;
    CHECK(model_lrn_forward(&p, in, x, y, s, NULL) == 0);
    CHECK(model_lrn_backward(&p, in, x, y, s, dy, dx, NULL) == 0);
    const int before = p.size / 2, after = (p.size - 1) / 2;
    const double a = p.alpha_mode == MODEL_LRN_ALPHA_OVER_N ? (double)p.alpha / p.size : p.alpha;
    for (int i = 0; i < in.n; i++)
        for (int c = 0; c < in.c; c++)
            for (size_t j = 0; j < hw; j++) {
                double sum = 0;
                for (int cc = c - before; cc <= c + after; cc++)
                    if (cc >= 0 && cc < in.c) {
                        double v = x[((size_t)i * in.c + cc) * hw + j];
                        sum += v * v;
                    }
                const size_t o = ((size_t)i * in.c + c) * hw + j;
                ws[o] = p.k + a * sum;
                double want = x[o] / pow(ws[o], p.beta);
                worst = fmax(worst, fabs(want - y[o]) / fmax(1e-3, fabs(want)));
                worst = fmax(worst, fabs(ws[o] - s[o]) / ws[o]);
            }
    for (int i = 0; i < in.n; i++)
        for (int c = 0; c < in.c; c++)
            for (size_t j = 0; j < hw; j++) {
                /* dx_c = dy_c s_c^-beta - 2 a beta x_c (sum over the c' whose window holds c) */
                const size_t o = ((size_t)i * in.c + c) * hw + j;
                double sum = 0;
                for (int cc = c - after; cc <= c + before; cc++)
                    if (cc >= 0 && cc < in.c) {
                        const size_t q = ((size_t)i * in.c + cc) * hw + j;
                        sum += (double)dy[q] * x[q] * pow(ws[q], -p.beta - 1);
                    }
                const double t1 = dy[o] * pow(ws[o], -p.beta), t2 = 2 * a * p.beta * x[o] * sum;
                /* relative to the terms: dx is their difference */
                worst = fmax(worst, fabs(t1 - t2 - dx[o]) / (fabs(t1) + fabs(t2) + 1e-6));
            }
    free(x), free(y), free(s), free(dy), free(dx), free(ws);
    return worst;
}

static void test_lrn_window_edges_match_the_definition(void) {
    static const struct {
        model_lrn_param_t p;
        model_shape_t in;
    } cases[] = {
        {{5, 2.0f, 0.1f, 0.75f, MODEL_LRN_ALPHA_PAPER}, {2, 1, 3, 3}},
        {{5, 2.0f, 0.1f, 0.75f, MODEL_LRN_ALPHA_PAPER}, {2, 2, 17, 17}},
        {{5, 1.0f, 0.5f, 0.75f, MODEL_LRN_ALPHA_OVER_N}, {1, 3, 17, 17}},
        {{5, 2.0f, 1e-4f, 0.75f, MODEL_LRN_ALPHA_PAPER}, {3, 9, 16, 16}},
        {{4, 1.5f, 0.3f, 0.6f, MODEL_LRN_ALPHA_PAPER}, {2, 6, 15, 19}},
        {{100, 1.0f, 0.05f, 0.75f, MODEL_LRN_ALPHA_OVER_N}, {1, 120, 5, 7}},
        {{7, 2.0f, 0.2f, 0.75f, MODEL_LRN_ALPHA_PAPER}, {1, 4, 30, 30}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double e = lrn_error_against_definition(cases[c].p, cases[c].in);
        CHECK_MSG(e < 1e-5, "case %zu: error %g", c, e);
    }
}

/* --------------------------------------------------------------- maxpool */

typedef struct {
    model_pool_param_t p;
    model_shape_t in, out;
    float *x, *y, *r;
    int32_t *arg;
} pool_ctx;

static double pool_loss(void *c) {
    pool_ctx *k = c;
    if (model_pool_forward(&k->p, k->in, k->x, k->y, k->arg, NULL)) return NAN;
    return dot(k->y, k->r, model_shape_count(k->out));
}

static void pool_gradcheck(model_pool_param_t p, model_shape_t in, int want_h) {
    pool_ctx k = {p, in, {0, 0, 0, 0}, NULL, NULL, NULL, NULL};
    util_err_t err;
    CHECK_MSG(model_pool_shape(&p, in, &k.out, &err) == 0, "%s", err.msg);
    CHECK_MSG(k.out.h == want_h, "pooled %d, want %d", k.out.h, want_h);
    size_t nx = model_shape_count(in), ny = model_shape_count(k.out);
    k.x = spaced(nx, 1);
    k.y = malloc(ny * 4);
    k.r = randn(ny, 1.0f);
    k.arg = malloc(ny * 4);
    float *dx = malloc(nx * 4);
    pool_loss(&k);
    CHECK(model_pool_backward(&p, in, k.r, k.arg, dx, NULL) == 0);
    CHECK(gradcheck("pool dx", pool_loss, &k, k.x, dx, nx, 1000, 1e-2f) == 0);
    free(k.x), free(k.y), free(k.r), free(k.arg), free(dx);
}

static void test_pool_gradients_overlapping_floor(void) {
    pool_gradcheck((model_pool_param_t){3, 2, 0, 0}, (model_shape_t){2, 3, 8, 8}, 3);
}

static void test_pool_gradients_overlapping_ceil(void) {
    pool_gradcheck((model_pool_param_t){3, 2, 0, 1}, (model_shape_t){2, 3, 8, 8}, 4);
}

static void test_pool_gradients_ceil_with_pad(void) {
    /* 9 + 2 - 3 = 8 -> ceil(8/2)+1 = 5 windows; the 5th starts at 8*1-1... 4*2 = 8 < 9+1. */
    pool_gradcheck((model_pool_param_t){3, 2, 1, 1}, (model_shape_t){1, 2, 9, 9}, 5);
}

static void test_pool_ceil_drops_window_starting_in_padding(void) {
    /* H=4, k=2, s=2, pad=1: ceil((4+2-2)/2)+1 = 3, and the third window starts
     * at 2*2 = 4 >= H + pad - ... = 5? no: 4 < 5 so it stays (PyTorch gives 3). */
    model_pool_param_t p = {2, 2, 1, 1};
    model_shape_t o;
    CHECK(model_pool_shape(&p, (model_shape_t){1, 1, 4, 4}, &o, NULL) == 0);
    CHECK(o.h == 3);
    /* H=5, k=3, s=3, pad=1: ceil((5+2-3)/3)+1 = 3, third starts at 6 >= 5+1: dropped. */
    model_pool_param_t q = {3, 3, 1, 1};
    CHECK(model_pool_shape(&q, (model_shape_t){1, 1, 5, 5}, &o, NULL) == 0);
    CHECK(o.h == 2);
}

/* The 3x3 stride-2 fast path (separable, branch-free) picks what the plain
 * definition picks: the first maximum in row-major order, ties included
 * (values from {0, 1, 2}: many ties), for every size and both roundings. */
static void test_pool_3x3_stride2_matches_the_definition(void) {
    util_rng_seed(&rng, 11);
    int bad = 0;
    for (int ceil_mode = 0; ceil_mode <= 1; ceil_mode++)
        for (int H = 3; H <= 12; H++)
            for (int W = 3; W <= 12; W++) {
                model_pool_param_t p = {3, 2, 0, ceil_mode};
                model_shape_t in = {2, 3, H, W}, o;
                CHECK(model_pool_shape(&p, in, &o, NULL) == 0);
                size_t nx = model_shape_count(in), ny = (size_t)2 * 3 * o.h * o.w;
                float *x = malloc(nx * sizeof *x), *y = malloc(ny * sizeof *y);
                int32_t *arg = malloc(ny * sizeof *arg);
                for (size_t j = 0; j < nx; j++)
                    x[j] = (float)util_rng_below(&rng, 3);
                CHECK(model_pool_forward(&p, in, x, y, arg, NULL) == 0);
                for (int pl = 0; pl < 6; pl++)
                    for (int oy = 0; oy < o.h; oy++)
                        for (int ox = 0; ox < o.w; ox++) {
                            float best = -1;
                            int32_t at = -1;
                            for (int yy = 2 * oy; yy < 2 * oy + 3 && yy < H; yy++)
                                for (int xx = 2 * ox; xx < 2 * ox + 3 && xx < W; xx++)
                                    if (x[(size_t)pl * H * W + yy * W + xx] > best) {
                                        best = x[(size_t)pl * H * W + yy * W + xx];
                                        at = yy * W + xx;
                                    }
                            size_t j = ((size_t)pl * o.h + oy) * o.w + ox;
                            bad += y[j] != best || arg[j] != at;
                        }
                free(x), free(y), free(arg);
            }
    CHECK_MSG(bad == 0, "%d windows differ", bad);
}

/* The same on rows wide enough for the vector loop of the fast path (its
 * body and both tails: 8 and 4 lanes), with planes of one value (all ties),
 * and -inf and huge values. */
static void test_pool_3x3_stride2_wide_rows_match_the_definition(void) {
    util_rng_seed(&rng, 12);
    static const int sizes[] = {13, 16, 17, 27, 28, 33, 40, 55};
    int bad = 0;
    for (int ceil_mode = 0; ceil_mode <= 1; ceil_mode++)
        for (size_t a = 0; a < sizeof sizes / sizeof sizes[0]; a++)
            for (size_t b = 0; b < sizeof sizes / sizeof sizes[0]; b += 3) {
                const int H = sizes[b], W = sizes[a];
                model_pool_param_t p = {3, 2, 0, ceil_mode};
                model_shape_t in = {1, 3, H, W}, o;
                CHECK(model_pool_shape(&p, in, &o, NULL) == 0);
                size_t nx = model_shape_count(in), ny = (size_t)3 * o.h * o.w;
                float *x = malloc(nx * sizeof *x), *y = malloc(ny * sizeof *y);
                int32_t *arg = malloc(ny * sizeof *arg);
                for (size_t j = 0; j < nx; j++) {
                    const int pl = (int)(j / ((size_t)H * W));
                    x[j] = pl == 0   ? (float)util_rng_below(&rng, 4)
                           : pl == 1 ? 7.0f
                                     : (util_rng_below(&rng, 2) ? -INFINITY : 3e38f);
                }
                CHECK(model_pool_forward(&p, in, x, y, arg, NULL) == 0);
                for (int pl = 0; pl < 3; pl++)
                    for (int oy = 0; oy < o.h; oy++)
                        for (int ox = 0; ox < o.w; ox++) {
                            float best = -INFINITY;
                            int32_t at = -1;
                            for (int yy = 2 * oy; yy < 2 * oy + 3 && yy < H; yy++)
                                for (int xx = 2 * ox; xx < 2 * ox + 3 && xx < W; xx++) {
                                    const float v = x[(size_t)pl * H * W + yy * W + xx];
                                    if (at < 0 || v > best) {
                                        best = v;
                                        at = yy * W + xx;
                                    }
                                }
                            size_t j = ((size_t)pl * o.h + oy) * o.w + ox;
                            bad += y[j] != best || arg[j] != at;
                        }
                free(x), free(y), free(arg);
            }
    CHECK_MSG(bad == 0, "%d windows differ", bad);
}

/* -------------------------------------------------------------------- fc */

typedef struct {
    model_fc_param_t p;
    int n;
    float *x, *w, *b, *y, *r;
} fc_ctx;

static double fc_loss(void *c) {
    fc_ctx *k = c;
    if (model_fc_forward(&k->p, k->n, k->x, k->w, k->b, k->y, NULL)) return NAN;
    return dot(k->y, k->r, (size_t)k->n * k->p.out);
}

static void test_fc_gradients(void) {
    fc_ctx k = {{10, 4},        3,           randn(30, 1), randn(40, 0.5f), randn(4, 0.5f),
                malloc(12 * 4), randn(12, 1)};
    float dx[30], dw[40], db[4];
    fc_loss(&k);
    CHECK(model_fc_backward(&k.p, k.n, k.x, k.w, k.r, dx, dw, db, NULL) == 0);
    CHECK(gradcheck("fc dx", fc_loss, &k, k.x, dx, 30, 100, 1e-2f) == 0);
    CHECK(gradcheck("fc dw", fc_loss, &k, k.w, dw, 40, 100, 1e-2f) == 0);
    CHECK(gradcheck("fc db", fc_loss, &k, k.b, db, 4, 100, 1e-2f) == 0);
    free(k.x), free(k.w), free(k.b), free(k.y), free(k.r);
}

/* One image is a matrix-vector product, its rows split over the threads:
 * input widths with and without a 64-float main loop, 16-float steps and a
 * masked tail; row counts that do not divide by the threads. */
static void test_fc_forward_batch1_matches_definition(void) {
    static const int ins[] = {1, 15, 16, 37, 64, 130, 9216};
    for (size_t c = 0; c < sizeof ins / sizeof ins[0]; c++)
        for (int threads = 1; threads <= 3; threads++) {
            model_fc_param_t p = {ins[c], 23};
            float *x = randn((size_t)p.in, 1), *w = randn((size_t)p.in * p.out, 1),
                  *b = randn((size_t)p.out, 1), y[23];
            const int saved = omp_get_max_threads();
            omp_set_num_threads(threads);
            CHECK(model_fc_forward(&p, 1, x, w, b, y, NULL) == 0);
            omp_set_num_threads(saved);
            double worst = 0;
            for (int o = 0; o < p.out; o++) {
                double s = b[o];
                for (int k = 0; k < p.in; k++)
                    s += (double)w[(size_t)o * p.in + k] * x[k];
                worst = fmax(worst, fabs(y[o] - s) / (1.0 + fabs(s)));
            }
            CHECK_MSG(worst < 1e-4, "in %d on %d threads: error %g", p.in, threads, worst);
            free(x), free(w), free(b);
        }
}

/* ------------------------------------------------- relu, dropout, softmax */

typedef struct {
    size_t n;
    float *x, *y, *r;
} relu_ctx;

static double relu_loss(void *c) {
    relu_ctx *k = c;
    model_relu_forward(k->n, k->x, k->y);
    return dot(k->y, k->r, k->n);
}

static void test_relu_gradients(void) {
    relu_ctx k = {200, spaced(200, 1), malloc(800), randn(200, 1)};
    float dx[200];
    relu_loss(&k);
    model_relu_backward(k.n, k.y, k.r, dx);
    CHECK(gradcheck("relu dx", relu_loss, &k, k.x, dx, 200, 200, 1e-2f) == 0);
    free(k.x), free(k.y), free(k.r);
}

typedef struct {
    size_t n;
    float p, *x, *y, *mask, *r;
} drop_ctx;

static double drop_loss(void *c) {
    drop_ctx *k = c;
    util_rng_t fixed;
    util_rng_seed(&fixed, 77); /* the same mask on every evaluation */
    if (model_dropout_forward(k->p, k->n, k->x, k->y, k->mask, &fixed, NULL)) return NAN;
    return dot(k->y, k->r, k->n);
}

static void test_dropout_gradients_and_paper_rate(void) {
    size_t n = 20000;
    drop_ctx k = {n, 0.5f, randn(n, 1), malloc(n * 4), malloc(n * 4), randn(n, 1)};
    float *dx = malloc(n * 4);
    drop_loss(&k);
    model_dropout_backward(n, k.mask, k.r, dx);
    CHECK(gradcheck("dropout dx", drop_loss, &k, k.x, dx, n, 300, 1e-2f) == 0);
    size_t zeros = 0;
    for (size_t j = 0; j < n; j++) {
        zeros += k.mask[j] == 0.0f;
        CHECK(k.mask[j] == 0.0f || k.mask[j] == 2.0f); /* kept units scaled by 1/(1-p) */
    }
    CHECK_MSG(fabs((double)zeros / n - 0.5) < 0.02, "dropped fraction %g", (double)zeros / n);
    CHECK(model_dropout_forward(1.0f, n, k.x, k.y, k.mask, &rng, NULL) == -1);
    free(k.x), free(k.y), free(k.mask), free(k.r), free(dx);
}

typedef struct {
    float *logits, *probs;
    int labels[3];
} xent_ctx;

static double xent_loss(void *c) {
    xent_ctx *k = c;
    float loss;
    if (model_softmax_xent(3, 5, k->logits, k->labels, k->probs, NULL, &loss, NULL)) return NAN;
    return loss;
}

/* p = 0 (the demo's recipe) keeps every unit and draws nothing, so the
 * dropout layers after it get the masks they would get without it. */
static void test_dropout_zero_keeps_every_unit_without_draws(void) {
    const size_t n = 1000;
    float *x = randn(n, 1.0f), *y = malloc(n * 4), *mask = malloc(n * 4);
    util_rng_t r, untouched;
    util_rng_seed(&r, 9);
    untouched = r;
    CHECK(model_dropout_forward(0.0f, n, x, y, mask, &r, NULL) == 0);
    int bad = 0;
    for (size_t j = 0; j < n; j++)
        bad += y[j] != x[j] || mask[j] != 1.0f;
    CHECK_MSG(bad == 0, "%d units changed", bad);
    CHECK(util_rng_u64(&r) == util_rng_u64(&untouched));
    free(x), free(y), free(mask);
}

static void test_softmax_xent_gradients_and_value(void) {
    xent_ctx k = {randn(15, 2), malloc(15 * 4), {0, 4, 2}};
    float d[15], loss;
    CHECK(model_softmax_xent(3, 5, k.logits, k.labels, k.probs, d, &loss, NULL) == 0);
    double want = 0;
    for (int i = 0; i < 3; i++) {
        double s = 0;
        for (int c = 0; c < 5; c++)
            s += exp(k.logits[i * 5 + c]);
        want += -log(exp(k.logits[i * 5 + k.labels[i]]) / s) / 3;
    }
    CHECK_NEAR(loss, want, 1e-5);
    CHECK(gradcheck("xent dlogits", xent_loss, &k, k.logits, d, 15, 15, 1e-2f) == 0);
    int bad[3] = {0, 5, 1};
    CHECK(model_softmax_xent(3, 5, k.logits, bad, k.probs, d, &loss, NULL) == -1);
    free(k.logits), free(k.probs);
}

/* ------------------------------------------------------------------ spec */

static void test_alexnet_spec_shapes_and_parameter_count(void) {
    model_spec_t s;
    model_spec_alexnet(&s);
    model_shape_t sh[MODEL_MAX_LAYERS];
    util_err_t err;
    CHECK_MSG(model_spec_shapes(&s, 1, sh, &err) == 0, "%s", err.msg);
    const char *names[] = {"conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5"};
    const int sizes[] = {55, 27, 27, 13, 13, 13, 13, 6};
    for (int i = 0; i < 8; i++) {
        int l = model_spec_find(&s, names[i]);
        CHECK(l >= 0);
        if (l >= 0) CHECK_MSG(sh[l].h == sizes[i], "%s: %d", names[i], sh[l].h);
    }
    int fc6 = model_spec_find(&s, "fc6");
    CHECK(sh[fc6 - 1].c * sh[fc6 - 1].h * sh[fc6 - 1].w == 9216);
    model_net_t *net = model_net_create(&s, 1, &err);
    CHECK_MSG(net != NULL, "%s", err.msg);
    if (net) CHECK(model_net_param_total(net) == 60965224);
    model_net_free(net);
}

static void test_alexnet_224_input_needs_ceil_pooling(void) {
    model_spec_t s;
    model_spec_alexnet(&s);
    s.in_h = s.in_w = 224;
    model_shape_t sh[MODEL_MAX_LAYERS];
    CHECK(model_spec_shapes(&s, 1, sh, NULL) == 0);
    CHECK(sh[model_spec_find(&s, "conv1")].h == 54);
    CHECK(sh[model_spec_find(&s, "pool5")].h == 5); /* floor pooling loses a row */
    for (int i = 0; i < s.n_layers; i++)
        if (s.layer[i].kind == MODEL_MAXPOOL) s.layer[i].ceil_mode = 1;
    CHECK(model_spec_shapes(&s, 1, sh, NULL) == 0);
    CHECK(sh[model_spec_find(&s, "pool1")].h == 27);
    CHECK(sh[model_spec_find(&s, "pool2")].h == 13);
    CHECK(sh[model_spec_find(&s, "pool5")].h == 6);
}

static void test_small_variant_keeps_4096_fc7(void) {
    model_spec_t s;
    util_err_t err;
    CHECK_MSG(model_spec_alexnet_small(&s, 1, 28, 10, &err) == 0, "%s", err.msg);
    model_shape_t sh[MODEL_MAX_LAYERS];
    CHECK(model_spec_shapes(&s, 4, sh, NULL) == 0);
    CHECK(sh[model_spec_find(&s, "fc7")].c == 4096);
    CHECK(sh[s.n_layers - 1].c == 10);
    CHECK(model_spec_alexnet_small(&s, 1, 8, 10, &err) == -1);
}

static void test_paper_initialisation(void) {
    model_spec_t s;
    model_spec_alexnet_small(&s, 1, 28, 10, NULL);
    model_net_t *net = model_net_create(&s, 2, NULL);
    model_net_init(net, 5);
    const char *ones[] = {"conv2.bias", "conv4.bias", "conv5.bias", "fc6.bias", "fc7.bias"};
    const char *zeros[] = {"conv1.bias", "conv3.bias", "fc8.bias"};
    for (int i = 0; i < 5; i++)
        CHECK(model_net_find_param(net, ones[i])->data[0] == 1.0f);
    for (int i = 0; i < 3; i++)
        CHECK(model_net_find_param(net, zeros[i])->data[3] == 0.0f);
    model_param_t *w = model_net_find_param(net, "fc7.weight");
    double s2 = 0;
    for (size_t j = 0; j < w->count; j++)
        s2 += (double)w->data[j] * w->data[j];
    CHECK_NEAR(sqrt(s2 / w->count), 0.01, 2e-4);
    model_net_free(net);
}

int main(int argc, char **argv) {
    util_rng_seed(&rng, 12345);
    static const test_case_t tests[] = {
        T(test_conv_gradients_groups_stride_padding),
        T(test_conv_gradients_stride4_like_conv1),
        T(test_conv_gradients_5x5_pad2_groups2_like_conv2),
        T(test_conv_gradients_1x1_direct),
        T(test_conv_forward_matches_direct_sum),
        T(test_conv_forward_batch1_on_shared_threads),
        T(test_conv_winograd_matches_direct_sum),
        T(test_conv_winograd_input_gradient),
        T(test_conv_algorithm_choice_refuses_unknown_names),
        T(test_lrn_gradients_paper_alpha),
        T(test_lrn_gradients_alpha_over_n),
        T(test_lrn_gradients_even_size_general_beta),
        T(test_lrn_matches_paper_formula),
        T(test_lrn_window_edges_match_the_definition),
        T(test_pool_gradients_overlapping_floor),
        T(test_pool_gradients_overlapping_ceil),
        T(test_pool_gradients_ceil_with_pad),
        T(test_pool_ceil_drops_window_starting_in_padding),
        T(test_pool_3x3_stride2_matches_the_definition),
        T(test_pool_3x3_stride2_wide_rows_match_the_definition),
        T(test_fc_gradients),
        T(test_fc_forward_batch1_matches_definition),
        T(test_relu_gradients),
        T(test_dropout_gradients_and_paper_rate),
        T(test_dropout_zero_keeps_every_unit_without_draws),
        T(test_softmax_xent_gradients_and_value),
        T(test_alexnet_spec_shapes_and_parameter_count),
        T(test_alexnet_224_input_needs_ceil_pooling),
        T(test_small_variant_keeps_4096_fc7),
        T(test_paper_initialisation),
    };
    util_err_t err = {{0}};
    const char *first = model_cpu_kernels(&err);
    if (!first) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    printf("kernel path %s (the widest this CPU has, or IMGRET_SGEMM's)\n", first);
    int rc = test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
    /* The layers whose arithmetic depends on the kernel path, again on every
     * other path this CPU has: the own AVX-512 and AVX2 sgemm and sgemv, and
     * OpenBLAS alone. */
    static const test_case_t kernel_tests[] = {
        T(test_conv_gradients_groups_stride_padding),
        T(test_conv_gradients_stride4_like_conv1),
        T(test_conv_gradients_5x5_pad2_groups2_like_conv2),
        T(test_conv_gradients_1x1_direct),
        T(test_conv_forward_matches_direct_sum),
        T(test_conv_forward_batch1_on_shared_threads),
        T(test_conv_winograd_matches_direct_sum),
        T(test_conv_winograd_input_gradient),
        T(test_fc_gradients),
        T(test_fc_forward_batch1_matches_definition),
    };
    static const char *const paths[] = {"avx512", "avx2", "blas"};
    for (int k = 0; k < 3; k++) {
        if (!strcmp(paths[k], first)) continue;
        if (!model_cpu_has_kernels(paths[k])) {
            printf("kernel path %s: not on this CPU, not tested here\n", paths[k]);
            continue;
        }
        CHECK(model_cpu_set_kernels(paths[k], NULL) == 0);
        printf("kernel path %s\n", paths[k]);
        rc |= test_run_all(kernel_tests, (int)(sizeof kernel_tests / sizeof kernel_tests[0]), argc,
                           argv);
    }
    return rc;
}
