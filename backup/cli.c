/*
 * cli.c - see cli.h.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "json.h"

static void cjson_deletep(cJSON **p)
{
    if (*p)
        cJSON_Delete(*p);
}

void cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s %s: ", CLI_PROG, cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void cli_warn(const char *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s %s: warning: ", CLI_PROG, cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

double cli_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double cli_monotonic(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cli_node_name(const char *opt, char *buf, size_t size)
{
    if (opt && opt[0]) {
        snprintf(buf, size, "%s", opt);
        return;
    }
    if (gethostname(buf, size) < 0 || !buf[0])
        snprintf(buf, size, "unknown");
    buf[size - 1] = '\0';
}

uint64_t cli_online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n > 0 ? (uint64_t)n : 1;
}

void cli_format_bytes(uint64_t v, char *buf, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double d = (double)v;
    size_t u = 0;

    while (d >= 1024 && u + 1 < ARRAY_SIZE(units)) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%llu B", (unsigned long long)v);
    else
        snprintf(buf, size, "%.1f %s", d, units[u]);
}

void cli_progress_init(struct cli_progress *p)
{
    p->on = isatty(STDERR_FILENO) == 1;
    p->last = 0;
}

void cli_progress_cb(void *ctx, uint64_t bytes_done)
{
    struct cli_progress *p = ctx;
    char b[32];
    double now;

    if (!p || !p->on)
        return;
    now = cli_monotonic();
    if (now - p->last < 0.25)
        return;
    p->last = now;
    cli_format_bytes(bytes_done, b, sizeof(b));
    fprintf(stderr, "\r\033[K%s: %s", p->label, b);
    fflush(stderr);
}

void cli_progress_done(struct cli_progress *p)
{
    if (p->on && p->last > 0) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
    }
    p->last = 0;
}

int cli_load_backup(struct repo *r, const struct sts_ref *sts, const char *id,
                    struct backup_manifest *ret, ord_err *e)
{
    _cleanup_free_ char *text = NULL;
    char key[REPO_KEY_MAX + 1];
    struct backup_manifest m;
    size_t len;
    int rc;

    if (repo_key_backup_json(key, sizeof(key), sts->ns, sts->name, id) < 0)
        return err_set(e, -ENAMETOOLONG, "the backup key is too long");
    rc = repo_get_small(r, key, MANIFEST_TEXT_MAX, &text, &len, e);
    if (rc < 0)
        return rc;
    rc = backup_manifest_parse(text, len, &m, e);
    if (rc < 0)
        return err_wrap(e, rc, "backup '%s' of %s/%s is damaged", id, sts->ns, sts->name);
    if (!streq(m.id, id) || !(streq(m.sts.ns, sts->ns) && streq(m.sts.name, sts->name))) {
        backup_manifest_free(&m);
        return err_set(e, -EBADMSG,
                       "backup '%s' of %s/%s is damaged: its backup.json names another backup", id,
                       sts->ns, sts->name);
    }
    *ret = m;
    return 0;
}

int cli_object_key(char *buf, size_t size, const struct backup_manifest *b,
                   const struct backup_volume *v)
{
    return repo_key_volume(buf, size, b->sts.ns, b->sts.name, b->id, v->ordinal, v->template_name,
                           ".tar.zst");
}

int cli_load_volume(struct repo *r, const struct backup_manifest *b, const struct backup_volume *v,
                    struct volume_manifest *ret, ord_err *e)
{
    _cleanup_free_ char *text = NULL;
    char key[REPO_KEY_MAX + 1];
    struct volume_manifest m;
    size_t len;
    int rc;

    if (repo_key_volume(key, sizeof(key), b->sts.ns, b->sts.name, b->id, v->ordinal,
                        v->template_name, ".json") < 0)
        return err_set(e, -ENAMETOOLONG, "the manifest key is too long");
    rc = repo_get_small(r, key, MANIFEST_TEXT_MAX, &text, &len, e);
    if (rc == -ENOENT)
        return err_set(e, -EBADMSG, "the manifest of ordinal %d volume '%s' is missing",
                       (int)v->ordinal, v->template_name);
    if (rc < 0)
        return rc;
    rc = volume_manifest_parse(text, len, &m, e);
    if (rc < 0)
        return err_wrap(e, rc, "the manifest of ordinal %d volume '%s' is damaged", (int)v->ordinal,
                        v->template_name);
    rc = manifest_agree(b, v, &m, e);
    if (rc < 0) {
        volume_manifest_free(&m);
        return rc;
    }
    *ret = m;
    return 0;
}

void cli_print_json_text(const char *text)
{
    fputs(text, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static cJSON *volume_json(const struct backup_volume *v)
{
    cJSON *o = cJSON_CreateObject();

    if (!o)
        return NULL;
    if (!cJSON_AddNumberToObject(o, "ordinal", v->ordinal) ||
        !cJSON_AddStringToObject(o, "template", v->template_name) ||
        !cJSON_AddStringToObject(o, "kind", volume_kind_name(v->kind)) ||
        !cJSON_AddNumberToObject(o, "bytes_in", (double)v->bytes_in) ||
        !cJSON_AddNumberToObject(o, "bytes_stored", (double)v->bytes_stored) ||
        !cJSON_AddNumberToObject(o, "files", (double)v->files) ||
        !cJSON_AddNumberToObject(o, "seconds", v->seconds) ||
        !cJSON_AddStringToObject(o, "sha256", v->sha256) ||
        !cJSON_AddNumberToObject(o, "started_at", v->started_at) ||
        !cJSON_AddNumberToObject(o, "finished_at", v->finished_at)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *cli_volume_json(const struct backup_volume *v)
{
    return volume_json(v);
}

cJSON *cli_lost_json(const struct engine_lost *l)
{
    _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();

    if (!o)
        return NULL;
    for (size_t k = 0; k < ENGINE_LOST_KINDS; k++) {
        cJSON *kj, *paths;

        if (!l->count[k])
            continue;
        if (!(kj = cJSON_AddObjectToObject(o, engine_lost_kind_name(k))) ||
            !cJSON_AddNumberToObject(kj, "count", (double)l->count[k]) ||
            !(paths = cJSON_AddArrayToObject(kj, "examples")))
            return NULL;
        for (size_t i = 0; i < ENGINE_LOST_EXAMPLES && l->examples[k][i]; i++) {
            cJSON *sj = cJSON_CreateString(l->examples[k][i]);
            if (!sj)
                return NULL;
            cJSON_AddItemToArray(paths, sj);
        }
    }
    return TAKE_PTR(o);
}

int cli_print_volumes_json(const char *id, const struct sts_ref *sts, const char *order,
                           const struct backup_volume *v, size_t n)
{
    return cli_print_restored_json(id, sts, order, v, NULL, n);
}

int cli_print_restored_json(const char *id, const struct sts_ref *sts, const char *order,
                            const struct backup_volume *v, const struct engine_lost *lost,
                            size_t n)
{
    _cleanup_(cjson_deletep) cJSON *o = cJSON_CreateObject();
    _cleanup_free_ char *text = NULL;
    char name[NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 2];
    cJSON *arr;

    snprintf(name, sizeof(name), "%s/%s", sts->ns, sts->name);
    if (!o || !cJSON_AddStringToObject(o, "id", id) ||
        !cJSON_AddStringToObject(o, "statefulset", name) ||
        !cJSON_AddStringToObject(o, "order", order) ||
        !(arr = cJSON_AddArrayToObject(o, "volumes")))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        cJSON *vj = volume_json(&v[i]), *lj;
        if (!vj)
            return -ENOMEM;
        cJSON_AddItemToArray(arr, vj);
        if (lost && engine_lost_total(&lost[i]) > 0) {
            if (!(lj = cli_lost_json(&lost[i])))
                return -ENOMEM;
            cJSON_AddItemToObject(vj, "lost_attributes", lj);
        }
    }
    text = cJSON_Print(o);
    if (!text)
        return -ENOMEM;
    cli_print_json_text(text);
    return 0;
}

void cli_print_volumes_text(const char *what, const char *id, const struct sts_ref *sts,
                            const char *order, const struct backup_volume *v, size_t n)
{
    cli_print_restored_text(what, id, sts, order, v, NULL, n);
}

void cli_print_restored_text(const char *what, const char *id, const struct sts_ref *sts,
                             const char *order, const struct backup_volume *v,
                             const struct engine_lost *lost, size_t n)
{
    printf("%s %s of %s/%s (order %s):\n", what, id, sts->ns, sts->name, order);
    for (size_t i = 0; i < n; i++) {
        char in[32], st[32];
        cli_format_bytes(v[i].bytes_in, in, sizeof(in));
        cli_format_bytes(v[i].bytes_stored, st, sizeof(st));
        printf("  ordinal %-4d %-20s %-9s %10s -> %10s stored  %8llu files  %.1f s\n",
               (int)v[i].ordinal, v[i].template_name, volume_kind_name(v[i].kind), in, st,
               (unsigned long long)v[i].files, v[i].seconds);
        if (lost && engine_lost_total(&lost[i]) > 0) {
            char what_lost[ORD_ERR_MSG_MAX];
            engine_lost_describe(&lost[i], what_lost, sizeof(what_lost));
            printf("    restored without (--accept-lost-attributes): %s\n", what_lost);
        }
    }
    fflush(stdout);
}

int cli_parse_sts(const char *cmd, const char *arg, struct sts_ref *ret)
{
    ord_err e = {0};

    if (names_parse_sts(arg, ret, &e) < 0) {
        cli_error(cmd, "--statefulset: %s", err_msg(&e));
        return -EINVAL;
    }
    return 0;
}
