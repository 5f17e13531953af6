/* store_bench.c - what the state database (daemon/store.c) costs at 100,000 endpoints: the
 * store thread's CPU per snapshot tick (steady probing, a rollover flipping every endpoint in one
 * probe cycle, the first full write), the loop's own cost per tick, the database's size per day
 * of history, and the start (open, check, read back). Figures only.
 *   bench_store [endpoints] [groups] [dir]     (bench/run.sh, section "store", runs it) */
#include "daemon/store.h"
#include "probes/util.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint32_t N = 100000, G = 20, INTERVAL_S = 60;

static double cpu_process_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static double cpu_thread_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static double wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* The fleet as the loop knows it: what each snapshot copies. */
static snap_endpoint_t *eps;
static snap_counts_t *counts;

static void fleet_init(int64_t t0)
{
    eps = fs_xcalloc(N, sizeof(*eps));
    counts = fs_xcalloc(G, sizeof(*counts));
    uint32_t per = N / G;
    for (uint32_t i = 0; i < N; i++) {
        eps[i].group = i / per < G ? i / per : G - 1;
        eps[i].index = i - eps[i].group * per;
        eps[i].state = SNAP_ONLINE;
        eps[i].since = t0 - 86400;
        eps[i].last_probe_at = t0 - (int64_t)(i % INTERVAL_S);
        counts[eps[i].group].total++;
        counts[eps[i].group].online++;
    }
}

static snap_t *snapshot(int64_t at)
{
    snap_t *s = snap_new();
    s->generated_at = at;
    s->ngroups = G;
    s->groups = fs_xcalloc(G, sizeof(*s->groups));
    for (uint32_t g = 0; g < G; g++) {
        char name[32];
        snprintf(name, sizeof(name), "site-%02u", g);
        s->groups[g].name = fs_xstrdup(name);
        s->groups[g].counts = counts[g];
    }
    s->nendpoints = N;
    s->endpoints = fs_xmalloc(N * sizeof(*eps));
    memcpy(s->endpoints, eps, N * sizeof(*eps));
    return s;
}

static void wait_written(store_t *st, int64_t at)
{
    for (;;) {
        snap_store_t d;
        store_status(st, &d);
        free(d.path);
        free(d.moved_to);
        free(d.last_error);
        if (d.last_write_at >= at)
            return;
        if (d.status != SNAP_DB_OK) {
            fprintf(stderr, "bench_store: the store is %s\n", snap_db_status_name(d.status));
            exit(1);
        }
        usleep(200);
    }
}

static uint64_t seq;

/* One tick at time `at`: the endpoints due in this second probed (last_probe moves), `flips` of
 * them change state (an event each). Returns the loop's own cost (µs): the events handed over
 * and the submit, not building the snapshot (the daemon builds it for the API anyway). */
static double tick(store_t *st, int64_t at, uint32_t flips, uint32_t *cursor)
{
    uint32_t due = N / INTERVAL_S;
    double loop_us = 0;
    for (uint32_t k = 0; k < due; k++) {
        snap_endpoint_t *e = &eps[(*cursor + k) % N];
        e->last_probe_at = at;
        if (k < flips) {
            snap_counts_t *c = &counts[e->group];
            int off = e->state == SNAP_ONLINE;
            snap_event_t ev = {.at = at,
                               .seq = ++seq,
                               .old_state = e->state,
                               .new_state = off ? SNAP_OFFLINE : SNAP_ONLINE,
                               .cause = off ? FS_CAUSE_CRL_UNREACHABLE : FS_CAUSE_NONE};
            snprintf(ev.subject, sizeof(ev.subject), "site-%02u-%05u", e->group, e->index);
            e->state = ev.new_state;
            e->cause = ev.cause;
            e->since = at;
            c->online += off ? -1u : 1u;
            c->offline += off ? 1u : -1u;
            c->causes[FS_CAUSE_CRL_UNREACHABLE] += off ? 1u : -1u;
            double t = cpu_thread_ms();
            store_add_event(st, &ev,
                            off ? "The revocation function was unable to check revocation "
                                  "because the revocation server was offline: "
                                  "http://crl.corp.example/CorpIssuingCA1.crl: timed out after "
                                  "15000 ms"
                                : "online");
            loop_us += (cpu_thread_ms() - t) * 1e3;
        }
    }
    *cursor = (*cursor + due) % N;
    snap_t *s = snapshot(at);
    double t = cpu_thread_ms();
    store_submit(st, s);
    loop_us += (cpu_thread_ms() - t) * 1e3;
    snap_unref(s);
    wait_written(st, at);
    return loop_us;
}

static long long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long long)sb.st_size : 0;
}

/* Bytes of each table and index (SQLite's dbstat), by name. */
static double table_mib(const char *path, const char *name)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    double v = 0;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return 0;
    if (sqlite3_prepare_v2(db, "SELECT sum(pgsize) FROM dbstat WHERE name = ?", -1, &q, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
        if (sqlite3_step(q) == SQLITE_ROW)
            v = (double)sqlite3_column_int64(q, 0) / 1048576.0;
        sqlite3_finalize(q);
    }
    sqlite3_close(db);
    return v;
}

/* Runs `ticks` one-second ticks with `flips` state changes per tick; prints the store thread's
 * CPU per tick (process CPU minus this thread's). */
static void phase(store_t *st, const char *label, int64_t *at, uint32_t ticks, uint32_t flips,
                  uint32_t *cursor)
{
    double p0 = cpu_process_ms(), m0 = cpu_thread_ms(), w0 = wall_ms(), loop_us = 0;
    for (uint32_t i = 0; i < ticks; i++)
        loop_us += tick(st, ++*at, flips, cursor);
    double store_ms = (cpu_process_ms() - p0) - (cpu_thread_ms() - m0);
    printf("   %-44s store thread %7.2f ms CPU/tick (%4.1f%% of a core at 1 tick/s), "
           "loop %6.1f µs/tick; wall %.1f ms/tick\n",
           label, store_ms / ticks, store_ms / ticks / 10.0, loop_us / ticks,
           (wall_ms() - w0) / ticks);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        N = (uint32_t)atoi(argv[1]);
    if (argc > 2)
        G = (uint32_t)atoi(argv[2]);
    char dir[600], path[700];
    snprintf(dir, sizeof(dir), "%s/fleetscan-bench-store-XXXXXX", argc > 3 ? argv[3] : "/tmp");
    if (mkdtemp(dir) == NULL)
        return 1;
    snprintf(path, sizeof(path), "%s/bench.state.db", dir);
    int64_t at = (int64_t)time(NULL) / 60 * 60 - 2 * 86400; /* two days ago, on a minute */
    fleet_init(at);
    uint32_t cursor = 0;
    printf("5. State database (SQLite WAL, synchronous=NORMAL): %u endpoints in %u groups, "
           "interval %u s (%u probes per 1 s tick), %s\n",
           N, G, INTERVAL_S, N / INTERVAL_S, sqlite3_libversion());
    store_opts_t o = {.quiet = 1};
    store_saved_t sv;
    store_t *st = store_open(path, &o, &sv);
    store_saved_free(&sv);

    phase(st, "first tick (the whole endpoint table)", &at, 1, 0, &cursor);
    phase(st, "steady: probes, no state change (600 ticks)", &at, 600, 0, &cursor);
    phase(st, "rollover: every probe flips (120 ticks)", &at, 120, N / INTERVAL_S, &cursor);
    phase(st, "steady again (120 ticks)", &at, 120, 0, &cursor);
    store_close(st);

    /* A day of history: one tick per minute (the per-minute sample), 100,000 events that day
     * (each endpoint offline and back once: a rollover), then the file after a checkpoint. */
    char dpath[700];
    snprintf(dpath, sizeof(dpath), "%s/day.state.db", dir);
    st = store_open(dpath, &o, &sv);
    store_saved_free(&sv);
    uint32_t per_minute = 100000 / 1440 + 1;
    double p0 = cpu_process_ms(), m0 = cpu_thread_ms();
    for (uint32_t m = 0; m < 1440; m++) {
        at += 60;
        tick(st, at, per_minute, &cursor);
    }
    double day_ms = (cpu_process_ms() - p0) - (cpu_thread_ms() - m0);
    store_close(st); /* checkpointed: everything is in the main file */
    double ep = table_mib(dpath, "endpoints"), ev = table_mib(dpath, "events"),
           evi = table_mib(dpath, "events_at"), co = table_mib(dpath, "counts");
    printf("   a day of history, 1440 minute samples x %u groups and %u events (every endpoint "
           "offline and back once): file %.1f MiB = endpoint table %.1f + events %.1f (+ index "
           "%.1f) + per-minute counts %.1f MiB\n",
           G, per_minute * 1440, (double)file_size(dpath) / 1048576.0, ep, ev, evi, co);
    printf("   per day of history %.1f MiB; at the bounds (%d days of counts, %d events) about "
           "%.0f MiB\n",
           ev + evi + co, STORE_HISTORY_DAYS, STORE_EVENTS_MAX,
           ep + (ev + evi) * STORE_EVENTS_MAX / (per_minute * 1440.0) + co * STORE_HISTORY_DAYS);
    printf("   (store thread CPU for that day of one-minute ticks: %.0f ms in all)\n", day_ms);

    /* Start: open, quick_check, read back the endpoints, the events and the cache. */
    double w0 = wall_ms(), c0 = cpu_process_ms();
    st = store_open(dpath, &o, &sv);
    printf("   start: open + quick_check + read back %zu endpoint states and %zu events: %.0f ms "
           "wall, %.0f ms CPU\n",
           sv.neps, sv.nevents, wall_ms() - w0, cpu_process_ms() - c0);
    store_saved_free(&sv);
    store_close(st);
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    free(eps);
    free(counts);
    return 0;
}
