/* store_db.c - the state database's file: the schema, opening it (lock, WAL, integrity, our
 * tables and version), moving a file that is not a usable database aside and starting anew,
 * retrying an unavailable one, and reporting what happened (state_db in /api/v1/status). */
#include "daemon/store_int.h"
#include "probes/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION 1
#define RETRY_OPEN_S 60 /* an unavailable database is tried again this often */

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
static const char *const stmt_sql[Q_COUNT] = {
    [Q_EP_PUT] = "INSERT OR REPLACE INTO endpoints VALUES(?,?,?,?,?,?,?)",
    [Q_EV_PUT] = "INSERT OR REPLACE INTO events VALUES(?,?,?,?,?,?,?)",
    [Q_COUNTS_PUT] = "INSERT OR REPLACE INTO counts VALUES(?,?,?,?,?,?)",
    [Q_CACHE_PUT] = "INSERT OR REPLACE INTO revcache VALUES(?,?,?,?,?,?,?,?,?)",
    [Q_META_PUT] = "INSERT OR REPLACE INTO meta VALUES(?,?)",
};

/* ---- reporting ------------------------------------------------------------------------- */

void store__log(const store_t *s, const char *fmt, ...)
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
void store__report(store_t *s, int status, const char *fmt, ...)
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
        store__log(s, "%s", msg);
}

void store__set_status(store_t *s, int status)
{
    pthread_mutex_lock(&s->mu);
    int was = s->st.status;
    s->st.status = (uint8_t)status;
    pthread_mutex_unlock(&s->mu);
    if (was != status && status == SNAP_DB_OK && was != SNAP_DB_OFF)
        store__log(s, "%s: writing again", s->path);
}

int store__is_corrupt(int rc)
{
    rc &= 0xff;
    return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB;
}

/* ---- opening, checking, moving a bad file aside ------------------------------------------ */

void store__db_close(store_t *s)
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

int64_t store__meta_int(sqlite3 *db, const char *key, int64_t dflt)
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
    int64_t v = has_meta ? store__meta_int(db, "schema_version", 0) : SCHEMA_VERSION;
    if (v != SCHEMA_VERSION) {
        snprintf(msg, 200, "schema version %lld, this fleetscan knows %d", (long long)v,
                 SCHEMA_VERSION);
        return SQLITE_CORRUPT;
    }
    return 0;
}

/* Renames the bad file (and its WAL) aside; the next open starts a new database. */
void store__move_aside(store_t *s, const char *why)
{
    char ts[32], dst[4200], a[4200], b[4200];
    time_t t = (time_t)(fs_wall_ms() / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
    store__db_close(s);
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
    store__report(s, SNAP_DB_OK, "%s is not a usable database (%s); %s%s, starting a new one",
                  s->path, why, moved ? "moved aside to " : "removed", moved ? dst : "");
    free(s->written);
    s->written = NULL;
    s->nwritten = 0;
    s->last_minute = 0;
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
    if (sv != NULL && (rc = store__load_saved(s, sv)) != SQLITE_OK) {
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
void store__db_open(store_t *s, store_saved_t *sv)
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
            store__log(s, existed ? "using %s" : "%s created (no earlier state)", s->path);
            store__set_status(s, SNAP_DB_OK);
            return;
        }
        if (!store__is_corrupt(rc))
            break;
        store__move_aside(s, msg);
    }
    store__db_close(s);
    s->retry_at = fs_wall_ms() / 1000 + RETRY_OPEN_S;
    store__report(s, SNAP_DB_UNAVAILABLE,
                  "%s: %s; running without persistence, trying again every %d s", s->path, msg,
                  RETRY_OPEN_S);
}
