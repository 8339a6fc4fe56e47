/*
 * fs_rmtree.h - removal of a tree that never follows a symlink and never crosses a mount.
 *
 * Used by the backup engine (old content after a restore swap, a failed staging entry) and by
 * the provisioner (Delete reclaim). Everything is done relative to directory fds with
 * openat(O_NOFOLLOW)/fstatat(AT_SYMLINK_NOFOLLOW)/unlinkat, so a symlink inside the tree is
 * removed as a link and never resolved, and a path of any total length works. A directory
 * on another filesystem (a mount point inside the tree) is never entered: the removal stops
 * with -EXDEV and a message naming it, leaving it and its ancestors in place. Directories
 * without write/search permission are made writable (u+rwx) before they are emptied.
 */
#ifndef ORDINAL_FS_RMTREE_H
#define ORDINAL_FS_RMTREE_H

#include "err.h"

/*
 * Removes `name` (a single path component, not "." or "..", no '/') inside the directory
 * dirfd, recursively when it is a directory. A missing name is success.
 * Returns: 0 when nothing named `name` is left; -EXDEV when the tree holds a mount point (or
 * `name` itself is one); -EINVAL for a bad name; another negative errno when a removal
 * failed. e names the offending entry relative to `name`.
 */
int fs_rmtree_at(int dirfd, const char *name, ord_err *e);

#endif
