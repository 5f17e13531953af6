/* dns.c - the resolve cache (see dns.h): a hash of (host, view) entries over one c-ares channel
 * driven by the loop (a uv_poll_t per resolver socket, one uv_timer_t for c-ares' timeouts). */
#include "probes/dns.h"
#include "probes/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <ares.h>

#define DNS_RESOLV_CONF "/etc/resolv.conf"
#define DNS_MAX_HOST 253

typedef struct dns_entry_s {
    struct dns_entry_s *hnext; /* hash chain */
    size_t hash;
    char *key;         /* lower-cased host, '\0', view */
    dns_answer_t *ans; /* the last answer (success or failure), NULL before the first */
    uint64_t expires;  /* uv_now() ms until which ans is used */
    uint32_t rr;       /* round robin counter */
    int in_flight;     /* a lookup for this key is under way */
    int notifying;     /* its waiters are being called: the entry must stay */
    dns_req_t *waiters;
} dns_entry_t;

typedef struct dns_sock_s {
    uv_poll_t poll;
    int fd;
    struct dns_cache_s *c;
    struct dns_sock_s *next;
} dns_sock_t;

struct dns_cache_s {
    uv_loop_t *loop;
    dns_opts_t o;
    char *servers;
    ares_channel channel;
    uv_timer_t timer;
    dns_sock_t *socks;
    dns_entry_t **bucket;
    size_t nbucket, nentries, in_flight;
    struct stat conf; /* /etc/resolv.conf as the channel read it */
    int busy;         /* depth of calls into c-ares: teardown waits for 0 */
    int closing, torn_down, pending_closes;
    void (*done)(void *arg);
    void *done_arg;
    dns_stats_t st;
};

typedef struct dns_lookup_s {
    dns_cache_t *c;
    dns_entry_t *e;
} dns_lookup_t;

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_rc;

static void ares_global_init(void)
{
    ares_init_rc = ares_library_init(ARES_LIB_INIT_ALL);
}

static void on_handle_closed(uv_handle_t *h);

/* ---- the channel on the loop ---- */

static dns_sock_t *find_sock(dns_cache_t *c, int fd, dns_sock_t ***link)
{
    for (dns_sock_t **l = &c->socks; *l != NULL; l = &(*l)->next) {
        if ((*l)->fd == fd) {
            if (link != NULL)
                *link = l;
            return *l;
        }
    }
    return NULL;
}

static void leave(dns_cache_t *c);

static void on_poll(uv_poll_t *h, int status, int events)
{
    dns_sock_t *s = container_of(h, dns_sock_t, poll);
    dns_cache_t *c = s->c;
    int fd = s->fd;
    c->busy++;
    ares_process_fd(c->channel, status < 0 || (events & UV_READABLE) ? fd : ARES_SOCKET_BAD,
                    status < 0 || (events & UV_WRITABLE) ? fd : ARES_SOCKET_BAD);
    leave(c);
}

/* c-ares opens, watches and closes its sockets through this callback. */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    dns_cache_t *c = data;
    dns_sock_t **link = NULL, *s = find_sock(c, fd, &link);
    if (!readable && !writable) {
        if (s != NULL) {
            *link = s->next;
            uv_poll_stop(&s->poll);
            c->pending_closes++;
            uv_close((uv_handle_t *)&s->poll, on_handle_closed);
        }
        return;
    }
    if (s == NULL) {
        s = fs_xcalloc(1, sizeof(*s));
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            free(s); /* c-ares times the query out */
            return;
        }
        s->fd = fd;
        s->c = c;
        s->next = c->socks;
        c->socks = s;
    }
    uv_poll_start(&s->poll, (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0), on_poll);
}

static void on_timer(uv_timer_t *t)
{
    dns_cache_t *c = container_of(t, dns_cache_t, timer);
    c->busy++;
    ares_process_fd(c->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    leave(c);
}

static void update_timer(dns_cache_t *c)
{
    struct timeval tv, *next = ares_timeout(c->channel, NULL, &tv);
    if (next == NULL) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t ms = (uint64_t)next->tv_sec * 1000 + ((uint64_t)next->tv_usec + 999) / 1000;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static int channel_open(dns_cache_t *c)
{
    struct ares_options ao;
    memset(&ao, 0, sizeof(ao));
    ao.sock_state_cb = sock_state_cb;
    ao.sock_state_cb_data = c;
    /* c-ares doubles the wait at each round: t + 2t over two tries is the lookup's timeout. */
    ao.timeout = (int)(c->o.timeout_ms / 3 > 50 ? c->o.timeout_ms / 3 : 50);
    ao.tries = 2;
    if (stat(DNS_RESOLV_CONF, &c->conf) != 0)
        memset(&c->conf, 0, sizeof(c->conf));
    if (ares_init_options(&c->channel, &ao,
                          ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES) !=
        ARES_SUCCESS) {
        c->channel = NULL;
        return UV_ENOMEM;
    }
    if (c->servers != NULL && ares_set_servers_ports_csv(c->channel, c->servers) != ARES_SUCCESS) {
        ares_destroy(c->channel);
        c->channel = NULL;
        return UV_EINVAL;
    }
    return 0;
}

/* Reads the system configuration again when /etc/resolv.conf changed (as glibc does), while no
 * lookup is under way and no c-ares call is on the stack. */
static void maybe_reload_config(dns_cache_t *c)
{
    struct stat st;
    if (c->servers != NULL || c->in_flight > 0 || c->busy > 0)
        return;
    if (stat(DNS_RESOLV_CONF, &st) != 0)
        memset(&st, 0, sizeof(st));
    if (st.st_ino == c->conf.st_ino && st.st_size == c->conf.st_size &&
        st.st_mtim.tv_sec == c->conf.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == c->conf.st_mtim.tv_nsec)
        return;
    ares_channel old = c->channel;
    if (channel_open(c) != 0) {
        c->channel = old; /* keep the old configuration */
        return;
    }
    c->busy++;
    ares_destroy(old); /* nothing in flight: no callback, its sockets close */
    c->busy--;
    c->st.config_reloads++;
}

/* ---- entries ---- */

static size_t key_hash(const char *host, const char *view)
{
    uint64_t h = 14695981039346656037ULL; /* FNV-1a over lower-cased host, '\0', view */
    for (const unsigned char *p = (const unsigned char *)host; *p; p++)
        h = (h ^ (uint64_t)tolower(*p)) * 1099511628211ULL;
    h *= 1099511628211ULL;
    for (const unsigned char *p = (const unsigned char *)view; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (size_t)h;
}

static int key_eq(const dns_entry_t *e, const char *host, const char *view)
{
    size_t hl = strlen(host);
    return strncasecmp(e->key, host, hl) == 0 && e->key[hl] == '\0' &&
           strcmp(e->key + hl + 1, view) == 0;
}

static int removable(const dns_entry_t *e)
{
    return !e->in_flight && !e->notifying && e->waiters == NULL;
}

static void entry_free(dns_entry_t *e)
{
    free(e->ans);
    free(e->key);
    free(e);
}

/* Drops the entries nobody waits on whose answer expired (all: every one nobody waits on);
 * returns how many went. */
static size_t sweep(dns_cache_t *c, int all, uint64_t now)
{
    size_t gone = 0;
    for (size_t b = 0; b < c->nbucket; b++) {
        for (dns_entry_t **l = &c->bucket[b]; *l != NULL;) {
            dns_entry_t *e = *l;
            int expired = e->ans != NULL && now >= e->expires;
            if (removable(e) && (all || expired)) {
                *l = e->hnext;
                entry_free(e);
                gone++;
            } else {
                l = &e->hnext;
            }
        }
    }
    c->nentries -= gone;
    return gone;
}

static dns_entry_t *entry_get(dns_cache_t *c, const char *host, const char *view)
{
    size_t h = key_hash(host, view);
    for (dns_entry_t *e = c->bucket[h & (c->nbucket - 1)]; e != NULL; e = e->hnext)
        if (e->hash == h && key_eq(e, host, view))
            return e;
    if (c->nentries >= c->o.max_entries) {
        uint64_t now = uv_now(c->loop);
        if (sweep(c, 0, now) == 0)
            sweep(c, 1, now);
    }
    size_t hl = strlen(host), vl = strlen(view);
    dns_entry_t *e = fs_xcalloc(1, sizeof(*e));
    e->hash = h;
    e->key = fs_xmalloc(hl + vl + 2);
    for (size_t i = 0; i < hl; i++)
        e->key[i] = (char)tolower((unsigned char)host[i]);
    e->key[hl] = '\0';
    memcpy(e->key + hl + 1, view, vl + 1);
    e->hnext = c->bucket[h & (c->nbucket - 1)];
    c->bucket[h & (c->nbucket - 1)] = e;
    c->nentries++;
    return e;
}

static void waiter_unlink(dns_req_t *r)
{
    dns_entry_t *e = r->entry;
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        e->waiters = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    r->entry = NULL;
}

static void waiter_link(dns_entry_t *e, dns_req_t *r)
{
    r->entry = e;
    r->prev = NULL;
    r->next = e->waiters;
    if (e->waiters != NULL)
        e->waiters->prev = r;
    e->waiters = r;
}

/* ---- lookups ---- */

static int map_status(int st)
{
    switch (st) {
    case ARES_ENOTFOUND:
    case ARES_ENONAME:
    case ARES_EBADNAME:
        return UV_EAI_NONAME;
    case ARES_ENODATA:
        return UV_EAI_NODATA;
    case ARES_ETIMEOUT:
        return UV_EAI_AGAIN;
    case ARES_ECONNREFUSED:
        return UV_ECONNREFUSED;
    case ARES_ENOMEM:
        return UV_ENOMEM;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return UV_ECANCELED;
    default:
        return UV_EAI_FAIL;
    }
}

/* What went wrong in the words of an admin reading agent.log, not c-ares' own. */
static const char *status_words(int st)
{
    switch (st) {
    case ARES_ENOTFOUND:
    case ARES_ENONAME:
        return "no such name (NXDOMAIN)";
    case ARES_ENODATA:
        return "the name has no A or AAAA record";
    case ARES_ETIMEOUT:
        return "the name servers did not answer";
    case ARES_ECONNREFUSED: /* c-ares' verdict when every server was unreachable, refused the
                               query or answered SERVFAIL */
        return "no name server gave an answer (unreachable, refused or server failure)";
    default:
        return ares_strerror(st);
    }
}

static void fill_answer(dns_cache_t *c, dns_answer_t *a, int status,
                        const struct ares_addrinfo *res)
{
    memset(a, 0, sizeof(*a));
    int64_t ttl = -1;
    for (const struct ares_addrinfo_node *n = res ? res->nodes : NULL; n != NULL; n = n->ai_next) {
        char buf[DNS_ADDR_LEN];
        const void *src = n->ai_family == AF_INET
                              ? (const void *)&((const struct sockaddr_in *)n->ai_addr)->sin_addr
                              : (const void *)&((const struct sockaddr_in6 *)n->ai_addr)->sin6_addr;
        if ((n->ai_family != AF_INET && n->ai_family != AF_INET6) ||
            inet_ntop(n->ai_family, src, buf, sizeof(buf)) == NULL)
            continue;
        size_t i = 0;
        while (i < a->addrs.n && strcmp(a->addrs.a[i], buf) != 0)
            i++;
        if (i < a->addrs.n || a->addrs.n == FS_RESOLVE_MAX_ADDRS)
            continue; /* a duplicate, or past the cap: further addresses are not used */
        fs_strlcpy(a->addrs.a[a->addrs.n++], buf, DNS_ADDR_LEN);
        if (ttl < 0 || n->ai_ttl < ttl)
            ttl = n->ai_ttl < 0 ? 0 : n->ai_ttl;
    }
    for (const struct ares_addrinfo_cname *cn = res ? res->cnames : NULL; cn; cn = cn->next)
        if (ttl < 0 || cn->ttl < ttl)
            ttl = cn->ttl < 0 ? 0 : cn->ttl;
    if (status == ARES_SUCCESS && a->addrs.n == 0)
        status = ARES_ENODATA;
    if (status != ARES_SUCCESS) {
        a->status = map_status(status);
        a->addrs.n = 0;
        snprintf(a->error, sizeof(a->error), "%s", status_words(status));
        a->ttl_s = c->o.negative_ttl_s;
        return;
    }
    if (ttl < (int64_t)c->o.min_ttl_s)
        ttl = c->o.min_ttl_s;
    if (ttl > (int64_t)c->o.max_ttl_s)
        ttl = c->o.max_ttl_s;
    a->ttl_s = (uint32_t)ttl;
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    dns_lookup_t *lk = arg;
    dns_cache_t *c = lk->c;
    dns_entry_t *e = lk->e;
    free(lk);
    if (c->closing) { /* ARES_EDESTRUCTION from the teardown: nobody waits any more */
        ares_freeaddrinfo(res);
        return;
    }
    dns_answer_t a;
    fill_answer(c, &a, status, res);
    ares_freeaddrinfo(res);
    e->in_flight = 0;
    c->in_flight--;
    if (a.status < 0)
        c->st.failures++;
    if (e->ans == NULL)
        e->ans = fs_xmalloc(sizeof(*e->ans));
    *e->ans = a;
    e->expires = uv_now(c->loop) + (uint64_t)a.ttl_s * 1000;
    /* One at a time from the head: a callback may cancel another waiter or close the cache. */
    e->notifying = 1;
    dns_req_t *r;
    while ((r = e->waiters) != NULL) {
        waiter_unlink(r);
        r->cb(r, &a);
    }
    e->notifying = 0;
}

int dns_resolve(dns_cache_t *c, dns_req_t *req, const char *host, const char *view,
                dns_answer_t *now, dns_cb cb)
{
    if (c->closing)
        return UV_ECANCELED;
    size_t hl = strlen(host);
    if (hl == 0 || hl > DNS_MAX_HOST)
        return UV_EINVAL;
    if (view == NULL)
        view = "";
    dns_entry_t *e = entry_get(c, host, view);
    req->cb = cb;
    req->entry = NULL;
    if (e->ans != NULL && uv_now(c->loop) < e->expires) {
        *now = *e->ans;
        now->from_cache = 1;
        c->st.hits++;
        if (now->status < 0)
            c->st.negative_hits++;
        return 0;
    }
    if (e->in_flight) {
        waiter_link(e, req);
        c->st.joined++;
        return DNS_PENDING;
    }
    free(e->ans); /* expired: a client whose cache entry expired asks again and waits */
    e->ans = NULL;
    maybe_reload_config(c);
    dns_lookup_t *lk = fs_xmalloc(sizeof(*lk));
    lk->c = c;
    lk->e = e;
    e->in_flight = 1;
    c->in_flight++;
    c->st.lookups++;
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    c->busy++;
    /* Answers from /etc/hosts (and c-ares' own checks) come back before this returns. */
    ares_getaddrinfo(c->channel, host, NULL, &hints, on_addrinfo, lk);
    leave(c);
    if (!e->in_flight) {
        *now = *e->ans;
        return 0;
    }
    waiter_link(e, req);
    return DNS_PENDING;
}

void dns_cancel(dns_req_t *req)
{
    if (req->entry != NULL)
        waiter_unlink(req);
}

uint32_t dns_next_index(dns_cache_t *c, const char *host, const char *view)
{
    if (c->closing)
        return 0;
    dns_entry_t *e = entry_get(c, host, view ? view : "");
    return e->rr++;
}

void dns_cache_stats(const dns_cache_t *c, dns_stats_t *s)
{
    *s = c->st;
    s->entries = c->nentries;
    s->in_flight = c->in_flight;
}

/* ---- life cycle ---- */

int dns_cache_new(dns_cache_t **out, uv_loop_t *loop, const dns_opts_t *o)
{
    pthread_once(&ares_once, ares_global_init);
    if (ares_init_rc != ARES_SUCCESS)
        return UV_ENOMEM;
    dns_cache_t *c = fs_xcalloc(1, sizeof(*c));
    c->loop = loop;
    if (o != NULL)
        c->o = *o;
    if (c->o.min_ttl_s == 0)
        c->o.min_ttl_s = 5;
    if (c->o.max_ttl_s == 0)
        c->o.max_ttl_s = 300;
    if (c->o.max_ttl_s < c->o.min_ttl_s)
        c->o.max_ttl_s = c->o.min_ttl_s;
    if (c->o.negative_ttl_s == 0)
        c->o.negative_ttl_s = 5;
    if (c->o.timeout_ms == 0)
        c->o.timeout_ms = 5000;
    if (c->o.max_entries == 0)
        c->o.max_entries = 4096;
    c->servers = c->o.servers ? fs_xstrdup(c->o.servers) : NULL;
    c->o.servers = c->servers;
    int rc = channel_open(c);
    if (rc < 0) {
        free(c->servers);
        free(c);
        return rc;
    }
    c->nbucket = 64;
    while (c->nbucket < c->o.max_entries)
        c->nbucket *= 2;
    c->bucket = fs_xcalloc(c->nbucket, sizeof(*c->bucket));
    uv_timer_init(loop, &c->timer);
    *out = c;
    return 0;
}

static void maybe_done(dns_cache_t *c)
{
    if (!c->torn_down || c->pending_closes > 0)
        return;
    void (*done)(void *) = c->done;
    void *arg = c->done_arg;
    free(c->servers);
    free(c);
    if (done != NULL)
        done(arg);
}

static void on_handle_closed(uv_handle_t *h)
{
    dns_cache_t *c;
    if (h->type == UV_POLL) {
        dns_sock_t *s = container_of((uv_poll_t *)h, dns_sock_t, poll);
        c = s->c;
        free(s);
    } else {
        c = container_of((uv_timer_t *)h, dns_cache_t, timer);
    }
    c->pending_closes--;
    maybe_done(c);
}

static void teardown(dns_cache_t *c)
{
    c->torn_down = 1;
    c->busy++;
    ares_destroy(c->channel); /* lookups end with ARES_EDESTRUCTION, sockets close */
    c->channel = NULL;
    c->busy--;
    while (c->socks != NULL) { /* none left normally: c-ares closed them above */
        dns_sock_t *s = c->socks;
        c->socks = s->next;
        uv_poll_stop(&s->poll);
        c->pending_closes++;
        uv_close((uv_handle_t *)&s->poll, on_handle_closed);
    }
    for (size_t b = 0; b < c->nbucket; b++) {
        while (c->bucket[b] != NULL) {
            dns_entry_t *e = c->bucket[b];
            c->bucket[b] = e->hnext;
            entry_free(e);
        }
    }
    free(c->bucket);
    c->bucket = NULL;
    c->pending_closes++;
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* Every exit from a c-ares call: the deferred teardown, else the timer for its next timeout. */
static void leave(dns_cache_t *c)
{
    if (--c->busy > 0)
        return;
    if (c->closing) {
        if (!c->torn_down)
            teardown(c);
        return;
    }
    update_timer(c);
}

void dns_cache_close(dns_cache_t *c, void (*done)(void *arg), void *arg)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->done = done;
    c->done_arg = arg;
    for (size_t b = 0; b < c->nbucket; b++)
        for (dns_entry_t *e = c->bucket[b]; e != NULL; e = e->hnext)
            while (e->waiters != NULL)
                waiter_unlink(e->waiters);
    if (c->busy == 0)
        teardown(c);
}
