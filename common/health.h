/*
 * health.h - the liveness file that the DaemonSet's probes check.
 *
 * A long-running program started with --health-file PATH rewrites PATH (its content: the
 * current time) whenever it has just proven itself healthy, and removes it at exit. The probe
 * is "the file is younger than a minute", so a program that hangs, or whose caches stopped
 * syncing, is restarted by the kubelet without any HTTP server in the process.
 */
#ifndef ORDINAL_HEALTH_H
#define ORDINAL_HEALTH_H

/* Rewrites path with the current time (never follows a symlink). Returns 0 or -errno. */
int health_touch(const char *path);

/* Removes path; a missing file is fine. */
void health_remove(const char *path);

#endif
