/*
 * Recycling: a worker is replaced once it took "connections", lived
 * "age_ms" or passed "rss_mib" of resident memory (its service's
 * "recycle"), each limit lowered by up to jitter_percent, drawn once per
 * worker, so that slots started together do not recycle together. The
 * replacement starts first, in the worker's slot; once it is online it
 * takes the slot over and the old worker drains, as in a reload: a pool
 * never has fewer workers online than its count. One slot of a pool at a
 * time, and none while a reload rolls the pool over.
 */

#include <sys/types.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "master.h"

#define RECYCLE_TICK_MS		250
#define RECYCLE_RSS_TICKS	4	/* rss_mib: read every 4th tick, 1 s */
#define RECYCLE_RETRY_S		5	/* after a replacement that failed */

static struct event	*tick;

static unsigned int	 ticks;

/*
 * The MiB w has resident, as its statm says (its second field, in
 * pages), or -1. The file is opened once and read again from its start
 * each time: for hundreds of workers a second, the path's walk on each
 * open was most of the cost. The fd names the process, not the pid: it
 * reads nothing once the worker is gone.
 */
static long
recycle_rss_mib(struct worker *w)
{
	char		 path[64], buf[128], *p;
	ssize_t		 n;
	long		 pages;

	if (w->statm_fd == -1) {
		snprintf(path, sizeof path, "/proc/%d/statm", (int)w->pid);
		if ((w->statm_fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			return -1;
	}
	if ((n = pread(w->statm_fd, buf, sizeof buf - 1, 0)) <= 0) {
		close(w->statm_fd);
		w->statm_fd = -1;
		return -1;
	}
	buf[n] = '\0';
	(void)strtol(buf, &p, 10);
	pages = strtol(p, NULL, 10);
	return pages * sysconf(_SC_PAGESIZE) / (1024 * 1024);
}

/* Whether any limit of r is on. */
static bool
recycle_on(const struct nc_recycle *r)
{
	return r->connections > 0 || r->age_ms > 0 || r->rss_mib > 0;
}

/* The limit w passed, in why, or NULL. */
static const char *
recycle_due(struct worker *w, char *why, size_t len)
{
	const struct nc_recycle	*r = &w->def->svc->recycle;
	long			 rss;
	double			 lived = gen_elapsed_s(&w->started);

	if (r->connections > 0 && (double)w->accepted >=
	    r->connections * w->jitter) {
		snprintf(why, len, "took %llu connections", w->accepted);
		return "connections";
	}
	if (r->age_ms > 0 && lived * 1000 >= r->age_ms * w->jitter) {
		snprintf(why, len, "lived %.1f s", lived);
		return "age_ms";
	}
	if (r->rss_mib <= 0 || ticks % RECYCLE_RSS_TICKS != 0 ||
	    (rss = recycle_rss_mib(w)) < 0 ||
	    (double)rss < r->rss_mib * w->jitter)
		return NULL;
	snprintf(why, len, "has %ld MiB resident", rss);
	return "rss_mib";
}

/*
 * A pool's slot whose worker is due, or NULL: none while one recycles.
 * Of several, the oldest worker's, so that none waits behind a slot that
 * is due again each time it is looked at (a fast leak).
 */
static struct slot *
recycle_pick(struct pool *p, char *why, size_t len, const char **limit)
{
	struct worker	*w, *best = NULL;
	struct slot	*pick = NULL;
	const char	*l;
	char		 text[96];
	int		 i;

	if (p->rollout != NULL || p->def == NULL)
		return NULL;
	for (i = 0; i < p->nslots && i < p->size; i++)
		if (p->slots[i]->next != NULL)
			return NULL;	/* a replacement under way */
	for (i = 0; i < p->nslots && i < p->size; i++) {
		w = p->slots[i]->worker;
		if (!gen_worker_serves(w) ||
		    !recycle_on(&w->def->svc->recycle) ||
		    w->recycle_after > gen_elapsed_s(&master.started) ||
		    (best != NULL && gen_elapsed_s(&w->started) <=
		    gen_elapsed_s(&best->started)) ||
		    (l = recycle_due(w, text, sizeof text)) == NULL)
			continue;
		best = w;
		pick = p->slots[i];
		*limit = l;
		snprintf(why, len, "%s", text);
	}
	return pick;
}

static void
recycle_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct slot	*s;
	struct pool	*p;
	const char	*limit = NULL;
	char		 why[96];
	size_t		 i;

	(void)fd;
	(void)what;
	(void)arg;
	if (master.stopping || master.upgrading)
		return;
	ticks++;
	for (i = 0; i < master.gen->npools; i++) {
		p = master.gen->pools[i];
		if ((s = recycle_pick(p, why, sizeof why, &limit)) == NULL)
			continue;
		log_notice("service %s: worker %d [pid %d] (slot %d) %s "
		    "(recycle.%s %d, less up to %d%%); recycling it",
		    p->name, s->worker->id, (int)s->worker->pid, s->index, why,
		    limit, strcmp(limit, "connections") == 0 ?
		    s->def->svc->recycle.connections : strcmp(limit,
		    "age_ms") == 0 ? s->def->svc->recycle.age_ms :
		    s->def->svc->recycle.rss_mib,
		    s->def->svc->recycle.jitter_percent);
		s->worker->cause = "recycle";
		s->worker->cause_code = limit;
		pool_renew(s);
	}
}

/* Whether w is a slot's worker being recycled. */
static bool
recycle_recycling(const struct worker *w)
{
	return w != NULL && w->cause != NULL &&
	    strcmp(w->cause, "recycle") == 0;
}

/* A recycle's replacement, gone or online: its slot, else NULL. */
static struct slot *
recycle_slot(const struct worker *w)
{
	if (!w->incoming || w->pool->rollout != NULL || w->slot < 0 ||
	    w->slot >= w->pool->nslots)
		return NULL;
	return w->pool->slots[w->slot];
}

/*
 * The replacement is online: it takes the slot over and the old worker
 * drains; or it takes the slot the old one left, dying meanwhile.
 */
static void
recycle_online(struct worker *w)
{
	struct slot	*s;
	struct worker	*old;

	if ((s = recycle_slot(w)) == NULL || s->next != w ||
	    (s->worker != NULL && !recycle_recycling(s->worker)))
		return;
	if ((old = pool_take_over(s)) != NULL)
		stats_restart_cause(w->pool->name, "recycle", old->cause_code);
}

/*
 * A replacement that never came online: the old worker serves on, and
 * is not recycled again for RECYCLE_RETRY_S; if it died meanwhile, the
 * slot starts another (it waited for this one).
 */
static void
recycle_gone(struct worker *w)
{
	struct slot	*s;

	if ((s = recycle_slot(w)) == NULL || s->next == w)
		return;
	if (s->worker == NULL) {
		if (!master.stopping)
			pool_refill(w->pool);
		return;
	}
	if (!recycle_recycling(s->worker))
		return;
	log_warnx("service %s: worker %d [pid %d] (slot %d), which was to "
	    "take a recycled worker's place, ended; the old one serves on",
	    w->pool->name, w->id, (int)w->pid, w->slot);
	s->worker->cause = NULL;
	s->worker->recycle_after = gen_elapsed_s(&master.started) +
	    RECYCLE_RETRY_S;
}

/* Each worker's limits, lowered by up to its service's jitter. */
static void
recycle_started(struct worker *w)
{
	int	j = w->def != NULL ? w->def->svc->recycle.jitter_percent : 0;

	w->jitter = 1.0 - (j > 0 ? (double)(random() % (j * 100 + 1)) /
	    10000.0 : 0.0);
}

void
recycle_init(void)
{
	struct timeval	tv = { 0, RECYCLE_TICK_MS * 1000 };

	srandom((unsigned)getpid() ^ (unsigned)time(NULL));
	worker_hook(WEV_STARTED, recycle_started);
	worker_hook(WEV_ONLINE, recycle_online);
	worker_hook(WEV_GONE, recycle_gone);
	if ((tick = event_new(master.base, -1, EV_PERSIST, recycle_tick_cb,
	    NULL)) == NULL || event_add(tick, &tv) == -1)
		fatalx("cannot arm recycling");
}

void
recycle_stop(void)
{
	if (tick != NULL)
		event_free(tick);
	tick = NULL;
}
