/* dns_driver.c - what the resolve cache saves: N probes of a name the system resolver answers
 * (localhost: /etc/hosts, never a name server), IN_FLIGHT at a time, against a closed loopback
 * port so each probe is resolve + connect + refused and the name's cost shows. Modes:
 *   cache  every probe asks one shared resolve cache (probe_opts_t.dns), as the daemon will
 *   none   each probe makes its own uncached lookup (probe_opts_t.dns NULL)
 *   ip     the URL holds 127.0.0.1: no resolution at all (the floor)
 * Prints "MODE us_per_probe=X lookups=L wall_ms=W" (CPU: getrusage of the whole process).
 * Built and run by bench/run.sh (section dns) against build-bench/libfsprobes.a:
 *   dns_driver MODE [N=20000] [IN_FLIGHT=100] [HOST=localhost] */
#include "probes/dns.h"
#include "probes/probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static uv_loop_t loop;
static probe_opts_t po;
static int n_total, started, finished, refused;

static void on_done(probe_t *p, probe_result_t *r, void *arg);

static void start_one(void)
{
    started++;
    if (probe_start(NULL, &loop, &po, on_done, NULL) != 0) {
        fprintf(stderr, "dns_driver: probe_start failed\n");
        exit(1);
    }
}

static void on_done(probe_t *p, probe_result_t *r, void *arg)
{
    (void)p;
    (void)arg;
    finished++;
    refused += r->cause == FS_CAUSE_CONNECT_REFUSED;
    if (started < n_total)
        start_one();
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* A loopback port nothing listens on (bound, then closed). */
static int closed_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "cache";
    n_total = argc > 2 ? atoi(argv[2]) : 20000;
    int in_flight = argc > 3 ? atoi(argv[3]) : 100;
    const char *host = argc > 4 ? argv[4] : "localhost";
    char url[300], err[256];
    fs_url_t u;
    snprintf(url, sizeof(url), "https://%s:%d", strcmp(mode, "ip") == 0 ? "127.0.0.1" : host,
             closed_port());
    if (n_total < 1 || in_flight < 1 || fs_url_parse(&u, url, err) != 0) {
        fprintf(stderr, "usage: dns_driver cache|none|ip [N] [IN_FLIGHT] [HOST]\n");
        return 2;
    }
    uv_loop_init(&loop);
    tlsc_ctx_t *ctx = NULL;
    tlsc_ctx_opts_t to = {.min_version = TLS1_2_VERSION};
    if (tlsc_ctx_new(&ctx, &to, err) != 0) {
        fprintf(stderr, "dns_driver: %s\n", err);
        return 1;
    }
    probe_opts_defaults(&po);
    po.url = &u;
    po.tls = ctx;
    po.capture_chain = 0;
    dns_cache_t *dns = NULL;
    if (strcmp(mode, "cache") == 0 && dns_cache_new(&dns, &loop, NULL) != 0)
        return 1;
    po.dns = dns;
    double c0 = cpu_s();
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < in_flight && i < n_total; i++)
        start_one();
    uv_run(&loop, UV_RUN_DEFAULT);
    double cpu = cpu_s() - c0;
    uint64_t wall_ms = (uv_hrtime() - t0) / 1000000;
    dns_stats_t st = {0};
    if (dns != NULL) {
        dns_cache_stats(dns, &st);
        dns_cache_close(dns, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
    }
    printf("%s us_per_probe=%.1f lookups=%llu wall_ms=%llu refused=%d/%d\n", mode,
           cpu * 1e6 / finished,
           (unsigned long long)(dns                  ? st.lookups
                                : strcmp(mode, "ip") ? (uint64_t)finished
                                                     : 0),
           (unsigned long long)wall_ms, refused, finished);
    tlsc_ctx_unref(ctx);
    uv_loop_close(&loop);
    return refused == finished ? 0 : 1;
}
