/*
 * stopctl: the agents' and operators' CLI (SPEC §2). Global options, then a command with its
 * own options and its own --help, all read with getopt_long (--opt value and --opt=value).
 * The command table below is the whole surface: each entry names its RESP verb, its options
 * and its positional arguments, so adding a command is one entry (and a line in
 * docs/man/stopctl.1 and ops/stopctl.bash-completion).
 *
 * The connection is ctl_conn.h (TCP or TLS, hiredis's reader), what is printed ctl_out.h
 * (one JSON object per answer with --json, "key value" lines with ISO 8601 times without),
 * the offline journal commands ctl_journal.h. Exit codes: 0 ok, 1 refused by the gateway (or
 * a bad journal), 2 usage, 3 cannot connect.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <linux/limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "ctl_conn.h"
#include "ctl_journal.h"
#include "ctl_out.h"
#include "sg_version.h"
#include "tlsclient.h"

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_CONNECT = 3 };

#define CTL_FLAGS_MAX 12 /* options of one command */
#define CTL_POS_MAX 3    /* positional arguments of one command */
#define CTL_ARGV_MAX (2 + CTL_POS_MAX + 2 * CTL_FLAGS_MAX + 2)

typedef struct opts {
    const char *host;
    int port;
    const char *agent;
    bool json;
    tlsc_opts tls;
} opts;

/* One --flag VALUE of a command, sent as RESP "NAME VALUE" (name NULL: sent bare, in place). */
typedef struct flag {
    const char *flag, *name;
    bool required;
    const char *help;
} flag;

typedef struct subcmd subcmd;
/* What a command does once its arguments are read: pos[0..npos), val[k] for flags[k]. */
typedef int (*run_fn)(const opts *o, const subcmd *sc, const char **pos, int npos, const char **val);

struct subcmd {
    const char *name;       /* "status", or "list add" */
    const char *verb;       /* the RESP command (NULL: offline) */
    const char *args;       /* positional arguments, for the synopsis */
    int pos_min, pos_max;
    flag flags[CTL_FLAGS_MAX];
    const char *const *pair_keys; /* reply keys holding a flat map (ctl_out.h) */
    run_fn run;
    const char *help;
};

static int run_simple(const opts *o, const subcmd *sc, const char **pos, int npos, const char **val);
static int run_info(const opts *o, const subcmd *sc, const char **pos, int npos, const char **val);
static int run_list_load(const opts *o, const subcmd *sc, const char **pos, int npos, const char **val);
static int run_journal(const opts *o, const subcmd *sc, const char **pos, int npos, const char **val);
static int run_hash_secret(const opts *o, const subcmd *sc, const char **pos, int npos, const char **val);

#define F_ORDER_COMMON                                                                                        \
    {"request-id", NULL, true, "idempotency key: the same ID again answers DUPLICATE"},                      \
        {"bank", "BANK", true, "bank code"}, {"account", "ACCOUNT", true, "account at that bank"},          \
        {"case", "CASE", true, "the fraud case"}, {"amount", "AMOUNT", false, "amount in minor units"},     \
        {"currency", "CURRENCY", false, "ISO 4217 code (CNY)"}, {"ttl", "TTL", false, "seconds it holds"},  \
        {"reason", "REASON", false, "reason code"}, {"note", "NOTE", false, "free text for the bank"}

static const char *const list_info_pairs[] = {"lists", NULL};

static const subcmd SUBCMDS[] = {
    {"stop", "STOP", "", 0, 0, {F_ORDER_COMMON}, NULL, run_simple,
     "Order a stop-payment on an account (agent). Prints the order id and status."},
    {"freeze", "FREEZE", "", 0, 0, {F_ORDER_COMMON, {"doc", "DOC", true, "the legal document's reference"}}, NULL,
     run_simple, "Order a judicial freeze (supervisor); --doc is required."},
    {"release", "RELEASE", "ORDER_ID", 1, 1,
     {{"request-id", NULL, true, "idempotency key"}, {"reason", "REASON", false, "reason code"},
      {"doc", "DOC", false, "legal reference (releasing a FREEZE: supervisor)"}},
     NULL, run_simple, "Release a STOP or FREEZE."},
    {"extend", "EXTEND", "ORDER_ID", 1, 1,
     {{"request-id", NULL, true, "idempotency key"}, {"ttl", "TTL", true, "new time to live, seconds"}}, NULL,
     run_simple, "Extend an order's time to live."},
    {"confirm", "CONFIRM", "ORDER_ID", 1, 1, {{0}}, NULL, run_simple,
     "Confirm an order that is HELD for a supervisor (supervisor)."},
    {"status", "STATUS", "ORDER_ID", 1, 1, {{0}}, NULL, run_simple, "Show one order."},
    {"case", "CASE", "CASE", 1, 1, {{0}}, NULL, run_simple, "Show every order of a case and its money trail."},
    {"check", "CHECK", "BANK ACCOUNT", 2, 2, {{0}}, NULL, run_simple,
     "Screen an account: CLEAR, LISTED or FROZEN, with its lists."},
    {"info", "INFO", "[SECTION]", 0, 1, {{0}}, NULL, run_info,
     "The gateway's INFO; with --json an object of sections ({\"server\": {...}, ...})."},
    {"role", "ROLE", "", 0, 0, {{0}}, NULL, run_simple,
     "This member's place in the cluster: role, leader, epoch, applied lsn (SPEC §10)."},
    {"list add", "LIST.ADD", "LIST BANK ACCOUNT", 3, 3,
     {{"score", "SCORE", false, "score 0-100"}, {"ttl", "TTL", false, "seconds on the list"},
      {"case", "CASE", false, "the case it comes from"}},
     NULL, run_simple, "Put an account on a fraud list (ops)."},
    {"list del", "LIST.DEL", "LIST BANK ACCOUNT", 3, 3, {{0}}, NULL, run_simple,
     "Take an account off a fraud list (ops)."},
    {"list load", "LIST.LOAD", "LIST FILE.csv|-", 2, 2, {{0}}, NULL, run_list_load,
     "Load a CSV (bank,account[,score]) into a list; - reads it from stdin (ops)."},
    {"list info", "LIST.INFO", "[LIST]", 0, 1, {{0}}, list_info_pairs, run_simple,
     "The list table, or one list; lists as an object {\"name\": entries}."},
    {"journal verify", NULL, "DIR", 1, 1, {{0}}, NULL, run_journal,
     "Check a journal directory offline (the gateway's own scanner); --json: one object."},
    {"journal dump", NULL, "DIR", 1, 1, {{0}}, NULL, run_journal,
     "Print a journal directory's batches and records, one JSON object per line."},
    {"hash-secret", NULL, "SECRET", 1, 1, {{0}}, NULL, run_hash_secret,
     "Print the Argon2id hash of SECRET for an [agents] line."},
};
#define NSUBCMDS (sizeof SUBCMDS / sizeof SUBCMDS[0])

/* ---- help and usage -------------------------------------------------------------------- */

static size_t nflags(const subcmd *sc) {
    size_t n = 0;
    while (n < CTL_FLAGS_MAX && sc->flags[n].flag) n++;
    return n;
}

/* --request-id=REQUEST_ID: the value's placeholder is the option's name in capitals. */
static void put_flag(FILE *f, const flag *fl) {
    fprintf(f, " %s--%s=", fl->required ? "" : "[", fl->flag);
    for (const char *p = fl->flag; *p; p++) fputc(*p == '-' ? '_' : toupper((unsigned char)*p), f);
    if (!fl->required) fputc(']', f);
}

static void synopsis(FILE *f, const subcmd *sc) {
    fprintf(f, "stopctl [GLOBAL OPTIONS] %s", sc->name);
    for (size_t k = 0; k < nflags(sc); k++) put_flag(f, &sc->flags[k]);
    fprintf(f, "%s%s\n", sc->args[0] ? " " : "", sc->args);
}

static void sub_help(FILE *f, const subcmd *sc) {
    fprintf(f, "usage: ");
    synopsis(f, sc);
    fprintf(f, "%s\n", sc->help);
    for (size_t k = 0; k < nflags(sc); k++)
        fprintf(f, "  --%-12s %s%s\n", sc->flags[k].flag, sc->flags[k].help, sc->flags[k].required ? " (required)" : "");
    fprintf(f, "  --json         print the answer as one JSON object\n  --help         this text\n");
}

static void global_help(FILE *f) {
    fprintf(f, "usage: stopctl [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]\n"
               "global options:\n"
               "  -h, --host=HOST   gateway address (127.0.0.1)\n"
               "  -p, --port=PORT   gateway RESP port (7379)\n"
               "  --agent=NAME      AUTH as NAME; the secret comes from STOPGATE_SECRET, never argv\n"
               "  --json            one JSON object per answer\n"
               "  --tls [--cacert=FILE] [--cert=FILE --key=FILE] [--sni=NAME]   RESP over TLS\n"
               "  --help, --version\n"
               "commands (stopctl COMMAND --help for each):\n");
    for (size_t i = 0; i < NSUBCMDS; i++) fprintf(f, "  %-15s %s\n", SUBCMDS[i].name, SUBCMDS[i].help);
    fprintf(f, "exit status: 0 ok, 1 refused (or a bad journal), 2 usage, 3 cannot connect\n");
}

/* A usage error naming the offending word; returns EXIT_USAGE. */
static int usage_err(const subcmd *sc, const char *what, const char *word) {
    if (sc) {
        fprintf(stderr, "stopctl %s: %s '%s'\nusage: ", sc->name, what, word);
        synopsis(stderr, sc);
        fprintf(stderr, "(stopctl %s --help for more)\n", sc->name);
    } else {
        fprintf(stderr, "stopctl: %s '%s'\nusage: stopctl [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS] "
                        "(stopctl --help for more)\n", what, word);
    }
    return EXIT_USAGE;
}

/* The option a bad argv word names, without an "=value" it carries. */
static const char *opt_word(char *out, size_t cap, const char *arg) {
    const char *eq = strncmp(arg, "--", 2) ? NULL : strchr(arg, '=');
    snprintf(out, cap, "%.*s", eq ? (int)(eq - arg) : (int)strlen(arg), arg);
    return out;
}

/* ---- talking to the gateway ------------------------------------------------------------ */

static ctl_conn *connect_gw(const opts *o, int *rc) {
    char err[512];
    ctl_conn *c = ctl_conn_open(o->host, o->port, &o->tls, err, sizeof err);
    if (!c) {
        fprintf(stderr, "stopctl: cannot connect to %s:%d%s: %s\n", o->host, o->port, o->tls.on ? " (TLS)" : "", err);
        *rc = EXIT_CONNECT;
        return NULL;
    }
    if (!o->agent) return c;
    const char *secret = getenv("STOPGATE_SECRET");
    if (!secret || !*secret) {
        fprintf(stderr, "stopctl: --agent %s needs the secret in STOPGATE_SECRET\n", o->agent);
        ctl_conn_close(c);
        *rc = EXIT_USAGE;
        return NULL;
    }
    const char *av[3] = {"AUTH", o->agent, secret};
    redisReply *r = ctl_conn_command(c, 3, av);
    *rc = !r ? EXIT_CONNECT : r->type == REDIS_REPLY_ERROR ? EXIT_REFUSED : EXIT_OK;
    if (!r) fprintf(stderr, "stopctl: connection lost during AUTH: %s\n", ctl_conn_error(c));
    else if (r->type == REDIS_REPLY_ERROR) fprintf(stderr, "refused: %s\n", r->str);
    if (r) freeReplyObject(r);
    if (*rc == EXIT_OK) return c;
    ctl_conn_close(c);
    return NULL;
}

/* Print one reply: an error as {"error", "reason"} or "refused: ...", anything else through
 * shape(). Returns the exit code. */
static int print_reply(const opts *o, const redisReply *r, json_t *(*shape)(const redisReply *, const subcmd *),
                       const subcmd *sc) {
    if (r->type == REDIS_REPLY_ERROR) {
        if (o->json) {
            json_t *e = ctl_error_json(r->str, r->len);
            ctl_print_json(e);
            json_decref(e);
        } else {
            fprintf(stderr, "refused: %s\n", r->str);
        }
        return EXIT_REFUSED;
    }
    json_t *j = shape(r, sc);
    if (o->json) ctl_print_json(j);
    else if (json_is_object(j)) ctl_print_human(j, 0);
    else if (json_is_string(j)) printf("%s\n", json_string_value(j));
    else {
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
        printf("%s\n", s ? s : "");
        free(s);
    }
    json_decref(j);
    return EXIT_OK;
}

static json_t *shape_map(const redisReply *r, const subcmd *sc) { return ctl_reply_json(r, sc->pair_keys); }

/* Human INFO is the gateway's text as it is; --json the object of sections. */
static json_t *shape_info(const redisReply *r, const subcmd *sc) {
    (void)sc;
    if (r->type != REDIS_REPLY_STRING) return ctl_reply_json(r, NULL);
    return ctl_info_json(r->str, r->len);
}

/* The leader a -READONLY <name> <host:port> answer names (SPEC §10); false for any other reply. */
static bool redirect_target(const redisReply *r, char *host, size_t cap, int *port) {
    if (r->type != REDIS_REPLY_ERROR || strncmp(r->str, "READONLY ", 9) != 0) return false;
    const char *addr = strchr(r->str + 9, ' ');
    const char *colon = addr ? strrchr(addr + 1, ':') : NULL;
    if (!colon || colon == addr + 1 || (size_t)(colon - addr - 1) >= cap) return false;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p <= 0 || p > 65535) return false;
    snprintf(host, cap, "%.*s", (int)(colon - addr - 1), addr + 1);
    *port = (int)p;
    return true;
}

/* Send one command on a fresh connection and print its answer; an answer READONLY sends it
 * once more, to the leader it names (never further: two members naming each other cannot
 * loop). Returns an exit code. */
static int send_and_print(const opts *o, const subcmd *sc, int ac, const char **av,
                          json_t *(*shape)(const redisReply *, const subcmd *)) {
    int rc;
    ctl_conn *c = connect_gw(o, &rc);
    if (!c) return rc;
    redisReply *r = ctl_conn_command(c, ac, av);
    char host[256];
    int port;
    if (r && redirect_target(r, host, sizeof host, &port)) {
        fprintf(stderr, "stopctl: %s:%d %s; sending the command there\n", o->host, o->port, r->str);
        freeReplyObject(r);
        ctl_conn_close(c);
        opts to = *o;
        to.host = host;
        to.port = port;
        c = connect_gw(&to, &rc);
        if (!c) return rc;
        r = ctl_conn_command(c, ac, av);
    }
    if (!r) {
        fprintf(stderr, "stopctl: connection lost: %s\n", ctl_conn_error(c));
        rc = EXIT_CONNECT;
    } else {
        rc = print_reply(o, r, shape, sc);
        freeReplyObject(r);
    }
    ctl_conn_close(c);
    return rc;
}

/* VERB [bare flags] POS... NAME VALUE...: bare flags (name NULL, the request id) go first,
 * as the gateway's grammar has them right after the verb. */
static int build_argv(const subcmd *sc, const char **pos, int npos, const char **val, const char **av) {
    int ac = 0;
    av[ac++] = sc->verb;
    for (size_t k = 0; k < nflags(sc); k++)
        if (!sc->flags[k].name && val[k]) av[ac++] = val[k];
    for (int i = 0; i < npos; i++) av[ac++] = pos[i];
    for (size_t k = 0; k < nflags(sc); k++)
        if (sc->flags[k].name && val[k]) {
            av[ac++] = sc->flags[k].name;
            av[ac++] = val[k];
        }
    return ac;
}

static int run_simple(const opts *o, const subcmd *sc, const char **pos, int npos, const char **val) {
    const char *av[CTL_ARGV_MAX];
    int ac = build_argv(sc, pos, npos, val, av);
    return send_and_print(o, sc, ac, av, shape_map);
}

static int run_info(const opts *o, const subcmd *sc, const char **pos, int npos, const char **val) {
    const char *av[CTL_ARGV_MAX];
    int ac = build_argv(sc, pos, npos, val, av);
    if (!o->json) return send_and_print(o, sc, ac, av, shape_map);
    return send_and_print(o, sc, ac, av, shape_info);
}

/* All of stdin, NUL-terminated; NULL when out of memory. */
static char *read_stdin(void) {
    size_t len = 0, cap = 0;
    char *csv = NULL;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            char *n = realloc(csv, cap + 1);
            if (!n) {
                free(csv);
                return NULL;
            }
            csv = n;
        }
        size_t got = fread(csv + len, 1, cap - len, stdin);
        if (got == 0) break;
        len += got;
    }
    if (!csv) csv = calloc(1, 1);
    else csv[len] = 0;
    return csv;
}

/* The gateway opens the file itself (it may be millions of rows): give it a path that does
 * not depend on our working directory. '-' sends stdin inline instead. */
static int run_list_load(const opts *o, const subcmd *sc, const char **pos, int npos, const char **val) {
    (void)npos, (void)val;
    char abs_path[PATH_MAX];
    char *csv = NULL;
    const char *av[4] = {sc->verb, pos[0]};
    int ac = 2;
    if (!strcmp(pos[1], "-")) {
        csv = read_stdin();
        if (!csv) {
            fprintf(stderr, "stopctl: out of memory reading stdin\n");
            return EXIT_USAGE;
        }
        av[ac++] = "-";
        av[ac++] = csv;
    } else {
        if (!realpath(pos[1], abs_path)) {
            fprintf(stderr, "stopctl %s: '%s': %s\n", sc->name, pos[1], strerror(errno));
            return EXIT_USAGE;
        }
        av[ac++] = abs_path;
    }
    int rc = send_and_print(o, sc, ac, av, shape_map);
    free(csv);
    return rc;
}

static int run_journal(const opts *o, const subcmd *sc, const char **pos, int npos, const char **val) {
    (void)npos, (void)val;
    if (!strcmp(sc->name, "journal dump")) return ctl_journal_dump(pos[0]);
    return ctl_journal_verify(pos[0], o->json);
}

static int run_hash_secret(const opts *o, const subcmd *sc, const char **pos, int npos, const char **val) {
    (void)npos, (void)val;
    if (auth_init() != 0) return EXIT_REFUSED;
    char out[256];
    if (auth_hash_secret(pos[0], strlen(pos[0]), out, sizeof out) != 0) {
        fprintf(stderr, "stopctl %s: the secret must be 1-256 bytes\n", sc->name);
        return EXIT_USAGE;
    }
    if (o->json) {
        json_t *j = json_pack("{s:s}", "secret_hash", out);
        ctl_print_json(j);
        json_decref(j);
    } else {
        printf("%s\n", out);
    }
    return EXIT_OK;
}

/* ---- command lines --------------------------------------------------------------------- */

enum { OPT_HELP = 0x100, OPT_VERSION, OPT_JSON, OPT_AGENT, OPT_FLAG0 = 0x200 };

/* The command named by argv[0] (and argv[1] for "list ..." / "journal ..."); *words says
 * how many words it took. NULL if there is none. */
static const subcmd *find_subcmd(int argc, char **argv, int *words) {
    for (size_t i = 0; i < NSUBCMDS; i++) {
        const char *n = SUBCMDS[i].name, *sp = strchr(n, ' ');
        if (!sp && !strcmp(argv[0], n)) {
            *words = 1;
            return &SUBCMDS[i];
        }
        if (sp && argc > 1 && strlen(argv[0]) == (size_t)(sp - n) && !strncmp(argv[0], n, (size_t)(sp - n)) &&
            !strcmp(argv[1], sp + 1)) {
            *words = 2;
            return &SUBCMDS[i];
        }
    }
    return NULL;
}

/* "list" or "journal" alone (or with --help, or a wrong second word): the group's commands. */
static int group_usage(const char *group, int argc, char **argv) {
    bool help = argc > 1 && !strcmp(argv[1], "--help");
    FILE *f = help ? stdout : stderr;
    if (!help) {
        if (argc > 1) fprintf(stderr, "stopctl %s: unknown command '%s'\n", group, argv[1]);
        else fprintf(stderr, "stopctl %s: which one?\n", group);
    }
    fprintf(f, "usage:\n");
    size_t n = strlen(group);
    for (size_t i = 0; i < NSUBCMDS; i++)
        if (!strncmp(SUBCMDS[i].name, group, n) && SUBCMDS[i].name[n] == ' ') {
            fprintf(f, "  ");
            synopsis(f, &SUBCMDS[i]);
        }
    return help ? EXIT_OK : EXIT_USAGE;
}

/* Read a command's options and arguments (argv[0] is its last word) and run it. */
static int run_subcmd(opts *o, const subcmd *sc, int argc, char **argv) {
    struct option lo[CTL_FLAGS_MAX + 3];
    size_t nf = nflags(sc);
    for (size_t k = 0; k < nf; k++) lo[k] = (struct option){sc->flags[k].flag, required_argument, NULL, OPT_FLAG0 + (int)k};
    lo[nf] = (struct option){"json", no_argument, NULL, OPT_JSON};
    lo[nf + 1] = (struct option){"help", no_argument, NULL, OPT_HELP};
    lo[nf + 2] = (struct option){0};
    const char *val[CTL_FLAGS_MAX] = {0};
    char word[64];
    optind = 0; /* GNU: start afresh (the global options used the same state) */
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
        if (ch == OPT_HELP) {
            sub_help(stdout, sc);
            return EXIT_OK;
        } else if (ch == OPT_JSON) o->json = true;
        else if (ch >= OPT_FLAG0 && ch < OPT_FLAG0 + (int)nf) val[ch - OPT_FLAG0] = optarg;
        else if (ch == ':') return usage_err(sc, "missing value for", argv[optind - 1]);
        else return usage_err(sc, "unknown option", opt_word(word, sizeof word, argv[optind - 1]));
    }
    const char **pos = (const char **)(argv + optind);
    int npos = argc - optind;
    if (npos > sc->pos_max) return usage_err(sc, "unexpected argument", pos[sc->pos_max]);
    if (npos < sc->pos_min) return usage_err(sc, "missing arguments: expected", sc->args);
    for (size_t k = 0; k < nf; k++)
        if (sc->flags[k].required && !val[k]) return usage_err(sc, "missing required option", sc->flags[k].flag);
    return sc->run(o, sc, pos, npos, val);
}

/* Global options up to the command; the index of the command word, or -(exit code + 1). */
static int parse_global(opts *o, int argc, char **argv) {
    static const struct option lo[] = {
        {"host", required_argument, NULL, 'h'}, {"port", required_argument, NULL, 'p'},
        {"agent", required_argument, NULL, OPT_AGENT}, {"json", no_argument, NULL, OPT_JSON},
        {"help", no_argument, NULL, OPT_HELP}, {"version", no_argument, NULL, OPT_VERSION},
        TLSC_LONG_OPTIONS, {0}};
    char word[64];
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "+:h:p:", lo, NULL)) != -1) {
        char *end;
        long p;
        switch (ch) {
        case 'h': o->host = optarg; break;
        case 'p':
            errno = 0;
            p = strtol(optarg, &end, 10);
            if (errno || *end || p <= 0 || p > 65535) return -usage_err(NULL, "bad port", optarg) - 1;
            o->port = (int)p;
            break;
        case OPT_AGENT: o->agent = optarg; break;
        case OPT_JSON: o->json = true; break;
        case OPT_HELP: global_help(stdout); return -EXIT_OK - 1;
        case OPT_VERSION: printf("stopctl (stopgate) %s\n", SG_VERSION); return -EXIT_OK - 1;
        case ':': return -usage_err(NULL, "missing value for", argv[optind - 1]) - 1;
        default:
            if (tlsc_take_opt(&o->tls, ch, optarg)) break;
            return -usage_err(NULL, "unknown option", opt_word(word, sizeof word, argv[optind - 1])) - 1;
        }
    }
    const char *tls_problem = tlsc_opts_check(&o->tls);
    if (tls_problem) {
        fprintf(stderr, "stopctl: %s\n", tls_problem);
        return -EXIT_USAGE - 1;
    }
    return optind;
}

int main(int argc, char **argv) {
    opts o = {.host = "127.0.0.1", .port = 7379};
    int i = parse_global(&o, argc, argv);
    if (i < 0) return -i - 1;
    if (i >= argc) {
        fprintf(stderr, "stopctl: missing command\n");
        global_help(stderr);
        return EXIT_USAGE;
    }
    char **rest = argv + i;
    int nrest = argc - i;
    if (!strcmp(rest[0], "help")) { /* stopctl help [COMMAND...]: the command's --help */
        int words;
        const subcmd *sc = nrest > 1 ? find_subcmd(nrest - 1, rest + 1, &words) : NULL;
        if (!sc) global_help(stdout);
        else sub_help(stdout, sc);
        return EXIT_OK;
    }
    int words;
    const subcmd *sc = find_subcmd(nrest, rest, &words);
    if (!sc && (!strcmp(rest[0], "list") || !strcmp(rest[0], "journal"))) return group_usage(rest[0], nrest, rest);
    if (!sc) return usage_err(NULL, "unknown command", rest[0]);
    return run_subcmd(&o, sc, nrest - (words - 1), rest + (words - 1));
}
