/*
 * ordinal-provisioner - entry point: parse options, set up logging, connect to the API server,
 * run the controller until SIGTERM or SIGINT.
 *
 * Signals are blocked in every thread (the mask is inherited by the threads the client and the
 * controller start) and taken synchronously here with sigwait(), so no handler runs in the
 * middle of a libcurl call and shutdown happens in one place: stop the workers, stop the
 * informers, free, exit 0.
 */
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "class_params.h"
#include "controller.h"
#include "health.h"
#include "kube_client.h"
#include "kube_config.h"
#include "log.h"
#include "prov_config.h"

/* How often --health-file is rewritten; the probes allow a minute. */
#define HEALTH_INTERVAL_SEC 5

/* Creates --root (mkdir -p) so that a fresh node needs no preparation. Returns 0 or -errno. */
static int ensure_root(const char *root)
{
    char norm[CLASS_PATH_MAX];
    int r;

    r = class_path_normalize(root, norm);
    if (r < 0)
        return r;
    for (char *p = norm + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;

            *p = '\0';
            if (mkdir(norm, 0755) < 0 && errno != EEXIST)
                return -errno;
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    _cleanup_(kube_client_freep) struct kube_client *client = NULL;
    _cleanup_(controller_freep) struct controller *ctl = NULL;
    struct kube_config *kc = NULL;
    struct prov_config cfg;
    enum log_level level;
    enum log_format format;
    ord_err e = {0};
    sigset_t set;
    int r, sig = 0;

    r = prov_config_parse(&cfg, argc, argv);
    if (r != OPTS_OK) {
        prov_config_free(&cfg);
        return r == OPTS_EXIT ? 0 : 2;
    }
    log_level_from_string(cfg.log_level, &level);
    log_format_from_string(cfg.log_format, &format);
    log_setup("ordinal-provisioner", level, format);
    if (!cfg.node_name || !cfg.node_name[0]) {
        fprintf(stderr, "ordinal-provisioner: --node-name (or $NODE_NAME) is required\n");
        prov_config_free(&cfg);
        return 2;
    }

    /*
     * glibc gives each thread that allocates an arena of its own; with informer and worker
     * threads allocating small objects all day, that fragments into megabytes. Two arenas
     * keep the daemon within its memory budget (DESIGN §7: 16 MiB holding 1,000 PVs) at no
     * measurable cost: the threads mostly wait on the network.
     */
    mallopt(M_ARENA_MAX, 2);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    r = ensure_root(cfg.root);
    if (r < 0) {
        log_error_errno(r, "cannot create --root '%s': %s", cfg.root, strerror(-r));
        goto out;
    }
    r = kube_config_load(cfg.kubeconfig, NULL, &kc, &e);
    if (r < 0) {
        log_error("cannot load the Kubernetes configuration: %s", err_msg(&e));
        goto out;
    }
    r = kube_client_new(kc, NULL, &client, &e);
    if (r < 0) {
        log_error("cannot create the Kubernetes client: %s", err_msg(&e));
        goto out;
    }
    r = controller_new(client, &cfg, &ctl, &e);
    if (r < 0) {
        log_error("%s", err_msg(&e));
        goto out;
    }
    r = controller_start(ctl, &e);
    if (r < 0) {
        log_error("cannot start: %s", err_msg(&e));
        goto out;
    }
    /* Wait for a signal; meanwhile prove liveness every few seconds. */
    for (;;) {
        const struct timespec tick = {.tv_sec = HEALTH_INTERVAL_SEC};

        if (cfg.health_file && controller_healthy(ctl) && (r = health_touch(cfg.health_file)) < 0)
            log_warn("cannot write --health-file '%s': %s", cfg.health_file, strerror(-r));
        sig = sigtimedwait(&set, NULL, &tick);
        if (sig > 0)
            break;
        if (errno != EAGAIN && errno != EINTR) {
            sig = SIGTERM;
            break;
        }
    }
    log_info("received %s; shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    r = 0;
out:
    health_remove(cfg.health_file);
    controller_free(TAKE_PTR(ctl));
    kube_client_free(TAKE_PTR(client));
    prov_config_free(&cfg);
    return r < 0 ? 1 : 0;
}
