/*
 * The master's state, in one place: struct master, whose gen is what
 * runs now (master.h), and the walks every other file makes over it.
 * Nothing here calls another file of the master: it is the floor the
 * others stand on.
 */

#include <sys/types.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "master.h"

struct master	 master = {
	.retired = TAILQ_HEAD_INITIALIZER(master.retired),
	.next_worker_id = 1,
	.next_generation = 1,
};

double
gen_elapsed_s(const struct timespec *since)
{
	struct timespec	now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - since->tv_sec) +
	    (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

/* Milliseconds from a to b (monotonic times). */
long
gen_ms_between(const struct timespec *a, const struct timespec *b)
{
	return (long)((b->tv_sec - a->tv_sec) * 1000 +
	    (b->tv_nsec - a->tv_nsec) / 1000000);
}

/* The pool of a service of the running generation, or NULL. */
struct pool *
gen_pool(const char *name)
{
	size_t	i;

	if (master.gen == NULL || name == NULL)
		return NULL;
	for (i = 0; i < master.gen->npools; i++)
		if (strcmp(master.gen->pools[i]->name, name) == 0)
			return master.gen->pools[i];
	return NULL;
}

/*
 * The pools in walking order: the generation's, then the retired ones.
 * NULL starts the walk and ends it.
 */
static struct pool *
gen_next_pool(struct pool *p)
{
	size_t	i;

	if (p == NULL)
		return master.gen != NULL && master.gen->npools > 0 ?
		    master.gen->pools[0] : TAILQ_FIRST(&master.retired);
	if (p->retired)
		return TAILQ_NEXT(p, entry);
	for (i = 0; i + 1 < master.gen->npools; i++)
		if (master.gen->pools[i] == p)
			return master.gen->pools[i + 1];
	return TAILQ_FIRST(&master.retired);
}

/*
 * Every worker of a pool, after w (NULL: the first): each slot's
 * serving one and the one starting for it, then the draining ones.
 */
static struct worker *
pool_next_worker(const struct pool *p, struct worker *w)
{
	struct slot	*s;
	int		 i = 0;

	if (w != NULL) {
		s = w->slot < p->nslots ? p->slots[w->slot] : NULL;
		if (s == NULL || (s->worker != w && s->next != w))
			return TAILQ_NEXT(w, entry);	/* draining */
		if (s->worker == w && s->next != NULL)
			return s->next;
		i = w->slot + 1;
	}
	for (; i < p->nslots; i++) {
		s = p->slots[i];
		if (s->worker != NULL)
			return s->worker;
		if (s->next != NULL)
			return s->next;
	}
	return TAILQ_FIRST(&p->draining);
}

/* Every worker of every pool, draining ones too. NULL starts and ends. */
struct worker *
gen_next_worker(struct worker *w)
{
	struct pool	*p;
	struct worker	*n;

	if (w != NULL) {
		if ((n = pool_next_worker(w->pool, w)) != NULL)
			return n;
		p = gen_next_pool(w->pool);
	} else
		p = gen_next_pool(NULL);
	for (; p != NULL; p = gen_next_pool(p))
		if ((n = pool_next_worker(p, NULL)) != NULL)
			return n;
	return NULL;
}

struct worker *
gen_worker_by_id(int id)
{
	struct worker	*w;

	for (w = gen_next_worker(NULL); w != NULL; w = gen_next_worker(w))
		if (w->id == id)
			return w;
	return NULL;
}

struct worker *
gen_worker_by_pid(pid_t pid)
{
	struct worker	*w;

	for (w = gen_next_worker(NULL); w != NULL; w = gen_next_worker(w))
		if (w->pid == pid)
			return w;
	return NULL;
}

/* Slots wanted, over every pool of the generation. */
int
gen_slots(void)
{
	size_t	i;
	int	n = 0;

	for (i = 0; master.gen != NULL && i < master.gen->npools; i++)
		n += master.gen->pools[i]->size;
	return n;
}

/* Worker processes alive, draining ones and retired pools' too. */
int
gen_alive(void)
{
	struct worker	*w;
	int		 n = 0;

	for (w = gen_next_worker(NULL); w != NULL; w = gen_next_worker(w))
		if (w->state != W_DEAD)
			n++;
	return n;
}

/* Slots of every pool whose worker serves now. */
int
gen_online(void)
{
	size_t	i;
	int	n = 0;

	for (i = 0; master.gen != NULL && i < master.gen->npools; i++)
		n += gen_pool_online(master.gen->pools[i]);
	return n;
}

/* Every slot of every pool has its worker online, and no reload runs. */
bool
gen_all_online(void)
{
	struct pool	*p;
	size_t		 i;

	for (i = 0; master.gen != NULL && i < master.gen->npools; i++) {
		p = master.gen->pools[i];
		if (p->rollout != NULL || gen_pool_online(p) < p->size)
			return false;
	}
	return master.gen != NULL;
}

const struct nc_config *
gen_config(void)
{
	return master.gen->conf->cfg;
}

/*
 * Whether a reload, a scale or an upgrade runs (or the master stops):
 * why, then, in why.
 */
bool
gen_busy(char *why, size_t len)
{
	if (master.stopping)
		snprintf(why, len, "netclusterd is stopping");
	else if (master.operation != NULL && strcmp(master.operation,
	    "scale") == 0)
		snprintf(why, len, "a scale is under way; try again once it "
		    "is done");
	else if (master.operation != NULL)
		snprintf(why, len, "a reload or an upgrade is already "
		    "running; try again once it is done");
	return master.stopping || master.operation != NULL;
}

int
gen_shutdown_ms(void)
{
	return master.gen->conf->cfg->shutdown_timeout_ms;
}

/* w serves: online, and heard of lately where it is asked (heartbeat.c). */
bool
gen_worker_serves(const struct worker *w)
{
	return w != NULL && w->state == W_ONLINE && !w->silent;
}

/* A pool's live processes: its slots' and its draining ones. */
int
gen_pool_alive(const struct pool *p)
{
	struct worker	*w;
	int		 n = 0;

	for (w = pool_next_worker(p, NULL); w != NULL;
	    w = pool_next_worker(p, w))
		if (w->state != W_DEAD)
			n++;
	return n;
}

/* A pool's slots whose worker serves now. */
int
gen_pool_online(const struct pool *p)
{
	int	i, n = 0;

	for (i = 0; i < p->nslots && i < p->size; i++)
		if (gen_worker_serves(p->slots[i]->worker))
			n++;
	return n;
}
