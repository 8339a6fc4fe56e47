/*
 * err.c - see err.h. Messages are truncated to ORD_ERR_MSG_MAX, never overflowed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "err.h"

_printf_(3, 0) static void vset(ord_err *e, int code, const char *fmt, va_list ap)
{
    e->code = code;
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
}

int err_set(ord_err *e, int code, const char *fmt, ...)
{
    va_list ap;

    if (!e)
        return code;
    va_start(ap, fmt);
    vset(e, code, fmt, ap);
    va_end(ap);
    return code;
}

int err_set_errno(ord_err *e, int code, const char *fmt, ...)
{
    va_list ap;
    size_t len;

    if (!e)
        return code;
    va_start(ap, fmt);
    vset(e, code, fmt, ap);
    va_end(ap);
    len = strlen(e->msg);
    snprintf(e->msg + len, sizeof(e->msg) - len, ": %s", strerror(code < 0 ? -code : code));
    return code;
}

int err_wrap(ord_err *e, int code, const char *fmt, ...)
{
    char prefix[ORD_ERR_MSG_MAX];
    char old[ORD_ERR_MSG_MAX];
    va_list ap;

    if (!e)
        return code;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    if (e->code == 0) {
        e->code = code;
        snprintf(e->msg, sizeof(e->msg), "%s", prefix);
        return code;
    }
    memcpy(old, e->msg, sizeof(old));
    snprintf(e->msg, sizeof(e->msg), "%s: %s", prefix, old);
    return e->code;
}

void err_clear(ord_err *e)
{
    if (!e)
        return;
    e->code = 0;
    e->msg[0] = '\0';
}

const char *err_msg(const ord_err *e)
{
    if (!e)
        return "unknown error";
    if (e->msg[0])
        return e->msg;
    return e->code ? strerror(-e->code) : "no error";
}

int err_append(ord_err *e, const char *fmt, ...)
{
    char more[ORD_ERR_MSG_MAX];
    size_t len;
    va_list ap;

    if (!e || e->code == 0)
        return e ? e->code : 0;
    va_start(ap, fmt);
    vsnprintf(more, sizeof(more), fmt, ap);
    va_end(ap);
    len = strlen(e->msg);
    snprintf(e->msg + len, sizeof(e->msg) - len, "; %s", more);
    return e->code;
}
