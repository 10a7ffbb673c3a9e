/*
 * commit: the one way a change enters the gateway's state, and the one place that says when
 * it is acknowledged. Beneath engine.c and lists.c (both call down into it); it calls nothing
 * above it except through the callbacks given to commit_init().
 *
 * Write path. commit_record() encodes a record, appends it to the open journal batch and
 * applies it at once (orders_apply, or the list callback for LIST records) - memory runs ahead
 * of the disk, and durview keeps reads on the acknowledged state meanwhile (durview.h).
 *
 * Acknowledgement. A record is acknowledged when its lsn <= commit_acked_lsn(): replies,
 * reads (durview), bank instructions (outbox) and UDP answers all wait for that, never for
 * the journal's own durable_lsn. Single node: acked = the journal's durable lsn (the
 * journal's on_durable goes through commit_on_journal_durable). Cluster (SPEC §10,
 * docs/cluster.md): acked = min(journal durable lsn, last lsn committed in the etcd log).
 *
 * The cluster log hook. In cluster mode the loop calls commit_flush() instead of
 * journal_flush(). Each new journal batch sent to the disk is copied and handed to ops.batch
 * (the cluster module submits one fenced etcd txn) as soon as the batch before it is settled
 * (commit_cluster_done): exactly one batch is in flight to etcd, in lsn order, so the log never
 * has a gap. Disk and etcd overlap by one batch: batch N+1 may be written and fsynced while
 * batch N's txn is in flight, batch N+2 waits (the journal groups everything that arrives
 * meanwhile). The bytes handed over are the batch's frames (journal format v2: frame header,
 * records, trailer - hash chain included), concatenated, without the segment header a roll
 * puts between two frames: exactly the frames as they are in the segments. They stay valid
 * until commit_cluster_done() (two copy buffers), so a resend needs no copy.
 * commit_enable_cluster() caps a batch so that it fits one etcd request.
 *
 * Replay. commit_replay() is the journal's replay path for one record (decode + apply, no
 * journal append, everything replayed is already acknowledged): engine_recover uses it, and
 * a follower applying the cluster log does the same.
 *
 * Single-threaded (the event loop). No allocation. The journal, orders and durview it is given
 * stay the caller's.
 */
#ifndef SG_COMMIT_H
#define SG_COMMIT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "durview.h"
#include "journal.h"
#include "orders.h"
#include "record.h"

/* One journal batch as it goes to the cluster log. */
typedef struct commit_batch {
    uint64_t first_lsn, last_lsn;
    const uint8_t *bytes; /* frames, header..trailer each, as written to the segments */
    size_t len;
} commit_batch;

typedef struct commit_ops {
    /* Apply a LIST record (lists.c): 0, or -1 with err. live = false while replaying. */
    int (*apply_list)(void *ctx, const order_rec *r, bool live, char *err, size_t errcap);
    /* Everything up to lsn is acknowledged (called once per advance, lsn increasing). */
    void (*acked)(void *ctx, uint64_t lsn);
    /* Cluster mode only (set by commit_enable_cluster; NULL at commit_init): a new batch went
     * to the disk; commit it to the cluster log and call commit_cluster_done() (once) when it
     * is settled. */
    void (*batch)(void *ctx, const commit_batch *b);
    /* A line for the log ("ERROR", message): only before an abort. */
    void (*log)(void *ctx, const char *level, const char *msg);
    void *ctx;
} commit_ops;

typedef struct commit {
    journal *j;
    orders *o;
    durview *dv;
    uint8_t *recbuf; /* JOURNAL_RECORD_BYTES_MAX of encoding scratch */
    commit_ops ops;
    uint64_t acked_lsn;   /* see above */
    bool clustered;       /* commit_enable_cluster */
    uint64_t cluster_lsn; /* last lsn committed in the cluster log (clustered) */
    int64_t cluster_rev;  /* etcd revision of that commit */
    bool pending;         /* inflight is in flight to the cluster log */
    commit_batch inflight;
    bool queued;          /* next is on its way to the disk, waiting for inflight: no new disk batch */
    commit_batch next;
    uint8_t *scratch;     /* commit_enable_cluster: 2 x scratch_cap, copies of inflight and next */
    size_t scratch_cap;
    uint64_t sent_seq;    /* journal batch seq last handed to ops.batch */
    uint64_t batches, bytes; /* committed to the cluster log */
    bool readonly;        /* commit_set_writable(false): commit_record refuses (-EROFS) */
    bool refused;         /* the last batch was settled !ok: the log may lag the journal */
    bool mirror;          /* commit_set_mirror */
} commit;

/* Wire the layer before the journal is replayed (commit_replay needs it). ops is copied. */
void commit_init(commit *c, journal *j, orders *o, durview *dv, uint8_t *recbuf, const commit_ops *ops);
/* After the replay: attach the journal to the ring with commit_on_journal_durable, so that its
 * durability reaches ops.acked through here. Everything replayed counts as acknowledged. */
void commit_attach(commit *c, struct io_uring *ring);
/* Journal one record and apply it (orders or lists): its lsn, or -EAGAIN (no room in the open
 * batch or in durview: nothing changed, retry after the next acknowledged batch) or -errno
 * (a segment cannot be created). The caller has checked the table room it needs: a record
 * that is journaled but cannot be applied means memory and disk disagree, and aborts. */
int64_t commit_record(commit *c, order_rec *r);
/* Cluster: only the leader writes. While not writable, commit_record() returns -EROFS and
 * journals nothing - the safety net beneath the READONLY answers of commands.c and udp.c. */
static inline void commit_set_writable(commit *c, bool writable) { c->readonly = !writable; }
/* Apply one record of the journal (or of the cluster log) without journaling it again:
 * 0, 1 (malformed payload) or 2 (cannot be applied), with err. */
int commit_replay(commit *c, uint16_t type, uint64_t lsn, const uint8_t *payload, uint32_t len, char *err,
                  size_t errcap);
/* The record commit_replay will be given a few records from now (journal_ahead_fn): its
 * index slots are prefetched so that replay's cache misses overlap. Changes nothing. */
void commit_replay_ahead(commit *c, uint16_t type, const uint8_t *payload, uint32_t len);
/* journal_durable_fn: ctx is the commit. */
void commit_on_journal_durable(void *ctx, uint64_t durable_lsn);
/* Send the open journal batch when it may go (journal_flush), and in cluster mode hand a new
 * batch to ops.batch; no new batch while one is in flight to the cluster log. */
void commit_flush(commit *c, int64_t now_ns);
static inline uint64_t commit_acked_lsn(const commit *c) { return c->acked_lsn; }
/* Cluster mode: the batch handed to ops.batch is settled. ok: it is in the cluster log at
 * etcd revision rev (acked advances once the disk has it too). !ok: it will never be (this
 * member was deposed): the next batch may go (the caller has stopped writing by then). */
void commit_cluster_done(commit *c, bool ok, int64_t rev);
/* Cluster mode: the local journal and the cluster log agree up to lsn, committed at etcd
 * revision rev (a follower that caught up, a leader that cut a tail the cluster never had): the
 * next batch handed over starts at lsn + 1, and acknowledgement resumes from there. For the
 * follower side (catch-up before leading, tail cut of a returning leader). */
void commit_cluster_reset(commit *c, uint64_t lsn, int64_t rev);
static inline uint64_t commit_cluster_lsn(const commit *c) { return c->cluster_lsn; }
static inline int64_t commit_cluster_rev(const commit *c) { return c->cluster_rev; }
/* Cluster mode, after commit_attach: hand every new batch to batch(ops.ctx, b) and acknowledge
 * only what the cluster log has too. A journal batch is capped at cap bytes so that it fits
 * one etcd request; scratch (2 x cap bytes, the caller's) holds the copies of the batch in flight
 * and of the one queued behind it. */
void commit_enable_cluster(commit *c, void (*batch)(void *ctx, const commit_batch *b), uint32_t cap,
                           uint8_t *scratch);
/* Cluster mode, follower side: while mirror is set the journal only copies batches that are
 * in the cluster log already, so nothing is handed to ops.batch and the acknowledged lsn is
 * the journal's durable lsn, as on a single node. Leave it (after commit_cluster_reset) before
 * this member takes writes. */
static inline void commit_set_mirror(commit *c, bool mirror) { c->mirror = mirror; }
#endif
