/* test_revoke.c - revocation checks and AIA retrieval against the lab PKI served by a real
 * loopback HTTP server: every cause, soft-fail and off, scope, budget, cache, single flight. */
#include "probes/revoke.h"

#include "lab/httpserver.h"
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

typedef struct env_s {
    uv_loop_t loop;
    rev_ctx_t *ctx;
} env_t;

static void env_open(env_t *e, const rev_cache_limits_t *lim)
{
    ASSERT_EQ(uv_loop_init(&e->loop), 0);
    ASSERT_EQ(rev_ctx_new(&e->ctx, &e->loop, lim), 0);
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

static void env_close(env_t *e)
{
    int closed = 0;
    rev_ctx_close(e->ctx, on_closed, &closed);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    ASSERT_EQ(closed, 1);
    ASSERT_EQ(uv_loop_close(&e->loop), 0);
}

static void policy(rev_policy_t *p, rev_mode_t mode)
{
    rev_policy_defaults(p);
    p->mode = mode;
    p->scope = REV_SCOPE_LEAF;
    p->resolve = &map;
    p->dns_override_only = 1;
    p->view = "lab";
}

typedef struct res_s {
    int calls;
    rev_result_t r;
} res_t;

static void on_rev(void *arg, const rev_result_t *r)
{
    res_t *x = arg;
    x->calls++;
    x->r = *r;
}

static void check(env_t *e, STACK_OF(X509) * chain, const rev_policy_t *p, int64_t at, res_t *out)
{
    memset(out, 0, sizeof(*out));
    ASSERT_EQ(rev_check_start(e->ctx, NULL, chain, p, at, on_rev, out), 0);
    ASSERT_EQ(out->calls, 0); /* never from inside start */
    while (out->calls == 0)
        uv_run(&e->loop, UV_RUN_ONCE);
    ASSERT_EQ(out->calls, 1);
}

/* leaf (a copy of `from`, re-signed by inter with the given CDP URIs), inter, root. */
static STACK_OF(X509) * chain_with(lab_leaf_t from, const char *const *cdp, const char *aia)
{
    X509 *x = X509_dup(pki.leaf[from].cert);
    int i;
    while ((i = X509_get_ext_by_NID(x, NID_crl_distribution_points, -1)) >= 0)
        X509_EXTENSION_free(X509_delete_ext(x, i));
    while ((i = X509_get_ext_by_NID(x, NID_info_access, -1)) >= 0)
        X509_EXTENSION_free(X509_delete_ext(x, i));
    char v[2048] = "";
    for (size_t k = 0; cdp && cdp[k]; k++) {
        size_t n = strlen(v);
        snprintf(v + n, sizeof(v) - n, "%sURI:%s", k ? "," : "", cdp[k]);
    }
    if (v[0]) {
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_crl_distribution_points, v);
        ASSERT(ext != NULL && X509_add_ext(x, ext, -1));
        X509_EXTENSION_free(ext);
    }
    if (aia) {
        snprintf(v, sizeof(v), "caIssuers;URI:%s", aia);
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_info_access, v);
        ASSERT(ext != NULL && X509_add_ext(x, ext, -1));
        X509_EXTENSION_free(ext);
    }
    ASSERT(X509_sign(x, pki.inter.key, EVP_sha256()) > 0);
    STACK_OF(X509) *sk = sk_X509_new_null();
    sk_X509_push(sk, x);
    X509_up_ref(pki.inter.cert);
    sk_X509_push(sk, pki.inter.cert);
    X509_up_ref(pki.root.cert);
    sk_X509_push(sk, pki.root.cert);
    return sk;
}

static STACK_OF(X509) * chain_cdp(lab_leaf_t from, const char *path)
{
    char url[256];
    snprintf(url, sizeof(url), "%s%s", base, path);
    const char *cdp[] = {url, NULL};
    return chain_with(from, cdp, NULL);
}

static void free_chain(STACK_OF(X509) * sk)
{
    sk_X509_pop_free(sk, X509_free);
}

/* Serves a CRL by inter (or by `by`) at path. */
static void serve_crl(const char *path, const lab_cert_t *by, const X509 *const *revoked, size_t n,
                      int64_t this_off, int64_t next_off)
{
    unsigned char *der;
    size_t len;
    char err[256];
    ASSERT_EQ(
        lab_crl_make(&der, &len, by ? by : &pki.inter, revoked, n, this_off, next_off, NULL, err),
        0);
    lab_http_set(srv, path, 200, der, len, "application/pkix-crl");
    free(der);
}

static int closed_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(s >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ASSERT_EQ(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t l = sizeof(a);
    ASSERT_EQ(getsockname(s, (struct sockaddr *)&a, &l), 0);
    close(s);
    return ntohs(a.sin_port);
}

/* ---- the lab's own chain: inter.crl lists the revoked leaf ---------------------------------- */

static STACK_OF(X509) * lab_chain(lab_leaf_t leaf)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509_up_ref(pki.leaf[leaf].cert);
    sk_X509_push(sk, pki.leaf[leaf].cert);
    X509_up_ref(pki.inter.cert);
    sk_X509_push(sk, pki.inter.cert);
    X509_up_ref(pki.root.cert);
    sk_X509_push(sk, pki.root.cert);
    return sk;
}

static void test_good_then_revoked_from_cache(void)
{
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    STACK_OF(X509) *good = lab_chain(LAB_LEAF_GOOD), *revoked = lab_chain(LAB_LEAF_REVOKED);
    unsigned hits0 = lab_http_hits(srv, "/inter.crl");
    res_t r;

    check(&e, good, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.warnings, 0);
    ASSERT_EQ(r.r.nurls, 1);
    ASSERT_STREQ(r.r.urls[0].kind, "crl");
    ASSERT_EQ(r.r.urls[0].ok, 1);
    ASSERT_EQ(r.r.urls[0].from_cache, 0);
    ASSERT_EQ(r.r.urls[0].http_status, 200);
    ASSERT_EQ(r.r.urls[0].bytes, pki.inter_crl_len);
    ASSERT_EQ(r.r.urls[0].cert_depth, 0);
    ASSERT(r.r.urls[0].next_update > now + 6 * DAY);
    ASSERT(r.r.urls[0].this_update <= now);
    ASSERT_STREQ(r.r.urls[0].error, "");
    ASSERT_EQ(r.r.revoked_depth, -1);
    ASSERT_EQ(lab_http_hits(srv, "/inter.crl"), hits0 + 1);

    check(&e, revoked, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CERT_REVOKED);
    ASSERT_EQ(r.r.revoked_depth, 0);
    ASSERT_EQ(r.r.revoked_reason, 1); /* keyCompromise */
    ASSERT(r.r.revoked_at <= now && r.r.revoked_at > now - DAY);
    ASSERT_EQ(r.r.urls[0].from_cache, 1);
    ASSERT_EQ(r.r.urls[0].ok, 1);
    ASSERT_CONTAINS(r.r.message, "revoked");
    ASSERT_CONTAINS(r.r.message, "keyCompromise");
    ASSERT_EQ(lab_http_hits(srv, "/inter.crl"), hits0 + 1); /* parsed CRL reused */

    /* Soft-fail never forgives a revoked certificate. */
    p.mode = REV_SOFT_FAIL;
    check(&e, revoked, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CERT_REVOKED);

    /* A forecast past nextUpdate: the cached CRL is stale there, without a refetch. */
    p.mode = REV_STRICT;
    check(&e, good, &p, now + 8 * DAY, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_EXPIRED);
    ASSERT_EQ(r.r.urls[0].from_cache, 1);
    ASSERT_EQ(lab_http_hits(srv, "/inter.crl"), hits0 + 1);

    /* An endpoint clock far behind sees a CRL that is not valid yet. */
    check(&e, good, &p, now - 3 * DAY, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_EXPIRED);
    ASSERT_CONTAINS(r.r.urls[0].error, "not yet valid");

    /* Another network view has its own cache entry. */
    p.view = "branch";
    check(&e, good, &p, now, &r);
    ASSERT_EQ(r.r.urls[0].from_cache, 0);
    ASSERT_EQ(lab_http_hits(srv, "/inter.crl"), hits0 + 2);

    rev_cache_stats_t st;
    rev_cache_stats(e.ctx, &st);
    ASSERT_EQ(st.entries, 2);
    ASSERT_EQ(st.fetches, 2);
    ASSERT(st.hits >= 4);
    free_chain(good);
    free_chain(revoked);
    env_close(&e);
}

static void test_scope(void)
{
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    STACK_OF(X509) *good = lab_chain(LAB_LEAF_GOOD);
    res_t r;

    /* chain_exclude_root: inter (against root.crl) first, then the leaf. */
    p.scope = REV_SCOPE_CHAIN_EXCLUDE_ROOT;
    check(&e, good, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.nurls, 2);
    ASSERT_EQ(r.r.urls[0].cert_depth, 1);
    ASSERT_CONTAINS(r.r.urls[0].url, "/root.crl");
    ASSERT_EQ(r.r.urls[1].cert_depth, 0);
    ASSERT_CONTAINS(r.r.urls[1].url, "/inter.crl");
    ASSERT_EQ(r.r.urls[0].ok, 1);
    ASSERT_EQ(r.r.urls[1].ok, 1);

    /* chain: the root has no CDP, so the same two. */
    p.scope = REV_SCOPE_CHAIN;
    check(&e, good, &p, now, &r);
    ASSERT_EQ(r.r.nurls, 2);

    /* off: nothing is fetched, nothing reported. */
    p.mode = REV_OFF;
    check(&e, good, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.nurls, 0);

    /* A chain of one self-signed certificate without CDP: nothing to check. */
    p.mode = REV_STRICT;
    STACK_OF(X509) *root = sk_X509_new_null();
    X509_up_ref(pki.root.cert);
    sk_X509_push(root, pki.root.cert);
    check(&e, root, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.nurls, 0);

    /* A leaf without any CDP is skipped. */
    STACK_OF(X509) *bare = chain_with(LAB_LEAF_GOOD, NULL, NULL);
    p.scope = REV_SCOPE_LEAF;
    check(&e, bare, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.nurls, 0);

    free_chain(root);
    free_chain(bare);
    free_chain(good);
    env_close(&e);
}

/* ---- one URL, one misbehaviour each --------------------------------------------------------- */

static void expect_cause(const char *path, rev_mode_t mode, fs_cause_t cause, uint32_t warnings,
                         const char *url_error)
{
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, mode);
    p.url_timeout_ms = 1500;
    p.max_bytes = 1 << 20;
    STACK_OF(X509) *chain = chain_cdp(LAB_LEAF_GOOD, path);
    res_t r;
    check(&e, chain, &p, now, &r);
    fprintf(stderr, "   %s %s: cause=%s warnings=%x message=%s url error=%s\n", path,
            rev_mode_names[mode], fs_cause_id(r.r.cause), r.r.warnings, r.r.message,
            r.r.nurls ? r.r.urls[0].error : "-");
    ASSERT_EQ(r.r.cause, cause);
    ASSERT_EQ(r.r.warnings, warnings);
    if (mode == REV_OFF) {
        ASSERT_EQ(r.r.nurls, 0);
    } else {
        ASSERT_EQ(r.r.nurls, 1);
        ASSERT_EQ(r.r.urls[0].ok, 0);
        ASSERT_CONTAINS(r.r.urls[0].error, url_error);
        ASSERT(r.r.message[0] != '\0');
    }
    free_chain(chain);
    env_close(&e);
}

#define SOFT FS_WARN_BIT(FS_WARN_REVOCATION_SOFT_FAIL)

static void test_expired_crl(void)
{
    serve_crl("/s/expired.crl", NULL, NULL, 0, -10 * DAY, -DAY);
    expect_cause("/s/expired.crl", REV_STRICT, FS_CAUSE_CRL_EXPIRED, 0, "CRL expired");
    /* Windows reports a stale CRL as offline revocation: soft-fail forgives it. */
    expect_cause("/s/expired.crl", REV_SOFT_FAIL, FS_CAUSE_NONE, SOFT, "CRL expired");
}

static void test_wrong_key_crl(void)
{
    lab_cert_t fake;
    char err[256];
    lab_cert_opts_t o = {.cn = "Lab Issuing CA 1", .is_ca = 1, .key_ec = 1};
    ASSERT_EQ(lab_cert_issue(&fake, &o, &pki.root, err), 0);
    serve_crl("/s/wrongkey.crl", &fake, NULL, 0, -3600, 7 * DAY);
    expect_cause("/s/wrongkey.crl", REV_STRICT, FS_CAUSE_CRL_INVALID, 0, "wrong issuer");
    expect_cause("/s/wrongkey.crl", REV_SOFT_FAIL, FS_CAUSE_CRL_INVALID, 0, "wrong issuer");
    lab_cert_free(&fake);

    /* The root's CRL where the inter's belongs. */
    serve_crl("/s/rootcrl.crl", &pki.root, NULL, 0, -3600, 7 * DAY);
    expect_cause("/s/rootcrl.crl", REV_STRICT, FS_CAUSE_CRL_INVALID, 0, "wrong issuer");
}

static void test_bad_signature(void)
{
    /* Right name and AKID, signature bytes broken. */
    unsigned char *der;
    size_t len;
    char err[256];
    ASSERT_EQ(lab_crl_make(&der, &len, &pki.inter, NULL, 0, -3600, 7 * DAY, NULL, err), 0);
    der[len - 5] ^= 0x5a;
    lab_http_set(srv, "/s/badsig.crl", 200, der, len, NULL);
    free(der);
    expect_cause("/s/badsig.crl", REV_STRICT, FS_CAUSE_CRL_INVALID, 0, "bad CRL signature");
}

static void test_garbage_crl(void)
{
    const char *html = "<html><body>Access denied by proxy</body></html>";
    lab_http_set(srv, "/s/garbage.crl", 200, html, strlen(html), "text/html");
    expect_cause("/s/garbage.crl", REV_STRICT, FS_CAUSE_CRL_INVALID, 0, "unparsable CRL");
    expect_cause("/s/garbage.crl", REV_SOFT_FAIL, FS_CAUSE_CRL_INVALID, 0, "unparsable CRL");
}

static void test_404(void)
{
    expect_cause("/s/missing.crl", REV_STRICT, FS_CAUSE_CRL_UNREACHABLE, 0, "HTTP 404");
    expect_cause("/s/missing.crl", REV_SOFT_FAIL, FS_CAUSE_NONE, SOFT, "HTTP 404");
    unsigned hits = lab_http_hits(srv, "/s/missing.crl");
    expect_cause("/s/missing.crl", REV_OFF, FS_CAUSE_NONE, 0, NULL);
    ASSERT_EQ(lab_http_hits(srv, "/s/missing.crl"), hits);
}

static void test_empty_body(void)
{
    lab_http_set(srv, "/s/empty.crl", 200, "", 0, NULL);
    expect_cause("/s/empty.crl", REV_STRICT, FS_CAUSE_CRL_UNREACHABLE, 0, "empty body");
}

static void test_dead_port(void)
{
    char path[64];
    /* chain_cdp prefixes base; build the whole URL here instead. */
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    snprintf(path, sizeof(path), "http://crl.lab.test:%d/x.crl", closed_port());
    const char *cdp[] = {path, NULL};
    STACK_OF(X509) *chain = chain_with(LAB_LEAF_GOOD, cdp, NULL);
    res_t r;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_CONTAINS(r.r.urls[0].error, "refused");
    ASSERT_CONTAINS(r.r.message, "revocation server offline");
    free_chain(chain);
    env_close(&e);
}

static void test_endless_over_cap(void)
{
    lab_http_set_special(srv, "/s/endless.crl", LAB_HTTP_ENDLESS);
    expect_cause("/s/endless.crl", REV_STRICT, FS_CAUSE_CRL_INVALID, 0, "over size cap");
}

static void test_trickle_timeout(void)
{
    lab_http_set_special(srv, "/s/trickle.crl", LAB_HTTP_TRICKLE);
    expect_cause("/s/trickle.crl", REV_STRICT, FS_CAUSE_CRL_UNREACHABLE, 0, "timed out");
}

static void test_unresolvable(void)
{
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    const char *cdp[] = {"http://crl.nowhere.invalid/inter.crl", NULL};
    STACK_OF(X509) *chain = chain_with(LAB_LEAF_GOOD, cdp, NULL);
    res_t r;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_CONTAINS(r.r.urls[0].error, "could not resolve host");
    free_chain(chain);
    env_close(&e);
}

static void test_expiring_soon(void)
{
    serve_crl("/s/soon.crl", NULL, NULL, 0, -3600, 3600);
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    STACK_OF(X509) *chain = chain_cdp(LAB_LEAF_GOOD, "/s/soon.crl");
    res_t r;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.warnings, FS_WARN_BIT(FS_WARN_CRL_EXPIRING_SOON));
    p.crl_expiring_soon_s = 60;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.warnings, 0);
    free_chain(chain);
    env_close(&e);
}

/* ---- several URLs ------------------------------------------------------------------------- */

static void test_url_order(void)
{
    serve_crl("/s/ok.crl", NULL, NULL, 0, -3600, 7 * DAY);
    serve_crl("/s/stale.crl", NULL, NULL, 0, -10 * DAY, -DAY);
    char ok[256], missing[256], stale[256];
    snprintf(ok, sizeof(ok), "%s/s/ok.crl", base);
    snprintf(missing, sizeof(missing), "%s/s/missing2.crl", base);
    snprintf(stale, sizeof(stale), "%s/s/stale.crl", base);
    const char *ldap = "ldap://dc.lab.test/CN=Lab%20Issuing%20CA%201?certificateRevocationList";
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    res_t r;

    /* A legacy ldap CDP first, then a working one: online, the ldap one reported. */
    const char *a[] = {ldap, missing, ok, NULL};
    STACK_OF(X509) *chain = chain_with(LAB_LEAF_GOOD, a, NULL);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.nurls, 3);
    ASSERT_CONTAINS(r.r.urls[0].error, "ldap URL not retrieved");
    ASSERT_STREQ(r.r.urls[1].error, "HTTP 404");
    ASSERT_EQ(r.r.urls[2].ok, 1);
    free_chain(chain);

    /* ldap only: offline for strict, forgiven by soft-fail. */
    const char *b[] = {ldap, NULL};
    chain = chain_with(LAB_LEAF_GOOD, b, NULL);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    p.mode = REV_SOFT_FAIL;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.warnings, SOFT);
    ASSERT_CONTAINS(r.r.message, "soft-fail");
    free_chain(chain);

    /* Unreachable, then stale: the stale CRL is the more telling failure. */
    p.mode = REV_STRICT;
    const char *c[] = {missing, stale, NULL};
    chain = chain_with(LAB_LEAF_GOOD, c, NULL);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_EXPIRED);
    ASSERT_EQ(r.r.urls[0].from_cache, 1); /* the 404 is cached negatively */
    free_chain(chain);

    /* A revoked leaf behind a dead first URL is still revoked. */
    const char *d[] = {missing, ok, NULL};
    serve_crl("/s/ok.crl", NULL, (const X509 *const *)&pki.leaf[LAB_LEAF_REVOKED].cert, 1, -3600,
              7 * DAY);
    rev_ctx_t *fresh;
    ASSERT_EQ(rev_ctx_new(&fresh, &e.loop, NULL), 0);
    chain = chain_with(LAB_LEAF_REVOKED, d, NULL);
    memset(&r, 0, sizeof(r));
    ASSERT_EQ(rev_check_start(fresh, NULL, chain, &p, now, on_rev, &r), 0);
    while (r.calls == 0)
        uv_run(&e.loop, UV_RUN_ONCE);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CERT_REVOKED);
    ASSERT_EQ(r.r.nurls, 2);
    int closed = 0;
    rev_ctx_close(fresh, on_closed, &closed);
    while (!closed)
        uv_run(&e.loop, UV_RUN_ONCE);
    free_chain(chain);
    env_close(&e);
}

static void test_budget(void)
{
    lab_http_set_special(srv, "/s/stall1.crl", LAB_HTTP_STALL);
    lab_http_set_special(srv, "/s/stall2.crl", LAB_HTTP_STALL);
    lab_http_set_special(srv, "/s/stall3.crl", LAB_HTTP_STALL);
    char u1[256], u2[256], u3[256];
    snprintf(u1, sizeof(u1), "%s/s/stall1.crl", base);
    snprintf(u2, sizeof(u2), "%s/s/stall2.crl", base);
    snprintf(u3, sizeof(u3), "%s/s/stall3.crl", base);
    const char *cdp[] = {u1, u2, u3, NULL};
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    p.url_timeout_ms = 600;
    p.budget_ms = 900;
    STACK_OF(X509) *chain = chain_with(LAB_LEAF_GOOD, cdp, NULL);
    res_t r;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_EQ(r.r.nurls, 3);
    ASSERT_CONTAINS(r.r.urls[0].error, "timed out");
    /* The second URL only gets what is left of the budget, the third (almost) nothing. */
    ASSERT(r.r.urls[1].time_ms < 600);
    ASSERT(strstr(r.r.urls[2].error, "budget") || strstr(r.r.urls[2].error, "timed out"));
    free_chain(chain);
    env_close(&e);
}

/* ---- cache, single flight, cancel --------------------------------------------------------- */

static void test_single_flight(void)
{
    enum { N = 200 };
    serve_crl("/s/flight.crl", NULL, NULL, 0, -3600, 7 * DAY);
    lab_http_set_delay_ms(srv, "/s/flight.crl", 200);
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    STACK_OF(X509) *chain = chain_cdp(LAB_LEAF_GOOD, "/s/flight.crl");
    static res_t r[N];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < N; i++)
        ASSERT_EQ(rev_check_start(e.ctx, NULL, chain, &p, now, on_rev, &r[i]), 0);
    int done;
    do {
        uv_run(&e.loop, UV_RUN_ONCE);
        done = 0;
        for (int i = 0; i < N; i++)
            done += r[i].calls;
    } while (done < N);
    for (int i = 0; i < N; i++) {
        ASSERT_EQ(r[i].calls, 1);
        ASSERT_EQ(r[i].r.cause, FS_CAUSE_NONE);
        ASSERT_EQ(r[i].r.urls[0].ok, 1);
    }
    ASSERT_EQ(lab_http_hits(srv, "/s/flight.crl"), 1);
    rev_cache_stats_t st;
    rev_cache_stats(e.ctx, &st);
    ASSERT_EQ(st.fetches, 1);
    ASSERT_EQ(st.joined, N - 1);
    free_chain(chain);
    env_close(&e);
}

static void test_negative_cache(void)
{
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    STACK_OF(X509) *chain = chain_cdp(LAB_LEAF_GOOD, "/s/dead.crl");
    unsigned h0 = lab_http_hits(srv, "/s/dead.crl");
    res_t r;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_EQ(r.r.urls[0].from_cache, 0);
    /* The CRL appears, but a dead CDP is not asked again within the negative TTL. */
    serve_crl("/s/dead.crl", NULL, NULL, 0, -3600, 7 * DAY);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_EQ(r.r.urls[0].from_cache, 1);
    ASSERT_STREQ(r.r.urls[0].error, "HTTP 404");
    ASSERT_EQ(r.r.urls[0].http_status, 404);
    ASSERT_EQ(lab_http_hits(srv, "/s/dead.crl"), h0 + 1);
    free_chain(chain);
    env_close(&e);

    /* max_age 0: nothing is kept, every check fetches. */
    rev_cache_limits_t lim = {.max_age_s = 0, .max_bytes_total = 1 << 20};
    env_open(&e, &lim);
    chain = chain_cdp(LAB_LEAF_GOOD, "/s/dead.crl");
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.urls[0].from_cache, 0);
    ASSERT_EQ(lab_http_hits(srv, "/s/dead.crl"), h0 + 3);
    free_chain(chain);
    env_close(&e);
}

static void test_lru_bound(void)
{
    char path[64];
    res_t r;
    rev_policy_t p;
    policy(&p, REV_STRICT);
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof(path), "/s/lru%d.crl", i);
        serve_crl(path, NULL, NULL, 0, -3600, 7 * DAY);
    }
    /* What one entry costs (all six are the same size)... */
    env_t e;
    env_open(&e, NULL);
    STACK_OF(X509) *chain = chain_cdp(LAB_LEAF_GOOD, "/s/lru0.crl");
    check(&e, chain, &p, now, &r);
    free_chain(chain);
    rev_cache_stats_t st;
    rev_cache_stats(e.ctx, &st);
    ASSERT_EQ(st.entries, 1);
    size_t one = st.bytes;
    env_close(&e);

    /* ...then room for two and a half: the oldest go, the total stays under the bound. */
    rev_cache_limits_t lim = {.max_age_s = 3600, .max_bytes_total = 2 * one + one / 2};
    env_open(&e, &lim);
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof(path), "/s/lru%d.crl", i);
        chain = chain_cdp(LAB_LEAF_GOOD, path);
        check(&e, chain, &p, now, &r);
        ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
        ASSERT_EQ(r.r.urls[0].from_cache, 0);
        free_chain(chain);
        rev_cache_stats(e.ctx, &st);
        ASSERT(st.bytes <= lim.max_bytes_total);
        ASSERT_EQ(st.entries, i < 2 ? (size_t)i + 1 : 2);
    }
    /* lru5 is cached, lru0 was evicted. */
    STACK_OF(X509) *c5 = chain_cdp(LAB_LEAF_GOOD, "/s/lru5.crl");
    STACK_OF(X509) *c0 = chain_cdp(LAB_LEAF_GOOD, "/s/lru0.crl");
    check(&e, c5, &p, now, &r);
    ASSERT_EQ(r.r.urls[0].from_cache, 1);
    check(&e, c0, &p, now, &r);
    ASSERT_EQ(r.r.urls[0].from_cache, 0);
    ASSERT_EQ(lab_http_hits(srv, "/s/lru0.crl"), 3);
    free_chain(c5);
    free_chain(c0);
    env_close(&e);
}

/* A CRL larger than the whole budget neither flushes the cache nor is fetched on every check
 * (issue 15.3): it is kept alone outside the budget; a second one is refused, and even then its
 * URL is not fetched again within the negative TTL. */
static void test_oversized_crl(void)
{
    char err[256];
    unsigned char *der;
    size_t len;
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(lab_crl_make_bulk(&der, &len, &pki.inter, 3000, -3600, 7 * DAY, err), 0);
        lab_http_set(srv, i ? "/s/big2.crl" : "/s/big.crl", 200, der, len, "application/pkix-crl");
        free(der);
    }
    serve_crl("/s/small0.crl", NULL, NULL, 0, -3600, 7 * DAY);
    serve_crl("/s/small1.crl", NULL, NULL, 0, -3600, 7 * DAY);
    STACK_OF(X509) *small0 = chain_cdp(LAB_LEAF_GOOD, "/s/small0.crl");
    STACK_OF(X509) *small1 = chain_cdp(LAB_LEAF_GOOD, "/s/small1.crl");
    STACK_OF(X509) *big = chain_cdp(LAB_LEAF_GOOD, "/s/big.crl");
    STACK_OF(X509) *big2 = chain_cdp(LAB_LEAF_GOOD, "/s/big2.crl");
    /* Room for the small CRLs, not for 3,000 entries (~1.2 MB once parsed). */
    rev_cache_limits_t lim = {.max_age_s = 3600, .max_bytes_total = 64 * 1024};
    env_t e;
    env_open(&e, &lim);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    rev_cache_stats_t st;
    res_t r;

    check(&e, small0, &p, now, &r);
    check(&e, small1, &p, now, &r);
    rev_cache_stats(e.ctx, &st);
    size_t small_bytes = st.bytes;
    ASSERT(small_bytes < lim.max_bytes_total);

    check(&e, big, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.urls[0].from_cache, 0);
    rev_cache_stats(e.ctx, &st);
    ASSERT_EQ(st.entries, 3);
    /* Charged what 3,000 parsed entries hold: more than 300 bytes each. */
    ASSERT(st.bytes - small_bytes > 3000 * 300);
    for (int i = 0; i < 3; i++) {
        check(&e, small0, &p, now, &r);
        ASSERT_EQ(r.r.urls[0].from_cache, 1);
        check(&e, small1, &p, now, &r);
        ASSERT_EQ(r.r.urls[0].from_cache, 1);
        check(&e, big, &p, now, &r);
        ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
        ASSERT_EQ(r.r.urls[0].from_cache, 1);
    }
    ASSERT_EQ(lab_http_hits(srv, "/s/big.crl"), 1);
    ASSERT_EQ(lab_http_hits(srv, "/s/small0.crl"), 1);

    /* A second oversized CRL while the first is fresh: used once, then refused. */
    check(&e, big2, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.urls[0].from_cache, 0);
    for (int i = 0; i < 3; i++) {
        check(&e, big2, &p, now, &r);
        ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_INVALID);
        ASSERT_EQ(r.r.urls[0].from_cache, 1);
        ASSERT_CONTAINS(r.r.urls[0].error, "crl_max_bytes_total");
    }
    ASSERT_EQ(lab_http_hits(srv, "/s/big2.crl"), 1);
    rev_cache_stats(e.ctx, &st);
    ASSERT_EQ(st.refused, 1);
    ASSERT_EQ(st.entries, 4);
    check(&e, big, &p, now, &r);
    ASSERT_EQ(r.r.urls[0].from_cache, 1);
    check(&e, small0, &p, now, &r);
    ASSERT_EQ(r.r.urls[0].from_cache, 1);
    ASSERT_EQ(lab_http_hits(srv, "/s/big.crl"), 1);

    free_chain(small0);
    free_chain(small1);
    free_chain(big);
    free_chain(big2);
    env_close(&e);
}

/* Credentials of the group's proxy, or in a CDP URL, never reach a retrieval line or the
 * message an endpoint reports (issue 15.10). */
static void test_credentials_redacted(void)
{
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    char proxy[128];
    snprintf(proxy, sizeof(proxy), "http://user:s3cret@127.0.0.1:%d", closed_port());
    p.proxy = proxy;
    p.view = "proxy-with-credentials";
    STACK_OF(X509) *chain = chain_cdp(LAB_LEAF_GOOD, "/s/proxied.crl");
    res_t r;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_EQ(r.r.nurls, 1);
    ASSERT_CONTAINS(r.r.urls[0].error, "connection refused by proxy 127.0.0.1");
    ASSERT(strstr(r.r.urls[0].error, "s3cret") == NULL);
    ASSERT(strstr(r.r.message, "s3cret") == NULL);
    free_chain(chain);

    /* A CDP URL carrying credentials is shown with its password redacted. */
    policy(&p, REV_STRICT);
    char url[256];
    snprintf(url, sizeof(url), "http://cdp:p4ssw0rd@crl.lab.test:%d/s/cred.crl",
             lab_http_port(srv));
    const char *cdp[] = {url, NULL};
    chain = chain_with(LAB_LEAF_GOOD, cdp, NULL);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_CONTAINS(r.r.urls[0].url, "http://cdp:***@crl.lab.test:");
    ASSERT(strstr(r.r.urls[0].url, "p4ssw0rd") == NULL);
    ASSERT(strstr(r.r.urls[0].error, "p4ssw0rd") == NULL);
    ASSERT(strstr(r.r.message, "p4ssw0rd") == NULL);
    free_chain(chain);
    env_close(&e);
}

static void test_cancel(void)
{
    serve_crl("/s/slow.crl", NULL, NULL, 0, -3600, 7 * DAY);
    lab_http_set_delay_ms(srv, "/s/slow.crl", 300);
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    STACK_OF(X509) *chain = chain_cdp(LAB_LEAF_GOOD, "/s/slow.crl");
    res_t a = {0}, b = {0}, c = {0};
    rev_job_t *ja, *jc;
    ASSERT_EQ(rev_check_start(e.ctx, &ja, chain, &p, now, on_rev, &a), 0);
    ASSERT_EQ(rev_check_start(e.ctx, NULL, chain, &p, now, on_rev, &b), 0);
    ASSERT_EQ(rev_check_start(e.ctx, &jc, chain, &p, now, on_rev, &c), 0);
    rev_job_cancel(jc); /* before it even started */
    for (int i = 0; i < 5; i++)
        uv_run(&e.loop, UV_RUN_NOWAIT); /* a started the fetch, b joined */
    rev_job_cancel(ja);                 /* the fetch goes on for b */
    while (b.calls == 0)
        uv_run(&e.loop, UV_RUN_ONCE);
    ASSERT_EQ(a.calls, 0);
    ASSERT_EQ(c.calls, 0);
    ASSERT_EQ(b.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(b.r.urls[0].ok, 1);
    ASSERT_EQ(b.r.urls[0].from_cache, 0);

    /* The only waiter leaves: the retrieval stops, nothing is cached. */
    lab_http_set_special(srv, "/s/stall.crl", LAB_HTTP_STALL);
    STACK_OF(X509) *stall = chain_cdp(LAB_LEAF_GOOD, "/s/stall.crl");
    ASSERT_EQ(rev_check_start(e.ctx, &ja, stall, &p, now, on_rev, &a), 0);
    for (int i = 0; i < 5; i++)
        uv_run(&e.loop, UV_RUN_NOWAIT);
    rev_cache_stats_t st;
    rev_cache_stats(e.ctx, &st);
    ASSERT_EQ(st.entries, 2);
    rev_job_cancel(ja);
    rev_cache_stats(e.ctx, &st);
    ASSERT_EQ(st.entries, 1);
    ASSERT_EQ(a.calls, 0);
    free_chain(stall);
    free_chain(chain);
    env_close(&e);
}

/* Closing the context from inside a callback while other jobs wait on the same retrieval. */
typedef struct closer_s {
    rev_ctx_t *ctx;
    int calls, closed;
} closer_t;

static void on_rev_close(void *arg, const rev_result_t *r)
{
    closer_t *c = arg;
    c->calls++;
    rev_ctx_close(c->ctx, on_closed, &c->closed);
}

static void test_close_inside_callback(void)
{
    serve_crl("/s/close.crl", NULL, NULL, 0, -3600, 7 * DAY);
    lab_http_set_special(srv, "/s/close-stall.crl", LAB_HTTP_STALL);
    uv_loop_t loop;
    ASSERT_EQ(uv_loop_init(&loop), 0);
    closer_t c = {0};
    ASSERT_EQ(rev_ctx_new(&c.ctx, &loop, NULL), 0);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    STACK_OF(X509) *chain = chain_cdp(LAB_LEAF_GOOD, "/s/close.crl");
    STACK_OF(X509) *stall = chain_cdp(LAB_LEAF_GOOD, "/s/close-stall.crl");
    res_t others[3] = {0};
    ASSERT_EQ(rev_check_start(c.ctx, NULL, chain, &p, now, on_rev_close, &c), 0);
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(rev_check_start(c.ctx, NULL, chain, &p, now, on_rev, &others[i]), 0);
    ASSERT_EQ(rev_check_start(c.ctx, NULL, stall, &p, now, on_rev, &others[2]), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ASSERT_EQ(c.calls, 1);
    ASSERT_EQ(c.closed, 1);
    ASSERT_EQ(others[2].calls, 0);
    /* Jobs told before the closing one ran may have completed; none after. */
    ASSERT(others[0].calls + others[1].calls <= 2);
    ASSERT_EQ(uv_loop_close(&loop), 0);
    free_chain(chain);
    free_chain(stall);
}

/* ---- AIA ---------------------------------------------------------------------------------- */

typedef struct aia_res_s {
    int calls;
    X509 *issuer;
    int nissuers;
    rev_result_t r;
} aia_res_t;

static void on_aia(void *arg, STACK_OF(X509) * issuers, const rev_result_t *r)
{
    aia_res_t *x = arg;
    x->calls++;
    x->r = *r;
    x->nissuers = issuers ? sk_X509_num(issuers) : -1;
    if (issuers) {
        x->issuer = sk_X509_value(issuers, 0);
        X509_up_ref(x->issuer);
    }
}

static void aia(env_t *e, X509 *cert, const rev_policy_t *p, aia_res_t *out)
{
    memset(out, 0, sizeof(*out));
    ASSERT_EQ(rev_aia_start(e->ctx, NULL, cert, p, on_aia, out), 0);
    ASSERT_EQ(out->calls, 0);
    while (out->calls == 0)
        uv_run(&e->loop, UV_RUN_ONCE);
    ASSERT_EQ(out->calls, 1);
}

static void test_aia(void)
{
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    aia_res_t a;
    unsigned h0 = lab_http_hits(srv, "/inter.der");

    aia(&e, pki.leaf[LAB_LEAF_GOOD].cert, &p, &a);
    ASSERT_EQ(a.nissuers, 1);
    ASSERT_EQ(X509_cmp(a.issuer, pki.inter.cert), 0);
    ASSERT_EQ(a.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(a.r.warnings, FS_WARN_BIT(FS_WARN_AIA_FETCH_REQUIRED));
    ASSERT_EQ(a.r.nurls, 1);
    ASSERT_STREQ(a.r.urls[0].kind, "aia");
    ASSERT_EQ(a.r.urls[0].ok, 1);
    X509_free(a.issuer);

    /* Another leaf of the same CA: from the cache. */
    aia(&e, pki.leaf[LAB_LEAF_REVOKED].cert, &p, &a);
    ASSERT_EQ(a.nissuers, 1);
    ASSERT_EQ(a.r.urls[0].from_cache, 1);
    ASSERT_EQ(lab_http_hits(srv, "/inter.der"), h0 + 1);
    X509_free(a.issuer);

    /* The inter's own AIA gives the root. */
    aia(&e, pki.inter.cert, &p, &a);
    ASSERT_EQ(a.nissuers, 1);
    ASSERT_EQ(X509_cmp(a.issuer, pki.root.cert), 0);
    X509_free(a.issuer);

    /* 404, a payload that does not issue the cert, no AIA at all. */
    char url[256];
    snprintf(url, sizeof(url), "%s/s/missing.der", base);
    STACK_OF(X509) *c = chain_with(LAB_LEAF_GOOD, NULL, url);
    aia(&e, sk_X509_value(c, 0), &p, &a);
    ASSERT_EQ(a.nissuers, -1);
    ASSERT_EQ(a.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(a.r.warnings, 0);
    ASSERT_STREQ(a.r.urls[0].error, "HTTP 404");
    ASSERT_CONTAINS(a.r.message, "no AIA URL gave the issuer");
    free_chain(c);

    snprintf(url, sizeof(url), "%s/root.der", base);
    c = chain_with(LAB_LEAF_GOOD, NULL, url);
    aia(&e, sk_X509_value(c, 0), &p, &a);
    ASSERT_EQ(a.nissuers, -1);
    ASSERT_CONTAINS(a.r.urls[0].error, "no issuer");
    free_chain(c);

    c = chain_with(LAB_LEAF_GOOD, NULL, NULL);
    aia(&e, sk_X509_value(c, 0), &p, &a);
    ASSERT_EQ(a.nissuers, -1);
    ASSERT_EQ(a.r.nurls, 0);
    free_chain(c);
    env_close(&e);
}

static void test_sync_errors(void)
{
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    STACK_OF(X509) *empty = sk_X509_new_null();
    res_t r = {0};
    ASSERT_EQ(rev_check_start(e.ctx, NULL, empty, &p, now, on_rev, &r), UV_EINVAL);
    ASSERT_EQ(rev_check_start(e.ctx, NULL, NULL, &p, now, on_rev, &r), UV_EINVAL);
    ASSERT_EQ(rev_aia_start(e.ctx, NULL, NULL, &p, on_aia, &r), UV_EINVAL);
    sk_X509_free(empty);
    env_close(&e);
    ASSERT_EQ(r.calls, 0);
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[1024];
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
    char err[256], dir[] = "/tmp/fs-test-revoke-XXXXXX";
    now = (int64_t)time(NULL);
    srv = lab_http_start(err);
    ASSERT(srv != NULL);
    snprintf(base, sizeof(base), "http://crl.lab.test:%d", lab_http_port(srv));
    ASSERT_EQ(fs_resolve_add(&map, "crl.lab.test", "127.0.0.1", err), 0);
    ASSERT(mkdtemp(dir) != NULL);
    if (lab_pki_create(&pki, dir, "ns.lab.test", base, err) != 0) {
        fprintf(stderr, "%s\n", err);
        ASSERT(0);
    }
    lab_pki_publish(&pki, srv);

    RUN(test_good_then_revoked_from_cache);
    RUN(test_scope);
    RUN(test_expired_crl);
    RUN(test_wrong_key_crl);
    RUN(test_bad_signature);
    RUN(test_garbage_crl);
    RUN(test_404);
    RUN(test_empty_body);
    RUN(test_dead_port);
    RUN(test_endless_over_cap);
    RUN(test_trickle_timeout);
    RUN(test_unresolvable);
    RUN(test_expiring_soon);
    RUN(test_url_order);
    RUN(test_budget);
    RUN(test_single_flight);
    RUN(test_negative_cache);
    RUN(test_lru_bound);
    RUN(test_oversized_crl);
    RUN(test_credentials_redacted);
    RUN(test_cancel);
    RUN(test_close_inside_callback);
    RUN(test_aia);
    RUN(test_sync_errors);

    lab_http_stop(srv);
    lab_pki_free(&pki);
    fs_resolve_free(&map);
    rm_dir(dir);
    return 0;
}
