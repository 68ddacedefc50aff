/*
 * Cluster transparency, the worker's half: when NETCLUSTER_CHANNEL_FD
 * names a channel to netclusterd, a server's listen() asks the master for
 * the handle (Node's queryServer) instead of binding. The master answers
 * with a listening fd (shared, reuseport), with round-robin, in which
 * case it accepts and hands each connection over as `conn`, which the
 * server takes or refuses (maxConnections) with `conn.ack`. In exclusive
 * mode the fd is this worker's own socket (the master keeps one per
 * worker slot); without one (an older master), the server binds the
 * address itself.
 *
 * netcluster-worker speaks the rest of the protocol itself (it attaches
 * with hooks). Any other program that links the library is run by the
 * master as a worker ("sockets": "cluster") and the library speaks for
 * it: it reports each server `listening`, answers `count`, turns `stop`
 * into the `disconnect` event and Node's worker.disconnect(), and
 * delivers `message`s, which nc_cluster_broadcast() sends.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "nc-accept.h"
#include "nc-cluster.h"
#include "nc-int.h"
#include "nc-ipc.h"

/*
 * Room in the queue to the master that broadcasts never take: the
 * library's own answers (conn.ack, count.reply, listening, unlisten)
 * must still go out when a program broadcasts until NC_ENOBUFS. The
 * master keeps at most 64 handoffs in flight per worker.
 */
#define CLUSTER_QUEUE_RESERVE	256

struct cluster_pending {
	long long		 seq;
	struct nc_server	*server;
	char			*address;	/* as asked for */
	int			 backlog;
	struct cluster_pending	*next;
};

/* A server that listens through the master: closed on `stop`. */
struct cluster_server {
	struct nc_server	*server;
	long long		 listener;	/* the master's id, its last */
	struct cluster_server	*next;
};

struct cluster_rr {
	long long		 listener;
	struct nc_server	*server;
	struct cluster_rr	*next;
};

static struct {
	bool			 probed;
	int			 fd;		/* -1: not a worker */
	struct nc_ipc		*ipc;
	struct cluster_pending	*pending;
	struct cluster_rr	*rr;
	nc_cluster_msg_cb	 msg_cb;	/* netcluster-worker's hooks */
	nc_cluster_lost_cb	 lost_cb;
	void			*arg;
	struct nc_accept_pause	 pause;	/* connections bounced: no fds */
	int			 id;		/* NETCLUSTER_WORKER_ID */
	char			*service;	/* NETCLUSTER_SERVICE */
	struct event_base	*base;
	struct nc__emitter	 em;		/* message, disconnect */
	struct nc__handle	 handle;	/* for nc_run() */
	struct cluster_server	*servers;
	bool			 disconnecting;	/* `stop` came */
	bool			 closed;	/* the channel, for good */
	int			 closing;	/* servers yet to close */
	bool			 frames;	/* the master reads broadcast
						   frames: NC_IPC_FRAMES_ENV */
	struct event		*beat;		/* pong every so often, unasked */
	long long		 beat_ms;
	unsigned long		 bad_messages;	/* payloads not JSON */
} cl = { .fd = -1, .id = -1 };

static void	cluster_close_channel(void);

bool
nc_cluster_is_worker(void)
{
	const char	*s;
	char		*end;
	long		 v;
	int		 type;
	socklen_t	 len = sizeof type;

	if (cl.probed)
		return cl.fd != -1;
	cl.probed = true;
	if ((s = getenv("NETCLUSTER_CHANNEL_FD")) == NULL || *s == '\0')
		return false;
	errno = 0;
	v = strtol(s, &end, 10);
	if (*end != '\0' || errno != 0 || v < 3 || v > INT_MAX) {
		log_warnx("NETCLUSTER_CHANNEL_FD=%.32s is not an fd; running "
		    "standalone", s);
		return false;
	}
	if (getsockopt((int)v, SOL_SOCKET, SO_TYPE, &type, &len) == -1 ||
	    type != SOCK_SEQPACKET) {
		log_warnx("NETCLUSTER_CHANNEL_FD=%ld is not a channel; running "
		    "standalone", v);
		return false;
	}
	(void)fcntl((int)v, F_SETFD, FD_CLOEXEC);
	(void)fcntl((int)v, F_SETFL, fcntl((int)v, F_GETFL) | O_NONBLOCK);
	cl.fd = (int)v;
	if ((s = getenv("NETCLUSTER_WORKER_ID")) != NULL) {
		v = strtol(s, &end, 10);
		if (*end == '\0' && v > 0 && v <= INT_MAX)
			cl.id = (int)v;
	}
	if ((s = getenv("NETCLUSTER_SERVICE")) != NULL && *s != '\0')
		cl.service = strdup(s);
	/* A master that reads message frames says so (nc-ipc.h). */
	if ((s = getenv(NC_IPC_FRAMES_ENV)) != NULL &&
	    strtol(s, NULL, 10) >= NC_IPC_MSG_VERSION)
		cl.frames = true;
	return true;
}

int
nc_cluster_worker_id(void)
{
	return nc_cluster_is_worker() ? cl.id : -1;
}

const char *
nc_cluster_service(void)
{
	return nc_cluster_is_worker() ? cl.service : NULL;
}

/* Is the library speaking for the program (no netcluster-worker hooks)? */
static bool
cluster_auto(void)
{
	return cl.msg_cb == NULL;
}

static void
cluster_send(json_t *msg)
{
	if (msg == NULL) {
		log_warnx("cluster: out of memory");
		return;
	}
	if (cl.ipc != NULL)
		(void)nc_ipc_send(cl.ipc, msg, NULL, 0);
	json_decref(msg);
}

static struct cluster_server *
cluster_server_find(const struct nc_server *s)
{
	struct cluster_server	*c;

	for (c = cl.servers; c != NULL; c = c->next)
		if (c->server == s)
			return c;
	return NULL;
}

/*
 * A server listens: the master learns where (exclusive: its own port),
 * under the listener id of the listen.result it listens by.
 */
static void
cluster_server_listening(void *server, const struct nc_event_args *ev,
    void *arg)
{
	struct cluster_server	*c;
	struct nc_address	 a;

	(void)ev;
	(void)arg;
	if ((c = cluster_server_find(server)) == NULL ||
	    nc_server_address(server, &a) != 0)
		return;
	cluster_send(json_pack("{s:s, s:s, s:s, s:i, s:I}", "type",
	    "listening", "service", cl.service != NULL ? cl.service : "",
	    "address", a.address, "port", a.port, "listener",
	    (json_int_t)c->listener));
}

/*
 * Reports s `listening` once it listens, and closes it on `stop`. A
 * server asks again after a listen that failed (an exclusive bind's
 * EADDRINUSE): it is reported once, under the new id.
 */
static void
cluster_server_add(struct nc_server *s, long long listener)
{
	struct cluster_server	*c;

	(void)nc_server_off(s, NC_EV_LISTENING, cluster_server_listening,
	    NULL);
	(void)nc_server_once(s, NC_EV_LISTENING, cluster_server_listening,
	    NULL);
	if ((c = cluster_server_find(s)) != NULL) {
		c->listener = listener;
		return;
	}
	if ((c = calloc(1, sizeof *c)) == NULL) {
		log_warnx("cluster: out of memory; a stop will not close a "
		    "server");
		return;
	}
	nc_server_hold(s);
	c->server = s;
	c->listener = listener;
	c->next = cl.servers;
	cl.servers = c;
}

static void
cluster_server_release(void *arg)
{
	nc_server_release(arg);
}

/* Lets go of our hold on a later turn: we may be inside its close(). */
static void
cluster_server_free(struct cluster_server *c)
{
	if (nc__defer(cl.base, cluster_server_release, c->server) != 0)
		log_warnx("cluster: out of memory; a server is not freed");
	free(c);
}

static void
cluster_server_remove(struct nc_server *s)
{
	struct cluster_server	**cp, *c;

	for (cp = &cl.servers; (c = *cp) != NULL; cp = &c->next)
		if (c->server == s) {
			*cp = c->next;
			cluster_server_free(c);
			return;
		}
}

static void
cluster_pending_free(struct cluster_pending *p)
{
	nc_server_release(p->server);
	free(p->address);
	free(p);
}

static struct cluster_pending *
cluster_take_pending(long long seq)
{
	struct cluster_pending	**pp, *p;

	for (pp = &cl.pending; (p = *pp) != NULL; pp = &p->next) {
		if (p->seq == seq) {
			*pp = p->next;
			return p;
		}
	}
	return NULL;
}

/*
 * Connections from the master, n of them (one `conn`, or a frame of up to
 * NC_IPC_MAX_FDS), nfds of which came (the rest were lost: we are out of
 * fds, and the master keeps them). One answer covers them all.
 */
static void
cluster_conns(long long seq, const uint32_t *listeners, size_t n, int *fds,
    size_t nfds, bool frame)
{
	struct nc_server	*srv[NC_IPC_MAX_FDS];
	struct cluster_rr	*r;
	json_t			*ack;
	uint64_t		 accepted = 0;
	unsigned long		 pauses;
	size_t			 i, j;
	long			 ms;
	int			 taken;

	for (i = 0; i < n; i++) {
		srv[i] = NULL;
		for (r = cl.rr; r != NULL; r = r->next)
			if (r->listener == (long long)listeners[i])
				break;
		if (i >= nfds || r == NULL)
			continue;
		for (j = 0, taken = 0; j < i; j++)
			if (srv[j] == r->server && (accepted >> j & 1))
				taken++;
		srv[i] = r->server;
		if (nc__server_cluster_can_take(r->server, taken))
			accepted |= (uint64_t)1 << i;
	}
	/* Out of fds, connections stayed with the master: it retries. */
	if (nfds < n && nc_accept_pause_begin(&cl.pause))
		log_warnx("cluster: out of file descriptors; the master "
		    "keeps connections until they fit");
	else if (nfds == n && nc_accept_pause_end(&cl.pause, &ms, &pauses))
		log_warnx("cluster: taking connections again after %ld ms "
		    "(%lu bounced)", ms, pauses);
	/*
	 * The answer goes before a connection is served: once a greeting
	 * is written, the master must never hand the connection to another
	 * worker, even if this one dies now. So connections are taken only
	 * once the master's copy of "yes" is in the kernel (the master reads
	 * it even after our death); when the channel is backed up, the
	 * answer is "no" and the master re-routes them.
	 */
	if (accepted != 0) {
		if (frame) {
			if (nc_ipc_send_ack(cl.ipc, seq, n, accepted,
			    true) == -1)
				accepted = 0;
		} else {
			ack = json_pack("{s:s, s:I, s:b}", "type", "conn.ack",
			    "ack", (json_int_t)seq, "accepted", 1);
			if (ack == NULL || nc_ipc_send_now(cl.ipc, ack) == -1)
				accepted = 0;
			json_decref(ack);
		}
	}
	for (i = 0; i < nfds; i++) {
		if (accepted >> i & 1)
			nc__server_cluster_connection(srv[i], fds[i]);
		else
			close(fds[i]);	/* the master keeps its copy */
	}
	if (accepted != 0)
		return;
	if (frame)
		(void)nc_ipc_send_ack(cl.ipc, seq, n, 0, false);
	else if ((ack = json_pack("{s:s, s:I, s:b}", "type", "conn.ack",
	    "ack", (json_int_t)seq, "accepted", 0)) != NULL) {
		(void)nc_ipc_send(cl.ipc, ack, NULL, 0);
		json_decref(ack);
	}
}

static void
cluster_conn(json_t *msg, int *fds, size_t nfds)
{
	uint32_t	listener;
	json_int_t	id;

	id = json_integer_value(json_object_get(msg, "listener"));
	listener = id >= 0 && id <= UINT32_MAX ? (uint32_t)id : UINT32_MAX;
	cluster_conns(json_integer_value(json_object_get(msg, "seq")),
	    &listener, 1, fds, nfds, false);
}

static void
cluster_emit_message(const char *text, size_t len, int from)
{
	struct nc_event_args	ev;

	memset(&ev, 0, sizeof ev);
	ev.event = NC_EV_MESSAGE;
	ev.data = text;
	ev.len = len;
	ev.from = from;
	(void)nc__emitter_emit(&cl.em, NULL, &ev);
}

/*
 * A message frame, or a messages frame of several: each payload is as
 * the sending worker wrote it, which the master did not check. One that
 * is not a JSON value in UTF-8 is dropped here and logged (the 1st, 2nd,
 * 4th... time); the others, and the channel, go on. The event gets the
 * text NUL-terminated: a message frame's is (nc-ipc.h), a batch's is
 * copied.
 */
static void
cluster_message_frame(const struct nc_ipc_frame *f)
{
	char		 buf[NC_IPC_BATCH_MAX + 1], *copy;
	const char	*why, *text;
	size_t		 off = 0, len;
	int		 from;

	while (nc_ipc_frame_next(f, &off, &from, &text, &len)) {
		why = NULL;
		if (nc_ipc_json_check(text, len, &why, NULL) == -1) {
			cl.bad_messages++;
			if ((cl.bad_messages & (cl.bad_messages - 1)) == 0)
				log_warnx("cluster: a message from worker %d "
				    "is not JSON (%s): dropped (%lu dropped)",
				    from, why != NULL ? why : "?",
				    cl.bad_messages);
			continue;
		}
		if (f->kind == NC_IPC_FRAME_MESSAGE) {
			cluster_emit_message(text, len, from);
			continue;
		}
		copy = len < sizeof buf ? buf : malloc(len + 1);
		if (copy == NULL) {
			log_warnx("cluster: out of memory; a message is lost");
			continue;
		}
		memcpy(copy, text, len);
		copy[len] = '\0';
		cluster_emit_message(copy, len, from);
		if (copy != buf)
			free(copy);
	}
}

static void
cluster_frame_cb(struct nc_ipc *ipc, const struct nc_ipc_frame *f, int *fds,
    size_t nfds, void *arg)
{
	size_t	i;

	(void)ipc;
	(void)arg;
	if (f->kind == NC_IPC_FRAME_CONN) {
		cluster_conns(f->seq, f->listeners, f->n, fds, nfds, true);
		return;
	}
	if (f->kind == NC_IPC_FRAME_MESSAGE ||
	    f->kind == NC_IPC_FRAME_MESSAGES) {
		cluster_message_frame(f);
		return;
	}
	log_warnx("cluster: unexpected frame of kind %d", f->kind);
	for (i = 0; i < nfds; i++)
		close(fds[i]);
}

static void
cluster_listen_result(json_t *msg, int *fds, size_t nfds)
{
	struct cluster_pending	*p;
	struct cluster_rr	*r;
	const char		*mode;
	json_int_t		 code, listener;
	int			 fd = nfds == 1 ? fds[0] : -1;
	bool			 exclusive;

	p = cluster_take_pending(json_integer_value(json_object_get(msg,
	    "ack")));
	if (p == NULL) {
		log_warnx("cluster: listen.result for no request");
		if (fd != -1)
			close(fd);
		return;
	}
	code = json_integer_value(json_object_get(msg, "error"));
	if (code == 0 && json_object_get(msg, "fds_lost") != NULL)
		code = -EMFILE;	/* the kernel could not give us the socket */
	mode = json_string_value(json_object_get(msg, "mode"));
	exclusive = code == 0 && mode != NULL && strcmp(mode, "exclusive") == 0;
	listener = json_integer_value(json_object_get(msg, "listener"));
	if (code == 0 && mode != NULL && strcmp(mode, "round-robin") == 0) {
		if (fd != -1)
			close(fd);
		fd = -1;
	}
	/*
	 * Round-robin servers take every connection from the master;
	 * reuseport ones take those of slots whose worker is gone.
	 */
	if (code == 0 && mode != NULL && !exclusive && (fd == -1 ||
	    strcmp(mode, "reuseport") == 0)) {
		if ((r = calloc(1, sizeof *r)) == NULL)
			code = NC_ENOMEM;
		else {
			r->listener = json_integer_value(json_object_get(msg,
			    "listener"));
			r->server = p->server;
			r->next = cl.rr;
			cl.rr = r;
		}
	}
	if (code == 0 && cluster_auto())
		cluster_server_add(p->server, listener);
	nc__server_cluster_listening(p->server, (int)code, fd,
	    mode != NULL && strcmp(mode, "shared") == 0,
	    json_string_value(json_object_get(msg, "address")),
	    (int)json_integer_value(json_object_get(msg, "port")),
	    exclusive && fd == -1 ? p->address : NULL, p->backlog);
	cluster_pending_free(p);
}

/*
 * `count`: getConnections across the cluster, and the counters the
 * master sums for its metrics, as netcluster-worker reports them. The
 * program is one service; its counters are the whole process's.
 */
static void
cluster_count(json_t *msg)
{
	const char	*svc = cl.service != NULL ? cl.service : "";
	int		 n = nc__server_total_connections();
	json_int_t	 accepted = nc__server_total_accepted();

	cluster_send(json_pack("{s:s, s:I, s:i, s:{s:i}, s:I, "
	    "s:{s:{s:I, s:I}}}", "type", "count.reply", "ack",
	    json_integer_value(json_object_get(msg, "seq")), "count", n,
	    "services", svc, n, "accepted", accepted, "stats", svc,
	    "accepted", accepted, "proxy_header_errors",
	    (json_int_t)nc__server_total_proxy_errors()));
}

/*
 * `pong`: the heartbeat, sent from the loop (a stuck loop misses it, and
 * the master kills a worker silent too long), with the connections taken
 * so far, which its recycling counts: the answer to ping (its seq as
 * `ack`), or NULL, a beat of our own.
 */
static void
cluster_pong(json_t *ping)
{
	json_t	*msg = json_pack("{s:s, s:I}", "type", "pong", "accepted",
	    (json_int_t)nc__server_total_accepted());

	if (msg != NULL && ping != NULL && json_object_set_new(msg, "ack",
	    json_integer(json_integer_value(json_object_get(ping, "seq")))) ==
	    -1) {
		json_decref(msg);
		msg = NULL;
	}
	cluster_send(msg);
}

/*
 * Arms the next beat at the next multiple of every ms of the monotonic
 * clock, which all processes share: the workers of a pool beat together
 * and the master takes their pongs in a few wake-ups, not one each.
 */
static void
cluster_beat_arm(void)
{
	struct timespec	ts;
	struct timeval	tv;
	long long	now, wait;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	wait = cl.beat_ms - now % cl.beat_ms;
	tv.tv_sec = (time_t)(wait / 1000);
	tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
	if (event_add(cl.beat, &tv) == -1)
		log_warnx("cluster: cannot arm the heartbeat");
}

static void
cluster_beat_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	cluster_pong(NULL);
	if (cl.beat != NULL)
		cluster_beat_arm();
}

/*
 * `beat`: the heartbeat without the master's pings, which cost it a
 * send and a wake-up per worker: a `pong` every `every` ms from a timer
 * of the loop (a stuck loop misses it as it would miss a ping); 0 stops.
 * The timer never keeps the loop going (cluster_unref_events()).
 */
static void
cluster_beat(json_t *msg)
{
	json_int_t	ms = json_integer_value(json_object_get(msg, "every"));

	if (ms <= 0) {
		if (cl.beat != NULL)
			event_free(cl.beat);
		cl.beat = NULL;
		return;
	}
	cl.beat_ms = ms > 86400000 ? 86400000 : (long long)ms;
	if (cl.beat == NULL && (cl.beat = evtimer_new(cl.base,
	    cluster_beat_cb, NULL)) == NULL) {
		log_warnx("cluster: cannot arm the heartbeat");
		return;
	}
	/* The first at once: the master counts silence from its `beat`. */
	cluster_beat_cb(-1, 0, NULL);
}

/* A message from another worker or the operator: the MESSAGE event. */
static void
cluster_message(json_t *msg)
{
	json_t			*v = json_object_get(msg, "message");
	const char		*raw;
	char			*text = NULL;
	size_t			 len = 0;

	/* The value's text as the master sent it, else written out. */
	if ((raw = nc_ipc_last_value(cl.ipc, msg, "message", &len)) != NULL &&
	    (text = malloc(len + 1)) != NULL) {
		memcpy(text, raw, len);
		text[len] = '\0';
	} else if (v != NULL && (text = json_dumps(v, JSON_COMPACT |
	    JSON_ENCODE_ANY)) != NULL)
		len = strlen(text);
	if (text == NULL) {
		log_warnx("cluster: a message could not be read");
		return;
	}
	cluster_emit_message(text, len,
	    (int)json_integer_value(json_object_get(msg, "from")));
	free(text);
}

static void
cluster_server_closed(void *server, const struct nc_event_args *ev,
    void *arg)
{
	(void)server;
	(void)ev;
	(void)arg;
	if (--cl.closing == 0)
		cluster_close_channel();
}

static void
cluster_close_later(void *arg)
{
	(void)arg;
	if (cl.closing == 0)
		cluster_close_channel();
}

/*
 * `stop`: Node's worker.disconnect(). The program hears `disconnect`,
 * then every server that listens through the master closes; once they
 * have (their connections ended), so does the channel, and the program
 * exits when it has nothing else to do.
 */
static void
cluster_disconnect(void)
{
	struct nc_event_args	 ev;
	struct cluster_server	*c, *list;

	if (cl.disconnecting)
		return;
	cl.disconnecting = true;
	memset(&ev, 0, sizeof ev);
	ev.event = NC_EV_DISCONNECT;
	(void)nc__emitter_emit(&cl.em, NULL, &ev);
	list = cl.servers;
	cl.servers = NULL;
	while ((c = list) != NULL) {
		list = c->next;
		if (nc_server_listening(c->server) &&
		    nc_server_once(c->server, NC_EV_CLOSE,
		    cluster_server_closed, NULL) == 0) {
			cl.closing++;
			/* Exclusive: what its own backlog holds is served. */
			nc__server_accept_backlog(c->server);
			(void)nc_server_close(c->server, NULL, NULL);
		}
		cluster_server_free(c);
	}
	if (cl.closing == 0 && nc__defer(cl.base, cluster_close_later,
	    NULL) != 0)
		cluster_close_channel();
}

static void
cluster_msg_cb(struct nc_ipc *ipc, json_t *msg, int *fds, size_t nfds,
    void *arg)
{
	const char	*type = json_string_value(json_object_get(msg, "type"));
	size_t		 i;

	(void)ipc;
	(void)arg;
	if (strcmp(type, "listen.result") == 0 && nfds <= 1)
		cluster_listen_result(msg, fds, nfds);
	else if (strcmp(type, "conn") == 0 && nfds <= 1)
		cluster_conn(msg, fds, nfds);
	else if (strcmp(type, "message") == 0 && nfds == 0)
		cluster_message(msg);
	else if (strcmp(type, "ping") == 0 && nfds == 0)
		cluster_pong(msg);
	else if (strcmp(type, "beat") == 0 && nfds == 0)
		cluster_beat(msg);
	else if (cluster_auto() && strcmp(type, "count") == 0 && nfds == 0)
		cluster_count(msg);
	else if (cluster_auto() && strcmp(type, "stop") == 0 && nfds == 0)
		cluster_disconnect();
	else if (cl.msg_cb != NULL) {
		cl.msg_cb(msg, fds, nfds, cl.arg);
		return;
	} else {
		log_warnx("cluster: unexpected message \"%s\" with %zu fds",
		    type, nfds);
		for (i = 0; i < nfds; i++)
			close(fds[i]);
	}
	json_decref(msg);
}

static void
cluster_error_cb(struct nc_ipc *ipc, const char *reason, void *arg)
{
	(void)ipc;
	(void)arg;
	if (cl.lost_cb != NULL)
		cl.lost_cb(reason, cl.arg);
	else {
		/* Without its master a worker has nothing to do (Node). */
		log_err("cluster: channel to the master lost (%s); exiting",
		    reason);
		exit(0);
	}
}

/*
 * As Node's channel in a worker: it keeps nc_run() going only while
 * something waits on it (a listen, a round-robin server, a MESSAGE
 * listener); a message being sent keeps it going too.
 */
static int
cluster_unref_events(struct nc__handle *h)
{
	int	beat = cl.beat != NULL ? nc__event_pending(cl.beat) : 0;

	(void)h;
	if (cl.ipc == NULL || !nc_ipc_reading(cl.ipc))
		return beat;
	return beat + (cl.pending == NULL && cl.rr == NULL &&
	    cl.em.count[NC_EV_MESSAGE] == 0 ? 1 : 0);
}

static int
cluster_open(struct event_base *base)
{
	json_t	*msg;

	if (cl.ipc != NULL)
		return 0;
	if (!nc_cluster_is_worker() || cl.closed)
		return -1;
	cl.base = nc__base(base);
	cl.ipc = nc_ipc_new(cl.base, cl.fd, cluster_msg_cb,
	    cluster_error_cb, NULL);
	if (cl.ipc == NULL)
		return -1;
	/* The master checked every message it sends on: not parsed again. */
	nc_ipc_trust_tail(cl.ipc, "message", "message");
	nc_ipc_set_frame_cb(cl.ipc, cluster_frame_cb);
	nc__handle_init(&cl.handle, cl.base, cluster_unref_events);
	/*
	 * Messages may come as frames from now on. Only said to a master
	 * that named itself able to hear it: an older one would take an
	 * unknown type for a protocol error.
	 */
	if (cl.frames) {
		msg = json_pack("{s:s, s:i}", "type", "frames", "message",
		    NC_IPC_MSG_VERSION);
		if (msg == NULL || nc_ipc_send(cl.ipc, msg, NULL, 0) == -1) {
			log_warnx("cluster: cannot declare message frames; "
			    "messages come as JSON");
		}
		json_decref(msg);
	}
	return 0;
}

/* Closes the channel for good, after sending what is queued (bounded). */
static void
cluster_close_channel(void)
{
	if (cl.ipc == NULL)
		return;
	if (cl.beat != NULL) {
		event_free(cl.beat);
		cl.beat = NULL;
	}
	nc_ipc_flush(cl.ipc, 1000);
	nc__handle_remove(&cl.handle);
	nc_ipc_free(cl.ipc);
	cl.ipc = NULL;
	cl.closed = true;
}

int
nc_cluster_on(struct event_base *base, enum nc_event ev, nc_listener_cb cb,
    void *arg)
{
	if (ev != NC_EV_MESSAGE && ev != NC_EV_DISCONNECT)
		return NC_ERR_INVALID_ARG_VALUE;
	if (cb == NULL)
		return NC_ERR_MISSING_ARGS;
	if (cluster_open(base) != 0)
		return NC_ERR_IPC_CHANNEL_CLOSED;
	return nc__emitter_add(&cl.em, ev, cb, arg, false);
}

int
nc_cluster_off(enum nc_event ev, nc_listener_cb cb, void *arg)
{
	if (ev != NC_EV_MESSAGE && ev != NC_EV_DISCONNECT)
		return NC_ERR_INVALID_ARG_VALUE;
	return nc__emitter_remove(&cl.em, ev, cb, arg);
}

/*
 * Checked JSON text without the whitespace between its tokens: what
 * jansson would write, short of rewriting escapes and numbers, for a
 * fraction of the cost.
 */
static char *
cluster_compact(const char *json, size_t *len)
{
	const char	*p;
	char		*out, *o;
	bool		 in_string = false;

	if ((out = malloc(strlen(json) + 1)) == NULL)
		return NULL;
	for (p = json, o = out; *p != '\0'; p++) {
		if (in_string) {
			*o++ = *p;
			if (*p == '\\' && p[1] != '\0')
				*o++ = *++p;
			else if (*p == '"')
				in_string = false;
		} else if (*p == '"') {
			*o++ = *p;
			in_string = true;
		} else if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
			*o++ = *p;
	}
	*o = '\0';
	*len = (size_t)(o - out);
	return out;
}

int
nc_cluster_broadcast(const char *json, int flags)
{
	char		*text = NULL, *body;
	const char	*out;
	size_t		 len;
	long long	 seq;
	int		 n;
	bool		 spaced;

	if (json == NULL || (flags & ~NC_BROADCAST_DRAINING) != 0)
		return NC_ERR_INVALID_ARG_VALUE;
	if (cluster_open(cl.base) != 0)
		return NC_ERR_IPC_CHANNEL_CLOSED;
	len = strlen(json);
	if (nc_ipc_json_check(json, len, NULL, &spaced) == -1)
		return NC_ERR_INVALID_ARG_VALUE;
	/* Measured as it goes out: the master sends it on as it is. */
	out = json;
	if (spaced) {
		if ((text = cluster_compact(json, &len)) == NULL)
			return NC_ENOMEM;
		out = text;
	}
	if (len > NC_CLUSTER_MESSAGE_MAX) {
		free(text);
		return NC_EMSGSIZE;
	}
	if (nc_ipc_queued(cl.ipc) >=
	    NC_IPC_MAX_QUEUE - CLUSTER_QUEUE_RESERVE) {
		free(text);
		return NC_ENOBUFS;
	}
	/* To a master that reads them, a frame: it checks only the header. */
	if (cl.frames) {
		n = nc_ipc_send_broadcast(cl.ipc, out, len,
		    (flags & NC_BROADCAST_DRAINING) ? NC_IPC_MSG_DRAINING : 0);
		free(text);
		return n == -1 ? NC_ERR_IPC_CHANNEL_CLOSED : 0;
	}
	/* Written once: the value's text as it is, in the envelope. */
	n = asprintf(&body, "{\"type\":\"broadcast\",\"draining\":%s,"
	    "\"message\":%.*s}", (flags & NC_BROADCAST_DRAINING) ? "true" :
	    "false", (int)len, out);
	free(text);
	if (n == -1)
		return NC_ENOMEM;
	seq = nc_ipc_send_text(cl.ipc, body, (size_t)n);
	free(body);
	return seq == -1 ? NC_ERR_IPC_CHANNEL_CLOSED : 0;
}

int
nc_cluster_attach(struct event_base *base, nc_cluster_msg_cb msg_cb,
    nc_cluster_lost_cb lost_cb, void *arg)
{
	if (cluster_open(base) != 0)
		return -1;
	cl.msg_cb = msg_cb;
	cl.lost_cb = lost_cb;
	cl.arg = arg;
	return 0;
}

long long
nc_cluster_send(json_t *msg, const int *fds, size_t nfds)
{
	size_t	i;

	if (cl.ipc == NULL) {
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		return -1;
	}
	return nc_ipc_send(cl.ipc, msg, fds, nfds);
}

void
nc_cluster_flush(int timeout_ms)
{
	if (cl.ipc != NULL)
		nc_ipc_flush(cl.ipc, timeout_ms);
}

void
nc_cluster_detach(void)
{
	if (cl.ipc != NULL)
		nc__handle_remove(&cl.handle);
	nc_ipc_free(cl.ipc);
	cl.ipc = NULL;
	cl.fd = -1;
}

int
nc_cluster_connections(void)
{
	return nc__server_total_connections();
}

/*
 * Asks the master for the handle of address (netcluster.json's listen
 * syntax); the answer reaches nc__server_cluster_listening(). Returns 0,
 * or a negative code with nothing sent.
 */
int
nc__cluster_listen(struct nc_server *s, struct event_base *base,
    const char *address, int backlog, const char *service, int index)
{
	struct cluster_pending	*p;
	json_t			*msg;
	long long		 seq;

	if (cluster_open(base) != 0)
		return NC_EINVAL;
	if ((p = calloc(1, sizeof *p)) == NULL)
		return NC_ENOMEM;
	/*
	 * "frames": connections may come as frames (nc-ipc.h); "heartbeat":
	 * 1, it answers `ping` (a worker from before exits at an unknown
	 * type), 2, and `beat` too.
	 */
	msg = json_pack("{s:s, s:s, s:i, s:i, s:i}", "type", "listen",
	    "address", address, "backlog", backlog, "frames",
	    NC_IPC_FRAME_VERSION, "heartbeat", 2);
	/* netcluster-worker says which listener it means: two services may
	 * both listen on "127.0.0.1:0". */
	if (msg != NULL && service != NULL &&
	    (json_object_set_new(msg, "service", json_string(service)) == -1 ||
	    json_object_set_new(msg, "index", json_integer(index)) == -1)) {
		json_decref(msg);
		msg = NULL;
	}
	if (msg == NULL) {
		free(p);
		return NC_ENOMEM;
	}
	seq = nc_ipc_send(cl.ipc, msg, NULL, 0);
	json_decref(msg);
	if (seq == -1) {
		free(p);
		return NC_ECONNRESET;
	}
	p->seq = seq;
	p->server = s;
	p->backlog = backlog;
	if ((p->address = strdup(address)) == NULL) {
		free(p);
		return NC_ENOMEM;	/* the master's answer finds no request */
	}
	nc_server_hold(s);
	p->next = cl.pending;
	cl.pending = p;
	return 0;
}

/* The server closed: no more connections for it; tell the master. */
void
nc__cluster_forget(struct nc_server *s)
{
	struct cluster_rr	**rp, *r;
	json_t			*msg;

	cluster_server_remove(s);
	for (rp = &cl.rr; (r = *rp) != NULL;) {
		if (r->server != s) {
			rp = &r->next;
			continue;
		}
		*rp = r->next;
		msg = json_pack("{s:s, s:I}", "type", "unlisten", "listener",
		    (json_int_t)r->listener);
		if (msg != NULL && cl.ipc != NULL)
			(void)nc_ipc_send(cl.ipc, msg, NULL, 0);
		json_decref(msg);
		free(r);
	}
}
