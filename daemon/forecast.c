/* forecast.c - moves each group's online endpoints to offline at the first instant their
 * validated chain expires (cert_expired) or, under strict revocation, the CRL they checked
 * passes nextUpdate (crl_expired); offline and pending endpoints keep their state. */
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

/* When (host time) the group's online endpoints stop validating, and why; 0 when never. */
static int64_t offline_from(const snap_group_t *g, fs_cause_t *why)
{
    int64_t when = 0;
    if (g->chain_not_after != 0) {
        when = g->chain_not_after - g->clock_skew_s;
        *why = FS_CAUSE_CERT_EXPIRED;
    }
    if (g->rev_strict && g->crl_next_update != 0) {
        int64_t c = g->crl_next_update - g->clock_skew_s;
        if (when == 0 || c < when) {
            when = c;
            *why = FS_CAUSE_CRL_EXPIRED;
        }
    }
    return when;
}

/* Group g's counts at instant at, with when and why its online endpoints stop validating. */
static snap_counts_t project(const snap_group_t *g, int64_t at, int64_t *from, fs_cause_t *why)
{
    snap_counts_t c = g->counts;
    *why = FS_CAUSE_NONE;
    *from = offline_from(g, why);
    if (*from != 0 && at >= *from && c.online > 0) {
        c.offline += c.online;
        c.causes[*why] += c.online;
        c.online = 0;
    }
    return c;
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

char *forecast_json(const snap_t *s, int days, int64_t now)
{
    int64_t at = now + (int64_t)days * 86400, from;
    fs_cause_t why;
    char ts[32];
    snap_counts_t total = {0};
    for (size_t i = 0; i < s->ngroups; i++) {
        snap_counts_t c = project(&s->groups[i], at, &from, &why);
        total.total += c.total;
        total.online += c.online;
        total.offline += c.offline;
        total.pending += c.pending;
        for (int k = 0; k < FS_CAUSE_COUNT; k++)
            total.causes[k] += c.causes[k];
    }
    out_t o = {0};
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "days", days);
    cJSON_AddStringToObject(root, "at", fs_rfc3339(at, ts, sizeof(ts)));
    cJSON_AddStringToObject(root, "assumes",
                            "no certificate is renewed and no CRL is republished until then");
    add_counts(root, &total);
    out_json(&o, root, 1);
    out_put(&o, ",\"groups\":[", 11);
    for (size_t i = 0; i < s->ngroups; i++) {
        const snap_group_t *g = &s->groups[i];
        snap_counts_t c = project(g, at, &from, &why);
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", g->name);
        add_counts(j, &c);
        if (from != 0) {
            cJSON_AddStringToObject(j, "offline_from", fs_rfc3339(from, ts, sizeof(ts)));
            cJSON_AddStringToObject(j, "offline_cause", fs_cause_id(why));
        } else {
            cJSON_AddNullToObject(j, "offline_from");
            cJSON_AddNullToObject(j, "offline_cause");
        }
        if (i > 0)
            out_put(&o, ",", 1);
        out_json(&o, j, 0);
    }
    out_put(&o, "]}", 2);
    if (o.failed) {
        free(o.data);
        return NULL;
    }
    return o.data;
}
