/* aggregate.c - what the fleet knows: each result folded into its endpoint, group and fleet
 * counters (incrementally), events, per-phase histograms, and the snapshot published from it. */
#include "daemon/fleet_int.h"
#include "probes/util.h"
#include "web/render.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A group detail past this is not kept (a chain of ten certificates with thousands of SANs). */
#define FLEET_DETAIL_MAX (4u * 1024 * 1024)

void fleet__counts_add(snap_counts_t *c, const fleet_ep_t *e, int sign)
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

void fleet__recount(fleet_t *f)
{
    fleet_gen_t *g = f->gen;
    memset(&f->totals, 0, sizeof(f->totals));
    for (size_t i = 0; i < g->ngroups; i++)
        memset(&g->groups[i].counts, 0, sizeof(g->groups[i].counts));
    for (uint32_t i = 0; i < g->neps; i++) {
        fleet__counts_add(&g->groups[g->eps[i].group].counts, &g->eps[i], 1);
        fleet__counts_add(&f->totals, &g->eps[i], 1);
    }
}

void fleet__ep_id(const fleet_gen_t *g, const fleet_ep_t *e, char *buf, size_t n)
{
    snprintf(buf, n, "%s-%05u", g->groups[e->group].cfg->name, e->index);
}

/* One more event in the ring, handed to the store (on_event); logged to the event file when
 * log is set. */
static snap_event_t *push_event(fleet_t *f, const char *subject, const char *target, int old_state,
                                int new_state, int cause, const char *message, int log)
{
    snap_event_t *ev = &f->events[f->event_seq % FLEET_EVENTS_MAX];
    ev->seq = ++f->event_seq;
    ev->at = fs_wall_ms() / 1000;
    fs_strlcpy(ev->subject, subject, sizeof(ev->subject));
    fs_strlcpy(ev->target, target != NULL ? target : "", sizeof(ev->target));
    ev->old_state = (uint8_t)old_state;
    ev->new_state = (uint8_t)new_state;
    ev->cause = (uint8_t)cause;
    if (log)
        fleet__event_log_line(f, ev, message);
    if (f->o.on_event)
        f->o.on_event(f->o.arg, ev, message);
    return ev;
}

void fleet__push_event(fleet_t *f, const char *subject, const char *target, int old_state,
                       int new_state, int cause, const char *message)
{
    push_event(f, subject, target, old_state, new_state, cause, message, 1);
}

void fleet_config_event(fleet_t *f, int applied, const char *message)
{
    /* The event file has its own line for an applied reload ("Configuration updated
     * successfully", reload.c); a refused one is logged by the caller with its reason. */
    push_event(f, applied ? "config:applied" : "config:refused", NULL, SNAP_PENDING, SNAP_PENDING,
               FS_CAUSE_NONE, message, 0);
    f->dirty = 1;
}

void fleet__observe(fleet_t *f, const probe_result_t *r)
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

/* A group event (SPEC §5) when the group's online/offline split (any endpoint offline or none)
 * or its dominant cause changes: a rollover reads as a few group lines, not one per endpoint. */
int fleet__group_split(const fleet_group_t *gr, uint8_t *state, uint8_t *cause)
{
    const snap_counts_t *c = &gr->counts;
    if (c->online + c->offline == 0)
        return 0; /* nothing probed yet */
    *state = c->offline > 0 ? SNAP_OFFLINE : SNAP_ONLINE;
    *cause = FS_CAUSE_NONE;
    for (int k = 1; k < FS_CAUSE_COUNT; k++)
        if (c->causes[k] > c->causes[*cause])
            *cause = (uint8_t)k;
    return 1;
}

static void group_event(fleet_t *f, const fleet_gen_t *gen, fleet_group_t *gr)
{
    const snap_counts_t *c = &gr->counts;
    uint8_t state, cause;
    if (!fleet__group_split(gr, &state, &cause) || (state == gr->ev_state && cause == gr->ev_cause))
        return;
    char subject[96], line[256];
    snprintf(subject, sizeof(subject), "group:%s", gr->cfg->name);
    if (state == SNAP_OFFLINE)
        snprintf(line, sizeof(line), "%u of %u endpoints offline, most for %s: %s", c->offline,
                 c->total, fs_cause_id((fs_cause_t)cause),
                 fs_cause_info((fs_cause_t)cause)->symptom);
    else
        snprintf(line, sizeof(line), "all %u probed endpoints online (%u pending)", c->online,
                 c->pending);
    fleet__push_event(f, subject, gen->cfg->targets[gr->pl.target_idx].name, gr->ev_state, state,
                      cause, line);
    gr->ev_state = state;
    gr->ev_cause = cause;
}

/* Folds one endpoint's probe result into its state, its group's and the fleet's counters, the
 * events and the group's per-outcome message and detail. */
void fleet__record_result(fleet_t *f, fleet_gen_t *gen, uint32_t ep, const probe_result_t *r,
                          int captured)
{
    fleet_ep_t *e = &gen->eps[ep];
    fleet_group_t *gr = &gen->groups[e->group];
    char msg[sizeof(r->message)];
    const fleet_target_t *t = &gen->targets[gr->pl.target_idx];
    policy_ref_t ref = !t->known ? POLICY_REF_UNKNOWN : t->ok ? POLICY_REF_UP : POLICY_REF_DOWN;
    fs_cause_t cause = policy_verdict(&gr->pl, r, ref, msg, sizeof(msg));
    int state = cause == FS_CAUSE_NONE ? SNAP_ONLINE : SNAP_OFFLINE;
    int64_t now_s = r->started_at;
    fleet__counts_add(&gr->counts, e, -1);
    fleet__counts_add(&f->totals, e, -1);
    int changed = e->state != state || e->cause != cause;
    int old_state = e->state;
    e->state = (uint8_t)state;
    e->cause = (uint8_t)cause;
    e->warnings = r->warnings;
    /* A farm (SPEC §4.1): endpoints that connect to the target's binding itself, through the
     * addresses its reference meets, meet them in turn; when they disagree, every such
     * endpoint carries the warning. */
    if (!gr->pl.profile_differs && policy_same_addresses(&gr->pl, &t->pl)) {
        int shown;
        if (fleet__target_backend(&gen->targets[gr->pl.target_idx], r,
                                  FLEET_BACKEND_MAX_AGE_S(gen->cfg), &shown))
            e->warnings |= FS_WARN_BIT(FS_WARN_BACKEND_INCONSISTENT);
        if (shown && gen == f->gen)
            fleet__target_backends_changed(f, gr->pl.target_idx);
    }
    memcpy(e->timings_ms, r->timings_ms, sizeof(e->timings_ms));
    e->last_probe = now_s;
    e->restored = 0;
    fleet__counts_add(&gr->counts, e, 1);
    fleet__counts_add(&f->totals, e, 1);
    group_event(f, gen, gr);
    if (changed) {
        char id[96];
        e->since = now_s;
        fleet__ep_id(gen, e, id, sizeof(id));
        const fs_cause_info_t *ci = fs_cause_info(cause);
        char line[512];
        snprintf(line, sizeof(line), "%s%s%s",
                 state == SNAP_OFFLINE ? ci->symptom : "Connected to server",
                 state == SNAP_OFFLINE ? ": " : "", state == SNAP_OFFLINE ? msg : "");
        fleet__push_event(f, id, gen->cfg->targets[gr->pl.target_idx].name, old_state, state, cause,
                          line);
    }
    f->probes_total++;
    f->probes_by_result[state]++;
    fleet__observe(f, r);
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
    if (captured) { /* with or without a chain: every outcome has its detail */
        /* Rendered once, here, in the form GET /api/v1/endpoints/{id} serves: the verdict's
         * state, cause and message (a profile rule may have changed the probe's), no timings. */
        int verdict_differs = cause != r->cause || r->online != (state == SNAP_ONLINE);
        render_probe_t p = {
            .url = gen->cfg->profiles[gr->cfg->profile_idx].url,
            .online = state == SNAP_ONLINE,
            .cause = cause,
            .warnings = r->warnings,
            .message = verdict_differs ? msg : r->message,
            .addr = r->addr,
            .attempts = r->attempts,
            .nattempts = r->nattempts,
            .leaf_sha1 = r->leaf_sha1,
            .endpoint_time = r->endpoint_time,
            .tls_version = r->tls_version != 0 ? tlsc_version_name(r->tls_version) : NULL,
            .cipher = r->cipher,
            .http_status = r->http_status,
            .chain = &r->chain,
            .urls = r->rev != NULL ? r->rev->urls : NULL,
            .nurls = r->rev != NULL ? r->rev->nurls : 0,
        };
        wbuf_t b;
        wbuf_init(&b, 4096, FLEET_DETAIL_MAX);
        render_detail(&p, &b);
        free(gr->detail[cause]);
        gr->detail[cause] = wbuf_steal(&b, NULL); /* NULL past the cap: no detail shown */
    } else if (gr->detail[cause] == NULL) {
        gr->want_capture = 1;
    }
    f->dirty = 1;
}

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
        s->groups[i].target = fs_xstrdup(g->cfg->targets[g->groups[i].pl.target_idx].name);
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
        s->groups[i].rev_strict = g->groups[i].cfg->revocation.mode == REV_STRICT;
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
        o->restored = e->restored;
        o->warnings = e->warnings;
        o->since = e->since;
        o->last_probe_at = e->last_probe;
        memcpy(o->timings_ms, e->timings_ms, sizeof(o->timings_ms));
        snap_group_t *sg = &s->groups[e->group];
        if (e->state == SNAP_OFFLINE && e->since != 0 &&
            (sg->offline_since == 0 || e->since < sg->offline_since))
            sg->offline_since = e->since;
    }
    s->probes_total = f->probes_total;
    memcpy(s->probes_by_result, f->probes_by_result, sizeof(s->probes_by_result));
    s->probes_in_flight = f->in_flight;
    if (f->rev != NULL && !f->rev_closing) {
        rev_cache_stats_t rs;
        rev_cache_stats(f->rev, &rs);
        s->rev_hits = rs.hits;
        s->rev_joined = rs.joined;
        s->rev_fetches = rs.fetches;
        s->rev_sig_checks = rs.sig_checks;
        s->rev_entries = rs.entries;
        s->rev_bytes = rs.bytes;
    }
    for (int ph = 0; ph < SNAP_PH_COUNT; ph++) {
        uint64_t cum = 0;
        for (int b = 0; b <= SNAP_HIST_BUCKETS; b++) {
            cum += f->hist[ph][b];
            s->hist_counts[ph][b] = cum;
        }
        s->hist_sum[ph] = f->hist_sum[ph];
    }
    s->ntargets = g->ntargets;
    s->targets = fs_xcalloc(g->ntargets ? g->ntargets : 1, sizeof(*s->targets));
    for (size_t i = 0; i < g->ntargets; i++)
        s->targets[i] = g->targets[i].rec != NULL ? snap_target_ref(g->targets[i].rec) : NULL;
    s->revocation = fs_xcalloc(g->ntargets ? g->ntargets : 1, sizeof(*s->revocation));
    for (size_t i = 0; i < g->ntargets; i++)
        s->revocation[i] = fleet__rh_record(f, g->cfg->targets[i].name);
    s->event_log_path = g->cfg->event_log ? fs_xstrdup(g->cfg->event_log) : NULL;
    s->event_log_dropped = f->event_dropped;
    s->event_log_error = f->event_error[0] ? fs_xstrdup(f->event_error) : NULL;
    s->event_log_error_at = f->event_error_at;
    s->ndaemon_warnings = f->nwarnings;
    s->daemon_warnings =
        fs_xmalloc((f->nwarnings ? f->nwarnings : 1) * sizeof(*s->daemon_warnings));
    memcpy(s->daemon_warnings, f->warnings, f->nwarnings * sizeof(*s->daemon_warnings));
    uint64_t first = f->event_seq > FLEET_EVENTS_MAX ? f->event_seq - FLEET_EVENTS_MAX : 0;
    s->events = fs_xmalloc((f->event_seq > first ? f->event_seq - first : 1) * sizeof(*s->events));
    for (uint64_t q = first; q < f->event_seq; q++)
        if (f->events[q % FLEET_EVENTS_MAX].seq != 0) /* empty after a restore (restore.c) */
            s->events[s->nevents++] = f->events[q % FLEET_EVENTS_MAX];
    f->dirty = 0;
    if (f->o.publish)
        f->o.publish(f->o.arg, s);
    else
        snap_unref(s);
}

void fleet__on_publish_timer(uv_timer_t *t)
{
    fleet_t *f = container_of(t, fleet_t, publish_timer);
    /* Publish even when nothing changed: /healthz uses the snapshot's age as the loop's pulse. */
    fleet_publish(f);
}
