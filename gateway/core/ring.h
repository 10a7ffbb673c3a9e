/*
 * ring: the few io_uring conventions every module of the loop shares.
 * user_data = kind (8 bits) | aux (24 bits) | index (32 bits), so a completion finds its
 * owner without a lookup table. ring_sqe() never returns NULL: a full submission queue is
 * flushed to the kernel first (batching stays the norm; this is the overflow path).
 */
#ifndef SG_RING_H
#define SG_RING_H
#include <liburing.h>
#include <stdint.h>
#include <stdlib.h>

enum ud_kind {
    UD_NONE = 0,
    UD_ACCEPT,
    UD_RECV,
    UD_SEND,
    UD_CLOSE,
    UD_JOURNAL,
    UD_PLUGIN,
    UD_METRICS_ACCEPT,
    UD_METRICS_RECV,
    UD_METRICS_SEND,
    UD_SIGNAL,
    UD_IGNORE,
    UD_UDP_RECV,
    UD_UDP_SEND,
    UD_DPDK, /* the DPDK order side's eventfd (dpdk.c) */
    UD_AUTH, /* the auth workers' eventfd (login.c) */
    UD_CONSOLE, /* the agents' console (console.c): its operation in aux */
    UD_CLUSTER, /* the etcd client's eventfd (cluster.c) */
};

static inline uint64_t ud_make(unsigned kind, uint32_t aux, uint32_t idx) {
    return ((uint64_t)kind << 56) | ((uint64_t)(aux & 0xffffffu) << 32) | idx;
}
static inline unsigned ud_kind(uint64_t ud) { return (unsigned)(ud >> 56); }
static inline uint32_t ud_aux(uint64_t ud) { return (uint32_t)((ud >> 32) & 0xffffffu); }
static inline uint32_t ud_idx(uint64_t ud) { return (uint32_t)ud; }

static inline struct io_uring_sqe *ring_sqe(struct io_uring *r) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(r);
    if (!sqe) {
        io_uring_submit(r);
        sqe = io_uring_get_sqe(r);
        if (!sqe) abort(); /* cannot happen right after a submit: the SQ was just drained */
    }
    return sqe;
}
#endif
