#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "account.h"
#include "lists_layout.h"

static unsigned role_perms_own(role r) {
    switch (r) {
    case ROLE_AGENT: return PERM_ORDER | PERM_STATUS | PERM_CHECK | PERM_INFO;
    case ROLE_SUPERVISOR: return PERM_ORDER | PERM_STATUS | PERM_CHECK | PERM_CONFIRM | PERM_INFO;
    case ROLE_OPS: return PERM_STATUS | PERM_CHECK | PERM_LIST | PERM_INFO;
    case ROLE_SCREEN: return PERM_CHECK;
    case ROLE_BANK: return 0;
    case ROLE_DEV: return PERM_ORDER | PERM_STATUS | PERM_CHECK | PERM_CONFIRM | PERM_LIST | PERM_INFO;
    }
    return 0;
}

unsigned role_perms(role r) {
    if (r == ROLE_BANK) return 0;
    return PERM_SESSION | role_perms_own(r);
}

const char *role_name(role r) {
    static const char *n[] = {"?", "agent", "supervisor", "ops", "screen", "bank", "dev"};
    return (unsigned)r < sizeof n / sizeof n[0] ? n[r] : "?";
}

void config_defaults(config *c) {
    memset(c, 0, sizeof *c);
    config_parse_addr("127.0.0.1:7379", &c->listen);
    config_parse_addr("127.0.0.1:7380", &c->udp);
    config_parse_addr("127.0.0.1:9379", &c->metrics);
    config_parse_addr("127.0.0.1:9380", &c->console);
    c->console_session_ttl_s = CONSOLE_SESSION_TTL_S_DEFAULT;
    snprintf(c->journal_dir, sizeof c->journal_dir, "./var/journal");
    snprintf(c->shm_name, sizeof c->shm_name, "stopgate-lists");
    c->shm_gid = -1;
    c->list_capacity = 1u << 20;
    snprintf(c->currency, sizeof c->currency, "CNY");
    c->stop_ttl_s = 172800;
    c->freeze_ttl_s = 15552000;
    c->stop_ttl_max_s = 2592000;    /* 30 days */
    c->freeze_ttl_max_s = 31536000; /* 365 days */
    c->bank_deadline_ms = 5000;
    c->max_clients = 10000;
    c->recv_buffers = RECV_BUFS_DEFAULT;
    c->spin_us = SPIN_US_DEFAULT;
    c->segment_bytes = 64ULL * 1024 * 1024;
    c->max_orders = 1024u * 1024;
    c->prefault = true;
    c->idle_timeout_s = 0;
    c->auth_timeout_s = 5;
    c->max_clients_per_address = 1000;
    c->auth_fail_limit = 20;
    c->auth_fail_window_s = 60;
    c->cascade_max_depth = 5;
    c->cascade_min_amount = 0;
    c->dpdk_port = 7380;
    snprintf(c->cluster_prefix, sizeof c->cluster_prefix, "/stopgate");
    c->cluster_candidate = true;
    c->cluster_lease_ms = CLUSTER_LEASE_MS_DEFAULT;
    c->cluster_commit_timeout_ms = CLUSTER_COMMIT_TIMEOUT_MS_DEFAULT;
    c->cluster_log_retention_ms = CLUSTER_LOG_RETENTION_MS_DEFAULT;
}

int config_parse_addr(const char *s, cfg_addr *out) {
    if (strcasecmp(s, "off") == 0 || strcasecmp(s, "no") == 0) {
        out->enabled = false;
        return 0;
    }
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof out->host) return -1;
    int64_t port;
    if (field_int_parse(colon + 1, strlen(colon + 1), &port) != 0 || port < 0 || port > 65535) return -1;
    memcpy(out->host, s, (size_t)(colon - s));
    out->host[colon - s] = 0;
    out->port = (uint16_t)port;
    out->enabled = true;
    return 0;
}

/* Longest config line, newline included. Paths (journal_dir, log_file, plugin_dir) may be up
 * to 4095 bytes, so libinih's default 200-byte line buffer is far too small. */
#define CONFIG_LINE_MAX 8192
/* libinih keeps a section name in a 50-byte buffer and silently truncates a longer one. */
#define INI_SECTION_MAX 49
#define STR_(x) #x
#define STR(x) STR_(x)

/* One (section, key) the file has set, to refuse a second setting of it. */
typedef struct seen_key {
    uint64_t hash;
    int line;
    char *name; /* "section\nkey" */
} seen_key;

typedef struct parse_ctx {
    config *c;
    FILE *f;
    int line;                      /* physical line being parsed (1-based) */
    char *buf;                     /* that line, whole, as read by getline() */
    size_t buf_cap, len, pos;      /* pos: how much of it has been handed to inih */
    bool stop;                     /* a line inih must not see: end the parse there */
    bool prev_name;                /* inih's prev_name: an indented line continues a value */
    bool continued;                /* the line being parsed continues the previous value */
    seen_key *seen;                /* every key set so far, in file order */
    size_t nseen, seen_cap;
    char sec[INI_SECTION_MAX + 1]; /* the section the reader is in */
    int sec_line;                  /* its [header]'s line, 0 = none (no header, or refused) */
    bool sec_keys;                 /* the handler has seen a key of it */
    int err_line;                  /* line of the first error, 0 = none */
    char err[512];
} parse_ctx;

/* Keeps the reason of the first bad line only: libinih goes on after a handler error and
 * reports the line of the first one, so a later reason would be shown with the wrong line.
 * "First" is by line: an empty section is judged when it ends, after later lines were read. */
static int fail(parse_ctx *p, const char *fmt, const char *a, const char *b) {
    if (p->err_line == 0 || p->line < p->err_line) {
        snprintf(p->err, sizeof p->err, fmt, a, b);
        p->err_line = p->line;
    }
    return 0;
}

static bool parse_bool(const char *v, bool *out) {
    if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "on")) *out = true;
    else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "off")) *out = false;
    else return false;
    return true;
}

static bool parse_i64(const char *v, int64_t lo, int64_t hi, int64_t *out) {
    int64_t x;
    if (field_int_parse(v, strlen(v), &x) != 0 || x < lo || x > hi) return false;
    *out = x;
    return true;
}

static bool copy_val(char *dst, size_t cap, const char *v) {
    size_t n = strlen(v);
    if (n >= cap) return false;
    memcpy(dst, v, n + 1);
    return true;
}

/* A group name or number; resolved now so a typo is refused with its line, not at start. */
static int shm_group_parse(const char *v, config *c) {
    int64_t gid;
    if (!*v || strlen(v) >= sizeof c->shm_group) return -1;
    if (field_int_parse(v, strlen(v), &gid) != 0) {
        struct group gr, *res = NULL;
        char buf[4096];
        if (getgrnam_r(v, &gr, buf, sizeof buf, &res) != 0 || !res) return -1;
        gid = res->gr_gid;
    } else if (gid < 0 || gid > UINT32_MAX - 1) {
        return -1;
    }
    copy_val(c->shm_group, sizeof c->shm_group, v);
    c->shm_gid = gid;
    return 0;
}

#define RANGE(lo, hi)                                                                                  \
    do {                                                                                               \
        if (!parse_i64(v, lo, hi, &x)) return fail(p, "bad value for %s: '%s' (integer " #lo ".." #hi ")", k, v); \
    } while (0)

/* [gateway] tls_*: the files are only named here; the TLS module loads them (at start and
 * with --check-config) and reports a bad one with the line kept here. */
static int gateway_tls_key(parse_ctx *p, const char *k, const char *v) {
    config *c = p->c;
    char *path = NULL;
    size_t cap = sizeof c->tls_cert;
    if (!strcmp(k, "tls_listen")) {
        if (config_parse_addr(v, &c->tls_listen) != 0)
            return fail(p, "bad address for %s: '%s' (want HOST:PORT or off)", k, v);
        c->tls_listen_line = p->line;
        return 1;
    }
    if (!strcmp(k, "tls_cert")) path = c->tls_cert, c->tls_cert_line = p->line;
    else if (!strcmp(k, "tls_key")) path = c->tls_key, c->tls_key_line = p->line;
    else if (!strcmp(k, "tls_ca")) path = c->tls_ca, c->tls_ca_line = p->line;
    else return fail(p, "unknown key '%s' in [%s]", k, "gateway");
    if (!copy_val(path, cap, v)) return fail(p, "%s: path too long (at most 4095 bytes)%s", k, "");
    /* Said here, with this line, rather than later as an OpenSSL error without one. */
    if (*v && access(v, R_OK) != 0) return fail(p, "%s: cannot read '%s'", k, v);
    return 1;
}

static int gateway_key(parse_ctx *p, const char *k, const char *v) {
    config *c = p->c;
    int64_t x;
    if (!strcmp(k, "listen") || !strcmp(k, "udp") || !strcmp(k, "metrics") || !strcmp(k, "console")) {
        cfg_addr *a = !strcmp(k, "listen") ? &c->listen : !strcmp(k, "udp") ? &c->udp
                    : !strcmp(k, "console") ? &c->console : &c->metrics;
        if (config_parse_addr(v, a) != 0) return fail(p, "bad address for %s: '%s' (want HOST:PORT or off)", k, v);
        if (a == &c->listen && !a->enabled) return fail(p, "%s cannot be off%s", k, "");
    } else if (!strncmp(k, "tls_", 4)) {
        return gateway_tls_key(p, k, v);
    } else if (!strcmp(k, "journal_dir")) {
        if (!*v || !copy_val(c->journal_dir, sizeof c->journal_dir, v)) return fail(p, "bad value for %s: '%s'", k, v);
    } else if (!strcmp(k, "list_capacity")) {
        RANGE(SGL_CAPACITY_MIN, SGL_CAPACITY_MAX);
        if ((x & (x - 1)) != 0) return fail(p, "%s must be a power of two, not %s", k, v);
        c->list_capacity = (uint64_t)x;
    } else if (!strcmp(k, "shm_name")) {
        if (!field_ident_ok(v, strlen(v), sizeof c->shm_name - 1) || strchr(v, '/'))
            return fail(p, "bad value for %s: '%s' (a name without '/')", k, v);
        copy_val(c->shm_name, sizeof c->shm_name, v);
    } else if (!strcmp(k, "shm_group")) {
        if (shm_group_parse(v, c) != 0) return fail(p, "bad value for %s: '%s' (no such group)", k, v);
    } else if (!strcmp(k, "currency")) {
        const char *why;
        if (field_currency_parse(v, strlen(v), c->currency, &why) != 0) return fail(p, "bad value for %s: '%s' (3-letter ISO 4217 code)", k, v);
    } else if (!strcmp(k, "stop_ttl")) {
        RANGE(1, TTL_S_MAX);
        c->stop_ttl_s = x;
    } else if (!strcmp(k, "freeze_ttl")) {
        RANGE(1, TTL_S_MAX);
        c->freeze_ttl_s = x;
    } else if (!strcmp(k, "stop_ttl_max")) {
        RANGE(1, TTL_S_MAX);
        c->stop_ttl_max_s = x;
    } else if (!strcmp(k, "freeze_ttl_max")) {
        RANGE(1, TTL_S_MAX);
        c->freeze_ttl_max_s = x;
    } else if (!strcmp(k, "bank_deadline_ms")) {
        RANGE(1, 86400000);
        c->bank_deadline_ms = x;
    } else if (!strcmp(k, "allow_anonymous_check")) {
        if (!parse_bool(v, &c->allow_anonymous_check)) return fail(p, "bad value for %s: '%s' (yes or no)", k, v);
    } else if (!strcmp(k, "max_clients")) {
        RANGE(1, CLIENTS_MAX_LIMIT);
        c->max_clients = (uint32_t)x;
    } else if (!strcmp(k, "recv_buffers")) {
        RANGE(0, RECV_BUFS_MAX);
        if ((x & (x - 1)) != 0) return fail(p, "%s must be 0 or a power of two, not %s", k, v);
        c->recv_buffers = (uint32_t)x;
    } else if (!strcmp(k, "spin_us")) {
        RANGE(0, SPIN_US_MAX);
        c->spin_us = (uint32_t)x;
    } else if (!strcmp(k, "segment_bytes")) {
        RANGE(JOURNAL_SEGMENT_BYTES_MIN, JOURNAL_SEGMENT_BYTES_MAX);
        c->segment_bytes = (uint64_t)x;
    } else if (!strcmp(k, "max_orders")) {
        RANGE(1024, ORDERS_MAX_LIMIT);
        c->max_orders = (uint32_t)x;
    } else if (!strcmp(k, "max_outbox")) {
        RANGE(0, OUTBOX_MAX_LIMIT);
        c->max_outbox = (uint32_t)x;
    } else if (!strcmp(k, "prefault")) {
        if (!parse_bool(v, &c->prefault)) return fail(p, "bad value for %s: '%s' (yes or no)", k, v);
    } else if (!strcmp(k, "idle_timeout")) {
        RANGE(0, 86400 * 365);
        c->idle_timeout_s = (uint32_t)x;
    } else if (!strcmp(k, "console_session_ttl")) {
        RANGE(1, 604800);
        _Static_assert(CONSOLE_SESSION_TTL_S_MAX == 604800, "the range above names the limit");
        c->console_session_ttl_s = (uint32_t)x;
    } else if (!strcmp(k, "auth_timeout")) {
        RANGE(0, 3600);
        c->auth_timeout_s = (uint32_t)x;
    } else if (!strcmp(k, "max_clients_per_address")) {
        RANGE(0, CLIENTS_MAX_LIMIT);
        c->max_clients_per_address = (uint32_t)x;
    } else if (!strcmp(k, "auth_fail_limit")) {
        RANGE(0, AUTH_FAIL_LIMIT_MAX);
        c->auth_fail_limit = (uint32_t)x;
    } else if (!strcmp(k, "auth_fail_window")) {
        RANGE(1, 86400);
        c->auth_fail_window_s = (uint32_t)x;
    } else if (!strcmp(k, "log_file")) {
        if (!copy_val(c->log_file, sizeof c->log_file, v)) return fail(p, "bad value for %s: '%s'", k, v);
    } else if (!strcmp(k, "plugin_dir")) {
        if (!copy_val(c->plugin_dir, sizeof c->plugin_dir, v)) return fail(p, "bad value for %s: '%s'", k, v);
    } else {
        return fail(p, "unknown key '%s' in [%s]", k, "gateway");
    }
    return 1;
}

/* The entry of [agent name], created (and its name checked) on first sight. NULL on error. */
static cfg_agent *agent_get(parse_ctx *p, const char *name) {
    config *c = p->c;
    for (uint32_t i = 0; i < c->nagents; i++)
        if (!strcmp(c->agents[i].name, name)) return &c->agents[i];
    if (!field_ident_ok(name, strlen(name), AGENT_LEN_MAX)) {
        fail(p, "bad agent name '%s'%s", name, "");
        return NULL;
    }
    if (c->nagents == AGENTS_MAX) {
        fail(p, "too many agents (max %s)%s", "1024", "");
        return NULL;
    }
    cfg_agent *a = &c->agents[c->nagents++];
    memset(a, 0, sizeof *a);
    copy_val(a->name, sizeof a->name, name);
    a->role = ROLE_AGENT;
    a->line = p->line;
    return a;
}

/* The entry of [list name]: the section alone declares the list. NULL on error. */
static cfg_list *list_get(parse_ctx *p, const char *name) {
    config *c = p->c;
    for (uint32_t i = 0; i < c->nlists; i++)
        if (!strcmp(c->lists[i].name, name)) return &c->lists[i];
    if (c->nlists == sizeof c->lists / sizeof c->lists[0]) {
        fail(p, "too many lists (max %s)%s", "64", "");
        return NULL;
    }
    if (!field_ident_ok(name, strlen(name), sizeof c->lists[0].name - 1)) {
        fail(p, "bad list name '%s'%s", name, "");
        return NULL;
    }
    cfg_list *l = &c->lists[c->nlists++];
    memset(l, 0, sizeof *l);
    copy_val(l->name, sizeof l->name, name);
    l->line = p->line;
    return l;
}

/* The entry of [plugin name], of the type its name says until a type key. NULL on error. */
static cfg_plugin *plugin_get(parse_ctx *p, const char *name) {
    config *c = p->c;
    for (uint32_t i = 0; i < c->nplugins; i++)
        if (!strcmp(c->plugins[i].name, name)) return &c->plugins[i];
    if (c->nplugins == PLUGINS_MAX) {
        fail(p, "too many plugin sections%s%s", "", "");
        return NULL;
    }
    if (!field_ident_ok(name, strlen(name), sizeof c->plugins[0].name - 1)) {
        fail(p, "bad plugin name '%s'%s", name, "");
        return NULL;
    }
    cfg_plugin *pl = &c->plugins[c->nplugins++];
    memset(pl, 0, sizeof *pl);
    copy_val(pl->name, sizeof pl->name, name);
    copy_val(pl->type, sizeof pl->type, name);
    pl->line = p->line;
    return pl;
}

/* Fill *r (not yet counted) from the pattern of [route pat]. false on error. */
static bool route_pattern(parse_ctx *p, const char *pat, cfg_route *r) {
    memset(r, 0, sizeof *r);
    r->line = p->line;
    if (!strcmp(pat, "default")) {
        r->is_default = true;
        return true;
    }
    size_t n = strlen(pat);
    const char *why;
    if (n > 1 && pat[n - 1] == '*') {
        r->prefix = true;
        n--;
    }
    if (account_bank_normalise(pat, n, r->pattern, &why) != 0)
        return fail(p, "bad route '%s': %s", pat, why);
    return true;
}

/* A section that ended without a single key: libinih never calls the handler for it, so
 * this is its only check. The same entries are made and names checked as for a section with
 * keys; a section that means nothing without keys is refused rather than ignored. */
static void empty_section(parse_ctx *p, const char *section) {
    if (!strcmp(section, "gateway") || !strcmp(section, "cascade") || !strcmp(section, "dpdk") ||
        !strcmp(section, "cluster"))
        return;
    if (!strncmp(section, "agent ", 6)) {
        /* Kept, so config_finish() refuses it for its missing secret_hash: dropping it could
         * leave a config with no agents, i.e. with the all-powerful development agent. */
        agent_get(p, section + 6);
    } else if (!strncmp(section, "list ", 5)) {
        list_get(p, section + 5);
    } else if (!strncmp(section, "plugin ", 7)) {
        plugin_get(p, section + 7);
    } else if (!strncmp(section, "route ", 6)) {
        /* Ignoring it would send that bank's instructions to the default route instead. */
        cfg_route r;
        if (route_pattern(p, section + 6, &r)) fail(p, "[%s] has no plugin%s", section, "");
    } else {
        fail(p, "unknown section [%s]%s", section, "");
    }
}

static uint64_t fnv1a(const char *s, uint64_t h) {
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
    return h;
}

/* A key set twice in one section (the same [section] may appear more than once) would leave
 * the reader guessing which value runs: refused, naming both lines. A linear scan: a config
 * holds a few thousand keys at most (AGENTS_MAX agents of two keys), read once per load. */
static bool duplicate_key(parse_ctx *p, const char *section, const char *k) {
    if (p->continued) return false; /* a continuation line hands inih's handler the key again */
    uint64_t h = fnv1a(k, fnv1a("\n", fnv1a(section, 0xcbf29ce484222325ULL)));
    size_t slen = strlen(section);
    for (size_t i = 0; i < p->nseen; i++) {
        const char *n = p->seen[i].name;
        if (p->seen[i].hash != h || strncmp(n, section, slen) || n[slen] != '\n' || strcmp(n + slen + 1, k)) continue;
        char first[16];
        snprintf(first, sizeof first, "%d", p->seen[i].line);
        fail(p, "duplicate key '%s' (first set at line %s)", k, first);
        return true;
    }
    if (p->nseen == p->seen_cap) {
        size_t cap = p->seen_cap ? p->seen_cap * 2 : 64;
        seen_key *v = realloc(p->seen, cap * sizeof *v);
        if (!v) {
            fail(p, "out of memory%s%s", "", "");
            return true;
        }
        p->seen = v;
        p->seen_cap = cap;
    }
    size_t n = slen + 1 + strlen(k) + 1;
    char *name = malloc(n);
    if (!name) {
        fail(p, "out of memory%s%s", "", "");
        return true;
    }
    snprintf(name, n, "%s\n%s", section, k);
    p->seen[p->nseen++] = (seen_key){.hash = h, .line = p->line, .name = name};
    return false;
}

/* [cluster] etcd: comma-separated http(s) URLs, at most ETCD_ENDPOINTS_MAX, each short enough
 * for the etcd client (which parses them again, without a line to name). */
static bool cluster_endpoints_ok(const char *v) {
    int n = 0;
    for (const char *s = v; *s;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0 || len > ETCD_ENDPOINT_LEN_MAX || ++n > ETCD_ENDPOINTS_MAX) return false;
        if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) return false;
        for (size_t i = 0; i < len; i++)
            if (isspace((unsigned char)s[i])) return false;
        s += len + (e ? 1 : 0);
        if (e && !*s) return false;
    }
    return n > 0;
}

static bool cluster_ms(parse_ctx *p, const char *k, const char *v, int64_t lo, int64_t hi, uint32_t *out) {
    int64_t x;
    if (!parse_i64(v, lo, hi, &x)) {
        char range[64];
        snprintf(range, sizeof range, "%s' (integer %lld..%lld)", v, (long long)lo, (long long)hi);
        fail(p, "bad value for %s: '%s", k, range);
        return false;
    }
    *out = (uint32_t)x;
    return true;
}

static int cluster_key(parse_ctx *p, const char *k, const char *v) {
    config *c = p->c;
    if (!strcmp(k, "etcd")) {
        if (*v && !cluster_endpoints_ok(v))
            return fail(p, "bad value for %s: '%s' (comma-separated http://HOST:PORT URLs, at most " STR(
                               ETCD_ENDPOINTS_MAX) ")", k, v);
        copy_val(c->cluster_etcd, sizeof c->cluster_etcd, v);
        c->cluster_line = p->line;
    } else if (!strcmp(k, "name")) {
        if (!field_ident_ok(v, strlen(v), CLUSTER_NAME_LEN_MAX) || strchr(v, '/'))
            return fail(p, "bad value for %s: '%s' (printable, no spaces nor '/'; at most " STR(
                               CLUSTER_NAME_LEN_MAX) " bytes)", k, v);
        copy_val(c->cluster_name, sizeof c->cluster_name, v);
    } else if (!strcmp(k, "prefix")) {
        if (v[0] != '/' || strlen(v) > CLUSTER_PREFIX_LEN_MAX || strpbrk(v, " \t") || v[strlen(v) - 1] == '/')
            return fail(p, "bad value for %s: '%s' (starts with '/', does not end with one, no spaces, at most " STR(
                               CLUSTER_PREFIX_LEN_MAX) " bytes)", k, v);
        copy_val(c->cluster_prefix, sizeof c->cluster_prefix, v);
    } else if (!strcmp(k, "advertise")) {
        if (config_parse_addr(v, &c->cluster_advertise) != 0 || !c->cluster_advertise.enabled)
            return fail(p, "bad address for %s: '%s' (want HOST:PORT)", k, v);
    } else if (!strcmp(k, "candidate")) {
        if (!parse_bool(v, &c->cluster_candidate)) return fail(p, "bad value for %s: '%s' (yes or no)", k, v);
    } else if (!strcmp(k, "lease_ms")) {
        return cluster_ms(p, k, v, CLUSTER_LEASE_MS_MIN, CLUSTER_LEASE_MS_MAX, &c->cluster_lease_ms);
    } else if (!strcmp(k, "commit_timeout_ms")) {
        return cluster_ms(p, k, v, CLUSTER_COMMIT_TIMEOUT_MS_MIN, CLUSTER_COMMIT_TIMEOUT_MS_MAX,
                          &c->cluster_commit_timeout_ms);
    } else if (!strcmp(k, "log_retention_ms")) {
        return cluster_ms(p, k, v, CLUSTER_LOG_RETENTION_MS_MIN, CLUSTER_LOG_RETENTION_MS_MAX,
                          &c->cluster_log_retention_ms);
    } else {
        return fail(p, "unknown key '%s' in [%s]", k, "cluster");
    }
    return 1;
}

static int cascade_key(parse_ctx *p, const char *k, const char *v) {
    config *c = p->c;
    int64_t x;
    if (!strcmp(k, "max_depth")) {
        RANGE(0, 64);
        c->cascade_max_depth = (uint32_t)x;
    } else if (!strcmp(k, "min_amount")) {
        RANGE(0, AMOUNT_MINOR_MAX);
        c->cascade_min_amount = x;
    } else {
        return fail(p, "unknown key '%s' in [%s]", k, "cascade");
    }
    return 1;
}

static int dpdk_key(parse_ctx *p, const char *k, const char *v) {
    config *c = p->c;
    int64_t x;
    if (!strcmp(k, "enabled")) {
        if (!parse_bool(v, &c->dpdk_enabled)) return fail(p, "bad value for %s: '%s' (yes or no)", k, v);
    } else if (!strcmp(k, "eal")) {
        if (!copy_val(c->dpdk_eal, sizeof c->dpdk_eal, v)) return fail(p, "value of %s too long%s", k, "");
    } else if (!strcmp(k, "ip")) {
        if (!copy_val(c->dpdk_ip, sizeof c->dpdk_ip, v)) return fail(p, "bad value for %s: '%s'", k, v);
    } else if (!strcmp(k, "port")) {
        RANGE(1, 65535);
        c->dpdk_port = (uint16_t)x;
    } else {
        return fail(p, "unknown key '%s' in [%s]", k, "dpdk");
    }
    return 1;
}

/* [agent NAME] */
static int agent_key(parse_ctx *p, const char *section, const char *k, const char *v) {
    const char *name = section + 6;
    cfg_agent *a = agent_get(p, name);
    if (!a) return 0;
    if (!strcmp(k, "role")) {
        static const struct { const char *n; role r; } roles[] = {
            {"agent", ROLE_AGENT}, {"supervisor", ROLE_SUPERVISOR}, {"ops", ROLE_OPS},
            {"screen", ROLE_SCREEN}, {"bank", ROLE_BANK}};
        for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
            if (!strcmp(v, roles[i].n)) {
                a->role = roles[i].r;
                return 1;
            }
        return fail(p, "bad role '%s' (agent, supervisor, ops, screen or bank)%s", v, "");
    }
    if (!strcmp(k, "secret_hash")) {
        if (strncmp(v, "sg1$", 4) != 0 || !copy_val(a->secret_hash, sizeof a->secret_hash, v))
            return fail(p, "bad secret_hash for agent %s: use the output of `stopctl hash-secret`%s", name, "");
        return 1;
    }
    return fail(p, "unknown key '%s' in [%s]", k, section);
}

/* [list NAME] */
static int list_key(parse_ctx *p, const char *section, const char *k, const char *v) {
    cfg_list *l = list_get(p, section + 5);
    if (!l) return 0;
    if (!strcmp(k, "auto_stop")) {
        if (!parse_bool(v, &l->auto_stop)) return fail(p, "bad value for %s: '%s' (yes or no)", k, v);
        return 1;
    }
    return fail(p, "unknown key '%s' in [%s]", k, section);
}

/* [route PATTERN] */
static int route_key(parse_ctx *p, const char *section, const char *k, const char *v) {
    config *c = p->c;
    if (strcmp(k, "plugin") != 0) return fail(p, "unknown key '%s' in [%s]", k, section);
    if (c->nroutes == ROUTES_MAX) return fail(p, "too many routes%s%s", "", "");
    cfg_route *r = &c->routes[c->nroutes];
    if (!route_pattern(p, section + 6, r)) return 0;
    if (!field_ident_ok(v, strlen(v), sizeof r->plugin - 1)) return fail(p, "bad plugin name '%s'%s", v, "");
    copy_val(r->plugin, sizeof r->plugin, v);
    c->nroutes++;
    return 1;
}

/* [plugin NAME]: `type` is ours, every other key goes to the plugin as it stands. */
static int plugin_key(parse_ctx *p, const char *section, const char *k, const char *v) {
    cfg_plugin *pl = plugin_get(p, section + 7);
    if (!pl) return 0;
    if (!strcmp(k, "type")) {
        if (!field_ident_ok(v, strlen(v), sizeof pl->type - 1) || strchr(v, '/'))
            return fail(p, "bad plugin type '%s'%s", v, "");
        copy_val(pl->type, sizeof pl->type, v);
        return 1;
    }
    if (pl->nkv == PLUGIN_KV_MAX) return fail(p, "too many keys in [%s]%s", section, "");
    sg_plugin_kv *kv = &pl->kv[pl->nkv++];
    kv->key = strdup(k);
    kv->value = strdup(v);
    kv->line = p->line;
    if (!kv->key || !kv->value) return fail(p, "out of memory%s%s", "", "");
    return 1;
}

/* inih's callback: one key; the section's own function judges it. */
static int handler(void *user, const char *section, const char *k, const char *v) {
    parse_ctx *p = user;
    p->sec_keys = true;
    if (duplicate_key(p, section, k)) return 0;
    if (!strcmp(section, "gateway")) return gateway_key(p, k, v);
    if (!strcmp(section, "cluster")) return cluster_key(p, k, v);
    if (!strcmp(section, "cascade")) return cascade_key(p, k, v);
    if (!strcmp(section, "dpdk")) return dpdk_key(p, k, v);
    if (!strncmp(section, "agent ", 6)) return agent_key(p, section, k, v);
    if (!strncmp(section, "list ", 5)) return list_key(p, section, k, v);
    if (!strncmp(section, "route ", 6)) return route_key(p, section, k, v);
    if (!strncmp(section, "plugin ", 7)) return plugin_key(p, section, k, v);
    return fail(p, "unknown section [%s]%s", section, "");
}

/* Judge the section the reader was in if it had no key; called when it ends. */
static void section_end(parse_ctx *p) {
    if (p->sec_line && !p->sec_keys) {
        int line = p->line;
        p->line = p->sec_line; /* errors and entries name the [header]'s line */
        empty_section(p, p->sec);
        p->line = line;
    }
    p->sec_line = 0;
}

/* libinih's whitespace and inline comments (default settings): a ';' after whitespace. */
static size_t ini_find(const char *s, size_t i, size_t end, const char *chars) {
    bool was_space = false;
    for (; i < end; i++) {
        if (chars && strchr(chars, s[i])) break;
        if (was_space && s[i] == ';') break;
        was_space = isspace((unsigned char)s[i]);
    }
    return i;
}

/* Follow the section structure the way libinih (default settings) reads the line in p->buf:
 * inih calls the handler only for keys, so a section without keys is seen only here. */
static void track_line(parse_ctx *p) {
    const char *s = p->buf;
    size_t b = 0, e = p->len;
    if (p->line == 1 && e >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) b = 3; /* UTF-8 BOM */
    while (e > b && isspace((unsigned char)s[e - 1])) e--;
    while (b < e && isspace((unsigned char)s[b])) b++;
    p->continued = false;
    if (b == e || s[b] == ';' || s[b] == '#') return; /* blank or comment */
    if (p->prev_name && b > 0) {                       /* indented: continues a value */
        p->continued = true;
        return;
    }
    if (s[b] == '[') {
        size_t k = ini_find(s, b + 1, e, "]");
        if (k == e || s[k] != ']') return; /* no ']': inih reports the syntax error */
        section_end(p);
        p->prev_name = false;
        size_t n = k - (b + 1);
        if (n > INI_SECTION_MAX) {
            fail(p, "section name too long (at most %s bytes)%s", STR(INI_SECTION_MAX), "");
            return;
        }
        memcpy(p->sec, s + b + 1, n);
        p->sec[n] = 0;
        p->sec_line = p->line;
        p->sec_keys = false;
        return;
    }
    size_t k = ini_find(s, b, e, "=:");
    if (k < e) p->prev_name = k > b; /* else: no '=', inih reports the syntax error */
}

/* The reader libinih pulls lines from. inih hands the handler no line numbers (Debian builds
 * it without INI_HANDLER_LINENO), so the reader counts them: the handler runs right after the
 * line it is about was read. Each physical line is read whole, checked, and then handed out
 * in pieces of the size inih asks for. */
static char *counting_reader(char *str, int num, void *stream) {
    parse_ctx *p = stream;
    if (num < 1) return NULL;
    if (p->pos == p->len) {
        if (p->stop) return NULL;
        ssize_t n = getline(&p->buf, &p->buf_cap, p->f);
        if (n <= 0) return NULL;
        p->line++;
        p->len = (size_t)n;
        p->pos = 0;
        /* inih would split a longer line into two, or cut it at a NUL, and then count lines
         * differently from us: refuse it here and end the parse. */
        bool bad = true;
        if (p->len > CONFIG_LINE_MAX)
            fail(p, "line too long (at most %s bytes)%s", STR(CONFIG_LINE_MAX), "");
        else if (memchr(p->buf, 0, p->len))
            fail(p, "NUL byte in line%s%s", "", "");
        else
            bad = false;
        if (bad) {
            p->stop = true;
            p->len = p->pos = 0;
            return NULL;
        }
        track_line(p);
    }
    size_t take = p->len - p->pos;
    if (take > (size_t)num - 1) take = (size_t)num - 1;
    memcpy(str, p->buf + p->pos, take);
    str[take] = 0;
    p->pos += take;
    return str;
}

int config_load(config *c, const char *path, char *err, size_t errcap) {
    parse_ctx p = {.c = c};
    p.f = fopen(path, "r");
    if (!p.f) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return -1;
    }
    snprintf(c->path, sizeof c->path, "%s", path);
    /* Debian's libinih takes its line buffer settings at run time: a heap buffer that grows
     * up to CONFIG_LINE_MAX, so the reader never has to hand a line out in two reads. */
    bool use_stack = ini_use_stack, allow_realloc = ini_allow_realloc;
    int max_line = ini_max_line;
    ini_use_stack = false;
    ini_allow_realloc = true;
    ini_max_line = CONFIG_LINE_MAX + 1; /* room for the '\0' */
    int rc = ini_parse_stream(counting_reader, &p, handler, &p);
    ini_use_stack = use_stack;
    ini_allow_realloc = allow_realloc;
    ini_max_line = max_line;
    section_end(&p); /* the last section */
    int read_errno = ferror(p.f) ? errno : 0;
    fclose(p.f);
    free(p.buf);
    for (size_t i = 0; i < p.nseen; i++) free(p.seen[i].name);
    free(p.seen);
    if (rc < 0) {
        snprintf(err, errcap, "%s: out of memory while parsing", path);
        return -1;
    }
    if (read_errno) {
        snprintf(err, errcap, "%s: %s", path, strerror(read_errno));
        return -1;
    }
    /* rc is inih's first bad line: a handler error there left our reason for it. Errors
     * only the reader sees (an empty section, a long line) inih does not count, so the
     * earlier of the two wins. A bad line of ours after rc means rc was a syntax error. */
    if (p.err_line && (rc == 0 || p.err_line <= rc)) {
        snprintf(err, errcap, "%s:%d: %s", path, p.err_line, p.err);
        return -1;
    }
    if (rc > 0) {
        snprintf(err, errcap, "%s:%d: syntax error", path, rc);
        return -1;
    }
    return 0;
}

static cfg_plugin *plugin_named(config *c, const char *name) {
    for (uint32_t i = 0; i < c->nplugins; i++)
        if (!strcmp(c->plugins[i].name, name)) return &c->plugins[i];
    return NULL;
}

/* A member of a cluster must say who it is and where clients reach it while it leads. */
static int cluster_finish(const config *c, char *err, size_t errcap) {
    if (!c->cluster_etcd[0]) return 0;
    const char *missing = !c->cluster_name[0] ? "name" : !c->cluster_advertise.enabled ? "advertise" : NULL;
    if (missing) {
        snprintf(err, errcap, "%s:%d: [cluster] etcd is set, so [cluster] %s must be too", c->path, c->cluster_line,
                 missing);
        return -1;
    }
    return 0;
}

int config_finish(config *c, char *err, size_t errcap) {
    if (cluster_finish(c, err, errcap) != 0) return -1;
    /* A default lifetime past the maximum would refuse every order that gives no TTL. */
    if (c->stop_ttl_s > c->stop_ttl_max_s || c->freeze_ttl_s > c->freeze_ttl_max_s) {
        snprintf(err, errcap, "%s: [gateway] %s = %lld is past %s = %lld",
                 c->path[0] ? c->path : "defaults",
                 c->stop_ttl_s > c->stop_ttl_max_s ? "stop_ttl" : "freeze_ttl",
                 (long long)(c->stop_ttl_s > c->stop_ttl_max_s ? c->stop_ttl_s : c->freeze_ttl_s),
                 c->stop_ttl_s > c->stop_ttl_max_s ? "stop_ttl_max" : "freeze_ttl_max",
                 (long long)(c->stop_ttl_s > c->stop_ttl_max_s ? c->stop_ttl_max_s
                                                               : c->freeze_ttl_max_s));
        return -1;
    }
    bool has_default = false;
    for (uint32_t i = 0; i < c->nroutes; i++) has_default |= c->routes[i].is_default;
    if (c->nroutes == 0 && !has_default) {
        /* No routes at all: every bank goes to the simulated bank (SPEC §2 defaults). */
        cfg_route *r = &c->routes[c->nroutes++];
        memset(r, 0, sizeof *r);
        r->is_default = true;
        snprintf(r->plugin, sizeof r->plugin, "sim");
    }
    for (uint32_t i = 0; i < c->nroutes; i++) {
        if (plugin_named(c, c->routes[i].plugin)) continue;
        if (c->nplugins == PLUGINS_MAX) {
            snprintf(err, errcap, "%s:%d: too many plugin instances", c->path, c->routes[i].line);
            return -1;
        }
        cfg_plugin *pl = &c->plugins[c->nplugins++];
        memset(pl, 0, sizeof *pl);
        memcpy(pl->name, c->routes[i].plugin, sizeof pl->name);
        memcpy(pl->type, c->routes[i].plugin, sizeof pl->type);
        pl->line = c->routes[i].line;
    }
    if (c->tls_listen.enabled && (!c->tls_cert[0] || !c->tls_key[0])) {
        snprintf(err, errcap, "%s:%d: tls_listen needs tls_cert and tls_key (PEM files)", c->path, c->tls_listen_line);
        return -1;
    }
    if (c->tls_listen.enabled && c->listen.enabled && !strcmp(c->tls_listen.host, c->listen.host) &&
        c->tls_listen.port == c->listen.port) {
        snprintf(err, errcap, "%s:%d: tls_listen is the same address as listen", c->path, c->tls_listen_line);
        return -1;
    }
    for (uint32_t i = 0; i < c->nagents; i++) {
        if (!c->agents[i].secret_hash[0]) {
            snprintf(err, errcap, "%s:%d: agent %s has no secret_hash", c->path, c->agents[i].line, c->agents[i].name);
            return -1;
        }
    }
    return 0;
}

void config_free(config *c) {
    for (uint32_t i = 0; i < c->nplugins; i++) {
        for (uint32_t k = 0; k < c->plugins[i].nkv; k++) {
            free((void *)c->plugins[i].kv[k].key);
            free((void *)c->plugins[i].kv[k].value);
        }
        c->plugins[i].nkv = 0;
    }
}

const cfg_agent *config_agent(const config *c, const char *name, size_t len) {
    for (uint32_t i = 0; i < c->nagents; i++)
        if (strlen(c->agents[i].name) == len && !memcmp(c->agents[i].name, name, len)) return &c->agents[i];
    return NULL;
}
