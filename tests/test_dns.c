/* test_dns.c - probes/dns.c, the resolve cache, against a real DNS server on loopback (the lab's,
 * named explicitly: the system's name servers are never asked): the whole answer, single
 * flight, TTLs and their bounds, negative caching, timeouts, cancel and close; the system
 * configuration path with "localhost" (never sent to a name server) and, inside a network
 * namespace of its own (unshare -n), a failing system lookup. */
#include "lab/dnsserver.h"
#include "probes/dns.h"
#include "probes/util.h"
#include "tests/test.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static uv_loop_t loop;
static lab_dns_t *srv;

typedef struct waiter_s {
    dns_req_t req;
    int done;
    dns_answer_t a;
} waiter_t;

static void on_answer(dns_req_t *req, const dns_answer_t *a)
{
    waiter_t *w = req->data;
    w->done++;
    w->a = *a;
}

/* Resolves and, when the answer is not immediate, runs the loop until it comes. Returns the rc
 * of dns_resolve. */
static int resolve_now(dns_cache_t *c, const char *host, const char *view, dns_answer_t *out)
{
    waiter_t w = {.req = {.data = &w}};
    int rc = dns_resolve(c, &w.req, host, view, out, on_answer);
    if (rc == DNS_PENDING) {
        while (!w.done)
            uv_run(&loop, UV_RUN_ONCE);
        ASSERT_EQ(w.done, 1);
        *out = w.a;
    }
    return rc;
}

static dns_cache_t *lab_cache(uint32_t min_ttl, uint32_t max_ttl, uint32_t neg_ttl,
                              uint32_t timeout_ms)
{
    char servers[64];
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", lab_dns_port(srv));
    dns_opts_t o = {.min_ttl_s = min_ttl,
                    .max_ttl_s = max_ttl,
                    .negative_ttl_s = neg_ttl,
                    .timeout_ms = timeout_ms,
                    .servers = servers};
    dns_cache_t *c = NULL;
    ASSERT_EQ(dns_cache_new(&c, &loop, &o), 0);
    return c;
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

static void close_cache(dns_cache_t *c)
{
    int closed = 0;
    dns_cache_close(c, on_closed, &closed);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(closed, 1);
}

static void sleep_ms(unsigned ms)
{
    usleep(ms * 1000);
    uv_update_time(&loop);
}

/* 50 requests for one name while its lookup is in flight: one lookup (an A and an AAAA query),
 * every request gets every address; then the cache answers; another view looks up again. */
static void test_single_flight_whole_answer(void)
{
    char err[256];
    ASSERT_EQ(
        lab_dns_set(srv, "farm.lab.test", LAB_DNS_ANSWER, 60, "127.0.0.1,127.0.0.2,::1", 200, err),
        0);
    dns_cache_t *c = lab_cache(0, 0, 0, 2000);
    waiter_t w[50];
    dns_answer_t now;
    for (int i = 0; i < 50; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].req.data = &w[i];
        ASSERT_EQ(dns_resolve(c, &w[i].req, "FARM.lab.test", "view-a", &now, on_answer),
                  DNS_PENDING);
    }
    dns_stats_t st;
    dns_cache_stats(c, &st);
    ASSERT_EQ(st.lookups, 1);
    ASSERT_EQ(st.joined, 49);
    ASSERT_EQ(st.in_flight, 1);
    while (w[49].done == 0)
        uv_run(&loop, UV_RUN_ONCE);
    for (int i = 0; i < 50; i++) {
        ASSERT_EQ(w[i].done, 1);
        ASSERT_EQ(w[i].a.status, 0);
        ASSERT_EQ(w[i].a.addrs.n, 3);
        ASSERT_EQ(w[i].a.from_cache, 0);
        ASSERT_EQ(w[i].a.ttl_s, 60);
    }
    int seen1 = 0, seen2 = 0, seen6 = 0;
    for (size_t i = 0; i < 3; i++) {
        seen1 += strcmp(w[0].a.addrs.a[i], "127.0.0.1") == 0;
        seen2 += strcmp(w[0].a.addrs.a[i], "127.0.0.2") == 0;
        seen6 += strcmp(w[0].a.addrs.a[i], "::1") == 0;
    }
    ASSERT(seen1 == 1 && seen2 == 1 && seen6 == 1);
    ASSERT_EQ(lab_dns_queries(srv, "farm.lab.test"), 2); /* A and AAAA, once */

    ASSERT_EQ(resolve_now(c, "farm.lab.test", "view-a", &now), 0);
    ASSERT_EQ(now.status, 0);
    ASSERT_EQ(now.from_cache, 1);
    ASSERT_EQ(now.addrs.n, 3);
    ASSERT_EQ(lab_dns_queries(srv, "farm.lab.test"), 2);

    ASSERT_EQ(resolve_now(c, "farm.lab.test", "view-b", &now), DNS_PENDING);
    ASSERT_EQ(now.status, 0);
    ASSERT_EQ(now.from_cache, 0);
    ASSERT_EQ(lab_dns_queries(srv, "farm.lab.test"), 4);

    /* The client's round robin, per (name, view). */
    ASSERT_EQ(dns_next_index(c, "farm.lab.test", "view-a"), 0);
    ASSERT_EQ(dns_next_index(c, "farm.lab.test", "view-a"), 1);
    ASSERT_EQ(dns_next_index(c, "FARM.lab.test", "view-a"), 2);
    ASSERT_EQ(dns_next_index(c, "farm.lab.test", "view-b"), 0);
    dns_cache_stats(c, &st);
    ASSERT_EQ(st.lookups, 2);
    ASSERT_EQ(st.hits, 1);
    ASSERT_EQ(st.entries, 2);
    close_cache(c);
}

/* The answer is kept for its TTL within [min, max]: 0 becomes the minimum, a day the maximum;
 * once it expires the next request asks again. */
static void test_ttl(void)
{
    char err[256];
    dns_answer_t a;
    ASSERT_EQ(lab_dns_set(srv, "ttl0.lab.test", LAB_DNS_ANSWER, 0, "127.0.0.1", 0, err), 0);
    ASSERT_EQ(lab_dns_set(srv, "day.lab.test", LAB_DNS_ANSWER, 86400, "127.0.0.1", 0, err), 0);
    ASSERT_EQ(lab_dns_set(srv, "short.lab.test", LAB_DNS_ANSWER, 1, "127.0.0.3", 0, err), 0);
    dns_cache_t *c = lab_cache(0, 0, 0, 2000); /* defaults: 5 s .. 300 s */
    ASSERT_EQ(resolve_now(c, "ttl0.lab.test", NULL, &a), DNS_PENDING);
    ASSERT_EQ(a.ttl_s, 5);
    ASSERT_EQ(resolve_now(c, "day.lab.test", NULL, &a), DNS_PENDING);
    ASSERT_EQ(a.ttl_s, 300);
    close_cache(c);

    c = lab_cache(1, 2, 0, 2000);
    ASSERT_EQ(resolve_now(c, "short.lab.test", "v", &a), DNS_PENDING);
    ASSERT_EQ(a.ttl_s, 1);
    ASSERT_STREQ(a.addrs.a[0], "127.0.0.3");
    unsigned q = lab_dns_queries(srv, "short.lab.test");
    ASSERT_EQ(resolve_now(c, "short.lab.test", "v", &a), 0); /* fresh */
    ASSERT_EQ(lab_dns_queries(srv, "short.lab.test"), q);
    /* The record changes at the server; the cache keeps the old one until it expires. */
    ASSERT_EQ(lab_dns_set(srv, "short.lab.test", LAB_DNS_ANSWER, 1, "127.0.0.4", 0, err), 0);
    ASSERT_EQ(resolve_now(c, "short.lab.test", "v", &a), 0);
    ASSERT_STREQ(a.addrs.a[0], "127.0.0.3");
    sleep_ms(1100);
    ASSERT_EQ(resolve_now(c, "short.lab.test", "v", &a), DNS_PENDING);
    ASSERT_STREQ(a.addrs.a[0], "127.0.0.4");
    ASSERT_EQ(lab_dns_queries(srv, "short.lab.test"), q + 2);
    close_cache(c);
}

/* Failures are remembered negative_ttl_s: NXDOMAIN, SERVFAIL, a silent server (its lookup ends
 * after the cache's timeout). */
static void test_negative(void)
{
    char err[256];
    dns_answer_t a;
    ASSERT_EQ(lab_dns_set(srv, "gone.lab.test", LAB_DNS_NXDOMAIN, 0, NULL, 0, err), 0);
    ASSERT_EQ(lab_dns_set(srv, "broken.lab.test", LAB_DNS_SERVFAIL, 0, NULL, 0, err), 0);
    ASSERT_EQ(lab_dns_set(srv, "silent.lab.test", LAB_DNS_DROP, 0, NULL, 0, err), 0);
    ASSERT_EQ(lab_dns_set(srv, "v6only.lab.test", LAB_DNS_ANSWER, 60, "::1", 0, err), 0);
    dns_cache_t *c = lab_cache(0, 0, 1, 300);
    ASSERT_EQ(resolve_now(c, "gone.lab.test", NULL, &a), DNS_PENDING);
    ASSERT_EQ(a.status, UV_EAI_NONAME);
    ASSERT_EQ(a.ttl_s, 1);
    fprintf(stderr, "   gone: %s\n", a.error);
    unsigned q = lab_dns_queries(srv, "gone.lab.test");
    ASSERT_EQ(resolve_now(c, "gone.lab.test", NULL, &a), 0);
    ASSERT_EQ(a.status, UV_EAI_NONAME);
    ASSERT_EQ(a.from_cache, 1);
    ASSERT_EQ(lab_dns_queries(srv, "gone.lab.test"), q);

    ASSERT_EQ(resolve_now(c, "broken.lab.test", NULL, &a), DNS_PENDING);
    ASSERT(a.status < 0);
    fprintf(stderr, "   broken: %s (%s)\n", a.error, uv_err_name(a.status));

    /* Only an AAAA record: an address is an address. */
    ASSERT_EQ(resolve_now(c, "v6only.lab.test", NULL, &a), DNS_PENDING);
    ASSERT_EQ(a.status, 0);
    ASSERT_EQ(a.addrs.n, 1);
    ASSERT_STREQ(a.addrs.a[0], "::1");

    waiter_t w[3];
    for (int i = 0; i < 3; i++) {
        memset(&w[i], 0, sizeof(w[i]));
        w[i].req.data = &w[i];
        ASSERT_EQ(dns_resolve(c, &w[i].req, "silent.lab.test", NULL, &a, on_answer), DNS_PENDING);
    }
    uint64_t t0 = uv_hrtime();
    while (!w[2].done)
        uv_run(&loop, UV_RUN_ONCE);
    uint64_t ms = (uv_hrtime() - t0) / 1000000;
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(w[i].done, 1);
        ASSERT_EQ(w[i].a.status, UV_EAI_AGAIN);
    }
    fprintf(stderr, "   silent: %s after %llu ms\n", w[0].a.error, (unsigned long long)ms);
    ASSERT_EQ(lab_dns_queries(srv, "silent.lab.test"), 4); /* A and AAAA, two tries each */
    ASSERT_EQ(resolve_now(c, "silent.lab.test", NULL, &a), 0);
    ASSERT_EQ(a.status, UV_EAI_AGAIN);

    sleep_ms(1100); /* negative_ttl_s = 1 */
    ASSERT_EQ(resolve_now(c, "gone.lab.test", NULL, &a), DNS_PENDING);
    ASSERT(lab_dns_queries(srv, "gone.lab.test") > q);
    dns_stats_t st;
    dns_cache_stats(c, &st);
    ASSERT_EQ(st.negative_hits, 2);
    ASSERT_EQ(st.failures, 4);
    close_cache(c);
}

static void on_never(dns_req_t *req, const dns_answer_t *a)
{
    (void)req;
    (void)a;
    ASSERT(!"a cancelled request was answered");
}

/* A cancelled request is never answered, the lookup still fills the cache; closing the cache
 * with requests waiting answers none of them and leaves no handle behind. */
static void test_cancel_and_close(void)
{
    char err[256];
    dns_answer_t a;
    ASSERT_EQ(lab_dns_set(srv, "slow.lab.test", LAB_DNS_ANSWER, 60, "127.0.0.5", 100, err), 0);
    dns_cache_t *c = lab_cache(0, 0, 0, 2000);
    dns_req_t gone = {0};
    waiter_t stay = {.req = {.data = &stay}};
    ASSERT_EQ(dns_resolve(c, &gone, "slow.lab.test", NULL, &a, on_never), DNS_PENDING);
    ASSERT_EQ(dns_resolve(c, &stay.req, "slow.lab.test", NULL, &a, on_answer), DNS_PENDING);
    dns_cancel(&gone);
    dns_cancel(&gone); /* not waiting any more: left alone */
    while (!stay.done)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(stay.a.status, 0);
    ASSERT_EQ(resolve_now(c, "slow.lab.test", NULL, &a), 0);
    ASSERT_STREQ(a.addrs.a[0], "127.0.0.5");

    dns_req_t r1 = {0}, r2 = {0};
    ASSERT_EQ(dns_resolve(c, &r1, "slow.lab.test", "other", &a, on_never), DNS_PENDING);
    ASSERT_EQ(dns_resolve(c, &r2, "farm.lab.test", "other", &a, on_never), DNS_PENDING);
    close_cache(c);
}

/* Closing from inside an answer's callback waits until c-ares has returned. */
static dns_cache_t *closing_cache;
static int closing_done;

static void on_answer_close(dns_req_t *req, const dns_answer_t *a)
{
    (void)a;
    ((waiter_t *)req->data)->done++;
    dns_cache_close(closing_cache, on_closed, &closing_done);
}

static void test_close_from_callback(void)
{
    dns_answer_t a;
    closing_cache = lab_cache(0, 0, 0, 2000);
    waiter_t w1 = {.req = {.data = &w1}}, w2 = {.req = {.data = &w2}};
    ASSERT_EQ(dns_resolve(closing_cache, &w1.req, "farm.lab.test", "cb", &a, on_answer_close),
              DNS_PENDING);
    ASSERT_EQ(dns_resolve(closing_cache, &w2.req, "farm.lab.test", "cb", &a, on_answer_close),
              DNS_PENDING);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(w1.done + w2.done, 1); /* the first answered closed the cache for the other */
    ASSERT_EQ(closing_done, 1);
}

/* The system's configuration: "localhost" is answered without a name server (c-ares reads
 * /etc/hosts and, per RFC 6761, never sends localhost to DNS). */
static void test_system_localhost(void)
{
    dns_cache_t *c = NULL;
    dns_answer_t a;
    ASSERT_EQ(dns_cache_new(&c, &loop, NULL), 0);
    int rc = resolve_now(c, "localhost", NULL, &a);
    ASSERT(rc == 0 || rc == DNS_PENDING);
    ASSERT_EQ(a.status, 0);
    ASSERT(a.addrs.n >= 1);
    int loopback = 0;
    for (size_t i = 0; i < a.addrs.n; i++) {
        fprintf(stderr, "   localhost -> %s\n", a.addrs.a[i]);
        loopback |= strncmp(a.addrs.a[i], "127.", 4) == 0 || strcmp(a.addrs.a[i], "::1") == 0;
    }
    ASSERT(loopback);
    ASSERT_EQ(a.ttl_s, 5); /* hosts-file answers have no TTL: the minimum */
    ASSERT_EQ(resolve_now(c, "localhost", NULL, &a), 0);
    ASSERT_EQ(a.from_cache, 1);
    close_cache(c);
}

/* In a network namespace without interfaces: the system resolver's name servers are
 * unreachable, the lookup fails at once and the failure is remembered. */
static int netns_child(void)
{
    dns_cache_t *c = NULL;
    dns_answer_t a;
    ASSERT(uv_loop_init(&loop) == 0);
    ASSERT_EQ(dns_cache_new(&c, &loop, NULL), 0);
    int rc = resolve_now(c, "fleetscan-test.invalid", "netns", &a);
    ASSERT(rc == 0 || rc == DNS_PENDING);
    ASSERT(a.status < 0);
    fprintf(stderr, "   fleetscan-test.invalid: %s (%s)\n", a.error, uv_err_name(a.status));
    ASSERT_EQ(resolve_now(c, "fleetscan-test.invalid", "netns", &a), 0);
    ASSERT(a.status < 0);
    ASSERT_EQ(a.from_cache, 1);
    dns_stats_t st;
    dns_cache_stats(c, &st);
    ASSERT_EQ(st.lookups, 1);
    ASSERT_EQ(st.negative_hits, 1);
    close_cache(c);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    return 0;
}

static void test_system_failure_in_netns(void)
{
    char self[512], cmd[700];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (geteuid() != 0 || n <= 0 || system("unshare -n true 2>/dev/null") != 0) {
        fprintf(stderr, "   (no unshare -n here: skipped)\n");
        return;
    }
    self[n] = '\0';
    snprintf(cmd, sizeof(cmd), "unshare -n '%s' --netns-child", self);
    int st = system(cmd);
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--netns-child") == 0)
        return netns_child();
    char err[256];
    ASSERT(uv_loop_init(&loop) == 0);
    srv = lab_dns_start(err);
    ASSERT(srv != NULL);
    RUN(test_single_flight_whole_answer);
    RUN(test_ttl);
    RUN(test_negative);
    RUN(test_cancel_and_close);
    RUN(test_close_from_callback);
    RUN(test_system_localhost);
    RUN(test_system_failure_in_netns);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    lab_dns_stop(srv);
    return 0;
}
