/*
 * ctl_journal: stopctl's offline journal commands (ctl_journal.h), with the scanner recovery
 * uses (journal_fmt.h), so that "verify says OK" and "stopgated starts" cannot disagree.
 */
#include "ctl_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal_fmt.h"
#include "orders.h"
#include "record.h"

typedef struct dump_ctx {
    bool print;
    char problem[1024]; /* the first BAD line, for verify --json */
    const uint8_t *base; /* the segment being dumped, to find batch boundaries */
    size_t size;
    uint64_t seq;
} dump_ctx;

/* A BAD line: to stderr as it was always printed, and the first one kept for --json. */
static void problem(dump_ctx *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(dump_ctx *d, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
    if (!d->problem[0]) snprintf(d->problem, sizeof d->problem, "%s", line);
}

static void put_str(json_t *o, const char *k, rec_str s) {
    if (s.len) json_object_set_new(o, k, json_stringn(s.p, s.len));
}

/* A record that opens a batch (a frame header right before it): print the batch's line. */
static void dump_batch(const dump_ctx *d, uint64_t lsn, const uint8_t *p) {
    size_t rec_off = (size_t)(p - d->base) - sizeof(journal_rec_hdr);
    journal_frame f;
    if (rec_off < sizeof(journal_seg_hdr) + sizeof f ||
        !journal_frame_read(d->base, d->size, rec_off - sizeof f, JOURNAL_FRAME_MAGIC, &f) ||
        f.first_lsn != lsn)
        return;
    json_t *o = json_object();
    json_object_set_new(o, "batch", json_integer((json_int_t)f.first_lsn));
    json_object_set_new(o, "last_lsn", json_integer((json_int_t)f.last_lsn));
    json_object_set_new(o, "records", json_integer((json_int_t)(f.last_lsn - f.first_lsn + 1)));
    json_object_set_new(o, "segment", json_integer((json_int_t)d->seq));
    json_object_set_new(o, "offset", json_integer((json_int_t)(rec_off - sizeof f)));
    json_object_set_new(o, "bytes", json_integer(f.len));
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(o);
}

static int dump_record(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *p, uint32_t len) {
    dump_ctx *d = ctx;
    if (d->print && d->base) dump_batch(d, lsn, p);
    if (type == REC_CLOSE) {
        int64_t ts = 0;
        if (len == sizeof ts) memcpy(&ts, p, sizeof ts);
        if (d->print)
            printf("{\"lsn\":%llu,\"type\":\"CLOSE\",\"ts\":%lld}\n", (unsigned long long)lsn,
                   (long long)ts);
        return 0;
    }
    order_rec r;
    if (record_decode(type, p, len, &r) != 0) {
        fprintf(stderr, "record %llu: malformed payload\n", (unsigned long long)lsn);
        return 1;
    }
    if (!d->print) return 0;
    json_t *o = json_object();
    json_object_set_new(o, "lsn", json_integer((json_int_t)lsn));
    json_object_set_new(o, "type", json_string(record_type_name(type)));
    char id[32];
    order_id_format(id, sizeof id, r.order_no);
    json_object_set_new(o, "order_id", json_string(id));
    if (r.kind) json_object_set_new(o, "kind", json_string(order_kind_name(r.kind)));
    if (r.state) json_object_set_new(o, "state", json_string(order_state_name(r.state)));
    put_str(o, "request_id", r.request_id);
    put_str(o, "bank", r.bank);
    put_str(o, "account", r.account);
    put_str(o, "case", r.case_id);
    put_str(o, "agent", r.agent);
    put_str(o, "reason", r.reason);
    put_str(o, "doc", r.doc);
    if (r.amount_minor) json_object_set_new(o, "amount", json_integer(r.amount_minor));
    if (r.frozen_minor) json_object_set_new(o, "frozen", json_integer(r.frozen_minor));
    if (r.expires_at_ms) json_object_set_new(o, "expires_at", json_integer(r.expires_at_ms));
    if (r.parent_no) {
        order_id_format(id, sizeof id, r.parent_no);
        json_object_set_new(o, "parent", json_string(id));
    }
    json_object_set_new(o, "ts", json_integer(r.ts_ms));
    if (r.onward_count) {
        json_t *a = json_array();
        for (uint32_t i = 0; i < r.onward_count; i++) {
            json_t *w = json_object();
            json_object_set_new(w, "bank", json_string(r.onward[i].bank));
            json_object_set_new(w, "account", json_string(r.onward[i].account));
            json_object_set_new(w, "amount", json_integer(r.onward[i].amount_minor));
            json_array_append_new(a, w);
        }
        json_object_set_new(o, "onward", a);
    }
    char *s = json_dumps(o, JSON_COMPACT);
    printf("%s\n", s);
    free(s);
    json_decref(o);
    return 0;
}

static void salvage_line(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *p, uint32_t len,
                         bool verified) {
    (void)ctx;
    order_rec r;
    char id[32] = "?";
    if (record_decode(type, p, len, &r) == 0 && r.order_no)
        order_id_format(id, sizeof id, r.order_no);
    fprintf(stderr, "  in the damaged part: lsn %llu %s of order %s%s\n", (unsigned long long)lsn,
            record_type_name(type), id, verified ? "" : " (checksum fails: unverified)");
}

/* The verdict recovery reaches on the same bytes (journal.c replay_segment): a torn tail (an
 * incomplete last write: cut at start), a damaged tail (written whole, then damaged: start
 * refused unless --truncate-damaged-tail), or damage followed by valid records. seqs[0] is
 * the bad segment, seqs[1..n) the ones after it. */
static void report_bad(dump_ctx *d, const char *dir, const uint64_t *seqs, int n, const uint8_t *data,
                       size_t size, const journal_scan_result *res) {
    bool later_records = false;
    for (int k = 1; k < n && !later_records && !res->valid_after_bad; k++) {
        char lname[64], lpath[4200];
        journal_seg_name(lname, sizeof lname, seqs[k]);
        snprintf(lpath, sizeof lpath, "%s/%s", dir, lname);
        int lfd = open(lpath, O_RDONLY | O_CLOEXEC);
        later_records = lfd < 0 || journal_fd_empty_after_header(lfd) != 1;
        if (lfd >= 0) close(lfd);
    }
    char name[64], at[48] = "", range[80];
    journal_seg_name(name, sizeof name, seqs[0]);
    if (res->bad_record_offset)
        snprintf(at, sizeof at, " (record at offset %zu)", res->bad_record_offset);
    if (res->bad_last_lsn)
        snprintf(range, sizeof range, "lsn %llu..%llu", (unsigned long long)res->bad_first_lsn,
                 (unsigned long long)res->bad_last_lsn);
    else
        snprintf(range, sizeof range, "lsn %llu and later", (unsigned long long)res->bad_first_lsn);
    const char *verdict;
    if (res->valid_after_bad || later_records)
        verdict = "(valid records follow: corruption, not a torn tail; stopgated refuses to start)";
    else if (res->damaged)
        verdict =
            "(damaged tail: written whole, so possibly acknowledged - not a torn write; stopgated "
            "refuses to start unless --truncate-damaged-tail)";
    else
        verdict = "(torn tail: the gateway cuts it at start; an incomplete last write, never "
                  "acknowledged)";
    problem(d, "BAD %s offset %zu: %s%s, %s %s", name, res->bad_offset, res->why, at, range, verdict);
    if (res->damaged || later_records)
        journal_salvage(data, size, res->bad_offset, size, salvage_line, NULL);
}

/* Scan every segment of dir in order, as recovery would; 0 clean, 1 not. */
static int scan_journal(const char *dir, dump_ctx *d, journal_chain *chain, int *nseg) {
    uint64_t *seqs;
    int n = journal_list_segments(dir, &seqs);
    *nseg = n < 0 ? 0 : n;
    if (n < 0) {
        problem(d, "stopctl: %s: %s", dir, strerror(-n));
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char name[64], path[4200];
        journal_seg_name(name, sizeof name, seqs[i]);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (i > 0 && seqs[i] != seqs[i - 1] + 1) {
            problem(d, "BAD %s: segment %llu is missing before it", name, (unsigned long long)seqs[i - 1] + 1);
            rc = 1;
            break;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            problem(d, "BAD %s: %s", name, strerror(errno));
            rc = 1;
            if (fd >= 0) close(fd);
            break;
        }
        const uint8_t *data = (const uint8_t *)"";
        if (st.st_size > 0) {
            data = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
            if (data == MAP_FAILED) {
                problem(d, "BAD %s: mmap: %s", name, strerror(errno));
                close(fd);
                rc = 1;
                break;
            }
        }
        journal_scan_result res;
        d->base = data;
        d->size = (size_t)st.st_size;
        d->seq = seqs[i];
        int cb = journal_scan_segment(data, (size_t)st.st_size, chain, dump_record, d, &res);
        if (!cb && !res.clean) report_bad(d, dir, seqs + i, n - i, data, (size_t)st.st_size, &res);
        if (st.st_size > 0) munmap((void *)data, (size_t)st.st_size);
        close(fd);
        if (cb) {
            problem(d, "BAD %s: a record's payload does not decode (lsn %llu)", name,
                    (unsigned long long)chain->next_lsn);
            rc = 1;
            break;
        }
        if (!res.clean) {
            rc = 1;
            break;
        }
    }
    free(seqs);
    return rc;
}

int ctl_journal_dump(const char *dir) {
    dump_ctx d = {.print = true};
    journal_chain chain = {.next_lsn = 1};
    int nseg;
    return scan_journal(dir, &d, &chain, &nseg);
}

int ctl_journal_verify(const char *dir, bool json) {
    dump_ctx d = {.print = false};
    journal_chain chain = {.next_lsn = 1};
    int nseg;
    int rc = scan_journal(dir, &d, &chain, &nseg);
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "journal", json_string(dir));
        json_object_set_new(o, "ok", json_boolean(rc == 0));
        json_object_set_new(o, "segments", json_integer(nseg));
        json_object_set_new(o, "records", json_integer((json_int_t)chain.records));
        json_object_set_new(o, "closed", json_boolean(rc == 0 && chain.closed));
        json_object_set_new(o, "problem", rc == 0 ? json_null() : json_string(d.problem));
        char *s = json_dumps(o, JSON_COMPACT);
        printf("%s\n", s);
        free(s);
        json_decref(o);
    } else if (rc == 0) {
        printf("journal %s: OK, %d segments, %llu records, hash chain intact%s\n", dir, nseg,
               (unsigned long long)chain.records,
               chain.closed ? ", ends with a close record (clean shutdown)" : ", no close record at the end");
    }
    return rc;
}

