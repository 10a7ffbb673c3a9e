#include "pagefill.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "mem.h"

#define PAGE_BYTES          4096u
#define POPULATE_STEP_BYTES (256u * 1024) /* 64 small pages, or a part of one huge page */

_Static_assert(PAGEFILL_CHUNK_BYTES % PAGE_BYTES == 0 &&
                   PAGEFILL_WINDOW_BYTES >= PAGEFILL_CHUNK_BYTES,
               "the helper fills whole pages, at least a chunk ahead");

void pagefill_init(pagefill *pf, size_t window) {
    memset(pf, 0, sizeof *pf);
    pf->window = window;
    atomic_init(&pf->stop, false);
    atomic_init(&pf->filled, 0);
}

int pagefill_add(pagefill *pf, void *base, size_t cap) {
    if (pf->running || !base || ((uintptr_t)base % PAGE_BYTES) != 0) return -EINVAL;
    if (pf->n == PAGEFILL_REGIONS_MAX) return -ENOSPC;
    pagefill_region *r = &pf->r[pf->n];
    r->base = base;
    r->cap = cap;
    r->done = 0;
    atomic_init(&r->used, 0);
    return (int)pf->n++;
}

/* A write access from user space to each page of [p, p + len) that changes nothing, even
 * with the owner writing the same page at the same time: populated is not enough under a
 * hypervisor with shadow page tables, where the first user-mode write to a page costs a VM
 * exit (issue 13, docs/PERFORMANCE.md). */
static void touch_atomic(char *p, size_t len) {
    for (size_t off = 0; off < len; off += PAGE_BYTES)
        (void)__atomic_fetch_add((uint64_t *)(void *)(p + off), 0, __ATOMIC_RELAXED);
}

/* Up to one chunk of r made resident, as far as its window asks: the bytes done. */
static size_t fill_region(pagefill_region *r, size_t window) {
    size_t used = atomic_load_explicit(&r->used, memory_order_relaxed);
    if (used > r->cap) used = r->cap;
    size_t want = window < r->cap - used ? used + window : r->cap;
    /* Where the owner got first, its own writes made the pages resident. */
    size_t from = used / PAGE_BYTES * PAGE_BYTES;
    if (r->done > from) from = r->done;
    if (from >= want) return 0;
    size_t len = want - from < PAGEFILL_CHUNK_BYTES ? want - from : PAGEFILL_CHUNK_BYTES;
    len = (len + PAGE_BYTES - 1) / PAGE_BYTES * PAGE_BYTES;
    if (len > r->cap - from) len = r->cap - from; /* a last partial page is still mapped whole */
    /* In steps, so that the mmap lock the populate holds is never held long: a munmap of the
     * loop (a large client buffer freed) waits for at most one step. */
    for (size_t off = 0; off < len; off += POPULATE_STEP_BYTES) {
        size_t n = len - off < POPULATE_STEP_BYTES ? len - off : POPULATE_STEP_BYTES;
        (void)madvise(r->base + from + off, n, MADV_POPULATE_WRITE); /* < 5.14: the touch does it */
    }
    touch_atomic(r->base + from, len);
    r->done = from + len;
    return len;
}

size_t pagefill_pass(pagefill *pf) {
    size_t total = 0;
    for (uint32_t i = 0; i < pf->n; i++) total += fill_region(&pf->r[i], pf->window);
    if (total) atomic_fetch_add_explicit(&pf->filled, total, memory_order_relaxed);
    return total;
}

static void *helper(void *arg) {
    pagefill *pf = arg;
    (void)pthread_setname_np(pthread_self(), "sg-pagefill"); /* for top and perf; a name only */
    const struct timespec idle = {0, PAGEFILL_IDLE_MS * 1000000L};
    while (!atomic_load_explicit(&pf->stop, memory_order_relaxed)) {
        /* A chunk of every table per pass: replay grows them all at once. */
        if (pagefill_pass(pf) == 0) nanosleep(&idle, NULL);
    }
    return NULL;
}

int pagefill_start(pagefill *pf) {
    if (pf->running) return 0;
    atomic_store_explicit(&pf->stop, false, memory_order_relaxed);
    int rc = pthread_create(&pf->th, NULL, helper, pf);
    if (rc != 0) return -rc;
    pf->running = true;
    return 0;
}

void pagefill_stop(pagefill *pf) {
    if (!pf->running) return;
    atomic_store_explicit(&pf->stop, true, memory_order_relaxed);
    pthread_join(pf->th, NULL);
    pf->running = false;
}
