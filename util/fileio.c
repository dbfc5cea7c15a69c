/* File I/O every module shares: the bounded read of a whole file and the
 * atomic write (temporary file in the target's folder, fsync, rename, fsync
 * of the folder), so a crash leaves the old file or the new one, never a
 * torn one. The only place in imgret that renames a file into place. */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The kind of a failed system call's error: a missing file or folder, no
 * room (disk, quota, file size limit, memory), else I/O. */
static util_err_kind_t kind_of_errno(int e) {
    switch (e) {
    case ENOENT:
    case ENOTDIR:
        return UTIL_ERR_NOT_FOUND;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
    case ENOMEM:
        return UTIL_ERR_LIMIT;
    default:
        return UTIL_ERR_IO;
    }
}

/* ------------------------------------------------------------ file reading */

/* Opens path read-only and checks what fstat can: not a folder, and (when
 * it is a regular file) at most max_bytes. *st receives fstat's answer. */
static int open_bounded(const char *path, size_t max_bytes, int *fd_out, struct stat *st,
                        util_err_t *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return util_fail_kind(err, kind_of_errno(e), "%s: cannot open: %s", path, strerror(e));
    }
    if (fstat(fd, st)) {
        int e = errno;
        close(fd);
        return util_fail_kind(err, UTIL_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st->st_mode)) {
        close(fd);
        return util_fail_kind(err, UTIL_ERR_INVALID, "%s: is a folder, not a file", path);
    }
    if (S_ISREG(st->st_mode) && (uint64_t)st->st_size > (uint64_t)max_bytes) {
        close(fd);
        return util_fail_kind(err, UTIL_ERR_LIMIT,
                              "%s: %lld bytes, more than the limit of %zu bytes", path,
                              (long long)st->st_size, max_bytes);
    }
    *fd_out = fd;
    return 0;
}

int util_open_regular(const char *path, size_t max_bytes, int *fd_out, size_t *len,
                      util_err_t *err) {
    struct stat st;
    int fd = -1;
    if (open_bounded(path, max_bytes, &fd, &st, err)) return -1;
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return util_fail_kind(err, UTIL_ERR_INVALID, "%s: not a regular file", path);
    }
    *fd_out = fd;
    *len = (size_t)st.st_size;
    return 0;
}

void *util_read_file(const char *path, size_t max_bytes, size_t *len, util_err_t *err) {
    *len = 0;
    struct stat st;
    int fd = -1;
    if (max_bytes > SIZE_MAX - 1) max_bytes = SIZE_MAX - 1;
    if (open_bounded(path, max_bytes, &fd, &st, err)) return NULL;
    /* A regular file's size is known; a pipe or device grows the buffer. The
     * loop reads past the expected size too, so a file that grew since the
     * fstat is still held to the limit. */
    size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 65536, got = 0;
    if (cap > max_bytes + 1) cap = max_bytes + 1;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        close(fd);
        util_fail_kind(err, UTIL_ERR_LIMIT, "%s: out of memory for %zu bytes", path, cap);
        return NULL;
    }
    for (;;) {
        if (got == cap) {
            if (cap > max_bytes) {
                free(buf);
                close(fd);
                util_fail_kind(err, UTIL_ERR_LIMIT, "%s: more than the limit of %zu bytes", path,
                               max_bytes);
                return NULL;
            }
            size_t ncap = cap > max_bytes / 2 ? max_bytes + 1 : 2 * cap;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                free(buf);
                close(fd);
                util_fail_kind(err, UTIL_ERR_LIMIT, "%s: out of memory for %zu bytes", path, ncap);
                return NULL;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            close(fd);
            util_fail_kind(err, UTIL_ERR_IO, "%s: read failed after %zu bytes: %s", path, got,
                           strerror(e));
            return NULL;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got == cap) { /* room for the terminating NUL */
        uint8_t *nb = realloc(buf, cap + 1);
        if (!nb) {
            free(buf);
            util_fail_kind(err, UTIL_ERR_LIMIT, "%s: out of memory for %zu bytes", path, cap + 1);
            return NULL;
        }
        buf = nb;
    }
    buf[got] = 0;
    *len = got;
    return buf;
}

/* ------------------------------------------------- positioned transfers */

/* pread or pwrite of all n bytes at off, retrying short transfers. */
static int transfer_all(int fd, uint8_t *p, size_t n, uint64_t off, int writing, const char *path,
                        util_err_t *err) {
    while (n) {
        errno = 0;
        ssize_t k = writing ? pwrite(fd, p, n, (off_t)off) : pread(fd, p, n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            int e = k < 0 ? errno : writing ? EIO : 0;
            if (!writing && k == 0)
                return util_fail_kind(err, UTIL_ERR_CORRUPT, "%s: read: file ends early", path);
            errno = e;
            return util_fail_kind(err, kind_of_errno(e), "%s: %s: %s", path,
                                  writing ? "write" : "read", strerror(e));
        }
        p += k;
        n -= (size_t)k;
        off += (uint64_t)k;
    }
    return 0;
}

int util_pread_all(int fd, void *buf, size_t n, uint64_t off, const char *path, util_err_t *err) {
    return transfer_all(fd, buf, n, off, 0, path, err);
}

int util_pwrite_all(int fd, const void *buf, size_t n, uint64_t off, const char *path,
                    util_err_t *err) {
    /* transfer_all only reads from p when writing. */
    return transfer_all(fd, (uint8_t *)(uintptr_t)buf, n, off, 1, path, err);
}

/* ----------------------------------------------------------- atomic write */

struct util_atomic_file {
    FILE *f;
    char *path, *tmp;
    int failed; /* a write failed; commit reports it */
    int saved_errno;
};

util_atomic_file_t *util_atomic_open(const char *path, util_err_t *err) {
    util_atomic_file_t *a = calloc(1, sizeof *a);
    size_t n = strlen(path);
    if (!a || !(a->path = malloc(n + 1)) || !(a->tmp = malloc(n + 16))) {
        if (a) free(a->path);
        free(a);
        util_fail_kind(err, UTIL_ERR_LIMIT, "%s: out of memory", path);
        return NULL;
    }
    memcpy(a->path, path, n + 1);
    /* Same folder as the target, so the rename cannot cross filesystems. */
    snprintf(a->tmp, n + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(a->tmp);
    if (fd < 0) {
        int e = errno;
        free(a->tmp);
        a->tmp = NULL;
        util_atomic_abort(a);
        util_fail_kind(err, kind_of_errno(e), "%s: cannot create a temporary file beside it: %s",
                       path, strerror(e));
        return NULL;
    }
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    /* mkstemp makes it 0600; the files imgret writes are ordinary documents. */
    mode_t um = umask(0);
    umask(um);
    fchmod(fd, 0666 & ~um); /* on failure it stays private to its owner: harmless */
    a->f = fdopen(fd, "w+b");
    if (!a->f) {
        int e = errno;
        close(fd);
        util_atomic_abort(a);
        util_fail_kind(err, UTIL_ERR_IO, "%s: fdopen: %s", path, strerror(e));
        return NULL;
    }
    setvbuf(a->f, NULL, _IOFBF, 1 << 20);
    return a;
}

static int remember(util_atomic_file_t *a, util_err_t *err) {
    if (!a->failed) {
        a->failed = 1;
        a->saved_errno = errno ? errno : EIO;
    }
    return util_fail_kind(err, kind_of_errno(a->saved_errno), "%s: write failed: %s", a->path,
                          strerror(a->saved_errno));
}

int util_atomic_write(util_atomic_file_t *a, const void *data, size_t len, util_err_t *err) {
    if (a->failed)
        return util_fail_kind(err, kind_of_errno(a->saved_errno), "%s: an earlier write failed",
                              a->path);
    if (len && fwrite(data, 1, len, a->f) != len) return remember(a, err);
    return 0;
}

int util_atomic_pwrite(util_atomic_file_t *a, uint64_t offset, const void *data, size_t len,
                       util_err_t *err) {
    if (a->failed)
        return util_fail_kind(err, kind_of_errno(a->saved_errno), "%s: an earlier write failed",
                              a->path);
    /* pwrite leaves the stream's position alone; the flush puts the buffered
     * bytes in the file first so they cannot later overwrite these. */
    if (fflush(a->f)) return remember(a, err);
    if (util_pwrite_all(fileno(a->f), data, len, offset, a->path, err)) {
        a->failed = 1;
        a->saved_errno = errno ? errno : EIO;
        return -1;
    }
    return 0;
}

int util_atomic_resize(util_atomic_file_t *a, uint64_t size, util_err_t *err) {
    if (a->failed)
        return util_fail_kind(err, kind_of_errno(a->saved_errno), "%s: an earlier write failed",
                              a->path);
    if (fflush(a->f) || ftruncate(fileno(a->f), (off_t)size)) return remember(a, err);
    return 0;
}

FILE *util_atomic_stream(util_atomic_file_t *a) {
    return a->f;
}

const char *util_atomic_path(const util_atomic_file_t *a) {
    return a->path;
}

/* The rename is durable only once the folder holding the entry is synced.
 * Best effort: some filesystems refuse fsync on a folder. */
static void fsync_folder_of(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = NULL;
    if (slash == path)
        dir = strdup("/");
    else if (slash && (dir = malloc((size_t)(slash - path) + 1))) {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = 0;
    }
    int fd = open(slash ? (dir ? dir : "") : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int util_atomic_commit(util_atomic_file_t *a, util_err_t *err) {
    int rc = 0;
    errno = 0;
    if (a->failed)
        rc = util_fail_kind(err, kind_of_errno(a->saved_errno), "%s: write failed: %s", a->path,
                            strerror(a->saved_errno));
    else if (fflush(a->f) || ferror(a->f) || fsync(fileno(a->f))) {
        int e = errno ? errno : EIO;
        rc = util_fail_kind(err, kind_of_errno(e), "%s: write failed: %s", a->path, strerror(e));
    }
    if (rc == 0) {
        int e = fclose(a->f);
        a->f = NULL;
        if (e)
            rc = util_fail_kind(err, kind_of_errno(errno), "%s: close failed: %s", a->path,
                                strerror(errno));
    }
    if (rc == 0 && rename(a->tmp, a->path))
        rc = util_fail_kind(err, kind_of_errno(errno),
                            "%s: cannot rename the temporary file over it: %s", a->path,
                            strerror(errno));
    if (rc == 0) {
        fsync_folder_of(a->path);
        free(a->tmp); /* renamed: nothing to remove */
        a->tmp = NULL;
    }
    util_atomic_abort(a);
    return rc;
}

void util_atomic_abort(util_atomic_file_t *a) {
    if (!a) return;
    if (a->f) fclose(a->f);
    if (a->tmp) unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    free(a);
}

int util_write_file_atomic(const char *path, const void *data, size_t len, util_err_t *err) {
    util_atomic_file_t *a = util_atomic_open(path, err);
    if (!a) return -1;
    if (util_atomic_write(a, data, len, err)) {
        util_atomic_abort(a);
        return -1;
    }
    return util_atomic_commit(a, err);
}
