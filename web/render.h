/* render.h - turns an immutable snapshot into the bodies of the HTTP API: JSON documents and
 * the Prometheus text exposition. Pure functions of their inputs: no HTTP, no locks. */
#ifndef FS_RENDER_H
#define FS_RENDER_H

#include <stddef.h>
#include <stdint.h>

#include "web/snapshot.h"
#include "web/wbuf.h"

/* Filter and page of GET /api/v1/endpoints; -1 in a filter field means "any". */
typedef struct render_query_s {
    int state;   /* SNAP_* */
    int cause;   /* fs_cause_t, implies offline */
    int warning; /* fs_warning_t */
    long group;  /* index into snap_t.groups */
    size_t limit, offset;
} render_query_t;

/* Each returns 0 or UV_ENOMEM (output past b->max). */
int render_status(const snap_t *s, wbuf_t *b);
int render_endpoints(const snap_t *s, const render_query_t *q, wbuf_t *b);
/* One item; with_detail adds "detail": the group's cause_detail for the endpoint's outcome,
 * spliced as it is (null when there is none). */
int render_endpoint(const snap_t *s, const snap_endpoint_t *e, int with_detail, wbuf_t *b);
/* Events with seq > since_seq and at >= since_at. */
int render_events(const snap_t *s, uint64_t since_seq, int64_t since_at, wbuf_t *b);
int render_causes(wbuf_t *b);
/* GET /api/v1/targets from s->target; {"targets":[]} before the first reference probe. */
int render_targets(const snap_t *s, wbuf_t *b);
/* Prometheus text exposition 0.0.4; every sample carries vantage and shard labels. The
 * certificate and CRL gauges and fleetscan_reference_up come from s->target (absent without). */
int render_metrics(const snap_t *s, wbuf_t *b);
/* {"error": msg, "code": code} */
int render_error(const char *msg, const char *code, wbuf_t *b);

/* One probe's outcome as the API shows it: an entry of /api/v1/targets and the detail of an
 * endpoint. Borrowed pointers, read during the call only. The members are those of
 * `fleetscan probe --json` (probes/report.c), in the same order. */
typedef struct render_probe_s {
    const char *url;
    int online;
    fs_cause_t cause; /* the verdict's: FS_CAUSE_NONE when online */
    uint32_t warnings;
    const char *message;
    const uint32_t *timings_ms; /* SNAP_PH_COUNT phases, or NULL: no "timings_ms" member */
    uint32_t total_ms;
    const char *addr;
    const probe_attempt_t *attempts; /* the connects tried, in order */
    size_t nattempts;
    const char *leaf_sha1; /* "" or NULL: no certificate presented */
    int64_t endpoint_time;
    const char *tls_version; /* NULL or "": no handshake, "tls":{} */
    const char *cipher;
    int http_status;           /* 0: no request, null */
    const chain_info_t *chain; /* NULL: none */
    const rev_url_result_t *urls;
    size_t nurls;
} render_probe_t;

/* The "detail" object of GET /api/v1/endpoints/{id}: the probe without timings (an endpoint's
 * own timings are its item's) and "source". The loop renders it once per captured probe and the
 * snapshot carries the text (snap_group_t.cause_detail). 0 or UV_ENOMEM. */
int render_detail(const render_probe_t *p, wbuf_t *b);

/* Index of the group named name, or -1. */
long render_find_group(const snap_t *s, const char *name);
/* The endpoint whose id ("<group>-%05u") is id, or NULL. */
const snap_endpoint_t *render_find_endpoint(const snap_t *s, const char *id);

#endif
