/*
 * identity.c - see identity.h.
 */
#include <stdio.h>
#include <string.h>

#include "identity.h"

int identity_parse_ordinal(const char *s, size_t len, int32_t *ret)
{
    int64_t v = 0;

    if (len == 0 || len > 10)
        return -EINVAL;
    if (s[0] == '0' && len > 1)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (s[i] - '0');
    }
    if (v > INT32_MAX)
        return -ERANGE;
    *ret = (int32_t)v;
    return 0;
}

/* True when name == tmpl + "-" + sts, without building the string. */
static int prefix_matches(const char *name, size_t len, const char *tmpl, const char *sts)
{
    size_t lt = strlen(tmpl), ls = strlen(sts);

    return lt + 1 + ls == len && memcmp(name, tmpl, lt) == 0 && name[lt] == '-' &&
           memcmp(name + lt + 1, sts, ls) == 0;
}

int identity_resolve(const char *claim, const struct sts_templates *sets, size_t n_sets,
                     struct ordinal_id *ret, ord_err *e)
{
    const struct sts_templates *found_set = NULL;
    const char *found_tmpl = NULL, *dash;
    size_t len, prefix_len;
    int32_t ordinal;

    if (!claim || !claim[0] || (len = strlen(claim)) > K8S_NAME_MAX)
        return err_set(e, -EINVAL, "invalid claim name");
    dash = strrchr(claim, '-');
    if (!dash || dash == claim)
        return IDENTITY_NOT_STS;
    if (identity_parse_ordinal(dash + 1, len - (size_t)(dash + 1 - claim), &ordinal) < 0)
        return IDENTITY_NOT_STS;
    prefix_len = (size_t)(dash - claim);

    for (size_t i = 0; i < n_sets; i++)
        for (size_t t = 0; t < sets[i].n_templates; t++) {
            if (!prefix_matches(claim, prefix_len, sets[i].templates[t], sets[i].name))
                continue;
            if (found_set)
                return err_set(e, -ENOTUNIQ,
                               "claim '%s' matches both StatefulSet '%s' (template '%s') and "
                               "StatefulSet '%s' (template '%s'); rename one of them",
                               claim, found_set->name, found_tmpl, sets[i].name,
                               sets[i].templates[t]);
            found_set = &sets[i];
            found_tmpl = sets[i].templates[t];
        }
    if (!found_set)
        return IDENTITY_NOT_STS;
    snprintf(ret->statefulset, sizeof(ret->statefulset), "%s", found_set->name);
    snprintf(ret->template_name, sizeof(ret->template_name), "%s", found_tmpl);
    ret->ordinal = ordinal;
    return IDENTITY_STS;
}
