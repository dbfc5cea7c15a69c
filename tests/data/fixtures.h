/* Test fixtures for data/: temporary folders, files, synthetic images, and
 * the bad images of every kind, generated in the test (no binaries in git). */
#ifndef IMGRET_TEST_DATA_FIXTURES_H
#define IMGRET_TEST_DATA_FIXTURES_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/data.h"

/* A fresh folder under $TMPDIR (or /tmp); returns a static-free malloc'd path. */
static inline char *fx_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    char *p = malloc(strlen(base) + 32);
    sprintf(p, "%s/imgret-data-XXXXXX", base);
    if (!mkdtemp(p)) {
        perror("mkdtemp");
        exit(2);
    }
    return p;
}

static inline void fx_rmtree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            char sub[4096];
            if (snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= (int)sizeof sub) continue;
            fx_rmtree(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static inline void fx_path(char *out, size_t size, const char *dir, const char *name) {
    if (snprintf(out, size, "%s/%s", dir, name) >= (int)size) {
        fprintf(stderr, "path too long: %s/%s\n", dir, name);
        exit(2);
    }
}

static inline void fx_mkdir(const char *dir, const char *name) {
    char p[4096];
    fx_path(p, sizeof p, dir, name);
    mkdir(p, 0755);
}

static inline void fx_write(const char *path, const void *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

/* A smooth image with structure in every channel: gradients plus a disc. */
static inline data_image_t *fx_pattern(int w, int h, int c, int seed) {
    data_image_t *im = data_image_create(w, h, c, NULL);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++) {
                int v = (x * 255 / (w > 1 ? w - 1 : 1) * (ch + 1) + y * 255 / (h > 1 ? h - 1 : 1) +
                         seed * 37) /
                        (ch + 2);
                int dx = x - w / 2, dy = y - h / 2;
                if (dx * dx + dy * dy < (w * w + h * h) / 32) v = 255 - v / 2;
                im->pixels[((size_t)y * w + x) * c + ch] = (uint8_t)(v & 255);
            }
    return im;
}

/* Writes a valid JPEG of a pattern; returns 0. */
static inline int fx_write_jpeg(const char *path, int w, int h, int c, int seed) {
    data_image_t *im = fx_pattern(w, h, c, seed);
    int rc = data_image_write_jpeg(im, path, 90, NULL);
    data_image_free(im);
    return rc;
}

static inline double fx_mean_abs_diff(const data_image_t *a, const data_image_t *b) {
    size_t n = (size_t)a->w * a->h * a->c;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += abs((int)a->pixels[i] - (int)b->pixels[i]);
    return s / (double)n;
}

/* Images a loader meets in real folders and must skip with a message
 * (corrupt, cut short, empty, not an image, too large to decode), each
 * written to dir/<name>. */
enum {
    FX_BAD_CORRUPT,
    FX_BAD_TRUNCATED,
    FX_BAD_EMPTY,
    FX_BAD_NOT_JPEG,
    FX_BAD_HUGE_JPEG,
    FX_BAD_HUGE_PNG,
    FX_BAD_CORRUPT_SCAN,
    FX_BAD_KINDS
};
static const char *const fx_bad_names[FX_BAD_KINDS] = {
    "corrupt.jpg",    "truncated.jpg",   "empty.jpg",       "not-a-jpeg.jpg",
    "huge-65000.jpg", "huge-100000.png", "corrupt-scan.jpg"};

static inline void fx_write_bad(const char *dir, int kind) {
    char path[4096];
    fx_path(path, sizeof path, dir, fx_bad_names[kind]);
    data_image_t *im = fx_pattern(64, 48, 3, 1);
    uint8_t *jpg;
    size_t len;
    data_encode_jpeg(im, 90, &jpg, &len, NULL);
    data_image_free(im);
    switch (kind) {
    case FX_BAD_CORRUPT: {
        /* Garbage over the tables after the first marker: the signature is
         * intact but marker lengths and tables are wrong. */
        for (size_t i = 24; i < 300 && i < len; i++)
            jpg[i] = (uint8_t)(0x5a ^ (i * 7));
        fx_write(path, jpg, len);
        break;
    }
    case FX_BAD_TRUNCATED:
        fx_write(path, jpg, len / 2);
        break;
    case FX_BAD_CORRUPT_SCAN: {
        /* Valid headers, garbage entropy-coded data (EOI kept). */
        size_t sos = 0;
        for (size_t i = 2; i + 1 < len && !sos; i++)
            if (jpg[i] == 0xff && jpg[i + 1] == 0xda) sos = i;
        for (size_t i = sos + 20; i + 2 < len; i++)
            jpg[i] = (uint8_t)((i * 131) ^ 0x3c);
        fx_write(path, jpg, len);
        break;
    }
    case FX_BAD_EMPTY:
        fx_write(path, "", 0);
        break;
    case FX_BAD_NOT_JPEG: {
        static const char text[] = "this is a text file, not an image\n";
        fx_write(path, text, sizeof text - 1);
        break;
    }
    case FX_BAD_HUGE_JPEG: {
        /* Patch the SOF0 frame header to claim 65000x65000 (libjpeg itself
         * refuses sides over 65500; a JPEG cannot state 100000). */
        for (size_t i = 2; i + 8 < len; i++)
            if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) {
                jpg[i + 5] = jpg[i + 7] = 0xfd;
                jpg[i + 6] = jpg[i + 8] = 0xe8;
                break;
            }
        fx_write(path, jpg, len);
        break;
    }
    case FX_BAD_HUGE_PNG: {
        /* Signature, IHDR claiming 100000x100000 RGB, a small IDAT, IEND; valid CRCs. */
        uint8_t png[128];
        size_t n = 0;
        static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
        memcpy(png, sig, 8);
        n = 8;
        uint8_t ihdr[13] = {0, 0x01, 0x86, 0xa0, 0, 0x01, 0x86, 0xa0, 8, 2, 0, 0, 0};
        uint8_t raw[16] = {0}, idat[64];
        uLongf idat_len = sizeof idat;
        compress(idat, &idat_len, raw, sizeof raw);
        const struct {
            const char *type;
            const uint8_t *data;
            size_t len;
        } chunks[3] = {{"IHDR", ihdr, sizeof ihdr}, {"IDAT", idat, idat_len}, {"IEND", NULL, 0}};
        for (int k = 0; k < 3; k++) {
            size_t clen = chunks[k].len;
            png[n++] = (uint8_t)(clen >> 24);
            png[n++] = (uint8_t)(clen >> 16);
            png[n++] = (uint8_t)(clen >> 8);
            png[n++] = (uint8_t)clen;
            memcpy(png + n, chunks[k].type, 4);
            if (clen) memcpy(png + n + 4, chunks[k].data, clen);
            unsigned long crc = crc32(0L, png + n, (uInt)(4 + clen));
            n += 4 + clen;
            png[n++] = (uint8_t)(crc >> 24);
            png[n++] = (uint8_t)(crc >> 16);
            png[n++] = (uint8_t)(crc >> 8);
            png[n++] = (uint8_t)crc;
        }
        fx_write(path, png, n);
        break;
    }
    }
    free(jpg);
}

#endif
