/* probe_addr.c - from a name to a connected socket: the resolve phase (an address given, the
 * view's resolve map, else the resolve cache) and the connect phase over the name's addresses (the
 * round robin start, failover to the next address within the connect timeout, per-address attempts
 * and the cause of their failure, first in SPEC order). */
#include "probes/probe_int.h"
#include "probes/util.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static void resolved(probe_t *p, const dns_answer_t *a)
{
    if (a->status < 0) {
        probe__finish(p, FS_CAUSE_DNS_FAILURE, "cannot resolve \"%s\": %s%s", p->o.url->host,
                      a->error, a->from_cache ? " (a recent lookup's answer, remembered)" : "");
        return;
    }
    p->addrs = a->addrs;
    probe__start_connect(p);
}

static void on_dns(dns_req_t *req, const dns_answer_t *a)
{
    probe_t *p = req->data;
    p->dns_waiting = 0;
    resolved(p, a);
}

void probe__start_resolve(probe_t *p)
{
    const char *host = p->o.url->host;
    const char *one = p->o.connect_addr;
    probe__set_state(p, PS_RESOLVE, p->o.dns_timeout_ms);
    if (one == NULL && fs_is_ip_literal(host))
        one = host;
    if (one != NULL) {
        p->addrs.n = 1;
        fs_strlcpy(p->addrs.a[0], one, sizeof(p->addrs.a[0]));
        probe__start_connect(p);
        return;
    }
    const char *list[FS_RESOLVE_MAX_ADDRS];
    size_t n = fs_resolve_lookup_all(p->o.resolve, host, list);
    if (n > 0) {
        for (size_t i = 0; i < n; i++)
            fs_strlcpy(p->addrs.a[i], list[i], sizeof(p->addrs.a[i]));
        p->addrs.n = n;
        probe__start_connect(p);
        return;
    }
    if (p->o.dns_override_only) {
        probe__finish(p, FS_CAUSE_DNS_FAILURE,
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
        probe__finish(p, FS_CAUSE_DNS_FAILURE, "cannot resolve \"%s\": %s", host, uv_strerror(rc));
        return;
    }
    resolved(p, &a);
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
            probe__finish(p, cause, "TCP connect to %s port %d refused", at->addr, p->o.url->port);
        else if (at->error == UV_ETIMEDOUT)
            probe__finish(p, cause, "TCP connect to %s port %d: no answer in %u ms (%s)", at->addr,
                          p->o.url->port, at->ms, why);
        else
            probe__finish(p, cause, "TCP connect to %s port %d failed: %s", at->addr,
                          p->o.url->port, uv_strerror(at->error));
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
    probe__finish(p, cause, "TCP connect to \"%s\" port %d failed on %zu addresses: %s%s",
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
        probe__maybe_free(p);
}

/* The current attempt failed with err: fall over to the next address while there is one and
 * time left, else the connect phase fails. */
void probe__attempt_failed(probe_t *p, int err)
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
    if (probe__is_reset(status)) {
        /* The handshake completed (a refusal is ECONNREFUSED) and the server reset the connection
         * before this callback ran: the same outcome as a reset a moment later, in the phase
         * that would have used the connection. */
        current_attempt(p)->ms = (uint32_t)((uv_hrtime() - p->attempt_t0) / 1000000);
        probe__set_state(p, https ? PS_TLS : PS_REQUEST, 0);
        probe__finish(p, FS_CAUSE_CONNECTION_CLOSED,
                      "%s: connection reset by the server as soon as it was accepted (%s)",
                      https ? "TLS handshake" : "request", uv_strerror(status));
        return;
    }
    if (status < 0) {
        probe__attempt_failed(p, status);
        return;
    }
    current_attempt(p)->ms = (uint32_t)((uv_hrtime() - p->attempt_t0) / 1000000);
    probe__start_tls(p);
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
        probe__finish(p, FS_CAUSE_DNS_FAILURE, "\"%s\" resolved to an invalid address \"%s\"",
                      p->o.url->host, addr);
        return;
    }
    uint64_t share = (p->connect_end - now) / left;
    probe__arm_timer(p, share > 0 ? share : 1);
    p->attempt_t0 = uv_hrtime();
    uv_tcp_init(p->loop, &p->tcp);
    p->tcp.data = p;
    p->tcp_inited = 1;
    uv_tcp_nodelay(&p->tcp, 1);
    int rc = uv_tcp_connect(&p->conn, &p->tcp, (struct sockaddr *)&ss, on_connect);
    if (rc < 0)
        probe__attempt_failed(p, rc);
}

void probe__start_connect(probe_t *p)
{
    p->r.naddrs = p->addrs.n;
    if (p->addrs.n > 1 && p->o.dns != NULL)
        p->first_addr = dns_next_index(p->o.dns, p->o.url->host, p->o.view) % p->addrs.n;
    probe__set_state(p, PS_CONNECT, p->o.connect_timeout_ms);
    uint64_t now = uv_now(p->loop);
    p->connect_end = now + p->o.connect_timeout_ms;
    if (p->connect_end > p->deadline)
        p->connect_end = p->deadline;
    connect_next(p);
}
