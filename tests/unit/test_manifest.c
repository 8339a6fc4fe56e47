/*
 * test_manifest.c - volume manifests and backup.json survive a round trip, and the strict
 * parsers refuse what a damaged or hostile repository could hold: wrong types, unknown format
 * versions, keys that do not match the volume, bad names and hashes, sizes out of bounds,
 * totals that do not add up, ordinals listed twice or out of order.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "manifest.h"

static const char SHA[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static void fill_volume(struct volume_manifest *m)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->backup_id, sizeof(m->backup_id), "20261121T203000Z-2");
    snprintf(m->sts.ns, sizeof(m->sts.ns), "default");
    snprintf(m->sts.name, sizeof(m->sts.name), "web");
    m->ordinal = 2;
    snprintf(m->template_name, sizeof(m->template_name), "data");
    m->kind = VOLUME_DIRECTORY;
    snprintf(m->node, sizeof(m->node), "node-1");
    snprintf(m->path, sizeof(m->path), "/var/lib/ordinal/default/web/2/data");
    snprintf(m->claim, sizeof(m->claim), "data-web-2");
    manifest_object_name(m->object, sizeof(m->object), 2, "data");
    snprintf(m->sha256, sizeof(m->sha256), "%s", SHA);
    m->bytes_in = 1234567;
    m->bytes_stored = 4321;
    m->files = 17;
    m->level = 3;
    m->threads = 2;
    m->started_at = 1795441439.25;
    m->finished_at = 1795441440.5;
    m->seconds = 1.25;
    snprintf(m->tool_version, sizeof(m->tool_version), "0.1.0");
}

static void fill_backup(struct backup_manifest *b, struct backup_volume *v, int32_t *ords)
{
    memset(b, 0, sizeof(*b));
    snprintf(b->id, sizeof(b->id), "20261121T203000Z");
    snprintf(b->time, sizeof(b->time), "2026-11-21T20:30:00Z");
    snprintf(b->sts.ns, sizeof(b->sts.ns), "default");
    snprintf(b->sts.name, sizeof(b->sts.name), "web");
    snprintf(b->order, sizeof(b->order), "reverse");
    snprintf(b->node, sizeof(b->node), "node-1");
    ords[0] = 1;
    ords[1] = 0;
    b->ordinals = ords;
    b->n_ordinals = 2;
    const char *tmpl[3] = {"data", "wal", "data"};
    int32_t o[3] = {1, 1, 0};
    for (int i = 0; i < 3; i++) {
        memset(&v[i], 0, sizeof(v[i]));
        v[i].ordinal = o[i];
        snprintf(v[i].template_name, sizeof(v[i].template_name), "%s", tmpl[i]);
        v[i].kind = i == 1 ? VOLUME_DEVICE : VOLUME_DIRECTORY;
        manifest_object_name(v[i].object, sizeof(v[i].object), o[i], tmpl[i]);
        manifest_manifest_name(v[i].manifest, sizeof(v[i].manifest), o[i], tmpl[i]);
        snprintf(v[i].sha256, sizeof(v[i].sha256), "%s", SHA);
        v[i].bytes_in = 100u * (unsigned)(i + 1);
        v[i].bytes_stored = 10u * (unsigned)(i + 1);
        v[i].files = (unsigned)i + 1;
        v[i].seconds = 0.5;
        v[i].started_at = 1795441439.0 + i;
        v[i].finished_at = 1795441439.5 + i;
        b->bytes_in += v[i].bytes_in;
        b->bytes_stored += v[i].bytes_stored;
        b->files += v[i].files;
    }
    b->volumes = v;
    b->n_volumes = 3;
    b->started_at = 1795441439.0;
    b->finished_at = 1795441442.0;
    b->seconds = 3;
    snprintf(b->tool_version, sizeof(b->tool_version), "0.1.0");
    snprintf(b->status, sizeof(b->status), "complete");
}

static void test_volume_round_trip(void **state)
{
    struct volume_manifest m, back;
    struct changed_file ch[2] = {{"a/b c", "size changed"}, {"x\nnewline", "mtime moved"}};
    char *text = NULL;
    ord_err e = {0};

    fill_volume(&m);
    m.changed = ch;
    m.n_changed = 2;
    m.n_changed_total = 5;
    assert_int_equal(volume_manifest_format(&m, &text), 0);
    assert_int_equal(volume_manifest_parse(text, strlen(text), &back, &e), 0);
    assert_string_equal(back.backup_id, m.backup_id);
    assert_string_equal(back.sts.ns, "default");
    assert_string_equal(back.sts.name, "web");
    assert_int_equal(back.ordinal, 2);
    assert_string_equal(back.template_name, "data");
    assert_int_equal(back.kind, VOLUME_DIRECTORY);
    assert_string_equal(back.node, "node-1");
    assert_string_equal(back.path, m.path);
    assert_string_equal(back.claim, "data-web-2");
    assert_string_equal(back.pv, "");
    assert_string_equal(back.object, "ordinal-2/data.tar.zst");
    assert_string_equal(back.sha256, SHA);
    assert_int_equal(back.bytes_in, 1234567);
    assert_int_equal(back.bytes_stored, 4321);
    assert_int_equal(back.files, 17);
    assert_int_equal(back.level, 3);
    assert_int_equal(back.threads, 2);
    assert_true(back.started_at == m.started_at);
    assert_int_equal(back.n_changed, 2);
    assert_int_equal(back.n_changed_total, 5);
    assert_string_equal(back.changed[1].path, "x\nnewline");
    assert_string_equal(back.changed[0].reason, "size changed");
    volume_manifest_free(&back);
    free(text);
}

static void test_backup_round_trip(void **state)
{
    struct backup_manifest b, back;
    struct backup_volume v[3];
    int32_t ords[2];
    char *text = NULL;
    ord_err e = {0};

    fill_backup(&b, v, ords);
    assert_int_equal(backup_manifest_format(&b, &text), 0);
    assert_int_equal(backup_manifest_parse(text, strlen(text), &back, &e), 0);
    assert_string_equal(back.id, b.id);
    assert_string_equal(back.order, "reverse");
    assert_int_equal(back.n_ordinals, 2);
    assert_int_equal(back.ordinals[0], 1);
    assert_int_equal(back.n_volumes, 3);
    assert_string_equal(back.volumes[1].template_name, "wal");
    assert_int_equal(back.volumes[1].kind, VOLUME_DEVICE);
    assert_string_equal(back.volumes[2].manifest, "ordinal-0/data.json");
    assert_int_equal(back.bytes_in, 600);
    assert_int_equal(back.files, 6);
    assert_string_equal(back.status, "complete");
    /* agreement */
    struct volume_manifest m;
    fill_volume(&m);
    snprintf(m.backup_id, sizeof(m.backup_id), "%s", b.id);
    m.ordinal = 0;
    manifest_object_name(m.object, sizeof(m.object), 0, "data");
    m.bytes_in = 300;
    m.bytes_stored = 30;
    m.files = 3;
    assert_int_equal(manifest_agree(&back, &back.volumes[2], &m, &e), 0);
    m.bytes_stored = 31;
    assert_int_equal(manifest_agree(&back, &back.volumes[2], &m, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "stored size"));
    m.bytes_stored = 30;
    m.sha256[0] = 'f';
    assert_int_equal(manifest_agree(&back, &back.volumes[2], &m, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "SHA-256"));
    backup_manifest_free(&back);
    free(text);
}

/* Replaces the first occurrence of from with to in text (to may be longer). */
static char *replace(const char *text, const char *from, const char *to)
{
    const char *p = strstr(text, from);
    size_t n;
    char *out;

    assert_non_null(p);
    n = strlen(text) - strlen(from) + strlen(to) + 1;
    out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%.*s%s%s", (int)(p - text), text, to, p + strlen(from));
    return out;
}

static void expect_volume_bad(const char *text, const char *from, const char *to, int code,
                              const char *needle)
{
    struct volume_manifest m;
    ord_err e = {0};
    char *bad = replace(text, from, to);
    int r = volume_manifest_parse(bad, strlen(bad), &m, &e);

    if (r != code)
        fail_msg("replacing '%s' by '%s': got %d (%s), expected %d", from, to, r, e.msg, code);
    if (needle && !strstr(e.msg, needle))
        fail_msg("message '%s' does not mention '%s'", e.msg, needle);
    free(bad);
}

static void test_volume_rejects(void **state)
{
    struct volume_manifest m;
    char *text = NULL;
    ord_err e = {0};

    fill_volume(&m);
    assert_int_equal(volume_manifest_format(&m, &text), 0);
    expect_volume_bad(text, "\"version\":\t1", "\"version\":\t2", -EPROTONOSUPPORT, "version 2");
    expect_volume_bad(text, "\"version\":\t1", "\"version\":\t\"1\"", -EBADMSG, "version");
    expect_volume_bad(text, "ordinal-volume", "ordinal-backup", -EBADMSG, "format");
    expect_volume_bad(text, "\"ordinal\":\t2", "\"ordinal\":\t-1", -EBADMSG, "ordinal");
    expect_volume_bad(text, "\"ordinal\":\t2", "\"ordinal\":\t2.5", -EBADMSG, "ordinal");
    expect_volume_bad(text, "\"ordinal\":\t2", "\"ordinal\":\t3", -EBADMSG, "object");
    expect_volume_bad(text, "ordinal-2/data.tar.zst", "../../etc/passwd", -EBADMSG, "object");
    expect_volume_bad(text, "\"template\":\t\"data\"", "\"template\":\t\"Da/ta\"", -EBADMSG,
                      "template");
    expect_volume_bad(text, "\"kind\":\t\"directory\"", "\"kind\":\t\"fifo\"", -EBADMSG, "kind");
    expect_volume_bad(text, SHA, "0123", -EBADMSG, "sha256");
    expect_volume_bad(text, "0123456789abcdef0123", "0123456789ABCDEF0123", -EBADMSG, "sha256");
    expect_volume_bad(text, "\"bytes_in\":\t1234567", "\"bytes_in\":\t1e300", -EBADMSG, "bytes_in");
    expect_volume_bad(text, "\"bytes_in\":\t1234567", "\"bytes_in\":\t-5", -EBADMSG, "bytes_in");
    expect_volume_bad(text, "\"files\":\t17", "\"files\":\tnull", -EBADMSG, "files");
    expect_volume_bad(text, "\"statefulset\":\t\"default/web\"", "\"statefulset\":\t\"web\"",
                      -EBADMSG, "statefulset");
    expect_volume_bad(text, "\"backup_id\":\t\"20261121T203000Z-2\"",
                      "\"backup_id\":\t\"20261321T203000Z\"", -EBADMSG, "backup_id");
    expect_volume_bad(text, "\"level\":\t3", "\"level\":\t99", -EBADMSG, "level");
    expect_volume_bad(text, "\"algorithm\":\t\"zstd\"", "\"algorithm\":\t\"gzip\"", -EBADMSG,
                      "algorithm");
    expect_volume_bad(text, "\"node\":\t\"node-1\"", "\"node\":\t\"a\\u0001b\"", -EBADMSG,
                      "control");
    expect_volume_bad(text, "\"changed_files\":\t[]", "\"changed_files\":\t{}", -EBADMSG,
                      "changed_files");
    expect_volume_bad(text, "\"changed_files\":\t[]", "\"changed_files\":\t[{\"path\":1}]",
                      -EBADMSG, "path");
    expect_volume_bad(text, "\"changed_files_total\":\t0", "\"changed_files_total\":\t-1", -EBADMSG,
                      "changed_files_total");
    expect_volume_bad(text, "\"seconds\":\t1.25", "\"seconds\":\t-1", -EBADMSG, "seconds");
    expect_volume_bad(text, "{", "[", -EBADMSG, NULL);
    /* a missing field */
    expect_volume_bad(text, "\"tool_version\"", "\"tool_versio\"", -EBADMSG, "tool_version");
    /* truncated text */
    assert_int_equal(volume_manifest_parse(text, strlen(text) / 2, &m, &e), -EBADMSG);
    assert_int_equal(volume_manifest_parse("", 0, &m, &e), -EBADMSG);
    free(text);
}

static void expect_backup_bad(const char *text, const char *from, const char *to, int code,
                              const char *needle)
{
    struct backup_manifest b;
    ord_err e = {0};
    char *bad = replace(text, from, to);
    int r = backup_manifest_parse(bad, strlen(bad), &b, &e);

    if (r != code)
        fail_msg("replacing '%s' by '%s': got %d (%s), expected %d", from, to, r, e.msg, code);
    if (needle && !strstr(e.msg, needle))
        fail_msg("message '%s' does not mention '%s'", e.msg, needle);
    free(bad);
}

static void test_backup_rejects(void **state)
{
    struct backup_manifest b;
    struct backup_volume v[3];
    int32_t ords[2];
    char *text = NULL;

    fill_backup(&b, v, ords);
    assert_int_equal(backup_manifest_format(&b, &text), 0);
    expect_backup_bad(text, "\"version\":\t1", "\"version\":\t7", -EPROTONOSUPPORT, "version 7");
    expect_backup_bad(text, "\"time\":\t\"2026-11-21T20:30:00Z\"",
                      "\"time\":\t\"2026-11-21T20:30:01Z\"", -EBADMSG, "time");
    expect_backup_bad(text, "\"order\":\t\"reverse\"", "\"order\":\t\"random\"", -EBADMSG, "order");
    expect_backup_bad(text, "\"ordinals\":\t[1, 0]", "\"ordinals\":\t[1, 1]", -EBADMSG, "ordinals");
    expect_backup_bad(text, "\"ordinals\":\t[1, 0]", "\"ordinals\":\t[0, 1]", -EBADMSG, "order");
    expect_backup_bad(text, "\"ordinals\":\t[1, 0]", "\"ordinals\":\t[1, 0, 5]", -EBADMSG,
                      "without volumes");
    expect_backup_bad(text, "\"ordinals\":\t[1, 0]", "\"ordinals\":\t[]", -EBADMSG, "ordinals");
    expect_backup_bad(text, "\"template\":\t\"wal\"", "\"template\":\t\"data\"", -EBADMSG, NULL);
    expect_backup_bad(text, "\"manifest\":\t\"ordinal-1/data.json\"",
                      "\"manifest\":\t\"ordinal-1/../x.json\"", -EBADMSG, "manifest");
    expect_backup_bad(text, "\"status\":\t\"complete\"", "\"status\":\t\"partial\"", -EBADMSG,
                      "status");
    expect_backup_bad(text, "\"bytes_in\":\t600", "\"bytes_in\":\t601", -EBADMSG, "totals");
    expect_backup_bad(text, "\"volumes\":\t[", "\"volumes\":\t[1,", -EBADMSG, "volumes");
    expect_backup_bad(text, "\"volumes\":\t[", "\"volumes\":\t{\"a\":", -EBADMSG, NULL);
    expect_backup_bad(text, "\"statefulset\":\t\"default/web\"",
                      "\"statefulset\":\t\"Default/web\"", -EBADMSG, "statefulset");
    free(text);
}

/* The Kubernetes objects of a cluster backup: kept through a round trip; a name other than
 * the kind's own, a kind twice, or a missing field is refused (issue 17). */
static void test_backup_objects(void **state)
{
    struct backup_manifest b, back;
    struct backup_volume v[3];
    int32_t ords[2];
    char *text = NULL;
    ord_err e = {0};

    (void)state;
    fill_backup(&b, v, ords);
    b.n_objects = 2;
    snprintf(b.objects[0].kind, sizeof(b.objects[0].kind), "StatefulSet");
    snprintf(b.objects[0].object, sizeof(b.objects[0].object), "statefulset.json");
    snprintf(b.objects[1].kind, sizeof(b.objects[1].kind), "Service");
    snprintf(b.objects[1].object, sizeof(b.objects[1].object), "service.json");
    for (int i = 0; i < 2; i++)
        memset(b.objects[i].sha256, 'a', 64);
    assert_int_equal(backup_manifest_format(&b, &text), 0);
    assert_int_equal(backup_manifest_parse(text, strlen(text), &back, &e), 0);
    assert_int_equal(back.n_objects, 2);
    assert_string_equal(back.objects[1].kind, "Service");
    assert_string_equal(back.objects[1].object, "service.json");
    assert_string_equal(back.objects[0].sha256, b.objects[0].sha256);
    backup_manifest_free(&back);
    expect_backup_bad(text, "\"statefulset.json\"", "\"../statefulset.json\"", -EBADMSG,
                      "objects");
    expect_backup_bad(text, "\"Service\"", "\"StatefulSet\"", -EBADMSG, "objects");
    expect_backup_bad(text, "\"service.json\"", "\"statefulset.json\"", -EBADMSG, "objects");
    expect_backup_bad(text, "\"objects\":\t[", "\"objects\":\t[1, ", -EBADMSG, "objects");
    free(text);
    /* a backup without objects (one-node, older versions) parses as before */
    fill_backup(&b, v, ords);
    assert_int_equal(backup_manifest_format(&b, &text), 0);
    assert_null(strstr(text, "objects"));
    assert_int_equal(backup_manifest_parse(text, strlen(text), &back, &e), 0);
    assert_int_equal(back.n_objects, 0);
    backup_manifest_free(&back);
    free(text);
}

static void test_too_many_volumes(void **state)
{
    /* 5000 volumes: beyond MANIFEST_VOLUMES_MAX, refused before any work per volume. */
    size_t cap = 64 + 5000 * 8;
    char *text = malloc(cap);
    struct backup_manifest b;
    ord_err e = {0};
    size_t len;

    assert_non_null(text);
    len = (size_t)snprintf(text, cap,
                           "{\"format\":\"ordinal-backup\",\"version\":1,\"id\":"
                           "\"20261121T203000Z\",\"time\":\"2026-11-21T20:30:00Z\","
                           "\"statefulset\":\"a/b\",\"order\":\"ordinal\",\"node\":\"n\","
                           "\"ordinals\":[0],\"volumes\":[");
    for (int i = 0; i < 5000; i++)
        len += (size_t)snprintf(text + len, cap - len, "%s{}", i ? "," : "");
    len += (size_t)snprintf(text + len, cap - len, "]}");
    assert_int_equal(backup_manifest_parse(text, len, &b, &e), -EBADMSG);
    assert_non_null(strstr(e.msg, "volumes"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_volume_round_trip), cmocka_unit_test(test_backup_round_trip),
        cmocka_unit_test(test_volume_rejects),    cmocka_unit_test(test_backup_rejects),
        cmocka_unit_test(test_too_many_volumes),  cmocka_unit_test(test_backup_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
