/*
 * Reloads (SIGHUP, netclusterctl reload [SERVICE] [--batch K]) and
 * scaling (netclusterctl scale). One at a time, never blocking the loop:
 * the file is read, checked in a child (check.c), built aside and
 * swapped in (build.c); then each renewed pool rolls its slots over to
 * the new definition, K slots at a time (a rollout): K new workers
 * start beside the old ones; once all K are online they take their
 * slots over and the K old ones are told to stop; the next batch starts
 * once those exited (their shutdown_timeout_ms bounds it). So a pool of
 * N never has more than N + K workers alive. A batch that does not come
 * online (ROLLOUT_TIMEOUT_S, or one of it dies first) stops the rollout
 * there: its new workers go, the slots not yet replaced keep their old
 * workers, and the answer says which batch failed and why.
 */

#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "master.h"

#define MAX_DRAINING	2	/* older generations of a pool at once */

struct rollout {
	struct pool	*pool;
	int		 batch;		/* K */
	int		 target;	/* slots of the new definition */
	int		 first;		/* the batch's first slot */
	int		 count;		/* and how many */
	int		 batchno;	/* 1.. */
	int		 nbatches;
	int		 waiting;	/* old workers of the batch to exit */
	int		*old_ids;
	struct event	*timer;
};

/* Who waits for the reload (or the upgrade's handover) to end. */
struct waiter {
	void		(*done)(const char *, void *);
	void		*arg;
	struct waiter	*next;
};

static struct {
	bool		 busy;		/* a reload or a scale runs */
	bool		 checking;	/* its check runs */
	struct nc_config *cfg;		/* being checked */
	char		*service;	/* reload SERVICE, or NULL */
	int		 batch;		/* --batch, or 0 */
	int		 rollouts;	/* under way */
	char		*error;		/* the first rollout that failed */
	struct check_job *job;
	struct waiter	*waiters;
} r;

/* A scale waiting for the slots it added to be online. */
static struct {
	struct pool	*pool;
	int		 from, to;
	struct event	*timer;
	void		(*done)(const char *, json_t *, void *);
	void		*arg;
} sc;

static void	rollout_batch(struct rollout *);
static void	rollout_end(struct rollout *, const char *);

bool
reload_busy(void)
{
	return r.busy || upgrade_running();
}

static void
waiters_add(void (*done)(const char *, void *), void *arg)
{
	struct waiter	*w;

	if ((w = calloc(1, sizeof *w)) == NULL) {
		done("out of memory", arg);
		return;
	}
	w->done = done;
	w->arg = arg;
	w->next = r.waiters;
	r.waiters = w;
}

/* The reload ended (error: how it failed): everyone waiting hears it. */
static void
reload_finish(const char *error)
{
	struct waiter	*w;
	char		*msg = error != NULL ? strdup(error) : NULL;

	r.busy = false;
	stats_reload_end(error == NULL);
	free(r.service);
	r.service = NULL;
	free(r.error);
	r.error = NULL;
	if (!master.stopping) {
		notify_ready();
		if (error != NULL)
			notify_status("%s", msg != NULL ? msg : error);
	}
	while ((w = r.waiters) != NULL) {
		r.waiters = w->next;
		w->done(msg != NULL ? msg : error, w->arg);
		free(w);
	}
	free(msg);
}

/* The new configuration is refused: the running one stays. */
static void
reload_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
reload_fail(const char *fmt, ...)
{
	char	err[1024], answer[1040], *nl;
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(err, sizeof err, fmt, ap);
	va_end(ap);
	if ((nl = strchr(err, '\n')) != NULL && nl[1] == '\0')
		*nl = '\0';
	log_err("reload failed, the running configuration stays: %s", err);
	if (r.cfg != NULL)
		nc_config_free(r.cfg);
	r.cfg = NULL;
	snprintf(answer, sizeof answer, "reload failed: %s", err);
	reload_finish(answer);
}

/* Older generations still draining in p. */
static int
draining_generations(const struct pool *p)
{
	struct worker	*w;
	int		 gens[8], n = 0, i;

	TAILQ_FOREACH(w, &p->draining, entry) {
		for (i = 0; i < n && gens[i] != w->generation; i++)
			;
		if (i == n && n < 8)
			gens[n++] = w->generation;
	}
	return n;
}

/* Starts a rollout of p to its new definition, batch at a time. */
static void
rollout_start(struct pool *p, int batch)
{
	struct rollout	*ro;

	if ((ro = calloc(1, sizeof *ro)) == NULL ||
	    (ro->old_ids = calloc((size_t)p->size + 1,
	    sizeof *ro->old_ids)) == NULL)
		fatalx("out of memory");
	if (batch <= 0)
		batch = p->def->svc->reload_batch;
	if (batch <= 0 || batch > p->size)
		batch = p->size;
	ro->pool = p;
	ro->batch = batch;
	ro->target = p->size;
	ro->nbatches = (p->size + batch - 1) / batch;
	p->rollout = ro;
	r.rollouts++;
	if (batch < p->size)
		log_notice("service %s: replacing %d workers, %d at a time",
		    p->name, p->size, batch);
	rollout_batch(ro);
}

static void
rollout_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rollout	*ro = arg;
	char		 err[256];

	(void)fd;
	(void)what;
	snprintf(err, sizeof err, "batch %d of %d (slots %d to %d) is not "
	    "online after %d s", ro->batchno, ro->nbatches, ro->first,
	    ro->first + ro->count - 1, ROLLOUT_TIMEOUT_S);
	rollout_end(ro, err);
}

/* The next K slots get their new workers beside the old ones. */
static void
rollout_batch(struct rollout *ro)
{
	struct pool	*p = ro->pool;
	struct timeval	 tv = { ROLLOUT_TIMEOUT_S, 0 };
	int		 i;

	ro->first += ro->count;
	ro->count = ro->target - ro->first < ro->batch ?
	    ro->target - ro->first : ro->batch;
	ro->batchno++;
	ro->waiting = 0;
	if (ro->nbatches > 1)
		notify_status("reloading: service %s, batch %d of %d",
		    p->name, ro->batchno, ro->nbatches);
	(void)pool_resize(p, p->size);	/* its slots exist */
	for (i = ro->first; i < ro->first + ro->count; i++)
		pool_spawn(p->slots[i], true);
	if (ro->timer == NULL && (ro->timer = evtimer_new(master.base,
	    rollout_timeout_cb, ro)) == NULL)
		fatalx("out of memory");
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
		old = s->worker;
		s->worker = s->next;
		s->next = NULL;
		s->worker->incoming = false;
		pooldef_unref(s->def);
		s->def = pooldef_ref(p->def);
		s->deaths = 0;
		(void)event_del(s->restart_ev);
		if (old != NULL) {
			pool_drain_worker(old);
			ro->old_ids[ro->waiting++] = old->id;
		}
	}
	if (ro->first + ro->count >= ro->target) {
		(void)pool_resize(p, ro->target);
		log_notice("service %s: generation %d online; older workers "
		    "drain", p->name, p->def->generation);
		rollout_end(ro, NULL);
		return;
	}
	if (ro->waiting == 0)
		rollout_batch(ro);
}

static void
rollout_free(struct rollout *ro)
{
	if (ro->timer != NULL)
		event_free(ro->timer);
	free(ro->old_ids);
	free(ro);
}

/* The rollout ends, done or failed (err): the reload hears it. */
static void
rollout_end(struct rollout *ro, const char *err)
{
	struct pool	*p = ro->pool;
	struct worker	*w;
	char		 msg[512];
	int		 i;

	p->rollout = NULL;
	if (err != NULL) {
		snprintf(msg, sizeof msg, "service %s: %s; the workers not yet "
		    "replaced keep serving", p->name, err);
		log_err("reload: %s", msg);
		for (i = ro->first; i < ro->first + ro->count &&
		    i < p->nslots; i++) {
			if ((w = p->slots[i]->next) == NULL)
				continue;
			pool_drain_worker(w);
			worker_kill(w, "its batch did not come online");
		}
		if (r.error == NULL)
			r.error = strdup(msg);
	}
	rollout_free(ro);
	if (--r.rollouts == 0 && r.busy)
		reload_finish(r.error);
}

static void
reload_worker_online(struct worker *w)
{
	struct rollout	*ro = w->pool->rollout;

	if (w->incoming && ro != NULL && rollout_online(ro))
		rollout_swap(ro);
	if (sc.pool == w->pool && pool_online(sc.pool) >= sc.to) {
		(void)event_del(sc.timer);
		sc.pool = NULL;
		sc.done(NULL, json_pack("{s:s, s:i, s:i}", "service",
		    w->pool->name, "workers", sc.to, "file_workers",
		    w->pool->file_size), sc.arg);
	}
}

/*
 * A worker is gone: one of a batch that never came online fails it; the
 * last old one of a batch lets the next one start.
 */
static void
reload_worker_gone(struct worker *w)
{
	struct rollout	*ro = w->pool->rollout;
	char		 err[256];
	int		 i;

	if (ro == NULL)
		return;
	if (w->incoming && !w->ever_online && w->slot >= ro->first &&
	    w->slot < ro->first + ro->count) {
		snprintf(err, sizeof err, "batch %d of %d failed: its worker "
		    "%d [pid %d] ended before it was online", ro->batchno,
		    ro->nbatches, w->id, (int)w->pid);
		rollout_end(ro, err);
		return;
	}
	for (i = 0; i < ro->waiting; i++)
		if (ro->old_ids[i] == w->id)
			break;
	if (i == ro->waiting)
		return;
	ro->old_ids[i] = ro->old_ids[--ro->waiting];
	if (ro->waiting == 0 && rollout_online(ro) == false &&
	    ro->first + ro->count < ro->target)
		rollout_batch(ro);
}

/* Starts a rollout of every pool (after an upgrade adopted the old). */
void
reload_start_all(void)
{
	size_t	i;

	r.busy = true;
	for (i = 0; i < master.gen->npools; i++)
		rollout_start(master.gen->pools[i], 0);
	if (r.rollouts == 0)
		reload_finish(NULL);
}

/* The configuration was checked (errors: not): built, swapped, rolled. */
static void
reload_checked(const char *errors, void *arg)
{
	struct build	 b;
	struct conf	*conf;
	char		 err[512];
	size_t		 i;

	(void)arg;
	r.job = NULL;
	if (errors != NULL) {
		reload_fail("%s", errors);
		return;
	}
	if ((conf = conf_new(r.cfg)) == NULL) {
		reload_fail("out of memory");
		return;
	}
	r.cfg = NULL;
	memset(&b, 0, sizeof b);
	b.kind = r.service != NULL ? BUILD_SERVICE : BUILD_ALL;
	b.conf = conf;
	b.service = r.service;
	err[0] = '\0';
	if (build_prepare(&b, err, sizeof err) == -1) {
		conf_unref(conf);
		reload_fail("%s", err);
		return;
	}
	build_commit(&b);
	conf_unref(conf);
	if (b.kind == BUILD_ALL)
		nc_set_log_level(master.cli_level > 0 ? master.cli_level :
		    gen_config()->log_level);
	for (i = 0; i < master.gen->npools; i++)
		if (b.renew[i])
			rollout_start(master.gen->pools[i], r.batch);
	free(b.renew);
	notify_status("reloading: generation %d starting",
	    master.next_generation - 1);
	if (r.rollouts == 0)
		reload_finish(NULL);
}

/*
 * Reload (service NULL: every service; else that one only, its others
 * keeping their workers), batch workers at a time (0: each service's
 * reload_batch, else its whole pool). The file is checked first; if it
 * is bad, the running configuration keeps serving and the error goes to
 * the log, STATUS= and done. done(NULL) once every rollout is online.
 */
void
reload(const char *service, int batch, void (*done)(const char *, void *),
    void *arg)
{
	char	*errors = NULL, err[256];
	size_t	 i;

	if (master.stopping) {
		done("netclusterd is stopping", arg);
		return;
	}
	if (r.busy || master.upgrading || upgrade_running()) {
		done("a reload or an upgrade is already running; try again "
		    "once it is done", arg);
		return;
	}
	for (i = 0; i < master.gen->npools; i++) {
		if (service != NULL && strcmp(service,
		    master.gen->pools[i]->name) != 0)
			continue;
		if (draining_generations(master.gen->pools[i]) >=
		    MAX_DRAINING) {
			snprintf(err, sizeof err, "%d older generations are "
			    "still draining (up to shutdown_timeout_ms); try "
			    "again later", draining_generations(
			    master.gen->pools[i]));
			done(err, arg);
			return;
		}
	}
	r.busy = true;
	r.batch = batch;
	r.service = service != NULL ? strdup(service) : NULL;
	waiters_add(done, arg);
	notify_reloading();
	stats_reload_begin();
	if (service != NULL)
		log_notice("reloading service %s from %s", service,
		    gen_config()->file);
	else
		log_notice("reloading %s", gen_config()->file);
	if (nc_config_load(gen_config()->file, &r.cfg, &errors) != 0) {
		reload_fail("%s", errors != NULL ? errors : "?");
		free(errors);
		return;
	}
	if ((r.job = check_start(r.cfg, reload_checked, NULL)) == NULL)
		reload_fail("cannot check the configuration: out of memory");
}

/* done() once the rollouts under way are online (at once if none). */
void
reload_on_handover(void (*done)(const char *, void *), void *arg)
{
	if (!r.busy) {
		done(NULL, arg);
		return;
	}
	waiters_add(done, arg);
}

/* What a rollout of p has done: {batch, batches, batch_size}, or null. */
json_t *
reload_progress(const struct pool *p)
{
	if (p->rollout == NULL)
		return json_null();
	return json_pack("{s:i, s:i, s:i}", "batch", p->rollout->batchno,
	    "batches", p->rollout->nbatches, "batch_size", p->rollout->batch);
}

static void
scale_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	char	err[256];

	(void)fd;
	(void)what;
	(void)arg;
	snprintf(err, sizeof err, "service %s has %d workers now, but only "
	    "%d online after %d s", sc.pool->name, sc.to,
	    pool_online(sc.pool), ROLLOUT_TIMEOUT_S);
	sc.pool = NULL;
	sc.done(err, NULL, sc.arg);
}

/*
 * netclusterctl scale: service gets size slots (or its size + delta).
 * done(error, reply, arg) once the slots added are online (at once for a
 * scale down: the removed ones are told to stop).
 */
void
reload_scale(const char *service, int size, int delta,
    void (*done)(const char *, json_t *, void *), void *arg)
{
	struct timeval	 tv = { ROLLOUT_TIMEOUT_S, 0 };
	struct build	 b;
	struct pool	*p = NULL;
	char		 err[256];
	int		 from;

	err[0] = '\0';
	if (master.stopping)
		snprintf(err, sizeof err, "netclusterd is stopping");
	else if (r.busy || sc.pool != NULL || master.upgrading ||
	    upgrade_running())
		snprintf(err, sizeof err, "a reload, a scale or an upgrade is "
		    "already running; try again once it is done");
	else if ((p = gen_pool(service)) == NULL)
		snprintf(err, sizeof err, "no service named \"%s\"", service);
	else if ((size = size > 0 ? size : p->size + delta) < 1 ||
	    size > 1024)
		snprintf(err, sizeof err, "service %s would have %d workers; "
		    "a pool has 1 to 1024", service, size);
	if (err[0] != '\0') {
		done(err, NULL, arg);
		return;
	}
	from = p->size;
	memset(&b, 0, sizeof b);
	b.kind = BUILD_SCALE;
	b.service = service;
	b.size = size;
	if (size != from && build_prepare(&b, err, sizeof err) == -1) {
		done(err, NULL, arg);
		return;
	}
	if (size != from) {
		log_notice("service %s: scaled from %d to %d workers (the file "
		    "says %d)", service, from, size, p->file_size);
		build_commit(&b);
		free(b.renew);
	}
	if (size <= from) {
		done(NULL, json_pack("{s:s, s:i, s:i}", "service", service,
		    "workers", size, "file_workers", p->file_size), arg);
		return;
	}
	sc.pool = p;
	sc.from = from;
	sc.to = size;
	sc.done = done;
	sc.arg = arg;
	if (sc.timer == NULL && (sc.timer = evtimer_new(master.base,
	    scale_timeout_cb, NULL)) == NULL)
		fatalx("out of memory");
	(void)evtimer_add(sc.timer, &tv);
}

/* The master stops: no reload goes on; whoever waits hears why. */
void
reload_stop(void)
{
	size_t	i;

	check_cancel(r.job);
	r.job = NULL;
	if (r.cfg != NULL)
		nc_config_free(r.cfg);
	r.cfg = NULL;
	for (i = 0; master.gen != NULL && i < master.gen->npools; i++)
		if (master.gen->pools[i]->rollout != NULL) {
			rollout_free(master.gen->pools[i]->rollout);
			master.gen->pools[i]->rollout = NULL;
		}
	r.rollouts = 0;
	if (r.busy)
		reload_finish("stopping");
	if (sc.pool != NULL) {
		sc.pool = NULL;
		sc.done("stopping", NULL, sc.arg);
	}
	if (sc.timer != NULL)
		event_free(sc.timer);
	sc.timer = NULL;
}

void
reload_init(void)
{
	worker_hook(WEV_ONLINE, reload_worker_online);
	worker_hook(WEV_GONE, reload_worker_gone);
}
