/*
 * fuzz_lists: the shared-memory list table as bad input. A file under /dev/shm may be
 * foreign, truncated or written by a dying writer; readers (libstopgate, the gateway's own
 * CHECK) must never crash on it.
 *
 * Input: u8 flags, u8 bank length, bank, u8 account length, account, then table bytes.
 *   - sgl_pack on the raw bank/account bytes; a packed key unpacks and packs back the same.
 *   - sgl_map_validate on the table bytes as they are (an exact-size copy).
 *   - a table of 1024 or 2048 slots filled from the table bytes (once, or repeated; header
 *     taken from them or not), its header made to pass validation unless flags say
 *     otherwise, then sgl_lookup with the input key and with keys found in the slots.
 *     A slot whose seqlock reads "writer inside" (odd) makes a lookup spin SGL_SPIN_MAX
 *     times and give -EBUSY: ~10 ms of traced compares, so every seqlock is made even
 *     except, when flags 16 and 128 are both set, the first used slot's.
 *   - the public reader (sg_lists_open/check/check_many/name/generation/close) on that
 *     table, and on the raw bytes, written as /dev/shm/sgfuzz-lists-<pid>.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lists_lookup.h"
#include <stopgate/lists.h>

enum {
    F_REPEAT = 1,      /* fill the table by repeating the bytes */
    F_HEADER = 2,      /* the bytes start at the header (else at the tag array) */
    F_KEEP_NLISTS = 4, /* keep the bytes' nlists (may be invalid) */
    F_PUBLIC = 8,      /* also through sg_lists_open on a /dev/shm file */
    F_ODD_SEQ = 16,    /* with bit 7 too: one slot the writer "holds" (slow: spins) */
    F_BIG = 32,        /* 2048 slots */
};

static char shm_name[64];

/* The tables, static: a fresh 70-135 KiB heap block per run is an mmap and page faults
 * under ASan, most of a run's cost; globals get ASan redzones after them all the same. */
static _Alignas(64) uint8_t table_small[SGL_HDR_BYTES + 1024 + 1024 * SGL_SLOT_BYTES];
static _Alignas(64) uint8_t table_big[SGL_HDR_BYTES + 2048 + 2048 * SGL_SLOT_BYTES];

static void write_shm(const void *p, size_t n) {
    char path[128];
    snprintf(path, sizeof path, "/dev/shm/%s", shm_name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) abort();
    if (n && write(fd, p, n) != (ssize_t)n) abort();
    close(fd);
}

static void remove_shm(void) {
    char path[128];
    snprintf(path, sizeof path, "/dev/shm/%s", shm_name);
    unlink(path);
}

/* 1 when the lookup gave up on a held slot. */
static int check_verdict(int rc, const sg_verdict *v) {
    if (rc != 0 && rc != 1 && rc != -EBUSY) abort();
    (void)v;
    return rc == -EBUSY;
}

static void public_api(const char *bank, const char *acct) {
    sg_lists *l = sg_lists_open(shm_name);
    if (!l) return;
    sg_verdict v;
    int rc = sg_lists_check(l, bank, acct, &v);
    if (rc != 0 && rc != -EINVAL && rc != -EBUSY && rc != -ESTALE) abort();
    const char *banks[3] = {bank, "BANKA", bank}, *accts[3] = {acct, "DE89370400440532013000", "X"};
    sg_verdict vs[3];
    int rcs[3];
    sg_lists_check_many(l, 3, banks, accts, vs, rcs);
    for (unsigned bit = 0; bit <= SG_LISTS_MAX; bit++) {
        const char *n = sg_lists_name(l, bit);
        /* A careful caller's read: the name field is SGL_LIST_NAME_MAX bytes. */
        /* sg_lists_name must never hand out an unterminated name (regression seed
         * corpus/fuzz_lists/names-unterminated). */
        if (n && strnlen(n, SGL_LIST_NAME_MAX) == SGL_LIST_NAME_MAX) abort();
    }
    (void)sg_lists_generation(l);
    sg_lists_close(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    if (!shm_name[0]) {
        snprintf(shm_name, sizeof shm_name, "sgfuzz-lists-%d", (int)getpid());
        atexit(remove_shm);
    }
    uint8_t flags = data[0];
    size_t pos = 1;
    size_t bl = data[pos++] % 16;
    if (bl > size - pos) bl = size - pos;
    char *bank = malloc(bl + 1);
    memcpy(bank, data + pos, bl);
    bank[bl] = 0;
    pos += bl;
    size_t al = pos < size ? data[pos++] % 160 : 0;
    if (al > size - pos) al = size - pos;
    char *acct = malloc(al + 1);
    memcpy(acct, data + pos, al);
    acct[al] = 0;
    pos += al;
    const uint8_t *tb = data + pos;
    size_t tn = size - pos;

    /* Packing: exact-size views (the NUL is not part of them). */
    sgl_key key;
    bool have_key = sgl_pack(bank, bl, acct, al, &key) == 0;
    if (have_key) {
        char b2[SGL_BANK_SYMS + 1], a2[SGL_ACCOUNT_SYMS + 1];
        sgl_key again;
        sgl_unpack(&key, b2, a2);
        if (sgl_pack(b2, strlen(b2), a2, strlen(a2), &again) != 0 || memcmp(&again, &key, sizeof key) != 0) abort();
    }

    /* The bytes as a table file, as they are. */
    uint8_t *raw = malloc(tn ? tn : 1);
    memcpy(raw, tb, tn);
    int vrc = sgl_map_validate(raw, tn);
    if (vrc != 0 && vrc != -EBADMSG && vrc != -EPROTO) abort();

    /* A table of the right size made from the bytes. */
    uint64_t cap = (flags & F_BIG) ? 2048 : 1024;
    size_t fsize = (size_t)sgl_file_bytes(cap);
    uint8_t *t = (flags & F_BIG) ? table_big : table_small;
    memset(t, 0, fsize);
    if (tn) {
        size_t at = (flags & F_HEADER) ? 0 : SGL_HDR_BYTES;
        if (flags & F_REPEAT) {
            for (size_t o = at; o < fsize; o++) t[o] = tb[(o - at) % tn];
        } else {
            memcpy(t + at, tb, tn < fsize - at ? tn : fsize - at);
        }
    }
    sgl_header *h = (sgl_header *)t;
    memcpy(h->magic, SGL_MAGIC, 8);
    h->version = SGL_VERSION;
    h->hdr_bytes = SGL_HDR_BYTES;
    h->slot_bytes = SGL_SLOT_BYTES;
    h->capacity = cap;
    if (!(flags & F_KEEP_NLISTS)) h->nlists %= SGL_LISTS_MAX + 1;
    sgl_slot *slots = (sgl_slot *)(t + SGL_HDR_BYTES + cap);
    bool keep_odd = (flags & F_ODD_SEQ) && (flags & 0x80);
    for (uint64_t i = 0; i < cap; i++) {
        if (keep_odd && t[SGL_HDR_BYTES + i] >= 2) {
            /* This one stays as the bytes say, tagged so that a lookup of its key stops at it. */
            keep_odd = false;
            sgl_key k;
            for (int w = 0; w < SGL_KEY_WORDS; w++) k.w[w] = atomic_load_explicit(&slots[i].key[w], memory_order_relaxed);
            t[SGL_HDR_BYTES + i] = sgl_fp(sgl_hash(&k));
            continue;
        }
        uint64_t w0 = atomic_load_explicit(&slots[i].w0, memory_order_relaxed);
        atomic_store_explicit(&slots[i].w0, w0 & ~(1ULL << 32), memory_order_relaxed);
    }
    /* Names must be terminated for a table to validate (sg_lists_name hands them out). */
    bool terminated = true;
    for (uint32_t i = 0; i < h->nlists && i < SGL_LISTS_MAX; i++)
        terminated &= memchr(h->list_names[i], 0, SGL_LIST_NAME_MAX) != NULL;
    if (sgl_map_validate(t, fsize - 1) == 0) abort(); /* truncated by one byte */
    int trc = sgl_map_validate(t, fsize);
    if (trc != 0 && (flags & F_KEEP_NLISTS) == 0 && terminated) abort();
    if (trc == 0 && !terminated) abort();
    if (trc == 0) {
        sgl_map m = {.base = t, .size = fsize, .h = h, .tags = (const _Atomic uint8_t *)(t + SGL_HDR_BYTES),
                     .slots = slots, .mask = cap - 1};
        int64_t now_s = 1700000000 + (int64_t)(flags >> 6) * 1000000000;
        sg_verdict v;
        int busy = 0; /* one -EBUSY (a ~10 ms spin) per input is enough */
        if (have_key) busy = check_verdict(sgl_lookup(&m, &key, sgl_hash(&key), now_s, &v), &v);
        /* Keys the table holds: a hit is possible when the slot sits on its probe chain. */
        int tried = 0;
        for (uint64_t i = 0; i < cap && tried < 8 && !busy; i++) {
            if (t[SGL_HDR_BYTES + i] < 2) continue;
            sgl_key k;
            for (int w = 0; w < SGL_KEY_WORDS; w++) k.w[w] = atomic_load_explicit(&slots[i].key[w], memory_order_relaxed);
            busy = check_verdict(sgl_lookup(&m, &k, sgl_hash(&k), now_s, &v), &v);
            tried++;
        }
    }

    if (flags & F_PUBLIC) {
        write_shm(t, fsize);
        public_api(bank, acct);
        write_shm(raw, tn); /* foreign or truncated */
        public_api(bank, acct);
    }
    free(raw);
    free(acct);
    free(bank);
    return 0;
}
