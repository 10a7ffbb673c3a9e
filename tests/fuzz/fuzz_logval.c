/*
 * fuzz_logval: the cluster log's value decoder (gateway/cluster/logval.c logval_decode,
 * logval_range) on arbitrary values, as a follower reads them from etcd, and the encoder's
 * round trip.
 *
 * Input: u8 mode, then the bytes.
 *   mode bit 0 clear: the bytes are a log value (raw frames or a packed one). Checked: a
 *     decoded value lies inside the input (raw) or the codec's LOGVAL_RAW_MAX buffer, starts
 *     with a frame header and ends with a trailer whose lsns are the ones logval_range
 *     claims; a refusal has a reason.
 *   mode bit 0 set: the bytes are the payload of one frame (header and trailer made around
 *     it, lsns from the mode byte), encoded: the value is never longer than the frames and
 *     decodes to exactly them. With bit 1 also set, the byte of the value at (payload's first
 *     two bytes) mod length is flipped first: refused, or decoded to exactly the frames.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journal_fmt.h"
#include "logval.h"

static logval_codec *codec(void) {
    static logval_codec *c; /* made once: two LOGVAL_RAW_MAX buffers and zstd's contexts */
    if (!c && !(c = logval_new())) abort();
    return c;
}

static void touch(const uint8_t *p, size_t n) {
    volatile uint8_t sink = 0;
    for (size_t i = 0; i < n; i++) sink ^= p[i];
    (void)sink;
}

static void decode_any(const uint8_t *v, size_t n) {
    const uint8_t *f;
    size_t fl;
    char err[256] = "";
    if (logval_decode(codec(), v, n, &f, &fl, err, sizeof err) != 0) {
        if (!err[0]) abort();
        return;
    }
    if (fl > LOGVAL_RAW_MAX || fl < JOURNAL_FRAME_OVERHEAD) abort();
    if (!(f == v && fl == n) && logval_is_packed(v, n) == false) abort();
    touch(f, fl);
    uint64_t first, last;
    journal_frame h, t;
    memcpy(&h, f, sizeof h);
    memcpy(&t, f + fl - sizeof t, sizeof t);
    if (!logval_range(v, n, &first, &last) || first != h.first_lsn || last != t.last_lsn) abort();
    if (h.magic != JOURNAL_FRAME_MAGIC || t.magic != JOURNAL_TRAILER_MAGIC) abort();
}

static void round_trip(uint8_t mode, const uint8_t *p, size_t n) {
    if (n > LOGVAL_RAW_MAX - JOURNAL_FRAME_OVERHEAD) n = LOGVAL_RAW_MAX - JOURNAL_FRAME_OVERHEAD;
    size_t len = n + JOURNAL_FRAME_OVERHEAD;
    uint8_t *b = malloc(len);
    if (!b) abort();
    uint64_t first = 1 + (mode >> 2), last = first + (mode >> 5);
    journal_frame h, t;
    journal_frame_make(&h, JOURNAL_FRAME_MAGIC, (uint32_t)len, first, last, 0);
    journal_frame_make(&t, JOURNAL_TRAILER_MAGIC, (uint32_t)len, first, last, 0);
    memcpy(b, &h, sizeof h);
    if (n) memcpy(b + sizeof h, p, n);
    memcpy(b + sizeof h + n, &t, sizeof t);
    size_t vl;
    const uint8_t *v = logval_encode(codec(), b, len, first, last, &vl);
    if (vl > len) abort();
    uint8_t *copy = malloc(vl); /* decoding reuses the codec; etcd gives another buffer */
    if (!copy) abort();
    memcpy(copy, v, vl);
    bool flipped = (mode & 2) && n >= 2;
    if (flipped) copy[((size_t)p[0] << 8 | p[1]) % vl] ^= (uint8_t)(mode | 1);
    const uint8_t *f;
    size_t fl;
    char err[256];
    int rc = logval_decode(codec(), copy, vl, &f, &fl, err, sizeof err);
    if (rc != 0 && !flipped) abort();
    if (rc == 0 && (fl != len || memcmp(f, b, len) != 0)) {
        /* a flip in a raw value is for journal_append_frames' checksums to find */
        if (!flipped || logval_is_packed(copy, vl)) abort();
    }
    free(copy);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    if (data[0] & 1) round_trip(data[0], data + 1, size - 1);
    else decode_any(data + 1, size - 1);
    return 0;
}
