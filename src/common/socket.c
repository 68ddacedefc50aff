/*
 * net.Socket: a TCP or unix stream on raw libevent events. Reads go
 * straight from the kernel to `data` listeners; writes queue in an
 * evbuffer and leave with sendmsg(MSG_NOSIGNAL), so no SIGPIPE is raised.
 *
 * Life of a socket: IDLE (new) -> LOOKUP -> CONNECTING -> OPEN, or OPEN
 * at once for accepted and fd sockets; any state -> DESTROYED. The
 * library holds one reference until `close` has been emitted; memory goes
 * with the last reference.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "nc-int.h"
#include "socket-int.h"

#define SOCKET_READ_SIZE	65536
#define SOCKET_HIGH_WATER_MARK	16384
#define SOCKET_IOV_MAX		64

static void	socket_io_cb(evutil_socket_t, short, void *);
static void	socket_timeout_cb(evutil_socket_t, short, void *);
static void	socket_flush(struct nc_socket *);
static void	socket_error(struct nc_socket *, int, const char *);
static void	socket_maybe_destroy(struct nc_socket *);
static void	socket_fail_writes(struct nc_socket *, int);
static void	socket_emit_decoded(struct nc_socket *);
static struct socket_text *socket_text(const struct nc_socket *);

static const char *state_names[] = {
	[S_IDLE] = "idle",
	[S_LOOKUP] = "lookup",
	[S_CONNECTING] = "connecting",
	[S_OPEN] = "open",
	[S_DESTROYED] = "destroyed",
};

/* The one place the state changes: only forward, never out of DESTROYED. */
static void
socket_set_state(struct nc_socket *s, enum socket_state state)
{
	if (state < s->state || s->state == S_DESTROYED)
		log_err("socket fd %d: illegal transition %s -> %s", s->fd,
		    state_names[s->state], state_names[state]);
	log_debug("socket fd %d: %s -> %s", s->fd, state_names[s->state],
	    state_names[state]);
	s->state = state;
}

/*
 * What must not keep nc_run() alive: the idle timer never does, as in
 * Node; the rest does unless the program called nc_socket_unref().
 */
static int
socket_unref_events(struct nc__handle *h)
{
	struct socket_timer	*t = (struct socket_timer *)h;
	struct nc_socket	*s = t->socket;
	int			 n;

	n = nc__event_pending(&t->ev);
	if (h->unref) {
		n += s->ev_what != 0 ? 1 : 0;
		if (s->conn != NULL)
			n += nc__event_pending(s->conn->lookup_ev);
	}
	return n;
}

static void
socket_now(struct timespec *ts)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
}

static int64_t
socket_elapsed_ms(const struct timespec *since)
{
	struct timespec	now;

	socket_now(&now);
	return (int64_t)(now.tv_sec - since->tv_sec) * 1000 +
	    (now.tv_nsec - since->tv_nsec) / 1000000;
}

static void
socket_arm_timer(struct nc_socket *s, int64_t ms)
{
	struct timeval	tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (event_add(&s->timer->ev, &tv) == -1)
		log_err("socket fd %d: cannot arm the idle timer", s->fd);
}

/* The timer, made by the first setTimeout() or unref(): most sockets
 * have neither. */
static int
socket_timer(struct nc_socket *s)
{
	struct socket_timer	*t;

	if (s->timer != NULL)
		return 0;
	if ((t = calloc(1, sizeof *t)) == NULL)
		return NC_ENOMEM;
	if (evtimer_assign(&t->ev, s->base, socket_timeout_cb, s) == -1) {
		free(t);
		return NC_ENOMEM;
	}
	t->socket = s;
	nc__handle_init(&t->h, s->base, socket_unref_events);
	s->timer = t;
	return 0;
}

static void
socket_timer_free(struct nc_socket *s)
{
	if (s->timer == NULL)
		return;
	(void)event_del(&s->timer->ev);
	nc__handle_remove(&s->timer->h);
	free(s->timer);
	s->timer = NULL;
}

/* Any read or write: the idle timer starts again from now. */
static void
socket_activity(struct nc_socket *s)
{
	if (s->timer == NULL || s->timer->timeout_ms == 0)
		return;
	socket_now(&s->timer->last_activity);
	if (!nc__event_pending(&s->timer->ev) && s->state != S_DESTROYED)
		socket_arm_timer(s, s->timer->timeout_ms);
}

/* The error of a socket that failed when memory had run out too. */
static struct nc__error	socket_oom_error;

/* Bytes written and not yet taken by the kernel. */
static size_t
socket_queued(const struct nc_socket *s)
{
	return s->out != NULL ? evbuffer_get_length(s->out) : 0;
}

/*
 * Sets the socket's one event to what it waits for now: to read while
 * open, readable, not paused and before the FIN; to write while bytes
 * wait or a connect is pending. Changing it takes an event_del() and an
 * event_assign(), which libevent allows inside the event's own callback.
 */
static int
socket_update_io(struct nc_socket *s)
{
	short	what = 0;

	if (s->fd != -1 && s->state == S_CONNECTING)
		what = EV_WRITE;
	else if (s->fd != -1 && s->state == S_OPEN) {
		if (s->readable && !s->paused && !s->eof)
			what |= EV_READ;
		if (socket_queued(s) > 0)
			what |= EV_WRITE;
	}
	if (what == s->ev_what)
		return 0;
	if (s->ev_what != 0)
		(void)event_del(&s->ev);
	s->ev_what = 0;
	if (what == 0)
		return 0;
	if (event_assign(&s->ev, s->base, s->fd, what | EV_PERSIST,
	    socket_io_cb, s) == -1 || event_add(&s->ev, NULL) == -1)
		return NC_ENOMEM;
	s->ev_what = (uint8_t)what;
	return 0;
}

/* Waits for fd to be writable (a connect; writes see to themselves). */
int
nc__socket_watch_write(struct nc_socket *s)
{
	return socket_update_io(s);
}

/* The queue, made when a write first does not fit; NULL without memory. */
static struct evbuffer *
socket_out(struct nc_socket *s)
{
	if (s->out == NULL)
		s->out = evbuffer_new();
	return s->out;
}

static struct nc_socket *
socket_alloc(struct event_base *base)
{
	struct nc_socket	*s;

	base = nc__base(base);
	if (base == NULL || (s = calloc(1, sizeof *s)) == NULL)
		return NULL;
	s->fd = -1;
	s->refs = 1;
	s->readable = true;
	s->writable = true;
	s->base = base;
	return s;
}

/*
 * Writes with a callback, oldest first, in a ring: s->writes is the
 * newest and its next the oldest, so one pointer does for both ends.
 */
static struct socket_write *
socket_writes_first(const struct nc_socket *s)
{
	return s->writes != NULL ? s->writes->next : NULL;
}

static void
socket_writes_push(struct nc_socket *s, struct socket_write *w)
{
	if (s->writes != NULL) {
		w->next = s->writes->next;
		s->writes->next = w;
	} else
		w->next = w;
	s->writes = w;
}

static struct socket_write *
socket_writes_pop(struct nc_socket *s)
{
	struct socket_write	*w;

	if ((w = socket_writes_first(s)) == NULL)
		return NULL;
	if (w == s->writes)
		s->writes = NULL;
	else
		s->writes->next = w->next;
	w->next = NULL;
	return w;
}

static void
socket_free(struct nc_socket *s)
{
	struct socket_write	*w;

	while ((w = socket_writes_pop(s)) != NULL)
		free(w);
	nc__listeners_free(&s->em);
	if (s->ev_what != 0)
		(void)event_del(&s->ev);
	socket_timer_free(s);
	if (s->out != NULL)
		evbuffer_free(s->out);
	if (s->err != NULL && s->err != &socket_oom_error)
		free(s->err);
	if (s->text != NULL) {
		if (s->text->decoded != NULL)
			evbuffer_free(s->text->decoded);
		free(s->text);
	}
	nc__socket_connect_free(s);
	free(s);
}

void
nc_socket_hold(struct nc_socket *s)
{
	s->refs++;
}

void
nc_socket_release(struct nc_socket *s)
{
	if (s == NULL)
		return;
	if (--s->refs == 0)
		socket_free(s);
}

static void
socket_emit(struct nc_socket *s, const struct nc_event_args *args)
{
	nc__listeners_emit(&s->em, s, args);
}

static void
socket_emit_simple(struct nc_socket *s, enum nc_event ev)
{
	struct nc_event_args	args;

	memset(&args, 0, sizeof args);
	args.event = ev;
	socket_emit(s, &args);
}

/* An IP address in 20 bytes; false for anything else (a unix peer). */
static bool
socket_addr_set(struct socket_addr *a, const struct sockaddr_storage *ss)
{
	const struct sockaddr_in	*sin;
	const struct sockaddr_in6	*sin6;

	switch (ss->ss_family) {
	case AF_INET:
		sin = (const struct sockaddr_in *)ss;
		a->family = 4;
		a->port = ntohs(sin->sin_port);
		memcpy(a->addr, &sin->sin_addr, sizeof sin->sin_addr);
		return true;
	case AF_INET6:
		sin6 = (const struct sockaddr_in6 *)ss;
		a->family = 6;
		a->port = ntohs(sin6->sin6_port);
		memcpy(a->addr, &sin6->sin6_addr, sizeof sin6->sin6_addr);
		return true;
	default:
		a->family = 0;
		return false;
	}
}

/* Keeps the addresses once the fd is connected; text comes when asked. */
static void
socket_fill_addresses(struct nc_socket *s)
{
	struct sockaddr_storage	ss;
	socklen_t		len;

	len = sizeof ss;
	if (getpeername(s->fd, (struct sockaddr *)&ss, &len) == 0 &&
	    socket_addr_set(&s->remote, &ss))
		s->tcp = true;
	len = sizeof ss;
	if (getsockname(s->fd, (struct sockaddr *)&ss, &len) == 0)
		(void)socket_addr_set(&s->local, &ss);
}

/* Starts or stops reading to match the socket's state. */
static void
socket_update_read(struct nc_socket *s)
{
	if (socket_update_io(s) != 0)
		socket_error(s, NC_ENOMEM, "read");
}

/* Makes s an open stream on fd (connected or accepted). */
static int
socket_open_fd(struct nc_socket *s, int fd)
{
	s->fd = fd;
	return 0;
}

static void
socket_became_open(struct nc_socket *s)
{
	socket_set_state(s, S_OPEN);
	socket_fill_addresses(s);
	socket_update_read(s);
	socket_activity(s);
}

struct nc_socket *
nc__socket_accepted(struct event_base *base, int fd, bool allow_half_open,
    bool paused)
{
	struct nc_socket	*s;

	if ((s = socket_alloc(base)) == NULL)
		return NULL;
	s->allow_half_open = allow_half_open;
	s->paused = paused;
	if (socket_open_fd(s, fd) != 0) {
		s->fd = -1;
		socket_free(s);
		return NULL;
	}
	socket_became_open(s);
	return s;
}

struct nc_socket *
nc_socket_new(const struct nc_socket_options *opts)
{
	struct nc_socket	*s;
	int			 flags;

	if ((s = socket_alloc(opts != NULL ? opts->base : NULL)) == NULL)
		return NULL;
	if (opts == NULL)
		return s;
	s->allow_half_open = opts->allow_half_open;
	if (!opts->has_fd)
		return s;

	/* As the spec says: with fd, reads and writes only where asked. */
	s->readable = opts->readable;
	s->writable = opts->writable;
	if (!s->readable)
		s->eof = true;
	if (!s->writable)
		s->ended = s->finished = true;
	if ((flags = fcntl(opts->fd, F_GETFL)) != -1)
		(void)fcntl(opts->fd, F_SETFL, flags | O_NONBLOCK);
	(void)fcntl(opts->fd, F_SETFD, FD_CLOEXEC);
	if (socket_open_fd(s, opts->fd) != 0) {
		s->fd = -1;
		socket_free(s);
		return NULL;
	}
	socket_became_open(s);
	return s;
}

/*
 * Closing: deferred so `error` and `close` never fire inside a call.
 * Writes that never went out fail first, as Node's errorBuffer, then
 * `error` if destroy() had one.
 */
static void
socket_closing(struct nc_socket *s)
{
	struct nc_event_args	 args;
	struct nc__error	 e;

	/*
	 * Queued writes fail with the error, else as in Node and libuv:
	 * ERR_SOCKET_CLOSED_BEFORE_CONNECTION if the socket never opened,
	 * ECANCELED if it did.
	 */
	socket_fail_writes(s, s->err != NULL ? s->err->pub.code :
	    s->closed_early ? NC_ERR_SOCKET_CLOSED_BEFORE_CONNECTION :
	    NC_ECANCELED);
	if (s->err == NULL)
		return;
	e = *s->err;
	e.pub.syscall = e.syscall[0] != '\0' ? e.syscall : NULL;
	e.pub.address = e.address[0] != '\0' ? e.address : NULL;
	e.pub.message = e.message;
	memset(&args, 0, sizeof args);
	args.event = NC_EV_ERROR;
	args.error = &e.pub;
	if (nc__listeners_count(&s->em, NC_EV_ERROR) == 0)
		log_err("unhandled socket error: %s", e.message);
	else
		socket_emit(s, &args);
}

/* `close`, and the library's reference goes. */
static void
socket_closed_cb(void *arg)
{
	struct nc_socket	*s = arg;
	struct nc_event_args	 args;

	memset(&args, 0, sizeof args);
	args.event = NC_EV_CLOSE;
	args.had_error = s->err != NULL;
	s->close_emitted = true;	/* connect() may start anew */
	socket_emit(s, &args);
	nc_socket_release(s);	/* the library's reference */
}

/*
 * connect() on a socket whose `close` was emitted, as Node's
 * socket.connect() after `close`: the same socket connects again with
 * its listeners, allowHalfOpen, timeout, encoding, noDelay and
 * keepAlive, and, as with the new handle Node makes, without its error,
 * its addresses or its counts (bytesRead and bytesWritten start from 0).
 * The library takes its reference again: the socket is freed after its
 * next `close`. Before `close`, NC_ERR_SOCKET_CLOSED.
 */
int
nc__socket_reopen(struct nc_socket *s)
{
	if (s->state != S_DESTROYED || !s->close_emitted)
		return NC_ERR_SOCKET_CLOSED;
	if (s->err != NULL && s->err != &socket_oom_error)
		free(s->err);
	s->err = NULL;
	if (s->out != NULL) {
		evbuffer_free(s->out);
		s->out = NULL;
	}
	s->bytes_flushed = s->bytes_read = 0;
	memset(&s->remote, 0, sizeof s->remote);
	memset(&s->local, 0, sizeof s->local);
	if (s->text != NULL) {
		s->text->has_remote = s->text->has_local = false;
		if (s->text->decoded != NULL)
			(void)evbuffer_drain(s->text->decoded,
			    evbuffer_get_length(s->text->decoded));
		nc__decoder_init(&s->text->decoder, s->text->decoder.enc);
	}
	s->readable = s->writable = true;
	s->eof = s->peer_ended = s->ended = s->finished = false;
	s->need_drain = false;
	s->closed_early = s->tcp = s->remote_named = false;
	s->close_emitted = false;
	log_debug("socket: destroyed -> idle (connects again)");
	s->state = S_IDLE;
	nc_socket_hold(s);	/* the library's reference, anew */
	/* Node's connect() restarts the idle timer. */
	socket_activity(s);
	return 0;
}

static void
socket_close_cb(void *arg)
{
	socket_closing(arg);
	socket_closed_cb(arg);
}

/* The first step of a connection's close (see socket_destroy()). */
static void
socket_closing_cb(void *arg)
{
	struct nc_socket	*s = arg;

	socket_closing(s);
	nc_socket_release(s);	/* this step's hold */
}

/* Completes every pending write: those whose bytes all went out
 * succeed, the others fail with code. */
static void
socket_fail_writes(struct nc_socket *s, int code)
{
	struct socket_write	*w;

	while ((w = socket_writes_pop(s)) != NULL) {
		if (w->cb != NULL)
			w->cb(s, w->end <= s->bytes_flushed ? 0 : code, w->arg);
		free(w);
	}
}

/*
 * socket.destroy([err]): no more I/O; the fd closes now, pending writes
 * fail, `error` (if err) and `close` follow on a later turn.
 */
static void
socket_destroy(struct nc_socket *s, int code, const char *syscall)
{
	struct nc_server	*server;

	bool	named;

	if (s->state == S_DESTROYED)
		return;
	if (code != 0 && s->err == NULL) {
		/*
		 * Lookup and connect errors name the host or the peer
		 * ("connect ECONNREFUSED 127.0.0.1:8080"); read and write
		 * errors ("read ECONNRESET") and Node's own codes do not.
		 */
		named = syscall != NULL && s->conn != NULL &&
		    s->conn->error_address != NULL &&
		    (s->state == S_LOOKUP || s->state == S_CONNECTING);
		/* Kept apart: most sockets never fail. */
		if ((s->err = calloc(1, sizeof *s->err)) == NULL) {
			if (socket_oom_error.pub.code == 0)
				nc__error_set(&socket_oom_error, NC_ENOMEM,
				    NULL, NULL, -1);
			s->err = &socket_oom_error;
		} else
			nc__error_set(s->err, code, syscall,
			    named ? s->conn->error_address : NULL,
			    named ? s->conn->error_port : -1);
	}
	s->closed_early = s->state == S_IDLE || s->state == S_LOOKUP ||
	    s->state == S_CONNECTING;
	socket_set_state(s, S_DESTROYED);
	if (s->ev_what != 0)
		(void)event_del(&s->ev);
	s->ev_what = 0;
	if (s->timer != NULL)
		(void)event_del(&s->timer->ev);
	if (s->fd != -1) {
		close(s->fd);
		s->fd = -1;
	}
	s->readable = s->writable = false;
	/*
	 * Node asks the handle for the local address, and the handle is
	 * gone: localAddress and localPort are undefined from here on;
	 * the peer's, asked once, stay.
	 */
	s->local.family = 0;

	server = s->server;
	s->server = NULL;
	if (server == NULL) {
		if (nc__defer(s->base, socket_close_cb, s) != 0) {
			log_err("socket: out of memory, closing at once");
			socket_close_cb(s);
		}
		return;
	}
	/*
	 * A server's connection closes in Node's order: `error` (a
	 * nextTick), then the server's `close` if this was its last
	 * connection after close() (_emitCloseIfDrained, a nextTick
	 * queued after it), and this socket's `close` last, when its
	 * handle has closed (libuv's close phase, a later turn).
	 */
	nc_socket_hold(s);
	if (nc__defer(s->base, socket_closing_cb, s) != 0) {
		log_err("socket: out of memory, failing writes at once");
		socket_closing_cb(s);
	}
	nc__server_connection_closed(server);
	if (nc__defer(s->base, socket_closed_cb, s) != 0) {
		log_err("socket: out of memory, closing at once");
		socket_closed_cb(s);
	}
}

static void
socket_error(struct nc_socket *s, int code, const char *syscall)
{
	socket_destroy(s, code, syscall);
}

void
nc_socket_destroy(struct nc_socket *s)
{
	socket_destroy(s, 0, NULL);
}

void
nc_socket_destroy_error(struct nc_socket *s, int code)
{
	socket_destroy(s, code, NULL);
}

int
nc_socket_detach(struct nc_socket *s)
{
	int	fd;

	if (s->state != S_OPEN)
		return NC_ERR_SOCKET_CLOSED;
	if ((fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 3)) == -1)
		return -errno;
	if (s->server != NULL)
		nc__server_handed_over(s->server);
	socket_destroy(s, 0, NULL);
	return fd;
}

/*
 * Both directions done (FIN received and our side finished): the socket
 * has nothing left to do, as Node's autoDestroy.
 */
static void
socket_maybe_destroy(struct nc_socket *s)
{
	if (s->state == S_OPEN && s->eof && s->finished)
		socket_destroy(s, 0, NULL);
}

static void
socket_finish(struct nc_socket *s)
{
	if (s->finished || s->state != S_OPEN)
		return;
	if (shutdown(s->fd, SHUT_WR) == -1 && errno != ENOTCONN &&
	    errno != ENOTSOCK) {
		socket_error(s, -errno, "shutdown");
		return;
	}
	s->finished = true;
	nc_socket_hold(s);
	socket_emit_simple(s, NC_EV_FINISH);
	if (s->state != S_DESTROYED)
		socket_maybe_destroy(s);
	nc_socket_release(s);
}

/* After bytes left: write callbacks, `drain`, and a pending end(). */
static void
socket_after_write_cb(void *arg)
{
	struct nc_socket	*s = arg;
	struct socket_write	*w;

	s->after_write_queued = false;
	while (s->state != S_DESTROYED && (w = socket_writes_first(s)) !=
	    NULL && w->end <= s->bytes_flushed) {
		(void)socket_writes_pop(s);
		if (w->cb != NULL)
			w->cb(s, 0, w->arg);
		free(w);
	}
	if (s->state == S_OPEN && socket_queued(s) == 0) {
		if (s->need_drain) {
			s->need_drain = false;
			socket_emit_simple(s, NC_EV_DRAIN);
		}
		if (s->state == S_OPEN && s->ended)
			socket_finish(s);
	}
	nc_socket_release(s);
}

static void
socket_schedule_after_write(struct nc_socket *s)
{
	if (s->after_write_queued)
		return;
	if (nc__defer(s->base, socket_after_write_cb, s) != 0) {
		socket_error(s, NC_ENOMEM, "write");
		return;
	}
	s->after_write_queued = true;
	nc_socket_hold(s);
}

/* Writes as much of the queue as the kernel takes, without blocking. */
static void
socket_flush(struct nc_socket *s)
{
	struct evbuffer_iovec	vec[SOCKET_IOV_MAX];
	struct iovec		iov[SOCKET_IOV_MAX];
	struct msghdr		msg;
	ssize_t			n;
	int			i, nvec;

	if (s->state != S_OPEN)
		return;
	while (socket_queued(s) > 0) {
		nvec = evbuffer_peek(s->out, -1, NULL, vec, SOCKET_IOV_MAX);
		if (nvec > SOCKET_IOV_MAX)
			nvec = SOCKET_IOV_MAX;
		for (i = 0; i < nvec; i++) {
			iov[i].iov_base = vec[i].iov_base;
			iov[i].iov_len = vec[i].iov_len;
		}
		memset(&msg, 0, sizeof msg);
		msg.msg_iov = iov;
		msg.msg_iovlen = (size_t)nvec;
		n = sendmsg(s->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == -1 && errno == ENOTSOCK)
			n = writev(s->fd, iov, nvec);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			socket_error(s, -errno, "write");
			return;
		}
		(void)evbuffer_drain(s->out, (size_t)n);
		s->bytes_flushed += (uint64_t)n;
		socket_activity(s);
	}
	if (socket_update_io(s) != 0) {
		socket_error(s, NC_ENOMEM, "write");
		return;
	}
	if (s->writes != NULL || s->need_drain || s->ended)
		socket_schedule_after_write(s);
}

static void
socket_emit_data(struct nc_socket *s, const unsigned char *buf, size_t len)
{
	struct nc_event_args	 args;

	memset(&args, 0, sizeof args);
	args.event = NC_EV_DATA;
	if (!s->has_encoding) {
		args.data = (const char *)buf;
		args.len = len;
		socket_emit(s, &args);
		return;
	}
	if (nc__decoder_write(&s->text->decoder, buf, len,
	    s->text->decoded) != 0) {
		socket_error(s, NC_ENOMEM, "read");
		return;
	}
	socket_emit_decoded(s);
}

/* Emits the text decoded so far (if any) as one NUL-terminated `data`. */
static void
socket_emit_decoded(struct nc_socket *s)
{
	struct nc_event_args	 args;
	size_t			 n;
	char			*text;

	if (evbuffer_get_length(s->text->decoded) == 0)
		return;		/* a character still incomplete */
	if (evbuffer_add(s->text->decoded, "", 1) != 0) {
		socket_error(s, NC_ENOMEM, "read");
		return;
	}
	n = evbuffer_get_length(s->text->decoded);
	if ((text = (char *)evbuffer_pullup(s->text->decoded, -1)) == NULL) {
		socket_error(s, NC_ENOMEM, "read");
		return;
	}
	memset(&args, 0, sizeof args);
	args.event = NC_EV_DATA;
	args.data = text;
	args.len = n - 1;
	socket_emit(s, &args);
	(void)evbuffer_drain(s->text->decoded, n);
}

/* FIN from the peer: `end`, then Node's allowHalfOpen rules. */
static void
socket_eof(struct nc_socket *s)
{
	s->eof = true;
	socket_update_read(s);
	if (s->has_encoding) {
		/* What the decoder still holds, before `end`. */
		if (nc__decoder_end(&s->text->decoder, s->text->decoded) != 0) {
			socket_error(s, NC_ENOMEM, "read");
			return;
		}
		socket_emit_decoded(s);
		if (s->state == S_DESTROYED)
			return;
	}
	/*
	 * Node's writeAfterFIN replaces write() before the `end` listeners
	 * run: from now on a write after end() fails with EPIPE. A write
	 * inside `end` without end() still goes out before our FIN.
	 */
	if (!s->allow_half_open)
		s->peer_ended = true;
	socket_emit_simple(s, NC_EV_END);
	if (s->state == S_DESTROYED)
		return;
	if (!s->allow_half_open) {
		if (!s->ended) {
			s->ended = true;
			s->writable = false;
			socket_flush(s);
			if (s->state == S_OPEN &&
			    socket_queued(s) == 0)
				socket_schedule_after_write(s);
		}
	}
	socket_maybe_destroy(s);
}

static void
socket_read(struct nc_socket *s)
{
	unsigned char	buf[SOCKET_READ_SIZE];
	ssize_t		n;

	n = read(s->fd, buf, sizeof buf);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		socket_error(s, -errno, "read");
		return;
	}
	if (n == 0)
		socket_eof(s);
	else {
		s->bytes_read += (uint64_t)n;
		socket_activity(s);
		socket_emit_data(s, buf, (size_t)n);
	}
}

/* The fd is writable (a connect done, or room for the queue), readable,
 * or both. */
static void
socket_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct nc_socket	*s = arg;

	(void)fd;
	nc_socket_hold(s);
	if (what & EV_WRITE) {
		if (s->state == S_CONNECTING)
			nc__socket_connect_ready(s);
		else
			socket_flush(s);
	}
	/* Still to be read: the write side may have paused or closed it. */
	if ((what & EV_READ) && (s->ev_what & EV_READ))
		socket_read(s);
	nc_socket_release(s);
}

static void
socket_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct nc_socket	*s = arg;
	int64_t			 idle;

	(void)fd;
	(void)what;
	if (s->timer->timeout_ms == 0 || s->state == S_DESTROYED)
		return;
	idle = socket_elapsed_ms(&s->timer->last_activity);
	if (idle < s->timer->timeout_ms) {
		socket_arm_timer(s, s->timer->timeout_ms - idle);
		return;
	}
	/* Not re-armed: the next timeout counts from the next activity. */
	nc_socket_hold(s);
	socket_emit_simple(s, NC_EV_TIMEOUT);
	nc_socket_release(s);
}

static void
socket_write_error_cb(void *arg)
{
	struct socket_write	*w = arg;

	w->cb(w->socket, w->status, w->arg);
	nc_socket_release(w->socket);
	free(w);
}

/* A write that cannot happen: its callback on a later turn. */
static void
socket_write_refused(struct nc_socket *s, int code, nc_write_cb cb, void *arg)
{
	struct socket_write	*w;

	if (cb == NULL)
		return;
	if ((w = calloc(1, sizeof *w)) == NULL)
		return;
	w->socket = s;
	w->status = code;
	w->cb = cb;
	w->arg = arg;
	nc_socket_hold(s);
	if (nc__defer(s->base, socket_write_error_cb, w) != 0) {
		nc_socket_release(s);
		free(w);
	}
}

/*
 * A write whose bytes are in s->out, all but direct bytes that went out
 * at once. Returns Node's write() result: 1 below the high-water mark, 0
 * at or above it.
 */
static int
socket_write_queued(struct nc_socket *s, size_t direct, nc_write_cb cb,
    void *arg)
{
	struct socket_write	*w;
	size_t			 pending;

	/* Node counts the whole write, even what went out at once. */
	pending = socket_queued(s) + direct;
	if (cb != NULL) {
		if ((w = calloc(1, sizeof *w)) == NULL)
			return NC_ENOMEM;
		/* Done once everything written so far has left. */
		w->end = s->bytes_flushed + socket_queued(s);
		w->cb = cb;
		w->arg = arg;
		socket_writes_push(s, w);
	}
	if (pending >= SOCKET_HIGH_WATER_MARK)
		s->need_drain = true;
	if (s->state == S_OPEN)
		socket_flush(s);
	return pending < SOCKET_HIGH_WATER_MARK ? 1 : 0;
}

/* Checks a write may go; if not, fails it as Node does. */
static int
socket_write_check(struct nc_socket *s, nc_write_cb cb, void *arg)
{
	if (s->peer_ended && s->ended) {
		/*
		 * "This socket has been ended by the other party": Node's
		 * writeAfterFIN, which replaces write() at the peer's FIN
		 * (allowHalfOpen false), so it answers before the stream's
		 * own checks, destroyed or not; `error` only while open.
		 */
		socket_write_refused(s, NC_EPIPE, cb, arg);
		socket_error(s, NC_EPIPE, "write");
		return 0;
	}
	if (s->state == S_DESTROYED) {
		/* Node's Writable checks `ending` before `destroyed`. */
		socket_write_refused(s, s->ended ?
		    NC_ERR_STREAM_WRITE_AFTER_END : NC_ERR_STREAM_DESTROYED,
		    cb, arg);
		return 0;
	}
	/* Writable's `ending` first, then _writeGeneric's handle. */
	if (s->ended) {
		socket_write_refused(s, NC_ERR_STREAM_WRITE_AFTER_END, cb, arg);
		socket_error(s, NC_ERR_STREAM_WRITE_AFTER_END, NULL);
		return 0;
	}
	if (s->state == S_IDLE) {
		/* Neither connected nor connecting: Node's _writeGeneric
		 * without a handle. */
		socket_write_refused(s, NC_ERR_SOCKET_CLOSED, cb, arg);
		socket_error(s, NC_ERR_SOCKET_CLOSED, NULL);
		return 0;
	}
	return 1;
}

int
nc_socket_write(struct nc_socket *s, const void *data, size_t len,
    nc_write_cb cb, void *arg)
{
	ssize_t	n = 0;

	if (data == NULL && len > 0)
		return NC_ERR_INVALID_ARG_VALUE;
	if (!socket_write_check(s, cb, arg))
		return 0;
	/*
	 * Nothing queued: straight to the kernel, and only what it does not
	 * take is copied (the common case copies nothing). Errors are left
	 * to the queued path, which reports them.
	 */
	if (len > 0 && s->state == S_OPEN && socket_queued(s) == 0 &&
	    (n = send(s->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT)) > 0) {
		s->bytes_flushed += (uint64_t)n;
		socket_activity(s);
		data = (const char *)data + n;
		len -= (size_t)n;
	} else
		n = 0;
	if (len > 0 && (socket_out(s) == NULL ||
	    evbuffer_add(s->out, data, len) != 0))
		return NC_ENOMEM;
	return socket_write_queued(s, (size_t)n, cb, arg);
}

int
nc_socket_write_buffer(struct nc_socket *s, struct evbuffer *buf,
    nc_write_cb cb, void *arg)
{
	size_t	len;

	if (buf == NULL)
		return NC_ERR_INVALID_ARG_VALUE;
	if (!socket_write_check(s, cb, arg))
		return 0;
	len = evbuffer_get_length(buf);
	if (len > 0 && (socket_out(s) == NULL ||
	    evbuffer_add_buffer(s->out, buf) != 0))
		return NC_ENOMEM;
	return socket_write_queued(s, 0, cb, arg);
}

int
nc_socket_write_string(struct nc_socket *s, const char *str,
    const char *encoding, nc_write_cb cb, void *arg)
{
	enum nc__encoding	 enc = NC__ENC_UTF8;
	struct evbuffer		*tmp;
	int			 rc;

	if (str == NULL)
		return NC_ERR_INVALID_ARG_VALUE;
	if (encoding != NULL && (rc = nc__encoding_parse(encoding, &enc)) != 0)
		return rc;
	if (enc == NC__ENC_UTF8)
		return nc_socket_write(s, str, strlen(str), cb, arg);
	if ((tmp = evbuffer_new()) == NULL)
		return NC_ENOMEM;
	if ((rc = nc__encode_string(enc, str, strlen(str), tmp)) == 0)
		rc = nc_socket_write_buffer(s, tmp, cb, arg);
	evbuffer_free(tmp);
	return rc;
}

static int
socket_end(struct nc_socket *s)
{
	if (s->state == S_DESTROYED || s->ended)
		return 0;
	s->ended = true;
	s->writable = false;
	if (s->state == S_OPEN) {
		socket_flush(s);
		if (s->state == S_OPEN)
			socket_schedule_after_write(s);
	}
	return 0;
}

int
nc_socket_end(struct nc_socket *s, const void *data, size_t len)
{
	int	rc;

	if (data != NULL && len > 0 &&
	    (rc = nc_socket_write(s, data, len, NULL, NULL)) < 0)
		return rc;
	return socket_end(s);
}

int
nc_socket_end_string(struct nc_socket *s, const char *str,
    const char *encoding)
{
	int	rc;

	if (str != NULL &&
	    (rc = nc_socket_write_string(s, str, encoding, NULL, NULL)) < 0)
		return rc;
	return socket_end(s);
}

void
nc_socket_pause(struct nc_socket *s)
{
	s->paused = true;
	socket_update_read(s);
}

void
nc_socket_resume(struct nc_socket *s)
{
	s->paused = false;
	socket_update_read(s);
}

bool
nc_socket_is_paused(const struct nc_socket *s)
{
	return s->paused;
}

int
nc_socket_set_timeout(struct nc_socket *s, int64_t ms, nc_listener_cb cb,
    void *arg)
{
	int	rc;

	if (ms < 0)
		return NC_ERR_OUT_OF_RANGE;
	if (s->state == S_DESTROYED)
		return 0;
	if (ms == 0) {
		/*
		 * The timer goes (a proxy's upstream has one only while it
		 * connects), unless unref() needs it. This may run inside
		 * the timer's own callback, which touches it no more after
		 * its listeners.
		 */
		if (s->timer != NULL && !s->timer->h.unref)
			socket_timer_free(s);
		else if (s->timer != NULL) {
			s->timer->timeout_ms = 0;
			(void)event_del(&s->timer->ev);
		}
		if (cb != NULL)
			(void)nc__listeners_remove(&s->em, NC_EV_TIMEOUT, cb,
			    arg);
		return 0;
	}
	if ((rc = socket_timer(s)) != 0)
		return rc;
	if (cb != NULL) {
		if ((rc = nc__listeners_add(&s->em, NC_EV_TIMEOUT, cb, arg,
		    true)) != 0)
			return rc;
	}
	s->timer->timeout_ms = ms;
	socket_now(&s->timer->last_activity);
	socket_arm_timer(s, ms);
	return 0;
}

int
nc_socket_set_no_delay(struct nc_socket *s, bool no_delay)
{
	int	on = no_delay ? 1 : 0;

	s->no_delay = no_delay;
	s->has_no_delay = true;
	if (s->fd == -1 || !s->tcp)
		return 0;
	if (setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == -1)
		return -errno;
	return 0;
}

int
nc_socket_set_keep_alive(struct nc_socket *s, bool enable,
    unsigned int initial_delay_ms)
{
	int	on = enable ? 1 : 0, secs;

	/* Linux takes at most 32767 s (MAX_TCP_KEEPIDLE). */
	secs = initial_delay_ms > 32767000 ? 32767 :
	    (int)((initial_delay_ms + 999) / 1000);
	/* Kept for a connection to come, and for each after it (Node). */
	s->keep_alive_secs = (uint16_t)secs;
	s->keep_alive = enable;
	s->has_keep_alive = true;
	if (s->fd == -1 || !s->tcp)
		return 0;
	if (setsockopt(s->fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) == -1)
		return -errno;
	if (enable && secs > 0 && setsockopt(s->fd, IPPROTO_TCP, TCP_KEEPIDLE,
	    &secs, sizeof secs) == -1)
		return -errno;
	return 0;
}

/* Options set before the connection existed apply once it does. */
void
nc__socket_apply_options(struct nc_socket *s)
{
	if (s->has_no_delay)
		(void)nc_socket_set_no_delay(s, s->no_delay);
	if (s->has_keep_alive)
		(void)nc_socket_set_keep_alive(s, s->keep_alive,
		    (unsigned int)s->keep_alive_secs * 1000);
}

int
nc_socket_set_encoding(struct nc_socket *s, const char *encoding)
{
	enum nc__encoding	enc;
	int			rc;

	if (encoding == NULL) {
		s->has_encoding = false;
		return 0;
	}
	if ((rc = nc__encoding_parse(encoding, &enc)) != 0)
		return rc;
	if (socket_text(s) == NULL)
		return NC_ENOMEM;
	if (s->text->decoded == NULL &&
	    (s->text->decoded = evbuffer_new()) == NULL)
		return NC_ENOMEM;
	nc__decoder_init(&s->text->decoder, enc);
	s->has_encoding = true;
	return 0;
}

int
nc_socket_address(struct nc_socket *s, struct nc_address *a)
{
	struct sockaddr_storage	ss;
	socklen_t		len = sizeof ss;

	if (s->fd == -1)
		return NC_ERR_SOCKET_CLOSED;
	if (getsockname(s->fd, (struct sockaddr *)&ss, &len) == -1)
		return -errno;
	return nc__sockaddr_to_address((struct sockaddr *)&ss, len, a);
}

void
nc_socket_ref(struct nc_socket *s)
{
	if (s->timer != NULL)
		s->timer->h.unref = false;
}

void
nc_socket_unref(struct nc_socket *s)
{
	if (socket_timer(s) != 0) {
		log_err("socket fd %d: out of memory; it still keeps the loop "
		    "alive", s->fd);
		return;
	}
	s->timer->h.unref = true;
}

/*
 * The socket's text (addresses, decoder), made on first use: the address
 * getters take a const socket, and this is the one thing they change.
 */
static struct socket_text *
socket_text(const struct nc_socket *cs)
{
	struct nc_socket	*s = (struct nc_socket *)cs;

	if (s->text == NULL && (s->text = calloc(1, sizeof *s->text)) == NULL)
		log_err("socket fd %d: out of memory for its text", s->fd);
	return s->text;
}

static void
socket_addr_text(const struct socket_addr *a, char *buf, size_t len)
{
	if (inet_ntop(a->family == 6 ? AF_INET6 : AF_INET, a->addr, buf,
	    (socklen_t)len) == NULL)
		buf[0] = '\0';
}

const char *
nc_socket_remote_address(const struct nc_socket *s)
{
	struct socket_text	*n;

	if (s->remote_named)
		return s->text->remote;
	if (s->remote.family == 0 || (n = socket_text(s)) == NULL)
		return NULL;
	if (!n->has_remote) {
		socket_addr_text(&s->remote, n->remote, sizeof n->remote);
		n->has_remote = true;
	}
	return n->remote;
}

const char *
nc_socket_remote_family(const struct nc_socket *s)
{
	if (s->remote_named)
		return "";
	if (s->remote.family == 0)
		return NULL;
	return s->remote.family == 6 ? "IPv6" : "IPv4";
}

int
nc_socket_remote_port(const struct nc_socket *s)
{
	if (s->remote_named || s->remote.family == 0)
		return -1;
	return s->remote.port;
}

const char *
nc_socket_local_address(const struct nc_socket *s)
{
	struct socket_text	*n;

	if (s->local.family == 0 || (n = socket_text(s)) == NULL)
		return NULL;
	if (!n->has_local) {
		socket_addr_text(&s->local, n->local, sizeof n->local);
		n->has_local = true;
	}
	return n->local;
}

int
nc_socket_local_port(const struct nc_socket *s)
{
	return s->local.family != 0 ? s->local.port : -1;
}

size_t
nc_socket_buffer_size(const struct nc_socket *s)
{
	return socket_queued(s);
}

uint64_t
nc_socket_bytes_read(const struct nc_socket *s)
{
	return s->bytes_read;
}

uint64_t
nc_socket_bytes_written(const struct nc_socket *s)
{
	return s->bytes_flushed + socket_queued(s);
}

bool
nc_socket_connecting(const struct nc_socket *s)
{
	return s->state == S_LOOKUP || s->state == S_CONNECTING;
}

bool
nc_socket_destroyed(const struct nc_socket *s)
{
	return s->state == S_DESTROYED;
}

int
nc_socket_fd(const struct nc_socket *s)
{
	return s->fd;
}

struct event_base *
nc_socket_base(const struct nc_socket *s)
{
	return s->base;
}

int
nc_socket_on(struct nc_socket *s, enum nc_event ev, nc_listener_cb cb,
    void *arg)
{
	return nc__listeners_add(&s->em, ev, cb, arg, false);
}

int
nc_socket_once(struct nc_socket *s, enum nc_event ev, nc_listener_cb cb,
    void *arg)
{
	return nc__listeners_add(&s->em, ev, cb, arg, true);
}

int
nc_socket_off(struct nc_socket *s, enum nc_event ev, nc_listener_cb cb,
    void *arg)
{
	return nc__listeners_remove(&s->em, ev, cb, arg);
}

size_t
nc_socket_listener_count(const struct nc_socket *s, enum nc_event ev)
{
	if ((unsigned int)ev >= NC_EV__COUNT)
		return 0;
	return nc__listeners_count(&s->em, ev);
}

/* The client a PROXY header named takes the place of the real peer. */
void
nc__socket_set_remote(struct nc_socket *s, const struct nc__proxy_info *pi)
{
	struct socket_text	*n;

	if (s->text != NULL)
		s->text->has_remote = false;
	s->remote_named = false;
	if (!pi->unix_source) {
		s->remote.family = pi->family == 6 ? 6 : 4;
		s->remote.port = (uint16_t)pi->src_port;
		if (inet_pton(pi->family == 6 ? AF_INET6 : AF_INET, pi->src,
		    s->remote.addr) == 1)
			return;
	}
	/* A unix path (or text that is no address) is kept as it came. */
	s->remote.family = 0;
	if ((n = socket_text(s)) == NULL)
		return;
	snprintf(n->remote, sizeof n->remote, "%s", pi->src);
	s->remote_named = true;
}

/* Hooks for connect.c. */
void
nc__socket_set_state(struct nc_socket *s, enum socket_state state)
{
	socket_set_state(s, state);
}

int
nc__socket_open_fd(struct nc_socket *s, int fd)
{
	return socket_open_fd(s, fd);
}

void
nc__socket_became_open(struct nc_socket *s)
{
	socket_became_open(s);
	socket_flush(s);
	if (s->state == S_OPEN && s->ended)
		socket_schedule_after_write(s);
}

void
nc__socket_fail(struct nc_socket *s, int code, const char *syscall)
{
	socket_destroy(s, code, syscall);
}

void
nc__socket_emit(struct nc_socket *s, const struct nc_event_args *args)
{
	socket_emit(s, args);
}
