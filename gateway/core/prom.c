/*
 * prom: the Prometheus text writer (prom.h). The checks run at every scrape: they cost a
 * few hundred string compares per scrape, nothing per request, and they turn "promtool
 * rejects /metrics" from something found in production into an assert in the tests.
 */
#include "prom.h"

#include <assert.h>
#include <string.h>

static const char *const reserved_suffixes[] = {"_count", "_sum", "_bucket", "_created", "_info"};

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

/* FNV-1a of the first n bytes: the names are ours or a plugin's, never an attacker's. */
static uint64_t name_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

static uint64_t family_key(const char *name) {
    size_t n = strlen(name);
    if (ends_with(name, "_total")) n -= strlen("_total");
    return name_hash(name, n);
}

void prom_init(prom_writer *w, buf *b) {
    memset(w, 0, sizeof *w);
    w->b = b;
}

static bool name_chars_ok(const char *name) {
    if (!name[0] || (name[0] >= '0' && name[0] <= '9')) return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == ':';
        if (!ok) return false;
    }
    return true;
}

const char *prom_name_problem(const prom_writer *w, const char *name, prom_type type) {
    if (strlen(name) > PROM_NAME_MAX) return "name longer than PROM_NAME_MAX";
    if (!name_chars_ok(name)) return "name is not [a-zA-Z_:][a-zA-Z0-9_:]*";
    bool total = ends_with(name, "_total");
    if (type == PROM_COUNTER && !total) return "a counter's name must end in _total";
    if (type != PROM_COUNTER && total) return "only a counter's name may end in _total";
    for (size_t i = 0; i < sizeof reserved_suffixes / sizeof reserved_suffixes[0]; i++)
        if (ends_with(name, reserved_suffixes[i])) return "name ends in a suffix the format reserves";
    if (w->nfamilies == PROM_FAMILIES_MAX) return "more than PROM_FAMILIES_MAX families";
    uint64_t key = family_key(name);
    for (uint32_t i = 0; i < w->nfamilies; i++)
        if (w->seen[i] == key) return "family already written (or clashes once _total is taken off)";
    return NULL;
}

static const char *type_name(prom_type t) {
    switch (t) {
    case PROM_COUNTER: return "counter";
    case PROM_GAUGE: return "gauge";
    case PROM_HISTOGRAM: return "histogram";
    }
    return "untyped";
}

bool prom_family_try(prom_writer *w, const char *name, prom_type type, const char *help) {
    if (prom_name_problem(w, name, type) || !help || !help[0] || strpbrk(help, "\n\\")) return false;
    w->seen[w->nfamilies++] = family_key(name);
    memcpy(w->family, name, strlen(name) + 1);
    w->type = type;
    buf_printf(w->b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type_name(type));
    return true;
}

void prom_family(prom_writer *w, const char *name, prom_type type, const char *help) {
    bool ok = prom_family_try(w, name, type, help);
    assert(ok && "a /metrics family breaks prom.h's rules: see prom_name_problem()");
    (void)ok;
}

/* A label value as the format wants it: backslash, double quote and newline escaped. */
static void put_label_value(buf *b, const char *v) {
    for (const char *p = v; *p; p++) {
        if (*p == '\\' || *p == '"') {
            char e[2] = {'\\', *p};
            buf_append(b, e, 2);
        } else if (*p == '\n') {
            buf_append(b, "\\n", 2);
        } else {
            buf_append(b, p, 1);
        }
    }
}

void prom_sample(prom_writer *w, const char *label, const char *value, uint64_t v) {
    assert(w->family[0] && w->type != PROM_HISTOGRAM);
    assert(!label == !value);
    if (!label) {
        buf_printf(w->b, "%s %llu\n", w->family, (unsigned long long)v);
        return;
    }
    buf_printf(w->b, "%s{%s=\"", w->family, label);
    put_label_value(w->b, value);
    buf_printf(w->b, "\"} %llu\n", (unsigned long long)v);
}

void prom_bucket(prom_writer *w, const char *le, uint64_t cumulative) {
    assert(w->family[0] && w->type == PROM_HISTOGRAM);
    buf_printf(w->b, "%s_bucket{le=\"%s\"} %llu\n", w->family, le, (unsigned long long)cumulative);
}

void prom_histogram_end(prom_writer *w, const char *sum, uint64_t count) {
    assert(w->family[0] && w->type == PROM_HISTOGRAM);
    buf_printf(w->b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %s\n%s_count %llu\n", w->family,
               (unsigned long long)count, w->family, sum, w->family, (unsigned long long)count);
}
