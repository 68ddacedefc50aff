/*
 * The master-worker channel: one JSON object per SOCK_SEQPACKET packet,
 * fds as SCM_RIGHTS. Every packet is checked before anyone sees it: size,
 * truncation of data or fds, JSON that parses to an object with a string
 * "type", an integer "seq", and an "fds" count equal to the fds that
 * came. A bad packet is a protocol error: its fds are closed and the
 * channel stops. This file is the channel (reading, the queue, writing,
 * the frames it sends); ipc-parse.c checks what comes.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "nc-int.h"
#include "nc-ipc.h"

struct ipc_out {
	char		*data;
	size_t		 len;
	int		 fds[NC_IPC_MAX_FDS];
	size_t		 nfds;
	bool		 keep_fds;	/* the caller's: not closed here */
	struct nc_ipc_blob *blob;	/* data is in it, shared: not freed */
	size_t		 count;		/* messages in it: 1, more in a batch */
	size_t		 cap;		/* a batch: bytes allocated */
	bool		 batch;		/* a messages frame, growing */
	struct ipc_out	*next;
};

/* A packet queued on several channels: freed with its last reference. */
struct nc_ipc_blob {
	size_t		 refs;
	char		 data[];
};

struct nc_ipc {
	int		 fd;
	struct event	*rev;
	struct event	*wev;
	struct ipc_out	*head, *tail;
	size_t		 queued;
	size_t		 qbytes;	/* of the packets queued */
	struct timespec	 progress;	/* last packet out, or queue filled */
	size_t		 low_bytes, low_pkts;	/* nc_ipc_set_low_cb() */
	bool		 high;		/* above them since the last call */
	void		(*low_cb)(struct nc_ipc *, void *);
	long long	 seq;
	size_t		 burst;		/* packets read per wake-up at most */
	bool		 failed;
	bool		 gone;		/* the peer closed: nothing goes out */
	bool		 eof;
	const char	*raw;		/* the packet being delivered */
	size_t		 rawlen;
	const char	*trust_type;	/* nc_ipc_trust_tail() */
	const char	*trust_key;
	const char	*tval;		/* its last member's text, unparsed */
	size_t		 tlen;
	nc_ipc_msg_cb	 msg_cb;
	nc_ipc_error_cb	 error_cb;
	nc_ipc_frame_cb	 frame_cb;
	void		*arg;
};

static json_t	*ipc_parse_trusted(struct nc_ipc *, char *, size_t, size_t);

static void
close_fds(const int *fds, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void
ipc_fail(struct nc_ipc *ipc, const char *reason)
{
	ipc->failed = true;
	(void)event_del(ipc->rev);
	(void)event_del(ipc->wev);
	ipc->error_cb(ipc, reason, ipc->arg);
}

/*
 * Reads and delivers one packet: 1, 0 when none is waiting, -1 once the
 * channel failed or ended (the error callback has run; it may have freed
 * the channel).
 */
static int
ipc_read_one(struct nc_ipc *ipc)
{
	char		 buf[NC_IPC_MAX_SIZE + 1];
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * NC_IPC_MAX_FDS)];
	} cbuf;
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	const char	*reason = NULL;
	int		 fds[NC_IPC_MAX_FDS + 64];
	size_t		 nfds = 0, n, i;
	ssize_t		 len;
	json_t		*msg;
	bool		 reset = false;

	ipc->raw = NULL;
	ipc->tval = NULL;
again:
	memset(&mh, 0, sizeof mh);
	iov.iov_base = buf;
	iov.iov_len = sizeof buf;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf.buf;
	mh.msg_controllen = sizeof cbuf.buf;
	len = recvmsg(ipc->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (len == -1) {
		if (errno == EINTR)
			goto again;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		/*
		 * A peer that exits with our packets unread leaves
		 * ECONNRESET, which the kernel reports once, before the
		 * packets the peer sent us: those are still to be read.
		 */
		if (errno == ECONNRESET && !reset) {
			reset = true;
			goto again;
		}
		ipc_fail(ipc, strerror(errno));
		return -1;
	}
	/* Collect every fd that came before judging the packet. */
	for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			int	got;

			memcpy(&got, CMSG_DATA(cm) + i * sizeof(int),
			    sizeof got);
			if (nfds < sizeof fds / sizeof fds[0])
				fds[nfds++] = got;
			else
				close(got);
		}
	}
	if (len == 0 && nfds == 0) {
		ipc->eof = true;
		ipc_fail(ipc, "closed");
		return -1;
	}
	/* A frame's payload is text: it ends the packet, a NUL after it. */
	if ((size_t)len < sizeof buf)
		buf[len] = '\0';
	if (!(mh.msg_flags & MSG_TRUNC) && nc_ipc_is_frame(buf, (size_t)len)) {
		struct nc_ipc_frame	f;

		if (nc_ipc_frame_parse(buf, (size_t)len, nfds,
		    (mh.msg_flags & MSG_CTRUNC) != 0, &f, &reason) == -1 ||
		    ipc->frame_cb == NULL) {
			close_fds(fds, nfds);
			ipc_fail(ipc, reason != NULL ? reason :
			    "unexpected frame");
			return -1;
		}
		ipc->frame_cb(ipc, &f, fds, nfds, ipc->arg);
		return 1;
	}
	if ((mh.msg_flags & MSG_CTRUNC) && !(mh.msg_flags & MSG_TRUNC) &&
	    len > 0 && len <= NC_IPC_MAX_SIZE &&
	    (msg = nc_ipc_parse_short(buf, (size_t)len, nfds)) != NULL) {
		/* We are out of fds: the message comes, its fds don't. */
		ipc->msg_cb(ipc, msg, fds, nfds, ipc->arg);
		return 1;
	}
	if (mh.msg_flags & MSG_CTRUNC)
		reason = "too many fds (truncated)";
	else if ((mh.msg_flags & MSG_TRUNC) || len > NC_IPC_MAX_SIZE)
		reason = "oversized message";
	else if (nfds > NC_IPC_MAX_FDS)
		reason = "too many fds";
	else if (len == 0)
		reason = "empty message";
	if (reason != NULL) {
		close_fds(fds, nfds);
		ipc_fail(ipc, reason);
		return -1;
	}
	if ((msg = ipc_parse_trusted(ipc, buf, (size_t)len, nfds)) == NULL &&
	    (msg = nc_ipc_parse(buf, (size_t)len, nfds, &reason)) == NULL) {
		close_fds(fds, nfds);
		ipc_fail(ipc, reason);
		return -1;
	}
	ipc->raw = buf;
	ipc->rawlen = (size_t)len;
	ipc->msg_cb(ipc, msg, fds, nfds, ipc->arg);
	return 1;
}

static void
ipc_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct nc_ipc	*ipc = arg;
	size_t		 burst = ipc->burst, n;

	(void)fd;
	(void)what;
	/* With a burst of 1 the channel is not touched after the callback. */
	for (n = 1; ipc_read_one(ipc) == 1 && n < burst; n++)
		if (ipc->failed || ipc->eof || !nc__event_pending(ipc->rev))
			break;
}

void
nc_ipc_set_burst(struct nc_ipc *ipc, size_t n)
{
	ipc->burst = n > 0 ? n : 1;
}

void
nc_ipc_drain(struct nc_ipc *ipc, size_t max)
{
	size_t	n;

	for (n = 0; n < max && !ipc->eof; n++)
		if (ipc_read_one(ipc) != 1)
			break;
}

static void
ipc_update_write(struct nc_ipc *ipc)
{
	if (ipc->head != NULL && !ipc->failed) {
		if (!nc__event_pending(ipc->wev))
			(void)event_add(ipc->wev, NULL);
	} else if (nc__event_pending(ipc->wev))
		(void)event_del(ipc->wev);
}

static void
ipc_blob_release(struct nc_ipc_blob *b)
{
	if (b != NULL && --b->refs == 0)
		free(b);
}

static void
ipc_out_free(struct ipc_out *o)
{
	if (!o->keep_fds)
		close_fds(o->fds, o->nfds);
	if (o->blob != NULL)
		ipc_blob_release(o->blob);
	else
		free(o->data);
	free(o);
}

/* Sends queued packets until the kernel pushes back; -1 on failure. */
static int
ipc_write(struct nc_ipc *ipc)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * NC_IPC_MAX_FDS)];
	} cbuf;
	struct ipc_out	*o;
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*cm;

	while ((o = ipc->head) != NULL) {
		memset(&mh, 0, sizeof mh);
		iov.iov_base = o->data;
		iov.iov_len = o->len;
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		if (o->nfds > 0) {
			memset(&cbuf, 0, sizeof cbuf);
			mh.msg_control = cbuf.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * o->nfds);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * o->nfds);
			memcpy(CMSG_DATA(cm), o->fds, sizeof(int) * o->nfds);
		}
		if (sendmsg(ipc->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == EINTR || errno == ENOBUFS)
				return 0;
			return -1;
		}
		/* The kernel holds its own references now. */
		ipc->head = o->next;
		if (ipc->head == NULL)
			ipc->tail = NULL;
		ipc->queued -= o->count;
		ipc->qbytes -= o->len;
		ipc_out_free(o);
		clock_gettime(CLOCK_MONOTONIC, &ipc->progress);
	}
	return 0;
}

/*
 * A write failed. A peer that closed its end (EPIPE, ECONNRESET) is not a
 * failure of the channel: what it sent before is still to be read, up to
 * the end of the channel, which reports it; what we queued for it is
 * dropped. Anything else fails the channel.
 */
static void
ipc_write_failed(struct nc_ipc *ipc)
{
	struct ipc_out	*o;

	if (errno != EPIPE && errno != ECONNRESET) {
		ipc_fail(ipc, strerror(errno));
		return;
	}
	ipc->gone = true;
	while ((o = ipc->head) != NULL) {
		ipc->head = o->next;
		ipc_out_free(o);
	}
	ipc->tail = NULL;
	ipc->queued = 0;
	ipc->qbytes = 0;
	(void)event_del(ipc->wev);
}

/* The queue went down below the marks of nc_ipc_set_low_cb(). */
static void
ipc_check_low(struct nc_ipc *ipc)
{
	if (ipc->high && ipc->low_cb != NULL && ipc->qbytes <= ipc->low_bytes &&
	    ipc->queued <= ipc->low_pkts) {
		ipc->high = false;
		ipc->low_cb(ipc, ipc->arg);
	}
}

static void
ipc_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct nc_ipc	*ipc = arg;

	(void)fd;
	(void)what;
	if (ipc_write(ipc) == -1) {
		ipc_write_failed(ipc);
		return;
	}
	ipc_update_write(ipc);
	ipc_check_low(ipc);
}

struct nc_ipc *
nc_ipc_new(struct event_base *base, int fd, nc_ipc_msg_cb msg_cb,
    nc_ipc_error_cb error_cb, void *arg)
{
	struct nc_ipc	*ipc;

	if ((ipc = calloc(1, sizeof *ipc)) == NULL)
		return NULL;
	ipc->fd = fd;
	ipc->msg_cb = msg_cb;
	ipc->error_cb = error_cb;
	ipc->arg = arg;
	ipc->seq = 1;
	ipc->burst = 1;
	ipc->rev = event_new(base, fd, EV_READ | EV_PERSIST, ipc_read_cb, ipc);
	ipc->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, ipc_write_cb,
	    ipc);
	if (ipc->rev == NULL || ipc->wev == NULL ||
	    event_add(ipc->rev, NULL) == -1) {
		if (ipc->rev != NULL)
			event_free(ipc->rev);
		if (ipc->wev != NULL)
			event_free(ipc->wev);
		free(ipc);
		return NULL;
	}
	return ipc;
}

/* Puts o at the end of the queue. */
static void
ipc_link(struct nc_ipc *ipc, struct ipc_out *o)
{
	if (ipc->tail != NULL)
		ipc->tail->next = o;
	else {
		ipc->head = o;
		clock_gettime(CLOCK_MONOTONIC, &ipc->progress);
	}
	ipc->tail = o;
	if (o->count == 0)
		o->count = 1;
	ipc->queued += o->count;
	ipc->qbytes += o->len;
	if (ipc->qbytes > ipc->low_bytes || ipc->queued > ipc->low_pkts)
		ipc->high = true;
}

/* Queues o (seq s) and sends what the kernel takes now. */
static long long
ipc_queue(struct nc_ipc *ipc, struct ipc_out *o, long long s)
{
	ipc_link(ipc, o);
	if (ipc_write(ipc) == -1) {
		ipc_write_failed(ipc);
		return s;	/* queued; freed with the channel */
	}
	ipc_update_write(ipc);
	ipc_check_low(ipc);
	return s;
}

long long
nc_ipc_send(struct nc_ipc *ipc, json_t *msg, const int *fds, size_t nfds)
{
	struct ipc_out	*o = NULL;
	json_t		*seq;
	long long	 s;

	if (ipc->failed || ipc->gone || nfds > NC_IPC_MAX_FDS ||
	    ipc->queued >= NC_IPC_MAX_QUEUE)
		goto fail;
	seq = json_object_get(msg, "seq");
	if (json_is_integer(seq))
		s = json_integer_value(seq);
	else {
		s = ipc->seq++;
		if (json_object_set_new(msg, "seq", json_integer(s)) == -1)
			goto fail;
	}
	if (nfds > 0 && json_object_set_new(msg, "fds",
	    json_integer((json_int_t)nfds)) == -1)
		goto fail;
	if ((o = calloc(1, sizeof *o)) == NULL)
		goto fail;
	o->data = json_dumps(msg, JSON_COMPACT);
	if (o->data == NULL || (o->len = strlen(o->data)) > NC_IPC_MAX_SIZE) {
		free(o->data);
		free(o);
		goto fail;
	}
	if (nfds > 0)
		memcpy(o->fds, fds, nfds * sizeof *fds);
	o->nfds = nfds;
	return ipc_queue(ipc, o, s);
fail:
	close_fds(fds, nfds);
	return -1;
}

long long
nc_ipc_send_text(struct nc_ipc *ipc, const char *body, size_t len)
{
	struct ipc_out	*o;
	long long	 s;
	int		 n;

	if (ipc->failed || ipc->gone || ipc->queued >= NC_IPC_MAX_QUEUE ||
	    len < 3 || body[0] != '{')
		return -1;
	if ((o = calloc(1, sizeof *o)) == NULL ||
	    (o->data = malloc(len + 32)) == NULL) {
		free(o);
		return -1;
	}
	s = ipc->seq++;
	/* {"seq":N, then the body's members. */
	n = snprintf(o->data, 32, "{\"seq\":%lld,", s);
	memcpy(o->data + n, body + 1, len - 1);
	o->len = (size_t)n + len - 1;
	o->data[o->len] = '\0';
	if (o->len > NC_IPC_MAX_SIZE) {
		ipc_out_free(o);
		ipc->seq--;
		return -1;
	}
	return ipc_queue(ipc, o, s);
}

void
nc_ipc_set_frame_cb(struct nc_ipc *ipc, nc_ipc_frame_cb cb)
{
	ipc->frame_cb = cb;
}

static void
ipc_frame_header(char *buf, int kind, size_t n, long long seq)
{
	uint64_t	s = htole64((uint64_t)seq);
	uint32_t	zero = 0;
	uint16_t	n16 = htole16((uint16_t)n);

	buf[0] = (char)kind;
	buf[1] = NC_IPC_FRAME_VERSION;
	memcpy(buf + 2, &n16, sizeof n16);
	memcpy(buf + 4, &zero, sizeof zero);
	memcpy(buf + 8, &s, sizeof s);
}

long long
nc_ipc_send_conns(struct nc_ipc *ipc, const uint32_t *listeners,
    const int *fds, size_t n)
{
	struct ipc_out	*o;
	long long	 s;
	uint32_t	 id;
	size_t		 i;

	if (ipc->failed || ipc->gone || n == 0 || n > NC_IPC_MAX_FDS ||
	    ipc->queued >= NC_IPC_MAX_QUEUE)
		return -1;
	if ((o = calloc(1, sizeof *o)) == NULL ||
	    (o->data = malloc(NC_IPC_FRAME_HEADER + n * sizeof *listeners)) ==
	    NULL) {
		free(o);
		return -1;
	}
	s = ipc->seq++;
	ipc_frame_header(o->data, NC_IPC_FRAME_CONN, n, s);
	for (i = 0; i < n; i++) {
		id = htole32(listeners[i]);
		memcpy(o->data + NC_IPC_FRAME_HEADER + i * sizeof id, &id,
		    sizeof id);
	}
	o->len = NC_IPC_FRAME_HEADER + n * sizeof *listeners;
	memcpy(o->fds, fds, n * sizeof *fds);
	o->nfds = n;
	o->keep_fds = true;
	return ipc_queue(ipc, o, s);
}

int
nc_ipc_send_ack(struct nc_ipc *ipc, long long ack, size_t n,
    uint64_t accepted, bool now)
{
	char		 buf[NC_IPC_FRAME_HEADER + sizeof(uint64_t)];
	struct ipc_out	*o;

	if (ipc->failed || ipc->gone || n == 0 || n > NC_IPC_MAX_FDS)
		return -1;
	ipc_frame_header(buf, NC_IPC_FRAME_CONN_ACK, n, ack);
	accepted = htole64(accepted);
	memcpy(buf + NC_IPC_FRAME_HEADER, &accepted, sizeof accepted);
	if (now) {
		/* In the kernel now, or not at all: nothing may pass it. */
		if (ipc->head != NULL)
			return -1;
		while (send(ipc->fd, buf, sizeof buf, MSG_NOSIGNAL |
		    MSG_DONTWAIT) == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != ENOBUFS)
				ipc_write_failed(ipc);
			return -1;
		}
		clock_gettime(CLOCK_MONOTONIC, &ipc->progress);
		return 0;
	}
	if (ipc->queued >= NC_IPC_MAX_QUEUE ||
	    (o = calloc(1, sizeof *o)) == NULL)
		return -1;
	if ((o->data = malloc(sizeof buf)) == NULL) {
		free(o);
		return -1;
	}
	memcpy(o->data, buf, sizeof buf);
	o->len = sizeof buf;
	(void)ipc_queue(ipc, o, 0);
	return 0;
}

static void
ipc_msg_header(char *buf, int kind, unsigned flags, size_t len, int from)
{
	uint32_t	l = htole32((uint32_t)len), f = htole32((uint32_t)from);
	uint32_t	zero = 0;
	uint16_t	fl = htole16((uint16_t)flags);

	buf[0] = (char)kind;
	buf[1] = NC_IPC_MSG_VERSION;
	memcpy(buf + 2, &fl, sizeof fl);
	memcpy(buf + 4, &l, sizeof l);
	memcpy(buf + 8, &f, sizeof f);
	memcpy(buf + 12, &zero, sizeof zero);
}

void
nc_ipc_message_init(struct nc_ipc_shared *sh, int from, const char *payload,
    size_t len)
{
	ipc_msg_header(sh->hdr, NC_IPC_FRAME_MESSAGE, 0, len, from);
	sh->payload = payload;
	sh->len = len;
	sh->copy = NULL;
}

void
nc_ipc_shared_release(struct nc_ipc_shared *sh)
{
	ipc_blob_release(sh->copy);
	sh->copy = NULL;
}

int
nc_ipc_send_shared(struct nc_ipc *ipc, struct nc_ipc_shared *sh)
{
	struct iovec	 iov[2];
	struct msghdr	 mh;
	struct ipc_out	*o;
	size_t		 total = NC_IPC_FRAME_HEADER + sh->len;

	if (ipc->failed || ipc->gone || ipc->queued >= NC_IPC_MAX_QUEUE ||
	    total > NC_IPC_MAX_SIZE)
		return -1;
	if (ipc->head == NULL) {
		/* Nothing waits: from the caller's bytes, no copy. */
		iov[0].iov_base = sh->hdr;
		iov[0].iov_len = NC_IPC_FRAME_HEADER;
		iov[1].iov_base = (void *)(uintptr_t)sh->payload;
		iov[1].iov_len = sh->len;
		memset(&mh, 0, sizeof mh);
		mh.msg_iov = iov;
		mh.msg_iovlen = 2;
		while (sendmsg(ipc->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) ==
		    -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK ||
			    errno == ENOBUFS)
				goto queue;
			ipc_write_failed(ipc);
			return -1;
		}
		return 0;
	}
queue:
	if (sh->copy == NULL) {
		if ((sh->copy = malloc(sizeof *sh->copy + total)) == NULL)
			return -1;
		sh->copy->refs = 1;	/* the caller's */
		memcpy(sh->copy->data, sh->hdr, NC_IPC_FRAME_HEADER);
		memcpy(sh->copy->data + NC_IPC_FRAME_HEADER, sh->payload,
		    sh->len);
	}
	if ((o = calloc(1, sizeof *o)) == NULL)
		return -1;
	sh->copy->refs++;
	o->blob = sh->copy;
	o->data = sh->copy->data;
	o->len = total;
	ipc_link(ipc, o);
	ipc_update_write(ipc);
	return 0;
}

int
nc_ipc_send_batched(struct nc_ipc *ipc, int from, const char *payload,
    size_t len, bool defer)
{
	struct nc_ipc_shared	 sh;
	struct ipc_out		*o = ipc->tail;
	size_t			 need, cap;
	uint32_t		 v;
	char			*data;
	int			 rc;

	if (ipc->failed || ipc->gone || ipc->queued >= NC_IPC_MAX_QUEUE ||
	    len == 0 || len > NC_IPC_MSG_MAX)
		return -1;
	if (ipc->head == NULL && !defer) {
		/* Nothing waits: it goes now, alone. */
		nc_ipc_message_init(&sh, from, payload, len);
		rc = nc_ipc_send_shared(ipc, &sh);
		nc_ipc_shared_release(&sh);
		return rc;
	}
	need = NC_IPC_ENTRY_HEADER + len;
	if (o == NULL || !o->batch || o->len + need > NC_IPC_MAX_SIZE) {
		if ((o = calloc(1, sizeof *o)) == NULL)
			return -1;
		o->cap = NC_IPC_FRAME_HEADER + need;
		if (o->cap < 1024)
			o->cap = 1024;
		if ((o->data = malloc(o->cap)) == NULL) {
			free(o);
			return -1;
		}
		ipc_msg_header(o->data, NC_IPC_FRAME_MESSAGES, 0, 0, 0);
		o->len = NC_IPC_FRAME_HEADER;
		o->batch = true;
		ipc_link(ipc, o);	/* counted as one message: none yet */
		o->count = 0;
		ipc->queued--;
		ipc_update_write(ipc);
	}
	if (o->len + need > o->cap) {
		cap = o->cap * 2;
		if (cap < o->len + need)
			cap = o->len + need;
		if (cap > NC_IPC_MAX_SIZE)
			cap = NC_IPC_MAX_SIZE;
		if ((data = realloc(o->data, cap)) == NULL)
			return -1;
		o->data = data;
		o->cap = cap;
	}
	v = htole32((uint32_t)from);
	memcpy(o->data + o->len, &v, sizeof v);
	v = htole32((uint32_t)len);
	memcpy(o->data + o->len + 4, &v, sizeof v);
	memcpy(o->data + o->len + NC_IPC_ENTRY_HEADER, payload, len);
	o->len += need;
	o->count++;
	/* The header: the payload's length and the count. */
	v = htole32((uint32_t)(o->len - NC_IPC_FRAME_HEADER));
	memcpy(o->data + 4, &v, sizeof v);
	v = htole32((uint32_t)o->count);
	memcpy(o->data + 8, &v, sizeof v);
	ipc->queued++;
	ipc->qbytes += need;
	if (ipc->qbytes > ipc->low_bytes || ipc->queued > ipc->low_pkts)
		ipc->high = true;
	return 0;
}

int
nc_ipc_send_broadcast(struct nc_ipc *ipc, const char *payload, size_t len,
    unsigned flags)
{
	struct nc_ipc_shared	sh;
	int			rc;

	if (len == 0 || len > NC_IPC_MSG_MAX ||
	    (flags & ~NC_IPC_MSG_DRAINING) != 0)
		return -1;
	nc_ipc_message_init(&sh, 0, payload, len);
	ipc_msg_header(sh.hdr, NC_IPC_FRAME_BROADCAST, flags, len, 0);
	rc = nc_ipc_send_shared(ipc, &sh);
	nc_ipc_shared_release(&sh);
	return rc;
}

long long
nc_ipc_send_now(struct nc_ipc *ipc, json_t *msg)
{
	struct ipc_out	*o;
	long long	 s;

	if (ipc->head != NULL || (s = nc_ipc_send(ipc, msg, NULL, 0)) == -1)
		return -1;
	if ((o = ipc->head) != NULL) {
		/* Still ours, the only one queued: the kernel did not take it. */
		ipc->head = ipc->tail = NULL;
		ipc->queued = 0;
		ipc->qbytes = 0;
		ipc_out_free(o);
		ipc_update_write(ipc);
		return -1;
	}
	return ipc->failed || ipc->gone ? -1 : s;
}

void
nc_ipc_flush(struct nc_ipc *ipc, int timeout_ms)
{
	struct pollfd	pfd;

	while (ipc->head != NULL && !ipc->failed) {
		if (ipc_write(ipc) == -1 || ipc->head == NULL)
			break;
		pfd.fd = ipc->fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, timeout_ms) <= 0)
			break;
	}
}

const char *
nc_ipc_last_value(const struct nc_ipc *ipc, const json_t *msg,
    const char *key, size_t *vlen)
{
	if (ipc->tval != NULL && strcmp(key, ipc->trust_key) == 0) {
		*vlen = ipc->tlen;
		return ipc->tval;
	}
	return nc_ipc_member_value(ipc->raw, ipc->rawlen, msg, key, vlen);
}

void
nc_ipc_trust_tail(struct nc_ipc *ipc, const char *type, const char *key)
{
	ipc->trust_type = type;
	ipc->trust_key = key;
}

static json_t *
ipc_parse_trusted(struct nc_ipc *ipc, char *buf, size_t len, size_t nfds)
{
	if (ipc->trust_key == NULL)
		return NULL;
	return nc_ipc_parse_tail(buf, len, nfds, ipc->trust_type,
	    ipc->trust_key, &ipc->tval, &ipc->tlen);
}

size_t
nc_ipc_queued(const struct nc_ipc *ipc)
{
	return ipc->queued;
}

size_t
nc_ipc_queued_bytes(const struct nc_ipc *ipc)
{
	return ipc->qbytes;
}

bool
nc_ipc_reading(const struct nc_ipc *ipc)
{
	return !ipc->failed && nc__event_pending(ipc->rev);
}

long
nc_ipc_idle_ms(const struct nc_ipc *ipc)
{
	struct timespec	now;

	if (ipc->head == NULL)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - ipc->progress.tv_sec) * 1000 +
	    (now.tv_nsec - ipc->progress.tv_nsec) / 1000000;
}

void
nc_ipc_set_low_cb(struct nc_ipc *ipc, size_t bytes, size_t pkts,
    void (*cb)(struct nc_ipc *, void *))
{
	ipc->low_bytes = bytes;
	ipc->low_pkts = pkts;
	ipc->low_cb = cb;
	ipc->high = ipc->qbytes > bytes || ipc->queued > pkts;
}

void
nc_ipc_pause(struct nc_ipc *ipc, bool pause)
{
	if (ipc->failed || ipc->eof)
		return;
	if (pause)
		(void)event_del(ipc->rev);
	else if (!nc__event_pending(ipc->rev))
		(void)event_add(ipc->rev, NULL);
}

int
nc_ipc_fd(const struct nc_ipc *ipc)
{
	return ipc->fd;
}

void
nc_ipc_free(struct nc_ipc *ipc)
{
	struct ipc_out	*o;

	if (ipc == NULL)
		return;
	while ((o = ipc->head) != NULL) {
		ipc->head = o->next;
		ipc_out_free(o);
	}
	event_free(ipc->rev);
	event_free(ipc->wev);
	close(ipc->fd);
	free(ipc);
}

int
nc_ipc_socketpair(int fds[2])
{
	return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0, fds);
}
