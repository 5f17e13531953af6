/* httpserver.h - a loopback HTTP server for tests and the demo lab (CRL/AIA/OCSP host, agent
 * URLs): static routes set at runtime, misbehaving routes (endless, trickle, stall, reset) and
 * handler routes that compute their answer from the request (an OCSP responder). */
#ifndef LAB_HTTPSERVER_H
#define LAB_HTTPSERVER_H

#include <stddef.h>

/* Behaviour of a route that does not serve a static body. */
typedef enum lab_http_special_e {
    LAB_HTTP_ENDLESS, /* 200, bytes forever, no Content-Length, until the client leaves */
    LAB_HTTP_TRICKLE, /* 200, one byte every 500 ms forever */
    LAB_HTTP_STALL,   /* reads the request, never sends headers; closes when the client leaves */
    LAB_HTTP_RESET,   /* closes the connection without any response */
    LAB_HTTP_HUGE_LENGTH,   /* 200 with Content-Length: 2147483648, 64 KiB of it, then stalls */
    LAB_HTTP_PARTIAL_STALL, /* 200, no Content-Length, 256 KiB, then stalls */
    LAB_HTTP_SLOW_BODY,     /* 200, 512 KiB ('a'..'z' repeated) in 16 KiB blocks every 10 ms */
    LAB_HTTP_REDIRECT_LOOP, /* 302 Found to the path itself, forever */
    LAB_HTTP_SPECIAL_COUNT
} lab_http_special_t;

typedef struct lab_http_s lab_http_t;

/* Starts a server on 127.0.0.1 with an ephemeral port, one thread per connection so a slow
 * route never blocks another; its threads block all signals. Returns NULL and fills err on failure.
 * Unknown paths answer 404. Every function below is thread-safe and may be called while requests
 * are in flight. */
lab_http_t *lab_http_start(char err[256]);
/* The bound TCP port. */
int lab_http_port(const lab_http_t *h);
/* Stops the server and frees it; returns promptly even while slow routes are mid-response
 * (they watch a stop flag). NULL is a no-op. */
void lab_http_stop(lab_http_t *h);

/* Serves `path` (exact match, query string ignored) with status and a copy of body[0..len).
 * content_type may be NULL (no Content-Type header). Replaces any earlier route for path,
 * special or not; its delay and hit count are kept. */
void lab_http_set(lab_http_t *h, const char *path, int status, const void *body, size_t len,
                  const char *content_type);
/* Makes `path` misbehave as `kind`; replaces any earlier route for path. */
void lab_http_set_special(lab_http_t *h, const char *path, lab_http_special_t kind);
/* Delays the answer of a static route by ms (applied per request, before headers). */
void lab_http_set_delay_ms(lab_http_t *h, const char *path, unsigned ms);
/* What a handler answers: status, a malloc'ed body (the server frees it), its Content-Type
 * (a static string or NULL) and a delay before the headers go out. */
typedef struct lab_http_reply_s {
    int status;
    unsigned char *body;
    size_t len;
    const char *content_type;
    unsigned delay_ms;
} lab_http_reply_t;

/* Called from the connection's thread for every request under the handler's prefix, with the
 * path (query string cut, percent-escapes decoded by libmicrohttpd) and the request body (at
 * most 64 KiB; more is refused with 413). Must be thread-safe; out is zeroed (status 0 = 500). */
typedef void (*lab_http_handler_t)(void *arg, const char *method, const char *path,
                                   const unsigned char *body, size_t len, lab_http_reply_t *out);

/* Routes every path that starts with prefix (and matches no exact route) to fn. arg is owned by
 * the server from now on and released with free_arg (may be NULL) at lab_http_stop, never
 * earlier, so a request in flight keeps a replaced handler's arg. Hits count under prefix. */
void lab_http_set_handler(lab_http_t *h, const char *prefix, lab_http_handler_t fn, void *arg,
                          void (*free_arg)(void *arg));

/* Number of requests received for path (any method, including 404s) since start. */
unsigned lab_http_hits(lab_http_t *h, const char *path);
/* The Proxy-Authorization header of the last request for path (when the server plays a proxy,
 * path is the absolute URL requested): 1 and the value in out, or 0 and "" when it had none. */
int lab_http_proxy_auth(lab_http_t *h, const char *path, char *out, size_t n);

#endif
