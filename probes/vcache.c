/* vcache.c - verdict cache keyed by the presented chain's SHA-1s (cached inside each X509 by
 * OpenSSL, so computing the key costs no hashing of certificates) and the endpoint view. */
#include "probes/vcache.h"
#include "probes/util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VCACHE_BUCKETS 1024
#define VCACHE_KEY_MAX (CHAIN_MAX_CERTS * 20 + 8 + 8 + 8 + 65 + 256)

typedef struct ventry_s {
    struct ventry_s *next;
    uint64_t hash;
    int64_t valid_from, valid_until; /* the verdict holds for endpoint times in [from, until) */
    size_t keylen;
    chain_verdict_t v; /* built chain owned by the entry */
    unsigned char key[];
} ventry_t;

struct vcache_s {
    ventry_t *buckets[VCACHE_BUCKETS];
    size_t n, max;
    uint64_t hits, misses;
};

vcache_t *vcache_new(size_t max_entries)
{
    vcache_t *c = fs_xcalloc(1, sizeof(*c));
    c->max = max_entries ? max_entries : 4096;
    return c;
}

void vcache_clear(vcache_t *c)
{
    for (size_t i = 0; i < VCACHE_BUCKETS; i++) {
        ventry_t *e = c->buckets[i];
        while (e != NULL) {
            ventry_t *next = e->next;
            chain_verdict_free(&e->v);
            free(e);
            e = next;
        }
        c->buckets[i] = NULL;
    }
    c->n = 0;
}

void vcache_free(vcache_t *c)
{
    if (c == NULL)
        return;
    vcache_clear(c);
    free(c);
}

void vcache_stats(const vcache_t *c, vcache_stats_t *s)
{
    s->hits = c->hits;
    s->misses = c->misses;
    s->entries = c->n;
}

static size_t put(unsigned char *k, size_t at, const void *p, size_t n)
{
    if (at + n > VCACHE_KEY_MAX)
        return at; /* cannot happen with the bounds above; never overflow the key */
    memcpy(k + at, p, n);
    return at + n;
}

/* Returns the key length, or 0 when the chain cannot be keyed (no certificate, too long). */
static size_t make_key(unsigned char *k, const tlsc_ctx_t *ctx, STACK_OF(X509) * presented,
                       const chain_check_t *chk)
{
    int n = presented ? sk_X509_num(presented) : 0;
    if (n == 0 || n > CHAIN_MAX_CERTS)
        return 0;
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int l = 0;
        if (X509_digest(sk_X509_value(presented, i), EVP_sha1(), md, &l) != 1 || l != 20)
            return 0;
        len = put(k, len, md, 20);
    }
    len = put(k, len, &ctx->id, sizeof(ctx->id));
    len = put(k, len, &chk->expiring_soon_s, sizeof(chk->expiring_soon_s));
    const char *pin = chk->expect_thumbprint ? chk->expect_thumbprint : "";
    len = put(k, len, pin, strlen(pin) + 1);
    const char *host = chk->host ? chk->host : "";
    size_t hl = strlen(host);
    if (hl > 255)
        return 0;
    len = put(k, len, host, hl + 1);
    return len;
}

static uint64_t fnv64(const unsigned char *p, size_t n)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Narrows [from, until) around at to the edges of every certificate involved. */
static void narrow(int64_t edge, int64_t at, int64_t *from, int64_t *until)
{
    if (edge <= at && edge > *from)
        *from = edge;
    if (edge > at && edge < *until)
        *until = edge;
}

static void span_of(STACK_OF(X509) * sk, const chain_check_t *chk, int64_t *from, int64_t *until)
{
    for (int i = 0; sk != NULL && i < sk_X509_num(sk); i++) {
        X509 *x = sk_X509_value(sk, i);
        int64_t nb = chain_asn1_time(X509_get0_notBefore(x));
        int64_t na = chain_asn1_time(X509_get0_notAfter(x));
        narrow(nb, chk->at, from, until);
        narrow(na, chk->at, from, until);
        narrow(na - chk->expiring_soon_s, chk->at, from, until);
    }
}

/* The span of endpoint time around chk->at in which no certificate of the presented or built
 * chain (nor of the endpoint's stores that took part) crosses a validity edge, so the verdict
 * cannot change. */
static void validity_span(STACK_OF(X509) * presented, STACK_OF(X509) * built,
                          const chain_check_t *chk, int64_t *from, int64_t *until)
{
    *from = INT64_MIN;
    *until = INT64_MAX;
    span_of(presented, chk, from, until);
    span_of(built, chk, from, until);
}

static void copy_verdict(chain_verdict_t *dst, const chain_verdict_t *src)
{
    *dst = *src;
    dst->built = src->built ? X509_chain_up_ref(src->built) : NULL;
}

int vcache_verify(vcache_t *c, tlsc_ctx_t *ctx, STACK_OF(X509) * presented,
                  const chain_check_t *chk, chain_verdict_t *v)
{
    unsigned char key[VCACHE_KEY_MAX];
    size_t klen = make_key(key, ctx, presented, chk);
    if (klen == 0)
        return chain_verify(ctx->trust, presented, ctx->intermediates, chk, v);
    uint64_t h = fnv64(key, klen);
    ventry_t **slot = &c->buckets[h % VCACHE_BUCKETS];
    for (ventry_t *e = *slot; e != NULL; e = e->next) {
        if (e->hash == h && e->keylen == klen && memcmp(e->key, key, klen) == 0 &&
            chk->at >= e->valid_from && chk->at < e->valid_until) {
            c->hits++;
            copy_verdict(v, &e->v);
            return 0;
        }
    }
    c->misses++;
    if (chain_verify(ctx->trust, presented, ctx->intermediates, chk, v) < 0)
        return -1;
    int64_t from, until;
    validity_span(presented, v->built, chk, &from, &until);
    if (c->n >= c->max)
        vcache_clear(c);
    ventry_t *e = fs_xmalloc(sizeof(*e) + klen);
    e->hash = h;
    e->valid_from = from;
    e->valid_until = until;
    e->keylen = klen;
    memcpy(e->key, key, klen);
    copy_verdict(&e->v, v);
    e->next = c->buckets[h % VCACHE_BUCKETS];
    c->buckets[h % VCACHE_BUCKETS] = e;
    c->n++;
    return 0;
}
