/*
 * Node's EventEmitter for servers and sockets: listeners per event, called
 * in the order they were added, `once` listeners removed before they run.
 * An emit works on a snapshot, so listeners added or removed while it runs
 * take effect from the next emit, as in Node.
 */

#include <stdlib.h>
#include <string.h>

#include "nc-int.h"

static const char *event_names[NC_EV__COUNT] = {
	[NC_EV_LISTENING] = "listening",
	[NC_EV_CONNECTION] = "connection",
	[NC_EV_CLOSE] = "close",
	[NC_EV_ERROR] = "error",
	[NC_EV_DROP] = "drop",
	[NC_EV_LOOKUP] = "lookup",
	[NC_EV_CONNECT] = "connect",
	[NC_EV_DATA] = "data",
	[NC_EV_END] = "end",
	[NC_EV_FINISH] = "finish",
	[NC_EV_TIMEOUT] = "timeout",
	[NC_EV_DRAIN] = "drain",
	[NC_EV_MESSAGE] = "message",
	[NC_EV_DISCONNECT] = "disconnect",
};

const char *
nc_event_name(enum nc_event ev)
{
	if ((unsigned int)ev >= NC_EV__COUNT)
		return "unknown";
	return event_names[ev];
}

int
nc__listeners_add(struct nc__listeners *l, enum nc_event ev,
    nc_listener_cb cb, void *arg, bool once)
{
	struct nc__listener	*list;
	size_t			 cap;

	if ((unsigned int)ev >= NC_EV__COUNT || cb == NULL)
		return NC_ERR_INVALID_ARG_VALUE;
	if (l->n == l->cap) {
		/* Exact while small: a socket has a few listeners. */
		cap = l->cap < 8 ? (size_t)l->cap + 1 : (size_t)l->cap * 2;
		if (cap > UINT16_MAX)
			return NC_ENOMEM;
		list = reallocarray(l->list, cap, sizeof *list);
		if (list == NULL)
			return NC_ENOMEM;
		l->list = list;
		l->cap = (uint16_t)cap;
	}
	list = &l->list[l->n++];
	list->cb = cb;
	list->arg = arg;
	list->event = (uint8_t)ev;
	list->once = once;
	return 0;
}

/*
 * After listeners left: an empty array goes, and a small one that has two
 * slots or more to spare shrinks to fit (a connected socket loses its
 * `connect` and connect-timeout listeners).
 */
static void
listeners_trim(struct nc__listeners *l)
{
	struct nc__listener	*list;

	if (l->n == 0) {
		free(l->list);
		l->list = NULL;
		l->cap = 0;
	} else if (l->cap <= 8 && l->cap - l->n >= 2 &&
	    (list = reallocarray(l->list, l->n, sizeof *list)) != NULL) {
		l->list = list;
		l->cap = l->n;
	}
}

/* The last one added goes, as Node's removeListener; 1 if one went. */
static int
listeners_remove(struct nc__listeners *l, enum nc_event ev,
    nc_listener_cb cb, void *arg)
{
	size_t	i;

	for (i = l->n; i > 0; i--) {
		if (l->list[i - 1].event == ev && l->list[i - 1].cb == cb &&
		    l->list[i - 1].arg == arg) {
			memmove(&l->list[i - 1], &l->list[i],
			    (l->n - i) * sizeof l->list[0]);
			l->n--;
			listeners_trim(l);
			return 1;
		}
	}
	return 0;
}

int
nc__listeners_remove(struct nc__listeners *l, enum nc_event ev,
    nc_listener_cb cb, void *arg)
{
	if ((unsigned int)ev >= NC_EV__COUNT || cb == NULL)
		return NC_ERR_INVALID_ARG_VALUE;
	(void)listeners_remove(l, ev, cb, arg);
	return 0;
}

size_t
nc__listeners_count(const struct nc__listeners *l, enum nc_event ev)
{
	size_t	i, n = 0;

	for (i = 0; i < l->n; i++)
		if (l->list[i].event == ev)
			n++;
	return n;
}

/*
 * Calls the n listeners of the event in order, on a snapshot; once
 * listeners leave the list before any listener runs. *once gets how many
 * left.
 */
static size_t
listeners_emit(struct nc__listeners *l, size_t n, void *emitter,
    const struct nc_event_args *args, size_t *once)
{
	struct nc__listener	 stack[8], *snap, *e;
	enum nc_event		 ev = args->event;
	size_t			 i, j, k;

	*once = 0;
	if (n == 0)
		return 0;
	snap = stack;
	if (n > sizeof stack / sizeof stack[0]) {
		snap = reallocarray(NULL, n, sizeof *snap);
		if (snap == NULL) {
			log_err("out of memory emitting %s", nc_event_name(ev));
			return 0;
		}
	}
	for (i = j = k = 0; i < l->n; i++) {
		e = &l->list[i];
		if (e->event == ev) {
			snap[k++] = *e;
			if (e->once) {
				(*once)++;
				continue;
			}
		}
		if (j != i)
			l->list[j] = *e;
		j++;
	}
	if (j != l->n) {
		l->n = (uint16_t)j;
		listeners_trim(l);
	}
	for (i = 0; i < n; i++)
		snap[i].cb(emitter, args, snap[i].arg);
	if (snap != stack)
		free(snap);
	return n;
}

size_t
nc__listeners_emit(struct nc__listeners *l, void *emitter,
    const struct nc_event_args *args)
{
	size_t	once;

	return listeners_emit(l, nc__listeners_count(l, args->event), emitter,
	    args, &once);
}

void
nc__listeners_free(struct nc__listeners *l)
{
	free(l->list);
	memset(l, 0, sizeof *l);
}

int
nc__emitter_add(struct nc__emitter *em, enum nc_event ev, nc_listener_cb cb,
    void *arg, bool once)
{
	int	rc;

	if ((unsigned int)ev >= NC_EV__COUNT || cb == NULL)
		return NC_ERR_INVALID_ARG_VALUE;
	if (em->count[ev] == UINT16_MAX)
		return NC_ENOMEM;
	if ((rc = nc__listeners_add(&em->l, ev, cb, arg, once)) != 0)
		return rc;
	em->count[ev]++;
	return 0;
}

int
nc__emitter_remove(struct nc__emitter *em, enum nc_event ev,
    nc_listener_cb cb, void *arg)
{
	if ((unsigned int)ev >= NC_EV__COUNT || cb == NULL)
		return NC_ERR_INVALID_ARG_VALUE;
	if (listeners_remove(&em->l, ev, cb, arg))
		em->count[ev]--;
	return 0;
}

size_t
nc__emitter_emit(struct nc__emitter *em, void *emitter,
    const struct nc_event_args *args)
{
	size_t	n, once;

	n = listeners_emit(&em->l, em->count[args->event], emitter, args,
	    &once);
	em->count[args->event] -= (uint16_t)once;
	return n;
}

void
nc__emitter_free(struct nc__emitter *em)
{
	nc__listeners_free(&em->l);
	memset(em, 0, sizeof *em);
}
