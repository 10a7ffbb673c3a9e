/*
 * htab: fixed-capacity open-addressing index from a 64-bit hash to a 32-bit handle
 * (1-based; 0 marks an empty slot). The owner keeps the keys; htab_find() asks it to compare.
 * Capacity is fixed at creation (a power of two, at least twice the entries it will hold),
 * so inserting never rehashes on a hot path. No deletion: stopgate's indexes only grow or
 * update in place (requests, cases, accounts -> latest order).
 */
#ifndef SG_HTAB_H
#define SG_HTAB_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct htab_slot {
    uint64_t hash;
    uint32_t val;
    uint32_t pad;
} htab_slot;

typedef struct htab {
    htab_slot *slots;
    uint64_t mask;
    uint64_t count;
    uint64_t limit; /* count at which inserts are refused (half the slots) */
} htab;

typedef bool (*htab_eq_fn)(const void *ctx, uint32_t val, const void *key);

int htab_init(htab *h, uint64_t entries_max);
void htab_free(htab *h);
/* Make the whole table resident now (see mem_prefault); returns the bytes touched. */
size_t htab_prefault(htab *h);
/* Slot holding key, or the empty slot where it would go. */
htab_slot *htab_lookup(const htab *h, uint64_t hash, const void *key, htab_eq_fn eq, const void *ctx);
/* The slot a lookup of hash reads first (to prefetch it: a CHECK's look ahead). */
static inline const void *htab_first_slot(const htab *h, uint64_t hash) { return &h->slots[hash & h->mask]; }
/* Fill an empty slot returned by htab_lookup. -ENOSPC when the table is at its limit. */
int htab_fill(htab *h, htab_slot *s, uint64_t hash, uint32_t val);
#endif
