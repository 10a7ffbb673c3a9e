#include "result_parse.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char *field(const rs_field *f, size_t n, const char *name, size_t *len) {
    size_t nl = strlen(name);
    for (size_t i = 0; i < n; i++) {
        if (f[i].name_len == nl && !memcmp(f[i].name, name, nl)) {
            *len = f[i].value_len;
            return f[i].value;
        }
    }
    return NULL;
}

/* Digits only, lo <= value <= hi. Up to 19 digits, which can exceed INT64_MAX: checked. */
static bool parse_i64(const char *p, size_t len, int64_t lo, int64_t hi, int64_t *out) {
    if (!p || len == 0 || len > 19) return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9') return false;
        int d = p[i] - '0';
        if (v > (INT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

static const struct {
    const char *name;
    sg_result_status st;
} statuses[] = {{"CONFIRMED", SG_RESULT_CONFIRMED}, {"PARTIAL", SG_RESULT_PARTIAL}, {"NOT_FOUND", SG_RESULT_NOT_FOUND},
                {"REJECTED", SG_RESULT_REJECTED},   {"FUNDS_MOVED", SG_RESULT_FUNDS_MOVED}};

#define AMOUNT_MAX 100000000000000000LL

static bool bad(char *why, size_t whycap, const char *reason) {
    if (why && whycap) snprintf(why, whycap, "%s", reason);
    return false;
}

bool rs_parse_result(const rs_field *fields, size_t nf, sg_result *r, sg_onward *onward, char *reason, char *why,
                     size_t whycap) {
    size_t n;
    const char *v;
    int64_t x;
    memset(r, 0, sizeof *r);
    reason[0] = 0;
    r->reason = reason;
    r->onward = onward;
    if (!(v = field(fields, nf, "instruction_id", &n)) || !parse_i64(v, n, 1, INT64_MAX, &x))
        return bad(why, whycap, "missing or bad instruction_id");
    r->instruction_id = (uint64_t)x;
    if (!(v = field(fields, nf, "status", &n))) return bad(why, whycap, "missing status");
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
        if (strlen(statuses[i].name) == n && !memcmp(v, statuses[i].name, n)) r->status = statuses[i].st;
    if (!r->status) {
        if (why && whycap) snprintf(why, whycap, "unknown status '%.*s'", (int)(n > 20 ? 20 : n), v);
        return false;
    }
    if ((v = field(fields, nf, "frozen", &n)) && !parse_i64(v, n, 0, AMOUNT_MAX, &r->frozen_minor))
        return bad(why, whycap, "bad frozen amount");
    if ((v = field(fields, nf, "reason", &n))) {
        /* Up to the first NUL, as a C string would be read. */
        size_t k = n < RS_REASON_MAX ? n : RS_REASON_MAX;
        const char *z = memchr(v, 0, k);
        if (z) k = (size_t)(z - v);
        memcpy(reason, v, k);
        reason[k] = 0;
    }
    if ((v = field(fields, nf, "onward", &n)) && n > 0) {
        /* BANK:ACCOUNT:AMOUNT,... */
        const char *p = v, *end = v + n;
        while (p < end) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *e = comma ? comma : end;
            const char *c1 = memchr(p, ':', (size_t)(e - p));
            const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(e - c1 - 1)) : NULL;
            if (!c1 || !c2 || r->onward_count == SG_ONWARD_MAX)
                return bad(why, whycap, "bad onward triple (BANK:ACCOUNT:AMOUNT)");
            sg_onward *o = &onward[r->onward_count];
            memset(o, 0, sizeof *o);
            size_t bl = (size_t)(c1 - p), al = (size_t)(c2 - c1 - 1);
            if (bl == 0 || bl >= sizeof o->bank || al == 0 || al >= sizeof o->account ||
                !parse_i64(c2 + 1, (size_t)(e - c2 - 1), 0, AMOUNT_MAX, &o->amount_minor))
                return bad(why, whycap, "bad onward triple (BANK:ACCOUNT:AMOUNT)");
            memcpy(o->bank, p, bl);
            memcpy(o->account, c1 + 1, al);
            r->onward_count++;
            p = comma ? comma + 1 : end;
        }
    }
    if (r->status == SG_RESULT_FUNDS_MOVED && r->onward_count == 0)
        return bad(why, whycap, "FUNDS_MOVED without onward");
    return true;
}
