/*
 * fsutil.h - small filesystem helpers of the backup agent: fsync of directories after a
 * rename. (Removal of trees is common/fs_rmtree.h.)
 */
#ifndef ORDINAL_FSUTIL_H
#define ORDINAL_FSUTIL_H

#include "err.h"

/* fsync() of a directory fd, ignoring filesystems that do not support it. Returns 0 or -errno. */
int fs_fsync_dir(int dirfd);

#endif
