/*
 * The master-worker channel: messages with fds arrive whole and in
 * order; every malformed packet is a protocol error that closes what
 * came with it and leaks nothing; a peer that dies with our messages
 * unread is still heard to its last packet.
 */

#include <sys/socket.h>
#include <sys/stat.h>

#include <endian.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "helpers.h"
#include "nc-ipc.h"

struct rx {
	json_t		*msgs[8];
	int		 nmsgs;
	int		 fds[8];
	size_t		 nfds;
	char		 reason[160];
	int		 failed;
};

static void
rx_msg(struct nc_ipc *ipc, json_t *msg, int *fds, size_t nfds, void *arg)
{
	struct rx	*rx = arg;
	size_t		 i;

	(void)ipc;
	if (rx->nmsgs < 8)
		rx->msgs[rx->nmsgs++] = msg;
	else
		json_decref(msg);
	for (i = 0; i < nfds; i++) {
		if (rx->nfds < 8)
			rx->fds[rx->nfds++] = fds[i];
		else
			close(fds[i]);
	}
}

static void
rx_error(struct nc_ipc *ipc, const char *reason, void *arg)
{
	struct rx	*rx = arg;

	(void)ipc;
	snprintf(rx->reason, sizeof rx->reason, "%s", reason);
	rx->failed = 1;
}

static void
close_all(const int *fds, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		close(fds[i]);
}

static void
rx_clear(struct rx *rx)
{
	int	i;
	size_t	j;

	for (i = 0; i < rx->nmsgs; i++)
		json_decref(rx->msgs[i]);
	for (j = 0; j < rx->nfds; j++)
		close(rx->fds[j]);
	memset(rx, 0, sizeof *rx);
}

START_TEST(test_messages_and_fds_arrive)
{
	struct event_base	*base;
	struct nc_ipc		*a, *b;
	struct rx		 rx, unused;
	struct stat		 st1, st2;
	int			 sv[2], p[2], before;
	json_t			*m;
	long long		 seq;

	before = fd_count();
	base = event_base_new();
	memset(&rx, 0, sizeof rx);
	memset(&unused, 0, sizeof unused);
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	a = nc_ipc_new(base, sv[0], rx_msg, rx_error, &unused);
	b = nc_ipc_new(base, sv[1], rx_msg, rx_error, &rx);
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(fstat(p[1], &st1), 0);

	m = json_pack("{s:s, s:i}", "type", "hello", "n", 1);
	seq = nc_ipc_send(a, m, NULL, 0);
	ck_assert_int_ge(seq, 1);
	json_decref(m);
	m = json_pack("{s:s}", "type", "fd");
	ck_assert_int_eq(nc_ipc_send(a, m, &p[1], 1), seq + 1);
	json_decref(m);
	ck_assert(run_until_count(base, &rx.nmsgs, 2, 2000));
	ck_assert_str_eq(json_string_value(json_object_get(rx.msgs[0],
	    "type")), "hello");
	ck_assert_int_eq(json_integer_value(json_object_get(rx.msgs[0],
	    "seq")), seq);
	ck_assert_int_eq(json_integer_value(json_object_get(rx.msgs[1],
	    "fds")), 1);
	ck_assert_uint_eq(rx.nfds, 1);
	/* The fd that came is the pipe's write end, and close-on-exec. */
	ck_assert_int_eq(fstat(rx.fds[0], &st2), 0);
	ck_assert(st1.st_ino == st2.st_ino);
	ck_assert(fcntl(rx.fds[0], F_GETFD) & FD_CLOEXEC);
	ck_assert_int_eq(rx.failed, 0);

	rx_clear(&rx);
	close(p[0]);
	nc_ipc_free(a);
	run_until(base, &rx.failed, 2000);
	ck_assert_str_eq(rx.reason, "closed");
	nc_ipc_free(b);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

/* Raw packets from a hostile peer, and what the receiver must say. */
static const struct {
	const char	*data;
	int		 nfds;
	const char	*reason;
} bad_packets[] = {
	{ "not json", 0, "malformed message: " },
	{ "[1,2]", 0, "malformed message: not an object" },
	{ "{\"seq\": 1}", 0, "malformed message: \"type\" is not" },
	{ "{\"type\": 5, \"seq\": 1}", 0, "malformed message: \"type\" is not" },
	{ "{\"type\": \"x\"}", 0, "malformed message: \"seq\" is not" },
	{ "{\"type\": \"x\", \"seq\": -1}", 0, "malformed message: \"seq\"" },
	{ "{\"type\": \"x\", \"seq\": 1, \"seq\": 2}", 0, "malformed message: " },
	{ "{\"type\": \"x\", \"seq\": 1}", 2, "wrong fd count" },
	{ "{\"type\": \"x\", \"seq\": 1, \"fds\": 3}", 1, "wrong fd count" },
	{ "{\"type\": \"x\", \"seq\": 1, \"fds\": 1}", 0, "wrong fd count" },
	{ "{\"type\": \"x\", \"seq\": 1, \"fds\": \"1\"}", 1, "wrong fd count" },
	{ "{\"type\": \"x\", \"seq\": 1, \"fds\": 20}", 20, "too many fds" },
	{ "", 1, "empty message" },
};

static void
send_raw(int fd, const char *data, size_t len, int nfds, int payload_fd)
{
	char		 cbuf[CMSG_SPACE(sizeof(int) * 32)];
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	int		 i;

	memset(&mh, 0, sizeof mh);
	memset(cbuf, 0, sizeof cbuf);
	iov.iov_base = (void *)(uintptr_t)data;
	iov.iov_len = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (nfds > 0) {
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		for (i = 0; i < nfds; i++)
			memcpy(CMSG_DATA(cm) + (size_t)i * sizeof(int),
			    &payload_fd, sizeof(int));
	}
	ck_assert_int_eq(sendmsg(fd, &mh, 0), (ssize_t)len);
}

START_TEST(test_bad_packets_are_protocol_errors)
{
	struct event_base	*base;
	struct nc_ipc		*b;
	struct rx		 rx;
	int			 sv[2], devnull, before;

	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	before = fd_count();
	base = event_base_new();
	memset(&rx, 0, sizeof rx);
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	b = nc_ipc_new(base, sv[1], rx_msg, rx_error, &rx);
	send_raw(sv[0], bad_packets[_i].data, strlen(bad_packets[_i].data),
	    bad_packets[_i].nfds, devnull);
	ck_assert(run_until(base, &rx.failed, 2000));
	ck_assert_msg(strncmp(rx.reason, bad_packets[_i].reason,
	    strlen(bad_packets[_i].reason)) == 0, "%s", rx.reason);
	ck_assert_int_eq(rx.nmsgs, 0);
	nc_ipc_free(b);
	close(sv[0]);
	event_base_free(base);
	/* Every fd that came with the bad packet was closed. */
	ck_assert_int_eq(fd_count(), before);
	close(devnull);
}
END_TEST

/* Frames, as a peer that receives them keeps them. */
struct frx {
	struct nc_ipc_frame	 f[4];
	int			 n;
	int			 fds[NC_IPC_MAX_FDS];
	size_t			 nfds;
};

static void
frx_frame(struct nc_ipc *ipc, const struct nc_ipc_frame *f, int *fds,
    size_t nfds, void *arg)
{
	struct frx	*x = arg;
	size_t		 i;

	(void)ipc;
	if (x->n < 4)
		x->f[x->n++] = *f;
	for (i = 0; i < nfds; i++)
		x->fds[x->nfds++] = fds[i];
}

static void
frx_msg(struct nc_ipc *ipc, json_t *msg, int *fds, size_t nfds, void *arg)
{
	(void)ipc;
	(void)arg;
	json_decref(msg);
	close_all(fds, nfds);
	ck_abort_msg("a frame was taken for a message");
}

static void
frx_error(struct nc_ipc *ipc, const char *reason, void *arg)
{
	(void)ipc;
	(void)arg;
	ck_abort_msg("channel failed: %s", reason);
}

/*
 * A conn frame carries n fds and n listener ids in one packet, and the
 * sender keeps its fds (its copy is closed when the worker answers); the
 * ack frame answers for all n, at once or queued.
 */
START_TEST(test_frames)
{
	struct event_base	*base;
	struct nc_ipc		*a, *b;
	struct frx		 x, unused;
	struct stat		 st1, st2;
	uint32_t		 ids[3] = { 7, 4000, 7 };
	int			 sv[2], p[3][2], fds[3], before, i;
	long long		 seq;

	before = fd_count();
	base = event_base_new();
	memset(&x, 0, sizeof x);
	memset(&unused, 0, sizeof unused);
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	a = nc_ipc_new(base, sv[0], frx_msg, frx_error, &unused);
	b = nc_ipc_new(base, sv[1], frx_msg, frx_error, &x);
	nc_ipc_set_frame_cb(a, frx_frame);
	nc_ipc_set_frame_cb(b, frx_frame);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(pipe(p[i]), 0);
		fds[i] = p[i][1];
	}
	ck_assert_int_eq(fstat(p[2][1], &st1), 0);
	ck_assert_int_eq(nc_ipc_send_conns(a, ids, fds, 0), -1);
	ck_assert_int_eq(nc_ipc_send_conns(a, ids, fds, NC_IPC_MAX_FDS + 1),
	    -1);
	seq = nc_ipc_send_conns(a, ids, fds, 3);
	ck_assert_int_ge(seq, 1);
	ck_assert(run_until_count(base, &x.n, 1, 2000));
	ck_assert_int_eq(x.f[0].kind, NC_IPC_FRAME_CONN);
	ck_assert_int_eq(x.f[0].seq, seq);
	ck_assert_uint_eq(x.f[0].n, 3);
	ck_assert_uint_eq(x.f[0].fds_lost, 0);
	ck_assert_uint_eq(x.f[0].listeners[0], 7);
	ck_assert_uint_eq(x.f[0].listeners[1], 4000);
	ck_assert_uint_eq(x.f[0].listeners[2], 7);
	ck_assert_uint_eq(x.nfds, 3);
	/* In order, close-on-exec; and the sender's are still open. */
	ck_assert_int_eq(fstat(x.fds[2], &st2), 0);
	ck_assert(st1.st_ino == st2.st_ino);
	ck_assert(fcntl(x.fds[0], F_GETFD) & FD_CLOEXEC);
	for (i = 0; i < 3; i++)
		ck_assert_int_ne(fcntl(fds[i], F_GETFD), -1);

	/* The answer: at once, then one queued. */
	ck_assert_int_eq(nc_ipc_send_ack(b, seq, 3, 0x5, true), 0);
	ck_assert_int_eq(nc_ipc_send_ack(b, seq, 3, 0, false), 0);
	ck_assert_int_eq(nc_ipc_send_ack(b, seq, 0, 0, true), -1);
	memset(&unused, 0, sizeof unused);
	ck_assert(run_until_count(base, &unused.n, 2, 2000));
	ck_assert_int_eq(unused.f[0].kind, NC_IPC_FRAME_CONN_ACK);
	ck_assert_int_eq(unused.f[0].seq, seq);
	ck_assert_uint_eq(unused.f[0].n, 3);
	ck_assert_uint_eq(unused.f[0].accepted, 0x5);
	ck_assert_uint_eq(unused.f[1].accepted, 0);
	ck_assert_uint_eq(unused.nfds, 0);

	close_all(x.fds, x.nfds);
	for (i = 0; i < 3; i++) {
		close(p[i][0]);
		close(p[i][1]);
	}
	nc_ipc_free(a);
	nc_ipc_free(b);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

/* A frame for a channel that takes none is a protocol error. */
START_TEST(test_frame_unexpected)
{
	struct event_base	*base;
	struct nc_ipc		*a, *b;
	struct rx		 rx;
	struct frx		 unused;
	uint32_t		 id = 1;
	int			 sv[2], p[2], before;

	before = fd_count();
	base = event_base_new();
	memset(&rx, 0, sizeof rx);
	memset(&unused, 0, sizeof unused);
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	ck_assert_int_eq(pipe(p), 0);
	a = nc_ipc_new(base, sv[0], frx_msg, frx_error, &unused);
	b = nc_ipc_new(base, sv[1], rx_msg, rx_error, &rx);
	ck_assert_int_ge(nc_ipc_send_conns(a, &id, &p[1], 1), 1);
	ck_assert(run_until(base, &rx.failed, 2000));
	ck_assert_str_eq(rx.reason, "unexpected frame");
	ck_assert_int_eq(rx.nmsgs, 0);
	ck_assert_uint_eq(rx.nfds, 0);
	nc_ipc_free(a);
	nc_ipc_free(b);
	close(p[0]);
	close(p[1]);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

/* Frames that are not right, and what the receiver says. */
static const struct {
	const char	*hex;		/* the packet, two digits a byte */
	size_t		 nfds;
	bool		 ctrunc;
	const char	*reason;	/* NULL: valid */
	size_t		 lost;
} frames[] = {
	/* conn, v1, n=1, seq 9, listener 3, its fd */
	{ "0101010000000000" "0900000000000000" "03000000", 1, false, NULL, 0 },
	/* two connections, one fd came (out of fds): the last is lost */
	{ "0101020000000000" "0900000000000000" "0300000004000000", 1, true,
	    NULL, 1 },
	/* the same without the kernel saying so */
	{ "0101020000000000" "0900000000000000" "0300000004000000", 1, false,
	    "wrong fd count", 0 },
	{ "0101010000000000" "0900000000000000" "03000000", 2, false,
	    "wrong fd count", 0 },
	{ "0102010000000000" "0900000000000000" "03000000", 1, false,
	    "frame version 2 not understood", 0 },
	{ "0101000000000000" "0900000000000000", 0, false,
	    "malformed frame: 0 connections", 0 },
	{ "0101110000000000" "0900000000000000", 0, false,
	    "malformed frame: 17 connections", 0 },
	{ "0101010001000000" "0900000000000000" "03000000", 1, false,
	    "malformed frame: bad header", 0 },
	{ "0101010000000000" "ffffffffffffffff" "03000000", 1, false,
	    "malformed frame: bad header", 0 },
	{ "0101010000000000" "0900000000000000" "0300", 1, false,
	    "malformed frame: wrong size", 0 },
	{ "01010100000000", 0, false, "malformed frame: truncated header", 0 },
	/* ack of 3, connections 0 and 2 taken */
	{ "0201030000000000" "0900000000000000" "0500000000000000", 0, false,
	    NULL, 0 },
	{ "0201030000000000" "0900000000000000" "0800000000000000", 0, false,
	    "malformed frame: ack for connections not sent", 0 },
	{ "0201030000000000" "0900000000000000" "05000000", 0, false,
	    "malformed frame: wrong size", 0 },
	{ "0201030000000000" "0900000000000000" "0500000000000000", 1, false,
	    "wrong fd count", 0 },
};

START_TEST(test_frame_parse)
{
	struct nc_ipc_frame	 f;
	const char		*why;
	char			 buf[128];
	size_t			 len, i;
	unsigned int		 byte;
	int			 rc;

	len = strlen(frames[_i].hex) / 2;
	for (i = 0; i < len; i++) {
		ck_assert_int_eq(sscanf(frames[_i].hex + 2 * i, "%2x", &byte),
		    1);
		buf[i] = (char)byte;
	}
	rc = nc_ipc_frame_parse(buf, len, frames[_i].nfds, frames[_i].ctrunc,
	    &f, &why);
	if (frames[_i].reason == NULL) {
		ck_assert_msg(rc == 0, "refused: %s", why);
		ck_assert_int_eq(f.seq, 9);
		ck_assert_uint_eq(f.fds_lost, frames[_i].lost);
		if (f.kind == NC_IPC_FRAME_CONN)
			ck_assert_uint_eq(f.listeners[0], 3);
		else
			ck_assert_uint_eq(f.accepted, 5);
	} else {
		ck_assert_int_eq(rc, -1);
		ck_assert_msg(strncmp(why, frames[_i].reason,
		    strlen(frames[_i].reason)) == 0, "%s", why);
	}
}
END_TEST

/* Message frames: the header checked, the payload only measured. */
static const struct {
	const char	*hex;
	size_t		 nfds;
	const char	*reason;	/* NULL: valid */
} msg_frames[] = {
	/* broadcast, v1, draining, 7 bytes: {"a":1} */
	{ "0301010007000000" "0000000000000000" "7b2261223a317d", 0, NULL },
	/* message from worker 5, 7 bytes */
	{ "0401000007000000" "0500000000000000" "7b2261223a317d", 0, NULL },
	/* a payload that is not JSON is the reader's to judge */
	{ "0301000002000000" "0000000000000000" "22ff", 0, NULL },
	{ "0302000007000000" "0000000000000000" "7b2261223a317d", 0,
	    "frame version 2 not understood" },
	{ "0301020007000000" "0000000000000000" "7b2261223a317d", 0,
	    "malformed frame: unknown flags 0x0002" },
	{ "0401010007000000" "0500000000000000" "7b2261223a317d", 0,
	    "malformed frame: unknown flags 0x0001" },
	{ "0301000006000000" "0000000000000000" "7b2261223a317d", 0,
	    "malformed frame: wrong size" },
	{ "0301000008000000" "0000000000000000" "7b2261223a317d", 0,
	    "malformed frame: wrong size" },
	{ "0301000000000000" "0000000000000000", 0,
	    "malformed frame: payload of 0 bytes" },
	{ "0301000007000000" "0500000000000000" "7b2261223a317d", 0,
	    "malformed frame: bad header" },
	{ "0401000007000000" "0500000001000000" "7b2261223a317d", 0,
	    "malformed frame: bad header" },
	{ "0401000007000000" "ffffffff00000000" "7b2261223a317d", 0,
	    "malformed frame: bad header" },
	{ "0301000007000000" "0000000000000000" "7b2261223a317d", 1,
	    "wrong fd count" },
	{ "03010000070000", 0, "malformed frame: truncated header" },
	/* two messages in a batch: from 5 {"a":1}, from 6 1 */
	{ "0501000018000000" "0200000000000000"
	    "0500000007000000" "7b2261223a317d" "0600000001000000" "31", 0,
	    NULL },
	{ "0501000018000000" "0300000000000000"
	    "0500000007000000" "7b2261223a317d" "0600000001000000" "31", 0,
	    "malformed frame: fewer messages than it says" },
	{ "0501000018000000" "0100000000000000"
	    "0500000007000000" "7b2261223a317d" "0600000001000000" "31", 0,
	    "malformed frame: bytes after its messages" },
	{ "0501000018000000" "0200000000000000"
	    "0500000007000000" "7b2261223a317d" "0600000002000000" "31", 0,
	    "malformed frame: bad message in a batch" },
	{ "0501000009000000" "0000000000000000" "0500000000000000" "31", 0,
	    "malformed frame: bad header" },
	{ "0501000009000000" "0100000000000000" "0500000000000000" "31", 0,
	    "malformed frame: bad message in a batch" },
};

START_TEST(test_msg_frame_parse)
{
	struct nc_ipc_frame	 f;
	const char		*why;
	char			 buf[128];
	size_t			 len, i;
	unsigned int		 byte;
	int			 rc;

	len = strlen(msg_frames[_i].hex) / 2;
	for (i = 0; i < len; i++) {
		ck_assert_int_eq(sscanf(msg_frames[_i].hex + 2 * i, "%2x",
		    &byte), 1);
		buf[i] = (char)byte;
	}
	rc = nc_ipc_frame_parse(buf, len, msg_frames[_i].nfds, false, &f,
	    &why);
	if (msg_frames[_i].reason == NULL) {
		ck_assert_msg(rc == 0, "refused: %s", why);
		ck_assert_uint_eq(f.len, len - NC_IPC_FRAME_HEADER);
		ck_assert_ptr_eq(f.payload, buf + NC_IPC_FRAME_HEADER);
		if (f.kind == NC_IPC_FRAME_MESSAGES) {
			size_t		 off = 0, l;
			const char	*t;
			int		 from;

			ck_assert_uint_eq(f.n, 2);
			ck_assert_int_eq(nc_ipc_frame_next(&f, &off, &from, &t,
			    &l), 1);
			ck_assert_int_eq(from, 5);
			ck_assert_uint_eq(l, 7);
			ck_assert(memcmp(t, "{\"a\":1}", 7) == 0);
			ck_assert_int_eq(nc_ipc_frame_next(&f, &off, &from, &t,
			    &l), 1);
			ck_assert_int_eq(from, 6);
			ck_assert_uint_eq(l, 1);
			ck_assert_int_eq(*t, '1');
			ck_assert_int_eq(nc_ipc_frame_next(&f, &off, &from, &t,
			    &l), 0);
		} else if (f.kind == NC_IPC_FRAME_MESSAGE) {
			ck_assert_int_eq(f.from, 5);
			ck_assert_uint_eq(f.flags, 0);
		} else {
			ck_assert_int_eq(f.kind, NC_IPC_FRAME_BROADCAST);
			ck_assert_int_eq(f.from, 0);
		}
	} else {
		ck_assert_int_eq(rc, -1);
		ck_assert_msg(strncmp(why, msg_frames[_i].reason,
		    strlen(msg_frames[_i].reason)) == 0, "%s", why);
	}
}
END_TEST

/* The largest payload fits, one byte more does not. */
START_TEST(test_msg_frame_sizes)
{
	struct nc_ipc_frame	 f;
	const char		*why;
	char			*buf;
	uint32_t		 len;

	buf = calloc(1, NC_IPC_FRAME_HEADER + NC_IPC_MSG_MAX + 1);
	ck_assert_ptr_nonnull(buf);
	buf[0] = NC_IPC_FRAME_BROADCAST;
	buf[1] = NC_IPC_MSG_VERSION;
	len = htole32(NC_IPC_MSG_MAX);
	memcpy(buf + 4, &len, sizeof len);
	ck_assert_int_eq(nc_ipc_frame_parse(buf, NC_IPC_FRAME_HEADER +
	    NC_IPC_MSG_MAX, 0, false, &f, &why), 0);
	ck_assert_uint_eq(f.len, NC_IPC_MSG_MAX);
	len = htole32(NC_IPC_MSG_MAX + 1);
	memcpy(buf + 4, &len, sizeof len);
	ck_assert_int_eq(nc_ipc_frame_parse(buf, NC_IPC_FRAME_HEADER +
	    NC_IPC_MSG_MAX + 1, 0, false, &f, &why), -1);
	ck_assert_str_eq(why, "malformed frame: payload of 65001 bytes "
	    "(1 to 65000)");
	free(buf);
}
END_TEST

/* Message frames as a receiver keeps them: the payloads copied. */
struct mrx {
	int		 n;
	int		 from[8];
	unsigned	 flags[8];
	char		*payload[8];
	size_t		 len[8];
	char		*last;		/* the last payload */
	bool		 terminated;	/* every payload had its NUL */
};

static void
mrx_frame(struct nc_ipc *ipc, const struct nc_ipc_frame *f, int *fds,
    size_t nfds, void *arg)
{
	struct mrx	*x = arg;

	(void)ipc;
	close_all(fds, nfds);
	ck_assert(f->kind == NC_IPC_FRAME_MESSAGE ||
	    f->kind == NC_IPC_FRAME_BROADCAST);
	if (f->payload[f->len] != '\0')
		x->terminated = false;
	free(x->last);
	x->last = strndup(f->payload, f->len);
	if (x->n < 8) {
		x->from[x->n] = f->from;
		x->flags[x->n] = f->flags;
		x->payload[x->n] = strndup(f->payload, f->len);
		x->len[x->n] = f->len;
	}
	x->n++;
}

static void
mrx_clear(struct mrx *x)
{
	int	i;

	for (i = 0; i < x->n && i < 8; i++)
		free(x->payload[i]);
	free(x->last);
	memset(x, 0, sizeof *x);
	x->terminated = true;
}

/*
 * One message frame to three channels: the two with nothing queued send
 * it at once, the third queues it behind what waits there (its reader
 * comes late); all three get the same bytes, in order. A broadcast frame
 * carries its flags.
 */
START_TEST(test_msg_frames_shared)
{
	struct event_base	*base;
	struct nc_ipc		*a[3], *b[3];
	struct nc_ipc_shared	 sh;
	struct mrx		 x[3];
	struct frx		 unused;
	char			*payload;
	int			 sv[3][2], before, i, filler = 0;
	size_t			 len = 40000;

	before = fd_count();
	base = event_base_new();
	memset(&unused, 0, sizeof unused);
	payload = malloc(len + 1);
	ck_assert_ptr_nonnull(payload);
	payload[0] = '"';
	memset(payload + 1, 'y', len - 2);
	payload[len - 1] = '"';
	payload[len] = '\0';
	memset(x, 0, sizeof x);
	for (i = 0; i < 3; i++) {
		mrx_clear(&x[i]);
		ck_assert_int_eq(nc_ipc_socketpair(sv[i]), 0);
		a[i] = nc_ipc_new(base, sv[i][0], frx_msg, frx_error, &unused);
		b[i] = NULL;
		if (i < 2) {
			b[i] = nc_ipc_new(base, sv[i][1], frx_msg, frx_error,
			    &x[i]);
			nc_ipc_set_frame_cb(b[i], mrx_frame);
		}
	}
	/* The third's kernel buffer full: what follows waits in its queue. */
	while (nc_ipc_queued(a[2]) == 0 && filler < 10000) {
		ck_assert_int_eq(nc_ipc_send_broadcast(a[2], "0", 1, 0), 0);
		filler++;
	}
	nc_ipc_message_init(&sh, 42, payload, len);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(nc_ipc_send_shared(a[i], &sh), 0);
	ck_assert_int_eq(nc_ipc_send_shared(a[0], &sh), 0);
	nc_ipc_shared_release(&sh);
	ck_assert_uint_eq(nc_ipc_queued(a[2]), 2);
	ck_assert_int_eq(nc_ipc_send_broadcast(a[1], "[1]", 3,
	    NC_IPC_MSG_DRAINING), 0);
	ck_assert_int_eq(nc_ipc_send_broadcast(a[1], "", 0, 0), -1);
	ck_assert_int_eq(nc_ipc_send_broadcast(a[1], "1", 1, 2), -1);
	b[2] = nc_ipc_new(base, sv[2][1], frx_msg, frx_error, &x[2]);
	nc_ipc_set_frame_cb(b[2], mrx_frame);
	ck_assert(run_until_count(base, &x[0].n, 2, 2000));
	ck_assert(run_until_count(base, &x[1].n, 2, 2000));
	ck_assert(run_until_count(base, &x[2].n, filler + 1, 5000));
	for (i = 0; i < 2; i++) {
		ck_assert(x[i].terminated);
		ck_assert_int_eq(x[i].from[0], 42);
		ck_assert_uint_eq(x[i].len[0], len);
		ck_assert_str_eq(x[i].payload[0], payload);
	}
	ck_assert(x[2].terminated);
	ck_assert_str_eq(x[2].payload[0], "0");
	ck_assert_str_eq(x[2].last, payload);
	ck_assert_str_eq(x[0].payload[1], payload);
	ck_assert_str_eq(x[1].payload[1], "[1]");
	ck_assert_uint_eq(x[1].flags[1], NC_IPC_MSG_DRAINING);
	for (i = 0; i < 3; i++) {
		mrx_clear(&x[i]);
		nc_ipc_free(a[i]);
		nc_ipc_free(b[i]);
	}
	free(payload);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

/*
 * A shared frame queued on a channel that does not read: copied once,
 * kept until the channel sent it or was freed, the caller's release
 * notwithstanding.
 */
START_TEST(test_msg_frames_queued)
{
	struct event_base	*base;
	struct nc_ipc		*a, *b;
	struct nc_ipc_shared	 sh;
	struct mrx		 x;
	struct frx		 unused;
	char			 payload[4096];
	int			 sv[2], before, i, sent = 0;

	before = fd_count();
	base = event_base_new();
	memset(&unused, 0, sizeof unused);
	memset(&x, 0, sizeof x);
	mrx_clear(&x);
	memset(payload, '1', sizeof payload);
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	a = nc_ipc_new(base, sv[0], frx_msg, frx_error, &unused);
	/* Fill the kernel's buffer: the rest is queued. */
	for (i = 0; i < 2000 && nc_ipc_queued(a) == 0; i++) {
		nc_ipc_message_init(&sh, 1, payload, sizeof payload);
		ck_assert_int_eq(nc_ipc_send_shared(a, &sh), 0);
		nc_ipc_shared_release(&sh);
		sent++;
	}
	ck_assert_uint_eq(nc_ipc_queued(a), 1);
	ck_assert_uint_eq(nc_ipc_queued_bytes(a), NC_IPC_FRAME_HEADER +
	    sizeof payload);
	/* Changed after the release: the queued copy is not. */
	memset(payload, '2', sizeof payload);
	b = nc_ipc_new(base, sv[1], frx_msg, frx_error, &x);
	nc_ipc_set_frame_cb(b, mrx_frame);
	for (i = 0; i < 5000 && nc_ipc_queued(a) > 0; i++)
		run_for(base, 1);
	ck_assert_uint_eq(nc_ipc_queued(a), 0);
	ck_assert_int_gt(x.n, 0);
	mrx_clear(&x);
	nc_ipc_free(a);
	nc_ipc_free(b);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
	ck_assert_int_gt(sent, 1);
}
END_TEST

/* Message frames counted by packet and by message, senders in order. */
struct fbx {
	int	n, msgs;
	int	from[16];
};

static void
fbx_frame(struct nc_ipc *ipc, const struct nc_ipc_frame *f, int *fds,
    size_t nfds, void *arg)
{
	struct fbx	*x = arg;
	const char	*t;
	size_t		 off = 0, len;
	int		 from;

	(void)ipc;
	close_all(fds, nfds);
	x->n++;
	while (nc_ipc_frame_next(f, &off, &from, &t, &len) == 1)
		x->from[x->msgs++ % 16] = from;
}

/*
 * Behind a queue, messages join one messages frame, counted one each:
 * one packet for the reader, in order; a large one goes alone after it,
 * and the batch after that is a new one.
 */
START_TEST(test_msg_batches)
{
	struct event_base	*base;
	struct nc_ipc		*a, *b;
	struct nc_ipc_shared	 sh;
	struct frx		 unused;
	struct fbx		 x;
	char			 big[5000];
	size_t			 q;
	int			 sv[2], before, i, filler = 0;

	before = fd_count();
	base = event_base_new();
	memset(&unused, 0, sizeof unused);
	memset(&x, 0, sizeof x);
	memset(big, '7', sizeof big);
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	a = nc_ipc_new(base, sv[0], frx_msg, frx_error, &unused);
	/* Nothing queued: it goes alone, at once. */
	ck_assert_int_eq(nc_ipc_send_batched(a, 3, "0", 1, false), 0);
	ck_assert_uint_eq(nc_ipc_queued(a), 0);
	while (nc_ipc_queued(a) == 0 && filler < 10000) {
		nc_ipc_message_init(&sh, 1, "2", 1);
		ck_assert_int_eq(nc_ipc_send_shared(a, &sh), 0);
		nc_ipc_shared_release(&sh);
		filler++;
	}
	q = nc_ipc_queued(a);
	ck_assert_uint_eq(q, 1);
	ck_assert_int_eq(nc_ipc_send_batched(a, 4, "[1]", 3, false), 0);
	ck_assert_int_eq(nc_ipc_send_batched(a, 5, "\"x\"", 3, true), 0);
	ck_assert_int_eq(nc_ipc_send_batched(a, 6, "{}", 2, false), 0);
	ck_assert_uint_eq(nc_ipc_queued(a), q + 3);
	nc_ipc_message_init(&sh, 7, big, sizeof big);
	ck_assert_int_eq(nc_ipc_send_shared(a, &sh), 0);
	nc_ipc_shared_release(&sh);
	ck_assert_int_eq(nc_ipc_send_batched(a, 8, "null", 4, false), 0);
	ck_assert_int_eq(nc_ipc_send_batched(a, 8, "", 0, true), -1);
	ck_assert_uint_eq(nc_ipc_queued(a), q + 5);
	ck_assert_uint_eq(nc_ipc_queued_bytes(a), (NC_IPC_FRAME_HEADER + 1) +
	    (NC_IPC_FRAME_HEADER + 3 * NC_IPC_ENTRY_HEADER + 8) +
	    (NC_IPC_FRAME_HEADER + sizeof big) +
	    (NC_IPC_FRAME_HEADER + NC_IPC_ENTRY_HEADER + 4));
	b = nc_ipc_new(base, sv[1], frx_msg, frx_error, &x);
	nc_ipc_set_frame_cb(b, fbx_frame);
	ck_assert(run_until_count(base, &x.msgs, filler + 6, 5000));
	ck_assert_int_eq(x.n, filler + 4);	/* packets */
	ck_assert_uint_eq(nc_ipc_queued(a), 0);
	ck_assert_uint_eq(nc_ipc_queued_bytes(a), 0);
	/* The last six, in order: the last filler, 4, 5, 6, 7, 8. */
	for (i = 0; i < 6; i++)
		ck_assert_int_eq(x.from[(filler + i) % 16], i == 0 ? 1 : i + 3);
	nc_ipc_free(a);
	nc_ipc_free(b);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

/* Deferred, messages wait for the loop: one packet for all of them. */
START_TEST(test_msg_batches_deferred)
{
	struct event_base	*base;
	struct nc_ipc		*a, *b;
	struct frx		 unused;
	struct fbx		 x;
	int			 sv[2], before;

	before = fd_count();
	base = event_base_new();
	memset(&unused, 0, sizeof unused);
	memset(&x, 0, sizeof x);
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	a = nc_ipc_new(base, sv[0], frx_msg, frx_error, &unused);
	b = nc_ipc_new(base, sv[1], frx_msg, frx_error, &x);
	nc_ipc_set_frame_cb(b, fbx_frame);
	ck_assert_int_eq(nc_ipc_send_batched(a, 2, "1", 1, true), 0);
	ck_assert_int_eq(nc_ipc_send_batched(a, 3, "2", 1, true), 0);
	ck_assert_int_eq(nc_ipc_send_batched(a, 4, "3", 1, true), 0);
	ck_assert_uint_eq(nc_ipc_queued(a), 3);
	ck_assert(run_until_count(base, &x.msgs, 3, 2000));
	ck_assert_int_eq(x.n, 1);
	ck_assert_int_eq(x.from[0], 2);
	ck_assert_int_eq(x.from[2], 4);
	ck_assert_uint_eq(nc_ipc_queued(a), 0);
	nc_ipc_free(a);
	nc_ipc_free(b);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

/* Payloads checked as jansson would, on the fast path or not. */
static const struct {
	const char	*text;
	bool		 valid;
	int		 fast;		/* -1: either */
	bool		 spaced;
} payloads[] = {
	{ "{\"r\":1,\"s\":2,\"p\":\"xxxxxxxxxxxxxxxxxxxxxxx\"}", true, 1,
	    false },
	{ "[1,-0,0.5,-12.25e0]", true, 0, true },
	{ " [true, false, null] ", true, 1, true },
	{ "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\\n\\u00e9\"", true, 1, false },
	{ "{\"a\":{\"a\":1},\"b\":[{\"a\":2}]}", true, 1, false },
	{ "{\"a\":1,\"a\":2}", false, 0, true },
	{ "{\"a\\u0062\":1,\"ab\":2}", false, 0, true },
	{ "{\"a\\u0062\":1,\"ac\":2}", true, 0, true },
	{ "123456789012345678901234567890", false, 0, true },
	{ "1e400", false, 0, true },
	{ "\"\\u0000\"", false, 0, true },
	{ "\"\\ud83d\\ude00\"", true, 0, true },
	{ "\"\\ud800\"", false, 0, true },
	{ "\"\xff\"", false, 0, true },
	{ "\"\xc0\x80\"", false, 0, true },
	{ "\"\xed\xa0\x80\"", false, 0, true },
	{ "\"\xf4\x90\x80\x80\"", false, 0, true },
	{ "\"a\tb\"", false, 0, true },
	{ "{\"r\":", false, 0, true },
	{ "[1,]", false, 0, true },
	{ "01", false, 0, true },
	{ "1.", false, 0, true },
	{ "-", false, 0, true },
	{ "truex", false, 0, true },
	{ "[1] [2]", false, 0, true },
	{ "", false, 0, true },
	{ "\"x\\q\"", false, 0, true },
};

START_TEST(test_json_check)
{
	const char	*text = payloads[_i].text, *why = NULL;
	bool		 spaced = !payloads[_i].spaced;
	json_t		*v;

	v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
	ck_assert_msg((v != NULL) == payloads[_i].valid, "jansson: %s", text);
	json_decref(v);
	if (payloads[_i].fast != -1)
		ck_assert_int_eq(nc_ipc_json_fast(text, strlen(text), &spaced),
		    payloads[_i].fast);
	spaced = !payloads[_i].spaced;
	ck_assert_int_eq(nc_ipc_json_check(text, strlen(text), &why,
	    &spaced), payloads[_i].valid ? 0 : -1);
	if (payloads[_i].valid)
		ck_assert(spaced == payloads[_i].spaced);
	else
		ck_assert(why != NULL && why[0] != '\0');
}
END_TEST

/* A long string on the fast path: any byte that ends a run is seen. */
START_TEST(test_json_check_long)
{
	char	*buf;
	size_t	 len = 65000, i;

	buf = malloc(len + 1);
	ck_assert_ptr_nonnull(buf);
	for (i = 1; i < len - 1; i += 997) {
		memset(buf, 'x', len);
		buf[0] = '"';
		buf[len - 1] = '"';
		buf[len] = '\0';
		ck_assert_int_eq(nc_ipc_json_fast(buf, len, NULL), 1);
		buf[i] = '"';
		ck_assert_int_eq(nc_ipc_json_check(buf, len, NULL, NULL), -1);
		buf[i] = '\x01';
		ck_assert_int_eq(nc_ipc_json_check(buf, len, NULL, NULL), -1);
		buf[i] = '\xff';
		ck_assert_int_eq(nc_ipc_json_check(buf, len, NULL, NULL), -1);
		buf[i] = '\\';	/* \x, or an escaped closing quote */
		ck_assert_int_eq(nc_ipc_json_check(buf, len, NULL, NULL), -1);
	}
	free(buf);
}
END_TEST

START_TEST(test_oversized)
{
	struct event_base	*base;
	struct nc_ipc		*a, *b;
	struct rx		 rx, unused;
	int			 sv[2], sndbuf = 1 << 20, before;
	char			*big;
	json_t			*m;

	before = fd_count();
	base = event_base_new();
	memset(&rx, 0, sizeof rx);
	memset(&unused, 0, sizeof unused);
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
	a = nc_ipc_new(base, sv[0], rx_msg, rx_error, &unused);
	b = nc_ipc_new(base, sv[1], rx_msg, rx_error, &rx);

	/* The sender refuses to build one. */
	big = malloc(NC_IPC_MAX_SIZE + 10);
	memset(big, 'x', NC_IPC_MAX_SIZE + 9);
	big[NC_IPC_MAX_SIZE + 9] = '\0';
	m = json_pack("{s:s, s:s}", "type", "big", "data", big);
	ck_assert_int_eq(nc_ipc_send(a, m, NULL, 0), -1);
	json_decref(m);

	/* A raw one is a protocol error at the receiver. */
	send_raw(sv[0], big, NC_IPC_MAX_SIZE + 9, 0, -1);
	ck_assert(run_until(base, &rx.failed, 2000));
	ck_assert_str_eq(rx.reason, "oversized message");
	free(big);
	nc_ipc_free(a);
	nc_ipc_free(b);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

START_TEST(test_queue_and_free_close_fds)
{
	struct event_base	*base;
	struct nc_ipc		*a;
	struct rx		 unused;
	int			 sv[2], p[2], before;
	json_t			*m;

	before = fd_count();
	base = event_base_new();
	memset(&unused, 0, sizeof unused);
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	a = nc_ipc_new(base, sv[0], rx_msg, rx_error, &unused);
	ck_assert_int_eq(pipe(p), 0);
	/* The peer never reads; what is queued dies with the channel. */
	m = json_pack("{s:s}", "type", "x");
	while (nc_ipc_send(a, m, NULL, 0) != -1 && fd_count() < 1000)
		json_object_del(m, "seq");
	json_object_del(m, "seq");
	/* A failed send closes the fds it was given. */
	ck_assert_int_eq(nc_ipc_send(a, m, p, 2), -1);
	json_decref(m);
	nc_ipc_free(a);
	close(sv[1]);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

/*
 * A peer sends a packet, then exits with ours unread: Linux reports
 * ECONNRESET once, to the next read (before that packet) or write. The
 * packet is delivered, then the end ("closed"): read through the loop
 * after the reset, and with nc_ipc_drain() after a write that got it.
 */
START_TEST(test_last_words_after_reset)
{
	static const char	 last[] = "{\"type\": \"conn.ack\", \"seq\": 7}";
	struct event_base	*base;
	struct nc_ipc		*b;
	struct rx		 rx;
	int			 sv[2], before, drain;
	json_t			*m;

	before = fd_count();
	base = event_base_new();
	for (drain = 0; drain < 2; drain++) {
		memset(&rx, 0, sizeof rx);
		ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
		b = nc_ipc_new(base, sv[1], rx_msg, rx_error, &rx);
		ck_assert(send(sv[0], last, sizeof last - 1, 0) ==
		    (ssize_t)(sizeof last - 1));
		m = json_pack("{s:s}", "type", "conn");
		ck_assert_int_ge(nc_ipc_send(b, m, NULL, 0), 1);
		close(sv[0]);		/* with "conn" unread: a reset */
		if (drain) {
			/* The write is told of the reset: no failure either. */
			json_object_del(m, "seq");
			(void)nc_ipc_send(b, m, NULL, 0);
		}
		json_decref(m);
		ck_assert_int_eq(rx.failed, 0);
		if (drain)
			nc_ipc_drain(b, 16);
		else
			ck_assert(run_until(base, &rx.failed, 2000));
		ck_assert_int_eq(rx.nmsgs, 1);
		ck_assert_str_eq(json_string_value(json_object_get(rx.msgs[0],
		    "type")), "conn.ack");
		ck_assert_int_eq(rx.failed, 1);
		ck_assert_str_eq(rx.reason, "closed");
		nc_ipc_free(b);
		rx_clear(&rx);
	}
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

/* nc_ipc_send_now: in the kernel at once, or not sent (never queued). */
START_TEST(test_send_now)
{
	struct event_base	*base;
	struct nc_ipc		*a;
	struct rx		 unused;
	int			 sv[2], before, n;
	json_t			*m;

	before = fd_count();
	base = event_base_new();
	memset(&unused, 0, sizeof unused);
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	a = nc_ipc_new(base, sv[0], rx_msg, rx_error, &unused);
	m = json_pack("{s:s}", "type", "conn.ack");
	/* The peer never reads: the kernel fills, then send_now says no. */
	for (n = 0; n < 100000 && nc_ipc_send_now(a, m) != -1; n++)
		json_object_del(m, "seq");
	ck_assert_int_gt(n, 0);
	ck_assert_int_lt(n, 100000);
	/* Nothing was queued: a plain send now queues, and send_now waits. */
	json_object_del(m, "seq");
	ck_assert_int_ge(nc_ipc_send(a, m, NULL, 0), 1);
	json_object_del(m, "seq");
	ck_assert_int_eq(nc_ipc_send_now(a, m), -1);
	json_decref(m);
	nc_ipc_free(a);
	close(sv[1]);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

/*
 * Flow control: messages written once as text, the value of a message
 * taken as it came, a reader that pauses, and the marks of a queue.
 */

/* Counts what arrives, checks its order, keeps the last one. */
struct seen {
	int		 n;
	long long	 last_seq;
	int		 out_of_order;
	json_t		*last;
	int		 pause_after;	/* pause the channel after so many */
	const char	*key;		/* nc_ipc_last_value() of this key */
	char		 value[256];
	int		 has_value;
	int		 lows;
	void		*low_arg;
};

static void
seen_msg(struct nc_ipc *ipc, json_t *msg, int *fds, size_t nfds, void *arg)
{
	struct seen	*sn = arg;
	long long	 seq = json_integer_value(json_object_get(msg, "seq"));
	const char	*v;
	size_t		 vlen = 0;

	close_all(fds, nfds);
	if (sn->n > 0 && seq != sn->last_seq + 1)
		sn->out_of_order++;
	sn->last_seq = seq;
	sn->n++;
	if (sn->key != NULL) {
		v = nc_ipc_last_value(ipc, msg, sn->key, &vlen);
		sn->has_value = v != NULL;
		if (v != NULL && vlen < sizeof sn->value) {
			memcpy(sn->value, v, vlen);
			sn->value[vlen] = '\0';
		}
	}
	json_decref(sn->last);
	sn->last = msg;
	if (sn->pause_after > 0 && sn->n == sn->pause_after)
		nc_ipc_pause(ipc, true);
}

static void
seen_error(struct nc_ipc *ipc, const char *reason, void *arg)
{
	(void)ipc;
	(void)reason;
	(void)arg;
}

static void
seen_low(struct nc_ipc *ipc, void *arg)
{
	struct seen	*sn = arg;

	(void)ipc;
	sn->lows++;
	sn->low_arg = arg;
}

/* Sends msgs of about size bytes until queued() reaches want: the peer
 * does not read, the kernel is full. */
static void
fill_queue(struct nc_ipc *a, size_t size, size_t want)
{
	json_t	*m;
	char	*pad;
	int	 i;

	pad = malloc(size + 1);
	memset(pad, 'p', size);
	pad[size] = '\0';
	m = json_pack("{s:s, s:s}", "type", "fill", "pad", pad);
	for (i = 0; i < 100000 && nc_ipc_queued(a) < want; i++) {
		json_object_del(m, "seq");
		ck_assert_int_ge(nc_ipc_send(a, m, NULL, 0), 1);
	}
	ck_assert_uint_ge(nc_ipc_queued(a), want);
	json_decref(m);
	free(pad);
}

START_TEST(test_send_text)
{
	static const char	 body[] = "{\"type\":\"message\",\"from\":3,"
	    "\"message\":{\"a\":[1,2]}}";
	static const char	*refused[] = { "[1,2]", "\"text\"", "7", "", "{",
	    "{}", " {\"type\":\"x\"}" };
	struct event_base	*base;
	struct nc_ipc		*a, *b;
	struct seen		 sn, unused;
	int			 sv[2], before, sndbuf = 1 << 20;
	size_t			 i, len;
	json_t			*m, *v;
	long long		 s0;
	char			*big, *p;

	before = fd_count();
	base = event_base_new();
	memset(&sn, 0, sizeof sn);
	memset(&unused, 0, sizeof unused);
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
	a = nc_ipc_new(base, sv[0], seen_msg, seen_error, &unused);
	b = nc_ipc_new(base, sv[1], seen_msg, seen_error, &sn);

	/* One seq for both kinds of send. */
	m = json_pack("{s:s}", "type", "hello");
	s0 = nc_ipc_send(a, m, NULL, 0);
	ck_assert_int_ge(s0, 1);
	ck_assert_int_eq(nc_ipc_send_text(a, body, sizeof body - 1), s0 + 1);
	json_object_del(m, "seq");
	ck_assert_int_eq(nc_ipc_send(a, m, NULL, 0), s0 + 2);
	ck_assert(run_until_count(base, &sn.n, 2, 2000));
	/* The peer got the body with "seq" added, and nothing else. */
	ck_assert_int_eq(sn.n, 2);
	v = json_loads(body, 0, NULL);
	ck_assert_ptr_nonnull(v);
	json_object_set_new(v, "seq", json_integer(s0 + 1));
	ck_assert_msg(json_equal(sn.last, v), "got %s",
	    json_dumps(sn.last, JSON_COMPACT));
	json_decref(v);
	ck_assert(run_until_count(base, &sn.n, 3, 2000));

	/* Not an object: refused, and no seq is spent on it. */
	for (i = 0; i < sizeof refused / sizeof refused[0]; i++)
		ck_assert_msg(nc_ipc_send_text(a, refused[i],
		    strlen(refused[i])) == -1, "%s", refused[i]);

	/*
	 * The largest body that fits, once "seq" is added, goes; a byte
	 * more does not.
	 */
	big = malloc(NC_IPC_MAX_SIZE + 64);
	len = (size_t)NC_IPC_MAX_SIZE - strlen("\"seq\":,") -
	    (size_t)snprintf(NULL, 0, "%lld", s0 + 3);
	p = big + sprintf(big, "{\"type\":\"big\",\"pad\":\"");
	memset(p, 'x', len - (size_t)(p - big) - 2);
	memcpy(big + len - 2, "\"}", 2);
	ck_assert_int_eq(nc_ipc_send_text(a, big, len), s0 + 3);
	p = big + sprintf(big, "{\"type\":\"big\",\"pad\":\"");
	memset(p, 'x', len + 1 - (size_t)(p - big) - 2);
	memcpy(big + len + 1 - 2, "\"}", 2);
	ck_assert_int_eq(nc_ipc_send_text(a, big, len + 1), -1);
	free(big);
	ck_assert_int_eq(nc_ipc_send_text(a, body, sizeof body - 1), s0 + 4);
	ck_assert(run_until_count(base, &sn.n, 5, 2000));
	ck_assert_int_eq(sn.out_of_order, 0);
	ck_assert_int_eq(sn.last_seq, s0 + 4);
	json_decref(m);
	json_decref(sn.last);
	json_decref(unused.last);
	nc_ipc_free(a);
	nc_ipc_free(b);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

/* Packets as a peer may write them, and what nc_ipc_last_value() says. */
static const struct {
	const char	*data;
	const char	*value;		/* NULL: none */
} last_values[] = {
	{ "{\"seq\":1,\"type\":\"message\",\"from\":3,"
	    "\"message\":{\"a\":[1, 2]}}", "{\"a\":[1, 2]}" },
	/* Every kind of plain scalar before it. */
	{ "{\"seq\":1,\"type\":\"m\",\"t\":true,\"f\":false,\"z\":null,"
	    "\"x\":-1.5e3,\"s\":\"{[,:}\",\"message\":[{\"k\":\"}\"}]}",
	    "[{\"k\":\"}\"}]" },
	/* The value itself may be anything, escapes included. */
	{ "{\"seq\":1,\"type\":\"m\",\"message\":\"a\\\"b\\u00e9\"}",
	    "\"a\\\"b\\u00e9\"" },
	{ "{\"seq\":1,\"type\":\"m\",\"message\":null}", "null" },
	{ "{\"seq\":1,\"type\":\"message\",\"messages\":2,\"message\":3}", "3" },
	/* Not last. */
	{ "{\"seq\":1,\"type\":\"m\",\"message\":1,\"from\":3}", NULL },
	{ "{\"seq\":1,\"message\":{\"a\":1},\"type\":\"m\"}", NULL },
	/* An object, an array, an escaped string before it. */
	{ "{\"seq\":1,\"o\":{},\"type\":\"m\",\"message\":1}", NULL },
	{ "{\"seq\":1,\"type\":\"m\",\"o\":{\"a\":1},\"message\":1}", NULL },
	{ "{\"seq\":1,\"type\":\"m\",\"a\":[1],\"message\":1}", NULL },
	{ "{\"seq\":1,\"type\":\"m\",\"s\":\"a\\\"b\",\"message\":1}", NULL },
	{ "{\"seq\":1,\"type\":\"m\",\"s\":\"\\u0041\",\"message\":1}", NULL },
	{ "{\"seq\":1,\"type\":\"m\",\"k\\u0041\":1,\"message\":1}", NULL },
	/* Absent. */
	{ "{\"seq\":1,\"type\":\"m\",\"from\":3}", NULL },
	{ "{\"seq\":1,\"type\":\"m\",\"messages\":3}", NULL },
	{ "{\"seq\":1,\"type\":\"message\"}", NULL },
};

START_TEST(test_last_value)
{
	struct event_base	*base;
	struct nc_ipc		*b;
	struct seen		 sn;
	int			 sv[2];

	base = event_base_new();
	memset(&sn, 0, sizeof sn);
	sn.key = "message";
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	b = nc_ipc_new(base, sv[1], seen_msg, seen_error, &sn);
	send_raw(sv[0], last_values[_i].data, strlen(last_values[_i].data),
	    0, -1);
	ck_assert(run_until_count(base, &sn.n, 1, 2000));
	if (last_values[_i].value == NULL)
		ck_assert_msg(!sn.has_value, "%s gave %s",
		    last_values[_i].data, sn.value);
	else {
		ck_assert_msg(sn.has_value, "%s gave none",
		    last_values[_i].data);
		ck_assert_str_eq(sn.value, last_values[_i].value);
	}
	json_decref(sn.last);
	nc_ipc_free(b);
	close(sv[0]);
	event_base_free(base);
}
END_TEST

/* What nc_ipc_send_text() wrote is taken back whole by the receiver. */
START_TEST(test_last_value_of_send_text)
{
	static const char	 body[] = "{\"type\":\"message\",\"from\":3,"
	    "\"service\":\"s\",\"message\":{\"a\":[1, 2],\"b\":\"\\n\"}}";
	struct event_base	*base;
	struct nc_ipc		*a, *b;
	struct seen		 sn, unused;
	int			 sv[2];

	base = event_base_new();
	memset(&sn, 0, sizeof sn);
	memset(&unused, 0, sizeof unused);
	sn.key = "message";
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	a = nc_ipc_new(base, sv[0], seen_msg, seen_error, &unused);
	b = nc_ipc_new(base, sv[1], seen_msg, seen_error, &sn);
	ck_assert_int_ge(nc_ipc_send_text(a, body, sizeof body - 1), 1);
	ck_assert(run_until_count(base, &sn.n, 1, 2000));
	ck_assert(sn.has_value);
	ck_assert_str_eq(sn.value, "{\"a\":[1, 2],\"b\":\"\\n\"}");
	/* Only the key asked for. */
	sn.key = "from";
	ck_assert_int_ge(nc_ipc_send_text(a, body, sizeof body - 1), 1);
	ck_assert(run_until_count(base, &sn.n, 2, 2000));
	ck_assert(!sn.has_value);
	json_decref(sn.last);
	nc_ipc_free(a);
	nc_ipc_free(b);
	event_base_free(base);
}
END_TEST

/*
 * A paused channel delivers nothing, also when it is paused from its
 * message callback; after resume everything comes, in order.
 */
START_TEST(test_pause)
{
	struct event_base	*base;
	struct nc_ipc		*a, *b;
	struct seen		 sn, unused;
	int			 sv[2], i, before;
	json_t			*m;

	before = fd_count();
	base = event_base_new();
	memset(&sn, 0, sizeof sn);
	memset(&unused, 0, sizeof unused);
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	a = nc_ipc_new(base, sv[0], seen_msg, seen_error, &unused);
	b = nc_ipc_new(base, sv[1], seen_msg, seen_error, &sn);
	nc_ipc_pause(b, true);
	nc_ipc_pause(b, true);		/* twice is once */
	m = json_pack("{s:s}", "type", "x");
	for (i = 0; i < 20; i++) {
		json_object_del(m, "seq");
		ck_assert_int_eq(nc_ipc_send(a, m, NULL, 0), i + 1);
	}
	ck_assert_uint_eq(nc_ipc_queued(a), 0);	/* in the kernel */
	run_for(base, 200);
	ck_assert_int_eq(sn.n, 0);
	ck_assert(!nc_ipc_reading(b));

	/* Resumed, it pauses itself after the 5th. */
	sn.pause_after = 5;
	nc_ipc_pause(b, false);
	nc_ipc_pause(b, false);
	ck_assert(nc_ipc_reading(b));
	ck_assert(run_until_count(base, &sn.n, 5, 2000));
	run_for(base, 200);
	ck_assert_int_eq(sn.n, 5);

	/* Then the rest, in order, and what comes later. */
	nc_ipc_pause(b, false);
	ck_assert(run_until_count(base, &sn.n, 20, 2000));
	json_object_del(m, "seq");
	ck_assert_int_eq(nc_ipc_send(a, m, NULL, 0), 21);
	ck_assert(run_until_count(base, &sn.n, 21, 2000));
	ck_assert_int_eq(sn.out_of_order, 0);
	ck_assert_int_eq(sn.last_seq, 21);
	json_decref(m);
	json_decref(sn.last);
	nc_ipc_free(a);
	nc_ipc_free(b);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

/*
 * The low callback: once per time the queue went above the marks and
 * came back to them, with the channel's arg; never for a queue that
 * stayed at or below them.
 */
START_TEST(test_low_cb)
{
	struct event_base	*base;
	struct nc_ipc		*a, *b;
	struct seen		 sn, peer;
	int			 sv[2], i, before;
	json_t			*m;

	before = fd_count();
	base = event_base_new();
	memset(&sn, 0, sizeof sn);
	memset(&peer, 0, sizeof peer);
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	a = nc_ipc_new(base, sv[0], seen_msg, seen_error, &sn);
	b = nc_ipc_new(base, sv[1], seen_msg, seen_error, &peer);
	nc_ipc_set_low_cb(a, 8 * 1024, 4, seen_low);

	/* A reader that keeps up: the queue never goes above. */
	m = json_pack("{s:s}", "type", "x");
	for (i = 0; i < 50; i++) {
		json_object_del(m, "seq");
		ck_assert_int_ge(nc_ipc_send(a, m, NULL, 0), 1);
		run_for(base, 0);
	}
	ck_assert(run_until_count(base, &peer.n, 50, 2000));
	run_for(base, 100);
	ck_assert_int_eq(sn.lows, 0);

	/* The reader stops: above the marks (both), then back. */
	nc_ipc_pause(b, true);
	fill_queue(a, 1000, 20);
	ck_assert_uint_gt(nc_ipc_queued_bytes(a), 8 * 1024);
	run_for(base, 100);
	ck_assert_int_eq(sn.lows, 0);
	nc_ipc_pause(b, false);
	ck_assert(run_until_count(base, &sn.lows, 1, 5000));
	ck_assert_uint_le(nc_ipc_queued(a), 4);
	ck_assert_uint_le(nc_ipc_queued_bytes(a), 8 * 1024);
	ck_assert_ptr_eq(sn.low_arg, &sn);
	/* Down to empty, and more that goes through: no second call. */
	for (i = 0; i < 5000 && nc_ipc_queued(a) > 0; i++)
		run_for(base, 1);
	ck_assert_uint_eq(nc_ipc_queued(a), 0);
	for (i = 0; i < 10; i++) {
		json_object_del(m, "seq");
		ck_assert_int_ge(nc_ipc_send(a, m, NULL, 0), 1);
	}
	run_for(base, 100);
	ck_assert_int_eq(sn.lows, 1);

	/* Above the packets mark only (few bytes): called again. */
	nc_ipc_pause(b, true);
	fill_queue(a, 10, 10);
	ck_assert_uint_le(nc_ipc_queued_bytes(a), 8 * 1024);
	nc_ipc_pause(b, false);
	ck_assert(run_until_count(base, &sn.lows, 2, 5000));
	run_for(base, 100);
	ck_assert_int_eq(sn.lows, 2);

	/* Marks set while above: called once it is back. */
	nc_ipc_set_low_cb(a, 0, 0, NULL);
	nc_ipc_pause(b, true);
	fill_queue(a, 10, 10);
	nc_ipc_set_low_cb(a, 8 * 1024, 4, seen_low);
	nc_ipc_pause(b, false);
	ck_assert(run_until_count(base, &sn.lows, 3, 5000));
	run_for(base, 100);
	ck_assert_int_eq(sn.lows, 3);
	ck_assert_int_eq(peer.out_of_order, 0);

	json_decref(m);
	json_decref(peer.last);
	nc_ipc_free(a);
	nc_ipc_free(b);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

/*
 * How long the peer has not taken a packet: 0 with nothing queued; it
 * grows while the peer does not read, and starts again when it does.
 */
START_TEST(test_idle_ms)
{
	struct event_base	*base;
	struct nc_ipc		*a;
	struct seen		 sn;
	char			 buf[NC_IPC_MAX_SIZE];
	int			 sv[2], i, before;
	long			 idle1, idle2, idle3;
	size_t			 q;
	json_t			*m;

	before = fd_count();
	base = event_base_new();
	memset(&sn, 0, sizeof sn);
	ck_assert_int_eq(nc_ipc_socketpair(sv), 0);
	a = nc_ipc_new(base, sv[0], seen_msg, seen_error, &sn);
	ck_assert_int_eq(nc_ipc_idle_ms(a), 0);
	/* The kernel takes these: still nothing queued, so 0. */
	m = json_pack("{s:s}", "type", "x");
	for (i = 0; i < 3; i++) {
		json_object_del(m, "seq");
		ck_assert_int_ge(nc_ipc_send(a, m, NULL, 0), 1);
	}
	json_decref(m);
	ck_assert_uint_eq(nc_ipc_queued(a), 0);
	run_for(base, 100);
	ck_assert_int_eq(nc_ipc_idle_ms(a), 0);

	/* The peer (sv[1]) does not read. */
	fill_queue(a, 1000, 3);
	run_for(base, 150);
	idle1 = nc_ipc_idle_ms(a);
	ck_assert_int_ge(idle1, 140);
	run_for(base, 150);
	idle2 = nc_ipc_idle_ms(a);
	ck_assert_int_ge(idle2, idle1 + 140);

	/* It reads some: the kernel takes more, idle starts again. */
	q = nc_ipc_queued(a);
	for (i = 0; i < 2000 && nc_ipc_queued(a) == q; i++) {
		(void)recv(sv[1], buf, sizeof buf, MSG_DONTWAIT);
		run_for(base, 1);
	}
	ck_assert_uint_lt(nc_ipc_queued(a), q);
	idle3 = nc_ipc_idle_ms(a);
	ck_assert_int_lt(idle3, idle2);

	/* It reads everything: nothing queued, 0. */
	for (i = 0; i < 5000 && nc_ipc_queued(a) > 0; i++) {
		while (recv(sv[1], buf, sizeof buf, MSG_DONTWAIT) > 0)
			;
		run_for(base, 1);
	}
	ck_assert_uint_eq(nc_ipc_queued(a), 0);
	ck_assert_int_eq(nc_ipc_idle_ms(a), 0);
	nc_ipc_free(a);
	close(sv[1]);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), before);
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("ipc");
	TCase	*tc = tcase_create("core");

	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_messages_and_fds_arrive);
	tcase_add_loop_test(tc, test_bad_packets_are_protocol_errors, 0,
	    sizeof bad_packets / sizeof bad_packets[0]);
	tcase_add_test(tc, test_oversized);
	tcase_add_test(tc, test_frames);
	tcase_add_test(tc, test_frame_unexpected);
	tcase_add_loop_test(tc, test_frame_parse, 0,
	    sizeof frames / sizeof frames[0]);
	tcase_add_loop_test(tc, test_msg_frame_parse, 0,
	    sizeof msg_frames / sizeof msg_frames[0]);
	tcase_add_test(tc, test_msg_frame_sizes);
	tcase_add_test(tc, test_msg_frames_shared);
	tcase_add_test(tc, test_msg_frames_queued);
	tcase_add_test(tc, test_msg_batches);
	tcase_add_test(tc, test_msg_batches_deferred);
	tcase_add_loop_test(tc, test_json_check, 0,
	    sizeof payloads / sizeof payloads[0]);
	tcase_add_test(tc, test_json_check_long);
	tcase_add_test(tc, test_queue_and_free_close_fds);
	tcase_add_test(tc, test_last_words_after_reset);
	tcase_add_test(tc, test_send_now);
	tcase_add_test(tc, test_send_text);
	tcase_add_loop_test(tc, test_last_value, 0,
	    sizeof last_values / sizeof last_values[0]);
	tcase_add_test(tc, test_last_value_of_send_text);
	tcase_add_test(tc, test_pause);
	tcase_add_test(tc, test_low_cb);
	tcase_add_test(tc, test_idle_ms);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
