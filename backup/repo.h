/*
 * repo.h - the backup repository: named objects ("keys") in a directory or, later, an S3
 * bucket, behind one interface.
 *
 * Every backend is a const table of function pointers (struct repo_backend), the way
 * libblkid describes each filesystem with a const idinfo: repo_file.c is the directory
 * backend; an S3 backend plugs in by adding a table. Keys are relative, '/'-separated, made
 * of [A-Za-z0-9._-] components that never start with '.' (dot names are the backends' own
 * temporaries), at most REPO_KEY_MAX bytes. The layout of keys is DESIGN §4:
 *
 *   ordinal-repo.json                                         format version
 *   locks/<ns>/<sts>.lock                                     one writer per StatefulSet
 *   backups/<ns>/<sts>/<id>/ordinal-<k>/<template>.tar.zst    stored object per volume
 *   backups/<ns>/<sts>/<id>/ordinal-<k>/<template>.json       volume manifest
 *   backups/<ns>/<sts>/<id>/backup.json                       the commit record, written last
 *
 * Writes are atomic: an object is either absent or entirely present with its final content
 * (temporary name, fsync, rename, fsync of the directory for the file backend; a single PUT
 * or a completed multipart upload for S3). See docs/internals/repository.md.
 */
#ifndef ORDINAL_REPO_H
#define ORDINAL_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"
#include "stream.h"

#define REPO_KEY_MAX        1024
#define REPO_FORMAT_VERSION 1
#define REPO_CONFIG_KEY     "ordinal-repo.json"
/* The largest JSON object (manifest, lock, config) read into memory. */
#define REPO_JSON_MAX (8u << 20)

/* Called once per key found by list(); a negative return stops the listing with that code. */
typedef int (*repo_list_fn)(void *ctx, const char *key, uint64_t size);

struct repo_backend {
    const char *name; /* "file" */
    /* location: what follows the scheme (an absolute path for "file"). */
    int (*open)(const char *location, bool create, void **ret_state, ord_err *e);
    void (*close)(void *state);
    /* > 0 when the repository holds nothing but ignorable entries, 0 when it holds something. */
    int (*is_empty)(void *state, ord_err *e);

    /* Streaming put: nothing is visible under key until commit() returns 0. */
    int (*put_begin)(void *state, const char *key, void **ret_writer, ord_err *e);
    int (*put_write)(void *writer, const void *buf, size_t len, ord_err *e);
    int (*put_commit)(void *writer, ord_err *e); /* frees the writer, success or not */
    void (*put_abort)(void *writer);             /* frees the writer; nothing becomes visible */

    /* Creates key with buf as its whole content only if key does not exist: -EEXIST if it does. */
    int (*create_excl)(void *state, const char *key, const void *buf, size_t len, ord_err *e);
    /* Removes key only if its content is still exactly expect: -ESTALE if it changed. */
    int (*remove_if)(void *state, const char *key, const void *expect, size_t len, ord_err *e);

    /* Streaming get: -ENOENT when the key does not exist. */
    int (*get_open)(void *state, const char *key, uint64_t *ret_size, void **ret_reader,
                    ord_err *e);
    ssize_t (*get_read)(void *reader, void *buf, size_t len, ord_err *e);
    void (*get_close)(void *reader);

    /* Every key under prefix ("" = all; else a key prefix ending at a '/' boundary), any order. */
    int (*list)(void *state, const char *prefix, repo_list_fn fn, void *ctx, ord_err *e);
    /* Removes one key: -ENOENT when absent. */
    int (*remove)(void *state, const char *key, ord_err *e);
    /* Removes everything under prefix, the backend's leftovers (temporaries) included. */
    int (*remove_prefix)(void *state, const char *prefix, ord_err *e);
    /*
     * Whether this process may create and remove entries in the directory dir ("" = the top),
     * and with recursive in every directory below it; a dir that does not exist passes. Changes
     * nothing. -EACCES with e naming the directory, its owner, group and mode, and the command
     * that fixes it. NULL for a backend without per-writer permissions (S3: its credentials).
     */
    int (*check_writable)(void *state, const char *dir, bool recursive, ord_err *e);
};

extern const struct repo_backend repo_file_backend;

struct repo {
    const struct repo_backend *ops;
    void *state;
    char url[4096]; /* as the user wrote it, for messages */
};

struct repo_writer {
    struct repo *repo;
    void *w;
    char key[REPO_KEY_MAX + 1];
};

struct repo_reader {
    struct repo *repo;
    void *r;
    uint64_t size;
};

enum repo_open_mode {
    REPO_OPEN_EXISTING = 0, /* must already be an ordinal repository */
    REPO_OPEN_CREATE = 1,   /* initialise an empty directory (or create it) on first backup */
};

/*
 * Opens the repository named by url: an absolute path, "file:///path", or "s3://bucket/prefix"
 * (the S3 backend, repo_s3.h). Checks ordinal-repo.json: a repository of another format
 * version is refused; a location without it is initialised when mode is REPO_OPEN_CREATE and
 * it is empty, refused otherwise. A URL holding the placeholder of deploy/backup-config.yaml
 * ("CHANGE-ME") is refused with what to set. Returns 0 and *ret (free with repo_close()), or a
 * negative errno with e filled.
 */
int repo_open(const char *url, enum repo_open_mode mode, struct repo **ret, ord_err *e);
void repo_close(struct repo *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct repo *, repo_close);

/*
 * Shared repositories. A directory repository is written by processes of different users: the
 * agent as root (on NFS with root_squash: as nobody), the CronJob's coordinator and the restore
 * Job as uid 65532. They share it through one group, the group of the repository's top
 * directory (65532 in deploy/): every directory a writer creates is made mode 2770 (setgid, so
 * what is created in it inherits the group) and every file 0660, whatever the umask, and both
 * get that group. Every writer checks first, changing nothing, that it can write the
 * directories it will use (repo_check_writable()), and refuses with the owner, group and mode
 * found and the command that fixes them. docs/operations.md, "Sharing a directory repository".
 */
#define REPO_SHARED_GID 65532 /* the group deploy/ gives every writer */
#define REPO_DIR_MODE   02770
#define REPO_FILE_MODE  0660

enum repo_write_scope {
    REPO_WRITE_LOCK = 1 << 0,    /* locks/ and locks/<ns>/: every lock taker */
    REPO_WRITE_BACKUPS = 1 << 1, /* backups/, backups/<ns>/, backups/<ns>/<sts>/[<id>/] */
    REPO_WRITE_TREE = 1 << 2,    /* and every directory below them: prune removes backups */
};

/*
 * Checks that this process can write what scope names in the repository, for the StatefulSet
 * ns/sts (both NULL: every StatefulSet, then the checks cover all of locks/ and backups/) and,
 * with REPO_WRITE_BACKUPS, the directory of backup id when id is given and it exists. The top
 * directory is always checked. Changes nothing. Returns 0, or -EACCES with e saying which
 * directory, its owner, group and mode, what every writer needs and the command that fixes it.
 */
int repo_check_writable(struct repo *r, const char *ns, const char *sts, const char *id,
                        unsigned scope, ord_err *e);

/*
 * The check a long-running writer (the agent) makes at start: the repository at url, when it
 * exists, must let this process write its top directory and backups/. Returns 0 (also when
 * there is no repository yet), or a negative errno with e filled.
 */
int repo_check_url_writable(const char *url, ord_err *e);

/*
 * After a write failed with code (-EACCES or -EPERM) at key: appends to e what the directory
 * of key needs and the command that fixes it (nothing for other codes or backends).
 */
void repo_explain_denied(struct repo *r, const char *key, int code, ord_err *e);

/* True for a key the backends accept (see the top of this file). */
bool repo_key_valid(const char *key);

/* Key builders; each returns 0 or -ENAMETOOLONG. */
int repo_key_backup_dir(char *buf, size_t size, const char *ns, const char *sts, const char *id);
int repo_key_backup_json(char *buf, size_t size, const char *ns, const char *sts, const char *id);
int repo_key_volume(char *buf, size_t size, const char *ns, const char *sts, const char *id,
                    int32_t ordinal, const char *tmpl, const char *suffix);
int repo_key_lock(char *buf, size_t size, const char *ns, const char *sts);

/* Streaming put. repo_writer_commit()/abort() end the writer (and free it). */
int repo_put_begin(struct repo *r, const char *key, struct repo_writer **ret, ord_err *e);
int repo_writer_commit(struct repo_writer *w, ord_err *e);
void repo_writer_abort(struct repo_writer *w);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct repo_writer *, repo_writer_abort);
/* A byte_sink that appends to w. */
struct byte_sink repo_writer_sink(struct repo_writer *w);

/* Streaming get: -ENOENT with a message naming the key when it does not exist. */
int repo_get_open(struct repo *r, const char *key, struct repo_reader **ret, ord_err *e);
void repo_reader_close(struct repo_reader *rd);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct repo_reader *, repo_reader_close);
struct byte_source repo_reader_source(struct repo_reader *rd);

/* Whole small objects. get: at most max bytes (else -EFBIG), NUL-terminated, *ret_len without
 * the NUL. */
int repo_get_small(struct repo *r, const char *key, size_t max, char **ret, size_t *ret_len,
                   ord_err *e);
int repo_put_small(struct repo *r, const char *key, const void *buf, size_t len, ord_err *e);

int repo_create_excl(struct repo *r, const char *key, const void *buf, size_t len, ord_err *e);
int repo_remove_if(struct repo *r, const char *key, const void *expect, size_t len, ord_err *e);
int repo_list(struct repo *r, const char *prefix, repo_list_fn fn, void *ctx, ord_err *e);
int repo_remove(struct repo *r, const char *key, ord_err *e);
int repo_remove_prefix(struct repo *r, const char *prefix, ord_err *e);

#endif
