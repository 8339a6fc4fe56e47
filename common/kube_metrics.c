/*
 * kube_metrics.c - see kube_metrics.h. The families live as long as the registry; the client
 * holds a pointer to them through its observer.
 */
#include <string.h>

#include "kube_metrics.h"

struct kube_metrics {
    struct metric *duration, *errors;
};

const char *kube_metrics_reason(long status, int r)
{
    if (status == 0)
        return metrics_errno_reason(r);
    switch (status) {
    case 401:
    case 403:
        return "permission_denied";
    case 404:
        return "not_found";
    case 409:
        return "conflict";
    case 410:
        return "gone";
    case 422:
        return "invalid";
    case 429:
        return "throttled";
    default:
        return status >= 500 ? "server_error" : "client_error";
    }
}

/* Methods outside the five the client sends are counted as "other" (bounded label). */
static const char *verb_of(const char *method)
{
    static const char *const verbs[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};

    for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
        if (streq(method, verbs[i]))
            return verbs[i];
    return "other";
}

static void observe(void *ud, const char *method, long status, int r, double seconds)
{
    struct kube_metrics *km = ud;
    const char *verb = verb_of(method);

    (void)metric_observe(km->duration, (const char *const[]){verb}, seconds);
    if (r < 0 || status < 200 || status >= 300)
        (void)metric_add(km->errors, (const char *const[]){verb, kube_metrics_reason(status, r)},
                         1);
}

int kube_metrics_register(struct metrics *m, struct kube_client *c)
{
    /* One per process: both programs have one client. */
    static struct kube_metrics km;
    int r;

    if (!km.duration &&
        ((r = metrics_register(m, METRIC_HISTOGRAM, "ordinal_kube_api_request_duration_seconds",
                               "Duration of each attempt of a Kubernetes API request (watches "
                               "excluded), by HTTP verb.",
                               (const char *const[]){"verb", NULL}, metrics_latency_bounds,
                               metrics_latency_bounds_n, 16, &km.duration)) < 0 ||
         (r = metrics_register(m, METRIC_COUNTER, "ordinal_kube_api_request_errors_total",
                               "Kubernetes API request attempts that got no 2xx answer, by HTTP "
                               "verb and reason.",
                               (const char *const[]){"verb", "reason", NULL}, NULL, 0, 256,
                               &km.errors)) < 0))
        return r;
    kube_client_set_observer(c, observe, &km);
    return 0;
}
