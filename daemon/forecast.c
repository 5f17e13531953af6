/* forecast.c - SPEC §4.5: the fleet N days ahead, from a snapshot. Certificate edges and CRL
 * freshness are separate (a weekly CRL republished on time is not an outage), time-dependent
 * causes are re-evaluated at the instant (a clock that is behind recovers once the chain's
 * notBefore passes), and a group already offline is reported as offline now. */
#include "daemon/forecast.h"
#include "probes/util.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static void add_counts(cJSON *o, const snap_counts_t *c)
{
    cJSON *e = cJSON_AddObjectToObject(o, "endpoints");
    cJSON_AddNumberToObject(e, "total", c->total);
    cJSON_AddNumberToObject(e, "online", c->online);
    cJSON_AddNumberToObject(e, "offline", c->offline);
    cJSON_AddNumberToObject(e, "pending", c->pending);
    cJSON *causes = cJSON_AddObjectToObject(o, "causes");
    for (int i = 1; i < FS_CAUSE_COUNT; i++)
        if (c->causes[i] > 0)
            cJSON_AddNumberToObject(causes, fs_cause_id(i), c->causes[i]);
}

static void add_to(snap_counts_t *total, const snap_counts_t *c)
{
    total->total += c->total;
    total->online += c->online;
    total->offline += c->offline;
    total->pending += c->pending;
    for (int k = 0; k < FS_CAUSE_COUNT; k++)
        total->causes[k] += c->causes[k];
}

static void go_offline(snap_counts_t *c, fs_cause_t why)
{
    c->offline += c->online;
    c->causes[why] += c->online;
    c->online = 0;
}

/* Host time of a validity edge the group sees at its own clock (0: none). */
static int64_t edge(const snap_group_t *g, int64_t t)
{
    return t != 0 ? t - g->clock_skew_s : 0;
}

/* The group's counts at host time `at`, certificates not renewed; with crl, CRLs not
 * republished either. */
static snap_counts_t counts_at(const snap_group_t *g, int64_t at, int crl)
{
    snap_counts_t c = g->counts;
    int64_t nbf = edge(g, g->chain_not_before), naf = edge(g, g->chain_not_after);
    /* cert_not_yet_valid is about the instant: it is gone once the chain's notBefore passes
     * at the group's clock (and becomes cert_expired below if the chain has expired by then). */
    uint32_t notyet = c.causes[FS_CAUSE_CERT_NOT_YET_VALID];
    if (notyet > 0 && nbf != 0 && at >= nbf) {
        c.causes[FS_CAUSE_CERT_NOT_YET_VALID] = 0;
        c.offline -= notyet;
        c.online += notyet;
    }
    if (naf != 0 && at >= naf)
        go_offline(&c, FS_CAUSE_CERT_EXPIRED);
    if (crl && g->rev_strict && g->crl_next_update != 0 && at >= edge(g, g->crl_next_update))
        go_offline(&c, FS_CAUSE_CRL_EXPIRED);
    return c;
}

static fs_cause_t dominant(const snap_counts_t *c)
{
    fs_cause_t best = FS_CAUSE_NONE;
    for (int i = 1; i < FS_CAUSE_COUNT; i++)
        if (c->causes[i] > c->causes[best])
            best = (fs_cause_t)i;
    return best;
}

static void add_time(cJSON *o, const char *key, int64_t t)
{
    char ts[32];
    if (t != 0)
        cJSON_AddStringToObject(o, key, fs_rfc3339(t, ts, sizeof(ts)));
    else
        cJSON_AddNullToObject(o, key);
}

static void add_cause(cJSON *o, const char *key, fs_cause_t c)
{
    if (c != FS_CAUSE_NONE)
        cJSON_AddStringToObject(o, key, fs_cause_id(c));
    else
        cJSON_AddNullToObject(o, key);
}

/* The output document: megabytes with 65,535 groups, so it is written as it goes (one group's
 * cJSON at a time) rather than built as one tree, which cost ~1.5 KiB of nodes per group. */
typedef struct out_s {
    char *data;
    size_t len, cap;
    int failed;
} out_t;

static void out_put(out_t *o, const char *p, size_t n)
{
    if (o->failed)
        return;
    if (n >= o->cap - o->len) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap - o->len <= n)
            cap *= 2;
        char *d = realloc(o->data, cap);
        if (d == NULL) {
            o->failed = 1;
            return;
        }
        o->data = d;
        o->cap = cap;
    }
    memcpy(o->data + o->len, p, n);
    o->len += n;
    o->data[o->len] = '\0';
}

/* Appends j printed, without its closing brace when open is set. Consumes j. */
static void out_json(out_t *o, cJSON *j, int open)
{
    char small[2048];
    char *text =
        cJSON_PrintPreallocated(j, small, sizeof(small), 0) ? small : cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (text == NULL) {
        o->failed = 1;
        return;
    }
    size_t n = strlen(text);
    out_put(o, text, open && n > 0 ? n - 1 : n);
    if (text != small)
        free(text);
}

/* One group's forecast object (the counts at `at`, its edges), consumed by out_json. */
static cJSON *group_json(const snap_group_t *g, int64_t at, int64_t now)
{
    snap_counts_t c = counts_at(g, at, 0), cc = counts_at(g, at, 1);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", g->name);
    add_counts(o, &c);
    const snap_counts_t *n = &g->counts;
    int offline_now = n->offline > 0 && n->online == 0 && n->pending == 0;
    cJSON_AddBoolToObject(o, "offline_now", offline_now);
    /* When its endpoints go offline, and why. A group offline now says so (now, its present
     * cause), never a future date; otherwise the certificate edge. */
    int64_t naf = edge(g, g->chain_not_after), crl = 0;
    if (g->rev_strict && g->crl_next_update != 0)
        crl = edge(g, g->crl_next_update);
    if (offline_now) {
        add_time(o, "offline_from", now);
        add_cause(o, "offline_cause", dominant(n));
    } else {
        add_time(o, "offline_from", naf);
        add_cause(o, "offline_cause", naf ? FS_CAUSE_CERT_EXPIRED : FS_CAUSE_NONE);
    }
    /* The CRL edge, separately: only if the CA stops publishing. */
    add_time(o, "crl_offline_from", offline_now ? 0 : crl);
    add_cause(o, "crl_offline_cause", !offline_now && crl ? FS_CAUSE_CRL_EXPIRED : FS_CAUSE_NONE);
    add_counts(cJSON_AddObjectToObject(o, "if_crl_not_republished"), &cc);
    return o;
}

char *forecast_json(const snap_t *s, int days, int64_t now)
{
    int64_t at = now + (int64_t)days * 86400;
    char ts[32];
    snap_counts_t total = {0}, total_crl = {0};
    for (size_t i = 0; i < s->ngroups; i++) {
        snap_counts_t c = counts_at(&s->groups[i], at, 0), cc = counts_at(&s->groups[i], at, 1);
        add_to(&total, &c);
        add_to(&total_crl, &cc);
    }
    out_t o = {0};
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "days", days);
    cJSON_AddStringToObject(root, "at", fs_rfc3339(at, ts, sizeof(ts)));
    cJSON_AddStringToObject(root, "assumes",
                            "no certificate is renewed; CRLs are republished on time (see "
                            "if_crl_not_republished for when they are not)");
    add_counts(root, &total);
    add_counts(cJSON_AddObjectToObject(root, "if_crl_not_republished"), &total_crl);
    out_json(&o, root, 1);
    out_put(&o, ",\"groups\":[", 11);
    for (size_t i = 0; i < s->ngroups; i++) {
        if (i > 0)
            out_put(&o, ",", 1);
        out_json(&o, group_json(&s->groups[i], at, now), 0);
    }
    out_put(&o, "]}", 2);
    if (o.failed) {
        free(o.data);
        return NULL;
    }
    return o.data;
}
