/* snapshot.h - the immutable picture of the fleet that the event loop publishes and the
 * API threads read. The loop builds a snapshot, hands it to api_publish(); from then on
 * nobody writes to it. Readers take a reference; the last reference frees it. */
#ifndef FS_SNAPSHOT_H
#define FS_SNAPSHOT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "probes/causes.h"
#include "probes/chain.h"
#include "probes/probe.h"
#include "probes/revoke.h"

enum { SNAP_PENDING = 0, SNAP_ONLINE = 1, SNAP_OFFLINE = 2, SNAP_STATE_COUNT };

/* Phases whose timings are reported, in this order: "dns", "connect", "tls", "revocation",
 * "request". */
enum {
    SNAP_PH_DNS,
    SNAP_PH_CONNECT,
    SNAP_PH_TLS,
    SNAP_PH_REVOCATION,
    SNAP_PH_REQUEST,
    SNAP_PH_COUNT
};

/* Histogram upper bounds (seconds) of fleetscan_probe_duration_seconds; +Inf is implied. */
#define SNAP_HIST_BUCKETS 12
extern const double snap_hist_bounds[SNAP_HIST_BUCKETS];

typedef struct snap_endpoint_s {
    uint32_t group;    /* index into snap_t.groups */
    uint32_t index;    /* index within its group: id is "<group>-%05u" */
    uint8_t state;     /* SNAP_PENDING | SNAP_ONLINE | SNAP_OFFLINE */
    uint8_t cause;     /* fs_cause_t, FS_CAUSE_NONE when online or pending */
    uint8_t restored;  /* state, cause, warnings and since came from the state database at start
                          and no probe has confirmed them yet */
    uint32_t warnings; /* FS_WARN_BIT() mask */
    int64_t since;     /* state change time, seconds since the epoch (0: never probed) */
    int64_t last_probe_at;
    uint32_t timings_ms[SNAP_PH_COUNT];
} snap_endpoint_t;

typedef struct snap_counts_s {
    uint32_t total, online, offline, pending;
    uint32_t causes[FS_CAUSE_COUNT];  /* offline endpoints by primary cause */
    uint32_t warnings[FS_WARN_COUNT]; /* endpoints carrying each warning */
} snap_counts_t;

typedef struct snap_group_s {
    char *name;
    char *target; /* the target its profile belongs to (SPEC §4.1), by its configured name */
    int64_t offline_since; /* the earliest since of its offline endpoints (0: none offline) */
    snap_counts_t counts;
    char *message; /* agent.log line of the group's last probe ("" when none) */
    /* Per primary cause (FS_CAUSE_NONE: online): the last message of a probe of this group that
     * ended with that cause, or NULL. Preferred over message, so an endpoint never shows another
     * endpoint's failure. */
    char *cause_message[FS_CAUSE_COUNT];
    /* Per primary cause: the "detail" of GET /api/v1/endpoints/{id} for the group's endpoints
     * that ended so, or NULL. Rendered once by the loop when the probe came back (web/render.h
     * render_detail) and served verbatim: a JSON object in its final form. */
    char *cause_detail[FS_CAUSE_COUNT];
    /* For the forecast: what the group's endpoints depend on, from its last probes. */
    int64_t chain_not_after;  /* earliest notAfter of the validated chain (0: unknown) */
    int64_t chain_not_before; /* latest notBefore of that chain (0: unknown) */
    int64_t crl_next_update;  /* earliest nextUpdate of the CRLs it checked (0: none) */
    int64_t clock_skew_s;     /* the group's clock skew */
    int rev_strict;           /* its revocation mode is strict (an expired CRL is fatal) */
} snap_group_t;

typedef struct snap_event_s {
    int64_t at;       /* seconds since the epoch */
    uint64_t seq;     /* strictly increasing */
    char subject[96]; /* endpoint id or "group:<name>" */
    char target[49];  /* the target of the subject's group when it happened ([A-Za-z0-9_.-]{1,48});
                         "" when unknown (a restored event whose group is gone) */
    uint8_t old_state, new_state;
    uint8_t cause;
} snap_event_t;

/* Something about how the daemon runs that an operator should fix (docs/API.md,
 * "daemon.warnings"): a non-loopback API, a token file others can read, running as root. */
typedef struct snap_warning_s {
    char code[32];     /* stable identifier: "listen_not_loopback", "running_as_root", ... */
    char message[240]; /* what and how to fix it */
} snap_warning_t;

/* The reference target's last probe, as GET /api/v1/targets and the certificate and CRL gauges of
 * /metrics show it. Filled on the loop by daemon/reference.c once per reference probe, then never
 * written: the snapshots published until the next reference probe share it by reference. */
/* What one address of a target served when last reached. */
typedef struct snap_backend_s {
    char addr[64];
    char leaf_sha1[41]; /* "" when no handshake completed */
    int online;
    uint8_t cause;     /* fs_cause_t */
    int64_t last_seen; /* seconds since the epoch */
} snap_backend_t;

typedef struct snap_target_s {
    atomic_int refs;
    char *name;    /* the target's name ("reference" for the legacy single target): the label */
    char *url;     /* the binding's URL */
    char *profile; /* the binding's profile name (the target's name for "targets" entries) */
    char *trust;   /* the trust store that validated it */
    int64_t checked_at;
    int online;
    uint8_t cause;     /* fs_cause_t, FS_CAUSE_NONE when online */
    uint32_t warnings; /* FS_WARN_BIT() mask */
    char message[320];
    uint32_t timings_ms[SNAP_PH_COUNT];
    uint32_t total_ms;
    char addr[64];                                  /* the address connected to, "" when none */
    probe_attempt_t attempts[FS_RESOLVE_MAX_ADDRS]; /* the connects tried, in order */
    size_t nattempts;
    char leaf_sha1[41]; /* the presented leaf's SHA-1 (upper-case hex), "" when none */
    /* Every address of the target's name seen by its reference or its endpoints' probes
     * (SPEC §4.1), and whether they disagree (backend_inconsistent). */
    snap_backend_t backends[FS_RESOLVE_MAX_ADDRS];
    size_t nbackends;
    int inconsistent;
    char inconsistent_why[256];
    int64_t backend_max_age_s; /* an address last reached longer ago counts in no comparison
                                  (backend_inconsistent, leaf_agrees' vote); 0: every one */
    int64_t endpoint_time;     /* validation time (0: unknown) */
    char tls_version[16];      /* "TLSv1.3", "" when no handshake completed */
    char cipher[64];
    int http_status;        /* 0: no request was made */
    chain_info_t chain;     /* the presented chain, leaf first; owned */
    rev_url_result_t *urls; /* the CRL and AIA retrievals, in the order made; owned */
    size_t nurls;
} snap_target_t;
/* A SIGHUP reload: when, and whether it was applied (or refused). */
#define SNAP_RELOADS_MAX 16
typedef struct snap_reload_s {
    int64_t at;
    int ok;
} snap_reload_t;

/* The state database (SPEC §4.4, daemon/store.h): "state_db" in /api/v1/status. */
enum {
    SNAP_DB_OFF,         /* none configured (state_db null or ":memory:") */
    SNAP_DB_OK,          /* open, the last write succeeded */
    SNAP_DB_FAILING,     /* the last write failed (a full disk, locked by another client);
                            retried every tick */
    SNAP_DB_UNAVAILABLE, /* cannot be opened (used by another fleetscan, an unwritable
                            directory); retried every minute, nothing persists meanwhile */
    SNAP_DB_COUNT
};
typedef struct snap_store_s {
    uint8_t status;          /* SNAP_DB_* */
    uint8_t rebuilt;         /* a missing-schema, corrupt or foreign file was moved aside this run
                                and a new database started */
    char *path;              /* NULL when off */
    char *moved_to;          /* where the bad file went, NULL when none */
    char *last_error;        /* the last problem in words, NULL when none since start */
    int64_t last_error_at;   /* seconds since the epoch, 0: never */
    int64_t last_write_at;   /* the last committed tick's snapshot time, 0: none yet */
    uint64_t errors;         /* problems since start: failed opens, writes, corrupt files */
    uint64_t events_dropped; /* events never written (the writer was behind or unavailable) */
    uint32_t restored_endpoints, restored_events, restored_cache; /* brought back at start */
} snap_store_t;

/* Revocation-source health (SPEC §4.2): every CDP, delta-CRL and OCSP URL of the reference chain
 * as the vantage checked it live (probes/revcheck.c, not through the endpoints' cache), with the
 * groups whose checks use it and when their cached copies run out. Filled on the loop by
 * daemon/revhealth.c at the end of each check round, then never written: the snapshots published
 * until the next round share it by reference. */
typedef struct snap_rev_group_s {
    char *name;
    uint8_t mode;         /* rev_mode_t */
    uint32_t endpoints;   /* the group's endpoints (in this shard) */
    int64_t cached_until; /* when the group's cached copy from this URL runs out: its view's cache
                             entry, min(nextUpdate, retrieval + max age); 0: no cached copy */
    int at_risk;          /* strict, the URL is not usable now and no other URL the group's check
                             would use for that certificate answers: its endpoints go offline */
    int64_t offline_at;   /* when at_risk: when the group's last cached copy for that certificate
                             runs out (the check time when it already has) */
} snap_rev_group_t;

typedef struct snap_rev_url_s {
    char url[512];       /* as the certificate (or base CRL) names it, password redacted */
    char kind[8];        /* "crl" | "delta" | "ocsp" */
    int cert_depth;      /* the certificate it speaks for (0 = leaf) */
    int skipped;         /* not retrieved at no cost (ldap:// and no group names a directory,
                            file://): not unreachable, no group depends on it */
    int reachable;       /* answered now with a usable CRL or OCSP response */
    int signature_valid; /* 1, 0, -1 not checked */
    uint32_t latency_ms; /* of the retrieval */
    long http_status;    /* 0: no HTTP answer (or LDAP) */
    size_t bytes;
    int64_t this_update, next_update; /* of the answer, 0 when unknown */
    char ocsp_status[8];              /* "good" | "revoked" | "unknown" | "" */
    char error[160];                  /* "" when reachable */
    char directory[128];              /* ldap://: the directory it was checked through, else "" */
    int64_t checked_at, last_success; /* last_success 0: never since start */
    uint32_t strict_at_risk;          /* sum of endpoints over the groups at_risk */
    int64_t strict_offline_at;        /* the earliest offline_at of those groups, 0 when none */
    snap_rev_group_t *groups;         /* the groups that depend on it, in configuration order */
    size_t ngroups;
} snap_rev_url_t;

typedef struct snap_revhealth_s {
    atomic_int refs;
    int64_t checked_at; /* end of the round */
    snap_rev_url_t *urls;
    size_t nurls;
} snap_revhealth_t;

typedef struct snap_s {
    atomic_int refs;
    int64_t generated_at;
    int64_t started_at;
    char *vantage;
    char *shard; /* "i/n", "0/1" when unsharded */
    snap_counts_t totals;
    snap_group_t *groups;
    size_t ngroups;
    snap_endpoint_t *endpoints; /* ordered by group, then index */
    size_t nendpoints;

    uint64_t probes_total;
    uint64_t probes_by_result[SNAP_STATE_COUNT]; /* by outcome: [SNAP_ONLINE], [SNAP_OFFLINE] */
    uint32_t probes_in_flight;
    /* The probes' revocation retrieval cache (probes/revoke.h rev_cache_stats) at publish time:
     * URL lookups it answered, joined to a retrieval in flight or started one; signatures it
     * checked; what it holds. */
    uint64_t rev_hits, rev_joined, rev_fetches, rev_sig_checks;
    uint64_t rev_entries, rev_bytes;
    /* Probe duration histogram per phase (cumulative counts as Prometheus wants them). */
    uint64_t hist_counts[SNAP_PH_COUNT][SNAP_HIST_BUCKETS + 1];
    double hist_sum[SNAP_PH_COUNT];

    /* Each target's last reference probe, in configuration order (one reference each); an entry
     * is NULL before that target's first probe. */
    snap_target_t **targets;
    size_t ntargets;
    /* Per target (parallel to targets): the live health of its chain's revocation URLs; NULL
     * before its first round. Referenced. */
    snap_revhealth_t **revocation;
    /* The event log: its path (NULL: none configured), the lines it lost since start to
     * failed or short writes (a full disk), and the last write error (NULL: none yet). */
    char *event_log_path;
    uint64_t event_log_dropped;
    char *event_log_error;
    int64_t event_log_error_at; /* seconds since the epoch, 0: never */
    /* Warnings about how the daemon runs, in the order they were found. */
    snap_warning_t *daemon_warnings;
    size_t ndaemon_warnings;
    /* The state database, filled by the daemon before the snapshot is published. */
    snap_store_t state_db;
    /* The last SIGHUP reload (docs/API.md "config.last_reload"): when, whether it was applied,
     * and why not. at 0: none since start. */
    int64_t reload_at;
    int reload_ok;
    char reload_message[256];
    /* The newest SNAP_RELOADS_MAX reloads since start, oldest first (the dashboard's timeline). */
    snap_reload_t reloads[SNAP_RELOADS_MAX];
    size_t nreloads;
    /* Recent state changes, oldest first (a bounded ring copied out). */
    snap_event_t *events;
    size_t nevents;

    /* Rendered once by the first API reader that needs them (a snapshot never changes), then
     * served as is: GET /api/v1/status, /api/v1/targets and /metrics cost a copy, not a render. */
    _Atomic(char *) status_body;
    _Atomic(char *) targets_body;
    _Atomic(char *) metrics_body;
} snap_t;

/* Allocates a zeroed snapshot with one reference. */
snap_t *snap_new(void);
snap_t *snap_ref(snap_t *s);
/* Drops a reference; frees everything the snapshot owns with the last one. NULL is a no-op. */
void snap_unref(snap_t *s);
/* A zeroed target with one reference. */
snap_target_t *snap_target_new(void);
snap_target_t *snap_target_ref(snap_target_t *t);
/* Drops a reference; frees the target and what it owns with the last one. NULL is a no-op. */
void snap_target_unref(snap_target_t *t);
/* A zeroed health record with one reference; the last unref frees urls and their groups. */
snap_revhealth_t *snap_revhealth_new(void);
snap_revhealth_t *snap_revhealth_ref(snap_revhealth_t *h);
void snap_revhealth_unref(snap_revhealth_t *h);
/* Formats an endpoint id "<group>-%05u" into buf. */
void snap_endpoint_id(const snap_t *s, const snap_endpoint_t *e, char *buf, size_t len);
const char *snap_state_name(int state);
/* "off", "ok", "failing", "unavailable" */
const char *snap_db_status_name(int status);

#endif
