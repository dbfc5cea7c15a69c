/* Datasets: IDX files (read from .gz through zlib), image folders, list
 * files, memory, and subsets, behind one table of operations. */
#include "data/internal.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* ------------------------------------------------------------- common */

size_t data_dataset_count(const data_dataset_t *ds) {
    return ds->count;
}

int data_dataset_num_classes(const data_dataset_t *ds) {
    return ds->num_classes;
}

const char *data_dataset_class_name(const data_dataset_t *ds, int label) {
    if (label < 0 || label >= ds->num_classes) return NULL;
    return ds->class_names[label];
}

int data_dataset_channels(const data_dataset_t *ds) {
    return ds->channels;
}

const char *data_dataset_item_name(const data_dataset_t *ds, size_t i, char *buf, size_t size) {
    if (size == 0) return buf;
    if (i >= ds->count)
        snprintf(buf, size, "item %zu (of %zu)", i, ds->count);
    else
        ds->ops->item_name(ds, i, buf, size);
    return buf;
}

int data_dataset_label(const data_dataset_t *ds, size_t i) {
    if (i >= ds->count) return -1;
    return ds->ops->label(ds, i);
}

data_image_t *data_dataset_load(const data_dataset_t *ds, size_t i, const data_decode_opts_t *opts,
                                int *label, util_err_t *err) {
    if (i >= ds->count) {
        util_fail(err, "dataset: item %zu out of range (%zu items)", i, ds->count);
        return NULL;
    }
    data_decode_opts_t o = opts ? *opts : (data_decode_opts_t){0, 0, 0, 0};
    if (ds->raw_orientation) o.raw_orientation = 1;
    return ds->ops->load(ds, i, &o, label, err);
}

void data_dataset_set_raw_orientation(data_dataset_t *ds, int raw) {
    ds->raw_orientation = raw != 0;
}

static void free_names(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

void data_dataset_free(data_dataset_t *ds) {
    if (!ds) return;
    if (ds->ops && ds->ops->free_state) ds->ops->free_state(ds->state);
    free_names(ds->class_names, ds->num_classes);
    free(ds);
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* A text file split into lines (the buffer is modified in place). */
typedef struct lines {
    char *text;
    char **line;
    size_t n;
} lines_t;

static void lines_free(lines_t *l) {
    free(l->text);
    free(l->line);
    memset(l, 0, sizeof *l);
}

static int lines_read(const char *path, lines_t *l, util_err_t *err) {
    memset(l, 0, sizeof *l);
    uint8_t *buf;
    size_t len;
    if (data_read_file(path, (size_t)1 << 30, &buf, &len, err)) return -1;
    char *text = realloc(buf, len + 1);
    if (!text) {
        free(buf);
        return util_fail(err, "%s: out of memory", path);
    }
    text[len] = '\0';
    if (memchr(text, '\0', len)) {
        free(text);
        return util_fail(err, "%s: not a text file (holds NUL bytes)", path);
    }
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += text[i] == '\n';
    l->line = malloc(sizeof(char *) * n);
    if (!l->line) {
        free(text);
        return util_fail(err, "%s: out of memory", path);
    }
    l->text = text;
    char *p = text;
    while (*p) {
        char *e = strchr(p, '\n');
        if (e) *e = '\0';
        size_t m = strlen(p);
        while (m && (p[m - 1] == '\r' || isspace((unsigned char)p[m - 1])))
            p[--m] = '\0';
        while (isspace((unsigned char)*p))
            p++;
        l->line[l->n++] = p;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* Class names from a names file (one per line, blank lines and '#' skipped). */
static int read_names(const char *path, char ***names, int *n, util_err_t *err) {
    lines_t l;
    if (lines_read(path, &l, err)) return -1;
    char **v = calloc(l.n ? l.n : 1, sizeof *v);
    int k = 0;
    if (!v) {
        lines_free(&l);
        return util_fail(err, "%s: out of memory", path);
    }
    for (size_t i = 0; i < l.n; i++) {
        if (!l.line[i][0] || l.line[i][0] == '#') continue;
        if (!(v[k] = dup_str(l.line[i]))) {
            free_names(v, k);
            lines_free(&l);
            return util_fail(err, "%s: out of memory", path);
        }
        k++;
    }
    lines_free(&l);
    if (k == 0) {
        free(v);
        return util_fail(err, "%s: no class names in the file", path);
    }
    *names = v;
    *n = k;
    return 0;
}

/* Fills ds->class_names: `given` (taken over) padded with "<label>" up to n. */
static int set_class_names(data_dataset_t *ds, int n, char **given, int n_given, util_err_t *err) {
    if (n < n_given) n = n_given;
    char **v = calloc(n ? (size_t)n : 1, sizeof *v);
    if (!v) {
        free_names(given, n_given);
        return util_fail(err, "dataset: out of memory");
    }
    for (int i = 0; i < n; i++) {
        if (i < n_given) {
            v[i] = given[i];
        } else {
            char tmp[32];
            snprintf(tmp, sizeof tmp, "%d", i);
            if (!(v[i] = dup_str(tmp))) {
                for (int j = i + 1; j < n_given; j++)
                    free(given[j]);
                free(given);
                free_names(v, i);
                return util_fail(err, "dataset: out of memory");
            }
        }
    }
    free(given);
    ds->class_names = v;
    ds->num_classes = n;
    return 0;
}

static data_dataset_t *dataset_new(const dataset_ops_t *ops, util_err_t *err) {
    data_dataset_t *ds = calloc(1, sizeof *ds);
    if (!ds)
        util_fail(err, "dataset: out of memory");
    else
        ds->ops = ops;
    return ds;
}

/* ---------------------------------------------------------------- IDX */

typedef struct idx_file {
    int ndims;
    uint32_t dims[4];
    uint8_t *data;
    size_t bytes;
} idx_file_t;

static uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Reads exactly n bytes unless the stream ends; returns the count or -1. */
static long long gz_read_full(gzFile gz, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        size_t want = n - got;
        if (want > (1u << 30)) want = 1u << 30;
        int r = gzread(gz, (uint8_t *)buf + got, (unsigned)want);
        if (r < 0) return -1;
        if (r == 0) break;
        got += (size_t)r;
    }
    return (long long)got;
}

static int idx_read(const char *path, idx_file_t *f, util_err_t *err) {
    memset(f, 0, sizeof *f);
    gzFile gz = gzopen(path, "rb");
    if (!gz) return util_fail(err, "%s: cannot open: %s", path, errno ? strerror(errno) : "zlib");
    uint8_t head[4 + 16];
    int zerr;
    long long got = gz_read_full(gz, head, 4);
    if (got < 0) goto gzfail;
    if (got == 0) {
        gzclose(gz);
        return util_fail(err, "%s: empty file", path);
    }
    if (got < 4 || head[0] != 0 || head[1] != 0) {
        gzclose(gz);
        return util_fail(err, "%s: not an IDX file (bad magic number)", path);
    }
    if (head[2] != 0x08) {
        gzclose(gz);
        return util_fail(err,
                         "%s: IDX element type 0x%02x is not supported (only 0x08, unsigned "
                         "bytes)",
                         path, head[2]);
    }
    f->ndims = head[3];
    if (f->ndims < 1 || f->ndims > 4) {
        gzclose(gz);
        return util_fail(err, "%s: IDX file with %d dimensions (expected 1 to 4)", path, f->ndims);
    }
    got = gz_read_full(gz, head + 4, 4 * (size_t)f->ndims);
    if (got < 0) goto gzfail;
    if (got < 4 * f->ndims) {
        gzclose(gz);
        return util_fail(err, "%s: truncated IDX header", path);
    }
    size_t total = 1;
    for (int d = 0; d < f->ndims; d++) {
        f->dims[d] = be32(head + 4 + 4 * d);
        if (f->dims[d] == 0) {
            gzclose(gz);
            return util_fail(err, "%s: IDX dimension %d is 0", path, d);
        }
        if (util_mul_size(total, f->dims[d], &total) || total > ((size_t)1 << 36)) {
            gzclose(gz);
            return util_fail(err, "%s: IDX header claims an absurd size", path);
        }
    }
    /* Grow the buffer with the data actually present, so a header that lies
     * about its size cannot make us allocate what the file does not hold. */
    size_t cap = 0, len = 0;
    uint8_t *buf = NULL;
    while (len < total) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : ((size_t)1 << 20);
            if (ncap > total) ncap = total;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                gzclose(gz);
                return util_fail(err, "%s: out of memory for %zu bytes", path, total);
            }
            buf = nb;
            cap = ncap;
        }
        long long r = gz_read_full(gz, buf + len, cap - len);
        if (r < 0) {
            free(buf);
            goto gzfail;
        }
        len += (size_t)r;
        if (r == 0 || len < cap) break;
    }
    if (len < total) {
        free(buf);
        gzclose(gz);
        return util_fail(err,
                         "%s: truncated IDX data: the header promises %zu bytes, the file "
                         "holds %zu",
                         path, total, len);
    }
    uint8_t extra;
    got = gz_read_full(gz, &extra, 1);
    if (got != 0) {
        free(buf);
        if (got < 0) goto gzfail;
        gzclose(gz);
        return util_fail(err, "%s: data after the %zu bytes the IDX header promises", path, total);
    }
    gzclose(gz);
    f->data = buf;
    f->bytes = total;
    return 0;
gzfail : {
    const char *msg = gzerror(gz, &zerr);
    util_fail(err, "%s: corrupt compressed data: %s", path, msg ? msg : "zlib error");
    gzclose(gz);
    return -1;
}
}

typedef struct idx_state {
    char *images_path;
    uint8_t *pixels;
    uint8_t *labels;
    int w, h, c;
} idx_state_t;

static void idx_free(void *p) {
    idx_state_t *s = p;
    if (!s) return;
    free(s->images_path);
    free(s->pixels);
    free(s->labels);
    free(s);
}

/* Item i of n packed w x h x c images (IDX files and memory datasets),
 * converted to opts->channels when that differs. */
static data_image_t *load_packed(const uint8_t *pixels, int w, int h, int c, size_t i,
                                 const data_decode_opts_t *opts, util_err_t *err) {
    data_image_t *im = data_image_create(w, h, c, err);
    if (!im) return NULL;
    size_t sz = (size_t)w * h * c;
    memcpy(im->pixels, pixels + i * sz, sz);
    if (opts->channels && opts->channels != c) {
        data_image_t *conv = data_image_convert(im, opts->channels, err);
        data_image_free(im);
        return conv;
    }
    return im;
}

static data_image_t *idx_load(const data_dataset_t *ds, size_t i, const data_decode_opts_t *opts,
                              int *label, util_err_t *err) {
    const idx_state_t *s = ds->state;
    data_image_t *im = load_packed(s->pixels, s->w, s->h, s->c, i, opts, err);
    if (im && label) *label = s->labels[i];
    return im;
}

static int idx_label(const data_dataset_t *ds, size_t i) {
    return ((const idx_state_t *)ds->state)->labels[i];
}

static void idx_name(const data_dataset_t *ds, size_t i, char *buf, size_t size) {
    snprintf(buf, size, "%s[%zu]", ((const idx_state_t *)ds->state)->images_path, i);
}

static const dataset_ops_t idx_ops = {idx_load, idx_label, idx_name, idx_free};

data_dataset_t *data_dataset_open_idx(const char *images_path, const char *labels_path,
                                      const char *names_path, util_err_t *err) {
    idx_file_t fi, fl;
    if (idx_read(images_path, &fi, err)) return NULL;
    if (idx_read(labels_path, &fl, err)) {
        free(fi.data);
        return NULL;
    }
    data_dataset_t *ds = NULL;
    idx_state_t *s = NULL;
    char **names = NULL;
    int n_names = 0;
    if (fi.ndims != 3 && !(fi.ndims == 4 && (fi.dims[3] == 1 || fi.dims[3] == 3))) {
        util_fail(err,
                  "%s: IDX images must have dimensions (n, h, w) or (n, h, w, 1|3); the "
                  "file has %d dimensions",
                  images_path, fi.ndims);
        goto fail;
    }
    if (fl.ndims != 1) {
        util_fail(err, "%s: IDX labels must have one dimension (n); the file has %d", labels_path,
                  fl.ndims);
        goto fail;
    }
    if (fi.dims[0] != fl.dims[0]) {
        util_fail(err, "%s holds %u images but %s holds %u labels", images_path,
                  (unsigned)fi.dims[0], labels_path, (unsigned)fl.dims[0]);
        goto fail;
    }
    if (fi.dims[1] > DATA_MAX_SIDE || fi.dims[2] > DATA_MAX_SIDE) {
        util_fail(err, "%s: image size %ux%u over the limit", images_path, (unsigned)fi.dims[2],
                  (unsigned)fi.dims[1]);
        goto fail;
    }
    if (names_path && read_names(names_path, &names, &n_names, err)) goto fail;
    int max_label = -1;
    for (size_t i = 0; i < fl.bytes; i++)
        if (fl.data[i] > max_label) max_label = fl.data[i];
    if (names && max_label >= n_names) {
        util_fail(err, "%s: label %d but %s names only %d classes", labels_path, max_label,
                  names_path, n_names);
        goto fail;
    }
    if (!(ds = dataset_new(&idx_ops, err))) goto fail;
    if (!(s = calloc(1, sizeof *s)) || !(s->images_path = dup_str(images_path))) {
        util_fail(err, "dataset: out of memory");
        goto fail;
    }
    s->h = (int)fi.dims[1];
    s->w = (int)fi.dims[2];
    s->c = fi.ndims == 4 ? (int)fi.dims[3] : 1;
    s->pixels = fi.data;
    s->labels = fl.data;
    fi.data = fl.data = NULL;
    ds->state = s;
    s = NULL;
    ds->count = fl.dims[0];
    ds->channels = ((idx_state_t *)ds->state)->c;
    int rc = set_class_names(ds, max_label + 1, names, n_names, err);
    names = NULL;
    if (rc) goto fail;
    return ds;
fail:
    free(fi.data);
    free(fl.data);
    free_names(names, n_names);
    idx_free(s);
    data_dataset_free(ds);
    return NULL;
}

data_dataset_t *data_dataset_open_fashion_mnist(const char *dir, const char *split,
                                                util_err_t *err) {
    static const char *const classes[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                            "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                            "Bag",         "Ankle boot"};
    if (!dir) dir = DATA_FASHION_MNIST_DIR;
    if (!split || (strcmp(split, "train") != 0 && strcmp(split, "t10k") != 0)) {
        util_fail(err, "fashion-mnist: split must be \"train\" or \"t10k\", not \"%s\"",
                  split ? split : "(null)");
        return NULL;
    }
    char img[1024], lab[1024];
    if (snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", dir, split) >= (int)sizeof img ||
        snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", dir, split) >= (int)sizeof lab) {
        util_fail_kind(err, UTIL_ERR_INVALID,
                       "fashion-mnist: %s: the folder's path is longer than %zu bytes", dir,
                       sizeof img - sizeof "/train-images-idx3-ubyte.gz");
        return NULL;
    }
    data_dataset_t *ds = data_dataset_open_idx(img, lab, NULL, err);
    if (!ds) return NULL;
    if (ds->num_classes > 10) {
        data_dataset_free(ds);
        util_fail(err, "%s: labels beyond the ten Fashion-MNIST classes", lab);
        return NULL;
    }
    for (int i = 0; i < ds->num_classes; i++) {
        char *n = dup_str(classes[i]);
        if (!n) {
            data_dataset_free(ds);
            util_fail(err, "dataset: out of memory");
            return NULL;
        }
        free(ds->class_names[i]);
        ds->class_names[i] = n;
    }
    return ds;
}

/* ------------------------------------------------- files (folder, list) */

typedef struct files_state {
    char **paths;
    int *labels;
    size_t n;
} files_state_t;

static void files_free(void *p) {
    files_state_t *s = p;
    if (!s) return;
    for (size_t i = 0; i < s->n; i++)
        free(s->paths[i]);
    free(s->paths);
    free(s->labels);
    free(s);
}

static int files_push(files_state_t *s, size_t *cap, char *path, int label) {
    if (!path) return -1;
    if (s->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        char **np = realloc(s->paths, nc * sizeof *np);
        if (!np) {
            free(path);
            return -1;
        }
        s->paths = np;
        int *nl = realloc(s->labels, nc * sizeof *nl);
        if (!nl) {
            free(path);
            return -1;
        }
        s->labels = nl;
        *cap = nc;
    }
    s->paths[s->n] = path;
    s->labels[s->n] = label;
    s->n++;
    return 0;
}

static data_image_t *files_load(const data_dataset_t *ds, size_t i, const data_decode_opts_t *opts,
                                int *label, util_err_t *err) {
    const files_state_t *s = ds->state;
    if (label) *label = s->labels[i];
    return data_image_read(s->paths[i], opts, err);
}

static int files_label(const data_dataset_t *ds, size_t i) {
    return ((const files_state_t *)ds->state)->labels[i];
}

static void files_name(const data_dataset_t *ds, size_t i, char *buf, size_t size) {
    snprintf(buf, size, "%s", ((const files_state_t *)ds->state)->paths[i]);
}

static const dataset_ops_t files_ops = {files_load, files_label, files_name, files_free};

static char *join_path(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *p = malloc(na + nb + 2);
    if (!p) return NULL;
    memcpy(p, a, na);
    size_t k = na;
    if (k && p[k - 1] != '/') p[k++] = '/';
    memcpy(p + k, b, nb + 1);
    return p;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_image_ext(const char *name) {
    static const char *const exts[] = {"jpg",  "jpeg", "jpe", "jfif", "png",  "webp", "gif", "tif",
                                       "tiff", "bmp",  "dib", "heic", "heif", "hif",  "avif"};
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    char ext[8] = {0};
    size_t n = strlen(dot + 1);
    if (n == 0 || n > 4) return 0;
    for (size_t i = 0; i < n; i++)
        ext[i] = (char)tolower((unsigned char)dot[1 + i]);
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (!strcmp(ext, exts[i])) return 1;
    return 0;
}

/* An image by content: the first bytes are a format data_decode reads
 * (a photo saved without its extension, or with a wrong one). */
static int has_image_magic(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint8_t head[32];
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    return data_image_format(head, n) != NULL;
}

/* Sorted names of the entries of dir (hidden ones skipped) that are
 * directories (want_dir) or regular image files. */
static int list_dir(const char *dir, int want_dir, char ***out, size_t *n_out, util_err_t *err) {
    DIR *d = opendir(dir);
    if (!d) return util_fail(err, "%s: cannot open folder: %s", dir, strerror(errno));
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *full = join_path(dir, e->d_name);
        struct stat st;
        if (!full) goto oom;
        int ok = stat(full, &st) == 0 && (want_dir ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode));
        /* Files: by extension, else by their first bytes. */
        if (ok && !want_dir) ok = has_image_ext(e->d_name) || has_image_magic(full);
        free(full);
        if (!ok) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **nv = realloc(v, nc * sizeof *nv);
            if (!nv) goto oom;
            v = nv;
            cap = nc;
        }
        if (!(v[n] = dup_str(e->d_name))) goto oom;
        n++;
    }
    closedir(d);
    if (n) qsort(v, n, sizeof *v, cmp_str);
    *out = v;
    *n_out = n;
    return 0;
oom:
    closedir(d);
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    return util_fail(err, "%s: out of memory listing the folder", dir);
}

static void free_strs(char **v, size_t n) {
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

data_dataset_t *data_dataset_open_folder(const char *root, const char *labels_path,
                                         util_err_t *err) {
    char **sub = NULL, **class_dirs = NULL, **names = NULL;
    size_t n_sub = 0, n_classes = 0;
    lines_t l = {0};
    files_state_t *s = calloc(1, sizeof *s);
    size_t cap = 0;
    data_dataset_t *ds = NULL;
    if (!s) {
        util_fail(err, "dataset: out of memory");
        return NULL;
    }
    if (list_dir(root, 1, &sub, &n_sub, err)) goto fail;
    if (labels_path) {
        if (lines_read(labels_path, &l, err)) goto fail;
        class_dirs = calloc(l.n ? l.n : 1, sizeof *class_dirs);
        names = calloc(l.n ? l.n : 1, sizeof *names);
        if (!class_dirs || !names) goto oom;
        for (size_t i = 0; i < l.n; i++) {
            char *line = l.line[i];
            if (!line[0] || line[0] == '#') continue;
            char *sp = line;
            while (*sp && !isspace((unsigned char)*sp))
                sp++;
            char *display = sp;
            if (*sp) {
                *sp = '\0';
                display = sp + 1;
                while (isspace((unsigned char)*display))
                    display++;
            }
            for (size_t j = 0; j < n_classes; j++)
                if (!strcmp(class_dirs[j], line)) {
                    util_fail(err, "%s: class \"%s\" listed twice", labels_path, line);
                    goto fail;
                }
            class_dirs[n_classes] = dup_str(line);
            names[n_classes] = dup_str(*display ? display : line);
            if (!class_dirs[n_classes] || !names[n_classes]) {
                n_classes++;
                goto oom;
            }
            n_classes++;
        }
        if (n_classes == 0) {
            util_fail(err, "%s: no classes in the labels file", labels_path);
            goto fail;
        }
    } else {
        class_dirs = sub;
        sub = NULL;
        n_classes = n_sub;
        n_sub = 0;
        if (n_classes == 0) {
            util_fail(err, "%s: no class folders (expected root/<class>/<image>)", root);
            goto fail;
        }
        names = calloc(n_classes, sizeof *names);
        if (!names) goto oom;
        for (size_t i = 0; i < n_classes; i++)
            if (!(names[i] = dup_str(class_dirs[i]))) goto oom;
    }
    if (n_classes > 1000000) {
        util_fail(err, "%s: too many classes (%zu)", root, n_classes);
        goto fail;
    }
    for (size_t c = 0; c < n_classes; c++) {
        char *dir = join_path(root, class_dirs[c]);
        char **files = NULL;
        size_t nf = 0;
        struct stat st;
        if (!dir) goto oom;
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) { /* a listed class may have no folder */
            free(dir);
            continue;
        }
        if (list_dir(dir, 0, &files, &nf, err)) {
            free(dir);
            goto fail;
        }
        for (size_t f = 0; f < nf; f++)
            if (files_push(s, &cap, join_path(dir, files[f]), (int)c)) {
                free_strs(files, nf);
                free(dir);
                goto oom;
            }
        free_strs(files, nf);
        free(dir);
    }
    /* With a labels file, a folder holding images but not listed is a mistake. */
    for (size_t i = 0; i < n_sub; i++) {
        int listed = 0;
        for (size_t c = 0; c < n_classes && !listed; c++)
            listed = !strcmp(sub[i], class_dirs[c]);
        if (listed) continue;
        char *dir = join_path(root, sub[i]);
        char **files = NULL;
        size_t nf = 0;
        if (!dir) goto oom;
        int rc = list_dir(dir, 0, &files, &nf, err);
        free(dir);
        free_strs(files, nf);
        if (rc) goto fail;
        if (nf) {
            util_fail(err, "%s: folder \"%s\" holds %zu images but is not in %s", root, sub[i], nf,
                      labels_path);
            goto fail;
        }
    }
    if (s->n == 0) {
        util_fail(err, "%s: no images (JPEG, PNG, WebP, GIF, TIFF, BMP, HEIF) in the class folders",
                  root);
        goto fail;
    }
    if (!(ds = dataset_new(&files_ops, err))) goto fail;
    ds->state = s;
    s = NULL;
    ds->count = ((files_state_t *)ds->state)->n;
    ds->channels = 0;
    if (set_class_names(ds, 0, names, (int)n_classes, err)) {
        names = NULL;
        goto fail;
    }
    names = NULL;
    free_strs(sub, n_sub);
    free_strs(class_dirs, n_classes);
    lines_free(&l);
    return ds;
oom:
    util_fail(err, "%s: out of memory", root);
fail:
    free_strs(sub, n_sub);
    free_strs(class_dirs, n_classes);
    free_strs(names, n_classes);
    lines_free(&l);
    files_free(s);
    data_dataset_free(ds);
    return NULL;
}

data_dataset_t *data_dataset_open_list(const char *list_path, const char *names_path,
                                       util_err_t *err) {
    lines_t l;
    char **names = NULL;
    int n_names = 0;
    files_state_t *s = NULL;
    data_dataset_t *ds = NULL;
    char *dir = NULL;
    size_t cap = 0;
    if (lines_read(list_path, &l, err)) return NULL;
    if (names_path && read_names(names_path, &names, &n_names, err)) goto fail;
    if (!(s = calloc(1, sizeof *s))) goto oom;
    const char *slash = strrchr(list_path, '/');
    size_t dlen = slash ? (size_t)(slash - list_path) : 1;
    if (!(dir = malloc(dlen + 1))) goto oom;
    memcpy(dir, slash ? list_path : ".", dlen);
    dir[dlen] = '\0';
    int max_label = -1;
    for (size_t i = 0; i < l.n; i++) {
        char *line = l.line[i];
        if (!line[0] || line[0] == '#') continue;
        char *sp = line + strlen(line);
        while (sp > line && !isspace((unsigned char)sp[-1]))
            sp--;
        char *path_end = sp;
        while (path_end > line && isspace((unsigned char)path_end[-1]))
            path_end--;
        if (path_end == line) {
            util_fail(err, "%s:%zu: expected \"path label\"", list_path, i + 1);
            goto fail;
        }
        char *end;
        errno = 0;
        long lab = strtol(sp, &end, 10);
        if (*end || end == sp || errno || lab < 0 || lab > 1000000) {
            util_fail(err, "%s:%zu: label \"%s\" is not an integer in 0..1000000", list_path, i + 1,
                      sp);
            goto fail;
        }
        if (names && lab >= n_names) {
            util_fail(err, "%s:%zu: label %ld but %s names only %d classes", list_path, i + 1, lab,
                      names_path, n_names);
            goto fail;
        }
        *path_end = '\0';
        char *path = line[0] == '/' ? dup_str(line) : join_path(dir, line);
        if (files_push(s, &cap, path, (int)lab)) goto oom;
        if (lab > max_label) max_label = (int)lab;
    }
    if (s->n == 0) {
        util_fail(err, "%s: no items in the list", list_path);
        goto fail;
    }
    if (!(ds = dataset_new(&files_ops, err))) goto fail;
    ds->state = s;
    ds->count = s->n;
    s = NULL;
    int rc = set_class_names(ds, max_label + 1, names, n_names, err);
    names = NULL;
    if (rc) goto fail;
    free(dir);
    lines_free(&l);
    return ds;
oom:
    util_fail(err, "%s: out of memory", list_path);
fail:
    free(dir);
    free_names(names, n_names);
    files_free(s);
    data_dataset_free(ds);
    lines_free(&l);
    return NULL;
}

/* -------------------------------------------------------------- memory */

typedef struct mem_state {
    uint8_t *pixels;
    int *labels;
    int w, h, c;
} mem_state_t;

static void mem_free(void *p) {
    mem_state_t *s = p;
    if (!s) return;
    free(s->pixels);
    free(s->labels);
    free(s);
}

static data_image_t *mem_load(const data_dataset_t *ds, size_t i, const data_decode_opts_t *opts,
                              int *label, util_err_t *err) {
    const mem_state_t *s = ds->state;
    data_image_t *im = load_packed(s->pixels, s->w, s->h, s->c, i, opts, err);
    if (im && label) *label = s->labels[i];
    return im;
}

static int mem_label(const data_dataset_t *ds, size_t i) {
    return ((const mem_state_t *)ds->state)->labels[i];
}

static void mem_name(const data_dataset_t *ds, size_t i, char *buf, size_t size) {
    (void)ds;
    snprintf(buf, size, "memory[%zu]", i);
}

static const dataset_ops_t mem_ops = {mem_load, mem_label, mem_name, mem_free};

data_dataset_t *data_dataset_from_memory(int n, int w, int h, int c, const uint8_t *pixels,
                                         const int *labels, int num_classes,
                                         const char *const *class_names, util_err_t *err) {
    if (n <= 0 || (c != 1 && c != 3) || num_classes <= 0) {
        util_fail(err, "memory dataset: invalid shape (n %d, c %d, classes %d)", n, c, num_classes);
        return NULL;
    }
    if (image_check_size(w, h, 0, "memory dataset", err)) return NULL;
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= num_classes) {
            util_fail(err, "memory dataset: label %d of item %d outside 0..%d", labels[i], i,
                      num_classes - 1);
            return NULL;
        }
    size_t sz;
    if (util_mul_size((size_t)w * h * c, (size_t)n, &sz)) {
        util_fail(err, "memory dataset: size overflows");
        return NULL;
    }
    mem_state_t *s = calloc(1, sizeof *s);
    data_dataset_t *ds = dataset_new(&mem_ops, err);
    char **names = calloc((size_t)num_classes, sizeof *names);
    if (!s || !ds || !names || !(s->pixels = malloc(sz)) ||
        !(s->labels = malloc(sizeof(int) * (size_t)n)))
        goto oom;
    memcpy(s->pixels, pixels, sz);
    memcpy(s->labels, labels, sizeof(int) * (size_t)n);
    s->w = w;
    s->h = h;
    s->c = c;
    ds->state = s;
    s = NULL;
    ds->count = (size_t)n;
    ds->channels = c;
    int k = 0;
    if (class_names) {
        for (; k < num_classes; k++)
            if (!(names[k] = dup_str(class_names[k]))) goto oom;
    }
    if (!class_names) {
        free(names);
        names = NULL;
    }
    if (set_class_names(ds, num_classes, names, k, err)) {
        data_dataset_free(ds);
        return NULL;
    }
    return ds;
oom:
    free_names(names, num_classes);
    mem_free(s);
    data_dataset_free(ds);
    util_fail(err, "memory dataset: out of memory");
    return NULL;
}

/* -------------------------------------------------------------- subset */

typedef struct subset_state {
    const data_dataset_t *parent;
    size_t start;
} subset_state_t;

static data_image_t *subset_load(const data_dataset_t *ds, size_t i, const data_decode_opts_t *opts,
                                 int *label, util_err_t *err) {
    const subset_state_t *s = ds->state;
    return data_dataset_load(s->parent, s->start + i, opts, label, err);
}

static int subset_label(const data_dataset_t *ds, size_t i) {
    const subset_state_t *s = ds->state;
    return data_dataset_label(s->parent, s->start + i);
}

static void subset_name(const data_dataset_t *ds, size_t i, char *buf, size_t size) {
    const subset_state_t *s = ds->state;
    data_dataset_item_name(s->parent, s->start + i, buf, size);
}

static const dataset_ops_t subset_ops = {subset_load, subset_label, subset_name, free};

data_dataset_t *data_dataset_subset(const data_dataset_t *parent, size_t start, size_t count,
                                    util_err_t *err) {
    if (start > parent->count || count > parent->count - start || count == 0) {
        util_fail(err, "subset: items [%zu, %zu) outside the dataset's %zu", start, start + count,
                  parent->count);
        return NULL;
    }
    data_dataset_t *ds = dataset_new(&subset_ops, err);
    subset_state_t *s = calloc(1, sizeof *s);
    char **names = calloc((size_t)parent->num_classes, sizeof *names);
    if (!ds || !s || !names) goto oom;
    for (int k = 0; k < parent->num_classes; k++)
        if (!(names[k] = dup_str(parent->class_names[k]))) goto oom;
    s->parent = parent;
    s->start = start;
    ds->state = s;
    ds->count = count;
    ds->channels = parent->channels;
    if (set_class_names(ds, parent->num_classes, names, parent->num_classes, err)) {
        data_dataset_free(ds);
        return NULL;
    }
    return ds;
oom:
    free_names(names, parent->num_classes);
    free(s);
    if (ds) ds->state = NULL;
    data_dataset_free(ds);
    util_fail(err, "subset: out of memory");
    return NULL;
}
