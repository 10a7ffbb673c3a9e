/*
 * durview: the durable view of the order table (SPEC §9: reads show only durable state).
 *
 * orders_apply() changes an order as soon as its record is appended to the open journal
 * batch; the record is durable one fdatasync later (a millisecond), or much later while the
 * disk is full. Reads (STATUS, CASE, CHECK, the frozen mark in shared memory) must show the
 * order as of its last durable record, without waiting and without a copy of every order.
 *
 * So, for every live record that touches an order, durview keeps what reads need of the
 * order as it stood just before that record, tagged with the record's lsn:
 *   - a creation record keeps the account's previous order (the one CHECK must still see);
 *   - any later record keeps the fields a later record may change (state, amounts, expiry,
 *     strings, how many cases, which state timestamps are set).
 * The order's oldest kept entry is exactly its state after its last durable record. Entries
 * sit in a fixed ring in lsn order and are dropped as their records become durable; an order
 * with no entry is fully durable and read in place. Strings, cases and children only grow,
 * so a view is the live order with the kept fields put back, its case list cut at the kept
 * count, and children whose creation is not durable skipped.
 *
 * Capacity is fixed at init (DURVIEW_ENTRIES_MAX); no allocation per record. Replay does not
 * use it (everything replayed is durable). Single-threaded, like orders.
 */
#ifndef SG_DURVIEW_H
#define SG_DURVIEW_H
#include <stdbool.h>
#include <stdint.h>

#include "orders.h"

/* The fields of an order that records after its creation may change. */
typedef struct durview_snap {
    int64_t amount_minor, frozen_minor, expires_at_ms;
    uint32_t reason_off, doc_off, onward_off;
    uint16_t ncases;
    uint16_t at_mask; /* the order's at_set: bit s, state s was reached */
    uint8_t state, answer_state, onward_count;
} durview_snap;

typedef struct durview_ent {
    uint64_t lsn;             /* the record this entry precedes */
    uint32_t no;              /* the order it touches */
    uint32_t next;            /* the same order's next entry (ring index + 1), 0 = none */
    uint32_t prev_on_account; /* creation entries: the account's previous order, 0 = none */
    bool created;             /* a creation record: the order does not exist before it */
    durview_snap s;
} durview_ent;

typedef struct durview {
    durview_ent *v; /* ring of cap entries */
    uint32_t cap, head, len;
    uint32_t *first, *last; /* [order no]: its oldest / newest entry (ring index + 1), 0 = none */
    uint32_t max_orders;
    pagefill *pf; /* NULL: no helper; else where before_apply publishes its tables' use */
    int pf_id[3]; /* v, first, last */
} durview;

int durview_init(durview *dv, uint32_t max_orders, uint32_t cap);
void durview_free(durview *dv);
/* Have pf's helper keep the ring and the per-order indexes resident ahead of
 * durview_before_apply (as orders_pagefill). 0, or -ENOSPC. */
int durview_pagefill(durview *dv, pagefill *pf);
/* Room for n more records? Checked (with journal room) before a record is journaled. */
static inline bool durview_room(const durview *dv, uint32_t n) {
    return dv->len + n <= dv->cap;
}
/* Before orders_apply() of a live record r at lsn: remember what reads still show. The
 * caller has checked durview_room(); list records are not for here. */
void durview_before_apply(durview *dv, orders *o, const order_rec *r, uint64_t lsn);
/* Records up to durable_lsn are on disk: drop their entries, calling fn(ctx, order_no) (after
 * the drop) for each that may change what durview_live_on_account() answers for the order's
 * account (a creation, or a record that changed the order's liveness or expiry), so the
 * caller can publish the account's new durable frozen state. */
void durview_advance(durview *dv, orders *o, uint64_t durable_lsn, void (*fn)(void *ctx, uint32_t no),
                     void *ctx);
/* The order the i-th entry durview_advance has yet to drop creates, when that entry is
 * durable at durable_lsn and a creation (fn will be called for it); else 0. For the caller's
 * look ahead: what publishing it reads can be prefetched while earlier entries publish. */
static inline uint32_t durview_ahead_created(const durview *dv, uint32_t i, uint64_t durable_lsn) {
    if (i >= dv->len) return 0;
    const durview_ent *e = &dv->v[(dv->head + i) % dv->cap];
    return e->created && e->lsn <= durable_lsn ? e->no : 0;
}
/* The order as reads show it: NULL when it does not exist for reads (unknown, or its
 * creation not durable); the order itself when every record of it is durable; else tmp,
 * filled with the order as of its last durable record. */
const order *durview_order(const durview *dv, orders *o, uint64_t no, order *tmp);
/* Does order no exist for reads (its creation durable)? */
bool durview_exists(const durview *dv, uint64_t no);
/* The order durably live on the account at now_ms (a view as durview_order), or NULL. */
const order *durview_live_on_account(const durview *dv, orders *o, const char *bank,
                                     const char *account, int64_t now_ms, order *tmp);
#endif
