/*
 * catalog.c - see catalog.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"

#define CATALOG_MAX 1000000

void catalog_free(struct catalog *c)
{
    free(c->v);
    c->v = NULL;
    c->n = 0;
}

bool sts_ref_equal(const struct sts_ref *a, const struct sts_ref *b)
{
    return streq(a->ns, b->ns) && streq(a->name, b->name);
}

struct scan_ctx {
    struct catalog *c;
    const struct sts_ref *filter;
    size_t cache; /* index of the entry the previous key belonged to */
};

/* Copies the component at *p (up to '/') into buf; advances *p past it. */
static bool next_comp(const char **p, char *buf, size_t size)
{
    size_t n = strcspn(*p, "/");

    if (n == 0 || n >= size || (*p)[n] != '/')
        return false;
    memcpy(buf, *p, n);
    buf[n] = '\0';
    *p += n + 1;
    return true;
}

static int on_key(void *ctx, const char *key, uint64_t size)
{
    struct scan_ctx *s = ctx;
    struct catalog *c = s->c;
    struct catalog_entry *ce = NULL;
    struct sts_ref sts;
    struct backup_id bid;
    char id[ID_MAX];
    const char *p = key;

    if (strncmp(p, "backups/", 8) != 0)
        return 0;
    p += 8;
    if (!next_comp(&p, sts.ns, sizeof(sts.ns)) || !next_comp(&p, sts.name, sizeof(sts.name)) ||
        !next_comp(&p, id, sizeof(id)))
        return 0;
    if (!names_dns_label(sts.ns) || !names_dns_subdomain(sts.name) || id_parse(id, &bid) < 0)
        return 0;
    if (s->filter && !sts_ref_equal(s->filter, &sts))
        return 0;

    if (s->cache < c->n && streq(c->v[s->cache].id, id) && sts_ref_equal(&c->v[s->cache].sts, &sts))
        ce = &c->v[s->cache];
    for (size_t i = 0; !ce && i < c->n; i++)
        if (streq(c->v[i].id, id) && sts_ref_equal(&c->v[i].sts, &sts)) {
            ce = &c->v[i];
            s->cache = i;
        }
    if (!ce) {
        if (c->n >= CATALOG_MAX)
            return -E2BIG;
        struct catalog_entry *nv = realloc(c->v, (c->n + 1) * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        c->v = nv;
        ce = &c->v[c->n];
        *ce = (struct catalog_entry){.sts = sts, .time = bid.time};
        snprintf(ce->id, sizeof(ce->id), "%s", id);
        s->cache = c->n++;
    }
    if (streq(p, "backup.json"))
        ce->complete = true;
    ce->bytes += size;
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    const struct catalog_entry *x = a, *y = b;
    int r = id_compare(x->id, y->id);

    if (r)
        return r;
    r = strcmp(x->sts.ns, y->sts.ns);
    return r ? r : strcmp(x->sts.name, y->sts.name);
}

int catalog_scan(struct repo *r, const struct sts_ref *filter, struct catalog *ret, ord_err *e)
{
    struct catalog c = {0};
    struct scan_ctx s = {.c = &c, .filter = filter, .cache = SIZE_MAX};
    char prefix[REPO_KEY_MAX + 1];
    int rc;

    if (filter)
        snprintf(prefix, sizeof(prefix), "backups/%s/%s", filter->ns, filter->name);
    else
        snprintf(prefix, sizeof(prefix), "backups");
    rc = repo_list(r, prefix, on_key, &s, e);
    if (rc < 0) {
        catalog_free(&c);
        if (e && e->code == 0)
            err_set_errno(e, rc, "listing the repository");
        return rc;
    }
    if (c.n > 1)
        qsort(c.v, c.n, sizeof(*c.v), cmp_entry);
    *ret = c;
    return 0;
}

const struct catalog_entry *catalog_latest(const struct catalog *c, const struct sts_ref *sts)
{
    for (size_t i = c->n; i > 0; i--)
        if (c->v[i - 1].complete && sts_ref_equal(&c->v[i - 1].sts, sts))
            return &c->v[i - 1];
    return NULL;
}

const struct catalog_entry *catalog_find(const struct catalog *c, const struct sts_ref *sts,
                                         const char *id)
{
    for (size_t i = 0; i < c->n; i++)
        if (streq(c->v[i].id, id) && sts_ref_equal(&c->v[i].sts, sts))
            return &c->v[i];
    return NULL;
}
