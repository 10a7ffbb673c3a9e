/*
 * sim_rules: the simulated bank's outcome rules (SPEC §2b), shared by the in-process `sim`
 * plugin and the reference bank consumer (ops/bank-consumer), so every magic account
 * behaves the same whether the bank is in-process or behind Redis Streams.
 */
#ifndef SG_SIM_RULES_H
#define SG_SIM_RULES_H
#include <stdio.h>
#include <string.h>

#include <stopgate/plugin.h>

typedef struct sim_answer {
    sg_result_status status;
    int64_t frozen;
    const char *reason; /* "" when none */
    uint32_t onward_count;
    sg_onward onward[2];
} sim_answer;

/* Account with its last four characters replaced by a prefix letter and digits. */
static inline void sim_onward_to(sg_onward *o, const char *bank, const char *account, char c, int n,
                                 int64_t amount) {
    size_t len = strlen(account);
    snprintf(o->bank, sizeof o->bank, "%s", bank);
    snprintf(o->account, sizeof o->account, "%.*s%c00%d", (int)(len - 4), account, c, n);
    o->amount_minor = amount;
}

/* The answer for (bank, account, amount asked) with every account holding `balance`.
 * Returns 0 when the bank never answers (accounts ending in 0004). */
static inline int sim_decide(const char *bank, const char *account, int64_t amount, int64_t balance, sim_answer *a) {
    size_t len = strlen(account);
    const char *tail = len >= 4 ? account + len - 4 : "";
    /* "The amount in question": the amount asked, or the whole balance, capped at it. */
    int64_t q = (amount == 0 || amount > balance) ? balance : amount;
    memset(a, 0, sizeof *a);
    a->reason = "";
    if (!strcmp(tail, "0001")) {
        a->status = SG_RESULT_PARTIAL;
        a->frozen = q / 2;
    } else if (!strcmp(tail, "0002")) {
        a->status = SG_RESULT_NOT_FOUND;
    } else if (!strcmp(tail, "0003")) {
        a->status = SG_RESULT_REJECTED;
        a->reason = "ACCOUNT_CLOSED";
    } else if (!strcmp(tail, "0004")) {
        return 0;
    } else if ((tail[0] == 'M' || tail[0] == 'S') && tail[1] == '0' && tail[2] == '0' && tail[3] >= '1' &&
               tail[3] <= '9') {
        int n = tail[3] - '0';
        a->status = SG_RESULT_FUNDS_MOVED;
        if (tail[0] == 'M') {
            sim_onward_to(&a->onward[0], bank, account, 'M', n - 1, q);
            a->onward_count = 1;
        } else {
            sim_onward_to(&a->onward[0], bank, account, 'S', n - 1, q * 9 / 10);
            sim_onward_to(&a->onward[1], bank, account, 'T', 0, q / 10);
            a->onward_count = 2;
        }
    } else {
        a->status = SG_RESULT_CONFIRMED;
        a->frozen = q;
    }
    return 1;
}
#endif
