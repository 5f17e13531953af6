/* scenarios.h - the standard lab: a test PKI, its CRL/AIA server and one loopback TLS server
 * per failure scenario. Shared by the probe tests, the daemon tests and `fleetscan demo`. */
#ifndef LAB_SCENARIOS_H
#define LAB_SCENARIOS_H

#include "lab/httpserver.h"
#include "lab/pki.h"
#include "lab/tlsserver.h"

#define LAB_HOST "ns.lab.test"      /* the server's FQDN in every leaf */
#define LAB_CRL_HOST "crl.lab.test" /* CDP/AIA host: resolve it to 127.0.0.1 to reach it */

#define LAB_SCENARIO_LIST(X)                                                                       \
    X(GOOD, "good", "full chain, valid leaf")                                                      \
    X(LEAF_ONLY, "leaf-only", "valid leaf, the server omits the intermediate")                     \
    X(EXPIRED, "expired", "expired leaf, full chain")                                              \
    X(NOTYET, "not-yet-valid", "leaf valid from 2 days ahead")                                     \
    X(WRONGHOST, "wrong-host", "certificate for other.lab.test bound")                             \
    X(ROGUE, "rogue-root", "full chain ending in an untrusted self-signed root")                   \
    X(LEGACY, "legacy-root", "leaf issued by the legacy root, full chain")                         \
    X(SHA1, "sha1", "SHA-1 signed leaf")                                                           \
    X(EXPIRING, "expiring", "leaf expiring in 5 days")                                             \
    X(REVOKED, "revoked", "leaf listed on the intermediate's CRL")                                 \
    X(TLS10, "tls10", "TLS 1.0 only (if the local OpenSSL allows)")                                \
    X(HTTP500, "http-500", "valid TLS, the agent URL answers 500")                                 \
    X(NOSNI, "sni-only", "valid leaf with SNI, wrong-host certificate without SNI")                \
    X(PLAIN_HTTP, "plain-http", "plain HTTP server, no TLS")                                       \
    X(STALL, "stall", "accepts, never answers")                                                    \
    X(GARBAGE, "garbage", "sends non-TLS bytes")                                                   \
    X(RESET, "reset", "resets the connection after the ClientHello")                               \
    X(CLOSE, "close", "closes the connection after the ClientHello")

typedef enum {
#define X(e, name, desc) LAB_SC_##e,
    LAB_SCENARIO_LIST(X)
#undef X
        LAB_SC_COUNT
} lab_scenario_t;

extern const char *const lab_scenario_names[LAB_SC_COUNT];
extern const char *const lab_scenario_descriptions[LAB_SC_COUNT];

typedef struct lab_s {
    char dir[256]; /* temp dir holding the PKI files */
    lab_http_t *http;
    lab_pki_t pki;
    lab_tls_t *srv[LAB_SC_COUNT]; /* NULL when unsupported here (TLS 1.0) */
    int closed_port;              /* a 127.0.0.1 port nothing listens on */
} lab_t;

/* Creates the PKI in a fresh temp dir and starts every server on 127.0.0.1. Returns 0, or -1
 * with err filled (everything already started is stopped). */
int lab_start(lab_t *lab, char err[256]);
/* Port of a scenario's server, 0 when it was not started. */
int lab_port(const lab_t *lab, lab_scenario_t s);
/* "https://ns.lab.test:PORT" (+ path) for a scenario, into buf. */
char *lab_url(const lab_t *lab, lab_scenario_t s, const char *path, char *buf, size_t n);
/* Path of a PKI file ("root.pem", ...) into buf. */
char *lab_file(const lab_t *lab, const char *name, char *buf, size_t n);
/* A listener on ip:port (port 0: any) whose accept queue is full, so the kernel drops further
 * SYNs and a connect to it never completes: a connect timeout that stays on loopback.
 * fds receives the 4 descriptors to close; returns the port. */
int lab_blackhole(const char *ip, int port, int fds[4]);
/* Stops everything and removes the temp dir. */
void lab_stop(lab_t *lab);

#endif

/* A fleet configuration for `fleetscan run` against this lab: a Notification Server in the
 * middle of a rollover, each group broken the way real endpoints are (one group per main
 * cause). Written as JSON to path. Used by the daemon tests and `fleetscan demo`. */
typedef struct lab_fleet_opts_s {
    const char *listen;     /* "127.0.0.1:0" by default */
    double interval_s;      /* default 30 */
    double scale;           /* multiplies every group's count (default 1: ~1,000 endpoints) */
    const char *token_file; /* api_token_file, or NULL */
    const char *event_log;  /* event_log, or NULL */
    const char *vantage;    /* default "lab" */
} lab_fleet_opts_t;

/* One row per group the lab fleet has; exposed so tests can assert each group's outcome. */
typedef struct lab_group_s {
    const char *name;
    lab_scenario_t scenario;
    unsigned count;
    const char *expect_cause; /* NULL when the group should be online */
    const char *expect_warning;
} lab_group_t;
extern const lab_group_t lab_groups[];
extern const size_t lab_ngroups;

int lab_write_fleet_config(const lab_t *lab, const char *path, const lab_fleet_opts_t *o,
                           char err[256]);
