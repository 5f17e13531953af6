/* api.h - the embedded HTTP/JSON API and Prometheus endpoint (SPEC §5). libmicrohttpd runs
 * its own thread pool that only ever reads immutable snapshots, so a slow client never
 * blocks another one and never touches the event loop. */
#ifndef FS_API_H
#define FS_API_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "web/snapshot.h"

/* Largest request body accepted (POST /api/v1/preflight); larger answers 413. */
#define API_BODY_MAX (1024 * 1024)
/* Longest request target and most query parameters accepted; past either the API answers 414
 * "uri_too_long" (JSON) without parsing the parameters. */
#define API_URI_MAX 8192
#define API_QUERY_ARGS_MAX 64
/* Pre-flights evaluated at once, and how many more may wait their turn; past both the API
 * answers 429 "too_many_requests" with Retry-After. */
#define API_PREFLIGHT_RUNNING 2
#define API_PREFLIGHT_WAITING 2
/* Forecast documents rendered at once (others wait), and kept per snapshot. */
#define API_FORECAST_RENDERS 2
#define API_FORECAST_KEPT 8
/* GET /api/v1/history: the default step gives at most this many steps; more are refused. */
#define API_HISTORY_POINTS 1440
#define API_HISTORY_MAX_POINTS 20000
/* /healthz answers 503 "stalled" when the loop's heartbeat is older than this by default. */
#define API_DEFAULT_STALL_MS 5000
/* Connections (docs/API.md, "Connections"): past max_connections, or max_connections_per_ip from
 * one address, a new connection evicts the oldest one that waits for a request head; when none
 * does it gets one of health_reserve slots that answer /healthz only (each lives
 * API_RESERVE_TIMEOUT_MS), else a JSON 503 / 429. A request head must arrive within
 * header_timeout_s of the connection (or of the end of the last answer plus the keep-alive idle
 * time), its body within body_timeout_s of the head, and the client must take the answer
 * within send_timeout_s; a late head or body is answered 408 "request_timeout". */
#define API_DEFAULT_MAX_CONNECTIONS 256
#define API_DEFAULT_MAX_PER_IP 32
#define API_DEFAULT_HEALTH_RESERVE 4
#define API_DEFAULT_HEADER_TIMEOUT_S 10
#define API_DEFAULT_BODY_TIMEOUT_S 30
#define API_DEFAULT_SEND_TIMEOUT_S 60
#define API_DEFAULT_IDLE_S 30
#define API_RESERVE_TIMEOUT_MS 2000
/* The request head: past either, 431 "header_too_large" (JSON) while it fits libmicrohttpd's
 * per-connection memory (API_CONN_MEMORY in web/api_int.h); past that, libmicrohttpd's own 431. */
#define API_HEADER_MAX 32768
#define API_HEADER_FIELDS_MAX 100

typedef struct api_s api_t;

typedef struct api_opts_s {
    /* "127.0.0.1:8787", "[::1]:0", "0.0.0.0:8787"; port 0 picks an ephemeral port (api_port). */
    const char *listen;
    /* Bearer token for mutating calls, copied; NULL or "": those calls answer 403. */
    const char *token;
    /* /healthz answers 503 when no snapshot was published for this long (the event loop is
     * stuck); <= 0 means 30. */
    int stale_after_s;
    /* The event loop's pulse: uv_hrtime() / 1000000 at its last tick, stored by a timer on the
     * loop (the daemon's ticks every 250 ms). /healthz answers 503 "stalled" when it is older
     * than stall_after_ms (<= 0: API_DEFAULT_STALL_MS). NULL: not checked. */
    const _Atomic int64_t *heartbeat_ms;
    int stall_after_ms;
    /* Worker threads (<= 0: 4) and idle keep-alive timeout in seconds (<= 0: 30). */
    int threads;
    int idle_timeout_s;
    /* Connection limits and deadlines (API_DEFAULT_* above for <= 0); health_reserve < 0: no
     * reserved slot. */
    int max_connections;
    int max_connections_per_ip;
    int health_reserve;
    int header_timeout_s;
    int body_timeout_s;
    int send_timeout_s;

    /* The hooks below run on an API thread, concurrently with the loop and with each other:
     * they must be thread-safe (the daemon forwards with uv_async_send). NULL: the route
     * answers 501. arg is passed through. */
    void *arg;
    /* POST /api/v1/scan, after the token was checked; the API answers 202. */
    void (*on_scan)(void *arg);
    /* POST /api/v1/preflight, after the token was checked; body is the request body (at most
     * API_BODY_MAX bytes, NUL-terminated at body[len]). Return 0 with *json_out (malloc'd JSON
     * document, freed by the API) and *status (HTTP status) set, or a negative code for a 500.
     * It may take long (it fetches CRLs): it runs on one of the API's own pre-flight threads
     * (API_PREFLIGHT_RUNNING at once) while the connection waits, never on a thread that
     * serves connections. */
    /* target: the `target` query parameter ([A-Za-z0-9_.-]{1,48}, checked by the API), NULL
     * when absent. */
    int (*on_post_preflight)(void *arg, const char *body, size_t len, const char *target,
                             char **json_out, int *status);
    /* GET /api/v1/forecast?days=N (N in 0..3650, parsed by the API) from snapshot s, the one
     * the API serves (valid during the call only); same contract. A 200 answer is kept for that
     * snapshot and N: the hook runs once per snapshot and N however many clients ask, and at
     * most API_FORECAST_RENDERS times at once. */
    int (*on_forecast)(void *arg, const snap_t *s, int days, char **json_out, int *status);
    /* GET /api/v1/history?since=&until=&step=, parameters checked by the API: since and until
     * (RFC 3339 or seconds since the epoch; default the last 24 hours up to now), step in
     * seconds, a multiple of 60 (default: the smallest giving at most API_HISTORY_POINTS
     * steps), at most API_HISTORY_MAX_POINTS steps. Same contract as on_post_preflight. */
    int (*on_history)(void *arg, int64_t since, int64_t until, int64_t step, char **json_out,
                      int *status);
} api_opts_t;

/* Binds the listen address and starts serving. Before the first api_publish() the snapshot
 * routes answer 503 "not_ready". Returns 0, or a negative UV_E* code with err filled
 * ("listen \"x\": ..."). */
int api_start(api_t **out, const api_opts_t *o, char err[256]);
/* The bound TCP port (useful with port 0). */
int api_port(const api_t *a);
/* Makes s the snapshot every later request reads; takes the caller's reference. Requests in
 * progress finish on the snapshot they started with. Thread-safe; never blocks on a client. */
void api_publish(api_t *a, snap_t *s);
/* Stops accepting, answers waiting pre-flights 503, waits for running ones, closes every
 * connection (idle keep-alive ones included), joins the threads and drops the current
 * snapshot. No hook runs after it returns. NULL is a no-op. */
void api_stop(api_t *a);

#endif
