/*
 * authq: the Argon2id verifications of AUTH, off the event loop (issue 15). Up to AUTH_WORKERS
 * threads (authq_workers_for: one core is left to the loop) take jobs from a queue of at most AUTH_QUEUE_MAX; a finished job goes to a done
 * queue and the eventfd `efd` is written, which the loop reads through io_uring (as a plugin's
 * results come back) and then collects the jobs with authq_done().
 *
 * A job for the very same stored hash and secret as one queued or running follows it and
 * gets its answer (no KDF of its own): clients of one agent connecting at once cost one
 * Argon2id, and a flood repeating one guess costs one per guess in flight.
 *
 * A job owns copies of everything the KDF needs (salt, key, limits, the secret): the loop may
 * reload the agents or close the client meanwhile, and the job still reads only its own
 * memory. The client is named by index and generation; the loop checks both when the job
 * comes back. Job slots are allocated once, in the struct: no allocation per AUTH.
 *
 * Threads: authq_get/submit/done/put on the loop's thread only; the workers touch a job only
 * between submit and done. Workers keep the loop's weight (lowered workers, nice 10, starved
 * on a busy host: one AUTH took a second at load 20 on 2 cores) but run SCHED_BATCH (never
 * preempting on wakeup), and the loop asks for short slices (authq_sched_loop): measured,
 * the loop otherwise waited ~12 ms per wakeup in the run queue behind a hashing worker.
 */
#ifndef SG_AUTHQ_H
#define SG_AUTHQ_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "limits.h"

typedef struct authq_job {
    /* in: */
    uint32_t client_idx, client_gen;
    uint32_t addr; /* the client's IPv4 address, network order */
    bool fake;     /* unknown agent name: the KDF runs, the answer is no */
    auth_hash h;   /* a copy of the agent's (or the fake) stored hash */
    char name[AGENT_LEN_MAX + 1];
    char secret[SECRET_LEN_MAX];
    uint32_t secret_len;
    atomic_bool cancelled; /* the client went away: a worker that has not started skips it */
    int32_t leader;        /* under mu: the job whose KDF answers this one (same login), or -1 */
    bool running;          /* under mu: a worker runs its KDF */
    /* out: */
    bool ok;
} authq_job;

typedef struct authq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    authq_job jobs[AUTH_QUEUE_MAX];
    uint32_t free_[AUTH_QUEUE_MAX], nfree;           /* loop only */
    uint32_t todo[AUTH_QUEUE_MAX], todo_head, ntodo; /* under mu */
    uint32_t done[AUTH_QUEUE_MAX], done_head, ndone; /* under mu */
    bool stopping;                                   /* under mu */
    int efd;
    pthread_t th[AUTH_WORKERS];
    uint32_t nth;
} authq;

/* Workers started on a host with ncpu online CPUs: ncpu - 1 (one core stays the loop's),
 * at least 1, at most AUTH_WORKERS. */
uint32_t authq_workers_for(long ncpu);
/* On the loop's thread: ask for LOOP_SCHED_SLICE_NS slices (SCHED_OTHER, sched_runtime), so
 * its wakeups preempt the hashing workers. The nice value it was started with is kept, and a
 * thread under another policy (chrt, systemd CPUSchedulingPolicy=) is left alone.
 * 0, or -errno (the loop runs on, as before). */
int authq_sched_loop(void);
/* Start the workers. 0, or -1 with err. */
int authq_init(authq *q, char *err, size_t errcap);
/* A free job, or NULL when AUTH_QUEUE_MAX are queued or running (answer ERR BUSY). */
authq_job *authq_get(authq *q);
/* Hand a filled job to the workers. */
void authq_submit(authq *q, authq_job *j);
/* A finished job (j->ok set), or NULL. Give it back with authq_put once read. */
authq_job *authq_done(authq *q);
void authq_put(authq *q, authq_job *j);
/* The client (idx, gen) is gone: its job, if not started yet, is skipped (comes back !ok).
 * A flood's closed connections do not keep the workers busy. */
void authq_cancel(authq *q, uint32_t client_idx, uint32_t client_gen);
/* Jobs queued or running (for metrics). */
uint32_t authq_busy(const authq *q);
/* Stop and join the workers (a running KDF finishes first); unfinished jobs are dropped. */
void authq_stop(authq *q);
#endif
