/* procstats.c - /metrics families about the daemon itself rather than the fleet: descriptors,
 * the bytes in-flight retrievals hold against their budget, the fixed caps on what a peer can
 * make it hold, and the API's connections (web/conn_guard.c). */
#include "web/procstats.h"

#include <dirent.h>
#include <sys/resource.h>

#include "probes/fetch.h"
#include "probes/tlsc.h"
#include "probes/util.h"
#include "web/api.h"
#include "web/conn_guard.h"

int procstats_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static void gauge(wbuf_t *b, const char *name, const char *help, const wbuf_t *common, uint64_t v)
{
    wbuf_prom_family(b, name, "gauge", help);
    wbuf_prom_u64(b, name, common, NULL, NULL, NULL, NULL, v);
}

void procstats_metrics(wbuf_t *b, const wbuf_t *common)
{
    int fds = procstats_open_fds();
    struct rlimit rl;
    if (fds >= 0)
        gauge(b, "fleetscan_process_open_fds", "Open file descriptors of the daemon.", common,
              (uint64_t)fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        gauge(b, "fleetscan_process_max_fds", "The daemon's descriptor limit (RLIMIT_NOFILE).",
              common, (uint64_t)rl.rlim_cur);

    fetch_inflight_t fi;
    fetch_inflight(&fi);
    gauge(b, "fleetscan_inflight_bytes",
          "Bytes held by CRL, OCSP and AIA response bodies being retrieved.", common, fi.held);
    gauge(b, "fleetscan_inflight_bytes_limit",
          "Budget of fleetscan_inflight_bytes (limits.fetch_inflight_bytes); one retrieval at "
          "a time may go past it.",
          common, fi.limit);
    gauge(b, "fleetscan_inflight_waiting",
          "Retrievals paused or not started because the in-flight budget is used up.", common,
          fi.waiting);
    wbuf_prom_family(b, "fleetscan_inflight_waits_total", "counter",
                     "Retrievals that had to wait for the in-flight budget, since start.");
    wbuf_prom_u64(b, "fleetscan_inflight_waits_total", common, NULL, NULL, NULL, NULL,
                  fi.waited_total);

    static const struct {
        const char *name;
        uint64_t bytes;
    } caps[] = {
        {"tls_input", TLSC_MAX_INPUT},
        {"tls_certificate_list", TLSC_MAX_CERT_LIST},
        {"api_request_head", API_HEADER_MAX},
        {"api_request_body", API_BODY_MAX},
    };
    wbuf_prom_family(
        b, "fleetscan_limit_bytes", "gauge",
        "Fixed caps on what a peer can make the daemon hold: a TLS server's unprocessed "
        "input and certificate list per probe, an API request's head and body.");
    for (size_t i = 0; i < FS_ARRAY_SIZE(caps); i++)
        wbuf_prom_u64(b, "fleetscan_limit_bytes", common, "limit", caps[i].name, NULL, NULL,
                      caps[i].bytes);

    conn_guard_stats_t cs;
    conn_guard_process_stats(&cs);
    gauge(b, "fleetscan_api_connections", "Open API connections (reserved ones included).", common,
          cs.open);
    gauge(b, "fleetscan_api_connections_reserved",
          "Open API connections on a /healthz-only reserved slot.", common, cs.reserved);
    wbuf_prom_family(b, "fleetscan_api_connections_accepted_total", "counter",
                     "API connections accepted since start.");
    wbuf_prom_u64(b, "fleetscan_api_connections_accepted_total", common, NULL, NULL, NULL, NULL,
                  cs.accepted_total);
    wbuf_prom_family(
        b, "fleetscan_api_connections_dropped_total", "counter",
        "API connections closed by the daemon since start, by reason: evicted (idle, to make "
        "room), refused (over a limit), header_timeout, body_timeout, send_timeout, "
        "reserve_misuse.");
    for (int r = 0; r < CONN_GUARD_REASON_COUNT; r++)
        wbuf_prom_u64(b, "fleetscan_api_connections_dropped_total", common, "reason",
                      conn_guard_reason_names[r], NULL, NULL, cs.dropped_total[r]);
}
