/* vcache.h - the verdict cache: a presented chain is verified once per (chain, endpoint trust,
 * host, pin, warning window) and span of time in which no certificate changes validity, not
 * once per handshake. A fleet of
 * 10,000 endpoints sharing a trust configuration sees one chain; OpenSSL's chain building is
 * ~15 % of a probe (shared/PERF-NOTES.md). */
#ifndef FS_VCACHE_H
#define FS_VCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "probes/chain.h"
#include "probes/tlsc.h"

typedef struct vcache_s vcache_t;

typedef struct vcache_stats_s {
    uint64_t hits, misses;
    size_t entries;
} vcache_stats_t;

/* A cache of at most max_entries verdicts (0: 4096). When full it is emptied. Loop-thread
 * only. */
vcache_t *vcache_new(size_t max_entries);
void vcache_free(vcache_t *c);
void vcache_clear(vcache_t *c);
void vcache_stats(const vcache_t *c, vcache_stats_t *s);

/* Like chain_verify(trust = ctx->trust, extra = ctx->intermediates), answered from the cache
 * when the same chain was verified for the same ctx, host, pin and warning window at a time
 * between the same two validity edges (a notBefore, a notAfter, or a notAfter minus the
 * warning window of any certificate involved): the verdict is then exactly what
 * chain_verify would say, except that its message quotes the endpoint time of the first
 * verification. The verdict in v is the caller's (its built chain holds its own references):
 * free it with chain_verdict_free(). */
int vcache_verify(vcache_t *c, tlsc_ctx_t *ctx, STACK_OF(X509) * presented,
                  const chain_check_t *chk, chain_verdict_t *v);

#endif
