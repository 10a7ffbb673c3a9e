/* Unit tests of csvload (gateway/core/csvload.h), LIST.LOAD's CSV: rows, the optional header
 * line `bank,account[,score[,case]]` (issue 15 item 12) and refusals with their line. */
#include "unit.h"

#include "csvload.h"

typedef struct rows {
    uint32_t n;
    csv_row v[8];
} rows;

static int collect(void *ctx, const csv_row *row) {
    rows *r = ctx;
    if (r->n < 8) r->v[r->n] = *row;
    r->n++;
    return 0;
}

static int parse(const char *text, rows *r, char *why, size_t cap, uint32_t *bad) {
    memset(r, 0, sizeof *r);
    why[0] = 0;
    *bad = 0;
    return csv_parse(text, strlen(text), collect, r, why, cap, bad);
}

/* A first line naming the columns is skipped in any case and with any of the optional ones. */
static void test_header_skipped(void **state) {
    (void)state;
    static const char *const texts[] = {
        "bank,account\nBKCHCNBJ,6222000011112222\n",
        "BANK,Account,SCORE,case\r\nBKCHCNBJ,6222000011112222,40,C-1\r\n",
        "# exported by the fraud desk\n\n bank , account , score \nBKCHCNBJ,6222000011112222,7\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        rows r;
        char why[128];
        uint32_t bad;
        if (parse(texts[i], &r, why, sizeof why, &bad) != 0) fail_msg("case %zu refused: %s", i, why);
        assert_int_equal(r.n, 1);
        assert_string_equal(r.v[0].bank, "BKCHCNBJ");
        assert_string_equal(r.v[0].account, "6222000011112222");
    }
}

/* A header anywhere but first is no row: refused with its line. */
static void test_header_elsewhere_refused(void **state) {
    (void)state;
    rows r;
    char why[128];
    uint32_t bad;
    assert_int_equal(parse("BKCHCNBJ,6222000011112222\nbank,account\n", &r, why, sizeof why, &bad), -1);
    assert_int_equal(bad, 2);
    assert_non_null(strstr(why, "line 2: "));
    assert_non_null(strstr(why, "header"));
    assert_int_equal(parse("bank,account\nbank,account\nBKCHCNBJ,1\n", &r, why, sizeof why, &bad), -1);
    assert_int_equal(bad, 2);
}

/* Only the exact column names make a header: anything else on the first line is a row. */
static void test_not_a_header(void **state) {
    (void)state;
    rows r;
    char why[128];
    uint32_t bad;
    assert_int_equal(parse("banks,account\n", &r, why, sizeof why, &bad), 0);
    assert_int_equal(r.n, 1); /* a bank "BANKS" and an account "ACCOUNT": a valid row */
    assert_int_equal(parse("account,bank\n", &r, why, sizeof why, &bad), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(parse("bank,account,score,case,extra\n", &r, why, sizeof why, &bad), -1);
    assert_int_equal(bad, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_skipped),
        cmocka_unit_test(test_header_elsewhere_refused),
        cmocka_unit_test(test_not_a_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
