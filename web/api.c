/* api.c - HTTP routing, authentication and body handling over libmicrohttpd's own thread pool.
 * Handlers only read the current immutable snapshot (a reference taken under a mutex), so the
 * event loop never waits for a client and a slow client never waits for the loop. */
#include "web/api.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <uv.h>

#include "probes/util.h"
#include "web/dashboard.h"
#include "web/render.h"

#define API_DEFAULT_LISTEN "127.0.0.1:8787"
#define API_DEFAULT_THREADS 4
#define API_DEFAULT_IDLE_S 30
#define API_DEFAULT_STALE_S 30
#define API_CONN_LIMIT 1024
/* Per connection: request line and headers must fit. Room for a 64 KiB request line, so that
 * one past API_URI_MAX is still read and answered by us (JSON 414); requests past this get
 * libmicrohttpd's own 414/431. The pool's pages are only touched as far as they are used. */
#define API_CONN_MEMORY (128 * 1024)
/* A client that keeps streaming past the body cap is disconnected after this much. */
#define API_DISCARD_MAX (4 * API_BODY_MAX)
/* No rendered document may exceed this (/metrics of 10k groups is ~3 MiB). */
#define API_RENDER_MAX (64u * 1024 * 1024)
#define API_ERROR_MAX 4096

#define STR_(x) #x
#define FS_STR(x) STR_(x)

#define CT_JSON "application/json"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CT_HTML "text/html; charset=utf-8"

typedef struct req_s req_t;
typedef struct fc_memo_s fc_memo_t;

struct api_s {
    struct MHD_Daemon *mhd;
    int port;
    int stale_after_s;
    const _Atomic int64_t *heartbeat_ms;
    int stall_after_ms;
    char *token; /* NULL: mutating calls are disabled */
    size_t token_len;
    void *arg;
    void (*on_scan)(void *arg);
    int (*on_post_preflight)(void *arg, const char *body, size_t len, char **json_out, int *status);
    int (*on_forecast)(void *arg, const snap_t *s, int days, char **json_out, int *status);
    int (*on_history)(void *arg, int64_t since, int64_t until, int64_t step, char **json_out,
                      int *status);

    /* Pre-flights: queued requests (their connections suspended) and the threads running them.
     * admitted counts requests between admission and their connection's resumption. */
    pthread_mutex_t pf_mu;
    pthread_cond_t pf_cv;
    req_t *pf_head, *pf_tail;
    unsigned pf_admitted;
    int pf_stopping;
    pthread_t pf_threads[API_PREFLIGHT_RUNNING];
    int pf_nthreads;

    /* Forecast documents of the current snapshot, by days (fc_memo_t), and renders running. */
    pthread_mutex_t fc_mu;
    pthread_cond_t fc_cv;
    fc_memo_t *fc_memo;
    unsigned fc_rendering;

    pthread_mutex_t mu; /* guards cur */
    snap_t *cur;
    _Atomic int64_t published_ms; /* monotonic time of the last api_publish (or api_start) */
    char *causes_json;            /* the catalogue never changes: rendered once */
    size_t causes_len;
};

enum { M_GET = 1, M_POST = 2 };

typedef enum {
    R_INDEX,
    R_HEALTHZ,
    R_STATUS,
    R_ENDPOINTS,
    R_ENDPOINT,
    R_TARGETS,
    R_CAUSES,
    R_FORECAST,
    R_EVENTS,
    R_HISTORY,
    R_SCAN,
    R_PREFLIGHT,
    R_METRICS,
    R_COUNT
} route_t;

static const struct route_s {
    const char *path; /* R_ENDPOINT: a prefix followed by the id */
    unsigned methods;
    int mutating; /* needs the bearer token */
} routes[] = {
    [R_INDEX] = {"/", M_GET, 0},
    [R_HEALTHZ] = {"/healthz", M_GET, 0},
    [R_STATUS] = {"/api/v1/status", M_GET, 0},
    [R_ENDPOINTS] = {"/api/v1/endpoints", M_GET, 0},
    [R_ENDPOINT] = {"/api/v1/endpoints/", M_GET, 0},
    [R_TARGETS] = {"/api/v1/targets", M_GET, 0},
    [R_CAUSES] = {"/api/v1/causes", M_GET, 0},
    [R_FORECAST] = {"/api/v1/forecast", M_GET, 0},
    [R_EVENTS] = {"/api/v1/events", M_GET, 0},
    [R_HISTORY] = {"/api/v1/history", M_GET, 0},
    [R_SCAN] = {"/api/v1/scan", M_POST, 1},
    [R_PREFLIGHT] = {"/api/v1/preflight", M_POST, 1},
    [R_METRICS] = {"/metrics", M_GET, 0},
};
_Static_assert(FS_ARRAY_SIZE(routes) == R_COUNT, "route table out of sync");

enum { PF_NONE, PF_QUEUED, PF_DONE };

/* State of a request, from its request line (on_uri) to completion (on_completed). */
struct req_s {
    int started; /* the handler has seen it */
    int route;   /* route_t, -1: no such route */
    unsigned method;
    const char *uri_error; /* why the request target is refused (414), or NULL */
    int too_large;
    char *body; /* kept for R_PREFLIGHT only */
    size_t len, cap;
    size_t discarded;
    /* A pre-flight waiting for its worker (connection suspended), then its outcome. */
    int pf_state;
    struct MHD_Connection *conn;
    req_t *pf_next;
    int pf_rc, pf_status;
    char *pf_json;
};

/* The clock of the heartbeat (api_opts_t.heartbeat_ms) and of the snapshot age. */
static int64_t mono_ms(void)
{
    return (int64_t)(uv_hrtime() / 1000000);
}

/* ---- responses ------------------------------------------------------------------------- */

static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r,
                             const char *ctype, const char *hname, const char *hvalue)
{
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (hname != NULL)
        MHD_add_response_header(r, hname, hvalue);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_static(struct MHD_Connection *c, unsigned status, const char *body,
                                    const char *ctype)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    return queue(c, status, r, ctype, NULL, NULL);
}

/* {"error": msg, "code": code} with an optional extra header (Allow, WWW-Authenticate). */
static enum MHD_Result reply_error_h(struct MHD_Connection *c, unsigned status, const char *msg,
                                     const char *code, const char *hname, const char *hvalue)
{
    render_buf_t b;
    size_t len = 0;
    render_buf_init(&b, 256, API_ERROR_MAX);
    render_error(msg, code, &b);
    char *body = render_buf_steal(&b, &len);
    struct MHD_Response *r;
    if (body != NULL) {
        r = MHD_create_response_from_buffer_with_free_callback(len, body, free);
        if (r == NULL)
            free(body);
    } else {
        static const char fallback[] = "{\"error\":\"internal error\",\"code\":\"internal\"}";
        r = MHD_create_response_from_buffer(sizeof(fallback) - 1, (void *)fallback,
                                            MHD_RESPMEM_PERSISTENT);
    }
    return queue(c, status, r, CT_JSON, hname, hvalue);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *msg,
                                   const char *code)
{
    return reply_error_h(c, status, msg, code, NULL, NULL);
}

/* Sends what was rendered into b (freeing it), or a 500 when rendering failed. */
static enum MHD_Result reply_rendered(struct MHD_Connection *c, unsigned status, render_buf_t *b,
                                      int rc, const char *ctype)
{
    size_t len = 0;
    char *body = rc == 0 ? render_buf_steal(b, &len) : NULL;
    render_buf_free(b);
    if (body == NULL)
        return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "response too large to render",
                           "internal");
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, body, free);
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    return queue(c, status, r, ctype, NULL, NULL);
}

/* A hook's malloc'd JSON document and status. */
static enum MHD_Result reply_hook(struct MHD_Connection *c, int rc, char *json, int status)
{
    if (rc != 0 || json == NULL || status < 200 || status > 599) {
        free(json);
        return reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "request failed", "internal");
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(strlen(json), json, free);
    if (r == NULL) {
        free(json);
        return MHD_NO;
    }
    return queue(c, (unsigned)status, r, CT_JSON, NULL, NULL);
}

/* Error messages quote the offending value, cut short: it comes from the client. */
static enum MHD_Result reply_bad_param(struct MHD_Connection *c, const char *name,
                                       const char *expect, const char *value)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "%s: expected %s, got \"%.64s\"", name, expect, value);
    return reply_error(c, MHD_HTTP_BAD_REQUEST, msg, "bad_parameter");
}

/* ---- query parameters ------------------------------------------------------------------ */

/* Strict unsigned decimal: digits only, no sign, no blanks, <= max. 0 or -1. */
static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = (unsigned long)v;
    return 0;
}

static const char *query(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

/* libmicrohttpd's unescaping with one difference: "%00" stays literal, so a NUL can never cut
 * a path or a parameter short ("/api/v1/status%00x" is a 404, not /api/v1/status). */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    static const char hexd[] = "0123456789abcdef0123456789ABCDEF";
    char *w = s;
    const char *r = s;
    while (*r != '\0') {
        const char *h = r[0] == '%' && r[1] != '\0' ? strchr(hexd, r[1]) : NULL;
        const char *l = h != NULL && r[2] != '\0' ? strchr(hexd, r[2]) : NULL;
        if (l != NULL) {
            int v = ((int)(h - hexd) & 15) << 4 | ((int)(l - hexd) & 15);
            if (v != 0) {
                *w++ = (char)v;
                r += 3;
                continue;
            }
        }
        *w++ = *r++;
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* ---- routing and authentication -------------------------------------------------------- */

static int match_route(const char *url, const char **arg)
{
    size_t plen = strlen(routes[R_ENDPOINT].path);
    *arg = NULL;
    if (strncmp(url, routes[R_ENDPOINT].path, plen) == 0) {
        *arg = url + plen;
        return R_ENDPOINT;
    }
    for (int r = 0; r < R_COUNT; r++)
        if (r != R_ENDPOINT && strcmp(url, routes[r].path) == 0)
            return r;
    return -1;
}

static unsigned method_bit(const char *m)
{
    if (strcmp(m, MHD_HTTP_METHOD_GET) == 0 || strcmp(m, MHD_HTTP_METHOD_HEAD) == 0)
        return M_GET;
    if (strcmp(m, MHD_HTTP_METHOD_POST) == 0)
        return M_POST;
    return 0;
}

/* Checks the bearer token of a mutating call. Returns 1 when the call may proceed, else 0 with
 * the 403/401 answer queued in *ret. */
static int authorized(api_t *a, struct MHD_Connection *c, enum MHD_Result *ret)
{
    if (a->token == NULL) {
        *ret = reply_error(c, MHD_HTTP_FORBIDDEN,
                           "mutating calls are disabled: no API token is configured", "forbidden");
        return 0;
    }
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *tok = NULL;
    if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0) {
        tok = h + 7;
        while (*tok == ' ')
            tok++;
    }
    /* The length is not secret; the bytes are compared in constant time. */
    if (tok != NULL && strlen(tok) == a->token_len &&
        CRYPTO_memcmp(tok, a->token, a->token_len) == 0)
        return 1;
    *ret = reply_error_h(
        c, MHD_HTTP_UNAUTHORIZED, h == NULL ? "missing bearer token" : "invalid bearer token",
        "unauthorized", MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"fleetscan\"");
    return 0;
}

/* ---- GET routes ------------------------------------------------------------------------ */

static snap_t *current(api_t *a)
{
    pthread_mutex_lock(&a->mu);
    snap_t *s = a->cur != NULL ? snap_ref(a->cur) : NULL;
    pthread_mutex_unlock(&a->mu);
    return s;
}

/* GET / — the dashboard page (web/dashboard.c), with a policy that runs only its own code. */
static enum MHD_Result answer_dashboard(struct MHD_Connection *c)
{
    size_t len;
    const char *page = dashboard_page(&len);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)page, MHD_RESPMEM_PERSISTENT);
    return queue(c, MHD_HTTP_OK, r, CT_HTML, "Content-Security-Policy", dashboard_csp());
}

/* 200 while the loop ticks and publishes; 503 "stalled" when its heartbeat is older than
 * stall_after_ms (a loop busy in one callback, however it answers otherwise), 503 "stale" when
 * it ticks but no snapshot was published for stale_after_s. */
static enum MHD_Result answer_healthz(api_t *a, struct MHD_Connection *c)
{
    int64_t now = mono_ms();
    int64_t tick_ms = a->heartbeat_ms != NULL ? now - atomic_load(a->heartbeat_ms) : 0;
    int64_t age_ms = now - atomic_load(&a->published_ms);
    char body[256];
    if (tick_ms > a->stall_after_ms) {
        snprintf(body, sizeof(body),
                 "{\"status\":\"stalled\",\"last_tick_ms_ago\":%lld,\"error\":\"the event loop "
                 "has not ticked for %lld ms\",\"code\":\"stalled\"}",
                 (long long)tick_ms, (long long)tick_ms);
    } else if (age_ms > (int64_t)a->stale_after_s * 1000) {
        snprintf(body, sizeof(body),
                 "{\"status\":\"stale\",\"error\":\"no snapshot published for %lld s (event "
                 "loop stalled)\",\"code\":\"stale\"}",
                 (long long)(age_ms / 1000));
    } else {
        return reply_static(c, MHD_HTTP_OK, "{\"status\":\"ok\"}", CT_JSON);
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    return queue(c, MHD_HTTP_SERVICE_UNAVAILABLE, r, CT_JSON, NULL, NULL);
}

static enum MHD_Result answer_endpoints(const snap_t *s, struct MHD_Connection *c)
{
    render_query_t q = {.state = -1, .cause = -1, .warning = -1, .group = -1, .limit = 100};
    unsigned long v;
    const char *p;

    if ((p = query(c, "state")) != NULL) {
        for (q.state = 0; q.state < SNAP_STATE_COUNT; q.state++)
            if (strcmp(p, snap_state_name(q.state)) == 0)
                break;
        if (q.state == SNAP_STATE_COUNT)
            return reply_bad_param(c, "state", "pending, online or offline", p);
    }
    if ((p = query(c, "cause")) != NULL && (q.cause = fs_cause_from_id(p)) <= (int)FS_CAUSE_NONE)
        return reply_bad_param(c, "cause", "a cause id of /api/v1/causes", p);
    if ((p = query(c, "warning")) != NULL && (q.warning = fs_warning_from_id(p)) < 0)
        return reply_bad_param(c, "warning", "a warning id of /api/v1/causes", p);
    if ((p = query(c, "group")) != NULL && (q.group = render_find_group(s, p)) < 0)
        return reply_bad_param(c, "group", "a group name of /api/v1/status", p);
    if ((p = query(c, "limit")) != NULL) {
        if (parse_uint(p, 1000, &v) != 0)
            return reply_bad_param(c, "limit", "an integer 0..1000", p);
        q.limit = v;
    }
    if ((p = query(c, "offset")) != NULL) {
        if (parse_uint(p, UINT32_MAX, &v) != 0)
            return reply_bad_param(c, "offset", "an integer 0..4294967295", p);
        q.offset = v;
    }
    render_buf_t b;
    render_buf_init(&b, 128 + q.limit * 320, API_RENDER_MAX);
    int rc = render_endpoints(s, &q, &b);
    return reply_rendered(c, MHD_HTTP_OK, &b, rc, CT_JSON);
}

static enum MHD_Result answer_events(const snap_t *s, struct MHD_Connection *c)
{
    uint64_t since_seq = 0;
    int64_t since_at = INT64_MIN;
    const char *p = query(c, "since");
    unsigned long v;
    if (p != NULL) {
        if (parse_uint(p, ULONG_MAX, &v) == 0)
            since_seq = v;
        else if (fs_parse_rfc3339(p, &since_at) != 0)
            return reply_bad_param(c, "since", "a sequence number or an RFC 3339 time", p);
    }
    render_buf_t b;
    render_buf_init(&b, 256 + s->nevents * 192, API_RENDER_MAX);
    int rc = render_events(s, since_seq, since_at, &b);
    return reply_rendered(c, MHD_HTTP_OK, &b, rc, CT_JSON);
}

static void unref_response_snap(void *cls)
{
    snap_unref(cls);
}

/* A body that depends only on the snapshot is rendered by the first reader and kept in the
 * snapshot (compare-and-swap: concurrent first readers may both render, one result is kept);
 * every response then serves those bytes, holding a reference to the snapshot. */
static enum MHD_Result reply_cached(struct MHD_Connection *c, snap_t *s, _Atomic(char *) *slot,
                                    int (*render)(const snap_t *, render_buf_t *), size_t hint,
                                    const char *ctype)
{
    char *body = atomic_load(slot);
    if (body == NULL) {
        render_buf_t b;
        render_buf_init(&b, hint, API_RENDER_MAX);
        int rc = render(s, &b);
        if (rc < 0 || b.failed || b.data == NULL)
            return reply_rendered(c, MHD_HTTP_OK, &b, rc < 0 ? rc : UV_ENOMEM, ctype);
        char *mine = fs_xmalloc(b.len + 1);
        memcpy(mine, b.data, b.len);
        mine[b.len] = '\0';
        render_buf_free(&b);
        char *expected = NULL;
        if (!atomic_compare_exchange_strong(slot, &expected, mine))
            free(mine);
        body = atomic_load(slot);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback_cls(
        strlen(body), body, unref_response_snap, snap_ref(s));
    if (r == NULL)
        snap_unref(s);
    return queue(c, MHD_HTTP_OK, r, ctype, NULL, NULL);
}

static enum MHD_Result answer_snapshot(api_t *a, struct MHD_Connection *c, route_t route,
                                       const char *arg)
{
    snap_t *s = current(a);
    render_buf_t b;
    enum MHD_Result ret;
    int rc;

    if (s == NULL)
        return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "no snapshot published yet",
                           "not_ready");
    switch (route) {
    case R_STATUS:
        ret = reply_cached(c, s, &s->status_body, render_status, 1024 + s->ngroups * 256, CT_JSON);
        break;
    case R_ENDPOINTS:
        ret = answer_endpoints(s, c);
        break;
    case R_ENDPOINT: {
        const snap_endpoint_t *e = render_find_endpoint(s, arg);
        if (e == NULL) {
            char msg[160];
            snprintf(msg, sizeof(msg), "no endpoint \"%.64s\"", arg);
            ret = reply_error(c, MHD_HTTP_NOT_FOUND, msg, "not_found");
            break;
        }
        render_buf_init(&b, 4096, API_RENDER_MAX);
        rc = render_endpoint(s, e, 1, &b);
        ret = reply_rendered(c, MHD_HTTP_OK, &b, rc, CT_JSON);
        break;
    }
    case R_TARGETS:
        if (s->targets_json == NULL) {
            ret = reply_static(c, MHD_HTTP_OK, "{\"targets\":[]}", CT_JSON);
        } else {
            /* Served straight from the snapshot: the response holds a reference. */
            struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback_cls(
                strlen(s->targets_json), s->targets_json, unref_response_snap, snap_ref(s));
            if (r == NULL)
                snap_unref(s);
            ret = queue(c, MHD_HTTP_OK, r, CT_JSON, NULL, NULL);
        }
        break;
    case R_EVENTS:
        ret = answer_events(s, c);
        break;
    case R_METRICS:
        ret = reply_cached(c, s, &s->metrics_body, render_metrics, 16384 + s->ngroups * 512,
                           CT_METRICS);
        break;
    default:
        ret = reply_error(c, MHD_HTTP_NOT_FOUND, "no such route", "not_found");
    }
    snap_unref(s);
    return ret;
}

/* ---- GET /api/v1/forecast: one render per snapshot and days ------------------------------ */

/* A rendered forecast, shared by the memo and the responses sending it. */
typedef struct fc_body_s {
    atomic_int refs;
    size_t len;
    char *data;
} fc_body_t;

struct fc_memo_s {
    snap_t *snap; /* referenced */
    int days;
    fc_body_t *body; /* NULL while its render runs */
    fc_memo_t *next;
};

static fc_body_t *fc_body_ref(fc_body_t *b)
{
    atomic_fetch_add(&b->refs, 1);
    return b;
}

static void fc_body_unref(void *cls)
{
    fc_body_t *b = cls;
    if (b != NULL && atomic_fetch_sub(&b->refs, 1) == 1) {
        free(b->data);
        free(b);
    }
}

static void fc_memo_free(fc_memo_t *m)
{
    while (m != NULL) {
        fc_memo_t *next = m->next;
        snap_unref(m->snap);
        fc_body_unref(m->body);
        free(m);
        m = next;
    }
}

/* Unlinks (onto *dead) the finished entries of other snapshots than s, and the oldest finished
 * ones past API_FORECAST_KEPT. Caller holds fc_mu. */
static void fc_memo_prune(api_t *a, const snap_t *s, fc_memo_t **dead)
{
    size_t kept = 0;
    for (fc_memo_t **pp = &a->fc_memo; *pp != NULL;) {
        fc_memo_t *m = *pp;
        if (m->body != NULL && (m->snap != s || kept >= API_FORECAST_KEPT)) {
            *pp = m->next;
            m->next = *dead;
            *dead = m;
            continue;
        }
        kept++;
        pp = &m->next;
    }
}

static enum MHD_Result reply_fc_body(struct MHD_Connection *c, fc_body_t *b)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback_cls(b->len, b->data, fc_body_unref, b);
    if (r == NULL)
        fc_body_unref(b);
    return queue(c, MHD_HTTP_OK, r, CT_JSON, NULL, NULL);
}

/* With 65,535 groups a forecast is megabytes: clients asking for the same snapshot and days
 * share one render (later ones wait for the first), and at most API_FORECAST_RENDERS run at
 * once, so eight concurrent requests cost one document, not eight transient copies. */
static enum MHD_Result answer_forecast(api_t *a, struct MHD_Connection *c, int days)
{
    snap_t *s = current(a);
    fc_memo_t *m, *dead = NULL;
    fc_body_t *b = NULL;
    if (s == NULL)
        return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "no snapshot published yet",
                           "not_ready");
    pthread_mutex_lock(&a->fc_mu);
    for (;;) {
        fc_memo_prune(a, s, &dead);
        for (m = a->fc_memo; m != NULL && (m->snap != s || m->days != days); m = m->next)
            ;
        if (m != NULL && m->body != NULL) {
            b = fc_body_ref(m->body);
            break;
        }
        if (m == NULL && a->fc_rendering < API_FORECAST_RENDERS)
            break;
        pthread_cond_wait(&a->fc_cv, &a->fc_mu); /* its render, or a render slot */
    }
    if (b == NULL) {
        m = fs_xcalloc(1, sizeof(*m));
        m->snap = snap_ref(s);
        m->days = days;
        m->next = a->fc_memo;
        a->fc_memo = m;
        a->fc_rendering++;
    }
    pthread_mutex_unlock(&a->fc_mu);
    fc_memo_free(dead);
    if (b != NULL) {
        snap_unref(s);
        return reply_fc_body(c, b);
    }

    char *json = NULL;
    int status = 0;
    int rc = a->on_forecast(a->arg, s, days, &json, &status);
    if (rc == 0 && json != NULL && status == MHD_HTTP_OK) {
        b = fs_xcalloc(1, sizeof(*b));
        atomic_init(&b->refs, 2); /* the memo's and this response's */
        b->len = strlen(json);
        b->data = json;
    }
    pthread_mutex_lock(&a->fc_mu);
    a->fc_rendering--;
    if (b != NULL) {
        m->body = b;
    } else { /* not kept: a waiter renders it itself */
        fc_memo_t **pp = &a->fc_memo;
        while (*pp != m)
            pp = &(*pp)->next;
        *pp = m->next;
        m->next = NULL;
    }
    pthread_cond_broadcast(&a->fc_cv);
    pthread_mutex_unlock(&a->fc_mu);
    snap_unref(s);
    if (b == NULL) {
        fc_memo_free(m);
        return reply_hook(c, rc, json, status);
    }
    return reply_fc_body(c, b);
}

/* A time parameter: RFC 3339 or seconds since the epoch. 0, or -1 when malformed. */
static int parse_time(const char *p, int64_t *out)
{
    unsigned long v;
    if (parse_uint(p, INT32_MAX * 100UL, &v) == 0) {
        *out = (int64_t)v;
        return 0;
    }
    return fs_parse_rfc3339(p, out);
}

/* GET /api/v1/history: the per-minute samples of the state database (daemon/store.h). */
static enum MHD_Result answer_history(api_t *a, struct MHD_Connection *c)
{
    int64_t until = fs_wall_ms() / 1000, since = until - 86400, step = 0;
    unsigned long v;
    const char *p;
    if ((p = query(c, "since")) != NULL && parse_time(p, &since) != 0)
        return reply_bad_param(c, "since", "an RFC 3339 time or seconds since the epoch", p);
    if ((p = query(c, "until")) != NULL && parse_time(p, &until) != 0)
        return reply_bad_param(c, "until", "an RFC 3339 time or seconds since the epoch", p);
    if (until <= since)
        return reply_bad_param(c, "until", "a time after since", p ? p : "");
    if ((p = query(c, "step")) != NULL) {
        if (parse_uint(p, 86400L * 366, &v) != 0 || v == 0 || v % 60 != 0)
            return reply_bad_param(c, "step", "seconds, a multiple of 60", p);
        step = (int64_t)v;
        if ((until - since) / step > API_HISTORY_MAX_POINTS)
            return reply_bad_param(c, "step", "a step giving at most 20000 points", p);
    } else {
        int64_t per = (until - since + API_HISTORY_POINTS - 1) / API_HISTORY_POINTS;
        step = per <= 60 ? 60 : (per + 59) / 60 * 60;
    }
    if (a->on_history == NULL)
        return reply_error(c, MHD_HTTP_NOT_IMPLEMENTED, "history is not available",
                           "not_implemented");
    char *json = NULL;
    int status = 0;
    int rc = a->on_history(a->arg, since, until, step, &json, &status);
    return reply_hook(c, rc, json, status);
}

static enum MHD_Result answer_get(api_t *a, struct MHD_Connection *c, route_t route,
                                  const char *arg)
{
    switch (route) {
    case R_INDEX:
        return answer_dashboard(c);
    case R_HEALTHZ:
        return answer_healthz(a, c);
    case R_CAUSES: {
        struct MHD_Response *r =
            MHD_create_response_from_buffer(a->causes_len, a->causes_json, MHD_RESPMEM_PERSISTENT);
        return queue(c, MHD_HTTP_OK, r, CT_JSON, NULL, NULL);
    }
    case R_FORECAST: {
        unsigned long days = 0;
        const char *p = query(c, "days");
        if (p == NULL || parse_uint(p, 3650, &days) != 0)
            return reply_bad_param(c, "days", "an integer 0..3650", p ? p : "");
        if (a->on_forecast == NULL)
            return reply_error(c, MHD_HTTP_NOT_IMPLEMENTED, "forecast is not available",
                               "not_implemented");
        return answer_forecast(a, c, (int)days);
    }
    case R_HISTORY:
        return answer_history(a, c);
    default:
        return answer_snapshot(a, c, route, arg);
    }
}

/* ---- POST /api/v1/preflight: off the connection threads -------------------------------- */

/* A pre-flight fetches CRLs for up to the groups' retrieval budgets (20 s by default, longer
 * against a CDP that stalls): run on a connection thread, four of them would leave no thread
 * for /healthz. So the connection is suspended, the request queued for one of
 * API_PREFLIGHT_RUNNING workers, and resumed with the verdict; MHD then calls on_request again
 * and answer_post sends it. Admission is bounded: past API_PREFLIGHT_RUNNING running and
 * API_PREFLIGHT_WAITING waiting, 429. */

/* Hands the outcome to the suspended connection and lets MHD send it. rq may be freed as soon
 * as the connection is resumed; admitted drops only after, so api_stop never stops MHD with a
 * connection still suspended. */
static void pf_finish(api_t *a, req_t *rq, int rc, char *json, int status)
{
    struct MHD_Connection *c = rq->conn;
    pthread_mutex_lock(&a->pf_mu);
    rq->pf_rc = rc;
    rq->pf_json = json;
    rq->pf_status = status;
    rq->pf_state = PF_DONE;
    pthread_mutex_unlock(&a->pf_mu);
    MHD_resume_connection(c);
    pthread_mutex_lock(&a->pf_mu);
    a->pf_admitted--;
    pthread_cond_broadcast(&a->pf_cv);
    pthread_mutex_unlock(&a->pf_mu);
}

static char *pf_unavailable(void)
{
    return fs_xstrdup("{\"error\":\"the API is stopping\",\"code\":\"unavailable\"}");
}

static void *pf_worker(void *arg)
{
    api_t *a = arg;
    pthread_mutex_lock(&a->pf_mu);
    for (;;) {
        while (a->pf_head == NULL && !a->pf_stopping)
            pthread_cond_wait(&a->pf_cv, &a->pf_mu);
        req_t *rq = a->pf_head;
        if (rq == NULL)
            break; /* stopping */
        a->pf_head = rq->pf_next;
        if (a->pf_head == NULL)
            a->pf_tail = NULL;
        pthread_mutex_unlock(&a->pf_mu);
        char *json = NULL;
        int status = 0;
        int rc = a->on_post_preflight(a->arg, rq->body, rq->len, &json, &status);
        pf_finish(a, rq, rc, json, status);
        pthread_mutex_lock(&a->pf_mu);
    }
    pthread_mutex_unlock(&a->pf_mu);
    return NULL;
}

static enum MHD_Result submit_preflight(api_t *a, struct MHD_Connection *c, req_t *rq)
{
    pthread_mutex_lock(&a->pf_mu);
    int stopping = a->pf_stopping;
    int full = a->pf_admitted >= API_PREFLIGHT_RUNNING + API_PREFLIGHT_WAITING;
    if (!stopping && !full)
        a->pf_admitted++;
    pthread_mutex_unlock(&a->pf_mu);
    if (stopping)
        return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the API is stopping", "unavailable");
    if (full) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "too many pre-flights in progress (%d run at once, %d more may wait): retry "
                 "later",
                 API_PREFLIGHT_RUNNING, API_PREFLIGHT_WAITING);
        return reply_error_h(c, MHD_HTTP_TOO_MANY_REQUESTS, msg, "too_many_requests",
                             MHD_HTTP_HEADER_RETRY_AFTER, "10");
    }
    rq->conn = c;
    rq->pf_state = PF_QUEUED;
    /* Suspended before a worker can see it: a resume must never precede the suspend. */
    MHD_suspend_connection(c);
    pthread_mutex_lock(&a->pf_mu);
    stopping = a->pf_stopping;
    if (!stopping) {
        if (a->pf_tail != NULL)
            a->pf_tail->pf_next = rq;
        else
            a->pf_head = rq;
        a->pf_tail = rq;
        pthread_cond_signal(&a->pf_cv);
    }
    pthread_mutex_unlock(&a->pf_mu);
    if (stopping) /* api_stop drained the queue meanwhile */
        pf_finish(a, rq, 0, pf_unavailable(), MHD_HTTP_SERVICE_UNAVAILABLE);
    return MHD_YES;
}

/* ---- POST routes ----------------------------------------------------------------------- */

static enum MHD_Result answer_post(api_t *a, struct MHD_Connection *c, req_t *rq)
{
    switch (rq->route) {
    case R_SCAN:
        if (a->on_scan == NULL)
            return reply_error(c, MHD_HTTP_NOT_IMPLEMENTED, "scan is not available",
                               "not_implemented");
        a->on_scan(a->arg);
        return reply_static(c, MHD_HTTP_ACCEPTED, "{\"status\":\"scan scheduled\"}", CT_JSON);
    case R_PREFLIGHT: {
        if (a->on_post_preflight == NULL)
            return reply_error(c, MHD_HTTP_NOT_IMPLEMENTED, "preflight is not available",
                               "not_implemented");
        if (rq->pf_state == PF_DONE) { /* resumed by its worker */
            pthread_mutex_lock(&a->pf_mu);
            char *json = rq->pf_json;
            int rc = rq->pf_rc, status = rq->pf_status;
            rq->pf_json = NULL;
            rq->pf_state = PF_NONE;
            pthread_mutex_unlock(&a->pf_mu);
            return reply_hook(c, rc, json, status);
        }
        if (rq->len == 0)
            return reply_error(c, MHD_HTTP_BAD_REQUEST, "body: expected a PEM certificate chain",
                               "bad_parameter");
        return submit_preflight(a, c, rq);
    }
    default:
        return reply_error(c, MHD_HTTP_NOT_FOUND, "no such route", "not_found");
    }
}

/* Appends one chunk of the body: kept for preflight, counted for the rest. */
static int take_body(req_t *rq, const char *data, size_t n)
{
    if (!rq->too_large && n <= API_BODY_MAX - rq->len) {
        if (rq->route != R_PREFLIGHT) {
            rq->len += n;
            return 0;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t cap = rq->cap ? rq->cap : 16384;
            while (cap < rq->len + n + 1)
                cap *= 2;
            char *p = realloc(rq->body, cap); /* peer-sized: fail cleanly, never abort */
            if (p == NULL)
                return -1;
            rq->body = p;
            rq->cap = cap;
        }
        memcpy(rq->body + rq->len, data, n);
        rq->len += n;
        rq->body[rq->len] = '\0';
        return 0;
    }
    rq->too_large = 1;
    rq->discarded += n;
    return rq->discarded > API_DISCARD_MAX ? -1 : 0;
}

/* Route, method and token of a request. Returns 1 when it may proceed, else 0 with the
 * 404/405/403/401 answer queued in *ret. */
static int admitted(api_t *a, struct MHD_Connection *c, const req_t *rq, enum MHD_Result *ret)
{
    if (rq->route < 0) {
        *ret = reply_error(c, MHD_HTTP_NOT_FOUND, "no such route", "not_found");
        return 0;
    }
    if ((routes[rq->route].methods & rq->method) == 0) {
        *ret = reply_error_h(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
                             "method_not_allowed", MHD_HTTP_HEADER_ALLOW,
                             routes[rq->route].methods == M_POST ? "POST" : "GET, HEAD");
        return 0;
    }
    return !routes[rq->route].mutating || authorized(a, c, ret);
}

/* Runs on the raw request target, before libmicrohttpd splits the query into its connection
 * memory pool: thousands of parameters exhaust the pool, and libmicrohttpd 0.9.75 then neither
 * answers nor closes (the 431 it queues is overwritten) until the idle timeout. A target past
 * API_URI_MAX or with more than API_QUERY_ARGS_MAX parameters gets its query cut here (the
 * byte after '?' becomes NUL, so no parameter is parsed) and a JSON 414 from on_request.
 * The returned request state becomes *req_cls. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    req_t *rq = calloc(1, sizeof(*rq));
    if (rq == NULL)
        return NULL; /* on_request allocates it */
    size_t len = strlen(uri), args = 0;
    char *q = strchr(uri, '?');
    if (q != NULL && q[1] != '\0')
        for (const char *p = q; p != NULL; p = strchr(p + 1, '&'))
            args++;
    if (len > API_URI_MAX)
        rq->uri_error = "request target longer than " FS_STR(API_URI_MAX) " bytes";
    else if (args > API_QUERY_ARGS_MAX)
        rq->uri_error = "more than " FS_STR(API_QUERY_ARGS_MAX) " query parameters";
    if (rq->uri_error != NULL && q != NULL)
        q[1] = '\0'; /* the target lives in the connection's read buffer, writable */
    return rq;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    api_t *a = cls;
    req_t *rq = *req_cls;
    enum MHD_Result ret;
    const char *arg;

    if (rq == NULL || !rq->started) { /* first call: headers in, the body (if any) follows */
        if (rq == NULL && (rq = calloc(1, sizeof(*rq))) == NULL)
            return MHD_NO;
        *req_cls = rq;
        rq->started = 1;
        if (rq->uri_error != NULL)
            return reply_error(c, MHD_HTTP_URI_TOO_LONG, rq->uri_error, "uri_too_long");
        rq->route = match_route(url, &arg);
        rq->method = method_bit(method);
        /* GET and HEAD are answered on the last call: an answer queued on the first one makes
         * libmicrohttpd close the keep-alive connection. Anything else may carry a body, so it
         * is judged now and a refused body is never read. */
        if (rq->method == M_GET)
            return MHD_YES;
        if (!admitted(a, c, rq, &ret))
            return ret;
        unsigned long clen;
        const char *cl =
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl != NULL && (parse_uint(cl, ULONG_MAX, &clen) != 0 || clen > API_BODY_MAX))
            return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body exceeds 1 MiB",
                               "body_too_large");
        return MHD_YES;
    }
    if (*upload_size > 0) {
        int rc = take_body(rq, upload, *upload_size);
        *upload_size = 0;
        return rc == 0 ? MHD_YES : MHD_NO;
    }
    if (rq->too_large)
        return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body exceeds 1 MiB",
                           "body_too_large");
    if (rq->method != M_GET)
        return answer_post(a, c, rq);
    if (!admitted(a, c, rq, &ret))
        return ret;
    match_route(url, &arg);
    return answer_get(a, c, (route_t)rq->route, arg);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    req_t *rq = *req_cls;
    if (rq != NULL) {
        free(rq->body);
        free(rq->pf_json);
        free(rq);
        *req_cls = NULL;
    }
}

/* ---- lifecycle ------------------------------------------------------------------------- */

/* "host:port" or "[v6]:port" into a bound, listening, non-blocking socket. */
static int open_listener(const char *listen_s, int *fd_out, int *port_out, char err[256])
{
    char host[256];
    const char *port_s;
    struct addrinfo hints, *ai = NULL;
    unsigned long port;
    int fd = -1, rc, on = 1;

    if (listen_s[0] == '[') {
        const char *close = strchr(listen_s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - listen_s) > sizeof(host)) {
            snprintf(err, 256, "listen \"%.64s\": expected [ADDRESS]:PORT", listen_s);
            return UV_EINVAL;
        }
        memcpy(host, listen_s + 1, (size_t)(close - listen_s - 1));
        host[close - listen_s - 1] = '\0';
        port_s = close + 2;
    } else {
        const char *colon = strrchr(listen_s, ':');
        if (colon == NULL || colon == listen_s || memchr(listen_s, ':', colon - listen_s) ||
            (size_t)(colon - listen_s) >= sizeof(host)) {
            snprintf(err, 256, "listen \"%.64s\": expected HOST:PORT (IPv6 as [ADDRESS]:PORT)",
                     listen_s);
            return UV_EINVAL;
        }
        memcpy(host, listen_s, (size_t)(colon - listen_s));
        host[colon - listen_s] = '\0';
        port_s = colon + 1;
    }
    if (parse_uint(port_s, 65535, &port) != 0) {
        snprintf(err, 256, "listen \"%.64s\": port must be 0..65535", listen_s);
        return UV_EINVAL;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if ((rc = getaddrinfo(host, port_s, &hints, &ai)) != 0) {
        snprintf(err, 256, "listen \"%.64s\": %s", listen_s, gai_strerror(rc));
        return UV_EINVAL;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        rc = -errno;
        snprintf(err, 256, "listen \"%.64s\": %s", listen_s, strerror(errno));
        goto out;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        rc = -errno;
        snprintf(err, 256, "listen \"%.64s\": getsockname: %s", listen_s, strerror(errno));
        goto out;
    }
    *port_out = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    fd = -1;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return rc;
}

int api_start(api_t **out, const api_opts_t *o, char err[256])
{
    api_t *a = fs_xcalloc(1, sizeof(*a));
    render_buf_t b;
    int fd = -1, rc;

    err[0] = '\0';
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->pf_mu, NULL);
    pthread_cond_init(&a->pf_cv, NULL);
    pthread_mutex_init(&a->fc_mu, NULL);
    pthread_cond_init(&a->fc_cv, NULL);
    a->stale_after_s = o->stale_after_s > 0 ? o->stale_after_s : API_DEFAULT_STALE_S;
    a->heartbeat_ms = o->heartbeat_ms;
    a->stall_after_ms = o->stall_after_ms > 0 ? o->stall_after_ms : API_DEFAULT_STALL_MS;
    if (o->token != NULL && o->token[0] != '\0') {
        a->token = fs_xstrdup(o->token);
        a->token_len = strlen(a->token);
    }
    a->arg = o->arg;
    a->on_scan = o->on_scan;
    a->on_post_preflight = o->on_post_preflight;
    a->on_forecast = o->on_forecast;
    a->on_history = o->on_history;
    atomic_init(&a->published_ms, mono_ms());

    render_buf_init(&b, 16384, API_RENDER_MAX);
    render_causes(&b);
    a->causes_json = render_buf_steal(&b, &a->causes_len);
    if (a->causes_json == NULL) {
        snprintf(err, 256, "api: out of memory");
        rc = UV_ENOMEM;
        goto fail;
    }

    int lfd = -1;
    rc = open_listener(o->listen != NULL ? o->listen : API_DEFAULT_LISTEN, &lfd, &a->port, err);
    if (rc != 0)
        goto fail;
    /* MHD gets a duplicate: api_stop takes it back with MHD_quiesce_daemon and closes it, and
     * a failed start can never make us close a descriptor twice. */
    fd = dup(lfd);
    close(lfd);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, 256, "api: dup: %s", strerror(errno));
        goto fail;
    }
    unsigned threads = o->threads > 0 ? (unsigned)o->threads : API_DEFAULT_THREADS;
    unsigned idle = o->idle_timeout_s > 0 ? (unsigned)o->idle_timeout_s : API_DEFAULT_IDLE_S;
    a->mhd = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL,
        on_request, a, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_THREAD_POOL_SIZE,
        threads, MHD_OPTION_CONNECTION_TIMEOUT, idle, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)API_CONN_LIMIT, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)API_CONN_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, a, MHD_OPTION_URI_LOG_CALLBACK, on_uri, a,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, a, MHD_OPTION_END);
    if (a->mhd == NULL) {
        snprintf(err, 256, "listen \"%.64s\": libmicrohttpd failed to start",
                 o->listen != NULL ? o->listen : API_DEFAULT_LISTEN);
        rc = UV_EIO;
        goto fail; /* fd may or may not have been closed by MHD: leak it rather than guess */
    }
    for (int i = 0; a->on_post_preflight != NULL && i < API_PREFLIGHT_RUNNING; i++) {
        if (pthread_create(&a->pf_threads[i], NULL, pf_worker, a) != 0)
            break; /* fewer workers: pre-flights wait longer */
        a->pf_nthreads++;
    }
    if (a->on_post_preflight != NULL && a->pf_nthreads == 0) {
        snprintf(err, 256, "api: cannot start the pre-flight threads");
        MHD_socket lfd2 = MHD_quiesce_daemon(a->mhd);
        MHD_stop_daemon(a->mhd);
        if (lfd2 != MHD_INVALID_SOCKET)
            close(lfd2);
        rc = UV_EAGAIN;
        goto fail;
    }
    *out = a;
    return 0;
fail:
    free(a->causes_json);
    free(a->token);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->pf_mu);
    pthread_cond_destroy(&a->pf_cv);
    pthread_mutex_destroy(&a->fc_mu);
    pthread_cond_destroy(&a->fc_cv);
    free(a);
    *out = NULL;
    return rc;
}

int api_port(const api_t *a)
{
    return a->port;
}

void api_publish(api_t *a, snap_t *s)
{
    fc_memo_t *dead = NULL;
    pthread_mutex_lock(&a->mu);
    snap_t *old = a->cur;
    a->cur = s;
    atomic_store(&a->published_ms, mono_ms());
    pthread_mutex_unlock(&a->mu);
    pthread_mutex_lock(&a->fc_mu); /* forecasts of older snapshots are no longer served */
    fc_memo_prune(a, s, &dead);
    pthread_mutex_unlock(&a->fc_mu);
    fc_memo_free(dead); /* outside the locks: freeing a large snapshot takes a while */
    snap_unref(old);
}

void api_stop(api_t *a)
{
    if (a == NULL)
        return;
    MHD_socket fd = MHD_quiesce_daemon(a->mhd);
    /* Waiting pre-flights are answered 503, running ones finish; libmicrohttpd must not be
     * stopped while a connection is still suspended. */
    pthread_mutex_lock(&a->pf_mu);
    a->pf_stopping = 1;
    req_t *waiting = a->pf_head;
    a->pf_head = a->pf_tail = NULL;
    pthread_cond_broadcast(&a->pf_cv);
    pthread_mutex_unlock(&a->pf_mu);
    while (waiting != NULL) {
        req_t *next = waiting->pf_next;
        pf_finish(a, waiting, 0, pf_unavailable(), MHD_HTTP_SERVICE_UNAVAILABLE);
        waiting = next;
    }
    for (int i = 0; i < a->pf_nthreads; i++)
        pthread_join(a->pf_threads[i], NULL);
    pthread_mutex_lock(&a->pf_mu);
    while (a->pf_admitted > 0)
        pthread_cond_wait(&a->pf_cv, &a->pf_mu);
    pthread_mutex_unlock(&a->pf_mu);
    MHD_stop_daemon(a->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    fc_memo_free(a->fc_memo);
    snap_unref(a->cur);
    free(a->causes_json);
    free(a->token);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->pf_mu);
    pthread_cond_destroy(&a->pf_cv);
    pthread_mutex_destroy(&a->fc_mu);
    pthread_cond_destroy(&a->fc_cv);
    free(a);
}
