/*
 * benchlist: the key set of the in-process list benches (listbench, dpdkbench), so that both
 * measure the same table: entry i is account AC<i as 12 digits> of bank BENCH, score i % 101,
 * on the one list "mule"; an account index >= entries is a miss. Header-only, static inline.
 */
#ifndef SG_BENCHLIST_H
#define SG_BENCHLIST_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "lists_table.h"

static inline void bench_account_of(uint64_t i, char out[24]) {
    snprintf(out, 24, "AC%012llu", (unsigned long long)i);
}

/* Create the table in shared memory `shm` with the gateway's writer, put entries 0..entries-1
 * and publish it. 0, or -1 with the reason in err. Each time is optional (NULL): create_s and
 * create_cpu_s what ltab_create took (wall and CPU seconds: the collapse into huge pages
 * included, and a shared wall clock says little), fill_s the puts. */
static inline int bench_list_build(lists_table *t, const char *shm, uint64_t entries, double *create_s,
                                   double *create_cpu_s, double *fill_s, char *err, size_t errcap) {
    const char names[1][SGL_LIST_NAME_MAX] = {"mule"};
    int64_t t0 = clock_mono_ns();
    clock_t c0 = clock();
    if (ltab_create(t, shm, ltab_capacity_for(entries), names, 1, 1, err, errcap) != 0) return -1;
    if (create_s) *create_s = (double)(clock_mono_ns() - t0) / 1e9;
    if (create_cpu_s) *create_cpu_s = (double)(clock() - c0) / CLOCKS_PER_SEC;
    t0 = clock_mono_ns();
    for (uint64_t i = 0; i < entries; i++) {
        char acct[24];
        bench_account_of(i, acct);
        sgl_key k;
        sgl_pack("BENCH", 5, acct, strlen(acct), &k);
        ltab_entry e = {.mask = 1, .score = (uint8_t)(i % 101)};
        if (ltab_put(t, &k, &e, 0) != 0) {
            snprintf(err, errcap, "table full at %llu", (unsigned long long)i);
            return -1;
        }
    }
    if (fill_s) *fill_s = (double)(clock_mono_ns() - t0) / 1e9;
    return ltab_publish(t, NULL, err, errcap);
}

#endif
