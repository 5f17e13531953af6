/* test_revoke.c - revocation checks and AIA retrieval against the lab PKI served by a real
 * loopback HTTP server: every cause, soft-fail and off, scope, budget, cache, single flight. */
#include "probes/revoke.h"

#include "lab/httpserver.h"
#include "lab/ocspd.h"
#include "lab/pki.h"
#include "lab/scenarios.h"
#include "probes/util.h"

#include "test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
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

/* A refused port (lab_closed_port: held bound, never listening, so no test beside this one can
 * take it). */
static int closed_port(void)
{
    int port = lab_closed_port();
    ASSERT(port > 0);
    return port;
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

    /* A legacy ldap CDP first (skipped: no directory in this view), a dead one, then a working
     * one: online, the ldap one reported as skipped, the dead one as revocation_url_dead. */
    const char *a[] = {ldap, missing, ok, NULL};
    STACK_OF(X509) *chain = chain_with(LAB_LEAF_GOOD, a, NULL);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.warnings, FS_WARN_BIT(FS_WARN_REVOCATION_URL_DEAD));
    ASSERT_EQ(r.r.nurls, 3);
    ASSERT_STREQ(r.r.urls[0].error, "skipped: no directory in this view");
    ASSERT_EQ(r.r.urls[0].skipped, 1);
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
    p.timeout_mode = REV_TIMEOUT_ACCUMULATIVE;
    p.budget_ms = 900;
    STACK_OF(X509) *chain = chain_with(LAB_LEAF_GOOD, cdp, NULL);
    res_t r;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_EQ(r.r.nurls, 3);
    ASSERT_CONTAINS(r.r.urls[0].error, "timed out");
    /* Each URL gets half of what is left of the budget. */
    ASSERT_EQ(r.r.urls[0].timeout_ms, 450);
    ASSERT(r.r.urls[1].timeout_ms <= 225);
    ASSERT(r.r.urls[1].time_ms < 450);
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
/* ---- chains with OCSP, several CDP URLs, freshestCRL ------------------------------------- */

/* leaf (new serial, the lab leaves' key) issued by inter with these CDP URIs (one distribution
 * point, in order), OCSP URL and freshestCRL; then inter, root. */
static STACK_OF(X509) * chain_opts(const char *const *cdp, const char *ocsp, const char *freshest)
{
    lab_cert_t leaf;
    char err[256];
    const char *sans[] = {"ns.lab.test", NULL};
    lab_cert_opts_t o = {.cn = "ns.lab.test",
                         .dns_sans = sans,
                         .key = pki.leaf[LAB_LEAF_GOOD].key,
                         .crl_urls = cdp,
                         .ocsp_url = ocsp,
                         .freshest_url = freshest};
    ASSERT_EQ(lab_cert_issue(&leaf, &o, &pki.inter, err), 0);
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509_up_ref(leaf.cert);
    sk_X509_push(sk, leaf.cert);
    lab_cert_free(&leaf);
    X509_up_ref(pki.inter.cert);
    sk_X509_push(sk, pki.inter.cert);
    X509_up_ref(pki.root.cert);
    sk_X509_push(sk, pki.root.cert);
    return sk;
}

static char *url_of(char *buf, size_t n, const char *path)
{
    snprintf(buf, n, "%s%s", base, path);
    return buf;
}

#define DEAD FS_WARN_BIT(FS_WARN_REVOCATION_URL_DEAD)

/* ---- OCSP --------------------------------------------------------------------------------- */

static lab_ocsp_t *ocsp_serve(const char *prefix, lab_ocsp_status_t st, const lab_cert_t *signer)
{
    lab_ocsp_opts_t o = {.issuer = &pki.inter, .signer = signer, .status = st};
    return lab_ocsp_serve(srv, prefix, &o);
}

static void test_ocsp_good_revoked_cached(void)
{
    char o[256], c[256];
    lab_ocsp_t *good = ocsp_serve("/ocsp/good", LAB_OCSP_GOOD, NULL);
    ocsp_serve("/ocsp/revoked", LAB_OCSP_REVOKED, NULL);
    serve_crl("/o/ok.crl", NULL, NULL, 0, -3600, 7 * DAY);
    const char *cdp[] = {url_of(c, sizeof(c), "/o/ok.crl"), NULL};
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    res_t r;

    /* good ends the certificate's check: the CDP is not asked. */
    STACK_OF(X509) *chain = chain_opts(cdp, url_of(o, sizeof(o), "/ocsp/good"), NULL);
    unsigned crl_hits = lab_http_hits(srv, "/o/ok.crl");
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.warnings, 0);
    ASSERT_EQ(r.r.nurls, 1);
    ASSERT_STREQ(r.r.urls[0].kind, "ocsp");
    ASSERT_EQ(r.r.urls[0].ok, 1);
    ASSERT_STREQ(r.r.urls[0].status, "good");
    ASSERT_EQ(r.r.urls[0].post, 0);
    ASSERT_EQ(r.r.urls[0].http_status, 200);
    ASSERT(r.r.urls[0].next_update > now);
    ASSERT_EQ(lab_http_hits(srv, "/o/ok.crl"), crl_hits);
    unsigned gets, posts;
    lab_ocsp_counts(good, &gets, &posts);
    ASSERT_EQ(gets, 1);
    ASSERT_EQ(posts, 0);

    /* Cached per (URL, certificate, view): the same certificate again is not asked again... */
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.urls[0].from_cache, 1);
    ASSERT_EQ(r.r.urls[0].ok, 1);
    lab_ocsp_counts(good, &gets, NULL);
    ASSERT_EQ(gets, 1);
    /* ...another certificate of the same CA is. */
    STACK_OF(X509) *other = chain_opts(cdp, o, NULL);
    check(&e, other, &p, now, &r);
    ASSERT_EQ(r.r.urls[0].from_cache, 0);
    ASSERT_STREQ(r.r.urls[0].status, "good");
    lab_ocsp_counts(good, &gets, NULL);
    ASSERT_EQ(gets, 2);
    free_chain(other);
    free_chain(chain);

    /* revoked is cert_revoked, said to come from OCSP, even though the CRL would pass it. */
    chain = chain_opts(cdp, url_of(o, sizeof(o), "/ocsp/revoked"), NULL);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CERT_REVOKED);
    ASSERT_EQ(r.r.nurls, 1);
    ASSERT_STREQ(r.r.urls[0].status, "revoked");
    ASSERT_CONTAINS(r.r.message, "OCSP");
    ASSERT_CONTAINS(r.r.message, "keyCompromise");
    ASSERT_EQ(r.r.revoked_depth, 0);
    ASSERT(r.r.revoked_at <= now && r.r.revoked_at > now - DAY);
    /* Soft-fail never forgives it; ocsp off goes to the CRL, which passes it. */
    p.mode = REV_SOFT_FAIL;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CERT_REVOKED);
    p.mode = REV_STRICT;
    p.ocsp = 0;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.nurls, 1);
    ASSERT_STREQ(r.r.urls[0].kind, "crl");
    free_chain(chain);
    env_close(&e);
}

/* ---- the cache across a restart: export, import --------------------------------------- */

typedef struct exported_s {
    size_t n;
    rev_cache_item_t it[8];
    char url[8][256], certid[8][256], view[8][32];
    unsigned char *body[8];
} exported_t;

static void on_export(void *arg, const rev_cache_item_t *it)
{
    exported_t *x = arg;
    ASSERT(x->n < 8);
    size_t i = x->n++;
    x->it[i] = *it;
    fs_strlcpy(x->url[i], it->url, sizeof(x->url[i]));
    fs_strlcpy(x->certid[i], it->certid, sizeof(x->certid[i]));
    fs_strlcpy(x->view[i], it->view, sizeof(x->view[i]));
    x->body[i] = malloc(it->len);
    memcpy(x->body[i], it->body, it->len);
    x->it[i].url = x->url[i];
    x->it[i].certid = x->certid[i];
    x->it[i].view = x->view[i];
    x->it[i].body = x->body[i];
}

/* What one context retrieved (a CRL, an OCSP answer, an AIA issuer) comes back in another
 * through export and import, and answers from the cache there without a request to the server;
 * the cursor exports each retrieval once; stale, duplicate and garbage items are refused. */
static void test_cache_export_import(void)
{
    char o[256];
    lab_ocsp_t *responder = ocsp_serve("/ocsp/persist", LAB_OCSP_GOOD, NULL);
    STACK_OF(X509) *good = lab_chain(LAB_LEAF_GOOD);
    STACK_OF(X509) *oc = chain_opts(NULL, url_of(o, sizeof(o), "/ocsp/persist"), NULL);
    env_t a, b;
    env_open(&a, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    res_t r;
    aia_res_t ar;
    exported_t x = {0};
    uint64_t cursor = 0;

    ASSERT_EQ(rev_cache_export(a.ctx, &cursor, on_export, &x), 0);
    check(&a, good, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    check(&a, oc, &p, now, &r);
    ASSERT_STREQ(r.r.urls[0].status, "good");
    aia(&a, pki.leaf[LAB_LEAF_GOOD].cert, &p, &ar);
    ASSERT_EQ(ar.nissuers, 1);
    X509_free(ar.issuer);
    ASSERT_EQ(rev_cache_export(a.ctx, &cursor, on_export, &x), 3);
    ASSERT_EQ(rev_cache_export(a.ctx, &cursor, on_export, &x), 0); /* each once */
    int seen = 0;
    for (size_t i = 0; i < x.n; i++) {
        ASSERT_STREQ(x.it[i].view, "lab");
        ASSERT(x.it[i].fetched_at >= now - 5 && x.it[i].fetched_at <= now + 60);
        ASSERT(x.it[i].expires_at > now);
        ASSERT_EQ(x.it[i].http_status, 200);
        if (x.it[i].kind == 'C') {
            ASSERT_CONTAINS(x.it[i].url, "/inter.crl");
            ASSERT_EQ(x.it[i].len, pki.inter_crl_len); /* the DER as served */
            ASSERT_EQ(memcmp(x.it[i].body, pki.inter_crl, pki.inter_crl_len), 0);
            ASSERT(x.it[i].next_update > now + 6 * DAY);
            ASSERT_STREQ(x.it[i].certid, "");
            seen |= 1;
        } else if (x.it[i].kind == 'O') {
            ASSERT(strlen(x.it[i].certid) > 20);
            ASSERT(x.it[i].next_update > now);
            seen |= 2;
        } else {
            ASSERT_EQ(x.it[i].kind, 'A');
            ASSERT(memcmp(x.it[i].body, "-----BEGIN CERTIFICATE-----", 27) == 0);
            seen |= 4;
        }
    }
    ASSERT_EQ(seen, 7);
    env_close(&a);

    unsigned crl0 = lab_http_hits(srv, "/inter.crl"), aia0 = lab_http_hits(srv, "/inter.der");
    unsigned gets0, gets;
    lab_ocsp_counts(responder, &gets0, NULL);
    env_open(&b, NULL);
    for (size_t i = 0; i < x.n; i++)
        ASSERT_EQ(rev_cache_import(b.ctx, &x.it[i]), 0);
    ASSERT_EQ(rev_cache_import(b.ctx, &x.it[0]), UV_EEXIST);
    rev_cache_stats_t st;
    rev_cache_stats(b.ctx, &st);
    ASSERT_EQ(st.entries, 3);
    ASSERT_EQ(st.fetches, 0);
    uint64_t cur_b = 0;
    exported_t none = {0};
    ASSERT_EQ(rev_cache_export(b.ctx, &cur_b, on_export, &none), 0); /* imported: not again */

    check(&b, good, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.urls[0].from_cache, 1);
    ASSERT_EQ(r.r.urls[0].bytes, pki.inter_crl_len);
    STACK_OF(X509) *revoked = lab_chain(LAB_LEAF_REVOKED);
    check(&b, revoked, &p, now, &r); /* the imported CRL still lists the revoked leaf */
    ASSERT_EQ(r.r.cause, FS_CAUSE_CERT_REVOKED);
    ASSERT_EQ(r.r.urls[0].from_cache, 1);
    free_chain(revoked);
    check(&b, oc, &p, now, &r);
    ASSERT_STREQ(r.r.urls[0].status, "good");
    ASSERT_EQ(r.r.urls[0].from_cache, 1);
    aia(&b, pki.leaf[LAB_LEAF_GOOD].cert, &p, &ar);
    ASSERT_EQ(ar.nissuers, 1);
    ASSERT_EQ(ar.r.urls[0].from_cache, 1);
    X509_free(ar.issuer);
    ASSERT_EQ(lab_http_hits(srv, "/inter.crl"), crl0);
    ASSERT_EQ(lab_http_hits(srv, "/inter.der"), aia0);
    lab_ocsp_counts(responder, &gets, NULL);
    ASSERT_EQ(gets, gets0);
    env_close(&b);

    /* Stale (by its own expiry or the importing context's max age), garbage, unknown kind. */
    rev_cache_limits_t short_age = {.max_age_s = 60, .max_bytes_total = (size_t)64 << 20};
    env_open(&b, &short_age);
    rev_cache_item_t it = x.it[0];
    it.expires_at = now - 1;
    ASSERT_EQ(rev_cache_import(b.ctx, &it), UV_ETIMEDOUT);
    it = x.it[0];
    it.fetched_at = now - 120;
    ASSERT_EQ(rev_cache_import(b.ctx, &it), UV_ETIMEDOUT);
    it = x.it[0];
    it.body = (const unsigned char *)"garbage";
    it.len = 7;
    ASSERT_EQ(rev_cache_import(b.ctx, &it), UV_EINVAL);
    it = x.it[0];
    it.kind = 'X';
    ASSERT_EQ(rev_cache_import(b.ctx, &it), UV_EINVAL);
    rev_cache_stats(b.ctx, &st);
    ASSERT_EQ(st.entries, 0);
    env_close(&b);

    for (size_t i = 0; i < x.n; i++)
        free(x.body[i]);
    free_chain(good);
    free_chain(oc);
}

/* Each OCSP failure falls over to the CRL: online, the OCSP line failed, revocation_url_dead;
 * without a CDP it is revocation offline. */
static void expect_ocsp_failover(const char *prefix, const char *url_error, uint32_t timeout_ms)
{
    char o[600], c[256];
    serve_crl("/o/fallback.crl", NULL, NULL, 0, -3600, 7 * DAY);
    const char *cdp[] = {url_of(c, sizeof(c), "/o/fallback.crl"), NULL};
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    if (timeout_ms)
        p.url_timeout_ms = timeout_ms;
    res_t r;
    STACK_OF(X509) *chain = chain_opts(cdp, url_of(o, sizeof(o), prefix), NULL);
    check(&e, chain, &p, now, &r);
    fprintf(stderr, "   %s: cause=%s warnings=%x ocsp error=%s\n", prefix, fs_cause_id(r.r.cause),
            r.r.warnings, r.r.urls[0].error);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.warnings, DEAD);
    ASSERT_EQ(r.r.nurls, 2);
    ASSERT_STREQ(r.r.urls[0].kind, "ocsp");
    ASSERT_EQ(r.r.urls[0].ok, 0);
    ASSERT_CONTAINS(r.r.urls[0].error, url_error);
    ASSERT_STREQ(r.r.urls[1].kind, "crl");
    ASSERT_EQ(r.r.urls[1].ok, 1);
    ASSERT_CONTAINS(r.r.message, "revocation URL dead");
    free_chain(chain);

    /* No CDP: revocation offline, forgiven by soft-fail. */
    chain = chain_opts(NULL, o, NULL);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_EQ(r.r.nurls, 1);
    p.mode = REV_SOFT_FAIL;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.warnings, SOFT);
    free_chain(chain);
    env_close(&e);
}

static void test_ocsp_failover(void)
{
    lab_cert_t delegate, wrong, other_ca;
    char err[256];
    lab_cert_opts_t o = {.cn = "Lab OCSP Responder", .key_ec = 1, .ocsp_signing = 1};
    ASSERT_EQ(lab_cert_issue(&delegate, &o, &pki.inter, err), 0);
    /* A certificate of the right CA that may not sign OCSP (serverAuth only)... */
    o = (lab_cert_opts_t){.cn = "Not A Responder", .key_ec = 1};
    ASSERT_EQ(lab_cert_issue(&wrong, &o, &pki.inter, err), 0);
    /* ...and a responder of another CA. */
    o = (lab_cert_opts_t){.cn = "Rogue OCSP", .key_ec = 1, .ocsp_signing = 1};
    ASSERT_EQ(lab_cert_issue(&other_ca, &o, &pki.rogue_root, err), 0);

    ocsp_serve("/ocsp/unknown", LAB_OCSP_UNKNOWN, NULL);
    lab_ocsp_opts_t oo = {.issuer = &pki.inter, .garbage = 1};
    lab_ocsp_serve(srv, "/ocsp/garbage", &oo);
    ocsp_serve("/ocsp/wrongsigner", LAB_OCSP_GOOD, &wrong);
    ocsp_serve("/ocsp/rogue", LAB_OCSP_GOOD, &other_ca);
    oo = (lab_ocsp_opts_t){
        .issuer = &pki.inter, .this_update_off_s = -3 * DAY, .next_update_off_s = -DAY};
    lab_ocsp_serve(srv, "/ocsp/stale", &oo);
    oo = (lab_ocsp_opts_t){.issuer = &pki.inter, .delay_ms = 3000};
    lab_ocsp_serve(srv, "/ocsp/slow", &oo);
    oo = (lab_ocsp_opts_t){.issuer = &pki.inter, .resp_status = 3};
    lab_ocsp_serve(srv, "/ocsp/trylater", &oo);

    expect_ocsp_failover("/ocsp/unknown", "status unknown", 0);
    expect_ocsp_failover("/ocsp/garbage", "unusable OCSP response", 0);
    expect_ocsp_failover("/ocsp/wrongsigner", "lacks id-kp-OCSPSigning", 0);
    expect_ocsp_failover("/ocsp/rogue", "neither the issuing CA nor a responder", 0);
    expect_ocsp_failover("/ocsp/stale", "stale OCSP response", 0);
    expect_ocsp_failover("/ocsp/slow", "timed out", 500);
    expect_ocsp_failover("/ocsp/trylater", "tryLater", 0);
    expect_ocsp_failover("/ocsp/none", "HTTP 404", 0);

    /* A delegated responder (id-kp-OCSPSigning, issued by the CA) is trusted. */
    ocsp_serve("/ocsp/delegated", LAB_OCSP_GOOD, &delegate);
    char url[256];
    STACK_OF(X509) *chain = chain_opts(NULL, url_of(url, sizeof(url), "/ocsp/delegated"), NULL);
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    res_t r;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.urls[0].ok, 1);
    ASSERT_STREQ(r.r.urls[0].status, "good");
    free_chain(chain);
    env_close(&e);
    lab_cert_free(&delegate);
    lab_cert_free(&wrong);
    lab_cert_free(&other_ca);
}

/* A cached response's signature is verified once per issuer, not once per check; what depends
 * on the endpoint's time (a delegated responder's validity) is still decided per check. */
static void test_ocsp_signer_memo(void)
{
    lab_cert_t delegate, rogue;
    char err[256], url[256];
    lab_cert_opts_t o = {
        .cn = "Short Responder", .key_ec = 1, .ocsp_signing = 1, .not_after_off_s = 3600};
    ASSERT_EQ(lab_cert_issue(&delegate, &o, &pki.inter, err), 0);
    o = (lab_cert_opts_t){.cn = "Rogue Memo", .key_ec = 1, .ocsp_signing = 1};
    ASSERT_EQ(lab_cert_issue(&rogue, &o, &pki.rogue_root, err), 0);
    ocsp_serve("/ocsp/memo", LAB_OCSP_GOOD, &delegate);
    ocsp_serve("/ocsp/memo-rogue", LAB_OCSP_GOOD, &rogue);
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    res_t r;
    rev_cache_stats_t st;
    STACK_OF(X509) *chain = chain_opts(NULL, url_of(url, sizeof(url), "/ocsp/memo"), NULL);
    /* the responder certificate expires in an hour; the response is fresh for a day */
    const int64_t at[] = {now, now, now + 2 * 3600, now, now + 3 * 3600};
    for (size_t i = 0; i < FS_ARRAY_SIZE(at); i++) {
        check(&e, chain, &p, at[i], &r);
        ASSERT_EQ(r.r.urls[0].from_cache, i > 0);
        if (at[i] == now) {
            ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
            ASSERT_STREQ(r.r.urls[0].status, "good");
        } else {
            ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
            ASSERT_EQ(r.r.urls[0].ok, 0);
            ASSERT_CONTAINS(r.r.urls[0].error,
                            "\"Short Responder\" is not valid at the endpoint's");
        }
        rev_cache_stats(e.ctx, &st);
        ASSERT_EQ(st.sig_checks, 1);
    }
    free_chain(chain);

    /* a response no issuer certified fails the same way from the memo */
    chain = chain_opts(NULL, url_of(url, sizeof(url), "/ocsp/memo-rogue"), NULL);
    for (int i = 0; i < 3; i++) {
        check(&e, chain, &p, now, &r);
        ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
        ASSERT_CONTAINS(r.r.urls[0].error,
                        "\"Rogue Memo\", neither the issuing CA nor a responder");
        rev_cache_stats(e.ctx, &st);
        ASSERT_EQ(st.sig_checks, 2);
    }
    free_chain(chain);
    env_close(&e);
    lab_cert_free(&delegate);
    lab_cert_free(&rogue);
}

/* A responder at prefix and a chain whose leaf's OCSP URL is prefix + "/" + 200 characters: a
 * GET URL past 255 bytes, so the request is POSTed (RFC 5019). */
static lab_ocsp_t *post_responder(const char *prefix, STACK_OF(X509) * *chain)
{
    char path[300], url[400];
    snprintf(path, sizeof(path), "%s/%0200d", prefix, 0);
    lab_ocsp_t *resp = ocsp_serve(prefix, LAB_OCSP_GOOD, NULL);
    *chain = chain_opts(NULL, url_of(url, sizeof(url), path), NULL);
    return resp;
}

/* RFC 5019: a request whose GET URL would pass 255 bytes is POSTed. */
static void test_ocsp_post(void)
{
    STACK_OF(X509) * chain;
    lab_ocsp_t *resp = post_responder("/ocsp/post", &chain);
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    res_t r;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.urls[0].ok, 1);
    ASSERT_EQ(r.r.urls[0].post, 1);
    unsigned gets, posts;
    lab_ocsp_counts(resp, &gets, &posts);
    ASSERT_EQ(gets, 0);
    ASSERT_EQ(posts, 1);
    /* from the cache it still says how it was asked */
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.urls[0].from_cache, 1);
    ASSERT_EQ(r.r.urls[0].post, 1);
    lab_ocsp_counts(resp, NULL, &posts);
    ASSERT_EQ(posts, 1);
    free_chain(chain);
    env_close(&e);
}

/* An OCSP answer retrieved by POST and restored from the state database still says it was
 * POSTed (worked out once from the restored entry), and is not asked again. */
static void test_ocsp_post_restored(void)
{
    STACK_OF(X509) * chain;
    lab_ocsp_t *resp = post_responder("/ocsp/postdb", &chain);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    res_t r;
    env_t a, b;
    env_open(&a, NULL);
    check(&a, chain, &p, now, &r);
    ASSERT_EQ(r.r.urls[0].post, 1);
    exported_t x = {0};
    uint64_t cursor = 0;
    ASSERT(rev_cache_export(a.ctx, &cursor, on_export, &x) >= 1);
    env_close(&a);
    unsigned posts0, posts;
    lab_ocsp_counts(resp, NULL, &posts0);
    env_open(&b, NULL);
    for (size_t i = 0; i < x.n; i++)
        ASSERT_EQ(rev_cache_import(b.ctx, &x.it[i]), 0);
    for (int i = 0; i < 2; i++) {
        check(&b, chain, &p, now, &r);
        ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
        ASSERT_STREQ(r.r.urls[0].kind, "ocsp");
        ASSERT_EQ(r.r.urls[0].from_cache, 1);
        ASSERT_EQ(r.r.urls[0].post, 1);
    }
    lab_ocsp_counts(resp, NULL, &posts);
    ASSERT_EQ(posts, posts0);
    env_close(&b);
    for (size_t i = 0; i < x.n; i++)
        free(x.body[i]);
    free_chain(chain);
}

/* ---- CDP URL lists: dead, skipped --------------------------------------------------------- */

static void test_cdp_dead_then_good(void)
{
    char dead[256], ok[256];
    snprintf(dead, sizeof(dead), "http://crl.lab.test:%d/old.crl", closed_port());
    serve_crl("/d/ok.crl", NULL, NULL, 0, -3600, 7 * DAY);
    const char *cdp[] = {dead, url_of(ok, sizeof(ok), "/d/ok.crl"), NULL};
    STACK_OF(X509) *chain = chain_opts(cdp, NULL, NULL);
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    res_t r;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.warnings, DEAD);
    ASSERT_EQ(r.r.nurls, 2);
    ASSERT_EQ(r.r.urls[0].ok, 0);
    ASSERT_EQ(r.r.urls[0].skipped, 0);
    ASSERT_CONTAINS(r.r.urls[0].error, "refused");
    ASSERT_EQ(r.r.urls[1].ok, 1);
    ASSERT_CONTAINS(r.r.message, "old.crl");
    /* The same from the cache (the dead URL negatively): still a dead URL. */
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.warnings, DEAD);
    ASSERT_EQ(r.r.urls[0].from_cache, 1);
    free_chain(chain);
    env_close(&e);
}

static void test_cdp_skipped(void)
{
    char ok[256];
    serve_crl("/d/ok2.crl", NULL, NULL, 0, -3600, 7 * DAY);
    const char *ldap = "ldap:///CN=Lab%20Issuing%20CA%201,CN=dc1,CN=CDP,CN=Public%20Key%20Services,"
                       "CN=Services,CN=Configuration,DC=lab,DC=test?certificateRevocationList?base?"
                       "objectClass=cRLDistributionPoint";
    const char *file = "file://///fs1/pki/inter.crl";
    const char *cdp[] = {ldap, file, url_of(ok, sizeof(ok), "/d/ok2.crl"), NULL};
    STACK_OF(X509) *chain = chain_opts(cdp, NULL, NULL);
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    res_t r;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.warnings, 0); /* a skipped URL is not a dead one */
    ASSERT_EQ(r.r.nurls, 3);
    ASSERT_EQ(r.r.urls[0].skipped, 1);
    ASSERT_STREQ(r.r.urls[0].error, "skipped: no directory in this view");
    ASSERT_EQ(r.r.urls[0].time_ms, 0);
    ASSERT_EQ(r.r.urls[1].skipped, 1);
    ASSERT_CONTAINS(r.r.urls[1].error, "skipped: file://");
    ASSERT_EQ(r.r.urls[2].ok, 1);
    free_chain(chain);

    /* Nothing but skipped URLs: no usable revocation source, as an off-domain Windows client. */
    const char *only[] = {ldap, file, NULL};
    chain = chain_opts(only, NULL, NULL);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_CONTAINS(r.r.message, "no revocation URL can be retrieved in this view");
    p.mode = REV_SOFT_FAIL;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.warnings, SOFT);
    free_chain(chain);
    env_close(&e);
}

/* ---- delta CRLs --------------------------------------------------------------------------- */

static void serve_crl_ex(const char *path, const lab_crl_opts_t *o)
{
    unsigned char *der;
    size_t len;
    char err[256];
    ASSERT_EQ(lab_crl_make_ex(&der, &len, &pki.inter, o, err), 0);
    lab_http_set(srv, path, 200, der, len, "application/pkix-crl");
    free(der);
}

static void test_delta(void)
{
    char b[256], d[256], dd[256], ok[256];
    STACK_OF(X509) * chain;
    const char *cdp[] = {url_of(b, sizeof(b), "/delta/base.crl"), NULL};
    url_of(d, sizeof(d), "/delta/inter+.crl");
    snprintf(dd, sizeof(dd), "http://crl.lab.test:%d/inter+.crl", closed_port());
    chain = chain_opts(cdp, NULL, NULL);
    const X509 *leaf[] = {sk_X509_value(chain, 0)};
    lab_crl_opts_t bo = {.this_update_off_s = -3600,
                         .next_update_off_s = 7 * DAY,
                         .crl_number = 100,
                         .freshest_url = d};
    serve_crl_ex("/delta/base.crl", &bo);
    lab_crl_opts_t dopt = {.revoked = leaf,
                           .nrevoked = 1,
                           .this_update_off_s = -60,
                           .next_update_off_s = DAY,
                           .crl_number = 101,
                           .delta_base = 100};
    serve_crl_ex("/delta/inter+.crl", &dopt);
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    res_t r;

    /* The leaf is on the delta only: revoked. */
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CERT_REVOKED);
    ASSERT_EQ(r.r.nurls, 2);
    ASSERT_STREQ(r.r.urls[0].kind, "crl");
    ASSERT_EQ(r.r.urls[0].ok, 1);
    ASSERT_STREQ(r.r.urls[1].kind, "delta");
    ASSERT_EQ(r.r.urls[1].ok, 1);
    ASSERT_CONTAINS(r.r.message, "delta CRL");
    free_chain(chain);

    /* Another certificate of the CA, not on the delta: online, the delta from the cache. */
    chain = chain_opts(cdp, NULL, NULL);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.nurls, 2);
    ASSERT_EQ(r.r.urls[1].from_cache, 1);
    free_chain(chain);
    env_close(&e);

    /* The base names a dead delta URL: revocation offline (strict), soft-fail forgives. */
    serve_crl("/delta/ok.crl", NULL, NULL, 0, -3600, 7 * DAY);
    bo.freshest_url = dd;
    serve_crl_ex("/delta/base-dead.crl", &bo);
    const char *cdp2[] = {url_of(b, sizeof(b), "/delta/base-dead.crl"), NULL};
    chain = chain_opts(cdp2, NULL, NULL);
    env_open(&e, NULL);
    p.mode = REV_STRICT;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_EQ(r.r.nurls, 2);
    ASSERT_EQ(r.r.urls[0].ok, 1);
    ASSERT_STREQ(r.r.urls[1].kind, "delta");
    ASSERT_CONTAINS(r.r.urls[1].error, "refused");
    ASSERT_CONTAINS(r.r.message, "no usable delta CRL");
    p.mode = REV_SOFT_FAIL;
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.warnings, SOFT);
    free_chain(chain);

    /* A delta that does not fit the base (for a newer base) or is stale: also offline. */
    p.mode = REV_STRICT;
    dopt.nrevoked = 0;
    dopt.delta_base = 150;
    dopt.crl_number = 151;
    serve_crl_ex("/delta/ahead+.crl", &dopt);
    bo.freshest_url = url_of(d, sizeof(d), "/delta/ahead+.crl");
    serve_crl_ex("/delta/base-ahead.crl", &bo);
    const char *cdp3[] = {url_of(b, sizeof(b), "/delta/base-ahead.crl"), NULL};
    chain = chain_opts(cdp3, NULL, NULL);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_CONTAINS(r.r.urls[1].error, "newer base");
    free_chain(chain);

    /* No Freshest CRL on the base, but the certificate's freshestCRL names the delta. */
    dopt.delta_base = 100;
    dopt.crl_number = 101;
    dopt.nrevoked = 1;
    bo.freshest_url = NULL;
    serve_crl_ex("/delta/base-plain.crl", &bo);
    const char *cdp4[] = {url_of(ok, sizeof(ok), "/delta/base-plain.crl"), NULL};
    chain = chain_opts(cdp4, NULL, url_of(d, sizeof(d), "/delta/cert+.crl"));
    const X509 *leaf2[] = {sk_X509_value(chain, 0)};
    dopt.revoked = leaf2;
    serve_crl_ex("/delta/cert+.crl", &dopt);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CERT_REVOKED);
    ASSERT_STREQ(r.r.urls[1].kind, "delta");
    free_chain(chain);
    env_close(&e);
}

/* ---- timeout modes ------------------------------------------------------------------------ */

static void test_timeout_modes(void)
{
    int fds[4];
    int port = lab_blackhole("127.0.0.1", 0, fds);
    ASSERT(port > 0);
    char u1[128], u2[128], u3[128];
    snprintf(u1, sizeof(u1), "http://crl.lab.test:%d/a.crl", port);
    snprintf(u2, sizeof(u2), "http://crl.lab.test:%d/b.crl", port);
    snprintf(u3, sizeof(u3), "http://crl.lab.test:%d/c.crl", port);
    const char *cdp[] = {u1, u2, u3, NULL};
    STACK_OF(X509) *chain = chain_opts(cdp, NULL, NULL);
    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    res_t r;

    /* per_url (the default): every URL gets url_timeout_ms, whatever the budget says. */
    ASSERT_EQ(p.timeout_mode, REV_TIMEOUT_PER_URL);
    p.url_timeout_ms = 300;
    p.budget_ms = 100; /* not used in this mode */
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_EQ(r.r.nurls, 3);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(r.r.urls[i].timeout_ms, 300);
        ASSERT_CONTAINS(r.r.urls[i].error, "timed out");
        ASSERT(r.r.urls[i].time_ms >= 250);
    }
    /* ...bounded by the caller's deadline (max_total_ms): the third URL is never tried. */
    rev_ctx_t *c2;
    ASSERT_EQ(rev_ctx_new(&c2, &e.loop, NULL), 0); /* nothing negatively cached */
    p.max_total_ms = 500;
    memset(&r, 0, sizeof(r));
    ASSERT_EQ(rev_check_start(c2, NULL, chain, &p, now, on_rev, &r), 0);
    while (r.calls == 0)
        uv_run(&e.loop, UV_RUN_ONCE);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_EQ(r.r.urls[0].timeout_ms, 300);
    ASSERT(r.r.urls[1].timeout_ms <= 200 && r.r.urls[1].timeout_ms > 0);
    ASSERT_EQ(r.r.urls[2].timeout_ms, 0);
    ASSERT_CONTAINS(r.r.urls[2].error, "not tried");
    int closed = 0;
    rev_ctx_close(c2, on_closed, &closed);
    while (!closed)
        uv_run(&e.loop, UV_RUN_ONCE);

    /* accumulative: budget_ms in all, each URL half of what remains. */
    ASSERT_EQ(rev_ctx_new(&c2, &e.loop, NULL), 0);
    p.max_total_ms = 0;
    p.timeout_mode = REV_TIMEOUT_ACCUMULATIVE;
    p.url_timeout_ms = 15000; /* not used in this mode */
    p.budget_ms = 800;
    memset(&r, 0, sizeof(r));
    ASSERT_EQ(rev_check_start(c2, NULL, chain, &p, now, on_rev, &r), 0);
    while (r.calls == 0)
        uv_run(&e.loop, UV_RUN_ONCE);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CRL_UNREACHABLE);
    ASSERT_EQ(r.r.nurls, 3);
    ASSERT_EQ(r.r.urls[0].timeout_ms, 400);
    ASSERT(r.r.urls[1].timeout_ms > 0 && r.r.urls[1].timeout_ms <= 200);
    ASSERT(r.r.urls[2].timeout_ms <= 100);
    uint32_t total = 0;
    for (int i = 0; i < 3; i++)
        total += r.r.urls[i].timeout_ms;
    ASSERT(total <= 800);
    closed = 0;
    rev_ctx_close(c2, on_closed, &closed);
    while (!closed)
        uv_run(&e.loop, UV_RUN_ONCE);
    free_chain(chain);
    env_close(&e);
    for (int i = 0; i < 4; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* ---- LDAP through a real slapd ------------------------------------------------------------ */

/* A 127.0.0.1 port free now, for a server started here to listen on (bound, then released). */
static int free_port(void)
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

static int wait_port(int port)
{
    for (int i = 0; i < 250; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(s);
        if (ok)
            return 0;
        usleep(20000);
    }
    return -1;
}

/* An AD-CS-like ldap:/// CDP served by slapd (Debian's slapd, started here on 127.0.0.1 with a
 * throwaway configuration), fetched through libcurl's LDAP when the view names a directory. */
static void test_ldap_slapd(void)
{
    if (access("/usr/sbin/slapd", X_OK) != 0 || access("/usr/sbin/slapadd", X_OK) != 0) {
        fprintf(stderr,
                "   skipped: /usr/sbin/slapd not installed (scripts/deps.sh installs it)\n");
        return;
    }
    char dir[] = "/tmp/fs-test-slapd-XXXXXX", path[1200], cmd[3000], err[256];
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/db", dir);
    ASSERT_EQ(mkdir(path, 0700), 0);
    const char *dn = "cn=Lab Issuing CA 1,dc=lab,dc=test";
    const char *ldap = "ldap:///cn=Lab%20Issuing%20CA%201,dc=lab,dc=test?certificateRevocationList?"
                       "base?objectClass=cRLDistributionPoint";
    const char *missing = "ldap:///cn=Old%20CA,dc=lab,dc=test?certificateRevocationList?base?"
                          "objectClass=cRLDistributionPoint";
    const char *cdp[] = {ldap, NULL};
    STACK_OF(X509) *revoked = chain_opts(cdp, NULL, NULL), *good = chain_opts(cdp, NULL, NULL);
    const X509 *list[] = {sk_X509_value(revoked, 0)};
    unsigned char *der;
    size_t len;
    ASSERT_EQ(lab_crl_make(&der, &len, &pki.inter, list, 1, -3600, 7 * DAY, NULL, err), 0);
    char *b64 = malloc(len * 2 + 4);
    EVP_EncodeBlock((unsigned char *)b64, der, (int)len);
    free(der);

    snprintf(path, sizeof(path), "%s/slapd.conf", dir);
    FILE *f = fopen(path, "w");
    ASSERT(f != NULL);
    fprintf(f,
            "include /etc/ldap/schema/core.schema\npidfile %s/slapd.pid\n"
            "modulepath /usr/lib/ldap\nmoduleload back_mdb\ndatabase mdb\n"
            "suffix \"dc=lab,dc=test\"\nrootdn \"cn=admin,dc=lab,dc=test\"\ndirectory %s/db\n",
            dir, dir);
    fclose(f);
    snprintf(path, sizeof(path), "%s/data.ldif", dir);
    f = fopen(path, "w");
    ASSERT(f != NULL);
    fprintf(f,
            "dn: dc=lab,dc=test\nobjectClass: dcObject\nobjectClass: organization\no: lab\n"
            "dc: lab\n\ndn: %s\nobjectClass: cRLDistributionPoint\ncn: Lab Issuing CA 1\n"
            "certificateRevocationList;binary:: %s\n",
            dn, b64);
    fclose(f);
    free(b64);
    snprintf(cmd, sizeof(cmd),
             "/usr/sbin/slapadd -f %s/slapd.conf -l %s/data.ldif >%s/slapadd.log 2>&1", dir, dir,
             dir);
    ASSERT_EQ(system(cmd), 0);
    int port = free_port();
    char listen[64], conf[1100], logp[1100];
    snprintf(listen, sizeof(listen), "ldap://127.0.0.1:%d/", port);
    snprintf(conf, sizeof(conf), "%s/slapd.conf", dir);
    snprintf(logp, sizeof(logp), "%s/slapd.log", dir);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl("/usr/sbin/slapd", "slapd", "-f", conf, "-h", listen, "-d", "0", (char *)NULL);
        _exit(127);
    }
    ASSERT_EQ(wait_port(port), 0);

    env_t e;
    env_open(&e, NULL);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    char dirhost[64];
    snprintf(dirhost, sizeof(dirhost), "ldap.lab.test:%d", port);
    p.ldap_host = dirhost;
    p.view = "lab+ldap";
    res_t r;
    check(&e, revoked, &p, now, &r);
    fprintf(stderr, "   ldap revoked: cause=%s url error=%s message=%s\n", fs_cause_id(r.r.cause),
            r.r.urls[0].error, r.r.message);
    ASSERT_EQ(r.r.cause, FS_CAUSE_CERT_REVOKED);
    ASSERT_EQ(r.r.nurls, 1);
    ASSERT_EQ(r.r.urls[0].ok, 1);
    ASSERT_EQ(r.r.urls[0].skipped, 0);
    ASSERT_EQ(r.r.urls[0].http_status, 0);
    ASSERT(r.r.urls[0].bytes > 0);
    check(&e, good, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.urls[0].from_cache, 1);

    /* A directory that lacks the entry is a dead URL when an http one answers. */
    char ok[256];
    serve_crl("/l/ok.crl", NULL, NULL, 0, -3600, 7 * DAY);
    const char *cdp2[] = {missing, url_of(ok, sizeof(ok), "/l/ok.crl"), NULL};
    STACK_OF(X509) *chain = chain_opts(cdp2, NULL, NULL);
    check(&e, chain, &p, now, &r);
    fprintf(stderr, "   ldap missing entry: %s\n", r.r.urls[0].error);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(r.r.warnings, DEAD);
    ASSERT_CONTAINS(r.r.urls[0].error, "LDAP");
    ASSERT_EQ(r.r.urls[1].ok, 1);
    free_chain(chain);
    env_close(&e);

    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    ASSERT_EQ(system(cmd), 0);
    free_chain(revoked);
    free_chain(good);
}

/* rev_cache_peek: when an endpoint's cached copy runs out, read without touching the cache. */
static void test_cache_peek(void)
{
    char c[256], dead[256], o[256];
    serve_crl("/p/ok.crl", NULL, NULL, 0, -3600, 7 * DAY);
    ocsp_serve("/p/ocsp", LAB_OCSP_GOOD, NULL);
    snprintf(dead, sizeof(dead), "http://crl.lab.test:%d/p/dead.crl", closed_port());
    const char *cdp[] = {dead, url_of(c, sizeof(c), "/p/ok.crl"), NULL};
    STACK_OF(X509) *chain = chain_opts(cdp, NULL, NULL);
    X509 *leaf = sk_X509_value(chain, 0), *issuer = sk_X509_value(chain, 1);
    rev_cache_limits_t lim = {.max_age_s = 600, .max_bytes_total = (size_t)64 << 20};
    env_t e;
    env_open(&e, &lim);
    rev_policy_t p;
    policy(&p, REV_STRICT);
    rev_cache_entry_t ce;
    ASSERT_EQ(rev_cache_peek(e.ctx, "crl", c, leaf, issuer, &p, &ce), UV_ENOENT);
    res_t r;
    int64_t before = (int64_t)time(NULL);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    rev_cache_stats_t s1, s2;
    rev_cache_stats(e.ctx, &s1);
    /* the CRL: fresh until fetch + max age (before its nextUpdate) */
    ASSERT_EQ(rev_cache_peek(e.ctx, "crl", c, leaf, issuer, &p, &ce), 0);
    ASSERT_EQ(ce.ok, 1);
    int64_t after = (int64_t)time(NULL) + 1;
    ASSERT(ce.expires_ms >= (before + 600) * 1000 && ce.expires_ms <= (after + 600) * 1000);
    ASSERT(ce.next_update > now + 6 * DAY);
    int64_t ok_until = ce.expires_ms;
    /* the dead URL: a failure kept for the negative TTL, no payload */
    ASSERT_EQ(rev_cache_peek(e.ctx, "crl", dead, leaf, issuer, &p, &ce), 0);
    ASSERT_EQ(ce.ok, 0);
    /* settled in the same check as the CRL: the negative TTL, not the max age, after it */
    ASSERT(ce.expires_ms <= ok_until - (600 - REV_NEGATIVE_TTL_S - 5) * 1000);
    /* another view holds nothing; neither does an OCSP URL never asked */
    rev_policy_t other = p;
    other.view = "elsewhere";
    ASSERT_EQ(rev_cache_peek(e.ctx, "crl", c, leaf, issuer, &other, &ce), UV_ENOENT);
    url_of(o, sizeof(o), "/p/ocsp");
    ASSERT_EQ(rev_cache_peek(e.ctx, "ocsp", o, leaf, issuer, &p, &ce), UV_ENOENT);
    ASSERT_EQ(rev_cache_peek(e.ctx, "ocsp", o, NULL, NULL, &p, &ce), UV_EINVAL);
    /* ldap:// in a view without a directory is never retrieved, so never cached */
    ASSERT_EQ(rev_cache_peek(e.ctx, "crl", "ldap:///CN=CA,CN=CDP", leaf, issuer, &p, &ce),
              UV_ENOENT);
    /* peeking changed nothing the cache counts */
    rev_cache_stats(e.ctx, &s2);
    ASSERT_EQ(s2.hits, s1.hits);
    ASSERT_EQ(s2.entries, s1.entries);
    free_chain(chain);

    /* an OCSP answer is per certificate: found for this CertID only */
    chain = chain_opts(NULL, o, NULL);
    leaf = sk_X509_value(chain, 0);
    check(&e, chain, &p, now, &r);
    ASSERT_EQ(r.r.cause, FS_CAUSE_NONE);
    ASSERT_EQ(rev_cache_peek(e.ctx, "ocsp", o, leaf, issuer, &p, &ce), 0);
    ASSERT_EQ(ce.ok, 1);
    ASSERT_EQ(rev_cache_peek(e.ctx, "ocsp", o, pki.leaf[LAB_LEAF_GOOD].cert, issuer, &p, &ce),
              UV_ENOENT);
    free_chain(chain);
    env_close(&e);
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
    ASSERT_EQ(fs_resolve_add(&map, "ldap.lab.test", "127.0.0.1", err), 0);
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
    RUN(test_ocsp_good_revoked_cached);
    RUN(test_ocsp_failover);
    RUN(test_ocsp_signer_memo);
    RUN(test_cache_export_import);
    RUN(test_ocsp_post);
    RUN(test_ocsp_post_restored);
    RUN(test_cdp_dead_then_good);
    RUN(test_cdp_skipped);
    RUN(test_delta);
    RUN(test_timeout_modes);
    RUN(test_ldap_slapd);
    RUN(test_cache_peek);

    lab_http_stop(srv);
    lab_pki_free(&pki);
    fs_resolve_free(&map);
    rm_dir(dir);
    return 0;
}
