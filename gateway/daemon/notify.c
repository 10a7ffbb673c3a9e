#include "notify.h"

#include <stdio.h>
#include <time.h>

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#define SEND(...) (void)sd_notifyf(0, __VA_ARGS__)
#else
#define SEND(...) ((void)0)
#endif

void notify_status(const char *status) { SEND("STATUS=%s", status); }

void notify_ready(const char *status) { SEND("READY=1\nSTATUS=%s", status); }

void notify_reloading(void) {
    /* MONOTONIC_USEC: systemd >= 253 (Type=notify-reload) matches it against the reload it
     * asked for; 252 ignores it. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long us = (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
    (void)us;
    SEND("RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration", us);
}

void notify_stopping(const char *status) { SEND("STOPPING=1\nSTATUS=%s", status); }
