#include "account.h"

#include <string.h>

static char upper(char c) { return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c; }
static bool alnum_upper(char c) { return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

int account_bank_normalise(const char *raw, size_t len, char out[BANK_LEN_MAX + 1], const char **why) {
    if (len == 0 || len > BANK_LEN_MAX) {
        *why = "bank code must be 1-11 characters [A-Z0-9]";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        char c = upper(raw[i]);
        if (!alnum_upper(c)) {
            *why = "bank code must be 1-11 characters [A-Z0-9]";
            return -1;
        }
        out[i] = c;
    }
    out[len] = 0;
    return 0;
}

int account_normalise(const char *raw, size_t len, char out[ACCOUNT_LEN_MAX + 1], const char **why) {
    if (len > ACCOUNT_RAW_LEN_MAX) {
        *why = "account too long";
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = raw[i];
        if (c == ' ' || c == '-') continue; /* formatting the agent may have pasted */
        c = upper(c);
        if (!alnum_upper(c)) {
            *why = "account may hold only A-Z, 0-9, spaces and '-'";
            return -1;
        }
        if (n == ACCOUNT_LEN_MAX) {
            *why = "account longer than 34 characters";
            return -1;
        }
        out[n++] = c;
    }
    if (n == 0) {
        *why = "account is empty";
        return -1;
    }
    out[n] = 0;
    return 0;
}

int field_int_parse(const char *s, size_t len, int64_t *out) {
    if (len == 0 || len > 20) return -1;
    size_t i = 0;
    bool neg = false;
    if (s[0] == '-' || s[0] == '+') {
        neg = s[0] == '-';
        i = 1;
        if (len == 1) return -1;
    }
    uint64_t v = 0;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1) return -1;
        *out = (int64_t)(0 - v);
    } else {
        if (v > (uint64_t)INT64_MAX) return -1;
        *out = (int64_t)v;
    }
    return 0;
}

int field_amount_parse(const char *s, size_t len, int64_t *out, const char **why) {
    int64_t v;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '.' || s[i] == ',') {
            *why = "amount must be an integer in minor units (no fractions)";
            return -1;
        }
    }
    /* Digits only (account.h): field_int_parse() also takes a sign, and an amount has none -
     * "+5" and "-0" are refused like "-5", not read as 5 and 0. */
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            *why = s[0] == '-' ? "amount must not be negative"
                               : "amount must be a non-negative integer in minor units (digits only)";
            return -1;
        }
    }
    if (field_int_parse(s, len, &v) != 0) {
        *why = "amount must be a non-negative integer in minor units";
        return -1;
    }
    if (v > AMOUNT_MINOR_MAX) {
        *why = "amount exceeds 10^17 minor units";
        return -1;
    }
    *out = v;
    return 0;
}

int field_currency_parse(const char *s, size_t len, char out[4], const char **why) {
    if (len != CURRENCY_LEN) {
        *why = "currency must be a 3-letter ISO 4217 code";
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        char c = upper(s[i]);
        if (c < 'A' || c > 'Z') {
            *why = "currency must be a 3-letter ISO 4217 code";
            return -1;
        }
        out[i] = c;
    }
    out[3] = 0;
    return 0;
}

int field_ttl_parse(const char *s, size_t len, int64_t *out, const char **why) {
    int64_t v;
    if (field_int_parse(s, len, &v) != 0 || v <= 0 || v > TTL_S_MAX) {
        *why = "TTL must be a positive number of seconds (at most ten years)";
        return -1;
    }
    *out = v;
    return 0;
}

bool field_ident_ok(const char *s, size_t len, size_t max) {
    if (len == 0 || len > max) return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f) return false;
    }
    return true;
}

bool field_text_ok(const char *s, size_t len, size_t max) {
    if (len > max) return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) return false;
    }
    return true;
}
