/* policy.h - the one endpoint model (SPEC §4.3): what a group's configuration means for a probe
 * (TLS context, probe options, revocation policy) and how a probe's outcome becomes the group's
 * verdict (the profile rules of §4.1). The fleet, the reference probe, `fleetscan probe` (with
 * or without -c) and pre-flight all go through here, so they cannot disagree on a default. */
#ifndef FS_POLICY_H
#define FS_POLICY_H

#include <stddef.h>

#include "daemon/config.h"
#include "probes/probe.h"

/* Everything a probe of one group (or of the reference binding) uses. The struct is
 * self-referential (popts points at rev, thumb and the profile URL): initialise it in place and
 * never copy it. */
typedef struct policy_s {
    tlsc_ctx_t *tls;    /* one reference, owned */
    rev_policy_t rev;   /* the revocation policy (view key is `view`) */
    probe_opts_t popts; /* probe options; rev, vcache and dns_override_only are the caller's */
    char thumb[65];     /* the profile's pin, "" when none */
    char view[24];      /* network view key for the CRL/AIA cache */
    const cfg_profile_t *profile; /* what the endpoint connects to (borrowed from the cfg) */
    const cfg_profile_t *ref;     /* the server's own binding: its target's (cfg_target_t) */
    int profile_differs;          /* scheme, port or FQDN differ from the reference binding */
    int http_vs_https;            /* the profile speaks plain HTTP, the binding is HTTPS */
    size_t target_idx;            /* the target whose binding ref is (cfg_t.targets) */
} policy_t;

/* The TLS context of a trust store and TLS settings (an OpenSSL load error names the store). */
int policy_tls_ctx(tlsc_ctx_t **out, const cfg_t *cfg, size_t trust_idx, const cfg_tls_t *t,
                   char err[256]);
/* The revocation policy of group g: mode, scope, AIA, budgets, caps, DNS view, proxy, warning
 * window. The cache view key and dns_override_only are the caller's to set. */
void policy_revocation(const cfg_t *cfg, const cfg_group_t *g, rev_policy_t *p);

/* Fills pl for group gi of cfg. shared_tls (a reference is taken) avoids building the same
 * TLS context twice; NULL builds one. Returns 0, or -1 with err naming the trust store. */
int policy_group_init(policy_t *pl, const cfg_t *cfg, size_t gi, tlsc_ctx_t *shared_tls,
                      char err[256]);
/* Fills pl for the reference probe of target ti: its binding, its trust store, TLS 1.0-1.3,
 * soft-fail revocation with AIA, the DNS view of a group of that target (one whose profile is
 * the binding itself first; else of the first group whose overrides name its host, else the
 * system's), and that group's cache view, so the CRL server sees one fetch per URL, not two.
 * Captures the chain. Returns 0, or -1 with err. */
int policy_reference_init(policy_t *pl, const cfg_t *cfg, size_t ti, char err[256]);
/* Points pl at another profile (borrowed, must outlive pl): `fleetscan probe -c --group URL`. */
void policy_set_profile(policy_t *pl, const cfg_profile_t *p);
/* 1 when a and b meet the same addresses for a's binding host: both resolve it through the
 * system, or both override it with the same address list. Only such probes tell whether a
 * farm's nodes agree: a group whose DNS view sends the name elsewhere (a stale record, a
 * branch's split DNS) is judged on its own, never makes the farm look inconsistent. */
int policy_same_addresses(const policy_t *a, const policy_t *b);
void policy_free(policy_t *pl);

/* 1 when a reference probe shows its binding answering: resolved, connected and completed the
 * handshake (whatever the validation said: an expired reference certificate does not make a
 * wrong port the binding's fault). This is "the reference succeeds" of SPEC §4.1. */
int policy_reference_answers(const probe_result_t *r);

/* What the reference probe last said: unknown until it has answered once. */
typedef enum { POLICY_REF_UNKNOWN, POLICY_REF_UP, POLICY_REF_DOWN } policy_ref_t;

/* The group's verdict for a probe result (SPEC §4.1): the probe's own cause, except
 * profile_mismatch when the profile speaks plain HTTP to an HTTPS binding (always), or when a
 * profile that differs from the binding fails at resolve, connect or TLS (or with a host-name
 * mismatch on another FQDN) while the reference is up. msg (n bytes) receives the message. */
fs_cause_t policy_verdict(const policy_t *pl, const probe_result_t *r, policy_ref_t ref, char *msg,
                          size_t n);

#endif
