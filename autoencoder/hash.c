/* LSH and ITQ: linear hashes bit j = ((x - mean) . P_j > 0). */
#include "autoencoder/autoencoder.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct ae_hasher {
    int dim, bits;
    float *mean; /* dim */
    float *proj; /* dim x bits, row-major */
};

void ae_hasher_free(ae_hasher_t *h) {
    if (!h) return;
    free(h->mean);
    free(h->proj);
    free(h);
}

int ae_hasher_bits(const ae_hasher_t *h) {
    return h->bits;
}

static ae_hasher_t *hasher_alloc(const float *x, size_t n, int dim, int bits, util_err_t *err) {
    if (dim < 1 || bits < 1 || bits > AE_MAX_BITS || n < 1) {
        util_fail(err, "hash: impossible shape (%zu rows of %d, %d bits)", n, dim, bits);
        return NULL;
    }
    ae_hasher_t *h = calloc(1, sizeof *h);
    if (!h || !(h->mean = calloc((size_t)dim, sizeof(float))) ||
        !(h->proj = calloc((size_t)dim * bits, sizeof(float)))) {
        ae_hasher_free(h);
        util_fail(err, "hash: out of memory");
        return NULL;
    }
    h->dim = dim;
    h->bits = bits;
    double *m = calloc((size_t)dim, sizeof(double));
    if (!m) {
        ae_hasher_free(h);
        util_fail(err, "hash: out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < dim; j++)
            m[j] += x[i * dim + j];
    for (int j = 0; j < dim; j++)
        h->mean[j] = (float)(m[j] / (double)n);
    free(m);
    return h;
}

ae_hasher_t *ae_lsh_create(const float *x, size_t n, int dim, int bits, uint64_t seed,
                           util_err_t *err) {
    ae_hasher_t *h = hasher_alloc(x, n, dim, bits, err);
    if (!h) return NULL;
    util_rng_t rng;
    util_rng_seed(&rng, seed);
    for (size_t i = 0; i < (size_t)dim * bits; i++)
        h->proj[i] = (float)util_rng_normal(&rng);
    return h;
}

int ae_hasher_encode(const ae_hasher_t *h, const float *x, size_t n, uint8_t *codes,
                     util_err_t *err) {
    const size_t chunk = 1024;
    int D = h->dim, B = h->bits, nb = ae_code_bytes(B);
    float *xc = malloc(chunk * D * sizeof(float)), *p = malloc(chunk * B * sizeof(float));
    if (!xc || !p) {
        free(xc), free(p);
        return util_fail(err, "hash: out of memory");
    }
    for (size_t s = 0; s < n; s += chunk) {
        size_t m = n - s < chunk ? n - s : chunk;
        for (size_t i = 0; i < m; i++)
            for (int j = 0; j < D; j++)
                xc[i * D + j] = x[(s + i) * D + j] - h->mean[j];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, B, D, 1.0f, xc, D, h->proj,
                    B, 0.0f, p, B);
        uint8_t *c = codes + s * nb;
        memset(c, 0, m * nb);
        for (size_t i = 0; i < m; i++)
            for (int j = 0; j < B; j++)
                if (p[i * B + j] > 0) c[i * nb + j / 8] |= (uint8_t)(1u << (j % 8));
    }
    free(xc), free(p);
    return 0;
}

/* ||sign(V R) - V R||_F^2 / n, and S = sign(V R) into sgn (n x B). */
static double quantise(const float *vr, size_t n, int B, float *sgn) {
    double loss = 0;
    for (size_t i = 0; i < n * B; i++) {
        sgn[i] = vr[i] >= 0 ? 1.0f : -1.0f;
        double e = sgn[i] - vr[i];
        loss += e * e;
    }
    return loss / (double)n;
}

/* Q <- an orthonormal basis of the columns of y (d x k, row-major). */
static int orthonormalise(float *y, int d, int k, float *tau) {
    if (LAPACKE_sgeqrf(LAPACK_ROW_MAJOR, d, k, y, k, tau)) return -1;
    return LAPACKE_sorgqr(LAPACK_ROW_MAJOR, d, k, k, y, k, tau) ? -1 : 0;
}

/* Eigenvectors of the b largest eigenvalues of the symmetric d x d matrix c
 * (upper triangle used) into out (d x b, row-major; column j the j-th
 * largest). */
static int top_eigenvectors(const float *c, int d, int b, uint64_t seed, float *out,
                            util_err_t *err) {
    int k = b + 16 < d ? b + 16 : d;
    float *q = malloc((size_t)d * k * sizeof(float)), *y = malloc((size_t)d * k * sizeof(float));
    float *t = malloc((size_t)k * k * sizeof(float)), *w = malloc((size_t)k * sizeof(float));
    float *tau = malloc((size_t)k * sizeof(float));
    int rc = 0;
    if (!q || !y || !t || !w || !tau) rc = util_fail(err, "itq: out of memory");
    util_rng_t rng;
    util_rng_seed(&rng, seed ^ 0x9e3779b97f4a7c15ull);
    for (size_t i = 0; rc == 0 && i < (size_t)d * k; i++)
        q[i] = (float)util_rng_normal(&rng);
    for (int it = 0; rc == 0 && it < 6; it++) {
        cblas_ssymm(CblasRowMajor, CblasLeft, CblasUpper, d, k, 1.0f, c, d, q, k, 0.0f, y, k);
        memcpy(q, y, (size_t)d * k * sizeof(float));
        if (orthonormalise(q, d, k, tau)) rc = util_fail(err, "itq: QR failed");
    }
    if (rc == 0) {
        /* T = Q^T C Q, then its eigenvectors (ascending) mapped back by Q. */
        cblas_ssymm(CblasRowMajor, CblasLeft, CblasUpper, d, k, 1.0f, c, d, q, k, 0.0f, y, k);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, k, d, 1.0f, q, k, y, k, 0.0f, t, k);
        if (LAPACKE_ssyev(LAPACK_ROW_MAJOR, 'V', 'U', k, t, k, w))
            rc = util_fail(err, "itq: eigen decomposition failed");
    }
    if (rc == 0) {
        /* Columns k-1, k-2, ... k-b of t are the b largest. */
        for (int i = 0; i < d; i++)
            for (int j = 0; j < b; j++) {
                double s = 0;
                for (int m = 0; m < k; m++)
                    s += (double)q[(size_t)i * k + m] * t[(size_t)m * k + (k - 1 - j)];
                out[(size_t)i * b + j] = (float)s;
            }
    }
    free(q), free(y), free(t), free(w), free(tau);
    return rc;
}

ae_hasher_t *ae_itq_create(const float *x, size_t n, int dim, int bits, int iters, uint64_t seed,
                           double *loss, util_err_t *err) {
    if (bits > dim || n <= (size_t)bits) {
        util_fail(err, "itq: %d bits need at least that many dimensions (%d) and more rows (%zu)",
                  bits, dim, n);
        return NULL;
    }
    ae_hasher_t *h = hasher_alloc(x, n, dim, bits, err);
    if (!h) return NULL;
    int D = dim, B = bits;
    float *xc = malloc(n * D * sizeof(float));
    float *cov = malloc((size_t)D * D * sizeof(float));
    float *pca = malloc((size_t)D * B * sizeof(float)); /* D x B: the top B eigenvectors */
    float *v = malloc(n * B * sizeof(float)), *vr = malloc(n * B * sizeof(float));
    float *sgn = malloc(n * B * sizeof(float));
    float *r = malloc((size_t)B * B * sizeof(float)), *c = malloc((size_t)B * B * sizeof(float));
    float *u = malloc((size_t)B * B * sizeof(float)), *vt = malloc((size_t)B * B * sizeof(float));
    float *sv = malloc((size_t)B * sizeof(float)), *superb = malloc((size_t)B * sizeof(float));
    int ok = xc && cov && pca && v && vr && sgn && r && c && u && vt && sv && superb;
    if (!ok) {
        util_fail(err, "itq: out of memory (%zu rows of %d)", n, D);
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < D; j++)
            xc[i * D + j] = x[i * D + j] - h->mean[j];
    /* Covariance (upper triangle) and its top B eigenvectors. */
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, D, (int)n, 1.0f / (float)n, xc, D, 0.0f, cov,
                D);
    /* The top B eigenvectors by randomised subspace iteration (Halko et al.
     * 2011): a full 4096 x 4096 eigensolve takes a minute on two cores,
     * this a second, and ITQ rotates the subspace anyway. */
    if (top_eigenvectors(cov, D, B, seed, pca, err)) goto fail;
    /* V = Xc P (n x B). */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, B, D, 1.0f, xc, D, pca, B, 0.0f,
                v, B);
    /* A random orthogonal start: the Q of a Gaussian matrix's SVD (U V^T). */
    util_rng_t rng;
    util_rng_seed(&rng, seed);
    for (int i = 0; i < B * B; i++)
        c[i] = (float)util_rng_normal(&rng);
    if (LAPACKE_sgesvd(LAPACK_ROW_MAJOR, 'A', 'A', B, B, c, B, sv, u, B, vt, B, superb)) {
        util_fail(err, "itq: SVD failed");
        goto fail;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, B, B, 1.0f, u, B, vt, B, 0.0f, r, B);
    for (int it = 0; it <= iters; it++) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, B, B, 1.0f, v, B, r, B, 0.0f,
                    vr, B);
        double q = quantise(vr, n, B, sgn);
        if (loss) loss[it] = q;
        if (it == iters) break;
        /* Procrustes: R = U W^T for V^T S = U Sigma W^T maximises tr(R^T V^T S). */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, B, B, (int)n, 1.0f, v, B, sgn, B, 0.0f,
                    c, B);
        if (LAPACKE_sgesvd(LAPACK_ROW_MAJOR, 'A', 'A', B, B, c, B, sv, u, B, vt, B, superb)) {
            util_fail(err, "itq: SVD failed in iteration %d", it + 1);
            goto fail;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, B, B, 1.0f, u, B, vt, B, 0.0f, r,
                    B);
    }
    /* proj = P R (D x B). */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, D, B, B, 1.0f, pca, B, r, B, 0.0f,
                h->proj, B);
    goto done;
fail:
    ae_hasher_free(h);
    h = NULL;
done:
    free(xc), free(cov), free(pca), free(v), free(vr), free(sgn);
    free(r), free(c), free(u), free(vt), free(sv), free(superb);
    return h;
}
