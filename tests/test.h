/* A minimal test harness: each test is a function; CHECK records a failure
 * with its location and carries on; main() prints "N passed, N failed". */
#ifndef IMGRET_TEST_H
#define IMGRET_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int test_failures_in_current;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);             \
            test_failures_in_current++;                                                            \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);             \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            test_failures_in_current++;                                                            \
        }                                                                                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (tol %g)", (double)(a),      \
              (double)(b), (double)(tol))

typedef struct test_case {
    const char *name;
    void (*fn)(void);
} test_case_t;

static int test_run_all(const test_case_t *tests, int n, int argc, char **argv) {
    int passed = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        if (argc > 1 && !strstr(tests[i].name, argv[1])) continue;
        test_failures_in_current = 0;
        tests[i].fn();
        if (test_failures_in_current) {
            printf("FAIL %s\n", tests[i].name);
            failed++;
        } else {
            printf("ok   %s\n", tests[i].name);
            passed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define TEST_MAIN(...)                                                                             \
    int main(int argc, char **argv) {                                                              \
        static const test_case_t tests[] = {__VA_ARGS__};                                          \
        return test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);             \
    }

#define T(fn)                                                                                      \
    { #fn, fn }

#endif
