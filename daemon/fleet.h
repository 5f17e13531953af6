/* fleet.h - the simulated fleet: endpoints grouped by configuration, scheduled on the loop
 * under global limits, probed, aggregated incrementally, and published as snapshots. */
#ifndef FS_FLEET_H
#define FS_FLEET_H

#include <uv.h>

#include "daemon/config.h"
#include "probes/revoke.h"
#include "web/snapshot.h"

typedef struct fleet_s fleet_t;

typedef struct fleet_opts_s {
    /* Receives each new snapshot (one reference, the receiver owns it). Called on the loop. */
    void (*publish)(void *arg, snap_t *s);
    /* Optional: each event as it is recorded, with its agent.log message (valid during the
     * call), e.g. for the state database. Called on the loop. */
    void (*on_event)(void *arg, const snap_event_t *ev, const char *message);
    void *arg;
    uint32_t publish_interval_ms; /* default 1000 */
    int dns_override_only;        /* never ask the system resolver (tests, the demo lab) */
    int quiet;                    /* no log lines on stderr */
} fleet_opts_t;

/* Builds the fleet from cfg (the fleet takes ownership of cfg on success) and starts probing.
 * Returns 0, or -1 with err filled (a trust store OpenSSL cannot load...); cfg stays the
 * caller's on failure. */
int fleet_new(fleet_t **out, uv_loop_t *loop, cfg_t *cfg, const fleet_opts_t *o, char err[256]);
/* Swaps in a new configuration: unchanged groups keep their endpoints' state, in-flight
 * probes of the old one are cancelled. Takes ownership of cfg on success; on failure
 * (err filled) the old configuration keeps running and cfg stays the caller's. Runs on the
 * loop: fleet_reload_begin + fleet_reload_build + fleet_reload_apply in one go. */
int fleet_reload(fleet_t *f, cfg_t *cfg, char err[256]);

/* The same in three steps, so the expensive one (TLS contexts, trust stores, the endpoint
 * array, matching unchanged groups) runs off the loop while probing goes on:
 * - fleet_reload_begin, on the loop: captures what the build needs; reference to the running
 *   generation.
 * - fleet_reload_build, on any thread, with no other call on the same fleet_next_t: builds the
 *   generation of cfg, taking cfg on success; on failure (err filled) cfg stays the caller's.
 * - fleet_reload_apply, on the loop, after a successful build: swaps it in (cannot fail) and
 *   consumes n. Or fleet_next_free, on the loop, to drop n (also after fleet_stop). */
typedef struct fleet_next_s fleet_next_t;
fleet_next_t *fleet_reload_begin(fleet_t *f);
int fleet_reload_build(fleet_next_t *n, cfg_t *cfg, char err[256]);
void fleet_reload_apply(fleet_t *f, fleet_next_t *n);
void fleet_next_free(fleet_next_t *n);
/* Makes every endpoint (and the reference) due now. */
void fleet_scan_now(fleet_t *f);
/* Publishes a snapshot right away (also done periodically). */
void fleet_publish(fleet_t *f);
/* A SIGHUP reload was applied or refused: an event of kind "config" (subject "config:applied"
 * or "config:refused"; message, the reason, goes to the store), in the events window. */
void fleet_config_event(fleet_t *f, int applied, const char *message);
/* Cancels in-flight probes, closes every handle; done runs after the last close. */
void fleet_stop(fleet_t *f, void (*done)(void *arg), void *arg);
const cfg_t *fleet_cfg(const fleet_t *f);

/* What a restart brings back (daemon/restore.c), from the state database (daemon/store.h).
 * Call it after fleet_new, before the loop runs: endpoints found in saved by group name and
 * index take its state, cause, warnings, since and last probe time and are marked restored
 * (snap_endpoint_t.restored) until their first probe, which keeps since when it agrees; the
 * newest events come back into the ring and the sequence continues after saved->event_seq; the
 * cached CRL/OCSP/AIA responses go back into the retrieval cache. counts (may be NULL) receives
 * how many of each were taken. */
typedef struct fleet_restored_s {
    uint32_t endpoints, events, cache;
} fleet_restored_t;
struct store_saved_s;
void fleet_restore(fleet_t *f, const struct store_saved_s *saved, fleet_restored_t *counts);
/* Calls fn on the loop for each CRL/OCSP/AIA response retrieved since the last call with the same
 * *cursor (start at 0); see rev_cache_export. */
size_t fleet_cache_export(fleet_t *f, uint64_t *cursor,
                          void (*fn)(void *arg, const rev_cache_item_t *it), void *arg);

/* Stable hash of an endpoint id, for sharding: shard = hash % n. */
uint32_t fleet_id_hash(const char *id);
/* 1 when endpoint k of group belongs to cfg's shard (always 1 unsharded). */
int fleet_in_shard(const cfg_t *cfg, const char *group, uint32_t k);

#endif
