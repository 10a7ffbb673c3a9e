/*
 * listbench: in-process CHECK on a large fraud-list table, against DPDK's rte_hash with the
 * same keys in the same run (issue 5 (a); docs/PERFORMANCE.md).
 *
 *   listbench [--entries N] [--lookups M] [--runs R] [--pages 2m|4k] [--json FILE]
 *
 * Builds a table of N entries with the gateway's own writer (lists_table.c) in /dev/shm,
 * opens it through libstopgate's reader, and times random lookups, half hits and half
 * misses: sg_lists_check one at a time, sg_lists_check_many in batches of 64 (raw strings,
 * normalised and packed inside) and sg_lists_check_keys in batches of 64 (keys made once with
 * sg_lists_key_make, as a switch screening the same accounts again would keep them). Then the
 * same keys in an rte_hash (CRC32 hash, fixed 48-byte keys, pre-normalised: rte_hash's best
 * case), looked up with rte_hash_lookup_bulk in batches of 64, and with
 * rte_hash_lookup_with_hash_bulk_data on signatures computed once (rte_hash's counterpart of
 * keys made once, printed and in the JSON as rte_hash_prehashed_ns). The ratio compares the two
 * pre-normalised forms (check_keys vs rte_hash_lookup_bulk). Prints ns per lookup (median of
 * the runs).
 *
 * Page size: --pages 2m (default) leaves libstopgate as it ships (its writer collapses a large
 * table into 2 MiB pages, its reader maps them so); --pages 4k turns transparent huge pages off
 * for the process (PR_SET_THP_DISABLE), so the table is on 4 KiB pages. rte_hash runs with
 * --no-huge: its memory is a memfd mapped at an address not congruent to 2 MiB, so it is on
 * 4 KiB pages either way (hugetlbfs needs pages the host reserved). How much of each side is on
 * 2 MiB pages is measured (/proc/self/smaps_rollup) and printed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "benchlist.h"
#include "clock.h"
#include "lists_table.h"
#include <stopgate/lists.h>

#ifdef HAVE_DPDK
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#endif

/* kB of a /proc/self/smaps_rollup field (AnonHugePages: rte_hash's; ShmemPmdMapped: ours). */
static long smaps_kb(const char *field) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') kb = strtol(line + n + 1, NULL, 10);
    if (f) fclose(f);
    return kb;
}

#define BATCH 64
#define KEY_BYTES 48

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

#ifdef HAVE_DPDK
/* The peer: the same keys, fixed 48 bytes (bank at 0, account at 12), in an rte_hash. */
static struct rte_hash *rte_build(char *argv0, char *prefix, uint64_t entries) {
    char *eal[] = {argv0, "--no-huge", "--no-pci", "-m", "4096", "--log-level", "1", "--no-telemetry",
                   "--file-prefix", prefix};
    if (rte_eal_init((int)(sizeof eal / sizeof eal[0]), eal) < 0) {
        fprintf(stderr, "listbench: rte_eal_init failed\n");
        return NULL;
    }
    struct rte_hash_parameters hp = {.name = "listbench", .entries = (uint32_t)entries, .key_len = KEY_BYTES,
                                     .hash_func = rte_hash_crc, .hash_func_init_val = 0, .socket_id = 0};
    struct rte_hash *h = rte_hash_create(&hp);
    if (!h) {
        fprintf(stderr, "listbench: rte_hash_create: %s\n", rte_strerror(rte_errno));
        return NULL;
    }
    int64_t t0 = clock_mono_ns();
    for (uint64_t i = 0; i < entries; i++) {
        uint8_t key[KEY_BYTES] = {0};
        char acct[24];
        bench_account_of(i, acct);
        memcpy(key, "BENCH", 5);
        memcpy(key + 12, acct, strlen(acct));
        if (rte_hash_add_key_data(h, key, (void *)(uintptr_t)(i % 101 + 1)) != 0) {
            fprintf(stderr, "listbench: rte_hash full at %llu\n", (unsigned long long)i);
            rte_hash_free(h);
            return NULL;
        }
    }
    printf("rte_hash built in %.2f s\n", (double)(clock_mono_ns() - t0) / 1e9);
    return h;
}

/* ns per lookup of `lookups` lookups in batches of BATCH: rte_hash_lookup_bulk_data, or with
 * sigs (signatures computed before the timed loop) rte_hash_lookup_with_hash_bulk_data,
 * rte_hash's counterpart of sg_lists_check_keys, whose keys carry their hash. */
static double rte_time(struct rte_hash *h, const uint8_t *keys48, const hash_sig_t *sigs, uint32_t nq,
                       uint64_t lookups, uint64_t *found) {
    const void *kp[BATCH];
    void *data[BATCH];
    int64_t t0 = clock_mono_ns();
    for (uint64_t i = 0; i < lookups; i += BATCH) {
        uint32_t q = (uint32_t)(i & (nq - 1));
        for (int j = 0; j < BATCH; j++) kp[j] = keys48 + (size_t)(q + (uint32_t)j) * KEY_BYTES;
        uint64_t hits = 0;
        if (sigs)
            rte_hash_lookup_with_hash_bulk_data(h, kp, (hash_sig_t *)(sigs + q), BATCH, &hits, data);
        else
            rte_hash_lookup_bulk_data(h, kp, BATCH, &hits, data);
        *found += (uint64_t)__builtin_popcountll(hits);
    }
    return (double)(clock_mono_ns() - t0) / (double)lookups;
}
#endif

int main(int argc, char **argv) {
    uint64_t entries = 10000000, lookups = 20000000;
    int runs = 5;
    const char *json = NULL;
    bool huge = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--entries") && i + 1 < argc) entries = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--lookups") && i + 1 < argc) lookups = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc) runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json = argv[++i];
        else if (!strcmp(argv[i], "--pages") && i + 1 < argc &&
                 (!strcmp(argv[i + 1], "2m") || !strcmp(argv[i + 1], "4k")))
            huge = !strcmp(argv[++i], "2m");
        else {
            fprintf(stderr, "usage: listbench [--entries N] [--lookups M] [--runs R] "
                            "[--pages 2m|4k] [--json FILE]\n");
            return 2;
        }
    }
    if (entries < 1000 || lookups < BATCH || runs < 1 || runs > 50) {
        fprintf(stderr, "listbench: entries >= 1000, lookups >= %d, runs 1..50\n", BATCH);
        return 2;
    }
    if (!huge && prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0) {
        perror("listbench: PR_SET_THP_DISABLE");
        return 1;
    }
    uint64_t cap = ltab_capacity_for(entries);
    char shm[64], err[256];
    snprintf(shm, sizeof shm, "sgbench-%d", (int)getpid());
    lists_table t;
    double create_s, create_cpu_s, build_s;
    if (bench_list_build(&t, shm, entries, &create_s, &create_cpu_s, &build_s, err, sizeof err) != 0) {
        fprintf(stderr, "listbench: %s\n", err);
        return 1;
    }
    sg_lists *l = sg_lists_open(shm);
    if (!l) {
        perror("sg_lists_open");
        return 1;
    }
    /* The query stream: random keys, every other one a miss (an index past the table). */
    uint32_t nq = 1u << 20;
    char (*accts)[24] = malloc((size_t)nq * 24);
    const char **banks = malloc(nq * sizeof *banks), **aptr = malloc(nq * sizeof *aptr);
    uint8_t *keys48 = calloc(nq, KEY_BYTES);
    bool *hit = malloc(nq);
    sg_lists_key *skeys = malloc((size_t)nq * sizeof *skeys);
    if (!accts || !banks || !aptr || !keys48 || !hit || !skeys) return 1;
    for (uint32_t i = 0; i < nq; i++) {
        hit[i] = (i & 1) == 0;
        uint64_t idx = rng() % entries + (hit[i] ? 0 : entries);
        bench_account_of(idx, accts[i]);
        banks[i] = "BENCH";
        aptr[i] = accts[i];
        memcpy(keys48 + (size_t)i * KEY_BYTES, "BENCH", 5);
        memcpy(keys48 + (size_t)i * KEY_BYTES + 12, accts[i], strlen(accts[i]));
        if (sg_lists_key_make(banks[i], aptr[i], &skeys[i]) != 0) return 1;
    }
    double single[50], many[50], bykey[50], rte[50], rte_pre[50], ratio[50];
    sg_verdict out[BATCH];
    int rc[BATCH];
    uint64_t found = 0;
    int64_t t0;
    long shm_huge_kb = smaps_kb("ShmemPmdMapped");
#ifdef HAVE_DPDK
    struct rte_hash *h = rte_build(argv[0], shm, entries);
    if (!h) return 1;
    hash_sig_t *sigs = malloc(nq * sizeof *sigs);
    if (!sigs) return 1;
    for (uint32_t i = 0; i < nq; i++) sigs[i] = rte_hash_hash(h, keys48 + (size_t)i * KEY_BYTES);
#endif
    /* Both sides in every run, one after the other: the machine's speed drifts between runs,
     * the ratio of a pair measured back to back much less. */
    for (int r = 0; r < runs; r++) {
        uint64_t n1 = lookups / 4; /* one at a time is slower: fewer of them */
        t0 = clock_mono_ns();
        for (uint64_t i = 0; i < n1; i++) {
            uint32_t q = (uint32_t)(i & (nq - 1));
            sg_verdict v;
            if (sg_lists_check(l, banks[q], aptr[q], &v) == 0 && v.mask) found++;
        }
        single[r] = (double)(clock_mono_ns() - t0) / (double)n1;
        t0 = clock_mono_ns();
        for (uint64_t i = 0; i < lookups; i += BATCH) {
            uint32_t q = (uint32_t)(i & (nq - 1));
            sg_lists_check_many(l, BATCH, banks + q, aptr + q, out, rc);
            for (int j = 0; j < BATCH; j++) found += out[j].mask != 0;
        }
        many[r] = (double)(clock_mono_ns() - t0) / (double)lookups;
        t0 = clock_mono_ns();
        for (uint64_t i = 0; i < lookups; i += BATCH) {
            uint32_t q = (uint32_t)(i & (nq - 1));
            sg_lists_check_keys(l, BATCH, skeys + q, out, rc);
            for (int j = 0; j < BATCH; j++) found += out[j].mask != 0;
        }
        bykey[r] = (double)(clock_mono_ns() - t0) / (double)lookups;
#ifdef HAVE_DPDK
        rte[r] = rte_time(h, keys48, NULL, nq, lookups, &found);
        rte_pre[r] = rte_time(h, keys48, sigs, nq, lookups, &found);
#else
        rte[r] = rte_pre[r] = 0;
#endif
        ratio[r] = rte[r] / bykey[r];
    }
    /* Correctness guard: exactly the hits were found, by each form. */
    for (uint32_t i = 0; i < 4096; i += BATCH) {
        sg_verdict v[BATCH];
        sg_lists_check_keys(l, BATCH, skeys + i, v, rc);
        sg_lists_check_many(l, BATCH, banks + i, aptr + i, out, rc);
        for (uint32_t j = 0; j < BATCH; j++)
            if (memcmp(&v[j], &out[j], sizeof v[j]) != 0) {
                fprintf(stderr, "listbench: check_keys and check_many disagree on %s\n", aptr[i + j]);
                return 1;
            }
    }
    for (uint32_t i = 0; i < 4096; i++) {
        sg_verdict v;
        sg_lists_check(l, banks[i], aptr[i], &v);
        if ((v.mask != 0) != hit[i] || (hit[i] && v.score != (uint8_t)(strtoull(aptr[i] + 2, NULL, 10) % 101))) {
            fprintf(stderr, "listbench: wrong verdict for %s\n", aptr[i]);
            return 1;
        }
    }
    double med_single = median(single, runs), med_many = median(many, runs), med_keys = median(bykey, runs);
    double med_rte = median(rte, runs), med_rte_pre = median(rte_pre, runs), med_ratio = median(ratio, runs);
    printf("stopgate table: %llu entries, %llu slots (%.0f MiB), created in %.2f s "
           "(%.2f s CPU), filled in %.2f s\n",
           (unsigned long long)entries, (unsigned long long)cap, (double)cap * 64 / 1048576.0,
           create_s, create_cpu_s, build_s);
    long anon_huge_kb = smaps_kb("AnonHugePages") + smaps_kb("ShmemPmdMapped") - shm_huge_kb;
    printf("pages %s: on 2 MiB pages: stopgate %ld MiB (writer's and reader's mappings), "
           "rte_hash %ld MiB\n",
           huge ? "2m" : "4k", shm_huge_kb / 1024, anon_huge_kb / 1024);
    printf("sg_lists_check        %7.1f ns/lookup (median of %d)\n", med_single, runs);
    printf("sg_lists_check_many   %7.1f ns/lookup (batches of %d, raw strings)\n", med_many, BATCH);
    printf("sg_lists_check_keys   %7.1f ns/lookup (batches of %d, keys made once)\n", med_keys, BATCH);
#ifdef HAVE_DPDK
    printf("rte_hash_lookup_bulk  %7.1f ns/lookup (batches of %d)\n", med_rte, BATCH);
    printf("rte_hash ..._with_hash_bulk %7.1f ns/lookup (batches of %d, signatures computed once)\n", med_rte_pre,
           BATCH);
    printf("ratio rte_hash/check_keys = %.2f, median of the runs' own ratios (>= 1.0: stopgate as fast or "
           "faster)\n",
           med_ratio);
    rte_hash_free(h);
    rte_eal_cleanup();
#else
    printf("rte_hash: not built (libdpdk-dev missing)\n");
    med_ratio = 0;
#endif
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            perror(json);
            return 1;
        }
        fprintf(f,
                "{\"entries\": %llu, \"slots\": %llu, \"check_ns\": %.1f, \"check_many_ns\": %.1f, "
                "\"check_keys_ns\": %.1f, \"rte_hash_bulk_ns\": %.1f, \"rte_hash_prehashed_ns\": %.1f, "
                "\"ratio\": %.3f, "
                "\"pages\": \"%s\", \"stopgate_huge_mib\": %ld, \"rte_huge_mib\": %ld, "
                "\"create_s\": %.3f}\n",
                (unsigned long long)entries, (unsigned long long)cap, med_single, med_many,
                med_keys, med_rte, med_rte_pre, med_ratio, huge ? "2m" : "4k", shm_huge_kb / 1024,
                anon_huge_kb / 1024, create_s);
        fclose(f);
    }
    if (found == 0) return 1; /* keeps the lookups from being optimised away */
    sg_lists_close(l);
    ltab_close(&t, false);
    char path[128];
    snprintf(path, sizeof path, "/dev/shm/%s", shm);
    unlink(path);
    return 0;
}
