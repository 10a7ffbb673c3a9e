/* check_ahead: see check_ahead.h. */
#include "check_ahead.h"

#include <assert.h>

#include "account.h"
#include "resp.h"

/* Lines one command may add: the list table's tag line and slot, the account's and the
 * request id's index slots. */
#define LINES_PER_CMD 4

/* STOP and FREEZE: <request_id> then option pairs, BANK and ACCOUNT among them. */
static unsigned order_lines(const gateway *gw, const resp_arg *a, uint32_t argc,
                            const void **lines) {
    unsigned nl = 0;
    const void *r = orders_request_line(&gw->o, a[1].p, a[1].len);
    if (r) lines[nl++] = r;
    const resp_arg *bank = NULL, *account = NULL;
    for (uint32_t i = 2; i + 1 < argc; i += 2) {
        if (resp_arg_is(&a[i], "BANK"))
            bank = &a[i + 1];
        else if (resp_arg_is(&a[i], "ACCOUNT"))
            account = &a[i + 1];
    }
    char b[BANK_LEN_MAX + 1], acct[ACCOUNT_LEN_MAX + 1];
    const char *why;
    if (!bank || !account || account_bank_normalise(bank->p, bank->len, b, &why) != 0 ||
        account_normalise(account->p, account->len, acct, &why) != 0)
        return nl;
    nl += lists_lines(gw, b, acct, &lines[nl]);
    const void *o = orders_account_line(&gw->o, b, acct);
    if (o) lines[nl++] = o;
    return nl;
}

static unsigned check_lines(const gateway *gw, const resp_arg *a, const void **lines) {
    char bank[BANK_LEN_MAX + 1], account[ACCOUNT_LEN_MAX + 1];
    const char *why;
    if (account_bank_normalise(a[1].p, a[1].len, bank, &why) != 0 ||
        account_normalise(a[2].p, a[2].len, account, &why) != 0)
        return 0;
    unsigned nl = lists_lines(gw, bank, account, lines);
    const void *o = orders_account_line(&gw->o, bank, account);
    if (o) lines[nl++] = o;
    return nl;
}

/* Reads the command at in[ah->off]: its lines into lines (at most LINES_PER_CMD), how many
 * returned. Stops the look ahead at a command it cannot read whole. */
static unsigned peek_one(const gateway *gw, check_ahead_pos *ah, const char *in, size_t len,
                         const void **lines, bool skip) {
    /* STOP's longest form: 8 option pairs after the request id. */
    resp_arg a[19];
    uint32_t argc;
    size_t used;
    if (ah->stopped || ah->off >= len ||
        !resp_peek(in + ah->off, len - ah->off, a, (uint32_t)(sizeof a / sizeof a[0]), &argc,
                   &used)) {
        ah->stopped = true;
        return 0;
    }
    ah->off += used;
    if (skip) return 0;
    if (argc == 3 && resp_arg_is(&a[0], "CHECK")) return check_lines(gw, a, lines);
    if (argc >= 8 && (resp_arg_is(&a[0], "STOP") || resp_arg_is(&a[0], "FREEZE")))
        return order_lines(gw, a, argc, lines);
    return 0;
}

void check_ahead(const gateway *gw, check_ahead_pos *ah, const char *in, size_t len) {
    const void *lines[LINES_PER_CMD * CHECK_AHEAD_MAX];
    unsigned nl = 0;
    *ah = (check_ahead_pos){0};
    /* The first command runs right after this: a prefetch would not be ahead of it. */
    (void)peek_one(gw, ah, in, len, lines, true);
    for (unsigned n = 0; n < CHECK_AHEAD_MAX && !ah->stopped; n++)
        nl += peek_one(gw, ah, in, len, &lines[nl], false);
    /* All addresses first, then the prefetches back to back: a prefetch that misses the TLB
     * holds up retirement until its page walk is done, and only walks issued close together
     * overlap (the same finding as libstopgate's batched lookup, docs/lists.md). */
    for (unsigned i = 0; i < nl; i++) __builtin_prefetch(lines[i]);
}

void check_ahead_step(const gateway *gw, check_ahead_pos *ah, const char *in, size_t len,
                      size_t parsed) {
    assert(parsed <= len);
    if (parsed >= ah->off) {
        /* Parsing caught up (a command the look ahead could not read has gone by, or the
         * window ran dry): look ahead afresh from the next command. */
        check_ahead(gw, ah, in + parsed, len - parsed);
        ah->off += parsed;
        return;
    }
    const void *lines[LINES_PER_CMD];
    unsigned nl = peek_one(gw, ah, in, len, lines, false);
    for (unsigned i = 0; i < nl; i++) __builtin_prefetch(lines[i]);
}
