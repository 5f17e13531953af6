/* store_read.c - reading the state database: what a restart brings back (endpoint states, the
 * newest events and the event sequence, fresh cache entries) and GET /api/v1/history from the
 * per-minute counts, on a read-only connection (WAL readers never block the writer). */
#include "daemon/store_int.h"
#include "probes/util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY_POINTS_MAX 20000

static int state_from_name(const char *n)
{
    for (int i = 0; n != NULL && i < SNAP_STATE_COUNT; i++)
        if (strcmp(snap_state_name(i), n) == 0)
            return i;
    return -1;
}

static uint32_t warnings_from_text(const char *t)
{
    uint32_t w = 0;
    char id[64];
    while (t != NULL && *t) {
        size_t n = strcspn(t, ",");
        if (n < sizeof(id)) {
            memcpy(id, t, n);
            id[n] = '\0';
            int k = fs_warning_from_id(id);
            if (k >= 0)
                w |= FS_WARN_BIT(k);
        }
        t += n + (t[n] == ',');
    }
    return w;
}

static int load_endpoints(sqlite3 *db, store_saved_t *sv)
{
    sqlite3_stmt *q = NULL;
    size_t cap = 0, gcap = 0;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT grp, idx, state, cause, warnings, since, last_probe FROM "
                                "endpoints WHERE state != 'pending' ORDER BY grp, idx",
                                -1, &q, NULL);
    while (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        const char *g = (const char *)sqlite3_column_text(q, 0);
        int state = state_from_name((const char *)sqlite3_column_text(q, 2));
        const char *cause = (const char *)sqlite3_column_text(q, 3);
        int c = cause != NULL ? fs_cause_from_id(cause) : FS_CAUSE_NONE;
        int64_t idx = sqlite3_column_int64(q, 1);
        if (g == NULL || state < 0 || c < 0 || idx < 0 || idx > UINT32_MAX ||
            (state == SNAP_OFFLINE) != (c != FS_CAUSE_NONE))
            continue; /* a state this version cannot show: probed afresh */
        if (sv->ngroups == 0 || strcmp(sv->groups[sv->ngroups - 1], g) != 0) {
            if (sv->ngroups == gcap) {
                gcap = gcap ? gcap * 2 : 16;
                sv->groups = fs_xrealloc(sv->groups, gcap * sizeof(*sv->groups));
            }
            sv->groups[sv->ngroups++] = fs_xstrdup(g);
        }
        if (sv->neps == cap) {
            cap = cap ? cap * 2 : 1024;
            sv->eps = fs_xrealloc(sv->eps, cap * sizeof(*sv->eps));
        }
        store_saved_ep_t *e = &sv->eps[sv->neps++];
        e->group = (uint32_t)(sv->ngroups - 1);
        e->index = (uint32_t)idx;
        e->state = (uint8_t)state;
        e->cause = (uint8_t)c;
        e->warnings = warnings_from_text((const char *)sqlite3_column_text(q, 4));
        e->since = sqlite3_column_int64(q, 5);
        e->last_probe = sqlite3_column_int64(q, 6);
    }
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int load_events(sqlite3 *db, store_saved_t *sv, uint32_t keep)
{
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT seq, at, subject, old_state, new_state, cause FROM events "
                                "ORDER BY seq DESC LIMIT ?",
                                -1, &q, NULL);
    if (rc == SQLITE_OK)
        sqlite3_bind_int64(q, 1, keep);
    sv->events = fs_xcalloc(keep ? keep : 1, sizeof(*sv->events));
    while (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        int o = state_from_name((const char *)sqlite3_column_text(q, 3));
        int n = state_from_name((const char *)sqlite3_column_text(q, 4));
        const char *cause = (const char *)sqlite3_column_text(q, 5);
        int c = cause != NULL ? fs_cause_from_id(cause) : FS_CAUSE_NONE;
        const char *subject = (const char *)sqlite3_column_text(q, 2);
        uint64_t seq = (uint64_t)sqlite3_column_int64(q, 0);
        if (seq > sv->event_seq)
            sv->event_seq = seq;
        if (o < 0 || n < 0 || subject == NULL)
            continue;
        snap_event_t *ev = &sv->events[sv->nevents++];
        ev->seq = seq;
        ev->at = sqlite3_column_int64(q, 1);
        fs_strlcpy(ev->subject, subject, sizeof(ev->subject));
        ev->old_state = (uint8_t)o;
        ev->new_state = (uint8_t)n;
        ev->cause = (uint8_t)(c < 0 ? FS_CAUSE_NONE : c);
    }
    sqlite3_finalize(q);
    for (size_t i = 0; i < sv->nevents / 2; i++) { /* oldest first */
        snap_event_t t = sv->events[i];
        sv->events[i] = sv->events[sv->nevents - 1 - i];
        sv->events[sv->nevents - 1 - i] = t;
    }
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int load_cache(sqlite3 *db, store_saved_t *sv)
{
    sqlite3_stmt *q = NULL;
    size_t cap = 0;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT kind, url, certid, view, fetched_at, next_update, "
                                "expires_at, http_status, body FROM revcache WHERE expires_at > ?",
                                -1, &q, NULL);
    if (rc == SQLITE_OK)
        sqlite3_bind_int64(q, 1, fs_wall_ms() / 1000);
    while (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        const char *kind = (const char *)sqlite3_column_text(q, 0);
        const char *url = (const char *)sqlite3_column_text(q, 1);
        const char *certid = (const char *)sqlite3_column_text(q, 2);
        const char *view = (const char *)sqlite3_column_text(q, 3);
        const void *body = sqlite3_column_blob(q, 8);
        int len = sqlite3_column_bytes(q, 8);
        if (kind == NULL || url == NULL || certid == NULL || view == NULL || body == NULL ||
            len <= 0)
            continue;
        if (sv->ncache == cap) {
            cap = cap ? cap * 2 : 16;
            sv->cache = fs_xrealloc(sv->cache, cap * sizeof(*sv->cache));
        }
        unsigned char *copy = fs_xmalloc((size_t)len);
        memcpy(copy, body, (size_t)len);
        sv->cache[sv->ncache++] = (rev_cache_item_t){.kind = kind[0],
                                                     .url = fs_xstrdup(url),
                                                     .certid = fs_xstrdup(certid),
                                                     .view = fs_xstrdup(view),
                                                     .fetched_at = sqlite3_column_int64(q, 4),
                                                     .next_update = sqlite3_column_int64(q, 5),
                                                     .expires_at = sqlite3_column_int64(q, 6),
                                                     .http_status = sqlite3_column_int(q, 7),
                                                     .body = copy,
                                                     .len = (size_t)len};
    }
    sqlite3_finalize(q);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

void store_saved_free(store_saved_t *sv)
{
    if (sv == NULL)
        return;
    for (size_t i = 0; i < sv->ngroups; i++)
        free(sv->groups[i]);
    for (size_t i = 0; i < sv->ncache; i++) {
        free((char *)sv->cache[i].url);
        free((char *)sv->cache[i].certid);
        free((char *)sv->cache[i].view);
        free((unsigned char *)sv->cache[i].body);
    }
    free(sv->groups);
    free(sv->eps);
    free(sv->events);
    free(sv->cache);
    memset(sv, 0, sizeof(*sv));
}

int store__load_saved(store_t *s, store_saved_t *sv)
{
    int rc = load_endpoints(s->db, sv);
    if (rc == SQLITE_OK)
        rc = load_events(s->db, sv, s->o.restore_events);
    if (rc == SQLITE_OK)
        rc = load_cache(s->db, sv);
    if (rc != SQLITE_OK)
        return rc;
    int64_t seq = store__meta_int(s->db, "event_seq", 0);
    if (seq > 0 && (uint64_t)seq > sv->event_seq)
        sv->event_seq = (uint64_t)seq;
    if (sv->event_seq > 0 && store__meta_int(s->db, "clean", 1) == 0)
        sv->event_seq += STORE_SEQ_GAP; /* see STORE_SEQ_GAP */
    return SQLITE_OK;
}

static void add_count(cJSON *obj, const char *key, double v)
{
    cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (it == NULL)
        cJSON_AddNumberToObject(obj, key, v);
    else
        cJSON_SetNumberValue(it, it->valuedouble + v);
}

/* The read-only connection, (re)opened when the writer opened a new file. Caller holds rd_mu. */
static int reader(store_t *s, char err[256])
{
    pthread_mutex_lock(&s->mu);
    uint64_t gen = s->gen;
    int up = s->st.status == SNAP_DB_OK || s->st.status == SNAP_DB_FAILING;
    pthread_mutex_unlock(&s->mu);
    if (!up || gen == 0) {
        snprintf(err, 256, "the state database is unavailable (see state_db in /api/v1/status)");
        return -1;
    }
    if (s->rd != NULL && s->rd_gen == gen)
        return 0;
    sqlite3_close(s->rd);
    s->rd = NULL;
    int rc = sqlite3_open_v2(s->path, &s->rd, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, 256, "cannot read the state database: %s", sqlite3_errstr(rc));
        sqlite3_close(s->rd);
        s->rd = NULL;
        return -1;
    }
    sqlite3_busy_timeout(s->rd, BUSY_TIMEOUT_MS);
    s->rd_gen = gen;
    return 0;
}

int store_history_json(store_t *s, int64_t since, int64_t until, int64_t step, char **out,
                       char err[256])
{
    *out = NULL;
    if (step < 60 || step % 60 != 0 || until <= since ||
        (until - since) / step > HISTORY_POINTS_MAX) {
        snprintf(err, 256, "step must be a multiple of 60 s and cover at most %d steps",
                 HISTORY_POINTS_MAX);
        return -1;
    }
    pthread_mutex_lock(&s->rd_mu);
    if (reader(s, err) < 0) {
        pthread_mutex_unlock(&s->rd_mu);
        return -1;
    }
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(
        s->rd,
        "WITH pick AS (SELECT at / ?1 * ?1 AS bucket, max(at) AS last FROM counts"
        " WHERE at >= ?2 AND at < ?3 GROUP BY bucket)"
        " SELECT pick.bucket, c.at, c.grp, c.online, c.offline, c.pending, c.causes"
        " FROM pick JOIN counts c ON c.at = pick.last ORDER BY pick.bucket, c.grp",
        -1, &q, NULL);
    cJSON *doc = cJSON_CreateObject(), *points = cJSON_CreateArray(), *pt = NULL, *groups = NULL;
    char t[32];
    cJSON_AddStringToObject(doc, "since", fs_rfc3339(since, t, sizeof(t)));
    cJSON_AddStringToObject(doc, "until", fs_rfc3339(until, t, sizeof(t)));
    cJSON_AddNumberToObject(doc, "step_s", (double)step);
    cJSON_AddItemToObject(doc, "points", points);
    int64_t cur = INT64_MIN;
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(q, 1, step);
        sqlite3_bind_int64(q, 2, since);
        sqlite3_bind_int64(q, 3, until);
    }
    while (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        int64_t bucket = sqlite3_column_int64(q, 0);
        if (bucket != cur) {
            cur = bucket;
            pt = cJSON_CreateObject();
            cJSON_AddStringToObject(pt, "at", fs_rfc3339(bucket, t, sizeof(t)));
            cJSON_AddStringToObject(pt, "sampled_at",
                                    fs_rfc3339(sqlite3_column_int64(q, 1), t, sizeof(t)));
            cJSON *e = cJSON_AddObjectToObject(pt, "endpoints");
            cJSON_AddNumberToObject(e, "total", 0);
            cJSON_AddNumberToObject(e, "online", 0);
            cJSON_AddNumberToObject(e, "offline", 0);
            cJSON_AddNumberToObject(e, "pending", 0);
            cJSON_AddObjectToObject(pt, "causes");
            groups = cJSON_AddArrayToObject(pt, "groups");
            cJSON_AddItemToArray(points, pt);
        }
        double on = (double)sqlite3_column_int64(q, 3), off = (double)sqlite3_column_int64(q, 4),
               pend = (double)sqlite3_column_int64(q, 5);
        cJSON *g = cJSON_CreateObject();
        const char *name = (const char *)sqlite3_column_text(q, 2);
        cJSON_AddStringToObject(g, "name", name ? name : "");
        cJSON_AddNumberToObject(g, "total", on + off + pend);
        cJSON_AddNumberToObject(g, "online", on);
        cJSON_AddNumberToObject(g, "offline", off);
        cJSON_AddNumberToObject(g, "pending", pend);
        const char *ctext = (const char *)sqlite3_column_text(q, 6);
        cJSON *causes = ctext ? cJSON_Parse(ctext) : NULL;
        if (!cJSON_IsObject(causes)) {
            cJSON_Delete(causes);
            causes = cJSON_CreateObject();
        }
        cJSON_AddItemToObject(g, "causes", causes);
        cJSON_AddItemToArray(groups, g);
        cJSON *tot = cJSON_GetObjectItem(pt, "endpoints"), *tc = cJSON_GetObjectItem(pt, "causes");
        add_count(tot, "total", on + off + pend);
        add_count(tot, "online", on);
        add_count(tot, "offline", off);
        add_count(tot, "pending", pend);
        const cJSON *c;
        cJSON_ArrayForEach(c, causes)
        {
            if (cJSON_IsNumber(c))
                add_count(tc, c->string, c->valuedouble);
        }
    }
    if (rc != SQLITE_DONE)
        snprintf(err, 256, "reading the history: %s", sqlite3_errmsg(s->rd));
    sqlite3_finalize(q);
    pthread_mutex_unlock(&s->rd_mu);
    if (rc == SQLITE_DONE)
        *out = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (rc == SQLITE_DONE && *out == NULL)
        snprintf(err, 256, "out of memory");
    return *out != NULL ? 0 : -1;
}
