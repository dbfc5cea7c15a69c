/* util's file I/O: the bounded read of a whole file, the atomic write (commit,
 * abort, pwrite, resize, failures), the order of its fsyncs and rename, and
 * kill -9 at many points of a large atomic write. */
#include "../test.h"
#include "crash_fixture.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static void put_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, len, f) == len);
    if (f) fclose(f);
}

/* Bytes that differ at every position and hold NULs. */
static uint8_t *pattern(size_t len, unsigned seed) {
    uint8_t *b = malloc(len ? len : 1);
    util_rng_t r;
    util_rng_seed(&r, seed);
    for (size_t i = 0; i < len; i++)
        b[i] = (uint8_t)util_rng_u64(&r);
    return b;
}

/* Entries of the test folder whose name holds ".tmp". */
static int temps_in_dir(void) {
    int n = 0;
    DIR *d = opendir(crash_dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) n++;
    if (d) closedir(d);
    return n;
}

/* ------------------------------------------------------------- reading */

static void test_read_file_returns_the_exact_bytes_and_a_nul_after_them(void) {
    size_t n = 300000; /* more than one read, embedded NULs */
    uint8_t *want = pattern(n, 1);
    const char *p = crash_path_in("exact.bin");
    put_file(p, want, n);
    util_err_t err;
    size_t len = 1;
    uint8_t *got = util_read_file(p, n, &len, &err);
    CHECK_MSG(got != NULL, "%s", err.msg);
    CHECK(len == n);
    CHECK(got && memcmp(got, want, n) == 0);
    CHECK(got && got[n] == 0);
    free(got);
    free(want);
}

static void test_read_file_refuses_a_file_over_the_limit_naming_path_and_limit(void) {
    uint8_t *b = pattern(1001, 2);
    const char *p = crash_path_in("big.bin");
    put_file(p, b, 1001);
    util_err_t err = {0};
    size_t len = 7;
    CHECK(util_read_file(p, 1000, &len, &err) == NULL);
    CHECK(len == 0);
    CHECK_MSG(strstr(err.msg, p) && strstr(err.msg, "1001") && strstr(err.msg, "limit of 1000"),
              "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_LIMIT);
    /* Exactly at the limit is fine. */
    uint8_t *got = util_read_file(p, 1001, &len, &err);
    CHECK(got && len == 1001 && memcmp(got, b, 1001) == 0);
    free(got);
    free(b);
}

static void test_read_file_reads_an_empty_file_as_zero_bytes(void) {
    const char *p = crash_path_in("empty.bin");
    put_file(p, "", 0);
    size_t len = 5;
    uint8_t *got = util_read_file(p, 10, &len, NULL);
    CHECK(got != NULL && len == 0 && got[0] == 0);
    free(got);
}

static void test_read_file_names_a_missing_file(void) {
    const char *p = crash_path_in("no-such-file");
    util_err_t err = {0};
    size_t len;
    CHECK(util_read_file(p, 10, &len, &err) == NULL);
    CHECK_MSG(strstr(err.msg, p) && strstr(err.msg, strerror(ENOENT)), "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_NOT_FOUND);
}

static void test_read_file_refuses_a_folder(void) {
    util_err_t err = {0};
    size_t len;
    crash_path_in("x");
    CHECK(util_read_file(crash_dir, 10, &len, &err) == NULL);
    CHECK_MSG(strstr(err.msg, crash_dir) && strstr(err.msg, "folder"), "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_INVALID);
}

static void test_read_file_holds_an_endless_device_to_the_limit(void) {
    /* /dev/zero has no size to check up front: the read loop must stop. */
    util_err_t err = {0};
    size_t len;
    CHECK(util_read_file("/dev/zero", 100000, &len, &err) == NULL);
    CHECK_MSG(strstr(err.msg, "/dev/zero") && strstr(err.msg, "limit of 100000"), "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_LIMIT);
}

static void test_open_regular_refuses_a_device_and_gives_the_size_of_a_file(void) {
    util_err_t err = {0};
    int fd = -1;
    size_t len = 0;
    CHECK(util_open_regular("/dev/null", 10, &fd, &len, &err) == -1);
    CHECK_MSG(strstr(err.msg, "not a regular file"), "%s", err.msg);
    const char *p = crash_path_in("regular.bin");
    put_file(p, "abcdef", 6);
    CHECK(util_open_regular(p, 6, &fd, &len, &err) == 0 && len == 6);
    if (fd >= 0) close(fd);
    CHECK(util_open_regular(p, 5, &fd, &len, &err) == -1);
}

/* ------------------------------------------------------------- writing */

static void test_write_file_atomic_replaces_the_file_and_leaves_no_temp(void) {
    const char *p = crash_path_in("replace.bin");
    put_file(p, "old contents", 12);
    size_t n = 3 << 20; /* past the stream's 1 MiB buffer */
    uint8_t *b = pattern(n, 3);
    util_err_t err;
    CHECK_MSG(util_write_file_atomic(p, b, n, &err) == 0, "%s", err.msg);
    CHECK(crash_file_equals(p, b, n));
    CHECK(temps_in_dir() == 0);
    /* And a new file where there was none. */
    const char *q = crash_path_in("fresh.bin");
    unlink(q);
    CHECK_MSG(util_write_file_atomic(q, "x", 1, &err) == 0, "%s", err.msg);
    CHECK(crash_file_equals(q, "x", 1));
    free(b);
}

static void test_atomic_file_mode_is_0666_less_the_umask(void) {
    const char *p = crash_path_in("mode.bin");
    unlink(p);
    mode_t old = umask(027);
    CHECK(util_write_file_atomic(p, "m", 1, NULL) == 0);
    umask(old);
    struct stat st;
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0640);
}

static void test_abort_leaves_the_old_file_and_no_temp(void) {
    const char *p = crash_path_in("abort.bin");
    put_file(p, "old contents", 12);
    util_err_t err;
    util_atomic_file_t *a = util_atomic_open(p, &err);
    CHECK_MSG(a != NULL, "%s", err.msg);
    uint8_t *b = pattern(2 << 20, 4);
    CHECK(a && util_atomic_write(a, b, 2 << 20, &err) == 0);
    CHECK(temps_in_dir() == 1);
    util_atomic_abort(a);
    util_atomic_abort(NULL);
    CHECK(crash_file_equals(p, "old contents", 12));
    CHECK(temps_in_dir() == 0);
    free(b);
}

static void test_pwrite_and_resize_shape_the_file_at_absolute_offsets(void) {
    const char *p = crash_path_in("shape.bin");
    util_err_t err;
    util_atomic_file_t *a = util_atomic_open(p, &err);
    CHECK_MSG(a != NULL, "%s", err.msg);
    if (!a) return;
    CHECK(util_atomic_write(a, "0123456789", 10, &err) == 0);
    CHECK(util_atomic_pwrite(a, 2, "ab", 2, &err) == 0); /* over buffered bytes */
    CHECK(util_atomic_write(a, "XY", 2, &err) == 0);     /* the stream goes on at 10 */
    CHECK(util_atomic_resize(a, 16, &err) == 0);         /* zeros 12..15 */
    CHECK(util_atomic_pwrite(a, 14, "Z", 1, &err) == 0);
    fprintf(util_atomic_stream(a), "!"); /* at 12, via the stream */
    CHECK(strcmp(util_atomic_path(a), p) == 0);
    CHECK_MSG(util_atomic_commit(a, &err) == 0, "%s", err.msg);
    CHECK(crash_file_equals(p, "01ab456789XY!\0Z\0", 16));
}

static void test_open_in_a_missing_folder_names_the_path(void) {
    const char *p = crash_path_in("no-such-folder/f.bin");
    util_err_t err = {0};
    CHECK(util_atomic_open(p, &err) == NULL);
    CHECK_MSG(strstr(err.msg, p) && strstr(err.msg, "temporary"), "%s", err.msg);
    CHECK(util_err_kind(&err) == UTIL_ERR_NOT_FOUND);
    CHECK(util_write_file_atomic(p, "x", 1, &err) == -1);
}

/* A write that fails (here: over RLIMIT_FSIZE) fails the later writes and the
 * commit, which removes the temporary file and leaves the old one. Runs in a
 * child so the limit stays there. */
static void test_a_failed_write_fails_the_commit_and_keeps_the_old_file(void) {
    const char *p = crash_path_in("efbig.bin");
    put_file(p, "old contents", 12);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {1 << 16, 1 << 16};
        setrlimit(RLIMIT_FSIZE, &rl);
        uint8_t *b = pattern(3 << 20, 5);
        util_err_t err = {0};
        util_atomic_file_t *a = util_atomic_open(p, &err);
        int code = a ? 0 : 10;
        /* The 1 MiB buffer may take the first write; a later one fails. */
        int failed = 0;
        for (int i = 0; a && i < 3; i++)
            failed |= util_atomic_write(a, b + i * (1 << 20), 1 << 20, &err) != 0;
        if (a && !failed) code = 11;
        if (a && util_atomic_write(a, "x", 1, NULL) == 0) code = 12;
        if (a && util_atomic_commit(a, &err) == 0) code = 13;
        if (a && !strstr(err.msg, p)) code = 14;
        if (a && util_err_kind(&err) != UTIL_ERR_LIMIT) code = 15;
        _exit(code);
    }
    int status = -1;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child exit %d",
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    CHECK(crash_file_equals(p, "old contents", 12));
    CHECK(temps_in_dir() == 0);
}

/* The durability order, seen by standing in for fsync and rename: commit
 * must fsync the data before the rename (else a power cut can leave a
 * renamed but empty file) and the folder after it (else the rename itself
 * can be lost). Kill -9 cannot see this order; these stand-ins can. */
static int recording;
static char calls[16];
static int n_calls;

int fsync(int fd) {
    struct stat st;
    if (recording && n_calls < (int)sizeof calls - 1 && fstat(fd, &st) == 0)
        calls[n_calls++] = S_ISDIR(st.st_mode) ? 'D' : 'F';
    return fdatasync(fd);
}

int rename(const char *from, const char *to) {
    if (recording && n_calls < (int)sizeof calls - 1) calls[n_calls++] = 'R';
    return renameat(AT_FDCWD, from, AT_FDCWD, to);
}

static void test_commit_syncs_the_data_then_renames_then_syncs_the_folder(void) {
    const char *p = crash_path_in("order.bin");
    memset(calls, 0, sizeof calls);
    n_calls = 0;
    recording = 1;
    int rc = util_write_file_atomic(p, "ordered", 7, NULL);
    recording = 0;
    CHECK(rc == 0);
    CHECK_MSG(strcmp(calls, "FRD") == 0,
              "calls were \"%s\" (F: fsync of the file, R: rename, "
              "D: fsync of the folder)",
              calls);
    CHECK(crash_file_equals(p, "ordered", 7));
}

/* ------------------------------------------------------------- kill -9 */

typedef struct big_write {
    const char *path;
    const uint8_t *data;
    size_t len;
} big_write_t;

/* Streams the new file in 64 KiB pieces, as the writers of large files do. */
static int write_big(void *arg) {
    big_write_t *w = arg;
    util_atomic_file_t *a = util_atomic_open(w->path, NULL);
    if (!a) return -1;
    for (size_t at = 0; at < w->len; at += 65536) {
        size_t k = w->len - at < 65536 ? w->len - at : 65536;
        if (util_atomic_write(a, w->data + at, k, NULL)) {
            util_atomic_abort(a);
            return -1;
        }
    }
    return util_atomic_commit(a, NULL);
}

static void test_kill_during_an_atomic_write_leaves_the_old_file_or_the_new(void) {
    const size_t n_old = 5 << 20, n_new = 8 << 20;
    uint8_t *old = pattern(n_old, 6), *new = pattern(n_new, 7);
    const char *p = crash_path_in("killed.bin");
    big_write_t w = {p, new, n_new};
    int saw_old = 0, saw_new = 0, killed = 0, torn = 0;
    util_rng_t r;
    util_rng_seed(&r, 8);
    for (int it = 0; it < 40; it++) {
        put_file(p, old, n_old);
        /* Kill once the temporary file holds 0..8 MiB, a little later still
         * for some (into the flush, fsync and rename). The last runs finish. */
        long long at = it < 36 ? (long long)(util_rng_below(&r, 9)) << 20 : -1;
        long delay = it % 3 == 2 ? (long)util_rng_below(&r, 20000) : 0;
        crash_outcome_t o = crash_run(write_big, &w, p, at, delay);
        CHECK(o != CRASH_FAILED);
        killed += o == CRASH_KILLED;
        int is_old = crash_file_equals(p, old, n_old), is_new = crash_file_equals(p, new, n_new);
        saw_old += is_old;
        saw_new += is_new;
        if (!is_old && !is_new) {
            torn++;
            fprintf(stderr, "  run %d (kill at %lld bytes + %ld us): the target is torn\n", it, at,
                    delay);
        }
        if (o == CRASH_FINISHED) CHECK(is_new);
        crash_remove_temps(p);
    }
    CHECK(torn == 0);
    /* The test saw both sides: kills mid-write and completed writes. */
    CHECK_MSG(saw_old >= 10 && saw_new >= 4 && killed >= 24, "old %d, new %d, killed %d", saw_old,
              saw_new, killed);
    free(old);
    free(new);
}

static void test_kill_before_the_first_write_leaves_no_file_where_there_was_none(void) {
    uint8_t *new = pattern(4 << 20, 9);
    const char *p = crash_path_in("killed-new.bin");
    big_write_t w = {p, new, 4 << 20};
    for (int it = 0; it < 6; it++) {
        unlink(p);
        crash_outcome_t o = crash_run(write_big, &w, p, (long long)it << 19, 0);
        struct stat st;
        int absent = stat(p, &st) != 0;
        CHECK(absent || crash_file_equals(p, new, 4 << 20));
        if (o == CRASH_KILLED && it < 4) CHECK(absent);
        crash_remove_temps(p);
    }
    free(new);
}

TEST_MAIN(T(test_read_file_returns_the_exact_bytes_and_a_nul_after_them),
          T(test_read_file_refuses_a_file_over_the_limit_naming_path_and_limit),
          T(test_read_file_reads_an_empty_file_as_zero_bytes),
          T(test_read_file_names_a_missing_file), T(test_read_file_refuses_a_folder),
          T(test_read_file_holds_an_endless_device_to_the_limit),
          T(test_open_regular_refuses_a_device_and_gives_the_size_of_a_file),
          T(test_write_file_atomic_replaces_the_file_and_leaves_no_temp),
          T(test_atomic_file_mode_is_0666_less_the_umask),
          T(test_abort_leaves_the_old_file_and_no_temp),
          T(test_pwrite_and_resize_shape_the_file_at_absolute_offsets),
          T(test_open_in_a_missing_folder_names_the_path),
          T(test_a_failed_write_fails_the_commit_and_keeps_the_old_file),
          T(test_commit_syncs_the_data_then_renames_then_syncs_the_folder),
          T(test_kill_during_an_atomic_write_leaves_the_old_file_or_the_new),
          T(test_kill_before_the_first_write_leaves_no_file_where_there_was_none))
