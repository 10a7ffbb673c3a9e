/* Unit tests of auth (gateway/core/auth.h): Argon2id secret hashes in the sg1$ format, verify
 * (right secret, wrong secret, the fast path of a remembered secret), malformed stored
 * hashes refused, random development secrets. Full-cost hashing is done only a few times
 * (each costs ~0.1 s); most checks use a hash built with libsodium's minimum parameters. */
#include "unit.h"

#include <ctype.h>
#include <sodium.h>

#include "auth.h"

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

static int setup(void **state) {
    (void)state;
    return auth_init();
}

/* A stored hash with the cheapest parameters libsodium allows, for fast tests. */
static void cheap_hash(const char *secret, char *out, size_t cap) {
    uint8_t salt[AUTH_SALT_BYTES], key[AUTH_KEY_BYTES];
    memset(salt, 0x5a, sizeof salt);
    assert_int_equal(crypto_pwhash(key, sizeof key, secret, strlen(secret), salt,
                                   crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN,
                                   crypto_pwhash_ALG_ARGON2ID13),
                     0);
    char s64[64], k64[64];
    sodium_bin2base64(s64, sizeof s64, salt, sizeof salt, B64);
    sodium_bin2base64(k64, sizeof k64, key, sizeof key, B64);
    snprintf(out, cap, "sg1$argon2id$%llu$%llu$%s$%s",
             (unsigned long long)crypto_pwhash_OPSLIMIT_MIN,
             (unsigned long long)crypto_pwhash_MEMLIMIT_MIN, s64, k64);
}

static void test_hash_then_verify(void **state) {
    (void)state;
    char stored[256];
    const char *secret = "correct horse battery staple";
    assert_int_equal(auth_hash_secret(secret, strlen(secret), stored, sizeof stored), 0);
    assert_int_equal(strncmp(stored, "sg1$argon2id$", 13), 0);
    auth_hash h;
    assert_int_equal(auth_parse(stored, &h), 0);
    assert_true(h.opslimit >= crypto_pwhash_OPSLIMIT_MIN);
    assert_true(h.memlimit >= crypto_pwhash_MEMLIMIT_MIN);
    assert_false(h.cached);
    assert_false(auth_verify(&h, "correct horse battery stapler", 29));
    assert_false(h.cached); /* a wrong guess is never remembered */
    assert_true(auth_verify(&h, secret, strlen(secret)));
    assert_true(h.cached);
    /* Salted: the same secret hashes differently each time, and both verify. */
    char stored2[256];
    assert_int_equal(auth_hash_secret(secret, strlen(secret), stored2, sizeof stored2), 0);
    assert_string_not_equal(stored, stored2);
}

static void test_verify_cheap(void **state) {
    (void)state;
    char stored[256];
    cheap_hash("s3cret", stored, sizeof stored);
    auth_hash h;
    assert_int_equal(auth_parse(stored, &h), 0);
    assert_int_equal(h.opslimit, crypto_pwhash_OPSLIMIT_MIN);
    assert_int_equal(h.memlimit, crypto_pwhash_MEMLIMIT_MIN);
    assert_false(auth_verify(&h, "s3cre", 5));
    assert_false(auth_verify(&h, "s3cret ", 7));
    assert_false(auth_verify(&h, "S3CRET", 6));
    assert_true(auth_verify(&h, "s3cret", 6));
    /* second time: from the remembered digest, still right */
    assert_true(h.cached);
    assert_true(auth_verify(&h, "s3cret", 6));
    /* the remembered secret does not make other secrets pass */
    assert_false(auth_verify(&h, "s3creT", 6));
    /* only len bytes count */
    assert_true(auth_verify(&h, "s3cretXYZ", 6));
}

static void test_verify_bounds(void **state) {
    (void)state;
    char stored[256];
    cheap_hash("x", stored, sizeof stored);
    auth_hash h;
    assert_int_equal(auth_parse(stored, &h), 0);
    assert_false(auth_verify(&h, "", 0));
    char big[AUTH_SECRET_LEN_MAX + 2];
    memset(big, 'x', sizeof big);
    assert_false(auth_verify(&h, big, AUTH_SECRET_LEN_MAX + 1));
    assert_true(auth_verify(&h, "x", 1));
}

static void test_hash_secret_bad_input(void **state) {
    (void)state;
    char out[256];
    assert_int_equal(auth_hash_secret("", 0, out, sizeof out), -1);
    char big[AUTH_SECRET_LEN_MAX + 1];
    memset(big, 'b', sizeof big);
    assert_int_equal(auth_hash_secret(big, sizeof big, out, sizeof out), -1);
    char small[40];
    assert_int_equal(auth_hash_secret("pw", 2, small, sizeof small), -1); /* does not fit */
}

static void test_parse_malformed(void **state) {
    (void)state;
    char good[256];
    cheap_hash("pw", good, sizeof good);
    auth_hash h;
    assert_int_equal(auth_parse(good, &h), 0);

    const char *bad[] = {
        "",
        "sg1$",
        "sg2$argon2id$1$8192$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sg1$argon2i$1$8192$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sg1$argon2id$0$8192$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sg1$argon2id$1$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sg1$argon2id$1$99999999999$AAAAAAAAAAAAAAAAAAAAAA$"
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        /* salt one byte short / key one byte short */
        "sg1$argon2id$1$8192$AAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sg1$argon2id$1$8192$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        /* not base64 */
        "sg1$argon2id$1$8192$!!!!!!!!!!!!!!!!!!!!!!$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sg1$argon2id$1$8192$AAAAAAAAAAAAAAAAAAAAAA",
        "sg1$argon2id$x$8192$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sg1$argon2id$2$67108864$PLACEHOLDER0SALT0PLACA$REPLACE-with-the-output-of-stopctl-"
        "hash0000$x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (auth_parse(bad[i], &h) != -1) fail_msg("accepted malformed hash '%s'", bad[i]);
    }
    /* The placeholder of config/stopgate.conf is well-formed (the file validates)... */
    const char *ph = "sg1$argon2id$2$67108864$PLACEHOLDER0SALT0PLACA$REPLACE-with-the-output-of-"
                     "stopctl-hash0000";
    assert_int_equal(auth_parse(ph, &h), 0);
}

static void test_random_secret(void **state) {
    (void)state;
    char a[33], b[33];
    auth_random_secret(a, sizeof a);
    auth_random_secret(b, sizeof b);
    assert_int_equal(strlen(a), 32);
    assert_int_equal(strlen(b), 32);
    assert_string_not_equal(a, b);
    for (size_t i = 0; i < 32; i++) {
        assert_true(isalnum((unsigned char)a[i]));
        /* ambiguous characters are left out of the alphabet */
        assert_true(a[i] != '0' && a[i] != 'O' && a[i] != 'l' && a[i] != 'I' && a[i] != '1');
    }
    char one[1] = {'z'};
    auth_random_secret(one, 1);
    assert_int_equal(one[0], 0);
}

/* The halves of auth_verify a threaded caller uses, and the fake hash of an unknown name:
 * deterministic per (pepper, name), different across names and peppers, the default limits. */
static void test_split_and_fake(void **state) {
    (void)state;
    char stored[256];
    cheap_hash("s3cret", stored, sizeof stored);
    auth_hash h;
    assert_int_equal(auth_parse(stored, &h), 0);
    assert_false(auth_cache_hit(&h, "s3cret", 6));
    assert_false(auth_kdf_matches(&h, "s3cre", 5));
    assert_true(auth_kdf_matches(&h, "s3cret", 6));
    assert_false(h.cached); /* the KDF half never writes */
    auth_remember(&h, "s3cret", 6);
    assert_true(auth_cache_hit(&h, "s3cret", 6));
    assert_false(auth_cache_hit(&h, "s3creT", 6));

    uint8_t pep[AUTH_KEY_BYTES], pep2[AUTH_KEY_BYTES];
    auth_pepper(&h, 1, pep);
    auth_hash h2 = h;
    h2.key[0] ^= 1;
    auth_pepper(&h2, 1, pep2);
    assert_memory_not_equal(pep, pep2, sizeof pep);
    auth_hash f1, f2, f3, f4;
    auth_fake_hash(pep, "nobody", 6, &f1);
    auth_fake_hash(pep, "nobody", 6, &f2);
    auth_fake_hash(pep, "nobodz", 6, &f3);
    auth_fake_hash(pep2, "nobody", 6, &f4);
    assert_memory_equal(f1.salt, f2.salt, sizeof f1.salt);
    assert_memory_equal(f1.key, f2.key, sizeof f1.key);
    assert_memory_not_equal(f1.salt, f3.salt, sizeof f1.salt);
    assert_memory_not_equal(f1.salt, f4.salt, sizeof f1.salt);
    assert_int_equal(f1.opslimit, crypto_pwhash_OPSLIMIT_INTERACTIVE);
    assert_int_equal(f1.memlimit, crypto_pwhash_MEMLIMIT_INTERACTIVE);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_then_verify), cmocka_unit_test(test_verify_cheap),
        cmocka_unit_test(test_verify_bounds),    cmocka_unit_test(test_hash_secret_bad_input),
        cmocka_unit_test(test_parse_malformed),  cmocka_unit_test(test_random_secret),
        cmocka_unit_test(test_split_and_fake),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
