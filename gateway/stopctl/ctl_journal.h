/*
 * ctl_journal: `stopctl journal verify|dump DIR`, offline on a journal directory (no gateway).
 * Reads only; never repairs. Both return 0 when every segment is clean, 1 otherwise (the
 * first problem on stderr as "BAD <segment> ..."; with verify --json also in the object).
 */
#ifndef SG_CTL_JOURNAL_H
#define SG_CTL_JOURNAL_H
#include <stdbool.h>

/* Human: one "journal DIR: OK, ..." line. json: one object {"journal", "ok", "segments",
 * "records", "closed", "problem"} on stdout, whatever the verdict. */
int ctl_journal_verify(const char *dir, bool json);
/* One JSON object per line: each batch ({"batch": first_lsn, ...}) and each record. */
int ctl_journal_dump(const char *dir);
#endif
