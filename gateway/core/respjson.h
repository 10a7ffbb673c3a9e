/*
 * respjson: one RESP2/RESP3 reply as JSON text, for the console's JSON API (SPEC §12): the
 * console asks the gateway's own RESP commands and shows their replies unchanged in shape.
 *
 * Mapping: map -> object (keys as strings), array/set/push -> array, bulk/simple/verbatim
 * string -> string, integer -> number, null -> null, boolean -> true/false, double and big
 * number -> string (no floating point where money is). An error reply is not JSON: the
 * caller looks at the first byte ('-') and uses respjson_error() to split it.
 *
 * Contract: never allocates except through buf, never reads past len; nesting deeper than
 * RESPJSON_DEPTH_MAX, a length past the input or garbage is "malformed" (-1). Strings are
 * escaped for JSON; bytes that are not valid UTF-8 become U+FFFD. Pure; fuzzed with the
 * HTTP parser (tests/fuzz/fuzz_http.c).
 */
#ifndef SG_RESPJSON_H
#define SG_RESPJSON_H
#include <stddef.h>

#include "buf.h"

#define RESPJSON_DEPTH_MAX 16

/* Convert the first complete reply in p[0..len) to JSON appended to out. Returns the bytes
 * it took (> 0), 0 when the reply is not complete yet (out unchanged), -1 when malformed,
 * -2 when out refused the text (its cap). */
long respjson_convert(const char *p, size_t len, buf *out);
/* Length of the first complete reply in p[0..len): > 0, 0 incomplete, -1 malformed. */
long respjson_length(const char *p, size_t len);
/* Append s[0..len) to out as a JSON string (quotes included). 0 or buf's error. */
int respjson_string(buf *out, const char *s, size_t len);
/* An error reply "-CODE reason\r\n" (or "-ERR CODE reason"): code (e.g. "ERR NOTFOUND",
 * "NOPERM", "WRONGPASS") and reason, pointing into p. */
void respjson_error(const char *p, size_t len, const char **code, size_t *code_len, const char **why,
                    size_t *why_len);
#endif
