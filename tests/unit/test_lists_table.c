/* Unit tests of the shared-memory list table: the writer (gateway/core/lists_table.[ch]),
 * the one lookup (gateway/lib/lists_lookup.h) and libstopgate's reader
 * (gateway/lib/lists_reader.c, include/stopgate/lists.h), on small tables (1024 slots) under
 * /dev/shm/sgunit-<pid>-<n>, removed again at the end of every test. */
#include "unit.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <sys/mman.h>

#include "clock.h"
#include "lists_table.h"
#include <stopgate/lists.h>

#define CAP 1024u
#define NLISTS 3
static const char NAMES[NLISTS][SGL_LIST_NAME_MAX] = {"mule", "suspect", "protected"};
#define MULE (1ULL << 0)
#define SUSPECT (1ULL << 1)
#define PROTECTED (1ULL << 2)

static unsigned name_seq;

/* A fresh shm name for this test; any file of it is removed by cleanup_shm(). */
static void shm_name(char *out, size_t cap) {
    snprintf(out, cap, "sgunit-%d-%u", (int)getpid(), ++name_seq);
}

static void cleanup_shm(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    unlink(path);
    /* build files left by a failed assertion: <name>.build-<pid>-<gen> for the gens we use */
    for (unsigned g = 0; g < 16; g++) {
        snprintf(path, sizeof path, "/dev/shm/%s.build-%d-%u", name, (int)getpid(), g);
        unlink(path);
    }
}

/* Teardown of every test: whatever a failed assertion left under /dev/shm/sgunit-<pid>-*. */
static int remove_my_shm(void **state) {
    (void)state;
    char prefix[64], path[600];
    int n = snprintf(prefix, sizeof prefix, "sgunit-%d-", (int)getpid());
    DIR *d = opendir("/dev/shm");
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (!strncmp(e->d_name, prefix, (size_t)n)) {
            snprintf(path, sizeof path, "/dev/shm/%s", e->d_name);
            unlink(path);
        }
    closedir(d);
    return 0;
}

static bool shm_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void key_of(const char *bank, const char *acct, sgl_key *k) {
    assert_int_equal(sgl_pack(bank, strlen(bank), acct, strlen(acct), k), 0);
}

/* The first account "<prefix><n>" (n >= *from) whose key's home slot is `slot`; *from moves
 * past it, so repeated calls give distinct keys. */
static void key_for_slot(const char *bank, const char *prefix, uint64_t slot, unsigned *from, char *acct,
                         size_t cap, sgl_key *k) {
    for (unsigned n = *from; n < *from + 10000000u; n++) {
        snprintf(acct, cap, "%s%u", prefix, n);
        key_of(bank, acct, k);
        if ((sgl_hash(k) & (CAP - 1)) == slot) {
            *from = n + 1;
            return;
        }
    }
    fail_msg("no key found for slot %llu", (unsigned long long)slot);
}

static void make_table(lists_table *t, const char *name, uint64_t gen) {
    char err[256] = "";
    int rc = ltab_create(t, name, CAP, NAMES, NLISTS, gen, err, sizeof err);
    if (rc != 0) fail_msg("ltab_create: %s", err);
    assert_false(t->published);
    assert_true(shm_exists(t->build));
}

static void publish(lists_table *t, lists_table *old) {
    char err[256] = "";
    int rc = ltab_publish(t, old, err, sizeof err);
    if (rc != 0) fail_msg("ltab_publish: %s", err);
    assert_true(t->published);
}

static int put(lists_table *t, const char *bank, const char *acct, uint64_t mask, uint8_t score, bool frozen,
               uint32_t expires_s, uint32_t case_ref) {
    sgl_key k;
    key_of(bank, acct, &k);
    ltab_entry e = {.mask = mask, .score = score, .frozen = frozen, .expires_s = expires_s, .case_ref = case_ref};
    return ltab_put(t, &k, &e, clock_now_ms());
}

/* sgl_lookup on the writer's own mapping: 1 found, 0 absent. */
static int wlookup(const lists_table *t, const char *bank, const char *acct, sg_verdict *v) {
    sgl_key k;
    key_of(bank, acct, &k);
    sgl_map m = ltab_map(t);
    memset(v, 0xee, sizeof *v);
    int rc = sgl_lookup(&m, &k, sgl_hash(&k), sgl_now_s(), v);
    if (rc == 0) memset(v, 0, sizeof *v);
    return rc;
}

static int64_t slot_of(const lists_table *t, const sgl_key *k) {
    for (uint64_t i = 0; i <= t->mask; i++) {
        uint64_t w0 = atomic_load(&t->slots[i].w0);
        if (SGL_W0_STATE(w0) != SGL_STATE_USED) continue;
        bool eq = true;
        for (int w = 0; w < SGL_KEY_WORDS; w++)
            if (atomic_load(&t->slots[i].key[w]) != k->w[w]) eq = false;
        if (eq) return (int64_t)i;
    }
    return -1;
}

static uint32_t slot_state(const lists_table *t, uint64_t i) { return SGL_W0_STATE(atomic_load(&t->slots[i].w0)); }

/* --- a stale writer (a cluster member behind the log): readers answer -ESTALE ------------- */

static void test_stale_flag(void **state) {
    (void)state;
    char name[64];
    shm_name(name, sizeof name);
    lists_table t1;
    make_table(&t1, name, 3);
    assert_int_equal(put(&t1, "STL", "LISTED1", MULE, 50, false, 0, 0), 0);
    publish(&t1, NULL);
    sg_lists *l = sg_lists_open(name);
    assert_non_null(l);
    sg_verdict v;
    assert_int_equal(sg_lists_check(l, "STL", "LISTED1", &v), 0);
    assert_int_equal(v.mask, MULE);
    assert_false(ltab_stale(&t1));
    ltab_set_stale(&t1, true);
    /* Every reader entry point says stale and hands out no verdict. */
    memset(&v, 0xee, sizeof v);
    assert_int_equal(sg_lists_check(l, "STL", "LISTED1", &v), -ESTALE);
    assert_int_equal(v.mask, 0);
    const char *banks[2] = {"STL", "STL"}, *accts[2] = {"LISTED1", "NOTHERE"};
    sg_verdict vs[2];
    int rc[2];
    sg_lists_check_many(l, 2, banks, accts, vs, rc);
    assert_int_equal(rc[0], -ESTALE);
    assert_int_equal(rc[1], -ESTALE);
    assert_int_equal(vs[0].mask, 0);
    sg_lists_key keys[2];
    assert_int_equal(sg_lists_key_make("STL", "LISTED1", &keys[0]), 0);
    assert_int_equal(sg_lists_key_make("STL", "NOTHERE", &keys[1]), 0);
    sg_lists_check_keys(l, 2, keys, vs, rc);
    assert_int_equal(rc[0], -ESTALE);
    assert_int_equal(rc[1], -ESTALE);
    /* A rebuilt table (LIST.LOAD, compaction) stays stale: the handle follows it and still says so. */
    lists_table t2;
    make_table(&t2, name, 4);
    assert_int_equal(put(&t2, "STL", "LISTED1", MULE, 50, false, 0, 0), 0);
    publish(&t2, &t1);
    assert_true(ltab_stale(&t2));
    assert_int_equal(sg_lists_check(l, "STL", "LISTED1", &v), -ESTALE);
    assert_int_equal(sg_lists_generation(l), 4);
    /* Current again (re-seeded): answers as before. */
    ltab_set_stale(&t2, false);
    assert_int_equal(sg_lists_check(l, "STL", "LISTED1", &v), 0);
    assert_int_equal(v.mask, MULE);
    sg_lists_close(l);
    ltab_close(&t2, true);
}

/* --- insert and lookup, writer side and reader side ----------------------------------------- */

static void test_insert_lookup(void **state) {
    (void)state;
    char name[64];
    shm_name(name, sizeof name);
    lists_table t;
    make_table(&t, name, 1);
    /* Not published yet: no reader can open it. */
    errno = 0;
    assert_null(sg_lists_open(name));
    assert_int_equal(errno, ENOENT);

    assert_int_equal(put(&t, "ICBK", "6222000011112222", MULE, 77, false, 0, 5), 0);
    assert_int_equal(put(&t, "ICBK", "6222000011113333", MULE | SUSPECT, 12, false, 0, 0), 0);
    assert_int_equal(put(&t, "BOCN", "PAYROLL1", PROTECTED, 0, false, 0, 0), 0);
    assert_int_equal(put(&t, "BOCN", "FROZEN1", 0, 0, true, 0, 0), 0); /* frozen only */
    assert_int_equal(atomic_load(&t.h->count), 4);
    assert_int_equal(t.h->list_count[0], 2);
    assert_int_equal(t.h->list_count[1], 1);
    assert_int_equal(t.h->list_count[2], 1);

    sg_verdict v;
    assert_int_equal(wlookup(&t, "ICBK", "6222000011112222", &v), 1);
    assert_int_equal(v.mask, MULE);
    assert_int_equal(v.score, 77);
    assert_false(v.frozen);
    assert_int_equal(v.case_ref, 5);
    assert_int_equal(wlookup(&t, "ICBK", "6222000011119999", &v), 0);
    assert_int_equal(wlookup(&t, "ICBX", "6222000011112222", &v), 0); /* same account, other bank */

    ltab_entry e;
    sgl_key k;
    key_of("ICBK", "6222000011113333", &k);
    assert_true(ltab_get(&t, &k, &e));
    assert_int_equal(e.mask, MULE | SUSPECT);
    assert_int_equal(e.score, 12);

    publish(&t, NULL);
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    assert_true(shm_exists(path));
    assert_false(shm_exists(t.build)); /* renamed, not copied */
    assert_int_equal(unit_file_size(path), t.size); /* the whole table, as the writer sized it */
    assert_true(t.size >= SGL_HDR_BYTES + CAP * SGL_SLOT_BYTES);

    sg_lists *l = sg_lists_open(name);
    assert_non_null(l);
    assert_int_equal(sg_lists_generation(l), 1);
    assert_string_equal(sg_lists_name(l, 0), "mule");
    assert_string_equal(sg_lists_name(l, 1), "suspect");
    assert_string_equal(sg_lists_name(l, 2), "protected");
    assert_null(sg_lists_name(l, 3));
    assert_null(sg_lists_name(l, 64));

    assert_int_equal(sg_lists_check(l, "ICBK", "6222000011112222", &v), 0);
    assert_int_equal(v.mask, MULE);
    assert_int_equal(v.score, 77);
    assert_false(v.frozen);
    assert_int_equal(sg_lists_check(l, "ICBK", "6222000011113333", &v), 0);
    assert_int_equal(v.mask, MULE | SUSPECT);
    assert_int_equal(v.score, 12);
    assert_int_equal(sg_lists_check(l, "BOCN", "PAYROLL1", &v), 0);
    assert_int_equal(v.mask, PROTECTED);
    assert_int_equal(sg_lists_check(l, "BOCN", "FROZEN1", &v), 0);
    assert_int_equal(v.mask, 0);
    assert_true(v.frozen);
    /* a miss is all zero */
    memset(&v, 0xee, sizeof v);
    assert_int_equal(sg_lists_check(l, "BOCN", "NOTHERE", &v), 0);
    assert_int_equal(v.mask, 0);
    assert_int_equal(v.score, 0);
    assert_false(v.frozen);
    assert_int_equal(v.case_ref, 0);

    /* An in-place update after publishing is seen by the open handle at once. */
    assert_int_equal(put(&t, "ICBK", "6222000011112222", SUSPECT, 99, true, 0, 0), 0);
    assert_int_equal(sg_lists_check(l, "ICBK", "6222000011112222", &v), 0);
    assert_int_equal(v.mask, SUSPECT);
    assert_int_equal(v.score, 99);
    assert_true(v.frozen);
    assert_int_equal(t.h->list_count[0], 1);
    assert_int_equal(t.h->list_count[1], 2);
    /* ... and a new entry too */
    assert_int_equal(put(&t, "ABC", "NEW1", MULE, 1, false, 0, 0), 0);
    assert_int_equal(sg_lists_check(l, "ABC", "NEW1", &v), 0);
    assert_int_equal(v.mask, MULE);
    assert_int_equal(sg_lists_generation(l), 1); /* in place: same generation */

    sg_lists_close(l);
    sg_lists_close(NULL); /* harmless */
    ltab_close(&t, true);
    cleanup_shm(name);
}

/* --- delete, tombstones, reuse; probe chains ----------------------------------------------- */

static void test_delete_tombstone_reuse(void **state) {
    (void)state;
    char name[64];
    shm_name(name, sizeof name);
    lists_table t;
    make_table(&t, name, 1);
    publish(&t, NULL);
    sg_lists *l = sg_lists_open(name);
    assert_non_null(l);

    /* A chain of five keys with the same home slot 100: they fill 100..104. */
    char acct[5][40];
    sgl_key k[5];
    unsigned from = 0;
    for (int i = 0; i < 5; i++) {
        key_for_slot("CHAIN", "A", 100, &from, acct[i], sizeof acct[i], &k[i]);
        assert_int_equal(put(&t, "CHAIN", acct[i], MULE, (uint8_t)(10 + i), false, 0, 0), 0);
    }
    for (int i = 0; i < 5; i++) assert_int_equal(slot_of(&t, &k[i]), 100 + i);
    /* An unrelated key whose home is 102 goes after the chain. */
    char other[40];
    sgl_key ko;
    key_for_slot("OTHER", "B", 102, &from, other, sizeof other, &ko);
    assert_int_equal(put(&t, "OTHER", other, SUSPECT, 50, false, 0, 0), 0);
    assert_int_equal(slot_of(&t, &ko), 105);

    /* Delete the middle of the chain: an entry with no list and not frozen is deleted. */
    assert_int_equal(put(&t, "CHAIN", acct[2], 0, 0, false, 0, 0), 0);
    assert_int_equal(slot_state(&t, 102), SGL_STATE_TOMB);
    assert_int_equal(atomic_load(&t.h->count), 5);
    assert_int_equal(atomic_load(&t.h->tombstones), 1);
    assert_int_equal(t.h->list_count[0], 4);
    sg_verdict v;
    ltab_entry e;
    assert_false(ltab_get(&t, &k[2], &e));
    assert_int_equal(wlookup(&t, "CHAIN", acct[2], &v), 0);
    assert_int_equal(sg_lists_check(l, "CHAIN", acct[2], &v), 0);
    assert_int_equal(v.mask, 0);
    /* Everything behind the tombstone is still found: probing goes past it. */
    for (int i = 3; i < 5; i++) {
        assert_int_equal(wlookup(&t, "CHAIN", acct[i], &v), 1);
        assert_int_equal(v.score, 10 + i);
        assert_int_equal(sg_lists_check(l, "CHAIN", acct[i], &v), 0);
        assert_int_equal(v.mask, MULE);
        assert_int_equal(v.score, 10 + i);
    }
    assert_int_equal(sg_lists_check(l, "OTHER", other, &v), 0);
    assert_int_equal(v.mask, SUSPECT);

    /* Deleting an absent key changes nothing. */
    assert_int_equal(put(&t, "CHAIN", "NEVERTHERE", 0, 0, false, 0, 0), 0);
    assert_int_equal(atomic_load(&t.h->count), 5);
    assert_int_equal(atomic_load(&t.h->tombstones), 1);

    /* Updating a key behind the tombstone updates it in place (no duplicate in the tomb). */
    assert_int_equal(put(&t, "CHAIN", acct[4], MULE | SUSPECT, 44, false, 0, 0), 0);
    assert_int_equal(slot_of(&t, &k[4]), 104);
    assert_int_equal(slot_state(&t, 102), SGL_STATE_TOMB);
    assert_int_equal(atomic_load(&t.h->count), 5);

    /* Re-insert the deleted key: it reuses the tombstone. */
    assert_int_equal(put(&t, "CHAIN", acct[2], SUSPECT, 33, false, 0, 0), 0);
    assert_int_equal(slot_of(&t, &k[2]), 102);
    assert_int_equal(atomic_load(&t.h->tombstones), 0);
    assert_int_equal(atomic_load(&t.h->count), 6);
    assert_int_equal(sg_lists_check(l, "CHAIN", acct[2], &v), 0);
    assert_int_equal(v.mask, SUSPECT);
    assert_int_equal(v.score, 33);

    /* A new key with home 101 also takes the first tombstone on its path. */
    assert_int_equal(put(&t, "CHAIN", acct[1], 0, 0, false, 0, 0), 0); /* tomb at 101 */
    char newk[40];
    sgl_key kn;
    key_for_slot("CHAIN", "C", 101, &from, newk, sizeof newk, &kn);
    assert_int_equal(put(&t, "CHAIN", newk, MULE, 7, false, 0, 0), 0);
    assert_int_equal(slot_of(&t, &kn), 101);
    assert_int_equal(atomic_load(&t.h->tombstones), 0);
    assert_int_equal(sg_lists_check(l, "CHAIN", acct[1], &v), 0);
    assert_int_equal(v.mask, 0);
    assert_int_equal(sg_lists_check(l, "CHAIN", newk, &v), 0);
    assert_int_equal(v.score, 7);

    /* Delete everything: lookups miss, counts go to zero. */
    for (int i = 0; i < 5; i++) put(&t, "CHAIN", acct[i], 0, 0, false, 0, 0);
    put(&t, "CHAIN", newk, 0, 0, false, 0, 0);
    put(&t, "OTHER", other, 0, 0, false, 0, 0);
    assert_int_equal(atomic_load(&t.h->count), 0);
    assert_int_equal(t.h->list_count[0], 0);
    assert_int_equal(t.h->list_count[1], 0);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(sg_lists_check(l, "CHAIN", acct[i], &v), 0);
        assert_int_equal(v.mask, 0);
    }
    /* A frozen-only entry stays when its lists go; unfreezing it deletes it. */
    assert_int_equal(put(&t, "FRZ", "ONE", MULE, 5, true, 0, 0), 0);
    assert_int_equal(put(&t, "FRZ", "ONE", 0, 0, true, 0, 0), 0);
    assert_int_equal(sg_lists_check(l, "FRZ", "ONE", &v), 0);
    assert_true(v.frozen);
    assert_int_equal(v.mask, 0);
    assert_int_equal(put(&t, "FRZ", "ONE", 0, 0, false, 0, 0), 0);
    assert_int_equal(sg_lists_check(l, "FRZ", "ONE", &v), 0);
    assert_false(v.frozen);
    assert_int_equal(atomic_load(&t.h->count), 0);

    sg_lists_close(l);
    ltab_close(&t, true);
    cleanup_shm(name);
}

/* A chain that starts in the last slots wraps around to slot 0. */
static void test_wraparound(void **state) {
    (void)state;
    char name[64];
    shm_name(name, sizeof name);
    lists_table t;
    make_table(&t, name, 1);
    publish(&t, NULL);
    sg_lists *l = sg_lists_open(name);
    assert_non_null(l);

    char acct[4][40];
    sgl_key k[4];
    unsigned from = 0;
    /* two keys homed at 1022, two at 1023: slots 1022, 1023, 0, 1 */
    key_for_slot("WRAP", "X", CAP - 2, &from, acct[0], sizeof acct[0], &k[0]);
    key_for_slot("WRAP", "X", CAP - 1, &from, acct[1], sizeof acct[1], &k[1]);
    key_for_slot("WRAP", "X", CAP - 2, &from, acct[2], sizeof acct[2], &k[2]);
    key_for_slot("WRAP", "X", CAP - 1, &from, acct[3], sizeof acct[3], &k[3]);
    for (int i = 0; i < 4; i++) assert_int_equal(put(&t, "WRAP", acct[i], MULE, (uint8_t)(60 + i), false, 0, 0), 0);
    assert_int_equal(slot_of(&t, &k[0]), CAP - 2);
    assert_int_equal(slot_of(&t, &k[1]), CAP - 1);
    assert_int_equal(slot_of(&t, &k[2]), 0);
    assert_int_equal(slot_of(&t, &k[3]), 1);

    sg_verdict v;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(wlookup(&t, "WRAP", acct[i], &v), 1);
        assert_int_equal(v.score, 60 + i);
        assert_int_equal(sg_lists_check(l, "WRAP", acct[i], &v), 0);
        assert_int_equal(v.mask, MULE);
        assert_int_equal(v.score, 60 + i);
    }
    /* A key homed at slot 0 lands after the wrapped ones, at 2. */
    char z[40];
    sgl_key kz;
    key_for_slot("WRAP", "Z", 0, &from, z, sizeof z, &kz);
    assert_int_equal(put(&t, "WRAP", z, SUSPECT, 9, false, 0, 0), 0);
    assert_int_equal(slot_of(&t, &kz), 2);
    /* A miss homed at 1023 probes across the end and stops at the empty slot 3. */
    char miss[40];
    sgl_key km;
    key_for_slot("WRAP", "M", CAP - 1, &from, miss, sizeof miss, &km);
    assert_int_equal(wlookup(&t, "WRAP", miss, &v), 0);
    assert_int_equal(sg_lists_check(l, "WRAP", miss, &v), 0);
    assert_int_equal(v.mask, 0);

    /* Tombstone in the last slot: the wrapped entries are still found. */
    assert_int_equal(put(&t, "WRAP", acct[1], 0, 0, false, 0, 0), 0);
    assert_int_equal(slot_state(&t, CAP - 1), SGL_STATE_TOMB);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(sg_lists_check(l, "WRAP", acct[i], &v), 0);
        assert_int_equal(v.mask, i == 1 ? 0 : MULE);
    }
    assert_int_equal(sg_lists_check(l, "WRAP", z, &v), 0);
    assert_int_equal(v.mask, SUSPECT);
    /* and the tomb at the end is what the next key homed at 1023 reuses */
    assert_int_equal(put(&t, "WRAP", miss, MULE, 1, false, 0, 0), 0);
    assert_int_equal(slot_of(&t, &km), CAP - 1);
    assert_int_equal(atomic_load(&t.h->tombstones), 0);

    sg_lists_close(l);
    ltab_close(&t, true);
    cleanup_shm(name);
}

/* --- full table -------------------------------------------------------------------------- */

static void test_full_table(void **state) {
    (void)state;
    char name[64];
    shm_name(name, sizeof name);
    lists_table t;
    make_table(&t, name, 1);
    const uint64_t limit = CAP * LISTS_LOAD_FACTOR_PCT / 100; /* 768 */
    assert_true(ltab_room(&t, limit));
    assert_false(ltab_room(&t, limit + 1));
    char acct[40];
    uint64_t n = 0;
    int rc;
    for (;;) {
        snprintf(acct, sizeof acct, "FULL%llu", (unsigned long long)n);
        rc = put(&t, "FULLBANK", acct, MULE, (uint8_t)(n % 101), false, 0, 0);
        if (rc != 0) break;
        n++;
        assert_true(n <= CAP);
    }
    assert_int_equal(rc, -ENOSPC);
    assert_int_equal(n, limit);
    assert_int_equal(atomic_load(&t.h->count), limit);
    assert_false(ltab_room(&t, 1));
    assert_true(ltab_room(&t, 0));
    /* The refused key is not there; every accepted one is. */
    sg_verdict v;
    snprintf(acct, sizeof acct, "FULL%llu", (unsigned long long)n);
    assert_int_equal(wlookup(&t, "FULLBANK", acct, &v), 0);
    publish(&t, NULL);
    sg_lists *l = sg_lists_open(name);
    assert_non_null(l);
    for (uint64_t i = 0; i < n; i++) {
        snprintf(acct, sizeof acct, "FULL%llu", (unsigned long long)i);
        assert_int_equal(sg_lists_check(l, "FULLBANK", acct, &v), 0);
        assert_int_equal(v.mask, MULE);
        assert_int_equal(v.score, i % 101);
    }
    /* Full still allows updating an entry and deleting one. */
    assert_int_equal(put(&t, "FULLBANK", "FULL0", MULE | SUSPECT, 100, false, 0, 0), 0);
    assert_int_equal(put(&t, "FULLBANK", "FULL1", 0, 0, false, 0, 0), 0);
    assert_int_equal(atomic_load(&t.h->count), limit - 1);
    assert_int_equal(atomic_load(&t.h->tombstones), 1);
    /* The tombstone still counts as used: re-inserting the deleted key reuses it ... */
    assert_int_equal(put(&t, "FULLBANK", "FULL1", SUSPECT, 3, false, 0, 0), 0);
    assert_int_equal(atomic_load(&t.h->count), limit);
    assert_int_equal(atomic_load(&t.h->tombstones), 0);
    /* ... and a new key is still refused. */
    snprintf(acct, sizeof acct, "FULL%llu", (unsigned long long)n);
    assert_int_equal(put(&t, "FULLBANK", acct, MULE, 1, false, 0, 0), -ENOSPC);
    assert_int_equal(sg_lists_check(l, "FULLBANK", "FULL1", &v), 0);
    assert_int_equal(v.mask, SUSPECT);
    assert_int_equal(sg_lists_check(l, "FULLBANK", "FULL0", &v), 0);
    assert_int_equal(v.score, 100);

    /* A copy into a table of the same size fits; a copy that would not fit says -ENOSPC. */
    lists_table t2;
    make_table(&t2, name, 2);
    assert_int_equal(put(&t2, "EXTRA", "E1", MULE, 1, false, 0, 0), 0);
    assert_int_equal(ltab_copy(&t2, &t, 0, sgl_now_s(), clock_now_ms(), NULL, NULL), -ENOSPC);
    char t2build[320];
    snprintf(t2build, sizeof t2build, "%s", t2.build);
    ltab_close(&t2, true);
    assert_false(shm_exists(t2build)); /* a table never published leaves no build file */

    /* Tombstones past 1/8 of the slots ask for compaction. */
    assert_false(ltab_needs_compaction(&t));
    for (uint64_t i = 0; i <= CAP / 8; i++) {
        snprintf(acct, sizeof acct, "FULL%llu", (unsigned long long)i);
        assert_int_equal(put(&t, "FULLBANK", acct, 0, 0, false, 0, 0), 0);
    }
    assert_true(ltab_needs_compaction(&t));

    sg_lists_close(l);
    ltab_close(&t, true);
    cleanup_shm(name);
}

/* --- generation switch: build aside with ltab_copy, publish, readers follow ------------- */

static void test_generation_switch(void **state) {
    (void)state;
    char name[64], path[300];
    shm_name(name, sizeof name);
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    lists_table t1;
    make_table(&t1, name, 7);
    int64_t now = sgl_now_s();
    assert_int_equal(put(&t1, "GEN", "OLD1", MULE, 11, false, 0, 0), 0);
    assert_int_equal(put(&t1, "GEN", "OLD2", SUSPECT, 22, false, 0, 0), 0);
    assert_int_equal(put(&t1, "GEN", "BOTH", MULE | SUSPECT, 33, false, 0, 0), 0);
    assert_int_equal(put(&t1, "GEN", "EXPIRED", MULE, 44, false, (uint32_t)(now - 5), 0), 0);
    assert_int_equal(put(&t1, "GEN", "EXPFROZEN", MULE, 45, true, (uint32_t)(now - 5), 0), 0);
    assert_int_equal(put(&t1, "GEN", "LATER", MULE, 46, false, (uint32_t)(now + 3600), 0), 0);
    assert_int_equal(put(&t1, "GEN", "GONE", MULE, 1, false, 0, 0), 0);
    assert_int_equal(put(&t1, "GEN", "GONE", 0, 0, false, 0, 0), 0); /* a tombstone */
    publish(&t1, NULL);

    sg_lists *l = sg_lists_open(name);
    assert_non_null(l);
    assert_int_equal(sg_lists_generation(l), 7);
    sg_verdict v;
    assert_int_equal(sg_lists_check(l, "GEN", "OLD1", &v), 0);
    assert_int_equal(v.mask, MULE);

    /* Map the old file ourselves to see its superseded flag after the switch. */
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    size_t size = (size_t)unit_file_size(path);
    const sgl_header *oldh = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    assert_true(oldh != MAP_FAILED);
    assert_int_equal(atomic_load(&oldh->superseded), 0);

    /* Rebuild: drop list `suspect` (clear_mask), add a new entry, publish over t1. */
    lists_table t2;
    make_table(&t2, name, 8);
    assert_int_equal(ltab_copy(&t2, &t1, SUSPECT, now, clock_now_ms(), NULL, NULL), 0);
    assert_int_equal(put(&t2, "GEN", "NEW1", SUSPECT, 55, false, 0, 0), 0);
    /* Built aside: the reader does not see it yet. */
    assert_int_equal(sg_lists_check(l, "GEN", "NEW1", &v), 0);
    assert_int_equal(v.mask, 0);
    assert_int_equal(sg_lists_generation(l), 7);
    /* copy dropped: OLD2 (only on suspect), EXPIRED, the tombstone; kept EXPFROZEN as frozen */
    assert_int_equal(atomic_load(&t2.h->tombstones), 0);
    assert_int_equal(atomic_load(&t2.h->count), 5); /* OLD1, BOTH, EXPFROZEN, LATER, NEW1 */
    char t2build[320];
    snprintf(t2build, sizeof t2build, "%s", t2.build);
    publish(&t2, &t1);
    assert_null(t1.base); /* the old table was closed by the publish */
    assert_false(shm_exists(t2build));
    assert_int_equal(atomic_load(&oldh->superseded), 1);
    munmap((void *)oldh, size);

    /* The open handle follows on its next check. */
    assert_int_equal(sg_lists_check(l, "GEN", "NEW1", &v), 0);
    assert_int_equal(v.mask, SUSPECT);
    assert_int_equal(v.score, 55);
    assert_int_equal(sg_lists_generation(l), 8);
    assert_int_equal(sg_lists_check(l, "GEN", "OLD1", &v), 0);
    assert_int_equal(v.mask, MULE);
    assert_int_equal(v.score, 11);
    assert_int_equal(sg_lists_check(l, "GEN", "OLD2", &v), 0);
    assert_int_equal(v.mask, 0);
    assert_int_equal(sg_lists_check(l, "GEN", "BOTH", &v), 0);
    assert_int_equal(v.mask, MULE);
    assert_int_equal(sg_lists_check(l, "GEN", "EXPFROZEN", &v), 0);
    assert_int_equal(v.mask, 0);
    assert_true(v.frozen);
    assert_int_equal(sg_lists_check(l, "GEN", "LATER", &v), 0);
    assert_int_equal(v.mask, MULE);
    assert_int_equal(sg_lists_check(l, "GEN", "EXPIRED", &v), 0);
    assert_int_equal(v.mask, 0);
    assert_false(v.frozen);

    /* A second handle opened now sees generation 8 directly; a third publish moves both. */
    sg_lists *l2 = sg_lists_open(name);
    assert_non_null(l2);
    assert_int_equal(sg_lists_generation(l2), 8);
    lists_table t3;
    make_table(&t3, name, 9);
    assert_int_equal(put(&t3, "GEN", "ONLY3", PROTECTED, 0, false, 0, 0), 0);
    publish(&t3, &t2);
    sg_verdict vs[2];
    const char *banks[2] = {"GEN", "GEN"}, *accts[2] = {"ONLY3", "OLD1"};
    int rcs[2];
    sg_lists_check_many(l2, 2, banks, accts, vs, rcs); /* check_many follows the writer too */
    assert_int_equal(sg_lists_generation(l2), 9);
    assert_int_equal(rcs[0], 0);
    assert_int_equal(vs[0].mask, PROTECTED);
    assert_int_equal(vs[1].mask, 0);
    assert_int_equal(sg_lists_check(l, "GEN", "ONLY3", &v), 0);
    assert_int_equal(v.mask, PROTECTED);
    assert_int_equal(sg_lists_generation(l), 9);

    /* A writer that restarts publishes without having the old table mapped (old = NULL): it
     * must still mark the previous file superseded. */
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    oldh = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    assert_true(oldh != MAP_FAILED);
    lists_table t4;
    make_table(&t4, name, 10);
    assert_int_equal(put(&t4, "GEN", "ONLY4", MULE, 4, false, 0, 0), 0);
    publish(&t4, NULL);
    assert_int_equal(atomic_load(&oldh->superseded), 1);
    munmap((void *)oldh, size);
    assert_int_equal(sg_lists_check(l, "GEN", "ONLY4", &v), 0);
    assert_int_equal(v.mask, MULE);
    assert_int_equal(sg_lists_generation(l), 10);

    sg_lists_close(l);
    sg_lists_close(l2);
    ltab_close(&t3, true);
    ltab_close(&t4, true);
    cleanup_shm(name);
}

/* --- expiry -------------------------------------------------------------------------------- */

static void test_expiry(void **state) {
    (void)state;
    char name[64];
    shm_name(name, sizeof name);
    lists_table t;
    make_table(&t, name, 1);
    int64_t now = sgl_now_s();
    assert_int_equal(put(&t, "EXP", "PASTFROZEN", MULE | SUSPECT, 90, true, (uint32_t)(now - 1), 3), 0);
    assert_int_equal(put(&t, "EXP", "PAST", MULE, 80, false, (uint32_t)(now - 100), 4), 0);
    assert_int_equal(put(&t, "EXP", "FUTURE", MULE, 70, false, (uint32_t)(now + 100), 5), 0);
    assert_int_equal(put(&t, "EXP", "NEVER", SUSPECT, 60, false, 0, 0), 0);
    publish(&t, NULL);
    sg_lists *l = sg_lists_open(name);
    assert_non_null(l);
    sg_verdict v;

    assert_int_equal(wlookup(&t, "EXP", "PASTFROZEN", &v), 1);
    assert_int_equal(v.mask, 0);
    assert_int_equal(v.score, 0);
    assert_int_equal(v.case_ref, 0);
    assert_true(v.frozen);
    assert_int_equal(sg_lists_check(l, "EXP", "PASTFROZEN", &v), 0);
    assert_int_equal(v.mask, 0);
    assert_int_equal(v.score, 0);
    assert_true(v.frozen);

    assert_int_equal(sg_lists_check(l, "EXP", "PAST", &v), 0);
    assert_int_equal(v.mask, 0);
    assert_int_equal(v.score, 0);
    assert_false(v.frozen);
    assert_int_equal(v.case_ref, 0);

    assert_int_equal(sg_lists_check(l, "EXP", "FUTURE", &v), 0);
    assert_int_equal(v.mask, MULE);
    assert_int_equal(v.score, 70);
    assert_int_equal(v.case_ref, 5);

    assert_int_equal(sg_lists_check(l, "EXP", "NEVER", &v), 0);
    assert_int_equal(v.mask, SUSPECT);

    /* sgl_lookup judges against the time it is given. */
    sgl_key k;
    key_of("EXP", "FUTURE", &k);
    sgl_map m = ltab_map(&t);
    assert_int_equal(sgl_lookup(&m, &k, sgl_hash(&k), now + 99, &v), 1);
    assert_int_equal(v.mask, MULE);
    assert_int_equal(sgl_lookup(&m, &k, sgl_hash(&k), now + 100, &v), 1);
    assert_int_equal(v.mask, 0);
    key_of("EXP", "PAST", &k);
    assert_int_equal(sgl_lookup(&m, &k, sgl_hash(&k), now - 200, &v), 1);
    assert_int_equal(v.mask, MULE);
    assert_int_equal(v.score, 80);

    sg_lists_close(l);
    ltab_close(&t, true);
    cleanup_shm(name);
}

/* --- key packing and normalisation ---------------------------------------------------------- */

static int pack(const char *bank, const char *acct, sgl_key *k) {
    return sgl_pack(bank, strlen(bank), acct, strlen(acct), k);
}

static void test_key_packing(void **state) {
    (void)state;
    sgl_key a, b;
    assert_int_equal(pack("ICBK", "AB12CD", &a), 0);
    assert_int_equal(pack("icbk", "ab12cd", &b), 0);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(pack("ICBK", " ab-12 cd- ", &b), 0);
    assert_memory_equal(&a, &b, sizeof a);
    assert_int_equal(pack("ICBK", "AB12CE", &b), 0);
    assert_memory_not_equal(&a, &b, sizeof a);
    /* bank and account do not run into each other */
    assert_int_equal(pack("AB", "C1", &a), 0);
    assert_int_equal(pack("A", "BC1", &b), 0);
    assert_memory_not_equal(&a, &b, sizeof a);
    /* the exact packing of the layout: '0' = 1, 'A' = 11, bank from symbol 0, account from 11 */
    assert_int_equal(pack("A0", "Z", &a), 0);
    assert_int_equal(a.w[0], 11ULL | (1ULL << 6));
    assert_int_equal(a.w[1], 36ULL << 6); /* symbol 11 = word 1, position 1 */
    assert_int_equal(a.w[2] | a.w[3] | a.w[4], 0);

    /* limits: bank 1-11, account 1-34 symbols after normalisation */
    assert_int_equal(pack("ABCDEFGHIJK", "1", &a), 0);
    assert_int_equal(pack("ABCDEFGHIJKL", "1", &a), -1);
    assert_int_equal(pack("", "1", &a), -1);
    char acct[80];
    memset(acct, '9', 34);
    acct[34] = 0;
    assert_int_equal(pack("B", acct, &a), 0);
    char bank[12], back[35];
    sgl_unpack(&a, bank, back);
    assert_string_equal(bank, "B");
    assert_string_equal(back, acct);
    acct[34] = '9';
    acct[35] = 0;
    assert_int_equal(pack("B", acct, &a), -1);
    /* 34 symbols plus separators is fine */
    snprintf(acct, sizeof acct, "%s", "1234-5678-9012-3456-7890-1234-5678-9012-34");
    assert_int_equal(pack("B", acct, &a), 0);
    sgl_unpack(&a, bank, back);
    assert_string_equal(back, "1234567890123456789012345678901234");
    assert_int_equal(pack("B", "", &a), -1);
    assert_int_equal(pack("B", " - -", &a), -1);
    /* bad characters */
    assert_int_equal(pack("B", "12_34", &a), -1);
    assert_int_equal(pack("B", "12.34", &a), -1);
    assert_int_equal(pack("B", "12\t34", &a), -1);
    assert_int_equal(pack("B", "12\xc3\xa9" "34", &a), -1);
    assert_int_equal(pack("B-1", "1234", &a), -1); /* '-' is dropped in accounts only */
    assert_int_equal(pack("B 1", "1234", &a), -1);
    assert_int_equal(pack("B!", "1234", &a), -1);
    /* unpack round trip upper-cases */
    assert_int_equal(pack("icbk", "de89 3704-0044", &a), 0);
    sgl_unpack(&a, bank, back);
    assert_string_equal(bank, "ICBK");
    assert_string_equal(back, "DE8937040044");

    /* the reader normalises the same way */
    char name[64];
    shm_name(name, sizeof name);
    lists_table t;
    make_table(&t, name, 1);
    assert_int_equal(put(&t, "ICBK", "DE8937040044", MULE, 42, false, 0, 0), 0);
    publish(&t, NULL);
    sg_lists *l = sg_lists_open(name);
    assert_non_null(l);
    sg_verdict v;
    const char *forms[] = {"DE8937040044", "de8937040044", "DE89 3704 0044", "de89-3704-0044", " DE89-3704 0044 "};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        assert_int_equal(sg_lists_check(l, "icbk", forms[i], &v), 0);
        assert_int_equal(v.mask, MULE);
        assert_int_equal(v.score, 42);
    }
    const char *bad[][2] = {{"ICBK", "DE89_3704"}, {"ICBK", ""},       {"", "DE8937040044"}, {"IC-BK", "DE8937040044"},
                            {"ICBK", "DE89/37"},   {"ICBKICBKICBK", "1"}, {"ICBK", "----"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&v, 0xee, sizeof v);
        assert_int_equal(sg_lists_check(l, bad[i][0], bad[i][1], &v), -EINVAL);
        assert_int_equal(v.mask, 0); /* out is cleared on a refusal too */
    }
    assert_int_equal(sg_lists_check(l, NULL, "1", &v), -EINVAL);
    assert_int_equal(sg_lists_check(l, "ICBK", NULL, &v), -EINVAL);
    sg_lists_close(l);
    ltab_close(&t, true);
    cleanup_shm(name);
}

/* --- files that are not a table ------------------------------------------------------------- */

static void write_shm(const char *name, const void *data, size_t n) {
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    unlink(path); /* a new file, as an intruder or a crash would leave: open mappings keep the old one */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    if (n) assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
}

/* Issue 15 item 4: a table is mode 0640 whatever the umask (0644 let every local user read
 * the accounts under investigation), and keeps the group it was given once published. */
static void test_file_mode_and_group(void **state) {
    (void)state;
    char name[64], err[256] = "";
    shm_name(name, sizeof name);
    mode_t old_umask = umask(077);
    lists_table t;
    make_table(&t, name, 1);
    umask(old_umask);
    gid_t gid = getgid() == 0 ? 12345 : getgid(); /* root may give it away; others only to their groups */
    assert_int_equal(ltab_set_group(&t, (int64_t)gid, err, sizeof err), 0);
    publish(&t, NULL);
    struct stat st;
    assert_int_equal(stat(t.path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_int_equal(st.st_gid, gid);
    ltab_close(&t, true);
    cleanup_shm(name);
}

static void test_bad_files(void **state) {
    (void)state;
    char name[64], path[300];
    shm_name(name, sizeof name);
    snprintf(path, sizeof path, "/dev/shm/%s", name);

    errno = 0;
    assert_null(sg_lists_open(name));
    assert_int_equal(errno, ENOENT);
    errno = 0;
    assert_null(sg_lists_open(""));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(sg_lists_open("../etc/passwd"));
    assert_int_equal(errno, EINVAL);

    /* A valid table to take apart. */
    lists_table t;
    make_table(&t, name, 1);
    assert_int_equal(put(&t, "BAD", "ONE", MULE, 1, false, 0, 0), 0);
    publish(&t, NULL);
    size_t size;
    uint8_t *good = unit_read_file(path, &size);
    assert_int_equal(size, t.size);
    ltab_close(&t, true);
    sg_lists *l = sg_lists_open(name);
    assert_non_null(l);
    sg_lists_close(l);

    /* truncated in the slots */
    assert_int_equal(truncate(path, (off_t)(size - SGL_SLOT_BYTES)), 0);
    errno = 0;
    assert_null(sg_lists_open(name));
    assert_int_equal(errno, EBADMSG);
    /* truncated in the header, and empty */
    write_shm(name, good, 100);
    errno = 0;
    assert_null(sg_lists_open(name));
    assert_int_equal(errno, EBADMSG);
    write_shm(name, good, 0);
    errno = 0;
    assert_null(sg_lists_open(name));
    assert_int_equal(errno, EBADMSG);
    /* padded */
    uint8_t *big = calloc(1, size + 4096);
    assert_non_null(big);
    memcpy(big, good, size);
    write_shm(name, big, size + 4096);
    errno = 0;
    assert_null(sg_lists_open(name));
    assert_int_equal(errno, EBADMSG);
    free(big);
    /* foreign: wrong magic, right size */
    uint8_t *bad = malloc(size);
    assert_non_null(bad);
    memcpy(bad, good, size);
    memcpy(bad, "NOTALIST", 8);
    write_shm(name, bad, size);
    errno = 0;
    assert_null(sg_lists_open(name));
    assert_int_equal(errno, EBADMSG);
    /* all zeros */
    memset(bad, 0, size);
    write_shm(name, bad, size);
    errno = 0;
    assert_null(sg_lists_open(name));
    assert_int_equal(errno, EBADMSG);
    /* capacity not a power of two */
    memcpy(bad, good, size);
    ((sgl_header *)bad)->capacity = CAP - 1;
    write_shm(name, bad, size);
    errno = 0;
    assert_null(sg_lists_open(name));
    assert_int_equal(errno, EBADMSG);
    /* another layout version */
    memcpy(bad, good, size);
    ((sgl_header *)bad)->version = SGL_VERSION + 1;
    write_shm(name, bad, size);
    errno = 0;
    assert_null(sg_lists_open(name));
    assert_int_equal(errno, EPROTO);
    /* the good bytes again: opens */
    write_shm(name, good, size);
    l = sg_lists_open(name);
    assert_non_null(l);
    sg_verdict v;
    assert_int_equal(sg_lists_check(l, "BAD", "ONE", &v), 0);
    assert_int_equal(v.mask, MULE);

    /* A writer publishing over a foreign file replaces it; over a truncated one too. */
    write_shm(name, bad, size); /* version mismatch: not marked, simply replaced */
    lists_table t2;
    make_table(&t2, name, 2);
    assert_int_equal(put(&t2, "BAD", "TWO", SUSPECT, 2, false, 0, 0), 0);
    publish(&t2, NULL);
    sg_lists *l2 = sg_lists_open(name);
    assert_non_null(l2);
    assert_int_equal(sg_lists_check(l2, "BAD", "TWO", &v), 0);
    assert_int_equal(v.mask, SUSPECT);
    sg_lists_close(l2);
    ltab_close(&t2, true);
    write_shm(name, good, 4096 + 64); /* truncated */
    lists_table t3;
    make_table(&t3, name, 3);
    publish(&t3, NULL);
    l2 = sg_lists_open(name);
    assert_non_null(l2);
    assert_int_equal(sg_lists_generation(l2), 3);
    sg_lists_close(l2);
    ltab_close(&t3, true);

    sg_lists_close(l);
    free(bad);
    free(good);
    cleanup_shm(name);
}

/* --- check_many agrees with check -------------------------------------------------------------- */

static void test_check_many(void **state) {
    (void)state;
    char name[64];
    shm_name(name, sizeof name);
    lists_table t;
    make_table(&t, name, 1);
    int64_t now = sgl_now_s();
    enum { N = 200 };
    static char acct[N][40];
    const char *banks[N], *accts[N];
    for (int i = 0; i < N; i++) {
        snprintf(acct[i], sizeof acct[i], "%s%d", i % 3 == 0 ? "ac-" : "AC", i);
        banks[i] = i % 7 == 0 ? "bank" : "BANK";
        accts[i] = acct[i];
        switch (i % 6) {
        case 0: put(&t, "BANK", acct[i], MULE, (uint8_t)(i % 101), false, 0, 0); break;
        case 1: put(&t, "BANK", acct[i], SUSPECT | PROTECTED, (uint8_t)(i % 101), true, 0, 0); break;
        case 2: put(&t, "BANK", acct[i], MULE, 50, i % 4 == 0, (uint32_t)(now - 10), 0); break; /* expired */
        case 3: put(&t, "BANK", acct[i], 0, 0, true, 0, 0); break;                         /* frozen only */
        default: break;                                                                    /* absent */
        }
    }
    /* malformed ones in the batch */
    banks[17] = "BA NK";
    accts[33] = "AC_33";
    accts[50] = "";
    banks[51] = NULL;
    accts[52] = NULL;
    publish(&t, NULL);
    sg_lists *l = sg_lists_open(name);
    assert_non_null(l);
    sg_verdict many[N];
    int rc[N];
    memset(many, 0xee, sizeof many);
    sg_lists_check_many(l, N, banks, accts, many, rc);
    int hits = 0, bad = 0;
    for (int i = 0; i < N; i++) {
        sg_verdict one;
        int r1 = (banks[i] && accts[i]) ? sg_lists_check(l, banks[i], accts[i], &one) : -EINVAL;
        if (!banks[i] || !accts[i]) memset(&one, 0, sizeof one);
        assert_int_equal(rc[i], r1);
        assert_int_equal(many[i].mask, one.mask);
        assert_int_equal(many[i].score, one.score);
        assert_int_equal(many[i].frozen, one.frozen);
        assert_int_equal(many[i].case_ref, one.case_ref);
        if (r1 == -EINVAL) bad++;
        if (one.mask) hits++;
    }
    assert_int_equal(bad, 5);
    assert_true(hits > 40);
    assert_int_equal(rc[0], 0);
    assert_int_equal(many[0].mask, MULE);
    assert_int_equal(many[1].mask, SUSPECT | PROTECTED);
    assert_true(many[1].frozen);
    assert_int_equal(many[2].mask, 0); /* expired */
    assert_int_equal(many[3].mask, 0);
    assert_true(many[3].frozen);
    assert_int_equal(many[4].mask, 0);
    assert_false(many[4].frozen);
    /* n = 0 does nothing */
    sg_lists_check_many(l, 0, banks, accts, many, rc);
    sg_lists_close(l);
    ltab_close(&t, true);
    cleanup_shm(name);
}

/* --- keys made once (sg_lists_key_make / sg_lists_check_keys) ----------------------------------- */

/* check_keys agrees with check on every kind of entry, across phase boundaries (n = 200), and
 * refuses what is not a key this library made; a kept key follows a republished table. */
static void test_check_keys(void **state) {
    (void)state;
    char name[64];
    shm_name(name, sizeof name);
    lists_table t;
    make_table(&t, name, 1);
    int64_t now = sgl_now_s();
    enum { N = 200 };
    static char acct[N][40];
    static sg_lists_key keys[N];
    const char *banks[N], *accts[N];
    for (int i = 0; i < N; i++) {
        snprintf(acct[i], sizeof acct[i], "%s%d", i % 3 == 0 ? "ac-" : "AC", i);
        banks[i] = i % 7 == 0 ? "bank" : "BANK";
        accts[i] = acct[i];
        switch (i % 5) {
        case 0: put(&t, "BANK", acct[i], MULE, (uint8_t)(i % 101), false, 0, (uint32_t)i); break;
        case 1: put(&t, "BANK", acct[i], SUSPECT, 9, true, 0, 0); break;
        case 2: put(&t, "BANK", acct[i], MULE, 50, false, (uint32_t)(now - 10), 0); break; /* expired */
        default: break;                                                                  /* absent */
        }
    }
    banks[17] = "BA NK";
    accts[33] = "AC_33";
    banks[51] = NULL;
    publish(&t, NULL);
    sg_lists *l = sg_lists_open(name);
    assert_non_null(l);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        memset(&keys[i], 0x5a, sizeof keys[i]);
        int r = sg_lists_key_make(banks[i], accts[i], &keys[i]);
        if (r != 0) {
            assert_int_equal(r, -EINVAL);
            bad++;
        }
    }
    assert_int_equal(bad, 3);
    memset(&keys[60], 0, sizeof keys[60]); /* zeroed memory is no key */
    keys[61].opaque[6] ^= 1;               /* nor one of another layout version */
    sg_verdict out[N];
    int rc[N];
    memset(out, 0xee, sizeof out);
    sg_lists_check_keys(l, N, keys, out, rc);
    int hits = 0;
    for (int i = 0; i < N; i++) {
        sg_verdict one;
        int r1 = banks[i] && i != 60 && i != 61 ? sg_lists_check(l, banks[i], accts[i], &one) : -EINVAL;
        if (r1 == -EINVAL) memset(&one, 0, sizeof one);
        assert_int_equal(rc[i], r1);
        assert_memory_equal(&out[i], &one, sizeof one);
        hits += one.mask != 0;
    }
    assert_int_equal(rc[60], -EINVAL);
    assert_int_equal(rc[61], -EINVAL);
    assert_true(hits > 30);
    assert_int_equal(out[0].mask, MULE);
    assert_int_equal(out[0].case_ref, 0);
    assert_int_equal(out[5].case_ref, 5);
    assert_true(out[1].frozen);
    assert_int_equal(out[2].mask, 0); /* expired */
    /* Odd batch sizes, 1 and 0 (n = 0 writes nothing). */
    sg_lists_check_keys(l, 1, &keys[5], out, rc);
    assert_int_equal(rc[0], 0);
    assert_int_equal(out[0].mask, MULE);
    rc[0] = 12345;
    sg_lists_check_keys(l, 0, keys, out, rc);
    assert_int_equal(rc[0], 12345);
    /* The writer republishes: the same keys read the new table. */
    lists_table t2;
    make_table(&t2, name, 2);
    assert_int_equal(put(&t2, "BANK", acct[3], PROTECTED, 7, false, 0, 0), 0);
    publish(&t2, &t);
    sg_lists_check_keys(l, 6, keys, out, rc);
    assert_int_equal(sg_lists_generation(l), 2);
    assert_int_equal(out[0].mask, 0);
    assert_int_equal(out[3].mask, PROTECTED);
    assert_int_equal(out[3].score, 7);
    sg_lists_close(l);
    ltab_close(&t2, true);
    cleanup_shm(name);
}

/* --- huge pages (docs/lists.md "Huge pages") ------------------------------------------------ */

/* kB of ShmemPmdMapped in the mapping that starts at p (0 when none or not found). */
static long pmd_kb(const void *p) {
    FILE *f = fopen("/proc/self/smaps", "r");
    assert_non_null(f);
    char line[512], want[32];
    snprintf(want, sizeof want, "%lx-", (unsigned long)(uintptr_t)p);
    bool in = false;
    long kb = 0;
    while (fgets(line, sizeof line, f)) {
        if (strchr(line, '-') && strchr(line, ' ') && strchr(line, '-') < strchr(line, ' ') &&
            isxdigit((unsigned char)line[0]))
            in = !strncmp(line, want, strlen(want));
        else if (in && !strncmp(line, "ShmemPmdMapped:", 15))
            kb = strtol(line + 15, NULL, 10);
    }
    fclose(f);
    return kb;
}

/* A table past SGL_HUGE_MIN is mapped 2 MiB-aligned by the writer and by every reader, so the
 * huge pages the writer asked for reach the readers' page tables; lookups over it are exact. */
static void test_huge_pages(void **state) {
    (void)state;
    char name[64], err[256] = "";
    shm_name(name, sizeof name);
    enum {
        HCAP = 1u << 18,
        N = 20000
    }; /* 17 MiB file */
    assert_true(sgl_file_bytes(HCAP) >= SGL_HUGE_MIN);
    lists_table t;
    if (ltab_create(&t, name, HCAP, NAMES, NLISTS, 1, err, sizeof err) != 0)
        fail_msg("ltab_create: %s", err);
    assert_int_equal((uintptr_t)t.base % SGL_HUGE_BYTES, 0);
    char acct[40];
    for (int i = 0; i < N; i++) {
        snprintf(acct, sizeof acct, "HP%d", i);
        assert_int_equal(put(&t, "BANK", acct, MULE, (uint8_t)(i % 101), false, 0, 0), 0);
    }
    publish(&t, NULL);
    char path[300];
    snprintf(path, sizeof path, "/dev/shm/%s", name);
    sgl_map m;
    assert_int_equal(sgl_map_open(path, &m), 0);
    assert_int_equal((uintptr_t)m.base % SGL_HUGE_BYTES, 0);
    long wkb = pmd_kb(t.base), rkb = pmd_kb(m.base);
    if (wkb == 0) {
        /* A kernel without MADV_COLLAPSE (< 6.1) or shmem_enabled "deny": 4 KiB pages, still
         * correct. */
        print_message(
            "note: this host gave the table no huge pages; checking alignment and lookups only\n");
    } else {
        assert_true(wkb >= 8 * 1024); /* the 2 MiB pieces of a 17 MiB file: 8 of them */
        assert_int_equal(rkb, wkb);
    }
    sgl_map_close(&m);
    sg_lists *l = sg_lists_open(name);
    assert_non_null(l);
    static sg_lists_key keys[64];
    sg_verdict out[64];
    int rc[64];
    for (int base = 0; base < 2 * N; base += 64) {
        for (int j = 0; j < 64; j++) {
            snprintf(acct, sizeof acct, "HP%d", base + j);
            assert_int_equal(sg_lists_key_make("BANK", acct, &keys[j]), 0);
        }
        sg_lists_check_keys(l, 64, keys, out, rc);
        for (int j = 0; j < 64; j++) {
            assert_int_equal(rc[j], 0);
            assert_int_equal(out[j].mask, base + j < N ? MULE : 0);
            if (base + j < N) assert_int_equal(out[j].score, (base + j) % 101);
        }
    }
    sg_lists_close(l);
    ltab_close(&t, true);
    cleanup_shm(name);
}

/* --- tag false positives: the full key decides ------------------------------------------ */

/* The first account "<prefix><n>" (n >= *from) whose key has home `slot` and fingerprint fp. */
static void key_for_home_fp(const char *bank, const char *prefix, uint64_t slot, uint8_t fp, unsigned *from,
                            char *acct, size_t cap, sgl_key *k) {
    for (unsigned n = *from; n < *from + 100000000u; n++) {
        snprintf(acct, cap, "%s%u", prefix, n);
        key_of(bank, acct, k);
        uint64_t h = sgl_hash(k);
        if ((h & (CAP - 1)) == slot && sgl_fp(h) == fp) {
            *from = n + 1;
            return;
        }
    }
    fail_msg("no key found for slot %llu fp %u", (unsigned long long)slot, fp);
}

/* One verdict through every reader entry point (sg_lists_check, check_many, check_keys) and
 * the writer's sgl_lookup; they must agree. Returns the verdict's mask. */
static uint64_t check_all_ways(const lists_table *t, sg_lists *l, const char *bank, const char *acct,
                               sg_verdict *out) {
    sg_verdict v1, v2, v3, vw;
    int rc2, rc3;
    assert_int_equal(sg_lists_check(l, bank, acct, &v1), 0);
    sg_lists_check_many(l, 1, &bank, &acct, &v2, &rc2);
    assert_int_equal(rc2, 0);
    sg_lists_key key;
    assert_int_equal(sg_lists_key_make(bank, acct, &key), 0);
    sg_lists_check_keys(l, 1, &key, &v3, &rc3);
    assert_int_equal(rc3, 0);
    int w = wlookup(t, bank, acct, &vw);
    assert_true(w == 0 || w == 1);
    assert_memory_equal(&v1, &v2, sizeof v1);
    assert_memory_equal(&v1, &v3, sizeof v1);
    assert_int_equal(v1.mask, vw.mask);
    assert_int_equal(v1.score, vw.score);
    *out = v1;
    return v1.mask;
}

/* Keys with the same home and the same 8-bit fingerprint: a tag match that is not the key
 * (a false positive) reads the slot, compares the whole key and walks on. */
static void test_tag_false_positive(void **state) {
    (void)state;
    char name[64];
    shm_name(name, sizeof name);
    lists_table t;
    make_table(&t, name, 1);
    publish(&t, NULL);
    sg_lists *l = sg_lists_open(name);
    assert_non_null(l);
    char a[40], b[40], c[40];
    sgl_key ka, kb, kc;
    unsigned from = 0;
    key_for_slot("FPB", "A", 200, &from, a, sizeof a, &ka);
    uint8_t fp = sgl_fp(sgl_hash(&ka));
    key_for_home_fp("FPB", "B", 200, fp, &from, b, sizeof b, &kb);
    key_for_home_fp("FPB", "C", 200, fp, &from, c, sizeof c, &kc);
    assert_memory_not_equal(&ka, &kb, sizeof ka);
    assert_int_equal(put(&t, "FPB", a, MULE, 11, false, 0, 0), 0);
    assert_int_equal(put(&t, "FPB", b, SUSPECT, 22, false, 0, 0), 0);
    assert_int_equal(slot_of(&t, &ka), 200);
    assert_int_equal(slot_of(&t, &kb), 201);
    assert_int_equal(atomic_load(&t.tags[200]), fp);
    assert_int_equal(atomic_load(&t.tags[201]), fp);
    sg_verdict v;
    assert_int_equal(check_all_ways(&t, l, "FPB", a, &v), MULE);
    assert_int_equal(v.score, 11);
    assert_int_equal(check_all_ways(&t, l, "FPB", b, &v), SUSPECT); /* past A's matching tag */
    assert_int_equal(v.score, 22);
    assert_int_equal(check_all_ways(&t, l, "FPB", c, &v), 0); /* two tag matches, no key */
    /* In one batch, mixed with other lookups (the pipelined path, several phases). */
    enum { N = 40 };
    const char *banks[N], *accts[N];
    char other[N][24];
    for (int i = 0; i < N; i++) {
        snprintf(other[i], sizeof other[i], "OTHER%d", i);
        banks[i] = "FPB";
        accts[i] = i % 3 == 0 ? a : i % 3 == 1 ? b : i % 6 == 2 ? c : other[i];
    }
    sg_verdict vs[N];
    int rcs[N];
    sg_lists_check_many(l, N, banks, accts, vs, rcs);
    for (int i = 0; i < N; i++) {
        assert_int_equal(rcs[i], 0);
        assert_int_equal(vs[i].mask, accts[i] == a ? MULE : accts[i] == b ? SUSPECT : 0);
    }
    /* Delete A: its tag becomes a tombstone, B is found past it, C still absent; C re-uses it. */
    assert_int_equal(put(&t, "FPB", a, 0, 0, false, 0, 0), 0);
    assert_int_equal(atomic_load(&t.tags[200]), SGL_TAG_TOMB);
    assert_int_equal(check_all_ways(&t, l, "FPB", a, &v), 0);
    assert_int_equal(check_all_ways(&t, l, "FPB", b, &v), SUSPECT);
    assert_int_equal(check_all_ways(&t, l, "FPB", c, &v), 0);
    assert_int_equal(put(&t, "FPB", c, PROTECTED, 33, false, 0, 0), 0);
    assert_int_equal(slot_of(&t, &kc), 200);
    assert_int_equal(check_all_ways(&t, l, "FPB", c, &v), PROTECTED);
    assert_int_equal(v.score, 33);
    assert_int_equal(check_all_ways(&t, l, "FPB", b, &v), SUSPECT);
    sg_lists_close(l);
    ltab_close(&t, true);
    cleanup_shm(name);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_insert_lookup, remove_my_shm),
        cmocka_unit_test_teardown(test_delete_tombstone_reuse, remove_my_shm),
        cmocka_unit_test_teardown(test_wraparound, remove_my_shm),
        cmocka_unit_test_teardown(test_full_table, remove_my_shm),
        cmocka_unit_test_teardown(test_generation_switch, remove_my_shm),
        cmocka_unit_test_teardown(test_expiry, remove_my_shm),
        cmocka_unit_test_teardown(test_key_packing, remove_my_shm),
        cmocka_unit_test_teardown(test_bad_files, remove_my_shm),
        cmocka_unit_test_teardown(test_file_mode_and_group, remove_my_shm),
        cmocka_unit_test_teardown(test_check_many, remove_my_shm),
        cmocka_unit_test_teardown(test_check_keys, remove_my_shm),
        cmocka_unit_test_teardown(test_stale_flag, remove_my_shm),
        cmocka_unit_test_teardown(test_huge_pages, remove_my_shm),
        cmocka_unit_test_teardown(test_tag_false_positive, remove_my_shm),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
