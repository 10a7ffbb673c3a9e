/*
 * reload: SIGHUP re-reads the configuration file and applies what can change under a
 * running gateway: agents (and their roles), routes to already loaded plugins, and list
 * declarations (new lists, auto_stop flags). A new file that does not parse, or that asks
 * for something only a restart can do (a new plugin, a removed list), is refused whole with
 * the reason in the log, and the running configuration stays.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

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
    for (uint32_t i = 0; i < nc->nroutes; i++)
        if (!has_plugin(gw, nc->routes[i].plugin)) {
            snprintf(err, errcap, "%s:%d: route to plugin '%s', which is not loaded (new plugins need a restart)",
                     nc->path, nc->routes[i].line, nc->routes[i].plugin);
            goto out;
        }
    for (uint32_t i = 0; i < gw->cfg.nlists; i++)
        if (!has_list(nc, gw->cfg.lists[i].name)) {
            snprintf(err, errcap, "list '%s' is no longer declared (removing a list needs a restart)",
                     gw->cfg.lists[i].name);
            goto out;
        }
    uint32_t nagents = nc->nagents;
    if (nagents) {
        auth = calloc(nagents, sizeof *auth);
        if (!auth) {
            snprintf(err, errcap, "out of memory");
            goto out;
        }
        for (uint32_t i = 0; i < nagents; i++)
            if (auth_parse(nc->agents[i].secret_hash, &auth[i]) != 0) {
                snprintf(err, errcap, "%s:%d: agent %s: secret_hash is not a `stopctl hash-secret` value", nc->path,
                         nc->agents[i].line, nc->agents[i].name);
                goto out;
            }
    }
    /* Everything checked: apply. */
    lists_state *ls = &gw->ls;
    uint32_t added = 0;
    for (uint32_t i = 0; i < nc->nlists; i++) {
        int bit = lists_bit(gw, nc->lists[i].name, strlen(nc->lists[i].name));
        if (bit < 0) {
            if (ls->nlists == SGL_LISTS_MAX) {
                snprintf(err, errcap, "more than %d lists", SGL_LISTS_MAX);
                goto out;
            }
            bit = (int)ls->nlists++;
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
    memcpy(gw->cfg.routes, nc->routes, sizeof nc->routes);
    gw->cfg.nroutes = nc->nroutes;
    if (nagents) {
        memcpy(gw->cfg.agents, nc->agents, sizeof nc->agents);
        gw->cfg.nagents = nagents;
        free(gw->agent_auth);
        gw->agent_auth = auth;
        auth = NULL;
        login_agents_changed(gw); /* fake hashes follow the agents' keys */
        /* Connected clients keep their session if their agent still exists (with its new
         * role), and must AUTH again if it was removed. */
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
        if (gw->udp.fd >= 0 && udp_agents_build(gw, err, errcap) != 0)
            LOGE(gw, "reload: UDP agents not updated: %s", err);
    } else {
        LOGW(gw, "reload: the file declares no agents; keeping the current ones");
    }
    LOGI(gw, "SIGHUP: configuration reloaded from %s: %u agents, %u routes, %u lists (%u new)", gw->cfg.path,
         gw->cfg.nagents, gw->cfg.nroutes, ls->nlists, added);
    dpdk_agents_changed(gw); /* the DPDK lcore's agents and auto_stop lists */
    rc = 0;
out:
    free(auth);
    config_free(nc);
    free(nc);
    return rc;
}
