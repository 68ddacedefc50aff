/*
 * The loop: the default event_base, deferred calls (Node's nextTick and
 * setImmediate, for events that must not fire inside an API call), and
 * nc_run(), which runs the loop for as long as something ref'd is left,
 * as Node's process does.
 */

#include <stdlib.h>

#include <event2/event.h>

#include "nc-int.h"

static struct event_base	*default_base;
static struct nc__handle	*handles;

struct event_base *
nc_default_base(void)
{
	if (default_base == NULL)
		default_base = event_base_new();
	return default_base;
}

struct event_base *
nc__base(struct event_base *base)
{
	return base != NULL ? base : nc_default_base();
}

struct deferred {
	void	(*fn)(void *);
	void	 *arg;
};

static void
deferred_cb(evutil_socket_t fd, short what, void *arg)
{
	struct deferred	*d = arg;

	(void)fd;
	(void)what;
	d->fn(d->arg);
	free(d);
}

/*
 * event_base_once() with no timeout activates the event at once, so
 * deferred calls run on the next turn in the order they were made.
 */
int
nc__defer(struct event_base *base, void (*fn)(void *), void *arg)
{
	struct deferred	*d;

	if ((d = malloc(sizeof *d)) == NULL)
		return NC_ENOMEM;
	d->fn = fn;
	d->arg = arg;
	if (event_base_once(base, -1, EV_TIMEOUT, deferred_cb, d, NULL) == -1) {
		free(d);
		return NC_ENOMEM;
	}
	return 0;
}

void
nc__handle_init(struct nc__handle *h, struct event_base *base,
    int (*unref_events)(struct nc__handle *))
{
	h->base = base;
	h->unref = false;
	h->unref_events = unref_events;
	h->prev = NULL;
	h->next = handles;
	if (handles != NULL)
		handles->prev = h;
	handles = h;
}

void
nc__handle_remove(struct nc__handle *h)
{
	if (h->prev != NULL)
		h->prev->next = h->next;
	else if (handles == h)
		handles = h->next;
	if (h->next != NULL)
		h->next->prev = h->prev;
	h->prev = h->next = NULL;
}

int
nc__event_pending(const struct event *ev)
{
	if (ev == NULL)
		return 0;
	return event_pending(ev, EV_READ | EV_WRITE | EV_TIMEOUT, NULL) ?
	    1 : 0;
}

/* Events on base that keep the loop alive: all but unref'd handles'. */
static int
loop_alive(struct event_base *base)
{
	struct nc__handle	*h;
	int			 n;

	n = event_base_get_num_events(base,
	    EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE);
	for (h = handles; h != NULL; h = h->next)
		if (h->base == base)
			n -= h->unref_events(h);
	return n > 0;
}

int
nc_run(struct event_base *base)
{
	base = nc__base(base);
	if (base == NULL)
		return -1;
	while (loop_alive(base)) {
		if (event_base_loop(base, EVLOOP_ONCE) == -1)
			return -1;
	}
	return 0;
}
