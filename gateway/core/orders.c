#include "orders.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "mem.h"

#define SP_BYTES_MAX (4ULL * 1024 * 1024 * 1024 - 1) /* uint32 offsets */

static const char *state_names[ST__COUNT] = {
    "NONE", "ACCEPTED", "HELD", "SENT", "OVERDUE", "CONFIRMED", "PARTIAL",
    "NOT_FOUND", "REJECTED", "FUNDS_MOVED", "RELEASED", "EXPIRED",
};

const char *order_state_name(uint8_t st) { return st < ST__COUNT ? state_names[st] : "UNKNOWN"; }
const char *order_kind_name(uint8_t k) { return k == KIND_STOP ? "STOP" : k == KIND_FREEZE ? "FREEZE" : "UNKNOWN"; }
int order_state_parse(const char *s) {
    for (int i = 1; i < ST__COUNT; i++)
        if (strcmp(s, state_names[i]) == 0) return i;
    return -1;
}

void order_id_format(char *out, size_t cap, uint64_t no) { snprintf(out, cap, "SG-%llu", (unsigned long long)no); }

uint64_t order_id_parse(const char *s, uint32_t len) {
    if (len < 4 || len > 23 || (s[0] != 'S' && s[0] != 's') || (s[1] != 'G' && s[1] != 'g') || s[2] != '-') return 0;
    uint64_t v = 0;
    for (uint32_t i = 3; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > UINT32_MAX) return 0;
    }
    return v;
}

bool order_state_live(uint8_t st) {
    switch (st) {
    case ST_ACCEPTED:
    case ST_HELD:
    case ST_SENT:
    case ST_OVERDUE:
    case ST_CONFIRMED:
    case ST_PARTIAL: return true;
    default: return false;
    }
}

bool order_is_live(const order *ord, int64_t now_ms) {
    return order_state_live(ord->state) && ord->expires_at_ms > now_ms;
}

/* --- indexes ------------------------------------------------------------------------ */

typedef struct skey {
    const char *p;
    uint32_t len;
} skey;

typedef struct akey {
    const char *bank, *account;
} akey;

static bool req_eq(const void *ctx, uint32_t val, const void *key) {
    const orders *o = ctx;
    const skey *k = key;
    const char *id = o->req[val].id;
    return strncmp(id, k->p, k->len) == 0 && id[k->len] == 0;
}
static bool case_eq(const void *ctx, uint32_t val, const void *key) {
    const orders *o = ctx;
    const skey *k = key;
    const char *id = o->cases[val].id;
    return strncmp(id, k->p, k->len) == 0 && id[k->len] == 0;
}
static bool acct_eq(const void *ctx, uint32_t val, const void *key) {
    const orders *o = ctx;
    const akey *k = key;
    return strcmp(o->v[val].bank, k->bank) == 0 && strcmp(o->v[val].account, k->account) == 0;
}
static uint64_t acct_hash_n(const char *bank, size_t bl, const char *account, size_t al) {
    char tmp[BANK_LEN_MAX + ACCOUNT_LEN_MAX + 2];
    assert(bl <= BANK_LEN_MAX && al <= ACCOUNT_LEN_MAX);
    memcpy(tmp, bank, bl);
    tmp[bl] = 0; /* separator no key character can be */
    memcpy(tmp + bl + 1, account, al);
    return XXH3_64bits(tmp, bl + 1 + al);
}
static uint64_t acct_hash(const char *bank, const char *account) {
    return acct_hash_n(bank, strlen(bank), account, strlen(account));
}

/* --- schedules (binary min-heaps, stale entries skipped when popped) ---------------- */

static int sched_push(sched *s, int64_t t, uint32_t no) {
    assert(no >= 1);
    if (s->n == s->cap) return -ENOBUFS;
    uint32_t i = s->n++;
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (s->v[p].t_ms <= t) break;
        s->v[i] = s->v[p];
        i = p;
    }
    s->v[i] = (sched_ent){t, no};
    return 0;
}

static sched_ent sched_pop(sched *s) {
    assert(s->n > 0);
    sched_ent top = s->v[0];
    sched_ent last = s->v[--s->n];
    uint32_t i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= s->n) break;
        if (c + 1 < s->n && s->v[c + 1].t_ms < s->v[c].t_ms) c++;
        if (last.t_ms <= s->v[c].t_ms) break;
        s->v[i] = s->v[c];
        i = c;
    }
    if (s->n) s->v[i] = last;
    assert(s->n == 0 || s->v[0].t_ms >= top.t_ms); /* min-heap: nothing popped later is earlier */
    return top;
}

/* --- init ----------------------------------------------------------------------------- */

int orders_init(orders *o, uint32_t max_orders, int64_t bank_deadline_ms) {
    memset(o, 0, sizeof *o);
    if (max_orders == 0 || max_orders > ORDERS_MAX_LIMIT) return -EINVAL;
    o->max_orders = max_orders;
    o->max_req = max_orders * 2;
    o->max_cases = max_orders;
    o->max_links = max_orders * 4;
    o->sp_cap = (uint64_t)max_orders * 256 < SP_BYTES_MAX ? (uint64_t)max_orders * 256 : SP_BYTES_MAX;
    o->bank_deadline_ms = bank_deadline_ms;
    o->v = mem_reserve_seq(((size_t)max_orders + 1) * sizeof(order));
    o->req = mem_reserve_seq(((size_t)o->max_req + 1) * sizeof(request));
    o->cases = mem_reserve_seq(((size_t)o->max_cases + 1) * sizeof(case_ent));
    o->links = mem_reserve_seq(((size_t)o->max_links + 1) * sizeof(olink));
    o->sp = mem_reserve_seq(o->sp_cap);
    /* Every expiry entry comes with a request (ORDER, MERGE, EXTEND) and every overdue one
     * with an order reaching SENT (a re-send pops one and pushes one), so these never fill
     * before the tables do; orders_room() checks them anyway. */
    o->expiry = (sched){.v = mem_reserve((size_t)o->max_req * sizeof(sched_ent)), .cap = o->max_req};
    o->overdue = (sched){.v = mem_reserve((size_t)max_orders * 2 * sizeof(sched_ent)), .cap = max_orders * 2};
    o->walk = mem_reserve((size_t)max_orders * 2 * sizeof *o->walk);
    if (!o->v || !o->req || !o->cases || !o->links || !o->sp || !o->expiry.v || !o->overdue.v || !o->walk)
        return -ENOMEM;
    o->sp_len = 1;
    if (htab_init(&o->req_idx, o->max_req) || htab_init(&o->case_idx, o->max_cases) ||
        htab_init(&o->acct_idx, max_orders))
        return -ENOMEM;
    return 0;
}

size_t orders_prefault(orders *o) {
    return htab_prefault(&o->req_idx) + htab_prefault(&o->case_idx) + htab_prefault(&o->acct_idx);
}

/* The tables in ORDERS_FILLED_TABLES order: where each starts, its bytes, how many are used. */
static void filled_tables(const orders *o, void *base[], size_t cap[], size_t used[]) {
    const size_t ob = sizeof(order), rb = sizeof(request), cb = sizeof(case_ent), lb = sizeof(olink);
    const size_t sb = sizeof(sched_ent);
    void *b[ORDERS_FILLED_TABLES] = {o->v, o->req, o->cases, o->links, o->sp, o->expiry.v, o->overdue.v};
    size_t c[ORDERS_FILLED_TABLES] = {((size_t)o->max_orders + 1) * ob, ((size_t)o->max_req + 1) * rb,
                                      ((size_t)o->max_cases + 1) * cb, ((size_t)o->max_links + 1) * lb,
                                      o->sp_cap, (size_t)o->expiry.cap * sb, (size_t)o->overdue.cap * sb};
    size_t u[ORDERS_FILLED_TABLES] = {((size_t)o->n + 1) * ob, ((size_t)o->nreq + 1) * rb,
                                      ((size_t)o->ncases + 1) * cb, ((size_t)o->nlinks + 1) * lb,
                                      o->sp_len, (size_t)o->expiry.n * sb, (size_t)o->overdue.n * sb};
    for (int i = 0; i < ORDERS_FILLED_TABLES; i++) {
        if (base) base[i] = b[i];
        if (cap) cap[i] = c[i];
        used[i] = u[i];
    }
}

int orders_pagefill(orders *o, pagefill *pf) {
    void *base[ORDERS_FILLED_TABLES];
    size_t cap[ORDERS_FILLED_TABLES], used[ORDERS_FILLED_TABLES];
    filled_tables(o, base, cap, used);
    for (int i = 0; i < ORDERS_FILLED_TABLES; i++) {
        int id = pagefill_add(pf, base[i], cap[i]);
        if (id < 0) return id;
        o->pf_id[i] = id;
        pagefill_note(pf, id, used[i]);
    }
    o->pf = pf;
    return 0;
}

/* After a record: how far each table is used now, for the helper (relaxed stores only). */
static void note_use(orders *o) {
    size_t used[ORDERS_FILLED_TABLES];
    filled_tables(o, NULL, NULL, used);
    for (int i = 0; i < ORDERS_FILLED_TABLES; i++) pagefill_note(o->pf, o->pf_id[i], used[i]);
}

void orders_free(orders *o) {
    if (o->v) mem_release(o->v, ((size_t)o->max_orders + 1) * sizeof(order));
    if (o->req) mem_release(o->req, ((size_t)o->max_req + 1) * sizeof(request));
    if (o->cases) mem_release(o->cases, ((size_t)o->max_cases + 1) * sizeof(case_ent));
    if (o->links) mem_release(o->links, ((size_t)o->max_links + 1) * sizeof(olink));
    if (o->sp) mem_release(o->sp, o->sp_cap);
    htab_free(&o->req_idx);
    htab_free(&o->case_idx);
    htab_free(&o->acct_idx);
    if (o->expiry.v) mem_release(o->expiry.v, (size_t)o->expiry.cap * sizeof(sched_ent));
    if (o->overdue.v) mem_release(o->overdue.v, (size_t)o->overdue.cap * sizeof(sched_ent));
    if (o->walk) mem_release(o->walk, (size_t)o->max_orders * 2 * sizeof *o->walk);
    memset(o, 0, sizeof *o);
}

/* Worst case a record needs: one order, one request, one case, two links per case list,
 * a child link, and its strings. */
#define SP_RECORD_MAX                                                                              \
    (NOTE_LEN_MAX + DOC_LEN_MAX + 2 * REASON_LEN_MAX + SG_ONWARD_MAX * sizeof(sg_onward) + 64 +    \
     ST__COUNT * sizeof(int64_t) + 8)

/* Links one record may add: a case costs two (the case's list of orders, the order's list of
 * cases). An ORDER may be a cascade child, which joins every case of its parent: up to
 * ORDER_CASES_MAX cases, its own among them. The caller cannot tell a child from a root here,
 * so every ORDER is given the child's worst case; anything else adds at most one case. */
#define LINKS_ORDER_MAX (2u * ORDER_CASES_MAX)
#define LINKS_RECORD_MAX 2u

bool orders_room(const orders *o, uint16_t type) {
    uint32_t links = type == REC_ORDER ? LINKS_ORDER_MAX : LINKS_RECORD_MAX;
    if (o->sp_len + SP_RECORD_MAX > o->sp_cap) return false;
    if (o->nlinks + links > o->max_links || o->ncases + 1 > o->max_cases) return false;
    if (o->expiry.n >= o->expiry.cap || o->overdue.n >= o->overdue.cap) return false;
    switch (type) {
    case REC_ORDER: return o->n < o->max_orders && o->nreq < o->max_req && o->acct_idx.count < o->acct_idx.limit;
    case REC_MERGE:
    case REC_RELEASE:
    case REC_EXTEND: return o->nreq < o->max_req;
    default: return true;
    }
}

/* --- lookups ---------------------------------------------------------------------------- */

const request *orders_find_request(const orders *o, const char *id, uint32_t len) {
    skey k = {id, len};
    htab_slot *s = htab_lookup(&o->req_idx, XXH3_64bits(id, len), &k, req_eq, o);
    return s->val ? &o->req[s->val] : NULL;
}

const case_ent *orders_find_case(const orders *o, const char *id, uint32_t len) {
    skey k = {id, len};
    htab_slot *s = htab_lookup(&o->case_idx, XXH3_64bits(id, len), &k, case_eq, o);
    return s->val ? &o->cases[s->val] : NULL;
}

order *orders_latest_on_account(orders *o, const char *bank, const char *account) {
    akey k = {bank, account};
    htab_slot *s = htab_lookup(&o->acct_idx, acct_hash(bank, account), &k, acct_eq, o);
    return s->val ? &o->v[s->val] : NULL;
}

const void *orders_account_line(const orders *o, const char *bank, const char *account) {
    return o->acct_idx.slots ? htab_first_slot(&o->acct_idx, acct_hash(bank, account)) : NULL;
}

const void *orders_request_line(const orders *o, const char *id, uint32_t len) {
    return o->req_idx.slots ? htab_first_slot(&o->req_idx, XXH3_64bits(id, len)) : NULL;
}

order *orders_live_on_account(orders *o, const char *bank, const char *account, int64_t now_ms) {
    order *ord = orders_latest_on_account(o, bank, account);
    return ord && order_is_live(ord, now_ms) ? ord : NULL;
}

bool order_has_case(const orders *o, const order *ord, const char *id, uint32_t len) {
    for (uint32_t l = ord->cases_head; l; l = o->links[l].next) {
        const char *c = o->cases[o->links[l].val].id;
        if (strncmp(c, id, len) == 0 && c[len] == 0) return true;
    }
    return false;
}

const sg_onward *orders_onward(const orders *o, const order *ord) {
    return ord->onward_off ? (const sg_onward *)(o->sp + ord->onward_off) : NULL;
}

/* --- replay ----------------------------------------------------------------------------- */

/* Huge pages for [p, p + cap) (on), or back to small pages from the huge page holding byte
 * used on (off): what is in use keeps the huge pages it has. Hints; errors are ignored. */
static void huge_hint(void *p, size_t cap, size_t used, bool on) {
    uintptr_t start = (uintptr_t)p, end = start + cap;
    if (on) {
        (void)madvise(p, cap, MADV_HUGEPAGE);
        return;
    }
    const uintptr_t huge = MEM_HUGE_PAGE_BYTES;
    uintptr_t from = (start + used + huge - 1) & ~(huge - 1);
    if (from < end) (void)madvise((void *)from, end - from, MADV_NOHUGEPAGE);
}

static void replay_pages(orders *o, bool on) {
    huge_hint(o->v, ((size_t)o->max_orders + 1) * sizeof(order), ((size_t)o->n + 1) * sizeof(order),
              on);
    huge_hint(o->req, ((size_t)o->max_req + 1) * sizeof(request),
              ((size_t)o->nreq + 1) * sizeof(request), on);
    huge_hint(o->cases, ((size_t)o->max_cases + 1) * sizeof(case_ent),
              ((size_t)o->ncases + 1) * sizeof(case_ent), on);
    huge_hint(o->links, ((size_t)o->max_links + 1) * sizeof(olink),
              ((size_t)o->nlinks + 1) * sizeof(olink), on);
    huge_hint(o->sp, o->sp_cap, o->sp_len, on);
    huge_hint(o->expiry.v, (size_t)o->expiry.cap * sizeof(sched_ent),
              (size_t)o->expiry.n * sizeof(sched_ent), on);
    huge_hint(o->overdue.v, (size_t)o->overdue.cap * sizeof(sched_ent),
              (size_t)o->overdue.n * sizeof(sched_ent), on);
}

void orders_replay_begin(orders *o) {
    replay_pages(o, true);
}

void orders_replay_end(orders *o) {
    replay_pages(o, false);
}

void orders_prefetch(const orders *o, const order_rec *r) {
    /* The same hashes apply computes; a malformed record (apply refuses it) prefetches
     * nothing harmful: prefetches never fault. */
    if (r->request_id.len)
        __builtin_prefetch(
            htab_first_slot(&o->req_idx, XXH3_64bits(r->request_id.p, r->request_id.len)), 1);
    if (r->type == REC_ORDER) {
        if (r->bank.len <= BANK_LEN_MAX && r->account.len <= ACCOUNT_LEN_MAX)
            __builtin_prefetch(
                htab_first_slot(&o->acct_idx,
                                acct_hash_n(r->bank.p, r->bank.len, r->account.p, r->account.len)),
                1);
        if (r->case_id.len)
            __builtin_prefetch(
                htab_first_slot(&o->case_idx, XXH3_64bits(r->case_id.p, r->case_id.len)), 1);
    } else if (r->order_no >= 1 && r->order_no <= o->n) {
        __builtin_prefetch(&o->v[r->order_no], 1);
    }
}

/* --- apply ------------------------------------------------------------------------------ */

static int orders_apply_one(orders *o, const order_rec *r, uint64_t lsn, char *err, size_t errcap);

static uint32_t sp_put(orders *o, rec_str s) {
    if (s.len == 0) return 0;
    assert(o->sp_len + s.len + 1 <= o->sp_cap);
    uint32_t off = (uint32_t)o->sp_len;
    memcpy(o->sp + off, s.p, s.len);
    o->sp[off + s.len] = 0;
    o->sp_len += s.len + 1;
    return off;
}

static uint32_t sp_put_onward(orders *o, const sg_onward *v, uint32_t n) {
    if (n == 0) return 0;
    o->sp_len = (o->sp_len + 7) & ~7ULL;
    size_t bytes = n * sizeof *v;
    assert(o->sp_len + bytes <= o->sp_cap);
    uint32_t off = (uint32_t)o->sp_len;
    memcpy(o->sp + off, v, bytes);
    o->sp_len += bytes;
    return off;
}

static void copy_str(char *dst, size_t cap, rec_str s) {
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    memcpy(dst, s.p, n);
    dst[n] = 0;
}

static uint32_t link_add(orders *o, uint32_t val) {
    assert(o->nlinks < o->max_links);
    assert(val >= 1);
    uint32_t l = ++o->nlinks;
    o->links[l] = (olink){val, 0};
    return l;
}

static int add_request(orders *o, const order_rec *r, uint8_t op, uint32_t no, uint64_t lsn, char *err,
                       size_t errcap) {
    if (r->request_id.len == 0 || r->request_id.len > REQUEST_ID_LEN_MAX) {
        snprintf(err, errcap, "record without a valid request_id");
        return -1;
    }
    uint64_t h = XXH3_64bits(r->request_id.p, r->request_id.len);
    skey k = {r->request_id.p, r->request_id.len};
    htab_slot *s = htab_lookup(&o->req_idx, h, &k, req_eq, o);
    if (s->val) {
        snprintf(err, errcap, "request_id %.*s journaled twice", (int)r->request_id.len, r->request_id.p);
        return -1;
    }
    if (o->nreq >= o->max_req || htab_fill(&o->req_idx, s, h, o->nreq + 1) != 0) {
        snprintf(err, errcap, "request table full (max_orders too small for this journal)");
        return -1;
    }
    request *q = &o->req[++o->nreq];
    copy_str(q->id, sizeof q->id, r->request_id);
    q->op = op;
    q->order_no = no;
    q->fingerprint = r->fingerprint;
    q->lsn = lsn;
    assert(s->val == o->nreq && strlen(q->id) == r->request_id.len); /* index and table agree */
    return 0;
}

/* Attach the order to a case (creating the case) unless it is already in it. */
static int add_case(orders *o, order *ord, rec_str c, char *err, size_t errcap) {
    if (c.len == 0 || order_has_case(o, ord, c.p, c.len)) return 0;
    if (ord->ncases >= ORDER_CASES_MAX) {
        snprintf(err, errcap, "order has %d cases already", ORDER_CASES_MAX);
        return -1;
    }
    uint64_t h = XXH3_64bits(c.p, c.len);
    skey k = {c.p, c.len};
    htab_slot *s = htab_lookup(&o->case_idx, h, &k, case_eq, o);
    if (!s->val) {
        if (o->ncases >= o->max_cases || htab_fill(&o->case_idx, s, h, o->ncases + 1) != 0) {
            snprintf(err, errcap, "case table full");
            return -1;
        }
        case_ent *ce = &o->cases[++o->ncases];
        copy_str(ce->id, sizeof ce->id, c);
        ce->orders_head = ce->orders_tail = 0;
        ce->count = 0;
    }
    uint32_t ci = s->val;
    case_ent *ce = &o->cases[ci];
    uint32_t l = link_add(o, ord->no);
    if (ce->orders_tail)
        o->links[ce->orders_tail].next = l;
    else
        ce->orders_head = l;
    ce->orders_tail = l;
    ce->count++;
    /* The order's own list keeps insertion order too: first case first. */
    uint32_t m = link_add(o, ci);
    uint32_t *tail = &ord->cases_head;
    while (*tail) tail = &o->links[*tail].next;
    *tail = m;
    ord->ncases++;
    assert(ord->ncases <= ORDER_CASES_MAX && ce->count <= o->n);
    return 0;
}

/* Four cache lines: the order table is most of what replay and a burst of new orders write. */
_Static_assert(sizeof(order) <= 256, "struct order grew past 256 bytes");
_Static_assert(ST__COUNT <= 16, "at_set has a bit per state");

/* Move ord's state times to exact int64s in the string pool (see struct order). */
static void at_go_far(orders *o, order *ord) {
    int64_t far[ST__COUNT] = {0};
    for (uint8_t s = 0; s < ST__COUNT; s++) far[s] = order_at_ms(o, ord, s);
    o->sp_len = (o->sp_len + 7) & ~7ULL;
    assert(o->sp_len + sizeof far <= o->sp_cap); /* orders_room: SP_RECORD_MAX holds it */
    uint32_t off = (uint32_t)o->sp_len;
    memcpy(o->sp + off, far, sizeof far);
    o->sp_len += sizeof far;
    ord->at_far_off = off;
}

/* The first time ord reaches st; 0 stays "never", as it always was. */
static void set_at(orders *o, order *ord, uint8_t st, int64_t ts) {
    if ((ord->at_set & (1u << st)) || ts == 0) return;
    if (!ord->at_far_off) {
        if (ts >= ord->created_ms && ts - ord->created_ms < (int64_t)UINT32_MAX) {
            ord->at_rel[st] = (uint32_t)(ts - ord->created_ms);
            ord->at_set |= (uint16_t)(1u << st);
            return;
        }
        at_go_far(o, ord);
    }
    memcpy(o->sp + ord->at_far_off + (size_t)st * sizeof ts, &ts, sizeof ts);
    ord->at_set |= (uint16_t)(1u << st);
    assert(order_at_ms(o, ord, st) == ts);
}

static void set_state(orders *o, order *ord, uint8_t st, int64_t ts) {
    assert(ord->state < ST__COUNT && st > ST_NONE && st < ST__COUNT);
    assert(o->state_count[ord->state] > 0); /* the order is counted in the state it leaves */
    o->state_count[ord->state]--;
    ord->state = st;
    o->state_count[st]++;
    set_at(o, ord, st, ts);
}

/* The bank's deadline runs from the moment the order is due to the bank (accepted, or
 * confirmed by a supervisor), not from its delivery: an instruction a plugin cannot hand
 * over (Redis down or refusing writes) must go OVERDUE too. A function of journaled times
 * only, so replay schedules the same deadline. */
static int schedule_deadline(orders *o, order *ord, int64_t from_ms) {
    ord->resend_at_ms = from_ms + o->bank_deadline_ms;
    return sched_push(&o->overdue, ord->resend_at_ms, ord->no);
}

static int apply_order(orders *o, const order_rec *r, uint64_t lsn, char *err, size_t errcap) {
    if (r->order_no != (uint64_t)o->n + 1 || o->n >= o->max_orders) {
        snprintf(err, errcap, "order number %llu out of sequence (have %u)", (unsigned long long)r->order_no, o->n);
        return -1;
    }
    if ((r->kind != KIND_STOP && r->kind != KIND_FREEZE) || (r->state != ST_ACCEPTED && r->state != ST_HELD) ||
        r->bank.len == 0 || r->bank.len > BANK_LEN_MAX || r->account.len == 0 || r->account.len > ACCOUNT_LEN_MAX) {
        snprintf(err, errcap, "malformed order record");
        return -1;
    }
    assert(lsn >= 1);
    order *ord = &o->v[++o->n];
    memset(ord, 0, sizeof *ord);
    ord->no = o->n;
    ord->kind = r->kind;
    ord->state = ST_NONE;
    o->state_count[ST_NONE]++;
    ord->created_ms = r->ts_ms;
    set_state(o, ord, r->state, r->ts_ms);
    if (r->state == ST_HELD) set_at(o, ord, ST_ACCEPTED, r->ts_ms);
    ord->amount_minor = r->amount_minor;
    ord->expires_at_ms = r->expires_at_ms;
    ord->level = r->level;
    ord->parent_no = (uint32_t)r->parent_no;
    ord->last_lsn = lsn;
    copy_str(ord->bank, sizeof ord->bank, r->bank);
    copy_str(ord->account, sizeof ord->account, r->account);
    copy_str(ord->currency, sizeof ord->currency, r->currency);
    copy_str(ord->agent, sizeof ord->agent, r->agent);
    ord->order_reason_off = sp_put(o, r->reason);
    ord->note_off = sp_put(o, r->note);
    ord->lists_off = sp_put(o, r->list);
    ord->doc_off = sp_put(o, r->doc);
    if (add_request(o, r, REQ_ORDER, ord->no, lsn, err, errcap) || add_case(o, ord, r->case_id, err, errcap)) return -1;
    ord->request_idx = o->nreq;
    akey k = {ord->bank, ord->account};
    uint64_t h = acct_hash(ord->bank, ord->account);
    htab_slot *s = htab_lookup(&o->acct_idx, h, &k, acct_eq, o);
    if (s->val) {
        s->val = ord->no; /* the newest order on the account is the one that can be live */
    } else if (htab_fill(&o->acct_idx, s, h, ord->no) != 0) {
        snprintf(err, errcap, "account index full");
        return -1;
    }
    if (ord->parent_no) {
        order *p = orders_get(o, ord->parent_no);
        if (!p) {
            snprintf(err, errcap, "order %u names unknown parent %u", ord->no, ord->parent_no);
            return -1;
        }
        if (p->last_child)
            o->v[p->last_child].next_sibling = ord->no;
        else
            p->first_child = ord->no;
        p->last_child = ord->no;
        /* A cascade child belongs to every case of its parent (SPEC §3), as they stand now. */
        for (uint32_t l = p->cases_head; l && ord->ncases < ORDER_CASES_MAX; l = o->links[l].next) {
            const case_ent *pc = &o->cases[o->links[l].val];
            if (add_case(o, ord, (rec_str){pc->id, (uint32_t)strlen(pc->id)}, err, errcap)) return -1;
        }
    }
    if (sched_push(&o->expiry, ord->expires_at_ms, ord->no)) {
        snprintf(err, errcap, "expiry schedule full");
        return -1;
    }
    assert(ord->no == r->order_no && ord->request_idx == o->nreq && o->req[o->nreq].order_no == ord->no);
    assert(ord->parent_no < ord->no); /* a cascade child comes after its parent */
    if (ord->state == ST_ACCEPTED && schedule_deadline(o, ord, r->ts_ms)) {
        snprintf(err, errcap, "out of memory (overdue schedule)");
        return -1;
    }
    return 0;
}

static int apply_merge(orders *o, order *ord, const order_rec *r, uint64_t lsn, char *err, size_t errcap) {
    if (add_request(o, r, REQ_MERGE, ord->no, lsn, err, errcap) || add_case(o, ord, r->case_id, err, errcap))
        return -1;
    ord->amount_minor = r->amount_minor;
    if (r->expires_at_ms > ord->expires_at_ms) {
        ord->expires_at_ms = r->expires_at_ms;
        if (sched_push(&o->expiry, ord->expires_at_ms, ord->no)) {
            snprintf(err, errcap, "expiry schedule full");
            return -1;
        }
    }
    if (r->doc.len && !ord->doc_off) ord->doc_off = sp_put(o, r->doc);
    ord->last_lsn = lsn;
    return 0;
}

static bool answered_state(uint8_t st) {
    return st == ST_CONFIRMED || st == ST_PARTIAL || st == ST_NOT_FOUND || st == ST_REJECTED || st == ST_FUNDS_MOVED;
}

static int apply_state(orders *o, order *ord, const order_rec *r, uint64_t lsn, char *err, size_t errcap) {
    if (r->state <= ST_NONE || r->state >= ST__COUNT || r->state == ST_ACCEPTED) {
        snprintf(err, errcap, "bad state %u for order %u", r->state, ord->no);
        return -1;
    }
    set_state(o, ord, r->state, r->ts_ms);
    if (answered_state(r->state)) {
        ord->answer_state = r->state;
        ord->frozen_minor = r->frozen_minor;
        if (r->reason.len) ord->reason_off = sp_put(o, r->reason);
        if (r->onward_count) {
            ord->onward_off = sp_put_onward(o, r->onward, r->onward_count);
            ord->onward_count = (uint8_t)r->onward_count;
        }
    }
    assert(ord->onward_count <= SG_ONWARD_MAX && (ord->onward_count == 0) == (ord->onward_off == 0));
    ord->last_lsn = lsn;
    return 0;
}

/* What holds for every order after any record was applied. */
static void check_order(const orders *o, const order *ord) {
    assert(ord->no >= 1 && ord->no <= o->n && &o->v[ord->no] == ord);
    assert(ord->state > ST_NONE && ord->state < ST__COUNT && order_at_ms(o, ord, ord->state) != 0);
    assert(ord->kind == KIND_STOP || ord->kind == KIND_FREEZE);
    assert(ord->request_idx >= 1 && ord->request_idx <= o->nreq);
    assert(ord->ncases <= ORDER_CASES_MAX && ord->parent_no < ord->no);
    assert(o->sp_len <= o->sp_cap && o->nlinks <= o->max_links && o->nreq <= o->max_req);
    (void)o;
    (void)ord;
}

int orders_apply(orders *o, const order_rec *r, uint64_t lsn, char *err, size_t errcap) {
    uint32_t links_before = o->nlinks, cases_before = o->ncases;
    uint32_t orders_before = o->n;
    int rc = orders_apply_one(o, r, lsn, err, errcap);
    if (o->pf) note_use(o);
    if (rc == 0) {
        check_order(o, orders_get(o, r->order_no));
        assert(orders_get(o, r->order_no)->last_lsn == lsn);
        /* Pair assertion with orders_room(): a record never takes more than it reserved. */
        assert(o->nlinks - links_before <= (r->type == REC_ORDER ? LINKS_ORDER_MAX : LINKS_RECORD_MAX));
        assert(o->ncases - cases_before <= 1 && o->n - orders_before <= 1);
        uint64_t counted = 0;
        for (int s = ST_NONE; s < ST__COUNT; s++) counted += o->state_count[s];
        assert(counted == o->n && o->state_count[ST_NONE] == 0); /* every order in one state */
    }
    return rc;
}

static int orders_apply_one(orders *o, const order_rec *r, uint64_t lsn, char *err, size_t errcap) {
    if (r->type == REC_ORDER) return apply_order(o, r, lsn, err, errcap);
    order *ord = orders_get(o, r->order_no);
    if (!ord) {
        snprintf(err, errcap, "%s record for unknown order %llu", record_type_name(r->type),
                 (unsigned long long)r->order_no);
        return -1;
    }
    /* Records about one order are applied in journal order. */
    assert(lsn > ord->last_lsn);
    switch (r->type) {
    case REC_MERGE: return apply_merge(o, ord, r, lsn, err, errcap);
    case REC_STATE: return apply_state(o, ord, r, lsn, err, errcap);
    case REC_RELEASE:
        if (add_request(o, r, REQ_RELEASE, ord->no, lsn, err, errcap)) return -1;
        set_state(o, ord, ST_RELEASED, r->ts_ms);
        if (r->reason.len && !ord->reason_off) ord->reason_off = sp_put(o, r->reason);
        if (r->doc.len) ord->release_doc_off = sp_put(o, r->doc);
        ord->last_lsn = lsn;
        return 0;
    case REC_EXTEND:
        if (add_request(o, r, REQ_EXTEND, ord->no, lsn, err, errcap)) return -1;
        ord->expires_at_ms = r->expires_at_ms;
        ord->last_lsn = lsn;
        if (sched_push(&o->expiry, ord->expires_at_ms, ord->no) == 0) return 0;
        snprintf(err, errcap, "expiry schedule full");
        return -1;
    case REC_CONFIRM:
        set_state(o, ord, ST_ACCEPTED, r->ts_ms);
        ord->last_lsn = lsn;
        return schedule_deadline(o, ord, r->ts_ms);
    default: snprintf(err, errcap, "unknown record type %u", r->type); return -1;
    }
}

/* --- schedules ------------------------------------------------------------------------ */

uint32_t orders_next_expired(orders *o, int64_t now_ms) {
    while (o->expiry.n && o->expiry.v[0].t_ms <= now_ms) {
        sched_ent e = sched_pop(&o->expiry);
        order *ord = &o->v[e.no];
        /* Stale entries (extended, released, already expired) are skipped here. */
        if (ord->expires_at_ms == e.t_ms && order_is_live(ord, INT64_MIN)) return e.no;
    }
    return 0;
}

uint32_t orders_next_overdue(orders *o, int64_t now_ms) {
    while (o->overdue.n && o->overdue.v[0].t_ms <= now_ms) {
        sched_ent e = sched_pop(&o->overdue);
        order *ord = &o->v[e.no];
        /* ACCEPTED/SENT: the deadline passed; OVERDUE: time to ask again. Stale entries
         * (answered, released, rescheduled) are skipped. */
        bool waiting =
            ord->state == ST_ACCEPTED || ord->state == ST_SENT || ord->state == ST_OVERDUE;
        if (waiting && ord->resend_at_ms == e.t_ms) return e.no;
    }
    return 0;
}

int orders_schedule_resend(orders *o, order *ord, int64_t at_ms) {
    ord->resend_at_ms = at_ms;
    return sched_push(&o->overdue, at_ms, ord->no);
}

int64_t orders_next_due_ms(const orders *o) {
    int64_t t = INT64_MAX;
    if (o->expiry.n) t = o->expiry.v[0].t_ms;
    if (o->overdue.n && o->overdue.v[0].t_ms < t) t = o->overdue.v[0].t_ms;
    return t;
}
