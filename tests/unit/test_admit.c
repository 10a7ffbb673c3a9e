/* Unit tests of admit (gateway/core/admit.h): the per-address connection cap, the failed-AUTH
 * window (limited at fail_max, free again when the window ends, a success taking its attempt
 * back), slots freed when nothing keeps them (backward-shift deletion keeps every other
 * address findable), and the bound on addresses held only for their failures. */
#include "unit.h"

#include "admit.h"

#define A(n) ((uint32_t)(0x0a000000u + (n)))

static void test_conn_cap(void **state) {
    (void)state;
    admit a;
    assert_int_equal(admit_init(&a, 100, (admit_cfg){.conns_max = 3}), 0);
    for (int i = 0; i < 3; i++) assert_true(admit_conn_open(&a, A(1)));
    assert_false(admit_conn_open(&a, A(1))); /* the fourth from the same address */
    assert_true(admit_conn_open(&a, A(2)));  /* another address is not affected */
    assert_int_equal(admit_find(&a, A(1))->conns, 3);
    admit_conn_close(&a, A(1));
    assert_true(admit_conn_open(&a, A(1)));
    for (int i = 0; i < 3; i++) admit_conn_close(&a, A(1));
    admit_conn_close(&a, A(2));
    assert_null(admit_find(&a, A(1)));
    assert_int_equal(a.used, 0);
    admit_free(&a);
}

static void test_no_cap(void **state) {
    (void)state;
    admit a;
    assert_int_equal(admit_init(&a, 100, (admit_cfg){0}), 0);
    for (int i = 0; i < 1000; i++) assert_true(admit_conn_open(&a, A(7)));
    assert_false(admit_auth_limited(&a, A(7), 0));
    for (int i = 0; i < 100; i++) admit_auth_attempt(&a, A(7), 0);
    assert_false(admit_auth_limited(&a, A(7), 0)); /* fail_max 0: no limiter */
    admit_free(&a);
}

static void test_fail_window(void **state) {
    (void)state;
    admit a;
    assert_int_equal(admit_init(&a, 100, (admit_cfg){.fail_max = 3, .fail_window_ms = 1000}), 0);
    for (int i = 0; i < 2; i++) admit_auth_attempt(&a, A(1), 100 + i);
    assert_false(admit_auth_limited(&a, A(1), 200));
    admit_auth_attempt(&a, A(1), 300);
    assert_true(admit_auth_limited(&a, A(1), 300));
    assert_false(admit_auth_limited(&a, A(2), 300));
    assert_true(admit_auth_limited(&a, A(1), 1099)); /* the window opened at the first failure */
    assert_false(admit_auth_limited(&a, A(1), 1100));
    assert_null(admit_find(&a, A(1))); /* nothing keeps it any more */
    /* A success takes its attempt back. */
    admit_auth_attempt(&a, A(3), 0);
    admit_auth_attempt(&a, A(3), 0);
    admit_auth_succeeded(&a, A(3));
    admit_auth_attempt(&a, A(3), 0);
    assert_false(admit_auth_limited(&a, A(3), 0));
    admit_auth_attempt(&a, A(3), 0);
    assert_true(admit_auth_limited(&a, A(3), 0));
    admit_free(&a);
}

static void test_window_outlives_connection(void **state) {
    (void)state;
    admit a;
    assert_int_equal(admit_init(&a, 100, (admit_cfg){.fail_max = 1, .fail_window_ms = 50}), 0);
    assert_true(admit_conn_open(&a, A(9)));
    admit_auth_attempt(&a, A(9), 0);
    admit_conn_close(&a, A(9));
    assert_int_equal(a.fail_only, 1);
    assert_true(admit_auth_limited(&a, A(9), 10)); /* reconnecting does not reset it */
    admit_sweep(&a, 60);
    assert_int_equal(a.used, 0);
    assert_int_equal(a.fail_only, 0);
    admit_free(&a);
}

/* Many addresses in and out: every live one stays findable with its own count. */
static void test_churn(void **state) {
    (void)state;
    admit a;
    assert_int_equal(admit_init(&a, 4000, (admit_cfg){.conns_max = 100}), 0);
    uint32_t want[4000] = {0};
    uint32_t seed = 1;
    for (int step = 0; step < 200000; step++) {
        seed = seed * 1103515245u + 12345u;
        uint32_t n = (seed >> 8) % 4000;
        if ((seed >> 4) & 1 || want[n] == 0) {
            if (want[n] < 100 && a.used < 4000) {
                assert_true(admit_conn_open(&a, A(n * 7919u)));
                want[n]++;
            }
        } else {
            admit_conn_close(&a, A(n * 7919u));
            want[n]--;
        }
    }
    uint32_t live = 0;
    for (uint32_t n = 0; n < 4000; n++) {
        const admit_slot *s = admit_find(&a, A(n * 7919u));
        if (want[n] == 0) {
            assert_null(s);
        } else {
            assert_non_null(s);
            assert_int_equal(s->conns, want[n]);
            live++;
        }
    }
    assert_int_equal(a.used, live);
    admit_free(&a);
}

static void test_failure_only_addresses_bounded(void **state) {
    (void)state;
    admit a;
    assert_int_equal(admit_init(&a, 10, (admit_cfg){.fail_max = 1, .fail_window_ms = 1000}), 0);
    for (uint32_t n = 0; n < AUTH_FAIL_ADDRS_MAX + 10; n++) admit_auth_attempt(&a, A(n), 0);
    assert_int_equal(a.fail_only, AUTH_FAIL_ADDRS_MAX);
    assert_int_equal(a.untracked, 10);
    assert_true(admit_auth_limited(&a, A(0), 1));
    assert_false(admit_auth_limited(&a, A(AUTH_FAIL_ADDRS_MAX + 5), 1)); /* fails open */
    admit_sweep(&a, 1000);
    assert_int_equal(a.used, 0);
    admit_free(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conn_cap),    cmocka_unit_test(test_no_cap),
        cmocka_unit_test(test_fail_window), cmocka_unit_test(test_window_outlives_connection),
        cmocka_unit_test(test_churn),       cmocka_unit_test(test_failure_only_addresses_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
