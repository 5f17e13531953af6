/* test_fetch.c - the libcurl-on-libuv fetcher against real loopback HTTP servers: statuses,
 * refused and unresolvable hosts, stalls, endless and trickling bodies, redirects, cancel. */
#include "probes/fetch.h"

#include "lab/httpserver.h"
#include "lab/tlsserver.h"
#include "probes/util.h"

#include "test.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct got_s {
    int calls;
    fetch_result_t r;
    char body[256];
} got_t;

static void on_got(void *arg, const fetch_result_t *r)
{
    got_t *g = arg;
    g->calls++;
    g->r = *r;
    size_t n = r->bytes < sizeof(g->body) - 1 ? r->bytes : sizeof(g->body) - 1;
    if (r->body)
        memcpy(g->body, r->body, n);
    g->body[n] = '\0';
    g->r.body = NULL;
    g->r.url = NULL;
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

static void close_fetcher(uv_loop_t *loop, fetch_t *f)
{
    int closed = 0;
    fetch_close(f, on_closed, &closed);
    uv_run(loop, UV_RUN_DEFAULT);
    ASSERT_EQ(closed, 1);
}

/* Runs one fetch to completion on a fresh loop; the callback must not fire synchronously. */
static void run_one(const fetch_req_t *req, got_t *g)
{
    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    fetch_t *f;
    ASSERT_EQ(fetch_new(&f, &loop), 0);
    memset(g, 0, sizeof(*g));
    ASSERT_EQ(fetch_start(f, req, on_got, g, NULL), 0);
    ASSERT_EQ(g->calls, 0);
    while (g->calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(g->calls, 1);
    close_fetcher(&loop, f);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

/* A refused port (lab_closed_port: held bound, never listening, so no test beside this one can
 * take it). */
static int closed_port(void)
{
    int port = lab_closed_port();
    ASSERT(port > 0);
    return port;
}

static lab_http_t *srv;
static char base[64];

static void url_of(char *buf, size_t n, const char *path)
{
    snprintf(buf, n, "%s%s", base, path);
}

static void test_200_body(void)
{
    char url[128];
    url_of(url, sizeof(url), "/a.crl");
    lab_http_set(srv, "/a.crl", 200, "hello crl", 9, "application/pkix-crl");
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    got_t g;
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_OK);
    ASSERT_EQ(g.r.http_status, 200);
    ASSERT_EQ(g.r.bytes, 9);
    ASSERT_STREQ(g.body, "hello crl");
    ASSERT_EQ(g.r.resolved, 1);
    ASSERT_EQ(g.r.connected, 1);
    ASSERT_STREQ(g.r.error, "");
}

static void test_404(void)
{
    char url[128];
    url_of(url, sizeof(url), "/missing.crl");
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    got_t g;
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_OK);
    ASSERT_EQ(g.r.http_status, 404);
    ASSERT_EQ(g.r.connected, 1);
}

static void test_refused(void)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/x.crl", closed_port());
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    got_t g;
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_REFUSED);
    ASSERT_EQ(g.r.connected, 0);
    ASSERT_EQ(g.r.http_status, 0);
    ASSERT_CONTAINS(g.r.error, "refused");
}

static void test_override_map(void)
{
    /* A name only the override map knows, on this hop and (below) after a redirect. */
    char url[128], err[256];
    snprintf(url, sizeof(url), "http://crl.lab.test:%d/a.crl", lab_http_port(srv));
    lab_http_set(srv, "/a.crl", 200, "mapped", 6, NULL);
    fs_resolve_t map = {0};
    ASSERT_EQ(fs_resolve_add(&map, "crl.lab.test", "127.0.0.1", err), 0);
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    req.resolve = &map;
    req.dns_override_only = 1;
    req.source_addr = "127.0.0.1";
    got_t g;
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_OK);
    ASSERT_EQ(g.r.http_status, 200);
    ASSERT_STREQ(g.body, "mapped");
    fs_resolve_free(&map);
}

static void test_unresolvable(void)
{
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = "http://crl.nowhere.invalid/x.crl";
    req.dns_override_only = 1;
    got_t g;
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_DNS);
    ASSERT_EQ(g.r.resolved, 0);
    ASSERT_EQ(g.r.connected, 0);
    ASSERT_CONTAINS(g.r.error, "could not resolve host \"crl.nowhere.invalid\"");

    /* A proxy name obeys the same rule. */
    char url[128];
    url_of(url, sizeof(url), "/a.crl");
    req.url = url;
    req.proxy = "http://proxy.nowhere.invalid:3128";
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_DNS);
    ASSERT_CONTAINS(g.r.error, "proxy");
}

static void test_proxy(void)
{
    /* The lab server plays the proxy: it sees the absolute URL as the request target. The
     * target's name is the proxy's business; the proxy's own name obeys the override map. */
    char proxy[128], err[256];
    snprintf(proxy, sizeof(proxy), "http://proxy.lab.test:%d", lab_http_port(srv));
    lab_http_set(srv, "http://crl.remote.test/p.crl", 200, "via proxy", 9, NULL);
    fs_resolve_t map = {0};
    ASSERT_EQ(fs_resolve_add(&map, "proxy.lab.test", "127.0.0.1", err), 0);
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = "http://crl.remote.test/p.crl";
    req.proxy = proxy;
    req.resolve = &map;
    req.dns_override_only = 1;
    got_t g;
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_OK);
    ASSERT_EQ(g.r.http_status, 200);
    ASSERT_STREQ(g.body, "via proxy");
    ASSERT_EQ(lab_http_hits(srv, "http://crl.remote.test/p.crl"), 1);
    fs_resolve_free(&map);
}

/* A proxy with credentials (issue 15.10): curl gets them and sends Proxy-Authorization Basic;
 * no failure message ever quotes the password. */
static void test_proxy_credentials(void)
{
    char proxy[160], auth[128], err[256];
    lab_http_set(srv, "http://crl.remote.test/auth.crl", 200, "authenticated", 13, NULL);
    fs_resolve_t map = {0};
    ASSERT_EQ(fs_resolve_add(&map, "proxy.lab.test", "127.0.0.1", err), 0);
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = "http://crl.remote.test/auth.crl";
    req.proxy = proxy;
    req.resolve = &map;
    req.dns_override_only = 1;
    got_t g;

    snprintf(proxy, sizeof(proxy), "http://user:s3cret@proxy.lab.test:%d", lab_http_port(srv));
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_OK);
    ASSERT_STREQ(g.body, "authenticated");
    ASSERT(lab_http_proxy_auth(srv, "http://crl.remote.test/auth.crl", auth, sizeof(auth)));
    ASSERT_STREQ(auth, "Basic dXNlcjpzM2NyZXQ="); /* base64("user:s3cret") */

    /* Percent-encoded as RFC 3986 wants: curl decodes it, "p@ss:w" goes out. */
    snprintf(proxy, sizeof(proxy), "http://user:p%%40ss%%3Aw@proxy.lab.test:%d",
             lab_http_port(srv));
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_OK);
    ASSERT(lab_http_proxy_auth(srv, "http://crl.remote.test/auth.crl", auth, sizeof(auth)));
    ASSERT_STREQ(auth, "Basic dXNlcjpwQHNzOnc="); /* base64("user:p@ss:w") */

    /* Without credentials, none are sent. */
    snprintf(proxy, sizeof(proxy), "http://proxy.lab.test:%d", lab_http_port(srv));
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_OK);
    ASSERT(!lab_http_proxy_auth(srv, "http://crl.remote.test/auth.crl", auth, sizeof(auth)));

    /* Failures name the proxy, never the password. */
    snprintf(proxy, sizeof(proxy), "http://user:s3cret@127.0.0.1:%d", closed_port());
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_REFUSED);
    ASSERT_CONTAINS(g.r.error, "connection refused by proxy 127.0.0.1");
    ASSERT(strstr(g.r.error, "s3cret") == NULL);
    snprintf(proxy, sizeof(proxy), "http://user:s3cret@proxy.lab.test:99999");
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_URL);
    ASSERT_CONTAINS(g.r.error, "\"http://user:***@proxy.lab.test:99999\": invalid port");
    ASSERT(strstr(g.r.error, "s3cret") == NULL);
    snprintf(proxy, sizeof(proxy), "http://user:s3/cret@proxy.lab.test:3128");
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_URL);
    ASSERT_CONTAINS(g.r.error, "percent-encoded");
    ASSERT(strstr(g.r.error, "s3") == NULL);
    snprintf(proxy, sizeof(proxy), "http://user:s3cret@nowhere.invalid:3128");
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_DNS);
    ASSERT_CONTAINS(g.r.error, "could not resolve proxy \"nowhere.invalid\"");
    fs_resolve_free(&map);
}

static void test_unsupported_scheme(void)
{
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = "ldap:///CN=Lab%20Issuing%20CA,CN=CDP,DC=corp?certificateRevocationList";
    got_t g;
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_SCHEME);
    ASSERT_CONTAINS(g.r.error, "\"ldap\"");
    req.url = "https://127.0.0.1/x.crl";
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_SCHEME);
    req.url = "not a url";
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_URL);
}

static void test_stall_timeout(void)
{
    char url[128];
    url_of(url, sizeof(url), "/stall.crl");
    lab_http_set_special(srv, "/stall.crl", LAB_HTTP_STALL);
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    req.timeout_ms = 600;
    got_t g;
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_TIMEOUT);
    ASSERT_EQ(g.r.connected, 1);
    ASSERT_EQ(g.r.http_status, 0);
    ASSERT(g.r.time_ms >= 500);
    ASSERT_CONTAINS(g.r.error, "timed out");
}

static void test_endless_capped(void)
{
    char url[128];
    url_of(url, sizeof(url), "/endless.crl");
    lab_http_set_special(srv, "/endless.crl", LAB_HTTP_ENDLESS);
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    req.max_bytes = 1 << 20;
    req.timeout_ms = 30000;
    got_t g;
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_TOO_BIG);
    ASSERT(g.r.bytes <= (size_t)1 << 20);
    ASSERT(g.r.bytes > 0);
    ASSERT_CONTAINS(g.r.error, "over size cap");
}

static void test_content_length_over_cap(void)
{
    static char big[4096];
    memset(big, 'x', sizeof(big));
    lab_http_set(srv, "/big.crl", 200, big, sizeof(big), NULL);
    char url[128];
    url_of(url, sizeof(url), "/big.crl");
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    req.max_bytes = 1000;
    got_t g;
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_TOO_BIG);
    ASSERT(g.r.bytes <= 1000);
    /* Exactly at the cap is fine. */
    req.max_bytes = sizeof(big);
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_OK);
    ASSERT_EQ(g.r.bytes, sizeof(big));
}

static void test_trickle_timeout(void)
{
    char url[128];
    url_of(url, sizeof(url), "/trickle.crl");
    lab_http_set_special(srv, "/trickle.crl", LAB_HTTP_TRICKLE);
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    req.timeout_ms = 1300;
    got_t g;
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_TIMEOUT);
    ASSERT_EQ(g.r.http_status, 200);
    ASSERT(g.r.bytes < 10);
}

static void test_reset(void)
{
    char url[128];
    url_of(url, sizeof(url), "/reset.crl");
    lab_http_set_special(srv, "/reset.crl", LAB_HTTP_RESET);
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    got_t g;
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_RECV);
    ASSERT_EQ(g.r.http_status, 0);
}

/* ---- redirects: the lab server serves no Location header, so a tiny MHD server here does --- */

static enum MHD_Result redir_handler(void *cls, struct MHD_Connection *c, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_size, void **state)
{
    int port = *(int *)cls;
    char loc[256];
    int status = 302;
    if (strcmp(url, "/loop") == 0)
        snprintf(loc, sizeof(loc), "/loop");
    else if (strcmp(url, "/hop") == 0) /* to a name only the override map knows */
        snprintf(loc, sizeof(loc), "http://redir.lab.test:%d/final", port);
    else if (strcmp(url, "/away") == 0)
        snprintf(loc, sizeof(loc), "http://elsewhere.invalid/final");
    else if (strcmp(url, "/ldap") == 0)
        snprintf(loc, sizeof(loc), "ldap://dc.corp/CN=CDP");
    else
        status = 200;
    struct MHD_Response *r = MHD_create_response_from_buffer(5, "final", MHD_RESPMEM_PERSISTENT);
    if (status != 200)
        MHD_add_response_header(r, "Location", loc);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static void test_redirects(void)
{
    static int port;
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL,
        redir_handler, &port, MHD_OPTION_SOCK_ADDR,
        &(struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)},
        MHD_OPTION_END);
    ASSERT(d != NULL);
    port = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT)->port;
    char url[128], err[256];
    fs_resolve_t map = {0};
    ASSERT_EQ(fs_resolve_add(&map, "redir.lab.test", "127.0.0.1", err), 0);
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    req.resolve = &map;
    req.dns_override_only = 1;
    got_t g;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/loop", port);
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_REDIRECTS);
    ASSERT_EQ(g.r.redirects, 3);
    ASSERT_CONTAINS(g.r.error, "too many redirects");

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hop", port);
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_OK);
    ASSERT_EQ(g.r.http_status, 200);
    ASSERT_EQ(g.r.redirects, 1);
    ASSERT_STREQ(g.body, "final");

    req.max_redirects = 0; /* the 302 itself is the answer */
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_REDIRECTS);
    req.max_redirects = 3;

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/away", port);
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_DNS);

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/ldap", port);
    run_one(&req, &g);
    ASSERT_EQ(g.r.err, FETCH_ERR_SCHEME);

    fs_resolve_free(&map);
    MHD_stop_daemon(d);
}

/* ---- cancel and close --------------------------------------------------------------------- */

typedef struct cancel_ctx_s {
    fetch_job_t *job;
    int fired;
} cancel_ctx_t;

static void on_cancel_timer(uv_timer_t *t)
{
    cancel_ctx_t *c = t->data;
    fetch_cancel(c->job);
    c->fired = 1;
    uv_close((uv_handle_t *)t, NULL);
}

static void on_noop_timer(uv_timer_t *t) {}

static void test_cancel(void)
{
    char url[128];
    url_of(url, sizeof(url), "/stall.crl");
    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    fetch_t *f;
    ASSERT_EQ(fetch_new(&f, &loop), 0);
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    req.timeout_ms = 2000;
    got_t g = {0}, g2 = {0}, g3 = {0};
    cancel_ctx_t c = {0};
    ASSERT_EQ(fetch_start(f, &req, on_got, &g, &c.job), 0);

    /* A job with a deferred result, cancelled before the loop runs. */
    fetch_job_t *j2;
    req.url = "ldap://dc.corp/CN=CDP";
    ASSERT_EQ(fetch_start(f, &req, on_got, &g2, &j2), 0);
    fetch_cancel(j2);

    /* A job that is never cancelled still completes. */
    char ok[128];
    url_of(ok, sizeof(ok), "/a.crl");
    req.url = ok;
    ASSERT_EQ(fetch_start(f, &req, on_got, &g3, NULL), 0);

    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = &c;
    uv_timer_start(&t, on_cancel_timer, 200, 0);
    while (!c.fired || g3.calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    /* Give a cancelled transfer's late events a chance to (wrongly) fire. */
    uv_timer_t wait;
    uv_timer_init(&loop, &wait);
    uv_timer_start(&wait, on_noop_timer, 300, 0);
    uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wait, NULL);
    ASSERT_EQ(g.calls, 0);
    ASSERT_EQ(g2.calls, 0);
    ASSERT_EQ(g3.calls, 1);
    ASSERT_EQ(g3.r.err, FETCH_OK);
    close_fetcher(&loop, f);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

static void test_close_with_jobs_in_flight(void)
{
    char url[128];
    url_of(url, sizeof(url), "/stall.crl");
    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    fetch_t *f;
    ASSERT_EQ(fetch_new(&f, &loop), 0);
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    got_t g[8] = {0};
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(fetch_start(f, &req, on_got, &g[i], NULL), 0);
    for (int i = 0; i < 20; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    close_fetcher(&loop, f);
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(g[i].calls, 0);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

/* A callback that closes the fetcher: teardown waits until the callback returns. */
typedef struct closer_s {
    fetch_t *f;
    int calls, closed;
} closer_t;

static void on_got_then_close(void *arg, const fetch_result_t *r)
{
    closer_t *c = arg;
    c->calls++;
    fetch_close(c->f, on_closed, &c->closed);
}

static void test_close_from_callback(void)
{
    char url[128], stall[128];
    url_of(url, sizeof(url), "/a.crl");
    url_of(stall, sizeof(stall), "/stall.crl");
    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    closer_t c = {0};
    ASSERT_EQ(fetch_new(&c.f, &loop), 0);
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    got_t g = {0};
    ASSERT_EQ(fetch_start(c.f, &req, on_got_then_close, &c, NULL), 0);
    req.url = stall;
    ASSERT_EQ(fetch_start(c.f, &req, on_got, &g, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(c.calls, 1);
    ASSERT_EQ(c.closed, 1);
    ASSERT_EQ(g.calls, 0);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

static void test_many_concurrent(void)
{
    enum { N = 64 };
    char url[128];
    url_of(url, sizeof(url), "/a.crl");
    lab_http_set(srv, "/a.crl", 200, "hello crl", 9, NULL);
    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    fetch_t *f;
    ASSERT_EQ(fetch_new(&f, &loop), 0);
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    static got_t g[N];
    memset(g, 0, sizeof(g));
    for (int i = 0; i < N; i++)
        ASSERT_EQ(fetch_start(f, &req, on_got, &g[i], NULL), 0);
    int done = 0;
    while (done < N) {
        uv_run(&loop, UV_RUN_ONCE);
        done = 0;
        for (int i = 0; i < N; i++)
            done += g[i].calls;
    }
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(g[i].calls, 1);
        ASSERT_EQ(g[i].r.http_status, 200);
        ASSERT_STREQ(g[i].body, "hello crl");
    }
    close_fetcher(&loop, f);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

static void test_sync_errors(void)
{
    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    fetch_t *f;
    ASSERT_EQ(fetch_new(&f, &loop), 0);
    fetch_req_t req;
    fetch_req_init(&req);
    got_t g = {0};
    ASSERT_EQ(fetch_start(f, &req, on_got, &g, NULL), UV_EINVAL);
    req.url = "http://127.0.0.1/";
    req.source_addr = "eth0";
    ASSERT_EQ(fetch_start(f, &req, on_got, &g, NULL), UV_EINVAL);
    close_fetcher(&loop, f);
    ASSERT_EQ(g.calls, 0);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

/* The largest held figure seen, sampled every millisecond while jobs run. */
static size_t g_max_held;

static void on_sample(uv_timer_t *t)
{
    fetch_inflight_t fi;
    fetch_inflight(&fi);
    if (fi.held > g_max_held)
        g_max_held = fi.held;
}

/* Runs n jobs of req on one fetcher to completion, sampling the bytes held. */
static void run_many(const fetch_req_t *req, got_t *g, int n)
{
    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    fetch_t *f;
    ASSERT_EQ(fetch_new(&f, &loop), 0);
    uv_timer_t sample;
    uv_timer_init(&loop, &sample);
    uv_timer_start(&sample, on_sample, 1, 1);
    g_max_held = 0;
    memset(g, 0, sizeof(*g) * (size_t)n);
    for (int i = 0; i < n; i++)
        ASSERT_EQ(fetch_start(f, req, on_got, &g[i], NULL), 0);
    for (int done = 0; done < n;) {
        uv_run(&loop, UV_RUN_ONCE);
        done = 0;
        for (int i = 0; i < n; i++)
            done += g[i].calls;
    }
    uv_close((uv_handle_t *)&sample, NULL);
    close_fetcher(&loop, f);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

/* The process-wide budget of bytes in flight: eight 700 KB bodies against a 1 MiB budget all
 * arrive whole (they wait their turn, paused or queued: nothing is dropped), held bytes stay
 * under the budget plus one body, and everything is given back. Endless bodies against the
 * same budget end on their own cap or timeout, never past budget plus one body. A job that
 * cannot start within its timeout says it waited for the budget. */
static void test_inflight_budget(void)
{
    enum { N = 8, BODY = 512 * 1024 };
    size_t budget = (size_t)1 << 20;
    fetch_inflight_t fi0, fi;
    fetch_inflight(&fi0);
    ASSERT_EQ(fi0.limit, FETCH_DEFAULT_INFLIGHT_BYTES);
    ASSERT_EQ(fi0.held, 0);
    fetch_set_inflight_limit(budget);

    /* eight 512 KiB bodies sent in 16 KiB steps, so they overlap */
    char url[128];
    url_of(url, sizeof(url), "/crl-slow");
    lab_http_set_special(srv, "/crl-slow", LAB_HTTP_SLOW_BODY);
    fetch_req_t req;
    fetch_req_init(&req);
    req.url = url;
    req.max_bytes = (size_t)1 << 20;
    req.timeout_ms = 30000;
    static got_t g[N];
    run_many(&req, g, N);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(g[i].r.err, FETCH_OK);
        ASSERT_EQ(g[i].r.bytes, BODY);
        ASSERT(strncmp(g[i].body, "abcdefghijklmnopqrstuvwxyzab", 28) == 0);
    }
    fetch_inflight(&fi);
    fprintf(stderr, "   8 x 512 KiB: at most %zu bytes held, %llu jobs waited\n", g_max_held,
            (unsigned long long)(fi.waited_total - fi0.waited_total));
    ASSERT(g_max_held <= budget + req.max_bytes);
    ASSERT(fi.waited_total > fi0.waited_total);
    ASSERT_EQ(fi.held, 0);
    ASSERT_EQ(fi.waiting, 0);

    /* endless bodies: each ends at its 4 MiB cap or its timeout */
    url_of(url, sizeof(url), "/endless-budget");
    lab_http_set_special(srv, "/endless-budget", LAB_HTTP_ENDLESS);
    req.max_bytes = (size_t)4 << 20;
    req.timeout_ms = 1500;
    run_many(&req, g, 4);
    for (int i = 0; i < 4; i++)
        ASSERT(g[i].r.err == FETCH_ERR_TOO_BIG || g[i].r.err == FETCH_ERR_TIMEOUT);
    fprintf(stderr, "   4 endless: at most %zu bytes held\n", g_max_held);
    ASSERT(g_max_held <= budget + req.max_bytes);
    fetch_inflight(&fi);
    ASSERT_EQ(fi.held, 0);
    ASSERT_EQ(fi.waiting, 0);

    /* a body that stops after 256 KiB holds the budget (and the exemption): the next job
     * waits, then fails on its own timeout saying why */
    url_of(url, sizeof(url), "/partial-budget");
    lab_http_set_special(srv, "/partial-budget", LAB_HTTP_PARTIAL_STALL);
    fetch_set_inflight_limit(64 * 1024);
    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    fetch_t *f;
    ASSERT_EQ(fetch_new(&f, &loop), 0);
    got_t hog = {0}, late = {0};
    req.timeout_ms = 1500;
    ASSERT_EQ(fetch_start(f, &req, on_got, &hog, NULL), 0);
    while (fetch_inflight(&fi), fi.held < 128 * 1024)
        uv_run(&loop, UV_RUN_ONCE);
    req.timeout_ms = 300;
    ASSERT_EQ(fetch_start(f, &req, on_got, &late, NULL), 0);
    while (late.calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(late.r.err, FETCH_ERR_TIMEOUT);
    ASSERT_CONTAINS(late.r.error, "in-flight budget");
    ASSERT_EQ(late.r.connected, 0);
    while (hog.calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(hog.r.err, FETCH_ERR_TIMEOUT);
    ASSERT(hog.r.bytes >= 128 * 1024);
    close_fetcher(&loop, f);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    fetch_inflight(&fi);
    ASSERT_EQ(fi.held, 0);
    fetch_set_inflight_limit(0);
}

int main(void)
{
    char err[256];
    srv = lab_http_start(err);
    ASSERT(srv != NULL);
    snprintf(base, sizeof(base), "http://127.0.0.1:%d", lab_http_port(srv));
    RUN(test_200_body);
    RUN(test_404);
    RUN(test_refused);
    RUN(test_override_map);
    RUN(test_unresolvable);
    RUN(test_proxy);
    RUN(test_proxy_credentials);
    RUN(test_unsupported_scheme);
    RUN(test_stall_timeout);
    RUN(test_endless_capped);
    RUN(test_content_length_over_cap);
    RUN(test_trickle_timeout);
    RUN(test_reset);
    RUN(test_redirects);
    RUN(test_cancel);
    RUN(test_close_with_jobs_in_flight);
    RUN(test_close_from_callback);
    RUN(test_many_concurrent);
    RUN(test_sync_errors);
    RUN(test_inflight_budget);
    lab_http_stop(srv);
    return 0;
}
