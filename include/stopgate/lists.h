/*
 * libstopgate: read stopgate's fraud lists straight from shared memory (docs/lists.md).
 *
 * The gateway is the one writer of /dev/shm/<shm_name>; any process on the host may map it
 * read-only and screen payee accounts in-process, without a network round trip and without
 * a lock. A check never sees a torn entry (per-slot seqlock) and follows the writer when it
 * publishes a new table (bulk load, restart): the handle re-maps on the next check.
 *
 * Threads: one handle per thread (handles are cheap; they share the mapped pages). A handle
 * re-maps itself inside sg_lists_check(), which is why the same handle must not be used by
 * two threads at once.
 *
 *   cc reader.c $(pkg-config --cflags --libs stopgate)
 *
 * ABI: within one SONAME (libstopgate.so.0) functions are only ever added, and the structs
 * here never change size or meaning; anything else takes a new SONAME.
 */
#ifndef STOPGATE_LISTS_H
#define STOPGATE_LISTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SG_LISTS_MAX 64 /* lists per table: one bit each in sg_verdict.mask */

typedef struct sg_lists sg_lists;

typedef struct sg_verdict {
    uint64_t mask;   /* bit i set: the account is on list i (sg_lists_name(l, i)); 0 = on none */
    uint8_t score;   /* 0..100, the highest risk score given while listed; 0 when on no list */
    bool frozen;     /* a live STOP/FREEZE exists on the account */
    uint32_t case_ref; /* the entry's case reference (resolved by the gateway), 0 = none */
} sg_verdict;

/* Map /dev/shm/<shm_name> read-only. NULL with errno: ENOENT (no gateway has created it),
 * EBADMSG (not a stopgate list table, or truncated), EPROTO (layout version not supported). */
sg_lists *sg_lists_open(const char *shm_name);

/* Look up (bank, account) as given by a payment system: spaces and '-' are removed and
 * letters upper-cased, as the gateway does. 0 and *out filled (all zero when the account is
 * neither listed nor frozen), -EINVAL for a malformed bank or account, -EBADMSG when the
 * table went bad under us (the handle stays usable for a retry after the writer fixes it),
 * -ESTALE when the gateway says its lists are not current (a cluster member that fell behind
 * the cluster log: screen against another member; the handle answers again once the gateway
 * is re-seeded and publishes current lists). */
int sg_lists_check(const sg_lists *l, const char *bank, const char *account, sg_verdict *out);

/* The same for n accounts at once, with the memory accesses overlapped (the fast way to
 * screen a batch). rc[i] is what sg_lists_check would return for the i-th account (-ESTALE for
 * every one while the table is stale). */
void sg_lists_check_many(const sg_lists *l, size_t n, const char *const *banks, const char *const *accounts,
                         sg_verdict *out, int *rc);

/* A (bank, account) normalised, packed and hashed once, for a caller that screens the same
 * account many times (a switch's payee cache): sg_lists_check_keys() then pays no packing and
 * no hashing. Contents are private to libstopgate; a key is valid for any table of the layout
 * the library that made it reads (a key made by another library version answers -EINVAL, it is
 * never misread). Plain data: copy it, keep it in arrays, no free. */
typedef struct sg_lists_key {
    uint64_t opaque[8];
} sg_lists_key;

/* Make a key with the same normalisation as sg_lists_check. 0, or -EINVAL (malformed; the key
 * is then marked invalid and sg_lists_check_keys answers -EINVAL for it). */
int sg_lists_key_make(const char *bank, const char *account, sg_lists_key *key);

/* sg_lists_check_many over keys made by sg_lists_key_make: rc[i] and out[i] as sg_lists_check
 * would give them for the account the key was made from. The fastest way to screen a batch. */
void sg_lists_check_keys(const sg_lists *l, size_t n, const sg_lists_key *keys, sg_verdict *out, int *rc);

/* Name of list bit i, or NULL when no list has that bit. Valid until the next check or close. */
const char *sg_lists_name(const sg_lists *l, unsigned bit);

/* Generation of the table the handle currently reads (changes on every publish). */
uint64_t sg_lists_generation(const sg_lists *l);

void sg_lists_close(sg_lists *l);

#ifdef __cplusplus
}
#endif
#endif
