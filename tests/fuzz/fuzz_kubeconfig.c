/*
 * fuzz_kubeconfig.c - the kubeconfig reader (libyaml, the YAML-to-JSON conversion with its node
 * and depth limits, the lookups and base64 decoding) under arbitrary documents. The input is
 * written to a memfd and read back through /proc/self/fd, the way a file would be.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kube_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kube_config *cfg = NULL;
    ord_err e = {0};
    char path[64];
    int fd, r;

    if (size > KUBE_CONFIG_FILE_MAX)
        return 0;
    fd = memfd_create("kubeconfig", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    r = kube_config_from_file(path, NULL, &cfg, &e);
    if (r >= 0) {
        char *tok = NULL;
        /* A loaded configuration is complete. */
        if (!cfg || !cfg->server || !cfg->namespace || !cfg->source || !cfg->ca_origin)
            __builtin_trap();
        if (kube_config_token(cfg, false, &tok, NULL) == 0)
            free(tok);
        kube_config_free(cfg);
    } else if (cfg || !e.msg[0] || e.code != r) {
        __builtin_trap(); /* failures leave no output and carry a message */
    }
    close(fd);
    return 0;
}
