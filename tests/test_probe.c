/* test_probe.c - the libuv probe against real loopback scenario servers: every cause and
 * warning of the TLS probe, asserted through the engine API, many probes at once. */
#include "lab/scenarios.h"
#include "lab/ocspd.h"
#include "probes/probe.h"
#include "probes/report.h"
#include "probes/revoke.h"
#include "probes/util.h"
#include "tests/test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static lab_t lab;
static uv_loop_t loop;
static tlsc_ctx_t *ctx, *ctx_legacy_ok; /* root trusted, TLS >= 1.2 / >= 1.0 */
static fs_resolve_t resolve;
static rev_ctx_t *rev;

typedef struct outcome_s {
    const char *name;
    fs_url_t url;
    probe_opts_t o;
    rev_policy_t pol;
    int done, online, cancelled, http_status, plain_http, chain_n, tls_version;
    fs_cause_t cause;
    uint32_t warnings;
    int64_t crl_next_update;
    char message[320];
    char leaf_subject[200];
    size_t nurls;
    int report; /* keep the report: */
    char *text; /* report_result_text */
    char *json; /* report_result_json */
    probe_t *probe;
} outcome_t;

static void on_done(probe_t *p, probe_result_t *r, void *arg)
{
    (void)p;
    outcome_t *oc = arg;
    oc->done++;
    oc->online = r->online;
    oc->cancelled = r->cancelled;
    oc->cause = r->cause;
    oc->warnings = r->warnings;
    oc->http_status = r->http_status;
    oc->plain_http = r->plain_http;
    oc->chain_n = (int)r->chain.n;
    oc->tls_version = r->tls_version;
    oc->nurls = r->rev ? r->rev->nurls : 0;
    oc->crl_next_update = r->crl_next_update;
    fs_strlcpy(oc->message, r->message, sizeof(oc->message));
    if (r->chain.n > 0)
        fs_strlcpy(oc->leaf_subject, r->chain.certs[0].subject, sizeof(oc->leaf_subject));
    if (oc->report && r->rev != NULL) {
        size_t n;
        FILE *f = open_memstream(&oc->text, &n);
        report_result_text(f, r, "https://probe");
        fclose(f);
        cJSON *j = report_result_json(r, "https://probe");
        oc->json = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
    }
    fprintf(stderr, "   %-22s %-8s %-22s %s\n", oc->name, r->online ? "online" : "offline",
            r->online ? "" : fs_cause_id(r->cause), r->message);
}

static outcome_t *mk(const char *name, lab_scenario_t sc, const char *path)
{
    outcome_t *oc = fs_xcalloc(1, sizeof(*oc));
    char buf[512], err[256];
    oc->name = name;
    lab_url(&lab, sc, path, buf, sizeof(buf));
    ASSERT(fs_url_parse(&oc->url, buf, err) == 0);
    probe_opts_defaults(&oc->o);
    oc->o.url = &oc->url;
    oc->o.tls = ctx;
    oc->o.resolve = &resolve;
    oc->o.dns_override_only = 1;
    oc->o.tls_timeout_ms = 1500;
    oc->o.request_timeout_ms = 1500;
    rev_policy_defaults(&oc->pol);
    oc->pol.mode = REV_OFF;
    oc->pol.aia_fetch = 0;
    oc->pol.resolve = &resolve;
    oc->pol.dns_override_only = 1;
    oc->pol.view = "test";
    oc->o.rev = rev;
    oc->o.rev_policy = &oc->pol;
    return oc;
}

static void go(outcome_t *oc)
{
    ASSERT_EQ(probe_start(&oc->probe, &loop, &oc->o, on_done, oc), 0);
}

static void expect(outcome_t *oc, int online, fs_cause_t cause)
{
    ASSERT_EQ(oc->done, 1);
    if (oc->online != online || (!online && oc->cause != cause)) {
        fprintf(stderr, "%s: expected %s/%s, got %s/%s (%s)\n", oc->name,
                online ? "online" : "offline", fs_cause_id(cause),
                oc->online ? "online" : "offline", fs_cause_id(oc->cause), oc->message);
        abort();
    }
}

static void test_scenarios(void)
{
    outcome_t *good = mk("good", LAB_SC_GOOD, NULL);
    outcome_t *good_get = mk("good GET", LAB_SC_GOOD, "/Altiris/NS/Agent/GetClientPolicies.aspx");
    outcome_t *leaf_only = mk("leaf-only", LAB_SC_LEAF_ONLY, NULL);
    outcome_t *expired = mk("expired", LAB_SC_EXPIRED, NULL);
    outcome_t *notyet = mk("not-yet-valid", LAB_SC_NOTYET, NULL);
    outcome_t *wrong = mk("wrong-host", LAB_SC_WRONGHOST, NULL);
    outcome_t *rogue = mk("rogue-root", LAB_SC_ROGUE, NULL);
    outcome_t *sha1 = mk("sha1", LAB_SC_SHA1, NULL);
    outcome_t *expiring = mk("expiring", LAB_SC_EXPIRING, NULL);
    outcome_t *h500 = mk("http-500", LAB_SC_HTTP500, "/agent");
    outcome_t *sni_on = mk("sni on", LAB_SC_NOSNI, NULL);
    outcome_t *sni_off = mk("sni off", LAB_SC_NOSNI, NULL);
    sni_off->o.sni = 0;
    outcome_t *plain = mk("plain-http on https", LAB_SC_PLAIN_HTTP, NULL);
    char buf[512], err[256];
    snprintf(buf, sizeof(buf), "https://%s:%d", LAB_HOST, lab_port(&lab, LAB_SC_PLAIN_HTTP));
    ASSERT(fs_url_parse(&plain->url, buf, err) == 0);
    outcome_t *plain_ok = mk("plain-http GET", LAB_SC_PLAIN_HTTP, "/agent");
    outcome_t *stall = mk("stall", LAB_SC_STALL, NULL);
    stall->o.tls_timeout_ms = 300;
    outcome_t *garbage = mk("garbage", LAB_SC_GARBAGE, NULL);
    outcome_t *reset = mk("reset", LAB_SC_RESET, NULL);
    outcome_t *closed = mk("close", LAB_SC_CLOSE, NULL);
    outcome_t *refused = mk("refused", LAB_SC_GOOD, NULL);
    refused->url.port = lab.closed_port;
    outcome_t *dns = mk("dns", LAB_SC_GOOD, NULL);
    fs_strlcpy(dns->url.host, "unknown.lab.test", sizeof(dns->url.host));
    outcome_t *thumb = mk("thumbprint", LAB_SC_GOOD, NULL);
    thumb->o.expect_thumbprint = "0000000000000000000000000000000000000000";
    outcome_t *skew = mk("clock -3d", LAB_SC_GOOD, NULL);
    skew->o.clock_skew_s = -3 * 86400;
    outcome_t *deadline = mk("deadline", LAB_SC_STALL, "/x");
    deadline->o.total_timeout_ms = 250;
    int fds[4], port = lab_blackhole("127.0.0.1", 0, fds);
    ASSERT(port > 0);
    outcome_t *ctimeout = mk("connect timeout", LAB_SC_GOOD, NULL);
    ctimeout->url.port = port;
    ctimeout->o.connect_timeout_ms = 300;
    outcome_t *tls10 = NULL, *tls10_refused = NULL;
    if (lab_port(&lab, LAB_SC_TLS10)) {
        tls10 = mk("tls10 allowed", LAB_SC_TLS10, NULL);
        tls10->o.tls = ctx_legacy_ok;
        tls10_refused = mk("tls10 refused", LAB_SC_TLS10, NULL);
    }
    outcome_t *all[] = {good,  good_get, leaf_only, expired, notyet,       wrong, rogue,
                        sha1,  expiring, h500,      sni_on,  sni_off,      plain, plain_ok,
                        stall, garbage,  reset,     closed,  refused,      dns,   thumb,
                        skew,  deadline, ctimeout,  tls10,   tls10_refused};
    size_t n = FS_ARRAY_SIZE(all) - (tls10 ? 0 : 2);
    for (size_t i = 0; i < n; i++)
        go(all[i]);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);

    expect(good, 1, 0);
    ASSERT_EQ(good->chain_n, 2);
    ASSERT_EQ(good->tls_version, TLS1_3_VERSION);
    expect(good_get, 1, 0);
    ASSERT_EQ(good_get->http_status, 200);
    expect(leaf_only, 0, FS_CAUSE_MISSING_INTERMEDIATE);
    expect(expired, 0, FS_CAUSE_CERT_EXPIRED);
    /* Certificate facts survive failure: the expired chain is still captured. */
    ASSERT_EQ(expired->chain_n, 2);
    ASSERT_CONTAINS(expired->leaf_subject, "ns.lab.test");
    expect(notyet, 0, FS_CAUSE_CERT_NOT_YET_VALID);
    expect(wrong, 0, FS_CAUSE_HOSTNAME_MISMATCH);
    expect(rogue, 0, FS_CAUSE_UNTRUSTED_CA);
    expect(sha1, 1, 0);
    ASSERT(sha1->warnings & FS_WARN_BIT(FS_WARN_WEAK_SIGNATURE));
    expect(expiring, 1, 0);
    ASSERT(expiring->warnings & FS_WARN_BIT(FS_WARN_CERT_EXPIRING_SOON));
    ASSERT(!(good->warnings & FS_WARN_BIT(FS_WARN_CERT_EXPIRING_SOON)));
    expect(h500, 0, FS_CAUSE_HTTP_ERROR);
    ASSERT_EQ(h500->http_status, 500);
    expect(sni_on, 1, 0);
    expect(sni_off, 0, FS_CAUSE_HOSTNAME_MISMATCH);
    expect(plain, 0, FS_CAUSE_TLS_HANDSHAKE_FAILED);
    ASSERT(plain->plain_http);
    expect(plain_ok, 1, 0);
    ASSERT_EQ(plain_ok->http_status, 200);
    expect(stall, 0, FS_CAUSE_PROBE_TIMEOUT);
    expect(garbage, 0, FS_CAUSE_TLS_HANDSHAKE_FAILED);
    expect(reset, 0, FS_CAUSE_CONNECTION_CLOSED);
    expect(closed, 0, FS_CAUSE_CONNECTION_CLOSED);
    expect(refused, 0, FS_CAUSE_CONNECT_REFUSED);
    expect(dns, 0, FS_CAUSE_DNS_FAILURE);
    expect(thumb, 0, FS_CAUSE_THUMBPRINT_MISMATCH);
    expect(skew, 0, FS_CAUSE_CERT_NOT_YET_VALID);
    expect(deadline, 0, FS_CAUSE_PROBE_TIMEOUT);
    ASSERT_CONTAINS(deadline->message, "deadline");
    expect(ctimeout, 0, FS_CAUSE_CONNECT_TIMEOUT);
    if (tls10) {
        expect(tls10, 1, 0);
        ASSERT(tls10->warnings & FS_WARN_BIT(FS_WARN_WEAK_PROTOCOL));
        expect(tls10_refused, 0, FS_CAUSE_TLS_HANDSHAKE_FAILED);
    } else {
        fprintf(stderr, "   (TLS 1.0 not available in this OpenSSL build: skipped)\n");
    }
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    for (size_t i = 0; i < n; i++)
        free(all[i]);
}

/* A server of the lab's PKI answering the agent URL with exactly these bytes (tls: over TLS). */
static lab_tls_t *odd_server(int tls, const char *resp, size_t len)
{
    char err[256];
    X509 *inter[1] = {lab.pki.inter.cert};
    lab_tls_opts_t so = {.mode = tls ? LAB_TLS_SERVE : LAB_TLS_PLAIN_HTTP,
                         .cert = lab.pki.leaf[LAB_LEAF_GOOD].cert,
                         .key = lab.pki.leaf[LAB_LEAF_GOOD].key,
                         .chain = inter,
                         .nchain = 1,
                         .response = resp,
                         .response_len = len};
    lab_tls_t *srv = lab_tls_start(&so, err);
    ASSERT(srv != NULL);
    return srv;
}

/* The status line of the agent URL's answer (issue 15.7): interim 1xx responses are skipped,
 * bare LF line ends accepted, a malformed status code is an http_error quoting the line. */
static void test_http_responses(void)
{
    static const struct {
        const char *name;
        int tls;
        const char *resp;
        size_t len;
        int online, status;
        const char *in_message;
    } cases[] = {
#define R(s) s, sizeof(s) - 1
        {"100 then 500", 1,
         R("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Internal Server Error\r\n"
           "Content-Length: 0\r\n\r\n"),
         0, 500, "HTTP 500"},
        {"100 then 204", 1, R("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"), 1,
         204, "HTTP 204"},
        {"bare LF", 1, R("HTTP/1.1 200 OK\n\n"), 1, 200, "HTTP 200"},
        {"bare LF, plain http", 0, R("HTTP/1.1 200 OK\n\n"), 1, 200, "HTTP 200"},
        {"status 5000", 1, R("HTTP/1.1 5000 X\r\n\r\n"), 0, 0, "\"HTTP/1.1 5000 X\""},
        {"20 digits", 1, R("HTTP/1.1 20000000000000000000 OK\r\n\r\n"), 0, 0,
         "20000000000000000000"},
        {"NUL in the line", 1, R("HTTP/1.1 200 O\0K\r\n\r\n"), 0, 0, "O\\x00K"},
        {"no status code", 0, R("HTTP/1.1\r\n\r\n"), 0, 0, "missing status code"},
#undef R
    };
    enum { N = FS_ARRAY_SIZE(cases) };
    lab_tls_t *srv[N];
    outcome_t *oc[N];
    for (size_t i = 0; i < N; i++) {
        char url[256], err[256];
        srv[i] = odd_server(cases[i].tls, cases[i].resp, cases[i].len);
        oc[i] = mk(cases[i].name, LAB_SC_GOOD, NULL);
        snprintf(url, sizeof(url), "%s://%s:%d/agent", cases[i].tls ? "https" : "http", LAB_HOST,
                 lab_tls_port(srv[i]));
        ASSERT(fs_url_parse(&oc[i]->url, url, err) == 0);
        go(oc[i]);
    }
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    for (size_t i = 0; i < N; i++) {
        expect(oc[i], cases[i].online, cases[i].online ? FS_CAUSE_NONE : FS_CAUSE_HTTP_ERROR);
        ASSERT_EQ(oc[i]->http_status, cases[i].status);
        ASSERT_CONTAINS(oc[i]->message, cases[i].in_message);
        lab_tls_stop(srv[i]);
        free(oc[i]);
    }
}

/* The header lines after the status line: the probe waits for the empty line that ends the head,
 * as WinHTTP does, and fails a head past WinHTTP's 64 KiB as the agent would; a head cut short by
 * the server is a closed connection, not an answer. */
static void test_http_head_size(void)
{
    enum { BIG = 70 * 1024, FITS = 60 * 1024 };
    static char big[BIG + 64], fits[FITS + 64];
    char *bufs[] = {big, fits};
    size_t lens[2], sizes[] = {BIG, FITS};
    for (int b = 0; b < 2; b++) {
        size_t n = (size_t)sprintf(bufs[b], "HTTP/1.1 200 OK\r\n");
        for (int line = 0; n < sizes[b]; line++)
            n += (size_t)sprintf(bufs[b] + n, "X-Filler-%05d: %040d\r\n", line, line);
        n += (size_t)sprintf(bufs[b] + n, "\r\n");
        lens[b] = n;
    }
    static const char cut[] = "HTTP/1.1 200 OK\r\nServer: Microsoft-IIS/10.0\r\nContent-";
    lab_tls_t *srv[3] = {odd_server(1, big, lens[0]), odd_server(0, fits, lens[1]),
                         odd_server(1, cut, sizeof(cut) - 1)};
    outcome_t *oc[3] = {mk("head over 64 KiB", LAB_SC_GOOD, NULL),
                        mk("head of 60 KiB, plain http", LAB_SC_GOOD, NULL),
                        mk("head cut short", LAB_SC_GOOD, NULL)};
    for (int i = 0; i < 3; i++) {
        char url[256], err[256];
        snprintf(url, sizeof(url), "%s://%s:%d/agent", i == 1 ? "http" : "https", LAB_HOST,
                 lab_tls_port(srv[i]));
        ASSERT(fs_url_parse(&oc[i]->url, url, err) == 0);
        go(oc[i]);
    }
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    expect(oc[0], 0, FS_CAUSE_HTTP_ERROR);
    ASSERT_CONTAINS(oc[0]->message, "response head over 64 KiB");
    ASSERT_CONTAINS(oc[0]->message, "ERROR_WINHTTP_HEADER_SIZE_OVERFLOW");
    ASSERT_EQ(oc[0]->http_status, 200);
    expect(oc[1], 1, FS_CAUSE_NONE);
    ASSERT_EQ(oc[1]->http_status, 200);
    expect(oc[2], 0, FS_CAUSE_CONNECTION_CLOSED);
    ASSERT_CONTAINS(oc[2]->message, "inside the head of its HTTP 200 answer");
    for (int i = 0; i < 3; i++) {
        lab_tls_stop(srv[i]);
        free(oc[i]);
    }
}

/* A server that resets every connection as soon as it accepts it (issue 15.8): the connection
 * was established, so the endpoint sees "the underlying connection was closed", however the
 * reset races the connect completion, the ClientHello or the request. Probed over TLS and plain
 * HTTP, all at once and one after another. */
static void test_reset_on_accept(void)
{
    char err[256], url[256];
    lab_tls_opts_t so = {.mode = LAB_TLS_RESET_ACCEPT};
    lab_tls_t *srv = lab_tls_start(&so, err);
    ASSERT(srv != NULL);
    enum { N = 20 };
    outcome_t *oc[2 * N];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 2 * N; i++) {
            int tls = i % 4 != 3; /* one in four speaks plain HTTP */
            oc[i] = mk(tls ? "reset on accept" : "reset on accept, http", LAB_SC_GOOD, NULL);
            snprintf(url, sizeof(url), "%s://%s:%d%s", tls ? "https" : "http", LAB_HOST,
                     lab_tls_port(srv), tls ? "" : "/agent");
            ASSERT(fs_url_parse(&oc[i]->url, url, err) == 0);
            go(oc[i]);
            if (round == 1) /* one after another */
                ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
        }
        ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
        for (int i = 0; i < 2 * N; i++) {
            expect(oc[i], 0, FS_CAUSE_CONNECTION_CLOSED);
            free(oc[i]);
        }
    }
    lab_tls_stop(srv);
}

static void on_cancel_timer(uv_timer_t *t)
{
    probe_cancel(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_cancel(void)
{
    outcome_t *oc = mk("cancel", LAB_SC_STALL, NULL);
    go(oc);
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    t.data = oc->probe;
    uv_timer_start(&t, on_cancel_timer, 100, 0);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT_EQ(oc->done, 1);
    ASSERT(oc->cancelled);
    ASSERT(!oc->online);
    free(oc);
}

static void test_revocation_and_aia(void)
{
    outcome_t *revoked = mk("revoked strict", LAB_SC_REVOKED, NULL);
    revoked->pol.mode = REV_STRICT;
    outcome_t *good = mk("good strict", LAB_SC_GOOD, NULL);
    good->pol.mode = REV_STRICT;
    outcome_t *aia = mk("leaf-only + AIA", LAB_SC_LEAF_ONLY, NULL);
    aia->pol.aia_fetch = 1;
    outcome_t *dead = mk("crl host dead", LAB_SC_GOOD, NULL);
    static fs_resolve_t dead_view;
    char err[256];
    if (dead_view.n == 0) {
        ASSERT(fs_resolve_add(&dead_view, LAB_HOST, "127.0.0.1", err) == 0);
        ASSERT(fs_resolve_add(&dead_view, LAB_CRL_HOST, "127.0.0.2", err) == 0);
    }
    dead->pol.mode = REV_STRICT;
    dead->pol.resolve = &dead_view;
    dead->pol.view = "dead";
    dead->o.resolve = &dead_view;
    outcome_t *soft = mk("crl host dead, soft", LAB_SC_GOOD, NULL);
    soft->pol = dead->pol;
    soft->pol.mode = REV_SOFT_FAIL;
    soft->o.resolve = &dead_view;
    /* A CRL host that blackholes (SYNs dropped) with a deadline shorter than the retrieval
     * budget: retrieval is cut to what the deadline leaves and reports for itself, so a
     * soft-fail endpoint stays online with the warning and the URL line. */
    static fs_resolve_t hole_view;
    int hole_fds[4];
    ASSERT(lab_blackhole("127.0.0.4", lab_http_port(lab.http), hole_fds) > 0);
    if (hole_view.n == 0) {
        ASSERT(fs_resolve_add(&hole_view, LAB_HOST, "127.0.0.1", err) == 0);
        ASSERT(fs_resolve_add(&hole_view, LAB_CRL_HOST, "127.0.0.4", err) == 0);
    }
    outcome_t *blackhole = mk("crl blackhole, soft", LAB_SC_GOOD, NULL);
    blackhole->o.capture_chain = 1;
    blackhole->o.total_timeout_ms = 1500;
    blackhole->o.resolve = &hole_view;
    blackhole->pol.mode = REV_SOFT_FAIL;
    blackhole->pol.resolve = &hole_view;
    blackhole->pol.view = "blackhole";
    outcome_t *all[] = {revoked, good, aia, dead, soft, blackhole};
    for (size_t i = 0; i < FS_ARRAY_SIZE(all); i++)
        go(all[i]);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    expect(revoked, 0, FS_CAUSE_CERT_REVOKED);
    expect(good, 1, 0);
    ASSERT(good->nurls >= 1);
    expect(aia, 1, 0);
    ASSERT(aia->warnings & FS_WARN_BIT(FS_WARN_AIA_FETCH_REQUIRED));
    expect(dead, 0, FS_CAUSE_CRL_UNREACHABLE);
    expect(soft, 1, 0);
    ASSERT(soft->warnings & FS_WARN_BIT(FS_WARN_REVOCATION_SOFT_FAIL));
    expect(blackhole, 1, 0);
    ASSERT(blackhole->warnings & FS_WARN_BIT(FS_WARN_REVOCATION_SOFT_FAIL));
    ASSERT(blackhole->nurls >= 1);
    for (int i = 0; i < 4; i++)
        close(hole_fds[i]);
    fs_resolve_free(&hole_view);
    for (size_t i = 0; i < FS_ARRAY_SIZE(all); i++)
        free(all[i]);
    fs_resolve_free(&dead_view);
}

static void on_rev_closed(void *arg)
{
    *(int *)arg = 1;
}

/* SPEC §4.3: the side that must act. A leaf issued directly by a root the endpoint lacks, with
 * that root reachable through AIA, is an untrusted root (the endpoints must import it), not a
 * missing intermediate (the server would have nothing to send). Without AIA the data cannot
 * tell them apart, and the message says so. */
/* OCSP through the whole probe: a good answer ends the leaf's check (the CDP is not asked), a
 * revoked one takes the endpoint offline; both are retrieval lines as certutil prints them. */
static void test_ocsp_lines(void)
{
    char err[256], url[256], ocsp_good[256], ocsp_revoked[256], cdp[256];
    int port = lab_http_port(lab.http);
    snprintf(ocsp_good, sizeof(ocsp_good), "http://%s:%d/ocsp-good", LAB_CRL_HOST, port);
    snprintf(ocsp_revoked, sizeof(ocsp_revoked), "http://%s:%d/ocsp-rev", LAB_CRL_HOST, port);
    snprintf(cdp, sizeof(cdp), "http://%s:%d/inter.crl", LAB_CRL_HOST, port);
    lab_ocsp_opts_t oo = {.issuer = &lab.pki.inter, .status = LAB_OCSP_GOOD};
    lab_ocsp_serve(lab.http, "/ocsp-good", &oo);
    oo.status = LAB_OCSP_REVOKED;
    lab_ocsp_serve(lab.http, "/ocsp-rev", &oo);
    const char *sans[] = {LAB_HOST, NULL};
    lab_cert_t leaves[2] = {{0}};
    lab_tls_t *srvs[2];
    outcome_t *oc[2];
    for (int i = 0; i < 2; i++) {
        lab_cert_opts_t co = {.cn = LAB_HOST,
                              .dns_sans = sans,
                              .crl_url = cdp,
                              .ocsp_url = i ? ocsp_revoked : ocsp_good};
        ASSERT(lab_cert_issue(&leaves[i], &co, &lab.pki.inter, err) == 0);
        X509 *chain[] = {lab.pki.inter.cert};
        lab_tls_opts_t so = {.mode = LAB_TLS_SERVE,
                             .cert = leaves[i].cert,
                             .key = leaves[i].key,
                             .chain = chain,
                             .nchain = 1};
        srvs[i] = lab_tls_start(&so, err);
        ASSERT(srvs[i] != NULL);
        snprintf(url, sizeof(url), "https://%s:%d", LAB_HOST, lab_tls_port(srvs[i]));
        oc[i] = mk(i ? "ocsp revoked" : "ocsp good", LAB_SC_GOOD, NULL);
        ASSERT(fs_url_parse(&oc[i]->url, url, err) == 0);
        oc[i]->o.capture_chain = 1;
        oc[i]->report = 1;
        oc[i]->pol.mode = REV_STRICT;
        oc[i]->pol.scope = REV_SCOPE_LEAF;
        go(oc[i]);
    }
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    expect(oc[0], 1, 0);
    ASSERT_EQ(oc[0]->nurls, 1);
    ASSERT_CONTAINS(oc[0]->text, "Verified \"OCSP\"");
    ASSERT_CONTAINS(oc[0]->text, "Status good");
    ASSERT_CONTAINS(oc[0]->text, ocsp_good);
    ASSERT_CONTAINS(oc[0]->json, "\"kind\":\"ocsp\"");
    ASSERT_CONTAINS(oc[0]->json, "\"status\":\"good\"");
    ASSERT_CONTAINS(oc[0]->json, "\"method\":\"GET\"");
    /* an OCSP answer's nextUpdate is a freshness edge like a CRL's (the forecast uses it) */
    int64_t day = fs_wall_ms() / 1000 + 86400;
    ASSERT(oc[0]->crl_next_update > day - 600 && oc[0]->crl_next_update < day + 600);
    expect(oc[1], 0, FS_CAUSE_CERT_REVOKED);
    ASSERT_CONTAINS(oc[1]->message, "OCSP");
    ASSERT_CONTAINS(oc[1]->text, "Status revoked");
    for (int i = 0; i < 2; i++) {
        fprintf(stderr, "%s", oc[i]->text);
        free(oc[i]->text);
        free(oc[i]->json);
        free(oc[i]);
        lab_tls_stop(srvs[i]);
        lab_cert_free(&leaves[i]);
    }
}

static void test_chain_diagnosis(void)
{
    char err[256], url[256], aia[256], path[600];
    snprintf(aia, sizeof(aia), "http://%s:%d/root.der", LAB_CRL_HOST, lab_http_port(lab.http));
    const char *sans[] = {LAB_HOST, NULL};
    lab_cert_opts_t co = {.cn = LAB_HOST, .dns_sans = sans, .aia_url = aia};
    lab_cert_t leaf = {0};
    ASSERT(lab_cert_issue(&leaf, &co, &lab.pki.root, err) == 0);
    lab_tls_opts_t so = {.mode = LAB_TLS_SERVE, .cert = leaf.cert, .key = leaf.key};
    lab_tls_t *srv = lab_tls_start(&so, err);
    ASSERT(srv != NULL);
    tlsc_ctx_t *legacy_only;
    tlsc_ctx_opts_t o = {.ca_file = lab_file(&lab, "old-root.pem", path, sizeof(path)),
                         .min_version = TLS1_2_VERSION};
    ASSERT(tlsc_ctx_new(&legacy_only, &o, err) == 0);
    snprintf(url, sizeof(url), "https://%s:%d", LAB_HOST, lab_tls_port(srv));

    outcome_t *with_aia = mk("root via AIA", LAB_SC_GOOD, NULL);
    outcome_t *without = mk("root, no AIA", LAB_SC_GOOD, NULL);
    outcome_t *all[] = {with_aia, without};
    for (size_t i = 0; i < 2; i++) {
        ASSERT(fs_url_parse(&all[i]->url, url, err) == 0);
        all[i]->o.tls = legacy_only;
        all[i]->pol.aia_fetch = i == 0;
        go(all[i]);
    }
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    expect(with_aia, 0, FS_CAUSE_UNTRUSTED_CA);
    ASSERT_CONTAINS(with_aia->message, "Lab Root CA");
    expect(without, 0, FS_CAUSE_MISSING_INTERMEDIATE);
    ASSERT_CONTAINS(without->message, "root");
    /* The two remediations name different sides. */
    ASSERT_CONTAINS(fs_cause_info(FS_CAUSE_MISSING_INTERMEDIATE)->remediation, "server");
    ASSERT_CONTAINS(fs_cause_info(FS_CAUSE_UNTRUSTED_CA)->remediation, "endpoints");
    free(with_aia);
    free(without);
    tlsc_ctx_unref(legacy_only);
    lab_tls_stop(srv);
    lab_cert_free(&leaf);
}

int main(void)
{
    char err[256], path[600];
    ASSERT(lab_start(&lab, err) == 0);
    ASSERT(uv_loop_init(&loop) == 0);
    tlsc_ctx_opts_t o = {.ca_file = lab_file(&lab, "root.pem", path, sizeof(path)),
                         .min_version = TLS1_2_VERSION};
    ASSERT(tlsc_ctx_new(&ctx, &o, err) == 0);
    o.min_version = TLS1_VERSION;
    ASSERT(tlsc_ctx_new(&ctx_legacy_ok, &o, err) == 0);
    ASSERT(fs_resolve_add(&resolve, LAB_HOST, "127.0.0.1", err) == 0);
    ASSERT(fs_resolve_add(&resolve, LAB_CRL_HOST, "127.0.0.1", err) == 0);
    ASSERT(rev_ctx_new(&rev, &loop, NULL) == 0);
    RUN(test_scenarios);
    RUN(test_cancel);
    RUN(test_http_responses);
    RUN(test_http_head_size);
    RUN(test_reset_on_accept);
    RUN(test_revocation_and_aia);
    RUN(test_chain_diagnosis);
    RUN(test_ocsp_lines);
    int closed = 0;
    rev_ctx_close(rev, on_rev_closed, &closed);
    ASSERT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ASSERT(closed);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    tlsc_ctx_unref(ctx);
    tlsc_ctx_unref(ctx_legacy_ok);
    fs_resolve_free(&resolve);
    lab_stop(&lab);
    return 0;
}
