/*
 * pagefill: a helper thread that makes the pages of tables filled from their front resident
 * a fixed window (PAGEFILL_WINDOW_BYTES) ahead of their writer (issue 13, docs/PERFORMANCE.md
 * "Issue 13, replay and burst: order tables' pages").
 *
 * Why: the order tables are reserved for max_orders (mem.h, MAP_NORESERVE) and become
 * resident as orders arrive. Replay of 1 M orders spent ~30 % of its time zeroing the ~420 MB
 * they touch, and a burst of new orders faults a fresh page every few orders (under a
 * hypervisor with shadow page tables each first touch is a VM exit). The helper does that
 * work on another core, before the writer gets there.
 *
 * Threads: one owner thread calls every function. After it writes into a registered table it
 * publishes how much of it is used (pagefill_note: one relaxed atomic store, no lock, no
 * system call). The helper never changes a byte: the kernel populates the pages
 * (MADV_POPULATE_WRITE) and the user-mode touch that follows is an atomic add of 0, so a
 * writer that overtakes the helper loses nothing, and a helper that falls behind costs the
 * writer only the faults it would have taken without it. What the helper does are hints: its
 * failures are ignored (the tables stay correct); only starting it can fail.
 * pagefill_stop() must run before a registered table is unmapped.
 */
#ifndef SG_PAGEFILL_H
#define SG_PAGEFILL_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limits.h"

typedef struct pagefill_region {
    char *base;          /* page-aligned (mmap) */
    size_t cap;          /* bytes reserved */
    _Atomic size_t used; /* bytes [0, used) written by the owner: pagefill_note */
    size_t done;         /* helper only: [0, done) is resident */
} pagefill_region;

typedef struct pagefill {
    pagefill_region r[PAGEFILL_REGIONS_MAX];
    uint32_t n;
    size_t window; /* bytes kept resident past each region's used mark */
    pthread_t th;
    bool running;            /* th was started and not yet joined */
    _Atomic bool stop;       /* owner -> helper */
    _Atomic uint64_t filled; /* bytes the helper made resident (tests) */
} pagefill;

void pagefill_init(pagefill *pf, size_t window);
/* Follow [base, base + cap), base page-aligned, before pagefill_start. Its id, or -ENOSPC
 * (PAGEFILL_REGIONS_MAX), -EINVAL (not page-aligned, or the helper runs already). */
int pagefill_add(pagefill *pf, void *base, size_t cap);
static inline void pagefill_note(pagefill *pf, int id, size_t used) {
    if (id >= 0) atomic_store_explicit(&pf->r[id].used, used, memory_order_relaxed);
}
/* Start the helper: 0 or -errno (pthread_create). Without a call the tables just fault as
 * they are written. */
int pagefill_start(pagefill *pf);
/* Stop and join the helper (returns within about PAGEFILL_IDLE_MS plus one chunk). Safe to
 * call when it never started, and twice. */
void pagefill_stop(pagefill *pf);
/* One helper pass over every region, on the calling thread: the bytes made resident. The
 * helper's loop body; tests call it to check the window without a thread. */
size_t pagefill_pass(pagefill *pf);
#endif
