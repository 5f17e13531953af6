/* forecast.c - SPEC §4.5: the fleet N days ahead, from a snapshot. Certificate edges and CRL
 * freshness are separate (a weekly CRL republished on time is not an outage), time-dependent
 * causes are re-evaluated at the instant (a clock that is behind recovers once the chain's
 * notBefore passes), and a group already offline is reported as offline now. */
#include "daemon/forecast.h"
#include "web/wbuf.h"

/* The largest document written: 65,535 groups take ~30 MiB. */
#define FORECAST_MAX (256u * 1024 * 1024)

/* "endpoints":{"total":..,"online":..,"offline":..,"pending":..},"causes":{..} (non-zero only),
 * as in /api/v1/status. */
static void put_counts(wbuf_t *b, const snap_counts_t *c)
{
    wbuf_puts(b, "\"endpoints\":{\"total\":");
    wbuf_u64(b, c->total);
    wbuf_puts(b, ",\"online\":");
    wbuf_u64(b, c->online);
    wbuf_puts(b, ",\"offline\":");
    wbuf_u64(b, c->offline);
    wbuf_puts(b, ",\"pending\":");
    wbuf_u64(b, c->pending);
    wbuf_puts(b, "},\"causes\":{");
    int first = 1;
    for (int i = FS_CAUSE_NONE + 1; i < FS_CAUSE_COUNT; i++) {
        if (c->causes[i] == 0)
            continue;
        wbuf_json_key(b, fs_cause_id((fs_cause_t)i), first);
        wbuf_u64(b, c->causes[i]);
        first = 0;
    }
    wbuf_putc(b, '}');
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

static void put_cause(wbuf_t *b, fs_cause_t c)
{
    if (c != FS_CAUSE_NONE)
        wbuf_json_str(b, fs_cause_id(c));
    else
        wbuf_puts(b, "null");
}

/* One group's forecast object: the counts at `at`, and its edges. */
static void put_group(wbuf_t *b, const snap_group_t *g, int64_t at, int64_t now)
{
    snap_counts_t c = counts_at(g, at, 0), cc = counts_at(g, at, 1);
    wbuf_puts(b, "{\"name\":");
    wbuf_json_str(b, g->name);
    wbuf_puts(b, ",\"target\":");
    wbuf_json_str(b, g->target);
    wbuf_putc(b, ',');
    put_counts(b, &c);
    const snap_counts_t *n = &g->counts;
    int offline_now = n->offline > 0 && n->online == 0 && n->pending == 0;
    wbuf_puts(b, ",\"offline_now\":");
    wbuf_json_bool(b, offline_now);
    /* When its endpoints go offline, and why. A group offline now says so (now, its present
     * cause), never a future date; otherwise the certificate edge. */
    int64_t naf = edge(g, g->chain_not_after), crl = 0;
    if (g->rev_strict && g->crl_next_update != 0)
        crl = edge(g, g->crl_next_update);
    wbuf_puts(b, ",\"offline_from\":");
    wbuf_json_time(b, offline_now ? now : naf);
    wbuf_puts(b, ",\"offline_cause\":");
    put_cause(b, offline_now ? dominant(n) : naf ? FS_CAUSE_CERT_EXPIRED : FS_CAUSE_NONE);
    /* The CRL edge, separately: only if the CA stops publishing. */
    wbuf_puts(b, ",\"crl_offline_from\":");
    wbuf_json_time(b, offline_now ? 0 : crl);
    wbuf_puts(b, ",\"crl_offline_cause\":");
    put_cause(b, !offline_now && crl ? FS_CAUSE_CRL_EXPIRED : FS_CAUSE_NONE);
    wbuf_puts(b, ",\"if_crl_not_republished\":{");
    put_counts(b, &cc);
    wbuf_puts(b, "}}");
}

char *forecast_json(const snap_t *s, int days, int64_t now)
{
    int64_t at = now + (int64_t)days * 86400;
    snap_counts_t total = {0}, total_crl = {0};
    for (size_t i = 0; i < s->ngroups; i++) {
        snap_counts_t c = counts_at(&s->groups[i], at, 0), cc = counts_at(&s->groups[i], at, 1);
        add_to(&total, &c);
        add_to(&total_crl, &cc);
    }
    /* Megabytes with 65,535 groups: written group by group, never held as a tree. */
    wbuf_t b;
    wbuf_init(&b, 1024 + s->ngroups * 448, FORECAST_MAX);
    wbuf_puts(&b, "{\"days\":");
    wbuf_i64(&b, days);
    wbuf_puts(&b, ",\"at\":");
    wbuf_json_time(&b, at);
    wbuf_puts(&b, ",\"assumes\":\"no certificate is renewed; CRLs are republished on time (see "
                  "if_crl_not_republished for when they are not)\",");
    put_counts(&b, &total);
    wbuf_puts(&b, ",\"if_crl_not_republished\":{");
    put_counts(&b, &total_crl);
    wbuf_puts(&b, "},\"groups\":[");
    for (size_t i = 0; i < s->ngroups; i++) {
        if (i > 0)
            wbuf_putc(&b, ',');
        put_group(&b, &s->groups[i], at, now);
    }
    wbuf_puts(&b, "]}");
    return wbuf_steal(&b, NULL);
}
