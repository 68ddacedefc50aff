/*
 * A socket's idle timer (setTimeout()) and its part in nc_run()'s
 * accounting (ref() and unref()): both live in struct socket_timer, made
 * by the first call that needs it; most sockets have none.
 */

#include <stdlib.h>
#include <time.h>

#include <event2/event.h>

#include "nc-int.h"
#include "socket-int.h"

static void	socket_timeout_cb(evutil_socket_t, short, void *);

/*
 * What must not keep nc_run() alive: the idle timer never does, as in
 * Node; the rest does unless the program called nc_socket_unref().
 */
static int
socket_unref_events(struct nc__handle *h)
{
	struct socket_timer	*t = (struct socket_timer *)h;
	struct nc_socket	*s = t->socket;
	int			 n;

	n = nc__event_pending(&t->ev);
	if (h->unref) {
		n += s->ev_what != 0 ? 1 : 0;
		if (s->conn != NULL)
			n += nc__event_pending(s->conn->lookup_ev);
	}
	return n;
}

static void
socket_now(struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
}

static int64_t
socket_elapsed_ms(const struct timespec *since)
{
	struct timespec	now;

	socket_now(&now);
	return (int64_t)(now.tv_sec - since->tv_sec) * 1000 +
	    (now.tv_nsec - since->tv_nsec) / 1000000;
}

static void
socket_arm_timer(struct nc_socket *s, int64_t ms)
{
	struct timeval	tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (event_add(&s->timer->ev, &tv) == -1)
		log_err("socket fd %d: cannot arm the idle timer", s->fd);
}

/* The timer, made by the first setTimeout() or unref(): most sockets
 * have neither. */
static int
socket_timer(struct nc_socket *s)
{
	struct socket_timer	*t;

	if (s->timer != NULL)
		return 0;
	if ((t = calloc(1, sizeof *t)) == NULL)
		return NC_ENOMEM;
	if (evtimer_assign(&t->ev, s->base, socket_timeout_cb, s) == -1) {
		free(t);
		return NC_ENOMEM;
	}
	t->socket = s;
	nc__handle_init(&t->h, s->base, socket_unref_events);
	s->timer = t;
	return 0;
}

void
nc__socket_timer_free(struct nc_socket *s)
{
	if (s->timer == NULL)
		return;
	(void)event_del(&s->timer->ev);
	nc__handle_remove(&s->timer->h);
	free(s->timer);
	s->timer = NULL;
}

/* Any read or write: the idle timer starts again from now. */
void
nc__socket_activity(struct nc_socket *s)
{
	if (s->timer == NULL || s->timer->timeout_ms == 0)
		return;
	socket_now(&s->timer->last_activity);
	if (!nc__event_pending(&s->timer->ev) && s->state != S_DESTROYED)
		socket_arm_timer(s, s->timer->timeout_ms);
}

static void
socket_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct nc_socket	*s = arg;
	int64_t			 idle;

	(void)fd;
	(void)what;
	if (s->timer->timeout_ms == 0 || s->state == S_DESTROYED)
		return;
	idle = socket_elapsed_ms(&s->timer->last_activity);
	if (idle < s->timer->timeout_ms) {
		socket_arm_timer(s, s->timer->timeout_ms - idle);
		return;
	}
	/* Not re-armed: the next timeout counts from the next activity. */
	nc_socket_hold(s);
	nc__socket_emit_simple(s, NC_EV_TIMEOUT);
	nc_socket_release(s);
}

int
nc_socket_set_timeout(struct nc_socket *s, int64_t ms, nc_listener_cb cb,
    void *arg)
{
	int	rc;

	if (ms < 0)
		return NC_ERR_OUT_OF_RANGE;
	if (s->state == S_DESTROYED)
		return 0;
	if (ms == 0) {
		/*
		 * The timer goes (a proxy's upstream has one only while it
		 * connects), unless unref() needs it. This may run inside
		 * the timer's own callback, which touches it no more after
		 * its listeners.
		 */
		if (s->timer != NULL && !s->timer->h.unref)
			nc__socket_timer_free(s);
		else if (s->timer != NULL) {
			s->timer->timeout_ms = 0;
			(void)event_del(&s->timer->ev);
		}
		if (cb != NULL)
			(void)nc__listeners_remove(&s->em, NC_EV_TIMEOUT, cb,
			    arg);
		return 0;
	}
	if ((rc = socket_timer(s)) != 0)
		return rc;
	if (cb != NULL) {
		if ((rc = nc__listeners_add(&s->em, NC_EV_TIMEOUT, cb, arg,
		    true)) != 0)
			return rc;
	}
	s->timer->timeout_ms = ms;
	socket_now(&s->timer->last_activity);
	socket_arm_timer(s, ms);
	return 0;
}

void
nc_socket_ref(struct nc_socket *s)
{
	if (s->timer != NULL)
		s->timer->h.unref = false;
}

void
nc_socket_unref(struct nc_socket *s)
{
	if (socket_timer(s) != 0) {
		log_err("socket fd %d: out of memory; it still keeps the loop "
		    "alive", s->fd);
		return;
	}
	s->timer->h.unref = true;
}
