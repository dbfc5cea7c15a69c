#include "cli/cli_args.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HELP_COLUMN 22 /* where the help text of an option starts, when the names fit */

static const char *command_name(const cli_spec_t *s) {
    return s->command ? s->command : "";
}

static void verror(const cli_spec_t *s, const char *fmt, va_list ap) {
    fprintf(stderr, "imgret %s: ", command_name(s));
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nsee imgret %s --help\n", command_name(s));
}

int cli_usage_error(const cli_spec_t *spec, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror(spec, fmt, ap);
    va_end(ap);
    return 2;
}

static int takes_value(const cli_opt_t *o) {
    return o->kind != CLI_FLAG && o->kind != CLI_UNFLAG;
}

/* The option spelt `arg` (up to `len` characters), or NULL. */
static const cli_opt_t *find(const cli_spec_t *s, const char *arg, size_t len) {
    for (int i = 0; i < s->n_opts; i++) {
        const cli_opt_t *o = &s->opts[i];
        if ((strlen(o->name) == len && !strncmp(o->name, arg, len)) ||
            (o->alias && strlen(o->alias) == len && !strncmp(o->alias, arg, len)))
            return o;
    }
    return NULL;
}

static int is_help(const char *a) {
    return !strcmp(a, "--help") || !strcmp(a, "-h");
}

static int is_option(const char *a) {
    return a[0] == '-' && a[1] != 0;
}

/* The largest value an integer destination holds. */
static long long kind_max(const cli_opt_t *o) {
    return o->kind == CLI_INT ? INT_MAX : LONG_MAX;
}
static long long kind_min(const cli_opt_t *o) {
    return o->kind == CLI_INT ? INT_MIN : LONG_MIN;
}

/* "an integer 1..4096", "a number > 0", "plateau|step": what the option takes. */
static void describe(const cli_opt_t *o, char *buf, size_t cap) {
    switch (o->kind) {
    case CLI_INT:
    case CLI_LONG:
        if (o->min <= kind_min(o) && o->max >= kind_max(o))
            snprintf(buf, cap, "an integer");
        else if (o->max >= kind_max(o))
            snprintf(buf, cap, "an integer >= %lld", o->min);
        else
            snprintf(buf, cap, "an integer %lld..%lld", o->min, o->max);
        break;
    case CLI_U64:
        snprintf(buf, cap, "an integer >= 0");
        break;
    case CLI_FLOAT:
    case CLI_DOUBLE:
        if (isinf(o->fmax))
            snprintf(buf, cap, "a number %s %g", o->fmin_open ? ">" : ">=", o->fmin);
        else if (o->fmin_open)
            snprintf(buf, cap, "a number > %g and <= %g", o->fmin, o->fmax);
        else
            snprintf(buf, cap, "a number %g..%g", o->fmin, o->fmax);
        break;
    case CLI_CHOICE: {
        size_t n = 0;
        buf[0] = 0;
        for (int i = 0; o->choices[i] && n < cap; i++)
            n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? "|" : "", o->choices[i]);
        break;
    }
    default:
        snprintf(buf, cap, "%s", o->meta ? o->meta : "a value");
        break;
    }
}

static int bad_value(const cli_spec_t *s, const cli_opt_t *o, const char *v) {
    char what[256];
    describe(o, what, sizeof what);
    return cli_usage_error(s, "%s: expected %s, got '%s'", o->name, what, v);
}

int cli_parse_ll(const char *v, long long min, long long max, long long *out) {
    if (!*v || *v == ' ' || *v == '\t' || *v == '\n') return -1;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (*end || errno || x < min || x > max) return -1;
    *out = x;
    return 0;
}

static int parse_double(const char *v, double *out) {
    if (!*v || *v == ' ' || *v == '\t' || *v == '\n') return -1;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (*end || errno == ERANGE || !isfinite(x)) return -1;
    *out = x;
    return 0;
}

static int set_value(const cli_spec_t *s, const cli_opt_t *o, const char *v) {
    switch (o->kind) {
    case CLI_INT:
    case CLI_LONG: {
        long long x;
        if (cli_parse_ll(v, o->min, o->max, &x)) return bad_value(s, o, v);
        if (o->kind == CLI_INT)
            *(int *)o->dst = (int)x;
        else
            *(long *)o->dst = (long)x;
        return 0;
    }
    case CLI_U64: {
        char *end;
        errno = 0;
        unsigned long long x = *v >= '0' && *v <= '9' ? strtoull(v, &end, 10) : 0;
        if (!(*v >= '0' && *v <= '9') || *end || errno) return bad_value(s, o, v);
        *(uint64_t *)o->dst = (uint64_t)x;
        return 0;
    }
    case CLI_FLOAT:
    case CLI_DOUBLE: {
        double x;
        if (parse_double(v, &x) || (o->fmin_open ? !(x > o->fmin) : !(x >= o->fmin)) ||
            !(x <= o->fmax))
            return bad_value(s, o, v);
        if (o->kind == CLI_FLOAT)
            *(float *)o->dst = (float)x;
        else
            *(double *)o->dst = x;
        return 0;
    }
    case CLI_STRING:
        *(const char **)o->dst = v;
        return 0;
    case CLI_CHOICE:
        for (int i = 0; o->choices[i]; i++)
            if (!strcmp(o->choices[i], v)) {
                *(int *)o->dst = i;
                return 0;
            }
        return bad_value(s, o, v);
    case CLI_CUSTOM: {
        char msg[256] = "";
        if (o->parse(v, o->dst, msg, sizeof msg) == 0) return 0;
        return cli_usage_error(s, "%s: %s", o->name, msg);
    }
    default:
        return 0;
    }
}

/* --help anywhere among the options (not as another option's value). */
static int wants_help(const cli_spec_t *s, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) return 0;
        if (is_help(a)) return 1;
        if (!is_option(a) || strchr(a, '=')) continue;
        const cli_opt_t *o = find(s, a, strlen(a));
        if (o && takes_value(o)) i++;
    }
    return 0;
}

int cli_parse(const cli_spec_t *s, int argc, char **argv, int *nargs) {
    if (wants_help(s, argc, argv)) {
        cli_usage(s, stdout);
        return 0;
    }
    unsigned char seen[CLI_MAX_OPTS] = {0};
    if (s->n_opts > CLI_MAX_OPTS)
        return cli_usage_error(s, "internal: %d options, the parser holds %d", s->n_opts,
                               CLI_MAX_OPTS);
    int npos = 0, options = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options && !strcmp(a, "--")) {
            options = 0;
            continue;
        }
        if (!options || !is_option(a)) {
            if (s->max_args >= 0 && npos >= s->max_args)
                return cli_usage_error(s, "unexpected argument '%s'", a);
            argv[1 + npos++] = argv[i];
            continue;
        }
        const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
        const cli_opt_t *o = find(s, a, eq ? (size_t)(eq - a) : strlen(a));
        if (!o) {
            if (eq) return cli_usage_error(s, "unknown option %.*s", (int)(eq - a), a);
            return cli_usage_error(s, "unknown option %s", a);
        }
        const int k = (int)(o - s->opts);
        if (seen[k] && !o->repeat) return cli_usage_error(s, "%s given twice", o->name);
        seen[k] = 1;
        if (!takes_value(o)) {
            if (eq) return cli_usage_error(s, "%s takes no value", o->name);
            *(int *)o->dst = o->kind == CLI_FLAG;
            continue;
        }
        const char *v = eq ? eq + 1 : NULL;
        if (!v) {
            if (i + 1 >= argc) {
                char what[256];
                describe(o, what, sizeof what);
                return cli_usage_error(s, "%s: missing value (expected %s)", o->name, what);
            }
            v = argv[++i];
        }
        if (set_value(s, o, v)) return 2;
    }
    for (int k = 0; k < s->n_opts; k++)
        if (s->opts[k].required && !seen[k])
            return cli_usage_error(s, "missing %s %s", s->opts[k].name,
                                   s->opts[k].meta ? s->opts[k].meta : "");
    if (npos < s->min_args)
        return cli_usage_error(s, "missing %s", s->args ? s->args : "arguments");
    if (nargs) *nargs = npos;
    return CLI_GO;
}

/* "--name, --alias META" as the usage shows it. */
static int spelling(const cli_opt_t *o, char *buf, size_t cap) {
    char meta[256] = "";
    if (o->kind == CLI_CHOICE)
        describe(o, meta, sizeof meta);
    else if (takes_value(o))
        snprintf(meta, sizeof meta, "%s", o->meta ? o->meta : "VALUE");
    return snprintf(buf, cap, "%s%s%s%s%s", o->name, o->alias ? ", " : "", o->alias ? o->alias : "",
                    meta[0] ? " " : "", meta);
}

static void print_lines(FILE *f, const char *text) {
    if (!text) return;
    fputs(text, f);
    if (text[0] && text[strlen(text) - 1] != '\n') fputc('\n', f);
}

void cli_usage(const cli_spec_t *s, FILE *f) {
    fprintf(f, "usage: imgret %s%s%s\n", command_name(s), s->synopsis ? " " : "",
            s->synopsis ? s->synopsis : "");
    print_lines(f, s->about);
    fprintf(f, "options:\n");
    char buf[512];
    for (int i = 0; i < s->n_opts; i++) {
        const cli_opt_t *o = &s->opts[i];
        int at = 2 + spelling(o, buf, sizeof buf);
        fprintf(f, "  %s", buf);
        /* A long spelling puts its help on the next line. */
        const char *h = o->help ? o->help : "";
        if (at >= HELP_COLUMN && *h) {
            fputc('\n', f);
            at = 0;
        }
        for (;;) {
            const char *nl = strchr(h, '\n');
            int len = nl ? (int)(nl - h) : (int)strlen(h);
            if (len) fprintf(f, "%*s%.*s", HELP_COLUMN - at, "", len, h);
            fputc('\n', f);
            if (!nl) break;
            h = nl + 1;
            at = 0;
        }
    }
    fprintf(f, "  -h, --help%*sthis text\n", HELP_COLUMN - 12, "");
    print_lines(f, s->notes);
}

static void list(FILE *f, const char *prefix, const char *about, const cli_command_t *cmds,
                 size_t n) {
    const char *p = prefix ? prefix : "", *sp = prefix ? " " : "";
    fprintf(f,
            "usage: imgret %s%s<command> [options]   (imgret %s%s<command> --help for details)\n",
            p, sp, p, sp);
    print_lines(f, about);
    fprintf(f, "commands:\n");
    for (size_t i = 0; i < n; i++)
        fprintf(f, "  %-14s %s\n", cmds[i].name, cmds[i].summary);
}

int cli_dispatch(const char *prefix, const char *about, const cli_command_t *cmds, size_t n,
                 int argc, char **argv) {
    if (argc < 2) {
        list(stderr, prefix, about, cmds, n);
        return 2;
    }
    if (is_help(argv[1])) {
        list(stdout, prefix, about, cmds, n);
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].run(argc - 1, argv + 1);
    const char *p = prefix ? prefix : "";
    if (prefix)
        fprintf(stderr, "imgret %s: unknown command '%s'\nsee imgret %s --help\n", p, argv[1], p);
    else
        fprintf(stderr, "imgret: unknown command '%s'\nsee imgret --help\n", argv[1]);
    return 2;
}

char *cli_strdupf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

int cli_parse_int_list(const char *value, void *dst, char *msg, size_t cap) {
    cli_int_list_t *l = dst;
    int n = 0;
    const char *p = value;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        char item[32];
        long long x = 0;
        int bad = len >= sizeof item;
        if (!bad) {
            memcpy(item, p, len);
            item[len] = 0;
            bad = cli_parse_ll(item, l->min, l->max, &x);
        }
        if (bad) {
            snprintf(msg, cap, "expected a comma-separated list of integers %d..%d, got '%s'",
                     l->min, l->max, value);
            return -1;
        }
        if (n >= l->cap) {
            snprintf(msg, cap, "at most %d values, got '%s'", l->cap, value);
            return -1;
        }
        l->v[n++] = (int)x;
        if (!c) break;
        p = c + 1;
    }
    l->n = n;
    return 0;
}
