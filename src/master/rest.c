/*
 * The master's own evconnlistener sockets (the control socket, the
 * metrics and agent listeners) out of fds: accept() fails, and the
 * socket rests NC_ACCEPT_PAUSE_MS before it tries again, so the loop
 * never spins on it. A pause is logged once, when it begins and when it
 * ends, and counted in netcluster_accept_pauses_total.
 *
 * An evconnlistener's error callback gets the argument of its accept
 * callback, which evhttp sets to itself for the socket it serves: the
 * resting socket is found by its listener instead.
 */

#include <errno.h>
#include <string.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "master.h"

static struct lev_rest	*rests;		/* watched now */

static void
rest_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lev_rest	*r = arg;

	(void)fd;
	(void)what;
	if (r->may_resume == NULL || r->may_resume(r->arg))
		(void)evconnlistener_enable(r->lev);
}

static void
rest_error_cb(struct evconnlistener *lev, void *unused)
{
	struct lev_rest	*r;
	struct timeval	 tv = { 0, NC_ACCEPT_PAUSE_MS * 1000 };
	int		 err = EVUTIL_SOCKET_ERROR();

	(void)unused;
	for (r = rests; r != NULL && r->lev != lev; r = r->next)
		;
	if (r == NULL)
		return;
	if (!nc_accept_must_pause(err)) {
		log_warnx("%s: accept: %s", r->what, strerror(err));
		return;
	}
	if (nc_accept_pause_begin(&r->pause)) {
		stats_add("accept_pauses", r->what, 1);
		log_warnx("%s: accept: %s; pausing, retrying every %d ms",
		    r->what, strerror(err), NC_ACCEPT_PAUSE_MS);
	}
	if (r->retry_ev == NULL)
		r->retry_ev = evtimer_new(master.base, rest_retry_cb, r);
	if (r->retry_ev != NULL && evtimer_add(r->retry_ev, &tv) == 0)
		(void)evconnlistener_disable(lev);
}

/*
 * r rests lev when out of fds. r->what names it (and its stats key);
 * r->may_resume, if set, says whether it may accept again once rested.
 */
void
lev_rest_watch(struct lev_rest *r, struct evconnlistener *lev)
{
	r->lev = lev;
	evconnlistener_set_error_cb(lev, rest_error_cb);
	r->next = rests;
	rests = r;
}

/* A connection came: a pause, if one ran, is over. */
void
lev_rest_accepted(struct lev_rest *r)
{
	unsigned long	pauses;
	long		ms;

	if (nc_accept_pause_end(&r->pause, &ms, &pauses))
		log_warnx("%s: accepting again after %ld ms", r->what, ms);
}

/* Whether lev rests now (nothing may enable it but the retry). */
bool
lev_rest_resting(const struct lev_rest *r)
{
	return r->pause.on;
}

/* Before lev is freed. */
void
lev_rest_stop(struct lev_rest *r)
{
	struct lev_rest	**rp;

	for (rp = &rests; *rp != NULL; rp = &(*rp)->next)
		if (*rp == r) {
			*rp = r->next;
			break;
		}
	if (r->retry_ev != NULL) {
		event_free(r->retry_ev);
		r->retry_ev = NULL;
	}
	memset(&r->pause, 0, sizeof r->pause);
	r->lev = NULL;
}
