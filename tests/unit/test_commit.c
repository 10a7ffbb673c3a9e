/* Unit tests of the commit layer (gateway/daemon/commit.h) on a real journal in a temporary
 * directory: a record is journaled and applied at once but acknowledged only when durable;
 * in cluster mode only when the disk AND the cluster log have it; one batch in flight to the
 * cluster log (the next waits, grouped); the batch handed over is the frames exactly as in
 * the segment (a rolled batch without the segment header between its frames); replay applies
 * without journaling; list records go to the list callback. */
#include "unit.h"

#include <errno.h>

#include "clock.h"
#include "commit.h"
#include "ring.h"

#define T0 1764000000000LL

typedef struct ct {
    journal j;
    orders o;
    durview dv;
    commit c;
    struct io_uring ring;
    uint8_t recbuf[JOURNAL_RECORD_BYTES_MAX];
    uint64_t acked;
    int acked_calls, list_applied, batches;
    commit_batch last;
    uint8_t last_bytes[64 * 1024];
    uint8_t scratch[2 * 128 * 1024];
} ct;

static ct *g;
static char g_dir[128];

static int apply_list(void *ctx, const order_rec *r, bool live, char *err, size_t errcap) {
    (void)r, (void)live, (void)err, (void)errcap;
    ((ct *)ctx)->list_applied++;
    return 0;
}

static void on_acked(void *ctx, uint64_t lsn) {
    ct *t = ctx;
    assert_true(lsn > t->acked);
    t->acked = lsn;
    t->acked_calls++;
}

static void on_batch(void *ctx, const commit_batch *b) {
    ct *t = ctx;
    t->batches++;
    t->last = *b;
    assert_true(b->len <= sizeof t->last_bytes);
    memcpy(t->last_bytes, b->bytes, b->len);
}

static void ct_open(bool clustered, uint64_t seg_bytes) {
    g = calloc(1, sizeof *g);
    assert_non_null(g);
    unit_mkdtemp(g_dir, sizeof g_dir, "commit");
    assert_int_equal(orders_init(&g->o, 1024, 5000), 0);
    assert_int_equal(durview_init(&g->dv, 1024, 64), 0);
    commit_ops ops = {.apply_list = apply_list, .acked = on_acked, .ctx = g};
    commit_init(&g->c, &g->j, &g->o, &g->dv, g->recbuf, &ops);
    journal_opts o = {.segment_bytes = seg_bytes};
    journal_recovery rec;
    char err[256];
    if (journal_open(&g->j, g_dir, &o, &rec, err, sizeof err) != 0) fail_msg("journal_open: %s", err);
    assert_int_equal(io_uring_queue_init(64, &g->ring, 0), 0);
    commit_attach(&g->c, &g->ring);
    if (clustered) commit_enable_cluster(&g->c, on_batch, sizeof g->scratch / 2, g->scratch);
}

static void ct_close(void) {
    journal_close(&g->j);
    io_uring_queue_exit(&g->ring);
    orders_free(&g->o);
    durview_free(&g->dv);
    unit_rmtree(g_dir);
    free(g);
    g = NULL;
}

/* The loop's share: flush, then reap the journal's completions until nothing is in flight. */
static void ct_flush(void) {
    commit_flush(&g->c, clock_mono_ns());
    while (g->j.inflight) {
        assert_true(io_uring_submit_and_wait(&g->ring, 1) >= 0);
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(&g->ring, &cqe) == 0) {
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            assert_int_equal(ud_kind(ud), UD_JOURNAL);
            journal_on_cqe(&g->j, ud_aux(ud), cqe->res, clock_mono_ns());
            io_uring_cqe_seen(&g->ring, cqe);
        }
    }
}

static rec_str rs(const char *s) { return (rec_str){s, (uint32_t)strlen(s)}; }

static int64_t put_order(const char *rid, const char *acct) {
    order_rec r = {.type = REC_ORDER, .kind = KIND_STOP, .state = ST_ACCEPTED, .order_no = orders_next_no(&g->o),
                   .amount_minor = 100, .ts_ms = T0, .expires_at_ms = T0 + 3600000, .request_id = rs(rid),
                   .bank = rs("DVB"), .account = rs(acct), .currency = rs("CNY"), .agent = rs("alice")};
    return commit_record(&g->c, &r);
}

static void test_single_node_acks_when_durable(void **state) {
    (void)state;
    ct_open(false, 64 << 20);
    int64_t lsn = put_order("r1", "ACC1");
    assert_true(lsn >= 1);
    assert_int_equal(g->o.n, 1); /* applied at once */
    assert_true(commit_acked_lsn(&g->c) < (uint64_t)lsn);
    order tmp;
    assert_null(durview_order(&g->dv, &g->o, 1, &tmp)); /* reads do not see it yet */
    ct_flush();
    assert_int_equal(commit_acked_lsn(&g->c), (uint64_t)lsn);
    assert_int_equal(g->acked, (uint64_t)lsn);
    assert_int_equal(g->acked_calls, 1);
    ct_close();
}

static void test_cluster_acks_when_both(void **state) {
    (void)state;
    ct_open(true, 64 << 20);
    int64_t l1 = put_order("r1", "ACC1");
    int64_t l2 = put_order("r2", "ACC2");
    ct_flush();
    assert_true(g->j.durable_lsn == (uint64_t)l2);    /* the disk has it */
    assert_int_equal(commit_acked_lsn(&g->c), 0);     /* the cluster log not yet */
    assert_int_equal(g->batches, 1);
    assert_int_equal(g->last.first_lsn, (uint64_t)l1);
    assert_int_equal(g->last.last_lsn, (uint64_t)l2);
    /* The bytes are one frame, header..trailer, as in the segment. */
    journal_frame f;
    memcpy(&f, g->last_bytes, sizeof f);
    assert_int_equal(f.magic, JOURNAL_FRAME_MAGIC);
    assert_int_equal(f.len, g->last.len);
    assert_int_equal(f.first_lsn, (uint64_t)l1);
    memcpy(&f, g->last_bytes + g->last.len - sizeof f, sizeof f);
    assert_int_equal(f.magic, JOURNAL_TRAILER_MAGIC);
    assert_int_equal(f.last_lsn, (uint64_t)l2);
    /* While that batch is in flight to the cluster, the next goes to the disk but waits for
     * it (one txn in flight, in lsn order), and the one after waits in the journal. */
    int64_t l3 = put_order("r3", "ACC3");
    ct_flush();
    assert_int_equal(g->batches, 1);
    assert_true(g->j.durable_lsn == (uint64_t)l3);
    assert_int_equal(commit_acked_lsn(&g->c), 0);
    int64_t l4 = put_order("r4", "ACC4");
    ct_flush();
    assert_true(g->j.durable_lsn == (uint64_t)l3); /* held: only one batch ahead of the log */
    commit_cluster_done(&g->c, true, 42);
    assert_int_equal(commit_acked_lsn(&g->c), (uint64_t)l2);
    assert_int_equal(g->c.cluster_rev, 42);
    assert_int_equal(g->batches, 2); /* the queued batch went at once */
    assert_int_equal(g->last.first_lsn, (uint64_t)l3);
    assert_int_equal(g->last.last_lsn, (uint64_t)l3);
    ct_flush(); /* now the fourth goes to the disk, queued behind the third */
    assert_true(g->j.durable_lsn == (uint64_t)l4);
    assert_int_equal(g->batches, 2);
    commit_cluster_done(&g->c, true, 43);
    assert_int_equal(commit_acked_lsn(&g->c), (uint64_t)l3);
    assert_int_equal(g->batches, 3);
    assert_int_equal(g->last.first_lsn, (uint64_t)l4);
    commit_cluster_done(&g->c, true, 44);
    assert_int_equal(commit_acked_lsn(&g->c), (uint64_t)l4);
    ct_close();
}

static void test_cluster_cluster_first_then_disk(void **state) {
    (void)state;
    ct_open(true, 64 << 20);
    int64_t l1 = put_order("r1", "ACC1");
    commit_flush(&g->c, clock_mono_ns()); /* write + txn submitted; nothing completed */
    assert_int_equal(g->batches, 1);
    commit_cluster_done(&g->c, true, 7); /* etcd answered before the fdatasync */
    assert_int_equal(commit_acked_lsn(&g->c), 0);
    ct_flush();
    assert_int_equal(commit_acked_lsn(&g->c), (uint64_t)l1);
    ct_close();
}

static void test_cluster_rolled_batch_has_frames_only(void **state) {
    (void)state;
    ct_open(true, 4096); /* tiny segments: a batch rolls */
    char rid[16], acct[16];
    int64_t first = 0, last = 0;
    for (int i = 0; i < 40; i++) {
        snprintf(rid, sizeof rid, "r%d", i);
        snprintf(acct, sizeof acct, "ACC%d", i);
        last = put_order(rid, acct);
        assert_true(last > 0);
        if (!first) first = last;
    }
    ct_flush();
    assert_int_equal(g->batches, 1);
    assert_int_equal(g->last.first_lsn, (uint64_t)first);
    assert_int_equal(g->last.last_lsn, (uint64_t)last);
    /* Frames follow each other with no segment header between; their lsns are contiguous. */
    size_t off = 0;
    uint64_t next = (uint64_t)first;
    int frames = 0;
    while (off < g->last.len) {
        journal_frame f;
        assert_true(journal_frame_read(g->last_bytes, g->last.len, off, JOURNAL_FRAME_MAGIC, &f));
        assert_int_equal(f.first_lsn, next);
        next = f.last_lsn + 1;
        off += f.len;
        frames++;
    }
    assert_int_equal(off, g->last.len);
    assert_int_equal(next, (uint64_t)last + 1);
    assert_true(frames >= 2);
    commit_cluster_done(&g->c, true, 9);
    assert_int_equal(commit_acked_lsn(&g->c), (uint64_t)last);
    ct_close();
}

static void test_deposed_batch_never_acked(void **state) {
    (void)state;
    ct_open(true, 64 << 20);
    put_order("r1", "ACC1");
    ct_flush();
    commit_cluster_done(&g->c, false, 0);
    assert_int_equal(commit_acked_lsn(&g->c), 0);
    assert_false(g->c.pending);
    ct_close();
}

static void test_replay_and_lists(void **state) {
    (void)state;
    ct_open(false, 64 << 20);
    order_rec r = {.type = REC_LIST_ADD, .list = rs("fraud"), .bank = rs("DVB"), .account = rs("ACC9"),
                   .agent = rs("ops"), .ts_ms = T0};
    assert_true(commit_record(&g->c, &r) > 0);
    assert_int_equal(g->list_applied, 1);
    /* Replay: decode + apply, nothing journaled. */
    uint8_t buf[JOURNAL_RECORD_BYTES_MAX];
    int n = record_encode(&r, buf, sizeof buf);
    assert_true(n > 0);
    uint64_t last = journal_last_lsn(&g->j);
    char err[128];
    assert_int_equal(commit_replay(&g->c, REC_LIST_ADD, 99, buf, (uint32_t)n, err, sizeof err), 0);
    assert_int_equal(g->list_applied, 2);
    assert_int_equal(journal_last_lsn(&g->j), last);
    assert_int_equal(commit_replay(&g->c, REC_ORDER, 100, buf, 3, err, sizeof err), 1); /* malformed */
    ct_close();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_node_acks_when_durable),
        cmocka_unit_test(test_cluster_acks_when_both),
        cmocka_unit_test(test_cluster_cluster_first_then_disk),
        cmocka_unit_test(test_cluster_rolled_batch_has_frames_only),
        cmocka_unit_test(test_deposed_batch_never_acked),
        cmocka_unit_test(test_replay_and_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
