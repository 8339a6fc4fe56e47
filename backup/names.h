/*
 * names.h - validation of the names the backup agent takes from users, the node layout and
 * manifests: Kubernetes DNS-1123 names (they become path components and repository keys, so
 * nothing else may pass), "NS/NAME" StatefulSet references and "--ordinals 0,2" lists.
 */
#ifndef ORDINAL_NAMES_H
#define ORDINAL_NAMES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define NAMES_LABEL_MAX     63
#define NAMES_SUBDOMAIN_MAX 253
#define NAMES_ORDINALS_MAX  4096

/* DNS-1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 characters (namespaces). */
bool names_dns_label(const char *s);

/* DNS-1123 subdomain: labels joined by '.', at most 253 characters (StatefulSets, templates). */
bool names_dns_subdomain(const char *s);

struct sts_ref {
    char ns[NAMES_LABEL_MAX + 1];
    char name[NAMES_SUBDOMAIN_MAX + 1];
};

/* Parses "NS/NAME". Returns 0 or -EINVAL with a message that says what is wrong. */
int names_parse_sts(const char *s, struct sts_ref *ret, ord_err *e);

/*
 * Parses "0,2,5": canonical ordinals, no duplicates, at most NAMES_ORDINALS_MAX. Returns 0
 * with *ret (malloc'ed, in the order given) and *ret_n, or -EINVAL with e filled.
 */
int names_parse_ordinals(const char *s, int32_t **ret, size_t *ret_n, ord_err *e);

#endif
