/* revcache.c - the cache of revocation retrievals per (URL, network view): parsed CRLs, OCSP
 * responses and AIA issuer certificates, with LRU bounds, negative entries, the one oversized
 * place, CRL signature memos, and the cache's outside: stats, export/import (the disk cache the
 * store keeps) and the read-only peek of revocation-source health. Single flight is revjob.c's. */
#include "probes/revoke_int.h"
#include "probes/ocsp.h"
#include "probes/util.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

uint64_t rev__key_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* "<kind><url>\x1f[<certid hex>\x1f]<view>": OCSP answers are per certificate too. */
char *rev__key_make(int kind, const char *url, const char *certid, const char *view)
{
    size_t n = strlen(url) + strlen(view) + strlen(certid) + 5;
    char *k = fs_xmalloc(n);
    snprintf(k, n, "%c%s\x1f%s%s%s", "CAO"[kind], url, certid, certid[0] ? "\x1f" : "", view);
    return k;
}

static void lru_unlink(rev_ctx_t *ctx, ent_t *e)
{
    if (!e->in_lru)
        return;
    e->in_lru = 0;
    ctx->lru_bytes -= e->cost;
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else if (ctx->lru_head == e)
        ctx->lru_head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else if (ctx->lru_tail == e)
        ctx->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_push_front(rev_ctx_t *ctx, ent_t *e)
{
    assert(!e->in_lru);
    e->in_lru = 1;
    ctx->lru_bytes += e->cost;
    e->lprev = NULL;
    e->lnext = ctx->lru_head;
    if (ctx->lru_head)
        ctx->lru_head->lprev = e;
    ctx->lru_head = e;
    if (ctx->lru_tail == NULL)
        ctx->lru_tail = e;
}

static void ent_clear_payload(ent_t *e)
{
    X509_CRL_free(e->crl);
    e->crl = NULL;
    sk_X509_pop_free(e->certs, X509_free);
    e->certs = NULL;
    OCSP_BASICRESP_free(e->bs);
    e->bs = NULL;
    for (unsigned i = 0; i < SIG_MEMO; i++) {
        EVP_PKEY_free(e->sig_good[i]);
        EVP_PKEY_free(e->sig_bad[i]);
        e->sig_good[i] = e->sig_bad[i] = NULL;
    }
    e->nsig_good = e->nsig_bad = 0;
    if (e->ocsp_memo)
        for (unsigned i = 0; i < SIG_MEMO; i++)
            X509_free(e->ocsp_memo[i].issuer);
    free(e->ocsp_memo);
    e->ocsp_memo = NULL;
    e->nocsp_memo = 0;
}

static void cache_grow(rev_ctx_t *ctx)
{
    size_t n = ctx->nbuckets * 2;
    ent_t **b = fs_xcalloc(n, sizeof(*b));
    for (size_t i = 0; i < ctx->nbuckets; i++) {
        ent_t *e = ctx->buckets[i];
        while (e) {
            ent_t *next = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(ctx->buckets);
    ctx->buckets = b;
    ctx->nbuckets = n;
}

ent_t *rev__cache_add(rev_ctx_t *ctx, int kind, const char *url, char *key, uint64_t hash)
{
    if (ctx->stats.entries + 1 > ctx->nbuckets)
        cache_grow(ctx);
    ent_t *e = fs_xcalloc(1, sizeof(*e));
    e->ctx = ctx;
    e->kind = kind;
    e->key = key;
    e->hash = hash;
    e->url = fs_xstrdup(url);
    e->hnext = ctx->buckets[hash & (ctx->nbuckets - 1)];
    ctx->buckets[hash & (ctx->nbuckets - 1)] = e;
    ctx->stats.entries++;
    return e;
}

/* Frees e; it must be idle (no retrieval, no waiters, not being dispatched). */
void rev__cache_remove(rev_ctx_t *ctx, ent_t *e)
{
    assert(!e->fetching && e->waiters == NULL && e->busy == 0);
    ent_t **pp = &ctx->buckets[e->hash & (ctx->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(ctx, e);
    if (ctx->oversize == e)
        ctx->oversize = NULL;
    ctx->stats.bytes -= e->cost;
    ctx->stats.entries--;
    ent_clear_payload(e);
    free(e->key);
    free(e->url);
    free(e);
}

/* The entry for key, or NULL; drops a stale completed entry. */
ent_t *rev__cache_lookup(rev_ctx_t *ctx, const char *key, uint64_t hash)
{
    ent_t *e = ctx->buckets[hash & (ctx->nbuckets - 1)];
    while (e && (e->hash != hash || strcmp(e->key, key) != 0))
        e = e->hnext;
    if (e && !e->fetching && e->busy == 0 && fs_wall_ms() >= e->expires_ms) {
        rev__cache_remove(ctx, e);
        return NULL;
    }
    return e;
}

void rev__cache_evict(rev_ctx_t *ctx)
{
    ent_t *e = ctx->lru_tail;
    while (e && ctx->lru_bytes > ctx->lim.max_bytes_total) {
        ent_t *prev = e->lprev;
        if (e->busy == 0 && e->waiters == NULL && !e->fetching)
            rev__cache_remove(ctx, e);
        e = prev;
    }
}

/* Whether the CRL in e is signed by issuer's key, remembered per key. */
int rev__ent_sig_ok(ent_t *e, X509 *issuer, char err[CRL_ERR_LEN])
{
    EVP_PKEY *k = X509_get0_pubkey(issuer);
    if (k == NULL) {
        ERR_clear_error();
        snprintf(err, CRL_ERR_LEN, "the issuing CA has no usable public key");
        return 0;
    }
    for (unsigned i = 0; i < SIG_MEMO; i++) {
        if (e->sig_good[i] && EVP_PKEY_eq(e->sig_good[i], k) == 1)
            return 1;
        if (e->sig_bad[i] && EVP_PKEY_eq(e->sig_bad[i], k) == 1) {
            snprintf(err, CRL_ERR_LEN, "bad CRL signature (not signed by the issuing CA's key)");
            return 0;
        }
    }
    e->ctx->stats.sig_checks++;
    int ok = crl_verify_signature(e->crl, k, err) == 0;
    EVP_PKEY **slot =
        ok ? &e->sig_good[e->nsig_good++ % SIG_MEMO] : &e->sig_bad[e->nsig_bad++ % SIG_MEMO];
    EVP_PKEY_free(*slot);
    *slot = EVP_PKEY_up_ref(k) ? k : NULL;
    if (!ok)
        snprintf(err, CRL_ERR_LEN, "bad CRL signature (not signed by the issuing CA's key)");
    return ok;
}

int rev__ent_ocsp_signer_ok(ent_t *e, X509 *issuer, int64_t at, char err[CRL_ERR_LEN])
{
    ocsp_memo_t *m = NULL;
    if (e->ocsp_memo == NULL)
        e->ocsp_memo = fs_xcalloc(SIG_MEMO, sizeof(*e->ocsp_memo));
    for (unsigned i = 0; i < SIG_MEMO && m == NULL; i++)
        if (e->ocsp_memo[i].issuer && X509_cmp(e->ocsp_memo[i].issuer, issuer) == 0)
            m = &e->ocsp_memo[i];
    if (m == NULL) {
        m = &e->ocsp_memo[e->nocsp_memo++ % SIG_MEMO];
        X509_free(m->issuer);
        memset(m, 0, sizeof(*m));
        e->ctx->stats.sig_checks++;
        m->ok = ocsp_check_signer_key(e->bs, issuer, &m->signer, m->err) == 0;
        m->issuer = X509_up_ref(issuer) ? issuer : NULL;
    }
    if (!m->ok) {
        fs_strlcpy(err, m->err, CRL_ERR_LEN);
        return 0;
    }
    return ocsp_check_signer_time(&m->signer, at, err) == 0;
}

/* How long a failure is kept: REV_NEGATIVE_TTL_S, never beyond max_age_s. */
static int64_t neg_ttl_ms(const rev_ctx_t *ctx)
{
    int64_t neg = (int64_t)REV_NEGATIVE_TTL_S * 1000, max_age = ctx->lim.max_age_s * 1000;
    return neg < max_age ? neg : max_age;
}

/* What e holds in memory: its bookkeeping and the parsed CRL or certificates. */
static size_t ent_cost(const ent_t *e)
{
    size_t c = sizeof(*e) + strlen(e->key) + 1 + strlen(e->url) + 1;
    if (e->crl)
        c += crl_parsed_cost(e->crl, e->bytes);
    if (e->certs)
        c += crl_certs_cost(e->certs, e->bytes);
    if (e->bs) /* the response's own certificates dominate, as for an AIA payload */
        c += crl_certs_cost(OCSP_resp_get0_certs(e->bs), e->bytes) + 1024 +
             SIG_MEMO * sizeof(ocsp_memo_t);
    return c;
}

/* Places an entry that just settled (see "Cache bounds" in revoke.h). Within the budget it joins
 * the LRU list; rev__cache_evict trims the oldest once its waiters are told. Costing more than the
 * whole budget, it takes the one place outside the budget when that is free or its holder is
 * stale, and evicts nothing; else it is refused (rev__ent_refuse after its waiters). */
static void cache_admit(rev_ctx_t *ctx, ent_t *e, int64_t now_ms)
{
    if (e->cost <= ctx->lim.max_bytes_total) {
        lru_push_front(ctx, e);
        return;
    }
    ent_t *held = ctx->oversize;
    if (held && now_ms >= held->expires_ms && held->busy == 0)
        rev__cache_remove(ctx, held);
    if (ctx->oversize == NULL)
        ctx->oversize = e;
    else
        e->refused = 1;
}

/* Drops a refused entry's payload once the jobs waiting for its retrieval used it, and keeps a
 * failure in its place for the negative TTL: the URL is not retrieved again sooner. */
void rev__ent_refuse(rev_ctx_t *ctx, ent_t *e)
{
    assert(e->refused && !e->in_lru && e->busy == 0);
    size_t was = e->cost;
    ent_clear_payload(e);
    e->refused = 0;
    e->ok = 0;
    e->fail = FAIL_INVALID;
    snprintf(e->error, sizeof(e->error),
             "CRL not kept: %zu bytes once parsed, over cache.crl_max_bytes_total (%zu) while "
             "another CRL that size is cached",
             was, ctx->lim.max_bytes_total);
    int64_t until = fs_wall_ms() + neg_ttl_ms(ctx);
    if (e->expires_ms > until)
        e->expires_ms = until;
    ctx->stats.bytes -= was;
    e->cost = ent_cost(e);
    ctx->stats.bytes += e->cost;
    ctx->stats.refused++;
    lru_push_front(ctx, e);
}

void rev__cache_touch(rev_ctx_t *ctx, ent_t *e)
{
    if (e->in_lru) {
        lru_unlink(ctx, e);
        lru_push_front(ctx, e);
    }
}

/* Parses the body of a successful retrieval into e. */
static void ent_parse(ent_t *e, const fetch_result_t *res)
{
    char err[CRL_ERR_LEN];
    unsigned char *der = NULL;
    size_t len = 0;
    switch (e->kind) {
    case KIND_CRL:
        if (e->ldap && crl_from_ldap(res->body, res->bytes, &der, &len, err) != 0) {
            e->fail = FAIL_INVALID;
            snprintf(e->error, sizeof(e->error), "%.150s", err);
            break;
        }
        if (crl_parse(der ? der : res->body, der ? len : res->bytes, &e->crl, err) == 0) {
            e->ok = 1;
            crl_times(e->crl, &e->this_update, &e->next_update);
        } else {
            e->fail = FAIL_INVALID;
            snprintf(e->error, sizeof(e->error), "unparsable CRL: %.140s", err);
        }
        free(der);
        break;
    case KIND_OCSP:
        if (ocsp_parse_response(res->body, res->bytes, &e->bs, err) == 0) {
            e->ok = 1;
            e->next_update = ocsp_min_next_update(e->bs);
        } else {
            snprintf(e->error, sizeof(e->error), "unusable OCSP response: %.130s", err);
        }
        break;
    default:
        if (crl_parse_certs(res->body, res->bytes, &e->certs, err) == 0) {
            e->ok = 1;
        } else {
            e->fail = FAIL_INVALID;
            snprintf(e->error, sizeof(e->error), "unusable AIA payload: %.130s", err);
        }
        break;
    }
}

/* Turns a retrieval into the entry's outcome. */
void rev__ent_settle(ent_t *e, const fetch_result_t *res)
{
    rev_ctx_t *ctx = e->ctx;
    e->http_status = res->http_status;
    e->bytes = res->bytes;
    e->ok = 0;
    e->fail = FAIL_UNREACHABLE;
    if (res->err == FETCH_ERR_TOO_BIG) {
        e->fail = FAIL_INVALID;
        snprintf(e->error, sizeof(e->error), "%s", res->error);
    } else if (res->err != FETCH_OK) {
        snprintf(e->error, sizeof(e->error), "%s", res->error);
    } else if (!e->ldap && res->http_status != 200) {
        snprintf(e->error, sizeof(e->error), "HTTP %ld", res->http_status);
    } else if (res->bytes == 0) {
        snprintf(e->error, sizeof(e->error),
                 e->ldap ? "LDAP: no entry found" : "empty body (HTTP 200)");
    } else {
        ent_parse(e, res);
    }
    if (e->ok)
        e->error[0] = '\0';
    int64_t now = fs_wall_ms(), max_age = ctx->lim.max_age_s * 1000, neg = neg_ttl_ms(ctx);
    e->expires_ms = now + (e->ok ? max_age : neg);
    if (e->ok && e->kind == KIND_OCSP && e->next_update == 0)
        e->expires_ms = now + neg; /* no nextUpdate: newer information is always available */
    if (e->ok && e->kind != KIND_AIA && e->next_update) {
        if (e->next_update * 1000 < e->expires_ms)
            e->expires_ms = e->next_update * 1000;
        if (e->expires_ms <= now) /* stale when published: ask again soon, not at once */
            e->expires_ms = now + neg;
    }
    e->fetched_ms = now;
    e->settled = ++ctx->settle_seq;
    e->cost = ent_cost(e);
    ctx->stats.bytes += e->cost;
    cache_admit(ctx, e, now);
}

void rev_cache_stats(const rev_ctx_t *ctx, rev_cache_stats_t *s)
{
    *s = ctx->stats;
}

/* The body of a settled entry as its retrieval would give it again (rev_cache_item_t): a CRL's
 * DER (OpenSSL keeps the signed part's encoding), an OCSP response wrapping the basic response,
 * the AIA certificates as PEM; *out is freed with OPENSSL_free. 0, or -1 when it cannot be
 * encoded. */
static int ent_encode(const ent_t *e, unsigned char **out, size_t *len)
{
    int n = -1;
    *out = NULL;
    if (e->kind == KIND_CRL) {
        n = i2d_X509_CRL(e->crl, out);
    } else if (e->kind == KIND_OCSP) {
        OCSP_RESPONSE *r = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, e->bs);
        n = r != NULL ? i2d_OCSP_RESPONSE(r, out) : -1;
        OCSP_RESPONSE_free(r);
    } else {
        BIO *b = BIO_new(BIO_s_mem());
        for (int i = 0; b != NULL && i < sk_X509_num(e->certs); i++)
            if (!PEM_write_bio_X509(b, sk_X509_value(e->certs, i)))
                break;
        char *p;
        long l = b != NULL ? BIO_get_mem_data(b, &p) : 0;
        if (l > 0 && (*out = OPENSSL_malloc((size_t)l)) != NULL) {
            memcpy(*out, p, (size_t)l);
            n = (int)l;
        }
        BIO_free(b);
    }
    ERR_clear_error();
    if (n <= 0) {
        OPENSSL_free(*out);
        *out = NULL;
        return -1;
    }
    *len = (size_t)n;
    return 0;
}

size_t rev_cache_export(rev_ctx_t *ctx, uint64_t *cursor,
                        void (*fn)(void *arg, const rev_cache_item_t *it), void *arg)
{
    size_t n = 0;
    if (*cursor >= ctx->settle_seq || ctx->closing)
        return 0;
    int64_t now = fs_wall_ms();
    for (size_t b = 0; b < ctx->nbuckets; b++) {
        for (const ent_t *e = ctx->buckets[b]; e != NULL; e = e->hnext) {
            if (e->settled <= *cursor || !e->ok || e->fetching || e->refused ||
                now >= e->expires_ms)
                continue;
            /* key: "<kind><url>\x1f[<certid>\x1f]<view>" (rev__key_make) */
            const char *rest = e->key + 1 + strlen(e->url) + 1, *view = rest;
            char certid[256] = ""; /* as rev_job_t.ocsp_hex */
            if (e->kind == KIND_OCSP) {
                const char *sep = strchr(rest, '\x1f');
                if (sep == NULL || (size_t)(sep - rest) >= sizeof(certid))
                    continue;
                memcpy(certid, rest, (size_t)(sep - rest));
                certid[sep - rest] = '\0';
                view = sep + 1;
            }
            unsigned char *body;
            size_t len;
            if (ent_encode(e, &body, &len) != 0)
                continue;
            rev_cache_item_t it = {.kind = "CAO"[e->kind],
                                   .url = e->url,
                                   .certid = certid,
                                   .view = view,
                                   .fetched_at = e->fetched_ms / 1000,
                                   .next_update = e->kind == KIND_AIA ? 0 : e->next_update,
                                   .expires_at = (e->expires_ms + 999) / 1000,
                                   .http_status = e->http_status,
                                   .body = body,
                                   .len = len};
            fn(arg, &it);
            OPENSSL_free(body);
            n++;
        }
    }
    *cursor = ctx->settle_seq;
    return n;
}

int rev_cache_import(rev_ctx_t *ctx, const rev_cache_item_t *it)
{
    const char *kinds = "CAO", *k = it->kind ? strchr(kinds, it->kind) : NULL;
    if (ctx->closing)
        return UV_ECANCELED;
    if (k == NULL || it->url == NULL || it->body == NULL || it->len == 0)
        return UV_EINVAL;
    int kind = (int)(k - kinds);
    int64_t now = fs_wall_ms();
    int64_t expires = it->expires_at * 1000, max_age = (it->fetched_at + ctx->lim.max_age_s) * 1000;
    if (max_age < expires)
        expires = max_age;
    if (kind != KIND_AIA && it->next_update != 0 && it->next_update * 1000 < expires)
        expires = it->next_update * 1000;
    if (expires <= now)
        return UV_ETIMEDOUT;
    char *key = rev__key_make(kind, it->url, kind == KIND_OCSP && it->certid ? it->certid : "",
                              it->view ? it->view : "");
    uint64_t hash = rev__key_hash(key);
    if (rev__cache_lookup(ctx, key, hash) != NULL) {
        free(key);
        return UV_EEXIST;
    }
    ent_t *e = rev__cache_add(ctx, kind, it->url, key, hash);
    fetch_result_t res;
    memset(&res, 0, sizeof(res));
    res.body = it->body;
    res.bytes = it->len;
    ent_parse(e, &res);
    if (!e->ok) {
        rev__cache_remove(ctx, e);
        return UV_EINVAL;
    }
    e->http_status = it->http_status;
    e->bytes = it->len;
    e->fetched_ms = it->fetched_at * 1000;
    e->expires_ms = expires;
    e->cost = ent_cost(e);
    ctx->stats.bytes += e->cost;
    cache_admit(ctx, e, now);
    if (e->refused) { /* a second entry over the budget: not kept, as after a retrieval */
        e->refused = 0;
        rev__cache_remove(ctx, e);
        return UV_EINVAL;
    }
    rev__cache_evict(ctx);
    return 0;
}

int rev_cache_peek(const rev_ctx_t *ctx, const char *kind, const char *url, X509 *cert,
                   X509 *issuer, const rev_policy_t *p, rev_cache_entry_t *out)
{
    if (ctx == NULL || kind == NULL || url == NULL || p == NULL || out == NULL)
        return UV_EINVAL;
    int k = strcmp(kind, "ocsp") == 0 ? KIND_OCSP : strcmp(kind, "aia") == 0 ? KIND_AIA : KIND_CRL;
    char certid[256] = "", *fetch_url;
    if (k == KIND_OCSP) {
        OCSP_CERTID *id = cert && issuer ? ocsp_cert_id(cert, issuer) : NULL;
        int bad = id == NULL || ocsp_cert_id_hex(id, certid, sizeof(certid)) != 0;
        OCSP_CERTID_free(id);
        ERR_clear_error();
        if (bad)
            return UV_EINVAL;
    }
    /* Routed as rev__job_url_route does: http:// as is, ldap:// (CRLs) through the view's
     * directory. */
    if (crl_url_is_http(url)) {
        fetch_url = fs_xstrdup(url);
    } else if (k == KIND_CRL && crl_url_has_scheme(url, "ldap") && p->ldap_host != NULL) {
        size_t n = strlen(url) + strlen(p->ldap_host) + 8;
        fetch_url = fs_xmalloc(n);
        if (url[7] == '/')
            snprintf(fetch_url, n, "ldap://%s%s", p->ldap_host, url + 7);
        else
            snprintf(fetch_url, n, "%s", url);
    } else {
        return UV_ENOENT;
    }
    char *key = rev__key_make(k, fetch_url, certid, p->view ? p->view : "");
    uint64_t hash = rev__key_hash(key);
    const ent_t *e = ctx->buckets[hash & (ctx->nbuckets - 1)];
    while (e && (e->hash != hash || strcmp(e->key, key) != 0))
        e = e->hnext;
    free(key);
    free(fetch_url);
    if (e == NULL || e->fetching || fs_wall_ms() >= e->expires_ms)
        return UV_ENOENT;
    out->ok = e->ok;
    out->expires_ms = e->expires_ms;
    out->next_update = e->kind == KIND_AIA ? 0 : e->next_update;
    return 0;
}
