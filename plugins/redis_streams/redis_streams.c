/*
 * redis_streams: delivers instructions to banks over Redis Streams (SPEC §6,
 * docs/plugins.md). For bank B:
 *
 *   XADD stopgate:B:instructions * instruction_id .. order_id .. kind .. bank .. account ..
 *        amount .. currency .. case .. reason .. expires_at .. parent .. attempt ..
 *   XREADGROUP GROUP <group> <consumer> ... STREAMS stopgate:B:results ...
 *   XACK stopgate:B:results <group> <id>      once the result's journal record is durable
 *
 * hiredis is blocking, so two threads of our own do the talking, each with its own
 * connection: the writer (XADD, XACK; woken by a condition variable the moment there is
 * work) and the reader (XREADGROUP BLOCK). They exchange bounded queues with the gateway's
 * loop thread, which they wake through an eventfd; every host callback happens inside
 * poll(), on the loop thread (the ABI's threading rule).
 *
 * Delivery is at least once: an instruction counts as delivered when its XADD succeeded.
 * Nothing handed to submit() is ever dropped: an XADD that gets no reply (connection lost) or
 * an error reply (LOADING after a restart, OOM, READONLY, anything) stays in the writer's
 * batch, in order, and is sent again after a jittered, capped back-off; a gateway restart
 * re-sends whatever has no answer. Banks dedupe by instruction_id.
 */
#include <assert.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <stopgate/plugin.h>

#include "result_parse.h"

#define RS_QUEUE_MAX 65536      /* instructions waiting for their XADD */
#define RS_RESULTS_MAX 8192     /* results read, waiting for the loop thread */
#define RS_ACKS_MAX 65536       /* results waiting for durability, then for their XACK */
#define RS_BANKS_MAX 256        /* banks whose results stream is read */
#define RS_BATCH 1024           /* commands pipelined per round trip */
#define RS_FIELD_MAX 96
#define RS_ENTRY_ID_MAX 48
#define RS_BACKOFF_MIN_MS 50   /* first retry after a refusal or a lost connection */
#define RS_REFUSED_LOG_MS 5000 /* at most one "refused" WARN per this interval */
#define RS_ERR_TEXT_MAX   128  /* bytes of Redis's error text kept for the log */

typedef struct rs_instr {
    uint64_t id;
    int bank_idx; /* index into banks[]: refusals hold back later XADDs of the same bank */
    char bank[12], kind[8], order_id[24], account[40], amount[24], currency[4], case_id[72], reason[72],
        expires[24], parent[24], attempt[12];
} rs_instr;

typedef struct rs_result {
    bool malformed;
    char why[96];
    int bank; /* index into banks[] */
    char entry_id[RS_ENTRY_ID_MAX];
    sg_result r;
    char reason[RS_FIELD_MAX];
    sg_onward onward[SG_ONWARD_MAX];
} rs_result;

typedef struct rs_ack {
    int bank;
    char entry_id[RS_ENTRY_ID_MAX];
    uint64_t lsn;
} rs_ack;

typedef struct rs {
    sg_host host;
    char addr[256];
    int port;
    char password[256];
    char group[64], consumer[64], prefix[64];
    int block_ms, reconnect_max_ms, timeout_ms;
    int efd;
    pthread_t writer, reader;
    bool writer_started, reader_started;
    pthread_mutex_t mu;
    pthread_cond_t work;   /* writer: instructions or acks to send, or stop */
    pthread_cond_t room;   /* reader: results queue has room again */
    bool stop;
    /* loop thread -> writer */
    rs_instr *q;
    uint32_t q_head, q_len;
    rs_ack *acks_out; /* durable, to XACK */
    uint32_t acks_out_len;
    /* writer -> loop thread */
    uint64_t *delivered;
    uint32_t delivered_len;
    /* reader -> loop thread */
    rs_result *res;
    uint32_t res_head, res_len;
    /* banks whose results are read; grows as instructions for new banks arrive */
    char banks[RS_BANKS_MAX][12];
    int nbanks;
    /* loop thread only */
    rs_ack *waiting; /* journaled, not yet durable */
    uint32_t waiting_len;
    /* log lines from the threads, handed to host->log on the loop thread */
    char logbuf[8][256];
    int loglevel[8];
    uint32_t nlog;
    uint64_t malformed;
    /* writer -> loop thread (stats(), under mu) */
    uint64_t xadd_refused, xack_refused, retry_rounds;
    uint32_t held; /* instructions taken from q and not yet confirmed by Redis */
} rs;

/* Writer-thread only: the back-off and the rate limit of the "refused" log line. */
typedef struct rs_retry {
    int backoff_ms;
    unsigned seed;
    uint64_t streak;         /* refusals since Redis last accepted a whole round */
    int64_t streak_start_ms; /* CLOCK_MONOTONIC */
    int64_t last_log_ms;     /* 0 = nothing logged in this streak */
    uint64_t unlogged;       /* refusals since the last log line */
} rs_retry;

static void wake_loop(rs *s) {
    uint64_t one = 1;
    ssize_t w = write(s->efd, &one, sizeof one);
    (void)w; /* EAGAIN: the counter is already non-zero, the loop will wake */
}

/* From a plugin thread: queue a line for the loop thread (host->log is loop-thread only). */
static void tlog(rs *s, sg_log_level lvl, const char *fmt, ...) {
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&s->mu);
    if (s->nlog < 8) {
        snprintf(s->logbuf[s->nlog], sizeof s->logbuf[0], "%s", line);
        s->loglevel[s->nlog++] = lvl;
    }
    pthread_mutex_unlock(&s->mu);
    wake_loop(s);
}

static void stream_name(const rs *s, const char *bank, const char *what, char *out, size_t cap) {
    snprintf(out, cap, "%.63s:%.11s:%.15s", s->prefix, bank, what);
}

/* --- connections ------------------------------------------------------------------------ */

static redisContext *rs_connect(rs *s, const char *who, bool *was_up) {
    struct timeval tv = {s->timeout_ms / 1000, (s->timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(s->addr, s->port, tv);
    if (!c || c->err) {
        if (*was_up) tlog(s, SG_LOG_WARN, "redis_streams %s: cannot reach %s:%d (%s); retrying with back-off", who,
                          s->addr, s->port, c ? c->errstr : "out of memory");
        *was_up = false;
        if (c) redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    if (s->password[0]) {
        redisReply *r = redisCommand(c, "AUTH %s", s->password);
        bool ok = r && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
        if (!ok) {
            if (*was_up) tlog(s, SG_LOG_ERROR, "redis_streams %s: AUTH refused by %s:%d", who, s->addr, s->port);
            *was_up = false;
            redisFree(c);
            return NULL;
        }
    }
    if (!*was_up) tlog(s, SG_LOG_INFO, "redis_streams %s: connected to %s:%d", who, s->addr, s->port);
    *was_up = true;
    return c;
}

static int64_t mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleep for the back-off, waking early only when asked to stop: a submit() signals `work`
 * too, and must not turn the back-off into a busy retry against a refusing Redis. The wait
 * is jittered over [ms/2, ms] so that many gateways do not retry in step; ms doubles up to
 * reconnect_max_ms. */
static void backoff_wait(rs *s, int *ms, unsigned *seed) {
    int half = *ms / 2;
    int wait_ms = half + (int)(rand_r(seed) % (unsigned)(*ms - half + 1));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += wait_ms / 1000;
    ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&s->mu);
    while (!s->stop && pthread_cond_timedwait(&s->work, &s->mu, &ts) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&s->mu);
    *ms = *ms * 2 > s->reconnect_max_ms ? s->reconnect_max_ms : *ms * 2;
}

static unsigned thread_seed(const rs *s) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned)ts.tv_nsec ^ (unsigned)(uintptr_t)s ^ (unsigned)(uintptr_t)&ts;
}

/* --- the writer: XADD and XACK ------------------------------------------------------------- */

static int bank_index_locked(rs *s, const char *bank) {
    for (int i = 0; i < s->nbanks; i++)
        if (!strcmp(s->banks[i], bank)) return i;
    if (s->nbanks == RS_BANKS_MAX) return -1;
    snprintf(s->banks[s->nbanks], sizeof s->banks[0], "%s", bank);
    return s->nbanks++;
}

/* Outcome of one pipelined command. */
enum {
    RS_NO_REPLY = 0,
    RS_OK,
    RS_REFUSED
};

/* Move work from the shared queues into the writer's batch, behind what it still holds
 * (held instructions first keeps each bank's order). false when asked to stop. */
static bool writer_take(rs *s, rs_instr *batch, uint32_t *nbatch, rs_ack *acks, uint32_t *nacks) {
    pthread_mutex_lock(&s->mu);
    while (!s->stop && *nbatch == 0 && *nacks == 0 && s->q_len == 0 && s->acks_out_len == 0)
        pthread_cond_wait(&s->work, &s->mu);
    bool stop = s->stop;
    while (!stop && *nbatch < RS_BATCH && s->q_len) {
        batch[(*nbatch)++] = s->q[s->q_head];
        s->q_head = (s->q_head + 1) % RS_QUEUE_MAX;
        s->q_len--;
    }
    while (!stop && *nacks < RS_BATCH && s->acks_out_len)
        acks[(*nacks)++] = s->acks_out[--s->acks_out_len];
    s->held = *nbatch;
    pthread_mutex_unlock(&s->mu);
    return !stop;
}

static void writer_append(rs *s, redisContext *c, const rs_instr *batch, uint32_t nbatch,
                          const rs_ack *acks, uint32_t nacks) {
    for (uint32_t i = 0; i < nbatch; i++) {
        const rs_instr *in = &batch[i];
        char stream[128], id[24];
        stream_name(s, in->bank, "instructions", stream, sizeof stream);
        snprintf(id, sizeof id, "%" PRIu64, in->id);
        const char *argv[] = {"XADD",     stream,       "*",         "instruction_id", id,
                              "order_id", in->order_id, "kind",      in->kind,         "bank",
                              in->bank,   "account",    in->account, "amount",         in->amount,
                              "currency", in->currency, "case",      in->case_id,      "reason",
                              in->reason, "expires_at", in->expires, "parent",         in->parent,
                              "attempt",  in->attempt};
        redisAppendCommandArgv(c, (int)(sizeof argv / sizeof argv[0]), argv, NULL);
    }
    for (uint32_t i = 0; i < nacks; i++) {
        char stream[128];
        pthread_mutex_lock(&s->mu);
        stream_name(s, s->banks[acks[i].bank], "results", stream, sizeof stream);
        pthread_mutex_unlock(&s->mu);
        const char *argv[] = {"XACK", stream, s->group, acks[i].entry_id};
        redisAppendCommandArgv(c, 4, argv, NULL);
    }
}

/* Read the replies of the round into st[] (XADDs first, then XACKs). Commands after a lost
 * connection stay RS_NO_REPLY. Returns false when the connection broke; err gets the text of
 * the first error reply. */
static bool writer_collect(redisContext *c, uint32_t n, uint8_t *st, char err[RS_ERR_TEXT_MAX]) {
    for (uint32_t i = 0; i < n; i++) st[i] = RS_NO_REPLY;
    for (uint32_t i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) return false;
        st[i] = r->type == REDIS_REPLY_ERROR ? RS_REFUSED : RS_OK;
        if (st[i] == RS_REFUSED && !err[0])
            snprintf(err, RS_ERR_TEXT_MAX, "%s", r->str ? r->str : "?");
        freeReplyObject(r);
    }
    return true;
}

/* Report the XADDs Redis took, keep the rest in order. Once one XADD of a bank is kept,
 * every later one of that bank is kept too (even if Redis took it): a RELEASE must never
 * reach a bank before the STOP it lifts. Returns how many were refused. */
static uint32_t writer_settle_instrs(rs *s, rs_instr *batch, uint32_t *nbatch, const uint8_t *st) {
    static __thread bool blocked[RS_BANKS_MAX];
    uint64_t done[RS_BATCH];
    uint32_t kept = 0, ndone = 0, refused = 0;
    memset(blocked, 0, sizeof blocked);
    for (uint32_t i = 0; i < *nbatch; i++) {
        int b = batch[i].bank_idx;
        assert(b >= 0 && b < RS_BANKS_MAX);
        refused += st[i] == RS_REFUSED;
        if (st[i] != RS_OK || blocked[b]) {
            blocked[b] = true;
            batch[kept++] = batch[i];
        } else {
            done[ndone++] = batch[i].id;
        }
    }
    *nbatch = kept;
    pthread_mutex_lock(&s->mu);
    /* Wait for the loop thread rather than lose a delivery notice. */
    while (!s->stop && s->delivered_len + ndone > RS_QUEUE_MAX) pthread_cond_wait(&s->room, &s->mu);
    for (uint32_t i = 0; i < ndone && s->delivered_len < RS_QUEUE_MAX; i++)
        s->delivered[s->delivered_len++] = done[i];
    s->xadd_refused += refused;
    s->held = kept;
    pthread_mutex_unlock(&s->mu);
    if (ndone) wake_loop(s);
    return refused;
}

/* Keep the XACKs that did not go through (a missed XACK would only re-deliver the result,
 * which the gateway ignores, but there is no reason to leave it pending). */
static uint32_t writer_settle_acks(rs *s, rs_ack *acks, uint32_t *nacks, const uint8_t *st) {
    uint32_t kept = 0, refused = 0;
    for (uint32_t i = 0; i < *nacks; i++) {
        refused += st[i] == RS_REFUSED;
        if (st[i] != RS_OK) acks[kept++] = acks[i];
    }
    *nacks = kept;
    pthread_mutex_lock(&s->mu);
    s->xack_refused += refused;
    pthread_mutex_unlock(&s->mu);
    return refused;
}

/* One log line per RS_REFUSED_LOG_MS while Redis refuses, with its error text. */
static void note_refused(rs *s, rs_retry *rt, uint32_t nadd, uint32_t nack, const char *err) {
    int64_t now = mono_ms();
    if (rt->streak == 0) rt->streak_start_ms = now, rt->last_log_ms = 0;
    rt->streak += nadd + nack;
    rt->unlogged += nadd + nack;
    pthread_mutex_lock(&s->mu);
    s->retry_rounds++;
    uint32_t held = s->held;
    pthread_mutex_unlock(&s->mu);
    if (rt->last_log_ms && now - rt->last_log_ms < RS_REFUSED_LOG_MS) return;
    tlog(s, SG_LOG_WARN,
         "redis_streams writer: Redis refused %" PRIu64
         " commands (%u XADD, %u XACK this round): %s; "
         "%u instructions kept, retrying with back-off",
         rt->unlogged, nadd, nack, err, held);
    rt->last_log_ms = now;
    rt->unlogged = 0;
}

static void note_accepted(rs *s, rs_retry *rt) {
    if (rt->streak == 0) return;
    tlog(s, SG_LOG_INFO,
         "redis_streams writer: Redis accepts writes again after %" PRIu64 " refusals over %.1f s",
         rt->streak, (mono_ms() - rt->streak_start_ms) / 1000.0);
    rt->streak = 0;
}

static void *writer_main(void *arg) {
    rs *s = arg;
    redisContext *c = NULL;
    bool up = true;
    rs_retry rt = {.backoff_ms = RS_BACKOFF_MIN_MS, .seed = thread_seed(s)};
    rs_instr *batch = calloc(RS_BATCH, sizeof *batch);
    rs_ack *acks = calloc(RS_BATCH, sizeof *acks);
    uint8_t *st = calloc(2 * RS_BATCH, 1);
    uint32_t nbatch = 0, nacks = 0; /* taken from the queues, not yet confirmed */
    if (!batch || !acks || !st) {
        tlog(s, SG_LOG_ERROR, "redis_streams writer: out of memory");
        goto out;
    }
    while (writer_take(s, batch, &nbatch, acks, &nacks)) {
        if (!c && !(c = rs_connect(s, "writer", &up))) {
            backoff_wait(s, &rt.backoff_ms, &rt.seed);
            continue;
        }
        writer_append(s, c, batch, nbatch, acks, nacks);
        char err[RS_ERR_TEXT_MAX] = "";
        bool alive = writer_collect(c, nbatch + nacks, st, err);
        uint32_t nadd = nbatch;
        uint32_t radd = writer_settle_instrs(s, batch, &nbatch, st);
        uint32_t rack = writer_settle_acks(s, acks, &nacks, st + nadd);
        if (!alive) {
            /* Whatever was not confirmed goes again on the next connection (same ids). */
            if (up) tlog(s, SG_LOG_WARN, "redis_streams writer: connection lost (%s); re-sending unconfirmed",
                         c->errstr);
            up = false;
            redisFree(c);
            c = NULL;
            continue; /* the reconnect backs off if Redis is still away */
        }
        if (radd || rack) {
            note_refused(s, &rt, radd, rack, err);
            backoff_wait(s, &rt.backoff_ms, &rt.seed);
            continue;
        }
        note_accepted(s, &rt);
        rt.backoff_ms = RS_BACKOFF_MIN_MS;
    }
out:
    if (c) redisFree(c);
    free(batch);
    free(acks);
    free(st);
    return NULL;
}

/* --- the reader: XREADGROUP ---------------------------------------------------------------- */

/* A result entry -> rr (result_parse.c does the parsing). Fields are the string name/value
 * pairs of the entry's array; a pair with a non-string member is skipped. false with
 * rr->why when it is malformed (it is acknowledged and ignored; the gateway counts it). */
_Static_assert(RS_FIELD_MAX > RS_REASON_MAX, "rs_result.reason holds a whole kept reason");
static bool parse_result(const redisReply *kv, rs_result *rr) {
    rs_field local[16], *f = local;
    size_t pairs = kv->elements / 2, n = 0;
    if (pairs > sizeof local / sizeof local[0] && !(f = malloc(pairs * sizeof *f)))
        return snprintf(rr->why, sizeof rr->why, "out of memory"), false;
    for (size_t i = 0; i + 1 < kv->elements; i += 2) {
        const redisReply *k = kv->element[i], *v = kv->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING)
            f[n++] = (rs_field){k->str, k->len, v->str, v->len};
    }
    bool ok = rs_parse_result(f, n, &rr->r, rr->onward, rr->reason, rr->why, sizeof rr->why);
    if (f != local) free(f);
    return ok;
}

/* Redis answered the reader with an error (LOADING after a restart, NOGROUP, ...): say so at
 * most every RS_REFUSED_LOG_MS, and back off instead of asking again at once. */
static void reader_refused(rs *s, int *backoff, unsigned *seed, int64_t *last_log_ms,
                           const char *what, const char *err) {
    int64_t now = mono_ms();
    if (!*last_log_ms || now - *last_log_ms >= RS_REFUSED_LOG_MS) {
        tlog(s, SG_LOG_WARN, "redis_streams reader: %s refused: %.120s; retrying with back-off",
             what, err);
        *last_log_ms = now;
    }
    backoff_wait(s, backoff, seed);
}

/* The reader thread's own state (one per plugin instance; only the reader touches it). */
typedef struct {
    redisContext *c;
    bool up;
    int backoff;
    unsigned seed;
    int64_t last_log_ms;
    int grouped;       /* banks[0..grouped) have their consumer group */
    bool pending_pass; /* first read after a (re)connect: our own unacknowledged entries */
    int nbanks;
    char banks[RS_BANKS_MAX][12];
    char streams[RS_BANKS_MAX][128]; /* the results stream of banks[i] */
} rs_reader;

/* Make sure every bank seen so far has its consumer group on its results stream. 0 when all
 * have, 1 when Redis refused one (backed off already), -1 when the connection is lost. */
static int reader_groups(rs *s, rs_reader *rd) {
    for (; rd->grouped < rd->nbanks; rd->grouped++) {
        char stream[128];
        stream_name(s, rd->banks[rd->grouped], "results", stream, sizeof stream);
        /* From the start of the stream: results written before we first looked still count. */
        redisReply *r = redisCommand(rd->c, "XGROUP CREATE %s %s 0 MKSTREAM", stream, s->group);
        if (!r) return -1;
        /* LOADING, OOM...: this bank's group is not there yet; ask again after a back-off. */
        bool refused = r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0;
        if (refused) reader_refused(s, &rd->backoff, &rd->seed, &rd->last_log_ms, "XGROUP CREATE", r->str);
        freeReplyObject(r);
        if (refused) return 1;
    }
    return rd->c->err ? -1 : 0;
}

/* Hand one result to the loop's queue, waiting for room (the loop signals `room`). */
static void reader_push(rs *s, const rs_result *rr) {
    pthread_mutex_lock(&s->mu);
    while (!s->stop && s->res_len == RS_RESULTS_MAX) pthread_cond_wait(&s->room, &s->mu);
    if (!s->stop) {
        rs_result *slot = &s->res[(s->res_head + s->res_len) % RS_RESULTS_MAX];
        *slot = *rr;
        slot->r.reason = slot->reason;
        slot->r.onward = slot->onward;
        s->res_len++;
    }
    pthread_mutex_unlock(&s->mu);
}

/* The entries of one XREADGROUP answer, queued in order; how many there were. */
static size_t reader_entries(rs *s, const rs_reader *rd, const redisReply *r) {
    size_t got = 0;
    for (size_t si = 0; si < r->elements; si++) {
        const redisReply *st = r->element[si];
        if (st->type != REDIS_REPLY_ARRAY || st->elements != 2) continue;
        int bank = -1;
        for (int i = 0; i < rd->grouped; i++)
            if (!strcmp(rd->streams[i], st->element[0]->str)) bank = i;
        const redisReply *entries = st->element[1];
        for (size_t ei = 0; bank >= 0 && ei < entries->elements; ei++) {
            const redisReply *en = entries->element[ei];
            if (en->type != REDIS_REPLY_ARRAY || en->elements != 2) continue;
            got++;
            rs_result rr;
            memset(&rr, 0, sizeof rr);
            rr.bank = bank;
            snprintf(rr.entry_id, sizeof rr.entry_id, "%s", en->element[0]->str);
            if (en->element[1]->type != REDIS_REPLY_ARRAY) {
                /* a pending entry deleted from the stream meanwhile: just ack it */
                rr.malformed = true;
                snprintf(rr.why, sizeof rr.why, "entry deleted from the stream");
            } else {
                rr.malformed = !parse_result(en->element[1], &rr);
            }
            reader_push(s, &rr);
        }
    }
    return got;
}

/* One XREADGROUP over every grouped bank: our pending entries first after a (re)connect,
 * then new ones, blocking up to block_ms. -1 when the connection is lost. */
static int reader_read(rs *s, rs_reader *rd) {
    const char *argv[8 + 2 * RS_BANKS_MAX];
    char block[16], count[16];
    int ac = 0;
    snprintf(block, sizeof block, "%d", s->block_ms);
    snprintf(count, sizeof count, "%d", RS_BATCH);
    argv[ac++] = "XREADGROUP";
    argv[ac++] = "GROUP";
    argv[ac++] = s->group;
    argv[ac++] = s->consumer;
    argv[ac++] = "COUNT";
    argv[ac++] = count;
    if (!rd->pending_pass) {
        argv[ac++] = "BLOCK";
        argv[ac++] = block;
    }
    argv[ac++] = "STREAMS";
    for (int i = 0; i < rd->grouped; i++) {
        stream_name(s, rd->banks[i], "results", rd->streams[i], sizeof rd->streams[i]);
        argv[ac++] = rd->streams[i];
    }
    for (int i = 0; i < rd->grouped; i++) argv[ac++] = rd->pending_pass ? "0" : ">";
    assert(ac <= (int)(sizeof argv / sizeof argv[0]));
    redisReply *r = redisCommandArgv(rd->c, ac, argv, NULL);
    if (!r) return -1;
    size_t got = 0;
    if (r->type == REDIS_REPLY_ARRAY) {
        got = reader_entries(s, rd, r);
    } else if (r->type == REDIS_REPLY_ERROR) {
        if (strstr(r->str, "NOGROUP")) rd->grouped = 0; /* the stream was deleted: create again */
        reader_refused(s, &rd->backoff, &rd->seed, &rd->last_log_ms, "XREADGROUP", r->str);
    } else {
        rd->backoff = RS_BACKOFF_MIN_MS;
    }
    /* A refused read (-LOADING after a restart) has not read our pending entries yet: the
     * pass ends only with a successful read that found none. */
    bool read_ok = r->type != REDIS_REPLY_ERROR;
    freeReplyObject(r);
    if (got) wake_loop(s);
    if (rd->pending_pass && got == 0 && read_ok) rd->pending_pass = false;
    return 0;
}

/* The banks the loop has named so far, and whether the plugin is stopping. */
static bool reader_snapshot(rs *s, rs_reader *rd) {
    pthread_mutex_lock(&s->mu);
    bool stop = s->stop;
    rd->nbanks = s->nbanks;
    memcpy(rd->banks, s->banks, sizeof rd->banks);
    pthread_mutex_unlock(&s->mu);
    return stop;
}

static void *reader_main(void *arg) {
    rs *s = arg;
    rs_reader reader = {0}, *rd = &reader;
    rd->up = true;
    rd->backoff = RS_BACKOFF_MIN_MS;
    rd->seed = thread_seed(s);
    rd->pending_pass = true;
    while (!reader_snapshot(s, rd)) {
        if (!rd->c) {
            if (!(rd->c = rs_connect(s, "reader", &rd->up))) {
                backoff_wait(s, &rd->backoff, &rd->seed);
                continue;
            }
            rd->backoff = RS_BACKOFF_MIN_MS;
            rd->grouped = 0;
            rd->pending_pass = true;
        }
        int g = reader_groups(s, rd);
        if (g == 0 && rd->nbanks == 0) {
            /* Nothing to read until the first instruction names a bank. */
            struct timespec ts = {0, 50 * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        if (g > 0 || (g == 0 && reader_read(s, rd) == 0)) continue;
        if (rd->up) tlog(s, SG_LOG_WARN, "redis_streams reader: connection lost (%s)", rd->c->errstr);
        rd->up = false;
        redisFree(rd->c);
        rd->c = NULL;
    }
    if (rd->c) redisFree(rd->c);
    return NULL;
}

/* --- ABI ------------------------------------------------------------------------------------ */

static int kv_int(const char *v, int lo, int hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) return -1;
    *out = (int)x;
    return 0;
}

static bool kv_name(const char *v, char *out, size_t cap) {
    size_t n = strlen(v);
    if (n == 0 || n >= cap) return false;
    for (size_t i = 0; i < n; i++)
        if (v[i] <= ' ' || v[i] == 127) return false;
    memcpy(out, v, n + 1);
    return true;
}

static void rs_free(rs *s);

static int rs_init(const sg_host *host, const sg_plugin_kv *kv, size_t n, void **state, char err[SG_PLUGIN_ERR_MAX],
                   int *bad_line) {
    rs *s = calloc(1, sizeof *s);
    if (!s) return snprintf(err, SG_PLUGIN_ERR_MAX, "out of memory"), -1;
    s->host = *host;
    s->efd = -1;
    snprintf(s->addr, sizeof s->addr, "127.0.0.1");
    s->port = 6379;
    snprintf(s->group, sizeof s->group, "stopgate");
    snprintf(s->consumer, sizeof s->consumer, "stopgated");
    snprintf(s->prefix, sizeof s->prefix, "stopgate");
    s->block_ms = 200;
    s->reconnect_max_ms = 1000;
    s->timeout_ms = 2000;
    for (size_t i = 0; i < n; i++) {
        const char *k = kv[i].key, *v = kv[i].value;
        int bad = 0;
        if (!strcmp(k, "host")) bad = !kv_name(v, s->addr, sizeof s->addr);
        else if (!strcmp(k, "port")) bad = kv_int(v, 1, 65535, &s->port);
        else if (!strcmp(k, "password")) bad = !kv_name(v, s->password, sizeof s->password);
        else if (!strcmp(k, "group")) bad = !kv_name(v, s->group, sizeof s->group);
        else if (!strcmp(k, "consumer")) bad = !kv_name(v, s->consumer, sizeof s->consumer);
        else if (!strcmp(k, "prefix")) bad = !kv_name(v, s->prefix, sizeof s->prefix);
        else if (!strcmp(k, "block_ms")) bad = kv_int(v, 1, 10000, &s->block_ms);
        else if (!strcmp(k, "reconnect_max_ms")) bad = kv_int(v, 50, 600000, &s->reconnect_max_ms);
        else if (!strcmp(k, "timeout_ms")) bad = kv_int(v, 10, 60000, &s->timeout_ms);
        else if (!strcmp(k, "banks")) {
            /* Banks whose results are read from the start, before any instruction names them. */
            char tmp[2048];
            snprintf(tmp, sizeof tmp, "%s", v);
            for (char *save, *b = strtok_r(tmp, ", ", &save); b; b = strtok_r(NULL, ", ", &save))
                if (strlen(b) > 11 || bank_index_locked(s, b) < 0) bad = 1;
        } else {
            snprintf(err, SG_PLUGIN_ERR_MAX,
                     "unknown key '%s' (redis_streams knows host, port, password, group, consumer, prefix, banks, "
                     "block_ms, reconnect_max_ms, timeout_ms)",
                     k);
            *bad_line = kv[i].line;
            rs_free(s);
            return -1;
        }
        if (bad) {
            snprintf(err, SG_PLUGIN_ERR_MAX, "bad value for %s", k);
            *bad_line = kv[i].line;
            rs_free(s);
            return -1;
        }
    }
    s->q = calloc(RS_QUEUE_MAX, sizeof *s->q);
    s->delivered = calloc(RS_QUEUE_MAX, sizeof *s->delivered);
    s->res = calloc(RS_RESULTS_MAX, sizeof *s->res);
    s->acks_out = calloc(RS_ACKS_MAX, sizeof *s->acks_out);
    s->waiting = calloc(RS_ACKS_MAX, sizeof *s->waiting);
    s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!s->q || !s->delivered || !s->res || !s->acks_out || !s->waiting || s->efd < 0) {
        snprintf(err, SG_PLUGIN_ERR_MAX, "out of memory");
        rs_free(s);
        return -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->room, NULL);
    if (pthread_create(&s->writer, NULL, writer_main, s) != 0 || !(s->writer_started = true) ||
        pthread_create(&s->reader, NULL, reader_main, s) != 0 || !(s->reader_started = true)) {
        snprintf(err, SG_PLUGIN_ERR_MAX, "cannot start threads");
        rs_free(s);
        return -1;
    }
    *state = s;
    return 0;
}

static void fmt_i64(char *out, size_t cap, int64_t v) { snprintf(out, cap, "%" PRId64, v); }

static int rs_submit(void *state, const sg_instruction *in) {
    rs *s = state;
    pthread_mutex_lock(&s->mu);
    if (s->q_len == RS_QUEUE_MAX) {
        pthread_mutex_unlock(&s->mu);
        return -EAGAIN;
    }
    if (bank_index_locked(s, in->bank) < 0) {
        pthread_mutex_unlock(&s->mu);
        return -ENOSPC; /* more banks than RS_BANKS_MAX behind one instance: the gateway logs it */
    }
    int bank_idx = bank_index_locked(s, in->bank);
    rs_instr *q = &s->q[(s->q_head + s->q_len) % RS_QUEUE_MAX];
    memset(q, 0, sizeof *q);
    q->id = in->instruction_id;
    q->bank_idx = bank_idx;
    snprintf(q->bank, sizeof q->bank, "%s", in->bank);
    snprintf(q->kind, sizeof q->kind, "%s",
             in->kind == SG_INSTR_FREEZE ? "FREEZE" : in->kind == SG_INSTR_RELEASE ? "RELEASE" : "STOP");
    snprintf(q->order_id, sizeof q->order_id, "%s", in->order_id);
    snprintf(q->account, sizeof q->account, "%s", in->account);
    fmt_i64(q->amount, sizeof q->amount, in->amount_minor);
    snprintf(q->currency, sizeof q->currency, "%s", in->currency);
    snprintf(q->case_id, sizeof q->case_id, "%s", in->case_id);
    snprintf(q->reason, sizeof q->reason, "%s", in->reason);
    fmt_i64(q->expires, sizeof q->expires, in->expires_at_ms);
    snprintf(q->parent, sizeof q->parent, "%s", in->parent);
    fmt_i64(q->attempt, sizeof q->attempt, in->attempt);
    s->q_len++;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return SG_SUBMIT_QUEUED;
}

static int rs_event_fd(void *state) { return ((rs *)state)->efd; }

static int64_t rs_poll(void *state, int64_t now_us) {
    rs *s = state;
    uint64_t cnt;
    ssize_t rd = read(s->efd, &cnt, sizeof cnt);
    (void)rd;
    /* Take what the threads produced, then act on it without the lock. */
    static __thread uint64_t delivered[RS_QUEUE_MAX];
    static __thread rs_result results[SG_POLL_RESULTS_MAX];
    char logs[8][256];
    int levels[8];
    uint32_t nd, nr = 0, nlog;
    pthread_mutex_lock(&s->mu);
    nd = s->delivered_len;
    memcpy(delivered, s->delivered, nd * sizeof *delivered);
    s->delivered_len = 0;
    while (nr < SG_POLL_RESULTS_MAX && s->res_len) {
        results[nr++] = s->res[s->res_head];
        s->res_head = (s->res_head + 1) % RS_RESULTS_MAX;
        s->res_len--;
    }
    if (nr || nd)
        pthread_cond_broadcast(&s->room); /* the reader and the writer may wait for room */
    nlog = s->nlog;
    memcpy(logs, s->logbuf, sizeof logs);
    memcpy(levels, s->loglevel, sizeof levels);
    s->nlog = 0;
    bool more = s->res_len > 0;
    pthread_mutex_unlock(&s->mu);
    for (uint32_t i = 0; i < nlog; i++) s->host.log(s->host.ctx, (sg_log_level)levels[i], logs[i]);
    for (uint32_t i = 0; i < nd; i++) s->host.delivered(s->host.ctx, delivered[i]);
    for (uint32_t i = 0; i < nr; i++) {
        rs_result *rr = &results[i];
        rr->r.reason = rr->reason;
        rr->r.onward = rr->onward;
        uint64_t lsn = 0;
        if (rr->malformed) {
            char line[256];
            snprintf(line, sizeof line, "redis_streams: malformed result %s on %s ignored: %s", rr->entry_id,
                     s->banks[rr->bank], rr->why);
            s->host.log(s->host.ctx, SG_LOG_WARN, line);
            s->malformed++;
            /* Handed over as invalid so the gateway counts it with its other bad results. */
            sg_result bad = {.instruction_id = rr->r.instruction_id, .status = 0};
            s->host.result(s->host.ctx, &bad);
        } else {
            lsn = s->host.result(s->host.ctx, &rr->r);
        }
        if (s->waiting_len < RS_ACKS_MAX) {
            rs_ack *a = &s->waiting[s->waiting_len++];
            a->bank = rr->bank;
            snprintf(a->entry_id, sizeof a->entry_id, "%s", rr->entry_id);
            a->lsn = lsn; /* 0: nothing journaled, acknowledge at once */
        }
    }
    /* Acknowledge what is durable; the rest waits for a later poll. */
    uint64_t durable = s->host.durable_lsn(s->host.ctx);
    uint32_t kept = 0, moved = 0;
    pthread_mutex_lock(&s->mu);
    for (uint32_t i = 0; i < s->waiting_len; i++) {
        if (s->waiting[i].lsn <= durable && s->acks_out_len < RS_ACKS_MAX) {
            s->acks_out[s->acks_out_len++] = s->waiting[i];
            moved++;
        } else {
            s->waiting[kept++] = s->waiting[i];
        }
    }
    s->waiting_len = kept;
    if (moved) pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    if (more) return now_us;
    return kept ? now_us + 2000 : -1;
}

static void rs_free(rs *s) {
    if (!s) return;
    if (s->writer_started || s->reader_started) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_broadcast(&s->work);
        pthread_cond_broadcast(&s->room);
        pthread_mutex_unlock(&s->mu);
        if (s->writer_started) pthread_join(s->writer, NULL);
        if (s->reader_started) pthread_join(s->reader, NULL);
    }
    if (s->efd >= 0) close(s->efd);
    free(s->q);
    free(s->delivered);
    free(s->res);
    free(s->acks_out);
    free(s->waiting);
    free(s);
}

static void rs_shutdown(void *state) { rs_free(state); }

static size_t rs_stats(void *state, sg_plugin_stat *out, size_t cap) {
    rs *s = state;
    pthread_mutex_lock(&s->mu);
    sg_plugin_stat v[] = {
        {"xadd_refused_total", "XADDs Redis answered with an error (kept and retried).",
         s->xadd_refused, true},
        {"xack_refused_total", "XACKs Redis answered with an error (kept and retried).",
         s->xack_refused, true},
        {"retry_rounds_total", "Rounds retried after a refusal, each after a back-off.",
         s->retry_rounds, true},
        {"queued", "Instructions taken and not yet confirmed by Redis.",
         (uint64_t)s->q_len + s->held, false},
        {"malformed_results_total", "Result entries acknowledged and ignored as malformed.",
         s->malformed, true},
    };
    pthread_mutex_unlock(&s->mu);
    size_t n = sizeof v / sizeof v[0] < cap ? sizeof v / sizeof v[0] : cap;
    memcpy(out, v, n * sizeof *out);
    return n;
}

static const sg_plugin_ops rs_ops = {
    .abi_version = SG_PLUGIN_ABI_VERSION,
    .name = "redis_streams",
    .init = rs_init,
    .submit = rs_submit,
    .event_fd = rs_event_fd,
    .poll = rs_poll,
    .shutdown = rs_shutdown,
    .stats = rs_stats,
};

const sg_plugin_ops *sg_plugin_entry(void);
const sg_plugin_ops *sg_plugin_entry(void) { return &rs_ops; }
