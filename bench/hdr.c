/*
 * hdr: log-linear histogram (see hdr.h for the error bound and the contract).
 */
#include "hdr.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(HDR_SUB_BITS >= 1 && HDR_SUB_BITS <= 16, "sub-bucket bits in range");

int hdr_init(hdr *h) {
    memset(h, 0, sizeof *h);
    h->counts = calloc(HDR_BUCKETS, sizeof *h->counts);
    if (!h->counts) return -1;
    h->min = UINT64_MAX;
    return 0;
}

void hdr_free(hdr *h) {
    free(h->counts);
    memset(h, 0, sizeof *h);
}

void hdr_reset(hdr *h) {
    memset(h->counts, 0, HDR_BUCKETS * sizeof *h->counts);
    h->total = 0;
    h->min = UINT64_MAX;
    h->max = 0;
    h->sum = 0;
}

/* idx = s * HDR_SUB + (v >> s), s = max(0, msb(v) - HDR_SUB_BITS): for s >= 1, v >> s lies in
 * [HDR_SUB, 2 * HDR_SUB), so the ranges of successive shifts follow each other without a gap. */
uint32_t hdr_index(uint64_t v) {
    if (v < 2u * HDR_SUB) return (uint32_t)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned s = msb - HDR_SUB_BITS;
    uint32_t idx = s * HDR_SUB + (uint32_t)(v >> s);
    assert(idx < HDR_BUCKETS);
    return idx;
}

uint64_t hdr_bucket_low(uint32_t idx) {
    assert(idx < HDR_BUCKETS);
    if (idx < 2u * HDR_SUB) return idx;
    unsigned s = idx / HDR_SUB - 1;
    return (uint64_t)(idx - s * HDR_SUB) << s;
}

uint64_t hdr_bucket_width(uint32_t idx) {
    assert(idx < HDR_BUCKETS);
    if (idx < 2u * HDR_SUB) return 1;
    return (uint64_t)1 << (idx / HDR_SUB - 1);
}

void hdr_record_n(hdr *h, uint64_t v, uint64_t n) {
    if (n == 0) return;
    h->counts[hdr_index(v)] += n;
    h->total += n;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
    h->sum += (double)v * (double)n;
}

void hdr_merge(hdr *dst, const hdr *src) {
    if (src->total == 0) return;
    for (uint32_t i = 0; i < HDR_BUCKETS; i++) dst->counts[i] += src->counts[i];
    dst->total += src->total;
    if (src->min < dst->min) dst->min = src->min;
    if (src->max > dst->max) dst->max = src->max;
    dst->sum += src->sum;
}

/* The value a bucket stands for: its midpoint, kept inside the exact [min, max]. */
static uint64_t representative(const hdr *h, uint32_t idx) {
    uint64_t w = hdr_bucket_width(idx);
    uint64_t v = hdr_bucket_low(idx) + (w - 1) / 2;
    if (v < h->min) v = h->min;
    if (v > h->max) v = h->max;
    return v;
}

uint64_t hdr_percentile(const hdr *h, double pct) {
    if (h->total == 0) return 0;
    if (pct >= 100.0) return h->max;
    if (pct <= 0.0) return h->min;
    /* Nearest rank: the smallest value with at least ceil(pct% of total) values at or below it. */
    double r = pct / 100.0 * (double)h->total;
    uint64_t rank = (uint64_t)r;
    if ((double)rank < r) rank++;
    if (rank < 1) rank = 1;
    if (rank > h->total) rank = h->total;
    uint64_t cum = 0;
    for (uint32_t i = 0; i < HDR_BUCKETS; i++) {
        cum += h->counts[i];
        if (cum >= rank) return representative(h, i);
    }
    return h->max; /* not reached: the counts add up to total */
}

double hdr_mean(const hdr *h) { return h->total ? h->sum / (double)h->total : 0.0; }

void hdr_visit(const hdr *h, hdr_visit_fn fn, void *ctx) {
    uint64_t cum = 0;
    for (uint32_t i = 0; i < HDR_BUCKETS && cum < h->total; i++) {
        if (!h->counts[i]) continue;
        cum += h->counts[i];
        /* The last bucket holds the max: the curve ends on the exact value. */
        fn(ctx, cum == h->total ? h->max : representative(h, i), h->counts[i], cum);
    }
}
