/*
 * lists_hammer: a reader process for the fraud-list concurrency test
 * (tests/integration/lists/test_lists_concurrency.py). It maps the gateway's shared-memory
 * table through libstopgate and checks accounts in a loop while the gateway adds, deletes and
 * bulk-loads, verifying values the test controls:
 *
 *   - every entry the test gives the gateway, on any list, has score = check_score(account)
 *     (FNV-1a 32 of the account % 101): a verdict with mask != 0 and another score is a torn
 *     or mixed-up read;
 *   - only the lists `mule` and `suspect` exist, no account is frozen (no orders), every check
 *     of a well-formed account answers 0 (never -EBUSY / -EBADMSG);
 *   - `suspect` is only ever bulk-loaded (LIST.LOAD) with the rows S<i> for which
 *     (i + k) % 3 != 0, k = the load's number, all with the case LOAD-<k>: one
 *     sg_lists_check_many() over the whole S universe reads one table, so the suspect hits it
 *     sees must be exactly one load's pattern, all with one case reference; a half-published
 *     load would show a mix;
 *   - re-opening by name always succeeds (the writer publishes by rename: the name never
 *     disappears);
 *   - the same holds through sg_lists_check_keys (keys made once, the batched path): the hot
 *     accounts in batches of 64 and every other S-universe batch go through it (key_hot_hits
 *     counts its hot hits, often 0: a hot entry's life is shorter than a batch's gap between a
 *     key's tag walk and its slot read).
 *
 * usage: lists_hammer SHM_NAME SECONDS N_MULE N_SUSPECT
 *        lists_hammer --peek SHM_NAME   (see peek() below)
 * Accounts: bank HAMR, accounts M<i> (0 <= i < N_MULE), S<i> (0 <= i < N_SUSPECT) and the
 * hot H0..H7 (on mule, added and deleted by the driver back to back).
 * Prints one line "hammer: checks=... batches=... mule_hits=... suspect_hits=...
 * generations=... violations=..." and exits 0 only when there was no violation and it checked.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <stopgate/lists.h>

#define BANK "HAMR"
#define MAX_REPORTS 20
#define N_HOT 8 /* accounts H0..H7, churned by the driver without pause */

static unsigned long long violations;

static void violation(const char *fmt, const char *acct, unsigned long long a, unsigned long long b) {
    if (++violations <= MAX_REPORTS) {
        fprintf(stderr, "hammer: VIOLATION: ");
        fprintf(stderr, fmt, acct, a, b);
        fputc('\n', stderr);
    }
}

static unsigned check_score(const char *acct) {
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)acct; *p; p++) h = (h ^ *p) * 16777619u;
    return h % 101u;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

typedef struct bits {
    uint64_t mule, suspect;
} bits;

static int resolve(const sg_lists *l, bits *b) {
    b->mule = b->suspect = 0;
    for (unsigned i = 0; i < SG_LISTS_MAX; i++) {
        const char *n = sg_lists_name(l, i);
        if (!n) continue;
        if (!strcmp(n, "mule")) b->mule = 1ull << i;
        if (!strcmp(n, "suspect")) b->suspect = 1ull << i;
    }
    return b->mule && b->suspect ? 0 : -1;
}

/* Invariants of one verdict (any list). */
static void verify(const bits *b, const char *acct, int rc, const sg_verdict *v) {
    if (rc != 0) {
        violation("check %s returned %llu (%llu)", acct, (unsigned long long)-rc, 0);
        return;
    }
    if (v->frozen) violation("%s frozen (%llu %llu)", acct, 0, 0);
    if (v->mask & ~(b->mule | b->suspect)) violation("%s mask %llx (lists %llx)", acct, v->mask, b->mule | b->suspect);
    if (v->mask && v->score != check_score(acct))
        violation("%s score %llu, the test gave %llu: torn read", acct, v->score, check_score(acct));
    if (!v->mask && (v->score || v->case_ref)) violation("%s unlisted with score %llu case %llu", acct, v->score, v->case_ref);
    if ((v->mask & b->suspect) && acct[0] != 'S') violation("%s on suspect (%llu %llu)", acct, 0, 0);
}

/* --peek SHM: one long-lived handle, driven by lines on stdin (the tests' in-process view):
 *   check BANK ACCOUNT -> gen=G rc=R mask=M score=S frozen=F case=C lists=a,b|-
 *   reopen             -> opened gen=G | open-error ERRNO
 * A handle that stays open across the gateway's publishes and restarts shows whether the
 * reader follows the writer. */
static int peek(const char *shm) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    sg_lists *l = sg_lists_open(shm);
    if (l) printf("opened gen=%llu\n", (unsigned long long)sg_lists_generation(l));
    else printf("open-error %d\n", errno);
    char line[256], bank[64], acct[128];
    while (fgets(line, sizeof line, stdin)) {
        if (!strncmp(line, "reopen", 6)) {
            sg_lists_close(l);
            l = sg_lists_open(shm);
            if (l) printf("opened gen=%llu\n", (unsigned long long)sg_lists_generation(l));
            else printf("open-error %d\n", errno);
        } else if (sscanf(line, "check %63s %127s", bank, acct) == 2) {
            if (!l) {
                printf("no-handle\n");
                continue;
            }
            sg_verdict v;
            int rc = sg_lists_check(l, bank, acct, &v);
            printf("gen=%llu rc=%d mask=%llu score=%u frozen=%d case=%u lists=", (unsigned long long)sg_lists_generation(l),
                   rc, (unsigned long long)v.mask, (unsigned)v.score, v.frozen ? 1 : 0, (unsigned)v.case_ref);
            const char *sep = "";
            for (unsigned i = 0; i < SG_LISTS_MAX; i++)
                if (v.mask & (1ull << i)) {
                    const char *n = sg_lists_name(l, i);
                    printf("%s%s", sep, n ? n : "?");
                    sep = ",";
                }
            printf("%s\n", *sep ? "" : "-");
        } else {
            printf("bad-command\n");
        }
    }
    sg_lists_close(l);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--peek")) return peek(argv[2]);
    if (argc != 5) {
        fprintf(stderr, "usage: lists_hammer SHM_NAME SECONDS N_MULE N_SUSPECT | lists_hammer --peek SHM_NAME\n");
        return 2;
    }
    const char *shm = argv[1];
    double seconds = atof(argv[2]);
    long nm = atol(argv[3]), ns = atol(argv[4]);
    if (seconds <= 0 || nm <= 0 || ns <= 0 || nm > 100000000 || ns > 100000000) {
        fprintf(stderr, "lists_hammer: bad arguments\n");
        return 2;
    }
    rng_state ^= (uint64_t)getpid() * 0x9e3779b97f4a7c15ull;
    sg_lists *l = sg_lists_open(shm);
    if (!l) {
        fprintf(stderr, "lists_hammer: sg_lists_open(%s): %s\n", shm, strerror(errno));
        return 2;
    }
    bits b;
    if (resolve(l, &b) != 0) {
        fprintf(stderr, "lists_hammer: the table has no lists mule and suspect\n");
        return 2;
    }
    char **macct = malloc((size_t)nm * sizeof *macct), **sacct = malloc((size_t)ns * sizeof *sacct);
    const char **sbank = malloc((size_t)ns * sizeof *sbank);
    sg_verdict *sv = malloc((size_t)ns * sizeof *sv);
    int *src = malloc((size_t)ns * sizeof *src);
    sg_lists_key *skeys = malloc((size_t)ns * sizeof *skeys);
    if (!macct || !sacct || !sbank || !sv || !src || !skeys) return 2;
    for (long i = 0; i < nm; i++) {
        macct[i] = malloc(24);
        snprintf(macct[i], 24, "M%ld", i);
    }
    for (long i = 0; i < ns; i++) {
        sacct[i] = malloc(24);
        snprintf(sacct[i], 24, "S%ld", i);
        sbank[i] = BANK;
        if (sg_lists_key_make(BANK, sacct[i], &skeys[i]) != 0) return 2;
    }

    char hacct[N_HOT][8];
    for (int i = 0; i < N_HOT; i++) snprintf(hacct[i], sizeof hacct[i], "H%d", i);
    enum { KB = 64 }; /* a batch of hot keys: several of check_keys' pipeline phases */
    sg_lists_key hkeys[KB];
    sg_verdict hv[KB];
    int hrc[KB];
    for (int i = 0; i < KB; i++)
        if (sg_lists_key_make(BANK, hacct[i % N_HOT], &hkeys[i]) != 0) return 2;
    unsigned long long hot_hits = 0, key_hot_hits = 0, key_batches = 0;
    unsigned long long checks = 0, batches = 0, mule_hits = 0, suspect_hits = 0, reopens = 0;
    unsigned long long patterns[3] = {0, 0, 0}, empty_batches = 0;
    uint64_t last_gen = sg_lists_generation(l);
    unsigned generations = 1;
    double t0 = now_s(), next_reopen = t0 + 0.5;
    while (now_s() - t0 < seconds && violations < MAX_REPORTS) {
        /* Random single checks over both universes. */
        for (int n = 0; n < 2000; n++) {
            uint64_t r = rnd();
            const char *acct = (r & 3) == 0 ? sacct[(r >> 8) % (uint64_t)ns] : macct[(r >> 8) % (uint64_t)nm];
            sg_verdict v;
            int rc = sg_lists_check(l, BANK, acct, &v);
            verify(&b, acct, rc, &v);
            checks++;
            if (v.mask & b.mule) mule_hits++;
            if (v.mask & b.suspect) suspect_hits++;
        }
        /* The hot accounts the driver adds and deletes back to back: most checks here land
         * while the gateway is writing the very slot (a reader without a working seqlock
         * reads a deleted entry's old score with its cleared mask, or the reverse). */
        for (int n = 0; n < 20000; n++) {
            const char *acct = hacct[n & (N_HOT - 1)];
            sg_verdict v;
            int rc = sg_lists_check(l, BANK, acct, &v);
            verify(&b, acct, rc, &v);
            checks++;
            if (v.mask & b.mule) hot_hits++;
        }
        for (int n = 0; n < 300; n++) {
            sg_lists_check_keys(l, KB, hkeys, hv, hrc);
            for (int i = 0; i < KB; i++) {
                verify(&b, hacct[i % N_HOT], hrc[i], &hv[i]);
                if (hv[i].mask & b.mule) key_hot_hits++;
            }
            checks += KB;
        }
        /* One batch over the whole S universe: one table, so one load's pattern. Strings and
         * made keys in turn. */
        if (batches & 1) {
            sg_lists_check_keys(l, (size_t)ns, skeys, sv, src);
            key_batches++;
        } else {
            sg_lists_check_many(l, (size_t)ns, sbank, (const char *const *)sacct, sv, src);
        }
        checks += (unsigned long long)ns;
        batches++;
        uint32_t case_seen = 0;
        long on = 0;
        for (long i = 0; i < ns; i++) {
            verify(&b, sacct[i], src[i], &sv[i]);
            if (!(sv[i].mask & b.suspect)) continue;
            on++;
            suspect_hits++;
            if (sv[i].case_ref == 0) violation("%s on suspect without its load's case (%llu %llu)", sacct[i], 0, 0);
            if (case_seen == 0) case_seen = sv[i].case_ref;
            else if (sv[i].case_ref != case_seen)
                violation("%s: case ref %llu, others in the same batch %llu: mixed loads", sacct[i], sv[i].case_ref,
                          case_seen);
        }
        if (on == 0) {
            empty_batches++;
        } else {
            /* Which k gives exactly this set? */
            int match = -1;
            for (int k = 0; k < 3 && match < 0; k++) {
                bool all = true;
                for (long i = 0; i < ns && all; i++) {
                    bool want = (i + k) % 3 != 0, got = (sv[i].mask & b.suspect) != 0;
                    if (want != got) all = false;
                }
                if (all) match = k;
            }
            if (match < 0) violation("%s: %llu suspect hits in one batch match no single load (of %llu)", "S*",
                                     (unsigned long long)on, (unsigned long long)ns);
            else patterns[match]++;
        }
        uint64_t g = sg_lists_generation(l);
        if (g != last_gen) {
            if (g < last_gen) violation("%s generation went back %llu -> %llu", "-", last_gen, g);
            last_gen = g;
            generations++;
        }
        /* Now and then a fresh handle: the name must always be there. */
        if (now_s() > next_reopen) {
            next_reopen = now_s() + 0.5;
            sg_lists *l2 = sg_lists_open(shm);
            if (!l2) {
                violation("%s: re-open failed errno %llu (%llu)", shm, (unsigned long long)errno, 0);
            } else {
                bits b2;
                if (resolve(l2, &b2) != 0 || b2.mule != b.mule || b2.suspect != b.suspect)
                    violation("%s: list bits changed (%llx %llx)", shm, b2.mule, b2.suspect);
                if (sg_lists_generation(l2) < last_gen)
                    violation("%s: a fresh handle has an older generation %llu < %llu", shm, sg_lists_generation(l2),
                              last_gen);
                sg_lists_close(l2);
                reopens++;
            }
        }
    }
    printf("hammer: checks=%llu batches=%llu key_batches=%llu mule_hits=%llu hot_hits=%llu key_hot_hits=%llu "
           "suspect_hits=%llu generations=%u reopens=%llu patterns=%llu/%llu/%llu empty_batches=%llu violations=%llu\n",
           checks, batches, key_batches, mule_hits, hot_hits, key_hot_hits, suspect_hits, generations, reopens,
           patterns[0], patterns[1], patterns[2], empty_batches, violations);
    fflush(stdout);
    sg_lists_close(l);
    for (long i = 0; i < nm; i++) free(macct[i]);
    for (long i = 0; i < ns; i++) free(sacct[i]);
    free(macct);
    free(sacct);
    free(sbank);
    free(sv);
    free(src);
    free(skeys);
    return violations == 0 && checks > 0 ? 0 : 1;
}
