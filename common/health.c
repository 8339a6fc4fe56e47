/*
 * health.c - see health.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "health.h"
#include "macro.h"

int health_touch(const char *path)
{
    _cleanup_close_ int fd = -EBADF;
    char buf[32];
    int n;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return -errno;
    n = snprintf(buf, sizeof(buf), "%lld\n", (long long)time(NULL));
    if (write(fd, buf, (size_t)n) != n)
        return errno ? -errno : -EIO;
    return 0;
}

void health_remove(const char *path)
{
    if (path)
        (void)unlink(path);
}
