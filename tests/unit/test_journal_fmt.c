/* Unit tests of journal_fmt (gateway/core/journal_fmt.h): segment header and record encoding,
 * checksums, the hash chain, and journal_scan_segment telling a torn tail (cut it) from
 * damage followed by valid records (refuse). Works on segments built in memory. */
#include "unit.h"

#include <errno.h>
#include <xxhash.h>

#include "journal_fmt.h"
#include "limits.h"

#define SEG_CAP (64 * 1024)

/* A segment image in memory plus where each record starts. */
typedef struct seg {
    uint8_t data[SEG_CAP];
    size_t size;
    size_t rec_off[64];
    uint64_t rec_sum[64];
    int nrec;
    uint64_t next_lsn, last_sum;
} seg;

/* A version 1 segment (records without frames): the record-level checks are the same in
 * both versions, and version 1 journals are still read. */
static void seg_begin(seg *s, uint64_t seq, uint64_t first_lsn, uint64_t prev_sum) {
    memset(s, 0, sizeof *s);
    journal_seg_hdr h;
    journal_seg_hdr_make(&h, seq, first_lsn, prev_sum, 1700000000000);
    h.version = JOURNAL_SEG_VERSION_V1;
    h.sum = XXH3_64bits((const uint8_t *)&h + 8, sizeof h - 8);
    memcpy(s->data, &h, sizeof h);
    s->size = sizeof h;
    s->next_lsn = first_lsn;
    s->last_sum = prev_sum;
}

/* Payload of record lsn: recognisable bytes of a length that varies with lsn. */
static uint32_t payload_for(uint64_t lsn, uint8_t *p) {
    uint32_t n = (uint32_t)(lsn * 7 % 50);
    for (uint32_t i = 0; i < n; i++) p[i] = (uint8_t)(lsn + i);
    return n;
}

static void seg_add(seg *s, uint16_t type) {
    uint8_t pl[64];
    uint32_t n = payload_for(s->next_lsn, pl);
    assert_true(s->size + journal_rec_len(n) <= SEG_CAP);
    journal_rec_encode(s->data + s->size, type, s->next_lsn, s->last_sum, pl, n);
    s->rec_off[s->nrec] = s->size;
    memcpy(&s->last_sum, s->data + s->size, 8);
    s->rec_sum[s->nrec] = s->last_sum;
    s->nrec++;
    s->size += journal_rec_len(n);
    s->next_lsn++;
}

typedef struct seen {
    int n;
    uint64_t lsn[64];
    uint16_t type[64];
    int stop_at; /* stop the scan (return 7) at this lsn, 0 = never */
} seen;

static int collect(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *payload, uint32_t len) {
    seen *v = ctx;
    uint8_t want[64];
    uint32_t n = payload_for(lsn, want);
    assert_int_equal(len, n);
    assert_memory_equal(payload, want, n);
    v->lsn[v->n] = lsn;
    v->type[v->n] = type;
    v->n++;
    return (v->stop_at && (uint64_t)v->stop_at == lsn) ? 7 : 0;
}

static void test_rec_len(void **state) {
    (void)state;
    assert_int_equal(journal_rec_len(0), 40);
    assert_int_equal(journal_rec_len(1), 48);
    assert_int_equal(journal_rec_len(8), 48);
    assert_int_equal(journal_rec_len(9), 56);
    assert_int_equal(journal_rec_len(24), 64);
    for (uint32_t n = 0; n < 100; n++) {
        assert_int_equal(journal_rec_len(n) % 8, 0);
        assert_true(journal_rec_len(n) >= 40 + n);
        assert_true(journal_rec_len(n) < 48 + n);
    }
}

static void test_seg_hdr(void **state) {
    (void)state;
    journal_seg_hdr h;
    journal_seg_hdr_make(&h, 3, 100, 0xdeadbeefULL, 1234);
    assert_memory_equal(h.magic, JOURNAL_SEG_MAGIC, 8);
    assert_int_equal(h.version, JOURNAL_SEG_VERSION);
    assert_int_equal(h.hdr_bytes, 64);
    assert_int_equal(h.seq, 3);
    assert_int_equal(h.first_lsn, 100);
    assert_int_equal(h.prev_sum, 0xdeadbeefULL);
    assert_int_equal(h.created_ms, 1234);
    assert_int_equal(h.sum, XXH3_64bits((const uint8_t *)&h + 8, 56));
}

static void test_rec_encode(void **state) {
    (void)state;
    uint8_t out[128];
    memset(out, 0xee, sizeof out);
    journal_rec_encode(out, 3, 42, 0x1122334455667788ULL, "hello", 5);
    journal_rec_hdr h;
    memcpy(&h, out, sizeof h);
    assert_int_equal(h.magic, JOURNAL_REC_MAGIC);
    assert_int_equal(h.len, 48);
    assert_int_equal(h.type, 3);
    assert_int_equal(h.version, JOURNAL_REC_VERSION);
    assert_int_equal(h.payload_len, 5);
    assert_int_equal(h.lsn, 42);
    assert_int_equal(h.prev_sum, 0x1122334455667788ULL);
    assert_memory_equal(out + 40, "hello", 5);
    /* padding is zeroed (it is on disk; stale buffer bytes must not leak into it) */
    assert_int_equal(out[45], 0);
    assert_int_equal(out[46], 0);
    assert_int_equal(out[47], 0);
    assert_int_equal(out[48], 0xee); /* and nothing past the record is written */
    /* the checksum covers the header after it and the payload, prev_sum included */
    assert_int_equal(h.sum, XXH3_64bits(out + 8, 32 + 5));
    uint8_t other[128];
    journal_rec_encode(other, 3, 42, 0x1122334455667789ULL, "hello", 5);
    journal_rec_hdr h2;
    memcpy(&h2, other, sizeof h2);
    assert_true(h2.sum != h.sum);
}

static void test_scan_clean(void **state) {
    (void)state;
    static seg s;
    seg_begin(&s, 1, 1, 0);
    for (int i = 0; i < 20; i++) seg_add(&s, (uint16_t)(1 + i % 6));
    journal_chain ch = {.next_lsn = 1, .prev_sum = 0};
    seen v = {0};
    journal_scan_result r;
    assert_int_equal(journal_scan_segment(s.data, s.size, &ch, collect, &v, &r), 0);
    assert_true(r.clean);
    assert_false(r.valid_after_bad);
    assert_int_equal(r.valid_end, s.size);
    assert_int_equal(v.n, 20);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(v.lsn[i], (uint64_t)i + 1);
        assert_int_equal(v.type[i], 1 + i % 6);
    }
    assert_int_equal(ch.next_lsn, 21);
    assert_int_equal(ch.records, 20);
    assert_int_equal(ch.prev_sum, s.rec_sum[19]);
}

static void test_scan_empty_segment_and_zero_tail(void **state) {
    (void)state;
    static seg s;
    seg_begin(&s, 1, 1, 0);
    journal_chain ch = {.next_lsn = 1};
    journal_scan_result r;
    assert_int_equal(journal_scan_segment(s.data, s.size, &ch, NULL, NULL, &r), 0);
    assert_true(r.clean);
    assert_int_equal(r.valid_end, 64);
    assert_int_equal(ch.records, 0);
    /* preallocated space after the records reads as zeros: a clean end, not a tear */
    seg_add(&s, 1);
    seg_add(&s, 2);
    size_t end = s.size;
    journal_chain ch2 = {.next_lsn = 1};
    assert_int_equal(journal_scan_segment(s.data, end + 4096, &ch2, NULL, NULL, &r), 0);
    assert_true(r.clean);
    assert_int_equal(r.valid_end, end);
    assert_int_equal(ch2.records, 2);
}

static void test_scan_torn_tail(void **state) {
    (void)state;
    static seg s;
    seg_begin(&s, 1, 1, 0);
    for (int i = 0; i < 5; i++) seg_add(&s, 1);
    size_t last = s.rec_off[4];
    /* cut anywhere inside the last record: the four before it are good, the tail is torn */
    for (size_t cut = last + 1; cut < s.size; cut++) {
        journal_chain ch = {.next_lsn = 1};
        seen v = {0};
        journal_scan_result r;
        assert_int_equal(journal_scan_segment(s.data, cut, &ch, collect, &v, &r), 0);
        assert_false(r.clean);
        assert_false(r.valid_after_bad);
        assert_int_equal(r.bad_offset, last);
        assert_int_equal(r.valid_end, last);
        assert_true(r.why[0] != 0);
        assert_int_equal(v.n, 4);
        assert_int_equal(ch.records, 4);
        assert_int_equal(ch.next_lsn, 5);
    }
    /* a record whose second half never reached the disk (zeros in preallocated space) */
    static seg t;
    memcpy(&t, &s, sizeof t);
    size_t half = last + (s.size - last) / 2;
    memset(t.data + half, 0, s.size - half);
    journal_chain ch = {.next_lsn = 1};
    journal_scan_result r;
    assert_int_equal(journal_scan_segment(t.data, s.size + 512, &ch, NULL, NULL, &r), 0);
    assert_false(r.clean);
    assert_false(r.valid_after_bad);
    assert_int_equal(r.bad_offset, last);
    assert_int_equal(ch.records, 4);
}

static void test_scan_corrupt_middle(void **state) {
    (void)state;
    static seg s;
    seg_begin(&s, 1, 1, 0);
    for (int i = 0; i < 6; i++) seg_add(&s, 1);
    /* a flipped bit anywhere in record 3 (header or payload) is found, and the records
     * after it show it is not a torn tail */
    size_t a = s.rec_off[2], b = s.rec_off[3];
    for (size_t pos = a; pos < b; pos++) {
        static seg t;
        memcpy(&t, &s, sizeof t);
        t.data[pos] ^= 0x10;
        journal_rec_hdr h;
        memcpy(&h, t.data + a, sizeof h);
        if (pos >= a + 40 + h.payload_len && pos < b) continue; /* padding: not covered */
        journal_chain ch = {.next_lsn = 1};
        seen v = {0};
        journal_scan_result r;
        assert_int_equal(journal_scan_segment(t.data, t.size, &ch, collect, &v, &r), 0);
        if (r.clean) fail_msg("flipped byte at %zu (record at %zu) not detected", pos, a);
        assert_int_equal(r.bad_offset, a);
        assert_true(r.valid_after_bad);
        assert_int_equal(v.n, 2);
        assert_int_equal(ch.records, 2);
    }
}

static void test_scan_chain_breaks(void **state) {
    (void)state;
    static seg s;
    /* lsn gap: record 3 carries lsn 4 (and a valid checksum) */
    seg_begin(&s, 1, 1, 0);
    seg_add(&s, 1);
    seg_add(&s, 1);
    s.next_lsn++;
    seg_add(&s, 1);
    journal_chain ch = {.next_lsn = 1};
    journal_scan_result r;
    assert_int_equal(journal_scan_segment(s.data, s.size, &ch, NULL, NULL, &r), 0);
    assert_false(r.clean);
    assert_int_equal(r.bad_offset, s.rec_off[2]);
    assert_non_null(strstr(r.why, "lsn"));
    assert_int_equal(ch.records, 2);

    /* Tampering: an old record rewritten with a recomputed checksum. The record itself is
     * self-consistent, but the next record's prev_sum no longer matches it. */
    seg_begin(&s, 1, 1, 0);
    for (int i = 0; i < 4; i++) seg_add(&s, 1);
    journal_rec_hdr h;
    memcpy(&h, s.data + s.rec_off[1], sizeof h);
    s.data[s.rec_off[1] + 40] ^= 0xff; /* change the payload */
    h.sum = XXH3_64bits(s.data + s.rec_off[1] + 8, 32 + h.payload_len);
    memcpy(s.data + s.rec_off[1], &h.sum, 8);
    journal_chain ch2 = {.next_lsn = 1};
    assert_int_equal(journal_scan_segment(s.data, s.size, &ch2, NULL, NULL, &r), 0);
    assert_false(r.clean);
    assert_int_equal(r.bad_offset, s.rec_off[2]);
    assert_non_null(strstr(r.why, "chain"));
    assert_true(r.valid_after_bad);
    assert_int_equal(ch2.records, 2);
}

static void test_scan_header_problems(void **state) {
    (void)state;
    static seg s;
    journal_scan_result r;
    /* shorter than a header */
    seg_begin(&s, 1, 1, 0);
    journal_chain ch = {.next_lsn = 1};
    assert_int_equal(journal_scan_segment(s.data, 30, &ch, NULL, NULL, &r), 0);
    assert_false(r.clean);
    assert_int_equal(r.bad_offset, 0);
    assert_int_equal(r.valid_end, 0);
    assert_int_equal(journal_scan_segment(s.data, 0, &ch, NULL, NULL, &r), 0);
    assert_false(r.clean);
    /* bad magic */
    seg_begin(&s, 1, 1, 0);
    s.data[8] = 'X';
    assert_int_equal(journal_scan_segment(s.data, s.size, &ch, NULL, NULL, &r), 0);
    assert_false(r.clean);
    assert_int_equal(r.valid_end, 0);
    /* the segment does not continue the chain (first_lsn or prev_sum) */
    seg_begin(&s, 2, 10, 0x55);
    journal_chain c9 = {.next_lsn = 9, .prev_sum = 0x55};
    assert_int_equal(journal_scan_segment(s.data, s.size, &c9, NULL, NULL, &r), 0);
    assert_false(r.clean);
    assert_non_null(strstr(r.why, "chain"));
    journal_chain c10 = {.next_lsn = 10, .prev_sum = 0x56};
    assert_int_equal(journal_scan_segment(s.data, s.size, &c10, NULL, NULL, &r), 0);
    assert_false(r.clean);
    journal_chain ok = {.next_lsn = 10, .prev_sum = 0x55};
    assert_int_equal(journal_scan_segment(s.data, s.size, &ok, NULL, NULL, &r), 0);
    assert_true(r.clean);
}

/* A damaged segment header in front of valid records is damage followed by valid records
 * (valid_after_bad), not a torn tail: treating it as torn would throw the records away. */
static void test_scan_bad_header_valid_records_after(void **state) {
    (void)state;
    static seg s;
    seg_begin(&s, 1, 1, 0);
    for (int i = 0; i < 3; i++) seg_add(&s, 1);
    s.data[48] ^= 1; /* created_ms: covered by the header checksum */
    journal_chain ch = {.next_lsn = 1};
    journal_scan_result r;
    assert_int_equal(journal_scan_segment(s.data, s.size, &ch, NULL, NULL, &r), 0);
    assert_false(r.clean);
    assert_int_equal(r.bad_offset, 0);
    assert_true(r.valid_after_bad);
}

static void test_scan_across_segments(void **state) {
    (void)state;
    static seg a, b;
    seg_begin(&a, 1, 1, 0);
    for (int i = 0; i < 3; i++) seg_add(&a, 1);
    seg_begin(&b, 2, a.next_lsn, a.last_sum);
    for (int i = 0; i < 3; i++) seg_add(&b, 2);
    journal_chain ch = {.next_lsn = 1};
    seen v = {0};
    journal_scan_result r;
    assert_int_equal(journal_scan_segment(a.data, a.size, &ch, collect, &v, &r), 0);
    assert_true(r.clean);
    assert_int_equal(journal_scan_segment(b.data, b.size, &ch, collect, &v, &r), 0);
    assert_true(r.clean);
    assert_int_equal(v.n, 6);
    assert_int_equal(v.lsn[5], 6);
    assert_int_equal(ch.records, 6);
    /* the second segment alone, without the first's chain state, does not continue it */
    journal_chain fresh = {.next_lsn = 1};
    assert_int_equal(journal_scan_segment(b.data, b.size, &fresh, NULL, NULL, &r), 0);
    assert_false(r.clean);
}

static void test_scan_callback_stops(void **state) {
    (void)state;
    static seg s;
    seg_begin(&s, 1, 1, 0);
    for (int i = 0; i < 5; i++) seg_add(&s, 1);
    journal_chain ch = {.next_lsn = 1};
    seen v = {.stop_at = 3};
    journal_scan_result r;
    assert_int_equal(journal_scan_segment(s.data, s.size, &ch, collect, &v, &r), 7);
    assert_int_equal(v.n, 3);
}

static void test_scan_bad_lengths(void **state) {
    (void)state;
    static seg s;
    seg_begin(&s, 1, 1, 0);
    seg_add(&s, 1);
    seg_add(&s, 1);
    /* a record claiming a huge payload must not be followed past the segment */
    journal_rec_hdr h;
    memcpy(&h, s.data + s.rec_off[1], sizeof h);
    h.payload_len = 0xfffffff0u;
    memcpy(s.data + s.rec_off[1], &h, sizeof h);
    journal_chain ch = {.next_lsn = 1};
    journal_scan_result r;
    assert_int_equal(journal_scan_segment(s.data, s.size, &ch, NULL, NULL, &r), 0);
    assert_false(r.clean);
    assert_int_equal(r.bad_offset, s.rec_off[1]);
    assert_int_equal(ch.records, 1);
    /* len inconsistent with payload_len */
    seg_begin(&s, 1, 1, 0);
    seg_add(&s, 1);
    seg_add(&s, 1);
    memcpy(&h, s.data + s.rec_off[1], sizeof h);
    h.len += 8;
    memcpy(s.data + s.rec_off[1], &h, sizeof h);
    journal_chain ch2 = {.next_lsn = 1};
    assert_int_equal(journal_scan_segment(s.data, s.size, &ch2, NULL, NULL, &r), 0);
    assert_false(r.clean);
    assert_int_equal(r.bad_offset, s.rec_off[1]);
}

/* A version 2 segment: frames of the given record counts. */
static void seg_begin_v2(seg *s) {
    memset(s, 0, sizeof *s);
    journal_seg_hdr h;
    journal_seg_hdr_make(&h, 1, 1, 0, 1700000000000);
    memcpy(s->data, &h, sizeof h);
    s->size = sizeof h;
    s->next_lsn = 1;
}

static void seg_add_frame(seg *s, int records) {
    size_t at = s->size;
    uint64_t first = s->next_lsn;
    s->size += sizeof(journal_frame);
    for (int i = 0; i < records; i++) seg_add(s, 3);
    journal_frame f;
    uint32_t len = (uint32_t)(s->size + sizeof f - at);
    journal_frame_make(&f, JOURNAL_FRAME_MAGIC, len, first, s->next_lsn - 1, s->last_sum);
    memcpy(s->data + at, &f, sizeof f);
    journal_frame_make(&f, JOURNAL_TRAILER_MAGIC, len, first, s->next_lsn - 1, s->last_sum);
    memcpy(s->data + s->size, &f, sizeof f);
    s->size += sizeof f;
}

typedef struct ahead_seen {
    seen v;
    int announced;    /* records handed to ahead so far */
    uint64_t lsn[64]; /* in that order (payload byte 0 is the record's lsn) */
    int at_apply[64]; /* announced when fn saw lsn i + 1 */
} ahead_seen;

static void ahead_cb(void *ctx, uint16_t type, const uint8_t *payload, uint32_t len) {
    ahead_seen *a = ctx;
    assert_int_equal(type, 3);
    assert_true(len > 0 && a->announced < 64);
    a->lsn[a->announced++] = payload[0];
}

static int ahead_apply(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *payload,
                       uint32_t len) {
    ahead_seen *a = ctx;
    a->at_apply[lsn - 1] = a->announced;
    return collect(&a->v, type, lsn, payload, len);
}

/* The replay's prefetch hint: every record of a whole frame is announced once, in order,
 * JOURNAL_AHEAD records before it is applied (fewer at the frame's end), and nothing of a
 * damaged frame is announced - the hint never runs ahead of the verification. */
static void test_scan_ahead(void **state) {
    (void)state;
    static seg s;
    const int frames[] = {1, 3, 20};
    seg_begin_v2(&s);
    int total = 0;
    for (int i = 0; i < 3; i++) seg_add_frame(&s, frames[i]), total += frames[i];
    size_t bad_frame = s.size;
    seg_add_frame(&s, 4);
    s.data[s.rec_off[total + 2] + 45] ^= 1; /* a payload bit of the damaged frame's third record */
    static ahead_seen a;
    memset(&a, 0, sizeof a);
    journal_chain ch = {.next_lsn = 1, .prev_sum = 0};
    journal_scan_result r;
    assert_int_equal(journal_scan_segment_ahead(s.data, s.size, &ch, ahead_apply, ahead_cb, &a, &r),
                     0);
    assert_false(r.clean);
    assert_true(r.damaged);
    assert_int_equal(r.bad_offset, bad_frame);
    assert_int_equal(a.v.n, total);
    assert_int_equal(a.announced, total); /* none of the damaged frame's records */
    for (int i = 0; i < total; i++) assert_int_equal(a.lsn[i], i + 1);
    int first = 1;
    for (int f = 0; f < 3; f++) {
        int last = first + frames[f] - 1;
        for (int lsn = first; lsn <= last; lsn++) {
            int want = lsn + JOURNAL_AHEAD < last ? lsn + JOURNAL_AHEAD : last;
            assert_int_equal(a.at_apply[lsn - 1], want);
        }
        first = last + 1;
    }
    /* Without a hint the scan is the same. */
    seen v = {0};
    journal_chain ch2 = {.next_lsn = 1, .prev_sum = 0};
    journal_scan_result r2;
    assert_int_equal(journal_scan_segment(s.data, s.size, &ch2, collect, &v, &r2), 0);
    assert_int_equal(v.n, total);
    assert_int_equal(r2.bad_offset, r.bad_offset);
    assert_int_equal(ch2.next_lsn, ch.next_lsn);
}

static void test_seg_names(void **state) {
    (void)state;
    char name[64];
    journal_seg_name(name, sizeof name, 1);
    assert_string_equal(name, "0000000000000001.sgj");
    journal_seg_name(name, sizeof name, 1234567890123456ULL);
    assert_string_equal(name, "1234567890123456.sgj");
    uint64_t seq = 0;
    assert_int_equal(journal_seg_parse_name("0000000000000042.sgj", &seq), 0);
    assert_int_equal(seq, 42);
    assert_int_equal(journal_seg_parse_name("000000000000042.sgj", &seq), -1);
    assert_int_equal(journal_seg_parse_name("00000000000000042.sgj", &seq), -1);
    assert_int_equal(journal_seg_parse_name("0000000000000042.sgk", &seq), -1);
    assert_int_equal(journal_seg_parse_name("000000000000004x.sgj", &seq), -1);
    assert_int_equal(journal_seg_parse_name("0000000000000042.sgj.tmp", &seq), -1);
    assert_int_equal(journal_seg_parse_name(".", &seq), -1);
    assert_int_equal(journal_seg_parse_name("", &seq), -1);
}

static void test_list_segments(void **state) {
    (void)state;
    char dir[64], path[128], name[64];
    unit_mkdtemp(dir, sizeof dir, "jfmt");
    uint64_t want[] = {3, 1, 10, 2};
    for (size_t i = 0; i < 4; i++) {
        journal_seg_name(name, sizeof name, want[i]);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        unit_write_file(path, "");
    }
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    unit_write_file(path, "x");
    snprintf(path, sizeof path, "%s/0000000000000005.sgj.tmp", dir);
    unit_write_file(path, "x");
    uint64_t *seqs = NULL;
    int n = journal_list_segments(dir, &seqs);
    assert_int_equal(n, 4);
    assert_int_equal(seqs[0], 1);
    assert_int_equal(seqs[1], 2);
    assert_int_equal(seqs[2], 3);
    assert_int_equal(seqs[3], 10);
    free(seqs);
    unit_rmtree(dir);
    assert_int_equal(journal_list_segments(dir, &seqs), -ENOENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rec_len),
        cmocka_unit_test(test_seg_hdr),
        cmocka_unit_test(test_rec_encode),
        cmocka_unit_test(test_scan_clean),
        cmocka_unit_test(test_scan_empty_segment_and_zero_tail),
        cmocka_unit_test(test_scan_torn_tail),
        cmocka_unit_test(test_scan_corrupt_middle),
        cmocka_unit_test(test_scan_chain_breaks),
        cmocka_unit_test(test_scan_header_problems),
        cmocka_unit_test(test_scan_bad_header_valid_records_after),
        cmocka_unit_test(test_scan_across_segments),
        cmocka_unit_test(test_scan_callback_stops),
        cmocka_unit_test(test_scan_bad_lengths),
        cmocka_unit_test(test_scan_ahead),
        cmocka_unit_test(test_seg_names),
        cmocka_unit_test(test_list_segments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
