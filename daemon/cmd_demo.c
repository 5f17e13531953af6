/* cmd_demo.c - `fleetscan demo`: starts the embedded lab (a Notification Server in the middle
 * of a rollover, on loopback, with a PKI it generates) and the daemon against it. */
#include "daemon/cli.h"
#include "lab/scenarios.h"
#include "probes/util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define DEMO_REFRESH_S 2

static void demo_usage(FILE *f)
{
    fprintf(f,
            "usage: fleetscan demo [--listen ADDR:PORT] [--scale X] [--interval S] [--duration S]\n"
            "  --listen ADDR:PORT  API address (default 127.0.0.1:8787; port 0 picks one)\n"
            "  --scale X           multiply every group's endpoint count (default 1: 1,055)\n"
            "  --interval S        probe interval of every endpoint, seconds (default 20)\n"
            "  --duration S        stop after S seconds (default: run until Ctrl-C)\n");
}

typedef struct demo_s {
    const lab_t *lab;
    const char *token;
    const char *config;
    char url[128];
    pthread_t watcher;
    int watching;
    atomic_int stop;
} demo_t;

/* Prints the fleet picture as it fills in, every DEMO_REFRESH_S seconds, through the API like
 * `fleetscan status` (a terminal redraws in place; a pipe gets one picture per refresh). */
static void *watch(void *arg)
{
    demo_t *d = arg;
    int tty = isatty(STDOUT_FILENO), first = 1;
    while (!atomic_load(&d->stop)) {
        cJSON *s;
        char err[256];
        if (status_fetch(d->url, &s, err) == 0) {
            if (tty && !first)
                fputs("\033[H\033[2J", stdout);
            else
                fputs("\n", stdout);
            first = 0;
            status_print(stdout, s, d->url);
            printf("\n  demo: the API is %s/api/v1/status; POST /api/v1/scan takes the bearer "
                   "token %s;\n  config %s. Ctrl-C stops everything.\n",
                   d->url, d->token, d->config);
            fflush(stdout);
            cJSON_Delete(s);
        }
        for (int i = 0; i < DEMO_REFRESH_S * 10 && !atomic_load(&d->stop); i++)
            nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
    }
    return NULL;
}

static void on_ready(void *arg, const char *url)
{
    demo_t *d = arg;
    printf(
        "\nfleetscan demo: a lab Notification Server mid-rollover runs on loopback (%d bindings, "
        "each broken a different way, and a CRL/AIA host); the daemon simulates %zu groups "
        "against it.\n",
        LAB_SC_COUNT, lab_ngroups);
    printf("\n  API        %s/api/v1/status\n  Dashboard  %s/\n  Metrics    %s/metrics\n", url, url,
           url);
    fflush(stdout);
    fs_strlcpy(d->url, url, sizeof(d->url));
    d->watching = pthread_create(&d->watcher, NULL, watch, d) == 0;
}

int cmd_demo(int argc, char **argv)
{
    lab_fleet_opts_t fo = {
        .listen = "127.0.0.1:8787", .interval_s = 20, .scale = 1, .vantage = "demo-lab"};
    daemon_opts_t o = {.dns_override_only = 1, .on_ready = on_ready};
    const char *v;
    for (int i = 1; i < argc; i++) {
        int m;
        long long n;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            demo_usage(stdout);
            return 0;
        } else if ((m = cli_opt_value(argc, argv, &i, "--listen", &v)) != 0) {
            if (m < 0)
                return 2;
            fo.listen = v;
        } else if ((m = cli_opt_value(argc, argv, &i, "--scale", &v)) != 0) {
            char *end;
            if (m < 0)
                return 2;
            fo.scale = strtod(v, &end);
            if (*v == '\0' || *end != '\0' || !(fo.scale > 0 && fo.scale <= 1000)) {
                fprintf(stderr, "fleetscan: demo: --scale \"%s\": expected a number in (0, 1000]\n",
                        v);
                return 2;
            }
        } else if ((m = cli_opt_value(argc, argv, &i, "--interval", &v)) != 0) {
            if (m < 0 || cli_parse_int("--interval", v, 1, 86400, &n) < 0)
                return 2;
            fo.interval_s = (double)n;
        } else if ((m = cli_opt_value(argc, argv, &i, "--duration", &v)) != 0) {
            if (m < 0 || cli_parse_int("--duration", v, 1, 86400 * 365, &n) < 0)
                return 2;
            o.duration_s = (unsigned)n;
        } else {
            fprintf(stderr, "fleetscan: demo: unexpected argument \"%s\"\n", argv[i]);
            demo_usage(stderr);
            return 2;
        }
    }
    lab_t lab;
    char err[256], config[600], token_file[600], events[600];
    fprintf(stderr, "fleetscan demo: generating the lab PKI and starting its servers...\n");
    if (lab_start(&lab, err) < 0) {
        fprintf(stderr, "fleetscan: demo: %s\n", err);
        return 1;
    }
    /* A fresh token per run: mutating calls are enabled for the demo only. */
    char token[33];
    FILE *ur = fopen("/dev/urandom", "r");
    unsigned char rnd[16] = {0};
    if (ur == NULL || fread(rnd, 1, sizeof(rnd), ur) != sizeof(rnd)) {
        for (size_t i = 0; i < sizeof(rnd); i++)
            rnd[i] = (unsigned char)(rand() ^ getpid());
    }
    if (ur)
        fclose(ur);
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(token + 2 * i, 3, "%02x", rnd[i]);
    lab_file(&lab, "api-token", token_file, sizeof(token_file));
    lab_file(&lab, "fleetscan.json", config, sizeof(config));
    lab_file(&lab, "events.log", events, sizeof(events));
    FILE *tf = fopen(token_file, "w");
    int rc = 1;
    if (tf == NULL || fprintf(tf, "%s\n", token) < 0 || fclose(tf) != 0) {
        fprintf(stderr, "fleetscan: demo: cannot write %s\n", token_file);
        goto out;
    }
    fo.token_file = token_file;
    fo.event_log = events;
    if (lab_write_fleet_config(&lab, config, &fo, err) < 0) {
        fprintf(stderr, "fleetscan: demo: %s\n", err);
        goto out;
    }
    demo_t d = {.lab = &lab, .token = token, .config = config};
    o.arg = &d;
    rc = daemon_run(config, &o);
    atomic_store(&d.stop, 1);
    if (d.watching)
        pthread_join(d.watcher, NULL);
out:
    lab_stop(&lab);
    return rc;
}
