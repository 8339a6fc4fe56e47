/*
 * agent_metrics.h - the node agent's metrics (docs/operations.md, "Metrics and alerts"): per
 * volume the time of the last successful backup and restore and of the last failed backup,
 * bytes read and stored, durations, failures by reason; and whether the repository answers.
 *
 * "Last success" must survive a restart of the agent, or every restart would fire (or hide)
 * the freshness alert: agent_metrics_rebuild() fills the backup gauges from the repository's
 * catalog (the newest complete backup of each volume made on this node). A restart forgets
 * restores and failures: the repository does not record them.
 *
 * The hooks are no-ops until agent_metrics_init() ran (the agent was started with
 * --metrics-address).
 */
#ifndef ORDINAL_AGENT_METRICS_H
#define ORDINAL_AGENT_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "metrics.h"
#include "names.h"

/* Registers the families in m (borrowed, outlives the hooks). Returns 0 or a negative errno. */
int agent_metrics_init(struct metrics *m);

/* One volume, for the labels. */
struct agent_metrics_volume {
    const struct sts_ref *sts;
    int32_t ordinal;
    const char *template_name;
};

/*
 * A backup (restore false) or restore task ended at Unix time `when`: code 0 with the bytes and
 * seconds of the work, or a negative errno (the failure's reason).
 */
void agent_metrics_task(const struct agent_metrics_volume *v, bool restore, int code,
                        uint64_t bytes_in, uint64_t bytes_stored, double seconds, double when);

/*
 * Sets the last-successful-backup gauges from the repository at url, for the volumes whose
 * newest complete backup was made by node; a gauge that already holds a later time (a task
 * that finished meanwhile) is kept. Returns the number of volumes found, or a negative errno
 * with e filled (the repository cannot be read).
 */
int agent_metrics_rebuild(const char *url, const char *node, ord_err *e);

/* Whether the repository answered its last check (ordinal_repository_up). */
void agent_metrics_repository_up(bool up);

#endif
