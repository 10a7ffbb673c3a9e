#include "admit.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static uint32_t slot_of(const admit *a, uint32_t addr) {
    return (uint32_t)(((uint64_t)addr * 0x9E3779B97F4A7C15ull) >> 32) & a->mask;
}

int admit_init(admit *a, uint32_t clients_max, admit_cfg cfg) {
    memset(a, 0, sizeof *a);
    uint64_t need = 2 * ((uint64_t)clients_max + AUTH_FAIL_ADDRS_MAX);
    uint64_t cap = 1024;
    while (cap < need) cap *= 2;
    a->v = calloc(cap, sizeof *a->v);
    if (!a->v) return -ENOMEM;
    a->mask = (uint32_t)(cap - 1);
    a->cfg = cfg;
    return 0;
}

void admit_free(admit *a) {
    free(a->v);
    a->v = NULL;
}

static admit_slot *find(const admit *a, uint32_t addr) {
    for (uint32_t i = slot_of(a, addr);; i = (i + 1) & a->mask) {
        admit_slot *s = &a->v[i];
        if (!s->used) return NULL;
        if (s->addr == addr) return s;
    }
}

const admit_slot *admit_find(const admit *a, uint32_t addr) {
    return find(a, addr);
}

static admit_slot *insert(admit *a, uint32_t addr) {
    /* At most clients_max + AUTH_FAIL_ADDRS_MAX slots are ever used: half the table. */
    assert(a->used <= a->mask / 2);
    uint32_t i = slot_of(a, addr);
    while (a->v[i].used) i = (i + 1) & a->mask;
    a->v[i] = (admit_slot){.addr = addr, .used = true};
    a->used++;
    return &a->v[i];
}

/* Backward-shift deletion: later entries of the probe run move up, so no tombstones build up. */
static void erase(admit *a, admit_slot *s) {
    uint32_t hole = (uint32_t)(s - a->v);
    a->v[hole].used = false;
    a->used--;
    for (uint32_t j = (hole + 1) & a->mask; a->v[j].used; j = (j + 1) & a->mask) {
        uint32_t home = slot_of(a, a->v[j].addr);
        /* Movable into the hole when its home is not cyclically in (hole, j]. */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays) continue;
        a->v[hole] = a->v[j];
        a->v[j].used = false;
        hole = j;
    }
}

/* Forget an expired window; erase the slot when nothing else keeps it. true when erased. */
static bool expire(admit *a, admit_slot *s, int64_t now_ms) {
    if (s->fails && now_ms >= s->window_end_ms) {
        s->fails = 0;
        if (s->conns == 0) {
            a->fail_only--;
            erase(a, s);
            return true;
        }
    }
    return false;
}

bool admit_conn_open(admit *a, uint32_t addr) {
    admit_slot *s = find(a, addr);
    if (s && a->cfg.conns_max && s->conns >= a->cfg.conns_max) return false;
    if (!s)
        s = insert(a, addr);
    else if (s->conns == 0)
        a->fail_only--;
    s->conns++;
    return true;
}

void admit_conn_close(admit *a, uint32_t addr) {
    admit_slot *s = find(a, addr);
    assert(s && s->conns > 0);
    if (!s || s->conns == 0) return;
    if (--s->conns > 0) return;
    if (s->fails)
        a->fail_only++;
    else
        erase(a, s);
}

bool admit_auth_limited(admit *a, uint32_t addr, int64_t now_ms) {
    if (a->cfg.fail_max == 0) return false;
    admit_slot *s = find(a, addr);
    if (!s || expire(a, s, now_ms)) return false;
    return s->fails >= a->cfg.fail_max;
}

void admit_auth_attempt(admit *a, uint32_t addr, int64_t now_ms) {
    if (a->cfg.fail_max == 0) return;
    admit_slot *s = find(a, addr);
    if (s && expire(a, s, now_ms)) s = NULL;
    if (!s) {
        if (a->fail_only >= AUTH_FAIL_ADDRS_MAX) {
            a->untracked++;
            return;
        }
        s = insert(a, addr);
        a->fail_only++;
    }
    if (s->fails == 0) s->window_end_ms = now_ms + a->cfg.fail_window_ms;
    s->fails++;
}

void admit_auth_succeeded(admit *a, uint32_t addr) {
    admit_slot *s = find(a, addr);
    if (!s || s->fails == 0) return; /* untracked, or its window ended meanwhile */
    if (--s->fails == 0 && s->conns == 0) {
        a->fail_only--;
        erase(a, s);
    }
}

void admit_sweep(admit *a, int64_t now_ms) {
    /* Only a slot holding nothing but a failure window is erased here (a slot with connections
     * has its ended window reset at its next lookup, expire()): with none, the pass over the
     * whole table (2 MiB at the default max_clients, every second) would change nothing. */
    if (a->fail_only == 0) return;
    for (uint32_t i = 0; i <= a->mask; i++) {
        /* erase() may shift a later entry into slot i: look at it again. */
        while (a->v[i].used && expire(a, &a->v[i], now_ms)) {
        }
    }
}
