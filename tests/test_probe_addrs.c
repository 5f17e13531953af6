/* test_probe_addrs.c - a name with several addresses, the way a client meets a farm: real TLS
 * servers on 127.0.0.1 and 127.0.0.2 sharing a port with different certificates, the round
 * robin across them, failover on a refused or silent address, and names resolved through the
 * resolve cache (the lab's DNS server, or /etc/hosts for localhost). */
#include "lab/dnsserver.h"
#include "lab/scenarios.h"
#include "probes/dns.h"
#include "probes/probe.h"
#include "probes/util.h"
#include "tests/test.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static lab_t lab;
static uv_loop_t loop;
static tlsc_ctx_t *ctx;
static dns_cache_t *dns;
static lab_tls_t *node1, *node2; /* 127.0.0.1:port (good leaf), 127.0.0.2:port (expiring) */
static int port;
static char sha1_good[41], sha1_expiring[41];

typedef struct outcome_s {
    fs_url_t url;
    fs_resolve_t map;
    probe_opts_t o;
    int done;
    probe_t *probe;
    probe_result_t r; /* copied without its chain (capture_chain is off) */
} outcome_t;

static void on_done(probe_t *p, probe_result_t *r, void *arg)
{
    (void)p;
    outcome_t *oc = arg;
    oc->done++;
    oc->r = *r;
    fprintf(stderr, "   %-9s %-7s %-16s %s %s\n", r->addr, r->online ? "online" : "offline",
            r->online ? "" : fs_cause_id(r->cause), r->leaf_sha1, r->message);
}

/* A probe of https://ns.lab.test:port_ with name -> addrs (comma-separated; NULL: no override,
 * through the resolve cache) in view. */
static outcome_t *mk(const char *addrs, int port_, const char *view)
{
    outcome_t *oc = fs_xcalloc(1, sizeof(*oc));
    char buf[256], err[256], list[256];
    snprintf(buf, sizeof(buf), "https://%s:%d", LAB_HOST, port_);
    ASSERT(fs_url_parse(&oc->url, buf, err) == 0);
    if (addrs != NULL) {
        fs_strlcpy(list, addrs, sizeof(list));
        for (char *save = NULL, *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save))
            ASSERT(fs_resolve_add(&oc->map, LAB_HOST, a, err) == 0);
    }
    probe_opts_defaults(&oc->o);
    oc->o.url = &oc->url;
    oc->o.tls = ctx;
    oc->o.resolve = &oc->map;
    oc->o.dns_override_only = addrs != NULL;
    oc->o.dns = dns;
    oc->o.view = view;
    oc->o.capture_chain = 0;
    oc->o.tls_timeout_ms = 2000;
    return oc;
}

static void run(outcome_t *oc)
{
    ASSERT_EQ(probe_start(&oc->probe, &loop, &oc->o, on_done, oc), 0);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(oc->done, 1);
}

static void done(outcome_t *oc)
{
    fs_resolve_free(&oc->map);
    free(oc);
}

/* Two nodes behind one name serve different certificates: consecutive probes alternate between
 * them and each result names its address and leaf thumbprint. */
static void test_round_robin(void)
{
    for (int i = 0; i < 4; i++) {
        outcome_t *oc = mk("127.0.0.1,127.0.0.2", port, "rr");
        run(oc);
        ASSERT(oc->r.online);
        ASSERT_EQ(oc->r.naddrs, 2);
        ASSERT_EQ(oc->r.nattempts, 1);
        ASSERT_STREQ(oc->r.addr, i % 2 ? "127.0.0.2" : "127.0.0.1");
        ASSERT_STREQ(oc->r.leaf_sha1, i % 2 ? sha1_expiring : sha1_good);
        ASSERT_EQ(!!(oc->r.warnings & FS_WARN_BIT(FS_WARN_CERT_EXPIRING_SOON)), i % 2);
        done(oc);
    }
    /* Another view keeps its own counter. */
    outcome_t *oc = mk("127.0.0.1,127.0.0.2", port, "rr-other");
    run(oc);
    ASSERT_STREQ(oc->r.addr, "127.0.0.1");
    done(oc);
    /* Without a cache every probe starts at the first address. */
    for (int i = 0; i < 2; i++) {
        oc = mk("127.0.0.2,127.0.0.1", port, "rr");
        oc->o.dns = NULL;
        run(oc);
        ASSERT_STREQ(oc->r.addr, "127.0.0.2");
        done(oc);
    }
}

/* A refused address falls over to the next one; both refused is connect_refused, with every
 * address in the message. */
static void test_failover_refused(void)
{
    char err[256];
    X509 *inter[1] = {lab.pki.inter.cert};
    lab_tls_opts_t so = {.mode = LAB_TLS_SERVE,
                         .cert = lab.pki.leaf[LAB_LEAF_GOOD].cert,
                         .key = lab.pki.leaf[LAB_LEAF_GOOD].key,
                         .chain = inter,
                         .nchain = 1}; /* 127.0.0.1 only: 127.0.0.2 refuses on its port */
    lab_tls_t *only1 = lab_tls_start(&so, err);
    ASSERT(only1 != NULL);
    outcome_t *oc = mk("127.0.0.2,127.0.0.1", lab_tls_port(only1), "refused");
    run(oc);
    ASSERT(oc->r.online);
    ASSERT_STREQ(oc->r.addr, "127.0.0.1");
    ASSERT_EQ(oc->r.nattempts, 2);
    ASSERT_STREQ(oc->r.attempts[0].addr, "127.0.0.2");
    ASSERT_EQ(oc->r.attempts[0].cause, FS_CAUSE_CONNECT_REFUSED);
    ASSERT_EQ(oc->r.attempts[0].error, UV_ECONNREFUSED);
    ASSERT_STREQ(oc->r.attempts[1].addr, "127.0.0.1");
    ASSERT_EQ(oc->r.attempts[1].cause, FS_CAUSE_NONE);
    ASSERT_STREQ(oc->r.leaf_sha1, sha1_good);
    done(oc);
    /* The next probe of the rotation starts at 127.0.0.1: no failover needed. */
    oc = mk("127.0.0.2,127.0.0.1", lab_tls_port(only1), "refused");
    run(oc);
    ASSERT(oc->r.online);
    ASSERT_EQ(oc->r.nattempts, 1);
    done(oc);
    lab_tls_stop(only1);

    oc = mk("127.0.0.2,127.0.0.1", lab.closed_port, "refused-both");
    run(oc);
    ASSERT(!oc->r.online);
    ASSERT_EQ(oc->r.cause, FS_CAUSE_CONNECT_REFUSED);
    ASSERT_EQ(oc->r.nattempts, 2);
    ASSERT_CONTAINS(oc->r.message, "127.0.0.2 refused, 127.0.0.1 refused");
    ASSERT_EQ(oc->r.leaf_sha1[0], '\0');
    done(oc);
}

/* A silent address (SYNs dropped) costs its share of the connect timeout, then the next
 * address answers: online within the one connect timeout. A silent and a refused address:
 * connect_refused, the first applicable cause in SPEC order. */
static void test_failover_blackhole(void)
{
    int fds[4];
    int hole = lab_blackhole("127.0.0.3", port, fds);
    if (hole != port)
        fprintf(stderr, "blackhole on 127.0.0.3:%d: %s\n", port, strerror(errno));
    ASSERT(hole == port);
    outcome_t *oc = mk("127.0.0.3,127.0.0.1", port, "hole");
    oc->o.connect_timeout_ms = 1000;
    run(oc);
    ASSERT(oc->r.online);
    ASSERT_STREQ(oc->r.addr, "127.0.0.1");
    ASSERT_EQ(oc->r.nattempts, 2);
    ASSERT_EQ(oc->r.attempts[0].cause, FS_CAUSE_CONNECT_TIMEOUT);
    ASSERT_EQ(oc->r.attempts[0].error, UV_ETIMEDOUT);
    ASSERT(oc->r.attempts[0].ms < 1000); /* its share, not the whole connect timeout */
    done(oc);

    oc = mk("127.0.0.3,127.0.0.4", port, "hole-refused");
    oc->o.connect_timeout_ms = 600;
    run(oc);
    ASSERT(!oc->r.online);
    ASSERT_EQ(oc->r.cause, FS_CAUSE_CONNECT_REFUSED);
    ASSERT_CONTAINS(oc->r.message, "127.0.0.3 no answer in");
    ASSERT_CONTAINS(oc->r.message, "127.0.0.4 refused");
    done(oc);

    /* Only silence: connect_timeout, as with one address. */
    oc = mk("127.0.0.3", port, "hole-only");
    oc->o.connect_timeout_ms = 300;
    run(oc);
    ASSERT_EQ(oc->r.cause, FS_CAUSE_CONNECT_TIMEOUT);
    ASSERT_CONTAINS(oc->r.message, "TCP connect to 127.0.0.3 port");
    done(oc);
    for (int i = 0; i < 4; i++)
        close(fds[i]);
}

/* Names the system resolver would answer, here the lab's DNS server through the cache: the
 * whole answer is used (the probes alternate between both A records), ten probes make one
 * lookup, and a lookup slower than the probe's DNS timeout is dns_failure. */
static void test_through_dns(void)
{
    char err[256], servers[64];
    lab_dns_t *ds = lab_dns_start(err);
    ASSERT(ds != NULL);
    ASSERT_EQ(lab_dns_set(ds, LAB_HOST, LAB_DNS_ANSWER, 60, "127.0.0.1,127.0.0.2", 100, err), 0);
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", lab_dns_port(ds));
    dns_opts_t o = {.servers = servers, .timeout_ms = 2000};
    dns_cache_t *saved = dns;
    ASSERT_EQ(dns_cache_new(&dns, &loop, &o), 0);
    outcome_t *oc[10];
    for (int i = 0; i < 10; i++) {
        oc[i] = mk(NULL, port, "dns");
        ASSERT_EQ(probe_start(&oc[i]->probe, &loop, &oc[i]->o, on_done, oc[i]), 0);
    }
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    int on1 = 0, on2 = 0;
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ(oc[i]->done, 1);
        ASSERT(oc[i]->r.online);
        ASSERT_EQ(oc[i]->r.naddrs, 2);
        on1 += strcmp(oc[i]->r.addr, "127.0.0.1") == 0;
        on2 += strcmp(oc[i]->r.addr, "127.0.0.2") == 0;
        done(oc[i]);
    }
    ASSERT_EQ(on1, 5);
    ASSERT_EQ(on2, 5);
    ASSERT_EQ(lab_dns_queries(ds, LAB_HOST), 2); /* one lookup: A and AAAA */

    /* A lookup that outlasts the probe's DNS timeout; the cache still takes its answer. */
    ASSERT_EQ(lab_dns_set(ds, "late.lab.test", LAB_DNS_ANSWER, 60, "127.0.0.1", 600, err), 0);
    outcome_t *late = mk(NULL, port, "dns");
    fs_strlcpy(late->url.host, "late.lab.test", sizeof(late->url.host));
    late->o.dns_timeout_ms = 200;
    run(late);
    ASSERT_EQ(late->r.cause, FS_CAUSE_DNS_FAILURE);
    ASSERT_CONTAINS(late->r.message, "did not answer in");
    done(late);
    dns_stats_t st;
    dns_cache_stats(dns, &st);
    ASSERT_EQ(st.lookups, 2);
    ASSERT_EQ(st.in_flight, 0);

    dns_cache_close(dns, NULL, NULL);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    dns = saved;
    lab_dns_stop(ds);
}

static void on_cancel_timer(uv_timer_t *t)
{
    probe_cancel(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

/* A probe cancelled while its lookup is in flight reports once, cancelled. */
static void test_cancel_while_resolving(void)
{
    char err[256], servers[64];
    lab_dns_t *ds = lab_dns_start(err);
    ASSERT(ds != NULL);
    ASSERT_EQ(lab_dns_set(ds, LAB_HOST, LAB_DNS_ANSWER, 60, "127.0.0.1", 500, err), 0);
    snprintf(servers, sizeof(servers), "127.0.0.1:%d", lab_dns_port(ds));
    dns_opts_t o = {.servers = servers};
    dns_cache_t *saved = dns;
    ASSERT_EQ(dns_cache_new(&dns, &loop, &o), 0);
    outcome_t *oc = mk(NULL, port, "cancel");
    ASSERT_EQ(probe_start(&oc->probe, &loop, &oc->o, on_done, oc), 0);
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = oc->probe;
    uv_timer_start(&t, on_cancel_timer, 50, 0);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(oc->done, 1);
    ASSERT(oc->r.cancelled);
    done(oc);
    dns_cache_close(dns, NULL, NULL);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    dns = saved;
    lab_dns_stop(ds);
}

/* Without a cache a probe makes its own lookup through the system configuration: localhost is
 * answered from /etc/hosts (never sent to a name server). */
static void test_own_lookup(void)
{
    outcome_t *oc = mk(NULL, lab.closed_port, "own");
    fs_strlcpy(oc->url.host, "localhost", sizeof(oc->url.host));
    oc->o.dns = NULL;
    run(oc);
    ASSERT_EQ(oc->r.cause, FS_CAUSE_CONNECT_REFUSED);
    ASSERT(oc->r.naddrs >= 1);
    done(oc);
}

/* Two servers on one port, 127.0.0.1 and 127.0.0.2 (another test may hold the port on .2: try
 * again). */
static void start_nodes(void)
{
    char err[256];
    X509 *inter[1] = {lab.pki.inter.cert};
    for (int tries = 0; tries < 10 && node2 == NULL; tries++) {
        lab_tls_opts_t so = {.mode = LAB_TLS_SERVE,
                             .cert = lab.pki.leaf[LAB_LEAF_GOOD].cert,
                             .key = lab.pki.leaf[LAB_LEAF_GOOD].key,
                             .chain = inter,
                             .nchain = 1,
                             .bind_addr = "127.0.0.1"};
        node1 = lab_tls_start(&so, err);
        ASSERT(node1 != NULL);
        port = lab_tls_port(node1);
        so.cert = lab.pki.leaf[LAB_LEAF_EXPIRING].cert;
        so.key = lab.pki.leaf[LAB_LEAF_EXPIRING].key;
        so.bind_addr = "127.0.0.2";
        so.port = port;
        node2 = lab_tls_start(&so, err);
        if (node2 == NULL) {
            fprintf(stderr, "   %s: another port\n", err);
            lab_tls_stop(node1);
            node1 = NULL;
        }
    }
    ASSERT(node2 != NULL);
    chain_sha1_thumbprint(lab.pki.leaf[LAB_LEAF_GOOD].cert, sha1_good);
    chain_sha1_thumbprint(lab.pki.leaf[LAB_LEAF_EXPIRING].cert, sha1_expiring);
    ASSERT(strcmp(sha1_good, sha1_expiring) != 0);
}

int main(void)
{
    char err[256], path[600];
    ASSERT(lab_start(&lab, err) == 0);
    ASSERT(uv_loop_init(&loop) == 0);
    tlsc_ctx_opts_t o = {.ca_file = lab_file(&lab, "root.pem", path, sizeof(path)),
                         .min_version = TLS1_2_VERSION};
    ASSERT(tlsc_ctx_new(&ctx, &o, err) == 0);
    ASSERT_EQ(dns_cache_new(&dns, &loop, NULL), 0);
    start_nodes();
    RUN(test_round_robin);
    RUN(test_failover_refused);
    RUN(test_failover_blackhole);
    RUN(test_through_dns);
    RUN(test_cancel_while_resolving);
    RUN(test_own_lookup);
    dns_cache_close(dns, NULL, NULL);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    lab_tls_stop(node1);
    lab_tls_stop(node2);
    tlsc_ctx_unref(ctx);
    lab_stop(&lab);
    return 0;
}
