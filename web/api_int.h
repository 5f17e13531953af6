/* api_int.h - what web/api.c (routing, responses, lifecycle) and web/handlers.c (one function
 * per route) share: the API's state, a request's state and the response helpers. */
#ifndef FS_API_INT_H
#define FS_API_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "web/api.h"
#include "web/conn_guard.h"
#include "web/wbuf.h"

#define API_DEFAULT_LISTEN "127.0.0.1:8787"
#define API_DEFAULT_THREADS 4
#define API_DEFAULT_STALE_S 30
/* Per connection: request line and headers must fit. Room for a 64 KiB request line, so that
 * one past API_URI_MAX is still read and answered by us (JSON 414); requests past this get
 * libmicrohttpd's own 414/431. The pool's pages are only touched as far as they are used. */
#define API_CONN_MEMORY (128 * 1024)
/* A client that keeps streaming past the body cap is disconnected after this much. */
#define API_DISCARD_MAX (4 * API_BODY_MAX)
/* No rendered document may exceed this (/metrics of 10k groups is ~3 MiB). */
#define API_RENDER_MAX (64u * 1024 * 1024)
#define API_ERROR_MAX 4096

#define STR_(x) #x
#define FS_STR(x) STR_(x)

#define CT_JSON "application/json"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CT_HTML "text/html; charset=utf-8"

typedef struct req_s req_t;
typedef struct fc_memo_s fc_memo_t;

struct api_s {
    struct MHD_Daemon *mhd;
    conn_guard_t *guard; /* connection limits and deadlines */
    int port;
    int stale_after_s;
    const _Atomic int64_t *heartbeat_ms;
    int stall_after_ms;
    char *token; /* NULL: mutating calls are disabled */
    size_t token_len;
    void *arg;
    void (*on_scan)(void *arg);
    int (*on_post_preflight)(void *arg, const char *body, size_t len, const char *target,
                             char **json_out, int *status);
    int (*on_forecast)(void *arg, const snap_t *s, int days, char **json_out, int *status);
    int (*on_history)(void *arg, int64_t since, int64_t until, int64_t step, char **json_out,
                      int *status);

    /* Pre-flights: queued requests (their connections suspended) and the threads running them.
     * admitted counts requests between admission and their connection's resumption. */
    pthread_mutex_t pf_mu;
    pthread_cond_t pf_cv;
    req_t *pf_head, *pf_tail;
    unsigned pf_admitted;
    int pf_stopping;
    pthread_t pf_threads[API_PREFLIGHT_RUNNING];
    int pf_nthreads;

    /* Forecast documents of the current snapshot, by days (fc_memo_t), and renders running. */
    pthread_mutex_t fc_mu;
    pthread_cond_t fc_cv;
    fc_memo_t *fc_memo;
    unsigned fc_rendering;

    pthread_mutex_t mu; /* guards cur */
    snap_t *cur;
    _Atomic int64_t published_ms; /* monotonic time of the last api_publish (or api_start) */
    char *causes_json;            /* the catalogue never changes: rendered once */
    size_t causes_len;
};

enum { M_GET = 1, M_POST = 2 };

typedef struct route_s route_t; /* the route table is at the end, before on_request */

enum { PF_NONE, PF_QUEUED, PF_DONE };

/* State of a request, from its request line (on_uri) to completion (on_completed). */
struct req_s {
    int started;          /* the handler has seen it */
    int admitted;         /* route, method and token were accepted */
    const route_t *route; /* NULL: no such route */
    unsigned method;
    const char *uri_error; /* why the request target is refused (414), or NULL */
    int too_large;
    char *body; /* kept for the routes that read it (keeps_body) only */
    size_t len, cap;
    size_t discarded;
    /* A pre-flight waiting for its worker (connection suspended), then its outcome. */
    int pf_state;
    struct MHD_Connection *conn;
    req_t *pf_next;
    char pf_target[49]; /* POST /api/v1/preflight?target=, "" when absent */
    int pf_rc, pf_status;
    char *pf_json;
};

/* api.c: responses (each queues the answer and returns MHD's verdict) and request helpers */
int64_t api__mono_ms(void);
enum MHD_Result api__queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r,
                           const char *ctype, const char *hname, const char *hvalue);
enum MHD_Result api__reply_static(struct MHD_Connection *c, unsigned status, const char *body,
                                  const char *ctype);
enum MHD_Result api__reply_error_h(struct MHD_Connection *c, unsigned status, const char *msg,
                                   const char *code, const char *hname, const char *hvalue);
enum MHD_Result api__reply_error(struct MHD_Connection *c, unsigned status, const char *msg,
                                 const char *code);
enum MHD_Result api__reply_rendered(struct MHD_Connection *c, unsigned status, wbuf_t *b, int rc,
                                    const char *ctype);
enum MHD_Result api__reply_hook(struct MHD_Connection *c, int rc, char *json, int status);
enum MHD_Result api__reply_bad_param(struct MHD_Connection *c, const char *name, const char *expect,
                                     const char *value);
int api__parse_uint(const char *s, unsigned long max, unsigned long *out);
const char *api__query(struct MHD_Connection *c, const char *name);

/* handlers.c: the routes (route_t.handler), the forecast memo and the pre-flight workers */
#define API__HANDLER(name)                                                                         \
    enum MHD_Result api__##name(api_t *a, struct MHD_Connection *c, req_t *rq, const char *arg,    \
                                snap_t *s)
API__HANDLER(answer_dashboard);
API__HANDLER(answer_healthz);
API__HANDLER(answer_endpoints);
API__HANDLER(answer_events);
API__HANDLER(answer_status);
API__HANDLER(answer_endpoint);
API__HANDLER(answer_targets);
API__HANDLER(answer_metrics);
API__HANDLER(answer_causes);
API__HANDLER(answer_forecast);
API__HANDLER(answer_scan);
API__HANDLER(answer_preflight);
API__HANDLER(answer_history);
snap_t *api__current(api_t *a); /* the current snapshot, referenced, or NULL */
void api__fc_memo_prune(api_t *a, const snap_t *s, fc_memo_t **dead); /* under fc_mu */
void api__fc_memo_free(fc_memo_t *m);
void *api__pf_worker(void *arg);
void api__pf_finish(api_t *a, req_t *rq, int rc, char *json, int status);
char *api__pf_unavailable(void);

#endif
