/*
 * stream.h - byte sinks and sources: how the archive engine meets a repository without
 * knowing which one. The engine pushes the stored bytes (a zstd-compressed pax tar, or a
 * device image) into a sink and pulls them back from a source; the repository module wraps
 * its object writers and readers in these.
 */
#ifndef ORDINAL_STREAM_H
#define ORDINAL_STREAM_H

#include <stddef.h>
#include <sys/types.h>

#include "err.h"

struct byte_sink {
    /* Writes all of buf; returns 0 or a negative errno with e filled. */
    int (*write)(void *ctx, const void *buf, size_t len, ord_err *e);
    void *ctx;
};

struct byte_source {
    /*
     * Reads up to len bytes; returns the count (0 at the end) or a negative errno.
     * The engine calls it from a helper thread (decompression runs beside extraction), one
     * call at a time and only between the engine call's start and return: it must not rely
     * on thread-local state of the caller's thread.
     */
    ssize_t (*read)(void *ctx, void *buf, size_t len, ord_err *e);
    void *ctx;
};

#endif
