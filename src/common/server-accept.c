/*
 * A server taking connections: accept4() from a raw event, in batches (or
 * one at a time on a listener shared with other processes, each in an
 * epoll set of its own with EPOLLEXCLUSIVE), a PROXY header read first
 * where the server asks for one, and each connection handed to
 * `connection` listeners as a socket, or dropped past maxConnections.
 * Accepts pause, never spin, when the process is out of fds.
 */

#include <sys/types.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "nc-accept.h"
#include "nc-int.h"
#include "server-int.h"
#include "socket-int.h"

#define SERVER_ACCEPT_BATCH	64	/* accepts per event, bounded work */

/* Connections open on every server of the process (cluster `count`). */
static int		server_total;
static long long	server_accepted;	/* taken, in all */
/* PROXY headers refused, in all */
static unsigned long long server_proxy_errors;

/* A PROXY header on its way: read once it is whole, within a bound. */
struct proxy_wait {
	struct nc_server	*server;
	int			 fd;
	struct event		*ev;
	struct timespec		 deadline;
};

static void	server_accept_cb(evutil_socket_t, short, void *);
static void	server_requeue(struct nc_server *);

int
nc__server_total_connections(void)
{
	return server_total;
}

long long
nc__server_total_accepted(void)
{
	return server_accepted;
}

unsigned long long
nc__server_total_proxy_errors(void)
{
	return server_proxy_errors;
}

void
nc__server_connection_closed(struct nc_server *s)
{
	if (s->connections > 0) {
		s->connections--;
		server_total--;
	}
	if (s->generation > 0 && !s->listening)
		nc__server_emit_close_if_drained(s);
	nc_server_release(s);	/* the connection's hold */
}

static void
server_accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct nc_server	*s = arg;

	(void)fd;
	(void)what;
	if (s->aev != NULL && event_add(s->aev, NULL) == -1)
		log_err("server fd %d: cannot watch for connections", s->fd);
}

static void
server_drop(struct nc_server *s, int fd)
{
	struct nc_event_args	args;
	struct nc_address	local, remote;
	struct sockaddr_storage	ss;
	socklen_t		len;

	memset(&local, 0, sizeof local);
	memset(&remote, 0, sizeof remote);
	len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
		(void)nc__sockaddr_to_address((struct sockaddr *)&ss, len,
		    &local);
	len = sizeof ss;
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
		(void)nc__sockaddr_to_address((struct sockaddr *)&ss, len,
		    &remote);
	close(fd);
	log_debug("server fd %d: dropped a connection from %s (max %d)",
	    s->fd, remote.address, s->max_connections);
	memset(&args, 0, sizeof args);
	args.event = NC_EV_DROP;
	args.local = &local;
	args.remote = &remote;
	nc__server_emit(s, &args);
}

static void
server_emit_error(struct nc_server *s, int code, const char *syscall)
{
	struct nc__error	e;
	struct nc_event_args	args;

	nc__error_set(&e, code, syscall, NULL, -1);
	memset(&args, 0, sizeof args);
	args.event = NC_EV_ERROR;
	args.error = &e.pub;
	if (s->em.count[NC_EV_ERROR] == 0) {
		log_err("unhandled server error: %s", e.message);
		if (s->listening)
			(void)nc_server_close(s, NULL, NULL);
		return;
	}
	nc__server_emit(s, &args);
}

/* A connection becomes a socket and `connection` is emitted. */
static int
server_connection(struct nc_server *s, int fd, const struct nc__proxy_info *pi)
{
	struct nc_socket	*sock;
	struct nc_event_args	 args;

	sock = nc__socket_accepted(s->base, fd, s->allow_half_open,
	    s->pause_on_connect);
	if (sock == NULL) {
		close(fd);
		return -1;
	}
	if (pi != NULL && !pi->local)
		nc__socket_set_remote(sock, pi);
	sock->server = s;
	nc_server_hold(s);	/* released when sock is destroyed */
	s->connections++;
	server_total++;
	server_accepted++;
	memset(&args, 0, sizeof args);
	args.event = NC_EV_CONNECTION;
	args.socket = sock;
	nc_socket_hold(sock);
	nc_server_hold(s);
	nc__server_emit(s, &args);
	nc_socket_release(sock);
	nc_server_release(s);
	return 0;
}

static void
proxy_wait_free(struct proxy_wait *w, bool close_fd)
{
	if (close_fd)
		close(w->fd);
	event_free(w->ev);
	nc_server_release(w->server);
	free(w);
}

static void
proxy_fail(struct proxy_wait *w, const char *why)
{
	w->server->proxy_errors++;
	server_proxy_errors++;
	log_debug("server fd %d: closed a connection: PROXY header %s",
	    w->server->fd, why);
	proxy_wait_free(w, true);
}

static void
server_proxy_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_wait	*w = arg;
	struct nc__proxy_info	 pi;
	unsigned char		 buf[NC__PROXY_V2_MAX];
	struct timespec		 now;
	struct timeval		 tv;
	ssize_t			 n;
	int			 rc;
	long			 left;

	if (what & EV_TIMEOUT) {
		proxy_fail(w, "late");
		return;
	}
	n = recv(fd, buf, sizeof buf, MSG_PEEK);
	if (n == 0) {
		proxy_fail(w, "missing (closed)");
		return;
	}
	if (n < 0)
		rc = 0;
	else if ((rc = nc__proxy_parse(buf, (size_t)n, &pi)) < 0) {
		proxy_fail(w, "malformed");
		return;
	} else if (rc == 0 && (size_t)n == sizeof buf) {
		proxy_fail(w, "oversized");
		return;
	}
	if (rc > 0) {
		/* Exactly the header leaves the kernel; the rest is data. */
		if (recv(fd, buf, (size_t)rc, 0) != rc) {
			proxy_fail(w, "unreadable");
			return;
		}
		if (!w->server->listening) {
			proxy_wait_free(w, true);
			return;
		}
		(void)server_connection(w->server, fd, &pi);
		proxy_wait_free(w, false);
		return;
	}
	/* More to come: wait again (edge-triggered) for what is left. */
	clock_gettime(CLOCK_MONOTONIC, &now);
	left = (w->deadline.tv_sec - now.tv_sec) * 1000 +
	    (w->deadline.tv_nsec - now.tv_nsec) / 1000000;
	if (left <= 0) {
		proxy_fail(w, "late");
		return;
	}
	tv.tv_sec = left / 1000;
	tv.tv_usec = (left % 1000) * 1000;
	(void)event_add(w->ev, &tv);
}

/* An accepted fd: a socket now, or once its PROXY header came. */
static int
server_take(struct nc_server *s, int fd)
{
	struct proxy_wait	*w;
	struct timeval		 tv;

	if (!s->proxy_protocol)
		return server_connection(s, fd, NULL);
	if ((w = calloc(1, sizeof *w)) == NULL) {
		close(fd);
		return -1;
	}
	w->server = s;
	w->fd = fd;
	w->ev = event_new(s->base, fd, EV_READ | EV_ET, server_proxy_cb, w);
	clock_gettime(CLOCK_MONOTONIC, &w->deadline);
	w->deadline.tv_sec += s->proxy_timeout_ms / 1000;
	w->deadline.tv_nsec += (long)(s->proxy_timeout_ms % 1000) * 1000000;
	if (w->deadline.tv_nsec >= 1000000000) {
		w->deadline.tv_sec++;
		w->deadline.tv_nsec -= 1000000000;
	}
	tv.tv_sec = s->proxy_timeout_ms / 1000;
	tv.tv_usec = (s->proxy_timeout_ms % 1000) * 1000;
	if (w->ev == NULL || event_add(w->ev, &tv) == -1) {
		if (w->ev != NULL)
			event_free(w->ev);
		free(w);
		close(fd);
		return -1;
	}
	nc_server_hold(s);
	return 0;
}

static void
server_accept_cb(evutil_socket_t efd, short what, void *arg)
{
	struct nc_server	*s = arg;
	struct timeval		 tv;
	unsigned long		 pauses;
	long			 ms;
	int			 fd, i, batch, lfd = s->fd;

	(void)efd;
	(void)what;
	nc_server_hold(s);
	/* Shared: one at a time, then to the back of the line. */
	batch = s->xfd != -1 ? 1 : SERVER_ACCEPT_BATCH;
	for (i = 0; i < batch && s->listening && s->fd == lfd; i++) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (nc_accept_must_pause(errno)) {
				/* Never spin on a listener we cannot accept from. */
				if (nc_accept_pause_begin(&s->pause))
					log_warnx("server fd %d: accept: %s; "
					    "pausing accepts, retrying every "
					    "%d ms", lfd, strerror(errno),
					    NC_ACCEPT_PAUSE_MS);
				(void)event_del(s->aev);
				tv.tv_sec = 0;
				tv.tv_usec = NC_ACCEPT_PAUSE_MS * 1000;
				if (s->retry == NULL)
					s->retry = evtimer_new(s->base,
					    server_accept_retry_cb, s);
				if (s->retry != NULL)
					(void)evtimer_add(s->retry, &tv);
				break;
			}
			server_emit_error(s, -errno, "accept");
			break;
		}
		if (nc_accept_pause_end(&s->pause, &ms, &pauses))
			log_warnx("server fd %d: accepting again after %ld ms "
			    "(%lu pauses)", lfd, ms, pauses);
		if (s->max_connections > 0 &&
		    s->connections >= s->max_connections) {
			server_drop(s, fd);
			continue;
		}
		if (server_take(s, fd) == -1) {
			server_emit_error(s, NC_ENOMEM, "accept");
			break;
		}
	}
	if (i > 0 && s->xfd != -1 && s->fd == lfd)
		server_requeue(s);
	nc_server_release(s);
}

/*
 * A listener other processes accept from too (a shared listener under
 * netclusterd): each process waits in an epoll set of its own that holds
 * it with EPOLLEXCLUSIVE, so a new connection wakes one process, not all.
 * The kernel wakes the first waiter in line; after accepting, a process
 * goes to the back of the line (nginx does the same), so connections go
 * around the workers instead of piling on one.
 */
/*
 * The kernel allows 500 such nested paths to one socket (fs/eventpoll.c,
 * path_limits): past them, adding a set that holds it (or it to a set
 * that is watched) fails with EINVAL. A process that finds them taken (a
 * pool of more than 500 workers, or old and new ones together in a
 * reload) watches the socket itself and is woken with every other such
 * one: it serves, at the cost of the wake-ups.
 */
static int
server_watch_direct(struct nc_server *s)
{
	if (s->aev != NULL)
		(void)event_del(s->aev);
	if (s->xfd != -1) {
		close(s->xfd);
		s->xfd = -1;
	}
	if (s->aev == NULL) {
		if ((s->aev = event_new(s->base, s->fd, EV_READ | EV_PERSIST,
		    server_accept_cb, s)) == NULL)
			return -1;
	} else if (event_assign(s->aev, s->base, s->fd, EV_READ |
	    EV_PERSIST, server_accept_cb, s) == -1)
		return -1;
	return event_add(s->aev, NULL);
}

/* Whether set xfd may go in another set: the kernel's limit not met. */
static bool
server_nest_ok(int xfd)
{
	struct epoll_event	ev = { .events = EPOLLIN };
	int			probe, rc;

	if ((probe = epoll_create1(EPOLL_CLOEXEC)) == -1)
		return true;	/* the add itself will tell */
	rc = epoll_ctl(probe, EPOLL_CTL_ADD, xfd, &ev);
	close(probe);
	return rc == 0;
}

static void
server_requeue(struct nc_server *s)
{
	struct epoll_event	ev = { .events = EPOLLIN | EPOLLEXCLUSIVE };

	if (epoll_ctl(s->xfd, EPOLL_CTL_DEL, s->fd, NULL) == -1 ||
	    epoll_ctl(s->xfd, EPOLL_CTL_ADD, s->fd, &ev) == -1) {
		/* Its place taken meanwhile (another process's set): it
		 * watches the socket itself from now on. */
		if (server_watch_direct(s) == -1)
			log_warnx("server fd %d: cannot watch it: %s", s->fd,
			    strerror(errno));
	}
}

/* Watches fd (bound and listening) for connections. */
int
nc__server_start(struct nc_server *s, int fd, bool shared)
{
	struct epoll_event	ev = { .events = EPOLLIN | EPOLLEXCLUSIVE };

	s->fd = fd;
	s->own_socket = false;
	if (shared && ((s->xfd = epoll_create1(EPOLL_CLOEXEC)) == -1 ||
	    epoll_ctl(s->xfd, EPOLL_CTL_ADD, fd, &ev) == -1)) {
		if (s->xfd != -1)
			close(s->xfd);
		s->xfd = -1;	/* every process is woken: it still works */
	}
	if (s->xfd != -1 && !server_nest_ok(s->xfd)) {
		close(s->xfd);
		s->xfd = -1;	/* the same, past the kernel's 500 */
	}
	s->aev = event_new(s->base, s->xfd != -1 ? s->xfd : fd,
	    EV_READ | EV_PERSIST, server_accept_cb, s);
	if (s->aev == NULL) {
		nc__server_close_handle(s);
		return NC_ENOMEM;
	}
	if (event_add(s->aev, NULL) == -1 &&
	    (s->xfd == -1 || server_watch_direct(s) == -1)) {
		nc__server_close_handle(s);
		return NC_ENOMEM;
	}
	s->listening = true;
	return 0;
}

/*
 * Before a worker closes a socket it bound itself (exclusive), it takes
 * what waits in the socket's backlog: closed, those connections would be
 * reset. Bounded: what comes faster than it accepts stays.
 */
void
nc__server_accept_backlog(struct nc_server *s)
{
	struct pollfd	p;
	int		n;

	for (n = 0; n < 64 && s->listening && s->own_socket && s->fd != -1;
	    n++) {
		p.fd = s->fd;
		p.events = POLLIN;
		if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
			break;
		server_accept_cb(-1, EV_READ, s);
	}
}

/* Whether a connection the master accepted for us would be taken. */
bool
nc__server_cluster_can_take(const struct nc_server *s, int taken)
{
	return s->listening && (s->max_connections == 0 ||
	    s->connections + taken < s->max_connections);
}

/* A connection the master accepted for us, already acknowledged. */
void
nc__server_cluster_connection(struct nc_server *s, int fd)
{
	int	flags;

	/* The master accepts non-blocking: usually nothing to set. */
	if ((flags = fcntl(fd, F_GETFL)) != -1 && !(flags & O_NONBLOCK))
		(void)fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	(void)server_take(s, fd);
}
