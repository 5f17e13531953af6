/* fetch.c - libcurl multi-socket on a libuv loop (curl docs/examples/multi-uv.c): one timer for
 * curl's timeouts, one uv_poll per socket, redirects followed here so every hop obeys the
 * DNS override map, the sealed-DNS flag and the body cap; GET, POST and (on request) LDAP. */
#include "probes/fetch.h"
#include "probes/fetch_int.h"
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

const char *const fetch_err_names[FETCH_ERR_COUNT] = {
    "ok",        "dns",    "refused", "connect", "timeout", "too_big",
    "redirects", "scheme", "url",     "recv",    "other",
};
_Static_assert(FS_ARRAY_SIZE(fetch_err_names) == FETCH_ERR_COUNT, "fetch_err_names");

/* The process-wide budget of bytes held by in-flight retrieval bodies (fetch_set_inflight_limit):
 * every fetcher, on every loop, charges its jobs' buffers here. A job that would pass the
 * budget pauses (libcurl stops reading its socket: TCP back-pressure to the server) and a new
 * job waits before it connects, until room frees. One job at a time may go past the budget,
 * the holder of g_exempt, so that jobs paused on each other always make progress: what is held
 * stays within the budget plus one body (its max_bytes). */
static _Atomic size_t g_limit = FETCH_DEFAULT_INFLIGHT_BYTES;
static _Atomic size_t g_held;
static _Atomic(fetch_job_t *) g_exempt;
_Atomic size_t fetch__waiting; /* jobs paused or queued now */
_Atomic uint64_t fetch__waits; /* jobs that ever had to wait */

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

void fetch__job_unlink(fetch_job_t *j)
{
    fetch_t *f = j->f;
    if (j->list == J_WAITING || j->paused)
        atomic_fetch_sub(&fetch__waiting, 1);
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
int fetch__mem_take(fetch_job_t *j, size_t delta)
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

void fetch__mem_give(fetch_job_t *j, size_t n)
{
    atomic_fetch_sub(&g_held, n);
}

/* Room for one more job to start or resume. */
static int mem_room(void)
{
    return atomic_load(&g_held) < atomic_load(&g_limit) || atomic_load(&g_exempt) == NULL;
}

static void on_pump(uv_timer_t *t);

void fetch__pump_start(fetch_t *f)
{
    if (!uv_is_active((uv_handle_t *)&f->pump))
        uv_timer_start(&f->pump, on_pump, FETCH_PUMP_MS, FETCH_PUMP_MS);
}

static void job_free(fetch_job_t *j)
{
    fetch_job_t *me = j;
    fetch__mem_give(j, j->cap);
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

uint32_t fetch__job_elapsed_ms(const fetch_job_t *j)
{
    return (uint32_t)((uv_hrtime() - j->start_ns) / 1000000u);
}

/* Hands the result to the user and frees the job; the job is already off every list. */
void fetch__job_deliver(fetch_job_t *j)
{
    fetch_t *f = j->f;
    j->res.time_ms = fetch__job_elapsed_ms(j);
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

void fetch__dispatch_end(fetch_t *f)
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
        fetch__job_unlink(j);
        fetch__job_deliver(j);
    }
    f->dispatching--;
    fetch__dispatch_end(f);
}

void fetch__job_finish_later(fetch_job_t *j, fetch_err_t err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->res.error, sizeof(j->res.error), fmt, ap);
    va_end(ap);
    j->res.err = err;
    fetch__job_unlink(j);
    j->list = J_READY;
    list_push(&j->f->ready, j);
    uv_timer_start(&j->f->defer, on_defer, 0, 0);
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
    fetch__check_multi_info(f);
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
    fetch__check_multi_info(f);
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
        if ((!paused_only || j->paused) && fetch__job_elapsed_ms(j) >= j->timeout_ms)
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
        fetch__job_finish_later(j, FETCH_ERR_TIMEOUT,
                                "timed out after %u ms waiting to start: other retrievals held the "
                                "in-flight budget (%zu bytes)",
                                fetch__job_elapsed_ms(j), atomic_load(&g_limit));
    while (!f->closing && (j = expired(f->active, 1)) != NULL) {
        j->res.err = FETCH_ERR_TIMEOUT;
        j->res.resolved = j->res.connected = 1;
        snprintf(j->res.error, sizeof(j->res.error),
                 "timed out after %u ms (%zu bytes received, paused while other retrievals held "
                 "the in-flight budget of %zu bytes)",
                 fetch__job_elapsed_ms(j), j->len, atomic_load(&g_limit));
        fetch__job_unlink(j);
        fetch__job_deliver(j);
    }
    while (!f->closing && mem_room() && (j = oldest(f->active, 1, round)) != NULL) {
        j->pump_round = round;
        j->paused = 0;
        atomic_fetch_sub(&fetch__waiting, 1);
        curl_easy_pause(j->easy, CURLPAUSE_CONT); /* may hand the kept chunk back at once */
    }
    while (!f->closing && mem_room() && (j = oldest(f->waiting, 0, round)) != NULL) {
        fetch__job_unlink(j);
        list_push(&f->active, j);
        fetch__job_begin_hop(j);
    }
    int waiting = f->waiting != NULL;
    for (j = f->active; j != NULL && !waiting; j = j->next)
        waiting = j->paused;
    if (!waiting || f->closing)
        uv_timer_stop(&f->pump);
    f->dispatching--;
    fetch__check_multi_info(f);
}

void fetch_set_inflight_limit(size_t bytes)
{
    atomic_store(&g_limit, bytes > 0 ? bytes : FETCH_DEFAULT_INFLIGHT_BYTES);
}

void fetch_inflight(fetch_inflight_t *out)
{
    out->held = atomic_load(&g_held);
    out->limit = atomic_load(&g_limit);
    out->waiting = atomic_load(&fetch__waiting);
    out->waited_total = atomic_load(&fetch__waits);
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
        fetch__job_unlink(j);
        job_free(j);
    }
    while (f->ready) {
        fetch_job_t *j = f->ready;
        fetch__job_unlink(j);
        job_free(j);
    }
    while (f->waiting) {
        fetch_job_t *j = f->waiting;
        fetch__job_unlink(j);
        job_free(j);
    }
    f->dispatching--;
    fetch__dispatch_end(f);
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
            fetch__job_finish_later(j, FETCH_ERR_URL, "bad proxy %.140s", err);
            return 0;
        }
        const char *addr =
            fs_is_ip_literal(px.u.host) ? px.u.host : fs_resolve_lookup(&j->resolve, px.u.host);
        if (addr == NULL && j->dns_override_only) {
            j->res.resolved = 0;
            fetch__job_finish_later(
                j, FETCH_ERR_DNS, "could not resolve proxy \"%.80s\" (not in the DNS override map)",
                px.u.host);
            return 0;
        }
        char h[300];
        fetch__host_for_url(addr ? addr : px.u.host, h, sizeof(h));
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
        atomic_fetch_add(&fetch__waiting, 1);
        atomic_fetch_add(&fetch__waits, 1);
        fetch__pump_start(f);
        return 0;
    }
    fetch__job_begin_hop(j);
    return 0;
}

void fetch_cancel(fetch_job_t *job)
{
    fetch_t *f = job->f;
    fetch__job_unlink(job);
    f->dispatching++;
    job_free(job);
    f->dispatching--;
    fetch__dispatch_end(f);
}
