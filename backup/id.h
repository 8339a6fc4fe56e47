/*
 * id.h - backup IDs: the UTC time the backup started, "20261121T203000Z", with "-1", "-2", …
 * appended when a backup of the same StatefulSet already used that second. IDs are the
 * directory names under backups/<ns>/<sts>/ and they sort by time when compared with
 * id_compare() (plain strcmp would put "-10" before "-2").
 */
#ifndef ORDINAL_BACKUP_ID_H
#define ORDINAL_BACKUP_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* "20261121T203000Z-4294967295" plus NUL fits. */
#define ID_MAX        32
#define ID_SUFFIX_MAX 9999u

struct backup_id {
    time_t time;     /* seconds since the epoch, UTC */
    uint32_t suffix; /* 0 = none */
};

/* Formats t (UTC) and suffix into buf. Returns 0, or -EINVAL/-ERANGE for an unusable time. */
int id_format(time_t t, uint32_t suffix, char *buf, size_t size);

/*
 * Parses an ID strictly: 16 characters YYYYMMDDTHHMMSSZ with a valid calendar date and time,
 * optionally "-N" with N canonical decimal 1..ID_SUFFIX_MAX. Returns 0 or -EINVAL.
 */
int id_parse(const char *s, struct backup_id *ret);

/* Orders by time, then suffix; invalid IDs sort first, by strcmp. */
int id_compare(const char *a, const char *b);

/*
 * Picks the first free ID for a backup started at t: exists(ctx, candidate) says whether a
 * candidate is taken (> 0), free (0) or failed (< 0). Returns 0 with ret filled, -EEXIST when
 * every suffix up to ID_SUFFIX_MAX is taken, or the error of exists().
 */
int id_generate(time_t t, int (*exists)(void *ctx, const char *id), void *ctx, char *ret,
                size_t size);

/* Formats t as RFC 3339 UTC ("2026-11-21T20:30:00Z"). Returns 0 or -ERANGE. */
int time_format_rfc3339(time_t t, char *buf, size_t size);

/* Parses what time_format_rfc3339() writes (only that form). Returns 0 or -EINVAL. */
int time_parse_rfc3339(const char *s, time_t *ret);

#endif
