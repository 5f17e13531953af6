/* handlers.c - one function per route of web/api.c's table: each reads the current snapshot
 * (or calls the daemon's hook) and renders through web/render.c; slow work (forecast renders,
 * pre-flights) is shared or moved off the connection threads here. */
#include "web/api_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>

#include "probes/util.h"
#include "web/dashboard.h"
#include "web/render.h"

/* ---- route handlers -------------------------------------------------------------------- */

/* Every handler has this shape (route_t.handler): arg is what follows a prefix route's path
 * ("" for the others), s the api__current snapshot for the routes that declare they read it (else
 * NULL; referenced for the call). */

snap_t *api__current(api_t *a)
{
    pthread_mutex_lock(&a->mu);
    snap_t *s = a->cur != NULL ? snap_ref(a->cur) : NULL;
    pthread_mutex_unlock(&a->mu);
    return s;
}

/* GET / — the dashboard page (web/dashboard.c), with a policy that runs only its own code. */
enum MHD_Result api__answer_dashboard(api_t *a, struct MHD_Connection *c, req_t *rq,
                                      const char *arg, snap_t *s)
{
    size_t len;
    const char *page = dashboard_page(&len);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)page, MHD_RESPMEM_PERSISTENT);
    return api__queue(c, MHD_HTTP_OK, r, CT_HTML, "Content-Security-Policy", dashboard_csp());
}

/* 200 while the loop ticks and publishes; 503 "stalled" when its heartbeat is older than
 * stall_after_ms (a loop busy in one callback, however it answers otherwise), 503 "stale" when
 * it ticks but no snapshot was published for stale_after_s. */
enum MHD_Result api__answer_healthz(api_t *a, struct MHD_Connection *c, req_t *rq, const char *arg,
                                    snap_t *s)
{
    int64_t now = api__mono_ms();
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
        return api__reply_static(c, MHD_HTTP_OK, "{\"status\":\"ok\"}", CT_JSON);
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    return api__queue(c, MHD_HTTP_SERVICE_UNAVAILABLE, r, CT_JSON, NULL, NULL);
}

enum MHD_Result api__answer_endpoints(api_t *a, struct MHD_Connection *c, req_t *rq,
                                      const char *arg, snap_t *s)
{
    render_query_t q = {.state = -1, .cause = -1, .warning = -1, .group = -1, .limit = 100};
    unsigned long v;
    const char *p;

    if ((p = api__query(c, "state")) != NULL) {
        for (q.state = 0; q.state < SNAP_STATE_COUNT; q.state++)
            if (strcmp(p, snap_state_name(q.state)) == 0)
                break;
        if (q.state == SNAP_STATE_COUNT)
            return api__reply_bad_param(c, "state", "pending, online or offline", p);
    }
    if ((p = api__query(c, "cause")) != NULL &&
        (q.cause = fs_cause_from_id(p)) <= (int)FS_CAUSE_NONE)
        return api__reply_bad_param(c, "cause", "a cause id of /api/v1/causes", p);
    if ((p = api__query(c, "warning")) != NULL && (q.warning = fs_warning_from_id(p)) < 0)
        return api__reply_bad_param(c, "warning", "a warning id of /api/v1/causes", p);
    if ((p = api__query(c, "group")) != NULL && (q.group = render_find_group(s, p)) < 0)
        return api__reply_bad_param(c, "group", "a group name of /api/v1/status", p);
    if ((p = api__query(c, "limit")) != NULL) {
        if (api__parse_uint(p, 1000, &v) != 0)
            return api__reply_bad_param(c, "limit", "an integer 0..1000", p);
        q.limit = v;
    }
    if ((p = api__query(c, "offset")) != NULL) {
        if (api__parse_uint(p, UINT32_MAX, &v) != 0)
            return api__reply_bad_param(c, "offset", "an integer 0..4294967295", p);
        q.offset = v;
    }
    wbuf_t b;
    wbuf_init(&b, 128 + q.limit * 320, API_RENDER_MAX);
    int rc = render_endpoints(s, &q, &b);
    return api__reply_rendered(c, MHD_HTTP_OK, &b, rc, CT_JSON);
}

enum MHD_Result api__answer_events(api_t *a, struct MHD_Connection *c, req_t *rq, const char *arg,
                                   snap_t *s)
{
    uint64_t since_seq = 0;
    int64_t since_at = INT64_MIN;
    const char *p = api__query(c, "since");
    unsigned long v;
    if (p != NULL) {
        if (api__parse_uint(p, ULONG_MAX, &v) == 0)
            since_seq = v;
        else if (fs_parse_rfc3339(p, &since_at) != 0)
            return api__reply_bad_param(c, "since", "a sequence number or an RFC 3339 time", p);
    }
    wbuf_t b;
    wbuf_init(&b, 256 + s->nevents * 192, API_RENDER_MAX);
    int rc = render_events(s, since_seq, since_at, &b);
    return api__reply_rendered(c, MHD_HTTP_OK, &b, rc, CT_JSON);
}

static void unref_response_snap(void *cls)
{
    snap_unref(cls);
}

/* A body that depends only on the snapshot is rendered by the first reader and kept in the
 * snapshot (compare-and-swap: concurrent first readers may both render, one result is kept);
 * every response then serves those bytes, holding a reference to the snapshot. */
static enum MHD_Result reply_cached(struct MHD_Connection *c, snap_t *s, _Atomic(char *) *slot,
                                    int (*render)(const snap_t *, wbuf_t *), size_t hint,
                                    const char *ctype)
{
    char *body = atomic_load(slot);
    if (body == NULL) {
        wbuf_t b;
        wbuf_init(&b, hint, API_RENDER_MAX);
        int rc = render(s, &b);
        if (rc < 0 || b.failed || b.data == NULL)
            return api__reply_rendered(c, MHD_HTTP_OK, &b, rc < 0 ? rc : UV_ENOMEM, ctype);
        char *mine = fs_xmalloc(b.len + 1);
        memcpy(mine, b.data, b.len);
        mine[b.len] = '\0';
        wbuf_free(&b);
        char *expected = NULL;
        if (!atomic_compare_exchange_strong(slot, &expected, mine))
            free(mine);
        body = atomic_load(slot);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback_cls(
        strlen(body), body, unref_response_snap, snap_ref(s));
    if (r == NULL)
        snap_unref(s);
    return api__queue(c, MHD_HTTP_OK, r, ctype, NULL, NULL);
}

enum MHD_Result api__answer_status(api_t *a, struct MHD_Connection *c, req_t *rq, const char *arg,
                                   snap_t *s)
{
    return reply_cached(c, s, &s->status_body, render_status, 1024 + s->ngroups * 256, CT_JSON);
}

/* GET /api/v1/endpoints/{id} */
enum MHD_Result api__answer_endpoint(api_t *a, struct MHD_Connection *c, req_t *rq, const char *arg,
                                     snap_t *s)
{
    const snap_endpoint_t *e = render_find_endpoint(s, arg);
    if (e == NULL) {
        char msg[160];
        snprintf(msg, sizeof(msg), "no endpoint \"%.64s\"", arg);
        return api__reply_error(c, MHD_HTTP_NOT_FOUND, msg, "not_found");
    }
    wbuf_t b;
    wbuf_init(&b, 4096, API_RENDER_MAX);
    int rc = render_endpoint(s, e, 1, &b);
    return api__reply_rendered(c, MHD_HTTP_OK, &b, rc, CT_JSON);
}

enum MHD_Result api__answer_targets(api_t *a, struct MHD_Connection *c, req_t *rq, const char *arg,
                                    snap_t *s)
{
    return reply_cached(c, s, &s->targets_body, render_targets, 8192, CT_JSON);
}

enum MHD_Result api__answer_metrics(api_t *a, struct MHD_Connection *c, req_t *rq, const char *arg,
                                    snap_t *s)
{
    return reply_cached(c, s, &s->metrics_body, render_metrics, 16384 + s->ngroups * 512,
                        CT_METRICS);
}

/* The catalogue never changes: rendered once by api_start. */
enum MHD_Result api__answer_causes(api_t *a, struct MHD_Connection *c, req_t *rq, const char *arg,
                                   snap_t *s)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(a->causes_len, a->causes_json, MHD_RESPMEM_PERSISTENT);
    return api__queue(c, MHD_HTTP_OK, r, CT_JSON, NULL, NULL);
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

void api__fc_memo_free(fc_memo_t *m)
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
void api__fc_memo_prune(api_t *a, const snap_t *s, fc_memo_t **dead)
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
    return api__queue(c, MHD_HTTP_OK, r, CT_JSON, NULL, NULL);
}

/* With 65,535 groups a forecast is megabytes: clients asking for the same snapshot and days
 * share one render (later ones wait for the first), and at most API_FORECAST_RENDERS run at
 * once, so eight concurrent requests cost one document, not eight transient copies. */
static enum MHD_Result forecast_shared(api_t *a, struct MHD_Connection *c, int days)
{
    snap_t *s = api__current(a);
    fc_memo_t *m, *dead = NULL;
    fc_body_t *b = NULL;
    if (s == NULL)
        return api__reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "no snapshot published yet",
                                "not_ready");
    pthread_mutex_lock(&a->fc_mu);
    for (;;) {
        api__fc_memo_prune(a, s, &dead);
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
    api__fc_memo_free(dead);
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
        api__fc_memo_free(m);
        return api__reply_hook(c, rc, json, status);
    }
    return reply_fc_body(c, b);
}

/* GET /api/v1/forecast?days=N. Not a snapshot route: a bad N (400) and a missing hook (501) are
 * answered before the snapshot is looked at (503 before the first publish). */
enum MHD_Result api__answer_forecast(api_t *a, struct MHD_Connection *c, req_t *rq, const char *arg,
                                     snap_t *s)
{
    unsigned long days = 0;
    const char *p = api__query(c, "days");
    if (p == NULL || api__parse_uint(p, 3650, &days) != 0)
        return api__reply_bad_param(c, "days", "an integer 0..3650", p ? p : "");
    if (a->on_forecast == NULL)
        return api__reply_error(c, MHD_HTTP_NOT_IMPLEMENTED, "forecast is not available",
                                "not_implemented");
    return forecast_shared(a, c, (int)days);
}

/* ---- POST /api/v1/preflight: off the connection threads -------------------------------- */

/* A pre-flight fetches CRLs for up to the groups' retrieval budgets (20 s by default, longer
 * against a CDP that stalls): run on a connection thread, four of them would leave no thread
 * for /healthz. So the connection is suspended, the request queued for one of
 * API_PREFLIGHT_RUNNING workers, and resumed with the verdict; MHD then calls on_request again
 * and api__answer_preflight sends it. Admission is bounded: past API_PREFLIGHT_RUNNING running and
 * API_PREFLIGHT_WAITING waiting, 429. */

/* Hands the outcome to the suspended connection and lets MHD send it. rq may be freed as soon
 * as the connection is resumed; admitted drops only after, so api_stop never stops MHD with a
 * connection still suspended. */
void api__pf_finish(api_t *a, req_t *rq, int rc, char *json, int status)
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

char *api__pf_unavailable(void)
{
    return fs_xstrdup("{\"error\":\"the API is stopping\",\"code\":\"unavailable\"}");
}

void *api__pf_worker(void *arg)
{
    fs_thread_name("fs-preflight");
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
        int rc = a->on_post_preflight(a->arg, rq->body, rq->len,
                                      rq->pf_target[0] ? rq->pf_target : NULL, &json, &status);
        api__pf_finish(a, rq, rc, json, status);
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
        return api__reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the API is stopping",
                                "unavailable");
    if (full) {
        char msg[160];
        snprintf(msg, sizeof(msg),
                 "too many pre-flights in progress (%d run at once, %d more may wait): retry "
                 "later",
                 API_PREFLIGHT_RUNNING, API_PREFLIGHT_WAITING);
        return api__reply_error_h(c, MHD_HTTP_TOO_MANY_REQUESTS, msg, "too_many_requests",
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
    if (stopping) /* api_stop drained the api__queue meanwhile */
        api__pf_finish(a, rq, 0, api__pf_unavailable(), MHD_HTTP_SERVICE_UNAVAILABLE);
    return MHD_YES;
}

/* ---- POST routes ----------------------------------------------------------------------- */

enum MHD_Result api__answer_scan(api_t *a, struct MHD_Connection *c, req_t *rq, const char *arg,
                                 snap_t *s)
{
    if (a->on_scan == NULL)
        return api__reply_error(c, MHD_HTTP_NOT_IMPLEMENTED, "scan is not available",
                                "not_implemented");
    a->on_scan(a->arg);
    return api__reply_static(c, MHD_HTTP_ACCEPTED, "{\"status\":\"scan scheduled\"}", CT_JSON);
}

/* Called once with the body (the connection is then suspended while a worker runs it), and
 * again when the worker resumed it with the verdict. */
enum MHD_Result api__answer_preflight(api_t *a, struct MHD_Connection *c, req_t *rq,
                                      const char *arg, snap_t *s)
{
    if (a->on_post_preflight == NULL)
        return api__reply_error(c, MHD_HTTP_NOT_IMPLEMENTED, "preflight is not available",
                                "not_implemented");
    if (rq->pf_state == PF_DONE) { /* resumed by its worker */
        pthread_mutex_lock(&a->pf_mu);
        char *json = rq->pf_json;
        int rc = rq->pf_rc, status = rq->pf_status;
        rq->pf_json = NULL;
        rq->pf_state = PF_NONE;
        pthread_mutex_unlock(&a->pf_mu);
        return api__reply_hook(c, rc, json, status);
    }
    if (rq->len == 0)
        return api__reply_error(c, MHD_HTTP_BAD_REQUEST, "body: expected a PEM certificate chain",
                                "bad_parameter");
    const char *t = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "target");
    if (t != NULL) { /* a target name as the configuration allows it; which exists, the hook says */
        size_t n = strlen(t);
        int ok = n >= 1 && n < sizeof(rq->pf_target);
        for (size_t i = 0; ok && i < n; i++)
            ok = isalnum((unsigned char)t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-';
        if (!ok)
            return api__reply_error(c, MHD_HTTP_BAD_REQUEST,
                                    "target: expected a target name ([A-Za-z0-9_.-], 1 to 48 "
                                    "characters)",
                                    "bad_parameter");
        memcpy(rq->pf_target, t, n + 1);
    }
    return submit_preflight(a, c, rq);
}

/* A time parameter: RFC 3339 or seconds since the epoch. 0, or -1 when malformed. */
static int parse_time(const char *p, int64_t *out)
{
    unsigned long v;
    if (api__parse_uint(p, INT32_MAX * 100UL, &v) == 0) {
        *out = (int64_t)v;
        return 0;
    }
    return fs_parse_rfc3339(p, out);
}

/* GET /api/v1/history: the per-minute samples of the state database (daemon/store.h). */
enum MHD_Result api__answer_history(api_t *a, struct MHD_Connection *c, req_t *rq, const char *arg,
                                    snap_t *s)
{
    int64_t until = fs_wall_ms() / 1000, since = until - 86400, step = 0;
    unsigned long v;
    const char *p;
    if ((p = api__query(c, "since")) != NULL && parse_time(p, &since) != 0)
        return api__reply_bad_param(c, "since", "an RFC 3339 time or seconds since the epoch", p);
    if ((p = api__query(c, "until")) != NULL && parse_time(p, &until) != 0)
        return api__reply_bad_param(c, "until", "an RFC 3339 time or seconds since the epoch", p);
    if (until <= since)
        return api__reply_bad_param(c, "until", "a time after since", p ? p : "");
    if ((p = api__query(c, "step")) != NULL) {
        if (api__parse_uint(p, 86400L * 366, &v) != 0 || v == 0 || v % 60 != 0)
            return api__reply_bad_param(c, "step", "seconds, a multiple of 60", p);
        step = (int64_t)v;
        if ((until - since) / step > API_HISTORY_MAX_POINTS)
            return api__reply_bad_param(c, "step", "a step giving at most 20000 points", p);
    } else {
        int64_t per = (until - since + API_HISTORY_POINTS - 1) / API_HISTORY_POINTS;
        step = per <= 60 ? 60 : (per + 59) / 60 * 60;
    }
    if (a->on_history == NULL)
        return api__reply_error(c, MHD_HTTP_NOT_IMPLEMENTED, "history is not available",
                                "not_implemented");
    char *json = NULL;
    int status = 0;
    int rc = a->on_history(a->arg, since, until, step, &json, &status);
    return api__reply_hook(c, rc, json, status);
}
