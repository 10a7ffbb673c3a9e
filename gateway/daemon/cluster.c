/*
 * cluster: role, lease, campaign, the watch of P/leader, and the fenced commit of each journal
 * batch (cluster.h, docs/cluster.md). Everything etcd does arrives as an etcd_result on the
 * loop (the client's eventfd); this file turns each into a change of role or a settled batch.
 */
#include "cluster.h"
#include "prom.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd.h"
#include "gateway.h"
#include "logval.h"
#include "ring.h"

/* Cookies: kind in the low byte; a commit's also carries its batch's first lsn. */
enum { CK_GRANT = 1, CK_KEEP, CK_CAMPAIGN, CK_PROBE, CK_WATCH, CK_COMMIT, CK_ABDICATE, CK_REVOKE };
#define CK_KIND(ck) ((unsigned)((ck) & 0xff))
#define CK_LSN(ck) ((ck) >> 8)

#define CLUSTER_RETRY_MS 250 /* pause before a failed grant, campaign or probe is tried again */
#define POLL_BATCH 32        /* results taken per etcd_poll */
#define REVOKE_WAIT_MS 500   /* a stopping leader waits this long for etcd to drop its lease */

struct cluster {
    etcd_client *ec;
    int efd;
    bool armed;
    cluster_role role;
    int64_t lease;          /* 0: none granted (or lost) */
    bool granting, campaigning, probing;
    int watch_id;           /* -1: no watch of P/leader */
    int64_t epoch;          /* this member's, while LEADING/LEADER */
    char leader[CLUSTER_NAME_LEN_MAX + 1], leader_addr[80];
    int64_t leader_rev;     /* create_revision of the P/leader we know; 0: none */
    int64_t retry_at_ms;    /* grant / campaign / probe again at (0: nothing pending) */
    bool failing;           /* the batch in flight failed its deadline: BUSY until it is in */
    char fail_why[200];
    bool txn_out;           /* a commit txn is submitted and not yet answered */
    int64_t resend_at_ms;   /* send the pending batch's txn again at (0: not waiting) */
    bool lease_sure;        /* last tick: the lease surely lives past now + margin */
    char key_leader[CLUSTER_PREFIX_LEN_MAX + 16];
    size_t key_leader_len;
    char key_head[CLUSTER_PREFIX_LEN_MAX + 16]; /* P/head: the last lsn of the log */
    size_t key_head_len;
    char value[CLUSTER_NAME_LEN_MAX + 80]; /* "<name> <host:port>" */
    uint8_t *scratch;       /* commit_enable_cluster's */
    logval_codec *codec;    /* packs each batch once (logval.h) */
    const uint8_t *val;     /* the batch in flight as its log value: into codec, or its frames */
    size_t val_len;
    uint64_t val_lsn;       /* the first lsn of the batch val holds */
    uint64_t value_bytes;   /* bytes of log values put (each batch once; resends not counted) */
    cluster_ext_fn ext;     /* CLUSTER_COOKIE_EXT results */
    cluster_hooks up;       /* engine, server, follower: above (cluster_start) */
    uint64_t commit_failures, deposed, campaigns, elected;
};

static int64_t mono_ms(void) { return etcd_mono_ms(); }

static const char *cluster_role_str(cluster_role r) {
    static const char *n[] = {"standalone", "follower", "leader", "leader"};
    return n[r];
}

/* ---- submitting ------------------------------------------------------------------------ */

static bool submit(gateway *gw, const etcd_request *r, uint64_t cookie) {
    char err[256];
    int rc = etcd_submit(gw->cl->ec, r, cookie, err, sizeof err);
    if (rc == 0) return true;
    LOGW(gw, "cluster: etcd request not sent: %s", err);
    return false;
}

static void grant(gateway *gw) {
    cluster *cl = gw->cl;
    etcd_request r = {.kind = ETCD_LEASE_GRANT, .ttl_s = (gw->cfg.cluster_lease_ms + 999) / 1000};
    cl->granting = submit(gw, &r, CK_GRANT);
    if (!cl->granting) cl->retry_at_ms = mono_ms() + CLUSTER_RETRY_MS;
}

/* One txn: if P/leader is absent, it becomes ours (bound to our lease); else who holds it. */
static void campaign(gateway *gw) {
    cluster *cl = gw->cl;
    assert(cl->lease && !cl->campaigning && gw->cfg.cluster_candidate);
    etcd_compare absent = {.key = cl->key_leader, .key_len = cl->key_leader_len, .target = ETCD_CMP_VERSION,
                           .result = ETCD_CMP_EQUAL, .number = 0};
    etcd_op mine = {.kind = ETCD_OP_PUT, .key = cl->key_leader, .key_len = cl->key_leader_len,
                    .value = cl->value, .value_len = strlen(cl->value), .lease = cl->lease};
    etcd_op who = {.kind = ETCD_OP_RANGE, .key = cl->key_leader, .key_len = cl->key_leader_len};
    etcd_request r = {.kind = ETCD_TXN, .compares = &absent, .compare_count = 1, .success = &mine,
                      .success_count = 1, .failure = &who, .failure_count = 1};
    cl->campaigns++;
    cl->campaigning = submit(gw, &r, CK_CAMPAIGN);
    if (!cl->campaigning) cl->retry_at_ms = mono_ms() + CLUSTER_RETRY_MS;
}

static void probe(gateway *gw) {
    cluster *cl = gw->cl;
    etcd_request r = {.kind = ETCD_RANGE, .op = {.kind = ETCD_OP_RANGE, .key = cl->key_leader,
                                                 .key_len = cl->key_leader_len}};
    cl->probing = submit(gw, &r, CK_PROBE);
    if (!cl->probing) cl->retry_at_ms = mono_ms() + CLUSTER_RETRY_MS;
}

static void watch_from(gateway *gw, int64_t rev) {
    cluster *cl = gw->cl;
    if (cl->watch_id >= 0) return;
    int id = etcd_watch_start(cl->ec, cl->key_leader, cl->key_leader_len, NULL, 0, rev, CK_WATCH);
    if (id < 0) {
        LOGW(gw, "cluster: cannot watch %s (%s); retrying", cl->key_leader, etcd_strerror((etcd_err)-id));
        cl->retry_at_ms = mono_ms() + CLUSTER_RETRY_MS;
        return;
    }
    cl->watch_id = id;
}

/* ---- role ------------------------------------------------------------------------------ */

static void refuse_pending(gateway *gw) {
    const char *code;
    char why[256];
    if (cluster_write_refused(gw, &code, why, sizeof why)) gw->cl->up.fail_unacked(gw, code, why);
}

/* No longer leader (deposed, lease lost): nothing more is acknowledged in this epoch. */
static void step_down(gateway *gw, const char *why) {
    cluster *cl = gw->cl;
    if (cl->role != CLUSTER_LEADER && cl->role != CLUSTER_LEADING) return;
    LOGW(gw, "cluster: no longer leader of epoch %" PRId64 " (%s); now a follower", cl->epoch, why);
    if (!strcmp(cl->leader, gw->cfg.cluster_name)) cl->leader[0] = cl->leader_addr[0] = 0; /* not us: unknown */
    cl->role = CLUSTER_FOLLOWER;
    cl->epoch = 0;
    cl->deposed++;
    commit_set_writable(&gw->commit, false);
    refuse_pending(gw);
    cl->up.deposed(gw); /* follow in place, or start again when memory holds an uncommitted tail */
}

static void won(gateway *gw, int64_t epoch) {
    cluster *cl = gw->cl;
    cl->epoch = epoch;
    cl->leader_rev = epoch;
    snprintf(cl->leader, sizeof cl->leader, "%s", gw->cfg.cluster_name);
    snprintf(cl->leader_addr, sizeof cl->leader_addr, "%s:%u", gw->cfg.cluster_advertise.host,
             gw->cfg.cluster_advertise.port);
    cl->role = CLUSTER_LEADING;
    cl->elected++;
    LOGI(gw, "cluster: %s leads, epoch %" PRId64, cl->leader, epoch);
    if (cl->up.on_lead(gw) == 0) cluster_lead_ready(gw);
}

void cluster_lead_ready(gateway *gw) {
    cluster *cl = gw->cl;
    if (!cl || cl->role != CLUSTER_LEADING) return;
    cl->role = CLUSTER_LEADER;
    commit_set_writable(&gw->commit, true);
    LOGI(gw, "cluster: accepting writes in epoch %" PRId64 " from lsn %" PRIu64, cl->epoch,
         commit_cluster_lsn(&gw->commit) + 1);
    cl->up.on_writable(gw); /* cascades a crash or a failover interrupted */
}

/* P/leader as etcd has it now (kv NULL: absent). */
static void leader_is(gateway *gw, const etcd_kv *kv) {
    cluster *cl = gw->cl;
    if (!kv) {
        cl->leader[0] = cl->leader_addr[0] = 0;
        cl->leader_rev = 0;
        step_down(gw, "the leader key is gone (lease expired or revoked)");
        return;
    }
    if (cl->lease && kv->lease == cl->lease && cl->role == CLUSTER_FOLLOWER && !cl->campaigning) {
        /* Our own key: a campaign whose answer was lost did win. */
        won(gw, kv->create_revision);
        return;
    }
    if ((cl->role == CLUSTER_LEADER || cl->role == CLUSTER_LEADING) && kv->create_revision == cl->epoch) return;
    const char *v = (const char *)kv->value, *sp = memchr(v, ' ', kv->value_len);
    size_t nl = sp ? (size_t)(sp - v) : kv->value_len;
    size_t al = sp ? kv->value_len - nl - 1 : 0;
    snprintf(cl->leader, sizeof cl->leader, "%.*s", (int)nl, v);
    snprintf(cl->leader_addr, sizeof cl->leader_addr, "%.*s", (int)al, sp ? sp + 1 : "");
    cl->leader_rev = kv->create_revision;
    step_down(gw, "another member holds the leader key");
}

/* The failure branch's range, or a probe's: P/leader, or absent. */
static const etcd_kv *first_kv(const etcd_result *r) { return r->kv_count ? &r->kvs[0] : NULL; }

static void maybe_campaign(gateway *gw) {
    cluster *cl = gw->cl;
    /* A journal that holds what the log does not (commit.refused) must be cut before this member
     * may lead again: the follower side's catch-up resets it (commit_cluster_reset). */
    if (gw->cfg.cluster_candidate && cl->lease && !cl->campaigning && cl->role == CLUSTER_FOLLOWER &&
        !cl->leader_rev && gw->phase == PHASE_RUNNING && !gw->commit.refused)
        campaign(gw);
}

/* ---- results --------------------------------------------------------------------------- */

static void on_grant(gateway *gw, const etcd_result *r) {
    cluster *cl = gw->cl;
    cl->granting = false;
    if (r->err != ETCD_OK) {
        LOGW(gw, "cluster: lease grant failed: %s %s; retrying", etcd_strerror(r->err), r->msg);
        cl->retry_at_ms = mono_ms() + CLUSTER_RETRY_MS;
        return;
    }
    cl->lease = r->lease_id;
    uint32_t every = gw->cfg.cluster_lease_ms / 3;
    if (etcd_lease_keep_start(cl->ec, cl->lease, every, CK_KEEP) != 0)
        LOGW(gw, "cluster: cannot keep lease %" PRIx64 " alive", (uint64_t)cl->lease);
    LOGI(gw, "cluster: lease %" PRIx64 " granted (ttl %" PRId64 " s, keep-alive every %u ms)", (uint64_t)cl->lease,
         r->ttl_s, every);
    cl->up.lease_granted(gw, cl->lease, gw->cfg.cluster_candidate ? "follower" : "mirror");
    if (cl->watch_id < 0 && !cl->probing) probe(gw);
    else maybe_campaign(gw);
}

static void on_keep_lost(gateway *gw, const etcd_result *r) {
    cluster *cl = gw->cl;
    LOGW(gw, "cluster: lease %" PRIx64 " lost (%s %s)", (uint64_t)cl->lease, etcd_strerror(r->err), r->msg);
    cl->lease = 0;
    step_down(gw, "lease lost");
    if (!cl->granting) grant(gw);
}

static void on_campaign(gateway *gw, const etcd_result *r) {
    cluster *cl = gw->cl;
    cl->campaigning = false;
    if (r->err != ETCD_OK) {
        /* Unsure or not: a probe settles it (our key bound to our lease means we won). */
        LOGW(gw, "cluster: campaign: %s %s", etcd_strerror(r->err), r->msg);
        cl->retry_at_ms = mono_ms() + CLUSTER_RETRY_MS;
        return;
    }
    watch_from(gw, r->revision + 1);
    if (r->succeeded) won(gw, r->revision);
    else leader_is(gw, first_kv(r));
}

static void on_probe(gateway *gw, const etcd_result *r) {
    cluster *cl = gw->cl;
    cl->probing = false;
    if (r->err != ETCD_OK) {
        cl->retry_at_ms = mono_ms() + CLUSTER_RETRY_MS;
        return;
    }
    watch_from(gw, r->revision + 1);
    leader_is(gw, first_kv(r));
    maybe_campaign(gw);
}

static void on_watch(gateway *gw, const etcd_result *r) {
    cluster *cl = gw->cl;
    for (size_t i = 0; i < r->event_count; i++) leader_is(gw, r->events[i].is_delete ? NULL : &r->events[i].kv);
    if (r->final) {
        LOGW(gw, "cluster: watch of %s ended (%s %s); reading it again", cl->key_leader, etcd_strerror(r->err),
             r->msg);
        cl->watch_id = -1;
        if (!cl->probing) probe(gw);
        return;
    }
    maybe_campaign(gw);
}

static void send_batch(gateway *gw);

/* The i-th response of a txn's branch: its first key, or NULL. */
static const etcd_kv *op_kv(const etcd_result *r, size_t i) {
    return i < r->op_count && r->ops[i].kv_count ? &r->kvs[r->ops[i].kv_first] : NULL;
}

/* Give the leader key up (this member cannot lead on): delete it if it is still ours. */
static void abdicate(gateway *gw, int64_t epoch) {
    cluster *cl = gw->cl;
    etcd_compare ours = {.key = cl->key_leader, .key_len = cl->key_leader_len, .target = ETCD_CMP_CREATE,
                         .result = ETCD_CMP_EQUAL, .number = epoch};
    etcd_op del = {.kind = ETCD_OP_DELETE, .key = cl->key_leader, .key_len = cl->key_leader_len};
    etcd_request r = {.kind = ETCD_TXN, .compares = &ours, .compare_count = 1, .success = &del, .success_count = 1};
    submit(gw, &r, CK_ABDICATE);
}

/* The txn's compares failed: its failure branch read P/leader and P/head. */
static void commit_refused(gateway *gw, const etcd_result *r) {
    cluster *cl = gw->cl;
    commit *cm = &gw->commit;
    const etcd_kv *lk = op_kv(r, 0), *hk = op_kv(r, 1);
    char last[24];
    snprintf(last, sizeof last, "%020" PRIu64, cm->inflight.last_lsn);
    cl->failing = false;
    if (lk && lk->create_revision == cl->epoch && cl->epoch) {
        if (hk && hk->value_len == 20 && !memcmp(hk->value, last, 20)) {
            /* An earlier send of this very txn (answer lost, or timed out) got in. */
            commit_cluster_done(cm, true, hk->mod_revision);
            return;
        }
        /* Still the leader, but the log does not end where this journal does: it is behind
         * (a member that never caught up) or holds a tail the log never took. Committing
         * would overwrite the log or leave a gap: give the lead up. */
        int64_t epoch = cl->epoch;
        LOGE(gw, "cluster: the log ends at lsn %.*s, this journal's batch starts at %" PRIu64
                 "; not leading (the journal must catch up or be cut first)",
             hk ? (int)hk->value_len : 1, hk ? (const char *)hk->value : "0", cm->inflight.first_lsn);
        step_down(gw, "the cluster log and this journal differ");
        abdicate(gw, epoch);
        commit_cluster_done(cm, false, 0);
        return;
    }
    leader_is(gw, lk); /* another epoch: deposed */
    step_down(gw, "the log's fence names another epoch");
    commit_cluster_done(cm, false, 0);
}

static void on_commit(gateway *gw, const etcd_result *r) {
    cluster *cl = gw->cl;
    commit *cm = &gw->commit;
    if (!cm->pending || CK_LSN(r->cookie) != cm->inflight.first_lsn) return; /* settled meanwhile */
    cl->txn_out = false;
    if (r->err == ETCD_OK && r->succeeded) {
        if (cl->failing) LOGI(gw, "cluster: the log takes batches again (lsn %" PRIu64 ")", cm->inflight.first_lsn);
        cl->failing = false;
        commit_cluster_done(cm, true, r->revision);
        return;
    }
    if (r->err == ETCD_OK) {
        commit_refused(gw, r);
        return;
    }
    cl->commit_failures++;
    if (!cl->failing) {
        snprintf(cl->fail_why, sizeof cl->fail_why,
                 "cluster log unavailable (%s%s); not acknowledged, retry with the same request_id",
                 etcd_strerror(r->err), r->unsure ? ", outcome unknown" : "");
        LOGE(gw, "cluster: batch at lsn %" PRIu64 " not committed: %s %s; resending it every %d ms",
             cm->inflight.first_lsn, etcd_strerror(r->err), r->msg, CLUSTER_RESEND_MS);
        cl->failing = true;
        cl->up.fail_unacked(gw, "ERR BUSY", cl->fail_why);
    }
    cl->resend_at_ms = mono_ms() + CLUSTER_RESEND_MS;
}

static void dispatch(gateway *gw, const etcd_result *r) {
    if (r->cookie & CLUSTER_COOKIE_EXT) {
        if (gw->cl->ext) gw->cl->ext(gw, r);
        return;
    }
    switch (CK_KIND(r->cookie)) {
    case CK_GRANT: on_grant(gw, r); break;
    case CK_KEEP:
        if (r->final) on_keep_lost(gw, r);
        break;
    case CK_CAMPAIGN: on_campaign(gw, r); break;
    case CK_PROBE: on_probe(gw, r); break;
    case CK_WATCH: on_watch(gw, r); break;
    case CK_COMMIT: on_commit(gw, r); break;
    default: break;
    }
}

/* ---- the commit path ------------------------------------------------------------------- */

/* The batch commit.c has in flight, as its fenced txn:
 *   if   create_revision(P/leader) == epoch            (still this member's epoch)
 *   and  P/head == the lsn before this batch           (the log ends where this journal does)
 *   then put P/log/<first lsn> = frames (packed by on_batch), put P/head = last lsn
 *   else range P/leader, range P/head
 * The same key, bytes and compares every time it is sent: a resend whose first copy did land
 * fails the head compare and finds its own last lsn in P/head (commit_refused). So the log is
 * never overwritten and never has a gap, whoever writes it. */
static void send_batch(gateway *gw) {
    cluster *cl = gw->cl;
    const commit_batch *b = &gw->commit.inflight;
    char key[sizeof cl->key_leader + 32], prev[24], last[24];
    int kl = snprintf(key, sizeof key, "%s/log/%020" PRIu64, gw->cfg.cluster_prefix, b->first_lsn);
    snprintf(prev, sizeof prev, "%020" PRIu64, b->first_lsn - 1);
    snprintf(last, sizeof last, "%020" PRIu64, b->last_lsn);
    etcd_compare cmp[2] = {
        {.key = cl->key_leader, .key_len = cl->key_leader_len, .target = ETCD_CMP_CREATE, .result = ETCD_CMP_EQUAL,
         .number = cl->epoch},
        /* etcd fails a value compare on a missing key: an empty log is version 0. */
        b->first_lsn == 1
            ? (etcd_compare){.key = cl->key_head, .key_len = cl->key_head_len, .target = ETCD_CMP_VERSION,
                             .result = ETCD_CMP_EQUAL, .number = 0}
            : (etcd_compare){.key = cl->key_head, .key_len = cl->key_head_len, .target = ETCD_CMP_VALUE,
                             .result = ETCD_CMP_EQUAL, .value = prev, .value_len = 20},
    };
    etcd_op put[2] = {{.kind = ETCD_OP_PUT, .key = key, .key_len = (size_t)kl, .value = cl->val, .value_len = cl->val_len},
                      {.kind = ETCD_OP_PUT, .key = cl->key_head, .key_len = cl->key_head_len, .value = last,
                       .value_len = 20}};
    etcd_op who[2] = {{.kind = ETCD_OP_RANGE, .key = cl->key_leader, .key_len = cl->key_leader_len},
                      {.kind = ETCD_OP_RANGE, .key = cl->key_head, .key_len = cl->key_head_len}};
    etcd_request r = {.kind = ETCD_TXN, .flags = ETCD_F_IDEMPOTENT, .deadline_ms = gw->cfg.cluster_commit_timeout_ms,
                      .compares = cmp, .compare_count = 2, .success = put, .success_count = 2,
                      .failure = who, .failure_count = 2};
    assert(cl->val_lsn == b->first_lsn); /* packed by on_batch for this very batch */
    assert(etcd_request_bytes(&r) <= ETCD_REQUEST_BYTES_MAX); /* the batch cap sees to it */
    cl->resend_at_ms = 0;
    if (submit(gw, &r, CK_COMMIT | (b->first_lsn << 8))) cl->txn_out = true;
    else cl->resend_at_ms = mono_ms() + CLUSTER_RESEND_MS;
}

/* commit_ops.batch: a new journal batch went to the disk. */
static void on_batch(void *ctx, const commit_batch *b) {
    gateway *gw = ctx;
    cluster *cl = gw->cl;
    if (cl->role != CLUSTER_LEADER && cl->role != CLUSTER_LEADING) {
        /* Appended before this member learnt it is deposed: it never reaches the log. */
        commit_cluster_done(&gw->commit, false, 0);
        refuse_pending(gw);
        return;
    }
    /* Packed once: a resend puts the very same bytes (the value stays until the next batch;
     * b->bytes, which a raw value points at, is the batch in flight and stays as long). */
    assert(b == &gw->commit.inflight);
    cl->val = logval_encode(cl->codec, b->bytes, b->len, b->first_lsn, b->last_lsn, &cl->val_len);
    cl->val_lsn = b->first_lsn;
    cl->value_bytes += cl->val_len;
    send_batch(gw);
}

/* ---- the loop's side ------------------------------------------------------------------- */

static void arm(gateway *gw) {
    cluster *cl = gw->cl;
    struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
    io_uring_prep_poll_multishot(sqe, cl->efd, POLLIN);
    io_uring_sqe_set_data64(sqe, ud_make(UD_CLUSTER, 0, 0));
    cl->armed = true;
}

void cluster_on_cqe(gateway *gw, int res, uint32_t flags) {
    cluster *cl = gw->cl;
    if (!cl) return;
    if (!(flags & IORING_CQE_F_MORE)) cl->armed = false;
    if (res < 0 && res != -ECANCELED) LOGW(gw, "cluster: poll of the etcd client: %s", strerror(-res));
    const etcd_result *out[POLL_BATCH];
    size_t n;
    while ((n = etcd_poll(cl->ec, out, POLL_BATCH)) > 0)
        for (size_t i = 0; i < n; i++) dispatch(gw, out[i]);
    if (!cl->armed && res != -ECANCELED) arm(gw);
}

void cluster_tick(gateway *gw) {
    cluster *cl = gw->cl;
    if (!cl) return;
    int64_t now = mono_ms();
    if (cl->retry_at_ms && now >= cl->retry_at_ms) {
        cl->retry_at_ms = 0;
        if (!cl->lease && !cl->granting) grant(gw);
        else if (cl->watch_id < 0 && !cl->probing) probe(gw);
        else maybe_campaign(gw);
    }
    if (gw->commit.pending && !cl->txn_out && cl->resend_at_ms && now >= cl->resend_at_ms) send_batch(gw);
    cl->up.tick_follower(gw);
    /* Liveness hygiene: stop acknowledging before the lease could have run out. */
    int64_t until, margin = gw->cfg.cluster_lease_ms * CLUSTER_LEASE_MARGIN_PCT / 100 + CLUSTER_LEASE_MARGIN_MS;
    bool sure = cl->lease && etcd_lease_valid_until(cl->ec, cl->lease, &until) && now < until - margin;
    if (cl->role == CLUSTER_LEADER && cl->lease_sure && !sure)
        LOGW(gw, "cluster: lease not renewed in time; writes refused until it is");
    cl->lease_sure = sure;
}

/* What etcd counts against its request limit for the txn of a full batch (CLUSTER_BATCH_BYTES_MAX)
 * under the longest prefix: the batch cap must leave room for it. Sizes only: p is any buffer
 * of CLUSTER_BATCH_BYTES_MAX bytes. Checked once at start, not per batch. */
static size_t full_batch_txn_bytes(const uint8_t *p) {
    size_t key = CLUSTER_PREFIX_LEN_MAX + sizeof "/log/" + 20, small = CLUSTER_PREFIX_LEN_MAX + sizeof "/leader";
    etcd_compare cmp[2] = {{.key = p, .key_len = small, .target = ETCD_CMP_CREATE, .number = INT64_MAX},
                           {.key = p, .key_len = small, .target = ETCD_CMP_VALUE, .value = p, .value_len = 20}};
    etcd_op put[2] = {{.kind = ETCD_OP_PUT, .key = p, .key_len = key, .value = p, .value_len = CLUSTER_BATCH_BYTES_MAX},
                      {.kind = ETCD_OP_PUT, .key = p, .key_len = small, .value = p, .value_len = 20}};
    etcd_op who[2] = {{.kind = ETCD_OP_RANGE, .key = p, .key_len = small},
                      {.kind = ETCD_OP_RANGE, .key = p, .key_len = small}};
    etcd_request r = {.kind = ETCD_TXN, .compares = cmp, .compare_count = 2, .success = put, .success_count = 2,
                      .failure = who, .failure_count = 2};
    return etcd_request_bytes(&r);
}

int cluster_start(gateway *gw, const cluster_hooks *up, char *err, size_t errcap) {
    if (!gw->cfg.cluster_etcd[0]) return 0;
    assert(up && up->on_lead && up->on_writable && up->fail_unacked && up->start_follower && up->tick_follower &&
           up->lease_granted && up->deposed && up->info_lines);
    cluster *cl = calloc(1, sizeof *cl);
    uint8_t *scratch = malloc(2 * (size_t)CLUSTER_BATCH_BYTES_MAX); /* commit_enable_cluster */
    logval_codec *codec = logval_new();
    if (!cl || !scratch || !codec) {
        free(cl);
        free(scratch);
        logval_free(codec);
        snprintf(err, errcap, "cluster: out of memory");
        return -1;
    }
    etcd_config ec = {.endpoints = gw->cfg.cluster_etcd, .watch_idle_ms = gw->cfg.cluster_lease_ms * 2};
    cl->ec = etcd_create(&ec, err, errcap);
    /* A packed value is never longer than the frames (logval.h): the raw worst case bounds it. */
    size_t worst = cl->ec ? full_batch_txn_bytes(scratch) : 0;
    if (worst > ETCD_REQUEST_BYTES_MAX)
        snprintf(err, errcap, "CLUSTER_TXN_OVERHEAD_BYTES too small: a full batch's txn is %zu bytes", worst);
    if (!cl->ec || worst > ETCD_REQUEST_BYTES_MAX) {
        if (cl->ec) etcd_destroy(cl->ec);
        free(cl);
        free(scratch);
        logval_free(codec);
        return -1;
    }
    cl->codec = codec;
    cl->scratch = scratch;
    cl->up = *up;
    cl->efd = etcd_event_fd(cl->ec);
    cl->watch_id = -1;
    cl->role = CLUSTER_FOLLOWER;
    cl->key_leader_len = (size_t)snprintf(cl->key_leader, sizeof cl->key_leader, "%s/leader", gw->cfg.cluster_prefix);
    cl->key_head_len = (size_t)snprintf(cl->key_head, sizeof cl->key_head, "%s/head", gw->cfg.cluster_prefix);
    snprintf(cl->value, sizeof cl->value, "%s %s:%u", gw->cfg.cluster_name, gw->cfg.cluster_advertise.host,
             gw->cfg.cluster_advertise.port);
    gw->cl = cl;
    /* One batch is one etcd request: cap the journal's batches below the request limit. */
    commit_enable_cluster(&gw->commit, on_batch, CLUSTER_BATCH_BYTES_MAX, scratch);
    commit_set_writable(&gw->commit, false); /* until this member leads */
    /* A follower's journal copies batches that are in the log already (follower.h); what it
     * replayed at start is what the log holds (follower_reconcile cut the rest). */
    commit_set_mirror(&gw->commit, true);
    commit_cluster_reset(&gw->commit, journal_last_lsn(&gw->j), 0);
    if (cl->up.start_follower(gw, cl->ec, err, errcap) != 0) {
        cluster_stop(gw);
        return -1;
    }
    arm(gw);
    grant(gw);
    LOGI(gw, "cluster: member %s of %s on etcd %s (%s)", gw->cfg.cluster_name, gw->cfg.cluster_prefix,
         gw->cfg.cluster_etcd, gw->cfg.cluster_candidate ? "candidate" : "never leads");
    return 0;
}

/* A leader that stops gives its lease back, so that another candidate takes over at once
 * instead of after lease_ms. The loop has ended: waiting here (bounded) blocks no client. */
static void give_lease_back(gateway *gw) {
    cluster *cl = gw->cl;
    etcd_request r = {.kind = ETCD_LEASE_REVOKE, .lease_id = cl->lease, .deadline_ms = REVOKE_WAIT_MS};
    if (!submit(gw, &r, CK_REVOKE)) return;
    int64_t until = mono_ms() + REVOKE_WAIT_MS + 100;
    for (int64_t now = mono_ms(); now < until; now = mono_ms()) {
        struct pollfd p = {.fd = cl->efd, .events = POLLIN};
        poll(&p, 1, (int)(until - now));
        const etcd_result *out[POLL_BATCH];
        size_t n = etcd_poll(cl->ec, out, POLL_BATCH);
        for (size_t i = 0; i < n; i++)
            if (CK_KIND(out[i]->cookie) == CK_REVOKE && !(out[i]->cookie & CLUSTER_COOKIE_EXT)) {
                if (out[i]->err == ETCD_OK) LOGI(gw, "cluster: lease revoked; the leader key is free");
                return;
            }
    }
}

void cluster_stop(gateway *gw) {
    cluster *cl = gw->cl;
    if (!cl) return;
    if (cl->lease && (cl->role == CLUSTER_LEADER || cl->role == CLUSTER_LEADING)) give_lease_back(gw);
    etcd_destroy(cl->ec); /* a follower's lease expires at etcd after its TTL */
    free(cl->scratch);
    logval_free(cl->codec);
    free(cl);
    gw->cl = NULL;
}

/* ---- what others ask ------------------------------------------------------------------- */

void cluster_set_ext(gateway *gw, cluster_ext_fn fn) {
    if (gw->cl) gw->cl->ext = fn;
}

struct etcd_client *cluster_etcd(gateway *gw) { return gw->cl ? gw->cl->ec : NULL; }

int64_t cluster_lease(const gateway *gw) { return gw->cl ? gw->cl->lease : 0; }

cluster_role cluster_role_of(const gateway *gw) { return gw->cl ? gw->cl->role : CLUSTER_STANDALONE; }

bool cluster_leads(const gateway *gw) { return !gw->cl || gw->cl->role == CLUSTER_LEADER; }

bool cluster_failing(const gateway *gw) { return gw->cl && gw->cl->failing; }

bool cluster_write_refused(const gateway *gw, const char **code, char *why, size_t cap) {
    const cluster *cl = gw->cl;
    if (!cl) return false;
    if (cl->role == CLUSTER_LEADER && !cl->failing && cl->lease_sure) return false;
    *code = "ERR BUSY";
    if (cl->role == CLUSTER_LEADER && cl->failing) snprintf(why, cap, "%s", cl->fail_why);
    else if (cl->role == CLUSTER_LEADER)
        snprintf(why, cap, "leader's lease not renewed in time; not acknowledged, retry with the same request_id");
    else if (cl->role == CLUSTER_LEADING)
        snprintf(why, cap, "new leader catching up with the cluster log; retry with the same request_id");
    else if (!cl->leader[0])
        snprintf(why, cap, "no cluster leader known (election in progress); retry with the same request_id");
    else {
        *code = "READONLY";
        snprintf(why, cap, "%s %s", cl->leader, cl->leader_addr[0] ? cl->leader_addr : "-");
    }
    return true;
}

void cluster_view_get(const gateway *gw, cluster_view *v) {
    memset(v, 0, sizeof *v);
    const cluster *cl = gw->cl;
    v->role = cluster_role_of(gw);
    v->role_name = cluster_role_str(v->role);
    v->applied_lsn = commit_acked_lsn(&gw->commit);
    v->writable = true;
    if (!cl) return;
    const char *code;
    char why[8];
    v->writable = !cluster_write_refused(gw, &code, why, sizeof why);
    snprintf(v->name, sizeof v->name, "%s", gw->cfg.cluster_name);
    snprintf(v->leader, sizeof v->leader, "%s", cl->leader);
    snprintf(v->leader_addr, sizeof v->leader_addr, "%s", cl->leader_addr);
    v->epoch = cl->epoch ? cl->epoch : cl->leader_rev;
    v->committed_lsn = commit_cluster_lsn(&gw->commit);
    v->committed_rev = commit_cluster_rev(&gw->commit);
    v->batches = gw->commit.batches;
    v->batch_bytes = gw->commit.bytes;
    v->value_bytes = cl->value_bytes;
    v->commit_failures = cl->commit_failures;
    v->deposed = cl->deposed;
    v->campaigns = cl->campaigns;
    v->elected = cl->elected;
    etcd_stats st;
    etcd_stats_get(cl->ec, &st);
    v->etcd_requests = st.submitted;
    v->etcd_errors = st.failed;
    v->etcd_failovers = st.failovers;
    v->etcd_watch_reconnects = st.watch_reconnects;
    v->etcd_keepalive_errors = st.keepalive_errors;
}

void cluster_info(const gateway *gw, buf *b) {
    cluster_view v;
    cluster_view_get(gw, &v);
    buf_printf(b, "# Cluster\r\nrole:%s\r\nname:%s\r\nleader:%s\r\nleader_addr:%s\r\nepoch:%lld\r\n", v.role_name,
               v.name, v.leader, v.leader_addr, (long long)v.epoch);
    buf_printf(b, "applied_lsn:%llu\r\ncommitted_lsn:%llu\r\ncommitted_revision:%lld\r\nwritable:%d\r\n",
               (unsigned long long)v.applied_lsn, (unsigned long long)v.committed_lsn, (long long)v.committed_rev,
               v.writable);
    buf_printf(b, "log_batches:%llu\r\nlog_bytes:%llu\r\nlog_value_bytes:%llu\r\n", (unsigned long long)v.batches,
               (unsigned long long)v.batch_bytes, (unsigned long long)v.value_bytes);
    buf_printf(b, "commit_failures:%llu\r\ndeposed:%llu\r\nelected:%llu\r\n",
               (unsigned long long)v.commit_failures, (unsigned long long)v.deposed, (unsigned long long)v.elected);
    buf_printf(b, "etcd_requests:%llu\r\netcd_errors:%llu\r\netcd_failovers:%llu\r\n",
               (unsigned long long)v.etcd_requests, (unsigned long long)v.etcd_errors,
               (unsigned long long)v.etcd_failovers);
    if (gw->cl) gw->cl->up.info_lines(gw, b); /* the log reader runs only in cluster mode */
}

void cluster_metrics(const gateway *gw, prom_writer *w) {
    cluster_view v;
    cluster_view_get(gw, &v);
    prom_family(w, "stopgate_cluster_role", PROM_GAUGE, "This member's role: 1 on the series of its role.");
    static const char *roles[] = {"standalone", "follower", "leader"};
    for (int i = 0; i < 3; i++) prom_sample(w, "role", roles[i], !strcmp(v.role_name, roles[i]));
    prom_family(w, "stopgate_cluster_epoch", PROM_GAUGE, "The epoch of the leader this member knows (0: none).");
    prom_sample(w, NULL, NULL, v.epoch > 0 ? (uint64_t)v.epoch : 0);
    prom_family(w, "stopgate_cluster_applied_lsn", PROM_GAUGE, "The last journal lsn this member applied.");
    prom_sample(w, NULL, NULL, v.applied_lsn);
    prom_family(w, "stopgate_cluster_committed_lsn", PROM_GAUGE, "The last lsn known committed in the cluster log.");
    prom_sample(w, NULL, NULL, v.committed_lsn);
    prom_family(w, "stopgate_cluster_lag_lsn", PROM_GAUGE, "Records committed in the cluster log and not yet applied here.");
    prom_sample(w, NULL, NULL, v.committed_lsn > v.applied_lsn ? v.committed_lsn - v.applied_lsn : 0);
    prom_family(w, "stopgate_cluster_log_batches_total", PROM_COUNTER, "Journal batches committed to the cluster log.");
    prom_sample(w, NULL, NULL, v.batches);
    prom_family(w, "stopgate_cluster_log_bytes_total", PROM_COUNTER, "Bytes of journal frames committed to the cluster log.");
    prom_sample(w, NULL, NULL, v.batch_bytes);
    prom_family(w, "stopgate_cluster_log_value_bytes_total", PROM_COUNTER,
                "Bytes put into etcd as log values (frames packed with zstd when that is shorter).");
    prom_sample(w, NULL, NULL, v.value_bytes);
    prom_family(w, "stopgate_cluster_commit_failures_total", PROM_COUNTER,
                "Cluster log commits that failed (deadline, etcd unavailable, fence).");
    prom_sample(w, NULL, NULL, v.commit_failures);
    prom_family(w, "stopgate_cluster_etcd_errors_total", PROM_COUNTER, "Requests to etcd that ended in an error.");
    prom_sample(w, NULL, NULL, v.etcd_errors);
    prom_family(w, "stopgate_cluster_etcd_failovers_total", PROM_COUNTER, "Moves of the etcd client to another member.");
    prom_sample(w, NULL, NULL, v.etcd_failovers);
    prom_family(w, "stopgate_cluster_deposed_total", PROM_COUNTER, "Times this member lost the leadership.");
    prom_sample(w, NULL, NULL, v.deposed);
}
