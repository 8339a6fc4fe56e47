/*
 * fuzz_watch_stream.c - the watch-stream parser under arbitrary input cut into arbitrary
 * chunks. Input layout: byte 0 picks the line limit and the object hand-over, byte 1 seeds the
 * chunk sizes, the rest is the stream. Each event's object is inspected the way the reflector
 * does (resourceVersion, name, and an ERROR event's Status), so that a parsed event that is
 * not what the callback expects shows up here too.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "json.h"
#include "kube_private.h"
#include "kube_watch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_event(struct kube_event *ev, void *userdata)
{
    unsigned *flags = userdata;
    const char *rv = json_string(ev->object, "metadata.resourceVersion");
    const char *name = json_string(ev->object, "metadata.name");
    volatile size_t sink = (rv ? strlen(rv) : 0) + (name ? strlen(name) : 0);
    (void)sink;

    if (ev->type == KUBE_EVENT_ERROR) {
        char reason[64];
        ord_err e = {0};
        int r = kube_status_object_error("watch", ev->object, reason, &e);
        if (r >= 0 || e.code != r)
            __builtin_trap();
    }
    /* Stop now and then, as a handler may. */
    if ((*flags & 4) && name && name[0] == 'S')
        return -ECANCELED;
    /* Or take the object over (name points into it: not used after this). */
    if (*flags & 2) {
        cJSON *mine = TAKE_PTR(ev->object);
        cJSON_Delete(mine);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kube_watch_parser *p = NULL;
    unsigned flags, seed;
    size_t max_line, off = 2;
    ord_err e = {0};
    int r = 0;

    if (size < 2)
        return 0;
    flags = data[0];
    seed = data[1] | 1u;
    max_line = (flags & 1) ? 64 + (flags >> 3) * 16 : 0;
    if (kube_watch_parser_new(max_line, on_event, &flags, &p) < 0)
        return 0;
    while (off < size) {
        size_t n;
        seed = seed * 1103515245u + 12345u;
        n = 1 + (seed >> 16) % 97;
        if (n > size - off)
            n = size - off;
        r = kube_watch_parser_feed(p, (const char *)data + off, n, &e);
        if (r < 0) {
            /* Errors are sticky and carry a message. */
            if (!e.msg[0] || kube_watch_parser_feed(p, "\n", 1, NULL) != r)
                __builtin_trap();
            break;
        }
        off += n;
    }
    if (r == 0)
        (void)kube_watch_parser_finish(p, &e);
    kube_watch_parser_free(p);
    return 0;
}
