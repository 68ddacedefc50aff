/*
 * Cluster transparency, the worker's half: when NETCLUSTER_CHANNEL_FD
 * names a channel to netclusterd, a server's listen() asks the master for
 * the handle (Node's queryServer) instead of binding. The master answers
 * with a listening fd (shared, reuseport) or with round-robin, in which
 * case it accepts and hands each connection over as `conn`, which the
 * server takes or refuses (maxConnections) with `conn.ack`.
 */

#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nc-accept.h"
#include "nc-cluster.h"
#include "nc-int.h"
#include "nc-ipc.h"

struct cluster_pending {
	long long		 seq;
	struct nc_server	*server;
	struct cluster_pending	*next;
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
	nc_cluster_msg_cb	 msg_cb;
	nc_cluster_lost_cb	 lost_cb;
	void			*arg;
	struct nc_accept_pause	 pause;	/* connections bounced: no fds */
} cl = { .fd = -1 };

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
	return true;
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

static void
cluster_conn(json_t *msg, int *fds, size_t nfds)
{
	struct cluster_rr	*r;
	json_t			*ack;
	json_int_t		 listener, seq;
	unsigned long		 pauses;
	long			 ms;
	bool			 accepted = false;

	listener = json_integer_value(json_object_get(msg, "listener"));
	for (r = cl.rr; r != NULL; r = r->next)
		if (r->listener == listener)
			break;
	/*
	 * The answer goes before the connection is served: once a greeting
	 * is written, the master must never hand the connection to another
	 * worker, even if this one dies now. So a connection is taken only
	 * once the master's copy of "yes" is in the kernel (the master reads
	 * it even after our death); when the channel is backed up, the
	 * answer is "no" and the master re-routes it.
	 */
	accepted = nfds == 1 && r != NULL &&
	    nc__server_cluster_can_take(r->server);
	/* Out of fds, the connection stayed with the master: it retries. */
	if (nfds == 0 && nc_accept_pause_begin(&cl.pause))
		log_warnx("cluster: out of file descriptors; the master "
		    "keeps connections until they fit");
	else if (nfds == 1 && nc_accept_pause_end(&cl.pause, &ms, &pauses))
		log_warnx("cluster: taking connections again after %ld ms "
		    "(%lu bounced)", ms, pauses);
	seq = json_integer_value(json_object_get(msg, "seq"));
	if (accepted) {
		ack = json_pack("{s:s, s:I, s:b}", "type", "conn.ack", "ack",
		    seq, "accepted", 1);
		accepted = ack != NULL && nc_ipc_send_now(cl.ipc, ack) != -1;
		json_decref(ack);
		if (accepted) {
			nc__server_cluster_connection(r->server, fds[0]);
			return;
		}
	}
	if (nfds == 1)
		close(fds[0]);	/* the master keeps its copy and re-routes */
	ack = json_pack("{s:s, s:I, s:b}", "type", "conn.ack", "ack", seq,
	    "accepted", 0);
	if (ack != NULL) {
		(void)nc_ipc_send(cl.ipc, ack, NULL, 0);
		json_decref(ack);
	}
}

static void
cluster_listen_result(json_t *msg, int *fds, size_t nfds)
{
	struct cluster_pending	*p;
	struct cluster_rr	*r;
	const char		*mode;
	json_int_t		 code;
	int			 fd = nfds == 1 ? fds[0] : -1;

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
	if (code == 0 && mode != NULL && strcmp(mode, "round-robin") == 0) {
		if (fd != -1)
			close(fd);
		fd = -1;
	}
	/*
	 * Round-robin servers take every connection from the master;
	 * reuseport ones take those of slots whose worker is gone.
	 */
	if (code == 0 && mode != NULL && (fd == -1 ||
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
	nc__server_cluster_listening(p->server, (int)code, fd,
	    mode != NULL && strcmp(mode, "shared") == 0,
	    json_string_value(json_object_get(msg, "address")),
	    (int)json_integer_value(json_object_get(msg, "port")));
	nc_server_release(p->server);
	free(p);
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

static int
cluster_open(struct event_base *base)
{
	if (cl.ipc != NULL)
		return 0;
	if (!nc_cluster_is_worker())
		return -1;
	cl.ipc = nc_ipc_new(nc__base(base), cl.fd, cluster_msg_cb,
	    cluster_error_cb, NULL);
	return cl.ipc != NULL ? 0 : -1;
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
	msg = json_pack("{s:s, s:s, s:i}", "type", "listen", "address",
	    address, "backlog", backlog);
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
