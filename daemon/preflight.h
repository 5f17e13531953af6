/* preflight.h - would each group accept a candidate chain before it is bound (SPEC §4.5)? */
#ifndef FS_PREFLIGHT_H
#define FS_PREFLIGHT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include <openssl/x509.h>

#include "daemon/config.h"
#include "probes/causes.h"

#define PREFLIGHT_MAX_CERTS 16

/* Reads a candidate chain as admins export it: PEM (certificates or a PKCS#7 block), DER
 * `.cer` (MMC's default export) or DER PKCS#7 `.p7b`, in any order. The path is built from the
 * certificates themselves (leaf first, then each issuer), never from the file order. A PFX is
 * refused with how to export the public chain instead. Returns 0 with *out, or -1 with err. */
int preflight_parse_chain(const unsigned char *buf, size_t len, STACK_OF(X509) * *out,
                          char err[256]);

/* Evaluates the chain for the groups of target `target` (index into cfg->targets; -1: the one
 * most endpoints talk to; a chain is bound to one server) through the one endpoint model (policy.h
 * and the probe engine without a server): the group's trust and Intermediate store, AIA fetching,
 * dates at the group's clock, the profile's host name and pin, revocation of its CDP URLs under the
 * group's policy and network view, and the profile's own rules (plain HTTP to an HTTPS binding
 * is profile_mismatch whatever the chain). current (ngroups entries, or NULL) is each group's
 * present non-certificate cause from the running daemon (FS_CAUSE_NONE when none): such a
 * group is reported offline with that cause, not counted as accepting. Blocks on a private
 * event loop for at most the groups' retrieval budgets; callable from any thread. Returns 0
 * with *out (the verdict document: chain, groups[], summary), or -1 with err. */
int preflight_run(const cfg_t *cfg, const unsigned char *buf, size_t len, int dns_override_only,
                  long target, const fs_cause_t *current, cJSON **out, char err[256]);
/* The target a candidate chain is for when none is named: the one most endpoints talk to. */
long preflight_default_target(const cfg_t *cfg);

/* Whether c keeps a group offline whatever certificate is bound: a cause of the resolve,
 * connect, tls or request phase, profile_mismatch or probe_timeout. */
int preflight_cause_is_certificate_independent(fs_cause_t c);

#endif
