/* Unit tests of config (gateway/core/config.h): embedded defaults (SPEC §2), every
 * documented key of SPEC §2a and docs/CONVENTIONS-dev.md, the shipped config/stopgate.conf,
 * and bad input refused as "file:line: reason" with the right line. */
#include "unit.h"

#include "config.h"

#ifndef SG_SOURCE_ROOT
#error "meson passes SG_SOURCE_ROOT"
#endif

static char g_dir[128];
static char g_path[256];
static config *g_c;

static int setup(void **state) {
    (void)state;
    unit_mkdtemp(g_dir, sizeof g_dir, "config");
    snprintf(g_path, sizeof g_path, "%s/stopgate.conf", g_dir);
    g_c = calloc(1, sizeof *g_c); /* ~0.5 MB: not on the stack */
    return g_c ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    config_free(g_c);
    free(g_c);
    g_c = NULL;
    unit_rmtree(g_dir);
    return 0;
}

/* Write text as the config file and load it over the defaults. */
static int load(const char *text, char *err, size_t errcap) {
    config_free(g_c);
    config_defaults(g_c);
    unit_write_file(g_path, text);
    err[0] = 0;
    return config_load(g_c, g_path, err, errcap);
}

static void load_ok(const char *text) {
    char err[1024];
    if (load(text, err, sizeof err) != 0) fail_msg("config refused: %s", err);
}

static const cfg_plugin *plugin(const char *name) {
    for (uint32_t i = 0; i < g_c->nplugins; i++)
        if (!strcmp(g_c->plugins[i].name, name)) return &g_c->plugins[i];
    return NULL;
}

static const char *kv(const cfg_plugin *p, const char *key) {
    for (uint32_t i = 0; i < p->nkv; i++)
        if (!strcmp(p->kv[i].key, key)) return p->kv[i].value;
    return NULL;
}

static void test_defaults(void **state) {
    (void)state;
    config_defaults(g_c);
    assert_string_equal(g_c->path, "");
    assert_true(g_c->listen.enabled);
    assert_string_equal(g_c->listen.host, "127.0.0.1");
    assert_int_equal(g_c->listen.port, 7379);
    assert_true(g_c->udp.enabled);
    assert_string_equal(g_c->udp.host, "127.0.0.1");
    assert_int_equal(g_c->udp.port, 7380);
    assert_true(g_c->metrics.enabled);
    assert_int_equal(g_c->metrics.port, 9379);
    assert_string_equal(g_c->journal_dir, "./var/journal");
    assert_string_equal(g_c->shm_name, "stopgate-lists");
    assert_string_equal(g_c->currency, "CNY");
    assert_int_equal(g_c->stop_ttl_s, 172800);
    assert_int_equal(g_c->freeze_ttl_s, 15552000);
    assert_int_equal(g_c->bank_deadline_ms, 5000);
    assert_false(g_c->allow_anonymous_check);
    assert_int_equal(g_c->max_clients, 10000);
    assert_int_equal(g_c->recv_buffers, RECV_BUFS_DEFAULT);
    assert_int_equal(g_c->spin_us, SPIN_US_DEFAULT);
    assert_int_equal(g_c->segment_bytes, 67108864);
    /* 1048576 since c7d4408 (docs/CONVENTIONS-dev.md still says 4194304) */
    assert_int_equal(g_c->max_orders, 1048576);
    assert_true(g_c->prefault);
    assert_int_equal(g_c->idle_timeout_s, 0);
    assert_int_equal(g_c->auth_timeout_s, 5);
    assert_int_equal(g_c->max_clients_per_address, 1000);
    assert_int_equal(g_c->auth_fail_limit, 20);
    assert_int_equal(g_c->auth_fail_window_s, 60);
    assert_string_equal(g_c->log_file, "");
    assert_string_equal(g_c->plugin_dir, "");
    assert_int_equal(g_c->cascade_max_depth, 5);
    assert_int_equal(g_c->cascade_min_amount, 0);
    assert_int_equal(g_c->nagents, 0);
    assert_false(g_c->dpdk_enabled);
}

/* No file at all: every bank goes to the simulated bank. */
static void test_defaults_finish(void **state) {
    (void)state;
    config_defaults(g_c);
    char err[512] = "";
    assert_int_equal(config_finish(g_c, err, sizeof err), 0);
    assert_int_equal(g_c->nroutes, 1);
    assert_true(g_c->routes[0].is_default);
    assert_string_equal(g_c->routes[0].plugin, "sim");
    const cfg_plugin *p = plugin("sim");
    assert_non_null(p);
    assert_string_equal(p->type, "sim");
}

static const char k_full[] =
    "; every key\n"
    "[gateway]\n"
    "listen      = 0.0.0.0:17379      ; RESP/TCP\n"
    "udp         = off\n"
    "metrics     = 127.0.0.2:19379\n"
    "journal_dir = /var/lib/stopgate/journal\n"
    "shm_name    = sg-test\n"
    "currency    = eur\n"
    "stop_ttl    = 3600\n"
    "freeze_ttl  = 7200\n"
    "bank_deadline_ms = 250\n"
    "allow_anonymous_check = yes\n"
    "max_clients = 500\n"
    "recv_buffers = 64\n"
    "spin_us = 75\n"
    "segment_bytes = 1048576\n"
    "max_orders = 1024\n"
    "prefault = no\n"
    "idle_timeout = 30\n"
    "auth_timeout = 0\n"
    "max_clients_per_address = 7\n"
    "auth_fail_limit = 0\n"
    "auth_fail_window = 9\n"
    "log_file = /tmp/stopgate.log\n"
    "plugin_dir = /opt/stopgate/plugins\n"
    "\n"
    "[cascade]\n"
    "max_depth  = 2\n"
    "min_amount = 1000\n"
    "\n"
    "[agent alice]\n"
    "role        = agent\n"
    "secret_hash = "
    "sg1$argon2id$2$67108864$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
    "[agent bob]\n"
    "role = supervisor\n"
    "secret_hash = sg1$x\n"
    "[agent ops1]\n"
    "role = ops\n"
    "secret_hash = sg1$y\n"
    "[agent pay]\n"
    "role = screen\n"
    "secret_hash = sg1$z\n"
    "[agent bank1]\n"
    "role = bank\n"
    "secret_hash = sg1$w\n"
    "\n"
    "[list mule]\n"
    "auto_stop = yes\n"
    "[list protected]\n"
    "auto_stop = no\n"
    "\n"
    "[route default]\n"
    "plugin = sim\n"
    "[route icbk]\n"
    "plugin = redis_streams\n"
    "[route 62*]\n"
    "plugin = sim2\n"
    "\n"
    "[plugin sim]\n"
    "latency_us = 200\n"
    "balance    = 1000000\n"
    "[plugin redis_streams]\n"
    "host = 127.0.0.1\n"
    "port = 6379\n"
    "[plugin sim2]\n"
    "type = sim\n"
    "latency_us = 0\n"
    "\n"
    "[dpdk]\n"
    "enabled = yes\n"
    "eal = --no-huge -m 512 --no-pci --vdev=net_tap0,iface=sgtap0\n"
    "ip = 192.168.77.2\n"
    "port = 7390\n";

static void test_every_key(void **state) {
    (void)state;
    load_ok(k_full);
    config *c = g_c;
    assert_string_equal(c->path, g_path);
    assert_true(c->listen.enabled);
    assert_string_equal(c->listen.host, "0.0.0.0");
    assert_int_equal(c->listen.port, 17379); /* the inline comment is not part of the value */
    assert_false(c->udp.enabled);
    assert_string_equal(c->metrics.host, "127.0.0.2");
    assert_int_equal(c->metrics.port, 19379);
    assert_string_equal(c->journal_dir, "/var/lib/stopgate/journal");
    assert_string_equal(c->shm_name, "sg-test");
    assert_string_equal(c->currency, "EUR");
    assert_int_equal(c->stop_ttl_s, 3600);
    assert_int_equal(c->freeze_ttl_s, 7200);
    assert_int_equal(c->bank_deadline_ms, 250);
    assert_true(c->allow_anonymous_check);
    assert_int_equal(c->max_clients, 500);
    assert_int_equal(c->segment_bytes, 1048576);
    assert_int_equal(c->max_orders, 1024);
    assert_false(c->prefault);
    assert_int_equal(c->idle_timeout_s, 30);
    assert_int_equal(c->auth_timeout_s, 0);
    assert_int_equal(c->max_clients_per_address, 7);
    assert_int_equal(c->recv_buffers, 64);
    assert_int_equal(c->spin_us, 75);
    assert_int_equal(c->auth_fail_limit, 0);
    assert_int_equal(c->auth_fail_window_s, 9);
    assert_string_equal(c->log_file, "/tmp/stopgate.log");
    assert_string_equal(c->plugin_dir, "/opt/stopgate/plugins");
    assert_int_equal(c->cascade_max_depth, 2);
    assert_int_equal(c->cascade_min_amount, 1000);

    assert_int_equal(c->nagents, 5);
    const cfg_agent *a = config_agent(c, "alice", 5);
    assert_non_null(a);
    assert_int_equal(a->role, ROLE_AGENT);
    assert_int_equal(strncmp(a->secret_hash, "sg1$argon2id$2$67108864$", 24), 0);
    assert_int_equal(config_agent(c, "bob", 3)->role, ROLE_SUPERVISOR);
    assert_int_equal(config_agent(c, "ops1", 4)->role, ROLE_OPS);
    assert_int_equal(config_agent(c, "pay", 3)->role, ROLE_SCREEN);
    assert_int_equal(config_agent(c, "bank1", 5)->role, ROLE_BANK);
    assert_null(config_agent(c, "ali", 3)); /* whole-name match only */
    assert_null(config_agent(c, "carol", 5));

    assert_int_equal(c->nlists, 2);
    assert_string_equal(c->lists[0].name, "mule");
    assert_true(c->lists[0].auto_stop);
    assert_string_equal(c->lists[1].name, "protected");
    assert_false(c->lists[1].auto_stop);

    assert_int_equal(c->nroutes, 3);
    assert_true(c->routes[0].is_default);
    assert_string_equal(c->routes[0].plugin, "sim");
    assert_false(c->routes[1].is_default);
    assert_false(c->routes[1].prefix);
    assert_string_equal(c->routes[1].pattern, "ICBK"); /* bank codes are normalised */
    assert_string_equal(c->routes[1].plugin, "redis_streams");
    assert_true(c->routes[2].prefix);
    assert_string_equal(c->routes[2].pattern, "62");

    const cfg_plugin *p = plugin("sim");
    assert_non_null(p);
    assert_string_equal(p->type, "sim");
    assert_string_equal(kv(p, "latency_us"), "200");
    assert_string_equal(kv(p, "balance"), "1000000");
    p = plugin("redis_streams");
    assert_non_null(p);
    assert_string_equal(kv(p, "host"), "127.0.0.1");
    assert_string_equal(kv(p, "port"), "6379");
    p = plugin("sim2");
    assert_non_null(p);
    assert_string_equal(p->type, "sim");
    assert_null(kv(p, "type")); /* type is the gateway's, not handed to the plugin */
    assert_string_equal(kv(p, "latency_us"), "0");

    assert_true(c->dpdk_enabled);
    assert_string_equal(c->dpdk_eal, "--no-huge -m 512 --no-pci --vdev=net_tap0,iface=sgtap0");
    assert_string_equal(c->dpdk_ip, "192.168.77.2");
    assert_int_equal(c->dpdk_port, 7390);

    char err[512] = "";
    assert_int_equal(config_finish(c, err, sizeof err), 0);
    assert_int_equal(c->nroutes, 3); /* there is a default: nothing added */
}

/* Keys of a plugin section keep their line numbers so the plugin can say "file:line". */
static void test_plugin_kv_lines(void **state) {
    (void)state;
    load_ok("[plugin sim]\n; c\nlatency_us = 5\n\nbalance = 7\n");
    const cfg_plugin *p = plugin("sim");
    assert_non_null(p);
    assert_int_equal(p->nkv, 2);
    assert_string_equal(p->kv[0].key, "latency_us");
    assert_int_equal(p->kv[0].line, 3);
    assert_string_equal(p->kv[1].key, "balance");
    assert_int_equal(p->kv[1].line, 5);
}

static void test_shipped_config(void **state) {
    (void)state;
    char err[1024] = "";
    config_defaults(g_c);
    if (config_load(g_c, SG_SOURCE_ROOT "/config/stopgate.conf", err, sizeof err) != 0)
        fail_msg("config/stopgate.conf refused: %s", err);
    if (config_finish(g_c, err, sizeof err) != 0) fail_msg("config/stopgate.conf: %s", err);
    /* It documents the defaults, so loading it changes nothing of them. */
    assert_int_equal(g_c->listen.port, 7379);
    assert_int_equal(g_c->udp.port, 7380);
    assert_int_equal(g_c->metrics.port, 9379);
    assert_string_equal(g_c->journal_dir, "./var/journal");
    assert_int_equal(g_c->segment_bytes, 67108864);
    assert_int_equal(g_c->stop_ttl_s, 172800);
    assert_int_equal(g_c->freeze_ttl_s, 15552000);
    assert_int_equal(g_c->max_orders, 1048576);
    assert_true(g_c->prefault);
    assert_string_equal(g_c->log_file, "");
    assert_int_equal(g_c->nagents, 4);
    assert_int_equal(config_agent(g_c, "bob", 3)->role, ROLE_SUPERVISOR);
    assert_int_equal(config_agent(g_c, "payswitch", 9)->role, ROLE_SCREEN);
    assert_int_equal(g_c->nlists, 3);
    const cfg_plugin *p = plugin("sim");
    assert_non_null(p);
    assert_string_equal(kv(p, "latency_us"), "200");
}

typedef struct bad_case {
    const char *text;
    int line;
    const char *says;
} bad_case;

static const bad_case k_bad[] = {
    {"[gateway]\nlisten = 127.0.0.1:7379\nbogus = 1\n", 3, "bogus"},
    {"; comment\n\n[gateway]\nstop_ttl = 0\n", 4, "stop_ttl"},
    {"[gateway]\nstop_ttl = 316224001\n", 2, "stop_ttl"}, /* TTL_S_MAX + 1 */
    {"[gateway]\nfreeze_ttl = 1d\n", 2, "freeze_ttl"},
    {"[gateway]\nsegment_bytes = 1000\n", 2, "segment_bytes"},
    {"[gateway]\nallow_anonymous_check = maybe\n", 2, "allow_anonymous_check"},
    {"[gateway]\nlisten = off\n", 2, "listen"},
    {"[gateway]\nudp = 127.0.0.1\n", 2, "udp"},
    {"[gateway]\nmetrics = 127.0.0.1:99999\n", 2, "metrics"},
    {"[gateway]\ncurrency = EURO\n", 2, "currency"},
    {"[gateway]\nshm_name = a/b\n", 2, "shm_name"},
    {"[gateway]\nmax_clients = 100001\n", 2, "max_clients"},
    {"[gateway]\nmax_orders = 1023\n", 2, "max_orders"},
    {"[gateway]\nmax_orders = 67108865\n", 2, "max_orders"},
    {"[gateway]\nprefault = maybe\n", 2, "prefault"},
    {"[gateway]\nidle_timeout = -1\n", 2, "idle_timeout"},
    {"[gateway]\nauth_timeout = 3601\n", 2, "auth_timeout"},
    {"[gateway]\nmax_clients_per_address = -1\n", 2, "max_clients_per_address"},
    {"[gateway]\nauth_fail_limit = x\n", 2, "auth_fail_limit"},
    {"[gateway]\nauth_fail_window = 0\n", 2, "auth_fail_window"},
    {"[gateway]\nbank_deadline_ms = abc\n", 2, "bank_deadline_ms"},
    {"[gateway]\njournal_dir =\n", 2, "journal_dir"},
    {"[cascade]\nmax_depth = 65\n", 2, "max_depth"},
    {"[cascade]\nmin_amount = -1\n", 2, "min_amount"},
    {"[cascade]\nfoo = 1\n", 2, "foo"},
    {"[agent alice]\nrole = admin\n", 2, "role"},
    {"[agent alice]\nrole = agent\nsecret_hash = plaintext\n", 3, "secret_hash"},
    {"[agent alice]\npassword = x\n", 2, "password"},
    {"[agent a b]\nrole = agent\n", 2, "agent name"},
    {"[list mule]\nauto_stop = sometimes\n", 2, "auto_stop"},
    {"[list mule]\nscore = 5\n", 2, "score"},
    {"[route BAD_BANK]\nplugin = sim\n", 2, "BAD_BANK"},
    {"[route default]\nplugin = sim\nfoo = bar\n", 3, "foo"},
    {"[route default]\nplugin = a b\n", 2, "plugin"},
    {"[plugin sim]\ntype = ../evil\n", 2, "type"},
    {"[dpdk]\nport = 0\n", 2, "port"},
    {"[dpdk]\nenabled = perhaps\n", 2, "enabled"},
    {"[nonsense]\nkey = 1\n", 2, "nonsense"},
    {"key = 1\n", 1, "section"},
    {"[gateway]\nlisten = 127.0.0.1:7379\nthis line has no equals sign\n", 3, ""},
    {"[gateway]\r\nlisten = 127.0.0.1:7379\r\nstop_ttl = x\r\n", 3, "stop_ttl"},
    {"[gateway]\nstop_ttl = 0", 2, "stop_ttl"}, /* last line without a newline */
    {"[gateway]\nlisten = 127.0.0.1:7379\n[cascade]\nmax_depth = 5\n\n\n; x\n[gateway]\nstop_ttl = "
     "-5\n",
     9, "stop_ttl"},
    /* Issue 15 item 12: a key set twice in one section, even across repeats of the section. */
    {"[gateway]\nstop_ttl = 10\nstop_ttl = 20\n", 3, "duplicate key 'stop_ttl' (first set at line 2)"},
    {"[agent a]\nrole = ops\n[gateway]\nstop_ttl = 1\n[agent a]\nrole = agent\n", 6, "duplicate key 'role'"},
    {"[plugin sim]\nbalance = 1\nlatency_us = 5\nbalance = 2\n", 4, "duplicate key 'balance'"},
    {"[cascade]\nmax_depth = 1\n; comment\n\nmax_depth = 1\n", 5, "duplicate key 'max_depth'"},
    {"[gateway]\nshm_group = sg-no-such-group-xyz\n", 2, "shm_group"},
    {"[gateway]\nshm_group = -3\n", 2, "shm_group"},
    {"[gateway]\nrecv_buffers = 100\n", 2, "recv_buffers must be 0 or a power of two"},
    {"[gateway]\nrecv_buffers = 65536\n", 2, "recv_buffers"},
    {"[gateway]\nspin_us = 1001\n", 2, "spin_us"}, /* SPIN_US_MAX + 1 */
    {"[gateway]\nspin_us = -1\n", 2, "spin_us"},
    /* [cluster] (SPEC §10) */
    {"[cluster]\netcd = 127.0.0.1:2379\n", 2, "etcd"},
    {"[cluster]\netcd = http://a:1,,http://b:2\n", 2, "etcd"},
    {"[cluster]\netcd = http://a:1,http://b:2,\n", 2, "etcd"},
    {"[cluster]\netcd = http://1:1,http://2:1,http://3:1,http://4:1,http://5:1,http://6:1,http://7:1,"
     "http://8:1,http://9:1,http://10:1\n", 2, "at most 9"},
    {"[cluster]\nname = gw/a\n", 2, "name"},
    {"[cluster]\nprefix = stopgate\n", 2, "prefix"},
    {"[cluster]\nprefix = /stopgate/\n", 2, "prefix"},
    {"[cluster]\nadvertise = off\n", 2, "advertise"},
    {"[cluster]\nadvertise = 127.0.0.1\n", 2, "advertise"},
    {"[cluster]\ncandidate = maybe\n", 2, "candidate"},
    {"[cluster]\nlease_ms = 999\n", 2, "lease_ms: '999' (integer 1000..60000)"},
    {"[cluster]\nlease_ms = 60001\n", 2, "lease_ms"},
    {"[cluster]\ncommit_timeout_ms = 100\n", 2, "commit_timeout_ms"},
    {"[cluster]\nlog_retention_ms = 999\n", 2, "log_retention_ms: '999' (integer 1000..86400000)"},
    {"[cluster]\nlog_retention_ms = 86400001\n", 2, "log_retention_ms"},
    {"[cluster]\nleader = yes\n", 2, "unknown key 'leader' in [cluster]"},
};

static void test_bad_lines(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        char err[1024], want[512];
        int rc = load(k_bad[i].text, err, sizeof err);
        if (rc != -1) fail_msg("case %zu accepted:\n%s", i, k_bad[i].text);
        snprintf(want, sizeof want, "%s:%d: ", g_path, k_bad[i].line);
        if (strncmp(err, want, strlen(want)) != 0)
            fail_msg("case %zu: got '%s', want prefix '%s'", i, err, want);
        if (!strstr(err + strlen(want), k_bad[i].says))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, k_bad[i].says);
        assert_true(strlen(err) > strlen(want)); /* there is a reason */
    }
}

/* With two bad lines, the error names the first line and gives that line's reason. */
static void test_first_error_reported(void **state) {
    (void)state;
    char err[1024];
    assert_int_equal(load("[gateway]\nstop_ttl = 0\nbogus = 1\n", err, sizeof err), -1);
    char want[512];
    snprintf(want, sizeof want, "%s:2: ", g_path);
    if (strncmp(err, want, strlen(want)) != 0) fail_msg("got '%s', want prefix '%s'", err, want);
    if (!strstr(err, "stop_ttl") || strstr(err, "bogus"))
        fail_msg("line 2 reported with another line's reason: '%s'", err);
}

static void test_missing_file(void **state) {
    (void)state;
    char err[1024] = "", path[256];
    snprintf(path, sizeof path, "%s/nope.conf", g_dir);
    config_defaults(g_c);
    assert_int_equal(config_load(g_c, path, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "No such file"));
}

static void test_agent_without_secret(void **state) {
    (void)state;
    load_ok("[gateway]\nlisten = 127.0.0.1:7379\n\n[agent carol]\nrole = supervisor\n");
    char err[512] = "", want[512];
    assert_int_equal(config_finish(g_c, err, sizeof err), -1);
    /* the section's line (4) or its first key's (5) */
    char want5[512];
    snprintf(want, sizeof want, "%s:4: ", g_path);
    snprintf(want5, sizeof want5, "%s:5: ", g_path);
    if (strncmp(err, want, strlen(want)) != 0 && strncmp(err, want5, strlen(want5)) != 0)
        fail_msg("got '%s', want prefix '%s' or '%s'", err, want, want5);
    assert_non_null(strstr(err, "carol"));
}

/* config/stopgate.conf: "An agent section without secret_hash is refused." - also one with
 * no keys at all. Otherwise a config whose only agent lost its lines runs with no agents,
 * i.e. with the all-powerful development agent. */
static void test_empty_agent_section_refused(void **state) {
    (void)state;
    char err[512] = "";
    int rc = load("[gateway]\nlisten = 127.0.0.1:7379\n[agent bob]\n", err, sizeof err);
    if (rc == 0) rc = config_finish(g_c, err, sizeof err);
    if (rc == 0) fail_msg("[agent bob] without secret_hash accepted (nagents=%u)", g_c->nagents);
    assert_non_null(strstr(err, "bob"));
}

/* A list is declared by its section (SPEC §2a); auto_stop has a default, so a section
 * without keys still declares the list. */
static void test_empty_list_section_declared(void **state) {
    (void)state;
    load_ok("[list suspect]\n\n[list mule]\nauto_stop = yes\n");
    assert_int_equal(g_c->nlists, 2);
}

/* SPEC §2a: an unknown section is refused at start - even an empty one (a typo'd
 * "[agnet bob]" must not pass silently). */
static void test_empty_unknown_section_refused(void **state) {
    (void)state;
    char err[512];
    assert_int_equal(load("[gateway]\nlisten = 127.0.0.1:7379\n[agnet bob]\n", err, sizeof err),
                     -1);
    assert_non_null(strstr(err, ":3: "));
}

/* Values longer than libinih's default 200-byte line buffer (paths may be up to 4095). */
static void test_long_value(void **state) {
    (void)state;
    char dir[400], text[600];
    memset(dir, 0, sizeof dir);
    strcpy(dir, "/srv");
    while (strlen(dir) < 300) strcat(dir, "/stopgate-journal");
    snprintf(text, sizeof text, "[gateway]\njournal_dir = %s\nstop_ttl = 60\n", dir);
    char err[1024];
    int rc = load(text, err, sizeof err);
    if (rc != 0) fail_msg("refused a %zu-byte journal_dir: %s", strlen(dir), err);
    assert_string_equal(g_c->journal_dir, dir);
    assert_int_equal(g_c->stop_ttl_s, 60);
}

static void test_routes_name_plugins(void **state) {
    (void)state;
    load_ok("[route ICBK]\nplugin = redis_streams\n[route 9*]\nplugin = bankx\n");
    char err[512] = "";
    assert_int_equal(config_finish(g_c, err, sizeof err), 0);
    /* routes but no default: none added (such a bank gets ERR UNKNOWNBANK) */
    assert_int_equal(g_c->nroutes, 2);
    for (uint32_t i = 0; i < g_c->nroutes; i++) assert_false(g_c->routes[i].is_default);
    /* a plugin instance for every route, of the type its name says */
    const cfg_plugin *p = plugin("redis_streams");
    assert_non_null(p);
    assert_string_equal(p->type, "redis_streams");
    p = plugin("bankx");
    assert_non_null(p);
    assert_string_equal(p->type, "bankx");
    assert_int_equal(p->line, 4);
}

static void test_parse_addr(void **state) {
    (void)state;
    cfg_addr a;
    memset(&a, 0, sizeof a);
    assert_int_equal(config_parse_addr("10.1.2.3:80", &a), 0);
    assert_true(a.enabled);
    assert_string_equal(a.host, "10.1.2.3");
    assert_int_equal(a.port, 80);
    assert_int_equal(config_parse_addr("localhost:65535", &a), 0);
    assert_int_equal(a.port, 65535);
    assert_int_equal(config_parse_addr("OFF", &a), 0);
    assert_false(a.enabled);
    assert_int_equal(config_parse_addr("no", &a), 0);
    assert_false(a.enabled);
    assert_int_equal(config_parse_addr("10.1.2.3", &a), -1);
    assert_int_equal(config_parse_addr(":80", &a), -1);
    assert_int_equal(config_parse_addr("h:", &a), -1);
    assert_int_equal(config_parse_addr("h:65536", &a), -1);
    assert_int_equal(config_parse_addr("h:-1", &a), -1);
    assert_int_equal(config_parse_addr("h:80x", &a), -1);
    char longhost[200];
    memset(longhost, 'h', 100);
    strcpy(longhost + 100, ":80");
    assert_int_equal(config_parse_addr(longhost, &a), -1);
}

/* SPEC §4.2 roles, bit by bit over the documented permissions (other bits, e.g. for
 * session commands every agent may use, are not this test's business). */
static void test_roles(void **state) {
    (void)state;
    static const unsigned perms[] = {PERM_ORDER,   PERM_STATUS, PERM_CHECK,
                                     PERM_CONFIRM, PERM_LIST,   PERM_INFO};
    static const struct {
        role r;
        bool has[6]; /* ORDER STATUS CHECK CONFIRM LIST INFO */
    } want[] = {
        {ROLE_AGENT, {true, true, true, false, false, true}},
        {ROLE_SUPERVISOR, {true, true, true, true, false, true}},
        {ROLE_OPS, {false, true, true, false, true, true}},
        {ROLE_SCREEN, {false, false, true, false, false, false}},
        {ROLE_BANK, {false, false, false, false, false, false}},
        {ROLE_DEV, {true, true, true, true, true, true}},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        unsigned p = role_perms(want[i].r);
        for (size_t k = 0; k < 6; k++)
            if (((p & perms[k]) != 0) != want[i].has[k])
                fail_msg("role %s: permission bit %#x is %s", role_name(want[i].r), perms[k],
                         want[i].has[k] ? "missing" : "granted");
    }
    assert_int_equal(role_perms(ROLE_BANK), 0); /* "bank: none over TCP" */
    assert_string_equal(role_name(ROLE_AGENT), "agent");
    assert_string_equal(role_name(ROLE_SUPERVISOR), "supervisor");
    assert_string_equal(role_name(ROLE_OPS), "ops");
    assert_string_equal(role_name(ROLE_SCREEN), "screen");
    assert_string_equal(role_name(ROLE_BANK), "bank");
    assert_string_equal(role_name(ROLE_DEV), "dev");
    assert_string_equal(role_name((role)99), "?");
}

/* A later load overlays an earlier one (defaults, then the file). */
static void test_overlay_and_repeat_sections(void **state) {
    (void)state;
    load_ok(
        "[gateway]\nstop_ttl = 10\n[agent a]\nrole = ops\n[gateway]\nfreeze_ttl = 20\n[agent a]\n"
        "secret_hash = sg1$q\n");
    assert_int_equal(g_c->stop_ttl_s, 10);
    assert_int_equal(g_c->freeze_ttl_s, 20);
    assert_int_equal(g_c->nagents, 1); /* the same agent, continued */
    assert_int_equal(g_c->agents[0].role, ROLE_OPS);
    assert_string_equal(g_c->agents[0].secret_hash, "sg1$q");
    assert_int_equal(g_c->bank_deadline_ms, 5000); /* untouched keys keep their defaults */
}

/* The same key in two different sections, or in sections of the same kind, is no duplicate;
 * nor is the continuation line of a multi-line value. */
static void test_same_key_elsewhere_ok(void **state) {
    (void)state;
    load_ok("[agent a]\nrole = ops\nsecret_hash = sg1$a\n[agent b]\nrole = ops\nsecret_hash = sg1$b\n"
            "[plugin sim]\nbalance = 5\n[plugin sim2]\ntype = sim\nbalance = 6\n");
    assert_int_equal(g_c->nagents, 2);
    load_ok("[dpdk]\neal = -l 1\n  --no-pci\nport = 7000\n");
    assert_int_equal(g_c->dpdk_port, 7000);
}

/* [gateway] shm_group: a group name or number, resolved when the file is read (issue 15
 * item 4); unset means the gateway's primary group. */
static void test_shm_group(void **state) {
    (void)state;
    load_ok("[gateway]\nlisten = 127.0.0.1:1\n");
    assert_int_equal(g_c->shm_gid, -1);
    assert_string_equal(g_c->shm_group, "");
    load_ok("[gateway]\nshm_group = root\n");
    assert_int_equal(g_c->shm_gid, 0);
    assert_string_equal(g_c->shm_group, "root");
    load_ok("[gateway]\nshm_group = 12345\n");
    assert_int_equal(g_c->shm_gid, 12345);
}

/* [cluster] (SPEC §10): off by default; every key read; a member needs a name and an address
 * to be sent to, refused with the line of `etcd` when missing. */
static void test_cluster(void **state) {
    (void)state;
    char err[1024];
    load_ok("[gateway]\nlisten = 127.0.0.1:1\n");
    assert_string_equal(g_c->cluster_etcd, "");
    assert_string_equal(g_c->cluster_prefix, "/stopgate");
    assert_true(g_c->cluster_candidate);
    assert_int_equal(g_c->cluster_lease_ms, CLUSTER_LEASE_MS_DEFAULT);
    assert_int_equal(g_c->cluster_commit_timeout_ms, CLUSTER_COMMIT_TIMEOUT_MS_DEFAULT);
    assert_int_equal(g_c->cluster_log_retention_ms, CLUSTER_LOG_RETENTION_MS_DEFAULT);
    assert_int_equal(config_finish(g_c, err, sizeof err), 0);
    load_ok("[cluster]\n"); /* an empty section: still a single node */
    assert_int_equal(config_finish(g_c, err, sizeof err), 0);
    load_ok("[cluster]\netcd = http://127.0.0.1:2379,https://h:22379\nname = gw-a\nprefix = /stopgate/prod\n"
            "advertise = 10.0.0.1:7379\ncandidate = no\nlease_ms = 3000\ncommit_timeout_ms = 2500\n"
            "log_retention_ms = 5000\n");
    assert_string_equal(g_c->cluster_etcd, "http://127.0.0.1:2379,https://h:22379");
    assert_string_equal(g_c->cluster_name, "gw-a");
    assert_string_equal(g_c->cluster_prefix, "/stopgate/prod");
    assert_true(g_c->cluster_advertise.enabled);
    assert_string_equal(g_c->cluster_advertise.host, "10.0.0.1");
    assert_int_equal(g_c->cluster_advertise.port, 7379);
    assert_false(g_c->cluster_candidate);
    assert_int_equal(g_c->cluster_lease_ms, 3000);
    assert_int_equal(g_c->cluster_commit_timeout_ms, 2500);
    assert_int_equal(g_c->cluster_log_retention_ms, 5000);
    assert_int_equal(config_finish(g_c, err, sizeof err), 0);
    /* etcd without a name or an address to advertise: refused at the etcd line. */
    load_ok("[gateway]\nlisten = 127.0.0.1:1\n[cluster]\netcd = http://127.0.0.1:2379\nadvertise = 1.2.3.4:5\n");
    assert_int_equal(config_finish(g_c, err, sizeof err), -1);
    char want[512];
    snprintf(want, sizeof want, "%s:4: [cluster] etcd is set, so [cluster] name must be too", g_path);
    assert_string_equal(err, want);
    load_ok("[cluster]\nname = a\netcd = http://127.0.0.1:2379\n");
    assert_int_equal(config_finish(g_c, err, sizeof err), -1);
    assert_non_null(strstr(err, ":3: [cluster] etcd is set, so [cluster] advertise must be too"));
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_defaults_finish),
        T(test_every_key),
        T(test_plugin_kv_lines),
        T(test_shipped_config),
        T(test_bad_lines),
        T(test_first_error_reported),
        T(test_missing_file),
        T(test_agent_without_secret),
        T(test_empty_agent_section_refused),
        T(test_empty_list_section_declared),
        T(test_empty_unknown_section_refused),
        T(test_long_value),
        T(test_routes_name_plugins),
        T(test_parse_addr),
        T(test_roles),
        T(test_overlay_and_repeat_sections),
        T(test_same_key_elsewhere_ok),
        T(test_shm_group),
        T(test_cluster),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
