/*
 * commands: the RESP command table of SPEC §4.1. Each handler parses its arguments
 * (positional first, then NAME value pairs), checks the caller's role, asks the engine, and
 * writes exactly one reply followed by server_reply_done() with the lsn the reply depends on.
 * Every refusal carries a stable code as its first word and a human reason.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "account.h"
#include "clock.h"
#include "follower.h"
#include "gateway.h"
#include "sg_version.h"

#define VERSION SG_VERSION /* meson project version (sg_version.h) */

typedef int (*cmd_fn)(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns);

typedef struct cmd_def {
    const char *name;
    cmd_fn fn;
    unsigned perm; /* 0 = open to unauthenticated connections */
    int argc_min, argc_max; /* including the command name; -1 = unbounded */
    bool write;             /* changes state: only a cluster's leader takes it (SPEC §10) */
} cmd_def;

/* Writers return 0 or a negative errno (buf.h). A reply whose write failed cannot be
 * finished: the writer stops at once and hands the error up, and the handler ends the reply
 * with reply_end(), which refuses it whole. */
#define TRY(expr)                                                                                                  \
    do {                                                                                                           \
        int try_rc_ = (expr);                                                                                      \
        if (try_rc_) return try_rc_;                                                                               \
    } while (0)

/* Ends a reply written with TRY. A failed write (the output buffer's cap, or no memory) makes
 * server_reply_done() replace everything written for this reply with ERR TOOBIG: the client
 * never reads half a reply, and replies and requests stay in step. */
static void reply_end(gateway *gw, client *c, int rc, uint64_t lsn, int64_t t_ns) {
    if (rc) {
        assert(rc == -ENOBUFS || rc == -ENOMEM); /* -EPROTO would be a writer's bug: asserted in resp */
        c->out.overflowed = true;                /* -ENOMEM leaves it unset */
    }
    server_reply_done(gw, c, lsn, t_ns);
}

static void reply_err(gateway *gw, client *c, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply_err(gateway *gw, client *c, const char *code, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gw->m.errors++;
    reply_end(gw, c, resp_w_error(&c->out, code, "%s", msg), 0, 0);
}

/* NAME value pairs after the positional arguments. */
typedef struct opt {
    const char *name;
    resp_arg val;
    bool set;
} opt;

/* Fill opts from argv[from..]. Returns NULL, or the reason for a refusal. */
static const char *parse_opts(resp_cmd *cmd, uint32_t from, opt *opts, size_t nopts, char *why, size_t cap) {
    if ((cmd->argc - from) % 2 != 0) {
        snprintf(why, cap, "options must be NAME value pairs");
        return why;
    }
    for (uint32_t i = from; i < cmd->argc; i += 2) {
        size_t k;
        for (k = 0; k < nopts; k++)
            if (resp_arg_is(&cmd->argv[i], opts[k].name)) break;
        if (k == nopts) {
            snprintf(why, cap, "unknown option '%.*s'", (int)(cmd->argv[i].len > 32 ? 32 : cmd->argv[i].len),
                     cmd->argv[i].p);
            return why;
        }
        if (opts[k].set) {
            snprintf(why, cap, "option %s given twice", opts[k].name);
            return why;
        }
        opts[k].set = true;
        opts[k].val = cmd->argv[i + 1];
    }
    return NULL;
}

static rec_str as_str(resp_arg a) { return (rec_str){a.p, a.len}; }

/* Ends a reply with no error to report (the older spelling of reply_end(gw, c, 0, lsn, 0)):
 * a write refused at the output cap is still caught, by buf.overflowed. */
__attribute__((unused)) static void ok(gateway *gw, client *c, uint64_t lsn) { reply_end(gw, c, 0, lsn, 0); }

/* "SG-<no>" as a bulk string, what order_id_format() spells, without a printf per answer. */
static int w_order_id(buf *b, uint32_t no) {
    assert(no >= 1); /* "SG-0" is no order */
    char id[24];
    char *end = id + sizeof id, *p = end;
    for (uint32_t n = no; n; n /= 10) *--p = (char)('0' + n % 10);
    *--p = '-';
    *--p = 'G';
    *--p = 'S';
    return resp_w_bulk(b, p, (size_t)(end - p));
}

/* The array's length is the mask's popcount: its header goes first, nothing is counted or
 * moved after (issue 13: the STOP answer). */
static int w_mask_names(gateway *gw, buf *b, uint64_t mask) {
    TRY(resp_w_array(b, (size_t)__builtin_popcountll(mask)));
    for (uint64_t m = mask; m; m &= m - 1) {
        unsigned bit = (unsigned)__builtin_ctzll(m);
        assert(bit < gw->ls.nlists); /* a verdict names only declared lists */
        TRY(resp_w_str(b, lists_name(gw, bit)));
    }
    return 0;
}

/* "mule,suspect" as an array. */
static int w_csv_names(buf *b, const char *csv) {
    resp_map a;
    resp_array_begin(&a, b);
    int rc = 0;
    for (const char *p = csv; *p && !rc;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        rc = resp_w_bulk(b, p, len);
        p += len + (comma ? 1 : 0);
    }
    return resp_map_end(&a, rc);
}

/* The answer to STOP and the other order commands, written straight, in one pass (issue 13):
 * its pair count is known before the first byte (order_id, status, lsn; lists for a live
 * order; expires_at for EXTENDED), so the map header goes first and nothing is counted or
 * moved afterwards as resp_map_end does; keys are literal bytes. Byte for byte what the field
 * writers wrote before (integration test_order_reply_bytes). A failed write leaves a partial
 * answer that reply_end() replaces whole. */
static int w_answer_pairs(gateway *gw, client *c, const engine_answer *a) {
    static const char k_order_id[] = "$8\r\norder_id\r\n", k_status[] = "$6\r\nstatus\r\n",
                      k_lists[] = "$5\r\nlists\r\n", k_lsn[] = "$3\r\nlsn\r\n";
    buf *b = &c->out;
    bool lists = a->status <= ANS_HELD, extended = a->status == ANS_EXTENDED;
    TRY(resp_w_map(b, c->proto, 3 + (size_t)lists + (size_t)extended));
    TRY(buf_append(b, k_order_id, sizeof k_order_id - 1));
    TRY(w_order_id(b, a->order_no));
    TRY(buf_append(b, k_status, sizeof k_status - 1));
    TRY(resp_w_str(b, answer_name(a->status)));
    if (lists) {
        /* The lists the account is on now (a DUPLICATE answers with today's lists too). */
        const order *ord = orders_get(&gw->o, a->order_no);
        assert(ord); /* an answer names an order the table holds */
        sg_verdict v;
        lists_lookup(gw, ord->bank, ord->account, &v);
        TRY(buf_append(b, k_lists, sizeof k_lists - 1));
        TRY(w_mask_names(gw, b, v.mask));
    }
    if (extended) TRY(resp_w_kv_int(b, "expires_at", orders_get(&gw->o, a->order_no)->expires_at_ms));
    TRY(buf_append(b, k_lsn, sizeof k_lsn - 1));
    return resp_w_int(b, (int64_t)a->lsn);
}

static void w_answer(gateway *gw, client *c, const engine_answer *a, int64_t t_ns) {
    assert(!a->code && a->status <= ANS_CONFIRMED && a->lsn >= 1); /* a refusal goes by reply_err */
    assert(orders_get(&gw->o, a->order_no));
    int rc = w_answer_pairs(gw, c, a);
    gw->m.answers[a->status]++;
    reply_end(gw, c, rc, a->lsn, t_ns);
}

enum { O_BANK, O_ACCOUNT, O_CASE, O_AMOUNT, O_CURRENCY, O_TTL, O_REASON, O_NOTE, O_DOC, O__COUNT };

/* The fields every order needs: BANK, ACCOUNT and CASE normalised or checked (and DOC for a
 * FREEZE). NULL, or the error code with why filled. */
static const char *order_required(const opt *o, order_req *rq, char *why, size_t cap) {
    const char *e;
    if (!o[O_BANK].set || !o[O_ACCOUNT].set || !o[O_CASE].set)
        return snprintf(why, cap, "BANK, ACCOUNT and CASE are required"), "ERR SYNTAX";
    if (rq->kind == KIND_FREEZE && !o[O_DOC].set)
        return snprintf(why, cap, "FREEZE needs DOC <legal document reference>"), "ERR SYNTAX";
    if (account_bank_normalise(o[O_BANK].val.p, o[O_BANK].val.len, rq->bank, &e) != 0 ||
        account_normalise(o[O_ACCOUNT].val.p, o[O_ACCOUNT].val.len, rq->account, &e) != 0)
        return snprintf(why, cap, "%s", e), "ERR BADACCOUNT";
    if (!field_ident_ok(o[O_CASE].val.p, o[O_CASE].val.len, CASE_LEN_MAX))
        return snprintf(why, cap, "CASE must be 1-64 printable characters without spaces"), "ERR SYNTAX";
    rq->case_id = as_str(o[O_CASE].val);
    return NULL;
}

/* The optional fields: AMOUNT, CURRENCY (else the configured one), TTL, REASON, NOTE, DOC.
 * NULL, or the error code with why filled. */
static const char *order_optional(gateway *gw, const opt *o, order_req *rq, char *why, size_t cap) {
    const char *e;
    if (o[O_AMOUNT].set && field_amount_parse(o[O_AMOUNT].val.p, o[O_AMOUNT].val.len, &rq->amount_minor, &e) != 0)
        return snprintf(why, cap, "%s", e), "ERR BADAMOUNT";
    if (o[O_CURRENCY].set) {
        if (field_currency_parse(o[O_CURRENCY].val.p, o[O_CURRENCY].val.len, rq->currency, &e) != 0)
            return snprintf(why, cap, "%s", e), "ERR BADAMOUNT";
        rq->currency_given = true;
    } else {
        memcpy(rq->currency, gw->cfg.currency, 4);
    }
    if (o[O_TTL].set && field_ttl_parse(o[O_TTL].val.p, o[O_TTL].val.len, &rq->ttl_s, &e) != 0)
        return snprintf(why, cap, "%s", e), "ERR SYNTAX";
    if (o[O_REASON].set) {
        if (!field_ident_ok(o[O_REASON].val.p, o[O_REASON].val.len, REASON_LEN_MAX))
            return snprintf(why, cap, "REASON must be a code of 1-64 printable characters"), "ERR SYNTAX";
        rq->reason = as_str(o[O_REASON].val);
    }
    if (o[O_NOTE].set) {
        if (!field_text_ok(o[O_NOTE].val.p, o[O_NOTE].val.len, NOTE_LEN_MAX))
            return snprintf(why, cap, "NOTE must be at most %d bytes without control characters", NOTE_LEN_MAX),
                   "ERR SYNTAX";
        rq->note = as_str(o[O_NOTE].val);
    }
    if (o[O_DOC].set) {
        if (!field_ident_ok(o[O_DOC].val.p, o[O_DOC].val.len, DOC_LEN_MAX))
            return snprintf(why, cap, "DOC must be 1-128 printable characters without spaces"), "ERR SYNTAX";
        rq->doc = as_str(o[O_DOC].val);
    }
    return NULL;
}

/* STOP / FREEZE <request_id> BANK b ACCOUNT a CASE c [AMOUNT m [CURRENCY x]] [TTL s] ... */
static int cmd_order(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns, uint8_t kind) {
    order_req rq = {.kind = kind, .agent = c->agent ? c->agent->name : "anonymous"};
    opt o[] = {{"BANK"}, {"ACCOUNT"}, {"CASE"}, {"AMOUNT"}, {"CURRENCY"}, {"TTL"}, {"REASON"}, {"NOTE"}, {"DOC"}};
    _Static_assert(sizeof o / sizeof o[0] == O__COUNT, "one option per field");
    char why[160];
    const char *code, *e;
    size_t nopts = kind == KIND_FREEZE ? O__COUNT : O_DOC; /* DOC is FREEZE's alone */
    if (!field_ident_ok(cmd->argv[1].p, cmd->argv[1].len, REQUEST_ID_LEN_MAX)) {
        reply_err(gw, c, "ERR SYNTAX", "request_id must be 1-64 printable characters without spaces");
        return 1;
    }
    rq.request_id = as_str(cmd->argv[1]);
    if ((e = parse_opts(cmd, 2, o, nopts, why, sizeof why))) {
        reply_err(gw, c, "ERR SYNTAX", "%s", e);
        return 1;
    }
    if ((code = order_required(o, &rq, why, sizeof why)) || (code = order_optional(gw, o, &rq, why, sizeof why))) {
        reply_err(gw, c, code, "%s", why);
        return 1;
    }
    engine_answer a;
    if (engine_order(gw, &rq, &a) == -EAGAIN) return 0;
    if (a.code) {
        reply_err(gw, c, a.code, "%s", a.why);
        return 1;
    }
    w_answer(gw, c, &a, t_ns);
    return 1;
}

static int cmd_stop(gateway *gw, client *c, resp_cmd *cmd, int64_t t) { return cmd_order(gw, c, cmd, t, KIND_STOP); }
static int cmd_freeze(gateway *gw, client *c, resp_cmd *cmd, int64_t t) { return cmd_order(gw, c, cmd, t, KIND_FREEZE); }

static bool parse_order_id(gateway *gw, client *c, const resp_arg *a, uint32_t *no) {
    uint64_t n = order_id_parse(a->p, a->len);
    if (!n || !orders_get(&gw->o, n)) {
        reply_err(gw, c, "ERR NOTFOUND", "no order '%.*s'", (int)(a->len > 32 ? 32 : a->len), a->p);
        return false;
    }
    *no = (uint32_t)n;
    return true;
}

static bool parse_rid(gateway *gw, client *c, const resp_arg *a) {
    if (field_ident_ok(a->p, a->len, REQUEST_ID_LEN_MAX)) return true;
    reply_err(gw, c, "ERR SYNTAX", "request_id must be 1-64 printable characters without spaces");
    return false;
}

/* Who the engine sees asking (SPEC §4.2): a role that may CONFIRM acts as a supervisor. */
static engine_actor actor_of(const client *c) {
    return (engine_actor){.name = c->agent ? c->agent->name : "anonymous",
                          .supervisor = c->agent && (role_perms(c->agent->role) & PERM_CONFIRM)};
}

/* RELEASE <request_id> <order_id> [REASON code] [DOC legal_ref] */
static int cmd_release(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    opt o[] = {{"REASON"}, {"DOC"}};
    char why[160];
    const char *e;
    uint32_t no;
    if (!parse_rid(gw, c, &cmd->argv[1])) return 1;
    if ((e = parse_opts(cmd, 3, o, 2, why, sizeof why))) {
        reply_err(gw, c, "ERR SYNTAX", "%s", e);
        return 1;
    }
    if (o[0].set && !field_ident_ok(o[0].val.p, o[0].val.len, REASON_LEN_MAX)) {
        reply_err(gw, c, "ERR SYNTAX", "REASON must be a code of 1-64 printable characters");
        return 1;
    }
    if (o[1].set && !field_ident_ok(o[1].val.p, o[1].val.len, DOC_LEN_MAX)) {
        reply_err(gw, c, "ERR SYNTAX", "DOC must be 1-128 printable characters without spaces");
        return 1;
    }
    if (!parse_order_id(gw, c, &cmd->argv[2], &no)) return 1;
    engine_answer a;
    engine_actor who = actor_of(c);
    if (engine_release(gw, as_str(cmd->argv[1]), no, o[0].set ? as_str(o[0].val) : (rec_str){0},
                       o[1].set ? as_str(o[1].val) : (rec_str){0}, &who, &a) == -EAGAIN)
        return 0;
    if (a.code) reply_err(gw, c, a.code, "%s", a.why);
    else w_answer(gw, c, &a, t_ns);
    return 1;
}

static int cmd_extend(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    opt o[] = {{"TTL"}};
    char why[160];
    const char *e;
    uint32_t no;
    int64_t ttl;
    if (!parse_rid(gw, c, &cmd->argv[1])) return 1;
    if ((e = parse_opts(cmd, 3, o, 1, why, sizeof why)) || !o[0].set) {
        reply_err(gw, c, "ERR SYNTAX", "%s", e ? e : "EXTEND needs TTL <seconds>");
        return 1;
    }
    if (field_ttl_parse(o[0].val.p, o[0].val.len, &ttl, &e) != 0) {
        reply_err(gw, c, "ERR SYNTAX", "%s", e);
        return 1;
    }
    if (!parse_order_id(gw, c, &cmd->argv[2], &no)) return 1;
    engine_answer a;
    engine_actor who = actor_of(c);
    if (engine_extend(gw, as_str(cmd->argv[1]), no, ttl, &who, &a) == -EAGAIN) return 0;
    if (a.code) reply_err(gw, c, a.code, "%s", a.why);
    else w_answer(gw, c, &a, t_ns);
    return 1;
}

static int w_opt_str(buf *b, int proto, const char *key, const char *v) {
    TRY(resp_w_str(b, key));
    return v && *v ? resp_w_str(b, v) : resp_w_null(b, proto);
}

static const char *ts_keys[ST__COUNT] = {
    [ST_ACCEPTED] = "accepted_at", [ST_HELD] = "held_at",         [ST_SENT] = "sent_at",
    [ST_OVERDUE] = "overdue_at",   [ST_RELEASED] = "released_at", [ST_EXPIRED] = "expired_at",
};

/* The cases of an order. The list only grows: a durable view (durview.h) holds its first
 * ncases, so the walk stops there. */
static int w_cases(buf *b, const orders *o, const order *ord) {
    resp_map a;
    resp_array_begin(&a, b);
    int rc = 0;
    uint32_t k = 0;
    for (uint32_t l = ord->cases_head; l && k < ord->ncases && !rc; l = o->links[l].next, k++)
        rc = resp_w_str(b, o->cases[o->links[l].val].id);
    assert(rc || k == ord->ncases); /* the list holds at least what the count says */
    return resp_map_end(&a, rc);
}

/* The children reads may show: all (live), or those with a durable record. */
static int w_children(gateway *gw, buf *b, const order *ord, bool live) {
    const orders *o = &gw->o;
    resp_map a;
    resp_array_begin(&a, b);
    int rc = 0;
    for (uint32_t ch = ord->first_child; ch && !rc; ch = o->v[ch].next_sibling) {
        assert(o->v[ch].parent_no == ord->no && o->v[ch].level == ord->level + 1);
        if (live || durview_exists(&gw->dv, ch)) rc = w_order_id(b, ch);
    }
    return resp_map_end(&a, rc);
}

/* One onward transfer and what the cascade made of it: the child order (or the live order it
 * merged into), or why it was skipped. */
static int w_onward_one(gateway *gw, client *c, const order *ord, const sg_onward *ow, uint32_t i, bool live) {
    buf *b = &c->out;
    char id[32], nb[BANK_LEN_MAX + 1], na[ACCOUNT_LEN_MAX + 1], rid[REQUEST_ID_LEN_MAX + 1];
    order_id_format(id, sizeof id, ord->no);
    const char *skip = engine_onward_skip(gw, ord, ow, nb, na);
    int rl = snprintf(rid, sizeof rid, "cascade:%s:%u", id, i + 1);
    const request *rq = skip ? NULL : orders_find_request(&gw->o, rid, (uint32_t)rl);
    if (rq && !live && rq->lsn > commit_acked_lsn(&gw->commit)) rq = NULL; /* not durable yet: pending */
    TRY(resp_w_kv_str(b, "bank", ow->bank));
    TRY(resp_w_kv_str(b, "account", ow->account));
    TRY(resp_w_kv_int(b, "amount", ow->amount_minor));
    TRY(resp_w_str(b, "child"));
    TRY(rq ? w_order_id(b, rq->order_no) : resp_w_null(b, c->proto));
    TRY(resp_w_str(b, "skipped"));
    return skip ? resp_w_str(b, skip) : !rq ? resp_w_str(b, "pending") : resp_w_null(b, c->proto);
}

static int w_onward(gateway *gw, client *c, const order *ord, bool live) {
    const sg_onward *ow = orders_onward(&gw->o, ord);
    assert(ow && ord->onward_count <= SG_ONWARD_MAX);
    resp_map a, m;
    resp_array_begin(&a, &c->out);
    int rc = 0;
    for (uint32_t i = 0; i < ord->onward_count && !rc; i++) {
        resp_map_begin(&m, &c->out, c->proto);
        rc = resp_map_end(&m, w_onward_one(gw, c, ord, &ow[i], i, live));
    }
    return resp_map_end(&a, rc);
}

/* The STATUS pairs of one order (SPEC §4.1), in the order clients have always read them. */
static int w_status_pairs(gateway *gw, client *c, const order *ord, bool live) {
    buf *b = &c->out;
    const orders *o = &gw->o;
    TRY(resp_w_str(b, "order_id"));
    TRY(w_order_id(b, ord->no));
    TRY(resp_w_kv_str(b, "request_id", o->req[ord->request_idx].id));
    TRY(resp_w_kv_str(b, "kind", order_kind_name(ord->kind)));
    TRY(resp_w_kv_str(b, "state", order_state_name(ord->state)));
    TRY(resp_w_kv_str(b, "bank", ord->bank));
    TRY(resp_w_kv_str(b, "account", ord->account));
    TRY(resp_w_kv_int(b, "amount", ord->amount_minor));
    TRY(resp_w_kv_int(b, "frozen", ord->frozen_minor));
    TRY(resp_w_kv_str(b, "currency", ord->currency));
    TRY(resp_w_str(b, "cases"));
    TRY(w_cases(b, o, ord));
    TRY(resp_w_kv_str(b, "agent", ord->agent));
    TRY(resp_w_str(b, "parent"));
    TRY(ord->parent_no ? w_order_id(b, ord->parent_no) : resp_w_null(b, c->proto));
    TRY(resp_w_str(b, "children"));
    TRY(w_children(gw, b, ord, live));
    TRY(resp_w_kv_int(b, "level", ord->level));
    TRY(resp_w_str(b, "lists"));
    TRY(w_csv_names(b, orders_str(o, ord->lists_off)));
    TRY(w_opt_str(b, c->proto, "reason", orders_str(o, ord->reason_off)));
    TRY(w_opt_str(b, c->proto, "order_reason", orders_str(o, ord->order_reason_off)));
    TRY(w_opt_str(b, c->proto, "doc", orders_str(o, ord->doc_off)));
    if (ord->release_doc_off) TRY(resp_w_kv_str(b, "release_doc", orders_str(o, ord->release_doc_off)));
    TRY(w_opt_str(b, c->proto, "note", orders_str(o, ord->note_off)));
    TRY(resp_w_kv_int(b, "expires_at", ord->expires_at_ms));
    if (ord->onward_count) {
        TRY(resp_w_str(b, "onward"));
        TRY(w_onward(gw, c, ord, live));
    }
    for (uint8_t s = 0; s < ST__COUNT; s++) {
        int64_t at = order_at_ms(o, ord, s);
        if (ts_keys[s] && at) TRY(resp_w_kv_int(b, ts_keys[s], at));
    }
    if (ord->answer_state) TRY(resp_w_kv_int(b, "answered_at", order_at_ms(o, ord, ord->answer_state)));
    return 0;
}

/* The STATUS map of one order. */
static int w_status(gateway *gw, client *c, const order *ord, bool live) {
    const orders *o = &gw->o;
    assert(ord->no >= 1 && ord->no <= o->n);
    assert(ord->state > ST_NONE && ord->state < ST__COUNT && (ord->kind == KIND_STOP || ord->kind == KIND_FREEZE));
    assert(ord->request_idx >= 1 && ord->request_idx <= o->nreq);
    assert(ord->ncases >= 1 && ord->ncases <= ORDER_CASES_MAX);
    assert(ord->frozen_minor >= 0 && order_at_ms(o, ord, ST_ACCEPTED) > 0);
    assert(!ord->parent_no || (ord->parent_no < ord->no && ord->level >= 1));
    assert(ord->answer_state < ST__COUNT);
    resp_map m;
    resp_map_begin(&m, &c->out, c->proto);
    return resp_map_end(&m, w_status_pairs(gw, c, ord, live));
}

/* Reads (STATUS, CASE, CHECK, MCHECK) never show a client what the disk does not hold
 * (SPEC §9). While the journal writes, a read shows the order table as it is ("live") and
 * its answer is held, like a write's, until what it shows is durable - at most one
 * fdatasync, and a read right after a write (any connection's, an auto-stop's) sees it.
 * While the journal fails, that wait could be endless: reads then show the durable view
 * (durview.h) and are answered at once; the answers already held become ERR BUSY
 * (server_on_journal_failed). */
static bool read_live(const gateway *gw) { return gw->j.last_error == 0 && !cluster_failing(gw); }
/* STATUS and CASE show an order's children and cascade requests too: wait for everything
 * appended so far (they are not on the hot path). */
static uint64_t read_lsn(gateway *gw, bool live) { return live ? journal_last_lsn(&gw->j) : 0; }

static const order *read_get(gateway *gw, bool live, uint64_t no, order *tmp) {
    return live ? orders_get(&gw->o, no) : durview_order(&gw->dv, &gw->o, no, tmp);
}

/* An order as reads show it, or NULL answered NOTFOUND. */
static const order *read_order(gateway *gw, client *c, bool live, const resp_arg *a, order *tmp) {
    uint64_t n = order_id_parse(a->p, a->len);
    const order *ord = n ? read_get(gw, live, n, tmp) : NULL;
    if (!ord) reply_err(gw, c, "ERR NOTFOUND", "no order '%.*s'", (int)(a->len > 32 ? 32 : a->len), a->p);
    return ord;
}

static int cmd_status(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    order tmp;
    bool live = read_live(gw);
    const order *ord = read_order(gw, c, live, &cmd->argv[1], &tmp);
    if (!ord) return 1;
    reply_end(gw, c, w_status(gw, c, ord, live), read_lsn(gw, live), 0);
    return 1;
}

/* Is the order (a durable view) in case ci as of its durable state? Its case list only
 * grows, and the view holds how many of them are durable. */
static bool view_in_case(const orders *o, const order *view, uint32_t ci) {
    uint32_t k = 0;
    for (uint32_t l = view->cases_head; l && k < view->ncases; l = o->links[l].next, k++)
        if (o->links[l].val == ci) return true;
    return false;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The orders of case ce as reads show them, in ascending number, into in[]; their count. */
static uint32_t case_read_orders(gateway *gw, bool live, const case_ent *ce, uint32_t *in) {
    orders *o = &gw->o;
    uint32_t ci = (uint32_t)(ce - o->cases), n = 0;
    order tmp;
    for (uint32_t l = ce->orders_head; l; l = o->links[l].next) {
        const order *v = read_get(gw, live, o->links[l].val, &tmp);
        if (v && view_in_case(o, v, ci)) in[n++] = v->no;
    }
    assert(n <= ce->count && n <= o->n);
    qsort(in, n, sizeof *in, cmp_u32);
    return n;
}

/* The n orders of in[] (ascending) as an array of STATUS maps: roots first, each followed by
 * its cascade subtree (depth first), the tree as an agent reads it. stack has room for n.
 * Adds their frozen amounts to *frozen. */
static int w_case_orders(gateway *gw, client *c, bool live, const uint32_t *in, uint32_t *stack, uint32_t n,
                         int64_t *frozen) {
    orders *o = &gw->o;
    uint32_t written = 0;
    order tmp;
    resp_map a;
    resp_array_begin(&a, &c->out);
    int rc = 0;
    for (uint32_t i = 0; i < n && !rc; i++) {
        const order *root = &o->v[in[i]];
        if (root->parent_no && bsearch(&root->parent_no, in, n, sizeof *in, cmp_u32)) continue;
        uint32_t sp = 0;
        stack[sp++] = root->no;
        while (sp && written < n && !rc) {
            const order *ord = read_get(gw, live, stack[--sp], &tmp);
            assert(ord); /* in[] holds only orders that exist for reads */
            rc = w_status(gw, c, ord, live);
            written++;
            *frozen += ord->frozen_minor;
            /* Push children in reverse so the first child comes out first. */
            uint32_t mark = sp;
            for (uint32_t ch = ord->first_child; ch; ch = o->v[ch].next_sibling)
                if (sp < n && bsearch(&ch, in, n, sizeof *in, cmp_u32)) stack[sp++] = ch;
            for (uint32_t x = mark, y = sp ? sp - 1 : 0; x < y; x++, y--) {
                uint32_t t = stack[x];
                stack[x] = stack[y];
                stack[y] = t;
            }
        }
    }
    assert(rc || written == n); /* every order of the case once: the tree has no cycle */
    return resp_map_end(&a, rc);
}

static int cmd_case(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    const resp_arg *a = &cmd->argv[1];
    if (!field_ident_ok(a->p, a->len, CASE_LEN_MAX)) {
        reply_err(gw, c, "ERR SYNTAX", "CASE must be 1-64 printable characters without spaces");
        return 1;
    }
    orders *o = &gw->o;
    const case_ent *ce = orders_find_case(o, a->p, a->len);
    /* The case's orders in ascending number, for membership tests, and the stack for the
     * walk: both in the scratch reserved at start (a case holds at most max_orders). */
    assert(!ce || ce->count <= o->max_orders);
    uint32_t *in = o->walk, *stack = o->walk + o->max_orders;
    bool live = read_live(gw);
    uint32_t n = ce ? case_read_orders(gw, live, ce, in) : 0;
    if (n == 0) { /* no order of it is durable yet: the case does not exist for reads */
        reply_err(gw, c, "ERR NOTFOUND", "no case '%.*s'", (int)a->len, a->p);
        return 1;
    }
    int64_t frozen = 0;
    buf *b = &c->out;
    resp_map m;
    resp_map_begin(&m, b, c->proto);
    int rc = resp_w_kv_str(b, "case", ce->id);
    if (!rc) rc = resp_w_str(b, "orders");
    if (!rc) rc = w_case_orders(gw, c, live, in, stack, n, &frozen);
    if (!rc) rc = resp_w_kv_int(b, "frozen_total", frozen);
    reply_end(gw, c, resp_map_end(&m, rc), read_lsn(gw, live), 0);
    return 1;
}

/* The CLEAR answer (half a screening load and more) in one append, byte for byte what
 * w_check_pairs writes for it (integration test_check_reply_bytes): formatting it field by
 * field was about a tenth of a CHECK's CPU. */
static int w_check_clear(buf *b, int proto) {
    static const char r2[] = "*8\r\n$7\r\nverdict\r\n$5\r\nCLEAR\r\n$5\r\nlists\r\n*0\r\n$5\r\nscore\r\n:0\r\n"
                             "$8\r\norder_id\r\n$-1\r\n";
    static const char r3[] = "%4\r\n$7\r\nverdict\r\n$5\r\nCLEAR\r\n$5\r\nlists\r\n*0\r\n$5\r\nscore\r\n:0\r\n"
                             "$8\r\norder_id\r\n_\r\n";
    assert(proto == 2 || proto == 3);
    return proto == 3 ? buf_append(b, r3, sizeof r3 - 1) : buf_append(b, r2, sizeof r2 - 1);
}

static int w_check_pairs(gateway *gw, client *c, const sg_verdict *v, const order *live) {
    buf *b = &c->out;
    TRY(resp_w_kv_str(b, "verdict", live ? "FROZEN" : v->mask ? "LISTED" : "CLEAR"));
    TRY(resp_w_str(b, "lists"));
    TRY(w_mask_names(gw, b, v->mask));
    TRY(resp_w_kv_int(b, "score", v->score));
    TRY(resp_w_str(b, "order_id"));
    return live ? w_order_id(b, live->no) : resp_w_null(b, c->proto);
}

/* One CHECK answer; returns the lsn it depends on (the account's latest order, live reads).
 * *rc: the first failed write, else left as it was. */
static uint64_t w_check(gateway *gw, client *c, const char *bank, const char *account, bool rlive, int *rc) {
    sg_verdict v;
    uint64_t llsn = lists_lookup_read(gw, bank, account, rlive, &v); /* list changes: as orders */
    assert(v.score <= 100); /* lists.h: 0..100 */
    /* FROZEN comes from the order table as reads see it: the truth the shared bit mirrors.
     * Only the account's latest order decides it, so its last record is all to wait for. */
    order tmp;
    const order *latest = rlive ? orders_latest_on_account(&gw->o, bank, account) : NULL;
    uint64_t lsn = latest && latest->last_lsn > llsn ? latest->last_lsn : llsn;
    const order *live = rlive ? (latest && order_is_live(latest, gw->now_ms) ? latest : NULL)
                              : durview_live_on_account(&gw->dv, &gw->o, bank, account, gw->now_ms, &tmp);
    assert(!live || (!strcmp(live->bank, bank) && !strcmp(live->account, account)));
    gw->m.checks++;
    if (live || v.mask) gw->m.check_hits++;
    if (!*rc && !live && !v.mask && !v.score) {
        *rc = w_check_clear(&c->out, c->proto);
    } else if (!*rc) {
        resp_map m;
        resp_map_begin(&m, &c->out, c->proto);
        *rc = resp_map_end(&m, w_check_pairs(gw, c, &v, live));
    }
    /* The auto-stop is a write: it goes by every order taken, durable or not. */
    v.frozen = (v.mask & gw->ls.auto_stop_mask) ? orders_live_on_account(&gw->o, bank, account, gw->now_ms) != NULL
                                                 : live != NULL;
    engine_auto_stop(gw, bank, account, &v);
    return lsn;
}

static bool check_key(gateway *gw, client *c, const resp_arg *bank, const resp_arg *acct, char *bo, char *ao) {
    const char *e;
    if (account_bank_normalise(bank->p, bank->len, bo, &e) != 0 || account_normalise(acct->p, acct->len, ao, &e) != 0) {
        reply_err(gw, c, "ERR BADACCOUNT", "%s", e);
        return false;
    }
    return true;
}

static int cmd_check(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    char bank[BANK_LEN_MAX + 1], account[ACCOUNT_LEN_MAX + 1];
    if (!check_key(gw, c, &cmd->argv[1], &cmd->argv[2], bank, account)) return 1;
    int rc = 0;
    uint64_t lsn = w_check(gw, c, bank, account, read_live(gw), &rc);
    reply_end(gw, c, rc, lsn, 0);
    return 1;
}

_Static_assert(1 + 2 * MCHECK_BATCH_MAX <= RESP_ARGS_MAX, "an MCHECK batch fits the argument limit");

static int cmd_mcheck(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    uint32_t pairs = (cmd->argc - 1) / 2;
    if ((cmd->argc - 1) % 2 != 0) {
        reply_err(gw, c, "ERR SYNTAX", "MCHECK takes bank account pairs");
        return 1;
    }
    if (pairs > MCHECK_BATCH_MAX) {
        reply_err(gw, c, "ERR TOOBIG", "MCHECK takes at most %d pairs", MCHECK_BATCH_MAX);
        return 1;
    }
    char bank[BANK_LEN_MAX + 1], account[ACCOUNT_LEN_MAX + 1];
    for (uint32_t i = 0; i < pairs; i++) {
        const char *e;
        if (account_bank_normalise(cmd->argv[1 + 2 * i].p, cmd->argv[1 + 2 * i].len, bank, &e) != 0 ||
            account_normalise(cmd->argv[2 + 2 * i].p, cmd->argv[2 + 2 * i].len, account, &e) != 0) {
            reply_err(gw, c, "ERR BADACCOUNT", "pair %u: %s", i + 1, e);
            return 1;
        }
    }
    bool live = read_live(gw);
    uint64_t lsn = 0;
    /* One answer per pair, each with its auto-stop even when the reply is refused. */
    int rc = resp_w_array(&c->out, pairs);
    for (uint32_t i = 0; i < pairs; i++) {
        const char *e;
        account_bank_normalise(cmd->argv[1 + 2 * i].p, cmd->argv[1 + 2 * i].len, bank, &e);
        account_normalise(cmd->argv[2 + 2 * i].p, cmd->argv[2 + 2 * i].len, account, &e);
        uint64_t l = w_check(gw, c, bank, account, live, &rc);
        if (l > lsn) lsn = l;
    }
    reply_end(gw, c, rc, lsn, 0);
    return 1;
}

static int cmd_confirm(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    uint32_t no;
    if (!parse_order_id(gw, c, &cmd->argv[1], &no)) return 1;
    engine_answer a;
    if (engine_confirm(gw, no, c->agent ? c->agent->name : "", &a) == -EAGAIN) return 0;
    if (a.code) {
        reply_err(gw, c, a.code, "%s", a.why);
        return 1;
    }
    w_answer(gw, c, &a, t_ns);
    return 1;
}

/* --- LIST.* (role ops) --------------------------------------------------------------- */

static int list_arg(gateway *gw, client *c, const resp_arg *name) {
    int bit = lists_bit(gw, name->p, name->len);
    if (bit < 0)
        reply_err(gw, c, "ERR NOTFOUND", "unknown list '%.*s' (declare it as [list %.*s] in the config)",
                  (int)(name->len > 32 ? 32 : name->len), name->p, (int)(name->len > 32 ? 32 : name->len), name->p);
    return bit;
}

static int w_list_answer_pairs(buf *b, const list_answer *a) {
    TRY(resp_w_kv_str(b, "status", a->status));
    if (a->rows > 0) {
        TRY(resp_w_kv_int(b, "rows", a->rows));
        TRY(resp_w_kv_int(b, "ms", a->ms));
    }
    return resp_w_kv_int(b, "lsn", (int64_t)a->lsn);
}

static void w_list_answer(gateway *gw, client *c, const list_answer *a) {
    if (a->code) {
        reply_err(gw, c, a->code, "%s", a->why);
        return;
    }
    assert(a->status && (a->lsn >= 1 || !strcmp(a->status, "ABSENT"))); /* a change is journaled */
    resp_map m;
    resp_map_begin(&m, &c->out, c->proto);
    reply_end(gw, c, resp_map_end(&m, w_list_answer_pairs(&c->out, a)), a->lsn, 0);
}

/* LIST.ADD <list> <bank> <account> [SCORE n] [TTL s] [CASE c] | LIST.DEL <list> <bank> <account> */
static int cmd_list_change(gateway *gw, client *c, resp_cmd *cmd, uint16_t type) {
    int bit = list_arg(gw, c, &cmd->argv[1]);
    if (bit < 0) return 1;
    char bank[BANK_LEN_MAX + 1], account[ACCOUNT_LEN_MAX + 1];
    if (!check_key(gw, c, &cmd->argv[2], &cmd->argv[3], bank, account)) return 1;
    opt o[] = {{"SCORE"}, {"TTL"}, {"CASE"}};
    char why[128];
    if (parse_opts(cmd, 4, o, type == REC_LIST_ADD ? 3 : 0, why, sizeof why)) {
        reply_err(gw, c, "ERR SYNTAX", "%s", why);
        return 1;
    }
    int64_t score = 0, ttl = 0;
    const char *e = NULL;
    if (o[0].set && (field_int_parse(o[0].val.p, o[0].val.len, &score) != 0 || score < 0 || score > 100)) {
        reply_err(gw, c, "ERR SYNTAX", "SCORE must be an integer 0-100");
        return 1;
    }
    if (o[1].set && field_ttl_parse(o[1].val.p, o[1].val.len, &ttl, &e) != 0) {
        reply_err(gw, c, "ERR SYNTAX", "TTL: %s", e);
        return 1;
    }
    if (o[2].set && !field_ident_ok(o[2].val.p, o[2].val.len, CASE_LEN_MAX)) {
        reply_err(gw, c, "ERR SYNTAX", "CASE must be 1-64 printable characters without spaces");
        return 1;
    }
    list_answer a;
    if (lists_change(gw, type, bit, bank, account, (uint8_t)score, ttl, o[2].set ? as_str(o[2].val) : (rec_str){0},
                     c->agent ? c->agent->name : "", &a) == -EAGAIN)
        return 0;
    w_list_answer(gw, c, &a);
    return 1;
}

static int cmd_list_add(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    return cmd_list_change(gw, c, cmd, REC_LIST_ADD);
}

static int cmd_list_del(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    return cmd_list_change(gw, c, cmd, REC_LIST_DEL);
}

/* LIST.LOAD <list> <path> | LIST.LOAD <list> - <csv> */
static int cmd_list_load(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    int bit = list_arg(gw, c, &cmd->argv[1]);
    if (bit < 0) return 1;
    const resp_arg *src = &cmd->argv[2];
    bool inline_csv = src->len == 1 && src->p[0] == '-';
    if (inline_csv != (cmd->argc == 4)) {
        reply_err(gw, c, "ERR SYNTAX", "LIST.LOAD <list> <path> | LIST.LOAD <list> - <csv>");
        return 1;
    }
    char path[4096];
    if (!inline_csv) {
        if (src->len == 0 || src->len >= sizeof path || memchr(src->p, 0, src->len)) {
            reply_err(gw, c, "ERR SYNTAX", "bad path");
            return 1;
        }
        memcpy(path, src->p, src->len);
        path[src->len] = 0;
    }
    list_answer a;
    if (lists_load(gw, c, bit, inline_csv ? NULL : path, inline_csv ? cmd->argv[3].p : NULL,
                   inline_csv ? cmd->argv[3].len : 0, c->agent ? c->agent->name : "", &a) == -EAGAIN)
        return 0;
    if (a.code) {
        reply_err(gw, c, a.code, "%s", a.why);
        return 1;
    }
    LOGI(gw, "LIST.LOAD %s: %u rows by %s in %lld ms", lists_name(gw, (unsigned)bit), a.rows,
         c->agent ? c->agent->name : "?", (long long)a.ms);
    w_list_answer(gw, c, &a);
    return 1;
}

static int w_list_info_one(const gateway *gw, buf *b, int bit, const char *lf) {
    const lists_state *ls = &gw->ls;
    TRY(resp_w_kv_str(b, "list", ls->names[bit]));
    TRY(resp_w_kv_int(b, "entries", (int64_t)ls->t.h->list_count[bit]));
    TRY(resp_w_kv_int(b, "auto_stop", (ls->auto_stop_mask >> bit) & 1));
    TRY(resp_w_kv_int(b, "capacity", (int64_t)(ls->t.mask + 1)));
    TRY(resp_w_kv_int(b, "generation", (int64_t)ls->generation));
    return resp_w_kv_str(b, "load_factor", lf);
}

static int w_list_info_all(const gateway *gw, client *c, const char *lf) {
    const lists_state *ls = &gw->ls;
    const sgl_header *h = ls->t.h;
    buf *b = &c->out;
    TRY(resp_w_kv_str(b, "shm", gw->cfg.shm_name));
    TRY(resp_w_kv_int(b, "capacity", (int64_t)(ls->t.mask + 1)));
    TRY(resp_w_kv_int(b, "entries", (int64_t)atomic_load(&h->count)));
    TRY(resp_w_kv_int(b, "tombstones", (int64_t)atomic_load(&h->tombstones)));
    TRY(resp_w_kv_int(b, "generation", (int64_t)ls->generation));
    TRY(resp_w_kv_str(b, "load_factor", lf));
    TRY(resp_w_str(b, "lists"));
    resp_map m;
    resp_map_begin(&m, b, c->proto);
    int rc = 0;
    for (uint32_t i = 0; i < ls->nlists && !rc; i++) rc = resp_w_kv_int(b, ls->names[i], (int64_t)h->list_count[i]);
    return resp_map_end(&m, rc);
}

/* LIST.INFO [<list>] */
static int cmd_list_info(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    const lists_state *ls = &gw->ls;
    const sgl_header *h = ls->t.h;
    uint64_t cap = ls->t.mask + 1, count = atomic_load(&h->count);
    assert(ls->nlists <= SGL_LISTS_MAX && count <= cap);
    char lf[32];
    snprintf(lf, sizeof lf, "%.4f", (double)(count + atomic_load(&h->tombstones)) / (double)cap);
    int bit = -1;
    if (cmd->argc == 2 && (bit = list_arg(gw, c, &cmd->argv[1])) < 0) return 1;
    resp_map m;
    resp_map_begin(&m, &c->out, c->proto);
    int rc = bit >= 0 ? w_list_info_one(gw, &c->out, bit, lf) : w_list_info_all(gw, c, lf);
    reply_end(gw, c, resp_map_end(&m, rc), 0, 0);
    return 1;
}

/* A CLIENT SETNAME / SETINFO value: 0-CLIENT_NAME_LEN_MAX printable bytes without spaces
 * (Redis's rule: a name must fit one CLIENT LIST field). */
static bool client_name_ok(const resp_arg *a) {
    if (a->len > CLIENT_NAME_LEN_MAX) return false;
    for (uint32_t i = 0; i < a->len; i++)
        if (a->p[i] < '!' || a->p[i] > '~') return false;
    return true;
}

static void copy_arg(char *dst, const resp_arg *a) {
    assert(a->len <= CLIENT_NAME_LEN_MAX);
    memcpy(dst, a->p, a->len);
    dst[a->len] = 0;
}

static int w_hello_pairs(gateway *gw, client *c) {
    (void)gw;
    buf *b = &c->out;
    TRY(resp_w_kv_str(b, "server", "stopgate"));
    TRY(resp_w_kv_str(b, "version", VERSION));
    TRY(resp_w_kv_int(b, "proto", c->proto));
    TRY(resp_w_kv_int(b, "id", (int64_t)c->id)); /* CLIENT ID */
    TRY(resp_w_kv_str(b, "mode", "standalone"));
    TRY(resp_w_kv_str(b, "role", "master"));
    TRY(resp_w_str(b, "modules"));
    return resp_w_array(b, 0);
}

static void hello_reply(gateway *gw, client *c) {
    assert(c->proto == 2 || c->proto == 3);
    resp_map m;
    resp_map_begin(&m, &c->out, c->proto);
    reply_end(gw, c, resp_map_end(&m, w_hello_pairs(gw, c)), 0, 0);
}

void commands_auth_done(gateway *gw, client *c, bool granted) {
    int proto = c->auth_hello_proto;
    c->auth_hello_proto = 0;
    if (!granted) {
        reply_err(gw, c, "WRONGPASS", "invalid agent or secret");
        return;
    }
    if (proto) {
        c->proto = proto;
        hello_reply(gw, c);
        return;
    }
    reply_end(gw, c, resp_w_simple(&c->out, "OK"), 0, 0);
}

/* AUTH, alone or inside HELLO (hello_proto != 0): answered now, or once a worker has run the
 * KDF (login.h); until then the client's later commands wait. */
static int auth_begin(gateway *gw, client *c, const resp_arg *name, const resp_arg *secret, int hello_proto) {
    int rc = login_start(gw, c, name->p, name->len, secret->p, secret->len);
    if (rc == LOGIN_BUSY) {
        reply_err(gw, c, "ERR BUSY", "too many AUTHs being verified (%d); retry shortly", AUTH_QUEUE_MAX);
        return 1;
    }
    c->auth_hello_proto = (uint8_t)hello_proto;
    if (rc != LOGIN_PENDING) commands_auth_done(gw, c, rc == LOGIN_OK);
    return 1;
}

static int cmd_auth(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    if (cmd->argc != 3) {
        reply_err(gw, c, "ERR SYNTAX", "AUTH <agent> <secret>");
        return 1;
    }
    return auth_begin(gw, c, &cmd->argv[1], &cmd->argv[2], 0);
}

static int cmd_hello(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    int proto = c->proto;
    uint32_t i = 1;
    if (cmd->argc > 1) {
        int64_t v;
        if (field_int_parse(cmd->argv[1].p, cmd->argv[1].len, &v) != 0 || (v != 2 && v != 3)) {
            reply_err(gw, c, "NOPROTO", "unsupported protocol version");
            return 1;
        }
        proto = (int)v;
        i = 2;
    }
    const resp_arg *name = NULL, *secret = NULL, *setname = NULL;
    for (; i < cmd->argc; i++) {
        if (resp_arg_is(&cmd->argv[i], "AUTH") && i + 2 < cmd->argc && !name) {
            name = &cmd->argv[i + 1];
            secret = &cmd->argv[i + 2];
            i += 2;
        } else if (resp_arg_is(&cmd->argv[i], "SETNAME") && i + 1 < cmd->argc && !setname) {
            setname = &cmd->argv[++i];
        } else {
            reply_err(gw, c, "ERR SYNTAX", "HELLO [2|3] [AUTH <agent> <secret>] [SETNAME <name>]");
            return 1;
        }
    }
    if (setname && !client_name_ok(setname)) {
        reply_err(gw, c, "ERR SYNTAX", "a client name is at most %d bytes without spaces", CLIENT_NAME_LEN_MAX);
        return 1;
    }
    if (setname) copy_arg(c->name, setname);
    if (name) return auth_begin(gw, c, name, secret, proto);
    c->proto = proto;
    hello_reply(gw, c);
    return 1;
}

static int cmd_ping(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    int rc = cmd->argc == 2 ? resp_w_bulk(&c->out, cmd->argv[1].p, cmd->argv[1].len) : resp_w_simple(&c->out, "PONG");
    reply_end(gw, c, rc, 0, 0);
    return 1;
}

/* redis-cli --pipe ends its stream with an ECHO of a random marker and waits for it. */
static int cmd_echo(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    reply_end(gw, c, resp_w_bulk(&c->out, cmd->argv[1].p, cmd->argv[1].len), 0, 0);
    return 1;
}

static int cmd_quit(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)cmd;
    (void)t_ns;
    reply_end(gw, c, resp_w_simple(&c->out, "OK"), 0, 0);
    c->close_after_flush = true;
    return 1;
}

/* redis-cli and redis-benchmark ask these on connect; answer emptily instead of failing. */
static int cmd_empty(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)cmd;
    (void)t_ns;
    reply_end(gw, c, resp_w_array(&c->out, 0), 0, 0);
    return 1;
}

/* INFO's sections, in the order INFO without arguments shows them. */
enum { INFO_SERVER, INFO_CLIENTS, INFO_ORDERS, INFO_JOURNAL, INFO_BANKS, INFO_CLUSTER, INFO__COUNT };
static const char *const info_sections[INFO__COUNT] = {"server", "clients", "orders", "journal", "banks", "cluster"};

static int w_info_section(gateway *gw, buf *t, int s) {
    switch (s) {
    case INFO_SERVER:
        return buf_printf(t, "# Server\r\nstopgate_version:%s\r\nuptime_s:%lld\r\nphase:%s\r\n", VERSION,
                          (long long)((gw->now_ms - gw->started_ms) / 1000),
                          gw->phase == PHASE_RUNNING    ? "running"
                          : gw->phase == PHASE_DRAINING ? "draining"
                                                        : "recovering");
    case INFO_CLIENTS:
        return buf_printf(t, "# Clients\r\nconnected_clients:%u\r\nmax_clients:%u\r\n", gw->srv.count, gw->srv.max);
    case INFO_ORDERS:
        TRY(buf_printf(t, "# Orders\r\norders_total:%u\r\nrequests_total:%u\r\ncases_total:%u\r\n", gw->o.n,
                       gw->o.nreq, gw->o.ncases));
        for (int st = 1; st < ST__COUNT; st++)
            TRY(buf_printf(t, "orders_%s:%llu\r\n", order_state_name((uint8_t)st),
                           (unsigned long long)gw->o.state_count[st]));
        return 0;
    case INFO_JOURNAL:
        return buf_printf(t, "# Journal\r\njournal_dir:%s\r\nlast_lsn:%llu\r\ndurable_lsn:%llu\r\nsegment:%llu\r\nfsyncs:%llu\r\n",
                          gw->j.dir, (unsigned long long)journal_last_lsn(&gw->j), (unsigned long long)gw->j.durable_lsn,
                          (unsigned long long)gw->j.seg_seq, (unsigned long long)gw->j.stats.fsyncs);
    case INFO_BANKS:
        TRY(buf_printf(t, "# Banks\r\n"));
        for (uint32_t i = 0; i < gw->rt.nplugins; i++) {
            plugin_inst *p = &gw->rt.plugins[i];
            TRY(buf_printf(t, "plugin_%s:type=%s,submitted=%llu,results=%llu\r\n", p->name, p->ops->name,
                           (unsigned long long)p->submitted, (unsigned long long)p->results));
        }
        return 0;
    case INFO_CLUSTER:
        cluster_info(gw, t);
        return t->overflowed ? -ENOBUFS : 0;
    }
    assert(0 && "unknown INFO section");
    return -EINVAL;
}

/* Which sections INFO [section ...] asks for: none named, "all", "everything" or "default" is
 * every section; an unknown name adds nothing (Redis answers an empty string for it). */
static unsigned info_wanted(const resp_cmd *cmd) {
    if (cmd->argc == 1) return (1u << INFO__COUNT) - 1;
    unsigned want = 0;
    for (uint32_t i = 1; i < cmd->argc; i++) {
        const resp_arg *a = &cmd->argv[i];
        if (resp_arg_is(a, "all") || resp_arg_is(a, "everything") || resp_arg_is(a, "default"))
            want = (1u << INFO__COUNT) - 1;
        for (int s = 0; s < INFO__COUNT; s++)
            if (resp_arg_is(a, info_sections[s])) want |= 1u << s;
    }
    return want;
}

/* ROLE (SPEC §10): this member's place in the cluster, for any authenticated agent. */
static int cmd_role(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)cmd;
    cluster_view v;
    cluster_view_get(gw, &v);
    buf *b = &c->out;
    resp_map m;
    resp_map_begin(&m, b, c->proto);
    int rc = resp_w_kv_str(b, "role", v.role_name);
    if (!rc) rc = resp_w_kv_str(b, "name", v.name);
    if (!rc) rc = resp_w_kv_str(b, "leader", v.leader);
    if (!rc) rc = resp_w_kv_str(b, "leader_addr", v.leader_addr);
    if (!rc) rc = resp_w_kv_int(b, "epoch", v.epoch);
    if (!rc) rc = resp_w_kv_int(b, "applied_lsn", (int64_t)v.applied_lsn);
    if (!rc) rc = resp_w_kv_int(b, "committed_lsn", (int64_t)v.committed_lsn);
    if (!rc) rc = resp_w_kv_int(b, "writable", v.writable);
    if (!rc) rc = resp_w_kv_str(b, "log", follower_state(gw));
    reply_end(gw, c, resp_map_end(&m, rc), 0, t_ns);
    return 1;
}

static int cmd_info(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    /* The text is built aside because a bulk's length comes first; INFO is not on the order
     * path, so one buffer per INFO is fine. */
    buf tmp;
    buf_init(&tmp, 1 << 20);
    unsigned want = info_wanted(cmd);
    int rc = 0;
    for (int s = 0; s < INFO__COUNT && !rc; s++)
        if (want & (1u << s)) rc = w_info_section(gw, &tmp, s);
    if (!rc) rc = resp_w_bulk(&c->out, (const char *)tmp.data, tmp.len);
    buf_free(&tmp);
    reply_end(gw, c, rc == -EINVAL ? -ENOBUFS : rc, 0, 0);
    return 1;
}

/* --- Redis client habits (docs/protocol.md "Redis clients") ------------------------------
 * What redis-cli, hiredis and redis-py send on connect or by habit: CLIENT, SELECT 0, DBSIZE,
 * COMMAND, INFO <section>. None of it touches orders; all of it is answered at once. */

/* CLIENT LIST and KILL reach the caller's own connections (same agent); ops (and dev) reach
 * every connection. */
static bool may_see(const client *self, const client *other) {
    if (!self->agent) return false;
    if (self->agent->role == ROLE_OPS || self->agent->role == ROLE_DEV) return true;
    return other->agent && !strcmp(other->agent->name, self->agent->name);
}

/* One CLIENT LIST line, Redis's field names; its length, or 0 when it does not fit cap. */
static size_t client_line(const gateway *gw, const client *x, char *line, size_t cap) {
    char ip[INET_ADDRSTRLEN];
    struct in_addr in = {.s_addr = x->addr};
    inet_ntop(AF_INET, &in, ip, sizeof ip);
    int n = snprintf(line, cap,
                     "id=%llu addr=%s:%u fd=%d name=%s age=%lld idle=%lld flags=N db=0 resp=%d user=%s tls=%s "
                     "lib-name=%s lib-ver=%s\n",
                     (unsigned long long)x->id, ip, x->port, x->fd, x->name,
                     (long long)((gw->now_ms - x->created_ms) / 1000), (long long)((gw->now_ms - x->last_active_ms) / 1000),
                     x->proto, x->agent ? x->agent->name : "-", x->tls ? "yes" : "no", x->lib_name, x->lib_ver);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* CLIENT LIST (every connection the caller may see) or CLIENT INFO (its own): one bulk. */
static int w_client_list(gateway *gw, client *c, bool self_only) {
    char line[512];
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) TRY(buf_printf(&c->out, "$%zu\r\n", total));
        for (uint32_t i = 0; i < gw->srv.max; i++) {
            const client *x = &gw->srv.clients[i];
            if (!x->in_use || x->closing || (self_only ? x != c : !may_see(c, x))) continue;
            size_t n = client_line(gw, x, line, sizeof line);
            if (pass == 0) total += n;
            else TRY(buf_append(&c->out, line, n));
        }
    }
    return buf_append(&c->out, "\r\n", 2);
}

/* Which connections a CLIENT KILL names (any filter left NULL matches all). */
typedef struct kill_filter {
    int64_t id;               /* 0: any */
    const resp_arg *addr, *user;
    const client *skip;       /* SKIPME yes: the caller */
} kill_filter;

static bool kill_matches(const gateway *gw, const kill_filter *f, const client *x) {
    char line[512], want[64];
    if (!x->in_use || x->closing || x == f->skip) return false;
    if (f->id && x->id != (uint64_t)f->id) return false;
    if (f->user && !(x->agent && strlen(x->agent->name) == f->user->len &&
                     !memcmp(x->agent->name, f->user->p, f->user->len)))
        return false;
    if (!f->addr) return true;
    if (f->addr->len >= 48) return false;
    snprintf(want, sizeof want, "addr=%.*s ", (int)f->addr->len, f->addr->p);
    return client_line(gw, x, line, sizeof line) && strstr(line, want);
}

/* The filters of CLIENT KILL [ID id] [ADDR ip:port] [USER agent] [SKIPME yes|no]; NULL, or
 * why they are refused. */
static const char *kill_parse(const client *c, const resp_cmd *cmd, kill_filter *f) {
    *f = (kill_filter){.skip = c};
    if (cmd->argc % 2 != 0) return "CLIENT KILL [ID id] [ADDR ip:port] [USER agent] [SKIPME yes|no]";
    for (uint32_t i = 2; i + 1 < cmd->argc; i += 2) {
        const resp_arg *k = &cmd->argv[i], *v = &cmd->argv[i + 1];
        if (resp_arg_is(k, "ID")) {
            if (field_int_parse(v->p, v->len, &f->id) != 0 || f->id <= 0) return "CLIENT KILL ID takes a CLIENT ID";
        } else if (resp_arg_is(k, "ADDR")) f->addr = v;
        else if (resp_arg_is(k, "USER")) f->user = v;
        else if (resp_arg_is(k, "SKIPME") && (resp_arg_is(v, "yes") || resp_arg_is(v, "no")))
            f->skip = resp_arg_is(v, "yes") ? c : NULL;
        else return "CLIENT KILL [ID id] [ADDR ip:port] [USER agent] [SKIPME yes|no]";
    }
    return f->id || f->addr || f->user ? NULL : "CLIENT KILL needs a filter: ID, ADDR or USER";
}

/* CLIENT KILL <ip:port> | CLIENT KILL <filters>. Refused whole (nothing closed) when it names
 * a connection the caller may not reach. */
static int client_kill(gateway *gw, client *c, resp_cmd *cmd) {
    bool legacy = cmd->argc == 3;
    kill_filter f = {.addr = &cmd->argv[2]};
    const char *why = legacy ? NULL : kill_parse(c, cmd, &f);
    if (why) {
        reply_err(gw, c, "ERR SYNTAX", "%s", why);
        return 1;
    }
    uint32_t n = 0, refused = 0;
    for (uint32_t i = 0; i < gw->srv.max; i++) {
        const client *x = &gw->srv.clients[i];
        if (!kill_matches(gw, &f, x)) continue;
        if (may_see(c, x)) n++;
        else refused++;
    }
    if (refused) {
        reply_err(gw, c, "NOPERM", "agent %s (role %s) may kill only its own connections", c->agent->name,
                  role_name(c->agent->role));
        return 1;
    }
    if (legacy && n == 0) {
        reply_err(gw, c, "ERR NOTFOUND", "no such client");
        return 1;
    }
    for (uint32_t i = 0; i < gw->srv.max; i++) {
        client *x = &gw->srv.clients[i];
        if (!kill_matches(gw, &f, x)) continue;
        if (x == c) c->close_after_flush = true; /* after this answer */
        else server_kill(gw, x);
    }
    reply_end(gw, c, legacy ? resp_w_simple(&c->out, "OK") : resp_w_int(&c->out, n), 0, 0);
    return 1;
}

/* CLIENT SETINFO LIB-NAME|LIB-VER <value> */
static int client_setinfo(gateway *gw, client *c, resp_cmd *cmd) {
    const resp_arg *k = &cmd->argv[2], *v = &cmd->argv[3];
    if (cmd->argc != 4 || !(resp_arg_is(k, "LIB-NAME") || resp_arg_is(k, "LIB-VER"))) {
        reply_err(gw, c, "ERR SYNTAX", "CLIENT SETINFO LIB-NAME|LIB-VER <value>");
        return 1;
    }
    if (!client_name_ok(v)) {
        reply_err(gw, c, "ERR SYNTAX", "CLIENT SETINFO values are at most %d bytes without spaces", CLIENT_NAME_LEN_MAX);
        return 1;
    }
    copy_arg(resp_arg_is(k, "LIB-NAME") ? c->lib_name : c->lib_ver, v);
    reply_end(gw, c, resp_w_simple(&c->out, "OK"), 0, 0);
    return 1;
}

/* CLIENT ID | SETNAME | GETNAME | SETINFO | INFO | LIST | KILL. The first four are open before
 * AUTH (client libraries send them while connecting); LIST and KILL need an agent. */
static int cmd_client(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    const resp_arg *sub = &cmd->argv[1];
    if (resp_arg_is(sub, "ID") && cmd->argc == 2) {
        reply_end(gw, c, resp_w_int(&c->out, (int64_t)c->id), 0, 0);
    } else if (resp_arg_is(sub, "GETNAME") && cmd->argc == 2) {
        reply_end(gw, c, c->name[0] ? resp_w_str(&c->out, c->name) : resp_w_null(&c->out, c->proto), 0, 0);
    } else if (resp_arg_is(sub, "SETNAME") && cmd->argc == 3) {
        if (!client_name_ok(&cmd->argv[2])) {
            reply_err(gw, c, "ERR SYNTAX", "a client name is at most %d bytes without spaces", CLIENT_NAME_LEN_MAX);
            return 1;
        }
        copy_arg(c->name, &cmd->argv[2]);
        reply_end(gw, c, resp_w_simple(&c->out, "OK"), 0, 0);
    } else if (resp_arg_is(sub, "SETINFO")) {
        return client_setinfo(gw, c, cmd);
    } else if (resp_arg_is(sub, "INFO") && cmd->argc == 2) {
        reply_end(gw, c, w_client_list(gw, c, true), 0, 0);
    } else if ((resp_arg_is(sub, "LIST") || resp_arg_is(sub, "KILL")) && !c->agent) {
        reply_err(gw, c, "NOAUTH", "authentication required (AUTH <agent> <secret>)");
    } else if (resp_arg_is(sub, "LIST") && cmd->argc == 2) {
        reply_end(gw, c, w_client_list(gw, c, false), 0, 0);
    } else if (resp_arg_is(sub, "KILL") && cmd->argc >= 3) {
        return client_kill(gw, c, cmd);
    } else {
        reply_err(gw, c, "ERR SYNTAX", "CLIENT ID|SETNAME <name>|GETNAME|SETINFO|INFO|LIST|KILL ... ('%.*s' unknown)",
                  (int)(sub->len > 32 ? 32 : sub->len), sub->p);
    }
    return 1;
}

/* SELECT 0: the one database there is (redis-cli -n 0, and clients that select on connect). */
static int cmd_select(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    const resp_arg *a = &cmd->argv[1];
    if (!(a->len == 1 && a->p[0] == '0')) {
        reply_err(gw, c, "ERR NOTFOUND", "no database '%.*s': stopgate has one database, SELECT 0",
                  (int)(a->len > 32 ? 32 : a->len), a->p);
        return 1;
    }
    reply_end(gw, c, resp_w_simple(&c->out, "OK"), 0, 0);
    return 1;
}

/* DBSIZE: the orders the gateway holds (every order since its journal began, any state) -
 * the "keys" a STATUS can ask for - as reads see them: durable ones. */
static int cmd_dbsize(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)cmd;
    (void)t_ns;
    bool live = read_live(gw);
    uint32_t n = gw->o.n;
    /* Orders are numbered in journal order: the ones not durable yet are the newest. */
    if (!live)
        while (n && !durview_exists(&gw->dv, n)) n--;
    reply_end(gw, c, resp_w_int(&c->out, n), read_lsn(gw, live), 0);
    return 1;
}

/* What COMMAND DOCS says of each command; a command missing here is still listed, with an
 * empty summary. */
typedef struct cmd_doc {
    const char *name, *summary, *group;
} cmd_doc;

static const cmd_doc cmd_docs[] = {
    {"STOP", "Order a STOP (no debits) on an account", "orders"},
    {"FREEZE", "Order a judicial FREEZE on an account", "orders"},
    {"RELEASE", "Release a live order", "orders"},
    {"EXTEND", "Extend a live order's TTL", "orders"},
    {"CONFIRM", "Confirm a HELD order (supervisor)", "orders"},
    {"STATUS", "An order's state, cases, cascade and history", "orders"},
    {"CASE", "Every order of a case, as a cascade tree", "orders"},
    {"CHECK", "Screen one account: CLEAR, LISTED or FROZEN", "screening"},
    {"MCHECK", "Screen many accounts in one command", "screening"},
    {"LIST.ADD", "Put an account on a fraud list", "lists"},
    {"LIST.DEL", "Take an account off a fraud list", "lists"},
    {"LIST.LOAD", "Replace a fraud list with a CSV", "lists"},
    {"LIST.INFO", "Fraud list table and counts", "lists"},
    {"AUTH", "Authenticate as an agent", "connection"},
    {"HELLO", "Choose RESP2 or RESP3, optionally authenticate", "connection"},
    {"PING", "Ping the gateway", "connection"},
    {"ECHO", "Echo a message", "connection"},
    {"QUIT", "Close the connection", "connection"},
    {"CLIENT", "Connection name, id, library info; list or kill connections", "connection"},
    {"SELECT", "Select database 0, the only one", "connection"},
    {"DBSIZE", "Number of orders held", "server"},
    {"INFO", "Gateway information by section", "server"},
    {"COMMAND", "The command table", "server"},
    {"CONFIG", "Answered empty (for Redis tools)", "server"},
};

static const cmd_doc *doc_of(const char *name) {
    for (size_t i = 0; i < sizeof cmd_docs / sizeof cmd_docs[0]; i++)
        if (!strcmp(cmd_docs[i].name, name)) return &cmd_docs[i];
    return NULL;
}

static void lower(char *dst, size_t cap, const char *s) {
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++) dst[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
    dst[i] = 0;
}

static int cmd_command(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns);

static const cmd_def commands[] = {
    {"STOP", cmd_stop, PERM_ORDER, 8, RESP_ARGS_MAX, true},
    {"FREEZE", cmd_freeze, PERM_ORDER, 10, RESP_ARGS_MAX, true},
    {"RELEASE", cmd_release, PERM_ORDER, 3, 7, true},
    {"EXTEND", cmd_extend, PERM_ORDER, 5, 5, true},
    {"CONFIRM", cmd_confirm, PERM_CONFIRM, 2, 2, true},
    {"STATUS", cmd_status, PERM_STATUS, 2, 2},
    {"CASE", cmd_case, PERM_STATUS, 2, 2},
    {"CHECK", cmd_check, PERM_CHECK, 3, 3},
    {"LIST.ADD", cmd_list_add, PERM_LIST, 4, 10, true},
    {"LIST.DEL", cmd_list_del, PERM_LIST, 4, 4, true},
    {"LIST.LOAD", cmd_list_load, PERM_LIST, 3, 4, true},
    {"LIST.INFO", cmd_list_info, PERM_STATUS | PERM_LIST, 1, 2},
    {"MCHECK", cmd_mcheck, PERM_CHECK, 3, RESP_ARGS_MAX},
    {"AUTH", cmd_auth, 0, 2, 3},
    {"HELLO", cmd_hello, 0, 1, 7},
    {"PING", cmd_ping, 0, 1, 2},
    {"ECHO", cmd_echo, PERM_SESSION, 2, 2},
    {"QUIT", cmd_quit, 0, 1, 1},
    {"INFO", cmd_info, PERM_INFO, 1, 16},
    {"ROLE", cmd_role, PERM_SESSION, 1, 1},
    {"COMMAND", cmd_command, PERM_SESSION, 1, RESP_ARGS_MAX},
    {"CONFIG", cmd_empty, PERM_SESSION, 1, RESP_ARGS_MAX},
    {"CLIENT", cmd_client, 0, 2, 10},
    {"SELECT", cmd_select, 0, 2, 2},
    {"DBSIZE", cmd_dbsize, PERM_INFO, 1, 1},
};

/* --- COMMAND, from the table above ---------------------------------------------------------- */

static const size_t ncommands = sizeof commands / sizeof commands[0];

static const cmd_def *command_find(const resp_arg *name) {
    for (size_t i = 0; i < ncommands; i++)
        if (resp_arg_is(name, commands[i].name)) return &commands[i];
    return NULL;
}

static bool cmd_writes(const cmd_def *d) { return d->perm & (PERM_ORDER | PERM_CONFIRM | PERM_LIST); }

/* One COMMAND INFO entry, Redis 7's ten fields: name, arity (negative: at least), flags,
 * first/last key and step (no keys), ACL categories, tips, key specs, subcommands. */
static int w_command_info(buf *b, const cmd_def *d) {
    char name[32];
    lower(name, sizeof name, d->name);
    bool fast = !strcmp(d->name, "CHECK") || !strcmp(d->name, "PING") || !strcmp(d->name, "ECHO");
    TRY(resp_w_array(b, 10));
    TRY(resp_w_str(b, name));
    TRY(resp_w_int(b, d->argc_min == d->argc_max ? d->argc_min : -d->argc_min));
    TRY(resp_w_array(b, 1 + (fast ? 1 : 0) + (d->perm == 0 ? 1 : 0)));
    TRY(resp_w_simple(b, cmd_writes(d) ? "write" : "readonly"));
    if (fast) TRY(resp_w_simple(b, "fast"));
    if (d->perm == 0) TRY(resp_w_simple(b, "no_auth"));
    TRY(resp_w_int(b, 0));
    TRY(resp_w_int(b, 0));
    TRY(resp_w_int(b, 0));
    TRY(resp_w_array(b, 1));
    TRY(resp_w_simple(b, cmd_writes(d) ? "@write" : d->perm & ~PERM_SESSION ? "@read" : "@connection"));
    TRY(resp_w_array(b, 0));
    TRY(resp_w_array(b, 0));
    return resp_w_array(b, 0);
}

static int w_command_doc(buf *b, int proto, const cmd_def *d) {
    const cmd_doc *doc = doc_of(d->name);
    char name[32];
    lower(name, sizeof name, d->name);
    TRY(resp_w_str(b, name));
    resp_map m;
    resp_map_begin(&m, b, proto);
    int rc = resp_w_kv_str(b, "summary", doc ? doc->summary : "");
    if (!rc) rc = resp_w_kv_str(b, "since", VERSION);
    if (!rc) rc = resp_w_kv_str(b, "group", doc ? doc->group : "stopgate");
    if (!rc) rc = resp_w_kv_str(b, "complexity", !strcmp(d->name, "CASE") ? "O(N) orders of the case" : "O(1)");
    return resp_map_end(&m, rc);
}

/* COMMAND [COUNT | INFO [name ...] | DOCS [name ...] | LIST]: every command, or the ones
 * named (INFO: nil for an unknown one; DOCS: unknown ones left out, as Redis does). */
static int w_command(gateway *gw, client *c, resp_cmd *cmd) {
    (void)gw;
    buf *b = &c->out;
    const resp_arg *sub = cmd->argc > 1 ? &cmd->argv[1] : NULL;
    bool all = cmd->argc <= 2;
    if (sub && resp_arg_is(sub, "COUNT")) return resp_w_int(b, (int64_t)ncommands);
    if (sub && resp_arg_is(sub, "DOCS")) {
        resp_map m;
        resp_map_begin(&m, b, c->proto);
        int rc = 0;
        for (size_t i = 0; i < (all ? ncommands : cmd->argc - 2) && !rc; i++) {
            const cmd_def *d = all ? &commands[i] : command_find(&cmd->argv[2 + i]);
            if (d) rc = w_command_doc(b, c->proto, d);
        }
        return resp_map_end(&m, rc);
    }
    if (sub && resp_arg_is(sub, "LIST")) {
        TRY(resp_w_array(b, ncommands));
        char name[32];
        for (size_t i = 0; i < ncommands; i++) {
            lower(name, sizeof name, commands[i].name);
            TRY(resp_w_str(b, name));
        }
        return 0;
    }
    if (sub && !resp_arg_is(sub, "INFO")) return -EINVAL;
    TRY(resp_w_array(b, all ? ncommands : cmd->argc - 2));
    for (size_t i = 0; i < (all ? ncommands : cmd->argc - 2); i++) {
        const cmd_def *d = all ? &commands[i] : command_find(&cmd->argv[2 + i]);
        TRY(d ? w_command_info(b, d) : resp_w_null(b, c->proto));
    }
    return 0;
}

static int cmd_command(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    int rc = w_command(gw, c, cmd);
    if (rc == -EINVAL) { /* refused before anything was written */
        reply_err(gw, c, "ERR SYNTAX", "COMMAND [COUNT | INFO [name ...] | DOCS [name ...] | LIST]");
        return 1;
    }
    reply_end(gw, c, rc, 0, 0);
    return 1;
}

int commands_dispatch(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    gw->m.commands++;
    const resp_arg *name = &cmd->argv[0];
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const cmd_def *d = &commands[i];
        if (!resp_arg_is(name, d->name)) continue;
        if (d->perm) {
            bool anon_check = d->perm == PERM_CHECK && gw->cfg.allow_anonymous_check;
            if (!c->agent && !anon_check) {
                reply_err(gw, c, "NOAUTH", "authentication required (AUTH <agent> <secret>)");
                return 1;
            }
            /* A screening client the config lets in without AUTH: no AUTH deadline, full input
             * buffer from its first CHECK on (docs/operations.md "Admission"). */
            if (!c->agent && !c->admitted) login_admitted(gw, c);
            if (c->agent && !(c->perms & d->perm)) {
                reply_err(gw, c, "NOPERM", "agent %s (role %s) may not run %s", c->agent->name,
                          role_name(c->agent->role), d->name);
                return 1;
            }
        }
        if ((int)cmd->argc < d->argc_min || (d->argc_max >= 0 && (int)cmd->argc > d->argc_max)) {
            reply_err(gw, c, "ERR SYNTAX", "wrong number of arguments for '%s'", d->name);
            return 1;
        }
        if (gw->phase == PHASE_DRAINING && (d->perm & PERM_ORDER)) {
            reply_err(gw, c, "ERR BUSY", "gateway is shutting down");
            return 1;
        }
        const char *code;
        char why[256];
        if (d->write && cluster_write_refused(gw, &code, why, sizeof why)) {
            /* A follower (READONLY <leader> <host:port>: send it there), or a leader that
             * cannot commit to the cluster log now (ERR BUSY). */
            reply_err(gw, c, code, "%s", why);
            return 1;
        }
        if (!d->write && (d->perm & (PERM_STATUS | PERM_CHECK | PERM_LIST)) && follower_stale(gw)) {
            /* Behind the trimmed cluster log, or holding a batch that does not continue it:
             * what it holds may be old, so it answers no reads of it (docs/operations.md). */
            reply_err(gw, c, "ERR STALE", "this member cannot follow the cluster log (%s); ask another member",
                      follower_stale_why(gw));
            return 1;
        }
        return d->fn(gw, c, cmd, t_ns);
    }
    reply_err(gw, c, "ERR SYNTAX", "unknown command '%.*s'", (int)(name->len > 32 ? 32 : name->len), name->p);
    return 1;
}
