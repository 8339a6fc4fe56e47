/*
 * repo_s3.c - the S3 backend of the repository: s3://bucket/prefix, every repository key
 * stored under "prefix/" in the bucket. See repo_s3.h and docs/internals/s3.md.
 *
 * Atomicity comes from S3 itself: an object appears whole when its single PUT or its
 * CompleteMultipartUpload succeeds, never before; an upload that fails is aborted so no
 * parts linger. Writers buffer one part in memory (repo_s3_part_size()); readers fetch ranged
 * chunks of S3_GET_CHUNK bytes, pinned to the first response's ETag with If-Match, resuming a
 * broken chunk from the last byte received. All requests of a repository share one
 * s3_client, hence one connection; the repository is used by one thread at a time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "repo_s3.h"
#include "s3_client.h"
#include "s3_xml.h"

#define S3_GET_CHUNK     ((size_t)8 << 20)
#define S3_DELETE_BATCH  1000u
#define S3_KEY_MAX       1024u
#define S3_UPLOAD_ID_MAX 1024u

struct repo_s3_settings repo_s3_settings;

struct s3_repo {
    struct s3_client *cli;
    char bucket[64];
    char prefix[S3_KEY_MAX + 1]; /* "" or "a/b/" */
    char where[S3_KEY_MAX + 80]; /* "s3://bucket/prefix", for messages */
    uint64_t part_base;
    bool multi_delete_unsupported;
};

struct s3_writer {
    struct s3_repo *repo;
    char key[S3_KEY_MAX + 1]; /* full key (with the prefix) */
    char *buf;
    size_t len, cap;
    uint64_t part_size;
    unsigned parts; /* uploaded so far */
    char **etags;
    char upload_id[S3_UPLOAD_ID_MAX];
    uint64_t total;
};

struct s3_reader {
    struct s3_repo *repo;
    char key[S3_KEY_MAX + 1];
    char etag[256];
    uint64_t size, off; /* off: the object offset of chunk[chunk_len] */
    char *chunk;
    size_t chunk_len, chunk_pos;
};

uint64_t repo_s3_part_size(uint64_t base, unsigned part)
{
    unsigned tier;
    uint64_t size = base;

    if (part == 0 || part > S3_PARTS_MAX)
        return 0;
    tier = (part - 1) / S3_PARTS_PER_TIER;
    for (unsigned i = 0; i < tier && size < S3_PART_MAX; i++)
        size *= 2;
    return MIN(size, S3_PART_MAX);
}

static int full_key(const struct s3_repo *sr, const char *key, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s%s", sr->prefix, key);

    return n < 0 || (size_t)n >= size || (size_t)n > S3_KEY_MAX ? -ENAMETOOLONG : 0;
}

static bool bucket_name_valid(const char *b)
{
    size_t n = strlen(b);

    if (n < 3 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return false;
    }
    return b[0] != '-' && b[0] != '.' && b[n - 1] != '-' && b[n - 1] != '.';
}

/* A test-only override (see docs/internals/s3.md): a whole number within [min, max], else def. */
static uint64_t env_u64(const char *name, uint64_t def, uint64_t min, uint64_t max)
{
    const char *v = getenv(name);
    unsigned long long u;
    char *end;

    if (!v || !v[0])
        return def;
    errno = 0;
    u = strtoull(v, &end, 10);
    if (errno || *end || v[0] == '-' || u < min || u > max)
        return def;
    return u;
}

static int copy_env(const char *name, char *buf, size_t size, bool required, ord_err *e)
{
    const char *v = getenv(name);

    buf[0] = '\0';
    if (!v || !v[0]) {
        if (required)
            return err_set(e, -EINVAL,
                           "%s is not set: S3 credentials come from the environment only "
                           "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, and AWS_SESSION_TOKEN for "
                           "temporary credentials)",
                           name);
        return 0;
    }
    if (strlen(v) >= size)
        return err_set(e, -EINVAL, "%s is too long", name); /* never its value */
    memcpy(buf, v, strlen(v) + 1);
    return 0;
}

static int s3_open(const char *location, bool create, void **ret_state, ord_err *e)
{
    _cleanup_free_ struct s3_repo *sr = NULL;
    _cleanup_free_ struct s3_config *cfg = NULL;
    const struct repo_s3_settings *set = &repo_s3_settings;
    size_t bl = strcspn(location, "/");
    const char *prefix = location + bl;
    char pfx[S3_KEY_MAX + 1];
    int r;

    sr = calloc(1, sizeof(*sr));
    cfg = calloc(1, sizeof(*cfg));
    if (!sr || !cfg)
        return err_set(e, -ENOMEM, "out of memory");
    if (bl == 0 || bl >= sizeof(sr->bucket))
        return err_set(e, -EINVAL, "an S3 repository is s3://BUCKET[/PREFIX]");
    memcpy(sr->bucket, location, bl);
    sr->bucket[bl] = '\0';
    if (!bucket_name_valid(sr->bucket))
        return err_set(e, -EINVAL, "'%s' is not a valid bucket name (3-63 of a-z, 0-9, '.', '-')",
                       sr->bucket);
    while (*prefix == '/')
        prefix++;
    snprintf(pfx, sizeof(pfx), "%s", prefix);
    while (pfx[0] && pfx[strlen(pfx) - 1] == '/')
        pfx[strlen(pfx) - 1] = '\0';
    if (pfx[0] && (!repo_key_valid(pfx) || strlen(pfx) > 512))
        return err_set(e, -EINVAL,
                       "the S3 prefix '%s' is invalid: use '/'-separated names of A-Z a-z 0-9 . _ "
                       "- that do not start with '.'",
                       pfx);
    if (pfx[0])
        snprintf(sr->prefix, sizeof(sr->prefix), "%s/", pfx);
    snprintf(sr->where, sizeof(sr->where), "s3://%s/%s", sr->bucket, sr->prefix);

    snprintf(cfg->region, sizeof(cfg->region), "%s",
             set->region && set->region[0] ? set->region : REPO_S3_DEFAULT_REGION);
    if (set->endpoint && set->endpoint[0]) {
        if (strlen(set->endpoint) >= sizeof(cfg->endpoint))
            return err_set(e, -EINVAL, "the S3 endpoint is too long");
        snprintf(cfg->endpoint, sizeof(cfg->endpoint), "%s", set->endpoint);
        while (strlen(cfg->endpoint) > 8 && cfg->endpoint[strlen(cfg->endpoint) - 1] == '/')
            cfg->endpoint[strlen(cfg->endpoint) - 1] = '\0';
    } else {
        snprintf(cfg->endpoint, sizeof(cfg->endpoint), "https://s3.%s.amazonaws.com", cfg->region);
    }
    cfg->path_style = set->path_style;
    if (set->ca_bundle && set->ca_bundle[0]) {
        if (access(set->ca_bundle, R_OK) < 0)
            return err_set_errno(e, -errno, "cannot read the S3 CA bundle '%s'", set->ca_bundle);
        snprintf(cfg->ca_bundle, sizeof(cfg->ca_bundle), "%s", set->ca_bundle);
    }
    r = copy_env("AWS_ACCESS_KEY_ID", cfg->access_key, sizeof(cfg->access_key), true, e);
    if (r == 0)
        r = copy_env("AWS_SECRET_ACCESS_KEY", cfg->secret_key, sizeof(cfg->secret_key), true, e);
    if (r == 0)
        r = copy_env("AWS_SESSION_TOKEN", cfg->session_token, sizeof(cfg->session_token), false, e);
    if (r < 0) {
        explicit_bzero(cfg, sizeof(*cfg));
        return r;
    }
    /* Test-only knobs (docs/internals/s3.md): smaller parts and faster retries for the tests. */
    sr->part_base = env_u64("ORDINAL_S3_PART_SIZE", S3_PART_BASE, (uint64_t)64 << 10, S3_PART_MAX);
    cfg->backoff_base_ms = (unsigned)env_u64("ORDINAL_S3_RETRY_BASE_MS", 0, 1, 60000);
    r = s3_client_new(cfg, sr->bucket, &sr->cli, e);
    explicit_bzero(cfg, sizeof(*cfg));
    if (r < 0)
        return r;
    log_debug("S3 repository %s at %s (region %s, %s addressing)", sr->where,
              set->endpoint && set->endpoint[0] ? set->endpoint : "AWS",
              set->region && set->region[0] ? set->region : REPO_S3_DEFAULT_REGION,
              set->path_style ? "path-style" : "virtual-hosted");
    *ret_state = TAKE_PTR(sr);
    return 0;
}

static void s3_close(void *state)
{
    struct s3_repo *sr = state;

    if (!sr)
        return;
    s3_client_free(sr->cli);
    free(sr);
}

static int what_key(char *buf, size_t size, const char *verb, const struct s3_repo *sr,
                    const char *key)
{
    snprintf(buf, size, "%s '%s' in %s", verb, key, sr->where);
    return 0;
}

/* ---- listing ---- */

struct list_page {
    bool truncated;
    char token[1024];
};

/*
 * One ListObjectsV2 page under full prefix p, calling fn for each key (relative to the
 * repository). Returns 0 or a negative errno.
 */
static int list_page(struct s3_repo *sr, const char *p, const char *token, unsigned max_keys,
                     repo_list_fn fn, void *ctx, struct list_page *ret, ord_err *e)
{
    struct s3_query_param q[4];
    struct s3_resp resp = {0};
    char mk[16], what[S3_KEY_MAX + 128];
    size_t nq = 0, pos = 0;
    struct s3_span doc, item;
    int r;

    snprintf(mk, sizeof(mk), "%u", max_keys);
    q[nq++] = (struct s3_query_param){"list-type", "2"};
    q[nq++] = (struct s3_query_param){"prefix", p};
    q[nq++] = (struct s3_query_param){"max-keys", mk};
    if (token && token[0])
        q[nq++] = (struct s3_query_param){"continuation-token", token};
    struct s3_req req = {.method = "GET", .query = q, .n_query = nq};
    snprintf(what, sizeof(what), "listing %s", sr->where);
    r = s3_call(sr->cli, &req, &resp, e);
    if (r < 0)
        goto out;
    if (resp.status != 200) {
        r = s3_resp_error(sr->cli, &resp, what, e);
        goto out;
    }
    doc = (struct s3_span){.p = resp.body ? resp.body : "", .len = resp.body_len};
    if (!s3_xml_root_is(doc, "ListBucketResult")) {
        r = err_set(e, -EBADMSG, "%s: the answer is not a ListBucketResult", what);
        goto out;
    }
    while ((r = s3_xml_next(doc, "Contents", &pos, &item)) > 0) {
        char key[S3_KEY_MAX + 1];
        uint64_t size = 0;
        int n = s3_xml_text(item, "Key", key, sizeof(key));

        if (n < 0 || s3_xml_u64(item, "Size", &size) < 0) {
            r = err_set(e, -EBADMSG, "%s: a malformed Contents entry", what);
            goto out;
        }
        /* Foreign objects (other prefixes, odd names) are not repository keys: skip them. */
        if (strncmp(key, sr->prefix, strlen(sr->prefix)) != 0 ||
            !repo_key_valid(key + strlen(sr->prefix)))
            continue;
        r = fn(ctx, key + strlen(sr->prefix), size);
        if (r < 0)
            goto out;
    }
    if (r < 0) {
        r = err_set(e, -EBADMSG, "%s: malformed XML in the answer", what);
        goto out;
    }
    char trunc[8] = "";
    (void)s3_xml_text(doc, "IsTruncated", trunc, sizeof(trunc));
    ret->truncated = streq(trunc, "true");
    ret->token[0] = '\0';
    if (ret->truncated &&
        s3_xml_text(doc, "NextContinuationToken", ret->token, sizeof(ret->token)) <= 0) {
        r = err_set(e, -EBADMSG, "%s: a truncated listing without NextContinuationToken", what);
        goto out;
    }
    r = 0;
out:
    s3_resp_done(&resp);
    return r;
}

static int list_full(struct s3_repo *sr, const char *p, unsigned max_keys, bool one_page,
                     repo_list_fn fn, void *ctx, ord_err *e)
{
    struct list_page page = {0};
    int r;

    do {
        char token[sizeof(page.token)];
        snprintf(token, sizeof(token), "%s", page.token);
        r = list_page(sr, p, token, max_keys, fn, ctx, &page, e);
        if (r < 0)
            return r;
    } while (page.truncated && !one_page);
    return 0;
}

static int s3_list(void *state, const char *prefix, repo_list_fn fn, void *ctx, ord_err *e)
{
    struct s3_repo *sr = state;
    char p[S3_KEY_MAX + 2];
    int n;

    /* A repository prefix ends at a '/' boundary: "backups/ns/sts/ID" must not list "ID-2". */
    n = snprintf(p, sizeof(p), "%s%s%s", sr->prefix, prefix, prefix[0] ? "/" : "");
    if (n < 0 || (size_t)n >= sizeof(p))
        return err_set(e, -ENAMETOOLONG, "the listing prefix is too long");
    return list_full(sr, p, 1000, false, fn, ctx, e);
}

static int any_key(void *ctx, const char *key, uint64_t size)
{
    *(bool *)ctx = true;
    return 0;
}

static int s3_is_empty(void *state, ord_err *e)
{
    struct s3_repo *sr = state;
    bool any = false;
    int r = list_full(sr, sr->prefix, 1, true, any_key, &any, e);

    if (r < 0)
        return r;
    return any ? 0 : 1;
}

/* ---- writing ---- */

static void writer_free(struct s3_writer *w)
{
    if (!w)
        return;
    for (unsigned i = 0; i < w->parts; i++)
        free(w->etags[i]);
    free(w->etags);
    free(w->buf);
    free(w);
}

static int s3_put_begin(void *state, const char *key, void **ret_writer, ord_err *e)
{
    struct s3_repo *sr = state;
    struct s3_writer *w = calloc(1, sizeof(*w));

    if (!w)
        return err_set(e, -ENOMEM, "out of memory");
    if (full_key(sr, key, w->key, sizeof(w->key)) < 0) {
        free(w);
        return err_set(e, -ENAMETOOLONG, "the key '%s' is too long for S3", key);
    }
    w->repo = sr;
    w->part_size = repo_s3_part_size(sr->part_base, 1);
    *ret_writer = w;
    return 0;
}

static int create_upload(struct s3_writer *w, ord_err *e)
{
    struct s3_repo *sr = w->repo;
    const struct s3_query_param q[] = {{"uploads", ""}};
    struct s3_req req = {
        .method = "POST", .key = w->key, .query = q, .n_query = 1, .body = "", .body_len = 0};
    struct s3_resp resp = {0};
    char what[S3_KEY_MAX + 128];
    int r;

    what_key(what, sizeof(what), "starting the upload of", sr, w->key + strlen(sr->prefix));
    r = s3_call(sr->cli, &req, &resp, e);
    if (r == 0 && resp.status != 200)
        r = s3_resp_error(sr->cli, &resp, what, e);
    if (r == 0) {
        struct s3_span doc = {.p = resp.body ? resp.body : "", .len = resp.body_len};
        int n = s3_xml_text(doc, "UploadId", w->upload_id, sizeof(w->upload_id));
        if (n <= 0)
            r = err_set(e, -EBADMSG, "%s: the answer has no UploadId", what);
    }
    s3_resp_done(&resp);
    return r;
}

/* Uploads w->buf as the next part. Returns 0 or a negative errno with e filled. */
static int upload_part(struct s3_writer *w, ord_err *e)
{
    struct s3_repo *sr = w->repo;
    char num[16], what[S3_KEY_MAX + 128];
    struct s3_resp resp = {0};
    char **etags;
    int r;

    if (w->parts >= S3_PARTS_MAX)
        return err_set(e, -EFBIG, "'%s' needs more than %u parts", w->key, S3_PARTS_MAX);
    if (!w->upload_id[0]) {
        r = create_upload(w, e);
        if (r < 0)
            return r;
    }
    etags = realloc(w->etags, (w->parts + 1) * sizeof(*etags));
    if (!etags)
        return err_set(e, -ENOMEM, "out of memory");
    w->etags = etags;
    snprintf(num, sizeof(num), "%u", w->parts + 1);
    const struct s3_query_param q[] = {{"partNumber", num}, {"uploadId", w->upload_id}};
    struct s3_req req = {.method = "PUT",
                         .key = w->key,
                         .query = q,
                         .n_query = 2,
                         .body = w->buf ? w->buf : "",
                         .body_len = w->len};
    snprintf(what, sizeof(what), "uploading part %u of '%s' in %s", w->parts + 1,
             w->key + strlen(sr->prefix), sr->where);
    /* s3_call retries the part as a whole: the buffer is still here to send again. */
    r = s3_call(sr->cli, &req, &resp, e);
    if (r == 0 && resp.status != 200)
        r = s3_resp_error(sr->cli, &resp, what, e);
    if (r == 0 && !resp.etag[0])
        r = err_set(e, -EBADMSG, "%s: the answer has no ETag", what);
    if (r == 0) {
        w->etags[w->parts] = strdup(resp.etag);
        if (!w->etags[w->parts])
            r = err_set(e, -ENOMEM, "out of memory");
    }
    s3_resp_done(&resp);
    if (r < 0)
        return r;
    log_debug("uploaded part %u (%zu bytes) of '%s'", w->parts + 1, w->len, w->key);
    w->parts++;
    w->total += w->len;
    w->len = 0;
    w->part_size = repo_s3_part_size(sr->part_base, w->parts + 1);
    return 0;
}

static int s3_put_write(void *writer, const void *buf, size_t len, ord_err *e)
{
    struct s3_writer *w = writer;
    const char *p = buf;

    while (len > 0) {
        size_t room, n;

        if (w->len == w->part_size) {
            int r = upload_part(w, e);
            if (r < 0)
                return r;
        }
        /* Grow by doubling up to one part: small objects (manifests) stay small. */
        if (w->len == w->cap) {
            size_t want = w->cap ? w->cap * 2 : (size_t)256 << 10;
            char *nb;
            want = (size_t)MIN((uint64_t)want, w->part_size);
            nb = realloc(w->buf, want);
            if (!nb)
                return err_set(e, -ENOMEM, "out of memory buffering an S3 part");
            w->buf = nb;
            w->cap = want;
        }
        room = (size_t)MIN((uint64_t)w->cap, w->part_size) - w->len;
        n = MIN(room, len);
        memcpy(w->buf + w->len, p, n);
        w->len += n;
        p += n;
        len -= n;
    }
    return 0;
}

static void abort_upload(struct s3_writer *w)
{
    struct s3_repo *sr = w->repo;
    struct s3_resp resp = {0};

    if (!w->upload_id[0])
        return;
    const struct s3_query_param q[] = {{"uploadId", w->upload_id}};
    struct s3_req req = {.method = "DELETE", .key = w->key, .query = q, .n_query = 1};
    if (s3_call(sr->cli, &req, &resp, NULL) < 0 ||
        (resp.status != 204 && resp.status != 200 && resp.status != 404))
        log_debug("aborting the multipart upload of '%s' failed (HTTP %ld %s); a bucket "
                  "lifecycle rule for incomplete uploads removes its parts",
                  w->key, resp.status, resp.code);
    s3_resp_done(&resp);
    w->upload_id[0] = '\0';
}

static int put_single(struct s3_writer *w, ord_err *e)
{
    struct s3_repo *sr = w->repo;
    struct s3_resp resp = {0};
    char md5[25], what[S3_KEY_MAX + 128];
    int r;

    s3_md5_base64(w->buf ? w->buf : "", w->len, md5);
    struct s3_req req = {.method = "PUT",
                         .key = w->key,
                         .body = w->buf ? w->buf : "",
                         .body_len = w->len,
                         .headers = {{"content-md5", md5}}};
    what_key(what, sizeof(what), "uploading", sr, w->key + strlen(sr->prefix));
    r = s3_call(sr->cli, &req, &resp, e);
    if (r == 0 && resp.status != 200)
        r = s3_resp_error(sr->cli, &resp, what, e);
    s3_resp_done(&resp);
    return r;
}

/* A request document built in memory: tags written raw, text escaped. */
struct xml_doc {
    char *p;
    size_t len, cap;
    bool oom; /* sticky: checked once when the document is done */
};

static void xml_put(struct xml_doc *d, const char *s, bool escape)
{
    for (; *s && !d->oom; s++) {
        const char *rep = !escape      ? NULL
                          : *s == '&' ? "&amp;"
                          : *s == '<' ? "&lt;"
                          : *s == '>' ? "&gt;"
                                      : NULL;
        size_t n = rep ? strlen(rep) : 1;

        if (d->len + n + 1 > d->cap) {
            size_t want = MAX(d->cap * 2, d->len + n + 256);
            char *p = realloc(d->p, want);
            if (!p) {
                d->oom = true;
                return;
            }
            d->p = p;
            d->cap = want;
        }
        memcpy(d->p + d->len, rep ? rep : s, n);
        d->len += n;
        d->p[d->len] = '\0';
    }
}

/* The size of the object at full key, or UINT64_MAX when it cannot be learnt. */
static uint64_t object_size(struct s3_repo *sr, const char *full)
{
    struct s3_req req = {.method = "HEAD", .key = full};
    struct s3_resp resp = {0};
    uint64_t size = UINT64_MAX;

    if (s3_call(sr->cli, &req, &resp, NULL) == 0 && resp.status == 200 && resp.has_length)
        size = resp.content_length;
    s3_resp_done(&resp);
    return size;
}

static int complete_upload(struct s3_writer *w, ord_err *e)
{
    struct s3_repo *sr = w->repo;
    struct xml_doc d = {0};
    _cleanup_free_ char *body = NULL;
    size_t len;
    char what[S3_KEY_MAX + 128], num[16];
    int r;

    /* The document: tags written raw, part numbers and ETags escaped. */
    xml_put(&d, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">",
            false);
    for (unsigned i = 0; i < w->parts; i++) {
        snprintf(num, sizeof(num), "%u", i + 1);
        xml_put(&d, "<Part><PartNumber>", false);
        xml_put(&d, num, true);
        xml_put(&d, "</PartNumber><ETag>", false);
        xml_put(&d, w->etags[i], true);
        xml_put(&d, "</ETag></Part>", false);
    }
    xml_put(&d, "</CompleteMultipartUpload>", false);
    body = d.p;
    if (d.oom)
        return err_set(e, -ENOMEM, "out of memory");
    len = d.len;

    const struct s3_query_param q[] = {{"uploadId", w->upload_id}};
    struct s3_req req = {
        .method = "POST", .key = w->key, .query = q, .n_query = 1, .body = body, .body_len = len};
    what_key(what, sizeof(what), "completing the upload of", sr, w->key + strlen(sr->prefix));
    /* A 200 can carry an <Error> body (the server failed while assembling the parts): that is
     * a failure, retried like a 5xx. */
    for (unsigned attempt = 1;; attempt++) {
        struct s3_resp resp = {0};
        struct s3_span doc;
        bool error_in_200 = false;

        r = s3_call(sr->cli, &req, &resp, e);
        if (r == 0 && resp.status == 200) {
            doc = (struct s3_span){.p = resp.body ? resp.body : "", .len = resp.body_len};
            if (s3_xml_root_is(doc, "Error")) {
                (void)s3_xml_text(doc, "Code", resp.code, sizeof(resp.code));
                (void)s3_xml_text(doc, "Message", resp.message, sizeof(resp.message));
                resp.status = 500; /* for the message and the retry decision */
                error_in_200 = true;
            } else if (!s3_xml_root_is(doc, "CompleteMultipartUploadResult")) {
                r = err_set(e, -EBADMSG, "%s: unexpected answer", what);
            }
        }
        if (r == 0 && resp.status != 200) {
            /* s3_call has retried everything else already. */
            bool again =
                error_in_200 && s3_retryable(0, &resp) && attempt < s3_client_max_attempts(sr->cli);
            if (again) {
                s3_resp_done(&resp);
                s3_backoff(sr->cli, attempt, resp.retry_after_s);
                continue;
            }
            r = s3_resp_error(sr->cli, &resp, what, e);
        }
        /* A retried Complete whose earlier attempt did succeed (its answer was lost) finds the
         * upload gone: S3 says NoSuchUpload, s3rver fails with a 500. The object is there if it
         * has the size we uploaded (the key is new to this backup, and verify checks the
         * content's SHA-256 against the manifest). */
        if (r < 0 && (attempt > 1 || resp.attempts > 1) && object_size(sr, w->key) == w->total) {
            log_debug("completing '%s': an earlier attempt had succeeded", w->key);
            err_clear(e);
            r = 0;
        }
        s3_resp_done(&resp);
        return r;
    }
}

static int s3_put_commit(void *writer, ord_err *e)
{
    struct s3_writer *w = writer;
    int r;

    if (!w->upload_id[0]) {
        r = put_single(w, e);
    } else {
        r = w->len > 0 ? upload_part(w, e) : 0;
        if (r == 0)
            r = complete_upload(w, e);
        if (r < 0)
            abort_upload(w);
    }
    writer_free(w);
    return r;
}

static void s3_put_abort(void *writer)
{
    struct s3_writer *w = writer;

    if (!w)
        return;
    abort_upload(w);
    writer_free(w);
}

/* ---- reading ---- */

/* "bytes 0-9/443" -> 443. Returns 0 or -EBADMSG. */
static int parse_total(const char *cr, uint64_t *ret)
{
    const char *slash = strrchr(cr, '/');
    unsigned long long u;
    char *end;

    if (strncmp(cr, "bytes ", 6) != 0 || !slash || slash[1] == '*' || slash[1] == '-')
        return -EBADMSG;
    errno = 0;
    u = strtoull(slash + 1, &end, 10);
    if (errno || end == slash + 1 || *end)
        return -EBADMSG;
    *ret = u;
    return 0;
}

/*
 * Fetches [rd->off, rd->off + CHUNK) into rd->chunk. A transfer that breaks mid-way resumes
 * from the byte after the last one received (Range), with the same retry budget as s3_call.
 * The first fetch (rd->etag empty) also learns the size and the ETag. Returns 0 or -errno.
 */
static int fetch_chunk(struct s3_reader *rd, bool first, ord_err *e)
{
    struct s3_repo *sr = rd->repo;
    size_t want = first ? S3_GET_CHUNK : (size_t)MIN((uint64_t)S3_GET_CHUNK, rd->size - rd->off);
    size_t got = 0;
    char what[S3_KEY_MAX + 128];
    unsigned attempt = 0;
    int r;

    what_key(what, sizeof(what), "reading", sr, rd->key + strlen(sr->prefix));
    if (!rd->chunk) {
        rd->chunk = malloc(S3_GET_CHUNK);
        if (!rd->chunk)
            return err_set(e, -ENOMEM, "out of memory");
    }
    while (got < want || (first && attempt == 0)) {
        struct s3_resp resp = {0};
        ord_err inner = {0};
        char range[64];
        bool plain = false;

        attempt++;
        snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)(rd->off + got),
                 (unsigned long long)(rd->off + want - 1));
        struct s3_req req = {.method = "GET",
                             .key = rd->key,
                             .sink = rd->chunk + got,
                             .sink_cap = want - got,
                             .headers = {{"range", range}}};
        if (rd->etag[0])
            req.headers[1] = (struct s3_header){"if-match", rd->etag};
        r = s3_perform(sr->cli, &req, &resp, &inner);
        if (r == 0 && first && resp.status == 416) {
            /* An empty object has no satisfiable range: fetch it whole. */
            s3_resp_done(&resp);
            req.headers[0] = (struct s3_header){NULL, NULL};
            plain = true;
            r = s3_perform(sr->cli, &req, &resp, &inner);
        }
        if (r == -EFBIG) {
            s3_resp_done(&resp);
            return err_set(e, -EPROTO, "%s: the server sent more than the range asked for", what);
        }
        if (r == 0 && (resp.status == 206 || (resp.status == 200 && plain))) {
            if (first && !rd->etag[0]) {
                snprintf(rd->etag, sizeof(rd->etag), "%s", resp.etag);
                if (plain) {
                    rd->size = resp.body_len;
                } else if (parse_total(resp.content_range, &rd->size) < 0) {
                    s3_resp_done(&resp);
                    return err_set(e, -EBADMSG, "%s: a bad Content-Range '%s'", what,
                                   resp.content_range);
                }
                want = (size_t)MIN((uint64_t)S3_GET_CHUNK, rd->size);
            }
            got += resp.body_len;
            s3_resp_done(&resp);
            if (plain || got >= want)
                break;
            continue; /* a short body without an error: ask for the rest */
        }
        if (r == 0 && resp.status == 200 && !plain) {
            s3_resp_done(&resp);
            return err_set(e, -EPROTO, "%s: the server ignored the Range header", what);
        }
        if (r == 0 && resp.status == 412) {
            s3_resp_done(&resp);
            return err_set(e, -ESTALE, "%s: the object changed while it was read", what);
        }
        if (r == 0 && resp.status == 404 && !streq(resp.code, "NoSuchBucket")) {
            s3_resp_done(&resp);
            return err_set(e, -ENOENT, "'%s' does not exist in %s", rd->key + strlen(sr->prefix),
                           sr->where);
        }
        /* Keep what arrived before a broken connection: the next range starts after it. */
        if (r < 0)
            got += resp.body_len;
        if (!s3_retryable(r, &resp) || attempt >= s3_client_max_attempts(sr->cli)) {
            if (r < 0)
                r = err_set(e, r, "%s: %s%s", what, inner.msg,
                            attempt > 1 ? " (after retries)" : "");
            else
                r = s3_resp_error(sr->cli, &resp, what, e);
            s3_resp_done(&resp);
            return r;
        }
        long ra = r < 0 ? -1 : resp.retry_after_s;
        s3_resp_done(&resp);
        s3_backoff(sr->cli, attempt, ra);
    }
    rd->chunk_len = got;
    rd->chunk_pos = 0;
    rd->off += got;
    return 0;
}

static int s3_get_open(void *state, const char *key, uint64_t *ret_size, void **ret_reader,
                       ord_err *e)
{
    struct s3_repo *sr = state;
    struct s3_reader *rd = calloc(1, sizeof(*rd));
    int r;

    if (!rd)
        return err_set(e, -ENOMEM, "out of memory");
    rd->repo = sr;
    if (full_key(sr, key, rd->key, sizeof(rd->key)) < 0) {
        free(rd);
        return err_set(e, -ENAMETOOLONG, "the key '%s' is too long for S3", key);
    }
    r = fetch_chunk(rd, true, e);
    if (r < 0) {
        free(rd->chunk);
        free(rd);
        return r;
    }
    *ret_size = rd->size;
    *ret_reader = rd;
    return 0;
}

static ssize_t s3_get_read(void *reader, void *buf, size_t len, ord_err *e)
{
    struct s3_reader *rd = reader;
    size_t n;

    if (rd->chunk_pos == rd->chunk_len) {
        int r;
        if (rd->off >= rd->size)
            return 0;
        r = fetch_chunk(rd, false, e);
        if (r < 0)
            return r;
        if (rd->chunk_len == 0)
            return 0;
    }
    n = MIN(len, rd->chunk_len - rd->chunk_pos);
    memcpy(buf, rd->chunk + rd->chunk_pos, n);
    rd->chunk_pos += n;
    return (ssize_t)n;
}

static void s3_get_close(void *reader)
{
    struct s3_reader *rd = reader;

    if (!rd)
        return;
    free(rd->chunk);
    free(rd);
}

/* ---- small objects with conditions ---- */

/* Reads key whole if it is at most max bytes. Returns 0, -ENOENT, -EFBIG or -errno. */
static int get_whole(struct s3_repo *sr, const char *key, size_t max, char **ret, size_t *ret_len,
                     ord_err *e)
{
    void *rd = NULL;
    uint64_t size;
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    int r = s3_get_open(sr, key, &size, &rd, e);

    if (r < 0)
        return r;
    if (size > max) {
        s3_get_close(rd);
        return -EFBIG;
    }
    buf = malloc((size_t)size + 1);
    if (!buf) {
        s3_get_close(rd);
        return err_set(e, -ENOMEM, "out of memory");
    }
    while (len < size) {
        ssize_t n = s3_get_read(rd, buf + len, (size_t)size - len, e);
        if (n < 0) {
            s3_get_close(rd);
            return (int)n;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    s3_get_close(rd);
    *ret = TAKE_PTR(buf);
    *ret_len = len;
    return 0;
}

/*
 * Create-if-absent. S3 has no portable compare-and-swap: we send If-None-Match: * (honoured by
 * AWS S3 since 2024 and by MinIO; a 412 means someone else holds the key), check first that
 * the key is absent for servers that ignore the header, and read the object back afterwards
 * to confirm it holds our bytes. A residual race remains on servers without conditional
 * writes (docs/internals/s3.md).
 */
static int s3_create_excl(void *state, const char *key, const void *buf, size_t len, ord_err *e)
{
    struct s3_repo *sr = state;
    _cleanup_free_ char *back = NULL;
    char full[S3_KEY_MAX + 1], md5[25], what[S3_KEY_MAX + 128];
    struct s3_resp resp = {0};
    size_t back_len = 0;
    ord_err probe = {0};
    int r;

    if (full_key(sr, key, full, sizeof(full)) < 0)
        return err_set(e, -ENAMETOOLONG, "the key '%s' is too long for S3", key);
    r = get_whole(sr, key, len + 1, &back, &back_len, &probe);
    if (r == 0 || r == -EFBIG)
        return -EEXIST;
    if (r != -ENOENT)
        return err_set(e, r, "%s", probe.msg);
    s3_md5_base64(buf, len, md5);
    struct s3_req req = {.method = "PUT",
                         .key = full,
                         .body = len ? buf : "",
                         .body_len = len,
                         .headers = {{"content-md5", md5}, {"if-none-match", "*"}}};
    what_key(what, sizeof(what), "creating", sr, key);
    r = s3_call(sr->cli, &req, &resp, e);
    if (r == 0 && (resp.status == 412 || resp.status == 409)) {
        s3_resp_done(&resp);
        return -EEXIST;
    }
    if (r == 0 && resp.status != 200)
        r = s3_resp_error(sr->cli, &resp, what, e);
    s3_resp_done(&resp);
    if (r < 0)
        return r;
    free(TAKE_PTR(back));
    r = get_whole(sr, key, len + 1, &back, &back_len, e);
    if (r == -ENOENT || r == -EFBIG)
        return -EEXIST;
    if (r < 0)
        return r;
    if (back_len != len || memcmp(back, buf, len) != 0)
        return -EEXIST; /* another writer's content won */
    return 0;
}

static int delete_one(struct s3_repo *sr, const char *full, ord_err *e)
{
    struct s3_req req = {.method = "DELETE", .key = full};
    struct s3_resp resp = {0};
    char what[S3_KEY_MAX + 128];
    int r;

    what_key(what, sizeof(what), "removing", sr, full + strlen(sr->prefix));
    r = s3_call(sr->cli, &req, &resp, e);
    if (r == 0 && resp.status == 404 && !streq(resp.code, "NoSuchBucket"))
        r = -ENOENT;
    else if (r == 0 && resp.status != 204 && resp.status != 200)
        r = s3_resp_error(sr->cli, &resp, what, e);
    s3_resp_done(&resp);
    return r;
}

/*
 * Compare-and-remove: read, compare, delete with If-Match on the ETag read (servers that
 * ignore If-Match on DELETE leave the window between the read and the delete open).
 */
static int s3_remove_if(void *state, const char *key, const void *expect, size_t len, ord_err *e)
{
    struct s3_repo *sr = state;
    _cleanup_free_ char *cur = NULL;
    char full[S3_KEY_MAX + 1];
    size_t cur_len = 0;
    int r;

    if (full_key(sr, key, full, sizeof(full)) < 0)
        return err_set(e, -ENAMETOOLONG, "the key '%s' is too long for S3", key);
    r = get_whole(sr, key, len + 1, &cur, &cur_len, e);
    if (r == -ENOENT) {
        err_clear(e);
        return -ENOENT;
    }
    if (r == -EFBIG)
        return -ESTALE;
    if (r < 0)
        return r;
    if (cur_len != len || memcmp(cur, expect, len) != 0)
        return -ESTALE;
    r = delete_one(sr, full, e);
    return r == -ENOENT ? 0 : r;
}

static int s3_remove(void *state, const char *key, ord_err *e)
{
    struct s3_repo *sr = state;
    char full[S3_KEY_MAX + 1];

    if (full_key(sr, key, full, sizeof(full)) < 0)
        return err_set(e, -ENAMETOOLONG, "the key '%s' is too long for S3", key);
    return delete_one(sr, full, e);
}

/* ---- removing a prefix ---- */

struct batch {
    struct s3_repo *sr;
    char **keys; /* full keys */
    size_t n;
};

static void batch_clear(struct batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->keys[i]);
    b->n = 0;
}

/* Multi-object delete (POST ?delete=, Content-MD5 required by S3). Returns 0, -EOPNOTSUPP when
 * the server has no such call, or -errno. */
static int delete_multi(struct batch *b, ord_err *e)
{
    struct s3_repo *sr = b->sr;
    struct xml_doc d = {0};
    _cleanup_free_ char *body = NULL;
    size_t len;
    struct s3_resp resp = {0};
    char md5[25], what[S3_KEY_MAX + 128];
    int r;

    xml_put(&d, "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>",
            false);
    for (size_t i = 0; i < b->n; i++) {
        xml_put(&d, "<Object><Key>", false);
        xml_put(&d, b->keys[i], true);
        xml_put(&d, "</Key></Object>", false);
    }
    xml_put(&d, "</Delete>", false);
    body = d.p;
    if (d.oom)
        return err_set(e, -ENOMEM, "out of memory");
    len = d.len;
    s3_md5_base64(body, len, md5);
    const struct s3_query_param q[] = {{"delete", ""}};
    struct s3_req req = {.method = "POST",
                         .query = q,
                         .n_query = 1,
                         .body = body,
                         .body_len = len,
                         .headers = {{"content-md5", md5}}};
    snprintf(what, sizeof(what), "removing %zu objects in %s", b->n, sr->where);
    r = s3_call(sr->cli, &req, &resp, e);
    if (r < 0)
        goto out;
    if (resp.status == 501 || resp.status == 405 || streq(resp.code, "NotImplemented")) {
        r = -EOPNOTSUPP;
        goto out;
    }
    if (resp.status != 200) {
        r = s3_resp_error(sr->cli, &resp, what, e);
        goto out;
    }
    /* Quiet mode lists only failures. */
    struct s3_span doc = {.p = resp.body ? resp.body : "", .len = resp.body_len}, item;
    size_t pos = 0;
    if (s3_xml_next(doc, "Error", &pos, &item) > 0) {
        char k[S3_KEY_MAX + 1] = "", code[64] = "";
        (void)s3_xml_text(item, "Key", k, sizeof(k));
        (void)s3_xml_text(item, "Code", code, sizeof(code));
        r = err_set(e, -EIO, "%s: '%s' was not removed (%s)", what, k, code);
        goto out;
    }
    r = 0;
out:
    s3_resp_done(&resp);
    return r;
}

static int flush_batch(struct batch *b, ord_err *e)
{
    int r = -EOPNOTSUPP;

    if (b->n == 0)
        return 0;
    if (!b->sr->multi_delete_unsupported) {
        r = delete_multi(b, e);
        if (r == -EOPNOTSUPP) {
            log_debug("the S3 server has no multi-object delete; deleting one by one");
            b->sr->multi_delete_unsupported = true;
        }
    }
    if (r == -EOPNOTSUPP) {
        r = 0;
        for (size_t i = 0; i < b->n && r == 0; i++) {
            r = delete_one(b->sr, b->keys[i], e);
            if (r == -ENOENT)
                r = 0;
        }
    }
    batch_clear(b);
    return r;
}

static int collect_key(void *ctx, const char *key, uint64_t size)
{
    struct batch *b = ctx;
    char full[S3_KEY_MAX + 1];

    if (full_key(b->sr, key, full, sizeof(full)) < 0)
        return -ENAMETOOLONG;
    b->keys[b->n] = strdup(full);
    if (!b->keys[b->n])
        return -ENOMEM;
    b->n++;
    return 0;
}

static int s3_remove_prefix(void *state, const char *prefix, ord_err *e)
{
    struct s3_repo *sr = state;
    struct batch b = {.sr = sr};
    char p[S3_KEY_MAX + 2];
    int r, n;

    n = snprintf(p, sizeof(p), "%s%s/", sr->prefix, prefix);
    if (n < 0 || (size_t)n >= sizeof(p))
        return err_set(e, -ENAMETOOLONG, "the prefix is too long");
    b.keys = calloc(S3_DELETE_BATCH, sizeof(*b.keys));
    if (!b.keys)
        return err_set(e, -ENOMEM, "out of memory");
    /* Delete each page of the listing as it comes: S3 lets a listing continue with its
     * token while the keys already listed are deleted. */
    struct list_page page = {0};
    do {
        char token[sizeof(page.token)];

        snprintf(token, sizeof(token), "%s", page.token);
        r = list_page(sr, p, token, S3_DELETE_BATCH, collect_key, &b, &page, e);
        if (r < 0)
            break;
        r = flush_batch(&b, e);
        if (r < 0)
            break;
    } while (page.truncated);
    batch_clear(&b);
    free(b.keys);
    return r;
}

const struct repo_backend repo_s3_backend = {
    .name = "s3",
    .open = s3_open,
    .close = s3_close,
    .is_empty = s3_is_empty,
    .put_begin = s3_put_begin,
    .put_write = s3_put_write,
    .put_commit = s3_put_commit,
    .put_abort = s3_put_abort,
    .create_excl = s3_create_excl,
    .remove_if = s3_remove_if,
    .get_open = s3_get_open,
    .get_read = s3_get_read,
    .get_close = s3_get_close,
    .list = s3_list,
    .remove = s3_remove,
    .remove_prefix = s3_remove_prefix,
};
