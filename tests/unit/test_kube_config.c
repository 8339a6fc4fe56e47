/*
 * test_kube_config.c - kubeconfig variants (token, tokenFile, client certificate and key as
 * files and as -data, CA file relative to the kubeconfig and as -data, insecure, namespace),
 * the errors a person reads for broken or incomplete files, the in-cluster configuration from a
 * temporary service-account directory, token rotation, and the order of the sources.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "kube_config.h"

static char tmpdir[256];

static void write_file(const char *name, const char *content)
{
    char path[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static const char *tpath(const char *name)
{
    static char path[4][512];
    static int i;
    i = (i + 1) % 4;
    snprintf(path[i], sizeof(path[i]), "%s/%s", tmpdir, name);
    return path[i];
}

static int setup(void **state)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_kube_config.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    unsetenv("KUBECONFIG");
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    unsetenv(KUBE_SA_DIR_ENV);
    setenv("HOME", tmpdir, 1); /* no ~/.kube/config of the machine */
    return 0;
}

static int teardown(void **state)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* "hello CA\n" */
#define CA_B64 "aGVsbG8gQ0EK"

static struct kube_config *load_ok(const char *name)
{
    struct kube_config *cfg = NULL;
    ord_err e = {0};
    int r = kube_config_from_file(tpath(name), NULL, &cfg, &e);
    if (r < 0)
        fail_msg("%s refused: %s", name, err_msg(&e));
    return cfg;
}

static void load_bad(const char *name, int code, const char *needle)
{
    struct kube_config *cfg = NULL;
    ord_err e = {0};
    int r = kube_config_from_file(tpath(name), NULL, &cfg, &e);
    if (r >= 0)
        fail_msg("%s was accepted", name);
    assert_null(cfg);
    if (r != code)
        fail_msg("%s: %d instead of %d: %s", name, r, code, e.msg);
    if (!strstr(e.msg, needle))
        fail_msg("message for %s lacks '%s': %s", name, needle, e.msg);
}

static char *token_of(struct kube_config *cfg)
{
    char *t = NULL;
    ord_err e = {0};
    if (kube_config_token(cfg, false, &t, &e) < 0)
        fail_msg("token: %s", e.msg);
    return t;
}

static void test_token_and_ca_data(void **state)
{
    _cleanup_(kube_config_freep) struct kube_config *cfg = NULL;
    _cleanup_free_ char *tok = NULL;

    write_file("kc", "apiVersion: v1\n"
                     "kind: Config\n"
                     "current-context: emu\n"
                     "clusters:\n"
                     "- name: other\n"
                     "  cluster: {server: 'https://wrong:1'}\n"
                     "- name: emu\n"
                     "  cluster:\n"
                     "    server: https://127.0.0.1:6443/\n"
                     "    certificate-authority-data: " CA_B64 "\n"
                     "contexts:\n"
                     "- name: emu\n"
                     "  context: {cluster: emu, user: admin, namespace: storage}\n"
                     "users:\n"
                     "- name: admin\n"
                     "  user:\n"
                     "    token: s3cr3t\n");
    cfg = load_ok("kc");
    assert_string_equal(cfg->server, "https://127.0.0.1:6443");
    assert_string_equal(cfg->namespace, "storage");
    assert_int_equal(cfg->ca_pem_len, 9);
    assert_memory_equal(cfg->ca_pem, "hello CA\n", 9);
    assert_null(cfg->ca_file);
    assert_non_null(strstr(cfg->ca_origin, "certificate-authority-data in"));
    assert_false(cfg->insecure);
    assert_null(cfg->cert_file);
    assert_null(cfg->cert_pem);
    assert_null(cfg->token_file);
    tok = token_of(cfg);
    assert_string_equal(tok, "s3cr3t");
    assert_non_null(strstr(cfg->source, "kubeconfig"));
}

static void test_token_file_and_rotation(void **state)
{
    _cleanup_(kube_config_freep) struct kube_config *cfg = NULL;
    char *tok;

    write_file("tok", "first-token\n");
    write_file("kc",
               "current-context: c\n"
               "clusters: [{name: k, cluster: {server: 'https://h:1', insecure-skip-tls-verify: "
               "true}}]\n"
               "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
               "users: [{name: u, user: {tokenFile: tok}}]\n");
    cfg = load_ok("kc");
    assert_true(cfg->insecure);
    assert_string_equal(cfg->namespace, "default");
    assert_string_equal(cfg->token_file, tpath("tok"));
    tok = token_of(cfg);
    assert_string_equal(tok, "first-token");
    free(tok);

    /* The kubelet swaps the file atomically: a new inode. */
    write_file("tok.new", "second-token");
    assert_int_equal(rename(tpath("tok.new"), tpath("tok")), 0);
    tok = token_of(cfg);
    assert_string_equal(tok, "second-token");
    free(tok);

    /* Rewritten in place with another length. */
    write_file("tok", "third-token-longer\n");
    tok = token_of(cfg);
    assert_string_equal(tok, "third-token-longer");
    free(tok);

    /* A vanished file is an error, and the next good file is read again. */
    assert_int_equal(unlink(tpath("tok")), 0);
    {
        char *t = NULL;
        ord_err e = {0};
        assert_int_equal(kube_config_token(cfg, false, &t, &e), -ENOENT);
        assert_non_null(strstr(e.msg, "token file"));
        assert_null(t);
    }
    write_file("tok", "fourth\n");
    tok = token_of(cfg);
    assert_string_equal(tok, "fourth");
    free(tok);

    /* A literal token wins over tokenFile, as in client-go. */
    kube_config_free(TAKE_PTR(cfg));
    write_file("kc2", "current-context: c\n"
                      "clusters: [{name: k, cluster: {server: 'https://h:1'}}]\n"
                      "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                      "users: [{name: u, user: {tokenFile: tok, token: literal}}]\n");
    cfg = load_ok("kc2");
    tok = token_of(cfg);
    assert_string_equal(tok, "literal");
    free(tok);
}

static void test_client_cert_files_relative(void **state)
{
    _cleanup_(kube_config_freep) struct kube_config *cfg = NULL;
    char *tok;

    assert_int_equal(mkdir(tpath("pki"), 0700), 0);
    write_file("pki/ca.crt", "CA\n");
    write_file("pki/client.crt", "CERT\n");
    write_file("pki/client.key", "KEY\n");
    write_file("kc", "current-context: c\n"
                     "clusters: [{name: k, cluster: {server: 'https://h:1', certificate-authority: "
                     "pki/ca.crt}}]\n"
                     "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                     "users: [{name: u, user: {client-certificate: pki/client.crt, client-key: "
                     "pki/client.key}}]\n");
    cfg = load_ok("kc");
    assert_string_equal(cfg->ca_file, tpath("pki/ca.crt"));
    assert_string_equal(cfg->cert_file, tpath("pki/client.crt"));
    assert_string_equal(cfg->key_file, tpath("pki/client.key"));
    assert_null(cfg->cert_pem);
    assert_non_null(strstr(cfg->ca_origin, "certificate-authority in"));
    tok = token_of(cfg);
    assert_null(tok);

    /* Absolute paths stay as they are. */
    kube_config_free(TAKE_PTR(cfg));
    {
        char text[2048];
        snprintf(text, sizeof(text),
                 "current-context: c\n"
                 "clusters: [{name: k, cluster: {server: 'https://h:1', certificate-authority: "
                 "%s}}]\n"
                 "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                 "users: [{name: u, user: {token: t}}]\n",
                 tpath("pki/ca.crt"));
        write_file("kc-abs", text);
    }
    cfg = load_ok("kc-abs");
    assert_string_equal(cfg->ca_file, tpath("pki/ca.crt"));
}

static void test_client_cert_data(void **state)
{
    _cleanup_(kube_config_freep) struct kube_config *cfg = NULL;

    /* "CERT" and "KEY!" in base64, with a line break inside as some tools write it. */
    write_file("kc", "current-context: c\n"
                     "clusters: [{name: k, cluster: {server: 'https://h:1'}}]\n"
                     "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
                     "users:\n"
                     "- name: u\n"
                     "  user:\n"
                     "    client-certificate-data: Q0VS\n      VA==\n"
                     "    client-key-data: S0VZIQ==\n");
    cfg = load_ok("kc");
    assert_int_equal(cfg->cert_pem_len, 4);
    assert_memory_equal(cfg->cert_pem, "CERT", 4);
    assert_int_equal(cfg->key_pem_len, 4);
    assert_memory_equal(cfg->key_pem, "KEY!", 4);
    assert_non_null(strstr(cfg->ca_origin, "system CA bundle"));
}

static void test_explicit_context(void **state)
{
    _cleanup_(kube_config_freep) struct kube_config *cfg = NULL;
    ord_err e = {0};

    write_file("kc",
               "current-context: a\n"
               "clusters: [{name: k, cluster: {server: 'https://h:1'}}, {name: k2, cluster: "
               "{server: 'https://h:2'}}]\n"
               "contexts: [{name: a, context: {cluster: k}}, {name: b, context: {cluster: k2, "
               "namespace: nb}}]\n");
    assert_int_equal(kube_config_from_file(tpath("kc"), "b", &cfg, &e), 0);
    assert_string_equal(cfg->server, "https://h:2");
    assert_string_equal(cfg->namespace, "nb");
    kube_config_free(TAKE_PTR(cfg));
    assert_int_equal(kube_config_from_file(tpath("kc"), "zz", &cfg, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "context 'zz' not found"));
}

static void test_errors(void **state)
{
    write_file("no-current", "clusters: []\ncontexts: []\n");
    load_bad("no-current", -EINVAL, "no current-context is set");

    write_file("missing-ctx", "current-context: x\n"
                              "contexts: [{name: y, context: {cluster: k}}]\n");
    load_bad("missing-ctx", -EINVAL, "context 'x' (current-context) not found");

    write_file("missing-cluster", "current-context: x\n"
                                  "contexts: [{name: x, context: {cluster: k, user: u}}]\n");
    load_bad("missing-cluster", -EINVAL, "cluster 'k' (of context 'x') not found");

    write_file("missing-user", "current-context: x\n"
                               "clusters: [{name: k, cluster: {server: 'https://h:1'}}]\n"
                               "contexts: [{name: x, context: {cluster: k, user: u}}]\n");
    load_bad("missing-user", -EINVAL, "user 'u' (of context 'x') not found");

    write_file("no-server", "current-context: x\n"
                            "clusters: [{name: k, cluster: {}}]\n"
                            "contexts: [{name: x, context: {cluster: k}}]\n");
    load_bad("no-server", -EINVAL, "cluster 'k' has no server");

    write_file("bad-scheme", "current-context: x\n"
                             "clusters: [{name: k, cluster: {server: 'ftp://h'}}]\n"
                             "contexts: [{name: x, context: {cluster: k}}]\n");
    load_bad("bad-scheme", -EINVAL, "not an http(s):// URL");

    write_file("broken", "current-context: x\nclusters: [\n  - {name: k\n");
    load_bad("broken", -EINVAL, "not valid YAML at line");

    write_file("list-top", "- a\n- b\n");
    load_bad("list-top", -EINVAL, "top level is not a mapping");

    write_file("empty", "");
    load_bad("empty", -EINVAL, "is empty");

    write_file("bad-b64", "current-context: x\n"
                          "clusters: [{name: k, cluster: {server: 'https://h:1', "
                          "certificate-authority-data: 'not*base64'}}]\n"
                          "contexts: [{name: x, context: {cluster: k}}]\n");
    load_bad("bad-b64", -EINVAL, "certificate-authority-data is not valid base64");

    write_file("missing-ca-file", "current-context: x\n"
                                  "clusters: [{name: k, cluster: {server: 'https://h:1', "
                                  "certificate-authority: nowhere.crt}}]\n"
                                  "contexts: [{name: x, context: {cluster: k}}]\n");
    load_bad("missing-ca-file", -ENOENT, "certificate-authority file");

    write_file("cert-no-key", "current-context: x\n"
                              "clusters: [{name: k, cluster: {server: 'https://h:1'}}]\n"
                              "contexts: [{name: x, context: {cluster: k, user: u}}]\n"
                              "users: [{name: u, user: {client-certificate-data: Q0VSVA==}}]\n");
    load_bad("cert-no-key", -EINVAL, "certificate without a key");

    write_file("exec", "current-context: x\n"
                       "clusters: [{name: k, cluster: {server: 'https://h:1'}}]\n"
                       "contexts: [{name: x, context: {cluster: k, user: u}}]\n"
                       "users: [{name: u, user: {exec: {command: aws}}}]\n");
    load_bad("exec", -EOPNOTSUPP, "exec credential plugin");

    write_file("missing-token-file", "current-context: x\n"
                                     "clusters: [{name: k, cluster: {server: 'https://h:1'}}]\n"
                                     "contexts: [{name: x, context: {cluster: k, user: u}}]\n"
                                     "users: [{name: u, user: {tokenFile: /nonexistent/token}}]\n");
    load_bad("missing-token-file", -ENOENT, "tokenFile");

    /* A device or FIFO as token file would block or never end. */
    write_file("device-token-file", "current-context: x\n"
                                    "clusters: [{name: k, cluster: {server: 'https://h:1'}}]\n"
                                    "contexts: [{name: x, context: {cluster: k, user: u}}]\n"
                                    "users: [{name: u, user: {tokenFile: /dev/zero}}]\n");
    load_bad("device-token-file", -EINVAL, "/dev/zero is not a regular file");

    /* Aliases cannot blow up the conversion (a billion-laughs document). */
    write_file("laughs", "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                         "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                         "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                         "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                         "f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n");
    load_bad("laughs", -E2BIG, "too large");

    {
        struct kube_config *cfg = NULL;
        ord_err e = {0};
        assert_int_equal(kube_config_from_file(tpath("does-not-exist"), NULL, &cfg, &e), -ENOENT);
        assert_non_null(strstr(e.msg, "cannot read kubeconfig"));
    }
}

static void make_sa_dir(const char *name, const char *token, const char *ns)
{
    char sub[600];

    assert_int_equal(mkdir(tpath(name), 0700), 0);
    snprintf(sub, sizeof(sub), "%s/token", name);
    write_file(sub, token);
    snprintf(sub, sizeof(sub), "%s/ca.crt", name);
    write_file(sub, "CA");
    if (ns) {
        snprintf(sub, sizeof(sub), "%s/namespace", name);
        write_file(sub, ns);
    }
}

static void test_in_cluster(void **state)
{
    _cleanup_(kube_config_freep) struct kube_config *cfg = NULL;
    ord_err e = {0};
    char *tok;

    make_sa_dir("sa", "pod-token\n", "ordinal-system\n");
    setenv(KUBE_SA_DIR_ENV, tpath("sa"), 1);

    assert_int_equal(kube_config_in_cluster(NULL, &cfg, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "KUBERNETES_SERVICE_HOST"));

    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_int_equal(kube_config_in_cluster(NULL, &cfg, &e), 0);
    assert_string_equal(cfg->server, "https://10.96.0.1:443");
    assert_string_equal(cfg->namespace, "ordinal-system");
    assert_string_equal(cfg->ca_file, tpath("sa/ca.crt"));
    assert_non_null(strstr(cfg->ca_origin, "in-cluster CA file"));
    tok = token_of(cfg);
    assert_string_equal(tok, "pod-token");
    free(tok);

    /* Bound tokens rotate: the kubelet points ..data at a new directory. */
    write_file("sa/token.tmp", "rotated-token\n");
    assert_int_equal(rename(tpath("sa/token.tmp"), tpath("sa/token")), 0);
    tok = token_of(cfg);
    assert_string_equal(tok, "rotated-token");
    free(tok);
    kube_config_free(TAKE_PTR(cfg));

    /* IPv6 service address; no namespace file. */
    make_sa_dir("sa6", "t6", NULL);
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    assert_int_equal(kube_config_in_cluster(tpath("sa6"), &cfg, &e), 0);
    assert_string_equal(cfg->server, "https://[fd00::1]:443");
    assert_string_equal(cfg->namespace, "default");
    kube_config_free(TAKE_PTR(cfg));

    setenv("KUBERNETES_SERVICE_PORT", "https", 1);
    assert_int_equal(kube_config_in_cluster(tpath("sa6"), &cfg, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "not a port number"));
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);

    /* Token file missing. */
    assert_int_equal(unlink(tpath("sa6/token")), 0);
    assert_int_equal(kube_config_in_cluster(tpath("sa6"), &cfg, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "token"));

    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    unsetenv(KUBE_SA_DIR_ENV);
}

/* Symlinked layout of a projected volume: token -> ..data/token, ..data -> ..2026_x. */
static void test_in_cluster_symlink_rotation(void **state)
{
    _cleanup_(kube_config_freep) struct kube_config *cfg = NULL;
    ord_err e = {0};
    char *tok;

    assert_int_equal(mkdir(tpath("proj"), 0700), 0);
    assert_int_equal(mkdir(tpath("proj/..v1"), 0700), 0);
    write_file("proj/..v1/token", "v1");
    write_file("proj/..v1/ca.crt", "CA");
    assert_int_equal(symlink("..v1", tpath("proj/..data")), 0);
    assert_int_equal(symlink("..data/token", tpath("proj/token")), 0);
    assert_int_equal(symlink("..data/ca.crt", tpath("proj/ca.crt")), 0);
    setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "6443", 1);
    assert_int_equal(kube_config_in_cluster(tpath("proj"), &cfg, &e), 0);
    tok = token_of(cfg);
    assert_string_equal(tok, "v1");
    free(tok);

    assert_int_equal(mkdir(tpath("proj/..v2"), 0700), 0);
    write_file("proj/..v2/token", "v2");
    assert_int_equal(symlink("..v2", tpath("proj/..data.tmp")), 0);
    assert_int_equal(rename(tpath("proj/..data.tmp"), tpath("proj/..data")), 0);
    tok = token_of(cfg);
    assert_string_equal(tok, "v2");
    free(tok);
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
}

static void test_load_order(void **state)
{
    _cleanup_(kube_config_freep) struct kube_config *cfg = NULL;
    ord_err e = {0};
    char list[1200];

    write_file("one", "current-context: c\n"
                      "clusters: [{name: k, cluster: {server: 'https://one:1'}}]\n"
                      "contexts: [{name: c, context: {cluster: k}}]\n");
    write_file("two", "current-context: c\n"
                      "clusters: [{name: k, cluster: {server: 'https://two:1'}}]\n"
                      "contexts: [{name: c, context: {cluster: k}}]\n");
    write_file("broken-ctx", "current-context: nope\n");

    /* Nothing configured. */
    assert_int_equal(kube_config_load(NULL, NULL, &cfg, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "--kubeconfig"));
    assert_non_null(strstr(e.msg, "KUBECONFIG"));

    /* $KUBECONFIG: the first existing file of the list. */
    snprintf(list, sizeof(list), "%s:%s:%s", tpath("missing"), tpath("two"), tpath("one"));
    setenv("KUBECONFIG", list, 1);
    assert_int_equal(kube_config_load(NULL, NULL, &cfg, &e), 0);
    assert_string_equal(cfg->server, "https://two:1");
    kube_config_free(TAKE_PTR(cfg));

    /* The explicit path wins over $KUBECONFIG. */
    assert_int_equal(kube_config_load(tpath("one"), NULL, &cfg, &e), 0);
    assert_string_equal(cfg->server, "https://one:1");
    kube_config_free(TAKE_PTR(cfg));

    /* An error in the first file of a list says that the others were not read. */
    snprintf(list, sizeof(list), "%s:%s", tpath("broken-ctx"), tpath("one"));
    setenv("KUBECONFIG", list, 1);
    assert_int_equal(kube_config_load(NULL, NULL, &cfg, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "only the first existing one is read"));
    assert_non_null(strstr(e.msg, "context 'nope' (current-context) not found"));

    setenv("KUBECONFIG", tpath("missing"), 1);
    assert_int_equal(kube_config_load(NULL, NULL, &cfg, &e), -ENOENT);
    assert_non_null(strstr(e.msg, "no file of it exists"));
    unsetenv("KUBECONFIG");

    /* In-cluster next. */
    make_sa_dir("sa-order", "tok", NULL);
    setenv(KUBE_SA_DIR_ENV, tpath("sa-order"), 1);
    setenv("KUBERNETES_SERVICE_HOST", "10.1.1.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    assert_int_equal(kube_config_load(NULL, NULL, &cfg, &e), 0);
    assert_string_equal(cfg->server, "https://10.1.1.1:443");
    kube_config_free(TAKE_PTR(cfg));
    unsetenv("KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    unsetenv(KUBE_SA_DIR_ENV);

    /* Then ~/.kube/config. */
    assert_int_equal(mkdir(tpath(".kube"), 0700), 0);
    assert_int_equal(rename(tpath("one"), tpath(".kube/config")), 0);
    assert_int_equal(kube_config_load(NULL, NULL, &cfg, &e), 0);
    assert_string_equal(cfg->server, "https://one:1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_token_and_ca_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_token_file_and_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cert_files_relative, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cert_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explicit_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_cluster_symlink_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_order, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
