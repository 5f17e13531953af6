/* render.c - JSON and Prometheus renderings of a snapshot, written by hand through web/wbuf.h:
 * /status must stay well under a millisecond for a thousand groups. */
#include "web/render.h"
#include "web/procstats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "probes/report.h"
#include "probes/util.h"

static const char *const phase_names[] = {"dns", "connect", "tls", "revocation", "request"};
_Static_assert(FS_ARRAY_SIZE(phase_names) == SNAP_PH_COUNT, "phase names out of sync");

/* ---- JSON documents -------------------------------------------------------------------- */

static const char *group_name(const snap_t *s, uint32_t g)
{
    return g < s->ngroups ? s->groups[g].name : NULL;
}

/* "total":..,"online":..,"offline":..,"pending":.. */
static void put_counts(wbuf_t *b, const snap_counts_t *c)
{
    wbuf_put(b, "\"total\":", 8);
    wbuf_u64(b, c->total);
    wbuf_put(b, ",\"online\":", 10);
    wbuf_u64(b, c->online);
    wbuf_put(b, ",\"offline\":", 11);
    wbuf_u64(b, c->offline);
    wbuf_put(b, ",\"pending\":", 11);
    wbuf_u64(b, c->pending);
}

/* "causes":{..},"warnings":{..} listing non-zero counts only. */
static void put_count_maps(wbuf_t *b, const snap_counts_t *c)
{
    int first = 1;
    wbuf_put(b, "\"causes\":{", 10);
    for (int i = FS_CAUSE_NONE + 1; i < FS_CAUSE_COUNT; i++) {
        if (c->causes[i] == 0)
            continue;
        wbuf_json_key(b, fs_cause_id((fs_cause_t)i), first);
        wbuf_u64(b, c->causes[i]);
        first = 0;
    }
    wbuf_put(b, "},\"warnings\":{", 14);
    first = 1;
    for (int i = 0; i < FS_WARN_COUNT; i++) {
        if (c->warnings[i] == 0)
            continue;
        wbuf_json_key(b, fs_warning_id((fs_warning_t)i), first);
        wbuf_u64(b, c->warnings[i]);
        first = 0;
    }
    wbuf_putc(b, '}');
}

/* A warning mask as the JSON array of its identifiers. */
static void put_warnings(wbuf_t *b, uint32_t mask)
{
    wbuf_putc(b, '[');
    int first = 1;
    for (int w = 0; w < FS_WARN_COUNT; w++) {
        if (!(mask & FS_WARN_BIT(w)))
            continue;
        if (!first)
            wbuf_putc(b, ',');
        wbuf_json_str(b, fs_warning_id((fs_warning_t)w));
        first = 0;
    }
    wbuf_putc(b, ']');
}

/* "state_db":{...}: the state database (docs/API.md). */
static void put_state_db(wbuf_t *b, const snap_store_t *d)
{
    wbuf_puts(b, "\"state_db\":{\"status\":\"");
    wbuf_puts(b, snap_db_status_name(d->status));
    wbuf_puts(b, "\",\"path\":");
    wbuf_json_str(b, d->path);
    wbuf_puts(b,
              d->rebuilt ? ",\"rebuilt\":true,\"moved_to\":" : ",\"rebuilt\":false,\"moved_to\":");
    wbuf_json_str(b, d->moved_to);
    wbuf_puts(b, ",\"last_error\":");
    wbuf_json_str(b, d->last_error);
    wbuf_puts(b, ",\"last_error_at\":");
    wbuf_json_time(b, d->last_error_at);
    wbuf_puts(b, ",\"last_write_at\":");
    wbuf_json_time(b, d->last_write_at);
    wbuf_puts(b, ",\"errors\":");
    wbuf_u64(b, d->errors);
    wbuf_puts(b, ",\"events_dropped\":");
    wbuf_u64(b, d->events_dropped);
    wbuf_puts(b, ",\"restored\":{\"endpoints\":");
    wbuf_u64(b, d->restored_endpoints);
    wbuf_puts(b, ",\"events\":");
    wbuf_u64(b, d->restored_events);
    wbuf_puts(b, ",\"cache\":");
    wbuf_u64(b, d->restored_cache);
    wbuf_puts(b, "}}");
}

int render_status(const snap_t *s, wbuf_t *b)
{
    wbuf_puts(b, "{\"generated_at\":");
    wbuf_json_time(b, s->generated_at);
    wbuf_puts(b, ",\"vantage\":");
    wbuf_json_str(b, s->vantage ? s->vantage : "");
    wbuf_puts(b, ",\"shard\":");
    wbuf_json_str(b, s->shard ? s->shard : "0/1");
    wbuf_puts(b, ",\"endpoints\":{");
    put_counts(b, &s->totals);
    wbuf_put(b, "},", 2);
    put_count_maps(b, &s->totals);
    wbuf_puts(b, ",\"groups\":[");
    for (size_t i = 0; i < s->ngroups; i++) {
        if (i > 0)
            wbuf_putc(b, ',');
        wbuf_puts(b, "{\"name\":");
        wbuf_json_str(b, s->groups[i].name ? s->groups[i].name : "");
        wbuf_putc(b, ',');
        put_counts(b, &s->groups[i].counts);
        wbuf_putc(b, ',');
        put_count_maps(b, &s->groups[i].counts);
        wbuf_putc(b, '}');
    }
    wbuf_puts(b, "],\"scan\":{\"probes_total\":");
    wbuf_u64(b, s->probes_total);
    wbuf_puts(b, ",\"probes_in_flight\":");
    wbuf_u64(b, s->probes_in_flight);
    wbuf_puts(b, ",\"started_at\":");
    wbuf_json_time(b, s->started_at);
    wbuf_puts(b, "},\"event_log\":{\"path\":");
    wbuf_json_str(b, s->event_log_path);
    wbuf_puts(b, ",\"dropped_lines\":");
    wbuf_u64(b, s->event_log_dropped);
    wbuf_puts(b, ",\"last_error\":");
    wbuf_json_str(b, s->event_log_error);
    wbuf_puts(b, ",\"last_error_at\":");
    wbuf_json_time(b, s->event_log_error_at);
    wbuf_puts(b, "},");
    put_state_db(b, &s->state_db);
    wbuf_puts(b, ",\"config\":{\"last_reload\":");
    if (s->reload_at == 0) {
        wbuf_puts(b, "null}");
    } else {
        wbuf_puts(b, "{\"at\":");
        wbuf_json_time(b, s->reload_at);
        wbuf_puts(b, s->reload_ok ? ",\"ok\":true,\"message\":" : ",\"ok\":false,\"message\":");
        wbuf_json_strn(b, s->reload_message, strnlen(s->reload_message, sizeof(s->reload_message)));
        wbuf_puts(b, "}}");
    }
    wbuf_puts(b, ",\"daemon\":{\"warnings\":[");
    for (size_t i = 0; i < s->ndaemon_warnings; i++) {
        wbuf_puts(b, i > 0 ? ",{\"code\":" : "{\"code\":");
        wbuf_json_str(b, s->daemon_warnings[i].code);
        wbuf_puts(b, ",\"message\":");
        wbuf_json_str(b, s->daemon_warnings[i].message);
        wbuf_putc(b, '}');
    }
    wbuf_puts(b, "]}}");
    return wbuf_done(b);
}

/* The agent.log line an endpoint would write: the last line of a probe of its group that
 * ended with the same cause, else the group's last line, else the symptom of its cause. Online and
 * pending endpoints log no error. */
static const char *endpoint_message(const snap_t *s, const snap_endpoint_t *e)
{
    if (e->state != SNAP_OFFLINE)
        return "";
    if (e->group < s->ngroups && e->cause < FS_CAUSE_COUNT &&
        s->groups[e->group].cause_message[e->cause] != NULL)
        return s->groups[e->group].cause_message[e->cause];
    if (e->group < s->ngroups && s->groups[e->group].message != NULL &&
        s->groups[e->group].message[0] != '\0')
        return s->groups[e->group].message;
    return fs_cause_info((fs_cause_t)e->cause)->symptom;
}

/* Appends the id "<group>-%05u" as a JSON string. */
static void put_endpoint_id(wbuf_t *b, const snap_t *s, const snap_endpoint_t *e)
{
    char id[160];
    snap_endpoint_id(s, e, id, sizeof(id));
    wbuf_json_str(b, id);
}

int render_endpoint(const snap_t *s, const snap_endpoint_t *e, int with_detail, wbuf_t *b)
{
    wbuf_puts(b, "{\"id\":");
    put_endpoint_id(b, s, e);
    wbuf_puts(b, ",\"group\":");
    wbuf_json_str(b, group_name(s, e->group));
    wbuf_puts(b, ",\"state\":\"");
    wbuf_puts(b, snap_state_name(e->state));
    wbuf_puts(b, "\",\"cause\":");
    if (e->state == SNAP_OFFLINE)
        wbuf_json_str(b, fs_cause_id((fs_cause_t)e->cause));
    else
        wbuf_puts(b, "null");
    wbuf_puts(b, ",\"warnings\":");
    put_warnings(b, e->warnings);
    wbuf_puts(b, ",\"message\":");
    wbuf_json_str(b, endpoint_message(s, e));
    wbuf_puts(b, ",\"since\":");
    wbuf_json_time(b, e->since);
    wbuf_puts(b, ",\"last_probe_at\":");
    wbuf_json_time(b, e->last_probe_at);
    wbuf_puts(b, e->restored ? ",\"restored\":true" : ",\"restored\":false");
    wbuf_puts(b, ",\"timings_ms\":{");
    for (int p = 0; p < SNAP_PH_COUNT; p++) {
        wbuf_json_key(b, phase_names[p], p == 0);
        wbuf_u64(b, e->timings_ms[p]);
    }
    wbuf_putc(b, '}');
    if (with_detail) {
        /* The group's last probe that ended the way this endpoint did, rendered by the loop
         * in its final form (render_detail). */
        const char *d = NULL;
        if (e->group < s->ngroups && e->state != SNAP_PENDING) {
            int slot = e->state == SNAP_ONLINE ? FS_CAUSE_NONE : e->cause;
            d = slot < FS_CAUSE_COUNT ? s->groups[e->group].cause_detail[slot] : NULL;
        }
        wbuf_puts(b, ",\"detail\":");
        wbuf_puts(b, d != NULL ? d : "null");
    }
    wbuf_putc(b, '}');
    return wbuf_done(b);
}

static int endpoint_matches(const render_query_t *q, const snap_endpoint_t *e)
{
    if (q->state >= 0 && e->state != q->state)
        return 0;
    if (q->cause >= 0 && (e->state != SNAP_OFFLINE || e->cause != q->cause))
        return 0;
    if (q->warning >= 0 && !(e->warnings & FS_WARN_BIT(q->warning)))
        return 0;
    return 1;
}

/* First endpoint whose group is >= g (endpoints are ordered by group). */
static size_t group_lower_bound(const snap_t *s, uint32_t g)
{
    size_t lo = 0, hi = s->nendpoints;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->endpoints[mid].group < g)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int render_endpoints(const snap_t *s, const render_query_t *q, wbuf_t *b)
{
    size_t from = 0, to = s->nendpoints, total = 0;
    if (q->group >= 0) {
        from = group_lower_bound(s, (uint32_t)q->group);
        to = group_lower_bound(s, (uint32_t)q->group + 1);
    }
    wbuf_puts(b, "{\"items\":[");
    for (size_t i = from; i < to; i++) {
        const snap_endpoint_t *e = &s->endpoints[i];
        if (!endpoint_matches(q, e))
            continue;
        if (total >= q->offset && total - q->offset < q->limit) {
            if (total > q->offset)
                wbuf_putc(b, ',');
            render_endpoint(s, e, 0, b);
        }
        total++;
    }
    wbuf_puts(b, "],\"total\":");
    wbuf_u64(b, total);
    wbuf_puts(b, ",\"limit\":");
    wbuf_u64(b, q->limit);
    wbuf_puts(b, ",\"offset\":");
    wbuf_u64(b, q->offset);
    wbuf_putc(b, '}');
    return wbuf_done(b);
}

int render_events(const snap_t *s, uint64_t since_seq, int64_t since_at, wbuf_t *b)
{
    uint64_t last = since_seq;
    int first = 1;
    wbuf_puts(b, "{\"events\":[");
    for (size_t i = 0; i < s->nevents; i++) {
        const snap_event_t *ev = &s->events[i];
        if (ev->seq > last)
            last = ev->seq;
        if (ev->seq <= since_seq || ev->at < since_at)
            continue;
        size_t n = strnlen(ev->subject, sizeof(ev->subject));
        int is_group = n >= 6 && memcmp(ev->subject, "group:", 6) == 0;
        if (!first)
            wbuf_putc(b, ',');
        first = 0;
        wbuf_puts(b, "{\"seq\":");
        wbuf_u64(b, ev->seq);
        wbuf_puts(b, ",\"at\":");
        wbuf_json_time(b, ev->at);
        wbuf_puts(b, is_group ? ",\"kind\":\"group\",\"subject\":"
                              : ",\"kind\":\"endpoint\",\"subject\":");
        wbuf_json_strn(b, ev->subject, n);
        wbuf_puts(b, ",\"old_state\":\"");
        wbuf_puts(b, snap_state_name(ev->old_state));
        wbuf_puts(b, "\",\"new_state\":\"");
        wbuf_puts(b, snap_state_name(ev->new_state));
        wbuf_puts(b, "\",\"cause\":");
        if (ev->cause != FS_CAUSE_NONE)
            wbuf_json_str(b, fs_cause_id((fs_cause_t)ev->cause));
        else
            wbuf_puts(b, "null");
        wbuf_putc(b, '}');
    }
    /* The window keeps the newest events only: what a client asking from since_seq missed. */
    uint64_t oldest = s->nevents > 0 ? s->events[0].seq : last + 1;
    wbuf_puts(b, "],\"last_seq\":");
    wbuf_u64(b, last);
    wbuf_puts(b, ",\"oldest_seq\":");
    wbuf_u64(b, s->nevents > 0 ? oldest : 0);
    wbuf_puts(b, ",\"dropped\":");
    wbuf_u64(b, since_at == 0 && oldest > since_seq + 1 ? oldest - since_seq - 1 : 0);
    wbuf_putc(b, '}');
    return wbuf_done(b);
}

/* ---- a probe's outcome: /api/v1/targets and endpoint details ------------------------------- */

/* A fixed-size field of a probe's result: at most n bytes, up to its NUL. */
static void put_field(wbuf_t *b, const char *s, size_t n)
{
    wbuf_json_strn(b, s, strnlen(s, n));
}

static void put_str_array(wbuf_t *b, char *const *v, size_t n)
{
    wbuf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            wbuf_putc(b, ',');
        wbuf_json_str(b, v[i]);
    }
    wbuf_putc(b, ']');
}

/* One certificate; days_left is counted at `at` (the endpoint's time). */
static void put_cert(wbuf_t *b, const chain_cert_t *c, int64_t at)
{
    wbuf_puts(b, "{\"subject\":");
    wbuf_json_str(b, c->subject);
    wbuf_puts(b, ",\"issuer\":");
    wbuf_json_str(b, c->issuer);
    wbuf_puts(b, ",\"serial\":");
    wbuf_json_str(b, c->serial);
    wbuf_puts(b, ",\"not_before\":");
    wbuf_json_time(b, c->not_before);
    wbuf_puts(b, ",\"not_after\":");
    wbuf_json_time(b, c->not_after);
    wbuf_puts(b, ",\"days_left\":");
    wbuf_i64(b, (c->not_after - at) / 86400);
    wbuf_puts(b, ",\"sha1_thumbprint\":");
    put_field(b, c->sha1, sizeof(c->sha1));
    wbuf_puts(b, ",\"sha256\":");
    put_field(b, c->sha256, sizeof(c->sha256));
    wbuf_puts(b, ",\"signature_algorithm\":");
    put_field(b, c->sig_alg, sizeof(c->sig_alg));
    wbuf_puts(b, ",\"is_ca\":");
    wbuf_json_bool(b, c->is_ca);
    wbuf_puts(b, ",\"self_signed\":");
    wbuf_json_bool(b, c->self_signed);
    wbuf_puts(b, ",\"sans\":");
    put_str_array(b, c->sans, c->nsans);
    wbuf_puts(b, ",\"cdp\":");
    put_str_array(b, c->cdp, c->ncdp);
    wbuf_puts(b, ",\"aia\":");
    put_str_array(b, c->aia, c->naia);
    wbuf_putc(b, '}');
}

static void put_retrieval(wbuf_t *b, const rev_url_result_t *u)
{
    wbuf_puts(b, "{\"url\":");
    put_field(b, u->url, sizeof(u->url));
    wbuf_puts(b, ",\"kind\":");
    put_field(b, u->kind, sizeof(u->kind));
    wbuf_puts(b, ",\"cert_depth\":");
    wbuf_i64(b, u->cert_depth);
    wbuf_puts(b, ",\"ok\":");
    wbuf_json_bool(b, u->ok);
    wbuf_puts(b, ",\"skipped\":");
    wbuf_json_bool(b, u->skipped);
    wbuf_puts(b, ",\"from_cache\":");
    wbuf_json_bool(b, u->from_cache);
    if (strcmp(u->kind, "ocsp") == 0) {
        wbuf_puts(b,
                  u->post ? ",\"method\":\"POST\",\"status\":" : ",\"method\":\"GET\",\"status\":");
        if (u->status[0] != '\0')
            put_field(b, u->status, sizeof(u->status));
        else
            wbuf_puts(b, "null");
    }
    wbuf_puts(b, ",\"timeout_ms\":");
    wbuf_u64(b, u->timeout_ms);
    wbuf_puts(b, ",\"http_status\":");
    wbuf_i64(b, u->http_status);
    wbuf_puts(b, ",\"bytes\":");
    wbuf_u64(b, u->bytes);
    wbuf_puts(b, ",\"time_ms\":");
    wbuf_u64(b, u->time_ms);
    wbuf_puts(b, ",\"this_update\":");
    wbuf_json_time(b, u->this_update);
    wbuf_puts(b, ",\"next_update\":");
    wbuf_json_time(b, u->next_update);
    wbuf_puts(b, ",\"error\":");
    if (u->error[0] != '\0')
        put_field(b, u->error, sizeof(u->error));
    else
        wbuf_puts(b, "null");
    wbuf_putc(b, '}');
}

/* The probe's members, "url" to "retrievals", without the braces. */
static void put_probe(wbuf_t *b, const render_probe_t *p)
{
    wbuf_puts(b, "\"url\":");
    wbuf_json_str(b, p->url);
    wbuf_puts(b, p->online ? ",\"state\":\"online\",\"cause\":null"
                           : ",\"state\":\"offline\",\"cause\":");
    if (!p->online)
        wbuf_json_str(b, fs_cause_id(p->cause));
    wbuf_puts(b, ",\"warnings\":");
    put_warnings(b, p->warnings);
    wbuf_puts(b, ",\"message\":");
    wbuf_json_str(b, p->message);
    if (!p->online) {
        const fs_cause_info_t *ci = fs_cause_info(p->cause);
        wbuf_puts(b, ",\"phase\":");
        wbuf_json_str(b, ci->phase);
        wbuf_puts(b, ",\"symptom\":");
        wbuf_json_str(b, ci->symptom);
        wbuf_puts(b, ",\"remediation\":");
        wbuf_json_str(b, ci->remediation);
    }
    if (p->timings_ms != NULL) {
        wbuf_puts(b, ",\"timings_ms\":{");
        for (int ph = 0; ph < SNAP_PH_COUNT; ph++) {
            wbuf_json_key(b, phase_names[ph], ph == 0);
            wbuf_u64(b, p->timings_ms[ph]);
        }
        wbuf_puts(b, ",\"total\":");
        wbuf_u64(b, p->total_ms);
        wbuf_putc(b, '}');
    }
    wbuf_puts(b, ",\"address\":");
    wbuf_json_str(b, p->addr);
    wbuf_puts(b, ",\"connect_attempts\":[");
    for (size_t i = 0; i < p->nattempts; i++) {
        const probe_attempt_t *at = &p->attempts[i];
        wbuf_puts(b, i ? ",{\"address\":" : "{\"address\":");
        wbuf_json_str(b, at->addr);
        wbuf_puts(b, ",\"outcome\":");
        wbuf_json_str(b, report_attempt_outcome(at));
        if (at->error != 0 && at->error != UV_ECONNREFUSED && at->error != UV_ETIMEDOUT) {
            wbuf_puts(b, ",\"error\":");
            wbuf_json_str(b, uv_strerror(at->error));
        }
        wbuf_puts(b, ",\"time_ms\":");
        wbuf_u64(b, at->ms);
        wbuf_putc(b, '}');
    }
    wbuf_puts(b, "],\"leaf_sha1\":");
    if (p->leaf_sha1 != NULL && p->leaf_sha1[0] != '\0')
        wbuf_json_str(b, p->leaf_sha1);
    else
        wbuf_puts(b, "null");
    wbuf_puts(b, ",\"endpoint_time\":");
    wbuf_json_time(b, p->endpoint_time);
    wbuf_puts(b, ",\"tls\":{");
    if (p->tls_version != NULL && p->tls_version[0] != '\0') {
        wbuf_puts(b, "\"version\":");
        wbuf_json_str(b, p->tls_version);
        wbuf_puts(b, ",\"cipher\":");
        wbuf_json_str(b, p->cipher);
    }
    wbuf_puts(b, "},\"http_status\":");
    if (p->http_status != 0)
        wbuf_i64(b, p->http_status);
    else
        wbuf_puts(b, "null");
    wbuf_puts(b, ",\"chain\":[");
    for (size_t i = 0; p->chain != NULL && i < p->chain->n; i++) {
        if (i > 0)
            wbuf_putc(b, ',');
        put_cert(b, &p->chain->certs[i], p->endpoint_time);
    }
    wbuf_puts(b, "],\"retrievals\":[");
    for (size_t i = 0; i < p->nurls; i++) {
        if (i > 0)
            wbuf_putc(b, ',');
        put_retrieval(b, &p->urls[i]);
    }
    wbuf_putc(b, ']');
}

int render_detail(const render_probe_t *p, wbuf_t *b)
{
    wbuf_putc(b, '{');
    put_probe(b, p);
    wbuf_puts(b, ",\"source\":\"the group's last probe with this endpoint's outcome\"}");
    return wbuf_done(b);
}

static int is_crl(const rev_url_result_t *u)
{
    return strcmp(u->kind, "crl") == 0;
}

/* One line of "crls": a CDP of the chain, with the fields it has always had. */
static void put_crl_line(wbuf_t *b, int first, const char *url, size_t urlmax, int depth,
                         int reachable, int skipped, long http_status, size_t bytes,
                         int64_t this_update, int64_t next_update, const char *error, size_t errmax)
{
    wbuf_puts(b, first ? "{\"url\":" : ",{\"url\":");
    put_field(b, url, urlmax);
    wbuf_puts(b, ",\"cert_depth\":");
    wbuf_i64(b, depth);
    wbuf_puts(b, ",\"reachable\":");
    wbuf_json_bool(b, reachable);
    wbuf_puts(b, ",\"http_status\":");
    wbuf_i64(b, http_status);
    wbuf_puts(b, ",\"bytes\":");
    wbuf_u64(b, bytes);
    wbuf_puts(b, ",\"this_update\":");
    wbuf_json_time(b, this_update);
    wbuf_puts(b, ",\"next_update\":");
    wbuf_json_time(b, next_update);
    wbuf_puts(b, ",\"last_error\":");
    if (error[0] != '\0')
        put_field(b, error, errmax);
    else
        wbuf_puts(b, "null");
    wbuf_puts(b, ",\"skipped\":");
    wbuf_json_bool(b, skipped);
    wbuf_putc(b, '}');
}

/* "crls": the live check of each CDP once a round has run (snap_revhealth_t), until then the
 * reference probe's own retrieval lines (which may come from the endpoints' cache). */
static void put_crls(wbuf_t *b, const snap_target_t *t, const snap_revhealth_t *h)
{
    int first = 1;
    wbuf_puts(b, ",\"crls\":[");
    for (size_t i = 0; h != NULL && i < h->nurls; i++) {
        const snap_rev_url_t *u = &h->urls[i];
        if (strcmp(u->kind, "crl") != 0)
            continue;
        put_crl_line(b, first, u->url, sizeof(u->url), u->cert_depth, u->reachable, u->skipped,
                     u->http_status, u->bytes, u->this_update, u->next_update, u->error,
                     sizeof(u->error));
        first = 0;
    }
    for (size_t i = 0; h == NULL && i < t->nurls; i++) {
        const rev_url_result_t *u = &t->urls[i];
        if (!is_crl(u))
            continue;
        put_crl_line(b, first, u->url, sizeof(u->url), u->cert_depth,
                     u->ok || u->http_status == 200, u->skipped, u->http_status, u->bytes,
                     u->this_update, u->next_update, u->error, sizeof(u->error));
        first = 0;
    }
    wbuf_putc(b, ']');
}

/* "revocation": every CDP, delta-CRL and OCSP URL of the chain as the vantage checked it live,
 * with the groups that depend on it (SPEC §4.2). */
static void put_revocation(wbuf_t *b, const snap_revhealth_t *h)
{
    wbuf_puts(b, ",\"revocation\":[");
    for (size_t i = 0; h != NULL && i < h->nurls; i++) {
        const snap_rev_url_t *u = &h->urls[i];
        wbuf_puts(b, i > 0 ? ",{\"url\":" : "{\"url\":");
        put_field(b, u->url, sizeof(u->url));
        wbuf_puts(b, ",\"kind\":");
        put_field(b, u->kind, sizeof(u->kind));
        wbuf_puts(b, ",\"cert_depth\":");
        wbuf_i64(b, u->cert_depth);
        wbuf_puts(b, ",\"reachable\":");
        wbuf_json_bool(b, u->reachable);
        wbuf_puts(b, ",\"skipped\":");
        wbuf_json_bool(b, u->skipped);
        wbuf_puts(b, ",\"latency_ms\":");
        wbuf_u64(b, u->latency_ms);
        wbuf_puts(b, ",\"http_status\":");
        wbuf_i64(b, u->http_status);
        wbuf_puts(b, ",\"bytes\":");
        wbuf_u64(b, u->bytes);
        wbuf_puts(b, ",\"this_update\":");
        wbuf_json_time(b, u->this_update);
        wbuf_puts(b, ",\"next_update\":");
        wbuf_json_time(b, u->next_update);
        wbuf_puts(b, ",\"signature_valid\":");
        if (u->signature_valid >= 0)
            wbuf_json_bool(b, u->signature_valid);
        else
            wbuf_puts(b, "null");
        wbuf_puts(b, ",\"ocsp_status\":");
        if (u->ocsp_status[0] != '\0')
            put_field(b, u->ocsp_status, sizeof(u->ocsp_status));
        else
            wbuf_puts(b, "null");
        wbuf_puts(b, ",\"last_error\":");
        if (u->error[0] != '\0')
            put_field(b, u->error, sizeof(u->error));
        else
            wbuf_puts(b, "null");
        wbuf_puts(b, ",\"last_success\":");
        wbuf_json_time(b, u->last_success);
        wbuf_puts(b, ",\"checked_at\":");
        wbuf_json_time(b, u->checked_at);
        wbuf_puts(b, ",\"directory\":");
        if (u->directory[0] != '\0')
            put_field(b, u->directory, sizeof(u->directory));
        else
            wbuf_puts(b, "null");
        wbuf_puts(b, ",\"strict_endpoints_at_risk\":");
        wbuf_u64(b, u->strict_at_risk);
        wbuf_puts(b, ",\"strict_offline_at\":");
        wbuf_json_time(b, u->strict_offline_at);
        wbuf_puts(b, ",\"groups\":[");
        for (size_t g = 0; g < u->ngroups; g++) {
            const snap_rev_group_t *sg = &u->groups[g];
            wbuf_puts(b, g > 0 ? ",{\"name\":" : "{\"name\":");
            wbuf_json_str(b, sg->name);
            wbuf_puts(b, ",\"mode\":");
            wbuf_json_str(b, sg->mode < REV_MODE_COUNT ? rev_mode_names[sg->mode] : "");
            wbuf_puts(b, ",\"endpoints\":");
            wbuf_u64(b, sg->endpoints);
            wbuf_puts(b, ",\"cached_until\":");
            wbuf_json_time(b, sg->cached_until);
            wbuf_puts(b, ",\"at_risk\":");
            wbuf_json_bool(b, sg->at_risk);
            wbuf_puts(b, ",\"offline_at\":");
            wbuf_json_time(b, sg->at_risk ? sg->offline_at : 0);
            wbuf_putc(b, '}');
        }
        wbuf_puts(b, "]}");
    }
    wbuf_putc(b, ']');
}

/* "addresses": every address of the target's name with what it served (SPEC §4.1), and
 * "backend_inconsistent" with the reason when they disagree. */
static void put_backends(wbuf_t *b, const snap_target_t *t)
{
    wbuf_puts(b, ",\"addresses\":[");
    for (size_t i = 0; i < t->nbackends; i++) {
        const snap_backend_t *k = &t->backends[i];
        wbuf_puts(b, i ? ",{\"address\":" : "{\"address\":");
        put_field(b, k->addr, sizeof(k->addr));
        wbuf_puts(b, ",\"leaf_sha1\":");
        if (k->leaf_sha1[0] != '\0')
            put_field(b, k->leaf_sha1, sizeof(k->leaf_sha1));
        else
            wbuf_puts(b, "null");
        wbuf_puts(b, k->online ? ",\"state\":\"online\",\"cause\":null"
                               : ",\"state\":\"offline\",\"cause\":");
        if (!k->online)
            wbuf_json_str(b, fs_cause_id((fs_cause_t)k->cause));
        wbuf_puts(b, ",\"last_seen\":");
        wbuf_json_time(b, k->last_seen);
        wbuf_putc(b, '}');
    }
    wbuf_puts(b,
              t->inconsistent ? "],\"backend_inconsistent\":" : "],\"backend_inconsistent\":null");
    if (t->inconsistent)
        put_field(b, t->inconsistent_why, sizeof(t->inconsistent_why));
}

int render_targets(const snap_t *s, wbuf_t *b)
{
    wbuf_puts(b, "{\"targets\":[");
    int first_target = 1;
    for (size_t ti = 0; ti < s->ntargets; ti++) {
        const snap_target_t *t = s->targets[ti];
        if (t == NULL)
            continue; /* not probed yet */
        if (!first_target)
            wbuf_putc(b, ',');
        first_target = 0;
        render_probe_t p = {
            .url = t->url,
            .online = t->online,
            .cause = (fs_cause_t)t->cause,
            .warnings = t->warnings,
            .message = t->message,
            .timings_ms = t->timings_ms,
            .total_ms = t->total_ms,
            .addr = t->addr,
            .attempts = t->attempts,
            .nattempts = t->nattempts,
            .leaf_sha1 = t->leaf_sha1,
            .endpoint_time = t->endpoint_time,
            .tls_version = t->tls_version,
            .cipher = t->cipher,
            .http_status = t->http_status,
            .chain = &t->chain,
            .urls = t->urls,
            .nurls = t->nurls,
        };
        wbuf_putc(b, '{');
        put_probe(b, &p);
        wbuf_puts(b, ",\"name\":");
        wbuf_json_str(b, t->name);
        wbuf_puts(b, ",\"profile\":");
        wbuf_json_str(b, t->profile);
        wbuf_puts(b, ",\"trust\":");
        wbuf_json_str(b, t->trust);
        wbuf_puts(b, ",\"checked_at\":");
        wbuf_json_time(b, t->checked_at);
        const snap_revhealth_t *h = s->revocation != NULL ? s->revocation[ti] : NULL;
        put_crls(b, t, h);
        put_revocation(b, h);
        put_backends(b, t);
        wbuf_putc(b, '}');
    }
    wbuf_puts(b, "]}");
    return wbuf_done(b);
}

static void put_catalogue_entry(wbuf_t *b, const fs_cause_info_t *ci)
{
    wbuf_puts(b, "{\"id\":");
    wbuf_json_str(b, ci->id);
    wbuf_puts(b, ",\"phase\":");
    wbuf_json_str(b, ci->phase);
    wbuf_puts(b, ",\"symptom\":");
    wbuf_json_str(b, ci->symptom);
    wbuf_puts(b, ",\"description\":");
    wbuf_json_str(b, ci->description);
    wbuf_puts(b, ",\"remediation\":");
    wbuf_json_str(b, ci->remediation);
    wbuf_putc(b, '}');
}

int render_causes(wbuf_t *b)
{
    wbuf_puts(b, "{\"causes\":[");
    for (int i = FS_CAUSE_NONE + 1; i < FS_CAUSE_COUNT; i++) {
        if (i > FS_CAUSE_NONE + 1)
            wbuf_putc(b, ',');
        put_catalogue_entry(b, fs_cause_info((fs_cause_t)i));
    }
    wbuf_puts(b, "],\"warnings\":[");
    for (int i = 0; i < FS_WARN_COUNT; i++) {
        if (i > 0)
            wbuf_putc(b, ',');
        put_catalogue_entry(b, fs_warning_info((fs_warning_t)i));
    }
    wbuf_puts(b, "]}");
    return wbuf_done(b);
}

int render_error(const char *msg, const char *code, wbuf_t *b)
{
    wbuf_puts(b, "{\"error\":");
    wbuf_json_str(b, msg);
    wbuf_puts(b, ",\"code\":");
    wbuf_json_str(b, code);
    wbuf_putc(b, '}');
    return wbuf_done(b);
}

/* ---- Prometheus ------------------------------------------------------------------------ */

static void m_family(wbuf_t *b, const char *name, const char *type, const char *help)
{
    wbuf_puts(b, "# HELP ");
    wbuf_puts(b, name);
    wbuf_putc(b, ' ');
    wbuf_puts(b, help);
    wbuf_puts(b, "\n# TYPE ");
    wbuf_puts(b, name);
    wbuf_putc(b, ' ');
    wbuf_puts(b, type);
    wbuf_putc(b, '\n');
}

/* A sample is m_start, m_label for each label, then m_end_*: name{<common>,l1="v1",...} value.
 * common is the pre-rendered vantage/shard pair every sample carries. */
static void m_start(wbuf_t *b, const char *name, const wbuf_t *common)
{
    wbuf_puts(b, name);
    wbuf_putc(b, '{');
    wbuf_put(b, common->data, common->len);
}

static void m_label(wbuf_t *b, const char *key, const char *value)
{
    wbuf_putc(b, ',');
    wbuf_puts(b, key);
    wbuf_put(b, "=\"", 2);
    wbuf_prom_label(b, value != NULL ? value : "");
    wbuf_putc(b, '"');
}

static void m_end_u64(wbuf_t *b, uint64_t v)
{
    wbuf_put(b, "} ", 2);
    wbuf_u64(b, v);
    wbuf_putc(b, '\n');
}

static void m_end_i64(wbuf_t *b, int64_t v)
{
    wbuf_put(b, "} ", 2);
    wbuf_i64(b, v);
    wbuf_putc(b, '\n');
}

/* A sample with up to two labels (l1, l2 NULL when absent). */
static void m_u64(wbuf_t *b, const char *name, const wbuf_t *common, const char *l1, const char *v1,
                  const char *l2, const char *v2, uint64_t v)
{
    m_start(b, name, common);
    if (l1 != NULL)
        m_label(b, l1, v1);
    if (l2 != NULL)
        m_label(b, l2, v2);
    m_end_u64(b, v);
}

static void m_double(wbuf_t *b, const char *name, const wbuf_t *common, const char *l1,
                     const char *v1, double v)
{
    m_start(b, name, common);
    if (l1 != NULL)
        m_label(b, l1, v1);
    wbuf_put(b, "} ", 2);
    wbuf_prom_double(b, v);
    wbuf_putc(b, '\n');
}

/* The revocation URL of record ti at index ui came earlier (another target's chain has it too):
 * its series are emitted once. */
static int rev_seen_before(const snap_t *s, size_t ti, size_t ui)
{
    const char *url = s->revocation[ti]->urls[ui].url;
    for (size_t t = 0; t <= ti; t++)
        for (size_t i = 0; s->revocation[t] != NULL && i < (t == ti ? ui : s->revocation[t]->nurls);
             i++)
            if (strcmp(s->revocation[t]->urls[i].url, url) == 0)
                return 1;
    return 0;
}

/* The same URL over every target's record: the strict endpoints at risk (summed: each target has
 * its own groups) and the earliest instant the first of them go offline. */
static uint64_t rev_at_risk(const snap_t *s, const char *url, int64_t *offline_at)
{
    uint64_t n = 0;
    *offline_at = 0;
    for (size_t t = 0; t < s->ntargets; t++)
        for (size_t i = 0; s->revocation[t] != NULL && i < s->revocation[t]->nurls; i++) {
            const snap_rev_url_t *u = &s->revocation[t]->urls[i];
            if (strcmp(u->url, url) != 0 || u->strict_at_risk == 0)
                continue;
            n += u->strict_at_risk;
            if (*offline_at == 0 || u->strict_offline_at < *offline_at)
                *offline_at = u->strict_offline_at;
        }
    return n;
}

/* The targets' gauges: each presented certificate's notAfter, whether each target's binding is
 * up, and the live health of their chains' revocation URLs (s->revocation): reachability,
 * nextUpdate, skipped URLs, the strict endpoints at risk and when, the groups' cache expiry. A
 * URL several targets share is one series; a family's samples stay together, one HELP and TYPE
 * each. */
static void put_target_metrics(wbuf_t *b, const snap_t *s, const wbuf_t *common)
{
    char depth[24];
    size_t nrec = s->revocation != NULL ? s->ntargets : 0;
    m_family(b, "fleetscan_cert_not_after_seconds", "gauge",
             "notAfter of each presented certificate (Unix time).");
    for (size_t ti = 0; ti < s->ntargets; ti++) {
        const snap_target_t *t = s->targets[ti];
        for (size_t i = 0; t != NULL && i < t->chain.n; i++) {
            const chain_cert_t *c = &t->chain.certs[i];
            snprintf(depth, sizeof(depth), "%zu", i);
            m_start(b, "fleetscan_cert_not_after_seconds", common);
            m_label(b, "target", t->name);
            m_label(b, "depth", depth);
            m_label(b, "subject", c->subject);
            m_label(b, "sha1", c->sha1);
            m_end_i64(b, c->not_after);
        }
    }
    m_family(b, "fleetscan_crl_reachable", "gauge",
             "1 when the CRL, delta-CRL or OCSP URL answered the vantage's live check with a "
             "usable answer (skipped URLs are not listed).");
    for (size_t ti = 0; ti < nrec; ti++)
        for (size_t i = 0; s->revocation[ti] != NULL && i < s->revocation[ti]->nurls; i++) {
            const snap_rev_url_t *u = &s->revocation[ti]->urls[i];
            if (!u->skipped && !rev_seen_before(s, ti, i))
                m_u64(b, "fleetscan_crl_reachable", common, "url", u->url, "kind", u->kind,
                      u->reachable ? 1 : 0);
        }
    m_family(b, "fleetscan_crl_next_update_seconds", "gauge",
             "nextUpdate of the CRL (or delta CRL) the URL serves now (Unix time).");
    for (size_t ti = 0; ti < nrec; ti++)
        for (size_t i = 0; s->revocation[ti] != NULL && i < s->revocation[ti]->nurls; i++) {
            const snap_rev_url_t *u = &s->revocation[ti]->urls[i];
            if (strcmp(u->kind, "ocsp") == 0 || u->next_update == 0 || rev_seen_before(s, ti, i))
                continue;
            m_start(b, "fleetscan_crl_next_update_seconds", common);
            m_label(b, "url", u->url);
            m_end_i64(b, u->next_update);
        }
    m_family(b, "fleetscan_revocation_url_skipped", "gauge",
             "1 for a revocation URL no view retrieves (ldap:// without a directory, file://): "
             "not unreachable, no group depends on it.");
    for (size_t ti = 0; ti < nrec; ti++)
        for (size_t i = 0; s->revocation[ti] != NULL && i < s->revocation[ti]->nurls; i++) {
            const snap_rev_url_t *u = &s->revocation[ti]->urls[i];
            if (u->skipped && !rev_seen_before(s, ti, i))
                m_u64(b, "fleetscan_revocation_url_skipped", common, "url", u->url, "kind", u->kind,
                      1);
        }
    m_family(b, "fleetscan_strict_endpoints_revocation_at_risk", "gauge",
             "Strict endpoints that go offline, now or when their cached copy runs out, while "
             "this URL stays unusable: nothing else their check would use answers.");
    for (size_t ti = 0; ti < nrec; ti++)
        for (size_t i = 0; s->revocation[ti] != NULL && i < s->revocation[ti]->nurls; i++) {
            const snap_rev_url_t *u = &s->revocation[ti]->urls[i];
            int64_t at;
            if (!u->skipped && !rev_seen_before(s, ti, i))
                m_u64(b, "fleetscan_strict_endpoints_revocation_at_risk", common, "url", u->url,
                      "kind", u->kind, rev_at_risk(s, u->url, &at));
        }
    m_family(b, "fleetscan_strict_endpoints_offline_at_seconds", "gauge",
             "When the first of those strict endpoints go offline (Unix time; the check time "
             "when they already have). Only while some are at risk.");
    for (size_t ti = 0; ti < nrec; ti++)
        for (size_t i = 0; s->revocation[ti] != NULL && i < s->revocation[ti]->nurls; i++) {
            const snap_rev_url_t *u = &s->revocation[ti]->urls[i];
            int64_t at;
            if (u->skipped || rev_seen_before(s, ti, i) || rev_at_risk(s, u->url, &at) == 0)
                continue;
            m_start(b, "fleetscan_strict_endpoints_offline_at_seconds", common);
            m_label(b, "url", u->url);
            m_label(b, "kind", u->kind);
            m_end_i64(b, at);
        }
    m_family(b, "fleetscan_revocation_cache_expiry_seconds", "gauge",
             "When a group's cached copy from this URL runs out (Unix time), for each group "
             "whose check uses the URL and holds a copy.");
    for (size_t ti = 0; ti < nrec; ti++)
        for (size_t i = 0; s->revocation[ti] != NULL && i < s->revocation[ti]->nurls; i++) {
            const snap_rev_url_t *u = &s->revocation[ti]->urls[i];
            for (size_t g = 0; g < u->ngroups; g++) {
                if (u->groups[g].cached_until == 0)
                    continue;
                m_start(b, "fleetscan_revocation_cache_expiry_seconds", common);
                m_label(b, "url", u->url);
                m_label(b, "kind", u->kind);
                m_label(b, "group", u->groups[g].name);
                m_end_i64(b, u->groups[g].cached_until);
            }
        }
    m_family(b, "fleetscan_target_up", "gauge",
             "1 when the target's binding accepts a connection and validates (its reference "
             "probe).");
    int all_up = 1, any = 0;
    for (size_t ti = 0; ti < s->ntargets; ti++) {
        const snap_target_t *t = s->targets[ti];
        if (t == NULL)
            continue;
        any = 1;
        all_up &= t->online != 0;
        m_u64(b, "fleetscan_target_up", common, "target", t->name, NULL, NULL, t->online ? 1 : 0);
    }
    if (any) {
        m_family(b, "fleetscan_reference_up", "gauge",
                 "1 when every target's binding accepts a connection and validates.");
        m_u64(b, "fleetscan_reference_up", common, NULL, NULL, NULL, NULL, all_up ? 1 : 0);
    }
}

int render_metrics(const snap_t *s, wbuf_t *b)
{
    static const char *const results[] = {"online", "offline"};
    static const int result_states[] = {SNAP_ONLINE, SNAP_OFFLINE};
    wbuf_t common;
    char tmp[32];
    int rc;

    wbuf_init(&common, 128, 4096);
    wbuf_puts(&common, "vantage=\"");
    wbuf_prom_label(&common, s->vantage ? s->vantage : "");
    wbuf_puts(&common, "\",shard=\"");
    wbuf_prom_label(&common, s->shard ? s->shard : "0/1");
    wbuf_putc(&common, '"');
    if (common.failed) {
        rc = UV_ENOMEM;
        goto out;
    }

    const uint32_t by_state[SNAP_STATE_COUNT] = {s->totals.pending, s->totals.online,
                                                 s->totals.offline};
    m_family(b, "fleetscan_endpoints", "gauge", "Simulated endpoints by state.");
    for (int st = 0; st < SNAP_STATE_COUNT; st++)
        m_u64(b, "fleetscan_endpoints", &common, "state", snap_state_name(st), NULL, NULL,
              by_state[st]);

    m_family(b, "fleetscan_endpoints_offline", "gauge",
             "Offline endpoints by primary failure cause (every cause listed, zeros included).");
    for (int c = FS_CAUSE_NONE + 1; c < FS_CAUSE_COUNT; c++)
        m_u64(b, "fleetscan_endpoints_offline", &common, "cause", fs_cause_id((fs_cause_t)c), NULL,
              NULL, s->totals.causes[c]);

    m_family(b, "fleetscan_endpoints_warning", "gauge", "Endpoints carrying each warning.");
    for (int w = 0; w < FS_WARN_COUNT; w++)
        m_u64(b, "fleetscan_endpoints_warning", &common, "warning", fs_warning_id((fs_warning_t)w),
              NULL, NULL, s->totals.warnings[w]);

    m_family(b, "fleetscan_group_endpoints", "gauge", "Simulated endpoints by group and state.");
    for (size_t g = 0; g < s->ngroups; g++) {
        const snap_counts_t *c = &s->groups[g].counts;
        const uint32_t gs[SNAP_STATE_COUNT] = {c->pending, c->online, c->offline};
        const char *name = s->groups[g].name ? s->groups[g].name : "";
        for (int st = 0; st < SNAP_STATE_COUNT; st++)
            m_u64(b, "fleetscan_group_endpoints", &common, "group", name, "state",
                  snap_state_name(st), gs[st]);
    }

    m_family(b, "fleetscan_probes_total", "counter", "Completed probes by result.");
    for (size_t r = 0; r < FS_ARRAY_SIZE(results); r++)
        m_u64(b, "fleetscan_probes_total", &common, "result", results[r], NULL, NULL,
              s->probes_by_result[result_states[r]]);

    m_family(b, "fleetscan_probes_in_flight", "gauge", "Probes currently running.");
    m_u64(b, "fleetscan_probes_in_flight", &common, NULL, NULL, NULL, NULL, s->probes_in_flight);

    m_family(b, "fleetscan_probe_duration_seconds", "histogram",
             "Duration of each probe phase in seconds.");
    for (int ph = 0; ph < SNAP_PH_COUNT; ph++) {
        for (int i = 0; i <= SNAP_HIST_BUCKETS; i++) {
            if (i < SNAP_HIST_BUCKETS)
                snprintf(tmp, sizeof(tmp), "%g", snap_hist_bounds[i]);
            else
                fs_strlcpy(tmp, "+Inf", sizeof(tmp));
            m_u64(b, "fleetscan_probe_duration_seconds_bucket", &common, "phase", phase_names[ph],
                  "le", tmp, s->hist_counts[ph][i]);
        }
        m_double(b, "fleetscan_probe_duration_seconds_sum", &common, "phase", phase_names[ph],
                 s->hist_sum[ph]);
        m_u64(b, "fleetscan_probe_duration_seconds_count", &common, "phase", phase_names[ph], NULL,
              NULL, s->hist_counts[ph][SNAP_HIST_BUCKETS]);
    }

    m_family(b, "fleetscan_event_log_dropped_lines_total", "counter",
             "Event log lines lost to failed or short writes (a full disk) since start.");
    m_u64(b, "fleetscan_event_log_dropped_lines_total", &common, NULL, NULL, NULL, NULL,
          s->event_log_dropped);

    if (s->state_db.status != SNAP_DB_OFF) {
        m_family(b, "fleetscan_state_db_up", "gauge",
                 "1 when the state database is open and its last write succeeded.");
        m_u64(b, "fleetscan_state_db_up", &common, NULL, NULL, NULL, NULL,
              s->state_db.status == SNAP_DB_OK);
        m_family(b, "fleetscan_state_db_rebuilt", "gauge",
                 "1 when a corrupt or foreign state database was moved aside and rebuilt since "
                 "start.");
        m_u64(b, "fleetscan_state_db_rebuilt", &common, NULL, NULL, NULL, NULL,
              s->state_db.rebuilt);
        m_family(b, "fleetscan_state_db_errors_total", "counter",
                 "State database problems since start: failed opens and writes, corrupt files.");
        m_u64(b, "fleetscan_state_db_errors_total", &common, NULL, NULL, NULL, NULL,
              s->state_db.errors);
    }

    m_family(b, "fleetscan_last_update_timestamp_seconds", "gauge",
             "Time the published snapshot was generated (Unix seconds).");
    m_u64(b, "fleetscan_last_update_timestamp_seconds", &common, NULL, NULL, NULL, NULL,
          (uint64_t)(s->generated_at > 0 ? s->generated_at : 0));

    m_family(b, "fleetscan_scan_started_timestamp_seconds", "gauge",
             "Time the daemon started scanning (Unix seconds).");
    m_u64(b, "fleetscan_scan_started_timestamp_seconds", &common, NULL, NULL, NULL, NULL,
          (uint64_t)(s->started_at > 0 ? s->started_at : 0));

    procstats_metrics(b, &common);
    put_target_metrics(b, s, &common);
    rc = wbuf_done(b);
out:
    wbuf_free(&common);
    return rc;
}

/* ---- lookups --------------------------------------------------------------------------- */

long render_find_group(const snap_t *s, const char *name)
{
    for (size_t i = 0; i < s->ngroups; i++)
        if (s->groups[i].name != NULL && strcmp(s->groups[i].name, name) == 0)
            return (long)i;
    return -1;
}

const snap_endpoint_t *render_find_endpoint(const snap_t *s, const char *id)
{
    const char *dash = strrchr(id, '-');
    if (dash == NULL || dash == id || dash[1] == '\0' || strlen(dash + 1) > 10)
        return NULL;
    uint64_t index = 0;
    for (const char *p = dash + 1; *p; p++) {
        if (*p < '0' || *p > '9')
            return NULL;
        index = index * 10 + (uint64_t)(*p - '0');
    }
    if (index > UINT32_MAX)
        return NULL;
    size_t glen = (size_t)(dash - id);
    long g = -1;
    for (size_t i = 0; i < s->ngroups && g < 0; i++)
        if (s->groups[i].name != NULL && strlen(s->groups[i].name) == glen &&
            memcmp(s->groups[i].name, id, glen) == 0)
            g = (long)i;
    if (g < 0)
        return NULL;
    /* Ordered by (group, index): binary search. */
    size_t lo = group_lower_bound(s, (uint32_t)g), hi = group_lower_bound(s, (uint32_t)g + 1);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->endpoints[mid].index < index)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo >= s->nendpoints || s->endpoints[lo].group != (uint32_t)g ||
        s->endpoints[lo].index != index)
        return NULL;
    /* Only the canonical spelling names an endpoint: "hq-00001", not "hq-1". */
    char canon[160];
    snap_endpoint_id(s, &s->endpoints[lo], canon, sizeof(canon));
    return strcmp(canon, id) == 0 ? &s->endpoints[lo] : NULL;
}
