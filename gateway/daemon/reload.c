/*
 * reload: the checks a configuration passes before it runs (at start, --check-config, SIGHUP)
 * and the SIGHUP reload itself.
 *
 * A reload reads the file with the same parser and the same checks as a start, plugin
 * sections included, and is refused whole (the reason "file:line: reason" in the log, the
 * running configuration untouched) when anything is wrong, or when it asks for something only
 * a restart can do (a route to a plugin not loaded, a removed list). Otherwise it applies what
 * can change under a running gateway - agents and their roles, routes to loaded plugins, list
 * declarations (new lists, auto_stop), [cascade], and the [gateway] keys stop_ttl, freeze_ttl, stop_ttl_max, freeze_ttl_max,
 * allow_anonymous_check and idle_timeout - and names every other changed key as needing a
 * restart (its running value stays). docs/operations.md "Reload" has the table.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

/* Room for the names of the keys a reload could not apply, in one log line. */
#define RELOAD_RESTART_NOTE_MAX 2048

int gateway_config_check_static(const config *c, char *err, size_t errcap) {
    const char *path = c->path[0] ? c->path : "(embedded defaults)";
    for (uint32_t i = 0; i < c->nagents; i++) {
        auth_hash h;
        if (auth_parse(c->agents[i].secret_hash, &h) != 0) {
            snprintf(err, errcap, "%s:%d: agent %s: secret_hash is not a `stopctl hash-secret` value", path,
                     c->agents[i].line, c->agents[i].name);
            return -1;
        }
    }
    struct in_addr ip;
    if (c->dpdk_enabled && inet_pton(AF_INET, c->dpdk_ip, &ip) != 1) {
        snprintf(err, errcap, "%s: [dpdk] ip = '%s' is not an IPv4 address (the address the DPDK port answers on)",
                 path, c->dpdk_ip);
        return -1;
    }
#ifndef HAVE_DPDK
    if (c->dpdk_enabled) {
        snprintf(err, errcap, "%s: [dpdk] enabled = yes, but this stopgated was built without DPDK (libdpdk-dev was "
                              "not found at build time): install it and rebuild, or set [dpdk] enabled = no", path);
        return -1;
    }
#endif
    return 0;
}

static const cfg_plugin *plugin_named(const config *c, const char *name) {
    for (uint32_t i = 0; i < c->nplugins; i++)
        if (!strcmp(c->plugins[i].name, name)) return &c->plugins[i];
    return NULL;
}

static const char *kv_value(const cfg_plugin *p, const char *key) {
    for (uint32_t i = 0; i < p->nkv; i++)
        if (!strcmp(p->kv[i].key, key)) return p->kv[i].value;
    return NULL;
}

static void note_key(char *out, size_t cap, const char *section, const char *key) {
    size_t n = strlen(out);
    if (n + 1 < cap) snprintf(out + n, cap - n, "%s[%s]%s%s", n ? ", " : "", section, key[0] ? " " : "", key);
}

/* Keys in which [plugin nw->name] differs from the running section old (NULL: the section is
 * new), named into out; how many. */
static uint32_t plugin_changes(const cfg_plugin *old, const cfg_plugin *nw, char *out, size_t cap) {
    char sec[80];
    snprintf(sec, sizeof sec, "plugin %s", nw->name);
    if (!old) {
        note_key(out, cap, sec, "(new section)");
        return 1;
    }
    uint32_t n = 0;
    if (strcmp(old->type, nw->type) != 0) {
        note_key(out, cap, sec, "type");
        n++;
    }
    for (uint32_t i = 0; i < nw->nkv; i++) {
        const char *v = kv_value(old, nw->kv[i].key);
        if (!v || strcmp(v, nw->kv[i].value) != 0) {
            note_key(out, cap, sec, nw->kv[i].key);
            n++;
        }
    }
    for (uint32_t i = 0; i < old->nkv; i++)
        if (!kv_value(nw, old->kv[i].key)) {
            note_key(out, cap, sec, old->kv[i].key);
            n++;
        }
    return n;
}

int gateway_config_check(const config *c, const config *running, const char *argv0, const glog *log, char *err,
                         size_t errcap) {
    if (gateway_config_check_static(c, err, errcap) != 0) return -1;
    /* A section the running gateway already accepted needs no second judgement (and starting
     * a second instance of a network plugin on the loop thread costs its connect time). */
    for (uint32_t i = 0; i < c->nplugins; i++) {
        const cfg_plugin *cp = &c->plugins[i];
        char scratch[8] = "";
        const cfg_plugin *old = running ? plugin_named(running, cp->name) : NULL;
        if (old && plugin_changes(old, cp, scratch, sizeof scratch) == 0) continue;
        if (router_check_plugin(c, cp, argv0, log, err, errcap) != 0) return -1;
    }
    return 0;
}

/* ---- keys a reload does not apply ---------------------------------------------------------- */

enum key_kind { KEY_BYTES, KEY_STR, KEY_ADDR };

typedef struct restart_key {
    const char *section, *name;
    size_t off, len;
    int kind;
} restart_key;

#define RK(sec, name, field, kind) {sec, name, offsetof(config, field), sizeof(((config *)0)->field), kind}
static const restart_key k_restart_keys[] = {
    RK("gateway", "listen", listen, KEY_ADDR),
    RK("gateway", "udp", udp, KEY_ADDR),
    RK("gateway", "metrics", metrics, KEY_ADDR),
    RK("gateway", "console", console, KEY_ADDR),
    RK("gateway", "journal_dir", journal_dir, KEY_STR),
    RK("gateway", "shm_name", shm_name, KEY_STR),
    RK("gateway", "shm_group", shm_gid, KEY_BYTES),
    RK("gateway", "list_capacity", list_capacity, KEY_BYTES),
    RK("gateway", "currency", currency, KEY_STR),
    RK("gateway", "bank_deadline_ms", bank_deadline_ms, KEY_BYTES),
    RK("gateway", "max_clients", max_clients, KEY_BYTES),
    RK("gateway", "recv_buffers", recv_buffers, KEY_BYTES),
    RK("gateway", "segment_bytes", segment_bytes, KEY_BYTES),
    RK("gateway", "max_orders", max_orders, KEY_BYTES),
    RK("gateway", "prefault", prefault, KEY_BYTES),
    RK("gateway", "log_file", log_file, KEY_STR),
    RK("gateway", "plugin_dir", plugin_dir, KEY_STR),
    RK("gateway", "tls_listen", tls_listen, KEY_ADDR),
    RK("gateway", "tls_cert", tls_cert, KEY_STR),
    RK("gateway", "tls_key", tls_key, KEY_STR),
    RK("gateway", "tls_ca", tls_ca, KEY_STR),
    RK("dpdk", "enabled", dpdk_enabled, KEY_BYTES),
    RK("dpdk", "eal", dpdk_eal, KEY_STR),
    RK("dpdk", "ip", dpdk_ip, KEY_STR),
    RK("dpdk", "port", dpdk_port, KEY_BYTES),
    /* A member's identity and its place in the cluster are fixed for its life. */
    RK("cluster", "etcd", cluster_etcd, KEY_STR),
    RK("cluster", "name", cluster_name, KEY_STR),
    RK("cluster", "prefix", cluster_prefix, KEY_STR),
    RK("cluster", "advertise", cluster_advertise, KEY_ADDR),
    RK("cluster", "candidate", cluster_candidate, KEY_BYTES),
    RK("cluster", "lease_ms", cluster_lease_ms, KEY_BYTES),
    RK("cluster", "commit_timeout_ms", cluster_commit_timeout_ms, KEY_BYTES),
    RK("cluster", "log_retention_ms", cluster_log_retention_ms, KEY_BYTES),
};

static bool key_differs(const config *a, const config *b, const restart_key *k) {
    const char *x = (const char *)a + k->off, *y = (const char *)b + k->off;
    switch (k->kind) {
    case KEY_STR: return strcmp(x, y) != 0;
    case KEY_ADDR: {
        const cfg_addr *p = (const cfg_addr *)x, *q = (const cfg_addr *)y;
        return p->enabled != q->enabled || (p->enabled && (p->port != q->port || strcmp(p->host, q->host) != 0));
    }
    default: return memcmp(x, y, k->len) != 0;
    }
}

/* Every key of nc that differs from the running config and only a restart applies, named into
 * out; how many. */
static uint32_t restart_changes(const config *running, const config *nc, char *out, size_t cap) {
    uint32_t n = 0;
    for (size_t i = 0; i < sizeof k_restart_keys / sizeof k_restart_keys[0]; i++)
        if (key_differs(running, nc, &k_restart_keys[i])) {
            note_key(out, cap, k_restart_keys[i].section, k_restart_keys[i].name);
            n++;
        }
    for (uint32_t i = 0; i < nc->nplugins; i++)
        n += plugin_changes(plugin_named(running, nc->plugins[i].name), &nc->plugins[i], out, cap);
    for (uint32_t i = 0; i < running->nplugins; i++)
        if (!plugin_named(nc, running->plugins[i].name)) {
            char sec[80];
            snprintf(sec, sizeof sec, "plugin %s", running->plugins[i].name);
            note_key(out, cap, sec, "(removed section)");
            n++;
        }
    return n;
}

/* ---- SIGHUP ---------------------------------------------------------------------------------- */

static bool has_plugin(const gateway *gw, const char *name) {
    for (uint32_t i = 0; i < gw->rt.nplugins; i++)
        if (!strcmp(gw->rt.plugins[i].name, name)) return true;
    return false;
}

static bool has_list(const config *c, const char *name) {
    for (uint32_t i = 0; i < c->nlists; i++)
        if (!strcmp(c->lists[i].name, name)) return true;
    return false;
}

/* Everything a reload must pass before anything is applied. *auth receives the parsed
 * secrets of nc's agents (NULL when it declares none). 0, or -1 with err. */
static int reload_check(gateway *gw, const config *nc, auth_hash **auth, char *err, size_t errcap) {
    *auth = NULL;
    if (gateway_config_check(nc, &gw->cfg, gw->rt.argv0, &gw->log, err, errcap) != 0) return -1;
    for (uint32_t i = 0; i < nc->nroutes; i++)
        if (!has_plugin(gw, nc->routes[i].plugin)) {
            snprintf(err, errcap, "%s:%d: route to plugin '%s', which is not loaded (new plugins need a restart)",
                     nc->path, nc->routes[i].line, nc->routes[i].plugin);
            return -1;
        }
    for (uint32_t i = 0; i < gw->cfg.nlists; i++)
        if (!has_list(nc, gw->cfg.lists[i].name)) {
            snprintf(err, errcap, "list '%s' is no longer declared (removing a list needs a restart)",
                     gw->cfg.lists[i].name);
            return -1;
        }
    uint32_t nnew = 0;
    for (uint32_t i = 0; i < nc->nlists; i++) nnew += lists_bit(gw, nc->lists[i].name, strlen(nc->lists[i].name)) < 0;
    if (gw->ls.nlists + nnew > SGL_LISTS_MAX) {
        snprintf(err, errcap, "more than %d lists", SGL_LISTS_MAX);
        return -1;
    }
    if (!nc->nagents) return 0;
    *auth = calloc(nc->nagents, sizeof **auth);
    if (!*auth) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < nc->nagents; i++)
        if (auth_parse(nc->agents[i].secret_hash, &(*auth)[i]) != 0) { /* checked above: cannot fail */
            snprintf(err, errcap, "%s:%d: agent %s: bad secret_hash", nc->path, nc->agents[i].line, nc->agents[i].name);
            return -1;
        }
    return 0;
}

/* New lists get the next free bits; auto_stop flags follow the file. Returns the new ones. */
static uint32_t reload_lists(gateway *gw, const config *nc) {
    lists_state *ls = &gw->ls;
    uint32_t added = 0;
    for (uint32_t i = 0; i < nc->nlists; i++) {
        int bit = lists_bit(gw, nc->lists[i].name, strlen(nc->lists[i].name));
        if (bit < 0) {
            bit = (int)ls->nlists++; /* room checked by reload_check */
            snprintf(ls->names[bit], SGL_LIST_NAME_MAX, "%s", nc->lists[i].name);
            /* Readers take names for display only; a name appearing at an unused bit is
             * harmless to one reading concurrently. */
            snprintf(ls->t.h->list_names[bit], SGL_LIST_NAME_MAX, "%s", nc->lists[i].name);
            ls->t.h->nlists = ls->nlists;
            added++;
        }
        if (nc->lists[i].auto_stop && !(ls->protected_mask & (1ULL << bit))) ls->auto_stop_mask |= 1ULL << bit;
        else ls->auto_stop_mask &= ~(1ULL << bit);
    }
    memcpy(gw->cfg.lists, nc->lists, sizeof nc->lists);
    gw->cfg.nlists = nc->nlists;
    return added;
}

/* Connected clients keep their session if their agent still exists (with its new role), and
 * must AUTH again if it was removed. Takes ownership of auth. */
static void reload_agents(gateway *gw, const config *nc, auth_hash *auth) {
    memcpy(gw->cfg.agents, nc->agents, sizeof nc->agents);
    gw->cfg.nagents = nc->nagents;
    free(gw->agent_auth);
    gw->agent_auth = auth;
    uint32_t dropped = 0;
    for (uint32_t i = 0; i < gw->srv.max; i++) {
        client *c = &gw->srv.clients[i];
        if (!c->in_use || !c->agent) continue;
        char name[AGENT_LEN_MAX + 1];
        snprintf(name, sizeof name, "%s", c->agent->name);
        const cfg_agent *a = config_agent(&gw->cfg, name, strlen(name));
        c->agent = a;
        c->perms = a ? role_perms(a->role) : 0;
        dropped += !a;
    }
    if (dropped) LOGW(gw, "reload: %u connections lost their agent and must AUTH again", dropped);
    char err[512];
    if (gw->udp.fd >= 0 && udp_agents_build(gw, err, sizeof err) != 0) LOGE(gw, "reload: UDP agents not updated: %s", err);
}

/* The keys that apply live (the table in docs/operations.md "Reload"). */
static void reload_live_keys(gateway *gw, const config *nc) {
    memcpy(gw->cfg.routes, nc->routes, sizeof nc->routes);
    gw->cfg.nroutes = nc->nroutes;
    gw->cfg.stop_ttl_s = nc->stop_ttl_s;
    gw->cfg.freeze_ttl_s = nc->freeze_ttl_s;
    gw->cfg.stop_ttl_max_s = nc->stop_ttl_max_s;
    gw->cfg.freeze_ttl_max_s = nc->freeze_ttl_max_s;
    gw->cfg.allow_anonymous_check = nc->allow_anonymous_check;
    gw->cfg.idle_timeout_s = nc->idle_timeout_s;
    gw->cfg.spin_us = nc->spin_us;
    gw->cfg.console_session_ttl_s = nc->console_session_ttl_s; /* new sessions */
    gw->cfg.cascade_max_depth = nc->cascade_max_depth;
    gw->cfg.cascade_min_amount = nc->cascade_min_amount;
}

int gateway_reload(gateway *gw, char *err, size_t errcap) {
    if (!gw->cfg.path[0]) {
        snprintf(err, errcap, "running on embedded defaults: no file to reload");
        return -1;
    }
    config *nc = malloc(sizeof *nc);
    auth_hash *auth = NULL;
    if (!nc) {
        snprintf(err, errcap, "out of memory");
        return -1;
    }
    config_defaults(nc);
    int rc = -1;
    if (config_load(nc, gw->cfg.path, err, errcap) != 0 || config_finish(nc, err, errcap) != 0) goto out;
    if (reload_check(gw, nc, &auth, err, errcap) != 0) goto out;
    /* Everything checked: apply. */
    char restart[RELOAD_RESTART_NOTE_MAX] = "";
    uint32_t nrestart = restart_changes(&gw->cfg, nc, restart, sizeof restart);
    uint32_t added = reload_lists(gw, nc);
    reload_live_keys(gw, nc);
    if (nc->nagents) {
        reload_agents(gw, nc, auth);
        auth = NULL;
        login_agents_changed(gw); /* fake hashes follow the agents' keys */
    } else {
        LOGW(gw, "reload: the file declares no agents; keeping the current ones");
    }
    if (nrestart)
        LOGW(gw, "SIGHUP: %u changed key(s) not applied, needs a restart (the running values stay): %s", nrestart,
             restart);
    LOGI(gw, "SIGHUP: configuration reloaded from %s: %u agents, %u routes, %u lists (%u new)%s", gw->cfg.path,
         gw->cfg.nagents, gw->cfg.nroutes, gw->ls.nlists, added, nrestart ? "; see above for what needs a restart" : "");
    dpdk_agents_changed(gw); /* the DPDK lcore's agents and auto_stop lists */
    rc = 0;
out:
    free(auth);
    config_free(nc);
    free(nc);
    return rc;
}
