/* store.c - the state database (store.h): the loop hands over snapshots, events and cache entries
 * (never waiting for the disk), and the store thread writes them, one transaction per snapshot
 * tick, endpoints diffed against the last commit; store_open/store_close around it. The file
 * itself (schema, open, rebuild) is store_db.c; reading it back and the history store_read.c. */
#include "daemon/store_int.h"
#include "probes/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void batch_free(batch_t *b)
{
    snap_unref(b->snap);
    for (size_t i = 0; i < b->nev; i++)
        free(b->ev[i].message);
    for (size_t i = 0; i < b->ncache; i++) {
        free((char *)b->cache[i].url);
        free((char *)b->cache[i].certid);
        free((char *)b->cache[i].view);
        free((unsigned char *)b->cache[i].body);
    }
    free(b->ev);
    free(b->cache);
    memset(b, 0, sizeof(*b));
}

/* Puts what failed to be written back in front of what came meanwhile (under mu), within the
 * pending bounds: past them the newest are dropped and counted. */
static void requeue(store_t *s, batch_t *b)
{
    pthread_mutex_lock(&s->mu);
    batch_t *p = &s->pending;
    size_t nev = b->nev + p->nev;
    if (nev > 0) {
        pending_event_t *ev = fs_xmalloc(nev * sizeof(*ev));
        if (b->nev > 0)
            memcpy(ev, b->ev, b->nev * sizeof(*ev));
        if (p->nev > 0)
            memcpy(ev + b->nev, p->ev, p->nev * sizeof(*ev));
        size_t keep = nev < STORE_PENDING_EVENTS_MAX ? nev : STORE_PENDING_EVENTS_MAX;
        for (size_t i = keep; i < nev; i++)
            free(ev[i].message);
        s->st.events_dropped += nev - keep;
        free(p->ev);
        p->ev = ev;
        p->nev = p->cap_ev = keep;
        free(b->ev);
        b->ev = NULL;
        b->nev = 0;
    }
    /* Cache entries: the live ones are exported again only when refetched; keep what fits. */
    for (size_t i = 0; i < b->ncache; i++) {
        rev_cache_item_t *it = &b->cache[i];
        if (p->cache_bytes + it->len > STORE_PENDING_CACHE_BYTES)
            continue; /* freed with b */
        if (p->ncache == p->cap_cache) {
            p->cap_cache = p->cap_cache ? p->cap_cache * 2 : 8;
            p->cache = fs_xrealloc(p->cache, p->cap_cache * sizeof(*p->cache));
        }
        p->cache[p->ncache++] = *it;
        p->cache_bytes += it->len;
        memset(it, 0, sizeof(*it));
    }
    pthread_mutex_unlock(&s->mu);
}

static uint64_t layout_hash(const snap_t *sn)
{
    uint64_t h = 1469598103934665603ull;
#define MIX(v) (h = (h ^ (uint64_t)(v)) * 1099511628211ull)
    MIX(sn->ngroups);
    MIX(sn->nendpoints);
    for (size_t g = 0; g < sn->ngroups; g++)
        for (const char *c = sn->groups[g].name ? sn->groups[g].name : "";; c++) {
            MIX((unsigned char)*c);
            if (*c == '\0')
                break;
        }
    for (size_t i = 0; i < sn->nendpoints; i++) {
        MIX(sn->endpoints[i].group);
        MIX(sn->endpoints[i].index);
    }
#undef MIX
    return h;
}

static void warnings_text(uint32_t w, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int k = 0; k < FS_WARN_COUNT; k++)
        if (w & FS_WARN_BIT(k))
            len += (size_t)snprintf(buf + len, len < n ? n - len : 0, "%s%s", len ? "," : "",
                                    fs_warning_id((fs_warning_t)k));
}

static int step_reset(sqlite3_stmt *q)
{
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int put_endpoint(store_t *s, const snap_t *sn, const snap_endpoint_t *e)
{
    sqlite3_stmt *q = s->q[Q_EP_PUT];
    char w[512];
    const char *g =
        e->group < sn->ngroups && sn->groups[e->group].name ? sn->groups[e->group].name : "?";
    sqlite3_bind_text(q, 1, g, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, e->index);
    sqlite3_bind_text(q, 3, snap_state_name(e->state), -1, SQLITE_STATIC);
    if (e->state == SNAP_OFFLINE)
        sqlite3_bind_text(q, 4, fs_cause_id((fs_cause_t)e->cause), -1, SQLITE_STATIC);
    warnings_text(e->warnings, w, sizeof(w));
    if (w[0])
        sqlite3_bind_text(q, 5, w, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(q, 6, e->since);
    sqlite3_bind_int64(q, 7, e->last_probe_at);
    return step_reset(q);
}

static int differs(const written_t *w, const snap_endpoint_t *e)
{
    return w->state != e->state || w->cause != e->cause || w->warnings != e->warnings ||
           w->since != e->since;
}

static void remember(written_t *w, const snap_endpoint_t *e)
{
    *w = (written_t){.since = e->since,
                     .last_probe = e->last_probe_at,
                     .warnings = e->warnings,
                     .state = e->state,
                     .cause = e->cause};
}

/* The endpoint table follows the snapshot: whole after a start or a reload that changed the
 * layout, else the endpoints whose state changed plus a slice whose last_probe is refreshed.
 * *changed lists the positions written (for remember() once committed). */
static int write_endpoints(store_t *s, const snap_t *sn, uint64_t layout, uint32_t **changed,
                           size_t *nchanged, uint32_t *swept)
{
    int rc = SQLITE_OK;
    size_t cap = 0;
    *nchanged = 0;
    *swept = 0;
    if (s->written == NULL || layout != s->layout) {
        rc = sqlite3_exec(s->db, "DELETE FROM endpoints", NULL, NULL, NULL);
        for (size_t i = 0; rc == SQLITE_OK && i < sn->nendpoints; i++)
            rc = put_endpoint(s, sn, &sn->endpoints[i]);
        return rc;
    }
    for (size_t i = 0; rc == SQLITE_OK && i < sn->nendpoints; i++) {
        if (!differs(&s->written[i], &sn->endpoints[i]))
            continue;
        rc = put_endpoint(s, sn, &sn->endpoints[i]);
        if (*nchanged == cap) {
            cap = cap ? cap * 2 : 64;
            *changed = fs_xrealloc(*changed, cap * sizeof(**changed));
        }
        (*changed)[(*nchanged)++] = (uint32_t)i;
    }
    int64_t dt = sn->generated_at - s->last_tick_at;
    dt = dt < 1 ? 1 : dt > STORE_SWEEP_S ? STORE_SWEEP_S : dt;
    uint64_t n = sn->nendpoints, slice = (n * (uint64_t)dt + STORE_SWEEP_S - 1) / STORE_SWEEP_S;
    for (uint64_t k = 0; rc == SQLITE_OK && k < slice && n > 0; k++) {
        size_t i = (s->sweep + k) % n;
        const snap_endpoint_t *e = &sn->endpoints[i];
        if (s->written[i].last_probe != e->last_probe_at && !differs(&s->written[i], e))
            rc = put_endpoint(s, sn, e);
    }
    *swept = (uint32_t)(slice > n ? n : slice);
    return rc;
}

/* One row per group for the minute of this snapshot (the first snapshot of each minute). */
static int write_counts(store_t *s, const snap_t *sn, int64_t minute)
{
    sqlite3_stmt *q = s->q[Q_COUNTS_PUT];
    int rc = SQLITE_OK;
    for (size_t g = 0; rc == SQLITE_OK && g < sn->ngroups; g++) {
        const snap_counts_t *c = &sn->groups[g].counts;
        char causes[FS_CAUSE_COUNT * 40 + 4];
        size_t len = 1;
        causes[0] = '{';
        for (int k = FS_CAUSE_NONE + 1; k < FS_CAUSE_COUNT; k++)
            if (c->causes[k] != 0)
                len +=
                    (size_t)snprintf(causes + len, sizeof(causes) - len, "%s\"%s\":%u",
                                     len > 1 ? "," : "", fs_cause_id((fs_cause_t)k), c->causes[k]);
        snprintf(causes + len, sizeof(causes) - len, "}");
        sqlite3_bind_int64(q, 1, minute);
        sqlite3_bind_text(q, 2, sn->groups[g].name ? sn->groups[g].name : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 3, c->online);
        sqlite3_bind_int64(q, 4, c->offline);
        sqlite3_bind_int64(q, 5, c->pending);
        sqlite3_bind_text(q, 6, causes, -1, SQLITE_TRANSIENT);
        rc = step_reset(q);
    }
    return rc;
}

static int write_events(store_t *s, const batch_t *b)
{
    sqlite3_stmt *q = s->q[Q_EV_PUT];
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < b->nev; i++) {
        const snap_event_t *ev = &b->ev[i].ev;
        sqlite3_bind_int64(q, 1, (int64_t)ev->seq);
        sqlite3_bind_int64(q, 2, ev->at);
        sqlite3_bind_text(q, 3, ev->subject, (int)strnlen(ev->subject, sizeof(ev->subject)),
                          SQLITE_STATIC);
        sqlite3_bind_text(q, 4, snap_state_name(ev->old_state), -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 5, snap_state_name(ev->new_state), -1, SQLITE_STATIC);
        if (ev->cause != FS_CAUSE_NONE)
            sqlite3_bind_text(q, 6, fs_cause_id((fs_cause_t)ev->cause), -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 7, b->ev[i].message ? b->ev[i].message : "", -1, SQLITE_STATIC);
        rc = step_reset(q);
        if (ev->seq > s->event_seq)
            s->event_seq = ev->seq;
    }
    if (rc == SQLITE_OK && b->nev > 0) {
        q = s->q[Q_META_PUT];
        sqlite3_bind_text(q, 1, "event_seq", -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 2, (int64_t)s->event_seq);
        rc = step_reset(q);
    }
    return rc;
}

static int write_cache(store_t *s, const batch_t *b)
{
    sqlite3_stmt *q = s->q[Q_CACHE_PUT];
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < b->ncache; i++) {
        const rev_cache_item_t *it = &b->cache[i];
        char kind[2] = {it->kind, '\0'};
        sqlite3_bind_text(q, 1, kind, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 2, it->url, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, it->certid, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 4, it->view, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 5, it->fetched_at);
        sqlite3_bind_int64(q, 6, it->next_update);
        sqlite3_bind_int64(q, 7, it->expires_at);
        sqlite3_bind_int64(q, 8, it->http_status);
        sqlite3_bind_blob64(q, 9, it->body, it->len, SQLITE_STATIC);
        rc = step_reset(q);
    }
    return rc;
}

/* Once a minute: the history's age and size bounds, expired cache entries. */
static int prune(store_t *s, int64_t now)
{
    const struct {
        const char *sql;
        int64_t arg;
    } steps[] = {
        {"DELETE FROM events WHERE at < ?1", now - s->o.history_max_age_s},
        {"DELETE FROM events WHERE seq <= "
         "(SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
         s->o.events_max},
        {"DELETE FROM counts WHERE at < ?1", now - s->o.history_max_age_s},
        {"DELETE FROM counts WHERE at <= "
         "(SELECT at FROM counts ORDER BY at DESC LIMIT 1 OFFSET ?1)",
         s->o.counts_max},
        {"DELETE FROM revcache WHERE expires_at <= ?1", now},
    };
    int rc = SQLITE_OK;
    for (size_t i = 0; rc == SQLITE_OK && i < FS_ARRAY_SIZE(steps); i++) {
        sqlite3_stmt *q = NULL;
        rc = sqlite3_prepare_v2(s->db, steps[i].sql, -1, &q, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(q, 1, steps[i].arg);
            rc = step_reset(q);
        }
        sqlite3_finalize(q);
    }
    return rc;
}

/* Writes one tick in one transaction. On failure nothing of it counts as written: the
 * endpoints are diffed against the last commit next time and the events and cache entries are
 * queued again. */
static void write_tick(store_t *s, batch_t *b)
{
    int64_t now = fs_wall_ms() / 1000;
    if (s->db == NULL) {
        if (now < s->retry_at) {
            requeue(s, b);
            return;
        }
        store__db_open(s, NULL);
        if (s->db == NULL) {
            requeue(s, b);
            return;
        }
    }
    const snap_t *sn = b->snap;
    uint32_t *changed = NULL, swept = 0;
    size_t nchanged = 0;
    uint64_t layout = sn ? layout_hash(sn) : 0;
    int64_t minute = sn ? sn->generated_at / 60 * 60 : 0;
    int full = sn != NULL && (s->written == NULL || layout != s->layout);
    int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK && sn != NULL)
        rc = write_endpoints(s, sn, layout, &changed, &nchanged, &swept);
    if (rc == SQLITE_OK && sn != NULL && minute != s->last_minute) {
        rc = write_counts(s, sn, minute);
        if (rc == SQLITE_OK)
            rc = prune(s, now);
    }
    uint64_t seq_before = s->event_seq;
    if (rc == SQLITE_OK)
        rc = write_events(s, b);
    if (rc == SQLITE_OK)
        rc = write_cache(s, b);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        char msg[200];
        snprintf(msg, sizeof(msg), "%s", sqlite3_errmsg(s->db));
        if (sqlite3_get_autocommit(s->db) == 0)
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        s->event_seq = seq_before;
        free(changed);
        if (store__is_corrupt(rc)) {
            store__move_aside(s, msg);
            store__db_open(s, NULL);
        } else {
            store__report(s, SNAP_DB_FAILING, "%s: writing failed: %s; retrying every tick",
                          s->path, msg);
        }
        requeue(s, b);
        return;
    }
    if (full) {
        free(s->written);
        s->nwritten = sn->nendpoints;
        s->written = fs_xmalloc((s->nwritten ? s->nwritten : 1) * sizeof(*s->written));
        for (size_t i = 0; i < sn->nendpoints; i++)
            remember(&s->written[i], &sn->endpoints[i]);
        s->layout = layout;
        s->sweep = 0;
    } else if (sn != NULL) {
        for (size_t k = 0; k < nchanged; k++)
            remember(&s->written[changed[k]], &sn->endpoints[changed[k]]);
        for (uint32_t k = 0; k < swept; k++) {
            size_t i = (s->sweep + k) % sn->nendpoints;
            s->written[i].last_probe = sn->endpoints[i].last_probe_at;
        }
        if (sn->nendpoints > 0)
            s->sweep = (uint32_t)((s->sweep + swept) % sn->nendpoints);
    }
    free(changed);
    if (sn != NULL) {
        s->last_tick_at = sn->generated_at;
        s->last_minute = minute;
    }
    pthread_mutex_lock(&s->mu);
    if (sn != NULL)
        s->st.last_write_at = sn->generated_at;
    pthread_mutex_unlock(&s->mu);
    store__set_status(s, SNAP_DB_OK);
}

static void *store_main(void *arg)
{
    fs_thread_name("fs-store");
    store_t *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->pending.snap == NULL && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->pending.snap == NULL && s->pending.nev == 0 && s->pending.ncache == 0)
            break; /* stopping, nothing left */
        batch_t b = s->pending;
        memset(&s->pending, 0, sizeof(s->pending));
        int stopping = s->stop;
        pthread_mutex_unlock(&s->mu);
        write_tick(s, &b);
        batch_free(&b);
        pthread_mutex_lock(&s->mu);
        if (stopping)
            break; /* one last attempt only: a failing disk must not hold up the stop */
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- public ---------------------------------------------------------------------------- */

int store_path_enabled(const char *path)
{
    return path != NULL && path[0] != '\0' && strcmp(path, ":memory:") != 0;
}

store_t *store_open(const char *path, const store_opts_t *o, store_saved_t *saved)
{
    if (saved != NULL)
        memset(saved, 0, sizeof(*saved));
    if (!store_path_enabled(path))
        return NULL;
    store_t *s = fs_xcalloc(1, sizeof(*s));
    s->path = fs_xstrdup(path);
    if (o != NULL)
        s->o = *o;
    if (s->o.history_max_age_s <= 0)
        s->o.history_max_age_s = (int64_t)STORE_HISTORY_DAYS * 86400;
    if (s->o.events_max == 0)
        s->o.events_max = STORE_EVENTS_MAX;
    if (s->o.counts_max == 0)
        s->o.counts_max = STORE_COUNTS_MAX;
    if (s->o.restore_events == 0)
        s->o.restore_events = 4096;
    s->lock_fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->rd_mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->st.path = s->path;
    s->st.status = SNAP_DB_OFF; /* until the first open tells */
    store__db_open(s, saved);
    if (pthread_create(&s->thread, NULL, store_main, s) == 0)
        s->thread_started = 1;
    else
        store__report(s, SNAP_DB_UNAVAILABLE, "%s: cannot start the store thread", s->path);
    return s;
}

void store_close(store_t *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->thread_started)
        pthread_join(s->thread, NULL);
    if (s->db != NULL && s->st.status == SNAP_DB_OK)
        sqlite3_exec(s->db, "INSERT OR REPLACE INTO meta VALUES('clean', 1)", NULL, NULL, NULL);
    pthread_mutex_lock(&s->rd_mu);
    sqlite3_close(s->rd);
    pthread_mutex_unlock(&s->rd_mu);
    store__db_close(s);
    batch_free(&s->pending);
    free(s->written);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->rd_mu);
    pthread_mutex_destroy(&s->mu);
    free(s->path);
    free(s);
}

void store_add_event(store_t *s, const snap_event_t *ev, const char *message)
{
    pthread_mutex_lock(&s->mu);
    batch_t *p = &s->pending;
    if (p->nev >= STORE_PENDING_EVENTS_MAX) {
        s->st.events_dropped++;
    } else {
        if (p->nev == p->cap_ev) {
            p->cap_ev = p->cap_ev ? p->cap_ev * 2 : 64;
            p->ev = fs_xrealloc(p->ev, p->cap_ev * sizeof(*p->ev));
        }
        p->ev[p->nev].ev = *ev;
        p->ev[p->nev++].message = fs_xstrdup(message ? message : "");
    }
    pthread_mutex_unlock(&s->mu);
}

void store_add_cache(store_t *s, const rev_cache_item_t *it)
{
    /* Copied before taking the lock: a CRL may be megabytes. */
    if (it->len > STORE_PENDING_CACHE_BYTES)
        return;
    unsigned char *body = fs_xmalloc(it->len ? it->len : 1);
    memcpy(body, it->body, it->len);
    rev_cache_item_t c = *it;
    c.url = fs_xstrdup(it->url);
    c.certid = fs_xstrdup(it->certid ? it->certid : "");
    c.view = fs_xstrdup(it->view ? it->view : "");
    c.body = body;
    pthread_mutex_lock(&s->mu);
    batch_t *p = &s->pending;
    int fits = p->cache_bytes + it->len <= STORE_PENDING_CACHE_BYTES;
    if (fits) {
        if (p->ncache == p->cap_cache) {
            p->cap_cache = p->cap_cache ? p->cap_cache * 2 : 8;
            p->cache = fs_xrealloc(p->cache, p->cap_cache * sizeof(*p->cache));
        }
        p->cache[p->ncache++] = c;
        p->cache_bytes += it->len;
    }
    pthread_mutex_unlock(&s->mu);
    if (!fits) { /* only a cache: refetched after a restart */
        free((char *)c.url);
        free((char *)c.certid);
        free((char *)c.view);
        free(body);
    }
}

void store_submit(store_t *s, snap_t *sn)
{
    snap_ref(sn);
    pthread_mutex_lock(&s->mu);
    snap_t *old = s->pending.snap;
    s->pending.snap = sn;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    snap_unref(old); /* merged: the next write diffs against what was last committed */
}

void store_note_restored(store_t *s, uint32_t endpoints, uint32_t events, uint32_t cache)
{
    pthread_mutex_lock(&s->mu);
    s->st.restored_endpoints = endpoints;
    s->st.restored_events = events;
    s->st.restored_cache = cache;
    pthread_mutex_unlock(&s->mu);
}

void store_status(store_t *s, snap_store_t *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->path = fs_xstrdup(s->path);
    out->moved_to = s->st.moved_to ? fs_xstrdup(s->st.moved_to) : NULL;
    out->last_error = s->st.last_error ? fs_xstrdup(s->st.last_error) : NULL;
    pthread_mutex_unlock(&s->mu);
}
