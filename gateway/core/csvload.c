#include "csvload.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "account.h"

static void trim(const char **p, size_t *n) {
    while (*n && (**p == ' ' || **p == '\t')) (*p)++, (*n)--;
    while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t' || (*p)[*n - 1] == '\r')) (*n)--;
}

static int refuse(char *why, size_t whycap, uint32_t *bad_line, uint32_t line, const char *reason) {
    if (why && whycap) snprintf(why, whycap, "line %u: %s", line, reason);
    if (bad_line) *bad_line = line;
    return -1;
}

/* The column names of a header line, in order: bank,account[,score[,case]], any case. */
static bool is_header(const char *const *f, const size_t *fl, int nf) {
    static const char *const names[] = {"bank", "account", "score", "case"};
    if (nf < 2 || nf > 4) return false;
    for (int i = 0; i < nf; i++)
        if (fl[i] != strlen(names[i]) || strncasecmp(f[i], names[i], fl[i]) != 0) return false;
    return true;
}

int csv_parse(const char *data, size_t size, csv_row_fn fn, void *ctx, char *why, size_t whycap,
              uint32_t *bad_line) {
    uint32_t line = 0;
    size_t pos = 0;
    bool first = true; /* no row (nor header) seen yet */
    while (pos < size) {
        line++;
        const char *l = data + pos;
        const char *nl = memchr(l, '\n', size - pos);
        size_t n = nl ? (size_t)(nl - l) : size - pos;
        pos += n + (nl ? 1 : 0);
        if (n > CSV_LINE_MAX) {
            char reason[64];
            snprintf(reason, sizeof reason, "longer than %d bytes", CSV_LINE_MAX);
            return refuse(why, whycap, bad_line, line, reason);
        }
        trim(&l, &n);
        if (n == 0 || l[0] == '#') continue; /* blank lines and comments */
        const char *f[5];
        size_t fl[5];
        int nf = 0;
        const char *s = l, *end = l + n;
        while (nf < 5) {
            const char *comma = memchr(s, ',', (size_t)(end - s));
            f[nf] = s;
            fl[nf] = (size_t)((comma ? comma : end) - s);
            trim(&f[nf], &fl[nf]);
            nf++;
            if (!comma) break;
            s = comma + 1;
        }
        bool header = is_header(f, fl, nf), was_first = first;
        first = false;
        if (header && was_first) continue;
        /* Elsewhere it is no row either: "BANK"/"ACCOUNT" would pass as a bank and an account. */
        if (header) return refuse(why, whycap, bad_line, line, "a header line may only be the first line");
        const char *reason = NULL;
        csv_row row = {.line = line};
        int64_t score = 0;
        if (nf < 2 || nf > 4) reason = "expected bank,account[,score[,case]]";
        else if (account_bank_normalise(f[0], fl[0], row.bank, &reason) != 0) (void)0;
        else if (account_normalise(f[1], fl[1], row.account, &reason) != 0) (void)0;
        else if (nf >= 3 && fl[2] && (field_int_parse(f[2], fl[2], &score) != 0 || score < 0 || score > 100))
            reason = "score must be an integer 0-100";
        else if (nf == 4 && (fl[3] == 0 || !field_ident_ok(f[3], fl[3], CASE_LEN_MAX)))
            reason = "case must be 1-64 printable characters";
        if (reason) return refuse(why, whycap, bad_line, line, reason);
        row.score = (uint8_t)score;
        if (nf == 4) {
            row.case_id = f[3];
            row.case_len = (uint32_t)fl[3];
        }
        int rc = fn(ctx, &row);
        if (rc) return rc;
    }
    return 0;
}
