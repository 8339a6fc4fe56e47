/*
 * cluster_objects.c - decode edge of cluster mode (see cluster_objects.h).
 *
 * Strings are copied into bounded fields; a value that does not fit refuses the field, never
 * truncates it. For VolumeTasks, metadata problems refuse the object (the informer then leaves
 * it out), while spec problems only mark it invalid: the agent reports those in the task's
 * status, where the person who made the task will look.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster_objects.h"
#include "json.h"

static const char *const phase_names[] = {"", "Pending", "Running", "Succeeded", "Failed"};

const char *vtask_phase_name(enum vtask_phase p)
{
    return p == VTASK_NEW ? "Pending" : phase_names[p];
}

/* Copies the string at path into buf. Absent: "" and 0 (or -ENOENT when required). */
static int copy_str(const cJSON *obj, const char *path, char *buf, size_t size, bool required)
{
    const char *s;
    int r = json_get_string(obj, path, size - 1, &s);

    buf[0] = '\0';
    if (r == -ENOENT && !required)
        return 0;
    if (r < 0)
        return r;
    memcpy(buf, s, strlen(s) + 1);
    return 0;
}

static int copy_value(const cJSON *v, char *buf, size_t size)
{
    buf[0] = '\0';
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v) || !v->valuestring)
        return -EINVAL;
    if (strnlen(v->valuestring, size) >= size)
        return -ERANGE;
    memcpy(buf, v->valuestring, strlen(v->valuestring) + 1);
    return 0;
}

static int copy_ann(const cJSON *obj, const char *key, char *buf, size_t size)
{
    return copy_value(json_pathv(obj, "metadata", "annotations", key, NULL), buf, size);
}

static void decode_spec(const cJSON *obj, struct vtask *t)
{
    const char *action = NULL, *sts = NULL;
    int64_t ord;
    ord_err se = {0};
    struct backup_id bid;
    int r;

#define BAD(...) (snprintf(t->invalid, sizeof(t->invalid), __VA_ARGS__), (void)0)
    if (json_get_string(obj, "spec.action", 16, &action) < 0 ||
        !(streq(action, "backup") || streq(action, "restore")))
        return BAD("spec.action must be backup or restore");
    t->restore = streq(action, "restore");
    if (copy_str(obj, "spec.backupId", t->backup_id, sizeof(t->backup_id), true) < 0 ||
        id_parse(t->backup_id, &bid) < 0)
        return BAD("spec.backupId is not a backup ID (like 20261121T203000Z)");
    if (json_get_string(obj, "spec.statefulset", NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 1, &sts) <
            0 ||
        names_parse_sts(sts, &t->sts, &se) < 0)
        return BAD("spec.statefulset must be NAMESPACE/NAME: %s", se.msg[0] ? se.msg : "absent");
    t->source = t->sts;
    sts = json_string(obj, "spec.sourceStatefulset");
    if (sts && (strlen(sts) > NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 1 ||
                names_parse_sts(sts, &t->source, &se) < 0))
        return BAD("spec.sourceStatefulset must be NAMESPACE/NAME: %s", se.msg);
    if (json_get_int64(obj, "spec.ordinal", 0, INT32_MAX, &ord) < 0)
        return BAD("spec.ordinal must be an integer from 0");
    t->ordinal = (int32_t)ord;
    if (copy_str(obj, "spec.template", t->template_name, sizeof(t->template_name), true) < 0 ||
        !names_dns_subdomain(t->template_name))
        return BAD("spec.template must be a volumeClaimTemplate name");
    if (copy_str(obj, "spec.pvName", t->pv, sizeof(t->pv), true) < 0 || !names_dns_subdomain(t->pv))
        return BAD("spec.pvName must be a PersistentVolume name");
    if (copy_str(obj, "spec.node", t->node, sizeof(t->node), true) < 0 || !t->node[0])
        return BAD("spec.node must be a node name");
    r = json_get_bool(obj, "spec.acceptLostAttributes", &t->accept_lost_attributes);
    if (r < 0 && r != -ENOENT)
        return BAD("spec.acceptLostAttributes must be true or false");
    t->accept_lost_attributes = r == 0 && t->accept_lost_attributes;
#undef BAD
}

static void decode_status(const cJSON *obj, struct vtask *t)
{
    const char *phase = json_string(obj, "status.phase");
    const cJSON *res = json_path(obj, "status.result");
    int64_t v;

    t->phase = VTASK_NEW;
    for (size_t i = 1; phase && i < ARRAY_SIZE(phase_names); i++)
        if (streq(phase, phase_names[i]))
            t->phase = (enum vtask_phase)i;
    (void)copy_str(obj, "status.message", t->message, sizeof(t->message), false);
    if (json_get_int64(obj, "status.progressBytes", 0, JSON_INT_EXACT_MAX - 1, &v) == 0)
        t->progress = (uint64_t)v;
    (void)copy_str(obj, "status.completionTime", t->completion, sizeof(t->completion), false);
    if (res && cJSON_IsObject(res)) {
        const char *kind = json_string(res, "kind");
        double secs = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(res, "seconds"));

        t->has_result = true;
        t->result.kind = kind && streq(kind, "device") ? VOLUME_DEVICE : VOLUME_DIRECTORY;
        if (json_get_int64(res, "bytes_in", 0, JSON_INT_EXACT_MAX - 1, &v) == 0)
            t->result.bytes_in = (uint64_t)v;
        if (json_get_int64(res, "bytes_stored", 0, JSON_INT_EXACT_MAX - 1, &v) == 0)
            t->result.bytes_stored = (uint64_t)v;
        if (json_get_int64(res, "files", 0, JSON_INT_EXACT_MAX - 1, &v) == 0)
            t->result.files = (uint64_t)v;
        (void)copy_str(res, "sha256", t->result.sha256, sizeof(t->result.sha256), false);
        t->result.seconds = secs == secs && secs >= 0 ? secs : 0; /* NaN when absent */
        for (size_t k = 0; k < ENGINE_LOST_KINDS; k++) {
            const cJSON *lost = cJSON_GetObjectItemCaseSensitive(res, "lostAttributes");
            if (json_get_int64(lost, engine_lost_kind_name(k), 0, JSON_INT_EXACT_MAX - 1, &v) == 0)
                t->result.lost[k] = (uint64_t)v;
        }
    }
}

int cobj_vtask_from_json(const cJSON *obj, struct vtask *ret, ord_err *e)
{
    struct vtask t = {0};
    int r;

    if ((r = copy_str(obj, "metadata.name", t.name, sizeof(t.name), true)) < 0 ||
        (r = copy_str(obj, "metadata.uid", t.uid, sizeof(t.uid), false)) < 0 ||
        (r = copy_str(obj, "metadata.resourceVersion", t.rv, sizeof(t.rv), false)) < 0 ||
        (r = copy_str(obj, "metadata.creationTimestamp", t.created, sizeof(t.created), false)) < 0)
        return err_set(e, r, "cannot decode VolumeTask '%s': bad metadata",
                       json_string(obj, "metadata.name") ?: "?");
    t.deleting = json_string(obj, "metadata.deletionTimestamp") != NULL;
    decode_spec(obj, &t);
    decode_status(obj, &t);
    *ret = t;
    return 0;
}

int cobj_decode_vtask(const cJSON *obj, void **ret, ord_err *e, void *userdata)
{
    struct vtask *t = malloc(sizeof(*t));
    int r;

    if (!t)
        return -ENOMEM;
    r = cobj_vtask_from_json(obj, t, e);
    if (r < 0) {
        free(t);
        return r;
    }
    *ret = t;
    return 0;
}

void cobj_free_vtask(void *p)
{
    free(p);
}

int cobj_pv_from_json(const cJSON *obj, struct cobj_pv *ret, ord_err *e)
{
    struct cobj_pv pv = {0};
    char ord[16];
    int r;

    pv.ann_ordinal = -1;
    if ((r = copy_str(obj, "metadata.name", pv.name, sizeof(pv.name), true)) < 0 ||
        (r = copy_ann(obj, COBJ_ANN_NODE, pv.node, sizeof(pv.node))) < 0 ||
        (r = copy_ann(obj, COBJ_ANN_NAMESPACE, pv.ann_ns, sizeof(pv.ann_ns))) < 0 ||
        (r = copy_ann(obj, COBJ_ANN_STS, pv.ann_sts, sizeof(pv.ann_sts))) < 0 ||
        (r = copy_ann(obj, COBJ_ANN_TEMPLATE, pv.ann_template, sizeof(pv.ann_template))) < 0 ||
        (r = copy_ann(obj, COBJ_ANN_ORDINAL, ord, sizeof(ord))) < 0 ||
        (r = copy_str(obj, "spec.claimRef.namespace", pv.claim_ns, sizeof(pv.claim_ns), false)) <
            0 ||
        (r = copy_str(obj, "spec.claimRef.name", pv.claim_name, sizeof(pv.claim_name), false)) <
            0 ||
        (r = copy_str(obj, "status.phase", pv.phase, sizeof(pv.phase), false)) < 0)
        return err_set(e, r, "cannot decode PersistentVolume '%s'",
                       json_string(obj, "metadata.name") ?: "?");
    if (ord[0]) {
        char *end;
        long v;

        errno = 0;
        v = strtol(ord, &end, 10);
        if (errno == 0 && *end == '\0' && end != ord && v >= 0 && v <= INT32_MAX &&
            (ord[0] != '0' || ord[1] == '\0'))
            pv.ann_ordinal = (int32_t)v;
    }
    r = copy_str(obj, "spec.hostPath.path", pv.path, sizeof(pv.path), false);
    if (r == 0 && !pv.path[0])
        r = copy_str(obj, "spec.local.path", pv.path, sizeof(pv.path), false);
    if (r < 0)
        return err_set(e, r, "cannot decode PersistentVolume '%s': bad volume path", pv.name);
    *ret = pv;
    return 0;
}

int cobj_pvc_from_json(const cJSON *obj, struct cobj_pvc *ret, ord_err *e)
{
    struct cobj_pvc c = {0};
    int r;

    if ((r = copy_str(obj, "spec.volumeName", c.volume_name, sizeof(c.volume_name), false)) < 0 ||
        (r = copy_str(obj, "status.phase", c.phase, sizeof(c.phase), false)) < 0)
        return err_set(e, r, "cannot decode PersistentVolumeClaim '%s'",
                       json_string(obj, "metadata.name") ?: "?");
    *ret = c;
    return 0;
}

int cobj_sts_from_json(const cJSON *obj, struct cobj_sts *ret, ord_err *e)
{
    _cleanup_free_ struct cobj_sts *s = calloc(1, sizeof(*s));
    const cJSON *tmpls, *t;
    int64_t replicas = 1;
    int r;

    if (!s)
        return err_set(e, -ENOMEM, "out of memory");
    r = json_get_int64(obj, "spec.replicas", 0, INT32_MAX, &replicas);
    if (r < 0 && r != -ENOENT)
        return err_set(e, r, "cannot decode StatefulSet: bad spec.replicas");
    s->replicas = (int32_t)replicas;
    r = copy_str(obj, "metadata.uid", s->uid, sizeof(s->uid), false);
    if (r < 0)
        return err_set(e, r, "cannot decode StatefulSet: bad metadata.uid");
    s->restore_replicas = -1;
    {
        const cJSON *ann =
            json_pathv(obj, "metadata", "annotations", COBJ_ANN_RESTORE_REPLICAS, NULL);
        char *end;
        long v;

        if (cJSON_IsString(ann) && ann->valuestring[0]) {
            errno = 0;
            v = strtol(ann->valuestring, &end, 10);
            if (errno || *end || v < 0 || v > INT32_MAX)
                return err_set(e, -EINVAL, "annotation %s of the StatefulSet is not a count",
                               COBJ_ANN_RESTORE_REPLICAS);
            s->restore_replicas = (int32_t)v;
        }
    }
    tmpls = json_path(obj, "spec.volumeClaimTemplates");
    cJSON_ArrayForEach(t, tmpls)
    {
        if (s->n_templates == COBJ_TEMPLATES_MAX)
            return err_set(e, -E2BIG, "the StatefulSet has more than %d volumeClaimTemplates",
                           COBJ_TEMPLATES_MAX);
        r = copy_str(t, "metadata.name", s->templates[s->n_templates], sizeof(s->templates[0]),
                     true);
        if (r < 0 || !names_dns_subdomain(s->templates[s->n_templates]))
            return err_set(e, -EINVAL, "cannot decode StatefulSet: bad volumeClaimTemplate name");
        s->n_templates++;
    }
    *ret = *s;
    return 0;
}

size_t cobj_pod_list_phase(const cJSON *list, char *phase, size_t size)
{
    const cJSON *items = json_path(list, "items");

    phase[0] = '\0';
    if (json_array_len(items) > 0)
        (void)copy_str(json_index(items, 0), "status.phase", phase, size, false);
    return json_array_len(items);
}

size_t cobj_count_sts_pods(const cJSON *list, const char *sts)
{
    const cJSON *it;
    size_t n = 0, len = strlen(sts);

    cJSON_ArrayForEach(it, json_path(list, "items"))
    {
        const char *name = json_string(it, "metadata.name");
        const char *p;

        if (!name || strncmp(name, sts, len) != 0 || name[len] != '-' || !name[len + 1])
            continue;
        for (p = name + len + 1; *p >= '0' && *p <= '9'; p++)
            ;
        if (!*p)
            n++;
    }
    return n;
}

int cobj_claim_from_template(const cJSON *sts_obj, const char *tmpl, const char *claim,
                             const char *ns, const char *node, cJSON **ret)
{
    _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
    const cJSON *t, *found = NULL, *labels, *match, *it;
    cJSON *meta, *ann, *lab, *spec;

    cJSON_ArrayForEach(t, json_path(sts_obj, "spec.volumeClaimTemplates"))
    {
        const char *name = json_string(t, "metadata.name");
        if (name && streq(name, tmpl))
            found = t;
    }
    if (!found)
        return -ENOENT;
    if (!o)
        return -ENOMEM;
    if (json_set_string(o, "apiVersion", "v1") < 0 ||
        json_set_string(o, "kind", "PersistentVolumeClaim") < 0 ||
        !(meta = json_ensure_object(o, "metadata")) ||
        !(ann = json_ensure_object(meta, "annotations")) ||
        !(lab = json_ensure_object(meta, "labels")) || json_set_string(meta, "name", claim) < 0 ||
        json_set_string(meta, "namespace", ns) < 0 ||
        json_set_string(ann, "volume.kubernetes.io/selected-node", node) < 0)
        return -ENOMEM;
    labels = json_path(found, "metadata.labels");
    match = json_path(sts_obj, "spec.selector.matchLabels");
    cJSON_ArrayForEach(it, labels) if (cJSON_IsString(it) &&
                                       json_set_string(lab, it->string, it->valuestring) <
                                           0) return -ENOMEM;
    cJSON_ArrayForEach(it, match) if (cJSON_IsString(it) &&
                                      json_set_string(lab, it->string, it->valuestring) <
                                          0) return -ENOMEM;
    spec = cJSON_Duplicate(json_path(found, "spec"), true);
    if (!spec || json_set_item(o, "spec", spec) < 0)
        return -ENOMEM;
    *ret = TAKE_PTR(o);
    return 0;
}

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if ((x) < 0)                                                                               \
            return -ENOMEM;                                                                        \
    } while (0)

int cobj_vtask_build(const char *name, const char *ns, bool restore, bool accept_lost,
                     const char *backup_id, const struct sts_ref *sts, int32_t ordinal,
                     const char *tmpl, const char *pv, const char *node, cJSON **ret)
{
    _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
    cJSON *meta, *labels, *spec;
    char ref[NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 2];

    if (!o)
        return -ENOMEM;
    snprintf(ref, sizeof(ref), "%s/%s", sts->ns, sts->name);
    CHECK(json_set_string(o, "apiVersion", "ordinal.dev/v1alpha1"));
    CHECK(json_set_string(o, "kind", "VolumeTask"));
    if (!(meta = json_ensure_object(o, "metadata")) ||
        !(labels = json_ensure_object(meta, "labels")) || !(spec = json_ensure_object(o, "spec")))
        return -ENOMEM;
    CHECK(json_set_string(meta, "name", name));
    CHECK(json_set_string(meta, "namespace", ns));
    CHECK(json_set_string(labels, COBJ_LABEL_PART_OF, "ordinal"));
    CHECK(json_set_string(labels, COBJ_LABEL_NODE, node));
    CHECK(json_set_string(spec, "action", restore ? "restore" : "backup"));
    CHECK(json_set_string(spec, "backupId", backup_id));
    CHECK(json_set_string(spec, "statefulset", ref));
    CHECK(json_set_int64(spec, "ordinal", ordinal));
    CHECK(json_set_string(spec, "template", tmpl));
    CHECK(json_set_string(spec, "pvName", pv));
    CHECK(json_set_string(spec, "node", node));
    if (restore && accept_lost)
        CHECK(json_set_bool(spec, "acceptLostAttributes", true));
    *ret = TAKE_PTR(o);
    return 0;
}

int cobj_vtask_set_source(cJSON *task, const struct sts_ref *source)
{
    char ref[NAMES_LABEL_MAX + NAMES_SUBDOMAIN_MAX + 2];
    cJSON *spec = json_ensure_object(task, "spec");

    if (!spec)
        return -ENOMEM;
    snprintf(ref, sizeof(ref), "%s/%s", source->ns, source->name);
    return json_set_string(spec, "sourceStatefulset", ref) < 0 ? -ENOMEM : 0;
}

int cobj_vtask_status_patch(enum vtask_phase phase, const char *message, uint64_t progress,
                            const char *start_time, const char *completion_time,
                            const struct vtask_result *result, cJSON **ret)
{
    _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
    cJSON *st, *res;

    if (!o || !(st = json_ensure_object(o, "status")))
        return -ENOMEM;
    CHECK(json_set_string(st, "phase", vtask_phase_name(phase)));
    if (message)
        CHECK(json_set_string(st, "message", message));
    CHECK(json_set_int64(st, "progressBytes", (int64_t)MIN(progress, (uint64_t)INT64_MAX)));
    if (start_time)
        CHECK(json_set_string(st, "startTime", start_time));
    if (completion_time)
        CHECK(json_set_string(st, "completionTime", completion_time));
    if (result) {
        if (!(res = json_ensure_object(st, "result")))
            return -ENOMEM;
        CHECK(json_set_string(res, "kind", volume_kind_name(result->kind)));
        CHECK(json_set_int64(res, "bytes_in", (int64_t)result->bytes_in));
        CHECK(json_set_int64(res, "bytes_stored", (int64_t)result->bytes_stored));
        CHECK(json_set_int64(res, "files", (int64_t)result->files));
        CHECK(json_set_string(res, "sha256", result->sha256));
        if (!cJSON_AddNumberToObject(res, "seconds", result->seconds))
            return -ENOMEM;
        for (size_t k = 0; k < ENGINE_LOST_KINDS; k++) {
            cJSON *lost;
            if (!result->lost[k])
                continue;
            if (!(lost = json_ensure_object(res, "lostAttributes")))
                return -ENOMEM;
            CHECK(json_set_int64(lost, engine_lost_kind_name(k), (int64_t)result->lost[k]));
        }
    }
    *ret = TAKE_PTR(o);
    return 0;
}

void cobj_restore_record_key(const struct sts_ref *sts, char *buf, size_t size)
{
    snprintf(buf, size, "%s.%s", sts->ns, sts->name);
}

int cobj_restore_record_get(const cJSON *cm, const char *key, int32_t *ret)
{
    const cJSON *v = cm ? json_pathv(cm, "data", key, NULL) : NULL;
    char *end;
    long n;

    if (!v || cJSON_IsNull(v))
        return -ENOENT;
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return -EINVAL;
    errno = 0;
    n = strtol(v->valuestring, &end, 10);
    if (errno || *end || n < 0 || n > INT32_MAX)
        return -EINVAL;
    *ret = (int32_t)n;
    return 0;
}

int cobj_event_build(const char *kind, const char *api_version, const char *ns, const char *name,
                     const char *uid, bool warning, const char *reason, const char *message,
                     const char *component, cJSON **ret)
{
    _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
    cJSON *meta, *inv, *src;
    char ev_name[COBJ_NAME_MAX + 1], ts[32], msg[COBJ_MESSAGE_MAX];
    struct timespec now;
    size_t len;

    if (!o)
        return -ENOMEM;
    clock_gettime(CLOCK_REALTIME, &now);
    /* client-go: "<object name>.<hex UnixNano>"; a long name is cut to keep it a valid name. */
    snprintf(ev_name, sizeof(ev_name), "%.*s.%llx", COBJ_NAME_MAX - 17, name,
             (unsigned long long)now.tv_sec * 1000000000ull + (unsigned long long)now.tv_nsec);
    if (time_format_rfc3339(now.tv_sec, ts, sizeof(ts)) < 0)
        snprintf(ts, sizeof(ts), "1970-01-01T00:00:00Z");
    len = strlen(message);
    if (len < sizeof(msg)) {
        memcpy(msg, message, len + 1);
    } else { /* cut on a UTF-8 character boundary, and say so */
        len = sizeof(msg) - 4;
        while (len > 0 && ((unsigned char)message[len] & 0xc0) == 0x80)
            len--;
        memcpy(msg, message, len);
        memcpy(msg + len, "...", 4);
    }
    if (!(meta = json_ensure_object(o, "metadata")) ||
        !(inv = json_ensure_object(o, "involvedObject")) ||
        !(src = json_ensure_object(o, "source")))
        return -ENOMEM;
    CHECK(json_set_string(o, "apiVersion", "v1"));
    CHECK(json_set_string(o, "kind", "Event"));
    CHECK(json_set_string(meta, "name", ev_name));
    CHECK(json_set_string(meta, "namespace", ns));
    CHECK(json_set_string(inv, "kind", kind));
    CHECK(json_set_string(inv, "apiVersion", api_version));
    CHECK(json_set_string(inv, "namespace", ns));
    CHECK(json_set_string(inv, "name", name));
    if (uid && uid[0])
        CHECK(json_set_string(inv, "uid", uid));
    CHECK(json_set_string(o, "reason", reason));
    CHECK(json_set_string(o, "message", msg));
    CHECK(json_set_string(o, "type", warning ? "Warning" : "Normal"));
    CHECK(json_set_string(src, "component", component));
    CHECK(json_set_string(o, "firstTimestamp", ts));
    CHECK(json_set_string(o, "lastTimestamp", ts));
    CHECK(json_set_int64(o, "count", 1));
    CHECK(json_set_string(o, "reportingComponent", component));
    *ret = TAKE_PTR(o);
    return 0;
}
