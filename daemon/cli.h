/* cli.h - the fleetscan subcommands (one binary: probe, run, demo, preflight). Each returns
 * the process exit status: 0 online/success, 1 offline, 2 usage or configuration error. */
#ifndef FS_CLI_H
#define FS_CLI_H

int cmd_probe(int argc, char **argv);
int cmd_run(int argc, char **argv);

/* Shared option helpers: argv[*i] is "--name" or "--name=value"; on a match stores the value
 * (the next argument or the part after '=') and advances *i. Returns 1 on a match, 0 when the
 * option is a different one, -1 when its value is missing (message printed). */
int cli_opt_value(int argc, char **argv, int *i, const char *name, const char **value);
/* Parses a whole decimal integer in [min, max]; returns 0 or -1 (message printed). */
int cli_parse_int(const char *opt, const char *s, long long min, long long max, long long *out);

#endif
