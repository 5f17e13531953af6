/* backend.c - agreement of the addresses behind one target (see backend.h). */
#include "probes/backend.h"

#include <stdio.h>
#include <strings.h>

static int recent(const backend_record_t *r, int64_t now, int64_t max_age_s)
{
    return r->last_seen != 0 && (max_age_s <= 0 || r->last_seen >= now - max_age_s);
}

static int has_leaf(const backend_record_t *r)
{
    return r->leaf_sha1 != NULL && r->leaf_sha1[0] != '\0';
}

static void outcome(const backend_record_t *r, char *buf, size_t n)
{
    if (r->online)
        snprintf(buf, n, "%s is online", r->addr);
    else
        snprintf(buf, n, "%s is offline (%s)", r->addr, fs_cause_id(r->cause));
}

int backend_inconsistent(const backend_record_t *r, size_t n, int64_t now, int64_t max_age_s,
                         char why[256])
{
    const backend_record_t *first = NULL, *first_leaf = NULL;
    /* Certificates first: a node with the old binding is the case this warning exists for. */
    for (size_t i = 0; i < n; i++) {
        if (!recent(&r[i], now, max_age_s) || !has_leaf(&r[i]))
            continue;
        if (first_leaf == NULL) {
            first_leaf = &r[i];
        } else if (strcasecmp(first_leaf->leaf_sha1, r[i].leaf_sha1) != 0) {
            if (why != NULL)
                snprintf(why, 256, "%s presents leaf %s; %s presents leaf %s", r[i].addr,
                         r[i].leaf_sha1, first_leaf->addr, first_leaf->leaf_sha1);
            return 1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!recent(&r[i], now, max_age_s))
            continue;
        if (first == NULL) {
            first = &r[i];
        } else if (!first->online != !r[i].online ||
                   (!first->online && first->cause != r[i].cause)) {
            if (why != NULL) {
                char a[128], b[128];
                outcome(first, a, sizeof(a));
                outcome(&r[i], b, sizeof(b));
                snprintf(why, 256, "%s; %s", a, b);
            }
            return 1;
        }
    }
    return 0;
}
