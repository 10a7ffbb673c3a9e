/*
 * fuzz_journal: the journal scanner (journal_fmt.c journal_scan_segment) and recovery
 * (journal.c journal_open: replay, torn-tail cut, refusal) on arbitrary segment bytes.
 *
 * The first input byte picks how the rest becomes segment files:
 *   mode 0  the bytes are segment 1, as they are;
 *   mode 1  a valid segment header, then the bytes;
 *   mode 2  a valid header, then frames (batches) of records built from the bytes with a
 *           valid hash chain (so the scanner gets past the checksums), optionally damaged:
 *           a flipped byte, a garbage tail, a record cut short by the end of the input (a
 *           frame left without its trailer: a torn write);
 *   mode 3  as 2, and a record may start segment 2 (a roll), so recovery sees several.
 * Record layout in modes 2-3: u8 type, u16 payload length, u8 op, payload. op 0x80: flip
 * byte (op & 0x3f) of the encoded record; 0x40: the open frame is closed and the rest of the
 * input is appended raw; 0x20 (mode 3): roll to the next segment before this record; 0x10:
 * close the open frame (a new batch) before this record.
 *
 * Checked: the scan stays inside the buffer (an exact-size copy), every replayed payload
 * decodes or is refused by record_decode without harm, an undamaged chain is accepted
 * whole by both the scanner and journal_open, a flipped byte inside complete frames is
 * refused as damage (never cut as a torn tail), and after journal_open succeeded the files
 * it leaves form one clean chain holding exactly the records it replayed.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "journal.h"
#include "journal_fmt.h"
#include "record.h"

#define SEGS_MAX 4

/* Linked with -Wl,--wrap=mmap,--wrap=mmap64 (tests/fuzz/meson.build; with
 * _FILE_OFFSET_BITS=64 glibc's mmap is mmap64): journal_open's 2 x 8 MiB batch buffers are
 * mapped without MAP_POPULATE, which changes nothing but the cost of each run (30x). */
void *__real_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    if (flags & MAP_ANONYMOUS) flags &= ~MAP_POPULATE;
    return __real_mmap64(addr, len, prot, flags, fd, off);
}
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
    if (flags & MAP_ANONYMOUS) flags &= ~MAP_POPULATE;
    return __real_mmap(addr, len, prot, flags, fd, off);
}

typedef struct seg {
    uint8_t *p;
    size_t len, cap;
} seg;

static void put(seg *s, const void *p, size_t n) {
    if (n == 0) return;
    if (s->cap - s->len < n) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap - s->len < n) cap *= 2;
        uint8_t *q = realloc(s->p, cap);
        if (!q) abort();
        s->p = q;
        s->cap = cap;
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
}

/* The open frame of a segment being built: its header is reserved, filled when it closes. */
typedef struct frame_state {
    bool open;
    size_t off;
    uint64_t first;
} frame_state;

static void frame_begin(seg *s, frame_state *f, uint64_t lsn) {
    static const journal_frame zero;
    f->open = true;
    f->off = s->len;
    f->first = lsn;
    put(s, &zero, sizeof zero);
}

static void frame_end(seg *s, frame_state *f, uint64_t next_lsn, uint64_t last_sum) {
    if (!f->open) return;
    f->open = false;
    if (next_lsn == f->first) { /* no record in it: drop the reserved header */
        s->len = f->off;
        return;
    }
    journal_frame fr;
    uint32_t len = (uint32_t)(s->len - f->off + sizeof fr);
    journal_frame_make(&fr, JOURNAL_FRAME_MAGIC, len, f->first, next_lsn - 1, last_sum);
    memcpy(s->p + f->off, &fr, sizeof fr);
    journal_frame_make(&fr, JOURNAL_TRAILER_MAGIC, len, f->first, next_lsn - 1, last_sum);
    put(s, &fr, sizeof fr);
}

static int replayed(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *payload, uint32_t payload_len) {
    (void)lsn;
    static order_rec r;
    if (record_decode(type, payload, payload_len, &r) == 0 && r.rows.len) {
        size_t off = 0;
        list_row row;
        while (record_row_next(r.rows, &off, &row) == 1) {
        }
    }
    (*(uint64_t *)ctx)++;
    return 0;
}

static char dir[128];

static void clear_dir(void) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

static void remove_dir(void) {
    clear_dir();
    rmdir(dir);
}

static void write_seg(uint64_t seq, const seg *s) {
    char name[64], path[256];
    journal_seg_name(name, sizeof name, seq);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) abort();
    if (s->len && write(fd, s->p, s->len) != (ssize_t)s->len) abort();
    close(fd);
}

/* Scan every segment file of dir as one chain; all must be clean. Returns records. */
static uint64_t rescan_dir(void) {
    uint64_t *seqs = NULL;
    int n = journal_list_segments(dir, &seqs);
    if (n < 0) abort();
    journal_chain chain = {.next_lsn = 1};
    for (int i = 0; i < n; i++) {
        char name[64], path[256];
        journal_seg_name(name, sizeof name, seqs[i]);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        FILE *f = fopen(path, "rb");
        if (!f) abort();
        seg s = {0};
        uint8_t buf[4096];
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, f)) > 0) put(&s, buf, got);
        fclose(f);
        journal_scan_result res;
        journal_scan_segment(s.p ? s.p : (const uint8_t *)"", s.len, &chain, NULL, NULL, &res);
        if (!res.clean) {
            fprintf(stderr, "after recovery, segment %s is not clean at %zu: %s\n", name, res.bad_offset, res.why);
            abort();
        }
        free(s.p);
    }
    free(seqs);
    return chain.records;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/dev/shm/sgfuzz-journal-%d", (int)getpid());
        if (mkdir(dir, 0700) != 0) {
            snprintf(dir, sizeof dir, "/tmp/sgfuzz-journal-%d", (int)getpid());
            mkdir(dir, 0700);
        }
        atexit(remove_dir);
    }
    int mode = data[0] & 3;
    const uint8_t *in = data + 1;
    size_t left = size - 1;

    seg segs[SEGS_MAX] = {{0}};
    int nseg = 1;
    bool damaged = false, flipped_only = true; /* damage, if any, is flips inside whole frames */
    uint64_t built = 0, lsn = 1, sum = 0;
    frame_state fs = {0};
    if (mode == 0) {
        put(&segs[0], in, left);
        damaged = true;
    } else {
        journal_seg_hdr h;
        journal_seg_hdr_make(&h, 1, 1, 0, 1700000000000);
        put(&segs[0], &h, sizeof h);
        if (mode == 1) {
            put(&segs[0], in, left);
            damaged = true;
        } else {
            static uint8_t rec[JOURNAL_RECORD_BYTES_MAX];
            while (left > 0) {
                if (left < 4) { /* a header cut short: a torn write */
                    if (!fs.open) frame_begin(&segs[nseg - 1], &fs, lsn);
                    put(&segs[nseg - 1], in, left);
                    fs.open = false;
                    damaged = true;
                    flipped_only = false;
                    break;
                }
                uint16_t type = in[0], plen;
                memcpy(&plen, in + 1, 2);
                uint8_t op = in[3];
                in += 4;
                left -= 4;
                if (plen > JOURNAL_RECORD_BYTES_MAX - sizeof(journal_rec_hdr))
                    plen = (uint16_t)(plen % (JOURNAL_RECORD_BYTES_MAX - sizeof(journal_rec_hdr)));
                if (op & 0x10) frame_end(&segs[nseg - 1], &fs, lsn, sum);
                if (mode == 3 && (op & 0x20) && nseg < SEGS_MAX) {
                    frame_end(&segs[nseg - 1], &fs, lsn, sum);
                    journal_seg_hdr sh;
                    journal_seg_hdr_make(&sh, (uint64_t)nseg + 1, lsn, sum, 1700000000000);
                    put(&segs[nseg++], &sh, sizeof sh);
                }
                seg *s = &segs[nseg - 1];
                if (op & 0x40) {
                    frame_end(s, &fs, lsn, sum);
                    put(s, in, left);
                    if (left > 0) damaged = true, flipped_only = false;
                    break;
                }
                if (!fs.open) frame_begin(s, &fs, lsn);
                bool cut = plen > left;
                uint32_t have = cut ? (uint32_t)left : plen;
                journal_rec_encode(rec, type, lsn, sum, in, plen > have ? have : plen);
                uint32_t len = journal_rec_len(have);
                if (cut) {
                    /* The header claims plen bytes; only what the input holds was written. */
                    journal_rec_hdr rh;
                    memcpy(&rh, rec, sizeof rh);
                    rh.payload_len = plen;
                    rh.len = journal_rec_len(plen);
                    memcpy(rec, &rh, sizeof rh);
                    put(s, rec, sizeof rh + have);
                    fs.open = false; /* never closed: a torn write */
                    damaged = true;
                    flipped_only = false;
                    break;
                }
                if (op & 0x80) {
                    rec[(op & 0x3f) % len] ^= 0x5a;
                    damaged = true;
                }
                put(s, rec, len);
                memcpy(&sum, rec, 8);
                lsn++;
                built++;
                in += have;
                left -= have;
            }
            frame_end(&segs[nseg - 1], &fs, lsn, sum);
        }
    }

    /* The scanner over each segment, chained, from exact-size copies. */
    journal_chain chain = {.next_lsn = 1};
    uint64_t scanned = 0;
    bool all_clean = true;
    for (int i = 0; i < nseg; i++) {
        uint8_t *copy = malloc(segs[i].len ? segs[i].len : 1);
        if (!copy) abort();
        if (segs[i].len) memcpy(copy, segs[i].p, segs[i].len);
        journal_scan_result res;
        memset(&res, 0x55, sizeof res);
        if (journal_scan_segment(copy, segs[i].len, &chain, replayed, &scanned, &res) != 0) abort();
        if (res.valid_end > segs[i].len || !memchr(res.why, 0, sizeof res.why)) abort();
        if (!res.clean && (res.bad_offset > segs[i].len || (res.bad_offset && res.bad_offset != res.valid_end))) abort();
        free(copy);
        if (!res.clean) {
            all_clean = false;
            break;
        }
    }
    if (!damaged && (!all_clean || scanned != built)) abort();

    /* Recovery from the same files. */
    clear_dir();
    for (int i = 0; i < nseg; i++) write_seg((uint64_t)i + 1, &segs[i]);
    static journal j;
    journal_recovery rec;
    char err[512];
    uint64_t replays = 0;
    journal_opts o = {
        .segment_bytes = JOURNAL_SEGMENT_BYTES_MIN, .replay = replayed, .ctx = &replays};
    int rc = journal_open(&j, dir, &o, &rec, err, sizeof err);
    journal_close(&j); /* also after a refusal: it holds buffers and the directory */
    if (rc == 0) {
        if (replays != rec.records || rescan_dir() != rec.records) abort();
    } else if (!memchr(err, 0, sizeof err)) {
        abort();
    }
    if (!damaged && (rc != 0 || rec.records != built || rec.tail_cut)) abort();
    /* A flipped byte in a frame written whole is damage: refused, never cut as torn. */
    if (damaged && flipped_only && mode >= 2 && rc == 0 && rec.records != built) {
        fprintf(stderr, "a flip inside whole frames was cut: %llu of %llu records kept (%s)\n",
                (unsigned long long)rec.records, (unsigned long long)built, rec.cut_why);
        abort();
    }
    clear_dir();
    for (int i = 0; i < nseg; i++) free(segs[i].p);
    return 0;
}
