/*
 * Round-robin, whole: for a round-robin listener (and a reuseport slot
 * whose worker is gone) the master accepts, paused, no byte read; each
 * connection waits in its listener's queue, goes to the next worker of
 * the listener's pool that can take it, in one `conn` frame per worker
 * and dispatch, and is the master's until that worker acks it. A worker
 * that refuses (full, stopping) or dies first leaves its connections to
 * the next one; a connection the master accepted is never dropped. The
 * master keeps a reserve of fds so it can always dup one for a worker.
 */

#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <linux/sockios.h>
#include <linux/tcp.h>		/* tcp_info's byte counters */
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "master.h"

#define ACCEPT_BATCH	64	/* accepts per event */
#define QUEUE_MAX	4096	/* accepted, not yet handed over */
#define WORKER_WINDOW	64	/* hand-offs in flight per worker */
#define REFUSED_PAUSE_S	0.1	/* before asking a full worker again */
#define RETRY_MS	110	/* after a refusal or a failed send */
#define TCPS_ESTABLISHED 1	/* tcpi_state, the kernel's tcp_states.h */
#define TCPS_CLOSE_WAIT	8
#define FD_RESERVE	2

/*
 * Connections on their way to a worker, in one `conn` (n = 1) or one
 * frame: staged while a dispatch runs, then sent, then answered.
 */
struct inflight {
	long long		 seq;
	size_t			 n;
	bool			 frame;
	struct handoff		*h[NC_IPC_MAX_FDS];
	TAILQ_ENTRY(inflight)	 entry;
};

static int		 ninflight;	/* connections, every worker */
static struct event	*retry_ev;
static struct event	*accept_retry_ev;
static struct nc_accept_pause accept_pause;
/*
 * fds kept for handing connections over: a worker gets a dup of each,
 * which needs a free slot even when accepting has filled the table. New
 * connections are accepted only while the reserve is full.
 */
static int		 reserve_fds[FD_RESERVE] = { -1, -1 };

static void	handoff_accept_cb(evutil_socket_t, short, void *);

int
handoff_inflight(void)
{
	return ninflight;
}

static void
queue_push(struct listener *l, struct handoff *h)
{
	TAILQ_INSERT_TAIL(&l->queue, h, entry);
	l->qlen++;
}

/* Back to the head of its queue: it waited longest. */
static void
queue_requeue(struct handoff *h)
{
	struct listener	*l = h->listener;

	h->worker = NULL;
	h->tries++;
	l->requeued++;
	TAILQ_INSERT_HEAD(&l->queue, h, entry);
	l->qlen++;
}

static struct handoff *
queue_pop(struct listener *l)
{
	struct handoff	*h;

	if ((h = TAILQ_FIRST(&l->queue)) != NULL) {
		TAILQ_REMOVE(&l->queue, h, entry);
		l->qlen--;
	}
	return h;
}

static int
queue_fd(struct listener *l, int fd)
{
	struct handoff	*h;

	if ((h = calloc(1, sizeof *h)) == NULL)
		return -1;
	h->fd = fd;
	h->listener = l;
	queue_push(l, h);
	return 0;
}

/* Connections an upgrade handed over, accepted by the master before. */
void
handoff_queue_fds(struct listener *l, json_t *fds)
{
	json_t	*v;
	size_t	 i;
	int	 fd, flags;

	json_array_foreach(fds, i, v) {
		fd = (int)json_integer_value(v);
		if ((flags = fcntl(fd, F_GETFL)) != -1)
			(void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
		(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
		if (queue_fd(l, fd) == -1)
			fatalx("out of memory");
	}
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	handoff_dispatch_all();
}

/* Dispatches again once refusing workers may have room. */
static void
retry_later(void)
{
	struct timeval	tv = { 0, RETRY_MS * 1000 };

	if (retry_ev == NULL &&
	    (retry_ev = evtimer_new(master.base, retry_cb, NULL)) == NULL)
		return;
	if (!evtimer_pending(retry_ev, NULL))
		(void)evtimer_add(retry_ev, &tv);
}

static bool
worker_can_take(struct worker *w, struct listener *l)
{
	if (!gen_worker_serves(w) || !w->rr[l->id] ||
	    w->inflight >= WORKER_WINDOW)
		return false;
	/*
	 * A worker that refused (full) is asked again only after a pause,
	 * so a connection nobody can take waits here instead of bouncing
	 * between full workers (Node's #54882).
	 */
	if (w->refused && gen_elapsed_s(&w->refused_at) < REFUSED_PAUSE_S) {
		retry_later();	/* or nothing asks it again */
		return false;
	}
	w->refused = false;
	return true;
}

/*
 * The next worker of l's pool that can take a connection, from the slot
 * after the last one served: a slot's worker, or the one starting for it
 * in a reload; else an older one that still serves while a reload runs.
 */
static struct worker *
next_worker(struct listener *l)
{
	struct pool	*p = l->pool;
	struct slot	*s;
	struct worker	*w;
	int		 i, k;

	if (p == NULL)
		return NULL;
	for (k = 0; k < p->nslots; k++) {
		i = (int)((l->rr_next + (size_t)k) % (size_t)p->nslots);
		s = p->slots[i];
		if (worker_can_take(s->worker, l))
			w = s->worker;
		else if (worker_can_take(s->next, l))
			w = s->next;
		else
			continue;
		l->rr_next = (size_t)i + 1;
		return w;
	}
	TAILQ_FOREACH(w, &p->draining, entry)
		if (worker_can_take(w, l))
			return w;
	return NULL;
}

static void
inflight_push(struct worker *w, struct inflight *p)
{
	TAILQ_INSERT_TAIL(&w->inflights, p, entry);
}

static struct inflight *
inflight_take(struct worker *w, long long seq)
{
	struct inflight	*p;

	TAILQ_FOREACH(p, &w->inflights, entry)
		if (p->seq == seq) {
			TAILQ_REMOVE(&w->inflights, p, entry);
			return p;
		}
	return NULL;
}

/* Back to their queues, in the order they came, but those in keep. */
static void
inflight_requeue(struct inflight *p, uint64_t keep)
{
	size_t	i;

	for (i = p->n; i-- > 0;)
		if (!(keep >> i & 1))
			queue_requeue(p->h[i]);
}

/* Sends w's staged frame; on failure its connections wait again. */
static void
conn_flush(struct worker *w)
{
	struct inflight	*p = w->staging;
	uint32_t	 ids[NC_IPC_MAX_FDS];
	int		 fds[NC_IPC_MAX_FDS];
	size_t		 i;

	w->staging = NULL;
	for (i = 0; i < p->n; i++) {
		ids[i] = (uint32_t)p->h[i]->listener->id;
		fds[i] = p->h[i]->fd;
	}
	if (w->ipc == NULL ||
	    (p->seq = nc_ipc_send_conns(w->ipc, ids, fds, p->n)) == -1) {
		/* The worker is being replaced: others take them, soon. */
		w->inflight -= (int)p->n;
		ninflight -= (int)p->n;
		inflight_requeue(p, 0);
		free(p);
		retry_later();
		return;
	}
	inflight_push(w, p);
}

/*
 * A connection for w: staged in its frame (sent when full, or when the
 * dispatch ends), or sent alone as a JSON `conn` to a worker that does
 * not read frames. -1 when it cannot go.
 */
static int
conn_send(struct worker *w, struct handoff *h)
{
	struct inflight	*p;
	json_t		*msg;
	int		 fds[1];

	if (w->ipc == NULL)
		return -1;
	if (w->frames) {
		if ((p = w->staging) == NULL) {
			if ((p = calloc(1, sizeof *p)) == NULL)
				return -1;
			p->frame = true;
			w->staging = p;
		}
		h->worker = w;
		p->h[p->n++] = h;
		w->inflight++;
		ninflight++;
		if (p->n == NC_IPC_MAX_FDS)
			conn_flush(w);
		return 0;
	}
	if ((p = calloc(1, sizeof *p)) == NULL)
		return -1;
	if ((fds[0] = handoff_dup(h->fd)) == -1) {
		free(p);
		return -1;
	}
	msg = json_pack("{s:s, s:i}", "type", "conn", "listener",
	    h->listener->id);
	if (msg == NULL) {
		close(fds[0]);
		free(p);
		return -1;
	}
	p->seq = nc_ipc_send(w->ipc, msg, fds, 1);
	json_decref(msg);
	if (p->seq == -1) {
		free(p);
		return -1;
	}
	h->worker = w;
	p->n = 1;
	p->h[0] = h;
	inflight_push(w, p);
	w->inflight++;
	ninflight++;
	return 0;
}

/* Sends every frame a dispatch staged for the workers of l's pool. */
static void
flush_staged(struct listener *l)
{
	struct worker	*w;
	int		 i;

	if (l->pool == NULL)
		return;
	for (i = 0; i < l->pool->nslots; i++) {
		if ((w = l->pool->slots[i]->worker) != NULL &&
		    w->staging != NULL)
			conn_flush(w);
		if ((w = l->pool->slots[i]->next) != NULL &&
		    w->staging != NULL)
			conn_flush(w);
	}
	TAILQ_FOREACH(w, &l->pool->draining, entry)
		if (w->staging != NULL)
			conn_flush(w);
}

/* Hands queued connections to workers, round-robin, while any can take. */
void
handoff_dispatch(struct listener *l)
{
	struct handoff	*h;
	struct worker	*w;

	if (master.upgrading)
		return;		/* the queue goes to the new master */
	while (!TAILQ_EMPTY(&l->queue)) {
		if ((w = next_worker(l)) == NULL)
			break;
		h = queue_pop(l);
		if (conn_send(w, h) == -1) {
			/*
			 * Back to the front, and again soon: the worker is
			 * being replaced, or we are out of fds for a dup.
			 */
			TAILQ_INSERT_HEAD(&l->queue, h, entry);
			l->qlen++;
			retry_later();
			break;
		}
	}
	flush_staged(l);
	/* Back-pressure: accept again once the queue has room. */
	handoff_accepting();
}

void
handoff_dispatch_all(void)
{
	size_t	i;

	for (i = 0; master.gen != NULL && i < master.gen->nlisteners; i++)
		handoff_dispatch(master.gen->listeners[i]);
}

/*
 * The worker answered for the connections sent with seq: those in
 * accepted are its own now (our copy closes), the others go to another
 * worker, or to this one after a pause. NULL, or why the answer is a
 * protocol error (dispatch.c kills the worker then).
 */
const char *
handoff_conn_ack(struct worker *w, long long seq, uint64_t accepted,
    size_t n, bool frame)
{
	struct inflight	*p;
	struct listener	*ls[NC_IPC_MAX_FDS];
	size_t		 i, j, nls = 0;

	if ((p = inflight_take(w, seq)) == NULL)	/* nothing we sent */
		return w->adopted ? NULL : frame ? "conn.ack frame for "
		    "nothing sent" : "conn.ack for nothing sent";
	if (p->frame != frame || p->n != n) {
		inflight_push(w, p);
		return frame ? "conn.ack frame of the wrong size" :
		    "conn.ack for a frame";
	}
	w->inflight -= (int)p->n;
	ninflight -= (int)p->n;
	for (i = 0; i < p->n; i++) {
		for (j = 0; j < nls && ls[j] != p->h[i]->listener; j++)
			;
		if (j == nls)
			ls[nls++] = p->h[i]->listener;
	}
	if (accepted != (p->n == 64 ? ~(uint64_t)0 :
	    ((uint64_t)1 << p->n) - 1)) {
		/* Full or closing: another worker takes them. */
		w->refused = true;
		clock_gettime(CLOCK_MONOTONIC, &w->refused_at);
		for (i = 0; i < p->n; i++)
			if (!(accepted >> i & 1))
				p->h[i]->listener->refused++;
		inflight_requeue(p, accepted);
		retry_later();
	}
	for (i = 0; i < p->n; i++)
		if (accepted >> i & 1) {
			w->handed++;
			p->h[i]->listener->handed++;
			close(p->h[i]->fd);
			free(p->h[i]);
		}
	free(p);
	for (j = 0; j < nls; j++)
		handoff_dispatch(ls[j]);
	return NULL;
}

/*
 * Whether a connection a worker held was served: bytes went to its client
 * (sent or queued), bytes of its client were read, or it was shut down.
 * The kernel's own counts say it (TCP_INFO); a connection that cannot say
 * (a unix socket) counts as untouched.
 */
static bool
touched(int fd)
{
	struct tcp_info	ti;
	socklen_t	len = sizeof ti;
	int		inq = 0;
	uint64_t	fin;

	memset(&ti, 0, sizeof ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == -1 ||
	    len < offsetof(struct tcp_info, tcpi_notsent_bytes) +
	    sizeof ti.tcpi_notsent_bytes)
		return false;
	if (ti.tcpi_bytes_sent > 0 || ti.tcpi_notsent_bytes > 0)
		return true;
	/* Only these two states are ours alone: no FIN sent by us. */
	if (ti.tcpi_state != TCPS_ESTABLISHED &&
	    ti.tcpi_state != TCPS_CLOSE_WAIT)
		return true;
	/* Received but not in the queue: read. A FIN counts one byte. */
	fin = ti.tcpi_state == TCPS_CLOSE_WAIT ? 1 : 0;
	if (ioctl(fd, SIOCINQ, &inq) == -1 || inq < 0)
		return false;
	return ti.tcpi_bytes_received > (uint64_t)inq + fin;
}

/*
 * A worker is gone (its channel read to the end): a hand-off it never
 * answered goes to another worker, unless the connection shows it was
 * served (bytes sent or read): that one is closed, since its client
 * already heard from this worker.
 */
static void
handoff_worker_detached(struct worker *w)
{
	struct inflight	*p;
	size_t		 i;
	uint64_t	 closed;

	if (w->staging != NULL) {	/* never sent: only at a dispatch */
		inflight_push(w, w->staging);
		w->staging = NULL;
	}
	while ((p = TAILQ_FIRST(&w->inflights)) != NULL) {
		TAILQ_REMOVE(&w->inflights, p, entry);
		closed = 0;
		for (i = 0; i < p->n; i++) {
			if (!touched(p->h[i]->fd))
				continue;
			log_warnx("worker %d [pid %d]: a connection it served "
			    "without answering for it is closed, not handed "
			    "to another worker", w->id, (int)w->pid);
			close(p->h[i]->fd);
			free(p->h[i]);
			closed |= (uint64_t)1 << i;
		}
		inflight_requeue(p, closed);
		ninflight -= (int)p->n;
		free(p);
	}
	w->inflight = 0;
}

/* Someone can take connections again, or the listeners changed. */
static void
handoff_worker_changed(struct worker *w)
{
	(void)w;
	handoff_accepting();
	handoff_dispatch_all();
}

static bool
reserve_fill(void)
{
	size_t	i;

	for (i = 0; i < FD_RESERVE; i++)
		if (reserve_fds[i] == -1 && (reserve_fds[i] = open("/dev/null",
		    O_RDONLY | O_CLOEXEC)) == -1 && nc_accept_must_pause(errno))
			return false;
	return true;
}

/* A close-on-exec dup of fd, spending the reserve if it must. */
int
handoff_dup(int fd)
{
	size_t	i;
	int	nfd;

	for (i = 0; i <= FD_RESERVE; i++) {
		if ((nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) != -1 ||
		    (errno != EMFILE && errno != ENFILE) || i == FD_RESERVE)
			break;
		if (reserve_fds[i] != -1) {
			close(reserve_fds[i]);
			reserve_fds[i] = -1;
		}
	}
	return nfd;
}

static void
accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	handoff_accepting();
}

/* Out of fds: every listener waits NC_ACCEPT_PAUSE_MS, then tries again. */
static void
accept_pause_now(struct listener *l, int err)
{
	struct timeval	tv = { 0, NC_ACCEPT_PAUSE_MS * 1000 };

	if (nc_accept_pause_begin(&accept_pause)) {
		stats_add("accept_pauses", "service", 1);
		log_warnx("service %s: accept on %s: %s; pausing accepts, "
		    "retrying every %d ms", l->svc->name, l->bound,
		    strerror(err), NC_ACCEPT_PAUSE_MS);
	}
	if (accept_retry_ev == NULL)
		accept_retry_ev = evtimer_new(master.base, accept_retry_cb,
		    NULL);
	if (accept_retry_ev == NULL || evtimer_add(accept_retry_ev, &tv) == -1)
		return;		/* without memory: try again at once */
	handoff_accepting();
}

static void
handoff_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct listener	*l = arg;
	unsigned long	 pauses;
	long		 ms;
	int		 fd, i;

	(void)what;
	for (i = 0; i < ACCEPT_BATCH && l->qlen < QUEUE_MAX; i++) {
		if (!reserve_fill()) {
			accept_pause_now(l, errno);
			break;
		}
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (nc_accept_must_pause(errno))
				accept_pause_now(l, errno);
			else if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				log_warnx("service %s: accept on %s: %s",
				    l->svc->name, l->bound, strerror(errno));
			break;
		}
		if (nc_accept_pause_end(&accept_pause, &ms, &pauses))
			log_warnx("accepting again after %ld ms (%lu pauses)",
			    ms, pauses);
		if (queue_fd(l, fd) == -1) {
			log_err("out of memory; closing a connection");
			close(fd);
			break;
		}
		l->accepted++;
	}
	handoff_dispatch(l);
}

/*
 * The accept events l's (possibly new) mode wants. Round-robin: the
 * master accepts. reuseport: each slot's socket, served here while its
 * worker is gone; not for a program without a channel, which nobody
 * could be handed a connection of: the slot's connections wait in its
 * backlog for the successor, which gets the same socket.
 */
int
handoff_events(struct listener *l)
{
	size_t	j;

	if (l->accept_ev != NULL)
		event_free(l->accept_ev);
	l->accept_ev = NULL;
	for (j = 0; j < l->nslot_evs; j++)
		event_free(l->slot_evs[j]);
	free(l->slot_evs);
	l->slot_evs = NULL;
	l->nslot_evs = 0;
	if (l->svc->mode == NC_MODE_ROUND_ROBIN && l->nfds == 1) {
		l->accept_ev = event_new(master.base, l->fds[0],
		    EV_READ | EV_PERSIST, handoff_accept_cb, l);
		return l->accept_ev != NULL ? 0 : -1;
	}
	if (l->nfds <= 1 || l->svc->mode != NC_MODE_REUSEPORT ||
	    (l->svc->handler == NC_HANDLER_PROGRAM &&
	    l->svc->sockets == NC_SOCKETS_INHERIT))
		return 0;
	if ((l->slot_evs = calloc(l->nfds, sizeof *l->slot_evs)) == NULL)
		return -1;
	for (j = 0; j < l->nfds; j++) {
		l->slot_evs[j] = event_new(master.base, l->fds[j],
		    EV_READ | EV_PERSIST, handoff_accept_cb, l);
		if (l->slot_evs[j] == NULL)
			return -1;
		l->nslot_evs++;
	}
	return 0;
}

/* Whether socket j of a reuseport listener has a worker serving it. */
static bool
slot_served(const struct listener *l, size_t j)
{
	const struct slot	*s;

	if (l->pool == NULL || j >= (size_t)l->pool->nslots ||
	    (int)j >= l->pool->size)
		return false;
	s = l->pool->slots[j];
	return gen_worker_serves(s->worker) || gen_worker_serves(s->next);
}

static void
event_want(struct event *ev, bool want)
{
	if (want && !event_pending(ev, EV_READ, NULL))
		(void)event_add(ev, NULL);
	else if (!want)
		(void)event_del(ev);
}

/*
 * Which accept events run now: none while stopping, upgrading or out of
 * fds; a round-robin listener while its queue has room; a reuseport
 * socket while its slot has no worker serving it. Listeners no longer
 * of the generation accept nothing; what they queued still goes to the
 * workers that listen there.
 */
void
handoff_accepting(void)
{
	struct listener	*l;
	size_t		 i, j;
	bool		 open;

	open = !master.stopping && !master.upgrading &&
	    (accept_retry_ev == NULL || !evtimer_pending(accept_retry_ev,
	    NULL));
	for (i = 0; master.gen != NULL && i < master.gen->nlisteners; i++) {
		l = master.gen->listeners[i];
		if (l->accept_ev != NULL)
			event_want(l->accept_ev, open && l->qlen < QUEUE_MAX);
		for (j = 0; j < l->nslot_evs; j++)
			event_want(l->slot_evs[j], open &&
			    l->qlen < QUEUE_MAX && !slot_served(l, j));
	}
}

/*
 * A listener a new generation left: it accepts no more; what it queued
 * goes to the older workers that listen there, as they can take it.
 */
void
handoff_quiet(struct listener *l)
{
	size_t	j;

	if (l->accept_ev != NULL)
		(void)event_del(l->accept_ev);
	for (j = 0; j < l->nslot_evs; j++)
		(void)event_del(l->slot_evs[j]);
	handoff_dispatch(l);
}

void
handoff_init(void)
{
	worker_hook(WEV_DETACHED, handoff_worker_detached);
	worker_hook(WEV_ONLINE, handoff_worker_changed);
	worker_hook(WEV_CHANGED, handoff_worker_changed);
	worker_hook(WEV_GONE, handoff_worker_changed);
}

void
handoff_close(void)
{
	size_t	i;

	if (retry_ev != NULL)
		event_free(retry_ev);
	if (accept_retry_ev != NULL)
		event_free(accept_retry_ev);
	retry_ev = accept_retry_ev = NULL;
	for (i = 0; i < FD_RESERVE; i++)
		if (reserve_fds[i] != -1) {
			close(reserve_fds[i]);
			reserve_fds[i] = -1;
		}
}
