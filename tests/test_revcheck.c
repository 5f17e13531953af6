/* test_revcheck.c - live checks of one revocation URL against the lab PKI served by a real
 * loopback HTTP server: a usable CRL every time from the server itself (no cache), a stale, a
 * foreign and an unreachable one, skipped ldap:// and file:// URLs, OCSP answers, delta CRLs
 * against their base, and cancellation. */
#include "probes/revcheck.h"

#include "lab/httpserver.h"
#include "lab/tlsserver.h"
#include "lab/ocspd.h"
#include "lab/pki.h"

#include "test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/x509v3.h>

#define DAY (24 * 3600)

static lab_http_t *srv;
static lab_pki_t pki;
static char base[128]; /* http://crl.lab.test:PORT: only the override map knows the name */
static fs_resolve_t map;
static int64_t now;

typedef struct out_s {
    int calls;
    revcheck_result_t r;
    X509_CRL *crl; /* kept from the callback */
} out_t;

static void on_result(void *arg, const revcheck_result_t *r)
{
    out_t *o = arg;
    o->calls++;
    o->r = *r;
    o->r.crl = NULL;
    if (r->crl != NULL && X509_CRL_up_ref(r->crl))
        o->crl = r->crl;
}

static char *url_of(char *buf, size_t n, const char *path)
{
    snprintf(buf, n, "%s%s", base, path);
    return buf;
}

/* Checks url for cert (issued by issuer) on a loop of its own, which must close clean. */
static void check(revcheck_kind_t kind, const char *url, X509 *cert, X509 *issuer, X509_CRL *b,
                  const char *ldap_host, out_t *o)
{
    uv_loop_t loop;
    fetch_t *f;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    ASSERT_EQ(fetch_new(&f, &loop), 0);
    memset(o, 0, sizeof(*o));
    revcheck_req_t req = {.kind = kind,
                          .url = url,
                          .cert = cert,
                          .issuer = issuer,
                          .base = b,
                          .ldap_host = ldap_host,
                          .resolve = &map,
                          .dns_override_only = 1,
                          .timeout_ms = 3000,
                          .at = now};
    ASSERT_EQ(revcheck_start(f, &req, on_result, o, NULL), 0);
    ASSERT_EQ(o->calls, 0); /* never from inside start */
    while (o->calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    ASSERT_EQ(o->calls, 1);
    fetch_close(f, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

static void serve_crl(const char *path, const lab_cert_t *by, const lab_crl_opts_t *o)
{
    unsigned char *der;
    size_t len;
    char err[256];
    ASSERT_EQ(lab_crl_make_ex(&der, &len, by, o, err), 0);
    lab_http_set(srv, path, 200, der, len, "application/pkix-crl");
    free(der);
}

static X509 *leaf(void)
{
    return pki.leaf[LAB_LEAF_GOOD].cert;
}

/* A usable CRL, from the server every time: a live check has no cache. */
static void test_crl_live_every_time(void)
{
    char url[256];
    out_t o;
    unsigned before = lab_http_hits(srv, "/inter.crl");
    for (int i = 0; i < 2; i++) {
        check(REVCHECK_CRL, url_of(url, sizeof(url), "/inter.crl"), leaf(), pki.inter.cert, NULL,
              NULL, &o);
        ASSERT_EQ(o.r.usable, 1);
        ASSERT_EQ(o.r.skipped, 0);
        ASSERT_EQ(o.r.signature_valid, 1);
        ASSERT_EQ(o.r.http_status, 200);
        ASSERT_EQ(o.r.bytes, pki.inter_crl_len);
        ASSERT(o.r.next_update > now && o.r.this_update <= now);
        ASSERT_STREQ(o.r.error, "");
        ASSERT(o.crl != NULL);
        X509_CRL_free(o.crl);
    }
    ASSERT_EQ(lab_http_hits(srv, "/inter.crl"), before + 2);
}

static void test_crl_unusable(void)
{
    char url[256];
    out_t o;
    /* past nextUpdate: authentic, but stale */
    lab_crl_opts_t stale = {.this_update_off_s = -10 * DAY, .next_update_off_s = -DAY};
    serve_crl("/c/stale.crl", &pki.inter, &stale);
    check(REVCHECK_CRL, url_of(url, sizeof(url), "/c/stale.crl"), leaf(), pki.inter.cert, NULL,
          NULL, &o);
    ASSERT_EQ(o.r.usable, 0);
    ASSERT_EQ(o.r.signature_valid, 1);
    ASSERT_CONTAINS(o.r.error, "expired");
    X509_CRL_free(o.crl);
    /* another CA's CRL */
    check(REVCHECK_CRL, url_of(url, sizeof(url), "/root.crl"), leaf(), pki.inter.cert, NULL, NULL,
          &o);
    ASSERT_EQ(o.r.usable, 0);
    ASSERT(o.r.error[0] != '\0');
    X509_CRL_free(o.crl);
    /* a delta where the base belongs */
    lab_crl_opts_t delta = {.this_update_off_s = -3600, .next_update_off_s = DAY, .delta_base = 1};
    serve_crl("/c/delta-as-base.crl", &pki.inter, &delta);
    check(REVCHECK_CRL, url_of(url, sizeof(url), "/c/delta-as-base.crl"), leaf(), pki.inter.cert,
          NULL, NULL, &o);
    ASSERT_EQ(o.r.usable, 0);
    ASSERT_CONTAINS(o.r.error, "delta");
    X509_CRL_free(o.crl);
    /* not found */
    check(REVCHECK_CRL, url_of(url, sizeof(url), "/c/missing.crl"), leaf(), pki.inter.cert, NULL,
          NULL, &o);
    ASSERT_EQ(o.r.usable, 0);
    ASSERT_EQ(o.r.http_status, 404);
    ASSERT_STREQ(o.r.error, "HTTP 404");
    ASSERT(o.crl == NULL);
}

/* A refused port (lab_closed_port: held bound, never listening, so no test beside this one can
 * take it). */
static int closed_port(void)
{
    int port = lab_closed_port();
    ASSERT(port > 0);
    return port;
}

static void test_unreachable(void)
{
    char url[256];
    snprintf(url, sizeof(url), "http://crl.lab.test:%d/inter.crl", closed_port());
    out_t o;
    check(REVCHECK_CRL, url, leaf(), pki.inter.cert, NULL, NULL, &o);
    ASSERT_EQ(o.r.usable, 0);
    ASSERT_EQ(o.r.skipped, 0);
    ASSERT_EQ(o.r.http_status, 0);
    ASSERT_EQ(o.r.signature_valid, -1);
    ASSERT_CONTAINS(o.r.error, "refused");
}

/* ldap:// without a directory and file:// are not retrieved, at no cost: skipped, not failed. */
static void test_skipped(void)
{
    out_t o;
    check(REVCHECK_CRL, "ldap:///CN=Lab%20Issuing%20CA%201,CN=CDP?certificateRevocationList",
          leaf(), pki.inter.cert, NULL, NULL, &o);
    ASSERT_EQ(o.r.skipped, 1);
    ASSERT_EQ(o.r.usable, 0);
    ASSERT_EQ(o.r.time_ms, 0);
    ASSERT_STREQ(o.r.error, "skipped: no directory in this view");
    check(REVCHECK_DELTA, "file:///etc/pki/inter+.crl", leaf(), pki.inter.cert, NULL, NULL, &o);
    ASSERT_EQ(o.r.skipped, 1);
    ASSERT_CONTAINS(o.r.error, "file://");
    /* With a directory the URL is retrieved there (here a directory that is down). */
    char dir[64];
    snprintf(dir, sizeof(dir), "crl.lab.test:%d", closed_port());
    check(REVCHECK_CRL, "ldap:///CN=Lab%20Issuing%20CA%201,CN=CDP?certificateRevocationList",
          leaf(), pki.inter.cert, NULL, dir, &o);
    ASSERT_EQ(o.r.skipped, 0);
    ASSERT_EQ(o.r.usable, 0);
    ASSERT(o.r.error[0] != '\0');
}

static void test_ocsp(void)
{
    char url[256];
    out_t o;
    lab_ocsp_opts_t good = {.issuer = &pki.inter, .status = LAB_OCSP_GOOD};
    lab_ocsp_serve(srv, "/ocsp-good", &good);
    check(REVCHECK_OCSP, url_of(url, sizeof(url), "/ocsp-good"), leaf(), pki.inter.cert, NULL, NULL,
          &o);
    ASSERT_EQ(o.r.usable, 1);
    ASSERT_EQ(o.r.signature_valid, 1);
    ASSERT_STREQ(o.r.status, "good");
    ASSERT(o.r.next_update > now);
    lab_ocsp_opts_t unknown = {.issuer = &pki.inter, .status = LAB_OCSP_UNKNOWN};
    lab_ocsp_serve(srv, "/ocsp-unknown", &unknown);
    check(REVCHECK_OCSP, url_of(url, sizeof(url), "/ocsp-unknown"), leaf(), pki.inter.cert, NULL,
          NULL, &o);
    ASSERT_EQ(o.r.usable, 0);
    ASSERT_STREQ(o.r.status, "unknown");
    ASSERT_CONTAINS(o.r.error, "unknown");
    /* signed by a CA that is not the issuer */
    lab_ocsp_opts_t wrong = {.issuer = &pki.inter, .signer = &pki.root, .status = LAB_OCSP_GOOD};
    lab_ocsp_serve(srv, "/ocsp-wrong", &wrong);
    check(REVCHECK_OCSP, url_of(url, sizeof(url), "/ocsp-wrong"), leaf(), pki.inter.cert, NULL,
          NULL, &o);
    ASSERT_EQ(o.r.usable, 0);
    ASSERT_EQ(o.r.signature_valid, 0);
    /* no issuer known: no request can be made */
    check(REVCHECK_OCSP, url_of(url, sizeof(url), "/ocsp-good"), leaf(), NULL, NULL, NULL, &o);
    ASSERT_EQ(o.r.usable, 0);
    ASSERT_EQ(o.r.skipped, 0);
    ASSERT_CONTAINS(o.r.error, "not known");
}

/* A delta CRL is judged against its base: same issuer, newer, based on it. */
static void test_delta(void)
{
    char url[256];
    out_t o, b;
    lab_crl_opts_t bo = {
        .this_update_off_s = -3600, .next_update_off_s = 7 * DAY, .crl_number = 100};
    serve_crl("/c/base.crl", &pki.inter, &bo);
    lab_crl_opts_t d = {
        .this_update_off_s = -60, .next_update_off_s = DAY, .crl_number = 101, .delta_base = 100};
    serve_crl("/c/base+.crl", &pki.inter, &d);
    check(REVCHECK_CRL, url_of(url, sizeof(url), "/c/base.crl"), leaf(), pki.inter.cert, NULL, NULL,
          &b);
    ASSERT_EQ(b.r.usable, 1);
    check(REVCHECK_DELTA, url_of(url, sizeof(url), "/c/base+.crl"), leaf(), pki.inter.cert, b.crl,
          NULL, &o);
    ASSERT_EQ(o.r.usable, 1);
    X509_CRL_free(o.crl);
    /* without its base, a delta CRL is still recognised as one */
    check(REVCHECK_DELTA, url, leaf(), pki.inter.cert, NULL, NULL, &o);
    ASSERT_EQ(o.r.usable, 1);
    X509_CRL_free(o.crl);
    /* a complete CRL where the delta belongs */
    check(REVCHECK_DELTA, url_of(url, sizeof(url), "/c/base.crl"), leaf(), pki.inter.cert, b.crl,
          NULL, &o);
    ASSERT_EQ(o.r.usable, 0);
    X509_CRL_free(o.crl);
    X509_CRL_free(b.crl);
}

static void test_cancel_and_errors(void)
{
    uv_loop_t loop;
    fetch_t *f;
    char url[256];
    ASSERT_EQ(uv_loop_init(&loop), 0);
    ASSERT_EQ(fetch_new(&f, &loop), 0);
    out_t o = {0};
    revcheck_req_t req = {.kind = REVCHECK_CRL,
                          .url = url_of(url, sizeof(url), "/inter.crl"),
                          .cert = leaf(),
                          .issuer = pki.inter.cert,
                          .resolve = &map,
                          .dns_override_only = 1,
                          .at = now};
    revcheck_job_t *job = NULL;
    ASSERT_EQ(revcheck_start(f, &req, on_result, &o, &job), 0);
    ASSERT(job != NULL);
    revcheck_cancel(job);
    uv_run(&loop, UV_RUN_NOWAIT);
    req.cert = NULL;
    ASSERT_EQ(revcheck_start(f, &req, on_result, &o, NULL), UV_EINVAL);
    fetch_close(f, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(o.calls, 0);
    ASSERT_EQ(uv_loop_close(&loop), 0);
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[512];
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

int main(void)
{
    char err[256], dir[] = "/tmp/fs-test-revcheck-XXXXXX";
    now = (int64_t)time(NULL);
    srv = lab_http_start(err);
    ASSERT(srv != NULL);
    snprintf(base, sizeof(base), "http://crl.lab.test:%d", lab_http_port(srv));
    ASSERT_EQ(fs_resolve_add(&map, "crl.lab.test", "127.0.0.1", err), 0);
    ASSERT(mkdtemp(dir) != NULL);
    ASSERT_EQ(lab_pki_create(&pki, dir, "ns.lab.test", base, err), 0);
    lab_pki_publish(&pki, srv);

    RUN(test_crl_live_every_time);
    RUN(test_crl_unusable);
    RUN(test_unreachable);
    RUN(test_skipped);
    RUN(test_ocsp);
    RUN(test_delta);
    RUN(test_cancel_and_errors);

    lab_http_stop(srv);
    lab_pki_free(&pki);
    fs_resolve_free(&map);
    rm_dir(dir);
    return 0;
}
