/* report.h - renders probe results: the JSON objects shared by `fleetscan probe --json` and
 * the daemon's API, and the human report in the style of `certutil -verify -urlfetch`. */
#ifndef FS_REPORT_H
#define FS_REPORT_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "probes/chain.h"
#include "probes/probe.h"

/* One certificate / the presented chain as JSON (subject, issuer, serial, not_before,
 * not_after, days_left at `at`, sha1 thumbprint, sha256, signature, sans, cdp, aia). */
cJSON *report_cert_json(const chain_cert_t *c, int64_t at);
cJSON *report_chain_json(const chain_info_t *ci, int64_t at);
/* Retrieval lines (CRL and AIA URLs) as a JSON array. */
cJSON *report_retrievals_json(const rev_result_t *rr);
/* The whole result: url, state, cause, warnings, message, remediation, timings_ms, address,
 * connect_attempts ([{address, outcome: connected|refused|timeout|failed, error?, time_ms}]),
 * leaf_sha1, tls, http_status, chain, retrievals. */
cJSON *report_result_json(const probe_result_t *r, const char *url);
/* "connected", "refused", "timeout" or "failed": what one connect attempt came to. */
const char *report_attempt_outcome(const probe_attempt_t *a);
/* The human report. */
void report_result_text(FILE *f, const probe_result_t *r, const char *url);

#endif
