/*
 * A rollout: one pool's slots brought over to its new definition (a
 * reload), K slots at a time. K new workers start beside the old ones;
 * once all K are online they take their slots over and the K old ones
 * are told to stop; the next batch starts once those exited (their
 * shutdown_timeout_ms bounds it). So a pool of N never has more than
 * N + K workers alive. A batch that does not come online (each worker
 * has its service's ready_timeout_ms, ready.c), or one of whose workers
 * ends before the batch took over, stops the rollout there: its new workers go, and the slots not
 * yet replaced keep their old workers and what those run.
 */

#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "master.h"

struct rollout {
	struct pool	*pool;
	int		 batch;		/* K */
	int		 target;	/* slots of the new definition */
	int		 old_size;	/* slots with old workers, at start */
	int		 first;		/* the batch's first slot */
	int		 count;		/* and how many */
	int		 batchno;	/* 1.. */
	int		 nbatches;
	int		 waiting;	/* old workers of the batch to exit */
	int		*old_ids;
	struct event	*timer;
	void		(*done)(struct pool *, const char *);
};

static void	rollout_batch(struct rollout *);
static void	rollout_end(struct rollout *, const char *);

/*
 * How long a batch may take to come online: its workers' ready timeout,
 * when each not ready is killed (and the batch fails then), and a second
 * more in case one is not.
 */
static int
rollout_bound_ms(const struct pool *p)
{
	return p->def->svc->ready_timeout_ms + 1000;
}

static void
rollout_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rollout	*ro = arg;
	char		 err[256];

	(void)fd;
	(void)what;
	snprintf(err, sizeof err, "batch %d of %d (slots %d to %d) is not "
	    "online after %d ms", ro->batchno, ro->nbatches, ro->first,
	    ro->first + ro->count - 1, rollout_bound_ms(ro->pool));
	rollout_end(ro, err);
}

/*
 * Rolls p over to the definition it was given (pool_set()), batch slots
 * at a time (0: its reload_batch, else the whole pool). done(p, NULL)
 * once the last batch is online, or done(p, why) when one failed.
 */
void
rollout_start(struct pool *p, int batch,
    void (*done)(struct pool *, const char *))
{
	struct rollout	*ro;

	if ((ro = calloc(1, sizeof *ro)) == NULL ||
	    (ro->old_ids = calloc((size_t)p->size + 1,
	    sizeof *ro->old_ids)) == NULL ||
	    (ro->timer = evtimer_new(master.base, rollout_timeout_cb, ro)) ==
	    NULL)
		fatalx("out of memory");
	if (batch <= 0)
		batch = p->def->svc->reload_batch;
	if (batch <= 0 || batch > p->size)
		batch = p->size;
	ro->pool = p;
	ro->batch = batch;
	ro->target = p->size;
	ro->old_size = p->nslots;
	ro->nbatches = (p->size + batch - 1) / batch;
	pool_cancel_next(p);
	ro->done = done;
	p->rollout = ro;
	if (batch < p->size)
		log_notice("service %s: replacing %d workers, %d at a time",
		    p->name, p->size, batch);
	rollout_batch(ro);
}

/* The next K slots get their new workers beside the old ones. */
static void
rollout_batch(struct rollout *ro)
{
	struct pool	*p = ro->pool;
	struct timeval	 tv;
	int		 i, ms = rollout_bound_ms(p);

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	ro->first += ro->count;
	ro->count = ro->target - ro->first < ro->batch ?
	    ro->target - ro->first : ro->batch;
	ro->batchno++;
	ro->waiting = 0;
	if (ro->nbatches > 1) {
		log_info("service %s: batch %d of %d: slots %d to %d",
		    p->name, ro->batchno, ro->nbatches, ro->first,
		    ro->first + ro->count - 1);
		notify_status("reloading: service %s, batch %d of %d",
		    p->name, ro->batchno, ro->nbatches);
	}
	pool_slots(p, ro->first + ro->count);
	for (i = ro->first; i < ro->first + ro->count; i++)
		pool_spawn(p->slots[i], true);
	(void)evtimer_add(ro->timer, &tv);
}

/* Whether every worker the batch started is online. */
static bool
rollout_online(const struct rollout *ro)
{
	const struct slot	*s;
	int			 i;

	for (i = ro->first; i < ro->first + ro->count; i++) {
		s = ro->pool->slots[i];
		if (s->next == NULL || s->next->state != W_ONLINE)
			return false;
	}
	return true;
}

/*
 * The batch is online: its workers take their slots over, the old ones
 * drain. The last batch also drains the slots past the new size, and the
 * rollout is done; any other waits for its old workers to exit.
 */
static void
rollout_swap(struct rollout *ro)
{
	struct pool	*p = ro->pool;
	struct slot	*s;
	struct worker	*old;
	int		 i;

	(void)event_del(ro->timer);
	for (i = ro->first; i < ro->first + ro->count; i++) {
		s = p->slots[i];
		if ((old = pool_take_over(s)) != NULL)
			ro->old_ids[ro->waiting++] = old->id;
	}
	if (ro->first + ro->count >= ro->target) {
		(void)pool_resize(p, ro->target);
		log_notice("service %s: generation %d online; older workers "
		    "drain", p->name, p->def->generation);
		rollout_end(ro, NULL);
	} else if (ro->waiting == 0)
		rollout_batch(ro);
}

static void
rollout_free(struct rollout *ro)
{
	ro->pool->rollout = NULL;
	event_free(ro->timer);
	free(ro->old_ids);
	free(ro);
}

/* The rollout ends, done or failed (err): its caller hears it. */
static void
rollout_end(struct rollout *ro, const char *err)
{
	struct pool	*p = ro->pool;
	struct worker	*w;
	void		(*done)(struct pool *, const char *) = ro->done;
	char		 msg[512];
	int		 i;

	if (err != NULL) {
		snprintf(msg, sizeof msg, "service %s: %s; the workers not yet "
		    "replaced keep serving", p->name, err);
		log_err("reload: %s", msg);
		for (i = ro->first; i < ro->first + ro->count &&
		    i < p->nslots; i++) {
			if ((w = p->slots[i]->next) == NULL)
				continue;
			/*
			 * Stopped as on a reload, not killed: one that listened
			 * may hold connections (shared, reuseport), which end
			 * as they would (shutdown_timeout_ms).
			 */
			log_info("service %s: worker %d [pid %d] (slot %d) of "
			    "the failed batch: stopping it", p->name, w->id,
			    (int)w->pid, w->slot);
			pool_drain_worker(w);
		}
		/*
		 * The slots replaced and the old ones stay; slots the reload
		 * added and never filled go, and a slot whose old worker
		 * died meanwhile starts it again.
		 */
		(void)pool_resize(p, ro->first > ro->old_size ? ro->first :
		    ro->old_size);
		pool_refill(p);
	}
	rollout_free(ro);
	done(p, err != NULL ? msg : NULL);
}

static void
rollout_worker_online(struct worker *w)
{
	struct rollout	*ro = w->pool->rollout;

	if (w->incoming && ro != NULL && rollout_online(ro))
		rollout_swap(ro);
}

/*
 * A worker is gone: one a batch started, before the batch took its slots
 * over, fails it; the last old one of a batch lets the next batch start.
 */
static void
rollout_worker_gone(struct worker *w)
{
	struct rollout	*ro = w->pool->rollout;
	char		 err[256];
	int		 i;

	if (ro == NULL)
		return;
	if (w->incoming && w->slot >= ro->first &&
	    w->slot < ro->first + ro->count) {
		if (w->cause != NULL && strcmp(w->cause, "ready") == 0)
			snprintf(err, sizeof err, "batch %d of %d failed: its "
			    "worker %d [pid %d] was not ready within %d ms "
			    "(ready_timeout_ms)", ro->batchno, ro->nbatches,
			    w->id, (int)w->pid, w->def->svc->ready_timeout_ms);
		else
			snprintf(err, sizeof err, "batch %d of %d failed: its "
			    "worker %d [pid %d] ended before %s", ro->batchno,
			    ro->nbatches, w->id, (int)w->pid, w->ever_online ?
			    "its batch took over" : "it was online");
		rollout_end(ro, err);
		return;
	}
	for (i = 0; i < ro->waiting; i++)
		if (ro->old_ids[i] == w->id)
			break;
	if (i == ro->waiting)
		return;
	ro->old_ids[i] = ro->old_ids[--ro->waiting];
	if (ro->waiting == 0)
		rollout_batch(ro);
}

/* What a rollout of p has done: {batch, batches, batch_size}, or null. */
json_t *
rollout_progress(const struct pool *p)
{
	if (p->rollout == NULL)
		return json_null();
	return json_pack("{s:i, s:i, s:i}", "batch", p->rollout->batchno,
	    "batches", p->rollout->nbatches, "batch_size", p->rollout->batch);
}

/* The master stops: every rollout ends, nobody told. */
void
rollout_stop_all(void)
{
	size_t	i;

	for (i = 0; master.gen != NULL && i < master.gen->npools; i++)
		if (master.gen->pools[i]->rollout != NULL)
			rollout_free(master.gen->pools[i]->rollout);
}

void
rollout_init(void)
{
	worker_hook(WEV_ONLINE, rollout_worker_online);
	worker_hook(WEV_GONE, rollout_worker_gone);
}
