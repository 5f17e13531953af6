/* store.h - the state database (SPEC §4.4): endpoint states, the event history, per-minute group
 * counts and the CRL/OCSP/AIA cache kept in an embedded SQLite file (WAL), so that a restart or a
 * crash in the middle of a rollover keeps "since when" and "what changed".
 *
 * Threads: store_open and store_close run on the loop's thread at start and stop. The loop hands
 * over what changed with store_add_event, store_add_cache and store_submit (never waiting for the
 * disk); one store thread writes it, one transaction per snapshot tick. store_history_json runs
 * on any thread (API threads) through a read-only connection. store_status is thread-safe.
 *
 * A missing file is created. A file that is not a usable database (corrupt, garbage, another
 * program's, an unknown schema) is renamed aside ("<path>.corrupt-<time>", with its -wal) and a
 * new one started; one used by another fleetscan (an exclusive lock on the file) or that cannot
 * be created is reported and retried every minute while the daemon runs without persistence. A
 * failed write is reported and retried at the next tick. None of it is fatal. */
#ifndef FS_STORE_H
#define FS_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "probes/revoke.h"
#include "web/snapshot.h"

/* History bounds (docs/OPERATIONS.md, "State database"): events and per-minute counts older
 * than STORE_HISTORY_DAYS go, and past the row limits the oldest go first. */
#define STORE_HISTORY_DAYS 30
#define STORE_EVENTS_MAX 100000
#define STORE_COUNTS_MAX 2000000
/* An endpoint's last_probe is written with each change of its state, cause, warnings or since,
 * and otherwise refreshed once per this many seconds (a rotating slice each tick): rewriting
 * every probe's time would dirty every page of the table every second. */
#define STORE_SWEEP_S 600
/* Events and cache bodies waiting for the store thread; past these they are dropped (counted),
 * so a stalled disk cannot grow the daemon's memory. */
#define STORE_PENDING_EVENTS_MAX 16384
#define STORE_PENDING_CACHE_BYTES (32u << 20)
/* After an unclean stop (kill -9, power loss) the event sequence resumes this far past the last
 * written number: the crashed daemon may have served events it never committed (at most the
 * pending and the in-flight batch), and a client's since= must never skip a new event. */
#define STORE_SEQ_GAP (2 * STORE_PENDING_EVENTS_MAX)

typedef struct store_s store_t;

typedef struct store_opts_s {
    int64_t history_max_age_s; /* <= 0: STORE_HISTORY_DAYS days */
    uint32_t events_max;       /* 0: STORE_EVENTS_MAX */
    uint32_t counts_max;       /* 0: STORE_COUNTS_MAX rows (one per group and minute) */
    uint32_t restore_events;   /* newest events brought back at start, 0: 4096 */
    int quiet;                 /* no log lines on stderr */
} store_opts_t;

/* One endpoint as it was written. */
typedef struct store_saved_ep_s {
    uint32_t group; /* index into store_saved_t.groups */
    uint32_t index; /* within its group: id "<group>-%05u" */
    uint8_t state;  /* SNAP_ONLINE | SNAP_OFFLINE | SNAP_PENDING */
    uint8_t cause;  /* fs_cause_t */
    uint32_t warnings;
    int64_t since, last_probe;
} store_saved_ep_t;

/* What the database held at store_open: everything the fleet brings back (daemon/restore.c). */
typedef struct store_saved_s {
    char **groups; /* group names */
    size_t ngroups;
    store_saved_ep_t *eps; /* ordered by group name, then index */
    size_t neps;
    snap_event_t *events; /* the newest restore_events, oldest first */
    size_t nevents;
    uint64_t event_seq;      /* the next event is event_seq + 1 (STORE_SEQ_GAP included) */
    rev_cache_item_t *cache; /* fresh entries; strings and bodies owned here */
    size_t ncache;
} store_saved_t;
void store_saved_free(store_saved_t *s);

/* Whether path names a database at all: NULL, "" and ":memory:" turn the store off. */
int store_path_enabled(const char *path);

/* Opens (or creates, or rebuilds) the database at path and reads what it holds into *saved
 * (zeroed when it held nothing usable), then starts the store thread. Returns NULL only when
 * path is off (store_path_enabled); otherwise a store, whatever state the file was in: the
 * problems are logged and shown by store_status. o may be NULL (defaults). */
store_t *store_open(const char *path, const store_opts_t *o, store_saved_t *saved);
/* Writes what is pending, marks a clean stop (the event sequence continues without a gap),
 * joins the thread and frees st. Blocks on the disk: call it after the loop stopped. NULL: no-op.
 */
void store_close(store_t *st);

/* Loop side: each call copies what it needs; none of them waits for the disk. */
void store_add_event(store_t *st, const snap_event_t *ev, const char *message);
void store_add_cache(store_t *st, const rev_cache_item_t *it);
/* Hands the tick's snapshot (a reference is taken) and what was added since the last submit to
 * the store thread. If it is still writing the previous one, the snapshot replaces the one
 * waiting (endpoint states are diffed against what was last written, so nothing is lost) and
 * the events and cache entries queue up behind. */
void store_submit(store_t *st, snap_t *s);
/* What the fleet took back from *saved (fleet_restore), for store_status. */
void store_note_restored(store_t *st, uint32_t endpoints, uint32_t events, uint32_t cache);
/* Fills out (strings malloc'ed; snap_unref frees them) with how the database is doing. */
void store_status(store_t *st, snap_store_t *out);

/* GET /api/v1/history: per step (seconds, a multiple of 60) from since to until (seconds since
 * the epoch), the per-minute sample taken last in that step: online/offline/pending counts in
 * total, per cause and per group. Returns 0 with *out (malloc'ed JSON), or -1 with err (the
 * database is unavailable, or a query failed). Runs on any thread. */
int store_history_json(store_t *st, int64_t since, int64_t until, int64_t step, char **out,
                       char err[256]);

#endif
