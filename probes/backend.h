/* backend.h - whether the addresses behind one target agree (SPEC §4.1, the backend_inconsistent
 * warning): the same leaf certificate and the same outcome. A probe sees one address; the caller
 * keeps a record per (target, address) and asks this pure function. */
#ifndef FS_BACKEND_H
#define FS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "probes/causes.h"

typedef struct backend_record_s {
    const char *addr;      /* the address (borrowed) */
    const char *leaf_sha1; /* thumbprint of the leaf it presented (probe_result_t.leaf_sha1), NULL
                              or "" when none was seen (no handshake) */
    int online;
    fs_cause_t cause;  /* FS_CAUSE_NONE when online */
    int64_t last_seen; /* when a probe last reached this address (seconds), 0: never */
} backend_record_t;

/* Returns 1 when two of the records seen within max_age_s before now (max_age_s <= 0: every
 * record with a last_seen) disagree: they present different leaf certificates (among those that
 * presented one; thumbprints compare case-insensitively), or one is online and the other
 * offline, or both are offline for different causes. Older records do not count: an address DNS
 * no longer gives, or a node not probed since the others were rebound, must not keep the warning
 * (about two probe intervals is a fair max_age_s). Fewer than two recent records: 0. When it
 * returns 1 and why is not NULL, why names the two addresses and how they differ:
 * "127.0.0.2 presents leaf 2B81...; 127.0.0.1 presents leaf E65E..." or
 * "127.0.0.1 is online; 127.0.0.2 is offline (connect_refused)". */
int backend_inconsistent(const backend_record_t *r, size_t n, int64_t now, int64_t max_age_s,
                         char why[256]);

#endif
