/*
 * json.c - see json.h. Thin, bounded wrappers over cJSON: lookups never allocate and never
 * trust the type of what the network sent.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "json.h"

int json_parse(const char *buf, size_t len, cJSON **ret, ord_err *e)
{
    const char *end = NULL;
    cJSON *v;

    if (!buf || len == 0)
        return err_set(e, -EBADMSG, "empty JSON document");
    v = cJSON_ParseWithLengthOpts(buf, len, &end, false);
    if (!v) {
        size_t off = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0;
        return err_set(e, -EBADMSG, "invalid JSON at byte %zu", off);
    }
    /* Only whitespace may follow the value. */
    if (end) {
        for (const char *p = end; p < buf + len; p++) {
            if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n' && *p != '\0') {
                cJSON_Delete(v);
                return err_set(e, -EBADMSG, "trailing data after JSON value at byte %zu",
                               (size_t)(p - buf));
            }
        }
    }
    *ret = v;
    return 0;
}

/* Case-sensitive member lookup (Kubernetes keys are case-sensitive). */
static const cJSON *member(const cJSON *obj, const char *key, size_t keylen)
{
    const cJSON *it;

    if (!cJSON_IsObject(obj))
        return NULL;
    cJSON_ArrayForEach(it, obj)
    {
        if (it->string && strlen(it->string) == keylen && memcmp(it->string, key, keylen) == 0)
            return it;
    }
    return NULL;
}

const cJSON *json_path(const cJSON *root, const char *path)
{
    const cJSON *cur = root;
    const char *p = path;

    if (!root || !path)
        return NULL;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        cur = member(cur, p, n);
        if (!cur || !dot)
            return cur;
        p = dot + 1;
    }
}

const cJSON *json_pathv(const cJSON *root, ...)
{
    const cJSON *cur = root;
    const char *key;
    va_list ap;

    va_start(ap, root);
    while (cur && (key = va_arg(ap, const char *)))
        cur = member(cur, key, strlen(key));
    va_end(ap);
    return cur;
}

const char *json_string(const cJSON *root, const char *path)
{
    const cJSON *v = json_path(root, path);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int json_get_string(const cJSON *root, const char *path, size_t max_len, const char **ret)
{
    const cJSON *v = json_path(root, path);

    if (!v || cJSON_IsNull(v))
        return -ENOENT;
    if (!cJSON_IsString(v) || !v->valuestring)
        return -EINVAL;
    if (strnlen(v->valuestring, max_len + 1) > max_len)
        return -ERANGE;
    *ret = v->valuestring;
    return 0;
}

int json_value_int64(const cJSON *v, int64_t min, int64_t max, int64_t *ret)
{
    double d;

    if (!v || cJSON_IsNull(v))
        return -ENOENT;
    if (!cJSON_IsNumber(v))
        return -EINVAL;
    d = v->valuedouble;
    if (!isfinite(d) || d != floor(d))
        return -EINVAL;
    /* 2^53 itself may be a rounded 2^53 + 1. */
    if (d >= (double)JSON_INT_EXACT_MAX || d <= -(double)JSON_INT_EXACT_MAX)
        return -ERANGE;
    if ((int64_t)d < min || (int64_t)d > max)
        return -ERANGE;
    *ret = (int64_t)d;
    return 0;
}

int json_get_int64(const cJSON *root, const char *path, int64_t min, int64_t max, int64_t *ret)
{
    return json_value_int64(json_path(root, path), min, max, ret);
}

int json_get_bool(const cJSON *root, const char *path, bool *ret)
{
    const cJSON *v = json_path(root, path);

    if (!v || cJSON_IsNull(v))
        return -ENOENT;
    if (!cJSON_IsBool(v))
        return -EINVAL;
    *ret = cJSON_IsTrue(v);
    return 0;
}

const cJSON *json_index(const cJSON *array, size_t i)
{
    const cJSON *it;

    if (!cJSON_IsArray(array))
        return NULL;
    cJSON_ArrayForEach(it, array)
    {
        if (i-- == 0)
            return it;
    }
    return NULL;
}

size_t json_array_len(const cJSON *v)
{
    const cJSON *it;
    size_t n = 0;

    if (!cJSON_IsArray(v))
        return 0;
    cJSON_ArrayForEach(it, v) n++;
    return n;
}

int json_set_item(cJSON *obj, const char *key, cJSON *item)
{
    if (!item)
        return -ENOMEM;
    if (!cJSON_IsObject(obj)) {
        cJSON_Delete(item);
        return -EINVAL;
    }
    if (cJSON_GetObjectItemCaseSensitive(obj, key)) {
        if (!cJSON_ReplaceItemInObjectCaseSensitive(obj, key, item)) {
            cJSON_Delete(item);
            return -ENOMEM;
        }
        return 0;
    }
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return -ENOMEM;
    }
    return 0;
}

int json_set_string(cJSON *obj, const char *key, const char *value)
{
    return json_set_item(obj, key, cJSON_CreateString(value));
}

int json_set_int64(cJSON *obj, const char *key, int64_t value)
{
    return json_set_item(obj, key, cJSON_CreateNumber((double)value));
}

int json_set_bool(cJSON *obj, const char *key, bool value)
{
    return json_set_item(obj, key, cJSON_CreateBool(value));
}

int json_set_null(cJSON *obj, const char *key)
{
    return json_set_item(obj, key, cJSON_CreateNull());
}

cJSON *json_ensure_object(cJSON *obj, const char *key)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

    if (v)
        return cJSON_IsObject(v) ? v : NULL;
    if (!cJSON_IsObject(obj))
        return NULL;
    v = cJSON_CreateObject();
    if (!v)
        return NULL;
    if (!cJSON_AddItemToObject(obj, key, v)) {
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}

char *json_print(const cJSON *v)
{
    return cJSON_PrintUnformatted(v);
}
