/*
 * logval: raw or zstd-packed cluster log values (logval.h).
 */
#include "logval.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#include <zstd.h>

#include "journal_fmt.h"

struct logval_codec {
    ZSTD_CCtx *cc;
    ZSTD_DCtx *dc;
    uint8_t *packed; /* logval_encode's result: header + zstd frame, < the batch */
    uint8_t *frames; /* logval_decode's result */
};

static int refuse(char *err, size_t errcap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errcap, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

void logval_free(logval_codec *c) {
    if (!c) return;
    ZSTD_freeCCtx(c->cc);
    ZSTD_freeDCtx(c->dc);
    free(c->packed);
    free(c->frames);
    free(c);
}

logval_codec *logval_new(void) {
    logval_codec *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->cc = ZSTD_createCCtx();
    c->dc = ZSTD_createDCtx();
    c->packed = malloc(LOGVAL_RAW_MAX);
    c->frames = calloc(1, LOGVAL_RAW_MAX);
    if (!c->cc || !c->dc || !c->packed || !c->frames ||
        ZSTD_isError(ZSTD_CCtx_setParameter(c->cc, ZSTD_c_compressionLevel, LOGVAL_ZSTD_LEVEL)) ||
        /* zstd's own checksum of the content (4 bytes): a damaged payload is refused here,
         * not only later by the frames' record checksums. */
        ZSTD_isError(ZSTD_CCtx_setParameter(c->cc, ZSTD_c_checksumFlag, 1))) {
        logval_free(c);
        return NULL;
    }
    /* Size zstd's workspace for the largest batch now, not on the first big batch. */
    size_t r = ZSTD_compress2(c->cc, c->packed, LOGVAL_RAW_MAX, c->frames, LOGVAL_RAW_MAX);
    if (ZSTD_isError(r)) {
        logval_free(c);
        return NULL;
    }
    return c;
}

/* The lsn range of a raw batch: its first frame's header and its last frame's trailer. */
static bool raw_range(const uint8_t *v, size_t n, uint64_t *first, uint64_t *last) {
    if (n < JOURNAL_FRAME_OVERHEAD) return false;
    journal_frame h, t;
    memcpy(&h, v, sizeof h);
    memcpy(&t, v + n - sizeof t, sizeof t);
    *first = h.first_lsn;
    *last = t.last_lsn;
    return h.magic == JOURNAL_FRAME_MAGIC && t.magic == JOURNAL_TRAILER_MAGIC && *first <= *last;
}

bool logval_is_packed(const uint8_t *v, size_t n) {
    uint32_t magic;
    if (n < LOGVAL_HDR_BYTES) return false;
    memcpy(&magic, v + 8, sizeof magic);
    return magic == LOGVAL_MAGIC_ZSTD;
}

bool logval_range(const uint8_t *v, size_t n, uint64_t *first, uint64_t *last) {
    if (!logval_is_packed(v, n)) return raw_range(v, n, first, last);
    logval_hdr h;
    memcpy(&h, v, sizeof h);
    *first = h.first_lsn;
    *last = h.last_lsn;
    return h.sum == XXH3_64bits(v + 8, sizeof h - 8) && *first <= *last;
}

const uint8_t *logval_encode(logval_codec *c, const uint8_t *frames, size_t n, uint64_t first_lsn,
                             uint64_t last_lsn, size_t *out_len) {
    *out_len = n;
    if (n < LOGVAL_PACK_MIN_BYTES || n > LOGVAL_RAW_MAX) return frames;
    /* Room for one byte less than the frames: zstd gives up (an error) when it cannot do
     * better, and the batch goes raw. */
    size_t z = ZSTD_compress2(c->cc, c->packed + LOGVAL_HDR_BYTES, n - LOGVAL_HDR_BYTES - 1, frames, n);
    if (ZSTD_isError(z)) return frames;
    logval_hdr h = {.magic = LOGVAL_MAGIC_ZSTD, .raw_len = (uint32_t)n, .first_lsn = first_lsn,
                    .last_lsn = last_lsn};
    h.sum = XXH3_64bits((const uint8_t *)&h + 8, sizeof h - 8);
    memcpy(c->packed, &h, sizeof h);
    *out_len = LOGVAL_HDR_BYTES + z;
    return c->packed;
}

int logval_decode(logval_codec *c, const uint8_t *v, size_t n, const uint8_t **frames, size_t *len,
                  char *err, size_t errcap) {
    uint64_t first, last;
    if (!logval_is_packed(v, n)) {
        if (!raw_range(v, n, &first, &last)) return refuse(err, errcap, "a log value is not a journal batch");
        *frames = v;
        *len = n;
        return 0;
    }
    logval_hdr h;
    memcpy(&h, v, sizeof h);
    if (h.sum != XXH3_64bits(v + 8, sizeof h - 8))
        return refuse(err, errcap, "a packed log value's header is damaged (checksum)");
    if (h.raw_len < JOURNAL_FRAME_OVERHEAD || h.raw_len > LOGVAL_RAW_MAX || h.first_lsn > h.last_lsn)
        return refuse(err, errcap, "a packed log value claims %u bytes of lsn %llu..%llu (at most %d bytes)",
                      h.raw_len, (unsigned long long)h.first_lsn, (unsigned long long)h.last_lsn,
                      LOGVAL_RAW_MAX);
    const uint8_t *z = v + LOGVAL_HDR_BYTES;
    size_t zn = n - LOGVAL_HDR_BYTES;
    if (ZSTD_getFrameContentSize(z, zn) != h.raw_len)
        return refuse(err, errcap, "a packed log value's zstd frame does not hold its %u bytes", h.raw_len);
    /* The output capacity is raw_len: zstd stops with an error rather than write past it. */
    size_t got = ZSTD_decompressDCtx(c->dc, c->frames, h.raw_len, z, zn);
    if (ZSTD_isError(got) || got != h.raw_len)
        return refuse(err, errcap, "a packed log value does not decompress (%s)",
                      ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
    if (!raw_range(c->frames, got, &first, &last) || first != h.first_lsn || last != h.last_lsn)
        return refuse(err, errcap, "a packed log value's frames are not the batch of lsn %llu..%llu",
                      (unsigned long long)h.first_lsn, (unsigned long long)h.last_lsn);
    *frames = c->frames;
    *len = got;
    return 0;
}
