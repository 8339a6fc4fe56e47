/*
 * log.h - leveled logging to stderr, as text for people or JSON lines for log collectors.
 *
 * The macros check the level before evaluating their arguments, so debug lines cost nothing
 * when debug is off. log_*_errno(r, ...) log and return r, for `return log_error_errno(r, ...)`.
 * Library code logs at debug at most; whoever decides what to do about an error logs it, once.
 * Never pass a secret to these functions.
 */
#ifndef ORDINAL_LOG_H
#define ORDINAL_LOG_H

#include <stdbool.h>

#include "macro.h"

enum log_level {
    LOG_LEVEL_ERROR = 0,
    LOG_LEVEL_WARN = 1,
    LOG_LEVEL_INFO = 2,
    LOG_LEVEL_DEBUG = 3,
};

enum log_format {
    LOG_FORMAT_TEXT = 0,
    LOG_FORMAT_JSON = 1,
};

void log_setup(const char *ident, enum log_level level, enum log_format format);
enum log_level log_get_level(void);

/* "error", "warn", "info", "debug" / "text", "json"; return -EINVAL for anything else. */
int log_level_from_string(const char *s, enum log_level *ret);
int log_format_from_string(const char *s, enum log_format *ret);

/* Emits one line. Returns -abs(error) when error != 0, else 0. */
int log_emit(enum log_level level, int error, const char *fmt, ...) _printf_(3, 4);

#define log_full_errno(level, error, ...)                                                          \
    ((level) <= log_get_level() ? log_emit((level), (error), __VA_ARGS__)                          \
                                : -((error) < 0 ? -(error) : (error)))
#define log_full(level, ...) ((void)log_full_errno((level), 0, __VA_ARGS__))

#define log_error(...) log_full(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_full(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_full(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_full(LOG_LEVEL_DEBUG, __VA_ARGS__)

#define log_error_errno(r, ...) log_full_errno(LOG_LEVEL_ERROR, (r), __VA_ARGS__)
#define log_warn_errno(r, ...) log_full_errno(LOG_LEVEL_WARN, (r), __VA_ARGS__)
#define log_debug_errno(r, ...) log_full_errno(LOG_LEVEL_DEBUG, (r), __VA_ARGS__)

#endif
