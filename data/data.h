/* data: images in and out (JPEG through libjpeg-turbo's TurboJPEG, PNG through
 * libpng), resize and crop, datasets (IDX files, image folders, list files,
 * memory), the paper's augmentation (random crops, mirrors, PCA lighting,
 * mean subtraction), evaluation crops (centre, ten-crop), dataset statistics,
 * and a threaded loader that prefetches batches deterministically.
 *
 * Further formats (WebP, GIF, TIFF, BMP, HEIF) and EXIF orientation: see
 * the codec section.
 *
 * Images: 8-bit, interleaved HWC (row-major, channels last), 1 channel (grey)
 * or 3 (RGB). Network input: float32 CHW per crop, NCHW per batch.
 *
 * Errors: every function that can fail returns 0 / a pointer on success and
 * -1 / NULL on error with a sentence in `err` (which may be NULL) naming the
 * file or item; nothing here prints or exits. Bad images (corrupt, truncated,
 * empty, not an image, absurd dimensions) are errors, never crashes or hangs.
 */
#ifndef IMGRET_DATA_H
#define IMGRET_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "util/util.h"

/* ----------------------------------------------------------------- images */

typedef struct data_image {
    int w, h, c;     /* c is 1 (grey) or 3 (RGB) */
    uint8_t *pixels; /* h*w*c bytes, HWC; owned by the image */
} data_image_t;

/* Zero-filled image. w, h in [1, DATA_MAX_SIDE], w*h <= DATA_MAX_PIXELS. */
data_image_t *data_image_create(int w, int h, int c, util_err_t *err);
void data_image_free(data_image_t *im); /* accepts NULL */
data_image_t *data_image_clone(const data_image_t *im, util_err_t *err);
/* New image with c channels: grey -> RGB repeats the value, RGB -> grey uses
 * the ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B, rounded). */
data_image_t *data_image_convert(const data_image_t *im, int c, util_err_t *err);

/* Largest image side and pixel count accepted anywhere (decode, create).
 * Checked against the file's header BEFORE anything is allocated. */
#define DATA_MAX_SIDE 32768
#define DATA_MAX_PIXELS ((size_t)100000000) /* 100 megapixels */

/* ------------------------------------------------------------------ codec */

/* Formats, recognised by their first bytes (never by the file name):
 *   JPEG  libjpeg-turbo (TurboJPEG): greyscale, YCbCr/RGB, CMYK and YCCK
 *   PNG   libpng: every colour type and bit depth (16 bits scaled to 8)
 *   WebP  libwebp: lossy, lossless, alpha; animated: the first frame
 *   GIF   giflib: the first frame (later frames are never read)
 *   TIFF  libtiff (TIFFRGBAImage): 1..16 bits, strips or tiles, grey,
 *         palette, RGB, CMYK, YCbCr; the first page
 *   BMP   own reader: BITMAPCOREHEADER/INFOHEADER/V4/V5, 1/4/8-bit palette,
 *         24-bit, 32-bit (BI_RGB, or BI_BITFIELDS with byte masks and alpha),
 *         bottom-up and top-down; RLE is refused (UTIL_ERR_UNSUPPORTED)
 *   HEIF  libheif (HEVC through libde265, AVIF through dav1d/libaom): the
 *         primary image
 *
 * CMYK and YCCK JPEGs are read as Adobe writes them (inverted: stored value
 * v = 255 * (1 - ink)), and converted with the naive formula
 * R = 255 (1 - C)(1 - K), i.e. R = v_C * v_K / 255 (likewise G from M, B from
 * Y), rounded as PIL rounds it; no ICC profile is applied.
 *
 * Alpha (PNG, WebP, GIF transparency, TIFF, BMP, HEIF) is composited on
 * white, DATA_ALPHA_BACKGROUND, in 8-bit sRGB values (as a browser draws a
 * product photo on a white page): out = (a * c + (255 - a) * 255 + 127) / 255.
 *
 * Orientation: the EXIF orientation tag (JPEG APP1, TIFF's own tag, WebP's
 * EXIF chunk, PNG's eXIf chunk; values 1..8, e.g. 6 = the stored picture is shown rotated 90
 * degrees clockwise) is applied by data_decode before anything else sees
 * the pixels, so training, extraction, the server and thumbnails all get the
 * upright picture. HEIF's rotation and mirror boxes are applied by libheif.
 * raw_orientation keeps the stored orientation. */
#define DATA_ALPHA_BACKGROUND 255

typedef struct data_decode_opts {
    /* 3: RGB (grey images expanded), 1: grey (colour converted to luma),
     * 0: as stored (1 for greyscale files, 3 otherwise). */
    int channels;
    /* When > 0, JPEGs are decoded with the smallest of TurboJPEG's DCT scaling
     * factors (1/8, 1/4, 3/8, ... 1) that keeps the shorter side >= this:
     * a 4000x3000 photo for a 256 target decodes at 3/8 as 1500x1125, several
     * times faster than at full size. 0: full size. Ignored for other formats. */
    int min_short_side;
    /* Pixel-count limit of the file's stated size (0: DATA_MAX_PIXELS). */
    size_t max_pixels;
    /* Non-zero: the pixels as stored, the orientation tag ignored (HEIF: its
     * rotation/mirror boxes too). 0: upright (the default). */
    int raw_orientation;
} data_decode_opts_t;

/* The format of an image held in memory, from its first bytes: "JPEG",
 * "PNG", "WebP", "GIF", "TIFF", "BMP", "HEIF", or NULL when it is none of
 * them. 32 bytes are enough to tell. */
const char *data_image_format(const void *buf, size_t len);

/* Decodes an image of any format above held in memory. `name` (a path, or
 * NULL) is put in error messages, with the format. opts NULL: defaults (as
 * stored, full size, upright). Libjpeg warnings (a truncated file, corrupt
 * entropy data) are errors: a damaged image is rejected, not half-grey. The
 * stated size is checked against the limits from the header, before the
 * pixels are allocated, for every format. Caller frees.
 * Error kinds: UTIL_ERR_INVALID (empty, not an image of these formats),
 * UTIL_ERR_CORRUPT (a file of a known format that does not decode: damaged,
 * truncated), UTIL_ERR_LIMIT (over the size limits: decompression bombs),
 * UTIL_ERR_UNSUPPORTED (a variant of a known format not read here, e.g. RLE
 * BMP, or a HEIF whose codec is missing). */
data_image_t *data_decode(const void *buf, size_t len, const char *name,
                          const data_decode_opts_t *opts, util_err_t *err);

/* Applies an EXIF orientation (1..8) to an image: a new image (1: a copy).
 * 2 mirror, 3 rotate 180, 4 flip, 5 transpose, 6 rotate 90 clockwise,
 * 7 transverse, 8 rotate 90 counter-clockwise (PIL's exif_transpose). */
data_image_t *data_image_orient(const data_image_t *im, int orientation, util_err_t *err);
/* Reads and decodes a file. Errors name the path. */
data_image_t *data_image_read(const char *path, const data_decode_opts_t *opts, util_err_t *err);

/* Encodes as baseline JPEG (quality 1..100, 4:2:0 for RGB, greyscale JPEG for
 * c == 1). *out is malloc'd (free with free()), *out_len its size. */
int data_encode_jpeg(const data_image_t *im, int quality, uint8_t **out, size_t *out_len,
                     util_err_t *err);
/* Encodes and writes a JPEG file atomically (util_write_file_atomic). */
int data_image_write_jpeg(const data_image_t *im, const char *path, int quality, util_err_t *err);
/* Writes a PNG (lossless; 1 or 3 channels) to path, atomically. */
int data_image_write_png(const data_image_t *im, const char *path, util_err_t *err);

/* util_read_file for image bytes (malloc'd, caller frees); an empty file or
 * one larger than max_bytes (0: 1 GiB) is an error naming the path. */
int data_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *out_len,
                   util_err_t *err);

/* --------------------------------------------------------- resize and crop */

/* Resamples to exactly w x h. Per axis: area averaging when shrinking (each
 * output pixel is the exact average of its footprint, so no aliasing),
 * bilinear interpolation (pixel centres aligned) when enlarging. */
data_image_t *data_resize(const data_image_t *im, int w, int h, util_err_t *err);

/* Scales so the shorter side is `side` (the longer side rounds to nearest)
 * and returns the centre side x side square of the scaled image (only that
 * square is computed). A square image of that size is copied unchanged. */
data_image_t *data_resize_center_square(const data_image_t *im, int side, util_err_t *err);

/* A copy with `pad` zero pixels added on every side. */
data_image_t *data_image_pad(const data_image_t *im, int pad, util_err_t *err);

/* ---------------------------------------------------------------- datasets */

/* A labelled collection of images behind one interface. Thread-safe for
 * concurrent data_dataset_load calls once opened. */
typedef struct data_dataset data_dataset_t;

/* IDX files (LeCun's MNIST format), gzip-compressed or plain (zlib reads
 * both). Images: magic 0x00000803 (n, h, w; grey) or 0x00000804 (n, h, w, 3;
 * RGB), unsigned bytes; labels: 0x00000801 (n), unsigned bytes. The headers
 * are validated (magic, type, dims, equal counts) and the data must be
 * exactly as long as the header says. Everything is read into memory at
 * open. names_path: optional file with one class name per line (NULL: the
 * classes are named "0", "1", ...). Class count: max(label + 1, names). */
data_dataset_t *data_dataset_open_idx(const char *images_path, const char *labels_path,
                                      const char *names_path, util_err_t *err);

/* Fashion-MNIST as Debian's dataset-fashion-mnist installs it: dir (NULL:
 * DATA_FASHION_MNIST_DIR) holding {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz;
 * split "train" (60,000) or "t10k" (10,000); with the ten class names. */
#define DATA_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
data_dataset_t *data_dataset_open_fashion_mnist(const char *dir, const char *split,
                                                util_err_t *err);

/* An image folder: root/<class>/<image>, the images picked by extension
 * (.jpg .jpeg .jpe .jfif .png .webp .gif .tif .tiff .bmp .dib .heic .heif
 * .hif .avif, case-insensitive) or else by content (data_image_format of
 * the first bytes); hidden files skipped. Without labels_path the classes
 * are the sub-folders sorted by name (strcmp), labels 0..n-1. With it, the
 * file lists one class folder per line (optionally followed by whitespace and
 * a display name); the line number is the label, and a sub-folder holding
 * images but missing from the file is an error. Items are ordered by label,
 * then by file name. Files are only listed at open; each load reads one. */
data_dataset_t *data_dataset_open_folder(const char *root, const char *labels_path,
                                         util_err_t *err);

/* A list file: one "path label" per line (the label is the last
 * whitespace-separated field, so paths may hold spaces; blank lines and
 * lines starting with '#' are skipped). Relative paths are relative to the
 * list file's folder. names_path as for IDX. */
data_dataset_t *data_dataset_open_list(const char *list_path, const char *names_path,
                                       util_err_t *err);

/* n images of w x h x c (HWC bytes, n*h*w*c) with labels in [0, num_classes);
 * both arrays are copied. class_names may be NULL. */
data_dataset_t *data_dataset_from_memory(int n, int w, int h, int c, const uint8_t *pixels,
                                         const int *labels, int num_classes,
                                         const char *const *class_names, util_err_t *err);

/* Items [start, start + count) of parent, renumbered from 0. Borrows parent,
 * which must outlive the subset. */
data_dataset_t *data_dataset_subset(const data_dataset_t *parent, size_t start, size_t count,
                                    util_err_t *err);

void data_dataset_free(data_dataset_t *ds); /* accepts NULL */

size_t data_dataset_count(const data_dataset_t *ds);
int data_dataset_num_classes(const data_dataset_t *ds);
/* NULL when label is out of range. Owned by the dataset. */
const char *data_dataset_class_name(const data_dataset_t *ds, int label);
/* Channels the items have as stored (1 or 3), or 0 when it varies by file. */
int data_dataset_channels(const data_dataset_t *ds);
/* A name for item i, for messages: its path, or "images.gz[i]". Writes at
 * most size bytes (NUL included) into buf and returns buf. */
const char *data_dataset_item_name(const data_dataset_t *ds, size_t i, char *buf, size_t size);
/* Label of item i without loading it (-1 when i is out of range). */
int data_dataset_label(const data_dataset_t *ds, size_t i);

/* Loads item i as an 8-bit image (caller frees) and its label. opts as for
 * data_decode (NULL: defaults). Errors name the file. */
data_image_t *data_dataset_load(const data_dataset_t *ds, size_t i, const data_decode_opts_t *opts,
                                int *label, util_err_t *err);
/* raw != 0: every load of ds keeps the files' stored orientation
 * (data_decode_opts_t.raw_orientation), whatever opts say; for the CLI's
 * --raw-orientation. Set before loading starts (not thread-safe). */
void data_dataset_set_raw_orientation(data_dataset_t *ds, int raw);

/* ------------------------------------------------------ stored geometry */

/* How a loaded item becomes the "stored" image that crops are taken from
 * (the paper: shorter side to 256, centre 256x256). Stats and the loader
 * use the same settings so the mean image lines up with the crops. */
typedef struct data_prep {
    int channels;   /* 1 or 3; 0: as the dataset stores them */
    int short_side; /* > 0: shorter side to this, centre square; 0: keep size */
    int pad;        /* zero pixels added on every side afterwards (>= 0) */
} data_prep_t;

/* Applies prep to an image (a new image; the input is not changed). */
data_image_t *data_prep_image(const data_image_t *im, const data_prep_t *prep, util_err_t *err);
/* data_dataset_load with DCT-scaled decoding for short_side, then prep. */
data_image_t *data_prep_load(const data_dataset_t *ds, size_t i, const data_prep_t *prep,
                             int *label, util_err_t *err);
/* The decoding a prep implies: its channels, and JPEGs DCT-scaled down to
 * (never below) short_side; max_pixels as data_decode's. data_prep_load and
 * data_prep_decode both use it, so one file becomes the same stored image
 * read from a dataset and sent in a request. */
data_decode_opts_t data_prep_decode_opts(const data_prep_t *prep, size_t max_pixels);
/* data_decode of an image in memory with those options, then prep (a new
 * image; caller frees). `name` as for data_decode. */
data_image_t *data_prep_decode(const void *buf, size_t len, const char *name,
                               const data_prep_t *prep, size_t max_pixels, util_err_t *err);

/* ------------------------------------------------------------- statistics */

/* Training-set statistics for normalisation and PCA lighting. The mean image
 * is in 0..255 pixel units; the covariance, eigenvectors and eigenvalues are
 * of pixel values scaled to [0, 1], as fb.resnet.torch and MXNet compute
 * them: the paper gives no unit, and on a 0..255 scale alpha*lambda would
 * shift pixels by hundreds of levels. */
typedef struct data_stats {
    int c, h, w;           /* the stored geometry the mean image belongs to */
    float *mean;           /* c*h*w, CHW, 0..255; owned */
    float channel_mean[3]; /* 0..255, first c used */
    /* eigvec[k*c + i]: channel k of the i-th eigenvector (columns are the
     * vectors, as in the paper's [p1 p2 p3]); eigval descending. c x c. */
    float eigvec[9];
    float eigval[3];
    float cov[9];  /* the c x c covariance (of [0,1] values) */
    size_t count;  /* images that went into the statistics */
    size_t failed; /* images that could not be loaded (skipped) */
} data_stats_t;

/* Zeroed statistics for a c x h x w geometry (to be filled, e.g. from a
 * model file). */
data_stats_t *data_stats_create(int c, int h, int w, util_err_t *err);
void data_stats_free(data_stats_t *st); /* accepts NULL */

/* Computes mean image, channel means and the RGB (or grey) covariance with
 * its eigen decomposition over the dataset's items after prep. Every stored
 * image must have the same size. Uses `threads` worker threads (<= 0: 1);
 * the sums are exact integers, so the result does not depend on the thread
 * count. max_items > 0 uses an evenly spaced subset of that many items.
 * Items that fail to load are skipped (counted in ->failed; the first
 * message goes to first_error when that is not NULL); it fails only when no
 * item loads. */
data_stats_t *data_stats_compute(const data_dataset_t *ds, const data_prep_t *prep, int threads,
                                 size_t max_items, util_err_t *first_error, util_err_t *err);

/* Symmetric c x c eigen decomposition (Jacobi), c in 1..3: vals descending,
 * vecs[k*c + i] component k of vector i (unit length, largest component
 * positive). */
void data_eigen_sym(int c, const double *a, double *vals, double *vecs);

/* ----------------------------------------------------------- augmentation */

typedef enum data_mean_mode {
    DATA_MEAN_NONE = 0,
    DATA_MEAN_PIXEL = 1,   /* subtract the mean image (the paper) */
    DATA_MEAN_CHANNEL = 2, /* subtract the per-channel mean */
} data_mean_mode_t;

/* Turning an 8-bit stored image into network input:
 *   out = (pixel + lighting - mean) * scale
 * with pixel, lighting and mean in 0..255 units. */
typedef struct data_norm {
    data_mean_mode_t mean_mode;
    const data_stats_t *stats; /* borrowed; needed for mean and lighting */
    float scale;               /* 0 means 1 (the paper feeds 0..255 minus mean) */
} data_norm_t;

/* PCA lighting offset per channel (0..255 units), given alphas:
 *   offset = 255 * sum_i p_i * alpha_i * lambda_i. */
void data_lighting_offset(const data_stats_t *st, const float *alpha, float *offset);
/* Draws alpha_i ~ N(0, std) (c of them, in order) and returns the offset. */
void data_lighting_draw(const data_stats_t *st, float std, util_rng_t *rng, float *offset);

/* One crop: the size x size window at (x, y) of the stored image, mirrored
 * horizontally when mirror != 0, to CHW floats (im->c * size * size) with
 * norm applied. The mean image (DATA_MEAN_PIXEL) must have the stored
 * image's geometry; its window at (x, y) is subtracted, mirrored with the
 * crop. lighting: c offsets or NULL. */
int data_crop_to_float(const data_image_t *im, int x, int y, int size, int mirror,
                       const data_norm_t *norm, const float *lighting, float *out, util_err_t *err);

/* Centre crop (offset floor((W - size) / 2), floor((H - size) / 2)). */
int data_center_crop(const data_image_t *im, int size, const data_norm_t *norm, float *out,
                     util_err_t *err);

/* Ten crops into out (10 * c * size * size): 0 top-left, 1 top-right,
 * 2 bottom-left, 3 bottom-right, 4 centre, then 5..9 the horizontal mirrors
 * of 0..4 in the same order. */
#define DATA_TEN_CROPS 10
int data_ten_crop(const data_image_t *im, int size, const data_norm_t *norm, float *out,
                  util_err_t *err);

/* ------------------------------------------------------------------ loader */

typedef enum data_crop_mode {
    DATA_CROP_RANDOM = 0, /* training: random crop (+ mirror, lighting) */
    DATA_CROP_CENTER = 1, /* one centre crop per item */
    DATA_CROP_TEN = 2,    /* ten crops per item, consecutive in the batch */
} data_crop_mode_t;

typedef struct data_loader_opts {
    int batch_size;   /* items per batch (> 0) */
    data_prep_t prep; /* stored geometry */
    int crop;         /* crop side (<= stored side) */
    data_crop_mode_t mode;
    int mirror;         /* DATA_CROP_RANDOM: mirror with probability 1/2 */
    float lighting_std; /* DATA_CROP_RANDOM: PCA lighting alpha std (0: off; paper 0.1) */
    data_norm_t norm;   /* mean subtraction and scale; stats needed for lighting */
    int shuffle;        /* permute the items every epoch */
    uint64_t seed;
    int threads;   /* worker threads (>= 1) */
    int prefetch;  /* batches decoded ahead (0: 2) */
    int drop_last; /* drop a final batch smaller than batch_size */
} data_loader_opts_t;

/* batch 128, crop 224 of 256 stored, random crops with mirror and lighting
 * 0.1, no mean (set norm.stats and mean_mode), shuffle, seed 0, 2 threads. */
data_loader_opts_t data_loader_defaults(void);

/* Determinism: the order of epoch e is a permutation drawn from (seed, e)
 * (identity when shuffle is off), and item i's crop, mirror and lighting in
 * epoch e come from an RNG seeded with (seed, e, i). Batch b of epoch e holds
 * the items at positions [b * batch_size, (b + 1) * batch_size) of that
 * order. So batches are a pure function of (seed, epoch, batch index):
 * independent of thread count and timing, and resuming at a batch gives what
 * a straight run gives there.
 *
 * Items that fail to load are left out of their batch (n < batch_size; n
 * may even be 0) and reported: see data_loader_skipped. */
typedef struct data_loader data_loader_t;

/* Borrows ds (and opts->norm.stats), which must outlive the loader. Starts
 * the worker threads; they wait for data_loader_start_epoch. */
data_loader_t *data_loader_create(const data_dataset_t *ds, const data_loader_opts_t *opts,
                                  util_err_t *err);
void data_loader_free(data_loader_t *ld); /* accepts NULL; stops the workers */

/* Batches in one epoch (the last one partial unless drop_last). */
size_t data_loader_num_batches(const data_loader_t *ld);
/* Floats per batch of x: batch_size * crops_per_item * c * crop * crop. */
size_t data_loader_batch_floats(const data_loader_t *ld);
/* Channels of the output (c of x's NCHW). */
int data_loader_channels(const data_loader_t *ld);
/* 10 for DATA_CROP_TEN, else 1. */
int data_loader_crops_per_item(const data_loader_t *ld);

/* Begins (or restarts) epoch `epoch` at batch start_batch (0 for a whole
 * epoch), abandoning whatever was in flight. */
int data_loader_start_epoch(data_loader_t *ld, int epoch, size_t start_batch, util_err_t *err);

/* Waits for the next batch in order and copies it out: x receives n *
 * crops_per_item crops (NCHW floats, capacity data_loader_batch_floats),
 * labels n ints (one per item). Returns 1 with a batch, 0 at the end of the
 * epoch, -1 on error (no epoch started). *batch_index (may be NULL) gets the
 * batch's index within the epoch. */
int data_loader_next(data_loader_t *ld, float *x, int *labels, int *n, size_t *batch_index,
                     util_err_t *err);
/* As data_loader_next without the copy: *x and *labels point into the
 * loader and stay valid until the next call to next/next_view/start_epoch/free. */
int data_loader_next_view(data_loader_t *ld, const float **x, const int **labels, int *n,
                          size_t *batch_index, util_err_t *err);

/* Skipped items so far (all epochs), and the message of the last one
 * (naming the file); both as of the batches already returned. */
size_t data_loader_skipped(const data_loader_t *ld);
const char *data_loader_last_error(const data_loader_t *ld); /* "" when none */

/* Optional: called from the thread calling next/next_view, once per skipped
 * item of the batch being returned, in item order. */
typedef void (*data_skip_fn)(void *ctx, size_t item, const char *message);
void data_loader_on_skip(data_loader_t *ld, data_skip_fn fn, void *ctx);

#endif
