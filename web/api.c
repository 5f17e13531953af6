/* api.c - HTTP routing, authentication and body handling over libmicrohttpd's own thread pool
 * (the route handlers are in web/handlers.c).
 * Handlers only read the current immutable snapshot (a reference taken under a mutex), so the
 * event loop never waits for a client and a slow client never waits for the loop. */
#include "web/api_int.h"

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <uv.h>

#include "probes/util.h"
#include "web/dashboard.h"
#include "web/render.h"

/* The clock of the heartbeat (api_opts_t.heartbeat_ms) and of the snapshot age. */
int64_t api__mono_ms(void)
{
    return (int64_t)(uv_hrtime() / 1000000);
}

/* ---- responses ------------------------------------------------------------------------- */

enum MHD_Result api__queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r,
                           const char *ctype, const char *hname, const char *hvalue)
{
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (hname != NULL)
        MHD_add_response_header(r, hname, hvalue);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result api__reply_static(struct MHD_Connection *c, unsigned status, const char *body,
                                  const char *ctype)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    return api__queue(c, status, r, ctype, NULL, NULL);
}

/* {"error": msg, "code": code} with an optional extra header (Allow, WWW-Authenticate). */
enum MHD_Result api__reply_error_h(struct MHD_Connection *c, unsigned status, const char *msg,
                                   const char *code, const char *hname, const char *hvalue)
{
    wbuf_t b;
    size_t len = 0;
    wbuf_init(&b, 256, API_ERROR_MAX);
    render_error(msg, code, &b);
    char *body = wbuf_steal(&b, &len);
    struct MHD_Response *r;
    if (body != NULL) {
        r = MHD_create_response_from_buffer_with_free_callback(len, body, free);
        if (r == NULL)
            free(body);
    } else {
        static const char fallback[] = "{\"error\":\"internal error\",\"code\":\"internal\"}";
        r = MHD_create_response_from_buffer(sizeof(fallback) - 1, (void *)fallback,
                                            MHD_RESPMEM_PERSISTENT);
    }
    return api__queue(c, status, r, CT_JSON, hname, hvalue);
}

enum MHD_Result api__reply_error(struct MHD_Connection *c, unsigned status, const char *msg,
                                 const char *code)
{
    return api__reply_error_h(c, status, msg, code, NULL, NULL);
}

/* Sends what was rendered into b (freeing it), or a 500 when rendering failed. */
enum MHD_Result api__reply_rendered(struct MHD_Connection *c, unsigned status, wbuf_t *b, int rc,
                                    const char *ctype)
{
    size_t len = 0;
    char *body = rc == 0 ? wbuf_steal(b, &len) : NULL;
    wbuf_free(b);
    if (body == NULL)
        return api__reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "response too large to render",
                                "internal");
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, body, free);
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    return api__queue(c, status, r, ctype, NULL, NULL);
}

/* A hook's malloc'd JSON document and status. */
enum MHD_Result api__reply_hook(struct MHD_Connection *c, int rc, char *json, int status)
{
    if (rc != 0 || json == NULL || status < 200 || status > 599) {
        free(json);
        return api__reply_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "request failed", "internal");
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback(strlen(json), json, free);
    if (r == NULL) {
        free(json);
        return MHD_NO;
    }
    return api__queue(c, (unsigned)status, r, CT_JSON, NULL, NULL);
}

/* Error messages quote the offending value, cut short: it comes from the client. */
enum MHD_Result api__reply_bad_param(struct MHD_Connection *c, const char *name, const char *expect,
                                     const char *value)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "%s: expected %s, got \"%.64s\"", name, expect, value);
    return api__reply_error(c, MHD_HTTP_BAD_REQUEST, msg, "bad_parameter");
}

/* ---- api__query parameters ------------------------------------------------------------------ */

/* Strict unsigned decimal: digits only, no sign, no blanks, <= max. 0 or -1. */
int api__parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = (unsigned long)v;
    return 0;
}

const char *api__query(struct MHD_Connection *c, const char *name)
{
    return MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
}

/* libmicrohttpd's unescaping with one difference: "%00" stays literal, so a NUL can never cut
 * a path or a parameter short ("/api/v1/status%00x" is a 404, not /api/v1/status). */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    static const char hexd[] = "0123456789abcdef0123456789ABCDEF";
    char *w = s;
    const char *r = s;
    while (*r != '\0') {
        const char *h = r[0] == '%' && r[1] != '\0' ? strchr(hexd, r[1]) : NULL;
        const char *l = h != NULL && r[2] != '\0' ? strchr(hexd, r[2]) : NULL;
        if (l != NULL) {
            int v = ((int)(h - hexd) & 15) << 4 | ((int)(l - hexd) & 15);
            if (v != 0) {
                *w++ = (char)v;
                r += 3;
                continue;
            }
        }
        *w++ = *r++;
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* ---- routing and authentication -------------------------------------------------------- */

static unsigned method_bit(const char *m)
{
    if (strcmp(m, MHD_HTTP_METHOD_GET) == 0 || strcmp(m, MHD_HTTP_METHOD_HEAD) == 0)
        return M_GET;
    if (strcmp(m, MHD_HTTP_METHOD_POST) == 0)
        return M_POST;
    return 0;
}

/* Checks the bearer token of a mutating call. Returns 1 when the call may proceed, else 0 with
 * the 403/401 answer queued in *ret. */
static int authorized(api_t *a, struct MHD_Connection *c, enum MHD_Result *ret)
{
    if (a->token == NULL) {
        *ret = api__reply_error(c, MHD_HTTP_FORBIDDEN,
                                "mutating calls are disabled: no API token is configured",
                                "forbidden");
        return 0;
    }
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *tok = NULL;
    if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0) {
        tok = h + 7;
        while (*tok == ' ')
            tok++;
    }
    /* The length is not secret; the bytes are compared in constant time. */
    if (tok != NULL && strlen(tok) == a->token_len &&
        CRYPTO_memcmp(tok, a->token, a->token_len) == 0)
        return 1;
    *ret = api__reply_error_h(
        c, MHD_HTTP_UNAUTHORIZED, h == NULL ? "missing bearer token" : "invalid bearer token",
        "unauthorized", MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"fleetscan\"");
    return 0;
}

/* ---- the route table ------------------------------------------------------------------- */

/* One row per route; on_request has no route of its own: it matches the path, then the table
 * decides the method (405 with Allow), the token (403/401), whether the body is kept (413 past
 * API_BODY_MAX either way), whether the api__current snapshot is needed (503 before the first), and
 * calls the handler. */
struct route_s {
    const char *path; /* exact, or a prefix when prefix is set: the rest is the handler's arg */
    int prefix;
    unsigned methods; /* M_GET (GET and HEAD), M_POST */
    int mutating;     /* needs the bearer token */
    int snapshot;     /* the handler reads the api__current snapshot */
    int keeps_body;   /* the handler reads the request body */
    enum MHD_Result (*handler)(api_t *a, struct MHD_Connection *c, req_t *rq, const char *arg,
                               snap_t *s);
};

static const route_t routes[] = {
    {.path = "/", .methods = M_GET, .handler = api__answer_dashboard},
    {.path = "/healthz", .methods = M_GET, .handler = api__answer_healthz},
    {.path = "/api/v1/status", .methods = M_GET, .snapshot = 1, .handler = api__answer_status},
    {.path = "/api/v1/endpoints",
     .methods = M_GET,
     .snapshot = 1,
     .handler = api__answer_endpoints},
    {.path = "/api/v1/endpoints/",
     .prefix = 1,
     .methods = M_GET,
     .snapshot = 1,
     .handler = api__answer_endpoint},
    {.path = "/api/v1/targets", .methods = M_GET, .snapshot = 1, .handler = api__answer_targets},
    {.path = "/api/v1/causes", .methods = M_GET, .handler = api__answer_causes},
    /* not a snapshot route: it checks days and its hook first, then takes the snapshot */
    {.path = "/api/v1/forecast", .methods = M_GET, .handler = api__answer_forecast},
    {.path = "/api/v1/events", .methods = M_GET, .snapshot = 1, .handler = api__answer_events},
    {.path = "/api/v1/history", .methods = M_GET, .handler = api__answer_history},
    {.path = "/metrics", .methods = M_GET, .snapshot = 1, .handler = api__answer_metrics},
    {.path = "/api/v1/scan", .methods = M_POST, .mutating = 1, .handler = api__answer_scan},
    {.path = "/api/v1/preflight",
     .methods = M_POST,
     .mutating = 1,
     .keeps_body = 1,
     .handler = api__answer_preflight},
};

static const route_t *match_route(const char *url)
{
    for (size_t i = 0; i < FS_ARRAY_SIZE(routes); i++) {
        const route_t *r = &routes[i];
        if (r->prefix ? strncmp(url, r->path, strlen(r->path)) == 0 : strcmp(url, r->path) == 0)
            return r;
    }
    return NULL;
}

static const char *allowed_methods(unsigned methods)
{
    switch (methods) {
    case M_GET:
        return "GET, HEAD";
    case M_POST:
        return "POST";
    default:
        return "GET, HEAD, POST";
    }
}

/* Appends one chunk of the body: kept for preflight, counted for the rest. */
static int take_body(req_t *rq, const char *data, size_t n)
{
    if (!rq->too_large && n <= API_BODY_MAX - rq->len) {
        if (rq->route == NULL || !rq->route->keeps_body) {
            rq->len += n;
            return 0;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t cap = rq->cap ? rq->cap : 16384;
            while (cap < rq->len + n + 1)
                cap *= 2;
            char *p = realloc(rq->body, cap); /* peer-sized: fail cleanly, never abort */
            if (p == NULL)
                return -1;
            rq->body = p;
            rq->cap = cap;
        }
        memcpy(rq->body + rq->len, data, n);
        rq->len += n;
        rq->body[rq->len] = '\0';
        return 0;
    }
    rq->too_large = 1;
    rq->discarded += n;
    return rq->discarded > API_DISCARD_MAX ? -1 : 0;
}

/* Route, method and token of a request. Returns 1 when it may proceed, else 0 with the
 * 404/405/403/401 answer queued in *ret. */
static int admitted(api_t *a, struct MHD_Connection *c, const req_t *rq, enum MHD_Result *ret)
{
    if (rq->route == NULL) {
        *ret = api__reply_error(c, MHD_HTTP_NOT_FOUND, "no such route", "not_found");
        return 0;
    }
    if ((rq->route->methods & rq->method) == 0) {
        *ret = api__reply_error_h(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
                                  "method_not_allowed", MHD_HTTP_HEADER_ALLOW,
                                  allowed_methods(rq->route->methods));
        return 0;
    }
    return !rq->route->mutating || authorized(a, c, ret);
}

/* Runs on the raw request target, before libmicrohttpd splits the api__query into its connection
 * memory pool: thousands of parameters exhaust the pool, and libmicrohttpd 0.9.75 then neither
 * answers nor closes (the 431 it queues is overwritten) until the idle timeout. A target past
 * API_URI_MAX or with more than API_QUERY_ARGS_MAX parameters gets its api__query cut here (the
 * byte after '?' becomes NUL, so no parameter is parsed) and a JSON 414 from on_request.
 * The returned request state becomes *req_cls. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    req_t *rq = calloc(1, sizeof(*rq));
    if (rq == NULL)
        return NULL; /* on_request allocates it */
    size_t len = strlen(uri), args = 0;
    char *q = strchr(uri, '?');
    if (q != NULL && q[1] != '\0')
        for (const char *p = q; p != NULL; p = strchr(p + 1, '&'))
            args++;
    if (len > API_URI_MAX)
        rq->uri_error = "request target longer than " FS_STR(API_URI_MAX) " bytes";
    else if (args > API_QUERY_ARGS_MAX)
        rq->uri_error = "more than " FS_STR(API_QUERY_ARGS_MAX) " api__query parameters";
    if (rq->uri_error != NULL && q != NULL)
        q[1] = '\0'; /* the target lives in the connection's read buffer, writable */
    return rq;
}

/* The first call of a request: its head is in, the body (if any) follows. Returns 1 when the
 * request proceeds (MHD_YES, nothing queued yet), else 0 with the answer (or MHD_NO) in *ret. */
static int on_head(api_t *a, struct MHD_Connection *c, req_t *rq, const char *url,
                   const char *method, enum MHD_Result *ret)
{
    rq->started = 1;
    if (conn_guard_head_done(c) != 0) { /* timed out or evicted meanwhile */
        *ret = MHD_NO;
        return 0;
    }
    if (rq->uri_error != NULL) {
        *ret = api__reply_error(c, MHD_HTTP_URI_TOO_LONG, rq->uri_error, "uri_too_long");
        return 0;
    }
    /* A head past API_CONN_MEMORY never gets here (libmicrohttpd answers its own 431); this
     * catches everything between our limit and that one, in JSON. */
    const union MHD_ConnectionInfo *hi =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if ((hi != NULL && hi->header_size > API_HEADER_MAX) ||
        MHD_get_connection_values(c, MHD_HEADER_KIND, NULL, NULL) > API_HEADER_FIELDS_MAX) {
        *ret = api__reply_error_h(
            c, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head (request line and headers) over " FS_STR(
                API_HEADER_MAX) " bytes or " FS_STR(API_HEADER_FIELDS_MAX) " header fields",
            "header_too_large", MHD_HTTP_HEADER_CONNECTION, "close");
        return 0;
    }
    rq->route = match_route(url);
    rq->method = method_bit(method);
    if (conn_guard_reserved(c) &&
        (rq->route == NULL || rq->route->handler != api__answer_healthz)) {
        conn_guard_count(CONN_GUARD_RESERVE_MISUSE);
        *ret = api__reply_error_h(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                                  "the API is at its connection limit: only /healthz is answered "
                                  "on this connection, retry later",
                                  "too_many_connections", MHD_HTTP_HEADER_CONNECTION, "close");
        return 0;
    }
    /* GET and HEAD are answered on the last call: an answer queued on the first one makes
     * libmicrohttpd close the keep-alive connection. Anything else may carry a body, so it
     * is judged now and a refused body is never read. */
    if (rq->method == M_GET)
        return 1;
    if (!admitted(a, c, rq, ret))
        return 0;
    rq->admitted = 1;
    unsigned long clen;
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL && (api__parse_uint(cl, ULONG_MAX, &clen) != 0 || clen > API_BODY_MAX)) {
        *ret = api__reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body exceeds 1 MiB",
                                "body_too_large");
        return 0;
    }
    return 1;
}

/* The last call: the body is in; the route answers. */
static enum MHD_Result answer(api_t *a, struct MHD_Connection *c, req_t *rq, const char *url)
{
    enum MHD_Result ret;
    if (rq->too_large)
        return api__reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body exceeds 1 MiB",
                                "body_too_large");
    if (!rq->admitted && !admitted(a, c, rq, &ret))
        return ret;
    rq->admitted = 1;
    snap_t *s = NULL;
    if (rq->route->snapshot && (s = api__current(a)) == NULL)
        return api__reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "no snapshot published yet",
                                "not_ready");
    ret = rq->route->handler(a, c, rq, url + strlen(rq->route->path), s);
    snap_unref(s);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    api_t *a = cls;
    req_t *rq = *req_cls;
    enum MHD_Result ret;

    if (rq == NULL || !rq->started) {
        if (rq == NULL && (rq = calloc(1, sizeof(*rq))) == NULL)
            return MHD_NO;
        *req_cls = rq;
        if (on_head(a, c, rq, url, method, &ret))
            return MHD_YES;
        conn_guard_answered(c, 0);
        return ret;
    }
    if (*upload_size > 0) {
        int rc = take_body(rq, upload, *upload_size);
        *upload_size = 0;
        if (rc == 0)
            return MHD_YES;
        /* libmicrohttpd cannot queue an answer while a body is being read: written directly,
         * then the connection is dropped. */
        if (rq->too_large)
            conn_guard_reply_raw(c, MHD_HTTP_CONTENT_TOO_LARGE,
                                 "request body exceeds 1 MiB (connection dropped: the client kept "
                                 "sending)",
                                 "body_too_large");
        return MHD_NO;
    }
    if (conn_guard_handling(c) != 0) /* its body came too late: answered 408 already */
        return MHD_NO;
    ret = answer(a, c, rq, url);
    conn_guard_answered(c, rq->pf_state == PF_QUEUED);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    req_t *rq = *req_cls;
    if (rq != NULL) {
        free(rq->body);
        free(rq->pf_json);
        free(rq);
        *req_cls = NULL;
    }
    conn_guard_completed(c);
}

/* ---- lifecycle ------------------------------------------------------------------------- */

/* "host:port" or "[v6]:port" into a bound, listening, non-blocking socket. */
static int open_listener(const char *listen_s, int *fd_out, int *port_out, char err[256])
{
    char host[256];
    const char *port_s;
    struct addrinfo hints, *ai = NULL;
    unsigned long port;
    int fd = -1, rc, on = 1;

    if (listen_s[0] == '[') {
        const char *close = strchr(listen_s, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - listen_s) > sizeof(host)) {
            snprintf(err, 256, "listen \"%.64s\": expected [ADDRESS]:PORT", listen_s);
            return UV_EINVAL;
        }
        memcpy(host, listen_s + 1, (size_t)(close - listen_s - 1));
        host[close - listen_s - 1] = '\0';
        port_s = close + 2;
    } else {
        const char *colon = strrchr(listen_s, ':');
        if (colon == NULL || colon == listen_s || memchr(listen_s, ':', colon - listen_s) ||
            (size_t)(colon - listen_s) >= sizeof(host)) {
            snprintf(err, 256, "listen \"%.64s\": expected HOST:PORT (IPv6 as [ADDRESS]:PORT)",
                     listen_s);
            return UV_EINVAL;
        }
        memcpy(host, listen_s, (size_t)(colon - listen_s));
        host[colon - listen_s] = '\0';
        port_s = colon + 1;
    }
    if (api__parse_uint(port_s, 65535, &port) != 0) {
        snprintf(err, 256, "listen \"%.64s\": port must be 0..65535", listen_s);
        return UV_EINVAL;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if ((rc = getaddrinfo(host, port_s, &hints, &ai)) != 0) {
        snprintf(err, 256, "listen \"%.64s\": %s", listen_s, gai_strerror(rc));
        return UV_EINVAL;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        rc = -errno;
        snprintf(err, 256, "listen \"%.64s\": %s", listen_s, strerror(errno));
        goto out;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        rc = -errno;
        snprintf(err, 256, "listen \"%.64s\": getsockname: %s", listen_s, strerror(errno));
        goto out;
    }
    *port_out = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                         : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    fd = -1;
    rc = 0;
out:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return rc;
}

int api_start(api_t **out, const api_opts_t *o, char err[256])
{
    api_t *a = fs_xcalloc(1, sizeof(*a));
    wbuf_t b;
    int fd = -1, rc;

    err[0] = '\0';
    pthread_mutex_init(&a->mu, NULL);
    pthread_mutex_init(&a->pf_mu, NULL);
    pthread_cond_init(&a->pf_cv, NULL);
    pthread_mutex_init(&a->fc_mu, NULL);
    pthread_cond_init(&a->fc_cv, NULL);
    a->stale_after_s = o->stale_after_s > 0 ? o->stale_after_s : API_DEFAULT_STALE_S;
    a->heartbeat_ms = o->heartbeat_ms;
    a->stall_after_ms = o->stall_after_ms > 0 ? o->stall_after_ms : API_DEFAULT_STALL_MS;
    if (o->token != NULL && o->token[0] != '\0') {
        a->token = fs_xstrdup(o->token);
        a->token_len = strlen(a->token);
    }
    a->arg = o->arg;
    a->on_scan = o->on_scan;
    a->on_post_preflight = o->on_post_preflight;
    a->on_forecast = o->on_forecast;
    a->on_history = o->on_history;
    atomic_init(&a->published_ms, api__mono_ms());

    wbuf_init(&b, 16384, API_RENDER_MAX);
    render_causes(&b);
    a->causes_json = wbuf_steal(&b, &a->causes_len);
    if (a->causes_json == NULL) {
        snprintf(err, 256, "api: out of memory");
        rc = UV_ENOMEM;
        goto fail;
    }

    int lfd = -1;
    rc = open_listener(o->listen != NULL ? o->listen : API_DEFAULT_LISTEN, &lfd, &a->port, err);
    if (rc != 0)
        goto fail;
    /* MHD gets a duplicate: api_stop takes it back with MHD_quiesce_daemon and closes it, and
     * a failed start can never make us close a descriptor twice. */
    fd = dup(lfd);
    close(lfd);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, 256, "api: dup: %s", strerror(errno));
        goto fail;
    }
    /* One thread per CPU, 2 to API_DEFAULT_THREADS: threads beyond the cores only queue
     * requests behind each other's time slices (/status p99 under wrk -c16 on 2 cores while
     * probing: 7.9 ms with 4 threads, 0.9 ms with 2; docs/PERFORMANCE.md). */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned threads = o->threads > 0               ? (unsigned)o->threads
                       : ncpu < 2                   ? 2
                       : ncpu > API_DEFAULT_THREADS ? API_DEFAULT_THREADS
                                                    : (unsigned)ncpu;
    unsigned idle = o->idle_timeout_s > 0 ? (unsigned)o->idle_timeout_s : API_DEFAULT_IDLE_S;
    conn_guard_limits_t gl = {
        .max_connections = o->max_connections > 0 ? (unsigned)o->max_connections : 0,
        .max_per_ip = o->max_connections_per_ip > 0 ? (unsigned)o->max_connections_per_ip : 0,
        .reserve = o->health_reserve > 0   ? (unsigned)o->health_reserve
                   : o->health_reserve < 0 ? 0
                                           : API_DEFAULT_HEALTH_RESERVE,
        .header_timeout_ms = o->header_timeout_s > 0 ? (unsigned)o->header_timeout_s * 1000 : 0,
        .body_timeout_ms = o->body_timeout_s > 0 ? (unsigned)o->body_timeout_s * 1000 : 0,
        .send_timeout_ms = o->send_timeout_s > 0 ? (unsigned)o->send_timeout_s * 1000 : 0,
        .idle_timeout_ms = idle * 1000};
    if ((a->guard = conn_guard_new(&gl)) == NULL) {
        close(fd);
        snprintf(err, 256, "api: cannot start the connection watchdog thread");
        rc = UV_EAGAIN;
        goto fail;
    }
    /* No MHD_OPTION_PER_IP_CONNECTION_LIMIT: libmicrohttpd would close the connection at once,
     * /healthz included; the guard evicts that address's own idle connection instead. The
     * connection limit here is the hard one, above the guard's. */
    a->mhd = MHD_start_daemon(
        MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL,
        on_request, a, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_THREAD_POOL_SIZE,
        threads, MHD_OPTION_CONNECTION_TIMEOUT, idle, MHD_OPTION_CONNECTION_LIMIT,
        conn_guard_hard_limit(a->guard), MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)API_CONN_MEMORY, MHD_OPTION_NOTIFY_CONNECTION, conn_guard_notify, a->guard,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, a, MHD_OPTION_URI_LOG_CALLBACK, on_uri, a,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, a, MHD_OPTION_END);
    if (a->mhd == NULL) {
        snprintf(err, 256, "listen \"%.64s\": libmicrohttpd failed to start",
                 o->listen != NULL ? o->listen : API_DEFAULT_LISTEN);
        rc = UV_EIO;
        goto fail; /* fd may or may not have been closed by MHD: leak it rather than guess */
    }
    for (int i = 0; a->on_post_preflight != NULL && i < API_PREFLIGHT_RUNNING; i++) {
        if (pthread_create(&a->pf_threads[i], NULL, api__pf_worker, a) != 0)
            break; /* fewer workers: pre-flights wait longer */
        a->pf_nthreads++;
    }
    if (a->on_post_preflight != NULL && a->pf_nthreads == 0) {
        snprintf(err, 256, "api: cannot start the pre-flight threads");
        MHD_socket lfd2 = MHD_quiesce_daemon(a->mhd);
        MHD_stop_daemon(a->mhd);
        if (lfd2 != MHD_INVALID_SOCKET)
            close(lfd2);
        rc = UV_EAGAIN;
        goto fail;
    }
    *out = a;
    return 0;
fail:
    conn_guard_free(a->guard);
    free(a->causes_json);
    free(a->token);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->pf_mu);
    pthread_cond_destroy(&a->pf_cv);
    pthread_mutex_destroy(&a->fc_mu);
    pthread_cond_destroy(&a->fc_cv);
    free(a);
    *out = NULL;
    return rc;
}

int api_port(const api_t *a)
{
    return a->port;
}

void api_publish(api_t *a, snap_t *s)
{
    fc_memo_t *dead = NULL;
    pthread_mutex_lock(&a->mu);
    snap_t *old = a->cur;
    a->cur = s;
    atomic_store(&a->published_ms, api__mono_ms());
    pthread_mutex_unlock(&a->mu);
    pthread_mutex_lock(&a->fc_mu); /* forecasts of older snapshots are no longer served */
    api__fc_memo_prune(a, s, &dead);
    pthread_mutex_unlock(&a->fc_mu);
    api__fc_memo_free(dead); /* outside the locks: freeing a large snapshot takes a while */
    snap_unref(old);
}

void api_stop(api_t *a)
{
    if (a == NULL)
        return;
    MHD_socket fd = MHD_quiesce_daemon(a->mhd);
    /* Waiting pre-flights are answered 503, running ones finish; libmicrohttpd must not be
     * stopped while a connection is still suspended. */
    pthread_mutex_lock(&a->pf_mu);
    a->pf_stopping = 1;
    req_t *waiting = a->pf_head;
    a->pf_head = a->pf_tail = NULL;
    pthread_cond_broadcast(&a->pf_cv);
    pthread_mutex_unlock(&a->pf_mu);
    while (waiting != NULL) {
        req_t *next = waiting->pf_next;
        api__pf_finish(a, waiting, 0, api__pf_unavailable(), MHD_HTTP_SERVICE_UNAVAILABLE);
        waiting = next;
    }
    for (int i = 0; i < a->pf_nthreads; i++)
        pthread_join(a->pf_threads[i], NULL);
    pthread_mutex_lock(&a->pf_mu);
    while (a->pf_admitted > 0)
        pthread_cond_wait(&a->pf_cv, &a->pf_mu);
    pthread_mutex_unlock(&a->pf_mu);
    MHD_stop_daemon(a->mhd);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    conn_guard_free(a->guard); /* after MHD: every connection is closed and forgotten */
    api__fc_memo_free(a->fc_memo);
    snap_unref(a->cur);
    free(a->causes_json);
    free(a->token);
    pthread_mutex_destroy(&a->mu);
    pthread_mutex_destroy(&a->pf_mu);
    pthread_cond_destroy(&a->pf_cv);
    pthread_mutex_destroy(&a->fc_mu);
    pthread_cond_destroy(&a->fc_cv);
    free(a);
}
