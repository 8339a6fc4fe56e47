/*
 * log.c - see log.h. One line per call, written with a single write(2) so that lines from
 * several threads or processes sharing stderr never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static const char *log_ident = "ordinal";
static enum log_level log_level = LOG_LEVEL_INFO;
static enum log_format log_format = LOG_FORMAT_TEXT;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_setup(const char *ident, enum log_level level, enum log_format format)
{
    if (ident)
        log_ident = ident;
    log_level = level;
    log_format = format;
}

enum log_level log_get_level(void)
{
    return log_level;
}

int log_level_from_string(const char *s, enum log_level *ret)
{
    for (size_t i = 0; i < ARRAY_SIZE(level_names); i++)
        if (strcmp(s, level_names[i]) == 0) {
            *ret = (enum log_level)i;
            return 0;
        }
    if (strcmp(s, "warning") == 0) {
        *ret = LOG_LEVEL_WARN;
        return 0;
    }
    return -EINVAL;
}

int log_format_from_string(const char *s, enum log_format *ret)
{
    if (strcmp(s, "text") == 0)
        *ret = LOG_FORMAT_TEXT;
    else if (strcmp(s, "json") == 0)
        *ret = LOG_FORMAT_JSON;
    else
        return -EINVAL;
    return 0;
}

/* Appends s to buf as the inside of a JSON string; stops (truncates) at the end of buf. */
static size_t json_escape(char *buf, size_t size, size_t pos, const char *s)
{
    for (; *s && pos + 7 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[pos++] = '\\';
            buf[pos++] = (char)c;
        } else if (c < 0x20) {
            pos += (size_t)snprintf(buf + pos, size - pos, "\\u%04x", c);
        } else {
            buf[pos++] = (char)c;
        }
    }
    buf[pos] = '\0';
    return pos;
}

int log_emit(enum log_level level, int error, const char *fmt, ...)
{
    char msg[4096], line[8192], ts[64];
    struct timespec now;
    struct tm tm;
    va_list ap;
    size_t n;
    int saved = errno;

    if (error < 0)
        error = -error;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);

    if (log_format == LOG_FORMAT_JSON) {
        n = (size_t)snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\",\"component\":\"",
                             ts, level_names[level]);
        n = json_escape(line, sizeof(line), n, log_ident);
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\",\"msg\":\"");
        n = json_escape(line, sizeof(line) - 32, n, msg);
        if (error)
            n += (size_t)snprintf(line + n, sizeof(line) - n, "\",\"errno\":%d}\n", error);
        else
            n += (size_t)snprintf(line + n, sizeof(line) - n, "\"}\n");
    } else {
        n = (size_t)snprintf(line, sizeof(line), "%s %s %s: %s\n", ts, log_ident, level_names[level],
                             msg);
    }
    if (n >= sizeof(line)) {
        n = sizeof(line) - 1;
        line[n - 1] = '\n';
    }
    if (write(STDERR_FILENO, line, n) < 0) {
        /* Nothing sensible to do when stderr is gone. */
    }
    errno = saved;
    return -error;
}
