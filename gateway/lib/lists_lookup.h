/*
 * lists_lookup: the one lookup routine over a mapped list table, used by libstopgate's
 * reader and by the gateway (its writer) for CHECK. Lock-free: per-slot seqlock reads.
 */
#ifndef SG_LISTS_LOOKUP_H
#define SG_LISTS_LOOKUP_H
#include <errno.h>
#include <string.h>
#include <xxhash.h>

#include "lists_layout.h"
#include <stopgate/lists.h>

typedef struct sgl_map {
    const void *base;
    size_t size;
    const sgl_header *h;
    const sgl_slot *slots;
    uint64_t mask;
} sgl_map;

/* Reader spins this long on a slot the writer holds before it suspects a dead writer. */
#define SGL_SPIN_MAX 1000000u

static inline uint64_t sgl_hash(const sgl_key *k) { return XXH3_64bits(k->w, sizeof k->w); }

/* Check a mapping's header and size. 0, -EBADMSG (foreign, truncated), -EPROTO (version). */
int sgl_map_validate(const void *base, size_t size);
int64_t sgl_now_s(void);

/* 1 found (out filled), 0 absent, -EBUSY when a slot stayed locked (writer died mid-write). */
static inline int sgl_lookup(const sgl_map *m, const sgl_key *k, uint64_t hash, int64_t now_s, sg_verdict *out) {
    uint64_t i = hash & m->mask;
    for (uint64_t probe = 0; probe <= m->mask; probe++, i = (i + 1) & m->mask) {
        const sgl_slot *s = &m->slots[i];
        uint64_t w0, mask, ext, key[SGL_KEY_WORDS];
        unsigned spins = 0;
        for (;;) {
            w0 = atomic_load_explicit(&s->w0, memory_order_acquire);
            if (SGL_W0_SEQ(w0) & 1u) {
                if (++spins > SGL_SPIN_MAX) return -EBUSY;
                continue;
            }
            mask = atomic_load_explicit(&s->mask, memory_order_relaxed);
            ext = atomic_load_explicit(&s->ext, memory_order_relaxed);
            for (int w = 0; w < SGL_KEY_WORDS; w++) key[w] = atomic_load_explicit(&s->key[w], memory_order_relaxed);
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(&s->w0, memory_order_relaxed) == w0) break;
            if (++spins > SGL_SPIN_MAX) return -EBUSY;
        }
        uint32_t state = SGL_W0_STATE(w0);
        if (state == SGL_STATE_EMPTY) return 0;
        if (state != SGL_STATE_USED) continue;
        if (memcmp(key, k->w, sizeof key) != 0) continue;
        uint32_t expires_s = (uint32_t)ext;
        bool expired = expires_s != 0 && (int64_t)expires_s <= now_s;
        out->mask = expired ? 0 : mask;
        out->score = expired ? 0 : SGL_W0_SCORE(w0);
        out->frozen = SGL_W0_FROZEN(w0);
        out->case_ref = expired ? 0 : (uint32_t)(ext >> 32);
        return 1;
    }
    return 0;
}
#endif
