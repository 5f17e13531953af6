/* fuzz_api.c - libFuzzer target for the HTTP API's request router: method, path, query string,
 * headers and body go to the real API (web/api.c over libmicrohttpd, a published snapshot, the
 * hooks) on a loopback socket, and every answer is checked: a status line, and whenever the
 * answer says it is JSON, a document that parses, with "error" and "code" strings on an error.
 *
 * Input: byte 0 picks the method, byte 1 the extras (bearer token, a Content-Length body, an
 * odd header), then up to the first '\n' the request target (bytes outside 0x21..0x7e are
 * percent-escaped, so the fuzzer reaches every decoded byte, NUL and invalid UTF-8 included,
 * without breaking the request line), then up to the next '\n' a header value, then the body. */
#include "web/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cjson/cJSON.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define TOKEN "fuzz-token"
#define MAX_TARGET 4096
#define MAX_BODY 8192

static int port;

static void must(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_api set-up failed: %s\n", what);
        abort();
    }
}

static char *dup_str(const char *s)
{
    char *p = strdup(s);
    must(p != NULL, "strdup");
    return p;
}

/* Two groups, five endpoints, two events: enough for every route to find something. */
static snap_t *build_snap(void)
{
    snap_t *s = snap_new();
    s->generated_at = 1764000060;
    s->started_at = 1764000000;
    s->vantage = dup_str("fuzz");
    s->shard = dup_str("0/1");
    s->ngroups = 2;
    s->groups = calloc(2, sizeof(*s->groups));
    must(s->groups != NULL, "groups");
    s->groups[0].name = dup_str("hq");
    s->groups[1].name = dup_str("branch-eu");
    s->nendpoints = 5;
    s->endpoints = calloc(5, sizeof(*s->endpoints));
    must(s->endpoints != NULL, "endpoints");
    for (uint32_t i = 0; i < 5; i++) {
        snap_endpoint_t *e = &s->endpoints[i];
        e->group = i < 3 ? 0 : 1;
        e->index = i < 3 ? i : i - 3;
        e->state = (uint8_t)(i % 3);
        e->cause = e->state == SNAP_OFFLINE ? (uint8_t)FS_CAUSE_CRL_UNREACHABLE : 0;
        e->since = 1764000005;
        e->last_probe_at = 1764000050;
        snap_counts_t *c = &s->groups[e->group].counts;
        c->total++;
        s->totals.total++;
        if (e->state == SNAP_ONLINE)
            c->online++, s->totals.online++;
        else if (e->state == SNAP_OFFLINE)
            c->offline++, s->totals.offline++, c->causes[e->cause]++, s->totals.causes[e->cause]++;
        else
            c->pending++, s->totals.pending++;
    }
    s->nevents = 2;
    s->events = calloc(2, sizeof(*s->events));
    must(s->events != NULL, "events");
    for (int i = 0; i < 2; i++) {
        s->events[i].at = 1764000010 + i;
        s->events[i].seq = (uint64_t)i + 1;
        snprintf(s->events[i].subject, sizeof(s->events[i].subject), "hq-0000%d", i);
        s->events[i].old_state = SNAP_ONLINE;
        s->events[i].new_state = SNAP_OFFLINE;
        s->events[i].cause = FS_CAUSE_CRL_UNREACHABLE;
    }
    return s;
}

static char *json_doc(const char *s)
{
    return dup_str(s);
}

static void on_scan(void *arg) {}

static int on_preflight(void *arg, const char *body, size_t len, const char *target,
                        char **json_out, int *status)
{
    (void)target;
    *json_out =
        json_doc(len > 0 && body[0] == '-' ? "{\"groups\":[]}"
                                           : "{\"error\":\"bad chain\",\"code\":\"bad_chain\"}");
    *status = len > 0 && body[0] == '-' ? 200 : 400;
    return 0;
}

static int on_forecast(void *arg, const snap_t *s, int days, char **json_out, int *status)
{
    *json_out = json_doc("{\"days\":1}");
    *status = 200;
    return 0;
}

static int on_history(void *arg, int64_t since, int64_t until, int64_t step, char **json_out,
                      int *status)
{
    if (since >= until || step <= 0)
        abort(); /* the API checked these before calling */
    *json_out = json_doc("{\"points\":[]}");
    *status = 200;
    return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    api_opts_t o = {.listen = "127.0.0.1:0",
                    .token = TOKEN,
                    .threads = 2,
                    .header_timeout_s = 5,
                    .on_scan = on_scan,
                    .on_post_preflight = on_preflight,
                    .on_forecast = on_forecast,
                    .on_history = on_history};
    api_t *a;
    char err[256];
    must(api_start(&a, &o, err) == 0, err);
    api_publish(a, build_snap());
    port = api_port(a);
    return 0; /* the API lives until the process ends */
}

typedef struct out_s {
    char *p;
    size_t n, cap;
} out_t;

static void put(out_t *o, const void *p, size_t n)
{
    if (o->n + n + 1 > o->cap) {
        o->cap = (o->n + n + 1) * 2;
        o->p = realloc(o->p, o->cap);
        must(o->p != NULL, "realloc");
    }
    memcpy(o->p + o->n, p, n);
    o->n += n;
    o->p[o->n] = '\0';
}

static void puts_(out_t *o, const char *s)
{
    put(o, s, strlen(s));
}

/* The request the input describes. */
static void build_request(const unsigned char *d, size_t n, out_t *req)
{
    static const char *const methods[] = {"GET",    "HEAD",    "POST", "PUT",
                                          "DELETE", "OPTIONS", "XYZZY"};
    unsigned m = n > 0 ? d[0] % (sizeof(methods) / sizeof(methods[0])) : 0;
    unsigned extras = n > 1 ? d[1] : 0;
    size_t i = n > 2 ? 2 : n;
    puts_(req, methods[m]);
    puts_(req, " ");
    size_t t0 = req->n;
    if (i >= n || d[i] != '/')
        puts_(req, "/");
    for (; i < n && d[i] != '\n' && req->n - t0 < MAX_TARGET; i++) {
        if (d[i] > 0x20 && d[i] < 0x7f) {
            put(req, &d[i], 1);
        } else {
            char esc[4];
            snprintf(esc, sizeof(esc), "%%%02X", d[i]);
            puts_(req, esc);
        }
    }
    i++;
    puts_(req, " HTTP/1.1\r\nHost: fuzz\r\nConnection: close\r\n");
    if (extras & 1)
        puts_(req, "Authorization: Bearer " TOKEN "\r\n");
    /* a header whose value comes from the input (printable bytes only) */
    if (extras & 2) {
        puts_(req, (extras & 4) ? "Authorization: " : "X-Fuzz: ");
        for (; i < n && d[i] != '\n'; i++)
            if (d[i] >= 0x20 && d[i] < 0x7f)
                put(req, &d[i], 1);
        puts_(req, "\r\n");
        i++;
    }
    size_t blen = i < n ? n - i : 0;
    if (blen > MAX_BODY)
        blen = MAX_BODY;
    char cl[64];
    snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n\r\n", blen);
    if (blen > 0 || m == 2 || m == 3)
        puts_(req, cl);
    else
        puts_(req, "\r\n");
    if (blen > 0)
        put(req, d + i, blen);
}

/* Sends req, reads the answer until the server closes it (Connection: close). */
static void exchange(const out_t *req, out_t *resp)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = -1;
    for (int tries = 0; fd < 0; tries++) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        must(fd >= 0, "socket");
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            break;
        must(tries < 100, "connect"); /* interrupted, or no local port free for a moment */
        close(fd);
        fd = -1;
        usleep(10000);
    }
    /* libFuzzer's timeout timer (SIGALRM) interrupts system calls: EINTR is retried */
    for (size_t off = 0; off < req->n;) {
        ssize_t w = send(fd, req->p + off, req->n - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* answered (and closed) before the body was sent */
        off += (size_t)w;
    }
    /* no shutdown of our side: the server closes first (Connection: close), so the TIME_WAIT
     * states of hundreds of thousands of runs stay on its side and never use up our ports */
    for (int waited_ms = 0;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, 100);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 && (waited_ms += 100) < 10000)
            continue;
        if (n <= 0)
            abort(); /* the API must answer or close within its deadlines */
        char buf[16384];
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        put(resp, buf, (size_t)r);
    }
    close(fd);
}

/* The oracle: JSON when it says so, with error and code on an error status. */
static void check(const out_t *resp, int head)
{
    if (resp->n == 0)
        return; /* closed without an answer: a dropped connection (body cap) */
    if (strncmp(resp->p, "HTTP/1.1 ", 9) != 0 && strncmp(resp->p, "HTTP/1.0 ", 9) != 0)
        abort();
    int status = atoi(resp->p + 9);
    if (status < 100 || status > 599)
        abort();
    char *end = strstr(resp->p, "\r\n\r\n");
    if (end == NULL)
        abort();
    *end = '\0';
    int json = strstr(resp->p, "Content-Type: application/json") != NULL;
    const char *body = end + 4;
    size_t blen = resp->n - (size_t)(body - resp->p);
    if (!json || head || blen == 0)
        return;
    cJSON *j = cJSON_ParseWithLength(body, blen);
    if (j == NULL) {
        fprintf(stderr, "not JSON (%d): %.300s\n", status, body);
        abort();
    }
    if (status >= 400 && (!cJSON_IsString(cJSON_GetObjectItem(j, "error")) ||
                          !cJSON_IsString(cJSON_GetObjectItem(j, "code"))))
        abort();
    cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    out_t req = {0}, resp = {0};
    build_request(data, size, &req);
    exchange(&req, &resp);
    check(&resp, size > 0 && data[0] % 7 == 1);
    free(req.p);
    free(resp.p);
    return 0;
}
