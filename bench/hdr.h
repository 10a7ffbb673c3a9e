/*
 * hdr: a log-linear latency histogram in the manner of HdrHistogram (Gil Tene), for
 * stopbench. Values are unsigned 64-bit (stopbench records nanoseconds).
 *
 * Buckets: values below 2 * HDR_SUB are counted exactly; above, every power of two is cut
 * into HDR_SUB equal sub-buckets, so a bucket is never wider than 1/HDR_SUB of its lower
 * bound. A percentile is answered with its bucket's midpoint (clamped to the exact min and
 * max), hence within HDR_REL_ERR of the true nearest-rank value:
 *     |reported - exact| <= exact / (2 * HDR_SUB)          (0.2 % with HDR_SUB_BITS = 8)
 * The counts are plain integers: two histograms of the same shape merge by adding them, so
 * each thread records into its own (no atomics, no sharing) and the report merges them.
 *
 * Contract: one writer per histogram; hdr_init allocates once (no allocation afterwards);
 * hdr_record never fails for any uint64_t value.
 */
#ifndef SB_HDR_H
#define SB_HDR_H

#include <stdbool.h>
#include <stdint.h>

#define HDR_SUB_BITS 8
#define HDR_SUB (1u << HDR_SUB_BITS)
/* Shifts 0..(63 - HDR_SUB_BITS), each with HDR_SUB buckets, plus the exact range below HDR_SUB. */
#define HDR_BUCKETS ((65u - HDR_SUB_BITS) * HDR_SUB)
#define HDR_REL_ERR (1.0 / (2.0 * HDR_SUB))

typedef struct hdr {
    uint64_t *counts; /* HDR_BUCKETS */
    uint64_t total;
    uint64_t min, max; /* exact; min = UINT64_MAX while empty */
    double sum;        /* for the mean */
} hdr;

/* 0, or -1 when out of memory. */
int hdr_init(hdr *h);
void hdr_free(hdr *h);
void hdr_reset(hdr *h);

/* The bucket of a value, and a bucket's bounds: [low, low + width). Pure functions. */
uint32_t hdr_index(uint64_t v);
uint64_t hdr_bucket_low(uint32_t idx);
uint64_t hdr_bucket_width(uint32_t idx);

void hdr_record_n(hdr *h, uint64_t v, uint64_t n);
static inline void hdr_record(hdr *h, uint64_t v) { hdr_record_n(h, v, 1); }

/* dst += src (same shape by construction). */
void hdr_merge(hdr *dst, const hdr *src);

/* The nearest-rank percentile pct (0 < pct <= 100): the value below or at which pct % of the
 * recorded values lie, within HDR_REL_ERR. 0 when empty; pct >= 100 gives the exact max. */
uint64_t hdr_percentile(const hdr *h, double pct);
double hdr_mean(const hdr *h);

/* Walk the non-empty buckets in value order: fn(ctx, representative value, count of this
 * bucket, cumulative count up to and including it). For plots and tests. */
typedef void (*hdr_visit_fn)(void *ctx, uint64_t value, uint64_t count, uint64_t cumulative);
void hdr_visit(const hdr *h, hdr_visit_fn fn, void *ctx);

#endif
