/*
 * commands: the RESP command table of SPEC §4.1. Each handler parses its arguments
 * (positional first, then NAME value pairs), checks the caller's role, asks the engine, and
 * writes exactly one reply followed by server_reply_done() with the lsn the reply depends on.
 * Every refusal carries a stable code as its first word and a human reason.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "account.h"
#include "clock.h"
#include "gateway.h"

#define VERSION "0.1.0"

typedef int (*cmd_fn)(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns);

typedef struct cmd_def {
    const char *name;
    cmd_fn fn;
    unsigned perm; /* 0 = open to unauthenticated connections */
    int argc_min, argc_max; /* including the command name; -1 = unbounded */
} cmd_def;

static void reply_err(gateway *gw, client *c, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply_err(gateway *gw, client *c, const char *code, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gw->m.errors++;
    resp_w_error(&c->out, code, "%s", msg);
    server_reply_done(gw, c, 0, 0);
}

static void ok(gateway *gw, client *c, uint64_t lsn) { server_reply_done(gw, c, lsn, 0); }

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

static void w_order_id(buf *b, uint32_t no) {
    char id[32];
    order_id_format(id, sizeof id, no);
    resp_w_str(b, id);
}

static void w_mask_names(gateway *gw, buf *b, uint64_t mask) {
    resp_w_array(b, (size_t)__builtin_popcountll(mask));
    for (uint64_t m = mask; m; m &= m - 1) resp_w_str(b, lists_name(gw, (unsigned)__builtin_ctzll(m)));
}

/* "mule,suspect" as an array. */
static void w_csv_names(buf *b, const char *csv) {
    size_t n = 0;
    for (const char *p = csv; *p; n++) {
        const char *comma = strchr(p, ',');
        p = comma ? comma + 1 : p + strlen(p);
    }
    resp_w_array(b, n);
    for (const char *p = csv; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        resp_w_bulk(b, p, len);
        p += len + (comma ? 1 : 0);
    }
}

static void w_answer(gateway *gw, client *c, const engine_answer *a, int64_t t_ns) {
    buf *b = &c->out;
    bool has_expiry = a->status == ANS_EXTENDED;
    bool is_order = a->status <= ANS_HELD;
    resp_w_map(b, c->proto, 3 + (is_order ? 1 : 0) + (has_expiry ? 1 : 0));
    resp_w_str(b, "order_id");
    w_order_id(b, a->order_no);
    resp_w_kv_str(b, "status", answer_name(a->status));
    if (is_order) {
        /* The lists the account is on now (a DUPLICATE answers with today's lists too). */
        const order *ord = orders_get(&gw->o, a->order_no);
        sg_verdict v;
        lists_lookup(gw, ord->bank, ord->account, &v);
        resp_w_str(b, "lists");
        w_mask_names(gw, b, v.mask);
    }
    if (has_expiry) resp_w_kv_int(b, "expires_at", orders_get(&gw->o, a->order_no)->expires_at_ms);
    resp_w_kv_int(b, "lsn", (int64_t)a->lsn);
    gw->m.answers[a->status < 8 ? a->status : 7]++;
    server_reply_done(gw, c, a->lsn, t_ns);
}

/* STOP / FREEZE <request_id> BANK b ACCOUNT a CASE c [AMOUNT m [CURRENCY x]] [TTL s] ... */
static int cmd_order(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns, uint8_t kind) {
    order_req rq = {.kind = kind, .agent = c->agent ? c->agent->name : "anonymous"};
    opt o[] = {{"BANK"}, {"ACCOUNT"}, {"CASE"}, {"AMOUNT"}, {"CURRENCY"}, {"TTL"}, {"REASON"}, {"NOTE"}, {"DOC"}};
    enum { O_BANK, O_ACCOUNT, O_CASE, O_AMOUNT, O_CURRENCY, O_TTL, O_REASON, O_NOTE, O_DOC };
    char why[160];
    const char *e;
    size_t nopts = kind == KIND_FREEZE ? 9 : 8;
    if (!field_ident_ok(cmd->argv[1].p, cmd->argv[1].len, REQUEST_ID_LEN_MAX)) {
        reply_err(gw, c, "ERR SYNTAX", "request_id must be 1-64 printable characters without spaces");
        return 1;
    }
    rq.request_id = as_str(cmd->argv[1]);
    if ((e = parse_opts(cmd, 2, o, nopts, why, sizeof why))) {
        reply_err(gw, c, "ERR SYNTAX", "%s", e);
        return 1;
    }
    if (!o[O_BANK].set || !o[O_ACCOUNT].set || !o[O_CASE].set) {
        reply_err(gw, c, "ERR SYNTAX", "BANK, ACCOUNT and CASE are required");
        return 1;
    }
    if (kind == KIND_FREEZE && !o[O_DOC].set) {
        reply_err(gw, c, "ERR SYNTAX", "FREEZE needs DOC <legal document reference>");
        return 1;
    }
    if (account_bank_normalise(o[O_BANK].val.p, o[O_BANK].val.len, rq.bank, &e) != 0) {
        reply_err(gw, c, "ERR BADACCOUNT", "%s", e);
        return 1;
    }
    if (account_normalise(o[O_ACCOUNT].val.p, o[O_ACCOUNT].val.len, rq.account, &e) != 0) {
        reply_err(gw, c, "ERR BADACCOUNT", "%s", e);
        return 1;
    }
    if (!field_ident_ok(o[O_CASE].val.p, o[O_CASE].val.len, CASE_LEN_MAX)) {
        reply_err(gw, c, "ERR SYNTAX", "CASE must be 1-64 printable characters without spaces");
        return 1;
    }
    rq.case_id = as_str(o[O_CASE].val);
    if (o[O_AMOUNT].set && field_amount_parse(o[O_AMOUNT].val.p, o[O_AMOUNT].val.len, &rq.amount_minor, &e) != 0) {
        reply_err(gw, c, "ERR BADAMOUNT", "%s", e);
        return 1;
    }
    if (o[O_CURRENCY].set) {
        if (field_currency_parse(o[O_CURRENCY].val.p, o[O_CURRENCY].val.len, rq.currency, &e) != 0) {
            reply_err(gw, c, "ERR BADAMOUNT", "%s", e);
            return 1;
        }
        rq.currency_given = true;
    } else {
        memcpy(rq.currency, gw->cfg.currency, 4);
    }
    if (o[O_TTL].set && field_ttl_parse(o[O_TTL].val.p, o[O_TTL].val.len, &rq.ttl_s, &e) != 0) {
        reply_err(gw, c, "ERR SYNTAX", "%s", e);
        return 1;
    }
    if (o[O_REASON].set) {
        if (!field_ident_ok(o[O_REASON].val.p, o[O_REASON].val.len, REASON_LEN_MAX)) {
            reply_err(gw, c, "ERR SYNTAX", "REASON must be a code of 1-64 printable characters");
            return 1;
        }
        rq.reason = as_str(o[O_REASON].val);
    }
    if (o[O_NOTE].set) {
        if (!field_text_ok(o[O_NOTE].val.p, o[O_NOTE].val.len, NOTE_LEN_MAX)) {
            reply_err(gw, c, "ERR SYNTAX", "NOTE must be at most %d bytes without control characters", NOTE_LEN_MAX);
            return 1;
        }
        rq.note = as_str(o[O_NOTE].val);
    }
    if (o[O_DOC].set) {
        if (!field_ident_ok(o[O_DOC].val.p, o[O_DOC].val.len, DOC_LEN_MAX)) {
            reply_err(gw, c, "ERR SYNTAX", "DOC must be 1-128 printable characters without spaces");
            return 1;
        }
        rq.doc = as_str(o[O_DOC].val);
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

static void w_opt_str(buf *b, int proto, const char *key, const char *v) {
    resp_w_str(b, key);
    if (v && *v) resp_w_str(b, v);
    else resp_w_null(b, proto);
}

static const char *ts_keys[ST__COUNT] = {
    [ST_ACCEPTED] = "accepted_at", [ST_HELD] = "held_at",         [ST_SENT] = "sent_at",
    [ST_OVERDUE] = "overdue_at",   [ST_RELEASED] = "released_at", [ST_EXPIRED] = "expired_at",
};

/* The STATUS map of one order (SPEC §4.1). */
static void w_status(gateway *gw, client *c, const order *ord, bool live) {
    buf *b = &c->out;
    orders *o = &gw->o;
    size_t n = 20 + (ord->onward_count ? 1 : 0) + (ord->answer_state ? 1 : 0) +
               (ord->release_doc_off ? 1 : 0);
    for (int s = 0; s < ST__COUNT; s++)
        if (ts_keys[s] && ord->at_ms[s]) n++;
    resp_w_map(b, c->proto, n);
    resp_w_str(b, "order_id");
    w_order_id(b, ord->no);
    resp_w_kv_str(b, "request_id", o->req[ord->request_idx].id);
    resp_w_kv_str(b, "kind", order_kind_name(ord->kind));
    resp_w_kv_str(b, "state", order_state_name(ord->state));
    resp_w_kv_str(b, "bank", ord->bank);
    resp_w_kv_str(b, "account", ord->account);
    resp_w_kv_int(b, "amount", ord->amount_minor);
    resp_w_kv_int(b, "frozen", ord->frozen_minor);
    resp_w_kv_str(b, "currency", ord->currency);
    resp_w_str(b, "cases");
    resp_w_array(b, ord->ncases);
    /* The list only grows: a durable view (durview.h) holds its first ncases. */
    uint32_t k = 0;
    for (uint32_t l = ord->cases_head; l && k < ord->ncases; l = o->links[l].next, k++)
        resp_w_str(b, o->cases[o->links[l].val].id);
    resp_w_kv_str(b, "agent", ord->agent);
    resp_w_str(b, "parent");
    if (ord->parent_no) w_order_id(b, ord->parent_no);
    else resp_w_null(b, c->proto);
    uint32_t nchild = 0;
    for (uint32_t ch = ord->first_child; ch; ch = o->v[ch].next_sibling) nchild += live || durview_exists(&gw->dv, ch);
    resp_w_str(b, "children");
    resp_w_array(b, nchild);
    for (uint32_t ch = ord->first_child; ch; ch = o->v[ch].next_sibling)
        if (live || durview_exists(&gw->dv, ch)) w_order_id(b, ch);
    resp_w_kv_int(b, "level", ord->level);
    resp_w_str(b, "lists");
    w_csv_names(b, orders_str(o, ord->lists_off));
    w_opt_str(b, c->proto, "reason", orders_str(o, ord->reason_off));
    w_opt_str(b, c->proto, "order_reason", orders_str(o, ord->order_reason_off));
    w_opt_str(b, c->proto, "doc", orders_str(o, ord->doc_off));
    if (ord->release_doc_off) resp_w_kv_str(b, "release_doc", orders_str(o, ord->release_doc_off));
    w_opt_str(b, c->proto, "note", orders_str(o, ord->note_off));
    resp_w_kv_int(b, "expires_at", ord->expires_at_ms);
    if (ord->onward_count) {
        const sg_onward *ow = orders_onward(o, ord);
        resp_w_str(b, "onward");
        resp_w_array(b, ord->onward_count);
        char id[32];
        order_id_format(id, sizeof id, ord->no);
        for (uint32_t i = 0; i < ord->onward_count; i++) {
            /* What the cascade made of it: the child order (or the live order it merged
             * into), or why it was skipped. */
            char nb[BANK_LEN_MAX + 1], na[ACCOUNT_LEN_MAX + 1], rid[REQUEST_ID_LEN_MAX + 1];
            const char *skip = engine_onward_skip(gw, ord, &ow[i], nb, na);
            int rl = snprintf(rid, sizeof rid, "cascade:%s:%u", id, i + 1);
            const request *rq = skip ? NULL : orders_find_request(o, rid, (uint32_t)rl);
            if (rq && !live && rq->lsn > gw->j.durable_lsn) rq = NULL; /* not durable yet: pending */
            resp_w_map(b, c->proto, 5);
            resp_w_kv_str(b, "bank", ow[i].bank);
            resp_w_kv_str(b, "account", ow[i].account);
            resp_w_kv_int(b, "amount", ow[i].amount_minor);
            resp_w_str(b, "child");
            if (rq) w_order_id(b, rq->order_no);
            else resp_w_null(b, c->proto);
            resp_w_str(b, "skipped");
            if (skip) resp_w_str(b, skip);
            else if (!rq) resp_w_str(b, "pending");
            else resp_w_null(b, c->proto);
        }
    }
    for (int s = 0; s < ST__COUNT; s++)
        if (ts_keys[s] && ord->at_ms[s]) resp_w_kv_int(b, ts_keys[s], ord->at_ms[s]);
    if (ord->answer_state) resp_w_kv_int(b, "answered_at", ord->at_ms[ord->answer_state]);
}

/* Reads (STATUS, CASE, CHECK, MCHECK) never show a client what the disk does not hold
 * (SPEC §9). While the journal writes, a read shows the order table as it is ("live") and
 * its answer is held, like a write's, until what it shows is durable - at most one
 * fdatasync, and a read right after a write (any connection's, an auto-stop's) sees it.
 * While the journal fails, that wait could be endless: reads then show the durable view
 * (durview.h) and are answered at once; the answers already held become ERR BUSY
 * (server_on_journal_failed). */
static bool read_live(const gateway *gw) { return gw->j.last_error == 0; }
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
    w_status(gw, c, ord, live);
    ok(gw, c, read_lsn(gw, live));
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
    qsort(in, n, sizeof *in, cmp_u32);
    return n;
}

static int cmd_case(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    const resp_arg *a = &cmd->argv[1];
    if (!field_ident_ok(a->p, a->len, CASE_LEN_MAX)) {
        reply_err(gw, c, "ERR SYNTAX", "CASE must be 1-64 printable characters without spaces");
        return 1;
    }
    const case_ent *ce = orders_find_case(&gw->o, a->p, a->len);
    /* The case's orders in ascending number, for membership tests; the stack for the walk. */
    uint32_t *in = ce ? malloc(ce->count * sizeof *in) : NULL, *stack = ce ? malloc(ce->count * sizeof *stack) : NULL;
    if (ce && (!in || !stack)) {
        free(in);
        free(stack);
        reply_err(gw, c, "ERR BUSY", "out of memory");
        return 1;
    }
    bool live = read_live(gw);
    uint32_t n = ce ? case_read_orders(gw, live, ce, in) : 0;
    if (n == 0) { /* no order of it is durable yet: the case does not exist for reads */
        free(in);
        free(stack);
        reply_err(gw, c, "ERR NOTFOUND", "no case '%.*s'", (int)a->len, a->p);
        return 1;
    }
    orders *o = &gw->o;
    int64_t frozen = 0;
    buf *b = &c->out;
    resp_w_map(b, c->proto, 3);
    resp_w_kv_str(b, "case", ce->id);
    resp_w_str(b, "orders");
    resp_w_array(b, n);
    /* Roots first, each followed by its cascade subtree (depth first): the tree as an agent
     * reads it. */
    uint32_t written = 0;
    order tmp;
    for (uint32_t i = 0; i < n; i++) {
        const order *root = &o->v[in[i]];
        if (root->parent_no && bsearch(&root->parent_no, in, n, sizeof *in, cmp_u32)) continue;
        uint32_t sp = 0;
        stack[sp++] = root->no;
        while (sp && written < n) {
            const order *ord = read_get(gw, live, stack[--sp], &tmp);
            assert(ord); /* in[] holds only orders that exist for reads */
            w_status(gw, c, ord, live);
            written++;
            frozen += ord->frozen_minor;
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
    free(in);
    free(stack);
    assert(written == n);
    resp_w_kv_int(b, "frozen_total", frozen);
    ok(gw, c, read_lsn(gw, live));
    return 1;
}

/* The CLEAR answer (half a screening load and more) in one append, byte for byte what the
 * field writers in w_check give for it (integration test_check_reply_bytes): formatting it
 * field by field was about a tenth of a CHECK's CPU. */
static void w_check_clear(buf *b, int proto) {
    static const char r2[] = "*8\r\n$7\r\nverdict\r\n$5\r\nCLEAR\r\n$5\r\nlists\r\n*0\r\n$5\r\nscore\r\n:0\r\n"
                             "$8\r\norder_id\r\n$-1\r\n";
    static const char r3[] = "%4\r\n$7\r\nverdict\r\n$5\r\nCLEAR\r\n$5\r\nlists\r\n*0\r\n$5\r\nscore\r\n:0\r\n"
                             "$8\r\norder_id\r\n_\r\n";
    assert(proto == 2 || proto == 3);
    if (proto == 3) buf_append(b, r3, sizeof r3 - 1);
    else buf_append(b, r2, sizeof r2 - 1);
}

/* One CHECK answer; returns the lsn it depends on (the account's latest order, live reads). */
static uint64_t w_check(gateway *gw, client *c, const char *bank, const char *account, bool rlive) {
    buf *b = &c->out;
    sg_verdict v;
    lists_lookup(gw, bank, account, &v);
    /* FROZEN comes from the order table as reads see it: the truth the shared bit mirrors.
     * Only the account's latest order decides it, so its last record is all to wait for. */
    order tmp;
    const order *latest = rlive ? orders_latest_on_account(&gw->o, bank, account) : NULL;
    uint64_t lsn = latest ? latest->last_lsn : 0;
    const order *live = rlive ? (latest && order_is_live(latest, gw->now_ms) ? latest : NULL)
                              : durview_live_on_account(&gw->dv, &gw->o, bank, account, gw->now_ms, &tmp);
    gw->m.checks++;
    if (live || v.mask) gw->m.check_hits++;
    if (!live && !v.mask && !v.score) {
        w_check_clear(b, c->proto);
    } else {
        resp_w_map(b, c->proto, 4);
        resp_w_kv_str(b, "verdict", live ? "FROZEN" : v.mask ? "LISTED" : "CLEAR");
        resp_w_str(b, "lists");
        w_mask_names(gw, b, v.mask);
        resp_w_kv_int(b, "score", v.score);
        resp_w_str(b, "order_id");
        if (live) w_order_id(b, live->no);
        else resp_w_null(b, c->proto);
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
    uint64_t lsn = w_check(gw, c, bank, account, read_live(gw));
    ok(gw, c, lsn);
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
    resp_w_array(&c->out, pairs);
    for (uint32_t i = 0; i < pairs; i++) {
        const char *e;
        account_bank_normalise(cmd->argv[1 + 2 * i].p, cmd->argv[1 + 2 * i].len, bank, &e);
        account_normalise(cmd->argv[2 + 2 * i].p, cmd->argv[2 + 2 * i].len, account, &e);
        uint64_t l = w_check(gw, c, bank, account, live);
        if (l > lsn) lsn = l;
    }
    ok(gw, c, lsn);
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

static void w_list_answer(gateway *gw, client *c, const list_answer *a) {
    if (a->code) {
        reply_err(gw, c, a->code, "%s", a->why);
        return;
    }
    buf *b = &c->out;
    bool load = a->rows > 0;
    resp_w_map(b, c->proto, load ? 4 : 2);
    resp_w_kv_str(b, "status", a->status);
    if (load) {
        resp_w_kv_int(b, "rows", a->rows);
        resp_w_kv_int(b, "ms", a->ms);
    }
    resp_w_kv_int(b, "lsn", (int64_t)a->lsn);
    ok(gw, c, a->lsn);
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

/* LIST.INFO [<list>] */
static int cmd_list_info(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    const lists_state *ls = &gw->ls;
    const sgl_header *h = ls->t.h;
    uint64_t cap = ls->t.mask + 1, count = atomic_load(&h->count);
    char lf[32];
    snprintf(lf, sizeof lf, "%.4f", (double)(count + atomic_load(&h->tombstones)) / (double)cap);
    buf *b = &c->out;
    if (cmd->argc == 2) {
        int bit = list_arg(gw, c, &cmd->argv[1]);
        if (bit < 0) return 1;
        resp_w_map(b, c->proto, 6);
        resp_w_kv_str(b, "list", ls->names[bit]);
        resp_w_kv_int(b, "entries", (int64_t)h->list_count[bit]);
        resp_w_kv_int(b, "auto_stop", (ls->auto_stop_mask >> bit) & 1);
        resp_w_kv_int(b, "capacity", (int64_t)cap);
        resp_w_kv_int(b, "generation", (int64_t)ls->generation);
        resp_w_kv_str(b, "load_factor", lf);
    } else {
        resp_w_map(b, c->proto, 7);
        resp_w_kv_str(b, "shm", gw->cfg.shm_name);
        resp_w_kv_int(b, "capacity", (int64_t)cap);
        resp_w_kv_int(b, "entries", (int64_t)count);
        resp_w_kv_int(b, "tombstones", (int64_t)atomic_load(&h->tombstones));
        resp_w_kv_int(b, "generation", (int64_t)ls->generation);
        resp_w_kv_str(b, "load_factor", lf);
        resp_w_str(b, "lists");
        resp_w_map(b, c->proto, ls->nlists);
        for (uint32_t i = 0; i < ls->nlists; i++) resp_w_kv_int(b, ls->names[i], (int64_t)h->list_count[i]);
    }
    ok(gw, c, 0);
    return 1;
}

static void hello_reply(gateway *gw, client *c) {
    buf *b = &c->out;
    resp_w_map(b, c->proto, 7);
    resp_w_kv_str(b, "server", "stopgate");
    resp_w_kv_str(b, "version", VERSION);
    resp_w_kv_int(b, "proto", c->proto);
    resp_w_kv_int(b, "id", c->idx);
    resp_w_kv_str(b, "mode", "standalone");
    resp_w_kv_str(b, "role", "master");
    resp_w_str(b, "modules");
    resp_w_array(b, 0);
    ok(gw, c, 0);
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
    resp_w_simple(&c->out, "OK");
    ok(gw, c, 0);
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
    const resp_arg *name = NULL, *secret = NULL;
    for (; i < cmd->argc; i++) {
        if (resp_arg_is(&cmd->argv[i], "AUTH") && i + 2 < cmd->argc && !name) {
            name = &cmd->argv[i + 1];
            secret = &cmd->argv[i + 2];
            i += 2;
        } else if (resp_arg_is(&cmd->argv[i], "SETNAME") && i + 1 < cmd->argc) {
            i += 1;
        } else {
            reply_err(gw, c, "ERR SYNTAX", "HELLO [2|3] [AUTH <agent> <secret>]");
            return 1;
        }
    }
    if (name) return auth_begin(gw, c, name, secret, proto);
    c->proto = proto;
    hello_reply(gw, c);
    return 1;
}

static int cmd_ping(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    if (cmd->argc == 2) resp_w_bulk(&c->out, cmd->argv[1].p, cmd->argv[1].len);
    else resp_w_simple(&c->out, "PONG");
    ok(gw, c, 0);
    return 1;
}

/* redis-cli --pipe ends its stream with an ECHO of a random marker and waits for it. */
static int cmd_echo(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)t_ns;
    resp_w_bulk(&c->out, cmd->argv[1].p, cmd->argv[1].len);
    ok(gw, c, 0);
    return 1;
}

static int cmd_quit(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)cmd;
    (void)t_ns;
    resp_w_simple(&c->out, "OK");
    ok(gw, c, 0);
    c->close_after_flush = true;
    return 1;
}

/* redis-cli and redis-benchmark ask these on connect; answer emptily instead of failing. */
static int cmd_empty(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)cmd;
    (void)t_ns;
    resp_w_array(&c->out, 0);
    ok(gw, c, 0);
    return 1;
}

static int cmd_info(gateway *gw, client *c, resp_cmd *cmd, int64_t t_ns) {
    (void)cmd;
    (void)t_ns;
    buf tmp;
    buf_init(&tmp, 1 << 20);
    buf_printf(&tmp, "# Server\r\nstopgate_version:%s\r\nuptime_s:%lld\r\nphase:%s\r\n", VERSION,
               (long long)((gw->now_ms - gw->started_ms) / 1000),
               gw->phase == PHASE_RUNNING ? "running" : gw->phase == PHASE_DRAINING ? "draining" : "recovering");
    buf_printf(&tmp, "# Clients\r\nconnected_clients:%u\r\nmax_clients:%u\r\n", gw->srv.count, gw->srv.max);
    buf_printf(&tmp, "# Orders\r\norders_total:%u\r\nrequests_total:%u\r\ncases_total:%u\r\n", gw->o.n, gw->o.nreq,
               gw->o.ncases);
    for (int s = 1; s < ST__COUNT; s++)
        buf_printf(&tmp, "orders_%s:%llu\r\n", order_state_name((uint8_t)s), (unsigned long long)gw->o.state_count[s]);
    buf_printf(&tmp, "# Journal\r\njournal_dir:%s\r\nlast_lsn:%llu\r\ndurable_lsn:%llu\r\nsegment:%llu\r\nfsyncs:%llu\r\n",
               gw->j.dir, (unsigned long long)journal_last_lsn(&gw->j), (unsigned long long)gw->j.durable_lsn,
               (unsigned long long)gw->j.seg_seq, (unsigned long long)gw->j.stats.fsyncs);
    buf_printf(&tmp, "# Banks\r\n");
    for (uint32_t i = 0; i < gw->rt.nplugins; i++) {
        plugin_inst *p = &gw->rt.plugins[i];
        buf_printf(&tmp, "plugin_%s:type=%s,submitted=%llu,results=%llu\r\n", p->name, p->ops->name,
                   (unsigned long long)p->submitted, (unsigned long long)p->results);
    }
    resp_w_bulk(&c->out, (const char *)tmp.data, tmp.len);
    buf_free(&tmp);
    ok(gw, c, 0);
    return 1;
}

static const cmd_def commands[] = {
    {"STOP", cmd_stop, PERM_ORDER, 8, RESP_ARGS_MAX},
    {"FREEZE", cmd_freeze, PERM_ORDER, 10, RESP_ARGS_MAX},
    {"RELEASE", cmd_release, PERM_ORDER, 3, 7},
    {"EXTEND", cmd_extend, PERM_ORDER, 5, 5},
    {"CONFIRM", cmd_confirm, PERM_CONFIRM, 2, 2},
    {"STATUS", cmd_status, PERM_STATUS, 2, 2},
    {"CASE", cmd_case, PERM_STATUS, 2, 2},
    {"CHECK", cmd_check, PERM_CHECK, 3, 3},
    {"LIST.ADD", cmd_list_add, PERM_LIST, 4, 10},
    {"LIST.DEL", cmd_list_del, PERM_LIST, 4, 4},
    {"LIST.LOAD", cmd_list_load, PERM_LIST, 3, 4},
    {"LIST.INFO", cmd_list_info, PERM_STATUS | PERM_LIST, 1, 2},
    {"MCHECK", cmd_mcheck, PERM_CHECK, 3, RESP_ARGS_MAX},
    {"AUTH", cmd_auth, 0, 2, 3},
    {"HELLO", cmd_hello, 0, 1, 7},
    {"PING", cmd_ping, 0, 1, 2},
    {"ECHO", cmd_echo, PERM_SESSION, 2, 2},
    {"QUIT", cmd_quit, 0, 1, 1},
    {"INFO", cmd_info, PERM_INFO, 1, 2},
    {"COMMAND", cmd_empty, PERM_SESSION, 1, RESP_ARGS_MAX},
    {"CONFIG", cmd_empty, PERM_SESSION, 1, RESP_ARGS_MAX},
};

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
        return d->fn(gw, c, cmd, t_ns);
    }
    reply_err(gw, c, "ERR SYNTAX", "unknown command '%.*s'", (int)(name->len > 32 ? 32 : name->len), name->p);
    return 1;
}
