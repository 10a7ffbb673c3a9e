/*
 * mkjournal: makes the inputs of the replay benchmark.
 *
 *   mkjournal [--answered] [--segment-bytes B] DIR N
 *       Writes a journal directory DIR (must hold no segment yet) with N REC_ORDER records -
 *       N accepted STOP orders on distinct accounts, 1,000 orders per case - through the
 *       gateway's own modules: record_encode() for the payload, journal_open() /
 *       journal_append() / journal_flush() over an io_uring for the segments, the hash chain
 *       and the group-committed write+fdatasync, exactly as stopgated writes them. With
 *       --answered each order is followed by its REC_STATE SENT and REC_STATE CONFIRMED
 *       records (3 N records: what a journal looks like once the bank has answered).
 *       stopgated -c CONF with journal_dir = DIR and max_orders >= N then replays it.
 *
 *   mkjournal --redis-aof FILE N
 *       Writes the peer's input: a Redis append-only file with N SET commands whose key is
 *       the order's request id and whose value carries the same fields (bank, account,
 *       case, amount, currency, agent, timestamps), for redis-server to load at start.
 *
 *   mkjournal --evict PATH
 *       fdatasyncs the file PATH, or every regular file in the directory PATH, and drops it
 *       from the page cache (POSIX_FADV_DONTNEED), so that the next replay or AOF load reads
 *       from the disk (a cold start) without dropping the whole machine's caches.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define BENCH_TOOL "mkjournal"
#include "benchlib.h"
#include "clock.h"
#include "journal.h"
#include "orders.h"
#include "record.h"
#include "ring.h"

#define ORDERS_PER_CASE 1000
#define AMOUNT_BASE 50000

static void usage(void) {
    fprintf(stderr, "usage: mkjournal [--answered] [--segment-bytes B] DIR N\n"
                    "       mkjournal --redis-aof FILE N\n"
                    "       mkjournal --evict PATH\n");
    exit(2);
}

static long long arg_ll(const char *s, long long lo, long long hi) { return bench_arg_ll(s, lo, hi, usage); }

/* The fields of order i (1-based), shared by the journal and the Redis peer. */
typedef struct fake_order {
    char request_id[32], account[32], case_id[32];
    int64_t amount;
} fake_order;

static void fake_order_make(fake_order *f, uint64_t i) {
    snprintf(f->request_id, sizeof f->request_id, "mkj-%010llu", (unsigned long long)i);
    /* Suffix X: the sim bank would CONFIRM it (no test-account suffix, SPEC §2b). */
    snprintf(f->account, sizeof f->account, "6222%012lluX", (unsigned long long)i);
    snprintf(f->case_id, sizeof f->case_id, "MKJ-%07llu", (unsigned long long)((i - 1) / ORDERS_PER_CASE));
    f->amount = AMOUNT_BASE + (int64_t)(i % 1000) * 100;
}

static rec_str rs(const char *s) { return (rec_str){s, (uint32_t)strlen(s)}; }

typedef struct writer {
    journal j;
    struct io_uring ring;
    uint8_t payload[JOURNAL_RECORD_BYTES_MAX];
    int failed;
} writer;

/* Reap journal completions until nothing is in flight (and the open batch, if flush is set,
 * has been sent and completed too). */
static int writer_drain(writer *w, int flush_open) {
    for (;;) {
        if (flush_open) journal_flush(&w->j, clock_mono_ns());
        if (!w->j.inflight) {
            if (!flush_open || journal_idle(&w->j)) return w->failed ? -1 : 0;
            continue;
        }
        int rc = io_uring_submit_and_wait(&w->ring, 1);
        if (rc < 0 && rc != -EINTR) {
            fprintf(stderr, "mkjournal: io_uring_submit_and_wait: %s\n", strerror(-rc));
            return -1;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&w->ring, head, cqe) {
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            if (ud_kind(ud) == UD_JOURNAL) journal_on_cqe(&w->j, ud_aux(ud), cqe->res, clock_mono_ns());
            seen++;
        }
        io_uring_cq_advance(&w->ring, seen);
        if (w->j.last_error) {
            fprintf(stderr, "mkjournal: journal write failed: %s\n", strerror(w->j.last_error));
            w->failed = 1;
            return -1;
        }
    }
}

static int writer_append(writer *w, const order_rec *r) {
    int n = record_encode(r, w->payload, sizeof w->payload - sizeof(journal_rec_hdr));
    if (n < 0) {
        fprintf(stderr, "mkjournal: record_encode failed\n");
        return -1;
    }
    for (;;) {
        int64_t lsn = journal_append(&w->j, r->type, w->payload, (uint32_t)n);
        if (lsn > 0) return 0;
        if (lsn != -EAGAIN) {
            fprintf(stderr, "mkjournal: journal_append: %s\n", strerror((int)-lsn));
            return -1;
        }
        /* The open batch is full: send it (group commit), wait, go on. */
        if (writer_drain(w, 1) != 0) return -1;
    }
}

static int count_record(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *p, uint32_t len) {
    (void)type, (void)lsn, (void)p, (void)len;
    (*(uint64_t *)ctx)++;
    return 0;
}

static int make_journal(const char *dir, uint64_t n, uint64_t segment_bytes, int answered) {
    static writer w; /* big: two batch descriptors and a record buffer */
    char err[512];
    journal_recovery rec;
    uint64_t existing = 0;
    journal_opts o = {.segment_bytes = segment_bytes, .replay = count_record, .ctx = &existing};
    if (journal_open(&w.j, dir, &o, &rec, err, sizeof err) != 0) {
        fprintf(stderr, "mkjournal: %s\n", err);
        return 1;
    }
    if (existing || rec.segments) {
        fprintf(stderr, "mkjournal: %s already holds a journal (%llu records): use an empty directory\n", dir,
                (unsigned long long)existing);
        journal_close(&w.j);
        return 1;
    }
    int rc = io_uring_queue_init(64, &w.ring, 0);
    if (rc < 0) {
        fprintf(stderr, "mkjournal: io_uring_queue_init: %s\n", strerror(-rc));
        return 1;
    }
    journal_attach(&w.j, &w.ring, NULL, NULL);

    int64_t t0 = clock_mono_ns();
    int64_t now = clock_now_ms();
    /* Accepted over the last n ms, live for 48 h from now: what a busy day leaves behind. */
    int64_t ts0 = now - (int64_t)n;
    for (uint64_t i = 1; i <= n; i++) {
        fake_order f;
        fake_order_make(&f, i);
        order_rec r = {0};
        r.type = REC_ORDER;
        r.kind = KIND_STOP;
        r.state = ST_ACCEPTED;
        r.order_no = i;
        r.request_id = rs(f.request_id);
        r.fingerprint = XXH3_64bits(f.request_id, strlen(f.request_id));
        r.bank = rs("ICBC");
        r.account = rs(f.account);
        r.case_id = rs(f.case_id);
        r.amount_minor = f.amount;
        r.currency = rs("CNY");
        r.reason = rs("FRAUD_PROCEEDS");
        r.agent = rs("dev");
        r.ts_ms = ts0 + (int64_t)i;
        r.expires_at_ms = now + 172800000LL;
        if (writer_append(&w, &r) != 0) return 1;
        if (answered) {
            order_rec s = {.type = REC_STATE, .order_no = i, .state = ST_SENT, .ts_ms = r.ts_ms};
            if (writer_append(&w, &s) != 0) return 1;
            s.state = ST_CONFIRMED;
            s.frozen_minor = f.amount;
            if (writer_append(&w, &s) != 0) return 1;
        }
    }
    if (writer_drain(&w, 1) != 0) return 1;
    /* Ends as a cleanly stopped gateway's journal does: with a close record. */
    rc = journal_seal(&w.j, clock_now_ms());
    if (rc != 0) {
        fprintf(stderr, "mkjournal: writing the close record: %s\n", strerror(-rc));
        return 1;
    }
    int64_t t1 = clock_mono_ns();
    printf("mkjournal: %llu records (%llu orders), %llu segments, %llu bytes, %llu fdatasyncs in %.1f ms -> %s\n",
           (unsigned long long)w.j.stats.records, (unsigned long long)n, (unsigned long long)w.j.seg_seq,
           (unsigned long long)w.j.stats.bytes, (unsigned long long)w.j.stats.fsyncs, (double)(t1 - t0) / 1e6, dir);
    journal_close(&w.j);
    io_uring_queue_exit(&w.ring);
    return 0;
}

static int make_aof(const char *path, uint64_t n) {
    FILE *f = fopen(path, "wx");
    if (!f) {
        fprintf(stderr, "mkjournal: %s: %s\n", path, strerror(errno));
        return 1;
    }
    static char buf[1 << 20];
    setvbuf(f, buf, _IOFBF, sizeof buf);
    int64_t now = clock_now_ms();
    for (uint64_t i = 1; i <= n; i++) {
        fake_order o;
        fake_order_make(&o, i);
        char val[256];
        int vl = snprintf(val, sizeof val,
                          "kind=STOP state=ACCEPTED order=SG-%llu bank=ICBC account=%s case=%s amount=%lld "
                          "currency=CNY reason=FRAUD_PROCEEDS agent=dev ts=%lld expires=%lld",
                          (unsigned long long)i, o.account, o.case_id, (long long)o.amount,
                          (long long)(now - (int64_t)n + (int64_t)i), (long long)(now + 172800000LL));
        fprintf(f, "*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%d\r\n%s\r\n", strlen(o.request_id), o.request_id, vl, val);
    }
    if (fflush(f) != 0 || fsync(fileno(f)) != 0 || fclose(f) != 0) {
        fprintf(stderr, "mkjournal: %s: %s\n", path, strerror(errno));
        return 1;
    }
    printf("mkjournal: %llu SET commands -> %s\n", (unsigned long long)n, path);
    return 0;
}

static int evict_fd(int fd, const char *what) {
    if (fdatasync(fd) != 0 || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) != 0) {
        fprintf(stderr, "mkjournal: %s: %s\n", what, strerror(errno));
        return 1;
    }
    return 0;
}

/* A file, or every regular file of a directory (not recursive). */
static int evict(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "mkjournal: %s: %s\n", path, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "mkjournal: %s: %s\n", path, strerror(errno));
            return 1;
        }
        int rc = evict_fd(fd, path);
        close(fd);
        if (!rc) printf("mkjournal: %s dropped from the page cache\n", path);
        return rc;
    }
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "mkjournal: %s: %s\n", path, strerror(errno));
        return 1;
    }
    int dfd = dirfd(d), files = 0, status = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat fst;
        if (fstatat(dfd, e->d_name, &fst, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(fst.st_mode)) continue;
        int fd = openat(dfd, e->d_name, O_RDONLY | O_CLOEXEC);
        char what[4096 + 256];
        snprintf(what, sizeof what, "%s/%s", path, e->d_name);
        if (fd < 0) {
            fprintf(stderr, "mkjournal: %s: %s\n", what, strerror(errno));
            status = 1;
            continue;
        }
        status |= evict_fd(fd, what);
        close(fd);
        files++;
    }
    closedir(d);
    printf("mkjournal: %d files of %s dropped from the page cache\n", files, path);
    return status;
}

int main(int argc, char **argv) {
    int answered = 0;
    uint64_t segment_bytes = 64ULL << 20;
    int i = 1;
    if (argc == 3 && !strcmp(argv[1], "--evict")) return evict(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "--redis-aof"))
        return make_aof(argv[2], (uint64_t)arg_ll(argv[3], 1, ORDERS_MAX_LIMIT));
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--answered")) {
            answered = 1;
        } else if (!strcmp(argv[i], "--segment-bytes") && i + 1 < argc) {
            segment_bytes = (uint64_t)arg_ll(argv[++i], JOURNAL_SEGMENT_BYTES_MIN, JOURNAL_SEGMENT_BYTES_MAX);
        } else {
            usage();
        }
    }
    if (argc - i != 2) usage();
    return make_journal(argv[i], (uint64_t)arg_ll(argv[i + 1], 1, ORDERS_MAX_LIMIT), segment_bytes, answered);
}
