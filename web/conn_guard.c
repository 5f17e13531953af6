/* conn_guard.c - who may hold an API connection and for how long: limits checked as
 * libmicrohttpd admits each connection (the oldest idle one evicted to make room), a deadline per
 * request phase enforced by a watchdog thread, and /healthz-only reserved slots.
 *
 * libmicrohttpd 0.9.75 has one timeout per connection, reset by every byte: a client that sends
 * one header byte every few seconds holds its connection (and, with enough of them, every slot)
 * forever, and past MHD_OPTION_CONNECTION_LIMIT it stops accepting, so /healthz waits in the
 * listen backlog. Here each connection is tracked from MHD_OPTION_NOTIFY_CONNECTION and the
 * access handler reports its phases; the watchdog closes a connection whose phase outlived its
 * deadline by shutting its socket down. That is safe from another thread because libmicrohttpd
 * calls the CLOSED notification, which unlinks the connection under our mutex, before it closes
 * the descriptor: a descriptor in the list is always still the connection's. */
#include "web/conn_guard.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "probes/util.h"
#include "web/api.h"

/* The watchdog's period: deadlines are in seconds, checked ten times as often. */
#define GUARD_TICK_MS 100

const char *const conn_guard_reason_names[CONN_GUARD_REASON_COUNT] = {
    "evicted", "refused", "header_timeout", "body_timeout", "send_timeout", "reserve_misuse",
};
_Static_assert(FS_ARRAY_SIZE(conn_guard_reason_names) == CONN_GUARD_REASON_COUNT,
               "conn_guard_reason_names");

typedef enum {
    PH_HEAD,     /* waiting for (the rest of) a request head; evictable */
    PH_BODY,     /* reading the request body */
    PH_HANDLING, /* the route runs */
    PH_WAITING,  /* suspended: a pre-flight waits for its worker */
    PH_SENDING,  /* the answer is being sent */
} phase_t;

typedef struct gconn_s gconn_t;
struct gconn_s {
    gconn_t *prev, *next;
    conn_guard_t *g;
    int fd;
    unsigned char ip[16]; /* IPv4 as ::ffff:a.b.c.d */
    int reserved;         /* a /healthz-only slot: one deadline for its whole life */
    int dropped;          /* evicted, refused or timed out: its requests are not served */
    phase_t phase;
    int64_t since_ms;    /* start of the phase */
    int64_t deadline_ms; /* 0: none */
};

struct conn_guard_s {
    conn_guard_limits_t lim;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gconn_t *head;      /* every connection libmicrohttpd has not closed yet */
    unsigned nnormal;   /* of them, on a normal slot and not dropped */
    unsigned nreserved; /* on a reserved slot and not dropped */
    int stopping;
    pthread_t thread;
};

static _Atomic uint64_t g_open, g_reserved, g_accepted, g_dropped[CONN_GUARD_REASON_COUNT];

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static gconn_t *gconn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

static const char *reason_phrase(unsigned status)
{
    switch (status) {
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 429:
        return "Too Many Requests";
    default:
        return "Service Unavailable";
    }
}

/* A whole answer in one non-blocking send: it fits any fresh socket buffer. What does not go
 * out is lost with the connection, which is being dropped anyway. */
static void write_answer(int fd, unsigned status, const char *msg, const char *code)
{
    char body[512], out[1024];
    int bn = snprintf(body, sizeof(body), "{\"error\":\"%s\",\"code\":\"%s\"}", msg, code);
    if (bn < 0 || (size_t)bn >= sizeof(body))
        return;
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\n"
                     "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s"
                     "Connection: close\r\nContent-Length: %d\r\n\r\n%s",
                     status, reason_phrase(status),
                     status == 429 || status == 503 ? "Retry-After: 1\r\n" : "", bn, body);
    if (n > 0 && (size_t)n < sizeof(out))
        (void)send(fd, out, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* Under g->mu. Marks gc dropped (its slot is free from now on), optionally answers, and shuts
 * its socket down: libmicrohttpd then reads EOF, or fails its next send, and closes it. */
static void drop_locked(conn_guard_t *g, gconn_t *gc, int reason, unsigned status, const char *msg,
                        const char *code)
{
    if (gc->dropped)
        return;
    gc->dropped = 1;
    if (gc->reserved)
        g->nreserved--;
    else
        g->nnormal--;
    if (reason >= 0)
        atomic_fetch_add(&g_dropped[reason], 1);
    if (status != 0)
        write_answer(gc->fd, status, msg, code);
    shutdown(gc->fd, SHUT_RDWR);
}

/* Under g->mu: the connection waiting longest for a request head, of one address (ip) or of
 * any (NULL), other than except; NULL when every one is busy with a request. */
static gconn_t *oldest_idle(conn_guard_t *g, const unsigned char *ip, const gconn_t *except)
{
    gconn_t *best = NULL;
    for (gconn_t *x = g->head; x != NULL; x = x->next) {
        if (x == except || x->dropped || x->reserved || x->phase != PH_HEAD)
            continue;
        if (ip != NULL && memcmp(x->ip, ip, sizeof(x->ip)) != 0)
            continue;
        if (best == NULL || x->since_ms < best->since_ms)
            best = x;
    }
    return best;
}

static unsigned count_ip(conn_guard_t *g, const unsigned char *ip, int reserved)
{
    unsigned n = 0;
    for (gconn_t *x = g->head; x != NULL; x = x->next)
        n += !x->dropped && x->reserved == reserved && memcmp(x->ip, ip, sizeof(x->ip)) == 0;
    return n;
}

static void set_ip(gconn_t *gc, const struct sockaddr *sa)
{
    memset(gc->ip, 0, sizeof(gc->ip));
    if (sa == NULL)
        return;
    if (sa->sa_family == AF_INET) {
        gc->ip[10] = gc->ip[11] = 0xff;
        memcpy(gc->ip + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(gc->ip, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

/* Under g->mu: a new connection on a normal slot, a reserved one, or refused. */
static void admit_locked(conn_guard_t *g, gconn_t *gc, int64_t now)
{
    const conn_guard_limits_t *l = &g->lim;
    int over_ip = count_ip(g, gc->ip, 0) + 1 > l->max_per_ip;
    int over = over_ip || g->nnormal + 1 > l->max_connections;
    if (over) { /* make room: the same address's oldest idle one first, or anyone's */
        gconn_t *victim = oldest_idle(g, over_ip ? gc->ip : NULL, gc);
        if (victim != NULL) {
            drop_locked(g, victim, CONN_GUARD_EVICTED, 0, NULL, NULL);
            over = 0;
        }
    }
    gc->phase = PH_HEAD;
    gc->since_ms = now;
    if (!over) {
        g->nnormal++;
        gc->deadline_ms = now + l->header_timeout_ms;
    } else if (g->nreserved < l->reserve && count_ip(g, gc->ip, 1) == 0) {
        g->nreserved++;
        gc->reserved = 1;
        gc->deadline_ms = now + l->reserve_timeout_ms;
        atomic_fetch_add(&g_reserved, 1);
    } else {
        g->nnormal++; /* drop_locked gives it back */
        drop_locked(g, gc, CONN_GUARD_REFUSED, over_ip ? 429 : 503,
                    over_ip ? "too many connections from this address: retry later"
                            : "the API is at its connection limit: retry later",
                    "too_many_connections");
    }
}

void conn_guard_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                       enum MHD_ConnectionNotificationCode toe)
{
    conn_guard_t *g = cls;
    gconn_t *gc = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        gc = fs_xcalloc(1, sizeof(*gc));
        gc->g = g;
        const union MHD_ConnectionInfo *fi =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        const union MHD_ConnectionInfo *ai =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        gc->fd = fi != NULL ? fi->connect_fd : -1;
        set_ip(gc, ai != NULL ? ai->client_addr : NULL);
        *socket_context = gc;
        atomic_fetch_add(&g_open, 1);
        atomic_fetch_add(&g_accepted, 1);
        pthread_mutex_lock(&g->mu);
        gc->next = g->head;
        if (g->head != NULL)
            g->head->prev = gc;
        g->head = gc;
        admit_locked(g, gc, now_ms());
        pthread_mutex_unlock(&g->mu);
        return;
    }
    if (gc == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    if (!gc->dropped) {
        if (gc->reserved)
            g->nreserved--;
        else
            g->nnormal--;
    }
    if (gc->prev != NULL)
        gc->prev->next = gc->next;
    else
        g->head = gc->next;
    if (gc->next != NULL)
        gc->next->prev = gc->prev;
    pthread_mutex_unlock(&g->mu);
    atomic_fetch_sub(&g_open, 1);
    if (gc->reserved)
        atomic_fetch_sub(&g_reserved, 1);
    free(gc);
    *socket_context = NULL;
}

/* Moves c to phase ph with a deadline timeout_ms from now (0: none); a reserved slot keeps its
 * one deadline. -1 when c was dropped. */
static int enter(struct MHD_Connection *c, phase_t ph, unsigned timeout_ms)
{
    gconn_t *gc = gconn_of(c);
    if (gc == NULL)
        return 0;
    conn_guard_t *g = gc->g;
    int rc = 0;
    pthread_mutex_lock(&g->mu);
    if (gc->dropped) {
        rc = -1;
    } else {
        int64_t now = now_ms();
        gc->phase = ph;
        gc->since_ms = now;
        if (!gc->reserved)
            gc->deadline_ms = timeout_ms > 0 ? now + timeout_ms : 0;
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

int conn_guard_head_done(struct MHD_Connection *c)
{
    gconn_t *gc = gconn_of(c);
    return enter(c, PH_BODY, gc != NULL ? gc->g->lim.body_timeout_ms : 0);
}

int conn_guard_handling(struct MHD_Connection *c)
{
    return enter(c, PH_HANDLING, 0);
}

void conn_guard_answered(struct MHD_Connection *c, int suspended)
{
    gconn_t *gc = gconn_of(c);
    if (gc != NULL)
        (void)enter(c, suspended ? PH_WAITING : PH_SENDING,
                    suspended ? 0 : gc->g->lim.send_timeout_ms);
}

/* The next request's head may follow after the keep-alive idle time (libmicrohttpd closes a
 * connection that stays silent longer), and must then be complete within the header timeout. */
void conn_guard_completed(struct MHD_Connection *c)
{
    gconn_t *gc = gconn_of(c);
    if (gc != NULL)
        (void)enter(c, PH_HEAD, gc->g->lim.idle_timeout_ms + gc->g->lim.header_timeout_ms);
}

int conn_guard_reserved(struct MHD_Connection *c)
{
    gconn_t *gc = gconn_of(c);
    return gc != NULL && gc->reserved;
}

void conn_guard_count(conn_guard_reason_t why)
{
    atomic_fetch_add(&g_dropped[why], 1);
}

void conn_guard_reply_raw(struct MHD_Connection *c, unsigned status, const char *msg,
                          const char *code)
{
    gconn_t *gc = gconn_of(c);
    if (gc == NULL) {
        const union MHD_ConnectionInfo *fi =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (fi != NULL)
            write_answer(fi->connect_fd, status, msg, code);
        return;
    }
    pthread_mutex_lock(&gc->g->mu);
    drop_locked(gc->g, gc, -1, status, msg, code);
    pthread_mutex_unlock(&gc->g->mu);
}

/* ---- the watchdog ------------------------------------------------------------------------- */

static void *watchdog(void *arg)
{
    fs_thread_name("fs-api-guard");
    conn_guard_t *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stopping) {
        int64_t now = now_ms();
        for (gconn_t *x = g->head; x != NULL; x = x->next) {
            if (x->dropped || x->deadline_ms == 0 || now < x->deadline_ms)
                continue;
            /* A late head or body gets a 408 (libmicrohttpd writes nothing in those phases);
             * a late reader or a reserved slot past its life is simply closed. */
            if (x->phase == PH_HEAD)
                drop_locked(g, x, CONN_GUARD_HEADER_TIMEOUT, 408,
                            "request head not received in time", "request_timeout");
            else if (x->phase == PH_BODY)
                drop_locked(g, x, CONN_GUARD_BODY_TIMEOUT, 408, "request body not received in time",
                            "request_timeout");
            else
                drop_locked(g, x, CONN_GUARD_SEND_TIMEOUT, 0, NULL, NULL);
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += GUARD_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

static unsigned dflt(unsigned v, unsigned d)
{
    return v > 0 ? v : d;
}

conn_guard_t *conn_guard_new(const conn_guard_limits_t *l)
{
    conn_guard_t *g = fs_xcalloc(1, sizeof(*g));
    g->lim.max_connections = dflt(l->max_connections, API_DEFAULT_MAX_CONNECTIONS);
    g->lim.max_per_ip = dflt(l->max_per_ip, API_DEFAULT_MAX_PER_IP);
    g->lim.reserve = l->reserve; /* 0 is a choice: no reserved slot */
    g->lim.header_timeout_ms = dflt(l->header_timeout_ms, API_DEFAULT_HEADER_TIMEOUT_S * 1000);
    g->lim.body_timeout_ms = dflt(l->body_timeout_ms, API_DEFAULT_BODY_TIMEOUT_S * 1000);
    g->lim.send_timeout_ms = dflt(l->send_timeout_ms, API_DEFAULT_SEND_TIMEOUT_S * 1000);
    g->lim.idle_timeout_ms = dflt(l->idle_timeout_ms, API_DEFAULT_IDLE_S * 1000);
    g->lim.reserve_timeout_ms = dflt(l->reserve_timeout_ms, API_RESERVE_TIMEOUT_MS);
    pthread_mutex_init(&g->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&g->thread, NULL, watchdog, g) != 0) {
        pthread_cond_destroy(&g->cv);
        pthread_mutex_destroy(&g->mu);
        free(g);
        return NULL;
    }
    return g;
}

const conn_guard_limits_t *conn_guard_limits(const conn_guard_t *g)
{
    return &g->lim;
}

unsigned conn_guard_hard_limit(const conn_guard_t *g)
{
    unsigned slack = g->lim.max_connections / 2 > 16 ? g->lim.max_connections / 2 : 16;
    return g->lim.max_connections + g->lim.reserve + slack;
}

void conn_guard_free(conn_guard_t *g)
{
    if (g == NULL)
        return;
    pthread_mutex_lock(&g->mu);
    g->stopping = 1;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->thread, NULL);
    /* MHD_stop_daemon closed every connection, notifying each: the list is empty. */
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

void conn_guard_process_stats(conn_guard_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->open = atomic_load(&g_open);
    out->reserved = atomic_load(&g_reserved);
    out->accepted_total = atomic_load(&g_accepted);
    for (int i = 0; i < CONN_GUARD_REASON_COUNT; i++)
        out->dropped_total[i] = atomic_load(&g_dropped[i]);
}
