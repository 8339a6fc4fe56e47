/*
 * prov_config.c - the provisioner's options table (drives parsing and --help).
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "prov_config.h"
#include "version.h"

static const char *const log_formats[] = {"text", "json", NULL};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};

int prov_config_parse(struct prov_config *cfg, int argc, char **argv)
{
    *cfg = (struct prov_config){
        .provisioner_name = PROV_DEFAULT_NAME,
        .root = PROV_DEFAULT_ROOT,
        .log_format = "text",
        .log_level = "info",
        .workers = 8,
        .resync_seconds = 60,
    };
    const struct opt_def opts[] = {
        {"kubeconfig", OPT_STRING, &cfg->kubeconfig, "FILE",
         "kubeconfig to use instead of the in-cluster service account.", NULL, 0, 0, NULL,
         "KUBECONFIG", false},
        {"node-name", OPT_STRING, &cfg->node_name, "NAME",
         "Name of the Node this process serves (use the downward API in a DaemonSet).", NULL, 0, 0,
         NULL, "NODE_NAME", true},
        {"provisioner-name", OPT_STRING, &cfg->provisioner_name, "NAME",
         "The StorageClass 'provisioner' value to act for.", PROV_DEFAULT_NAME, 0, 0, NULL, NULL,
         false},
        {"root", OPT_STRING, &cfg->root, "DIR", "Node directory that holds one entry per volume.",
         PROV_DEFAULT_ROOT, 0, 0, NULL, NULL, false},
        {"allowed-root", OPT_STRING_LIST, &cfg->allowed_roots, "DIR",
         "A directory a StorageClass 'root' parameter may name (the --root is always allowed).",
         NULL, 0, 0, NULL, NULL, false},
        {"device-dir", OPT_STRING_LIST, &cfg->device_dirs, "DIR",
         "Directory whose entries are candidate block devices for the device backend.", NULL, 0, 0,
         NULL, NULL, false},
        {"health-file", OPT_STRING, &cfg->health_file, "FILE",
         "Rewrite FILE every few seconds while the caches are in sync, for liveness probes; "
         "removed at exit.",
         NULL, 0, 0, NULL, NULL, false},
        {"metrics-address", OPT_STRING, &cfg->metrics_address, "HOST:PORT",
         "Serve /metrics (Prometheus), /healthz and /readyz over HTTP on this address (':PORT' "
         "for every IPv4 address); off when not given.",
         NULL, 0, 0, NULL, NULL, false},
        {"log-format", OPT_CHOICE, &cfg->log_format, "FORMAT",
         "Log as text for people or as JSON lines for collectors.", "text", 0, 0, log_formats, NULL,
         false},
        {"log-level", OPT_CHOICE, &cfg->log_level, "LEVEL", "Least severe level logged.", "info", 0,
         0, log_levels, NULL, false},
        {"workers", OPT_UINT, &cfg->workers, "N",
         "Claims and volumes processed in parallel (one claim is never processed twice at once).",
         "8", 1, 64, NULL, NULL, false},
        {"resync-seconds", OPT_UINT, &cfg->resync_seconds, "N",
         "Look at every claim and volume again this often, to retry what failed.", "60", 1, 86400,
         NULL, NULL, false},
    };
    const struct opt_cmd cmd = {
        .name = "ordinal-provisioner",
        .usage = "--node-name NAME [options]",
        .summary = "Binds the PersistentVolumeClaims of StorageClasses whose provisioner is "
                   "ordinal.dev/local\n"
                   "to per-ordinal hostPath directories or local block devices on this node.\n"
                   "Runs until SIGTERM or SIGINT; all state is rebuilt from the API and the node "
                   "layout on start.",
        .opts = opts,
        .n_opts = ARRAY_SIZE(opts),
        .epilog =
            "Node layout:\n"
            "  ROOT/NAMESPACE/STATEFULSET/ORDINAL/TEMPLATE   StatefulSet claims\n"
            "  ROOT/NAMESPACE/_claims/CLAIM                  any other claim of the class\n"
            "  ROOT/.orphaned/                               data found without its PV\n\n"
            "Exit status: 0 after a clean shutdown, 1 on a fatal error, 2 on a usage error.\n",
    };
    return opts_parse(&cmd, "ordinal-provisioner", ORDINAL_VERSION, argc, argv, 1);
}

void prov_config_free(struct prov_config *cfg)
{
    strv_free(&cfg->allowed_roots);
    strv_free(&cfg->device_dirs);
}
