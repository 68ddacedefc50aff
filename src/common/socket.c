/*
 * net.Socket: a TCP or unix stream on raw libevent events. This file is
 * its life and its reading: the one I/O event, opening, destroying and
 * closing, and reads, which go straight from the kernel to `data`
 * listeners. Writing is socket-write.c, the idle timer and the loop's
 * accounting socket-timer.c, options and properties socket-options.c,
 * resolving and connecting connect.c; struct nc_socket is socket-int.h.
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

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "nc-int.h"
#include "socket-int.h"

#define SOCKET_READ_SIZE	65536

static void	socket_io_cb(evutil_socket_t, short, void *);
static void	socket_emit_decoded(struct nc_socket *);

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

/* The error of a socket that failed when memory had run out too. */
static struct nc__error	socket_oom_error;

/* The socket's error, gone (socket_oom_error is shared: never freed). */
static void
socket_error_free(struct nc_socket *s)
{
	if (s->err != NULL && s->err != &socket_oom_error)
		free(s->err);
	s->err = NULL;
}

/*
 * Sets the socket's one event to what it waits for now: to read while
 * open, readable, not paused and before the FIN; to write while bytes
 * wait or a connect is pending. Changing it takes an event_del() and an
 * event_assign(), which libevent allows inside the event's own callback.
 */
int
nc__socket_update_io(struct nc_socket *s)
{
	short	what = 0;

	if (s->fd != -1 && s->state == S_CONNECTING)
		what = EV_WRITE;
	else if (s->fd != -1 && s->state == S_OPEN) {
		if (s->readable && !s->paused && !s->eof)
			what |= EV_READ;
		if (nc__socket_queued(s) > 0)
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

static void
socket_free(struct nc_socket *s)
{
	nc__socket_writes_free(s);
	nc__listeners_free(&s->em);
	if (s->ev_what != 0)
		(void)event_del(&s->ev);
	nc__socket_timer_free(s);
	if (s->out != NULL)
		evbuffer_free(s->out);
	socket_error_free(s);
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

void
nc__socket_emit_simple(struct nc_socket *s, enum nc_event ev)
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
void
nc__socket_update_read(struct nc_socket *s)
{
	if (nc__socket_update_io(s) != 0)
		nc__socket_fail(s, NC_ENOMEM, "read");
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
	nc__socket_update_read(s);
	nc__socket_activity(s);
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
	nc__socket_fail_writes(s, s->err != NULL ? s->err->pub.code :
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
	socket_error_free(s);
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
	nc__socket_activity(s);
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
void
nc__socket_maybe_destroy(struct nc_socket *s)
{
	if (s->state == S_OPEN && s->eof && s->finished)
		socket_destroy(s, 0, NULL);
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
		nc__socket_fail(s, NC_ENOMEM, "read");
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
		nc__socket_fail(s, NC_ENOMEM, "read");
		return;
	}
	n = evbuffer_get_length(s->text->decoded);
	if ((text = (char *)evbuffer_pullup(s->text->decoded, -1)) == NULL) {
		nc__socket_fail(s, NC_ENOMEM, "read");
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
	nc__socket_update_read(s);
	if (s->has_encoding) {
		/* What the decoder still holds, before `end`. */
		if (nc__decoder_end(&s->text->decoder, s->text->decoded) != 0) {
			nc__socket_fail(s, NC_ENOMEM, "read");
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
	nc__socket_emit_simple(s, NC_EV_END);
	if (s->state == S_DESTROYED)
		return;
	if (!s->allow_half_open) {
		if (!s->ended) {
			s->ended = true;
			s->writable = false;
			nc__socket_flush(s);
			if (s->state == S_OPEN &&
			    nc__socket_queued(s) == 0)
				nc__socket_schedule_after_write(s);
		}
	}
	nc__socket_maybe_destroy(s);
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
		nc__socket_fail(s, -errno, "read");
		return;
	}
	if (n == 0)
		socket_eof(s);
	else {
		s->bytes_read += (uint64_t)n;
		nc__socket_activity(s);
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
			nc__socket_flush(s);
	}
	/* Still to be read: the write side may have paused or closed it. */
	if ((what & EV_READ) && (s->ev_what & EV_READ))
		socket_read(s);
	nc_socket_release(s);
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
	nc__socket_flush(s);
	if (s->state == S_OPEN && s->ended)
		nc__socket_schedule_after_write(s);
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
