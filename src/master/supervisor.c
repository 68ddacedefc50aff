/*
 * Supervision: one worker per slot, forked and exec'd with its channel in
 * NETCLUSTER_CHANNEL_FD; replaced when it dies, with back-off when it
 * keeps dying; replaced too when it breaks the protocol. The channel's
 * messages from a worker are dispatched through one table of what a
 * worker may send, in which state, with how many fds.
 */

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "master.h"
#include "nc-ipc.h"
#include "netcluster.h"

#define BACKOFF_START_MS	100
#define BACKOFF_MAX_MS		30000
#define BACKOFF_RESET_S		60
#define COUNT_TIMEOUT_MS	1000
#define MAX_DRAINING		2	/* older generations at once */
#define RELOAD_TIMEOUT_S	30	/* for a new generation to be online */

/*
 * Connections on their way to a worker, in one `conn` (n = 1) or one
 * frame: staged while a dispatch runs, then sent, then answered.
 */
struct inflight {
	long long		 seq;
	size_t			 n;
	bool			 frame;
	struct handoff		*h[NC_IPC_MAX_FDS];
	struct inflight		*next;
};

struct count_req {
	json_t			*result;	/* {"workers": [...], ...} */
	int			 waiting;
	long long		*seqs;		/* by slot, -1 if not asked */
	struct event		*timer;
	void			(*done)(json_t *, void *);
	void			*arg;
	struct count_req	*next;
};

struct slot_state {
	int			 deaths;	/* in a row, short-lived */
	int			 backoff_ms;
	struct event		*restart_ev;
	int			 restarts;
};

static int		 ninflight;	/* connections, every worker */
static void	worker_frame_cb(struct nc_ipc *, const struct nc_ipc_frame *,
		    int *, size_t, void *);
static struct worker	*draining;	/* older generations, stopping */
static int		 generation = 1;
static bool		 reloading;	/* a caller waits for the answer */
static bool		 handover;	/* old workers stop once new online */
static struct event	*reload_timer;
static struct reload_waiter {
	void			(*done)(const char *, void *);
	void			*arg;
	struct reload_waiter	*next;
} *waiters;
static json_t		*config_json;	/* what `init` sends */
static struct count_req	*counts;
static struct slot_state *slots;
static int		 next_worker_id = 1;

static void	supervisor_spawn(int slot);
static void	worker_msg_cb(struct nc_ipc *, json_t *, int *, size_t,
		    void *);
static void	worker_error_cb(struct nc_ipc *, const char *, void *);
static void	reload_finish(const char *);
static void	reload_online(void);
static void	reload_timeout_cb(evutil_socket_t, short, void *);
static void	worker_stop(struct worker *);
static void	kill_cb(evutil_socket_t, short, void *);
static void	worker_kill(struct worker *, const char *why);
static void	worker_watch_queue(struct worker *);
static void	bp_timer_cb(evutil_socket_t, short, void *);

static const char *state_names[] = {
	[W_STARTING] = "starting",
	[W_ONLINE] = "online",
	[W_STOPPING] = "stopping",
	[W_DEAD] = "dead",
};

static const char *
worker_binary(void)
{
	static char	 path[PATH_MAX];
	const char	*env = getenv("NETCLUSTER_WORKER");
	char		 self[PATH_MAX], *slash;
	ssize_t		 n;

	if (env != NULL && *env != '\0')
		return env;
	if (path[0] != '\0')
		return path;
	/* Beside netclusterd (a build tree), else where make install put it. */
	n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n > 0) {
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL) {
			*slash = '\0';
			if ((size_t)snprintf(path, sizeof path,
			    "%s/netcluster-worker", self) < sizeof path &&
			    access(path, X_OK) == 0)
				return path;
		}
	}
	snprintf(path, sizeof path, "%s/netcluster-worker", PKGLIBEXECDIR);
	return path;
}

static void
worker_send(struct worker *w, json_t *msg)
{
	if (msg == NULL) {
		log_errx("out of memory sending to worker %d", w->id);
		return;
	}
	if (w->ipc != NULL)
		(void)nc_ipc_send(w->ipc, msg, NULL, 0);
	json_decref(msg);
}

static void
worker_send_init(struct worker *w)
{
	json_error_t	 jerr;

	/* The configuration the master checked, never the file again. */
	if (config_json == NULL && (config_json = json_load_file(
	    master_config->file, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
		worker_kill(w, "cannot read the configuration");
		return;
	}
	worker_send(w, json_pack("{s:s, s:i, s:i, s:i, s:O, s:b}", "type",
	    "init", "id", w->id, "slot", w->slot, "generation", w->generation,
	    "config", config_json, "last_stats", 1));
}

static void
reply_listen(struct worker *w, json_t *req, int code, struct listener *l,
    int fd)
{
	json_t		*msg;
	int		 fds[1];
	const char	*mode = "shared";

	if (l != NULL)
		mode = nc_config_mode_name(l->service->conf->mode);
	msg = json_pack("{s:s, s:I, s:i, s:s, s:i, s:s, s:i}", "type",
	    "listen.result", "ack", json_integer_value(json_object_get(req,
	    "seq")), "error", code, "mode", mode, "listener",
	    l != NULL ? l->id : -1, "address", l != NULL ? l->bound : "",
	    "port", l != NULL ? l->port : -1);
	if (msg == NULL || w->ipc == NULL) {
		json_decref(msg);
		return;
	}
	if (fd != -1 && (fds[0] = listener_dup(fd)) != -1)
		(void)nc_ipc_send(w->ipc, msg, fds, 1);
	else
		(void)nc_ipc_send(w->ipc, msg, NULL, 0);
	json_decref(msg);
}

static int
msg_listen(struct worker *w, json_t *msg)
{
	struct listener	*l;
	const char	*address;

	address = json_string_value(json_object_get(msg, "address"));
	if (address == NULL || strlen(address) > 1024)
		return -1;
	/* A program gets the listeners of its own service only. */
	if (w->program)
		l = listener_find(address, supervisor_program() != NULL ?
		    supervisor_program()->conf->name : "", -1);
	else
		l = listener_find(address, json_string_value(json_object_get(
		    msg, "service")), json_integer_value(json_object_get(msg,
		    "index")));
	if (l == NULL) {
		/*
		 * Only what the config names: anything else is refused, and
		 * logged the 1st, 2nd, 4th, 8th... time for each worker.
		 */
		w->refused_listens++;
		if ((w->refused_listens & (w->refused_listens - 1)) == 0)
			log_warnx("worker %d [pid %d]: refused a handle for "
			    "%.128s: no service listens there (%lu refused)",
			    w->id, (int)w->pid, address, w->refused_listens);
		reply_listen(w, msg, NC_EACCES, NULL, -1);
		return 0;
	}
	/* Connections may come to it as frames (nc-ipc.h). */
	if (json_integer_value(json_object_get(msg, "frames")) >= 1)
		w->frames = true;
	if (l->service->conf->mode == NC_MODE_ROUND_ROBIN) {
		w->rr[l->id] = true;
		reply_listen(w, msg, 0, l, -1);
		listener_dispatch(l);
		return 0;
	}
	if (l->nfds == 0) {
		reply_listen(w, msg, NC_EINVAL, l, -1);
		return 0;
	}
	/* reuseport: it also serves the slots of dead workers, from here. */
	if (l->nfds > 1 && l->service->conf->mode == NC_MODE_REUSEPORT)
		w->rr[l->id] = true;
	reply_listen(w, msg, 0, l, listener_fd_for(l, w));
	return 0;
}

static int
msg_unlisten(struct worker *w, json_t *msg)
{
	json_int_t	id = json_integer_value(json_object_get(msg,
	    "listener"));

	if (id < 0 || id >= MAX_LISTENER_IDS)
		return -1;
	w->rr[id] = false;
	return 0;
}

static int
msg_hello(struct worker *w, json_t *msg)
{
	(void)msg;
	worker_send_init(w);
	return 0;
}

static int
msg_ready(struct worker *w, json_t *msg)
{
	(void)msg;
	supervisor_online(w);
	return 0;
}

/* w serves: a worker said `ready`, or a program's exec succeeded. */
void
supervisor_online(struct worker *w)
{
	size_t	i;

	w->state = W_ONLINE;
	log_info("worker %d [pid %d] (slot %d) online", w->id, (int)w->pid,
	    w->slot);
	if (supervisor_all_online()) {
		if (handover)
			reload_online();
		notify_ready();
	}
	listener_worker_changed();
	for (i = 0; i < master_nlisteners; i++)
		listener_dispatch(master_listeners[i]);
}

static int
msg_listening(struct worker *w, json_t *msg)
{
	const struct service_rt	*prog = supervisor_program();
	json_t			*entry, *id;
	json_int_t		 lid;
	size_t			 i;

	/* Kept for `workers`: exclusive listeners differ per worker. */
	entry = json_pack("{s:O, s:O, s:O}", "service",
	    json_object_get(msg, "service"), "address",
	    json_object_get(msg, "address"), "port",
	    json_object_get(msg, "port"));
	if (entry != NULL && json_array_append_new(w->listening, entry) == -1)
		return -1;
	log_debug("worker %d [pid %d]: service %s listening on %s port %d",
	    w->id, (int)w->pid,
	    json_string_value(json_object_get(msg, "service")),
	    json_string_value(json_object_get(msg, "address")),
	    (int)json_integer_value(json_object_get(msg, "port")));
	/* A cluster program is online once it listens on all its listeners. */
	id = json_object_get(msg, "listener");
	if (id != NULL && !json_is_integer(id))
		return -1;
	lid = json_integer_value(id);
	if (w->granted == NULL || prog == NULL || id == NULL || lid < 0 ||
	    lid >= MAX_LISTENER_IDS || w->granted[lid])
		return 0;
	for (i = 0; i < prog->nlisteners; i++)
		if (prog->listeners[i]->id == lid)
			break;
	if (i == prog->nlisteners)
		return 0;	/* not (or no longer) one of its service */
	w->granted[lid] = true;
	if (++w->ngranted == prog->nlisteners && w->state == W_STARTING)
		supervisor_online(w);
	return 0;
}

/*
 * Messages and a worker that reads its channel slowly or not at all. A
 * receiver is behind when more than MSG_SOFT_BYTES or MSG_SOFT_PKTS wait
 * for it. While a receiver is behind and still reads (it took a packet
 * in the last MSG_STALL_MS), the master stops reading the channel of each
 * worker that broadcasts (its nc_cluster_broadcast() then meets
 * NC_ENOBUFS): slow receivers slow the senders down and lose nothing.
 * A receiver that is behind and took nothing for MSG_STALL_MS is stalled
 * (stopped, stuck in a loop): messages for it are dropped, counted and
 * logged, and from then on it holds nobody up (the senders waited for it
 * MSG_STALL_MS at most); so it costs the master at most about
 * MSG_SOFT_BYTES, and nothing of its time.
 */
#define MSG_SOFT_BYTES		BROADCAST_QUEUE_MAX
#define MSG_SOFT_PKTS		1024
#define MSG_HARD_PKTS		(NC_IPC_MAX_QUEUE - 256)	/* room for conn */
#define MSG_STALL_MS		1000
#define MSG_TICK_MS		100

static bool		 bp_active;	/* some sender is paused */
static struct event	*bp_timer;

static size_t
worker_queued_bytes(struct worker *w)
{
	if (w->ipc != NULL)
		return nc_ipc_queued_bytes(w->ipc);
	if (w->msg_bev != NULL)
		return evbuffer_get_length(bufferevent_get_output(w->msg_bev));
	return 0;
}

static bool
worker_behind(struct worker *w)
{
	return worker_queued_bytes(w) > MSG_SOFT_BYTES || (w->ipc != NULL &&
	    nc_ipc_queued(w->ipc) > MSG_SOFT_PKTS);
}

static bool
worker_stalled(struct worker *w)
{
	if (w->ipc != NULL)
		return nc_ipc_idle_ms(w->ipc) >= MSG_STALL_MS;
	return w->msg_bev != NULL && elapsed_s(&w->msg_progress) * 1000 >=
	    MSG_STALL_MS;
}

static bool
worker_hears(struct worker *w)
{
	return (w->ipc != NULL || w->msg_bev != NULL) && !w->killed &&
	    w->state != W_DEAD;
}

/* Looks again in MSG_TICK_MS: a receiver may have stalled meanwhile. */
static void
bp_timer_arm(void)
{
	struct timeval	tv = { 0, MSG_TICK_MS * 1000 };

	if (bp_timer == NULL)
		bp_timer = evtimer_new(master_base, bp_timer_cb, NULL);
	if (bp_timer != NULL && !evtimer_pending(bp_timer, NULL))
		(void)evtimer_add(bp_timer, &tv);
}

/* Stops reading from w until no live receiver is behind. */
static void
sender_pause(struct worker *w)
{
	if (w->bp_paused)
		return;
	w->bp_paused = true;
	if (w->ipc != NULL)
		nc_ipc_pause(w->ipc, true);
	else if (w->msg_bev != NULL)
		(void)bufferevent_disable(w->msg_bev, EV_READ);
	bp_active = true;
	bp_timer_arm();
}

static void
sender_resume(struct worker *w)
{
	if (!w->bp_paused)
		return;
	w->bp_paused = false;
	if (w->ipc != NULL)
		nc_ipc_pause(w->ipc, false);
	else if (w->msg_bev != NULL) {
		(void)bufferevent_enable(w->msg_bev, EV_READ);
		/* The lines it sent meanwhile wait in our buffer. */
		bufferevent_trigger(w->msg_bev, EV_READ,
		    BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
	}
}

/* Calls fn on every worker, current and draining. */
static void
workers_foreach(void (*fn)(struct worker *))
{
	struct worker	*w;

	for (w = supervisor_next(NULL); w != NULL; w = supervisor_next(w))
		fn(w);
}

static bool	bp_holding;

static void
bp_scan(struct worker *w)
{
	if (worker_hears(w) && worker_behind(w) && !worker_stalled(w))
		bp_holding = true;
}

/*
 * A receiver's queue went down, or time passed: once no live receiver
 * is behind, the senders are read again.
 */
void
supervisor_messages_drained(void)
{
	if (!bp_active)
		return;
	bp_holding = false;
	workers_foreach(bp_scan);
	if (bp_holding) {
		bp_timer_arm();
		return;
	}
	bp_active = false;
	if (bp_timer != NULL)
		(void)event_del(bp_timer);
	workers_foreach(sender_resume);
}

static void
bp_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	supervisor_messages_drained();
}

static void
worker_low_cb(struct nc_ipc *ipc, void *arg)
{
	(void)ipc;
	(void)arg;
	supervisor_messages_drained();
}

/* Tells us when w's queue is down to half the marks of "behind". */
static void
worker_watch_queue(struct worker *w)
{
	nc_ipc_set_low_cb(w->ipc, MSG_SOFT_BYTES / 2, MSG_SOFT_PKTS / 2,
	    worker_low_cb);
	nc_ipc_set_frame_cb(w->ipc, worker_frame_cb);
}

/*
 * A message for many workers, written out once per kind of channel: from
 * the value's text as it came when there is one (nothing is written out
 * again), else from the value.
 */
struct outmsg {
	json_t		*v;
	const char	*raw;		/* the value's JSON text, or NULL */
	size_t		 rawlen;
	char		*vtext;		/* v written out, if raw was NULL */
	int		 from;
	const char	*service;	/* from the operator, or NULL */
	char		*text;		/* for a channel */
	size_t		 len;
	char		*line;		/* for a line channel, with its newline */
	size_t		 llen;
};

static void
outmsg_clear(struct outmsg *m)
{
	free(m->vtext);
	free(m->text);
	free(m->line);
}

static int
outmsg_build(struct outmsg *m, bool line)
{
	json_t	*svc = NULL;
	char	*stext = NULL;
	int	 n;

	if (m->raw == NULL) {
		if ((m->vtext = json_dumps(m->v, JSON_COMPACT |
		    JSON_ENCODE_ANY)) == NULL)
			return -1;
		m->raw = m->vtext;
		m->rawlen = strlen(m->vtext);
	}
	if (line) {
		/* One line: a value as it came may hold a newline (whitespace). */
		if (m->vtext == NULL && memchr(m->raw, '\n', m->rawlen) != NULL) {
			if ((m->vtext = json_dumps(m->v, JSON_COMPACT |
			    JSON_ENCODE_ANY)) == NULL)
				return -1;
			m->raw = m->vtext;
			m->rawlen = strlen(m->vtext);
		}
		n = asprintf(&m->line, "{\"from\":%d,\"message\":%.*s}\n",
		    m->from, (int)m->rawlen, m->raw);
		if (n == -1) {
			m->line = NULL;
			return -1;
		}
		m->llen = (size_t)n;
		return 0;
	}
	if (m->service != NULL && ((svc = json_string(m->service)) == NULL ||
	    (stext = json_dumps(svc, JSON_ENCODE_ANY)) == NULL)) {
		json_decref(svc);
		return -1;
	}
	json_decref(svc);
	/* The value last: a receiver takes its text as it is (ipc.c). */
	n = asprintf(&m->text, "{\"type\":\"message\",\"from\":%d,%s%s%s"
	    "\"message\":%.*s}", m->from, stext != NULL ? "\"service\":" : "",
	    stext != NULL ? stext : "", stext != NULL ? "," : "",
	    (int)m->rawlen, m->raw);
	free(stext);
	if (n == -1) {
		m->text = NULL;
		return -1;
	}
	m->len = (size_t)n;
	return 0;
}

/*
 * Queues one message for w: 1 if it was, 0 if not (dropped: w is stalled,
 * or no channel). *slow is set when w is behind but reads.
 */
static int
deliver(struct worker *w, struct outmsg *m, bool *slow)
{
	const char	*why = NULL;

	if (!worker_hears(w))
		return 0;
	if (worker_behind(w)) {
		if (worker_stalled(w))
			why = "does not read its channel";
		else if (w->ipc != NULL && nc_ipc_queued(w->ipc) >=
		    MSG_HARD_PKTS)
			why = "is too far behind";
		else
			*slow = true;
	}
	if (why != NULL) {
		w->dropped++;
		if ((w->dropped & (w->dropped - 1)) == 0)
			log_warnx("worker %d [pid %d] %s: a message for it is "
			    "dropped (%lu dropped)", w->id, (int)w->pid, why,
			    w->dropped);
		return 0;
	}
	if (w->ipc != NULL) {
		if (m->text == NULL && outmsg_build(m, false) == -1)
			return 0;
		return nc_ipc_send_text(w->ipc, m->text, m->len) != -1 ? 1 : 0;
	}
	if (m->line == NULL && outmsg_build(m, true) == -1)
		return 0;
	return program_messages_send(w, m->line, m->llen) ? 1 : 0;
}

/*
 * Every worker with a channel but skip, of the current generation and,
 * with draining, of the older ones too, gets m; returns how many did.
 * *slow: one of them is behind but reads.
 */
static int
deliver_all(struct outmsg *m, const struct worker *skip, bool with_draining,
    bool *slow)
{
	struct worker	*w;
	int		 i, n = 0;

	for (i = 0; i < master_nworkers; i++)
		if ((w = master_workers[i]) != NULL && w != skip)
			n += deliver(w, m, slow);
	for (w = draining; with_draining && w != NULL; w = w->next)
		if (w != skip)
			n += deliver(w, m, slow);
	return n;
}

/*
 * v from w to every other live worker of the service; raw, if not NULL,
 * is v's JSON text as it came.
 */
void
supervisor_broadcast(struct worker *w, json_t *v, const char *raw,
    size_t rawlen, bool with_draining)
{
	struct outmsg	m;
	bool		slow = false;

	memset(&m, 0, sizeof m);
	m.v = v;
	m.raw = raw;
	m.rawlen = rawlen;
	m.from = w->id;
	(void)deliver_all(&m, w, with_draining, &slow);
	outmsg_clear(&m);
	if (slow)
		sender_pause(w);
}

/* nc_cluster_broadcast(). */
static int
msg_broadcast(struct worker *w, json_t *msg)
{
	json_t	*v = json_object_get(msg, "message"), *d;

	const char	*raw;
	size_t		 rawlen = 0;

	d = json_object_get(msg, "draining");
	if (v == NULL || (d != NULL && !json_is_boolean(d)))
		return -1;
	raw = nc_ipc_last_value(w->ipc, msg, "message", &rawlen);
	supervisor_broadcast(w, v, raw, rawlen, json_is_true(d));
	return 0;
}

/*
 * netclusterctl send: v to every worker of service (draining ones too).
 * Returns how many got it, or -1 with err set.
 */
int
supervisor_send(const char *service, json_t *v, char *err, size_t len)
{
	const struct service_rt	*prog = supervisor_program();
	struct outmsg		 m;
	int			 n;
	bool			 slow = false;

	if (service_by_name(service) == NULL) {
		snprintf(err, len, "no service named \"%.64s\"", service);
		return -1;
	}
	if (prog != NULL && prog->conf->sockets == NC_SOCKETS_INHERIT &&
	    !prog->conf->messages) {
		snprintf(err, len, "service %.64s runs a program without a "
		    "channel (\"sockets\": \"inherit\" without \"messages\": "
		    "true): it takes no messages", service);
		return -1;
	}
	memset(&m, 0, sizeof m);
	m.v = v;
	m.from = 0;
	m.service = service;
	n = deliver_all(&m, NULL, true, &slow);
	outmsg_clear(&m);
	return n;
}

static int
msg_fatal(struct worker *w, json_t *msg)
{
	const char	*svc = json_string_value(json_object_get(msg, "service"));
	const char	*m = json_string_value(json_object_get(msg, "message"));

	log_errx("worker %d [pid %d]: service %.64s: %.200s", w->id,
	    (int)w->pid, svc != NULL ? svc : "?", m != NULL ? m : "?");
	return 0;
}

/* The worker's connections on their way, oldest first. */
static void
inflight_push(struct worker *w, struct inflight *p)
{
	struct inflight	**pp;

	for (pp = &w->inflights; *pp != NULL; pp = &(*pp)->next)
		;
	p->next = NULL;
	*pp = p;
}

static struct inflight *
inflight_take(struct worker *w, long long seq)
{
	struct inflight	**pp, *p;

	for (pp = &w->inflights; (p = *pp) != NULL; pp = &p->next)
		if (p->seq == seq) {
			*pp = p->next;
			return p;
		}
	return NULL;
}

/*
 * Back to the head of their queues, in the order they came, for the
 * next worker.
 */
static void
inflight_requeue(struct inflight *p, uint64_t keep)
{
	size_t	i;

	for (i = p->n; i-- > 0;)
		if (!(keep >> i & 1))
			listener_requeue(p->h[i]);
}

/*
 * The worker answered for the connections of p: those in accepted are
 * its own now (our copy closes), the others go to another worker, or to
 * this one after a pause.
 */
static void
conn_answered(struct worker *w, struct inflight *p, uint64_t accepted)
{
	struct listener	*ls[NC_IPC_MAX_FDS];
	size_t		 i, j, nls = 0;

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
		supervisor_retry_later();
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
		listener_dispatch(ls[j]);
	master_upgrade_ready();
}

static int
msg_conn_ack(struct worker *w, json_t *msg)
{
	struct inflight	*p;
	long long	 ack = json_integer_value(json_object_get(msg, "ack"));
	json_t		*acc = json_object_get(msg, "accepted");

	if (!json_is_boolean(acc))
		return -1;
	if ((p = inflight_take(w, ack)) == NULL)	/* nothing we sent */
		return w->adopted ? 0 : -1;
	if (p->frame || p->n != 1) {
		inflight_push(w, p);
		return -1;
	}
	conn_answered(w, p, json_is_true(acc) ? 1 : 0);
	return 0;
}

static void
count_finish(struct count_req *c)
{
	struct count_req	**pp;

	for (pp = &counts; *pp != NULL; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	event_free(c->timer);
	c->done(c->result, c->arg);
	json_decref(c->result);
	free(c->seqs);
	free(c);
}

static int
msg_count_reply(struct worker *w, json_t *msg)
{
	struct count_req	*c;
	json_t			*entry, *svcs;
	long long		 ack = json_integer_value(json_object_get(msg,
	    "ack"));

	if (!json_is_integer(json_object_get(msg, "count")) ||
	    !json_is_object(svcs = json_object_get(msg, "services")))
		return -1;
	for (c = counts; c != NULL; c = c->next) {
		if (c->seqs[w->slot] != ack)
			continue;
		c->seqs[w->slot] = -1;
		entry = json_array_get(json_object_get(c->result, "workers"),
		    (size_t)w->slot);
		(void)json_object_set(entry, "count",
		    json_object_get(msg, "count"));
		(void)json_object_set(entry, "services", svcs);
		(void)json_object_set(entry, "accepted",
		    json_object_get(msg, "accepted"));
		(void)json_object_set_new(entry, "answered", json_true());
		stats_worker_answered(w, msg);
		if (--c->waiting == 0)
			count_finish(c);
		return 0;
	}
	log_debug("worker %d: late count reply", w->id);
	return 0;
}

/* A worker's last words: its counters as it ends, for the totals. */
static int
msg_stats(struct worker *w, json_t *msg)
{
	if (!json_is_object(json_object_get(msg, "stats")))
		return -1;
	stats_worker_answered(w, msg);
	return 0;
}

/* What a worker may send: sorted by name for bsearch(). */
static const struct msg_type {
	const char	*name;
	size_t		 fds;
	int		 states;	/* bit per enum worker_state */
	int		(*handler)(struct worker *, json_t *);
} msg_types[] = {
	/* name		fds	states			handler */
	{ "broadcast",	0,	1 << W_STARTING | 1 << W_ONLINE | 1 << W_STOPPING,
	    msg_broadcast },
	{ "conn.ack",	0,	1 << W_ONLINE | 1 << W_STOPPING | 1 << W_DEAD,
	    msg_conn_ack },
	{ "count.reply", 0,	1 << W_ONLINE | 1 << W_STOPPING, msg_count_reply },
	{ "fatal",	0,	1 << W_STARTING | 1 << W_ONLINE, msg_fatal },
	{ "hello",	0,	1 << W_STARTING,	msg_hello },
	{ "listen",	0,	1 << W_STARTING | 1 << W_ONLINE, msg_listen },
	{ "listening",	0,	1 << W_STARTING | 1 << W_ONLINE | 1 << W_STOPPING,
	    msg_listening },
	{ "ready",	0,	1 << W_STARTING,	msg_ready },
	{ "stats",	0,	1 << W_ONLINE | 1 << W_STOPPING | 1 << W_DEAD,
	    msg_stats },
	{ "unlisten",	0,	1 << W_ONLINE | 1 << W_STOPPING, msg_unlisten },
};

static int
msg_type_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct msg_type *)elem)->name);
}

static void
worker_msg_cb(struct nc_ipc *ipc, json_t *msg, int *fds, size_t nfds,
    void *arg)
{
	struct worker		*w = arg;
	const struct msg_type	*t;
	const char		*type;
	size_t			 i;

	(void)ipc;
	type = json_string_value(json_object_get(msg, "type"));
	t = bsearch(type, msg_types, sizeof msg_types / sizeof msg_types[0],
	    sizeof msg_types[0], msg_type_cmp);
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	/*
	 * From a worker we killed, or one that is gone and whose last
	 * words we read, only the answers to connections count, and the
	 * counters of one that ended on its own.
	 */
	if ((w->killed || w->state == W_DEAD) && (t == NULL ||
	    (t->handler != msg_conn_ack && (t->handler != msg_stats ||
	    w->killed)))) {
		json_decref(msg);
		return;
	}
	if (t == NULL || t->fds != nfds || !(t->states & (1 << w->state)) ||
	    t->handler(w, msg) != 0) {
		log_errx("worker %d [pid %d]: protocol error: %s message "
		    "\"%.64s\" in state %s", w->id, (int)w->pid,
		    t == NULL ? "unknown" : t->fds != nfds ? "wrong fd count in" :
		    !(t->states & (1 << w->state)) ? "unexpected" : "bad",
		    type, state_names[w->state]);
		json_decref(msg);
		worker_kill(w, "protocol error");
		return;
	}
	json_decref(msg);
}

/* A frame: from a worker, only the answer to a conn frame. */
static void
worker_frame_cb(struct nc_ipc *ipc, const struct nc_ipc_frame *f, int *fds,
    size_t nfds, void *arg)
{
	struct worker	*w = arg;
	struct inflight	*p = NULL;
	const char	*why = NULL;
	size_t		 i;

	(void)ipc;
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	if (f->kind != NC_IPC_FRAME_CONN_ACK)
		why = "unexpected conn frame";
	else if (!(w->state == W_ONLINE || w->state == W_STOPPING ||
	    w->state == W_DEAD))
		why = "unexpected conn.ack frame";
	else if ((p = inflight_take(w, f->seq)) == NULL) {
		if (!w->adopted)
			why = "conn.ack frame for nothing sent";
	} else if (!p->frame || p->n != f->n) {
		inflight_push(w, p);
		why = "conn.ack frame of the wrong size";
	}
	if (why != NULL) {
		log_errx("worker %d [pid %d]: protocol error: %s in state %s",
		    w->id, (int)w->pid, why, state_names[w->state]);
		worker_kill(w, "protocol error");
		return;
	}
	if (p != NULL)
		conn_answered(w, p, f->accepted);
}

static void
worker_error_cb(struct nc_ipc *ipc, const char *reason, void *arg)
{
	struct worker	*w = arg;

	(void)ipc;
	if (strcmp(reason, "closed") == 0) {
		log_debug("worker %d [pid %d]: channel closed", w->id,
		    (int)w->pid);
		return;		/* its exit is reaped */
	}
	log_errx("worker %d [pid %d]: protocol error: %s", w->id, (int)w->pid,
	    reason);
	worker_kill(w, "protocol error");
}

/*
 * The worker is gone: gives its handoffs to others and stops talking to
 * it. Everything it sent is read first, so a connection it took (its
 * conn.ack in our queue behind its death) is never handed to a second
 * worker. A handoff it never answered goes to another worker, unless the
 * connection shows it was served (bytes sent or read): that one is
 * closed, since its client already heard from this worker.
 */
static void
worker_detach(struct worker *w)
{
	struct inflight	*p;
	size_t		 i;
	uint64_t	 closed;

	memset(w->rr, 0, MAX_LISTENER_IDS * sizeof *w->rr);
	if (w->ipc != NULL)
		nc_ipc_drain(w->ipc, NC_IPC_MAX_QUEUE);
	if (w->staging != NULL) {	/* never sent: only at a dispatch */
		inflight_push(w, w->staging);
		w->staging = NULL;
	}
	while ((p = w->inflights) != NULL) {
		w->inflights = p->next;
		closed = 0;
		for (i = 0; i < p->n; i++) {
			if (!listener_touched(p->h[i]->fd))
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
	if (w->ipc != NULL) {
		nc_ipc_free(w->ipc);
		w->ipc = NULL;
	}
}

/*
 * Kills a worker that broke the protocol or cannot run. It gets nothing
 * more; its handoffs are decided once it is reaped and everything it sent
 * has been read (worker_detach).
 */
static void
worker_kill(struct worker *w, const char *why)
{
	if (w->killed || w->state == W_DEAD)
		return;
	log_warnx("worker %d [pid %d]: killing it: %s", w->id, (int)w->pid,
	    why);
	w->killed = true;
	if (w->pid > 0)
		(void)kill(w->pid, SIGKILL);
	w->state = W_STOPPING;
	memset(w->rr, 0, MAX_LISTENER_IDS * sizeof *w->rr);
	listener_worker_changed();
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
		supervisor_retry_later();
		return;
	}
	inflight_push(w, p);
}

/*
 * Sends every frame staged by the dispatch that ends: the workers that
 * can be staged for are the online ones, of this generation or draining.
 */
void
supervisor_flush_conns(void)
{
	struct worker	*w;

	for (w = supervisor_next(NULL); w != NULL; w = supervisor_next(w))
		if (w->staging != NULL)
			conn_flush(w);
}

/*
 * A connection for w: staged in its frame (sent when full, or when the
 * dispatch ends: supervisor_flush_conns()), or sent alone as a JSON
 * `conn` to a worker that does not read frames. -1 when it cannot go.
 */
int
supervisor_send_conn(struct worker *w, struct handoff *h)
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
	if ((fds[0] = listener_dup(h->fd)) == -1) {
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

static struct event	*retry_ev;

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	size_t	i;

	(void)fd;
	(void)what;
	(void)arg;
	for (i = 0; i < master_nlisteners; i++)
		listener_dispatch(master_listeners[i]);
}

/* Dispatches again once refusing workers may have room. */
void
supervisor_retry_later(void)
{
	struct timeval	tv = { 0, 110000 };

	if (retry_ev == NULL &&
	    (retry_ev = evtimer_new(master_base, retry_cb, NULL)) == NULL)
		return;
	if (!evtimer_pending(retry_ev, NULL))
		(void)evtimer_add(retry_ev, &tv);
}

static void
restart_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	if (!master_stopping)
		supervisor_spawn((int)(intptr_t)arg);
}

/*
 * In a child: drops to the workers' user and group, supplementary groups
 * cleared, for good. Async-signal-safe; 0 or -1.
 */
int
supervisor_drop(void)
{
	if (master_worker_gid != (gid_t)-1 &&
	    (setgroups(0, NULL) == -1 || setresgid(master_worker_gid,
	    master_worker_gid, master_worker_gid) == -1))
		return -1;
	if (master_worker_uid != (uid_t)-1 && setresuid(
	    master_worker_uid, master_worker_uid, master_worker_uid) == -1)
		return -1;
	/* The drop above must hold: no way back to root. */
	if (master_worker_uid != (uid_t)-1 && master_worker_uid != 0 &&
	    setuid(0) == 0)
		return -1;
	return 0;
}

/* The program service of the configuration, or NULL (nc-config.h). */
const struct service_rt *
supervisor_program(void)
{
	size_t	i;

	for (i = 0; i < master_nservices; i++)
		if (master_services[i].conf->handler == NC_HANDLER_PROGRAM)
			return &master_services[i];
	return NULL;
}

static void
supervisor_spawn(int slot)
{
	struct worker		*w;
	const struct service_rt	*prog = supervisor_program();
	const char		*bin = worker_binary();
	char			 env[32];
	int			 sv[2] = { -1, -1 };
	pid_t			 pid;

	if ((prog == NULL || prog->conf->sockets == NC_SOCKETS_CLUSTER) &&
	    nc_ipc_socketpair(sv) == -1)
		fatalx("socketpair: %s", strerror(errno));
	if ((w = calloc(1, sizeof *w)) == NULL ||
	    (w->rr = calloc(MAX_LISTENER_IDS, sizeof *w->rr)) == NULL)
		fatalx("out of memory");
	w->slot = slot;
	w->id = next_worker_id++;
	w->generation = generation;
	w->restarts = slots[slot].restarts;
	if ((w->listening = json_array()) == NULL)
		fatalx("out of memory");
	clock_gettime(CLOCK_MONOTONIC, &w->started);
	w->exec_fd = w->out_fd = -1;

	if (prog != NULL) {
		w->pid = program_spawn(w, prog, sv[1]);
		w->state = W_STARTING;
		if (sv[0] != -1) {
			close(sv[1]);
			if ((w->granted = calloc(MAX_LISTENER_IDS,
			    sizeof *w->granted)) == NULL ||
			    (w->ipc = nc_ipc_new(master_base, sv[0],
			    worker_msg_cb, worker_error_cb, w)) == NULL)
				fatalx("out of memory");
			worker_watch_queue(w);
		}
		master_workers[slot] = w;
		log_info("worker %d [pid %d] (slot %d) started: %s", w->id,
		    (int)w->pid, slot, prog->conf->command[0]);
		return;
	}
	switch (pid = fork()) {
	case -1:
		fatalx("fork: %s", strerror(errno));
	case 0:
		/* The child: only async-signal-safe calls until exec. */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* Drop to user/group, supplementary groups cleared. */
		if (supervisor_drop() == -1)
			_exit(126);
		/* PR_SET_PDEATHSIG is cleared by a change of credentials. */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(sv[0]);
		if (sv[1] != 3) {
			if (dup2(sv[1], 3) == -1)
				_exit(127);
			close(sv[1]);
		} else
			(void)fcntl(3, F_SETFD, 0);
		snprintf(env, sizeof env, "%d", 3);
		setenv("NETCLUSTER_CHANNEL_FD", env, 1);
		snprintf(env, sizeof env, "%d", w->id);
		setenv("NETCLUSTER_WORKER_ID", env, 1);
		/* systemd speaks to the master only. */
		unsetenv("NOTIFY_SOCKET");
		unsetenv("WATCHDOG_USEC");
		unsetenv("WATCHDOG_PID");
		execl(bin, "netcluster-worker", (char *)NULL);
		_exit(127);
	default:
		break;
	}
	close(sv[1]);
	w->pid = pid;
	w->state = W_STARTING;
	w->ipc = nc_ipc_new(master_base, sv[0], worker_msg_cb,
	    worker_error_cb, w);
	if (w->ipc == NULL)
		fatalx("out of memory");
	worker_watch_queue(w);
	master_workers[slot] = w;
	log_info("worker %d [pid %d] (slot %d) started", w->id, (int)pid,
	    slot);
}

void
supervisor_start(void)
{
	int	i;

	slots = calloc((size_t)master_nworkers, sizeof *slots);
	master_workers = calloc((size_t)master_nworkers,
	    sizeof *master_workers);
	if (slots == NULL || master_workers == NULL)
		fatalx("out of memory");
	for (i = 0; i < master_nworkers; i++) {
		slots[i].backoff_ms = BACKOFF_START_MS;
		slots[i].restart_ev = evtimer_new(master_base, restart_cb,
		    (void *)(intptr_t)i);
		if (slots[i].restart_ev == NULL)
			fatalx("out of memory");
		supervisor_spawn(i);
	}
}

static void
kill_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;

	(void)fd;
	(void)what;
	log_warnx("worker %d [pid %d]: still running after %d ms; killing it",
	    w->id, (int)w->pid, master_config->shutdown_timeout_ms);
	(void)kill(w->pid, SIGKILL);
}

void
supervisor_stop(void)
{
	struct worker	*w;
	int		 i;

	if (retry_ev != NULL)
		(void)event_del(retry_ev);
	for (i = 0; i < master_nworkers; i++) {
		(void)event_del(slots[i].restart_ev);
		if ((w = master_workers[i]) != NULL)
			worker_stop(w);
	}
	for (w = draining; w != NULL; w = w->next)
		worker_stop(w);
	reload_finish("stopping");
}

/* `stop`: it closes its servers and drains; killed after the timeout. */
static void
worker_stop(struct worker *w)
{
	struct timeval	tv;

	if (w->state == W_STOPPING || w->state == W_DEAD)
		return;
	tv.tv_sec = master_config->shutdown_timeout_ms / 1000;
	tv.tv_usec = (master_config->shutdown_timeout_ms % 1000) * 1000;
	w->state = W_STOPPING;
	/* A program without a channel: SIGTERM is its `stop`. */
	if (w->ipc == NULL)
		(void)kill(w->pid, SIGTERM);
	else
		worker_send(w, json_pack("{s:s}", "type", "stop"));
	w->kill_ev = evtimer_new(master_base, kill_cb, w);
	if (w->kill_ev != NULL)
		(void)evtimer_add(w->kill_ev, &tv);
}

static void
worker_free(struct worker *w)
{
	if (w->kill_ev != NULL)
		event_free(w->kill_ev);
	worker_detach(w);
	if (w->program)
		program_close(w);
	stats_worker_gone(w);
	json_decref(w->last_count);
	json_decref(w->listening);
	free(w->granted);
	free(w->rr);
	free(w);
}

/* A worker of an older generation exited: it is not replaced. */
static bool
reap_draining(pid_t pid, int status)
{
	struct worker	**wp, *w;

	for (wp = &draining; (w = *wp) != NULL; wp = &w->next)
		if (w->pid == pid)
			break;
	if (w == NULL)
		return false;
	*wp = w->next;
	log_info("worker %d [pid %d] of generation %d %s %d after draining",
	    w->id, (int)pid, w->generation, WIFSIGNALED(status) ?
	    "killed by signal" : "exited with status", WIFSIGNALED(status) ?
	    WTERMSIG(status) : WEXITSTATUS(status));
	w->state = W_DEAD;
	worker_free(w);
	/* Listeners a reload removed close once nobody holds them. */
	if (draining == NULL)
		listener_retired_close();
	return true;
}

/* SIGCHLD: reap every child that exited and replace it. */
void
supervisor_reap(void)
{
	struct worker		*w;
	struct slot_state	*st;
	struct count_req	*c, *cn;
	struct timeval		 tv;
	pid_t			 pid;
	int			 status, i;
	double			 lived;
	char			 why[64];
	bool			 killed;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		/* The check of an upgrade's binary is no worker. */
		if (upgrade_check_reaped(pid, status) ||
		    reap_draining(pid, status))
			continue;
		for (i = 0; i < master_nworkers; i++)
			if (master_workers[i] != NULL &&
			    master_workers[i]->pid == pid)
				break;
		if (i == master_nworkers)
			continue;
		w = master_workers[i];
		st = &slots[i];
		if (WIFSIGNALED(status))
			snprintf(why, sizeof why, "killed by signal %d",
			    WTERMSIG(status));
		else
			snprintf(why, sizeof why, "exited with status %d",
			    WEXITSTATUS(status));
		/*
		 * SIGKILL from outside (the OOM killer, an operator) to a
		 * worker that was serving is no crash loop: it is replaced
		 * at once, and the backoff does not grow.
		 */
		killed = w->state == W_ONLINE && WIFSIGNALED(status) &&
		    WTERMSIG(status) == SIGKILL;
		w->state = W_DEAD;
		lived = elapsed_s(&w->started);
		/* Its pending count answers will not come. */
		for (c = counts; c != NULL; c = cn) {
			cn = c->next;
			if (c->seqs[i] != -1) {
				c->seqs[i] = -1;
				if (--c->waiting == 0)
					count_finish(c);
			}
		}
		master_workers[i] = NULL;
		worker_free(w);
		if (master_stopping) {
			log_info("worker [pid %d] (slot %d) %s", (int)pid, i,
			    why);
			continue;
		}
		if (lived >= BACKOFF_RESET_S) {
			st->deaths = 0;
			st->backoff_ms = BACKOFF_START_MS;
		}
		if (!killed)
			st->deaths++;
		st->restarts++;
		tv.tv_sec = st->deaths > 1 && !killed ? st->backoff_ms / 1000 : 0;
		tv.tv_usec = st->deaths > 1 && !killed ?
		    (st->backoff_ms % 1000) * 1000 : 0;
		log_warnx("worker [pid %d] (slot %d) %s after %.1f s; "
		    "restarting in %ld ms", (int)pid, i, why, lived,
		    (long)(tv.tv_sec * 1000 + tv.tv_usec / 1000));
		stats_restart(status, st->deaths > 1 && !killed);
		if (st->deaths > 1 && !killed) {
			st->backoff_ms = st->backoff_ms * 3 / 2;
			if (st->backoff_ms > BACKOFF_MAX_MS)
				st->backoff_ms = BACKOFF_MAX_MS;
		}
		(void)evtimer_add(st->restart_ev, &tv);
	}
	listener_worker_changed();
	for (i = 0; i < (int)master_nlisteners; i++)
		listener_dispatch(master_listeners[i]);
	if (master_stopping)
		master_worker_gone();
}

bool
supervisor_all_online(void)
{
	int	i;

	for (i = 0; i < master_nworkers; i++)
		if (master_workers[i] == NULL ||
		    master_workers[i]->state != W_ONLINE)
			return false;
	return true;
}

size_t
supervisor_alive(void)
{
	struct worker	*w;
	size_t		 i, n = 0;

	for (i = 0; i < (size_t)master_nworkers; i++)
		if (master_workers[i] != NULL)
			n++;
	for (w = draining; w != NULL; w = w->next)
		n++;
	return n;
}

struct worker *
supervisor_draining(void)
{
	return draining;
}

int
supervisor_inflight(void)
{
	return ninflight;
}

bool
supervisor_busy(void)
{
	return reloading || handover;
}

/* The workers, for an upgrade: their channels stay open across exec. */
json_t *
supervisor_export(void)
{
	struct worker	*w;
	json_t		*list;
	int		 i, mfd;

	if ((list = json_array()) == NULL)
		return NULL;
	for (i = 0; i <= master_nworkers; i++) {
		w = i < master_nworkers ? master_workers[i] : draining;
		for (; w != NULL; w = i < master_nworkers ? NULL : w->next) {
			if (w->state == W_DEAD || (w->ipc == NULL &&
			    !w->program))
				continue;
			if (w->program && w->ipc == NULL) {
				/* No channel: its pid and pipes. */
				mfd = program_export(w);
				(void)json_array_append_new(list, json_pack(
				    "{s:i, s:i, s:i, s:i, s:b, s:i, s:s, s:i}",
				    "pid", (int)w->pid, "slot", w->slot, "id",
				    w->id, "generation", w->generation,
				    "program", 1, "output", w->out_fd, "state",
				    state_names[w->state], "messages", mfd));
				continue;
			}
			(void)fcntl(nc_ipc_fd(w->ipc), F_SETFD, 0);
			if (w->program)
				(void)program_export(w);
			(void)json_array_append_new(list, json_pack(
			    "{s:i, s:i, s:i, s:i, s:i, s:s, s:b, s:i, s:b, "
			    "s:O*}", "pid", (int)w->pid, "slot", w->slot, "id",
			    w->id, "generation", w->generation, "channel",
			    nc_ipc_fd(w->ipc), "state", state_names[w->state],
			    "program", w->program, "output", w->program ?
			    w->out_fd : -1, "frames", w->frames, "last_count",
			    w->last_count));
		}
	}
	return list;
}

/*
 * After an upgrade: the workers of the previous master are still our
 * children. They become an older generation that drains once the new
 * generation (started next) is online.
 */
int
supervisor_adopt(json_t *list)
{
	struct worker	*w;
	json_t		*e;
	size_t		 i;
	int		 fd;

	json_array_foreach(list, i, e) {
		if ((w = calloc(1, sizeof *w)) == NULL ||
		    (w->rr = calloc(MAX_LISTENER_IDS, sizeof *w->rr)) == NULL ||
		    (w->listening = json_array()) == NULL)
			fatalx("out of memory");
		w->pid = (pid_t)json_integer_value(json_object_get(e, "pid"));
		w->slot = (int)json_integer_value(json_object_get(e, "slot"));
		w->id = (int)json_integer_value(json_object_get(e, "id"));
		w->generation = (int)json_integer_value(json_object_get(e,
		    "generation"));
		w->state = W_ONLINE;
		w->adopted = true;
		w->frames = json_is_true(json_object_get(e, "frames"));
		/* Its counters so far, in the totals (metrics.c). */
		if (json_is_object(json_object_get(e, "last_count")))
			w->last_count = json_incref(json_object_get(e,
			    "last_count"));
		w->exec_fd = w->out_fd = -1;
		clock_gettime(CLOCK_MONOTONIC, &w->started);
		if (json_is_true(json_object_get(e, "program")))
			program_adopt(w, (int)json_integer_value(
			    json_object_get(e, "output")), json_is_integer(
			    json_object_get(e, "messages")) ? (int)
			    json_integer_value(json_object_get(e, "messages")) :
			    -1);
		if (json_object_get(e, "channel") != NULL) {
			fd = (int)json_integer_value(json_object_get(e,
			    "channel"));
			(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
			w->ipc = nc_ipc_new(master_base, fd, worker_msg_cb,
			    worker_error_cb, w);
			if (w->ipc == NULL)
				fatalx("out of memory");
			worker_watch_queue(w);
		}
		if (w->id >= next_worker_id)
			next_worker_id = w->id + 1;
		if (w->generation >= generation)
			generation = w->generation + 1;
		w->next = draining;
		draining = w;
		handover = true;
		log_info("worker %d [pid %d] of generation %d adopted",
		    w->id, (int)w->pid, w->generation);
	}
	return 0;
}

/* done() once the current generation took over (at once if it has). */
void
supervisor_on_handover(void (*done)(const char *, void *), void *arg)
{
	struct reload_waiter	*r;

	if (!handover) {
		done(NULL, arg);
		return;
	}
	if ((r = calloc(1, sizeof *r)) == NULL) {
		done("out of memory", arg);
		return;
	}
	r->done = done;
	r->arg = arg;
	r->next = waiters;
	waiters = r;
	reloading = true;
}

/* Tells whoever asked for a reload how it went. */
static void
reload_finish(const char *error)
{
	struct reload_waiter	*r;

	reloading = false;
	stats_reload_end(error == NULL);
	if (reload_timer != NULL)
		(void)event_del(reload_timer);
	while ((r = waiters) != NULL) {
		waiters = r->next;
		r->done(error, r->arg);
		free(r);
	}
}

static int
draining_generations(void)
{
	struct worker	*w;
	int		 gens[8], n = 0, i;

	for (w = draining; w != NULL; w = w->next) {
		for (i = 0; i < n; i++)
			if (gens[i] == w->generation)
				break;
		if (i == n && n < 8)
			gens[n++] = w->generation;
	}
	return n;
}

/*
 * SIGHUP and `netclusterctl reload`: the new configuration is checked
 * first; if it is bad, the old one keeps serving and the error goes to
 * the log, STATUS= and the caller. Listeners that stay keep their
 * sockets; new ones are bound; removed ones close once the old workers
 * are gone. A new generation of workers starts; only once all of it is
 * online does the old one stop accepting and drain. done(NULL) or
 * done(error) is called when that is decided.
 */
void
supervisor_reload(void (*done)(const char *, void *), void *arg)
{
	struct nc_config	*cfg;
	struct service_rt	*svcs;
	struct listener		**list;
	struct slot_state	*ns;
	struct worker		**nw;
	struct reload_waiter	*r;
	struct timeval		 tv = { RELOAD_TIMEOUT_S, 0 };
	json_error_t		 jerr;
	json_t			*json;
	char			*errors, err[512], *nl;
	size_t			 i, n;
	int			 nworkers, k;

	if (master_stopping) {
		done("netclusterd is stopping", arg);
		return;
	}
	if (reloading || handover || master_upgrading ||
	    upgrade_check_running()) {
		done("a reload or an upgrade is already running; try again "
		    "once it is done", arg);
		return;
	}
	if (draining_generations() >= MAX_DRAINING) {
		snprintf(err, sizeof err, "%d older generations are still "
		    "draining (up to shutdown_timeout_ms); try again later",
		    draining_generations());
		done(err, arg);
		return;
	}
	notify_reloading();
	stats_reload_begin();
	log_notice("reloading %s", master_config->file);
	if (nc_config_load(master_config->file, &cfg, &errors) != 0 ||
	    master_check_config(cfg, &errors) != 0) {
		if (errors != NULL && (nl = strchr(errors, '\n')) != NULL &&
		    nl[1] == '\0')
			*nl = '\0';
		log_errx("reload failed, the running configuration stays: %s",
		    errors != NULL ? errors : "?");
		snprintf(err, sizeof err, "reload failed: %s",
		    errors != NULL ? errors : "?");
		notify_status("%s", err);
		notify("READY=1");
		stats_reload_end(false);
		done(err, arg);
		free(errors);
		nc_config_free(cfg);
		return;
	}
	json = json_load_file(cfg->file, JSON_REJECT_DUPLICATES, &jerr);
	nworkers = master_cli_workers > 0 ? master_cli_workers : cfg->workers;
	svcs = calloc(cfg->nservices, sizeof *svcs);
	for (i = 0; svcs != NULL && i < cfg->nservices; i++)
		svcs[i].conf = &cfg->services[i];
	if (json == NULL || svcs == NULL || health_prepare(cfg, err,
	    sizeof err) == -1 || listener_build(svcs, cfg->nservices, nworkers,
	    &list, &n, err, sizeof err) == -1) {
		if (json == NULL || svcs == NULL)
			snprintf(err, sizeof err, "out of memory");
		health_abort();
		stats_reload_end(false);
		log_errx("reload failed, the running configuration stays: %s",
		    err);
		notify_status("reload failed: %s", err);
		notify("READY=1");
		json_decref(json);
		free(svcs);
		nc_config_free(cfg);
		snprintf(err + strlen(err), sizeof err - strlen(err), "%s", "");
		done(err, arg);
		return;
	}
	nw = calloc((size_t)nworkers, sizeof *nw);
	ns = calloc((size_t)nworkers, sizeof *ns);
	r = calloc(1, sizeof *r);
	if (nw == NULL || ns == NULL || r == NULL)
		fatalx("out of memory");

	/* The running workers become the draining generation. */
	for (k = 0; k < master_nworkers; k++) {
		(void)event_del(slots[k].restart_ev);
		event_free(slots[k].restart_ev);
		if (master_workers[k] == NULL)
			continue;
		master_workers[k]->next = draining;
		draining = master_workers[k];
	}
	listener_commit(list, n);
	free(master_workers);
	free(slots);
	free(master_services);
	nc_config_free(master_config);
	json_decref(config_json);
	master_config = cfg;
	health_commit();
	master_worker_uid = cfg->uid;
	master_worker_gid = cfg->gid;
	config_json = json;
	master_services = svcs;
	master_nservices = cfg->nservices;
	master_workers = nw;
	master_nworkers = nworkers;
	slots = ns;
	generation++;
	reloading = true;
	handover = true;
	r->done = done;
	r->arg = arg;
	r->next = waiters;
	waiters = r;
	for (k = 0; k < nworkers; k++) {
		slots[k].backoff_ms = BACKOFF_START_MS;
		slots[k].restart_ev = evtimer_new(master_base, restart_cb,
		    (void *)(intptr_t)k);
		if (slots[k].restart_ev == NULL)
			fatalx("out of memory");
		supervisor_spawn(k);
	}
	if (reload_timer == NULL &&
	    (reload_timer = evtimer_new(master_base, reload_timeout_cb,
	    NULL)) == NULL)
		fatalx("out of memory");
	(void)evtimer_add(reload_timer, &tv);
	notify_status("reloading: generation %d starting", generation);
	listener_worker_changed();
}

/*
 * The new generation did not come online in time (it keeps failing): the
 * caller hears so; the older workers keep serving until it does.
 */
static void
reload_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	char	err[160];

	(void)fd;
	(void)what;
	(void)arg;
	snprintf(err, sizeof err, "generation %d is not online after %d s; "
	    "the older workers keep serving until it is", generation,
	    RELOAD_TIMEOUT_S);
	log_errx("reload: %s", err);
	notify_status("reload: %s", err);
	reload_finish(err);
}

/* The new generation is online: the old one stops accepting and drains. */
static void
reload_online(void)
{
	struct worker	*w;

	handover = false;
	for (w = draining; w != NULL; w = w->next)
		worker_stop(w);
	log_notice("generation %d online; older workers drain", generation);
	reload_finish(NULL);
}

static void
count_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct count_req	*c = arg;

	(void)fd;
	(void)what;
	count_finish(c);	/* who did not answer stays "answered": false */
}

/*
 * getConnections for the whole cluster: asks every live worker and calls
 * done with {"workers": [{slot, id, pid, state, count, services,
 * answered}...]} once all answered or the bound passed.
 */
int
supervisor_count(json_t *request, void (*done)(json_t *, void *), void *arg)
{
	struct count_req	*c;
	struct worker		*w;
	struct timeval		 tv = { COUNT_TIMEOUT_MS / 1000,
	    (COUNT_TIMEOUT_MS % 1000) * 1000 };
	const struct service_rt	*prog = supervisor_program();
	json_t			*list, *msg, *entry;
	int			 i, n, *kernel = NULL;

	(void)request;
	if ((c = calloc(1, sizeof *c)) == NULL ||
	    (c->seqs = calloc((size_t)master_nworkers, sizeof *c->seqs)) ==
	    NULL || (list = json_array()) == NULL) {
		free(c);
		return -1;
	}
	c->result = json_pack("{s:o}", "workers", list);
	c->done = done;
	c->arg = arg;
	c->timer = evtimer_new(master_base, count_timeout_cb, c);
	if (prog != NULL && prog->conf->sockets == NC_SOCKETS_INHERIT &&
	    (kernel = calloc((size_t)master_nworkers, sizeof *kernel)) != NULL)
		sockdiag_count(prog, master_workers, master_nworkers, kernel);
	for (i = 0; i < master_nworkers; i++) {
		c->seqs[i] = -1;
		w = master_workers[i];
		(void)json_array_append_new(list, json_pack(
		    "{s:i, s:i, s:i, s:s, s:i, s:b, s:f, s:i, s:I}", "slot", i,
		    "id", w != NULL ? w->id : 0, "pid", w != NULL ? w->pid : 0,
		    "state", w != NULL ? state_names[w->state] : "dead",
		    "count", 0, "answered", 0, "uptime_s",
		    w != NULL ? elapsed_s(&w->started) : 0.0, "restarts",
		    slots[i].restarts, "handed",
		    (json_int_t)(w != NULL ? w->handed : 0)));
		if (w != NULL)
			(void)json_object_set(json_array_get(list, (size_t)i),
			    "listening", w->listening);
		/*
		 * A program without a channel cannot be asked: the kernel
		 * tells its connections; where it cannot, the count is
		 * unknown (null), never a made-up 0, and so are its
		 * service's totals.
		 */
		if (w != NULL && w->program && w->ipc == NULL) {
			entry = json_array_get(list, (size_t)i);
			n = kernel != NULL ? kernel[i] : -1;
			(void)json_object_set_new(entry, "count", n >= 0 ?
			    json_integer(n) : json_null());
			(void)json_object_set_new(entry, "services", json_pack(
			    "{s:o}", prog->conf->name, n >= 0 ?
			    json_integer(n) : json_null()));
			(void)json_object_set_new(entry, "answered",
			    json_boolean(n >= 0));
			continue;
		}
		if (w == NULL || w->ipc == NULL || w->state == W_DEAD ||
		    w->state == W_STARTING)
			continue;
		msg = json_pack("{s:s}", "type", "count");
		if (msg == NULL)
			continue;
		c->seqs[i] = nc_ipc_send(w->ipc, msg, NULL, 0);
		json_decref(msg);
		if (c->seqs[i] != -1)
			c->waiting++;
	}
	free(kernel);
	c->next = counts;
	counts = c;
	if (c->waiting == 0) {
		count_finish(c);
		return 0;
	}
	(void)evtimer_add(c->timer, &tv);
	return 0;
}

/*
 * Every worker: this generation's by slot, then the draining ones. NULL
 * starts the walk and ends it.
 */
struct worker *
supervisor_next(struct worker *w)
{
	int	i;

	if (w != NULL && (w->slot >= master_nworkers ||
	    master_workers[w->slot] != w))
		return w->next;		/* a draining one */
	for (i = w == NULL ? 0 : w->slot + 1; i < master_nworkers; i++)
		if (master_workers[i] != NULL)
			return master_workers[i];
	return draining;
}

/* Some worker takes connections now (this generation's or an older one). */
bool
supervisor_any_online(void)
{
	struct worker	*w;

	for (w = supervisor_next(NULL); w != NULL; w = supervisor_next(w))
		if (w->state == W_ONLINE)
			return true;
	return false;
}

int
supervisor_generation(void)
{
	return generation;
}

struct service_rt *
service_by_name(const char *name)
{
	size_t	i;

	for (i = 0; i < master_nservices; i++)
		if (strcmp(master_services[i].conf->name, name) == 0)
			return &master_services[i];
	return NULL;
}
