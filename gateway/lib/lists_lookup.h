/*
 * lists_lookup: the one lookup routine over a mapped list table, used by libstopgate's
 * reader and by the gateway (its writer) for CHECK. Lock-free: per-slot seqlock reads.
 */
#ifndef SG_LISTS_LOOKUP_H
#define SG_LISTS_LOOKUP_H
#include <errno.h>
#include <sys/types.h>
#include <string.h>
#include <xxhash.h>

#include "lists_layout.h"
#include <stopgate/lists.h>

typedef struct sgl_map {
    dev_t dev; /* of the file mapped (readers re-map when the name points elsewhere) */
    ino_t ino;
    const void *base;
    size_t size;
    const sgl_header *h;
    const _Atomic uint8_t *tags;
    const sgl_slot *slots;
    uint64_t mask;
} sgl_map;

/* The writer says its lists are not current (sgl_header.stale): answer -ESTALE. */
static inline bool sgl_stale(const sgl_map *m) {
    return atomic_load_explicit(&m->h->stale, memory_order_acquire) != 0;
}

/* Reader spins this long on a slot the writer holds before it suspects a dead writer. */
#define SGL_SPIN_MAX 1000000u

static inline uint64_t sgl_hash(const sgl_key *k) { return XXH3_64bits(k->w, sizeof k->w); }

/* Check a mapping's header and size. 0, -EBADMSG (foreign, truncated), -EPROTO (version). */
int sgl_map_validate(const void *base, size_t size);
int64_t sgl_now_s(void);
/* Tables of at least this size are mapped 2 MiB-aligned and their writer asks the kernel for
 * huge pages (docs/lists.md "Huge pages"): at 10 M entries a lookup's lines sit on random 4 KiB
 * pages of a 1 GiB file, so each one was a TLB miss and a page walk; 2 MiB pages cover the
 * whole table with a few hundred TLB entries. Smaller tables fit the TLB's reach anyway. */
#define SGL_HUGE_BYTES (2u << 20)
#define SGL_HUGE_MIN (16u << 20)
/* mmap(NULL, size, prot, flags, fd, 0) at an address congruent to the file offsets modulo
 * SGL_HUGE_BYTES when size >= SGL_HUGE_MIN, so the kernel can map the file's huge pages with
 * one PMD entry each. The mapping is size bytes exactly (munmap(p, size) undoes it). The
 * pointer, or MAP_FAILED with errno. */
void *sgl_mmap(int fd, size_t size, int prot, int flags);
/* Map a table file read-only (MAP_POPULATE, sgl_mmap) and validate it. 0 or a negative errno. */
int sgl_map_open(const char *path, sgl_map *m);
void sgl_map_close(sgl_map *m);

/* Next slot on the probe chain at *i whose tag is fp (advancing *i and the probe count *p), or
 * -1 when an empty tag ends the chain. */
static inline int64_t sgl_tag_next(const sgl_map *m, uint8_t fp, uint64_t *i, uint64_t *p) {
    for (; *p <= m->mask; (*p)++, *i = (*i + 1) & m->mask) {
        uint8_t t = atomic_load_explicit(&m->tags[*i], memory_order_acquire);
        if (t == SGL_TAG_EMPTY) return -1;
        if (t == fp) {
            int64_t hit = (int64_t)*i;
            (*p)++;
            *i = (*i + 1) & m->mask;
            return hit;
        }
    }
    return -1;
}

/* Read slot idx under its seqlock: 1 when it holds key k (out filled), 0 when not, -EBUSY
 * when it stayed locked (a writer died in the middle of writing it). */
static inline int sgl_slot_match_w(const sgl_map *m, uint64_t idx, const uint64_t kw[SGL_KEY_WORDS], int64_t now_s,
                                   sg_verdict *out) {
    const sgl_slot *s = &m->slots[idx];
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
    if (SGL_W0_STATE(w0) != SGL_STATE_USED || memcmp(key, kw, sizeof key) != 0) return 0;
    uint32_t expires_s = (uint32_t)ext;
    bool expired = expires_s != 0 && (int64_t)expires_s <= now_s;
    out->mask = expired ? 0 : mask;
    out->score = expired ? 0 : SGL_W0_SCORE(w0);
    out->frozen = SGL_W0_FROZEN(w0);
    out->case_ref = expired ? 0 : (uint32_t)(ext >> 32);
    return 1;
}

static inline int sgl_slot_match(const sgl_map *m, uint64_t idx, const sgl_key *k, int64_t now_s, sg_verdict *out) {
    return sgl_slot_match_w(m, idx, k->w, now_s, out);
}

/* 1 found (out filled), 0 absent, -EBUSY (see sgl_slot_match). */
static inline int sgl_lookup(const sgl_map *m, const sgl_key *k, uint64_t hash, int64_t now_s, sg_verdict *out) {
    uint64_t i = hash & m->mask, p = 0;
    uint8_t fp = sgl_fp(hash);
    int64_t idx;
    while ((idx = sgl_tag_next(m, fp, &i, &p)) >= 0) {
        int r = sgl_slot_match(m, (uint64_t)idx, k, now_s, out);
        if (r != 0) return r;
    }
    return 0;
}
#endif
