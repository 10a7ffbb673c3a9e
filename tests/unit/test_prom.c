/* Unit tests of prom (gateway/core/prom.h): the Prometheus text it writes, and the rules it
 * holds families to so that /metrics stays valid for promtool as families are added. */
#include "unit.h"

#include "prom.h"

static char *text(buf *b) {
    buf_append(b, "", 1);
    b->len--;
    return (char *)b->data;
}

static void test_family_and_samples(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1 << 16);
    prom_writer w;
    prom_init(&w, &b);
    prom_family(&w, "sg_orders", PROM_GAUGE, "Orders by state.");
    prom_sample(&w, "state", "SENT", 3);
    prom_sample(&w, "state", "a\"b\\c\nd", 4);
    prom_family(&w, "sg_answers_total", PROM_COUNTER, "Answers.");
    prom_sample(&w, NULL, NULL, 7);
    assert_string_equal(text(&b), "# HELP sg_orders Orders by state.\n# TYPE sg_orders gauge\n"
                                  "sg_orders{state=\"SENT\"} 3\nsg_orders{state=\"a\\\"b\\\\c\\nd\"} 4\n"
                                  "# HELP sg_answers_total Answers.\n# TYPE sg_answers_total counter\n"
                                  "sg_answers_total 7\n");
    buf_free(&b);
}

static void test_histogram(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1 << 16);
    prom_writer w;
    prom_init(&w, &b);
    prom_family(&w, "sg_latency_seconds", PROM_HISTOGRAM, "Latency.");
    prom_bucket(&w, "0.1", 2);
    prom_histogram_end(&w, "0.5", 3);
    assert_string_equal(text(&b), "# HELP sg_latency_seconds Latency.\n# TYPE sg_latency_seconds histogram\n"
                                  "sg_latency_seconds_bucket{le=\"0.1\"} 2\nsg_latency_seconds_bucket{le=\"+Inf\"} 3\n"
                                  "sg_latency_seconds_sum 0.5\nsg_latency_seconds_count 3\n");
    buf_free(&b);
}

/* Each rule promtool (or an OpenMetrics parser) would trip on is refused, and nothing is
 * written for a refused family. */
static void test_rules(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1 << 16);
    prom_writer w;
    prom_init(&w, &b);
    assert_true(prom_family_try(&w, "sg_connections_total", PROM_COUNTER, "Accepted."));
    size_t len = b.len;
    /* OpenMetrics reads counter sg_connections_total as family sg_connections. */
    assert_false(prom_family_try(&w, "sg_connections", PROM_GAUGE, "Open."));
    assert_false(prom_family_try(&w, "sg_connections_total", PROM_COUNTER, "Again."));
    assert_false(prom_family_try(&w, "sg_things", PROM_COUNTER, "A counter without _total."));
    assert_false(prom_family_try(&w, "sg_things_total", PROM_GAUGE, "A gauge with _total."));
    assert_false(prom_family_try(&w, "sg_x_count", PROM_GAUGE, "Reserved suffix."));
    assert_false(prom_family_try(&w, "sg_x_bucket", PROM_GAUGE, "Reserved suffix."));
    assert_false(prom_family_try(&w, "sg-x", PROM_GAUGE, "Bad character."));
    assert_false(prom_family_try(&w, "9x", PROM_GAUGE, "Leading digit."));
    assert_false(prom_family_try(&w, "sg_y", PROM_GAUGE, ""));
    assert_false(prom_family_try(&w, "sg_y", PROM_GAUGE, "two\nlines"));
    char longname[PROM_NAME_MAX + 8];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    assert_false(prom_family_try(&w, longname, PROM_GAUGE, "Too long."));
    assert_int_equal(b.len, len);
    assert_true(prom_family_try(&w, "sg_connections_open", PROM_GAUGE, "Open."));
    buf_free(&b);
}

static void test_families_max(void **state) {
    (void)state;
    buf b;
    buf_init(&b, 1 << 20);
    prom_writer w;
    prom_init(&w, &b);
    char name[32];
    for (int i = 0; i < PROM_FAMILIES_MAX; i++) {
        snprintf(name, sizeof name, "sg_f%d", i);
        assert_true(prom_family_try(&w, name, PROM_GAUGE, "One."));
    }
    assert_false(prom_family_try(&w, "sg_one_more", PROM_GAUGE, "One."));
    assert_non_null(prom_name_problem(&w, "sg_one_more", PROM_GAUGE));
    buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_family_and_samples),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_families_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
