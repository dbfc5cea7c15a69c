/* The code file (IMGRCODE): its bytes are the format ae-encode has always
 * written, it reads back, and a damaged file is refused with a reason. */
#include "../test.h"
#include "autoencoder/autoencoder.h"

#include <stdlib.h>
#include <unistd.h>

static const char *tmp_path(const char *name) {
    static char p[256];
    snprintf(p, sizeof p, "/tmp/imgret_codes_%ld_%s", (long)getpid(), name);
    return p;
}

/* Two 12-bit codes, ids 1 and -2, labels 3 and -1, byte by byte. */
static const uint8_t golden[] =
    {
        'I',  'M', 'G', 'R', 'C',  'O',  'D',  'E',  1,    0,    0,    0,    12,   0,    0,
        0,    2,   0,   0,   0,    0,    0,    0,    0,    0x34, 0x0a, 0xff, 0x0f, /* codes */
        1,    0,   0,   0,   0,    0,    0,    0,    0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff,                                        /* ids */
        3,    0,   0,   0,   0xff, 0xff, 0xff, 0xff, /* labels */
};
static const uint8_t codes[] = {0x34, 0x0a, 0xff, 0x0f};
static const int64_t ids[] = {1, -2};
static const int32_t labels[] = {3, -1};

static void put(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(b, 1, n, f) == n);
    if (f) fclose(f);
}

static void test_code_file_bytes_are_the_imgrcode_format(void) {
    const char *p = tmp_path("golden.codes");
    util_err_t err;
    CHECK_MSG(ae_codes_save(p, 12, 2, codes, ids, labels, &err) == 0, "%s", err.msg);
    size_t len = 0;
    uint8_t *b = util_read_file(p, 1 << 20, &len, &err);
    CHECK(b && len == sizeof golden && memcmp(b, golden, sizeof golden) == 0);
    free(b);
    unlink(p);
}

static void test_code_file_reads_back_what_was_written(void) {
    const char *p = tmp_path("back.codes");
    put(p, golden, sizeof golden);
    util_err_t err;
    ae_codes_t *c = ae_codes_load(p, &err);
    CHECK_MSG(c != NULL, "%s", err.msg);
    CHECK(c && c->bits == 12 && c->count == 2);
    CHECK(c && memcmp(c->codes, codes, 4) == 0 && c->ids[0] == 1 && c->ids[1] == -2 &&
          c->labels[0] == 3 && c->labels[1] == -1);
    ae_codes_free(c);
    ae_codes_free(NULL);
    /* No codes at all is a valid file too. */
    CHECK(ae_codes_save(p, 64, 0, NULL, NULL, NULL, &err) == 0);
    c = ae_codes_load(p, &err);
    CHECK(c && c->count == 0 && c->bits == 64);
    ae_codes_free(c);
    unlink(p);
}

static void refused(const uint8_t *b, size_t n, const char *why) {
    const char *p = tmp_path("bad.codes");
    put(p, b, n);
    util_err_t err = {0};
    ae_codes_t *c = ae_codes_load(p, &err);
    CHECK_MSG(c == NULL && strstr(err.msg, p) && strstr(err.msg, why), "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_CORRUPT);
    ae_codes_free(c);
    unlink(p);
}

static void test_damaged_code_files_are_refused_with_the_reason(void) {
    uint8_t b[sizeof golden + 1];
    memcpy(b, golden, sizeof golden);
    refused(b, sizeof golden - 1, "need 52"); /* one byte short */
    b[sizeof golden] = 0;
    refused(b, sizeof golden + 1, "need 52"); /* one byte long */
    refused(b, 20, "not a code file");        /* header cut */
    b[0] = 'X';
    refused(b, sizeof golden, "not a code file");
    b[0] = 'I';
    b[12] = 0; /* 0 bits */
    refused(b, sizeof golden, "0-bit");
    b[12] = 12;
    b[23] = 0x40; /* a count far beyond the file */
    refused(b, sizeof golden, "more than its 52 bytes");
    util_err_t err = {0};
    CHECK(ae_codes_save(tmp_path("x"), 0, 0, NULL, NULL, NULL, &err) == -1);
    CHECK_MSG(strstr(err.msg, "0-bit"), "%s", err.msg);
}

TEST_MAIN(T(test_code_file_bytes_are_the_imgrcode_format),
          T(test_code_file_reads_back_what_was_written),
          T(test_damaged_code_files_are_refused_with_the_reason))
