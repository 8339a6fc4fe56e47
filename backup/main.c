/*
 * ordinal-backup - entry point: dispatches to the subcommands.
 */
#include <stdio.h>
#include <string.h>

#include "macro.h"
#include "version.h"

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
    fprintf(stderr, "ordinal-backup: unknown command '%s'; see 'ordinal-backup --help'\n", argv[1]);
    return 2;
}
