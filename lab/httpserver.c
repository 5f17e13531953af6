/* httpserver.c - libmicrohttpd-based loopback HTTP server with a mutable route table;
 * slow routes sleep in short steps and watch a stop flag so shutdown never hangs. */
#include "lab/httpserver.h"

#include "probes/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define LAB_HTTP_STEP_MS 20
#define LAB_HTTP_TRICKLE_MS 500
#define LAB_HTTP_ENDLESS_BLOCK 4096

enum { ROUTE_NONE = -1, ROUTE_STATIC = -2, ROUTE_HANDLER = -3 }; /* else a lab_http_special_t */
#define LAB_HTTP_MAX_REQUEST_BODY (64 * 1024)

typedef struct route_s {
    struct route_s *next;
    char *path;
    int kind; /* ROUTE_NONE (404, only counted), ROUTE_STATIC or lab_http_special_t */
    int status;
    unsigned char *body;
    size_t len;
    char *content_type;
    unsigned delay_ms;
    unsigned hits;
    char *proxy_auth;      /* Proxy-Authorization of the last request, or NULL */
    lab_http_handler_t fn; /* ROUTE_HANDLER: every path under this one */
    void *arg;
} route_t;

/* A handler's argument, kept until stop. */
typedef struct handler_arg_s {
    struct handler_arg_s *next;
    void *arg;
    void (*free_arg)(void *arg);
} handler_arg_t;

/* Per request: the body read so far. */
typedef struct req_state_s {
    unsigned char *body;
    size_t len;
    int too_big;
} req_state_t;

struct lab_http_s {
    struct MHD_Daemon *daemon;
    int port;
    atomic_int stopping;
    pthread_mutex_t mu;
    route_t *routes;
    handler_arg_t *handler_args;
};

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Sleeps up to ms in short steps; returns -1 as soon as the server is stopping. */
static int nap(lab_http_t *h, unsigned ms)
{
    for (unsigned slept = 0; slept < ms; slept += LAB_HTTP_STEP_MS) {
        if (atomic_load(&h->stopping))
            return -1;
        sleep_ms(ms - slept < LAB_HTTP_STEP_MS ? ms - slept : LAB_HTTP_STEP_MS);
    }
    return atomic_load(&h->stopping) ? -1 : 0;
}

/* Caller holds h->mu. The handler route whose prefix path starts with, or NULL. */
static route_t *route_handler(lab_http_t *h, const char *path)
{
    for (route_t *r = h->routes; r != NULL; r = r->next)
        if (r->kind == ROUTE_HANDLER && strncmp(path, r->path, strlen(r->path)) == 0)
            return r;
    return NULL;
}

/* Caller holds h->mu. The route serving path: an exact one that serves something, else a
 * handler whose prefix matches, else the exact (404) one, created if needed. */
static route_t *route_for(lab_http_t *h, const char *path)
{
    route_t *r;
    for (r = h->routes; r != NULL; r = r->next)
        if (strcmp(r->path, path) == 0 && r->kind != ROUTE_NONE)
            return r;
    route_t *hr = route_handler(h, path);
    return hr ? hr : NULL;
}

/* Caller holds h->mu. Finds or creates the route for path. */
static route_t *route_get(lab_http_t *h, const char *path)
{
    route_t *r;
    for (r = h->routes; r != NULL; r = r->next)
        if (strcmp(r->path, path) == 0)
            return r;
    r = fs_xcalloc(1, sizeof(*r));
    r->path = fs_xstrdup(path);
    r->kind = ROUTE_NONE;
    r->next = h->routes;
    h->routes = r;
    return r;
}

static void route_clear(route_t *r)
{
    free(r->body);
    free(r->content_type);
    r->body = NULL;
    r->content_type = NULL;
    r->len = 0;
}

static ssize_t endless_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    lab_http_t *h = cls;
    if (atomic_load(&h->stopping))
        return MHD_CONTENT_READER_END_WITH_ERROR;
    memset(buf, 'x', max);
    return (ssize_t)max;
}

static ssize_t trickle_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    lab_http_t *h = cls;
    if (nap(h, LAB_HTTP_TRICKLE_MS) != 0 || max == 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    buf[0] = 'x';
    return 1;
}

/* 1 when the client closed or reset connection fd (nothing of it is left to read). */
static int client_left(int fd)
{
    char c;
    ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Stalls until stop or until the client leaves (so a stalled connection is not kept open past
 * its client: tests count descriptors). */
static void stall(lab_http_t *h, int fd)
{
    while (nap(h, 100) == 0 && !client_left(fd))
        ;
}

static int conn_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci != NULL ? ci->connect_fd : -1;
}

/* HUGE_LENGTH and PARTIAL_STALL: so many bytes, then nothing until the client leaves. */
#define LAB_HTTP_HUGE_SENT (64 * 1024)
#define LAB_HTTP_PARTIAL_SENT (256 * 1024)

typedef struct stall_ctx_s {
    lab_http_t *h;
    int fd;
    uint64_t upto;
} stall_ctx_t;

static ssize_t then_stall_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    stall_ctx_t *sc = cls;
    if (pos >= sc->upto) {
        stall(sc->h, sc->fd);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t n = sc->upto - pos < max ? (size_t)(sc->upto - pos) : max;
    memset(buf, 'x', n);
    return (ssize_t)n;
}

#define LAB_HTTP_SLOW_SIZE (512 * 1024)
#define LAB_HTTP_SLOW_BLOCK (16 * 1024)
#define LAB_HTTP_SLOW_MS 10

static ssize_t slow_cb(void *cls, uint64_t pos, char *buf, size_t max)
{
    if (pos > 0 && nap(cls, LAB_HTTP_SLOW_MS) != 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = LAB_HTTP_SLOW_SIZE - pos < max ? (size_t)(LAB_HTTP_SLOW_SIZE - pos) : max;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + (pos + i) % 26);
    return (ssize_t)n;
}

static enum MHD_Result queue_simple(struct MHD_Connection *c, int status, const void *body,
                                    size_t len, const char *ctype)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    if (ctype != NULL)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    lab_http_t *h = cls;
    /* First call: headers only. Count the request once, answer on the next call. */
    if (*con_cls == NULL) {
        const char *pa = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Proxy-Authorization");
        pthread_mutex_lock(&h->mu);
        route_t *r = route_for(h, url);
        if (r == NULL)
            r = route_get(h, url);
        r->hits++;
        free(r->proxy_auth);
        r->proxy_auth = pa ? fs_xstrdup(pa) : NULL;
        pthread_mutex_unlock(&h->mu);
        *con_cls = fs_xcalloc(1, sizeof(req_state_t));
        return MHD_YES;
    }
    req_state_t *rs = *con_cls;
    if (*upload_data_size != 0) { /* kept for handlers, up to a cap */
        size_t n = *upload_data_size;
        if (rs->len + n > LAB_HTTP_MAX_REQUEST_BODY) {
            rs->too_big = 1;
        } else {
            rs->body = fs_xrealloc(rs->body, rs->len + n);
            memcpy(rs->body + rs->len, upload_data, n);
            rs->len += n;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }

    pthread_mutex_lock(&h->mu);
    route_t *r = route_for(h, url);
    if (r == NULL)
        r = route_get(h, url);
    int kind = r->kind, status = r->status;
    lab_http_handler_t fn = r->fn;
    void *fn_arg = r->arg;
    unsigned delay = r->delay_ms;
    size_t len = r->len;
    unsigned char *body = NULL;
    char *ctype = r->content_type ? fs_xstrdup(r->content_type) : NULL;
    if (kind == ROUTE_STATIC && len > 0) {
        body = fs_xmalloc(len);
        memcpy(body, r->body, len);
    }
    pthread_mutex_unlock(&h->mu);

    enum MHD_Result ret = MHD_NO;
    struct MHD_Response *resp;
    switch (kind) {
    case ROUTE_NONE:
        ret = queue_simple(c, MHD_HTTP_NOT_FOUND, "not found\n", 10, "text/plain");
        break;
    case ROUTE_STATIC:
        if (delay > 0 && nap(h, delay) != 0)
            break;
        ret = queue_simple(c, status, body, len, ctype);
        break;
    case ROUTE_HANDLER: {
        lab_http_reply_t out = {0};
        if (rs->too_big) {
            ret = queue_simple(c, 413, "request body too large\n", 23, "text/plain");
            break;
        }
        fn(fn_arg, method, url, rs->body, rs->len, &out);
        if ((delay + out.delay_ms == 0 || nap(h, delay + out.delay_ms) == 0))
            ret =
                queue_simple(c, out.status ? out.status : 500, out.body, out.len, out.content_type);
        free(out.body);
        break;
    }
    case LAB_HTTP_ENDLESS:
    case LAB_HTTP_TRICKLE:
        resp = MHD_create_response_from_callback(
            MHD_SIZE_UNKNOWN, kind == LAB_HTTP_ENDLESS ? LAB_HTTP_ENDLESS_BLOCK : 1,
            kind == LAB_HTTP_ENDLESS ? endless_cb : trickle_cb, h, NULL);
        if (resp == NULL)
            break;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        break;
    case LAB_HTTP_REDIRECT_LOOP:
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (resp == NULL)
            break;
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, url);
        ret = MHD_queue_response(c, MHD_HTTP_FOUND, resp);
        MHD_destroy_response(resp);
        break;
    case LAB_HTTP_SLOW_BODY:
        resp = MHD_create_response_from_callback(LAB_HTTP_SLOW_SIZE, LAB_HTTP_SLOW_BLOCK, slow_cb,
                                                 h, NULL);
        if (resp == NULL)
            break;
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        break;
    case LAB_HTTP_HUGE_LENGTH:
    case LAB_HTTP_PARTIAL_STALL: {
        stall_ctx_t *sc = fs_xcalloc(1, sizeof(*sc));
        sc->h = h;
        sc->fd = conn_fd(c);
        sc->upto = kind == LAB_HTTP_HUGE_LENGTH ? LAB_HTTP_HUGE_SENT : LAB_HTTP_PARTIAL_SENT;
        resp = MHD_create_response_from_callback(
            kind == LAB_HTTP_HUGE_LENGTH ? (uint64_t)2147483648u : MHD_SIZE_UNKNOWN,
            LAB_HTTP_ENDLESS_BLOCK, then_stall_cb, sc, free);
        if (resp == NULL) {
            free(sc);
            break;
        }
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        break;
    }
    case LAB_HTTP_STALL:
        /* Holding the handler keeps headers unsent; this connection has its own thread. */
        stall(h, conn_fd(c));
        break;
    case LAB_HTTP_RESET:
    default:
        break; /* MHD_NO: MHD drops the connection without a response */
    }
    free(body);
    free(ctype);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    req_state_t *rs = *con_cls;
    if (rs != NULL) {
        free(rs->body);
        free(rs);
        *con_cls = NULL;
    }
}

lab_http_t *lab_http_start(char err[256])
{
    lab_http_t *h = fs_xcalloc(1, sizeof(*h));
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *info;
    sigset_t all, old;

    pthread_mutex_init(&h->mu, NULL);
    atomic_init(&h->stopping, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    /* MHD's threads inherit a fully blocked mask: signals stay with the embedding process. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    h->daemon =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL,
                         NULL, handle, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (h->daemon == NULL) {
        snprintf(err, 256, "lab http: MHD_start_daemon failed on 127.0.0.1");
        goto fail;
    }
    info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    if (info == NULL || info->port == 0) {
        snprintf(err, 256, "lab http: cannot read the bound port");
        goto fail;
    }
    h->port = info->port;
    return h;

fail:
    lab_http_stop(h);
    return NULL;
}

int lab_http_port(const lab_http_t *h)
{
    return h->port;
}

void lab_http_stop(lab_http_t *h)
{
    if (h == NULL)
        return;
    atomic_store(&h->stopping, 1);
    if (h->daemon != NULL)
        MHD_stop_daemon(h->daemon);
    while (h->routes != NULL) {
        route_t *r = h->routes;
        h->routes = r->next;
        route_clear(r);
        free(r->proxy_auth);
        free(r->path);
        free(r);
    }
    while (h->handler_args != NULL) {
        handler_arg_t *a = h->handler_args;
        h->handler_args = a->next;
        if (a->free_arg)
            a->free_arg(a->arg);
        free(a);
    }
    pthread_mutex_destroy(&h->mu);
    free(h);
}

void lab_http_set(lab_http_t *h, const char *path, int status, const void *body, size_t len,
                  const char *content_type)
{
    pthread_mutex_lock(&h->mu);
    route_t *r = route_get(h, path);
    route_clear(r);
    r->kind = ROUTE_STATIC;
    r->status = status;
    if (len > 0) {
        r->body = fs_xmalloc(len);
        memcpy(r->body, body, len);
    }
    r->len = len;
    r->content_type = content_type ? fs_xstrdup(content_type) : NULL;
    pthread_mutex_unlock(&h->mu);
}

void lab_http_set_handler(lab_http_t *h, const char *prefix, lab_http_handler_t fn, void *arg,
                          void (*free_arg)(void *arg))
{
    handler_arg_t *a = fs_xcalloc(1, sizeof(*a));
    a->arg = arg;
    a->free_arg = free_arg;
    pthread_mutex_lock(&h->mu);
    a->next = h->handler_args;
    h->handler_args = a;
    route_t *r = route_get(h, prefix);
    route_clear(r);
    r->kind = ROUTE_HANDLER;
    r->fn = fn;
    r->arg = arg;
    pthread_mutex_unlock(&h->mu);
}

void lab_http_set_special(lab_http_t *h, const char *path, lab_http_special_t kind)
{
    pthread_mutex_lock(&h->mu);
    route_t *r = route_get(h, path);
    route_clear(r);
    r->kind = (int)kind;
    pthread_mutex_unlock(&h->mu);
}

void lab_http_set_delay_ms(lab_http_t *h, const char *path, unsigned ms)
{
    pthread_mutex_lock(&h->mu);
    route_get(h, path)->delay_ms = ms;
    pthread_mutex_unlock(&h->mu);
}

unsigned lab_http_hits(lab_http_t *h, const char *path)
{
    pthread_mutex_lock(&h->mu);
    unsigned n = 0;
    for (route_t *r = h->routes; r != NULL; r = r->next)
        if (strcmp(r->path, path) == 0)
            n = r->hits;
    pthread_mutex_unlock(&h->mu);
    return n;
}

int lab_http_proxy_auth(lab_http_t *h, const char *path, char *out, size_t n)
{
    int found = 0;
    pthread_mutex_lock(&h->mu);
    for (route_t *r = h->routes; r != NULL; r = r->next) {
        if (strcmp(r->path, path) == 0 && r->proxy_auth != NULL) {
            snprintf(out, n, "%s", r->proxy_auth);
            found = 1;
        }
    }
    pthread_mutex_unlock(&h->mu);
    if (!found && n > 0)
        out[0] = '\0';
    return found;
}
