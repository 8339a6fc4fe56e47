/*
 * json.h - small helpers over cJSON for the edges that decode Kubernetes objects into typed
 * structs: bounded parsing, typed getters with range checks, nested lookups, and a few build
 * helpers. Nothing here logs; getters never allocate.
 *
 * Paths: json_path() takes a dotted path ("metadata.name", "spec.claimRef.uid"). Keys that
 * themselves contain dots (annotations such as "pv.kubernetes.io/provisioned-by") are looked up
 * with json_pathv(), which takes the keys one by one, NULL-terminated. Array elements are
 * reached with json_index() or cJSON_ArrayForEach.
 *
 * cJSON stores numbers as double: json_get_int64() refuses non-integral values and anything
 * from +-2^53 on, where a double stops being exact.
 */
#ifndef ORDINAL_JSON_H
#define ORDINAL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "err.h"
#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(cJSON *, cJSON_Delete)
/* Use as `_cleanup_(cJSON_Deletep) cJSON *obj = NULL;` */

#define JSON_INT_EXACT_MAX ((int64_t)1 << 53) /* exclusive */

/*
 * Parses len bytes (need not be NUL-terminated; the whole buffer must be one JSON value, with
 * optional surrounding whitespace). Returns 0 and the tree (owned by the caller), -EBADMSG with
 * the position of the error in e for invalid JSON, -ENOMEM.
 */
int json_parse(const char *buf, size_t len, cJSON **ret, ord_err *e);

/* The value at a dotted path, or NULL when any step is missing or not an object. */
const cJSON *json_path(const cJSON *root, const char *path);

/* The value under the keys given one by one (NULL-terminated), or NULL. */
const cJSON *json_pathv(const cJSON *root, ...) __attribute__((sentinel));

/* The string at path, or NULL when absent or not a string. Borrowed from root. */
const char *json_string(const cJSON *root, const char *path);

/*
 * Typed getters. Returns 0 and the value, -ENOENT when the path is absent (or null),
 * -EINVAL when it has another type (or is not integral), -ERANGE when out of [min, max] or
 * longer than max_len bytes.
 */
int json_get_string(const cJSON *root, const char *path, size_t max_len, const char **ret);
int json_get_int64(const cJSON *root, const char *path, int64_t min, int64_t max, int64_t *ret);
int json_get_bool(const cJSON *root, const char *path, bool *ret);

/* Like the getters, but on a value already looked up (e.g. an array element). */
int json_value_int64(const cJSON *v, int64_t min, int64_t max, int64_t *ret);

/* The i-th element of an array, or NULL. */
const cJSON *json_index(const cJSON *array, size_t i);

/* Number of elements of an array (0 when v is not an array). */
size_t json_array_len(const cJSON *v);

/*
 * Build helpers. Each replaces an existing member of that name. Returns 0 or -ENOMEM
 * (-EINVAL when obj is not an object).
 */
int json_set_string(cJSON *obj, const char *key, const char *value);
int json_set_int64(cJSON *obj, const char *key, int64_t value);
int json_set_bool(cJSON *obj, const char *key, bool value);
int json_set_null(cJSON *obj, const char *key);
/* Adds item under key, taking ownership of item in every case (freed on failure). */
int json_set_item(cJSON *obj, const char *key, cJSON *item);

/*
 * The object under key, created empty when absent. Returns it (borrowed from obj), or NULL
 * on -ENOMEM or when a non-object value of that name exists.
 */
cJSON *json_ensure_object(cJSON *obj, const char *key);

/* Compact serialisation. Returns a malloc'd string the caller frees, or NULL on -ENOMEM. */
char *json_print(const cJSON *v);

#endif
