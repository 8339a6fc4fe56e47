/*
 * kube_config.h - where the Kubernetes API server is and how to authenticate to it.
 *
 * Two sources, in this order (kube_config_load):
 *   1. an explicit path (--kubeconfig);
 *   2. $KUBECONFIG — when it is a colon-separated list, only its first existing file is read
 *      (kubectl merges them; we do not, and the error message says so when that matters);
 *   3. in-cluster: $KUBERNETES_SERVICE_HOST/$KUBERNETES_SERVICE_PORT plus the service account
 *      directory /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}.
 *      ORDINAL_SA_DIR overrides that directory: it exists for tests only.
 * Otherwise a clear error names all three.
 *
 * From a kubeconfig (libyaml): current-context (or an explicit context), the context's cluster
 * (server, certificate-authority — a file, relative to the kubeconfig's directory — or
 * certificate-authority-data in base64, insecure-skip-tls-verify), its user (token, tokenFile,
 * client-certificate(-data), client-key(-data)) and its namespace. Exec and auth-provider
 * plugins are not supported and are refused with a message that says so.
 *
 * Tokens from a file (in-cluster, or a kubeconfig tokenFile) are re-read when the file changes
 * (device, inode, size or mtime differ): bound service-account tokens rotate, and the kubelet
 * swaps the file atomically through a symlink. kube_config_token() is thread-safe.
 */
#ifndef ORDINAL_KUBE_CONFIG_H
#define ORDINAL_KUBE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "macro.h"

#define KUBE_SA_DIR_DEFAULT "/var/run/secrets/kubernetes.io/serviceaccount"
#define KUBE_SA_DIR_ENV     "ORDINAL_SA_DIR"
/* Bounds on what we read from files named by a kubeconfig. */
#define KUBE_CONFIG_FILE_MAX (4u << 20)
#define KUBE_TOKEN_MAX       (64u << 10)

/*
 * The resolved configuration. Fields are read-only for users of the struct; strings are owned
 * by it. Byte blobs (PEM) are not NUL-terminated by contract, though they happen to be.
 */
struct kube_config {
    char *server;    /* "https://10.0.0.1:443", without a trailing slash */
    char *namespace; /* context namespace / in-cluster namespace file, else "default" */
    char
        *source; /* for messages: "kubeconfig /root/.kube/config" or "in-cluster service account" */

    char *ca_file; /* certificate-authority (absolute), or NULL */
    char *ca_pem;  /* certificate-authority-data decoded, or NULL */
    size_t ca_pem_len;
    char *ca_origin; /* for TLS messages: "certificate-authority-data in /root/.kube/config" */
    bool insecure;   /* insecure-skip-tls-verify */

    char *cert_file; /* client-certificate, or NULL */
    char *cert_pem;  /* client-certificate-data decoded, or NULL */
    size_t cert_pem_len;
    char *key_file;
    char *key_pem;
    size_t key_pem_len;

    char *token_file;                     /* tokenFile / in-cluster token path, or NULL */
    struct kube_token_state *token_state; /* private: the cached token and its file identity */
};

/*
 * Loads per the order above. explicit_path may be NULL. context may be NULL (current-context).
 * Returns 0 and a config the caller frees with kube_config_free(); -ENOENT when no source
 * exists, -EINVAL for a broken or incomplete kubeconfig, -EOPNOTSUPP for exec/auth plugins,
 * other negative errnos for unreadable files; e says what and where.
 */
int kube_config_load(const char *explicit_path, const char *context, struct kube_config **ret,
                     ord_err *e);

/* Reads the kubeconfig at path (see above). Same returns as kube_config_load(). */
int kube_config_from_file(const char *path, const char *context, struct kube_config **ret,
                          ord_err *e);

/* In-cluster configuration from the environment and sa_dir (NULL: $ORDINAL_SA_DIR or default). */
int kube_config_in_cluster(const char *sa_dir, struct kube_config **ret, ord_err *e);

/*
 * The bearer token to send now, as a malloc'd string the caller frees, or NULL (no token
 * configured: *ret is set to NULL and 0 returned). A token file is re-read when it changed
 * since the last read, or always when force is true (after a 401). Returns 0, or a negative
 * errno when the file cannot be read (the previous token is kept for the next call).
 * Thread-safe.
 */
int kube_config_token(struct kube_config *cfg, bool force, char **ret, ord_err *e);

void kube_config_free(struct kube_config *cfg);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct kube_config *, kube_config_free)

#endif
