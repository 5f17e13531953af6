/* test_hostile.c - the probe engine against servers that fight back, all on loopback: a
 * handshake trickled one byte a second, a 1 MiB certificate list, an agent URL whose head or
 * body never ends, a CDP that redirects to itself, announces 2 GB then stalls, streams forever,
 * serves a real CRL over the size cap or never speaks, a garbage AIA certificate, a server that
 * accepts and never speaks. Each is asserted for its cause and a (generous) time bound; after
 * all of them the process's peak RSS stays within the caps and its descriptors come back. */
#include "lab/scenarios.h"
#include "probes/fetch.h"
#include "probes/probe.h"
#include "probes/revoke.h"
#include "probes/util.h"
#include "tests/test.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <openssl/ssl.h>

static lab_t lab;
static uv_loop_t loop;
static tlsc_ctx_t *ctx;
static fs_resolve_t resolve;

/* The in-flight budget and per-CRL cap of this test: what the RSS bound is made of. */
#define BUDGET ((size_t)8 << 20)
#define CRL_CAP ((size_t)4 << 20)

static int64_t mono_ms(void)
{
    return (int64_t)(uv_hrtime() / 1000000);
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

/* VmRSS or VmHWM of this process in KiB. */
static long status_kib(const char *key)
{
    char line[256];
    long v = -1;
    FILE *f = fopen("/proc/self/status", "r");
    ASSERT(f != NULL);
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, key, strlen(key)) == 0)
            v = atol(line + strlen(key) + 1);
    fclose(f);
    return v;
}

typedef struct run_s {
    const char *name;
    fs_url_t url;
    probe_opts_t o;
    rev_policy_t pol;
    rev_ctx_t *rev;
    int done, online, http_status;
    fs_cause_t cause;
    char message[320];
    int64_t ms;
} run_t;

static void on_done(probe_t *p, probe_result_t *r, void *arg)
{
    run_t *x = arg;
    x->done = 1;
    x->online = r->online;
    x->cause = r->cause;
    x->http_status = r->http_status;
    fs_strlcpy(x->message, r->message, sizeof(x->message));
}

static void on_rev_closed(void *arg)
{
    (*(int *)arg)++;
}

/* One probe of url (https://ns.lab.test:PORT[/path]) as a strict endpoint checking its leaf's
 * CDP (AIA only when aia), on a retrieval context of its own so no case sees another's cache;
 * runs it to completion and prints its outcome. */
static void run(run_t *x, const char *name, int port, const char *path, int aia)
{
    char buf[300], err[256];
    memset(x, 0, sizeof(*x));
    x->name = name;
    snprintf(buf, sizeof(buf), "https://%s:%d%s", LAB_HOST, port, path ? path : "");
    ASSERT(fs_url_parse(&x->url, buf, err) == 0);
    probe_opts_defaults(&x->o);
    x->o.url = &x->url;
    x->o.tls = ctx;
    x->o.resolve = &resolve;
    x->o.dns_override_only = 1;
    x->o.tls_timeout_ms = 3000;
    x->o.request_timeout_ms = 3000;
    x->o.total_timeout_ms = 15000;
    rev_policy_defaults(&x->pol);
    x->pol.mode = REV_STRICT;
    x->pol.scope = REV_SCOPE_LEAF;
    x->pol.aia_fetch = aia;
    x->pol.ocsp = 0;
    x->pol.url_timeout_ms = 2000;
    x->pol.max_bytes = CRL_CAP;
    x->pol.resolve = &resolve;
    x->pol.dns_override_only = 1;
    x->pol.view = "hostile";
    ASSERT_EQ(rev_ctx_new(&x->rev, &loop, NULL), 0);
    x->o.rev = x->rev;
    x->o.rev_policy = &x->pol;
    probe_t *p;
    int64_t t0 = mono_ms();
    ASSERT_EQ(probe_start(&p, &loop, &x->o, on_done, x), 0);
    while (!x->done)
        uv_run(&loop, UV_RUN_ONCE);
    x->ms = mono_ms() - t0;
    int closed = 0;
    rev_ctx_close(x->rev, on_rev_closed, &closed);
    while (!closed)
        uv_run(&loop, UV_RUN_ONCE);
    fprintf(stderr, "   %-34s %5lld ms  %-8s %-20s %.150s\n", name, (long long)x->ms,
            x->online ? "online" : "offline", x->online ? "" : fs_cause_id(x->cause), x->message);
}

static void expect(const run_t *x, int online, fs_cause_t cause, int64_t min_ms, int64_t max_ms)
{
    if (x->online != online || (!online && x->cause != cause) || x->ms < min_ms || x->ms > max_ms) {
        fprintf(stderr, "%s: expected %s %s in %lld..%lld ms\n", x->name,
                online ? "online" : "offline", online ? "" : fs_cause_id(cause), (long long)min_ms,
                (long long)max_ms);
        abort();
    }
}

static lab_tls_t *server(lab_tls_mode_t mode, X509 *const *chain, size_t nchain)
{
    char err[256];
    lab_tls_opts_t o = {.mode = mode,
                        .cert = lab.pki.leaf[LAB_LEAF_GOOD].cert,
                        .key = lab.pki.leaf[LAB_LEAF_GOOD].key,
                        .chain = chain,
                        .nchain = nchain,
                        .trickle_ms = 1000};
    lab_tls_t *s = lab_tls_start(&o, err);
    if (s == NULL)
        fprintf(stderr, "%s\n", err);
    ASSERT(s != NULL);
    return s;
}

/* ~1 MiB of certificates after the leaf: 480 CA certificates of ~2.4 KiB each (long SANs), all
 * sharing one EC key. */
static X509 **big_chain(size_t *n)
{
    enum { N = 480, SANS = 40 };
    static char names[SANS][120];
    const char *sans[SANS + 1];
    for (int i = 0; i < SANS; i++) {
        snprintf(names[i], sizeof(names[i]), "filler-%02d-%0100d.lab.test", i, i);
        sans[i] = names[i];
    }
    sans[SANS] = NULL;
    X509 **v = fs_xcalloc(N, sizeof(*v));
    lab_cert_t c;
    char err[256];
    EVP_PKEY *key = NULL;
    size_t bytes = 0;
    for (int i = 0; i < N; i++) {
        char cn[64];
        snprintf(cn, sizeof(cn), "Filler CA %d", i);
        lab_cert_opts_t o = {.cn = cn, .is_ca = 1, .key_ec = 1, .key = key, .dns_sans = sans};
        ASSERT(lab_cert_issue(&c, &o, NULL, err) == 0);
        if (key == NULL) {
            key = c.key;
            EVP_PKEY_up_ref(key);
        }
        v[i] = c.cert;
        X509_up_ref(v[i]);
        bytes += (size_t)i2d_X509(v[i], NULL);
        lab_cert_free(&c);
    }
    EVP_PKEY_free(key);
    fprintf(stderr, "   certificate list after the leaf: %zu certificates, %zu bytes\n", (size_t)N,
            bytes);
    ASSERT(bytes >= (size_t)1 << 20);
    *n = N;
    return v;
}

static void test_hostile_servers(void)
{
    char err[256];
    X509 *inter = lab.pki.inter.cert;
    size_t nbig;
    X509 **big = big_chain(&nbig);
    /* A real CRL of 200,000 entries, over the 4 MiB cap (made before the baseline: the test's
     * own buffers are not what is measured). */
    unsigned char *crl;
    size_t crl_len;
    ASSERT(lab_crl_make_bulk(&crl, &crl_len, &lab.pki.inter, 200000, -3600, 7 * 86400, err) == 0);
    fprintf(stderr, "   large CRL: %zu bytes (cap %zu)\n", crl_len, CRL_CAP);
    ASSERT(crl_len > CRL_CAP);
    static unsigned char garbage[3000];
    for (size_t i = 0; i < sizeof(garbage); i++)
        garbage[i] = (unsigned char)(i * 7 + 3);

    lab_tls_t *trickle = server(LAB_TLS_TRICKLE, &inter, 1);
    lab_tls_t *biglist = server(LAB_TLS_SERVE, big, nbig);
    lab_tls_t *heads = server(LAB_TLS_ENDLESS_HEADERS, &inter, 1);
    lab_tls_t *bodies = server(LAB_TLS_ENDLESS_BODY, &inter, 1);
    int good = lab_port(&lab, LAB_SC_GOOD), leaf_only = lab_port(&lab, LAB_SC_LEAF_ONLY);
    fetch_set_inflight_limit(BUDGET);
    /* settle what start-up allocated, then measure */
    run_t x;
    run(&x, "baseline (good server, CRL checked)", good, NULL, 0);
    expect(&x, 1, 0, 0, 5000);
    int fds0 = count_fds();
    long rss0 = status_kib("VmRSS"), hwm0 = status_kib("VmHWM");

    /* the TLS side */
    run(&x, "handshake trickled 1 byte/s", lab_tls_port(trickle), NULL, 0);
    expect(&x, 0, FS_CAUSE_PROBE_TIMEOUT, 2500, 8000);
    ASSERT_CONTAINS(x.message, "handshake");
    run(&x, "1 MiB certificate list", lab_tls_port(biglist), NULL, 0);
    expect(&x, 0, FS_CAUSE_TLS_HANDSHAKE_FAILED, 0, 5000);
    run(&x, "accepts, never speaks", lab_port(&lab, LAB_SC_STALL), NULL, 0);
    expect(&x, 0, FS_CAUSE_PROBE_TIMEOUT, 2500, 8000);
    /* the agent URL */
    /* WinHTTP fails at its 64 KiB header limit: so does the probe, without storing the lines */
    run(&x, "agent URL: endless headers", lab_tls_port(heads), "/agent", 0);
    expect(&x, 0, FS_CAUSE_HTTP_ERROR, 0, 5000);
    ASSERT_CONTAINS(x.message, "ERROR_WINHTTP_HEADER_SIZE_OVERFLOW");
    run(&x, "agent URL: endless body", lab_tls_port(bodies), "/agent", 0);
    expect(&x, 1, 0, 0, 5000);
    ASSERT_EQ(x.http_status, 200);

    /* the CDP of the good server's leaf, /inter.crl on the lab's HTTP server */
    lab_http_set_special(lab.http, "/inter.crl", LAB_HTTP_REDIRECT_LOOP);
    run(&x, "CDP redirects to itself", good, NULL, 0);
    expect(&x, 0, FS_CAUSE_CRL_UNREACHABLE, 0, 5000);
    ASSERT_CONTAINS(x.message, "redirect");
    lab_http_set_special(lab.http, "/inter.crl", LAB_HTTP_HUGE_LENGTH);
    run(&x, "CDP: 2 GB Content-Length, stalls", good, NULL, 0);
    expect(&x, 0, FS_CAUSE_CRL_INVALID, 0, 5000);
    ASSERT_CONTAINS(x.message, "size cap");
    lab_http_set_special(lab.http, "/inter.crl", LAB_HTTP_ENDLESS);
    run(&x, "CDP streams forever", good, NULL, 0);
    expect(&x, 0, FS_CAUSE_CRL_INVALID, 0, 5000);
    lab_http_set(lab.http, "/inter.crl", 200, crl, crl_len, "application/pkix-crl");
    run(&x, "CDP: real CRL over the cap", good, NULL, 0);
    expect(&x, 0, FS_CAUSE_CRL_INVALID, 0, 5000);
    ASSERT_CONTAINS(x.message, "size cap");
    lab_http_set_special(lab.http, "/inter.crl", LAB_HTTP_STALL);
    run(&x, "CDP accepts, never answers", good, NULL, 0);
    expect(&x, 0, FS_CAUSE_CRL_UNREACHABLE, 1500, 6000);
    lab_pki_publish(&lab.pki, lab.http);
    /* a server without its intermediate and a garbage AIA certificate */
    lab_http_set(lab.http, "/inter.der", 200, garbage, sizeof(garbage), "application/pkix-cert");
    run(&x, "garbage AIA certificate", leaf_only, NULL, 1);
    expect(&x, 0, FS_CAUSE_MISSING_INTERMEDIATE, 0, 5000);
    lab_pki_publish(&lab.pki, lab.http);
    run(&x, "good again", good, NULL, 0);
    expect(&x, 1, 0, 0, 5000);

    /* memory: nothing above grew past the caps (4 MiB per CRL body, 8 MiB in flight, 256 KiB
     * of TLS input per probe); under ASan the allocator's quarantine keeps freed memory, so
     * the figure is printed only */
    long hwm = status_kib("VmHWM"), rss = status_kib("VmRSS");
    fprintf(stderr, "   RSS %ld -> %ld KiB, peak %ld -> %ld KiB (+%ld KiB)\n", rss0, rss, hwm0, hwm,
            hwm - (rss0 > hwm0 ? hwm0 : rss0));
#if !defined(__SANITIZE_ADDRESS__)
    ASSERT(hwm - rss0 < 48 * 1024);
#endif
    fetch_inflight_t fi;
    fetch_inflight(&fi);
    ASSERT_EQ(fi.held, 0);
    ASSERT_EQ(fi.waiting, 0);

    /* descriptors: every probe's socket, every retrieval's, the servers' side too */
    int64_t end = mono_ms() + 5000;
    /* (the baseline may still hold the server side of the baseline probe, which the lab's
     * thread closes a little later: fewer is fine, more is a leak) */
    while (count_fds() > fds0 && mono_ms() < end)
        usleep(20000);
    ASSERT(count_fds() <= fds0);

    lab_tls_stop(trickle);
    lab_tls_stop(biglist);
    lab_tls_stop(heads);
    lab_tls_stop(bodies);
    for (size_t i = 0; i < nbig; i++)
        X509_free(big[i]);
    free(big);
    free(crl);
    fetch_set_inflight_limit(0);
}

int main(void)
{
    char err[256], path[600];
    signal(SIGPIPE, SIG_IGN);
    alarm(170);
    ASSERT(lab_start(&lab, err) == 0);
    ASSERT(uv_loop_init(&loop) == 0);
    tlsc_ctx_opts_t o = {.ca_file = lab_file(&lab, "root.pem", path, sizeof(path)),
                         .min_version = TLS1_2_VERSION};
    ASSERT(tlsc_ctx_new(&ctx, &o, err) == 0);
    ASSERT(fs_resolve_add(&resolve, LAB_HOST, "127.0.0.1", err) == 0);
    ASSERT(fs_resolve_add(&resolve, LAB_CRL_HOST, "127.0.0.1", err) == 0);
    RUN(test_hostile_servers);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    tlsc_ctx_unref(ctx);
    fs_resolve_free(&resolve);
    lab_stop(&lab);
    fprintf(stderr, "test_hostile: ok\n");
    return 0;
}
