/*
 * lists_layout: the shared-memory layout of the fraud-list table (docs/lists.md), shared by
 * the one writer (gateway/core/lists_table.c) and every reader (lists_reader.c, libstopgate).
 *
 * File /dev/shm/<name>: a 4096-byte header, `capacity` one-byte tags, then `capacity` slots
 * of 64 bytes (one cache line). Open addressing, linear probing, keyed by XXH3-64 of the
 * packed account key. The tag array mirrors each slot's state with an 8-bit fingerprint of
 * its hash: probing walks the tags (64 per cache line, small enough to stay in cache) and
 * touches a slot only when its fingerprint matches, so a miss costs no slot read at all and
 * a hit usually one.
 *
 * Slot = eight 64-bit words, read and written only with C11 atomics (relaxed) under a
 * per-slot seqlock in word 0: the writer makes seq odd, writes the other words, makes seq
 * even again (release); a reader copies the words between two acquire loads of seq and
 * retries when they differ or are odd. So a reader never uses a torn entry, takes no lock,
 * and is free of data races in the C11 sense.
 *
 * The key is stored whole, packed 6 bits per character ('0'-'9' = 1..10, 'A'-'Z' = 11..36,
 * 0 = padding): bank in symbols 0..10, account in symbols 11..44, ten symbols per word in
 * words 3..7. Equal keys pack to equal words, so comparison is five word compares.
 */
#ifndef SG_LISTS_LAYOUT_H
#define SG_LISTS_LAYOUT_H
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SGL_MAGIC "SGLISTS1"
#define SGL_VERSION 2u
#define SGL_HDR_BYTES 4096u
#define SGL_SLOT_BYTES 64u
#define SGL_LIST_NAME_MAX 32 /* bytes, NUL included */
#define SGL_LISTS_MAX 64
#define SGL_KEY_WORDS 5
#define SGL_BANK_SYMS 11
#define SGL_ACCOUNT_SYMS 34
#define SGL_CAPACITY_MIN 1024u
#define SGL_CAPACITY_MAX (1u << 28) /* 16 GiB of slots: far beyond any national list */

/* Tags: 0 empty (ends a probe chain), 1 deleted, 2..255 a used slot's fingerprint. */
#define SGL_TAG_EMPTY 0u
#define SGL_TAG_TOMB 1u
static inline uint8_t sgl_fp(uint64_t hash) { return (uint8_t)(2u + (unsigned)((hash >> 56) % 254u)); }

static inline uint64_t sgl_file_bytes(uint64_t capacity) {
    return SGL_HDR_BYTES + capacity + capacity * SGL_SLOT_BYTES;
}

/* Slot word 0: seqlock count in the high 32 bits (odd while the writer changes the slot),
 * meta in the low 32: state:2 frozen:1 pad:5 score:8. Sharing one word means a reader gets
 * seq and meta in one load and the writer publishes the new meta with the closing store. */
#define SGL_STATE_EMPTY 0u
#define SGL_STATE_USED 1u
#define SGL_STATE_TOMB 2u /* deleted: probing goes on past it */
#define SGL_W0_SEQ(w) ((uint32_t)((w) >> 32))
#define SGL_W0_STATE(w) ((uint32_t)((w) & 3u))
#define SGL_W0_FROZEN(w) ((bool)(((w) >> 2) & 1u))
#define SGL_W0_SCORE(w) ((uint8_t)(((w) >> 8) & 0xffu))
#define SGL_META(state, frozen, score) ((uint32_t)(state) | ((uint32_t)((frozen) ? 1 : 0) << 2) | ((uint32_t)(score) << 8))
#define SGL_W0(seq, meta) (((uint64_t)(seq) << 32) | (uint64_t)(meta))

typedef struct sgl_slot {
    _Atomic uint64_t w0;   /* seq | meta */
    _Atomic uint64_t mask; /* list bits */
    _Atomic uint64_t ext;  /* low 32: expires_at unix seconds (0 = never); high 32: case_ref */
    _Atomic uint64_t key[SGL_KEY_WORDS];
} sgl_slot;
_Static_assert(sizeof(sgl_slot) == SGL_SLOT_BYTES, "a slot is one cache line");

typedef struct sgl_key {
    uint64_t w[SGL_KEY_WORDS];
} sgl_key;

/* Symbol of each byte plus one: 2..37 for [0-9A-Za-z], 1 for the separators an account may
 * carry (space, '-'), 0 for anything else. A table: packing runs inside every lookup. */
#define SGL_SYM_DIGITS(b) [b] = (b) - '0' + 2
#define SGL_SYM_UP(b) [b] = (b) - 'A' + 12
#define SGL_SYM_LOW(b) [b] = (b) - 'a' + 12
static const uint8_t sgl_symtab[256] = {
    [' '] = 1, ['-'] = 1,
    SGL_SYM_DIGITS('0'), SGL_SYM_DIGITS('1'), SGL_SYM_DIGITS('2'), SGL_SYM_DIGITS('3'), SGL_SYM_DIGITS('4'),
    SGL_SYM_DIGITS('5'), SGL_SYM_DIGITS('6'), SGL_SYM_DIGITS('7'), SGL_SYM_DIGITS('8'), SGL_SYM_DIGITS('9'),
    SGL_SYM_UP('A'), SGL_SYM_UP('B'), SGL_SYM_UP('C'), SGL_SYM_UP('D'), SGL_SYM_UP('E'), SGL_SYM_UP('F'),
    SGL_SYM_UP('G'), SGL_SYM_UP('H'), SGL_SYM_UP('I'), SGL_SYM_UP('J'), SGL_SYM_UP('K'), SGL_SYM_UP('L'),
    SGL_SYM_UP('M'), SGL_SYM_UP('N'), SGL_SYM_UP('O'), SGL_SYM_UP('P'), SGL_SYM_UP('Q'), SGL_SYM_UP('R'),
    SGL_SYM_UP('S'), SGL_SYM_UP('T'), SGL_SYM_UP('U'), SGL_SYM_UP('V'), SGL_SYM_UP('W'), SGL_SYM_UP('X'),
    SGL_SYM_UP('Y'), SGL_SYM_UP('Z'),
    SGL_SYM_LOW('a'), SGL_SYM_LOW('b'), SGL_SYM_LOW('c'), SGL_SYM_LOW('d'), SGL_SYM_LOW('e'), SGL_SYM_LOW('f'),
    SGL_SYM_LOW('g'), SGL_SYM_LOW('h'), SGL_SYM_LOW('i'), SGL_SYM_LOW('j'), SGL_SYM_LOW('k'), SGL_SYM_LOW('l'),
    SGL_SYM_LOW('m'), SGL_SYM_LOW('n'), SGL_SYM_LOW('o'), SGL_SYM_LOW('p'), SGL_SYM_LOW('q'), SGL_SYM_LOW('r'),
    SGL_SYM_LOW('s'), SGL_SYM_LOW('t'), SGL_SYM_LOW('u'), SGL_SYM_LOW('v'), SGL_SYM_LOW('w'), SGL_SYM_LOW('x'),
    SGL_SYM_LOW('y'), SGL_SYM_LOW('z'),
};

/* Normalise and pack (bank, account) exactly as the gateway's account.c does: bank
 * [A-Z0-9]{1,11} (case-insensitive); account with spaces and '-' dropped, [A-Z0-9]{1,34}.
 * 0, or -1 when malformed. */
static inline int sgl_pack(const char *bank, size_t bank_len, const char *acct, size_t acct_len, sgl_key *k) {
    uint64_t w[SGL_KEY_WORDS] = {0};
    if (bank_len == 0 || bank_len > SGL_BANK_SYMS || acct_len > 128) return -1;
    /* Word and shift advance together (ten 6-bit symbols per word): no division per symbol. */
    unsigned wi = 0, sh = 0;
    for (size_t i = 0; i < bank_len; i++) {
        int s = (int)sgl_symtab[(uint8_t)bank[i]] - 1;
        if (s <= 0) return -1; /* no separators inside a bank code */
        w[wi] |= (uint64_t)s << sh;
        if ((sh += 6) == 60) sh = 0, wi++;
    }
    wi = SGL_BANK_SYMS / 10, sh = 6 * (SGL_BANK_SYMS % 10);
    unsigned n = 0;
    for (size_t i = 0; i < acct_len; i++) {
        int s = (int)sgl_symtab[(uint8_t)acct[i]] - 1;
        if (s < 0) return -1;
        if (s == 0) continue; /* formatting the agent may have pasted */
        if (n++ == SGL_ACCOUNT_SYMS) return -1;
        w[wi] |= (uint64_t)s << sh;
        if ((sh += 6) == 60) sh = 0, wi++;
    }
    for (int i = 0; i < SGL_KEY_WORDS; i++) k->w[i] = w[i];
    return n == 0 ? -1 : 0;
}

/* Unpack into NUL-terminated bank and account (for the writer's rebuilds and dumps). */
static inline void sgl_unpack(const sgl_key *k, char bank[SGL_BANK_SYMS + 1], char acct[SGL_ACCOUNT_SYMS + 1]) {
    static const char alpha[] = "?0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    unsigned nb = 0, na = 0;
    for (unsigned pos = 0; pos < SGL_BANK_SYMS + SGL_ACCOUNT_SYMS; pos++) {
        unsigned s = (unsigned)(k->w[pos / 10] >> (6 * (pos % 10))) & 63u;
        if (s == 0 || s > 36) continue;
        if (pos < SGL_BANK_SYMS) bank[nb++] = alpha[s];
        else acct[na++] = alpha[s];
    }
    bank[nb] = 0;
    acct[na] = 0;
}

typedef struct sgl_header {
    char magic[8];
    uint32_t version;
    uint32_t hdr_bytes;
    uint32_t slot_bytes;
    uint32_t nlists;
    uint64_t capacity; /* slots, a power of two */
    int64_t created_ms;
    int32_t writer_pid;
    uint32_t reserved0;
    _Atomic uint64_t generation; /* this table's publish number; never reused by a writer */
    _Atomic uint32_t superseded; /* 1: a newer table replaced this file; re-open by name */
    /* 1: the writer holds no current lists (a cluster member behind the trimmed log, or whose
     * log did not continue its journal: docs/cluster.md): readers answer -ESTALE, not an old
     * verdict. Was reserved (0) before: older tables read as not stale. */
    _Atomic uint32_t stale;
    _Atomic uint64_t count;      /* used slots */
    _Atomic uint64_t tombstones;
    _Atomic int64_t updated_ms;  /* last change, for operators */
    uint64_t list_count[SGL_LISTS_MAX]; /* entries per list (writer's bookkeeping; approximate for readers) */
    char list_names[SGL_LISTS_MAX][SGL_LIST_NAME_MAX];
} sgl_header;
_Static_assert(sizeof(sgl_header) <= SGL_HDR_BYTES, "header fits its page");
_Static_assert(offsetof(sgl_header, stale) == 60, "the stale flag where docs/lists.md says (was reserved1)");
#endif
