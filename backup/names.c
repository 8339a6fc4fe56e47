/*
 * names.c - see names.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "names.h"

static bool label_ok(const char *s, size_t n)
{
    if (n == 0 || n > NAMES_LABEL_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && i > 0 && i < n - 1))
            return false;
    }
    return true;
}

bool names_dns_label(const char *s)
{
    return s && label_ok(s, strnlen(s, NAMES_LABEL_MAX + 1));
}

bool names_dns_subdomain(const char *s)
{
    size_t len;

    if (!s)
        return false;
    len = strnlen(s, NAMES_SUBDOMAIN_MAX + 1);
    if (len == 0 || len > NAMES_SUBDOMAIN_MAX)
        return false;
    for (const char *p = s;;) {
        size_t n = strcspn(p, ".");
        if (!label_ok(p, n))
            return false;
        if (!p[n])
            return true;
        p += n + 1;
    }
}

int names_parse_sts(const char *s, struct sts_ref *ret, ord_err *e)
{
    const char *slash = strchr(s, '/');
    size_t nslen;

    if (!slash)
        return err_set(e, -EINVAL, "'%s' is not NAMESPACE/NAME (for example default/web)", s);
    nslen = (size_t)(slash - s);
    if (nslen == 0 || nslen > NAMES_LABEL_MAX)
        return err_set(e, -EINVAL, "'%s': the namespace must be 1..63 characters", s);
    char ns[NAMES_LABEL_MAX + 1];
    memcpy(ns, s, nslen);
    ns[nslen] = '\0';
    if (!names_dns_label(ns))
        return err_set(e, -EINVAL,
                       "'%s': namespace '%s' is not a DNS-1123 label (lowercase letters, digits "
                       "and '-', starting and ending with a letter or digit)",
                       s, ns);
    if (!names_dns_subdomain(slash + 1))
        return err_set(e, -EINVAL,
                       "'%s': StatefulSet name '%s' is not a DNS-1123 name (lowercase letters, "
                       "digits, '-' and '.', at most 253 characters)",
                       s, slash + 1);
    snprintf(ret->ns, sizeof(ret->ns), "%s", ns);
    snprintf(ret->name, sizeof(ret->name), "%s", slash + 1);
    return 0;
}

int names_parse_ordinals(const char *s, int32_t **ret, size_t *ret_n, ord_err *e)
{
    _cleanup_free_ int32_t *v = NULL;
    size_t n = 0;
    const char *p = s;

    if (!s[0])
        return err_set(e, -EINVAL, "the ordinal list is empty");
    for (;;) {
        size_t len = strcspn(p, ",");
        int32_t o;

        if (identity_parse_ordinal(p, len, &o) < 0)
            return err_set(e, -EINVAL,
                           "'%.*s' is not an ordinal (a whole number like 0 or 12, no sign or "
                           "leading zero)",
                           (int)MIN(len, (size_t)64), p);
        for (size_t i = 0; i < n; i++)
            if (v[i] == o)
                return err_set(e, -EINVAL, "ordinal %d is listed twice", (int)o);
        if (n >= NAMES_ORDINALS_MAX)
            return err_set(e, -EINVAL, "too many ordinals (at most %d)", NAMES_ORDINALS_MAX);
        int32_t *nv = realloc(v, (n + 1) * sizeof(*nv));
        if (!nv)
            return err_set(e, -ENOMEM, "out of memory");
        v = nv;
        v[n++] = o;
        if (!p[len])
            break;
        p += len + 1;
    }
    *ret = TAKE_PTR(v);
    *ret_n = n;
    return 0;
}
