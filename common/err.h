/*
 * err.h - errors that reach people.
 *
 * Every fallible function returns an int: >= 0 on success, a negative errno on failure. When
 * the failure must be explained to a person (a CLI message, a Kubernetes Event, a task status),
 * the function also fills a struct ord_err: the code plus a sentence that says what failed and,
 * where we know it, what to do. Callers add context on the way up with err_wrap() ("backing up
 * ordinal 2: " + inner message), the way crun's crun_error_wrap does, and the boundary prints it.
 *
 * An ord_err pointer may be NULL: the functions then only return the code.
 */
#ifndef ORDINAL_ERR_H
#define ORDINAL_ERR_H

#include <stddef.h>

#include "macro.h"

#define ORD_ERR_MSG_MAX 1024

typedef struct ord_err {
    int code;                  /* negative errno, 0 when no error was recorded */
    char msg[ORD_ERR_MSG_MAX]; /* one line, no trailing newline */
} ord_err;

/* Record an error. Returns code (negative) so that callers can write `return err_set(...)`. */
int err_set(ord_err *e, int code, const char *fmt, ...) _printf_(3, 4);

/* Like err_set(), and appends ": <strerror(-code)>". */
int err_set_errno(ord_err *e, int code, const char *fmt, ...) _printf_(3, 4);

/*
 * Prefix the recorded message with context ("context: old message"). If nothing was recorded
 * yet, records code with the context alone. Returns the recorded code (or code when none).
 */
int err_wrap(ord_err *e, int code, const char *fmt, ...) _printf_(3, 4);

/*
 * Append "; " and the text to the recorded message (for what happened after the failure, such
 * as a clean-up that failed too). Does nothing when nothing was recorded. Returns e->code.
 */
int err_append(ord_err *e, const char *fmt, ...) _printf_(2, 3);

/* Reset to "no error". */
void err_clear(ord_err *e);

/* The message, or strerror(-code) when none was recorded. Never NULL. */
const char *err_msg(const ord_err *e);

#endif
