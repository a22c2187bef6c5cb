/* heartbeat_int.h - what the heartbeat's files share (src/owner):
 * the state of one dispatcher's heartbeat and the functions one protocol
 * calls in another. Not for use outside heartbeat*.c / hb_*.c.
 *
 *   heartbeat.c    lifecycle, the timer, and the owner's fenced writes
 *                  (claim, heartbeat, release, a claim whose fate is unknown)
 *   hb_failover.c  the standby: watch the record, failover through a lease
 *   hb_handoff.c   a new owner waits for the old one to stop acting
 *   hb_batch.c     the host's beat group: every owned dispatcher's
 *                  heartbeat in one store call per interval
 *   hb_workers.c   the worker registry while owning (R9, R10), and the
 *                  fleet's thresholds as the owner record shows them
 *   hb_taken.c     takeover notices: publish our claim, check one heard */
#ifndef DD_OWNER_HEARTBEAT_INT_H
#define DD_OWNER_HEARTBEAT_INT_H

#include "owner/owner.h"

#include "core/backoff.h"
#include "core/buf.h"
#include "metrics/metrics.h"
#include "store/store.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct dd_heartbeat {
    dd_ctx ctx;
    dd_store *s;
    dd_owner *o;
    dd_heartbeat_opts opts;
    uv_timer_t timer;
    uv_timer_t ack_timer;   /* handoff: polls for the previous owner's ack */
    int64_t ack_deadline_ms; /* monotonic */
    char ack_name[2][300];
    char wait_run[2][DD_RUN_ID_LEN]; /* the runs whose acks we wait for, in order */
    int nwait, iwait;        /* how many, and the one polled now */
    char nonce[20];          /* this process: tells our own records from a namesake's */
    bool waiting_prev;      /* handoff wait in progress (also after we lost) */
    char fwd_run[DD_RUN_ID_LEN]; /* our own ack, held until that wait is over */
    int closes;             /* timer closes pending */
    bool owning;
    bool claimed;
    bool claim_unsure; /* a claim failed without an answer (timeout, lost connection):
                        * it may have landed, and we do not know its epoch */
    uv_timer_t unsure_timer;   /* retries the read of such a record after we let go */
    uint64_t unsure_until_ms;  /* monotonic: give up then (Redis still away) */
    char run_id[DD_RUN_ID_LEN];
    char first_run_id[DD_RUN_ID_LEN]; /* workflow mode: our chain ("" marker mode) */
    int64_t epoch;
    int inflight;      /* store operations pending */
    bool closing;
    bool watching;     /* standby watch armed */
    bool failing_over; /* we asked the owner to take over; wait for the outcome */
    bool watch_reading;      /* the standby's read of the record is in flight */
    bool told_while_reading; /* a release was heard meanwhile: read again at once */
    dd_metric *m_notices;    /* dispatchd_release_notices_total */
    /* takeover notices (hb_taken.c) */
    bool taken_pending;      /* one came before our claim landed: look once it has */
    bool taken_reading;      /* the record read for one is in flight */
    bool taken_again;        /* ... and another came meanwhile */
    bool taken_resub;        /* the read in flight (or wanted) is a resubscription's look */
    bool look_wanted;        /* the group's next look reads our record (hb_batch.c) */
    dd_metric *m_taken;      /* dispatchd_takeover_notices_total{result} */
    bool releasing;    /* owner releasing: keep heartbeating until its child stopped */
    int64_t sent_us;     /* boot clock: when the write in flight went out */
    bool writing;        /* a claim or heartbeat is in flight */
    int64_t srv_now_ms;  /* Redis's clock at our last landed write */
    bool lease_after_claim; /* we hold the failover lease: release it after the claim */
    dd_backoff fo_backoff;   /* between failover attempts that were refused */
    char *workers_signal;    /* owned copy of opts.workers_signal, or NULL */
    uint64_t fo_not_before;  /* monotonic ms: no failover attempt before this */
    dd_failover_lease fo_lease;  /* the lease last asked for (owner.h) */
    uint64_t fo_lease_asked_ms;  /* monotonic: when */
    dd_rng rng;
    /* the host's beat group (hb_batch.c), or NULL; members form a list */
    dd_heartbeat_group *group;
    dd_heartbeat *grp_prev, *grp_next;
    /* worker registry, while owning */
    char **known;      /* worker server ids seen at the last check (sorted) */
    size_t nknown;
    size_t workers;    /* what we added to dispatchd_workers_registered */
    dd_metric *m_evictions, *m_registered;
    /* the owner record's threshold as last seen (ttl_ms; 0 none yet) and
     * whether it differs from ours: logged once per change, exported */
    int64_t seen_ttl_ms;
    dd_metric *m_own_threshold, *m_mismatch;
    void (*done)(void *);
    void *done_arg;
};

void dd_hb__arm(dd_heartbeat *h, int64_t delay_ms);
void dd_hb__beat_done(int st, const dd_store_owner *res, void *arg);
/* hb_batch.c: join/leave the group; whether its next tick is at or before
 * boot-clock time due_us (then the owner's next heartbeat goes with it). */
void dd_hb__group_join(dd_heartbeat_group *g, dd_heartbeat *h);
void dd_hb__group_leave(dd_heartbeat *h);
bool dd_hb__group_covers(const dd_heartbeat *h, int64_t due_us);
void dd_hb__group_missed(dd_heartbeat *h); /* a heartbeat of h failed */
bool dd_hb__group_fits(const dd_heartbeat_group *g, const dd_store *s, int64_t interval_ms);
void dd_hb__claim(dd_heartbeat *h);
void dd_hb__claimed(int st, const dd_store_owner *res, void *arg);
void dd_hb__finish_close(dd_heartbeat *h);
void dd_hb__forget_workers(dd_heartbeat *h);
void dd_hb__give_back_lease(dd_heartbeat *h);
void dd_hb__lease_given_back(int st, void *arg);
void dd_hb__lease_name(const dd_heartbeat *h, dd_buf *name);
void dd_hb__lease_set(int st, void *arg);
void dd_hb__note_ttl(dd_heartbeat *h, int64_t ttl_ms);
void dd_hb__prev_record(int st, const dd_store_hb *rec, void *arg);
void dd_hb__publish_ack(dd_heartbeat *h, const char *run_id);
bool dd_hb__reply(dd_heartbeat *h);
void dd_hb__try_failover(dd_heartbeat *h, const char *stale_run);
void dd_hb__wait_for(dd_heartbeat *h, const char *const *runs, int n);
void dd_hb__watch_done(int st, const dd_store_hb *rec, void *arg);
void dd_hb__workers_check(dd_heartbeat *h);
/* hb_taken.c: publish our landed claim; look at a notice heard before it. */
void dd_hb__announce_claim(dd_heartbeat *h);
void dd_hb__taken_after_claim(dd_heartbeat *h);
/* After a (re)subscription: an owner reads its record once (a notice may
 * have been lost meanwhile) and lets go as a notice would. */
void dd_hb__taken_resubscribed(dd_heartbeat *h);
void dd_hb__taken_read(int st, const dd_store_hb *rec, void *arg);
/* hb_batch.c: h's record is read in the group's next batched look. */
void dd_hb__group_look(dd_heartbeat *h);

#endif
