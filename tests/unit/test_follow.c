/* Unit tests of follow (gateway/daemon/follow.h) without etcd: etcd's answers are made here
 * (range pages, watch events) from a real leader journal's frames, and handed to
 * follow_on_result; the follower's journal is real. A client on a dead port takes the
 * requests follow submits (they fail later; nothing here waits for them). Shows: batches
 * applied once and in lsn order (resends skipped, a gap read again by range and filled), the
 * journal equal to the leader's (same hash chain), the leader key and the members table
 * followed, a log trimmed past the member = stale, a foreign batch = failed. */
#include "unit.h"

#include <errno.h>

#include "clock.h"
#include "follow.h"
#include "journal.h"
#include "ring.h"

static char g_dir[128];

typedef struct frames {
    uint8_t *v[64];
    uint32_t len[64];
    uint64_t first[64], last[64];
    int n;
    uint64_t last_sum;
} frames;

/* A leader journal of n batches (one frame each), its frames read back; each record's payload
 * padded with repeated text to pad bytes (then a batch is large enough to be packed). */
static void leader_frames_padded(frames *f, int n, int pad) {
    memset(f, 0, sizeof *f);
    char dir[128];
    unit_mkdtemp(dir, sizeof dir, "follow-leader");
    journal j;
    journal_recovery rec;
    char err[256];
    journal_opts o = {.segment_bytes = 64 << 20};
    assert_int_equal(journal_open(&j, dir, &o, &rec, err, sizeof err), 0);
    struct io_uring ring;
    assert_int_equal(io_uring_queue_init(16, &ring, 0), 0);
    journal_attach(&j, &ring, NULL, NULL);
    for (int b = 0; b < n; b++) {
        for (int i = 0; i <= b % 3; i++) {
            char p[2048];
            int pl = snprintf(p, sizeof p, "batch %d record %d", b, i);
            for (; pl < pad && pl < (int)sizeof p; pl++) p[pl] = "STOP DVB ACC CASE "[pl % 18];
            assert_true(journal_append(&j, 1, p, (uint32_t)pl) > 0);
        }
        journal_flush(&j, clock_mono_ns());
        while (j.inflight) {
            struct io_uring_cqe *cqe;
            assert_true(io_uring_submit_and_wait(&ring, 1) >= 0);
            assert_int_equal(io_uring_peek_cqe(&ring, &cqe), 0);
            journal_on_cqe(&j, ud_aux(io_uring_cqe_get_data64(cqe)), cqe->res, clock_mono_ns());
            io_uring_cqe_seen(&ring, cqe);
        }
    }
    f->last_sum = journal_last_sum(&j);
    journal_close(&j);
    io_uring_queue_exit(&ring);
    char path[256];
    snprintf(path, sizeof path, "%s/0000000000000001.sgj", dir);
    size_t size;
    uint8_t *d = unit_read_file(path, &size);
    for (size_t off = sizeof(journal_seg_hdr); off < size && f->n < n;) {
        journal_frame h;
        assert_true(journal_frame_read(d, size, off, JOURNAL_FRAME_MAGIC, &h));
        f->v[f->n] = malloc(h.len);
        memcpy(f->v[f->n], d + off, h.len);
        f->len[f->n] = h.len;
        f->first[f->n] = h.first_lsn;
        f->last[f->n++] = h.last_lsn;
        off += h.len;
    }
    assert_int_equal(f->n, n);
    free(d);
    unit_rmtree(dir);
}

static void leader_frames(frames *f, int n) { leader_frames_padded(f, n, 0); }

/* --- the follower under test ---------------------------------------------------------- */

typedef struct ft {
    follow f;
    etcd_client *ec;
    journal j;
    struct io_uring ring;
    uint64_t applied_records;
    uint64_t last_lsn_seen;
    char leader[64], addr[128];
    int64_t epoch;
    int leader_calls;
} ft;

static ft g;

static int apply(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *payload, uint32_t len) {
    ft *t = ctx;
    (void)type, (void)payload, (void)len;
    assert_int_equal(lsn, t->last_lsn_seen + 1); /* in order, each once */
    t->last_lsn_seen = lsn;
    t->applied_records++;
    return 0;
}

static void on_leader(void *ctx, const char *name, const char *addr, int64_t epoch) {
    ft *t = ctx;
    snprintf(t->leader, sizeof t->leader, "%s", name);
    snprintf(t->addr, sizeof t->addr, "%s", addr);
    t->epoch = epoch;
    t->leader_calls++;
}

static void sync_journal(ft *t) {
    for (int guard = 0; guard < 100; guard++) {
        journal_flush(&t->j, clock_mono_ns());
        if (!t->j.inflight) return;
        struct io_uring_cqe *cqe;
        assert_true(io_uring_submit_and_wait(&t->ring, 1) >= 0);
        assert_int_equal(io_uring_peek_cqe(&t->ring, &cqe), 0);
        journal_on_cqe(&t->j, ud_aux(io_uring_cqe_get_data64(cqe)), cqe->res, clock_mono_ns());
        io_uring_cqe_seen(&t->ring, cqe);
    }
}

static int setup(void **state) {
    (void)state;
    memset(&g, 0, sizeof g);
    unit_mkdtemp(g_dir, sizeof g_dir, "follow");
    journal_recovery rec;
    char err[256];
    journal_opts o = {.segment_bytes = 1 << 20};
    assert_int_equal(journal_open(&g.j, g_dir, &o, &rec, err, sizeof err), 0);
    assert_int_equal(io_uring_queue_init(16, &g.ring, 0), 0);
    journal_attach(&g.j, &g.ring, NULL, NULL);
    etcd_config cfg = {.endpoints = "http://127.0.0.1:1", .deadline_ms = 200};
    g.ec = etcd_create(&cfg, err, sizeof err);
    assert_non_null(g.ec);
    follow_ops ops = {.apply = apply, .leader = on_leader, .ctx = &g};
    assert_int_equal(follow_init(&g.f, g.ec, &g.j, "/t", "me", &ops, err, sizeof err), 0);
    follow_start(&g.f);
    assert_int_equal(g.f.state, FOLLOW_CATCHUP);
    assert_true(g.f.range_inflight);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    follow_fini(&g.f);
    etcd_destroy(g.ec);
    journal_close(&g.j);
    io_uring_queue_exit(&g.ring);
    unit_rmtree(g_dir);
    return 0;
}

static etcd_kv kv_of(const frames *fr, int i, int64_t rev) {
    static char keys[64][64];
    int kl = snprintf(keys[i], sizeof keys[i], "/t/log/%020llu", (unsigned long long)fr->first[i]);
    return (etcd_kv){.key = (const uint8_t *)keys[i], .key_len = (size_t)kl, .value = fr->v[i],
                     .value_len = fr->len[i], .mod_revision = rev, .create_revision = rev, .version = 1};
}

/* A range page holding frames [from, to). */
static void give_range(const frames *fr, int from, int to, bool more, int64_t rev) {
    etcd_kv kvs[64];
    for (int i = from; i < to; i++) kvs[i - from] = kv_of(fr, i, 10 + i);
    etcd_result r = {.cookie = FOLLOW_COOKIE_TAG | FOLLOW_CK_RANGE, .kind = ETCD_RANGE,
                     .kvs = kvs, .kv_count = (size_t)(to - from), .more = more, .revision = rev};
    follow_on_result(&g.f, &r);
}

static void give_events(const etcd_event *ev, size_t n) {
    etcd_result r = {.cookie = FOLLOW_COOKIE_TAG | FOLLOW_CK_WATCH, .kind = ETCD_WATCH,
                     .events = ev, .event_count = n};
    follow_on_result(&g.f, &r);
}

static etcd_event log_event(const frames *fr, int i) {
    return (etcd_event){.kv = kv_of(fr, i, 10 + i)};
}

static void free_frames(frames *fr) {
    for (int i = 0; i < fr->n; i++) free(fr->v[i]);
}

/* Catch-up by range pages, then the watch: resends skipped, a gap re-read and filled. */
static void test_catch_up_and_watch(void **state) {
    (void)state;
    frames fr;
    leader_frames(&fr, 12);
    give_range(&fr, 0, 4, true, 100); /* a first page of four, more to come */
    assert_int_equal(g.f.applied_lsn, fr.last[3]);
    assert_int_equal(g.f.range_rev, 100); /* the next page reads at the same revision */
    assert_true(g.f.range_inflight);
    give_range(&fr, 3, 6, false, 100); /* overlapping: frame 3 skipped */
    assert_int_equal(g.f.applied_lsn, fr.last[5]);
    assert_int_equal(g.f.stats.batches_skipped, 1);
    assert_int_equal(g.f.state, FOLLOW_LIVE);
    assert_int_equal(g.f.watch_from, 101); /* the watch from after the read */
    /* the watch: 6, 6 again (an idempotent resend), then 8 (a gap: 7 missing) */
    etcd_event ev[3] = {log_event(&fr, 6), log_event(&fr, 6), log_event(&fr, 8)};
    give_events(ev, 3);
    assert_int_equal(g.f.applied_lsn, fr.last[6]);
    assert_int_equal(g.f.stats.batches_skipped, 2);
    assert_int_equal(g.f.stats.gaps, 1);
    assert_true(g.f.range_inflight); /* read again from applied + 1 */
    etcd_event ev9 = log_event(&fr, 9); /* arrives while the read is out: a gap still */
    give_events(&ev9, 1);
    assert_true(g.f.range_again);
    give_range(&fr, 7, 10, false, 120);
    assert_int_equal(g.f.applied_lsn, fr.last[9]);
    assert_true(g.f.range_inflight); /* and once more, for what came meanwhile */
    give_range(&fr, 10, 12, false, 125);
    assert_int_equal(g.f.applied_lsn, fr.last[11]);
    assert_int_equal(g.applied_records, fr.last[11]);
    sync_journal(&g);
    assert_int_equal(journal_last_lsn(&g.j), fr.last[11]);
    assert_int_equal(journal_last_sum(&g.j), fr.last_sum); /* the leader's hash chain */
    /* follow_sync: a fresh read to the end of the log */
    follow_sync(&g.f);
    assert_false(follow_synced(&g.f));
    give_range(&fr, 11, 12, false, 130);
    assert_true(follow_synced(&g.f));
    free_frames(&fr);
}

/* The leader key and the members' publications are followed. */
static void test_leader_and_members(void **state) {
    (void)state;
    frames fr;
    leader_frames(&fr, 2);
    give_range(&fr, 0, 2, false, 50);
    etcd_event ev[4] = {
        {.kv = {.key = (const uint8_t *)"/t/leader", .key_len = 9, .value = (const uint8_t *)"gw-a 127.0.0.1:7001",
                .value_len = 19, .create_revision = 42}},
        {.kv = {.key = (const uint8_t *)"/t/members/gw-a", .key_len = 15, .value = (const uint8_t *)"5 60 leader",
                .value_len = 11}},
        {.kv = {.key = (const uint8_t *)"/t/members/gw-m", .key_len = 15, .value = (const uint8_t *)"2 55 follower",
                .value_len = 13}},
        {.is_delete = true, .kv = {.key = (const uint8_t *)"/t/members/gw-x", .key_len = 15}},
    };
    give_events(ev, 4);
    assert_string_equal(g.leader, "gw-a");
    assert_string_equal(g.addr, "127.0.0.1:7001");
    assert_int_equal(g.epoch, 42);
    assert_int_equal(follow_members_min_applied(&g.f), 2);
    etcd_event gone = {.is_delete = true, .kv = {.key = (const uint8_t *)"/t/members/gw-m", .key_len = 15}};
    give_events(&gone, 1); /* its lease expired: no longer holds the trim back */
    assert_int_equal(follow_members_min_applied(&g.f), g.f.applied_lsn < 5 ? g.f.applied_lsn : 5);
    etcd_event del = {.is_delete = true, .kv = {.key = (const uint8_t *)"/t/leader", .key_len = 9}};
    give_events(&del, 1);
    assert_string_equal(g.leader, "");
    assert_int_equal(g.leader_calls, 2);
    free_frames(&fr);
}

/* A log that starts past applied + 1 was trimmed past this member: stale, nothing applied. */
static void test_trimmed_is_stale(void **state) {
    (void)state;
    frames fr;
    leader_frames(&fr, 4);
    give_range(&fr, 2, 4, false, 70);
    assert_int_equal(g.f.state, FOLLOW_STALE);
    assert_int_equal(g.f.applied_lsn, 0);
    assert_int_equal(g.applied_records, 0);
    assert_non_null(strstr(g.f.why, "re-seed"));
    free_frames(&fr);
}

/* A batch that does not check out (a damaged copy): failed, nothing of it applied. */
static void test_foreign_batch_fails(void **state) {
    (void)state;
    frames a, b;
    leader_frames(&a, 3);
    leader_frames(&b, 4); /* the same history, but the copy of batch 2 is damaged */
    give_range(&a, 0, 2, false, 30);
    /* corrupt one byte of the next batch: the check refuses it, nothing applied */
    b.v[2][b.len[2] / 2] ^= 1;
    etcd_event ev = log_event(&b, 2);
    give_events(&ev, 1);
    assert_int_equal(g.f.state, FOLLOW_FAILED);
    assert_int_equal(g.f.applied_lsn, a.last[1]);
    free_frames(&a);
    free_frames(&b);
}

/* The log as a leader now writes it: batches packed with zstd (logval.h), mixed with raw ones
 * (small, or from a member before packing). Applied alike, the journal ends with the leader's
 * hash chain; a packed value damaged in etcd is refused (failed), nothing of it applied. */
static void test_packed_batches(void **state) {
    (void)state;
    frames fr;
    leader_frames_padded(&fr, 8, 1500);
    logval_codec *c = logval_new();
    assert_non_null(c);
    for (int i = 1; i < fr.n; i++) { /* batch 0 stays raw */
        size_t vl;
        const uint8_t *v = logval_encode(c, fr.v[i], fr.len[i], fr.first[i], fr.last[i], &vl);
        assert_true(logval_is_packed(v, vl) && vl < fr.len[i]);
        memcpy(fr.v[i], v, vl);
        fr.len[i] = (uint32_t)vl;
    }
    logval_free(c);
    give_range(&fr, 0, 4, false, 40);
    assert_int_equal(g.f.applied_lsn, fr.last[3]);
    etcd_event ev[3] = {log_event(&fr, 4), log_event(&fr, 4), log_event(&fr, 5)}; /* a resend skipped */
    give_events(ev, 3);
    assert_int_equal(g.f.applied_lsn, fr.last[5]);
    assert_int_equal(g.f.stats.batches_skipped, 1);
    assert_int_equal(g.f.keys_len, 6); /* trim bookkeeping: the lsns from the packed headers */
    assert_int_equal(g.f.keys[5].first_lsn, fr.first[5]);
    assert_int_equal(g.f.keys[5].last_lsn, fr.last[5]);
    fr.v[6][fr.len[6] - 9] ^= 0x10; /* inside the zstd frame */
    etcd_event bad = log_event(&fr, 6);
    give_events(&bad, 1);
    assert_int_equal(g.f.state, FOLLOW_FAILED);
    assert_non_null(strstr(g.f.why, "packed log value"));
    assert_int_equal(g.f.applied_lsn, fr.last[5]);
    assert_int_equal(g.applied_records, fr.last[5]);
    sync_journal(&g);
    assert_int_equal(journal_last_lsn(&g.j), fr.last[5]);
    free_frames(&fr);
}

/* The answer to a new leader's extent read: log keys [from, to) (keys only) and P/head. */
static void give_extent(const frames *fr, int from, int to, uint64_t head) {
    int64_t now = etcd_mono_ms();
    follow_tick(&g.f, now);
    assert_true(g.f.extent_inflight);
    etcd_kv kvs[65];
    size_t n = 0;
    for (int i = from; i < to; i++, n++) {
        kvs[n] = kv_of(fr, i, 10 + i);
        kvs[n].value = NULL;
        kvs[n].value_len = 0;
    }
    char hv[24];
    snprintf(hv, sizeof hv, "%020llu", (unsigned long long)head);
    kvs[n++] = (etcd_kv){.key = (const uint8_t *)"/t/head", .key_len = 7, .value = (const uint8_t *)hv, .value_len = 20};
    etcd_op_result ops[2] = {{.kind = ETCD_OP_RANGE, .kv_first = 0, .kv_count = n - 1},
                             {.kind = ETCD_OP_RANGE, .kv_first = n - 1, .kv_count = 1}};
    etcd_result r = {.cookie = FOLLOW_COOKIE_TAG | FOLLOW_CK_EXTENT, .kind = ETCD_TXN, .succeeded = true,
                     .kvs = kvs, .kv_count = n, .ops = ops, .op_count = 2, .revision = 99};
    follow_on_result(&g.f, &r);
    assert_false(g.f.extent_inflight);
    assert_true(g.f.extent_known);
}

/* The leader trims the keys every present member applied and that are past the retention,
 * never the last one, then compacts at the delete's revision. */
static void test_trim(void **state) {
    (void)state;
    frames fr;
    leader_frames(&fr, 6);
    give_range(&fr, 0, 6, false, 80);
    assert_int_equal(g.f.keys_len, 6);
    follow_set_leading(&g.f, true);
    give_extent(&fr, 0, 6, fr.last[5]); /* nothing older than what it saw */
    assert_int_equal(g.f.keys_len, 6);
    char v[64];
    int vl = snprintf(v, sizeof v, "%llu 70 follower", (unsigned long long)fr.last[3]);
    etcd_event m = {.kv = {.key = (const uint8_t *)"/t/members/gw-b", .key_len = 15, .value = (const uint8_t *)v,
                           .value_len = (size_t)vl}};
    give_events(&m, 1);
    int64_t now = etcd_mono_ms();
    follow_tick(&g.f, now); /* every key younger than the retention: nothing */
    assert_int_equal(g.f.stats.trimmed_keys, 0);
    for (uint32_t i = 0; i < g.f.keys_len; i++) g.f.keys[(g.f.keys_head + i) % FOLLOW_TRIM_RING].seen_ms -= CLUSTER_LOG_RETENTION_MS_DEFAULT;
    follow_tick(&g.f, now + FOLLOW_TRIM_MS);
    assert_int_equal(g.f.stats.trimmed_keys, 4); /* gw-b has applied batches 0..3 */
    assert_int_equal(g.f.keys_len, 2);
    assert_int_equal(g.f.keys[g.f.keys_head].first_lsn, fr.first[4]);
    assert_true(g.f.trim_inflight);
    etcd_result done = {.cookie = FOLLOW_COOKIE_TAG | FOLLOW_CK_TRIM, .kind = ETCD_DELETE, .revision = 90};
    follow_on_result(&g.f, &done);
    assert_int_equal(g.f.stats.trims, 1);
    assert_int_equal(g.f.stats.compactions, 1);
    /* gw-b catches up: everything but the last key goes */
    vl = snprintf(v, sizeof v, "%llu 95 follower", (unsigned long long)fr.last[5]);
    m.kv.value_len = (size_t)vl;
    give_events(&m, 1);
    follow_tick(&g.f, now + 2 * FOLLOW_TRIM_MS);
    assert_int_equal(g.f.stats.trimmed_keys, 5);
    assert_int_equal(g.f.keys_len, 1);
    free_frames(&fr);
}

/* A leader that restarted has seen only the last log key since: it learns the older ones from
 * etcd (keys only, with P/head) and trims them too. */
static void test_trim_learns_extent(void **state) {
    (void)state;
    frames fr;
    leader_frames(&fr, 6);
    give_range(&fr, 0, 6, false, 80);
    g.f.keys_head = (g.f.keys_head + 5) % FOLLOW_TRIM_RING; /* as if started at batch 5 */
    g.f.keys_len = 1;
    follow_set_leading(&g.f, true);
    int64_t now = etcd_mono_ms();
    follow_tick(&g.f, now + FOLLOW_TRIM_MS); /* no trim before the extent is known */
    assert_int_equal(g.f.stats.trimmed_keys, 0);
    assert_false(g.f.trim_inflight);
    give_extent(&fr, 0, 6, fr.last[5]);
    assert_int_equal(g.f.keys_len, 6);
    for (uint32_t i = 0; i < 6; i++) {
        const follow_logkey *k = &g.f.keys[(g.f.keys_head + i) % FOLLOW_TRIM_RING];
        assert_int_equal(k->first_lsn, fr.first[i]);
        assert_int_equal(k->last_lsn, fr.last[i]);
    }
    for (uint32_t i = 0; i < g.f.keys_len; i++) g.f.keys[(g.f.keys_head + i) % FOLLOW_TRIM_RING].seen_ms -= CLUSTER_LOG_RETENTION_MS_DEFAULT;
    follow_tick(&g.f, now + 2 * FOLLOW_TRIM_MS);
    assert_int_equal(g.f.stats.trimmed_keys, 5); /* every key but the last: only this member */
    assert_int_equal(g.f.keys_len, 1);
    assert_int_equal(g.f.keys[g.f.keys_head].first_lsn, fr.first[5]);
    free_frames(&fr);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_catch_up_and_watch),
        T(test_leader_and_members),
        T(test_trimmed_is_stale),
        T(test_foreign_batch_fails),
        T(test_packed_batches),
        T(test_trim),
        T(test_trim_learns_extent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
