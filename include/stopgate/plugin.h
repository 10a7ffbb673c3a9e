/*
 * stopgate bank plugin ABI.
 *
 * A bank plugin is a shared object that exports one symbol, SG_PLUGIN_ENTRY_SYMBOL, returning
 * a pointer to a static sg_plugin_ops table. stopgated loads it with dlopen, checks
 * abi_version, and drives every instance from its single event-loop thread:
 *
 *   init()      once per [plugin NAME] section, with that section's keys;
 *   submit()    hand one instruction to the bank; must not block; copy what you keep;
 *   poll()      called when event_fd() is readable or the time poll() asked for has come;
 *               deliver results through host->result() from inside poll() only;
 *   shutdown()  once, at exit; free everything.
 *
 * Threading rule: every ops function and every host callback runs on the gateway's loop
 * thread. A plugin that needs a thread of its own (blocking client library) keeps a bounded
 * queue and wakes the loop with its event_fd (an eventfd), then hands results over in poll().
 *
 * Versioning rule: SG_PLUGIN_ABI_VERSION changes whenever a struct below changes layout or
 * meaning; the gateway refuses a plugin whose abi_version differs from its own.
 */
#ifndef STOPGATE_PLUGIN_H
#define STOPGATE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SG_PLUGIN_ABI_VERSION  3u
#define SG_PLUGIN_ENTRY_SYMBOL "sg_plugin_entry"
#define SG_PLUGIN_ERR_MAX 256 /* bytes of an init error message, NUL included */
#define SG_ONWARD_MAX 16      /* onward transfers one FUNDS_MOVED result may carry */
#define SG_POLL_RESULTS_MAX 1024 /* results one poll() may deliver; the rest wait for the next */
#define SG_SUBMIT_QUEUED 1       /* submit(): accepted, delivery confirmed later by host->delivered */
#define SG_PLUGIN_STATS_MAX    16      /* counters one stats() call may report */

typedef enum sg_instruction_kind {
    SG_INSTR_STOP = 1,    /* emergency stop-payment */
    SG_INSTR_FREEZE = 2,  /* judicial freeze */
    SG_INSTR_RELEASE = 3, /* lift an earlier STOP/FREEZE (same order_id) */
} sg_instruction_kind;

typedef enum sg_result_status {
    SG_RESULT_CONFIRMED = 1,   /* frozen_minor frozen */
    SG_RESULT_PARTIAL = 2,     /* less than asked frozen */
    SG_RESULT_NOT_FOUND = 3,   /* no such account at the bank */
    SG_RESULT_REJECTED = 4,    /* bank refused; reason says why */
    SG_RESULT_FUNDS_MOVED = 5, /* money already left; onward[] says where */
} sg_result_status;

/* One instruction for a bank. Strings are NUL-terminated and valid only during submit(). */
typedef struct sg_instruction {
    uint64_t instruction_id; /* unique per instruction, stable across re-sends */
    const char *order_id;
    sg_instruction_kind kind;
    const char *bank;
    const char *account;
    int64_t amount_minor; /* 0 = everything on the account */
    const char *currency; /* ISO 4217 */
    const char *case_id;
    const char *reason;       /* agent's reason code, "" when none */
    int64_t expires_at_ms;    /* unix ms */
    const char *parent;       /* parent order id, "" for a root order */
    uint32_t attempt;         /* 1 for the first send, 2.. for re-sends */
} sg_instruction;

typedef struct sg_onward {
    char bank[12];    /* NUL-terminated; validated by the gateway, not the plugin */
    char account[64]; /* room for what a bank sends; the gateway validates 1..34 chars */
    int64_t amount_minor;
} sg_onward;

/* One answer from a bank. Valid only during the host->result() call. */
typedef struct sg_result {
    uint64_t instruction_id;
    sg_result_status status;
    int64_t frozen_minor;
    const char *reason; /* "" when none */
    uint32_t onward_count;
    const sg_onward *onward;
} sg_result;

/* One key = value of the plugin's config section. */
typedef struct sg_plugin_kv {
    const char *key;
    const char *value;
    int line; /* line in the config file, for error messages */
} sg_plugin_kv;

typedef enum sg_log_level { SG_LOG_DEBUG = 0, SG_LOG_INFO = 1, SG_LOG_WARN = 2, SG_LOG_ERROR = 3 } sg_log_level;

/* One counter or gauge of a plugin instance, shown in /metrics as
 * stopgate_plugin_<name>{plugin="<instance>"}. name is [a-z0-9_]+ ("_total" last for a
 * counter); name and help are static strings. */
typedef struct sg_plugin_stat {
    const char *name;
    const char *help;
    uint64_t value;
    int counter; /* 1: only grows (a counter); 0: a gauge */
} sg_plugin_stat;

/* What the gateway gives a plugin instance at init. */
typedef struct sg_host {
    void *ctx; /* pass back as the first argument of every callback */
    /* A bank's answer. The gateway journals it before it acts on it and returns the journal
     * position of that record (0: ignored - unknown, duplicate or malformed, counted and
     * logged). A transport that must acknowledge answers only once they are durable keeps
     * the position and compares it with durable_lsn(). */
    uint64_t (*result)(void *ctx, const sg_result *result);
    /* The instruction is in the bank's hands (e.g. the XADD succeeded): stop re-sending. */
    void (*delivered)(void *ctx, uint64_t instruction_id);
    void (*log)(void *ctx, sg_log_level level, const char *message);
    /* Wall clock in unix microseconds, as the gateway sees it. */
    int64_t (*now_us)(void *ctx);
    /* Everything up to this journal position is on disk. */
    uint64_t (*durable_lsn)(void *ctx);
} sg_host;

typedef struct sg_plugin_ops {
    uint32_t abi_version; /* SG_PLUGIN_ABI_VERSION */
    const char *name;
    /* Parse the section, allocate state. On error return -1 and write a reason to err
     * (prefixed by nothing; the gateway adds file:line when bad_line is set >0). */
    int (*init)(const sg_host *host, const sg_plugin_kv *kv, size_t kv_count, void **state,
                char err[SG_PLUGIN_ERR_MAX], int *bad_line);
    /* Take one instruction. 0 = taken and in the bank's hands (the order becomes SENT);
     * SG_SUBMIT_QUEUED = taken, host->delivered() will say when the bank has it (SENT then);
     * -EAGAIN = queue full, the gateway retries later. Never blocks. */
    int (*submit)(void *state, const sg_instruction *instruction);
    /* fd the gateway watches for readability, or -1 when the plugin is timer-driven only. */
    int (*event_fd)(void *state);
    /* Do pending work and deliver due results. Returns the unix-us time it next wants to be
     * polled, or -1 for "only when event_fd is readable or after the next submit". */
    int64_t (*poll)(void *state, int64_t now_us);
    void (*shutdown)(void *state);
    /* Optional (NULL = none): fill out[0..cap) with the instance's counters, return how
     * many. Called on the loop thread when /metrics is scraped; must not block for long. */
    size_t (*stats)(void *state, sg_plugin_stat *out, size_t cap);
} sg_plugin_ops;

typedef const sg_plugin_ops *(*sg_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif
