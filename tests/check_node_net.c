/*
 * Node v20's own net tests (test/parallel/test-net-*.js), ported to C
 * against libnetcluster: the same steps and the same assertions, one
 * START_TEST each, named after the file. tests/node-net-tests.md lists
 * every test-net-*.js, which are ported and why the others are not.
 *
 * What C cannot say is checked at its nearest:
 * - Node's process.on('exit') checks run once nc_run() has returned,
 *   which it does when nothing keeps the loop alive, as Node's process
 *   exits then; check's timeout bounds a test that would never end.
 * - common.mustCall(fn) is a counter checked at that point.
 * - server.listen(0) and net.connect(port) are on 127.0.0.1: Node
 *   listens on :: and connects to localhost, which resolves to it.
 * - socket.cork()/uncork() (test-net-socket-byteswritten.js) do not
 *   exist here: the writes are made as they are, before the connection,
 *   which is what the test counts.
 */

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <fcntl.h>
#include <limits.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "helpers.h"

#define HOST	"127.0.0.1"

static struct {
	struct event_base	*base;
	struct nc_server	*server;
	int			 port;
	int			 fds;
} t;

static void
setup(void)
{
	memset(&t, 0, sizeof t);
	t.fds = fd_count();
	t.base = event_base_new();
	ck_assert_ptr_nonnull(t.base);
}

static void
teardown(void)
{
	ck_assert_int_eq(nc_run(t.base), 0);
	nc_server_release(t.server);
	ck_assert_int_eq(event_base_get_num_events(t.base,
	    EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE), 0);
	event_base_free(t.base);
	ck_assert_int_eq(fd_count(), t.fds);
}

static void
listening_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(*(int *)arg)++;
}

/* server = net.createServer(cb).listen(0): its port once listening. */
static void
server_listen(nc_listener_cb connection, void *arg)
{
	struct nc_server_options	o;
	int				listening = 0;

	memset(&o, 0, sizeof o);
	o.base = t.base;
	t.server = nc_create_server(&o, connection, arg);
	ck_assert_ptr_nonnull(t.server);
	ck_assert_int_eq(nc_server_listen(t.server, 0, HOST, 0, listening_cb,
	    &listening), 0);
	ck_assert(run_until(t.base, &listening, 5000));
	t.port = bound_port(t.server);
}

/* t.server, made by the test, listens on 127.0.0.1, port 0. */
static void
server_listen_existing(void)
{
	int	listening = 0;

	ck_assert_int_eq(nc_server_listen(t.server, 0, HOST, 0, listening_cb,
	    &listening), 0);
	ck_assert(run_until(t.base, &listening, 5000));
	t.port = bound_port(t.server);
}

static struct nc_socket *
connect_port(nc_listener_cb connect_listener, void *arg)
{
	struct nc_socket	*s;

	ck_assert_int_eq(nc_connect_port(t.base, t.port, HOST,
	    connect_listener, arg, &s), 0);
	return s;
}

/*
 * test-net-reconnect.js: a client reconnects from its `close` listener
 * 50 times; each time the server writes "hello\r\n", the client reads it
 * whole (utf8) and ends, and neither side closes with an error.
 */
#define RECONNECT_N	50

static struct {
	struct nc_socket	*client;
	int			 recv_count, end_count, disconnect_count;
	int			 server_closes;
} rc;

/* `end` from the peer: end this side too (Node's socket.end()). */
static void
end_on_end_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ck_assert_int_eq(nc_socket_end(emitter, NULL, 0), 0);
}

static void
reconnect_server_close_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert(!ev->had_error);
	rc.server_closes++;
}

static void
reconnect_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	nc_socket_resume(ev->socket);
	ck_assert_int_ge(nc_socket_write(ev->socket, "hello\r\n", 7, NULL,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END,
	    end_on_end_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_CLOSE,
	    reconnect_server_close_cb, NULL), 0);
}

static void
reconnect_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	rc.recv_count++;
	ck_assert_str_eq(ev->data, "hello\r\n");
	ck_assert_int_eq(nc_socket_end(emitter, NULL, 0), 0);
}

static void
reconnect_end_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	rc.end_count++;
}

static void
reconnect_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	ck_assert(!ev->had_error);
	if (rc.disconnect_count++ < RECONNECT_N)
		ck_assert_int_eq(nc_socket_connect_port(emitter, t.port, HOST,
		    NULL, NULL), 0);
	else
		ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

START_TEST(test_net_reconnect)
{
	memset(&rc, 0, sizeof rc);
	server_listen(reconnect_connection_cb, NULL);
	rc.client = connect_port(NULL, NULL);
	ck_assert_int_eq(nc_socket_set_encoding(rc.client, "utf8"), 0);
	ck_assert_int_eq(nc_socket_on(rc.client, NC_EV_DATA,
	    reconnect_data_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(rc.client, NC_EV_END, reconnect_end_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_on(rc.client, NC_EV_CLOSE,
	    reconnect_close_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);	/* process.on('exit') */
	ck_assert_int_eq(rc.disconnect_count, RECONNECT_N + 1);
	ck_assert_int_eq(rc.recv_count, RECONNECT_N + 1);
	ck_assert_int_eq(rc.end_count, RECONNECT_N + 1);
	ck_assert_int_eq(rc.server_closes, RECONNECT_N + 1);
}
END_TEST

/*
 * test-net-bytes-stats.js: the client connects twice on the same socket,
 * writes "foo" then ends with "bar" each time; the server's bytesRead
 * at each `end` and the client's bytesWritten at each `finish` add up to
 * 12: the counts start afresh with each connection.
 */
static struct {
	struct nc_socket	*client;
	int			 count;
	unsigned long long	 bytes_read, bytes_written;
} bs;

static void
bytes_stats_server_end_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)ev;
	(void)arg;
	bs.bytes_read += nc_socket_bytes_read(emitter);
}

static void
bytes_stats_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	nc_socket_resume(ev->socket);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END,
	    bytes_stats_server_end_cb, NULL), 0);
}

static void
bytes_stats_write_cb(struct nc_socket *s, int status, void *arg)
{
	(void)arg;
	ck_assert_int_eq(status, 0);
	ck_assert_int_ge(nc_socket_end(s, "bar", 3), 0);
}

static void
bytes_stats_connect_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)ev;
	(void)arg;
	bs.count++;
	ck_assert_int_ge(nc_socket_write(emitter, "foo", 3,
	    bytes_stats_write_cb, NULL), 0);
}

static void
bytes_stats_finish_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)ev;
	(void)arg;
	bs.bytes_written += nc_socket_bytes_written(emitter);
}

static void
bytes_stats_close_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)ev;
	(void)arg;
	if (bs.count < 2)
		ck_assert_int_eq(nc_socket_connect_port(emitter, t.port, HOST,
		    NULL, NULL), 0);
	else
		ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

START_TEST(test_net_bytes_stats)
{
	memset(&bs, 0, sizeof bs);
	server_listen(bytes_stats_connection_cb, NULL);
	bs.client = connect_port(NULL, NULL);
	ck_assert_int_eq(nc_socket_on(bs.client, NC_EV_CONNECT,
	    bytes_stats_connect_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(bs.client, NC_EV_FINISH,
	    bytes_stats_finish_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(bs.client, NC_EV_CLOSE,
	    bytes_stats_close_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_uint_eq(bs.bytes_read, 12);
	ck_assert_uint_eq(bs.bytes_written, 12);
}
END_TEST

/*
 * test-net-bytes-read.js: the server ends with 1 MiB and closes; the
 * client's bytesRead grows with every `data` and is 1 MiB at `end` and
 * at `close`.
 */
#define BIG	(1024 * 1024)

static struct {
	unsigned long long	 prev;
	int			 ends, closes;
} br;

static void
bytes_read_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	char	*big;

	(void)emitter;
	(void)arg;
	big = calloc(1, BIG);
	ck_assert_ptr_nonnull(big);
	ck_assert_int_ge(nc_socket_end(ev->socket, big, BIG), 0);
	free(big);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
bytes_read_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	unsigned long long	v = nc_socket_bytes_read(emitter);

	(void)ev;
	(void)arg;
	ck_assert_uint_gt(v, br.prev);
	br.prev = v;
}

static void
bytes_read_end_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	br.ends++;
	ck_assert_uint_eq(nc_socket_bytes_read(emitter), br.prev);
	ck_assert_uint_eq(br.prev, BIG);
}

static void
bytes_read_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	br.closes++;
	ck_assert(nc_socket_destroyed(emitter));	/* !socket._handle */
	ck_assert_uint_eq(nc_socket_bytes_read(emitter), br.prev);
	ck_assert_uint_eq(br.prev, BIG);
}

static void
bytes_read_connect_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)ev;
	(void)arg;
	ck_assert_int_eq(nc_socket_on(emitter, NC_EV_DATA, bytes_read_data_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_on(emitter, NC_EV_END, bytes_read_end_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_on(emitter, NC_EV_CLOSE,
	    bytes_read_close_cb, NULL), 0);
}

START_TEST(test_net_bytes_read)
{
	struct nc_socket	*s;

	memset(&br, 0, sizeof br);
	server_listen(bytes_read_connection_cb, NULL);
	s = connect_port(bytes_read_connect_cb, NULL);
	ck_assert_int_eq(nc_socket_end(s, NULL, 0), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(br.ends, 1);
	ck_assert_int_eq(br.closes, 1);
}
END_TEST

/*
 * test-net-server-close.js: two connections; at the second the server
 * closes and destroys both. One server `close` and two client `close`s,
 * and no connection left.
 */
static struct {
	struct nc_socket	*sockets[2];
	int			 n, server_events, client_events;
} sc;

static void
server_close_client_close_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	sc.client_events++;
}

static void
server_close_server_close_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	sc.server_events++;
}

static void
server_close_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	int	i;

	(void)emitter;
	(void)arg;
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_CLOSE,
	    server_close_client_close_cb, NULL), 0);
	sc.sockets[sc.n++] = ev->socket;
	if (sc.n == 2) {
		ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
		for (i = 0; i < 2; i++)
			nc_socket_destroy(sc.sockets[i]);
	}
}

START_TEST(test_net_server_close)
{
	memset(&sc, 0, sizeof sc);
	server_listen(server_close_connection_cb, NULL);
	ck_assert_int_eq(nc_server_on(t.server, NC_EV_CLOSE,
	    server_close_server_close_cb, NULL), 0);
	(void)connect_port(NULL, NULL);
	(void)connect_port(NULL, NULL);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(nc_server_connections(t.server), 0);
	ck_assert_int_eq(sc.server_events + sc.client_events, 3);
	ck_assert_int_eq(sc.server_events, 1);
	ck_assert_int_eq(sc.client_events, 2);
}
END_TEST

/*
 * test-net-allow-half-open.js: the server ends with 1024 bytes; the
 * client (allowHalfOpen false) is not destroyed at its `end` nor at its
 * `finish` (the proper shutdown), and closes once. Node checks `end` on
 * the next tick; here inside the listener, the nearest point C has.
 */
static struct {
	int	ends, finishes, closes;
} ho;

static void
half_open_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	char	buf[1024];

	(void)emitter;
	(void)arg;
	memset(buf, 0, sizeof buf);
	ck_assert_int_ge(nc_socket_end(ev->socket, buf, sizeof buf), 0);
}

static void
half_open_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	switch (ev->event) {
	case NC_EV_END:
		ho.ends++;
		ck_assert(!nc_socket_destroyed(emitter));
		ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
		break;
	case NC_EV_FINISH:
		ho.finishes++;
		ck_assert(!nc_socket_destroyed(emitter));
		break;
	case NC_EV_CLOSE:
		ho.closes++;
		break;
	default:
		break;
	}
}

START_TEST(test_net_allow_half_open)
{
	struct nc_socket	*s;

	memset(&ho, 0, sizeof ho);
	server_listen(half_open_connection_cb, NULL);
	s = connect_port(NULL, NULL);
	nc_socket_resume(s);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_END, half_open_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_FINISH, half_open_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_CLOSE, half_open_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(ho.ends, 1);
	ck_assert_int_eq(ho.finishes, 1);
	ck_assert_int_eq(ho.closes, 1);
}
END_TEST

/*
 * test-net-socket-byteswritten.js: "one" and "twø" (3 + 4 bytes of
 * UTF-8) written before the connection: bytesWritten is 7 at once, at
 * `connect` and at `end`.
 */
static int	bw_connects, bw_ends;

static void
bytes_written_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert_int_eq(nc_socket_end(ev->socket, NULL, 0), 0);
}

static void
bytes_written_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	ck_assert_uint_eq(nc_socket_bytes_written(emitter), 3 + 4);
	if (ev->event == NC_EV_CONNECT)
		bw_connects++;
	else {
		bw_ends++;
		ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	}
}

START_TEST(test_net_socket_byteswritten)
{
	struct nc_socket	*s;

	bw_connects = bw_ends = 0;
	server_listen(bytes_written_connection_cb, NULL);
	s = connect_port(NULL, NULL);
	ck_assert_int_ge(nc_socket_write_string(s, "one", NULL, NULL, NULL),
	    0);
	ck_assert_int_ge(nc_socket_write_string(s, "tw\xc3\xb8", "utf8", NULL,
	    NULL), 0);
	ck_assert_uint_eq(nc_socket_bytes_written(s), 3 + 4);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_CONNECT, bytes_written_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_END, bytes_written_cb, NULL),
	    0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(bw_connects, 1);
	ck_assert_int_eq(bw_ends, 1);
}
END_TEST

/*
 * test-net-server-call-listen-multiple-times.js: listening again right
 * after an `error` (EADDRINUSE) works; a second listen() while listening
 * is ERR_SERVER_ALREADY_LISTEN; listening again after close() works.
 */
static struct {
	struct nc_server	*dummy, *server;
	int			 errors, listened, relistened;
} lm;

static struct nc_server *
new_server(void)
{
	struct nc_server_options	o;
	struct nc_server		*s;

	memset(&o, 0, sizeof o);
	o.base = t.base;
	s = nc_create_server(&o, NULL, NULL);
	ck_assert_ptr_nonnull(s);
	return s;
}

static void
lm_relisten_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	lm.relistened++;
	ck_assert_int_eq(nc_server_close(lm.dummy, NULL, NULL), 0);
	ck_assert_int_eq(nc_server_close(emitter, NULL, NULL), 0);
}

static void
lm_error_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	lm.errors++;
	ck_assert_int_eq(ev->error->code, NC_EADDRINUSE);
	ck_assert_int_eq(nc_server_listen(emitter, 0, HOST, 0, lm_relisten_cb,
	    NULL), 0);
}

static void
lm_dummy_listening_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)ev;
	(void)arg;
	ck_assert_int_eq(nc_server_listen(lm.server, bound_port(emitter), HOST,
	    0, NULL, NULL), 0);
}

static void
lm_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	lm.listened++;
	ck_assert_int_eq(nc_server_close(emitter, NULL, NULL), 0);
}

static void
lm_close_and_listen_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)ev;
	(void)arg;
	ck_assert_int_eq(nc_server_close(emitter, NULL, NULL), 0);
	ck_assert_int_eq(nc_server_listen(emitter, 0, HOST, 0, lm_close_cb,
	    NULL), 0);
}

START_TEST(test_net_server_call_listen_multiple_times)
{
	struct nc_server	*second, *third;

	memset(&lm, 0, sizeof lm);
	/* First: after `error`, listen again at once. */
	lm.dummy = new_server();
	lm.server = new_server();
	ck_assert_int_eq(nc_server_on(lm.server, NC_EV_ERROR, lm_error_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_server_listen(lm.dummy, 0, HOST, 0,
	    lm_dummy_listening_cb, NULL), 0);
	/* Second: listen() while listening throws. */
	second = new_server();
	ck_assert_int_eq(nc_server_listen(second, 0, HOST, 0, lm_close_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_server_listen(second, 0, HOST, 0, NULL, NULL),
	    NC_ERR_SERVER_ALREADY_LISTEN);
	/* Third: after close(), listen again. */
	third = new_server();
	ck_assert_int_eq(nc_server_listen(third, 0, HOST, 0,
	    lm_close_and_listen_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(lm.errors, 1);
	ck_assert_int_eq(lm.relistened, 1);
	ck_assert_int_eq(lm.listened, 2);	/* second's, third's again */
	nc_server_release(lm.dummy);
	nc_server_release(lm.server);
	nc_server_release(second);
	nc_server_release(third);
}
END_TEST

/*
 * test-net-connect-buffer.js: a write made while connecting counts its
 * UTF-8 bytes in bytesWritten at once (15 for "L'État, c'est "), and
 * not again once it goes out; its callback comes after `connect`; the
 * server reads "L'État, c'est moi" with end(b). Left out: the writes of
 * non-buffers that throw (C's types), and write()'s false under
 * highWaterMark 0 (no such option here).
 */
static struct {
	struct evbuffer		*buf;
	int			 connected, written, ends;
} cb_;

static void
connect_buffer_data_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert_int_eq(evbuffer_add(cb_.buf, ev->data, ev->len), 0);
}

static void
connect_buffer_end_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	const char	*want = "L'\xc3\x89tat, c'est moi";

	(void)ev;
	(void)arg;
	cb_.ends++;
	ck_assert_uint_eq(evbuffer_get_length(cb_.buf), strlen(want));
	ck_assert(memcmp(evbuffer_pullup(cb_.buf, -1), want,
	    strlen(want)) == 0);
	ck_assert_int_eq(nc_socket_end(emitter, NULL, 0), 0);
}

static void
connect_buffer_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_DATA,
	    connect_buffer_data_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END,
	    connect_buffer_end_cb, NULL), 0);
}

static void
connect_buffer_connect_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	cb_.connected = 1;
}

static void
connect_buffer_write_cb(struct nc_socket *s, int status, void *arg)
{
	(void)s;
	(void)arg;
	ck_assert_int_eq(status, 0);
	cb_.written = 1;
	ck_assert(cb_.connected);
}

static void connect_buffer(void);

START_TEST(test_net_connect_buffer)
{
	connect_buffer();
}
END_TEST

/* test-net-connect-buffer2.js: the same scenario again, Node's second
 * copy of it. */
START_TEST(test_net_connect_buffer2)
{
	connect_buffer();
}
END_TEST

static void
connect_buffer(void)
{
	struct nc_socket_options	 so;
	struct nc_socket		*s;
	const char			*a = "L'\xc3\x89tat, c'est ";

	memset(&cb_, 0, sizeof cb_);
	cb_.buf = evbuffer_new();
	ck_assert_ptr_nonnull(cb_.buf);
	server_listen(connect_buffer_connection_cb, NULL);
	memset(&so, 0, sizeof so);
	so.base = t.base;
	s = nc_socket_new(&so);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(nc_socket_connect_port(s, t.port, HOST,
	    connect_buffer_connect_cb, NULL), 0);
	ck_assert(nc_socket_connecting(s));	/* readyState 'opening' */
	ck_assert_int_ge(nc_socket_write_string(s, a, NULL,
	    connect_buffer_write_cb, NULL), 0);
	ck_assert_uint_eq(nc_socket_bytes_written(s), strlen(a));
	ck_assert_uint_eq(strlen(a), 15);
	ck_assert_int_ge(nc_socket_end_string(s, "moi", NULL), 0);
	ck_assert(nc_socket_connecting(s));
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert(cb_.connected);
	ck_assert(cb_.written);
	ck_assert_int_eq(cb_.ends, 1);
	evbuffer_free(cb_.buf);
}


/* A counter as common.mustCall() keeps one, for listeners that count. */
static void
count_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(*(int *)arg)++;
}

/*
 * test-net-write-cb-on-destroy-before-connect.js: a write made while
 * connecting, then destroy(): its callback gets
 * ERR_SOCKET_CLOSED_BEFORE_CONNECTION, and `connect` never comes.
 */
static int	wd_status, wd_calls;

static void
write_destroy_cb(struct nc_socket *s, int status, void *arg)
{
	(void)s;
	(void)arg;
	wd_calls++;
	wd_status = status;
}

START_TEST(test_net_write_cb_on_destroy_before_connect)
{
	struct nc_socket_options	 so;
	struct nc_socket		*s;
	int				 connects = 0;

	wd_status = wd_calls = 0;
	server_listen(NULL, NULL);
	memset(&so, 0, sizeof so);
	so.base = t.base;
	s = nc_socket_new(&so);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_CONNECT, count_cb, &connects),
	    0);
	ck_assert_int_eq(nc_socket_connect_port(s, t.port, NULL, NULL, NULL),
	    0);
	ck_assert(nc_socket_connecting(s));
	ck_assert_int_ge(nc_socket_write_string(s, "foo", NULL,
	    write_destroy_cb, NULL), 0);
	nc_socket_destroy(s);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(connects, 0);
	ck_assert_int_eq(wd_calls, 1);
	ck_assert_int_eq(wd_status, NC_ERR_SOCKET_CLOSED_BEFORE_CONNECTION);
}
END_TEST

/*
 * test-net-socket-destroy-send.js: destroyed twice at `connect`, then
 * written to: v20's version, as node v20.20.2 runs it here, has the
 * write's callback get ERR_STREAM_DESTROYED and no `error` (older ones
 * had ERR_SOCKET_CLOSED and an `error`). destroy() returning the socket
 * is JS's.
 */
static int	ds_errors, ds_writes, ds_write_status;

static void
destroy_send_error_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	(void)ev;
	ds_errors++;
}

static void
destroy_send_write_cb(struct nc_socket *s, int status, void *arg)
{
	(void)s;
	(void)arg;
	ds_writes++;
	ds_write_status = status;
}

static void
destroy_send_connect_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)ev;
	(void)arg;
	nc_socket_destroy(emitter);
	nc_socket_destroy(emitter);
	ck_assert_int_eq(nc_socket_on(emitter, NC_EV_ERROR,
	    destroy_send_error_cb, NULL), 0);
	(void)nc_socket_write(emitter, "kaboom", 6, destroy_send_write_cb,
	    NULL);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

START_TEST(test_net_socket_destroy_send)
{
	ds_errors = ds_writes = ds_write_status = 0;
	server_listen(NULL, NULL);
	(void)connect_port(destroy_send_connect_cb, NULL);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(ds_errors, 0);
	ck_assert_int_eq(ds_writes, 1);
	ck_assert_int_eq(ds_write_status, NC_ERR_STREAM_DESTROYED);
}
END_TEST

/*
 * test-net-better-error-messages-listen.js: listen(1, "1.1.1.1"), an
 * address not of this machine: `error` names the address, the port and
 * the syscall "listen"; neither `listening` nor a connection comes.
 */
static int	bl_errors;

static void
better_listen_error_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	bl_errors++;
	ck_assert_str_eq(ev->error->address, "1.1.1.1");
	ck_assert_int_eq(ev->error->port, 1);
	ck_assert_str_eq(ev->error->syscall, "listen");
}

START_TEST(test_net_better_error_messages_listen)
{
	struct nc_server_options	o;
	int				listening = 0, connections = 0;

	bl_errors = 0;
	memset(&o, 0, sizeof o);
	o.base = t.base;
	t.server = nc_create_server(&o, count_cb, &connections);
	ck_assert_ptr_nonnull(t.server);
	ck_assert_int_eq(nc_server_on(t.server, NC_EV_ERROR,
	    better_listen_error_cb, NULL), 0);
	ck_assert_int_eq(nc_server_listen(t.server, 1, "1.1.1.1", 0, count_cb,
	    &listening), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(bl_errors, 1);
	ck_assert_int_eq(listening, 0);
	ck_assert_int_eq(connections, 0);
}
END_TEST

/*
 * test-net-server-drop-connections.js: maxConnections 1, two clients:
 * one connection, and one `drop` whose local and remote address, port
 * and the remote family are all there.
 */
static struct {
	struct nc_socket	*first;
	int			 connections, drops;
} dc;

static void
drop_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	dc.connections++;
	dc.first = ev->socket;
}

static void
drop_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	dc.drops++;
	ck_assert_ptr_nonnull(ev->local);
	ck_assert_ptr_nonnull(ev->remote);
	ck_assert_str_ne(ev->local->address, "");
	ck_assert_int_gt(ev->local->port, 0);
	ck_assert_str_ne(ev->remote->address, "");
	ck_assert_int_gt(ev->remote->port, 0);
	ck_assert_str_ne(ev->remote->family, "");
	ck_assert_ptr_nonnull(dc.first);
	nc_socket_destroy(dc.first);
	ck_assert_int_eq(nc_server_close(emitter, NULL, NULL), 0);
}

START_TEST(test_net_server_drop_connections)
{
	memset(&dc, 0, sizeof dc);
	server_listen(drop_connection_cb, NULL);
	ck_assert_int_eq(nc_server_set_max_connections(t.server, 1), 0);
	ck_assert_int_eq(nc_server_on(t.server, NC_EV_DROP, drop_cb, NULL),
	    0);
	(void)connect_port(NULL, NULL);
	(void)connect_port(NULL, NULL);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(dc.connections, 1);
	ck_assert_int_eq(dc.drops, 1);
}
END_TEST

/*
 * test-net-writable.js: the server ends at once; the client, connected
 * to "localhost", writes from its `end` listener, where it is still
 * writable: no error. (Node's socket.writable is read here as the
 * write's outcome: no `error`, the write not refused.)
 */
static int	wr_ends, wr_errors, wr_status = 1;

static void
writable_write_cb(struct nc_socket *s, int status, void *arg)
{
	(void)s;
	(void)arg;
	wr_status = status;
}

static void
writable_end_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	wr_ends++;
	ck_assert(!nc_socket_destroyed(emitter));
	ck_assert_int_ge(nc_socket_write_string(emitter, "hello world", NULL,
	    writable_write_cb, NULL), 0);
}

static void
writable_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_socket_end(ev->socket, NULL, 0), 0);
}

START_TEST(test_net_writable)
{
	struct nc_socket	*s;

	wr_ends = wr_errors = 0;
	wr_status = 1;
	server_listen(writable_connection_cb, NULL);
	ck_assert_int_eq(nc_connect_port(t.base, t.port, "localhost", NULL,
	    NULL, &s), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_END, writable_end_cb, NULL),
	    0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_ERROR, count_cb, &wr_errors),
	    0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(wr_ends, 1);
	ck_assert_int_eq(wr_errors, 0);
	ck_assert_int_eq(wr_status, 0);
}
END_TEST

/*
 * test-net-connect-no-arg.js: connecting with neither a port nor a path,
 * by net.connect() and by socket.connect() (with {} too), is
 * ERR_MISSING_ARGS with Node's message, and creates nothing. (A call
 * without arguments is C's {} here.)
 */
START_TEST(test_net_connect_no_arg)
{
	struct nc_connect_options	 o;
	struct nc_socket_options	 so;
	struct nc_socket		*s = (void *)1;

	memset(&o, 0, sizeof o);
	o.base = t.base;
	ck_assert_int_eq(nc_connect(&o, NULL, NULL, &s), NC_ERR_MISSING_ARGS);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(nc_connect(NULL, NULL, NULL, &s),
	    NC_ERR_MISSING_ARGS);
	ck_assert_str_eq(nc_err_name(NC_ERR_MISSING_ARGS), "ERR_MISSING_ARGS");
	ck_assert_str_eq(nc_strerror(NC_ERR_MISSING_ARGS), "The \"options\" "
	    "or \"port\" or \"path\" argument must be specified");
	memset(&so, 0, sizeof so);
	so.base = t.base;
	s = nc_socket_new(&so);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(nc_socket_connect(s, &o, NULL, NULL),
	    NC_ERR_MISSING_ARGS);
	ck_assert_int_eq(nc_socket_connect(s, NULL, NULL, NULL),
	    NC_ERR_MISSING_ARGS);
	ck_assert(!nc_socket_connecting(s));
	nc_socket_destroy(s);
}
END_TEST

/*
 * test-net-socket-destroy-twice.js: a connection refused; destroy()
 * inside `error`: one `error`, one `close`.
 */
static int	dt_errors, dt_closes;

static void
destroy_twice_error_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)arg;
	dt_errors++;
	ck_assert_int_eq(ev->error->code, NC_ECONNREFUSED);
	nc_socket_destroy(emitter);
}

static void
destroy_twice_closed_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	struct nc_socket	*s;

	(void)ev;
	(void)arg;
	(void)emitter;
	ck_assert_int_eq(nc_connect_port(t.base, t.port, HOST, NULL, NULL,
	    &s), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_ERROR, destroy_twice_error_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_CLOSE, count_cb, &dt_closes),
	    0);
}

START_TEST(test_net_socket_destroy_twice)
{
	dt_errors = dt_closes = 0;
	server_listen(NULL, NULL);
	/* A port nothing listens on: the server's, once it closed. */
	ck_assert_int_eq(nc_server_close(t.server, destroy_twice_closed_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(dt_errors, 1);
	ck_assert_int_eq(dt_closes, 1);
}
END_TEST

/*
 * test-net-bytes-written-large.js: end() of 10,000,000 bytes counts them
 * in bytesWritten at once and at `finish` (end's callback), and the
 * server reads all of them; the same with a 10,000,000-character string.
 */
#define LARGE_N	10000000

static struct {
	unsigned long long	 server_read;
	int			 finishes, server_ends;
} bl;

static void
large_finish_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	bl.finishes++;
	ck_assert_uint_eq(nc_socket_bytes_written(emitter), LARGE_N);
}

static void
large_server_end_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)ev;
	(void)arg;
	bl.server_ends++;
	bl.server_read = nc_socket_bytes_read(emitter);
	if (bl.server_ends == 2)
		ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
large_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	nc_socket_resume(ev->socket);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END,
	    large_server_end_cb, NULL), 0);
}

START_TEST(test_net_bytes_written_large)
{
	struct nc_socket	*s;
	char			*big;
	int			 i;

	memset(&bl, 0, sizeof bl);
	server_listen(large_connection_cb, NULL);
	big = malloc(LARGE_N + 1);
	ck_assert_ptr_nonnull(big);
	memset(big, 'a', LARGE_N);
	big[LARGE_N] = '\0';
	for (i = 0; i < 2; i++) {
		s = connect_port(NULL, NULL);
		ck_assert_int_eq(nc_socket_on(s, NC_EV_FINISH, large_finish_cb,
		    NULL), 0);
		if (i == 0)
			ck_assert_int_ge(nc_socket_end(s, big, LARGE_N), 0);
		else
			ck_assert_int_ge(nc_socket_end_string(s, big, NULL), 0);
		ck_assert_uint_eq(nc_socket_bytes_written(s), LARGE_N);
		ck_assert(run_until_count(t.base, &bl.server_ends, i + 1,
		    30000));
		ck_assert_uint_eq(bl.server_read, LARGE_N);
	}
	free(big);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(bl.finishes, 2);
}
END_TEST

/*
 * test-net-error-twice.js: the server writes 10 MiB to a client that is
 * destroyed as soon as it connects: the server's socket emits one
 * `error` (EPIPE or ECONNRESET), never the same error twice, and closes.
 */
static int	et_errors, et_closes;

static void
error_twice_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	char	*buf;

	(void)emitter;
	(void)arg;
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_ERROR, count_cb,
	    &et_errors), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_CLOSE, count_cb,
	    &et_closes), 0);
	buf = calloc(1, 10 * 1024 * 1024);
	ck_assert_ptr_nonnull(buf);
	(void)nc_socket_write(ev->socket, buf, 10 * 1024 * 1024, NULL, NULL);
	free(buf);
}

static void
error_twice_client_connect_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)ev;
	(void)arg;
	nc_socket_destroy(emitter);
}

START_TEST(test_net_error_twice)
{
	et_errors = et_closes = 0;
	server_listen(error_twice_connection_cb, NULL);
	(void)connect_port(error_twice_client_connect_cb, NULL);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(et_errors, 1);
	ck_assert_int_eq(et_closes, 1);
}
END_TEST

/* A new socket on the test's base, not connected. */
static struct nc_socket *
socket_new(void)
{
	struct nc_socket_options	 so;
	struct nc_socket		*s;

	memset(&so, 0, sizeof so);
	so.base = t.base;
	s = nc_socket_new(&so);
	ck_assert_ptr_nonnull(s);
	return s;
}

/*
 * test-net-bind-twice.js: a second server on the first one's 127.0.0.1
 * port: `error` EADDRINUSE, and its listening callback never called.
 */
START_TEST(test_net_bind_twice)
{
	struct nc_server	*second;
	int			 errors = 0, listening = 0;

	server_listen(NULL, NULL);
	second = new_server();
	ck_assert_int_eq(nc_server_on(second, NC_EV_ERROR, count_cb, &errors),
	    0);
	ck_assert_int_eq(nc_server_listen(second, t.port, HOST, 0, count_cb,
	    &listening), 0);
	ck_assert(run_until(t.base, &errors, 5000));
	ck_assert_int_eq(listening, 0);
	ck_assert(!nc_server_listening(second));
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(errors, 1);
	nc_server_release(second);
}
END_TEST

/*
 * test-net-buffersize.js: before the connection each write('a') raises
 * bufferSize by one; it is 0 at `finish`.
 */
static int	bsz_finishes;

static void
buffersize_finish_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)ev;
	(void)arg;
	bsz_finishes++;
	ck_assert_uint_eq(nc_socket_buffer_size(emitter), 0);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

START_TEST(test_net_buffersize)
{
	struct nc_socket	*s;
	size_t			 i;

	bsz_finishes = 0;
	server_listen(NULL, NULL);
	s = connect_port(NULL, NULL);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_FINISH, buffersize_finish_cb,
	    NULL), 0);
	ck_assert_uint_eq(nc_socket_buffer_size(s), 0);
	for (i = 1; i < 10; i++) {
		ck_assert_int_ge(nc_socket_write(s, "a", 1, NULL, NULL), 0);
		ck_assert_uint_eq(nc_socket_buffer_size(s), i);
	}
	ck_assert_int_eq(nc_socket_end(s, NULL, 0), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(bsz_finishes, 1);
}
END_TEST

/* test-net-connect-destroy.js: destroy() on a socket never connected:
 * `close` once. */
START_TEST(test_net_connect_destroy)
{
	struct nc_socket	*s = socket_new();
	int			 closes = 0;

	ck_assert_int_eq(nc_socket_on(s, NC_EV_CLOSE, count_cb, &closes), 0);
	nc_socket_destroy(s);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(closes, 1);
}
END_TEST

/*
 * test-net-connect-immediate-destroy.js: connect to 127.0.0.1 and
 * destroy() in the same turn, to a port nothing listens on any more:
 * neither `connect` nor `error`.
 */
START_TEST(test_net_connect_immediate_destroy)
{
	struct nc_socket	*s;
	int			 connects = 0, errors = 0;

	server_listen(NULL, NULL);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	s = connect_port(NULL, NULL);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_CONNECT, count_cb, &connects),
	    0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_ERROR, count_cb, &errors), 0);
	nc_socket_destroy(s);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(connects, 0);
	ck_assert_int_eq(errors, 0);
}
END_TEST

/*
 * test-net-dns-lookup.js: connect(port, "localhost") to a 127.0.0.1
 * server: `lookup` with no error, "127.0.0.1", family 4, "localhost".
 * test-net-dns-lookup-skip.js: to an IP literal, no `lookup`.
 */
static int	lk_lookups;

static void
dns_lookup_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	lk_lookups++;
	ck_assert_ptr_null(ev->error);
	ck_assert_str_eq(ev->address, "127.0.0.1");
	ck_assert_int_eq(ev->family, 4);
	ck_assert_str_eq(ev->host, "localhost");
	nc_socket_destroy(emitter);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

START_TEST(test_net_dns_lookup)
{
	struct nc_socket	*s;

	lk_lookups = 0;
	server_listen(NULL, NULL);
	ck_assert_int_eq(nc_connect_port(t.base, t.port, "localhost", NULL,
	    NULL, &s), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_LOOKUP, dns_lookup_cb, NULL),
	    0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(lk_lookups, 1);
}
END_TEST

static void
close_on_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(*(int *)arg)++;
	nc_socket_destroy(emitter);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

START_TEST(test_net_dns_lookup_skip)
{
	struct nc_socket	*s;
	int			 lookups = 0, connects = 0;

	server_listen(NULL, NULL);
	s = connect_port(close_on_connect_cb, &connects);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_LOOKUP, count_cb, &lookups), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(connects, 1);
	ck_assert_int_eq(lookups, 0);
}
END_TEST

/*
 * test-net-during-close.js: the server closes right after a client
 * starts to connect; the client's remote address, family and port read
 * while connecting are not known (NULL, -1), and do not fail.
 * test-net-remote-address.js: not known while connecting, known at
 * `connect`. test-net-socket-connecting.js: connecting until then.
 */
static int	ra_connects;

static void
remote_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ra_connects++;
	ck_assert(!nc_socket_connecting(emitter));
	ck_assert_str_eq(nc_socket_remote_address(emitter), HOST);
	ck_assert_str_eq(nc_socket_remote_family(emitter), "IPv4");
	ck_assert_int_eq(nc_socket_remote_port(emitter), t.port);
	nc_socket_destroy(emitter);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

START_TEST(test_net_remote_address)
{
	struct nc_socket	*s;

	ra_connects = 0;
	server_listen(NULL, NULL);
	s = connect_port(remote_connect_cb, NULL);
	ck_assert(nc_socket_connecting(s));
	ck_assert_ptr_null(nc_socket_remote_address(s));
	ck_assert_ptr_null(nc_socket_remote_family(s));
	ck_assert_int_eq(nc_socket_remote_port(s), -1);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(ra_connects, 1);
}
END_TEST

START_TEST(test_net_during_close)
{
	struct nc_socket	*s;

	server_listen(NULL, NULL);
	s = connect_port(NULL, NULL);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_ptr_null(nc_socket_remote_address(s));
	ck_assert_ptr_null(nc_socket_remote_family(s));
	ck_assert_int_eq(nc_socket_remote_port(s), -1);
	nc_socket_destroy(s);
	ck_assert_int_eq(nc_run(t.base), 0);
}
END_TEST

/*
 * test-net-listen-close-server.js: listen(0, cb) and close() at once:
 * neither `listening` nor `error`. test-net-listening.js: listening is
 * false before listen(), true in its callback, false in close()'s.
 */
/*
 * listen(0, cb) and close() at once, with a listener counting ev in *seen;
 * the loop run to its end. What the callback of listen() saw is in
 * *listening.
 */
static void
listen_close_at_once(enum nc_event ev, int *seen, int *listening)
{
	t.server = new_server();
	ck_assert_int_eq(nc_server_on(t.server, ev, count_cb, seen), 0);
	ck_assert_int_eq(nc_server_listen(t.server, 0, HOST, 0, count_cb,
	    listening), 0);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
}

START_TEST(test_net_listen_close_server)
{
	int	listening = 0, errors = 0;

	listen_close_at_once(NC_EV_ERROR, &errors, &listening);
	ck_assert_int_eq(listening, 0);
	ck_assert_int_eq(errors, 0);
}
END_TEST

static int	ln_checks;

static void
listening_false_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ln_checks++;
	ck_assert(!nc_server_listening(emitter));
}

static void
listening_true_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ln_checks++;
	ck_assert(nc_server_listening(emitter));
	ck_assert_int_eq(nc_server_close(emitter, listening_false_cb, NULL),
	    0);
}

START_TEST(test_net_listening)
{
	ln_checks = 0;
	t.server = new_server();
	ck_assert(!nc_server_listening(t.server));
	ck_assert_int_eq(nc_server_listen(t.server, 0, HOST, 0,
	    listening_true_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(ln_checks, 2);
}
END_TEST

/*
 * test-net-local-address-port.js: a server's connection has the
 * server's address and port as its local ones.
 */
static int	lap_connections;

static void
local_address_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	lap_connections++;
	ck_assert_str_eq(nc_socket_local_address(ev->socket), HOST);
	ck_assert_int_eq(nc_socket_local_port(ev->socket), t.port);
	ck_assert_int_eq(nc_socket_end(ev->socket, NULL, 0), 0);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

START_TEST(test_net_local_address_port)
{
	lap_connections = 0;
	server_listen(local_address_connection_cb, NULL);
	nc_socket_resume(connect_port(NULL, NULL));
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(lap_connections, 1);
}
END_TEST

/* test-net-socket-end-before-connect.js: end() right after the connect
 * call: `close` comes. */
START_TEST(test_net_socket_end_before_connect)
{
	struct nc_socket	*s;
	int			 closes = 0;

	server_listen(NULL, NULL);
	s = connect_port(NULL, NULL);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_CLOSE, count_cb, &closes), 0);
	ck_assert_int_eq(nc_socket_end(s, NULL, 0), 0);
	ck_assert(run_until(t.base, &closes, 5000));
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(closes, 1);
}
END_TEST

/*
 * test-net-settimeout.js: setTimeout(100) and then setTimeout(0) before
 * the connection: no `timeout` within 200 ms.
 * test-net-timeout-no-handle.js: setTimeout(50) on a socket that never
 * connects: `timeout` comes, `connect` does not.
 */
START_TEST(test_net_settimeout)
{
	struct nc_socket	*s;
	int			 timeouts = 0, connects = 0;

	server_listen(NULL, NULL);
	s = connect_port(count_cb, &connects);
	ck_assert_int_eq(nc_socket_set_timeout(s, 100, count_cb, &timeouts),
	    0);
	ck_assert_int_eq(nc_socket_set_timeout(s, 0, NULL, NULL), 0);
	run_for(t.base, 200);
	ck_assert_int_eq(timeouts, 0);
	ck_assert_int_eq(connects, 1);
	nc_socket_destroy(s);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}
END_TEST

static void
timeout_destroy_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(*(int *)arg)++;
	nc_socket_destroy(emitter);
}

START_TEST(test_net_timeout_no_handle)
{
	struct nc_socket	*s = socket_new();
	int			 timeouts = 0, connects = 0;

	ck_assert_int_eq(nc_socket_on(s, NC_EV_CONNECT, count_cb, &connects),
	    0);
	ck_assert_int_eq(nc_socket_set_timeout(s, 50, timeout_destroy_cb,
	    &timeouts), 0);
	ck_assert(run_until(t.base, &timeouts, 5000));
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(timeouts, 1);
	ck_assert_int_eq(connects, 0);
}
END_TEST

/*
 * test-net-write-connect-write.js: write("before") before the
 * connection, write("after") at `connect`; an echo server sends back
 * "beforeafter".
 */
static struct {
	char	got[32];
	int	ends;
} wcw;

static void
echo_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	ck_assert_int_ge(nc_socket_write(emitter, ev->data, ev->len, NULL,
	    NULL), 0);
}

static void
echo_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_DATA, echo_data_cb,
	    NULL), 0);
}

static void
wcw_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ck_assert_int_ge(nc_socket_write_string(emitter, "after", NULL, NULL,
	    NULL), 0);
}

static void
wcw_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	strncat(wcw.got, ev->data, sizeof wcw.got - strlen(wcw.got) - 1);
	if (strlen(wcw.got) >= strlen("beforeafter")) {
		ck_assert_int_eq(nc_socket_end(emitter, NULL, 0), 0);
		ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	}
}

START_TEST(test_net_write_connect_write)
{
	struct nc_socket	*s;

	memset(&wcw, 0, sizeof wcw);
	server_listen(echo_connection_cb, NULL);
	s = connect_port(wcw_connect_cb, NULL);
	ck_assert_int_eq(nc_socket_set_encoding(s, "utf8"), 0);
	ck_assert_int_ge(nc_socket_write_string(s, "before", NULL, NULL, NULL),
	    0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_DATA, wcw_data_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_str_eq(wcw.got, "beforeafter");
}
END_TEST

/* test-net-server-unref.js: an unref'd listening server: the loop ends. */
START_TEST(test_net_server_unref)
{
	int	listening = 0;

	t.server = new_server();
	nc_server_unref(t.server);
	ck_assert_int_eq(nc_server_listen(t.server, 0, HOST, 0, count_cb,
	    &listening), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert(nc_server_listening(t.server));
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}
END_TEST

/*
 * test-net-better-error-messages-path.js: connecting to a unix path that
 * is not there: `error` ENOENT, "connect ENOENT PATH", no `connect`.
 * test-net-better-error-messages-listen-path.js: listening on a path
 * whose directory is not there: `error` names the path, no `listening`.
 */
static int	ep_errors;

static void
error_path_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	char	want[256];

	(void)emitter;
	ep_errors++;
	ck_assert_str_eq(ev->error->address, (const char *)arg);
	if (ev->error->code == NC_ENOENT && strcmp(ev->error->syscall,
	    "connect") == 0) {
		snprintf(want, sizeof want, "connect ENOENT %s",
		    (const char *)arg);
		ck_assert_str_eq(ev->error->message, want);
	} else
		ck_assert_str_eq(ev->error->syscall, "listen");
}

START_TEST(test_net_better_error_messages_path)
{
	struct nc_socket	*s;
	const char		*path = tmpdir_path("not-there.sock");
	int			 connects = 0;

	ep_errors = 0;
	ck_assert_int_eq(nc_connect_path(t.base, path, count_cb, &connects,
	    &s), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_ERROR, error_path_cb,
	    (void *)path), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(ep_errors, 1);
	ck_assert_int_eq(connects, 0);
	tmpdir_cleanup();
}
END_TEST

START_TEST(test_net_better_error_messages_listen_path)
{
	const char	*path = "/blah/fadfa";
	int		 listening = 0;

	ep_errors = 0;
	t.server = new_server();
	ck_assert_int_eq(nc_server_on(t.server, NC_EV_ERROR, error_path_cb,
	    (void *)path), 0);
	ck_assert_int_eq(nc_server_listen_path(t.server, path, count_cb,
	    &listening), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(ep_errors, 1);
	ck_assert_int_eq(listening, 0);
}
END_TEST

/*
 * test-net-socket-timeout.js: a negative delay is ERR_OUT_OF_RANGE; 0,
 * 1 and 1e6 are taken; a 1 ms timeout fires once (the socket is
 * destroyed in it); setTimeout() after destroy() never fires. (The
 * non-numbers, Infinity and NaN are JS's.)
 */
START_TEST(test_net_socket_timeout)
{
	struct nc_socket	*s;
	int			 timeouts = 0, late = 0;

	server_listen(NULL, NULL);
	s = connect_port(NULL, NULL);
	ck_assert_int_eq(nc_socket_set_timeout(s, -1, NULL, NULL),
	    NC_ERR_OUT_OF_RANGE);
	ck_assert_int_eq(nc_socket_set_timeout(s, 0, NULL, NULL), 0);
	ck_assert_int_eq(nc_socket_set_timeout(s, 1000000, NULL, NULL), 0);
	ck_assert_int_eq(nc_socket_set_timeout(s, 1, timeout_destroy_cb,
	    &timeouts), 0);
	ck_assert(run_until(t.base, &timeouts, 5000));
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(timeouts, 1);

	s = socket_new();
	nc_socket_hold(s);
	nc_socket_destroy(s);
	ck_assert_int_eq(nc_socket_set_timeout(s, 1, count_cb, &late), 0);
	run_for(t.base, 50);
	ck_assert_int_eq(late, 0);
	nc_socket_release(s);
}
END_TEST

/*
 * test-net-server-pause-on-connect.js: a pauseOnConnect server's
 * connection gets no `data` (bytesRead 0) until resume(); a plain
 * server's gets it at once.
 */
static struct {
	struct nc_socket	*paused;
	int			 paused_data, plain_data;
} pc;

static void
pause_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(*(int *)arg)++;
	if (arg == &pc.paused_data)
		nc_socket_destroy(emitter);
}

static void
pause_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	pc.paused = ev->socket;
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_DATA, pause_data_cb,
	    &pc.paused_data), 0);
}

static void
plain_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_DATA, pause_data_cb,
	    &pc.plain_data), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END,
	    end_on_end_cb, NULL), 0);
}

START_TEST(test_net_server_pause_on_connect)
{
	struct nc_server_options	 o;
	struct nc_server		*plain;
	struct nc_socket		*a, *b;
	int				 listening = 0, plain_port;

	memset(&pc, 0, sizeof pc);
	memset(&o, 0, sizeof o);
	o.base = t.base;
	o.pause_on_connect = true;
	t.server = nc_create_server(&o, pause_connection_cb, NULL);
	ck_assert_ptr_nonnull(t.server);
	ck_assert_int_eq(nc_server_listen(t.server, 0, HOST, 0, count_cb,
	    &listening), 0);
	plain = new_server();
	ck_assert_int_eq(nc_server_on(plain, NC_EV_CONNECTION,
	    plain_connection_cb, NULL), 0);
	ck_assert_int_eq(nc_server_listen(plain, 0, HOST, 0, count_cb,
	    &listening), 0);
	ck_assert(run_until_count(t.base, &listening, 2, 5000));
	t.port = bound_port(t.server);
	plain_port = bound_port(plain);
	a = connect_port(NULL, NULL);
	ck_assert_int_ge(nc_socket_end_string(a, "hello", NULL), 0);
	ck_assert_int_eq(nc_connect_port(t.base, plain_port, HOST, NULL, NULL,
	    &b), 0);
	nc_socket_resume(b);
	ck_assert_int_ge(nc_socket_end_string(b, "hello", NULL), 0);
	ck_assert(run_until(t.base, &pc.plain_data, 5000));
	/* Paused: nothing read while the plain one got its data. */
	run_for(t.base, 50);
	ck_assert_ptr_nonnull(pc.paused);
	ck_assert_int_eq(pc.paused_data, 0);
	ck_assert_uint_eq(nc_socket_bytes_read(pc.paused), 0);
	nc_socket_resume(pc.paused);
	ck_assert(run_until(t.base, &pc.paused_data, 5000));
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_server_close(plain, NULL, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	nc_server_release(plain);
}
END_TEST

/*
 * test-net-binary.js: the client, at `connect`, writes the 256 byte
 * values from 255 down to 0 as a latin1 string, and for each character
 * it reads back writes one more, 0 up to 255, then ends; the server
 * echoes in latin1. The client reads 512 characters: 255 down to 0, then
 * 0 up to 255. Text in C is UTF-8: a latin1 character above 127 is two
 * bytes of it, and NUL is written by its length, not as a C string.
 */
static struct {
	unsigned char	 recv[512];
	int		 n, j;
} bn;

/* UTF-8 text of latin1 characters to their bytes; the count. */
static size_t
latin1_bytes(const char *text, size_t len, unsigned char *out)
{
	const unsigned char	*p = (const unsigned char *)text;
	size_t			 i, n = 0;

	for (i = 0; i < len; i++) {
		if (p[i] < 0x80)
			out[n++] = p[i];
		else if (i + 1 < len) {
			out[n++] = (unsigned char)(((p[i] & 0x03) << 6) |
			    (p[i + 1] & 0x3f));
			i++;
		}
	}
	return n;
}

static void
binary_echo_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	unsigned char	out[4096];
	size_t		n;

	(void)arg;
	ck_assert_uint_le(ev->len, sizeof out);
	n = latin1_bytes(ev->data, ev->len, out);
	ck_assert_int_ge(nc_socket_write(emitter, out, n, NULL, NULL), 0);
}

static void
binary_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert_int_eq(nc_socket_set_encoding(ev->socket, "latin1"), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_DATA, binary_echo_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END,
	    end_on_end_cb, NULL), 0);
}

static void
binary_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	unsigned char	all[256];
	int		i;

	(void)ev;
	(void)arg;
	for (i = 0; i < 256; i++)
		all[i] = (unsigned char)(255 - i);
	ck_assert_int_ge(nc_socket_write(emitter, all, sizeof all, NULL,
	    NULL), 0);
}

static void
binary_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	unsigned char	got[4096], c;
	size_t		n, k;

	(void)arg;
	ck_assert_uint_le(ev->len, sizeof got);
	n = latin1_bytes(ev->data, ev->len, got);
	for (k = 0; k < n; k++) {
		ck_assert_int_lt(bn.n, 512);
		bn.recv[bn.n++] = got[k];
		if (bn.j < 256) {
			c = (unsigned char)bn.j++;
			ck_assert_int_ge(nc_socket_write(emitter, &c, 1, NULL,
			    NULL), 0);
			if (bn.j == 256)
				ck_assert_int_eq(nc_socket_end(emitter, NULL,
				    0), 0);
		}
	}
}

static void
binary_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

START_TEST(test_net_binary)
{
	struct nc_socket	*s;
	int			 i;

	memset(&bn, 0, sizeof bn);
	server_listen(binary_connection_cb, NULL);
	s = connect_port(binary_connect_cb, NULL);
	ck_assert_int_eq(nc_socket_set_encoding(s, "latin1"), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_DATA, binary_data_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_CLOSE, binary_close_cb, NULL),
	    0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(bn.n, 512);
	for (i = 0; i < 256; i++) {
		ck_assert_int_eq(bn.recv[i], 255 - i);
		ck_assert_int_eq(bn.recv[i + 256], i);
	}
}
END_TEST

/*
 * test-net-server-max-connections.js: maxConnections 10 and 20 clients,
 * the server holding what it takes: 10 clients get "hello", the other
 * 10 are closed without data; then all end.
 */
static struct {
	struct nc_socket	*clients[20];
	int			 hellos, dropped, closes;
	bool			 got[20];
} mc;

static void
max_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert_int_ge(nc_socket_write_string(ev->socket, "hello", NULL,
	    NULL, NULL), 0);
}

static void
max_done(void)
{
	int	i;

	if (mc.hellos + mc.dropped < 20)
		return;
	for (i = 0; i < 20; i++)
		nc_socket_destroy(mc.clients[i]);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
max_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	int	i = (int)(intptr_t)arg;

	(void)emitter;
	ck_assert_str_eq(ev->data, "hello");
	ck_assert(!mc.got[i]);
	mc.got[i] = true;
	mc.hellos++;
	max_done();
}

static void
max_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	int	i = (int)(intptr_t)arg;

	(void)emitter;
	(void)ev;
	mc.closes++;
	if (!mc.got[i] && mc.hellos + mc.dropped < 20) {
		mc.dropped++;
		max_done();
	}
}

START_TEST(test_net_server_max_connections)
{
	int	i;

	memset(&mc, 0, sizeof mc);
	server_listen(max_connection_cb, NULL);
	ck_assert_int_eq(nc_server_set_max_connections(t.server, 10), 0);
	for (i = 0; i < 20; i++) {
		mc.clients[i] = connect_port(NULL, NULL);
		nc_socket_hold(mc.clients[i]);
		ck_assert_int_eq(nc_socket_set_encoding(mc.clients[i], "utf8"),
		    0);
		ck_assert_int_eq(nc_socket_on(mc.clients[i], NC_EV_DATA,
		    max_data_cb, (void *)(intptr_t)i), 0);
		ck_assert_int_eq(nc_socket_on(mc.clients[i], NC_EV_CLOSE,
		    max_close_cb, (void *)(intptr_t)i), 0);
	}
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(mc.hellos, 10);
	ck_assert_int_eq(mc.dropped, 10);
	ck_assert_int_eq(mc.closes, 20);
	for (i = 0; i < 20; i++)
		nc_socket_release(mc.clients[i]);
}
END_TEST

/*
 * test-net-connect-options-port.js, in part: ports -1 and 65536 are
 * ERR_SOCKET_BAD_PORT at the call, in every form, and create nothing.
 */
START_TEST(test_net_connect_options_port)
{
	struct nc_connect_options	 o;
	struct nc_socket		*s;
	int				 bad[] = { -1, 65536 };
	size_t				 i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_int_eq(nc_connect_port(t.base, bad[i], HOST, NULL,
		    NULL, &s), NC_ERR_SOCKET_BAD_PORT);
		ck_assert_ptr_null(s);
		memset(&o, 0, sizeof o);
		o.base = t.base;
		o.port = bad[i];
		ck_assert_int_eq(nc_connect(&o, NULL, NULL, &s),
		    NC_ERR_SOCKET_BAD_PORT);
		s = socket_new();
		ck_assert_int_eq(nc_socket_connect_port(s, bad[i], HOST, NULL,
		    NULL), NC_ERR_SOCKET_BAD_PORT);
		ck_assert(!nc_socket_connecting(s));
		nc_socket_destroy(s);
	}
}
END_TEST

/*
 * test-net-can-reset-timeout.js: the server's connection has
 * setTimeout(100); writing from its `timeout` listener counts as
 * activity; the client ends at the data, and `timeout` came once.
 */
static int	crt_timeouts, crt_client_ends;

static void
crt_timeout_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	crt_timeouts++;
	ck_assert_int_ge(nc_socket_write_string(emitter, "WHAT.", NULL, NULL,
	    NULL), 0);
}

static void
crt_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	/* 100 ms, longer where the tests run slowly (sanitizers,
	 * valgrind): a second `timeout` is what the test looks for. */
	ck_assert_int_eq(nc_socket_set_timeout(ev->socket, scaled_ms(100),
	    NULL, NULL), 0);
	nc_socket_resume(ev->socket);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_TIMEOUT,
	    crt_timeout_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END,
	    end_on_end_cb, NULL), 0);
}

static void
end_on_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ck_assert_int_eq(nc_socket_end(emitter, NULL, 0), 0);
}

static void
close_server_on_end_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)ev;
	if (arg != NULL)
		(*(int *)arg)++;
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

START_TEST(test_net_can_reset_timeout)
{
	struct nc_socket	*c;

	crt_timeouts = crt_client_ends = 0;
	server_listen(crt_connection_cb, NULL);
	c = connect_port(NULL, NULL);
	ck_assert_int_eq(nc_socket_on(c, NC_EV_DATA, end_on_data_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(c, NC_EV_END, close_server_on_end_cb,
	    &crt_client_ends), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(crt_timeouts, 1);
	ck_assert_int_eq(crt_client_ends, 1);
}
END_TEST

/*
 * test-net-large-string.js: 40 * 1024 characters of 'あ' (3 bytes of
 * UTF-8 each) written as utf8, then end(); the server, with
 * setEncoding("utf8"), receives exactly that many characters, however
 * the reads split them.
 */
#define LS_CHARS	(40 * 1024)

static size_t	ls_chars;

static void
ls_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	size_t	i;

	(void)emitter;
	(void)arg;
	for (i = 0; i < ev->len; i++)
		if (((unsigned char)ev->data[i] & 0xc0) != 0x80)
			ls_chars++;	/* a character's first byte */
}

static void
ls_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert_int_eq(nc_socket_set_encoding(ev->socket, "UTF-8"), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_DATA, ls_data_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END,
	    end_on_end_cb, NULL), 0);
}

START_TEST(test_net_large_string)
{
	struct nc_socket	*c;
	char			*data;
	int			 i;

	ls_chars = 0;
	data = malloc(LS_CHARS * 3 + 1);
	ck_assert_ptr_nonnull(data);
	for (i = 0; i < LS_CHARS; i++)
		memcpy(data + i * 3, "\xe3\x81\x82", 3);
	data[LS_CHARS * 3] = '\0';
	server_listen(ls_connection_cb, NULL);
	c = connect_port(NULL, NULL);
	ck_assert_int_eq(nc_socket_on(c, NC_EV_END, close_server_on_end_cb,
	    NULL), 0);
	ck_assert_int_ge(nc_socket_write_string(c, data, "UTF-8", NULL, NULL),
	    0);
	ck_assert_int_eq(nc_socket_end(c, NULL, 0), 0);
	free(data);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_uint_eq(ls_chars, LS_CHARS);
}
END_TEST

/*
 * test-net-connect-paused-connection.js: the server and its connections
 * unref'd, a client that connects paused: the loop ends (a paused
 * socket does not hold it).
 */
static struct nc_socket	*cp_conn;

static void
cp_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	nc_socket_unref(ev->socket);
	cp_conn = ev->socket;
	nc_socket_hold(cp_conn);
}

START_TEST(test_net_connect_paused_connection)
{
	struct nc_socket	*c;

	cp_conn = NULL;
	server_listen(cp_connection_cb, NULL);
	c = connect_port(NULL, NULL);
	nc_socket_hold(c);
	nc_socket_pause(c);
	nc_server_unref(t.server);
	ck_assert_int_eq(nc_run(t.base), 0);	/* it ends */
	ck_assert(!nc_socket_destroyed(c));
	nc_socket_destroy(c);
	nc_socket_release(c);
	if (cp_conn != NULL) {
		nc_socket_destroy(cp_conn);
		nc_socket_release(cp_conn);
	}
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}
END_TEST

/*
 * test-net-socket-local-address.js: one client socket connects twice to
 * 127.0.0.1; each time its local port at `connect` is the server's
 * connection's remote port.
 */
static struct {
	int	server_remote[2], client_local[2];
	int	connections, connects;
} sla;

static void
sla_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	sla.server_remote[sla.connections++] =
	    nc_socket_remote_port(ev->socket);
	nc_socket_resume(ev->socket);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END,
	    end_on_end_cb, NULL), 0);
}

static void
sla_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	sla.client_local[sla.connects++] = nc_socket_local_port(emitter);
	ck_assert_int_eq(nc_socket_end(emitter, NULL, 0), 0);
}

static void
sla_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	if (sla.connects < 2)
		ck_assert_int_eq(nc_socket_connect_port(emitter, t.port, HOST,
		    NULL, NULL), 0);
	else
		ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

START_TEST(test_net_socket_local_address)
{
	struct nc_socket	*c;
	int			 i;

	memset(&sla, 0, sizeof sla);
	server_listen(sla_connection_cb, NULL);
	c = connect_port(NULL, NULL);
	ck_assert_int_eq(nc_socket_on(c, NC_EV_CONNECT, sla_connect_cb, NULL),
	    0);
	ck_assert_int_eq(nc_socket_on(c, NC_EV_CLOSE, sla_close_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(sla.connections, 2);
	ck_assert_int_eq(sla.connects, 2);
	for (i = 0; i < 2; i++) {
		ck_assert_int_gt(sla.client_local[i], 0);
		ck_assert_int_eq(sla.client_local[i], sla.server_remote[i]);
	}
}
END_TEST

/* An `error` listener: counts, checks the code, closes the server. */
struct error_close {
	int	code;
	int	count;
};

static void
error_close_server_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	struct error_close	*e = arg;

	(void)emitter;
	e->count++;
	ck_assert_int_eq(ev->error->code, e->code);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

/*
 * test-net-client-bind-twice.js: a client whose localAddress and
 * localPort are a listening server's: `error` EADDRINUSE, no `connect`.
 */
START_TEST(test_net_client_bind_twice)
{
	struct nc_connect_options	 o;
	struct nc_socket		*c;
	struct error_close		 inuse = { NC_EADDRINUSE, 0 };
	int				 connects = 0;

	server_listen(NULL, NULL);
	memset(&o, 0, sizeof o);
	o.base = t.base;
	o.port = t.port;
	o.host = HOST;
	o.local_address = HOST;
	o.local_port = t.port;
	ck_assert_int_eq(nc_connect(&o, count_cb, &connects, &c), 0);
	ck_assert_int_eq(nc_socket_on(c, NC_EV_ERROR, error_close_server_cb,
	    &inuse), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(connects, 0);
	ck_assert_int_eq(inuse.count, 1);
}
END_TEST

/*
 * test-net-listen-invalid-port.js: a port past 65535 is
 * ERR_SOCKET_BAD_PORT for listen(port), listen(port, host) and
 * listen({port}). (4294967295 is past C's int: INT_MAX and 65536 here.)
 */
START_TEST(test_net_listen_invalid_port)
{
	struct nc_listen_options	o;
	int				bad[] = { 65536, INT_MAX };
	size_t				i;

	t.server = new_server();
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ck_assert_int_eq(nc_server_listen(t.server, bad[i], NULL, 0,
		    NULL, NULL), NC_ERR_SOCKET_BAD_PORT);
		ck_assert_int_eq(nc_server_listen(t.server, bad[i], "0.0.0.0",
		    0, NULL, NULL), NC_ERR_SOCKET_BAD_PORT);
		memset(&o, 0, sizeof o);
		o.port = bad[i];
		ck_assert_int_eq(nc_server_listen_options(t.server, &o, NULL,
		    NULL), NC_ERR_SOCKET_BAD_PORT);
	}
	ck_assert(!nc_server_listening(t.server));
}
END_TEST

/*
 * test-net-listen-fd0.js: listen({fd: 0}), where fd 0 is not a
 * listening socket: no failure at the call, `error` EINVAL or ENOTSOCK
 * after.
 */
/* How many `error`s a test's socket or server emitted, and the last code. */
static int	err_count, err_code;

static void
record_error_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	err_count++;
	err_code = ev->error->code;
}

START_TEST(test_net_listen_fd0)
{
	struct nc_listen_options	o;
	int				null_fd, saved;

	/* fd 0 as the test runs it may be anything: /dev/null here. */
	saved = dup(0);
	ck_assert_int_ge(saved, 0);
	null_fd = open("/dev/null", O_RDONLY);
	ck_assert_int_ge(null_fd, 0);
	ck_assert_int_eq(dup2(null_fd, 0), 0);
	close(null_fd);
	err_count = err_code = 0;
	t.server = new_server();
	ck_assert_int_eq(nc_server_on(t.server, NC_EV_ERROR, record_error_cb,
	    NULL), 0);
	memset(&o, 0, sizeof o);
	o.has_fd = true;
	o.fd = 0;
	ck_assert_int_eq(nc_server_listen_options(t.server, &o, NULL, NULL),
	    0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(err_count, 1);
	ck_assert(err_code == NC_EINVAL || err_code == NC_ENOTSOCK);
	ck_assert_int_eq(dup2(saved, 0), 0);
	close(saved);
}
END_TEST

/*
 * test-net-listen-ipv6only.js: listening on :: with ipv6Only, a
 * connection to 0.0.0.0 on its port is refused.
 */
START_TEST(test_net_listen_ipv6only)
{
	struct nc_listen_options	 o;
	struct nc_socket		*c;
	struct error_close		 refused = { NC_ECONNREFUSED, 0 };
	int				 listening = 0, connects = 0;

	if (!have_ipv6()) {
		fprintf(stderr, "skipped: no IPv6\n");
		return;
	}
	t.server = new_server();
	memset(&o, 0, sizeof o);
	o.host = "::";
	o.ipv6_only = true;
	ck_assert_int_eq(nc_server_listen_options(t.server, &o, count_cb,
	    &listening), 0);
	ck_assert(run_until(t.base, &listening, 5000));
	ck_assert_int_eq(nc_connect_port(t.base, bound_port(t.server),
	    "0.0.0.0", count_cb, &connects, &c), 0);
	ck_assert_int_eq(nc_socket_on(c, NC_EV_ERROR, error_close_server_cb,
	    &refused), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(refused.count, 1);
	ck_assert_int_eq(connects, 0);
}
END_TEST

/*
 * test-net-server-listen-remove-callback.js: the listen callback is a
 * once listener: none is left at `close`, and listening again works.
 */
static int	rc_closes;

static void
rc_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	rc_closes++;
	ck_assert_uint_eq(nc_server_listener_count(emitter, NC_EV_LISTENING),
	    0);
}

static void
rc_close_now_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ck_assert_int_eq(nc_server_close(emitter, NULL, NULL), 0);
}

START_TEST(test_net_server_listen_remove_callback)
{
	rc_closes = 0;
	t.server = new_server();
	ck_assert_int_eq(nc_server_on(t.server, NC_EV_CLOSE, rc_close_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_server_listen(t.server, 0, HOST, 0,
	    rc_close_now_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(nc_server_listen(t.server, 0, HOST, 0,
	    rc_close_now_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(rc_closes, 2);
}
END_TEST

/*
 * test-net-end-destroyed.js: the client end()s at `connect` and the
 * server ends too: at the client's `end` it is not destroyed yet.
 */
static int	ed_ends;

static void
ed_end_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ed_ends++;
	ck_assert(!nc_socket_destroyed(emitter));
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
end_at_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ck_assert_int_eq(nc_socket_end(emitter, NULL, 0), 0);
}

static void
end_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert_int_eq(nc_socket_end(ev->socket, NULL, 0), 0);
}

START_TEST(test_net_end_destroyed)
{
	struct nc_socket	*c;

	ed_ends = 0;
	server_listen(end_connection_cb, NULL);
	c = connect_port(end_at_connect_cb, NULL);
	ck_assert_int_eq(nc_socket_on(c, NC_EV_END, ed_end_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(ed_ends, 1);
}
END_TEST

/*
 * test-net-server-listen-path.js: listen on a unix path, with and
 * without a callback (listen(path) and listen({path})): `listening`,
 * then close.
 */
START_TEST(test_net_server_listen_path)
{
	struct nc_listen_options	 o;
	struct nc_server		*b;
	int				 listening = 0, events = 0;

	t.server = new_server();
	ck_assert_int_eq(nc_server_listen_path(t.server,
	    tmpdir_path("a.sock"), count_cb, &listening), 0);
	b = new_server();
	ck_assert_int_eq(nc_server_on(b, NC_EV_LISTENING, count_cb, &events),
	    0);
	memset(&o, 0, sizeof o);
	o.path = tmpdir_path("b.sock");
	ck_assert_int_eq(nc_server_listen_options(b, &o, NULL, NULL), 0);
	ck_assert(run_until(t.base, &listening, 5000));
	ck_assert(run_until(t.base, &events, 5000));
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_server_close(b, NULL, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	nc_server_release(b);
	tmpdir_cleanup();
}
END_TEST

/*
 * test-net-socket-connect-without-cb.js: socket.connect() without a
 * callback still emits `connect`. test-net-socket-connecting.js:
 * connecting is true right after the call and false at `connect`.
 */
static int	scw_connects;

static void
scw_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	scw_connects++;
	ck_assert(!nc_socket_connecting(emitter));
	nc_socket_destroy(emitter);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

START_TEST(test_net_socket_connect_without_cb)
{
	struct nc_socket	*s = socket_new();

	scw_connects = 0;
	server_listen(NULL, NULL);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_CONNECT, scw_connect_cb, NULL),
	    0);
	ck_assert_int_eq(nc_socket_connect_port(s, t.port, HOST, NULL, NULL),
	    0);
	ck_assert(nc_socket_connecting(s));
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(scw_connects, 1);
}
END_TEST

START_TEST(test_net_socket_connecting)
{
	struct nc_socket	*s;

	scw_connects = 0;
	server_listen(NULL, NULL);
	s = connect_port(scw_connect_cb, NULL);
	ck_assert(nc_socket_connecting(s));
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(scw_connects, 1);
}
END_TEST

/*
 * test-net-eaddrinuse.js: a second server on a port taken: its `error`
 * is EADDRINUSE. test-net-server-try-ports.js: the same, and from that
 * error listener listen(0) works; the message names EADDRINUSE.
 */
static int	ea_errors, ea_listening;

static void
ea_listening_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ea_listening++;
	ck_assert_int_eq(nc_server_close(emitter, NULL, NULL), 0);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
ea_error_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	ea_errors++;
	ck_assert_int_eq(ev->error->code, NC_EADDRINUSE);
	ck_assert_ptr_nonnull(strstr(ev->error->message, "EADDRINUSE"));
	ck_assert_int_eq(nc_server_listen(emitter, 0, HOST, 0,
	    ea_listening_cb, NULL), 0);
}

START_TEST(test_net_eaddrinuse)
{
	struct nc_server	*second;
	int			 errors = 0;

	err_count = err_code = 0;
	server_listen(NULL, NULL);
	second = new_server();
	ck_assert_int_eq(nc_server_on(second, NC_EV_ERROR, count_cb, &errors),
	    0);
	ck_assert_int_eq(nc_server_on(second, NC_EV_ERROR, record_error_cb, NULL),
	    0);
	ck_assert_int_eq(nc_server_listen(second, t.port, HOST, 0, NULL,
	    NULL), 0);
	ck_assert(run_until(t.base, &errors, 5000));
	ck_assert_int_eq(err_code, NC_EADDRINUSE);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	nc_server_release(second);
}
END_TEST

START_TEST(test_net_server_try_ports)
{
	struct nc_server	*second;

	ea_errors = ea_listening = 0;
	server_listen(NULL, NULL);
	second = new_server();
	ck_assert_int_eq(nc_server_on(second, NC_EV_ERROR, ea_error_cb, NULL),
	    0);
	ck_assert_int_eq(nc_server_listen(second, t.port, HOST, 0, NULL,
	    NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(ea_errors, 1);
	ck_assert_int_eq(ea_listening, 1);
	nc_server_release(second);
}
END_TEST

/*
 * test-net-persistent-nodelay.js, test-net-persistent-keepalive.js:
 * setNoDelay(), and setKeepAlive(true, 400), before the connection
 * apply to it once it is made (Node spies on its handle; here the
 * socket's options are read back); with keep-alive the connection stays
 * open past the delay (600 ms).
 */
static int	pk_connects;
static bool	pk_nodelay;

static void
pk_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	pk_connects++;
	if (pk_nodelay)
		ck_assert_int_eq(sockopt(emitter, IPPROTO_TCP, TCP_NODELAY),
		    1);
	else {
		ck_assert_int_eq(sockopt(emitter, SOL_SOCKET, SO_KEEPALIVE),
		    1);
		ck_assert_int_eq(sockopt(emitter, IPPROTO_TCP,
		    TCP_KEEPIDLE), 1);
	}
}

static void
persistent(bool nodelay)
{
	struct nc_socket	*s = socket_new();

	pk_connects = 0;
	pk_nodelay = nodelay;
	server_listen(NULL, NULL);
	nc_socket_hold(s);
	if (nodelay)
		ck_assert_int_eq(nc_socket_set_no_delay(s, true), 0);
	else
		ck_assert_int_eq(nc_socket_set_keep_alive(s, true, 400), 0);
	ck_assert_int_eq(nc_socket_connect_port(s, t.port, HOST,
	    pk_connect_cb, NULL), 0);
	ck_assert(run_until(t.base, &pk_connects, 5000));
	if (!nodelay) {
		run_for(t.base, 600);
		ck_assert(!nc_socket_destroyed(s));
	}
	nc_socket_destroy(s);
	nc_socket_release(s);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
}

START_TEST(test_net_persistent_nodelay)
{
	persistent(true);
}
END_TEST

START_TEST(test_net_persistent_keepalive)
{
	persistent(false);
}
END_TEST

/*
 * test-net-server-unref-persistent.js: unref() before listen() holds:
 * the loop ends with the server listening.
 * test-net-server-close-before-calling-lookup-callback.js: listen(0,
 * "localhost") and close() before the name is resolved: no `listening`,
 * the loop ends.
 */
START_TEST(test_net_server_unref_persistent)
{
	t.server = new_server();
	nc_server_unref(t.server);
	ck_assert_int_eq(nc_server_listen(t.server, 0, HOST, 0, NULL, NULL),
	    0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert(nc_server_listening(t.server));
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}
END_TEST

START_TEST(test_net_server_close_before_calling_lookup_callback)
{
	int	listening = 0;

	t.server = new_server();
	ck_assert_int_eq(nc_server_listen(t.server, 0, "localhost", 0,
	    count_cb, &listening), 0);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(listening, 0);
	ck_assert(!nc_server_listening(t.server));
}
END_TEST

/*
 * test-net-socket-end-callback.js: end() after `connect`, with and
 * without data: its completion (end's callback in Node, `finish` here)
 * comes once each.
 */
static int	sec_finishes;

static void
sec_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	int	form = (int)(intptr_t)arg;

	(void)ev;
	if (form == 0)
		ck_assert_int_eq(nc_socket_end(emitter, NULL, 0), 0);
	else if (form == 1)
		ck_assert_int_ge(nc_socket_end_string(emitter, "foo", NULL), 0);
	else
		ck_assert_int_ge(nc_socket_end_string(emitter, "foo", "utf8"),
		    0);
}

static void
sec_finish_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	if (++sec_finishes == 3)
		ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
resume_end_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)arg;
	nc_socket_resume(ev->socket);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END,
	    end_on_end_cb, NULL), 0);
}

START_TEST(test_net_socket_end_callback)
{
	struct nc_socket	*s;
	int			 i;

	sec_finishes = 0;
	server_listen(resume_end_connection_cb, NULL);
	for (i = 0; i < 3; i++) {
		s = connect_port(sec_connect_cb, (void *)(intptr_t)i);
		ck_assert_int_eq(nc_socket_on(s, NC_EV_FINISH, sec_finish_cb,
		    NULL), 0);
	}
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(sec_finishes, 3);
}
END_TEST

/*
 * test-net-remote-address-port.js: the server's connection has the
 * client's address (127.0.0.1), family and a port other than the
 * server's; the client's remote port is the server's; both still read
 * at `close`.
 */
static struct {
	int	checks;
} rap;

static void
rap_check(struct nc_socket *s, bool server_side)
{
	ck_assert_str_eq(nc_socket_remote_address(s), HOST);
	ck_assert_str_eq(nc_socket_remote_family(s), "IPv4");
	if (server_side)
		ck_assert_int_ne(nc_socket_remote_port(s), t.port);
	else
		ck_assert_int_eq(nc_socket_remote_port(s), t.port);
	rap.checks++;
}

static void
rap_server_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	rap_check(emitter, true);
}

static void
rap_client_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	rap_check(emitter, false);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
rap_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	rap_check(ev->socket, true);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_CLOSE,
	    rap_server_close_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_end(ev->socket, NULL, 0), 0);
}

static void
rap_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	rap_check(emitter, false);
	nc_socket_resume(emitter);
}

START_TEST(test_net_remote_address_port)
{
	struct nc_socket	*c;

	memset(&rap, 0, sizeof rap);
	server_listen(rap_connection_cb, NULL);
	c = connect_port(rap_connect_cb, NULL);
	ck_assert_int_eq(nc_socket_on(c, NC_EV_CLOSE, rap_client_close_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(rap.checks, 4);
}
END_TEST

/* A custom lookup (Node's `lookup` option) answering what arg says. */
struct fake_lookup {
	int		 status;
	const char	*address;
	int		 family;
	int		 calls;
	char		 host[64];
	int		 asked_family;
};

static void
fake_lookup(const char *host, int family, struct nc_lookup_req *req,
    void *arg)
{
	struct fake_lookup	*l = arg;

	l->calls++;
	snprintf(l->host, sizeof l->host, "%s", host);
	l->asked_family = family;
	nc_lookup_done(req, l->status, l->address, l->family);
}

/*
 * test-net-better-error-messages-port-hostname.js and
 * test-net-connect-immediate-finish.js: a host the lookup does not find
 * (v20 mocks the lookup; so here): `error` ENOTFOUND from "getaddrinfo"
 * naming the host, no `connect`; the second with end() at once.
 */
static int	nf_errors;

static void
not_found_error_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	nf_errors++;
	ck_assert_int_eq(ev->error->code, NC_ENOTFOUND);
	ck_assert_str_eq(ev->error->syscall, "getaddrinfo");
	ck_assert_str_eq(ev->error->address, "something.invalid");
}

static void
not_found(bool end_at_once)
{
	struct fake_lookup		 l = { .status = NC_ENOTFOUND };
	struct nc_connect_options	 o;
	struct nc_socket		*s;
	int				 connects = 0;

	nf_errors = 0;
	memset(&o, 0, sizeof o);
	o.base = t.base;
	o.port = 12345;
	o.host = "something.invalid";
	o.lookup = fake_lookup;
	o.lookup_arg = &l;
	ck_assert_int_eq(nc_connect(&o, count_cb, &connects, &s), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_ERROR, not_found_error_cb,
	    NULL), 0);
	if (end_at_once)
		ck_assert_int_eq(nc_socket_end(s, NULL, 0), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(nf_errors, 1);
	ck_assert_int_eq(connects, 0);
	ck_assert_int_eq(l.calls, 1);
}

START_TEST(test_net_better_error_messages_port_hostname)
{
	not_found(false);
}
END_TEST

START_TEST(test_net_connect_immediate_finish)
{
	not_found(true);
}
END_TEST

/*
 * test-net-dns-custom-lookup.js: a custom lookup asked for family 4 and
 * then 6 answers 127.0.0.1 and ::1: `lookup` reports no error, the
 * address and family, and the connection is made.
 * test-net-connect-options-ipv6.js: family 6 with a lookup for "dummy"
 * answering ::1: the lookup is asked "dummy" and 6.
 */
static int	cl_lookups, cl_connections;

static void
cl_lookup_event_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	const struct fake_lookup	*l = arg;

	(void)emitter;
	cl_lookups++;
	ck_assert_ptr_null(ev->error);
	ck_assert_str_eq(ev->address, l->address);
	ck_assert_int_eq(ev->family, l->family);
}

static void
cl_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	cl_connections++;
	nc_socket_destroy(ev->socket);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
custom_lookup(int family, const char *host)
{
	struct fake_lookup		 l = { .status = 0 };
	struct nc_connect_options	 o;
	struct nc_socket		*s;
	int				 listening = 0;

	if (family == 6 && !have_ipv6()) {
		fprintf(stderr, "skipped: no IPv6\n");
		return;
	}
	cl_lookups = cl_connections = 0;
	l.address = family == 6 ? "::1" : HOST;
	l.family = family;
	t.server = new_server();
	ck_assert_int_eq(nc_server_on(t.server, NC_EV_CONNECTION,
	    cl_connection_cb, NULL), 0);
	ck_assert_int_eq(nc_server_listen(t.server, 0, l.address, 0, count_cb,
	    &listening), 0);
	ck_assert(run_until(t.base, &listening, 5000));
	memset(&o, 0, sizeof o);
	o.base = t.base;
	o.port = bound_port(t.server);
	o.host = host;
	o.family = family;
	o.lookup = fake_lookup;
	o.lookup_arg = &l;
	ck_assert_int_eq(nc_connect(&o, NULL, NULL, &s), 0);
	nc_socket_resume(s);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_LOOKUP, cl_lookup_event_cb,
	    &l), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(l.calls, 1);
	ck_assert_str_eq(l.host, host);
	ck_assert_int_eq(l.asked_family, family);
	ck_assert_int_eq(cl_lookups, 1);
	ck_assert_int_eq(cl_connections, 1);
}

START_TEST(test_net_dns_custom_lookup)
{
	custom_lookup(4, "localhost");
}
END_TEST

START_TEST(test_net_connect_options_ipv6)
{
	custom_lookup(6, "dummy");
}
END_TEST

/*
 * test-net-connect-after-destroy.js: connect to a host that needs a
 * lookup and destroy() in the same turn: nothing is emitted once the
 * lookup returns, and nothing fails.
 */
START_TEST(test_net_connect_after_destroy)
{
	struct nc_socket	*s;
	int			 connects = 0, errors = 0, lookups = 0;

	ck_assert_int_eq(nc_connect_port(t.base, 12345, "localhost",
	    count_cb, &connects, &s), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_ERROR, count_cb, &errors), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_LOOKUP, count_cb, &lookups),
	    0);
	nc_socket_destroy(s);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(connects, 0);
	ck_assert_int_eq(errors, 0);
	ck_assert_int_eq(lookups, 0);
}
END_TEST

/*
 * test-net-pingpong.js: over a unix path, 127.0.0.1, localhost and ::1,
 * a client sends "PING" and the allowHalfOpen server answers "PONG", N
 * times; bufferSize stays 0-4; after the client's end() a last PING
 * still gets its PONG; N + 1 PONGs; the server ends at the client's
 * `end`.
 */
#define PP_N	1000

static struct {
	int	pongs, server_pings, sent, closes;
	bool	client_ended;
} pp;

static void
pp_server_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	size_t	i;

	(void)arg;
	for (i = 0; i + 4 <= ev->len; i += 4) {
		ck_assert(memcmp(ev->data + i, "PING", 4) == 0);
		pp.server_pings++;
		ck_assert_uint_le(nc_socket_buffer_size(emitter), 4);
		ck_assert_int_ge(nc_socket_write(emitter, "PONG", 4, NULL,
		    NULL), 0);
	}
}

static void
pp_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert_int_eq(nc_socket_set_no_delay(ev->socket, true), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_DATA,
	    pp_server_data_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END,
	    end_on_end_cb, NULL), 0);
}

static void
pp_client_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	size_t	i;

	(void)arg;
	for (i = 0; i + 4 <= ev->len; i += 4) {
		ck_assert(memcmp(ev->data + i, "PONG", 4) == 0);
		pp.pongs++;
		if (pp.sent < PP_N) {
			pp.sent++;
			ck_assert_int_ge(nc_socket_write(emitter, "PING", 4,
			    NULL, NULL), 0);
		} else if (!pp.client_ended) {
			/* A PING after our own end() still gets a PONG. */
			pp.client_ended = true;
			ck_assert_int_ge(nc_socket_write(emitter, "PING", 4,
			    NULL, NULL), 0);
			ck_assert_int_eq(nc_socket_end(emitter, NULL, 0), 0);
		}
	}
}

static void
pp_client_connect_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)ev;
	(void)arg;
	ck_assert_int_eq(nc_socket_set_no_delay(emitter, true), 0);
	pp.sent = 1;
	ck_assert_int_ge(nc_socket_write(emitter, "PING", 4, NULL, NULL), 0);
}

static void
pp_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert(!ev->had_error);
	pp.closes++;
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
pingpong(const char *path, const char *host)
{
	struct nc_server_options	 o;
	struct nc_socket		*c;
	int				 listening = 0;

	memset(&pp, 0, sizeof pp);
	memset(&o, 0, sizeof o);
	o.base = t.base;
	o.allow_half_open = true;
	t.server = nc_create_server(&o, pp_connection_cb, NULL);
	ck_assert_ptr_nonnull(t.server);
	if (path != NULL)
		ck_assert_int_eq(nc_server_listen_path(t.server, path,
		    count_cb, &listening), 0);
	else
		ck_assert_int_eq(nc_server_listen(t.server, 0, host, 0,
		    count_cb, &listening), 0);
	ck_assert(run_until(t.base, &listening, 5000));
	if (path != NULL)
		ck_assert_int_eq(nc_connect_path(t.base, path,
		    pp_client_connect_cb, NULL, &c), 0);
	else
		ck_assert_int_eq(nc_connect_port(t.base, bound_port(t.server),
		    strcmp(host, "::1") == 0 ? "::1" : "localhost",
		    pp_client_connect_cb, NULL, &c), 0);
	ck_assert_int_eq(nc_socket_on(c, NC_EV_DATA, pp_client_data_cb, NULL),
	    0);
	ck_assert_int_eq(nc_socket_on(c, NC_EV_CLOSE, pp_close_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(pp.pongs, PP_N + 1);
	ck_assert_int_eq(pp.server_pings, PP_N + 1);
	ck_assert_int_eq(pp.closes, 1);
	nc_server_release(t.server);
	t.server = NULL;
}

START_TEST(test_net_pingpong)
{
	pingpong(tmpdir_path("pp.sock"), NULL);
	pingpong(NULL, HOST);
	if (have_ipv6())
		pingpong(NULL, "::1");
	else
		fprintf(stderr, "skipped: no IPv6 (::1)\n");
	tmpdir_cleanup();
}
END_TEST

/*
 * test-net-throttle.js: the server writes 1 KiB chunks until write()
 * says false, two more, and ends; the client pauses at its data for a
 * while (no `data` meanwhile) and resumes, more than once; it receives
 * everything written.
 */
static struct {
	struct nc_socket	*client;
	struct event		*timer;
	size_t			 written, received;
	int			 pauses;
	bool			 paused;
} th;

static void
th_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	th.paused = false;
	nc_socket_resume(th.client);
}

static void
th_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct timeval	tv = { 0, 20000 };

	(void)arg;
	ck_assert(!th.paused);
	th.received += ev->len;
	if (th.pauses < 3) {
		th.pauses++;
		th.paused = true;
		nc_socket_pause(emitter);
		ck_assert_int_eq(evtimer_add(th.timer, &tv), 0);
	}
}

static void
th_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	char	chunk[1024];
	int	i, n;

	(void)emitter;
	(void)arg;
	memset(chunk, 'x', sizeof chunk);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	do {
		n = nc_socket_write(ev->socket, chunk, sizeof chunk, NULL,
		    NULL);
		ck_assert_int_ge(n, 0);
		th.written += sizeof chunk;
	} while (n == 1);
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(nc_socket_write(ev->socket, chunk,
		    sizeof chunk, NULL, NULL), 0);
		th.written += sizeof chunk;
	}
	ck_assert_int_eq(nc_socket_end(ev->socket, NULL, 0), 0);
}

START_TEST(test_net_throttle)
{
	memset(&th, 0, sizeof th);
	th.timer = evtimer_new(t.base, th_resume_cb, NULL);
	ck_assert_ptr_nonnull(th.timer);
	server_listen(th_connection_cb, NULL);
	th.client = connect_port(NULL, NULL);
	ck_assert_int_eq(nc_socket_on(th.client, NC_EV_DATA, th_data_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_gt(th.pauses, 1);
	ck_assert_uint_eq(th.received, th.written);
	event_free(th.timer);
}
END_TEST

/*
 * test-net-after-close.js: once the client's `close` came, setNoDelay,
 * setKeepAlive, bufferSize, pause, resume, address, remoteAddress and
 * remotePort on it do not fail. (Node's remoteAddress there is
 * undefined unless it was read before; here the peer's address, read at
 * connect, stays: a value, not a failure, either way.)
 */
static int	ac_closes;

static void
ac_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct nc_address	a;

	(void)ev;
	(void)arg;
	ac_closes++;
	ck_assert_int_eq(nc_socket_set_no_delay(emitter, true), 0);
	ck_assert_int_eq(nc_socket_set_keep_alive(emitter, true, 0), 0);
	ck_assert_uint_eq(nc_socket_buffer_size(emitter), 0);
	nc_socket_pause(emitter);
	nc_socket_resume(emitter);
	(void)nc_socket_address(emitter, &a);
	(void)nc_socket_remote_address(emitter);
	(void)nc_socket_remote_port(emitter);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

START_TEST(test_net_after_close)
{
	struct nc_socket	*c;

	ac_closes = 0;
	server_listen(end_connection_cb, NULL);
	c = connect_port(NULL, NULL);
	nc_socket_resume(c);
	ck_assert_int_eq(nc_socket_on(c, NC_EV_CLOSE, ac_close_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(ac_closes, 1);
}
END_TEST

/*
 * test-net-pause-resume-connecting.js: five clients paused and resumed
 * in turn before they connect, each sent a line and ended by the
 * server: those left resumed (3) get `data`, those left paused (2) none.
 */
static struct {
	struct nc_socket	*c[5];
	int			 connections, data, resets;
	struct event		*timer;
} prc;

static void
prc_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	/* The paused clients are destroyed with this unread: a reset. */
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_ERROR, count_cb,
	    &prc.resets), 0);
	ck_assert_int_ge(nc_socket_end_string(ev->socket,
	    "This was the year he fell to pieces.", NULL), 0);
	if (++prc.connections == 5)
		ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
prc_done_cb(evutil_socket_t fd, short what, void *arg)
{
	int	i;

	(void)fd;
	(void)what;
	(void)arg;
	for (i = 0; i < 5; i++)
		nc_socket_destroy(prc.c[i]);
}

START_TEST(test_net_pause_resume_connecting)
{
	struct timeval	tv = { 0, 0 };
	int		i;

	memset(&prc, 0, sizeof prc);
	server_listen(prc_connection_cb, NULL);
	for (i = 0; i < 5; i++) {
		prc.c[i] = connect_port(NULL, NULL);
		nc_socket_hold(prc.c[i]);
		ck_assert_int_eq(nc_socket_on(prc.c[i], NC_EV_DATA, count_cb,
		    &prc.data), 0);
	}
	nc_socket_pause(prc.c[0]);		/* pause, resume: data */
	nc_socket_resume(prc.c[0]);
	nc_socket_pause(prc.c[1]);		/* pause: none */
	nc_socket_pause(prc.c[2]);		/* pause, resume, pause: none */
	nc_socket_resume(prc.c[2]);
	nc_socket_pause(prc.c[2]);
	nc_socket_pause(prc.c[3]);		/* pause, resume, pause, */
	nc_socket_resume(prc.c[3]);		/* resume: data */
	nc_socket_pause(prc.c[3]);
	nc_socket_resume(prc.c[3]);
	nc_socket_resume(prc.c[4]);		/* resume: data */
	/* Node's test looks once its run is over; here once the three
	 * resumed ones have their data, and 100 ms on for the others. */
	ck_assert(run_until_count(t.base, &prc.connections, 5, 5000));
	ck_assert(run_until_count(t.base, &prc.data, 3, 5000));
	run_for(t.base, 100);
	prc.timer = evtimer_new(t.base, prc_done_cb, NULL);
	ck_assert_ptr_nonnull(prc.timer);
	ck_assert_int_eq(evtimer_add(prc.timer, &tv), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(prc.connections, 5);
	ck_assert_int_eq(prc.data, 3);
	event_free(prc.timer);
	for (i = 0; i < 5; i++)
		nc_socket_release(prc.c[i]);
}
END_TEST

/*
 * test-net-keepalive.js: the server's connection gets
 * setKeepAlive(true, 50) and both ends setTimeout(0); 100 ms later both
 * are still open; then both end.
 */
static struct nc_socket	*ka_server_side;

static void
ka_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	ka_server_side = ev->socket;
	nc_socket_hold(ka_server_side);
	ck_assert_int_eq(nc_socket_set_keep_alive(ev->socket, true, 50), 0);
	ck_assert_int_eq(nc_socket_set_timeout(ev->socket, 0, NULL, NULL), 0);
	nc_socket_resume(ev->socket);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END,
	    end_on_end_cb, NULL), 0);
}

START_TEST(test_net_keepalive)
{
	struct nc_socket	*c;
	int			 connects = 0;

	ka_server_side = NULL;
	server_listen(ka_connection_cb, NULL);
	c = connect_port(count_cb, &connects);
	nc_socket_hold(c);
	nc_socket_resume(c);
	ck_assert_int_eq(nc_socket_set_timeout(c, 0, NULL, NULL), 0);
	ck_assert(run_until(t.base, &connects, 5000));
	run_for(t.base, 100);
	ck_assert_ptr_nonnull(ka_server_side);
	ck_assert(!nc_socket_destroyed(c));
	ck_assert(!nc_socket_destroyed(ka_server_side));
	ck_assert_int_eq(sockopt(ka_server_side, SOL_SOCKET, SO_KEEPALIVE),
	    1);
	ck_assert_int_eq(nc_socket_end(c, NULL, 0), 0);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	nc_socket_release(c);
	nc_socket_release(ka_server_side);
}
END_TEST

/*
 * test-net-socket-close-after-end.js: both sides end("foo"); the server
 * reads late (100 ms: paused, then resumed, for Node's `readable` and
 * read()); its `end` comes before its `close`.
 */
static struct {
	struct event	*timer;
	struct nc_socket *conn;
	bool		 end_emitted;
	int		 closes;
} sce;

static void
sce_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	nc_socket_resume(sce.conn);
}

static void
sce_end_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	sce.end_emitted = true;
}

static void
sce_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	sce.closes++;
	ck_assert(sce.end_emitted);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
sce_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct timeval	tv = { 0, 100000 };

	(void)emitter;
	(void)arg;
	sce.conn = ev->socket;
	nc_socket_pause(ev->socket);
	ck_assert_int_eq(evtimer_add(sce.timer, &tv), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END, sce_end_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_CLOSE, sce_close_cb,
	    NULL), 0);
	ck_assert_int_ge(nc_socket_end_string(ev->socket, "foo", NULL), 0);
}

static void
sce_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	nc_socket_resume(emitter);
	ck_assert_int_ge(nc_socket_end_string(emitter, "foo", NULL), 0);
}

START_TEST(test_net_socket_close_after_end)
{
	memset(&sce, 0, sizeof sce);
	sce.timer = evtimer_new(t.base, sce_resume_cb, NULL);
	ck_assert_ptr_nonnull(sce.timer);
	server_listen(sce_connection_cb, NULL);
	(void)connect_port(sce_connect_cb, NULL);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(sce.closes, 1);
	event_free(sce.timer);
}
END_TEST

/*
 * test-net-write-slow.js: the server writes 10 x 200,000 bytes with a
 * callback each and ends, with setTimeout(1000) turned off once all ten
 * are flushed (a `timeout` fails the test); the client pauses 20 ms at
 * each `data`: all ten callbacks, and 2,000,000 bytes received.
 */
#define WS_SIZE	200000
#define WS_N	10

static struct {
	struct nc_socket	*client;
	struct event		*timer;
	int			 flushed, timeouts;
	size_t			 received;
} ws;

static void
ws_flushed_cb(struct nc_socket *s, int status, void *arg)
{
	(void)arg;
	ck_assert_int_eq(status, 0);
	if (++ws.flushed == WS_N)
		ck_assert_int_eq(nc_socket_set_timeout(s, 0, NULL, NULL), 0);
}

static void
ws_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	char	*buf;
	int	 i;

	(void)emitter;
	(void)arg;
	buf = malloc(WS_SIZE);
	ck_assert_ptr_nonnull(buf);
	memset(buf, 'a', WS_SIZE);
	ck_assert_int_eq(nc_socket_set_no_delay(ev->socket, true), 0);
	ck_assert_int_eq(nc_socket_set_timeout(ev->socket, scaled_ms(1000),
	    count_cb, &ws.timeouts), 0);
	for (i = 0; i < WS_N; i++)
		ck_assert_int_ge(nc_socket_write(ev->socket, buf, WS_SIZE,
		    ws_flushed_cb, NULL), 0);
	free(buf);
	ck_assert_int_eq(nc_socket_end(ev->socket, NULL, 0), 0);
}

static void
ws_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	nc_socket_resume(ws.client);
}

static void
ws_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct timeval	tv = { 0, 20000 };

	(void)arg;
	ws.received += ev->len;
	nc_socket_pause(emitter);
	ck_assert_int_eq(evtimer_add(ws.timer, &tv), 0);
}

START_TEST(test_net_write_slow)
{
	memset(&ws, 0, sizeof ws);
	ws.timer = evtimer_new(t.base, ws_resume_cb, NULL);
	ck_assert_ptr_nonnull(ws.timer);
	server_listen(ws_connection_cb, NULL);
	ws.client = connect_port(NULL, NULL);
	ck_assert_int_eq(nc_socket_on(ws.client, NC_EV_DATA, ws_data_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_on(ws.client, NC_EV_END,
	    close_server_on_end_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(ws.flushed, WS_N);
	ck_assert_int_eq(ws.timeouts, 0);
	ck_assert_uint_eq(ws.received, (size_t)WS_SIZE * WS_N);
	event_free(ws.timer);
}
END_TEST

/*
 * test-net-pipe-connect-errors.js: connecting to a path that is a
 * regular file fails with ENOTSOCK or ECONNREFUSED, to one that is not
 * there with ENOENT. (Its EACCES case needs a user other than root.)
 */
static int	pce_code, pce_errors;

static void
pce_error_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	pce_errors++;
	pce_code = ev->error->code;
}

static void
pipe_connect(const char *path, int *connects)
{
	struct nc_socket	*s;

	ck_assert_int_eq(nc_connect_path(t.base, path, count_cb, connects,
	    &s), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_ERROR, pce_error_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
}

START_TEST(test_net_pipe_connect_errors)
{
	const char	*file = tmpdir_path("a-file");
	int		 fd, connects = 0;

	fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	pce_errors = 0;
	pipe_connect(file, &connects);
	ck_assert_int_eq(pce_errors, 1);
	ck_assert(pce_code == NC_ENOTSOCK || pce_code == NC_ECONNREFUSED);
	pipe_connect(tmpdir_path("not-there"), &connects);
	ck_assert_int_eq(pce_errors, 2);
	ck_assert_int_eq(pce_code, NC_ENOENT);
	ck_assert_int_eq(connects, 0);
	tmpdir_cleanup();
}
END_TEST

/*
 * test-net-listen-after-destroying-stdin.js: with stdin closed, a
 * server listens, takes a connection (destroys it), and closes.
 */
static void
destroy_and_close_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(*(int *)arg)++;
	nc_socket_destroy(ev->socket);
	ck_assert_int_eq(nc_server_close(emitter, NULL, NULL), 0);
}

START_TEST(test_net_listen_after_destroying_stdin)
{
	int	saved = dup(0), connections = 0;

	ck_assert_int_ge(saved, 0);
	close(0);
	t.server = new_server();
	ck_assert_int_eq(nc_server_on(t.server, NC_EV_CONNECTION,
	    destroy_and_close_cb, &connections), 0);
	server_listen_existing();
	nc_socket_resume(connect_port(NULL, NULL));
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(connections, 1);
	ck_assert_int_eq(dup2(saved, 0), 0);
	close(saved);
}
END_TEST

/*
 * test-net-write-after-end-nt.js: the client end()s at `connect`; at its
 * `end` (the server's FIN) a write returns false and its callback gets
 * EPIPE; `error` comes on a later turn, not inside the write.
 */
static struct {
	int	errors, wcb, wcb_status, ends;
} wae;

static void
wae_error_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	wae.errors++;
	ck_assert_int_eq(ev->error->code, NC_EPIPE);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
wae_write_cb(struct nc_socket *s, int status, void *arg)
{
	(void)s;
	(void)arg;
	wae.wcb++;
	wae.wcb_status = status;
}

static void
wae_end_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	wae.ends++;
	ck_assert_int_eq(nc_socket_write_string(emitter, "hello", NULL,
	    wae_write_cb, NULL), 0);
	ck_assert_int_eq(wae.errors, 0);	/* not yet */
}

static void
wae_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ck_assert_int_eq(nc_socket_on(emitter, NC_EV_ERROR, wae_error_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_on(emitter, NC_EV_END, wae_end_cb, NULL),
	    0);
	ck_assert_int_eq(nc_socket_end(emitter, NULL, 0), 0);
}

START_TEST(test_net_write_after_end_nt)
{
	memset(&wae, 0, sizeof wae);
	server_listen(end_connection_cb, NULL);
	(void)connect_port(wae_connect_cb, NULL);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(wae.ends, 1);
	ck_assert_int_eq(wae.errors, 1);
	ck_assert_int_eq(wae.wcb, 1);
	ck_assert_int_eq(wae.wcb_status, NC_EPIPE);
}
END_TEST

/*
 * test-net-write-after-close.js: the client ends; the server's
 * connection (allowHalfOpen false) closes; a write to it after its
 * `close` gets EPIPE in its callback (Node's writeAfterFIN answers before
 * the destroyed stream does), and no `error` is emitted.
 */
static struct {
	int	errors, wcb, wcb_status;
} wac;

static void
wac_write_cb(struct nc_socket *s, int status, void *arg)
{
	(void)s;
	(void)arg;
	wac.wcb++;
	wac.wcb_status = status;
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
wac_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ck_assert_int_eq(nc_socket_write_string(emitter, "test", NULL,
	    wac_write_cb, NULL), 0);
}

static void
wac_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	nc_socket_resume(ev->socket);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_ERROR, count_cb,
	    &wac.errors), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_CLOSE, wac_close_cb,
	    NULL), 0);
}

START_TEST(test_net_write_after_close)
{
	memset(&wac, 0, sizeof wac);
	server_listen(wac_connection_cb, NULL);
	(void)connect_port(end_at_connect_cb, NULL);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(wac.wcb, 1);
	ck_assert_int_eq(wac.wcb_status, NC_EPIPE);
	ck_assert_int_eq(wac.errors, 0);
}
END_TEST

/*
 * test-net-listen-error.js: listen(1, "1.1.1.1"): `error`, and the
 * listening callback never called (as better-error-messages-listen,
 * without its fields).
 */
START_TEST(test_net_listen_error)
{
	int	listening = 0, errors = 0;

	t.server = new_server();
	ck_assert_int_eq(nc_server_on(t.server, NC_EV_ERROR, count_cb,
	    &errors), 0);
	ck_assert_int_eq(nc_server_listen(t.server, 1, "1.1.1.1", 0, count_cb,
	    &listening), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(errors, 1);
	ck_assert_int_eq(listening, 0);
}
END_TEST

/*
 * test-net-listen-close-server-callback-is-not-function.js: listen(0)
 * and close() at once, with a `close` listener: `close` once, no
 * `listening`.
 */
START_TEST(test_net_listen_close_server_callback_is_not_function)
{
	int	listening = 0, closes = 0;

	listen_close_at_once(NC_EV_CLOSE, &closes, &listening);
	ck_assert_int_eq(closes, 1);
	ck_assert_int_eq(listening, 0);
}
END_TEST

/*
 * test-net-localerror.js: a localAddress that is not an address is
 * refused at the call. Node says ERR_INVALID_IP_ADDRESS; libnetcluster
 * ERR_INVALID_ARG_VALUE (libnetcluster(3)). (The localPort type check is
 * JS's.)
 */
START_TEST(test_net_localerror)
{
	struct nc_connect_options	 o;
	struct nc_socket		*s;

	memset(&o, 0, sizeof o);
	o.base = t.base;
	o.port = 12345;
	o.host = HOST;
	o.local_address = "foobar";
	ck_assert_int_eq(nc_connect(&o, NULL, NULL, &s),
	    NC_ERR_INVALID_ARG_VALUE);
	ck_assert_ptr_null(s);
}
END_TEST

/*
 * test-net-dns-error.js: a host of 64 '*', which the resolver refuses
 * without asking anyone: `lookup` with the error (ENOTFOUND, or
 * EAI_FAIL) and neither address nor family, then `error` with the same
 * code; no `connect`.
 */
static int	de_lookups, de_errors, de_code;

static void
de_lookup_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	de_lookups++;
	ck_assert_ptr_nonnull(ev->error);
	de_code = ev->error->code;
	ck_assert(de_code == NC_ENOTFOUND || strcmp(nc_err_name(de_code),
	    "EAI_FAIL") == 0);
	ck_assert_ptr_null(ev->address);
	ck_assert_int_eq(ev->family, 0);
}

static void
de_error_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	de_errors++;
	ck_assert_int_eq(ev->error->code, de_code);
}

START_TEST(test_net_dns_error)
{
	struct nc_socket	*s;
	char			 host[65];
	int			 connects = 0;

	de_lookups = de_errors = de_code = 0;
	memset(host, '*', 64);
	host[64] = '\0';
	ck_assert_int_eq(nc_connect_port(t.base, 42, host, count_cb,
	    &connects, &s), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_LOOKUP, de_lookup_cb, NULL),
	    0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_ERROR, de_error_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(de_lookups, 1);
	ck_assert_int_eq(de_errors, 1);
	ck_assert_int_eq(connects, 0);
}
END_TEST

/*
 * test-net-end-without-connect.js: end() on a socket that never
 * connected does not fail, emits nothing, and leaves it not writable:
 * a write after it fails with ERR_STREAM_WRITE_AFTER_END in its
 * callback and `error`, then `close` (as node v20.20.2 does here).
 */
static int	ewc_status = 1;

static void
ewc_write_cb(struct nc_socket *s, int status, void *arg)
{
	(void)s;
	(void)arg;
	ewc_status = status;
}

START_TEST(test_net_end_without_connect)
{
	struct nc_socket	*s = socket_new();
	int			 errors = 0, closes = 0, finishes = 0;

	ewc_status = 1;
	ck_assert_int_eq(nc_socket_on(s, NC_EV_ERROR, record_error_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_ERROR, count_cb, &errors), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_CLOSE, count_cb, &closes), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_FINISH, count_cb, &finishes),
	    0);
	ck_assert_int_eq(nc_socket_end(s, NULL, 0), 0);
	run_for(t.base, 10);
	ck_assert_int_eq(errors + closes + finishes, 0);
	ck_assert_int_eq(nc_socket_write(s, "x", 1, ewc_write_cb, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(ewc_status, NC_ERR_STREAM_WRITE_AFTER_END);
	ck_assert_int_eq(errors, 1);
	ck_assert_int_eq(err_code, NC_ERR_STREAM_WRITE_AFTER_END);
	ck_assert_int_eq(closes, 1);
	ck_assert_int_eq(finishes, 0);
}
END_TEST

/*
 * test-net-connect-options-path.js: a unix path connected to in every
 * form: net.connect(path), net.connect({path}), createConnection(path)
 * and ({path}), socket.connect(path) and ({path}), each with and
 * without a connect callback: each `connect` once, twelve connections.
 */
static int	cop_connections, cop_connects;

static void
cop_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	if (++cop_connections == 12)
		ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	ck_assert_int_eq(nc_socket_end(ev->socket, NULL, 0), 0);
}

static void
cop_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	cop_connects++;
	nc_socket_resume(emitter);
}

START_TEST(test_net_connect_options_path)
{
	struct nc_connect_options	 o;
	struct nc_socket		*s;
	const char			*path = tmpdir_path("cop.sock");
	int				 listening = 0, i, with;

	cop_connections = cop_connects = 0;
	t.server = new_server();
	ck_assert_int_eq(nc_server_on(t.server, NC_EV_CONNECTION,
	    cop_connection_cb, NULL), 0);
	ck_assert_int_eq(nc_server_listen_path(t.server, path, count_cb,
	    &listening), 0);
	ck_assert(run_until(t.base, &listening, 5000));
	memset(&o, 0, sizeof o);
	o.base = t.base;
	o.path = path;
	for (i = 0; i < 12; i++) {
		with = i % 2;
		switch (i / 2) {
		case 0:
			ck_assert_int_eq(nc_connect_path(t.base, path, NULL,
			    NULL, &s), 0);
			break;
		case 1:
			ck_assert_int_eq(nc_connect(&o, NULL, NULL, &s), 0);
			break;
		case 2:
			ck_assert_int_eq(nc_create_connection_path(t.base,
			    path, NULL, NULL, &s), 0);
			break;
		case 3:
			ck_assert_int_eq(nc_create_connection(&o, NULL, NULL,
			    &s), 0);
			break;
		case 4:
			s = socket_new();
			ck_assert_int_eq(nc_socket_connect_path(s, path, NULL,
			    NULL), 0);
			break;
		default:
			s = socket_new();
			ck_assert_int_eq(nc_socket_connect(s, &o, NULL, NULL),
			    0);
			break;
		}
		/* With a callback: as the listener of `connect`, once. */
		ck_assert_int_eq(with ? nc_socket_once(s, NC_EV_CONNECT,
		    cop_connect_cb, NULL) : nc_socket_on(s, NC_EV_CONNECT,
		    cop_connect_cb, NULL), 0);
	}
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(cop_connections, 12);
	ck_assert_int_eq(cop_connects, 12);
	tmpdir_cleanup();
}
END_TEST

/*
 * test-net-persistent-ref-unref.js: unref() and then ref() before the
 * connection: the socket is ref'd once connected, so the loop goes on
 * until it ends (Node counts its handle's ref and unref; here the loop
 * is seen not to end before the server's `end`).
 */
static int	pru_ends;

START_TEST(test_net_persistent_ref_unref)
{
	struct nc_socket	*s = socket_new();

	pru_ends = 0;
	server_listen(resume_end_connection_cb, NULL);
	nc_server_unref(t.server);
	nc_socket_unref(s);
	nc_socket_ref(s);
	ck_assert_int_eq(nc_socket_connect_port(s, t.port, HOST,
	    end_at_connect_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_END, count_cb, &pru_ends), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(pru_ends, 1);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}
END_TEST

/*
 * test-net-socket-timeout-unref.js: unref'd sockets with timeouts of
 * seconds, to an unref'd server whose connections are unref'd: the loop
 * ends at once, and no `timeout` comes.
 */
static void
stu_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert_int_ge(nc_socket_write_string(ev->socket, "hello", NULL,
	    NULL, NULL), 0);
	nc_socket_unref(ev->socket);
}

START_TEST(test_net_socket_timeout_unref)
{
	struct nc_socket	*s[6];
	int			 timeouts = 0, i;

	server_listen(stu_connection_cb, NULL);
	nc_server_unref(t.server);
	for (i = 0; i < 6; i++) {
		s[i] = connect_port(NULL, NULL);
		nc_socket_hold(s[i]);
		ck_assert_int_eq(nc_socket_set_timeout(s[i], 2000 + i * 1000,
		    count_cb, &timeouts), 0);
		nc_socket_unref(s[i]);
	}
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(timeouts, 0);
	for (i = 0; i < 6; i++) {
		nc_socket_destroy(s[i]);
		nc_socket_release(s[i]);
	}
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}
END_TEST

/*
 * test-net-stream.js: the server writes 10 x 2,000,000 bytes and ends;
 * the client pauses at its first `data` and is destroyed 20 ms later:
 * the server's connection emits one `error` (EPIPE or ECONNRESET), then
 * `close`, and the server closes.
 */
static struct {
	struct nc_socket	*client;
	struct event		*timer;
	int			 errors, closes, code;
} st;

static void
st_error_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	st.errors++;
	st.code = ev->error->code;
}

static void
st_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	st.closes++;
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
st_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	char	*buf;
	int	 i;

	(void)emitter;
	(void)arg;
	ck_assert_int_eq(nc_socket_set_no_delay(ev->socket, true), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_ERROR, st_error_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_CLOSE, st_close_cb,
	    NULL), 0);
	buf = malloc(2000000);
	ck_assert_ptr_nonnull(buf);
	memset(buf, 'a', 2000000);
	for (i = 0; i < 10; i++)
		(void)nc_socket_write(ev->socket, buf, 2000000, NULL, NULL);
	free(buf);
	(void)nc_socket_end(ev->socket, NULL, 0);
}

static void
st_destroy_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	nc_socket_destroy(st.client);
}

static void
st_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct timeval	tv = { 0, 20000 };

	(void)ev;
	(void)arg;
	if (nc_socket_is_paused(emitter))
		return;
	nc_socket_pause(emitter);
	ck_assert_int_eq(evtimer_add(st.timer, &tv), 0);
}

START_TEST(test_net_stream)
{
	memset(&st, 0, sizeof st);
	st.timer = evtimer_new(t.base, st_destroy_cb, NULL);
	ck_assert_ptr_nonnull(st.timer);
	server_listen(st_connection_cb, NULL);
	st.client = connect_port(NULL, NULL);
	ck_assert_int_eq(nc_socket_on(st.client, NC_EV_DATA, st_data_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(st.errors, 1);
	ck_assert(st.code == NC_EPIPE || st.code == NC_ECONNRESET);
	ck_assert_int_eq(st.closes, 1);
	event_free(st.timer);
}
END_TEST

/*
 * test-net-write-fully-async-buffer.js and -hex-string.js: the client
 * writes a chunk again and again until write() says false, goes on at
 * each `drain`, for many rounds (200 of 1 MiB; 20 of a 2,000,000-digit
 * hex string, 1 MB), and the server reads everything; then destroy.
 * (The buffer test's V8 GC part is JS's.)
 */
static struct {
	const char	*chunk;
	size_t		 len;
	const char	*encoding;
	int		 rounds, done;
	size_t		 written, read;
	struct nc_socket *client;
} wfa;

static void
wfa_write_more(struct nc_socket *s)
{
	int	n;

	while (wfa.done < wfa.rounds) {
		wfa.done++;
		if (wfa.encoding != NULL)
			n = nc_socket_write_string(s, wfa.chunk, wfa.encoding,
			    NULL, NULL);
		else
			n = nc_socket_write(s, wfa.chunk, wfa.len, NULL, NULL);
		ck_assert_int_ge(n, 0);
		wfa.written += wfa.encoding != NULL ? wfa.len / 2 : wfa.len;
		if (n == 0)
			return;		/* at `drain` */
	}
	ck_assert_int_eq(nc_socket_end(s, NULL, 0), 0);
}

static void
wfa_drain_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	wfa_write_more(emitter);
}

static void
wfa_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	wfa_write_more(emitter);
}

static void
wfa_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	wfa.read += ev->len;
}

static void
wfa_end_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	nc_socket_destroy(emitter);
	ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
wfa_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_DATA, wfa_data_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END, wfa_end_cb,
	    NULL), 0);
}

static void
write_fully_async(const char *chunk, size_t len, const char *encoding,
    int rounds)
{
	memset(&wfa, 0, sizeof wfa);
	wfa.chunk = chunk;
	wfa.len = len;
	wfa.encoding = encoding;
	wfa.rounds = rounds;
	server_listen(wfa_connection_cb, NULL);
	wfa.client = connect_port(wfa_connect_cb, NULL);
	ck_assert_int_eq(nc_socket_on(wfa.client, NC_EV_DRAIN, wfa_drain_cb,
	    NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(wfa.done, rounds);
	ck_assert_uint_eq(wfa.read, wfa.written);
}

START_TEST(test_net_write_fully_async_buffer)
{
	char	*chunk = malloc(1024 * 1024);

	ck_assert_ptr_nonnull(chunk);
	memset(chunk, 0x42, 1024 * 1024);
	write_fully_async(chunk, 1024 * 1024, NULL, 200);
	free(chunk);
}
END_TEST

START_TEST(test_net_write_fully_async_hex_string)
{
	char	*hex = malloc(2000000 + 1);

	ck_assert_ptr_nonnull(hex);
	memset(hex, 'a', 2000000);
	hex[2000000] = '\0';
	write_fully_async(hex, 2000000, "hex", 20);
	free(hex);
}
END_TEST

/*
 * test-net-server-listen-handle.js: listening on a socket already bound
 * (TCP and unix), by its fd, gives `listening`; on the fd of a regular
 * file, `error` EINVAL from "listen". (Node makes its handles with
 * internal bindings; here plain sockets.)
 */
static int	slh_errors, slh_code;

static void
slh_error_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	slh_errors++;
	slh_code = ev->error->code;
	ck_assert_str_eq(ev->error->syscall, "listen");
}

START_TEST(test_net_server_listen_handle)
{
	struct sockaddr_in	 sin;
	struct sockaddr_un	 sun;
	struct nc_server	*a, *b, *c;
	int			 fd_tcp, fd_unix, fd_file, listening = 0;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd_tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd_tcp, 0);
	ck_assert_int_eq(bind(fd_tcp, (struct sockaddr *)&sin, sizeof sin), 0);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s",
	    tmpdir_path("h.sock"));
	fd_unix = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd_unix, 0);
	ck_assert_int_eq(bind(fd_unix, (struct sockaddr *)&sun, sizeof sun),
	    0);
	fd_file = open(tmpdir_path("a-file"), O_RDWR | O_CREAT | O_CLOEXEC,
	    0600);
	ck_assert_int_ge(fd_file, 0);
	slh_errors = slh_code = 0;
	a = new_server();
	b = new_server();
	c = new_server();
	ck_assert_int_eq(nc_server_listen_handle(a, fd_tcp, count_cb,
	    &listening), 0);
	ck_assert_int_eq(nc_server_listen_handle(b, fd_unix, count_cb,
	    &listening), 0);
	ck_assert_int_eq(nc_server_on(c, NC_EV_ERROR, slh_error_cb, NULL), 0);
	ck_assert_int_eq(nc_server_listen_handle(c, fd_file, count_cb,
	    &listening), 0);
	ck_assert(run_until_count(t.base, &listening, 2, 5000));
	ck_assert(run_until(t.base, &slh_errors, 5000));
	ck_assert_int_eq(slh_code, NC_EINVAL);
	ck_assert_int_eq(nc_server_close(a, NULL, NULL), 0);
	ck_assert_int_eq(nc_server_close(b, NULL, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(listening, 2);
	nc_server_release(a);
	nc_server_release(b);
	nc_server_release(c);
	close(fd_file);
	tmpdir_cleanup();
}
END_TEST

/*
 * test-net-connect-options-allowhalfopen.js: an allowHalfOpen server
 * end()s each connection at once; its clients, made allowHalfOpen in
 * each form that takes the option (connect, createConnection, a socket
 * of its own), get `end` once and are still writable 50 ms later (the
 * write goes through), then end; the server sees each end once.
 */
#define AHO_N	3

static struct {
	struct nc_socket	*c[AHO_N];
	struct event		*timer;
	int			 client_ends, server_ends, writes_ok, closes;
} aho;

static void
aho_server_end_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	if (++aho.server_ends == AHO_N)
		ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
}

static void
aho_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	nc_socket_resume(ev->socket);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END,
	    aho_server_end_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_end(ev->socket, NULL, 0), 0);
}

static void
aho_write_cb(struct nc_socket *s, int status, void *arg)
{
	(void)arg;
	ck_assert_int_eq(status, 0);
	aho.writes_ok++;
	ck_assert_int_eq(nc_socket_end(s, NULL, 0), 0);
}

static void
aho_later_cb(evutil_socket_t fd, short what, void *arg)
{
	int	i;

	(void)fd;
	(void)what;
	(void)arg;
	for (i = 0; i < AHO_N; i++) {
		ck_assert(!nc_socket_destroyed(aho.c[i]));
		ck_assert_int_eq(nc_socket_write_string(aho.c[i], "hello",
		    NULL, aho_write_cb, NULL), 1);
	}
}

static void
aho_client_end_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct timeval	tv = { 0, 50000 };

	(void)emitter;
	(void)ev;
	(void)arg;
	if (++aho.client_ends == AHO_N)
		ck_assert_int_eq(evtimer_add(aho.timer, &tv), 0);
}

START_TEST(test_net_connect_options_allowhalfopen)
{
	struct nc_server_options	 so;
	struct nc_socket_options	 sko;
	struct nc_connect_options	 o;
	int				 i;

	memset(&aho, 0, sizeof aho);
	aho.timer = evtimer_new(t.base, aho_later_cb, NULL);
	ck_assert_ptr_nonnull(aho.timer);
	memset(&so, 0, sizeof so);
	so.base = t.base;
	so.allow_half_open = true;
	t.server = nc_create_server(&so, aho_connection_cb, NULL);
	ck_assert_ptr_nonnull(t.server);
	server_listen_existing();
	memset(&o, 0, sizeof o);
	o.base = t.base;
	o.port = t.port;
	o.host = HOST;
	o.allow_half_open = true;
	ck_assert_int_eq(nc_connect(&o, NULL, NULL, &aho.c[0]), 0);
	ck_assert_int_eq(nc_create_connection(&o, NULL, NULL, &aho.c[1]), 0);
	memset(&sko, 0, sizeof sko);
	sko.base = t.base;
	sko.allow_half_open = true;
	aho.c[2] = nc_socket_new(&sko);
	ck_assert_ptr_nonnull(aho.c[2]);
	ck_assert_int_eq(nc_socket_connect(aho.c[2], &o, NULL, NULL), 0);
	for (i = 0; i < AHO_N; i++) {
		nc_socket_resume(aho.c[i]);
		ck_assert_int_eq(nc_socket_on(aho.c[i], NC_EV_END,
		    aho_client_end_cb, NULL), 0);
		ck_assert_int_eq(nc_socket_on(aho.c[i], NC_EV_CLOSE, count_cb,
		    &aho.closes), 0);
	}
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_int_eq(aho.client_ends, AHO_N);
	ck_assert_int_eq(aho.writes_ok, AHO_N);
	ck_assert_int_eq(aho.server_ends, AHO_N);
	ck_assert_int_eq(aho.closes, AHO_N);
	event_free(aho.timer);
}
END_TEST

/*
 * test-net-server-listen-options.js, in part: listen(0) and listen({})
 * pick a port; -1 and 65536 are ERR_SOCKET_BAD_PORT. (The non-number
 * and non-integer ports are JS's; its port-and-path case is left.)
 */
START_TEST(test_net_server_listen_options)
{
	struct nc_listen_options	 o;
	struct nc_server		*s[3];
	int				 listening = 0, i;

	for (i = 0; i < 3; i++)
		s[i] = new_server();
	ck_assert_int_eq(nc_server_listen(s[0], 0, NULL, 0, count_cb,
	    &listening), 0);
	memset(&o, 0, sizeof o);
	ck_assert_int_eq(nc_server_listen_options(s[1], &o, count_cb,
	    &listening), 0);
	ck_assert_int_eq(nc_server_listen(s[2], -1, NULL, 0, NULL, NULL),
	    NC_ERR_SOCKET_BAD_PORT);
	ck_assert_int_eq(nc_server_listen(s[2], 65536, NULL, 0, NULL, NULL),
	    NC_ERR_SOCKET_BAD_PORT);
	ck_assert(run_until_count(t.base, &listening, 2, 5000));
	for (i = 0; i < 2; i++)
		ck_assert_int_gt(bound_port(s[i]), 0);
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(nc_server_close(s[i], NULL, NULL), 0);
	ck_assert_int_eq(nc_run(t.base), 0);
	for (i = 0; i < 3; i++)
		nc_server_release(s[i]);
}
END_TEST

/*
 * test-net-server-max-connections-close-makes-more-available.js:
 * maxConnections 1; connection 0 is served, 1 is turned away; once 0 has
 * ended, 2 is served and 3 turned away: the server read "0" and "2".
 */
static struct {
	struct nc_socket	*c[4];
	char			 received[8];
	int			 closed[4], resets;
} mm;

static void mm_next(void);

static void
mm_server_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	strncat(mm.received, ev->data, sizeof mm.received -
	    strlen(mm.received) - 1);
	mm_next();
}

static void
mm_connection_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	ck_assert_int_eq(nc_socket_set_encoding(ev->socket, "utf8"), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_DATA,
	    mm_server_data_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(ev->socket, NC_EV_END,
	    end_on_end_cb, NULL), 0);
}

static void
mm_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	char	msg[2] = { (char)('0' + (int)(intptr_t)arg), '\0' };

	(void)ev;
	(void)nc_socket_write_string(emitter, msg, NULL, NULL, NULL);
}

static void
mm_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	mm.closed[(int)(intptr_t)arg]++;
	mm_next();
}

static void
mm_connect(int i)
{
	mm.c[i] = connect_port(mm_connect_cb, (void *)(intptr_t)i);
	nc_socket_resume(mm.c[i]);
	/* A turned-away client may see a reset: not an error of the test. */
	ck_assert_int_eq(nc_socket_on(mm.c[i], NC_EV_ERROR, count_cb,
	    &mm.resets), 0);
	ck_assert_int_eq(nc_socket_on(mm.c[i], NC_EV_CLOSE, mm_close_cb,
	    (void *)(intptr_t)i), 0);
}

/* The next step, once what the last one waited for came. */
static void
mm_next(void)
{
	if (strcmp(mm.received, "0") == 0 && mm.c[1] == NULL)
		mm_connect(1);			/* 0 served: try 1 */
	else if (mm.c[1] != NULL && mm.closed[1] && mm.c[2] == NULL &&
	    !mm.closed[0] && mm.c[0] != NULL) {
		ck_assert_int_eq(nc_socket_end(mm.c[0], NULL, 0), 0);
		mm.c[2] = mm.c[0];		/* ending 0: wait for it */
	} else if (mm.closed[0] && mm.c[2] == mm.c[0]) {
		mm.c[2] = NULL;
		mm_connect(2);			/* 0 gone: 2 */
	} else if (strcmp(mm.received, "02") == 0 && mm.c[3] == NULL)
		mm_connect(3);			/* 2 served: try 3 */
	else if (mm.c[3] != NULL && mm.closed[3] && !mm.closed[2] &&
	    mm.c[2] != NULL) {
		ck_assert_int_eq(nc_socket_end(mm.c[2], NULL, 0), 0);
		ck_assert_int_eq(nc_server_close(t.server, NULL, NULL), 0);
	}
}

START_TEST(test_net_server_max_connections_close_makes_more_available)
{
	memset(&mm, 0, sizeof mm);
	server_listen(mm_connection_cb, NULL);
	ck_assert_int_eq(nc_server_set_max_connections(t.server, 1), 0);
	mm_connect(0);
	ck_assert_int_eq(nc_run(t.base), 0);
	ck_assert_str_eq(mm.received, "02");
	ck_assert_int_eq(mm.closed[0] + mm.closed[1] + mm.closed[2] +
	    mm.closed[3], 4);
}
END_TEST

/*
 * Every port, each in a test case of its own named for it
 * (test_net_reconnect for test-net-reconnect.js), so that one can be run
 * alone: CK_RUN_CASE=test_net_reconnect tests/check_node_net, as
 * tests/node-originals.sh does beside Node's original.
 */
static Suite *
node_net_suite(void)
{
	const TTest	*ports[] = {
		test_net_reconnect,
		test_net_bytes_stats,
		test_net_bytes_read,
		test_net_server_close,
		test_net_allow_half_open,
		test_net_socket_byteswritten,
		test_net_server_call_listen_multiple_times,
		test_net_connect_buffer,
		test_net_write_cb_on_destroy_before_connect,
		test_net_socket_destroy_send,
		test_net_better_error_messages_listen,
		test_net_server_drop_connections,
		test_net_writable,
		test_net_connect_no_arg,
		test_net_socket_destroy_twice,
		test_net_bytes_written_large,
		test_net_error_twice,
		test_net_bind_twice,
		test_net_buffersize,
		test_net_connect_destroy,
		test_net_connect_immediate_destroy,
		test_net_dns_lookup,
		test_net_dns_lookup_skip,
		test_net_remote_address,
		test_net_during_close,
		test_net_listen_close_server,
		test_net_listening,
		test_net_local_address_port,
		test_net_socket_end_before_connect,
		test_net_settimeout,
		test_net_timeout_no_handle,
		test_net_write_connect_write,
		test_net_server_unref,
		test_net_better_error_messages_path,
		test_net_better_error_messages_listen_path,
		test_net_socket_timeout,
		test_net_server_pause_on_connect,
		test_net_binary,
		test_net_server_max_connections,
		test_net_connect_options_port,
		test_net_can_reset_timeout,
		test_net_large_string,
		test_net_connect_paused_connection,
		test_net_socket_local_address,
		test_net_client_bind_twice,
		test_net_listen_invalid_port,
		test_net_listen_fd0,
		test_net_listen_ipv6only,
		test_net_server_listen_remove_callback,
		test_net_end_destroyed,
		test_net_server_listen_path,
		test_net_socket_connect_without_cb,
		test_net_socket_connecting,
		test_net_server_try_ports,
		test_net_persistent_nodelay,
		test_net_persistent_keepalive,
		test_net_eaddrinuse,
		test_net_server_unref_persistent,
		test_net_server_close_before_calling_lookup_callback,
		test_net_socket_end_callback,
		test_net_remote_address_port,
		test_net_better_error_messages_port_hostname,
		test_net_connect_immediate_finish,
		test_net_dns_custom_lookup,
		test_net_connect_options_ipv6,
		test_net_connect_after_destroy,
		test_net_pingpong,
		test_net_throttle,
		test_net_after_close,
		test_net_pause_resume_connecting,
		test_net_keepalive,
		test_net_socket_close_after_end,
		test_net_write_slow,
		test_net_pipe_connect_errors,
		test_net_listen_after_destroying_stdin,
		test_net_write_after_end_nt,
		test_net_write_after_close,
		test_net_listen_error,
		test_net_connect_buffer2,
		test_net_listen_close_server_callback_is_not_function,
		test_net_localerror,
		test_net_dns_error,
		test_net_end_without_connect,
		test_net_connect_options_path,
		test_net_persistent_ref_unref,
		test_net_socket_timeout_unref,
		test_net_stream,
		test_net_write_fully_async_buffer,
		test_net_write_fully_async_hex_string,
		test_net_server_listen_handle,
		test_net_connect_options_allowhalfopen,
		test_net_server_listen_options,
		test_net_server_max_connections_close_makes_more_available,
	};
	Suite		*s = suite_create("node-net");

	add_cases(s, ports, sizeof ports / sizeof ports[0], setup, teardown,
	    scaled_ms(30000) / 1000);
	return s;
}

int
main(void)
{
	return run_suite(node_net_suite());
}
