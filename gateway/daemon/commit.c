/*
 * commit: journal append + apply, and the acknowledged lsn (commit.h). engine.c and lists.c
 * call down into it; the LIST apply, the acknowledgement fan-out and the cluster log are
 * callbacks given at init, so nothing here reaches back up.
 */
#include "commit.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_list_record(uint16_t type) { return type >= REC_LIST_ADD && type <= REC_LIST_LOAD_COMMIT; }

static void fatal(commit *c, const char *msg) {
    if (c->ops.log) c->ops.log(c->ops.ctx, "ERROR", msg);
    abort();
}

void commit_init(commit *c, journal *j, orders *o, durview *dv, uint8_t *recbuf, const commit_ops *ops) {
    /* batch comes only through commit_enable_cluster; everything else starts zeroed here. */
    assert(j && o && dv && recbuf && ops && ops->apply_list && ops->acked && !ops->batch);
    *c = (commit){.j = j, .o = o, .dv = dv, .recbuf = recbuf, .ops = *ops};
}

void commit_attach(commit *c, struct io_uring *ring) {
    journal_attach(c->j, ring, commit_on_journal_durable, c);
    c->acked_lsn = c->j->durable_lsn;
    c->cluster_lsn = c->j->durable_lsn;
}

void commit_enable_cluster(commit *c, void (*batch)(void *ctx, const commit_batch *b), uint32_t cap,
                           uint8_t *scratch) {
    /* scratch: 2 x cap bytes (the batch in flight, the one queued behind it). */
    assert(batch && scratch && cap >= 2 * JOURNAL_RECORD_BYTES_MAX && cap <= JOURNAL_BUF_BYTES);
    c->ops.batch = batch;
    c->clustered = true;
    c->j->batch_cap = cap;
    c->scratch = scratch;
    c->scratch_cap = cap;
}
static int apply(commit *c, const order_rec *r, uint64_t lsn, bool live, char *err, size_t errcap) {
    return is_list_record(r->type) ? c->ops.apply_list(c->ops.ctx, r, live, err, errcap)
                                   : orders_apply(c->o, r, lsn, err, errcap);
}

int64_t commit_record(commit *c, order_rec *r) {
    bool list = is_list_record(r->type);
    if (c->readonly) return -EROFS;
    if (!list && !durview_room(c->dv, 1)) return -EAGAIN;
    char msg[320];
    int n = record_encode(r, c->recbuf, JOURNAL_RECORD_BYTES_MAX - sizeof(journal_rec_hdr));
    if (n < 0) {
        snprintf(msg, sizeof msg, "record does not fit JOURNAL_RECORD_BYTES_MAX (type %s)", record_type_name(r->type));
        fatal(c, msg);
    }
#ifndef NDEBUG
    /* Pair assertion with replay: what goes to disk decodes back to the record applied now. */
    order_rec back;
    assert(record_decode(r->type, c->recbuf, (size_t)n, &back) == 0 && record_equal(r, &back));
#endif
    int64_t lsn = journal_append(c->j, r->type, c->recbuf, (uint32_t)n);
    if (lsn < 0) return lsn;
    assert((uint64_t)lsn == journal_last_lsn(c->j) && (uint64_t)lsn > c->acked_lsn);
    /* Reads keep showing the order as it was until this record is acknowledged; the frozen
     * mark in shared memory follows in engine_on_durable. */
    if (!list) durview_before_apply(c->dv, c->o, r, (uint64_t)lsn);
    char err[256];
    if (apply(c, r, (uint64_t)lsn, true, err, sizeof err) != 0) {
        /* Memory and disk would disagree: stop rather than acknowledge a divergent state. */
        snprintf(msg, sizeof msg, "journaled record %lld cannot be applied: %s", (long long)lsn, err);
        fatal(c, msg);
    }
    return lsn;
}

int commit_replay(commit *c, uint16_t type, uint64_t lsn, const uint8_t *payload, uint32_t len, char *err,
                  size_t errcap) {
    assert(lsn >= 1 && (payload || len == 0));
    order_rec r;
    if (record_decode(type, payload, len, &r) != 0) {
        snprintf(err, errcap, "malformed payload");
        return 1;
    }
    assert(r.type == type);
    return apply(c, &r, lsn, false, err, errcap) != 0 ? 2 : 0;
}

void commit_replay_ahead(commit *c, uint16_t type, const uint8_t *payload, uint32_t len) {
    order_rec r;
    if (is_list_record(type) || record_decode(type, payload, len, &r) != 0) return;
    orders_prefetch(c->o, &r);
}

static void advance(commit *c) {
    uint64_t lsn = c->j->durable_lsn;
    if (c->clustered && !c->mirror && c->cluster_lsn < lsn) lsn = c->cluster_lsn;
    if (lsn <= c->acked_lsn) return;
    c->acked_lsn = lsn;
    c->ops.acked(c->ops.ctx, lsn);
}

void commit_on_journal_durable(void *ctx, uint64_t durable_lsn) {
    commit *c = ctx;
    assert(durable_lsn == c->j->durable_lsn);
    advance(c);
}

/* The frames of the batch just sent to the disk, copied into buf (scratch_cap bytes): the
 * journal reuses its buffer once the batch is durable, while the txn may still be in flight
 * or need a resend. A roll puts a segment header (written at file offset 0 of the new segment)
 * before the frame it opens; the cluster log carries frames only, so that a follower writes
 * them into segments of its own size. */
static commit_batch gather(commit *c, const journal_batch *b, uint8_t *buf) {
    commit_batch cb = {.last_lsn = b->last_lsn, .bytes = buf};
    for (uint32_t i = 0; i < b->n_ext; i++) {
        const journal_ext *e = &b->ext[i];
        size_t skip = e->file_off == 0 ? sizeof(journal_seg_hdr) : 0;
        assert(e->len >= skip && cb.len + e->len - skip <= c->scratch_cap);
        memcpy(buf + cb.len, b->data + e->buf_off + skip, e->len - skip);
        cb.len += e->len - skip;
    }
    journal_frame f;
    assert(cb.len >= JOURNAL_FRAME_OVERHEAD);
    memcpy(&f, cb.bytes, sizeof f);
    assert(f.magic == JOURNAL_FRAME_MAGIC && f.first_lsn <= f.last_lsn && f.last_lsn <= cb.last_lsn);
    cb.first_lsn = f.first_lsn;
    return cb;
}

/* Hand the queued batch over as the one in flight. */
static void send_queued(commit *c) {
    assert(c->queued && !c->pending);
    c->queued = false;
    c->inflight = c->next;
    c->pending = true;
    /* The log never has a gap: each batch starts right after the last one committed. */
    assert(c->inflight.first_lsn == c->cluster_lsn + 1 || c->refused);
    c->ops.batch(c->ops.ctx, &c->inflight);
}

void commit_flush(commit *c, int64_t now_ns) {
    /* Disk and cluster log overlap by one batch: the disk may take batch N+1 while batch N's
     * txn is in flight, not N+2 (the journal groups what arrives meanwhile). */
    if (c->queued) return;
    journal_flush(c->j, now_ns);
    if (!c->clustered || c->mirror || !c->j->inflight) return;
    const journal_batch *b = &c->j->batch[c->j->open_idx ^ 1];
    if (b->seq == c->sent_seq) return; /* the disk retry of a batch the cluster log has had */
    c->sent_seq = b->seq;
    /* Two copy buffers: the one in flight keeps its bytes for a resend, the other takes this. */
    uint8_t *buf = c->scratch + (c->pending && c->inflight.bytes == c->scratch ? c->scratch_cap : 0);
    c->next = gather(c, b, buf);
    c->queued = true;
    if (!c->pending) send_queued(c);
}

void commit_cluster_done(commit *c, bool ok, int64_t rev) {
    assert(c->clustered && c->pending);
    c->pending = false;
    if (ok) {
        assert(c->inflight.first_lsn == c->cluster_lsn + 1 && c->inflight.last_lsn > c->cluster_lsn);
        c->cluster_lsn = c->inflight.last_lsn;
        c->cluster_rev = rev;
        c->batches++;
        c->bytes += c->inflight.len;
        advance(c);
    } else {
        c->refused = true; /* the queued batch follows a refused one: the cluster refuses it too */
    }
    if (c->queued) send_queued(c);
}

void commit_cluster_reset(commit *c, uint64_t lsn, int64_t rev) {
    assert(c->clustered && !c->pending && !c->queued && lsn <= journal_last_lsn(c->j));
    c->cluster_lsn = lsn;
    c->cluster_rev = rev;
    c->refused = false;
    advance(c);
}
