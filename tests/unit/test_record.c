/* Unit tests of record (gateway/core/record.h): the TLV payload of journal records. Every
 * record type round-trips with every field it uses; malformed payloads are refused; unknown
 * tags are skipped (forward compatibility). */
#include "unit.h"

#include "limits.h"
#include "orders.h"
#include "journal_fmt.h"
#include "record.h"

#define S(lit) ((rec_str){(lit), (uint32_t)(sizeof(lit) - 1)})

static void expect_str(rec_str got, rec_str want) {
    assert_int_equal(got.len, want.len);
    if (want.len) assert_memory_equal(got.p, want.p, want.len);
}

static void expect_same(const order_rec *a, const order_rec *b) {
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->state, b->state);
    assert_int_equal(a->order_no, b->order_no);
    assert_int_equal(a->parent_no, b->parent_no);
    assert_int_equal(a->level, b->level);
    assert_int_equal(a->fingerprint, b->fingerprint);
    assert_true(a->amount_minor == b->amount_minor);
    assert_true(a->frozen_minor == b->frozen_minor);
    assert_true(a->ts_ms == b->ts_ms);
    assert_true(a->expires_at_ms == b->expires_at_ms);
    expect_str(a->request_id, b->request_id);
    expect_str(a->bank, b->bank);
    expect_str(a->account, b->account);
    expect_str(a->currency, b->currency);
    expect_str(a->case_id, b->case_id);
    expect_str(a->reason, b->reason);
    expect_str(a->note, b->note);
    expect_str(a->doc, b->doc);
    expect_str(a->agent, b->agent);
    assert_int_equal(a->onward_count, b->onward_count);
    for (uint32_t i = 0; i < a->onward_count; i++) {
        assert_string_equal(a->onward[i].bank, b->onward[i].bank);
        assert_string_equal(a->onward[i].account, b->onward[i].account);
        assert_true(a->onward[i].amount_minor == b->onward[i].amount_minor);
    }
}

static order_rec g_in, g_out;
static uint8_t g_buf[JOURNAL_RECORD_BYTES_MAX];

static int roundtrip(const order_rec *in, order_rec *out) {
    int n = record_encode(in, g_buf, sizeof g_buf);
    assert_true(n >= 0);
    assert_int_equal(record_decode(in->type, g_buf, (size_t)n, out), 0);
    expect_same(in, out);
    assert_true(record_equal(in, out));
    return n;
}

static void fill_order(order_rec *r) {
    memset(r, 0, sizeof *r);
    r->type = REC_ORDER;
    r->kind = KIND_FREEZE;
    r->state = ST_ACCEPTED;
    r->order_no = 42;
    r->parent_no = 7;
    r->level = 3;
    r->fingerprint = 0x0123456789abcdefULL;
    r->amount_minor = AMOUNT_MINOR_MAX;
    r->ts_ms = 1764000000123;
    r->expires_at_ms = 1764172800123;
    r->request_id = S("req-0001");
    r->bank = S("ICBKCNBJ");
    r->account = S("6222020000000001");
    r->currency = S("CNY");
    r->case_id = S("CASE-2026-17");
    r->reason = S("FRAUD");
    r->note = S("victim called at 18:02, \xe5\x8d\x81\xe4\xb8\x87");
    r->doc = S("court order 2026/123");
    r->agent = S("alice");
}

static void test_roundtrip_order(void **state) {
    (void)state;
    fill_order(&g_in);
    roundtrip(&g_in, &g_out);
    /* decoded strings point into the payload (zero copy) */
    assert_true((const uint8_t *)g_out.bank.p >= g_buf &&
                (const uint8_t *)g_out.bank.p < g_buf + sizeof g_buf);
    /* negative amounts and timestamps survive too (the codec must not care about sign) */
    g_in.amount_minor = -5;
    g_in.ts_ms = -1;
    roundtrip(&g_in, &g_out);
}

static void test_roundtrip_merge(void **state) {
    (void)state;
    memset(&g_in, 0, sizeof g_in);
    g_in.type = REC_MERGE;
    g_in.order_no = 5;
    g_in.fingerprint = 99;
    g_in.amount_minor = 250000;
    g_in.ts_ms = 1764000000000;
    g_in.expires_at_ms = 1764000000000 + 172800000;
    g_in.request_id = S("req-merge");
    g_in.case_id = S("CASE-B");
    g_in.doc = S("DOC-1");
    g_in.agent = S("bob");
    roundtrip(&g_in, &g_out);
}

static void test_roundtrip_state_with_onward(void **state) {
    (void)state;
    memset(&g_in, 0, sizeof g_in);
    g_in.type = REC_STATE;
    g_in.order_no = 9;
    g_in.state = ST_FUNDS_MOVED;
    g_in.frozen_minor = 0;
    g_in.ts_ms = 1764000000500;
    g_in.reason = S("MOVED");
    g_in.onward_count = SG_ONWARD_MAX;
    for (uint32_t i = 0; i < SG_ONWARD_MAX; i++) {
        snprintf(g_in.onward[i].bank, sizeof g_in.onward[i].bank, "B%u", i);
        /* longest account a bank may send, an empty bank code in one entry */
        if (i == 0) {
            memset(g_in.onward[i].account, 'A', sizeof g_in.onward[i].account - 1);
            g_in.onward[i].account[sizeof g_in.onward[i].account - 1] = 0;
        } else {
            snprintf(g_in.onward[i].account, sizeof g_in.onward[i].account, "ACC%03u", i);
        }
        if (i == 1) {
            memset(g_in.onward[i].bank, 'Z', sizeof g_in.onward[i].bank - 1);
            g_in.onward[i].bank[sizeof g_in.onward[i].bank - 1] = 0;
        }
        if (i == 2) g_in.onward[i].bank[0] = 0;
        g_in.onward[i].amount_minor = (int64_t)i * 1000 + 1;
    }
    roundtrip(&g_in, &g_out);
    /* the other answers */
    uint8_t states[] = {ST_SENT,      ST_OVERDUE,  ST_CONFIRMED, ST_PARTIAL,
                        ST_NOT_FOUND, ST_REJECTED, ST_EXPIRED};
    for (size_t i = 0; i < sizeof states; i++) {
        memset(&g_in, 0, sizeof g_in);
        g_in.type = REC_STATE;
        g_in.order_no = 9;
        g_in.state = states[i];
        g_in.frozen_minor = 12345;
        g_in.ts_ms = 1764000000500 + (int64_t)i;
        if (states[i] == ST_REJECTED) g_in.reason = S("ACCOUNT_CLOSED");
        roundtrip(&g_in, &g_out);
    }
}

static void test_roundtrip_release_extend_confirm(void **state) {
    (void)state;
    memset(&g_in, 0, sizeof g_in);
    g_in.type = REC_RELEASE;
    g_in.order_no = 3;
    g_in.fingerprint = 7;
    g_in.ts_ms = 1764000001000;
    g_in.request_id = S("rel-1");
    g_in.reason = S("VICTIM_REFUNDED");
    g_in.agent = S("alice");
    roundtrip(&g_in, &g_out);

    memset(&g_in, 0, sizeof g_in);
    g_in.type = REC_EXTEND;
    g_in.order_no = 3;
    g_in.fingerprint = 8;
    g_in.ts_ms = 1764000002000;
    g_in.expires_at_ms = 1764999999999;
    g_in.request_id = S("ext-1");
    g_in.agent = S("alice");
    roundtrip(&g_in, &g_out);

    memset(&g_in, 0, sizeof g_in);
    g_in.type = REC_CONFIRM;
    g_in.order_no = 3;
    g_in.ts_ms = 1764000003000;
    g_in.agent = S("bob");
    roundtrip(&g_in, &g_out);
}

static void test_empty_record(void **state) {
    (void)state;
    memset(&g_in, 0, sizeof g_in);
    g_in.type = REC_CONFIRM;
    assert_int_equal(record_encode(&g_in, g_buf, sizeof g_buf), 0); /* zero fields are left out */
    memset(&g_out, 0xff, sizeof g_out);
    assert_int_equal(record_decode(REC_CONFIRM, g_buf, 0, &g_out), 0);
    expect_same(&g_in, &g_out); /* and decode to zero */
}

static void test_largest_fits(void **state) {
    (void)state;
    /* every field at its limit still fits one journal record */
    static char note[NOTE_LEN_MAX], doc[DOC_LEN_MAX], rid[REQUEST_ID_LEN_MAX], cid[CASE_LEN_MAX];
    static char reason[REASON_LEN_MAX], agent[AGENT_LEN_MAX];
    memset(note, 'n', sizeof note);
    memset(doc, 'd', sizeof doc);
    memset(rid, 'r', sizeof rid);
    memset(cid, 'c', sizeof cid);
    memset(reason, 'e', sizeof reason);
    memset(agent, 'a', sizeof agent);
    fill_order(&g_in);
    g_in.note = (rec_str){note, sizeof note};
    g_in.doc = (rec_str){doc, sizeof doc};
    g_in.request_id = (rec_str){rid, sizeof rid};
    g_in.case_id = (rec_str){cid, sizeof cid};
    g_in.reason = (rec_str){reason, sizeof reason};
    g_in.agent = (rec_str){agent, sizeof agent};
    g_in.account = S("1234567890123456789012345678901234");
    g_in.bank = S("ABCDEFGHIJK");
    int n = roundtrip(&g_in, &g_out);
    assert_true(n + 40 <= JOURNAL_RECORD_BYTES_MAX);
}

static void test_encode_no_room(void **state) {
    (void)state;
    fill_order(&g_in);
    int n = record_encode(&g_in, g_buf, sizeof g_buf);
    assert_true(n > 0);
    for (int cap = 0; cap < n; cap++)
        assert_int_equal(record_encode(&g_in, g_buf, (size_t)cap), -1);
    assert_int_equal(record_encode(&g_in, g_buf, (size_t)n), n);
}

/* Cutting a payload anywhere but between two fields makes it malformed. */
static void test_truncated_rejected(void **state) {
    (void)state;
    fill_order(&g_in);
    g_in.onward_count = 2;
    snprintf(g_in.onward[0].bank, sizeof g_in.onward[0].bank, "BANKA");
    snprintf(g_in.onward[0].account, sizeof g_in.onward[0].account, "X1");
    snprintf(g_in.onward[1].bank, sizeof g_in.onward[1].bank, "BANKB");
    snprintf(g_in.onward[1].account, sizeof g_in.onward[1].account, "Y2");
    int n = record_encode(&g_in, g_buf, sizeof g_buf);
    assert_true(n > 0);
    bool boundary[JOURNAL_RECORD_BYTES_MAX + 1] = {false};
    for (int off = 0; off < n;) {
        boundary[off] = true;
        uint16_t len;
        memcpy(&len, g_buf + off + 1, 2);
        off += 3 + len;
    }
    boundary[n] = true;
    int fields = 0;
    for (int cut = 0; cut <= n; cut++) {
        int rc = record_decode(REC_ORDER, g_buf, (size_t)cut, &g_out);
        if (boundary[cut]) {
            assert_int_equal(rc, 0);
            fields++;
        } else if (rc != -1) {
            fail_msg("payload cut at %d of %d decoded as valid", cut, n);
        }
    }
    assert_true(fields > 15);
}

static size_t tlv(uint8_t *p, uint8_t tag, const void *v, uint16_t n) {
    p[0] = tag;
    memcpy(p + 1, &n, 2);
    if (n) memcpy(p + 3, v, n);
    return 3 + (size_t)n;
}

static void test_malformed_fields(void **state) {
    (void)state;
    uint8_t p[256];
    size_t n;
    /* fixed-size fields with the wrong size: order_no (3) as 4 bytes, kind (1) as 2 bytes,
     * level (5) as 8 bytes, amount (7) as 0 bytes */
    uint64_t v = 1;
    n = tlv(p, 3, &v, 4);
    assert_int_equal(record_decode(REC_STATE, p, n, &g_out), -1);
    n = tlv(p, 1, &v, 2);
    assert_int_equal(record_decode(REC_ORDER, p, n, &g_out), -1);
    n = tlv(p, 5, &v, 8);
    assert_int_equal(record_decode(REC_ORDER, p, n, &g_out), -1);
    n = tlv(p, 7, &v, 0);
    assert_int_equal(record_decode(REC_ORDER, p, n, &g_out), -1);
    /* a length running past the end */
    n = tlv(p, 11, "abc", 3);
    p[1] = 50;
    assert_int_equal(record_decode(REC_ORDER, p, n, &g_out), -1);
    /* one or two stray bytes after the last field */
    n = tlv(p, 11, "abc", 3);
    p[n] = 11;
    assert_int_equal(record_decode(REC_ORDER, p, n + 1, &g_out), -1);
    assert_int_equal(record_decode(REC_ORDER, p, n + 2, &g_out), -1);
}

static void test_malformed_onward(void **state) {
    (void)state;
    uint8_t p[512], v[128];
    int64_t amt = 500;
    size_t n;
    /* shorter than amount + bank length */
    memcpy(v, &amt, 8);
    n = tlv(p, 20, v, 8);
    assert_int_equal(record_decode(REC_STATE, p, n, &g_out), -1);
    /* bank length says more than there is */
    memcpy(v, &amt, 8);
    v[8] = 10;
    memcpy(v + 9, "ABC", 3);
    n = tlv(p, 20, v, 12);
    assert_int_equal(record_decode(REC_STATE, p, n, &g_out), -1);
    /* bank code longer than sg_onward can hold (12 with its NUL) */
    v[8] = 12;
    memcpy(v + 9, "ABCDEFGHIJKL", 12);
    memcpy(v + 21, "ACCT", 4);
    n = tlv(p, 20, v, 25);
    assert_int_equal(record_decode(REC_STATE, p, n, &g_out), -1);
    /* account too long for sg_onward (64 with its NUL) */
    v[8] = 2;
    memcpy(v + 9, "BK", 2);
    memset(v + 11, 'A', 64);
    n = tlv(p, 20, v, 11 + 64);
    assert_int_equal(record_decode(REC_STATE, p, n, &g_out), -1);
    /* a valid one, for contrast */
    n = tlv(p, 20, v, 11 + 63);
    assert_int_equal(record_decode(REC_STATE, p, n, &g_out), 0);
    assert_int_equal(g_out.onward_count, 1);
    assert_string_equal(g_out.onward[0].bank, "BK");
    assert_int_equal(strlen(g_out.onward[0].account), 63);
    assert_true(g_out.onward[0].amount_minor == 500);
    /* more onward entries than SG_ONWARD_MAX */
    static uint8_t big[(SG_ONWARD_MAX + 1) * 20];
    size_t off = 0;
    v[8] = 1;
    memcpy(v + 9, "B", 1);
    memcpy(v + 10, "A", 1);
    for (int i = 0; i < SG_ONWARD_MAX + 1; i++) off += tlv(big + off, 20, v, 11);
    assert_int_equal(record_decode(REC_STATE, big, off, &g_out), -1);
    assert_int_equal(record_decode(REC_STATE, big, off - 14, &g_out), 0);
    assert_int_equal(g_out.onward_count, SG_ONWARD_MAX);
}

static void test_unknown_tags_skipped(void **state) {
    (void)state;
    uint8_t p[128];
    size_t n = 0;
    uint64_t no = 77;
    n += tlv(p + n, 200, "future", 6);
    n += tlv(p + n, 3, &no, 8);
    n += tlv(p + n, 0, NULL, 0);
    n += tlv(p + n, 12, "ICBK", 4);
    assert_int_equal(record_decode(REC_STATE, p, n, &g_out), 0);
    assert_int_equal(g_out.order_no, 77);
    assert_int_equal(g_out.type, REC_STATE);
    expect_str(g_out.bank, S("ICBK"));
}

/* record_equal sees a change in any field: the journal writer's pair assertion relies on it. */
static void test_record_equal_sees_each_field(void **state) {
    (void)state;
    fill_order(&g_in);
    roundtrip(&g_in, &g_out);
    order_rec x = g_out;
    assert_true(record_equal(&g_in, &x));
    x.amount_minor++;
    assert_false(record_equal(&g_in, &x));
    x = g_out;
    char acct[64];
    memcpy(acct, x.account.p, x.account.len);
    acct[x.account.len - 1] ^= 1;
    x.account.p = acct;
    assert_false(record_equal(&g_in, &x));
    x = g_out;
    x.note.len--;
    assert_false(record_equal(&g_in, &x));
    x = g_out;
    x.type = REC_MERGE;
    assert_false(record_equal(&g_in, &x));
}

static void test_type_names(void **state) {
    (void)state;
    assert_string_equal(record_type_name(REC_ORDER), "ORDER");
    assert_string_equal(record_type_name(REC_MERGE), "MERGE");
    assert_string_equal(record_type_name(REC_STATE), "STATE");
    assert_string_equal(record_type_name(REC_RELEASE), "RELEASE");
    assert_string_equal(record_type_name(REC_EXTEND), "EXTEND");
    assert_string_equal(record_type_name(REC_CONFIRM), "CONFIRM");
    assert_string_equal(record_type_name(0), "UNKNOWN");
    assert_string_equal(record_type_name(999), "UNKNOWN");
}

/* Issue 15 item 13: the journal room engine_on_result reserves per answer was 512 bytes, and
 * a FUNDS_MOVED with SG_ONWARD_MAX onward transfers takes ~1.5 KB. The reservation is now
 * computed from the limits; the largest answer a plugin can hand over must fit it exactly. */
static void test_largest_result_fits_reservation(void **state) {
    (void)state;
    static char reason[REASON_LEN_MAX];
    memset(reason, 'R', sizeof reason);
    order_rec r = {.type = REC_STATE,
                   .order_no = UINT64_MAX,
                   .state = 0xff,
                   .frozen_minor = INT64_MAX,
                   .ts_ms = INT64_MAX,
                   .reason = {reason, REASON_LEN_MAX}};
    for (uint32_t i = 0; i < SG_ONWARD_MAX; i++) {
        sg_onward *w = &r.onward[r.onward_count++];
        memset(w->bank, 'B', sizeof w->bank - 1);
        memset(w->account, 'A', sizeof w->account - 1);
        w->amount_minor = -1;
    }
    static uint8_t buf[JOURNAL_RECORD_BYTES_MAX];
    int n = record_encode(&r, buf, sizeof buf - sizeof(journal_rec_hdr));
    assert_true(n > 0);
    assert_int_equal(n, RECORD_RESULT_PAYLOAD_MAX);
    assert_true(JOURNAL_REC_BYTES(n) > 512); /* what the old reservation was */
    assert_true(JOURNAL_REC_BYTES(RECORD_RESULT_PAYLOAD_MAX) <= JOURNAL_RECORD_BYTES_MAX);
    order_rec d;
    assert_int_equal(record_decode(REC_STATE, buf, (size_t)n, &d), 0);
    assert_int_equal(d.onward_count, SG_ONWARD_MAX);
    assert_int_equal(strlen(d.onward[SG_ONWARD_MAX - 1].account), sizeof r.onward[0].account - 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_order),
        cmocka_unit_test(test_roundtrip_merge),
        cmocka_unit_test(test_roundtrip_state_with_onward),
        cmocka_unit_test(test_roundtrip_release_extend_confirm),
        cmocka_unit_test(test_empty_record),
        cmocka_unit_test(test_largest_fits),
        cmocka_unit_test(test_largest_result_fits_reservation),
        cmocka_unit_test(test_encode_no_room),
        cmocka_unit_test(test_truncated_rejected),
        cmocka_unit_test(test_malformed_fields),
        cmocka_unit_test(test_malformed_onward),
        cmocka_unit_test(test_unknown_tags_skipped),
        cmocka_unit_test(test_type_names),
        cmocka_unit_test(test_record_equal_sees_each_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
