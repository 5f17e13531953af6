/* snapshot.c - lifetime of the immutable fleet snapshot the loop publishes to the API
 * (reference counting, freeing what it owns) and the names its fields encode. */
#include "web/snapshot.h"

#include <stdio.h>
#include <stdlib.h>

#include "probes/util.h"

const double snap_hist_bounds[SNAP_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                    0.5,   1,    2.5,   5,    10,  30};

static const char *const state_names[] = {"pending", "online", "offline"};
_Static_assert(FS_ARRAY_SIZE(state_names) == SNAP_STATE_COUNT, "state names out of sync");

snap_t *snap_new(void)
{
    snap_t *s = fs_xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    return s;
}

snap_t *snap_ref(snap_t *s)
{
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void snap_unref(snap_t *s)
{
    if (s == NULL)
        return;
    /* acq_rel: the freeing thread must see every write made before the other unrefs. */
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < s->ngroups; i++) {
        free(s->groups[i].name);
        free(s->groups[i].target);
        free(s->groups[i].message);
        for (int c = 0; c < FS_CAUSE_COUNT; c++) {
            free(s->groups[i].cause_message[c]);
            free(s->groups[i].cause_detail[c]);
        }
    }
    free(atomic_load(&s->status_body));
    free(atomic_load(&s->targets_body));
    free(atomic_load(&s->metrics_body));
    free(s->groups);
    free(s->endpoints);
    free(s->events);
    free(s->event_log_path);
    free(s->event_log_error);
    free(s->daemon_warnings);
    for (size_t i = 0; i < s->ntargets; i++)
        snap_target_unref(s->targets[i]);
    free(s->targets);
    for (size_t i = 0; i < s->ntargets && s->revocation != NULL; i++)
        snap_revhealth_unref(s->revocation[i]);
    free(s->revocation);
    free(s->state_db.path);
    free(s->state_db.moved_to);
    free(s->state_db.last_error);
    free(s->vantage);
    free(s->shard);
    free(s);
}

snap_target_t *snap_target_new(void)
{
    snap_target_t *t = fs_xcalloc(1, sizeof(*t));
    atomic_init(&t->refs, 1);
    return t;
}

snap_target_t *snap_target_ref(snap_target_t *t)
{
    atomic_fetch_add_explicit(&t->refs, 1, memory_order_relaxed);
    return t;
}

void snap_target_unref(snap_target_t *t)
{
    if (t == NULL || atomic_fetch_sub_explicit(&t->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(t->name);
    free(t->url);
    free(t->profile);
    free(t->trust);
    chain_info_free(&t->chain);
    free(t->urls);
    free(t);
}

snap_revhealth_t *snap_revhealth_new(void)
{
    snap_revhealth_t *h = fs_xcalloc(1, sizeof(*h));
    atomic_init(&h->refs, 1);
    return h;
}

snap_revhealth_t *snap_revhealth_ref(snap_revhealth_t *h)
{
    atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
    return h;
}

void snap_revhealth_unref(snap_revhealth_t *h)
{
    if (h == NULL || atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < h->nurls; i++) {
        for (size_t g = 0; g < h->urls[i].ngroups; g++)
            free(h->urls[i].groups[g].name);
        free(h->urls[i].groups);
    }
    free(h->urls);
    free(h);
}

void snap_endpoint_id(const snap_t *s, const snap_endpoint_t *e, char *buf, size_t len)
{
    const char *g =
        e->group < s->ngroups && s->groups[e->group].name != NULL ? s->groups[e->group].name : "?";
    snprintf(buf, len, "%s-%05u", g, (unsigned)e->index);
}

static const char *const db_status_names[] = {"off", "ok", "failing", "unavailable"};
_Static_assert(FS_ARRAY_SIZE(db_status_names) == SNAP_DB_COUNT, "db status names out of sync");

const char *snap_db_status_name(int status)
{
    if (status < 0 || status >= SNAP_DB_COUNT)
        return "unknown";
    return db_status_names[status];
}

const char *snap_state_name(int state)
{
    if (state < 0 || state >= SNAP_STATE_COUNT)
        return "unknown";
    return state_names[state];
}
