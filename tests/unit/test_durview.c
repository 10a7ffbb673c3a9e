/* Unit tests of durview (gateway/core/durview.h): what reads show of orders whose records are
 * journaled but not yet durable - nothing of an order whose creation is not durable, the
 * state before a not-yet-durable answer, the account's previous order for CHECK, the case
 * count and children as of the durable records - and the ring's room and reuse. */
#include "unit.h"

#include "durview.h"
#include "orders.h"
#include "record.h"

#define T0   1764000000000LL
#define HOUR (3600LL * 1000)

static orders g_o;
static durview g_dv;

static int setup(void **state) {
    (void)state;
    if (orders_init(&g_o, 1024, 5000) != 0) return -1;
    return durview_init(&g_dv, 1024, 8);
}

static int teardown(void **state) {
    (void)state;
    orders_free(&g_o);
    durview_free(&g_dv);
    return 0;
}

static rec_str rs(const char *s) {
    return (rec_str){s, s ? (uint32_t)strlen(s) : 0};
}

static order_rec mk_order(uint64_t no, const char *rid, const char *acct, const char *case_id) {
    order_rec r;
    memset(&r, 0, sizeof r);
    r.type = REC_ORDER;
    r.kind = KIND_STOP;
    r.state = ST_ACCEPTED;
    r.order_no = no;
    r.amount_minor = 50000;
    r.ts_ms = T0;
    r.expires_at_ms = T0 + HOUR;
    r.request_id = rs(rid);
    r.bank = rs("DVB");
    r.account = rs(acct);
    r.currency = rs("CNY");
    r.case_id = rs(case_id);
    r.agent = rs("alice");
    return r;
}

/* What engine_commit does for a live record. */
static void commit(const order_rec *r, uint64_t lsn) {
    char err[256];
    assert_true(durview_room(&g_dv, 1));
    durview_before_apply(&g_dv, &g_o, r, lsn);
    if (orders_apply(&g_o, r, lsn, err, sizeof err) != 0) fail_msg("refused: %s", err);
}

static uint32_t published[16], npublished;
static void on_pub(void *ctx, uint32_t no) {
    (void)ctx;
    if (npublished < 16) published[npublished++] = no;
}

static void test_creation_not_durable(void **state) {
    (void)state;
    order tmp;
    order_rec r = mk_order(1, "r1", "ACC1", "C1");
    commit(&r, 1);
    assert_null(durview_order(&g_dv, &g_o, 1, &tmp));
    assert_false(durview_exists(&g_dv, 1));
    assert_null(durview_live_on_account(&g_dv, &g_o, "DVB", "ACC1", T0, &tmp));
    assert_non_null(orders_live_on_account(&g_o, "DVB", "ACC1", T0)); /* the writers' view */
    npublished = 0;
    durview_advance(&g_dv, &g_o, 1, on_pub, NULL);
    assert_int_equal(npublished, 1);
    assert_int_equal(published[0], 1);
    assert_ptr_equal(durview_order(&g_dv, &g_o, 1, &tmp), orders_get(&g_o, 1)); /* read in place */
    assert_non_null(durview_live_on_account(&g_dv, &g_o, "DVB", "ACC1", T0, &tmp));
}

static void test_answer_not_durable(void **state) {
    (void)state;
    order tmp;
    order_rec r = mk_order(1, "r1", "ACC1", "C1");
    commit(&r, 1);
    durview_advance(&g_dv, &g_o, 1, NULL, NULL);
    order_rec s = {.type = REC_STATE, .order_no = 1, .state = ST_SENT, .ts_ms = T0 + 1};
    commit(&s, 2);
    order_rec a = {.type = REC_STATE,
                   .order_no = 1,
                   .state = ST_CONFIRMED,
                   .frozen_minor = 40000,
                   .ts_ms = T0 + 2,
                   .reason = rs("OK")};
    commit(&a, 3);
    const order *v = durview_order(&g_dv, &g_o, 1, &tmp);
    assert_ptr_equal(v, &tmp);
    assert_int_equal(v->state, ST_ACCEPTED);
    assert_int_equal(v->frozen_minor, 0);
    assert_int_equal(order_at_ms(&g_o, v, ST_SENT), 0);
    assert_int_equal(order_at_ms(&g_o, v, ST_CONFIRMED), 0);
    assert_int_equal(v->reason_off, 0);
    assert_int_equal(orders_get(&g_o, 1)->state, ST_CONFIRMED);
    /* The SENT batch is durable, the answer's not yet: the view is as of SENT. */
    durview_advance(&g_dv, &g_o, 2, NULL, NULL);
    v = durview_order(&g_dv, &g_o, 1, &tmp);
    assert_int_equal(v->state, ST_SENT);
    assert_int_equal(order_at_ms(&g_o, v, ST_SENT), T0 + 1);
    assert_int_equal(v->frozen_minor, 0);
    durview_advance(&g_dv, &g_o, 3, NULL, NULL);
    v = durview_order(&g_dv, &g_o, 1, &tmp);
    assert_ptr_equal(v, orders_get(&g_o, 1));
    assert_int_equal(v->frozen_minor, 40000);
}

/* RELEASE of the live order, then a new order on the same account, neither durable: CHECK
 * (the durable view) still sees the first order live. */
static void test_previous_order_on_account(void **state) {
    (void)state;
    order tmp;
    order_rec r = mk_order(1, "r1", "ACC1", "C1");
    commit(&r, 1);
    durview_advance(&g_dv, &g_o, 1, NULL, NULL);
    order_rec rel = {.type = REC_RELEASE, .order_no = 1, .request_id = rs("rel1"), .ts_ms = T0 + 5};
    commit(&rel, 2);
    order_rec r2 = mk_order(2, "r2", "ACC1", "C2");
    commit(&r2, 3);
    const order *v = durview_live_on_account(&g_dv, &g_o, "DVB", "ACC1", T0 + 10, &tmp);
    assert_non_null(v);
    assert_int_equal(v->no, 1);
    assert_int_equal(v->state, ST_ACCEPTED);
    durview_advance(&g_dv, &g_o, 2, NULL, NULL); /* the release is durable, the new order not */
    assert_null(durview_live_on_account(&g_dv, &g_o, "DVB", "ACC1", T0 + 10, &tmp));
    durview_advance(&g_dv, &g_o, 3, NULL, NULL);
    v = durview_live_on_account(&g_dv, &g_o, "DVB", "ACC1", T0 + 10, &tmp);
    assert_non_null(v);
    assert_int_equal(v->no, 2);
}

static void test_merge_cases_and_children(void **state) {
    (void)state;
    order tmp;
    order_rec r = mk_order(1, "r1", "ACC1", "C1");
    commit(&r, 1);
    durview_advance(&g_dv, &g_o, 1, NULL, NULL);
    order_rec m = {.type = REC_MERGE,
                   .order_no = 1,
                   .request_id = rs("m1"),
                   .case_id = rs("C2"),
                   .amount_minor = 0,
                   .expires_at_ms = T0 + 2 * HOUR,
                   .ts_ms = T0 + 1};
    commit(&m, 2);
    order_rec ch = mk_order(2, "child", "ACC2", "C1");
    ch.parent_no = 1;
    ch.level = 1;
    commit(&ch, 3);
    const order *v = durview_order(&g_dv, &g_o, 1, &tmp);
    assert_int_equal(v->ncases, 1);
    assert_int_equal(v->amount_minor, 50000);
    assert_int_equal(v->expires_at_ms, T0 + HOUR);
    assert_int_equal(v->first_child, 2);    /* the link exists ... */
    assert_false(durview_exists(&g_dv, 2)); /* ... but the child does not for reads */
    assert_int_equal(orders_get(&g_o, 1)->ncases, 2);
}

static void test_room_and_reuse(void **state) {
    (void)state;
    char rid[16], acct[16];
    for (uint32_t round = 0; round < 3; round++) {
        for (uint32_t i = 0; i < 8; i++) {
            uint32_t no = round * 8 + i + 1;
            snprintf(rid, sizeof rid, "r%u", no);
            snprintf(acct, sizeof acct, "ACC%u", no);
            order_rec r = mk_order(no, rid, acct, "C1");
            commit(&r, no);
        }
        assert_false(durview_room(&g_dv, 1)); /* 8 entries: the engine waits for a batch */
        durview_advance(&g_dv, &g_o, (round + 1) * 8, NULL, NULL);
        assert_int_equal(g_dv.len, 0);
        assert_true(durview_room(&g_dv, 8));
    }
    order tmp;
    for (uint32_t no = 1; no <= 24; no++)
        assert_ptr_equal(durview_order(&g_dv, &g_o, no, &tmp), orders_get(&g_o, no));
}

/* Issue 13: the frozen mark is republished only for records that can change it. A burst's
 * SENT and CONFIRMED records (two of every order's three) used to republish the account
 * each time: an order-table hash lookup and a shared-table probe per record. */
static void test_publish_only_liveness_changes(void **state) {
    (void)state;
    order_rec r = mk_order(1, "r1", "ACC1", "C1");
    commit(&r, 1);
    order_rec s = {.type = REC_STATE, .order_no = 1, .state = ST_SENT, .ts_ms = T0 + 1};
    commit(&s, 2);
    npublished = 0;
    durview_advance(&g_dv, &g_o, 2, on_pub, NULL); /* creation and SENT durable together */
    assert_int_equal(npublished, 1);
    assert_int_equal(published[0], 1);
    order_rec a = {.type = REC_STATE, .order_no = 1, .state = ST_CONFIRMED, .frozen_minor = 40000, .ts_ms = T0 + 2};
    commit(&a, 3);
    durview_advance(&g_dv, &g_o, 3, on_pub, NULL); /* live before and after, same expiry */
    assert_int_equal(npublished, 1);
    order_rec x = {.type = REC_EXTEND, .order_no = 1, .request_id = rs("ext1"), .expires_at_ms = T0 + 2 * HOUR,
                   .ts_ms = T0 + 3};
    commit(&x, 4);
    order_rec rel = {.type = REC_RELEASE, .order_no = 1, .request_id = rs("rel1"), .ts_ms = T0 + 5};
    commit(&rel, 5);
    durview_advance(&g_dv, &g_o, 4, on_pub, NULL); /* a new expiry: published */
    assert_int_equal(npublished, 2);
    durview_advance(&g_dv, &g_o, 5, on_pub, NULL); /* live to released: published */
    assert_int_equal(npublished, 3);
    assert_int_equal(published[2], 1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_creation_not_durable),
        T(test_answer_not_durable),
        T(test_previous_order_on_account),
        T(test_merge_cases_and_children),
        T(test_room_and_reuse),
        T(test_publish_only_liveness_changes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
