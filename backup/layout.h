/*
 * layout.h - the node layout as the backup agent sees it (DESIGN §2):
 *
 *   <root>/<ns>/<sts>/<ordinal>/<template>
 *
 * An entry that is a directory is a directory volume; an entry that is a symlink to a block
 * device is a device volume. Nothing else is accepted: any other symlink is refused (never
 * followed), and so is any other file type. Names starting with '.' are bookkeeping beside
 * the entries (restore staging) and are skipped. Everything is opened relative to directory
 * fds with O_NOFOLLOW below the root.
 */
#ifndef ORDINAL_LAYOUT_H
#define ORDINAL_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "err.h"
#include "names.h"

#define LAYOUT_PATH_MAX 4096

struct layout_volume {
    int32_t ordinal;
    char template_name[NAMES_SUBDOMAIN_MAX + 1];
    enum volume_kind kind;
    char path[LAYOUT_PATH_MAX];   /* <root>/<ns>/<sts>/<ordinal>/<template> */
    char device[LAYOUT_PATH_MAX]; /* device volumes: the symlink's target */
};

struct layout {
    struct layout_volume *v; /* by ordinal, then template */
    size_t n;
};

void layout_free(struct layout *l);

/*
 * Finds every volume of sts under root. Returns 0 with *ret (possibly empty when the
 * StatefulSet directory exists but holds no volume), -ENOENT when there is no directory for
 * the StatefulSet, or another negative errno (a refused entry: -EINVAL naming it).
 */
int layout_scan(const char *root, const struct sts_ref *sts, struct layout *ret, ord_err *e);

/*
 * Looks up one entry. Returns 0 with *ret, -ENOENT (e says what is missing and what to
 * create), or -EINVAL for an entry that is neither a directory nor a symlink to a block device.
 */
int layout_lookup(const char *root, const struct sts_ref *sts, int32_t ordinal, const char *tmpl,
                  struct layout_volume *ret, ord_err *e);

/* "<root>/<ns>/<sts>/<ordinal>/.<template>.restore-<id>". Returns 0 or -ENAMETOOLONG. */
int layout_staging_path(char *buf, size_t size, const char *root, const struct sts_ref *sts,
                        int32_t ordinal, const char *tmpl, const char *id);

/*
 * Removes every ".<template>.restore-*" entry beside the volume (what a killed restore left:
 * a partial extraction, or the old content after the swap). Returns the number removed or a
 * negative errno.
 */
int layout_remove_staging(const char *root, const struct sts_ref *sts, int32_t ordinal,
                          const char *tmpl, ord_err *e);

#endif
