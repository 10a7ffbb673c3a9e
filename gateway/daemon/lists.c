/*
 * lists: the gateway's side of the fraud lists (SPEC §3, §5; docs/lists.md). Owns the one
 * writable shared-memory table, applies journaled list records to it (the same function
 * live and at replay), keeps each account's "frozen" bit in step with the order table,
 * parses and journals LIST.LOAD in chunks, and answers CHECK with the reader's own lookup.
 *
 * Order of things for a live change: journal_append -> apply (queued: list_pending) -> the
 * batch durable -> published in the shared table (lists_on_durable) and the reply sent. The
 * table is what CHECK and in-process readers see, so they see only durable changes (SPEC §9);
 * writers judge a change (ADDED or UPDATED, ABSENT) against the table plus what is queued.
 * A bulk load is BEGIN, ROWS..., COMMIT; only COMMIT changes the table (built aside, published
 * by rename), so replay of a load cut by a crash changes nothing.
 */
#include <assert.h>
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "account.h"
#include "clock.h"
#include "csvload.h"
#include "gateway.h"
#include "mem.h"

#define PROTECTED_LIST "protected"

static int64_t now_s(const gateway *gw) { return gw->now_ms / 1000; }

int lists_bit(const gateway *gw, const char *name, size_t len) {
    const lists_state *ls = &gw->ls;
    for (uint32_t i = 0; i < ls->nlists; i++)
        if (strlen(ls->names[i]) == len && !memcmp(ls->names[i], name, len)) return (int)i;
    return -1;
}

const char *lists_name(const gateway *gw, unsigned bit) { return bit < gw->ls.nlists ? gw->ls.names[bit] : "?"; }

/* --- case references ------------------------------------------------------------------ */

static bool case_eq(const void *ctx, uint32_t val, const void *key) {
    const lists_state *ls = ctx;
    const rec_str *k = key;
    const char *s = ls->cases[val];
    return strlen(s) == k->len && !memcmp(s, k->p, k->len);
}

/* 0 for "no case", else a stable reference; -1 when the case table is full. */
static int64_t case_intern(lists_state *ls, rec_str c) {
    if (c.len == 0) return 0;
    uint64_t h = XXH3_64bits(c.p, c.len);
    htab_slot *s = htab_lookup(&ls->case_idx, h, &c, case_eq, ls);
    if (s->val) return s->val;
    if (ls->ncases + 1 >= LIST_CASES_MAX || c.len > CASE_LEN_MAX) return -1;
    uint32_t ref = ls->ncases + 1;
    char *copy = ls->case_arena + (size_t)ref * (CASE_LEN_MAX + 1);
    if (htab_fill(&ls->case_idx, s, h, ref) != 0) return -1;
    memcpy(copy, c.p, c.len);
    copy[c.len] = 0;
    ls->cases[ref] = copy;
    ls->ncases = ref;
    return ref;
}

const char *lists_case_str(const gateway *gw, uint32_t ref) {
    return ref && ref <= gw->ls.ncases ? gw->ls.cases[ref] : "";
}

/* --- setup ---------------------------------------------------------------------------- */

/* Tables a killed writer was building (<name>.build-<pid>-<gen>) stay in /dev/shm, each as
 * large as the table: remove those whose writer is gone. */
static void remove_stale_builds(gateway *gw) {
    char prefix[128];
    int n = snprintf(prefix, sizeof prefix, "%s.build-", gw->cfg.shm_name);
    DIR *d = opendir("/dev/shm");
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, prefix, (size_t)n) != 0) continue;
        long pid = strtol(de->d_name + n, NULL, 10);
        if (pid <= 0 || (kill((pid_t)pid, 0) == 0 || errno != ESRCH)) continue;
        char path[512];
        snprintf(path, sizeof path, "/dev/shm/%s", de->d_name);
        if (unlink(path) == 0) LOGW(gw, "lists: removed %s, left by a writer that died while building it", path);
    }
    closedir(d);
}

/* Every table the gateway builds, at start and for each bulk change: mode 0640, group
 * [gateway] shm_group, before readers can see it. 0 or -1 with err. */
static int create_table(gateway *gw, lists_table *t, uint64_t generation, char *err, size_t errcap) {
    const config *c = &gw->cfg;
    if (ltab_create(t, c->shm_name, c->list_capacity, (const char(*)[SGL_LIST_NAME_MAX])gw->ls.names, gw->ls.nlists,
                    generation, err, errcap) != 0)
        return -1;
    if (ltab_set_group(t, c->shm_gid, err, errcap) != 0) {
        ltab_close(t, true);
        return -1;
    }
    return 0;
}

int lists_init(gateway *gw, char *err, size_t errcap) {
    lists_state *ls = &gw->ls;
    memset(ls, 0, sizeof *ls);
    const config *c = &gw->cfg;
    bool have_protected = false;
    for (uint32_t i = 0; i < c->nlists; i++) {
        /* memcpy: snprintf between two parts of *gw trips -Wrestrict under ASan. */
        size_t n = strnlen(c->lists[i].name, SGL_LIST_NAME_MAX - 1);
        memcpy(ls->names[ls->nlists], c->lists[i].name, n);
        ls->names[ls->nlists][n] = 0;
        if (c->lists[i].auto_stop) ls->auto_stop_mask |= 1ULL << ls->nlists;
        if (!strcmp(c->lists[i].name, PROTECTED_LIST)) have_protected = true;
        ls->nlists++;
    }
    /* protected is special (SPEC §3): always there, whether declared or not. */
    if (!have_protected) {
        if (ls->nlists == SGL_LISTS_MAX) {
            snprintf(err, errcap, "at most %d lists including '%s'", SGL_LISTS_MAX - 1, PROTECTED_LIST);
            return -1;
        }
        snprintf(ls->names[ls->nlists++], SGL_LIST_NAME_MAX, "%s", PROTECTED_LIST);
    }
    ls->protected_mask = 1ULL << lists_bit(gw, PROTECTED_LIST, strlen(PROTECTED_LIST));
    ls->auto_stop_mask &= ~ls->protected_mask; /* a protected account is never auto-stopped */
    ls->cases = calloc(LIST_CASES_MAX, sizeof *ls->cases);
    ls->case_arena = mem_reserve((size_t)LIST_CASES_MAX * (CASE_LEN_MAX + 1));
    /* One more row than a load may hold: csv_stage_row refuses the load at that row. */
    ls->stage_cap = LIST_LOAD_ROWS_MAX + 1;
    ls->stage = mem_reserve((size_t)ls->stage_cap * sizeof *ls->stage);
    ls->ttl_max = c->list_capacity < LIST_TTL_MAX ? (uint32_t)c->list_capacity : LIST_TTL_MAX;
    ls->ttl_cap = 2 * ls->ttl_max; /* a power of two: list_capacity is one, and LIST_TTL_MAX */
    assert((ls->ttl_cap & (ls->ttl_cap - 1)) == 0);
    ls->ttl = mem_reserve((size_t)ls->ttl_cap * sizeof *ls->ttl);
    ls->ttl_spare = mem_reserve((size_t)ls->ttl_cap * sizeof *ls->ttl_spare);
    ls->pend = calloc(LIST_PENDING_MAX, sizeof *ls->pend);
    if (!ls->cases || !ls->case_arena || !ls->stage || !ls->ttl || !ls->ttl_spare || !ls->pend ||
        htab_init(&ls->case_idx, LIST_CASES_MAX) != 0) {
        snprintf(err, errcap, "out of memory for list case references, expiries and load rows");
        return -1;
    }
    remove_stale_builds(gw);
    /* Generations only grow, across restarts too, so a reader never mistakes a new table
     * for the one it had. */
    ls->generation = (uint64_t)clock_now_ms() << 8;
    return create_table(gw, &ls->t, ++ls->generation, err, errcap);
}

void lists_close(gateway *gw) {
    lists_state *ls = &gw->ls;
    /* The published table stays in /dev/shm: readers keep screening while we restart. */
    ltab_close(&ls->t, true);
    if (ls->stage) mem_release(ls->stage, (size_t)ls->stage_cap * sizeof *ls->stage);
    if (ls->case_arena) mem_release(ls->case_arena, (size_t)LIST_CASES_MAX * (CASE_LEN_MAX + 1));
    if (ls->ttl) mem_release(ls->ttl, (size_t)ls->ttl_cap * sizeof *ls->ttl);
    if (ls->ttl_spare) mem_release(ls->ttl_spare, (size_t)ls->ttl_cap * sizeof *ls->ttl_spare);
    free(ls->pend);
    free(ls->cases);
    htab_free(&ls->case_idx);
    memset(ls, 0, sizeof *ls);
}

/* --- the frozen bit --------------------------------------------------------------------- */

void lists_set_frozen(gateway *gw, const char *bank, const char *account, bool frozen) {
    sgl_key k;
    if (sgl_pack(bank, strlen(bank), account, strlen(account), &k) != 0) return;
    ltab_entry e = {0};
    bool had = ltab_get(&gw->ls.t, &k, &e);
    if (had && e.frozen == frozen) return;
    if (!had && !frozen) return;
    e.frozen = frozen;
    if (ltab_put(&gw->ls.t, &k, &e, gw->now_ms) != 0) {
        /* CHECK over RESP still says FROZEN (it asks the order table); in-process readers
         * would not: loud, because list_capacity is too small. */
        /* Once per burst of them, not per order: the metric counts every one. */
        if (gw->ls.frozen_dropped++ == gw->ls.frozen_dropped_logged)
            LOGW(gw, "list table full: frozen mark for %s/%s not published (raise list_capacity); "
                     "stopgate_list_frozen_dropped_total counts the others",
                 bank, account);
    }
}

void lists_sync_order(gateway *gw, uint32_t order_no) {
    const order *ord = orders_get(&gw->o, order_no);
    if (!ord) return;
    /* Readers of the table see only durable state, as CHECK does (durview.h). */
    order tmp;
    bool live = durview_live_on_account(&gw->dv, &gw->o, ord->bank, ord->account, gw->now_ms, &tmp) != NULL;
    lists_set_frozen(gw, ord->bank, ord->account, live);
}

/* --- per-list expiries ---------------------------------------------------------------------
 * The shared table holds one expiry per account, but an account may be on `mule` for an
 * hour and on `protected` for good. The gateway keeps the expiry of every (list, account)
 * membership that has one; an entry publishes 0 (never) when any of its lists is permanent,
 * else the latest of its expiries; the sweep ends only the memberships that expired. */

static uint64_t ttl_hash(const sgl_key *k, unsigned bit) { return XXH3_64bits_withSeed(k->w, sizeof k->w, bit + 1); }

static list_ttl *ttl_slot(const lists_state *ls, const sgl_key *k, unsigned bit, list_ttl **free_slot) {
    if (free_slot) *free_slot = NULL;
    if (!ls->ttl_cap) return NULL;
    uint64_t mask = ls->ttl_cap - 1;
    for (uint64_t i = ttl_hash(k, bit) & mask, n = 0; n < ls->ttl_cap; n++, i = (i + 1) & mask) {
        list_ttl *t = &ls->ttl[i];
        if (t->state == 0) {
            if (free_slot && !*free_slot) *free_slot = t;
            return NULL;
        }
        if (t->state == 2) {
            if (free_slot && !*free_slot) *free_slot = t;
            continue;
        }
        if (t->bit == bit && !memcmp(t->key.w, k->w, sizeof k->w)) return t;
    }
    return NULL;
}

/* Rehash the live expiries into the spare table, dropping deleted slots; the old table is
 * handed back to the kernel (zero pages again) and becomes the spare. Runs when deleted slots
 * fill the table: live ones are at most half of it, so at least a quarter of it is inserted
 * between two compactions. */
static void ttl_compact(lists_state *ls) {
    list_ttl *old = ls->ttl;
    uint32_t live = ls->ttl_live;
    ls->ttl = ls->ttl_spare;
    ls->ttl_used = 0;
    for (uint32_t i = 0; i < ls->ttl_cap; i++) {
        if (old[i].state != 1) continue;
        list_ttl *fs;
        list_ttl *dup = ttl_slot(ls, &old[i].key, old[i].bit, &fs);
        assert(!dup && fs && fs->state == 0); /* each membership once, and room for all */
        (void)dup;
        *fs = old[i];
        ls->ttl_used++;
    }
    assert(ls->ttl_used == live && live <= ls->ttl_max);
    (void)live;
    (void)madvise(old, (size_t)ls->ttl_cap * sizeof *old, MADV_DONTNEED); /* reads as zeros again */
    ls->ttl_spare = old;
}

/* Would remembering an expiry for this membership need an entry the table cannot give? */
static bool ttl_full(const lists_state *ls, const sgl_key *k, unsigned bit) {
    return ls->ttl_live >= ls->ttl_max && !ttl_slot(ls, k, bit, NULL);
}

/* Remember (expires_s > 0) or forget (0) the expiry of one membership. 0, or -ENOBUFS when
 * ttl_max memberships have one already (lists_change checks that before journaling). */
static int ttl_set(lists_state *ls, const sgl_key *k, unsigned bit, uint32_t expires_s) {
    assert(ls->ttl_live <= ls->ttl_used && ls->ttl_used <= ls->ttl_cap && ls->ttl_live <= ls->ttl_max);
    list_ttl *fs, *t = ttl_slot(ls, k, bit, &fs);
    if (t) {
        if (expires_s) t->expires_s = expires_s;
        else t->state = 2, ls->ttl_live--;
        return 0;
    }
    if (!expires_s) return 0;
    if (ls->ttl_live >= ls->ttl_max) return -ENOBUFS;
    if ((ls->ttl_used + 1) * 4 > ls->ttl_cap * 3) {
        ttl_compact(ls);
        ttl_slot(ls, k, bit, &fs);
    }
    assert(fs && fs->state != 1);
    if (fs->state == 0) ls->ttl_used++;
    *fs = (list_ttl){.key = *k, .bit = (uint8_t)bit, .state = 1, .expires_s = expires_s};
    ls->ttl_live++;
    return 0;
}

static void ttl_forget_bit(lists_state *ls, unsigned bit) {
    for (uint32_t i = 0; i < ls->ttl_cap; i++)
        if (ls->ttl[i].state == 1 && ls->ttl[i].bit == bit) ls->ttl[i].state = 2, ls->ttl_live--;
}

/* Drop the memberships whose expiry has passed, visiting at most budget slots. */
static void lists_sweep(gateway *gw, uint32_t budget);

/* What the shared table shows as the expiry of an entry on `mask`. */
static uint32_t entry_expiry(void *ctx, const sgl_key *k, uint64_t mask) {
    const lists_state *ls = ctx;
    uint32_t latest = 0;
    for (uint64_t m = mask; m; m &= m - 1) {
        const list_ttl *t = ttl_slot(ls, k, (unsigned)__builtin_ctzll(m), NULL);
        if (!t) return 0; /* a permanent membership: the entry never expires */
        if (t->expires_s > latest) latest = t->expires_s;
    }
    return latest;
}

/* --- staged rows (a load between BEGIN and COMMIT) -------------------------------------- */

static int stage_push(lists_state *ls, const sgl_key *k, uint8_t score, uint32_t case_ref) {
    assert(ls->nstage <= ls->stage_cap);
    if (ls->nstage == ls->stage_cap) return -ENOBUFS;
    ls->stage[ls->nstage++] = (list_staged){.key = *k, .score = score, .case_ref = case_ref};
    return 0;
}

static void stage_reset(lists_state *ls) {
    ls->nstage = 0;
    ls->stage_load_id = 0;
    ls->stage_bit = -1;
}

/* Build a new table aside from the current one, minus clear_bit (-1: none), plus the staged
 * rows on clear_bit; make it current (published when the current one is). */
static int rebuild(gateway *gw, int bit, bool with_stage, char *err, size_t errcap);

/* Put the staged rows on list `bit` of table t (after the bit was cleared). */
static int put_stage(gateway *gw, lists_table *t, int bit) {
    lists_state *ls = &gw->ls;
    for (uint32_t i = 0; i < ls->nstage; i++) {
        const list_staged *r = &ls->stage[i];
        ltab_entry e = {0};
        ltab_get(t, &r->key, &e);
        e.score = e.mask && e.score > r->score ? e.score : r->score; /* the highest while listed */
        e.mask |= 1ULL << bit;
        if (r->case_ref) e.case_ref = r->case_ref;
        e.expires_s = entry_expiry(ls, &r->key, e.mask); /* loaded rows are permanent: 0 */
        if (ltab_put(t, &r->key, &e, gw->now_ms) != 0) return -ENOSPC;
    }
    return 0;
}

/* Build a new table aside from the current one, minus list `bit` (-1: none; the copy also
 * drops deleted slots and expired entries), plus the staged rows on `bit` when with_stage;
 * make it current (published when the current one is). */
static int rebuild(gateway *gw, int bit, bool with_stage, char *err, size_t errcap) {
    lists_state *ls = &gw->ls;
    if (with_stage) ttl_forget_bit(ls, (unsigned)bit); /* the list becomes exactly the rows */
    if (!ls->t.published && with_stage) {
        /* Replay: nobody reads this table yet, so change it in place; building a copy per
         * journaled load made replaying a few big loads take seconds. Compact first when
         * deleted slots stand in the way. */
        ltab_clear_bit(&ls->t, 1ULL << bit, gw->now_ms, entry_expiry, ls);
        if (!ltab_room(&ls->t, ls->nstage) && rebuild(gw, -1, false, err, errcap) != 0) return -1;
        if (put_stage(gw, &ls->t, bit) != 0) {
            snprintf(err, errcap, "list table full (%llu slots; raise list_capacity)",
                     (unsigned long long)(ls->t.mask + 1));
            return -1;
        }
        return 0;
    }
    lists_table nt;
    if (create_table(gw, &nt, ls->generation + 1, err, errcap) != 0) return -1;
    int rc = ltab_copy(&nt, &ls->t, bit >= 0 ? 1ULL << bit : 0, now_s(gw), gw->now_ms, entry_expiry, ls);
    if (rc == 0 && with_stage) rc = put_stage(gw, &nt, bit);
    if (rc != 0) {
        snprintf(err, errcap, "list table full (%llu slots; raise list_capacity)",
                 (unsigned long long)(nt.mask + 1));
        ltab_close(&nt, true);
        return -1;
    }
    if (ls->t.published) {
        if (ltab_publish(&nt, &ls->t, err, errcap) != 0) {
            ltab_close(&nt, true);
            return -1;
        }
    } else {
        ltab_close(&ls->t, true);
    }
    ls->t = nt;
    ls->generation++;
    return 0;
}

/* --- applying records (live and replay) -------------------------------------------------- */

/* Change k's membership of list p->bit in the table (what readers see). */
static int apply_change(gateway *gw, const list_pending *p, char *err, size_t errcap) {
    lists_state *ls = &gw->ls;
    unsigned bit = p->bit;
    ltab_entry e = {0};
    ltab_get(&ls->t, &p->key, &e);
    if (p->type == REC_LIST_ADD) {
        /* Full: expiries that passed live were freed by the sweep, which journals nothing
         * and does not run during replay; free them here too, then it fits as it did. */
        if (ttl_full(ls, &p->key, bit) && p->expires_s) lists_sweep(gw, ls->ttl_cap);
        if (ttl_set(ls, &p->key, bit, p->expires_s) != 0) {
            snprintf(err, errcap, "list expiry table full (%u memberships with a TTL; raise list_capacity)",
                     ls->ttl_max);
            return -1;
        }
        /* The highest score given while listed (include/stopgate/lists.h). */
        e.score = e.mask && e.score > p->score ? e.score : p->score;
        e.mask |= 1ULL << bit;
        if (p->case_ref) e.case_ref = p->case_ref;
    } else {
        ttl_set(ls, &p->key, bit, 0);
        e.mask &= ~(1ULL << bit);
        if (!e.mask) e.score = 0, e.case_ref = 0;
    }
    e.expires_s = e.mask ? entry_expiry(ls, &p->key, e.mask) : 0;
    if (ltab_put(&ls->t, &p->key, &e, gw->now_ms) != 0) {
        /* Deleted slots count against the load factor: compact, then try once more. */
        /* The rebuild also drops expired entries (the sweep does not run during replay). */
        if (rebuild(gw, -1, false, err, errcap) != 0 || ltab_put(&ls->t, &p->key, &e, gw->now_ms) != 0) {
            snprintf(err, errcap, "list table full (raise list_capacity)");
            return -1;
        }
    }
#ifndef NDEBUG
    /* Pair assertion: readers of the shared table see exactly the entry written. */
    ltab_entry back = {0};
    bool held = ltab_get(&ls->t, &p->key, &back);
    assert(held == (e.mask || e.frozen));
    assert(!held || (back.mask == e.mask && back.score == e.score && back.frozen == e.frozen &&
                     back.expires_s == e.expires_s && back.case_ref == e.case_ref));
    assert(((back.mask >> bit) & 1) == (p->type == REC_LIST_ADD));
    /* The membership has an expiry entry exactly when this change gave it a TTL. */
    const list_ttl *tt = ttl_slot(ls, &p->key, bit, NULL);
    assert((tt != NULL) == (p->type == REC_LIST_ADD && p->expires_s > 0));
    assert(!tt || tt->expires_s == p->expires_s);
    assert(ls->ttl_live <= ls->ttl_max && atomic_load(&ls->t.h->count) <= ls->t.mask + 1);
#endif
    return 0;
}

/* A live change just journaled (at the journal's last lsn): published when durable. Its
 * writer checked lists_pending_room(). */
static int pending_push(gateway *gw, list_pending *p, char *err, size_t errcap) {
    lists_state *ls = &gw->ls;
    if (ls->npend == LIST_PENDING_MAX) { /* cannot happen: checked before journaling */
        snprintf(err, errcap, "%d list changes wait for the disk (LIST_PENDING_MAX)", LIST_PENDING_MAX);
        return -1;
    }
    p->lsn = journal_last_lsn(&gw->j);
    assert(ls->npend == 0 || ls->pend[(ls->pend_head + ls->npend - 1) % LIST_PENDING_MAX].lsn < p->lsn);
    ls->pend[(ls->pend_head + ls->npend++) % LIST_PENDING_MAX] = *p;
    return 0;
}

void lists_on_durable(gateway *gw, uint64_t durable_lsn) {
    lists_state *ls = &gw->ls;
    while (ls->npend && ls->pend[ls->pend_head].lsn <= durable_lsn) {
        list_pending p = ls->pend[ls->pend_head];
        ls->pend_head = (ls->pend_head + 1) % LIST_PENDING_MAX;
        ls->npend--;
        char err[256];
        int rc;
        if (p.type == REC_LIST_LOAD_COMMIT) {
            assert(ls->commit_pending && ls->stage_bit == p.bit);
            rc = rebuild(gw, p.bit, true, err, sizeof err);
            stage_reset(ls);
            ls->commit_pending = false;
        } else {
            rc = apply_change(gw, &p, err, sizeof err);
        }
        if (rc != 0) {
            /* Checked before journaling (room, load_fits): memory and disk disagree. */
            LOGE(gw, "durable list record %llu cannot be published: %s", (unsigned long long)p.lsn, err);
            abort();
        }
    }
}

/* Is k on list bit as journaled: the newest change queued for it, else the table. */
static bool journaled_member(const lists_state *ls, const sgl_key *k, unsigned bit) {
    for (uint32_t i = ls->npend; i-- > 0;) {
        const list_pending *p = &ls->pend[(ls->pend_head + i) % LIST_PENDING_MAX];
        if (p->type != REC_LIST_LOAD_COMMIT && p->bit == bit && !memcmp(&p->key, k, sizeof *k))
            return p->type == REC_LIST_ADD;
    }
    ltab_entry e = {0};
    return ltab_get(&ls->t, k, &e) && ((e.mask >> bit) & 1);
}

/* Replay: the rows of a LOAD_ROWS record staged for its COMMIT. 0, or -1 with err. */
static int stage_rows(lists_state *ls, const order_rec *r, char *err, size_t errcap) {
    size_t off = 0;
    list_row row;
    int n;
    while ((n = record_row_next(r->rows, &off, &row)) == 1) {
        sgl_key k;
        int64_t ref = case_intern(ls, row.case_id);
        if (sgl_pack(row.bank.p, row.bank.len, row.account.p, row.account.len, &k) != 0 || ref < 0 ||
            stage_push(ls, &k, row.score, (uint32_t)ref) != 0) {
            snprintf(err, errcap, "list load row cannot be staged");
            return -1;
        }
    }
    if (n < 0) {
        snprintf(err, errcap, "malformed rows in list load record");
        return -1;
    }
    return 0;
}

int lists_apply(gateway *gw, const order_rec *r, bool live, char *err, size_t errcap) {
    lists_state *ls = &gw->ls;
    assert(r->type >= REC_LIST_ADD && r->type <= REC_LIST_LOAD_COMMIT);
    int bit = lists_bit(gw, r->list.p ? r->list.p : "", r->list.len);
    assert(bit < (int)ls->nlists);
    if (bit < 0) {
        /* The list was removed from the config since: its records no longer mean anything. */
        if (!live) ls->replay_skipped++;
        return 0;
    }
    switch (r->type) {
    case REC_LIST_ADD:
    case REC_LIST_DEL: {
        list_pending p = {.type = r->type, .bit = (uint8_t)bit, .score = r->score};
        if (sgl_pack(r->bank.p, r->bank.len, r->account.p, r->account.len, &p.key) != 0) {
            snprintf(err, errcap, "malformed account in list record");
            return -1;
        }
        if (r->type == REC_LIST_ADD) {
            int64_t ref = case_intern(ls, r->case_id);
            if (ref < 0) {
                snprintf(err, errcap, "list case table full (%d cases)", LIST_CASES_MAX);
                return -1;
            }
            p.case_ref = (uint32_t)ref;
            p.expires_s = r->expires_at_ms > 0 ? (uint32_t)((r->expires_at_ms + 999) / 1000) : 0;
        }
        if (live) return pending_push(gw, &p, err, errcap);
        return apply_change(gw, &p, err, errcap);
    }
    case REC_LIST_LOAD_BEGIN:
        if (live) return 0; /* the live path staged the rows while parsing */
        stage_reset(ls);
        ls->stage_load_id = r->load_id;
        ls->stage_bit = bit;
        return 0;
    case REC_LIST_LOAD_ROWS:
        if (live || ls->stage_load_id != r->load_id) return 0;
        return stage_rows(ls, r, err, errcap);
    case REC_LIST_LOAD_COMMIT: {
        if (ls->stage_load_id != r->load_id || ls->stage_bit != bit || ls->nstage != r->row_count) {
            snprintf(err, errcap, "list load %llu commit without its rows (%u staged, %u committed)",
                     (unsigned long long)r->load_id, ls->nstage, r->row_count);
            return -1;
        }
        if (live) { /* the rows stay staged until the COMMIT is durable */
            list_pending p = {.type = REC_LIST_LOAD_COMMIT, .bit = (uint8_t)bit};
            if (pending_push(gw, &p, err, errcap) != 0) return -1;
            ls->commit_pending = true;
            return 0;
        }
        int rc = rebuild(gw, bit, true, err, errcap);
        /* Every committed row is on the list now (the table holds at least as many). */
        assert(rc != 0 || ls->t.h->list_count[bit] >= (r->row_count ? 1u : 0u));
        stage_reset(ls);
        return rc;
    }
    default: snprintf(err, errcap, "not a list record (%u)", r->type); return -1;
    }
}

int lists_start(gateway *gw, char *err, size_t errcap) {
    lists_state *ls = &gw->ls;
    stage_reset(ls); /* a load the crash cut before its COMMIT: dropped, never acknowledged */
    for (uint32_t no = 1; no <= gw->o.n; no++) {
        const order *ord = &gw->o.v[no];
        if (order_is_live(ord, gw->now_ms) && orders_live_on_account(&gw->o, ord->bank, ord->account, gw->now_ms) == ord)
            lists_set_frozen(gw, ord->bank, ord->account, true);
    }
    if (ls->replay_skipped)
        LOGW(gw, "lists: %llu journaled list records name lists no longer declared; skipped",
             (unsigned long long)ls->replay_skipped);
    lists_sweep(gw, ls->ttl_cap); /* memberships that expired while we were down */
    if (ltab_needs_compaction(&ls->t) && rebuild(gw, -1, false, err, errcap) != 0) return -1;
    if (ltab_publish(&ls->t, NULL, err, errcap) != 0) return -1;
    LOGI(gw, "lists: /dev/shm/%s published: %llu entries in %llu slots, generation %llu", gw->cfg.shm_name,
         (unsigned long long)atomic_load(&ls->t.h->count), (unsigned long long)(ls->t.mask + 1),
         (unsigned long long)ls->generation);
    return 0;
}

/* --- lookups ---------------------------------------------------------------------------- */

bool lists_lookup(gateway *gw, const char *bank, const char *account, sg_verdict *v) {
    memset(v, 0, sizeof *v);
    sgl_key k;
    if (sgl_pack(bank, strlen(bank), account, strlen(account), &k) != 0) return false;
    sgl_map m = ltab_map(&gw->ls.t);
    return sgl_lookup(&m, &k, sgl_hash(&k), now_s(gw), v) == 1;
}

uint64_t lists_lookup_read(gateway *gw, const char *bank, const char *account, bool live, sg_verdict *v) {
    lists_lookup(gw, bank, account, v);
    const lists_state *ls = &gw->ls;
    sgl_key k;
    if (!live || !ls->npend || sgl_pack(bank, strlen(bank), account, strlen(account), &k) != 0) return 0;
    uint64_t lsn = 0;
    for (uint32_t i = 0; i < ls->npend; i++) { /* oldest first, as lists_on_durable will */
        const list_pending *p = &ls->pend[(ls->pend_head + i) % LIST_PENDING_MAX];
        if (p->type == REC_LIST_LOAD_COMMIT || memcmp(&p->key, &k, sizeof k)) continue;
        if (p->type == REC_LIST_ADD) {
            v->score = v->mask && v->score > p->score ? v->score : p->score;
            v->mask |= 1ULL << p->bit;
            if (p->case_ref) v->case_ref = p->case_ref;
        } else {
            v->mask &= ~(1ULL << p->bit);
            if (!v->mask) v->score = 0, v->case_ref = 0;
        }
        lsn = p->lsn;
    }
    return lsn;
}

unsigned lists_lines(const gateway *gw, const char *bank, const char *account, const void *out[2]) {
    const lists_table *t = &gw->ls.t;
    sgl_key k;
    if (!t->base || sgl_pack(bank, strlen(bank), account, strlen(account), &k) != 0) return 0;
    uint64_t i = sgl_hash(&k) & t->mask;
    out[0] = (const void *)&t->tags[i];
    out[1] = &t->slots[i]; /* where a listed key mostly is: its tag is then the first */
    return 2;
}

static void lists_sweep(gateway *gw, uint32_t budget) {
    lists_state *ls = &gw->ls;
    uint32_t ns = (uint32_t)now_s(gw);
    if (!ls->ttl_live) return; /* the table is reserved whole: do not walk it for nothing */
    for (uint32_t n = 0; n < budget && n < ls->ttl_cap; n++) {
        list_ttl *t = &ls->ttl[ls->sweep_pos++ & (ls->ttl_cap - 1)];
        if (t->state != 1 || t->expires_s > ns) continue;
        sgl_key k = t->key;
        unsigned bit = t->bit;
        t->state = 2;
        ls->ttl_live--;
        ltab_entry e;
        if (!ltab_get(&ls->t, &k, &e)) continue;
        e.mask &= ~(1ULL << bit);
        if (!e.mask) e.score = 0, e.case_ref = 0;
        e.expires_s = e.mask ? entry_expiry(ls, &k, e.mask) : 0;
        int rc = ltab_put(&ls->t, &k, &e, gw->now_ms);
        assert(rc == 0); /* the entry exists: an update needs no new slot */
        (void)rc;
        ls->expired++;
    }
}

void lists_tick(gateway *gw) {
    lists_state *ls = &gw->ls;
    if (gw->now_ms >= ls->frozen_log_next_ms) { /* at most one such warning a minute */
        ls->frozen_dropped_logged = ls->frozen_dropped;
        ls->frozen_log_next_ms = gw->now_ms + 60000;
    }
    /* The sweep and compaction check run every LIST_TICK_MS, not on every loop pass: a
     * burst's loop turns must not each pay for a slice of the table. */
    if (gw->now_ms < ls->next_tick_ms) return;
    ls->next_tick_ms = gw->now_ms + LIST_TICK_MS;
    if (!ls->t.published) return;
    /* Expired memberships already read as unlisted where they were an entry's last (readers
     * compare its expiry); this sweep ends them one by one, a slice per tick. */
    lists_sweep(gw, LIST_SWEEP_SLOTS);
    if (ltab_needs_compaction(&ls->t) && !ls->live.active) {
        char err[256];
        if (rebuild(gw, -1, false, err, sizeof err) != 0) LOGW(gw, "lists: compaction failed: %s", err);
    }
}

/* --- live changes ------------------------------------------------------------------------- */

static bool room(gateway *gw) { return journal_has_room(&gw->j, JOURNAL_RECORD_BYTES_MAX); }

/* The engine's full-disk refusal, as a list answer. */
static bool journal_refuses(gateway *gw, list_answer *a) {
    engine_answer ea = {0};
    if (!engine_journal_failing(gw, &ea)) return false;
    a->code = ea.code;
    snprintf(a->why, sizeof a->why, "%s", ea.why);
    return true;
}

int lists_change(gateway *gw, uint16_t type, int bit, const char *bank, const char *account, uint8_t score,
                 int64_t ttl_s, rec_str case_id, const char *agent, list_answer *a) {
    assert((type == REC_LIST_ADD || type == REC_LIST_DEL) && bit >= 0 && (uint32_t)bit < gw->ls.nlists);
    assert(score <= 100 && ttl_s >= 0);
    memset(a, 0, sizeof *a);
    if (journal_refuses(gw, a)) return 0;
    /* A load's COMMIT not yet durable replaces a whole list: wait for it (one fsync). */
    if (!room(gw) || gw->ls.npend == LIST_PENDING_MAX || gw->ls.commit_pending) return -EAGAIN;
    sgl_key k;
    if (sgl_pack(bank, strlen(bank), account, strlen(account), &k) != 0) {
        a->code = "ERR BADACCOUNT";
        snprintf(a->why, sizeof a->why, "malformed account");
        return 0;
    }
    ltab_entry cur;
    /* An account already in the table (on another list) takes no new slot. */
    bool had = journaled_member(&gw->ls, &k, (unsigned)bit);
    bool slotted = had || ltab_get(&gw->ls.t, &k, &cur);
    uint32_t fresh = 1 + gw->ls.npend; /* at most: every queued change may add an entry */
    if (type == REC_LIST_ADD && !slotted && !ltab_room(&gw->ls.t, fresh) && atomic_load(&gw->ls.t.h->tombstones)) {
        /* Deleted slots count against the load factor until a rebuild drops them. */
        char err[256];
        if (rebuild(gw, -1, false, err, sizeof err) != 0) LOGW(gw, "lists: compaction failed: %s", err);
    }
    if (type == REC_LIST_ADD && !slotted && !ltab_room(&gw->ls.t, fresh)) {
        a->code = "ERR TOOBIG";
        snprintf(a->why, sizeof a->why, "list table full (%llu slots; raise list_capacity)",
                 (unsigned long long)(gw->ls.t.mask + 1));
        return 0;
    }
    if (type == REC_LIST_ADD && ttl_s > 0 && ttl_full(&gw->ls, &k, (unsigned)bit))
        lists_sweep(gw, gw->ls.ttl_cap); /* expired ones the sweep has not reached yet */
    if (type == REC_LIST_ADD && ttl_s > 0 && ttl_full(&gw->ls, &k, (unsigned)bit)) {
        /* Refused before journaling: replay then never meets a full expiry table. */
        a->code = "ERR BUSY";
        snprintf(a->why, sizeof a->why,
                 "list expiry table full (%u memberships with a TTL, one per list_capacity slot); let some expire, "
                 "LIST.DEL some, add without TTL, or raise list_capacity",
                 gw->ls.ttl_max);
        return 0;
    }
    if (type == REC_LIST_DEL && !had) {
        a->status = "ABSENT";
        return 0; /* nothing to change, nothing to journal */
    }
    order_rec r = {.type = type,
                   .list = {gw->ls.names[bit], (uint32_t)strlen(gw->ls.names[bit])},
                   .bank = {bank, (uint32_t)strlen(bank)},
                   .account = {account, (uint32_t)strlen(account)},
                   .score = score,
                   .case_id = case_id,
                   .expires_at_ms = ttl_s > 0 ? gw->now_ms + ttl_s * 1000 : 0,
                   .agent = {agent, (uint32_t)strlen(agent)},
                   .ts_ms = gw->now_ms};
    int64_t lsn = commit_record(&gw->commit, &r);
    if (lsn < 0) {
        if (lsn == -EAGAIN) return -EAGAIN;
        a->code = "ERR BUSY";
        snprintf(a->why, sizeof a->why, "journal: %s", strerror((int)-lsn));
        return 0;
    }
    a->status = type == REC_LIST_DEL ? "DELETED" : had ? "UPDATED" : "ADDED";
    assert(journaled_member(&gw->ls, &k, (unsigned)bit) == (type == REC_LIST_ADD)); /* queued as answered */
    a->lsn = (uint64_t)lsn;
    return 0;
}

/* --- LIST.LOAD ---------------------------------------------------------------------------- */

/* One valid CSV row (csvload.c did the parsing and validation) into the stage. */
typedef struct csv_stage_ctx {
    lists_state *ls;
    list_answer *a;
} csv_stage_ctx;

static int csv_stage_row(void *ctx, const csv_row *row) {
    csv_stage_ctx *x = ctx;
    lists_state *ls = x->ls;
    sgl_key k;
    sgl_pack(row->bank, strlen(row->bank), row->account, strlen(row->account), &k);
    int64_t ref = row->case_id ? case_intern(ls, (rec_str){row->case_id, row->case_len}) : 0;
    if (ref < 0 || stage_push(ls, &k, row->score, (uint32_t)ref) != 0) {
        x->a->code = "ERR TOOBIG";
        snprintf(x->a->why, sizeof x->a->why, "line %u: out of memory for the load", row->line);
        return 1;
    }
    if (ls->nstage > LIST_LOAD_ROWS_MAX) {
        x->a->code = "ERR TOOBIG";
        snprintf(x->a->why, sizeof x->a->why, "more than %d rows", LIST_LOAD_ROWS_MAX);
        return 1;
    }
    return 0;
}

_Static_assert(LIST_CSV_LINE_MAX == CSV_LINE_MAX, "LIST.LOAD line limit is csvload's");

/* Parse the whole CSV into the stage; nothing else changes. 0, or -1 with the refusal. */
static int parse_csv(gateway *gw, const char *data, size_t size, list_answer *a) {
    lists_state *ls = &gw->ls;
    csv_stage_ctx x = {ls, a};
    int rc = csv_parse(data, size, csv_stage_row, &x, a->why, sizeof a->why, NULL);
    if (rc < 0) a->code = "ERR SYNTAX";
    if (rc != 0) return -1;
    if (ls->nstage == 0) {
        a->code = "ERR SYNTAX";
        snprintf(a->why, sizeof a->why, "empty file: no rows (remove entries with LIST.DEL)");
        return -1;
    }
    return 0;
}

static int read_source(gateway *gw, const char *path, const char *inline_csv, size_t inline_len, list_answer *a) {
    if (inline_csv) return parse_csv(gw, inline_csv, inline_len, a);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        a->code = "ERR NOTFOUND";
        snprintf(a->why, sizeof a->why, "cannot read %s: %s", path, fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0) close(fd);
        return -1;
    }
    if (st.st_size == 0) {
        close(fd);
        a->code = "ERR SYNTAX";
        snprintf(a->why, sizeof a->why, "empty file: no rows (remove entries with LIST.DEL)");
        return -1;
    }
    /* Mapped, not read: the loop parses straight from the page cache. */
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        a->code = "ERR NOTFOUND";
        snprintf(a->why, sizeof a->why, "cannot map %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = parse_csv(gw, p, (size_t)st.st_size, a);
    munmap(p, (size_t)st.st_size);
    return rc;
}

/* Entries after replacing list `bit` by the staged rows: those kept for another list or a
 * frozen mark, plus one per staged account not among them (duplicates counted twice: the
 * estimate errs on the side of refusing). Fits the load factor? */
static bool load_fits(gateway *gw, int bit) {
    lists_state *ls = &gw->ls;
    uint64_t other = ~(1ULL << bit), kept = 0, fresh = 0;
    int64_t ns = now_s(gw);
    for (uint64_t i = 0; i <= ls->t.mask; i++) {
        const sgl_slot *s = &ls->t.slots[i];
        uint64_t w0 = atomic_load_explicit(&s->w0, memory_order_relaxed);
        if (SGL_W0_STATE(w0) != SGL_STATE_USED) continue;
        uint32_t exp = (uint32_t)atomic_load_explicit(&s->ext, memory_order_relaxed);
        bool listed = (atomic_load_explicit(&s->mask, memory_order_relaxed) & other) && !(exp && exp <= ns);
        kept += listed || SGL_W0_FROZEN(w0);
    }
    for (uint32_t i = 0; i < ls->nstage; i++) {
        ltab_entry e;
        bool stays = ltab_get(&ls->t, &ls->stage[i].key, &e) && ((e.mask & other) || e.frozen);
        fresh += !stays;
    }
    fresh += ls->npend; /* changes queued before the COMMIT are published before it */
    return kept + fresh <= (ls->t.mask + 1) * LISTS_LOAD_FACTOR_PCT / 100;
}

void lists_client_gone(gateway *gw, const client *c) {
    lists_state *ls = &gw->ls;
    if (ls->live.active && ls->live.client_idx == c->idx && ls->live.client_gen == c->gen) {
        /* BEGIN and some ROWS may be journaled; without a COMMIT replay ignores them. */
        LOGW(gw, "LIST.LOAD of list %s abandoned: the client went away after %u of %u rows", ls->names[ls->stage_bit],
             ls->live.next_row, ls->nstage);
        ls->live.active = false;
        stage_reset(ls);
    }
}

/* A new load: the rows read and staged, room checked, the load made c's. 1 when staged (the
 * caller journals it), 0 when answered in a (nothing staged), -EAGAIN (the previous load's
 * rows are still staged). */
static int load_stage(gateway *gw, const client *c, int bit, const char *path, const char *inline_csv,
                      size_t inline_len, list_answer *a) {
    lists_state *ls = &gw->ls;
    if (journal_refuses(gw, a)) return 0;
    if (ls->commit_pending) return -EAGAIN; /* the previous load's rows are still staged */
    stage_reset(ls);
    int64_t t0 = clock_mono_ns();
    if (read_source(gw, path, inline_csv, inline_len, a) != 0) {
        stage_reset(ls);
        return 0;
    }
    /* Room, exactly as the COMMIT's build will need it (a COMMIT that did not fit would
     * leave a journaled load the gateway cannot apply). */
    if (!load_fits(gw, bit)) {
        a->code = "ERR TOOBIG";
        snprintf(a->why, sizeof a->why, "%u rows do not fit the list table (%llu slots; raise list_capacity)",
                 ls->nstage, (unsigned long long)(ls->t.mask + 1));
        stage_reset(ls);
        return 0;
    }
    ls->live = (list_live_load){.active = true, .client_idx = c->idx, .client_gen = c->gen, .t0_ns = t0};
    ls->stage_bit = bit;
    ls->stage_load_id = ++ls->generation; /* unique, and never reused after a restart */
    return 1;
}

/* Staged rows from first encoded into blob (cap bytes, *len of them used) until it is full:
 * the row after the last one taken. */
static uint32_t load_rows_chunk(gateway *gw, uint32_t first, uint8_t *blob, size_t cap, size_t *len) {
    lists_state *ls = &gw->ls;
    uint32_t i = first;
    for (; i < ls->nstage; i++) {
        char bank[SGL_BANK_SYMS + 1], acct[SGL_ACCOUNT_SYMS + 1];
        sgl_unpack(&ls->stage[i].key, bank, acct);
        const char *cs = lists_case_str(gw, ls->stage[i].case_ref);
        list_row row = {.bank = {bank, (uint32_t)strlen(bank)},
                        .account = {acct, (uint32_t)strlen(acct)},
                        .case_id = {cs, (uint32_t)strlen(cs)},
                        .score = ls->stage[i].score};
        if (record_row_put(blob, cap, len, &row) != 0) break;
    }
    return i;
}

int lists_load(gateway *gw, const client *c, int bit, const char *path, const char *inline_csv, size_t inline_len,
               const char *agent, list_answer *a) {
    lists_state *ls = &gw->ls;
    memset(a, 0, sizeof *a);
    bool mine = ls->live.active && ls->live.client_idx == c->idx && ls->live.client_gen == c->gen;
    if (ls->live.active && !mine) {
        a->code = "ERR BUSY";
        snprintf(a->why, sizeof a->why, "another LIST.LOAD is in progress");
        return 0;
    }
    if (mine && journal_refuses(gw, a)) {
        /* Re-run when the journal started failing mid-load: answer now (SPEC §9, bounded
         * time) instead of waiting for space. Without its COMMIT the load changes nothing. */
        ls->live.active = false;
        stage_reset(ls);
        return 0;
    }
    if (!mine) {
        int rc = load_stage(gw, c, bit, path, inline_csv, inline_len, a);
        if (rc <= 0) return rc;
    }
    order_rec r = {.list = {ls->names[bit], (uint32_t)strlen(ls->names[bit])},
                   .load_id = ls->stage_load_id,
                   .agent = {agent, (uint32_t)strlen(agent)},
                   .ts_ms = gw->now_ms};
    /* Journal BEGIN, the rows in record-sized chunks, COMMIT: as many as the open batch
     * takes now; the rest after the next fsync (the client is re-dispatched). */
    if (!ls->live.begun) {
        if (!room(gw)) return -EAGAIN;
        r.type = REC_LIST_LOAD_BEGIN;
        r.row_count = ls->nstage;
        int64_t lsn = commit_record(&gw->commit, &r);
        if (lsn < 0) goto journal_failed;
        ls->live.begun = true;
    }
    uint8_t blob[JOURNAL_RECORD_BYTES_MAX - 256];
    while (ls->live.next_row < ls->nstage) {
        if (!room(gw)) return -EAGAIN;
        size_t len = 0;
        uint32_t first = ls->live.next_row, i = load_rows_chunk(gw, first, blob, sizeof blob, &len);
        assert(i > first);
        r.type = REC_LIST_LOAD_ROWS;
        r.rows = (rec_str){(const char *)blob, (uint32_t)len};
        r.row_count = i - first;
        int64_t lsn = commit_record(&gw->commit, &r);
        if (lsn < 0) goto journal_failed;
        ls->live.next_row = i;
    }
    if (!room(gw) || ls->npend == LIST_PENDING_MAX) return -EAGAIN;
    r.type = REC_LIST_LOAD_COMMIT;
    r.rows = (rec_str){0};
    r.row_count = ls->nstage;
    uint32_t rows = ls->nstage;
    int64_t lsn = commit_record(&gw->commit, &r); /* queues it: lists_on_durable builds and publishes the table */
    if (lsn < 0) goto journal_failed;
    ls->live.active = false;
    ls->loads++;
    a->status = "LOADED";
    a->lsn = (uint64_t)lsn;
    a->rows = rows;
    a->ms = (clock_mono_ns() - ls->live.t0_ns) / 1000000;
    return 0;
journal_failed:
    ls->live.active = false;
    stage_reset(ls);
    a->code = "ERR BUSY";
    snprintf(a->why, sizeof a->why, "journal refused the load; nothing changed");
    return 0;
}
