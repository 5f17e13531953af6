/* dnsserver.h - a loopback DNS server over UDP for the resolve-cache tests: A and AAAA answers
 * with chosen TTLs, NXDOMAIN, SERVFAIL or silence per name, and a count of the queries. */
#ifndef LAB_DNSSERVER_H
#define LAB_DNSSERVER_H

#include <stdint.h>

typedef enum lab_dns_mode_e {
    LAB_DNS_ANSWER,   /* the name's A/AAAA records (an empty answer for a type it lacks) */
    LAB_DNS_NXDOMAIN, /* also what a name never set gets */
    LAB_DNS_SERVFAIL,
    LAB_DNS_DROP, /* no answer at all: the client times out */
} lab_dns_mode_t;

typedef struct lab_dns_s lab_dns_t;

/* Starts a server on 127.0.0.1, an ephemeral UDP port, with a thread that answers each query
 * after the name's delay (queries are answered one at a time). Returns NULL with err. */
lab_dns_t *lab_dns_start(char err[256]);
int lab_dns_port(const lab_dns_t *s);
/* Sets what name (case-insensitive) gets: addrs is a comma-separated list of IPv4 and IPv6
 * literals (A and AAAA records) or NULL, each record with this TTL, the answer sent delay_ms
 * after the query. Thread-safe; replaces an earlier setting. Returns 0 or -1 with err. */
int lab_dns_set(lab_dns_t *s, const char *name, lab_dns_mode_t mode, uint32_t ttl,
                const char *addrs, uint32_t delay_ms, char err[256]);
/* Queries received for name (any type) so far. Thread-safe. */
unsigned lab_dns_queries(lab_dns_t *s, const char *name);
/* Stops, joins, frees. NULL is a no-op. */
void lab_dns_stop(lab_dns_t *s);

#endif
