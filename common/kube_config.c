/*
 * kube_config.c - see kube_config.h.
 *
 * The kubeconfig is read with libyaml into a document, converted to a cJSON tree (mappings to
 * objects, sequences to arrays, scalars to strings) with a node budget and a depth limit, so
 * that aliases cannot expand without bound; the lookups then use the json.h helpers.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "json.h"
#include "kube_config.h"
#include "log.h"

#define YAML_NODES_MAX 100000
#define YAML_DEPTH_MAX 64

struct kube_token_state {
    pthread_mutex_t lock;
    char *token;    /* cached token (static, or last read from token_file) */
    bool from_file; /* token is the file's content */
    bool have_stat;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

/* ---- small helpers ---- */

/*
 * Reads a whole file of at most max bytes (NUL-terminated for convenience). Files named inside
 * a kubeconfig (tokens) must be regular files: a FIFO or a device there would block or never
 * end. The kubeconfig itself may be a pipe (--kubeconfig <(...)).
 * Returns 0, -EFBIG when larger, -EINVAL for a non-regular file, or -errno.
 */
static int read_file(const char *path, size_t max, bool regular_only, char **ret, size_t *ret_len)
{
    _cleanup_close_ int fd = -EBADF;
    _cleanup_free_ char *buf = NULL;
    size_t len = 0, cap = 4096;
    struct stat st;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | (regular_only ? O_NONBLOCK : 0));
    if (fd < 0)
        return -errno;
    if (regular_only) {
        if (fstat(fd, &st) < 0)
            return -errno;
        if (!S_ISREG(st.st_mode))
            return -EINVAL;
    }
    buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    for (;;) {
        ssize_t n;
        if (len + 1 >= cap) {
            char *p;
            if (cap > max + 1)
                return -EFBIG;
            cap *= 2;
            p = realloc(buf, cap);
            if (!p)
                return -ENOMEM;
            buf = p;
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max)
            return -EFBIG;
    }
    buf[len] = '\0';
    *ret = TAKE_PTR(buf);
    if (ret_len)
        *ret_len = len;
    return 0;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * Decodes standard base64 (whitespace ignored, padding optional). Returns 0 and a malloc'd,
 * NUL-terminated buffer, -EINVAL for invalid input, -ENOMEM.
 */
static int base64_decode(const char *s, char **ret, size_t *ret_len)
{
    size_t n = strlen(s), len = 0;
    unsigned acc = 0;
    int bits = 0, pad = 0;
    _cleanup_free_ char *out = malloc(n / 4 * 3 + 4);

    if (!out)
        return -ENOMEM;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        int v;
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        if (pad)
            return -EINVAL; /* data after padding */
        v = b64_value(c);
        if (v < 0)
            return -EINVAL;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[len++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (pad > 2 || bits >= 6)
        return -EINVAL;
    out[len] = '\0';
    *ret = TAKE_PTR(out);
    *ret_len = len;
    return 0;
}

/* ---- YAML to cJSON ---- */

static cJSON *yaml_to_json(yaml_document_t *doc, yaml_node_t *node, int depth, size_t *budget)
{
    cJSON *out = NULL;

    if (!node || depth > YAML_DEPTH_MAX || *budget == 0)
        return NULL;
    (*budget)--;
    switch (node->type) {
    case YAML_SCALAR_NODE:
        out = cJSON_CreateString("");
        if (!out)
            return NULL;
        /* cJSON strings are NUL-terminated: a scalar with an embedded NUL is cut there. */
        free(out->valuestring);
        out->valuestring = strndup((const char *)node->data.scalar.value, node->data.scalar.length);
        if (!out->valuestring) {
            cJSON_Delete(out);
            return NULL;
        }
        return out;
    case YAML_SEQUENCE_NODE:
        out = cJSON_CreateArray();
        if (!out)
            return NULL;
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++) {
            cJSON *child = yaml_to_json(doc, yaml_document_get_node(doc, *it), depth + 1, budget);
            if (!child || !cJSON_AddItemToArray(out, child)) {
                cJSON_Delete(child);
                cJSON_Delete(out);
                return NULL;
            }
        }
        return out;
    case YAML_MAPPING_NODE:
        out = cJSON_CreateObject();
        if (!out)
            return NULL;
        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            cJSON *child;
            _cleanup_free_ char *key = NULL;
            if (!k || k->type != YAML_SCALAR_NODE) {
                cJSON_Delete(out);
                return NULL;
            }
            key = strndup((const char *)k->data.scalar.value, k->data.scalar.length);
            child = yaml_to_json(doc, yaml_document_get_node(doc, p->value), depth + 1, budget);
            if (!key || !child) {
                cJSON_Delete(child);
                cJSON_Delete(out);
                return NULL;
            }
            if (json_set_item(out, key, child) < 0) { /* later duplicate keys win */
                cJSON_Delete(out);
                return NULL;
            }
        }
        return out;
    default:
        return NULL;
    }
}

/* Parses YAML text into a cJSON tree. Returns 0, -EINVAL with the position in e. */
static int yaml_parse_json(const char *path, const char *buf, size_t len, cJSON **ret, ord_err *e)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    size_t budget = YAML_NODES_MAX;
    cJSON *j;

    if (!yaml_parser_initialize(&parser))
        return err_set(e, -ENOMEM, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        err_set(e, -EINVAL, "kubeconfig %s: not valid YAML at line %zu column %zu: %s", path,
                parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                parser.problem ? parser.problem : "parse error");
        yaml_parser_delete(&parser);
        return -EINVAL;
    }
    yaml_parser_delete(&parser);
    root = yaml_document_get_root_node(&doc);
    if (!root) {
        yaml_document_delete(&doc);
        return err_set(e, -EINVAL, "kubeconfig %s is empty", path);
    }
    j = yaml_to_json(&doc, root, 0, &budget);
    yaml_document_delete(&doc);
    if (!j)
        return err_set(e, budget == 0 ? -E2BIG : -EINVAL,
                       "kubeconfig %s: unsupported YAML structure (too deep, too large or a "
                       "non-scalar key)",
                       path);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return err_set(e, -EINVAL, "kubeconfig %s: the top level is not a mapping", path);
    }
    *ret = j;
    return 0;
}

/* ---- the configuration ---- */

void kube_config_free(struct kube_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->server);
    free(cfg->namespace);
    free(cfg->source);
    free(cfg->ca_file);
    free(cfg->ca_pem);
    free(cfg->ca_origin);
    free(cfg->cert_file);
    free(cfg->cert_pem);
    free(cfg->key_file);
    free(cfg->key_pem);
    free(cfg->token_file);
    if (cfg->token_state) {
        pthread_mutex_destroy(&cfg->token_state->lock);
        free(cfg->token_state->token);
        free(cfg->token_state);
    }
    free(cfg);
}

static int config_alloc(struct kube_config **ret)
{
    struct kube_config *cfg = calloc(1, sizeof(*cfg));

    if (!cfg)
        return -ENOMEM;
    cfg->token_state = calloc(1, sizeof(*cfg->token_state));
    if (!cfg->token_state) {
        free(cfg);
        return -ENOMEM;
    }
    pthread_mutex_init(&cfg->token_state->lock, NULL);
    *ret = cfg;
    return 0;
}

/* The entry of a named list ("clusters", "users", "contexts") with that name, or NULL. */
static const cJSON *named_entry(const cJSON *root, const char *list, const char *name,
                                const char *field)
{
    const cJSON *it;
    const cJSON *arr = json_path(root, list);

    if (!cJSON_IsArray(arr))
        return NULL;
    cJSON_ArrayForEach(it, arr)
    {
        const char *n = json_string(it, "name");
        if (n && streq(n, name)) {
            const cJSON *v = json_path(it, field);
            return v ? v : it; /* an entry without a body: an empty one */
        }
    }
    return NULL;
}

static bool yaml_true(const char *s)
{
    return s && (streq(s, "true") || streq(s, "True") || streq(s, "TRUE") || streq(s, "yes") ||
                 streq(s, "on"));
}

/* A path from a kubeconfig: relative ones are relative to the kubeconfig's directory. */
static int resolve_path(const char *dir, const char *p, char **ret)
{
    char *out;

    if (p[0] == '/' || !dir) {
        out = strdup(p);
    } else {
        size_t n = strlen(dir) + strlen(p) + 2;
        out = malloc(n);
        if (out)
            snprintf(out, n, "%s/%s", dir, p);
    }
    if (!out)
        return -ENOMEM;
    *ret = out;
    return 0;
}

/*
 * Reads field "name" (a path) or "name-data" (base64) of obj into *ret_file or *ret_pem.
 * Files must be readable now, so that mistakes show at start-up with the field's name.
 */
static int take_material(const char *path, const char *dir, const cJSON *obj, const char *what,
                         const char *field, char **ret_file, char **ret_pem, size_t *ret_len,
                         ord_err *e)
{
    char data_field[96];
    const char *file, *data;
    int r;

    snprintf(data_field, sizeof(data_field), "%s-data", field);
    data = json_string(obj, data_field);
    file = json_string(obj, field);
    if (data && data[0]) {
        r = base64_decode(data, ret_pem, ret_len);
        if (r == -ENOMEM)
            return err_set(e, r, "out of memory");
        if (r < 0)
            return err_set(e, r, "kubeconfig %s: %s '%s': %s is not valid base64", path, what,
                           json_string(obj, "name") ? json_string(obj, "name") : "", data_field);
        if (*ret_len == 0)
            return err_set(e, -EINVAL, "kubeconfig %s: %s is empty", path, data_field);
        return 0;
    }
    if (file && file[0]) {
        r = resolve_path(dir, file, ret_file);
        if (r < 0)
            return err_set(e, r, "out of memory");
        if (access(*ret_file, R_OK) < 0)
            return err_set_errno(e, -errno, "kubeconfig %s: %s file '%s'", path, field, *ret_file);
    }
    return 0;
}

int kube_config_from_file(const char *path, const char *context, struct kube_config **ret,
                          ord_err *e)
{
    _cleanup_(kube_config_freep) struct kube_config *cfg = NULL;
    _cleanup_(cJSON_Deletep) cJSON *root = NULL;
    _cleanup_free_ char *text = NULL, *dir = NULL;
    const cJSON *ctx, *cluster, *user = NULL;
    const char *ctx_name, *cluster_name, *user_name, *server, *ns, *token, *token_file;
    char origin[PATH_MAX + 64];
    size_t len;
    int r;

    r = read_file(path, KUBE_CONFIG_FILE_MAX, false, &text, &len);
    if (r == -EFBIG)
        return err_set(e, r, "kubeconfig %s is larger than %u bytes", path, KUBE_CONFIG_FILE_MAX);
    if (r < 0)
        return err_set_errno(e, r, "cannot read kubeconfig %s", path);
    r = yaml_parse_json(path, text, len, &root, e);
    if (r < 0)
        return r;

    {
        const char *slash = strrchr(path, '/');
        dir = slash ? strndup(path, (size_t)(slash - path) ? (size_t)(slash - path) : 1)
                    : strdup(".");
        if (!dir)
            return err_set(e, -ENOMEM, "out of memory");
    }

    if (context) {
        ctx_name = context;
    } else {
        ctx_name = json_string(root, "current-context");
        if (!ctx_name || !ctx_name[0])
            return err_set(e, -EINVAL,
                           "kubeconfig %s: no current-context is set (set one with 'kubectl "
                           "config use-context NAME')",
                           path);
    }
    ctx = named_entry(root, "contexts", ctx_name, "context");
    if (!ctx)
        return err_set(e, -EINVAL, "kubeconfig %s: context '%s'%s not found", path, ctx_name,
                       context ? "" : " (current-context)");
    cluster_name = json_string(ctx, "cluster");
    if (!cluster_name || !cluster_name[0])
        return err_set(e, -EINVAL, "kubeconfig %s: context '%s' names no cluster", path, ctx_name);
    cluster = named_entry(root, "clusters", cluster_name, "cluster");
    if (!cluster)
        return err_set(e, -EINVAL, "kubeconfig %s: cluster '%s' (of context '%s') not found", path,
                       cluster_name, ctx_name);
    user_name = json_string(ctx, "user");
    if (user_name && user_name[0]) {
        user = named_entry(root, "users", user_name, "user");
        if (!user)
            return err_set(e, -EINVAL, "kubeconfig %s: user '%s' (of context '%s') not found", path,
                           user_name, ctx_name);
    }

    server = json_string(cluster, "server");
    if (!server || !server[0])
        return err_set(e, -EINVAL, "kubeconfig %s: cluster '%s' has no server", path, cluster_name);
    if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)
        return err_set(e, -EINVAL,
                       "kubeconfig %s: cluster '%s': server '%s' is not an http(s):// URL", path,
                       cluster_name, server);
    if (json_path(cluster, "proxy-url"))
        log_debug("kubeconfig %s: proxy-url is ignored", path);

    r = config_alloc(&cfg);
    if (r < 0)
        return err_set(e, r, "out of memory");
    cfg->server = strdup(server);
    if (!cfg->server)
        return err_set(e, -ENOMEM, "out of memory");
    {
        size_t n = strlen(cfg->server);
        while (n > 0 && cfg->server[n - 1] == '/')
            cfg->server[--n] = '\0';
    }
    ns = json_string(ctx, "namespace");
    cfg->namespace = strdup(ns && ns[0] ? ns : "default");
    snprintf(origin, sizeof(origin), "kubeconfig %s", path);
    cfg->source = strdup(origin);
    if (!cfg->namespace || !cfg->source)
        return err_set(e, -ENOMEM, "out of memory");

    cfg->insecure = yaml_true(json_string(cluster, "insecure-skip-tls-verify"));
    r = take_material(path, dir, cluster, "cluster", "certificate-authority", &cfg->ca_file,
                      &cfg->ca_pem, &cfg->ca_pem_len, e);
    if (r < 0)
        return r;
    if (cfg->ca_pem)
        snprintf(origin, sizeof(origin), "certificate-authority-data in %s", path);
    else if (cfg->ca_file)
        snprintf(origin, sizeof(origin), "certificate-authority in %s: %s", path, cfg->ca_file);
    else
        snprintf(origin, sizeof(origin), "the system CA bundle; %s sets no certificate-authority",
                 path);
    cfg->ca_origin = strdup(origin);
    if (!cfg->ca_origin)
        return err_set(e, -ENOMEM, "out of memory");

    if (user) {
        if (json_path(user, "exec"))
            return err_set(e, -EOPNOTSUPP,
                           "kubeconfig %s: user '%s' uses an exec credential plugin, which "
                           "ordinal does not support: use a token, tokenFile or client "
                           "certificate",
                           path, user_name);
        if (json_path(user, "auth-provider"))
            return err_set(e, -EOPNOTSUPP,
                           "kubeconfig %s: user '%s' uses an auth-provider plugin, which ordinal "
                           "does not support: use a token, tokenFile or client certificate",
                           path, user_name);
        if (json_path(user, "username") || json_path(user, "password"))
            return err_set(e, -EOPNOTSUPP,
                           "kubeconfig %s: user '%s' uses basic authentication, which Kubernetes "
                           "removed: use a token or client certificate",
                           path, user_name);
        r = take_material(path, dir, user, "user", "client-certificate", &cfg->cert_file,
                          &cfg->cert_pem, &cfg->cert_pem_len, e);
        if (r < 0)
            return r;
        r = take_material(path, dir, user, "user", "client-key", &cfg->key_file, &cfg->key_pem,
                          &cfg->key_pem_len, e);
        if (r < 0)
            return r;
        if ((cfg->cert_file || cfg->cert_pem) != (cfg->key_file || cfg->key_pem))
            return err_set(e, -EINVAL,
                           "kubeconfig %s: user '%s' has a client certificate without a key or a "
                           "key without a certificate",
                           path, user_name);
        token = json_string(user, "token");
        token_file = json_string(user, "tokenFile");
        /* As in client-go: a literal token wins over tokenFile. */
        if (token && token[0]) {
            cfg->token_state->token = strdup(token);
            if (!cfg->token_state->token)
                return err_set(e, -ENOMEM, "out of memory");
        } else if (token_file && token_file[0]) {
            r = resolve_path(dir, token_file, &cfg->token_file);
            if (r < 0)
                return err_set(e, r, "out of memory");
            r = kube_config_token(cfg, true, NULL, e);
            if (r < 0)
                return err_wrap(e, r, "kubeconfig %s: user '%s' tokenFile", path, user_name);
        }
    }

    *ret = TAKE_PTR(cfg);
    return 0;
}

int kube_config_in_cluster(const char *sa_dir, struct kube_config **ret, ord_err *e)
{
    _cleanup_(kube_config_freep) struct kube_config *cfg = NULL;
    _cleanup_free_ char *ns = NULL;
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    char buf[PATH_MAX + 64];
    int r;

    if (!sa_dir)
        sa_dir = getenv(KUBE_SA_DIR_ENV);
    if (!sa_dir || !sa_dir[0])
        sa_dir = KUBE_SA_DIR_DEFAULT;
    if (!host || !host[0] || !port || !port[0])
        return err_set(e, -ENOENT,
                       "not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST and "
                       "KUBERNETES_SERVICE_PORT are not set");
    if (strspn(port, "0123456789") != strlen(port) || strlen(port) > 5)
        return err_set(e, -EINVAL, "KUBERNETES_SERVICE_PORT '%s' is not a port number", port);

    r = config_alloc(&cfg);
    if (r < 0)
        return err_set(e, r, "out of memory");
    /* An IPv6 service address needs brackets in a URL. */
    if (strchr(host, ':'))
        snprintf(buf, sizeof(buf), "https://[%s]:%s", host, port);
    else
        snprintf(buf, sizeof(buf), "https://%s:%s", host, port);
    cfg->server = strdup(buf);
    snprintf(buf, sizeof(buf), "in-cluster service account (%s)", sa_dir);
    cfg->source = strdup(buf);
    snprintf(buf, sizeof(buf), "%s/ca.crt", sa_dir);
    cfg->ca_file = strdup(buf);
    snprintf(buf, sizeof(buf), "the in-cluster CA file %s/ca.crt", sa_dir);
    cfg->ca_origin = strdup(buf);
    snprintf(buf, sizeof(buf), "%s/token", sa_dir);
    cfg->token_file = strdup(buf);
    if (!cfg->server || !cfg->source || !cfg->ca_file || !cfg->ca_origin || !cfg->token_file)
        return err_set(e, -ENOMEM, "out of memory");
    if (access(cfg->ca_file, R_OK) < 0)
        return err_set_errno(e, -errno, "in-cluster CA file %s", cfg->ca_file);

    snprintf(buf, sizeof(buf), "%s/namespace", sa_dir);
    r = read_file(buf, 4096, true, &ns, NULL);
    if (r < 0 && r != -ENOENT)
        return err_set_errno(e, r, "cannot read %s", buf);
    if (ns) {
        ns[strcspn(ns, " \t\r\n")] = '\0';
    }
    cfg->namespace = strdup(ns && ns[0] ? ns : "default");
    if (!cfg->namespace)
        return err_set(e, -ENOMEM, "out of memory");

    r = kube_config_token(cfg, true, NULL, e);
    if (r < 0)
        return err_wrap(e, r, "in-cluster service account");
    *ret = TAKE_PTR(cfg);
    return 0;
}

int kube_config_load(const char *explicit_path, const char *context, struct kube_config **ret,
                     ord_err *e)
{
    const char *env = getenv("KUBECONFIG");
    const char *home = getenv("HOME");
    char path[PATH_MAX];
    int r;

    if (explicit_path && explicit_path[0])
        return kube_config_from_file(explicit_path, context, ret, e);

    if (env && env[0]) {
        const char *p = env;
        bool several = strchr(env, ':') != NULL;
        /* kubectl merges every file of the list; we read the first one that exists. */
        while (*p) {
            size_t n = strcspn(p, ":");
            if (n > 0 && n < sizeof(path)) {
                memcpy(path, p, n);
                path[n] = '\0';
                if (access(path, F_OK) == 0) {
                    r = kube_config_from_file(path, context, ret, e);
                    if (r < 0 && several)
                        err_wrap(e, r,
                                 "$KUBECONFIG lists several files and only the first existing "
                                 "one is read (no merging)");
                    return r;
                }
            }
            p += n;
            if (*p == ':')
                p++;
        }
        return err_set(e, -ENOENT, "$KUBECONFIG is set to '%s' but no file of it exists", env);
    }

    if (getenv("KUBERNETES_SERVICE_HOST"))
        return kube_config_in_cluster(NULL, ret, e);

    if (home && home[0]) {
        snprintf(path, sizeof(path), "%s/.kube/config", home);
        if (access(path, F_OK) == 0)
            return kube_config_from_file(path, context, ret, e);
    }
    return err_set(e, -ENOENT,
                   "no Kubernetes configuration found: pass --kubeconfig FILE, set $KUBECONFIG, "
                   "run inside a pod (KUBERNETES_SERVICE_HOST), or create ~/.kube/config");
}

int kube_config_token(struct kube_config *cfg, bool force, char **ret, ord_err *e)
{
    struct kube_token_state *ts = cfg->token_state;
    _cleanup_free_ char *text = NULL;
    char *copy = NULL;
    struct stat st;
    int r = 0;

    pthread_mutex_lock(&ts->lock);
    if (cfg->token_file) {
        if (stat(cfg->token_file, &st) < 0) {
            r = err_set_errno(e, -errno, "cannot read token file %s", cfg->token_file);
            goto out;
        }
        if (force || !ts->have_stat || st.st_dev != ts->dev || st.st_ino != ts->ino ||
            st.st_size != ts->size || st.st_mtim.tv_sec != ts->mtime.tv_sec ||
            st.st_mtim.tv_nsec != ts->mtime.tv_nsec) {
            size_t len;
            r = read_file(cfg->token_file, KUBE_TOKEN_MAX, true, &text, &len);
            if (r == -EFBIG) {
                r = err_set(e, r, "token file %s is larger than %u bytes", cfg->token_file,
                            KUBE_TOKEN_MAX);
                goto out;
            }
            if (r == -EINVAL) {
                r = err_set(e, r, "token file %s is not a regular file", cfg->token_file);
                goto out;
            }
            if (r < 0) {
                r = err_set_errno(e, r, "cannot read token file %s", cfg->token_file);
                goto out;
            }
            while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' ||
                               text[len - 1] == ' ' || text[len - 1] == '\t'))
                text[--len] = '\0';
            if (len == 0 || strlen(text) != len || strpbrk(text, "\r\n")) {
                r = err_set(e, -EINVAL, "token file %s is empty or not a single line",
                            cfg->token_file);
                goto out;
            }
            free(ts->token);
            ts->token = TAKE_PTR(text);
            ts->from_file = true;
            ts->have_stat = true;
            ts->dev = st.st_dev;
            ts->ino = st.st_ino;
            ts->size = st.st_size;
            ts->mtime = st.st_mtim;
            log_debug("read the bearer token from %s", cfg->token_file);
        }
    }
    if (ret) {
        if (ts->token) {
            copy = strdup(ts->token);
            if (!copy) {
                r = err_set(e, -ENOMEM, "out of memory");
                goto out;
            }
        }
        *ret = copy;
    }
out:
    pthread_mutex_unlock(&ts->lock);
    return r;
}
