#include "journal_spare.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define ZERO_CHUNK (1u << 20)

int journal_zero_fill(int fd, uint64_t from, uint64_t to) {
    static const uint8_t zeros[ZERO_CHUNK];
    while (from < to) {
        size_t k = to - from < sizeof zeros ? (size_t)(to - from) : sizeof zeros;
        ssize_t w = pwrite(fd, zeros, k, (off_t)from);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -errno;
        if (w == 0) return -EIO;
        from += (uint64_t)w;
    }
    return fdatasync(fd) == 0 ? 0 : -errno;
}

static void *worker(void *arg) {
    journal_spare *s = arg;
    int fd = openat(s->dirfd, JOURNAL_SPARE_NAME, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    int rc = fd < 0 ? -errno : journal_zero_fill(fd, 0, s->bytes);
    if (rc != 0) {
        /* A full disk: no spare, the journal creates its segments as before. */
        if (fd >= 0) {
            close(fd);
            unlinkat(s->dirfd, JOURNAL_SPARE_NAME, 0);
        }
        s->err = -rc;
        atomic_store_explicit(&s->state, SPARE_FAILED, memory_order_release);
        return NULL;
    }
    s->fd = fd;
    atomic_store_explicit(&s->state, SPARE_READY, memory_order_release);
    return NULL;
}

void journal_spare_init(journal_spare *s, int dirfd, uint64_t bytes) {
    memset(s, 0, sizeof *s);
    s->dirfd = dirfd;
    s->bytes = bytes;
    s->fd = -1;
    atomic_init(&s->state, SPARE_IDLE);
    unlinkat(dirfd, JOURNAL_SPARE_NAME, 0);
}

static void reap(journal_spare *s) {
    if (!s->joinable) return;
    pthread_join(s->th, NULL);
    s->joinable = false;
}

int journal_spare_kick(journal_spare *s) {
    int st = atomic_load_explicit(&s->state, memory_order_acquire);
    if (st == SPARE_BUSY || st == SPARE_READY) return 0;
    reap(s);
    atomic_store_explicit(&s->state, SPARE_BUSY, memory_order_relaxed);
    int rc = pthread_create(&s->th, NULL, worker, s);
    if (rc != 0) {
        atomic_store_explicit(&s->state, SPARE_FAILED, memory_order_relaxed);
        s->err = rc;
        return -rc;
    }
    s->joinable = true;
    return 0;
}

int journal_spare_take(journal_spare *s, const char *name) {
    if (atomic_load_explicit(&s->state, memory_order_acquire) != SPARE_READY) return -EAGAIN;
    reap(s);
    int fd = s->fd;
    s->fd = -1;
    atomic_store_explicit(&s->state, SPARE_IDLE, memory_order_relaxed);
    if (renameat2(s->dirfd, JOURNAL_SPARE_NAME, s->dirfd, name, RENAME_NOREPLACE) != 0) {
        int e = errno;
        close(fd);
        unlinkat(s->dirfd, JOURNAL_SPARE_NAME, 0);
        return -e;
    }
    return fd;
}

void journal_spare_close(journal_spare *s) {
    reap(s);
    if (atomic_load_explicit(&s->state, memory_order_acquire) == SPARE_READY && s->fd >= 0) close(s->fd);
    s->fd = -1;
    if (s->dirfd >= 0) unlinkat(s->dirfd, JOURNAL_SPARE_NAME, 0);
    atomic_store_explicit(&s->state, SPARE_IDLE, memory_order_relaxed);
}
