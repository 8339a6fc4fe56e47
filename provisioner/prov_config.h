/*
 * prov_config.h - the provisioner's command-line configuration, parsed once in main().
 */
#ifndef ORDINAL_PROV_CONFIG_H
#define ORDINAL_PROV_CONFIG_H

#include <stdint.h>

#include "opts.h"

#define PROV_DEFAULT_NAME "ordinal.dev/local"
#define PROV_DEFAULT_ROOT "/var/lib/ordinal"

struct prov_config {
    const char *kubeconfig;
    const char *node_name;
    const char *provisioner_name;
    const char *root;
    struct strv allowed_roots; /* empty: only root */
    struct strv device_dirs;
    const char *log_format;
    const char *log_level;
    const char *health_file;
    const char *metrics_address; /* HOST:PORT of /metrics, /healthz, /readyz; NULL: off */
    uint64_t workers;        /* claims and volumes processed in parallel */
    uint64_t resync_seconds; /* every object is looked at again this often */
};

/* Parses argv; returns OPTS_OK, OPTS_EXIT or -EINVAL (message printed). */
int prov_config_parse(struct prov_config *cfg, int argc, char **argv);
void prov_config_free(struct prov_config *cfg);

#endif
