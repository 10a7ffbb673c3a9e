/*
 * fsynclat: the floor under a durable acknowledgement - the latency of appending one small
 * record to a file and making it durable, through io_uring exactly as the gateway's journal
 * does it (a write linked to an fdatasync, IOSQE_IO_LINK, one submit, two completions).
 *
 *   fsynclat [-d DIR] [-n ITERATIONS] [-s BYTES] [-w WARMUP] [-t THINK_US] [-z]
 *            [-m fdatasync|dsync|direct]
 *
 * Creates a scratch file in DIR (default .), appends BYTES (default 256) per iteration at
 * the end of the file (the file grows, as a journal segment does, so each fdatasync also
 * commits the new size), times each write+fdatasync pair from submit to the second
 * completion, removes the file, and prints one line:
 *
 *   fsynclat: n=2000 bytes=256 p50_us=812.3 p90_us=... p99_us=... max_us=... mean_us=...
 *
 * Percentiles are nearest-rank over the timed iterations (the WARMUP ones are not counted).
 * -t pauses THINK_US after each iteration (default 0: back to back), to compare with a paced
 * client (stoplat --think-us): an idle device can answer its first flush more slowly.
 * -z writes the whole file with zeros and syncs it first, then overwrites it in place: the
 * file size no longer changes, so fdatasync has no inode to write (what a journal with
 * pre-zeroed segments would pay; the journal's scanner treats a zero tail as empty).
 * -m picks how a write is made durable (issue 13; docs/journal.md "Why fdatasync"):
 *   fdatasync  write linked to an fdatasync (the default; what the journal does);
 *   dsync      one write with RWF_DSYNC (no second operation);
 *   direct     O_DIRECT + RWF_DSYNC: whole 4 KiB blocks from an aligned buffer, the block
 *              that holds the end of the log rewritten each time (a journal must: its
 *              records do not end on block boundaries).
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BENCH_TOOL "fsynclat"
#define DIRECT_BLOCK 4096
#include "benchlib.h"

static void usage(void) {
    fprintf(stderr, "usage: fsynclat [-d DIR] [-n ITERATIONS] [-s BYTES] [-w WARMUP] [-t THINK_US] [-z] "
                    "[-m fdatasync|dsync|direct]\n");
    exit(2);
}

static long arg_long(const char *s, long lo, long hi) { return (long)bench_arg_ll(s, lo, hi, usage); }

int main(int argc, char **argv) {
    const char *dir = ".";
    long n = 2000, bytes = 256, warmup = 50, think_us = 0;
    int prezero = 0;
    const char *mode = "fdatasync";
    int opt;
    while ((opt = getopt(argc, argv, "d:n:s:w:t:zm:h")) != -1) {
        switch (opt) {
        case 'd': dir = optarg; break;
        case 'n': n = arg_long(optarg, 1, 10000000); break;
        case 's': bytes = arg_long(optarg, 1, 1 << 20); break;
        case 'w': warmup = arg_long(optarg, 0, 1000000); break;
        case 't': think_us = arg_long(optarg, 0, 10000000); break;
        case 'z': prezero = 1; break;
        case 'm': mode = optarg; break;
        default: usage();
        }
    }
    if (optind != argc) usage();
    enum { M_FDATASYNC, M_DSYNC, M_DIRECT } m = M_FDATASYNC;
    if (strcmp(mode, "fdatasync") == 0) m = M_FDATASYNC;
    else if (strcmp(mode, "dsync") == 0) m = M_DSYNC;
    else if (strcmp(mode, "direct") == 0) m = M_DIRECT;
    else usage();
    if (m == M_DIRECT && bytes > DIRECT_BLOCK) usage();

    char path[4096];
    snprintf(path, sizeof path, "%s/fsynclat.%ld.tmp", dir, (long)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "fsynclat: %s: %s\n", path, strerror(errno));
        return 1;
    }
    /* The directory entry durable first, as the journal does for a new segment. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }

    struct io_uring ring;
    int rc = io_uring_queue_init(8, &ring, 0);
    if (rc < 0) {
        fprintf(stderr, "fsynclat: io_uring_queue_init: %s\n", strerror(-rc));
        unlink(path);
        return 1;
    }
    uint8_t *buf = aligned_alloc(DIRECT_BLOCK, DIRECT_BLOCK > bytes ? DIRECT_BLOCK : ((size_t)bytes + DIRECT_BLOCK - 1) / DIRECT_BLOCK * DIRECT_BLOCK);
    int64_t *lat = malloc(sizeof *lat * (size_t)n);
    if (!buf || !lat) {
        fprintf(stderr, "fsynclat: out of memory\n");
        unlink(path);
        return 1;
    }
    memset(buf, 'j', (size_t)bytes);

    if (prezero) {
        static const uint8_t zeros[1 << 16];
        uint64_t total = (uint64_t)(n + warmup) * (uint64_t)bytes + DIRECT_BLOCK;
        for (uint64_t done = 0; done < total;) {
            size_t k = total - done < sizeof zeros ? (size_t)(total - done) : sizeof zeros;
            ssize_t w = pwrite(fd, zeros, k, (off_t)done);
            if (w <= 0) {
                fprintf(stderr, "fsynclat: zero-filling %s: %s\n", path, strerror(errno));
                unlink(path);
                return 1;
            }
            done += (uint64_t)w;
        }
        if (fsync(fd) != 0) {
            fprintf(stderr, "fsynclat: fsync %s: %s\n", path, strerror(errno));
            unlink(path);
            return 1;
        }
    }
    if (m == M_DIRECT) {
        int dfd2 = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
        if (dfd2 < 0) {
            fprintf(stderr, "fsynclat: O_DIRECT %s: %s\n", path, strerror(errno));
            unlink(path);
            return 1;
        }
        close(fd);
        fd = dfd2;
    }
    uint64_t off = 0;
    int status = 0;
    int ops = m == M_FDATASYNC ? 2 : 1;
    for (long i = -warmup; i < n; i++) {
        int64_t t0 = mono_ns();
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        unsigned wlen = (unsigned)bytes;
        uint64_t woff = off;
        if (m == M_DIRECT) {
            /* The block holding the new bytes, from its start: end-of-log block rewritten. */
            woff = off / DIRECT_BLOCK * DIRECT_BLOCK;
            wlen = (unsigned)((off + (uint64_t)bytes - woff + DIRECT_BLOCK - 1) / DIRECT_BLOCK * DIRECT_BLOCK);
        }
        io_uring_prep_write(sqe, fd, buf, wlen, woff);
        if (m != M_FDATASYNC) sqe->rw_flags = RWF_DSYNC;
        else sqe->flags |= IOSQE_IO_LINK;
        io_uring_sqe_set_data64(sqe, 1);
        if (m == M_FDATASYNC) {
            sqe = io_uring_get_sqe(&ring);
            io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
            io_uring_sqe_set_data64(sqe, 2);
        }
        rc = io_uring_submit_and_wait(&ring, (unsigned)ops);
        if (rc < 0) {
            fprintf(stderr, "fsynclat: io_uring_submit_and_wait: %s\n", strerror(-rc));
            status = 1;
            break;
        }
        for (int k = 0; k < ops; k++) {
            struct io_uring_cqe *cqe;
            rc = io_uring_wait_cqe(&ring, &cqe);
            if (rc < 0) {
                fprintf(stderr, "fsynclat: io_uring_wait_cqe: %s\n", strerror(-rc));
                status = 1;
                break;
            }
            uint64_t ud = io_uring_cqe_get_data64(cqe);
            if (cqe->res < 0 || (ud == 1 && cqe->res != (int)wlen)) {
                fprintf(stderr, "fsynclat: %s failed: %s\n", ud == 1 ? "write" : "fdatasync",
                        cqe->res < 0 ? strerror(-cqe->res) : "short write");
                status = 1;
            }
            io_uring_cqe_seen(&ring, cqe);
        }
        if (status) break;
        int64_t t1 = mono_ns();
        off += (uint64_t)bytes;
        if (i >= 0) lat[i] = t1 - t0;
        if (think_us) {
            struct timespec ts = {.tv_sec = think_us / 1000000, .tv_nsec = (think_us % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
    }
    io_uring_queue_exit(&ring);
    close(fd);
    unlink(path);
    if (status) return status;

    double sum = 0;
    for (long i = 0; i < n; i++) sum += (double)lat[i];
    qsort(lat, (size_t)n, sizeof *lat, bench_cmp_i64);
    printf("fsynclat: n=%ld bytes=%ld mode=%s think_us=%ld prezeroed=%d p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f mean_us=%.1f\n", n, bytes, mode, think_us, prezero,
           bench_pct(lat, (size_t)n, 50, 1e3), bench_pct(lat, (size_t)n, 90, 1e3), bench_pct(lat, (size_t)n, 99, 1e3),
           (double)lat[n - 1] / 1e3, sum / (double)n / 1e3);
    free(lat);
    free(buf);
    return 0;
}
