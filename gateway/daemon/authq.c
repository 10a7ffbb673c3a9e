#include "authq.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sodium.h>

/* The same stored hash and the same secret: the same answer, whatever the KDF says. */
static bool same_login(const authq_job *a, const authq_job *b) {
    return a->fake == b->fake && a->secret_len == b->secret_len &&
           sodium_memcmp(a->h.key, b->h.key, sizeof a->h.key) == 0 &&
           sodium_memcmp(a->h.salt, b->h.salt, sizeof a->h.salt) == 0 &&
           sodium_memcmp(a->secret, b->secret, a->secret_len) == 0;
}

/* Under mu: queue job ji, or, when a job for the very same login is already queued or
 * running, make ji follow it: one Argon2id answers both (N clients of one agent connecting at
 * once cost one KDF, as the loop's cache would have had they come a moment later). */
static void enqueue_locked(authq *q, uint32_t ji) {
    authq_job *j = &q->jobs[ji];
    for (uint32_t i = 0; i < q->ntodo; i++) {
        uint32_t k = q->todo[(q->todo_head + i) % AUTH_QUEUE_MAX];
        if (same_login(j, &q->jobs[k])) {
            j->leader = (int32_t)k;
            return;
        }
    }
    for (uint32_t k = 0; k < AUTH_QUEUE_MAX; k++)
        if (q->jobs[k].running && same_login(j, &q->jobs[k])) {
            j->leader = (int32_t)k;
            return;
        }
    assert(q->ntodo < AUTH_QUEUE_MAX);
    q->todo[(q->todo_head + q->ntodo++) % AUTH_QUEUE_MAX] = ji;
    pthread_cond_signal(&q->cv);
}

/* Under mu: job ji verified. Its followers get its answer; had it been cancelled (skipped),
 * they are queued again to be verified for themselves. */
static void finish_locked(authq *q, uint32_t ji) {
    authq_job *j = &q->jobs[ji];
    j->running = false;
    bool skipped = atomic_load(&j->cancelled);
    assert(q->ndone < AUTH_QUEUE_MAX);
    q->done[(q->done_head + q->ndone++) % AUTH_QUEUE_MAX] = ji;
    for (uint32_t k = 0; k < AUTH_QUEUE_MAX; k++) {
        authq_job *f = &q->jobs[k];
        if (f->leader != (int32_t)ji) continue;
        f->leader = -1;
        if (skipped) {
            enqueue_locked(q, k);
            continue;
        }
        f->ok = j->ok;
        assert(q->ndone < AUTH_QUEUE_MAX);
        q->done[(q->done_head + q->ndone++) % AUTH_QUEUE_MAX] = k;
    }
}

/* The kernel's struct sched_attr (sched_setattr(2)); glibc has no wrapper everywhere. */
typedef struct sg_sched_attr {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
} sg_sched_attr;

/* The operator's choice wins: a thread started under another policy than SCHED_OTHER (chrt,
 * systemd CPUSchedulingPolicy=) is left alone, and the nice value it was started with (nice,
 * systemd Nice=) is kept - sched_setattr() would otherwise reset it to 0. */
static int sched_self(uint32_t policy, uint64_t slice_ns) {
    int cur = sched_getscheduler(0);
    if (cur < 0) return -errno;
    if (cur != SCHED_OTHER) return 0;
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0); /* Linux: 0 is the calling thread */
    if (nice == -1 && errno != 0) return -errno;
    sg_sched_attr a = {.size = sizeof a, .sched_policy = policy, .sched_nice = nice, .sched_runtime = slice_ns};
    return syscall(SYS_sched_setattr, 0, &a, 0) == 0 ? 0 : -errno;
}

int authq_sched_loop(void) { return sched_self(SCHED_OTHER, LOOP_SCHED_SLICE_NS); }

static void *worker(void *arg) {
    authq *q = arg;
    /* Same weight as the loop (no starvation on a busy host), but a batch thread: the loop's
     * wakeups go first. Best effort: a kernel that refuses leaves the default. */
    (void)sched_self(SCHED_BATCH, 0);
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->stopping && q->ntodo == 0) pthread_cond_wait(&q->cv, &q->mu);
        if (q->stopping) break;
        uint32_t ji = q->todo[q->todo_head];
        q->todo_head = (q->todo_head + 1) % AUTH_QUEUE_MAX;
        q->ntodo--;
        authq_job *j = &q->jobs[ji];
        j->running = true;
        pthread_mutex_unlock(&q->mu);

        bool match =
            !atomic_load(&j->cancelled) && auth_kdf_matches(&j->h, j->secret, j->secret_len);
        j->ok = match && !j->fake; /* the secret stays for auth_remember; authq_put wipes it */

        pthread_mutex_lock(&q->mu);
        finish_locked(q, ji);
        uint64_t one = 1;
        /* Cannot fail short of a counter overflow: the loop reads it back to 0 each time. */
        if (write(q->efd, &one, sizeof one) != (ssize_t)sizeof one) { /* the next job wakes it */
        }
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

uint32_t authq_workers_for(long ncpu) {
    /* One core stays the loop's: on 2 cores, 2 hashing workers made the worst PING stall of
     * a wrong-AUTH flood 30-38 ms, 1 worker 11-12 ms. */
    long n = ncpu - 1;
    if (n > AUTH_WORKERS) n = AUTH_WORKERS;
    return n < 1 ? 1 : (uint32_t)n;
}

int authq_init(authq *q, char *err, size_t errcap) {
    memset(q, 0, sizeof *q);
    for (uint32_t i = 0; i < AUTH_QUEUE_MAX; i++) {
        q->free_[q->nfree++] = AUTH_QUEUE_MAX - 1 - i;
        q->jobs[i].leader = -1;
    }
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->efd < 0) {
        snprintf(err, errcap, "auth eventfd: %s", strerror(errno));
        return -1;
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    uint32_t want = authq_workers_for((long)sysconf(_SC_NPROCESSORS_ONLN));
    for (; q->nth < want; q->nth++) {
        int rc = pthread_create(&q->th[q->nth], NULL, worker, q);
        if (rc != 0) {
            snprintf(err, errcap, "auth worker thread: %s", strerror(rc));
            authq_stop(q);
            return -1;
        }
        char name[16];
        snprintf(name, sizeof name, "sg-auth-%u", q->nth);
        pthread_setname_np(q->th[q->nth], name);
    }
    return 0;
}

authq_job *authq_get(authq *q) {
    if (q->nfree == 0) return NULL;
    authq_job *j = &q->jobs[q->free_[--q->nfree]];
    memset(j, 0, sizeof *j);
    j->leader = -1;
    return j;
}

void authq_submit(authq *q, authq_job *j) {
    uint32_t ji = (uint32_t)(j - q->jobs);
    assert(ji < AUTH_QUEUE_MAX);
    pthread_mutex_lock(&q->mu);
    enqueue_locked(q, ji);
    pthread_mutex_unlock(&q->mu);
}

authq_job *authq_done(authq *q) {
    pthread_mutex_lock(&q->mu);
    authq_job *j = NULL;
    if (q->ndone) {
        j = &q->jobs[q->done[q->done_head]];
        q->done_head = (q->done_head + 1) % AUTH_QUEUE_MAX;
        q->ndone--;
    }
    pthread_mutex_unlock(&q->mu);
    return j;
}

void authq_put(authq *q, authq_job *j) {
    assert(q->nfree < AUTH_QUEUE_MAX);
    sodium_memzero(j->secret, sizeof j->secret);
    q->free_[q->nfree++] = (uint32_t)(j - q->jobs);
}

void authq_cancel(authq *q, uint32_t client_idx, uint32_t client_gen) {
    /* A scan of AUTH_QUEUE_MAX slots, only when a client closes with its AUTH in flight. */
    for (uint32_t i = 0; i < AUTH_QUEUE_MAX; i++) {
        authq_job *j = &q->jobs[i];
        if (j->client_idx == client_idx && j->client_gen == client_gen)
            atomic_store(&j->cancelled, true);
    }
}

uint32_t authq_busy(const authq *q) {
    return AUTH_QUEUE_MAX - q->nfree;
}

void authq_stop(authq *q) {
    pthread_mutex_lock(&q->mu);
    q->stopping = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    for (uint32_t i = 0; i < q->nth; i++) pthread_join(q->th[i], NULL);
    q->nth = 0;
    if (q->efd >= 0) close(q->efd);
    q->efd = -1;
}
