/*
 * The master-worker channel: messages with fds arrive whole and in
 * order; every malformed packet is a protocol error that closes what
 * came with it and leaks nothing; a peer that dies with our messages
 * unread is still heard to its last packet.
 */

#include <sys/socket.h>
#include <sys/stat.h>

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
	tcase_add_test(tc, test_queue_and_free_close_fds);
	tcase_add_test(tc, test_last_words_after_reset);
	tcase_add_test(tc, test_send_now);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
