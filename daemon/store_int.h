/* store_int.h - what the files of the state database share: store.c (the store thread and the
 * loop's hand-over), store_db.c (schema, opening, checking, rebuilding, reporting) and
 * store_read.c (what a restart reads back, the history). Not for use outside them. */
#ifndef FS_STORE_INT_H
#define FS_STORE_INT_H

#include "daemon/store.h"

#include <pthread.h>
#include <sqlite3.h>

#define BUSY_TIMEOUT_MS 2000 /* waiting for another client's lock, on the store thread only */

/* Prepared statements of the writing connection (store_db.c prepares them, store.c uses them). */
enum { Q_EP_PUT, Q_EV_PUT, Q_COUNTS_PUT, Q_CACHE_PUT, Q_META_PUT, Q_COUNT };

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

/* ---- store_db.c ---- */

void store__log(const store_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Records a problem (status, error text, count) and logs it when it is not the same as the last
 * one, so a failure that lasts is one line, not one per tick. */
void store__report(store_t *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void store__set_status(store_t *s, int status);
/* Whether an SQLite result code means the file is not a usable database. */
int store__is_corrupt(int rc);
/* Opens the database (reading what it holds into sv when sv is non-NULL), moving a bad file aside
 * once; leaves it closed (unavailable, retried later) when that fails too. */
void store__db_open(store_t *s, store_saved_t *sv);
void store__db_close(store_t *s);
/* Renames the bad file (and its WAL) aside; the next open starts a new database. */
void store__move_aside(store_t *s, const char *why);
int64_t store__meta_int(sqlite3 *db, const char *key, int64_t dflt);

/* ---- store_read.c ---- */

/* Reads what a restart brings back into sv. SQLITE_OK or an SQLite error code. */
int store__load_saved(store_t *s, store_saved_t *sv);

#endif
