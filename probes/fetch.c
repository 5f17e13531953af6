/* fetch.c - libcurl multi-socket on a libuv loop (curl docs/examples/multi-uv.c): one timer for
 * curl's timeouts, one uv_poll per socket, redirects followed here so every hop obeys the
 * DNS override map, the sealed-DNS flag and the body cap; GET, POST and (on request) LDAP. */
#include "probes/fetch.h"
#include "probes/util.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define FETCH_DEFAULT_TIMEOUT_MS 15000u
#define FETCH_DEFAULT_MAX_BYTES ((size_t)16 << 20)
#define FETCH_DEFAULT_REDIRECTS 3
#define FETCH_USER_AGENT "Microsoft-CryptoAPI/10.0"
/* While a retrieval waits for memory, its fetcher looks for room this often. */
#define FETCH_PUMP_MS 20

const char *const fetch_err_names[FETCH_ERR_COUNT] = {
    "ok",        "dns",    "refused", "connect", "timeout", "too_big",
    "redirects", "scheme", "url",     "recv",    "other",
};
_Static_assert(FS_ARRAY_SIZE(fetch_err_names) == FETCH_ERR_COUNT, "fetch_err_names");

typedef struct sock_ctx_s sock_ctx_t;

/* The process-wide budget of bytes held by in-flight retrieval bodies (fetch_set_inflight_limit):
 * every fetcher, on every loop, charges its jobs' buffers here. A job that would pass the
 * budget pauses (libcurl stops reading its socket: TCP back-pressure to the server) and a new
 * job waits before it connects, until room frees. One job at a time may go past the budget,
 * the holder of g_exempt, so that jobs paused on each other always make progress: what is held
 * stays within the budget plus one body (its max_bytes). */
static _Atomic size_t g_limit = FETCH_DEFAULT_INFLIGHT_BYTES;
static _Atomic size_t g_held;
static _Atomic(fetch_job_t *) g_exempt;
static _Atomic size_t g_waiting; /* jobs paused or queued now */
static _Atomic uint64_t g_waits; /* jobs that ever had to wait */

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

static int curl_global_done;

void fetch_req_init(fetch_req_t *r)
{
    memset(r, 0, sizeof(*r));
    r->timeout_ms = FETCH_DEFAULT_TIMEOUT_MS;
    r->max_bytes = FETCH_DEFAULT_MAX_BYTES;
    r->max_redirects = FETCH_DEFAULT_REDIRECTS;
}

/* ---- job lists ---------------------------------------------------------------------------- */

static void list_push(fetch_job_t **head, fetch_job_t *j)
{
    j->prev = NULL;
    j->next = *head;
    if (*head)
        (*head)->prev = j;
    *head = j;
}

static void list_unlink(fetch_job_t **head, fetch_job_t *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        *head = j->next;
    if (j->next)
        j->next->prev = j->prev;
    j->prev = j->next = NULL;
}

static void job_unlink(fetch_job_t *j)
{
    fetch_t *f = j->f;
    if (j->list == J_WAITING || j->paused)
        atomic_fetch_sub(&g_waiting, 1);
    j->paused = 0;
    list_unlink(j->list == J_READY     ? &f->ready
                : j->list == J_WAITING ? &f->waiting
                                       : &f->active,
                j);
    j->list = J_ACTIVE;
}

/* ---- the in-flight budget ------------------------------------------------------------------ */

/* Charges delta more bytes to j: 0 when they fit the budget (or j holds the one exemption),
 * -1 when j must wait. */
static int mem_take(fetch_job_t *j, size_t delta)
{
    size_t cur = atomic_load(&g_held), lim = atomic_load(&g_limit);
    while (cur + delta <= lim)
        if (atomic_compare_exchange_weak(&g_held, &cur, cur + delta))
            return 0;
    fetch_job_t *none = NULL;
    if (atomic_load(&g_exempt) == j || atomic_compare_exchange_strong(&g_exempt, &none, j)) {
        atomic_fetch_add(&g_held, delta);
        return 0;
    }
    return -1;
}

static void mem_give(fetch_job_t *j, size_t n)
{
    atomic_fetch_sub(&g_held, n);
}

/* Room for one more job to start or resume. */
static int mem_room(void)
{
    return atomic_load(&g_held) < atomic_load(&g_limit) || atomic_load(&g_exempt) == NULL;
}

static void on_pump(uv_timer_t *t);

static void pump_start(fetch_t *f)
{
    if (!uv_is_active((uv_handle_t *)&f->pump))
        uv_timer_start(&f->pump, on_pump, FETCH_PUMP_MS, FETCH_PUMP_MS);
}

static void job_free(fetch_job_t *j)
{
    fetch_job_t *me = j;
    mem_give(j, j->cap);
    atomic_compare_exchange_strong(&g_exempt, &me, NULL);
    if (j->easy) {
        if (j->in_multi)
            curl_multi_remove_handle(j->f->multi, j->easy);
        curl_easy_cleanup(j->easy);
    }
    curl_slist_free_all(j->connect_to);
    curl_slist_free_all(j->headers);
    free(j->post);
    free(j->post_type);
    fs_resolve_free(&j->resolve);
    free(j->orig_url);
    free(j->hop_url);
    free(j->proxy);
    free(j->iface);
    free(j->body);
    free(j);
}

static uint32_t job_elapsed_ms(const fetch_job_t *j)
{
    return (uint32_t)((uv_hrtime() - j->start_ns) / 1000000u);
}

/* Hands the result to the user and frees the job; the job is already off every list. */
static void job_deliver(fetch_job_t *j)
{
    fetch_t *f = j->f;
    j->res.time_ms = job_elapsed_ms(j);
    j->res.bytes = j->len;
    j->res.body = j->len ? j->body : NULL;
    j->res.url = j->orig_url;
    if (j->easy && j->in_multi) {
        curl_multi_remove_handle(f->multi, j->easy);
        j->in_multi = 0;
    }
    f->dispatching++;
    j->cb(j->arg, &j->res);
    f->dispatching--;
    job_free(j);
}

static void fetch_teardown(fetch_t *f);

static void dispatch_end(fetch_t *f)
{
    if (f->dispatching == 0 && f->closing && !f->torn_down)
        fetch_teardown(f);
}

static void on_defer(uv_timer_t *t)
{
    fetch_t *f = container_of(t, fetch_t, defer);
    f->dispatching++;
    while (f->ready && !f->closing) {
        fetch_job_t *j = f->ready;
        job_unlink(j);
        job_deliver(j);
    }
    f->dispatching--;
    dispatch_end(f);
}

/* Completes j from the defer timer: used where the result is known without a transfer. */
static void job_finish_later(fetch_job_t *j, fetch_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void job_finish_later(fetch_job_t *j, fetch_err_t err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->res.error, sizeof(j->res.error), fmt, ap);
    va_end(ap);
    j->res.err = err;
    job_unlink(j);
    j->list = J_READY;
    list_push(&j->f->ready, j);
    uv_timer_start(&j->f->defer, on_defer, 0, 0);
}

/* ---- one hop ------------------------------------------------------------------------------ */

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    fetch_job_t *j = ud;
    size_t n = size * nmemb;
    if (n > j->max_bytes - j->len) {
        j->too_big = 1;
        return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
    }
    if (j->len + n > j->cap) {
        size_t cap = j->cap ? j->cap : 16384;
        while (cap < j->len + n)
            cap *= 2;
        if (cap > j->max_bytes)
            cap = j->max_bytes;
        if (mem_take(j, cap - j->cap) != 0) { /* libcurl keeps this chunk until we resume */
            if (!j->waited)
                atomic_fetch_add(&g_waits, 1);
            j->paused = j->waited = 1;
            atomic_fetch_add(&g_waiting, 1);
            pump_start(j->f);
            return CURL_WRITEFUNC_PAUSE;
        }
        unsigned char *nb = realloc(j->body, cap); /* peer-sized: fail cleanly */
        if (nb == NULL) {
            mem_give(j, cap - j->cap);
            j->nomem = 1;
            return 0;
        }
        j->body = nb;
        j->cap = cap;
    }
    memcpy(j->body + j->len, ptr, n);
    j->len += n;
    return n;
}

static void scheme_of(const char *url, char *out, size_t n)
{
    const char *p = strstr(url, "://");
    size_t len = p ? (size_t)(p - url) : 0;
    if (len >= n)
        len = n - 1;
    for (size_t i = 0; i < len; i++)
        out[i] = (char)tolower((unsigned char)url[i]);
    out[len] = '\0';
}

/* "addr" as it goes in a host:port position: IPv6 literals in brackets. */
static void host_for_url(const char *addr, char *out, size_t n)
{
    if (strchr(addr, ':'))
        snprintf(out, n, "[%s]", addr);
    else
        snprintf(out, n, "%s", addr);
}

/* Host and port of "ldap://host[:port]/..." into j->hop (messages and the override map use
 * them); a URL without a host is refused: the caller names the directory. 0 or -1. */
static int ldap_parse(fetch_job_t *j, char err[256])
{
    memset(&j->hop, 0, sizeof(j->hop));
    snprintf(j->hop.scheme, sizeof(j->hop.scheme), "ldap");
    j->hop.port = 389;
    const char *p = j->hop_url + 7, *end = p + strcspn(p, "/?#");
    const char *hend = end, *colon = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (rb == NULL) {
            snprintf(err, 256, "bad IPv6 literal in LDAP URL");
            return -1;
        }
        hend = rb;
        p++;
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        if (colon)
            hend = colon;
    }
    if (hend == p || (size_t)(hend - p) >= sizeof(j->hop.host) ||
        memchr(p, '@', (size_t)(end - p))) {
        snprintf(err, 256, "LDAP URL without a usable host (ldap:/// needs a directory server)");
        return -1;
    }
    memcpy(j->hop.host, p, (size_t)(hend - p));
    if (colon) {
        char *e;
        long port = strtol(colon + 1, &e, 10);
        if (e != end || port < 1 || port > 65535) {
            snprintf(err, 256, "bad port in LDAP URL");
            return -1;
        }
        j->hop.port = (int)port;
    }
    return 0;
}

/* Prepares and adds the transfer for j->hop_url, or queues a failure. */
static void job_begin_hop(fetch_job_t *j)
{
    fetch_t *f = j->f;
    char scheme[16], err[256], shown[128];
    scheme_of(j->hop_url, scheme, sizeof(scheme));
    j->ldap = j->allow_ldap && strcmp(scheme, "ldap") == 0;
    if (strcmp(scheme, "http") != 0 && !j->ldap) {
        if (scheme[0] == '\0')
            job_finish_later(j, FETCH_ERR_URL, "not a URL: \"%.100s\"",
                             fs_url_redact(j->hop_url, shown, sizeof(shown)));
        else
            job_finish_later(j, FETCH_ERR_SCHEME,
                             "unsupported scheme \"%s\" (only http:// is fetched)", scheme);
        return;
    }
    if ((j->ldap ? ldap_parse(j, err) : fs_url_parse(&j->hop, j->hop_url, err)) != 0) {
        job_finish_later(j, FETCH_ERR_URL, "%.150s", err);
        return;
    }
    uint32_t spent = job_elapsed_ms(j);
    if (spent >= j->timeout_ms) {
        job_finish_later(j, FETCH_ERR_TIMEOUT, "timed out after %u ms", spent);
        return;
    }
    curl_slist_free_all(j->connect_to);
    j->connect_to = NULL;
    curl_slist_free_all(j->headers);
    j->headers = NULL;
    if ((j->proxy == NULL || j->ldap) && !fs_is_ip_literal(j->hop.host)) {
        const char *addr = fs_resolve_lookup(&j->resolve, j->hop.host);
        if (addr) {
            char h[80], entry[400];
            host_for_url(addr, h, sizeof(h));
            snprintf(entry, sizeof(entry), "%s:%d:%s:%d", j->hop.host, j->hop.port, h, j->hop.port);
            j->connect_to = curl_slist_append(NULL, entry);
            if (j->connect_to == NULL) {
                job_finish_later(j, FETCH_ERR_OTHER, "out of memory");
                return;
            }
        } else if (j->dns_override_only) {
            j->res.resolved = 0;
            job_finish_later(j, FETCH_ERR_DNS,
                             "could not resolve host \"%.80s\" (not in the DNS override map)",
                             j->hop.host);
            return;
        }
    }
    if (j->easy == NULL)
        j->easy = curl_easy_init();
    else
        curl_easy_reset(j->easy);
    if (j->easy == NULL) {
        job_finish_later(j, FETCH_ERR_OTHER, "out of memory");
        return;
    }
    CURL *e = j->easy;
    long left = (long)(j->timeout_ms - spent);
    j->len = 0;
    j->errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, j->hop_url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, j);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, left);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, left);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, j->ldap ? "ldap" : "http");
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)j->max_bytes);
    curl_easy_setopt(e, CURLOPT_USERAGENT, FETCH_USER_AGENT);
    /* "" rather than NULL: never pick a proxy up from the daemon's environment. LDAP is never
     * proxied (Windows' LDAP client does not use the WinHTTP proxy either). */
    curl_easy_setopt(e, CURLOPT_PROXY, j->proxy && !j->ldap ? j->proxy : "");
    if (j->ldap) {
        /* One connection per LDAP search: libcurl 7.88's OpenLDAP backend leaks its per-connection
         * state when a transfer reuses a cached connection (the new one's setup is dropped
         * without its disconnect handler); a retrieval a URL is cached for makes this cheap. */
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    }
    if (j->post != NULL && !j->ldap) {
        j->headers = curl_slist_append(NULL, "Expect:");
        if (j->headers && j->post_type) {
            char h[200];
            snprintf(h, sizeof(h), "Content-Type: %.150s", j->post_type);
            struct curl_slist *l = curl_slist_append(j->headers, h);
            if (l == NULL) {
                curl_slist_free_all(j->headers);
                j->headers = NULL;
            } else {
                j->headers = l;
            }
        }
        if (j->headers == NULL) {
            job_finish_later(j, FETCH_ERR_OTHER, "out of memory");
            return;
        }
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->headers);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->post_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, (const char *)j->post);
    }
    if (j->connect_to)
        curl_easy_setopt(e, CURLOPT_CONNECT_TO, j->connect_to);
    if (j->iface)
        curl_easy_setopt(e, CURLOPT_INTERFACE, j->iface);
    if (curl_multi_add_handle(f->multi, e) != CURLM_OK) {
        job_finish_later(j, FETCH_ERR_OTHER, "could not start the transfer");
        return;
    }
    j->in_multi = 1;
}

static void job_set_curl_error(fetch_job_t *j, CURLcode rc)
{
    fetch_result_t *r = &j->res;
    const char *detail = j->errbuf[0] ? j->errbuf : curl_easy_strerror(rc);
    long oserr = 0;
    curl_easy_getinfo(j->easy, CURLINFO_OS_ERRNO, &oserr);
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        r->err = FETCH_ERR_DNS;
        r->resolved = 0;
        snprintf(r->error, sizeof(r->error), "could not resolve %s \"%.100s\"",
                 rc == CURLE_COULDNT_RESOLVE_PROXY ? "proxy" : "host",
                 rc == CURLE_COULDNT_RESOLVE_PROXY ? j->proxy_host : j->hop.host);
        return;
    case CURLE_COULDNT_CONNECT:
        r->err = oserr == ECONNREFUSED ? FETCH_ERR_REFUSED : FETCH_ERR_CONNECT;
        if (oserr == ECONNREFUSED)
            snprintf(r->error, sizeof(r->error), "connection refused by %s%.100s port %d",
                     j->proxy ? "proxy " : "", j->proxy ? j->proxy_host : j->hop.host,
                     j->proxy ? j->proxy_port : j->hop.port);
        else
            snprintf(r->error, sizeof(r->error), "could not connect: %.120s", detail);
        return;
    case CURLE_OPERATION_TIMEDOUT:
        if (!r->connected) {
            r->err = FETCH_ERR_CONNECT;
            snprintf(r->error, sizeof(r->error), "connect to %s%.60s port %d timed out after %u ms",
                     j->proxy ? "proxy " : "", j->proxy ? j->proxy_host : j->hop.host,
                     j->proxy ? j->proxy_port : j->hop.port, job_elapsed_ms(j));
        } else {
            r->err = FETCH_ERR_TIMEOUT;
            snprintf(r->error, sizeof(r->error), "timed out after %u ms (%zu bytes received)",
                     job_elapsed_ms(j), j->len);
        }
        return;
    case CURLE_FILESIZE_EXCEEDED:
        j->too_big = 1;
        break;
    case CURLE_WRITE_ERROR:
        if (j->nomem) {
            r->err = FETCH_ERR_OTHER;
            snprintf(r->error, sizeof(r->error), "out of memory for the body");
            return;
        }
        break;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_WEIRD_SERVER_REPLY:
        r->err = FETCH_ERR_RECV;
        snprintf(r->error, sizeof(r->error), "connection closed: %.130s", detail);
        return;
    case CURLE_LDAP_CANNOT_BIND:
    case CURLE_LDAP_SEARCH_FAILED:
        r->err = FETCH_ERR_RECV;
        snprintf(r->error, sizeof(r->error), "LDAP: %.150s", detail);
        return;
    case CURLE_LDAP_INVALID_URL:
        r->err = FETCH_ERR_URL;
        snprintf(r->error, sizeof(r->error), "LDAP: %.150s", detail);
        return;
    case CURLE_UNSUPPORTED_PROTOCOL:
        r->err = FETCH_ERR_SCHEME;
        snprintf(r->error, sizeof(r->error), "unsupported protocol: %.130s", detail);
        return;
    default:
        break;
    }
    if (j->too_big) {
        r->err = FETCH_ERR_TOO_BIG;
        snprintf(r->error, sizeof(r->error), "over size cap (%zu bytes)", j->max_bytes);
        return;
    }
    r->err = FETCH_ERR_OTHER;
    snprintf(r->error, sizeof(r->error), "%.150s", detail);
}

/* A transfer of j finished with rc: follow a redirect or complete the job. */
static void job_transfer_done(fetch_job_t *j, CURLcode rc)
{
    fetch_t *f = j->f;
    fetch_result_t *r = &j->res;
    CURL *e = j->easy;
    long status = 0, reqsize = 0;
    curl_off_t conn_us = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(e, CURLINFO_REQUEST_SIZE, &reqsize);
    curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &conn_us);
    curl_multi_remove_handle(f->multi, e);
    j->in_multi = 0;
    r->resolved = 1;
    r->connected = reqsize > 0 || conn_us > 0 || status > 0;
    r->http_status = j->ldap ? 0 : status;
    r->err = FETCH_OK;
    r->error[0] = '\0';
    if (rc != CURLE_OK) {
        job_set_curl_error(j, rc);
    } else if (!j->ldap && status >= 300 && status < 400) {
        char *loc = NULL;
        curl_easy_getinfo(e, CURLINFO_REDIRECT_URL, &loc);
        if (loc != NULL) {
            if (r->redirects >= j->max_redirects) {
                r->err = FETCH_ERR_REDIRECTS;
                snprintf(r->error, sizeof(r->error), "too many redirects (more than %d)",
                         j->max_redirects);
            } else {
                char *next = strdup(loc);
                if (next == NULL) {
                    r->err = FETCH_ERR_OTHER;
                    snprintf(r->error, sizeof(r->error), "out of memory");
                } else {
                    free(j->hop_url);
                    j->hop_url = next;
                    if (status != 307 && status != 308) { /* as browsers: the POST becomes GET */
                        free(j->post);
                        j->post = NULL;
                    }
                    r->redirects++;
                    j->len = 0;
                    job_begin_hop(j);
                    return;
                }
            }
        }
    }
    job_unlink(j);
    job_deliver(j);
}

static void check_multi_info(fetch_t *f)
{
    CURLMsg *msg;
    int pending;
    f->dispatching++;
    while (!f->closing && (msg = curl_multi_info_read(f->multi, &pending)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        char *priv = NULL;
        CURLcode rc = msg->data.result;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
        fetch_job_t *j = (fetch_job_t *)priv;
        assert(j != NULL && j->easy == msg->easy_handle);
        job_transfer_done(j, rc);
    }
    f->dispatching--;
    dispatch_end(f);
}

/* ---- curl <-> libuv glue ------------------------------------------------------------------ */

static void handle_closed(fetch_t *f)
{
    f->open_handles--;
    if (f->torn_down && f->open_handles == 0) {
        if (f->done)
            f->done(f->done_arg);
        free(f);
    }
}

static void on_sock_closed(uv_handle_t *h)
{
    sock_ctx_t *c = container_of((uv_poll_t *)h, sock_ctx_t, poll);
    fetch_t *f = c->f;
    free(c);
    handle_closed(f);
}

static void sock_close(fetch_t *f, sock_ctx_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        f->socks = c->next;
    if (c->next)
        c->next->prev = c->prev;
    uv_close((uv_handle_t *)&c->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_ctx_t *c = container_of(h, sock_ctx_t, poll);
    fetch_t *f = c->f;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    f->dispatching++;
    curl_multi_socket_action(f->multi, c->fd, flags, &running);
    f->dispatching--;
    check_multi_info(f);
}

static int on_curl_socket(CURL *e, curl_socket_t s, int action, void *userp, void *socketp)
{
    fetch_t *f = userp;
    sock_ctx_t *c = socketp;
    if (action == CURL_POLL_REMOVE) {
        if (c) {
            curl_multi_assign(f->multi, s, NULL);
            sock_close(f, c);
        }
        return 0;
    }
    if (c == NULL) {
        c = fs_xcalloc(1, sizeof(*c));
        if (uv_poll_init_socket(f->loop, &c->poll, s) != 0) {
            free(c);
            return -1;
        }
        c->fd = s;
        c->f = f;
        c->next = f->socks;
        if (f->socks)
            f->socks->prev = c;
        f->socks = c;
        f->open_handles++;
        curl_multi_assign(f->multi, s, c);
    }
    int ev = 0;
    if (action & CURL_POLL_IN)
        ev |= UV_READABLE;
    if (action & CURL_POLL_OUT)
        ev |= UV_WRITABLE;
    uv_poll_start(&c->poll, ev, on_poll);
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    fetch_t *f = container_of(t, fetch_t, timer);
    int running;
    f->dispatching++;
    curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    f->dispatching--;
    check_multi_info(f);
}

static int on_curl_timer(CURLM *m, long timeout_ms, void *userp)
{
    fetch_t *f = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&f->timer);
    else /* 0 means "now": one loop turn later, never from inside this callback */
        uv_timer_start(&f->timer, on_timer, timeout_ms == 0 ? 1 : (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- waiting for the budget ---------------------------------------------------------------- */

/* The oldest job of list l (paused ones only when paused_only) whose pump_round is not round. */
static fetch_job_t *oldest(fetch_job_t *l, int paused_only, unsigned round)
{
    fetch_job_t *best = NULL;
    for (fetch_job_t *j = l; j != NULL; j = j->next)
        if ((!paused_only || j->paused) && j->pump_round != round &&
            (best == NULL || j->start_ns < best->start_ns))
            best = j;
    return best;
}

/* A job of list l (paused ones only when paused_only) past its timeout, or NULL. */
static fetch_job_t *expired(fetch_job_t *l, int paused_only)
{
    for (fetch_job_t *j = l; j != NULL; j = j->next)
        if ((!paused_only || j->paused) && job_elapsed_ms(j) >= j->timeout_ms)
            return j;
    return NULL;
}

/* Every FETCH_PUMP_MS while a job of f waits: jobs past their timeout fail, then paused
 * transfers resume and queued jobs start, oldest first, while there is room. One job at a time:
 * a callback may start or cancel any other. */
static void on_pump(uv_timer_t *t)
{
    fetch_t *f = container_of(t, fetch_t, pump);
    fetch_job_t *j;
    unsigned round = ++f->pump_round;
    f->dispatching++;
    while (!f->closing && (j = expired(f->waiting, 0)) != NULL)
        job_finish_later(j, FETCH_ERR_TIMEOUT,
                         "timed out after %u ms waiting to start: other retrievals held the "
                         "in-flight budget (%zu bytes)",
                         job_elapsed_ms(j), atomic_load(&g_limit));
    while (!f->closing && (j = expired(f->active, 1)) != NULL) {
        j->res.err = FETCH_ERR_TIMEOUT;
        j->res.resolved = j->res.connected = 1;
        snprintf(j->res.error, sizeof(j->res.error),
                 "timed out after %u ms (%zu bytes received, paused while other retrievals held "
                 "the in-flight budget of %zu bytes)",
                 job_elapsed_ms(j), j->len, atomic_load(&g_limit));
        job_unlink(j);
        job_deliver(j);
    }
    while (!f->closing && mem_room() && (j = oldest(f->active, 1, round)) != NULL) {
        j->pump_round = round;
        j->paused = 0;
        atomic_fetch_sub(&g_waiting, 1);
        curl_easy_pause(j->easy, CURLPAUSE_CONT); /* may hand the kept chunk back at once */
    }
    while (!f->closing && mem_room() && (j = oldest(f->waiting, 0, round)) != NULL) {
        job_unlink(j);
        list_push(&f->active, j);
        job_begin_hop(j);
    }
    int waiting = f->waiting != NULL;
    for (j = f->active; j != NULL && !waiting; j = j->next)
        waiting = j->paused;
    if (!waiting || f->closing)
        uv_timer_stop(&f->pump);
    f->dispatching--;
    check_multi_info(f);
}

void fetch_set_inflight_limit(size_t bytes)
{
    atomic_store(&g_limit, bytes > 0 ? bytes : FETCH_DEFAULT_INFLIGHT_BYTES);
}

void fetch_inflight(fetch_inflight_t *out)
{
    out->held = atomic_load(&g_held);
    out->limit = atomic_load(&g_limit);
    out->waiting = atomic_load(&g_waiting);
    out->waited_total = atomic_load(&g_waits);
}

/* ---- public ------------------------------------------------------------------------------- */

int fetch_new(fetch_t **out, uv_loop_t *loop)
{
    if (!curl_global_done) {
        /* Not thread-safe in 7.88; the daemon creates fetchers from its one loop thread. */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return UV_ENOMEM;
        curl_global_done = 1;
    }
    fetch_t *f = fs_xcalloc(1, sizeof(*f));
    f->loop = loop;
    f->multi = curl_multi_init();
    if (f->multi == NULL) {
        free(f);
        return UV_ENOMEM;
    }
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETDATA, f);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERDATA, f);
    uv_timer_init(loop, &f->timer);
    uv_timer_init(loop, &f->defer);
    uv_timer_init(loop, &f->pump);
    f->open_handles = 3;
    *out = f;
    return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
    handle_closed(h->data);
}

static void fetch_teardown(fetch_t *f)
{
    f->torn_down = 1;
    /* Stop watching every socket before curl closes them, then let curl go. */
    curl_multi_setopt(f->multi, CURLMOPT_SOCKETFUNCTION, NULL);
    curl_multi_setopt(f->multi, CURLMOPT_TIMERFUNCTION, NULL);
    while (f->socks)
        sock_close(f, f->socks);
    curl_multi_cleanup(f->multi);
    f->multi = NULL;
    f->timer.data = f;
    f->defer.data = f;
    f->pump.data = f;
    uv_close((uv_handle_t *)&f->timer, on_timer_closed);
    uv_close((uv_handle_t *)&f->defer, on_timer_closed);
    uv_close((uv_handle_t *)&f->pump, on_timer_closed);
}

void fetch_close(fetch_t *f, void (*done)(void *arg), void *arg)
{
    assert(!f->closing);
    f->closing = 1;
    f->done = done;
    f->done_arg = arg;
    f->dispatching++; /* curl_multi_remove_handle may call back into on_curl_socket */
    while (f->active) {
        fetch_job_t *j = f->active;
        job_unlink(j);
        job_free(j);
    }
    while (f->ready) {
        fetch_job_t *j = f->ready;
        job_unlink(j);
        job_free(j);
    }
    while (f->waiting) {
        fetch_job_t *j = f->waiting;
        job_unlink(j);
        job_free(j);
    }
    f->dispatching--;
    dispatch_end(f);
}

static int copy_resolve(fs_resolve_t *dst, const fs_resolve_t *src)
{
    char err[256];
    for (size_t i = 0; src && i < src->n; i++)
        if (fs_resolve_add(dst, src->e[i].name, src->e[i].addr, err) != 0)
            return UV_EINVAL;
    return 0;
}

int fetch_start(fetch_t *f, const fetch_req_t *req, fetch_cb cb, void *arg, fetch_job_t **job)
{
    if (f->closing)
        return UV_ECANCELED;
    if (req == NULL || req->url == NULL || cb == NULL)
        return UV_EINVAL;
    if (req->source_addr && !fs_is_ip_literal(req->source_addr))
        return UV_EINVAL;
    fetch_job_t *j = fs_xcalloc(1, sizeof(*j));
    j->f = f;
    j->cb = cb;
    j->arg = arg;
    j->start_ns = uv_hrtime();
    j->orig_url = fs_xstrdup(req->url);
    j->hop_url = fs_xstrdup(req->url);
    j->timeout_ms = req->timeout_ms ? req->timeout_ms : FETCH_DEFAULT_TIMEOUT_MS;
    j->max_bytes = req->max_bytes ? req->max_bytes : FETCH_DEFAULT_MAX_BYTES;
    j->max_redirects = req->max_redirects >= 0 ? req->max_redirects : FETCH_DEFAULT_REDIRECTS;
    j->dns_override_only = req->dns_override_only;
    j->allow_ldap = req->allow_ldap;
    if (req->post_body != NULL) {
        j->post = fs_xmalloc(req->post_len ? req->post_len : 1);
        memcpy(j->post, req->post_body, req->post_len);
        j->post_len = req->post_len;
        j->post_type = req->post_type ? fs_xstrdup(req->post_type) : NULL;
    }
    j->res.resolved = 1;
    if (copy_resolve(&j->resolve, req->resolve) != 0) {
        job_free(j);
        return UV_EINVAL;
    }
    if (req->source_addr) {
        size_t n = strlen(req->source_addr) + 6;
        j->iface = fs_xmalloc(n);
        snprintf(j->iface, n, "host!%s", req->source_addr);
    }
    list_push(&f->active, j);
    if (job)
        *job = j;
    if (req->proxy && req->proxy[0]) {
        /* The proxy's name obeys the override map too; the target is the proxy's business.
         * Credentials go to curl inside the proxy URL (it sends them as Proxy-Authorization
         * Basic) and never into a message: those quote the redacted form. */
        fs_proxy_t px;
        char err[256];
        if (fs_proxy_parse(&px, req->proxy, err) != 0) {
            job_finish_later(j, FETCH_ERR_URL, "bad proxy %.140s", err);
            return 0;
        }
        const char *addr =
            fs_is_ip_literal(px.u.host) ? px.u.host : fs_resolve_lookup(&j->resolve, px.u.host);
        if (addr == NULL && j->dns_override_only) {
            j->res.resolved = 0;
            job_finish_later(j, FETCH_ERR_DNS,
                             "could not resolve proxy \"%.80s\" (not in the DNS override map)",
                             px.u.host);
            return 0;
        }
        char h[300];
        host_for_url(addr ? addr : px.u.host, h, sizeof(h));
        size_t n = strlen(px.userinfo) + strlen(h) + 32;
        j->proxy = fs_xmalloc(n);
        snprintf(j->proxy, n, "http://%s%s%s:%d", px.userinfo, px.userinfo[0] ? "@" : "", h,
                 px.u.port);
        fs_strlcpy(j->proxy_host, px.u.host, sizeof(j->proxy_host));
        j->proxy_port = px.u.port;
    }
    if (f->waiting != NULL || !mem_room()) { /* behind the others, in order */
        list_unlink(&f->active, j);
        j->list = J_WAITING;
        j->waited = 1;
        list_push(&f->waiting, j);
        atomic_fetch_add(&g_waiting, 1);
        atomic_fetch_add(&g_waits, 1);
        pump_start(f);
        return 0;
    }
    job_begin_hop(j);
    return 0;
}

void fetch_cancel(fetch_job_t *job)
{
    fetch_t *f = job->f;
    job_unlink(job);
    f->dispatching++;
    job_free(job);
    f->dispatching--;
    dispatch_end(f);
}
