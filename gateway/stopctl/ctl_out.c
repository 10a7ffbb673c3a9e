/*
 * ctl_out: stopctl's output shapes (ctl_out.h). The gateway answers RESP2 to stopctl, where a
 * map is a flat array; which arrays are maps is known per command, so the caller says (a
 * guess from even lengths would turn ["a", "b"] lists into objects).
 */
#include "ctl_out.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static json_t *scalar(const redisReply *r) {
    switch (r->type) {
    case REDIS_REPLY_INTEGER: return json_integer(r->integer);
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR: return json_stringn(r->str, r->len);
    default: return json_null();
    }
}

static bool in_list(const char *key, const char *const *keys) {
    for (; keys && *keys; keys++)
        if (!strcmp(key, *keys)) return true;
    return false;
}

static json_t *plain(const redisReply *r) {
    if (r->type != REDIS_REPLY_ARRAY) return scalar(r);
    json_t *a = json_array();
    for (size_t i = 0; i < r->elements; i++) json_array_append_new(a, plain(r->element[i]));
    return a;
}

static json_t *map_json(const redisReply *r, const char *const *pair_keys);

/* The value under key: an array of maps, a flat map, or as it is. */
static json_t *value_json(const char *key, const redisReply *v, const char *const *pair_keys) {
    if (v->type != REDIS_REPLY_ARRAY) return scalar(v);
    if (!strcmp(key, "orders") || !strcmp(key, "onward")) {
        json_t *a = json_array();
        for (size_t j = 0; j < v->elements; j++) json_array_append_new(a, map_json(v->element[j], pair_keys));
        return a;
    }
    if (in_list(key, pair_keys) && v->elements % 2 == 0) return map_json(v, NULL);
    return plain(v);
}

static json_t *map_json(const redisReply *r, const char *const *pair_keys) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2) return plain(r);
    json_t *o = json_object();
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i];
        char key[128];
        snprintf(key, sizeof key, "%.*s", k->str ? (int)k->len : 0, k->str ? k->str : "");
        json_object_set_new(o, key, value_json(key, r->element[i + 1], pair_keys));
    }
    return o;
}

json_t *ctl_reply_json(const redisReply *r, const char *const *pair_keys) { return map_json(r, pair_keys); }

/* A whole (optionally negative) decimal integer that fits json_int_t. */
static bool as_integer(const char *s, json_int_t *out) {
    const char *p = s + (*s == '-');
    if (!*p || strlen(p) > 18) return false;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q)) return false;
    if (p[0] == '0' && p[1]) return false; /* "007" is a name, not a number */
    *out = strtoll(s, NULL, 10);
    return true;
}

json_t *ctl_info_json(const char *text, size_t len) {
    json_t *o = json_object();
    json_t *sec = NULL;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        size_t n = (size_t)(le - p);
        if (n && p[n - 1] == '\r') n--;
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)n, p);
        p = nl ? nl + 1 : end;
        if (line[0] == '#') {
            char *name = line + 1;
            while (*name == ' ') name++;
            for (char *q = name; *q; q++) *q = (char)tolower((unsigned char)*q);
            sec = json_object();
            json_object_set_new(o, name, sec);
            continue;
        }
        char *colon = strchr(line, ':');
        if (!colon) continue;
        *colon = 0;
        if (!sec) {
            sec = json_object();
            json_object_set_new(o, "default", sec);
        }
        json_int_t v;
        json_object_set_new(sec, line, as_integer(colon + 1, &v) ? json_integer(v) : json_string(colon + 1));
    }
    return o;
}

json_t *ctl_error_json(const char *err, size_t len) {
    /* The stable code is the first word, or two for "ERR XXX". */
    const char *end = err + len;
    const char *sp = memchr(err, ' ', len);
    const char *code_end = sp ? sp : end;
    if (sp && !strncmp(err, "ERR ", 4)) {
        const char *sp2 = memchr(sp + 1, ' ', (size_t)(end - sp - 1));
        code_end = sp2 ? sp2 : end;
    }
    json_t *e = json_object();
    json_object_set_new(e, "error", json_stringn(err, (size_t)(code_end - err)));
    json_object_set_new(e, "reason", json_stringn(code_end < end ? code_end + 1 : end,
                                                  code_end < end ? (size_t)(end - code_end - 1) : 0));
    return e;
}

void ctl_iso8601(char *out, size_t cap, int64_t ms) {
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (ms < 0 || !gmtime_r(&s, &tm)) {
        snprintf(out, cap, "%lld", (long long)ms);
        return;
    }
    char day[24];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%03dZ", day, (int)(ms % 1000));
}

void ctl_print_json(const json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    printf("%s\n", s ? s : "null");
    free(s);
}

static bool is_time_key(const char *k) {
    size_t n = strlen(k);
    return n > 3 && !strcmp(k + n - 3, "_at");
}

void ctl_print_human(const json_t *j, int indent) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)j, k, v) {
        if (json_is_array(v) && json_array_size(v) && json_is_object(json_array_get(v, 0))) {
            printf("%*s%s:\n", indent, "", k);
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) {
                ctl_print_human(e, indent + 4);
                if (i + 1 < json_array_size(v)) printf("%*s--\n", indent + 4, "");
            }
            continue;
        }
        if (json_is_object(v)) {
            printf("%*s%s:\n", indent, "", k);
            ctl_print_human(v, indent + 4);
            continue;
        }
        char iso[CTL_ISO8601_LEN];
        char *s = NULL;
        if (is_time_key(k) && json_is_integer(v) && json_integer_value(v) > 0) {
            ctl_iso8601(iso, sizeof iso, (int64_t)json_integer_value(v));
            s = strdup(iso);
        } else {
            s = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        }
        printf("%*s%-13s %s\n", indent, "", k, s ? s : "");
        free(s);
    }
}
