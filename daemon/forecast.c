/* forecast.c - moves each group's online endpoints to offline at the first instant their
 * validated chain expires (cert_expired) or, under strict revocation, the CRL they checked
 * passes nextUpdate (crl_expired); offline and pending endpoints keep their state. */
#include "daemon/forecast.h"
#include "probes/util.h"

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

char *forecast_json(const snap_t *s, int days, int64_t now)
{
    int64_t at = now + (int64_t)days * 86400;
    char ts[32];
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "days", days);
    cJSON_AddStringToObject(root, "at", fs_rfc3339(at, ts, sizeof(ts)));
    cJSON_AddStringToObject(root, "assumes",
                            "no certificate is renewed and no CRL is republished until then");
    snap_counts_t total = {0};
    cJSON *groups = cJSON_CreateArray();
    for (size_t i = 0; i < s->ngroups; i++) {
        const snap_group_t *g = &s->groups[i];
        snap_counts_t c = g->counts;
        fs_cause_t why = FS_CAUSE_NONE;
        int64_t from = offline_from(g, &why);
        if (from != 0 && at >= from && c.online > 0) {
            c.offline += c.online;
            c.causes[why] += c.online;
            c.online = 0;
        }
        total.total += c.total;
        total.online += c.online;
        total.offline += c.offline;
        total.pending += c.pending;
        for (int k = 0; k < FS_CAUSE_COUNT; k++)
            total.causes[k] += c.causes[k];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", g->name);
        add_counts(o, &c);
        if (from != 0) {
            cJSON_AddStringToObject(o, "offline_from", fs_rfc3339(from, ts, sizeof(ts)));
            cJSON_AddStringToObject(o, "offline_cause", fs_cause_id(why));
        } else {
            cJSON_AddNullToObject(o, "offline_from");
            cJSON_AddNullToObject(o, "offline_cause");
        }
        cJSON_AddItemToArray(groups, o);
    }
    add_counts(root, &total);
    cJSON_AddItemToObject(root, "groups", groups);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}
