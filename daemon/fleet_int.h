/* fleet_int.h - what the files of the fleet share (fleet.h is the public side): the runtime
 * structures of a generation, its endpoints and jobs, and the fleet__ functions each file
 * gives the others. Only daemon/fleet.c, schedule.c, aggregate.c, reference.c, revhealth.c,
 * eventlog.c, reload.c and restore.c include it. */
#ifndef FS_FLEET_INT_H
#define FS_FLEET_INT_H

#include "daemon/fleet.h"
#include "daemon/policy.h"
#include "probes/dns.h"
#include "probes/probe.h"
#include "probes/revoke.h"
#include "probes/vcache.h"

#include <stdint.h>

#define FLEET_EVENTS_MAX 4096
#define FLEET_DETAIL_REFRESH_S 10 /* a group's detail JSON is rebuilt at most this often */

/* One simulated endpoint: kept compact, there may be millions. */
typedef struct fleet_ep_s {
    int64_t next_due; /* uv_now() ms */
    int64_t since;    /* state change, seconds since the epoch (0: never) */
    int64_t last_probe;
    uint32_t timings_ms[SNAP_PH_COUNT];
    uint32_t warnings;
    uint32_t index; /* index within its group (the id's number) */
    uint16_t group;
    uint8_t state;
    uint8_t cause;
    uint8_t in_flight;
    uint8_t restored; /* from the state database, not confirmed by a probe yet */
} fleet_ep_t;

typedef struct fleet_group_s {
    const cfg_group_t *cfg;
    policy_t pl; /* what its probes use (policy.h); never moved once built */
    snap_counts_t counts;
    /* Per primary cause (FS_CAUSE_NONE: online), the last message of a probe of this group that
     * ended so, and the detail document of the last such probe that was captured (rendered once,
     * web/render.h render_detail): an endpoint is shown its own kind of outcome. */
    char *msg[FS_CAUSE_COUNT];
    char *detail[FS_CAUSE_COUNT];
    int64_t detail_at;       /* last time a probe of this group captured its chain */
    int want_capture;        /* an outcome without a detail appeared: capture the next probe */
    int64_t chain_not_after; /* for the forecast, from the last probe that got that far */
    int64_t chain_not_before;
    int64_t crl_next_update;
    /* What its last group event said (SPEC §5): any endpoint offline, and the dominant cause. */
    uint8_t ev_state; /* SNAP_PENDING until the first verdict */
    uint8_t ev_cause;
} fleet_group_t;

typedef struct fleet_gen_s {
    int refs;
    cfg_t *cfg;
    fleet_group_t *groups;
    size_t ngroups;
    fleet_ep_t *eps;
    uint32_t neps;
    uint32_t *heap; /* endpoint indices, min-heap on next_due */
    uint32_t nheap;
    struct fleet_target_s *targets; /* one per cfg->targets, same order */
    size_t ntargets;
} fleet_gen_t;

/* A target's reference probe (SPEC §4.1): its settings and what it last said. profile_mismatch
 * of the target's profiles is judged against it alone. */
typedef struct fleet_target_s {
    policy_t pl;
    int in_flight;
    int ok;             /* the binding answered and validated last time */
    int known;          /* a result exists */
    snap_target_t *rec; /* its last probe, shared with the snapshots; NULL: none yet */
    snap_backend_t backends[FS_RESOLVE_MAX_ADDRS]; /* per address of its name, last seen */
    size_t nbackends;
    int inconsistent; /* the addresses disagree now: backend_inconsistent */
    char why[256];
} fleet_target_t;

/* How long an address of a target's name counts after a probe last reached it: two intervals and
 * half a minute (backend_inconsistent, the leaf vote of /metrics). */
#define FLEET_BACKEND_MAX_AGE_S(cfg) ((int64_t)(2 * (cfg)->interval_s) + 30)

/* A probe that reached an address of target t's binding (the reference, or an endpoint whose
 * profile is that binding) updates t's record of it; returns 1 when the addresses disagree. */
int fleet__target_backend(fleet_target_t *t, const probe_result_t *r, int64_t max_age_s,
                          int *changed);
/* After an endpoint probe changed target ti's address records: its /targets record (shared with
 * published snapshots, so never written) is replaced by a copy that shows them. */
void fleet__target_backends_changed(fleet_t *f, size_t ti);

/* What a generation's probe options point at: the fleet's retrieval context and verdict cache.
 * Captured on the loop, so a generation can be built on another thread. */
typedef struct gen_env_s {
    rev_ctx_t *rev;
    vcache_t *vcache;
    dns_cache_t *dns;
    int dns_override_only;
} gen_env_t;

/* A reload in preparation (fleet.h): built off the loop, applied on it. */
struct fleet_next_s {
    gen_env_t env;
    fleet_gen_t *old; /* the generation running at fleet_reload_begin, referenced */
    fleet_gen_t *gen; /* built by fleet_reload_build, NULL before */
    int32_t *match;   /* per new group: the old group whose endpoints it continues, or -1 */
    int event_fd;     /* the reopened event log (-1: none), and whether it ends mid-line */
    int event_partial;
};

typedef struct fleet_rh_s fleet_rh_t;

typedef struct fleet_job_s {
    fleet_t *f;
    fleet_gen_t *gen;
    uint32_t ep; /* UINT32_MAX: the reference probe of target `target` */
    uint32_t target;
    int captured; /* the probe captures its chain and retrievals: it becomes a group detail */
    probe_t *probe;
    struct fleet_job_s *prev, *next;
} fleet_job_t;

struct fleet_s {
    uv_loop_t *loop;
    fleet_opts_t o;
    fleet_gen_t *gen;
    rev_ctx_t *rev;
    vcache_t *vcache;
    dns_cache_t *dns; /* system-resolved names, per (host, network view), with round robin */
    uv_timer_t tick;
    uv_timer_t publish_timer;
    uv_timer_t ref_timer;
    int closing, pending_closes;
    int rev_closing; /* stopping: the retrieval context is closing */
    void (*stop_done)(void *arg);
    void *stop_arg;
    fleet_job_t *jobs; /* in flight, all generations */
    uint32_t in_flight;
    double tokens;
    uint64_t tokens_at;
    snap_counts_t totals;
    uint64_t probes_total;
    uint64_t probes_by_result[SNAP_STATE_COUNT];
    uint64_t hist[SNAP_PH_COUNT][SNAP_HIST_BUCKETS + 1]; /* per bucket, not cumulative */
    double hist_sum[SNAP_PH_COUNT];
    snap_event_t events[FLEET_EVENTS_MAX];
    uint64_t event_seq;
    int event_fd;           /* the event log, O_APPEND; -1: none */
    int event_partial;      /* the file does not end at a line boundary */
    int event_failing;      /* the last write failed (logged once per failure streak) */
    uint64_t event_dropped; /* lines lost to failed or short writes, since start */
    char event_error[128];  /* the last write error, "" when none yet */
    int64_t event_error_at; /* its time, seconds since the epoch */
    snap_warning_t warnings[CFG_MAX_WARNINGS + 1]; /* daemon.warnings of /status */
    size_t nwarnings;
    cfg_warning_t listen_warning; /* from the configuration the API was started with */
    int64_t started_at;
    int dirty;
    uint64_t rng;
    fleet_rh_t *rh; /* revocation-source health (revhealth.c); NULL before a target's chain */
};

/* fleet.c: lifecycle and generations */
void fleet__log(const fleet_t *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
double fleet__rnd(fleet_t *f); /* [0, 1): schedule jitter */
void fleet__gen_unref(fleet_gen_t *g);
/* Builds the runtime of cfg from env only, so it may run on any thread. Takes cfg on success. */
int fleet__gen_build(const gen_env_t *env, cfg_t *cfg, fleet_gen_t **out, char err[256]);
void fleet__update_warnings(fleet_t *f, const cfg_t *cfg);
void fleet__cancel_jobs(fleet_t *f, fleet_gen_t *only); /* only NULL: every generation's */
/* A job ended while stopping: the stop goes on when it was the last one. */
void fleet__job_ended_while_closing(fleet_t *f);

/* schedule.c: the heap of due endpoints, the tick (limits and token bucket), jobs */
void fleet__heap_push(fleet_gen_t *g, uint32_t ep);
void fleet__heap_rebuild(fleet_gen_t *g);
void fleet__start_job(fleet_t *f, uint32_t ep);     /* an endpoint's probe */
void fleet__start_reference(fleet_t *f, size_t ti); /* target ti's, unless one is in flight */
void fleet__tick_soon(fleet_t *f, uint64_t ms);
void fleet__schedule_reference(fleet_t *f);
double fleet__first_cycle_spread_ms(const fleet_gen_t *g, uint32_t n);
void fleet__initial_schedule(fleet_t *f, fleet_gen_t *g);

/* aggregate.c: counters, events, snapshots */
void fleet__counts_add(snap_counts_t *c, const fleet_ep_t *e, int sign);
void fleet__recount(fleet_t *f);
void fleet__ep_id(const fleet_gen_t *g, const fleet_ep_t *e, char *buf, size_t n);
/* target: the name of the subject's group's target (NULL: none). */
void fleet__push_event(fleet_t *f, const char *subject, const char *target, int old_state,
                       int new_state, int cause, const char *message);
void fleet__observe(fleet_t *f, const probe_result_t *r);
/* A group's split for group events: any endpoint offline (SNAP_OFFLINE) or none, and its
 * dominant cause. 0 while nothing of it is probed. */
int fleet__group_split(const fleet_group_t *gr, uint8_t *state, uint8_t *cause);
void fleet__record_result(fleet_t *f, fleet_gen_t *gen, uint32_t ep, const probe_result_t *r,
                          int captured);
void fleet__on_publish_timer(uv_timer_t *t);

/* reference.c: target ti's reference probe recorded in its fleet_target_t, from which web/
 * renders /api/v1/targets and the certificate and CRL gauges */
void fleet__render_reference(fleet_t *f, size_t ti, const probe_result_t *r);

/* revhealth.c: each target's chain's revocation URLs checked live each cycle */
/* Target ti's reference probe ended: its chain (r->built) is the one checked from now on; a new
 * chain is checked at once. */
void fleet__rh_reference(fleet_t *f, size_t ti, const probe_result_t *r);
/* Checks every target's URLs now (a cycle, a scan request); during a round, once more after. */
void fleet__rh_run(fleet_t *f);
/* The last round's record of target `name` (a new reference), or NULL. */
snap_revhealth_t *fleet__rh_record(fleet_t *f, const char *name);
/* Stops checking. Returns 1 when done(arg) will run once the checker's handles closed, 0 when
 * there was nothing to close (done is not called). */
int fleet__rh_close(fleet_t *f, void (*done)(void *arg), void *arg);

/* eventlog.c: the agent.log-format event file */
void fleet__event_log_line(fleet_t *f, const snap_event_t *ev, const char *message);
/* A line of the event file that is no state change (agent.log's "Configuration updated
 * successfully" after a reload), not in the events ring. */
void fleet__event_log_note(fleet_t *f, const char *subject, const char *message);
/* Opens cfg's event log for appending into *fd (-1 when none is configured); *partial tells
 * whether the file ends inside a line. */
int fleet__open_event_log(const cfg_t *cfg, int *fd, int *partial, char err[256]);

#endif
