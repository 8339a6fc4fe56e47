/*
 * test_cluster_objects.c - the parts of the cluster-mode decode edge a cluster restore relies on
 * to fail safe: the restore record (ConfigMap ordinal-restores: a missing or bad value is told
 * apart from a count), the legacy annotation and uid of a StatefulSet, and the Event posted on
 * a failed restore (a valid core/v1 Event about the StatefulSet, its message cut at 1 KiB on a
 * UTF-8 character boundary).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cluster_objects.h"
#include "json.h"
#include "macro.h"

static cJSON *parse(const char *text)
{
    cJSON *o = cJSON_Parse(text);

    assert_non_null(o);
    return o;
}

static void test_record_key_and_value(void **state)
{
    struct sts_ref sts = {.ns = "default", .name = "web.db"};
    char key[NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 2];
    int32_t n = -1;
    cJSON *cm;

    (void)state;
    cobj_restore_record_key(&sts, key, sizeof(key));
    assert_string_equal(key, "default.web.db"); /* the namespace has no dot: unambiguous */
    cm = parse("{\"data\":{\"default.web.db\":\"3\",\"default.zero\":\"0\",\"x.neg\":\"-1\","
               "\"x.word\":\"three\",\"x.empty\":\"\",\"x.num\":3,\"x.big\":\"99999999999\"}}");
    assert_int_equal(cobj_restore_record_get(cm, key, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(cobj_restore_record_get(cm, "default.zero", &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(cobj_restore_record_get(cm, "default.other", &n), -ENOENT);
    assert_int_equal(cobj_restore_record_get(NULL, key, &n), -ENOENT);
    for (const char *const *k =
             (const char *const[]){"x.neg", "x.word", "x.empty", "x.num", "x.big", NULL};
         *k; k++) {
        n = 42;
        assert_int_equal(cobj_restore_record_get(cm, *k, &n), -EINVAL);
        assert_int_equal(n, 42); /* untouched on failure */
    }
    cJSON_Delete(cm);
    cm = parse("{\"metadata\":{\"name\":\"ordinal-restores\"}}"); /* no data at all */
    assert_int_equal(cobj_restore_record_get(cm, key, &n), -ENOENT);
    cJSON_Delete(cm);
}

static void test_sts_uid_and_legacy_annotation(void **state)
{
    struct cobj_sts st;
    ord_err e = {0};
    cJSON *o;

    (void)state;
    o = parse("{\"metadata\":{\"name\":\"web\",\"uid\":\"u-1\",\"annotations\":"
              "{\"ordinal.dev/restore-replicas\":\"5\"}},\"spec\":{\"replicas\":0}}");
    assert_int_equal(cobj_sts_from_json(o, &st, &e), 0);
    assert_string_equal(st.uid, "u-1");
    assert_int_equal(st.replicas, 0);
    assert_int_equal(st.restore_replicas, 5);
    cJSON_Delete(o);
    o = parse("{\"metadata\":{\"name\":\"web\"},\"spec\":{\"replicas\":2}}");
    assert_int_equal(cobj_sts_from_json(o, &st, &e), 0);
    assert_string_equal(st.uid, "");
    assert_int_equal(st.restore_replicas, -1);
    cJSON_Delete(o);
}

static void test_event(void **state)
{
    cJSON *ev = NULL;
    char *msg = malloc(3000);
    const char *name;
    size_t len;

    (void)state;
    assert_non_null(msg);
    assert_int_equal(cobj_event_build("StatefulSet", "apps/v1", "default", "web", "u-1", true,
                                      "RestoreFailed", "it broke", "ordinal-backup", &ev),
                     0);
    assert_string_equal(json_string(ev, "apiVersion"), "v1");
    assert_string_equal(json_string(ev, "kind"), "Event");
    assert_string_equal(json_string(ev, "metadata.namespace"), "default");
    name = json_string(ev, "metadata.name");
    assert_non_null(name);
    assert_memory_equal(name, "web.", 4);
    assert_true(strlen(name) > 4 && strspn(name + 4, "0123456789abcdef") == strlen(name + 4));
    assert_string_equal(json_string(ev, "involvedObject.kind"), "StatefulSet");
    assert_string_equal(json_string(ev, "involvedObject.apiVersion"), "apps/v1");
    assert_string_equal(json_string(ev, "involvedObject.namespace"), "default");
    assert_string_equal(json_string(ev, "involvedObject.name"), "web");
    assert_string_equal(json_string(ev, "involvedObject.uid"), "u-1");
    assert_string_equal(json_string(ev, "type"), "Warning");
    assert_string_equal(json_string(ev, "reason"), "RestoreFailed");
    assert_string_equal(json_string(ev, "message"), "it broke");
    assert_string_equal(json_string(ev, "source.component"), "ordinal-backup");
    assert_non_null(json_string(ev, "firstTimestamp"));
    cJSON_Delete(ev);

    /* A long message of two-byte characters is cut below 1 KiB, never inside a character. */
    for (size_t i = 0; i + 2 < 3000; i += 2)
        memcpy(msg + i, "\xc3\xa9", 2); /* U+00E9 */
    msg[2998] = '\0';
    /* A name too long to take a suffix is cut, so that the Event's name stays valid. */
    {
        char longname[COBJ_NAME_MAX + 1];

        memset(longname, 'a', COBJ_NAME_MAX);
        longname[COBJ_NAME_MAX] = '\0';
        assert_int_equal(cobj_event_build("StatefulSet", "apps/v1", "ns", longname, NULL, false,
                                          "Restored", msg, "ordinal-backup", &ev),
                         0);
    }
    assert_true(strlen(json_string(ev, "metadata.name")) <= COBJ_NAME_MAX);
    assert_null(json_path(ev, "involvedObject.uid"));
    assert_string_equal(json_string(ev, "type"), "Normal");
    len = strlen(json_string(ev, "message"));
    assert_true(len < COBJ_MESSAGE_MAX);
    assert_string_equal(json_string(ev, "message") + len - 3, "...");
    assert_int_equal((len - 3) % 2, 0); /* whole characters only */
    cJSON_Delete(ev);
    free(msg);
}

static void test_vtask_accept_lost_attributes(void **state)
{
    struct sts_ref sts = {.ns = "default", .name = "web"};
    struct vtask t;
    cJSON *o = NULL;

    (void)state;
    for (int accept = 0; accept <= 1; accept++) {
        assert_int_equal(cobj_vtask_build("t", "ordinal-system", true, accept, "20261121T203000Z",
                                          &sts, 2, "data", "pv-1", "node-a", &o),
                         0);
        assert_true(cJSON_IsTrue(json_path(o, "spec.acceptLostAttributes")) == accept);
        if (!accept) /* not written at all: tasks stay as older agents know them */
            assert_null(json_path(o, "spec.acceptLostAttributes"));
        cJSON_AddItemToObject(cJSON_GetObjectItem(o, "metadata"), "uid", cJSON_CreateString("u"));
        assert_int_equal(cobj_vtask_from_json(o, &t, NULL), 0);
        assert_string_equal(t.invalid, "");
        assert_int_equal(t.accept_lost_attributes, accept);
        cJSON_Delete(o);
    }
    /* A backup task never carries it. */
    assert_int_equal(cobj_vtask_build("t", "ordinal-system", false, true, "20261121T203000Z", &sts,
                                      2, "data", "pv-1", "node-a", &o),
                     0);
    assert_null(json_path(o, "spec.acceptLostAttributes"));
    /* Not a boolean: the task is invalid (the agent fails it with this message). */
    cJSON_AddItemToObject(cJSON_GetObjectItem(o, "spec"), "acceptLostAttributes",
                          cJSON_CreateString("yes"));
    cJSON_AddItemToObject(cJSON_GetObjectItem(o, "metadata"), "uid", cJSON_CreateString("u"));
    assert_int_equal(cobj_vtask_from_json(o, &t, NULL), 0);
    assert_string_equal(t.invalid, "spec.acceptLostAttributes must be true or false");
    cJSON_Delete(o);
}

/* A restore's result carries what it was restored without, and reads back the same. */
static void test_vtask_result_lost_attributes(void **state)
{
    struct sts_ref sts = {.ns = "default", .name = "web"};
    struct vtask_result res = {.kind = VOLUME_DIRECTORY, .bytes_in = 10, .files = 2};
    struct vtask t;
    cJSON *o = NULL, *patch = NULL, *st;

    (void)state;
    res.lost[ENGINE_LOST_OWNER] = 3;
    res.lost[ENGINE_LOST_DEVICE] = 1;
    assert_int_equal(cobj_vtask_status_patch(VTASK_SUCCEEDED, "restored", 10, NULL, NULL, &res,
                                             &patch),
                     0);
    assert_int_equal(cJSON_GetNumberValue(json_path(patch, "status.result.lostAttributes.owner")),
                     3);
    assert_int_equal(
        cJSON_GetNumberValue(json_path(patch, "status.result.lostAttributes.device-node")), 1);
    assert_null(json_path(patch, "status.result.lostAttributes.mode")); /* only what was lost */
    assert_int_equal(cobj_vtask_build("t", "ordinal-system", true, true, "20261121T203000Z", &sts,
                                      2, "data", "pv-1", "node-a", &o),
                     0);
    cJSON_AddItemToObject(cJSON_GetObjectItem(o, "metadata"), "uid", cJSON_CreateString("u"));
    st = cJSON_DetachItemFromObject(patch, "status");
    cJSON_AddItemToObject(o, "status", st);
    assert_int_equal(cobj_vtask_from_json(o, &t, NULL), 0);
    assert_true(t.has_result);
    assert_int_equal(t.result.lost[ENGINE_LOST_OWNER], 3);
    assert_int_equal(t.result.lost[ENGINE_LOST_DEVICE], 1);
    assert_int_equal(t.result.lost[ENGINE_LOST_MODE], 0);
    cJSON_Delete(o);
    cJSON_Delete(patch);
    /* a result without any: nothing written */
    memset(res.lost, 0, sizeof(res.lost));
    assert_int_equal(cobj_vtask_status_patch(VTASK_SUCCEEDED, "restored", 10, NULL, NULL, &res,
                                             &patch),
                     0);
    assert_null(json_path(patch, "status.result.lostAttributes"));
    cJSON_Delete(patch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_record_key_and_value),
        cmocka_unit_test(test_sts_uid_and_legacy_annotation),
        cmocka_unit_test(test_event),
        cmocka_unit_test(test_vtask_accept_lost_attributes),
        cmocka_unit_test(test_vtask_result_lost_attributes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
