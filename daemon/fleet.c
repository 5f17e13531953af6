/* fleet.c - endpoints, scheduler, aggregation and snapshots of `fleetscan run` (see fleet.h).
 * A generation is one configuration's runtime (groups, endpoints, shared TLS contexts); a
 * reload builds a new one and the old one lives until its last in-flight probe returns. */
#include "daemon/fleet.h"
#include "daemon/policy.h"
#include "probes/probe.h"
#include "probes/report.h"
#include "probes/revoke.h"
#include "probes/util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define FLEET_EVENTS_MAX 4096
#define FLEET_DETAIL_REFRESH_S 10 /* a group's detail JSON is rebuilt at most this often */

/* One simulated endpoint: kept compact, there may be millions. */
typedef struct fleet_ep_s {
    int64_t next_due; /* uv_now() ms */
    int64_t since;    /* state change, seconds since the epoch (0: never) */
    int64_t last_probe;
    uint32_t timings_ms[SNAP_PH_COUNT];
    uint32_t warnings;
    uint32_t index; /* index within its group (the id's number) */
    uint16_t group;
    uint8_t state;
    uint8_t cause;
    uint8_t in_flight;
} fleet_ep_t;

typedef struct fleet_group_s {
    const cfg_group_t *cfg;
    policy_t pl; /* what its probes use (policy.h); never moved once built */
    snap_counts_t counts;
    /* Per primary cause (FS_CAUSE_NONE: online), the last message and detail JSON of a probe
     * of this group that ended so: an endpoint is shown its own kind of outcome. */
    char *msg[FS_CAUSE_COUNT];
    char *detail[FS_CAUSE_COUNT];
    int64_t detail_at;       /* last time a probe of this group captured its chain */
    int want_capture;        /* an outcome without a detail appeared: capture the next probe */
    int64_t chain_not_after; /* for the forecast, from the last probe that got that far */
    int64_t chain_not_before;
    int64_t crl_next_update;
} fleet_group_t;

typedef struct fleet_gen_s {
    int refs;
    cfg_t *cfg;
    fleet_group_t *groups;
    size_t ngroups;
    fleet_ep_t *eps;
    uint32_t neps;
    uint32_t *heap; /* endpoint indices, min-heap on next_due */
    uint32_t nheap;
    policy_t ref; /* the reference probe's settings */
} fleet_gen_t;

/* What a generation's probe options point at: the fleet's retrieval context and verdict cache.
 * Captured on the loop, so a generation can be built on another thread. */
typedef struct gen_env_s {
    rev_ctx_t *rev;
    vcache_t *vcache;
    int dns_override_only;
} gen_env_t;

/* A reload in preparation (fleet.h): built off the loop, applied on it. */
struct fleet_next_s {
    gen_env_t env;
    fleet_gen_t *old; /* the generation running at fleet_reload_begin, referenced */
    fleet_gen_t *gen; /* built by fleet_reload_build, NULL before */
    int32_t *match;   /* per new group: the old group whose endpoints it continues, or -1 */
    int event_fd;     /* the reopened event log (-1: none), and whether it ends mid-line */
    int event_partial;
};

typedef struct fleet_job_s {
    fleet_t *f;
    fleet_gen_t *gen;
    uint32_t ep;  /* UINT32_MAX: the reference probe */
    int captured; /* the probe captures its chain and retrievals: it becomes a group detail */
    probe_t *probe;
    struct fleet_job_s *prev, *next;
} fleet_job_t;

struct fleet_s {
    uv_loop_t *loop;
    fleet_opts_t o;
    fleet_gen_t *gen;
    rev_ctx_t *rev;
    vcache_t *vcache;
    uv_timer_t tick;
    uv_timer_t publish_timer;
    uv_timer_t ref_timer;
    int closing, pending_closes;
    void (*stop_done)(void *arg);
    void *stop_arg;
    fleet_job_t *jobs; /* in flight, all generations */
    uint32_t in_flight;
    double tokens;
    uint64_t tokens_at;
    snap_counts_t totals;
    uint64_t probes_total;
    uint64_t probes_by_result[SNAP_STATE_COUNT];
    uint64_t hist[SNAP_PH_COUNT][SNAP_HIST_BUCKETS + 1]; /* per bucket, not cumulative */
    double hist_sum[SNAP_PH_COUNT];
    snap_event_t events[FLEET_EVENTS_MAX];
    uint64_t event_seq;
    int event_fd;           /* the event log, O_APPEND; -1: none */
    int event_partial;      /* the file does not end at a line boundary */
    int event_failing;      /* the last write failed (logged once per failure streak) */
    uint64_t event_dropped; /* lines lost to failed or short writes, since start */
    char event_error[128];  /* the last write error, "" when none yet */
    int64_t event_error_at; /* its time, seconds since the epoch */
    snap_warning_t warnings[CFG_MAX_WARNINGS + 1]; /* daemon.warnings of /status */
    size_t nwarnings;
    cfg_warning_t listen_warning; /* from the configuration the API was started with */
    int64_t started_at;
    int dirty;
    int ref_in_flight;
    int ref_ok;    /* the reference binding answered last time */
    int ref_known; /* a reference result exists */
    char *targets_json;
    char *metrics_extra;
    uint64_t rng;
};

static void fleet_log(const fleet_t *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fleet_log(const fleet_t *f, const char *fmt, ...)
{
    if (f->o.quiet)
        return;
    char ts[32];
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s fleetscan: ", fs_rfc3339(fs_wall_ms() / 1000, ts, sizeof(ts)));
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static double rnd(fleet_t *f)
{
    /* xorshift64*: schedule jitter only, no need for quality beyond spreading load */
    f->rng ^= f->rng >> 12;
    f->rng ^= f->rng << 25;
    f->rng ^= f->rng >> 27;
    return (double)((f->rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

uint32_t fleet_id_hash(const char *id)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return h;
}

int fleet_in_shard(const cfg_t *cfg, const char *group, uint32_t k)
{
    if (cfg->shard_count <= 1)
        return 1;
    char id[96];
    snprintf(id, sizeof(id), "%s-%05u", group, k);
    return fleet_id_hash(id) % cfg->shard_count == cfg->shard_index;
}

const cfg_t *fleet_cfg(const fleet_t *f)
{
    return f->gen->cfg;
}

/* ---- heap of due endpoints ---- */

static int heap_less(const fleet_gen_t *g, uint32_t a, uint32_t b)
{
    return g->eps[a].next_due < g->eps[b].next_due;
}

static void heap_push(fleet_gen_t *g, uint32_t ep)
{
    uint32_t i = g->nheap++;
    g->heap[i] = ep;
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!heap_less(g, g->heap[i], g->heap[parent]))
            break;
        uint32_t t = g->heap[i];
        g->heap[i] = g->heap[parent];
        g->heap[parent] = t;
        i = parent;
    }
}

static void heap_sift_down(fleet_gen_t *g, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < g->nheap && heap_less(g, g->heap[l], g->heap[m]))
            m = l;
        if (r < g->nheap && heap_less(g, g->heap[r], g->heap[m]))
            m = r;
        if (m == i)
            return;
        uint32_t t = g->heap[i];
        g->heap[i] = g->heap[m];
        g->heap[m] = t;
        i = m;
    }
}

static uint32_t heap_pop(fleet_gen_t *g)
{
    uint32_t top = g->heap[0];
    g->heap[0] = g->heap[--g->nheap];
    heap_sift_down(g, 0);
    return top;
}

static void heap_rebuild(fleet_gen_t *g)
{
    g->nheap = 0;
    for (uint32_t i = 0; i < g->neps; i++)
        if (!g->eps[i].in_flight)
            g->heap[g->nheap++] = i;
    for (uint32_t i = g->nheap / 2; i-- > 0;)
        heap_sift_down(g, i);
}

/* ---- counters ---- */

static void counts_add(snap_counts_t *c, const fleet_ep_t *e, int sign)
{
    uint32_t d = (uint32_t)sign; /* unsigned wrap-around subtracts */
    c->total += d;
    if (e->state == SNAP_ONLINE)
        c->online += d;
    else if (e->state == SNAP_OFFLINE) {
        c->offline += d;
        c->causes[e->cause] += d;
    } else
        c->pending += d;
    for (int w = 0; w < FS_WARN_COUNT; w++)
        if (e->warnings & FS_WARN_BIT(w))
            c->warnings[w] += d;
}

static void recount(fleet_t *f)
{
    fleet_gen_t *g = f->gen;
    memset(&f->totals, 0, sizeof(f->totals));
    for (size_t i = 0; i < g->ngroups; i++)
        memset(&g->groups[i].counts, 0, sizeof(g->groups[i].counts));
    for (uint32_t i = 0; i < g->neps; i++) {
        counts_add(&g->groups[g->eps[i].group].counts, &g->eps[i], 1);
        counts_add(&f->totals, &g->eps[i], 1);
    }
}

/* ---- events ---- */

static void ep_id(const fleet_gen_t *g, const fleet_ep_t *e, char *buf, size_t n)
{
    snprintf(buf, n, "%s-%05u", g->groups[e->group].cfg->name, e->index);
}

/* Appends the record at rec + 1 (len bytes, one line; rec[0] is reserved for a leading
 * newline) with write(2) on the O_APPEND descriptor, so a failed or short write (a full disk)
 * is seen: the line is dropped and counted, and what part of it reached the file is taken
 * back, so every record stays one whole line and the next never glues onto a fragment. */
static void event_log_append(fleet_t *f, char *rec, size_t len)
{
    const char *p = rec + 1;
    size_t n = len, done = 0;
    int err = 0;
    if (f->event_partial) { /* a fragment could not be taken back: start a fresh line */
        rec[0] = '\n';
        p = rec;
        n++;
    }
    while (done < n) {
        ssize_t w = write(f->event_fd, p + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            err = w < 0 ? errno : EIO;
            break;
        }
        done += (size_t)w;
    }
    if (done == n) {
        f->event_partial = 0;
        if (f->event_failing)
            fleet_log(f, "event_log: writing again (%llu lines dropped since start)",
                      (unsigned long long)f->event_dropped);
        f->event_failing = 0;
        return;
    }
    f->event_dropped++;
    fs_strlcpy(f->event_error, strerror(err), sizeof(f->event_error));
    f->event_error_at = fs_wall_ms() / 1000;
    if (!f->event_failing)
        fleet_log(f,
                  "event_log: cannot write \"%s\": %s; lines are dropped and counted "
                  "(event_log.dropped_lines in /api/v1/status) until it can",
                  fleet_cfg(f)->event_log, f->event_error);
    f->event_failing = 1;
    if (done > 0) {
        /* Only when the file still ends where this write did: nobody appended since. */
        struct stat st;
        off_t end = lseek(f->event_fd, 0, SEEK_CUR);
        if (end < (off_t)done || fstat(f->event_fd, &st) != 0 || st.st_size != end ||
            ftruncate(f->event_fd, end - (off_t)done) != 0)
            f->event_partial = 1;
    }
}

static void event_log_line(fleet_t *f, const snap_event_t *ev, const char *message)
{
    if (f->event_fd < 0)
        return;
    /* agent.log's own record format, so existing log tooling can read these lines. */
    time_t t = (time_t)ev->at;
    struct tm tm;
    gmtime_r(&t, &tm);
    char date[64];
    strftime(date, sizeof(date), "%m/%d/%Y %H:%M:%S.000 +00:00", &tm);
    int severity = ev->new_state == SNAP_OFFLINE ? 1 : 4; /* 1 error, 4 information */
    /* Messages carry peer-controlled text (status lines, certificate names, URLs): escape it
     * so every record stays one well-formed line. */
    char text[1024];
    size_t k = 0;
    for (const char *p = message; *p && k + 7 < sizeof(text); p++) {
        const char *rep = *p == '&'    ? "&amp;"
                          : *p == '<'  ? "&lt;"
                          : *p == '>'  ? "&gt;"
                          : *p == '\'' ? "&apos;"
                                       : NULL;
        if (rep != NULL) {
            memcpy(text + k, rep, strlen(rep));
            k += strlen(rep);
        } else {
            text[k++] = (unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p;
        }
    }
    text[k] = '\0';
    char rec[1700]; /* rec[0]: room for a leading newline; the text and subject are bounded */
    int n = snprintf(rec + 1, sizeof(rec) - 1,
                     "<event date='%s' severity='%d' hostName='%s' source='fleetscan' "
                     "module='fleetscan' process='fleetscan' pid='%d' thread='0' tickCount='%llu' "
                     ">%s -&gt; %s: %s</event>\n",
                     date, severity, ev->subject, (int)getpid(), (unsigned long long)ev->seq,
                     snap_state_name(ev->old_state), snap_state_name(ev->new_state), text);
    assert(n > 0 && (size_t)n < sizeof(rec) - 1);
    event_log_append(f, rec, (size_t)n);
}

static void push_event(fleet_t *f, const char *subject, int old_state, int new_state, int cause,
                       const char *message)
{
    snap_event_t *ev = &f->events[f->event_seq % FLEET_EVENTS_MAX];
    ev->seq = ++f->event_seq;
    ev->at = fs_wall_ms() / 1000;
    fs_strlcpy(ev->subject, subject, sizeof(ev->subject));
    ev->old_state = (uint8_t)old_state;
    ev->new_state = (uint8_t)new_state;
    ev->cause = (uint8_t)cause;
    event_log_line(f, ev, message);
}

/* ---- generations ---- */

static void gen_unref(fleet_gen_t *g)
{
    if (g == NULL || --g->refs > 0)
        return;
    for (size_t i = 0; i < g->ngroups; i++) {
        policy_free(&g->groups[i].pl);
        for (int c = 0; c < FS_CAUSE_COUNT; c++) {
            free(g->groups[i].msg[c]);
            free(g->groups[i].detail[c]);
        }
    }
    policy_free(&g->ref);
    free(g->groups);
    free(g->eps);
    free(g->heap);
    cfg_free(g->cfg);
    free(g);
}

/* Contexts are shared by every group with the same trust store and TLS settings. */
static tlsc_ctx_t *find_ctx(const fleet_gen_t *g, size_t gi)
{
    for (size_t i = 0; i < gi; i++)
        if (cfg_tls_ctx_equal(g->cfg, i, g->cfg, gi))
            return g->groups[i].pl.tls;
    return NULL;
}

/* What the fleet adds to a policy: its shared retrieval context, verdict cache and DNS mode. */
static void runtime_opts(const gen_env_t *env, policy_t *pl)
{
    pl->popts.rev = env->rev;
    pl->popts.vcache = env->vcache;
    pl->popts.dns_override_only = env->dns_override_only;
    pl->rev.dns_override_only = env->dns_override_only;
}

/* Builds the runtime of cfg: reads nothing of a running fleet but env, so it may run on any
 * thread. Takes cfg on success. */
static int gen_build(const gen_env_t *env, cfg_t *cfg, fleet_gen_t **out, char err[256])
{
    fleet_gen_t *g = fs_xcalloc(1, sizeof(*g));
    g->refs = 1;
    g->cfg = cfg;
    g->ngroups = cfg->ngroups;
    if (cfg->ngroups > UINT16_MAX) {
        snprintf(err, 256, "groups: at most %u groups", UINT16_MAX);
        free(g);
        return -1;
    }
    g->groups = fs_xcalloc(cfg->ngroups, sizeof(*g->groups));
    uint64_t n = 0;
    for (size_t i = 0; i < cfg->ngroups; i++) {
        fleet_group_t *gr = &g->groups[i];
        const cfg_group_t *c = &cfg->groups[i];
        gr->cfg = c;
        if (policy_group_init(&gr->pl, cfg, i, find_ctx(g, i), err) < 0) {
            char e[256];
            snprintf(e, sizeof(e), "groups[%zu].trust: %s", i, err);
            fs_strlcpy(err, e, 256);
            g->cfg = NULL; /* cfg stays the caller's on failure */
            gen_unref(g);
            return -1;
        }
        runtime_opts(env, &gr->pl);
        for (uint32_t k = 0; k < c->count; k++)
            n += fleet_in_shard(cfg, c->name, k);
    }
    if (n > UINT32_MAX - 1) {
        snprintf(err, 256, "too many endpoints in this shard (%llu)", (unsigned long long)n);
        g->cfg = NULL;
        gen_unref(g);
        return -1;
    }
    g->neps = (uint32_t)n;
    g->eps = fs_xcalloc(n ? n : 1, sizeof(*g->eps));
    g->heap = fs_xcalloc(n ? n : 1, sizeof(*g->heap));
    uint32_t e = 0;
    for (size_t i = 0; i < cfg->ngroups; i++) {
        const cfg_group_t *c = &cfg->groups[i];
        for (uint32_t k = 0; k < c->count; k++) {
            if (!fleet_in_shard(cfg, c->name, k))
                continue;
            g->eps[e].group = (uint16_t)i;
            g->eps[e].index = k;
            g->eps[e].state = SNAP_PENDING;
            e++;
        }
    }
    if (policy_reference_init(&g->ref, cfg, err) < 0) {
        g->cfg = NULL;
        gen_unref(g);
        return -1;
    }
    runtime_opts(env, &g->ref);
    *out = g;
    return 0;
}

/* ---- probing ---- */

static void tick_soon(fleet_t *f, uint64_t ms);

static void job_link(fleet_t *f, fleet_job_t *j)
{
    j->next = f->jobs;
    if (f->jobs)
        f->jobs->prev = j;
    f->jobs = j;
}

static void job_unlink(fleet_t *f, fleet_job_t *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        f->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
}

static void observe(fleet_t *f, const probe_result_t *r)
{
    for (int ph = 0; ph < SNAP_PH_COUNT; ph++) {
        double s = r->timings_ms[ph] / 1000.0;
        if (r->timings_ms[ph] == 0 && ph != SNAP_PH_DNS && ph != SNAP_PH_CONNECT)
            continue; /* phase not reached */
        int b = 0;
        while (b < SNAP_HIST_BUCKETS && s > snap_hist_bounds[b])
            b++;
        f->hist[ph][b]++;
        f->hist_sum[ph] += s;
    }
}

/* Appends to a growing string; never truncates, never overruns. */
static void appendf(char **m, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char **m, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (*len + (size_t)n + 1 > *cap) {
        *cap = (*len + (size_t)n + 1) * 2;
        *m = fs_xrealloc(*m, *cap);
    }
    va_start(ap, fmt);
    vsnprintf(*m + *len, *cap - *len, fmt, ap);
    va_end(ap);
    *len += (size_t)n;
}

/* A Prometheus label value: backslash, double quote and newline escaped (exposition 0.0.4). */
static const char *label_value(const char *in, char *out, size_t n)
{
    size_t k = 0;
    for (const char *p = in; *p && k + 3 < n; p++) {
        if (*p == '\\' || *p == '"') {
            out[k++] = '\\';
            out[k++] = *p;
        } else if (*p == '\n') {
            out[k++] = '\\';
            out[k++] = 'n';
        } else {
            out[k++] = *p;
        }
    }
    out[k] = '\0';
    return out;
}

static void render_reference(fleet_t *f, const probe_result_t *r)
{
    char lv[1100];
    fleet_gen_t *g = f->gen;
    const cfg_t *cfg = g->cfg;
    const cfg_profile_t *refp = &cfg->profiles[cfg->ref_profile_idx];
    char ts[32];
    cJSON *root = cJSON_CreateObject();
    cJSON *targets = cJSON_AddArrayToObject(root, "targets");
    cJSON *t = report_result_json(r, refp->url);
    cJSON_AddStringToObject(t, "name", "reference");
    cJSON_AddStringToObject(t, "profile", refp->name);
    cJSON_AddStringToObject(t, "trust", cfg->trust[cfg->ref_trust_idx].name);
    cJSON_AddStringToObject(t, "checked_at", fs_rfc3339(r->started_at, ts, sizeof(ts)));
    /* The CRL view of the target: one line per CRL URL. */
    cJSON *crls = cJSON_AddArrayToObject(t, "crls");
    size_t nurls = r->rev ? r->rev->nurls : 0;
    for (size_t i = 0; i < nurls; i++) {
        const rev_url_result_t *u = &r->rev->urls[i];
        if (strcmp(u->kind, "crl") != 0)
            continue;
        cJSON *c = cJSON_CreateObject();
        cJSON_AddStringToObject(c, "url", u->url);
        cJSON_AddNumberToObject(c, "cert_depth", u->cert_depth);
        cJSON_AddBoolToObject(c, "reachable", u->ok || u->http_status == 200);
        cJSON_AddNumberToObject(c, "http_status", (double)u->http_status);
        cJSON_AddNumberToObject(c, "bytes", (double)u->bytes);
        if (u->this_update)
            cJSON_AddStringToObject(c, "this_update", fs_rfc3339(u->this_update, ts, sizeof(ts)));
        else
            cJSON_AddNullToObject(c, "this_update");
        if (u->next_update)
            cJSON_AddStringToObject(c, "next_update", fs_rfc3339(u->next_update, ts, sizeof(ts)));
        else
            cJSON_AddNullToObject(c, "next_update");
        if (u->error[0])
            cJSON_AddStringToObject(c, "last_error", u->error);
        else
            cJSON_AddNullToObject(c, "last_error");
        cJSON_AddItemToArray(crls, c);
    }
    cJSON_AddItemToArray(targets, t);
    free(f->targets_json);
    f->targets_json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);

    /* Gauges for Prometheus; the renderer adds vantage and shard. */
    size_t cap = 4096, len = 0;
    char *m = fs_xmalloc(cap);
    m[0] = '\0';
#define APPEND(...) appendf(&m, &len, &cap, __VA_ARGS__)
    APPEND("# HELP fleetscan_cert_not_after_seconds notAfter of each presented certificate "
           "(Unix time).\n# TYPE fleetscan_cert_not_after_seconds gauge\n");
    for (size_t i = 0; i < r->chain.n; i++) {
        const chain_cert_t *c = &r->chain.certs[i];
        char subj[320];
        label_value(c->subject, subj, sizeof(subj));
        APPEND("fleetscan_cert_not_after_seconds{target=\"reference\",depth=\"%zu\",subject=\"%s\","
               "sha1=\"%s\"} %lld\n",
               i, subj, c->sha1, (long long)c->not_after);
    }
    APPEND("# HELP fleetscan_crl_reachable 1 when the CRL URL answered with a usable CRL.\n"
           "# TYPE fleetscan_crl_reachable gauge\n");
    for (size_t i = 0; i < nurls; i++) {
        const rev_url_result_t *u = &r->rev->urls[i];
        if (strcmp(u->kind, "crl") == 0)
            APPEND("fleetscan_crl_reachable{url=\"%s\"} %d\n", label_value(u->url, lv, sizeof(lv)),
                   u->ok ? 1 : 0);
    }
    APPEND("# HELP fleetscan_crl_next_update_seconds nextUpdate of the CRL served at the URL "
           "(Unix time).\n# TYPE fleetscan_crl_next_update_seconds gauge\n");
    for (size_t i = 0; i < nurls; i++) {
        const rev_url_result_t *u = &r->rev->urls[i];
        if (strcmp(u->kind, "crl") == 0 && u->next_update)
            APPEND("fleetscan_crl_next_update_seconds{url=\"%s\"} %lld\n",
                   label_value(u->url, lv, sizeof(lv)), (long long)u->next_update);
    }
    APPEND("# HELP fleetscan_reference_up 1 when the reference binding accepts a connection "
           "and validates.\n# TYPE fleetscan_reference_up gauge\n");
    APPEND("fleetscan_reference_up %d\n", r->online ? 1 : 0);
#undef APPEND
    free(f->metrics_extra);
    f->metrics_extra = m;
}

static void on_probe_done(probe_t *p, probe_result_t *r, void *arg)
{
    (void)p;
    fleet_job_t *j = arg;
    fleet_t *f = j->f;
    fleet_gen_t *gen = j->gen;
    job_unlink(f, j);
    f->in_flight--;
    int current = gen == f->gen && !f->closing;
    if (j->ep == UINT32_MAX) {
        f->ref_in_flight = 0;
        if (current && !r->cancelled) {
            f->ref_ok = r->online;
            f->ref_known = 1;
            render_reference(f, r);
            f->dirty = 1;
        }
    } else if (current) {
        fleet_ep_t *e = &gen->eps[j->ep];
        e->in_flight = 0;
        if (!r->cancelled) {
            fleet_group_t *gr = &gen->groups[e->group];
            char msg[sizeof(r->message)];
            policy_ref_t ref = !f->ref_known ? POLICY_REF_UNKNOWN
                               : f->ref_ok   ? POLICY_REF_UP
                                             : POLICY_REF_DOWN;
            fs_cause_t cause = policy_verdict(&gr->pl, r, ref, msg, sizeof(msg));
            int state = cause == FS_CAUSE_NONE ? SNAP_ONLINE : SNAP_OFFLINE;
            int64_t now_s = r->started_at;
            counts_add(&gr->counts, e, -1);
            counts_add(&f->totals, e, -1);
            int changed = e->state != state || e->cause != cause;
            int old_state = e->state;
            e->state = (uint8_t)state;
            e->cause = (uint8_t)cause;
            e->warnings = r->warnings;
            memcpy(e->timings_ms, r->timings_ms, sizeof(e->timings_ms));
            e->last_probe = now_s;
            counts_add(&gr->counts, e, 1);
            counts_add(&f->totals, e, 1);
            if (changed) {
                char id[96];
                e->since = now_s;
                ep_id(gen, e, id, sizeof(id));
                const fs_cause_info_t *ci = fs_cause_info(cause);
                char line[512];
                snprintf(line, sizeof(line), "%s%s%s",
                         state == SNAP_OFFLINE ? ci->symptom : "online",
                         state == SNAP_OFFLINE ? ": " : "", state == SNAP_OFFLINE ? msg : "");
                push_event(f, id, old_state, state, cause, line);
            }
            f->probes_total++;
            f->probes_by_result[state]++;
            observe(f, r);
            /* The line the agent would log: its symptom, then what went wrong. */
            char line[sizeof(msg) + 160];
            if (state == SNAP_OFFLINE)
                snprintf(line, sizeof(line), "%s: %s", fs_cause_info(cause)->symptom, msg);
            else
                fs_strlcpy(line, msg, sizeof(line));
            if (gr->msg[cause] == NULL || strcmp(gr->msg[cause], line) != 0) {
                free(gr->msg[cause]);
                gr->msg[cause] = fs_xstrdup(line);
            }
            if (r->chain_not_after != 0)
                gr->chain_not_after = r->chain_not_after;
            if (r->chain_not_before != 0)
                gr->chain_not_before = r->chain_not_before;
            if (r->crl_next_update != 0)
                gr->crl_next_update = r->crl_next_update;
            if (j->captured) { /* with or without a chain: every outcome has its detail */
                cJSON *d = report_result_json(r, gen->cfg->profiles[gr->cfg->profile_idx].url);
                if (cause != r->cause || r->online != (state == SNAP_ONLINE)) {
                    cJSON_ReplaceItemInObject(d, "state",
                                              cJSON_CreateString(snap_state_name(state)));
                    cJSON_ReplaceItemInObject(d, "cause", cJSON_CreateString(fs_cause_id(cause)));
                    cJSON_ReplaceItemInObject(d, "message", cJSON_CreateString(msg));
                }
                free(gr->detail[cause]);
                gr->detail[cause] = cJSON_PrintUnformatted(d);
                cJSON_Delete(d);
            } else if (gr->detail[cause] == NULL) {
                gr->want_capture = 1;
            }
            f->dirty = 1;
        }
        double iv = gen->cfg->interval_s * 1000.0;
        double jit = gen->cfg->jitter * iv * (2.0 * rnd(f) - 1.0);
        e->next_due = (int64_t)uv_now(f->loop) + (int64_t)(iv + jit);
        if (r->cancelled && !f->closing)
            e->next_due = (int64_t)uv_now(f->loop);
        heap_push(gen, j->ep);
    }
    gen_unref(gen);
    free(j);
    if (!f->closing)
        tick_soon(f, 0);
}

static void start_job(fleet_t *f, uint32_t ep)
{
    fleet_gen_t *g = f->gen;
    fleet_job_t *j = fs_xcalloc(1, sizeof(*j));
    j->f = f;
    j->gen = g;
    j->ep = ep;
    const probe_opts_t *po;
    probe_opts_t local;
    if (ep == UINT32_MAX) {
        po = &g->ref.popts;
        f->ref_in_flight = 1;
    } else {
        fleet_ep_t *e = &g->eps[ep];
        fleet_group_t *gr = &g->groups[e->group];
        e->in_flight = 1;
        po = &gr->pl.popts;
        int64_t now_s = fs_wall_ms() / 1000;
        if (gr->want_capture || now_s - gr->detail_at >= FLEET_DETAIL_REFRESH_S) {
            /* capture the chain only when the group's detail is due: it costs allocations */
            local = gr->pl.popts;
            local.capture_chain = 1;
            po = &local;
            j->captured = 1;
            gr->detail_at = now_s;
            gr->want_capture = 0;
        }
    }
    g->refs++;
    job_link(f, j);
    f->in_flight++;
    int rc = probe_start(&j->probe, f->loop, po, on_probe_done, j);
    if (rc < 0) {
        /* Cannot happen with a validated config (https always has a context); recover. */
        fleet_log(f, "probe could not start: %s", uv_strerror(rc));
        job_unlink(f, j);
        f->in_flight--;
        g->refs--;
        if (ep != UINT32_MAX) {
            g->eps[ep].in_flight = 0;
            g->eps[ep].next_due = (int64_t)uv_now(f->loop) + 1000;
            heap_push(g, ep);
        } else {
            f->ref_in_flight = 0;
        }
        free(j);
    }
}

static void on_tick(uv_timer_t *t)
{
    fleet_t *f = container_of(t, fleet_t, tick);
    fleet_gen_t *g = f->gen;
    const cfg_limits_t *lim = &g->cfg->limits;
    uint64_t now = uv_now(f->loop);
    /* Token bucket: handshakes_per_s, with a burst of a tenth of a second's worth. */
    double burst = lim->handshakes_per_s < 1 ? 1 : lim->handshakes_per_s / 10.0 + 1;
    f->tokens += (double)(now - f->tokens_at) * lim->handshakes_per_s / 1000.0;
    if (f->tokens > burst)
        f->tokens = burst;
    f->tokens_at = now;
    /* profile_mismatch needs the reference's verdict: only endpoints whose profile differs
     * from the reference binding wait for its first result; the others probe at once. */
    if (!f->ref_known && !f->ref_in_flight)
        start_job(f, UINT32_MAX);
    while (f->in_flight < lim->max_in_flight && g->nheap > 0 &&
           g->eps[g->heap[0]].next_due <= (int64_t)now && f->tokens >= 1.0) {
        uint32_t ep = heap_pop(g);
        if (!f->ref_known && g->groups[g->eps[ep].group].pl.profile_differs) {
            g->eps[ep].next_due = (int64_t)now + 100;
            heap_push(g, ep);
            continue;
        }
        f->tokens -= 1.0;
        start_job(f, ep);
    }
    if (g->nheap == 0 || f->in_flight >= lim->max_in_flight)
        return; /* a completion re-arms the tick */
    int64_t due = g->eps[g->heap[0]].next_due - (int64_t)now;
    uint64_t wait = due > 0 ? (uint64_t)due : 0;
    if (f->tokens < 1.0) {
        double tw_ms = ceil((1.0 - f->tokens) * 1000.0 / lim->handshakes_per_s);
        uint64_t tw =
            tw_ms > 60000 ? 60000 : (uint64_t)tw_ms; /* tiny rates: re-check a minute on */
        if (tw > wait)
            wait = tw;
    }
    uv_timer_start(&f->tick, on_tick, wait ? wait : 1, 0);
}

static void tick_soon(fleet_t *f, uint64_t ms)
{
    if (f->closing)
        return;
    if (uv_is_active((uv_handle_t *)&f->tick) && ms > 0)
        return;
    uv_timer_start(&f->tick, on_tick, ms, 0);
}

static void on_ref_timer(uv_timer_t *t)
{
    fleet_t *f = container_of(t, fleet_t, ref_timer);
    if (!f->ref_in_flight && !f->closing)
        start_job(f, UINT32_MAX);
}

static void schedule_reference(fleet_t *f)
{
    uint64_t iv = (uint64_t)(f->gen->cfg->interval_s * 1000.0);
    uv_timer_start(&f->ref_timer, on_ref_timer, 0, iv ? iv : 1000);
}

/* ---- snapshots ---- */

void fleet_publish(fleet_t *f)
{
    fleet_gen_t *g = f->gen;
    snap_t *s = snap_new();
    s->generated_at = fs_wall_ms() / 1000;
    s->started_at = f->started_at;
    s->vantage = fs_xstrdup(g->cfg->vantage);
    char shard[32];
    snprintf(shard, sizeof(shard), "%u/%u", g->cfg->shard_index, g->cfg->shard_count);
    s->shard = fs_xstrdup(shard);
    s->totals = f->totals;
    s->ngroups = g->ngroups;
    s->groups = fs_xcalloc(g->ngroups ? g->ngroups : 1, sizeof(*s->groups));
    for (size_t i = 0; i < g->ngroups; i++) {
        s->groups[i].name = fs_xstrdup(g->groups[i].cfg->name);
        s->groups[i].counts = g->groups[i].counts;
        for (int c = 0; c < FS_CAUSE_COUNT; c++) {
            const fleet_group_t *gr = &g->groups[i];
            s->groups[i].cause_message[c] = gr->msg[c] ? fs_xstrdup(gr->msg[c]) : NULL;
            s->groups[i].cause_detail[c] = gr->detail[c] ? fs_xstrdup(gr->detail[c]) : NULL;
        }
        s->groups[i].chain_not_after = g->groups[i].chain_not_after;
        s->groups[i].chain_not_before = g->groups[i].chain_not_before;
        s->groups[i].crl_next_update = g->groups[i].crl_next_update;
        s->groups[i].clock_skew_s = g->groups[i].cfg->clock_skew_s;
        s->groups[i].rev_strict = g->groups[i].cfg->revocation.mode == CFG_REV_STRICT;
    }
    s->nendpoints = g->neps;
    s->endpoints = fs_xmalloc((g->neps ? g->neps : 1) * sizeof(*s->endpoints));
    for (uint32_t i = 0; i < g->neps; i++) {
        const fleet_ep_t *e = &g->eps[i];
        snap_endpoint_t *o = &s->endpoints[i];
        o->group = e->group;
        o->index = e->index;
        o->state = e->state;
        o->cause = e->cause;
        o->warnings = e->warnings;
        o->since = e->since;
        o->last_probe_at = e->last_probe;
        memcpy(o->timings_ms, e->timings_ms, sizeof(o->timings_ms));
    }
    s->probes_total = f->probes_total;
    memcpy(s->probes_by_result, f->probes_by_result, sizeof(s->probes_by_result));
    s->probes_in_flight = f->in_flight;
    for (int ph = 0; ph < SNAP_PH_COUNT; ph++) {
        uint64_t cum = 0;
        for (int b = 0; b <= SNAP_HIST_BUCKETS; b++) {
            cum += f->hist[ph][b];
            s->hist_counts[ph][b] = cum;
        }
        s->hist_sum[ph] = f->hist_sum[ph];
    }
    s->targets_json = f->targets_json ? fs_xstrdup(f->targets_json) : NULL;
    s->metrics_extra = f->metrics_extra ? fs_xstrdup(f->metrics_extra) : NULL;
    s->event_log_path = g->cfg->event_log ? fs_xstrdup(g->cfg->event_log) : NULL;
    s->event_log_dropped = f->event_dropped;
    s->event_log_error = f->event_error[0] ? fs_xstrdup(f->event_error) : NULL;
    s->event_log_error_at = f->event_error_at;
    s->ndaemon_warnings = f->nwarnings;
    s->daemon_warnings =
        fs_xmalloc((f->nwarnings ? f->nwarnings : 1) * sizeof(*s->daemon_warnings));
    memcpy(s->daemon_warnings, f->warnings, f->nwarnings * sizeof(*s->daemon_warnings));
    uint64_t first = f->event_seq > FLEET_EVENTS_MAX ? f->event_seq - FLEET_EVENTS_MAX : 0;
    s->nevents = (size_t)(f->event_seq - first);
    s->events = fs_xmalloc((s->nevents ? s->nevents : 1) * sizeof(*s->events));
    for (uint64_t q = first; q < f->event_seq; q++)
        s->events[q - first] = f->events[q % FLEET_EVENTS_MAX];
    f->dirty = 0;
    if (f->o.publish)
        f->o.publish(f->o.arg, s);
    else
        snap_unref(s);
}

static void on_publish_timer(uv_timer_t *t)
{
    fleet_t *f = container_of(t, fleet_t, publish_timer);
    /* Publish even when nothing changed: /healthz uses the snapshot's age as the loop's pulse. */
    fleet_publish(f);
}

/* ---- lifecycle ---- */

/* The first cycle runs as fast as the limits allow (the token bucket and max_in_flight protect
 * the server), spread over the time the rate needs anyway (at least 1 s, at most
 * jitter * interval) so endpoints do not start in lockstep; later cycles spread further with
 * the per-probe jitter. An admin mid-rollover wants the first picture now, not in an hour. */
static double first_cycle_spread_ms(const fleet_gen_t *g, uint32_t n)
{
    double spread = (double)n / g->cfg->limits.handshakes_per_s * 1000.0;
    double cap = g->cfg->jitter * g->cfg->interval_s * 1000.0;
    if (spread > cap)
        spread = cap;
    return spread < 1000 ? 1000 : spread;
}

static void initial_schedule(fleet_t *f, fleet_gen_t *g)
{
    double spread = first_cycle_spread_ms(g, g->neps);
    int64_t now = (int64_t)uv_now(f->loop);
    for (uint32_t i = 0; i < g->neps; i++)
        g->eps[i].next_due = now + (int64_t)(rnd(f) * spread);
    heap_rebuild(g);
}

/* Opens cfg's event log for appending into *fd (-1 when none is configured); *partial tells
 * whether the file ends inside a line (a record cut short earlier), so the next one starts on
 * a fresh line. O_NONBLOCK: a FIFO swapped in for the file fails instead of blocking the loop. */
static int open_event_log(const cfg_t *cfg, int *fd, int *partial, char err[256])
{
    struct stat st;
    *fd = -1;
    *partial = 0;
    if (cfg->event_log == NULL)
        return 0;
    int d = open(cfg->event_log, O_WRONLY | O_CREAT | O_APPEND | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
                 0640);
    if (d < 0 || fstat(d, &st) != 0) {
        snprintf(err, 256, "event_log: cannot open \"%s\" for appending: %s", cfg->event_log,
                 strerror(errno));
        if (d >= 0)
            close(d);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, 256, "event_log: \"%s\" is not a regular file", cfg->event_log);
        close(d);
        return -1;
    }
    int r =
        st.st_size > 0 ? open(cfg->event_log, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC) : -1;
    char last = '\n';
    if (r >= 0 && pread(r, &last, 1, st.st_size - 1) == 1 && last != '\n')
        *partial = 1;
    if (r >= 0)
        close(r);
    *fd = d;
    return 0;
}

/* daemon.warnings: running as root, the API's address (bound once, at start), and what the
 * current configuration says; those not seen before are logged. */
static void update_warnings(fleet_t *f, const cfg_t *cfg)
{
    snap_warning_t old[FS_ARRAY_SIZE(f->warnings)];
    size_t nold = f->nwarnings;
    cfg_warning_t cw[CFG_MAX_WARNINGS];
    size_t ncw = cfg_warnings(cfg, cw);
    memcpy(old, f->warnings, sizeof(old));
    f->nwarnings = 0;
    if (geteuid() == 0) {
        snap_warning_t *w = &f->warnings[f->nwarnings++];
        fs_strlcpy(w->code, "running_as_root", sizeof(w->code));
        fs_strlcpy(w->message,
                   "running as root: the daemon parses certificates, CRLs and HTTP answers from "
                   "the network; run it as an unprivileged user (deploy/systemd uses "
                   "DynamicUser=yes)",
                   sizeof(w->message));
    }
    for (size_t i = 0; i < ncw + 1 && f->nwarnings < FS_ARRAY_SIZE(f->warnings); i++) {
        /* the listen warning of the address in use, not of a reloaded file's */
        const cfg_warning_t *c = i < ncw ? &cw[i] : &f->listen_warning;
        if (c->code == NULL || (i < ncw && strcmp(c->code, CFG_WARN_LISTEN) == 0))
            continue;
        snap_warning_t *w = &f->warnings[f->nwarnings++];
        fs_strlcpy(w->code, c->code, sizeof(w->code));
        fs_strlcpy(w->message, c->message, sizeof(w->message));
    }
    for (size_t i = 0; i < f->nwarnings; i++) {
        size_t k = 0;
        while (k < nold && strcmp(old[k].message, f->warnings[i].message) != 0)
            k++;
        if (k == nold)
            fleet_log(f, "warning: %s", f->warnings[i].message);
    }
}

int fleet_new(fleet_t **out, uv_loop_t *loop, cfg_t *cfg, const fleet_opts_t *o, char err[256])
{
    fleet_t *f = fs_xcalloc(1, sizeof(*f));
    f->loop = loop;
    f->o = *o;
    f->event_fd = -1;
    if (f->o.publish_interval_ms == 0)
        f->o.publish_interval_ms = 1000;
    f->rng = (uint64_t)fs_wall_ms() * 0x9E3779B97F4A7C15ULL + (uint64_t)getpid();
    if (f->rng == 0)
        f->rng = 1;
    f->started_at = fs_wall_ms() / 1000;
    rev_cache_limits_t lim = {.max_age_s = cfg->cache.crl_max_age_s,
                              .max_bytes_total = (size_t)cfg->cache.crl_max_bytes_total};
    int log, partial;
    if (open_event_log(cfg, &log, &partial, err) < 0) {
        free(f);
        return -1;
    }
    if (rev_ctx_new(&f->rev, loop, &lim) < 0) {
        snprintf(err, 256, "cannot create the CRL/AIA retrieval context");
        if (log >= 0)
            close(log);
        free(f);
        return -1;
    }
    f->vcache = vcache_new(0);
    gen_env_t env = {.rev = f->rev, .vcache = f->vcache, .dns_override_only = o->dns_override_only};
    if (gen_build(&env, cfg, &f->gen, err) < 0) {
        vcache_free(f->vcache);
        rev_ctx_close(f->rev, NULL, NULL);
        if (log >= 0)
            close(log);
        free(f);
        return -1;
    }
    f->event_fd = log;
    f->event_partial = partial;
    recount(f);
    uv_timer_init(loop, &f->tick);
    uv_timer_init(loop, &f->publish_timer);
    uv_timer_init(loop, &f->ref_timer);
    f->tokens = 1;
    f->tokens_at = uv_now(loop);
    initial_schedule(f, f->gen);
    schedule_reference(f);
    tick_soon(f, 0);
    uv_timer_start(&f->publish_timer, on_publish_timer, 0, f->o.publish_interval_ms);
    fleet_log(f, "vantage %s: %u endpoints in %zu groups (shard %u/%u), interval %.0f s",
              cfg->vantage, f->gen->neps, cfg->ngroups, cfg->shard_index, cfg->shard_count,
              cfg->interval_s);
    cfg_warning_t cw[CFG_MAX_WARNINGS];
    size_t ncw = cfg_warnings(cfg, cw);
    for (size_t i = 0; i < ncw; i++)
        if (strcmp(cw[i].code, CFG_WARN_LISTEN) == 0)
            f->listen_warning = cw[i];
    update_warnings(f, cfg);
    *out = f;
    return 0;
}

static void cancel_jobs(fleet_t *f, fleet_gen_t *only)
{
    for (fleet_job_t *j = f->jobs; j != NULL; j = j->next)
        if (only == NULL || j->gen == only)
            probe_cancel(j->probe);
}

/* start[g] = index of group g's first endpoint; start[ngroups] = neps. */
static uint32_t *group_starts(const fleet_gen_t *g)
{
    uint32_t *start = fs_xcalloc(g->ngroups + 1, sizeof(uint32_t));
    uint32_t pos = 0;
    for (size_t gi = 0; gi < g->ngroups; gi++) {
        start[gi] = pos;
        while (pos < g->neps && g->eps[pos].group == gi)
            pos++;
    }
    start[g->ngroups] = pos;
    return start;
}

static size_t name_hash(const char *name)
{
    uint64_t h = 14695981039346656037ULL; /* FNV-1a */
    for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
        h ^= *c;
        h *= 1099511628211ULL;
    }
    return (size_t)h;
}

/* For each group of nc, the group of oc it continues (same name, cfg_group_equal), or -1.
 * Names are unique within a configuration, so one hash lookup per group: linear in the number
 * of groups, where comparing every pair would be quadratic. */
static int32_t *match_groups(const cfg_t *oc, const cfg_t *nc)
{
    int32_t *match = fs_xmalloc((nc->ngroups ? nc->ngroups : 1) * sizeof(*match));
    for (size_t gi = 0; gi < nc->ngroups; gi++)
        match[gi] = -1;
    if (nc->shard_index != oc->shard_index || nc->shard_count != oc->shard_count)
        return match;
    size_t nslot = 16;
    while (nslot < 2 * oc->ngroups)
        nslot *= 2;
    size_t *slot = fs_xcalloc(nslot, sizeof(*slot)), mask = nslot - 1;
    for (size_t oi = 0; oi < oc->ngroups; oi++) {
        size_t k = name_hash(oc->groups[oi].name) & mask;
        while (slot[k] != 0)
            k = (k + 1) & mask;
        slot[k] = oi + 1;
    }
    for (size_t gi = 0; gi < nc->ngroups; gi++) {
        for (size_t k = name_hash(nc->groups[gi].name) & mask; slot[k] != 0; k = (k + 1) & mask) {
            size_t oi = slot[k] - 1;
            if (strcmp(oc->groups[oi].name, nc->groups[gi].name) == 0) {
                if (cfg_group_equal(oc, oi, nc, gi))
                    match[gi] = (int32_t)oi;
                break;
            }
        }
    }
    free(slot);
    return match;
}

fleet_next_t *fleet_reload_begin(fleet_t *f)
{
    fleet_next_t *n = fs_xcalloc(1, sizeof(*n));
    n->event_fd = -1;
    n->env = (gen_env_t){
        .rev = f->rev, .vcache = f->vcache, .dns_override_only = f->o.dns_override_only};
    n->old = f->gen;
    n->old->refs++;
    return n;
}

int fleet_reload_build(fleet_next_t *n, cfg_t *cfg, char err[256])
{
    assert(n->gen == NULL);
    /* Reopened on every reload, so `logrotate` + SIGHUP starts a fresh file. */
    if (open_event_log(cfg, &n->event_fd, &n->event_partial, err) < 0)
        return -1;
    if (gen_build(&n->env, cfg, &n->gen, err) < 0) {
        if (n->event_fd >= 0)
            close(n->event_fd);
        n->event_fd = -1;
        return -1;
    }
    n->match = match_groups(n->old->cfg, cfg);
    return 0;
}

void fleet_next_free(fleet_next_t *n)
{
    if (n == NULL)
        return;
    gen_unref(n->gen);
    gen_unref(n->old);
    if (n->event_fd >= 0)
        close(n->event_fd);
    free(n->match);
    free(n);
}

/* A reloaded setting that only takes effect at a restart (cfg_restart_changes). */
static void restart_warning(void *arg, const char *key)
{
    fleet_log(arg, "warning: \"%s\" changed; it takes effect at the next restart", key);
}

void fleet_reload_apply(fleet_t *f, fleet_next_t *n)
{
    assert(n->gen != NULL);
    fleet_gen_t *ng = n->gen, *old = f->gen;
    cfg_t *cfg = ng->cfg;
    if (n->old != old) { /* another reload was applied since begin: match against this one */
        free(n->match);
        n->match = match_groups(old->cfg, cfg);
    }
    const cfg_t *oc = old->cfg;
    int same_ref =
        strcmp(oc->profiles[oc->ref_profile_idx].url, cfg->profiles[cfg->ref_profile_idx].url) ==
            0 &&
        memcmp(oc->trust[oc->ref_trust_idx].digest, cfg->trust[cfg->ref_trust_idx].digest, 32) == 0;
    size_t kept = 0;
    /* Endpoints of unchanged groups keep their state; a group's endpoints are contiguous. */
    uint32_t *ostart = group_starts(old), *nstart = group_starts(ng);
    for (size_t gi = 0; gi < ng->ngroups; gi++) {
        if (n->match[gi] < 0)
            continue;
        size_t oi = (size_t)n->match[gi];
        uint32_t cnt = nstart[gi + 1] - nstart[gi], on = ostart[oi + 1] - ostart[oi];
        for (uint32_t k = 0; k < cnt && k < on; k++) {
            fleet_ep_t *ne = &ng->eps[nstart[gi] + k];
            *ne = old->eps[ostart[oi] + k];
            ne->group = (uint16_t)gi;
            ne->in_flight = 0;
        }
        fleet_group_t *ngr = &ng->groups[gi], *ogr = &old->groups[oi];
        for (int c = 0; c < FS_CAUSE_COUNT; c++) {
            ngr->msg[c] = ogr->msg[c] ? fs_xstrdup(ogr->msg[c]) : NULL;
            ngr->detail[c] = ogr->detail[c] ? fs_xstrdup(ogr->detail[c]) : NULL;
        }
        ngr->detail_at = ogr->detail_at;
        ngr->chain_not_after = ogr->chain_not_after;
        ngr->chain_not_before = ogr->chain_not_before;
        ngr->crl_next_update = ogr->crl_next_update;
        kept++;
    }
    free(ostart);
    free(nstart);
    cancel_jobs(f, old);
    vcache_clear(f->vcache); /* its entries name the old generation's contexts */
    f->gen = ng;
    n->gen = NULL;
    if (f->event_fd >= 0)
        close(f->event_fd);
    f->event_fd = n->event_fd;
    f->event_partial = n->event_partial;
    n->event_fd = -1;
    cfg_restart_changes(old->cfg, cfg, restart_warning, f);
    /* Endpoints that kept their state keep their schedule; new ones start spread out. */
    int64_t now = (int64_t)uv_now(f->loop);
    double spread = first_cycle_spread_ms(ng, ng->neps);
    for (uint32_t i = 0; i < ng->neps; i++) {
        fleet_ep_t *e = &ng->eps[i];
        if (e->state == SNAP_PENDING && e->last_probe == 0)
            e->next_due = now + (int64_t)(rnd(f) * spread);
        else if (e->next_due > now + (int64_t)(cfg->interval_s * 1000.0 * (1 + cfg->jitter)))
            e->next_due = now + (int64_t)(rnd(f) * cfg->interval_s * 1000.0);
    }
    heap_rebuild(ng);
    recount(f);
    fleet_next_free(n); /* drops its reference to old */
    gen_unref(old);
    fleet_log(f, "configuration reloaded: %zu groups (%zu kept their state), %u endpoints",
              cfg->ngroups, kept, ng->neps);
    update_warnings(f, cfg);
    if (!same_ref)
        f->ref_known = 0; /* profile_mismatch waits for the new reference's verdict */
    schedule_reference(f);
    tick_soon(f, 0);
    f->dirty = 1;
    fleet_publish(f);
}

int fleet_reload(fleet_t *f, cfg_t *cfg, char err[256])
{
    fleet_next_t *n = fleet_reload_begin(f);
    if (fleet_reload_build(n, cfg, err) < 0) {
        fleet_next_free(n);
        return -1;
    }
    fleet_reload_apply(f, n);
    return 0;
}

void fleet_scan_now(fleet_t *f)
{
    fleet_gen_t *g = f->gen;
    int64_t now = (int64_t)uv_now(f->loop);
    for (uint32_t i = 0; i < g->neps; i++)
        if (!g->eps[i].in_flight)
            g->eps[i].next_due = now;
    heap_rebuild(g);
    if (!f->ref_in_flight)
        start_job(f, UINT32_MAX);
    tick_soon(f, 0);
    fleet_log(f, "scan requested: %u endpoints due now", g->neps);
}

/* Shutdown: cancel probes, wait for their sockets to close, close the retrieval context,
 * then the timers; the fleet is freed in the last close callback. */
static void on_closed(uv_handle_t *h)
{
    fleet_t *f = h->data;
    if (--f->pending_closes > 0)
        return;
    gen_unref(f->gen);
    vcache_free(f->vcache);
    free(f->targets_json);
    free(f->metrics_extra);
    if (f->event_fd >= 0)
        close(f->event_fd);
    void (*done)(void *) = f->stop_done;
    void *arg = f->stop_arg;
    free(f);
    if (done)
        done(arg);
}

static void on_rev_closed(void *arg)
{
    fleet_t *f = arg;
    f->rev = NULL;
    uv_close((uv_handle_t *)&f->tick, on_closed);
}

static void wait_jobs(uv_timer_t *t)
{
    fleet_t *f = t->data;
    if (f->jobs != NULL)
        return; /* cancelled probes are still closing their sockets */
    uv_timer_stop(t);
    rev_ctx_close(f->rev, on_rev_closed, f);
}

void fleet_stop(fleet_t *f, void (*done)(void *arg), void *arg)
{
    if (f->closing)
        return;
    f->closing = 1;
    f->stop_done = done;
    f->stop_arg = arg;
    cancel_jobs(f, NULL);
    f->tick.data = f;
    f->publish_timer.data = f;
    f->ref_timer.data = f;
    f->pending_closes = 3;
    uv_close((uv_handle_t *)&f->publish_timer, on_closed);
    uv_close((uv_handle_t *)&f->ref_timer, on_closed);
    uv_timer_start(&f->tick, wait_jobs, 0, 10);
}
