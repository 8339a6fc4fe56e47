/*
 * kube_metrics.h - Kubernetes API request metrics for a kube_client, shared by the provisioner
 * and the backup agent:
 *   ordinal_kube_api_request_duration_seconds{verb}      histogram, every attempt
 *   ordinal_kube_api_request_errors_total{verb,reason}   attempts without a 2xx answer
 * verb is the HTTP method (GET, POST, PUT, PATCH, DELETE), as client-go labels its own; reason
 * one of a fixed set (throttled, conflict, not_found, permission_denied, invalid,
 * client_error, server_error, and metrics_errno_reason()'s for transport failures).
 */
#ifndef ORDINAL_KUBE_METRICS_H
#define ORDINAL_KUBE_METRICS_H

#include "kube_client.h"
#include "metrics.h"

/* Registers the families in m and observes client c (call before c is shared). Returns 0 or
 * a negative errno. */
int kube_metrics_register(struct metrics *m, struct kube_client *c);

/* The reason label of an attempt that failed (exposed for tests). */
const char *kube_metrics_reason(long status, int r);

#endif
