/*
 * logval: the value of a cluster log key P/log/<first lsn> (docs/cluster.md "Keys"): one
 * leader batch - whole journal frames, header to trailer - either as they are (*raw*) or
 * compressed with zstd (*packed*). Every reader of the log (a follower's apply, the trim's
 * bookkeeping, a returning leader's reconcile, a re-seeded member catching up) goes through
 * logval_decode, so both forms are read everywhere, whoever wrote them.
 *
 * Self-describing by the 32-bit word at offset 8, where a raw batch has its first frame's
 * JOURNAL_FRAME_MAGIC ("SGJB"):
 *
 *   raw     the frames, byte for byte (what members before compression wrote; still written
 *           when a batch is small or does not compress: never a byte more than the frames)
 *   packed  logval_hdr (32 bytes: XXH3 sum of bytes [8, 32), magic LOGVAL_MAGIC_ZSTD "SGJZ",
 *           raw_len, first_lsn, last_lsn; little-endian like the journal), then one zstd frame
 *           of exactly raw_len bytes of frames (content size and zstd's content checksum in it)
 *
 * Contract:
 *   - Encoding never grows a value: a packed value is used only when it is shorter than the
 *     frames, so a batch under CLUSTER_BATCH_BYTES_MAX still fits one etcd request, compressed
 *     or not (the size checks against etcd's limit hold for the worst case unchanged).
 *   - Decoding is bounded: raw_len <= LOGVAL_RAW_MAX (= CLUSTER_BATCH_BYTES_MAX, the largest
 *     batch a leader writes), the header's sum, the zstd frame's content size and checksum, its
 *     exact length and the decoded frames' own first/last lsn must all agree, or the value is
 *     refused (-EINVAL and a
 *     reason): a damaged or hostile value from etcd never writes past the codec's buffer and
 *     is treated as any damaged batch (follow: `failed`). The frames themselves (checksums,
 *     hash chain) are checked later by journal_append_frames, as for a raw value.
 *   - No allocation per value: the codec's two buffers (LOGVAL_RAW_MAX each) and zstd's
 *     contexts are made by logval_new (the compression context is warmed with a full-size
 *     batch there, so its workspace is not grown later); results point into the codec (or at
 *     the input) and stay valid until the next call on the same codec.
 *   - Single-threaded per codec.
 */
#ifndef SG_LOGVAL_H
#define SG_LOGVAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limits.h"

#define LOGVAL_MAGIC_ZSTD 0x5a4a4753u /* "SGJZ" little-endian: a packed value */
#define LOGVAL_HDR_BYTES 32
#define LOGVAL_RAW_MAX CLUSTER_BATCH_BYTES_MAX
/* Smaller batches are written raw: zstd's frame and our header would eat most of the gain
 * (one STOP's batch is ~250 bytes). */
#define LOGVAL_PACK_MIN_BYTES 512
/* zstd level: 1 gave 6.2x on a real burst's batches at ~2 CPU-ms per MB (zlib level 1: 4.4x
 * at ~5.5 ms; zstd -1: 6.0x at ~1.3 ms); etcd's ~300 CPU-ms per MB of log is what counts. */
#define LOGVAL_ZSTD_LEVEL 1

typedef struct logval_hdr {
    uint64_t sum;   /* XXH3-64 of bytes [8, 32) */
    uint32_t magic; /* LOGVAL_MAGIC_ZSTD */
    uint32_t raw_len;
    uint64_t first_lsn, last_lsn;
} logval_hdr;
_Static_assert(sizeof(logval_hdr) == LOGVAL_HDR_BYTES, "a packed value's header is 32 bytes");

typedef struct logval_codec logval_codec;

/* NULL when out of memory. */
logval_codec *logval_new(void);
void logval_free(logval_codec *c);

/* The value to put for a batch of whole frames (n <= LOGVAL_RAW_MAX, first..last its lsns):
 * the codec's packed copy, or the frames themselves when packing does not shorten them.
 * Never longer than n. */
const uint8_t *logval_encode(logval_codec *c, const uint8_t *frames, size_t n, uint64_t first_lsn,
                             uint64_t last_lsn, size_t *out_len);

/* The lsn range a value claims, without decoding it (skip/gap decisions, trim bookkeeping):
 * a raw batch's first frame header and last trailer, a packed one's header (its sum checked).
 * false: neither form. logval_decode checks that the frames say the same. */
bool logval_range(const uint8_t *v, size_t n, uint64_t *first, uint64_t *last);

/* Is v packed? (Tests and tools: which form etcd holds.) */
bool logval_is_packed(const uint8_t *v, size_t n);

/* The frames of value v: v itself when raw, else decoded into the codec's buffer. 0, or
 * -EINVAL with err (not a log value; a packed value damaged, oversized or inconsistent). */
int logval_decode(logval_codec *c, const uint8_t *v, size_t n, const uint8_t **frames, size_t *len,
                  char *err, size_t errcap);

#endif
