/* The deep binary autoencoder: a plain list of fully connected layers run
 * with model_fc_forward/backward, SGD with momentum. */
#include "autoencoder/autoencoder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AE_MAX_LAYERS (2 * (AE_MAX_HIDDEN + 1))
#define AE_MAX_BATCH 256

typedef enum { ACT_RELU, ACT_LOGISTIC, ACT_LINEAR } ae_act_t;

typedef struct ae_layer {
    model_fc_param_t p;
    ae_act_t act;
    float *w, *b, *dw, *db, *vw, *vb;
} ae_layer_t;

struct ae {
    int in_dim, bits, n_hidden, n_layers, code_layer;
    int hidden[AE_MAX_HIDDEN];
    int l2;         /* rows scaled to unit Euclidean norm before the standardisation */
    float balance;  /* weight of the code balance term in the training loss */
    double *zmean;  /* bits: the batch mean of each code unit's input (no noise) */
    double penalty; /* the balance term of the last ae_loss_grad */
    ae_layer_t layer[AE_MAX_LAYERS];
    float *mean, *inv_std; /* standardisation, in_dim each */
    /* Batch buffers: a[0] the standardised input, a[k + 1] layer k's output;
     * d[k] the gradient at a[k]. */
    float *a[AE_MAX_LAYERS + 1], *d[AE_MAX_LAYERS + 1];
    util_rng_t rng;
};

ae_t *ae_create(int in_dim, const int *hidden, int n_hidden, int bits, uint64_t seed,
                util_err_t *err) {
    if (in_dim < 1 || in_dim > (1 << 20) || n_hidden < 0 || n_hidden > AE_MAX_HIDDEN || bits < 1 ||
        bits > AE_MAX_BITS) {
        util_fail(err, "autoencoder: impossible shape (in %d, %d hidden layers, %d bits)", in_dim,
                  n_hidden, bits);
        return NULL;
    }
    for (int i = 0; i < n_hidden; i++)
        if (hidden[i] < 1 || hidden[i] > (1 << 16)) {
            util_fail(err, "autoencoder: hidden layer %d has %d units", i + 1, hidden[i]);
            return NULL;
        }
    ae_t *ae = calloc(1, sizeof *ae);
    if (!ae) {
        util_fail(err, "autoencoder: out of memory");
        return NULL;
    }
    ae->in_dim = in_dim;
    ae->bits = bits;
    ae->n_hidden = n_hidden;
    memcpy(ae->hidden, hidden, (size_t)n_hidden * sizeof *hidden);
    ae->n_layers = 2 * (n_hidden + 1);
    ae->code_layer = n_hidden;
    int widths[AE_MAX_LAYERS + 1];
    widths[0] = in_dim;
    for (int i = 0; i < n_hidden; i++)
        widths[i + 1] = hidden[i];
    widths[n_hidden + 1] = bits;
    for (int i = 0; i < n_hidden; i++)
        widths[n_hidden + 2 + i] = hidden[n_hidden - 1 - i];
    widths[ae->n_layers] = in_dim;
    util_rng_seed(&ae->rng, seed);
    int ok = 1;
    for (int k = 0; k < ae->n_layers && ok; k++) {
        ae_layer_t *l = &ae->layer[k];
        l->p = (model_fc_param_t){widths[k], widths[k + 1]};
        l->act = k == ae->code_layer ? ACT_LOGISTIC : k == ae->n_layers - 1 ? ACT_LINEAR : ACT_RELU;
        size_t nw = (size_t)l->p.in * l->p.out, nb = (size_t)l->p.out;
        l->w = malloc(nw * sizeof(float));
        l->dw = calloc(nw, sizeof(float));
        l->vw = calloc(nw, sizeof(float));
        l->b = calloc(nb, sizeof(float));
        l->db = calloc(nb, sizeof(float));
        l->vb = calloc(nb, sizeof(float));
        ok = l->w && l->dw && l->vw && l->b && l->db && l->vb;
        /* He initialisation for ReLU layers, Glorot-like 1/fan_in for the
         * logistic and linear ones. */
        double sd = sqrt((l->act == ACT_RELU ? 2.0 : 1.0) / l->p.in);
        for (size_t i = 0; ok && i < nw; i++)
            l->w[i] = (float)(sd * util_rng_normal(&ae->rng));
    }
    ae->zmean = calloc((size_t)bits, sizeof(double));
    ae->mean = calloc((size_t)in_dim, sizeof(float));
    ae->inv_std = malloc((size_t)in_dim * sizeof(float));
    ok = ok && ae->zmean && ae->mean && ae->inv_std;
    for (int i = 0; ok && i < in_dim; i++)
        ae->inv_std[i] = 1.0f;
    for (int k = 0; ok && k <= ae->n_layers; k++) {
        ae->a[k] = malloc((size_t)AE_MAX_BATCH * widths[k] * sizeof(float));
        ae->d[k] = malloc((size_t)AE_MAX_BATCH * widths[k] * sizeof(float));
        ok = ae->a[k] && ae->d[k];
    }
    if (!ok) {
        ae_free(ae);
        util_fail(err, "autoencoder: out of memory");
        return NULL;
    }
    return ae;
}

void ae_free(ae_t *ae) {
    if (!ae) return;
    for (int k = 0; k < AE_MAX_LAYERS; k++) {
        ae_layer_t *l = &ae->layer[k];
        free(l->w), free(l->b), free(l->dw), free(l->db), free(l->vw), free(l->vb);
    }
    for (int k = 0; k <= AE_MAX_LAYERS; k++)
        free(ae->a[k]), free(ae->d[k]);
    free(ae->zmean);
    free(ae->mean);
    free(ae->inv_std);
    free(ae);
}

int ae_in_dim(const ae_t *ae) {
    return ae->in_dim;
}
void ae_set_l2(ae_t *ae, int on) {
    ae->l2 = on != 0;
}
int ae_l2(const ae_t *ae) {
    return ae->l2;
}
void ae_set_balance(ae_t *ae, float weight) {
    ae->balance = weight > 0 ? weight : 0.0f;
}

/* The factor that scales row x to unit norm (1 when l2 is off or the row
 * is zero). */
static float row_scale(const ae_t *ae, const float *x) {
    if (!ae->l2) return 1.0f;
    double s = 0;
    for (int j = 0; j < ae->in_dim; j++)
        s += (double)x[j] * x[j];
    return s > 0 ? (float)(1.0 / sqrt(s)) : 1.0f;
}
int ae_bits(const ae_t *ae) {
    return ae->bits;
}
int ae_n_params(const ae_t *ae) {
    return 2 * ae->n_layers;
}

float *ae_param(ae_t *ae, int i, float **grad, size_t *count) {
    if (i < 0 || i >= 2 * ae->n_layers) return NULL;
    ae_layer_t *l = &ae->layer[i / 2];
    int is_w = i % 2 == 0;
    if (grad) *grad = is_w ? l->dw : l->db;
    if (count) *count = is_w ? (size_t)l->p.in * l->p.out : (size_t)l->p.out;
    return is_w ? l->w : l->b;
}

int ae_fit_standardisation(ae_t *ae, const float *x, size_t n, int per_dimension, util_err_t *err) {
    if (n < 1) return util_fail(err, "autoencoder: no rows to standardise");
    int D = ae->in_dim;
    double *s = calloc((size_t)D * 2, sizeof(double));
    if (!s) return util_fail(err, "autoencoder: out of memory");
    for (size_t i = 0; i < n; i++) {
        float r = row_scale(ae, x + i * D);
        for (int j = 0; j < D; j++) {
            double v = x[i * D + j] * r;
            s[j] += v;
            s[D + j] += v * v;
        }
    }
    double total_var = 0;
    for (int j = 0; j < D; j++) {
        double m = s[j] / (double)n, var = s[D + j] / (double)n - m * m;
        total_var += var > 0 ? var : 0;
        ae->mean[j] = (float)m;
        /* A dimension that never varies (a dead ReLU of FC7) carries no
         * information; scaling it by 1 keeps it at zero after centring. */
        ae->inv_std[j] = var > 1e-12 ? (float)(1.0 / sqrt(var)) : 1.0f;
    }
    if (!per_dimension && total_var > 1e-12)
        for (int j = 0; j < D; j++)
            ae->inv_std[j] = (float)(1.0 / sqrt(total_var / D));
    free(s);
    return 0;
}

/* Forward pass of n <= AE_MAX_BATCH rows; noise (n x bits) or NULL; stops
 * after layer `last` (inclusive). */
static int forward(ae_t *ae, const float *x, int n, const float *noise, int last, util_err_t *err) {
    int D = ae->in_dim;
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * D;
        float r = row_scale(ae, xi);
        for (int j = 0; j < D; j++)
            ae->a[0][(size_t)i * D + j] = (xi[j] * r - ae->mean[j]) * ae->inv_std[j];
    }
    for (int k = 0; k <= last; k++) {
        ae_layer_t *l = &ae->layer[k];
        float *y = ae->a[k + 1];
        if (model_fc_forward(&l->p, n, ae->a[k], l->w, l->b, y, err)) return -1;
        size_t cnt = (size_t)n * l->p.out;
        if (l->act == ACT_RELU) {
            model_relu_forward(cnt, y, y);
        } else if (l->act == ACT_LOGISTIC) {
            for (int j = 0; j < l->p.out; j++) {
                double m = 0;
                for (int i = 0; i < n; i++)
                    m += y[(size_t)i * l->p.out + j];
                ae->zmean[j] = m / n;
            }
            for (size_t i = 0; i < cnt; i++) {
                float z = y[i] + (noise ? noise[i] : 0.0f);
                y[i] = 1.0f / (1.0f + expf(-z));
            }
        }
    }
    return 0;
}

/* Loss of the last forward pass and backward through every layer: the
 * gradient of mean_i 0.5 ||y_i - x_i||^2 in each layer's dw, db. */
static int backward(ae_t *ae, int n, double *loss, util_err_t *err) {
    int L = ae->n_layers, D = ae->in_dim;
    const float *y = ae->a[L], *t = ae->a[0];
    float *dy = ae->d[L];
    double s = 0;
    for (size_t i = 0; i < (size_t)n * D; i++) {
        float e = y[i] - t[i];
        s += (double)e * e;
        dy[i] = e / (float)n;
    }
    /* The balance term: balance * sum_j (mean_i z_ij)^2 over the code
     * units' inputs z (before the noise). */
    double pen = 0;
    for (int j = 0; j < ae->bits; j++)
        pen += ae->zmean[j] * ae->zmean[j];
    ae->penalty = ae->balance * pen;
    *loss = 0.5 * s / n + ae->penalty;
    for (int k = L - 1; k >= 0; k--) {
        ae_layer_t *l = &ae->layer[k];
        float *g = ae->d[k + 1];
        const float *out = ae->a[k + 1];
        size_t cnt = (size_t)n * l->p.out;
        if (l->act == ACT_RELU)
            model_relu_backward(cnt, out, g, g);
        else if (l->act == ACT_LOGISTIC) {
            for (size_t i = 0; i < cnt; i++)
                g[i] *= out[i] * (1.0f - out[i]);
            if (ae->balance > 0)
                for (int i = 0; i < n; i++)
                    for (int j = 0; j < l->p.out; j++)
                        g[(size_t)i * l->p.out + j] +=
                            (float)(2.0 * ae->balance * ae->zmean[j] / n);
        }
        if (model_fc_backward(&l->p, n, ae->a[k], l->w, g, k ? ae->d[k] : NULL, l->dw, l->db, err))
            return -1;
    }
    return 0;
}

int ae_loss_grad(ae_t *ae, const float *x, size_t n, const float *noise, double *loss,
                 util_err_t *err) {
    if (n < 1 || n > AE_MAX_BATCH)
        return util_fail(err, "autoencoder: %zu rows (1 to %d per call)", n, AE_MAX_BATCH);
    if (forward(ae, x, (int)n, noise, ae->n_layers - 1, err)) return -1;
    return backward(ae, (int)n, loss, err);
}

ae_train_opts_t ae_train_defaults(void) {
    ae_train_opts_t o = {30, 100, 0.01f, 0.9f, 1e-5f, 4.0f, 10, 1, NULL, NULL, NULL};
    return o;
}

int ae_train(ae_t *ae, const float *x, size_t n, const ae_train_opts_t *o, util_err_t *err) {
    if (n < 1) return util_fail(err, "autoencoder: no training rows");
    if (o->batch < 1 || o->batch > AE_MAX_BATCH)
        return util_fail(err, "autoencoder: batch %d (1 to %d)", o->batch, AE_MAX_BATCH);
    int D = ae->in_dim, B = ae->bits;
    uint32_t *perm = malloc(n * sizeof *perm);
    float *xb = malloc((size_t)o->batch * D * sizeof(float));
    float *noise = malloc((size_t)o->batch * B * sizeof(float));
    if (!perm || !xb || !noise) {
        free(perm), free(xb), free(noise);
        return util_fail(err, "autoencoder: out of memory");
    }
    util_rng_t rng;
    util_rng_seed(&rng, o->seed);
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    int rc = 0;
    for (int ep = 0; ep < o->epochs && rc == 0; ep++) {
        double t0 = util_now();
        for (size_t i = n - 1; i > 0; i--) {
            size_t j = util_rng_below(&rng, (uint32_t)(i + 1));
            uint32_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        double sigma = o->noise_std;
        if (o->noise_ramp > 0 && ep < o->noise_ramp) sigma *= (double)ep / o->noise_ramp;
        double sse = 0;
        for (size_t s = 0; s < n && rc == 0; s += (size_t)o->batch) {
            int bn = (int)(n - s < (size_t)o->batch ? n - s : (size_t)o->batch);
            for (int i = 0; i < bn; i++)
                memcpy(xb + (size_t)i * D, x + (size_t)perm[s + i] * D, (size_t)D * sizeof(float));
            for (int i = 0; i < bn * B; i++)
                noise[i] = (float)(sigma * util_rng_normal(&rng));
            double loss;
            rc = ae_loss_grad(ae, xb, (size_t)bn, sigma > 0 ? noise : NULL, &loss, err);
            if (rc) break;
            if (!isfinite(loss)) {
                rc = util_fail(err, "autoencoder: the loss became %g in epoch %d (lower --lr)",
                               loss, ep + 1);
                break;
            }
            sse += 2.0 * (loss - ae->penalty) * bn;
            for (int k = 0; k < ae->n_layers; k++) {
                ae_layer_t *l = &ae->layer[k];
                size_t nw = (size_t)l->p.in * l->p.out;
                for (size_t i = 0; i < nw; i++) {
                    l->vw[i] =
                        o->momentum * l->vw[i] - o->lr * (l->dw[i] + o->weight_decay * l->w[i]);
                    l->w[i] += l->vw[i];
                }
                for (int i = 0; i < l->p.out; i++) {
                    l->vb[i] = o->momentum * l->vb[i] - o->lr * l->db[i];
                    l->b[i] += l->vb[i];
                }
            }
            if (o->stop && *o->stop) break;
        }
        if (rc == 0 && o->on_epoch)
            o->on_epoch(o->ctx, ep + 1, sse / ((double)n * D), util_now() - t0);
        if (o->stop && *o->stop) break;
    }
    free(perm), free(xb), free(noise);
    return rc;
}

int ae_reconstruction_error(ae_t *ae, const float *x, size_t n, double *mse, util_err_t *err) {
    double s = 0;
    int L = ae->n_layers, D = ae->in_dim;
    for (size_t i = 0; i < n; i += AE_MAX_BATCH) {
        int bn = (int)(n - i < AE_MAX_BATCH ? n - i : AE_MAX_BATCH);
        if (forward(ae, x + i * D, bn, NULL, L - 1, err)) return -1;
        for (size_t j = 0; j < (size_t)bn * D; j++) {
            double e = (double)ae->a[L][j] - ae->a[0][j];
            s += e * e;
        }
    }
    *mse = n ? s / ((double)n * D) : 0.0;
    return 0;
}

int ae_encode(ae_t *ae, const float *x, size_t n, float *activity, uint8_t *codes,
              util_err_t *err) {
    int B = ae->bits, nb = ae_code_bytes(B), D = ae->in_dim;
    for (size_t i = 0; i < n; i += AE_MAX_BATCH) {
        int bn = (int)(n - i < AE_MAX_BATCH ? n - i : AE_MAX_BATCH);
        if (forward(ae, x + i * D, bn, NULL, ae->code_layer, err)) return -1;
        const float *y = ae->a[ae->code_layer + 1];
        if (activity) memcpy(activity + i * B, y, (size_t)bn * B * sizeof(float));
        if (codes) {
            uint8_t *c = codes + i * nb;
            memset(c, 0, (size_t)bn * nb);
            for (int r = 0; r < bn; r++)
                for (int j = 0; j < B; j++)
                    if (y[(size_t)r * B + j] > 0.5f)
                        c[(size_t)r * nb + j / 8] |= (uint8_t)(1u << (j % 8));
        }
    }
    return 0;
}

/* ----------------------------------------------------------- model file */

static void layer_name(const ae_t *ae, int k, char *buf, size_t size) {
    if (k < ae->n_hidden)
        snprintf(buf, size, "enc%d", k + 1);
    else if (k == ae->code_layer)
        snprintf(buf, size, "code");
    else if (k == ae->n_layers - 1)
        snprintf(buf, size, "out");
    else
        snprintf(buf, size, "dec%d", k - ae->code_layer);
}

static void ae_spec(const ae_t *ae, model_spec_t *s) {
    memset(s, 0, sizeof *s);
    int len = snprintf(s->name, sizeof s->name, "ae-%s%d", ae->l2 ? "l2-" : "", ae->in_dim);
    for (int i = 0; i < ae->n_hidden && len < (int)sizeof s->name; i++)
        len += snprintf(s->name + len, sizeof s->name - (size_t)len, "-%d", ae->hidden[i]);
    if (len < (int)sizeof s->name)
        snprintf(s->name + len, sizeof s->name - (size_t)len, "-%d", ae->bits);
    s->in_c = ae->in_dim;
    s->in_h = s->in_w = 1;
    for (int k = 0; k < ae->n_layers; k++) {
        model_layer_spec_t *l = &s->layer[s->n_layers++];
        l->kind = MODEL_FC;
        layer_name(ae, k, l->name, sizeof l->name);
        l->out = ae->layer[k].p.out;
        if (ae->layer[k].act == ACT_RELU) {
            model_layer_spec_t *r = &s->layer[s->n_layers++];
            r->kind = MODEL_RELU;
            char base[16];
            memcpy(base, l->name, sizeof base);
            snprintf(r->name, sizeof r->name, "relu_%.8s", base);
        }
    }
}

int ae_save(const ae_t *ae, const char *path, const char *source, util_err_t *err) {
    model_spec_t spec;
    ae_spec(ae, &spec);
    model_file_t *mf = model_file_create(&spec, err);
    if (!mf) return -1;
    int D = ae->in_dim, rc = 0;
    for (int k = 0; k < ae->n_layers && rc == 0; k++) {
        const ae_layer_t *l = &ae->layer[k];
        char name[16], pn[24];
        layer_name(ae, k, name, sizeof name);
        snprintf(pn, sizeof pn, "%s.weight", name);
        model_tensor_t *w = model_file_find_param(mf, pn);
        snprintf(pn, sizeof pn, "%s.bias", name);
        model_tensor_t *b = model_file_find_param(mf, pn);
        if (!w || !b || w->count != (size_t)l->p.in * l->p.out || b->count != (size_t)l->p.out) {
            rc = util_fail(err, "%s: the model file's layout does not match the autoencoder", name);
            break;
        }
        memcpy(w->data, l->w, w->count * sizeof(float));
        memcpy(b->data, l->b, b->count * sizeof(float));
        if (k == 0) {
            /* W ((x - m) * s) + b = (W diag(s)) x + (b - W diag(s) m). */
            for (int o = 0; o < l->p.out; o++) {
                double acc = 0;
                for (int j = 0; j < D; j++) {
                    float ws = l->w[(size_t)o * D + j] * ae->inv_std[j];
                    w->data[(size_t)o * D + j] = ws;
                    acc += (double)ws * ae->mean[j];
                }
                b->data[o] = (float)(l->b[o] - acc);
            }
        }
        if (k == ae->n_layers - 1) {
            /* The output back in raw units: y / s + m. */
            for (int o = 0; o < D; o++) {
                float sd = 1.0f / ae->inv_std[o];
                for (int j = 0; j < l->p.in; j++)
                    w->data[(size_t)o * l->p.in + j] *= sd;
                b->data[o] = b->data[o] * sd + ae->mean[o];
            }
        }
    }
    /* No mean in the normalisation: it is folded into enc1. */
    mf->norm.stored_size = 1;
    snprintf(mf->source, sizeof mf->source, "%s", source ? source : "imgret ae-train");
    if (rc == 0) rc = model_file_save(mf, path, err);
    model_file_free(mf);
    return rc;
}

ae_t *ae_load(const char *path, util_err_t *err) {
    model_file_t *mf = model_file_load(path, err);
    if (!mf) return NULL;
    const model_spec_t *s = &mf->spec;
    int fcs[AE_MAX_LAYERS], nfc = 0, code = -1;
    ae_t *ae = NULL;
    for (int i = 0; i < s->n_layers; i++) {
        if (s->layer[i].kind != MODEL_FC) continue;
        if (nfc == AE_MAX_LAYERS) goto bad;
        if (!strcmp(s->layer[i].name, "code")) code = nfc;
        fcs[nfc++] = i;
    }
    if (strncmp(s->name, "ae-", 3) || s->in_h != 1 || s->in_w != 1 || code < 0 ||
        nfc != 2 * (code + 1))
        goto bad;
    int hidden[AE_MAX_HIDDEN];
    for (int i = 0; i < code; i++)
        hidden[i] = s->layer[fcs[i]].out;
    if (!(ae = ae_create(s->in_c, hidden, code, s->layer[fcs[code]].out, 1, err))) goto done;
    for (int k = 0; k < ae->n_layers; k++) {
        char name[16], pn[24];
        layer_name(ae, k, name, sizeof name);
        snprintf(pn, sizeof pn, "%s.weight", name);
        model_tensor_t *w = model_file_find_param(mf, pn);
        snprintf(pn, sizeof pn, "%s.bias", name);
        model_tensor_t *b = model_file_find_param(mf, pn);
        ae_layer_t *l = &ae->layer[k];
        if (!w || !b || w->count != (size_t)l->p.in * l->p.out || b->count != (size_t)l->p.out) {
            ae_free(ae);
            ae = NULL;
            goto bad;
        }
        memcpy(l->w, w->data, w->count * sizeof(float));
        memcpy(l->b, b->data, b->count * sizeof(float));
    }
    /* The file's net takes raw input (standardisation folded in), after
     * the L2 normalisation its name says. */
    ae->l2 = !strncmp(s->name, "ae-l2-", 6);
    goto done;
bad:
    util_fail(err,
              "%s: not an imgret autoencoder (spec %s: expected ae-..., FC layers "
              "enc1..encN, code, dec1..decN, out)",
              path, s->name);
done:
    model_file_free(mf);
    return ae;
}
