/*
 * account: the account key (bank, account) of SPEC §3 and the scalar fields of an order.
 * Normalisation is the one place where raw client text becomes a key: spaces and '-' are
 * removed from the account, letters upper-cased (bank codes are upper-cased too); anything
 * else outside [A-Z0-9] or outside the length limits is refused. Pure functions, no state.
 */
#ifndef SG_ACCOUNT_H
#define SG_ACCOUNT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "limits.h"

/* 0 and out = normalised NUL-terminated bank code, or -1 and *why set. */
int account_bank_normalise(const char *raw, size_t len, char out[BANK_LEN_MAX + 1], const char **why);
int account_normalise(const char *raw, size_t len, char out[ACCOUNT_LEN_MAX + 1], const char **why);

/* Non-negative integer minor units, digits only, <= AMOUNT_MINOR_MAX. */
int field_amount_parse(const char *s, size_t len, int64_t *out, const char **why);
/* Three upper-case letters (ISO 4217 shape). Lower case is upper-cased. */
int field_currency_parse(const char *s, size_t len, char out[4], const char **why);
/* Positive seconds <= TTL_S_MAX. */
int field_ttl_parse(const char *s, size_t len, int64_t *out, const char **why);
/* Identifier-like text: 1..max printable ASCII characters, no spaces or controls. */
bool field_ident_ok(const char *s, size_t len, size_t max);
/* Free text (NOTE): 0..max bytes, no control characters except none at all. */
bool field_text_ok(const char *s, size_t len, size_t max);
/* Strict signed decimal integer, whole string. */
int field_int_parse(const char *s, size_t len, int64_t *out);
#endif
