/*
 * ctl_out: what stopctl prints. A gateway reply (RESP2, parsed by hiredis) becomes a JSON
 * value of a fixed shape - an object for a map reply, never a bare string or a flat
 * [k, v, k, v] array - printed compactly on one line with --json, or for people as
 * "key  value" lines with times (keys ending in _at, unix ms on the wire) in ISO 8601 UTC.
 * Pure: no I/O but the printing functions' stdout.
 */
#ifndef SG_CTL_OUT_H
#define SG_CTL_OUT_H
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* A map reply as an object. Arrays under "orders" and "onward" are arrays of objects; arrays
 * under a key in pair_keys (NULL-terminated, may be NULL) are flat maps made objects (RESP2
 * flattens a nested map). A non-map reply: its plain JSON value. */
json_t *ctl_reply_json(const redisReply *r, const char *const *pair_keys);
/* INFO text ("# Section" lines, then key:value lines) as {"section": {"key": value}}, keys
 * and section names as sent (section names lower-cased), values that are whole integers as
 * numbers, the rest as strings. */
json_t *ctl_info_json(const char *text, size_t len);
/* An error reply as {"error": stable code ("ERR BUSY", "NOPERM"), "reason": the rest}. */
json_t *ctl_error_json(const char *err, size_t len);
/* unix ms -> "2026-12-03T12:21:07.545Z" (out of at least CTL_ISO8601_LEN bytes). */
#define CTL_ISO8601_LEN 32
void ctl_iso8601(char *out, size_t cap, int64_t ms);
/* j on one line (JSON_COMPACT), then a newline. */
void ctl_print_json(const json_t *j);
/* An object for people: "key  value" lines, nested arrays of objects indented and
 * separated by "--", times in ISO 8601. */
void ctl_print_human(const json_t *j, int indent);
#endif
