/* test_store.c - daemon/store*.c on real SQLite files: what a tick writes and a restart reads back
 * (endpoint states, events with their messages and sequence, the CRL cache), writes diffed
 * against the last commit, the gap after an unclean stop, a garbage, a foreign and a locked file,
 * a writer blocked by another client, the history's per-step samples and its bounds. */
#include "daemon/store.h"
#include "probes/util.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/fs-test-store-XXXXXX";
static int64_t now;

static void db_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

/* A snapshot of groups g0..g(ng-1), n endpoints each, all online since `since`. */
static snap_t *snap_make(size_t ng, uint32_t n, int64_t at, int64_t since)
{
    snap_t *s = snap_new();
    s->generated_at = at;
    s->ngroups = ng;
    s->groups = fs_xcalloc(ng, sizeof(*s->groups));
    s->nendpoints = ng * n;
    s->endpoints = fs_xcalloc(s->nendpoints ? s->nendpoints : 1, sizeof(*s->endpoints));
    for (size_t g = 0; g < ng; g++) {
        char name[16];
        snprintf(name, sizeof(name), "g%zu", g);
        s->groups[g].name = fs_xstrdup(name);
        s->groups[g].counts.total = s->groups[g].counts.online = n;
        for (uint32_t k = 0; k < n; k++) {
            snap_endpoint_t *e = &s->endpoints[g * n + k];
            e->group = (uint32_t)g;
            e->index = k;
            e->state = SNAP_ONLINE;
            e->since = since;
            e->last_probe_at = at - 1;
        }
    }
    return s;
}

static void set_offline(snap_t *s, size_t i, fs_cause_t c, int64_t since)
{
    snap_endpoint_t *e = &s->endpoints[i];
    snap_counts_t *gc = &s->groups[e->group].counts;
    e->state = SNAP_OFFLINE;
    e->cause = (uint8_t)c;
    e->since = since;
    gc->online--;
    gc->offline++;
    gc->causes[c]++;
}

static snap_store_t status(store_t *st)
{
    snap_store_t d;
    store_status(st, &d);
    return d;
}

static void status_free(snap_store_t *d)
{
    free(d->path);
    free(d->moved_to);
    free(d->last_error);
}

/* Submits s (dropping the caller's reference) and waits until the store committed it. */
static void submit_wait(store_t *st, snap_t *s)
{
    int64_t at = s->generated_at;
    store_submit(st, s);
    snap_unref(s);
    for (int i = 0; i < 1000; i++) {
        snap_store_t d = status(st);
        status_free(&d);
        if (d.last_write_at >= at && d.status == SNAP_DB_OK)
            return;
        usleep(10000);
    }
    fprintf(stderr, "the store never wrote the snapshot of %lld\n", (long long)at);
    abort();
}

static void add_event(store_t *st, uint64_t seq, int64_t at, const char *subject, int old_state,
                      int new_state, fs_cause_t cause, const char *message)
{
    snap_event_t ev = {.seq = seq,
                       .at = at,
                       .old_state = (uint8_t)old_state,
                       .new_state = (uint8_t)new_state,
                       .cause = (uint8_t)cause};
    fs_strlcpy(ev.subject, subject, sizeof(ev.subject));
    store_add_event(st, &ev, message);
}

static long long query_int(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
    long long v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static char *query_text(const char *path, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    ASSERT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK);
    ASSERT_EQ(sqlite3_step(q), SQLITE_ROW);
    const char *t = (const char *)sqlite3_column_text(q, 0);
    char *v = fs_xstrdup(t ? t : "(null)");
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static const store_opts_t quiet = {.quiet = 1};

static void test_off(void)
{
    store_saved_t sv;
    ASSERT(store_open(NULL, &quiet, &sv) == NULL);
    ASSERT(store_open("", &quiet, &sv) == NULL);
    ASSERT(store_open(":memory:", &quiet, &sv) == NULL);
    ASSERT_EQ(sv.neps, 0);
}

/* Written at a tick, read back at the next start: states, events, the cache. */
static void test_roundtrip(void)
{
    char path[600];
    db_path(path, sizeof(path), "round.state.db");
    store_saved_t sv;
    store_t *st = store_open(path, &quiet, &sv);
    ASSERT(st != NULL);
    ASSERT_EQ(sv.neps + sv.nevents + sv.ncache + sv.event_seq, 0);
    store_saved_free(&sv);
    snap_store_t d = status(st);
    ASSERT_EQ(d.status, SNAP_DB_OK);
    ASSERT_EQ(d.rebuilt, 0);
    ASSERT_STREQ(d.path, path);
    status_free(&d);
    char *t = query_text(path, "PRAGMA journal_mode");
    ASSERT_STREQ(t, "wal");
    free(t);

    snap_t *s = snap_make(2, 3, now, now - 500);
    set_offline(s, 1, FS_CAUSE_CRL_UNREACHABLE, now - 300);
    s->endpoints[2].warnings =
        FS_WARN_BIT(FS_WARN_CERT_EXPIRING_SOON) | FS_WARN_BIT(FS_WARN_REVOCATION_URL_DEAD);
    s->endpoints[5].state = SNAP_PENDING; /* never probed: nothing to restore */
    s->endpoints[5].since = 0;
    add_event(st, 1, now - 300, "g0-00001", SNAP_ONLINE, SNAP_OFFLINE, FS_CAUSE_CRL_UNREACHABLE,
              "The revocation function was unable to check revocation: it's <offline>");
    add_event(st, 2, now - 200, "g1-00000", SNAP_PENDING, SNAP_ONLINE, FS_CAUSE_NONE, "online");
    unsigned char body[] = {0x30, 0x03, 0x02, 0x01, 0x00};
    rev_cache_item_t it = {.kind = 'C',
                           .url = "http://crl.lab.test/inter.crl",
                           .certid = "",
                           .view = "lab",
                           .fetched_at = now - 60,
                           .next_update = now + 86400,
                           .expires_at = now + 3600,
                           .http_status = 200,
                           .body = body,
                           .len = sizeof(body)};
    store_add_cache(st, &it);
    it.url = "http://crl.lab.test/stale.crl";
    it.expires_at = now - 1; /* written, not brought back */
    store_add_cache(st, &it);
    submit_wait(st, s);
    ASSERT_EQ(query_int(path, "SELECT count(*) FROM endpoints"), 6);
    ASSERT_EQ(query_int(path, "SELECT count(*) FROM counts"), 2);
    t = query_text(path, "SELECT causes FROM counts WHERE grp = 'g0'");
    ASSERT_STREQ(t, "{\"crl_unreachable\":1}");
    free(t);
    t = query_text(path, "SELECT message FROM events WHERE seq = 1");
    ASSERT_CONTAINS(t, "it's <offline>");
    free(t);
    t = query_text(path, "SELECT warnings FROM endpoints WHERE grp = 'g0' AND idx = 2");
    ASSERT_STREQ(t, "cert_expiring_soon,revocation_url_dead");
    free(t);
    store_close(st);
    ASSERT_EQ(query_int(path, "SELECT value FROM meta WHERE key = 'clean'"), 1);

    st = store_open(path, &quiet, &sv);
    ASSERT(st != NULL);
    ASSERT_EQ(sv.ngroups, 2);
    ASSERT_STREQ(sv.groups[0], "g0");
    ASSERT_EQ(sv.neps, 5);
    ASSERT_EQ(sv.eps[0].group, 0);
    ASSERT_EQ(sv.eps[0].index, 0);
    ASSERT_EQ(sv.eps[0].state, SNAP_ONLINE);
    ASSERT_EQ(sv.eps[0].since, now - 500);
    ASSERT_EQ(sv.eps[0].last_probe, now - 1);
    ASSERT_EQ(sv.eps[1].state, SNAP_OFFLINE);
    ASSERT_EQ(sv.eps[1].cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_EQ(sv.eps[1].since, now - 300);
    ASSERT_EQ(sv.eps[2].warnings,
              FS_WARN_BIT(FS_WARN_CERT_EXPIRING_SOON) | FS_WARN_BIT(FS_WARN_REVOCATION_URL_DEAD));
    ASSERT_EQ(sv.eps[4].group, 1);
    ASSERT_EQ(sv.eps[4].index, 1); /* g1-00002 was pending */
    ASSERT_EQ(sv.nevents, 2);
    ASSERT_EQ(sv.events[0].seq, 1);
    ASSERT_EQ(sv.events[1].seq, 2);
    ASSERT_STREQ(sv.events[0].subject, "g0-00001");
    ASSERT_EQ(sv.events[0].cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_EQ(sv.events[0].new_state, SNAP_OFFLINE);
    ASSERT_EQ(sv.event_seq, 2); /* a clean stop: no gap */
    ASSERT_EQ(sv.ncache, 1);
    ASSERT_EQ(sv.cache[0].kind, 'C');
    ASSERT_STREQ(sv.cache[0].url, "http://crl.lab.test/inter.crl");
    ASSERT_STREQ(sv.cache[0].view, "lab");
    ASSERT_EQ(sv.cache[0].len, sizeof(body));
    ASSERT_EQ(memcmp(sv.cache[0].body, body, sizeof(body)), 0);
    ASSERT_EQ(sv.cache[0].expires_at, now + 3600);
    store_saved_free(&sv);
    ASSERT_EQ(query_int(path, "SELECT value FROM meta WHERE key = 'clean'"), 0); /* in use */
    store_close(st);
}

/* A tick writes what changed since the last commit; a new layout (a reload) rewrites the table
 * whole, dropping endpoints that are gone. */
static void test_diff_and_layout(void)
{
    char path[600];
    db_path(path, sizeof(path), "diff.state.db");
    store_t *st = store_open(path, &quiet, NULL);
    submit_wait(st, snap_make(1, 100, now, now - 50));
    ASSERT_EQ(query_int(path, "SELECT count(*) FROM endpoints WHERE since = " /* all */
                              "(SELECT min(since) FROM endpoints)"),
              100);
    snap_t *s = snap_make(1, 100, now + 1, now - 50);
    set_offline(s, 42, FS_CAUSE_CERT_EXPIRED, now + 1);
    submit_wait(st, s);
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT since FROM endpoints WHERE idx = 42 AND state = 'offline' AND cause = "
             "'cert_expired'");
    ASSERT_EQ(query_int(path, sql), now + 1);
    ASSERT_EQ(query_int(path, "SELECT count(*) FROM endpoints WHERE state = 'online'"), 99);
    /* A merged tick: two submits while nothing waits for the first; the last one counts. */
    s = snap_make(1, 100, now + 2, now - 50);
    store_submit(st, s);
    snap_unref(s);
    s = snap_make(1, 100, now + 3, now - 50);
    set_offline(s, 7, FS_CAUSE_UNTRUSTED_CA, now + 3);
    submit_wait(st, s);
    ASSERT_EQ(query_int(path, "SELECT count(*) FROM endpoints WHERE state = 'offline'"), 1);
    ASSERT_EQ(query_int(path, "SELECT idx FROM endpoints WHERE state = 'offline'"), 7);
    /* Reload: two groups of 10. */
    submit_wait(st, snap_make(2, 10, now + 4, now));
    ASSERT_EQ(query_int(path, "SELECT count(*) FROM endpoints"), 20);
    store_close(st);
}

/* kill -9 in the middle: no clean mark, so the sequence resumes past a gap. */
static void test_crash_gap(void)
{
    char path[600];
    db_path(path, sizeof(path), "crash.state.db");
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        store_t *st = store_open(path, &quiet, NULL);
        for (uint64_t q = 1; q <= 5; q++)
            add_event(st, q, now, "g0-00000", SNAP_ONLINE, SNAP_OFFLINE, FS_CAUSE_CERT_EXPIRED,
                      "x");
        submit_wait(st, snap_make(1, 4, now, now));
        _exit(0); /* no store_close */
    }
    int wst;
    ASSERT_EQ(waitpid(pid, &wst, 0), pid);
    ASSERT(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    store_saved_t sv;
    store_t *st = store_open(path, &quiet, &sv);
    ASSERT_EQ(sv.nevents, 5);
    ASSERT_EQ(sv.event_seq, 5 + STORE_SEQ_GAP);
    ASSERT_EQ(sv.neps, 4);
    store_saved_free(&sv);
    store_close(st);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return fs_xstrdup("");
    char *buf = fs_xcalloc(1, 1 << 16);
    size_t n = fread(buf, 1, (1 << 16) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* store_open with stderr captured: the log lines it wrote. */
static store_t *open_logged(const char *path, store_saved_t *sv, char **log)
{
    char lp[600];
    db_path(lp, sizeof(lp), "stderr.log");
    fflush(stderr);
    int saved = dup(2), fd = open(lp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    close(fd);
    store_opts_t o = {0};
    store_t *st = store_open(path, &o, sv);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    *log = read_all(lp);
    return st;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    ASSERT_EQ(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* Garbage where the database should be: moved aside, said so, and a new one works. */
static void test_garbage_rebuilt(void)
{
    char path[600], wal[620], *log;
    db_path(path, sizeof(path), "garbage.state.db");
    store_t *st = store_open(path, &quiet, NULL);
    submit_wait(st, snap_make(1, 10, now, now));
    store_close(st);
    /* Garbage over the whole header and a stale WAL beside it. */
    char junk[8192];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(i * 7 + 3);
    write_file(path, junk, sizeof(junk));
    snprintf(wal, sizeof(wal), "%s-wal", path);
    write_file(wal, junk, 100);
    store_saved_t sv;
    st = open_logged(path, &sv, &log);
    ASSERT(st != NULL);
    ASSERT_CONTAINS(log, "is not a usable database");
    ASSERT_CONTAINS(log, "moved aside to");
    ASSERT_CONTAINS(log, "Z fleetscan: state_db: "); /* a timestamped line */
    free(log);
    ASSERT_EQ(sv.neps, 0);
    store_saved_free(&sv);
    snap_store_t d = status(st);
    ASSERT_EQ(d.status, SNAP_DB_OK);
    ASSERT_EQ(d.rebuilt, 1);
    ASSERT(d.moved_to != NULL);
    ASSERT_CONTAINS(d.moved_to, "garbage.state.db.corrupt-");
    ASSERT(d.last_error != NULL && d.errors >= 1);
    struct stat sb;
    ASSERT_EQ(stat(d.moved_to, &sb), 0);
    ASSERT_EQ(sb.st_size, (off_t)sizeof(junk)); /* the bad file kept for a post-mortem */
    status_free(&d);
    submit_wait(st, snap_make(1, 10, now + 1, now));
    store_close(st);
    ASSERT_EQ(query_int(path, "SELECT count(*) FROM endpoints"), 10);

    /* Another program's database is not ours to write into either. */
    db_path(path, sizeof(path), "foreign.db");
    sqlite3 *db;
    ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE invoices(id INTEGER)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    st = open_logged(path, &sv, &log);
    ASSERT_CONTAINS(log, "not a fleetscan state database");
    free(log);
    store_saved_free(&sv);
    d = status(st);
    ASSERT_EQ(d.rebuilt, 1);
    ASSERT_EQ(d.status, SNAP_DB_OK);
    status_free(&d);
    store_close(st);
}

/* Used by another fleetscan: reported, nothing written, taken once it is free. */
static void test_locked_by_another(void)
{
    char path[600], *log;
    db_path(path, sizeof(path), "locked.state.db");
    int fd = open(path, O_RDWR | O_CREAT, 0600);
    ASSERT(fd >= 0);
    ASSERT_EQ(flock(fd, LOCK_EX), 0);
    store_saved_t sv;
    store_t *st = open_logged(path, &sv, &log);
    ASSERT(st != NULL);
    ASSERT_CONTAINS(log, "in use by another fleetscan process");
    ASSERT_CONTAINS(log, "running without persistence");
    free(log);
    store_saved_free(&sv);
    snap_store_t d = status(st);
    ASSERT_EQ(d.status, SNAP_DB_UNAVAILABLE);
    ASSERT_EQ(d.rebuilt, 0);
    status_free(&d);
    char *out = NULL, err[256];
    ASSERT_EQ(store_history_json(st, now - 3600, now, 60, &out, err), -1);
    ASSERT_CONTAINS(err, "unavailable");
    add_event(st, 1, now, "g0-00000", SNAP_PENDING, SNAP_ONLINE, FS_CAUSE_NONE, "online");
    snap_t *s = snap_make(1, 3, now, now);
    store_submit(st, s);
    snap_unref(s);
    store_close(st); /* stops promptly without a database */
    close(fd);
    struct stat sb;
    ASSERT_EQ(stat(path, &sb), 0);
    ASSERT_EQ(sb.st_size, 0); /* untouched */
}

/* Another SQLite client holds the write lock: the tick fails (reported, retried), its events
 * wait and are written once the lock is gone. */
static void test_busy_writer(void)
{
    char path[600];
    db_path(path, sizeof(path), "busy.state.db");
    store_t *st = store_open(path, &quiet, NULL);
    submit_wait(st, snap_make(1, 3, now, now));
    sqlite3 *other;
    ASSERT_EQ(sqlite3_open(path, &other), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    add_event(st, 1, now, "g0-00000", SNAP_ONLINE, SNAP_OFFLINE, FS_CAUSE_CERT_EXPIRED, "one");
    snap_t *s = snap_make(1, 3, now + 1, now);
    store_submit(st, s);
    snap_unref(s);
    snap_store_t d;
    for (int i = 0; i < 1000; i++) { /* the busy timeout passes first */
        d = status(st);
        if (d.status == SNAP_DB_FAILING)
            break;
        status_free(&d);
        usleep(10000);
    }
    ASSERT_EQ(d.status, SNAP_DB_FAILING);
    ASSERT_CONTAINS(d.last_error, "locked");
    status_free(&d);
    ASSERT_EQ(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    add_event(st, 2, now, "g0-00000", SNAP_OFFLINE, SNAP_ONLINE, FS_CAUSE_NONE, "two");
    submit_wait(st, snap_make(1, 3, now + 2, now));
    ASSERT_EQ(query_int(path, "SELECT count(*) FROM events"), 2);
    d = status(st);
    ASSERT_EQ(d.events_dropped, 0);
    status_free(&d);
    store_close(st);
}

static cJSON *history(store_t *st, int64_t since, int64_t until, int64_t step)
{
    char *out = NULL, err[256];
    if (store_history_json(st, since, until, step, &out, err) != 0)
        fprintf(stderr, "history: %s\n", err);
    ASSERT(out != NULL);
    cJSON *j = cJSON_Parse(out);
    free(out);
    ASSERT(j != NULL);
    return j;
}

/* o.a or o.a.b; a count absent from a cause map is 0. */
static double num(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItem(o, a);
    if (b != NULL)
        x = cJSON_GetObjectItem(x, b);
    return cJSON_IsNumber(x) ? x->valuedouble : 0;
}

/* One sample per minute (the first snapshot of the minute); a step reports the last sample in it,
 * in total, per cause and per group. */
static void test_history(void)
{
    char path[600];
    db_path(path, sizeof(path), "history.state.db");
    store_t *st = store_open(path, &quiet, NULL);
    int64_t t0 = (now / 3600 - 1) * 3600; /* an hour boundary in the past */
    for (int m = 0; m < 4; m++) {
        snap_t *s = snap_make(2, 10, t0 + m * 60, t0);
        for (int k = 0; k <= m; k++) /* minute m: m + 1 offline in g1 */
            set_offline(s, 10 + (size_t)k, k % 2 ? FS_CAUSE_CERT_EXPIRED : FS_CAUSE_UNTRUSTED_CA,
                        t0);
        submit_wait(st, s);
        s = snap_make(2, 10, t0 + m * 60 + 30, t0); /* later in the minute: not sampled */
        submit_wait(st, s);
    }
    ASSERT_EQ(query_int(path, "SELECT count(*) FROM counts"), 8);
    cJSON *j = history(st, t0, t0 + 3600, 60);
    cJSON *pts = cJSON_GetObjectItem(j, "points");
    ASSERT_EQ(cJSON_GetArraySize(pts), 4);
    ASSERT_EQ(num(j, "step_s", NULL), 60);
    for (int m = 0; m < 4; m++) {
        cJSON *p = cJSON_GetArrayItem(pts, m);
        char want[32];
        ASSERT_STREQ(cJSON_GetObjectItem(p, "at")->valuestring,
                     fs_rfc3339(t0 + m * 60, want, sizeof(want)));
        ASSERT_EQ(num(p, "endpoints", "total"), 20);
        ASSERT_EQ(num(p, "endpoints", "offline"), m + 1);
        ASSERT_EQ(num(p, "endpoints", "online"), 20 - (m + 1));
        ASSERT_EQ(num(p, "causes", "untrusted_ca"), (m + 2) / 2);
        ASSERT_EQ(num(p, "causes", "cert_expired"), (m + 1) / 2);
        cJSON *g = cJSON_GetObjectItem(p, "groups");
        ASSERT_EQ(cJSON_GetArraySize(g), 2);
        ASSERT_STREQ(cJSON_GetObjectItem(cJSON_GetArrayItem(g, 1), "name")->valuestring, "g1");
        ASSERT_EQ(num(cJSON_GetArrayItem(g, 1), "offline", NULL), m + 1);
        ASSERT_EQ(num(cJSON_GetArrayItem(g, 1), "causes", "untrusted_ca"), (m + 2) / 2);
        ASSERT_EQ(num(cJSON_GetArrayItem(g, 0), "offline", NULL), 0);
        ASSERT_EQ(num(cJSON_GetArrayItem(g, 0), "online", NULL), 10);
    }
    cJSON_Delete(j);
    /* Two-minute steps: the later minute of each. */
    j = history(st, t0, t0 + 3600, 120);
    pts = cJSON_GetObjectItem(j, "points");
    ASSERT_EQ(cJSON_GetArraySize(pts), 2);
    ASSERT_EQ(num(cJSON_GetArrayItem(pts, 0), "endpoints", "offline"), 2);
    ASSERT_EQ(num(cJSON_GetArrayItem(pts, 1), "endpoints", "offline"), 4);
    char want[32];
    ASSERT_STREQ(cJSON_GetObjectItem(cJSON_GetArrayItem(pts, 1), "sampled_at")->valuestring,
                 fs_rfc3339(t0 + 180, want, sizeof(want)));
    cJSON_Delete(j);
    /* A window without samples; bad steps. */
    j = history(st, t0 - 7200, t0 - 3600, 60);
    ASSERT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(j, "points")), 0);
    cJSON_Delete(j);
    char *out, err[256];
    ASSERT_EQ(store_history_json(st, t0, t0 + 3600, 90, &out, err), -1);
    ASSERT_EQ(store_history_json(st, t0, t0 + 86400 * 30, 60, &out, err), -1);
    store_close(st);
}

/* Events and samples past the row limit or the age go, as do expired cache bodies. */
static void test_bounds(void)
{
    char path[600];
    db_path(path, sizeof(path), "bounds.state.db");
    store_opts_t o = {.quiet = 1, .events_max = 10, .counts_max = 6, .history_max_age_s = 3600};
    store_t *st = store_open(path, &o, NULL);
    int64_t t0 = now / 60 * 60;
    uint64_t seq = 0;
    for (int m = 0; m < 5; m++) {
        for (int k = 0; k < 6; k++) /* 2 of them too old */
            add_event(st, ++seq, k < 2 ? now - 7200 : now, "g0-00000", SNAP_ONLINE, SNAP_OFFLINE,
                      FS_CAUSE_CERT_EXPIRED, "x");
        submit_wait(st, snap_make(2, 2, t0 - 300 + m * 60, t0));
    }
    /* the minute of the last tick pruned what came before it */
    ASSERT(query_int(path, "SELECT count(*) FROM events") <= 10 + 6);
    ASSERT_EQ(query_int(path, "SELECT count(*) FROM events WHERE at < strftime('%s','now') - 3600 "
                              "AND seq <= 24"),
              0);
    ASSERT(query_int(path, "SELECT count(*) FROM counts") <= 6 + 2);
    ASSERT_EQ(query_int(path, "SELECT max(seq) FROM events"), 30);
    store_close(st);
}

/* No directory to create the file in: unavailable, never fatal. */
static void test_missing_dir(void)
{
    char path[600], *log;
    db_path(path, sizeof(path), "no/such/dir/x.state.db");
    store_saved_t sv;
    store_t *st = open_logged(path, &sv, &log);
    ASSERT(st != NULL);
    ASSERT_CONTAINS(log, "cannot open");
    free(log);
    store_saved_free(&sv);
    snap_store_t d = status(st);
    ASSERT_EQ(d.status, SNAP_DB_UNAVAILABLE);
    status_free(&d);
    store_close(st);
}

static void rm_dir(const char *path)
{
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    ASSERT_EQ(system(cmd), 0);
}

int main(void)
{
    now = (int64_t)time(NULL);
    ASSERT(mkdtemp(dir) != NULL);
    RUN(test_off);
    RUN(test_roundtrip);
    RUN(test_diff_and_layout);
    RUN(test_crash_gap);
    RUN(test_garbage_rebuilt);
    RUN(test_locked_by_another);
    RUN(test_busy_writer);
    RUN(test_history);
    RUN(test_bounds);
    RUN(test_missing_dir);
    rm_dir(dir);
    return 0;
}
