/*
 * What a pool's workers run: a service as one configuration defines it,
 * with its listeners. A slot and each worker hold the pooldef they were
 * started from, so that a reload that changes a service (or fails half
 * way) never changes what a running worker, or the slot of one not yet
 * replaced, is: the listeners it holds stay open until the last of them
 * is gone.
 */

#include <stdlib.h>

#include "master.h"

/* Takes one reference to each listener and to conf. */
struct pooldef *
pooldef_new(struct conf *conf, const struct nc_service *svc,
    struct listener **ls, size_t n, int generation)
{
	struct pooldef	*d;
	size_t		 i;

	if ((d = calloc(1, sizeof *d)) == NULL ||
	    (d->listeners = calloc(n + 1, sizeof *d->listeners)) == NULL) {
		free(d);
		return NULL;
	}
	d->refs = 1;
	d->conf = conf_ref(conf);
	d->svc = svc;
	for (i = 0; i < n; i++)
		d->listeners[i] = listener_ref(ls[i]);
	d->nlisteners = n;
	d->generation = generation;
	return d;
}

struct pooldef *
pooldef_ref(struct pooldef *d)
{
	if (d != NULL)
		d->refs++;
	return d;
}

void
pooldef_unref(struct pooldef *d)
{
	size_t	i;

	if (d == NULL || --d->refs > 0)
		return;
	for (i = 0; i < d->nlisteners; i++)
		listener_unref(d->listeners[i]);
	free(d->listeners);
	conf_unref(d->conf);
	free(d);
}
