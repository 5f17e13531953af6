/* main.c - the fleetscan binary: dispatches to the subcommands of daemon/cli.h. */
#include "daemon/cli.h"

#include <stdio.h>
#include <string.h>

#include <openssl/ssl.h>

#ifdef FLEETSCAN_JEMALLOC
/* Read by jemalloc at start-up: one arena (one loop thread does nearly all allocation; fewer
 * arenas keep RSS flat), no background purge thread. */
const char *malloc_conf = "narenas:1,background_thread:false";
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: fleetscan <command> [options]\n"
               "\n"
               "commands:\n"
               "  probe URL [options]   diagnose one server the way an endpoint would (--help)\n"
               "  run -c FILE           the daemon: simulate the fleet, serve the API (--help)\n"
               "  preflight -c FILE --chain PEM  would each group accept a new chain? (--help)\n"
               "  status [--url URL]    the fleet picture of a running daemon (--help)\n"
               "  demo                  run the embedded lab and the daemon against it (--help)\n"
               "  version               print the version\n"
               "\n"
               "exit status: 0 online, 1 offline, 2 usage or configuration error\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "probe") == 0)
        return cmd_probe(argc - 1, argv + 1);
    if (strcmp(cmd, "preflight") == 0)
        return cmd_preflight(argc - 1, argv + 1);
    if (strcmp(cmd, "status") == 0)
        return cmd_status(argc - 1, argv + 1);
    if (strcmp(cmd, "demo") == 0)
        return cmd_demo(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("fleetscan 0.1 (%s)\n", OpenSSL_version(OPENSSL_VERSION));
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "fleetscan: unknown command \"%s\"\n", cmd);
    usage(stderr);
    return 2;
}
