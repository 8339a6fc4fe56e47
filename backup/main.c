/*
 * ordinal-backup - entry point: dispatches to the subcommands (cmds.h), each of which parses
 * its own options table and returns the exit code (0 success, 1 failure, 2 usage error).
 */
#include <stdio.h>
#include <string.h>

#include "cmds.h"
#include "macro.h"
#include "version.h"

static const struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} commands[] = {
    {"backup", cmd_backup}, {"restore", cmd_restore}, {"list", cmd_list},   {"verify", cmd_verify},
    {"prune", cmd_prune},   {"run", cmd_run},         {"agent", cmd_agent},
};

static void usage(FILE *f)
{
    fputs("Usage: ordinal-backup COMMAND [options]\n\n"
          "Snapshots, compresses and restores the volumes of each StatefulSet ordinal.\n\n"
          "Commands:\n"
          "  backup    back up the volumes of a StatefulSet's ordinals on this node\n"
          "  restore   restore them from a backup\n"
          "  list      list the backups in a repository\n"
          "  verify    re-read and check backups\n"
          "  prune     remove old backups by a retention policy\n"
          "  run       coordinate a cluster-wide backup (CronJob)\n"
          "  agent     run the node agent (DaemonSet)\n\n"
          "Repository URL: an absolute path or file:///path (a directory on a local disk or "
          "NFS),\n"
          "or s3://BUCKET/PREFIX (credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and\n"
          "AWS_SESSION_TOKEN; see a command's --help).\n"
          "Exit status: 0 success, 1 failure, 2 usage error.\n"
          "Run 'ordinal-backup COMMAND --help' for a command's options.\n",
          f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (streq(argv[1], "--help") || streq(argv[1], "-h") || streq(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (streq(argv[1], "--version")) {
        printf("ordinal-backup %s\n", ORDINAL_VERSION);
        return 0;
    }
    for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
        if (streq(argv[1], commands[i].name))
            return commands[i].fn(argc, argv);
    fprintf(stderr, "ordinal-backup: unknown command '%s'; see 'ordinal-backup --help'\n", argv[1]);
    return 2;
}
