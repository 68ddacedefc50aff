/*
 * getConnections for the whole daemon: one `count` round asks every
 * slot's worker of every pool, bounded by COUNT_TIMEOUT_MS, and answers
 * {"workers": [{service, slot, id, pid, state, generation, count,
 * services, answered, ...}]}. A worker that does not answer in time is
 * reported, never waited for; one that dies meanwhile is not waited for
 * either. A program without a channel cannot be asked: the kernel tells
 * its connections (sockdiag.c), or its count is unknown (null).
 */

#include <sys/types.h>

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "master.h"

#define COUNT_TIMEOUT_MS	1000

struct count_ask {
	struct worker		*worker;
	long long		 seq;
	size_t			 index;		/* into "workers" */
};

struct count_req {
	json_t			*result;
	struct count_ask	*asks;
	size_t			 nasks;
	int			 waiting;
	struct event		*timer;
	void			(*done)(json_t *, void *);
	void			*arg;
	TAILQ_ENTRY(count_req)	 entry;
};

static TAILQ_HEAD(, count_req) rounds = TAILQ_HEAD_INITIALIZER(rounds);

static void
count_finish(struct count_req *c)
{
	TAILQ_REMOVE(&rounds, c, entry);
	event_free(c->timer);
	c->done(c->result, c->arg);
	json_decref(c->result);
	free(c->asks);
	free(c);
}

static void
count_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	count_finish(arg);	/* who did not answer stays "answered": false */
}

/* A program without a channel: what the kernel says, or null. */
static void
count_kernel(json_t *entry, const char *service, int n)
{
	(void)json_object_set_new(entry, "count", n >= 0 ? json_integer(n) :
	    json_null());
	(void)json_object_set_new(entry, "services", json_pack("{s:o}",
	    service, n >= 0 ? json_integer(n) : json_null()));
	(void)json_object_set_new(entry, "answered", json_boolean(n >= 0));
}

/* The entries of p's slots, each asked (or counted by the kernel). */
static void
count_pool(struct count_req *c, struct pool *p, json_t *list)
{
	const struct nc_service	*svc = p->def->svc;
	struct worker		**ws;
	struct worker		*w;
	json_t			*msg, *entry;
	int			 i, *kernel = NULL;

	if ((ws = calloc((size_t)p->size + 1, sizeof *ws)) == NULL)
		return;
	for (i = 0; i < p->size && i < p->nslots; i++)
		ws[i] = p->slots[i]->worker;
	if (svc->handler == NC_HANDLER_PROGRAM &&
	    svc->sockets == NC_SOCKETS_INHERIT &&
	    (kernel = calloc((size_t)p->size + 1, sizeof *kernel)) != NULL)
		sockdiag_count(p->def, ws, p->size, kernel);
	for (i = 0; i < p->size; i++) {
		w = ws[i];
		entry = json_pack("{s:s, s:i, s:i, s:i, s:s, s:i, s:i, s:b, "
		    "s:f, s:i, s:I}", "service", p->name, "slot", i, "id",
		    w != NULL ? w->id : 0, "pid", w != NULL ? w->pid : 0,
		    "state", worker_state_name(w != NULL ? w->state : W_DEAD),
		    "generation", w != NULL ? w->generation : 0, "count", 0,
		    "answered", 0, "uptime_s", w != NULL ?
		    gen_elapsed_s(&w->started) : 0.0, "restarts", i < p->nslots ?
		    p->slots[i]->restarts : 0, "handed", (json_int_t)(w != NULL ?
		    w->handed : 0));
		if (entry == NULL || json_array_append_new(list, entry) == -1)
			continue;
		if (w != NULL)
			(void)json_object_set(entry, "listening", w->listening);
		if (w != NULL && w->status != NULL)
			(void)json_object_set_new(entry, "status",
			    json_string(w->status));
		if (w != NULL && w->program && w->ipc == NULL) {
			count_kernel(entry, p->name, kernel != NULL ?
			    kernel[i] : -1);
			continue;
		}
		if (w == NULL || w->ipc == NULL || w->state == W_DEAD ||
		    w->state == W_STARTING ||
		    (msg = json_pack("{s:s}", "type", "count")) == NULL)
			continue;
		c->asks[c->nasks].worker = w;
		c->asks[c->nasks].index = json_array_size(list) - 1;
		c->asks[c->nasks].seq = nc_ipc_send(w->ipc, msg, NULL, 0);
		json_decref(msg);
		if (c->asks[c->nasks].seq != -1) {
			c->nasks++;
			c->waiting++;
		}
	}
	free(kernel);
	free(ws);
}

/*
 * One round: done(result, arg) once every worker asked answered, or the
 * bound passed. 0, or -1 without memory (done is not called).
 */
int
count_round(void (*done)(json_t *, void *), void *arg)
{
	struct count_req	*c;
	struct timeval		 tv = { COUNT_TIMEOUT_MS / 1000,
	    (COUNT_TIMEOUT_MS % 1000) * 1000 };
	json_t			*list;
	size_t			 i;

	if ((c = calloc(1, sizeof *c)) == NULL ||
	    (c->asks = calloc((size_t)gen_slots() + 1, sizeof *c->asks)) ==
	    NULL || (list = json_array()) == NULL ||
	    (c->result = json_pack("{s:o}", "workers", list)) == NULL ||
	    (c->timer = evtimer_new(master.base, count_timeout_cb, c)) ==
	    NULL) {
		if (c != NULL) {
			json_decref(c->result);
			free(c->asks);
		}
		free(c);
		return -1;
	}
	c->done = done;
	c->arg = arg;
	for (i = 0; i < master.gen->npools; i++)
		count_pool(c, master.gen->pools[i], list);
	TAILQ_INSERT_TAIL(&rounds, c, entry);
	if (c->waiting == 0) {
		count_finish(c);
		return 0;
	}
	(void)evtimer_add(c->timer, &tv);
	return 0;
}

/* count.reply from w (dispatch.c checked its form). */
void
count_reply(struct worker *w, json_t *msg)
{
	struct count_req	*c;
	json_t			*entry;
	long long		 ack = json_integer_value(json_object_get(msg,
	    "ack"));
	size_t			 i;

	TAILQ_FOREACH(c, &rounds, entry) {
		for (i = 0; i < c->nasks; i++)
			if (c->asks[i].worker == w && c->asks[i].seq == ack)
				break;
		if (i == c->nasks)
			continue;
		c->asks[i].worker = NULL;
		entry = json_array_get(json_object_get(c->result, "workers"),
		    c->asks[i].index);
		(void)json_object_set(entry, "count",
		    json_object_get(msg, "count"));
		(void)json_object_set(entry, "services",
		    json_object_get(msg, "services"));
		(void)json_object_set(entry, "accepted",
		    json_object_get(msg, "accepted"));
		(void)json_object_set_new(entry, "answered", json_true());
		stats_worker_answered(w, msg);
		if (--c->waiting == 0)
			count_finish(c);
		return;
	}
	log_debug("worker %d: late count reply", w->id);
}

/* A worker that is gone will not answer: no round waits for it. */
static void
count_worker_gone(struct worker *w)
{
	struct count_req	*c, *cn;
	size_t			 i;

	TAILQ_FOREACH_SAFE(c, &rounds, entry, cn) {
		for (i = 0; i < c->nasks; i++) {
			if (c->asks[i].worker != w)
				continue;
			c->asks[i].worker = NULL;
			if (--c->waiting == 0) {
				count_finish(c);
				break;
			}
		}
	}
}

void
count_init(void)
{
	worker_hook(WEV_GONE, count_worker_gone);
}
