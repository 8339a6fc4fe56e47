/*
 * cli.h - what the ordinal-backup subcommands share: messages in the house form
 * ("ordinal-backup restore: …"), exit codes, progress on a terminal, the node name, loading
 * and checking a backup's manifests, JSON on stdout. Each subcommand lives in cmd_<name>.c
 * and is entered through cmds.h.
 */
#ifndef ORDINAL_CLI_H
#define ORDINAL_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"
#include "manifest.h"
#include "names.h"
#include "repo.h"

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILURE = 1,
    CLI_EXIT_USAGE = 2,
};

#define CLI_PROG         "ordinal-backup"
#define CLI_DEFAULT_ROOT "/var/lib/ordinal"

/* Prints "ordinal-backup CMD: MESSAGE\n" on stderr. */
void cli_error(const char *cmd, const char *fmt, ...) _printf_(2, 3);

/* Parses the --statefulset NS/NAME value of cmd; on error prints why and returns -EINVAL. */
int cli_parse_sts(const char *cmd, const char *arg, struct sts_ref *ret);
void cli_warn(const char *cmd, const char *fmt, ...) _printf_(2, 3);

/* Seconds since the epoch with fraction (CLOCK_REALTIME) and a monotonic clock. */
double cli_now(void);
double cli_monotonic(void);

/* --node-name / $NODE_NAME (opt may be NULL), else the host name. */
void cli_node_name(const char *opt, char *buf, size_t size);
uint64_t cli_online_cpus(void);

/* "12.3 MiB" */
void cli_format_bytes(uint64_t v, char *buf, size_t size);

/* Progress on stderr while a volume is read, only when stderr is a terminal. */
struct cli_progress {
    bool on;
    double last;
    char label[128];
};
void cli_progress_init(struct cli_progress *p);
void cli_progress_cb(void *ctx, uint64_t bytes_done);
void cli_progress_done(struct cli_progress *p);

/*
 * Reads and strictly parses backup.json of (sts, id), checking that it names that backup.
 * Returns 0, -ENOENT (no backup.json: the backup is incomplete or absent) or another negative
 * errno, e filled.
 */
int cli_load_backup(struct repo *r, const struct sts_ref *sts, const char *id,
                    struct backup_manifest *ret, ord_err *e);

/* Reads the manifest of volume v of backup b and checks it agrees with b. */
int cli_load_volume(struct repo *r, const struct backup_manifest *b, const struct backup_volume *v,
                    struct volume_manifest *ret, ord_err *e);

/* The repository key of volume v's object in backup b. */
int cli_object_key(char *buf, size_t size, const struct backup_manifest *b,
                   const struct backup_volume *v);

/* The --json document of backup and restore: {"id", "statefulset", "order", "volumes"}.
 * Returns 0 or -ENOMEM. (cmd_backup.c) */
int cli_print_volumes_json(const char *id, const struct sts_ref *sts, const char *order,
                           const struct backup_volume *v, size_t n);
/* The same as a human summary on stdout. */
void cli_print_volumes_text(const char *what, const char *id, const struct sts_ref *sts,
                            const char *order, const struct backup_volume *v, size_t n);

/* The same two for a restore: lost (n entries, may be NULL) adds to each volume what it was
 * restored without ("lost_attributes": {kind: {"count", "examples"}} in JSON). */
int cli_print_restored_json(const char *id, const struct sts_ref *sts, const char *order,
                            const struct backup_volume *v, const struct engine_lost *lost,
                            size_t n);
void cli_print_restored_text(const char *what, const char *id, const struct sts_ref *sts,
                             const char *order, const struct backup_volume *v,
                             const struct engine_lost *lost, size_t n);

/* One volume of the --json of backup and restore, for a caller that adds fields (restore's
 * "backup" when volumes come from several backups); NULL on OOM. */
struct cJSON *cli_volume_json(const struct backup_volume *v);

/* {kind: {"count": N, "examples": [paths]}} for each kind l lost; NULL on OOM. */
struct cJSON *cli_lost_json(const struct engine_lost *l);

/* Prints text and a newline on stdout; frees nothing. */
void cli_print_json_text(const char *text);

/* The --repo row of the commands that read an existing repository ($ORDINAL_REPO works too). */
#define CLI_OPT_REPO(ptr)                                                                          \
    {.name = "repo", .type = OPT_STRING, .target = (ptr), .metavar = "URL",                        \
     .help = "Repository: an absolute path, file:///path or s3://BUCKET/PREFIX.",                  \
     .env = "ORDINAL_REPO", .required = true}

#endif
