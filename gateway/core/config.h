/*
 * config: the INI configuration of stopgated (SPEC §2a, config/stopgate.conf), read with
 * libinih. config_defaults() gives the embedded defaults a newcomer runs on with no file;
 * config_load() overlays a file and refuses unknown keys and bad values with "file:line:
 * reason". Plugin sections are kept as key/value lists for the plugin's own init to judge.
 */
#ifndef SG_CONFIG_H
#define SG_CONFIG_H
#include <stdbool.h>
#include <stdint.h>

#include <stopgate/plugin.h>

#include "limits.h"

typedef enum role {
    ROLE_AGENT = 1,
    ROLE_SUPERVISOR,
    ROLE_OPS,
    ROLE_SCREEN,
    ROLE_BANK,
    ROLE_DEV, /* the development agent of a config-less start: every permission */
} role;

enum perm {
    PERM_ORDER = 1u << 0,   /* STOP FREEZE RELEASE EXTEND */
    PERM_STATUS = 1u << 1,  /* STATUS CASE */
    PERM_CHECK = 1u << 2,   /* CHECK MCHECK */
    PERM_CONFIRM = 1u << 3, /* CONFIRM */
    PERM_LIST = 1u << 4,    /* LIST.* */
    PERM_INFO = 1u << 5,    /* INFO */
    PERM_SESSION = 1u << 6, /* ECHO COMMAND CONFIG: any authenticated agent (SPEC §4.2 opens
                             * only AUTH HELLO PING QUIT to anonymous connections) */
};

unsigned role_perms(role r);
const char *role_name(role r);

typedef struct cfg_addr {
    bool enabled;
    char host[64];
    uint16_t port;
} cfg_addr;

typedef struct cfg_agent {
    char name[AGENT_LEN_MAX + 1];
    role role;
    char secret_hash[256];
    int line;
} cfg_agent;

typedef struct cfg_route {
    char pattern[BANK_LEN_MAX + 1]; /* bank code or prefix (without '*') */
    bool prefix, is_default;
    char plugin[64];
    int line;
} cfg_route;

typedef struct cfg_plugin {
    char name[64];
    char type[64];
    int line;
    sg_plugin_kv kv[PLUGIN_KV_MAX];
    uint32_t nkv;
} cfg_plugin;

typedef struct cfg_list {
    char name[32];
    bool auto_stop;
    int line;
} cfg_list;

/* A new key also goes into gateway/daemon/reload.c: reload_live_keys() when a reload may
 * apply it, else k_restart_keys, so a reload names it as needing a restart. */
typedef struct config {
    char path[4096]; /* "" = embedded defaults */
    cfg_addr listen, udp, metrics;
    cfg_addr console;            /* the agents' web console (SPEC §12); off: disabled */
    uint32_t console_session_ttl_s; /* a console session ends this long after sign-in */
    char journal_dir[4096];
    char shm_name[64];
    char shm_group[64]; /* group of the shared-memory lists, "" = the gateway's primary group */
    int64_t shm_gid;    /* its gid, resolved when the file is read; -1 = primary group */
    uint64_t list_capacity; /* slots of the shared-memory list table, a power of two */
    char currency[4];
    int64_t stop_ttl_s, freeze_ttl_s, bank_deadline_ms;
    int64_t stop_ttl_max_s, freeze_ttl_max_s; /* no TTL or EXTEND past these (SPEC §4.2) */
    bool allow_anonymous_check;
    uint32_t max_clients;
    uint32_t recv_buffers; /* provided receive buffers (a power of two); 0 = one plain recv per read */
    uint32_t spin_us;      /* the loop's spin for a completion while a journal batch is in flight; 0 = off */
    uint64_t segment_bytes;
    uint32_t max_orders;
    uint32_t max_outbox; /* 0: OUTBOX_PER_ORDER x max_orders */
    uint32_t idle_timeout_s;
    uint32_t auth_timeout_s;          /* a connection must AUTH within this (0 = no deadline) */
    uint32_t max_clients_per_address; /* 0 = only max_clients */
    uint32_t auth_fail_limit;         /* failed AUTHs per address per window (0 = no limiter) */
    uint32_t auth_fail_window_s;
    bool prefault; /* make the order indexes resident at start */
    char log_file[4096];
    char plugin_dir[4096];
    uint32_t cascade_max_depth;
    int64_t cascade_min_amount;
    cfg_agent agents[AGENTS_MAX];
    uint32_t nagents;
    cfg_route routes[ROUTES_MAX];
    uint32_t nroutes;
    cfg_plugin plugins[PLUGINS_MAX];
    uint32_t nplugins;
    cfg_list lists[64];
    uint32_t nlists;
    /* TLS on RESP (SPEC §11): off unless tls_listen is set; the key lines name errors. */
    cfg_addr tls_listen;
    char tls_cert[4096], tls_key[4096], tls_ca[4096]; /* PEM files; tls_ca "" = no client certificates */
    int tls_listen_line, tls_cert_line, tls_key_line, tls_ca_line;
    bool dpdk_enabled;
    char dpdk_eal[1024];
    char dpdk_ip[64];
    uint16_t dpdk_port;
    /* Cluster (SPEC §10, docs/cluster.md): a single node unless cluster_etcd is set. */
    char cluster_etcd[CLUSTER_ETCD_LEN_MAX + 1]; /* "http://h:p,http://h:p,..." */
    char cluster_name[CLUSTER_NAME_LEN_MAX + 1];
    char cluster_prefix[CLUSTER_PREFIX_LEN_MAX + 1];
    cfg_addr cluster_advertise; /* the RESP address clients are sent to while this member leads */
    bool cluster_candidate;
    uint32_t cluster_lease_ms, cluster_commit_timeout_ms, cluster_log_retention_ms;
    int cluster_line; /* line of [cluster] etcd, for the checks of config_finish */
} config;

void config_defaults(config *c);
/* Overlay path onto *c. 0, or -1 with err = "path:line: reason". */
int config_load(config *c, const char *path, char *err, size_t errcap);
/* After loading: defaults that depend on other sections (a default route to sim, a plugin
 * instance for every route). 0 or -1 with err. */
int config_finish(config *c, char *err, size_t errcap);
void config_free(config *c);
const cfg_agent *config_agent(const config *c, const char *name, size_t len);
int config_parse_addr(const char *s, cfg_addr *out);
#endif
