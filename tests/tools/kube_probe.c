/*
 * kube_probe.c - a small command line over the Kubernetes client, for integration tests.
 *
 *   kube_probe [options] get      RES NS NAME
 *   kube_probe [options] list     RES NS
 *   kube_probe [options] create   RES NS JSON
 *   kube_probe [options] update   RES NS JSON
 *   kube_probe [options] patch    RES NS NAME JSON          (merge patch; --sub status|scale)
 *   kube_probe [options] delete   RES NS NAME
 *   kube_probe [options] request  METHOD PATH [BODY]        (raw; prints status, reason, attempts)
 *   kube_probe [options] watch    RES NS N                  (list+watch until N events)
 *   kube_probe [options] informer RES NS N                  (informer until N callbacks)
 *
 * RES is a plural resource name, group-qualified outside the core group ("pods",
 * "statefulsets.apps", "volumetasks.ordinal.dev"). NS "-" means none (cluster-scoped, or all
 * namespaces for list/watch). JSON "-" reads standard input.
 *
 * Output: one JSON document per result on stdout (watch/informer: one line per event, flushed).
 * Errors: "kube_probe: MESSAGE" on stderr and {"errno":N,"error":"ENAME","message":…} on stdout.
 * Exit codes: 0 success, 1 API/transport error, 2 usage, 3 watch timed out (--timeout).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "kube_client.h"
#include "kube_config.h"
#include "kube_informer.h"
#include "kube_watch.h"
#include "log.h"

static const struct kube_res *const known[] = {
    &KUBE_RES_NAMESPACES,
    &KUBE_RES_NODES,
    &KUBE_RES_PODS,
    &KUBE_RES_EVENTS,
    &KUBE_RES_PERSISTENTVOLUMES,
    &KUBE_RES_PERSISTENTVOLUMECLAIMS,
    &KUBE_RES_STORAGECLASSES,
    &KUBE_RES_STATEFULSETS,
    &KUBE_RES_LEASES,
    &KUBE_RES_VOLUMETASKS,
};

static const struct kube_res *find_res(const char *name)
{
    for (size_t i = 0; i < ARRAY_SIZE(known); i++) {
        char full[128];
        if (known[i]->group[0])
            snprintf(full, sizeof(full), "%s.%s", known[i]->resource, known[i]->group);
        else
            snprintf(full, sizeof(full), "%s", known[i]->resource);
        if (streq(full, name))
            return known[i];
    }
    return NULL;
}

static const char *errno_name(int r)
{
    switch (-r) {
    case ENOENT:
        return "ENOENT";
    case EEXIST:
        return "EEXIST";
    case ESTALE:
        return "ESTALE";
    case EKEYEXPIRED:
        return "EKEYEXPIRED";
    case EINVAL:
        return "EINVAL";
    case EBADMSG:
        return "EBADMSG";
    case EACCES:
        return "EACCES";
    case EPERM:
        return "EPERM";
    case EBUSY:
        return "EBUSY";
    case EIO:
        return "EIO";
    case ETIMEDOUT:
        return "ETIMEDOUT";
    case EKEYREJECTED:
        return "EKEYREJECTED";
    case ECONNREFUSED:
        return "ECONNREFUSED";
    case ECONNRESET:
        return "ECONNRESET";
    case EHOSTUNREACH:
        return "EHOSTUNREACH";
    case EPROTO:
        return "EPROTO";
    case EFBIG:
        return "EFBIG";
    case ECANCELED:
        return "ECANCELED";
    case EOPNOTSUPP:
        return "EOPNOTSUPP";
    default:
        return "OTHER";
    }
}

static int fail(int r, const ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
    _cleanup_free_ char *text = NULL;

    fprintf(stderr, "kube_probe: %s\n", err_msg(e));
    if (o && json_set_int64(o, "errno", -r) == 0 &&
        json_set_string(o, "error", errno_name(r)) == 0 &&
        json_set_string(o, "message", err_msg(e)) == 0 && (text = json_print(o)))
        printf("%s\n", text);
    return 1;
}

static void print_json(const cJSON *v)
{
    _cleanup_free_ char *text = json_print(v);
    printf("%s\n", text ? text : "null");
    fflush(stdout);
}

static int read_json_arg(const char *arg, cJSON **ret, ord_err *e)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0, cap = 0;

    if (!streq(arg, "-"))
        return json_parse(arg, strlen(arg), ret, e);
    for (;;) {
        size_t n;
        if (len + 4096 > cap) {
            char *p;
            cap = cap ? cap * 2 : 8192;
            if (cap > (64u << 20))
                return err_set(e, -EFBIG, "standard input is too large");
            p = realloc(buf, cap);
            if (!p)
                return err_set(e, -ENOMEM, "out of memory");
            buf = p;
        }
        n = fread(buf + len, 1, cap - len, stdin);
        len += n;
        if (n == 0)
            break;
    }
    return json_parse(buf, len, ret, e);
}

/* ---- watch and informer output ---- */

struct watch_ctx {
    long want;
    long seen;
    atomic_bool stop;
    pthread_mutex_t lock;
};

static void emit(const char *type, const char *ns, const char *name, const char *rv)
{
    _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
    if (!o)
        return;
    json_set_string(o, "type", type);
    if (ns)
        json_set_string(o, "namespace", ns);
    if (name)
        json_set_string(o, "name", name);
    if (rv)
        json_set_string(o, "resourceVersion", rv);
    print_json(o);
}

static void count_one(struct watch_ctx *w)
{
    pthread_mutex_lock(&w->lock);
    if (++w->seen >= w->want)
        atomic_store(&w->stop, true);
    pthread_mutex_unlock(&w->lock);
}

static int w_list(cJSON *list, const char *rv, void *userdata)
{
    _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
    const cJSON *it;
    cJSON *names = cJSON_CreateArray();

    cJSON_ArrayForEach(it, json_path(list, "items"))
    {
        const char *n = json_string(it, "metadata.name");
        cJSON_AddItemToArray(names, cJSON_CreateString(n ? n : ""));
    }
    json_set_string(o, "type", "LIST");
    json_set_string(o, "resourceVersion", rv);
    json_set_item(o, "names", names);
    print_json(o);
    return 0;
}

static int w_event(struct kube_event *ev, void *userdata)
{
    emit(kube_event_type_name(ev->type), json_string(ev->object, "metadata.namespace"),
         json_string(ev->object, "metadata.name"),
         json_string(ev->object, "metadata.resourceVersion"));
    count_one(userdata);
    return 0;
}

static void w_error(int r, const ord_err *e, void *userdata)
{
    _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
    json_set_string(o, "type", "RECOVERED");
    json_set_string(o, "error", errno_name(r));
    json_set_string(o, "message", err_msg(e));
    print_json(o);
}

static void i_add(struct kube_obj *o, void *userdata)
{
    emit("add", kube_obj_namespace(o), kube_obj_name(o), kube_obj_resource_version(o));
    count_one(userdata);
}

static void i_update(struct kube_obj *old, struct kube_obj *o, void *userdata)
{
    emit("update", kube_obj_namespace(o), kube_obj_name(o), kube_obj_resource_version(o));
    count_one(userdata);
}

static void i_delete(struct kube_obj *o, void *userdata)
{
    emit("delete", kube_obj_namespace(o), kube_obj_name(o), kube_obj_resource_version(o));
    count_one(userdata);
}

static void i_synced(void *userdata)
{
    emit("synced", NULL, NULL, NULL);
}

static void i_error(int r, const ord_err *e, void *userdata)
{
    w_error(r, e, userdata);
}

static struct watch_ctx *signal_ctx;

static void on_signal(int sig)
{
    if (signal_ctx)
        atomic_store(&signal_ctx->stop, true);
}

struct lw_args {
    struct kube_client *c;
    const struct kube_res *res;
    const char *ns, *label, *field;
    struct watch_ctx *w;
    int r;
    ord_err e;
};

static void *lw_thread(void *arg)
{
    struct lw_args *a = arg;

    a->r = kube_list_watch(
        a->c, a->res, a->ns,
        &(struct kube_watch_opts){.label_selector = a->label,
                                  .field_selector = a->field,
                                  .backoff_base_ms = 100,
                                  .backoff_cap_ms = 2000,
                                  .stop = &a->w->stop},
        &(struct kube_watch_handler){.on_list = w_list, .on_event = w_event, .on_error = w_error},
        a->w, &a->e);
    /* Whatever ended the loop ends the program. */
    atomic_store(&a->w->stop, true);
    return NULL;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: kube_probe [--kubeconfig F] [--context C] [--max-attempts N] [--timeout-ms N]\n"
            "                  [--backoff-ms N] [--label-selector S] [--limit N] [--sub S]\n"
            "                  [--timeout SECONDS] [--debug]\n"
            "                  get|list|create|update|patch|delete|request|watch|informer ARGS\n");
}

static bool parse_long(const char *s, long min, long max, long *ret)
{
    char *end;
    long v;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *ret = v;
    return true;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"kubeconfig", required_argument, NULL, 'k'},
        {"context", required_argument, NULL, 'c'},
        {"max-attempts", required_argument, NULL, 'a'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"backoff-ms", required_argument, NULL, 'b'},
        {"label-selector", required_argument, NULL, 'l'},
        {"field-selector", required_argument, NULL, 'f'},
        {"limit", required_argument, NULL, 'n'},
        {"sub", required_argument, NULL, 's'},
        {"timeout", required_argument, NULL, 'T'},
        {"debug", no_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {},
    };
    const char *kubeconfig = NULL, *context = NULL, *label = NULL, *field = NULL, *sub = NULL;
    long max_attempts = 0, timeout_ms = 0, backoff_ms = 0, limit = 0, overall = 0;
    _cleanup_(kube_client_freep) struct kube_client *c = NULL;
    struct kube_config *cfg = NULL;
    const struct kube_res *res = NULL;
    const char *cmd, *ns = NULL;
    ord_err e = {0};
    int opt, r;

    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'k':
            kubeconfig = optarg;
            break;
        case 'c':
            context = optarg;
            break;
        case 'l':
            label = optarg;
            break;
        case 'f':
            field = optarg;
            break;
        case 's':
            sub = optarg;
            break;
        case 'd':
            log_setup("kube_probe", LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT);
            break;
        case 'a':
            if (!parse_long(optarg, 1, 100, &max_attempts))
                goto bad;
            break;
        case 't':
            if (!parse_long(optarg, 1, 3600000, &timeout_ms))
                goto bad;
            break;
        case 'b':
            if (!parse_long(optarg, 1, 600000, &backoff_ms))
                goto bad;
            break;
        case 'n':
            if (!parse_long(optarg, 1, 100000, &limit))
                goto bad;
            break;
        case 'T':
            if (!parse_long(optarg, 1, 3600, &overall))
                goto bad;
            break;
        case 'h':
            usage();
            return 0;
        default:
            goto bad;
        }
    }
    if (optind >= argc)
        goto bad;
    cmd = argv[optind++];

    r = kube_config_load(kubeconfig, context, &cfg, &e);
    if (r < 0)
        return fail(r, &e);
    r = kube_client_new(
        cfg,
        &(struct kube_client_opts){.max_attempts = (unsigned)max_attempts,
                                   .timeout_ms = timeout_ms,
                                   .backoff_base_ms = backoff_ms,
                                   .backoff_cap_ms = backoff_ms ? backoff_ms * 8 : 0},
        &c, &e);
    if (r < 0)
        return fail(r, &e);

    if (streq(cmd, "request")) {
        struct kube_resp resp;
        _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
        const char *body = optind + 2 < argc ? argv[optind + 2] : NULL;
        if (optind + 2 > argc)
            goto bad;
        r = kube_request(c,
                         &(struct kube_req){.method = argv[optind],
                                            .path = argv[optind + 1],
                                            .body = body,
                                            .body_len = body ? strlen(body) : 0},
                         &resp, &e);
        json_set_int64(o, "status", resp.http_status);
        json_set_string(o, "reason", resp.reason);
        json_set_int64(o, "attempts", resp.attempts);
        if (resp.body)
            json_set_item(o, "body", TAKE_PTR(resp.body));
        kube_resp_done(&resp);
        print_json(o);
        return r < 0 ? fail(r, &e) : 0;
    }

    if (optind + 2 > argc)
        goto bad;
    res = find_res(argv[optind]);
    if (!res) {
        fprintf(stderr, "kube_probe: unknown resource '%s'\n", argv[optind]);
        return 2;
    }
    ns = streq(argv[optind + 1], "-") ? NULL : argv[optind + 1];
    optind += 2;

    if (streq(cmd, "get") || streq(cmd, "delete")) {
        _cleanup_(cJSON_Deletep) cJSON *obj = NULL;
        if (optind >= argc)
            goto bad;
        if (streq(cmd, "get"))
            r = kube_get_sub(c, res, ns, argv[optind], sub, &obj, &e);
        else
            r = kube_delete(c, res, ns, argv[optind], NULL, &obj, &e);
        if (r < 0)
            return fail(r, &e);
        print_json(obj);
        return 0;
    }
    if (streq(cmd, "list")) {
        _cleanup_(cJSON_Deletep) cJSON *obj = NULL;
        r = kube_list(c, res, ns,
                      &(struct kube_list_opts){
                          .label_selector = label, .field_selector = field, .limit = limit},
                      &obj, &e);
        if (r < 0)
            return fail(r, &e);
        print_json(obj);
        return 0;
    }
    if (streq(cmd, "create") || streq(cmd, "update") || streq(cmd, "patch")) {
        _cleanup_(cJSON_Deletep) cJSON *in = NULL, *out = NULL;
        const char *name = NULL;
        if (streq(cmd, "patch")) {
            if (optind + 2 > argc)
                goto bad;
            name = argv[optind++];
        }
        if (optind >= argc)
            goto bad;
        r = read_json_arg(argv[optind], &in, &e);
        if (r < 0)
            return fail(r, &e);
        if (streq(cmd, "create"))
            r = kube_create(c, res, ns, in, &out, &e);
        else if (streq(cmd, "update"))
            r = kube_update_sub(c, res, ns, in, sub, &out, &e);
        else
            r = kube_patch(c, res, ns, name, sub, in, &out, &e);
        if (r < 0)
            return fail(r, &e);
        print_json(out);
        return 0;
    }
    if (streq(cmd, "watch") || streq(cmd, "informer")) {
        struct watch_ctx w = {.lock = PTHREAD_MUTEX_INITIALIZER};
        struct lw_args a = {c, res, ns, label, field, &w, 0, {0}};
        _cleanup_(kube_informer_freep) struct kube_informer *inf = NULL;
        time_t end;
        pthread_t t;
        bool timed_out = false;

        if (optind >= argc || !parse_long(argv[optind], 1, 1000000, &w.want))
            goto bad;
        atomic_init(&w.stop, false);
        signal_ctx = &w;
        signal(SIGTERM, on_signal);
        signal(SIGINT, on_signal);
        end = overall ? time(NULL) + overall : 0;
        if (streq(cmd, "watch")) {
            /* The loop runs in a thread of its own so that --timeout can stop it. */
            r = pthread_create(&t, NULL, lw_thread, &a);
            if (r != 0)
                return fail(-r, &e);
        } else {
            r = kube_informer_new(c,
                                  &(struct kube_informer_opts){.res = res,
                                                               .ns = ns,
                                                               .label_selector = label,
                                                               .field_selector = field,
                                                               .on_add = i_add,
                                                               .on_update = i_update,
                                                               .on_delete = i_delete,
                                                               .on_synced = i_synced,
                                                               .on_error = i_error,
                                                               .userdata = &w},
                                  &inf, &e);
            if (r < 0 || (r = kube_informer_start(inf, &e)) < 0)
                return fail(r, &e);
        }
        while (!atomic_load(&w.stop)) {
            if (end && time(NULL) >= end) {
                timed_out = true;
                atomic_store(&w.stop, true);
                break;
            }
            usleep(20000);
        }
        if (inf) {
            char rv[128];
            kube_informer_resource_version(inf, rv, sizeof(rv));
            {
                _cleanup_(cJSON_Deletep) cJSON *o = cJSON_CreateObject();
                json_set_string(o, "type", "cache");
                json_set_int64(o, "count", (int64_t)kube_informer_count(inf));
                json_set_string(o, "resourceVersion", rv);
                print_json(o);
            }
            kube_informer_stop(inf);
        } else {
            pthread_join(t, NULL);
            if (a.r < 0)
                return fail(a.r, &a.e);
        }
        if (timed_out) {
            fprintf(stderr, "kube_probe: %ld of %ld events before the timeout\n", w.seen, w.want);
            return 3;
        }
        return 0;
    }
bad:
    usage();
    return 2;
}
