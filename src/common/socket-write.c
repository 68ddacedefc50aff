/*
 * Writing to a socket: write() and end(), as Node's Writable. Bytes go
 * straight to the kernel when nothing waits; what it does not take queues
 * in an evbuffer and leaves with sendmsg(MSG_NOSIGNAL), so no SIGPIPE is
 * raised. Write callbacks, `drain` and a pending end() come after the
 * bytes have left, on a later turn.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "nc-int.h"
#include "socket-int.h"

#define SOCKET_HIGH_WATER_MARK	16384
#define SOCKET_IOV_MAX		64

/* Bytes written and not yet taken by the kernel. */
size_t
nc__socket_queued(const struct nc_socket *s)
{
	return s->out != NULL ? evbuffer_get_length(s->out) : 0;
}

/* The queue, made when a write first does not fit; NULL without memory. */
static struct evbuffer *
socket_out(struct nc_socket *s)
{
	if (s->out == NULL)
		s->out = evbuffer_new();
	return s->out;
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

/* Frees the writes with a callback without calling them (socket_free). */
void
nc__socket_writes_free(struct nc_socket *s)
{
	struct socket_write	*w;

	while ((w = socket_writes_pop(s)) != NULL)
		free(w);
}

/* Completes every pending write: those whose bytes all went out
 * succeed, the others fail with code. */
void
nc__socket_fail_writes(struct nc_socket *s, int code)
{
	struct socket_write	*w;

	while ((w = socket_writes_pop(s)) != NULL) {
		if (w->cb != NULL)
			w->cb(s, w->end <= s->bytes_flushed ? 0 : code, w->arg);
		free(w);
	}
}

static void
socket_finish(struct nc_socket *s)
{
	if (s->finished || s->state != S_OPEN)
		return;
	if (shutdown(s->fd, SHUT_WR) == -1 && errno != ENOTCONN &&
	    errno != ENOTSOCK) {
		nc__socket_fail(s, -errno, "shutdown");
		return;
	}
	s->finished = true;
	nc_socket_hold(s);
	nc__socket_emit_simple(s, NC_EV_FINISH);
	if (s->state != S_DESTROYED)
		nc__socket_maybe_destroy(s);
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
	if (s->state == S_OPEN && nc__socket_queued(s) == 0) {
		if (s->need_drain) {
			s->need_drain = false;
			nc__socket_emit_simple(s, NC_EV_DRAIN);
		}
		if (s->state == S_OPEN && s->ended)
			socket_finish(s);
	}
	nc_socket_release(s);
}

void
nc__socket_schedule_after_write(struct nc_socket *s)
{
	if (s->after_write_queued)
		return;
	if (nc__defer(s->base, socket_after_write_cb, s) != 0) {
		nc__socket_fail(s, NC_ENOMEM, "write");
		return;
	}
	s->after_write_queued = true;
	nc_socket_hold(s);
}

/* Writes as much of the queue as the kernel takes, without blocking. */
void
nc__socket_flush(struct nc_socket *s)
{
	struct evbuffer_iovec	vec[SOCKET_IOV_MAX];
	struct iovec		iov[SOCKET_IOV_MAX];
	struct msghdr		msg;
	ssize_t			n;
	int			i, nvec;

	if (s->state != S_OPEN)
		return;
	while (nc__socket_queued(s) > 0) {
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
			nc__socket_fail(s, -errno, "write");
			return;
		}
		(void)evbuffer_drain(s->out, (size_t)n);
		s->bytes_flushed += (uint64_t)n;
		nc__socket_activity(s);
	}
	if (nc__socket_update_io(s) != 0) {
		nc__socket_fail(s, NC_ENOMEM, "write");
		return;
	}
	if (s->writes != NULL || s->need_drain || s->ended)
		nc__socket_schedule_after_write(s);
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
	pending = nc__socket_queued(s) + direct;
	if (cb != NULL) {
		if ((w = calloc(1, sizeof *w)) == NULL)
			return NC_ENOMEM;
		/* Done once everything written so far has left. */
		w->end = s->bytes_flushed + nc__socket_queued(s);
		w->cb = cb;
		w->arg = arg;
		socket_writes_push(s, w);
	}
	if (pending >= SOCKET_HIGH_WATER_MARK)
		s->need_drain = true;
	if (s->state == S_OPEN)
		nc__socket_flush(s);
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
		nc__socket_fail(s, NC_EPIPE, "write");
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
		nc__socket_fail(s, NC_ERR_STREAM_WRITE_AFTER_END, NULL);
		return 0;
	}
	if (s->state == S_IDLE) {
		/* Neither connected nor connecting: Node's _writeGeneric
		 * without a handle. */
		socket_write_refused(s, NC_ERR_SOCKET_CLOSED, cb, arg);
		nc__socket_fail(s, NC_ERR_SOCKET_CLOSED, NULL);
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
	if (len > 0 && s->state == S_OPEN && nc__socket_queued(s) == 0 &&
	    (n = send(s->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT)) > 0) {
		s->bytes_flushed += (uint64_t)n;
		nc__socket_activity(s);
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
		nc__socket_flush(s);
		if (s->state == S_OPEN)
			nc__socket_schedule_after_write(s);
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

size_t
nc_socket_buffer_size(const struct nc_socket *s)
{
	return nc__socket_queued(s);
}

uint64_t
nc_socket_bytes_written(const struct nc_socket *s)
{
	return s->bytes_flushed + nc__socket_queued(s);
}
