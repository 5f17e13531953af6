/* test_restart.c - state that survives (SPEC §4.4), end to end: the real `fleetscan run` against
 * the lab, killed with SIGKILL mid-run and started again on the same state database: since times,
 * events (their sequence continuing) and the CRL/AIA cache come back (the lab's CRL server sees no
 * refetch), the history answers; then a database overwritten with garbage is moved aside and
 * rebuilt, with a log line, the status flag and the metric. */
#include "daemon/store.h"
#include "lab/scenarios.h"
#include "probes/util.h"
#include "tests/daemon_harness.h"
#include "tests/test.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static lab_t lab;
static char cfg_path[600], err_path[600], db_path[600];
static dh_daemon_t fsd = {.cfg_path = cfg_path, .err_path = err_path, .out = -1};

static int64_t parse_time(const cJSON *t)
{
    int64_t v = 0;
    if (cJSON_IsString(t))
        ASSERT_EQ(fs_parse_rfc3339(t->valuestring, &v), 0);
    return v;
}

/* The store committed a tick taken at or after `at`. */
static int written_since(cJSON *s, void *arg)
{
    return parse_time(dh_item(s, "state_db.last_write_at")) >= *(int64_t *)arg;
}

static long long db_int(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *q;
    long long v = -1;
    ASSERT_EQ(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW)
        v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

typedef struct ep_s {
    char id[96];
    char state[16];
    int64_t since;
} ep_t;

static size_t endpoints(ep_t *out, size_t max, size_t *restored)
{
    cJSON *j = dh_get_json(&fsd, "/api/v1/endpoints?limit=1000", 200);
    size_t n = 0;
    *restored = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(j, "items"))
    {
        ASSERT(n < max);
        fs_strlcpy(out[n].id, cJSON_GetObjectItem(it, "id")->valuestring, sizeof(out[n].id));
        fs_strlcpy(out[n].state, cJSON_GetObjectItem(it, "state")->valuestring,
                   sizeof(out[n].state));
        out[n].since = parse_time(cJSON_GetObjectItem(it, "since"));
        const cJSON *r = cJSON_GetObjectItem(it, "restored");
        ASSERT(cJSON_IsBool(r));
        *restored += cJSON_IsTrue(r);
        n++;
    }
    ASSERT_EQ(dh_num(j, "total"), n);
    cJSON_Delete(j);
    return n;
}

static const ep_t *find_ep(const ep_t *v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].id, id) == 0)
            return &v[i];
    return NULL;
}

static int none_restored(cJSON *s, void *arg)
{
    (void)s;
    size_t restored;
    ep_t *buf = arg;
    endpoints(buf, 1000, &restored);
    return restored == 0;
}

static ep_t before[1000], after[1000];
static size_t nbefore;
static uint64_t max_seq_before;
static unsigned hits_inter, hits_root, hits_aia;

static uint64_t max_event_seq(const cJSON *events, size_t *count)
{
    uint64_t m = 0;
    const cJSON *e;
    *count = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(events, "events"))
    {
        uint64_t q = (uint64_t)cJSON_GetObjectItem(e, "seq")->valuedouble;
        m = q > m ? q : m;
        (*count)++;
    }
    return m;
}

/* Waits until the round of live revocation checks has run (revocation-source health fetches
 * the CDPs itself, from the vantage, once per cycle: an hour here), so the CRL server's hit
 * counts below are settled. */
static void wait_live_checked(void)
{
    for (int i = 0; i < 300; i++) {
        cJSON *j = dh_get_json(&fsd, "/api/v1/targets", 200);
        const cJSON *t = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "targets"), 0);
        int n = cJSON_GetArraySize(cJSON_GetObjectItem(t, "revocation"));
        cJSON_Delete(j);
        if (n > 0)
            return;
        usleep(100000);
    }
    abort();
}

/* Run 1: the default path beside the configuration; probed, written, then SIGKILL. */
static void test_first_run_killed(void)
{
    dh_start(&fsd);
    cJSON *s = dh_wait_status(&fsd, dh_all_probed, NULL);
    ASSERT_STREQ(cJSON_GetObjectItem(dh_item(s, "state_db"), "status")->valuestring, "ok");
    ASSERT_STREQ(cJSON_GetObjectItem(dh_item(s, "state_db"), "path")->valuestring, db_path);
    ASSERT(cJSON_IsFalse(dh_item(s, "state_db.rebuilt")));
    int64_t at = parse_time(cJSON_GetObjectItem(s, "generated_at"));
    cJSON_Delete(s);
    size_t restored;
    nbefore = endpoints(before, 1000, &restored);
    ASSERT(nbefore > 50);
    ASSERT_EQ(restored, 0);
    cJSON *ev = dh_get_json(&fsd, "/api/v1/events", 200);
    size_t nev;
    max_seq_before = max_event_seq(ev, &nev);
    cJSON_Delete(ev);
    ASSERT(max_seq_before >= nbefore); /* pending -> state, one event each */
    /* Committed: the tick after everything was probed, the events, the retrieved CRLs. */
    s = dh_wait_status(&fsd, written_since, &at);
    cJSON_Delete(s);
    for (int i = 0; i < 300 && (db_int("SELECT count(*) FROM revcache") < 3 ||
                                db_int("SELECT max(seq) FROM events") < (long long)max_seq_before);
         i++)
        usleep(100000);
    ASSERT_EQ(db_int("SELECT max(seq) FROM events"), max_seq_before);
    ASSERT_EQ(db_int("SELECT count(*) FROM revcache WHERE kind = 'C' AND url LIKE '%/inter.crl'"),
              1);
    ASSERT_EQ(db_int("SELECT count(*) FROM revcache WHERE kind = 'C' AND url LIKE '%/root.crl'"),
              1);
    ASSERT_EQ(db_int("SELECT count(*) FROM revcache WHERE kind = 'A' AND url LIKE '%/inter.der'"),
              1);
    ASSERT_EQ(db_int("SELECT count(*) FROM endpoints WHERE state != 'pending'"),
              (long long)nbefore);
    wait_live_checked();
    hits_inter = lab_http_hits(lab.http, "/inter.crl");
    hits_root = lab_http_hits(lab.http, "/root.crl");
    hits_aia = lab_http_hits(lab.http, "/inter.der");
    ASSERT(hits_inter >= 1 && hits_root >= 1 && hits_aia >= 1);
    dh_stop(&fsd, SIGKILL);
}

/* Run 2, same database, a few more endpoints per group (the new ones make new events): states
 * and since come back, confirmed by the probes; events continue; no CRL is fetched again. */
static void test_restart_restores(void)
{
    char err[256];
    lab_fleet_opts_t fo = {.listen = "127.0.0.1:0", .interval_s = 3600, .scale = 0.12};
    ASSERT(lab_write_fleet_config(&lab, cfg_path, &fo, err) == 0);
    fsd.state_db = db_path;
    dh_start(&fsd);
    char *log = dh_read_file(err_path);
    ASSERT_CONTAINS(log, "restored from the state database");
    free(log);
    cJSON *s = dh_get_json_ready(&fsd, "/api/v1/status");
    ASSERT_STREQ(cJSON_GetObjectItem(dh_item(s, "state_db"), "status")->valuestring, "ok");
    ASSERT_EQ(dh_num(s, "state_db.restored.endpoints"), nbefore);
    ASSERT(dh_num(s, "state_db.restored.events") >= 1);
    ASSERT_EQ(dh_num(s, "state_db.restored.cache"), 3);
    cJSON_Delete(s);

    /* The restored events are served again, with their numbers. */
    cJSON *ev = dh_get_json(&fsd, "/api/v1/events", 200);
    size_t nev;
    ASSERT(max_event_seq(ev, &nev) >= max_seq_before);
    ASSERT(nev >= 1);
    /* The database keeps no target: a restored event names its group's target again. */
    const cJSON *restored_ev;
    cJSON_ArrayForEach(restored_ev, cJSON_GetObjectItem(ev, "events"))
    {
        const cJSON *t = cJSON_GetObjectItem(restored_ev, "target");
        if (!cJSON_IsString(t) || t->valuestring[0] == '\0')
            fprintf(stderr, "event without target: %s\n", cJSON_PrintUnformatted(restored_ev));
        ASSERT(cJSON_IsString(t) && t->valuestring[0] != '\0');
    }
    cJSON_Delete(ev);

    /* A restored endpoint shows its old state and since until a probe confirms it. */
    size_t restored, n = endpoints(after, 1000, &restored);
    for (size_t i = 0; i < n; i++) {
        const ep_t *b = find_ep(before, nbefore, after[i].id);
        if (b != NULL && strcmp(after[i].state, "pending") != 0) {
            ASSERT_STREQ(after[i].state, b->state);
            ASSERT_EQ(after[i].since, b->since);
        }
    }
    s = dh_wait_status(&fsd, none_restored, after);
    cJSON_Delete(s);
    s = dh_wait_status(&fsd, dh_all_probed, NULL);
    cJSON_Delete(s);
    n = endpoints(after, 1000, &restored);
    ASSERT(n > nbefore);
    size_t same = 0;
    for (size_t i = 0; i < nbefore; i++) {
        const ep_t *a = find_ep(after, n, before[i].id);
        ASSERT(a != NULL);
        if (strcmp(a->state, before[i].state) != 0 || a->since != before[i].since) {
            /* A probe that failed once (a loaded machine) moves since: say which and why. */
            char path[160];
            fprintf(stderr, "%s: before %s since %lld, after %s since %lld\n", a->id,
                    before[i].state, (long long)before[i].since, a->state, (long long)a->since);
            snprintf(path, sizeof(path), "/api/v1/endpoints/%s", a->id);
            dh_resp_t r = dh_http(&fsd, "GET", path, NULL, NULL);
            fprintf(stderr, "%s\n", r.body);
            free(r.body);
        }
        ASSERT_STREQ(a->state, before[i].state); /* the lab did not change */
        ASSERT_EQ(a->since, before[i].since);    /* confirmed: since when, not since restart */
        same++;
    }
    ASSERT_EQ(same, nbefore);
    /* The new endpoints' events continue the sequence past the crash gap. */
    char path[64];
    snprintf(path, sizeof(path), "/api/v1/events?since=%llu", (unsigned long long)max_seq_before);
    ev = dh_get_json(&fsd, path, 200);
    const cJSON *e;
    size_t fresh = 0;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(ev, "events"))
    {
        uint64_t q = (uint64_t)cJSON_GetObjectItem(e, "seq")->valuedouble;
        ASSERT(q > max_seq_before + STORE_SEQ_GAP);
        ASSERT_STREQ(cJSON_GetObjectItem(e, "old_state")->valuestring, "pending");
        fresh++;
    }
    ASSERT_EQ(fresh, n - nbefore);
    cJSON_Delete(ev);
    /* No refetch storm: every endpoint checked revocation from the restored cache; the CDPs
     * were fetched once more, by the vantage's one round of live checks (docs/API.md,
     * revocation-source health), which never uses that cache. */
    wait_live_checked();
    ASSERT_EQ(lab_http_hits(lab.http, "/inter.crl"), hits_inter + 1);
    ASSERT_EQ(lab_http_hits(lab.http, "/root.crl"), hits_root + 1);
    ASSERT_EQ(lab_http_hits(lab.http, "/inter.der"), hits_aia);

    /* The history of both runs. */
    cJSON *h = dh_get_json(&fsd, "/api/v1/history?step=60", 200);
    const cJSON *pts = cJSON_GetObjectItem(h, "points");
    ASSERT(cJSON_GetArraySize(pts) >= 1);
    const cJSON *last = cJSON_GetArrayItem(pts, cJSON_GetArraySize(pts) - 1);
    ASSERT(dh_num(last, "endpoints.total") >= (double)nbefore);
    ASSERT(cJSON_GetArraySize(cJSON_GetObjectItem(last, "groups")) == (int)lab_ngroups);
    ASSERT(dh_num(last, "causes.untrusted_ca") > 0 || dh_num(last, "endpoints.pending") > 0);
    cJSON_Delete(h);
    dh_resp_t r = dh_http(&fsd, "GET", "/api/v1/history?step=90", NULL, NULL);
    ASSERT_EQ(r.status, 400);
    ASSERT_CONTAINS(r.body, "bad_parameter");
    free(r.body);
    r = dh_http(&fsd, "GET", "/api/v1/history?since=yesterday", NULL, NULL);
    ASSERT_EQ(r.status, 400);
    free(r.body);
    dh_stop(&fsd, SIGTERM);
}

/* Garbage over the database: moved aside, a clear line in the log, the flag and the metric; the
 * daemon runs. */
static void test_garbage_rebuilt(void)
{
    FILE *f = fopen(db_path, "r+");
    ASSERT(f != NULL);
    char junk[4096];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (char)(0xA5 ^ i);
    ASSERT_EQ(fwrite(junk, 1, sizeof(junk), f), sizeof(junk));
    fclose(f);
    fsd.state_db = db_path;
    dh_start(&fsd);
    cJSON *s = dh_wait_status(&fsd, dh_all_probed, NULL);
    ASSERT_STREQ(cJSON_GetObjectItem(dh_item(s, "state_db"), "status")->valuestring, "ok");
    ASSERT(cJSON_IsTrue(dh_item(s, "state_db.rebuilt")));
    const cJSON *moved = dh_item(s, "state_db.moved_to");
    ASSERT(cJSON_IsString(moved));
    ASSERT_CONTAINS(moved->valuestring, ".state.db.corrupt-");
    struct stat sb;
    ASSERT_EQ(stat(moved->valuestring, &sb), 0);
    ASSERT(cJSON_IsString(dh_item(s, "state_db.last_error")));
    ASSERT(dh_num(s, "state_db.errors") >= 1);
    ASSERT_EQ(dh_num(s, "state_db.restored.endpoints"), 0);
    cJSON_Delete(s);
    char *log = dh_read_file(err_path);
    ASSERT_CONTAINS(log, "fleetscan: state_db: ");
    ASSERT_CONTAINS(log, "is not a usable database");
    ASSERT_CONTAINS(log, "moved aside to");
    free(log);
    dh_resp_t r = dh_http(&fsd, "GET", "/metrics", NULL, NULL);
    ASSERT_CONTAINS(r.body, "fleetscan_state_db_rebuilt{");
    ASSERT(strstr(r.body, "fleetscan_state_db_rebuilt{") != NULL &&
           strstr(strstr(r.body, "fleetscan_state_db_rebuilt{"), "} 1\n") != NULL);
    ASSERT_CONTAINS(r.body, "fleetscan_state_db_up{");
    free(r.body);
    dh_stop(&fsd, SIGTERM);
    ASSERT_EQ(db_int("SELECT value FROM meta WHERE key = 'clean'"), 1);
    ASSERT(db_int("SELECT count(*) FROM endpoints") > 0);
}

int main(void)
{
    char err[256];
    ASSERT(getenv("FLEETSCAN_BIN") != NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ASSERT(lab_start(&lab, err) == 0);
    lab_file(&lab, "fleet.json", cfg_path, sizeof(cfg_path));
    lab_file(&lab, "fleet.state.db", db_path, sizeof(db_path)); /* the default beside it */
    lab_file(&lab, "daemon.err", err_path, sizeof(err_path));
    lab_fleet_opts_t fo = {.listen = "127.0.0.1:0", .interval_s = 3600, .scale = 0.1};
    ASSERT(lab_write_fleet_config(&lab, cfg_path, &fo, err) == 0);
    RUN(test_first_run_killed);
    RUN(test_restart_restores);
    RUN(test_garbage_rebuilt);
    lab_stop(&lab);
    curl_global_cleanup();
    return 0;
}
