/*
 * systemd's notification protocol (sd_notify(3)): READY=1 once every
 * listener is bound and every worker online, STATUS= with a summary,
 * RELOADING=1 with MONOTONIC_USEC= while a reload runs, STOPPING=1 on the
 * way out, and WATCHDOG=1 at half of WATCHDOG_USEC while the loop runs.
 * Without NOTIFY_SOCKET every call is a no-op.
 */

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "master.h"

static struct event	*watchdog_ev;
static bool		 ready_sent;	/* ever: the first is logged */
static bool		 ready_now;	/* since the last RELOADING=1 */

void
notify(const char *state)
{
	int	rc;

	if ((rc = sd_notify(0, state)) < 0)
		log_warnx("sd_notify(%s): %s", state, strerror(-rc));
}

void
notify_status(const char *fmt, ...)
{
	char	msg[256], line[300];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	snprintf(line, sizeof line, "STATUS=%s", msg);
	notify(line);
}

/*
 * Every slot has an online worker, or a reload ended: ready (again,
 * after a reload), said once until the next RELOADING=1.
 */
void
notify_ready(void)
{
	notify_status("%d workers online, %zu services", gen_online(),
	    master.gen->npools);
	if (ready_now)
		return;
	ready_now = true;
	notify("READY=1");
	if (!ready_sent)
		log_notice("ready: every listener bound, %d workers online",
		    gen_online());
	ready_sent = true;
}

void
notify_reloading(void)
{
	struct timespec	ts;
	char		line[64];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ready_now = false;
	snprintf(line, sizeof line, "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000ULL);
	notify(line);
}

void
notify_stopping(void)
{
	notify("STOPPING=1");
}

static void
watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	/* Sent from the loop: a stuck loop stops feeding the watchdog. */
	notify("WATCHDOG=1");
}

void
notify_start(void)
{
	struct timeval	tv;
	uint64_t	usec;

	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return;
	usec /= 2;
	tv.tv_sec = (time_t)(usec / 1000000);
	tv.tv_usec = (suseconds_t)(usec % 1000000);
	watchdog_ev = event_new(master.base, -1, EV_PERSIST, watchdog_cb, NULL);
	if (watchdog_ev == NULL || event_add(watchdog_ev, &tv) == -1)
		log_warnx("cannot arm the watchdog timer");
	else
		log_info("watchdog: WATCHDOG=1 every %llu ms",
		    (unsigned long long)usec / 1000);
}

void
notify_stop(void)
{
	if (watchdog_ev != NULL) {
		event_free(watchdog_ev);
		watchdog_ev = NULL;
	}
}
