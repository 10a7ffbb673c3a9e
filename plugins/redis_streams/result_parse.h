/*
 * result_parse: a bank's result entry (SPEC §6: instruction_id, status, frozen, reason,
 * onward) -> sg_result. Pure and independent of hiredis, so the plugin and the fuzzer
 * (tests/fuzz/fuzz_result.c) run the same code: the plugin turns a stream entry's
 * field/value array into rs_field pairs and calls rs_parse_result.
 */
#ifndef SG_RS_RESULT_PARSE_H
#define SG_RS_RESULT_PARSE_H
#include <stdbool.h>
#include <stddef.h>

#include <stopgate/plugin.h>

#define RS_REASON_MAX 64 /* bytes of a bank's reason kept; longer ones are cut */

/* One field of a stream entry. Strings need not be NUL-terminated and may hold any bytes. */
typedef struct rs_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} rs_field;

/* Parse the entry fields[0..n) (the first field of a given name counts). true with *r filled
 * (r->reason points at reason, r->onward at onward); false with why = what is wrong (the
 * entry is malformed: the plugin acknowledges and counts it). reason has room for
 * RS_REASON_MAX + 1 bytes, onward for SG_ONWARD_MAX entries. */
bool rs_parse_result(const rs_field *fields, size_t n, sg_result *r, sg_onward *onward, char *reason, char *why,
                     size_t whycap);
#endif
