/* preflight.h - would each group accept a candidate chain before it is bound (SPEC §4)? */
#ifndef FS_PREFLIGHT_H
#define FS_PREFLIGHT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "daemon/config.h"

/* Evaluates the PEM chain (leaf first) for every group of cfg: chain building against the
 * group's trust store, dates at the group's clock, the profile's host name, and (unless the
 * group's revocation is off) the CRLs of its CDP URLs, fetched under the group's network view.
 * Blocks on a private event loop for at most the groups' retrieval budgets; callable from any
 * thread. Returns 0 with *out (the verdict document: chain, groups[], summary), or -1 with err
 * (no certificate in the input, unusable trust store). */
int preflight_run(const cfg_t *cfg, const char *pem, size_t len, int dns_override_only, cJSON **out,
                  char err[256]);

#endif
