/*
 * lists_table: the single writer of the shared-memory list table (layout: lists_layout.h,
 * docs/lists.md). Entries are updated in place under their slot's seqlock, so a reader
 * sees each change within a microsecond and never half of one. A bulk change (LIST.LOAD,
 * too many tombstones, the table built at start) is built aside in a new file and published
 * by rename(); the old file is marked superseded so readers re-map.
 *
 * Not thread-safe: one writer, the gateway's loop thread.
 */
#ifndef SG_LISTS_TABLE_H
#define SG_LISTS_TABLE_H
#include <stdbool.h>
#include <stdint.h>

#include "lists_lookup.h"

#define LISTS_LOAD_FACTOR_PCT 75 /* inserts refused beyond this share of used+deleted slots */
/* Owner writes, its group reads (libstopgate readers are put in [gateway] shm_group), others
 * nothing: the lists name accounts under investigation (SPEC §11). */
#define LTAB_FILE_MODE 0640

typedef struct ltab_entry {
    uint64_t mask;
    uint8_t score;
    bool frozen;
    uint32_t expires_s; /* 0 = never */
    uint32_t case_ref;  /* 0 = none */
} ltab_entry;

typedef struct lists_table {
    char path[300];  /* /dev/shm/<name>: where it is published */
    char build[320]; /* where it is built before publishing */
    uint8_t *base;
    size_t size;
    sgl_header *h;
    _Atomic uint8_t *tags;
    sgl_slot *slots;
    uint64_t mask;
    bool published;
} lists_table;

/* Create an empty table aside (not yet visible to readers), mode LTAB_FILE_MODE. names[nlists]
 * become the bit names. 0 or -errno (err filled). */
int ltab_create(lists_table *t, const char *shm_name, uint64_t capacity, const char names[][SGL_LIST_NAME_MAX],
                uint32_t nlists, uint64_t generation, char *err, size_t errcap);
/* Give the table built aside to group gid (-1: keep the creator's primary group) before it
 * is published, so readers never see it with another group. 0 or -errno (err filled). */
int ltab_set_group(lists_table *t, int64_t gid, char *err, size_t errcap);
/* Make t the table readers see: rename over /dev/shm/<name>, mark `old` (if any, mapped or
 * a previous writer's file) superseded, unmap old. 0 or -errno. */
int ltab_publish(lists_table *t, lists_table *old, char *err, size_t errcap);
void ltab_close(lists_table *t, bool unlink_build);
/* sgl_header.stale: readers answer -ESTALE while set (the writer's lists are not current: a
 * cluster member behind the log). Carried over to the table that replaces this one. */
void ltab_set_stale(lists_table *t, bool stale);
bool ltab_stale(const lists_table *t);

/* Current entry of key. true when present (used). */
bool ltab_get(const lists_table *t, const sgl_key *k, ltab_entry *e);
/* Set the entry of key; an entry with no list and not frozen is deleted. 0, -ENOSPC when
 * the table is full (load factor). */
int ltab_put(lists_table *t, const sgl_key *k, const ltab_entry *e, int64_t now_ms);
/* The smallest capacity (slots) that holds `entries` within the load factor. */
static inline uint64_t ltab_capacity_for(uint64_t entries) {
    uint64_t cap = SGL_CAPACITY_MIN;
    while (cap * LISTS_LOAD_FACTOR_PCT / 100 < entries) cap *= 2;
    return cap;
}
/* Room for n more entries? */
bool ltab_room(const lists_table *t, uint64_t n);
/* Copy every used entry of src into dst (built aside), optionally clearing list bits
 * (clear_mask) and dropping entries expired before now_s. Entries left with nothing are not
 * copied. -ENOSPC when dst is too small. */
/* The published expiry of an entry whose lists are `mask` (the owner knows per-list TTLs). */
typedef uint32_t (*ltab_expiry_fn)(void *ctx, const sgl_key *k, uint64_t mask);
int ltab_copy(lists_table *dst, const lists_table *src, uint64_t clear_mask, int64_t now_s, int64_t now_ms,
              ltab_expiry_fn expiry, void *ctx);
/* Clear list bits in place (entries left with nothing are deleted). For a table no reader
 * sees yet: in place, readers could see a list half cleared. */
void ltab_clear_bit(lists_table *t, uint64_t bit_mask, int64_t now_ms, ltab_expiry_fn expiry, void *ctx);
/* Deleted slots worth a rebuild? */
bool ltab_needs_compaction(const lists_table *t);
/* A read-only view for sgl_lookup. */
sgl_map ltab_map(const lists_table *t);
#endif
