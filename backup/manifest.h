/*
 * manifest.h - the two JSON documents of a backup, as typed structs.
 *
 * A volume manifest (backups/<ns>/<sts>/<id>/ordinal-<k>/<template>.json) describes one stored
 * object: where it came from (node, path or device, PV and claim when known), what it holds
 * (kind, sizes, file count), how it was stored (SHA-256 of the stored bytes, zstd settings),
 * how long it took, and which files kept changing while they were read.
 *
 * backup.json (backups/<ns>/<sts>/<id>/backup.json) is the commit record of a whole backup,
 * written last: the StatefulSet, the order, the ordinals and every volume with its object
 * key and SHA-256, totals, the tool version and the status. A backup without it does not
 * exist.
 *
 * cJSON stays inside manifest.c: parsing is strict (every field type-checked, names
 * validated, sizes and counts bounded, keys re-derived rather than trusted, unknown format
 * versions refused) because a manifest comes from a repository that anybody with write
 * access to it could have edited. Fields this version does not know are ignored.
 */
#ifndef ORDINAL_MANIFEST_H
#define ORDINAL_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "err.h"
#include "id.h"
#include "names.h"

#define MANIFEST_VERSION     1
#define MANIFEST_PATH_MAX    4096
#define MANIFEST_CHANGED_MAX 1000
#define MANIFEST_VOLUMES_MAX 4096
#define MANIFEST_TEXT_MAX    (4u << 20)
/* Sizes travel as JSON numbers (doubles): integers above 2^53 would lose precision. */
#define MANIFEST_UINT_MAX (UINT64_C(1) << 53)

struct volume_manifest {
    char backup_id[ID_MAX];
    struct sts_ref sts;
    int32_t ordinal;
    char template_name[NAMES_SUBDOMAIN_MAX + 1];
    enum volume_kind kind;
    /* source */
    char node[NAMES_SUBDOMAIN_MAX + 1];
    char path[MANIFEST_PATH_MAX];        /* the entry in the node layout */
    char device[MANIFEST_PATH_MAX];      /* device volumes: the block device it pointed to */
    char pv[NAMES_SUBDOMAIN_MAX + 1];    /* "" when unknown */
    char claim[NAMES_SUBDOMAIN_MAX + 1]; /* "" when unknown */
    /* stored object */
    char object[NAMES_SUBDOMAIN_MAX + 32]; /* relative to the backup: ordinal-<k>/<t>.tar.zst */
    char sha256[ENGINE_SHA256_HEX];
    uint64_t bytes_in, bytes_stored, files;
    int level, threads;
    double started_at, finished_at, seconds; /* Unix time with fraction; duration */
    struct changed_file *changed;            /* at most MANIFEST_CHANGED_MAX kept */
    size_t n_changed;
    uint64_t n_changed_total; /* how many there were */
    char tool_version[64];
};

struct backup_volume {
    int32_t ordinal;
    char template_name[NAMES_SUBDOMAIN_MAX + 1];
    enum volume_kind kind;
    char object[NAMES_SUBDOMAIN_MAX + 32];   /* relative: ordinal-<k>/<template>.tar.zst */
    char manifest[NAMES_SUBDOMAIN_MAX + 32]; /* relative: ordinal-<k>/<template>.json */
    char sha256[ENGINE_SHA256_HEX];
    uint64_t bytes_in, bytes_stored, files;
    double started_at, finished_at, seconds;
};

/*
 * A Kubernetes object stored beside the volumes (cluster backups by the coordinator, `run`):
 * the StatefulSet and its headless Service as the API returned them, cleaned of status and
 * server fields (cluster_store.h), so that `restore --create` can re-create them. object is a
 * plain name relative to the backup ("statefulset.json", "service.json").
 */
#define BACKUP_OBJECTS_MAX 4
struct backup_object {
    char kind[32]; /* "StatefulSet" | "Service" */
    char object[64];
    char sha256[ENGINE_SHA256_HEX];
};

struct backup_manifest {
    char id[ID_MAX];
    char time[32]; /* RFC 3339, the instant the ID names */
    struct sts_ref sts;
    char order[8]; /* "reverse" | "ordinal" */
    char node[NAMES_SUBDOMAIN_MAX + 1];
    int32_t *ordinals; /* in the order processed */
    size_t n_ordinals;
    struct backup_volume *volumes; /* in the order processed */
    size_t n_volumes;
    uint64_t bytes_in, bytes_stored, files; /* totals */
    double started_at, finished_at, seconds;
    char tool_version[64];
    char status[16]; /* "complete" */
    /* Kubernetes objects stored with the backup ("objects"; absent in one-node backups and
     * in backups of versions before) */
    struct backup_object objects[BACKUP_OBJECTS_MAX];
    size_t n_objects;
};

void volume_manifest_free(struct volume_manifest *m);
void backup_manifest_free(struct backup_manifest *m);

/* The relative object and manifest names of a volume ("ordinal-2/data.tar.zst", ".json").
 * Return 0 or -ENAMETOOLONG. */
int manifest_object_name(char *buf, size_t size, int32_t ordinal, const char *tmpl);
int manifest_manifest_name(char *buf, size_t size, int32_t ordinal, const char *tmpl);

/* Serialise to a NUL-terminated JSON text (*ret, malloc'ed). Returns 0 or -ENOMEM. */
int volume_manifest_format(const struct volume_manifest *m, char **ret);
int backup_manifest_format(const struct backup_manifest *m, char **ret);

/*
 * Parse text (len bytes, need not be NUL-terminated). Returns 0 with *ret filled (free with
 * the _free function), or -EBADMSG (-EPROTONOSUPPORT for another format version) with a
 * message naming the bad field.
 */
int volume_manifest_parse(const char *text, size_t len, struct volume_manifest *ret, ord_err *e);
int backup_manifest_parse(const char *text, size_t len, struct backup_manifest *ret, ord_err *e);

/*
 * Checks that a volume manifest agrees with its entry in backup.json and with the backup
 * (same ID, StatefulSet, ordinal, template, kind, object, SHA-256, sizes). Returns 0 or
 * -EBADMSG with a message naming the first disagreement.
 */
int manifest_agree(const struct backup_manifest *b, const struct backup_volume *v,
                   const struct volume_manifest *m, ord_err *e);

const char *volume_kind_name(enum volume_kind k);

#endif
