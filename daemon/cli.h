/* cli.h - the fleetscan subcommands (one binary: probe, run, demo, preflight). Each returns
 * the process exit status: 0 online/success, 1 offline, 2 usage or configuration error. */
#ifndef FS_CLI_H
#define FS_CLI_H

#include <stdint.h>
#include <stdio.h>

int cmd_probe(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_preflight(int argc, char **argv);
int cmd_status(int argc, char **argv);

/* GET base/api/v1/status (5 s timeout, size-capped): 0 with *out, or -1 with err. */
struct cJSON;
int status_fetch(const char *base, struct cJSON **out, char err[256]);
/* Prints the fleet picture of a /status document: counts, top causes with their groups and
 * first remediation step, warnings, the dashboard URL. */
void status_print(FILE *f, const struct cJSON *status, const char *base);

/* How the daemon runs, beyond its configuration file. */
typedef struct daemon_opts_s {
    int shard_override; /* use shard_i/shard_n instead of the file's "shard" */
    uint32_t shard_i, shard_n;
    int dns_override_only; /* never ask the system resolver (the lab, tests) */
    unsigned duration_s;   /* stop by itself after this long (0: run until a signal) */
    /* The state database (--state-db): NULL: beside the configuration file, its name with
     * ".state.db" for the extension (fleetscan.jsonc -> fleetscan.state.db); "" or ":memory:":
     * none, nothing survives a restart. */
    const char *state_db;
    void (*on_ready)(void *arg, const char *api_url); /* replaces the "listening" line */
    void *arg;
} daemon_opts_t;
/* Runs `fleetscan run` with config_path until SIGTERM/SIGINT (or duration_s): exit status. */
int daemon_run(const char *config_path, const daemon_opts_t *o);

/* Shared option helpers: argv[*i] is "--name" or "--name=value"; on a match stores the value
 * (the next argument or the part after '=') and advances *i. Returns 1 on a match, 0 when the
 * option is a different one, -1 when its value is missing (message printed). */
int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **value);
/* Parses a whole decimal integer in [min, max]; returns 0 or -1 (message printed). */
int cli_parse_int(const char *opt, const char *s, long long min, long long max, long long *out);

#endif
