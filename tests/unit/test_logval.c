/* Unit tests of logval (gateway/cluster/logval.h), the cluster log's value format: a batch of
 * frames packed and read back byte for byte; small or incompressible batches left raw (never
 * longer than the frames); raw values (older members) read as they are; a packed value cut
 * short, with a byte flipped anywhere, claiming more than LOGVAL_RAW_MAX, or whose zstd frame
 * holds more than its header says, refused with a reason and nothing written past the buffer. */
#include "unit.h"

#include <errno.h>

#include <xxhash.h>

#include "journal_fmt.h"
#include "logval.h"

/* A batch of one frame holding n payload bytes (header, payload, trailer): compressible when
 * the payload repeats (records of a burst look alike), not when it is random. */
static uint8_t *batch(size_t n, bool random, uint64_t first, uint64_t last, size_t *len) {
    *len = n + JOURNAL_FRAME_OVERHEAD;
    uint8_t *b = malloc(*len);
    assert_non_null(b);
    journal_frame h, t;
    journal_frame_make(&h, JOURNAL_FRAME_MAGIC, (uint32_t)*len, first, last, 7);
    journal_frame_make(&t, JOURNAL_TRAILER_MAGIC, (uint32_t)*len, first, last, 7);
    memcpy(b, &h, sizeof h);
    uint64_t x = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        b[sizeof h + i] = random ? (uint8_t)x : (uint8_t)("STOP DVB ACC-%d CASE C-1 "[i % 25] + (i / 250) % 10);
    }
    memcpy(b + sizeof h + n, &t, sizeof t);
    return b;
}

static void reseal(uint8_t *v) { /* a header's sum made right again after a change */
    uint64_t s = XXH3_64bits(v + 8, LOGVAL_HDR_BYTES - 8);
    memcpy(v, &s, sizeof s);
}

static void refused(logval_codec *c, const uint8_t *v, size_t n, const char *why) {
    const uint8_t *f = NULL;
    size_t fl = 0;
    char err[256] = "";
    assert_int_equal(logval_decode(c, v, n, &f, &fl, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, why));
}

static void test_round_trip(void **state) {
    (void)state;
    logval_codec *c = logval_new();
    assert_non_null(c);
    size_t sizes[] = {LOGVAL_PACK_MIN_BYTES, 4096, 190000, LOGVAL_RAW_MAX - JOURNAL_FRAME_OVERHEAD};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n;
        uint8_t *b = batch(sizes[k], false, 100, 100 + k, &n);
        size_t vl;
        const uint8_t *v = logval_encode(c, b, n, 100, 100 + k, &vl);
        assert_true(v != b && logval_is_packed(v, vl));
        assert_true(vl < n);
        if (n > 4096) assert_true(vl * 4 < n); /* a burst-like batch packs well */
        uint64_t f, l;
        assert_true(logval_range(v, vl, &f, &l));
        assert_int_equal(f, 100);
        assert_int_equal(l, 100 + k);
        uint8_t *copy = malloc(vl); /* as read back from etcd: another buffer */
        memcpy(copy, v, vl);
        const uint8_t *out;
        size_t ol;
        char err[256];
        assert_int_equal(logval_decode(c, copy, vl, &out, &ol, err, sizeof err), 0);
        assert_int_equal(ol, n);
        assert_memory_equal(out, b, n);
        free(copy);
        free(b);
    }
    logval_free(c);
}

/* Raw: small, incompressible, or written by a member before packing; read as is. */
static void test_raw(void **state) {
    (void)state;
    logval_codec *c = logval_new();
    size_t n, vl;
    uint8_t *small = batch(LOGVAL_PACK_MIN_BYTES - JOURNAL_FRAME_OVERHEAD - 8, false, 1, 1, &n);
    assert_ptr_equal(logval_encode(c, small, n, 1, 1, &vl), small);
    assert_int_equal(vl, n);
    uint8_t *noise = batch(300000, true, 2, 9, &n);
    assert_ptr_equal(logval_encode(c, noise, n, 2, 9, &vl), noise); /* would not be shorter */
    assert_int_equal(vl, n);
    assert_false(logval_is_packed(noise, n));
    uint64_t f, l;
    assert_true(logval_range(noise, n, &f, &l));
    assert_int_equal(f, 2);
    assert_int_equal(l, 9);
    const uint8_t *out;
    size_t ol;
    char err[256];
    assert_int_equal(logval_decode(c, noise, n, &out, &ol, err, sizeof err), 0);
    assert_ptr_equal(out, noise);
    assert_int_equal(ol, n);
    refused(c, (const uint8_t *)"not a journal batch at all, but long enough to be looked at: xxxxxxxxxxxxxxxxxxxx",
            80, "not a journal batch");
    free(small);
    free(noise);
    logval_free(c);
}

/* Cut short anywhere, or a byte flipped anywhere: refused, never decoded into other frames. */
static void test_damaged(void **state) {
    (void)state;
    logval_codec *c = logval_new();
    size_t n, vl;
    uint8_t *b = batch(20000, false, 5, 40, &n);
    const uint8_t *v = logval_encode(c, b, n, 5, 40, &vl);
    uint8_t *d = malloc(vl);
    memcpy(d, v, vl);
    for (size_t cut = 0; cut < vl; cut++) {
        const uint8_t *out;
        size_t ol;
        char err[256];
        assert_int_equal(logval_decode(c, d, cut, &out, &ol, err, sizeof err), -EINVAL);
    }
    size_t decoded_same = 0;
    for (size_t i = 0; i < vl; i++) {
        d[i] ^= 0x20;
        const uint8_t *out;
        size_t ol;
        char err[256];
        int rc = logval_decode(c, d, vl, &out, &ol, err, sizeof err);
        /* A flip in the magic makes it "raw" (then not a journal batch); anything else is
         * caught by the header's sum or zstd's checks (content size, checksum). A few bits
         * of zstd's entropy tables do not change the content: then exactly the frames. */
        if (rc == 0) {
            assert_int_equal(ol, n);
            assert_memory_equal(out, b, n);
            decoded_same++;
        } else {
            assert_int_equal(rc, -EINVAL);
        }
        d[i] ^= 0x20;
    }
    const uint8_t *out;
    size_t ol;
    char err[256];
    assert_true(decoded_same < vl / 20);
    assert_int_equal(logval_decode(c, d, vl, &out, &ol, err, sizeof err), 0); /* intact again */
    free(d);
    free(b);
    logval_free(c);
}

/* Hostile headers with a right sum: too large, smaller than the zstd frame's content, lsns
 * that are not the frames'. The codec's buffer is never written past LOGVAL_RAW_MAX. */
static void test_hostile(void **state) {
    (void)state;
    logval_codec *c = logval_new();
    size_t n, vl;
    uint8_t *b = batch(100000, false, 10, 20, &n);
    const uint8_t *v = logval_encode(c, b, n, 10, 20, &vl);
    uint8_t *d = malloc(vl);
    memcpy(d, v, vl);
    logval_hdr h;
    memcpy(&h, d, sizeof h);

    logval_hdr x = h;
    x.raw_len = LOGVAL_RAW_MAX + 1;
    memcpy(d, &x, sizeof x);
    reseal(d);
    refused(c, d, vl, "at most");

    x = h;
    x.raw_len = 1000; /* the frame holds 100 KB */
    memcpy(d, &x, sizeof x);
    reseal(d);
    refused(c, d, vl, "does not hold");

    x = h;
    x.last_lsn = 21;
    memcpy(d, &x, sizeof x);
    reseal(d);
    refused(c, d, vl, "not the batch");

    x = h;
    x.first_lsn = 30; /* first > last */
    memcpy(d, &x, sizeof x);
    reseal(d);
    refused(c, d, vl, "claims");
    uint64_t f, l;
    assert_false(logval_range(d, vl, &f, &l));

    memcpy(d, &h, sizeof h);
    d[3] ^= 1; /* the sum itself */
    refused(c, d, vl, "checksum");
    assert_false(logval_range(d, vl, &f, &l));

    /* a zstd frame padded with trailing bytes */
    uint8_t *longer = malloc(vl + 8);
    memcpy(longer, v, vl);
    memset(longer + vl, 0, 8);
    refused(c, longer, vl + 8, "decompress");
    free(longer);
    free(d);
    free(b);
    logval_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_raw),
        cmocka_unit_test(test_damaged),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
