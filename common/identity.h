/*
 * identity.h - which StatefulSet ordinal a claim belongs to.
 *
 * The StatefulSet controller names the claims it makes from volumeClaimTemplates
 * "<template>-<statefulset>-<ordinal>". Every part may contain dashes, so a name cannot be
 * split: it is matched against the namespace's StatefulSets and their template names. The
 * ordinal must be written as the controller writes it (decimal, no sign, no leading zero,
 * within int32), or the claim is not one the controller made.
 */
#ifndef ORDINAL_IDENTITY_H
#define ORDINAL_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define K8S_NAME_MAX 253

/* What the caller knows of one StatefulSet of the claim's namespace. */
struct sts_templates {
    const char *name;
    const char *const *templates; /* volumeClaimTemplates[].metadata.name */
    size_t n_templates;
};

struct ordinal_id {
    char statefulset[K8S_NAME_MAX + 1];
    char template_name[K8S_NAME_MAX + 1];
    int32_t ordinal;
};

enum {
    IDENTITY_NOT_STS = 0, /* a plain claim: no StatefulSet of the namespace made it */
    IDENTITY_STS = 1,     /* *ret is filled */
};

/*
 * Returns IDENTITY_STS, IDENTITY_NOT_STS, or a negative errno: -EINVAL for an invalid claim
 * name, -ENOTUNIQ when two (statefulset, template) pairs produce the same name (a person has
 * to rename one; we refuse to guess).
 */
int identity_resolve(const char *claim, const struct sts_templates *sets, size_t n_sets,
                     struct ordinal_id *ret, ord_err *e);

/* Parses a canonical ordinal ("0", "17"; not "01", "-1", "+1", " 1", overflow). */
int identity_parse_ordinal(const char *s, size_t len, int32_t *ret);

#endif
