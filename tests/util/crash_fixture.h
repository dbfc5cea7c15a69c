/* Kill -9 in the middle of a write: a child process runs a writer and the
 * parent sends SIGKILL once the writer's temporary file (PATH.tmp.*) holds a
 * chosen number of bytes, after an extra delay. The tests then check that the
 * target holds exactly the old file or exactly the new one. */
#ifndef IMGRET_TESTS_CRASH_FIXTURE_H
#define IMGRET_TESTS_CRASH_FIXTURE_H

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline void crash_sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* A path in this run's own folder under /tmp (made on first use, removed at
 * exit; a killed child leaves with _exit and removes nothing). */
static char crash_dir[256];

static inline void crash_remove_dir(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", crash_dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", crash_dir);
}

static inline const char *crash_path_in(const char *name) {
    static char p[4][512];
    static int turn;
    if (!crash_dir[0]) {
        snprintf(crash_dir, sizeof crash_dir, "/tmp/imgret_crash_%ld", (long)getpid());
        mkdir(crash_dir, 0755);
        atexit(crash_remove_dir);
    }
    char *out = p[turn++ % 4];
    snprintf(out, 512, "%s/%s", crash_dir, name);
    return out;
}

/* Calls fn on each PATH.tmp* beside path (the atomic write's temporary
 * files); returns how many there were. */
static inline int crash_each_temp(const char *path, void (*fn)(const char *temp, void *ctx),
                                  void *ctx) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : path;
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s.tmp", base);
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix))) continue;
        char p[1600];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        fn(p, ctx);
        n++;
    }
    if (d) closedir(d);
    return n;
}

static inline void crash_note_size(const char *temp, void *ctx) {
    struct stat st;
    long long *best = ctx;
    if (stat(temp, &st) == 0 && (long long)st.st_size > *best) *best = (long long)st.st_size;
}

static inline void crash_unlink(const char *temp, void *ctx) {
    (void)ctx;
    unlink(temp);
}

/* Size of the largest PATH.tmp* beside path; -1 when there is none. */
static inline long long crash_temp_bytes(const char *path) {
    long long best = -1;
    crash_each_temp(path, crash_note_size, &best);
    return best;
}

/* Removes the PATH.tmp* files a killed writer left; returns how many. */
static inline int crash_remove_temps(const char *path) {
    return crash_each_temp(path, crash_unlink, NULL);
}

/* 1 when now is the file before was: same inode, size and modification time. */
static inline int crash_same_file(const struct stat *now, const struct stat *before) {
    return before && now->st_ino == before->st_ino && now->st_size == before->st_size &&
           now->st_mtim.tv_sec == before->st_mtim.tv_sec &&
           now->st_mtim.tv_nsec == before->st_mtim.tv_nsec;
}

typedef enum crash_outcome { CRASH_KILLED, CRASH_FINISHED, CRASH_FAILED } crash_outcome_t;

/* Forks; the child runs write(arg) and exits 0 on success. The parent waits
 * until the temporary file beside target (or a changed target) holds at
 * least kill_at_bytes bytes (or the child is done), sleeps delay_us more,
 * then sends SIGKILL.
 * kill_at_bytes < 0: never kill. CRASH_FAILED: the writer reported an error. */
static inline crash_outcome_t crash_run(int (*write)(void *), void *arg, const char *target,
                                        long long kill_at_bytes, long delay_us) {
    struct stat before;
    int had = stat(target, &before) == 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return CRASH_FAILED;
    if (pid == 0) _exit(write(arg) == 0 ? 0 : 1);
    int status;
    if (kill_at_bytes >= 0) {
        for (;;) {
            if (waitpid(pid, &status, WNOHANG) == pid) goto reaped;
            if (crash_temp_bytes(target) >= kill_at_bytes) break;
            /* A writer that wrote straight to the target (the defect these
             * tests look for) is caught in the act too. */
            struct stat now;
            if (stat(target, &now) == 0 && !crash_same_file(&now, had ? &before : NULL) &&
                (long long)now.st_size >= kill_at_bytes)
                break;
            crash_sleep_us(200);
        }
        if (delay_us) crash_sleep_us(delay_us);
        kill(pid, SIGKILL);
    }
    if (waitpid(pid, &status, 0) != pid) return CRASH_FAILED;
reaped:
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) return CRASH_KILLED;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? CRASH_FINISHED : CRASH_FAILED;
}

/* 1 when the file at path holds exactly len bytes equal to data. */
static inline int crash_file_equals(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint8_t buf[65536];
    size_t at = 0, k;
    int same = 1;
    while (same && (k = fread(buf, 1, sizeof buf, f)) > 0) {
        same = at + k <= len && memcmp(buf, (const uint8_t *)data + at, k) == 0;
        at += k;
    }
    fclose(f);
    return same && at == len;
}

#endif
