/* fetch_int.h - what probes/fetch.c (the fetcher, its budget and the curl/libuv glue) and
 * probes/fetch_hop.c (one hop: the request, the body, the result) share. Private to them. */
#ifndef FS_FETCH_INT_H
#define FS_FETCH_INT_H

#include <stdatomic.h>
#include <stdint.h>

#include <curl/curl.h>

#include "probes/fetch.h"

#define FETCH_DEFAULT_TIMEOUT_MS 15000u
#define FETCH_DEFAULT_MAX_BYTES ((size_t)16 << 20)
#define FETCH_DEFAULT_REDIRECTS 3
#define FETCH_USER_AGENT "Microsoft-CryptoAPI/10.0"
/* While a retrieval waits for memory, its fetcher looks for room this often. */
#define FETCH_PUMP_MS 20

typedef struct sock_ctx_s sock_ctx_t;

struct fetch_s {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;     /* curl's single timeout */
    uv_timer_t defer;     /* delivers results that needed no transfer */
    fetch_job_t *active;  /* jobs with a transfer or between hops */
    fetch_job_t *ready;   /* jobs whose result waits for the defer timer */
    fetch_job_t *waiting; /* jobs not started yet: the in-flight budget is used up */
    uv_timer_t pump;      /* while a job waits or is paused: resumes or starts what fits */
    sock_ctx_t *socks;
    int open_handles; /* uv handles not yet closed: timers and polls */
    unsigned pump_round;
    int dispatching; /* depth of user callbacks and curl calls on the stack */
    int closing;
    int torn_down;
    void (*done)(void *arg);
    void *done_arg;
};

struct sock_ctx_s {
    uv_poll_t poll;
    curl_socket_t fd;
    fetch_t *f;
    sock_ctx_t *prev, *next;
};

struct fetch_job_s {
    fetch_t *f;
    fetch_job_t *prev, *next;
    enum { J_ACTIVE, J_READY, J_WAITING } list;
    int paused;          /* its transfer is paused for memory (CURL_WRITEFUNC_PAUSE) */
    int waited;          /* it was paused or queued at least once */
    unsigned pump_round; /* the last pump round that resumed or started it */
    CURL *easy;
    int in_multi;
    struct curl_slist *connect_to;
    struct curl_slist *headers;
    unsigned char *post; /* POST body, or NULL for GET */
    size_t post_len;
    char *post_type;
    int allow_ldap;
    int ldap; /* the current hop is an LDAP search */
    fetch_cb cb;
    void *arg;
    char *orig_url;
    char *hop_url;
    fs_url_t hop; /* parsed current hop, for messages */
    char *proxy;  /* with its host replaced by the override address, or NULL; may hold credentials:
                     only for curl, never for a message */
    char proxy_host[256]; /* for messages: the proxy as configured, no credentials */
    int proxy_port;
    char *iface; /* "host!ADDR" */
    fs_resolve_t resolve;
    int dns_override_only;
    uint32_t timeout_ms;
    size_t max_bytes;
    int max_redirects;
    uint64_t start_ns;
    unsigned char *body;
    size_t len, cap;
    int too_big, nomem;
    fetch_result_t res;
    char errbuf[CURL_ERROR_SIZE];
};

/* The in-flight budget's figures (fetch.c). */
extern _Atomic size_t fetch__waiting; /* jobs paused or queued now */
extern _Atomic uint64_t fetch__waits; /* jobs that ever had to wait */

/* fetch.c */
void fetch__job_unlink(fetch_job_t *j);
int fetch__mem_take(fetch_job_t *j, size_t delta);
void fetch__mem_give(fetch_job_t *j, size_t n);
void fetch__pump_start(fetch_t *f);
uint32_t fetch__job_elapsed_ms(const fetch_job_t *j);
void fetch__job_deliver(fetch_job_t *j);
void fetch__dispatch_end(fetch_t *f);
/* Completes j from the defer timer: used where the result is known without a transfer. */
void fetch__job_finish_later(fetch_job_t *j, fetch_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* fetch_hop.c */
void fetch__host_for_url(const char *addr, char *out, size_t n);
void fetch__job_begin_hop(fetch_job_t *j);
void fetch__check_multi_info(fetch_t *f);

#endif
