/* tlsserver.c - thread-per-connection scenario servers over blocking sockets with short receive
 * timeouts; each wait re-checks the stop flag and a per-connection deadline. */
#include "lab/tlsserver.h"

#include "lab/pki.h"
#include "probes/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define LAB_TLS_POLL_MS 100
#define LAB_TLS_CONN_DEADLINE_MS 10000 /* a connection never lives longer, but STALL, no_answer */
#define LAB_TLS_REQUEST_MAX (16 * 1024)
#define LAB_TLS_GARBAGE_LEN 4096

const char *const lab_tls_mode_names[LAB_TLS_MODE_COUNT] = {
    "serve", "plain_http",   "stall",           "garbage",      "reset",
    "close", "reset_accept", "endless_headers", "endless_body", "trickle",
};
_Static_assert(FS_ARRAY_SIZE(lab_tls_mode_names) == LAB_TLS_MODE_COUNT, "mode names");

struct lab_tls_s {
    lab_tls_mode_t mode;
    char *status_line;
    char *response; /* verbatim answer, or NULL */
    size_t response_len;
    int no_answer;      /* SERVE: the request is read, never answered */
    SSL_CTX *ctx;       /* SNI binding */
    SSL_CTX *nosni_ctx; /* default binding, or NULL */
    unsigned trickle_ms;
    int fd;
    int port;
    pthread_t acceptor;
    int acceptor_started;
    atomic_int stopping;
    atomic_uint accepts;
    atomic_uint handshakes;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned live; /* connection threads running; guarded by mu */
};

typedef struct conn_s {
    lab_tls_t *srv;
    int fd;
} conn_t;

static int stopping(lab_tls_t *s)
{
    return atomic_load(&s->stopping);
}

/* Waits until fd is readable; returns 1 readable, 0 on stop or when deadline (fs_wall_ms)
 * passes. */
static int wait_readable(lab_tls_t *s, int fd, int64_t deadline)
{
    while (!stopping(s) && fs_wall_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, LAB_TLS_POLL_MS);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return 0;
    }
    return 0;
}

/* Reads what the client sends until it closes, stop or the deadline; never blocks past them. */
static void drain(lab_tls_t *s, int fd, int64_t deadline)
{
    char buf[4096];
    while (wait_readable(s, fd, deadline)) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return;
    }
}

/* Reads the first flight (e.g. a ClientHello): waits for data, then takes whatever follows
 * within a short quiet period. Returns the byte count, 0 when nothing came. */
static size_t read_first_flight(lab_tls_t *s, int fd, char *buf, size_t cap, int64_t deadline)
{
    size_t got = 0;
    if (!wait_readable(s, fd, deadline))
        return 0;
    while (got < cap) {
        ssize_t n = recv(fd, buf + got, cap - got, MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) /* quiet for 50 ms: the flight is complete */
            break;
    }
    return got;
}

static void send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf += n;
        len -= (size_t)n;
    }
}

/* The answer to a request: the verbatim response, else status_line and headers in buf. */
static const char *format_response(const lab_tls_t *s, char *buf, size_t n, size_t *len)
{
    static const char body[] = "fleetscan lab\n";
    if (s->response != NULL) {
        *len = s->response_len;
        return s->response;
    }
    int w = snprintf(buf, n,
                     "%s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     s->status_line, sizeof(body) - 1, body);
    *len = w < 0 ? 0 : (size_t)w < n ? (size_t)w : n - 1;
    return buf;
}

/* Plain HTTP: answers like HTTP.sys/IIS does, 400 to a TLS ClientHello, 200 to a request. */
static void serve_plain(lab_tls_t *s, int fd, int64_t deadline)
{
    static const char bad[] =
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/html; charset=us-ascii"
        "\r\nContent-Length: 40\r\nConnection: close\r\n\r\n"
        "<h1>Bad Request (Invalid Verb)</h1>\r\n\r\n";
    char buf[LAB_TLS_REQUEST_MAX + 1];
    size_t got = 0;
    int is_http = 0;
    while (got < LAB_TLS_REQUEST_MAX && wait_readable(s, fd, deadline)) {
        ssize_t n = recv(fd, buf + got, LAB_TLS_REQUEST_MAX - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        buf[got] = '\0';
        is_http = got >= 4 && (strncmp(buf, "GET ", 4) == 0 || strncmp(buf, "HEAD", 4) == 0 ||
                               strncmp(buf, "POST", 4) == 0 || strncmp(buf, "PUT ", 4) == 0);
        if (!is_http || strstr(buf, "\r\n\r\n") != NULL)
            break;
    }
    if (got == 0)
        return;
    if (is_http) {
        char head[512];
        size_t n;
        const char *resp = format_response(s, head, sizeof(head), &n);
        send_all(fd, resp, n);
    } else {
        send_all(fd, bad, sizeof(bad) - 1);
    }
    shutdown(fd, SHUT_WR);
    drain(s, fd, fs_wall_ms() + 1000);
}

/* Retries an SSL call that failed for want of I/O while neither stop nor deadline hit. */
static int ssl_retry(lab_tls_t *s, SSL *ssl, int ret, int64_t deadline)
{
    int e = SSL_get_error(ssl, ret);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_WANT_READ)
        return wait_readable(s, SSL_get_fd(ssl), deadline);
    return !stopping(s) && fs_wall_ms() < deadline;
}

static void serve_tls(lab_tls_t *s, int fd, int64_t deadline)
{
    SSL *ssl = SSL_new(s->nosni_ctx ? s->nosni_ctx : s->ctx);
    char req[LAB_TLS_REQUEST_MAX + 1], buf[512];
    size_t got = 0;
    int r;

    if (ssl == NULL || !SSL_set_fd(ssl, fd))
        goto out;
    SSL_set_app_data(ssl, s);
    ERR_clear_error();
    while ((r = SSL_accept(ssl)) <= 0)
        if (!ssl_retry(s, ssl, r, deadline))
            goto out;
    atomic_fetch_add(&s->handshakes, 1);

    while (got < LAB_TLS_REQUEST_MAX) {
        ERR_clear_error();
        r = SSL_read(ssl, req + got, (int)(LAB_TLS_REQUEST_MAX - got));
        if (r > 0) {
            got += (size_t)r;
            req[got] = '\0';
            if (strstr(req, "\r\n\r\n") != NULL)
                break;
        } else if (!ssl_retry(s, ssl, r, deadline)) {
            break;
        }
    }
    if (got > 0 && s->no_answer) {
        drain(s, fd, INT64_MAX);
        goto out;
    }
    if (got > 0) {
        size_t len;
        const char *resp = format_response(s, buf, sizeof(buf), &len);
        int off = 0, n = (int)len;
        while (off < n) {
            ERR_clear_error();
            r = SSL_write(ssl, resp + off, n - off);
            if (r > 0)
                off += r;
            else if (!ssl_retry(s, ssl, r, deadline))
                goto out;
        }
    }
    ERR_clear_error();
    SSL_shutdown(ssl);
    shutdown(fd, SHUT_WR);
    drain(s, fd, fs_wall_ms() + 1000);
out:
    SSL_free(ssl);
    ERR_clear_error();
}

/* ENDLESS_HEADERS and ENDLESS_BODY: after the handshake and the request, a head that never ends
 * or a body that never ends, until the client leaves, stop or the deadline. */
static void serve_endless(lab_tls_t *s, int fd, int64_t deadline)
{
    SSL *ssl = SSL_new(s->ctx);
    char req[LAB_TLS_REQUEST_MAX + 1], line[1024];
    size_t got = 0;
    int r;
    if (ssl == NULL || !SSL_set_fd(ssl, fd))
        goto out;
    ERR_clear_error();
    while ((r = SSL_accept(ssl)) <= 0)
        if (!ssl_retry(s, ssl, r, deadline))
            goto out;
    atomic_fetch_add(&s->handshakes, 1);
    while (got < LAB_TLS_REQUEST_MAX && strstr(req, "\r\n\r\n") == NULL) {
        ERR_clear_error();
        r = SSL_read(ssl, req + got, (int)(LAB_TLS_REQUEST_MAX - got));
        if (r > 0)
            req[got += (size_t)r] = '\0';
        else if (!ssl_retry(s, ssl, r, deadline))
            goto out;
    }
    const char *head = s->mode == LAB_TLS_ENDLESS_BODY
                           ? "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
                           : "HTTP/1.1 200 OK\r\n";
    for (unsigned long i = 0; !stopping(s) && fs_wall_ms() < deadline; i++) {
        int n = i == 0 ? snprintf(line, sizeof(line), "%s", head)
                : s->mode == LAB_TLS_ENDLESS_BODY
                    ? (int)(memset(line, 'x', sizeof(line)), sizeof(line))
                    : snprintf(line, sizeof(line), "X-Filler-%lu: %0900lu\r\n", i, i);
        for (int off = 0; off < n;) {
            ERR_clear_error();
            r = SSL_write(ssl, line + off, n - off);
            if (r > 0)
                off += r;
            else if (!ssl_retry(s, ssl, r, deadline))
                goto out; /* the client left */
        }
    }
out:
    SSL_free(ssl);
    ERR_clear_error();
}

/* TRICKLE: the handshake runs over memory BIOs; what the server has to say leaves one byte per
 * trickle_ms, whatever the client sends meanwhile. */
static void serve_trickle(lab_tls_t *s, int fd, int64_t deadline)
{
    SSL *ssl = SSL_new(s->ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    char buf[4096], *pending = NULL;
    size_t npending = 0, sent = 0;
    int64_t next = fs_wall_ms();
    if (ssl == NULL || rb == NULL || wb == NULL) {
        BIO_free(rb);
        BIO_free(wb);
        goto out;
    }
    SSL_set_bio(ssl, rb, wb);
    SSL_set_accept_state(ssl);
    while (!stopping(s) && fs_wall_ms() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20) > 0) {
            ssize_t n = recv(fd, buf, sizeof(buf), 0);
            if (n <= 0)
                break; /* the client gave up */
            BIO_write(rb, buf, (int)n);
        }
        ERR_clear_error();
        SSL_do_handshake(ssl);
        int n;
        while ((n = BIO_read(wb, buf, sizeof(buf))) > 0) {
            pending = fs_xrealloc(pending, npending + (size_t)n);
            memcpy(pending + npending, buf, (size_t)n);
            npending += (size_t)n;
        }
        if (sent < npending && fs_wall_ms() >= next) {
            if (send(fd, pending + sent, 1, MSG_NOSIGNAL) == 1)
                sent++;
            next = fs_wall_ms() + s->trickle_ms;
        }
    }
out:
    free(pending);
    SSL_free(ssl);
    ERR_clear_error();
}

static void *conn_main(void *arg)
{
    conn_t *c = arg;
    lab_tls_t *s = c->srv;
    int fd = c->fd;
    int64_t deadline = fs_wall_ms() + LAB_TLS_CONN_DEADLINE_MS;
    char buf[LAB_TLS_GARBAGE_LEN];
    free(c);

    switch (s->mode) {
    case LAB_TLS_SERVE:
        serve_tls(s, fd, deadline);
        break;
    case LAB_TLS_PLAIN_HTTP:
        serve_plain(s, fd, deadline);
        break;
    case LAB_TLS_ENDLESS_HEADERS:
    case LAB_TLS_ENDLESS_BODY:
        serve_endless(s, fd, deadline);
        break;
    case LAB_TLS_TRICKLE:
        serve_trickle(s, fd, deadline);
        break;
    case LAB_TLS_STALL:
        drain(s, fd, INT64_MAX);
        break;
    case LAB_TLS_GARBAGE:
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = "this is not TLS, just noise.\r\n"[i % 30];
        send_all(fd, buf, sizeof(buf));
        /* Half-close then read the hello away: closing with unread data would send an RST. */
        shutdown(fd, SHUT_WR);
        drain(s, fd, fs_wall_ms() + 2000);
        break;
    case LAB_TLS_RESET:
        if (read_first_flight(s, fd, buf, sizeof(buf), deadline) > 0) {
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
        }
        break;
    case LAB_TLS_CLOSE:
        if (read_first_flight(s, fd, buf, sizeof(buf), deadline) > 0) {
            shutdown(fd, SHUT_WR);
            drain(s, fd, fs_wall_ms() + 2000);
        }
        break;
    default:
        break;
    }
    close(fd);
    pthread_mutex_lock(&s->mu);
    s->live--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* Creates a thread with every signal blocked (the process's signal handling stays with its
 * own threads) and a small stack. */
static int spawn(pthread_t *t, int detached, void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    sigset_t all, old;
    int rc;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024); /* room for ASan's redzones */
    if (detached)
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(t, &attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return rc;
}

static void *accept_main(void *arg)
{
    lab_tls_t *s = arg;
    while (!stopping(s)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, LAB_TLS_POLL_MS) <= 0)
            continue;
        int fd = accept(s->fd, NULL, NULL);
        if (fd < 0)
            continue;
        fcntl(fd, F_SETFD, FD_CLOEXEC);
        atomic_fetch_add(&s->accepts, 1);
        if (s->mode == LAB_TLS_RESET_ACCEPT) { /* here, not in a thread: as soon as possible */
            struct linger l = {.l_onoff = 1, .l_linger = 0};
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
            close(fd);
            continue;
        }
        /* Short timeouts turn blocking SSL I/O into WANT_READ/WANT_WRITE retries that
         * re-check the stop flag. */
        struct timeval tv = {.tv_sec = 0, .tv_usec = LAB_TLS_POLL_MS * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        conn_t *c = fs_xmalloc(sizeof(*c));
        pthread_t t;
        c->srv = s;
        c->fd = fd;
        pthread_mutex_lock(&s->mu);
        s->live++;
        pthread_mutex_unlock(&s->mu);
        if (spawn(&t, 1, conn_main, c) != 0) {
            close(fd);
            free(c);
            pthread_mutex_lock(&s->mu);
            s->live--;
            pthread_mutex_unlock(&s->mu);
        }
    }
    return NULL;
}

/* Clients that send SNI get the SNI binding; the SSL starts on the default one. */
static int servername_cb(SSL *ssl, int *alert, void *arg)
{
    lab_tls_t *s = arg;
    if (SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) != NULL && s->nosni_ctx != NULL)
        SSL_set_SSL_CTX(ssl, s->ctx);
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *make_ctx(const lab_tls_opts_t *o, X509 *cert, EVP_PKEY *key, X509 *const *chain,
                         size_t nchain, char err[256])
{
    char buf[160] = "";
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        goto fail;
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN); /* send exactly the configured chain */
    if ((o->min_version && !SSL_CTX_set_min_proto_version(ctx, o->min_version)) ||
        (o->max_version && !SSL_CTX_set_max_proto_version(ctx, o->max_version)) ||
        SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    for (size_t i = 0; i < nchain; i++)
        if (!SSL_CTX_add1_chain_cert(ctx, chain[i]))
            goto fail;
    return ctx;
fail:
    ERR_error_string_n(ERR_peek_last_error(), buf, sizeof(buf));
    snprintf(err, 256, "lab tls: cannot configure the SSL_CTX: %s", buf);
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

lab_tls_t *lab_tls_start(const lab_tls_opts_t *o, char err[256])
{
    lab_tls_t *s = fs_xcalloc(1, sizeof(*s));
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int one = 1;

    s->fd = -1;
    s->mode = o->mode;
    s->no_answer = o->no_answer;
    s->status_line = fs_xstrdup(o->status_line ? o->status_line : "HTTP/1.1 200 OK");
    if (o->response_len > 0) {
        s->response = fs_xmalloc(o->response_len);
        memcpy(s->response, o->response, o->response_len);
        s->response_len = o->response_len;
    }
    atomic_init(&s->stopping, 0);
    atomic_init(&s->accepts, 0);
    atomic_init(&s->handshakes, 0);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);

    if ((int)o->mode < 0 || (int)o->mode >= LAB_TLS_MODE_COUNT) {
        snprintf(err, 256, "lab tls: unknown mode %d", (int)o->mode);
        goto fail;
    }
    s->trickle_ms = o->trickle_ms > 0 ? o->trickle_ms : 1000;
    if (o->mode == LAB_TLS_SERVE || o->mode == LAB_TLS_ENDLESS_HEADERS ||
        o->mode == LAB_TLS_ENDLESS_BODY || o->mode == LAB_TLS_TRICKLE) {
        if (o->cert == NULL || o->key == NULL) {
            snprintf(err, 256, "lab tls: %s mode needs a certificate and key",
                     lab_tls_mode_names[o->mode]);
            goto fail;
        }
        s->ctx = make_ctx(o, o->cert, o->key, o->chain, o->nchain, err);
        if (s->ctx == NULL)
            goto fail;
        if (o->nosni_cert != NULL) {
            s->nosni_ctx =
                make_ctx(o, o->nosni_cert, o->nosni_key, o->nosni_chain, o->nosni_nchain, err);
            if (s->nosni_ctx == NULL)
                goto fail;
            SSL_CTX_set_tlsext_servername_callback(s->nosni_ctx, servername_cb);
            SSL_CTX_set_tlsext_servername_arg(s->nosni_ctx, s);
        }
    }

    const char *ip = o->bind_addr ? o->bind_addr : "127.0.0.1";
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)o->port);
    if (o->port < 0 || o->port > 65535 || inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
        snprintf(err, 256, "lab tls: cannot listen on %.64s port %d: not an IPv4 address/port", ip,
                 o->port);
        goto fail;
    }
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->fd < 0 || setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(s->fd, 512) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&sa, &sl) != 0) {
        snprintf(err, 256, "lab tls: cannot listen on %s port %d: %s", ip, o->port,
                 strerror(errno));
        goto fail;
    }
    s->port = ntohs(sa.sin_port);
    if (spawn(&s->acceptor, 0, accept_main, s) != 0) {
        snprintf(err, 256, "lab tls: cannot start the accept thread");
        goto fail;
    }
    s->acceptor_started = 1;
    return s;
fail:
    lab_tls_stop(s);
    return NULL;
}

int lab_tls_port(const lab_tls_t *s)
{
    return s->port;
}

unsigned lab_tls_accepts(const lab_tls_t *s)
{
    return atomic_load(&((lab_tls_t *)s)->accepts);
}

unsigned lab_tls_handshakes(const lab_tls_t *s)
{
    return atomic_load(&((lab_tls_t *)s)->handshakes);
}

void lab_tls_stop(lab_tls_t *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stopping, 1);
    if (s->acceptor_started)
        pthread_join(s->acceptor, NULL);
    pthread_mutex_lock(&s->mu);
    while (s->live > 0)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
    if (s->fd >= 0)
        close(s->fd);
    SSL_CTX_free(s->ctx);
    SSL_CTX_free(s->nosni_ctx);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->status_line);
    free(s->response);
    free(s);
}

int lab_closed_port(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int port = -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (port < 0 && fd >= 0)
        close(fd);
    /* Kept bound, never listening, until the process exits: a connect is refused, and no other
     * test running beside this one can be given the port and answer on it. */
    return port;
}

/* Moves pending bytes from one memory BIO to the other. */
static void pump(BIO *from, BIO *to)
{
    char buf[4096];
    int n;
    while ((n = BIO_read(from, buf, sizeof(buf))) > 0)
        BIO_write(to, buf, n);
}

static int tls10_result;

static void tls10_probe(void)
{
    char err[256];
    lab_cert_t c = {0};
    lab_cert_opts_t o = {.cn = "tls10.lab.test", .key_ec = 1, .md = "SHA1"};
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    SSL *srv = NULL, *cli = NULL;
    BIO *s_in = BIO_new(BIO_s_mem()), *s_out = BIO_new(BIO_s_mem());
    BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());
    int s_done = 0, c_done = 0;

    if (sctx == NULL || cctx == NULL || !s_in || !s_out || !c_in || !c_out ||
        lab_cert_issue(&c, &o, NULL, err) != 0)
        goto out;
    SSL_CTX_set_security_level(sctx, 0);
    SSL_CTX_set_security_level(cctx, 0);
    if (!SSL_CTX_set_min_proto_version(sctx, TLS1_VERSION) ||
        !SSL_CTX_set_max_proto_version(sctx, TLS1_VERSION) ||
        !SSL_CTX_set_min_proto_version(cctx, TLS1_VERSION) ||
        !SSL_CTX_set_max_proto_version(cctx, TLS1_VERSION) ||
        SSL_CTX_use_certificate(sctx, c.cert) != 1 || SSL_CTX_use_PrivateKey(sctx, c.key) != 1)
        goto out;
    srv = SSL_new(sctx);
    cli = SSL_new(cctx);
    if (srv == NULL || cli == NULL)
        goto out;
    SSL_set_bio(srv, s_in, s_out);
    SSL_set_bio(cli, c_in, c_out);
    s_in = s_out = c_in = c_out = NULL; /* owned by the SSLs now */
    SSL_set_accept_state(srv);
    SSL_set_connect_state(cli);
    for (int round = 0; round < 10 && !(s_done && c_done); round++) {
        if (!c_done)
            c_done = SSL_do_handshake(cli) == 1;
        pump(SSL_get_wbio(cli), SSL_get_rbio(srv));
        if (!s_done)
            s_done = SSL_do_handshake(srv) == 1;
        pump(SSL_get_wbio(srv), SSL_get_rbio(cli));
    }
    tls10_result = s_done && c_done && SSL_version(cli) == TLS1_VERSION;
out:
    ERR_clear_error();
    SSL_free(srv);
    SSL_free(cli);
    BIO_free(s_in);
    BIO_free(s_out);
    BIO_free(c_in);
    BIO_free(c_out);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    lab_cert_free(&c);
}

int lab_tls10_supported(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, tls10_probe);
    return tls10_result;
}
