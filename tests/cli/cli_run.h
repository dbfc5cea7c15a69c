/* The cli/ tests' shared part: running the imgret binary (IMGRET_BIN, set
 * by CMake) as a user does, capturing its exit code and output, and the
 * scratch folder. Each test file includes it once. */
#ifndef IMGRET_TESTS_CLI_RUN_H
#define IMGRET_TESTS_CLI_RUN_H

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmp[512]; /* scratch folder of the whole run */

typedef struct run_result {
    int status; /* exit code; -1 when killed by a signal */
    char out[8192], err[8192];
} run_result_t;

static void slurp(const char *path, char *buf, size_t cap) {
    buf[0] = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
}

/* Runs IMGRET_BIN with argv (argv[0] IMGRET_BIN, NULL-terminated); stdout
 * and stderr go through files in tmp. */
static inline void run_imgret_argv(run_result_t *r, const char *const *argv) {
    char out_path[600], err_path[600];
    snprintf(out_path, sizeof out_path, "%s/stdout", tmp);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmp);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (o < 0 || e < 0 || dup2(o, 1) < 0 || dup2(e, 2) < 0) _exit(126);
        execv(IMGRET_BIN, (char *const *)argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    slurp(out_path, r->out, sizeof r->out);
    slurp(err_path, r->err, sizeof r->err);
}

/* Runs IMGRET_BIN with the command and the NULL-terminated arguments after
 * it. */
static inline void run_imgret_v(run_result_t *r, const char *command, va_list ap) {
    const char *argv[40];
    int argc = 0;
    argv[argc++] = IMGRET_BIN;
    argv[argc++] = command;
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 39)
        argv[argc++] = a;
    argv[argc] = NULL;
    run_imgret_argv(r, argv);
}

static inline void path_in(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", tmp, name);
}

static void rm_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st)) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        char p[1200];
        while (d && (e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", path, e->d_name);
                rm_tree(p);
            }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Makes tmp: $TMPDIR/imgret-<name>-XXXXXX. Returns 0, or 2 after a message. */
static int make_tmp(const char *name) {
    const char *t = getenv("TMPDIR");
    snprintf(tmp, sizeof tmp, "%s/imgret-%s-XXXXXX", t && *t ? t : "/tmp", name);
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 2;
    }
    return 0;
}

#endif
