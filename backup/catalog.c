/*
 * catalog.c - see catalog.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "macro.h"

#define CATALOG_MAX 1000000

void catalog_free(struct catalog *c)
{
    for (size_t i = 0; c->v && i < c->n; i++) {
        if (c->v[i].manifest)
            backup_manifest_free(c->v[i].manifest);
        free(c->v[i].manifest);
        free(c->v[i].damaged);
    }
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

/* Reads one backup.json; a damaged one is recorded, not returned as an error. */
static int load_one(struct repo *r, struct catalog_entry *ce, ord_err *e)
{
    _cleanup_free_ char *text = NULL;
    _cleanup_free_ struct backup_manifest *m = NULL;
    char key[REPO_KEY_MAX + 1];
    ord_err pe = {0};
    size_t len;
    int rc;

    if (repo_key_backup_json(key, sizeof(key), ce->sts.ns, ce->sts.name, ce->id) < 0)
        return err_set(e, -ENAMETOOLONG, "the backup key is too long");
    rc = repo_get_small(r, key, MANIFEST_TEXT_MAX, &text, &len, &pe);
    if (rc == -ENOENT) {
        ce->complete = false; /* removed since the listing */
        return 0;
    }
    if (rc < 0 && rc != -EFBIG) {
        *e = pe;
        return rc;
    }
    m = calloc(1, sizeof(*m));
    if (!m)
        return err_set(e, -ENOMEM, "out of memory");
    if (rc == 0)
        rc = backup_manifest_parse(text, len, m, &pe);
    if (rc == -ENOMEM) {
        *e = pe;
        return rc;
    }
    if (rc == 0 && (!streq(m->id, ce->id) || !sts_ref_equal(&m->sts, &ce->sts))) {
        backup_manifest_free(m);
        err_set(&pe, -EBADMSG, "its backup.json names another backup");
        rc = -EBADMSG;
    }
    if (rc < 0) {
        char msg[ORD_ERR_MSG_MAX + 128];

        snprintf(msg, sizeof(msg), "backup '%s' of %s/%s is damaged: %s", ce->id, ce->sts.ns,
                 ce->sts.name, err_msg(&pe));
        ce->damaged = strdup(msg);
        return ce->damaged ? 0 : err_set(e, -ENOMEM, "out of memory");
    }
    ce->manifest = TAKE_PTR(m);
    return 0;
}

int catalog_load(struct repo *r, struct catalog *c, ord_err *e)
{
    for (size_t i = 0; i < c->n; i++) {
        struct catalog_entry *ce = &c->v[i];
        int rc;

        if (!ce->complete || ce->manifest || ce->damaged)
            continue;
        rc = load_one(r, ce, e);
        if (rc < 0)
            return err_wrap(e, rc, "reading backup.json of backup '%s' of %s/%s", ce->id,
                            ce->sts.ns, ce->sts.name);
    }
    return 0;
}

const char *catalog_node(const struct catalog_entry *ce)
{
    return ce->manifest ? ce->manifest->node : "";
}

static bool holds(const struct catalog_entry *ce, int32_t ordinal, const char *tmpl,
                  const struct backup_volume **ret)
{
    for (size_t j = 0; j < ce->manifest->n_volumes; j++) {
        const struct backup_volume *bv = &ce->manifest->volumes[j];
        if (bv->ordinal == ordinal && streq(bv->template_name, tmpl)) {
            if (ret)
                *ret = bv;
            return true;
        }
    }
    return false;
}

static bool wanted(const int32_t *ordinals, size_t n, int32_t ordinal)
{
    for (size_t i = 0; i < n; i++)
        if (ordinals[i] == ordinal)
            return true;
    return n == 0;
}

static int cmp_pick(const void *a, const void *b)
{
    const struct catalog_pick *x = a, *y = b;

    if (x->volume->ordinal != y->volume->ordinal)
        return x->volume->ordinal < y->volume->ordinal ? -1 : 1;
    return strcmp(x->volume->template_name, y->volume->template_name);
}

/* Adds (ordinal, tmpl) to picks unless there; the backup is chosen later. */
static int add_candidate(struct catalog_pick *picks, size_t *n, const struct catalog_entry *ce,
                         const struct backup_volume *bv)
{
    for (size_t i = 0; i < *n; i++)
        if (picks[i].volume->ordinal == bv->ordinal &&
            streq(picks[i].volume->template_name, bv->template_name))
            return 0;
    picks[(*n)++] = (struct catalog_pick){.entry = ce, .volume = bv};
    return 1;
}

int catalog_latest_volumes(const struct catalog *c, const struct sts_ref *sts,
                           const int32_t *ordinals, size_t n_ordinals, struct catalog_pick **ret,
                           size_t *ret_n, ord_err *e)
{
    _cleanup_free_ struct catalog_pick *picks = NULL;
    _cleanup_free_ const char **nodes = NULL;
    size_t n_nodes = 0, n = 0, cap = 0;

    for (size_t i = 0; i < c->n; i++) {
        const struct catalog_entry *ce = &c->v[i];

        if (!ce->complete || !sts_ref_equal(&ce->sts, sts))
            continue;
        if (ce->damaged)
            return err_set(e, -EBADMSG,
                           "%s; so 'latest' cannot tell which volumes it holds: choose a backup "
                           "with --backup (see 'ordinal-backup list'), or remove the damaged one",
                           ce->damaged);
        if (!ce->manifest)
            return err_set(e, -EINVAL, "backup '%s' of %s/%s was not read", ce->id, sts->ns,
                           sts->name);
        if (cap > SIZE_MAX / sizeof(*picks) - ce->manifest->n_volumes)
            return err_set(e, -ENOMEM, "out of memory");
        cap += ce->manifest->n_volumes;
    }
    if (cap == 0)
        return err_set(e, -ENOENT, "there is no complete backup of %s/%s", sts->ns, sts->name);
    picks = calloc(cap, sizeof(*picks));
    nodes = calloc(c->n, sizeof(*nodes));
    if (!picks || !nodes)
        return err_set(e, -ENOMEM, "out of memory");

    /* The volumes of each node's newest backup (c is sorted oldest first). */
    for (size_t i = c->n; i > 0; i--) {
        const struct catalog_entry *ce = &c->v[i - 1];
        bool seen = false;

        if (!ce->complete || !sts_ref_equal(&ce->sts, sts))
            continue;
        for (size_t k = 0; k < n_nodes && !seen; k++)
            seen = streq(nodes[k], catalog_node(ce));
        if (seen)
            continue;
        nodes[n_nodes++] = catalog_node(ce);
        for (size_t j = 0; j < ce->manifest->n_volumes; j++)
            if (wanted(ordinals, n_ordinals, ce->manifest->volumes[j].ordinal))
                add_candidate(picks, &n, ce, &ce->manifest->volumes[j]);
    }
    /* An ordinal asked for by name is restored even when only older backups hold it. */
    for (size_t w = 0; w < n_ordinals; w++) {
        bool found = false;

        for (size_t k = 0; k < n && !found; k++)
            found = picks[k].volume->ordinal == ordinals[w];
        for (size_t i = c->n; i > 0 && !found; i--) {
            const struct catalog_entry *ce = &c->v[i - 1];

            if (!ce->complete || !sts_ref_equal(&ce->sts, sts))
                continue;
            for (size_t j = 0; j < ce->manifest->n_volumes; j++)
                if (ce->manifest->volumes[j].ordinal == ordinals[w]) {
                    add_candidate(picks, &n, ce, &ce->manifest->volumes[j]);
                    found = true; /* the templates of the newest backup that holds it */
                }
        }
        if (!found)
            return err_set(e, -ENOENT,
                           "the repository holds no ordinal %d of %s/%s in a complete backup",
                           (int)ordinals[w], sts->ns, sts->name);
    }
    /* Each from the newest backup that holds it, whichever node made that one. */
    for (size_t k = 0; k < n; k++)
        for (size_t i = c->n; i > 0; i--) {
            const struct catalog_entry *ce = &c->v[i - 1];

            if (ce->complete && sts_ref_equal(&ce->sts, sts) &&
                holds(ce, picks[k].volume->ordinal, picks[k].volume->template_name,
                      &picks[k].volume)) {
                picks[k].entry = ce;
                break;
            }
        }
    if (n > 1)
        qsort(picks, n, sizeof(*picks), cmp_pick);
    *ret = TAKE_PTR(picks);
    *ret_n = n;
    return 0;
}
