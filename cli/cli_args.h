/* The command line of every imgret command and subcommand: one table of
 * options per command, read by one parser with one set of messages, and the
 * usage text written from that same table, so help and parser cannot drift.
 *
 * A command fills a cli_opt_t array (an option once: its spelling, kind,
 * range, destination and help), describes itself in a cli_spec_t and calls
 * cli_parse. The parser writes each value given into its destination (what
 * is not given keeps the value the command set before, its default), checks
 * integers and numbers whole and in range, and answers:
 *   --help or -h anywhere: the usage on stdout, exit status 0;
 *   a mistake: "imgret CMD: MESSAGE" and "see imgret CMD --help" on stderr,
 *   exit status 2.
 * Commands with subcommands (imgret itself, index, import, export) list them
 * in a cli_command_t table and call cli_dispatch. */
#ifndef IMGRET_CLI_ARGS_H
#define IMGRET_CLI_ARGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum cli_opt_kind {
    CLI_FLAG,   /* no value: *(int *)dst = 1 */
    CLI_UNFLAG, /* no value: *(int *)dst = 0 (--no-X) */
    CLI_INT,    /* int in [min, max] */
    CLI_LONG,   /* long in [min, max] */
    CLI_U64,    /* uint64_t, any (a seed) */
    CLI_FLOAT,  /* float, finite, in [fmin, fmax] ((fmin, fmax] with fmin_open) */
    CLI_DOUBLE, /* double, as CLI_FLOAT */
    CLI_STRING, /* const char *: the argument itself (argv's storage) */
    CLI_CHOICE, /* int: the index in choices[] of the argument */
    CLI_CUSTOM, /* parse(value, dst, msg, cap) */
} cli_opt_kind_t;

/* Parses value into dst; 0, or -1 with a sentence in msg (the parser puts
 * the option's name before it). */
typedef int (*cli_parse_fn)(const char *value, void *dst, char *msg, size_t cap);

typedef struct cli_opt {
    const char *name;  /* "--batch", or a short "-o" */
    const char *alias; /* another spelling ("--out"), or NULL */
    cli_opt_kind_t kind;
    void *dst;
    const char *meta; /* the value in the usage ("N", "FILE"); CLI_CHOICE: the choices */
    const char *help; /* one or more lines ('\n' between them), or NULL */
    long long min, max;
    double fmin, fmax;
    int fmin_open;
    const char *const *choices; /* CLI_CHOICE: NULL-terminated */
    cli_parse_fn parse;         /* CLI_CUSTOM */
    int required;               /* the command cannot run without it */
    int repeat;                 /* may be given more than once (else: an error) */
} cli_opt_t;

/* Table entries. The _Generic makes a destination of the wrong type a
 * compile error. */
/* clang-format off */
#define CLI_OPT_FLAG(NAME, DST, HELP)                                                              \
    {.name = (NAME), .kind = CLI_FLAG, .dst = _Generic((DST), int *: (DST)), .help = (HELP)}
#define CLI_OPT_UNFLAG(NAME, DST, HELP)                                                            \
    {.name = (NAME), .kind = CLI_UNFLAG, .dst = _Generic((DST), int *: (DST)), .help = (HELP)}
#define CLI_OPT_INT(NAME, DST, MIN, MAX, META, HELP)                                               \
    {.name = (NAME),                                                                               \
     .kind = CLI_INT,                                                                              \
     .dst = _Generic((DST), int *: (DST)),                                                         \
     .min = (MIN),                                                                                 \
     .max = (MAX),                                                                                 \
     .meta = (META),                                                                               \
     .help = (HELP)}
#define CLI_OPT_LONG(NAME, DST, MIN, MAX, META, HELP)                                              \
    {.name = (NAME),                                                                               \
     .kind = CLI_LONG,                                                                             \
     .dst = _Generic((DST), long *: (DST)),                                                        \
     .min = (MIN),                                                                                 \
     .max = (MAX),                                                                                 \
     .meta = (META),                                                                               \
     .help = (HELP)}
#define CLI_OPT_U64(NAME, DST, META, HELP)                                                         \
    {.name = (NAME),                                                                               \
     .kind = CLI_U64,                                                                              \
     .dst = _Generic((DST), uint64_t *: (DST)),                                                    \
     .meta = (META),                                                                               \
     .help = (HELP)}
#define CLI_OPT_FLOAT(NAME, DST, MIN, MAX, META, HELP)                                             \
    {.name = (NAME),                                                                               \
     .kind = CLI_FLOAT,                                                                            \
     .dst = _Generic((DST), float *: (DST)),                                                       \
     .fmin = (MIN),                                                                                \
     .fmax = (MAX),                                                                                \
     .meta = (META),                                                                               \
     .help = (HELP)}
#define CLI_OPT_DOUBLE(NAME, DST, MIN, MAX, META, HELP)                                            \
    {.name = (NAME),                                                                               \
     .kind = CLI_DOUBLE,                                                                           \
     .dst = _Generic((DST), double *: (DST)),                                                      \
     .fmin = (MIN),                                                                                \
     .fmax = (MAX),                                                                                \
     .meta = (META),                                                                               \
     .help = (HELP)}
#define CLI_OPT_STRING(NAME, DST, META, HELP)                                                      \
    {.name = (NAME),                                                                               \
     .kind = CLI_STRING,                                                                           \
     .dst = _Generic((DST), const char **: (DST)),                                                 \
     .meta = (META),                                                                               \
     .help = (HELP)}
#define CLI_OPT_CHOICE(NAME, DST, CHOICES, HELP)                                                   \
    {.name = (NAME),                                                                               \
     .kind = CLI_CHOICE,                                                                           \
     .dst = _Generic((DST), int *: (DST)),                                                         \
     .choices = (CHOICES),                                                                         \
     .help = (HELP)}
#define CLI_OPT_CUSTOM(NAME, DST, PARSE, META, HELP)                                               \
    {.name = (NAME), .kind = CLI_CUSTOM, .dst = (DST), .parse = (PARSE), .meta = (META),           \
     .help = (HELP)}

/* The placement options of cli_util.h's cli_device_args_t, for a table. */
#define CLI_OPTS_DEVICE(DEV)                                                                       \
    CLI_OPT_STRING("--device", &(DEV)->device, "D", "cpu (default), gpu:N (CUDA builds)"),         \
        CLI_OPT_STRING("--devices", &(DEV)->devices, "LIST",                                       \
                       "several devices, e.g. cpu:0,cpu:1 or gpu:0,gpu:1"),                        \
        CLI_OPT_STRING("--parallel", &(DEV)->parallel, "P",                                        \
                       "columns (the paper's two-column split; default) | data")
/* clang-format on */

typedef struct cli_spec {
    const char *command;   /* "train", "index build": in messages, hints and the usage */
    const char *synopsis;  /* after "usage: imgret COMMAND ": "[options] IMAGE..." */
    const char *about;     /* lines before the options, or NULL */
    const char *notes;     /* lines after the options, or NULL */
    const cli_opt_t *opts; /* at most CLI_MAX_OPTS */
    int n_opts;
    const char *args; /* the positional arguments' name ("IMAGE...") in messages; NULL: none */
    int min_args, max_args; /* how many; max_args -1: any number */
} cli_spec_t;

#define CLI_MAX_OPTS 64
#define CLI_GO (-1) /* cli_parse: carry on */

/* Reads argv[1..argc-1] (argv[0] is the command's name) by the table.
 * Returns CLI_GO when the command should run, with the positional
 * arguments moved to argv[1..*nargs] in their order (nargs may be NULL when
 * max_args is 0); else the exit status to return at once (0 after --help,
 * 2 after a mistake, both already reported). "--" ends the options; a
 * value-taking option takes the next argument or "--name=value". */
int cli_parse(const cli_spec_t *spec, int argc, char **argv, int *nargs);

/* The usage of spec: synopsis, about, the options from the table, notes. */
void cli_usage(const cli_spec_t *spec, FILE *f);

/* A mistake found after parsing (options that do not go together, a value
 * the table cannot check): prints it as cli_parse does and returns 2. */
int cli_usage_error(const cli_spec_t *spec, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* A command or subcommand: its name, one line for the list, its entry
 * point (argv[0] is its name; returns the exit status). */
typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} cli_command_t;

/* Runs the subcommand argv[1] names, with argv + 1. `prefix` names the
 * parent in messages ("index"; NULL for imgret itself). --help or -h: the
 * list on stdout, exit 0 (the list reads "commands:" and then one "  NAME
 * SUMMARY" line each, which tests/cli reads back); no subcommand: the list
 * on stderr, exit 2; an unknown one: a message and the hint, exit 2. */
int cli_dispatch(const char *prefix, const char *about, const cli_command_t *cmds, size_t n,
                 int argc, char **argv);

/* A path built like snprintf into a new allocation (the caller frees it);
 * NULL only when out of memory. */
char *cli_strdupf(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* A CLI_CUSTOM parser: a comma-separated list of integers in [min, max],
 * at most cap of them, into the cli_int_list_t that dst points to. */
typedef struct cli_int_list {
    int *v;  /* the caller's array */
    int cap; /* its length */
    int n;   /* how many were given */
    int min, max;
} cli_int_list_t;
int cli_parse_int_list(const char *value, void *dst, char *msg, size_t cap);

/* A whole decimal integer in [min, max]: 0, or -1 when value is not one. */
int cli_parse_ll(const char *value, long long min, long long max, long long *out);

#endif
