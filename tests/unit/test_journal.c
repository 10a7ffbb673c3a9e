/* Unit tests of journal (gateway/core/journal.h) on real files in a temporary directory:
 * append through an io_uring with group commit, close, reopen and replay; torn tails cut;
 * damage followed by valid records refused (nothing acknowledged may be cut); segment roll;
 * write-error retry. The event loop is replaced by a small drain loop over the ring. */
#include "unit.h"

#include <errno.h>
#include <xxhash.h>

#include "clock.h"
#include "journal.h"
#include "ring.h"

/* --- harness ------------------------------------------------------------------------ */

typedef struct jt {
    journal j;
    struct io_uring ring;
    bool ring_up;
    uint64_t durable;
    int durable_calls;
    int fail_next_write; /* report the next completion (write, or fdatasync when the write's is
                            skipped) as this -errno (0 = none) */
    int cqes;            /* journal completions reaped */
} jt;

static jt g_t;
static char g_dir[128];

static void on_durable(void *ctx, uint64_t lsn) {
    jt *t = ctx;
    assert_true(lsn >= t->durable); /* durability only moves forward */
    t->durable = lsn;
    t->durable_calls++;
}

/* A replayed record, kept for comparison. */
typedef struct got {
    uint16_t type;
    uint64_t lsn;
    uint32_t len;
    uint8_t payload[2048];
} got;

typedef struct replay {
    got *v;
    size_t n, cap;
} replay;

static int collect(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *payload, uint32_t len) {
    replay *r = ctx;
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        assert_non_null(r->v);
    }
    assert_true(len <= sizeof r->v[0].payload);
    got *g = &r->v[r->n++];
    g->type = type;
    g->lsn = lsn;
    g->len = len;
    memcpy(g->payload, payload, len);
    return 0;
}

static void replay_free(replay *r) {
    free(r->v);
    memset(r, 0, sizeof *r);
}

/* Payload of lsn: its length varies (0 .. ~1000 bytes) and its bytes name the lsn. */
static uint32_t payload_for(uint64_t lsn, uint8_t *p, uint32_t salt) {
    uint32_t n = (uint32_t)((lsn * 37 + salt) % 1000);
    for (uint32_t i = 0; i < n; i++) p[i] = (uint8_t)(lsn * 13 + i + salt);
    return n;
}

static void expect_replay(const replay *r, uint64_t from_lsn, uint64_t to_lsn, uint32_t salt) {
    assert_int_equal(r->n, to_lsn - from_lsn + 1);
    for (uint64_t lsn = from_lsn; lsn <= to_lsn; lsn++) {
        const got *g = &r->v[lsn - from_lsn];
        uint8_t want[1024];
        uint32_t n = payload_for(lsn, want, salt);
        assert_int_equal(g->lsn, lsn);
        assert_int_equal(g->type, 1 + lsn % 6);
        assert_int_equal(g->len, n);
        assert_memory_equal(g->payload, want, n);
    }
}

static bool g_truncate_damaged; /* jt_open passes truncate_damaged_tail */
static bool g_prealloc;         /* jt_open passes preallocate */

static int jt_open(jt *t, uint64_t seg_bytes, replay *r, journal_recovery *rec, char *err,
                   size_t errcap) {
    t->durable = 0;
    t->durable_calls = 0;
    t->fail_next_write = 0;
    journal_opts o = {.segment_bytes = seg_bytes,
                      .replay = r ? collect : NULL,
                      .ctx = r,
                      .truncate_damaged_tail = g_truncate_damaged,
                      .preallocate = g_prealloc};
    int rc = journal_open(&t->j, g_dir, &o, rec, err, errcap);
    if (rc != 0) return rc;
    if (!t->ring_up) {
        assert_int_equal(io_uring_queue_init(64, &t->ring, 0), 0);
        t->ring_up = true;
    }
    journal_attach(&t->j, &t->ring, on_durable, t);
    t->durable = journal_last_lsn(&t->j);
    return 0;
}

static void jt_open_ok(jt *t, uint64_t seg_bytes, replay *r, journal_recovery *rec) {
    char err[1024] = "";
    if (jt_open(t, seg_bytes, r, rec, err, sizeof err) != 0) fail_msg("journal_open: %s", err);
}

/* Reap completions until nothing is in flight. */
static void jt_reap(jt *t) {
    while (t->j.inflight) {
        assert_true(io_uring_submit_and_wait(&t->ring, 1) >= 0);
        struct io_uring_cqe *cqe;
        while (t->j.inflight && io_uring_peek_cqe(&t->ring, &cqe) == 0) {
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            assert_int_equal(ud_kind(ud), UD_JOURNAL);
            int res = cqe->res;
            t->cqes++;
            if (t->fail_next_write) {
                res = t->fail_next_write;
                t->fail_next_write = 0;
            }
            io_uring_cqe_seen(&t->ring, cqe);
            journal_on_cqe(&t->j, ud_aux(ud), res, clock_mono_ns());
        }
    }
}

/* Flush and wait until everything appended is durable. */
static void jt_sync(jt *t) {
    for (int guard = 0; guard < 1000; guard++) {
        journal_flush(&t->j, clock_mono_ns());
        if (journal_idle(&t->j)) {
            assert_int_equal(t->durable, journal_last_lsn(&t->j));
            return;
        }
        assert_true(t->j.inflight); /* else a write failed and a retry is pending */
        jt_reap(t);
    }
    fail_msg("journal never became idle");
}

/* Append record lsn (its payload from payload_for); a full batch is flushed first. */
static int64_t jt_append(jt *t, uint32_t salt) {
    uint64_t lsn = journal_last_lsn(&t->j) + 1;
    uint8_t p[1024];
    uint32_t n = payload_for(lsn, p, salt);
    int64_t rc = journal_append(&t->j, (uint16_t)(1 + lsn % 6), p, n);
    if (rc == -EAGAIN) {
        jt_sync(t);
        rc = journal_append(&t->j, (uint16_t)(1 + lsn % 6), p, n);
    }
    assert_int_equal(rc, (int64_t)lsn);
    return rc;
}

static void jt_close(jt *t) {
    assert_false(t->j.inflight);
    journal_close(&t->j);
}

static void jt_teardown_ring(jt *t) {
    if (t->ring_up) io_uring_queue_exit(&t->ring);
    t->ring_up = false;
}

static void seg_path(char *out, size_t cap, uint64_t seq) {
    char name[64];
    journal_seg_name(name, sizeof name, seq);
    snprintf(out, cap, "%s/%s", g_dir, name);
}

/* Offsets of the records in a segment file (via the scanner), for cutting and flipping. */
typedef struct offs {
    const uint8_t *base;
    size_t off[4096];
    int n;
} offs;

static int offs_cb(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *payload, uint32_t len) {
    (void)lsn;
    (void)len;
    offs *o = ctx;
    if (type == JOURNAL_REC_CLOSE) return 0;
    o->off[o->n++] = (size_t)(payload - o->base) - sizeof(journal_rec_hdr);
    return 0;
}

static offs g_offs;

static void record_offsets(uint64_t seq, uint64_t first_lsn, uint64_t prev_sum) {
    char path[256];
    seg_path(path, sizeof path, seq);
    size_t size;
    uint8_t *d = unit_read_file(path, &size);
    memset(&g_offs, 0, sizeof g_offs);
    g_offs.base = d;
    journal_chain ch = {.next_lsn = first_lsn, .prev_sum = prev_sum};
    journal_scan_result r;
    assert_int_equal(journal_scan_segment(d, size, &ch, offs_cb, &g_offs, &r), 0);
    assert_true(r.clean);
    g_offs.base = NULL;
    free(d);
}

static void flip_byte(const char *path, off_t at) {
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t c;
    assert_int_equal(pread(fd, &c, 1, at), 1);
    c ^= 0x40;
    assert_int_equal(pwrite(fd, &c, 1, at), 1);
    close(fd);
}

static int setup(void **state) {
    (void)state;
    unit_mkdtemp(g_dir, sizeof g_dir, "journal");
    memset(&g_t, 0, sizeof g_t);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (g_t.j.dirfd > 0 || g_t.j.seg_fd > 0) journal_close(&g_t.j);
    jt_teardown_ring(&g_t);
    unit_rmtree(g_dir);
    g_prealloc = false;
    return 0;
}

#define SEG_BIG (64ULL * 1024 * 1024)

/* --- tests ---------------------------------------------------------------------------- */

static void test_open_empty(void **state) {
    (void)state;
    /* journal_dir need not exist, nor its parents */
    char nested[256];
    snprintf(nested, sizeof nested, "%s/a/b/journal", g_dir);
    char err[512] = "";
    journal_recovery rec;
    assert_int_equal(journal_open(&g_t.j, nested, &(journal_opts){.segment_bytes = SEG_BIG}, &rec,
                                  err, sizeof err),
                     0);
    assert_int_equal(rec.records, 0);
    assert_false(rec.tail_cut);
    assert_int_equal(journal_last_lsn(&g_t.j), 0);
    assert_true(journal_idle(&g_t.j));
    journal_close(&g_t.j);
    char path[512];
    snprintf(path, sizeof path, "%s/0000000000000001.sgj", nested);
    size_t size;
    uint8_t *d = unit_read_file(path, &size);
    assert_int_equal(size, sizeof(journal_seg_hdr)); /* a valid header, durable at once */
    journal_chain ch = {.next_lsn = 1};
    journal_scan_result r;
    assert_int_equal(journal_scan_segment(d, size, &ch, NULL, NULL, &r), 0);
    assert_true(r.clean);
    free(d);
    /* reopening an empty journal is fine and keeps the one segment */
    assert_int_equal(journal_open(&g_t.j, nested, &(journal_opts){.segment_bytes = SEG_BIG}, &rec,
                                  err, sizeof err),
                     0);
    assert_int_equal(rec.segments, 1);
    assert_int_equal(journal_last_lsn(&g_t.j), 0);
    journal_close(&g_t.j);
    uint64_t *seqs;
    assert_int_equal(journal_list_segments(nested, &seqs), 1);
    free(seqs);
}

static void test_open_bad_dir(void **state) {
    (void)state;
    char path[256], err[512] = "";
    snprintf(path, sizeof path, "%s/file", g_dir);
    unit_write_file(path, "not a directory");
    journal_recovery rec;
    assert_int_equal(journal_open(&g_t.j, path, &(journal_opts){.segment_bytes = SEG_BIG}, &rec,
                                  err, sizeof err),
                     -1);
    assert_true(err[0] != 0);
    journal_close(&g_t.j);
}

static void test_append_reopen(void **state) {
    (void)state;
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_BIG, NULL, &rec);
    for (int i = 0; i < 100; i++) jt_append(&g_t, 0);
    assert_int_equal(g_t.durable, 0); /* appended is not durable until flushed */
    jt_sync(&g_t);
    assert_int_equal(g_t.durable, 100);
    assert_int_equal(g_t.j.stats.records, 100);
    jt_close(&g_t);

    replay r = {0};
    jt_open_ok(&g_t, SEG_BIG, &r, &rec);
    assert_int_equal(rec.records, 100);
    assert_false(rec.tail_cut);
    assert_int_equal(rec.segments, 1);
    expect_replay(&r, 1, 100, 0);
    replay_free(&r);
    /* appending after a reopen continues the lsn sequence and the hash chain */
    assert_int_equal(journal_last_lsn(&g_t.j), 100);
    for (int i = 0; i < 10; i++) jt_append(&g_t, 0);
    jt_sync(&g_t);
    jt_close(&g_t);

    jt_open_ok(&g_t, SEG_BIG, &r, &rec);
    assert_int_equal(rec.records, 110);
    assert_false(rec.tail_cut);
    expect_replay(&r, 1, 110, 0);
    replay_free(&r);
    jt_close(&g_t);
}

/* Group commit: everything appended before a flush goes out in one write + one fdatasync. */
static void test_group_commit(void **state) {
    (void)state;
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_BIG, NULL, &rec);
    for (int i = 0; i < 50; i++) jt_append(&g_t, 0);
    jt_sync(&g_t);
    assert_int_equal(g_t.j.stats.fsyncs, 1);
    assert_int_equal(g_t.j.stats.last_batch_records, 50);
    assert_int_equal(g_t.durable_calls, 1);
    assert_int_equal(g_t.durable, 50);

    /* Records appended while a batch is in flight ride the next one. */
    for (int i = 0; i < 5; i++) jt_append(&g_t, 0);
    journal_flush(&g_t.j, clock_mono_ns());
    assert_true(g_t.j.inflight);
    for (int i = 0; i < 7; i++) jt_append(&g_t, 0);
    journal_flush(&g_t.j, clock_mono_ns()); /* nothing: one batch in flight at a time */
    assert_true(g_t.j.batch[g_t.j.open_idx].len > 0);
    jt_reap(&g_t);
    assert_int_equal(g_t.durable, 55);
    assert_false(journal_idle(&g_t.j));
    jt_sync(&g_t);
    assert_int_equal(g_t.durable, 62);
    assert_int_equal(g_t.j.stats.last_batch_records, 7);
    assert_int_equal(g_t.j.stats.fsyncs, 3);
    jt_close(&g_t);

    replay r = {0};
    jt_open_ok(&g_t, SEG_BIG, &r, &rec);
    expect_replay(&r, 1, 62, 0);
    replay_free(&r);
    jt_close(&g_t);
}

/* n records, each in a batch (a frame) of its own, so the last batch is the last record;
 * closed without a close record, as a crash after the last fdatasync leaves it. */
static void write_n_and_close(uint64_t seg_bytes, int n) {
    journal_recovery rec;
    jt_open_ok(&g_t, seg_bytes, NULL, &rec);
    for (int i = 0; i < n; i++) {
        jt_append(&g_t, 0);
        jt_sync(&g_t);
    }
    jt_close(&g_t);
}

/* Where the frame holding only the record at rec_off starts. */
#define FRAME_OF(rec_off) ((rec_off) - sizeof(journal_frame))

static void test_torn_tail_cut(void **state) {
    (void)state;
    write_n_and_close(SEG_BIG, 10);
    char path[256];
    seg_path(path, sizeof path, 1);
    record_offsets(1, 1, 0);
    assert_int_equal(g_offs.n, 10);
    off_t size = unit_file_size(path);
    size_t last = g_offs.off[9];
    /* the write of record 10 was cut short by the crash */
    assert_int_equal(truncate(path, size - 5), 0);

    replay r = {0};
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_BIG, &r, &rec);
    assert_true(rec.tail_cut);
    assert_false(rec.damage.found);
    assert_int_equal(rec.cut_seq, 1);
    assert_int_equal(rec.cut_offset, FRAME_OF(last));
    assert_int_equal(rec.cut_bytes, (uint64_t)(size - 5) - FRAME_OF(last));
    assert_true(rec.cut_why[0] != 0);
    assert_int_equal(rec.records, 9);
    expect_replay(&r, 1, 9, 0);
    replay_free(&r);
    assert_int_equal(journal_last_lsn(&g_t.j), 9);
    assert_int_equal(unit_file_size(path), (off_t)FRAME_OF(last)); /* cut on disk */

    /* the next record takes lsn 10 and continues the chain */
    jt_append(&g_t, 0);
    jt_sync(&g_t);
    jt_close(&g_t);
    jt_open_ok(&g_t, SEG_BIG, &r, &rec);
    assert_false(rec.tail_cut);
    expect_replay(&r, 1, 10, 0);
    replay_free(&r);
    jt_close(&g_t);
}

static void test_torn_tail_header_only(void **state) {
    (void)state;
    write_n_and_close(SEG_BIG, 5);
    char path[256];
    seg_path(path, sizeof path, 1);
    record_offsets(1, 1, 0);
    size_t last = g_offs.off[4];
    /* only 20 bytes of the last record's 40-byte header reached the disk */
    assert_int_equal(truncate(path, (off_t)last + 20), 0);
    replay r = {0};
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_BIG, &r, &rec);
    assert_true(rec.tail_cut);
    assert_int_equal(rec.cut_offset, FRAME_OF(last));
    expect_replay(&r, 1, 4, 0);
    replay_free(&r);
    jt_close(&g_t);
}

/* A record half written into space that reads as zeros (preallocated file). */
static void test_torn_tail_zeros(void **state) {
    (void)state;
    write_n_and_close(SEG_BIG, 8);
    char path[256];
    seg_path(path, sizeof path, 1);
    record_offsets(1, 1, 0);
    size_t last = g_offs.off[7];
    off_t size = unit_file_size(path);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    static uint8_t zeros[8192];
    off_t half = (off_t)last + (size - (off_t)last) / 2;
    assert_int_equal(pwrite(fd, zeros, sizeof zeros, half), (ssize_t)sizeof zeros);
    close(fd);
    replay r = {0};
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_BIG, &r, &rec);
    assert_true(rec.tail_cut);
    assert_int_equal(rec.cut_offset, FRAME_OF(last));
    expect_replay(&r, 1, 7, 0);
    replay_free(&r);
    assert_int_equal(unit_file_size(path), (off_t)FRAME_OF(last));
    jt_close(&g_t);
}

static void expect_refused(const char *what_in_err) {
    replay r = {0};
    journal_recovery rec;
    char err[1024] = "";
    int rc = jt_open(&g_t, SEG_BIG, &r, &rec, err, sizeof err);
    replay_free(&r);
    journal_close(&g_t.j);
    if (rc == 0) fail_msg("journal_open accepted a damaged journal (%s)", what_in_err);
    if (!strstr(err, what_in_err)) fail_msg("error '%s' does not mention '%s'", err, what_in_err);
}

static void test_corrupt_middle_refused(void **state) {
    (void)state;
    write_n_and_close(SEG_BIG, 10);
    char path[256];
    seg_path(path, sizeof path, 1);
    record_offsets(1, 1, 0);
    size_t size0;
    uint8_t *before = unit_read_file(path, &size0);
    /* a bit flipped in the payload of record 4 of 10 */
    flip_byte(path, (off_t)g_offs.off[3] + 40 + 1);
    size_t size1;
    uint8_t *damaged = unit_read_file(path, &size1);
    expect_refused("0000000000000001.sgj");
    expect_refused("offset");
    /* refusing must not cut: every byte is still there for `stopctl journal verify` */
    size_t size2;
    uint8_t *after = unit_read_file(path, &size2);
    assert_int_equal(size2, size0);
    assert_memory_equal(after, damaged, size2);
    assert_memory_not_equal(after, before, size2);
    free(before);
    free(damaged);
    free(after);
}

static void test_corrupt_record_header_refused(void **state) {
    (void)state;
    write_n_and_close(SEG_BIG, 10);
    char path[256];
    seg_path(path, sizeof path, 1);
    record_offsets(1, 1, 0);
    flip_byte(path, (off_t)g_offs.off[1] + 12); /* record 2's len field */
    off_t size = unit_file_size(path);
    expect_refused("offset");
    assert_int_equal(unit_file_size(path), size);
}

/* A flipped bit in the segment header of a segment full of acknowledged records is damage
 * followed by valid records: recovery must refuse, not delete the segment as "torn". */
static void test_corrupt_segment_header_refused(void **state) {
    (void)state;
    write_n_and_close(SEG_BIG, 10);
    char path[256];
    seg_path(path, sizeof path, 1);
    flip_byte(path, 48); /* created_ms */
    off_t size = unit_file_size(path);
    replay r = {0};
    journal_recovery rec;
    char err[1024] = "";
    int rc = jt_open(&g_t, SEG_BIG, &r, &rec, err, sizeof err);
    replay_free(&r);
    journal_close(&g_t.j);
    if (rc != JOURNAL_ERR_DAMAGED)
        fail_msg("a damaged segment header in front of 10 acknowledged records was accepted "
                 "(tail_cut=%d, records=%llu)",
                 rec.tail_cut, (unsigned long long)rec.records);
    assert_int_equal(unit_file_size(path), size);
}

/* Writes go to segments of at most segment_bytes; replay follows the chain across them. */
static void test_segment_roll(void **state) {
    (void)state;
    const uint64_t segb = 8192;
    journal_recovery rec;
    jt_open_ok(&g_t, segb, NULL, &rec);
    /* flushed in small batches, so rolls happen between and inside batches */
    for (int i = 0; i < 300; i++) {
        jt_append(&g_t, 0);
        if (i % 7 == 6) jt_sync(&g_t);
    }
    jt_sync(&g_t);
    assert_true(g_t.j.stats.segments_created > 10);
    jt_close(&g_t);

    uint64_t *seqs = NULL;
    int n = journal_list_segments(g_dir, &seqs);
    assert_true(n > 10);
    journal_chain ch = {.next_lsn = 1};
    for (int i = 0; i < n; i++) {
        assert_int_equal(seqs[i], (uint64_t)i + 1);
        char path[256];
        seg_path(path, sizeof path, seqs[i]);
        size_t size;
        uint8_t *d = unit_read_file(path, &size);
        assert_true(size <= segb);
        journal_seg_hdr h;
        memcpy(&h, d, sizeof h);
        assert_int_equal(h.seq, seqs[i]);
        assert_int_equal(h.first_lsn, ch.next_lsn);
        uint64_t before = ch.records;
        journal_scan_result r;
        assert_int_equal(journal_scan_segment(d, size, &ch, NULL, NULL, &r), 0);
        assert_true(r.clean);
        assert_true(ch.records > before); /* no empty segments in the middle */
        free(d);
    }
    assert_int_equal(ch.records, 300);
    free(seqs);

    replay r = {0};
    jt_open_ok(&g_t, segb, &r, &rec);
    assert_int_equal(rec.segments, (uint64_t)n);
    assert_false(rec.tail_cut);
    expect_replay(&r, 1, 300, 0);
    replay_free(&r);
    for (int i = 0; i < 20; i++) jt_append(&g_t, 0);
    jt_sync(&g_t);
    jt_close(&g_t);
    jt_open_ok(&g_t, segb, &r, &rec);
    expect_replay(&r, 1, 320, 0);
    replay_free(&r);
    jt_close(&g_t);
}

/* One batch spanning many rolls: the extents limit turns into -EAGAIN, never a crash. */
static void test_roll_many_in_one_batch(void **state) {
    (void)state;
    const uint64_t segb = 2048;
    journal_recovery rec;
    jt_open_ok(&g_t, segb, NULL, &rec);
    int eagain = 0;
    uint8_t p[1024];
    for (int i = 0; i < 200; i++) {
        uint64_t lsn = journal_last_lsn(&g_t.j) + 1;
        uint32_t n = payload_for(lsn, p, 0);
        int64_t rc = journal_append(&g_t.j, (uint16_t)(1 + lsn % 6), p, n);
        if (rc == -EAGAIN) {
            eagain++;
            assert_int_equal(journal_last_lsn(&g_t.j), lsn - 1); /* nothing half-appended */
            jt_sync(&g_t);
            rc = journal_append(&g_t.j, (uint16_t)(1 + lsn % 6), p, n);
        }
        assert_int_equal(rc, (int64_t)lsn);
    }
    assert_true(eagain > 0);
    jt_sync(&g_t);
    jt_close(&g_t);
    replay r = {0};
    jt_open_ok(&g_t, segb, &r, &rec);
    assert_false(rec.tail_cut);
    expect_replay(&r, 1, 200, 0);
    replay_free(&r);
    jt_close(&g_t);
}

static void test_missing_segment_refused(void **state) {
    (void)state;
    write_n_and_close(4096, 60);
    uint64_t *seqs = NULL;
    int n = journal_list_segments(g_dir, &seqs);
    free(seqs);
    assert_true(n >= 3);
    char path[256];
    seg_path(path, sizeof path, 2);
    assert_int_equal(unlink(path), 0);
    expect_refused("missing");
}

/* A crash right after a segment was created: its header is missing or torn. Nothing in it
 * was acknowledged; the segment is replaced and every earlier record kept. */
static void test_torn_new_segment(void **state) {
    (void)state;
    for (int variant = 0; variant < 2; variant++) {
        if (variant) {
            unit_rmtree(g_dir);
            unit_mkdtemp(g_dir, sizeof g_dir, "journal");
        }
        write_n_and_close(4096, 30);
        uint64_t *seqs = NULL;
        int n = journal_list_segments(g_dir, &seqs);
        assert_true(n >= 2);
        uint64_t next = seqs[n - 1] + 1;
        free(seqs);
        char path[256];
        seg_path(path, sizeof path, next);
        if (variant == 0) {
            unit_write_file(path, ""); /* created, nothing written */
        } else {
            journal_seg_hdr h;
            journal_seg_hdr_make(&h, next, 31, 0, 0);
            int fd = open(path, O_WRONLY | O_CREAT, 0640);
            assert_true(fd >= 0);
            assert_int_equal(write(fd, &h, 30), 30); /* header torn */
            close(fd);
        }
        replay r = {0};
        journal_recovery rec;
        jt_open_ok(&g_t, 4096, &r, &rec);
        assert_true(rec.tail_cut);
        assert_int_equal(rec.cut_seq, next);
        expect_replay(&r, 1, 30, 0);
        replay_free(&r);
        for (int i = 0; i < 3; i++) jt_append(&g_t, 0);
        jt_sync(&g_t);
        jt_close(&g_t);
        jt_open_ok(&g_t, 4096, &r, &rec);
        assert_false(rec.tail_cut);
        expect_replay(&r, 1, 33, 0);
        replay_free(&r);
        jt_close(&g_t);
    }
}

/* Power lost while the batch that rolled over was being written: the roll had already
 * created the next segment (empty), and the first write of the batch - the tail of the old
 * segment - is torn. None of that batch was acknowledged, so it is a torn tail spread over
 * two files; recovery must cut it and keep every acknowledged record. */
static void test_crash_during_roll_batch(void **state) {
    (void)state;
    const uint64_t segb = 4096;
    journal_recovery rec;
    jt_open_ok(&g_t, segb, NULL, &rec);
    for (int i = 0; i < 3; i++) jt_append(&g_t, 0);
    jt_sync(&g_t);
    uint64_t acked = journal_last_lsn(&g_t.j);
    uint64_t seq0 = g_t.j.seg_seq;
    /* fill the open batch until it has rolled into the next segment */
    while (g_t.j.seg_seq == seq0) {
        uint64_t lsn = journal_last_lsn(&g_t.j) + 1;
        uint8_t p[1024];
        uint32_t n = payload_for(lsn, p, 0);
        assert_int_equal(journal_append(&g_t.j, (uint16_t)(1 + lsn % 6), p, n), (int64_t)lsn);
    }
    journal_batch *b = &g_t.j.batch[g_t.j.open_idx];
    assert_true(b->n_ext >= 2);
    assert_true(b->ext[0].len > 16);
    /* the first write of the batch got 24 bytes into the old segment (part of the first
     * record's header) before the power went */
    const journal_ext *e = &b->ext[0];
    char path[256];
    seg_path(path, sizeof path, seq0);
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, b->data + e->buf_off, 24, (off_t)e->file_off), 24);
    close(fd);
    char next[256];
    seg_path(next, sizeof next, seq0 + 1);
    assert_int_equal(unit_file_size(next), 0); /* created by the roll, never written */
    jt_close(&g_t);                            /* the crash: the batch is never submitted */

    replay r = {0};
    char err[1024] = "";
    int rc = jt_open(&g_t, segb, &r, &rec, err, sizeof err);
    if (rc != 0) {
        replay_free(&r);
        journal_close(&g_t.j);
        fail_msg("recovery refused a journal whose only damage is an unacknowledged torn batch: %s",
                 err);
    }
    assert_true(rec.tail_cut);
    expect_replay(&r, 1, acked, 0);
    replay_free(&r);
    jt_close(&g_t);
}

/* A failed write or fdatasync acknowledges nothing; the same batch is rewritten after a
 * pause and then everything in it is durable exactly once. */
static void test_write_error_retry(void **state) {
    (void)state;
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_BIG, NULL, &rec);
    for (int i = 0; i < 5; i++) jt_append(&g_t, 0);
    jt_sync(&g_t);
    for (int i = 0; i < 5; i++) jt_append(&g_t, 0);
    g_t.fail_next_write = -ENOSPC;
    int64_t now = clock_mono_ns();
    journal_flush(&g_t.j, now);
    jt_reap(&g_t);
    assert_int_equal(g_t.durable, 5); /* nothing of the failed batch */
    assert_int_equal(g_t.j.last_error, ENOSPC);
    assert_int_equal(g_t.j.stats.write_errors, 1);
    assert_false(journal_idle(&g_t.j));
    assert_true(g_t.j.retry_at_ns > now);
    /* appends go on into the open batch meanwhile */
    jt_append(&g_t, 0);
    journal_flush(&g_t.j, now); /* too early: no retry yet */
    assert_false(g_t.j.inflight);
    journal_flush(&g_t.j, g_t.j.retry_at_ns);
    assert_true(g_t.j.inflight);
    jt_reap(&g_t);
    assert_int_equal(g_t.durable, 10);
    assert_int_equal(g_t.j.last_error, 0);
    jt_sync(&g_t);
    assert_int_equal(g_t.durable, 11);
    jt_close(&g_t);
    replay r = {0};
    jt_open_ok(&g_t, SEG_BIG, &r, &rec);
    assert_false(rec.tail_cut);
    expect_replay(&r, 1, 11, 0);
    replay_free(&r);
    jt_close(&g_t);
}

static int refuse_at_3(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *payload,
                       uint32_t len) {
    (void)ctx;
    (void)type;
    (void)payload;
    (void)len;
    return lsn == 3 ? 5 : 0;
}

/* A record the replay callback refuses stops the open with an error. */
static void test_replay_callback_refuses(void **state) {
    (void)state;
    write_n_and_close(SEG_BIG, 5);
    char err[512] = "";
    journal_recovery rec;
    assert_int_equal(journal_open(&g_t.j, g_dir,
                                  &(journal_opts){.segment_bytes = SEG_BIG, .replay = refuse_at_3},
                                  &rec, err, sizeof err),
                     -1);
    assert_true(err[0] != 0);
    journal_close(&g_t.j);
}

/* --- damage to the last batch vs a torn last write (issue 15 item 8) -------------------- */

#define DMG_RECORDS    10
#define DMG_LAST_FIRST 8 /* the last batch holds lsn 8..10 */
#define DMG_SALT                                                                                   \
    704 /* payloads of lsn 8, 9, 10: 0, 37, 74 bytes - a short last batch keeps                    \
         * one journal_open per byte (~10 ms each) within the time budget */

/* Four batches (lsn 1-3, 4-5, 6-7, 8-10), all durable; with seal, a clean shutdown's close
 * record follows (lsn 11). Returns the segment image; *last_frame: where the last data
 * batch's frame starts. */
static uint8_t *write_batches(bool seal, size_t *size, size_t *last_frame) {
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_BIG, NULL, &rec);
    for (int i = 1; i <= DMG_RECORDS; i++) {
        jt_append(&g_t, DMG_SALT);
        if (i == 3 || i == 5 || i == 7 || i == DMG_RECORDS) jt_sync(&g_t);
    }
    if (seal) assert_int_equal(journal_seal(&g_t.j, 1700000000000), 0);
    jt_close(&g_t);
    record_offsets(1, 1, 0);
    assert_int_equal(g_offs.n, DMG_RECORDS);
    *last_frame = FRAME_OF(g_offs.off[DMG_LAST_FIRST - 1]);
    char path[256];
    seg_path(path, sizeof path, 1);
    return unit_read_file(path, size);
}

static void put_image(const uint8_t *img, size_t size) {
    char path[256];
    seg_path(path, sizeof path, 1);
    int fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, img, size), (ssize_t)size);
    close(fd);
}

/* The scanner's verdict on an image, as recovery uses it: every record read (clean), damage
 * (refuse), or torn (cut). A torn verdict on a written-whole batch would lose records. */
static void scan_expect_not_torn(const uint8_t *img, size_t size, size_t pos, int bit) {
    journal_chain ch = {.next_lsn = 1};
    journal_scan_result r;
    assert_int_equal(journal_scan_segment(img, size, &ch, NULL, NULL, &r), 0);
    if (r.clean) {
        if (ch.records != DMG_RECORDS)
            fail_msg("bit %d of byte %zu: scan clean but %llu records", bit, pos,
                     (unsigned long long)ch.records);
        return;
    }
    if (!r.damaged)
        fail_msg("bit %d of byte %zu flipped: judged a torn tail (%s) - a written-whole batch "
                 "would be cut",
                 bit, pos, r.why);
    assert_true(r.bad_first_lsn >= DMG_LAST_FIRST);
}

/* Every bit of the last batch (and of the close record after it, when sealed), through the
 * scanner: never a torn verdict. */
static void flip_every_bit(bool seal) {
    size_t size, last;
    uint8_t *img = write_batches(seal, &size, &last);
    for (size_t pos = last; pos < size; pos++)
        for (int bit = 0; bit < 8; bit++) {
            img[pos] ^= (uint8_t)(1u << bit);
            scan_expect_not_torn(img, size, pos, bit);
            img[pos] ^= (uint8_t)(1u << bit);
        }
    free(img);
}

static void test_flip_every_bit_last_batch(void **state) {
    (void)state;
    flip_every_bit(false);
}

static void test_flip_every_bit_after_close(void **state) {
    (void)state;
    flip_every_bit(true);
}

/* The same through journal_open on real files, one flip per byte (bit pos % 8; every bit
 * through journal_open costs 8x the time for what the scanner test already covers): it
 * refuses with JOURNAL_ERR_DAMAGED and the lsn range and leaves the file alone, or replays
 * every record - never drops one silently. */
static void open_flip_every_byte(bool seal) {
    size_t size, last;
    uint8_t *img = write_batches(seal, &size, &last);
    char path[256];
    seg_path(path, sizeof path, 1);
    int refused = 0;
    for (size_t pos = last; pos < size; pos++) {
        img[pos] ^= (uint8_t)(1u << (pos % 8));
        put_image(img, size);
        replay r = {0};
        journal_recovery rec;
        char err[1024] = "";
        int rc = jt_open(&g_t, SEG_BIG, &r, &rec, err, sizeof err);
        if (rc == 0) {
            if (r.n != DMG_RECORDS)
                fail_msg("byte %zu flipped: %zu of %d records replayed", pos, r.n, DMG_RECORDS);
            jt_close(&g_t);
        } else {
            if (rc != JOURNAL_ERR_DAMAGED || !strstr(err, "damaged"))
                fail_msg("byte %zu flipped: rc %d, '%s'", pos, rc, err);
            assert_true(rec.damage.found);
            assert_true(rec.damage.tail);
            assert_int_equal(rec.damage.seq, 1);
            assert_true(rec.damage.first_lsn >= DMG_LAST_FIRST);
            if (pos < last + 2 * sizeof(journal_frame))
                assert_int_equal(rec.damage.first_lsn, DMG_LAST_FIRST);
            journal_close(&g_t.j);
            size_t now;
            uint8_t *d = unit_read_file(path, &now);
            assert_int_equal(now, size); /* refusing cuts nothing */
            assert_memory_equal(d, img, size);
            free(d);
            refused++;
        }
        replay_free(&r);
        img[pos] ^= (uint8_t)(1u << (pos % 8));
    }
    assert_true(refused > 0);
    free(img);
}

static void test_open_flip_every_byte_last_batch(void **state) {
    (void)state;
    open_flip_every_byte(false);
}

static void test_open_flip_every_byte_after_close(void **state) {
    (void)state;
    open_flip_every_byte(true);
}

/* A torn last write - the last batch cut at every offset - is cut, and every record of the
 * earlier batches is replayed; after a close record, a cut inside the close batch loses
 * nothing. */
static void truncate_every_offset(bool seal) {
    size_t size, last;
    uint8_t *img = write_batches(seal, &size, &last);
    size_t close_frame = last;
    if (seal) {
        journal_frame f;
        memcpy(&f, img + last, sizeof f);
        close_frame = last + f.len;
    }
    for (size_t cut = last + 1; cut < size; cut++) {
        put_image(img, cut);
        replay r = {0};
        journal_recovery rec;
        char err[1024] = "";
        if (jt_open(&g_t, SEG_BIG, &r, &rec, err, sizeof err) != 0)
            fail_msg("cut at %zu: %s", cut, err);
        bool in_close = seal && cut >= close_frame;
        size_t want = in_close ? DMG_RECORDS : DMG_LAST_FIRST - 1;
        if (r.n != want) fail_msg("cut at %zu: %zu records, want %zu", cut, r.n, want);
        if (cut != close_frame) assert_true(rec.tail_cut);
        assert_false(rec.damage.found);
        assert_int_equal(journal_last_lsn(&g_t.j), want);
        jt_close(&g_t);
        replay_free(&r);
    }
    free(img);
}

static void test_truncate_every_offset_last_batch(void **state) {
    (void)state;
    truncate_every_offset(false);
}

static void test_truncate_every_offset_close(void **state) {
    (void)state;
    truncate_every_offset(true);
}

/* The operator's way out: --truncate-damaged-tail cuts the damaged batch (and the close
 * record after it) and says what went; the journal continues after it. */
static void test_truncate_damaged_tail(void **state) {
    (void)state;
    size_t size, last;
    uint8_t *img = write_batches(true, &size, &last);
    img[last + sizeof(journal_frame) + 45] ^= 0x04; /* lsn 9's checksum (lsn 8 is 40 bytes) */
    put_image(img, size);
    replay r = {0};
    journal_recovery rec;
    g_truncate_damaged = true;
    jt_open_ok(&g_t, SEG_BIG, &r, &rec);
    g_truncate_damaged = false;
    assert_true(rec.damage.found && rec.damage.tail && rec.damage.cut);
    assert_int_equal(rec.damage.first_lsn, DMG_LAST_FIRST);
    assert_int_equal(rec.damage.last_lsn, DMG_RECORDS);
    assert_int_equal(rec.damage.offset, last);
    assert_int_equal(rec.damage.readable, 2); /* lsn 8 and 10 still check out */
    assert_false(rec.clean_shutdown);
    expect_replay(&r, 1, DMG_LAST_FIRST - 1, DMG_SALT);
    replay_free(&r);
    jt_append(&g_t, DMG_SALT);
    jt_sync(&g_t);
    assert_int_equal(journal_seal(&g_t.j, 1), 0);
    jt_close(&g_t);
    jt_open_ok(&g_t, SEG_BIG, &r, &rec);
    assert_true(rec.clean_shutdown);
    assert_false(rec.damage.found);
    expect_replay(&r, 1, DMG_LAST_FIRST, DMG_SALT);
    replay_free(&r);
    jt_close(&g_t);
    free(img);
}

/* Damage followed by valid batches is not a tail: the flag does not cut it. */
static void test_truncate_flag_keeps_mid_damage(void **state) {
    (void)state;
    size_t size, last;
    uint8_t *img = write_batches(false, &size, &last);
    record_offsets(1, 1, 0);
    img[g_offs.off[4] + 41] ^= 0x01; /* lsn 5, in the second of four batches */
    put_image(img, size);
    g_truncate_damaged = true;
    replay r = {0};
    journal_recovery rec;
    char err[1024] = "";
    int rc = jt_open(&g_t, SEG_BIG, &r, &rec, err, sizeof err);
    g_truncate_damaged = false;
    replay_free(&r);
    journal_close(&g_t.j);
    assert_int_equal(rc, JOURNAL_ERR_DAMAGED);
    assert_true(rec.damage.found);
    assert_false(rec.damage.tail);
    assert_false(rec.damage.cut);
    assert_int_equal(rec.damage.first_lsn, 4);
    free(img);
}

/* A version 1 journal (records without frames, written by gateways before the frames) is
 * read as it is; new records go to a new version 2 segment, and both replay. */
static void test_reads_version1_journal(void **state) {
    (void)state;
    char path[256];
    seg_path(path, sizeof path, 1);
    static uint8_t img[64 * 1024];
    journal_seg_hdr h;
    journal_seg_hdr_make(&h, 1, 1, 0, 1700000000000);
    h.version = JOURNAL_SEG_VERSION_V1;
    h.sum = XXH3_64bits((const uint8_t *)&h + 8, sizeof h - 8);
    memcpy(img, &h, sizeof h);
    size_t size = sizeof h;
    uint64_t sum = 0;
    for (uint64_t lsn = 1; lsn <= 5; lsn++) {
        uint8_t p[1024];
        uint32_t n = payload_for(lsn, p, 0);
        journal_rec_encode(img + size, (uint16_t)(1 + lsn % 6), lsn, sum, p, n);
        memcpy(&sum, img + size, 8);
        size += journal_rec_len(n);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, img, size), (ssize_t)size);
    close(fd);
    replay r = {0};
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_BIG, &r, &rec);
    assert_true(rec.upgraded);
    expect_replay(&r, 1, 5, 0);
    replay_free(&r);
    jt_append(&g_t, 0);
    jt_sync(&g_t);
    assert_int_equal(g_t.j.seg_seq, 2);
    assert_int_equal(journal_seal(&g_t.j, 1), 0);
    jt_close(&g_t);
    assert_int_equal(unit_file_size(path), (off_t)size); /* the old segment is left as it was */
    jt_open_ok(&g_t, SEG_BIG, &r, &rec);
    assert_false(rec.upgraded);
    assert_true(rec.clean_shutdown);
    expect_replay(&r, 1, 6, 0);
    replay_free(&r);
    jt_close(&g_t);
    /* a torn tail in a version 1 segment is still cut by the version 1 rule */
    unit_rmtree(g_dir);
    unit_mkdtemp(g_dir, sizeof g_dir, "journal");
    seg_path(path, sizeof path, 1);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, img, size - 5), (ssize_t)(size - 5));
    close(fd);
    jt_open_ok(&g_t, SEG_BIG, &r, &rec);
    assert_true(rec.tail_cut);
    expect_replay(&r, 1, 4, 0);
    replay_free(&r);
    jt_close(&g_t);
}


/* --- the cluster log: frames appended verbatim, and the uncommitted tail cut ------------ */

/* The frames of the journal in g_dir, in order, as the cluster log carries them: each one
 * a whole frame (header..trailer) copied out of its segment. */
typedef struct frames {
    uint8_t *v[256];
    uint32_t len[256];
    int n;
} frames;

static void frames_read(frames *f) {
    memset(f, 0, sizeof *f);
    for (uint64_t seq = 1;; seq++) {
        char path[256];
        seg_path(path, sizeof path, seq);
        if (access(path, F_OK) != 0) break;
        size_t size;
        uint8_t *d = unit_read_file(path, &size);
        for (size_t off = sizeof(journal_seg_hdr); off + sizeof(journal_frame) <= size;) {
            journal_frame fh;
            if (!journal_frame_read(d, size, off, JOURNAL_FRAME_MAGIC, &fh)) break;
            assert_true(f->n < 256);
            f->v[f->n] = malloc(fh.len);
            memcpy(f->v[f->n], d + off, fh.len);
            f->len[f->n++] = fh.len;
            off += fh.len;
        }
        free(d);
    }
}

static void frames_free(frames *f) {
    for (int i = 0; i < f->n; i++) free(f->v[i]);
    memset(f, 0, sizeof *f);
}

/* A leader's journal of `batches` group commits (rolling segments), its frames read back. */
static void leader_frames(frames *f, int batches, uint64_t *last_sum) {
    journal_recovery rec;
    jt_open_ok(&g_t, 1024 * 1024, NULL, &rec);
    for (int b = 0; b < batches; b++) {
        for (int i = 0; i < 40 + b * 7; i++) jt_append(&g_t, 0);
        jt_sync(&g_t);
    }
    *last_sum = journal_last_sum(&g_t.j);
    jt_close(&g_t);
    frames_read(f);
    assert_true(f->n >= batches); /* a rolled batch is two frames */
}

/* A follower journal fed the leader's frames holds the same records, the same hash chain,
 * replays them to its callback at once, and reads back after a reopen. */
static void test_append_frames_follow(void **state) {
    (void)state;
    frames f;
    uint64_t leader_sum;
    leader_frames(&f, 24, &leader_sum);
    uint64_t last = journal_last_lsn(&g_t.j);
    /* The follower: its own directory, smaller segments than the leader's. */
    unit_rmtree(g_dir);
    unit_mkdtemp(g_dir, sizeof g_dir, "journal");
    journal_recovery rec;
    replay r = {0};
    jt_open_ok(&g_t, 256 * 1024, NULL, &rec);
    char err[256];
    for (int i = 0; i < f.n; i++) {
        int rc = journal_append_frames(&g_t.j, f.v[i], f.len[i], collect, &r, err, sizeof err);
        if (rc == -EAGAIN) {
            jt_sync(&g_t);
            rc = journal_append_frames(&g_t.j, f.v[i], f.len[i], collect, &r, err, sizeof err);
        }
        if (rc != 0) fail_msg("frame %d: %d %s", i, rc, err);
        if (i % 3 == 0) jt_sync(&g_t); /* some alone, some grouped in one write */
    }
    expect_replay(&r, 1, last, 0); /* applied as they arrived */
    replay_free(&r);
    jt_sync(&g_t);
    assert_int_equal(journal_last_lsn(&g_t.j), last);
    assert_int_equal(journal_last_sum(&g_t.j), leader_sum);
    assert_true(g_t.j.seg_seq > 2); /* it rolled its own segments between frames */
    /* the same frame again, or one from the past, does not continue the chain */
    assert_int_equal(journal_append_frames(&g_t.j, f.v[f.n - 1], f.len[f.n - 1], collect, &r, err,
                                           sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, "does not continue"));
    assert_int_equal(r.n, 0);
    jt_close(&g_t);
    jt_open_ok(&g_t, 256 * 1024, &r, &rec);
    assert_false(rec.tail_cut);
    expect_replay(&r, 1, last, 0);
    replay_free(&r);
    /* its own appends continue the chain after the leader's records */
    jt_append(&g_t, 0);
    jt_sync(&g_t);
    jt_close(&g_t);
    jt_open_ok(&g_t, 256 * 1024, NULL, &rec);
    assert_int_equal(journal_last_lsn(&g_t.j), last + 1);
    jt_close(&g_t);
    frames_free(&f);
}

/* Anything but the next whole frames of this chain is refused, and nothing of it is applied
 * or appended: a flipped byte anywhere, a gap, a cut frame, another journal's frame. */
static void test_append_frames_refused(void **state) {
    (void)state;
    frames f;
    uint64_t sum;
    leader_frames(&f, 4, &sum);
    unit_rmtree(g_dir);
    unit_mkdtemp(g_dir, sizeof g_dir, "journal");
    journal_recovery rec;
    replay r = {0};
    char err[256];
    jt_open_ok(&g_t, SEG_BIG, NULL, &rec);
    assert_int_equal(journal_append_frames(&g_t.j, f.v[1], f.len[1], collect, &r, err, sizeof err),
                     -EINVAL); /* a gap: lsn 1 first */
    assert_non_null(strstr(err, "does not continue"));
    for (uint32_t at = 0; at < f.len[0]; at += 13) {
        f.v[0][at] ^= 0x10;
        assert_int_equal(
            journal_append_frames(&g_t.j, f.v[0], f.len[0], collect, &r, err, sizeof err), -EINVAL);
        f.v[0][at] ^= 0x10;
    }
    assert_int_equal(journal_append_frames(&g_t.j, f.v[0], f.len[0] - 8, collect, &r, err, sizeof err),
                     -EINVAL);
    assert_int_equal(r.n, 0);
    assert_int_equal(journal_last_lsn(&g_t.j), 0);
    assert_true(journal_idle(&g_t.j));
    /* two frames in one value are fine */
    uint8_t *two = malloc(f.len[0] + f.len[1]);
    memcpy(two, f.v[0], f.len[0]);
    memcpy(two + f.len[0], f.v[1], f.len[1]);
    assert_int_equal(journal_append_frames(&g_t.j, two, f.len[0] + f.len[1], collect, &r, err, sizeof err), 0);
    free(two);
    jt_sync(&g_t);
    uint64_t at2 = journal_last_lsn(&g_t.j);
    /* another journal's next frame: same lsns, but its chain is not this one's */
    jt_close(&g_t);
    char fdir[128];
    memcpy(fdir, g_dir, sizeof fdir);
    unit_mkdtemp(g_dir, sizeof g_dir, "journal");
    frames other;
    jt_open_ok(&g_t, SEG_BIG, NULL, &rec);
    for (uint64_t i = 0; i < at2; i++) jt_append(&g_t, 7);
    jt_sync(&g_t);
    for (int i = 0; i < 10; i++) jt_append(&g_t, 7);
    jt_sync(&g_t);
    jt_close(&g_t);
    frames_read(&other);
    assert_int_equal(other.n, 2);
    unit_rmtree(g_dir);
    memcpy(g_dir, fdir, sizeof fdir);
    jt_open_ok(&g_t, SEG_BIG, NULL, &rec);
    assert_int_equal(journal_last_lsn(&g_t.j), at2);
    replay_free(&r);
    assert_int_equal(journal_append_frames(&g_t.j, other.v[1], other.len[1], collect, &r, err, sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, "hash chain"));
    assert_int_equal(r.n, 0);
    jt_close(&g_t);
    frames_free(&other);
    replay_free(&r);
    frames_free(&f);
}

/* keep_through_lsn cuts whole frames past it with the recovery's tail cut: the journal then
 * ends at the last frame ending at or before it, later segments are gone, appends go on. */
static void test_keep_through_cut(void **state) {
    (void)state;
    frames f;
    uint64_t sum;
    leader_frames(&f, 24, &sum);
    uint64_t last = journal_last_lsn(&g_t.j);
    uint64_t f1, l1, f2, l2;
    journal_frames_range(f.v[5], f.len[5], &f1, &l1);
    journal_frames_range(f.v[f.n - 1], f.len[f.n - 1], &f2, &l2);
    assert_int_equal(l2, last);
    journal_recovery rec;
    replay r = {0};
    /* keeping everything cuts nothing */
    journal_opts o = {.segment_bytes = 1024 * 1024, .replay = collect, .ctx = &r,
                      .keep_through_lsn = last};
    char err[512];
    assert_int_equal(journal_open(&g_t.j, g_dir, &o, &rec, err, sizeof err), 0);
    assert_false(rec.kept_cut);
    expect_replay(&r, 1, last, 0);
    replay_free(&r);
    journal_close(&g_t.j);
    /* inside frame 5: the cut is at its start, everything from it on is gone */
    o.keep_through_lsn = l1 - 1;
    assert_int_equal(journal_open(&g_t.j, g_dir, &o, &rec, err, sizeof err), 0);
    assert_true(rec.kept_cut);
    assert_false(rec.clean_shutdown);
    assert_int_equal(journal_last_lsn(&g_t.j), f1 - 1);
    expect_replay(&r, 1, f1 - 1, 0);
    replay_free(&r);
    uint64_t segs = g_t.j.seg_seq;
    journal_close(&g_t.j);
    char path[256];
    seg_path(path, sizeof path, segs + 1);
    assert_int_not_equal(access(path, F_OK), 0); /* the later segments were removed */
    /* what was cut can be supplied again, byte for byte, by the log */
    jt_open_ok(&g_t, 1024 * 1024, NULL, &rec);
    for (int i = 5; i < f.n; i++) {
        int rc = journal_append_frames(&g_t.j, f.v[i], f.len[i], NULL, NULL, err, sizeof err);
        if (rc == -EAGAIN) {
            jt_sync(&g_t);
            rc = journal_append_frames(&g_t.j, f.v[i], f.len[i], NULL, NULL, err, sizeof err);
        }
        if (rc) fail_msg("frame %d: %s", i, err);
    }
    jt_sync(&g_t);
    assert_int_equal(journal_last_sum(&g_t.j), sum);
    jt_close(&g_t);
    jt_open_ok(&g_t, 1024 * 1024, &r, &rec);
    assert_false(rec.kept_cut || rec.tail_cut);
    expect_replay(&r, 1, last, 0);
    replay_free(&r);
    jt_close(&g_t);
    /* at a frame's end exactly: the frame stays */
    o.keep_through_lsn = l1;
    assert_int_equal(journal_open(&g_t.j, g_dir, &o, &rec, err, sizeof err), 0);
    assert_int_equal(journal_last_lsn(&g_t.j), l1);
    replay_free(&r);
    journal_close(&g_t.j);
    /* the sum at an lsn, read from the log's frames, is the journal's at that lsn */
    uint64_t s5;
    assert_int_equal(journal_frames_sum_at(f.v[5], f.len[5], l1, &s5), 0);
    jt_open_ok(&g_t, 1024 * 1024, NULL, &rec);
    assert_int_equal(journal_last_sum(&g_t.j), s5);
    assert_int_equal(journal_frames_sum_at(f.v[5], f.len[5], l1 + 1, &s5), -1);
    jt_close(&g_t);
    frames_free(&f);
}

/* --- pre-zeroed segments (journal_opts.preallocate, issue 13) --------------------------- */

#define SEG_PRE (256u * 1024)

static void spare_wait_ready(void) {
    for (int i = 0; i < 5000; i++) {
        if (atomic_load(&g_t.j.spare.state) == SPARE_READY) return;
        usleep(1000);
    }
    fail_msg("the spare segment was never ready");
}

/* The open segment is zero-filled to segment_bytes at open, and appends overwrite it in
 * place: the file size never changes, so fdatasync has no size to commit. */
static void test_prealloc_in_place(void **state) {
    (void)state;
    g_prealloc = true;
    char path[256];
    seg_path(path, sizeof path, 1);
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_PRE, NULL, &rec);
    assert_int_equal(rec.prealloc_errno, 0);
    assert_int_equal(unit_file_size(path), (off_t)SEG_PRE);
    for (int i = 0; i < 40; i++) {
        jt_append(&g_t, 0);
        if (i % 4 == 3) jt_sync(&g_t);
    }
    jt_sync(&g_t);
    assert_int_equal(unit_file_size(path), (off_t)SEG_PRE);
    jt_close(&g_t);
    replay r = {0};
    jt_open_ok(&g_t, SEG_PRE, &r, &rec);
    assert_false(rec.tail_cut);
    assert_false(rec.damage.found);
    expect_replay(&r, 1, 40, 0);
    replay_free(&r);
    assert_int_equal(journal_last_lsn(&g_t.j), 40);
    jt_append(&g_t, 0); /* continues the chain after the zeros' start, not at the file end */
    jt_sync(&g_t);
    assert_int_equal(journal_seal(&g_t.j, 1), 0);
    jt_close(&g_t);
    jt_open_ok(&g_t, SEG_PRE, &r, &rec);
    assert_true(rec.clean_shutdown);
    expect_replay(&r, 1, 41, 0);
    replay_free(&r);
    jt_close(&g_t);
    assert_int_equal(unit_file_size(path), (off_t)SEG_PRE);
}

/* Half way through a segment the next one is zero-filled by a worker; the roll renames it
 * into place (no leftover spare is ever taken for a segment by the scanner). */
static void test_prealloc_roll_takes_spare(void **state) {
    (void)state;
    g_prealloc = true;
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_PRE, NULL, &rec);
    uint64_t n = 0;
    for (int seg = 1; seg <= 3; seg++) {
        while (g_t.j.seg_off < SEG_PRE / 2 + 1) {
            jt_append(&g_t, 0);
            n++;
        }
        jt_sync(&g_t); /* the flush asks for the spare */
        spare_wait_ready();
        char spare[256];
        snprintf(spare, sizeof spare, "%s/%s", g_dir, JOURNAL_SPARE_NAME);
        assert_int_equal(unit_file_size(spare), (off_t)SEG_PRE);
        while (g_t.j.seg_seq == (uint64_t)seg) {
            jt_append(&g_t, 0);
            n++;
            if (n % 8 == 0) jt_sync(&g_t);
        }
        jt_sync(&g_t);
        char path[256];
        seg_path(path, sizeof path, (uint64_t)seg + 1);
        assert_int_equal(unit_file_size(path), (off_t)SEG_PRE); /* the spare, in place */
        assert_int_equal(access(spare, F_OK), -1);
    }
    jt_close(&g_t);
    uint64_t *seqs = NULL;
    assert_int_equal(journal_list_segments(g_dir, &seqs), 4);
    free(seqs);
    replay r = {0};
    jt_open_ok(&g_t, SEG_PRE, &r, &rec);
    assert_false(rec.tail_cut);
    expect_replay(&r, 1, n, 0);
    replay_free(&r);
    jt_close(&g_t);
}

/* Power lost during the last batch's write into zero-filled space: the pages of its end
 * never reached the disk, so its trailer's place still reads as zeros. Never acknowledged:
 * cut, the segment zero-filled again, and appends continue the chain. */
static void test_prealloc_power_loss_zero_tail(void **state) {
    (void)state;
    g_prealloc = true;
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_PRE, NULL, &rec);
    for (int i = 0; i < 12; i++) {
        jt_append(&g_t, 0);
        jt_sync(&g_t); /* a frame per record */
    }
    jt_close(&g_t);
    char path[256];
    seg_path(path, sizeof path, 1);
    record_offsets(1, 1, 0);
    assert_int_equal(g_offs.n, 12);
    size_t last = g_offs.off[11];
    /* the last frame's header reached the disk, everything from its first record's
     * payload on did not (reads as the zeros that were there) */
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    static uint8_t zeros[4096];
    assert_int_equal(pwrite(fd, zeros, sizeof zeros, (off_t)last + 40), (ssize_t)sizeof zeros);
    close(fd);
    assert_int_equal(unit_file_size(path), (off_t)SEG_PRE);
    replay r = {0};
    jt_open_ok(&g_t, SEG_PRE, &r, &rec);
    assert_true(rec.tail_cut);
    assert_false(rec.damage.found);
    assert_int_equal(rec.cut_offset, FRAME_OF(last));
    expect_replay(&r, 1, 11, 0);
    replay_free(&r);
    assert_int_equal(unit_file_size(path), (off_t)SEG_PRE); /* zero-filled again */
    jt_append(&g_t, 0);
    jt_sync(&g_t);
    jt_close(&g_t);
    jt_open_ok(&g_t, SEG_PRE, &r, &rec);
    assert_false(rec.tail_cut);
    expect_replay(&r, 1, 12, 0);
    replay_free(&r);
    jt_close(&g_t);
    /* and when none of the last batch reached the disk, it is simply not there */
    seg_path(path, sizeof path, 1);
    record_offsets(1, 1, 0);
    last = g_offs.off[11];
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, zeros, sizeof zeros, (off_t)FRAME_OF(last)), (ssize_t)sizeof zeros);
    close(fd);
    jt_open_ok(&g_t, SEG_PRE, &r, &rec);
    assert_false(rec.tail_cut);
    assert_false(rec.damage.found);
    expect_replay(&r, 1, 11, 0);
    replay_free(&r);
    jt_close(&g_t);
}

/* A crash right after a roll renamed the spare: the new segment holds only zeros, no
 * header. And a spare left half written: not a segment, removed at start. */
static void test_prealloc_crash_after_rename(void **state) {
    (void)state;
    g_prealloc = true;
    write_n_and_close(SEG_PRE, 20);
    char path[256], spare[256];
    seg_path(path, sizeof path, 2);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0640);
    assert_true(fd >= 0);
    assert_int_equal(journal_zero_fill(fd, 0, SEG_PRE), 0);
    close(fd);
    snprintf(spare, sizeof spare, "%s/%s", g_dir, JOURNAL_SPARE_NAME);
    unit_write_file(spare, "half written");
    replay r = {0};
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_PRE, &r, &rec);
    assert_true(rec.tail_cut);
    assert_false(rec.damage.found);
    assert_int_equal(rec.cut_seq, 2);
    expect_replay(&r, 1, 20, 0);
    replay_free(&r);
    assert_int_equal(access(spare, F_OK), -1);
    for (int i = 0; i < 3; i++) jt_append(&g_t, 0);
    jt_sync(&g_t);
    jt_close(&g_t);
    jt_open_ok(&g_t, SEG_PRE, &r, &rec);
    assert_false(rec.tail_cut);
    expect_replay(&r, 1, 23, 0);
    replay_free(&r);
    jt_close(&g_t);
}

/* A batch wakes the loop once: its write's completion is skipped when it succeeds, so the
 * fdatasync's is the only one (issue 13: one wake-up per batch, as fsynclat has). */
static void test_write_cqe_skipped(void **state) {
    (void)state;
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_BIG, NULL, &rec);
    assert_true(g_t.j.skip_write_cqe); /* the kernels this runs on have IORING_FEAT_CQE_SKIP */
    for (int i = 0; i < 3; i++) jt_append(&g_t, 0);
    g_t.cqes = 0;
    jt_sync(&g_t);
    assert_int_equal(g_t.durable, 3);
    assert_int_equal(g_t.cqes, 1);
    jt_close(&g_t);
}

/* With skipped write completions, a write that really fails posts its completion and the
 * kernel posts none for the fdatasync it cancels: the batch must end there (failed, nothing
 * acknowledged), and its retry must make it durable. */
static void test_write_error_skipped_cqe(void **state) {
    (void)state;
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_BIG, NULL, &rec);
    assert_true(g_t.j.skip_write_cqe);
    jt_append(&g_t, 0);
    jt_sync(&g_t);
    jt_append(&g_t, 0);
    jt_append(&g_t, 0);
    /* The segment's fd number now names a read-only file: the write fails with EBADF. */
    char path[256];
    seg_path(path, sizeof path, g_t.j.seg_seq);
    int saved = dup(g_t.j.seg_fd), ro = open(path, O_RDONLY);
    assert_true(saved >= 0 && ro >= 0);
    assert_int_equal(dup2(ro, g_t.j.seg_fd), g_t.j.seg_fd);
    g_t.cqes = 0;
    int64_t now = clock_mono_ns();
    journal_flush(&g_t.j, now);
    assert_true(g_t.j.inflight);
    jt_reap(&g_t);
    assert_int_equal(g_t.cqes, 1); /* the write's; the cancelled fdatasync posts none */
    assert_false(g_t.j.inflight);
    assert_int_equal(g_t.durable, 1);
    assert_int_equal(g_t.j.last_error, EBADF);
    assert_int_equal(g_t.j.stats.write_errors, 1);
    assert_int_equal(dup2(saved, g_t.j.seg_fd), g_t.j.seg_fd);
    close(saved);
    close(ro);
    journal_flush(&g_t.j, g_t.j.retry_at_ns);
    assert_true(g_t.j.inflight);
    jt_reap(&g_t);
    assert_int_equal(g_t.durable, 3);
    assert_int_equal(g_t.j.last_error, 0);
    jt_close(&g_t);
    replay r = {0};
    jt_open_ok(&g_t, SEG_BIG, &r, &rec);
    expect_replay(&r, 1, 3, 0);
    replay_free(&r);
    jt_close(&g_t);
}

/* A lazy open batch has no deadline while a batch is in flight: it cannot go before that
 * completion, which wakes the loop anyway. A deadline that passed during a slow fdatasync
 * made the event loop spin (wait 0) until it completed. */
static void test_lazy_deadline_waits_for_inflight(void **state) {
    (void)state;
    journal_recovery rec;
    jt_open_ok(&g_t, SEG_BIG, NULL, &rec);
    jt_append(&g_t, 0);
    journal_flush(&g_t.j, clock_mono_ns());
    assert_true(g_t.j.inflight);
    journal_lazy_next(&g_t.j);
    jt_append(&g_t, 0);
    assert_int_equal(journal_lazy_deadline_ns(&g_t.j), 0);
    jt_reap(&g_t);
    assert_int_equal(g_t.durable, 1);
    int64_t due = journal_lazy_deadline_ns(&g_t.j);
    assert_int_equal(due, g_t.j.batch[g_t.j.open_idx].opened_ns + JOURNAL_LAZY_NS);
    journal_flush(&g_t.j, due - 1); /* lazy, not yet due: stays */
    assert_false(g_t.j.inflight);
    journal_flush(&g_t.j, due);
    assert_true(g_t.j.inflight);
    jt_reap(&g_t);
    assert_int_equal(g_t.durable, 2);
    jt_close(&g_t);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_open_empty),
        T(test_open_bad_dir),
        T(test_append_reopen),
        T(test_group_commit),
        T(test_torn_tail_cut),
        T(test_torn_tail_header_only),
        T(test_torn_tail_zeros),
        T(test_corrupt_middle_refused),
        T(test_corrupt_record_header_refused),
        T(test_corrupt_segment_header_refused),
        T(test_segment_roll),
        T(test_roll_many_in_one_batch),
        T(test_missing_segment_refused),
        T(test_torn_new_segment),
        T(test_crash_during_roll_batch),
        T(test_write_error_retry),
        T(test_write_cqe_skipped),
        T(test_write_error_skipped_cqe),
        T(test_lazy_deadline_waits_for_inflight),
        T(test_replay_callback_refuses),
        T(test_flip_every_bit_last_batch),
        T(test_flip_every_bit_after_close),
        T(test_open_flip_every_byte_last_batch),
        T(test_open_flip_every_byte_after_close),
        T(test_truncate_every_offset_last_batch),
        T(test_truncate_every_offset_close),
        T(test_truncate_damaged_tail),
        T(test_truncate_flag_keeps_mid_damage),
        T(test_reads_version1_journal),
        T(test_append_frames_follow),
        T(test_append_frames_refused),
        T(test_keep_through_cut),
        T(test_prealloc_in_place),
        T(test_prealloc_roll_takes_spare),
        T(test_prealloc_power_loss_zero_tail),
        T(test_prealloc_crash_after_rename),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
