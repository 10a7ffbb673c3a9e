/*
 * mem: large tables reserved up front. Address space is reserved for the configured maximum
 * at start-up (MAP_NORESERVE) and pages are touched only as entries are used, so "allocate at
 * start, never per request" costs memory only for what is really held.
 */
#ifndef SG_MEM_H
#define SG_MEM_H
#include <stddef.h>
#include <sys/mman.h>

/* The huge page transparent huge pages use on x86-64 and arm64 with 4 KiB base pages: the step
 * of every huge-page hint and alignment in core (orders' tables, the lists table). */
#define MEM_HUGE_PAGE_BYTES (2u << 20)

static inline void *mem_reserve(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}
static inline void mem_release(void *p, size_t bytes) { munmap(p, bytes); }
/* For a table filled from its front (orders by number, rings): huge pages where the kernel
 * allows them, so resident memory grows in 2 MiB steps. A burst of new orders otherwise
 * faults a fresh 4 KiB page of each table every few orders, and under a hypervisor with
 * shadow page tables each first touch costs 6-11 us more (issue 13, docs/PERFORMANCE.md). */
static inline void *mem_reserve_seq(size_t bytes) {
    void *p = mem_reserve(bytes);
    if (p) (void)madvise(p, bytes, MADV_HUGEPAGE); /* a hint: fine if THP is off */
    return p;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* Make a randomly-accessed table resident now. A hash index spreads the first few thousand
 * inserts over as many pages, and two page faults each (zero page, then copy-on-write) made
 * a cold 6,077-order burst spend half its time in the kernel. Huge pages where the kernel
 * allows them; touching every page where MADV_POPULATE_WRITE is unknown (kernel < 5.14). */
/* Write every 4 KiB page of [p, p + bytes) from user space, each byte its own value back (safe
 * on a filled table or a shared file). Populated is not enough under a hypervisor with shadow
 * page tables (PVM, the bench machine): there the first user-mode write to each page costs
 * 6-11 us more, and on a busy host only part of a table gets huge pages (issue 13,
 * docs/PERFORMANCE.md). */
static inline void mem_touch(void *p, size_t bytes) {
    volatile char *c = p;
    for (size_t i = 0; i < bytes; i += 4096) c[i] = c[i];
}

static inline int mem_prefault(void *p, size_t bytes) {
    (void)madvise(p, bytes, MADV_HUGEPAGE); /* a hint: fine if THP is off */
    (void)madvise(p, bytes, MADV_POPULATE_WRITE);
    /* Where MADV_POPULATE_WRITE is unknown (kernel < 5.14) this is what makes it resident. */
    mem_touch(p, bytes);
    return 0;
}
#endif
