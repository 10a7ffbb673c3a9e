/*
 * sb_keys: what each stopbench request asks (SPEC §8, issue 6 "keys").
 *
 * CHECK: with probability hit_ratio an entry of the pre-loaded list (SBL + 10 digits, the
 * same names --preload loads), else an account that no list holds (SBM + 12 random digits;
 * the prefixes never meet). STOP: a fresh account and request id per order, both carrying
 * the run's tag, the worker and a counter, so ids are unique in the run and across runs, and
 * no STOP merges into another's live order. The accounts end in X: the simulated bank
 * CONFIRMs them (SPEC §2b). Against Redis the same keys become SISMEMBER <list> BANK:ACCOUNT
 * and SET <request id> <value of the STOP's size>, so both sides see the same key stream.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sb.h"

/* Exactly `width` decimal digits of v (zero-padded, high digits dropped). */
static void put_digits(char *p, uint64_t v, int width) {
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* v in decimal, no padding; returns the length. */
static size_t put_u64(char *p, uint64_t v) {
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
    return n;
}

void sb_make_tag(char out[16]) {
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t v = ((uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 40);
    v *= 0x9E3779B97F4A7C15ULL; /* spread: two runs a nanosecond apart differ in every char */
    for (int i = 0; i < 8; i++) {
        out[i] = digits[v % 36];
        v /= 36;
    }
    out[8] = 0;
}

void sb_listed_account(uint64_t i, char out[24]) {
    memcpy(out, "SBL", 3);
    put_digits(out + 3, i, 10);
    out[13] = 0;
}

void sb_next_req(sb_worker *w, sb_req *r) {
    const sb_opts *o = w->o;
    int kind;
    switch (o->op) {
    case OP_CHECK: kind = K_CHECK; break;
    case OP_STOP: kind = K_STOP; break;
    case OP_PING: kind = K_PING; break;
    default: kind = sb_rand01(&w->rng) < o->stop_ratio ? K_STOP : K_CHECK; break;
    }
    r->kind = kind;
    r->listed = false;
    r->rid_len = 0;
    r->acct_len = 0;
    if (kind == K_CHECK) {
        if (o->list_size && sb_rand01(&w->rng) < o->hit_ratio) {
            sb_listed_account(sb_rand(&w->rng) % o->list_size, r->acct);
            r->acct_len = 13;
            r->listed = true;
        } else {
            memcpy(r->acct, "SBM", 3);
            put_digits(r->acct + 3, sb_rand(&w->rng) % 1000000000000ULL, 12);
            r->acct_len = 15;
            r->acct[15] = 0;
        }
    } else if (kind == K_STOP) {
        uint64_t n = w->stop_no++;
        /* account: SB <tag 8> <worker 2> <n 10> X = 23 characters of [A-Z0-9] */
        char *a = r->acct;
        memcpy(a, "SB", 2);
        memcpy(a + 2, o->tag, 8);
        put_digits(a + 10, (uint64_t)w->id, 2);
        put_digits(a + 12, n, 10);
        a[22] = 'X';
        a[23] = 0;
        r->acct_len = 23;
        /* request id: sb-<tag>-<worker>-<n> */
        char *p = r->rid;
        memcpy(p, "sb-", 3);
        memcpy(p + 3, o->tag, 8);
        p[11] = '-';
        size_t l = 12 + put_u64(p + 12, (uint64_t)w->id);
        p[l++] = '-';
        l += put_u64(p + l, n);
        p[l] = 0;
        r->rid_len = (uint8_t)l;
    }
}

static char *bulk(char *p, const char *s, size_t n) {
    *p++ = '$';
    p += put_u64(p, n);
    *p++ = '\r';
    *p++ = '\n';
    memcpy(p, s, n);
    p += n;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

#define LIT(p, s) (memcpy(p, s, sizeof s - 1), (p) + sizeof s - 1)

size_t sb_encode_resp(const sb_opts *o, const sb_req *r, char *p0) {
    char *p = p0;
    size_t bl = strlen(o->bank);
    if (r->kind == K_PING) {
        p = LIT(p, "*1\r\n$4\r\nPING\r\n");
    } else if (o->target == TG_REDIS && r->kind == K_CHECK) {
        char member[SB_BANK_MAX + 1 + 40];
        memcpy(member, o->bank, bl);
        member[bl] = ':';
        memcpy(member + bl + 1, r->acct, r->acct_len);
        p = LIT(p, "*3\r\n$9\r\nSISMEMBER\r\n");
        p = bulk(p, o->list, strlen(o->list));
        p = bulk(p, member, bl + 1 + r->acct_len);
    } else if (o->target == TG_REDIS) {
        /* SET <rid> BANK:ACCOUNT:CASE:AMOUNT - a value of about the STOP's size */
        char val[SB_BANK_MAX + 40 + 40 + 16];
        size_t cl = strlen(o->case_id), n = 0;
        memcpy(val, o->bank, bl);
        n = bl;
        val[n++] = ':';
        memcpy(val + n, r->acct, r->acct_len);
        n += r->acct_len;
        val[n++] = ':';
        memcpy(val + n, o->case_id, cl);
        n += cl;
        memcpy(val + n, ":0000000000", 11);
        n += 11;
        p = LIT(p, "*3\r\n$3\r\nSET\r\n");
        p = bulk(p, r->rid, r->rid_len);
        p = bulk(p, val, n);
    } else if (r->kind == K_CHECK) {
        p = LIT(p, "*3\r\n$5\r\nCHECK\r\n");
        p = bulk(p, o->bank, bl);
        p = bulk(p, r->acct, r->acct_len);
    } else {
        p = LIT(p, "*8\r\n$4\r\nSTOP\r\n");
        p = bulk(p, r->rid, r->rid_len);
        p = LIT(p, "$4\r\nBANK\r\n");
        p = bulk(p, o->bank, bl);
        p = LIT(p, "$7\r\nACCOUNT\r\n");
        p = bulk(p, r->acct, r->acct_len);
        p = LIT(p, "$4\r\nCASE\r\n");
        p = bulk(p, o->case_id, strlen(o->case_id));
    }
    return (size_t)(p - p0);
}
