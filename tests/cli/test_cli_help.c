/* The command line of every imgret command and subcommand, run as a user
 * runs it: --help and -h print the usage on stdout and exit 0, and mistakes
 * (an unknown option, a value that is not an integer or out of range, a
 * missing or repeated one) give the shared message and hint and exit 2.
 * The commands come from the binary's own lists (`imgret --help`, then
 * `imgret CMD --help` of a command that has subcommands), so a new command
 * without --help fails here. */
#include "tests/cli/cli_run.h"
#include "tests/test.h"

#define MAX_COMMANDS 64

typedef struct command_list {
    char name[MAX_COMMANDS][48]; /* "train", "index build" */
    int n;
} command_list_t;

/* The names after the "commands:" line of a command list ("  NAME  summary"
 * lines), each after prefix ("" or "index "). Returns how many. */
static int read_commands(const char *out, const char *prefix, command_list_t *l) {
    const char *p = strstr(out, "\ncommands:\n");
    if (!p) return 0;
    p += strlen("\ncommands:\n");
    int found = 0;
    while (p[0] == ' ' && p[1] == ' ' && p[2] != ' ' && l->n < MAX_COMMANDS) {
        char name[32];
        if (sscanf(p, " %31s", name) != 1) break;
        snprintf(l->name[l->n++], sizeof l->name[0], "%s%s", prefix, name);
        found++;
        const char *nl = strchr(p, '\n');
        if (!nl) break;
        p = nl + 1;
    }
    return found;
}

/* Runs `imgret WORDS... EXTRA...`: words is a command name ("index build"),
 * split at its spaces; extra is NULL-terminated. */
static void run_command(run_result_t *r, const char *words, const char *const *extra) {
    static char buf[128];
    const char *argv[40];
    int argc = 0;
    argv[argc++] = IMGRET_BIN;
    snprintf(buf, sizeof buf, "%s", words);
    for (char *w = strtok(buf, " "); w && argc < 8; w = strtok(NULL, " "))
        argv[argc++] = w;
    for (int i = 0; extra && extra[i] && argc < 39; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    run_imgret_argv(r, argv);
}

/* Every command, and every subcommand of those that list some. */
static command_list_t all_commands(void) {
    command_list_t l = {.n = 0};
    run_result_t r;
    run_command(&r, "--help", NULL);
    CHECK_MSG(r.status == 0, "imgret --help: exit %d", r.status);
    int top = read_commands(r.out, "", &l);
    CHECK_MSG(top >= 16, "imgret --help lists %d commands: %s", top, r.out);
    for (int i = 0; i < top; i++) {
        const char *help[] = {"--help", NULL};
        run_command(&r, l.name[i], help);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s ", l.name[i]);
        read_commands(r.out, prefix, &l);
    }
    return l;
}

/* A command whose usage is the list of its subcommands. */
static int has_subcommands(const command_list_t *l, const char *name) {
    size_t n = strlen(name);
    for (int i = 0; i < l->n; i++)
        if (!strncmp(l->name[i], name, n) && l->name[i][n] == ' ') return 1;
    return 0;
}

static void test_every_command_lists_its_usage_on_help(void) {
    command_list_t l = all_commands();
    int subcommands = 0;
    for (int i = 0; i < l.n; i++) {
        subcommands += strchr(l.name[i], ' ') != NULL;
        char want[96];
        snprintf(want, sizeof want, "usage: imgret %s ", l.name[i]);
        for (int h = 0; h < 2; h++) {
            const char *help[] = {h ? "-h" : "--help", NULL};
            run_result_t r;
            run_command(&r, l.name[i], help);
            CHECK_MSG(r.status == 0, "imgret %s %s: exit %d, stderr: %s", l.name[i], help[0],
                      r.status, r.err);
            CHECK_MSG(!strncmp(r.out, want, strlen(want)), "imgret %s %s: stdout: %s", l.name[i],
                      help[0], r.out);
            CHECK_MSG(r.err[0] == 0, "imgret %s %s: stderr: %s", l.name[i], help[0], r.err);
            /* A command that runs (not a list) shows its options and --help. */
            if (!has_subcommands(&l, l.name[i]))
                CHECK_MSG(strstr(r.out, "\noptions:\n") && strstr(r.out, "-h, --help"),
                          "imgret %s %s: stdout: %s", l.name[i], help[0], r.out);
        }
    }
    /* import caffe|onnx, export onnx, index build|add|remove|search|stats. */
    CHECK_MSG(subcommands >= 8, "%d subcommands found", subcommands);
}

/* --help wins wherever it stands among the options, even after a mistake. */
static void test_help_after_other_options(void) {
    run_result_t r;
    const char *args[] = {"--dir", "nowhere", "--k", "abc", "--help", NULL};
    run_command(&r, "index search", args);
    CHECK_MSG(r.status == 0 && !strncmp(r.out, "usage: imgret index search ", 27), "%d: %s",
              r.status, r.out);
}

/* An unknown option: the same message and hint from every command. */
static void test_every_command_refuses_an_unknown_option(void) {
    command_list_t l = all_commands();
    for (int i = 0; i < l.n; i++) {
        if (has_subcommands(&l, l.name[i])) continue;
        run_result_t r;
        const char *args[] = {"--no-such-option", NULL};
        run_command(&r, l.name[i], args);
        char want[128], hint[128];
        snprintf(want, sizeof want, "imgret %s: unknown option --no-such-option\n", l.name[i]);
        snprintf(hint, sizeof hint, "see imgret %s --help\n", l.name[i]);
        CHECK_MSG(r.status == 2, "imgret %s --no-such-option: exit %d", l.name[i], r.status);
        CHECK_MSG(strstr(r.err, want) && strstr(r.err, hint), "imgret %s: stderr: %s", l.name[i],
                  r.err);
        CHECK_MSG(r.out[0] == 0, "imgret %s: stdout: %s", l.name[i], r.out);
    }
}

typedef struct bad_case {
    const char *command;
    const char *args[8];
    const char *message; /* what stderr holds after "imgret COMMAND: " */
} bad_case_t;

static void test_bad_values_give_the_shared_messages(void) {
    static const bad_case_t cases[] = {
        {"search",
         {"--server", "http://x", "--k", "abc"},
         "--k: expected an integer 1..4096, got 'abc'"},
        {"search",
         {"--server", "http://x", "--k", "5000"},
         "--k: expected an integer 1..4096, got '5000'"},
        {"index search",
         {"--dir", "d", "--id", "1", "--k", "12x"},
         "--k: expected an integer 1..4096, got '12x'"},
        {"forward", {"--batch", "0"}, "--batch: expected an integer 1..65536, got '0'"},
        {"train", {"--epochs", "3.5"}, "--epochs: expected an integer 1..100000, got '3.5'"},
        {"train", {"--lr", "fast"}, "--lr: expected a number 0..1000, got 'fast'"},
        {"train",
         {"--schedule", "exp"},
         "--schedule: expected plateau|step|linear|cosine, got 'exp'"},
        {"serve",
         {"--model", "m", "--store", "s", "--port", "70000"},
         "--port: expected an integer 0..65535, got '70000'"},
        {"serve",
         {"--model", "m", "--store", "s", "--timeout", "0"},
         "--timeout: expected a number > 0 and <= 3600, got '0'"},
        {"ae-train",
         {"--features", "f", "-o", "a", "--seed", "-1"},
         "--seed: expected an integer >= 0, got '-1'"},
        {"demo", {"--limit", "1e3"}, "--limit: expected an integer 0..100000000, got '1e3'"},
        {"eval", {"--model"}, "--model: missing value (expected FILE)"},
        {"extract", {"--model", "a", "--model", "b"}, "--model given twice"},
        {"eval", {"--data", "fashion-mnist"}, "missing --model FILE"},
        {"info", {"a", "b"}, "unexpected argument 'b'"},
        {"index remove", {"--dir", "d"}, "missing ID..."},
        {"train", {"--no-mirror=1"}, "--no-mirror takes no value"},
        {"eval-retrieval",
         {"--db", "a", "--queries", "b", "--bits", "32,x"},
         "--bits: expected a comma-separated list of integers 1..1024, got '32,x'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case_t *c = &cases[i];
        run_result_t r;
        run_command(&r, c->command, c->args);
        char want[256], hint[128];
        snprintf(want, sizeof want, "imgret %s: %s\n", c->command, c->message);
        snprintf(hint, sizeof hint, "see imgret %s --help\n", c->command);
        CHECK_MSG(r.status == 2, "imgret %s %s: exit %d", c->command, c->args[0], r.status);
        CHECK_MSG(strstr(r.err, want) && strstr(r.err, hint), "imgret %s: want '%s', stderr: %s",
                  c->command, c->message, r.err);
    }
}

static void test_unknown_and_missing_commands(void) {
    run_result_t r;
    run_command(&r, "frobnicate", NULL);
    CHECK_MSG(r.status == 2 && strstr(r.err, "imgret: unknown command 'frobnicate'\n") &&
                  strstr(r.err, "see imgret --help\n"),
              "%d: %s", r.status, r.err);
    run_command(&r, "import tensorflow", NULL);
    CHECK_MSG(r.status == 2 && strstr(r.err, "imgret import: unknown command 'tensorflow'\n") &&
                  strstr(r.err, "see imgret import --help\n"),
              "%d: %s", r.status, r.err);
    /* No command at all: the list, on stderr. */
    run_command(&r, "index", NULL);
    CHECK_MSG(r.status == 2 && strstr(r.err, "usage: imgret index <command>") && !r.out[0],
              "%d: %s", r.status, r.err);
}

static const test_case_t tests[] = {
    T(test_every_command_lists_its_usage_on_help),
    T(test_help_after_other_options),
    T(test_every_command_refuses_an_unknown_option),
    T(test_bad_values_give_the_shared_messages),
    T(test_unknown_and_missing_commands),
};

int main(int argc, char **argv) {
    if (make_tmp("cli-help")) return 2;
    int rc = test_run_all(tests, (int)(sizeof tests / sizeof tests[0]), argc, argv);
    rm_tree(tmp);
    return rc;
}
