/* config.h - the configuration of `fleetscan run`: JSON (with comments) in, a validated,
 * defaulted, resolved cfg_t out, or one error message naming the JSON path and the problem. */
#ifndef FS_CONFIG_H
#define FS_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "probes/revoke.h"
#include "probes/url.h"

/* Hard limits of the configuration itself (docs/CONFIG.md). */
#define CFG_MAX_FILE_BYTES (4u << 20)       /* config file size cap */
#define CFG_MAX_GROUP_COUNT 1000000u        /* endpoints in one group */
#define CFG_MAX_GROUPS 65535u               /* groups (an endpoint stores its group in 16 bits) */
#define CFG_MAX_TOTAL_ENDPOINTS 10000000ull /* endpoints over all groups */
#define CFG_MAX_SHARDS 1000000u             /* instances a fleet is split across */

/* Revocation modes and scopes are the probes' (probes/revoke.h: rev_mode_t, rev_scope_t and
 * their names). */

/* Global limits that protect the server and bound each probe (all times in ms). */
typedef struct cfg_limits_s {
    uint32_t max_in_flight;        /* probes running at once, >= 1 */
    double handshakes_per_s;       /* token bucket rate of new handshakes, > 0 */
    uint32_t probe_timeout_ms;     /* deadline of a whole probe */
    uint32_t connect_timeout_ms;   /* TCP connect deadline */
    uint32_t tls_timeout_ms;       /* TLS handshake deadline */
    uint32_t request_timeout_ms;   /* HTTP request (agent URL) deadline */
    uint64_t fetch_inflight_bytes; /* budget of CRL/OCSP/AIA bodies being retrieved, process-wide */
} cfg_limits_t;

/* The HTTP API's threads, connection limits and deadlines (docs/API.md, "Connections"); read at
 * start, like listen. */
typedef struct cfg_api_s {
    uint32_t threads;                /* libmicrohttpd's thread pool */
    uint32_t max_connections;        /* past it a new connection evicts the oldest idle one */
    uint32_t max_connections_per_ip; /* the same, per client address */
    uint32_t health_reserve;         /* /healthz-only slots when nothing is idle; 0: none */
    uint32_t header_timeout_s;       /* connection (or keep-alive idle end) to request head */
    uint32_t body_timeout_s;         /* request head to the end of its body */
    uint32_t send_timeout_s;         /* answer queued to answer taken by the client */
    uint32_t idle_timeout_s;         /* keep-alive idle */
} cfg_api_t;

/* CRL/AIA cache bounds, shared by all groups. */
typedef struct cfg_cache_s {
    uint32_t crl_max_age_s;       /* a cached CRL is refetched after this even before nextUpdate */
    uint64_t crl_max_bytes_total; /* sum of cached CRL bodies; least recently used go first */
} cfg_cache_t;

/* A named trust store: what one kind of endpoint trusts. At least one of ca_file/ca_dir. */
typedef struct cfg_trust_s {
    char *name;    /* key in "trust_stores" */
    char *ca_file; /* absolute path of a PEM bundle of trusted roots, or NULL */
    char *ca_dir;  /* absolute path of an OpenSSL hashed directory, or NULL */
    char *
        intermediates_file;     /* absolute path of PEM certs the endpoint already holds in its
                                   Intermediate CA store (untrusted, used for path building), or NULL */
    size_t ca_count;            /* certificates found in ca_file (0 when none) */
    size_t intermediates_count; /* certificates found in intermediates_file (0 when none) */
    unsigned char digest[32];   /* SHA-256 over the store's content (files and hashed dir
                                   entries), so a reload can tell whether the store changed */
} cfg_trust_t;

/* A named agent communication profile. */
typedef struct cfg_profile_s {
    char *name;                 /* key in "profiles" */
    char *url;                  /* the URL as written */
    fs_url_t u;                 /* the parsed URL; u.path "" means handshake only */
    char expect_thumbprint[65]; /* pinned certificate thumbprint, lowercase hex: 40 chars
                                   (SHA-1) or 64 (SHA-256); "" when not pinned */
    char *target_name;          /* its "target" as written, or NULL (then chosen, SPEC §5) */
    size_t target_idx;          /* the target it belongs to, index into cfg_t.targets */
} cfg_profile_t;

/* A target (SPEC §4.1): one server binding as its own admin defines it. Its reference probe
 * connects to binding.u (scheme, host, port; with "targets" the path is dropped, so the
 * reference only completes the handshake; the legacy single target keeps the reference
 * profile's path and pin, as before) with the trust store trust_idx. */
typedef struct cfg_target_s {
    char *name;            /* key in "targets"; "reference" for the legacy single target */
    cfg_profile_t binding; /* name, url, u and pin of the binding */
    size_t trust_idx;      /* the store that validates the reference probe */
} cfg_target_t;

/* How a group's endpoints check revocation (Windows CryptoAPI defaults for the budgets). */
typedef struct cfg_revocation_s {
    rev_mode_t mode;            /* policy, default REV_STRICT */
    rev_scope_t scope;          /* certificates checked, default REV_SCOPE_CHAIN_EXCLUDE_ROOT */
    bool aia_fetch;             /* fetch missing issuers from AIA caIssuers URLs, default true */
    uint32_t url_timeout_ms;    /* per CRL/AIA URL retrieval, default 15000 */
    uint32_t budget_ms;         /* all URL retrievals of one probe together, default 20000 */
    uint64_t max_crl_bytes;     /* a larger CRL is crl_invalid, default 16 MiB */
    bool ocsp;                  /* ask OCSP responders first, CRLs on failure, default true */
    rev_timeout_t timeout_mode; /* per_url (default) | accumulative (probes/revoke.h) */
} cfg_revocation_t;

/* A group's TLS client settings. */
typedef struct cfg_tls_s {
    int min_version;    /* OpenSSL protocol constant: TLS1_VERSION (0x0301) .. TLS1_3_VERSION */
    int max_version;    /* same range, >= min_version */
    char *ciphers;      /* OpenSSL cipher list for TLS <= 1.2 (validated), or NULL: default */
    char *ciphersuites; /* TLS 1.3 suites (validated), or NULL: OpenSSL's default */
    bool sni;           /* send SNI; without it IIS serves its default (no-SNI) binding */
} cfg_tls_t;

/* A group's view of the network. */
typedef struct cfg_network_s {
    fs_resolve_t resolve; /* DNS overrides NAME -> IP literal, like curl --resolve */
    char *proxy;          /* "http://host:port" proxy for CRL/AIA fetches, or NULL: direct */
    char *source_address; /* IP literal to bind outgoing connections to, or NULL */
    char *ldap;           /* "host[:port]" of the directory for ldap:// CDP URLs, or NULL */
} cfg_network_t;

/* A group of `count` identical simulated endpoints. */
typedef struct cfg_group_s {
    char *name;                  /* unique, [A-Za-z0-9_.-]{1,48} */
    uint32_t count;              /* simulated endpoints, 1 .. CFG_MAX_GROUP_COUNT */
    size_t profile_idx;          /* index into cfg_t.profiles */
    size_t trust_idx;            /* index into cfg_t.trust */
    cfg_revocation_t revocation; /* revocation policy */
    cfg_tls_t tls;               /* TLS client settings */
    int64_t clock_skew_s;        /* the endpoint's clock minus the host's, seconds */
    cfg_network_t network;       /* DNS view, proxy, source address */
} cfg_group_t;

/* The whole configuration. Immutable once returned; free with cfg_free(). */
typedef struct cfg_s {
    atomic_int refs;      /* shared read-only by the loop and the API threads; see cfg_ref() */
    char *base_dir;       /* absolute directory relative paths were resolved against */
    char *vantage;        /* name of this vantage host, default gethostname() */
    char listen_host[64]; /* API bind address: an IP literal, without brackets */
    int listen_port;      /* API port, 0 picks a free port */
    char *api_token_file; /* absolute path of the bearer token file, or NULL: mutations off */
    char *api_token;      /* the token (file content, whitespace-trimmed), or NULL */
    double interval_s;    /* each endpoint probes every interval_s (> 0) ... */
    double jitter;        /* ... +/- jitter * interval_s, 0 .. 1 */
    uint32_t shard_index; /* this instance is shard shard_index (0-based) ... */
    uint32_t shard_count; /* ... of shard_count instances ("i/n"); "0/1": the whole fleet */
    char *event_log;      /* absolute path of the agent.log-style event file, or NULL */
    char *state_db;       /* "state_db": absolute path or ":memory:"; NULL: off or not given */
    int state_db_given;   /* the key is present (a path or null); 0: the daemon's default */
    uint32_t expiring_soon_days;      /* cert_expiring_soon window */
    uint32_t crl_expiring_soon_hours; /* crl_expiring_soon window */
    uint32_t api_token_mode;          /* permission bits of api_token_file when read */
    uint32_t api_token_gid;           /* and its group */
    cfg_limits_t limits;              /* global probe limits */
    cfg_api_t api;                    /* API connection limits and deadlines */
    cfg_cache_t cache;                /* CRL cache bounds */
    cfg_trust_t *trust;               /* trust stores, in file order */
    size_t ntrust;                    /* >= 1 */
    cfg_profile_t *profiles;          /* profiles, in file order */
    size_t nprofiles;                 /* >= 1 */
    size_t ref_profile_idx;           /* reference probe's profile, index into profiles */
    size_t ref_trust_idx;             /* reference probe's trust store, index into trust */
    cfg_target_t *targets;            /* "targets", or the one "reference" defines; >= 1 */
    size_t ntargets;
    cfg_group_t *groups;      /* endpoint groups, in file order */
    size_t ngroups;           /* >= 1 */
    uint64_t total_endpoints; /* sum of the groups' counts (all shards) */
} cfg_t;

/* Reads and validates the configuration file at path (at most CFG_MAX_FILE_BYTES). Relative
 * paths inside are resolved against the file's directory. Returns 0 and a new cfg_t in *out,
 * or -1 with err filled ("groups[2].trust: unknown trust store \"legcy\"") and *out NULL. */
int cfg_load(cfg_t **out, const char *path, char err[256]);

/* Same from memory: json (len bytes, need not be NUL-terminated), relative paths resolved
 * against base_dir (NULL: the current directory). */
int cfg_parse(cfg_t **out, const char *json, size_t len, const char *base_dir, char err[256]);

/* Parses a shard "i/n", the one grammar of "shard" and of `fleetscan run --shard`: decimal
 * digits only, 0 <= i < n <= CFG_MAX_SHARDS. Returns 0 with *index and *count set, or -1. */
int cfg_parse_shard(const char *s, uint32_t *index, uint32_t *count);

/* A configuration is immutable once returned, so threads share it: cfg_ref() takes another
 * reference (returns cfg), cfg_unref() and cfg_free() drop one; the last one frees. NULL is
 * fine for both drops. */
const cfg_t *cfg_ref(const cfg_t *cfg);
void cfg_unref(const cfg_t *cfg);
void cfg_free(cfg_t *cfg);

/* The comparisons below follow the schema's flags (daemon/config_table.h, one row per key):
 * a key counts when its row says so, so a new key cannot be forgotten in one of them. */

/* Returns 1 when group ia of a and group ib of b probe identically: every key of the group
 * flagged CFG_F_PROBE (name, count, profile content (URL, pin), trust store content, revocation,
 * TLS, clock skew, network) and the document's (the four probe timeouts of limits, the warning
 * windows, the reference profile and trust store) are equal. Used on SIGHUP to keep the state
 * of unchanged groups. 0 when an index is out of range or a configuration is NULL. */
int cfg_group_equal(const cfg_t *a, size_t ia, const cfg_t *b, size_t ib);

/* Returns 1 when group ia of a and group ib of b can share one TLS context (policy_tls_ctx):
 * the same trust store content and the same keys flagged CFG_F_TLSCTX (versions, ciphers). */
int cfg_tls_ctx_equal(const cfg_t *a, size_t ia, const cfg_t *b, size_t ib);

/* Returns 1 when target ia of a and target ib of b are the same binding (name, URL, pin, trust
 * store content): its reference state carries over a reload. */
int cfg_target_equal(const cfg_t *a, size_t ia, const cfg_t *b, size_t ib);

/* Calls cb with the JSON path of every setting that is read only at start (flag CFG_F_RESTART:
 * "listen", "api_token_file" (the token in it), "cache.crl_max_age_s", ...) and differs between
 * was and now; returns how many. A reload warns with them. */
size_t cfg_restart_changes(const cfg_t *was, const cfg_t *now,
                           void (*cb)(void *arg, const char *key), void *arg);

/* A setting that works but exposes the daemon: logged at start and listed in /status
 * ("daemon.warnings", docs/API.md). code is a stable identifier. */
#define CFG_WARN_LISTEN "listen_not_loopback"    /* the API binds a non-loopback address */
#define CFG_WARN_TOKEN_FILE "token_file_exposed" /* others may read or write the token */
#define CFG_MAX_WARNINGS 4
typedef struct cfg_warning_s {
    const char *code;  /* CFG_WARN_* */
    char message[240]; /* names the key and how to fix it */
} cfg_warning_t;

/* Fills out with the configuration's warnings; returns how many (<= CFG_MAX_WARNINGS). A
 * token file is exposed when others may read or write it, or its group may and that group
 * is not this process's effective group (a dedicated service group, as deploy/ sets up). */
size_t cfg_warnings(const cfg_t *c, cfg_warning_t out[CFG_MAX_WARNINGS]);
/* 1 when ip (an IP literal) is a loopback address: 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104. */
int cfg_is_loopback(const char *ip);

#endif
