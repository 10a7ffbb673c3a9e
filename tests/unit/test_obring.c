/* Unit tests of obring (gateway/core/obring.h), the outbox's ring: FIFO across the wrap, a
 * full ring, the restart at slot 0 whenever it empties (so that the pages a stream of
 * instructions touches stay bounded by how many ever wait at once, issue 13), and the warm
 * start that makes its front resident. */
#include "unit.h"

#include <sys/mman.h>

#include "limits.h"
#include "obring.h"

#define PAGE 4096u

static void push_no(outbox *ob, uint32_t no) {
    obring_push(ob, (outbox_ent){.lsn = no, .order_no = no, .kind = 1});
}

static uint32_t pop_no(outbox *ob) {
    outbox_ent *e = obring_front(ob);
    assert_non_null(e);
    uint32_t no = e->order_no;
    assert_int_equal(e->lsn, no);
    obring_pop(ob);
    return no;
}

/* Entries leave in the order they came, also when the ring wraps without ever emptying. */
static void test_fifo_across_the_wrap(void **state) {
    (void)state;
    outbox ob;
    assert_int_equal(obring_init(&ob, 5), 0);
    assert_null(obring_front(&ob));
    uint32_t in = 1, out = 1;
    for (int i = 0; i < 3; i++) push_no(&ob, in++);
    for (int round = 0; round < 20; round++) { /* 1..3 always waiting: head walks round the ring */
        push_no(&ob, in++);
        assert_int_equal(pop_no(&ob), out++);
    }
    while (obring_room(&ob)) push_no(&ob, in++);
    assert_int_equal(ob.len, 5);
    while (ob.len) assert_int_equal(pop_no(&ob), out++);
    assert_int_equal(out, in);
    assert_null(obring_front(&ob));
    obring_free(&ob);
    obring_free(&ob); /* twice is fine */
}

/* A million instructions through a big ring, never more than 100 waiting: every one written
 * within the first 100 slots, none past them (a ring that kept walking forward would have
 * written 1,000,000 slots: 3,900 pages, each a page fault on the event loop). */
static void test_restarts_at_the_front_when_empty(void **state) {
    (void)state;
    outbox ob;
    const uint32_t cap = 2u * 1000 * 1000;
    assert_int_equal(obring_init(&ob, cap), 0);
    uint32_t in = 1, out = 1;
    for (int burst = 0; burst < 10000; burst++) {
        uint32_t n = 1 + (uint32_t)burst % 100;
        for (uint32_t i = 0; i < n; i++) push_no(&ob, in++);
        /* Partly drained, more pushed, then empty: the restart happens only at empty. */
        for (uint32_t i = 0; i < n / 2; i++) assert_int_equal(pop_no(&ob), out++);
        for (uint32_t i = 0; i < n / 2; i++) push_no(&ob, in++);
        while (ob.len) assert_int_equal(pop_no(&ob), out++);
        assert_int_equal(ob.head, 0);
    }
    assert_int_equal(out, in);
    assert_true(in > 500000);
    size_t bytes = (size_t)cap * sizeof *ob.v;
    assert_true(unit_resident_pages(ob.v, bytes) <= (100 * sizeof *ob.v + PAGE - 1) / PAGE + 1);
    obring_free(&ob);
}

static void test_warm_makes_the_front_resident(void **state) {
    (void)state;
    outbox ob;
    assert_int_equal(obring_init(&ob, 1u << 20), 0); /* 16 MiB */
    size_t bytes = (size_t)ob.cap * sizeof *ob.v;
    assert_int_equal(unit_resident_pages(ob.v, bytes), 0);
    obring_warm(&ob, OUTBOX_WARM_BYTES);
    assert_int_equal(unit_resident_pages(ob.v, OUTBOX_WARM_BYTES), OUTBOX_WARM_BYTES / PAGE);
    assert_int_equal(unit_resident_pages(ob.v, bytes), OUTBOX_WARM_BYTES / PAGE);
    obring_free(&ob);
    /* A ring smaller than the warm size: only the ring is touched. */
    assert_int_equal(obring_init(&ob, 10), 0);
    obring_warm(&ob, OUTBOX_WARM_BYTES);
    assert_int_equal(unit_resident_pages(ob.v, PAGE), 1);
    obring_free(&ob);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_across_the_wrap),
        cmocka_unit_test(test_restarts_at_the_front_when_empty),
        cmocka_unit_test(test_warm_makes_the_front_resident),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
