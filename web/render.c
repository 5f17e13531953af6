/* render.c - JSON and Prometheus renderings of a snapshot, written by hand into a capped
 * buffer: /status must stay well under a millisecond for a thousand groups. */
#include "web/render.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <uv.h>

#include "probes/util.h"

static const char *const phase_names[] = {"dns", "connect", "tls", "revocation", "request"};
_Static_assert(FS_ARRAY_SIZE(phase_names) == SNAP_PH_COUNT, "phase names out of sync");

/* ---- buffer ---------------------------------------------------------------------------- */

/* Makes room for n more bytes plus the NUL; 0 or -1 (and the buffer marked failed). */
static int buf_room(render_buf_t *b, size_t n)
{
    if (b->failed)
        return -1;
    if (n < b->cap - b->len)
        return 0;
    if (n >= b->max - b->len) {
        b->failed = 1;
        return -1;
    }
    size_t want = b->len + n + 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < want)
        cap *= 2;
    if (cap > b->max)
        cap = b->max;
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void render_buf_init(render_buf_t *b, size_t hint, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
    if (hint >= max)
        hint = max - 1;
    if (buf_room(b, hint) == 0)
        b->data[0] = '\0';
}

char *render_buf_steal(render_buf_t *b, size_t *len)
{
    char *d = NULL;
    if (!b->failed && buf_room(b, 0) == 0) {
        d = b->data;
        *len = b->len;
        b->data = NULL;
    }
    render_buf_free(b);
    return d;
}

void render_buf_free(render_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static void put(render_buf_t *b, const char *s, size_t n)
{
    if (buf_room(b, n) != 0)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void puts_(render_buf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putc_(render_buf_t *b, char c)
{
    put(b, &c, 1);
}

static void put_u64(render_buf_t *b, uint64_t v)
{
    char tmp[20];
    int i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(b, tmp + i, sizeof(tmp) - i);
}

/* Prometheus float: Go's strconv understands %g, NaN and +Inf/-Inf. */
static void put_double(render_buf_t *b, double v)
{
    char tmp[40];
    if (isnan(v))
        puts_(b, "NaN");
    else if (isinf(v))
        puts_(b, v > 0 ? "+Inf" : "-Inf");
    else
        put(b, tmp, (size_t)snprintf(tmp, sizeof(tmp), "%.15g", v));
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when invalid. */
static size_t utf8_len(const unsigned char *p)
{
    unsigned char c = p[0];
    if (c >= 0xC2 && c <= 0xDF)
        return (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/* A JSON string of the n bytes at s (which hold no NUL before n); invalid UTF-8 becomes
 * U+FFFD so the document always parses. */
static void put_jstr_n(render_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s, *end = p + n, *run = p;
    putc_(b, '"');
    while (p < end) {
        unsigned char c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            p++;
            continue;
        }
        put(b, (const char *)run, (size_t)(p - run));
        if (c >= 0x80) {
            size_t l = end - p >= 4 ? utf8_len(p) : 0;
            if (l == 0 && end - p < 4) { /* validate the tail on a padded copy */
                unsigned char pad[4] = {0};
                memcpy(pad, p, (size_t)(end - p));
                l = utf8_len(pad);
                if (l > (size_t)(end - p))
                    l = 0;
            }
            if (l > 0)
                put(b, (const char *)p, l);
            else
                puts_(b, "\\ufffd");
            p += l > 0 ? l : 1;
        } else {
            char esc[6] = {'\\', 0, '0', '0', 0, 0};
            switch (c) {
            case '"':
                esc[1] = '"';
                break;
            case '\\':
                esc[1] = '\\';
                break;
            case '\n':
                esc[1] = 'n';
                break;
            case '\r':
                esc[1] = 'r';
                break;
            case '\t':
                esc[1] = 't';
                break;
            default:
                esc[1] = 'u';
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 15];
            }
            put(b, esc, esc[1] == 'u' ? 6 : 2);
            p++;
        }
        run = p;
    }
    put(b, (const char *)run, (size_t)(p - run));
    putc_(b, '"');
}

static void put_jstr(render_buf_t *b, const char *s)
{
    if (s == NULL)
        puts_(b, "null");
    else
        put_jstr_n(b, s, strlen(s));
}

/* RFC 3339 string, or null for 0 ("never"). */
static void put_jtime(render_buf_t *b, int64_t t)
{
    char tmp[32];
    if (t == 0) {
        puts_(b, "null");
        return;
    }
    putc_(b, '"');
    puts_(b, fs_rfc3339(t, tmp, sizeof(tmp)));
    putc_(b, '"');
}

/* ,"key": — keys are our own literals, never escaped. */
static void put_key(render_buf_t *b, const char *key, int first)
{
    if (!first)
        putc_(b, ',');
    putc_(b, '"');
    puts_(b, key);
    put(b, "\":", 2);
}

static int done(const render_buf_t *b)
{
    return b->failed ? UV_ENOMEM : 0;
}

/* ---- JSON documents -------------------------------------------------------------------- */

static const char *group_name(const snap_t *s, uint32_t g)
{
    return g < s->ngroups ? s->groups[g].name : NULL;
}

/* "total":..,"online":..,"offline":..,"pending":.. */
static void put_counts(render_buf_t *b, const snap_counts_t *c)
{
    put(b, "\"total\":", 8);
    put_u64(b, c->total);
    put(b, ",\"online\":", 10);
    put_u64(b, c->online);
    put(b, ",\"offline\":", 11);
    put_u64(b, c->offline);
    put(b, ",\"pending\":", 11);
    put_u64(b, c->pending);
}

/* "causes":{..},"warnings":{..} listing non-zero counts only. */
static void put_count_maps(render_buf_t *b, const snap_counts_t *c)
{
    int first = 1;
    put(b, "\"causes\":{", 10);
    for (int i = FS_CAUSE_NONE + 1; i < FS_CAUSE_COUNT; i++) {
        if (c->causes[i] == 0)
            continue;
        put_key(b, fs_cause_id((fs_cause_t)i), first);
        put_u64(b, c->causes[i]);
        first = 0;
    }
    put(b, "},\"warnings\":{", 14);
    first = 1;
    for (int i = 0; i < FS_WARN_COUNT; i++) {
        if (c->warnings[i] == 0)
            continue;
        put_key(b, fs_warning_id((fs_warning_t)i), first);
        put_u64(b, c->warnings[i]);
        first = 0;
    }
    putc_(b, '}');
}

/* "state_db":{...}: the state database (docs/API.md). */
static void put_state_db(render_buf_t *b, const snap_store_t *d)
{
    puts_(b, "\"state_db\":{\"status\":\"");
    puts_(b, snap_db_status_name(d->status));
    puts_(b, "\",\"path\":");
    put_jstr(b, d->path);
    puts_(b, d->rebuilt ? ",\"rebuilt\":true,\"moved_to\":" : ",\"rebuilt\":false,\"moved_to\":");
    put_jstr(b, d->moved_to);
    puts_(b, ",\"last_error\":");
    put_jstr(b, d->last_error);
    puts_(b, ",\"last_error_at\":");
    put_jtime(b, d->last_error_at);
    puts_(b, ",\"last_write_at\":");
    put_jtime(b, d->last_write_at);
    puts_(b, ",\"errors\":");
    put_u64(b, d->errors);
    puts_(b, ",\"events_dropped\":");
    put_u64(b, d->events_dropped);
    puts_(b, ",\"restored\":{\"endpoints\":");
    put_u64(b, d->restored_endpoints);
    puts_(b, ",\"events\":");
    put_u64(b, d->restored_events);
    puts_(b, ",\"cache\":");
    put_u64(b, d->restored_cache);
    puts_(b, "}}");
}

int render_status(const snap_t *s, render_buf_t *b)
{
    puts_(b, "{\"generated_at\":");
    put_jtime(b, s->generated_at);
    puts_(b, ",\"vantage\":");
    put_jstr(b, s->vantage ? s->vantage : "");
    puts_(b, ",\"shard\":");
    put_jstr(b, s->shard ? s->shard : "0/1");
    puts_(b, ",\"endpoints\":{");
    put_counts(b, &s->totals);
    put(b, "},", 2);
    put_count_maps(b, &s->totals);
    puts_(b, ",\"groups\":[");
    for (size_t i = 0; i < s->ngroups; i++) {
        if (i > 0)
            putc_(b, ',');
        puts_(b, "{\"name\":");
        put_jstr(b, s->groups[i].name ? s->groups[i].name : "");
        putc_(b, ',');
        put_counts(b, &s->groups[i].counts);
        putc_(b, ',');
        put_count_maps(b, &s->groups[i].counts);
        putc_(b, '}');
    }
    puts_(b, "],\"scan\":{\"probes_total\":");
    put_u64(b, s->probes_total);
    puts_(b, ",\"probes_in_flight\":");
    put_u64(b, s->probes_in_flight);
    puts_(b, ",\"started_at\":");
    put_jtime(b, s->started_at);
    puts_(b, "},\"event_log\":{\"path\":");
    put_jstr(b, s->event_log_path);
    puts_(b, ",\"dropped_lines\":");
    put_u64(b, s->event_log_dropped);
    puts_(b, ",\"last_error\":");
    put_jstr(b, s->event_log_error);
    puts_(b, ",\"last_error_at\":");
    put_jtime(b, s->event_log_error_at);
    puts_(b, "},");
    put_state_db(b, &s->state_db);
    puts_(b, ",\"daemon\":{\"warnings\":[");
    for (size_t i = 0; i < s->ndaemon_warnings; i++) {
        puts_(b, i > 0 ? ",{\"code\":" : "{\"code\":");
        put_jstr(b, s->daemon_warnings[i].code);
        puts_(b, ",\"message\":");
        put_jstr(b, s->daemon_warnings[i].message);
        putc_(b, '}');
    }
    puts_(b, "]}}");
    return done(b);
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
static void put_endpoint_id(render_buf_t *b, const snap_t *s, const snap_endpoint_t *e)
{
    char id[160];
    snap_endpoint_id(s, e, id, sizeof(id));
    put_jstr(b, id);
}

int render_endpoint(const snap_t *s, const snap_endpoint_t *e, int with_detail, render_buf_t *b)
{
    puts_(b, "{\"id\":");
    put_endpoint_id(b, s, e);
    puts_(b, ",\"group\":");
    put_jstr(b, group_name(s, e->group));
    puts_(b, ",\"state\":\"");
    puts_(b, snap_state_name(e->state));
    puts_(b, "\",\"cause\":");
    if (e->state == SNAP_OFFLINE)
        put_jstr(b, fs_cause_id((fs_cause_t)e->cause));
    else
        puts_(b, "null");
    puts_(b, ",\"warnings\":[");
    int first = 1;
    for (int w = 0; w < FS_WARN_COUNT; w++) {
        if (!(e->warnings & FS_WARN_BIT(w)))
            continue;
        if (!first)
            putc_(b, ',');
        put_jstr(b, fs_warning_id((fs_warning_t)w));
        first = 0;
    }
    puts_(b, "],\"message\":");
    put_jstr(b, endpoint_message(s, e));
    puts_(b, ",\"since\":");
    put_jtime(b, e->since);
    puts_(b, ",\"last_probe_at\":");
    put_jtime(b, e->last_probe_at);
    puts_(b, e->restored ? ",\"restored\":true" : ",\"restored\":false");
    puts_(b, ",\"timings_ms\":{");
    for (int p = 0; p < SNAP_PH_COUNT; p++) {
        put_key(b, phase_names[p], p == 0);
        put_u64(b, e->timings_ms[p]);
    }
    putc_(b, '}');
    if (with_detail) {
        const char *d = NULL;
        if (e->group < s->ngroups && e->state != SNAP_PENDING) {
            int slot = e->state == SNAP_ONLINE ? FS_CAUSE_NONE : e->cause;
            d = slot < FS_CAUSE_COUNT ? s->groups[e->group].cause_detail[slot] : NULL;
            if (d == NULL)
                d = s->groups[e->group].detail_json;
        }
        /* The loop renders detail_json; a malformed one must not corrupt this document. The
         * detail is the last probe of this group that ended the way this endpoint did (the
         * chain, retrievals and message are the group's); its timings are that probe's, not
         * this endpoint's, so they are dropped here: the item's timings_ms are its own. */
        cJSON *parsed = d != NULL ? cJSON_Parse(d) : NULL;
        puts_(b, ",\"detail\":");
        if (parsed != NULL) {
            cJSON_DeleteItemFromObject(parsed, "timings_ms");
            cJSON_DeleteItemFromObject(parsed, "total_ms");
            cJSON_AddStringToObject(parsed, "source",
                                    "the group's last probe with this endpoint's outcome");
            char *out = cJSON_PrintUnformatted(parsed);
            puts_(b, out ? out : "null");
            free(out);
        } else {
            puts_(b, "null");
        }
        cJSON_Delete(parsed);
    }
    putc_(b, '}');
    return done(b);
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

int render_endpoints(const snap_t *s, const render_query_t *q, render_buf_t *b)
{
    size_t from = 0, to = s->nendpoints, total = 0;
    if (q->group >= 0) {
        from = group_lower_bound(s, (uint32_t)q->group);
        to = group_lower_bound(s, (uint32_t)q->group + 1);
    }
    puts_(b, "{\"items\":[");
    for (size_t i = from; i < to; i++) {
        const snap_endpoint_t *e = &s->endpoints[i];
        if (!endpoint_matches(q, e))
            continue;
        if (total >= q->offset && total - q->offset < q->limit) {
            if (total > q->offset)
                putc_(b, ',');
            render_endpoint(s, e, 0, b);
        }
        total++;
    }
    puts_(b, "],\"total\":");
    put_u64(b, total);
    puts_(b, ",\"limit\":");
    put_u64(b, q->limit);
    puts_(b, ",\"offset\":");
    put_u64(b, q->offset);
    putc_(b, '}');
    return done(b);
}

int render_events(const snap_t *s, uint64_t since_seq, int64_t since_at, render_buf_t *b)
{
    uint64_t last = since_seq;
    int first = 1;
    puts_(b, "{\"events\":[");
    for (size_t i = 0; i < s->nevents; i++) {
        const snap_event_t *ev = &s->events[i];
        if (ev->seq > last)
            last = ev->seq;
        if (ev->seq <= since_seq || ev->at < since_at)
            continue;
        size_t n = strnlen(ev->subject, sizeof(ev->subject));
        int is_group = n >= 6 && memcmp(ev->subject, "group:", 6) == 0;
        if (!first)
            putc_(b, ',');
        first = 0;
        puts_(b, "{\"seq\":");
        put_u64(b, ev->seq);
        puts_(b, ",\"at\":");
        put_jtime(b, ev->at);
        puts_(b, is_group ? ",\"kind\":\"group\",\"subject\":"
                          : ",\"kind\":\"endpoint\",\"subject\":");
        put_jstr_n(b, ev->subject, n);
        puts_(b, ",\"old_state\":\"");
        puts_(b, snap_state_name(ev->old_state));
        puts_(b, "\",\"new_state\":\"");
        puts_(b, snap_state_name(ev->new_state));
        puts_(b, "\",\"cause\":");
        if (ev->cause != FS_CAUSE_NONE)
            put_jstr(b, fs_cause_id((fs_cause_t)ev->cause));
        else
            puts_(b, "null");
        putc_(b, '}');
    }
    puts_(b, "],\"last_seq\":");
    put_u64(b, last);
    putc_(b, '}');
    return done(b);
}

static void put_catalogue_entry(render_buf_t *b, const fs_cause_info_t *ci)
{
    puts_(b, "{\"id\":");
    put_jstr(b, ci->id);
    puts_(b, ",\"phase\":");
    put_jstr(b, ci->phase);
    puts_(b, ",\"symptom\":");
    put_jstr(b, ci->symptom);
    puts_(b, ",\"description\":");
    put_jstr(b, ci->description);
    puts_(b, ",\"remediation\":");
    put_jstr(b, ci->remediation);
    putc_(b, '}');
}

int render_causes(render_buf_t *b)
{
    puts_(b, "{\"causes\":[");
    for (int i = FS_CAUSE_NONE + 1; i < FS_CAUSE_COUNT; i++) {
        if (i > FS_CAUSE_NONE + 1)
            putc_(b, ',');
        put_catalogue_entry(b, fs_cause_info((fs_cause_t)i));
    }
    puts_(b, "],\"warnings\":[");
    for (int i = 0; i < FS_WARN_COUNT; i++) {
        if (i > 0)
            putc_(b, ',');
        put_catalogue_entry(b, fs_warning_info((fs_warning_t)i));
    }
    puts_(b, "]}");
    return done(b);
}

int render_error(const char *msg, const char *code, render_buf_t *b)
{
    puts_(b, "{\"error\":");
    put_jstr(b, msg);
    puts_(b, ",\"code\":");
    put_jstr(b, code);
    putc_(b, '}');
    return done(b);
}

/* ---- Prometheus ------------------------------------------------------------------------ */

/* A label value per the exposition format: backslash, double quote and newline escaped. */
static void put_label_value(render_buf_t *b, const char *v)
{
    const char *run = v;
    for (; *v; v++) {
        const char *esc = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
        if (esc == NULL)
            continue;
        put(b, run, (size_t)(v - run));
        put(b, esc, 2);
        run = v + 1;
    }
    put(b, run, (size_t)(v - run));
}

static void m_family(render_buf_t *b, const char *name, const char *type, const char *help)
{
    puts_(b, "# HELP ");
    puts_(b, name);
    putc_(b, ' ');
    puts_(b, help);
    puts_(b, "\n# TYPE ");
    puts_(b, name);
    putc_(b, ' ');
    puts_(b, type);
    putc_(b, '\n');
}

/* name{<common>[,l1="v1"][,l2="v2"]} — the value follows. common is the pre-rendered
 * vantage/shard pair. */
static void m_labels(render_buf_t *b, const char *name, const render_buf_t *common, const char *l1,
                     const char *v1, const char *l2, const char *v2)
{
    puts_(b, name);
    putc_(b, '{');
    put(b, common->data, common->len);
    if (l1 != NULL) {
        putc_(b, ',');
        puts_(b, l1);
        put(b, "=\"", 2);
        put_label_value(b, v1);
        putc_(b, '"');
    }
    if (l2 != NULL) {
        putc_(b, ',');
        puts_(b, l2);
        put(b, "=\"", 2);
        put_label_value(b, v2);
        putc_(b, '"');
    }
    put(b, "} ", 2);
}

static void m_u64(render_buf_t *b, const char *name, const render_buf_t *common, const char *l1,
                  const char *v1, const char *l2, const char *v2, uint64_t v)
{
    m_labels(b, name, common, l1, v1, l2, v2);
    put_u64(b, v);
    putc_(b, '\n');
}

static void m_double(render_buf_t *b, const char *name, const render_buf_t *common, const char *l1,
                     const char *v1, const char *l2, const char *v2, double v)
{
    m_labels(b, name, common, l1, v1, l2, v2);
    put_double(b, v);
    putc_(b, '\n');
}

/* Copies the loop's pre-rendered lines, inserting the common labels into every sample. */
static void put_metrics_extra(render_buf_t *b, const char *extra, const render_buf_t *common)
{
    const char *p = extra;
    while (*p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t n = eol != NULL ? (size_t)(eol - p) : strlen(p);
        if (n == 0 || p[0] == '#') {
            put(b, p, n);
        } else {
            size_t k = strcspn(p, "{ \t\n");
            if (k > n)
                k = n;
            put(b, p, k);
            putc_(b, '{');
            put(b, common->data, common->len);
            if (k < n && p[k] == '{') {
                if (k + 1 < n && p[k + 1] != '}')
                    putc_(b, ',');
                put(b, p + k + 1, n - k - 1);
            } else {
                putc_(b, '}');
                put(b, p + k, n - k);
            }
        }
        if (n > 0)
            putc_(b, '\n');
        p += n + (eol != NULL);
    }
}

int render_metrics(const snap_t *s, render_buf_t *b)
{
    static const char *const results[] = {"online", "offline"};
    static const int result_states[] = {SNAP_ONLINE, SNAP_OFFLINE};
    render_buf_t common;
    char tmp[32];
    int rc;

    render_buf_init(&common, 128, 4096);
    puts_(&common, "vantage=\"");
    put_label_value(&common, s->vantage ? s->vantage : "");
    puts_(&common, "\",shard=\"");
    put_label_value(&common, s->shard ? s->shard : "0/1");
    putc_(&common, '"');
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
        m_double(b, "fleetscan_probe_duration_seconds_sum", &common, "phase", phase_names[ph], NULL,
                 NULL, s->hist_sum[ph]);
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

    if (s->metrics_extra != NULL)
        put_metrics_extra(b, s->metrics_extra, &common);
    rc = done(b);
out:
    render_buf_free(&common);
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
