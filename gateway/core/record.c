#include "record.h"

#include <assert.h>
#include <string.h>

enum {
    T_KIND = 1,
    T_STATE,
    T_ORDER_NO,
    T_PARENT_NO,
    T_LEVEL,
    T_FINGERPRINT,
    T_AMOUNT,
    T_FROZEN,
    T_TS,
    T_EXPIRES,
    T_REQUEST_ID,
    T_BANK,
    T_ACCOUNT,
    T_CURRENCY,
    T_CASE,
    T_REASON,
    T_NOTE,
    T_DOC,
    T_AGENT,
    T_ONWARD, /* repeated: i64 amount, u8 bank len, bank, account */
    T_LIST,
    T_SCORE,
    T_ROWS,
    T_LOAD_ID,
    T_ROW_COUNT,
};

typedef struct wr {
    uint8_t *p;
    size_t len, cap;
    int err;
} wr;

static void put(wr *w, uint8_t tag, const void *v, size_t n) {
    if (w->err || n > 0xffff || w->cap - w->len < 3 + n) {
        w->err = 1;
        return;
    }
    w->p[w->len] = tag;
    uint16_t n16 = (uint16_t)n;
    memcpy(w->p + w->len + 1, &n16, 2);
    memcpy(w->p + w->len + 3, v, n);
    w->len += 3 + n;
}
static void put_u64(wr *w, uint8_t tag, uint64_t v) {
    if (v) put(w, tag, &v, 8);
}
static void put_i64(wr *w, uint8_t tag, int64_t v) {
    if (v) put(w, tag, &v, 8);
}
static void put_str(wr *w, uint8_t tag, rec_str s) {
    if (s.len) put(w, tag, s.p, s.len);
}

int record_encode(const order_rec *r, uint8_t *out, size_t cap) {
    assert(r->type >= REC_ORDER && r->type <= REC_LIST_LOAD_COMMIT);
    assert(r->onward_count <= SG_ONWARD_MAX); /* more would be cut silently below */
    wr w = {out, 0, cap, 0};
    uint8_t k = r->kind, s = r->state;
    if (k) put(&w, T_KIND, &k, 1);
    if (s) put(&w, T_STATE, &s, 1);
    put_u64(&w, T_ORDER_NO, r->order_no);
    put_u64(&w, T_PARENT_NO, r->parent_no);
    if (r->level) put(&w, T_LEVEL, &r->level, 4);
    put_u64(&w, T_FINGERPRINT, r->fingerprint);
    put_i64(&w, T_AMOUNT, r->amount_minor);
    put_i64(&w, T_FROZEN, r->frozen_minor);
    put_i64(&w, T_TS, r->ts_ms);
    put_i64(&w, T_EXPIRES, r->expires_at_ms);
    put_str(&w, T_REQUEST_ID, r->request_id);
    put_str(&w, T_BANK, r->bank);
    put_str(&w, T_ACCOUNT, r->account);
    put_str(&w, T_CURRENCY, r->currency);
    put_str(&w, T_CASE, r->case_id);
    put_str(&w, T_REASON, r->reason);
    put_str(&w, T_NOTE, r->note);
    put_str(&w, T_DOC, r->doc);
    put_str(&w, T_AGENT, r->agent);
    for (uint32_t i = 0; i < r->onward_count && i < SG_ONWARD_MAX; i++) {
        const sg_onward *o = &r->onward[i];
        uint8_t tmp[8 + 1 + sizeof o->bank + sizeof o->account];
        size_t bl = strnlen(o->bank, sizeof o->bank - 1), al = strnlen(o->account, sizeof o->account - 1);
        memcpy(tmp, &o->amount_minor, 8);
        tmp[8] = (uint8_t)bl;
        memcpy(tmp + 9, o->bank, bl);
        memcpy(tmp + 9 + bl, o->account, al);
        put(&w, T_ONWARD, tmp, 9 + bl + al);
    }
    put_str(&w, T_LIST, r->list);
    if (r->score) put(&w, T_SCORE, &r->score, 1);
    put_str(&w, T_ROWS, r->rows);
    put_u64(&w, T_LOAD_ID, r->load_id);
    if (r->row_count) put(&w, T_ROW_COUNT, &r->row_count, 4);
    assert(w.len <= cap);
    return w.err ? -1 : (int)w.len;
}

static int get_fixed(const uint8_t *v, uint16_t n, void *out, size_t want) {
    if (n != want) return -1;
    memcpy(out, v, want);
    return 0;
}

int record_decode(uint16_t type, const uint8_t *p, size_t len, order_rec *r) {
    memset(r, 0, sizeof *r);
    r->type = type;
    size_t off = 0;
    while (off < len) {
        if (len - off < 3) return -1;
        uint8_t tag = p[off];
        uint16_t n;
        memcpy(&n, p + off + 1, 2);
        off += 3;
        if (len - off < n) return -1;
        const uint8_t *v = p + off;
        off += n;
        rec_str s = {(const char *)v, n};
        int rc = 0;
        switch (tag) {
        case T_KIND: rc = get_fixed(v, n, &r->kind, 1); break;
        case T_STATE: rc = get_fixed(v, n, &r->state, 1); break;
        case T_ORDER_NO: rc = get_fixed(v, n, &r->order_no, 8); break;
        case T_PARENT_NO: rc = get_fixed(v, n, &r->parent_no, 8); break;
        case T_LEVEL: rc = get_fixed(v, n, &r->level, 4); break;
        case T_FINGERPRINT: rc = get_fixed(v, n, &r->fingerprint, 8); break;
        case T_AMOUNT: rc = get_fixed(v, n, &r->amount_minor, 8); break;
        case T_FROZEN: rc = get_fixed(v, n, &r->frozen_minor, 8); break;
        case T_TS: rc = get_fixed(v, n, &r->ts_ms, 8); break;
        case T_EXPIRES: rc = get_fixed(v, n, &r->expires_at_ms, 8); break;
        case T_REQUEST_ID: r->request_id = s; break;
        case T_BANK: r->bank = s; break;
        case T_ACCOUNT: r->account = s; break;
        case T_CURRENCY: r->currency = s; break;
        case T_CASE: r->case_id = s; break;
        case T_REASON: r->reason = s; break;
        case T_NOTE: r->note = s; break;
        case T_DOC: r->doc = s; break;
        case T_AGENT: r->agent = s; break;
        case T_ONWARD: {
            if (r->onward_count >= SG_ONWARD_MAX || n < 9) return -1;
            sg_onward *o = &r->onward[r->onward_count];
            memcpy(&o->amount_minor, v, 8);
            uint8_t bl = v[8];
            size_t al = (size_t)n - 9 - bl;
            if (bl >= sizeof o->bank || (size_t)n < 9u + bl || al >= sizeof o->account) return -1;
            memcpy(o->bank, v + 9, bl);
            o->bank[bl] = 0;
            memcpy(o->account, v + 9 + bl, al);
            o->account[al] = 0;
            r->onward_count++;
            break;
        }
        case T_LIST: r->list = s; break;
        case T_SCORE: rc = get_fixed(v, n, &r->score, 1); break;
        case T_ROWS: r->rows = s; break;
        case T_LOAD_ID: rc = get_fixed(v, n, &r->load_id, 8); break;
        case T_ROW_COUNT: rc = get_fixed(v, n, &r->row_count, 4); break;
        default: break; /* a newer writer's field: skip */
        }
        if (rc) return -1;
    }
    assert(off == len && r->onward_count <= SG_ONWARD_MAX);
    return 0;
}

static bool str_eq(rec_str a, rec_str b) { return a.len == b.len && (a.len == 0 || !memcmp(a.p, b.p, a.len)); }

bool record_equal(const order_rec *a, const order_rec *b) {
    if (a->type != b->type || a->kind != b->kind || a->state != b->state || a->order_no != b->order_no ||
        a->parent_no != b->parent_no || a->level != b->level || a->fingerprint != b->fingerprint ||
        a->amount_minor != b->amount_minor || a->frozen_minor != b->frozen_minor || a->ts_ms != b->ts_ms ||
        a->expires_at_ms != b->expires_at_ms || a->onward_count != b->onward_count || a->score != b->score ||
        a->load_id != b->load_id || a->row_count != b->row_count)
        return false;
    const rec_str *sa[] = {&a->request_id, &a->bank, &a->account, &a->currency, &a->case_id, &a->reason,
                           &a->note,       &a->doc,  &a->agent,   &a->list,     &a->rows};
    const rec_str *sb[] = {&b->request_id, &b->bank, &b->account, &b->currency, &b->case_id, &b->reason,
                           &b->note,       &b->doc,  &b->agent,   &b->list,     &b->rows};
    for (size_t i = 0; i < sizeof sa / sizeof sa[0]; i++)
        if (!str_eq(*sa[i], *sb[i])) return false;
    for (uint32_t i = 0; i < a->onward_count; i++) {
        const sg_onward *x = &a->onward[i], *y = &b->onward[i];
        if (x->amount_minor != y->amount_minor || strncmp(x->bank, y->bank, sizeof x->bank) != 0 ||
            strncmp(x->account, y->account, sizeof x->account) != 0)
            return false;
    }
    return true;
}

const char *record_type_name(uint16_t type) {
    switch (type) {
    case REC_ORDER: return "ORDER";
    case REC_MERGE: return "MERGE";
    case REC_STATE: return "STATE";
    case REC_RELEASE: return "RELEASE";
    case REC_EXTEND: return "EXTEND";
    case REC_CONFIRM: return "CONFIRM";
    case REC_LIST_ADD: return "LIST_ADD";
    case REC_LIST_DEL: return "LIST_DEL";
    case REC_LIST_LOAD_BEGIN: return "LIST_LOAD_BEGIN";
    case REC_LIST_LOAD_ROWS: return "LIST_LOAD_ROWS";
    case REC_LIST_LOAD_COMMIT: return "LIST_LOAD_COMMIT";
    case REC_CLOSE: return "CLOSE";
    default: return "UNKNOWN";
    }
}

int record_row_put(uint8_t *blob, size_t cap, size_t *len, const list_row *row) {
    size_t need = 4u + row->bank.len + row->account.len + row->case_id.len;
    if (row->bank.len > 255 || row->account.len > 255 || row->case_id.len > 255 || cap - *len < need) return -1;
    uint8_t *p = blob + *len;
    *p++ = (uint8_t)row->bank.len;
    memcpy(p, row->bank.p, row->bank.len);
    p += row->bank.len;
    *p++ = (uint8_t)row->account.len;
    memcpy(p, row->account.p, row->account.len);
    p += row->account.len;
    *p++ = row->score;
    *p++ = (uint8_t)row->case_id.len;
    memcpy(p, row->case_id.p, row->case_id.len);
    *len += need;
    return 0;
}

static int take(rec_str blob, size_t *off, rec_str *out) {
    if (*off >= blob.len) return -1;
    uint8_t n = (uint8_t)blob.p[(*off)++];
    if (blob.len - *off < n) return -1;
    *out = (rec_str){blob.p + *off, n};
    *off += n;
    return 0;
}

int record_row_next(rec_str blob, size_t *off, list_row *row) {
    if (*off == blob.len) return 0;
    if (take(blob, off, &row->bank) || take(blob, off, &row->account) || *off >= blob.len) return -1;
    row->score = (uint8_t)blob.p[(*off)++];
    if (take(blob, off, &row->case_id)) return -1;
    return 1;
}
