/*
 * What a worker may send the master: one table, sorted for bsearch(), of
 * each message's name, fd count, the states that allow it and its
 * handler (STYLE.md, IPC); and the master's answers to `hello` (`init`:
 * the configuration as checked, in a sealed memfd, and the service the
 * worker runs) and `listen` (the handle). Anything else, or anything in
 * the wrong state, is a protocol error that kills the worker; the master
 * never fatals for a worker's fault.
 */

#include <sys/mman.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "master.h"
#include "netcluster.h"

#define ANY_LIVE	(1 << W_STARTING | 1 << W_ONLINE | 1 << W_STOPPING)

/* The text of c's configuration, sealed: the same for every worker. */
static int
text_fd(struct conf *c)
{
	const char	*text = c->cfg->text;
	size_t		 len = c->cfg->textlen, off = 0;
	ssize_t		 n;
	int		 fd;

	if (c->text_fd != -1)
		return c->text_fd;
	if ((fd = memfd_create("netcluster.json", MFD_CLOEXEC |
	    MFD_ALLOW_SEALING)) == -1)
		return -1;
	while (off < len) {
		if ((n = write(fd, text + off, len - off)) <= 0) {
			close(fd);
			return -1;
		}
		off += (size_t)n;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
	    F_SEAL_WRITE | F_SEAL_SEAL) == -1) {
		close(fd);
		return -1;
	}
	return c->text_fd = fd;
}

/*
 * `init`: the configuration the master checked (never the file again,
 * which may have changed since), the one service this worker runs, and
 * the master's log level (a reload of one service changes no top-level
 * setting).
 */
static int
msg_hello(struct worker *w, json_t *msg)
{
	json_t	*init;
	int	 fd;

	(void)msg;
	if ((fd = text_fd(w->def->conf)) == -1 ||
	    (fd = handoff_dup(fd)) == -1) {
		worker_kill(w, "cannot hand it the configuration");
		return 0;
	}
	init = json_pack("{s:s, s:i, s:i, s:i, s:s, s:b, s:i}", "type",
	    "init", "id", w->id, "slot", w->slot, "generation", w->generation,
	    "service", w->def->svc->name, "last_stats", 1, "log_level",
	    nc_log_level());
	if (init == NULL || w->ipc == NULL ||
	    nc_ipc_send(w->ipc, init, &fd, 1) == -1)
		worker_kill(w, "cannot send it init");
	json_decref(init);
	return 0;
}

static void
reply_listen(struct worker *w, json_t *req, int code, struct listener *l,
    int fd)
{
	json_t	*msg;
	int	 fds[1];

	msg = json_pack("{s:s, s:I, s:i, s:s, s:i, s:s, s:i}", "type",
	    "listen.result", "ack", json_integer_value(json_object_get(req,
	    "seq")), "error", code, "mode", nc_config_mode_name(l != NULL ?
	    l->svc->mode : NC_MODE_SHARED), "listener", l != NULL ? l->id : -1,
	    "address", l != NULL ? l->bound : "", "port", l != NULL ? l->port :
	    -1);
	if (msg == NULL || w->ipc == NULL) {
		json_decref(msg);
		return;
	}
	if (fd != -1 && (fds[0] = handoff_dup(fd)) != -1)
		(void)nc_ipc_send(w->ipc, msg, fds, 1);
	else
		(void)nc_ipc_send(w->ipc, msg, NULL, 0);
	json_decref(msg);
}

/* Node's queryServer: the handle of a listener of the worker's service. */
static int
msg_listen(struct worker *w, json_t *msg)
{
	struct listener	*l;
	const char	*address, *svc;
	long long	 index = -1;

	address = json_string_value(json_object_get(msg, "address"));
	svc = json_string_value(json_object_get(msg, "service"));
	if (address == NULL || strlen(address) > 1024)
		return -1;
	if (w->def == NULL) {		/* adopted, its service gone */
		reply_listen(w, msg, NC_EACCES, NULL, -1);
		return 0;
	}
	/* netcluster-worker names its listener; a program its address. */
	if (!w->program && svc != NULL && strcmp(svc, w->pool->name) == 0)
		index = json_integer_value(json_object_get(msg, "index"));
	l = (w->program || svc == NULL || strcmp(svc, w->pool->name) == 0) ?
	    listener_find(w->def, address, index) : NULL;
	if (l == NULL) {
		/*
		 * Only what the config names for its service: anything else
		 * is refused, and logged the 1st, 2nd, 4th... time.
		 */
		w->refused_listens++;
		if ((w->refused_listens & (w->refused_listens - 1)) == 0)
			log_warnx("worker %d [pid %d]: refused a handle for "
			    "%.128s: no listener of service %s is there (%lu "
			    "refused)", w->id, (int)w->pid, address,
			    w->pool->name, w->refused_listens);
		reply_listen(w, msg, NC_EACCES, NULL, -1);
		return 0;
	}
	/* Connections may come to it as frames (nc-ipc.h). */
	if (json_integer_value(json_object_get(msg, "frames")) >= 1)
		w->frames = true;
	/*
	 * It answers `ping` (heartbeat.c); one from before would exit. 2:
	 * it also beats by itself when sent `beat`.
	 */
	if (json_integer_value(json_object_get(msg, "heartbeat")) >= 1)
		w->heartbeat = true;
	if (json_integer_value(json_object_get(msg, "heartbeat")) >= 2)
		w->beats = true;
	if (l->svc->mode == NC_MODE_ROUND_ROBIN) {
		w->rr[l->id] = true;
		reply_listen(w, msg, 0, l, -1);
		worker_event(w, WEV_CHANGED);
		return 0;
	}
	if (l->nfds == 0) {
		reply_listen(w, msg, NC_EINVAL, l, -1);
		return 0;
	}
	/* reuseport: it also serves the slots of dead workers, from here. */
	if (l->nfds > 1 && l->svc->mode == NC_MODE_REUSEPORT)
		w->rr[l->id] = true;
	reply_listen(w, msg, 0, l, listener_fd_for(l, w->slot));
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
msg_ready(struct worker *w, json_t *msg)
{
	(void)msg;
	worker_online(w);
	return 0;
}

static int
msg_listening(struct worker *w, json_t *msg)
{
	const struct pooldef	*def = w->def;
	json_t			*entry, *id;
	json_int_t		 lid;
	size_t			 i;

	if (def == NULL)
		return 0;

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
	if (w->granted == NULL || id == NULL || lid < 0 ||
	    lid >= MAX_LISTENER_IDS || w->granted[lid])
		return 0;
	for (i = 0; i < def->nlisteners; i++)
		if (def->listeners[i]->id == lid)
			break;
	if (i == def->nlisteners)
		return 0;	/* not (or no longer) one of its service */
	w->granted[lid] = true;
	if (++w->ngranted == def->nlisteners && w->state == W_STARTING)
		worker_online(w);
	return 0;
}

/* nc_cluster_broadcast(). */
static int
msg_broadcast(struct worker *w, json_t *msg)
{
	json_t		*v = json_object_get(msg, "message"), *d;
	const char	*raw;
	size_t		 rawlen = 0;

	d = json_object_get(msg, "draining");
	if (v == NULL || (d != NULL && !json_is_boolean(d)))
		return -1;
	raw = nc_ipc_last_value(w->ipc, msg, "message", &rawlen);
	broadcast(w, v, raw, rawlen, json_is_true(d));
	return 0;
}

/*
 * The worker's library reads message frames (it was started with
 * NC_IPC_FRAMES_ENV): its messages come so from now on.
 */
static int
msg_frames(struct worker *w, json_t *msg)
{
	json_t	*v = json_object_get(msg, "message");

	if (!json_is_integer(v) || json_integer_value(v) < 1)
		return -1;
	w->msg_frames = true;
	return 0;
}

static int
msg_fatal(struct worker *w, json_t *msg)
{
	const char	*svc = json_string_value(json_object_get(msg, "service"));
	const char	*m = json_string_value(json_object_get(msg, "message"));

	log_err("worker %d [pid %d]: service %.64s: %.200s", w->id,
	    (int)w->pid, svc != NULL ? svc : "?", m != NULL ? m : "?");
	return 0;
}

static int
msg_conn_ack(struct worker *w, json_t *msg)
{
	json_t	*acc = json_object_get(msg, "accepted");

	if (!json_is_boolean(acc))
		return -1;
	return handoff_conn_ack(w, json_integer_value(json_object_get(msg,
	    "ack")), json_is_true(acc) ? 1 : 0, 1, false) == NULL ? 0 : -1;
}

static int
msg_count_reply(struct worker *w, json_t *msg)
{
	if (!json_is_integer(json_object_get(msg, "count")) ||
	    !json_is_object(json_object_get(msg, "services")))
		return -1;
	count_reply(w, msg);
	return 0;
}

/* The answer to the heartbeat's ping (heartbeat.c). */
static int
msg_pong(struct worker *w, json_t *msg)
{
	heartbeat_pong(w, msg);
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
	{ "broadcast",	0,	ANY_LIVE,		msg_broadcast },
	{ "conn.ack",	0,	1 << W_ONLINE | 1 << W_STOPPING | 1 << W_DEAD,
	    msg_conn_ack },
	{ "count.reply", 0,	1 << W_ONLINE | 1 << W_STOPPING, msg_count_reply },
	{ "fatal",	0,	1 << W_STARTING | 1 << W_ONLINE, msg_fatal },
	{ "frames",	0,	ANY_LIVE,		msg_frames },
	{ "hello",	0,	1 << W_STARTING,	msg_hello },
	{ "listen",	0,	1 << W_STARTING | 1 << W_ONLINE, msg_listen },
	{ "listening",	0,	ANY_LIVE,		msg_listening },
	{ "pong",	0,	ANY_LIVE,		msg_pong },
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
dispatch_msg(struct worker *w, json_t *msg, int *fds, size_t nfds)
{
	const struct msg_type	*t;
	const char		*type;
	size_t			 i;

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
	/* Stopped on its way up: what it sent for its start is moot. */
	if (t != NULL && t->fds == nfds && w->state == W_STOPPING &&
	    !w->ever_online && (t->states & (1 << W_STARTING))) {
		json_decref(msg);
		return;
	}
	if (t == NULL || t->fds != nfds || !(t->states & (1 << w->state)) ||
	    t->handler(w, msg) != 0) {
		/* The type is the worker's: the log escapes it. */
		log_err("worker %d [pid %d]: protocol error: %s message "
		    "\"%.64s\" in state %s", w->id, (int)w->pid,
		    t == NULL ? "unknown" : t->fds != nfds ? "wrong fd count in" :
		    !(t->states & (1 << w->state)) ? "unexpected" : "bad",
		    type, worker_state_name(w->state));
		json_decref(msg);
		worker_kill(w, "protocol error");
		return;
	}
	json_decref(msg);
}

/*
 * A frame: from a worker, the answer to a conn frame, or a broadcast,
 * whose payload goes on unparsed (broadcast.c).
 */
static void
dispatch_frame(struct worker *w, const struct nc_ipc_frame *f, int *fds,
    size_t nfds)
{
	const char	*why = NULL;
	size_t		 i;

	for (i = 0; i < nfds; i++)
		close(fds[i]);
	if (f->kind == NC_IPC_FRAME_BROADCAST) {
		/* Of one we killed or that is gone, as a JSON broadcast. */
		if (!w->killed && w->state != W_DEAD)
			broadcast_frame(w, f->payload, f->len,
			    (f->flags & NC_IPC_MSG_DRAINING) != 0);
		return;
	}
	if (f->kind == NC_IPC_FRAME_MESSAGE || f->kind == NC_IPC_FRAME_MESSAGES)
		why = "unexpected message frame";
	else if (f->kind != NC_IPC_FRAME_CONN_ACK)
		why = "unexpected conn frame";
	else if (!(w->state == W_ONLINE || w->state == W_STOPPING ||
	    w->state == W_DEAD))
		why = "unexpected conn.ack frame";
	else
		why = handoff_conn_ack(w, f->seq, f->accepted, f->n, true);
	if (why != NULL) {
		log_err("worker %d [pid %d]: protocol error: %s in state %s",
		    w->id, (int)w->pid, why, worker_state_name(w->state));
		worker_kill(w, "protocol error");
	}
}

void
dispatch_init(void)
{
	worker_dispatch(dispatch_msg, dispatch_frame);
}
