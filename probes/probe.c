/* probe.c - the libuv probe state machine (see probe.h). One uv_timer carries both the phase
 * timeout and the probe deadline; the probe is freed only in its last close callback. */
#include "probes/probe.h"
#include "probes/http.h"
#include "probes/util.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

const char *const probe_phase_names[PROBE_PH_COUNT] = {"dns", "connect", "tls", "revocation",
                                                       "request"};

#define PROBE_READ_BUF 16384
#define PROBE_MAX_RESPONSE_HEAD 1024 /* the status line, after any 1xx interim responses */

typedef enum {
    PS_INIT,
    PS_RESOLVE,
    PS_CONNECT,
    PS_TLS,
    PS_AIA,
    PS_REVOCATION,
    PS_REQUEST,
    PS_CLOSING,
    PS_COUNT
} probe_state_t;

static const char *const state_names[PS_COUNT] = {"init", "resolve",    "connect", "tls",
                                                  "aia",  "revocation", "request", "closing"};
_Static_assert(FS_ARRAY_SIZE(state_names) == PS_COUNT, "state names out of sync");

struct probe_s {
    uv_loop_t *loop;
    probe_opts_t o;
    probe_cb cb;
    void *arg;
    probe_state_t state;
    uv_timer_t timer;
    uv_tcp_t tcp;
    uv_connect_t conn;
    int tcp_inited;
    dns_req_t dns;
    int dns_waiting;      /* dns is a request waiting in a resolve cache */
    dns_cache_t *own_dns; /* the probe's own cache when opts.dns is NULL */
    dns_addrs_t addrs;    /* the addresses of the name, as resolved */
    size_t first_addr;    /* where this probe starts in addrs (round robin) */
    uint64_t connect_end; /* uv_now() ms when the connect timeout is spent */
    uint64_t attempt_t0;  /* uv_hrtime() ns when the current connect began */
    int pending_closes;
    int peer_eof;
    uint64_t deadline;     /* uv_now() ms */
    uint64_t phase_start;  /* uv_hrtime() ns */
    uint64_t t0;           /* uv_hrtime() ns */
    int phase_timeout_hit; /* the phase timeout (not the deadline) fired */
    tlsc_t tls;
    int tls_inited;
    rev_job_t *rev_job;
    STACK_OF(X509) * extra; /* endpoint intermediates + AIA-fetched issuers */
    chain_verdict_t verdict;
    int aia_tried;
    rev_policy_t pol;         /* the group's policy, its budgets cut to what the deadline leaves */
    uint64_t retrieval_start; /* uv_now() when AIA/CRL retrieval began: one cumulative budget */
    char resp[PROBE_MAX_RESPONSE_HEAD];
    size_t resp_len;
    probe_result_t r;
};

/* Bytes are handed to the TLS engine (which copies them) inside the read callback, so one
 * buffer serves every probe of a thread: no 16 KiB per probe in flight. */
static _Thread_local char read_buf[PROBE_READ_BUF];

typedef struct probe_write_s {
    uv_write_t req;
    char data[];
} probe_write_t;

static void probe_finish(probe_t *p, fs_cause_t cause, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void start_connect(probe_t *p);
static void start_verify(probe_t *p);
static void start_revocation(probe_t *p);

#define PROBE_DEADLINE_MARGIN_MS 250

/* The retrieval policy for the next AIA or revocation step. Whatever the timeout mode,
 * retrieval never outlives the probe's deadline (max_total_ms), so it always ends with its own
 * verdict and URL lines instead of being cut off by the deadline. In accumulative mode the
 * budget is one for AIA and revocation together, as Windows' accumulative timeout covers every
 * URL retrieval of the chain build; in per_url mode each URL has its own timeout. */
static const rev_policy_t *retrieval_policy(probe_t *p)
{
    uint64_t now = uv_now(p->loop);
    if (p->retrieval_start == 0)
        p->retrieval_start = now;
    p->pol = *p->o.rev_policy;
    uint64_t left = p->deadline > now + PROBE_DEADLINE_MARGIN_MS
                        ? p->deadline - now - PROBE_DEADLINE_MARGIN_MS
                        : 1;
    if (left > UINT32_MAX)
        left = UINT32_MAX;
    p->pol.max_total_ms = (uint32_t)left;
    if (p->o.rev_policy->max_total_ms != 0 && p->o.rev_policy->max_total_ms < left)
        p->pol.max_total_ms = p->o.rev_policy->max_total_ms;
    if (p->pol.timeout_mode == REV_TIMEOUT_ACCUMULATIVE) {
        uint64_t used = now - p->retrieval_start;
        uint64_t budget = p->pol.budget_ms > used ? p->pol.budget_ms - used : 1;
        p->pol.budget_ms = (uint32_t)(budget < p->pol.max_total_ms ? budget : p->pol.max_total_ms);
    }
    return &p->pol;
}

/* How long the retrieval step under pol may take at most: its phase timeout. */
static uint32_t retrieval_limit(const rev_policy_t *pol)
{
    if (pol->timeout_mode == REV_TIMEOUT_ACCUMULATIVE && pol->budget_ms < pol->max_total_ms)
        return pol->budget_ms;
    return pol->max_total_ms;
}

static void start_request(probe_t *p);

void probe_opts_defaults(probe_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->sni = 1;
    o->dns_timeout_ms = 5000;
    o->connect_timeout_ms = 5000;
    o->tls_timeout_ms = 10000;
    o->request_timeout_ms = 10000;
    o->total_timeout_ms = 15000;
    o->expiring_soon_s = 30 * 86400;
    o->capture_chain = 1;
}

static probe_phase_t phase_of(probe_state_t s)
{
    switch (s) {
    case PS_RESOLVE:
        return PROBE_PH_DNS;
    case PS_CONNECT:
        return PROBE_PH_CONNECT;
    case PS_TLS:
        return PROBE_PH_TLS;
    case PS_AIA:
    case PS_REVOCATION:
        return PROBE_PH_REVOCATION;
    default:
        return PROBE_PH_REQUEST;
    }
}

static void end_phase_timing(probe_t *p)
{
    if (p->state > PS_INIT && p->state < PS_CLOSING) {
        uint64_t ms = (uv_hrtime() - p->phase_start) / 1000000;
        p->r.timings_ms[phase_of(p->state)] += (uint32_t)ms;
    }
}

static void on_timer(uv_timer_t *t);

/* Arms the timer for ms, bounded by the deadline; phase_timeout_hit tells which one fires. */
static void arm_timer(probe_t *p, uint64_t ms)
{
    uint64_t now = uv_now(p->loop);
    uint64_t left = p->deadline > now ? p->deadline - now : 0;
    p->phase_timeout_hit = ms < left;
    uv_timer_start(&p->timer, on_timer, p->phase_timeout_hit ? ms : left, 0);
}

/* The single state transition: closes the previous phase's timing, arms the timer with the
 * phase timeout bounded by the deadline. */
static void set_state(probe_t *p, probe_state_t s, uint32_t phase_timeout_ms)
{
    end_phase_timing(p);
    if (getenv("FLEETSCAN_TRACE_PROBE"))
        fprintf(stderr, "probe %p: %s -> %s\n", (void *)p, state_names[p->state], state_names[s]);
    p->state = s;
    p->phase_start = uv_hrtime();
    if (s == PS_CLOSING)
        return;
    arm_timer(p, phase_timeout_ms);
}

static void maybe_free(probe_t *p)
{
    if (p->pending_closes > 0)
        return;
    p->r.total_ms = (uint32_t)((uv_hrtime() - p->t0) / 1000000);
    p->cb(p, &p->r, p->arg);
    if (p->tls_inited)
        tlsc_free(&p->tls);
    chain_verdict_free(&p->verdict);
    sk_X509_pop_free(p->extra, X509_free);
    probe_result_free(&p->r);
    free(p);
}

static void on_close(uv_handle_t *h)
{
    probe_t *p = h->data;
    p->pending_closes--;
    maybe_free(p);
}

static void on_own_dns_closed(void *arg)
{
    probe_t *p = arg;
    p->pending_closes--;
    maybe_free(p);
}

static void finish_v(probe_t *p, fs_cause_t cause, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
static void finish_v(probe_t *p, fs_cause_t cause, const char *fmt, va_list ap)
{
    if (p->state == PS_CLOSING)
        return;
    p->r.cause = cause;
    p->r.online = cause == FS_CAUSE_NONE && !p->r.cancelled;
    p->r.failed_phase = phase_of(p->state);
    if (fmt != NULL)
        vsnprintf(p->r.message, sizeof(p->r.message), fmt, ap);
    set_state(p, PS_CLOSING, 0);
    if (p->rev_job != NULL) {
        rev_job_cancel(p->rev_job);
        p->rev_job = NULL;
    }
    if (p->dns_waiting) {
        dns_cancel(&p->dns);
        p->dns_waiting = 0;
    }
    if (p->own_dns != NULL) { /* from inside its callback, it closes once the resolver returns */
        p->pending_closes++;
        dns_cache_close(p->own_dns, on_own_dns_closed, p);
        p->own_dns = NULL;
    }
    uv_timer_stop(&p->timer);
    p->pending_closes++;
    uv_close((uv_handle_t *)&p->timer, on_close);
    if (p->tcp_inited) {
        if (p->tls_inited && !p->peer_eof && SSL_is_init_finished(p->tls.ssl)) {
            /* A polite close_notify, best effort, like an agent closing its connection. */
            char buf[256];
            tlsc_shutdown(&p->tls);
            size_t n = tlsc_output(&p->tls, buf, sizeof(buf));
            uv_buf_t b = uv_buf_init(buf, (unsigned)n);
            if (n > 0)
                uv_try_write((uv_stream_t *)&p->tcp, &b, 1);
        }
        p->pending_closes++;
        uv_close((uv_handle_t *)&p->tcp, on_close);
    }
}

static void probe_finish(probe_t *p, fs_cause_t cause, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    finish_v(p, cause, fmt, ap);
    va_end(ap);
}

void probe_cancel(probe_t *p)
{
    if (p->state == PS_CLOSING)
        return;
    p->r.cancelled = 1;
    probe_finish(p, FS_CAUSE_PROBE_TIMEOUT, "probe cancelled");
}

void probe_result_free(probe_result_t *r)
{
    chain_info_free(&r->chain);
    free(r->rev);
    r->rev = NULL;
}

/* The retrieval lines are kept only for probes that report details (capture_chain). */
static rev_result_t *retrievals(probe_t *p)
{
    if (!p->o.capture_chain)
        return NULL;
    if (p->r.rev == NULL)
        p->r.rev = fs_xcalloc(1, sizeof(*p->r.rev));
    return p->r.rev;
}

static void attempt_failed(probe_t *p, int err);

static void on_timer(uv_timer_t *t)
{
    probe_t *p = t->data;
    const char *why = p->phase_timeout_hit ? "phase timeout" : "probe deadline";
    uint32_t ms = (uint32_t)((uv_hrtime() - p->phase_start) / 1000000);
    switch (p->state) {
    case PS_RESOLVE:
        probe_finish(p, FS_CAUSE_DNS_FAILURE, "DNS lookup of \"%s\" did not answer in %u ms (%s)",
                     p->o.url->host, ms, why);
        break;
    case PS_CONNECT:
        attempt_failed(p, UV_ETIMEDOUT);
        break;
    case PS_TLS:
        probe_finish(p, FS_CAUSE_PROBE_TIMEOUT,
                     "TLS handshake: the server accepted the connection but did not complete the "
                     "handshake in %u ms (%s)",
                     ms, why);
        break;
    case PS_AIA:
        probe_finish(p, p->verdict.cause, "%s; AIA retrieval did not complete in %u ms",
                     p->verdict.message, ms);
        break;
    case PS_REVOCATION: {
        const rev_policy_t *rp = p->o.rev_policy;
        if (rp->mode == REV_STRICT) {
            probe_finish(p, FS_CAUSE_CRL_UNREACHABLE,
                         "revocation check did not complete in %u ms (%s)", ms, why);
        } else {
            p->r.warnings |= FS_WARN_BIT(FS_WARN_REVOCATION_SOFT_FAIL);
            if (p->rev_job != NULL) {
                rev_job_cancel(p->rev_job);
                p->rev_job = NULL;
            }
            if (p->phase_timeout_hit)
                start_request(p);
            else
                probe_finish(p, FS_CAUSE_PROBE_TIMEOUT,
                             "probe deadline reached during the revocation check");
        }
        break;
    }
    case PS_REQUEST:
        probe_finish(p, FS_CAUSE_PROBE_TIMEOUT, "no HTTP answer to GET %s in %u ms (%s)",
                     p->o.url->path, ms, why);
        break;
    default:
        break;
    }
}

/* ---- I/O ---- */

static void on_write(uv_write_t *req, int status)
{
    (void)status; /* a failed write shows up as a read error or EOF */
    free(container_of(req, probe_write_t, req));
}

static int send_bytes(probe_t *p, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    /* Most flights fit in the socket buffer: write now, no copy, no request, no callback.
     * Only what the kernel did not take goes through a queued uv_write. */
    uv_buf_t now = uv_buf_init((char *)data, (unsigned)len);
    if (uv_stream_get_write_queue_size((uv_stream_t *)&p->tcp) == 0) {
        int n = uv_try_write((uv_stream_t *)&p->tcp, &now, 1);
        if (n == (int)len)
            return 0;
        if (n > 0) {
            data = (const char *)data + n;
            len -= (size_t)n;
        } else if (n != UV_EAGAIN) {
            return n;
        }
    }
    probe_write_t *w = fs_xmalloc(sizeof(*w) + len);
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&p->tcp, &b, 1, on_write);
    if (rc < 0)
        free(w);
    return rc;
}

/* An error that means the server reset or aborted an established connection. */
static int is_reset(int err)
{
    return err == UV_ECONNRESET || err == UV_EPIPE || err == UV_ECONNABORTED;
}

/* Sends what the engine has for the peer; returns 0 or the first send error. */
static int flush_tls(probe_t *p)
{
    char buf[16384];
    size_t n;
    while ((n = tlsc_output(&p->tls, buf, sizeof(buf))) > 0) {
        int rc = send_bytes(p, buf, n);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    (void)h;
    *buf = uv_buf_init(read_buf, sizeof(read_buf));
}

static void drive_tls(probe_t *p)
{
    int r = tlsc_handshake(&p->tls);
    int sent = flush_tls(p); /* alerts go out even after a failure */
    if (r != TLSC_FAIL && is_reset(sent)) {
        /* Not left to a later read: that one may only see EOF once the send took the error. */
        probe_finish(p, FS_CAUSE_CONNECTION_CLOSED,
                     "TLS handshake: connection reset by the server (%s)", uv_strerror(sent));
        return;
    }
    if (r == TLSC_WANT_MORE) {
        if (p->peer_eof)
            probe_finish(p, FS_CAUSE_CONNECTION_CLOSED,
                         "TLS handshake: the server closed the connection");
        return;
    }
    if (r == TLSC_FAIL) {
        p->r.plain_http = p->tls.plain_http;
        probe_finish(p,
                     p->tls.err == TLSC_ERR_CLOSED ? FS_CAUSE_CONNECTION_CLOSED
                                                   : FS_CAUSE_TLS_HANDSHAKE_FAILED,
                     "%s", p->tls.errmsg);
        return;
    }
    p->r.tls_version = tlsc_negotiated_version(&p->tls);
    fs_strlcpy(p->r.cipher, tlsc_cipher_name(&p->tls), sizeof(p->r.cipher));
    if (p->r.tls_version < TLS1_2_VERSION)
        p->r.warnings |= FS_WARN_BIT(FS_WARN_WEAK_PROTOCOL);
    /* Nothing is read while AIA/CRL retrieval runs: a server that streams after the handshake
     * meets TCP backpressure instead of filling the engine's input. */
    uv_read_stop((uv_stream_t *)&p->tcp);
    start_verify(p);
}

/* Bytes of the response: only its head up to the final status line is kept and judged. */
static void response_bytes(probe_t *p, const char *data, size_t n)
{
    size_t room = sizeof(p->resp) - p->resp_len;
    if (n > room)
        n = room;
    memcpy(p->resp + p->resp_len, data, n);
    p->resp_len += n;
    http_status_t hs;
    int rc = http_status_parse(p->resp, p->resp_len, &hs);
    if (rc == HTTP_STATUS_BAD) {
        probe_finish(p, FS_CAUSE_HTTP_ERROR, "GET %s: malformed response, %s", p->o.url->path,
                     hs.error);
        return;
    }
    if (rc == HTTP_STATUS_MORE) {
        if (p->resp_len == sizeof(p->resp))
            probe_finish(p, FS_CAUSE_HTTP_ERROR,
                         "GET %s: no final status line in the first %zu bytes of the response%s",
                         p->o.url->path, sizeof(p->resp),
                         hs.interim ? " (after 1xx interim responses)" : "");
        return;
    }
    p->r.http_status = hs.code;
    if (hs.code >= 500)
        probe_finish(p, FS_CAUSE_HTTP_ERROR, "GET %s: the server answered HTTP %d", p->o.url->path,
                     hs.code);
    else if (hs.code == 101)
        probe_finish(p, FS_CAUSE_HTTP_ERROR,
                     "GET %s: the server answered HTTP 101 (switching protocols) to a plain GET",
                     p->o.url->path);
    else
        probe_finish(p, FS_CAUSE_NONE, "GET %s: HTTP %d", p->o.url->path, hs.code);
}

static void request_eof(probe_t *p)
{
    char esc[96];
    if (p->resp_len > 0)
        probe_finish(p, FS_CAUSE_CONNECTION_CLOSED,
                     "GET %s: the server closed the connection before a final status line, "
                     "after \"%s\"",
                     p->o.url->path, http_escape(p->resp, p->resp_len, esc, sizeof(esc)));
    else
        probe_finish(p, FS_CAUSE_CONNECTION_CLOSED,
                     "GET %s: the server closed the connection before answering", p->o.url->path);
}

static void drive_request_tls(probe_t *p)
{
    char buf[4096];
    for (;;) {
        int n = tlsc_read(&p->tls, buf, sizeof(buf));
        flush_tls(p);
        if (n > 0) {
            response_bytes(p, buf, (size_t)n);
            if (p->state != PS_REQUEST)
                return;
            continue;
        }
        if (n == 0) {
            if (p->peer_eof)
                request_eof(p);
            return;
        }
        if (n == TLSC_EOF)
            request_eof(p);
        else
            probe_finish(p, FS_CAUSE_CONNECTION_CLOSED, "%s", p->tls.errmsg);
        return;
    }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    probe_t *p = s->data;
    if (p->state == PS_CLOSING)
        return;
    if (nread == UV_EOF) {
        p->peer_eof = 1;
        uv_read_stop(s);
        if (p->tls_inited)
            tlsc_feed_eof(&p->tls);
    } else if (nread < 0) {
        probe_finish(p, FS_CAUSE_CONNECTION_CLOSED, "%s: connection %s (%s)",
                     p->state == PS_TLS ? "TLS handshake" : "connection",
                     nread == UV_ECONNRESET ? "reset by the server" : "failed",
                     uv_strerror((int)nread));
        return;
    } else if (nread == 0) {
        return;
    }
    if (nread > 0 && p->tls_inited && tlsc_feed(&p->tls, buf->base, (size_t)nread) < 0) {
        probe_finish(p, FS_CAUSE_TLS_HANDSHAKE_FAILED, "%s", p->tls.errmsg);
        return;
    }
    switch (p->state) {
    case PS_TLS:
        drive_tls(p);
        break;
    case PS_REQUEST:
        if (p->tls_inited)
            drive_request_tls(p);
        else if (nread > 0)
            response_bytes(p, buf->base, (size_t)nread);
        else
            request_eof(p);
        break;
    default:
        /* AIA/revocation in progress: bytes wait in the TLS engine (session tickets). */
        break;
    }
}

/* ---- phases ---- */

static void resolved(probe_t *p, const dns_answer_t *a)
{
    if (a->status < 0) {
        probe_finish(p, FS_CAUSE_DNS_FAILURE, "cannot resolve \"%s\": %s%s", p->o.url->host,
                     a->error, a->from_cache ? " (a recent lookup's answer, remembered)" : "");
        return;
    }
    p->addrs = a->addrs;
    start_connect(p);
}

static void on_dns(dns_req_t *req, const dns_answer_t *a)
{
    probe_t *p = req->data;
    p->dns_waiting = 0;
    resolved(p, a);
}

static void start_resolve(probe_t *p)
{
    const char *host = p->o.url->host;
    const char *one = p->o.connect_addr;
    set_state(p, PS_RESOLVE, p->o.dns_timeout_ms);
    if (one == NULL && fs_is_ip_literal(host))
        one = host;
    if (one != NULL) {
        p->addrs.n = 1;
        fs_strlcpy(p->addrs.a[0], one, sizeof(p->addrs.a[0]));
        start_connect(p);
        return;
    }
    const char *list[FS_RESOLVE_MAX_ADDRS];
    size_t n = fs_resolve_lookup_all(p->o.resolve, host, list);
    if (n > 0) {
        for (size_t i = 0; i < n; i++)
            fs_strlcpy(p->addrs.a[i], list[i], sizeof(p->addrs.a[i]));
        p->addrs.n = n;
        start_connect(p);
        return;
    }
    if (p->o.dns_override_only) {
        probe_finish(p, FS_CAUSE_DNS_FAILURE,
                     "cannot resolve \"%s\": not in this network view's resolve map", host);
        return;
    }
    dns_cache_t *c = p->o.dns;
    int rc = 0;
    if (c == NULL && (rc = dns_cache_new(&p->own_dns, p->loop, NULL)) == 0)
        c = p->own_dns;
    dns_answer_t a;
    p->dns.data = p;
    if (rc == 0)
        rc = dns_resolve(c, &p->dns, host, p->o.view, &a, on_dns);
    if (rc == DNS_PENDING) {
        p->dns_waiting = 1;
        return;
    }
    if (rc < 0) {
        probe_finish(p, FS_CAUSE_DNS_FAILURE, "cannot resolve \"%s\": %s", host, uv_strerror(rc));
        return;
    }
    resolved(p, &a);
}

static void start_tls(probe_t *p)
{
    int https = strcmp(p->o.url->scheme, "https") == 0;
    uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
    if (!https) {
        start_request(p);
        return;
    }
    set_state(p, PS_TLS, p->o.tls_timeout_ms);
    if (tlsc_init(&p->tls, p->o.tls, p->o.sni ? p->o.url->host : NULL) < 0) {
        probe_finish(p, FS_CAUSE_TLS_HANDSHAKE_FAILED, "TLS engine allocation failed");
        return;
    }
    p->tls_inited = 1;
    drive_tls(p);
}

static probe_attempt_t *current_attempt(probe_t *p)
{
    assert(p->r.nattempts > 0);
    return &p->r.attempts[p->r.nattempts - 1];
}

/* "refused", "no answer in 500 ms", "failed (network is unreachable)": one attempt in words. */
static const char *attempt_words(const probe_attempt_t *at, char *buf, size_t n)
{
    if (at->error == UV_ECONNREFUSED)
        snprintf(buf, n, "refused");
    else if (at->error == UV_ETIMEDOUT)
        snprintf(buf, n, "no answer in %u ms", at->ms);
    else
        snprintf(buf, n, "failed (%s)", uv_strerror(at->error));
    return buf;
}

/* Every address tried failed (or the connect timeout was spent): the cause is the first in SPEC
 * order among the attempts', so a refused node and a silent one read as connect_refused whichever
 * came first in this probe's rotation. */
static void connect_failed(probe_t *p)
{
    const char *why = p->phase_timeout_hit ? "phase timeout" : "probe deadline";
    fs_cause_t cause = FS_CAUSE_CONNECT_TIMEOUT;
    for (size_t i = 0; i < p->r.nattempts; i++)
        if (p->r.attempts[i].cause < cause)
            cause = p->r.attempts[i].cause;
    if (p->r.nattempts == 1) {
        const probe_attempt_t *at = &p->r.attempts[0];
        if (at->error == UV_ECONNREFUSED)
            probe_finish(p, cause, "TCP connect to %s port %d refused", at->addr, p->o.url->port);
        else if (at->error == UV_ETIMEDOUT)
            probe_finish(p, cause, "TCP connect to %s port %d: no answer in %u ms (%s)", at->addr,
                         p->o.url->port, at->ms, why);
        else
            probe_finish(p, cause, "TCP connect to %s port %d failed: %s", at->addr, p->o.url->port,
                         uv_strerror(at->error));
        return;
    }
    char list[240] = "", one[64];
    size_t len = 0;
    for (size_t i = 0; i < p->r.nattempts && len < sizeof(list); i++) {
        const probe_attempt_t *at = &p->r.attempts[i];
        int w = snprintf(list + len, sizeof(list) - len, "%s%s %s", i ? ", " : "", at->addr,
                         attempt_words(at, one, sizeof(one)));
        len += w > 0 ? (size_t)w : 0;
    }
    size_t untried = p->addrs.n - p->r.nattempts;
    char tail[64] = "";
    if (untried > 0)
        snprintf(tail, sizeof(tail), "; %zu not tried, the connect timeout was spent (%s)", untried,
                 why);
    probe_finish(p, cause, "TCP connect to \"%s\" port %d failed on %zu addresses: %s%s",
                 p->o.url->host, p->o.url->port, p->r.nattempts, list, tail);
}

static void connect_next(probe_t *p);

/* The previous attempt's socket is closed: the next address may use the handle. */
static void on_attempt_closed(uv_handle_t *h)
{
    probe_t *p = h->data;
    p->pending_closes--;
    if (p->state == PS_CONNECT)
        connect_next(p);
    else
        maybe_free(p);
}

/* The current attempt failed with err: fall over to the next address while there is one and
 * time left, else the connect phase fails. */
static void attempt_failed(probe_t *p, int err)
{
    probe_attempt_t *at = current_attempt(p);
    at->error = err;
    at->cause = err == UV_ECONNREFUSED ? FS_CAUSE_CONNECT_REFUSED : FS_CAUSE_CONNECT_TIMEOUT;
    at->ms = (uint32_t)((uv_hrtime() - p->attempt_t0) / 1000000);
    if (p->r.nattempts < p->addrs.n && uv_now(p->loop) < p->connect_end) {
        uv_timer_stop(&p->timer); /* connect_next arms it for the next attempt */
        p->tcp_inited = 0;
        p->pending_closes++;
        uv_close((uv_handle_t *)&p->tcp, on_attempt_closed);
        return;
    }
    connect_failed(p);
}

static void on_connect(uv_connect_t *req, int status)
{
    probe_t *p = container_of(req, probe_t, conn);
    if (status == UV_ECANCELED || p->state != PS_CONNECT)
        return;
    int https = strcmp(p->o.url->scheme, "https") == 0;
    if (is_reset(status)) {
        /* The handshake completed (a refusal is ECONNREFUSED) and the server reset the connection
         * before this callback ran: the same outcome as a reset a moment later, in the phase
         * that would have used the connection. */
        current_attempt(p)->ms = (uint32_t)((uv_hrtime() - p->attempt_t0) / 1000000);
        set_state(p, https ? PS_TLS : PS_REQUEST, 0);
        probe_finish(p, FS_CAUSE_CONNECTION_CLOSED,
                     "%s: connection reset by the server as soon as it was accepted (%s)",
                     https ? "TLS handshake" : "request", uv_strerror(status));
        return;
    }
    if (status < 0) {
        attempt_failed(p, status);
        return;
    }
    current_attempt(p)->ms = (uint32_t)((uv_hrtime() - p->attempt_t0) / 1000000);
    start_tls(p);
}

/* Connects to the next address of the rotation, with what remains of the connect timeout
 * divided by the addresses left. */
static void connect_next(probe_t *p)
{
    uint64_t now = uv_now(p->loop);
    size_t left = p->addrs.n - p->r.nattempts;
    if (left == 0 || now >= p->connect_end) {
        connect_failed(p);
        return;
    }
    const char *addr = p->addrs.a[(p->first_addr + p->r.nattempts) % p->addrs.n];
    probe_attempt_t *at = &p->r.attempts[p->r.nattempts++];
    memset(at, 0, sizeof(*at));
    fs_strlcpy(at->addr, addr, sizeof(at->addr));
    fs_strlcpy(p->r.addr, addr, sizeof(p->r.addr));
    struct sockaddr_storage ss;
    if (uv_ip4_addr(addr, p->o.url->port, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(addr, p->o.url->port, (struct sockaddr_in6 *)&ss) != 0) {
        probe_finish(p, FS_CAUSE_DNS_FAILURE, "\"%s\" resolved to an invalid address \"%s\"",
                     p->o.url->host, addr);
        return;
    }
    uint64_t share = (p->connect_end - now) / left;
    arm_timer(p, share > 0 ? share : 1);
    p->attempt_t0 = uv_hrtime();
    uv_tcp_init(p->loop, &p->tcp);
    p->tcp.data = p;
    p->tcp_inited = 1;
    uv_tcp_nodelay(&p->tcp, 1);
    int rc = uv_tcp_connect(&p->conn, &p->tcp, (struct sockaddr *)&ss, on_connect);
    if (rc < 0)
        attempt_failed(p, rc);
}

static void start_connect(probe_t *p)
{
    p->r.naddrs = p->addrs.n;
    if (p->addrs.n > 1 && p->o.dns != NULL)
        p->first_addr = dns_next_index(p->o.dns, p->o.url->host, p->o.view) % p->addrs.n;
    set_state(p, PS_CONNECT, p->o.connect_timeout_ms);
    uint64_t now = uv_now(p->loop);
    p->connect_end = now + p->o.connect_timeout_ms;
    if (p->connect_end > p->deadline)
        p->connect_end = p->deadline;
    connect_next(p);
}

static STACK_OF(X509) * extra_certs(probe_t *p)
{
    if (p->extra == NULL) {
        p->extra = sk_X509_new_null();
        STACK_OF(X509) *mine = p->o.tls->intermediates;
        for (int i = 0; i < sk_X509_num(mine); i++) {
            X509 *x = sk_X509_value(mine, i);
            X509_up_ref(x);
            sk_X509_push(p->extra, x);
        }
    }
    return p->extra;
}

static void on_aia(void *arg, STACK_OF(X509) * issuers, const rev_result_t *rr)
{
    probe_t *p = arg;
    p->rev_job = NULL;
    /* Keep the AIA retrieval lines for the report. */
    rev_result_t *mine = retrievals(p);
    for (size_t i = 0; mine != NULL && i < rr->nurls && mine->nurls < REV_MAX_URLS; i++)
        mine->urls[mine->nurls++] = rr->urls[i];
    if (issuers == NULL || sk_X509_num(issuers) == 0) {
        probe_finish(p, p->verdict.cause, "%s; AIA retrieval failed: %s", p->verdict.message,
                     rr->message[0] ? rr->message : "no usable caIssuers URL");
        return;
    }
    STACK_OF(X509) *extra = extra_certs(p);
    for (int i = 0; i < sk_X509_num(issuers); i++) {
        X509 *x = sk_X509_value(issuers, i);
        X509_up_ref(x);
        sk_X509_push(extra, x);
    }
    p->r.aia_used = 1;
    start_verify(p);
}

static void start_verify(probe_t *p)
{
    STACK_OF(X509) *presented = p->o.presented ? p->o.presented : tlsc_peer_chain(&p->tls);
    if (p->r.leaf_sha1[0] == '\0' && sk_X509_num(presented) > 0)
        chain_sha1_thumbprint(sk_X509_value(presented, 0), p->r.leaf_sha1);
    if (p->o.capture_chain && p->r.chain.n == 0)
        chain_info_capture(&p->r.chain, presented);
    chain_check_t c = {
        .host = p->o.url->host,
        .at = p->r.endpoint_time,
        .expiring_soon_s = p->o.expiring_soon_s,
        .expect_thumbprint = p->o.expect_thumbprint,
    };
    p->r.built = NULL;
    chain_verdict_free(&p->verdict);
    int rc;
    if (p->o.vcache != NULL && p->extra == NULL) {
        rc = vcache_verify(p->o.vcache, p->o.tls, presented, &c, &p->verdict);
    } else {
        STACK_OF(X509) *extra =
            sk_X509_num(p->o.tls->intermediates) > 0 || p->extra ? extra_certs(p) : NULL;
        rc = chain_verify(p->o.tls->trust, presented, extra, &c, &p->verdict);
    }
    p->r.built = p->verdict.built; /* the verdict is freed after the callback */
    if (rc < 0) {
        probe_finish(p, FS_CAUSE_UNTRUSTED_CA, "%s", p->verdict.message);
        return;
    }
    p->r.warnings |= p->verdict.warnings;
    p->r.chain_not_after = p->verdict.not_after_min;
    p->r.chain_not_before = p->verdict.not_before_max;
    /* An issuer nobody supplied: ask AIA for it before deciding which side must act, as
     * CryptoAPI does (a fetched root makes the chain complete up to an untrusted root). */
    if (p->verdict.issuer_missing_depth >= 0 && p->o.rev != NULL && p->o.rev_policy != NULL &&
        p->o.rev_policy->aia_fetch && !p->aia_tried) {
        p->aia_tried = 1;
        X509 *x = sk_X509_value(p->verdict.built, p->verdict.issuer_missing_depth);
        const rev_policy_t *pol = retrieval_policy(p);
        set_state(p, PS_AIA, retrieval_limit(pol) + PROBE_DEADLINE_MARGIN_MS);
        rc = rev_aia_start(p->o.rev, &p->rev_job, x, pol, on_aia, p);
        if (rc < 0)
            probe_finish(p, p->verdict.cause, "%s; AIA retrieval could not start",
                         p->verdict.message);
        return;
    }
    if (p->verdict.cause != FS_CAUSE_NONE) {
        probe_finish(p, p->verdict.cause, "%s", p->verdict.message);
        return;
    }
    if (p->r.aia_used)
        p->r.warnings |= FS_WARN_BIT(FS_WARN_AIA_FETCH_REQUIRED);
    start_revocation(p);
}

static void on_revocation(void *arg, const rev_result_t *rr)
{
    probe_t *p = arg;
    p->rev_job = NULL;
    rev_result_t *mine = retrievals(p);
    if (mine != NULL) {
        /* AIA lines first (already there), then the CRL lines, within the fixed capacity. */
        size_t keep = mine->nurls, n = rr->nurls;
        if (keep + n > REV_MAX_URLS)
            n = REV_MAX_URLS - keep;
        rev_url_result_t *aia = fs_xmalloc((keep ? keep : 1) * sizeof(*aia));
        memcpy(aia, mine->urls, keep * sizeof(*aia));
        *mine = *rr;
        memmove(mine->urls + keep, rr->urls, n * sizeof(*aia));
        memcpy(mine->urls, aia, keep * sizeof(*aia));
        mine->nurls = keep + n;
        free(aia);
    }
    p->r.warnings |= rr->warnings;
    for (size_t i = 0; i < rr->nurls; i++) {
        const rev_url_result_t *u = &rr->urls[i];
        /* the freshness edge of the forecast: a CRL, a delta or an OCSP answer, all the same */
        if (u->ok &&
            (strcmp(u->kind, "crl") == 0 || strcmp(u->kind, "delta") == 0 ||
             strcmp(u->kind, "ocsp") == 0) &&
            u->next_update != 0 &&
            (p->r.crl_next_update == 0 || u->next_update < p->r.crl_next_update))
            p->r.crl_next_update = u->next_update;
    }
    if (rr->cause != FS_CAUSE_NONE) {
        probe_finish(p, rr->cause, "%s", rr->message);
        return;
    }
    start_request(p);
}

static void start_revocation(probe_t *p)
{
    if (p->o.rev == NULL || p->o.rev_policy == NULL || p->o.rev_policy->mode == REV_OFF) {
        start_request(p);
        return;
    }
    const rev_policy_t *pol = retrieval_policy(p);
    set_state(p, PS_REVOCATION, retrieval_limit(pol) + PROBE_DEADLINE_MARGIN_MS);
    int rc = rev_check_start(p->o.rev, &p->rev_job, p->verdict.built, pol, p->r.endpoint_time,
                             on_revocation, p);
    if (rc < 0)
        probe_finish(p, FS_CAUSE_CRL_UNREACHABLE, "revocation check could not start");
}

static void start_request(probe_t *p)
{
    if (p->o.presented != NULL) {
        probe_finish(p, FS_CAUSE_NONE, "the endpoint would accept this chain");
        return;
    }
    if (p->o.url->path[0] == '\0') {
        probe_finish(p, FS_CAUSE_NONE, "TLS handshake and chain validation succeeded");
        return;
    }
    set_state(p, PS_REQUEST, p->o.request_timeout_ms);
    char req[1500];
    const char *h = p->o.url->host;
    int v6 = strchr(h, ':') != NULL;
    int def = (p->o.url->port == 443 && p->tls_inited) || (p->o.url->port == 80 && !p->tls_inited);
    char hostport[300];
    if (def)
        snprintf(hostport, sizeof(hostport), v6 ? "[%s]" : "%s", h);
    else
        snprintf(hostport, sizeof(hostport), v6 ? "[%s]:%d" : "%s:%d", h, p->o.url->port);
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: fleetscan/1 (agent simulation)\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n",
                     p->o.url->path, hostport);
    if (n < 0 || (size_t)n >= sizeof(req)) {
        probe_finish(p, FS_CAUSE_HTTP_ERROR, "request line too long");
        return;
    }
    if (p->tls_inited) {
        uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
        if (tlsc_write(&p->tls, req, (size_t)n) < 0) {
            flush_tls(p);
            probe_finish(p, FS_CAUSE_CONNECTION_CLOSED, "%s", p->tls.errmsg);
            return;
        }
        flush_tls(p);
        drive_request_tls(p); /* bytes that arrived during revocation */
    } else {
        if (send_bytes(p, req, (size_t)n) < 0)
            probe_finish(p, FS_CAUSE_CONNECTION_CLOSED, "could not send the request");
        else if (p->peer_eof)
            request_eof(p);
    }
}

int probe_start(probe_t **out, uv_loop_t *loop, const probe_opts_t *opts, probe_cb cb, void *arg)
{
    assert(opts->url != NULL && cb != NULL);
    if (strcmp(opts->url->scheme, "https") == 0 && opts->tls == NULL)
        return UV_EINVAL;
    probe_t *p = fs_xcalloc(1, sizeof(*p));
    p->loop = loop;
    p->o = *opts;
    p->cb = cb;
    p->arg = arg;
    uv_update_time(loop); /* timers count from now, not from the last loop iteration */
    p->t0 = uv_hrtime();
    p->r.started_at = opts->at ? opts->at : fs_wall_ms() / 1000;
    p->r.endpoint_time = p->r.started_at + opts->clock_skew_s;
    p->deadline = uv_now(loop) + opts->total_timeout_ms;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    if (out != NULL)
        *out = p;
    if (opts->presented != NULL) {
        set_state(p, PS_TLS, opts->tls_timeout_ms); /* what a handshake would have delivered */
        start_verify(p); /* finishing ends in a close callback: cb still fires later */
    } else
        start_resolve(p);
    return 0;
}
