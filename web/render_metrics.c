/* render_metrics.c - the Prometheus text exposition (0.0.4) of a snapshot: fleet and group
 * gauges, probe counters and histograms, and the targets' certificate and revocation gauges. */
#include "web/render.h"
#include "web/procstats.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <uv.h>

#include "probes/util.h"
#include "web/render_int.h"

/* A sample is m_start, wbuf_prom_pair for each label, then m_end_*: name{<common>,l1="v1",...}
 * value. common is the pre-rendered vantage/shard pair every sample carries. */
static void m_start(wbuf_t *b, const char *name, const wbuf_t *common)
{
    wbuf_puts(b, name);
    wbuf_putc(b, '{');
    wbuf_put(b, common->data, common->len);
}

static void m_end_u64(wbuf_t *b, uint64_t v)
{
    wbuf_put(b, "} ", 2);
    wbuf_u64(b, v);
    wbuf_putc(b, '\n');
}

static void m_end_i64(wbuf_t *b, int64_t v)
{
    wbuf_put(b, "} ", 2);
    wbuf_i64(b, v);
    wbuf_putc(b, '\n');
}

static void m_double(wbuf_t *b, const char *name, const wbuf_t *common, const char *l1,
                     const char *v1, double v)
{
    m_start(b, name, common);
    if (l1 != NULL)
        wbuf_prom_pair(b, l1, v1);
    wbuf_put(b, "} ", 2);
    wbuf_prom_double(b, v);
    wbuf_putc(b, '\n');
}

/* The revocation URL of record ti at index ui came earlier (another target's chain has it too):
 * its series are emitted once. */
static int rev_seen_before(const snap_t *s, size_t ti, size_t ui)
{
    const char *url = s->revocation[ti]->urls[ui].url;
    for (size_t t = 0; t <= ti; t++)
        for (size_t i = 0; s->revocation[t] != NULL && i < (t == ti ? ui : s->revocation[t]->nurls);
             i++)
            if (strcmp(s->revocation[t]->urls[i].url, url) == 0)
                return 1;
    return 0;
}

/* The same URL over every target's record: the strict endpoints at risk (summed: each target has
 * its own groups) and the earliest instant the first of them go offline. */
static uint64_t rev_at_risk(const snap_t *s, const char *url, int64_t *offline_at)
{
    uint64_t n = 0;
    *offline_at = 0;
    for (size_t t = 0; t < s->ntargets; t++)
        for (size_t i = 0; s->revocation[t] != NULL && i < s->revocation[t]->nurls; i++) {
            const snap_rev_url_t *u = &s->revocation[t]->urls[i];
            if (strcmp(u->url, url) != 0 || u->strict_at_risk == 0)
                continue;
            n += u->strict_at_risk;
            if (*offline_at == 0 || u->strict_offline_at < *offline_at)
                *offline_at = u->strict_offline_at;
        }
    return n;
}

/* Whether address k of t was reached recently enough at `now` to count (backend_max_age_s). */
static int backend_recent(const snap_target_t *t, const snap_backend_t *k, int64_t now)
{
    return t->backend_max_age_s <= 0 || k->last_seen >= now - t->backend_max_age_s;
}

/* The leaf most of the target's recently reached addresses present (thumbprints compare
 * case-insensitively), the reference probe's own on a tie; NULL when none presented one. An
 * address out of the name's answer for a while (a retired node) keeps its series, not its vote. */
static const char *majority_leaf(const snap_target_t *t, int64_t now)
{
    const char *best = NULL;
    size_t best_n = 0;
    for (size_t i = 0; i < t->nbackends; i++) {
        const char *leaf = t->backends[i].leaf_sha1;
        size_t n = 0;
        if (leaf[0] == '\0' || !backend_recent(t, &t->backends[i], now))
            continue;
        for (size_t k = 0; k < t->nbackends; k++)
            n += backend_recent(t, &t->backends[k], now) &&
                 strcasecmp(t->backends[k].leaf_sha1, leaf) == 0;
        if (n > best_n || (n == best_n && strcasecmp(leaf, t->leaf_sha1) == 0)) {
            best = leaf;
            best_n = n;
        }
    }
    return best;
}

/* Per (target, address) of the farm behind a target's name (SPEC §4.1, /api/v1/targets
 * "addresses"): the outcome there, when a probe last reached it, and whether the leaf it presents
 * is the one most addresses present; then whether the target's addresses disagree
 * (backend_inconsistent). */
static void put_address_metrics(wbuf_t *b, const snap_t *s, const wbuf_t *common)
{
    wbuf_prom_family(
        b, "fleetscan_target_address_up", "gauge",
        "1 when the last probe that reached this address of the target's name went online "
        "(connected and validated).");
    for (size_t ti = 0; ti < s->ntargets; ti++)
        for (size_t i = 0; s->targets[ti] != NULL && i < s->targets[ti]->nbackends; i++) {
            const snap_target_t *t = s->targets[ti];
            wbuf_prom_u64(b, "fleetscan_target_address_up", common, "target", t->name, "address",
                          t->backends[i].addr, t->backends[i].online ? 1 : 0);
        }
    wbuf_prom_family(
        b, "fleetscan_target_address_last_seen_seconds", "gauge",
        "When a probe (the reference or an endpoint's) last reached this address of the "
        "target's name (Unix time).");
    for (size_t ti = 0; ti < s->ntargets; ti++)
        for (size_t i = 0; s->targets[ti] != NULL && i < s->targets[ti]->nbackends; i++) {
            const snap_target_t *t = s->targets[ti];
            m_start(b, "fleetscan_target_address_last_seen_seconds", common);
            wbuf_prom_pair(b, "target", t->name);
            wbuf_prom_pair(b, "address", t->backends[i].addr);
            m_end_i64(b, t->backends[i].last_seen);
        }
    wbuf_prom_family(
        b, "fleetscan_target_address_leaf_agrees", "gauge",
        "1 when the leaf certificate this address presents (label sha1) is the one most of "
        "the target's addresses present; 0: another binding (a node still has the old "
        "certificate). No sample for an address where no handshake completed.");
    for (size_t ti = 0; ti < s->ntargets; ti++) {
        const snap_target_t *t = s->targets[ti];
        const char *leaf = t != NULL ? majority_leaf(t, s->generated_at) : NULL;
        for (size_t i = 0; leaf != NULL && i < t->nbackends; i++) {
            const snap_backend_t *k = &t->backends[i];
            if (k->leaf_sha1[0] == '\0')
                continue;
            m_start(b, "fleetscan_target_address_leaf_agrees", common);
            wbuf_prom_pair(b, "target", t->name);
            wbuf_prom_pair(b, "address", k->addr);
            wbuf_prom_pair(b, "sha1", k->leaf_sha1);
            m_end_u64(b, strcasecmp(k->leaf_sha1, leaf) == 0);
        }
    }
    wbuf_prom_family(
        b, "fleetscan_target_backend_inconsistent", "gauge",
        "1 when the target's addresses seen recently present different leaf certificates or "
        "disagree on the outcome (the backend_inconsistent warning).");
    for (size_t ti = 0; ti < s->ntargets; ti++) {
        const snap_target_t *t = s->targets[ti];
        if (t != NULL)
            wbuf_prom_u64(b, "fleetscan_target_backend_inconsistent", common, "target", t->name,
                          NULL, NULL, t->inconsistent ? 1 : 0);
    }
}

/* The targets' gauges: each presented certificate's notAfter, whether each target's binding is
 * up, and the live health of their chains' revocation URLs (s->revocation): reachability,
 * nextUpdate, skipped URLs, the strict endpoints at risk and when, the groups' cache expiry. A
 * URL several targets share is one series; a family's samples stay together, one HELP and TYPE
 * each. */
static void put_target_metrics(wbuf_t *b, const snap_t *s, const wbuf_t *common)
{
    char depth[24];
    size_t nrec = s->revocation != NULL ? s->ntargets : 0;
    wbuf_prom_family(b, "fleetscan_cert_not_after_seconds", "gauge",
                     "notAfter of each presented certificate (Unix time).");
    for (size_t ti = 0; ti < s->ntargets; ti++) {
        const snap_target_t *t = s->targets[ti];
        for (size_t i = 0; t != NULL && i < t->chain.n; i++) {
            const chain_cert_t *c = &t->chain.certs[i];
            snprintf(depth, sizeof(depth), "%zu", i);
            m_start(b, "fleetscan_cert_not_after_seconds", common);
            wbuf_prom_pair(b, "target", t->name);
            wbuf_prom_pair(b, "depth", depth);
            wbuf_prom_pair(b, "subject", c->subject);
            wbuf_prom_pair(b, "sha1", c->sha1);
            m_end_i64(b, c->not_after);
        }
    }
    wbuf_prom_family(
        b, "fleetscan_crl_reachable", "gauge",
        "1 when the CRL, delta-CRL or OCSP URL answered the vantage's live check with a "
        "usable answer (skipped URLs are not listed).");
    for (size_t ti = 0; ti < nrec; ti++)
        for (size_t i = 0; s->revocation[ti] != NULL && i < s->revocation[ti]->nurls; i++) {
            const snap_rev_url_t *u = &s->revocation[ti]->urls[i];
            if (!u->skipped && !rev_seen_before(s, ti, i))
                wbuf_prom_u64(b, "fleetscan_crl_reachable", common, "url", u->url, "kind", u->kind,
                              u->reachable ? 1 : 0);
        }
    wbuf_prom_family(b, "fleetscan_crl_next_update_seconds", "gauge",
                     "nextUpdate of the CRL (or delta CRL) the URL serves now (Unix time).");
    for (size_t ti = 0; ti < nrec; ti++)
        for (size_t i = 0; s->revocation[ti] != NULL && i < s->revocation[ti]->nurls; i++) {
            const snap_rev_url_t *u = &s->revocation[ti]->urls[i];
            if (strcmp(u->kind, "ocsp") == 0 || u->next_update == 0 || rev_seen_before(s, ti, i))
                continue;
            m_start(b, "fleetscan_crl_next_update_seconds", common);
            wbuf_prom_pair(b, "url", u->url);
            m_end_i64(b, u->next_update);
        }
    wbuf_prom_family(
        b, "fleetscan_revocation_url_skipped", "gauge",
        "1 for a revocation URL no view retrieves (ldap:// without a directory, file://): "
        "not unreachable, no group depends on it.");
    for (size_t ti = 0; ti < nrec; ti++)
        for (size_t i = 0; s->revocation[ti] != NULL && i < s->revocation[ti]->nurls; i++) {
            const snap_rev_url_t *u = &s->revocation[ti]->urls[i];
            if (u->skipped && !rev_seen_before(s, ti, i))
                wbuf_prom_u64(b, "fleetscan_revocation_url_skipped", common, "url", u->url, "kind",
                              u->kind, 1);
        }
    wbuf_prom_family(
        b, "fleetscan_strict_endpoints_revocation_at_risk", "gauge",
        "Strict endpoints that go offline, now or when their cached copy runs out, while "
        "this URL stays unusable: nothing else their check would use answers.");
    for (size_t ti = 0; ti < nrec; ti++)
        for (size_t i = 0; s->revocation[ti] != NULL && i < s->revocation[ti]->nurls; i++) {
            const snap_rev_url_t *u = &s->revocation[ti]->urls[i];
            int64_t at;
            if (!u->skipped && !rev_seen_before(s, ti, i))
                wbuf_prom_u64(b, "fleetscan_strict_endpoints_revocation_at_risk", common, "url",
                              u->url, "kind", u->kind, rev_at_risk(s, u->url, &at));
        }
    wbuf_prom_family(
        b, "fleetscan_strict_endpoints_offline_at_seconds", "gauge",
        "When the first of those strict endpoints go offline (Unix time; the check time "
        "when they already have). Only while some are at risk.");
    for (size_t ti = 0; ti < nrec; ti++)
        for (size_t i = 0; s->revocation[ti] != NULL && i < s->revocation[ti]->nurls; i++) {
            const snap_rev_url_t *u = &s->revocation[ti]->urls[i];
            int64_t at;
            if (u->skipped || rev_seen_before(s, ti, i) || rev_at_risk(s, u->url, &at) == 0)
                continue;
            m_start(b, "fleetscan_strict_endpoints_offline_at_seconds", common);
            wbuf_prom_pair(b, "url", u->url);
            wbuf_prom_pair(b, "kind", u->kind);
            m_end_i64(b, at);
        }
    wbuf_prom_family(
        b, "fleetscan_revocation_cache_expiry_seconds", "gauge",
        "When a group's cached copy from this URL runs out (Unix time), for each group "
        "whose check uses the URL and holds a copy.");
    for (size_t ti = 0; ti < nrec; ti++)
        for (size_t i = 0; s->revocation[ti] != NULL && i < s->revocation[ti]->nurls; i++) {
            const snap_rev_url_t *u = &s->revocation[ti]->urls[i];
            for (size_t g = 0; g < u->ngroups; g++) {
                if (u->groups[g].cached_until == 0)
                    continue;
                m_start(b, "fleetscan_revocation_cache_expiry_seconds", common);
                wbuf_prom_pair(b, "url", u->url);
                wbuf_prom_pair(b, "kind", u->kind);
                wbuf_prom_pair(b, "group", u->groups[g].name);
                m_end_i64(b, u->groups[g].cached_until);
            }
        }
    wbuf_prom_family(
        b, "fleetscan_target_up", "gauge",
        "1 when the target's binding accepts a connection and validates (its reference "
        "probe).");
    int all_up = 1, any = 0;
    for (size_t ti = 0; ti < s->ntargets; ti++) {
        const snap_target_t *t = s->targets[ti];
        if (t == NULL)
            continue;
        any = 1;
        all_up &= t->online != 0;
        wbuf_prom_u64(b, "fleetscan_target_up", common, "target", t->name, NULL, NULL,
                      t->online ? 1 : 0);
    }
    if (any) {
        wbuf_prom_family(b, "fleetscan_reference_up", "gauge",
                         "1 when every target's binding accepts a connection and validates.");
        wbuf_prom_u64(b, "fleetscan_reference_up", common, NULL, NULL, NULL, NULL, all_up ? 1 : 0);
    }
    put_address_metrics(b, s, common);
}

int render_metrics(const snap_t *s, wbuf_t *b)
{
    static const char *const results[] = {"online", "offline"};
    static const int result_states[] = {SNAP_ONLINE, SNAP_OFFLINE};
    wbuf_t common;
    char tmp[32];
    int rc;

    wbuf_init(&common, 128, 4096);
    wbuf_puts(&common, "vantage=\"");
    wbuf_prom_label(&common, s->vantage ? s->vantage : "");
    wbuf_puts(&common, "\",shard=\"");
    wbuf_prom_label(&common, s->shard ? s->shard : "0/1");
    wbuf_putc(&common, '"');
    if (common.failed) {
        rc = UV_ENOMEM;
        goto out;
    }

    const uint32_t by_state[SNAP_STATE_COUNT] = {s->totals.pending, s->totals.online,
                                                 s->totals.offline};
    wbuf_prom_family(b, "fleetscan_endpoints", "gauge", "Simulated endpoints by state.");
    for (int st = 0; st < SNAP_STATE_COUNT; st++)
        wbuf_prom_u64(b, "fleetscan_endpoints", &common, "state", snap_state_name(st), NULL, NULL,
                      by_state[st]);

    wbuf_prom_family(
        b, "fleetscan_endpoints_offline", "gauge",
        "Offline endpoints by primary failure cause (every cause listed, zeros included).");
    for (int c = FS_CAUSE_NONE + 1; c < FS_CAUSE_COUNT; c++)
        wbuf_prom_u64(b, "fleetscan_endpoints_offline", &common, "cause",
                      fs_cause_id((fs_cause_t)c), NULL, NULL, s->totals.causes[c]);

    wbuf_prom_family(b, "fleetscan_endpoints_warning", "gauge", "Endpoints carrying each warning.");
    for (int w = 0; w < FS_WARN_COUNT; w++)
        wbuf_prom_u64(b, "fleetscan_endpoints_warning", &common, "warning",
                      fs_warning_id((fs_warning_t)w), NULL, NULL, s->totals.warnings[w]);

    wbuf_prom_family(b, "fleetscan_group_endpoints", "gauge",
                     "Simulated endpoints by group and state.");
    for (size_t g = 0; g < s->ngroups; g++) {
        const snap_counts_t *c = &s->groups[g].counts;
        const uint32_t gs[SNAP_STATE_COUNT] = {c->pending, c->online, c->offline};
        const char *name = s->groups[g].name ? s->groups[g].name : "";
        for (int st = 0; st < SNAP_STATE_COUNT; st++)
            wbuf_prom_u64(b, "fleetscan_group_endpoints", &common, "group", name, "state",
                          snap_state_name(st), gs[st]);
    }

    wbuf_prom_family(b, "fleetscan_probes_total", "counter", "Completed probes by result.");
    for (size_t r = 0; r < FS_ARRAY_SIZE(results); r++)
        wbuf_prom_u64(b, "fleetscan_probes_total", &common, "result", results[r], NULL, NULL,
                      s->probes_by_result[result_states[r]]);

    wbuf_prom_family(b, "fleetscan_probes_in_flight", "gauge", "Probes currently running.");
    wbuf_prom_u64(b, "fleetscan_probes_in_flight", &common, NULL, NULL, NULL, NULL,
                  s->probes_in_flight);

    wbuf_prom_family(
        b, "fleetscan_revocation_cache_lookups_total", "counter",
        "CRL, delta CRL, OCSP and AIA URL lookups of the probes by how the retrieval cache "
        "answered: from what it held (hit), by waiting for a retrieval already in flight "
        "(joined), or by retrieving (fetched).");
    wbuf_prom_u64(b, "fleetscan_revocation_cache_lookups_total", &common, "result", "hit", NULL,
                  NULL, s->rev_hits);
    wbuf_prom_u64(b, "fleetscan_revocation_cache_lookups_total", &common, "result", "joined", NULL,
                  NULL, s->rev_joined);
    wbuf_prom_u64(b, "fleetscan_revocation_cache_lookups_total", &common, "result", "fetched", NULL,
                  NULL, s->rev_fetches);
    wbuf_prom_family(
        b, "fleetscan_revocation_signature_checks_total", "counter",
        "Signatures of cached CRLs and OCSP responses verified (once per entry and issuer, "
        "not per probe).");
    wbuf_prom_u64(b, "fleetscan_revocation_signature_checks_total", &common, NULL, NULL, NULL, NULL,
                  s->rev_sig_checks);
    wbuf_prom_family(b, "fleetscan_revocation_cache_entries", "gauge",
                     "URLs (per network view) the retrieval cache holds or is retrieving.");
    wbuf_prom_u64(b, "fleetscan_revocation_cache_entries", &common, NULL, NULL, NULL, NULL,
                  s->rev_entries);
    wbuf_prom_family(
        b, "fleetscan_revocation_cache_bytes", "gauge",
        "What the cached CRLs, OCSP responses and AIA certificates are charged once parsed, "
        "against cache.crl_max_bytes_total.");
    wbuf_prom_u64(b, "fleetscan_revocation_cache_bytes", &common, NULL, NULL, NULL, NULL,
                  s->rev_bytes);

    wbuf_prom_family(b, "fleetscan_probe_duration_seconds", "histogram",
                     "Duration of each probe phase in seconds.");
    for (int ph = 0; ph < SNAP_PH_COUNT; ph++) {
        for (int i = 0; i <= SNAP_HIST_BUCKETS; i++) {
            if (i < SNAP_HIST_BUCKETS)
                snprintf(tmp, sizeof(tmp), "%g", snap_hist_bounds[i]);
            else
                fs_strlcpy(tmp, "+Inf", sizeof(tmp));
            wbuf_prom_u64(b, "fleetscan_probe_duration_seconds_bucket", &common, "phase",
                          render__phase_names[ph], "le", tmp, s->hist_counts[ph][i]);
        }
        m_double(b, "fleetscan_probe_duration_seconds_sum", &common, "phase",
                 render__phase_names[ph], s->hist_sum[ph]);
        wbuf_prom_u64(b, "fleetscan_probe_duration_seconds_count", &common, "phase",
                      render__phase_names[ph], NULL, NULL, s->hist_counts[ph][SNAP_HIST_BUCKETS]);
    }

    wbuf_prom_family(b, "fleetscan_event_log_dropped_lines_total", "counter",
                     "Event log lines lost to failed or short writes (a full disk) since start.");
    wbuf_prom_u64(b, "fleetscan_event_log_dropped_lines_total", &common, NULL, NULL, NULL, NULL,
                  s->event_log_dropped);

    if (s->state_db.status != SNAP_DB_OFF) {
        wbuf_prom_family(b, "fleetscan_state_db_up", "gauge",
                         "1 when the state database is open and its last write succeeded.");
        wbuf_prom_u64(b, "fleetscan_state_db_up", &common, NULL, NULL, NULL, NULL,
                      s->state_db.status == SNAP_DB_OK);
        wbuf_prom_family(
            b, "fleetscan_state_db_rebuilt", "gauge",
            "1 when a corrupt or foreign state database was moved aside and rebuilt since "
            "start.");
        wbuf_prom_u64(b, "fleetscan_state_db_rebuilt", &common, NULL, NULL, NULL, NULL,
                      s->state_db.rebuilt);
        wbuf_prom_family(
            b, "fleetscan_state_db_errors_total", "counter",
            "State database problems since start: failed opens and writes, corrupt files.");
        wbuf_prom_u64(b, "fleetscan_state_db_errors_total", &common, NULL, NULL, NULL, NULL,
                      s->state_db.errors);
    }

    wbuf_prom_family(b, "fleetscan_last_update_timestamp_seconds", "gauge",
                     "Time the published snapshot was generated (Unix seconds).");
    wbuf_prom_u64(b, "fleetscan_last_update_timestamp_seconds", &common, NULL, NULL, NULL, NULL,
                  (uint64_t)(s->generated_at > 0 ? s->generated_at : 0));

    wbuf_prom_family(b, "fleetscan_scan_started_timestamp_seconds", "gauge",
                     "Time the daemon started scanning (Unix seconds).");
    wbuf_prom_u64(b, "fleetscan_scan_started_timestamp_seconds", &common, NULL, NULL, NULL, NULL,
                  (uint64_t)(s->started_at > 0 ? s->started_at : 0));

    procstats_metrics(b, &common);
    put_target_metrics(b, s, &common);
    rc = wbuf_done(b);
out:
    wbuf_free(&common);
    return rc;
}
