/*
 * macro.h - small language helpers used everywhere: cleanup attributes, ownership hand-over,
 * array sizes. Modelled on systemd's _cleanup_ and TAKE_PTR idioms: a variable marked with a
 * cleanup attribute is released when it goes out of scope, and TAKE_PTR()/TAKE_FD() move
 * ownership out of it so that the cleanup becomes a no-op.
 */
#ifndef ORDINAL_MACRO_H
#define ORDINAL_MACRO_H

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define _must_check_ __attribute__((warn_unused_result))
#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p)
{
    free(*(void **)p);
}

static inline void closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)

/* Defines static inline NAME##p(type **p) that calls func(*p) when *p is not NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                                                    \
    static inline void func##p(type *p)                                                            \
    {                                                                                              \
        if (*p)                                                                                    \
            func(*p);                                                                              \
    }

/* Return the value of a variable and reset the variable, handing ownership to the caller. */
#define TAKE_GENERIC(var, type, nullvalue)                                                         \
    ({                                                                                             \
        type *_pvar_ = &(var);                                                                     \
        type _var_ = *_pvar_;                                                                      \
        type _nullvalue_ = nullvalue;                                                              \
        *_pvar_ = _nullvalue_;                                                                     \
        _var_;                                                                                     \
    })
#define TAKE_PTR(ptr) TAKE_GENERIC(ptr, typeof(ptr), NULL)
#define TAKE_FD(fd) TAKE_GENERIC(fd, int, -EBADF)

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define streq(a, b) (strcmp((a), (b)) == 0)

#endif
