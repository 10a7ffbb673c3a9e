#include "notify.h"

#include <stdio.h>

#include "clock.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#define SEND(...) (void)sd_notifyf(0, __VA_ARGS__)
#else
/* Built without libsystemd: nothing to tell (the arguments are still evaluated and used). */
static void send_none(const char *fmt, ...) { (void)fmt; }
#define SEND(...) send_none(__VA_ARGS__)
#endif

void notify_status(const char *status) { SEND("STATUS=%s", status); }

void notify_ready(const char *status) { SEND("READY=1\nSTATUS=%s", status); }

void notify_reloading(void) {
    /* MONOTONIC_USEC: systemd >= 253 (Type=notify-reload) matches it against the reload it
     * asked for; 252 ignores it. */
    SEND("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration",
         (unsigned long long)clock_mono_ns() / 1000);
}

void notify_stopping(const char *status) { SEND("STOPPING=1\nSTATUS=%s", status); }
