/*
 * lists_layout: the shared-memory layout of the fraud-list table (docs/lists.md), shared by
 * the one writer (gateway/core/lists_table.c) and every reader (lists_reader.c, libstopgate).
 *
 * File /dev/shm/<name>: a 4096-byte header, then `capacity` slots of 64 bytes (one cache
 * line). Open addressing, linear probing, keyed by XXH3-64 of the packed account key.
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
#define SGL_VERSION 1u
#define SGL_HDR_BYTES 4096u
#define SGL_SLOT_BYTES 64u
#define SGL_LIST_NAME_MAX 32 /* bytes, NUL included */
#define SGL_LISTS_MAX 64
#define SGL_KEY_WORDS 5
#define SGL_BANK_SYMS 11
#define SGL_ACCOUNT_SYMS 34
#define SGL_CAPACITY_MIN 1024u
#define SGL_CAPACITY_MAX (1u << 28) /* 16 GiB of slots: far beyond any national list */

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

static inline int sgl_sym(char c) {
    if (c >= '0' && c <= '9') return c - '0' + 1;
    if (c >= 'A' && c <= 'Z') return c - 'A' + 11;
    if (c >= 'a' && c <= 'z') return c - 'a' + 11;
    return -1;
}

static inline void sgl_put(sgl_key *k, unsigned pos, int sym) {
    k->w[pos / 10] |= (uint64_t)sym << (6 * (pos % 10));
}

/* Normalise and pack (bank, account) exactly as the gateway's account.c does: bank
 * [A-Z0-9]{1,11} (case-insensitive); account with spaces and '-' dropped, [A-Z0-9]{1,34}.
 * 0, or -1 when malformed. */
static inline int sgl_pack(const char *bank, size_t bank_len, const char *acct, size_t acct_len, sgl_key *k) {
    for (int i = 0; i < SGL_KEY_WORDS; i++) k->w[i] = 0;
    if (bank_len == 0 || bank_len > SGL_BANK_SYMS || acct_len > 128) return -1;
    for (size_t i = 0; i < bank_len; i++) {
        int s = sgl_sym(bank[i]);
        if (s < 0) return -1;
        sgl_put(k, (unsigned)i, s);
    }
    unsigned n = 0;
    for (size_t i = 0; i < acct_len; i++) {
        char c = acct[i];
        if (c == ' ' || c == '-') continue;
        int s = sgl_sym(c);
        if (s < 0 || n == SGL_ACCOUNT_SYMS) return -1;
        sgl_put(k, SGL_BANK_SYMS + n++, s);
    }
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
    uint32_t reserved1;
    _Atomic uint64_t count;      /* used slots */
    _Atomic uint64_t tombstones;
    _Atomic int64_t updated_ms;  /* last change, for operators */
    uint64_t list_count[SGL_LISTS_MAX]; /* entries per list (writer's bookkeeping; approximate for readers) */
    char list_names[SGL_LISTS_MAX][SGL_LIST_NAME_MAX];
} sgl_header;
_Static_assert(sizeof(sgl_header) <= SGL_HDR_BYTES, "header fits its page");
#endif
