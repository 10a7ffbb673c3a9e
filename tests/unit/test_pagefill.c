/* Unit tests of pagefill (gateway/core/pagefill.h): the window it keeps resident ahead of a
 * table's writer, that it never changes a byte (also while the writer writes the same pages),
 * that it stops, and that orders and durview publish how far their tables are used. */
#include "unit.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>

#include "durview.h"
#include "mem.h"
#include "orders.h"
#include "pagefill.h"

#define PAGE   4096u
#define REGION (4u * 1024 * 1024)
#define WINDOW (1u * 1024 * 1024)

static void fill_all(pagefill *pf) {
    while (pagefill_pass(pf) > 0) {
    }
}

static void test_window_follows_the_writer(void **state) {
    (void)state;
    char *t = mem_reserve(REGION);
    assert_non_null(t);
    (void)madvise(t, REGION, MADV_NOHUGEPAGE); /* count 4 KiB pages, whatever THP does */
    pagefill pf;
    pagefill_init(&pf, WINDOW);
    int id = pagefill_add(&pf, t, REGION);
    assert_true(id >= 0);
    fill_all(&pf);
    /* Nothing used yet: exactly the window is resident, nothing past it. */
    assert_int_equal(unit_resident_pages(t, WINDOW), WINDOW / PAGE);
    assert_int_equal(unit_resident_pages(t + WINDOW, REGION - WINDOW), 0);
    /* The writer moves on: the window moves with it, and stops at the table's end. */
    pagefill_note(&pf, id, 2 * WINDOW + 100);
    fill_all(&pf);
    assert_int_equal(unit_resident_pages(t + 2 * WINDOW, WINDOW + PAGE), WINDOW / PAGE + 1);
    assert_int_equal(unit_resident_pages(t + 3 * WINDOW + 2 * PAGE, REGION - 3 * WINDOW - 2 * PAGE), 0);
    /* A writer that jumped ahead made its pages resident itself: only what is left of the
     * window past it (here, the table's last page) is filled. */
    pagefill_note(&pf, id, REGION - 10);
    fill_all(&pf);
    assert_int_equal(unit_resident_pages(t + REGION - PAGE, PAGE), 1);
    assert_int_equal(unit_resident_pages(t + 3 * WINDOW + PAGE, WINDOW - 2 * PAGE), 0);
    assert_int_equal(atomic_load(&pf.filled), WINDOW + (WINDOW + PAGE) + PAGE);
    mem_release(t, REGION);
}

static void test_values_kept(void **state) {
    (void)state;
    char *t = mem_reserve(REGION);
    assert_non_null(t);
    for (size_t i = 0; i < WINDOW / 2; i++) t[i] = (char)(i * 7 + 1);
    pagefill pf;
    pagefill_init(&pf, REGION);
    int id = pagefill_add(&pf, t, REGION);
    pagefill_note(&pf, id, 100); /* claims less than was written: the helper touches it all */
    fill_all(&pf);
    for (size_t i = 0; i < WINDOW / 2; i++)
        if (t[i] != (char)(i * 7 + 1)) fail_msg("byte %zu changed", i);
    for (size_t i = WINDOW / 2; i < REGION; i += 997)
        if (t[i] != 0) fail_msg("byte %zu not zero", i);
    mem_release(t, REGION);
}

/* The helper running while the owner writes every word, the first of each page among them,
 * publishing as it goes: no write is lost. */
static void test_concurrent_writer(void **state) {
    (void)state;
    const size_t bytes = 64u * 1024 * 1024, words = bytes / sizeof(uint64_t);
    uint64_t *t = mem_reserve(bytes);
    assert_non_null(t);
    pagefill pf;
    pagefill_init(&pf, 2u * 1024 * 1024);
    int id = pagefill_add(&pf, t, bytes);
    assert_int_equal(pagefill_start(&pf), 0);
    for (size_t i = 0; i < words; i++) {
        t[i] = i * 2654435761u + 1;
        if ((i & 255) == 0) pagefill_note(&pf, id, (i + 1) * sizeof *t);
    }
    pagefill_stop(&pf);
    for (size_t i = 0; i < words; i++)
        if (t[i] != i * 2654435761u + 1) fail_msg("word %zu lost its value", i);
    assert_true(atomic_load(&pf.filled) > 0); /* it did run */
    pagefill_stop(&pf);                       /* twice is fine */
    mem_release(t, bytes);
}

static void test_refusals(void **state) {
    (void)state;
    static char page[2 * PAGE] __attribute__((aligned(PAGE)));
    pagefill pf;
    pagefill_init(&pf, PAGE);
    assert_int_equal(pagefill_add(&pf, page + 1, PAGE), -EINVAL); /* not page-aligned */
    for (int i = 0; i < PAGEFILL_REGIONS_MAX; i++)
        assert_int_equal(pagefill_add(&pf, page, PAGE), i);
    assert_int_equal(pagefill_add(&pf, page, PAGE), -ENOSPC);
    pagefill_stop(&pf); /* never started */
    pagefill pf2;
    pagefill_init(&pf2, PAGE);
    assert_int_equal(pagefill_start(&pf2), 0);
    assert_int_equal(pagefill_add(&pf2, page, PAGE), -EINVAL); /* the helper runs already */
    pagefill_stop(&pf2);
}

static rec_str rs(const char *s) {
    return (rec_str){s, (uint32_t)strlen(s)};
}

/* orders_apply and durview_before_apply publish how far each of their tables is used. */
static void test_orders_and_durview_publish(void **state) {
    (void)state;
    orders o;
    durview dv;
    pagefill pf;
    assert_int_equal(orders_init(&o, 65536, 5000), 0);
    assert_int_equal(durview_init(&dv, 65536, 1024), 0);
    pagefill_init(&pf, WINDOW);
    assert_int_equal(orders_pagefill(&o, &pf), 0);
    assert_int_equal(durview_pagefill(&dv, &pf), 0);
    assert_int_equal(pf.n, ORDERS_FILLED_TABLES + 3);
    char err[256], rid[32], acct[32];
    for (uint32_t no = 1; no <= 100; no++) {
        snprintf(rid, sizeof rid, "req-%u", no);
        snprintf(acct, sizeof acct, "ACC%u", no);
        order_rec r = {.type = REC_ORDER,
                       .kind = KIND_STOP,
                       .state = ST_ACCEPTED,
                       .order_no = no,
                       .ts_ms = 1764000000000LL,
                       .expires_at_ms = 1765000000000LL,
                       .request_id = rs(rid),
                       .bank = rs("BANK"),
                       .account = rs(acct),
                       .currency = rs("CNY"),
                       .agent = rs("alice"),
                       .note = rs("a note")};
        durview_before_apply(&dv, &o, &r, no);
        assert_int_equal(orders_apply(&o, &r, no, err, sizeof err), 0);
    }
    assert_int_equal(atomic_load(&pf.r[o.pf_id[0]].used), 101 * sizeof(order));
    assert_int_equal(atomic_load(&pf.r[o.pf_id[1]].used), 101 * sizeof(request));
    assert_int_equal(atomic_load(&pf.r[o.pf_id[4]].used), o.sp_len);
    assert_int_equal(atomic_load(&pf.r[o.pf_id[5]].used), 100 * sizeof(sched_ent));
    assert_int_equal(atomic_load(&pf.r[dv.pf_id[0]].used), 100 * sizeof(durview_ent));
    assert_int_equal(atomic_load(&pf.r[dv.pf_id[1]].used), 101 * sizeof(uint32_t));
    /* And the helper fills the order table's window from there. (Its done mark, not mincore:
     * with THP the kernel may split an underused huge page and drop its zero pages again.) */
    fill_all(&pf);
    assert_true(pf.r[o.pf_id[0]].done >= 101 * sizeof(order) + WINDOW); /* 16 MiB reserved */
    assert_true(pf.r[dv.pf_id[1]].done == pf.r[dv.pf_id[1]].cap);       /* 256 KiB: all of it */
    durview_free(&dv);
    orders_free(&o);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_follows_the_writer),  cmocka_unit_test(test_values_kept),
        cmocka_unit_test(test_concurrent_writer),          cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_orders_and_durview_publish),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
