/*
 * test_hdr: stopbench's histogram (hdr.c) and open-loop schedule (sb_sched.h).
 *   - bucket geometry: every value lands in a bucket that holds it, buckets tile the range;
 *   - known distributions (uniform, exponential, log-normal-ish, constant): every percentile
 *     within HDR_REL_ERR of the exact nearest-rank value computed from the sorted samples;
 *   - merge: per-thread histograms merged equal one histogram of all the values;
 *   - edges: empty, 0, UINT64_MAX, min/max exact, pct 100 = max;
 *   - schedule: the connections' intended times together are exactly j / rate, each
 *     connection's are increasing, and the counts add up to the run's total.
 * Plain C (no cmocka needed); exit 0 when everything holds.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hdr.h"
#include "sb_sched.h"

static int failures;
#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            failures++;                                                                                                \
            fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, #cond);                                                \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
        }                                                                                                              \
    } while (0)

static uint64_t rng = 0x853c49e6748fea9bULL;
static uint64_t next_rand(void) {
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}
static double rand01(void) { return (double)(next_rand() >> 11) * (1.0 / 9007199254740992.0); }

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t exact_pct(const uint64_t *sorted, size_t n, double pct) {
    double r = pct / 100.0 * (double)n;
    size_t rank = (size_t)r;
    if ((double)rank < r) rank++;
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

static void test_geometry(void) {
    uint64_t probes[] = {0, 1, 2, 255, 256, 511, 512, 513, 1000, 4095, 4096, 123456789, 1ULL << 40,
                         (1ULL << 63) - 1, 1ULL << 63, UINT64_MAX};
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        uint64_t v = probes[i];
        uint32_t idx = hdr_index(v);
        CHECK(idx < HDR_BUCKETS, "v=%llu idx=%u", (unsigned long long)v, idx);
        uint64_t lo = hdr_bucket_low(idx), w = hdr_bucket_width(idx);
        CHECK(lo <= v && v - lo < w, "v=%llu not in [%llu, +%llu)", (unsigned long long)v, (unsigned long long)lo,
              (unsigned long long)w);
        CHECK(v < 2 * HDR_SUB || (double)w <= (double)lo / HDR_SUB, "bucket too wide at v=%llu", (unsigned long long)v);
    }
    /* The buckets tile [0, 2^64): each starts where the previous ends. */
    for (uint32_t i = 1; i < HDR_BUCKETS; i++) {
        uint64_t end = hdr_bucket_low(i - 1) + hdr_bucket_width(i - 1);
        CHECK(hdr_bucket_low(i) == end, "gap before bucket %u", i);
        if (hdr_bucket_low(i) != end) break;
    }
    CHECK(hdr_bucket_low(HDR_BUCKETS - 1) + (hdr_bucket_width(HDR_BUCKETS - 1) - 1) == UINT64_MAX, "last bucket ends at 2^64-1");
}

/* Record samples, compare every interesting percentile with the exact one. */
static void check_distribution(const char *name, uint64_t *v, size_t n) {
    hdr h;
    if (hdr_init(&h) != 0) abort();
    for (size_t i = 0; i < n; i++) hdr_record(&h, v[i]);
    qsort(v, n, sizeof *v, cmp_u64);
    CHECK(h.total == n, "%s: total", name);
    CHECK(h.min == v[0] && h.max == v[n - 1], "%s: min/max exact", name);
    double pcts[] = {1, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 100};
    for (size_t i = 0; i < sizeof pcts / sizeof pcts[0]; i++) {
        uint64_t exact = exact_pct(v, n, pcts[i]), got = hdr_percentile(&h, pcts[i]);
        double err = fabs((double)got - (double)exact);
        CHECK(err <= (double)exact * HDR_REL_ERR + 0.5, "%s p%g: got %llu exact %llu (err %.4f%%)", name, pcts[i],
              (unsigned long long)got, (unsigned long long)exact, exact ? 100.0 * err / (double)exact : 0.0);
    }
    double mean = 0;
    for (size_t i = 0; i < n; i++) mean += (double)v[i];
    mean /= (double)n;
    CHECK(fabs(hdr_mean(&h) - mean) <= mean * 1e-9 + 1e-9, "%s: mean", name);
    hdr_free(&h);
}

static void test_distributions(void) {
    enum { N = 200000 };
    uint64_t *v = malloc(N * sizeof *v);
    for (size_t i = 0; i < N; i++) v[i] = 1 + next_rand() % 1000000; /* uniform 1..1e6 ns */
    check_distribution("uniform", v, N);
    for (size_t i = 0; i < N; i++) v[i] = (uint64_t)(-log(1.0 - rand01()) * 150000.0); /* exponential, mean 150 us */
    check_distribution("exponential", v, N);
    for (size_t i = 0; i < N; i++) { /* heavy tail: mostly ~100 us, 1 % around 10-100 ms */
        double base = 80000 + rand01() * 40000;
        v[i] = (uint64_t)(rand01() < 0.01 ? base * (100 + 900 * rand01()) : base);
    }
    check_distribution("bimodal", v, N);
    for (size_t i = 0; i < N; i++) v[i] = 777777;
    check_distribution("constant", v, N);
    for (size_t i = 0; i < N; i++) v[i] = next_rand() % 300; /* small: the exact range */
    check_distribution("small", v, N);
    free(v);
}

static void test_merge(void) {
    enum { N = 100000, T = 4 };
    hdr parts[T], one, merged;
    hdr_init(&one);
    hdr_init(&merged);
    for (int t = 0; t < T; t++) hdr_init(&parts[t]);
    for (size_t i = 0; i < N; i++) {
        uint64_t x = (uint64_t)(rand01() * rand01() * 5e7);
        hdr_record(&parts[i % T], x);
        hdr_record(&one, x);
    }
    for (int t = 0; t < T; t++) hdr_merge(&merged, &parts[t]);
    CHECK(merged.total == one.total && merged.min == one.min && merged.max == one.max, "merge: totals, min, max");
    CHECK(memcmp(merged.counts, one.counts, HDR_BUCKETS * sizeof *one.counts) == 0, "merge: counts identical");
    for (double p = 1; p <= 100; p += 0.7)
        CHECK(hdr_percentile(&merged, p) == hdr_percentile(&one, p), "merge: p%g", p);
    hdr empty;
    hdr_init(&empty);
    hdr_merge(&merged, &empty);
    CHECK(merged.total == one.total, "merging an empty histogram changes nothing");
    for (int t = 0; t < T; t++) hdr_free(&parts[t]);
    hdr_free(&one);
    hdr_free(&merged);
    hdr_free(&empty);
}

static void test_edges(void) {
    hdr h;
    hdr_init(&h);
    CHECK(hdr_percentile(&h, 50) == 0 && hdr_percentile(&h, 100) == 0 && hdr_mean(&h) == 0, "empty gives 0");
    hdr_record(&h, UINT64_MAX);
    hdr_record(&h, 0);
    CHECK(h.min == 0 && h.max == UINT64_MAX, "extremes recorded exactly");
    CHECK(hdr_percentile(&h, 50) == 0, "p50 of {0, max} is 0");
    CHECK(hdr_percentile(&h, 100) == UINT64_MAX, "p100 is the max");
    hdr_reset(&h);
    CHECK(h.total == 0 && hdr_percentile(&h, 99) == 0, "reset empties");
    hdr_record_n(&h, 1000, 99);
    hdr_record_n(&h, 1000000, 1);
    CHECK(hdr_percentile(&h, 99) == 1000 && hdr_percentile(&h, 99.5) == 1000000, "nearest rank at the boundary");
    hdr_free(&h);
}

typedef struct visit_ctx {
    uint64_t calls, sum, last_value, last_cum;
    int ordered;
} visit_ctx;

static void visit(void *ctx, uint64_t value, uint64_t count, uint64_t cum) {
    visit_ctx *v = ctx;
    if (v->calls && (value < v->last_value || cum != v->last_cum + count)) v->ordered = 0;
    v->calls++;
    v->sum += count;
    v->last_value = value;
    v->last_cum = cum;
}

/* The walk the plots use: buckets in value order, cumulative counts adding up to the total. */
static void test_visit(void) {
    hdr h;
    hdr_init(&h);
    for (uint64_t i = 0; i < 50000; i++) hdr_record(&h, (next_rand() % 1000) * (next_rand() % 1000) + 1);
    visit_ctx v = {.ordered = 1};
    hdr_visit(&h, visit, &v);
    CHECK(v.ordered, "visit in value order with running cumulative counts");
    CHECK(v.sum == h.total && v.last_cum == h.total, "visit covers every value");
    CHECK(v.last_value == h.max, "the last bucket stands for the max");
    hdr_free(&h);
}

static void test_schedule(void) {
    const double rates[] = {1000, 12345.5, 250000};
    const uint64_t conns_list[] = {1, 7, 50};
    for (size_t a = 0; a < 3; a++)
        for (size_t b = 0; b < 3; b++) {
            double rate = rates[a];
            uint64_t conns = conns_list[b], total = 20011, sum = 0;
            for (uint64_t k = 0; k < conns; k++) {
                uint64_t n = sched_count(k, conns, total);
                sum += n;
                int64_t prev = -1;
                for (uint64_t i = 0; i < n; i++) {
                    int64_t t = sched_intended_ns(k, i, conns, rate);
                    uint64_t j = k + i * conns;
                    CHECK(j < total, "request index in range");
                    int64_t want = (int64_t)((long double)j * 1e9L / (long double)rate);
                    CHECK(t == want, "k=%llu i=%llu: %lld != %lld", (unsigned long long)k, (unsigned long long)i,
                          (long long)t, (long long)want);
                    CHECK(t > prev, "per-connection times increase");
                    prev = t;
                }
            }
            CHECK(sum == total, "rate %g conns %llu: %llu scheduled of %llu", rate, (unsigned long long)conns,
                  (unsigned long long)sum, (unsigned long long)total);
        }
    /* The offered rate over a long run is exact: request 10^9 at 100 k/s leaves at 10^4 s. */
    CHECK(sched_intended_ns(0, 1000000000, 1, 100000) == 10000LL * 1000000000, "no drift over 10^9 requests");
    CHECK(sched_total_for(1000, 2.5) == 2500 && sched_total_for(3, 0.5) == 2 && sched_total_for(1, 1) == 1,
          "requests intended before the end");
}

int main(void) {
    test_geometry();
    test_distributions();
    test_merge();
    test_edges();
    test_visit();
    test_schedule();
    if (failures) {
        fprintf(stderr, "test_hdr: %d failures\n", failures);
        return 1;
    }
    printf("test_hdr: ok (relative error bound %.3f %%)\n", HDR_REL_ERR * 100);
    return 0;
}
