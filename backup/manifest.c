/*
 * manifest.c - see manifest.h. The only place that turns manifests into cJSON and back.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "manifest.h"

#define VOLUME_FORMAT "ordinal-volume"
#define BACKUP_FORMAT "ordinal-backup"

static void cjson_deletep(cJSON **p)
{
    if (*p)
        cJSON_Delete(*p);
}

const char *volume_kind_name(enum volume_kind k)
{
    return k == VOLUME_DEVICE ? "device" : "directory";
}

void volume_manifest_free(struct volume_manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_changed; i++) {
        free(m->changed[i].path);
        free(m->changed[i].reason);
    }
    free(m->changed);
    m->changed = NULL;
    m->n_changed = 0;
}

void backup_manifest_free(struct backup_manifest *m)
{
    if (!m)
        return;
    free(m->ordinals);
    free(m->volumes);
    m->ordinals = NULL;
    m->volumes = NULL;
    m->n_ordinals = m->n_volumes = 0;
}

int manifest_object_name(char *buf, size_t size, int32_t ordinal, const char *tmpl)
{
    int n = snprintf(buf, size, "ordinal-%d/%s.tar.zst", (int)ordinal, tmpl);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int manifest_manifest_name(char *buf, size_t size, int32_t ordinal, const char *tmpl)
{
    int n = snprintf(buf, size, "ordinal-%d/%s.json", (int)ordinal, tmpl);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* ---- formatting ---- */

static bool add_str(cJSON *o, const char *name, const char *v)
{
    return cJSON_AddStringToObject(o, name, v) != NULL;
}

static bool add_num(cJSON *o, const char *name, double v)
{
    return cJSON_AddNumberToObject(o, name, v) != NULL;
}

static int print(cJSON *o, char **ret)
{
    char *text = cJSON_Print(o);

    if (!text)
        return -ENOMEM;
    *ret = text;
    return 0;
}

int volume_manifest_format(const struct volume_manifest *m, char **ret)
{
    _cleanup_(cjson_deletep) cJSON *o = cJSON_CreateObject();
    cJSON *src, *comp, *changed;
    char sts[sizeof(m->sts.ns) + sizeof(m->sts.name) + 1];

    if (!o)
        return -ENOMEM;
    snprintf(sts, sizeof(sts), "%s/%s", m->sts.ns, m->sts.name);
    if (!add_str(o, "format", VOLUME_FORMAT) || !add_num(o, "version", MANIFEST_VERSION) ||
        !add_str(o, "backup_id", m->backup_id) || !add_str(o, "statefulset", sts) ||
        !add_num(o, "ordinal", m->ordinal) || !add_str(o, "template", m->template_name) ||
        !add_str(o, "kind", volume_kind_name(m->kind)))
        return -ENOMEM;
    src = cJSON_AddObjectToObject(o, "source");
    if (!src || !add_str(src, "node", m->node) || !add_str(src, "path", m->path) ||
        (m->device[0] && !add_str(src, "device", m->device)) ||
        (m->pv[0] && !add_str(src, "pv", m->pv)) ||
        (m->claim[0] && !add_str(src, "claim", m->claim)))
        return -ENOMEM;
    if (!add_str(o, "object", m->object) || !add_str(o, "sha256", m->sha256) ||
        !add_num(o, "bytes_in", (double)m->bytes_in) ||
        !add_num(o, "bytes_stored", (double)m->bytes_stored) ||
        !add_num(o, "files", (double)m->files))
        return -ENOMEM;
    comp = cJSON_AddObjectToObject(o, "compression");
    if (!comp || !add_str(comp, "algorithm", "zstd") || !add_num(comp, "level", m->level) ||
        !add_num(comp, "threads", m->threads))
        return -ENOMEM;
    if (!add_num(o, "started_at", m->started_at) || !add_num(o, "finished_at", m->finished_at) ||
        !add_num(o, "seconds", m->seconds))
        return -ENOMEM;
    changed = cJSON_AddArrayToObject(o, "changed_files");
    if (!changed)
        return -ENOMEM;
    for (size_t i = 0; i < m->n_changed && i < MANIFEST_CHANGED_MAX; i++) {
        cJSON *c = cJSON_CreateObject();
        if (!c)
            return -ENOMEM;
        cJSON_AddItemToArray(changed, c);
        if (!add_str(c, "path", m->changed[i].path ? m->changed[i].path : "") ||
            !add_str(c, "reason", m->changed[i].reason ? m->changed[i].reason : ""))
            return -ENOMEM;
    }
    if (!add_num(o, "changed_files_total",
                 (double)MAX(m->n_changed_total, (uint64_t)m->n_changed)) ||
        !add_str(o, "tool_version", m->tool_version))
        return -ENOMEM;
    return print(o, ret);
}

int backup_manifest_format(const struct backup_manifest *m, char **ret)
{
    _cleanup_(cjson_deletep) cJSON *o = cJSON_CreateObject();
    cJSON *ords, *vols, *tot;
    char sts[sizeof(m->sts.ns) + sizeof(m->sts.name) + 1];

    if (!o)
        return -ENOMEM;
    snprintf(sts, sizeof(sts), "%s/%s", m->sts.ns, m->sts.name);
    if (!add_str(o, "format", BACKUP_FORMAT) || !add_num(o, "version", MANIFEST_VERSION) ||
        !add_str(o, "id", m->id) || !add_str(o, "time", m->time) ||
        !add_str(o, "statefulset", sts) || !add_str(o, "order", m->order) ||
        !add_str(o, "node", m->node))
        return -ENOMEM;
    ords = cJSON_AddArrayToObject(o, "ordinals");
    if (!ords)
        return -ENOMEM;
    for (size_t i = 0; i < m->n_ordinals; i++) {
        cJSON *n = cJSON_CreateNumber(m->ordinals[i]);
        if (!n)
            return -ENOMEM;
        cJSON_AddItemToArray(ords, n);
    }
    vols = cJSON_AddArrayToObject(o, "volumes");
    if (!vols)
        return -ENOMEM;
    for (size_t i = 0; i < m->n_volumes; i++) {
        const struct backup_volume *v = &m->volumes[i];
        cJSON *c = cJSON_CreateObject();
        if (!c)
            return -ENOMEM;
        cJSON_AddItemToArray(vols, c);
        if (!add_num(c, "ordinal", v->ordinal) || !add_str(c, "template", v->template_name) ||
            !add_str(c, "kind", volume_kind_name(v->kind)) || !add_str(c, "object", v->object) ||
            !add_str(c, "manifest", v->manifest) || !add_str(c, "sha256", v->sha256) ||
            !add_num(c, "bytes_in", (double)v->bytes_in) ||
            !add_num(c, "bytes_stored", (double)v->bytes_stored) ||
            !add_num(c, "files", (double)v->files) || !add_num(c, "started_at", v->started_at) ||
            !add_num(c, "finished_at", v->finished_at) || !add_num(c, "seconds", v->seconds))
            return -ENOMEM;
    }
    tot = cJSON_AddObjectToObject(o, "totals");
    if (!tot || !add_num(tot, "bytes_in", (double)m->bytes_in) ||
        !add_num(tot, "bytes_stored", (double)m->bytes_stored) ||
        !add_num(tot, "files", (double)m->files))
        return -ENOMEM;
    if (!add_num(o, "started_at", m->started_at) || !add_num(o, "finished_at", m->finished_at) ||
        !add_num(o, "seconds", m->seconds) || !add_str(o, "tool_version", m->tool_version) ||
        !add_str(o, "status", m->status))
        return -ENOMEM;
    if (m->n_objects > 0) {
        cJSON *objs = cJSON_AddArrayToObject(o, "objects");

        if (!objs)
            return -ENOMEM;
        for (size_t i = 0; i < m->n_objects && i < BACKUP_OBJECTS_MAX; i++) {
            cJSON *c = cJSON_CreateObject();
            if (!c)
                return -ENOMEM;
            cJSON_AddItemToArray(objs, c);
            if (!add_str(c, "kind", m->objects[i].kind) ||
                !add_str(c, "object", m->objects[i].object) ||
                !add_str(c, "sha256", m->objects[i].sha256))
                return -ENOMEM;
        }
    }
    return print(o, ret);
}

/* ---- strict parsing ---- */

struct pctx {
    ord_err *e;
    const char *doc; /* "volume manifest", "backup.json" */
};

static int bad(struct pctx *c, const char *field, const char *what)
{
    return err_set(c->e, -EBADMSG, "%s: field '%s' %s", c->doc, field, what);
}

static const cJSON *item(const cJSON *o, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(o, name);
}

/* Copies a string field into buf (size bytes with the NUL). Missing optional fields give "". */
static int get_str_any(struct pctx *c, const cJSON *o, const char *name, char *buf, size_t size,
                       bool required, bool allow_control)
{
    const cJSON *it = item(o, name);
    size_t len;

    buf[0] = '\0';
    if (!it) {
        if (required)
            return bad(c, name, "is missing");
        return 0;
    }
    if (!cJSON_IsString(it) || !it->valuestring)
        return bad(c, name, "must be a string");
    len = strlen(it->valuestring);
    if (len >= size)
        return bad(c, name, "is too long");
    for (size_t i = 0; i < len && !allow_control; i++)
        if ((unsigned char)it->valuestring[i] < 0x20 || it->valuestring[i] == 0x7f)
            return bad(c, name, "contains a control character");
    memcpy(buf, it->valuestring, len + 1);
    return 0;
}

/* Names, IDs, versions: no control characters. */
static int get_str(struct pctx *c, const cJSON *o, const char *name, char *buf, size_t size,
                   bool required)
{
    return get_str_any(c, o, name, buf, size, required, false);
}

/* File paths may hold any byte but NUL (a newline in a file name is legal). */
static int get_path(struct pctx *c, const cJSON *o, const char *name, char *buf, size_t size,
                    bool required)
{
    return get_str_any(c, o, name, buf, size, required, true);
}

static int get_uint(struct pctx *c, const cJSON *o, const char *name, uint64_t max, uint64_t *ret)
{
    const cJSON *it = item(o, name);
    double v;

    if (!it)
        return bad(c, name, "is missing");
    if (!cJSON_IsNumber(it))
        return bad(c, name, "must be a number");
    v = it->valuedouble;
    if (!isfinite(v) || v < 0 || v > (double)max || v != (double)(uint64_t)v)
        return bad(c, name, "must be a whole number within bounds");
    *ret = (uint64_t)v;
    return 0;
}

static int get_int(struct pctx *c, const cJSON *o, const char *name, int64_t min, int64_t max,
                   int64_t *ret)
{
    const cJSON *it = item(o, name);
    double v;

    if (!it)
        return bad(c, name, "is missing");
    if (!cJSON_IsNumber(it))
        return bad(c, name, "must be a number");
    v = it->valuedouble;
    if (!isfinite(v) || v < (double)min || v > (double)max || v != (double)(int64_t)v)
        return bad(c, name, "must be a whole number within bounds");
    *ret = (int64_t)v;
    return 0;
}

/* Times and durations: finite, not negative, before the year 5000. */
static int get_seconds(struct pctx *c, const cJSON *o, const char *name, double *ret)
{
    const cJSON *it = item(o, name);

    if (!it)
        return bad(c, name, "is missing");
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble) || it->valuedouble < 0 ||
        it->valuedouble > 1e11)
        return bad(c, name, "must be a number of seconds");
    *ret = it->valuedouble;
    return 0;
}

static int get_kind(struct pctx *c, const cJSON *o, enum volume_kind *ret)
{
    char kind[16];
    int r = get_str(c, o, "kind", kind, sizeof(kind), true);

    if (r < 0)
        return r;
    if (streq(kind, "directory"))
        *ret = VOLUME_DIRECTORY;
    else if (streq(kind, "device"))
        *ret = VOLUME_DEVICE;
    else
        return bad(c, "kind", "must be \"directory\" or \"device\"");
    return 0;
}

static int get_sha256(struct pctx *c, const cJSON *o, char *buf)
{
    int r = get_str(c, o, "sha256", buf, ENGINE_SHA256_HEX, true);

    if (r < 0)
        return r;
    if (strlen(buf) != ENGINE_SHA256_HEX - 1)
        return bad(c, "sha256", "must be 64 hexadecimal digits");
    for (size_t i = 0; buf[i]; i++)
        if (!((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f')))
            return bad(c, "sha256", "must be 64 lowercase hexadecimal digits");
    return 0;
}

static int get_template(struct pctx *c, const cJSON *o, char *buf, size_t size)
{
    int r = get_str(c, o, "template", buf, size, true);

    if (r < 0)
        return r;
    if (!names_dns_subdomain(buf))
        return bad(c, "template", "is not a DNS-1123 name");
    return 0;
}

static int get_sts(struct pctx *c, const cJSON *o, struct sts_ref *ret)
{
    char buf[NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 2];
    int r = get_str(c, o, "statefulset", buf, sizeof(buf), true);

    if (r < 0)
        return r;
    if (names_parse_sts(buf, ret, NULL) < 0)
        return bad(c, "statefulset", "is not NAMESPACE/NAME with DNS-1123 names");
    return 0;
}

static int get_ordinal(struct pctx *c, const cJSON *o, int32_t *ret)
{
    int64_t v;
    int r = get_int(c, o, "ordinal", 0, INT32_MAX, &v);

    if (r < 0)
        return r;
    *ret = (int32_t)v;
    return 0;
}

/* Checks that a relative name field equals the one derived from ordinal and template. */
static int get_derived(struct pctx *c, const cJSON *o, const char *name, const char *expect,
                       char *buf, size_t size)
{
    int r = get_str(c, o, name, buf, size, true);

    if (r < 0)
        return r;
    if (!streq(buf, expect))
        return bad(c, name, "does not match the volume's ordinal and template");
    return 0;
}

static int check_format(struct pctx *c, const cJSON *o, const char *format)
{
    char fmt[32];
    int64_t v;
    int r;

    if (!cJSON_IsObject(o))
        return err_set(c->e, -EBADMSG, "%s: not a JSON object", c->doc);
    r = get_str(c, o, "format", fmt, sizeof(fmt), true);
    if (r < 0)
        return r;
    if (!streq(fmt, format))
        return err_set(c->e, -EBADMSG, "%s: format is '%s', expected '%s'", c->doc, fmt, format);
    r = get_int(c, o, "version", 0, INT32_MAX, &v);
    if (r < 0)
        return r;
    if (v != MANIFEST_VERSION)
        return err_set(c->e, -EPROTONOSUPPORT,
                       "%s: format version %lld is not supported (this ordinal-backup reads "
                       "version %d)",
                       c->doc, (long long)v, MANIFEST_VERSION);
    return 0;
}

static cJSON *parse_text(const char *text, size_t len)
{
    if (len > MANIFEST_TEXT_MAX)
        return NULL;
    return cJSON_ParseWithLength(text, len);
}

static int parse_changed(struct pctx *c, const cJSON *o, struct volume_manifest *m)
{
    const cJSON *arr = item(o, "changed_files"), *it;
    int n;

    if (!arr)
        return 0;
    if (!cJSON_IsArray(arr))
        return bad(c, "changed_files", "must be an array");
    n = cJSON_GetArraySize(arr);
    if (n < 0 || n > MANIFEST_CHANGED_MAX)
        return bad(c, "changed_files", "has too many entries");
    if (n == 0)
        return 0;
    m->changed = calloc((size_t)n, sizeof(*m->changed));
    if (!m->changed)
        return err_set(c->e, -ENOMEM, "out of memory");
    cJSON_ArrayForEach(it, arr)
    {
        char path[MANIFEST_PATH_MAX], reason[256];
        int r;

        if (!cJSON_IsObject(it))
            return bad(c, "changed_files", "must hold objects");
        r = get_path(c, it, "path", path, sizeof(path), true);
        if (r >= 0)
            r = get_str(c, it, "reason", reason, sizeof(reason), true);
        if (r < 0)
            return r;
        struct changed_file *f = &m->changed[m->n_changed];
        f->path = strdup(path);
        f->reason = strdup(reason);
        m->n_changed++;
        if (!f->path || !f->reason)
            return err_set(c->e, -ENOMEM, "out of memory");
    }
    return 0;
}

static int volume_parse(struct pctx *c, const cJSON *o, struct volume_manifest *m)
{
    const cJSON *src, *comp;
    struct backup_id id;
    char expect[sizeof(m->object)], algo[16];
    int64_t v;
    int r;

    if ((r = check_format(c, o, VOLUME_FORMAT)) < 0)
        return r;
    if ((r = get_str(c, o, "backup_id", m->backup_id, sizeof(m->backup_id), true)) < 0)
        return r;
    if (id_parse(m->backup_id, &id) < 0)
        return bad(c, "backup_id", "is not a backup ID");
    if ((r = get_sts(c, o, &m->sts)) < 0 || (r = get_ordinal(c, o, &m->ordinal)) < 0 ||
        (r = get_template(c, o, m->template_name, sizeof(m->template_name))) < 0 ||
        (r = get_kind(c, o, &m->kind)) < 0)
        return r;

    src = item(o, "source");
    if (!cJSON_IsObject(src))
        return bad(c, "source", "must be an object");
    if ((r = get_str(c, src, "node", m->node, sizeof(m->node), true)) < 0 ||
        (r = get_path(c, src, "path", m->path, sizeof(m->path), true)) < 0 ||
        (r = get_path(c, src, "device", m->device, sizeof(m->device), false)) < 0 ||
        (r = get_str(c, src, "pv", m->pv, sizeof(m->pv), false)) < 0 ||
        (r = get_str(c, src, "claim", m->claim, sizeof(m->claim), false)) < 0)
        return r;
    if (m->pv[0] && !names_dns_subdomain(m->pv))
        return bad(c, "source.pv", "is not a DNS-1123 name");
    if (m->claim[0] && !names_dns_subdomain(m->claim))
        return bad(c, "source.claim", "is not a DNS-1123 name");

    if (manifest_object_name(expect, sizeof(expect), m->ordinal, m->template_name) < 0)
        return bad(c, "template", "is too long");
    if ((r = get_derived(c, o, "object", expect, m->object, sizeof(m->object))) < 0 ||
        (r = get_sha256(c, o, m->sha256)) < 0 ||
        (r = get_uint(c, o, "bytes_in", MANIFEST_UINT_MAX, &m->bytes_in)) < 0 ||
        (r = get_uint(c, o, "bytes_stored", MANIFEST_UINT_MAX, &m->bytes_stored)) < 0 ||
        (r = get_uint(c, o, "files", MANIFEST_UINT_MAX, &m->files)) < 0)
        return r;

    comp = item(o, "compression");
    if (!cJSON_IsObject(comp))
        return bad(c, "compression", "must be an object");
    if ((r = get_str(c, comp, "algorithm", algo, sizeof(algo), true)) < 0)
        return r;
    if (!streq(algo, "zstd"))
        return bad(c, "compression.algorithm", "must be \"zstd\"");
    if ((r = get_int(c, comp, "level", 1, 22, &v)) < 0)
        return r;
    m->level = (int)v;
    if ((r = get_int(c, comp, "threads", 0, 1024, &v)) < 0)
        return r;
    m->threads = (int)v;

    if ((r = get_seconds(c, o, "started_at", &m->started_at)) < 0 ||
        (r = get_seconds(c, o, "finished_at", &m->finished_at)) < 0 ||
        (r = get_seconds(c, o, "seconds", &m->seconds)) < 0)
        return r;
    if ((r = parse_changed(c, o, m)) < 0)
        return r;
    if ((r = get_uint(c, o, "changed_files_total", MANIFEST_UINT_MAX, &m->n_changed_total)) < 0)
        return r;
    if (m->n_changed_total < m->n_changed)
        return bad(c, "changed_files_total", "is smaller than the list");
    return get_str(c, o, "tool_version", m->tool_version, sizeof(m->tool_version), true);
}

int volume_manifest_parse(const char *text, size_t len, struct volume_manifest *ret, ord_err *e)
{
    struct pctx c = {.e = e, .doc = "volume manifest"};
    _cleanup_(cjson_deletep) cJSON *o = parse_text(text, len);
    struct volume_manifest m = {0};
    int r;

    if (!o)
        return err_set(e, -EBADMSG, "volume manifest: not valid JSON (or larger than %u bytes)",
                       MANIFEST_TEXT_MAX);
    r = volume_parse(&c, o, &m);
    if (r < 0) {
        volume_manifest_free(&m);
        return r;
    }
    *ret = m;
    return 0;
}

static int parse_volume_entry(struct pctx *c, const cJSON *o, struct backup_volume *v)
{
    char expect[sizeof(v->object)];
    int r;

    if (!cJSON_IsObject(o))
        return bad(c, "volumes", "must hold objects");
    if ((r = get_ordinal(c, o, &v->ordinal)) < 0 ||
        (r = get_template(c, o, v->template_name, sizeof(v->template_name))) < 0 ||
        (r = get_kind(c, o, &v->kind)) < 0)
        return r;
    if (manifest_object_name(expect, sizeof(expect), v->ordinal, v->template_name) < 0)
        return bad(c, "volumes.template", "is too long");
    if ((r = get_derived(c, o, "object", expect, v->object, sizeof(v->object))) < 0)
        return r;
    if (manifest_manifest_name(expect, sizeof(expect), v->ordinal, v->template_name) < 0)
        return bad(c, "volumes.template", "is too long");
    if ((r = get_derived(c, o, "manifest", expect, v->manifest, sizeof(v->manifest))) < 0 ||
        (r = get_sha256(c, o, v->sha256)) < 0 ||
        (r = get_uint(c, o, "bytes_in", MANIFEST_UINT_MAX, &v->bytes_in)) < 0 ||
        (r = get_uint(c, o, "bytes_stored", MANIFEST_UINT_MAX, &v->bytes_stored)) < 0 ||
        (r = get_uint(c, o, "files", MANIFEST_UINT_MAX, &v->files)) < 0 ||
        (r = get_seconds(c, o, "started_at", &v->started_at)) < 0 ||
        (r = get_seconds(c, o, "finished_at", &v->finished_at)) < 0 ||
        (r = get_seconds(c, o, "seconds", &v->seconds)) < 0)
        return r;
    return 0;
}

static int backup_parse(struct pctx *c, const cJSON *o, struct backup_manifest *m)
{
    const cJSON *arr, *it, *tot;
    struct backup_id id;
    time_t t;
    uint64_t sum_in = 0, sum_stored = 0, sum_files = 0, v;
    size_t n, k;
    int r;

    if ((r = check_format(c, o, BACKUP_FORMAT)) < 0)
        return r;
    if ((r = get_str(c, o, "id", m->id, sizeof(m->id), true)) < 0)
        return r;
    if (id_parse(m->id, &id) < 0)
        return bad(c, "id", "is not a backup ID");
    if ((r = get_str(c, o, "time", m->time, sizeof(m->time), true)) < 0)
        return r;
    if (time_parse_rfc3339(m->time, &t) < 0 || t != id.time)
        return bad(c, "time", "is not the RFC 3339 time of the ID");
    if ((r = get_sts(c, o, &m->sts)) < 0 ||
        (r = get_str(c, o, "order", m->order, sizeof(m->order), true)) < 0)
        return r;
    if (!streq(m->order, "reverse") && !streq(m->order, "ordinal"))
        return bad(c, "order", "must be \"reverse\" or \"ordinal\"");
    if ((r = get_str(c, o, "node", m->node, sizeof(m->node), true)) < 0)
        return r;

    arr = item(o, "ordinals");
    if (!cJSON_IsArray(arr))
        return bad(c, "ordinals", "must be an array");
    n = (size_t)MAX(cJSON_GetArraySize(arr), 0);
    if (n == 0 || n > MANIFEST_VOLUMES_MAX)
        return bad(c, "ordinals", "must hold 1 to 4096 ordinals");
    m->ordinals = calloc(n, sizeof(*m->ordinals));
    if (!m->ordinals)
        return err_set(c->e, -ENOMEM, "out of memory");
    cJSON_ArrayForEach(it, arr)
    {
        double d = it->valuedouble;
        if (!cJSON_IsNumber(it) || !isfinite(d) || d < 0 || d > INT32_MAX ||
            d != (double)(int32_t)d)
            return bad(c, "ordinals", "must hold whole numbers 0..2147483647");
        for (size_t i = 0; i < m->n_ordinals; i++)
            if (m->ordinals[i] == (int32_t)d)
                return bad(c, "ordinals", "lists an ordinal twice");
        m->ordinals[m->n_ordinals++] = (int32_t)d;
    }

    arr = item(o, "volumes");
    if (!cJSON_IsArray(arr))
        return bad(c, "volumes", "must be an array");
    n = (size_t)MAX(cJSON_GetArraySize(arr), 0);
    if (n == 0 || n > MANIFEST_VOLUMES_MAX)
        return bad(c, "volumes", "must hold 1 to 4096 volumes");
    m->volumes = calloc(n, sizeof(*m->volumes));
    if (!m->volumes)
        return err_set(c->e, -ENOMEM, "out of memory");
    /* Volumes come grouped by ordinal, the groups in the order of "ordinals". */
    k = 0;
    cJSON_ArrayForEach(it, arr)
    {
        struct backup_volume *bv = &m->volumes[m->n_volumes];

        if ((r = parse_volume_entry(c, it, bv)) < 0)
            return r;
        for (size_t i = 0; i < m->n_volumes; i++)
            if (m->volumes[i].ordinal == bv->ordinal &&
                streq(m->volumes[i].template_name, bv->template_name))
                return bad(c, "volumes", "lists a volume twice");
        if (m->n_volumes > 0 && m->volumes[m->n_volumes - 1].ordinal != bv->ordinal)
            k++;
        if (k >= m->n_ordinals || m->ordinals[k] != bv->ordinal)
            return bad(c, "volumes", "do not follow the order of \"ordinals\"");
        m->n_volumes++;
        sum_in += bv->bytes_in;
        sum_stored += bv->bytes_stored;
        sum_files += bv->files;
        if (sum_in > MANIFEST_UINT_MAX || sum_stored > MANIFEST_UINT_MAX ||
            sum_files > MANIFEST_UINT_MAX)
            return bad(c, "volumes", "sizes add up beyond bounds");
    }
    if (k + 1 != m->n_ordinals)
        return bad(c, "ordinals", "lists an ordinal without volumes");

    tot = item(o, "totals");
    if (!cJSON_IsObject(tot))
        return bad(c, "totals", "must be an object");
    if ((r = get_uint(c, tot, "bytes_in", MANIFEST_UINT_MAX, &v)) < 0)
        return r;
    m->bytes_in = v;
    if ((r = get_uint(c, tot, "bytes_stored", MANIFEST_UINT_MAX, &v)) < 0)
        return r;
    m->bytes_stored = v;
    if ((r = get_uint(c, tot, "files", MANIFEST_UINT_MAX, &v)) < 0)
        return r;
    m->files = v;
    if (m->bytes_in != sum_in || m->bytes_stored != sum_stored || m->files != sum_files)
        return bad(c, "totals", "do not equal the sums of the volumes");
    if ((r = get_seconds(c, o, "started_at", &m->started_at)) < 0 ||
        (r = get_seconds(c, o, "finished_at", &m->finished_at)) < 0 ||
        (r = get_seconds(c, o, "seconds", &m->seconds)) < 0 ||
        (r = get_str(c, o, "tool_version", m->tool_version, sizeof(m->tool_version), true)) < 0 ||
        (r = get_str(c, o, "status", m->status, sizeof(m->status), true)) < 0)
        return r;
    if (!streq(m->status, "complete"))
        return bad(c, "status", "must be \"complete\"");

    /* Optional: the Kubernetes objects stored with a cluster backup. Names are re-checked
     * (a plain file name of the backup, one per kind) rather than trusted. */
    arr = item(o, "objects");
    if (arr) {
        if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > BACKUP_OBJECTS_MAX)
            return bad(c, "objects", "must be an array of at most 4 objects");
        cJSON_ArrayForEach(it, arr)
        {
            struct backup_object *bo = &m->objects[m->n_objects];

            if (!cJSON_IsObject(it))
                return bad(c, "objects", "must hold objects");
            if ((r = get_str(c, it, "kind", bo->kind, sizeof(bo->kind), true)) < 0 ||
                (r = get_str(c, it, "object", bo->object, sizeof(bo->object), true)) < 0 ||
                (r = get_str(c, it, "sha256", bo->sha256, sizeof(bo->sha256), true)) < 0)
                return r;
            if (!(streq(bo->kind, "StatefulSet") && streq(bo->object, "statefulset.json")) &&
                !(streq(bo->kind, "Service") && streq(bo->object, "service.json")))
                return bad(c, "objects",
                           "must name statefulset.json (StatefulSet) or service.json (Service)");
            for (size_t i = 0; i < m->n_objects; i++)
                if (streq(m->objects[i].kind, bo->kind))
                    return bad(c, "objects", "lists a kind twice");
            m->n_objects++;
        }
    }
    return 0;
}

int backup_manifest_parse(const char *text, size_t len, struct backup_manifest *ret, ord_err *e)
{
    struct pctx c = {.e = e, .doc = "backup.json"};
    _cleanup_(cjson_deletep) cJSON *o = parse_text(text, len);
    struct backup_manifest m = {0};
    int r;

    if (!o)
        return err_set(e, -EBADMSG, "backup.json: not valid JSON (or larger than %u bytes)",
                       MANIFEST_TEXT_MAX);
    r = backup_parse(&c, o, &m);
    if (r < 0) {
        backup_manifest_free(&m);
        return r;
    }
    *ret = m;
    return 0;
}

int manifest_agree(const struct backup_manifest *b, const struct backup_volume *v,
                   const struct volume_manifest *m, ord_err *e)
{
    const char *what = NULL;

    if (!streq(m->backup_id, b->id))
        what = "backup ID";
    else if (!streq(m->sts.ns, b->sts.ns) || !streq(m->sts.name, b->sts.name))
        what = "StatefulSet";
    else if (m->ordinal != v->ordinal)
        what = "ordinal";
    else if (!streq(m->template_name, v->template_name))
        what = "template";
    else if (m->kind != v->kind)
        what = "kind";
    else if (!streq(m->object, v->object))
        what = "object";
    else if (!streq(m->sha256, v->sha256))
        what = "SHA-256";
    else if (m->bytes_stored != v->bytes_stored)
        what = "stored size";
    else if (m->bytes_in != v->bytes_in)
        what = "content size";
    else if (m->files != v->files)
        what = "file count";
    if (what)
        return err_set(e, -EBADMSG,
                       "the manifest of ordinal %d volume '%s' disagrees with backup.json (%s)",
                       (int)v->ordinal, v->template_name, what);
    return 0;
}
