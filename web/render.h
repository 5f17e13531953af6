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
/* One item; with_detail adds "detail": the group's detail_json (null when absent or invalid). */
int render_endpoint(const snap_t *s, const snap_endpoint_t *e, int with_detail, wbuf_t *b);
/* Events with seq > since_seq and at >= since_at. */
int render_events(const snap_t *s, uint64_t since_seq, int64_t since_at, wbuf_t *b);
int render_causes(wbuf_t *b);
/* Prometheus text exposition 0.0.4; every sample carries vantage and shard labels, including
 * the lines of metrics_extra, into which they are inserted. */
int render_metrics(const snap_t *s, wbuf_t *b);
/* {"error": msg, "code": code} */
int render_error(const char *msg, const char *code, wbuf_t *b);

/* Index of the group named name, or -1. */
long render_find_group(const snap_t *s, const char *name);
/* The endpoint whose id ("<group>-%05u") is id, or NULL. */
const snap_endpoint_t *render_find_endpoint(const snap_t *s, const char *id);

#endif
