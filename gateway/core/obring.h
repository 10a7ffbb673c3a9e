/*
 * obring: the outbox's ring of instructions waiting for durability or for their bank plugin
 * (engine.c decides what goes in and when it leaves; this module only keeps the order).
 *
 * Why a module: the ring is reserved for max_outbox entries (mem.h, MAP_NORESERVE; 32 MiB
 * at a million orders) and becomes resident as it is written. A ring that kept walking
 * forward faulted a fresh page every 256 instructions, ~24 per 6,077-order burst, on the
 * event loop (issue 13, docs/PERFORMANCE.md "Issue 13, burst: the outbox's pages"). So:
 *   - whenever the ring empties (every durable batch whose instructions the banks took) it
 *     starts again at slot 0: what it touches is bounded by the most instructions ever
 *     waiting at once, pages that stay resident and cached;
 *   - obring_warm writes its first pages once at start (the daemon only), so that a burst on a
 *     fresh gateway finds them resident too.
 * Order is FIFO either way; a reset happens only when nothing is queued.
 * One thread owns it.
 */
#ifndef SG_OBRING_H
#define SG_OBRING_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct outbox_ent {
    uint64_t lsn; /* must be durable before the instruction leaves */
    uint32_t order_no;
    uint8_t kind; /* sg_instruction_kind */
} outbox_ent;

typedef struct outbox {
    outbox_ent *v;
    uint32_t head, len, cap;
} outbox;

/* Reserve cap (>= 1) entries: 0, or -1 (mmap failed; *ob is then all zero). */
int obring_init(outbox *ob, uint32_t cap);
void obring_free(outbox *ob); /* safe on a zeroed or freed ring */
static inline bool obring_room(const outbox *ob) {
    return ob->len < ob->cap;
}
/* Callers checked obring_room(). */
void obring_push(outbox *ob, outbox_ent e);
/* The oldest entry, or NULL when empty. Valid until the next push or pop. */
static inline outbox_ent *obring_front(outbox *ob) {
    return ob->len ? &ob->v[ob->head] : NULL;
}
/* Drop the oldest entry (the ring is not empty). Emptied, the ring goes back to slot 0. */
void obring_pop(outbox *ob);
void obring_clear(outbox *ob);
/* Write the first min(bytes, the ring) bytes' pages once from user space (mem_touch). */
void obring_warm(outbox *ob, size_t bytes);
#endif
