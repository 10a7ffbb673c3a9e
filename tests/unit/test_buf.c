/* Unit tests of buf (gateway/core/buf.h): geometric growth under a hard cap, never a silent
 * truncation, consume/reset. */
#include "unit.h"

#include <errno.h>

#include "buf.h"

static void test_init_empty(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1000);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    assert_int_equal(b.cap_max, 1000);
    buf_free(&b);
    /* free keeps the cap so a freed buffer can be reused as is */
    assert_int_equal(b.cap_max, 1000);
    assert_null(b.data);
}

static void test_append_and_grow(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1 << 20);
    char chunk[100];
    for (int i = 0; i < 100; i++) chunk[i] = (char)i;
    for (int i = 0; i < 50; i++) assert_int_equal(buf_append(&b, chunk, sizeof chunk), 0);
    assert_int_equal(b.len, 5000);
    assert_true(b.cap >= 5000);
    /* geometric from 256: a power-of-two multiple of 256 */
    assert_int_equal(b.cap % 256, 0);
    assert_int_equal(b.cap & (b.cap - 1), 0);
    for (int i = 0; i < 50; i++) assert_memory_equal(b.data + i * 100, chunk, 100);
    buf_free(&b);
}

static void test_append_zero_bytes(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 16);
    assert_int_equal(buf_append(&b, NULL, 0), 0);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

static void test_cap_enforced(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1000);
    char big[1001];
    memset(big, 'x', sizeof big);
    /* One byte past the cap: refused, nothing appended (no partial write). */
    assert_int_equal(buf_append(&b, big, 1001), -ENOBUFS);
    assert_int_equal(b.len, 0);
    assert_true(b.overflowed);
    buf_truncate(&b, 0); /* the writer rolls back what it began */
    /* Exactly the cap: fine. */
    assert_int_equal(buf_append(&b, big, 1000), 0);
    assert_int_equal(b.len, 1000);
    assert_true(b.cap <= 1000);
    assert_int_equal(buf_append(&b, "y", 1), -ENOBUFS);
    assert_int_equal(b.len, 1000);
    assert_int_equal(buf_reserve(&b, 1), -ENOBUFS);
    /* A reserve so large that len + n would wrap must be refused, not overflow. */
    assert_int_equal(buf_reserve(&b, SIZE_MAX), -ENOBUFS);
    buf_free(&b);
}

/* A reply that does not fit is never left with a hole: once an append is refused, every
 * later one is too (even a small one that would fit) until the writer rolls back. */
static void test_refusal_sticks_until_truncate(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 100);
    char big[80];
    memset(big, 'x', sizeof big);
    assert_int_equal(buf_append(&b, "head", 4), 0);
    size_t start = b.len;
    assert_int_equal(buf_append(&b, big, 80), 0);
    assert_int_equal(buf_append(&b, big, 80), -ENOBUFS);
    assert_true(b.overflowed);
    assert_int_equal(buf_append(&b, "y", 1), -ENOBUFS);
    assert_int_equal(buf_printf(&b, "%d", 7), -ENOBUFS);
    assert_int_equal(b.len, 84);
    buf_truncate(&b, start);
    assert_false(b.overflowed);
    assert_int_equal(b.len, 4);
    assert_int_equal(buf_append(&b, "-ERR\r\n", 6), 0);
    assert_memory_equal(b.data, "head-ERR\r\n", 10);
    buf_free(&b);
}

static void test_printf_short_and_long(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(buf_printf(&b, "n=%d s=%s", 42, "ok"), 0);
    assert_int_equal(b.len, 9);
    assert_memory_equal(b.data, "n=42 s=ok", 9);
    /* Longer than buf_printf's 512-byte stack buffer: the slow path must format it whole. */
    char big[3000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = 0;
    big[0] = 'B';
    big[sizeof big - 2] = 'E';
    assert_int_equal(buf_printf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, 9 + 2 + 2999);
    assert_int_equal(b.data[9], '[');
    assert_int_equal(b.data[10], 'B');
    assert_int_equal(b.data[9 + 2999], 'E');
    assert_int_equal(b.data[9 + 2999 + 1], ']');
    buf_free(&b);
}

static void test_printf_respects_cap(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 100);
    char s[200];
    memset(s, 'z', sizeof s - 1);
    s[sizeof s - 1] = 0;
    assert_int_equal(buf_printf(&b, "%s", s), -ENOBUFS);
    assert_int_equal(b.len, 0);
    buf_free(&b);
}

/* A formatted string that exactly fills the cap is not "past the cap" (buf.h): it must be
 * accepted, as buf_append accepts it, on the long (>= 512 bytes) path too. */
static void test_printf_long_exactly_at_cap(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1000);
    char s[1001];
    memset(s, 'q', 1000);
    s[1000] = 0;
    assert_int_equal(buf_printf(&b, "%s", s), 0);
    assert_int_equal(b.len, 1000);
    buf_free(&b);
}

static void test_consume(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1024);
    assert_int_equal(buf_append(&b, "hello world", 11), 0);
    buf_consume(&b, 6);
    assert_int_equal(b.len, 5);
    assert_memory_equal(b.data, "world", 5);
    buf_consume(&b, 0);
    assert_int_equal(b.len, 5);
    buf_consume(&b, 99); /* more than held: empties it */
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_append(&b, "abc", 3), 0);
    buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_true(b.cap > 0); /* reset keeps the memory */
    buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_empty),
        cmocka_unit_test(test_append_and_grow),
        cmocka_unit_test(test_append_zero_bytes),
        cmocka_unit_test(test_cap_enforced),
        cmocka_unit_test(test_refusal_sticks_until_truncate),
        cmocka_unit_test(test_printf_short_and_long),
        cmocka_unit_test(test_printf_respects_cap),
        cmocka_unit_test(test_printf_long_exactly_at_cap),
        cmocka_unit_test(test_consume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
