/*
 * engine: every decision about orders. The pattern is always the same and is the reason the
 * gateway survives kill -9: validate against the in-memory state -> build one journal record
 * -> journal_append -> orders_apply(the same record) -> reply held until that lsn is durable.
 * Instructions leave for the bank only from the outbox, and only once the record that created
 * them is durable, so the bank never hears of an order the journal could forget.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "account.h"
#include "clock.h"
#include "follower.h"
#include "gateway.h"
#include "mem.h"

#define RELEASE_INSTR_BIT (1ULL << 62) /* instruction ids of RELEASE instructions */
#define RESEND_BACKOFF_MAX_MS (5 * 60 * 1000) /* an OVERDUE instruction is re-sent at least this often */
/* Room kept in the open journal batch for one plugin poll's results: each may be the
 * largest answer (a FUNDS_MOVED with SG_ONWARD_MAX onward transfers, ~1.5 KB). */
#define RESULT_RECORD_BYTES JOURNAL_REC_BYTES(RECORD_RESULT_PAYLOAD_MAX)
_Static_assert(RESULT_RECORD_BYTES <= JOURNAL_RECORD_BYTES_MAX,
               "a bank's answer fits one journal record");
_Static_assert(SG_POLL_RESULTS_MAX *RESULT_RECORD_BYTES + 2 * JOURNAL_FRAME_OVERHEAD +
                       sizeof(journal_seg_hdr) <
                   JOURNAL_BUF_BYTES / 2,
               "one poll's results fit half a journal batch buffer");

const char *answer_name(int a) {
    static const char *n[] = {"ACCEPTED", "DUPLICATE", "MERGED", "HELD", "RELEASED", "EXTENDED", "CONFIRMED"};
    return (unsigned)a < sizeof n / sizeof n[0] ? n[a] : "?";
}

static void refuse(engine_answer *a, const char *code, const char *fmt, const char *arg) {
    a->code = code;
    snprintf(a->why, sizeof a->why, fmt, arg);
}


static uint64_t fp_str(uint64_t h, rec_str s) { return XXH3_64bits_withSeed(s.p ? s.p : "", s.len, h ^ (s.len + 1)); }

/* What makes two requests "the same" for idempotency: every field as the client gave it. */
static uint64_t fingerprint_order(const order_req *rq) {
    uint64_t h = XXH3_64bits(&rq->kind, 1);
    h = fp_str(h, (rec_str){rq->bank, (uint32_t)strlen(rq->bank)});
    h = fp_str(h, (rec_str){rq->account, (uint32_t)strlen(rq->account)});
    h = fp_str(h, rq->case_id);
    h = XXH3_64bits_withSeed(&rq->amount_minor, 8, h);
    h = fp_str(h, rq->currency_given ? (rec_str){rq->currency, 3} : (rec_str){0});
    h = XXH3_64bits_withSeed(&rq->ttl_s, 8, h);
    h = fp_str(h, rq->reason);
    h = fp_str(h, rq->note);
    h = fp_str(h, rq->doc);
    return h;
}

static bool journal_room(gateway *gw) {
    return journal_has_room(&gw->j, JOURNAL_RECORD_BYTES_MAX - 64) && durview_room(&gw->dv, 1);
}

/* The disk refuses our writes (full, I/O error): the batch in flight is being retried, and
 * new requests are refused with a reason instead of queueing behind it - an agent must know
 * at once that this order is NOT taken, and read-only commands keep being answered. */
bool engine_journal_failing(const gateway *gw, engine_answer *a) {
    if (gw->j.last_error == 0) return false;
    a->code = "ERR BUSY";
    snprintf(a->why, sizeof a->why, "journal cannot write (%s: %s); not acknowledged, retry with the same request_id",
             strerrorname_np(gw->j.last_error), strerror(gw->j.last_error));
    return true;
}

int engine_init(gateway *gw, char *err, size_t errcap) {
    outbox *ob = &gw->ob;
    uint64_t cap = gw->cfg.max_outbox ? gw->cfg.max_outbox : (uint64_t)OUTBOX_PER_ORDER * gw->cfg.max_orders;
    if (cap > OUTBOX_MAX_LIMIT) cap = OUTBOX_MAX_LIMIT;
    if (obring_init(ob, (uint32_t)cap) != 0) {
        snprintf(err, errcap, "cannot reserve an outbox of %llu instructions", (unsigned long long)cap);
        return -1;
    }
    return 0;
}

void engine_free(gateway *gw) { obring_free(&gw->ob); }

static bool outbox_room(const gateway *gw) { return obring_room(&gw->ob); }

/* An instruction that would not fit the outbox is refused before its record is journaled:
 * the client hears ERR BUSY and may retry with the same request_id. */
static bool outbox_full(gateway *gw, engine_answer *a) {
    if (outbox_room(gw)) return false;
    a->code = "ERR BUSY";
    snprintf(a->why, sizeof a->why, "outbox full: %u instructions wait for their bank (max_outbox); retry later",
             gw->ob.len);
    return true;
}

/* Callers checked outbox_room() before journaling what this instruction belongs to. */
static void outbox_push(gateway *gw, uint64_t lsn, uint32_t no, uint8_t kind) {
    assert(no >= 1 && no <= gw->o.n && lsn <= journal_last_lsn(&gw->j));
    assert(kind == SG_INSTR_STOP || kind == SG_INSTR_FREEZE || kind == SG_INSTR_RELEASE);
    obring_push(&gw->ob, (outbox_ent){lsn, no, kind});
}

static int64_t ttl_ms_for(gateway *gw, uint8_t kind, int64_t ttl_s) {
    if (!ttl_s) ttl_s = kind == KIND_FREEZE ? gw->cfg.freeze_ttl_s : gw->cfg.stop_ttl_s;
    return ttl_s * 1000;
}

/* SPEC §4.2: no order lives past its kind's maximum TTL from now - a STOP/FREEZE's TTL and
 * an EXTEND alike. Refused (not cut down) so that the agent knows the lifetime it asked for
 * was not granted; false with a filled. A pure function of the request and the config,
 * checked before anything is journaled. */
static bool ttl_allowed(gateway *gw, uint8_t kind, int64_t ttl_s, engine_answer *a) {
    int64_t max_s = kind == KIND_FREEZE ? gw->cfg.freeze_ttl_max_s : gw->cfg.stop_ttl_max_s;
    if (ttl_s <= max_s) return true;
    a->code = "ERR SYNTAX";
    snprintf(a->why, sizeof a->why,
             "TTL %lld s is past the %s maximum of %lld s ([gateway] %s); nothing was changed",
             (long long)ttl_s, order_kind_name(kind), (long long)max_s,
             kind == KIND_FREEZE ? "freeze_ttl_max" : "stop_ttl_max");
    return false;
}

/* A request id seen before: its first answer again (DUPLICATE), or IDEMPOTENCY when the
 * fields differ. false when the request id is new. */
/* A request id seen before gets its first answer again (DUPLICATE) when the same request
 * (same fields, op_ok: an op that fits) comes back, else IDEMPOTENCY. */
static void answer_again(const request *prev, uint64_t fp, bool op_ok, engine_answer *a) {
    if (prev->fingerprint != fp || !op_ok) {
        refuse(a, "ERR IDEMPOTENCY", "request_id %s was used before with different fields", prev->id);
        return;
    }
    a->status = ANS_DUPLICATE;
    a->order_no = prev->order_no;
    a->lsn = prev->lsn;
}

static bool order_seen(gateway *gw, const order_req *rq, uint64_t fp, engine_answer *a) {
    const request *prev = orders_find_request(&gw->o, rq->request_id.p, rq->request_id.len);
    if (!prev) return false;
    answer_again(prev, fp, prev->op == REQ_ORDER || prev->op == REQ_MERGE, a);
    return true;
}

/* commit_record's failure as the engine's entry points return it: -EAGAIN (no room yet: the
 * caller waits), else ERR BUSY with the journal's reason. */
static int record_refused(int64_t lsn, engine_answer *a) {
    assert(lsn < 0);
    if ((int)lsn == -EAGAIN) return -EAGAIN;
    refuse(a, "ERR BUSY", "journal: %s", strerror((int)-lsn));
    return 0;
}

/* A second request on an account with a live order joins it (MERGED): its case, the larger
 * amount, the later expiry. r holds the request's common fields. */
static int order_merge(gateway *gw, const order_req *rq, order *live, order_rec *r, engine_answer *a) {
    orders *o = &gw->o;
    if (!orders_room(o, REC_MERGE) ||
        (!order_has_case(o, live, rq->case_id.p, rq->case_id.len) && live->ncases >= ORDER_CASES_MAX)) {
        refuse(a, "ERR TOOBIG", "%s", "the live order cannot take another request or case");
        return 0;
    }
    r->type = REC_MERGE;
    r->order_no = live->no;
    /* 0 asks for everything; otherwise the larger ask wins. */
    r->amount_minor = (live->amount_minor == 0 || rq->amount_minor == 0)
                          ? 0
                          : (rq->amount_minor > live->amount_minor ? rq->amount_minor : live->amount_minor);
    int64_t exp = gw->now_ms + ttl_ms_for(gw, rq->kind, rq->ttl_s);
    r->expires_at_ms = exp > live->expires_at_ms ? exp : live->expires_at_ms;
    int64_t lsn = commit_record(&gw->commit, r);
    if (lsn < 0) return record_refused(lsn, a);
    a->status = ANS_MERGED;
    a->order_no = live->no;
    a->lsn = (uint64_t)lsn;
    assert(live->last_lsn == (uint64_t)lsn && live->expires_at_ms == r->expires_at_ms);
    return 0;
}

/* The names of the lists in mask, comma-separated, into names (room for every list). */
static size_t list_names(gateway *gw, uint64_t mask, char names[SGL_LISTS_MAX * SGL_LIST_NAME_MAX]) {
    size_t nl = 0, cap = SGL_LISTS_MAX * SGL_LIST_NAME_MAX;
    names[0] = 0;
    for (uint64_t m = mask; m; m &= m - 1) {
        const char *nm = lists_name(gw, (unsigned)__builtin_ctzll(m));
        nl += (size_t)snprintf(names + nl, cap - nl, "%s%s", nl ? "," : "", nm);
    }
    assert(nl < cap);
    return nl;
}

/* A new order: HELD on a protected account (a supervisor CONFIRMs it), else ACCEPTED and its
 * instruction queued for the bank. r holds the request's common fields. */
static int order_new(gateway *gw, const order_req *rq, order_rec *r, engine_answer *a) {
    orders *o = &gw->o;
    if (!orders_room(o, REC_ORDER)) {
        refuse(a, "ERR TOOBIG", "%s", "order table full (raise [gateway] max_orders)");
        return 0;
    }
    sg_verdict v;
    lists_lookup(gw, rq->bank, rq->account, &v);
    bool held = (v.mask & gw->ls.protected_mask) != 0;
    if (!held && outbox_full(gw, a)) return 0;
    char names[SGL_LISTS_MAX * SGL_LIST_NAME_MAX];
    size_t nl = list_names(gw, v.mask, names);
    r->type = REC_ORDER;
    r->order_no = orders_next_no(o);
    r->kind = rq->kind;
    r->state = held ? ST_HELD : ST_ACCEPTED;
    r->list = (rec_str){names, (uint32_t)nl};
    r->parent_no = rq->parent_no;
    r->level = rq->level;
    r->bank = (rec_str){rq->bank, (uint32_t)strlen(rq->bank)};
    r->account = (rec_str){rq->account, (uint32_t)strlen(rq->account)};
    r->amount_minor = rq->amount_minor;
    r->currency = (rec_str){rq->currency, 3};
    r->reason = rq->reason;
    r->note = rq->note;
    r->expires_at_ms = gw->now_ms + ttl_ms_for(gw, rq->kind, rq->ttl_s);
    int64_t lsn = commit_record(&gw->commit, r);
    if (lsn < 0) return record_refused(lsn, a);
    /* The order now exists as journaled: numbered in sequence, findable by its request id. */
    assert(o->n == r->order_no && o->v[o->n].state == r->state);
    assert(orders_find_request(o, rq->request_id.p, rq->request_id.len)->order_no == r->order_no);
    if (!held)
        outbox_push(gw, (uint64_t)lsn, (uint32_t)r->order_no,
                    rq->kind == KIND_FREEZE ? SG_INSTR_FREEZE : SG_INSTR_STOP);
    a->status = held ? ANS_HELD : ANS_ACCEPTED;
    a->order_no = (uint32_t)r->order_no;
    a->lsn = (uint64_t)lsn;
    return 0;
}

int engine_order(gateway *gw, const order_req *rq, engine_answer *a) {
    memset(a, 0, sizeof *a);
    uint64_t fp = fingerprint_order(rq);
    if (order_seen(gw, rq, fp, a)) return 0;
    if (!router_route(gw, rq->bank)) {
        refuse(a, "ERR UNKNOWNBANK", "no route for bank %s (add a [route] or [route default])", rq->bank);
        return 0;
    }
    if (!ttl_allowed(gw, rq->kind, rq->ttl_s, a)) return 0;
    if (engine_journal_failing(gw, a)) return 0;
    if (!journal_room(gw)) return -EAGAIN;
    order_rec r = {0};
    r.request_id = rq->request_id;
    r.fingerprint = fp;
    r.case_id = rq->case_id;
    r.doc = rq->doc;
    r.agent = (rec_str){rq->agent, (uint32_t)strlen(rq->agent)};
    r.ts_ms = gw->now_ms;
    order *live = orders_live_on_account(&gw->o, rq->bank, rq->account, gw->now_ms);
    return live ? order_merge(gw, rq, live, &r, a) : order_new(gw, rq, &r, a);
}

static uint64_t fingerprint_simple(uint8_t op, uint32_t no, int64_t v, rec_str s) {
    uint64_t h = XXH3_64bits(&op, 1);
    h = XXH3_64bits_withSeed(&no, 4, h);
    h = XXH3_64bits_withSeed(&v, 8, h);
    return fp_str(h, s);
}

/* Shared front of RELEASE and EXTEND: idempotency, then the order must be live. */
static bool lifecycle_front(gateway *gw, rec_str rid, uint8_t op, uint32_t no, uint64_t fp, engine_answer *a) {
    const request *prev = orders_find_request(&gw->o, rid.p, rid.len);
    if (prev) {
        answer_again(prev, fp, prev->op == op, a);
        return false;
    }
    order *ord = orders_get(&gw->o, no);
    if (!order_is_live(ord, gw->now_ms)) {
        char id[32];
        order_id_format(id, sizeof id, no);
        a->code = "ERR STATE";
        snprintf(a->why, sizeof a->why, "order %s is %s, not live", id, order_state_name(ord->state));
        return false;
    }
    if (!orders_room(&gw->o, REC_RELEASE)) {
        refuse(a, "ERR TOOBIG", "%s", "request table full (raise [gateway] max_orders)");
        return false;
    }
    return true;
}

/* SPEC §4.2, who may undo what. Checked after idempotency (a retry gets its original answer)
 * and before anything is journaled: a refused request leaves no record, so replay makes
 * exactly the decisions that were made. false with a filled. */
static bool may_undo(const order *ord, uint8_t op, const engine_actor *who, bool has_doc,
                     engine_answer *a) {
    char id[32];
    order_id_format(id, sizeof id, ord->no);
    const char *verb = op == REQ_RELEASE ? "RELEASE" : "EXTEND";
    bool freeze_release = op == REQ_RELEASE && ord->kind == KIND_FREEZE;
    if (!who->supervisor) {
        a->code = "NOPERM";
        if (strcmp(ord->agent, who->name) != 0)
            snprintf(a->why, sizeof a->why,
                     "order %s was given by %s: an agent may %s only its own orders", id,
                     ord->agent, verb);
        else if (ord->state == ST_HELD)
            snprintf(a->why, sizeof a->why,
                     "order %s is HELD: only a supervisor may %s or CONFIRM it", id, verb);
        else if (freeze_release)
            snprintf(a->why, sizeof a->why,
                     "order %s is a judicial FREEZE: only a supervisor may release it (DOC)", id);
        else
            a->code = NULL;
        return a->code == NULL;
    }
    if (freeze_release && !has_doc) {
        a->code = "ERR SYNTAX";
        snprintf(a->why, sizeof a->why, "RELEASE of judicial FREEZE %s needs DOC <legal_ref>", id);
        return false;
    }
    return true;
}

int engine_release(gateway *gw, rec_str rid, uint32_t no, rec_str reason, rec_str doc,
                   const engine_actor *who, engine_answer *a) {
    memset(a, 0, sizeof *a);
    uint64_t fp = fingerprint_simple(REQ_RELEASE, no, 0, reason);
    if (doc.len)
        fp = fp_str(fp, doc); /* without DOC: the fingerprint of journals before DOC existed */
    if (!lifecycle_front(gw, rid, REQ_RELEASE, no, fp, a)) return 0;
    if (!may_undo(orders_get(&gw->o, no), REQ_RELEASE, who, doc.len > 0, a)) return 0;
    if (engine_journal_failing(gw, a) || outbox_full(gw, a)) return 0;
    if (!journal_room(gw)) return -EAGAIN;
    order_rec r = {.type = REC_RELEASE,
                   .order_no = no,
                   .request_id = rid,
                   .fingerprint = fp,
                   .reason = reason,
                   .doc = doc,
                   .ts_ms = gw->now_ms,
                   .agent = {who->name, (uint32_t)strlen(who->name)}};
    int64_t lsn = commit_record(&gw->commit, &r);
    if (lsn < 0) return record_refused(lsn, a);
    assert(orders_get(&gw->o, no)->state == ST_RELEASED);
    /* The bank lifts its hold too; its acknowledgement changes nothing here. */
    outbox_push(gw, (uint64_t)lsn, no, SG_INSTR_RELEASE);
    a->status = ANS_RELEASED;
    a->order_no = no;
    a->lsn = (uint64_t)lsn;
    return 0;
}

int engine_extend(gateway *gw, rec_str rid, uint32_t no, int64_t ttl_s, const engine_actor *who,
                  engine_answer *a) {
    memset(a, 0, sizeof *a);
    uint64_t fp = fingerprint_simple(REQ_EXTEND, no, ttl_s, (rec_str){0});
    if (!lifecycle_front(gw, rid, REQ_EXTEND, no, fp, a)) return 0;
    order *ord = orders_get(&gw->o, no);
    if (!may_undo(ord, REQ_EXTEND, who, false, a) || !ttl_allowed(gw, ord->kind, ttl_s, a))
        return 0;
    if (engine_journal_failing(gw, a)) return 0;
    if (!journal_room(gw)) return -EAGAIN;
    int64_t exp = gw->now_ms + ttl_s * 1000;
    order_rec r = {.type = REC_EXTEND,
                   .order_no = no,
                   .request_id = rid,
                   .fingerprint = fp,
                   .expires_at_ms = exp > ord->expires_at_ms ? exp : ord->expires_at_ms,
                   .ts_ms = gw->now_ms,
                   .agent = {who->name, (uint32_t)strlen(who->name)}};
    int64_t lsn = commit_record(&gw->commit, &r);
    if (lsn < 0) return record_refused(lsn, a);
    assert(ord->expires_at_ms == r.expires_at_ms); /* an EXTEND never shortens */
    a->status = ANS_EXTENDED;
    a->order_no = no;
    a->lsn = (uint64_t)lsn;
    return 0;
}

/* Why onward transfer i of a FUNDS_MOVED order gets no child STOP, or NULL when it does.
 * Pure function of the journaled answer and the config, so STATUS can say it later too. */
const char *engine_onward_skip(gateway *gw, const order *parent, const sg_onward *w, char bank[BANK_LEN_MAX + 1],
                               char account[ACCOUNT_LEN_MAX + 1]) {
    const char *why;
    if (account_bank_normalise(w->bank, strlen(w->bank), bank, &why) != 0) return "invalid bank";
    if (account_normalise(w->account, strlen(w->account), account, &why) != 0) return "invalid account";
    if (w->amount_minor < 0 || w->amount_minor > AMOUNT_MINOR_MAX) return "invalid amount";
    if (w->amount_minor < gw->cfg.cascade_min_amount) return "below min_amount";
    if (parent->level + 1 > gw->cfg.cascade_max_depth) return "max_depth";
    if (!router_route(gw, bank)) return "unknown bank";
    return NULL;
}

/* Follow the money: one child STOP per onward transfer that qualifies. The request id
 * "cascade:SG-<parent>:<i>" makes this idempotent, so it is simply run again after a restart
 * (or when the journal had no room) and finishes a cascade without duplicates. */
int engine_cascade(gateway *gw, uint32_t parent_no) {
    order *p = orders_get(&gw->o, parent_no);
    if (!p || p->state != ST_FUNDS_MOVED) return 0;
    const sg_onward *ow = orders_onward(&gw->o, p);
    char pid[32];
    order_id_format(pid, sizeof pid, parent_no);
    for (uint32_t i = 0; i < p->onward_count; i++) {
        order_req rq = {.kind = KIND_STOP, .agent = "cascade", .parent_no = parent_no, .level = p->level + 1};
        const char *why = engine_onward_skip(gw, p, &ow[i], rq.bank, rq.account);
        if (why) continue;
        char rid[REQUEST_ID_LEN_MAX + 1];
        int n = snprintf(rid, sizeof rid, "cascade:%s:%u", pid, i + 1);
        rq.request_id = (rec_str){rid, (uint32_t)n};
        const char *case_id = p->cases_head ? gw->o.cases[gw->o.links[p->cases_head].val].id : "";
        rq.case_id = (rec_str){case_id, (uint32_t)strlen(case_id)};
        rq.amount_minor = ow[i].amount_minor;
        memcpy(rq.currency, p->currency, sizeof rq.currency);
        rq.currency_given = true;
        engine_answer a;
        /* No journal room now, or the disk or the outbox refuses (ERR BUSY): the tick runs
         * this cascade again (done ones are DUPLICATE). */
        if (engine_order(gw, &rq, &a) == -EAGAIN || (a.code && !strcmp(a.code, "ERR BUSY"))) {
            if (gw->cascade_retry_len < CASCADE_RETRY_MAX) gw->cascade_retry[gw->cascade_retry_len++] = parent_no;
            return -EAGAIN;
        }
        if (a.code) LOGW(gw, "cascade %s -> %s/%s refused: %s %s", pid, rq.bank, rq.account, a.code, a.why);
        else if (a.status == ANS_ACCEPTED || a.status == ANS_MERGED)
            LOGI(gw, "cascade: %s moved %lld to %s/%s: SG-%u %s (level %u)", pid, (long long)rq.amount_minor, rq.bank,
                 rq.account, a.order_no, answer_name(a.status), rq.level);
    }
    return 0;
}

static int mark_state(gateway *gw, uint32_t no, uint8_t st);

void engine_on_delivered(gateway *gw, plugin_inst *p, uint64_t instruction_id) {
    p->delivered++;
    if (instruction_id & RELEASE_INSTR_BIT) return;
    order *ord = orders_get(&gw->o, instruction_id);
    if (ord) ord->in_plugin = false;
    /* A re-send of an order already SENT (or answered) changes nothing. */
    if (ord && ord->state == ST_ACCEPTED && journal_room(gw)) mark_state(gw, ord->no, ST_SENT);
}

int engine_confirm(gateway *gw, uint32_t no, const char *agent, engine_answer *a) {
    memset(a, 0, sizeof *a);
    order *ord = orders_get(&gw->o, no);
    if (ord->state != ST_HELD || !order_is_live(ord, gw->now_ms)) {
        char id[32];
        order_id_format(id, sizeof id, no);
        a->code = "ERR STATE";
        snprintf(a->why, sizeof a->why, "order %s is %s, not HELD", id, order_state_name(ord->state));
        return 0;
    }
    if (engine_journal_failing(gw, a) || outbox_full(gw, a)) return 0;
    if (!journal_room(gw)) return -EAGAIN;
    order_rec r = {.type = REC_CONFIRM, .order_no = no, .ts_ms = gw->now_ms, .agent = {agent, (uint32_t)strlen(agent)}};
    int64_t lsn = commit_record(&gw->commit, &r);
    if (lsn < 0) return record_refused(lsn, a);
    assert(ord->state == ST_ACCEPTED);
    outbox_push(gw, (uint64_t)lsn, no, ord->kind == KIND_FREEZE ? SG_INSTR_FREEZE : SG_INSTR_STOP);
    a->status = ANS_CONFIRMED;
    a->order_no = no;
    a->lsn = (uint64_t)lsn;
    return 0;
}

void engine_auto_stop(gateway *gw, const char *bank, const char *account, const sg_verdict *v) {
    uint64_t hit = v->mask & gw->ls.auto_stop_mask;
    if (!cluster_leads(gw)) return; /* a follower's CHECK: the leader's own CHECKs stop */
    /* A protected account (payroll, public bodies) is never stopped without a supervisor. */
    if (!hit || v->frozen || (v->mask & gw->ls.protected_mask)) return;
    order_req rq = {.kind = KIND_STOP, .agent = "auto"};
    snprintf(rq.bank, sizeof rq.bank, "%s", bank);
    snprintf(rq.account, sizeof rq.account, "%s", account);
    /* The request id makes it once per account, across restarts too: a second hit is a
     * DUPLICATE that changes nothing. */
    char rid[REQUEST_ID_LEN_MAX + 1], case_id[CASE_LEN_MAX + 1];
    int n = snprintf(rid, sizeof rid, "auto:%s:%s", bank, account);
    rq.request_id = (rec_str){rid, (uint32_t)n};
    const char *entry_case = lists_case_str(gw, v->case_ref);
    n = entry_case[0] ? snprintf(case_id, sizeof case_id, "%s", entry_case)
                      : snprintf(case_id, sizeof case_id, "AUTO-%s", lists_name(gw, (unsigned)__builtin_ctzll(hit)));
    rq.case_id = (rec_str){case_id, (uint32_t)(n < (int)sizeof case_id ? n : (int)sizeof case_id - 1)};
    snprintf(rq.currency, sizeof rq.currency, "%s", gw->cfg.currency);
    engine_answer a;
    if (engine_order(gw, &rq, &a) == -EAGAIN) return; /* journal full: the next hit tries again */
    if (a.code) {
        LOGW(gw, "auto_stop %s/%s refused: %s %s", bank, account, a.code, a.why);
    } else if (a.status == ANS_ACCEPTED || a.status == ANS_HELD) {
        gw->ls.auto_stops++;
        LOGI(gw, "auto_stop: SG-%u on %s/%s (list hit)", a.order_no, bank, account);
    }
}

static int mark_state(gateway *gw, uint32_t no, uint8_t st) {
    order_rec r = {.type = REC_STATE, .order_no = no, .state = st, .ts_ms = gw->now_ms};
    /* SENT, OVERDUE, EXPIRED: nobody waits for these to be durable (a SENT lost in a crash
     * only means the instruction is sent again): let them ride the next batch. */
    journal_lazy_next(&gw->j);
    int64_t lsn = commit_record(&gw->commit, &r);
    return lsn < 0 ? (int)lsn : 0;
}

static bool awaiting_answer(const order *ord) {
    return ord->state == ST_ACCEPTED || ord->state == ST_SENT || ord->state == ST_OVERDUE;
}

/* Hand one outbox entry to its bank plugin. -EAGAIN: try again later (plugin queue or journal
 * full); 0: done (sent, or no longer needed). */
static int send_one(gateway *gw, const outbox_ent *e) {
    order *ord = orders_get(&gw->o, e->order_no);
    assert(ord && e->lsn <= commit_acked_lsn(&gw->commit)); /* never tell the bank what the disk could forget */
    if (e->kind != SG_INSTR_RELEASE && !awaiting_answer(ord)) return 0;
    plugin_inst *p = router_route(gw, ord->bank);
    if (!p) {
        LOGW(gw, "order SG-%u: no route for bank %s any more; instruction not sent", ord->no, ord->bank);
        return 0;
    }
    if (!journal_room(gw)) return -EAGAIN;
    char id[32], parent[32] = "";
    order_id_format(id, sizeof id, ord->no);
    if (ord->parent_no) order_id_format(parent, sizeof parent, ord->parent_no);
    const char *case_id = ord->cases_head ? gw->o.cases[gw->o.links[ord->cases_head].val].id : "";
    sg_instruction ins = {
        .instruction_id = ord->no | (e->kind == SG_INSTR_RELEASE ? RELEASE_INSTR_BIT : 0),
        .order_id = id,
        .kind = (sg_instruction_kind)e->kind,
        .bank = ord->bank,
        .account = ord->account,
        .amount_minor = ord->amount_minor,
        .currency = ord->currency,
        .case_id = case_id,
        .reason = orders_str(&gw->o, ord->order_reason_off),
        .expires_at_ms = ord->expires_at_ms,
        .parent = parent,
        .attempt = (uint32_t)ord->attempts + 1,
    };
    int rc = p->ops->submit(p->state, &ins);
    if (rc == -EAGAIN) return -EAGAIN;
    if (rc == SG_SUBMIT_QUEUED) {
        /* The plugin confirms delivery later (host->delivered): SENT is journaled then. */
        p->submitted++;
        p->next_poll_us = 0;
        if (ord->attempts < 255) ord->attempts++;
        if (e->kind != SG_INSTR_RELEASE) ord->in_plugin = true;
        return 0;
    }
    p->submitted++;
    p->next_poll_us = 0; /* poll soon: the plugin may want a timer for this instruction */
    if (rc != 0) {
        LOGW(gw, "order %s: plugin %s refused the instruction (%d); will retry", id, p->name, rc);
        return -EAGAIN;
    }
    if (ord->attempts < 255) ord->attempts++;
    if (e->kind != SG_INSTR_RELEASE && ord->state == ST_ACCEPTED) return mark_state(gw, ord->no, ST_SENT);
    return 0;
}

static void outbox_drain(gateway *gw) {
    outbox_ent *e;
    while ((e = obring_front(&gw->ob)) != NULL) {
        if (e->lsn > commit_acked_lsn(&gw->commit)) break;
        if (send_one(gw, e) == -EAGAIN) break;
        obring_pop(&gw->ob);
    }
}

/* Entries looked ahead while a durable batch publishes (a burst's batch creates hundreds of
 * orders, each publish a random account slot and list-table line: issue 13). */
#define PUBLISH_AHEAD 8

typedef struct publish_ctx {
    gateway *gw;
    uint64_t durable_lsn;
} publish_ctx;

/* Prefetch what publishing the i-th entry still to drop will read: the account's index slot
 * (durview_live_on_account) and its list-table lines (ltab_get, ltab_put). */
static void publish_prefetch(gateway *gw, uint32_t i, uint64_t durable_lsn) {
    const order *ord = orders_get(&gw->o, durview_ahead_created(&gw->dv, i, durable_lsn));
    if (!ord) return;
    const void *lines[3];
    unsigned nl = lists_lines(gw, ord->bank, ord->account, lines);
    const void *a = orders_account_line(&gw->o, ord->bank, ord->account);
    if (a) lines[nl++] = a;
    for (unsigned k = 0; k < nl; k++) __builtin_prefetch(lines[k], 1);
}

static void publish_durable(void *ctx, uint32_t no) {
    publish_ctx *p = ctx;
    /* The entry dropped before this call is gone: the one PUBLISH_AHEAD after it is now at
     * PUBLISH_AHEAD - 1. */
    publish_prefetch(p->gw, PUBLISH_AHEAD - 1, p->durable_lsn);
    lists_sync_order(p->gw, no);
}

void engine_on_durable(gateway *gw, uint64_t durable_lsn) {
    /* First: replies and instructions released by this batch may be followed at once by
     * reads, which must see it. Readers of the shared-memory lists see an order's frozen
     * mark change only now that the record changing it is durable. */
    publish_ctx p = {gw, durable_lsn};
    for (uint32_t i = 0; i < PUBLISH_AHEAD - 1; i++) publish_prefetch(gw, i, durable_lsn);
    durview_advance(&gw->dv, &gw->o, durable_lsn, publish_durable, &p);
    lists_on_durable(gw, durable_lsn); /* list changes likewise: LIST.ADD/DEL/LOAD */
    if (cluster_leads(gw)) outbox_drain(gw); /* a follower never instructs a bank (SPEC §10) */
}

bool engine_room(gateway *gw) {
    return journal_has_room(&gw->j, SG_POLL_RESULTS_MAX * RESULT_RECORD_BYTES) &&
           durview_room(&gw->dv, SG_POLL_RESULTS_MAX);
}

/* An order's bank deadline, or its next re-send time, has come. */
static void overdue_one(gateway *gw, order *ord) {
    if (ord->state == ST_ACCEPTED || ord->state == ST_SENT) {
        /* Not yet delivered counts too: the agent must see that the bank does not have it in
         * time, whatever the reason (Redis down or refusing writes). */
        LOGW(gw, "order SG-%u at bank %s: no answer within %lld ms%s, OVERDUE", ord->no, ord->bank,
             (long long)gw->o.bank_deadline_ms,
             ord->state == ST_ACCEPTED ? " (not yet delivered to the bank)" : "");
        mark_state(gw, ord->no, ST_OVERDUE);
    }
    /* Ask again, same instruction id, backing off: deadline x 2^attempts, at most
     * RESEND_BACKOFF_MAX_MS; the bank dedupes, its first answer settles the order. Not before
     * the order's newest record is durable (it can go OVERDUE while its own record still
     * waits for a full disk, and the bank must never hear of an order the journal could
     * forget). Not while a plugin still holds it undelivered: a plugin never drops what it
     * took (docs/plugins.md), and a second copy would only queue behind the first and slow
     * the catch-up when the bank side returns. */
    /* A full outbox skips this re-send; the back-off below asks again later. */
    if (!ord->in_plugin && outbox_room(gw))
        outbox_push(gw, ord->last_lsn, ord->no,
                    ord->kind == KIND_FREEZE ? SG_INSTR_FREEZE : SG_INSTR_STOP);
    int64_t wait = gw->o.bank_deadline_ms << (ord->attempts < 8 ? ord->attempts : 8);
    if (orders_schedule_resend(&gw->o, ord,
                               gw->now_ms + (wait < RESEND_BACKOFF_MAX_MS ? wait : RESEND_BACKOFF_MAX_MS)) != 0)
        LOGW(gw, "order SG-%u: overdue schedule full, not re-sent again", ord->no);
}

void engine_tick(gateway *gw) {
    uint32_t no;
    /* Expiries, re-sends and cascades are the leader's to journal; a follower gets them
     * through the cluster log. */
    if (!cluster_leads(gw)) return;
    if (gw->cascade_retry_len && journal_room(gw)) {
        uint32_t n = gw->cascade_retry_len;
        gw->cascade_retry_len = 0;
        for (uint32_t i = 0; i < n; i++) engine_cascade(gw, gw->cascade_retry[i]);
    }
    while (journal_room(gw) && (no = orders_next_expired(&gw->o, gw->now_ms))) mark_state(gw, no, ST_EXPIRED);
    while (journal_room(gw) && (no = orders_next_overdue(&gw->o, gw->now_ms)))
        overdue_one(gw, &gw->o.v[no]);
    outbox_drain(gw);
}

static const uint8_t result_state[] = {
    [SG_RESULT_CONFIRMED] = ST_CONFIRMED, [SG_RESULT_PARTIAL] = ST_PARTIAL,     [SG_RESULT_NOT_FOUND] = ST_NOT_FOUND,
    [SG_RESULT_REJECTED] = ST_REJECTED,   [SG_RESULT_FUNDS_MOVED] = ST_FUNDS_MOVED,
};

uint64_t engine_on_result(gateway *gw, plugin_inst *p, const sg_result *res) {
    p->results++;
    /* Malformed first: a bad answer is counted as such whatever instruction it names. */
    if (res->status < SG_RESULT_CONFIRMED || res->status > SG_RESULT_FUNDS_MOVED || res->frozen_minor < 0 ||
        res->frozen_minor > AMOUNT_MINOR_MAX || res->onward_count > SG_ONWARD_MAX) {
        gw->m.results_bad++;
        LOGW(gw, "plugin %s: malformed result for instruction %llu ignored", p->name,
             (unsigned long long)res->instruction_id);
        return 0;
    }
    if (res->instruction_id & RELEASE_INSTR_BIT) return 0;
    order *ord = orders_get(&gw->o, res->instruction_id);
    if (!ord) {
        gw->m.results_unknown++;
        LOGW(gw, "plugin %s: result for unknown instruction %llu ignored", p->name,
             (unsigned long long)res->instruction_id);
        return 0;
    }
    if (!awaiting_answer(ord)) {
        gw->m.results_dup++; /* at-least-once delivery: a repeat answer changes nothing */
        return 0;
    }
    order_rec r = {.type = REC_STATE, .order_no = ord->no, .state = result_state[res->status],
                   .frozen_minor = res->frozen_minor, .ts_ms = gw->now_ms};
    assert(r.state >= ST_CONFIRMED && r.state <= ST_FUNDS_MOVED); /* status was range-checked above */
    size_t rl = res->reason ? strlen(res->reason) : 0;
    r.reason = (rec_str){res->reason, (uint32_t)(rl > REASON_LEN_MAX ? REASON_LEN_MAX : rl)};
    /* Every onward transfer is kept as the bank sent it (printable bytes only), valid or not:
     * the cascade decides per entry, and STATUS shows what it decided and why. */
    for (uint32_t i = 0; i < res->onward_count; i++) {
        const sg_onward *w = &res->onward[i];
        sg_onward *d = &r.onward[r.onward_count++];
        size_t bl = strnlen(w->bank, sizeof w->bank - 1), al = strnlen(w->account, sizeof w->account - 1);
        for (size_t k = 0; k < bl; k++) d->bank[k] = (w->bank[k] > ' ' && w->bank[k] < 127) ? w->bank[k] : '?';
        for (size_t k = 0; k < al; k++)
            d->account[k] = (w->account[k] >= ' ' && w->account[k] < 127) ? w->account[k] : '?';
        d->amount_minor = w->amount_minor;
    }
    /* Lazy too: an answer lost in a crash is asked for again (the instruction is re-sent),
     * and transports that acknowledge answers wait for durability themselves. */
    journal_lazy_next(&gw->j);
    int64_t lsn = commit_record(&gw->commit, &r);
    if (lsn >= 0) {
        assert(ord->state == r.state && ord->answer_state == r.state && ord->onward_count == r.onward_count);
        if (r.state == ST_FUNDS_MOVED) engine_cascade(gw, ord->no);
        return (uint64_t)lsn;
    } else {
        /* The poll only runs with room for its results; reaching here is a segment-creation
         * failure. The bank's answer is lost for now; OVERDUE re-sends will ask again. */
        LOGE(gw, "SG-%u: could not journal the bank's answer", ord->no);
        return 0;
    }
}

typedef struct recover_ctx {
    gateway *gw;
    uint64_t damaged_logged;
} recover_ctx;

static int replay_record(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *payload, uint32_t len) {
    gateway *gw = ((recover_ctx *)ctx)->gw;
    char err[256];
    int rc = commit_replay(&gw->commit, type, lsn, payload, len, err, sizeof err);
    if (rc != 0)
        LOGE(gw, "journal record %llu (%s): %s", (unsigned long long)lsn, record_type_name(type), err);
    return rc;
}

static void replay_ahead(void *ctx, uint16_t type, const uint8_t *payload, uint32_t len) {
    commit_replay_ahead(&((recover_ctx *)ctx)->gw->commit, type, payload, len);
}

#define DAMAGED_LOG_MAX 64 /* readable records of a damaged tail named one by one in the log */

/* A record found in a damaged part of the journal: name its order, so the operator knows
 * which orders to check whether the part is cut or restored. */
static void damaged_record(void *ctx, uint16_t type, uint64_t lsn, const uint8_t *payload,
                           uint32_t len, bool verified) {
    recover_ctx *rc = ctx;
    if (rc->damaged_logged++ >= DAMAGED_LOG_MAX) return;
    order_rec r;
    char id[32] = "?";
    if (record_decode(type, payload, len, &r) == 0 && r.order_no)
        order_id_format(id, sizeof id, r.order_no);
    LOGW(rc->gw, "journal: damaged part holds lsn %llu: %s of order %s%s", (unsigned long long)lsn,
         record_type_name(type), id,
         verified ? "" : " (its checksum fails: read as it is, unverified)");
}

static void log_recovery(gateway *gw, const journal_recovery *rec) {
    const journal_damage *d = &rec->damage;
    if (rec->tail_cut)
        LOGW(gw,
             "journal: torn tail cut in segment %llu at offset %llu (%llu bytes: %s); it was never "
             "acknowledged",
             (unsigned long long)rec->cut_seq, (unsigned long long)rec->cut_offset,
             (unsigned long long)rec->cut_bytes, rec->cut_why);
    if (d->cut)
        LOGE(gw,
             "journal: --truncate-damaged-tail: DROPPED the damaged tail of segment %llu at offset "
             "%llu "
             "(%llu bytes, lsn %llu..%llu, %llu records still readable, named above: %s); those "
             "records "
             "may have been acknowledged",
             (unsigned long long)d->seq, (unsigned long long)d->offset,
             (unsigned long long)d->bytes, (unsigned long long)d->first_lsn,
             (unsigned long long)d->last_lsn, (unsigned long long)d->readable, d->why);
    if (rec->upgraded)
        LOGI(gw, "journal: format version 1 segments read; new records go to a version 2 segment");
    if (rec->prealloc_errno)
        LOGW(gw, "journal: could not zero-fill the open segment (%s); it grows by appends",
             strerror(rec->prealloc_errno));
    else
        LOGI(gw, "journal: open segment zero-filled to segment_bytes in %.1f ms",
             rec->prealloc_ns / 1e6);
    LOGI(gw,
         "journal: replayed %llu records from %llu segments in %.1f ms; %u orders, next lsn %llu%s",
         (unsigned long long)rec->records, (unsigned long long)rec->segments, rec->replay_ns / 1e6,
         gw->o.n, (unsigned long long)gw->j.next_lsn,
         rec->clean_shutdown ? " (clean shutdown)" : "");
}

int engine_recover(gateway *gw, char *err, size_t errcap) {
    journal_recovery rec;
    recover_ctx rc = {.gw = gw};
    journal_opts o = {.segment_bytes = gw->cfg.segment_bytes,
                      .replay = replay_record,
                      .ahead = replay_ahead,
                      .damaged = damaged_record,
                      .ctx = &rc,
                      .truncate_damaged_tail = gw->truncate_damaged_tail,
                      .preallocate = true};
    o.keep_through_lsn = gw->keep_through_lsn;
    orders_replay_begin(&gw->o);
    int rc_open = journal_open(&gw->j, gw->cfg.journal_dir, &o, &rec, err, errcap);
    orders_replay_end(&gw->o);
    if (rc_open != 0) return -1;
    /* The batch buffers journal_open populated, written once more from user space: where the
     * first user-mode write to a page costs 6-11 us (shadow paging, mem.h) a cold burst paid
     * that on ~500 pages of them (~5 % of its CPU, issue 13). Here, not in journal_open: the
     * tools and tests that open a journal have no burst to come. */
    for (int i = 0; i < 2; i++) mem_touch(gw->j.batch[i].data, JOURNAL_BUF_BYTES);
    obring_warm(&gw->ob, OUTBOX_WARM_BYTES); /* likewise the outbox's front (obring.h) */
    log_recovery(gw, &rec);
    if (rec.kept_cut)
        LOGW(gw,
             "journal: cut after lsn %llu (segment %llu offset %llu, %llu bytes): this member "
             "fsynced them as leader but the cluster never committed them, so none of their "
             "orders was acknowledged",
             (unsigned long long)(gw->j.next_lsn - 1), (unsigned long long)rec.cut_seq,
             (unsigned long long)rec.cut_offset, (unsigned long long)rec.cut_bytes);
    return engine_resume_instructions(gw, err, errcap);
}

int engine_resume_instructions(gateway *gw, char *err, size_t errcap) {
    /* Instructions whose answer never came may have died with the old process or the old
     * leader (or the bank never got them): send them again, same instruction id. What the
     * outbox held is rebuilt from the orders, so nothing is queued twice. */
    obring_clear(&gw->ob);
    uint32_t resend = 0;
    for (uint32_t no = 1; no <= gw->o.n; no++) {
        order *ord = &gw->o.v[no];
        if (awaiting_answer(ord) && order_is_live(ord, gw->now_ms)) {
            /* Attempts are not journaled; a SENT order was sent at least once before. */
            if (ord->state != ST_ACCEPTED && ord->attempts == 0) ord->attempts = 1;
            if (!outbox_room(gw)) {
                snprintf(err, errcap, "more instructions await a bank answer than max_outbox (%u) holds", gw->ob.cap);
                return -1;
            }
            outbox_push(gw, 0, no, ord->kind == KIND_FREEZE ? SG_INSTR_FREEZE : SG_INSTR_STOP);
            resend++;
        }
    }
    if (resend) LOGI(gw, "outbox: %u instructions without a bank answer will be sent again", resend);
    return 0;
}

int engine_on_lead(gateway *gw) {
    /* Read the log to its end and apply it first; follower.c rebuilds the outbox and calls
     * cluster_lead_ready() then. */
    return follower_take_over(gw);
}

void engine_finish_cascades(gateway *gw) {
    /* A cascade the crash interrupted: its missing children are created now, the ones that
     * exist answer DUPLICATE. Needs the journal attached, hence not in engine_recover. */
    for (uint32_t no = 1; no <= gw->o.n; no++)
        if (gw->o.v[no].state == ST_FUNDS_MOVED) engine_cascade(gw, no);
}
