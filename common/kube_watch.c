/*
 * kube_watch.c - see kube_watch.h.
 *
 * The parser keeps at most one partial line (bounded by max_line); complete lines found in a
 * chunk are parsed in place without copying. Events are validated before the callback sees
 * them: a known type and an object, so that consumers never handle half-formed events.
 *
 * The list+watch loop keeps the last resourceVersion it applied. Where it resumes:
 *   - watch ended cleanly (server timeout) or the connection dropped: watch again from that
 *     resourceVersion (events after it are replayed by the server);
 *   - 410 Gone (HTTP or ERROR event): the server no longer has that history: relist;
 *   - a line we could not parse: an event may be lost, so relist to stay consistent;
 *   - other failures: back off (full jitter), then watch again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "kube_private.h"
#include "kube_watch.h"
#include "log.h"

#define RV_MAX 128

/* ---- parser ---- */

struct kube_watch_parser {
    char *buf; /* the partial line carried between chunks */
    size_t len, cap;
    size_t max_line;
    kube_event_cb cb;
    void *userdata;
    size_t events;
    int error; /* sticky */
    ord_err err;
};

static const char *const event_names[] = {
    [KUBE_EVENT_ADDED] = "ADDED",     [KUBE_EVENT_MODIFIED] = "MODIFIED",
    [KUBE_EVENT_DELETED] = "DELETED", [KUBE_EVENT_BOOKMARK] = "BOOKMARK",
    [KUBE_EVENT_ERROR] = "ERROR",
};

const char *kube_event_type_name(enum kube_event_type t)
{
    return (size_t)t < ARRAY_SIZE(event_names) ? event_names[t] : "?";
}

int kube_watch_parser_new(size_t max_line, kube_event_cb cb, void *userdata,
                          struct kube_watch_parser **ret)
{
    struct kube_watch_parser *p = calloc(1, sizeof(*p));

    if (!p)
        return -ENOMEM;
    p->max_line = max_line ? max_line : KUBE_WATCH_LINE_MAX_DEFAULT;
    p->cb = cb;
    p->userdata = userdata;
    *ret = p;
    return 0;
}

void kube_watch_parser_free(struct kube_watch_parser *p)
{
    if (!p)
        return;
    free(p->buf);
    free(p);
}

size_t kube_watch_parser_events(const struct kube_watch_parser *p)
{
    return p->events;
}

static int poison(struct kube_watch_parser *p, int r, ord_err *e)
{
    p->error = r;
    if (e)
        p->err = *e;
    else
        err_set(&p->err, r, "watch stream failed");
    return r;
}

static int sticky(struct kube_watch_parser *p, ord_err *e)
{
    if (e)
        *e = p->err;
    return p->error;
}

/* Parses one complete line (without its newline) and delivers it. */
static int parse_line(struct kube_watch_parser *p, const char *line, size_t len, ord_err *e)
{
    _cleanup_(cJSON_Deletep) cJSON *root = NULL;
    struct kube_event ev = {0};
    const char *type;
    cJSON *obj;
    size_t i;
    int r;

    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    for (i = 0; i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'); i++)
        ;
    if (i == len)
        return 0; /* blank line */

    r = json_parse(line, len, &root, e);
    if (r == -ENOMEM)
        return r;
    if (r < 0)
        return err_wrap(e, -EBADMSG, "watch event %zu is not JSON", p->events + 1);
    type = json_string(root, "type");
    if (!type)
        return err_set(e, -EBADMSG, "watch event %zu has no type", p->events + 1);
    for (i = 0; i < ARRAY_SIZE(event_names); i++)
        if (streq(type, event_names[i]))
            break;
    if (i == ARRAY_SIZE(event_names))
        return err_set(e, -EBADMSG, "watch event %zu has an unknown type '%.32s'", p->events + 1,
                       type);
    obj = cJSON_GetObjectItemCaseSensitive(root, "object");
    if (!cJSON_IsObject(obj))
        return err_set(e, -EBADMSG, "watch event %zu (%s) has no object", p->events + 1, type);

    ev.type = (enum kube_event_type)i;
    ev.object = cJSON_DetachItemViaPointer(root, obj);
    p->events++;
    r = p->cb ? p->cb(&ev, p->userdata) : 0;
    cJSON_Delete(ev.object);
    if (r < 0 && e && e->code == 0)
        err_set(e, r, "watch event handler failed");
    return r < 0 ? r : 0;
}

/* Appends to the partial line, enforcing max_line. */
static int carry(struct kube_watch_parser *p, const char *data, size_t len, ord_err *e)
{
    if (len > p->max_line || p->len > p->max_line - len)
        return err_set(e, -EMSGSIZE, "watch event %zu is longer than %zu bytes", p->events + 1,
                       p->max_line);
    if (p->len + len > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        char *n;
        while (cap < p->len + len)
            cap *= 2;
        if (cap > p->max_line)
            cap = p->max_line;
        n = realloc(p->buf, cap);
        if (!n)
            return err_set(e, -ENOMEM, "out of memory");
        p->buf = n;
        p->cap = cap;
    }
    memcpy(p->buf + p->len, data, len);
    p->len += len;
    return 0;
}

int kube_watch_parser_feed(struct kube_watch_parser *p, const char *data, size_t len, ord_err *e)
{
    ord_err local = {0};
    int r;

    if (p->error)
        return sticky(p, e);
    if (!e)
        e = &local;
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t n;
        if (!nl) {
            r = carry(p, data, len, e);
            if (r < 0)
                return poison(p, r, e);
            return 0;
        }
        n = (size_t)(nl - data);
        if (p->len > 0) {
            r = carry(p, data, n, e);
            if (r < 0)
                return poison(p, r, e);
            r = parse_line(p, p->buf, p->len, e);
            p->len = 0;
        } else {
            if (n > p->max_line)
                return poison(p,
                              err_set(e, -EMSGSIZE, "watch event %zu is longer than %zu bytes",
                                      p->events + 1, p->max_line),
                              e);
            r = parse_line(p, data, n, e);
        }
        if (r < 0)
            return poison(p, r, e);
        data = nl + 1;
        len -= n + 1;
    }
    return 0;
}

int kube_watch_parser_finish(struct kube_watch_parser *p, ord_err *e)
{
    ord_err local = {0};
    size_t i;
    int r;

    if (p->error)
        return sticky(p, e);
    if (!e)
        e = &local;
    for (i = 0; i < p->len; i++)
        if (p->buf[i] != ' ' && p->buf[i] != '\t' && p->buf[i] != '\r')
            break;
    if (i == p->len) {
        p->len = 0;
        return 0;
    }
    /* The server ends every event with a newline; a remainder is a cut-off event. */
    r = parse_line(p, p->buf, p->len, e);
    p->len = 0;
    if (r == -EBADMSG)
        r = err_set(e, -EPIPE, "the watch stream ended in the middle of event %zu", p->events + 1);
    if (r < 0)
        return poison(p, r, e);
    return 0;
}

/* ---- one watch request ---- */

enum watch_mode {
    WATCH_RAW,       /* kube_watch_once: everything to the callback */
    WATCH_REFLECTOR, /* kube_list_watch: bookmarks and errors handled here */
};

struct watch_state {
    enum watch_mode mode;
    kube_event_cb cb;
    void *userdata;
    char rv[RV_MAX];   /* last resourceVersion applied */
    int handler_error; /* the callback's error, to tell it apart from stream errors */
    int status_error;  /* an ERROR event's code */
    ord_err status_err;
    struct kube_watch_parser *parser;
    ord_err parse_err;
    long retry_after_s; /* Retry-After of an error answer, -1 when none */
};

static void note_rv(struct watch_state *w, const cJSON *obj)
{
    const char *rv = json_string(obj, "metadata.resourceVersion");

    if (rv && rv[0] && strlen(rv) < sizeof(w->rv))
        snprintf(w->rv, sizeof(w->rv), "%s", rv);
}

static int on_event(struct kube_event *ev, void *userdata)
{
    struct watch_state *w = userdata;
    int r;

    if (ev->type == KUBE_EVENT_ERROR) {
        char reason[64];
        w->status_error =
            kube_status_object_error("watch ERROR event", ev->object, reason, &w->status_err);
        if (w->mode == WATCH_REFLECTOR)
            return w->status_error;
    }
    if (w->mode == WATCH_REFLECTOR && ev->type == KUBE_EVENT_BOOKMARK) {
        note_rv(w, ev->object);
        return 0;
    }
    {
        /* Remember the version before the callback may take the object over. */
        char rv[RV_MAX] = "";
        const char *v = json_string(ev->object, "metadata.resourceVersion");
        if (v && strlen(v) < sizeof(rv))
            snprintf(rv, sizeof(rv), "%s", v);
        r = w->cb ? w->cb(ev, w->userdata) : 0;
        if (r < 0) {
            w->handler_error = r;
            return r;
        }
        if (rv[0] && ev->type != KUBE_EVENT_ERROR)
            snprintf(w->rv, sizeof(w->rv), "%s", rv);
    }
    return 0;
}

static int on_data(const char *data, size_t len, void *userdata)
{
    struct watch_state *w = userdata;
    return kube_watch_parser_feed(w->parser, data, len, &w->parse_err);
}

/*
 * Runs one watch request on conn from w->rv. Returns 0 when the stream ended cleanly,
 * KUBE_E_CANCELED, the handler's error (w->handler_error), KUBE_E_GONE, or another error.
 * *ret_events counts the events parsed.
 */
static int watch_request(struct kube_client *c, struct http_conn *conn, const char *base,
                         const struct kube_watch_opts *o, const atomic_bool *stop, bool force_token,
                         struct watch_state *w, size_t *ret_events, ord_err *e)
{
    _cleanup_(kube_watch_parser_freep) struct kube_watch_parser *parser = NULL;
    _cleanup_free_ char *path = NULL, *url = NULL, *auth = NULL;
    struct http_response resp;
    const char *headers[3];
    size_t nh = 0;
    char tmo[32];
    long timeout_s;
    int r;

    timeout_s = o && o->timeout_seconds > 0 ? o->timeout_seconds : 300 + (long)kube_rand(300);
    snprintf(tmo, sizeof(tmo), "%ld", timeout_s);
    if (kube_path_query(base, &path, "labelSelector", o ? o->label_selector : NULL, "fieldSelector",
                        o ? o->field_selector : NULL, "watch", "1", "resourceVersion",
                        w->rv[0] ? w->rv : NULL, "allowWatchBookmarks", "true", "timeoutSeconds",
                        tmo, NULL) < 0 ||
        kube_client_url(c, path, &url) < 0)
        return err_set(e, -ENOMEM, "out of memory");
    r = kube_client_auth_header(c, force_token, &auth, e);
    if (r < 0)
        return r;
    headers[nh++] = "Accept: application/json";
    if (auth)
        headers[nh++] = auth;
    headers[nh] = NULL;

    r = kube_watch_parser_new(o ? o->max_line : 0, on_event, w, &parser);
    if (r < 0)
        return err_set(e, r, "out of memory");
    w->parser = parser;
    w->handler_error = 0;
    w->status_error = 0;
    err_clear(&w->parse_err);
    err_clear(&w->status_err);

    r = http_do(conn,
                &(struct http_request){
                    .method = "GET",
                    .url = url,
                    .headers = headers,
                    .timeout_ms = (timeout_s + 30) * 1000,
                    .max_body = 1u << 20,
                    .on_data = on_data,
                    .userdata = w,
                    .cancel = stop,
                },
                &resp, e);
    if (auth)
        explicit_bzero(auth, strlen(auth));
    *ret_events = kube_watch_parser_events(parser);
    w->parser = NULL;
    w->retry_after_s = resp.retry_after_s;

    if (w->handler_error) {
        r = w->handler_error;
        if (e && e->code != r)
            err_set(e, r, "watch event handler failed");
    } else if (w->status_error) {
        r = w->status_error;
        if (e)
            *e = w->status_err;
    } else if (w->parse_err.code) {
        r = w->parse_err.code;
        if (e)
            *e = w->parse_err;
    } else if (r == 0 && (resp.status < 200 || resp.status >= 300)) {
        char reason[64];
        r = kube_status_error(c, "GET", path, resp.status, resp.body, resp.body_len, reason, e);
    } else if (r == 0) {
        r = kube_watch_parser_finish(parser, e);
    }
    http_response_done(&resp);
    if (r == -ECANCELED || (stop && atomic_load(stop) && r < 0 && !w->handler_error))
        r = KUBE_E_CANCELED;
    return r;
}

int kube_watch_once(struct kube_client *c, const struct kube_res *r, const char *ns,
                    const char *resource_version, const struct kube_watch_opts *o, kube_event_cb cb,
                    void *userdata, ord_err *e)
{
    _cleanup_(http_conn_freep) struct http_conn *conn = NULL;
    _cleanup_free_ char *base = NULL;
    struct watch_state w = {.mode = WATCH_RAW, .cb = cb, .userdata = userdata};
    size_t events;
    int k;

    k = kube_path(r, ns, NULL, NULL, &base);
    if (k < 0)
        return err_set(e, k, "invalid resource path for %s", r ? r->resource : "?");
    if (resource_version) {
        if (strlen(resource_version) >= sizeof(w.rv))
            return err_set(e, -EINVAL, "resourceVersion '%.32s…' is too long", resource_version);
        snprintf(w.rv, sizeof(w.rv), "%s", resource_version);
    }
    k = kube_client_conn_new(c, &conn, e);
    if (k < 0)
        return k;
    return watch_request(c, conn, base, o, o ? o->stop : NULL, false, &w, &events, e);
}

/* ---- list + watch ---- */

static void report(const struct kube_watch_handler *h, void *userdata, int r, const ord_err *e)
{
    if (h->on_error)
        h->on_error(r, e, userdata);
    else
        log_debug("list+watch: %s", err_msg(e));
}

int kube_list_watch(struct kube_client *c, const struct kube_res *res, const char *ns,
                    const struct kube_watch_opts *o, const struct kube_watch_handler *h,
                    void *userdata, ord_err *e)
{
    _cleanup_(http_conn_freep) struct http_conn *conn = NULL;
    _cleanup_free_ char *base = NULL;
    static const atomic_bool never = false;
    const atomic_bool *stop = o && o->stop ? o->stop : &never;
    struct kube_watch_opts wo = o ? *o : (struct kube_watch_opts){0};
    struct watch_state w = {
        .mode = WATCH_REFLECTOR, .cb = h->on_event, .userdata = userdata, .retry_after_s = -1};
    long base_ms = wo.backoff_base_ms > 0 ? wo.backoff_base_ms : 500;
    long cap_ms = wo.backoff_cap_ms > 0 ? wo.backoff_cap_ms : 30000;
    bool need_list = true, force_token = false;
    unsigned failures = 0, gone_in_a_row = 0;
    int r;

    r = kube_path(res, ns, NULL, NULL, &base);
    if (r < 0)
        return err_set(e, r, "invalid resource path for %s", res ? res->resource : "?");

    while (!atomic_load(stop)) {
        ord_err err = {0};
        long delay_ms, retry_after_ms = -1;

        if (need_list) {
            _cleanup_(cJSON_Deletep) cJSON *list = NULL;
            const char *rv;
            r = kube_list_cancelable(c, res, ns,
                                     &(struct kube_list_opts){.label_selector = wo.label_selector,
                                                              .field_selector = wo.field_selector,
                                                              .limit = wo.page_size},
                                     stop, &list, &err);
            if (r == KUBE_E_CANCELED)
                break;
            if (r == 0) {
                rv = json_string(list, "metadata.resourceVersion");
                if (!rv || !rv[0] || strlen(rv) >= sizeof(w.rv)) {
                    r = err_set(&err, -EPROTO, "list of %s has no usable resourceVersion",
                                res->resource);
                } else {
                    snprintf(w.rv, sizeof(w.rv), "%s", rv);
                    r = h->on_list ? h->on_list(list, w.rv, userdata) : 0;
                    if (r < 0) {
                        if (e && err.code == 0)
                            err_set(e, r, "list handler failed");
                        return r;
                    }
                    need_list = false;
                    failures = 0;
                }
            }
        }

        if (!need_list) {
            size_t events = 0;
            int64_t started = kube_now_ms();
            if (!conn) {
                r = kube_client_conn_new(c, &conn, &err);
                if (r < 0) {
                    if (e)
                        *e = err;
                    return r;
                }
            }
            r = watch_request(c, conn, base, &wo, stop, force_token, &w, &events, &err);
            force_token = false;
            if (w.handler_error)
                return err_set(e, r, "%s", err_msg(&err));
            if (r == KUBE_E_CANCELED)
                break;
            if (r == 0) {
                /* The server closed the watch (timeoutSeconds): resume at once, unless it
                 * keeps closing empty watches right away. */
                if (events > 0 || kube_now_ms() - started > 1000) {
                    failures = 0;
                    gone_in_a_row = 0;
                    continue;
                }
                err_set(&err, -EPIPE, "watch of %s ended at once without events", res->resource);
                r = -EPIPE;
            } else if (r == KUBE_E_GONE) {
                report(h, userdata, r, &err);
                need_list = true;
                /* One relist right away; 410s in a row back off like other failures. */
                if (gone_in_a_row++ == 0)
                    continue;
            } else if (r == -EBADMSG || r == -EMSGSIZE) {
                /* An event we could not read may be lost: only a relist is consistent. */
                need_list = true;
            } else if (r == KUBE_E_UNAUTHORIZED && kube_client_token_from_file(c)) {
                force_token = true;
            } else if (r == KUBE_E_THROTTLED && w.retry_after_s >= 0) {
                retry_after_ms = w.retry_after_s * 1000;
            }
            if (events > 0) {
                failures = 0;
                gone_in_a_row = 0;
            }
        }

        /* A failure: report, give up after max_failures, else back off. */
        failures++;
        if (r != KUBE_E_GONE)
            report(h, userdata, r, &err);
        if (wo.max_failures && failures >= wo.max_failures) {
            if (e)
                *e = err;
            return r < 0 ? r : -EIO;
        }
        /* The server's Retry-After when it gave one (a throttled watch), else full jitter. */
        delay_ms =
            retry_after_ms >= 0 ? retry_after_ms : kube_backoff_ms(base_ms, cap_ms, failures - 1);
        if (kube_sleep_ms(delay_ms, stop) < 0)
            break;
    }
    return 0;
}
