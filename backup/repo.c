/*
 * repo.c - see repo.h: URL parsing, backend dispatch, the repository format check, key
 * builders, and the stream/small-object helpers every backend shares.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "id.h"
#include "repo.h"
#include "repo_s3.h"
#include "version.h"

static void cjson_deletep(cJSON **p)
{
    if (*p)
        cJSON_Delete(*p);
}

bool repo_key_valid(const char *key)
{
    size_t len = strnlen(key, REPO_KEY_MAX + 1);
    const char *p = key;

    if (len == 0 || len > REPO_KEY_MAX)
        return false;
    for (;;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || p[0] == '.')
            return false;
        for (size_t i = 0; i < n; i++) {
            char c = p[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-'))
                return false;
        }
        if (!p[n])
            return true;
        p += n + 1;
    }
}

static int key_printf(char *buf, size_t size, const char *fmt, ...) _printf_(3, 4);
static int key_printf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= size || (size_t)n > REPO_KEY_MAX)
        return -ENAMETOOLONG;
    return 0;
}

int repo_key_backup_dir(char *buf, size_t size, const char *ns, const char *sts, const char *id)
{
    return key_printf(buf, size, "backups/%s/%s/%s", ns, sts, id);
}

int repo_key_backup_json(char *buf, size_t size, const char *ns, const char *sts, const char *id)
{
    return key_printf(buf, size, "backups/%s/%s/%s/backup.json", ns, sts, id);
}

int repo_key_volume(char *buf, size_t size, const char *ns, const char *sts, const char *id,
                    int32_t ordinal, const char *tmpl, const char *suffix)
{
    return key_printf(buf, size, "backups/%s/%s/%s/ordinal-%d/%s%s", ns, sts, id, (int)ordinal,
                      tmpl, suffix);
}

int repo_key_lock(char *buf, size_t size, const char *ns, const char *sts)
{
    return key_printf(buf, size, "locks/%s/%s.lock", ns, sts);
}

/* ordinal-repo.json: {"format":"ordinal-repository","version":1,"created":…,"tool_version":…} */
static int config_write(struct repo *r, ord_err *e)
{
    _cleanup_(cjson_deletep) cJSON *o = cJSON_CreateObject();
    _cleanup_free_ char *text = NULL;
    char created[32];
    int ret;

    if (!o || time_format_rfc3339(time(NULL), created, sizeof(created)) < 0)
        return err_set(e, -ENOMEM, "out of memory");
    if (!cJSON_AddStringToObject(o, "format", "ordinal-repository") ||
        !cJSON_AddNumberToObject(o, "version", REPO_FORMAT_VERSION) ||
        !cJSON_AddStringToObject(o, "created", created) ||
        !cJSON_AddStringToObject(o, "tool_version", ORDINAL_VERSION))
        return err_set(e, -ENOMEM, "out of memory");
    text = cJSON_Print(o);
    if (!text)
        return err_set(e, -ENOMEM, "out of memory");
    ret = repo_create_excl(r, REPO_CONFIG_KEY, text, strlen(text), e);
    /* Another backup initialised it at the same moment: its config is checked by the caller. */
    if (ret == -EEXIST) {
        err_clear(e);
        return 0;
    }
    return ret;
}

/* Returns 0 for a config of our format and version, else a negative errno with e filled. */
static int config_check(struct repo *r, ord_err *e)
{
    _cleanup_free_ char *text = NULL;
    _cleanup_(cjson_deletep) cJSON *o = NULL;
    const cJSON *fmt, *ver;
    size_t len;
    int ret;

    ret = repo_get_small(r, REPO_CONFIG_KEY, (size_t)64 * 1024, &text, &len, e);
    if (ret < 0)
        return ret;
    o = cJSON_ParseWithLength(text, len);
    if (!o || !cJSON_IsObject(o))
        return err_set(e, -EBADMSG, "'%s' is damaged: %s is not a JSON object", r->url,
                       REPO_CONFIG_KEY);
    fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
    ver = cJSON_GetObjectItemCaseSensitive(o, "version");
    if (!cJSON_IsString(fmt) || !streq(fmt->valuestring, "ordinal-repository") ||
        !cJSON_IsNumber(ver))
        return err_set(e, -EBADMSG, "'%s' is not an ordinal repository: %s has no format/version",
                       r->url, REPO_CONFIG_KEY);
    if (ver->valuedouble != REPO_FORMAT_VERSION)
        return err_set(e, -EPROTONOSUPPORT,
                       "repository '%s' has format version %g, which this ordinal-backup (%s) "
                       "does not understand (it reads version %d); use a matching ordinal-backup",
                       r->url, ver->valuedouble, ORDINAL_VERSION, REPO_FORMAT_VERSION);
    return 0;
}

/*
 * deploy/backup-config.yaml ships ORDINAL_REPO as a placeholder ("s3://CHANGE-ME-bucket/...").
 * An install that never set it must fail at start with what to do, not later with an S3 error
 * (or, for a path, quietly write somewhere nobody looks).
 */
#define REPO_PLACEHOLDER "CHANGE-ME"

int repo_open(const char *url, enum repo_open_mode mode, struct repo **ret, ord_err *e)
{
    _cleanup_(repo_closep) struct repo *r = NULL;
    const struct repo_backend *ops;
    const char *location;
    int rc;

    if (!url || !url[0])
        return err_set(e, -EINVAL, "the repository URL is empty");
    if (strstr(url, REPO_PLACEHOLDER))
        return err_set(e, -EINVAL,
                       "repository '%s' is the placeholder of deploy/backup-config.yaml, not a "
                       "repository: set ORDINAL_REPO to your bucket/prefix or shared directory in "
                       "a kustomize overlay (docs/examples/overlay/, docs/install.md) and apply "
                       "it, or give --repo",
                       url);
    ops = &repo_file_backend;
    if (strncmp(url, "s3://", 5) == 0) {
        location = url + 5;
        ops = &repo_s3_backend;
    } else if (strncmp(url, "file://", 7) == 0) {
        location = url + 7;
        if (location[0] != '/')
            return err_set(e, -EINVAL,
                           "repository '%s': a file URL must be file:///absolute/path (no host)",
                           url);
    } else if (url[0] == '/') {
        location = url;
    } else if (strstr(url, "://")) {
        return err_set(e, -EINVAL,
                       "repository '%s': unknown URL scheme; use an absolute path, file:///path "
                       "or s3://bucket/prefix",
                       url);
    } else {
        return err_set(e, -EINVAL,
                       "repository '%s': a directory repository must be an absolute path "
                       "(or file:///path)",
                       url);
    }

    r = calloc(1, sizeof(*r));
    if (!r)
        return err_set(e, -ENOMEM, "out of memory");
    r->ops = ops;
    snprintf(r->url, sizeof(r->url), "%s", url);
    rc = ops->open(location, mode == REPO_OPEN_CREATE, &r->state, e);
    if (rc < 0)
        return err_wrap(e, rc, "repository '%s'", url);

    rc = config_check(r, e);
    if (rc == -ENOENT) {
        err_clear(e);
        if (mode != REPO_OPEN_CREATE)
            return err_set(e, -ENOENT,
                           "'%s' is not an ordinal repository (it has no %s); 'ordinal-backup "
                           "backup' creates one on its first backup",
                           url, REPO_CONFIG_KEY);
        rc = ops->is_empty(r->state, e);
        if (rc < 0)
            return err_wrap(e, rc, "repository '%s'", url);
        if (rc == 0)
            return err_set(e, -ENOTEMPTY,
                           "'%s' is not empty and is not an ordinal repository (no %s); choose "
                           "an empty or new directory",
                           url, REPO_CONFIG_KEY);
        rc = config_write(r, e);
        if (rc < 0)
            return err_wrap(e, rc, "initialising repository '%s'", url);
        rc = config_check(r, e);
    }
    if (rc < 0)
        return rc;
    *ret = TAKE_PTR(r);
    return 0;
}

void repo_close(struct repo *r)
{
    if (!r)
        return;
    if (r->state)
        r->ops->close(r->state);
    free(r);
}

static int check_key(const char *key, ord_err *e)
{
    if (!repo_key_valid(key))
        return err_set(e, -EINVAL, "invalid repository key '%.200s'", key);
    return 0;
}

int repo_put_begin(struct repo *r, const char *key, struct repo_writer **ret, ord_err *e)
{
    _cleanup_free_ struct repo_writer *w = NULL;
    int rc = check_key(key, e);

    if (rc < 0)
        return rc;
    w = calloc(1, sizeof(*w));
    if (!w)
        return err_set(e, -ENOMEM, "out of memory");
    w->repo = r;
    snprintf(w->key, sizeof(w->key), "%s", key);
    rc = r->ops->put_begin(r->state, key, &w->w, e);
    if (rc < 0)
        return rc;
    *ret = TAKE_PTR(w);
    return 0;
}

int repo_writer_commit(struct repo_writer *w, ord_err *e)
{
    int rc = w->repo->ops->put_commit(w->w, e);

    free(w);
    return rc;
}

void repo_writer_abort(struct repo_writer *w)
{
    if (!w)
        return;
    w->repo->ops->put_abort(w->w);
    free(w);
}

static int sink_write(void *ctx, const void *buf, size_t len, ord_err *e)
{
    struct repo_writer *w = ctx;

    return w->repo->ops->put_write(w->w, buf, len, e);
}

struct byte_sink repo_writer_sink(struct repo_writer *w)
{
    return (struct byte_sink){.write = sink_write, .ctx = w};
}

int repo_get_open(struct repo *r, const char *key, struct repo_reader **ret, ord_err *e)
{
    _cleanup_free_ struct repo_reader *rd = NULL;
    int rc = check_key(key, e);

    if (rc < 0)
        return rc;
    rd = calloc(1, sizeof(*rd));
    if (!rd)
        return err_set(e, -ENOMEM, "out of memory");
    rd->repo = r;
    rc = r->ops->get_open(r->state, key, &rd->size, &rd->r, e);
    if (rc < 0)
        return rc;
    *ret = TAKE_PTR(rd);
    return 0;
}

void repo_reader_close(struct repo_reader *rd)
{
    if (!rd)
        return;
    rd->repo->ops->get_close(rd->r);
    free(rd);
}

static ssize_t source_read(void *ctx, void *buf, size_t len, ord_err *e)
{
    struct repo_reader *rd = ctx;

    return rd->repo->ops->get_read(rd->r, buf, len, e);
}

struct byte_source repo_reader_source(struct repo_reader *rd)
{
    return (struct byte_source){.read = source_read, .ctx = rd};
}

int repo_get_small(struct repo *r, const char *key, size_t max, char **ret, size_t *ret_len,
                   ord_err *e)
{
    _cleanup_(repo_reader_closep) struct repo_reader *rd = NULL;
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    int rc;

    rc = repo_get_open(r, key, &rd, e);
    if (rc < 0)
        return rc;
    if (rd->size > max)
        return err_set(e, -EFBIG, "'%s' is too large (%llu bytes, at most %zu)", key,
                       (unsigned long long)rd->size, max);
    buf = malloc((size_t)rd->size + 1);
    if (!buf)
        return err_set(e, -ENOMEM, "out of memory");
    /* Read one byte more than announced, to notice an object that grew. */
    for (;;) {
        ssize_t n;

        if (len > (size_t)rd->size)
            return err_set(e, -EFBIG, "'%s' changed size while being read", key);
        n = r->ops->get_read(rd->r, buf + len, (size_t)rd->size + 1 - len, e);
        if (n < 0)
            return (int)n;
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *ret = TAKE_PTR(buf);
    if (ret_len)
        *ret_len = len;
    return 0;
}

int repo_put_small(struct repo *r, const char *key, const void *buf, size_t len, ord_err *e)
{
    struct repo_writer *w = NULL;
    int rc;

    rc = repo_put_begin(r, key, &w, e);
    if (rc < 0)
        return rc;
    rc = r->ops->put_write(w->w, buf, len, e);
    if (rc < 0) {
        repo_writer_abort(w);
        return rc;
    }
    return repo_writer_commit(w, e);
}

int repo_create_excl(struct repo *r, const char *key, const void *buf, size_t len, ord_err *e)
{
    int rc = check_key(key, e);

    return rc < 0 ? rc : r->ops->create_excl(r->state, key, buf, len, e);
}

int repo_remove_if(struct repo *r, const char *key, const void *expect, size_t len, ord_err *e)
{
    int rc = check_key(key, e);

    return rc < 0 ? rc : r->ops->remove_if(r->state, key, expect, len, e);
}

int repo_list(struct repo *r, const char *prefix, repo_list_fn fn, void *ctx, ord_err *e)
{
    if (prefix[0]) {
        int rc = check_key(prefix, e);
        if (rc < 0)
            return rc;
    }
    return r->ops->list(r->state, prefix, fn, ctx, e);
}

int repo_remove(struct repo *r, const char *key, ord_err *e)
{
    int rc = check_key(key, e);

    return rc < 0 ? rc : r->ops->remove(r->state, key, e);
}

int repo_remove_prefix(struct repo *r, const char *prefix, ord_err *e)
{
    int rc = check_key(prefix, e);

    return rc < 0 ? rc : r->ops->remove_prefix(r->state, prefix, e);
}

struct check_dir {
    char key[REPO_KEY_MAX + 1];
    bool recursive;
};

static int check_dir_add(struct check_dir *d, size_t *n, bool recursive, const char *a,
                         const char *b, const char *c)
{
    const char *parts[] = {a, b, c};
    size_t len = 0;

    d[*n].key[0] = '\0';
    for (size_t i = 0; i < ARRAY_SIZE(parts) && parts[i]; i++) {
        int k = snprintf(d[*n].key + len, sizeof(d[*n].key) - len, "%s%s", i ? "/" : "", parts[i]);
        if (k < 0 || (size_t)k >= sizeof(d[*n].key) - len)
            return -ENAMETOOLONG;
        len += (size_t)k;
    }
    d[(*n)++].recursive = recursive;
    return 0;
}

int repo_check_writable(struct repo *r, const char *ns, const char *sts, const char *id,
                        unsigned scope, ord_err *e)
{
    struct check_dir dirs[8];
    size_t n = 0;
    bool all = !ns || !sts, tree = scope & REPO_WRITE_TREE;
    int rc = 0;

    if (!r->ops->check_writable)
        return 0;
    /* Parents before children, so the message names the highest directory at fault. */
    dirs[n].key[0] = '\0';
    dirs[n++].recursive = false;
    if (scope & REPO_WRITE_LOCK) {
        rc = check_dir_add(dirs, &n, all && tree, "locks", NULL, NULL);
        if (rc == 0 && !all)
            rc = check_dir_add(dirs, &n, false, "locks", ns, NULL);
    }
    if (rc == 0 && (scope & (REPO_WRITE_BACKUPS | REPO_WRITE_TREE))) {
        rc = check_dir_add(dirs, &n, all && tree, "backups", NULL, NULL);
        if (rc == 0 && !all)
            rc = check_dir_add(dirs, &n, false, "backups", ns, NULL);
        if (rc == 0 && !all)
            rc = check_dir_add(dirs, &n, false, "backups", ns, sts);
        /* the StatefulSet's backups, each checked whole (prune), or the one being written */
        if (rc == 0 && !all && tree)
            dirs[n - 1].recursive = true;
        else if (rc == 0 && !all && id) {
            char sub[REPO_KEY_MAX + 1];
            snprintf(sub, sizeof(sub), "%s/%s", sts, id);
            rc = check_dir_add(dirs, &n, false, "backups", ns, sub);
        }
    }
    if (rc < 0)
        return err_set(e, rc, "a repository key is too long");
    for (size_t i = 0; i < n; i++) {
        rc = r->ops->check_writable(r->state, dirs[i].key, dirs[i].recursive, e);
        if (rc < 0)
            return err_wrap(e, rc, "refused, nothing was changed: repository '%s'", r->url);
    }
    return 0;
}

void repo_explain_denied(struct repo *r, const char *key, int code, ord_err *e)
{
    char dir[REPO_KEY_MAX + 1];
    const char *slash = strrchr(key, '/');
    ord_err why = {0};

    if ((code != -EACCES && code != -EPERM) || !r->ops->check_writable || !e)
        return;
    snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - key) : 0, key);
    /* The deepest existing directory on the way to key is the one that refused. */
    for (;;) {
        if (r->ops->check_writable(r->state, dir, false, &why) < 0) {
            err_append(e, "%s", err_msg(&why));
            return;
        }
        if (!dir[0])
            return;
        slash = strrchr(dir, '/');
        if (slash)
            dir[slash - dir] = '\0';
        else
            dir[0] = '\0';
    }
}

int repo_check_url_writable(const char *url, ord_err *e)
{
    _cleanup_(repo_closep) struct repo *r = NULL;
    int rc = repo_open(url, REPO_OPEN_EXISTING, &r, e);

    if (rc == -ENOENT) { /* no repository yet: its first backup creates it */
        err_clear(e);
        return 0;
    }
    if (rc < 0)
        return rc;
    return repo_check_writable(r, NULL, NULL, NULL, REPO_WRITE_BACKUPS, e);
}
