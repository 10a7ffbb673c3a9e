#include "lists_table.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "mem.h"

/* sgl_mmap (the readers' mapping, libstopgate) aligns to the same huge page core hints at. */
_Static_assert(SGL_HUGE_BYTES == MEM_HUGE_PAGE_BYTES, "one huge page size: table and readers");

static void attach(lists_table *t, uint8_t *base, size_t size) {
    t->base = base;
    t->size = size;
    t->h = (sgl_header *)base;
    t->tags = (_Atomic uint8_t *)(base + SGL_HDR_BYTES);
    t->slots = (sgl_slot *)(base + SGL_HDR_BYTES + t->h->capacity);
    t->mask = t->h->capacity - 1;
}

/* Linux 6.1; older kernels answer EINVAL and the table stays on 4 KiB pages. */
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif

/* Allocate the build file and map it. posix_fallocate, not ftruncate alone: a tmpfs that cannot
 * hold the table must fail here, at build time, not with SIGBUS on the first write. Populated:
 * otherwise every first write to a page (a new account's frozen mark during a burst) takes a page
 * fault; they were half of a 6,077 burst's CPU.
 *
 * A table of SGL_HUGE_MIN or more is asked for in 2 MiB pages (docs/lists.md "Huge pages"):
 * MADV_COLLAPSE moves the file's pages into huge pages whatever
 * /sys/kernel/mm/transparent_hugepage/shmem_enabled says (only "deny" refuses it), and every
 * reader that maps the file 2 MiB-aligned (sgl_mmap) then gets them too. Only the first 4 KiB of
 * each 2 MiB is allocated before the collapse, so it copies one small page per huge page, not
 * 512. Best effort: a kernel (< 6.1) or a sandbox that refuses leaves 4 KiB pages, only slower.
 * 0 or a positive errno. */
static int alloc_map(int fd, size_t size, void **out) {
    bool huge = size >= SGL_HUGE_MIN;
    int rc = 0;
    if (huge) {
        if (ftruncate(fd, (off_t)size) != 0) return errno;
        for (size_t off = 0; off < size && rc == 0; off += MEM_HUGE_PAGE_BYTES)
            rc = posix_fallocate(fd, (off_t)off, 4096);
    } else {
        rc = posix_fallocate(fd, 0, (off_t)size);
    }
    if (rc != 0) return rc;
    void *p = sgl_mmap(fd, size, PROT_READ | PROT_WRITE, MAP_SHARED | (huge ? 0 : MAP_POPULATE));
    if (p == MAP_FAILED) return errno;
    if (huge) {
        if (((uintptr_t)p & (MEM_HUGE_PAGE_BYTES - 1)) == 0) {
            (void)madvise(p, size, MADV_HUGEPAGE);
            (void)madvise(p, size, MADV_COLLAPSE);
        }
        if ((rc = posix_fallocate(fd, 0, (off_t)size)) != 0) {
            munmap(p, size);
            return rc;
        }
        /* Linux 5.14; without it the first write to each page faults. */
        (void)madvise(p, size, MADV_POPULATE_WRITE);
    }
    *out = p;
    return 0;
}

int ltab_create(lists_table *t, const char *shm_name, uint64_t capacity, const char names[][SGL_LIST_NAME_MAX],
                uint32_t nlists, uint64_t generation, char *err, size_t errcap) {
    memset(t, 0, sizeof *t);
    if (capacity < SGL_CAPACITY_MIN || capacity > SGL_CAPACITY_MAX || (capacity & (capacity - 1)) != 0 ||
        nlists > SGL_LISTS_MAX) {
        snprintf(err, errcap, "list table capacity %llu is not a power of two in [%u, %u]",
                 (unsigned long long)capacity, SGL_CAPACITY_MIN, SGL_CAPACITY_MAX);
        return -EINVAL;
    }
    snprintf(t->path, sizeof t->path, "/dev/shm/%s", shm_name);
    /* Unique per table: during a rebuild the old table's build file may still exist. */
    snprintf(t->build, sizeof t->build, "/dev/shm/%s.build-%d-%llu", shm_name, (int)getpid(),
             (unsigned long long)generation);
    unlink(t->build); /* a build file of a crashed earlier writer with our pid */
    int fd = open(t->build, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, LTAB_FILE_MODE);
    /* Explicitly, whatever the umask: readers in the table's group need the group bit. */
    if (fd < 0 || fchmod(fd, LTAB_FILE_MODE) != 0) {
        int e = errno;
        snprintf(err, errcap, "%s: %s", t->build, strerror(e));
        if (fd >= 0) {
            close(fd);
            unlink(t->build);
        }
        return -e;
    }
    size_t size = sgl_file_bytes(capacity);
    void *p = NULL;
    int rc = alloc_map(fd, size, &p);
    close(fd);
    if (rc != 0) {
        snprintf(err, errcap, "%s: cannot allocate and map %zu bytes: %s", t->build, size,
                 strerror(rc));
        unlink(t->build);
        return -rc;
    }
    /* MAP_POPULATE maps a shared file's pages read-only: the first write to each page still
     * costs 6-11 us under shadow paging, and a 6,077 burst writes ~5,000 distinct pages of a
     * 64 MiB table (28-43 % of its CPU). Paid here, at build time: ~40 ms per 64 MiB once. */
    mem_touch(p, size);
    sgl_header *h = p;
    h->capacity = capacity;
    memcpy(h->magic, SGL_MAGIC, 8);
    h->version = SGL_VERSION;
    h->hdr_bytes = SGL_HDR_BYTES;
    h->slot_bytes = SGL_SLOT_BYTES;
    h->nlists = nlists;
    h->capacity = capacity;
    h->created_ms = clock_now_ms();
    h->writer_pid = (int32_t)getpid();
    atomic_store(&h->generation, generation);
    for (uint32_t i = 0; i < nlists; i++) snprintf(h->list_names[i], SGL_LIST_NAME_MAX, "%s", names[i]);
    attach(t, p, size);
    return 0;
}

int ltab_set_group(lists_table *t, int64_t gid, char *err, size_t errcap) {
    assert(!t->published);
    struct stat st;
    /* No chown when it has the group already: the shipped unit's seccomp filter denies it. */
    if (gid < 0 || (stat(t->build, &st) == 0 && st.st_gid == (gid_t)gid)) return 0;
    if (chown(t->build, (uid_t)-1, (gid_t)gid) != 0) {
        int e = errno;
        snprintf(err, errcap, "%s: cannot give it to group %lld: %s%s", t->build, (long long)gid, strerror(e),
                 e == EPERM ? " (the gateway's user must be a member of shm_group)" : "");
        return -e;
    }
    return 0;
}

int ltab_publish(lists_table *t, lists_table *old, char *err, size_t errcap) {
    assert(!t->published);
    /* A previous writer's table (we restarted) or a foreign file: readers of a valid one must
     * be told to move; anything else is simply replaced. */
    bool old_mapped = old && old->base;
    int ofd = old_mapped ? -1 : open(t->path, O_RDWR | O_CLOEXEC);
    if (rename(t->build, t->path) != 0) {
        snprintf(err, errcap, "publish %s: %s", t->path, strerror(errno));
        if (ofd >= 0) close(ofd);
        return -errno;
    }
    t->published = true;
    if (old_mapped) {
        ltab_set_stale(t, ltab_stale(old)); /* a rebuild does not make the lists current */
        atomic_store_explicit(&old->h->superseded, 1, memory_order_release);
        ltab_close(old, false);
    } else if (ofd >= 0) {
        struct stat st;
        if (fstat(ofd, &st) == 0 && (size_t)st.st_size >= SGL_HDR_BYTES) {
            void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, ofd, 0);
            if (p != MAP_FAILED) {
                if (sgl_map_validate(p, (size_t)st.st_size) == 0)
                    atomic_store_explicit(&((sgl_header *)p)->superseded, 1, memory_order_release);
                munmap(p, (size_t)st.st_size);
            }
        }
        close(ofd);
    }
    return 0;
}

void ltab_close(lists_table *t, bool unlink_build) {
    if (t->base) munmap(t->base, t->size);
    if (unlink_build && !t->published && t->build[0]) unlink(t->build);
    memset(t, 0, sizeof *t);
}

sgl_map ltab_map(const lists_table *t) {
    return (sgl_map){.base = t->base, .size = t->size, .h = t->h, .tags = t->tags, .slots = t->slots, .mask = t->mask};
}

/* The writer is the only one changing slots, so it reads them plainly (relaxed). */
static bool key_eq(const sgl_slot *s, const sgl_key *k) {
    for (int w = 0; w < SGL_KEY_WORDS; w++)
        if (atomic_load_explicit(&s->key[w], memory_order_relaxed) != k->w[w]) return false;
    return true;
}

/* Index of key's slot, or -1 with *free_slot the first reusable slot on its probe path. The
 * writer walks the same tags readers do; tags and slot states always agree for it. */
static int64_t find(const lists_table *t, const sgl_key *k, int64_t *free_slot) {
    uint64_t hash = sgl_hash(k);
    uint8_t fp = sgl_fp(hash);
    uint64_t i = hash & t->mask;
    *free_slot = -1;
    for (uint64_t probe = 0; probe <= t->mask; probe++, i = (i + 1) & t->mask) {
        uint8_t tag = atomic_load_explicit(&t->tags[i], memory_order_relaxed);
        if (tag == SGL_TAG_EMPTY) {
            if (*free_slot < 0) *free_slot = (int64_t)i;
            return -1;
        }
        if (tag == SGL_TAG_TOMB) {
            if (*free_slot < 0) *free_slot = (int64_t)i;
            continue;
        }
        if (tag == fp && key_eq(&t->slots[i], k)) return (int64_t)i;
    }
    return -1;
}

bool ltab_get(const lists_table *t, const sgl_key *k, ltab_entry *e) {
    int64_t fs;
    int64_t i = find(t, k, &fs);
    if (i < 0) return false;
    const sgl_slot *s = &t->slots[i];
    uint64_t w0 = atomic_load_explicit(&s->w0, memory_order_relaxed);
    uint64_t ext = atomic_load_explicit(&s->ext, memory_order_relaxed);
    e->mask = atomic_load_explicit(&s->mask, memory_order_relaxed);
    e->score = SGL_W0_SCORE(w0);
    e->frozen = SGL_W0_FROZEN(w0);
    e->expires_s = (uint32_t)ext;
    e->case_ref = (uint32_t)(ext >> 32);
    return true;
}

/* Seqlock write (Boehm, "Can seqlocks get along with programming language memory models?"):
 * odd seq, release fence, data, even seq with release. */
static void slot_write(sgl_slot *s, uint32_t state, const sgl_key *k, const ltab_entry *e);

/* The slot first, then its tag (release): a reader that finds the tag finds the slot whole. */
static void slot_set(lists_table *t, uint64_t i, uint32_t state, const sgl_key *k, const ltab_entry *e) {
    slot_write(&t->slots[i], state, k, e);
    uint8_t tag = state == SGL_STATE_USED ? sgl_fp(sgl_hash(k)) : SGL_TAG_TOMB;
    atomic_store_explicit(&t->tags[i], tag, memory_order_release);
}

static void slot_write(sgl_slot *s, uint32_t state, const sgl_key *k, const ltab_entry *e) {
    uint64_t w0 = atomic_load_explicit(&s->w0, memory_order_relaxed);
    uint32_t seq = SGL_W0_SEQ(w0);
    atomic_store_explicit(&s->w0, SGL_W0(seq + 1, (uint32_t)w0), memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&s->mask, e ? e->mask : 0, memory_order_relaxed);
    atomic_store_explicit(&s->ext, e ? ((uint64_t)e->case_ref << 32 | e->expires_s) : 0, memory_order_relaxed);
    for (int w = 0; w < SGL_KEY_WORDS; w++) atomic_store_explicit(&s->key[w], k->w[w], memory_order_relaxed);
    uint32_t meta = SGL_META(state, e && e->frozen, e ? e->score : 0);
    atomic_store_explicit(&s->w0, SGL_W0(seq + 2, meta), memory_order_release);
}

static void count_lists(sgl_header *h, uint64_t before, uint64_t after) {
    for (uint64_t diff = before ^ after; diff; diff &= diff - 1) {
        int bit = __builtin_ctzll(diff);
        if (after & (1ULL << bit)) h->list_count[bit]++;
        else h->list_count[bit]--;
    }
}

bool ltab_room(const lists_table *t, uint64_t n) {
    uint64_t used = atomic_load(&t->h->count) + atomic_load(&t->h->tombstones);
    return used + n <= (t->mask + 1) * LISTS_LOAD_FACTOR_PCT / 100;
}

bool ltab_needs_compaction(const lists_table *t) {
    return atomic_load(&t->h->tombstones) > (t->mask + 1) / 8;
}

int ltab_put(lists_table *t, const sgl_key *k, const ltab_entry *e, int64_t now_ms) {
    assert(t->base && !(e->mask >> t->h->nlists)); /* only declared lists */
    assert(e->mask || (e->score == 0 && e->case_ref == 0)); /* unlisted carries nothing */
    int64_t fs;
    int64_t i = find(t, k, &fs);
    bool keep = e->mask != 0 || e->frozen;
    sgl_header *h = t->h;
    if (i >= 0) {
        sgl_slot *s = &t->slots[i];
        uint64_t before = atomic_load_explicit(&s->mask, memory_order_relaxed);
        if (keep) {
            slot_set(t, (uint64_t)i, SGL_STATE_USED, k, e);
        } else {
            slot_set(t, (uint64_t)i, SGL_STATE_TOMB, k, NULL);
            atomic_fetch_sub(&h->count, 1);
            atomic_fetch_add(&h->tombstones, 1);
        }
        count_lists(h, before, keep ? e->mask : 0);
    } else {
        if (!keep) return 0;
        assert(fs >= 0);
        bool reuse = SGL_W0_STATE(atomic_load_explicit(&t->slots[fs].w0, memory_order_relaxed)) == SGL_STATE_TOMB;
        if (!reuse && !ltab_room(t, 1)) return -ENOSPC;
        slot_set(t, (uint64_t)fs, SGL_STATE_USED, k, e);
        atomic_fetch_add(&h->count, 1);
        if (reuse) atomic_fetch_sub(&h->tombstones, 1);
        count_lists(h, 0, e->mask);
    }
    /* Live slots and tombstones never exceed the slots there are (readers' probes end). */
    assert(atomic_load(&h->count) + atomic_load(&h->tombstones) <= t->mask + 1);
    atomic_store(&h->updated_ms, now_ms);
    return 0;
}

void ltab_clear_bit(lists_table *t, uint64_t bit_mask, int64_t now_ms, ltab_expiry_fn expiry, void *ctx) {
    sgl_header *h = t->h;
    assert(bit_mask && !(bit_mask >> h->nlists));
    for (uint64_t i = 0; i <= t->mask; i++) {
        sgl_slot *s = &t->slots[i];
        uint64_t w0 = atomic_load_explicit(&s->w0, memory_order_relaxed);
        uint64_t mask = atomic_load_explicit(&s->mask, memory_order_relaxed);
        if (SGL_W0_STATE(w0) != SGL_STATE_USED || !(mask & bit_mask)) continue;
        /* Straight at the slot: a find() per entry made replaying big loads memory-bound. */
        sgl_key k;
        for (int w = 0; w < SGL_KEY_WORDS; w++) k.w[w] = atomic_load_explicit(&s->key[w], memory_order_relaxed);
        uint64_t ext = atomic_load_explicit(&s->ext, memory_order_relaxed);
        ltab_entry e = {.mask = mask & ~bit_mask, .score = SGL_W0_SCORE(w0), .frozen = SGL_W0_FROZEN(w0),
                        .expires_s = (uint32_t)ext, .case_ref = (uint32_t)(ext >> 32)};
        if (!e.mask) e.score = 0, e.case_ref = 0, e.expires_s = 0;
        else if (expiry) e.expires_s = expiry(ctx, &k, e.mask);
        count_lists(h, mask, e.mask);
        if (e.mask || e.frozen) {
            slot_set(t, i, SGL_STATE_USED, &k, &e);
        } else {
            slot_set(t, i, SGL_STATE_TOMB, &k, NULL);
            atomic_fetch_sub(&h->count, 1);
            atomic_fetch_add(&h->tombstones, 1);
        }
    }
    atomic_store(&h->updated_ms, now_ms);
}

int ltab_copy(lists_table *dst, const lists_table *src, uint64_t clear_mask, int64_t now_s, int64_t now_ms,
              ltab_expiry_fn expiry, void *ctx) {
    assert(dst != src && dst->h->nlists == src->h->nlists);
    for (uint64_t i = 0; i <= src->mask; i++) {
        const sgl_slot *s = &src->slots[i];
        uint64_t w0 = atomic_load_explicit(&s->w0, memory_order_relaxed);
        if (SGL_W0_STATE(w0) != SGL_STATE_USED) continue;
        sgl_key k;
        for (int w = 0; w < SGL_KEY_WORDS; w++) k.w[w] = atomic_load_explicit(&s->key[w], memory_order_relaxed);
        uint64_t ext = atomic_load_explicit(&s->ext, memory_order_relaxed);
        ltab_entry e = {.mask = atomic_load_explicit(&s->mask, memory_order_relaxed) & ~clear_mask,
                        .score = SGL_W0_SCORE(w0),
                        .frozen = SGL_W0_FROZEN(w0),
                        .expires_s = (uint32_t)ext,
                        .case_ref = (uint32_t)(ext >> 32)};
        if (expiry && e.mask && (clear_mask & atomic_load_explicit(&s->mask, memory_order_relaxed)))
            e.expires_s = expiry(ctx, &k, e.mask);
        if (e.expires_s && (int64_t)e.expires_s <= now_s) {
            e.mask = 0;
            e.expires_s = 0;
        }
        if (e.mask == 0) {
            e.score = 0;
            e.case_ref = 0;
            e.expires_s = 0;
        }
        int rc = ltab_put(dst, &k, &e, now_ms);
        if (rc != 0) return rc;
    }
    return 0;
}

void ltab_set_stale(lists_table *t, bool stale) {
    atomic_store_explicit(&t->h->stale, stale ? 1u : 0u, memory_order_release);
}

bool ltab_stale(const lists_table *t) {
    return atomic_load_explicit(&t->h->stale, memory_order_relaxed) != 0;
}
