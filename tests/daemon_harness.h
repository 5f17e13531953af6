/* daemon_harness.h - the real `fleetscan run` for the end-to-end tests: started from $FLEETSCAN_BIN
 * on a configuration, reached over real HTTP at the address it prints, stopped and checked. */
#ifndef FS_DAEMON_HARNESS_H
#define FS_DAEMON_HARNESS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct dh_daemon_s {
    /* Set by the test; read at each dh_start, so a test may point them elsewhere in between. */
    const char *cfg_path; /* fleetscan run -c */
    const char *err_path; /* its stderr, truncated at each start */
    const char *state_db; /* --state-db, or NULL: the default beside the configuration */
    /* Set by dh_start. */
    pid_t pid;
    int out;       /* its stdout, -1 once stopped */
    char api[128]; /* "http://HOST:PORT", as it printed it */
} dh_daemon_t;

typedef struct dh_resp_s {
    long status;
    char *body; /* NUL-terminated, never NULL; the caller frees it */
    size_t len;
} dh_resp_t;

/* Client timeout of this thread's requests, 10 s unless the test changes it: a hang detector,
 * never a speed verdict. */
extern _Thread_local long dh_http_timeout_s;

/* Forks `fleetscan run` with FLEETSCAN_DNS_OVERRIDE_ONLY=1 (it dies with the test) and returns
 * once it has printed "fleetscan: API listening on http://HOST:PORT/" (15 s at most), with api
 * set; fails the test with its stderr otherwise. */
void dh_start(dh_daemon_t *d);
/* Sends sig and reaps the daemon (10 s at most). SIGTERM: it must exit 0 with no sanitizer report
 * and no handle left open in its stderr; SIGKILL: it must die of it. */
void dh_stop(dh_daemon_t *d, int sig);

/* method path on the daemon, with "Authorization: Bearer auth" unless auth is NULL; body is the
 * POST body (NULL: empty). A failed transfer fails the test. */
dh_resp_t dh_http(const dh_daemon_t *d, const char *method, const char *path, const char *auth,
                  const char *body);
/* GET path, which must answer `want` with JSON; the caller deletes it. */
cJSON *dh_get_json(const dh_daemon_t *d, const char *path, long want);
/* GET path, which must answer 200 with JSON once the first snapshot is published (503
 * "not_ready" until then: the API answers before the loop's first publish; 10 s at most). */
cJSON *dh_get_json_ready(const dh_daemon_t *d, const char *path);
/* Polls /api/v1/status until pred holds (30 s at most: a hang detector) and returns it. */
cJSON *dh_wait_status(const dh_daemon_t *d, int (*pred)(cJSON *s, void *arg), void *arg);
/* A dh_wait_status predicate: every endpoint has a verdict. */
int dh_all_probed(cJSON *s, void *arg);

/* The member at a dotted path ("endpoints.total"), or NULL. */
const cJSON *dh_item(const cJSON *o, const char *path);
/* The number at a dotted path, or -1. */
double dh_num(const cJSON *o, const char *path);
/* The whole file (up to 1 MiB), NUL-terminated; the caller frees it. */
char *dh_read_file(const char *path);

#endif
