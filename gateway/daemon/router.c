/*
 * router: bank code -> plugin instance, and the plugin host. Plugins are found in
 * [gateway] plugin_dir, else $STOPGATE_PLUGIN_PATH (colon-separated), else the installed
 * plugin directory, else beside the running binary in a build tree (../plugins/NAME/), as
 * NAME.so or NAME/NAME.so. A plugin's event fd is watched with a multishot poll on the loop;
 * its timer wishes (poll() return values) are honoured by the loop's wait timeout.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "gateway.h"
#include "ring.h"

#ifndef SG_PLUGIN_INSTALL_DIR
#define SG_PLUGIN_INSTALL_DIR "/usr/local/lib/stopgate/plugins"
#endif

static uint64_t host_result(void *ctx, const sg_result *r) {
    plugin_inst *p = ctx;
    return engine_on_result(p->gw, p, r);
}
static void host_delivered(void *ctx, uint64_t id) {
    plugin_inst *p = ctx;
    engine_on_delivered(p->gw, p, id);
}
static uint64_t host_durable_lsn(void *ctx) {
    plugin_inst *p = ctx;
    return commit_acked_lsn(&p->gw->commit);
}
static void host_log(void *ctx, sg_log_level lvl, const char *msg) {
    plugin_inst *p = ctx;
    const char *l = lvl >= SG_LOG_ERROR ? "ERROR" : lvl == SG_LOG_WARN ? "WARN " : "INFO ";
    if (lvl == SG_LOG_DEBUG) return;
    glog_write(&p->gw->log, l, "plugin %s: %s", p->name, msg);
}
static int64_t host_now_us(void *ctx) {
    (void)ctx;
    return clock_now_us();
}

static void *try_open(const char *dir, const char *type, char *tried, size_t cap) {
    char path[PATH_MAX];
    const char *forms[] = {"%s/%s.so", "%s/%s/%s.so"};
    for (int i = 0; i < 2; i++) {
        if (i == 0) snprintf(path, sizeof path, forms[0], dir, type);
        else snprintf(path, sizeof path, forms[1], dir, type, type);
        if (access(path, R_OK) != 0) {
            size_t n = strlen(tried);
            snprintf(tried + n, cap - n, "%s%s", n ? ", " : "", path);
            continue;
        }
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
        size_t n = strlen(tried);
        snprintf(tried + n, cap - n, "%s%s (%s)", n ? ", " : "", path, dlerror());
    }
    return NULL;
}

static void *find_plugin(const config *c, const char *argv0, const char *type, char *tried, size_t cap) {
    void *h;
    tried[0] = 0;
    if (c->plugin_dir[0]) return try_open(c->plugin_dir, type, tried, cap);
    const char *env = getenv("STOPGATE_PLUGIN_PATH");
    if (env && *env) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s", env);
        for (char *save, *d = strtok_r(tmp, ":", &save); d; d = strtok_r(NULL, ":", &save))
            if ((h = try_open(d, type, tried, cap))) return h;
        return NULL;
    }
    if ((h = try_open(SG_PLUGIN_INSTALL_DIR, type, tried, cap))) return h;
    /* Running from the build tree: <build>/gateway/stopgated -> <build>/plugins/<type>/. */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        snprintf(exe, sizeof exe, "%s", argv0);
    } else {
        exe[n] = 0;
    }
    char *slash = strrchr(exe, '/');
    if (slash) {
        *slash = 0;
        char dir[PATH_MAX + 16];
        snprintf(dir, sizeof dir, "%s/../plugins", exe);
        if ((h = try_open(dir, type, tried, cap))) return h;
    }
    return NULL;
}

/* dlopen the plugin of [plugin cp->name] and check its ABI. 0, or -1 with err. */
static int plugin_open(const config *c, const char *argv0, const cfg_plugin *cp, const sg_plugin_ops **ops,
                       void **so, char *err, size_t errcap) {
    char tried[2048];
    void *h = find_plugin(c, argv0, cp->type, tried, sizeof tried);
    if (!h) {
        snprintf(err, errcap, "%s:%d: plugin '%s' not found (tried %s)", c->path[0] ? c->path : "defaults", cp->line,
                 cp->type, tried);
        return -1;
    }
    sg_plugin_entry_fn entry = (sg_plugin_entry_fn)dlsym(h, SG_PLUGIN_ENTRY_SYMBOL);
    if (!entry || !(*ops = entry())) {
        snprintf(err, errcap, "plugin '%s': no %s symbol", cp->type, SG_PLUGIN_ENTRY_SYMBOL);
        return -1;
    }
    if ((*ops)->abi_version != SG_PLUGIN_ABI_VERSION) {
        snprintf(err, errcap, "plugin '%s' has ABI version %u, the gateway needs %u", cp->type, (*ops)->abi_version,
                 SG_PLUGIN_ABI_VERSION);
        return -1;
    }
    *so = h;
    return 0;
}

/* init() of one instance; 0, or -1 with err = "file:line: [plugin NAME]: reason". */
static int plugin_start(const config *c, const cfg_plugin *cp, const sg_plugin_ops *ops, const sg_host *host,
                        void **state, char *err, size_t errcap) {
    char perr[SG_PLUGIN_ERR_MAX] = "";
    int bad_line = 0;
    if (ops->init(host, cp->kv, cp->nkv, state, perr, &bad_line) == 0) return 0;
    snprintf(err, errcap, "%s:%d: [plugin %s]: %s", c->path[0] ? c->path : "defaults",
             bad_line > 0 ? bad_line : cp->line, cp->name, perr);
    return -1;
}

int router_init(gateway *gw, const char *argv0, char *err, size_t errcap) {
    router *rt = &gw->rt;
    memset(rt, 0, sizeof *rt);
    rt->argv0 = argv0;
    for (uint32_t i = 0; i < gw->cfg.nplugins; i++) {
        const cfg_plugin *cp = &gw->cfg.plugins[i];
        plugin_inst *p = &rt->plugins[rt->nplugins];
        memset(p, 0, sizeof *p);
        /* Both names are bounded by the config parser; memcpy avoids a false -Wrestrict
         * under ASan, which cannot prove cfg.plugins and rt.plugins are apart. */
        _Static_assert(sizeof p->name >= sizeof cp->name, "plugin name fits");
        memcpy(p->name, cp->name, sizeof cp->name);
        p->gw = gw;
        p->idx = rt->nplugins;
        void *h;
        if (plugin_open(&gw->cfg, argv0, cp, &p->ops, &h, err, errcap) != 0) return -1;
        p->so = h;
        p->host = (sg_host){.ctx = p, .result = host_result, .delivered = host_delivered, .log = host_log,
                            .now_us = host_now_us, .durable_lsn = host_durable_lsn};
        if (plugin_start(&gw->cfg, cp, p->ops, &p->host, &p->state, err, errcap) != 0) return -1;
        p->event_fd = p->ops->event_fd ? p->ops->event_fd(p->state) : -1;
        p->next_poll_us = -1;
        rt->nplugins++;
        LOGI(gw, "plugin %s (type %s) ready", p->name, p->ops->name);
    }
    for (uint32_t i = 0; i < rt->nplugins; i++) {
        plugin_inst *p = &rt->plugins[i];
        if (p->event_fd < 0) continue;
        struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
        io_uring_prep_poll_multishot(sqe, p->event_fd, POLLIN);
        io_uring_sqe_set_data64(sqe, ud_make(UD_PLUGIN, 0, i));
        p->poll_armed = true;
    }
    return 0;
}

/* The host of an instance started only to be judged: it takes nothing from the bank (no
 * submit, no poll ever runs) and logs under the instance's name. */
typedef struct check_ctx {
    const glog *log;
    const char *name;
} check_ctx;

static uint64_t check_result(void *ctx, const sg_result *r) {
    (void)ctx, (void)r;
    return 0;
}
static void check_delivered(void *ctx, uint64_t id) { (void)ctx, (void)id; }
static uint64_t check_durable_lsn(void *ctx) {
    (void)ctx;
    return 0;
}
static void check_log(void *ctx, sg_log_level lvl, const char *msg) {
    const check_ctx *x = ctx;
    if (lvl < SG_LOG_WARN) return;
    glog_write(x->log, lvl >= SG_LOG_ERROR ? "ERROR" : "WARN ", "plugin %s (check): %s", x->name, msg);
}

int router_check_plugin(const config *c, const cfg_plugin *cp, const char *argv0, const glog *log, char *err,
                        size_t errcap) {
    const sg_plugin_ops *ops;
    void *so, *state = NULL;
    if (plugin_open(c, argv0, cp, &ops, &so, err, errcap) != 0) return -1;
    check_ctx x = {.log = log, .name = cp->name};
    sg_host host = {.ctx = &x, .result = check_result, .delivered = check_delivered, .log = check_log,
                    .now_us = host_now_us, .durable_lsn = check_durable_lsn};
    if (plugin_start(c, cp, ops, &host, &state, err, errcap) != 0) return -1;
    if (ops->shutdown) ops->shutdown(state);
    return 0;
}

int router_check(const config *c, const char *argv0, const glog *log, char *err, size_t errcap) {
    for (uint32_t i = 0; i < c->nplugins; i++)
        if (router_check_plugin(c, &c->plugins[i], argv0, log, err, errcap) != 0) return -1;
    return 0;
}

static plugin_inst *by_name(gateway *gw, const char *name) {
    for (uint32_t i = 0; i < gw->rt.nplugins; i++)
        if (!strcmp(gw->rt.plugins[i].name, name)) return &gw->rt.plugins[i];
    return NULL;
}

plugin_inst *router_route(gateway *gw, const char *bank) {
    const cfg_route *best = NULL, *dflt = NULL;
    size_t best_len = 0;
    for (uint32_t i = 0; i < gw->cfg.nroutes; i++) {
        const cfg_route *r = &gw->cfg.routes[i];
        if (r->is_default) {
            dflt = r;
        } else if (!r->prefix) {
            if (!strcmp(r->pattern, bank)) return by_name(gw, r->plugin); /* exact beats any prefix */
        } else {
            size_t n = strlen(r->pattern);
            if (n > best_len && !strncmp(r->pattern, bank, n)) {
                best = r;
                best_len = n;
            }
        }
    }
    if (best) return by_name(gw, best->plugin);
    return dflt ? by_name(gw, dflt->plugin) : NULL;
}

static void poll_one(gateway *gw, plugin_inst *p, int64_t now_us) {
    if (!engine_room(gw)) return; /* results must fit the journal batch; poll after the next fsync */
    p->next_poll_us = p->ops->poll(p->state, now_us);
}

void router_on_cqe(gateway *gw, uint32_t idx, int res, uint32_t flags) {
    if (idx >= gw->rt.nplugins) return;
    plugin_inst *p = &gw->rt.plugins[idx];
    if (!(flags & IORING_CQE_F_MORE)) p->poll_armed = false;
    if (res < 0 && res != -ECANCELED) LOGW(gw, "plugin %s: poll: %s", p->name, strerror(-res));
    if (res > 0) p->next_poll_us = 0; /* readable: poll in this iteration's tick */
    if (!p->poll_armed && p->event_fd >= 0 && res != -ECANCELED) {
        struct io_uring_sqe *sqe = ring_sqe(&gw->ring);
        io_uring_prep_poll_multishot(sqe, p->event_fd, POLLIN);
        io_uring_sqe_set_data64(sqe, ud_make(UD_PLUGIN, 0, idx));
        p->poll_armed = true;
    }
}

void router_poll_due(gateway *gw, int64_t now_us) {
    for (uint32_t i = 0; i < gw->rt.nplugins; i++) {
        plugin_inst *p = &gw->rt.plugins[i];
        if (p->next_poll_us >= 0 && p->next_poll_us <= now_us) poll_one(gw, p, now_us);
    }
}

int64_t router_next_poll_us(gateway *gw) {
    int64_t t = INT64_MAX;
    for (uint32_t i = 0; i < gw->rt.nplugins; i++) {
        int64_t n = gw->rt.plugins[i].next_poll_us;
        if (n >= 0 && n < t) t = n;
    }
    return t;
}

void router_shutdown(gateway *gw) {
    for (uint32_t i = 0; i < gw->rt.nplugins; i++) {
        plugin_inst *p = &gw->rt.plugins[i];
        if (p->ops && p->ops->shutdown) p->ops->shutdown(p->state);
        /* dlclose is skipped on purpose: sanitizers need the symbols for leak reports. */
    }
    gw->rt.nplugins = 0;
}
