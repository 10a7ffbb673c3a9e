/*
 * journal_spare: the journal's next segment, written full of zeros and fdatasynced ahead of
 * use by a thread of its own (issue 13, docs/journal.md "Pre-zeroed segments").
 *
 * Why: an fdatasync after an append that grew the file must also commit the inode's new
 * size (on ext4 a journal commit per batch); in a file whose blocks are already written,
 * overwriting them changes no metadata, so fdatasync flushes the data only. fallocate()
 * would not do: its extents are "unwritten" and the first write into each converts it,
 * which is metadata again.
 *
 * The spare is a file named JOURNAL_SPARE_NAME in the journal directory (the segment
 * scanner ignores it). journal_spare_take() renames it to the next segment's name; the
 * caller then fsyncs the directory, as for a created segment. A crash leaves either a
 * leftover spare (removed at the next start) or a renamed segment that holds only zeros
 * (an empty segment to recovery: cut like a freshly created one).
 * One owner thread calls these functions; the worker only writes the spare file and
 * publishes its state.
 */
#ifndef SG_JOURNAL_SPARE_H
#define SG_JOURNAL_SPARE_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define JOURNAL_SPARE_NAME "spare.sgz"

enum { SPARE_IDLE, SPARE_BUSY, SPARE_READY, SPARE_FAILED };

typedef struct journal_spare {
    int dirfd;
    uint64_t bytes; /* the size of a segment */
    pthread_t th;
    bool joinable;     /* a worker was started and not yet joined */
    _Atomic int state; /* SPARE_*: written by the worker when it ends */
    int fd;            /* the spare, open read-write, once SPARE_READY */
    int err;           /* errno of the last failure (SPARE_FAILED) */
} journal_spare;

/* Writes zeros over [from, to) of fd and fdatasyncs it. 0 or -errno. */
int journal_zero_fill(int fd, uint64_t from, uint64_t to);
/* Removes a spare left by an earlier process (it may be half written). */
void journal_spare_init(journal_spare *s, int dirfd, uint64_t bytes);
/* Starts preparing a spare unless one is ready or being prepared. 0 or -errno. */
int journal_spare_kick(journal_spare *s);
/* When a spare is ready: renames it to name (the directory is not fsynced) and returns its
 * fd, now the caller's. -EAGAIN when none is ready; -errno when the rename failed. */
int journal_spare_take(journal_spare *s, const char *name);
/* Waits for a worker, closes and removes the spare. */
void journal_spare_close(journal_spare *s);
#endif
