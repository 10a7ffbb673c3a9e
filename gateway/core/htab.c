#include "htab.h"

#include <assert.h>
#include <errno.h>
#include <sys/mman.h>

#include "mem.h"

int htab_init(htab *h, uint64_t entries_max) {
    uint64_t cap = 16;
    while (cap < entries_max * 2) cap *= 2;
    h->slots = mem_reserve(cap * sizeof(htab_slot));
    if (!h->slots) return -ENOMEM;
    h->mask = cap - 1;
    h->count = 0;
    h->limit = cap / 2;
    return 0;
}

void htab_free(htab *h) {
    if (h->slots) mem_release(h->slots, (h->mask + 1) * sizeof(htab_slot));
    h->slots = NULL;
}

size_t htab_prefault(htab *h) {
    size_t bytes = (h->mask + 1) * sizeof(htab_slot);
    mem_prefault(h->slots, bytes);
    return bytes;
}

htab_slot *htab_lookup(const htab *h, uint64_t hash, const void *key, htab_eq_fn eq, const void *ctx) {
    /* At most half full, so every probe reaches an empty slot: the loop ends. */
    assert(h->slots && h->count <= h->limit && h->limit <= (h->mask + 1) / 2);
    uint64_t i = hash & h->mask;
    for (;;) {
        htab_slot *s = &h->slots[i];
        if (s->val == 0) return s;
        if (s->hash == hash && eq(ctx, s->val, key)) return s;
        i = (i + 1) & h->mask;
    }
}

int htab_fill(htab *h, htab_slot *s, uint64_t hash, uint32_t val) {
    assert(s >= h->slots && s <= &h->slots[h->mask] && s->val == 0 && val != 0); /* an empty slot lookup gave */
    if (h->count >= h->limit) return -ENOSPC;
    s->hash = hash;
    s->val = val;
    h->count++;
    return 0;
}
