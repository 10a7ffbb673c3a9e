#include "journal_fmt.h"


#include <assert.h>
#include <dirent.h>
#include <unistd.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "limits.h"

void journal_seg_hdr_make(journal_seg_hdr *h, uint64_t seq, uint64_t first_lsn, uint64_t prev_sum,
                          int64_t created_ms) {
    memset(h, 0, sizeof *h);
    memcpy(h->magic, JOURNAL_SEG_MAGIC, 8);
    h->version = JOURNAL_SEG_VERSION;
    h->hdr_bytes = sizeof *h;
    h->seq = seq;
    h->first_lsn = first_lsn;
    h->prev_sum = prev_sum;
    h->created_ms = created_ms;
    h->sum = XXH3_64bits((const uint8_t *)h + 8, sizeof *h - 8);
}

void journal_rec_encode(uint8_t *out, uint16_t type, uint64_t lsn, uint64_t prev_sum, const void *payload,
                        uint32_t payload_len) {
    journal_rec_hdr h = {0};
    uint32_t len = journal_rec_len(payload_len);
    h.magic = JOURNAL_REC_MAGIC;
    h.len = len;
    h.type = type;
    h.version = JOURNAL_REC_VERSION;
    h.payload_len = payload_len;
    h.lsn = lsn;
    h.prev_sum = prev_sum;
    memcpy(out, &h, sizeof h);
    memcpy(out + sizeof h, payload, payload_len);
    memset(out + sizeof h + payload_len, 0, len - sizeof h - payload_len);
    h.sum = XXH3_64bits(out + 8, sizeof h - 8 + payload_len);
    memcpy(out, &h.sum, 8);
}

void journal_frame_make(journal_frame *f, uint32_t magic, uint32_t len, uint64_t first_lsn,
                        uint64_t last_lsn, uint64_t last_sum) {
    f->magic = magic;
    f->len = len;
    f->first_lsn = first_lsn;
    f->last_lsn = last_lsn;
    f->last_sum = last_sum;
    f->sum = XXH3_64bits((const uint8_t *)f + 8, sizeof *f - 8);
}

static bool all_zero(const uint8_t *p, size_t n) {
    /* p[0] is zero and every byte equals the one before it: the library's vectorised memcmp
     * instead of a byte loop (a pre-zeroed segment's tail is up to segment_bytes long). */
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Is there a self-consistent record at off? (magic, bounds, checksum; not the chain) */
static bool record_plausible(const uint8_t *data, size_t size, size_t off) {
    if (size - off < sizeof(journal_rec_hdr)) return false;
    journal_rec_hdr h;
    memcpy(&h, data + off, sizeof h);
    if (h.magic != JOURNAL_REC_MAGIC || h.payload_len > JOURNAL_RECORD_BYTES_MAX ||
        h.len != journal_rec_len(h.payload_len) || h.len > size - off)
        return false;
    return XXH3_64bits(data + off + 8, sizeof h - 8 + h.payload_len) == h.sum;
}

/* Is there a self-consistent frame header or trailer (magic and checksum) at off? */
static bool frame_plausible(const uint8_t *data, size_t size, size_t off, uint32_t magic,
                            journal_frame *f) {
    if (size - off < sizeof *f) return false;
    memcpy(f, data + off, sizeof *f);
    return f->magic == magic && XXH3_64bits(data + off + 8, sizeof *f - 8) == f->sum;
}

/* Is there a self-consistent record (v1) or frame header or trailer (v2) anywhere at or past
 * from (all 8-aligned)? Such a thing was written by a write that completed, so damage before
 * it is not a torn tail. Records are not searched in v2: a torn frame holds whole records. */
static bool plausible_from(const uint8_t *data, size_t size, size_t from, bool records) {
    journal_frame f;
    for (size_t o = from; o < size && size - o >= sizeof(journal_rec_hdr); o += 8)
        if ((records && record_plausible(data, size, o)) ||
            frame_plausible(data, size, o, JOURNAL_FRAME_MAGIC, &f) ||
            frame_plausible(data, size, o, JOURNAL_TRAILER_MAGIC, &f))
            return true;
    return false;
}

/* Checks the record at off (inside [off, end)) against the chain; NULL or why not. */
static const char *record_check(const uint8_t *data, size_t end, size_t off,
                                const journal_chain *chain, journal_rec_hdr *h) {
    if (end - off < sizeof *h) return "truncated record header";
    memcpy(h, data + off, sizeof *h);
    if (h->magic != JOURNAL_REC_MAGIC) return "bad record magic";
    if (h->payload_len > JOURNAL_RECORD_BYTES_MAX || h->len != journal_rec_len(h->payload_len))
        return "bad record length";
    if (h->len > end - off) return "record runs past the end of its frame or segment (torn write)";
    if (XXH3_64bits(data + off + 8, sizeof *h - 8 + h->payload_len) != h->sum)
        return "checksum mismatch";
    if (!all_zero(data + off + sizeof *h + h->payload_len, h->len - sizeof *h - h->payload_len))
        return "record padding is not zero";
    if (h->lsn != chain->next_lsn) return "lsn out of sequence";
    if (h->prev_sum != chain->prev_sum)
        return "hash chain broken (prev_sum does not match the previous record)";
    return NULL;
}

bool journal_frame_read(const uint8_t *data, size_t size, size_t off, uint32_t magic,
                        journal_frame *f) {
    return off <= size && frame_plausible(data, size, off, magic, f);
}

static void chain_take(journal_chain *chain, const journal_rec_hdr *h) {
    chain->next_lsn++;
    chain->prev_sum = h->sum;
    chain->closed = h->type == JOURNAL_REC_CLOSE;
    if (!chain->closed) chain->records++;
}

static void set_bad(journal_scan_result *res, size_t off, const journal_chain *chain,
                    const char *why) {
    res->bad_offset = off;
    res->bad_first_lsn = chain->next_lsn;
    snprintf(res->why, sizeof res->why, "%s", why);
}

/* Version 1: records without frames. Damage followed by a plausible record is damage;
 * otherwise the best v1 can tell is a torn tail. */
static int scan_v1(const uint8_t *data, size_t size, journal_chain *chain, journal_record_fn fn,
                   void *ctx, journal_scan_result *res) {
    size_t off = sizeof(journal_seg_hdr);
    for (;;) {
        res->valid_end = off;
        /* Preallocated or never-written space reads as zeros: a clean end, not a tear. */
        if (off == size || all_zero(data + off, size - off)) {
            res->clean = true;
            return 0;
        }
        journal_rec_hdr h;
        const char *why = record_check(data, size, off, chain, &h);
        if (why) {
            set_bad(res, off, chain, why);
            res->valid_after_bad = res->damaged = plausible_from(data, size, off + 8, true);
            return 0;
        }
        if (chain->stop_after_lsn && h.lsn > chain->stop_after_lsn) {
            set_bad(res, off, chain, "kept lsn reached");
            res->stopped = true;
            return 0;
        }
        if (fn) {
            int rc = fn(ctx, h.type, h.lsn, data + off + sizeof h, h.payload_len);
            if (rc) return rc;
        }
        chain_take(chain, &h);
        off += h.len;
    }
}

/* Is there exactly one frame holding only a close record at off, and nothing but zeros
 * after it? Its lsn in *lsn. */
static bool close_frame_only(const uint8_t *data, size_t size, size_t off, uint64_t *lsn) {
    journal_frame f, t;
    journal_rec_hdr h;
    if (!frame_plausible(data, size, off, JOURNAL_FRAME_MAGIC, &f) || f.first_lsn != f.last_lsn ||
        f.len < JOURNAL_FRAME_OVERHEAD + sizeof h || f.len > size - off ||
        !frame_plausible(data, size, off + f.len - sizeof t, JOURNAL_TRAILER_MAGIC, &t) ||
        !record_plausible(data, off + f.len - sizeof t, off + sizeof f))
        return false;
    memcpy(&h, data + off + sizeof f, sizeof h);
    *lsn = h.lsn;
    return h.type == JOURNAL_REC_CLOSE && off + sizeof f + h.len + sizeof t == off + f.len &&
           all_zero(data + off + f.len, size - off - f.len);
}

/* What follows a bad frame from `after` on: nothing, a clean shutdown's close record
 * (so the bad frame was written whole before it), or other valid data. */
static void judge_after(const uint8_t *data, size_t size, size_t after, journal_scan_result *res) {
    uint64_t close_lsn;
    if (after >= size || all_zero(data + after, size - after)) return;
    if (close_frame_only(data, size, after, &close_lsn)) {
        res->damaged = true;
        if (!res->bad_last_lsn && close_lsn > res->bad_first_lsn) res->bad_last_lsn = close_lsn - 1;
        return;
    }
    if (plausible_from(data, size, after, false)) res->damaged = res->valid_after_bad = true;
}

/* The frame at off is not whole and valid: decide whether it is a torn last write or damage
 * to a frame that was written whole. hdr_ok: its header is self-consistent and continues
 * the chain; whole: its trailer is complete and consistent too (records inside are bad). */
static void judge_frame(const uint8_t *data, size_t size, size_t off, const journal_frame *fh,
                        bool hdr_ok, bool whole, const journal_chain *chain, const char *why,
                        journal_scan_result *res) {
    set_bad(res, off, chain, why);
    size_t after = off + 8;
    journal_frame t;
    if (hdr_ok) {
        size_t end = off + fh->len;
        res->bad_last_lsn = fh->last_lsn;
        if (whole || (end <= size && !all_zero(data + end - sizeof t, sizeof t))) {
            /* A complete trailer, or one that is there but wrong: the write reached the
             * frame's end, so the frame was written whole and is damaged. */
            res->damaged = true;
            res->bad_end = end;
        }
        after = end < size ? end : size;
    } else {
        if (frame_plausible(data, size, off, JOURNAL_FRAME_MAGIC, &t))
            res->damaged = true; /* whole, but wrong */
        /* The header is damaged: a trailer of this frame further on says it was written whole. */
        for (size_t o = off + 8; o + sizeof t <= size; o += 8)
            if (frame_plausible(data, size, o, JOURNAL_TRAILER_MAGIC, &t) &&
                t.first_lsn == chain->next_lsn && t.len == o + sizeof t - off) {
                res->damaged = true;
                res->bad_end = o + sizeof t;
                res->bad_last_lsn = t.last_lsn;
                after = res->bad_end;
                break;
            }
    }
    judge_after(data, size, after, res);
}

/* Checks every record of the whole frame [off, off + len) against a copy of the chain:
 * the frame is applied all or nothing, so a damaged frame never half-replays. */
static const char *frame_records_check(const uint8_t *data, size_t off, const journal_frame *fh,
                                       const journal_chain *chain, size_t *bad_rec) {
    journal_chain c = *chain;
    size_t end = off + fh->len - sizeof(journal_frame), o = off + sizeof(journal_frame);
    journal_rec_hdr h;
    while (o < end) {
        const char *why = record_check(data, end, o, &c, &h);
        *bad_rec = o;
        if (why) return why;
        chain_take(&c, &h);
        o += h.len;
    }
    *bad_rec = 0;
    if (c.next_lsn != fh->last_lsn + 1 || c.prev_sum != fh->last_sum)
        return "frame contents do not match its header (lsn range or checksum)";
    return NULL;
}

/* Hands the record at o of a whole frame to ahead; returns the offset of the next one. */
static size_t ahead_one(const uint8_t *data, size_t o, journal_ahead_fn ahead, void *ctx) {
    journal_rec_hdr h;
    memcpy(&h, data + o, sizeof h);
    ahead(ctx, h.type, data + o + sizeof h, h.payload_len);
    return o + h.len;
}

/* Applies the records of the whole, checked frame [off, end + trailer) through fn, each one
 * announced to ahead (if any) JOURNAL_AHEAD records earlier. 0 or fn's value. */
static int frame_apply(const uint8_t *data, size_t off, size_t end, journal_chain *chain,
                       journal_record_fn fn, journal_ahead_fn ahead, void *ctx) {
    size_t o = off + sizeof(journal_frame), next = o;
    for (int k = 0; ahead && k < JOURNAL_AHEAD && next < end; k++)
        next = ahead_one(data, next, ahead, ctx);
    while (o < end) {
        journal_rec_hdr h;
        memcpy(&h, data + o, sizeof h);
        if (ahead && next < end) next = ahead_one(data, next, ahead, ctx);
        if (fn) {
            int rc = fn(ctx, h.type, h.lsn, data + o + sizeof h, h.payload_len);
            if (rc) return rc;
        }
        chain_take(chain, &h);
        o += h.len;
    }
    return 0;
}

/* Version 2: frames. Returns 0 or the callback's value. */
static int scan_v2(const uint8_t *data, size_t size, journal_chain *chain, journal_record_fn fn,
                   journal_ahead_fn ahead, void *ctx, journal_scan_result *res) {
    size_t off = sizeof(journal_seg_hdr);
    for (;;) {
        res->valid_end = off;
        if (off == size || all_zero(data + off, size - off)) {
            res->clean = true;
            return 0;
        }
        journal_frame fh = {0}, ft;
        const char *why = NULL;
        bool hdr_ok = false, whole = false;
        size_t bad_rec = 0;
        if (!frame_plausible(data, size, off, JOURNAL_FRAME_MAGIC, &fh))
            why = size - off < sizeof fh ? "truncated frame header"
                                         : "bad frame header (magic or checksum)";
        else if (fh.len % 8 || fh.len < JOURNAL_FRAME_OVERHEAD + sizeof(journal_rec_hdr) ||
                 fh.len > JOURNAL_FRAME_BYTES_MAX || fh.last_lsn < fh.first_lsn)
            why = "bad frame length or lsn range";
        else if (fh.first_lsn != chain->next_lsn)
            why = "frame lsn out of sequence";
        else if ((hdr_ok = true) && fh.len > size - off)
            why = "frame runs past the end of the segment (torn write)";
        else if (!frame_plausible(data, size, off + fh.len - sizeof ft, JOURNAL_TRAILER_MAGIC,
                                  &ft) ||
                 ft.len != fh.len || ft.first_lsn != fh.first_lsn || ft.last_lsn != fh.last_lsn ||
                 ft.last_sum != fh.last_sum)
            why = "bad frame trailer (incomplete write or damage)";
        else
            why = frame_records_check(data, off, &fh, chain, &bad_rec), whole = true;
        if (why) {
            judge_frame(data, size, off, &fh, hdr_ok, whole, chain, why, res);
            res->bad_record_offset = bad_rec;
            return 0;
        }
        if (chain->stop_after_lsn && fh.last_lsn > chain->stop_after_lsn) {
            /* Whole frames only: a frame is one write, and the cut keeps no half of one. */
            set_bad(res, off, chain, "kept lsn reached");
            res->stopped = true;
            return 0;
        }
        int rc = frame_apply(data, off, off + fh.len - sizeof ft, chain, fn, ahead, ctx);
        if (rc) return rc;
        off += fh.len;
    }
}

const char *journal_frames_check(const uint8_t *data, size_t size, const journal_chain *chain,
                                 uint64_t *last_lsn, uint64_t *last_sum) {
    journal_chain c = *chain;
    if (size == 0) return "no frame";
    for (size_t off = 0; off < size;) {
        journal_frame fh, ft;
        size_t bad_rec;
        if (!frame_plausible(data, size, off, JOURNAL_FRAME_MAGIC, &fh))
            return size - off < sizeof fh ? "truncated frame header"
                                          : "bad frame header (magic or checksum)";
        if (fh.len % 8 || fh.len < JOURNAL_FRAME_OVERHEAD + sizeof(journal_rec_hdr) ||
            fh.len > JOURNAL_FRAME_BYTES_MAX || fh.last_lsn < fh.first_lsn || fh.len > size - off)
            return "bad frame length or lsn range";
        if (fh.first_lsn != c.next_lsn) return "frame lsn does not continue the journal";
        if (!frame_plausible(data, size, off + fh.len - sizeof ft, JOURNAL_TRAILER_MAGIC, &ft) ||
            ft.len != fh.len || ft.first_lsn != fh.first_lsn || ft.last_lsn != fh.last_lsn ||
            ft.last_sum != fh.last_sum)
            return "bad frame trailer";
        const char *why = frame_records_check(data, off, &fh, &c, &bad_rec);
        if (why) return why;
        for (size_t o = off + sizeof fh; o < off + fh.len - sizeof ft;) {
            journal_rec_hdr h;
            memcpy(&h, data + o, sizeof h);
            if (h.type == JOURNAL_REC_CLOSE) return "a close record in a cluster batch";
            chain_take(&c, &h);
            o += h.len;
        }
        off += fh.len;
    }
    *last_lsn = c.next_lsn - 1;
    *last_sum = c.prev_sum;
    return NULL;
}

void journal_frames_range(const uint8_t *data, size_t size, uint64_t *first_lsn,
                          uint64_t *last_lsn) {
    journal_frame f;
    assert(size >= JOURNAL_FRAME_OVERHEAD);
    memcpy(&f, data, sizeof f);
    *first_lsn = f.first_lsn;
    memcpy(&f, data + size - sizeof f, sizeof f);
    *last_lsn = f.last_lsn;
}

int journal_frames_each(const uint8_t *data, size_t size, journal_record_fn fn, void *ctx) {
    for (size_t off = 0; off < size;) {
        journal_frame fh;
        memcpy(&fh, data + off, sizeof fh);
        assert(fh.magic == JOURNAL_FRAME_MAGIC && fh.len <= size - off);
        for (size_t o = off + sizeof fh; o < off + fh.len - sizeof fh;) {
            journal_rec_hdr h;
            memcpy(&h, data + o, sizeof h);
            int rc = fn(ctx, h.type, h.lsn, data + o + sizeof h, h.payload_len);
            if (rc) return rc;
            o += h.len;
        }
        off += fh.len;
    }
    return 0;
}

int journal_frames_sum_at(const uint8_t *data, size_t size, uint64_t lsn, uint64_t *sum) {
    for (size_t off = 0; off < size;) {
        journal_frame fh;
        memcpy(&fh, data + off, sizeof fh);
        if (lsn >= fh.first_lsn && lsn <= fh.last_lsn) {
            for (size_t o = off + sizeof fh; o < off + fh.len - sizeof fh;) {
                journal_rec_hdr h;
                memcpy(&h, data + o, sizeof h);
                if (h.lsn == lsn) {
                    *sum = h.sum;
                    return 0;
                }
                o += h.len;
            }
        }
        off += fh.len;
    }
    return -1;
}

int journal_scan_segment(const uint8_t *data, size_t size, journal_chain *chain, journal_record_fn fn,
                         void *ctx, journal_scan_result *res) {
    return journal_scan_segment_ahead(data, size, chain, fn, NULL, ctx, res);
}

int journal_scan_segment_ahead(const uint8_t *data, size_t size, journal_chain *chain,
                               journal_record_fn fn, journal_ahead_fn ahead, void *ctx,
                               journal_scan_result *res) {
    memset(res, 0, sizeof *res);
    journal_seg_hdr sh;
    if (size < sizeof sh) {
        set_bad(res, 0, chain, "");
        snprintf(res->why, sizeof res->why, "segment shorter than its header (%zu bytes)", size);
        return 0;
    }
    memcpy(&sh, data, sizeof sh);
    /* A header problem is reported at offset 0, but records may still follow it: a damaged
     * header in front of acknowledged records must not look like a segment torn while it was
     * being created, so the same search for plausible records runs past the header. */
    bool known = sh.version == JOURNAL_SEG_VERSION || sh.version == JOURNAL_SEG_VERSION_V1;
    if (memcmp(sh.magic, JOURNAL_SEG_MAGIC, 8) != 0 || !known ||
        XXH3_64bits(data + 8, sizeof sh - 8) != sh.sum) {
        set_bad(res, 0, chain, "bad segment header (magic, version or checksum)");
        if (memcmp(sh.magic, JOURNAL_SEG_MAGIC, 8) == 0 && !known &&
            XXH3_64bits(data + 8, sizeof sh - 8) == sh.sum)
            snprintf(res->why, sizeof res->why,
                     "segment format version %u is not one this build reads (1 or 2): a newer "
                     "gateway wrote it",
                     sh.version);
        res->valid_after_bad = res->damaged = plausible_from(data, size, sizeof sh, true);
        return 0;
    }
    if (sh.first_lsn != chain->next_lsn || sh.prev_sum != chain->prev_sum) {
        set_bad(res, 0, chain, "");
        snprintf(res->why, sizeof res->why,
                 "segment does not continue the chain (first lsn %llu, expected %llu)",
                 (unsigned long long)sh.first_lsn, (unsigned long long)chain->next_lsn);
        res->valid_after_bad = res->damaged = plausible_from(data, size, sizeof sh, true);
        return 0;
    }
    chain->version = sh.version;
    if (sh.version == JOURNAL_SEG_VERSION_V1) return scan_v1(data, size, chain, fn, ctx, res);
    return scan_v2(data, size, chain, fn, ahead, ctx, res);
}

size_t journal_salvage(const uint8_t *data, size_t size, size_t from, size_t to,
                       journal_salvage_fn fn, void *ctx) {
    size_t n = 0;
    if (to > size) to = size;
    for (size_t o = (from + 7) & ~(size_t)7; o < to && to - o >= sizeof(journal_rec_hdr); o += 8) {
        journal_rec_hdr h;
        memcpy(&h, data + o, sizeof h);
        if (h.magic != JOURNAL_REC_MAGIC || h.payload_len > JOURNAL_RECORD_BYTES_MAX ||
            h.len != journal_rec_len(h.payload_len) || h.len > to - o)
            continue;
        bool verified = record_plausible(data, to, o);
        if (h.type != JOURNAL_REC_CLOSE) {
            n += verified;
            if (fn) fn(ctx, h.type, h.lsn, data + o + sizeof h, h.payload_len, verified);
        }
        o += h.len - 8;
    }
    return n;
}

void journal_seg_name(char *out, size_t cap, uint64_t seq) {
    snprintf(out, cap, "%016llu%s", (unsigned long long)seq, JOURNAL_SEG_SUFFIX);
}

int journal_seg_parse_name(const char *name, uint64_t *seq) {
    size_t n = strlen(name);
    if (n != 16 + strlen(JOURNAL_SEG_SUFFIX) || strcmp(name + 16, JOURNAL_SEG_SUFFIX) != 0) return -1;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        if (name[i] < '0' || name[i] > '9') return -1;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    *seq = v;
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int journal_list_segments(const char *dir, uint64_t **seqs) {
    DIR *d = opendir(dir);
    if (!d) return -errno;
    size_t n = 0, cap = 16;
    uint64_t *v = malloc(cap * sizeof *v);
    if (!v) {
        closedir(d);
        return -ENOMEM;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t s;
        if (journal_seg_parse_name(e->d_name, &s) != 0) continue;
        if (n == cap) {
            cap *= 2;
            uint64_t *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                closedir(d);
                return -ENOMEM;
            }
            v = nv;
        }
        v[n++] = s;
    }
    closedir(d);
    qsort(v, n, sizeof *v, cmp_u64);
    *seqs = v;
    return (int)n;
}

int journal_fd_empty_after_header(int fd) {
    uint8_t buf[16384];
    off_t off = (off_t)sizeof(journal_seg_hdr);
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof buf, off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return 1;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i]) return 0;
        off += n;
    }
}
