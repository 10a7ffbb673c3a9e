/*
 * prom: a writer of the Prometheus text exposition format (version 0.0.4) that checks what
 * it writes, so that /metrics stays valid for `promtool check metrics` as families are
 * added. Owns no memory beyond the writer struct; appends to a caller's buf; not
 * thread-safe; never blocks.
 *
 * Every family is opened once with prom_family() (name, type and HELP, all required) and
 * its samples follow at once, so a family is never split or interleaved with another.
 * The rules it enforces (an assert for the gateway's own families, a refusal for names a
 * plugin supplies):
 *   - a name is [a-zA-Z_:][a-zA-Z0-9_:]* and at most PROM_NAME_MAX bytes;
 *   - a counter's name ends in "_total", nothing else's does, and no name ends in a
 *     suffix the format reserves (_count, _sum, _bucket, _created, _info);
 *   - no two families share a name once "_total" is taken off (OpenMetrics reads counter
 *     "x_total" as family "x", which would clash with a gauge "x");
 *   - HELP is one line.
 * Adding a family: one prom_family() call, then prom_sample()/prom_bucket() for its series.
 */
#ifndef SG_PROM_H
#define SG_PROM_H
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "limits.h"

typedef enum prom_type { PROM_COUNTER, PROM_GAUGE, PROM_HISTOGRAM } prom_type;

typedef struct prom_writer {
    buf *b;
    char family[PROM_NAME_MAX + 1]; /* the open family; "" before the first */
    prom_type type;
    uint32_t nfamilies;
    uint64_t seen[PROM_FAMILIES_MAX]; /* hashes of the names without "_total" */
} prom_writer;

void prom_init(prom_writer *w, buf *b);
/* Why a name would be refused (NULL: it is fine) - the checks listed above. */
const char *prom_name_problem(const prom_writer *w, const char *name, prom_type type);
/* Open a family of the gateway's own: a refusal is a programmer error (asserted). */
void prom_family(prom_writer *w, const char *name, prom_type type, const char *help);
/* Open a family whose name comes from outside (a plugin's stats): false (and nothing
 * written) when it breaks a rule; the caller then leaves its samples out. */
bool prom_family_try(prom_writer *w, const char *name, prom_type type, const char *help);
/* One sample of the open counter or gauge; label may be NULL (unlabelled), else its value
 * is escaped as the format asks. */
void prom_sample(prom_writer *w, const char *label, const char *value, uint64_t v);
/* The open histogram: buckets in increasing le with cumulative counts, then the +Inf
 * bucket, _sum and _count in one call (sum as text: its unit decides the digits). */
void prom_bucket(prom_writer *w, const char *le, uint64_t cumulative);
void prom_histogram_end(prom_writer *w, const char *sum, uint64_t count);

#endif
