/* restore.c - what survives a restart, on the fleet's side (fleet.h): endpoint states, events
 * and the retrieval cache taken back from the state database at start, and the cache's new
 * retrievals handed to it each tick. The database itself is daemon/store.c. */
#include "daemon/fleet_int.h"
#include "daemon/store.h"
#include "probes/util.h"

#include <stdlib.h>
#include <string.h>

static const fleet_gen_t *sort_gen; /* qsort has no argument: restore runs on the loop only */

static int by_name(const void *a, const void *b)
{
    return strcmp(sort_gen->groups[*(const uint32_t *)a].cfg->name,
                  sort_gen->groups[*(const uint32_t *)b].cfg->name);
}

/* The fleet group named name, through order (group indices sorted by name), or -1. */
static long find_group(const fleet_gen_t *g, const uint32_t *order, const char *name)
{
    size_t lo = 0, hi = g->ngroups;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(g->groups[order[mid]].cfg->name, name);
        if (c == 0)
            return order[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Group indices sorted by name, for find_group; the caller frees. */
static uint32_t *groups_by_name(const fleet_gen_t *g)
{
    uint32_t *order = fs_xmalloc((g->ngroups ? g->ngroups : 1) * sizeof(*order));
    for (uint32_t i = 0; i < g->ngroups; i++)
        order[i] = i;
    sort_gen = g;
    qsort(order, g->ngroups, sizeof(*order), by_name);
    sort_gen = NULL;
    return order;
}

/* Endpoint states by (group name, index): a group's endpoints are contiguous in the generation,
 * by index, and the saved ones are ordered by group name then index. */
static uint32_t restore_endpoints(fleet_gen_t *g, const uint32_t *order, const store_saved_t *sv)
{
    uint32_t *start = fs_xcalloc(g->ngroups + 1, sizeof(*start)), n = 0;
    for (uint32_t i = 0, pos = 0; i <= g->ngroups; i++) {
        start[i] = pos;
        while (i < g->ngroups && pos < g->neps && g->eps[pos].group == i)
            pos++;
    }
    long gi = -1;
    uint32_t last_group = UINT32_MAX, cur = 0;
    for (size_t k = 0; k < sv->neps; k++) {
        const store_saved_ep_t *s = &sv->eps[k];
        if (s->group != last_group) {
            last_group = s->group;
            gi = find_group(g, order, sv->groups[s->group]);
            cur = gi >= 0 ? start[gi] : 0;
        }
        if (gi < 0)
            continue; /* a group no longer configured */
        while (cur < start[gi + 1] && g->eps[cur].index < s->index)
            cur++;
        if (cur == start[gi + 1] || g->eps[cur].index != s->index)
            continue; /* an endpoint no longer in this group or shard */
        fleet_ep_t *e = &g->eps[cur];
        e->state = s->state;
        e->cause = s->cause;
        e->warnings = s->warnings;
        e->since = s->since;
        e->last_probe = s->last_probe;
        e->restored = 1;
        n++;
    }
    free(start);
    return n;
}

/* The database keeps no target with an event: a restored event names the target its group
 * belongs to now ("" when the group is gone). Subjects are "group:<name>" or "<name>-<index>". */
static void restore_event_target(const fleet_gen_t *g, const uint32_t *order, snap_event_t *ev)
{
    char name[sizeof(ev->subject) + 1];
    size_t n = strnlen(ev->subject, sizeof(ev->subject));
    memcpy(name, ev->subject, n);
    name[n] = '\0';
    char *dash = strrchr(name, '-');
    if (n > 6 && memcmp(name, "group:", 6) == 0)
        memmove(name, name + 6, n - 6 + 1);
    else if (dash != NULL)
        *dash = '\0';
    else
        name[0] = '\0';
    long gi = name[0] != '\0' ? find_group(g, order, name) : -1;
    fs_strlcpy(ev->target, gi >= 0 ? g->cfg->targets[g->groups[gi].pl.target_idx].name : "",
               sizeof(ev->target));
}

void fleet_restore(fleet_t *f, const store_saved_t *sv, fleet_restored_t *counts)
{
    fleet_restored_t c = {0};
    uint32_t *order = groups_by_name(f->gen);
    c.endpoints = restore_endpoints(f->gen, order, sv);
    fleet__recount(f);
    /* restored groups do not announce their state again: their group events were written */
    for (size_t gi = 0; gi < f->gen->ngroups; gi++) {
        fleet_group_t *gr = &f->gen->groups[gi];
        fleet__group_split(gr, &gr->ev_state, &gr->ev_cause);
    }
    /* The ring holds the newest events in the slots before event_seq (fleet__push_event puts seq
     * q in slot (q - 1) % FLEET_EVENTS_MAX); their own numbers may have gaps, which the snapshot
     * keeps (STORE_SEQ_GAP), and slots left empty are skipped by fleet_publish. */
    if (sv->event_seq > f->event_seq) {
        size_t n = sv->nevents < FLEET_EVENTS_MAX ? sv->nevents : FLEET_EVENTS_MAX;
        if (n > sv->event_seq) /* never: the numbers are distinct and at most event_seq */
            n = (size_t)sv->event_seq;
        const snap_event_t *from = sv->events + (sv->nevents - n);
        memset(f->events, 0, sizeof(f->events));
        f->event_seq = sv->event_seq;
        for (size_t i = 0; i < n; i++) {
            snap_event_t *ev = &f->events[(f->event_seq - n + i) % FLEET_EVENTS_MAX];
            *ev = from[i];
            restore_event_target(f->gen, order, ev);
        }
        c.events = (uint32_t)n;
    }
    free(order);
    for (size_t i = 0; i < sv->ncache; i++)
        c.cache += rev_cache_import(f->rev, &sv->cache[i]) == 0;
    f->dirty = 1;
    if (c.endpoints + c.events + c.cache > 0)
        fleet__log(f,
                   "restored from the state database: %u endpoint states (confirmed by their next "
                   "probe), %u events (next seq %llu), %u cached CRL/OCSP/AIA responses",
                   c.endpoints, c.events, (unsigned long long)f->event_seq + 1, c.cache);
    if (counts != NULL)
        *counts = c;
}

size_t fleet_cache_export(fleet_t *f, uint64_t *cursor,
                          void (*fn)(void *arg, const rev_cache_item_t *it), void *arg)
{
    return f->rev != NULL && !f->rev_closing ? rev_cache_export(f->rev, cursor, fn, arg) : 0;
}
