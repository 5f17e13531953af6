/* probe_int.h - what the files of the probe state machine share: probe.c (states, timer, close,
 * I/O, TLS, request), probe_addr.c (resolve, connect with failover) and probe_verify.c (chain
 * verification, AIA, revocation). Not for use outside them. */
#ifndef FS_PROBE_INT_H
#define FS_PROBE_INT_H

#include "probes/probe.h"

#define PROBE_MAX_RESPONSE_HEAD 1024 /* the status line, after any 1xx interim responses */
/* What WinHTTP reads of a response head at most (WINHTTP_OPTION_MAX_RESPONSE_HEADER_SIZE's
 * default, 64 KiB): past it the agent's request fails with ERROR_WINHTTP_HEADER_SIZE_OVERFLOW.
 * Only the status line is kept; the header lines after it are counted, not stored. */
#define PROBE_MAX_HEAD_BYTES 65536

typedef enum {
    PS_INIT,
    PS_RESOLVE,
    PS_CONNECT,
    PS_TLS,
    PS_AIA,
    PS_REVOCATION,
    PS_REQUEST,
    PS_CLOSING,
    PS_COUNT
} probe_state_t;

struct probe_s {
    uv_loop_t *loop;
    probe_opts_t o;
    probe_cb cb;
    void *arg;
    probe_state_t state;
    uv_timer_t timer;
    uv_tcp_t tcp;
    uv_connect_t conn;
    int tcp_inited;
    dns_req_t dns;
    int dns_waiting;      /* dns is a request waiting in a resolve cache */
    dns_cache_t *own_dns; /* the probe's own cache when opts.dns is NULL */
    dns_addrs_t addrs;    /* the addresses of the name, as resolved */
    size_t first_addr;    /* where this probe starts in addrs (round robin) */
    uint64_t connect_end; /* uv_now() ms when the connect timeout is spent */
    uint64_t attempt_t0;  /* uv_hrtime() ns when the current connect began */
    int pending_closes;
    int peer_eof;
    uint64_t deadline;     /* uv_now() ms */
    uint64_t phase_start;  /* uv_hrtime() ns */
    uint64_t t0;           /* uv_hrtime() ns */
    int phase_timeout_hit; /* the phase timeout (not the deadline) fired */
    tlsc_t tls;
    int tls_inited;
    rev_job_t *rev_job;
    STACK_OF(X509) * extra; /* endpoint intermediates + AIA-fetched issuers */
    chain_verdict_t verdict;
    int aia_tried;
    rev_policy_t pol;         /* the group's policy, its budgets cut to what the deadline leaves */
    uint64_t retrieval_start; /* uv_now() when AIA/CRL retrieval began: one cumulative budget */
    char resp[PROBE_MAX_RESPONSE_HEAD];
    size_t resp_len;
    size_t head_bytes; /* of the response head, once the final status line is parsed */
    int head_at;       /* HEAD_*: where the scan for the empty line ending the head is */
    probe_result_t r;
};

/* ---- probe.c ---- */

/* Ends the probe with cause and a message (nothing once closing): closes its handles; the
 * callback fires from the last close. */
void probe__finish(probe_t *p, fs_cause_t cause, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The single state transition: closes the previous phase's timing, arms the timer with the
 * phase timeout bounded by the deadline. */
void probe__set_state(probe_t *p, probe_state_t s, uint32_t phase_timeout_ms);
/* Arms the timer for ms, bounded by the deadline; phase_timeout_hit tells which one fires. */
void probe__arm_timer(probe_t *p, uint64_t ms);
/* Frees the probe after its callback once no close is pending. */
void probe__maybe_free(probe_t *p);
/* An error that means the server reset or aborted an established connection. */
int probe__is_reset(int err);
/* The connection is up: the TLS handshake (https) or the request (http). */
void probe__start_tls(probe_t *p);
/* The last phase: GET path when the profile has one, else success. */
void probe__start_request(probe_t *p);

/* ---- probe_addr.c ---- */

void probe__start_resolve(probe_t *p);
/* Connects to p->addrs from this probe's place in the rotation. */
void probe__start_connect(probe_t *p);
/* The current connect attempt failed with err (the connect timer also lands here). */
void probe__attempt_failed(probe_t *p, int err);

/* ---- probe_verify.c ---- */

/* Verifies the presented chain (handshake's or opts.presented), then AIA, then revocation. */
void probe__start_verify(probe_t *p);

#endif
