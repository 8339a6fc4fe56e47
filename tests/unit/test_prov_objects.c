/*
 * test_prov_objects.c - the provisioner's decode edge (claims, volumes, classes, StatefulSets,
 * nodes) and the PV it builds: every field DESIGN §3 names, and refusals of malformed input.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "json.h"
#include "objects.h"
#include "pv_build.h"

static cJSON *parse(const char *s)
{
    cJSON *j = NULL;
    assert_int_equal(json_parse(s, strlen(s), &j, NULL), 0);
    return j;
}

static void test_pvc(void **state)
{
    cJSON *j = parse("{\"metadata\":{\"name\":\"data-web-0\",\"annotations\":{"
                     "\"volume.beta.kubernetes.io/storage-provisioner\":\"ordinal.dev/local\","
                     "\"volume.kubernetes.io/selected-node\":\"node-a\"}},"
                     "\"spec\":{\"storageClassName\":\"fast\",\"accessModes\":[\"ReadWriteOnce\","
                     "\"ReadOnlyMany\"],\"volumeMode\":\"Block\",\"resources\":{\"requests\":"
                     "{\"storage\":\"1.5Gi\"}}},\"status\":{\"phase\":\"Pending\"}}");
    struct obj_pvc *c = NULL;

    assert_int_equal(obj_decode_pvc(j, (void **)&c, NULL, NULL), 0);
    assert_string_equal(c->provisioner, "ordinal.dev/local");
    assert_string_equal(c->selected_node, "node-a");
    assert_string_equal(c->storage_class, "fast");
    assert_null(c->volume_name);
    assert_string_equal(c->phase, "Pending");
    assert_int_equal(c->request, 1536ull << 20);
    assert_false(c->request_bad);
    assert_int_equal(c->access_modes, ACCESS_RWO | ACCESS_ROX);
    assert_true(c->block);
    assert_false(c->has_selector);
    obj_free_pvc(c);
    cJSON_Delete(j);

    j = parse("{\"metadata\":{\"name\":\"x\"},\"spec\":{\"storageClassName\":7}}");
    assert_true(obj_decode_pvc(j, (void **)&c, NULL, NULL) < 0);
    cJSON_Delete(j);
    j = parse("{\"metadata\":{\"name\":\"x\"},\"spec\":{\"resources\":{\"requests\":"
              "{\"storage\":\"lots\"}},\"selector\":{}}}");
    assert_int_equal(obj_decode_pvc(j, (void **)&c, NULL, NULL), 0);
    assert_true(c->request_bad);
    assert_true(c->has_selector);
    obj_free_pvc(c);
    cJSON_Delete(j);
}

static void test_pv_and_sc(void **state)
{
    cJSON *j = parse("{\"metadata\":{\"name\":\"pvc-1\",\"annotations\":{"
                     "\"pv.kubernetes.io/provisioned-by\":\"ordinal.dev/local\","
                     "\"ordinal.dev/node\":\"node-a\",\"ordinal.dev/ordinal\":\"007\"}},"
                     "\"spec\":{\"local\":{\"path\":\"/r/x\"},\"capacity\":{\"storage\":\"2Gi\"},"
                     "\"accessModes\":[\"ReadWriteOnce\",\"ReadOnlyMany\"],"
                     "\"persistentVolumeReclaimPolicy\":\"Recycle\",\"claimRef\":{\"name\":\"c\","
                     "\"namespace\":\"ns\",\"uid\":\"u\"}},\"status\":{\"phase\":\"Released\"}}");
    struct obj_pv *v = NULL;
    struct obj_sc *s = NULL;

    assert_int_equal(obj_decode_pv(j, (void **)&v, NULL, NULL), 0);
    assert_true(obj_pv_is_ours(v, "ordinal.dev/local", "node-a"));
    assert_false(obj_pv_is_ours(v, "ordinal.dev/local", "node-b"));
    assert_int_equal(v->ann_ordinal, -1); /* "007" is not how the controller writes 7 */
    assert_string_equal(v->path, "/r/x");
    assert_int_equal(v->capacity, 2ull << 30);
    assert_int_equal(v->reclaim, RECLAIM_RETAIN); /* unknown policy: keep the data */
    assert_string_equal(v->claim_uid, "u");
    assert_int_equal(v->access_modes, ACCESS_RWO | ACCESS_ROX);
    obj_free_pv(v);
    cJSON_Delete(j);

    j = parse("{\"metadata\":{\"name\":\"fast\"},\"provisioner\":\"ordinal.dev/local\","
              "\"volumeBindingMode\":\"WaitForFirstConsumer\",\"reclaimPolicy\":\"Retain\","
              "\"parameters\":{\"root\":\"/mnt\",\"pvType\":\"local\"},"
              "\"mountOptions\":[\"noatime\"]}");
    assert_int_equal(obj_decode_sc(j, (void **)&s, NULL, NULL), 0);
    assert_true(s->wait_for_consumer);
    assert_int_equal(s->reclaim, RECLAIM_RETAIN);
    assert_int_equal(s->n_params, 2);
    assert_string_equal(s->params[0].key, "root");
    assert_string_equal(s->params[0].value, "/mnt");
    assert_int_equal(s->n_mount_options, 1);
    assert_string_equal(s->mount_options[0], "noatime");
    obj_free_sc(s);
    cJSON_Delete(j);
}

static void test_build_pv(void **state)
{
    struct vol_identity id;
    char *mo[] = {"noatime"};
    struct pv_spec s = {
        .name = "pvc-u1",
        .provisioner = "ordinal.dev/local",
        .node_name = "node-b",
        .hostname = "host-b",
        .id = &id,
        .root = "/r",
        .path = "/r/ns/web/3/data",
        .claim_uid = "u1",
        .capacity = 1ull << 30,
        .access_modes = ACCESS_RWO,
        .reclaim = RECLAIM_RETAIN,
        .storage_class = "fast",
        .mount_options = mo,
        .n_mount_options = 1,
        .pv_type = PV_TYPE_HOSTPATH,
    };
    cJSON *pv = NULL, *back;
    struct obj_pv *v = NULL;
    char *text;

    vlayout_identity_sts(&id, "ns", "data-web-3", "web", "data", 3);
    assert_int_equal(pv_build(&s, &pv), 0);
    text = json_print(pv);
    assert_non_null(
        strstr(text, "\"hostPath\":{\"path\":\"/r/ns/web/3/data\",\"type\":\"Directory\"}"));
    assert_non_null(strstr(text, "\"nodeAffinity\":{\"required\":{\"nodeSelectorTerms\":[{"
                                 "\"matchExpressions\":[{\"key\":\"kubernetes.io/hostname\","
                                 "\"operator\":\"In\",\"values\":[\"host-b\"]}]}]}}"));
    assert_non_null(strstr(text, "\"claimRef\":{\"kind\":\"PersistentVolumeClaim\","
                                 "\"apiVersion\":\"v1\",\"namespace\":\"ns\","
                                 "\"name\":\"data-web-3\",\"uid\":\"u1\"}"));
    assert_non_null(strstr(text, "\"capacity\":{\"storage\":\"1Gi\"}"));
    assert_non_null(strstr(text, "\"mountOptions\":[\"noatime\"]"));
    assert_null(strstr(text, "finalizers"));
    /* what we build, we decode back as ours */
    back = parse(text);
    assert_int_equal(obj_decode_pv(back, (void **)&v, NULL, NULL), 0);
    assert_true(obj_pv_is_ours(v, "ordinal.dev/local", "node-b"));
    assert_string_equal(v->ann_sts, "web");
    assert_string_equal(v->ann_tmpl, "data");
    assert_int_equal(v->ann_ordinal, 3);
    assert_string_equal(v->ann_root, "/r");
    assert_null(v->ann_claim);
    obj_free_pv(v);
    cJSON_Delete(back);
    free(text);
    cJSON_Delete(pv);

    s.pv_type = PV_TYPE_LOCAL;
    s.hostname = NULL;
    assert_int_equal(pv_build(&s, &pv), -EINVAL);
    s.hostname = "host-b";
    assert_int_equal(pv_build(&s, &pv), 0);
    text = json_print(pv);
    assert_non_null(strstr(text, "\"local\":{\"path\":\"/r/ns/web/3/data\"}"));
    free(text);
    cJSON_Delete(pv);
}

static void test_patches(void **state)
{
    cJSON *p = NULL;
    char *text;

    assert_int_equal(pv_build_rebind_patch("42", "ns", "c", "new-uid", &p), 0);
    text = json_print(p);
    assert_string_equal(text, "{\"metadata\":{\"resourceVersion\":\"42\"},\"spec\":{\"claimRef\":"
                              "{\"kind\":\"PersistentVolumeClaim\",\"apiVersion\":\"v1\","
                              "\"namespace\":\"ns\",\"name\":\"c\",\"uid\":\"new-uid\","
                              "\"resourceVersion\":null}}}");
    free(text);
    cJSON_Delete(p);
    assert_int_equal(pv_build_unselect_patch("7", &p), 0);
    text = json_print(p);
    assert_string_equal(text, "{\"metadata\":{\"annotations\":{"
                              "\"volume.kubernetes.io/selected-node\":null},"
                              "\"resourceVersion\":\"7\"}}");
    free(text);
    cJSON_Delete(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pvc),
        cmocka_unit_test(test_pv_and_sc),
        cmocka_unit_test(test_build_pv),
        cmocka_unit_test(test_patches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
