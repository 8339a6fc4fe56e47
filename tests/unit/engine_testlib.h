/*
 * engine_testlib.h - helpers shared by the archive engine's unit tests: an in-memory byte
 * sink and source (the source can stop early or flip a byte), backups into memory, and the
 * expectation a manifest would hold.
 */
#ifndef ORDINAL_ENGINE_TESTLIB_H
#define ORDINAL_ENGINE_TESTLIB_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

struct membuf {
    uint8_t *p;
    size_t len, cap;
};

static inline int mem_write(void *ctx, const void *buf, size_t len, ord_err *e)
{
    struct membuf *m = ctx;

    if (m->len + len > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 1 << 16;
        while (ncap < m->len + len)
            ncap *= 2;
        uint8_t *np = realloc(m->p, ncap);
        if (!np)
            return err_set(e, -ENOMEM, "out of memory");
        m->p = np;
        m->cap = ncap;
    }
    memcpy(m->p + m->len, buf, len);
    m->len += len;
    return 0;
}

struct memsrc {
    const uint8_t *p;
    size_t len, pos;
    size_t chunk; /* max bytes per read, 0 = any */
};

static inline ssize_t mem_read(void *ctx, void *buf, size_t len, ord_err *e)
{
    struct memsrc *m = ctx;
    size_t n = m->len - m->pos;

    (void)e;
    if (n > len)
        n = len;
    if (m->chunk && n > m->chunk)
        n = m->chunk;
    memcpy(buf, m->p + m->pos, n);
    m->pos += n;
    return (ssize_t)n;
}

static inline struct engine_expect expect_of(const struct engine_stats *st, enum volume_kind kind)
{
    struct engine_expect x = {
        .kind = kind,
        .sha256 = st->sha256,
        .bytes_stored = st->bytes_stored,
        .bytes_in = st->bytes_in,
        .files = st->files,
    };
    return x;
}

#endif
