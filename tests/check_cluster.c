/*
 * The worker side of the cluster API (a program linked with the library
 * and run by netclusterd): the environment probe, nc_cluster_broadcast,
 * MESSAGE and DISCONNECT, `count`, listens through the master (shared,
 * exclusive, round-robin), `stop` as Node's worker.disconnect(), and what
 * keeps nc_run() going. Each test plays the master on the other end of a
 * SOCK_SEQPACKET pair, reading and writing raw JSON packets.
 *
 * The library probes the environment once per process: every test runs in
 * a process of its own (check's fork mode, as run_suite() sets it).
 */

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "helpers.h"
#include "nc-cluster.h"
#include "nc-int.h"
#include "nc-ipc.h"

/*
 * The worker's end of the channel, moved to a number of its own as
 * netclusterd moves it (at 10 or the first free fd above: the test may
 * have inherited fds).
 */
static int			 CHAN_FD = -1;
#define MAX_GOT		64
#define MAX_MSGS	16

static struct event_base	*base;
static int			 fds_before;

/* The fake master: its end of the channel and what it received. */
static int			 mfd = -1;
static struct event		*mev;
static json_t			*got[MAX_GOT];
static int			 gotfd[MAX_GOT];
static int			 ngot;		/* kept in got[] */
static int			 nrecv;		/* every packet */
static int			 master_eof;
static int			 closes_at_eof = -1;
/* Broadcasts of integers 0, 1, 2... are they in order? (counted only) */
static bool			 check_ints;
static int			 next_int;
static bool			 ints_in_order;
static long long		 last_seq;
static bool			 seqs_grow;

/* The program: its listeners' records. */
static char			*msgs[MAX_MSGS];
static size_t			 msg_lens[MAX_MSGS];
static int			 msg_from[MAX_MSGS];
static int			 nmsgs;
static bool			 msg_emitter_null;
static int			 disconnects;
static bool			 disconnect_emitter_null;
static int			 listening_at_disconnect = -1;
static struct nc_server		*srv;
static int			 connections, listenings, closes, errors;
static int			 last_error;

static void
setup(void)
{
	fds_before = fd_count();
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	mfd = -1;
	mev = NULL;
	ngot = nrecv = master_eof = 0;
	closes_at_eof = -1;
	check_ints = false;
	next_int = 0;
	ints_in_order = seqs_grow = true;
	last_seq = -1;
	nmsgs = 0;
	msg_emitter_null = true;
	disconnects = 0;
	disconnect_emitter_null = true;
	listening_at_disconnect = -1;
	srv = NULL;
	connections = listenings = closes = errors = last_error = 0;
	unsetenv("NETCLUSTER_CHANNEL_FD");
	unsetenv("NETCLUSTER_WORKER_ID");
	unsetenv("NETCLUSTER_SERVICE");
}

static void
master_stop_reading(void)
{
	if (mev != NULL) {
		event_free(mev);
		mev = NULL;
	}
}

static void
teardown(void)
{
	int	i;

	master_stop_reading();
	for (i = 0; i < ngot; i++) {
		json_decref(got[i]);
		if (gotfd[i] != -1)
			close(gotfd[i]);
	}
	ngot = 0;
	for (i = 0; i < nmsgs; i++)
		free(msgs[i]);
	nmsgs = 0;
	/* The library's end of the channel, if it is still open. */
	nc_cluster_detach();
	if (mfd != -1)
		close(mfd);
	mfd = -1;
	/* Everything the test made has closed: the loop runs down. */
	ck_assert_int_eq(nc_run(base), 0);
	event_base_free(base);
	ck_assert_int_eq(fd_count(), fds_before);
}

/*
 * The process becomes a worker as netclusterd starts one: its end of a
 * SOCK_SEQPACKET pair at CHAN_FD, id 7, service "svc". Nothing is probed
 * yet: the library looks at the environment on first use.
 */
static void
worker_env(void)
{
	int	sv[2];
	char	s[16];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0,
	    sv), 0);
	CHAN_FD = fcntl(sv[1], F_DUPFD, 10);
	ck_assert_int_ge(CHAN_FD, 10);
	close(sv[1]);
	mfd = sv[0];
	snprintf(s, sizeof s, "%d", CHAN_FD);
	ck_assert_int_eq(setenv("NETCLUSTER_CHANNEL_FD", s, 1), 0);
	ck_assert_int_eq(setenv("NETCLUSTER_WORKER_ID", "7", 1), 0);
	ck_assert_int_eq(setenv("NETCLUSTER_SERVICE", "svc", 1), 0);
}

static const char *
str_of(json_t *msg, const char *key)
{
	const char	*v = json_string_value(json_object_get(msg, key));

	return v != NULL ? v : "";
}

/* One packet from the worker: 1, 0 when none is waiting, -1 at EOF. */
static int
master_read_one(void)
{
	char		 buf[NC_IPC_MAX_SIZE + 1];
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * NC_IPC_MAX_FDS)];
	} cbuf;
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	json_error_t	 jerr;
	json_t		*msg, *v;
	ssize_t		 len;
	int		 fd = -1, n, i, x;

	memset(&mh, 0, sizeof mh);
	iov.iov_base = buf;
	iov.iov_len = sizeof buf;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf.buf;
	mh.msg_controllen = sizeof cbuf.buf;
	len = recvmsg(mfd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (len == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 0;
	ck_assert_msg(len != -1, "master: recvmsg: %s", strerror(errno));
	for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (i = 0; i < n; i++) {
			memcpy(&x, CMSG_DATA(cm) + i * sizeof(int), sizeof x);
			if (fd == -1)
				fd = x;
			else
				close(x);	/* no worker message has two */
		}
	}
	if (len == 0 && fd == -1) {
		if (!master_eof)
			closes_at_eof = closes;
		master_eof = 1;
		return -1;
	}
	ck_assert_msg(!(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)),
	    "master: a truncated packet");
	if (buf[0] == NC_IPC_FRAME_CONN || buf[0] == NC_IPC_FRAME_CONN_ACK) {
		struct nc_ipc_frame	 f;
		const char		*why;

		/* A frame, kept as JSON for the tests to read. */
		ck_assert_msg(nc_ipc_frame_parse(buf, (size_t)len,
		    fd == -1 ? 0 : 1, false, &f, &why) == 0, "master: bad "
		    "frame: %s", why);
		ck_assert_int_eq(f.kind, NC_IPC_FRAME_CONN_ACK);
		msg = json_pack("{s:s, s:I, s:I, s:I}", "type", "conn.ack frame",
		    "ack", (json_int_t)f.seq, "n", (json_int_t)f.n, "accepted",
		    (json_int_t)f.accepted);
		ck_assert_ptr_nonnull(msg);
		nrecv++;
		if (ngot < MAX_GOT) {
			got[ngot] = msg;
			gotfd[ngot++] = fd;
		} else
			json_decref(msg);
		return 1;
	}
	msg = json_loadb(buf, (size_t)len, JSON_REJECT_DUPLICATES, &jerr);
	ck_assert_msg(msg != NULL, "master: not JSON: %s", jerr.text);
	ck_assert(json_is_object(msg));
	ck_assert(json_is_string(json_object_get(msg, "type")));
	ck_assert(json_is_integer(json_object_get(msg, "seq")));
	/* One counter per sender, growing. */
	if (json_integer_value(json_object_get(msg, "seq")) <= last_seq)
		seqs_grow = false;
	last_seq = json_integer_value(json_object_get(msg, "seq"));
	nrecv++;
	if (check_ints && strcmp(str_of(msg, "type"), "broadcast") == 0) {
		v = json_object_get(msg, "message");
		if (!json_is_integer(v) || json_integer_value(v) != next_int)
			ints_in_order = false;
		next_int++;
		/* Counted, not kept: there are thousands. */
		json_decref(msg);
		if (fd != -1)
			close(fd);
		return 1;
	}
	if (ngot < MAX_GOT) {
		got[ngot] = msg;
		gotfd[ngot++] = fd;
	} else {
		json_decref(msg);
		if (fd != -1)
			close(fd);
	}
	return 1;
}

/* Reads what is waiting, without waiting. */
static void
master_read_all(void)
{
	while (master_read_one() == 1)
		;
}

static void
master_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	master_read_all();
	if (master_eof)
		(void)event_del(mev);
}

/* The master reads as the loop runs (this keeps the loop alive). */
static void
master_start_reading(void)
{
	ck_assert_ptr_null(mev);
	mev = event_new(base, mfd, EV_READ | EV_PERSIST, master_cb, NULL);
	ck_assert_ptr_nonnull(mev);
	ck_assert_int_eq(event_add(mev, NULL), 0);
}

/* Waits (bounded) for the master's packet number i (0-based). */
static json_t *
master_wait(int i)
{
	ck_assert_msg(run_until_count(base, &ngot, i + 1, 5000),
	    "the master got %d packets, not %d", ngot, i + 1);
	return got[i];
}

static const char *
str(json_t *msg, const char *key)
{
	return json_string_value(json_object_get(msg, key));
}

static long long
num(json_t *msg, const char *key)
{
	json_t	*v = json_object_get(msg, key);

	ck_assert_msg(json_is_integer(v), "\"%s\" is not an integer", key);
	return json_integer_value(v);
}

/* Sends msg (and fd, when not -1) to the worker; takes msg. */
static void
master_send(json_t *msg, int fd)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int))];
	} cbuf;
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	char		*text;

	ck_assert_ptr_nonnull(msg);
	if (fd != -1)
		ck_assert_int_eq(json_object_set_new(msg, "fds",
		    json_integer(1)), 0);
	text = json_dumps(msg, JSON_COMPACT);
	ck_assert_ptr_nonnull(text);
	json_decref(msg);
	memset(&mh, 0, sizeof mh);
	iov.iov_base = text;
	iov.iov_len = strlen(text);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (fd != -1) {
		memset(&cbuf, 0, sizeof cbuf);
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	}
	ck_assert_int_eq(sendmsg(mfd, &mh, MSG_NOSIGNAL),
	    (ssize_t)strlen(text));
	free(text);
}

/* Answers the `listen` in got[i] with listen.result. */
static void
answer_listen(int i, const char *mode, long long listener, int fd, int port)
{
	char	address[64];

	snprintf(address, sizeof address, "127.0.0.1:%d", port);
	master_send(json_pack("{s:s, s:i, s:I, s:i, s:s, s:I, s:s, s:i}",
	    "type", "listen.result", "seq", i + 100, "ack",
	    (json_int_t)num(got[i], "seq"), "error", 0, "mode", mode,
	    "listener", (json_int_t)listener, "address", address, "port",
	    port), fd);
}

/* A conn frame for n connections: listener ids, the fds that go. */
static void
master_send_frame(long long seq, const uint32_t *ids, size_t n,
    const int *fds, size_t nfds)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(sizeof(int) * NC_IPC_MAX_FDS)];
	} cbuf;
	char		 buf[NC_IPC_FRAME_HEADER + 4 * NC_IPC_MAX_FDS];
	struct msghdr	 mh;
	struct iovec	 iov;
	struct cmsghdr	*cm;
	uint64_t	 s = htole64((uint64_t)seq);
	uint32_t	 zero = 0, id;
	uint16_t	 n16 = htole16((uint16_t)n);
	size_t		 len = NC_IPC_FRAME_HEADER + 4 * n, i;

	buf[0] = NC_IPC_FRAME_CONN;
	buf[1] = NC_IPC_FRAME_VERSION;
	memcpy(buf + 2, &n16, 2);
	memcpy(buf + 4, &zero, 4);
	memcpy(buf + 8, &s, 8);
	for (i = 0; i < n; i++) {
		id = htole32(ids[i]);
		memcpy(buf + NC_IPC_FRAME_HEADER + 4 * i, &id, 4);
	}
	memset(&mh, 0, sizeof mh);
	iov.iov_base = buf;
	iov.iov_len = len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (nfds > 0) {
		memset(&cbuf, 0, sizeof cbuf);
		mh.msg_control = cbuf.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	ck_assert_int_eq(sendmsg(mfd, &mh, MSG_NOSIGNAL), (ssize_t)len);
}

/* A text packet as it is, for the packets easiest to read as written. */
static void
master_send_text(const char *text)
{
	ck_assert_int_eq(send(mfd, text, strlen(text), MSG_NOSIGNAL),
	    (ssize_t)strlen(text));
}

/* A TCP socket bound to 127.0.0.1:0 and listening; its port in *port. */
static int
listening_socket(int *port)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof sin;
	int			fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ne(fd, -1);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	ck_assert_int_eq(listen(fd, 16), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

/* A blocking connect to 127.0.0.1:port (loopback: done at once). */
static int
connect_to(int port)
{
	struct sockaddr_in	sin;
	int			fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ne(fd, -1);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	return fd;
}

static void
on_message(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	if (emitter != NULL)
		msg_emitter_null = false;
	ck_assert_int_eq(ev->event, NC_EV_MESSAGE);
	ck_assert_ptr_nonnull(ev->data);
	ck_assert_uint_eq(strlen(ev->data), ev->len);
	if (nmsgs < MAX_MSGS) {
		msgs[nmsgs] = strdup(ev->data);
		ck_assert_ptr_nonnull(msgs[nmsgs]);
		msg_lens[nmsgs] = ev->len;
		msg_from[nmsgs++] = ev->from;
	}
}

/* A MESSAGE listener that removes itself. */
static void
on_message_once(void *emitter, const struct nc_event_args *ev, void *arg)
{
	on_message(emitter, ev, arg);
	ck_assert_int_eq(nc_cluster_off(NC_EV_MESSAGE, on_message_once, arg),
	    0);
}

static void
on_disconnect(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	if (emitter != NULL)
		disconnect_emitter_null = false;
	ck_assert_int_eq(ev->event, NC_EV_DISCONNECT);
	disconnects++;
	if (srv != NULL)
		listening_at_disconnect = nc_server_listening(srv);
}

/* A DISCONNECT listener with last words for the master. */
static void
on_disconnect_say_bye(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	ck_assert_int_eq(nc_cluster_broadcast("\"bye\"", 0), 0);
}

static void
on_connection(void *server, const struct nc_event_args *ev, void *arg)
{
	(void)server;
	(void)ev;
	(void)arg;
	connections++;
}

static void
on_listening(void *server, const struct nc_event_args *ev, void *arg)
{
	(void)server;
	(void)ev;
	(void)arg;
	listenings++;
}

static void
on_close(void *server, const struct nc_event_args *ev, void *arg)
{
	(void)server;
	(void)ev;
	(void)arg;
	closes++;
}

static void
on_error(void *server, const struct nc_event_args *ev, void *arg)
{
	(void)server;
	(void)arg;
	errors++;
	if (ev->error != NULL)
		last_error = ev->error->code;
}

static struct nc_server *
server_new(void)
{
	struct nc_server_options	 o;
	struct nc_server		*s;

	memset(&o, 0, sizeof o);
	o.base = base;
	s = nc_create_server(&o, on_connection, NULL);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(nc_server_on(s, NC_EV_LISTENING, on_listening, NULL),
	    0);
	ck_assert_int_eq(nc_server_on(s, NC_EV_CLOSE, on_close, NULL), 0);
	ck_assert_int_eq(nc_server_on(s, NC_EV_ERROR, on_error, NULL), 0);
	return s;
}

/* Waits (bounded) until the master sees the end of the channel. */
static void
master_wait_eof(void)
{
	ck_assert_msg(run_until(base, &master_eof, 5000),
	    "the channel was not closed");
}

/* --- the environment ------------------------------------------------ */

/*
 * Not a worker: no channel named, or one that is not a SOCK_SEQPACKET
 * socket at fd >= 3. The program runs standalone.
 */
START_TEST(test_not_a_worker)
{
	int	sv[2] = { -1, -1 };
	char	s[16];

	switch (_i) {
	case 0:		/* unset */
		break;
	case 1:
		ck_assert_int_eq(setenv("NETCLUSTER_CHANNEL_FD", "", 1), 0);
		break;
	case 2:
		ck_assert_int_eq(setenv("NETCLUSTER_CHANNEL_FD", "2", 1), 0);
		break;
	case 3:
		ck_assert_int_eq(setenv("NETCLUSTER_CHANNEL_FD", "10x", 1), 0);
		break;
	case 4:		/* nothing open there */
		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv),
		    0);
		snprintf(s, sizeof s, "%d", sv[1]);
		close(sv[0]);
		close(sv[1]);
		sv[0] = sv[1] = -1;
		ck_assert_int_eq(setenv("NETCLUSTER_CHANNEL_FD", s, 1), 0);
		break;
	case 5:		/* a stream socket, not a channel */
		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		snprintf(s, sizeof s, "%d", sv[1]);
		ck_assert_int_eq(setenv("NETCLUSTER_CHANNEL_FD", s, 1), 0);
		break;
	}
	if (_i != 0) {
		ck_assert_int_eq(setenv("NETCLUSTER_WORKER_ID", "7", 1), 0);
		ck_assert_int_eq(setenv("NETCLUSTER_SERVICE", "svc", 1), 0);
	}
	ck_assert(!nc_cluster_is_worker());
	ck_assert_int_eq(nc_cluster_worker_id(), -1);
	ck_assert_ptr_null(nc_cluster_service());
	ck_assert_int_eq(nc_cluster_broadcast("{\"a\":1}", 0),
	    NC_ERR_IPC_CHANNEL_CLOSED);
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_MESSAGE, on_message, NULL),
	    NC_ERR_IPC_CHANNEL_CLOSED);
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_DISCONNECT, on_disconnect,
	    NULL), NC_ERR_IPC_CHANNEL_CLOSED);
	/* Asked again, the answer is the same. */
	ck_assert(!nc_cluster_is_worker());
	if (sv[0] != -1) {
		close(sv[0]);
		close(sv[1]);
	}
}
END_TEST

/* Not a worker, a server binds by itself and nothing asks a master. */
START_TEST(test_not_a_worker_listens_itself)
{
	srv = server_new();
	ck_assert_int_eq(nc_server_listen(srv, 0, "127.0.0.1", 0, NULL, NULL),
	    0);
	ck_assert(run_until(base, &listenings, 5000));
	ck_assert_int_gt(bound_port(srv), 0);
	ck_assert_int_eq(nc_server_close(srv, NULL, NULL), 0);
	ck_assert(run_until(base, &closes, 5000));
	nc_server_release(srv);
}
END_TEST

START_TEST(test_worker_identity)
{
	worker_env();
	ck_assert(nc_cluster_is_worker());
	ck_assert_int_eq(nc_cluster_worker_id(), 7);
	ck_assert_str_eq(nc_cluster_service(), "svc");
	/* The channel is made close-on-exec and non-blocking. */
	ck_assert(fcntl(CHAN_FD, F_GETFD) & FD_CLOEXEC);
	ck_assert(fcntl(CHAN_FD, F_GETFL) & O_NONBLOCK);
	/* Probed once: a changed environment changes nothing. */
	ck_assert_int_eq(setenv("NETCLUSTER_WORKER_ID", "8", 1), 0);
	unsetenv("NETCLUSTER_SERVICE");
	ck_assert_int_eq(nc_cluster_worker_id(), 7);
	ck_assert_str_eq(nc_cluster_service(), "svc");
	/* The channel was never opened: its fd is still ours to close. */
	close(CHAN_FD);
}
END_TEST

/* A worker without (valid) id or service: -1 and NULL. */
START_TEST(test_worker_without_id)
{
	worker_env();
	if (_i == 0) {
		unsetenv("NETCLUSTER_WORKER_ID");
		unsetenv("NETCLUSTER_SERVICE");
	} else {
		ck_assert_int_eq(setenv("NETCLUSTER_WORKER_ID", "0", 1), 0);
		ck_assert_int_eq(setenv("NETCLUSTER_SERVICE", "", 1), 0);
	}
	ck_assert(nc_cluster_is_worker());
	ck_assert_int_eq(nc_cluster_worker_id(), -1);
	ck_assert_ptr_null(nc_cluster_service());
	close(CHAN_FD);
}
END_TEST

/* --- broadcast ------------------------------------------------------- */

START_TEST(test_broadcast)
{
	json_t	*m, *want;

	worker_env();
	/* The channel runs on this test's base. */
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_DISCONNECT, on_disconnect,
	    NULL), 0);
	master_start_reading();
	ck_assert_int_eq(nc_cluster_broadcast("{\"a\": [1, 2]}", 0), 0);
	ck_assert_int_eq(nc_cluster_broadcast("\"x\"", NC_BROADCAST_DRAINING),
	    0);
	ck_assert_int_eq(nc_cluster_broadcast("null", 0), 0);

	m = master_wait(0);
	ck_assert_str_eq(str(m, "type"), "broadcast");
	want = json_pack("{s:[i,i]}", "a", 1, 2);
	ck_assert(json_equal(json_object_get(m, "message"), want));
	json_decref(want);
	ck_assert(json_is_false(json_object_get(m, "draining")));
	ck_assert_ptr_null(json_object_get(m, "fds"));

	m = master_wait(1);
	ck_assert_str_eq(str(m, "type"), "broadcast");
	ck_assert_str_eq(str(m, "message"), "x");
	ck_assert(json_is_true(json_object_get(m, "draining")));

	m = master_wait(2);
	ck_assert(json_is_null(json_object_get(m, "message")));
	ck_assert(json_is_false(json_object_get(m, "draining")));
	ck_assert(seqs_grow);
}
END_TEST

/* Refused broadcasts: nothing reaches the master. */
START_TEST(test_broadcast_refused)
{
	static const char *const bad[] = { "", "{", "[1,]", "{\"a\":1,\"a\":2}",
	    "nope", "1 2", "'x'" };
	size_t	i;

	worker_env();
	/* The channel runs on this test's base. */
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_DISCONNECT, on_disconnect,
	    NULL), 0);
	master_start_reading();
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(nc_cluster_broadcast(bad[i], 0) ==
		    NC_ERR_INVALID_ARG_VALUE, "%s was taken", bad[i]);
	ck_assert_int_eq(nc_cluster_broadcast(NULL, 0),
	    NC_ERR_INVALID_ARG_VALUE);
	ck_assert_int_eq(nc_cluster_broadcast("1", 2),
	    NC_ERR_INVALID_ARG_VALUE);
	ck_assert_int_eq(nc_cluster_broadcast("1", -1),
	    NC_ERR_INVALID_ARG_VALUE);
	ck_assert_int_eq(nc_cluster_broadcast("1",
	    NC_BROADCAST_DRAINING | 0x100), NC_ERR_INVALID_ARG_VALUE);
	/* Then a good one: it is the first the master gets. */
	ck_assert_int_eq(nc_cluster_broadcast("\"last\"", 0), 0);
	ck_assert_str_eq(str(master_wait(0), "message"), "last");
	ck_assert_int_eq(nrecv, 1);
}
END_TEST

/* A string whose compact JSON is len bytes (len >= 2). */
static char *
json_string_of(size_t len)
{
	char	*s = malloc(len + 1);

	ck_assert_ptr_nonnull(s);
	s[0] = '"';
	memset(s + 1, 'a', len - 2);
	s[len - 1] = '"';
	s[len] = '\0';
	return s;
}

START_TEST(test_broadcast_size)
{
	char	*s, *padded;
	size_t	 n;

	worker_env();
	/* The channel runs on this test's base. */
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_DISCONNECT, on_disconnect,
	    NULL), 0);
	master_start_reading();
	s = json_string_of(NC_CLUSTER_MESSAGE_MAX + 1);
	ck_assert_int_eq(nc_cluster_broadcast(s, 0), NC_EMSGSIZE);
	free(s);
	s = json_string_of(NC_CLUSTER_MESSAGE_MAX);
	ck_assert_int_eq(nc_cluster_broadcast(s, NC_BROADCAST_DRAINING), 0);
	free(s);
	/* What counts is the compact JSON, not the text given. */
	n = NC_CLUSTER_MESSAGE_MAX * 2;
	padded = malloc(n + 1);
	ck_assert_ptr_nonnull(padded);
	memset(padded, ' ', n);
	padded[0] = '[';
	padded[n / 2] = '1';
	padded[n - 1] = ']';
	padded[n] = '\0';
	ck_assert_int_eq(nc_cluster_broadcast(padded, 0), 0);
	free(padded);

	/* The largest arrives whole. */
	ck_assert_str_eq(str(master_wait(0), "type"), "broadcast");
	ck_assert_uint_eq(json_string_length(json_object_get(got[0],
	    "message")), NC_CLUSTER_MESSAGE_MAX - 2);
	ck_assert(json_is_true(json_object_get(got[0], "draining")));
	ck_assert_int_eq(json_array_size(json_object_get(master_wait(1),
	    "message")), 1);
	ck_assert_int_eq(nrecv, 2);
}
END_TEST

/*
 * A master that does not read: broadcasts queue up to a bound, then
 * NC_ENOBUFS; the call never blocks. Once the master reads, every queued
 * message arrives in order and broadcasting works again.
 */
START_TEST(test_broadcast_enobufs)
{
	char	buf[32];
	int	i, rc = 0, sent;

	worker_env();
	check_ints = true;
	/* Opens the channel on this base: its writes run on this loop. */
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_DISCONNECT, on_disconnect,
	    NULL), 0);
	for (i = 0; i < 100000; i++) {
		snprintf(buf, sizeof buf, "%d", i);
		if ((rc = nc_cluster_broadcast(buf, 0)) != 0)
			break;
	}
	ck_assert_int_eq(rc, NC_ENOBUFS);
	sent = i;
	ck_assert_int_gt(sent, NC_IPC_MAX_QUEUE / 2);
	ck_assert_int_eq(nc_cluster_broadcast("0", 0), NC_ENOBUFS);

	master_start_reading();
	ck_assert_msg(run_until_count(base, &nrecv, sent, 10000),
	    "%d of %d arrived", nrecv, sent);
	ck_assert(ints_in_order);
	ck_assert(seqs_grow);
	snprintf(buf, sizeof buf, "%d", sent);
	ck_assert_int_eq(nc_cluster_broadcast(buf, 0), 0);
	ck_assert(run_until_count(base, &nrecv, sent + 1, 5000));
	ck_assert(ints_in_order);
	ck_assert_int_eq(disconnects, 0);
	ck_assert_int_eq(ngot, 0);
}
END_TEST

/*
 * Broadcasts that fill the queue to the master leave room for the
 * library's own answers: a `count` and a `conn` that come while the
 * queue is full are still answered (the master would report the worker
 * missing, and keep the connection in flight until the worker dies).
 */
START_TEST(test_broadcast_full_queue_still_answers)
{
	json_t	*m;
	char	 buf[32];
	int	 i, rc = 0, sent, lfd, port, client, server_side;

	worker_env();
	check_ints = true;
	master_start_reading();
	srv = server_new();
	ck_assert_int_eq(nc_server_listen(srv, 8080, "127.0.0.1", 0, NULL,
	    NULL), 0);
	master_wait(0);
	answer_listen(0, "round-robin", 5, -1, 8080);
	ck_assert(run_until(base, &listenings, 5000));
	ck_assert_str_eq(str(master_wait(1), "type"), "listening");
	/* The master stops reading; the program broadcasts until refused. */
	master_stop_reading();
	for (i = 0; i < 100000; i++) {
		snprintf(buf, sizeof buf, "%d", i);
		if ((rc = nc_cluster_broadcast(buf, 0)) != 0)
			break;
	}
	ck_assert_int_eq(rc, NC_ENOBUFS);
	sent = i;

	/* A count and a connection come meanwhile. */
	lfd = listening_socket(&port);
	client = connect_to(port);
	server_side = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ne(server_side, -1);
	close(lfd);
	master_send_text("{\"type\":\"count\",\"seq\":20}");
	master_send(json_pack("{s:s, s:i, s:i}", "type", "conn", "seq", 21,
	    "listener", 5), server_side);
	close(server_side);
	/* The worker reads both (they are waiting: no wait needed). */
	for (i = 0; i < 10; i++)
		ck_assert_int_ge(event_base_loop(base, EVLOOP_NONBLOCK), 0);

	/* The master reads again: every broadcast, then both answers. */
	master_start_reading();
	ck_assert_msg(run_until_count(base, &ngot, 4, 10000),
	    "%d broadcasts of %d arrived, and %d answers of 2", next_int,
	    sent, ngot - 2);
	ck_assert_int_eq(next_int, sent);
	ck_assert(ints_in_order);
	m = got[2];
	ck_assert_str_eq(str(m, "type"), "count.reply");
	ck_assert_int_eq(num(m, "ack"), 20);
	m = got[3];
	ck_assert_str_eq(str(m, "type"), "conn.ack");
	ck_assert_int_eq(num(m, "ack"), 21);
	/* It could not be said at once: refused, the master re-routes it. */
	ck_assert(json_is_false(json_object_get(m, "accepted")));
	ck_assert_int_eq(connections, 0);
	close(client);
	ck_assert_int_eq(nc_server_close(srv, NULL, NULL), 0);
	ck_assert(run_until(base, &closes, 5000));
	nc_server_release(srv);
}
END_TEST

/*
 * Round-robin connections as frames: the worker said it reads them in its
 * `listen`; one frame brings several, one ack frame answers for all: bit
 * i for the i-th fd, taken up to maxConnections counting the ones taken
 * before it in the same frame; one for a listener it does not serve is
 * refused. Only the taken ones are served.
 */
START_TEST(test_conn_frames)
{
	json_t		*m;
	uint32_t	 ids[4] = { 5, 5, 9, 5 };
	int		 lfd, port, clients[4], sfds[4], i;

	worker_env();
	master_start_reading();
	srv = server_new();
	ck_assert_int_eq(nc_server_set_max_connections(srv, 2), 0);
	ck_assert_int_eq(nc_server_listen(srv, 8080, "127.0.0.1", 0, NULL,
	    NULL), 0);
	m = master_wait(0);
	ck_assert_str_eq(str(m, "type"), "listen");
	ck_assert_int_eq(num(m, "frames"), NC_IPC_FRAME_VERSION);
	answer_listen(0, "round-robin", 5, -1, 8080);
	ck_assert(run_until(base, &listenings, 5000));
	ck_assert_str_eq(str(master_wait(1), "type"), "listening");

	lfd = listening_socket(&port);
	for (i = 0; i < 4; i++) {
		clients[i] = connect_to(port);
		sfds[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		ck_assert_int_ne(sfds[i], -1);
	}
	close(lfd);
	master_send_frame(31, ids, 4, sfds, 4);
	m = master_wait(2);
	ck_assert_str_eq(str(m, "type"), "conn.ack frame");
	ck_assert_int_eq(num(m, "ack"), 31);
	ck_assert_int_eq(num(m, "n"), 4);
	/* 1st and 2nd taken; 3rd: listener 9 is not its; 4th: full. */
	ck_assert_int_eq(num(m, "accepted"), 0x3);
	ck_assert(run_until_count(base, &connections, 2, 5000));
	for (i = 0; i < 4; i++) {
		close(clients[i]);
		close(sfds[i]);
	}
	ck_assert_int_eq(nc_server_close(srv, NULL, NULL), 0);
	ck_assert(run_until(base, &closes, 5000));
	ck_assert_int_eq(connections, 2);
	nc_server_release(srv);
}
END_TEST

/* --- message ----------------------------------------------------------- */

START_TEST(test_message)
{
	json_t	*r;

	worker_env();
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_MESSAGE, on_message, NULL),
	    0);
	master_start_reading();
	master_send_text("{\"type\":\"message\",\"seq\":1,\"from\":3,"
	    "\"message\":{\"a\":[1,2]}}");
	/* From the operator (netclusterctl send): from 0. */
	master_send_text("{\"type\":\"message\",\"seq\":2,\"from\":0,"
	    "\"message\":\"hi\",\"service\":\"svc\"}");
	master_send_text("{\"type\":\"message\",\"seq\":3,\"from\":12,"
	    "\"message\":[ true, null, 1.5, {\"k\" : \"v\"} ]}");
	master_send_text("{\"type\":\"message\",\"seq\":4,\"from\":5,"
	    "\"message\":42}");
	/* The value not last: written out again, compact. */
	master_send_text("{\"type\":\"message\",\"seq\":5,"
	    "\"message\":[ 1, 2 ],\"from\":6}");
	ck_assert(run_until_count(base, &nmsgs, 5, 5000));
	ck_assert_str_eq(msgs[0], "{\"a\":[1,2]}");
	ck_assert_uint_eq(msg_lens[0], strlen("{\"a\":[1,2]}"));
	ck_assert_int_eq(msg_from[0], 3);
	ck_assert_str_eq(msgs[1], "\"hi\"");
	ck_assert_uint_eq(msg_lens[1], 4);
	ck_assert_int_eq(msg_from[1], 0);
	/* The value last, as the master writes it: its text as it came. */
	ck_assert_str_eq(msgs[2], "[ true, null, 1.5, {\"k\" : \"v\"} ]");
	ck_assert_int_eq(msg_from[2], 12);
	ck_assert_str_eq(msgs[3], "42");
	ck_assert_int_eq(msg_from[3], 5);
	ck_assert_str_eq(msgs[4], "[1,2]");
	ck_assert_uint_eq(msg_lens[4], 5);
	ck_assert_int_eq(msg_from[4], 6);
	ck_assert(msg_emitter_null);

	/*
	 * Removed, the listener hears nothing more: the count.reply after
	 * the next message shows the message was read.
	 */
	ck_assert_int_eq(nc_cluster_off(NC_EV_MESSAGE, on_message, NULL), 0);
	master_send_text("{\"type\":\"message\",\"seq\":6,\"from\":3,"
	    "\"message\":1}");
	master_send_text("{\"type\":\"count\",\"seq\":7}");
	r = master_wait(0);
	ck_assert_str_eq(str(r, "type"), "count.reply");
	ck_assert_int_eq(num(r, "ack"), 7);
	ck_assert_int_eq(nmsgs, 5);
}
END_TEST

/* Many messages, one listener added twice: each call, in order. */
START_TEST(test_messages_in_order)
{
	char	text[128], want[16];
	int	i, n = 40;

	worker_env();
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_MESSAGE, on_message_once,
	    NULL), 0);
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_MESSAGE, on_message, NULL),
	    0);
	for (i = 0; i < n; i++) {
		snprintf(text, sizeof text, "{\"type\":\"message\",\"seq\":%d,"
		    "\"from\":%d,\"message\":%d}", i + 1, i % 3 + 1, i);
		master_send_text(text);
	}
	/* The once listener took the first only; MAX_MSGS are recorded. */
	ck_assert(run_until_count(base, &nmsgs, MAX_MSGS, 5000));
	ck_assert_str_eq(msgs[0], "0");
	ck_assert_str_eq(msgs[1], "0");
	for (i = 2; i < MAX_MSGS; i++) {
		snprintf(want, sizeof want, "%d", i - 1);
		ck_assert_str_eq(msgs[i], want);
		ck_assert_int_eq(msg_from[i], (i - 1) % 3 + 1);
	}
}
END_TEST

/* --- count ------------------------------------------------------------- */

START_TEST(test_count)
{
	json_t	*r, *want;

	worker_env();
	/* Bad arguments are refused before anything opens the channel. */
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_CLOSE, on_disconnect, NULL),
	    NC_ERR_INVALID_ARG_VALUE);
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_MESSAGE, NULL, NULL),
	    NC_ERR_MISSING_ARGS);
	ck_assert_int_eq(nc_cluster_off(NC_EV_DATA, on_message, NULL),
	    NC_ERR_INVALID_ARG_VALUE);
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_DISCONNECT, on_disconnect,
	    NULL), 0);
	master_start_reading();
	master_send_text("{\"type\":\"count\",\"seq\":5}");
	r = master_wait(0);
	ck_assert_str_eq(str(r, "type"), "count.reply");
	ck_assert_int_eq(num(r, "ack"), 5);
	ck_assert_int_eq(num(r, "count"), 0);
	ck_assert_int_eq(num(r, "accepted"), 0);
	want = json_pack("{s:i}", "svc", 0);
	ck_assert(json_equal(json_object_get(r, "services"), want));
	json_decref(want);
	/* The counters the master sums, for the one service: no upstreams. */
	want = json_pack("{s:{s:i, s:i}}", "svc", "accepted", 0,
	    "proxy_header_errors", 0);
	ck_assert(json_equal(json_object_get(r, "stats"), want));
	json_decref(want);
	ck_assert_ptr_null(json_object_get(r, "upstreams_down"));
	ck_assert_int_eq(disconnects, 0);
}
END_TEST

/*
 * The stats of count.reply are cumulative: a connection taken stays in
 * "accepted" after it closed, and a refused PROXY header is counted in
 * "proxy_header_errors", not in "accepted".
 */
START_TEST(test_count_stats)
{
	struct nc_server_options	 o;
	json_t				*m, *want;
	const char			*good = "PROXY TCP4 192.0.2.1 "
					    "192.0.2.2 1234 80\r\n";
	const char			*bad = "GET / HTTP/1.0\r\n\r\n";
	int				 lfd, port, c1, c2, i;

	worker_env();
	master_start_reading();
	memset(&o, 0, sizeof o);
	o.base = base;
	o.proxy_protocol = true;
	srv = nc_create_server(&o, on_connection, NULL);
	ck_assert_ptr_nonnull(srv);
	ck_assert_int_eq(nc_server_on(srv, NC_EV_LISTENING, on_listening,
	    NULL), 0);
	ck_assert_int_eq(nc_server_on(srv, NC_EV_CLOSE, on_close, NULL), 0);
	ck_assert_int_eq(nc_server_listen(srv, 0, "127.0.0.1", 0, NULL, NULL),
	    0);
	ck_assert_str_eq(str(master_wait(0), "type"), "listen");
	lfd = listening_socket(&port);
	answer_listen(0, "shared", 42, lfd, port);
	close(lfd);
	ck_assert(run_until(base, &listenings, 5000));
	ck_assert_str_eq(str(master_wait(1), "type"), "listening");

	c1 = connect_to(port);
	ck_assert_int_eq(write(c1, good, strlen(good)), (ssize_t)strlen(good));
	ck_assert(run_until(base, &connections, 5000));
	c2 = connect_to(port);
	ck_assert_int_eq(write(c2, bad, strlen(bad)), (ssize_t)strlen(bad));
	for (i = 0; i < 500 && nc_server_proxy_errors(srv) == 0; i++)
		run_for(base, 10);
	ck_assert_int_eq(nc_server_proxy_errors(srv), 1);
	close(c1);
	close(c2);
	run_for(base, 50);

	master_send_text("{\"type\":\"count\",\"seq\":7}");
	m = master_wait(2);
	ck_assert_str_eq(str(m, "type"), "count.reply");
	ck_assert_int_eq(num(m, "count"), 0);
	ck_assert_int_eq(num(m, "accepted"), 1);
	want = json_pack("{s:{s:i, s:i}}", "svc", "accepted", 1,
	    "proxy_header_errors", 1);
	ck_assert(json_equal(json_object_get(m, "stats"), want));
	json_decref(want);
	ck_assert_int_eq(connections, 1);

	master_send_text("{\"type\":\"stop\",\"seq\":8}");
	master_wait_eof();
	ck_assert_int_eq(closes, 1);
}
END_TEST

/* --- listen and stop ------------------------------------------------- */

/*
 * Shared: the server listens on the master's fd and reports `listening`
 * with the master's listener id; a connection is served; `stop` emits
 * DISCONNECT and closes the server, which emits close once the
 * connection ended, and then the channel closes; nc_run() returns.
 */
START_TEST(test_listen_shared_and_stop)
{
	json_t	*m, *want;
	char	 c;
	int	 lfd, port, client, n;

	worker_env();
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_DISCONNECT, on_disconnect,
	    NULL), 0);
	master_start_reading();
	srv = server_new();
	ck_assert_int_eq(nc_server_listen(srv, 0, "127.0.0.1", 0, NULL, NULL),
	    0);
	m = master_wait(0);
	ck_assert_str_eq(str(m, "type"), "listen");
	ck_assert_str_eq(str(m, "address"), "127.0.0.1:0");
	ck_assert_int_eq(num(m, "backlog"), 511);
	ck_assert_ptr_null(json_object_get(m, "service"));
	ck_assert_int_eq(listenings, 0);	/* not before the answer */

	lfd = listening_socket(&port);
	answer_listen(0, "shared", 42, lfd, port);
	close(lfd);	/* the worker has its own copy */
	ck_assert(run_until(base, &listenings, 5000));
	ck_assert_int_eq(bound_port(srv), port);
	m = master_wait(1);
	ck_assert_str_eq(str(m, "type"), "listening");
	ck_assert_str_eq(str(m, "service"), "svc");
	ck_assert_str_eq(str(m, "address"), "127.0.0.1");
	ck_assert_int_eq(num(m, "port"), port);
	ck_assert_int_eq(num(m, "listener"), 42);

	client = connect_to(port);
	ck_assert(run_until(base, &connections, 5000));
	master_send_text("{\"type\":\"count\",\"seq\":7}");
	m = master_wait(2);
	ck_assert_str_eq(str(m, "type"), "count.reply");
	ck_assert_int_eq(num(m, "ack"), 7);
	ck_assert_int_eq(num(m, "count"), 1);
	ck_assert_int_eq(num(m, "accepted"), 1);
	want = json_pack("{s:i}", "svc", 1);
	ck_assert(json_equal(json_object_get(m, "services"), want));
	json_decref(want);
	want = json_pack("{s:{s:i, s:i}}", "svc", "accepted", 1,
	    "proxy_header_errors", 0);
	ck_assert(json_equal(json_object_get(m, "stats"), want));
	json_decref(want);

	master_send_text("{\"type\":\"stop\",\"seq\":8}");
	ck_assert(run_until(base, &disconnects, 5000));
	ck_assert(disconnect_emitter_null);
	/* The listeners ran before the server was closed. */
	ck_assert_int_eq(listening_at_disconnect, 1);
	ck_assert(!nc_server_listening(srv));
	/* No new connections; the open one keeps the server from `close`. */
	n = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ne(n, -1);
	{
		struct sockaddr_in	sin;

		memset(&sin, 0, sizeof sin);
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin.sin_port = htons((uint16_t)port);
		ck_assert_int_eq(connect(n, (struct sockaddr *)&sin,
		    sizeof sin), -1);
		ck_assert_int_eq(errno, ECONNREFUSED);
	}
	close(n);
	master_send_text("{\"type\":\"count\",\"seq\":9}");
	m = master_wait(3);
	ck_assert_str_eq(str(m, "type"), "count.reply");
	ck_assert_int_eq(num(m, "count"), 1);
	ck_assert_int_eq(closes, 0);
	ck_assert(!master_eof);

	/* The client ends: the connection, the server, then the channel. */
	ck_assert_int_eq(shutdown(client, SHUT_WR), 0);
	master_stop_reading();
	ck_assert_int_eq(nc_run(base), 0);
	ck_assert_int_eq(closes, 1);
	ck_assert_int_eq(disconnects, 1);
	ck_assert_int_eq(errors, 0);
	/* The connection was ended, not reset. */
	ck_assert_int_eq(recv(client, &c, 1, MSG_DONTWAIT), 0);
	close(client);
	/* The master sees the end of the channel, after nothing more. */
	master_read_all();
	ck_assert(master_eof);
	ck_assert_int_eq(ngot, 4);
	ck_assert(seqs_grow);
	/* A worker that stopped has no channel. */
	ck_assert_int_eq(nc_cluster_broadcast("1", 0),
	    NC_ERR_IPC_CHANNEL_CLOSED);
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_MESSAGE, on_message, NULL),
	    NC_ERR_IPC_CHANNEL_CLOSED);
	ck_assert(nc_cluster_is_worker());
	nc_server_release(srv);
}
END_TEST

/* `stop` with a server that has no connection: closed at once. */
START_TEST(test_stop_idle_server)
{
	int	lfd, port;

	worker_env();
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_DISCONNECT, on_disconnect,
	    NULL), 0);
	master_start_reading();
	srv = server_new();
	ck_assert_int_eq(nc_server_listen(srv, 0, "127.0.0.1", 0, NULL, NULL),
	    0);
	master_wait(0);
	lfd = listening_socket(&port);
	answer_listen(0, "shared", 1, lfd, port);
	close(lfd);
	ck_assert_str_eq(str(master_wait(1), "type"), "listening");
	master_send_text("{\"type\":\"stop\",\"seq\":3}");
	master_wait_eof();
	ck_assert_int_eq(disconnects, 1);
	ck_assert_int_eq(closes, 1);
	ck_assert_int_eq(closes_at_eof, 1);	/* close came first */
	master_stop_reading();
	ck_assert_int_eq(nc_run(base), 0);
	ck_assert_int_eq(ngot, 2);
	nc_server_release(srv);
}
END_TEST

/*
 * Exclusive: no fd; the server binds the address it asked for itself and
 * reports its own port.
 */
START_TEST(test_listen_exclusive)
{
	json_t	*m;
	int	 client;

	worker_env();
	master_start_reading();
	srv = server_new();
	ck_assert_int_eq(nc_server_listen(srv, 0, "127.0.0.1", 0, on_listening,
	    NULL), 0);
	m = master_wait(0);
	ck_assert_str_eq(str(m, "address"), "127.0.0.1:0");
	answer_listen(0, "exclusive", 3, -1, 0);
	ck_assert(run_until_count(base, &listenings, 2, 5000));
	ck_assert_int_eq(errors, 0);
	m = master_wait(1);
	ck_assert_str_eq(str(m, "type"), "listening");
	ck_assert_str_eq(str(m, "service"), "svc");
	ck_assert_str_eq(str(m, "address"), "127.0.0.1");
	ck_assert_int_gt(num(m, "port"), 0);
	ck_assert_int_eq(num(m, "port"), bound_port(srv));
	ck_assert_int_eq(num(m, "listener"), 3);

	client = connect_to(bound_port(srv));
	ck_assert(run_until(base, &connections, 5000));
	close(client);
	ck_assert_int_eq(nc_server_close(srv, NULL, NULL), 0);
	ck_assert(run_until(base, &closes, 5000));
	/* Exclusive: nothing to tell the master (no unlisten). */
	master_send_text("{\"type\":\"count\",\"seq\":4}");
	m = master_wait(2);
	ck_assert_str_eq(str(m, "type"), "count.reply");
	ck_assert_int_eq(num(m, "count"), 0);
	ck_assert_int_eq(num(m, "accepted"), 1);
	/* No server left: `stop` closes the channel on a later turn. */
	master_send_text("{\"type\":\"stop\",\"seq\":5}");
	master_wait_eof();
	ck_assert_int_eq(ngot, 3);
	nc_server_release(srv);
}
END_TEST

/*
 * Exclusive, stopped with connections in the socket's backlog: they are
 * taken before the socket closes (closed, it would reset them). A socket
 * the master shares is left alone: its backlog is the others'.
 */
START_TEST(test_exclusive_backlog_taken)
{
	json_t	*m;
	int	 clients[3], i, lfd, port;

	worker_env();
	master_start_reading();
	srv = server_new();
	ck_assert_int_eq(nc_server_listen(srv, 0, "127.0.0.1", 0, NULL,
	    NULL), 0);
	master_wait(0);
	answer_listen(0, "exclusive", 3, -1, 0);
	ck_assert(run_until(base, &listenings, 5000));
	m = master_wait(1);
	ck_assert_str_eq(str(m, "type"), "listening");
	/* Connected in the kernel, not accepted: the loop does not run. */
	for (i = 0; i < 3; i++)
		clients[i] = connect_to(bound_port(srv));
	ck_assert_int_eq(nc_server_connections(srv), 0);
	nc__server_accept_backlog(srv);
	ck_assert_int_eq(nc_server_connections(srv), 3);
	for (i = 0; i < 3; i++)
		close(clients[i]);
	ck_assert_int_eq(nc_server_close(srv, NULL, NULL), 0);
	ck_assert(run_until(base, &closes, 5000));
	nc_server_release(srv);

	/* Shared: the master's socket; nothing taken. */
	lfd = listening_socket(&port);
	srv = server_new();
	ck_assert_int_eq(nc_server_listen(srv, port, "127.0.0.1", 0, NULL,
	    NULL), 0);
	m = master_wait(2);
	ck_assert_str_eq(str(m, "type"), "listen");
	answer_listen(2, "shared", 4, lfd, port);
	ck_assert(run_until_count(base, &listenings, 2, 5000));
	clients[0] = connect_to(port);
	nc__server_accept_backlog(srv);
	ck_assert_int_eq(nc_server_connections(srv), 0);
	close(clients[0]);
	close(lfd);
	ck_assert_int_eq(nc_server_close(srv, NULL, NULL), 0);
	nc_server_release(srv);
}
END_TEST

/*
 * Exclusive, the address in use: the server emits EADDRINUSE; listening
 * again (Node's retry on EADDRINUSE) asks the master again, and the
 * master hears `listening` once, with the id of the answer it listens by.
 */
START_TEST(test_listen_exclusive_retry)
{
	json_t	*m;
	int	 lfd, port;

	worker_env();
	master_start_reading();
	lfd = listening_socket(&port);
	srv = server_new();
	ck_assert_int_eq(nc_server_listen(srv, port, "127.0.0.1", 0, NULL,
	    NULL), 0);
	master_wait(0);
	answer_listen(0, "exclusive", 3, -1, port);
	ck_assert(run_until(base, &errors, 5000));
	ck_assert_int_eq(last_error, NC_EADDRINUSE);
	ck_assert_int_eq(listenings, 0);
	close(lfd);

	ck_assert_int_eq(nc_server_listen(srv, port, "127.0.0.1", 0, NULL,
	    NULL), 0);
	m = master_wait(1);
	ck_assert_str_eq(str(m, "type"), "listen");
	answer_listen(1, "exclusive", 4, -1, port);
	ck_assert(run_until(base, &listenings, 5000));
	m = master_wait(2);
	ck_assert_str_eq(str(m, "type"), "listening");
	ck_assert_int_eq(num(m, "listener"), 4);
	ck_assert_int_eq(num(m, "port"), port);
	/* Nothing else before the count.reply: one report only. */
	master_send_text("{\"type\":\"count\",\"seq\":9}");
	ck_assert_str_eq(str(master_wait(3), "type"), "count.reply");

	master_send_text("{\"type\":\"stop\",\"seq\":10}");
	master_wait_eof();
	ck_assert_int_eq(closes, 1);
	ck_assert_int_eq(closes_at_eof, 1);
	ck_assert_int_eq(ngot, 4);
	ck_assert_int_eq(listenings, 1);
	nc_server_release(srv);
}
END_TEST

/*
 * Round-robin: the master accepts and hands each connection over as
 * `conn`; the worker answers conn.ack before serving it. On stop the
 * server tells the master `unlisten`.
 */
START_TEST(test_listen_round_robin)
{
	json_t	*m;
	int	 lfd, port, client, server_side;

	worker_env();
	master_start_reading();
	srv = server_new();
	ck_assert_int_eq(nc_server_listen(srv, 8080, "127.0.0.1", 0, NULL,
	    NULL), 0);
	m = master_wait(0);
	ck_assert_str_eq(str(m, "address"), "127.0.0.1:8080");
	answer_listen(0, "round-robin", 5, -1, 8080);
	ck_assert(run_until(base, &listenings, 5000));
	m = master_wait(1);
	ck_assert_str_eq(str(m, "type"), "listening");
	ck_assert_int_eq(num(m, "port"), 8080);
	ck_assert_int_eq(num(m, "listener"), 5);
	ck_assert_int_eq(bound_port(srv), 8080);

	/* A connection the master accepted. */
	lfd = listening_socket(&port);
	client = connect_to(port);
	server_side = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	ck_assert_int_ne(server_side, -1);
	close(lfd);
	master_send(json_pack("{s:s, s:i, s:i}", "type", "conn", "seq", 50,
	    "listener", 5), server_side);
	close(server_side);
	m = master_wait(2);
	ck_assert_str_eq(str(m, "type"), "conn.ack");
	ck_assert_int_eq(num(m, "ack"), 50);
	ck_assert(json_is_true(json_object_get(m, "accepted")));
	ck_assert(run_until(base, &connections, 5000));

	/* One for a listener the worker does not have: refused. */
	lfd = listening_socket(&port);
	{
		int	c2 = connect_to(port);
		int	s2 = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

		ck_assert_int_ne(s2, -1);
		master_send(json_pack("{s:s, s:i, s:i}", "type", "conn", "seq",
		    51, "listener", 6), s2);
		close(s2);
		m = master_wait(3);
		ck_assert_str_eq(str(m, "type"), "conn.ack");
		ck_assert_int_eq(num(m, "ack"), 51);
		ck_assert(json_is_false(json_object_get(m, "accepted")));
		close(c2);
	}
	close(lfd);
	ck_assert_int_eq(connections, 1);

	close(client);
	master_send_text("{\"type\":\"stop\",\"seq\":52}");
	master_wait_eof();
	ck_assert_int_eq(closes, 1);
	m = master_wait(4);
	ck_assert_str_eq(str(m, "type"), "unlisten");
	ck_assert_int_eq(num(m, "listener"), 5);
	ck_assert_int_eq(ngot, 5);
	nc_server_release(srv);
}
END_TEST

/* A listen the master refuses: the server emits the error. */
START_TEST(test_listen_refused)
{
	worker_env();
	master_start_reading();
	srv = server_new();
	ck_assert_int_eq(nc_server_listen(srv, 81, "127.0.0.1", 0, NULL, NULL),
	    0);
	master_wait(0);
	master_send(json_pack("{s:s, s:i, s:I, s:i, s:s, s:i, s:s, s:i}",
	    "type", "listen.result", "seq", 1, "ack",
	    (json_int_t)num(got[0], "seq"), "error", NC_EACCES, "mode",
	    "shared", "listener", -1, "address", "", "port", -1), -1);
	ck_assert(run_until(base, &errors, 5000));
	ck_assert_int_eq(last_error, NC_EACCES);
	ck_assert_int_eq(listenings, 0);
	ck_assert(!nc_server_listening(srv));
	/* Nothing was reported listening. */
	master_send_text("{\"type\":\"count\",\"seq\":2}");
	ck_assert_str_eq(str(master_wait(1), "type"), "count.reply");
	ck_assert_int_eq(ngot, 2);
	nc_server_release(srv);
}
END_TEST

/* --- what keeps nc_run() going --------------------------------------- */

/* An open channel with nothing waiting on it does not. */
START_TEST(test_run_returns_without_listener)
{
	worker_env();
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_DISCONNECT, on_disconnect,
	    NULL), 0);
	ck_assert_int_eq(nc_run(base), 0);
	/* A broadcast goes out, and then nothing keeps the loop. */
	ck_assert_int_eq(nc_cluster_broadcast("[1]", 0), 0);
	ck_assert_int_eq(nc_run(base), 0);
	/* A MESSAGE listener added and removed leaves nothing. */
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_MESSAGE, on_message, NULL),
	    0);
	ck_assert_int_eq(nc_cluster_off(NC_EV_MESSAGE, on_message, NULL), 0);
	ck_assert_int_eq(nc_run(base), 0);
	master_read_all();
	ck_assert_int_eq(ngot, 1);
	ck_assert_str_eq(str(got[0], "type"), "broadcast");
	ck_assert(!master_eof);
	ck_assert_int_eq(disconnects, 0);
}
END_TEST

/*
 * A MESSAGE listener keeps nc_run() going until it is removed: a helper
 * process plays the master and sends a message only once it read the
 * worker's broadcast, while the worker waits in nc_run(); the listener
 * removes itself and nc_run() returns.
 */
START_TEST(test_message_listener_keeps_running)
{
	struct pollfd	pfd;
	char		buf[256];
	pid_t		pid;
	int		status;

	worker_env();
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_MESSAGE, on_message_once,
	    NULL), 0);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		const char	*m = "{\"type\":\"message\",\"seq\":1,"
		    "\"from\":2,\"message\":\"go\"}";

		close(CHAN_FD);
		pfd.fd = mfd;
		pfd.events = POLLIN;
		memset(buf, 0, sizeof buf);
		if (poll(&pfd, 1, scaled_ms(5000)) != 1 ||
		    recv(mfd, buf, sizeof buf - 1, 0) <= 0 ||
		    strstr(buf, "\"broadcast\"") == NULL)
			_exit(2);
		if (send(mfd, m, strlen(m), MSG_NOSIGNAL) !=
		    (ssize_t)strlen(m))
			_exit(3);
		_exit(0);
	}
	ck_assert_int_eq(nc_cluster_broadcast("\"ready\"", 0), 0);
	ck_assert_int_eq(nc_run(base), 0);
	ck_assert_int_eq(nmsgs, 1);
	ck_assert_str_eq(msgs[0], "\"go\"");
	ck_assert_int_eq(msg_from[0], 2);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

/*
 * `stop` closes the channel even with a MESSAGE listener: nc_run ends.
 * What a DISCONNECT listener sends still reaches the master, before the
 * end of the channel.
 */
START_TEST(test_stop_with_message_listener)
{
	worker_env();
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_MESSAGE, on_message, NULL),
	    0);
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_DISCONNECT, on_disconnect,
	    NULL), 0);
	ck_assert_int_eq(nc_cluster_on(base, NC_EV_DISCONNECT,
	    on_disconnect_say_bye, NULL), 0);
	master_send_text("{\"type\":\"message\",\"seq\":1,\"from\":4,"
	    "\"message\":\"bye\"}");
	master_send_text("{\"type\":\"stop\",\"seq\":2}");
	ck_assert_int_eq(nc_run(base), 0);
	ck_assert_int_eq(nmsgs, 1);
	ck_assert_int_eq(disconnects, 1);
	ck_assert_int_eq(listening_at_disconnect, -1);
	master_read_all();
	ck_assert(master_eof);
	ck_assert_int_eq(ngot, 1);
	ck_assert_str_eq(str(got[0], "type"), "broadcast");
	ck_assert_str_eq(str(got[0], "message"), "bye");
	ck_assert_int_eq(nc_cluster_broadcast("1", 0),
	    NC_ERR_IPC_CHANNEL_CLOSED);
	/* A second stop could not come: the channel is closed. */
	ck_assert_int_eq(disconnects, 1);
}
END_TEST

/*
 * The master goes away (closes its end) while the worker waits in
 * nc_run() for messages: the worker exits 0, as Node's workers do. Runs
 * in a child of its own, whose exit status tells.
 */
START_TEST(test_master_gone_exits_zero)
{
	struct pollfd	pfd;
	char		buf[256];
	pid_t		pid;
	int		status, done[2], rc;

	worker_env();
	ck_assert_int_eq(pipe2(done, O_CLOEXEC), 0);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		/* A base of its own: the parent's epoll set is shared. */
		struct event_base	*b = event_base_new();

		close(done[0]);
		close(mfd);
		if (b == NULL || nc_cluster_on(b, NC_EV_MESSAGE, on_message,
		    NULL) != 0 || nc_cluster_broadcast("\"up\"", 0) != 0)
			_exit(2);
		(void)nc_run(b);
		_exit(3);	/* nc_run() returned: the worker did not exit */
	}
	close(done[1]);
	close(CHAN_FD);
	/* The child is up: its broadcast came. */
	pfd.fd = mfd;
	pfd.events = POLLIN;
	ck_assert_int_eq(poll(&pfd, 1, scaled_ms(5000)), 1);
	ck_assert_int_gt(recv(mfd, buf, sizeof buf, 0), 0);
	close(mfd);
	mfd = -1;
	/* Bounded: the child's end of the pipe closes when it exits. */
	pfd.fd = done[0];
	pfd.events = POLLIN;
	rc = poll(&pfd, 1, scaled_ms(5000));
	if (rc != 1)
		(void)kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	close(done[0]);
	ck_assert_msg(rc == 1, "the worker did not exit");
	ck_assert_msg(WIFEXITED(status), "the worker was killed by signal %d",
	    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("cluster");
	TCase	*tc = tcase_create("worker");

	tcase_set_timeout(tc, 30);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_not_a_worker, 0, 6);
	tcase_add_test(tc, test_not_a_worker_listens_itself);
	tcase_add_test(tc, test_worker_identity);
	tcase_add_loop_test(tc, test_worker_without_id, 0, 2);
	tcase_add_test(tc, test_broadcast);
	tcase_add_test(tc, test_broadcast_refused);
	tcase_add_test(tc, test_broadcast_size);
	tcase_add_test(tc, test_broadcast_enobufs);
	tcase_add_test(tc, test_broadcast_full_queue_still_answers);
	tcase_add_test(tc, test_message);
	tcase_add_test(tc, test_messages_in_order);
	tcase_add_test(tc, test_count);
	tcase_add_test(tc, test_count_stats);
	tcase_add_test(tc, test_listen_shared_and_stop);
	tcase_add_test(tc, test_stop_idle_server);
	tcase_add_test(tc, test_listen_exclusive);
	tcase_add_test(tc, test_exclusive_backlog_taken);
	tcase_add_test(tc, test_listen_exclusive_retry);
	tcase_add_test(tc, test_listen_round_robin);
	tcase_add_test(tc, test_listen_refused);
	tcase_add_test(tc, test_run_returns_without_listener);
	tcase_add_test(tc, test_message_listener_keeps_running);
	tcase_add_test(tc, test_stop_with_message_listener);
	tcase_add_test(tc, test_master_gone_exits_zero);
	tcase_add_test(tc, test_conn_frames);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
