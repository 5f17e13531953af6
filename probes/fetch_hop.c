/* fetch_hop.c - one hop of a retrieval: its curl easy handle (URL, DNS overrides, proxy,
 * POST, LDAP search), its body under the cap and the in-flight budget, and what the transfer's
 * end means (an error named the way CryptoAPI's log would, or the next redirect hop). */
#include "probes/fetch_int.h"
#include "probes/util.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        if (fetch__mem_take(j, cap - j->cap) != 0) { /* libcurl keeps this chunk until we resume */
            if (!j->waited)
                atomic_fetch_add(&fetch__waits, 1);
            j->paused = j->waited = 1;
            atomic_fetch_add(&fetch__waiting, 1);
            fetch__pump_start(j->f);
            return CURL_WRITEFUNC_PAUSE;
        }
        unsigned char *nb = realloc(j->body, cap); /* peer-sized: fail cleanly */
        if (nb == NULL) {
            fetch__mem_give(j, cap - j->cap);
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
void fetch__host_for_url(const char *addr, char *out, size_t n)
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
void fetch__job_begin_hop(fetch_job_t *j)
{
    fetch_t *f = j->f;
    char scheme[16], err[256], shown[128];
    scheme_of(j->hop_url, scheme, sizeof(scheme));
    j->ldap = j->allow_ldap && strcmp(scheme, "ldap") == 0;
    if (strcmp(scheme, "http") != 0 && !j->ldap) {
        if (scheme[0] == '\0')
            fetch__job_finish_later(j, FETCH_ERR_URL, "not a URL: \"%.100s\"",
                                    fs_url_redact(j->hop_url, shown, sizeof(shown)));
        else
            fetch__job_finish_later(j, FETCH_ERR_SCHEME,
                                    "unsupported scheme \"%s\" (only http:// is fetched)", scheme);
        return;
    }
    if ((j->ldap ? ldap_parse(j, err) : fs_url_parse(&j->hop, j->hop_url, err)) != 0) {
        fetch__job_finish_later(j, FETCH_ERR_URL, "%.150s", err);
        return;
    }
    uint32_t spent = fetch__job_elapsed_ms(j);
    if (spent >= j->timeout_ms) {
        fetch__job_finish_later(j, FETCH_ERR_TIMEOUT, "timed out after %u ms", spent);
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
            fetch__host_for_url(addr, h, sizeof(h));
            snprintf(entry, sizeof(entry), "%s:%d:%s:%d", j->hop.host, j->hop.port, h, j->hop.port);
            j->connect_to = curl_slist_append(NULL, entry);
            if (j->connect_to == NULL) {
                fetch__job_finish_later(j, FETCH_ERR_OTHER, "out of memory");
                return;
            }
        } else if (j->dns_override_only) {
            j->res.resolved = 0;
            fetch__job_finish_later(
                j, FETCH_ERR_DNS, "could not resolve host \"%.80s\" (not in the DNS override map)",
                j->hop.host);
            return;
        }
    }
    if (j->easy == NULL)
        j->easy = curl_easy_init();
    else
        curl_easy_reset(j->easy);
    if (j->easy == NULL) {
        fetch__job_finish_later(j, FETCH_ERR_OTHER, "out of memory");
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
            fetch__job_finish_later(j, FETCH_ERR_OTHER, "out of memory");
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
        fetch__job_finish_later(j, FETCH_ERR_OTHER, "could not start the transfer");
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
                     j->proxy ? j->proxy_port : j->hop.port, fetch__job_elapsed_ms(j));
        } else {
            r->err = FETCH_ERR_TIMEOUT;
            snprintf(r->error, sizeof(r->error), "timed out after %u ms (%zu bytes received)",
                     fetch__job_elapsed_ms(j), j->len);
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
                    fetch__job_begin_hop(j);
                    return;
                }
            }
        }
    }
    fetch__job_unlink(j);
    fetch__job_deliver(j);
}

void fetch__check_multi_info(fetch_t *f)
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
    fetch__dispatch_end(f);
}
