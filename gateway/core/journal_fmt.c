#include "journal_fmt.h"


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

static bool all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
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

/* Is there a self-consistent record anywhere at or past from (records are 8-aligned)? Such a
 * record was written by a batch that completed, so the damage before it is not a torn tail. */
static bool plausible_record_from(const uint8_t *data, size_t size, size_t from) {
    for (size_t o = from; o < size && size - o >= sizeof(journal_rec_hdr); o += 8)
        if (record_plausible(data, size, o)) return true;
    return false;
}

int journal_scan_segment(const uint8_t *data, size_t size, journal_chain *chain, journal_record_fn fn,
                         void *ctx, journal_scan_result *res) {
    memset(res, 0, sizeof *res);
    journal_seg_hdr sh;
    if (size < sizeof sh) {
        res->bad_offset = 0;
        snprintf(res->why, sizeof res->why, "segment shorter than its header (%zu bytes)", size);
        return 0;
    }
    memcpy(&sh, data, sizeof sh);
    /* A header problem is reported at offset 0, but records may still follow it: a damaged
     * header in front of acknowledged records must not look like a segment torn while it was
     * being created, so the same search for plausible records runs past the header. */
    if (memcmp(sh.magic, JOURNAL_SEG_MAGIC, 8) != 0 || sh.version != JOURNAL_SEG_VERSION ||
        XXH3_64bits(data + 8, sizeof sh - 8) != sh.sum) {
        snprintf(res->why, sizeof res->why, "bad segment header (magic, version or checksum)");
        res->valid_after_bad = plausible_record_from(data, size, sizeof sh);
        return 0;
    }
    if (sh.first_lsn != chain->next_lsn || sh.prev_sum != chain->prev_sum) {
        snprintf(res->why, sizeof res->why,
                 "segment does not continue the chain (first lsn %llu, expected %llu)",
                 (unsigned long long)sh.first_lsn, (unsigned long long)chain->next_lsn);
        res->valid_after_bad = plausible_record_from(data, size, sizeof sh);
        return 0;
    }
    size_t off = sizeof sh;
    for (;;) {
        res->valid_end = off;
        /* Preallocated or never-written space reads as zeros: a clean end, not a tear. */
        if (off == size || all_zero(data + off, size - off)) {
            res->clean = true;
            return 0;
        }
        const char *why = NULL;
        journal_rec_hdr h;
        if (size - off < sizeof h) {
            why = "truncated record header";
        } else {
            memcpy(&h, data + off, sizeof h);
            if (h.magic != JOURNAL_REC_MAGIC)
                why = "bad record magic";
            else if (h.payload_len > JOURNAL_RECORD_BYTES_MAX || h.len != journal_rec_len(h.payload_len))
                why = "bad record length";
            else if (h.len > size - off)
                why = "record runs past the end of the segment (torn write)";
            else if (XXH3_64bits(data + off + 8, sizeof h - 8 + h.payload_len) != h.sum)
                why = "checksum mismatch";
            else if (h.lsn != chain->next_lsn)
                why = "lsn out of sequence";
            else if (h.prev_sum != chain->prev_sum)
                why = "hash chain broken (prev_sum does not match the previous record)";
        }
        if (why) {
            res->bad_offset = off;
            snprintf(res->why, sizeof res->why, "%s", why);
            res->valid_after_bad = plausible_record_from(data, size, off + 8);
            return 0;
        }
        if (fn) {
            int rc = fn(ctx, h.type, h.lsn, data + off + sizeof h, h.payload_len);
            if (rc) return rc;
        }
        chain->next_lsn++;
        chain->prev_sum = h.sum;
        chain->records++;
        off += h.len;
    }
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
