/* check_ahead: see check_ahead.h. */
#include "check_ahead.h"

#include "account.h"
#include "resp.h"

void check_ahead(const gateway *gw, const char *in, size_t len) {
    const void *lines[3 * CHECK_AHEAD_MAX];
    unsigned nl = 0;
    resp_arg a[3];
    size_t off = 0, used;
    for (unsigned n = 0; n < CHECK_AHEAD_MAX && resp_peek3(in + off, len - off, a, &used); n++) {
        off += used;
        /* The first command runs right after this: a prefetch would not be ahead of it. */
        if (n == 0 || !resp_arg_is(&a[0], "CHECK")) continue;
        char bank[BANK_LEN_MAX + 1], account[ACCOUNT_LEN_MAX + 1];
        const char *why;
        if (account_bank_normalise(a[1].p, a[1].len, bank, &why) != 0 ||
            account_normalise(a[2].p, a[2].len, account, &why) != 0)
            continue;
        nl += lists_lines(gw, bank, account, &lines[nl]);
        const void *o = orders_account_line(&gw->o, bank, account);
        if (o) lines[nl++] = o;
    }
    /* All addresses first, then the prefetches back to back: a prefetch that misses the TLB
     * holds up retirement until its page walk is done, and only walks issued close together
     * overlap (the same finding as libstopgate's batched lookup, docs/lists.md). */
    for (unsigned i = 0; i < nl; i++) __builtin_prefetch(lines[i]);
}
