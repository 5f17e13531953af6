/* dnsserver.c - one thread, one UDP socket: parses each query's question (RFC 1035 4.1) and
 * answers from the table of names, or stays silent. */
#include "lab/dnsserver.h"

#include "probes/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LAB_DNS_MAX_NAMES 32
#define LAB_DNS_MAX_ADDRS 16
#define LAB_DNS_POLL_MS 50

typedef struct dns_name_s {
    char name[256];
    lab_dns_mode_t mode;
    uint32_t ttl, delay_ms;
    unsigned char a4[LAB_DNS_MAX_ADDRS][4], a6[LAB_DNS_MAX_ADDRS][16];
    size_t n4, n6;
    unsigned queries;
} dns_name_t;

struct lab_dns_s {
    int fd, port;
    pthread_t thread;
    int started;
    atomic_int stopping;
    pthread_mutex_t mu;
    dns_name_t names[LAB_DNS_MAX_NAMES]; /* guarded by mu */
    size_t nnames;
};

static dns_name_t *find(lab_dns_t *s, const char *name)
{
    for (size_t i = 0; i < s->nnames; i++)
        if (strcasecmp(s->names[i].name, name) == 0)
            return &s->names[i];
    return NULL;
}

int lab_dns_set(lab_dns_t *s, const char *name, lab_dns_mode_t mode, uint32_t ttl,
                const char *addrs, uint32_t delay_ms, char err[256])
{
    dns_name_t n;
    memset(&n, 0, sizeof(n));
    if (strlen(name) >= sizeof(n.name)) {
        snprintf(err, 256, "lab dns: name too long");
        return -1;
    }
    fs_strlcpy(n.name, name, sizeof(n.name));
    n.mode = mode;
    n.ttl = ttl;
    n.delay_ms = delay_ms;
    char list[1024];
    fs_strlcpy(list, addrs ? addrs : "", sizeof(list));
    for (char *save = NULL, *a = strtok_r(list, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
        if (n.n4 < LAB_DNS_MAX_ADDRS && inet_pton(AF_INET, a, n.a4[n.n4]) == 1)
            n.n4++;
        else if (n.n6 < LAB_DNS_MAX_ADDRS && inet_pton(AF_INET6, a, n.a6[n.n6]) == 1)
            n.n6++;
        else {
            snprintf(err, 256, "lab dns: \"%s\" is not an address (or too many)", a);
            return -1;
        }
    }
    pthread_mutex_lock(&s->mu);
    dns_name_t *old = find(s, name);
    int rc = 0;
    if (old != NULL) {
        n.queries = old->queries;
        *old = n;
    } else if (s->nnames < LAB_DNS_MAX_NAMES) {
        s->names[s->nnames++] = n;
    } else {
        snprintf(err, 256, "lab dns: too many names");
        rc = -1;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

unsigned lab_dns_queries(lab_dns_t *s, const char *name)
{
    pthread_mutex_lock(&s->mu);
    dns_name_t *n = find(s, name);
    unsigned q = n ? n->queries : 0;
    pthread_mutex_unlock(&s->mu);
    return q;
}

static void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v)
{
    put16(p, v >> 16);
    put16(p + 2, v & 0xffff);
}

/* Builds the answer to the query q (len bytes) into out; returns its length, 0 to stay silent. */
static size_t answer(lab_dns_t *s, const unsigned char *q, size_t len, unsigned char *out,
                     size_t cap, uint32_t *delay_ms)
{
    char name[256];
    size_t nl = 0, off = 12;
    if (len < 12 || (q[2] & 0x80) || q[4] != 0 || q[5] != 1) /* a query with one question */
        return 0;
    while (off < len && q[off] != 0) {
        size_t l = q[off];
        if ((l & 0xc0) || off + 1 + l > len || nl + l + 1 >= sizeof(name))
            return 0;
        if (nl > 0)
            name[nl++] = '.';
        memcpy(name + nl, q + off + 1, l);
        nl += l;
        off += 1 + l;
    }
    name[nl] = '\0';
    if (off + 5 > len)
        return 0;
    size_t qend = off + 5; /* the root label, QTYPE, QCLASS */
    unsigned qtype = (unsigned)q[off + 1] << 8 | q[off + 2];
    if (qend > cap)
        return 0;
    pthread_mutex_lock(&s->mu);
    dns_name_t *n = find(s, name), copy;
    if (n != NULL) {
        n->queries++;
        copy = *n;
    } else {
        memset(&copy, 0, sizeof(copy));
        copy.mode = LAB_DNS_NXDOMAIN;
    }
    pthread_mutex_unlock(&s->mu);
    *delay_ms = copy.delay_ms;
    if (copy.mode == LAB_DNS_DROP)
        return 0;
    memcpy(out, q, qend);
    out[2] = (unsigned char)(0x80 | 0x04 | (q[2] & 0x01)); /* QR, AA, the query's RD */
    out[3] = 0x80;                                         /* RA, rcode below */
    put16(out + 6, 0);
    put16(out + 8, 0);
    put16(out + 10, 0); /* no additional records (an EDNS OPT of the query is not echoed) */
    if (copy.mode == LAB_DNS_NXDOMAIN || copy.mode == LAB_DNS_SERVFAIL) {
        out[3] |= copy.mode == LAB_DNS_NXDOMAIN ? 3 : 2;
        return qend;
    }
    size_t w = qend, count = 0;
    size_t nrec = qtype == 1 ? copy.n4 : qtype == 28 ? copy.n6 : 0;
    size_t rdlen = qtype == 1 ? 4 : 16;
    for (size_t i = 0; i < nrec && w + 12 + rdlen <= cap; i++) {
        put16(out + w, 0xc00c); /* the question's name */
        put16(out + w + 2, qtype);
        put16(out + w + 4, 1); /* IN */
        put32(out + w + 6, copy.ttl);
        put16(out + w + 10, (unsigned)rdlen);
        memcpy(out + w + 12, qtype == 1 ? copy.a4[i] : copy.a6[i], rdlen);
        w += 12 + rdlen;
        count++;
    }
    put16(out + 6, (unsigned)count);
    return w;
}

static void *serve(void *arg)
{
    lab_dns_t *s = arg;
    unsigned char q[1500], out[1500];
    while (!atomic_load(&s->stopping)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, LAB_DNS_POLL_MS) <= 0)
            continue;
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(s->fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
        if (n <= 0)
            continue;
        uint32_t delay = 0;
        size_t len = answer(s, q, (size_t)n, out, sizeof(out), &delay);
        for (uint32_t waited = 0; waited < delay && !atomic_load(&s->stopping);
             waited += LAB_DNS_POLL_MS) {
            struct timespec ts = {0, (long)LAB_DNS_POLL_MS * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (len > 0)
            sendto(s->fd, out, len, 0, (struct sockaddr *)&from, fl);
    }
    return NULL;
}

lab_dns_t *lab_dns_start(char err[256])
{
    lab_dns_t *s = fs_xcalloc(1, sizeof(*s));
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    pthread_mutex_init(&s->mu, NULL);
    atomic_init(&s->stopping, 0);
    s->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s->fd < 0 || bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&sa, &sl) != 0) {
        snprintf(err, 256, "lab dns: cannot bind 127.0.0.1: %s", strerror(errno));
        lab_dns_stop(s);
        return NULL;
    }
    s->port = ntohs(sa.sin_port);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the thread leaves signals to the process */
    int rc = pthread_create(&s->thread, NULL, serve, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, 256, "lab dns: cannot start the thread");
        lab_dns_stop(s);
        return NULL;
    }
    s->started = 1;
    return s;
}

int lab_dns_port(const lab_dns_t *s)
{
    return s->port;
}

void lab_dns_stop(lab_dns_t *s)
{
    if (s == NULL)
        return;
    atomic_store(&s->stopping, 1);
    if (s->started)
        pthread_join(s->thread, NULL);
    if (s->fd >= 0)
        close(s->fd);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
