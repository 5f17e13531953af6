/* schedule.c - when each endpoint probes: a min-heap of due endpoints, a tick that starts
 * probes under max_in_flight and the handshakes_per_s token bucket, and the jobs in flight. */
#include "daemon/fleet_int.h"
#include "probes/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int heap_less(const fleet_gen_t *g, uint32_t a, uint32_t b)
{
    return g->eps[a].next_due < g->eps[b].next_due;
}

void fleet__heap_push(fleet_gen_t *g, uint32_t ep)
{
    uint32_t i = g->nheap++;
    g->heap[i] = ep;
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (!heap_less(g, g->heap[i], g->heap[parent]))
            break;
        uint32_t t = g->heap[i];
        g->heap[i] = g->heap[parent];
        g->heap[parent] = t;
        i = parent;
    }
}

static void heap_sift_down(fleet_gen_t *g, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < g->nheap && heap_less(g, g->heap[l], g->heap[m]))
            m = l;
        if (r < g->nheap && heap_less(g, g->heap[r], g->heap[m]))
            m = r;
        if (m == i)
            return;
        uint32_t t = g->heap[i];
        g->heap[i] = g->heap[m];
        g->heap[m] = t;
        i = m;
    }
}

static uint32_t heap_pop(fleet_gen_t *g)
{
    uint32_t top = g->heap[0];
    g->heap[0] = g->heap[--g->nheap];
    heap_sift_down(g, 0);
    return top;
}

void fleet__heap_rebuild(fleet_gen_t *g)
{
    g->nheap = 0;
    for (uint32_t i = 0; i < g->neps; i++)
        if (!g->eps[i].in_flight)
            g->heap[g->nheap++] = i;
    for (uint32_t i = g->nheap / 2; i-- > 0;)
        heap_sift_down(g, i);
}

static void job_link(fleet_t *f, fleet_job_t *j)
{
    j->next = f->jobs;
    if (f->jobs)
        f->jobs->prev = j;
    f->jobs = j;
}

static void job_unlink(fleet_t *f, fleet_job_t *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        f->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
}

static void on_probe_done(probe_t *p, probe_result_t *r, void *arg)
{
    (void)p;
    fleet_job_t *j = arg;
    fleet_t *f = j->f;
    fleet_gen_t *gen = j->gen;
    job_unlink(f, j);
    f->in_flight--;
    int current = gen == f->gen && !f->closing;
    if (j->ep == UINT32_MAX) {
        fleet_target_t *t = &gen->targets[j->target];
        t->in_flight = 0;
        if (current && !r->cancelled) {
            t->ok = policy_reference_answers(r);
            t->known = 1;
            fleet__render_reference(f, j->target, r);
            fleet__rh_reference(f, j->target, r);
            f->dirty = 1;
        }
    } else if (current) {
        fleet_ep_t *e = &gen->eps[j->ep];
        e->in_flight = 0;
        if (!r->cancelled)
            fleet__record_result(f, gen, j->ep, r, j->captured);
        double iv = gen->cfg->interval_s * 1000.0;
        double jit = gen->cfg->jitter * iv * (2.0 * fleet__rnd(f) - 1.0);
        e->next_due = (int64_t)uv_now(f->loop) + (int64_t)(iv + jit);
        if (r->cancelled && !f->closing)
            e->next_due = (int64_t)uv_now(f->loop);
        fleet__heap_push(gen, j->ep);
    }
    fleet__gen_unref(gen);
    free(j);
    if (!f->closing)
        fleet__tick_soon(f, 0);
    else
        fleet__job_ended_while_closing(f);
}

static void start(fleet_t *f, uint32_t ep, uint32_t ti)
{
    fleet_gen_t *g = f->gen;
    fleet_job_t *j = fs_xcalloc(1, sizeof(*j));
    j->f = f;
    j->gen = g;
    j->ep = ep;
    j->target = ti;
    const probe_opts_t *po;
    probe_opts_t local;
    if (ep == UINT32_MAX) {
        po = &g->targets[ti].pl.popts;
        g->targets[ti].in_flight = 1;
    } else {
        fleet_ep_t *e = &g->eps[ep];
        fleet_group_t *gr = &g->groups[e->group];
        e->in_flight = 1;
        po = &gr->pl.popts;
        int64_t now_s = fs_wall_ms() / 1000;
        if (gr->want_capture || now_s - gr->detail_at >= FLEET_DETAIL_REFRESH_S) {
            /* capture the chain only when the group's detail is due: it costs allocations */
            local = gr->pl.popts;
            local.capture_chain = 1;
            po = &local;
            j->captured = 1;
            gr->detail_at = now_s;
            gr->want_capture = 0;
        }
    }
    g->refs++;
    job_link(f, j);
    f->in_flight++;
    int rc = probe_start(&j->probe, f->loop, po, on_probe_done, j);
    if (rc < 0) {
        /* Cannot happen with a validated config (https always has a context); recover. */
        fleet__log(f, "probe could not start: %s", uv_strerror(rc));
        job_unlink(f, j);
        f->in_flight--;
        g->refs--;
        if (ep != UINT32_MAX) {
            g->eps[ep].in_flight = 0;
            g->eps[ep].next_due = (int64_t)uv_now(f->loop) + 1000;
            fleet__heap_push(g, ep);
        } else {
            g->targets[ti].in_flight = 0;
        }
        free(j);
    }
}

void fleet__start_job(fleet_t *f, uint32_t ep)
{
    start(f, ep, 0);
}

void fleet__start_reference(fleet_t *f, size_t ti)
{
    if (!f->gen->targets[ti].in_flight && !f->closing)
        start(f, UINT32_MAX, (uint32_t)ti);
}

static void on_tick(uv_timer_t *t)
{
    fleet_t *f = container_of(t, fleet_t, tick);
    fleet_gen_t *g = f->gen;
    const cfg_limits_t *lim = &g->cfg->limits;
    uint64_t now = uv_now(f->loop);
    /* Token bucket: handshakes_per_s, with a burst of a tenth of a second's worth. */
    double burst = lim->handshakes_per_s < 1 ? 1 : lim->handshakes_per_s / 10.0 + 1;
    f->tokens += (double)(now - f->tokens_at) * lim->handshakes_per_s / 1000.0;
    if (f->tokens > burst)
        f->tokens = burst;
    f->tokens_at = now;
    /* profile_mismatch needs the reference's verdict: only endpoints whose profile differs
     * from the reference binding wait for its first result; the others probe at once. */
    for (size_t ti = 0; ti < g->ntargets; ti++)
        if (!g->targets[ti].known)
            fleet__start_reference(f, ti);
    while (f->in_flight < lim->max_in_flight && g->nheap > 0 &&
           g->eps[g->heap[0]].next_due <= (int64_t)now && f->tokens >= 1.0) {
        uint32_t ep = heap_pop(g);
        const policy_t *pl = &g->groups[g->eps[ep].group].pl;
        if (pl->profile_differs && !g->targets[pl->target_idx].known) {
            g->eps[ep].next_due = (int64_t)now + 100;
            fleet__heap_push(g, ep);
            continue;
        }
        f->tokens -= 1.0;
        fleet__start_job(f, ep);
    }
    if (g->nheap == 0 || f->in_flight >= lim->max_in_flight)
        return; /* a completion re-arms the tick */
    int64_t due = g->eps[g->heap[0]].next_due - (int64_t)now;
    uint64_t wait = due > 0 ? (uint64_t)due : 0;
    if (f->tokens < 1.0) {
        double tw_ms = ceil((1.0 - f->tokens) * 1000.0 / lim->handshakes_per_s);
        uint64_t tw =
            tw_ms > 60000 ? 60000 : (uint64_t)tw_ms; /* tiny rates: re-check a minute on */
        if (tw > wait)
            wait = tw;
    }
    uv_timer_start(&f->tick, on_tick, wait ? wait : 1, 0);
}

void fleet__tick_soon(fleet_t *f, uint64_t ms)
{
    if (f->closing)
        return;
    if (uv_is_active((uv_handle_t *)&f->tick) && ms > 0)
        return;
    uv_timer_start(&f->tick, on_tick, ms, 0);
}

static void on_ref_timer(uv_timer_t *t)
{
    fleet_t *f = container_of(t, fleet_t, ref_timer);
    for (size_t ti = 0; ti < f->gen->ntargets; ti++)
        fleet__start_reference(f, ti);
    fleet__rh_run(f); /* the revocation URLs, live, every cycle */
}

void fleet__schedule_reference(fleet_t *f)
{
    uint64_t iv = (uint64_t)(f->gen->cfg->interval_s * 1000.0);
    uv_timer_start(&f->ref_timer, on_ref_timer, 0, iv ? iv : 1000);
}

/* The first cycle runs as fast as the limits allow (the token bucket and max_in_flight protect
 * the server), spread over the time the rate needs anyway (at least 1 s, at most
 * jitter * interval) so endpoints do not start in lockstep; later cycles spread further with
 * the per-probe jitter. An admin mid-rollover wants the first picture now, not in an hour. */
double fleet__first_cycle_spread_ms(const fleet_gen_t *g, uint32_t n)
{
    double spread = (double)n / g->cfg->limits.handshakes_per_s * 1000.0;
    double cap = g->cfg->jitter * g->cfg->interval_s * 1000.0;
    if (spread > cap)
        spread = cap;
    return spread < 1000 ? 1000 : spread;
}

void fleet__initial_schedule(fleet_t *f, fleet_gen_t *g)
{
    double spread = fleet__first_cycle_spread_ms(g, g->neps);
    int64_t now = (int64_t)uv_now(f->loop);
    for (uint32_t i = 0; i < g->neps; i++)
        g->eps[i].next_due = now + (int64_t)(fleet__rnd(f) * spread);
    fleet__heap_rebuild(g);
}
