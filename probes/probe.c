/* probe.c - the libuv probe state machine (see probe.h): its states and one probe__set_state(), the
 * one uv_timer that carries both the phase timeout and the probe deadline, finishing and closing
 * (the probe is freed only in its last close callback), socket I/O, the TLS handshake and the
 * request. Resolve and connect are probe_addr.c; verification, AIA and revocation probe_verify.c.
 */
#include "probes/probe_int.h"
#include "probes/http.h"
#include "probes/util.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

const char *const probe_phase_names[PROBE_PH_COUNT] = {"dns", "connect", "tls", "revocation",
                                                       "request"};

#define PROBE_READ_BUF 16384

static const char *const state_names[PS_COUNT] = {"init", "resolve",    "connect", "tls",
                                                  "aia",  "revocation", "request", "closing"};
_Static_assert(FS_ARRAY_SIZE(state_names) == PS_COUNT, "state names out of sync");

/* Bytes are handed to the TLS engine (which copies them) inside the read callback, so one
 * buffer serves every probe of a thread: no 16 KiB per probe in flight. */
static _Thread_local char read_buf[PROBE_READ_BUF];

typedef struct probe_write_s {
    uv_write_t req;
    char data[];
} probe_write_t;

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
void probe__arm_timer(probe_t *p, uint64_t ms)
{
    uint64_t now = uv_now(p->loop);
    uint64_t left = p->deadline > now ? p->deadline - now : 0;
    p->phase_timeout_hit = ms < left;
    uv_timer_start(&p->timer, on_timer, p->phase_timeout_hit ? ms : left, 0);
}

static int trace_states; /* FLEETSCAN_TRACE_PROBE set: every transition on stderr */
static pthread_once_t trace_once = PTHREAD_ONCE_INIT;

static void trace_init(void)
{
    trace_states = getenv("FLEETSCAN_TRACE_PROBE") != NULL;
}

/* The single state transition: closes the previous phase's timing, arms the timer with the
 * phase timeout bounded by the deadline. */
void probe__set_state(probe_t *p, probe_state_t s, uint32_t phase_timeout_ms)
{
    end_phase_timing(p);
    pthread_once(&trace_once, trace_init);
    if (trace_states)
        fprintf(stderr, "probe %p: %s -> %s\n", (void *)p, state_names[p->state], state_names[s]);
    p->state = s;
    p->phase_start = uv_hrtime();
    if (s == PS_CLOSING)
        return;
    probe__arm_timer(p, phase_timeout_ms);
}

void probe__maybe_free(probe_t *p)
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
    probe__maybe_free(p);
}

static void on_own_dns_closed(void *arg)
{
    probe_t *p = arg;
    p->pending_closes--;
    probe__maybe_free(p);
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
    probe__set_state(p, PS_CLOSING, 0);
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

void probe__finish(probe_t *p, fs_cause_t cause, const char *fmt, ...)
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
    probe__finish(p, FS_CAUSE_PROBE_TIMEOUT, "probe cancelled");
}

void probe_result_free(probe_result_t *r)
{
    chain_info_free(&r->chain);
    free(r->rev);
    r->rev = NULL;
}

static void on_timer(uv_timer_t *t)
{
    probe_t *p = t->data;
    const char *why = p->phase_timeout_hit ? "phase timeout" : "probe deadline";
    uint32_t ms = (uint32_t)((uv_hrtime() - p->phase_start) / 1000000);
    switch (p->state) {
    case PS_RESOLVE:
        probe__finish(p, FS_CAUSE_DNS_FAILURE, "DNS lookup of \"%s\" did not answer in %u ms (%s)",
                      p->o.url->host, ms, why);
        break;
    case PS_CONNECT:
        probe__attempt_failed(p, UV_ETIMEDOUT);
        break;
    case PS_TLS:
        probe__finish(p, FS_CAUSE_PROBE_TIMEOUT,
                      "TLS handshake: the server accepted the connection but did not complete the "
                      "handshake in %u ms (%s)",
                      ms, why);
        break;
    case PS_AIA:
        probe__finish(p, p->verdict.cause, "%s; AIA retrieval did not complete in %u ms",
                      p->verdict.message, ms);
        break;
    case PS_REVOCATION: {
        const rev_policy_t *rp = p->o.rev_policy;
        if (rp->mode == REV_STRICT) {
            probe__finish(p, FS_CAUSE_CRL_UNREACHABLE,
                          "revocation check did not complete in %u ms (%s)", ms, why);
        } else {
            p->r.warnings |= FS_WARN_BIT(FS_WARN_REVOCATION_SOFT_FAIL);
            if (p->rev_job != NULL) {
                rev_job_cancel(p->rev_job);
                p->rev_job = NULL;
            }
            if (p->phase_timeout_hit)
                probe__start_request(p);
            else
                probe__finish(p, FS_CAUSE_PROBE_TIMEOUT,
                              "probe deadline reached during the revocation check");
        }
        break;
    }
    case PS_REQUEST:
        probe__finish(p, FS_CAUSE_PROBE_TIMEOUT, "no HTTP answer to GET %s in %u ms (%s)",
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
int probe__is_reset(int err)
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
    if (r != TLSC_FAIL && probe__is_reset(sent)) {
        /* Not left to a later read: that one may only see EOF once the send took the error. */
        probe__finish(p, FS_CAUSE_CONNECTION_CLOSED,
                      "TLS handshake: connection reset by the server (%s)", uv_strerror(sent));
        return;
    }
    if (r == TLSC_WANT_MORE) {
        if (p->peer_eof)
            probe__finish(p, FS_CAUSE_CONNECTION_CLOSED,
                          "TLS handshake: the server closed the connection");
        return;
    }
    if (r == TLSC_FAIL) {
        p->r.plain_http = p->tls.plain_http;
        probe__finish(p,
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
    probe__start_verify(p);
}

/* Where the scan of the header lines is: inside a line, at the start of one, after a CR there. */
enum { HEAD_IN_LINE, HEAD_LINE_START, HEAD_LINE_CR };

/* Header lines after the final status line: the probe ends at the empty line that ends the head,
 * as WinHTTP hands a status over only then, or fails past PROBE_MAX_HEAD_BYTES as it does. */
static void head_bytes(probe_t *p, const char *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (++p->head_bytes > PROBE_MAX_HEAD_BYTES) {
            probe__finish(p, FS_CAUSE_HTTP_ERROR,
                          "GET %s: HTTP %d with a response head over %d KiB (a WinHTTP agent "
                          "fails: ERROR_WINHTTP_HEADER_SIZE_OVERFLOW)",
                          p->o.url->path, p->r.http_status, PROBE_MAX_HEAD_BYTES / 1024);
            return;
        }
        if (d[i] == '\n') {
            if (p->head_at != HEAD_IN_LINE) {
                probe__finish(p, FS_CAUSE_NONE, "GET %s: HTTP %d", p->o.url->path,
                              p->r.http_status);
                return;
            }
            p->head_at = HEAD_LINE_START;
        } else {
            p->head_at =
                d[i] == '\r' && p->head_at == HEAD_LINE_START ? HEAD_LINE_CR : HEAD_IN_LINE;
        }
    }
}

/* Bytes of the response: its head up to the final status line is kept and judged, the header
 * lines after it are counted up to the empty line (head_bytes). */
static void response_bytes(probe_t *p, const char *data, size_t n)
{
    if (p->r.http_status != 0) {
        head_bytes(p, data, n);
        return;
    }
    size_t room = sizeof(p->resp) - p->resp_len, kept = n < room ? n : room;
    memcpy(p->resp + p->resp_len, data, kept);
    p->resp_len += kept;
    http_status_t hs;
    int rc = http_status_parse(p->resp, p->resp_len, &hs);
    if (rc == HTTP_STATUS_BAD) {
        probe__finish(p, FS_CAUSE_HTTP_ERROR, "GET %s: malformed response, %s", p->o.url->path,
                      hs.error);
        return;
    }
    if (rc == HTTP_STATUS_MORE) {
        if (p->resp_len == sizeof(p->resp))
            probe__finish(p, FS_CAUSE_HTTP_ERROR,
                          "GET %s: no final status line in the first %zu bytes of the response%s",
                          p->o.url->path, sizeof(p->resp),
                          hs.interim ? " (after 1xx interim responses)" : "");
        return;
    }
    p->r.http_status = hs.code;
    if (hs.code >= 500) {
        probe__finish(p, FS_CAUSE_HTTP_ERROR, "GET %s: the server answered HTTP %d", p->o.url->path,
                      hs.code);
        return;
    }
    if (hs.code == 101) {
        probe__finish(p, FS_CAUSE_HTTP_ERROR,
                      "GET %s: the server answered HTTP 101 (switching protocols) to a plain GET",
                      p->o.url->path);
        return;
    }
    p->head_bytes = hs.line_end;
    p->head_at = HEAD_LINE_START;
    head_bytes(p, p->resp + hs.line_end, p->resp_len - hs.line_end);
    if (p->state == PS_REQUEST && kept < n)
        head_bytes(p, data + kept, n - kept);
}

static void request_eof(probe_t *p)
{
    char esc[96];
    if (p->r.http_status != 0)
        probe__finish(p, FS_CAUSE_CONNECTION_CLOSED,
                      "GET %s: the server closed the connection inside the head of its HTTP %d "
                      "answer (no empty line after the header lines)",
                      p->o.url->path, p->r.http_status);
    else if (p->resp_len > 0)
        probe__finish(p, FS_CAUSE_CONNECTION_CLOSED,
                      "GET %s: the server closed the connection before a final status line, "
                      "after \"%s\"",
                      p->o.url->path, http_escape(p->resp, p->resp_len, esc, sizeof(esc)));
    else
        probe__finish(p, FS_CAUSE_CONNECTION_CLOSED,
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
            probe__finish(p, FS_CAUSE_CONNECTION_CLOSED, "%s", p->tls.errmsg);
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
        probe__finish(p, FS_CAUSE_CONNECTION_CLOSED, "%s: connection %s (%s)",
                      p->state == PS_TLS ? "TLS handshake" : "connection",
                      nread == UV_ECONNRESET ? "reset by the server" : "failed",
                      uv_strerror((int)nread));
        return;
    } else if (nread == 0) {
        return;
    }
    if (nread > 0 && p->tls_inited && tlsc_feed(&p->tls, buf->base, (size_t)nread) < 0) {
        probe__finish(p, FS_CAUSE_TLS_HANDSHAKE_FAILED, "%s", p->tls.errmsg);
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

void probe__start_tls(probe_t *p)
{
    int https = strcmp(p->o.url->scheme, "https") == 0;
    uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
    if (!https) {
        probe__start_request(p);
        return;
    }
    probe__set_state(p, PS_TLS, p->o.tls_timeout_ms);
    if (tlsc_init(&p->tls, p->o.tls, p->o.sni ? p->o.url->host : NULL) < 0) {
        probe__finish(p, FS_CAUSE_TLS_HANDSHAKE_FAILED, "TLS engine allocation failed");
        return;
    }
    p->tls_inited = 1;
    drive_tls(p);
}

void probe__start_request(probe_t *p)
{
    if (p->o.presented != NULL) {
        probe__finish(p, FS_CAUSE_NONE, "the endpoint would accept this chain");
        return;
    }
    if (p->o.url->path[0] == '\0') {
        probe__finish(p, FS_CAUSE_NONE, "TLS handshake and chain validation succeeded");
        return;
    }
    probe__set_state(p, PS_REQUEST, p->o.request_timeout_ms);
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
        probe__finish(p, FS_CAUSE_HTTP_ERROR, "request line too long");
        return;
    }
    if (p->tls_inited) {
        uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
        if (tlsc_write(&p->tls, req, (size_t)n) < 0) {
            flush_tls(p);
            probe__finish(p, FS_CAUSE_CONNECTION_CLOSED, "%s", p->tls.errmsg);
            return;
        }
        flush_tls(p);
        drive_request_tls(p); /* bytes that arrived during revocation */
    } else {
        if (send_bytes(p, req, (size_t)n) < 0)
            probe__finish(p, FS_CAUSE_CONNECTION_CLOSED, "could not send the request");
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
        probe__set_state(p, PS_TLS,
                         opts->tls_timeout_ms); /* what a handshake would have delivered */
        probe__start_verify(p); /* finishing ends in a close callback: cb still fires later */
    } else
        probe__start_resolve(p);
    return 0;
}
