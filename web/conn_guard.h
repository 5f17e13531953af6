/* conn_guard.h - the API's connection admission and slow-client eviction, on top of
 * libmicrohttpd 0.9.75 (whose one connection timeout cannot tell a keep-alive idle from a client
 * that trickles its request): per-IP and global limits, deadlines per request phase, and a few
 * slots reserved for /healthz. */
#ifndef FS_CONN_GUARD_H
#define FS_CONN_GUARD_H

#include <stdint.h>

#include <microhttpd.h>

/* Limits; 0 in a field means its default (API_DEFAULT_* in web/api.h). */
typedef struct conn_guard_limits_s {
    unsigned max_connections;    /* open connections before the oldest idle one is evicted */
    unsigned max_per_ip;         /* open connections of one client address, same rule */
    unsigned reserve;            /* /healthz-only slots past the limits when nothing is idle */
    unsigned header_timeout_ms;  /* accept (or end of the last response + idle) to request head */
    unsigned body_timeout_ms;    /* request head to the end of its body */
    unsigned send_timeout_ms;    /* answer queued to answer sent */
    unsigned idle_timeout_ms;    /* keep-alive idle (libmicrohttpd's own timeout) */
    unsigned reserve_timeout_ms; /* the whole life of a reserved connection */
} conn_guard_limits_t;

/* Connections and what became of them, over every guard of the process (the /metrics
 * figures): open now, and totals since start by reason. */
typedef enum {
    CONN_GUARD_EVICTED,        /* idle or slow, closed to make room for a new connection */
    CONN_GUARD_REFUSED,        /* over a limit with nothing to evict and no reserved slot */
    CONN_GUARD_HEADER_TIMEOUT, /* request head not complete in time (408) */
    CONN_GUARD_BODY_TIMEOUT,   /* request body not complete in time (408) */
    CONN_GUARD_SEND_TIMEOUT,   /* the client did not read the answer in time */
    CONN_GUARD_RESERVE_MISUSE, /* a reserved slot asked for another route than /healthz (503) */
    CONN_GUARD_REASON_COUNT
} conn_guard_reason_t;
extern const char *const conn_guard_reason_names[CONN_GUARD_REASON_COUNT];

typedef struct conn_guard_stats_s {
    uint64_t open;     /* connections open (reserved ones included) */
    uint64_t reserved; /* of which on a reserved slot */
    uint64_t accepted_total;
    uint64_t dropped_total[CONN_GUARD_REASON_COUNT];
} conn_guard_stats_t;

typedef struct conn_guard_s conn_guard_t;

/* Starts the watchdog thread that enforces the deadlines. Aborts on OOM (a control struct);
 * returns NULL only when the thread cannot start. */
conn_guard_t *conn_guard_new(const conn_guard_limits_t *l);
/* The limits in force (defaults filled). */
const conn_guard_limits_t *conn_guard_limits(const conn_guard_t *g);
/* The hard connection limit to give libmicrohttpd: room past the soft limits for the reserved
 * slots and for connections being evicted or refused. */
unsigned conn_guard_hard_limit(const conn_guard_t *g);
/* Stops the watchdog and frees g; call after MHD_stop_daemon (every connection closed). */
void conn_guard_free(conn_guard_t *g);

/* MHD_OPTION_NOTIFY_CONNECTION with cls = the guard: admits (or evicts room for, or refuses)
 * each new connection and forgets it when libmicrohttpd closes it (before its socket is
 * closed, which is what makes closing from another thread safe). */
void conn_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode toe);

/* The request phases, called from the access handler on the connection's own thread. Each
 * returns 0, or -1 when the connection was dropped meanwhile (timed out, evicted, refused): the
 * handler then answers MHD_NO and nothing else. */
int conn_guard_head_done(struct MHD_Connection *c); /* headers in, the body (if any) follows */
int conn_guard_handling(struct MHD_Connection *c);  /* body in, the route runs */
/* The route queued its answer (suspended: it waits for a worker, no deadline meanwhile). */
void conn_guard_answered(struct MHD_Connection *c, int suspended);
/* MHD_OPTION_NOTIFY_COMPLETED: the connection waits for its next request. */
void conn_guard_completed(struct MHD_Connection *c);
/* 1 when the connection holds a reserved slot: it may only ask for /healthz. */
int conn_guard_reserved(struct MHD_Connection *c);
/* Counts a reserved slot's refused request (the caller answers it). */
void conn_guard_count(conn_guard_reason_t why);

/* Writes a complete JSON error answer straight to the connection's socket and shuts it down,
 * for the cases libmicrohttpd cannot queue an answer in (mid-body, before the head): status,
 * reason phrase, message and code are literals (not escaped). The connection is marked
 * dropped; the caller then returns MHD_NO. */
void conn_guard_reply_raw(struct MHD_Connection *c, unsigned status, const char *msg,
                          const char *code);

void conn_guard_process_stats(conn_guard_stats_t *out);

#endif
