/*
 * netclusterctl scale SERVICE N|+K|-K: one pool gets another size while
 * it serves. Only the slots added start and only the ones removed (the
 * highest) drain as on a stop; every other worker keeps its pid. The
 * size is built into a new generation and swapped in like any other
 * change (build.c: a reuseport listener grows a socket per new slot
 * first), and holds until the next reload takes the file's count again.
 */

#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "master.h"

/* A scale waiting for the slots it added to be online. */
static struct {
	struct pool	*pool;
	int		 to;
	struct event	*timer;
	void		(*done)(const char *, json_t *, void *);
	void		*arg;
} sc;

static void
scale_finish(const char *error, json_t *reply)
{
	void	(*done)(const char *, json_t *, void *) = sc.done;

	master.operation = NULL;
	sc.pool = NULL;
	if (sc.timer != NULL)
		(void)event_del(sc.timer);
	done(error, reply, sc.arg);
}

static json_t *
scale_reply(const struct pool *p)
{
	return json_pack("{s:s, s:i, s:i}", "service", p->name, "workers",
	    p->size, "file_workers", p->file_size);
}

static void
scale_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	char	err[256];

	(void)fd;
	(void)what;
	(void)arg;
	snprintf(err, sizeof err, "service %s has %d workers now, but only "
	    "%d online after %d ms (ready_timeout_ms)", sc.pool->name, sc.to,
	    gen_pool_online(sc.pool), sc.pool->def->svc->ready_timeout_ms);
	scale_finish(err, NULL);
}

static void
scale_worker_online(struct worker *w)
{
	if (sc.pool == w->pool && gen_pool_online(sc.pool) >= sc.to)
		scale_finish(NULL, scale_reply(sc.pool));
}

/*
 * service gets size slots (or, size 0, its size + delta). done(error,
 * reply, arg) once the slots added are online (at once for a scale
 * down: the removed ones are told to stop).
 */
void
scale(const char *service, int size, int delta,
    void (*done)(const char *, json_t *, void *), void *arg)
{
	struct timeval	 tv;
	struct build	 b;
	struct pool	*p = NULL;
	char		 err[256];
	int		 from;

	err[0] = '\0';
	if (!gen_busy(err, sizeof err) && (p = gen_pool(service)) == NULL)
		snprintf(err, sizeof err, "no service named \"%s\"", service);
	else if (p != NULL && ((size = size > 0 ? size : p->size + delta) <
	    1 || size > 1024))
		snprintf(err, sizeof err, "service %s would have %d workers; "
		    "a pool has 1 to 1024", service, size);
	if (err[0] != '\0') {
		done(err, NULL, arg);
		return;
	}
	from = p->size;
	if (size == from) {
		done(NULL, scale_reply(p), arg);
		return;
	}
	memset(&b, 0, sizeof b);
	b.kind = BUILD_SCALE;
	b.service = service;
	b.size = size;
	if (build_prepare(&b, err, sizeof err) == -1) {
		done(err, NULL, arg);
		return;
	}
	log_notice("service %s: scaled from %d to %d workers (the file says "
	    "%d)", service, from, size, p->file_size);
	build_commit(&b);
	free(b.renew);
	if (size < from || gen_pool_online(p) >= size) {
		done(NULL, scale_reply(p), arg);
		return;
	}
	master.operation = "scale";
	sc.pool = p;
	sc.to = size;
	sc.done = done;
	sc.arg = arg;
	tv.tv_sec = p->def->svc->ready_timeout_ms / 1000;
	tv.tv_usec = (p->def->svc->ready_timeout_ms % 1000) * 1000;
	if (sc.timer == NULL && (sc.timer = evtimer_new(master.base,
	    scale_timeout_cb, NULL)) == NULL)
		fatalx("out of memory");
	(void)evtimer_add(sc.timer, &tv);
}

/* The master stops: whoever waits for a scale hears why. */
void
scale_stop(void)
{
	if (sc.pool != NULL)
		scale_finish("netclusterd is stopping", NULL);
	if (sc.timer != NULL)
		event_free(sc.timer);
	sc.timer = NULL;
}

void
scale_init(void)
{
	worker_hook(WEV_ONLINE, scale_worker_online);
}
