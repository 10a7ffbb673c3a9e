#include "durview.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "mem.h"

int durview_init(durview *dv, uint32_t max_orders, uint32_t cap) {
    memset(dv, 0, sizeof *dv);
    if (cap == 0 || max_orders == 0) return -EINVAL;
    dv->cap = cap;
    dv->max_orders = max_orders;
    /* Reserved, touched as used: the ring restarts at 0 whenever it empties, so a gateway
     * whose batches are small keeps only its first pages resident. */
    dv->v = mem_reserve_seq((size_t)cap * sizeof *dv->v);
    dv->first = mem_reserve_seq(((size_t)max_orders + 1) * sizeof *dv->first);
    dv->last = mem_reserve_seq(((size_t)max_orders + 1) * sizeof *dv->last);
    if (!dv->v || !dv->first || !dv->last) return -ENOMEM;
    return 0;
}

void durview_free(durview *dv) {
    if (dv->v) mem_release(dv->v, (size_t)dv->cap * sizeof *dv->v);
    if (dv->first) mem_release(dv->first, ((size_t)dv->max_orders + 1) * sizeof *dv->first);
    if (dv->last) mem_release(dv->last, ((size_t)dv->max_orders + 1) * sizeof *dv->last);
    memset(dv, 0, sizeof *dv);
}

int durview_pagefill(durview *dv, pagefill *pf) {
    void *base[3] = {dv->v, dv->first, dv->last};
    size_t cap[3] = {(size_t)dv->cap * sizeof *dv->v, ((size_t)dv->max_orders + 1) * sizeof *dv->first,
                     ((size_t)dv->max_orders + 1) * sizeof *dv->last};
    for (int i = 0; i < 3; i++) {
        int id = pagefill_add(pf, base[i], cap[i]);
        if (id < 0) return id;
        dv->pf_id[i] = id;
    }
    dv->pf = pf;
    return 0;
}

static void snap_take(durview_snap *s, const order *ord) {
    s->amount_minor = ord->amount_minor;
    s->frozen_minor = ord->frozen_minor;
    s->expires_at_ms = ord->expires_at_ms;
    s->reason_off = ord->reason_off;
    s->doc_off = ord->doc_off;
    s->onward_off = ord->onward_off;
    s->ncases = ord->ncases;
    s->at_mask = ord->at_set;
    s->state = ord->state;
    s->answer_state = ord->answer_state;
    s->onward_count = ord->onward_count;
}

static void snap_put(order *ord, const durview_snap *s) {
    ord->amount_minor = s->amount_minor;
    ord->frozen_minor = s->frozen_minor;
    ord->expires_at_ms = s->expires_at_ms;
    ord->reason_off = s->reason_off;
    ord->doc_off = s->doc_off;
    ord->onward_off = s->onward_off;
    ord->ncases = s->ncases;
    ord->at_set &= s->at_mask; /* the times stay where they are: only the copy's bits change */
    ord->state = s->state;
    ord->answer_state = s->answer_state;
    ord->onward_count = s->onward_count;
}

_Static_assert(ST__COUNT <= 16, "at_mask has a bit per state");

void durview_before_apply(durview *dv, orders *o, const order_rec *r, uint64_t lsn) {
    assert(dv->len < dv->cap);
    assert(r->order_no >= 1 && r->order_no <= dv->max_orders);
    if (dv->len == 0) dv->head = 0;
    uint32_t idx = (dv->head + dv->len) % dv->cap;
    durview_ent *e = &dv->v[idx];
    memset(e, 0, sizeof *e);
    e->lsn = lsn;
    e->no = (uint32_t)r->order_no;
    if (r->type == REC_ORDER) {
        char bank[BANK_LEN_MAX + 1], account[ACCOUNT_LEN_MAX + 1];
        size_t bl = r->bank.len < BANK_LEN_MAX ? r->bank.len : BANK_LEN_MAX;
        size_t al = r->account.len < ACCOUNT_LEN_MAX ? r->account.len : ACCOUNT_LEN_MAX;
        memcpy(bank, r->bank.p, bl);
        bank[bl] = 0;
        memcpy(account, r->account.p, al);
        account[al] = 0;
        const order *prev = orders_latest_on_account(o, bank, account);
        e->created = true;
        e->prev_on_account = prev ? prev->no : 0;
    } else {
        const order *ord = orders_get(o, r->order_no);
        assert(ord);
        snap_take(&e->s, ord);
    }
    dv->len++;
    uint32_t no = e->no;
    if (dv->last[no])
        dv->v[dv->last[no] - 1].next = idx + 1;
    else
        dv->first[no] = idx + 1;
    dv->last[no] = idx + 1;
    if (dv->pf) {
        /* Orders are numbered in sequence: the next new order is how far first/last are used. */
        size_t per_order = ((size_t)o->n + 2) * sizeof *dv->first;
        pagefill_note(dv->pf, dv->pf_id[0], ((size_t)idx + 1) * sizeof *dv->v);
        pagefill_note(dv->pf, dv->pf_id[1], per_order);
        pagefill_note(dv->pf, dv->pf_id[2], per_order);
    }
}

/* Can dropping e change what durview_live_on_account() answers for its order's account? Only
 * a creation (the account's latest order changes) or a record that moved the order between
 * live and not live, or changed its expiry. The order's durable state after e is the next
 * entry's snapshot, or the order itself when e is its newest entry. A SENT or CONFIRMED
 * record, two of an order's three records in the common case, changes neither. */
static bool changes_liveness(const durview *dv, orders *o, const durview_ent *e) {
    if (e->created) return true;
    uint8_t st;
    int64_t exp;
    if (e->next) {
        const durview_snap *n = &dv->v[e->next - 1].s;
        st = n->state;
        exp = n->expires_at_ms;
    } else {
        const order *ord = orders_get(o, e->no);
        if (!ord) return true;
        st = ord->state;
        exp = ord->expires_at_ms;
    }
    bool live_before = order_state_live(e->s.state), live_after = order_state_live(st);
    return live_before != live_after || (live_after && exp != e->s.expires_at_ms);
}

void durview_advance(durview *dv, orders *o, uint64_t durable_lsn, void (*fn)(void *ctx, uint32_t no),
                     void *ctx) {
    while (dv->len && dv->v[dv->head].lsn <= durable_lsn) {
        durview_ent *e = &dv->v[dv->head];
        uint32_t no = e->no;
        assert(dv->first[no] == dv->head + 1); /* lsn order: an order's oldest entry goes first */
        bool publish = fn && changes_liveness(dv, o, e);
        dv->first[no] = e->next;
        if (!e->next) dv->last[no] = 0;
        dv->head = (dv->head + 1) % dv->cap;
        dv->len--;
        if (publish) fn(ctx, no);
    }
}

static const durview_ent *oldest(const durview *dv, uint64_t no) {
    if (no == 0 || no > dv->max_orders || !dv->first[no]) return NULL;
    return &dv->v[dv->first[no] - 1];
}

bool durview_exists(const durview *dv, uint64_t no) {
    const durview_ent *e = oldest(dv, no);
    return !e || !e->created;
}

const order *durview_order(const durview *dv, orders *o, uint64_t no, order *tmp) {
    const order *ord = orders_get(o, no);
    if (!ord) return NULL;
    const durview_ent *e = oldest(dv, no);
    if (!e) return ord;
    if (e->created) return NULL;
    *tmp = *ord;
    snap_put(tmp, &e->s);
    return tmp;
}

const order *durview_live_on_account(const durview *dv, orders *o, const char *bank,
                                     const char *account, int64_t now_ms, order *tmp) {
    const order *ord = orders_latest_on_account(o, bank, account);
    /* Orders created on the account since the last durable record do not exist yet: the
     * one before them (possibly released or expired since, durably or not) is the answer. */
    for (const durview_ent *e; ord && (e = oldest(dv, ord->no)) && e->created;)
        ord = e->prev_on_account ? orders_get(o, e->prev_on_account) : NULL;
    if (!ord) return NULL;
    const order *v = durview_order(dv, o, ord->no, tmp);
    return v && order_is_live(v, now_ms) ? v : NULL;
}
