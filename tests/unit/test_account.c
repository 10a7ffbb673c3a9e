/* Unit tests of account (gateway/core/account.h): the (bank, account) key normalisation of
 * SPEC §3 and the scalar order fields (amount, currency, TTL, identifiers, free text). */
#include "unit.h"

#include "account.h"

static int norm_bank(const char *raw, char out[BANK_LEN_MAX + 1]) {
    const char *why = NULL;
    int rc = account_bank_normalise(raw, strlen(raw), out, &why);
    if (rc != 0) assert_non_null(why);
    return rc;
}

static int norm_acct(const char *raw, char out[ACCOUNT_LEN_MAX + 1]) {
    const char *why = NULL;
    int rc = account_normalise(raw, strlen(raw), out, &why);
    if (rc != 0) assert_non_null(why);
    return rc;
}

static void test_bank_ok(void **state) {
    (void)state;
    char out[BANK_LEN_MAX + 1];
    assert_int_equal(norm_bank("ICBKCNBJ", out), 0);
    assert_string_equal(out, "ICBKCNBJ");
    assert_int_equal(norm_bank("icbkcnbjXXX", out), 0); /* 11 characters, upper-cased */
    assert_string_equal(out, "ICBKCNBJXXX");
    assert_int_equal(norm_bank("0102", out), 0);
    assert_string_equal(out, "0102");
    assert_int_equal(norm_bank("B", out), 0);
    assert_string_equal(out, "B");
}

static void test_bank_bad(void **state) {
    (void)state;
    char out[BANK_LEN_MAX + 1];
    assert_int_equal(norm_bank("", out), -1);
    assert_int_equal(norm_bank("ICBKCNBJXXX1", out), -1); /* 12 */
    assert_int_equal(norm_bank("ICBK CNBJ", out), -1); /* spaces are not removed in a bank code */
    assert_int_equal(norm_bank("ICBK-CNBJ", out), -1);
    assert_int_equal(norm_bank("ICB_", out), -1);
    assert_int_equal(norm_bank("ICB\xc3\x9c", out), -1);
    /* embedded NUL: the length counts, not the C string */
    const char *why = NULL;
    assert_int_equal(account_bank_normalise("AB\0C", 4, out, &why), -1);
    assert_non_null(why);
}

static void test_account_ok(void **state) {
    (void)state;
    char out[ACCOUNT_LEN_MAX + 1];
    assert_int_equal(norm_acct("de89 3704-0044 0532 0130 00", out), 0);
    assert_string_equal(out, "DE89370400440532013000");
    assert_int_equal(norm_acct("62220200000001", out), 0);
    assert_string_equal(out, "62220200000001");
    assert_int_equal(norm_acct(" -x- ", out), 0);
    assert_string_equal(out, "X");
    /* exactly 34 after normalisation, with formatting around it */
    assert_int_equal(norm_acct("aaaa BBBB-CCCC DDDD EEEE FFFF GGGG HHHH II", out), 0);
    assert_int_equal(strlen(out), 34);
    assert_string_equal(out, "AAAABBBBCCCCDDDDEEEEFFFFGGGGHHHHII");
}

static void test_account_ok_34(void **state) {
    (void)state;
    char out[ACCOUNT_LEN_MAX + 1];
    char raw[ACCOUNT_RAW_LEN_MAX + 1];
    memset(raw, '7', 34);
    raw[34] = 0;
    assert_int_equal(norm_acct(raw, out), 0);
    assert_int_equal(strlen(out), 34);
    /* 34 characters spread over the whole raw limit (128) with spaces */
    memset(raw, ' ', ACCOUNT_RAW_LEN_MAX);
    for (int i = 0; i < 34; i++) raw[i * 3] = 'a';
    raw[ACCOUNT_RAW_LEN_MAX] = 0;
    assert_int_equal(norm_acct(raw, out), 0);
    assert_int_equal(strlen(out), 34);
    assert_int_equal(out[0], 'A');
}

static void test_account_bad(void **state) {
    (void)state;
    char out[ACCOUNT_LEN_MAX + 1];
    char raw[ACCOUNT_RAW_LEN_MAX + 2];
    assert_int_equal(norm_acct("", out), -1);
    assert_int_equal(norm_acct("   ", out), -1); /* nothing left after normalisation */
    assert_int_equal(norm_acct("--", out), -1);
    assert_int_equal(norm_acct("1234_5678", out), -1);
    assert_int_equal(norm_acct("1234.5678", out), -1);
    assert_int_equal(norm_acct("1234\t5678", out), -1);
    assert_int_equal(norm_acct("12345\xe2\x82\xac", out), -1);
    memset(raw, '7', 35);
    raw[35] = 0;
    assert_int_equal(norm_acct(raw, out), -1); /* 35 */
    /* over the raw limit even though it would normalise short */
    memset(raw, ' ', ACCOUNT_RAW_LEN_MAX + 1);
    raw[0] = 'A';
    raw[ACCOUNT_RAW_LEN_MAX + 1] = 0;
    assert_int_equal(norm_acct(raw, out), -1);
    const char *why = NULL;
    assert_int_equal(account_normalise("12\0"
                                       "34",
                                       5, out, &why),
                     -1);
}

static void test_int_parse(void **state) {
    (void)state;
    int64_t v = 0;
    assert_int_equal(field_int_parse("0", 1, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(field_int_parse("-17", 3, &v), 0);
    assert_int_equal(v, -17);
    assert_int_equal(field_int_parse("+17", 3, &v), 0);
    assert_int_equal(v, 17);
    assert_int_equal(field_int_parse("9223372036854775807", 19, &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(field_int_parse("-9223372036854775808", 20, &v), 0);
    assert_true(v == INT64_MIN);
    v = 5;
    assert_int_equal(field_int_parse("9223372036854775808", 19, &v), -1);
    assert_int_equal(field_int_parse("-9223372036854775809", 20, &v), -1);
    assert_int_equal(field_int_parse("99999999999999999999", 20, &v), -1);
    assert_int_equal(field_int_parse("", 0, &v), -1);
    assert_int_equal(field_int_parse("-", 1, &v), -1);
    assert_int_equal(field_int_parse("+", 1, &v), -1);
    assert_int_equal(field_int_parse("12a", 3, &v), -1);
    assert_int_equal(field_int_parse(" 12", 3, &v), -1);
    assert_int_equal(field_int_parse("12 ", 3, &v), -1);
    assert_int_equal(v, 5); /* untouched on failure */
    /* only len bytes are looked at */
    assert_int_equal(field_int_parse("123xyz", 3, &v), 0);
    assert_int_equal(v, 123);
}

static int amount(const char *s, int64_t *v) {
    const char *why = NULL;
    int rc = field_amount_parse(s, strlen(s), v, &why);
    if (rc != 0) assert_non_null(why);
    return rc;
}

static void test_amount(void **state) {
    (void)state;
    int64_t v = -1;
    assert_int_equal(amount("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(amount("150000", &v), 0);
    assert_int_equal(v, 150000);
    assert_int_equal(amount("100000000000000000", &v), 0); /* AMOUNT_MINOR_MAX */
    assert_true(v == AMOUNT_MINOR_MAX);
    assert_int_equal(amount("100000000000000001", &v), -1);
    assert_int_equal(amount("99999999999999999999", &v), -1);
    assert_int_equal(amount("-1", &v), -1);
    assert_int_equal(amount("", &v), -1);
    assert_int_equal(amount("12abc", &v), -1);
    assert_int_equal(amount("1e5", &v), -1);
    assert_int_equal(amount(" 5", &v), -1);
    const char *why = NULL;
    assert_int_equal(field_amount_parse("10.50", 5, &v, &why), -1);
    assert_non_null(strstr(why, "fraction")); /* the reason says what is wrong */
    assert_int_equal(field_amount_parse("10,50", 5, &v, &why), -1);
    assert_non_null(strstr(why, "fraction"));
}

/* account.h: "Non-negative integer minor units, digits only". A sign is not a digit: "+5"
 * and "-0" are not amounts a client may send. */
static void test_amount_digits_only(void **state) {
    (void)state;
    const char *signed_[] = {"+5", "-0", "+0"};
    for (size_t i = 0; i < sizeof signed_ / sizeof signed_[0]; i++) {
        int64_t v = -1;
        if (amount(signed_[i], &v) != -1)
            fail_msg("amount '%s' accepted as %lld", signed_[i], (long long)v);
    }
}

static void test_currency(void **state) {
    (void)state;
    char out[4];
    const char *why = NULL;
    assert_int_equal(field_currency_parse("CNY", 3, out, &why), 0);
    assert_string_equal(out, "CNY");
    assert_int_equal(field_currency_parse("eur", 3, out, &why), 0);
    assert_string_equal(out, "EUR");
    assert_int_equal(field_currency_parse("Usd", 3, out, &why), 0);
    assert_string_equal(out, "USD");
    why = NULL;
    assert_int_equal(field_currency_parse("CN", 2, out, &why), -1);
    assert_non_null(why);
    assert_int_equal(field_currency_parse("CNYY", 4, out, &why), -1);
    assert_int_equal(field_currency_parse("C1Y", 3, out, &why), -1);
    assert_int_equal(field_currency_parse("C Y", 3, out, &why), -1);
    assert_int_equal(field_currency_parse("", 0, out, &why), -1);
}

static void test_ttl(void **state) {
    (void)state;
    int64_t v = 0;
    const char *why = NULL;
    assert_int_equal(field_ttl_parse("1", 1, &v, &why), 0);
    assert_int_equal(v, 1);
    assert_int_equal(field_ttl_parse("172800", 6, &v, &why), 0);
    assert_int_equal(v, 172800);
    char s[32];
    snprintf(s, sizeof s, "%lld", (long long)TTL_S_MAX);
    assert_int_equal(field_ttl_parse(s, strlen(s), &v, &why), 0);
    assert_true(v == TTL_S_MAX);
    snprintf(s, sizeof s, "%lld", (long long)TTL_S_MAX + 1);
    why = NULL;
    assert_int_equal(field_ttl_parse(s, strlen(s), &v, &why), -1);
    assert_non_null(why);
    assert_int_equal(field_ttl_parse("0", 1, &v, &why), -1);
    assert_int_equal(field_ttl_parse("-5", 2, &v, &why), -1);
    assert_int_equal(field_ttl_parse("", 0, &v, &why), -1);
    assert_int_equal(field_ttl_parse("1h", 2, &v, &why), -1);
    assert_int_equal(field_ttl_parse("1.5", 3, &v, &why), -1);
}

static void test_ident(void **state) {
    (void)state;
    assert_true(field_ident_ok("req-1", 5, REQUEST_ID_LEN_MAX));
    assert_true(field_ident_ok("a!~#$%", 6, 64));
    char s[REQUEST_ID_LEN_MAX + 2];
    memset(s, 'r', sizeof s);
    assert_true(field_ident_ok(s, REQUEST_ID_LEN_MAX, REQUEST_ID_LEN_MAX));
    assert_false(field_ident_ok(s, REQUEST_ID_LEN_MAX + 1, REQUEST_ID_LEN_MAX));
    assert_false(field_ident_ok("", 0, 64));
    assert_false(field_ident_ok("a b", 3, 64));
    assert_false(field_ident_ok("a\tb", 3, 64));
    assert_false(field_ident_ok("a\nb", 3, 64));
    assert_false(field_ident_ok("a\x7f", 2, 64));
    assert_false(field_ident_ok("a\xc3\xa9", 3, 64));
    assert_false(field_ident_ok("a\0b", 3, 64));
}

static void test_text(void **state) {
    (void)state;
    assert_true(field_text_ok("", 0, NOTE_LEN_MAX));
    assert_true(field_text_ok("called the bank, no answer", 26, NOTE_LEN_MAX));
    assert_true(field_text_ok("caf\xc3\xa9 \xe4\xb8\xad", 9, NOTE_LEN_MAX)); /* UTF-8 is fine */
    char s[NOTE_LEN_MAX + 1];
    memset(s, 'n', sizeof s);
    assert_true(field_text_ok(s, NOTE_LEN_MAX, NOTE_LEN_MAX));
    assert_false(field_text_ok(s, NOTE_LEN_MAX + 1, NOTE_LEN_MAX));
    assert_false(field_text_ok("line\nbreak", 10, NOTE_LEN_MAX));
    assert_false(field_text_ok("cr\r", 3, NOTE_LEN_MAX));
    assert_false(field_text_ok("tab\t", 4, NOTE_LEN_MAX));
    assert_false(field_text_ok("del\x7f", 4, NOTE_LEN_MAX));
    assert_false(field_text_ok("nul\0x", 5, NOTE_LEN_MAX));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bank_ok),     cmocka_unit_test(test_bank_bad),
        cmocka_unit_test(test_account_ok),  cmocka_unit_test(test_account_ok_34),
        cmocka_unit_test(test_account_bad), cmocka_unit_test(test_int_parse),
        cmocka_unit_test(test_amount),      cmocka_unit_test(test_amount_digits_only),
        cmocka_unit_test(test_currency),    cmocka_unit_test(test_ttl),
        cmocka_unit_test(test_ident),       cmocka_unit_test(test_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
