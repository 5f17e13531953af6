/* render.c - the JSON documents of the fleet itself (/status, /endpoints, /events, /causes, errors)
 * written by hand through web/wbuf.h: /status must stay well under a millisecond for a thousand
 * groups. Targets are web/render_targets.c, /metrics web/render_metrics.c. */
#include "web/render.h"

#include <stdlib.h>
#include <string.h>

#include "probes/util.h"
#include "web/render_int.h"

const char *const render__phase_names[SNAP_PH_COUNT] = {"dns", "connect", "tls", "revocation",
                                                        "request"};

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
void render__put_warnings(wbuf_t *b, uint32_t mask)
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
        wbuf_puts(b, ",\"target\":");
        wbuf_json_str(b, s->groups[i].target);
        wbuf_puts(b, ",\"offline_since\":");
        wbuf_json_time(b, s->groups[i].offline_since);
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
        wbuf_puts(b, "null");
    } else {
        wbuf_puts(b, "{\"at\":");
        wbuf_json_time(b, s->reload_at);
        wbuf_puts(b, s->reload_ok ? ",\"ok\":true,\"message\":" : ",\"ok\":false,\"message\":");
        wbuf_json_strn(b, s->reload_message, strnlen(s->reload_message, sizeof(s->reload_message)));
        wbuf_putc(b, '}');
    }
    wbuf_puts(b, ",\"reloads\":[");
    for (size_t i = 0; i < s->nreloads && i < SNAP_RELOADS_MAX; i++) {
        wbuf_puts(b, i > 0 ? ",{\"at\":" : "{\"at\":");
        wbuf_json_time(b, s->reloads[i].at);
        wbuf_puts(b, s->reloads[i].ok ? ",\"ok\":true}" : ",\"ok\":false}");
    }
    wbuf_puts(b, "]}");
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
    render__put_warnings(b, e->warnings);
    wbuf_puts(b, ",\"message\":");
    wbuf_json_str(b, endpoint_message(s, e));
    wbuf_puts(b, ",\"since\":");
    wbuf_json_time(b, e->since);
    wbuf_puts(b, ",\"last_probe_at\":");
    wbuf_json_time(b, e->last_probe_at);
    wbuf_puts(b, e->restored ? ",\"restored\":true" : ",\"restored\":false");
    wbuf_puts(b, ",\"timings_ms\":{");
    for (int p = 0; p < SNAP_PH_COUNT; p++) {
        wbuf_json_key(b, render__phase_names[p], p == 0);
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
        int is_config = n >= 7 && memcmp(ev->subject, "config:", 7) == 0;
        if (!first)
            wbuf_putc(b, ',');
        first = 0;
        wbuf_puts(b, "{\"seq\":");
        wbuf_u64(b, ev->seq);
        wbuf_puts(b, ",\"at\":");
        wbuf_json_time(b, ev->at);
        wbuf_puts(b, is_group    ? ",\"kind\":\"group\",\"subject\":"
                     : is_config ? ",\"kind\":\"config\",\"subject\":"
                                 : ",\"kind\":\"endpoint\",\"subject\":");
        wbuf_json_strn(b, ev->subject, n);
        if (is_config) { /* a reload: no state; why it was refused is in /status */
            wbuf_puts(b, ",\"old_state\":null,\"new_state\":null,\"cause\":");
        } else {
            wbuf_puts(b, ",\"old_state\":\"");
            wbuf_puts(b, snap_state_name(ev->old_state));
            wbuf_puts(b, "\",\"new_state\":\"");
            wbuf_puts(b, snap_state_name(ev->new_state));
            wbuf_puts(b, "\",\"cause\":");
        }
        if (ev->cause != FS_CAUSE_NONE)
            wbuf_json_str(b, fs_cause_id((fs_cause_t)ev->cause));
        else
            wbuf_puts(b, "null");
        wbuf_puts(b, ",\"target\":");
        if (ev->target[0] != '\0')
            wbuf_json_strn(b, ev->target, strnlen(ev->target, sizeof(ev->target)));
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
