/*
 * opts.c - see opts.h.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "opts.h"

#define OPTS_MAX 64

static int strv_push(struct strv *l, const char *s)
{
    const char **v = realloc(l->v, (l->n + 2) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    v[l->n++] = s;
    v[l->n] = NULL;
    l->v = v;
    return 0;
}

void strv_free(struct strv *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int parse_uint(const char *s, uint64_t *ret)
{
    char *end;
    unsigned long long v;

    if (!s[0] || s[0] == '-' || s[0] == '+' || s[0] == ' ')
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end)
        return -EINVAL;
    *ret = v;
    return 0;
}

static int set_value(const struct opt_def *o, const char *who, const char *arg, const char *origin)
{
    uint64_t u;

    switch (o->type) {
    case OPT_FLAG:
        *(bool *)o->target = true;
        return 0;
    case OPT_STRING:
        if (!arg[0]) {
            fprintf(stderr, "%s: %s must not be empty\n", who, origin);
            return -EINVAL;
        }
        *(const char **)o->target = arg;
        return 0;
    case OPT_STRING_LIST:
        if (!arg[0]) {
            fprintf(stderr, "%s: %s must not be empty\n", who, origin);
            return -EINVAL;
        }
        return strv_push(o->target, arg);
    case OPT_UINT:
        if (parse_uint(arg, &u) < 0) {
            fprintf(stderr, "%s: %s: '%s' is not a whole number\n", who, origin, arg);
            return -EINVAL;
        }
        if (u < o->min || u > o->max) {
            fprintf(stderr, "%s: %s: '%s' is out of range %llu..%llu\n", who, origin, arg,
                    (unsigned long long)o->min, (unsigned long long)o->max);
            return -EINVAL;
        }
        *(uint64_t *)o->target = u;
        return 0;
    case OPT_CHOICE:
        for (const char *const *c = o->choices; *c; c++)
            if (streq(*c, arg)) {
                *(const char **)o->target = *c;
                return 0;
            }
        fprintf(stderr, "%s: %s: '%s' is not one of:", who, origin, arg);
        for (const char *const *c = o->choices; *c; c++)
            fprintf(stderr, " %s", *c);
        fputc('\n', stderr);
        return -EINVAL;
    }
    return -EINVAL;
}

int opts_parse(const struct opt_cmd *cmd, const char *prog, const char *version, int argc,
               char **argv, int first)
{
    struct option longopts[OPTS_MAX + 3];
    bool seen[OPTS_MAX] = {false};
    char origin[128], who[128];
    size_t i;
    int c, r;

    if (streq(prog, cmd->name))
        snprintf(who, sizeof(who), "%s", prog);
    else
        snprintf(who, sizeof(who), "%s %s", prog, cmd->name);

    if (cmd->n_opts > OPTS_MAX)
        return -E2BIG;
    for (i = 0; i < cmd->n_opts; i++)
        longopts[i] = (struct option){cmd->opts[i].name,
                                      cmd->opts[i].type == OPT_FLAG ? no_argument : required_argument,
                                      NULL, (int)(i + 256)};
    longopts[i++] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[i++] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[i] = (struct option){NULL, 0, NULL, 0};

    optind = first;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == 'h') {
            opts_help(cmd, prog, stdout);
            return OPTS_EXIT;
        }
        if (c == 'V') {
            printf("%s %s\n", prog, version);
            return OPTS_EXIT;
        }
        if (c == '?' || c == ':') {
            const char *bad = argv[optind - 1];
            fprintf(stderr, "%s: %s '%s'; see '%s --help'\n", who,
                    c == ':' ? "missing value for" : "unknown option", bad, who);
            return -EINVAL;
        }
        const struct opt_def *o = &cmd->opts[c - 256];
        snprintf(origin, sizeof(origin), "--%s", o->name);
        r = set_value(o, who, optarg, origin);
        if (r < 0)
            return r;
        seen[c - 256] = true;
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'; see '%s --help'\n", who, argv[optind], who);
        return -EINVAL;
    }
    for (i = 0; i < cmd->n_opts; i++) {
        const struct opt_def *o = &cmd->opts[i];
        const char *v;

        if (!seen[i] && o->env && (v = getenv(o->env)) && v[0]) {
            snprintf(origin, sizeof(origin), "$%s", o->env);
            r = set_value(o, who, v, origin);
            if (r < 0)
                return r;
            seen[i] = true;
        }
        if (!seen[i] && o->required) {
            fprintf(stderr, "%s: --%s is required; see '%s --help'\n", who, o->name, who);
            return -EINVAL;
        }
    }
    return OPTS_OK;
}

void opts_help(const struct opt_cmd *cmd, const char *prog, FILE *f)
{
    char left[96];

    if (streq(prog, cmd->name))
        fprintf(f, "Usage: %s %s\n\n%s\n\nOptions:\n", prog, cmd->usage, cmd->summary);
    else
        fprintf(f, "Usage: %s %s %s\n\n%s\n\nOptions:\n", prog, cmd->name, cmd->usage,
                cmd->summary);
    for (size_t i = 0; i < cmd->n_opts; i++) {
        const struct opt_def *o = &cmd->opts[i];

        if (o->type == OPT_FLAG)
            snprintf(left, sizeof(left), "--%s", o->name);
        else
            snprintf(left, sizeof(left), "--%s %s", o->name, o->metavar ? o->metavar : "VALUE");
        fprintf(f, "  %-28s %s", left, o->help);
        if (o->type == OPT_CHOICE) {
            fputs(" One of:", f);
            for (const char *const *c = o->choices; *c; c++)
                fprintf(f, " %s", *c);
            fputc('.', f);
        }
        if (o->type == OPT_STRING_LIST)
            fputs(" Repeatable.", f);
        if (o->env)
            fprintf(f, " Env: %s.", o->env);
        if (o->def)
            fprintf(f, " Default: %s.", o->def);
        if (o->required)
            fputs(" Required.", f);
        fputc('\n', f);
    }
    fprintf(f, "  %-28s %s\n  %-28s %s\n", "-h, --help", "Show this help and exit.", "--version",
            "Show the version and exit.");
    if (cmd->epilog)
        fprintf(f, "\n%s", cmd->epilog);
}
