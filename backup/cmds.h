/*
 * cmds.h - the ordinal-backup subcommands. Each takes the whole argv (argv[1] is the
 * subcommand's name) and returns the process exit code: 0 success, 1 failure, 2 usage error.
 */
#ifndef ORDINAL_CMDS_H
#define ORDINAL_CMDS_H

#include <stdint.h>

#include "err.h"
#include "names.h"

int cmd_backup(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_run(int argc, char **argv);   /* cmd_run.c: the coordinator */
int cmd_agent(int argc, char **argv); /* cmd_agent.c: the node agent */

/*
 * cmd_prune.c: what 'prune --statefulset NS/NAME --keep-… N' does, printing nothing on stdout
 * (for 'run'). Takes the StatefulSet's lock itself. Returns 0 or a negative errno with e filled.
 */
int prune_statefulset(const char *url, const struct sts_ref *sts, uint64_t last, uint64_t daily,
                      uint64_t weekly, uint64_t monthly, ord_err *e);

#endif
