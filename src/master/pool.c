/*
 * Pools: a service's workers, one per slot. A slot's worker that dies is
 * replaced, at once when it had served or was killed from outside, with
 * back-off when it keeps dying young; only that slot, of that pool, is
 * touched. A pool grows or shrinks by slots (netclusterctl scale): the
 * slots added start, the ones removed (the highest) drain as on a stop,
 * and every other worker keeps its pid. A reload's new workers start in
 * their slots beside the old ones (reload.c) and take the slot over
 * once online.
 */

#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "master.h"
#include "nc-ipc.h"

#define BACKOFF_START_MS	100
#define BACKOFF_MAX_MS		30000
#define BACKOFF_RESET_S		60

static void	slot_restart_cb(evutil_socket_t, short, void *);

struct pool *
pool_new(const char *name)
{
	struct pool	*p;

	if ((p = calloc(1, sizeof *p)) == NULL ||
	    (p->name = strdup(name)) == NULL)
		fatalx("out of memory");
	TAILQ_INIT(&p->draining);
	return p;
}

static struct slot *
slot_new(struct pool *p, int index)
{
	struct slot	*s;

	if ((s = calloc(1, sizeof *s)) == NULL)
		fatalx("out of memory");
	s->pool = p;
	s->index = index;
	s->def = pooldef_ref(p->def);
	s->backoff_ms = BACKOFF_START_MS;
	if ((s->restart_ev = evtimer_new(master.base, slot_restart_cb, s)) ==
	    NULL)
		fatalx("out of memory");
	return s;
}

static void
slot_free(struct slot *s)
{
	event_free(s->restart_ev);
	pooldef_unref(s->def);
	free(s);
}

/* p runs def from now on, with size slots wanted (the file's count). */
void
pool_set(struct pool *p, struct pooldef *def, int size)
{
	struct pooldef	*old = p->def;

	p->def = pooldef_ref(def);
	pooldef_unref(old);
	p->size = p->file_size = size;
}

void
pool_free(struct pool *p)
{
	int	i;

	for (i = 0; i < p->nslots; i++)
		slot_free(p->slots[i]);
	free(p->slots);
	pooldef_unref(p->def);
	free(p->name);
	free(p);
}

/* Slots up to n exist (new ones run the pool's def); n may be 0. */
void
pool_slots(struct pool *p, int n)
{
	struct slot	**slots;

	if (n <= p->nslots)
		return;
	if ((slots = reallocarray(p->slots, (size_t)n, sizeof *slots)) == NULL)
		fatalx("out of memory");
	p->slots = slots;
	for (; p->nslots < n; p->nslots++)
		p->slots[p->nslots] = slot_new(p, p->nslots);
}

/* Starts a worker for s running def: as its worker, or as the next. */
static void
pool_spawn_def(struct slot *s, struct pooldef *def, bool incoming)
{
	const struct nc_service	*svc = def->svc;
	struct worker		*w;
	int			 sv[2] = { -1, -1 };

	if ((svc->handler != NC_HANDLER_PROGRAM ||
	    svc->sockets == NC_SOCKETS_CLUSTER) && nc_ipc_socketpair(sv) == -1)
		fatalx("socketpair: %s", strerror(errno));
	w = worker_new(s->pool, s, def);
	w->incoming = incoming;
	if (incoming)
		s->next = w;
	else
		s->worker = w;
	if (svc->handler == NC_HANDLER_PROGRAM) {
		if (sv[1] != -1 && (w->granted = calloc(MAX_LISTENER_IDS,
		    sizeof *w->granted)) == NULL)
			fatalx("out of memory");
		w->pid = program_spawn(w, sv[1]);
	} else
		w->pid = worker_exec(w, sv[1]);
	if (sv[1] != -1) {
		close(sv[1]);
		worker_attach(w, sv[0]);
	}
	worker_event(w, WEV_STARTED);
	if (svc->handler == NC_HANDLER_PROGRAM)
		log_info("service %s: worker %d [pid %d] (slot %d) started: %s",
		    s->pool->name, w->id, (int)w->pid, s->index,
		    svc->command[0]);
	else
		log_info("service %s: worker %d [pid %d] (slot %d) started",
		    s->pool->name, w->id, (int)w->pid, s->index);
}

/*
 * Starts a worker for s: as its worker, running what s runs, or
 * (incoming) as the one a reload starts beside it, running what the
 * pool runs now.
 */
void
pool_spawn(struct slot *s, bool incoming)
{
	pool_spawn_def(s, incoming ? s->pool->def : s->def, incoming);
}

/* A worker beside s's, running what s runs: its replacement (recycle). */
void
pool_renew(struct slot *s)
{
	pool_spawn_def(s, s->def, true);
}

/*
 * The worker starting beside s's takes the slot over, and runs what
 * the slot runs from now on; the old one drains. Returns the old one.
 */
struct worker *
pool_take_over(struct slot *s)
{
	struct worker	*old = s->worker;

	s->worker = s->next;
	s->next = NULL;
	s->worker->incoming = false;
	pooldef_unref(s->def);
	s->def = pooldef_ref(s->worker->def);
	s->deaths = 0;
	(void)event_del(s->restart_ev);
	if (old != NULL)
		pool_drain_worker(old);
	return old;
}

/*
 * Every worker starting beside a slot's (a recycle's replacement) goes:
 * a reload is about to start its own there.
 */
void
pool_cancel_next(struct pool *p)
{
	struct worker	*w;
	int		 i;

	for (i = 0; i < p->nslots; i++) {
		if ((w = p->slots[i]->next) == NULL)
			continue;
		if (p->slots[i]->worker != NULL)
			p->slots[i]->worker->cause = NULL;
		pool_drain_worker(w);
		worker_kill(w, "a reload replaces its slot");
	}
}

/* A pool's first workers: every slot up to its size that has none. */
void
pool_start(struct pool *p)
{
	int	i;

	pool_slots(p, p->size);
	for (i = 0; i < p->size; i++)
		if (p->slots[i]->worker == NULL && p->slots[i]->next == NULL)
			pool_spawn(p->slots[i], false);
}

/* w leaves its slot for the draining list and is told to stop. */
void
pool_drain_worker(struct worker *w)
{
	struct slot	*s;

	s = w->slot >= 0 && w->slot < w->pool->nslots ?
	    w->pool->slots[w->slot] : NULL;
	if (s != NULL && s->worker == w)
		s->worker = NULL;
	else if (s != NULL && s->next == w)
		s->next = NULL;
	else if (w->state == W_STOPPING || w->state == W_DEAD)
		return;		/* draining already */
	w->incoming = false;
	TAILQ_INSERT_TAIL(&w->pool->draining, w, entry);
	worker_stop(w);
}

/* Removes the slots from n up: their workers drain. */
static void
pool_cut(struct pool *p, int n)
{
	struct slot	*s;
	size_t		 i;

	while (p->nslots > n) {
		s = p->slots[--p->nslots];
		(void)event_del(s->restart_ev);
		if (s->next != NULL)
			pool_drain_worker(s->next);
		if (s->worker != NULL)
			pool_drain_worker(s->worker);
		slot_free(s);
	}
	for (i = 0; p->def != NULL && i < p->def->nlisteners; i++)
		listener_shrink(p->def->listeners[i], n);
}

/*
 * netclusterctl scale: size slots from now on (until a reload takes the
 * file's count again). Only the slots added start and only the ones
 * removed stop; the listeners grew already (build.c).
 */
int
pool_resize(struct pool *p, int size)
{
	int	i, old = p->size;

	p->size = size;
	if (size < p->nslots)
		pool_cut(p, size);
	pool_slots(p, size);
	for (i = old; i < size; i++)
		if (p->slots[i]->worker == NULL && p->slots[i]->next == NULL)
			pool_spawn(p->slots[i], false);
	return 0;
}

/* Every slot without a worker, and none on its way, starts one. */
void
pool_refill(struct pool *p)
{
	struct slot	*s;
	int		 i;

	for (i = 0; i < p->size && i < p->nslots; i++) {
		s = p->slots[i];
		if (s->worker == NULL && s->next == NULL &&
		    !evtimer_pending(s->restart_ev, NULL))
			pool_spawn(s, false);
	}
}

/* p is gone from the configuration: every worker drains, then p goes. */
void
pool_retire(struct pool *p)
{
	p->retired = true;
	p->size = 0;
	pool_cut(p, 0);
	TAILQ_INSERT_TAIL(&master.retired, p, entry);
	if (TAILQ_EMPTY(&p->draining)) {
		TAILQ_REMOVE(&master.retired, p, entry);
		pool_free(p);
	}
}

/* SIGTERM: every worker of every pool is told to stop; none restarts. */
void
pool_stop_all(void)
{
	struct worker	*w;
	size_t		 i;
	int		 k;

	for (i = 0; i < master.gen->npools; i++)
		for (k = 0; k < master.gen->pools[i]->nslots; k++)
			(void)event_del(master.gen->pools[i]->slots[k]->
			    restart_ev);
	for (w = gen_next_worker(NULL); w != NULL; w = gen_next_worker(w))
		worker_stop(w);
}

static void
slot_restart_cb(evutil_socket_t fd, short what, void *arg)
{
	struct slot	*s = arg;

	(void)fd;
	(void)what;
	/* A slot whose replacement is starting waits for it. */
	if (!master.stopping && s->worker == NULL && s->next == NULL)
		pool_spawn(s, false);
}

/*
 * s's worker ended with status after lived seconds: its next one starts
 * at once after a SIGKILL from outside to a worker that served (the OOM
 * killer, an operator: no crash loop), else after a back-off that grows
 * while it keeps dying young.
 */
static void
slot_restart(struct slot *s, const struct worker *w, int status, bool killed,
    double lived)
{
	pid_t	pid = w->pid;
	struct timeval	tv;
	char		why[64];
	bool		backoff;

	if (WIFSIGNALED(status))
		snprintf(why, sizeof why, "killed by signal %d",
		    WTERMSIG(status));
	else
		snprintf(why, sizeof why, "exited with status %d",
		    WEXITSTATUS(status));
	if (master.stopping) {
		log_info("service %s: worker [pid %d] (slot %d) %s",
		    s->pool->name, (int)pid, s->index, why);
		return;
	}
	if (lived >= BACKOFF_RESET_S) {
		s->deaths = 0;
		s->backoff_ms = BACKOFF_START_MS;
	}
	if (!killed)
		s->deaths++;
	s->restarts++;
	s->pool->restarts++;
	backoff = s->deaths > 1 && !killed;
	tv.tv_sec = backoff ? s->backoff_ms / 1000 : 0;
	tv.tv_usec = backoff ? (s->backoff_ms % 1000) * 1000 : 0;
	log_warnx("service %s: worker [pid %d] (slot %d) %s after %.1f s; "
	    "restarting in %ld ms", s->pool->name, (int)pid, s->index, why,
	    lived, (long)(tv.tv_sec * 1000 + tv.tv_usec / 1000));
	if (w->cause != NULL && strcmp(w->cause, "recycle") != 0)
		stats_restart_cause(s->pool->name, w->cause, w->cause_code);
	else
		stats_restart(s->pool->name, status);
	if (backoff) {
		stats_add("backoffs", s->pool->name, 1);
		s->backoff_ms = s->backoff_ms * 3 / 2;
		if (s->backoff_ms > BACKOFF_MAX_MS)
			s->backoff_ms = BACKOFF_MAX_MS;
	}
	(void)evtimer_add(s->restart_ev, &tv);
}

/*
 * SIGCHLD's news of pid: true when it was a worker. Everything it sent is
 * read, it leaves its place, and: a slot's worker is replaced; one a
 * reload started is not (reload.c hears it is gone); a draining one is
 * not, and a retired pool goes with its last worker.
 */
bool
pool_reaped(pid_t pid, int status)
{
	struct worker	*w;
	struct pool	*p;
	struct slot	*s;
	double		 lived;
	bool		 killed;

	if ((w = gen_worker_by_pid(pid)) == NULL)
		return false;
	p = w->pool;
	s = w->slot >= 0 && w->slot < p->nslots ? p->slots[w->slot] : NULL;
	/*
	 * A worker that served, killed by someone else, or by us as hung:
	 * no crash loop.
	 */
	killed = (w->state == W_ONLINE && WIFSIGNALED(status) &&
	    WTERMSIG(status) == SIGKILL) || (w->cause != NULL &&
	    strcmp(w->cause, "timeout") == 0);
	lived = gen_elapsed_s(&w->started);
	w->state = W_DEAD;
	worker_detach(w);
	if (w->program)
		program_close(w);
	if (s != NULL && s->worker == w) {
		s->worker = NULL;
		slot_restart(s, w, status, killed, lived);
	} else if (s != NULL && s->next == w) {
		s->next = NULL;
		log_warnx("service %s: worker %d [pid %d] (slot %d) of "
		    "generation %d %s %d before %s", p->name, w->id, (int)pid,
		    w->slot, w->generation, WIFSIGNALED(status) ?
		    "killed by signal" : "exited with status",
		    WIFSIGNALED(status) ? WTERMSIG(status) :
		    WEXITSTATUS(status), w->ever_online ? "its slot was its" :
		    "it was online");
	} else {
		TAILQ_REMOVE(&p->draining, w, entry);
		log_info("service %s: worker %d [pid %d] of generation %d %s "
		    "%d after draining", p->name, w->id, (int)pid,
		    w->generation, WIFSIGNALED(status) ?
		    "killed by signal" : "exited with status",
		    WIFSIGNALED(status) ? WTERMSIG(status) :
		    WEXITSTATUS(status));
	}
	worker_free(w);
	if (p->retired && TAILQ_EMPTY(&p->draining)) {
		TAILQ_REMOVE(&master.retired, p, entry);
		pool_free(p);
	}
	return true;
}

/* The workers, for an upgrade: their channels stay open across exec. */
json_t *
pool_export(void)
{
	struct worker	*w;
	json_t		*list, *e;

	if ((list = json_array()) == NULL)
		return NULL;
	for (w = gen_next_worker(NULL); w != NULL; w = gen_next_worker(w)) {
		if (w->state == W_DEAD || (w->ipc == NULL && !w->program))
			continue;
		e = json_pack("{s:s, s:i, s:i, s:i, s:i, s:s, s:b, s:b, s:b, "
		    "s:b, s:O*}", "service", w->pool->name, "pid", (int)w->pid,
		    "slot", w->slot, "id", w->id, "generation", w->generation,
		    "state", worker_state_name(w->state), "program",
		    w->program, "frames", w->frames, "heartbeat",
		    w->heartbeat, "beats", w->beats, "last_count",
		    w->last_count);
		if (e == NULL)
			continue;
		if (w->program) {
			program_export(w);
			(void)json_object_set_new(e, "output",
			    json_integer(w->out_fd));
			(void)json_object_set_new(e, "messages",
			    json_integer(broadcast_line_fd(w)));
		}
		if (w->ipc != NULL) {
			(void)fcntl(nc_ipc_fd(w->ipc), F_SETFD, 0);
			(void)json_object_set_new(e, "channel",
			    json_integer(nc_ipc_fd(w->ipc)));
		}
		(void)json_array_append_new(list, e);
	}
	return list;
}

/* Where an adopted worker goes: its slot, or the draining list. */
static void
pool_place(struct pool *p, struct worker *w, bool online)
{
	if (online && !p->retired && w->slot >= 0 && w->slot < p->size) {
		pool_slots(p, p->size);
		if (p->slots[w->slot]->worker == NULL) {
			p->slots[w->slot]->worker = w;
			return;
		}
	}
	TAILQ_INSERT_TAIL(&p->draining, w, entry);
	w->state = W_ONLINE;	/* what it was: stop() tells it */
	worker_stop(w);
}

static struct worker *
pool_adopt_one(json_t *e)
{
	struct pool	*p;
	struct worker	*w;
	const char	*name = json_string_value(json_object_get(e,
	    "service"));
	int		 fd;

	/*
	 * A master from before pools ran every service in each worker: its
	 * workers drain in a pool of their own, as a removed service's do.
	 */
	if (name == NULL)
		name = "(every service)";
	if ((p = gen_pool(name)) == NULL) {
		/* Its service is gone: a retired pool until it drained. */
		TAILQ_FOREACH(p, &master.retired, entry)
			if (strcmp(p->name, name) == 0)
				break;
		if (p == NULL) {
			p = pool_new(name);
			p->retired = true;
			TAILQ_INSERT_TAIL(&master.retired, p, entry);
		}
	}
	w = worker_new(p, NULL, p->def);	/* NULL: a pool retired here */
	w->generation = (int)json_integer_value(json_object_get(e,
	    "generation"));
	w->pid = (pid_t)json_integer_value(json_object_get(e, "pid"));
	w->slot = (int)json_integer_value(json_object_get(e, "slot"));
	w->id = (int)json_integer_value(json_object_get(e, "id"));
	w->state = W_ONLINE;
	w->ever_online = true;
	w->adopted = true;
	w->frames = json_is_true(json_object_get(e, "frames"));
	/* A worker from before this said nothing: it is never pinged. */
	w->heartbeat = json_is_true(json_object_get(e, "heartbeat"));
	/* Sent `beat` again: what it was told is not known here. */
	w->beats = json_is_true(json_object_get(e, "beats"));
	if (json_is_object(json_object_get(e, "last_count")))
		w->last_count = json_incref(json_object_get(e, "last_count"));
	if (json_is_true(json_object_get(e, "program"))) {
		program_adopt(w, json_is_integer(json_object_get(e, "output")) ?
		    (int)json_integer_value(json_object_get(e, "output")) : -1);
		fd = json_is_integer(json_object_get(e, "messages")) ?
		    (int)json_integer_value(json_object_get(e, "messages")) :
		    -1;
		if (fd >= 0)
			broadcast_line_open(w, fd);
	}
	if (json_is_integer(json_object_get(e, "channel"))) {
		fd = (int)json_integer_value(json_object_get(e, "channel"));
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		worker_attach(w, fd);
	}
	if (w->id >= master.next_worker_id)
		master.next_worker_id = w->id + 1;
	log_info("worker %d [pid %d] of generation %d adopted", w->id,
	    (int)w->pid, w->generation);
	pool_place(p, w, strcmp(json_string_value(json_object_get(e,
	    "state")) != NULL ? json_string_value(json_object_get(e,
	    "state")) : "", "online") == 0);
	return w;
}

/*
 * After an upgrade: the workers of the master before are still our
 * children. Each takes its slot back (a reload then replaces it, as any
 * reload does) or, stopping already or of a slot no longer there,
 * drains.
 */
void
pool_adopt(json_t *list)
{
	json_t	*e;
	size_t	 i;
	int	 gen = 0;

	json_array_foreach(list, i, e) {
		if (pool_adopt_one(e) != NULL &&
		    json_integer_value(json_object_get(e, "generation")) > gen)
			gen = (int)json_integer_value(json_object_get(e,
			    "generation"));
	}
	if (gen >= master.next_generation)
		master.next_generation = gen + 1;
}
