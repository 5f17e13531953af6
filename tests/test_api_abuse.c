/* test_api_abuse.c - the API against clients that try to starve it, over real sockets: idle
 * and slowloris connections, slow bodies and slow readers, one address holding every slot,
 * oversized and malformed requests, a PEM bomb. Throughout, a prober asks /healthz on a fresh
 * connection every 50 ms and every answer must come (generously) within 1 s. */
#include "web/api.h"
#include "web/conn_guard.h"

#include "daemon/preflight.h"
#include "lab/pki.h"

#include "probes/util.h"

#include "test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#define TOKEN "abuse-token"

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    ASSERT(d != NULL);
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

/* Waits up to 5 s for the process's descriptors to come back to n (the server closes its side
 * of a dropped connection asynchronously). */
static void expect_fds(int n)
{
    int64_t end = mono_ms() + 5000;
    while (count_fds() != n && mono_ms() < end)
        usleep(20000);
    if (count_fds() != n)
        fprintf(stderr, "descriptors: %d, expected %d\n", count_fds(), n);
    ASSERT_EQ(count_fds(), n);
}

/* ---- raw clients ----------------------------------------------------------------------- */

/* A TCP connection to 127.0.0.1:port from src (an address of 127/8), non-blocking after the
 * connect; -1 when refused. */
static int dial(const char *src, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    if (src != NULL) {
        ASSERT_EQ(inet_pton(AF_INET, src, &sa.sin_addr), 1);
        ASSERT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    }
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the server dropped us: the caller reads why */
        c += w;
        n -= (size_t)w;
    }
}

/* Reads until the peer closes or ms pass; returns the bytes (NUL-terminated in out) and sets
 * *closed when the peer closed. */
static size_t read_until_close(int fd, char *out, size_t cap, int ms, int *closed)
{
    size_t got = 0;
    int64_t end = mono_ms() + ms;
    *closed = 0;
    for (;;) {
        int64_t left = end - mono_ms();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)left) <= 0)
            break;
        char tmp[4096];
        ssize_t r = recv(fd, tmp, sizeof(tmp), 0);
        if (r <= 0) {
            *closed = 1;
            break;
        }
        size_t k = (size_t)r < cap - 1 - got ? (size_t)r : cap - 1 - got;
        memcpy(out + got, tmp, k);
        got += k;
    }
    out[got] = '\0';
    return got;
}

/* 1 when the peer has closed fd (EOF or reset) within ms. */
static int closed_within(int fd, int ms)
{
    char buf[8192];
    int closed;
    read_until_close(fd, buf, sizeof(buf), ms, &closed);
    return closed;
}

/* ---- the /healthz prober --------------------------------------------------------------- */

typedef struct prober_s {
    pthread_t t;
    int port;
    atomic_int stop;
    int n, failed;
    int64_t worst_ms;
    int64_t ms[4096];
} prober_t;

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
    return sz * n;
}

static void *prober_main(void *arg)
{
    prober_t *p = arg;
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", p->port);
    while (!atomic_load(&p->stop)) {
        CURL *h = curl_easy_init();
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
        int64_t t0 = mono_ms();
        CURLcode rc = curl_easy_perform(h);
        int64_t dt = mono_ms() - t0;
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(h);
        if (rc != CURLE_OK || status != 200) {
            fprintf(stderr, "   /healthz failed: %s, status %ld after %lld ms\n",
                    curl_easy_strerror(rc), status, (long long)dt);
            p->failed++;
        }
        if (p->n < (int)FS_ARRAY_SIZE(p->ms))
            p->ms[p->n++] = dt;
        if (dt > p->worst_ms)
            p->worst_ms = dt;
        usleep(50000);
    }
    return NULL;
}

static void prober_start(prober_t *p, int port)
{
    memset(p, 0, sizeof(*p));
    p->port = port;
    ASSERT_EQ(pthread_create(&p->t, NULL, prober_main, p), 0);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Stops the prober and asserts every /healthz answered 200 within 1 s (the figure the spec
 * asks is 100 ms: the median is printed, not asserted, as timing never decides a verdict on
 * a shared CI machine beyond a generous bound). */
static void prober_check(prober_t *p, const char *what)
{
    atomic_store(&p->stop, 1);
    pthread_join(p->t, NULL);
    ASSERT(p->n > 0);
    qsort(p->ms, (size_t)p->n, sizeof(p->ms[0]), cmp_i64);
    fprintf(stderr, "   /healthz during %s: %d asked, median %lld ms, worst %lld ms\n", what, p->n,
            (long long)p->ms[p->n / 2], (long long)p->worst_ms);
    ASSERT_EQ(p->failed, 0);
    ASSERT(p->worst_ms < 1000);
}

/* ---- the API under test ---------------------------------------------------------------- */

/* GET /api/v1/history answers 2 MiB: more than socket buffers hold for a client that does not
 * read. */
static int big_history(void *arg, int64_t since, int64_t until, int64_t step, char **json_out,
                       int *status)
{
    size_t n = 2u << 20;
    char *j = fs_xmalloc(n + 1);
    memset(j, ' ', n);
    j[0] = '{';
    j[n - 1] = '}';
    j[n] = '\0';
    *json_out = j;
    *status = 200;
    return 0;
}

/* POST /api/v1/preflight through the real chain reader (what the daemon's hook runs first). */
static int parse_preflight(void *arg, const char *body, size_t len, const char *target,
                           char **json_out, int *status)
{
    (void)target;
    STACK_OF(X509) *sk = NULL;
    char err[256];
    cJSON *j = cJSON_CreateObject();
    if (preflight_parse_chain((const unsigned char *)body, len, &sk, err) == 0) {
        cJSON_AddNumberToObject(j, "certificates", sk_X509_num(sk));
        sk_X509_pop_free(sk, X509_free);
        *status = 200;
    } else {
        cJSON_AddStringToObject(j, "error", err);
        cJSON_AddStringToObject(j, "code", "bad_chain");
        *status = 400;
    }
    *json_out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return 0;
}

static api_t *start_api(int max_conn, int per_ip, int reserve, int header_s, int body_s, int send_s)
{
    api_opts_t o = {.listen = "127.0.0.1:0",
                    .token = TOKEN,
                    .max_connections = max_conn,
                    .max_connections_per_ip = per_ip,
                    .health_reserve = reserve,
                    .header_timeout_s = header_s,
                    .body_timeout_s = body_s,
                    .send_timeout_s = send_s,
                    .idle_timeout_s = 30,
                    .on_history = big_history,
                    .on_post_preflight = parse_preflight};
    char err[256];
    api_t *a;
    ASSERT_EQ(api_start(&a, &o, err), 0);
    return a;
}

static uint64_t dropped(conn_guard_reason_t why)
{
    conn_guard_stats_t st;
    conn_guard_process_stats(&st);
    return st.dropped_total[why];
}

static uint64_t open_conns(void)
{
    conn_guard_stats_t st;
    conn_guard_process_stats(&st);
    return st.open;
}

/* The JSON error of a raw answer: asserts status and code. */
static void expect_raw_error(const char *resp, const char *status, const char *code)
{
    if (strstr(resp, status) == NULL)
        fprintf(stderr, "expected %s %s in: %s\n", status, code, resp);
    ASSERT(strncmp(resp, "HTTP/1.1 ", 9) == 0);
    ASSERT_CONTAINS(resp, status);
    ASSERT_CONTAINS(resp, "Content-Type: application/json");
    const char *body = strstr(resp, "\r\n\r\n");
    ASSERT(body != NULL);
    cJSON *j = cJSON_Parse(body + 4);
    ASSERT(j != NULL);
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(j, "error")));
    ASSERT_STREQ(cJSON_GetObjectItem(j, "code")->valuestring, code);
    cJSON_Delete(j);
}

/* 300 connections that never send a byte, against 64 slots (32 per address): each new one
 * evicts the oldest idle one of its address, so the server never holds more than its limit,
 * and /healthz, on a fresh connection from the same address, always gets in. */
static void test_idle_connections(void)
{
    int fds0 = count_fds();
    api_t *a = start_api(64, 32, 4, 10, 10, 10);
    int port = api_port(a);
    uint64_t evicted0 = dropped(CONN_GUARD_EVICTED);
    prober_t p;
    prober_start(&p, port);
    enum { N = 300 };
    int fd[N];
    for (int i = 0; i < N; i++) {
        fd[i] = dial(i % 2 ? "127.0.0.1" : "127.0.0.3", port);
        ASSERT(fd[i] >= 0);
        if (i % 50 == 49)
            usleep(100000);
    }
    usleep(500000);
    /* at most 32 per address stay open on the server; the rest were evicted */
    ASSERT(open_conns() <= 64 + 4);
    int alive = 0;
    for (int i = 0; i < N; i++)
        alive += !closed_within(fd[i], 1);
    fprintf(stderr, "   %d of %d idle connections still open; %llu evicted\n", alive, N,
            (unsigned long long)(dropped(CONN_GUARD_EVICTED) - evicted0));
    ASSERT(alive <= 64 + 4);
    ASSERT(dropped(CONN_GUARD_EVICTED) - evicted0 >= N - 64 - 4);
    prober_check(&p, "300 idle connections");
    for (int i = 0; i < N; i++)
        close(fd[i]);
    api_stop(a);
    expect_fds(fds0);
}

/* One address holds its 8 slots with requests whose bodies trickle (busy, not evictable): its
 * next connection gets the reserved slot, which answers /healthz and nothing else (503), and
 * another one then is refused with a JSON 429. Another address is not affected. */
static void test_per_address_limit_and_reserve(void)
{
    int fds0 = count_fds();
    api_t *a = start_api(100, 8, 2, 10, 20, 10);
    int port = api_port(a);
    static const char slow_post[] = "POST /api/v1/scan HTTP/1.1\r\nHost: x\r\nAuthorization: "
                                    "Bearer " TOKEN "\r\nContent-Length: 100\r\n\r\n0123456789";
    int busy[8];
    for (int i = 0; i < 8; i++) {
        busy[i] = dial("127.0.0.2", port);
        ASSERT(busy[i] >= 0);
        send_all(busy[i], slow_post, sizeof(slow_post) - 1);
    }
    usleep(300000);
    char buf[8192];
    int closed;
    /* the reserved slot: /healthz answered, then the slot is released when we close */
    int r = dial("127.0.0.2", port);
    static const char hz[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    send_all(r, hz, sizeof(hz) - 1);
    read_until_close(r, buf, sizeof(buf), 3000, &closed);
    ASSERT_CONTAINS(buf, "HTTP/1.1 200");
    ASSERT_CONTAINS(buf, "{\"status\":\"ok\"}");
    close(r);
    usleep(200000);
    /* the reserved slot for anything else: a JSON 503 */
    uint64_t misuse0 = dropped(CONN_GUARD_RESERVE_MISUSE);
    r = dial("127.0.0.2", port);
    static const char st[] = "GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(r, st, sizeof(st) - 1);
    read_until_close(r, buf, sizeof(buf), 3000, &closed);
    expect_raw_error(buf, " 503 ", "too_many_connections");
    ASSERT(closed);
    ASSERT_EQ(dropped(CONN_GUARD_RESERVE_MISUSE), misuse0 + 1);
    close(r);
    usleep(200000);
    /* the reserved slot held, one more: refused at once, JSON 429 */
    uint64_t refused0 = dropped(CONN_GUARD_REFUSED);
    r = dial("127.0.0.2", port);
    int r2 = dial("127.0.0.2", port);
    ASSERT(r >= 0 && r2 >= 0);
    read_until_close(r2, buf, sizeof(buf), 3000, &closed);
    expect_raw_error(buf, " 429 ", "too_many_connections");
    ASSERT_CONTAINS(buf, "Retry-After: 1");
    ASSERT(closed);
    ASSERT_EQ(dropped(CONN_GUARD_REFUSED), refused0 + 1);
    close(r2);
    close(r);
    /* another address is served as usual */
    int o = dial("127.0.0.1", port);
    send_all(o, hz, sizeof(hz) - 1);
    read_until_close(o, buf, sizeof(buf), 3000, &closed);
    ASSERT_CONTAINS(buf, "HTTP/1.1 200");
    close(o);
    for (int i = 0; i < 8; i++)
        close(busy[i]);
    api_stop(a);
    expect_fds(fds0);
}

/* Slowloris: 100 connections each trickling a request head one byte every 300 ms. libmicro-
 * httpd's idle timeout never fires (every byte resets it); the header deadline (2 s) does: each
 * gets a JSON 408 and is closed, within a generous bound, while /healthz answers. */
typedef struct loris_s {
    int fd[100];
    int n;
    atomic_int stop;
} loris_t;

static void *loris_main(void *arg)
{
    loris_t *l = arg;
    static const char head[] = "GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    size_t off = 0;
    while (!atomic_load(&l->stop)) {
        for (int i = 0; i < l->n; i++)
            if (l->fd[i] >= 0)
                (void)send(l->fd[i], off < sizeof(head) - 1 ? head + off : "a", 1,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        off++;
        usleep(300000);
    }
    return NULL;
}

static void test_slowloris(void)
{
    int fds0 = count_fds();
    api_t *a = start_api(1000, 1000, 4, 2, 2, 2);
    int port = api_port(a);
    uint64_t to0 = dropped(CONN_GUARD_HEADER_TIMEOUT);
    prober_t p;
    prober_start(&p, port);
    loris_t l = {.n = 100};
    int64_t t0 = mono_ms();
    for (int i = 0; i < l.n; i++) {
        l.fd[i] = dial("127.0.0.4", port);
        ASSERT(l.fd[i] >= 0);
    }
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, loris_main, &l), 0);
    char buf[8192];
    int n408 = 0;
    for (int i = 0; i < l.n; i++) {
        int closed;
        read_until_close(l.fd[i], buf, sizeof(buf), 8000, &closed);
        ASSERT(closed);
        expect_raw_error(buf, " 408 ", "request_timeout");
        n408++;
    }
    int64_t took = mono_ms() - t0;
    atomic_store(&l.stop, 1);
    pthread_join(t, NULL);
    fprintf(stderr, "   %d slowloris connections answered 408 and closed after %lld ms\n", n408,
            (long long)took);
    ASSERT(took >= 1900 && took < 8000); /* the 2 s deadline, not the 30 s idle timeout */
    ASSERT(dropped(CONN_GUARD_HEADER_TIMEOUT) - to0 >= 100);
    prober_check(&p, "100 slowloris connections");
    for (int i = 0; i < l.n; i++)
        close(l.fd[i]);
    api_stop(a);
    expect_fds(fds0);
}

/* A body that stops coming: 408 after the body deadline; a client that never reads a large
 * answer: closed after the send deadline. */
static void test_slow_body_and_reader(void)
{
    int fds0 = count_fds();
    api_t *a = start_api(100, 100, 4, 5, 1, 1);
    int port = api_port(a);
    char buf[8192];
    int closed;
    int fd = dial(NULL, port);
    static const char post[] = "POST /api/v1/preflight HTTP/1.1\r\nHost: x\r\nAuthorization: "
                               "Bearer " TOKEN "\r\nContent-Length: 1000\r\n\r\n-----BEGIN";
    send_all(fd, post, sizeof(post) - 1);
    int64_t t0 = mono_ms();
    read_until_close(fd, buf, sizeof(buf), 6000, &closed);
    int64_t took = mono_ms() - t0;
    expect_raw_error(buf, " 408 ", "request_timeout");
    ASSERT(closed && took >= 900 && took < 4000);
    close(fd);

    /* A slow reader: 2 MiB of history, never read, is more than the socket buffers hold; the
     * connection is closed past the send deadline. */
    uint64_t st0 = dropped(CONN_GUARD_SEND_TIMEOUT);
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int small = 1024;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    static const char get[] = "GET /api/v1/history HTTP/1.1\r\nHost: x\r\n\r\n";
    send_all(fd, get, sizeof(get) - 1);
    int64_t end = mono_ms() + 6000;
    while (dropped(CONN_GUARD_SEND_TIMEOUT) == st0 && mono_ms() < end)
        usleep(50000);
    ASSERT_EQ(dropped(CONN_GUARD_SEND_TIMEOUT), st0 + 1);
    close(fd);
    api_stop(a);
    expect_fds(fds0);
}

/* Sends a request and reads the answer until the server closes (or 5 s); returns the status. */
static int exchange(int port, const char *req, size_t n, char *out, size_t cap, int *closed)
{
    int fd = dial(NULL, port);
    ASSERT(fd >= 0);
    send_all(fd, req, n);
    read_until_close(fd, out, cap, 5000, closed);
    close(fd);
    return strncmp(out, "HTTP/1.1 ", 9) == 0 ? atoi(out + 9) : 0;
}

/* A head of hlen bytes: request line, Host, then filler header fields of fields_len bytes
 * each up to the size. */
static char *make_head(const char *target, size_t hlen, size_t field_len)
{
    size_t cap = hlen + strlen(target) + 256;
    char *h = fs_xmalloc(cap);
    size_t n = (size_t)snprintf(h, cap, "GET %s HTTP/1.1\r\nHost: x\r\n", target);
    for (int i = 0; n + field_len + 4 < hlen; i++) {
        int k = snprintf(h + n, 32, "X-%d: ", i);
        n += (size_t)k;
        memset(h + n, 'v', field_len - (size_t)k);
        n += field_len - (size_t)k;
        memcpy(h + n, "\r\n", 2);
        n += 2;
    }
    memcpy(h + n, "\r\n", 3);
    return h;
}

/* Every refusal of a request's size is a JSON error with its status while the request fits
 * the connection's memory; past it libmicrohttpd 0.9.75 answers with the right status and its
 * own HTML body (docs/API.md, "Errors"). */
static void test_oversized_requests(void)
{
    int fds0 = count_fds();
    api_t *a = start_api(100, 100, 4, 5, 5, 5);
    int port = api_port(a);
    static char out[1 << 16];
    int closed;
    char *h;

    /* a 40 KiB head in one field, in 40 fields, and 101 short fields: JSON 431 */
    static const size_t fields[] = {40000, 1000};
    for (size_t i = 0; i < FS_ARRAY_SIZE(fields); i++) {
        h = make_head("/healthz", 40 * 1024, fields[i]);
        ASSERT_EQ(exchange(port, h, strlen(h), out, sizeof(out), &closed), 431);
        expect_raw_error(out, " 431 ", "header_too_large");
        ASSERT(closed);
        free(h);
    }
    h = make_head("/healthz", 120 * 12, 10); /* 117 fields */
    ASSERT_EQ(exchange(port, h, strlen(h), out, sizeof(out), &closed), 431);
    expect_raw_error(out, " 431 ", "header_too_large");
    free(h);
    h = make_head("/healthz", 90 * 12, 10); /* 87 fields: within both limits */
    ASSERT_EQ(exchange(port, h, strlen(h), out, sizeof(out), &closed), 200);
    free(h);
    /* past the connection's memory: libmicrohttpd's 431 and the connection closed (which,
     * with the rest of our head unread, can reset it before we read the 431) */
    h = make_head("/healthz", 512 * 1024, 4000);
    int st = exchange(port, h, strlen(h), out, sizeof(out), &closed);
    ASSERT(closed && (st == 431 || st == 0));
    free(h);

    /* a 20 KiB target: JSON 414; a 300 KiB one: libmicrohttpd's 414 */
    char *t = fs_xmalloc(300 * 1024 + 64);
    memset(t, 'a', 300 * 1024);
    t[0] = '/';
    t[20 * 1024] = '\0';
    h = make_head(t, 21 * 1024, 100);
    ASSERT_EQ(exchange(port, h, strlen(h), out, sizeof(out), &closed), 414);
    expect_raw_error(out, " 414 ", "uri_too_long");
    free(h);
    t[20 * 1024] = 'a';
    t[300 * 1024] = '\0';
    h = make_head(t, 301 * 1024, 100);
    st = exchange(port, h, strlen(h), out, sizeof(out), &closed);
    ASSERT(closed && (st == 414 || st == 0));
    free(h);
    free(t);

    /* bodies: a 2 GB Content-Length (then nothing): JSON 413 at once, the body never read; one
     * past 2^64: libmicrohttpd's 413; a bad method: JSON 405 */
    static const char big_cl[] = "POST /api/v1/preflight HTTP/1.1\r\nHost: x\r\nAuthorization: "
                                 "Bearer " TOKEN "\r\nContent-Length: 2147483648\r\n\r\n";
    int64_t t0 = mono_ms();
    ASSERT_EQ(exchange(port, big_cl, sizeof(big_cl) - 1, out, sizeof(out), &closed), 413);
    expect_raw_error(out, " 413 ", "body_too_large");
    ASSERT(mono_ms() - t0 < 4000); /* not the body deadline */
    static const char huge_cl[] = "POST /api/v1/preflight HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                  "99999999999999999999999\r\n\r\n";
    ASSERT_EQ(exchange(port, huge_cl, sizeof(huge_cl) - 1, out, sizeof(out), &closed), 413);
    static const char del[] = "DELETE /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_EQ(exchange(port, del, sizeof(del) - 1, out, sizeof(out), &closed), 405);
    expect_raw_error(out, " 405 ", "method_not_allowed");
    ASSERT_CONTAINS(out, "Allow: GET, HEAD");

    api_stop(a);
    expect_fds(fds0);
}

/* An HTTP request over curl: status and body (malloc'd). */
static long http(int port, const char *method, const char *path, const char *body, size_t len,
                 char **out)
{
    char url[2048];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    CURL *h = curl_easy_init();
    FILE *f;
    size_t n = 0;
    *out = NULL;
    f = open_memstream(out, &n);
    struct curl_slist *hl = curl_slist_append(NULL, "Authorization: Bearer " TOKEN);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    long status = 0;
    ASSERT_EQ(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hl);
    curl_easy_cleanup(h);
    fclose(f);
    return status;
}

/* A JSON error with this status and code whose document parses (the message quotes the
 * client's bytes: invalid UTF-8 must not make it invalid JSON). */
static void expect_json_error(int port, const char *method, const char *path, const char *body,
                              size_t len, long status, const char *code)
{
    char *out;
    long st = http(port, method, path, body, len, &out);
    if (st != status)
        fprintf(stderr, "%s %.80s -> %ld %s\n", method, path, st, out);
    ASSERT_EQ(st, status);
    cJSON *j = cJSON_Parse(out);
    if (j == NULL)
        fprintf(stderr, "not JSON: %s\n", out);
    ASSERT(j != NULL);
    ASSERT(cJSON_IsString(cJSON_GetObjectItem(j, "error")));
    ASSERT_STREQ(cJSON_GetObjectItem(j, "code")->valuestring, code);
    cJSON_Delete(j);
    free(out);
}

/* Malformed values: invalid UTF-8 and %00 in paths and parameters, integers past every width,
 * a body past the cap without a length (finite, then endless), PEM bombs. All JSON, all
 * prompt, /healthz answering throughout. */
static void test_malformed_input(void)
{
    int fds0 = count_fds();
    api_t *a = start_api(100, 100, 4, 5, 5, 5);
    int port = api_port(a);
    snap_t *snap = snap_new();
    snap->vantage = fs_xstrdup("abuse");
    snap->shard = fs_xstrdup("0/1");
    api_publish(a, snap);
    prober_t p;
    prober_start(&p, port);

    /* bytes that are not UTF-8, and NULs, in a path and in parameters */
    expect_json_error(port, "GET", "/api/v1/endpoints/%ff%fe%c0%af-00001", NULL, 0, 404,
                      "not_found");
    expect_json_error(port, "GET", "/api/v1/endpoints?group=%ff%fe%ed%a0%80", NULL, 0, 400,
                      "bad_parameter");
    expect_json_error(port, "GET", "/api/v1/endpoints?state=online%00", NULL, 0, 400,
                      "bad_parameter");
    expect_json_error(port, "GET", "/api/v1/status%00.json", NULL, 0, 404, "not_found");
    expect_json_error(port, "GET", "/healthz%00", NULL, 0, 404, "not_found");
    expect_json_error(port, "GET", "/api/v1/%ff", NULL, 0, 404, "not_found");

    /* integers: past 32 and 64 bits, signs, blanks, exponents */
    static const char *const bad_ints[] = {
        "/api/v1/endpoints?limit=18446744073709551616",
        "/api/v1/endpoints?limit=-1",
        "/api/v1/endpoints?limit=1001",
        "/api/v1/endpoints?offset=4294967296",
        "/api/v1/endpoints?offset=99999999999999999999999",
        "/api/v1/endpoints?limit=%201",
        "/api/v1/endpoints?limit=1e3",
        "/api/v1/endpoints?limit=0x10",
        "/api/v1/forecast?days=4294967297",
        "/api/v1/forecast?days=3651",
        "/api/v1/forecast?days=-0",
        "/api/v1/forecast?days=",
        "/api/v1/history?step=18446744073709551615",
        "/api/v1/history?step=60&since=0&until=99999999999999999999",
        "/api/v1/history?since=9223372036854775807",
        "/api/v1/events?since=18446744073709551616",
    };
    for (size_t i = 0; i < FS_ARRAY_SIZE(bad_ints); i++)
        expect_json_error(port, "GET", bad_ints[i], NULL, 0, 400, "bad_parameter");
    char *out;
    ASSERT_EQ(http(port, "GET", "/api/v1/endpoints?limit=1000&offset=4294967295", NULL, 0, &out),
              200);
    free(out);

    /* a chunked body past the cap that ends: read, discarded, JSON 413 */
    static char chunk[70000];
    int fd = dial(NULL, port);
    static const char ch[] = "POST /api/v1/preflight HTTP/1.1\r\nHost: x\r\nAuthorization: "
                             "Bearer " TOKEN "\r\nTransfer-Encoding: chunked\r\n\r\n";
    send_all(fd, ch, sizeof(ch) - 1);
    memset(chunk, 'A', sizeof(chunk));
    int hl = snprintf(chunk, 16, "%x\r\n", 65536);
    for (int i = 0; i < 17; i++) { /* 17 x 64 KiB = 1 MiB + 64 KiB */
        send_all(fd, chunk, (size_t)hl);
        send_all(fd, chunk + 20, 65536);
        send_all(fd, "\r\n", 2);
    }
    send_all(fd, "0\r\n\r\n", 5);
    char buf[8192];
    int closed;
    read_until_close(fd, buf, sizeof(buf), 5000, &closed);
    expect_raw_error(buf, " 413 ", "body_too_large");
    close(fd);
    /* one that never ends: the 413 is written as the connection is dropped */
    fd = dial(NULL, port);
    send_all(fd, ch, sizeof(ch) - 1);
    int64_t t0 = mono_ms();
    for (int i = 0; i < 200 && mono_ms() - t0 < 8000; i++) {
        send_all(fd, chunk, (size_t)hl);
        send_all(fd, chunk + 20, 65536);
        send_all(fd, "\r\n", 2);
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 0) > 0)
            break;
    }
    read_until_close(fd, buf, sizeof(buf), 5000, &closed);
    ASSERT(closed);
    if (buf[0] != '\0') /* the reset that follows can beat it: best effort */
        expect_raw_error(buf, " 413 ", "body_too_large");
    close(fd);

    /* PEM bombs, each under the 1 MiB cap: the reader refuses them at once */
    char *bomb = fs_xmalloc(API_BODY_MAX + 1);
    size_t n = 0;
    static const char tiny[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    while (n + sizeof(tiny) < API_BODY_MAX) {
        memcpy(bomb + n, tiny, sizeof(tiny) - 1);
        n += sizeof(tiny) - 1;
    }
    t0 = mono_ms();
    expect_json_error(port, "POST", "/api/v1/preflight", bomb, n, 400, "bad_chain");
    /* ~800 copies of a real certificate */
    lab_cert_t c;
    char err[256];
    lab_cert_opts_t co = {.cn = "bomb.lab.test", .key_ec = 1};
    ASSERT(lab_cert_issue(&c, &co, NULL, err) == 0);
    unsigned char *der;
    size_t dlen;
    ASSERT(lab_cert_der(c.cert, &der, &dlen) == 0);
    char *pem;
    size_t plen;
    ASSERT(lab_der_to_pem(der, dlen, "CERTIFICATE", &pem, &plen) == 0);
    for (n = 0; n + plen < API_BODY_MAX; n += plen)
        memcpy(bomb + n, pem, plen);
    expect_json_error(port, "POST", "/api/v1/preflight", bomb, n, 400, "bad_chain");
    /* one block holding a megabyte of base64, and a megabyte of BEGIN lines */
    n = (size_t)sprintf(bomb, "-----BEGIN CERTIFICATE-----\n");
    while (n + 80 < API_BODY_MAX - 40) {
        memset(bomb + n, 'Q', 64);
        bomb[n + 64] = '\n';
        n += 65;
    }
    n += (size_t)sprintf(bomb + n, "-----END CERTIFICATE-----\n");
    expect_json_error(port, "POST", "/api/v1/preflight", bomb, n, 400, "bad_chain");
    for (n = 0; n + 40 < API_BODY_MAX; n += 28)
        memcpy(bomb + n, "-----BEGIN CERTIFICATE-----\n", 28);
    expect_json_error(port, "POST", "/api/v1/preflight", bomb, n, 400, "bad_chain");
    fprintf(stderr, "   4 PEM bombs refused in %lld ms\n", (long long)(mono_ms() - t0));
    ASSERT(mono_ms() - t0 < 10000);
    free(bomb);
    free(pem);
    free(der);
    lab_cert_free(&c);

    /* what /metrics says about all this */
    ASSERT_EQ(http(port, "GET", "/metrics", NULL, 0, &out), 200);
    ASSERT_CONTAINS(out, "fleetscan_process_open_fds{vantage=\"abuse\",shard=\"0/1\"} ");
    ASSERT_CONTAINS(out, "fleetscan_inflight_bytes_limit{");
    ASSERT_CONTAINS(out,
                    "fleetscan_limit_bytes{vantage=\"abuse\",shard=\"0/1\",limit=\"tls_input\"} ");
    ASSERT_CONTAINS(out, "fleetscan_api_connections_dropped_total{vantage=\"abuse\",shard=\"0/1\","
                         "reason=\"header_timeout\"} ");
    free(out);

    prober_check(&p, "malformed input");
    api_stop(a);
    expect_fds(fds0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(170);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 4096) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    ASSERT_EQ(curl_global_init(CURL_GLOBAL_DEFAULT), 0);
    RUN(test_idle_connections);
    RUN(test_per_address_limit_and_reserve);
    RUN(test_slowloris);
    RUN(test_slow_body_and_reader);
    RUN(test_oversized_requests);
    RUN(test_malformed_input);
    curl_global_cleanup();
    fprintf(stderr, "test_api_abuse: ok\n");
    return 0;
}
