/*
 * sb_sched: stopbench's open-loop schedule (SPEC §8 --rate). Pure functions, header-only.
 *
 * A run at `rate` requests per second over `conns` connections sends request j (j = 0, 1, ...
 * over the whole run) at j / rate seconds after the start, on connection j mod conns. So
 * connection k sends its i-th request at (k + i * conns) / rate: the connections interleave
 * evenly, and together they offer exactly `rate` per second whatever the gateway does.
 *
 * Latency in open loop is measured from that intended time, never from the moment the
 * request actually left: a request that could not go out on time (the connection's window
 * was full because the gateway was slow) is charged the wait. That is the correction for
 * coordinated omission (Tene, "How NOT to measure latency"): a closed-loop generator stops
 * sending while the server stalls, and so never records the requests that would have
 * waited.
 */
#ifndef SB_SCHED_H
#define SB_SCHED_H

#include <stdint.h>

/* Intended send time, ns after the run's start, of connection k's i-th request. long double
 * keeps j * 1e9 exact far beyond any run (64-bit mantissa), so the schedule never drifts. */
static inline int64_t sched_intended_ns(uint64_t k, uint64_t i, uint64_t conns, double rate) {
    long double j = (long double)k + (long double)i * (long double)conns;
    return (int64_t)(j * 1e9L / (long double)rate);
}

/* How many of a run's `total` requests connection k sends (requests k, k + conns, ...). */
static inline uint64_t sched_count(uint64_t k, uint64_t conns, uint64_t total) {
    return total > k ? (total - k + conns - 1) / conns : 0;
}

/* The number of requests a run of `seconds` at `rate` offers: those intended before its end. */
static inline uint64_t sched_total_for(double rate, double seconds) {
    long double n = (long double)rate * (long double)seconds;
    uint64_t t = (uint64_t)n;
    return (long double)t < n ? t + 1 : t;
}

#endif
