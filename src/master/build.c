/*
 * The one builder of the master's state (relayd's parent_configure does
 * the same for start and reload): a new generation is built aside from
 * the running one (listeners bound, kept or grown; the metrics and agent
 * listeners bound) and swapped in by one pointer. Startup, a reload, a
 * reload of one service, a scale and the adoption after an upgrade all
 * come through here. A build that fails changes nothing: what it bound
 * is closed, and the running generation serves on.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "master.h"

/* Built aside: per pool of the new generation, what it will run. */
struct build_pool {
	struct pool	*pool;
	bool		 made;		/* new: freed on abort */
	struct pooldef	*def;		/* NULL: it keeps its own */
	int		 size;
};

static struct build_pool *pending;	/* of the build being made */
static unsigned		 serial;	/* of the build being made */

static struct generation *
build_gen(struct conf *conf, size_t npools)
{
	struct generation	*g;

	if ((g = calloc(1, sizeof *g)) == NULL ||
	    (g->pools = calloc(npools + 1, sizeof *g->pools)) == NULL) {
		free(g);
		return NULL;
	}
	g->conf = conf_ref(conf);
	g->npools = npools;
	return g;
}

/* Frees the generation's own arrays and references, not its pools. */
void
build_free(struct generation *g)
{
	size_t	i;

	if (g == NULL)
		return;
	for (i = 0; i < g->nlisteners; i++)
		listener_unref(g->listeners[i]);
	free(g->listeners);
	free(g->pools);
	conf_unref(g->conf);
	free(g);
}

/* The listeners of every pool of g, each once, held by g. */
static int
build_listeners(struct generation *g)
{
	const struct pooldef	*d;
	size_t			 i, j, n = 0;

	for (i = 0; i < g->npools; i++) {
		d = pending[i].def != NULL ? pending[i].def : g->pools[i]->def;
		n += d->nlisteners;
	}
	if ((g->listeners = calloc(n + 1, sizeof *g->listeners)) == NULL)
		return -1;
	for (i = 0; i < g->npools; i++) {
		d = pending[i].def != NULL ? pending[i].def : g->pools[i]->def;
		for (j = 0; j < d->nlisteners; j++)
			g->listeners[g->nlisteners++] =
			    listener_ref(d->listeners[j]);
	}
	return 0;
}

/*
 * What svc of conf runs, its listeners bound or kept: the pooldef, or
 * NULL with a message. Only a build of every service (any) may take
 * another service's socket over.
 */
static struct pooldef *
build_def(struct conf *conf, const struct nc_service *svc, int size,
    bool any, char *err, size_t errlen)
{
	struct listener	**ls;
	struct pooldef	 *d = NULL;
	size_t		  i, n = 0;

	if ((ls = calloc(svc->nlisten + 1, sizeof *ls)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (i = 0; i < svc->nlisten; i++) {
		if ((ls[n] = listener_get(conf, svc, &svc->listen[i], size,
		    serial, any, err, errlen)) == NULL)
			goto out;
		n++;
	}
	if ((d = pooldef_new(conf, svc, ls, n, 0)) == NULL)
		snprintf(err, errlen, "out of memory");
out:
	for (i = 0; i < n; i++)
		listener_unref(ls[i]);
	free(ls);
	return d;
}

static int
build_all(struct build *b, char *err, size_t errlen)
{
	struct nc_config	*cfg = b->conf->cfg;
	struct nc_service	*svc;
	size_t			 i;

	for (i = 0; i < cfg->nservices; i++) {
		svc = &cfg->services[i];
		if (master.cli_workers > 0 && !svc->has_workers)
			svc->workers = master.cli_workers;
		pending[i].pool = gen_pool(svc->name);
		if (pending[i].pool == NULL) {
			pending[i].pool = pool_new(svc->name);
			pending[i].made = true;
		}
		pending[i].size = svc->workers;
		if ((pending[i].def = build_def(b->conf, svc, svc->workers,
		    true, err, errlen)) == NULL)
			return -1;
		b->gen->pools[i] = pending[i].pool;
		b->renew[i] = true;
	}
	return endpoint_prepare(cfg, err, errlen);
}

/* The running pools as they are, but what b changes of one. */
static int
build_one(struct build *b, char *err, size_t errlen)
{
	struct nc_service	*svc = NULL;
	struct pool		*p;
	size_t			 i, k;

	for (i = 0; i < master.gen->npools; i++) {
		p = b->gen->pools[i] = master.gen->pools[i];
		pending[i].pool = p;
		pending[i].size = p->size;
		if (strcmp(p->name, b->service) != 0)
			continue;
		if (b->kind == BUILD_SCALE) {
			pending[i].size = b->size;
			for (k = 0; k < p->def->nlisteners; k++)
				if (listener_grow(p->def->listeners[k],
				    b->size, err, errlen) == -1)
					return -1;
			continue;
		}
		for (k = 0; k < b->conf->cfg->nservices; k++)
			if (strcmp(b->conf->cfg->services[k].name,
			    b->service) == 0)
				svc = &b->conf->cfg->services[k];
		if (svc == NULL) {
			snprintf(err, errlen, "service %s is not in %s: reload "
			    "every service to remove it", b->service,
			    b->conf->cfg->file);
			return -1;
		}
		if (master.cli_workers > 0 && !svc->has_workers)
			svc->workers = master.cli_workers;
		pending[i].size = svc->workers;
		if ((pending[i].def = build_def(b->conf, svc, svc->workers,
		    false, err, errlen)) == NULL)
			return -1;
		b->renew[i] = true;
	}
	return 0;
}

/*
 * Builds b->gen aside: 0, or -1 with a message and nothing changed.
 * BUILD_ALL takes b->conf for every pool (and the top-level settings);
 * BUILD_SERVICE takes b->conf's definition of b->service only; BUILD_SCALE
 * gives b->service b->size slots.
 */
int
build_prepare(struct build *b, char *err, size_t errlen)
{
	size_t	n;

	n = b->kind == BUILD_ALL ? b->conf->cfg->nservices :
	    master.gen->npools;
	serial++;
	if (b->kind != BUILD_ALL && gen_pool(b->service) == NULL) {
		snprintf(err, errlen, "no service named \"%s\"", b->service);
		return -1;
	}
	if ((pending = calloc(n + 1, sizeof *pending)) == NULL ||
	    (b->renew = calloc(n + 1, sizeof *b->renew)) == NULL ||
	    (b->gen = build_gen(b->kind == BUILD_ALL ? b->conf :
	    master.gen->conf, n)) == NULL) {
		snprintf(err, errlen, "out of memory");
		build_abort(b);
		return -1;
	}
	if ((b->kind == BUILD_ALL ? build_all(b, err, errlen) :
	    build_one(b, err, errlen)) == -1 || build_listeners(b->gen) == -1) {
		if (b->gen->listeners == NULL && err[0] == '\0')
			snprintf(err, errlen, "out of memory");
		build_abort(b);
		return -1;
	}
	return 0;
}

/* Undoes build_prepare(): what it bound closes. */
void
build_abort(struct build *b)
{
	size_t	i;

	for (i = 0; pending != NULL && b->gen != NULL &&
	    i < b->gen->npools; i++) {
		pooldef_unref(pending[i].def);
		if (pending[i].made)
			pool_free(pending[i].pool);
	}
	if (b->kind == BUILD_ALL)
		endpoint_abort();
	/*
	 * A reuseport listener kept may have grown a socket per slot before
	 * the build failed: the kernel steers connections into those too,
	 * so the master serves them, as it does a slot without a worker.
	 */
	for (i = 0; master.gen != NULL && i < master.gen->nlisteners; i++)
		if (handoff_events(master.gen->listeners[i]) == -1)
			fatalx("out of memory");
	handoff_accepting();
	free(pending);
	pending = NULL;
	build_free(b->gen);
	b->gen = NULL;
	free(b->renew);
	b->renew = NULL;
}

/* Whether g has l. */
static bool
build_has(const struct generation *g, const struct listener *l)
{
	size_t	i;

	for (i = 0; g != NULL && i < g->nlisteners; i++)
		if (g->listeners[i] == l)
			return true;
	return false;
}

static bool
build_has_pool(const struct generation *g, const struct pool *p)
{
	size_t	i;

	for (i = 0; g != NULL && i < g->npools; i++)
		if (g->pools[i] == p)
			return true;
	return false;
}

/*
 * Swaps the built generation in. Each renewed pool runs its new def from
 * now on (a rollout, reload.c, brings its slots over); listeners take
 * their new service's settings and events; pools and listeners the new
 * generation left stop (pools drain, listeners accept no more and close
 * with the last worker that holds them).
 */
void
build_commit(struct build *b)
{
	struct generation	*old = master.gen, *g = b->gen;
	struct listener		*l;
	size_t			 i, j;
	int			 generation = 0;

	for (i = 0; i < g->npools; i++) {
		if (pending[i].def == NULL)
			continue;
		if (generation == 0)
			generation = master.next_generation++;
		pending[i].def->generation = generation;
		pool_set(g->pools[i], pending[i].def, pending[i].size);
		for (j = 0; j < pending[i].def->nlisteners; j++) {
			l = pending[i].def->listeners[j];
			listener_claim(l, g->pools[i], pending[i].def->conf,
			    pending[i].def->svc, &pending[i].def->svc->listen[j]);
		}
		pooldef_unref(pending[i].def);
	}
	master.gen = g;
	for (i = 0; i < g->nlisteners; i++)
		if (handoff_events(g->listeners[i]) == -1)
			fatalx("out of memory");
	for (i = 0; old != NULL && i < old->nlisteners; i++)
		if (!build_has(g, old->listeners[i])) {
			log_info("listener %s retired",
			    old->listeners[i]->bound);
			handoff_quiet(old->listeners[i]);
		}
	for (i = 0; old != NULL && i < old->npools; i++)
		if (!build_has_pool(g, old->pools[i]))
			pool_retire(old->pools[i]);
	if (b->kind == BUILD_SCALE)
		for (i = 0; i < g->npools; i++)
			if (strcmp(g->pools[i]->name, b->service) == 0)
				(void)pool_resize(g->pools[i], pending[i].size);
	if (b->kind == BUILD_ALL)
		endpoint_commit();
	build_free(old);
	free(pending);
	pending = NULL;
	b->gen = NULL;
	handoff_accepting();
}
