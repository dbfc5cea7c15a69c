/* A real PostgreSQL 15 cluster for a test program: initdb into a scratch
 * folder, pg_ctl start on a free port with its unix socket in that folder,
 * stopped and removed at exit. One cluster per test program (a start is
 * ~2-3 s); each test case takes a fresh database of it (pgfx_new_db).
 *
 * The server refuses to run as root: under root the cluster belongs to the
 * `postgres` user (Debian's package creates it) through runuser. Debian's
 * binaries are in /usr/lib/postgresql/15/bin (IMGRET_PG_BIN overrides);
 * pgfx_available() is 0 when they are not installed, and a test then exits
 * 77 (ctest SKIP_RETURN_CODE). Authentication is trust on the socket only
 * (listen_addresses is empty): nothing outside this machine can connect. */
#ifndef IMGRET_TEST_PG_FIXTURE_H
#define IMGRET_TEST_PG_FIXTURE_H

#include <libpq-fe.h>

#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PGFX_SKIP 77

static struct {
    char bin[200];
    char dir[160]; /* the scratch folder: data/ and the socket */
    char as[64];   /* "runuser -u postgres -- " under root, else "" */
    int port;
    int started;
} pgfx;

static inline const char *pgfx_bin(void) {
    const char *b = getenv("IMGRET_PG_BIN");
    snprintf(pgfx.bin, sizeof pgfx.bin, "%s", b && *b ? b : "/usr/lib/postgresql/15/bin");
    return pgfx.bin;
}

static inline int pgfx_available(void) {
    char p[600];
    snprintf(p, sizeof p, "%s/initdb", pgfx_bin());
    if (access(p, X_OK)) return 0;
    if (geteuid() == 0 && !getpwnam("postgres")) return 0;
    return 1;
}

static inline int pgfx_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = 0;
    if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) &&
        !getsockname(fd, (struct sockaddr *)&a, &len))
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static inline int pgfx_sh(const char *fmt, const char *a, const char *b) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* pg_ctl start (again, after pgfx_stop_server) on the same port and folder. */
static inline int pgfx_start_server(void) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s%s/pg_ctl -D %s/data -w -t 60 -l %s/log -o \"-p %d -k %s -c listen_addresses=''"
             " -c fsync=on -c synchronous_commit=on\" start >/dev/null",
             pgfx.as, pgfx.bin, pgfx.dir, pgfx.dir, pgfx.port, pgfx.dir);
    int rc = system(cmd);
    return WIFEXITED(rc) && WEXITSTATUS(rc) == 0 ? 0 : -1;
}

/* Stops the server at once, as a crash would (immediate: no checkpoint;
 * recovery replays the WAL at the next start). */
static inline void pgfx_stop_server(void) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s%s/pg_ctl -D %s/data -m immediate -w stop >/dev/null 2>&1",
             pgfx.as, pgfx.bin, pgfx.dir);
    if (system(cmd)) {
    }
}

static inline void pgfx_cleanup(void) {
    if (!pgfx.started) return;
    pgfx.started = 0;
    pgfx_stop_server();
    pgfx_sh("rm -rf %s%s", pgfx.dir, "");
}

/* A test that crashes or is killed by ctest's timeout must not leave a
 * server running: stop it, then die of the same signal. */
static inline void pgfx_on_signal(int sig) {
    pgfx_cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Starts the program's cluster (once). 0 ok, -1 failed (with a message). */
static inline int pgfx_start(void) {
    if (pgfx.started) return 0;
    pgfx_bin();
    const char *t = getenv("TMPDIR");
    snprintf(pgfx.dir, sizeof pgfx.dir, "%s/imgret-pg-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(pgfx.dir)) {
        perror("mkdtemp");
        return -1;
    }
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw || chown(pgfx.dir, pw->pw_uid, pw->pw_gid)) {
            fprintf(stderr, "pg fixture: cannot hand %s to the postgres user\n", pgfx.dir);
            return -1;
        }
        snprintf(pgfx.as, sizeof pgfx.as, "runuser -u postgres -- ");
    }
    chmod(pgfx.dir, 0755); /* the socket must be reachable by the test */
    pgfx.started = 1;
    atexit(pgfx_cleanup);
    const int sigs[] = {SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGTERM, SIGINT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], pgfx_on_signal);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s%s/initdb -D %s/data -U postgres -A trust -E UTF8 --no-locale >%s/initdb.log 2>&1",
             pgfx.as, pgfx.bin, pgfx.dir, pgfx.dir);
    if (system(cmd)) {
        fprintf(stderr, "pg fixture: initdb failed (%s/initdb.log)\n", pgfx.dir);
        return -1;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        pgfx.port = pgfx_free_port();
        if (pgfx.port && !pgfx_start_server()) return 0;
    }
    fprintf(stderr, "pg fixture: pg_ctl start failed (%s/log)\n", pgfx.dir);
    return -1;
}

/* The URL of database `db` of the cluster. */
static inline void pgfx_url(char *buf, size_t cap, const char *db) {
    snprintf(buf, cap, "postgresql:///%s?host=%s&port=%d&user=postgres", db, pgfx.dir, pgfx.port);
}

/* Runs one statement on database `db`; 0 ok. */
static inline int pgfx_exec(const char *db, const char *sql) {
    char url[700];
    pgfx_url(url, sizeof url, db);
    PGconn *c = PQconnectdb(url);
    int ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
        if (!ok) fprintf(stderr, "pg fixture: %s: %s", sql, PQresultErrorMessage(r));
        PQclear(r);
    } else {
        fprintf(stderr, "pg fixture: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return ok ? 0 : -1;
}

/* A new empty database (t1, t2, ...) of the cluster; its URL in buf. */
static inline int pgfx_new_db(char *buf, size_t cap) {
    static int n;
    char db[32], sql[64];
    snprintf(db, sizeof db, "t%d_%d", (int)getpid(), ++n);
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
    if (pgfx_start() || pgfx_exec("postgres", sql)) return -1;
    pgfx_url(buf, cap, db);
    return 0;
}

#endif
