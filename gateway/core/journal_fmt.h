/*
 * journal_fmt: the on-disk format of the write-ahead journal (docs/journal.md) and the one
 * scanner that reads it back. Used by recovery in stopgated and by `stopctl journal
 * verify|dump`, so both judge a journal the same way. Pure: works on bytes in memory.
 *
 * A segment file is a 64-byte header followed by frames: one frame per group-commit write
 * into the segment, a 40-byte frame header, the records (each padded to 8 bytes), and a
 * 40-byte frame trailer that repeats the header's length, lsn range and last checksum. A
 * record's checksum (XXH3-64) covers its header and payload including prev_sum, the checksum
 * of the record before it, so the records form a hash chain across segments.
 *
 * The frame is what tells a torn write from damage: a frame whose trailer is complete and
 * consistent was written whole (and may have been acknowledged), so damage inside it, or
 * before a later valid frame, is damage to durable data; only a frame that ends
 * incomplete at the end of the file is a torn write. Version 1 segments (records without
 * frames) are still read, with the version 1 judgement.
 */
#ifndef SG_JOURNAL_FMT_H
#define SG_JOURNAL_FMT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limits.h"

#define JOURNAL_SEG_MAGIC "SGJSEG01"
#define JOURNAL_SEG_VERSION    2u          /* framed batches; written by this gateway */
#define JOURNAL_SEG_VERSION_V1 1u          /* records without frames; still read */
#define JOURNAL_REC_MAGIC 0x524a4753u /* "SGJR" little-endian */
#define JOURNAL_REC_VERSION 1u
#define JOURNAL_FRAME_MAGIC    0x424a4753u /* "SGJB": frame header */
#define JOURNAL_TRAILER_MAGIC  0x454a4753u /* "SGJE": frame trailer */
/* The record a clean shutdown leaves last: everything before it was written whole, so no
 * damage before it can be a torn write. Journal-internal: never passed to replay. */
#define JOURNAL_REC_CLOSE  0xffffu
#define JOURNAL_SEG_SUFFIX ".sgj"

typedef struct journal_seg_hdr {
    uint64_t sum; /* XXH3-64 of the bytes after this field */
    char magic[8];
    uint32_t version;
    uint32_t hdr_bytes;
    uint64_t seq;       /* 1, 2, ... ; also the file name */
    uint64_t first_lsn; /* lsn of the first record in this segment */
    uint64_t prev_sum;  /* checksum of the last record of the previous segment, 0 for the first */
    int64_t created_ms;
    uint64_t reserved;
} journal_seg_hdr;
_Static_assert(sizeof(journal_seg_hdr) == 64, "segment header is 64 bytes on disk");

typedef struct journal_rec_hdr {
    uint64_t sum; /* XXH3-64 of bytes [8, 40 + payload_len) */
    uint32_t magic;
    uint32_t len; /* whole record, header and padding included; multiple of 8 */
    uint16_t type;
    uint16_t version;
    uint32_t payload_len;
    uint64_t lsn;      /* previous record's lsn + 1 */
    uint64_t prev_sum; /* previous record's sum: the hash chain */
} journal_rec_hdr;
_Static_assert(sizeof(journal_rec_hdr) == 40, "record header is 40 bytes on disk");

/* Bytes a record of payload_len bytes takes on disk (a constant expression). */
#define JOURNAL_REC_BYTES(payload_len)                                                             \
    ((sizeof(journal_rec_hdr) + (payload_len) + 7u) & ~(size_t)7u)
static inline uint32_t journal_rec_len(uint32_t payload_len) {
    return (uint32_t)JOURNAL_REC_BYTES(payload_len);
}

/* Frame header and trailer: the same 40 bytes, told apart by magic. One frame per batch
 * write into one segment (a batch that rolls writes one frame into each segment). */
typedef struct journal_frame {
    uint64_t sum;   /* XXH3-64 of bytes [8, 40) of this header or trailer */
    uint32_t magic; /* JOURNAL_FRAME_MAGIC or JOURNAL_TRAILER_MAGIC */
    uint32_t len;   /* whole frame: header, records, trailer; a multiple of 8 */
    uint64_t first_lsn;
    uint64_t last_lsn;
    uint64_t last_sum; /* sum of the frame's last record: by the chain, a checksum of all */
} journal_frame;
_Static_assert(sizeof(journal_frame) == 40, "frame header and trailer are 40 bytes on disk");
#define JOURNAL_FRAME_OVERHEAD (2 * sizeof(journal_frame))
/* Largest frame: one batch buffer. */
#define JOURNAL_FRAME_BYTES_MAX JOURNAL_BUF_BYTES

/* Fill a frame header (magic JOURNAL_FRAME_MAGIC) or trailer, sum included. */
void journal_frame_make(journal_frame *f, uint32_t magic, uint32_t len, uint64_t first_lsn,
                        uint64_t last_lsn, uint64_t last_sum);

/* Fill a segment header (sum included). */
void journal_seg_hdr_make(journal_seg_hdr *h, uint64_t seq, uint64_t first_lsn, uint64_t prev_sum,
                          int64_t created_ms);
/* Encode one record into out (which has room for journal_rec_len(payload_len) bytes). */
void journal_rec_encode(uint8_t *out, uint16_t type, uint64_t lsn, uint64_t prev_sum, const void *payload,
                        uint32_t payload_len);

typedef struct journal_chain {
    uint64_t next_lsn; /* lsn the next record must carry */
    uint64_t prev_sum; /* sum the next record must carry as prev_sum */
    uint64_t records;  /* records accepted so far (close records not counted) */
    bool closed;       /* the last record accepted is a close record (clean shutdown) */
    uint32_t version;  /* format version of the last segment scanned */
    /* 0, or: stop before the first frame (v1: record) holding an lsn past it - the tail
     * after it is to be cut (a tail the cluster never committed, docs/cluster.md). */
    uint64_t stop_after_lsn;
} journal_chain;

typedef struct journal_scan_result {
    size_t valid_end;     /* bytes of the segment that hold valid header + frames */
    bool clean;           /* true when the rest of the segment is empty (zeros or nothing) */
    /* When !clean: damaged means written-whole data is bad (a complete frame, or anything
     * followed by valid data): not a torn write, cutting it may lose acknowledged records.
     * Otherwise the bad part is an incomplete last write: a torn tail, safe to cut. */
    bool damaged;
    bool stopped;             /* chain.stop_after_lsn reached at bad_offset (not damage) */
    bool valid_after_bad;     /* valid data (not only a close record) follows the damage */
    size_t bad_offset;        /* offset of the first bad frame (v1: record) when !clean */
    size_t bad_end;           /* end of the damaged frame when known, else 0 */
    uint64_t bad_first_lsn;   /* lsn range the damaged part held: first is exact, */
    uint64_t bad_last_lsn;    /* last is 0 when no header, trailer or later record tells */
    size_t bad_record_offset; /* the record found bad inside a whole frame, else 0 */
    char why[128];        /* what was wrong there */
} journal_scan_result;

/* Called for each valid record, in order, close records (JOURNAL_REC_CLOSE) included.
 * Returns 0 to go on, non-zero to stop the scan. */
typedef int (*journal_record_fn)(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *payload,
                                 uint32_t payload_len);

/* Scan one segment's bytes against the chain (updated as records pass). Returns 0, or the
 * callback's non-zero value. Header problems are reported as bad at offset 0, with
 * valid_after_bad set when plausible records follow the header. */
int journal_scan_segment(const uint8_t *data, size_t size, journal_chain *chain, journal_record_fn fn,
                         void *ctx, journal_scan_result *res);

/* A record about to be applied, JOURNAL_AHEAD records before fn sees it: a hint (the replay
 * prefetches the index slots the record will touch, so that the cache misses of several
 * records overlap). Only for records of a frame that checked out whole; payload stays valid
 * until fn has seen the record. */
typedef void (*journal_ahead_fn)(void *ctx, uint16_t type, const uint8_t *payload,
                                 uint32_t payload_len);
#define JOURNAL_AHEAD 8
/* journal_scan_segment, with ahead (may be NULL) called for each record of a whole v2 frame
 * JOURNAL_AHEAD records before fn (fewer near the frame's end). Same verdicts. */
int journal_scan_segment_ahead(const uint8_t *data, size_t size, journal_chain *chain,
                               journal_record_fn fn, journal_ahead_fn ahead, void *ctx,
                               journal_scan_result *res);

/* Is there a self-consistent frame header (JOURNAL_FRAME_MAGIC) or trailer at off? */
bool journal_frame_read(const uint8_t *data, size_t size, size_t off, uint32_t magic,
                        journal_frame *f);

/* One or more whole v2 frames back to back (header..trailer each, no segment header): a
 * batch as the cluster log carries it (docs/cluster.md). Checks every frame, record, checksum
 * and the hash chain continuing *chain, without changing it. NULL when all holds (then
 * *last_lsn and *last_sum are those of the last record), else why not. A close record is
 * refused: it is one journal's own and never travels. */
const char *journal_frames_check(const uint8_t *data, size_t size, const journal_chain *chain,
                                 uint64_t *last_lsn, uint64_t *last_sum);
/* The lsn range of frames data[0, size) that journal_frames_check accepted. */
void journal_frames_range(const uint8_t *data, size_t size, uint64_t *first_lsn,
                          uint64_t *last_lsn);
/* The checksum of record lsn inside frames data[0, size) (checked before): 0 and *sum, or -1
 * when lsn is not in them. A hash chain makes it the checksum of every record up to lsn, so
 * two journals agree up to lsn exactly when these are equal. */
int journal_frames_sum_at(const uint8_t *data, size_t size, uint64_t lsn, uint64_t *sum);
/* Calls fn for each record of checked frames data[0, size), in order; 0 or fn's value. */
int journal_frames_each(const uint8_t *data, size_t size, journal_record_fn fn, void *ctx);

/* A record found in damaged data; verified: its own checksum holds (else its fields, even
 * its lsn, may be the damaged bytes: say so when naming it). */
typedef void (*journal_salvage_fn)(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *payload,
                                   uint32_t payload_len, bool verified);

/* Call fn for every record in data[from, to) whose header is sane (magic, lengths): what can
 * still be told of damaged data, to say which orders it held. Close records are skipped.
 * Returns the number of verified records. */
size_t journal_salvage(const uint8_t *data, size_t size, size_t from, size_t to,
                       journal_salvage_fn fn, void *ctx);

/* Does the segment file open on fd hold nothing but zeros past its header (a segment a roll
 * created whose batch never reached the disk)? 1 yes, 0 no, -errno. Shared by recovery and
 * `stopctl journal verify`, so both call the same torn roll a torn tail. */
int journal_fd_empty_after_header(int fd);

/* Segment file name for a sequence number: "%016llu.sgj". */
void journal_seg_name(char *out, size_t cap, uint64_t seq);
/* Parse a segment file name. 0 and *seq, or -1. */
int journal_seg_parse_name(const char *name, uint64_t *seq);
/* Sorted list of segment sequence numbers in dir. Returns count or negative errno;
 * *seqs is malloc'd (free it). */
int journal_list_segments(const char *dir, uint64_t **seqs);
#endif
