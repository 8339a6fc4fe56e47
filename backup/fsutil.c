/*
 * fsutil.c - see fsutil.h.
 */
#include <errno.h>
#include <unistd.h>

#include "fsutil.h"
#include "macro.h"

int fs_fsync_dir(int dirfd)
{
    if (fsync(dirfd) < 0 && errno != EINVAL && errno != EROFS)
        return -errno;
    return 0;
}
