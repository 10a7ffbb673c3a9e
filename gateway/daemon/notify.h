/*
 * notify: the service manager's view of stopgated (systemd Type=notify, sd_notify(3)).
 * READY=1 once the gateway accepts (after journal recovery), RELOADING=1 ... READY=1 around a
 * SIGHUP reload, STOPPING=1 when draining starts, and a STATUS= line with each.
 *
 * Every call is a no-op when $NOTIFY_SOCKET is not set (not started by systemd) or when
 * stopgated was built without libsystemd. Failures to notify are ignored: the manager's
 * timeouts are the fallback, and the gateway must not stop serving for them.
 */
#ifndef SG_NOTIFY_H
#define SG_NOTIFY_H

void notify_status(const char *status);
void notify_ready(const char *status);
void notify_reloading(void);
void notify_stopping(const char *status);
#endif
