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
nc__emitter_add(struct nc__emitter *em, enum nc_event ev, nc_listener_cb cb,
    void *arg, bool once)
{
	struct nc__listener	*list;
	size_t			 cap;

	if ((unsigned int)ev >= NC_EV__COUNT || cb == NULL)
		return NC_ERR_INVALID_ARG_VALUE;
	if (em->count[ev] == UINT16_MAX)
		return NC_ENOMEM;
	if (em->n == em->cap) {
		/* Exact while small: a socket has a few listeners. */
		cap = em->cap < 8 ? (size_t)em->cap + 1 : (size_t)em->cap * 2;
		if (cap > UINT16_MAX)
			return NC_ENOMEM;
		list = reallocarray(em->list, cap, sizeof *list);
		if (list == NULL)
			return NC_ENOMEM;
		em->list = list;
		em->cap = (uint16_t)cap;
	}
	list = &em->list[em->n++];
	list->cb = cb;
	list->arg = arg;
	list->event = (uint8_t)ev;
	list->once = once;
	em->count[ev]++;
	return 0;
}

/* Nothing left: the array goes, as most sockets end with no listener. */
static void
emitter_trim(struct nc__emitter *em)
{
	if (em->n == 0) {
		free(em->list);
		em->list = NULL;
		em->cap = 0;
	}
}

int
nc__emitter_remove(struct nc__emitter *em, enum nc_event ev,
    nc_listener_cb cb, void *arg)
{
	size_t	i;

	if ((unsigned int)ev >= NC_EV__COUNT || cb == NULL)
		return NC_ERR_INVALID_ARG_VALUE;
	/* The last one added goes, as Node's removeListener. */
	for (i = em->n; i > 0; i--) {
		if (em->list[i - 1].event == ev && em->list[i - 1].cb == cb &&
		    em->list[i - 1].arg == arg) {
			memmove(&em->list[i - 1], &em->list[i],
			    (em->n - i) * sizeof em->list[0]);
			em->n--;
			em->count[ev]--;
			emitter_trim(em);
			return 0;
		}
	}
	return 0;
}

size_t
nc__emitter_emit(struct nc__emitter *em, void *emitter,
    const struct nc_event_args *args)
{
	struct nc__listener	 stack[8], *snap, *l;
	enum nc_event		 ev = args->event;
	size_t			 i, j, k, n = em->count[ev];

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
	/*
	 * Take this event's listeners; once listeners leave the list before
	 * any listener runs.
	 */
	for (i = j = k = 0; i < em->n; i++) {
		l = &em->list[i];
		if (l->event == ev) {
			snap[k++] = *l;
			if (l->once) {
				em->count[ev]--;
				continue;
			}
		}
		if (j != i)
			em->list[j] = *l;
		j++;
	}
	em->n = (uint16_t)j;
	emitter_trim(em);
	for (i = 0; i < n; i++)
		snap[i].cb(emitter, args, snap[i].arg);
	if (snap != stack)
		free(snap);
	return n;
}

void
nc__emitter_free(struct nc__emitter *em)
{
	free(em->list);
	memset(em, 0, sizeof *em);
}
