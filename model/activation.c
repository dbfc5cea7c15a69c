/* ReLU, dropout, softmax and the cross-entropy loss. */
#include "model/backend.h"
#include "model/internal.h"

#include <math.h>
#include <string.h>

void model_relu_forward(size_t count, const float *x, float *y) {
#pragma omp parallel for simd schedule(static) if (count > 65536)
    for (size_t j = 0; j < count; j++)
        y[j] = x[j] > 0.0f ? x[j] : 0.0f;
}

void model_relu_backward(size_t count, const float *y, const float *dy, float *dx) {
#pragma omp parallel for simd schedule(static) if (count > 65536)
    for (size_t j = 0; j < count; j++)
        dx[j] = y[j] > 0.0f ? dy[j] : 0.0f;
}

int model_dropout_forward(float p, size_t count, const float *x, float *y, float *mask,
                          util_rng_t *rng, util_err_t *err) {
    if (!(p >= 0.0f && p < 1.0f))
        return util_fail(err, "dropout: probability %g is not in [0, 1)", (double)p);
    if (!x || !y || !mask || !rng) return util_fail(err, "dropout forward: NULL buffer");
    model_dropout_mask(p, count, mask, rng);
    for (size_t j = 0; j < count; j++)
        y[j] = x[j] * mask[j];
    return 0;
}

void model_dropout_mask(float p, size_t count, float *mask, util_rng_t *rng) {
    /* p = 0 (the demo's quick recipe) keeps every unit: no draws. A draw per
     * unit cost about as much as the ReLU of the layer before. */
    if (p == 0.0f) {
        for (size_t j = 0; j < count; j++)
            mask[j] = 1.0f;
        return;
    }
    const float keep = 1.0f / (1.0f - p);
    for (size_t j = 0; j < count; j++)
        mask[j] = util_rng_uniform(rng) >= p ? keep : 0.0f;
}

void model_dropout_backward(size_t count, const float *mask, const float *dy, float *dx) {
    for (size_t j = 0; j < count; j++)
        dx[j] = dy[j] * mask[j];
}

void model_softmax(int n, int classes, const float *logits, float *probs) {
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * classes;
        float *pr = probs + (size_t)i * classes;
        float mx = l[0];
        for (int c = 1; c < classes; c++)
            mx = l[c] > mx ? l[c] : mx;
        double sum = 0.0;
        for (int c = 0; c < classes; c++) {
            pr[c] = expf(l[c] - mx);
            sum += pr[c];
        }
        float inv = (float)(1.0 / sum);
        for (int c = 0; c < classes; c++)
            pr[c] *= inv;
    }
}

int model_softmax_xent(int n, int classes, const float *logits, const int *labels, float *probs,
                       float *dlogits, float *loss, util_err_t *err) {
    if (n < 1 || classes < 1) return util_fail(err, "softmax: impossible shape %dx%d", n, classes);
    if (!logits || !labels || !probs || !loss) return util_fail(err, "softmax: NULL buffer");
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= classes)
            return util_fail(err, "softmax: label %d of image %d is not in [0, %d)", labels[i], i,
                             classes);
    model_softmax(n, classes, logits, probs);
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * classes;
        float mx = l[0];
        double sum = 0.0;
        for (int c = 1; c < classes; c++)
            mx = l[c] > mx ? l[c] : mx;
        for (int c = 0; c < classes; c++)
            sum += exp((double)(l[c] - mx));
        /* -log p_label computed from the logits, so a tiny probability is not rounded to 0. */
        total += log(sum) - (double)(l[labels[i]] - mx);
    }
    *loss = (float)(total / n);
    if (dlogits) {
        const float inv = 1.0f / (float)n;
        for (int i = 0; i < n; i++) {
            for (int c = 0; c < classes; c++)
                dlogits[(size_t)i * classes + c] = probs[(size_t)i * classes + c] * inv;
            dlogits[(size_t)i * classes + labels[i]] -= inv;
        }
    }
    return 0;
}
