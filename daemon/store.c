/* store.c - the state database (store.h): SQLite in WAL mode, written by its own thread one
 * transaction per snapshot tick, read at start (what the fleet brings back) and by the API
 * (history) through a read-only connection; a file that is not a usable database is moved
 * aside and rebuilt. */
#include "daemon/store.h"
#include "probes/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION 1
#define RETRY_OPEN_S 60      /* an unavailable database is tried again this often */
#define BUSY_TIMEOUT_MS 2000 /* waiting for another client's lock, on the store thread only */
#define HISTORY_POINTS_MAX 20000

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS endpoints(grp TEXT NOT NULL, idx INTEGER NOT NULL,"
    " state TEXT NOT NULL, cause TEXT, warnings TEXT, since INTEGER NOT NULL,"
    " last_probe INTEGER NOT NULL, PRIMARY KEY(grp, idx)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY, at INTEGER NOT NULL,"
    " subject TEXT NOT NULL, old_state TEXT NOT NULL, new_state TEXT NOT NULL, cause TEXT,"
    " message TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS events_at ON events(at);"
    "CREATE TABLE IF NOT EXISTS counts(at INTEGER NOT NULL, grp TEXT NOT NULL,"
    " online INTEGER NOT NULL, offline INTEGER NOT NULL, pending INTEGER NOT NULL,"
    " causes TEXT NOT NULL, PRIMARY KEY(at, grp)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS revcache(kind TEXT NOT NULL, url TEXT NOT NULL,"
    " certid TEXT NOT NULL, view TEXT NOT NULL, fetched_at INTEGER NOT NULL,"
    " next_update INTEGER NOT NULL, expires_at INTEGER NOT NULL, http_status INTEGER NOT NULL,"
    " body BLOB NOT NULL, UNIQUE(kind, url, certid, view));";
static const char *const our_tables[] = {"meta",      "endpoints", "events",
                                         "events_at", "counts",    "revcache"};

/* Prepared statements of the writing connection. */
enum { Q_EP_PUT, Q_EV_PUT, Q_COUNTS_PUT, Q_CACHE_PUT, Q_META_PUT, Q_COUNT };
static const char *const stmt_sql[Q_COUNT] = {
    [Q_EP_PUT] = "INSERT OR REPLACE INTO endpoints VALUES(?,?,?,?,?,?,?)",
    [Q_EV_PUT] = "INSERT OR REPLACE INTO events VALUES(?,?,?,?,?,?,?)",
    [Q_COUNTS_PUT] = "INSERT OR REPLACE INTO counts VALUES(?,?,?,?,?,?)",
    [Q_CACHE_PUT] = "INSERT OR REPLACE INTO revcache VALUES(?,?,?,?,?,?,?,?,?)",
    [Q_META_PUT] = "INSERT OR REPLACE INTO meta VALUES(?,?)",
};

typedef struct pending_event_s {
    snap_event_t ev;
    char *message;
} pending_event_t;

/* What the loop handed over and the store thread has not written yet. */
typedef struct batch_s {
    snap_t *snap; /* the newest snapshot, referenced; NULL when none came */
    pending_event_t *ev;
    size_t nev, cap_ev;
    rev_cache_item_t *cache; /* strings and bodies owned */
    size_t ncache, cap_cache, cache_bytes;
} batch_t;

/* What was last committed for one endpoint (position in the snapshot's array). */
typedef struct written_s {
    int64_t since, last_probe;
    uint32_t warnings;
    uint8_t state, cause;
} written_t;

struct store_s {
    char *path;
    store_opts_t o;
    /* store thread (and store_open/store_close around it) */
    sqlite3 *db;
    sqlite3_stmt *q[Q_COUNT];
    int lock_fd;
    int64_t retry_at;
    written_t *written; /* NULL: the next tick rewrites the endpoint table whole */
    size_t nwritten;
    uint64_t layout; /* hash of the snapshot layout that written follows */
    uint32_t sweep;  /* next position of the last_probe refresh */
    int64_t last_tick_at, last_minute;
    uint64_t event_seq; /* highest seq written */
    pthread_t thread;
    int thread_started;
    /* shared with the loop and API threads, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    batch_t pending;
    int stop;
    snap_store_t st; /* path, moved_to and last_error point at the buffers below */
    char moved_to[4200];
    char last_error[256];
    uint64_t gen; /* bumped at each successful open: the reader reopens */
    /* the read-only connection of store_history_json, under rd_mu */
    pthread_mutex_t rd_mu;
    sqlite3 *rd;
    uint64_t rd_gen;
};

/* ---- reporting ------------------------------------------------------------------------- */

static void store_log(const store_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void store_log(const store_t *s, const char *fmt, ...)
{
    if (s->o.quiet)
        return;
    char ts[32];
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s fleetscan: state_db: ", fs_rfc3339(fs_wall_ms() / 1000, ts, sizeof(ts)));
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Records a problem (status, error text, count) and logs it when it is not the same as the last
 * one, so a failure that lasts is one line, not one per tick. */
static void report(store_t *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(store_t *s, int status, const char *fmt, ...)
{
    char msg[1200]; /* logged whole; last_error keeps its first 255 bytes */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&s->mu);
    int again =
        s->st.status == status && strncmp(s->last_error, msg, sizeof(s->last_error) - 1) == 0;
    s->st.status = (uint8_t)status;
    fs_strlcpy(s->last_error, msg, sizeof(s->last_error));
    s->st.last_error = s->last_error;
    s->st.last_error_at = fs_wall_ms() / 1000;
    s->st.errors++;
    pthread_mutex_unlock(&s->mu);
    if (!again)
        store_log(s, "%s", msg);
}

static void set_status(store_t *s, int status)
{
    pthread_mutex_lock(&s->mu);
    int was = s->st.status;
    s->st.status = (uint8_t)status;
    pthread_mutex_unlock(&s->mu);
    if (was != status && status == SNAP_DB_OK && was != SNAP_DB_OFF)
        store_log(s, "%s: writing again", s->path);
}

static int is_corrupt(int rc)
{
    rc &= 0xff;
    return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB;
}

/* ---- opening, checking, moving a bad file aside ------------------------------------------ */

static void db_close(store_t *s)
{
    for (int i = 0; i < Q_COUNT; i++) {
        sqlite3_finalize(s->q[i]);
        s->q[i] = NULL;
    }
    sqlite3_close(s->db);
    s->db = NULL;
    if (s->lock_fd >= 0) /* after SQLite let go of the file: closing drops our flock only */
        close(s->lock_fd);
    s->lock_fd = -1;
}

/* Runs sql (one statement) and expects one text row equal to want. 0, or an SQLite error code
 * (SQLITE_CORRUPT when the answer differs) with what it said in msg. */
static int pragma_expect(sqlite3 *db, const char *sql, const char *want, char msg[200])
{
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &q, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        const char *got = (const char *)sqlite3_column_text(q, 0);
        rc = got != NULL && strcmp(got, want) == 0 ? SQLITE_OK : SQLITE_CORRUPT;
        snprintf(msg, 200, "%s: %.120s", sql, got ? got : "(null)");
    } else {
        snprintf(msg, 200, "%s: %s", sql, sqlite3_errmsg(db));
        if (rc == SQLITE_DONE)
            rc = SQLITE_CORRUPT;
    }
    sqlite3_finalize(q);
    return rc;
}

static int64_t meta_int(sqlite3 *db, const char *key, int64_t dflt)
{
    sqlite3_stmt *q = NULL;
    int64_t v = dflt;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?", -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, key, -1, SQLITE_STATIC);
        if (sqlite3_step(q) == SQLITE_ROW)
            v = sqlite3_column_int64(q, 0);
    }
    sqlite3_finalize(q);
    return v;
}

/* A database this daemon may use: no table it does not know, and our schema version when it has
 * one. 0, SQLITE_CORRUPT (foreign: move it aside) or another error, with msg. */
static int check_ours(sqlite3 *db, char msg[200])
{
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%'",
                                -1, &q, NULL);
    int has_meta = 0;
    while (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(q, 0);
        size_t k = 0;
        while (k < FS_ARRAY_SIZE(our_tables) && strcmp(our_tables[k], name ? name : "") != 0)
            k++;
        if (k == FS_ARRAY_SIZE(our_tables)) {
            snprintf(msg, 200, "not a fleetscan state database (it has a table \"%.60s\")",
                     name ? name : "");
            sqlite3_finalize(q);
            return SQLITE_CORRUPT;
        }
        has_meta |= name != NULL && strcmp(name, "meta") == 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(q);
    if (rc != SQLITE_DONE) {
        snprintf(msg, 200, "reading its schema: %s", sqlite3_errmsg(db));
        return rc;
    }
    int64_t v = has_meta ? meta_int(db, "schema_version", 0) : SCHEMA_VERSION;
    if (v != SCHEMA_VERSION) {
        snprintf(msg, 200, "schema version %lld, this fleetscan knows %d", (long long)v,
                 SCHEMA_VERSION);
        return SQLITE_CORRUPT;
    }
    return 0;
}

/* Renames the bad file (and its WAL) aside; the next open starts a new database. */
static void move_aside(store_t *s, const char *why)
{
    char ts[32], dst[4200], a[4200], b[4200];
    time_t t = (time_t)(fs_wall_ms() / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
    db_close(s);
    snprintf(dst, sizeof(dst), "%s.corrupt-%s", s->path, ts);
    int moved = rename(s->path, dst) == 0;
    snprintf(a, sizeof(a), "%s-wal", s->path);
    snprintf(b, sizeof(b), "%s-wal", dst);
    if (rename(a, b) != 0 && errno != ENOENT)
        unlink(a); /* a stale WAL must never be applied to the new file */
    snprintf(a, sizeof(a), "%s-shm", s->path);
    unlink(a);
    if (!moved && errno != ENOENT)
        unlink(s->path);
    pthread_mutex_lock(&s->mu);
    s->st.rebuilt = 1;
    if (moved) {
        fs_strlcpy(s->moved_to, dst, sizeof(s->moved_to));
        s->st.moved_to = s->moved_to;
    }
    pthread_mutex_unlock(&s->mu);
    report(s, SNAP_DB_OK, "%s is not a usable database (%s); %s%s, starting a new one", s->path,
           why, moved ? "moved aside to " : "removed", moved ? dst : "");
    free(s->written);
    s->written = NULL;
    s->nwritten = 0;
    s->last_minute = 0;
}

/* ---- reading what a restart brings back ---------------------------------------------------- */

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

static int load_saved(store_t *s, store_saved_t *sv)
{
    int rc = load_endpoints(s->db, sv);
    if (rc == SQLITE_OK)
        rc = load_events(s->db, sv, s->o.restore_events);
    if (rc == SQLITE_OK)
        rc = load_cache(s->db, sv);
    if (rc != SQLITE_OK)
        return rc;
    int64_t seq = meta_int(s->db, "event_seq", 0);
    if (seq > 0 && (uint64_t)seq > sv->event_seq)
        sv->event_seq = (uint64_t)seq;
    if (sv->event_seq > 0 && meta_int(s->db, "clean", 1) == 0)
        sv->event_seq += STORE_SEQ_GAP; /* see STORE_SEQ_GAP */
    return SQLITE_OK;
}

/* One attempt at opening the database: locked, WAL, checked, our schema, read (saved non-NULL),
 * statements prepared, marked in use. 0, or an SQLite error code with msg. */
static int db_open_once(store_t *s, store_saved_t *sv, char msg[200])
{
    int rc;
    s->lock_fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
    if (s->lock_fd < 0) {
        snprintf(msg, 200, "cannot open: %s", strerror(errno));
        return SQLITE_CANTOPEN;
    }
    if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(msg, 200, "in use by another fleetscan process (it holds the file's lock)");
        close(s->lock_fd);
        s->lock_fd = -1;
        return SQLITE_BUSY;
    }
    rc = sqlite3_open_v2(s->path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(msg, 200, "cannot open: %s", s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        return rc;
    }
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
    if ((rc = pragma_expect(s->db, "PRAGMA journal_mode=WAL", "wal", msg)) != SQLITE_OK ||
        (rc = pragma_expect(s->db, "PRAGMA quick_check", "ok", msg)) != SQLITE_OK ||
        (rc = check_ours(s->db, msg)) != SQLITE_OK)
        return rc;
    char *e = NULL;
    rc = sqlite3_exec(s->db,
                      "PRAGMA synchronous=NORMAL; PRAGMA journal_size_limit=33554432;"
                      "PRAGMA foreign_keys=OFF;",
                      NULL, NULL, &e);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, schema_sql, NULL, NULL, &e);
    if (rc != SQLITE_OK) {
        snprintf(msg, 200, "creating the schema: %s", e ? e : sqlite3_errstr(rc));
        sqlite3_free(e);
        return rc;
    }
    if (sv != NULL && (rc = load_saved(s, sv)) != SQLITE_OK) {
        snprintf(msg, 200, "reading it: %s", sqlite3_errmsg(s->db));
        store_saved_free(sv);
        return rc;
    }
    for (int i = 0; i < Q_COUNT; i++)
        if ((rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->q[i],
                                     NULL)) != SQLITE_OK) {
            snprintf(msg, 200, "preparing: %s", sqlite3_errmsg(s->db));
            return rc;
        }
    /* In use: "clean" goes back to 1 only at a clean stop (STORE_SEQ_GAP). */
    rc = sqlite3_exec(s->db,
                      "INSERT OR REPLACE INTO meta VALUES('schema_version', 1);"
                      "INSERT OR REPLACE INTO meta VALUES('clean', 0);",
                      NULL, NULL, &e);
    if (rc != SQLITE_OK) {
        snprintf(msg, 200, "writing: %s", e ? e : sqlite3_errstr(rc));
        sqlite3_free(e);
        return rc;
    }
    if (sv != NULL)
        s->event_seq = sv->event_seq;
    return SQLITE_OK;
}

/* Opens the database, moving a bad file aside once; leaves it closed (unavailable, retried
 * later) when that fails too. */
static void db_open(store_t *s, store_saved_t *sv)
{
    char msg[200];
    int rc = SQLITE_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        int existed = access(s->path, F_OK) == 0;
        rc = db_open_once(s, sv, msg);
        if (rc == SQLITE_OK) {
            pthread_mutex_lock(&s->mu);
            s->gen++;
            pthread_mutex_unlock(&s->mu);
            store_log(s, existed ? "using %s" : "%s created (no earlier state)", s->path);
            set_status(s, SNAP_DB_OK);
            return;
        }
        if (!is_corrupt(rc))
            break;
        move_aside(s, msg);
    }
    db_close(s);
    s->retry_at = fs_wall_ms() / 1000 + RETRY_OPEN_S;
    report(s, SNAP_DB_UNAVAILABLE, "%s: %s; running without persistence, trying again every %d s",
           s->path, msg, RETRY_OPEN_S);
}

/* ---- the store thread: one transaction per tick ------------------------------------------ */

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
        db_open(s, NULL);
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
        if (is_corrupt(rc)) {
            move_aside(s, msg);
            db_open(s, NULL);
        } else {
            report(s, SNAP_DB_FAILING, "%s: writing failed: %s; retrying every tick", s->path, msg);
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
    set_status(s, SNAP_DB_OK);
}

static void *store_main(void *arg)
{
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
    db_open(s, saved);
    if (pthread_create(&s->thread, NULL, store_main, s) == 0)
        s->thread_started = 1;
    else
        report(s, SNAP_DB_UNAVAILABLE, "%s: cannot start the store thread", s->path);
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
    db_close(s);
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

/* ---- GET /api/v1/history --------------------------------------------------------------- */

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
