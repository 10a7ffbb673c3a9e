/*
 * csvload: the line and field parser of LIST.LOAD's CSV (SPEC §4.1: bank,account[,score[,case]]).
 * Pure: it validates each line and hands the normalised row to a callback; what a row does
 * (staging it in the list table) is the caller's business (gateway/daemon/lists.c).
 *
 * A line is at most CSV_LINE_MAX bytes (its '\n' not counted). Spaces, tabs and a trailing
 * '\r' around the line and around each field are trimmed; blank lines and lines starting
 * with '#' are skipped, and so is a header `bank,account[,score[,case]]` (any case) when it is
 * the first line that is neither; anywhere else a header is refused. Lines are numbered
 * from 1, skipped ones included, and a refusal reads "line N: reason". An input without a
 * single row is not refused here (the caller decides what an empty load means).
 */
#ifndef SG_CSVLOAD_H
#define SG_CSVLOAD_H
#include <stddef.h>
#include <stdint.h>

#include "limits.h"

/* CSV_LINE_MAX: limits.h */

typedef struct csv_row {
    uint32_t line;                      /* 1-based line number in the input */
    char bank[BANK_LEN_MAX + 1];        /* normalised (account_bank_normalise), NUL-terminated */
    char account[ACCOUNT_LEN_MAX + 1];  /* normalised (account_normalise), NUL-terminated */
    uint8_t score;                      /* 0..100, 0 when absent or empty */
    const char *case_id;                /* into the input; NULL when the line has no case field */
    uint32_t case_len;                  /* 1..CASE_LEN_MAX when case_id is set */
} csv_row;

/* Called once per valid row, in input order. 0 goes on; any other value stops the parse and
 * is what csv_parse returns (the callback reports its own reason). */
typedef int (*csv_row_fn)(void *ctx, const csv_row *row);

/* Parse data[0..size) (need not be NUL-terminated, may hold any bytes). Returns 0 when every
 * line was valid, -1 for a malformed line (why = "line N: reason", *bad_line = N), or the
 * callback's non-zero value. why and bad_line may be NULL. */
int csv_parse(const char *data, size_t size, csv_row_fn fn, void *ctx, char *why, size_t whycap,
              uint32_t *bad_line);
#endif
