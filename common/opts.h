/*
 * opts.h - one typed options table per command drives parsing, bounds, defaults and --help,
 * the way redis's static_configs[] does. getopt_long underneath; long options only, plus -h.
 *
 * Targets hold their defaults before opts_parse() runs; an option with an `env` name takes
 * its value from that variable when the flag is not given. A bad flag gets one specific line
 * on stderr ("prog: --level: '99' is out of range 1..19") and the caller exits 2.
 */
#ifndef ORDINAL_OPTS_H
#define ORDINAL_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum opt_type {
    OPT_FLAG,        /* bool *, no argument */
    OPT_STRING,      /* const char **, points into argv or environ */
    OPT_STRING_LIST, /* struct strv *, repeatable */
    OPT_UINT,        /* uint64_t *, decimal, within [min, max] */
    OPT_CHOICE,      /* const char **, one of choices[] */
};

struct strv {
    const char **v;
    size_t n;
};

struct opt_def {
    const char *name; /* long name, without the dashes */
    enum opt_type type;
    void *target;
    const char *metavar;             /* shown in --help: --root DIR */
    const char *help;                /* one sentence; the default is appended from `def` */
    const char *def;                 /* the default, as text for --help, or NULL */
    uint64_t min, max;               /* OPT_UINT bounds */
    const char *const *choices;      /* OPT_CHOICE: NULL-terminated */
    const char *env;                 /* environment variable that supplies the value, or NULL */
    bool required;
};

struct opt_cmd {
    const char *name;     /* "backup", or the program name for single-command programs */
    const char *usage;    /* "--root DIR --repo URL --statefulset NS/NAME [options]" */
    const char *summary;  /* one paragraph: what the command does */
    const struct opt_def *opts;
    size_t n_opts;
    const char *epilog;   /* examples, exit codes; may be NULL */
};

enum {
    OPTS_OK = 0,
    OPTS_EXIT = 1, /* --help or --version was printed: exit 0 */
};

/*
 * Parses argv[*ret_optind..] (pass 1 for a program, 2 for a subcommand's argv). Returns
 * OPTS_OK, OPTS_EXIT, or -EINVAL after printing the reason to stderr (exit 2).
 * Positional arguments are not accepted. `prog` prefixes messages.
 */
int opts_parse(const struct opt_cmd *cmd, const char *prog, const char *version, int argc,
               char **argv, int first);

void opts_help(const struct opt_cmd *cmd, const char *prog, FILE *f);

void strv_free(struct strv *l);

#endif
