/*
 * ordinal-provisioner - entry point: parse options, set up logging, connect to the API server,
 * run the controller until SIGTERM or SIGINT.
 *
 * Signals are blocked in every thread (the mask is inherited by the threads the client and the
 * controller start) and taken synchronously here with sigwait(), so no handler runs in the
 * middle of a libcurl call and shutdown happens in one place: stop the workers, stop the
 * informers, free, exit 0.
 *
 * With --metrics-address, an HTTP endpoint (http_server.h) serves /metrics, /healthz and
 * /readyz from a thread of its own: it reads only the metrics registry (locked) and atomics
 * stamped here, so a scrape never waits for the controller and the controller never waits for
 * a scrape. It starts before the caches are filled, so that /healthz answers during a long
 * first list and /readyz says "not ready" until the caches are in sync.
 */
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "class_params.h"
#include "controller.h"
#include "health.h"
#include "http_server.h"
#include "kube_client.h"
#include "kube_config.h"
#include "kube_metrics.h"
#include "log.h"
#include "metrics.h"
#include "prov_config.h"
#include "prov_metrics.h"

/* How often --health-file is rewritten; the probes allow a minute. */
#define HEALTH_INTERVAL_SEC 5

/* A main loop that has not turned for this long is hung: /healthz fails, the kubelet restarts. */
#define LIVENESS_STALE_SEC 60

/* What the HTTP thread reads; written by the main thread. */
static struct {
    struct metrics *reg;
    struct controller *ctl;
    atomic_bool started; /* controller_start() returned */
    _Atomic double beat; /* CLOCK_MONOTONIC seconds of the main loop's last turn; 0 before */
} probe;

static double monotonic(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void reply_text(struct http_reply *ret, unsigned status, const char *text)
{
    ret->status = status;
    ret->body = strdup(text);
    ret->len = ret->body ? strlen(ret->body) : 0;
}

static void serve_metrics(void *ud, struct http_reply *ret)
{
    int r = metrics_render(probe.reg, &ret->body, &ret->len);

    if (r < 0)
        return reply_text(ret, 500, "cannot render the metrics\n");
    ret->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* Alive while starting, and afterwards while the main loop turns. */
static void serve_healthz(void *ud, struct http_reply *ret)
{
    double beat = atomic_load(&probe.beat);

    if (beat > 0 && monotonic() - beat > LIVENESS_STALE_SEC)
        return reply_text(ret, 503, "the main loop is stuck\n");
    reply_text(ret, 200, "ok\n");
}

/* Ready when started and every informer's cache is in sync with the API server. */
static void serve_readyz(void *ud, struct http_reply *ret)
{
    if (!atomic_load(&probe.started))
        return reply_text(ret, 503, "starting: filling the caches from the API server\n");
    if (!controller_healthy(probe.ctl))
        return reply_text(ret, 503, "the caches are not in sync with the API server\n");
    reply_text(ret, 200, "ok\n");
}

/*
 * Sets up the registry, the metrics of every part, and the endpoint. Returns 0 or a negative
 * errno (logged).
 */
static int start_metrics(const struct prov_config *cfg, struct kube_client *client,
                         struct controller *ctl, struct metrics **ret_reg,
                         struct http_server **ret_srv)
{
    const struct http_route routes[] = {
        {"/metrics", serve_metrics, NULL},
        {"/healthz", serve_healthz, NULL},
        {"/readyz", serve_readyz, NULL},
    };
    ord_err e = {0};
    int r;

    r = metrics_new(ret_reg);
    if (r >= 0)
        r = metrics_register_process(*ret_reg);
    if (r >= 0)
        r = kube_metrics_register(*ret_reg, client);
    if (r >= 0)
        r = prov_metrics_init(*ret_reg, ctl, cfg->node_name);
    if (r < 0)
        return log_error_errno(r, "cannot set up the metrics: %s", strerror(-r));
    probe.reg = *ret_reg;
    probe.ctl = ctl;
    r = http_server_start(cfg->metrics_address, routes, ARRAY_SIZE(routes), ret_srv, &e);
    if (r < 0)
        return log_error_errno(r, "--metrics-address: %s", err_msg(&e));
    log_info("serving /metrics, /healthz and /readyz on http://%s", http_server_address(*ret_srv));
    return 0;
}

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
    struct metrics *reg = NULL;
    struct http_server *srv = NULL;
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
    if (cfg.metrics_address && http_server_check_address(cfg.metrics_address, &e) < 0) {
        fprintf(stderr, "ordinal-provisioner: --metrics-address: %s\n", err_msg(&e));
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
    if (cfg.metrics_address && (r = start_metrics(&cfg, client, ctl, &reg, &srv)) < 0)
        goto out;
    r = controller_start(ctl, &e);
    if (r < 0) {
        log_error("cannot start: %s", err_msg(&e));
        goto out;
    }
    atomic_store(&probe.started, true);
    /* Wait for a signal; meanwhile prove liveness every few seconds. */
    for (;;) {
        const struct timespec tick = {.tv_sec = HEALTH_INTERVAL_SEC};

        atomic_store(&probe.beat, monotonic());

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
    /* The endpoint first: its handlers read the controller and the registry. */
    http_server_stop(srv);
    controller_free(TAKE_PTR(ctl));
    kube_client_free(TAKE_PTR(client));
    metrics_free(reg);
    prov_config_free(&cfg);
    return r < 0 ? 1 : 0;
}
