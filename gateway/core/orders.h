/*
 * orders: the in-memory state of every order, request and case, rebuilt from the journal.
 *
 * Owns the order table, the request index (idempotency), the account index (one live order
 * per account), the case index and the expiry/overdue schedules. It never does I/O and never
 * decides anything: callers validate a request, build the journal record, append it, and then
 * call orders_apply() with that same record - the one function replay also uses, so the state
 * after a restart is exactly the state before it. Capacities are fixed at init
 * (orders_room() says whether a record will fit before it is journaled). Single-threaded:
 * with orders_pagefill() a helper thread only reads the use marks orders_apply() publishes
 * and makes the tables' next pages resident, never reading or changing an entry.
 */
#ifndef SG_ORDERS_H
#define SG_ORDERS_H
#include <stdbool.h>
#include <stdint.h>

#include "htab.h"
#include "limits.h"
#include "pagefill.h"
#include "record.h"

typedef enum order_kind { KIND_STOP = 1, KIND_FREEZE = 2 } order_kind;

typedef enum order_state {
    ST_NONE = 0,
    ST_ACCEPTED,
    ST_HELD,
    ST_SENT,
    ST_OVERDUE,
    ST_CONFIRMED,
    ST_PARTIAL,
    ST_NOT_FOUND,
    ST_REJECTED,
    ST_FUNDS_MOVED,
    ST_RELEASED,
    ST_EXPIRED,
    ST__COUNT
} order_state;

typedef enum request_op { REQ_ORDER = 1, REQ_MERGE, REQ_RELEASE, REQ_EXTEND } request_op;

typedef struct order {
    uint64_t last_lsn; /* newest record about this order: replies that show it wait for it */
    int64_t amount_minor;
    int64_t frozen_minor;
    int64_t expires_at_ms;
    /* When each state was reached (order_at_ms): ms after created_ms in 4 bytes instead of an
     * int64 each, so an order fits 4 cache lines (issue 13: the order table is most of what
     * replay and a burst touch). A time that does not fit (49 days after created_ms or more, or
     * before it: a TTL runs up to ten years, a wall clock can step back) moves every time of
     * the order to an int64_t[ST__COUNT] in the string pool, at at_far_off. */
    int64_t created_ms;
    uint32_t at_rel[ST__COUNT];
    uint32_t at_far_off; /* strpool, 0 = none: the times are created_ms + at_rel */
    uint32_t no;
    uint32_t parent_no;
    uint32_t first_child, last_child, next_sibling;
    uint32_t level;
    uint32_t cases_head; /* link list of case indices */
    uint32_t request_idx;
    uint32_t reason_off, order_reason_off, note_off, doc_off, onward_off; /* strpool, 0 = none */
    uint32_t lists_off; /* comma-separated lists the account was on when ordered */
    uint32_t release_doc_off; /* legal reference a supervisor gave to RELEASE a FREEZE, 0 = none */
    int64_t resend_at_ms; /* ACCEPTED/SENT: bank deadline; OVERDUE: next re-send (not journaled) */
    uint16_t ncases;
    uint16_t at_set; /* bit s: state s was reached (durview clears bits in its copies) */
    uint8_t kind, state, answer_state, onward_count, attempts;
    bool in_plugin; /* taken by a queueing plugin, delivery not yet confirmed (not journaled) */
    char bank[BANK_LEN_MAX + 1];
    char account[ACCOUNT_LEN_MAX + 1];
    char currency[4];
    char agent[AGENT_LEN_MAX + 1];
} order;

typedef struct request {
    char id[REQUEST_ID_LEN_MAX + 1];
    uint8_t op;
    uint32_t order_no;
    uint64_t fingerprint;
    uint64_t lsn;
} request;

typedef struct case_ent {
    char id[CASE_LEN_MAX + 1];
    uint32_t orders_head, orders_tail, count;
} case_ent;

typedef struct olink {
    uint32_t val, next;
} olink;

typedef struct sched_ent {
    int64_t t_ms;
    uint32_t no;
} sched_ent;

/* Capacity fixed at init (orders_room() checks it before a record is journaled). */
typedef struct sched {
    sched_ent *v;
    uint32_t n, cap;
} sched;

/* The tables filled from their front that a pagefill helper can keep ahead of the writer:
 * orders, requests, cases, links, string pool, expiry and overdue schedules. */
#define ORDERS_FILLED_TABLES 7

typedef struct orders {
    uint32_t max_orders;
    order *v; /* v[1..n] */
    uint32_t n;
    request *req; /* req[1..nreq] */
    uint32_t nreq, max_req;
    case_ent *cases;
    uint32_t ncases, max_cases;
    olink *links;
    uint32_t nlinks, max_links;
    char *sp; /* string pool, offset 0 = empty */
    uint64_t sp_len, sp_cap;
    htab req_idx, case_idx, acct_idx;
    sched expiry, overdue;
    uint32_t *walk; /* 2 x max_orders: scratch for walking one case's orders (CASE replies) */
    int64_t bank_deadline_ms;
    uint64_t state_count[ST__COUNT];
    pagefill *pf; /* NULL: no helper; else where orders_apply publishes how far each table is used */
    int pf_id[ORDERS_FILLED_TABLES];
} orders;

int orders_init(orders *o, uint32_t max_orders, int64_t bank_deadline_ms);
void orders_free(orders *o);
/* Make the hash indexes resident up front so the first burst after a start does not pay
 * a page fault per insert; returns the bytes made resident. */
size_t orders_prefault(orders *o);

/* Have pf's helper keep this module's growing tables resident ahead of orders_apply (before
 * pagefill_start; pf outlives o's tables, stopped before orders_free). 0, or -ENOSPC. */
int orders_pagefill(orders *o, pagefill *pf);

/* Does a record of this type (with a case not seen before) fit? Checked before journaling so
 * that orders_apply() of a journaled record cannot fail for lack of room. */
bool orders_room(const orders *o, uint16_t type);
/* Apply one record. 0, or -1 with err set when the record contradicts the state (a journal
 * that replays such a record is refused). */
int orders_apply(orders *o, const order_rec *r, uint64_t lsn, char *err, size_t errcap);

/* Replay: the tables that grow with every record (orders, requests, cases, links, string
 * pool, schedules) take transparent huge pages between begin and end. A million orders
 * otherwise cost ~100,000 first-touch page faults of 4 KiB (each a VM exit on this machine
 * class). end sets what is not used yet back to small pages, so that the live path never
 * waits for a huge page to be zeroed or compacted. Hints: nothing fails. */
void orders_replay_begin(orders *o);
void orders_replay_end(orders *o);
/* Replay: start loading the cache lines orders_apply(r) will look up first (index slots,
 * the order of a follow-up record), a few records before it is applied. A hint only. */
void orders_prefetch(const orders *o, const order_rec *r);

static inline order *orders_get(orders *o, uint64_t no) { return (no >= 1 && no <= o->n) ? &o->v[no] : NULL; }
static inline uint64_t orders_next_no(const orders *o) { return (uint64_t)o->n + 1; }
const request *orders_find_request(const orders *o, const char *id, uint32_t len);
/* Latest order on the account, live or not; NULL when it never had one. */
order *orders_latest_on_account(orders *o, const char *bank, const char *account);
/* The index slot orders_latest_on_account will read first, to prefetch (check_ahead.h). */
const void *orders_account_line(const orders *o, const char *bank, const char *account);
/* The index slot orders_find_request will read first, to prefetch (a STOP's look ahead). */
const void *orders_request_line(const orders *o, const char *id, uint32_t len);
/* Latest order on the account if it is live at now_ms, else NULL. */
order *orders_live_on_account(orders *o, const char *bank, const char *account, int64_t now_ms);
const case_ent *orders_find_case(const orders *o, const char *id, uint32_t len);
bool order_is_live(const order *ord, int64_t now_ms);
/* Is st a state in which an order is live until its expiry (order_is_live without the clock)? */
bool order_state_live(uint8_t st);
bool order_has_case(const orders *o, const order *ord, const char *id, uint32_t len);
/* Pop the next order whose expiry / bank deadline has passed and that is still in a state
 * the event applies to. Returns its number, 0 when none. */
uint32_t orders_next_expired(orders *o, int64_t now_ms);
/* Ask orders_next_overdue() to return this OVERDUE order again at at_ms (re-send back-off).
 * 0, or -ENOBUFS when the overdue schedule is full (the order is not re-sent then). */
int orders_schedule_resend(orders *o, order *ord, int64_t at_ms);
uint32_t orders_next_overdue(orders *o, int64_t now_ms);
/* Earliest time something in the schedules is due, or INT64_MAX. */
int64_t orders_next_due_ms(const orders *o);

const char *order_state_name(uint8_t st);
const char *order_kind_name(uint8_t k);
int order_state_parse(const char *s); /* -1 if unknown */
static inline const char *orders_str(const orders *o, uint32_t off) { return off ? o->sp + off : ""; }
/* When ord (the order itself or a durview copy of it) reached state st: 0 = never. */
static inline int64_t order_at_ms(const orders *o, const order *ord, uint8_t st) {
    if (st >= ST__COUNT || !(ord->at_set & (1u << st))) return 0;
    if (ord->at_far_off) {
        int64_t t;
        __builtin_memcpy(&t, o->sp + ord->at_far_off + (size_t)st * sizeof t, sizeof t);
        return t;
    }
    return ord->created_ms + (int64_t)ord->at_rel[st];
}
const sg_onward *orders_onward(const orders *o, const order *ord);
void order_id_format(char *out, size_t cap, uint64_t no);
/* "SG-<n>" -> n, 0 when not an order id. */
uint64_t order_id_parse(const char *s, uint32_t len);
#endif
