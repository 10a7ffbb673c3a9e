#include "journal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "ring.h"

#define RETRY_DELAY_NS (100LL * 1000 * 1000)

#ifdef SG_FAULT_INJECTION
#include <signal.h>
/* Crash points, compiled only into test builds (meson -Dfault_injection=true):
 * SG_FAULT=<point>:<N> makes the N-th pass through <point> true (tests/stress/
 * test_fault_points.py). Points: journal_after_write (a batch's write CQE seen, its
 * fdatasync not yet), journal_mid_roll (next segment created, its header not yet
 * written), journal_torn_write (half of a batch's first extent written, then death),
 * journal_torn_roll (the same, for a batch that rolls into a new segment). */
/* SG_FAULT's count when it names point ("<point>:<N>"), else NULL. */
static const char *fault_named(const char *point) {
    const char *f = getenv("SG_FAULT");
    size_t n = strlen(point);
    return f && strncmp(f, point, n) == 0 && f[n] == ':' ? f + n + 1 : NULL;
}
static bool fault_hit(const char *point) {
    static long seen;
    const char *count = fault_named(point);
    return count && ++seen == strtol(count, NULL, 10);
}
#define FAULT_KILL(point) (fault_hit(point) ? (void)raise(SIGKILL) : (void)0)
#else
#define FAULT_KILL(point) ((void)0)
#endif

static int mkdir_p(const char *path) {
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp) return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0750) != 0 && errno != EEXIST) return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0750) != 0 && errno != EEXIST) return -errno;
    return 0;
}

static int seg_open(journal *j, uint64_t seq, int flags) {
    char name[64];
    journal_seg_name(name, sizeof name, seq);
    return openat(j->dirfd, name, flags | O_CLOEXEC, 0640);
}

/* Does segment seq hold no record: nothing past its header (which may itself be torn or
 * missing) but zeros? A roll creates the next segment before the batch that fills it is
 * written, and the batch's writes are linked in order, so a crash that tore an earlier
 * segment leaves the later ones empty like this. 1 yes, 0 no, -1 with err filled. */
static int seg_is_empty(journal *j, uint64_t seq, char *err, size_t errcap) {
    char name[64];
    journal_seg_name(name, sizeof name, seq);
    int fd = seg_open(j, seq, O_RDONLY);
    if (fd < 0) {
        snprintf(err, errcap, "%s/%s: %s", j->dir, name, strerror(errno));
        return -1;
    }
    int e = journal_fd_empty_after_header(fd);
    if (e < 0) {
        snprintf(err, errcap, "%s/%s: read: %s", j->dir, name, strerror(-e));
        close(fd);
        return -1;
    }
    close(fd);
    return e;
}

/* Removes later[0..n) (empty segments a torn or cut batch created by rolling), highest
 * first, so that a crash during this leaves no gap in the sequence. 0 or -1. */
static int remove_later(journal *j, const uint64_t *later, int n, char *err, size_t errcap) {
    if (n == 0) return 0;
    for (int i = n - 1; i >= 0; i--) {
        char lname[64];
        journal_seg_name(lname, sizeof lname, later[i]);
        if (unlinkat(j->dirfd, lname, 0) != 0) {
            snprintf(err, errcap, "%s/%s: unlink empty segment after the cut: %s", j->dir, lname,
                     strerror(errno));
            return -1;
        }
    }
    if (fsync(j->dirfd) != 0) {
        snprintf(err, errcap, "%s: fsync after removing empty segments: %s", j->dir,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* Does any segment in later[0..n) hold a record? 1, 0, or -1 with err filled. */
static int later_hold_records(journal *j, const uint64_t *later, int n, char *err, size_t errcap) {
    for (int i = 0; i < n; i++) {
        int e = seg_is_empty(j, later[i], err, errcap);
        if (e < 0) return -1;
        if (e == 0) return 1;
    }
    return 0;
}

/* Fills rec->damage from a scan that found damage, and hands the still readable records
 * of the damaged part to the damaged callback (so the log can name the orders). */
static void note_damage(const uint8_t *data, size_t size, uint64_t seq,
                        const journal_scan_result *res, bool tail, const journal_opts *o,
                        journal_recovery *rec) {
    journal_damage *d = &rec->damage;
    d->found = true;
    d->tail = tail;
    d->seq = seq;
    d->offset = res->bad_offset;
    d->bytes = size > res->bad_offset ? size - res->bad_offset : 0;
    d->first_lsn = res->bad_first_lsn;
    d->last_lsn = res->bad_last_lsn;
    snprintf(d->why, sizeof d->why, "%s", res->why);
    if (data) d->readable = journal_salvage(data, size, res->bad_offset, size, o->damaged, o->ctx);
}

/* Cuts segment seq (open on fd) at off, removing the later empty segments first; a cut
 * inside the header removes the segment. Returns 1 (stopped here), -1 with err. */
static int cut_at(journal *j, int fd, uint64_t seq, uint64_t off, const uint64_t *later,
                  int n_later, char *err, size_t errcap) {
    char name[64];
    journal_seg_name(name, sizeof name, seq);
    if (remove_later(j, later, n_later, err, errcap) != 0) {
        close(fd);
        return -1;
    }
    if (off < sizeof(journal_seg_hdr)) {
        /* The header itself is torn: the segment was being created. Remove it. */
        close(fd);
        if (unlinkat(j->dirfd, name, 0) != 0) {
            snprintf(err, errcap, "%s/%s: unlink torn segment: %s", j->dir, name, strerror(errno));
            return -1;
        }
        fsync(j->dirfd);
        return 1;
    }
    if (ftruncate(fd, (off_t)off) != 0 || fdatasync(fd) != 0) {
        snprintf(err, errcap, "%s/%s: cutting the tail: %s", j->dir, name, strerror(errno));
        close(fd);
        return -1;
    }
    j->seg_fd = fd;
    j->seg_seq = seq;
    j->seg_off = off;
    return 1;
}

/* Asks the kernel to start reading segment seq now, so that its read overlaps the replay of
 * the one before (a cold start reads the journal once, sequentially). Best effort. */
static void seg_willneed(journal *j, uint64_t seq) {
    int fd = seg_open(j, seq, O_RDONLY);
    if (fd < 0) return;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
    close(fd);
}

/* Close records are the journal's own: the caller's replay never sees them. */
static int replay_data(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *payload,
                       uint32_t len) {
    const journal_opts *o = ctx;
    if (type == JOURNAL_REC_CLOSE || !o->replay) return 0;
    return o->replay(o->ctx, type, lsn, payload, len);
}

static void replay_ahead(void *ctx, uint16_t type, const uint8_t *payload, uint32_t len) {
    const journal_opts *o = ctx;
    if (type != JOURNAL_REC_CLOSE) o->ahead(o->ctx, type, payload, len);
}

/* Maps segment seq and scans it. 0 with *fd open (and res filled), or -1 with err. */
static int scan_file(journal *j, uint64_t seq, journal_chain *chain, const journal_opts *o, int *fd,
                     journal_scan_result *res, journal_recovery *rec, char *err, size_t errcap) {
    char name[64];
    journal_seg_name(name, sizeof name, seq);
    *fd = seg_open(j, seq, O_RDWR);
    if (*fd < 0) {
        snprintf(err, errcap, "%s/%s: %s", j->dir, name, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(*fd, &st) != 0) {
        snprintf(err, errcap, "%s/%s: fstat: %s", j->dir, name, strerror(errno));
        close(*fd);
        return -1;
    }
    size_t size = (size_t)st.st_size;
    const uint8_t *data = NULL;
    if (size > 0) {
        /* Not MAP_POPULATE: that reads the whole segment before the first record is looked
         * at. The read was started (seg_willneed) before; the scan follows it page by page,
         * so a cold start's CPU work overlaps its disk reads from the first page on. */
        data = mmap(NULL, size, PROT_READ, MAP_PRIVATE, *fd, 0);
        if (data == MAP_FAILED) {
            snprintf(err, errcap, "%s/%s: mmap: %s", j->dir, name, strerror(errno));
            close(*fd);
            return -1;
        }
        madvise((void *)data, size, MADV_SEQUENTIAL);
    }
    int rc = journal_scan_segment_ahead(data ? data : (const uint8_t *)"", size, chain, replay_data,
                                        o->ahead ? replay_ahead : NULL, (void *)o, res);
    if (rc == 0 && !res->clean && res->damaged)
        note_damage(data, size, seq, res, !res->valid_after_bad, o, rec);
    if (data) munmap((void *)data, size);
    if (rc != 0) {
        snprintf(err, errcap, "%s/%s: replay refused a record (code %d)", j->dir, name, rc);
        close(*fd);
        return -1;
    }
    return 0;
}

/* The refusal an operator reads: where, what, which lsns, and what to do. */
static void damage_message(const journal *j, const char *name, const journal_scan_result *res,
                           const journal_damage *d, char *err, size_t errcap) {
    char range[64], at[48] = "";
    if (d->last_lsn)
        snprintf(range, sizeof range, "lsn %llu..%llu", (unsigned long long)d->first_lsn,
                 (unsigned long long)d->last_lsn);
    else
        snprintf(range, sizeof range, "lsn %llu and later", (unsigned long long)d->first_lsn);
    if (res->bad_record_offset)
        snprintf(at, sizeof at, " (record at offset %zu)", res->bad_record_offset);
    snprintf(err, errcap,
             "%s/%s offset %zu: %s%s; %s: damaged %s (%llu records still readable) - refusing to "
             "cut records that may have been acknowledged (%s; run `stopctl journal verify %s`)",
             j->dir, name, res->bad_offset, res->why, at,
             d->tail ? "the tail was written whole, this is not a torn write"
                     : "valid records follow, so this is not a torn tail",
             range, (unsigned long long)d->readable,
             d->tail ? "restore it, or start with --truncate-damaged-tail to drop it"
                     : "restore from a backup",
             j->dir);
}

/* Replays one segment file; later[0..n_later) are the segments after it. Returns 0 (go on),
 * 1 (stop: tail cut here, later segments removed), -1 (fatal), JOURNAL_ERR_DAMAGED. */
static int replay_segment(journal *j, uint64_t seq, const uint64_t *later, int n_later,
                          journal_chain *chain, const journal_opts *o, journal_recovery *rec,
                          char *err, size_t errcap) {
    char name[64];
    journal_seg_name(name, sizeof name, seq);
    int fd;
    journal_scan_result res;
    if (scan_file(j, seq, chain, o, &fd, &res, rec, err, errcap) != 0) return -1;
    rec->segments++;
    if (res.stopped) {
        /* keep_through_lsn: what follows was never committed by the cluster. */
        struct stat st;
        rec->kept_cut = true;
        rec->cut_seq = seq;
        rec->cut_offset = res.bad_offset;
        rec->cut_bytes = fstat(fd, &st) == 0 ? (uint64_t)st.st_size - res.bad_offset : 0;
        snprintf(rec->cut_why, sizeof rec->cut_why, "lsn %llu and later never committed",
                 (unsigned long long)res.bad_first_lsn);
        return cut_at(j, fd, seq, res.bad_offset, later, n_later, err, errcap);
    }
    if (res.clean) {
        j->seg_fd = fd;
        j->seg_seq = seq;
        j->seg_off = res.valid_end;
        return 0;
    }
    /* A batch that rolled writes the old segment's tail, fdatasyncs it, and only then
     * (linked) writes the new segment, so a later segment with records means the bad part
     * here was once durable: damage, not a torn tail. */
    int later_rec = res.valid_after_bad ? 0 : later_hold_records(j, later, n_later, err, errcap);
    if (later_rec < 0) {
        close(fd);
        return -1;
    }
    if (res.damaged || later_rec) {
        if (!res.damaged) note_damage(NULL, 0, seq, &res, false, o, rec);
        journal_damage *d = &rec->damage;
        d->tail = d->tail && !later_rec;
        if (d->tail && o->truncate_damaged_tail) {
            d->cut = true;
            return cut_at(j, fd, seq, res.bad_offset, later, n_later, err, errcap);
        }
        close(fd);
        damage_message(j, name, &res, d, err, errcap);
        return JOURNAL_ERR_DAMAGED;
    }
    /* A torn tail: the write that held it never completed its fdatasync, so nothing in it
     * was acknowledged. Cut it so the next append continues a valid chain. */
    rec->tail_cut = true;
    rec->cut_seq = seq;
    rec->cut_offset = res.bad_offset;
    struct stat st;
    rec->cut_bytes = fstat(fd, &st) == 0 ? (uint64_t)st.st_size - res.bad_offset : 0;
    snprintf(rec->cut_why, sizeof rec->cut_why, "%s", res.why);
    return cut_at(j, fd, seq, res.bad_offset, later, n_later, err, errcap);
}

/* Create segment seq; its header goes out with the first batch written to it. With
 * preallocate, the ready spare (zero-filled, synced) becomes it; else a new empty file. */
static int seg_create(journal *j, uint64_t seq) {
    char name[64];
    journal_seg_name(name, sizeof name, seq);
    int fd = j->prealloc ? journal_spare_take(&j->spare, name) : -EAGAIN;
    if (fd < 0) fd = seg_open(j, seq, O_WRONLY | O_CREAT | O_EXCL);
    if (fd < 0) return -errno;
    /* The directory entry must be durable before any record in the file is acknowledged. */
    if (fsync(j->dirfd) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    j->stats.segments_created++;
    return fd;
}

/* Zero-fills the open segment from its end to segment_bytes, so that appends overwrite
 * written blocks and fdatasync commits no size (journal_spare.h says why). Once per start,
 * before anything is accepted. A failure (full disk) is not fatal: the segment is cut back
 * and grows by appends as without preallocation; rec says so. */
static void prealloc_open_segment(journal *j, journal_recovery *rec) {
    int64_t t0 = clock_mono_ns();
    struct stat st;
    if (fstat(j->seg_fd, &st) != 0) {
        rec->prealloc_errno = errno;
        return;
    }
    uint64_t size = (uint64_t)st.st_size;
    assert(size >= j->seg_off);
    if (size < j->segment_bytes) {
        int rc = journal_zero_fill(j->seg_fd, size, j->segment_bytes);
        if (rc != 0) {
            rec->prealloc_errno = -rc;
            /* Best effort: what is left past the log's end is zeros, a clean end anyway. */
            if (ftruncate(j->seg_fd, (off_t)size) == 0) (void)fdatasync(j->seg_fd);
        }
    }
    rec->prealloc_ns = clock_mono_ns() - t0;
    j->spare_for = 0;
}

int journal_open(journal *j, const char *dir, const journal_opts *o, journal_recovery *rec,
                 char *err, size_t errcap) {
    memset(j, 0, sizeof *j);
    memset(rec, 0, sizeof *rec);
    j->dirfd = -1;
    j->seg_fd = -1;
    j->segment_bytes = o->segment_bytes;
    snprintf(j->dir, sizeof j->dir, "%s", dir);
    int rc = mkdir_p(dir);
    if (rc) {
        snprintf(err, errcap, "journal_dir %s: %s", dir, strerror(-rc));
        return -1;
    }
    j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dirfd < 0) {
        snprintf(err, errcap, "journal_dir %s: %s", dir, strerror(errno));
        return -1;
    }
    if (o->preallocate) {
        journal_spare_init(&j->spare, j->dirfd, o->segment_bytes);
        j->prealloc = true;
    }
    /* Populated now: the first burst after a start should not fault on its batch buffer. */
    for (int i = 0; i < 2; i++) {
        j->batch[i].data = mmap(NULL, JOURNAL_BUF_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (j->batch[i].data == MAP_FAILED) {
            snprintf(err, errcap, "journal buffers: %s", strerror(errno));
            return -1;
        }
    }
    int64_t t0 = clock_mono_ns();
    uint64_t *seqs = NULL;
    int n = journal_list_segments(dir, &seqs);
    if (n < 0) {
        snprintf(err, errcap, "journal_dir %s: %s", dir, strerror(-n));
        return -1;
    }
    journal_chain chain = {.next_lsn = 1, .prev_sum = 0, .stop_after_lsn = o->keep_through_lsn};
    for (int i = 0; i < n; i++) {
        if (i > 0 && seqs[i] != seqs[i - 1] + 1) {
            snprintf(err, errcap, "journal_dir %s: segment %llu missing", dir, (unsigned long long)(seqs[i - 1] + 1));
            free(seqs);
            return -1;
        }
        if (j->seg_fd >= 0) close(j->seg_fd);
        j->seg_fd = -1;
        if (i == 0) seg_willneed(j, seqs[i]);
        if (i + 1 < n) seg_willneed(j, seqs[i + 1]);
        rc = replay_segment(j, seqs[i], seqs + i + 1, n - i - 1, &chain, o, rec, err, errcap);
        if (rc < 0) {
            free(seqs);
            return rc == JOURNAL_ERR_DAMAGED ? rc : -1;
        }
        if (rc == 1) {
            /* Tail cut here; the segments after it (empty) are gone. */
            n = i + 1;
            break;
        }
    }
    uint64_t last_seq = n > 0 ? seqs[n - 1] : 0;
    free(seqs);
    rec->clean_shutdown = chain.closed && !rec->tail_cut && !rec->damage.cut && !rec->kept_cut;
    if (j->seg_fd >= 0 && chain.version == JOURNAL_SEG_VERSION_V1) {
        /* An old journal: read as it is, continued in a new segment of the current format. */
        close(j->seg_fd);
        j->seg_fd = -1;
        rec->upgraded = true;
    }
    rec->records = chain.records;
    rec->replay_ns = clock_mono_ns() - t0;
    j->next_lsn = chain.next_lsn;
    j->last_sum = chain.prev_sum;
    j->durable_lsn = chain.next_lsn - 1;
    if (j->seg_fd < 0) {
        /* Nothing usable on disk (empty dir, or the last segment's header was torn). */
        bool gone = ((rec->tail_cut || rec->kept_cut) && rec->cut_offset < sizeof(journal_seg_hdr)) ||
                    (rec->damage.cut && rec->damage.offset < sizeof(journal_seg_hdr));
        uint64_t seq = last_seq + (gone ? 0 : 1);
        if (seq == 0) seq = 1;
        int fd = seg_create(j, seq);
        if (fd < 0) {
            snprintf(err, errcap, "journal_dir %s: creating segment: %s", dir, strerror(-fd));
            return -1;
        }
        journal_seg_hdr h;
        journal_seg_hdr_make(&h, seq, j->next_lsn, j->last_sum, clock_now_ms());
        if (pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || fdatasync(fd) != 0) {
            snprintf(err, errcap, "journal_dir %s: writing segment header: %s", dir, strerror(errno));
            close(fd);
            return -1;
        }
        j->seg_fd = fd;
        j->seg_seq = seq;
        j->seg_off = sizeof h;
    }
    if (o->preallocate) prealloc_open_segment(j, rec);
    j->open_idx = 0;
    return 0;
}

void journal_attach(journal *j, struct io_uring *ring, journal_durable_fn fn, void *ctx) {
    j->ring = ring;
    j->skip_write_cqe = (ring->features & IORING_FEAT_CQE_SKIP) != 0;
#ifdef SG_FAULT_INJECTION
    /* That crash point is the write's completion: keep it. */
    if (fault_named("journal_after_write")) j->skip_write_cqe = false;
#endif
    j->on_durable = fn;
    j->ctx = ctx;
}

bool journal_has_room(const journal *j, uint32_t payload_len) {
    const journal_batch *b = &j->batch[j->open_idx];
    /* Room for the record plus, in case it triggers a roll, the old frame's trailer, a
     * segment header and the new frame (header and trailer). */
    return b->len + journal_rec_len(payload_len) + sizeof(journal_seg_hdr) +
                   2 * JOURNAL_FRAME_OVERHEAD <=
               (j->batch_cap ? j->batch_cap : JOURNAL_BUF_BYTES) &&
           b->n_ext < JOURNAL_EXTENTS_MAX;
}

static void batch_put(journal *j, journal_batch *b, const void *p, uint32_t n) {
    if (b->n_ext == 0 || b->ext[b->n_ext - 1].fd != j->seg_fd) {
        assert(b->n_ext < JOURNAL_EXTENTS_MAX);
        b->ext[b->n_ext++] = (journal_ext){.fd = j->seg_fd, .file_off = j->seg_off, .buf_off = b->len, .len = 0};
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->ext[b->n_ext - 1].len += n;
    j->seg_off += n;
}

/* A frame opens before the first record a batch puts into a segment; its header is
 * filled in when it closes, once its length and last record are known. */
static void frame_open(journal *j, journal_batch *b) {
    static const journal_frame zero;
    assert(!b->frame_open);
    b->frame_open = true;
    b->frame_off = b->len;
    b->frame_first = j->next_lsn;
    batch_put(j, b, &zero, sizeof zero);
}

/* Closes the open frame: header filled in place, trailer appended. The write that carries
 * it is the batch's one write into that segment, so framing costs no write or fsync. */
static void frame_close(journal *j, journal_batch *b) {
    assert(b->frame_open && j->next_lsn > b->frame_first);
    journal_frame f;
    uint32_t len = b->len - b->frame_off + (uint32_t)sizeof f;
    journal_frame_make(&f, JOURNAL_FRAME_MAGIC, len, b->frame_first, j->next_lsn - 1, j->last_sum);
    memcpy(b->data + b->frame_off, &f, sizeof f);
    journal_frame_make(&f, JOURNAL_TRAILER_MAGIC, len, b->frame_first, j->next_lsn - 1,
                       j->last_sum);
    batch_put(j, b, &f, sizeof f);
    b->frame_open = false;
}

static int roll(journal *j, journal_batch *b) {
    int fd = seg_create(j, j->seg_seq + 1);
    if (fd < 0) return fd;
    if (b->frame_open) frame_close(j, b);
    FAULT_KILL("journal_mid_roll");
    assert(j->n_retired < JOURNAL_RETIRED_MAX);
    /* The old fd is referenced at most by the open batch (and the one in flight): close it
     * once the open batch has completed. */
    j->retired[j->n_retired].fd = j->seg_fd;
    j->retired[j->n_retired].after_seq = b->seq;
    j->n_retired++;
    j->seg_fd = fd;
    j->seg_seq++;
    j->seg_off = 0;
    journal_seg_hdr h;
    journal_seg_hdr_make(&h, j->seg_seq, j->next_lsn, j->last_sum, clock_now_ms());
    batch_put(j, b, &h, sizeof h);
    return 0;
}

int64_t journal_append(journal *j, uint16_t type, const void *payload, uint32_t payload_len) {
    assert(payload_len + sizeof(journal_rec_hdr) <= JOURNAL_RECORD_BYTES_MAX);
    if (!journal_has_room(j, payload_len)) return -EAGAIN;
    journal_batch *b = &j->batch[j->open_idx];
    bool lazy = j->next_lazy;
    j->next_lazy = false;
    if (b->len == 0) {
        b->seq = ++j->batch_seq;
        b->urgent = false;
        b->opened_ns = clock_mono_ns();
    }
    if (!lazy) b->urgent = true;
    uint32_t len = journal_rec_len(payload_len);
    uint64_t framed = len + (b->frame_open ? sizeof(journal_frame) : JOURNAL_FRAME_OVERHEAD);
    if (j->seg_off + framed > j->segment_bytes &&
        j->seg_off > sizeof(journal_seg_hdr) + JOURNAL_FRAME_OVERHEAD) {
        if (b->n_ext + 1 > JOURNAL_EXTENTS_MAX) return -EAGAIN;
        int rc = roll(j, b);
        if (rc) return rc;
    }
    if (!b->frame_open) frame_open(j, b);
    uint8_t rec[JOURNAL_RECORD_BYTES_MAX];
    journal_rec_encode(rec, type, j->next_lsn, j->last_sum, payload, payload_len);
    memcpy(&j->last_sum, rec, 8);
    batch_put(j, b, rec, len);
    b->records++;
    b->last_lsn = j->next_lsn;
    return (int64_t)j->next_lsn++;
}

/* Applies checked frames through fn, then copies them into the open batch; a segment roll
 * goes between frames (a frame never spans two segments). */
static int put_frames(journal *j, journal_batch *b, const uint8_t *data, uint32_t size,
                      journal_record_fn fn, void *ctx) {
    if (fn) {
        int rc = journal_frames_each(data, size, fn, ctx);
        if (rc) return rc;
    }
    if (b->len == 0) {
        b->seq = ++j->batch_seq;
        b->opened_ns = clock_mono_ns();
    }
    b->urgent = true;
    if (b->frame_open) frame_close(j, b);
    for (uint32_t off = 0; off < size;) {
        journal_frame fh;
        memcpy(&fh, data + off, sizeof fh);
        if (j->seg_off + fh.len > j->segment_bytes &&
            j->seg_off > sizeof(journal_seg_hdr) + JOURNAL_FRAME_OVERHEAD) {
            int rc = roll(j, b);
            if (rc) return rc;
        }
        batch_put(j, b, data + off, fh.len);
        b->records += (uint32_t)(fh.last_lsn - fh.first_lsn + 1);
        b->last_lsn = fh.last_lsn;
        j->next_lsn = fh.last_lsn + 1; /* what a roll's segment header must continue */
        j->last_sum = fh.last_sum;
        off += fh.len;
    }
    return 0;
}

int journal_append_frames(journal *j, const uint8_t *data, uint32_t size, journal_record_fn fn,
                          void *ctx, char *err, size_t errcap) {
    journal_chain c = {.next_lsn = j->next_lsn, .prev_sum = j->last_sum};
    uint64_t last_lsn, last_sum;
    const char *why = journal_frames_check(data, size, &c, &last_lsn, &last_sum);
    if (why) {
        uint64_t first = 0;
        if (size >= sizeof(journal_frame)) memcpy(&first, data + 16, sizeof first);
        snprintf(err, errcap, "cluster batch at lsn %llu refused: %s (journal ends at lsn %llu)",
                 (unsigned long long)first, why, (unsigned long long)(j->next_lsn - 1));
        return -EINVAL;
    }
    journal_batch *b = &j->batch[j->open_idx];
    /* Worst case: every frame rolls into a segment of its own. */
    uint32_t frames = 0;
    for (uint32_t off = 0; off < size; frames++) {
        journal_frame fh;
        memcpy(&fh, data + off, sizeof fh);
        off += fh.len;
    }
    if (b->len + size + frames * sizeof(journal_seg_hdr) + JOURNAL_FRAME_OVERHEAD >
            JOURNAL_BUF_BYTES ||
        b->n_ext + frames + 1 > JOURNAL_EXTENTS_MAX)
        return -EAGAIN;
    int rc = put_frames(j, b, data, size, fn, ctx);
    if (rc) {
        snprintf(err, errcap, "cluster batch at lsn %llu: %s", (unsigned long long)j->next_lsn,
                 rc < 0 ? strerror(-rc) : "a record was refused by apply");
        return rc;
    }
    assert(j->next_lsn == last_lsn + 1 && j->last_sum == last_sum && b->last_lsn == last_lsn);
    return 0;
}

static void submit_batch(journal *j, journal_batch *b, int64_t now_ns) {
    assert(b->n_ext > 0);
    j->cqe_expected = 2 * b->n_ext;
    j->cqe_failed = false;
    j->inflight = true;
    j->submit_ns = now_ns;
    uint32_t op = 0;
    for (uint32_t i = 0; i < b->n_ext; i++) {
        const journal_ext *e = &b->ext[i];
#ifdef SG_FAULT_INJECTION
        if (i == 0 && e->len >= 16 &&
            (fault_hit("journal_torn_write") || (b->n_ext > 1 && fault_hit("journal_torn_roll")))) {
            /* An odd length: records are 8-byte multiples, so this always ends inside one. */
            if (pwrite(e->fd, b->data + e->buf_off, (e->len / 2) | 1, e->file_off) < 0) abort();
            raise(SIGKILL);
        }
#endif
        struct io_uring_sqe *sqe = ring_sqe(j->ring);
        io_uring_prep_write(sqe, e->fd, b->data + e->buf_off, e->len, e->file_off);
        sqe->flags |= IOSQE_IO_LINK | (j->skip_write_cqe ? IOSQE_CQE_SKIP_SUCCESS : 0);
        io_uring_sqe_set_data64(sqe, ud_make(UD_JOURNAL, op++, 0));
        sqe = ring_sqe(j->ring);
        io_uring_prep_fsync(sqe, e->fd, IORING_FSYNC_DATASYNC);
        if (i + 1 < b->n_ext) sqe->flags |= IOSQE_IO_LINK;
        io_uring_sqe_set_data64(sqe, ud_make(UD_JOURNAL, op++, 0));
    }
}

int64_t journal_lazy_deadline_ns(const journal *j) {
    const journal_batch *b = &j->batch[j->open_idx];
    /* While a batch is in flight the open one cannot go before its completion, which wakes
     * the loop anyway: a deadline passed meanwhile made the loop spin without waiting (on
     * every fdatasync slower than JOURNAL_LAZY_NS), taking a CPU from the disk's worker. */
    if (j->inflight || j->retry_at_ns) return 0;
    return b->len && !b->urgent ? b->opened_ns + JOURNAL_LAZY_NS : 0;
}

void journal_flush(journal *j, int64_t now_ns) {
    if (j->inflight) return;
    if (j->retry_at_ns) {
        if (now_ns < j->retry_at_ns) return;
        j->retry_at_ns = 0;
        /* The failed batch is still the closed one: resend it (same bytes, same offsets). */
        submit_batch(j, &j->batch[j->open_idx ^ 1], now_ns);
        return;
    }
    journal_batch *b = &j->batch[j->open_idx];
    if (j->prealloc && j->spare_for != j->seg_seq && j->seg_off >= j->segment_bytes / 2) {
        /* Half way through a segment: have the next one zero-filled by the time it is
         * needed (once per segment; a failure leaves the roll to create a plain one). */
        j->spare_for = j->seg_seq;
        journal_spare_kick(&j->spare);
    }
    if (b->len == 0) return;
    if (!b->urgent && now_ns - b->opened_ns < JOURNAL_LAZY_NS && !j->flush_all) return;
    if (b->frame_open) frame_close(j, b); /* not open when it ends with another's frames */
    j->open_idx ^= 1;
    submit_batch(j, b, now_ns);
}

static void rpf_count(journal_stats *s, uint64_t records) {
    int k = 0;
    uint64_t lim = 1;
    while (k < JOURNAL_RPF_BUCKETS - 1 && records > lim) {
        lim *= 2;
        k++;
    }
    s->rpf_buckets[k]++;
}

/* A write that wrote only part of an extent does not say why: a full disk shows as a short
 * write. Write the rest the way write(2) users learn it - the next write returns the error -
 * so the log and the ERR BUSY reason name ENOSPC, not a made-up EIO. Error path only; the
 * batch is rewritten whole either way. */
static int short_write_errno(const journal_ext *e, const uint8_t *data, uint32_t done) {
    while (done < e->len) {
        ssize_t n = pwrite(e->fd, data + e->buf_off + done, e->len - done, (off_t)(e->file_off + done));
        if (n < 0) return errno == EINTR ? EIO : errno;
        if (n == 0) return EIO;
        done += (uint32_t)n;
    }
    return EIO; /* the rest went through: a transient short write */
}

void journal_on_cqe(journal *j, uint32_t op, int res, int64_t now_ns) {
    assert(j->inflight);
    journal_batch *b = &j->batch[j->open_idx ^ 1];
    if (op % 2 == 0) {
        uint32_t want = b->ext[op / 2].len;
        if (res < 0 || (uint32_t)res != want) {
            j->cqe_failed = true;
            j->last_error = res < 0 ? -res : short_write_errno(&b->ext[op / 2], b->data, (uint32_t)res);
        } else {
            FAULT_KILL("journal_after_write");
        }
    } else if (res < 0) {
        j->cqe_failed = true;
        if (res != -ECANCELED) j->last_error = -res;
    }
    /* A chain's completions arrive in order; the batch is settled by its last fdatasync's.
     * With skipped write CQEs, a write that failed for itself (not -ECANCELED after an
     * earlier failure) is the chain's last completion: the kernel posts none for the
     * operations it cancels behind it (a short write counts as failed too). */
    bool last = op + 1 == j->cqe_expected ||
                (j->skip_write_cqe && op % 2 == 0 && res != -ECANCELED);
    if (!last) return;
    assert(j->cqe_failed || op + 1 == j->cqe_expected);
    j->inflight = false;
    if (j->cqe_failed) {
        /* Nothing in the batch is acknowledged; rewrite it whole after a pause (full disk,
         * transient I/O error). The open batch keeps filling until it has no room. */
        j->stats.write_errors++;
        j->retry_at_ns = now_ns + RETRY_DELAY_NS;
        return;
    }
    j->last_error = 0;
    j->stats.fsyncs += b->n_ext;
    j->stats.records += b->records;
    j->stats.bytes += b->len;
    j->stats.last_batch_records = b->records;
    j->stats.fsync_ns_total += (uint64_t)(now_ns - j->submit_ns);
    rpf_count(&j->stats, b->records);
    j->durable_lsn = b->last_lsn;
    uint64_t done_seq = b->seq;
    b->len = 0;
    b->records = 0;
    b->n_ext = 0;
    for (uint32_t i = 0; i < j->n_retired;) {
        if (j->retired[i].after_seq <= done_seq) {
            close(j->retired[i].fd);
            j->retired[i] = j->retired[--j->n_retired];
        } else {
            i++;
        }
    }
    if (j->on_durable) j->on_durable(j->ctx, j->durable_lsn);
}

bool journal_idle(const journal *j) {
    return !j->inflight && j->batch[j->open_idx].len == 0 && j->retry_at_ns == 0;
}

uint64_t journal_last_lsn(const journal *j) { return j->next_lsn - 1; }

int journal_seal(journal *j, int64_t now_ms) {
    if (!journal_idle(j) || j->seg_fd < 0) return -EBUSY;
    int64_t lsn = journal_append(j, JOURNAL_REC_CLOSE, &now_ms, sizeof now_ms);
    if (lsn < 0) return (int)lsn;
    journal_batch *b = &j->batch[j->open_idx];
    frame_close(j, b);
    for (uint32_t i = 0; i < b->n_ext; i++) {
        const journal_ext *e = &b->ext[i];
        ssize_t n = pwrite(e->fd, b->data + e->buf_off, e->len, (off_t)e->file_off);
        if (n != (ssize_t)e->len) return n < 0 ? -errno : -EIO;
        if (fdatasync(e->fd) != 0) return -errno;
    }
    j->durable_lsn = (uint64_t)lsn;
    b->len = 0;
    b->records = 0;
    b->n_ext = 0;
    return 0;
}

void journal_close(journal *j) {
    if (j->prealloc) journal_spare_close(&j->spare);
    j->prealloc = false;
    for (uint32_t i = 0; i < j->n_retired; i++) close(j->retired[i].fd);
    j->n_retired = 0;
    if (j->seg_fd >= 0) {
        fdatasync(j->seg_fd);
        close(j->seg_fd);
    }
    j->seg_fd = -1;
    if (j->dirfd >= 0) close(j->dirfd);
    j->dirfd = -1;
    for (int i = 0; i < 2; i++)
        if (j->batch[i].data && j->batch[i].data != MAP_FAILED) munmap(j->batch[i].data, JOURNAL_BUF_BYTES);
}
