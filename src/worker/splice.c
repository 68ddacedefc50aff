/*
 * One direction of a proxied connection moved with splice(2): bytes go
 * from one socket into a pipe and from the pipe to the other socket
 * without entering user space. The proxy starts a direction this way
 * only once it looks like a stream, as HAProxy's `option splice-auto`
 * decides: three reads in a row of SPLICE_LARGE bytes or more. Three
 * small moves in a row (a conversation again) hand the direction back
 * to the user-space copy and its pipe back to the pool.
 *
 * While a direction is spliced its reading socket is paused and this
 * file drives the two fds with its own events; the sockets themselves
 * stay the library's (it still closes them, and the other direction may
 * still go through it). Before a start the writing socket's queue must
 * be empty, so what went out in user space (a PROXY header, earlier
 * bytes) leaves before any spliced byte. A FIN read by splice is not
 * taken here: once the pipe is empty the reading socket resumes and
 * reads the FIN itself, so `end` and half-close are the library's as in
 * user space. Errors are given to the socket they belong to
 * (nc_socket_destroy_error()), as a failed read or write would be.
 *
 * Memory: a pipe holds at most its size (the kernel's default, 64 KiB)
 * and is read from the socket only when empty, so a stalled reader
 * stalls its writer as the user-space queue does. A direction has at
 * most one pipe, a connection two; a pipe whose direction stops goes to
 * a pool of at most SPLICE_POOL empty pipes per worker, or is closed.
 * When no pipe can be made (EMFILE, ENFILE, ENOMEM) or the sockets do
 * not splice, the direction stays in user space: never a failure.
 * F_SETPIPE_SZ is not used: bigger pipes reach the per-user budget
 * (fs.pipe-user-pages-soft, 1024 default pipes) sooner, and 64 KiB is
 * already what one user-space read takes.
 *
 * splice needs the bytes untouched between two plain sockets (TCP or
 * unix). The proxy has no transform between them (no TLS); a PROXY
 * header it sends is its own, written before the first splice, and one
 * it accepts was taken off the socket by the library before the proxy
 * saw the connection.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "worker.h"

#define SPLICE_LARGE	16384	/* a read this big counts toward a stream */
#define SPLICE_SMALL	8192	/* a splice this small, away from one */
#define SPLICE_STREAK	3	/* large (or small) ones in a row to switch */
#define SPLICE_ROUNDS	8	/* pipefuls moved per event at most */
#define SPLICE_POOL	16	/* empty pipes kept per worker */

/*
 * A direction's state, made at its first large read: a connection that
 * never reads SPLICE_LARGE at once pays only two pointers for all this.
 */
struct splice {
	struct nc_socket	*from;		/* read */
	struct nc_socket	*to;		/* written */
	struct event		*rev;		/* from's fd, while on */
	struct event		*wev;		/* to's fd, while on */
	int			 pipe[2];	/* -1 without one */
	size_t			 size;		/* the pipe's */
	size_t			 held;		/* bytes in the pipe */
	int64_t			 idle_ms;	/* both legs' idle timeout */
	unsigned long long	*bytes;		/* what `to` took */
	int			 large;		/* large reads in a row */
	int			 small;		/* small splices in a row */
	bool			 on;		/* bytes go by splice */
	bool			 want;		/* a stream: on once `to`
						 * is drained */
	bool			 never;		/* user space for good */
	bool			 eof;		/* splice read the FIN */
};

struct pooled_pipe {
	int	fd[2];
	size_t	size;
};

static struct pooled_pipe	pool[SPLICE_POOL];
static int			npool;

static void	splice_read_cb(evutil_socket_t, short, void *);
static void	splice_write_cb(evutil_socket_t, short, void *);

/* An empty pipe, from the pool or new; -1 when none can be made. */
static int
splice_pipe_get(struct splice *sp)
{
	int	size;

	if (npool > 0) {
		npool--;
		sp->pipe[0] = pool[npool].fd[0];
		sp->pipe[1] = pool[npool].fd[1];
		sp->size = pool[npool].size;
		return 0;
	}
	if (pipe2(sp->pipe, O_NONBLOCK | O_CLOEXEC) == -1) {
		log_debug("proxy: no pipe, copying in user space: %s",
		    strerror(errno));
		sp->pipe[0] = sp->pipe[1] = -1;
		return -1;
	}
	/*
	 * The kernel's size: a user past fs.pipe-user-pages-soft gets
	 * smaller pipes, which still work.
	 */
	if ((size = fcntl(sp->pipe[1], F_GETPIPE_SZ)) <= 0)
		size = 4096;
	sp->size = (size_t)size;
	return 0;
}

/* The pipe goes back to the pool if it is empty and there is room. */
static void
splice_pipe_put(struct splice *sp)
{
	if (sp->pipe[0] == -1)
		return;
	if (sp->held == 0 && npool < SPLICE_POOL) {
		pool[npool].fd[0] = sp->pipe[0];
		pool[npool].fd[1] = sp->pipe[1];
		pool[npool].size = sp->size;
		npool++;
	} else {
		close(sp->pipe[0]);
		close(sp->pipe[1]);
	}
	sp->pipe[0] = sp->pipe[1] = -1;
	sp->held = 0;
}

/* No more splicing: events off, pipe released (what it held dropped). */
static void
splice_off(struct splice *sp)
{
	if (sp->rev != NULL)
		(void)event_del(sp->rev);
	if (sp->wev != NULL)
		(void)event_del(sp->wev);
	splice_pipe_put(sp);
	sp->on = false;
	sp->want = false;
	sp->large = sp->small = 0;
}

/* Frees a direction's state (NULL: none was made); the pipe is released. */
void
splice_free(struct splice *sp)
{
	if (sp == NULL)
		return;
	splice_off(sp);
	if (sp->rev != NULL)
		event_free(sp->rev);
	if (sp->wev != NULL)
		event_free(sp->wev);
	free(sp);
}

/*
 * Writes to s through the library and adds to *bytes what s took (sent
 * or queued; nothing when it refused the write), so a byte is counted
 * once whichever way it goes. Returns what nc_socket_write() does.
 */
int
splice_write(struct nc_socket *s, const void *data, size_t len,
    unsigned long long *bytes)
{
	uint64_t	before, after;
	int		rc;

	before = nc_socket_bytes_written(s);
	rc = nc_socket_write(s, data, len, NULL, NULL);
	after = nc_socket_bytes_written(s);
	if (after > before)
		*bytes += after - before;
	return rc;
}

/*
 * A user-space read of len bytes from `from` to `to`; true once the
 * direction is a stream. The state is made (*spp) at the first large
 * read; without memory the direction just stays copied. Spliced bytes
 * are added to *bytes as they leave the pipe into `to`, never as they
 * enter it, so what stop() writes from the pipe is counted once.
 */
bool
splice_note_read(struct splice **spp, struct nc_socket *from,
    struct nc_socket *to, int64_t idle_ms, size_t len,
    unsigned long long *bytes)
{
	struct splice	*sp = *spp;

	if (sp == NULL) {
		if (len < SPLICE_LARGE || (sp = calloc(1, sizeof *sp)) == NULL)
			return false;
		sp->from = from;
		sp->to = to;
		sp->idle_ms = idle_ms;
		sp->bytes = bytes;
		sp->pipe[0] = sp->pipe[1] = -1;
		*spp = sp;
	}
	if (sp->on || sp->never)
		return false;
	if (len < SPLICE_LARGE)
		sp->large = 0;
	else if (++sp->large >= SPLICE_STREAK)
		sp->want = true;
	return sp->want;
}

/*
 * Starts splicing once `to`'s queue is empty; `from` is paused until the
 * direction goes back to user space. Returns 0, or -1 when it stays in
 * user space: for now (a side closing, bytes still queued), or for good
 * when there is no pipe or no event for it (then marked `never`).
 */
int
splice_start(struct splice *sp)
{
	struct event_base	*base = worker_base;

	if (sp == NULL)
		return -1;
	if (sp->on)
		return 0;
	if (sp->never || nc_socket_destroyed(sp->from) ||
	    nc_socket_destroyed(sp->to) || nc_socket_buffer_size(sp->to) > 0)
		return -1;
	if (sp->rev == NULL && (sp->rev = event_new(base,
	    nc_socket_fd(sp->from), EV_READ | EV_PERSIST, splice_read_cb,
	    sp)) == NULL)
		goto never;
	if (sp->wev == NULL && (sp->wev = event_new(base,
	    nc_socket_fd(sp->to), EV_WRITE | EV_PERSIST, splice_write_cb,
	    sp)) == NULL)
		goto never;
	if (splice_pipe_get(sp) == -1)
		goto never;
	if (event_add(sp->rev, NULL) == -1) {
		splice_pipe_put(sp);
		goto never;
	}
	nc_socket_pause(sp->from);
	sp->on = true;
	sp->eof = false;
	sp->small = 0;
	return 0;

never:
	sp->never = true;
	sp->want = false;
	return -1;
}

/*
 * `to` drained: a direction waiting to splice starts now. True when it
 * is spliced, and then `from` must stay paused.
 */
bool
splice_drained(struct splice *sp)
{
	if (sp == NULL)
		return false;
	if (sp->on)
		return true;
	return sp->want && splice_start(sp) == 0;
}

/*
 * Back to user space: with keep, what the pipe holds is written to `to`
 * through the library first, and `from` resumes unless that filled
 * `to`'s queue (its `drain` resumes it then); without keep it is
 * dropped and `from` stays as it is (the caller is closing).
 */
void
splice_stop(struct splice *sp, bool keep)
{
	char	buf[16384];
	ssize_t	n;
	int	full = 0;

	if (sp == NULL)
		return;
	if (!sp->on) {
		sp->want = false;
		return;
	}
	if (!keep) {
		splice_off(sp);
		return;
	}
	while (sp->held > 0 && !nc_socket_destroyed(sp->to)) {
		n = read(sp->pipe[0], buf, sizeof buf);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		sp->held -= (size_t)n;
		if (splice_write(sp->to, buf, (size_t)n, sp->bytes) == 0)
			full = 1;
	}
	splice_off(sp);
	if (!full && !nc_socket_destroyed(sp->from))
		nc_socket_resume(sp->from);
}

/* Any byte moved: both legs' idle timers start again, as in user space. */
static void
splice_activity(struct splice *sp)
{
	if (sp->idle_ms <= 0)
		return;
	(void)nc_socket_set_timeout(sp->from, sp->idle_ms, NULL, NULL);
	(void)nc_socket_set_timeout(sp->to, sp->idle_ms, NULL, NULL);
}

/* s failed with -errno: it goes as a failed read or write would. */
static void
splice_fail(struct splice *sp, struct nc_socket *s, int code)
{
	splice_off(sp);
	nc_socket_destroy_error(s, code);
}

/*
 * Socket to pipe, pipe to socket, a few pipefuls at most. The pipe is
 * filled only when empty, so an EAGAIN from the first splice means the
 * socket had nothing, never that the pipe was full.
 */
static void
splice_move(struct splice *sp)
{
	ssize_t	n;
	int	rounds, moved = 0;
	bool	wait_write = false;
	size_t	got;

	if (nc_socket_destroyed(sp->from) || nc_socket_destroyed(sp->to)) {
		/* Closing: the close listeners release the rest. */
		splice_off(sp);
		return;
	}
	for (rounds = 0; rounds < SPLICE_ROUNDS; rounds++) {
		got = 0;
		if (sp->held == 0) {
			if (sp->eof)
				break;
			n = splice(nc_socket_fd(sp->from), NULL, sp->pipe[1],
			    NULL, sp->size, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n == -1) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN)
					break;
				if (errno == EINVAL || errno == ENOSYS ||
				    errno == EOPNOTSUPP) {
					/* These sockets do not splice. */
					splice_off(sp);
					sp->never = true;
					nc_socket_resume(sp->from);
					return;
				}
				splice_fail(sp, sp->from, -errno);
				return;
			}
			if (n == 0) {
				sp->eof = true;
				break;
			}
			got = (size_t)n;
			sp->held = got;
			moved = 1;
			if (got <= SPLICE_SMALL && got < sp->size)
				sp->small++;
			else
				sp->small = 0;
		}
		n = splice(sp->pipe[0], NULL, nc_socket_fd(sp->to), NULL,
		    sp->held, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				wait_write = true;
				break;
			}
			if (errno == EINVAL || errno == ENOSYS ||
			    errno == EOPNOTSUPP) {
				sp->never = true;
				splice_stop(sp, true);
				return;
			}
			splice_fail(sp, sp->to, -errno);
			return;
		}
		sp->held -= (size_t)n;
		*sp->bytes += (unsigned long long)n;
		moved = 1;
		if (sp->held > 0) {
			wait_write = true;
			break;
		}
		/* A short read emptied the socket: wait for more. */
		if (got > 0 && got < sp->size)
			break;
	}
	if (moved)
		splice_activity(sp);
	if (sp->held == 0 && (sp->eof || sp->small >= SPLICE_STREAK)) {
		/*
		 * The FIN (the socket reads it again, and `end` follows), or
		 * no longer a stream: user space again.
		 */
		splice_off(sp);
		nc_socket_resume(sp->from);
		return;
	}
	if (wait_write || sp->held > 0) {
		if (event_pending(sp->rev, EV_READ, NULL))
			(void)event_del(sp->rev);
		if (!event_pending(sp->wev, EV_WRITE, NULL) &&
		    event_add(sp->wev, NULL) == -1)
			splice_fail(sp, sp->to, NC_ENOMEM);
	} else {
		if (event_pending(sp->wev, EV_WRITE, NULL))
			(void)event_del(sp->wev);
		if (!event_pending(sp->rev, EV_READ, NULL) &&
		    event_add(sp->rev, NULL) == -1)
			splice_fail(sp, sp->from, NC_ENOMEM);
	}
}

static void
splice_read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	splice_move(arg);
}

static void
splice_write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	splice_move(arg);
}
