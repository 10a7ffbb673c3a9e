/* Unit tests of orders (gateway/core/orders.h): applying ORDER / MERGE / STATE / RELEASE /
 * EXTEND / CONFIRM records, the idempotency (request) index, the account -> live order
 * index, cases, the cascade tree, and the expiry / overdue schedules. */
#include "unit.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "orders.h"
#include "record.h"

#define DEADLINE_MS 5000
#define T0          1764000000000LL /* a wall-clock time in ms */
#define HOUR        (3600LL * 1000)

static orders g_o;
static char g_err[256];

static int setup(void **state) {
    (void)state;
    g_err[0] = 0;
    return orders_init(&g_o, 1024, DEADLINE_MS);
}

static int teardown(void **state) {
    (void)state;
    orders_free(&g_o);
    return 0;
}

static rec_str rs(const char *s) {
    return (rec_str){s, s ? (uint32_t)strlen(s) : 0};
}

static order_rec mk_order(uint64_t no, const char *rid, const char *bank, const char *acct,
                          const char *case_id, int64_t ts, int64_t expires) {
    order_rec r;
    memset(&r, 0, sizeof r);
    r.type = REC_ORDER;
    r.kind = KIND_STOP;
    r.state = ST_ACCEPTED;
    r.order_no = no;
    r.fingerprint = no * 1000 + 7;
    r.amount_minor = 50000;
    r.ts_ms = ts;
    r.expires_at_ms = expires;
    r.request_id = rs(rid);
    r.bank = rs(bank);
    r.account = rs(acct);
    r.currency = rs("CNY");
    r.case_id = rs(case_id);
    r.agent = rs("alice");
    return r;
}

static void apply_ok(const order_rec *r, uint64_t lsn) {
    g_err[0] = 0;
    if (orders_apply(&g_o, r, lsn, g_err, sizeof g_err) != 0)
        fail_msg("%s record refused: %s", record_type_name(r->type), g_err);
}

static void apply_bad(const order_rec *r, uint64_t lsn) {
    g_err[0] = 0;
    assert_int_equal(orders_apply(&g_o, r, lsn, g_err, sizeof g_err), -1);
    assert_true(g_err[0] != 0); /* and it says why */
}

/* Order number `no` as a plain STOP on its own account. */
static void add_simple(uint64_t no, int64_t expires) {
    char rid[32], acct[32];
    snprintf(rid, sizeof rid, "r-%llu", (unsigned long long)no);
    snprintf(acct, sizeof acct, "ACCT%llu", (unsigned long long)no);
    order_rec r = mk_order(no, rid, "BANK", acct, "CASE", T0, expires);
    apply_ok(&r, no);
}

static order_rec mk_state(uint64_t no, uint8_t st, int64_t ts) {
    order_rec r;
    memset(&r, 0, sizeof r);
    r.type = REC_STATE;
    r.order_no = no;
    r.state = st;
    r.ts_ms = ts;
    return r;
}

static void test_init_limits(void **state) {
    (void)state;
    orders o;
    assert_int_equal(orders_init(&o, 0, 1000), -EINVAL);
    assert_int_equal(orders_init(&o, ORDERS_MAX_LIMIT + 1, 1000), -EINVAL);
    assert_int_equal(g_o.n, 0);
    assert_int_equal(orders_next_no(&g_o), 1);
    assert_null(orders_get(&g_o, 0));
    assert_null(orders_get(&g_o, 1));
    assert_true(orders_next_due_ms(&g_o) == INT64_MAX);
}

static void test_apply_order(void **state) {
    (void)state;
    order_rec r =
        mk_order(1, "req-1", "ICBKCNBJ", "6222020000000001", "CASE-1", T0, T0 + 48 * HOUR);
    r.kind = KIND_FREEZE;
    r.level = 0;
    r.reason = rs("FRAUD");
    r.note = rs("victim called");
    r.doc = rs("court 2026/1");
    apply_ok(&r, 11);
    assert_int_equal(orders_next_no(&g_o), 2);
    order *o = orders_get(&g_o, 1);
    assert_non_null(o);
    assert_int_equal(o->no, 1);
    assert_int_equal(o->kind, KIND_FREEZE);
    assert_int_equal(o->state, ST_ACCEPTED);
    assert_true(order_at_ms(&g_o, o, ST_ACCEPTED) == T0);
    assert_true(order_at_ms(&g_o, o, ST_SENT) == 0);
    assert_string_equal(o->bank, "ICBKCNBJ");
    assert_string_equal(o->account, "6222020000000001");
    assert_string_equal(o->currency, "CNY");
    assert_string_equal(o->agent, "alice");
    assert_true(o->amount_minor == 50000);
    assert_true(o->expires_at_ms == T0 + 48 * HOUR);
    assert_int_equal(o->last_lsn, 11);
    assert_string_equal(orders_str(&g_o, o->order_reason_off), "FRAUD");
    assert_string_equal(orders_str(&g_o, o->note_off), "victim called");
    assert_string_equal(orders_str(&g_o, o->doc_off), "court 2026/1");
    assert_string_equal(orders_str(&g_o, o->reason_off), ""); /* no bank reason yet */
    assert_int_equal(g_o.state_count[ST_ACCEPTED], 1);
    assert_int_equal(g_o.state_count[ST_NONE], 0);
    /* idempotency index */
    const request *q = orders_find_request(&g_o, "req-1", 5);
    assert_non_null(q);
    assert_int_equal(q->op, REQ_ORDER);
    assert_int_equal(q->order_no, 1);
    assert_int_equal(q->fingerprint, r.fingerprint);
    assert_int_equal(q->lsn, 11);
    assert_null(orders_find_request(&g_o, "req-2", 5));
    assert_null(orders_find_request(&g_o, "req-", 4)); /* a prefix is another id */
    assert_null(orders_find_request(&g_o, "req-10", 6));
    /* case */
    const case_ent *c = orders_find_case(&g_o, "CASE-1", 6);
    assert_non_null(c);
    assert_int_equal(c->count, 1);
    assert_true(order_has_case(&g_o, o, "CASE-1", 6));
    assert_false(order_has_case(&g_o, o, "CASE-", 5));
    assert_int_equal(o->ncases, 1);
    /* account -> live order */
    assert_ptr_equal(orders_live_on_account(&g_o, "ICBKCNBJ", "6222020000000001", T0 + 1), o);
    assert_true(order_is_live(o, T0));
}

static void test_order_refused(void **state) {
    (void)state;
    order_rec r = mk_order(2, "a", "B", "A1", "C", T0, T0 + HOUR);
    apply_bad(&r, 1); /* order numbers come in sequence from 1 */
    r = mk_order(1, "a", "B", "A1", "C", T0, T0 + HOUR);
    r.kind = 0;
    apply_bad(&r, 1);
    r.kind = 3;
    apply_bad(&r, 1);
    r = mk_order(1, "a", "B", "A1", "C", T0, T0 + HOUR);
    r.state = ST_SENT; /* a new order is ACCEPTED or HELD */
    apply_bad(&r, 1);
    r = mk_order(1, "a", "", "A1", "C", T0, T0 + HOUR);
    apply_bad(&r, 1);
    r = mk_order(1, "a", "ABCDEFGHIJKL", "A1", "C", T0, T0 + HOUR);
    apply_bad(&r, 1);
    r = mk_order(1, "a", "B", "", "C", T0, T0 + HOUR);
    apply_bad(&r, 1);
    r = mk_order(1, "a", "B", "12345678901234567890123456789012345", "C", T0, T0 + HOUR);
    apply_bad(&r, 1);
    assert_int_equal(g_o.n, 0); /* none of those left anything behind */
    r = mk_order(1, "a", "B", "A1", "C", T0, T0 + HOUR);
    apply_ok(&r, 1);
    r = mk_order(1, "b", "B", "A2", "C", T0, T0 + HOUR);
    apply_bad(&r, 2); /* number 1 again */
}

static void test_order_bad_request_id(void **state) {
    (void)state;
    order_rec r = mk_order(1, "dup", "B", "A1", "C", T0, T0 + HOUR);
    apply_ok(&r, 1);
    r = mk_order(2, "dup", "B", "A2", "C", T0, T0 + HOUR);
    apply_bad(&r, 2); /* a request_id journaled twice: the journal is inconsistent */
    assert_non_null(strstr(g_err, "dup"));
}

static void test_order_missing_request_id(void **state) {
    (void)state;
    order_rec r = mk_order(1, "", "B", "A1", "C", T0, T0 + HOUR);
    apply_bad(&r, 1);
}

static void test_held_then_confirm(void **state) {
    (void)state;
    order_rec r = mk_order(1, "h", "B", "PAYROLL1", "C", T0, T0 + HOUR);
    r.state = ST_HELD;
    apply_ok(&r, 1);
    order *o = orders_get(&g_o, 1);
    assert_int_equal(o->state, ST_HELD);
    assert_true(order_at_ms(&g_o, o, ST_HELD) == T0);
    assert_true(order_at_ms(&g_o, o, ST_ACCEPTED) == T0); /* a HELD order was accepted too */
    assert_true(order_is_live(o, T0));        /* it holds the account: a second STOP merges */
    assert_int_equal(g_o.state_count[ST_HELD], 1);
    order_rec c;
    memset(&c, 0, sizeof c);
    c.type = REC_CONFIRM;
    c.order_no = 1;
    c.ts_ms = T0 + 100;
    apply_ok(&c, 2);
    assert_int_equal(o->state, ST_ACCEPTED);
    assert_int_equal(o->last_lsn, 2);
    assert_int_equal(g_o.state_count[ST_HELD], 0);
    assert_int_equal(g_o.state_count[ST_ACCEPTED], 1);
}

static order_rec mk_merge(uint64_t no, const char *rid, const char *case_id, int64_t amount,
                          int64_t expires) {
    order_rec m;
    memset(&m, 0, sizeof m);
    m.type = REC_MERGE;
    m.order_no = no;
    m.fingerprint = 4242;
    m.request_id = rs(rid);
    m.case_id = rs(case_id);
    m.amount_minor = amount;
    m.ts_ms = T0 + 10;
    m.expires_at_ms = expires;
    m.agent = rs("bob");
    return m;
}

static void test_merge(void **state) {
    (void)state;
    order_rec r = mk_order(1, "first", "B", "A1", "CASE-A", T0, T0 + HOUR);
    apply_ok(&r, 1);
    order *o = orders_get(&g_o, 1);
    order_rec m = mk_merge(1, "second", "CASE-B", 90000, T0 + 2 * HOUR);
    m.doc = rs("DOC-9");
    apply_ok(&m, 2);
    assert_int_equal(g_o.n, 1); /* no new order */
    assert_true(o->amount_minor == 90000);
    assert_true(o->expires_at_ms == T0 + 2 * HOUR);
    assert_int_equal(o->last_lsn, 2);
    assert_string_equal(orders_str(&g_o, o->doc_off), "DOC-9");
    assert_int_equal(o->ncases, 2);
    assert_true(order_has_case(&g_o, o, "CASE-A", 6));
    assert_true(order_has_case(&g_o, o, "CASE-B", 6));
    const request *q = orders_find_request(&g_o, "second", 6);
    assert_non_null(q);
    assert_int_equal(q->op, REQ_MERGE);
    assert_int_equal(q->order_no, 1);
    assert_int_equal(q->fingerprint, 4242);
    assert_int_equal(q->lsn, 2);
    assert_int_equal(orders_find_case(&g_o, "CASE-B", 6)->count, 1);
    /* the same case again is not added twice; an earlier expiry does not shorten the order */
    order_rec m2 = mk_merge(1, "third", "CASE-A", 90000, T0 + HOUR);
    apply_ok(&m2, 3);
    assert_int_equal(o->ncases, 2);
    assert_int_equal(orders_find_case(&g_o, "CASE-A", 6)->count, 1);
    assert_true(o->expires_at_ms == T0 + 2 * HOUR);
    /* the old expiry is now stale: nothing expires at T0 + 1 h */
    assert_int_equal(orders_next_expired(&g_o, T0 + HOUR), 0);
    assert_int_equal(orders_next_expired(&g_o, T0 + 2 * HOUR), 1);
    /* the same request_id twice, or a merge into no order, contradicts the journal */
    order_rec m3 = mk_merge(1, "second", "CASE-C", 1, T0);
    apply_bad(&m3, 4);
    order_rec m4 = mk_merge(7, "fourth", "CASE-C", 1, T0);
    apply_bad(&m4, 4);
}

static void test_case_limit(void **state) {
    (void)state;
    order_rec r = mk_order(1, "o", "B", "A1", "C0", T0, T0 + HOUR);
    apply_ok(&r, 1);
    char rid[16], cid[16];
    for (int i = 1; i < ORDER_CASES_MAX; i++) {
        snprintf(rid, sizeof rid, "m%d", i);
        snprintf(cid, sizeof cid, "C%d", i);
        order_rec m = mk_merge(1, rid, cid, 1, T0 + HOUR);
        apply_ok(&m, (uint64_t)i + 1);
    }
    assert_int_equal(orders_get(&g_o, 1)->ncases, ORDER_CASES_MAX);
    order_rec m = mk_merge(1, "one-more", "C-LAST", 1, T0 + HOUR);
    apply_bad(&m, 100);
    assert_false(order_has_case(&g_o, orders_get(&g_o, 1), "C-LAST", 6));
}

static void test_case_orders_in_order(void **state) {
    (void)state;
    for (uint64_t no = 1; no <= 5; no++) {
        char rid[16], acct[16];
        snprintf(rid, sizeof rid, "r%llu", (unsigned long long)no);
        snprintf(acct, sizeof acct, "A%llu", (unsigned long long)no);
        order_rec r = mk_order(no, rid, "B", acct, no % 2 ? "ODD" : "EVEN", T0, T0 + HOUR);
        apply_ok(&r, no);
    }
    const case_ent *c = orders_find_case(&g_o, "ODD", 3);
    assert_non_null(c);
    assert_int_equal(c->count, 3);
    uint32_t want[] = {1, 3, 5}, i = 0;
    for (uint32_t l = c->orders_head; l; l = g_o.links[l].next) {
        assert_true(i < 3);
        assert_int_equal(g_o.links[l].val, want[i++]);
    }
    assert_int_equal(i, 3);
    assert_int_equal(orders_find_case(&g_o, "EVEN", 4)->count, 2);
    assert_null(orders_find_case(&g_o, "NONE", 4));
    assert_null(orders_find_case(&g_o, "OD", 2));
}

static void test_state_and_overdue(void **state) {
    (void)state;
    add_simple(1, T0 + 48 * HOUR);
    add_simple(2, T0 + 48 * HOUR);
    add_simple(3, T0 + 48 * HOUR); /* never delivered (plugin cannot reach its bank) */
    order_rec s = mk_state(1, ST_SENT, T0 + 100);
    apply_ok(&s, 4);
    s = mk_state(2, ST_SENT, T0 + 200);
    apply_ok(&s, 5);
    order *o1 = orders_get(&g_o, 1), *o2 = orders_get(&g_o, 2), *o3 = orders_get(&g_o, 3);
    assert_int_equal(o1->state, ST_SENT);
    assert_true(order_at_ms(&g_o, o1, ST_SENT) == T0 + 100);
    assert_int_equal(o1->last_lsn, 4);
    assert_int_equal(g_o.state_count[ST_SENT], 2);
    assert_int_equal(g_o.state_count[ST_ACCEPTED], 1);
    /* The deadline runs from acceptance (T0), delivered or not. */
    assert_true(orders_next_due_ms(&g_o) == T0 + DEADLINE_MS);
    assert_int_equal(orders_next_overdue(&g_o, T0 + DEADLINE_MS - 1), 0);
    /* order 2 is answered in time: orders 1 and 3 (still ACCEPTED) go overdue */
    s = mk_state(2, ST_CONFIRMED, T0 + 300);
    s.frozen_minor = 50000;
    apply_ok(&s, 6);
    uint32_t a = orders_next_overdue(&g_o, T0 + DEADLINE_MS),
             b = orders_next_overdue(&g_o, T0 + DEADLINE_MS);
    assert_int_equal(a + b, 4);
    assert_true(a == 1 || a == 3);
    assert_int_equal(orders_next_overdue(&g_o, T0 + DEADLINE_MS), 0); /* popped once */
    assert_int_equal(orders_next_overdue(&g_o, T0 + 10 * DEADLINE_MS), 0);
    s = mk_state(1, ST_OVERDUE, T0 + DEADLINE_MS);
    apply_ok(&s, 7);
    s = mk_state(3, ST_OVERDUE, T0 + DEADLINE_MS);
    apply_ok(&s, 8);
    assert_int_equal(o1->state, ST_OVERDUE);
    assert_int_equal(o3->state, ST_OVERDUE);
    assert_true(order_is_live(o1, T0 + HOUR)); /* still retried, still holds the account */
    assert_true(o2->frozen_minor == 50000);
    assert_int_equal(o2->answer_state, ST_CONFIRMED);
    assert_true(order_at_ms(&g_o, o2, ST_CONFIRMED) == T0 + 300);
    /* the overdue schedule is empty again until a re-send is scheduled */
    assert_true(orders_next_due_ms(&g_o) == T0 + 48 * HOUR);
    assert_int_equal(orders_schedule_resend(&g_o, o3, T0 + 3 * DEADLINE_MS), 0);
    assert_int_equal(orders_next_overdue(&g_o, T0 + 3 * DEADLINE_MS), 3);
}

static void test_state_refused(void **state) {
    (void)state;
    add_simple(1, T0 + HOUR);
    order_rec s = mk_state(1, ST_ACCEPTED, T0);
    apply_bad(&s, 2); /* ACCEPTED comes only with the ORDER (or CONFIRM) */
    s = mk_state(1, ST_NONE, T0);
    apply_bad(&s, 2);
    s = mk_state(1, ST__COUNT, T0);
    apply_bad(&s, 2);
    s = mk_state(2, ST_SENT, T0);
    apply_bad(&s, 2); /* no such order */
    s = mk_state(0, ST_SENT, T0);
    apply_bad(&s, 2);
    assert_int_equal(orders_get(&g_o, 1)->state, ST_ACCEPTED);
    order_rec u;
    memset(&u, 0, sizeof u);
    u.type = 99;
    u.order_no = 1;
    apply_bad(&u, 2);
}

static void test_answers(void **state) {
    (void)state;
    static const struct {
        uint8_t st;
        bool live;
    } cases[] = {
        {ST_CONFIRMED, true}, {ST_PARTIAL, true},      {ST_NOT_FOUND, false},
        {ST_REJECTED, false}, {ST_FUNDS_MOVED, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t no = i + 1;
        add_simple(no, T0 + HOUR);
        order_rec s = mk_state(no, ST_SENT, T0 + 1);
        apply_ok(&s, 100 + no);
        s = mk_state(no, cases[i].st, T0 + 2);
        s.frozen_minor = (int64_t)no * 10;
        if (cases[i].st == ST_REJECTED) s.reason = rs("ACCOUNT_CLOSED");
        if (cases[i].st == ST_FUNDS_MOVED) {
            s.frozen_minor = 0;
            s.onward_count = 2;
            snprintf(s.onward[0].bank, sizeof s.onward[0].bank, "BANKX");
            snprintf(s.onward[0].account, sizeof s.onward[0].account, "ACCTM000");
            s.onward[0].amount_minor = 45000;
            snprintf(s.onward[1].bank, sizeof s.onward[1].bank, "BANKY");
            snprintf(s.onward[1].account, sizeof s.onward[1].account, "ACCTT000");
            s.onward[1].amount_minor = 5000;
        }
        apply_ok(&s, 200 + no);
        order *o = orders_get(&g_o, no);
        assert_int_equal(o->state, cases[i].st);
        assert_int_equal(o->answer_state, cases[i].st);
        assert_true(order_at_ms(&g_o, o, cases[i].st) == T0 + 2);
        assert_true(o->frozen_minor == s.frozen_minor);
        if (order_is_live(o, T0 + 3) != cases[i].live)
            fail_msg("%s: live is wrong", order_state_name(cases[i].st));
        char acct[32];
        snprintf(acct, sizeof acct, "ACCT%llu", (unsigned long long)no);
        order *live = orders_live_on_account(&g_o, "BANK", acct, T0 + 3);
        if (cases[i].live)
            assert_ptr_equal(live, o);
        else
            assert_null(live);
    }
    order *rej = orders_get(&g_o, 4);
    assert_string_equal(orders_str(&g_o, rej->reason_off), "ACCOUNT_CLOSED");
    order *fm = orders_get(&g_o, 5);
    assert_int_equal(fm->onward_count, 2);
    const sg_onward *ow = orders_onward(&g_o, fm);
    assert_non_null(ow);
    assert_string_equal(ow[0].bank, "BANKX");
    assert_string_equal(ow[0].account, "ACCTM000");
    assert_true(ow[0].amount_minor == 45000);
    assert_string_equal(ow[1].account, "ACCTT000");
    assert_true(ow[1].amount_minor == 5000);
    assert_null(orders_onward(&g_o, orders_get(&g_o, 1)));
    assert_int_equal(g_o.state_count[ST_SENT], 0);
    assert_int_equal(g_o.state_count[ST_CONFIRMED], 1);
    assert_int_equal(g_o.state_count[ST_FUNDS_MOVED], 1);
}

static void test_release(void **state) {
    (void)state;
    add_simple(1, T0 + HOUR);
    order_rec r;
    memset(&r, 0, sizeof r);
    r.type = REC_RELEASE;
    r.order_no = 1;
    r.request_id = rs("rel-1");
    r.fingerprint = 77;
    r.reason = rs("REFUNDED");
    r.ts_ms = T0 + 500;
    apply_ok(&r, 2);
    order *o = orders_get(&g_o, 1);
    assert_int_equal(o->state, ST_RELEASED);
    assert_true(order_at_ms(&g_o, o, ST_RELEASED) == T0 + 500);
    assert_int_equal(o->last_lsn, 2);
    assert_false(order_is_live(o, T0 + 600));
    assert_null(orders_live_on_account(&g_o, "BANK", "ACCT1", T0 + 600));
    const request *q = orders_find_request(&g_o, "rel-1", 5);
    assert_non_null(q);
    assert_int_equal(q->op, REQ_RELEASE);
    assert_int_equal(q->order_no, 1);
    assert_int_equal(q->fingerprint, 77);
    /* a released order does not expire later */
    assert_int_equal(orders_next_expired(&g_o, T0 + 2 * HOUR), 0);
    /* the same release request twice contradicts the journal */
    apply_bad(&r, 3);
    /* a new order on the account after the release is the live one */
    order_rec n = mk_order(2, "again", "BANK", "ACCT1", "CASE", T0 + 700, T0 + HOUR);
    apply_ok(&n, 4);
    assert_ptr_equal(orders_live_on_account(&g_o, "BANK", "ACCT1", T0 + 800), orders_get(&g_o, 2));
}

static void test_extend(void **state) {
    (void)state;
    add_simple(1, T0 + HOUR);
    order_rec e;
    memset(&e, 0, sizeof e);
    e.type = REC_EXTEND;
    e.order_no = 1;
    e.request_id = rs("ext-1");
    e.expires_at_ms = T0 + 10 * HOUR;
    e.ts_ms = T0 + 30;
    apply_ok(&e, 2);
    order *o = orders_get(&g_o, 1);
    assert_true(o->expires_at_ms == T0 + 10 * HOUR);
    assert_int_equal(o->last_lsn, 2);
    assert_int_equal(orders_find_request(&g_o, "ext-1", 5)->op, REQ_EXTEND);
    /* live past the old expiry, and the old schedule entry is stale */
    assert_ptr_equal(orders_live_on_account(&g_o, "BANK", "ACCT1", T0 + 2 * HOUR), o);
    assert_int_equal(orders_next_expired(&g_o, T0 + 2 * HOUR), 0);
    assert_int_equal(orders_next_overdue(&g_o, T0 + 2 * HOUR),
                     1); /* no bank answer: its deadline */
    assert_true(orders_next_due_ms(&g_o) == T0 + 10 * HOUR);
    assert_int_equal(orders_next_expired(&g_o, T0 + 10 * HOUR), 1);
    apply_bad(&e, 3); /* same request_id */
}

static void test_expiry(void **state) {
    (void)state;
    add_simple(1, T0 + HOUR);
    order *o = orders_get(&g_o, 1);
    assert_true(order_is_live(o, T0 + HOUR - 1));
    assert_false(order_is_live(o, T0 + HOUR)); /* expires_at is the first instant it is not */
    assert_null(orders_live_on_account(&g_o, "BANK", "ACCT1", T0 + HOUR));
    assert_int_equal(orders_next_expired(&g_o, T0 + HOUR - 1), 0);
    assert_int_equal(orders_next_expired(&g_o, T0 + HOUR), 1);
    order_rec s = mk_state(1, ST_EXPIRED, T0 + HOUR);
    apply_ok(&s, 2);
    assert_int_equal(o->state, ST_EXPIRED);
    assert_true(order_at_ms(&g_o, o, ST_EXPIRED) == T0 + HOUR);
    assert_int_equal(orders_next_expired(&g_o, INT64_MAX), 0);
}

/* The expiry schedule is a heap: orders come out in expiry order, each once. */
static void test_expiry_heap_order(void **state) {
    (void)state;
    enum {
        N = 500
    };
    uint32_t seed = 777;
    int64_t min = INT64_MAX;
    for (uint64_t no = 1; no <= N; no++) {
        seed = seed * 1103515245u + 12345u;
        int64_t exp = T0 + 1000 + (int64_t)((seed >> 8) % 100000);
        if (exp < min) min = exp;
        add_simple(no, exp);
    }
    /* some are released before they expire: they must be skipped */
    for (uint64_t no = 10; no <= N; no += 10) {
        order_rec r;
        memset(&r, 0, sizeof r);
        r.type = REC_RELEASE;
        r.order_no = no;
        char rid[16];
        snprintf(rid, sizeof rid, "rel%llu", (unsigned long long)no);
        r.request_id = rs(rid);
        r.ts_ms = T0;
        apply_ok(&r, 1000 + no);
    }
    assert_true(orders_next_due_ms(&g_o) == min);
    static bool seen[N + 1];
    memset(seen, 0, sizeof seen);
    int64_t last = INT64_MIN;
    int count = 0;
    uint32_t no;
    while ((no = orders_next_expired(&g_o, T0 + 200000)) != 0) {
        assert_true(no >= 1 && no <= N);
        assert_false(seen[no]);
        assert_true(no % 10 != 0);
        seen[no] = true;
        int64_t exp = orders_get(&g_o, no)->expires_at_ms;
        assert_true(exp >= last);
        last = exp;
        count++;
    }
    assert_int_equal(count, N - N / 10);
    while (orders_next_overdue(&g_o, T0 + 200000)) {
    } /* the bank deadlines of the unanswered ones */
    assert_true(orders_next_due_ms(&g_o) == INT64_MAX);
}

static void test_account_index(void **state) {
    (void)state;
    order_rec a = mk_order(1, "r1", "AB", "C1", "K", T0, T0 + HOUR);
    apply_ok(&a, 1);
    /* (bank, account) is one key: "AB"+"C1" is not "A"+"BC1" */
    order_rec b = mk_order(2, "r2", "A", "BC1", "K", T0, T0 + HOUR);
    apply_ok(&b, 2);
    assert_ptr_equal(orders_live_on_account(&g_o, "AB", "C1", T0), orders_get(&g_o, 1));
    assert_ptr_equal(orders_live_on_account(&g_o, "A", "BC1", T0), orders_get(&g_o, 2));
    assert_null(orders_live_on_account(&g_o, "AB", "C2", T0));
    assert_null(orders_live_on_account(&g_o, "ABC", "1", T0));
    /* once the live order is answered NOT_FOUND, the account has no live order */
    order_rec s = mk_state(1, ST_SENT, T0 + 1);
    apply_ok(&s, 3);
    s = mk_state(1, ST_NOT_FOUND, T0 + 2);
    apply_ok(&s, 4);
    assert_null(orders_live_on_account(&g_o, "AB", "C1", T0 + 3));
    /* the next order on the account takes its place in the index */
    order_rec c = mk_order(3, "r3", "AB", "C1", "K", T0 + 4, T0 + HOUR);
    apply_ok(&c, 5);
    assert_ptr_equal(orders_live_on_account(&g_o, "AB", "C1", T0 + 5), orders_get(&g_o, 3));
}

static void test_cascade_tree(void **state) {
    (void)state;
    add_simple(1, T0 + HOUR);
    for (uint64_t no = 2; no <= 4; no++) {
        char rid[16], acct[16];
        snprintf(rid, sizeof rid, "c%llu", (unsigned long long)no);
        snprintf(acct, sizeof acct, "M00%llu", (unsigned long long)no);
        order_rec r = mk_order(no, rid, "BANK", acct, "CASE", T0 + 5, T0 + HOUR);
        r.parent_no = 1;
        r.level = 1;
        apply_ok(&r, no);
    }
    order_rec g = mk_order(5, "c5", "BANK", "M009", "CASE", T0 + 6, T0 + HOUR);
    g.parent_no = 3;
    g.level = 2;
    apply_ok(&g, 5);
    order *root = orders_get(&g_o, 1);
    assert_int_equal(root->first_child, 2);
    assert_int_equal(root->last_child, 4);
    uint32_t kids[3], n = 0;
    for (uint32_t c = root->first_child; c; c = orders_get(&g_o, c)->next_sibling) kids[n++] = c;
    assert_int_equal(n, 3);
    assert_int_equal(kids[0], 2);
    assert_int_equal(kids[1], 3);
    assert_int_equal(kids[2], 4);
    order *o3 = orders_get(&g_o, 3);
    assert_int_equal(o3->parent_no, 1);
    assert_int_equal(o3->level, 1);
    assert_int_equal(o3->first_child, 5);
    assert_int_equal(orders_get(&g_o, 5)->level, 2);
    assert_int_equal(orders_get(&g_o, 5)->parent_no, 3);
    assert_int_equal(orders_find_case(&g_o, "CASE", 4)->count, 5);
    /* a child naming an order that does not exist */
    order_rec bad = mk_order(6, "c6", "BANK", "X", "CASE", T0, T0 + HOUR);
    bad.parent_no = 99;
    apply_bad(&bad, 6);
}

/* Room is checked before journaling: once max_orders orders exist, no new ORDER fits (the
 * caller answers ERR TOOBIG), while records about existing orders still do. 1024 is the
 * smallest max_orders the config allows. */
static void test_room(void **state) {
    (void)state;
    for (uint64_t no = 1; no <= 1024; no++) {
        if (!orders_room(&g_o, REC_ORDER))
            fail_msg("no room for order %llu of 1024", (unsigned long long)no);
        add_simple(no, T0 + HOUR);
    }
    assert_false(orders_room(&g_o, REC_ORDER));
    assert_true(orders_room(&g_o, REC_STATE));
    assert_true(orders_room(&g_o, REC_MERGE));
    order_rec r = mk_order(1025, "r-1025", "BANK", "ACCT1025", "CASE", T0, T0 + HOUR);
    apply_bad(&r, 1025);
    /* the indexes still answer after being filled to the limit */
    assert_int_equal(orders_find_request(&g_o, "r-1000", 6)->order_no, 1000);
    assert_ptr_equal(orders_live_on_account(&g_o, "BANK", "ACCT777", T0), orders_get(&g_o, 777));
}

/* A cascade child joins every case of its parent: with a parent in ORDER_CASES_MAX cases, one
 * ORDER record takes 2 x ORDER_CASES_MAX links. orders_room() must reserve that much, or the
 * apply of a journaled child runs out of links (an assert today, lost state in a release
 * build). Before the fix it reserved 2. */
static void test_room_for_cascade_child(void **state) {
    (void)state;
    uint64_t lsn = 1;
    order_rec p = mk_order(1, "parent", "BANK", "PARENT", "C-0", T0, T0 + HOUR);
    apply_ok(&p, lsn++);
    char rid[32], cid[32], acct[32];
    for (int i = 1; i < ORDER_CASES_MAX; i++) {
        snprintf(rid, sizeof rid, "m-%d", i);
        snprintf(cid, sizeof cid, "C-%d", i);
        order_rec m = mk_merge(1, rid, cid, 1, T0 + HOUR);
        apply_ok(&m, lsn++);
    }
    assert_int_equal(orders_get(&g_o, 1)->ncases, ORDER_CASES_MAX);
    order_rec plain = mk_order(2, "plain", "BANK", "PLAIN", "C-PLAIN", T0, T0 + HOUR);
    apply_ok(&plain, lsn++); /* 2 links: the links left are no multiple of a child's */
    /* Children, each in all 32 cases, while the room check says one fits. */
    uint64_t no = 3;
    for (;; no++) {
        if (!orders_room(&g_o, REC_ORDER)) break;
        snprintf(rid, sizeof rid, "c-%llu", (unsigned long long)no);
        snprintf(acct, sizeof acct, "CHILD%llu", (unsigned long long)no);
        order_rec c = mk_order(no, rid, "BANK", acct, "C-0", T0, T0 + HOUR);
        c.parent_no = 1;
        c.level = 1;
        uint32_t before = g_o.nlinks;
        apply_ok(&c, lsn++);
        assert_int_equal(orders_get(&g_o, no)->ncases, ORDER_CASES_MAX);
        assert_int_equal(g_o.nlinks - before, 2 * ORDER_CASES_MAX);
        assert_true(g_o.nlinks <= g_o.max_links);
    }
    /* It stopped for want of links, with fewer left than a child takes. */
    assert_true(g_o.n < g_o.max_orders);
    assert_true(g_o.max_links - g_o.nlinks < 2 * ORDER_CASES_MAX);
    /* A plain ORDER with a few links left is refused too (the caller answers ERR TOOBIG);
     * a record about an existing order still fits. */
    assert_false(orders_room(&g_o, REC_ORDER));
    assert_true(orders_room(&g_o, REC_STATE));
}

/* Prefaulting makes the indexes resident without changing what they hold. */
static void test_prefault(void **state) {
    (void)state;
    add_simple(1, T0 + HOUR);
    size_t bytes = orders_prefault(&g_o);
    size_t want =
        (g_o.req_idx.mask + 1 + g_o.case_idx.mask + 1 + g_o.acct_idx.mask + 1) * sizeof(htab_slot);
    assert_int_equal(bytes, want);
    assert_int_equal(orders_find_request(&g_o, "r-1", 3)->order_no, 1);
    assert_null(orders_find_request(&g_o, "r-2", 3));
    add_simple(2, T0 + HOUR);
    assert_int_equal(orders_find_request(&g_o, "r-2", 3)->order_no, 2);
}

/* The VmFlags line of the mapping holding p, from /proc/self/smaps ("" when not found). */
static void vm_flags_of(const void *p, char *out, size_t cap) {
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    bool in = false;
    out[0] = 0;
    assert_non_null(f);
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, cap, "%s", line);
            break;
        }
    }
    fclose(f);
}

/* Replay mode: prefetch hints change nothing (not even for records apply refuses), huge pages
 * while replaying, and afterwards the tables' unused part is back on small pages so that the
 * live path never waits for a huge page. */
static void test_replay_mode(void **state) {
    (void)state;
    orders_free(&g_o);
    assert_int_equal(orders_init(&g_o, 65536, DEADLINE_MS), 0); /* tables of many huge pages */
    orders_replay_begin(&g_o);
    order_rec r = mk_order(1, "r-1", "ICBC", "A1", "C-1", T0, T0 + HOUR);
    orders_prefetch(&g_o, &r);
    apply_ok(&r, 1);
    order_rec bad = mk_order(2, "r-2", "ICBCICBCICBCICBC", "A2", "C-1", T0, T0 + HOUR);
    orders_prefetch(&g_o, &bad); /* bank too long: refused by apply, harmless here */
    order_rec st = mk_state(99, ST_SENT, T0 + 1);
    orders_prefetch(&g_o, &st); /* an unknown order */
    assert_int_equal(g_o.n, 1);
    st = mk_state(1, ST_SENT, T0 + 1);
    orders_prefetch(&g_o, &st);
    apply_ok(&st, 2);
    orders_replay_end(&g_o);
    assert_int_equal(orders_get(&g_o, 1)->state, ST_SENT);
    assert_int_equal(orders_find_request(&g_o, "r-1", 3)->order_no, 1);
    assert_ptr_equal(orders_latest_on_account(&g_o, "ICBC", "A1"), orders_get(&g_o, 1));
    if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) == 0) {
        char head[512], tail[512];
        vm_flags_of(&g_o.v[1], head, sizeof head);
        vm_flags_of(&g_o.v[g_o.max_orders], tail, sizeof tail);
        assert_non_null(strstr(head, " hg"));
        assert_non_null(strstr(tail, " nh"));
        assert_null(strstr(tail, " hg"));
    }
    add_simple(2, T0 + HOUR); /* the live path goes on after replay */
    assert_int_equal(orders_find_request(&g_o, "r-2", 3)->order_no, 2);
}

static void test_ids_and_names(void **state) {
    (void)state;
    char id[32];
    order_id_format(id, sizeof id, 17);
    assert_string_equal(id, "SG-17");
    assert_int_equal(order_id_parse("SG-17", 5), 17);
    assert_int_equal(order_id_parse("sg-17", 5), 17);
    assert_int_equal(order_id_parse("SG-4294967295", 13), 4294967295u);
    assert_int_equal(order_id_parse("SG-4294967296", 13), 0);
    assert_int_equal(order_id_parse("SG-", 3), 0);
    assert_int_equal(order_id_parse("SG-1x", 5), 0);
    assert_int_equal(order_id_parse("SX-1", 4), 0);
    assert_int_equal(order_id_parse("SG_1", 4), 0);
    assert_int_equal(order_id_parse("17", 2), 0);
    assert_int_equal(order_id_parse("SG-17", 4), 1); /* only len bytes count */
    for (int st = ST_ACCEPTED; st < ST__COUNT; st++)
        assert_int_equal(order_state_parse(order_state_name((uint8_t)st)), st);
    assert_string_equal(order_state_name(ST_FUNDS_MOVED), "FUNDS_MOVED");
    assert_string_equal(order_state_name(ST_NOT_FOUND), "NOT_FOUND");
    assert_string_equal(order_state_name(200), "UNKNOWN");
    assert_int_equal(order_state_parse("NONE"), -1);
    assert_int_equal(order_state_parse("confirmed"), -1);
    assert_int_equal(order_state_parse(""), -1);
    assert_string_equal(order_kind_name(KIND_STOP), "STOP");
    assert_string_equal(order_kind_name(KIND_FREEZE), "FREEZE");
    assert_string_equal(order_kind_name(0), "UNKNOWN");
}

/* Replay applies records decoded from the journal: the state must be the same as when the
 * records were applied live. */
static void test_apply_decoded_records(void **state) {
    (void)state;
    orders live;
    assert_int_equal(orders_init(&live, 64, DEADLINE_MS), 0);
    order_rec recs[4];
    recs[0] = mk_order(1, "q1", "ICBK", "6222", "CASE-9", T0, T0 + HOUR);
    recs[0].note = rs("n");
    recs[1] = mk_merge(1, "q2", "CASE-10", 70000, T0 + 2 * HOUR);
    recs[2] = mk_state(1, ST_SENT, T0 + 5);
    recs[3] = mk_state(1, ST_PARTIAL, T0 + 9);
    recs[3].frozen_minor = 35000;
    char err[256];
    for (int i = 0; i < 4; i++) {
        assert_int_equal(orders_apply(&live, &recs[i], (uint64_t)i + 1, err, sizeof err), 0);
        uint8_t buf[JOURNAL_RECORD_BYTES_MAX];
        int n = record_encode(&recs[i], buf, sizeof buf);
        assert_true(n >= 0);
        order_rec d;
        assert_int_equal(record_decode(recs[i].type, buf, (size_t)n, &d), 0);
        /* apply_ok copies what it needs: the payload buffer may go away after */
        apply_ok(&d, (uint64_t)i + 1);
    }
    order *a = orders_get(&live, 1), *b = orders_get(&g_o, 1);
    assert_int_equal(a->state, b->state);
    assert_true(a->amount_minor == b->amount_minor);
    assert_true(a->frozen_minor == b->frozen_minor);
    assert_true(a->expires_at_ms == b->expires_at_ms);
    for (uint8_t s = 0; s < ST__COUNT; s++) assert_true(order_at_ms(&live, a, s) == order_at_ms(&g_o, b, s));
    assert_string_equal(a->bank, b->bank);
    assert_string_equal(a->account, b->account);
    assert_string_equal(orders_str(&g_o, b->note_off), "n");
    assert_int_equal(a->ncases, b->ncases);
    assert_true(order_has_case(&g_o, b, "CASE-10", 7));
    assert_non_null(orders_find_request(&g_o, "q2", 2));
    orders_free(&live);
}

/* State times are kept as 4-byte offsets from the order's creation (issue 13); one that does
 * not fit - ten years of TTL, a wall clock stepped back - must still come back exact, and so
 * must every time set before it. */
static void test_state_times_far_and_back(void **state) {
    (void)state;
    const int64_t year = 366 * 24 * HOUR;
    add_simple(1, T0 + 10 * year);
    add_simple(2, T0 + 10 * year);
    order_rec r = mk_state(1, ST_SENT, T0 + 49 * 24 * HOUR); /* still fits: < 2^32 ms */
    apply_ok(&r, 3);
    r = mk_state(1, ST_EXPIRED, T0 + 10 * year); /* does not fit */
    apply_ok(&r, 4);
    r = mk_state(2, ST_SENT, T0 - 5000); /* the clock stepped back between two records */
    apply_ok(&r, 5);
    order *a = orders_get(&g_o, 1), *b = orders_get(&g_o, 2);
    assert_true(order_at_ms(&g_o, a, ST_ACCEPTED) == T0);
    assert_true(order_at_ms(&g_o, a, ST_SENT) == T0 + 49 * 24 * HOUR);
    assert_true(order_at_ms(&g_o, a, ST_EXPIRED) == T0 + 10 * year);
    assert_true(order_at_ms(&g_o, a, ST_CONFIRMED) == 0);
    assert_true(order_at_ms(&g_o, b, ST_ACCEPTED) == T0);
    assert_true(order_at_ms(&g_o, b, ST_SENT) == T0 - 5000);
    assert_true(a->at_far_off != 0 && b->at_far_off != 0);
    /* A copy whose bit is cleared (what durview does) reads "never", the order still reads
     * its time: the exact times are shared, the bits are not. */
    order copy = *a;
    copy.at_set &= (uint16_t) ~(1u << ST_EXPIRED);
    assert_true(order_at_ms(&g_o, &copy, ST_EXPIRED) == 0);
    assert_true(order_at_ms(&g_o, &copy, ST_SENT) == T0 + 49 * 24 * HOUR);
    assert_true(order_at_ms(&g_o, a, ST_EXPIRED) == T0 + 10 * year);
    /* An order whose times all fit stays without the pool's copy. */
    add_simple(3, T0 + HOUR);
    r = mk_state(3, ST_SENT, T0 + 100);
    apply_ok(&r, 6);
    assert_int_equal(orders_get(&g_o, 3)->at_far_off, 0);
    assert_true(order_at_ms(&g_o, orders_get(&g_o, 3), ST_SENT) == T0 + 100);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_init_limits),
        T(test_apply_order),
        T(test_order_refused),
        T(test_order_bad_request_id),
        T(test_order_missing_request_id),
        T(test_held_then_confirm),
        T(test_merge),
        T(test_case_limit),
        T(test_case_orders_in_order),
        T(test_state_and_overdue),
        T(test_state_refused),
        T(test_answers),
        T(test_release),
        T(test_extend),
        T(test_expiry),
        T(test_expiry_heap_order),
        T(test_account_index),
        T(test_cascade_tree),
        T(test_room),
        T(test_room_for_cascade_child),
        T(test_prefault),
        T(test_replay_mode),
        T(test_ids_and_names),
        T(test_apply_decoded_records),
        T(test_state_times_far_and_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
