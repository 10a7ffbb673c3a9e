/*
 * journal: the write-ahead log of every order-changing event (SPEC §7, docs/journal.md).
 *
 * Owns the segment files of one directory. journal_open() replays what is on disk (sync I/O,
 * at start only), cuts a torn tail (a frame left incomplete at the end: never acknowledged),
 * and refuses a journal whose written-whole data is damaged (a complete frame that does not
 * check out, damage followed by valid frames, or damage before a clean shutdown's close
 * record) with JOURNAL_ERR_DAMAGED and the damaged lsn range: acknowledged records would be
 * lost by a cut. The operator may allow cutting a damaged tail (truncate_damaged_tail);
 * later a cluster member may supply the records instead (issue 12).
 * After journal_attach(), all writes and fdatasyncs go through the caller's io_uring:
 * journal_append() copies a record into the open batch and returns its lsn at once;
 * journal_flush() sends the open batch (write -> fdatasync, linked) when no batch is in
 * flight - group commit: records that arrive during an fdatasync ride the next one.
 * on_durable(lsn) fires when every record up to lsn is on disk. Single-threaded.
 */
#ifndef SG_JOURNAL_H
#define SG_JOURNAL_H
#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "journal_fmt.h"
#include "journal_spare.h"
#include "limits.h"

typedef void (*journal_durable_fn)(void *ctx, uint64_t durable_lsn);

typedef struct journal_ext {
    int fd;
    uint64_t file_off;
    uint32_t buf_off;
    uint32_t len;
} journal_ext;

typedef struct journal_batch {
    uint8_t *data; /* JOURNAL_BUF_BYTES */
    uint32_t len;
    uint32_t records;
    bool urgent;       /* holds a record someone waits for (a reply, an instruction) */
    int64_t opened_ns; /* when its first record arrived */
    uint64_t last_lsn;
    uint64_t seq;
    bool frame_open;      /* a frame header is reserved at frame_off, its trailer not yet */
    uint32_t frame_off;   /* buffer offset of the open frame's header */
    uint64_t frame_first; /* lsn of the open frame's first record */
    journal_ext ext[JOURNAL_EXTENTS_MAX];
    uint32_t n_ext;
} journal_batch;

#define JOURNAL_RETIRED_MAX (JOURNAL_EXTENTS_MAX * 2 + 2)
#define JOURNAL_RPF_BUCKETS 18 /* records-per-fsync histogram: <=1,2,4,...,65536,more */

typedef struct journal_stats {
    uint64_t fsyncs;
    uint64_t records;
    uint64_t bytes;
    uint64_t write_errors;
    uint64_t segments_created;
    uint64_t rpf_buckets[JOURNAL_RPF_BUCKETS];
    uint64_t last_batch_records;
    uint64_t fsync_ns_total;
} journal_stats;

/* Damage to written-whole data found by recovery (or stopctl journal verify). */
typedef struct journal_damage {
    bool found;
    bool tail;    /* nothing valid follows it but a close record: cutting it is possible */
    bool cut;     /* it was cut (truncate_damaged_tail) */
    uint64_t seq; /* segment */
    uint64_t offset;
    uint64_t bytes;     /* from offset to the end of the segment */
    uint64_t first_lsn; /* lsn X..Y the damaged part held (the records a cluster member */
    uint64_t last_lsn;  /* would supply); last_lsn 0: not known */
    uint64_t readable;  /* records in it whose own checksum still holds */
    char why[128];
} journal_damage;

#define JOURNAL_ERR_DAMAGED                                                                        \
    (-2) /* journal_open: written-whole data damaged, rec->damage says where */

typedef struct journal_opts {
    uint64_t segment_bytes;
    journal_record_fn replay;   /* every valid record, in lsn order */
    journal_ahead_fn ahead;     /* may be NULL: each record JOURNAL_AHEAD records before replay
                                   sees it (a prefetch hint, journal_fmt.h) */
    journal_salvage_fn damaged; /* each record still found in damaged data (may be NULL) */
    void *ctx;                  /* for both */
    bool truncate_damaged_tail; /* cut a damaged tail instead of refusing (stopgated flag) */
    /* 0: keep everything. Else cut every frame holding an lsn past it, with the recovery's
     * tail cut: the tail a former cluster leader fsynced but the cluster never committed
     * (docs/cluster.md). Whole frames: the journal may end before it. */
    uint64_t keep_through_lsn;
    bool preallocate; /* segments written full of zeros ahead of use (journal_spare.h) */
} journal_opts;

typedef struct journal_recovery {
    uint64_t records;
    uint64_t segments;
    bool clean_shutdown; /* the journal ended with a close record */
    bool upgraded;       /* the last segment was format version 1: appends go to a new one */
    journal_damage damage;
    bool tail_cut;
    uint64_t cut_seq;
    uint64_t cut_offset;
    uint64_t cut_bytes;
    char cut_why[128];
    bool kept_cut;          /* keep_through_lsn cut the journal at cut_seq / cut_offset */
    int64_t replay_ns;
    int prealloc_errno; /* preallocate: the open segment could not be zero-filled (0: it was) */
    int64_t prealloc_ns; /* preallocate: time spent zero-filling the open segment */
} journal_recovery;

typedef struct journal {
    char dir[4096];
    int dirfd;
    uint64_t segment_bytes;
    int seg_fd;
    uint64_t seg_seq;
    uint64_t seg_off;
    uint64_t next_lsn;
    uint64_t last_sum;
    uint64_t durable_lsn;
    journal_batch batch[2];
    int open_idx; /* batch[open_idx] takes appends; the other may be in flight */
    bool inflight;
    uint32_t cqe_expected; /* operations in the batch in flight: a write and an fsync per extent */
    bool cqe_failed;
    /* Writes carry IOSQE_CQE_SKIP_SUCCESS (journal_attach, when the kernel has it): a batch
     * wakes the loop once, at its fdatasync, not also at its write (issue 13). A write that
     * fails still posts its CQE, and then the rest of the chain posts none. */
    bool skip_write_cqe;
    int last_error; /* errno of the last failed write/fsync, 0 when healthy */
    int64_t retry_at_ns;
    int64_t submit_ns;
    uint64_t batch_seq;
    bool next_lazy; /* the next journal_append is a record nobody waits for */
    bool flush_all; /* draining: lazy batches go at once */
    uint32_t batch_cap; /* a batch holds at most this (0: JOURNAL_BUF_BYTES); cluster mode caps it
                           so that one batch fits one etcd request (commit.h) */
    struct {
        int fd;
        uint64_t after_seq;
    } retired[JOURNAL_RETIRED_MAX];
    uint32_t n_retired;
    bool prealloc;        /* opts.preallocate */
    uint64_t spare_for;   /* the segment during which a spare was last asked for */
    journal_spare spare;
    struct io_uring *ring;
    journal_durable_fn on_durable;
    void *ctx;
    journal_stats stats;
} journal;

/* Replay the journal in dir (created if missing) and open it for appending. 0; or
 * JOURNAL_ERR_DAMAGED with err and rec->damage filled; or -1 with err filled. */
int journal_open(journal *j, const char *dir, const journal_opts *o, journal_recovery *rec,
                 char *err, size_t errcap);
void journal_attach(journal *j, struct io_uring *ring, journal_durable_fn fn, void *ctx);
/* Room for one more record of payload_len bytes in the open batch? */
bool journal_has_room(const journal *j, uint32_t payload_len);
/* Append a record; returns its lsn (>0), or -EAGAIN when the open batch is full (the caller
 * waits for the next on_durable and tries again), or -EIO/-errno when a segment cannot be
 * created. */
int64_t journal_append(journal *j, uint16_t type, const void *payload, uint32_t payload_len);
/* Mark the next append as lazy: nobody waits for it (SENT marks, bank answers), so it may
 * wait up to JOURNAL_LAZY_NS for a record that someone does wait for, instead of costing an
 * fdatasync of its own (which the next orders would queue behind). */
static inline void journal_lazy_next(journal *j) { j->next_lazy = true; }
#define JOURNAL_LAZY_NS (2 * 1000 * 1000)
/* Submit the open batch if nothing is in flight and no retry is pending (and it is urgent or
 * has waited JOURNAL_LAZY_NS). */
void journal_flush(journal *j, int64_t now_ns);
/* When a lazy open batch must be flushed at the latest (0: nothing pending, or nothing can
 * go before a completion: a batch in flight, or a retry pending). */
int64_t journal_lazy_deadline_ns(const journal *j);
/* A completion with kind UD_JOURNAL. */
void journal_on_cqe(journal *j, uint32_t op, int res, int64_t now_ns);
/* Nothing appended that is not yet durable. */
bool journal_idle(const journal *j);
/* Clean shutdown: write and fdatasync a close record (synchronously, outside the ring), so
 * that the next start can tell damage to the last batch from a torn write. Only when idle.
 * 0 or -errno. */
int journal_seal(journal *j, int64_t now_ms);
uint64_t journal_last_lsn(const journal *j);
/* Checksum of the last record (0 for an empty journal): by the hash chain, of all of them. */
static inline uint64_t journal_last_sum(const journal *j) { return j->last_sum; }

/* Appends frames data[0, size) that another member's journal wrote (the cluster log, docs/
 * cluster.md) byte for byte, after checking them (journal_frames_check against this
 * journal's last record), and hands each record to fn, as recovery does, before returning.
 * They go out with the next journal_flush (on_durable as for any append). 0; -EINVAL with err
 * (nothing appended: bad frame, checksum, or not continuing this journal's chain); -EAGAIN
 * (the open batch has no room: retry after the next on_durable; nothing appended); or, after
 * fn applied records, fn's non-zero value or -errno (a segment could not be created): memory
 * and disk may disagree, the caller must stop, as recovery does. */
int journal_append_frames(journal *j, const uint8_t *data, uint32_t size, journal_record_fn fn,
                          void *ctx, char *err, size_t errcap);
void journal_close(journal *j);
#endif
