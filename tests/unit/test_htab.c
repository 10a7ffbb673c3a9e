/* Unit tests of htab (gateway/core/htab.h): hash -> handle index with owner-compared keys,
 * collisions, fixed capacity with a refusal at its limit. */
#include "unit.h"

#include <errno.h>

#include "htab.h"

/* The owner's key store: handle i (1-based) is keys[i]. */
typedef struct store {
    const char *keys[64];
} store;

static bool eq(const void *ctx, uint32_t val, const void *key) {
    const store *s = ctx;
    return strcmp(s->keys[val], key) == 0;
}

static void test_init_sizes(void **state) {
    (void)state;
    htab h;
    assert_int_equal(htab_init(&h, 100), 0);
    /* capacity: power of two, at least twice the entries; inserts allowed up to half */
    uint64_t cap = h.mask + 1;
    assert_int_equal(cap & (cap - 1), 0);
    assert_true(cap >= 200);
    assert_int_equal(h.limit, cap / 2);
    assert_true(h.limit >= 100);
    assert_int_equal(h.count, 0);
    htab_free(&h);
    assert_null(h.slots);
}

static void test_insert_find(void **state) {
    (void)state;
    store s = {{NULL, "alpha", "beta", "gamma"}};
    htab h;
    assert_int_equal(htab_init(&h, 8), 0);
    for (uint32_t i = 1; i <= 3; i++) {
        htab_slot *sl = htab_lookup(&h, 1000 + i, s.keys[i], eq, &s);
        assert_int_equal(sl->val, 0); /* not there yet: the empty slot */
        assert_int_equal(htab_fill(&h, sl, 1000 + i, i), 0);
    }
    assert_int_equal(h.count, 3);
    for (uint32_t i = 1; i <= 3; i++) {
        htab_slot *sl = htab_lookup(&h, 1000 + i, s.keys[i], eq, &s);
        assert_int_equal(sl->val, i);
        assert_int_equal(sl->hash, 1000 + i);
    }
    /* unknown key, unknown hash */
    assert_int_equal(htab_lookup(&h, 5555, "delta", eq, &s)->val, 0);
    /* Update in place: an index may point a key at a newer handle. */
    htab_slot *sl = htab_lookup(&h, 1002, "beta", eq, &s);
    s.keys[4] = "beta";
    sl->val = 4;
    assert_int_equal(htab_lookup(&h, 1002, "beta", eq, &s)->val, 4);
    assert_int_equal(h.count, 3);
    htab_free(&h);
}

static void test_collisions(void **state) {
    (void)state;
    /* Every key gets the same hash, and hashes that land on neighbouring slots: linear
     * probing must still keep them apart by the owner's comparison. */
    store s = {{NULL, "k1", "k2", "k3", "k4", "k5"}};
    htab h;
    assert_int_equal(htab_init(&h, 8), 0);
    for (uint32_t i = 1; i <= 5; i++) {
        htab_slot *sl = htab_lookup(&h, 7, s.keys[i], eq, &s);
        assert_int_equal(sl->val, 0);
        assert_int_equal(htab_fill(&h, sl, 7, i), 0);
    }
    /* a different hash that wraps into the same run */
    htab_slot *sl = htab_lookup(&h, 8, "other", eq, &s);
    assert_int_equal(sl->val, 0);
    for (uint32_t i = 1; i <= 5; i++)
        assert_int_equal(htab_lookup(&h, 7, s.keys[i], eq, &s)->val, i);
    /* same hash, key not stored: the probe ends on an empty slot */
    assert_int_equal(htab_lookup(&h, 7, "k6", eq, &s)->val, 0);
    /* wrap-around at the end of the table */
    store w = {{NULL, "w1", "w2"}};
    htab h2;
    assert_int_equal(htab_init(&h2, 4), 0);
    uint64_t last = h2.mask;
    htab_slot *a = htab_lookup(&h2, last, "w1", eq, &w);
    assert_int_equal(htab_fill(&h2, a, last, 1), 0);
    htab_slot *b = htab_lookup(&h2, last, "w2", eq, &w);
    assert_ptr_equal(b, &h2.slots[0]); /* wrapped to slot 0 */
    assert_int_equal(htab_fill(&h2, b, last, 2), 0);
    assert_int_equal(htab_lookup(&h2, last, "w2", eq, &w)->val, 2);
    htab_free(&h2);
    htab_free(&h);
}

static void test_full(void **state) {
    (void)state;
    static char names[64][16];
    store s = {{0}};
    htab h;
    assert_int_equal(htab_init(&h, 4), 0); /* 16 slots, limit 8 */
    uint32_t i;
    for (i = 1; i <= h.limit; i++) {
        snprintf(names[i], sizeof names[i], "n%u", i);
        s.keys[i] = names[i];
        htab_slot *sl = htab_lookup(&h, i * 31, names[i], eq, &s);
        assert_int_equal(htab_fill(&h, sl, i * 31, i), 0);
    }
    snprintf(names[i], sizeof names[i], "n%u", i);
    s.keys[i] = names[i];
    htab_slot *sl = htab_lookup(&h, i * 31, names[i], eq, &s);
    assert_int_equal(sl->val, 0);
    assert_int_equal(htab_fill(&h, sl, i * 31, i), -ENOSPC);
    assert_int_equal(sl->val, 0); /* a refused fill leaves the slot empty */
    assert_int_equal(h.count, h.limit);
    htab_free(&h);
}

/* htab_prefault touches the whole table and leaves it as it was. */
static void test_prefault(void **state) {
    (void)state;
    store s = {{NULL, "one"}};
    htab h;
    assert_int_equal(htab_init(&h, 1000), 0);
    htab_slot *sl = htab_lookup(&h, 99, "one", eq, &s);
    assert_int_equal(htab_fill(&h, sl, 99, 1), 0);
    assert_int_equal(htab_prefault(&h), (h.mask + 1) * sizeof(htab_slot));
    assert_int_equal(htab_lookup(&h, 99, "one", eq, &s)->val, 1);
    assert_int_equal(h.count, 1);
    for (uint64_t i = 0; i <= h.mask; i++)
        if (i != (99 & h.mask)) assert_int_equal(h.slots[i].val, 0);
    htab_free(&h);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_sizes), cmocka_unit_test(test_insert_find),
        cmocka_unit_test(test_collisions), cmocka_unit_test(test_full),
        cmocka_unit_test(test_prefault),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
