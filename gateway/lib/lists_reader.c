/*
 * lists_reader: libstopgate's lock-free reader of the shared-memory list table
 * (include/stopgate/lists.h, layout in lists_layout.h, reasoning in docs/lists.md).
 * The gateway's own CHECK calls sgl_lookup() on the table it writes, so the gateway and
 * every in-process screener judge an account with the same code.
 */
/* XXH3 inlined: a call into libxxhash per key cost more than the rest of a cached lookup. */
#define XXH_INLINE_ALL
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "lists_lookup.h"
#include <stopgate/lists.h>

_Static_assert(SG_LISTS_MAX == SGL_LISTS_MAX, "public and layout list limits agree");

struct sg_lists {
    char path[PATH_MAX];
    sgl_map map;
    dev_t dev;
    ino_t ino;
    int64_t checked_s; /* when the path was last compared with our mapping */
};

int sgl_map_validate(const void *base, size_t size) {
    if (size < SGL_HDR_BYTES) return -EBADMSG;
    const sgl_header *h = base;
    if (memcmp(h->magic, SGL_MAGIC, 8) != 0) return -EBADMSG;
    if (h->version != SGL_VERSION) return -EPROTO;
    if (h->hdr_bytes != SGL_HDR_BYTES || h->slot_bytes != SGL_SLOT_BYTES) return -EBADMSG;
    uint64_t cap = h->capacity;
    if (cap < SGL_CAPACITY_MIN || cap > SGL_CAPACITY_MAX || (cap & (cap - 1)) != 0) return -EBADMSG;
    if (size != sgl_file_bytes(cap)) return -EBADMSG; /* truncated or padded */
    if (h->nlists > SGL_LISTS_MAX) return -EBADMSG;
    for (uint32_t i = 0; i < h->nlists; i++)
        if (!memchr(h->list_names[i], 0, SGL_LIST_NAME_MAX)) return -EBADMSG;
    return 0;
}

void *sgl_mmap(int fd, size_t size, int prot, int flags) {
    if (size < SGL_HUGE_MIN) return mmap(NULL, size, prot, flags, fd, 0);
    /* Reserve size + 2 MiB of address space, place the file at the first 2 MiB boundary in it,
     * give back the slack on both sides. */
    size_t span = size + SGL_HUGE_BYTES;
    uint8_t *r = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (r == MAP_FAILED) return mmap(NULL, size, prot, flags, fd, 0);
    uint8_t *a =
        (uint8_t *)(((uintptr_t)r + SGL_HUGE_BYTES - 1) & ~(uintptr_t)(SGL_HUGE_BYTES - 1));
    void *p = mmap(a, size, prot, flags | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        int e = errno;
        munmap(r, span);
        errno = e;
        return MAP_FAILED;
    }
    if (a > r) munmap(r, (size_t)(a - r));
    if (r + span > a + size) munmap(a + size, (size_t)(r + span - (a + size)));
    return p;
}

int sgl_map_open(const char *path, sgl_map *m) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if ((size_t)st.st_size < SGL_HDR_BYTES) {
        close(fd);
        return -EBADMSG;
    }
    void *p = sgl_mmap(fd, (size_t)st.st_size, PROT_READ, MAP_SHARED | MAP_POPULATE);
    close(fd);
    if (p == MAP_FAILED) return -errno;
    int rc = sgl_map_validate(p, (size_t)st.st_size);
    if (rc != 0) {
        munmap(p, (size_t)st.st_size);
        return rc;
    }
    m->dev = st.st_dev;
    m->ino = st.st_ino;
    m->base = p;
    m->size = (size_t)st.st_size;
    m->h = p;
    m->tags = (const _Atomic uint8_t *)((const uint8_t *)p + SGL_HDR_BYTES);
    m->slots = (const sgl_slot *)((const uint8_t *)p + SGL_HDR_BYTES + m->h->capacity);
    m->mask = m->h->capacity - 1;
    return 0;
}

void sgl_map_close(sgl_map *m) {
    if (m->base) munmap((void *)m->base, m->size);
    memset(m, 0, sizeof *m);
}

sg_lists *sg_lists_open(const char *shm_name) {
    if (!shm_name || !*shm_name || strchr(shm_name, '/') || strlen(shm_name) > NAME_MAX) {
        errno = EINVAL;
        return NULL;
    }
    sg_lists *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    snprintf(l->path, sizeof l->path, "/dev/shm/%s", shm_name);
    int rc = sgl_map_open(l->path, &l->map);
    if (rc != 0) {
        free(l);
        errno = -rc;
        return NULL;
    }
    return l;
}

void sg_lists_close(sg_lists *l) {
    if (!l) return;
    sgl_map_close(&l->map);
    free(l);
}

/* The writer replaced the table (bulk load, restart): follow it. When the new file cannot be
 * mapped yet (the writer is between unlink and rename, or rebuilding), keep answering from
 * the old mapping: stale by at most the writer's rebuild, never torn. */
static void follow_writer(sg_lists *l) {
    if (!atomic_load_explicit(&l->map.h->superseded, memory_order_acquire)) {
        /* A writer that started after our file was deleted or replaced by hand cannot flag
         * it: once a second, compare the name's inode with ours. */
        int64_t now = sgl_now_s();
        if (now == l->checked_s) return;
        l->checked_s = now;
        struct stat st;
        if (stat(l->path, &st) != 0 || (st.st_dev == l->map.dev && st.st_ino == l->map.ino)) return;
    }
    sgl_map fresh;
    if (sgl_map_open(l->path, &fresh) != 0) return;
    if (fresh.h == NULL || atomic_load_explicit(&fresh.h->superseded, memory_order_acquire)) {
        sgl_map_close(&fresh);
        return;
    }
    sgl_map_close(&l->map);
    l->map = fresh;
}

int64_t sgl_now_s(void) {
    /* Expiries are whole seconds: the coarse clock (a few ms old, no hardware read) is
     * plenty, and a precise one cost more than the rest of a cached lookup in a VM. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return ts.tv_sec;
}

int sg_lists_check(const sg_lists *cl, const char *bank, const char *account, sg_verdict *out) {
    sg_lists *l = (sg_lists *)cl; /* re-mapping is the handle's own business (see lists.h) */
    memset(out, 0, sizeof *out);
    if (!bank || !account) return -EINVAL;
    sgl_key k;
    if (sgl_pack(bank, strlen(bank), account, strlen(account), &k) != 0) return -EINVAL;
    follow_writer(l);
    if (sgl_stale(&l->map)) return -ESTALE;
    int rc = sgl_lookup(&l->map, &k, sgl_hash(&k), sgl_now_s(), out);
    return rc < 0 ? rc : 0;
}

/* A made key: packed words 0..4, XXH3 hash in word 5, KEY_MARK in word 6 ("SGK" and the layout
 * version): a key from a library of another layout, or zeroed memory, is refused, never misread. */
#define KEY_HASH 5
#define KEY_VALID 6
#define KEY_MARK (0x53474b0000000000ull | SGL_VERSION)
_Static_assert(SGL_KEY_WORDS <= KEY_HASH, "the packed words fit before the hash");

static int key_make_n(const char *bank, size_t bank_len, const char *acct, size_t acct_len, sg_lists_key *key) {
    sgl_key k;
    memset(key, 0, sizeof *key);
    if (sgl_pack(bank, bank_len, acct, acct_len, &k) != 0) return -EINVAL;
    memcpy(key->opaque, k.w, sizeof k.w);
    key->opaque[KEY_HASH] = sgl_hash(&k);
    key->opaque[KEY_VALID] = KEY_MARK;
    return 0;
}

int sg_lists_key_make(const char *bank, const char *account, sg_lists_key *key) {
    if (!bank || !account) {
        memset(key, 0, sizeof *key);
        return -EINVAL;
    }
    return key_make_n(bank, strlen(bank), account, strlen(account), key);
}

/* A batch is looked up in phases of PHASE lookups (docs/lists.md "Batched lookups"): prefetch
 * every tag line (the next phase's, before this one is walked), then walk every lookup's tags
 * and prefetch its candidate slot, then read the slots. The phases keep the prefetches back to
 * back: on a TLB miss (every lookup, at 10 M entries on 4 KiB pages) a prefetch holds up retirement
 * until its page walk is done, and only prefetches close together in the instruction stream get
 * their walks overlapped. A software pipeline with a lookup's stages spread over the loop measured
 * 0.55-0.6x rte_hash where these phases measured 1.0-1.1x (bench/listbench, 2 M entries, same
 * runs). */
#define PHASE 16

typedef struct walk {
    uint64_t pos, probes;
    int64_t cand;
} walk;

static inline bool key_ok(const sg_lists_key *k) { return k->opaque[KEY_VALID] == KEY_MARK; }

static inline void stage_walk(const sgl_map *m, const sg_lists_key *k, walk *w) {
    uint64_t h = k->opaque[KEY_HASH];
    w->pos = h & m->mask;
    w->probes = 0;
    w->cand = sgl_tag_next(m, sgl_fp(h), &w->pos, &w->probes);
    if (w->cand >= 0) __builtin_prefetch(&m->slots[w->cand]);
}

/* The slot read; a fingerprint collision (rare) walks on at once. */
static inline int stage_read(const sgl_map *m, const sg_lists_key *k, walk *w, int64_t now_s, sg_verdict *out) {
    memset(out, 0, sizeof *out);
    int64_t idx = w->cand;
    uint8_t fp = sgl_fp(k->opaque[KEY_HASH]);
    while (idx >= 0) {
        int r = sgl_slot_match_w(m, (uint64_t)idx, k->opaque, now_s, out);
        if (r != 0) return r < 0 ? r : 0;
        idx = sgl_tag_next(m, fp, &w->pos, &w->probes);
    }
    return 0;
}

static inline void prefetch_tags(const sgl_map *m, const sg_lists_key *k, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (key_ok(&k[i])) __builtin_prefetch((const void *)&m->tags[k[i].opaque[KEY_HASH] & m->mask]);
}

static void lookup_keys(const sgl_map *m, int64_t now_s, size_t n, const sg_lists_key *keys, sg_verdict *out,
                        int *rc) {
    walk w[PHASE];
    prefetch_tags(m, keys, n < PHASE ? n : PHASE);
    for (size_t base = 0; base < n; base += PHASE) {
        size_t b = n - base < PHASE ? n - base : PHASE;
        const sg_lists_key *k = keys + base;
        /* The next phase's tag lines first: they arrive while this phase walks and reads. */
        if (base + b < n) prefetch_tags(m, k + b, n - base - b < PHASE ? n - base - b : PHASE);
        for (size_t i = 0; i < b; i++)
            if (key_ok(&k[i])) stage_walk(m, &k[i], &w[i]);
        for (size_t i = 0; i < b; i++) {
            size_t j = base + i;
            if (key_ok(&k[i])) {
                rc[j] = stage_read(m, &k[i], &w[i], now_s, &out[j]);
            } else {
                memset(&out[j], 0, sizeof out[j]);
                rc[j] = -EINVAL;
            }
        }
    }
}

/* A stale table answers nothing: every account -ESTALE, verdicts zeroed. */
static bool all_stale(const sg_lists *l, size_t n, sg_verdict *out, int *rc) {
    if (!sgl_stale(&l->map)) return false;
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        rc[i] = -ESTALE;
    }
    return true;
}

void sg_lists_check_keys(const sg_lists *cl, size_t n, const sg_lists_key *keys, sg_verdict *out, int *rc) {
    sg_lists *l = (sg_lists *)cl;
    follow_writer(l);
    if (all_stale(l, n, out, rc)) return;
    lookup_keys(&l->map, sgl_now_s(), n, keys, out, rc);
}

#define PACK_BATCH 64 /* strings packed (and their tag lines prefetched) ahead of the phases */

void sg_lists_check_many(const sg_lists *cl, size_t n, const char *const *banks, const char *const *accounts,
                         sg_verdict *out, int *rc) {
    sg_lists *l = (sg_lists *)cl;
    follow_writer(l);
    if (all_stale(l, n, out, rc)) return;
    const sgl_map *m = &l->map;
    int64_t now_s = sgl_now_s();
    sg_lists_key keys[PACK_BATCH];
    for (size_t base = 0; base < n; base += PACK_BATCH) {
        size_t b = n - base < PACK_BATCH ? n - base : PACK_BATCH;
        for (size_t i = 0; i < b; i++) {
            const char *bank = banks[base + i], *acct = accounts[base + i];
            if (!bank || !acct || key_make_n(bank, strlen(bank), acct, strlen(acct), &keys[i]) != 0) {
                memset(&keys[i], 0, sizeof keys[i]);
                continue;
            }
            __builtin_prefetch((const void *)&m->tags[keys[i].opaque[KEY_HASH] & m->mask]);
        }
        lookup_keys(m, now_s, b, keys, out + base, rc + base);
    }
}

const char *sg_lists_name(const sg_lists *l, unsigned bit) {
    if (bit >= SGL_LISTS_MAX || bit >= l->map.h->nlists) return NULL;
    const char *n = l->map.h->list_names[bit];
    /* A foreign or damaged table may not terminate its names: never hand out such a one. */
    return n[0] && memchr(n, 0, SGL_LIST_NAME_MAX) ? n : NULL;
}

uint64_t sg_lists_generation(const sg_lists *l) {
    return atomic_load_explicit(&l->map.h->generation, memory_order_acquire);
}
