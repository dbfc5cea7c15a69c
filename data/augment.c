/* The paper's augmentation and normalisation (crops, mirrors, PCA lighting,
 * mean subtraction), evaluation crops, and training-set statistics. */
#include "data/internal.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- eigen */

void data_eigen_sym(int c, const double *a_in, double *vals, double *vecs) {
    double a[9], v[9];
    memcpy(a, a_in, sizeof(double) * (size_t)(c * c));
    for (int i = 0; i < c * c; i++)
        v[i] = (i % (c + 1)) == 0 ? 1.0 : 0.0;
    /* Cyclic Jacobi rotations: converges in a handful of sweeps for 3x3. */
    for (int sweep = 0; sweep < 64; sweep++) {
        double off = 0;
        for (int p = 0; p < c; p++)
            for (int q = p + 1; q < c; q++)
                off += a[p * c + q] * a[p * c + q];
        if (off < 1e-30) break;
        for (int p = 0; p < c; p++)
            for (int q = p + 1; q < c; q++) {
                double apq = a[p * c + q];
                if (fabs(apq) < 1e-300) continue;
                double theta = (a[q * c + q] - a[p * c + p]) / (2 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                double cs = 1 / sqrt(t * t + 1), sn = t * cs;
                for (int k = 0; k < c; k++) { /* A <- A J */
                    double akp = a[k * c + p], akq = a[k * c + q];
                    a[k * c + p] = cs * akp - sn * akq;
                    a[k * c + q] = sn * akp + cs * akq;
                }
                for (int k = 0; k < c; k++) { /* A <- J^T A */
                    double apk = a[p * c + k], aqk = a[q * c + k];
                    a[p * c + k] = cs * apk - sn * aqk;
                    a[q * c + k] = sn * apk + cs * aqk;
                }
                for (int k = 0; k < c; k++) { /* V <- V J */
                    double vkp = v[k * c + p], vkq = v[k * c + q];
                    v[k * c + p] = cs * vkp - sn * vkq;
                    v[k * c + q] = sn * vkp + cs * vkq;
                }
            }
    }
    int order[3] = {0, 1, 2};
    for (int i = 0; i < c; i++)
        for (int j = i + 1; j < c; j++)
            if (a[order[j] * c + order[j]] > a[order[i] * c + order[i]]) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    for (int i = 0; i < c; i++) {
        int src = order[i];
        vals[i] = a[src * c + src];
        int big = 0;
        for (int k = 1; k < c; k++)
            if (fabs(v[k * c + src]) > fabs(v[big * c + src])) big = k;
        double sign = v[big * c + src] < 0 ? -1.0 : 1.0;
        for (int k = 0; k < c; k++)
            vecs[k * c + i] = sign * v[k * c + src];
    }
}

/* ------------------------------------------------------------- stats */

data_stats_t *data_stats_create(int c, int h, int w, util_err_t *err) {
    if ((c != 1 && c != 3) || image_check_size(w, h, 0, "stats", err)) {
        if (c != 1 && c != 3) util_fail(err, "stats: %d channels (expected 1 or 3)", c);
        return NULL;
    }
    data_stats_t *st = calloc(1, sizeof *st);
    if (st) st->mean = calloc((size_t)c * h * w, sizeof(float));
    if (!st || !st->mean) {
        free(st);
        util_fail(err, "stats: out of memory");
        return NULL;
    }
    st->c = c;
    st->h = h;
    st->w = w;
    return st;
}

void data_stats_free(data_stats_t *st) {
    if (!st) return;
    free(st->mean);
    free(st);
}

typedef struct stats_job {
    const data_dataset_t *ds;
    const data_prep_t *prep;
    size_t n_items, count, max_items; /* item k of the job is index k * count / n_items */
    int c, h, w;
    int thread, threads;
    /* Results: exact integer sums. */
    uint64_t *pixel_sum; /* c*h*w, CHW */
    uint64_t chan_sum[3], prod_sum[9];
    size_t loaded, failed;
    size_t first_fail; /* item index of the first failure, or SIZE_MAX */
    util_err_t first_err;
    int oom;
} stats_job_t;

static size_t stats_item(const stats_job_t *j, size_t k) {
    if (j->n_items == j->count) return k;
    /* k * count / n_items without overflowing 64 bits. */
    return k * (j->count / j->n_items) + k * (j->count % j->n_items) / j->n_items;
}

static void *stats_worker(void *arg) {
    stats_job_t *j = arg;
    const int c = j->c;
    const size_t hw = (size_t)j->h * j->w;
    for (size_t k = (size_t)j->thread; k < j->n_items; k += (size_t)j->threads) {
        size_t idx = stats_item(j, k);
        util_err_t e;
        data_image_t *im = data_prep_load(j->ds, idx, j->prep, NULL, &e);
        if (im && (im->w != j->w || im->h != j->h || im->c != c)) {
            char name[512];
            data_dataset_item_name(j->ds, idx, name, sizeof name);
            util_fail(&e, "%s: stored image is %dx%dx%d, the others %dx%dx%d", name, im->w, im->h,
                      im->c, j->w, j->h, c);
            data_image_free(im);
            im = NULL;
        }
        if (!im) {
            if (idx < j->first_fail) {
                j->first_fail = idx;
                j->first_err = e;
            }
            j->failed++;
            continue;
        }
        const uint8_t *p = im->pixels;
        if (c == 1) {
            uint64_t s = 0, ss = 0;
            for (size_t i = 0; i < hw; i++) {
                uint32_t v = p[i];
                j->pixel_sum[i] += v;
                s += v;
                ss += v * v;
            }
            j->chan_sum[0] += s;
            j->prod_sum[0] += ss;
        } else {
            uint64_t s[3] = {0}, pp[6] = {0};
            uint64_t *m0 = j->pixel_sum, *m1 = m0 + hw, *m2 = m1 + hw;
            for (size_t i = 0; i < hw; i++) {
                uint32_t r = p[3 * i], g = p[3 * i + 1], b = p[3 * i + 2];
                m0[i] += r;
                m1[i] += g;
                m2[i] += b;
                s[0] += r;
                s[1] += g;
                s[2] += b;
                pp[0] += r * r;
                pp[1] += r * g;
                pp[2] += r * b;
                pp[3] += g * g;
                pp[4] += g * b;
                pp[5] += b * b;
            }
            for (int ch = 0; ch < 3; ch++)
                j->chan_sum[ch] += s[ch];
            static const int at[6][2] = {{0, 0}, {0, 1}, {0, 2}, {1, 1}, {1, 2}, {2, 2}};
            for (int q = 0; q < 6; q++) {
                j->prod_sum[at[q][0] * 3 + at[q][1]] += pp[q];
                if (at[q][0] != at[q][1]) j->prod_sum[at[q][1] * 3 + at[q][0]] += pp[q];
            }
        }
        j->loaded++;
        data_image_free(im);
    }
    return NULL;
}

data_stats_t *data_stats_compute(const data_dataset_t *ds, const data_prep_t *prep_in, int threads,
                                 size_t max_items, util_err_t *first_error, util_err_t *err) {
    static const data_prep_t no_prep = {0, 0, 0};
    const data_prep_t *prep = prep_in ? prep_in : &no_prep;
    data_prep_t eff = *prep;
    size_t count = data_dataset_count(ds);
    size_t n_items = max_items && max_items < count ? max_items : count;
    if (threads < 1) threads = 1;
    if (threads > 64) threads = 64;
    if (first_error) first_error->msg[0] = '\0';
    /* The geometry comes from the first item that loads. */
    data_image_t *first = NULL;
    util_err_t e0;
    size_t tried = 0, first_fail = SIZE_MAX;
    stats_job_t probe = {.n_items = n_items, .count = count};
    for (size_t k = 0; k < n_items && !first; k++, tried++) {
        size_t idx = stats_item(&probe, k);
        first = data_prep_load(ds, idx, &eff, NULL, &e0);
        if (!first && first_fail == SIZE_MAX) {
            first_fail = idx;
            if (first_error) *first_error = e0;
        }
        if (tried >= 1000 && !first) break;
    }
    if (!first) {
        util_fail(err, "stats: no item could be loaded (first error: %s)",
                  first_fail != SIZE_MAX ? e0.msg : "empty dataset");
        return NULL;
    }
    const int c = first->c, h = first->h, w = first->w;
    data_image_free(first);
    eff.channels = c;
    data_stats_t *st = data_stats_create(c, h, w, err);
    if (!st) return NULL;
    stats_job_t *jobs = calloc((size_t)threads, sizeof *jobs);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    int started = 0, failed = 0;
    size_t hwc = (size_t)c * h * w;
    if (!jobs || !tid) failed = 1;
    for (int t = 0; !failed && t < threads; t++) {
        stats_job_t *j = &jobs[t];
        j->ds = ds;
        j->prep = &eff;
        j->n_items = n_items;
        j->count = count;
        j->c = c;
        j->h = h;
        j->w = w;
        j->thread = t;
        j->threads = threads;
        j->first_fail = SIZE_MAX;
        if (!(j->pixel_sum = calloc(hwc, sizeof(uint64_t)))) {
            failed = 1;
            break;
        }
        if (pthread_create(&tid[t], NULL, stats_worker, j) != 0) {
            failed = 1;
            break;
        }
        started++;
    }
    for (int t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    if (failed) {
        for (int t = 0; jobs && t < threads; t++)
            free(jobs[t].pixel_sum);
        free(jobs);
        free(tid);
        data_stats_free(st);
        util_fail(err, "stats: out of memory or cannot start threads");
        return NULL;
    }
    /* Merge: integer sums, so the order does not matter. */
    uint64_t chan[3] = {0}, prod[9] = {0};
    size_t loaded = 0, nfail = 0, ff = SIZE_MAX;
    for (int t = 0; t < threads; t++) {
        stats_job_t *j = &jobs[t];
        if (t > 0)
            for (size_t i = 0; i < hwc; i++)
                jobs[0].pixel_sum[i] += j->pixel_sum[i];
        for (int q = 0; q < 3; q++)
            chan[q] += j->chan_sum[q];
        for (int q = 0; q < 9; q++)
            prod[q] += j->prod_sum[q];
        loaded += j->loaded;
        nfail += j->failed;
        if (j->first_fail < ff) {
            ff = j->first_fail;
            if (first_error) *first_error = j->first_err;
        }
    }
    if (loaded == 0) {
        for (int t = 0; t < threads; t++)
            free(jobs[t].pixel_sum);
        free(jobs);
        free(tid);
        data_stats_free(st);
        util_fail(err, "stats: no item could be loaded (first error: %s)",
                  first_error ? first_error->msg : "unknown");
        return NULL;
    }
    for (size_t i = 0; i < hwc; i++)
        st->mean[i] = (float)((double)jobs[0].pixel_sum[i] / loaded);
    double npix = (double)loaded * h * w, mean[3], cov[9];
    for (int q = 0; q < c; q++) {
        mean[q] = (double)chan[q] / npix;
        st->channel_mean[q] = (float)mean[q];
    }
    for (int a = 0; a < c; a++)
        for (int b = 0; b < c; b++) {
            cov[a * c + b] = ((double)prod[a * 3 + b] / npix - mean[a] * mean[b]) / (255.0 * 255.0);
            st->cov[a * c + b] = (float)cov[a * c + b];
        }
    double vals[3], vecs[9];
    data_eigen_sym(c, cov, vals, vecs);
    for (int i = 0; i < c; i++)
        st->eigval[i] = (float)(vals[i] > 0 ? vals[i] : 0);
    for (int i = 0; i < c * c; i++)
        st->eigvec[i] = (float)vecs[i];
    st->count = loaded;
    st->failed = nfail;
    for (int t = 0; t < threads; t++)
        free(jobs[t].pixel_sum);
    free(jobs);
    free(tid);
    return st;
}

/* ---------------------------------------------------------- lighting */

void data_lighting_offset(const data_stats_t *st, const float *alpha, float *offset) {
    const int c = st->c;
    for (int k = 0; k < c; k++) {
        double s = 0;
        for (int i = 0; i < c; i++)
            s += (double)st->eigvec[k * c + i] * alpha[i] * st->eigval[i];
        offset[k] = (float)(255.0 * s);
    }
}

void data_lighting_draw(const data_stats_t *st, float std, util_rng_t *rng, float *offset) {
    float alpha[3];
    for (int i = 0; i < st->c; i++)
        alpha[i] = (float)(std * util_rng_normal(rng));
    data_lighting_offset(st, alpha, offset);
}

/* ------------------------------------------------------------- crops */

int data_crop_to_float(const data_image_t *im, int x, int y, int size, int mirror,
                       const data_norm_t *norm, const float *lighting, float *out,
                       util_err_t *err) {
    if (size <= 0 || x < 0 || y < 0 || x > im->w - size || y > im->h - size)
        return util_fail(err, "crop: %dx%d at (%d, %d) does not fit a %dx%d image", size, size, x,
                         y, im->w, im->h);
    const int c = im->c, w = im->w;
    data_mean_mode_t mode = norm ? norm->mean_mode : DATA_MEAN_NONE;
    const data_stats_t *st = norm ? norm->stats : NULL;
    float scale = norm && norm->scale != 0 ? norm->scale : 1.0f;
    if (mode != DATA_MEAN_NONE && !st)
        return util_fail(err, "crop: mean subtraction without stats");
    if (mode == DATA_MEAN_PIXEL && (st->c != c || st->h != im->h || st->w != im->w))
        return util_fail(err,
                         "crop: the mean image is %dx%dx%d but the stored image is "
                         "%dx%dx%d",
                         st->w, st->h, st->c, im->w, im->h, c);
    if (mode == DATA_MEAN_CHANNEL && st->c != c)
        return util_fail(err, "crop: the stats have %d channels, the image %d", st->c, c);
    if (mode != DATA_MEAN_NONE && mode != DATA_MEAN_PIXEL && mode != DATA_MEAN_CHANNEL)
        return util_fail(err, "crop: unknown mean mode %d", (int)mode);
    for (int ch = 0; ch < c; ch++) {
        float add = lighting ? lighting[ch] : 0.0f;
        if (mode == DATA_MEAN_CHANNEL) add -= st->channel_mean[ch];
        const float *mplane =
            mode == DATA_MEAN_PIXEL ? st->mean + (size_t)ch * im->h * im->w : NULL;
        float *o = out + (size_t)ch * size * size;
        for (int r = 0; r < size; r++) {
            const uint8_t *src = im->pixels + ((size_t)(y + r) * w + x) * c + ch;
            const float *mrow = mplane ? mplane + (size_t)(y + r) * w + x : NULL;
            float *orow = o + (size_t)r * size;
            if (!mirror) {
                if (mrow)
                    for (int j = 0; j < size; j++)
                        orow[j] = ((float)src[(size_t)j * c] + add - mrow[j]) * scale;
                else
                    for (int j = 0; j < size; j++)
                        orow[j] = ((float)src[(size_t)j * c] + add) * scale;
            } else {
                for (int j = 0; j < size; j++) {
                    int sj = size - 1 - j;
                    float m = mrow ? mrow[sj] : 0.0f;
                    orow[j] = ((float)src[(size_t)sj * c] + add - m) * scale;
                }
            }
        }
    }
    return 0;
}

int data_center_crop(const data_image_t *im, int size, const data_norm_t *norm, float *out,
                     util_err_t *err) {
    return data_crop_to_float(im, (im->w - size) / 2, (im->h - size) / 2, size, 0, norm, NULL, out,
                              err);
}

int data_ten_crop(const data_image_t *im, int size, const data_norm_t *norm, float *out,
                  util_err_t *err) {
    if (size <= 0 || size > im->w || size > im->h)
        return util_fail(err, "ten-crop: %dx%d crops do not fit a %dx%d image", size, size, im->w,
                         im->h);
    const int xs[5] = {0, im->w - size, 0, im->w - size, (im->w - size) / 2};
    const int ys[5] = {0, 0, im->h - size, im->h - size, (im->h - size) / 2};
    size_t per = (size_t)im->c * size * size;
    for (int k = 0; k < DATA_TEN_CROPS; k++)
        if (data_crop_to_float(im, xs[k % 5], ys[k % 5], size, k >= 5, norm, NULL, out + k * per,
                               err))
            return -1;
    return 0;
}
