/*
 * Sockets: connect in its three forms and through nc_socket_new, lookups,
 * writes and backpressure, end() and half-open, destroy, pause, timeouts,
 * socket options, encodings, addresses and counters, fd sockets, ref and
 * unref, listeners. Where Node has a test for a behaviour, the test here
 * runs the same scenario and makes the same assertions (named above each
 * test).
 *
 * Every test runs on a fresh event_base on loopback only, waits with a
 * bound, and checks in its teardown that the loop drained, that nothing
 * is left on the base and that no fd leaked.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "helpers.h"
#include "nc-int.h"		/* nc__lookup_start() */

#define WAIT		5000	/* ms (scaled): the bound of every wait */
#define MAX_PEERS	32
#define MAX_RAWS	16
#define MAX_WCB		64
#define HWM		16384	/* Node's default highWaterMark */

/* One socket under test and what it saw. */
struct peer {
	struct nc_socket	*s;
	struct recorder		 rec;		/* event order and counts */
	struct evbuffer		*in;		/* what `data` delivered */
	int			 nbytes;
	int			 data_events;
	bool			 discard;	/* count the bytes, keep none */
	bool			 text;		/* expect NUL-terminated text */
	bool			 echo;		/* write back what arrives */
	bool			 destroy_on_data;

	/* The last `error`. */
	int			 err_code;
	bool			 err_has_syscall;
	char			 err_syscall[32];
	bool			 err_has_address;
	char			 err_address[NC_ADDRSTRLEN];
	int			 err_port;
	char			 err_message[256];

	/* The last `lookup`. */
	int			 lookup_err;
	bool			 lookup_address_null;
	char			 lookup_address[NC_ADDRSTRLEN];
	int			 lookup_family;
	char			 lookup_host[256];

	/* The connect listener given to connect(). */
	int			 connect_cb_calls;

	/* A sender that honours backpressure (pump()). */
	const unsigned char	*src;
	size_t			 total, sent, chunk;
	bool			 end_after;
};

/* A plain fd on the other side: reads into buf when started. */
struct raw {
	int			 fd;
	struct event		*ev;
	struct evbuffer		*buf;
	int			 nread;
	int			 eof;
};

static struct {
	struct event_base	*base;
	int			 fds;
	struct nc_server	*server;
	struct nc_server	*server2;	/* a second one, if any */
	int			 port;
	int			 listening;
	struct peer		*peers[MAX_PEERS];
	int			 npeers;
	struct peer		*accepted[MAX_PEERS];
	int			 connections;
	void			(*on_connection)(struct peer *);
	struct raw		 raws[MAX_RAWS];
	int			 nraws;
	struct event		*timers[4];
	int			 ntimers;

	/* Write callbacks, in the order they ran. */
	int			 wcb_n;
	intptr_t		 wcb_id[MAX_WCB];
	int			 wcb_status[MAX_WCB];

	/* The library's log. */
	char			 log[4096];
	int			 log_lines;
} fx;

/* Fixture. */

static void
setup(void)
{
	memset(&fx, 0, sizeof fx);
	fx.fds = fd_count();
	fx.base = event_base_new();
	ck_assert_ptr_nonnull(fx.base);
}

static void
teardown(void)
{
	int	i;

	for (i = 0; i < fx.npeers; i++)
		if (fx.peers[i]->s != NULL)
			nc_socket_destroy(fx.peers[i]->s);
	if (fx.server != NULL)
		(void)nc_server_close(fx.server, NULL, NULL);
	if (fx.server2 != NULL)
		(void)nc_server_close(fx.server2, NULL, NULL);
	for (i = 0; i < fx.ntimers; i++)
		event_free(fx.timers[i]);
	for (i = 0; i < fx.nraws; i++) {
		if (fx.raws[i].ev != NULL)
			event_free(fx.raws[i].ev);
		if (fx.raws[i].fd != -1)
			close(fx.raws[i].fd);
		evbuffer_free(fx.raws[i].buf);
	}
	/* Everything is closing: the loop must run dry by itself. */
	ck_assert_int_eq(nc_run(fx.base), 0);
	for (i = 0; i < fx.npeers; i++) {
		if (fx.peers[i]->s != NULL) {
			ck_assert(nc_socket_destroyed(fx.peers[i]->s));
			ck_assert_int_eq(
			    fx.peers[i]->rec.counts[NC_EV_CLOSE], 1);
			nc_socket_release(fx.peers[i]->s);
		}
		evbuffer_free(fx.peers[i]->in);
		free(fx.peers[i]);
	}
	nc_server_release(fx.server);
	nc_server_release(fx.server2);
	ck_assert_int_eq(event_base_get_num_events(fx.base,
	    EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE), 0);
	event_base_free(fx.base);
	nc_set_log_cb(NULL, NULL);
	tmpdir_cleanup();
	ck_assert_int_eq(fd_count(), fx.fds);
}

/* Peers. */

static void
peer_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct peer	*p = arg;

	ck_assert_ptr_eq(emitter, p->s);
	ck_assert_int_eq(ev->event, NC_EV_DATA);
	ck_assert_ptr_nonnull(ev->data);
	if (p->text)
		ck_assert_int_eq(ev->data[ev->len], '\0');
	p->data_events++;
	p->nbytes += (int)ev->len;
	if (!p->discard)
		ck_assert_int_eq(evbuffer_add(p->in, ev->data, ev->len), 0);
	if (p->echo && nc_socket_write(p->s, ev->data, ev->len, NULL,
	    NULL) == 0)
		nc_socket_pause(p->s);
	if (p->destroy_on_data)
		nc_socket_destroy(p->s);
}

static void
peer_error_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct peer		*p = arg;
	const struct nc_error	*e = ev->error;

	ck_assert_ptr_eq(emitter, p->s);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_lt(e->code, 0);
	p->err_code = e->code;
	p->err_has_syscall = e->syscall != NULL;
	snprintf(p->err_syscall, sizeof p->err_syscall, "%s",
	    e->syscall != NULL ? e->syscall : "");
	p->err_has_address = e->address != NULL;
	snprintf(p->err_address, sizeof p->err_address, "%s",
	    e->address != NULL ? e->address : "");
	p->err_port = e->port;
	ck_assert_ptr_nonnull(e->message);
	snprintf(p->err_message, sizeof p->err_message, "%s", e->message);
}

static void
peer_lookup_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct peer	*p = arg;

	ck_assert_ptr_eq(emitter, p->s);
	p->lookup_err = ev->error != NULL ? ev->error->code : 0;
	p->lookup_address_null = ev->address == NULL;
	snprintf(p->lookup_address, sizeof p->lookup_address, "%s",
	    ev->address != NULL ? ev->address : "");
	p->lookup_family = ev->family;
	snprintf(p->lookup_host, sizeof p->lookup_host, "%s",
	    ev->host != NULL ? ev->host : "(null)");
}

static void
peer_drain_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct peer	*p = arg;

	(void)emitter;
	(void)ev;
	if (p->echo)
		nc_socket_resume(p->s);
}

static struct peer *
peer_new(void)
{
	struct peer	*p;

	ck_assert_int_lt(fx.npeers, MAX_PEERS);
	p = calloc(1, sizeof *p);
	ck_assert_ptr_nonnull(p);
	p->in = evbuffer_new();
	ck_assert_ptr_nonnull(p->in);
	fx.peers[fx.npeers++] = p;
	return p;
}

/* Keeps s (held until teardown) and listens to all its events. */
static void
peer_attach(struct peer *p, struct nc_socket *s)
{
	ck_assert_ptr_nonnull(s);
	p->s = s;
	nc_socket_hold(s);
	recorder_attach_socket(&p->rec, s);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_DATA, peer_data_cb, p), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_ERROR, peer_error_cb, p), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_LOOKUP, peer_lookup_cb, p), 0);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_DRAIN, peer_drain_cb, p), 0);
}

/* The connect listener handed to connect(): a once listener. */
static void
connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct peer	*p = arg;

	ck_assert_int_eq(ev->event, NC_EV_CONNECT);
	if (p->s != NULL)
		ck_assert_ptr_eq(emitter, p->s);
	p->connect_cb_calls++;
}

static void
must_not_call(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	ck_abort_msg("unexpected %s", nc_event_name(ev->event));
}

/* Writes what is left of p->src, chunk by chunk, until write() says 0. */
static void
pump(struct peer *p)
{
	size_t	n;
	int	rc;

	while (p->sent < p->total && !nc_socket_destroyed(p->s)) {
		n = p->total - p->sent < p->chunk ? p->total - p->sent :
		    p->chunk;
		rc = nc_socket_write(p->s, p->src + p->sent, n, NULL, NULL);
		ck_assert_int_ge(rc, 0);
		p->sent += n;
		if (rc == 0)
			return;		/* wait for `drain` */
	}
	if (p->sent == p->total && p->end_after) {
		p->end_after = false;
		ck_assert_int_eq(nc_socket_end(p->s, NULL, 0), 0);
	}
}

static void
pump_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	pump(arg);
}

/* Write callbacks. */

static void
wcb(struct nc_socket *s, int status, void *arg)
{
	ck_assert_ptr_nonnull(s);
	ck_assert_int_lt(fx.wcb_n, MAX_WCB);
	fx.wcb_id[fx.wcb_n] = (intptr_t)arg;
	fx.wcb_status[fx.wcb_n] = status;
	fx.wcb_n++;
}

#define WCB_ARG(id)	((void *)(intptr_t)(id))

/* Servers. */

static void
server_connection_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	struct peer	*p;

	(void)arg;
	ck_assert(emitter == fx.server || emitter == fx.server2);
	ck_assert_ptr_nonnull(ev->socket);
	p = peer_new();
	peer_attach(p, ev->socket);
	fx.accepted[fx.connections++] = p;
	if (fx.on_connection != NULL)
		fx.on_connection(p);
}

static void
server_listening_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	fx.listening++;
}

/* Starts fx.server, or fx.server2 when fx.server runs already. */
static void
server_start_opts(const char *host, const char *path, bool allow_half_open)
{
	struct nc_server_options	 o;
	struct nc_server		*srv;

	memset(&o, 0, sizeof o);
	o.base = fx.base;
	o.allow_half_open = allow_half_open;
	srv = nc_create_server(&o, server_connection_cb, NULL);
	ck_assert_ptr_nonnull(srv);
	if (fx.server == NULL)
		fx.server = srv;
	else {
		ck_assert_ptr_null(fx.server2);
		fx.server2 = srv;
	}
	fx.listening = 0;
	if (path != NULL)
		ck_assert_int_eq(nc_server_listen_path(srv, path,
		    server_listening_cb, NULL), 0);
	else
		ck_assert_int_eq(nc_server_listen(srv, 0, host, 0,
		    server_listening_cb, NULL), 0);
	ck_assert(run_until(fx.base, &fx.listening, WAIT));
	if (path == NULL)
		fx.port = bound_port(srv);
}

static void
server_start(void)
{
	server_start_opts("127.0.0.1", NULL, false);
}

static void
on_conn_end(struct peer *p)
{
	ck_assert_int_eq(nc_socket_end(p->s, NULL, 0), 0);
}

static void
on_conn_pause(struct peer *p)
{
	nc_socket_pause(p->s);
}

static void
on_conn_echo(struct peer *p)
{
	p->echo = true;
	p->discard = true;
}

static void
on_conn_hello(struct peer *p)
{
	ck_assert_int_eq(nc_socket_write(p->s, "hello", 5, NULL, NULL), 1);
}

/* Clients. */

static struct peer *
client_port(int port, const char *host)
{
	struct peer		*p = peer_new();
	struct nc_socket	*s;

	ck_assert_int_eq(nc_connect_port(fx.base, port, host, connect_cb, p,
	    &s), 0);
	peer_attach(p, s);
	return p;
}

static struct peer *
client_connected(void)
{
	struct peer	*p = client_port(fx.port, "127.0.0.1");
	int		 want = fx.connections + 1;

	ck_assert(run_until(fx.base, &p->connect_cb_calls, WAIT));
	ck_assert(run_until_count(fx.base, &fx.connections, want, WAIT));
	return p;
}

/* A socket over one end of a socketpair; the other end is a raw peer. */
static struct peer *
client_fd(bool readable, bool writable, struct raw **rawp)
{
	struct nc_socket_options	 o;
	struct raw			*r;
	struct peer			*p = peer_new();
	int				 sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0,
	    sv), 0);
	memset(&o, 0, sizeof o);
	o.base = fx.base;
	o.has_fd = true;
	o.fd = sv[0];
	o.readable = readable;
	o.writable = writable;
	peer_attach(p, nc_socket_new(&o));
	ck_assert_int_eq(nc_socket_fd(p->s), sv[0]);
	ck_assert_int_lt(fx.nraws, MAX_RAWS);
	r = &fx.raws[fx.nraws++];
	r->fd = sv[1];
	r->buf = evbuffer_new();
	ck_assert_ptr_nonnull(r->buf);
	*rawp = r;
	return p;
}

static void
raw_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct raw	*r = arg;
	char		 buf[65536];
	ssize_t		 n;

	(void)what;
	n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
	if (n > 0) {
		ck_assert_int_eq(evbuffer_add(r->buf, buf, (size_t)n), 0);
		r->nread += (int)n;
	} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
		r->eof = 1;
		(void)event_del(r->ev);
	}
}

static void
raw_start(struct raw *r)
{
	r->ev = event_new(fx.base, r->fd, EV_READ | EV_PERSIST, raw_read_cb,
	    r);
	ck_assert_ptr_nonnull(r->ev);
	ck_assert_int_eq(event_add(r->ev, NULL), 0);
}

static void
raw_send(struct raw *r, const void *data, size_t len)
{
	ck_assert_int_eq(send(r->fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* Misc. */

/* A loopback port nothing listens on: bound, then closed. */
static int
free_port(void)
{
	struct sockaddr_in	sin;
	socklen_t		len = sizeof sin;
	int			fd, port;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ne(fd, -1);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* Does /etc/hosts answer "localhost" with 127.0.0.1 (no DNS needed)? */
static bool
hosts_has_localhost4(void)
{
	FILE	*f;
	char	 line[512], *tok, *save;
	bool	 found = false;

	if ((f = fopen("/etc/hosts", "re")) == NULL)
		return false;
	while (!found && fgets(line, sizeof line, f) != NULL) {
		if ((tok = strtok_r(line, " \t\n", &save)) == NULL ||
		    strcmp(tok, "127.0.0.1") != 0)
			continue;
		while ((tok = strtok_r(NULL, " \t\n", &save)) != NULL)
			if (strcmp(tok, "localhost") == 0)
				found = true;
	}
	fclose(f);
	return found;
}

/* Runs the loop until s has read n bytes (no `data` may say so). */
static void
wait_bytes_read(struct nc_socket *s, uint64_t n)
{
	int	i;

	for (i = 0; i < scaled_ms(WAIT) / 10 && nc_socket_bytes_read(s) < n;
	    i++)
		run_for(fx.base, 10);
	ck_assert_uint_eq(nc_socket_bytes_read(s), n);
}

static int64_t
now_ms(void)
{
	struct timespec	ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool
buf_eq(struct evbuffer *b, const void *data, size_t len)
{
	return evbuffer_get_length(b) == len &&
	    memcmp(evbuffer_pullup(b, -1), data, len) == 0;
}

/* Calls fn on the next turn of the loop (Node's process.nextTick). */
static void
next_tick(void (*fn)(evutil_socket_t, short, void *), void *arg)
{
	ck_assert_int_eq(event_base_once(fx.base, -1, EV_TIMEOUT, fn, arg,
	    NULL), 0);
}

/*
 * Connect: the three forms of nc_connect / nc_create_connection, and
 * nc_socket_new + nc_socket_connect*.
 */

/* test-net-connect-options-port.js (canConnect, options form). */
START_TEST(test_connect_options)
{
	struct nc_connect_options	 o;
	struct nc_socket		*s;
	struct peer			*a, *b;

	server_start();
	memset(&o, 0, sizeof o);
	o.base = fx.base;
	o.port = fx.port;
	o.host = "127.0.0.1";

	a = peer_new();
	ck_assert_int_eq(nc_connect(&o, connect_cb, a, &s), 0);
	peer_attach(a, s);
	b = peer_new();
	ck_assert_int_eq(nc_create_connection(&o, connect_cb, b, &s), 0);
	peer_attach(b, s);

	/* Nothing happens inside the call. */
	ck_assert(nc_socket_connecting(a->s));
	ck_assert(nc_socket_connecting(b->s));
	ck_assert_int_eq(a->connect_cb_calls, 0);
	/* The recorder's listener and the once connect listener. */
	ck_assert_uint_eq(nc_socket_listener_count(a->s, NC_EV_CONNECT), 2);

	ck_assert(run_until(fx.base, &a->connect_cb_calls, WAIT));
	ck_assert(run_until(fx.base, &b->connect_cb_calls, WAIT));
	ck_assert(run_until_count(fx.base, &fx.connections, 2, WAIT));
	ck_assert(!nc_socket_connecting(a->s));
	ck_assert_uint_eq(nc_socket_listener_count(a->s, NC_EV_CONNECT), 1);
	ck_assert_uint_eq(nc_socket_listener_count(b->s, NC_EV_CONNECT), 1);
	ck_assert_str_eq(a->rec.log, "connect");
	ck_assert_str_eq(b->rec.log, "connect");
	ck_assert_int_eq(nc_socket_remote_port(a->s), fx.port);
	ck_assert_int_eq(nc_socket_remote_port(b->s), fx.port);

	/* Once: a second connect never reaches the listener again. */
	run_for(fx.base, 20);
	ck_assert_int_eq(a->connect_cb_calls, 1);
	ck_assert_int_eq(b->connect_cb_calls, 1);
}
END_TEST

/* test-net-connect-options-port.js (canConnect, port and port+host). */
START_TEST(test_connect_port)
{
	struct nc_socket	*s;
	struct peer		*p[4];
	int			 i;

	server_start();
	/* With the listener, and without it: once('connect') after. */
	for (i = 0; i < 4; i++) {
		p[i] = peer_new();
		if (i % 2 == 0)
			ck_assert_int_eq(nc_connect_port(fx.base, fx.port,
			    "127.0.0.1", i < 2 ? connect_cb : NULL, p[i], &s),
			    0);
		else
			ck_assert_int_eq(nc_create_connection_port(fx.base,
			    fx.port, "127.0.0.1", i < 2 ? connect_cb : NULL,
			    p[i], &s), 0);
		peer_attach(p[i], s);
		if (i >= 2)
			ck_assert_int_eq(nc_socket_once(s, NC_EV_CONNECT,
			    connect_cb, p[i]), 0);
	}
	for (i = 0; i < 4; i++)
		ck_assert(run_until(fx.base, &p[i]->connect_cb_calls, WAIT));
	ck_assert(run_until_count(fx.base, &fx.connections, 4, WAIT));
	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(p[i]->connect_cb_calls, 1);
		ck_assert_str_eq(p[i]->rec.log, "connect");
		ck_assert_int_eq(p[i]->rec.counts[NC_EV_LOOKUP], 0);
	}

	/* No connect listener at all is fine too. */
	ck_assert_int_eq(nc_connect_port(fx.base, fx.port, "127.0.0.1", NULL,
	    NULL, &s), 0);
	p[0] = peer_new();
	peer_attach(p[0], s);
	ck_assert(run_until(fx.base, &p[0]->rec.counts[NC_EV_CONNECT], WAIT));
	ck_assert_uint_eq(nc_socket_listener_count(s, NC_EV_CONNECT), 1);
}
END_TEST

/* The path form: unix sockets, no lookup. */
START_TEST(test_connect_path)
{
	struct nc_socket	*s;
	struct peer		*a, *b;
	char			 path[256];

	snprintf(path, sizeof path, "%s", tmpdir_path("srv.sock"));
	server_start_opts(NULL, path, false);

	a = peer_new();
	ck_assert_int_eq(nc_connect_path(fx.base, path, connect_cb, a, &s),
	    0);
	peer_attach(a, s);
	b = peer_new();
	ck_assert_int_eq(nc_create_connection_path(fx.base, path, connect_cb,
	    b, &s), 0);
	peer_attach(b, s);
	ck_assert(nc_socket_connecting(a->s));
	ck_assert_int_eq(a->connect_cb_calls, 0);

	ck_assert(run_until(fx.base, &a->connect_cb_calls, WAIT));
	ck_assert(run_until(fx.base, &b->connect_cb_calls, WAIT));
	ck_assert(run_until_count(fx.base, &fx.connections, 2, WAIT));
	ck_assert_str_eq(a->rec.log, "connect");
	ck_assert_str_eq(b->rec.log, "connect");
	ck_assert_uint_eq(nc_socket_listener_count(a->s, NC_EV_CONNECT), 1);

	/* Bytes flow both ways. */
	ck_assert_int_eq(nc_socket_write(a->s, "ping", 4, NULL, NULL), 1);
	ck_assert(run_until_count(fx.base, &fx.accepted[0]->nbytes, 4, WAIT));
	ck_assert(buf_eq(fx.accepted[0]->in, "ping", 4));
}
END_TEST

/* new net.Socket() + socket.connect() in its three forms. */
START_TEST(test_socket_connect_forms)
{
	struct nc_socket_options	 so;
	struct nc_connect_options	 o;
	struct peer			*p[3];
	char				 path[256];
	int				 i, port;

	/* A TCP server, and a unix one. */
	server_start();
	port = fx.port;
	snprintf(path, sizeof path, "%s", tmpdir_path("srv.sock"));
	server_start_opts(NULL, path, false);

	memset(&so, 0, sizeof so);
	so.base = fx.base;
	for (i = 0; i < 3; i++) {
		p[i] = peer_new();
		peer_attach(p[i], nc_socket_new(&so));
		ck_assert(!nc_socket_connecting(p[i]->s));
		ck_assert(!nc_socket_destroyed(p[i]->s));
		ck_assert_int_eq(nc_socket_fd(p[i]->s), -1);
		ck_assert_ptr_eq(nc_socket_base(p[i]->s), fx.base);
	}
	memset(&o, 0, sizeof o);
	o.port = port;
	o.host = "127.0.0.1";
	ck_assert_int_eq(nc_socket_connect(p[0]->s, &o, connect_cb, p[0]), 0);
	ck_assert_int_eq(nc_socket_connect_port(p[1]->s, port, "127.0.0.1",
	    connect_cb, p[1]), 0);
	ck_assert_int_eq(nc_socket_connect_path(p[2]->s, path, connect_cb,
	    p[2]), 0);
	for (i = 0; i < 3; i++) {
		ck_assert(nc_socket_connecting(p[i]->s));
		ck_assert_int_eq(p[i]->connect_cb_calls, 0);
	}
	for (i = 0; i < 3; i++) {
		ck_assert(run_until(fx.base, &p[i]->connect_cb_calls, WAIT));
		ck_assert_str_eq(p[i]->rec.log, "connect");
		ck_assert_int_ne(nc_socket_fd(p[i]->s), -1);
	}
	ck_assert_int_eq(nc_socket_remote_port(p[0]->s), port);
	ck_assert_int_eq(nc_socket_remote_port(p[1]->s), port);
	ck_assert_int_eq(nc_socket_remote_port(p[2]->s), -1);

	/* A connected socket does not connect again; nothing is emitted. */
	ck_assert_int_lt(nc_socket_connect_port(p[0]->s, port, "127.0.0.1",
	    must_not_call, NULL), 0);
	ck_assert_uint_eq(nc_socket_listener_count(p[0]->s, NC_EV_CONNECT),
	    1);

	nc_socket_destroy(p[0]->s);
	nc_socket_destroy(p[1]->s);
	/* Destroyed, before `close`: ERR_SOCKET_CLOSED (after it, the
	 * socket connects again: test_reconnect_*). */
	ck_assert_int_eq(nc_socket_connect_port(p[0]->s, port, "127.0.0.1",
	    must_not_call, NULL), NC_ERR_SOCKET_CLOSED);
	ck_assert(run_until(fx.base, &p[0]->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert(run_until(fx.base, &p[1]->rec.counts[NC_EV_CLOSE], WAIT));
}
END_TEST

/* test-net-dns-lookup.js: host defaults to "localhost", resolved by the
 * default (threaded getaddrinfo) lookup from /etc/hosts. */
START_TEST(test_connect_default_host)
{
	struct peer	*p;

	if (!hosts_has_localhost4()) {
		fprintf(stderr, "skipped: /etc/hosts has no 127.0.0.1 "
		    "localhost\n");
		return;
	}
	server_start();
	p = client_port(fx.port, NULL);
	ck_assert_int_eq(p->rec.counts[NC_EV_LOOKUP], 0);
	ck_assert(run_until(fx.base, &p->connect_cb_calls, WAIT));
	ck_assert_str_eq(p->rec.log, "lookup,connect");
	ck_assert_int_eq(p->lookup_err, 0);
	ck_assert_str_eq(p->lookup_address, "127.0.0.1");
	ck_assert_int_eq(p->lookup_family, 4);
	ck_assert_str_eq(p->lookup_host, "localhost");
	ck_assert_str_eq(nc_socket_remote_address(p->s), "127.0.0.1");
	ck_assert_int_eq(nc_socket_remote_port(p->s), fx.port);

	/* "localhost" spelled out, options form, family 4 given. */
	{
		struct nc_connect_options	 o;
		struct nc_socket		*s;
		struct peer			*q = peer_new();

		memset(&o, 0, sizeof o);
		o.base = fx.base;
		o.port = fx.port;
		o.host = "localhost";
		o.family = 4;
		ck_assert_int_eq(nc_connect(&o, connect_cb, q, &s), 0);
		peer_attach(q, s);
		ck_assert(run_until(fx.base, &q->connect_cb_calls, WAIT));
		ck_assert_str_eq(q->rec.log, "lookup,connect");
		ck_assert_str_eq(q->lookup_address, "127.0.0.1");
		ck_assert_int_eq(q->lookup_family, 4);
	}

	/* An empty host is "localhost" too (options.host || 'localhost'). */
	p = client_port(fx.port, "");
	ck_assert(run_until(fx.base, &p->connect_cb_calls, WAIT));
	ck_assert_str_eq(p->rec.log, "lookup,connect");
	ck_assert_str_eq(p->lookup_host, "localhost");
	ck_assert_str_eq(p->lookup_address, "127.0.0.1");
}
END_TEST

/* A custom lookup for the tests: answers as told. */
enum lookup_mode {
	LK_SYNC,	/* nc_lookup_done() inside the call */
	LK_ASYNC,	/* keeps the request; the test answers later */
	LK_NEVER	/* must not be called */
};

struct lookup_ctl {
	enum lookup_mode	 mode;
	int			 status;
	const char		*address;
	int			 family;
	int			 calls;
	char			 host[256];
	int			 asked_family;
	struct nc_lookup_req	*req;
	struct nc_socket	*destroy;	/* destroyed inside the call */
};

static void
test_lookup(const char *host, int family, struct nc_lookup_req *req,
    void *arg)
{
	struct lookup_ctl	*l = arg;

	ck_assert_int_ne(l->mode, LK_NEVER);
	ck_assert_ptr_nonnull(req);
	l->calls++;
	snprintf(l->host, sizeof l->host, "%s", host);
	l->asked_family = family;
	if (l->destroy != NULL)
		nc_socket_destroy(l->destroy);
	if (l->mode == LK_SYNC)
		nc_lookup_done(req, l->status, l->address, l->family);
	else
		l->req = req;
}

static struct peer *
client_lookup(const char *host, int port, int family, struct lookup_ctl *l)
{
	struct nc_connect_options	 o;
	struct nc_socket		*s;
	struct peer			*p = peer_new();

	memset(&o, 0, sizeof o);
	o.base = fx.base;
	o.port = port;
	o.host = host;
	o.family = family;
	o.lookup = test_lookup;
	o.lookup_arg = l;
	ck_assert_int_eq(nc_connect(&o, connect_cb, p, &s), 0);
	peer_attach(p, s);
	/* Never emitted from inside the call. */
	ck_assert_int_eq(p->rec.counts[NC_EV_LOOKUP], 0);
	return p;
}

/* test-net-dns-custom-lookup.js: a lookup answering at once. */
START_TEST(test_lookup_custom_sync)
{
	struct lookup_ctl	 l;
	struct peer		*p;

	server_start();
	memset(&l, 0, sizeof l);
	l.mode = LK_SYNC;
	l.address = "127.0.0.1";
	l.family = 4;
	p = client_lookup("dummy", fx.port, 0, &l);
	ck_assert(run_until(fx.base, &p->connect_cb_calls, WAIT));
	ck_assert_int_eq(l.calls, 1);
	ck_assert_str_eq(l.host, "dummy");
	ck_assert_int_eq(l.asked_family, 4);	/* family 0 means 4 */
	ck_assert_str_eq(p->rec.log, "lookup,connect");
	ck_assert_int_eq(p->lookup_err, 0);
	ck_assert_str_eq(p->lookup_address, "127.0.0.1");
	ck_assert_int_eq(p->lookup_family, 4);
	ck_assert_str_eq(p->lookup_host, "dummy");
	ck_assert(run_until_count(fx.base, &fx.connections, 1, WAIT));
}
END_TEST

/* A lookup answering on a later turn; family 0 in the answer means "the
 * family of the address". */
START_TEST(test_lookup_custom_async)
{
	struct lookup_ctl	 l;
	struct peer		*p;

	server_start();
	memset(&l, 0, sizeof l);
	l.mode = LK_ASYNC;
	p = client_lookup("later.test", fx.port, 4, &l);
	ck_assert(run_until(fx.base, &l.calls, WAIT));
	ck_assert_ptr_nonnull(l.req);
	run_for(fx.base, 30);
	ck_assert_int_eq(p->rec.counts[NC_EV_LOOKUP], 0);
	ck_assert(nc_socket_connecting(p->s));
	nc_lookup_done(l.req, 0, "127.0.0.1", 0);
	ck_assert(run_until(fx.base, &p->connect_cb_calls, WAIT));
	ck_assert_str_eq(p->rec.log, "lookup,connect");
	ck_assert_str_eq(p->lookup_address, "127.0.0.1");
	ck_assert_int_eq(p->lookup_family, 4);
	ck_assert_str_eq(p->lookup_host, "later.test");
}
END_TEST

/* test-net-connect-options-ipv6.js: family 6 reaches the lookup, ::1
 * connects, and with allowHalfOpen the socket stays writable after
 * `end`. Plus an IPv6 literal with family 6. */
static void
ipv6_end_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct peer	*p = arg;

	(void)emitter;
	(void)ev;
	/* Still writable after the peer's FIN. */
	ck_assert(!nc_socket_destroyed(p->s));
	ck_assert_int_eq(nc_socket_write(p->s, "x", 1, NULL, NULL), 1);
}

static void
on_conn_resume_end(struct peer *p)
{
	nc_socket_resume(p->s);
	ck_assert_int_eq(nc_socket_end(p->s, NULL, 0), 0);
}

START_TEST(test_connect_family6)
{
	struct nc_connect_options	 o;
	struct nc_socket		*s;
	struct lookup_ctl		 l;
	struct peer			*p, *q;
	struct nc_address		 a;

	if (!have_ipv6()) {
		fprintf(stderr, "skipped: no IPv6\n");
		return;
	}
	server_start_opts("::1", NULL, true);
	fx.on_connection = on_conn_resume_end;

	memset(&l, 0, sizeof l);
	l.mode = LK_SYNC;
	l.address = "::1";
	l.family = 6;
	memset(&o, 0, sizeof o);
	o.base = fx.base;
	o.port = fx.port;
	o.host = "dummy";
	o.family = 6;
	o.allow_half_open = true;
	o.lookup = test_lookup;
	o.lookup_arg = &l;
	p = peer_new();
	ck_assert_int_eq(nc_connect(&o, connect_cb, p, &s), 0);
	peer_attach(p, s);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_END, ipv6_end_cb, p), 0);
	ck_assert(run_until(fx.base, &p->connect_cb_calls, WAIT));
	ck_assert_str_eq(l.host, "dummy");
	ck_assert_int_eq(l.asked_family, 6);
	ck_assert_str_eq(p->lookup_address, "::1");
	ck_assert_int_eq(p->lookup_family, 6);
	ck_assert_str_eq(nc_socket_remote_address(s), "::1");
	ck_assert_str_eq(nc_socket_remote_family(s), "IPv6");
	ck_assert_int_eq(nc_socket_address(s, &a), 0);
	ck_assert_str_eq(a.family, "IPv6");
	ck_assert_str_eq(a.address, "::1");

	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_END], WAIT));
	/* The tick after: still open, still writable. */
	run_for(fx.base, 20);
	ck_assert(!nc_socket_destroyed(s));
	ck_assert_int_eq(p->rec.counts[NC_EV_FINISH], 0);
	ck_assert(run_until_count(fx.base, &fx.accepted[0]->nbytes, 1, WAIT));
	ck_assert_int_eq(nc_socket_end(s, NULL, 0), 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "lookup,connect,end,finish,close");
	ck_assert(!p->rec.had_error);

	/* A literal with family 6: no lookup. */
	memset(&l, 0, sizeof l);
	l.mode = LK_NEVER;
	q = client_lookup("::1", fx.port, 6, &l);
	ck_assert(run_until(fx.base, &q->connect_cb_calls, WAIT));
	ck_assert_int_eq(q->rec.counts[NC_EV_LOOKUP], 0);
	ck_assert_str_eq(nc_socket_remote_family(q->s), "IPv6");
}
END_TEST

/* test-net-dns-lookup-skip.js: an IP literal skips the lookup. */
START_TEST(test_lookup_skipped_for_ip)
{
	struct lookup_ctl	 l;
	struct peer		*p;

	server_start();
	memset(&l, 0, sizeof l);
	l.mode = LK_NEVER;
	p = client_lookup("127.0.0.1", fx.port, 0, &l);
	ck_assert(run_until(fx.base, &p->connect_cb_calls, WAIT));
	ck_assert_int_eq(l.calls, 0);
	ck_assert_int_eq(p->rec.counts[NC_EV_LOOKUP], 0);
	ck_assert_str_eq(p->rec.log, "connect");
}
END_TEST

/* test-net-dns-error.js: the lookup fails with ENOTFOUND. No name is
 * resolved for real: the lookup is ours. */
START_TEST(test_lookup_enotfound)
{
	struct lookup_ctl	 l, l2;
	struct peer		*p, *q;

	memset(&l, 0, sizeof l);
	l.mode = LK_SYNC;
	l.status = NC_ENOTFOUND;
	p = client_lookup("no-such-host.invalid", 42, 0, &l);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "lookup,error,close");
	ck_assert_int_eq(p->connect_cb_calls, 0);
	/* `lookup`: the error, no address, no family, the host. */
	ck_assert_int_eq(p->lookup_err, NC_ENOTFOUND);
	ck_assert(p->lookup_address_null);
	ck_assert_int_eq(p->lookup_family, 0);
	ck_assert_str_eq(p->lookup_host, "no-such-host.invalid");
	/* `error`: ENOTFOUND from getaddrinfo; `close(true)`. */
	ck_assert_int_eq(p->err_code, NC_ENOTFOUND);
	ck_assert_str_eq(nc_err_name(p->err_code), "ENOTFOUND");
	ck_assert_str_eq(p->err_syscall, "getaddrinfo");
	ck_assert_str_eq(p->err_message,
	    "getaddrinfo ENOTFOUND no-such-host.invalid");
	ck_assert(p->rec.had_error);
	ck_assert(nc_socket_destroyed(p->s));

	/* Failing later, with another resolver error. */
	memset(&l2, 0, sizeof l2);
	l2.mode = LK_ASYNC;
	q = client_lookup("again.invalid", 42, 0, &l2);
	ck_assert(run_until(fx.base, &l2.calls, WAIT));
	nc_lookup_done(l2.req, NC_EAI_AGAIN, NULL, 0);
	ck_assert(run_until(fx.base, &q->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(q->rec.log, "lookup,error,close");
	ck_assert_int_eq(q->err_code, NC_EAI_AGAIN);
	ck_assert_str_eq(q->err_syscall, "getaddrinfo");
	ck_assert(q->rec.had_error);
}
END_TEST

/* The default resolver itself (lookup.c): answers on a later turn, off
 * the loop, and leaves no fd behind. Only inputs that never need DNS:
 * literals and /etc/hosts. */
struct lres {
	int	calls;
	int	status;
	char	address[NC_ADDRSTRLEN];
	int	family;
};

static void
lres_cb(int status, const char *address, int family, void *arg)
{
	struct lres	*r = arg;

	r->calls++;
	r->status = status;
	snprintf(r->address, sizeof r->address, "%s",
	    address != NULL ? address : "(null)");
	r->family = family;
}

static void
resolve(const char *host, int family, struct lres *r)
{
	struct event	*ev = NULL;

	memset(r, 0, sizeof *r);
	ck_assert_int_eq(nc__lookup_start(fx.base, host, family, lres_cb, r,
	    &ev), 0);
	ck_assert_ptr_nonnull(ev);
	ck_assert_int_eq(r->calls, 0);
	ck_assert(run_until(fx.base, &r->calls, WAIT));
	run_for(fx.base, 10);
	ck_assert_int_eq(r->calls, 1);
}

START_TEST(test_lookup_resolver)
{
	struct lres	r, many[8];
	int		i, done = 0;

	resolve("127.0.0.1", 0, &r);
	ck_assert_int_eq(r.status, 0);
	ck_assert_str_eq(r.address, "127.0.0.1");
	ck_assert_int_eq(r.family, 4);
	resolve("127.0.0.1", 4, &r);
	ck_assert_str_eq(r.address, "127.0.0.1");
	if (have_ipv6()) {
		resolve("::1", 6, &r);
		ck_assert_int_eq(r.status, 0);
		ck_assert_str_eq(r.address, "::1");
		ck_assert_int_eq(r.family, 6);
	}
	if (hosts_has_localhost4()) {
		resolve("localhost", 4, &r);
		ck_assert_int_eq(r.status, 0);
		ck_assert_str_eq(r.address, "127.0.0.1");
		ck_assert_int_eq(r.family, 4);
	}
	/* Several at once. */
	memset(many, 0, sizeof many);
	for (i = 0; i < 8; i++)
		ck_assert_int_eq(nc__lookup_start(fx.base, "127.0.0.1", 4,
		    lres_cb, &many[i], NULL), 0);
	for (i = 0; i < 8; i++) {
		ck_assert(run_until(fx.base, &many[i].calls, WAIT));
		ck_assert_int_eq(many[i].status, 0);
		done++;
	}
	ck_assert_int_eq(done, 8);
}
END_TEST

/* A lookup that answers something that is not an address. */
START_TEST(test_lookup_bad_answer)
{
	struct lookup_ctl	 l;
	struct peer		*p;

	memset(&l, 0, sizeof l);
	l.mode = LK_SYNC;
	l.address = "not-an-address";
	l.family = 4;
	p = client_lookup("bad.invalid", 42, 0, &l);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "lookup,error,close");
	ck_assert_int_lt(p->lookup_err, 0);
	ck_assert_int_lt(p->err_code, 0);
	ck_assert_int_eq(p->connect_cb_calls, 0);
	ck_assert(p->rec.had_error);
}
END_TEST

/* test-net-better-error-messages-port.js: ECONNREFUSED names the address
 * and port. */
START_TEST(test_connect_econnrefused)
{
	struct peer	*p, *q;
	char		 msg[128];
	int		 port = free_port();

	p = client_port(port, "127.0.0.1");
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "error,close");
	ck_assert_int_eq(p->connect_cb_calls, 0);
	ck_assert_int_eq(p->err_code, NC_ECONNREFUSED);
	ck_assert_str_eq(nc_err_name(p->err_code), "ECONNREFUSED");
	ck_assert_str_eq(p->err_syscall, "connect");
	ck_assert_str_eq(p->err_address, "127.0.0.1");
	ck_assert_int_eq(p->err_port, port);
	snprintf(msg, sizeof msg, "connect ECONNREFUSED 127.0.0.1:%d", port);
	ck_assert_str_eq(p->err_message, msg);
	ck_assert(p->rec.had_error);

	/* The default host: localhost resolves to 127.0.0.1 first. */
	if (hosts_has_localhost4()) {
		q = client_port(port, NULL);
		ck_assert(run_until(fx.base, &q->rec.counts[NC_EV_CLOSE],
		    WAIT));
		ck_assert_str_eq(q->rec.log, "lookup,error,close");
		ck_assert_int_eq(q->err_code, NC_ECONNREFUSED);
		ck_assert_str_eq(q->err_message, msg);
		ck_assert_int_eq(q->err_port, port);
	}
}
END_TEST

/* test-net-connect-options-port.js (syncFailToConnect): bad arguments
 * are returned, nothing is created, nothing is emitted. */
START_TEST(test_connect_bad_args)
{
	struct nc_connect_options	 o;
	struct nc_socket_options	 so;
	struct nc_socket		*s = (struct nc_socket *)&s;
	struct peer			*p;
	static const int		 bad_ports[] = { -1, 65536, 100000,
					    -65536 };
	size_t				 i;

	server_start();
	ck_assert_int_eq(nc_connect(NULL, must_not_call, NULL, &s),
	    NC_ERR_MISSING_ARGS);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(nc_create_connection(NULL, must_not_call, NULL, &s),
	    NC_ERR_MISSING_ARGS);
	ck_assert_ptr_null(s);

	memset(&o, 0, sizeof o);
	o.base = fx.base;
	o.host = "127.0.0.1";
	/* Neither port nor path. */
	ck_assert_int_eq(nc_connect(&o, must_not_call, NULL, &s),
	    NC_ERR_MISSING_ARGS);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(nc_connect_port(fx.base, 0, "127.0.0.1",
	    must_not_call, NULL, &s), NC_ERR_MISSING_ARGS);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(nc_connect_path(fx.base, NULL, must_not_call, NULL,
	    &s), NC_ERR_MISSING_ARGS);
	ck_assert_ptr_null(s);
	ck_assert_int_eq(nc_create_connection_path(fx.base, NULL,
	    must_not_call, NULL, &s), NC_ERR_MISSING_ARGS);
	ck_assert_ptr_null(s);

	for (i = 0; i < sizeof bad_ports / sizeof bad_ports[0]; i++) {
		o.port = bad_ports[i];
		ck_assert_int_eq(nc_connect(&o, must_not_call, NULL, &s),
		    NC_ERR_SOCKET_BAD_PORT);
		ck_assert_ptr_null(s);
		ck_assert_int_eq(nc_create_connection(&o, must_not_call, NULL,
		    &s), NC_ERR_SOCKET_BAD_PORT);
		ck_assert_int_eq(nc_connect_port(fx.base, bad_ports[i],
		    "127.0.0.1", must_not_call, NULL, &s),
		    NC_ERR_SOCKET_BAD_PORT);
		ck_assert_int_eq(nc_create_connection_port(fx.base,
		    bad_ports[i], NULL, must_not_call, NULL, &s),
		    NC_ERR_SOCKET_BAD_PORT);
		ck_assert_ptr_null(s);
		o.port = fx.port;
		o.local_port = bad_ports[i];
		ck_assert_int_eq(nc_connect(&o, must_not_call, NULL, &s),
		    NC_ERR_SOCKET_BAD_PORT);
		o.local_port = 0;
	}
	o.port = fx.port;
	o.family = 5;
	ck_assert_int_eq(nc_connect(&o, must_not_call, NULL, &s),
	    NC_ERR_INVALID_ARG_VALUE);
	o.family = -4;
	ck_assert_int_eq(nc_connect(&o, must_not_call, NULL, &s),
	    NC_ERR_INVALID_ARG_VALUE);
	ck_assert_ptr_null(s);
	o.family = 0;
	o.local_address = "not-an-ip";
	ck_assert_int_eq(nc_connect(&o, must_not_call, NULL, &s),
	    NC_ERR_INVALID_ARG_VALUE);
	ck_assert_ptr_null(s);
	o.local_address = NULL;

	/* On a socket: each call fails, nothing is emitted, and the
	 * socket still connects afterwards. */
	memset(&so, 0, sizeof so);
	so.base = fx.base;
	p = peer_new();
	peer_attach(p, nc_socket_new(&so));
	ck_assert_int_eq(nc_socket_connect(p->s, NULL, must_not_call, NULL),
	    NC_ERR_MISSING_ARGS);
	ck_assert_int_eq(nc_socket_connect_port(p->s, 0, NULL, must_not_call,
	    NULL), NC_ERR_MISSING_ARGS);
	ck_assert_int_eq(nc_socket_connect_port(p->s, -1, NULL, must_not_call,
	    NULL), NC_ERR_SOCKET_BAD_PORT);
	ck_assert_int_eq(nc_socket_connect_port(p->s, 65536, "127.0.0.1",
	    must_not_call, NULL), NC_ERR_SOCKET_BAD_PORT);
	ck_assert_int_eq(nc_socket_connect_path(p->s, NULL, must_not_call,
	    NULL), NC_ERR_MISSING_ARGS);
	o.family = 7;
	ck_assert_int_eq(nc_socket_connect(p->s, &o, must_not_call, NULL),
	    NC_ERR_INVALID_ARG_VALUE);
	ck_assert(!nc_socket_connecting(p->s));
	ck_assert_uint_eq(nc_socket_listener_count(p->s, NC_EV_CONNECT), 1);
	run_for(fx.base, 30);
	ck_assert_str_eq(p->rec.log, "");
	ck_assert_int_eq(fx.connections, 0);

	ck_assert_int_eq(nc_socket_connect_port(p->s, fx.port, "127.0.0.1",
	    connect_cb, p), 0);
	ck_assert(run_until(fx.base, &p->connect_cb_calls, WAIT));
	ck_assert_str_eq(p->rec.log, "connect");
}
END_TEST

/* test-net-better-error-messages-path.js: a path nothing listens on. */
START_TEST(test_connect_enoent)
{
	struct nc_socket	*s;
	struct peer		*p = peer_new();
	char			 path[256], msg[300];

	snprintf(path, sizeof path, "%s", tmpdir_path("nothing.sock"));
	ck_assert_int_eq(nc_connect_path(fx.base, path, connect_cb, p, &s),
	    0);
	peer_attach(p, s);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "error,close");
	ck_assert_int_eq(p->connect_cb_calls, 0);
	ck_assert_int_eq(p->err_code, NC_ENOENT);
	ck_assert_str_eq(nc_err_name(p->err_code), "ENOENT");
	ck_assert_str_eq(p->err_syscall, "connect");
	snprintf(msg, sizeof msg, "connect ENOENT %s", path);
	ck_assert_str_eq(p->err_message, msg);
	ck_assert(p->rec.had_error);
}
END_TEST

/* test-net-localport.js and test-net-local-address-port.js. */
START_TEST(test_connect_local_address_port)
{
	struct nc_connect_options	 o;
	struct nc_socket		*s;
	struct peer			*p = peer_new(), *srv;
	int				 lport = free_port();

	server_start();
	memset(&o, 0, sizeof o);
	o.base = fx.base;
	o.port = fx.port;
	o.host = "127.0.0.1";
	o.local_address = "127.0.0.1";
	o.local_port = lport;
	ck_assert_int_eq(nc_connect(&o, connect_cb, p, &s), 0);
	peer_attach(p, s);
	ck_assert(run_until(fx.base, &p->connect_cb_calls, WAIT));
	ck_assert(run_until_count(fx.base, &fx.connections, 1, WAIT));
	srv = fx.accepted[0];
	ck_assert_int_eq(nc_socket_local_port(s), lport);
	ck_assert_str_eq(nc_socket_local_address(s), "127.0.0.1");
	/* The server sees the connection come from that port. */
	ck_assert_int_eq(nc_socket_remote_port(srv->s), lport);
	ck_assert_str_eq(nc_socket_remote_address(srv->s), "127.0.0.1");
	ck_assert_str_eq(nc_socket_local_address(srv->s), "127.0.0.1");
	ck_assert_int_eq(nc_socket_local_port(srv->s), fx.port);

	/* localAddress alone: the kernel picks the port. */
	p = peer_new();
	o.local_port = 0;
	ck_assert_int_eq(nc_connect(&o, connect_cb, p, &s), 0);
	peer_attach(p, s);
	ck_assert(run_until(fx.base, &p->connect_cb_calls, WAIT));
	ck_assert(run_until_count(fx.base, &fx.connections, 2, WAIT));
	ck_assert_int_eq(nc_socket_remote_port(fx.accepted[1]->s),
	    nc_socket_local_port(s));
}
END_TEST

/* test-net-connect-buffer.js and test-net-socket-byteswritten.js: writes
 * and end() before the connection exists go out once it does. */
START_TEST(test_write_before_connect)
{
	static const char	 a[] = "L'\xc3\x89tat, c'est ", b[] = "moi";
	struct peer		*p, *srv;

	server_start();
	p = client_port(fx.port, "127.0.0.1");
	ck_assert(nc_socket_connecting(p->s));
	ck_assert_int_eq(nc_socket_write_string(p->s, a, NULL, wcb,
	    WCB_ARG(1)), 1);
	/* bytesWritten counts bytes, not characters, queued included. */
	ck_assert_uint_eq(nc_socket_bytes_written(p->s), strlen(a));
	ck_assert_uint_eq(strlen(a), 15);
	ck_assert_int_eq(nc_socket_end(p->s, b, strlen(b)), 0);
	ck_assert_uint_eq(nc_socket_bytes_written(p->s), 18);
	ck_assert_uint_eq(nc_socket_buffer_size(p->s), 18);
	ck_assert_int_eq(fx.wcb_n, 0);

	ck_assert(run_until(fx.base, &p->connect_cb_calls, WAIT));
	ck_assert_uint_eq(nc_socket_bytes_written(p->s), 18);
	ck_assert(run_until(fx.base, &fx.wcb_n, WAIT));
	ck_assert_int_eq(fx.wcb_status[0], 0);
	ck_assert(run_until(fx.base, &fx.connections, WAIT));
	srv = fx.accepted[0];
	ck_assert(run_until(fx.base, &srv->rec.counts[NC_EV_END], WAIT));
	ck_assert(buf_eq(srv->in, "L'\xc3\x89tat, c'est moi", 18));
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "connect,finish,end,close");
	ck_assert_uint_eq(nc_socket_bytes_written(p->s), 18);

	/* Past the mark while connecting: false, and `drain` once the
	 * queue has gone out after the connection. */
	{
		static char	big[HWM + 100];

		memset(big, 'q', sizeof big);
		p = client_port(fx.port, "127.0.0.1");
		ck_assert_int_eq(nc_socket_write(p->s, big, sizeof big, NULL,
		    NULL), 0);
		ck_assert_uint_eq(nc_socket_buffer_size(p->s), sizeof big);
		ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_DRAIN],
		    WAIT));
		ck_assert_str_eq(p->rec.log, "connect,drain");
		ck_assert_uint_eq(nc_socket_buffer_size(p->s), 0);
		ck_assert(run_until_count(fx.base, &fx.accepted[1]->nbytes,
		    (int)sizeof big, WAIT));
	}
}
END_TEST

/* test-net-write-cb-on-destroy-before-connect.js. */
START_TEST(test_write_cb_destroy_before_connect)
{
	struct nc_socket_options	so;
	struct peer			*p = peer_new();

	server_start();
	memset(&so, 0, sizeof so);
	so.base = fx.base;
	peer_attach(p, nc_socket_new(&so));
	ck_assert_int_eq(nc_socket_on(p->s, NC_EV_CONNECT, must_not_call,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_connect_port(p->s, fx.port, "127.0.0.1",
	    NULL, NULL), 0);
	ck_assert(nc_socket_connecting(p->s));
	ck_assert_int_ge(nc_socket_write(p->s, "foo", 3, wcb, WCB_ARG(1)), 0);
	nc_socket_destroy(p->s);
	ck_assert_int_eq(fx.wcb_n, 0);
	ck_assert(run_until(fx.base, &fx.wcb_n, WAIT));
	ck_assert_int_eq(fx.wcb_status[0],
	    NC_ERR_SOCKET_CLOSED_BEFORE_CONNECTION);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	run_for(fx.base, 30);
	ck_assert_str_eq(p->rec.log, "close");
	ck_assert(!p->rec.had_error);
	ck_assert_int_eq(fx.wcb_n, 1);
}
END_TEST

static int	settled;

static void
settle_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	settled++;
}

/* A unix listener with a full backlog: connect() fails with EAGAIN at
 * once; nothing is pending, so no `connect` may be reported. */
START_TEST(test_connect_unix_backlog_full)
{
	struct sockaddr_un	 sun;
	struct nc_socket	*s;
	struct peer		*p[6];
	char			 msg[300];
	int			 lfd, i, connects = 0, eagain = 0;

	settled = 0;
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s",
	    tmpdir_path("full.sock"));
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ne(lfd, -1);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sun, sizeof sun), 0);
	ck_assert_int_eq(listen(lfd, 0), 0);	/* and never accepts */
	for (i = 0; i < 6; i++) {
		p[i] = peer_new();
		ck_assert_int_eq(nc_connect_path(fx.base, sun.sun_path,
		    connect_cb, p[i], &s), 0);
		peer_attach(p[i], s);
		ck_assert_int_eq(nc_socket_on(s, NC_EV_CONNECT, settle_cb,
		    NULL), 0);
		ck_assert_int_eq(nc_socket_on(s, NC_EV_CLOSE, settle_cb, NULL),
		    0);
		/* One at a time, so the backlog fills in order. */
		ck_assert(run_until_count(fx.base, &settled, i + 1, WAIT));
	}
	for (i = 0; i < 6; i++) {
		connects += p[i]->connect_cb_calls;
		if (p[i]->rec.counts[NC_EV_ERROR] > 0) {
			ck_assert_int_eq(p[i]->err_code, -EAGAIN);
			ck_assert_str_eq(p[i]->err_syscall, "connect");
			snprintf(msg, sizeof msg, "connect EAGAIN %s",
			    sun.sun_path);
			ck_assert_str_eq(p[i]->err_message, msg);
			ck_assert_str_eq(p[i]->rec.log, "error,close");
			eagain++;
		}
	}
	ck_assert_int_eq(connects + eagain, 6);
	ck_assert_int_gt(eagain, 0);
	ck_assert_int_le(connects, 2);
	close(lfd);
}
END_TEST

/* test-net-socket-write-after-close.js: a socket with no handle (never
 * connected) fails a write with ERR_SOCKET_CLOSED. */
START_TEST(test_write_not_connected)
{
	struct nc_socket_options	 so;
	struct peer			*p = peer_new();

	memset(&so, 0, sizeof so);
	so.base = fx.base;
	peer_attach(p, nc_socket_new(&so));
	ck_assert_int_eq(nc_socket_write(p->s, "foo", 3, wcb, WCB_ARG(1)), 0);
	ck_assert_int_eq(fx.wcb_n, 0);
	ck_assert_int_eq(p->rec.counts[NC_EV_ERROR], 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "error,close");
	ck_assert_int_eq(p->err_code, NC_ERR_SOCKET_CLOSED);
	ck_assert_str_eq(p->err_message, "Socket is closed");
	ck_assert(p->rec.had_error);
	ck_assert_int_eq(fx.wcb_n, 1);
	ck_assert_int_eq(fx.wcb_status[0], NC_ERR_SOCKET_CLOSED);
	ck_assert_uint_eq(nc_socket_bytes_written(p->s), 0);
}
END_TEST

/* A reset from the peer: `error` "read ECONNRESET" (no address, as
 * Node's errnoException), then close(true). */
START_TEST(test_read_econnreset)
{
	struct linger	 lg = { 1, 0 };
	struct peer	*p, *srv;

	server_start();
	p = client_connected();
	srv = fx.accepted[0];
	ck_assert_int_eq(setsockopt(nc_socket_fd(srv->s), SOL_SOCKET,
	    SO_LINGER, &lg, sizeof lg), 0);
	nc_socket_destroy(srv->s);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "connect,error,close");
	ck_assert_int_eq(p->err_code, NC_ECONNRESET);
	ck_assert_str_eq(p->err_syscall, "read");
	ck_assert(!p->err_has_address);
	ck_assert_str_eq(p->err_message, "read ECONNRESET");
	ck_assert(p->rec.had_error);
}
END_TEST

/*
 * Writes.
 */

/* Writes 4 KiB chunks until write() says 0; each return value must be
 * Node's: 1 while the queue stays below 16 KiB, with this chunk. */
static size_t
fill_until_full(struct peer *p, nc_write_cb cb)
{
	static unsigned char	chunk[4096];
	size_t			before, total = 0;
	uint64_t		written = nc_socket_bytes_written(p->s);
	int			rc;

	memset(chunk, 'w', sizeof chunk);
	for (;;) {
		ck_assert_uint_lt(total, (size_t)256 << 20);
		before = nc_socket_buffer_size(p->s);
		rc = nc_socket_write(p->s, chunk, sizeof chunk, cb,
		    WCB_ARG(total / sizeof chunk));
		total += sizeof chunk;
		ck_assert_int_eq(rc, before + sizeof chunk < HWM ? 1 : 0);
		ck_assert_uint_eq(nc_socket_bytes_written(p->s),
		    written + total);
		if (rc == 0)
			return total;
	}
}

/*
 * write() returns false at the high-water mark, then `drain`, against a
 * peer that does not read, then reads. Over a unix socket, whose kernel
 * buffers are fixed (TCP on loopback grows its own, and in a slow run,
 * valgrind's, the kernel took the whole queue before it was looked at).
 */
START_TEST(test_write_high_water_mark)
{
	struct raw	*r;
	struct peer	*p = client_fd(true, true, &r);
	size_t		 total;

	total = fill_until_full(p, NULL);
	ck_assert_uint_ge(nc_socket_buffer_size(p->s), HWM);
	ck_assert_uint_eq(nc_socket_bytes_written(p->s), total);
	/* The peer does not read: no `drain`. */
	run_for(fx.base, 100);
	ck_assert_int_eq(p->rec.counts[NC_EV_DRAIN], 0);
	ck_assert_uint_gt(nc_socket_buffer_size(p->s), 0);
	ck_assert_int_eq(r->nread, 0);

	/* It reads: one `drain`, once the queue is empty. */
	raw_start(r);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_DRAIN], WAIT));
	ck_assert_uint_eq(nc_socket_buffer_size(p->s), 0);
	ck_assert_uint_eq(nc_socket_bytes_written(p->s), total);
	ck_assert(run_until_count(fx.base, &r->nread, (int)total, WAIT));
	run_for(fx.base, 20);
	ck_assert_int_eq(p->rec.counts[NC_EV_DRAIN], 1);
	ck_assert_int_eq(r->nread, (int)total);
	/* Writable again. */
	ck_assert_int_eq(nc_socket_write(p->s, "x", 1, NULL, NULL), 1);
	ck_assert_str_eq(p->rec.log, "drain");
}
END_TEST

/* One write of exactly 16 KiB returns false even if the kernel takes it
 * at once (Node: state.length < highWaterMark), and `drain` follows;
 * 16 KiB - 1 returns true and no `drain` is emitted. */
START_TEST(test_write_hwm_boundary)
{
	static unsigned char	 buf[HWM];
	struct peer		*p;

	server_start();
	p = client_connected();
	fx.accepted[0]->discard = true;
	memset(buf, 'b', sizeof buf);
	ck_assert_int_eq(nc_socket_write(p->s, buf, HWM - 1, wcb,
	    WCB_ARG(1)), 1);
	ck_assert(run_until(fx.base, &fx.wcb_n, WAIT));
	run_for(fx.base, 20);
	ck_assert_int_eq(p->rec.counts[NC_EV_DRAIN], 0);
	ck_assert_int_eq(nc_socket_write(p->s, buf, HWM, NULL, NULL), 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_DRAIN], WAIT));
	ck_assert_uint_eq(nc_socket_buffer_size(p->s), 0);
	ck_assert(run_until_count(fx.base, &fx.accepted[0]->nbytes,
	    2 * HWM - 1, WAIT));
}
END_TEST

/* Write callbacks run after the bytes went out, in order, never inside
 * the call; an empty write has its callback too. */
START_TEST(test_write_callbacks)
{
	struct peer	*p;

	server_start();
	p = client_connected();
	ck_assert_int_eq(nc_socket_write(p->s, "one", 3, wcb, WCB_ARG(1)), 1);
	ck_assert_int_eq(nc_socket_write(p->s, "two", 3, wcb, WCB_ARG(2)), 1);
	ck_assert_int_eq(nc_socket_write(p->s, "", 0, wcb, WCB_ARG(3)), 1);
	ck_assert_int_eq(nc_socket_write_string(p->s, "four", NULL, wcb,
	    WCB_ARG(4)), 1);
	ck_assert_int_eq(fx.wcb_n, 0);
	ck_assert(run_until_count(fx.base, &fx.wcb_n, 4, WAIT));
	ck_assert_int_eq(fx.wcb_id[0], 1);
	ck_assert_int_eq(fx.wcb_id[1], 2);
	ck_assert_int_eq(fx.wcb_id[2], 3);
	ck_assert_int_eq(fx.wcb_id[3], 4);
	ck_assert_int_eq(fx.wcb_status[0], 0);
	ck_assert_int_eq(fx.wcb_status[3], 0);
	ck_assert_uint_eq(nc_socket_buffer_size(p->s), 0);
	ck_assert_uint_eq(nc_socket_bytes_written(p->s), 10);
	ck_assert(run_until_count(fx.base, &fx.accepted[0]->nbytes, 10,
	    WAIT));
	ck_assert(buf_eq(fx.accepted[0]->in, "onetwofour", 10));
	run_for(fx.base, 20);
	ck_assert_int_eq(fx.wcb_n, 4);
	ck_assert_str_eq(p->rec.log, "connect");
}
END_TEST

/* Queued writes fail when the socket is destroyed: later, never inside
 * destroy(); a write on a destroyed socket fails its callback and emits
 * nothing. Over unix sockets whose peers do not read, so that what is
 * queued stays queued (see test_write_high_water_mark). */
START_TEST(test_write_cb_fail_on_destroy)
{
	struct raw	*r;
	struct peer	*p = client_fd(true, true, &r), *q;
	int		 n;

	/* A write that goes out at once completes. */
	ck_assert_int_eq(nc_socket_write(p->s, "x", 1, wcb, WCB_ARG(1)), 1);
	ck_assert(run_until(fx.base, &fx.wcb_n, WAIT));
	ck_assert_int_eq(fx.wcb_status[0], 0);
	fill_until_full(p, NULL);
	ck_assert_int_eq(nc_socket_write(p->s, "a", 1, wcb, WCB_ARG(2)), 0);
	ck_assert_int_eq(nc_socket_write(p->s, "b", 1, wcb, WCB_ARG(3)), 0);
	run_for(fx.base, 20);
	ck_assert_int_eq(fx.wcb_n, 1);
	ck_assert_uint_gt(nc_socket_buffer_size(p->s), 0);
	nc_socket_destroy(p->s);
	ck_assert(nc_socket_destroyed(p->s));
	ck_assert_int_eq(fx.wcb_n, 1);
	ck_assert_int_eq(p->rec.counts[NC_EV_CLOSE], 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	/* Each queued callback once, in order, with ECANCELED. */
	ck_assert_int_eq(fx.wcb_n, 3);
	ck_assert_int_eq(fx.wcb_id[1], 2);
	ck_assert_int_eq(fx.wcb_id[2], 3);
	ck_assert_int_eq(fx.wcb_status[1], NC_ECANCELED);
	ck_assert_int_eq(fx.wcb_status[2], NC_ECANCELED);
	ck_assert_str_eq(p->rec.log, "close");
	ck_assert(!p->rec.had_error);

	/* After destroy: write() fails its callback, later; no `error`. */
	n = fx.wcb_n;
	ck_assert_int_eq(nc_socket_write(p->s, "late", 4, wcb, WCB_ARG(99)),
	    0);
	ck_assert_int_eq(fx.wcb_n, n);
	ck_assert(run_until_count(fx.base, &fx.wcb_n, n + 1, WAIT));
	ck_assert_int_eq(fx.wcb_id[n], 99);
	ck_assert_int_eq(fx.wcb_status[n], NC_ERR_STREAM_DESTROYED);
	ck_assert_int_eq(p->rec.counts[NC_EV_ERROR], 0);

	/* destroy(err): the queued writes fail with that error. */
	q = client_fd(true, true, &r);
	fill_until_full(q, NULL);
	n = fx.wcb_n;
	ck_assert_int_eq(nc_socket_write(q->s, "x", 1, wcb, WCB_ARG(7)), 0);
	nc_socket_destroy_error(q->s, NC_ECONNRESET);
	ck_assert_int_eq(fx.wcb_n, n);
	ck_assert(run_until(fx.base, &q->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_int_eq(fx.wcb_n, n + 1);
	ck_assert_int_eq(fx.wcb_status[n], NC_ECONNRESET);
	ck_assert_str_eq(q->rec.log, "error,close");
}
END_TEST

/* write_string() with encodings: the peer gets Buffer.from(str, enc). */
START_TEST(test_write_string_encodings)
{
	static const unsigned char	 want[] = {
		'h', 'e', 'l', 'l', 'o',		/* utf8 */
		'h', 'e', 'l', 'l', 'o',		/* hex */
		'h', 'e', 'l', 'l', 'o',		/* base64 */
		0xe9, 'a',				/* latin1 "éa" */
		0xe9,					/* binary "é" */
		'h', 0, 0xe9, 0,			/* utf16le "hé" */
		0xac, 0x20,				/* ucs2 "€" */
		0xc3, 0xa9,				/* utf-8 "é" */
		0xde, 0xad,				/* end_string hex */
	};
	struct raw	*r;
	struct peer	*p = client_fd(true, true, &r);

	raw_start(r);
	ck_assert_int_eq(nc_socket_write_string(p->s, "hello", "utf8", NULL,
	    NULL), 1);
	ck_assert_int_eq(nc_socket_write_string(p->s, "68656c6c6f", "hex",
	    NULL, NULL), 1);
	ck_assert_int_eq(nc_socket_write_string(p->s, "aGVsbG8=", "base64",
	    NULL, NULL), 1);
	ck_assert_int_eq(nc_socket_write_string(p->s, "\xc3\xa9" "a",
	    "latin1", NULL, NULL), 1);
	ck_assert_int_eq(nc_socket_write_string(p->s, "\xc3\xa9", "binary",
	    NULL, NULL), 1);
	ck_assert_int_eq(nc_socket_write_string(p->s, "h\xc3\xa9", "utf16le",
	    NULL, NULL), 1);
	ck_assert_int_eq(nc_socket_write_string(p->s, "\xe2\x82\xac", "ucs2",
	    NULL, NULL), 1);
	ck_assert_int_eq(nc_socket_write_string(p->s, "\xc3\xa9", "utf-8",
	    wcb, WCB_ARG(1)), 1);
	/* An unknown encoding is returned; nothing is written. */
	ck_assert_int_eq(nc_socket_write_string(p->s, "zz", "klingon", wcb,
	    WCB_ARG(2)), NC_ERR_UNKNOWN_ENCODING);
	ck_assert_int_eq(nc_socket_end_string(p->s, "zz", "klingon"),
	    NC_ERR_UNKNOWN_ENCODING);
	ck_assert_int_eq(nc_socket_end_string(p->s, "dead", "hex"), 0);
	ck_assert_uint_eq(nc_socket_bytes_written(p->s), sizeof want);
	ck_assert(run_until(fx.base, &r->eof, WAIT));
	ck_assert(buf_eq(r->buf, want, sizeof want));
	ck_assert_int_eq(fx.wcb_n, 1);
	ck_assert_int_eq(fx.wcb_id[0], 1);
	ck_assert_int_eq(p->rec.counts[NC_EV_ERROR], 0);
	ck_assert_int_eq(p->rec.counts[NC_EV_FINISH], 1);
}
END_TEST

/* write_buffer() moves the chains: the source is empty at once and the
 * bytes arrive intact, references included. */
static void
free_ref_cb(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	(*(int *)arg)++;
}

START_TEST(test_write_buffer_moves)
{
	static const char	 ref[] = "-by-reference-";
	struct evbuffer		*b;
	struct raw		*r;
	struct peer		*p = client_fd(true, true, &r);
	int			 freed = 0, i;

	raw_start(r);
	b = evbuffer_new();
	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(evbuffer_add(b, "first", 5), 0);
	ck_assert_int_eq(evbuffer_add_reference(b, ref, strlen(ref),
	    free_ref_cb, &freed), 0);
	for (i = 0; i < 1000; i++)
		ck_assert_int_eq(evbuffer_add_printf(b, "%04d", i), 4);
	ck_assert_int_eq(nc_socket_write_buffer(p->s, b, wcb, WCB_ARG(1)), 1);
	ck_assert_uint_eq(evbuffer_get_length(b), 0);
	/* The buffer stays the caller's and usable. */
	ck_assert_int_eq(evbuffer_add(b, "last", 4), 0);
	ck_assert_int_ge(nc_socket_write_buffer(p->s, b, NULL, NULL), 0);
	ck_assert_uint_eq(evbuffer_get_length(b), 0);
	evbuffer_free(b);
	ck_assert_int_eq(nc_socket_write_buffer(p->s, NULL, NULL, NULL),
	    NC_ERR_INVALID_ARG_VALUE);
	ck_assert_uint_eq(nc_socket_bytes_written(p->s),
	    5 + strlen(ref) + 4000 + 4);
	ck_assert(run_until_count(fx.base, &r->nread,
	    (int)(5 + strlen(ref) + 4000 + 4), WAIT));
	{
		char	want[5 + sizeof ref + 4000 + 4];
		size_t	off;

		off = (size_t)snprintf(want, sizeof want, "first%s", ref);
		for (i = 0; i < 1000; i++)
			off += (size_t)snprintf(want + off, sizeof want - off,
			    "%04d", i);
		memcpy(want + off, "last", 4);
		ck_assert(buf_eq(r->buf, want, off + 4));
	}
	ck_assert(run_until(fx.base, &fx.wcb_n, WAIT));
	ck_assert_int_eq(fx.wcb_status[0], 0);
	/* The referenced memory was released once sent. */
	ck_assert(run_until(fx.base, &freed, WAIT));
}
END_TEST

/* Several MiB through an echo server, with backpressure both ways,
 * arrive intact and in order (test-net-write-slow.js, at size). */
START_TEST(test_big_transfer)
{
	const size_t	 total = 4 << 20;
	unsigned char	*src;
	struct peer	*p;
	size_t		 i;

	src = malloc(total);
	ck_assert_ptr_nonnull(src);
	for (i = 0; i < total; i++)
		src[i] = (unsigned char)((i * 7) ^ (i >> 11) ^ (i >> 19));
	server_start();
	fx.on_connection = on_conn_echo;
	p = client_connected();
	p->src = src;
	p->total = total;
	p->chunk = 65536;
	p->end_after = true;
	ck_assert_int_eq(nc_socket_on(p->s, NC_EV_DRAIN, pump_cb, p), 0);
	pump(p);
	ck_assert(run_until_count(fx.base, &p->nbytes, (int)total,
	    4 * WAIT));
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert(buf_eq(p->in, src, total));
	ck_assert_uint_eq(nc_socket_bytes_read(p->s), total);
	ck_assert_uint_eq(nc_socket_bytes_written(p->s), total);
	ck_assert_uint_eq(nc_socket_bytes_read(fx.accepted[0]->s), total);
	ck_assert_int_eq(p->rec.counts[NC_EV_ERROR], 0);
	ck_assert_int_eq(p->rec.counts[NC_EV_END], 1);
	ck_assert_int_gt(p->rec.counts[NC_EV_DRAIN], 0);
	free(src);
}
END_TEST

/*
 * end() and half-open.
 */

/* end(): our FIN reaches the peer (`end` there), `finish` here. */
START_TEST(test_end_fin)
{
	struct peer	*p, *srv;

	server_start();
	p = client_connected();
	srv = fx.accepted[0];
	ck_assert_int_eq(nc_socket_end(p->s, NULL, 0), 0);
	ck_assert_int_eq(p->rec.counts[NC_EV_FINISH], 0);
	ck_assert(run_until(fx.base, &srv->rec.counts[NC_EV_END], WAIT));
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert(run_until(fx.base, &srv->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "connect,finish,end,close");
	ck_assert_str_eq(srv->rec.log, "end,finish,close");
	ck_assert(!p->rec.had_error);
	ck_assert(!srv->rec.had_error);
	/* A second end() is harmless. */
	ck_assert_int_eq(nc_socket_end(p->s, NULL, 0), 0);
}
END_TEST

/* end(data) and end_string(): the data, then FIN. */
START_TEST(test_end_with_data)
{
	struct peer	*p, *q;

	server_start();
	p = client_connected();
	q = client_connected();
	ck_assert_int_eq(nc_socket_end(p->s, "hello", 5), 0);
	ck_assert_int_eq(nc_socket_end_string(q->s, "aGk=", "base64"), 0);
	ck_assert(run_until(fx.base, &fx.accepted[0]->rec.counts[NC_EV_END],
	    WAIT));
	ck_assert(run_until(fx.base, &fx.accepted[1]->rec.counts[NC_EV_END],
	    WAIT));
	ck_assert(buf_eq(fx.accepted[0]->in, "hello", 5));
	ck_assert(buf_eq(fx.accepted[1]->in, "hi", 2));
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert(run_until(fx.base, &q->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "connect,finish,end,close");
	ck_assert_uint_eq(nc_socket_bytes_written(p->s), 5);
	ck_assert_uint_eq(nc_socket_bytes_written(q->s), 2);
}
END_TEST

/* test-net-allow-half-open.js: allowHalfOpen false; the peer ends with
 * 1 KiB; `end`, then on the next tick not destroyed, `finish` before
 * `close`. */
static int	aho_ticked;

static void
aho_end_tick(evutil_socket_t fd, short what, void *arg)
{
	struct peer	*p = arg;

	(void)fd;
	(void)what;
	/* Not destroyed straight away without a proper shutdown. */
	ck_assert(!nc_socket_destroyed(p->s));
	aho_ticked++;
}

static void
aho_end_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	next_tick(aho_end_tick, arg);
}

static void
aho_finish_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct peer	*p = arg;

	(void)emitter;
	(void)ev;
	ck_assert(!nc_socket_destroyed(p->s));
}

static void
on_conn_end_1k(struct peer *p)
{
	static const char	zeros[1024];

	ck_assert_int_eq(nc_socket_end(p->s, zeros, sizeof zeros), 0);
}

START_TEST(test_allow_half_open_false)
{
	struct peer	*p;

	server_start();
	fx.on_connection = on_conn_end_1k;
	p = client_port(fx.port, "127.0.0.1");
	ck_assert_int_eq(nc_socket_on(p->s, NC_EV_END, aho_end_cb, p), 0);
	ck_assert_int_eq(nc_socket_on(p->s, NC_EV_FINISH, aho_finish_cb, p),
	    0);
	aho_ticked = 0;
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_int_eq(aho_ticked, 1);
	ck_assert_str_eq(p->rec.log, "connect,end,finish,close");
	ck_assert(!p->rec.had_error);
	ck_assert_int_eq(p->nbytes, 1024);
	ck_assert_uint_eq(nc_socket_bytes_read(p->s), 1024);
	ck_assert(run_until(fx.base,
	    &fx.accepted[0]->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(fx.accepted[0]->rec.log, "finish,end,close");
}
END_TEST

/* Without allowHalfOpen, what is queued when the peer's FIN comes still
 * goes out before our FIN. */
static void
write_in_end_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct peer	*p = arg;

	(void)emitter;
	(void)ev;
	/* Node: not yet ended inside `end`, so the write is accepted. */
	ck_assert_int_eq(nc_socket_write(p->s, "bye", 3, wcb, WCB_ARG(5)), 1);
}

START_TEST(test_allow_half_open_false_flushes)
{
	struct peer	*p, *srv;

	server_start_opts("127.0.0.1", NULL, true);
	fx.on_connection = on_conn_end;
	p = client_port(fx.port, "127.0.0.1");
	ck_assert_int_eq(nc_socket_on(p->s, NC_EV_END, write_in_end_cb, p),
	    0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "connect,end,finish,close");
	ck_assert_int_eq(fx.wcb_n, 1);
	ck_assert_int_eq(fx.wcb_status[0], 0);
	srv = fx.accepted[0];
	ck_assert(run_until(fx.base, &srv->rec.counts[NC_EV_END], WAIT));
	ck_assert(buf_eq(srv->in, "bye", 3));
}
END_TEST

/* test-net-write-after-end-nt.js: we ended, the peer ends: write() gives
 * EPIPE, returns false, and the error comes on a later tick. */
static void
epipe_end_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct peer	*p = arg;

	(void)emitter;
	(void)ev;
	ck_assert_int_eq(nc_socket_write_string(p->s, "hello", NULL, wcb,
	    WCB_ARG(1)), 0);
	ck_assert_int_eq(p->rec.counts[NC_EV_ERROR], 0);
	ck_assert_int_eq(fx.wcb_n, 0);
}

static void
epipe_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct peer	*p = arg;

	(void)emitter;
	(void)ev;
	ck_assert_int_eq(nc_socket_on(p->s, NC_EV_END, epipe_end_cb, p), 0);
	ck_assert_int_eq(nc_socket_end(p->s, NULL, 0), 0);
}

START_TEST(test_write_after_peer_fin_epipe)
{
	struct nc_socket	*s;
	struct peer		*p = peer_new();

	server_start();
	fx.on_connection = on_conn_end;
	ck_assert_int_eq(nc_connect_port(fx.base, fx.port, "127.0.0.1",
	    epipe_connect_cb, p, &s), 0);
	peer_attach(p, s);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_int_eq(p->rec.counts[NC_EV_ERROR], 1);
	ck_assert_int_eq(p->err_code, NC_EPIPE);
	ck_assert(p->rec.had_error);
	ck_assert_int_eq(fx.wcb_n, 1);
	ck_assert_int_eq(fx.wcb_status[0], NC_EPIPE);
	/* end before error, error before close. */
	ck_assert_ptr_nonnull(strstr(p->rec.log, "end,error,close"));
}
END_TEST

/* allowHalfOpen false: once the peer's FIN has ended our side too, a
 * write fails with EPIPE: `error`, then `close(true)`; the bytes never
 * leave. */
static void
write_after_fin_tick(evutil_socket_t fd, short what, void *arg)
{
	struct peer	*p = arg;

	(void)fd;
	(void)what;
	ck_assert(!nc_socket_destroyed(p->s));
	ck_assert_int_eq(nc_socket_write(p->s, "late", 4, wcb, WCB_ARG(3)),
	    0);
	ck_assert_int_eq(p->rec.counts[NC_EV_ERROR], 0);
}

static void
write_after_fin_end_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	(void)emitter;
	(void)ev;
	next_tick(write_after_fin_tick, arg);
}

START_TEST(test_write_after_peer_fin_auto_end)
{
	struct peer	*p, *srv;

	server_start_opts("127.0.0.1", NULL, true);
	fx.on_connection = on_conn_end;
	p = client_port(fx.port, "127.0.0.1");
	ck_assert_int_eq(nc_socket_on(p->s, NC_EV_END, write_after_fin_end_cb,
	    p), 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "connect,end,error,close");
	ck_assert_int_eq(p->err_code, NC_EPIPE);
	ck_assert(p->rec.had_error);
	ck_assert_int_eq(fx.wcb_n, 1);
	ck_assert_int_eq(fx.wcb_status[0], NC_EPIPE);
	srv = fx.accepted[0];
	ck_assert(run_until(fx.base, &srv->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_int_eq(srv->nbytes, 0);
}
END_TEST

/* allowHalfOpen true: after `end` the socket stays writable until the
 * program ends it (test-net-allow-half-open.js, the other way). */
START_TEST(test_allow_half_open_true)
{
	struct nc_connect_options	 o;
	struct nc_socket		*s;
	struct peer			*p = peer_new(), *srv;

	server_start();
	fx.on_connection = on_conn_end;
	memset(&o, 0, sizeof o);
	o.base = fx.base;
	o.port = fx.port;
	o.host = "127.0.0.1";
	o.allow_half_open = true;
	ck_assert_int_eq(nc_connect(&o, connect_cb, p, &s), 0);
	peer_attach(p, s);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_END], WAIT));
	run_for(fx.base, 50);
	ck_assert(!nc_socket_destroyed(s));
	ck_assert_int_eq(p->rec.counts[NC_EV_FINISH], 0);
	ck_assert_int_eq(p->rec.counts[NC_EV_CLOSE], 0);
	srv = fx.accepted[0];
	ck_assert_int_eq(nc_socket_write(s, "still here", 10, wcb,
	    WCB_ARG(1)), 1);
	ck_assert(run_until_count(fx.base, &srv->nbytes, 10, WAIT));
	ck_assert(buf_eq(srv->in, "still here", 10));
	ck_assert_int_eq(fx.wcb_status[0], 0);
	ck_assert_int_eq(nc_socket_end(s, NULL, 0), 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "connect,end,finish,close");
	ck_assert(!p->rec.had_error);
	ck_assert(run_until(fx.base, &srv->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(srv->rec.log, "finish,end,close");
}
END_TEST

/* Writing after end(): ERR_STREAM_WRITE_AFTER_END, as `error` on a later
 * tick, then close(true); no `finish`. */
START_TEST(test_write_after_end)
{
	struct peer	*p;

	server_start();
	fx.on_connection = on_conn_pause;
	p = client_connected();
	ck_assert_int_eq(nc_socket_end(p->s, NULL, 0), 0);
	ck_assert_int_eq(nc_socket_write(p->s, "x", 1, wcb, WCB_ARG(1)), 0);
	ck_assert_int_eq(p->rec.counts[NC_EV_ERROR], 0);
	ck_assert_int_eq(fx.wcb_n, 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "connect,error,close");
	ck_assert_int_eq(p->err_code, NC_ERR_STREAM_WRITE_AFTER_END);
	ck_assert_str_eq(nc_err_name(p->err_code),
	    "ERR_STREAM_WRITE_AFTER_END");
	ck_assert_str_eq(p->err_message, "write after end");
	ck_assert(p->rec.had_error);
	ck_assert_int_eq(fx.wcb_n, 1);
	ck_assert_int_eq(fx.wcb_status[0], NC_ERR_STREAM_WRITE_AFTER_END);
	/* Once destroyed: still "write after end", and nothing emitted. */
	ck_assert_int_eq(nc_socket_write(p->s, "y", 1, wcb, WCB_ARG(2)), 0);
	ck_assert(run_until_count(fx.base, &fx.wcb_n, 2, WAIT));
	ck_assert_int_eq(fx.wcb_status[1], NC_ERR_STREAM_WRITE_AFTER_END);
	run_for(fx.base, 20);
	ck_assert_int_eq(p->rec.counts[NC_EV_ERROR], 1);
}
END_TEST

/*
 * connect() again after `close`, as Node's socket.connect() does.
 */

/*
 * What tests/node/reconnect.js prints under Node v20.20.2 (checked by
 * tests/node-order.sh): the same socket connects, echoes 6 bytes, ends,
 * and connects again from inside its `close` listener; its counts and
 * addresses start afresh. Node's `ready` (after `connect`) has no
 * counterpart here and is not listened to there.
 */
#define NODE_RECONNECT \
	"new connecting=0 destroyed=0 read=0 written=0 remote=none local=none\n" \
	"connect() connecting=1 destroyed=0 read=0 written=0 remote=none " \
	"local=none\n" \
	"connect connecting=0 destroyed=0 read=0 written=0 remote=port " \
	"local=set\n" \
	"data 6 connecting=0 destroyed=0 read=6 written=6 remote=port " \
	"local=set\n" \
	"finish connecting=0 destroyed=0 read=6 written=6 remote=port " \
	"local=set\n" \
	"end connecting=0 destroyed=0 read=6 written=6 remote=port local=set\n" \
	"close hadError=0 connecting=0 destroyed=1 read=6 written=6 " \
	"remote=port local=none\n" \
	"connect() again connecting=1 destroyed=0 read=0 written=0 " \
	"remote=none local=none\n" \
	"connect connecting=0 destroyed=0 read=0 written=0 remote=port " \
	"local=set\n" \
	"data 6 connecting=0 destroyed=0 read=6 written=6 remote=port " \
	"local=set\n" \
	"finish connecting=0 destroyed=0 read=6 written=6 remote=port " \
	"local=set\n" \
	"end connecting=0 destroyed=0 read=6 written=6 remote=port local=set\n" \
	"close hadError=0 connecting=0 destroyed=1 read=6 written=6 " \
	"remote=port local=none\n"

static struct {
	struct nc_socket	*s;
	char			 log[2048];
	int			 round;
	int			 closes;
	int			 timeouts;
	int			 datas;
	char			 text[64];	/* what `data` brought */
	bool			 end_on_data;
	int			 rc;		/* the last connect() */
} rx;

static void
rx_state(const char *tag)
{
	size_t	n = strlen(rx.log);

	snprintf(rx.log + n, sizeof rx.log - n, "%s connecting=%d "
	    "destroyed=%d read=%llu written=%llu remote=%s local=%s\n", tag,
	    nc_socket_connecting(rx.s), nc_socket_destroyed(rx.s),
	    (unsigned long long)nc_socket_bytes_read(rx.s),
	    (unsigned long long)nc_socket_bytes_written(rx.s),
	    nc_socket_remote_port(rx.s) == fx.port ? "port" : "none",
	    nc_socket_local_port(rx.s) > 0 ? "set" : "none");
}

static void
rx_event_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	char	tag[64];

	(void)arg;
	ck_assert_ptr_eq(emitter, rx.s);
	if (ev->event == NC_EV_TIMEOUT)
		rx.timeouts++;
	if (ev->event == NC_EV_ERROR)
		snprintf(tag, sizeof tag, "error %d", ev->error->code);
	else
		snprintf(tag, sizeof tag, "%s", nc_event_name(ev->event));
	rx_state(tag);
}

static void
rx_write_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	ck_assert_int_ge(nc_socket_write(rx.s, "hello!", 6, NULL, NULL), 0);
}

static void
rx_data_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	char	tag[32];

	(void)emitter;
	(void)arg;
	snprintf(tag, sizeof tag, "data %zu", ev->len);
	rx_state(tag);
	rx.datas++;
	strncat(rx.text, ev->data, sizeof rx.text - strlen(rx.text) - 1);
	if (rx.end_on_data)
		ck_assert_int_eq(nc_socket_end(rx.s, NULL, 0), 0);
}

/* `close`: connects again inside the listener the first time. */
static void
rx_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	char	tag[32];

	(void)emitter;
	(void)arg;
	rx.closes++;
	snprintf(tag, sizeof tag, "close hadError=%d", ev->had_error);
	rx_state(tag);
	if (++rx.round < 2) {
		rx.rc = nc_socket_connect_port(rx.s, fx.port, "127.0.0.1", NULL,
		    NULL);
		rx_state("connect() again");
	}
}

/* A socket listened to as tests/node/reconnect.js listens to it. */
static void
rx_socket(void)
{
	static const enum nc_event	 evs[] = { NC_EV_LOOKUP, NC_EV_CONNECT,
	    NC_EV_END, NC_EV_FINISH, NC_EV_TIMEOUT, NC_EV_ERROR };
	struct nc_socket_options	 so;
	size_t				 i;

	memset(&rx, 0, sizeof rx);
	memset(&so, 0, sizeof so);
	so.base = fx.base;
	rx.s = nc_socket_new(&so);
	ck_assert_ptr_nonnull(rx.s);
	ck_assert_int_eq(nc_socket_set_encoding(rx.s, "utf8"), 0);
	for (i = 0; i < sizeof evs / sizeof evs[0]; i++)
		ck_assert_int_eq(nc_socket_on(rx.s, evs[i], rx_event_cb, NULL),
		    0);
	ck_assert_int_eq(nc_socket_on(rx.s, NC_EV_DATA, rx_data_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(rx.s, NC_EV_CLOSE, rx_close_cb, NULL),
	    0);
}

/* test-net-bytes-stats.js, test-net-reconnect.js: Node's transcript. */
START_TEST(test_reconnect_node_order)
{
	fx.on_connection = on_conn_echo;
	server_start();
	rx_socket();
	rx.end_on_data = true;
	ck_assert_int_eq(nc_socket_on(rx.s, NC_EV_CONNECT, rx_write_cb, NULL),
	    0);
	rx_state("new");
	ck_assert_int_eq(nc_socket_connect_port(rx.s, fx.port, "127.0.0.1",
	    NULL, NULL), 0);
	rx_state("connect()");
	ck_assert(run_until_count(fx.base, &rx.closes, 2, WAIT));
	ck_assert_int_eq(rx.rc, 0);
	ck_assert_str_eq(rx.log, NODE_RECONNECT);
	/* Each connection read and wrote 6: 12 in all (bytes-stats). */
	ck_assert_int_eq(fx.connections, 2);
	/* Freed after its second `close`: the loop runs dry. */
}
END_TEST

/* The server ends the first connection and holds the others open. */
static void
on_conn_end_first(struct peer *p)
{
	if (fx.connections == 1)
		on_conn_end(p);
}

/*
 * Later, on a socket the program holds: timeout, encoding, noDelay and
 * keepAlive carry over (Node v20 sets TCP_NODELAY, SO_KEEPALIVE and
 * TCP_KEEPIDLE on the new fd again), the connect listener is called,
 * and the idle timer runs on the new connection.
 */
START_TEST(test_reconnect_later_keeps_options)
{
	struct peer	*q = peer_new();	/* its connect listener only */

	fx.on_connection = on_conn_end_first;
	server_start();
	rx_socket();
	nc_socket_hold(rx.s);
	ck_assert_int_eq(nc_socket_set_timeout(rx.s, 100, NULL, NULL), 0);
	ck_assert_int_eq(nc_socket_set_no_delay(rx.s, true), 0);
	ck_assert_int_eq(nc_socket_set_keep_alive(rx.s, true, 7000), 0);
	ck_assert_int_eq(nc_socket_set_encoding(rx.s, "hex"), 0);
	ck_assert_int_eq(nc_socket_connect_port(rx.s, fx.port, "127.0.0.1",
	    NULL, NULL), 0);
	rx.round = 1;		/* no connect() inside `close` */
	ck_assert(run_until(fx.base, &rx.closes, WAIT));
	ck_assert(nc_socket_destroyed(rx.s));
	rx.timeouts = 0;

	ck_assert_int_eq(nc_socket_connect_port(rx.s, fx.port, "127.0.0.1",
	    connect_cb, q), 0);
	ck_assert(!nc_socket_destroyed(rx.s));
	ck_assert(nc_socket_connecting(rx.s));
	ck_assert(run_until(fx.base, &q->connect_cb_calls, WAIT));
	ck_assert(run_until_count(fx.base, &fx.connections, 2, WAIT));
	ck_assert(run_until(fx.base, &rx.timeouts, WAIT));
	ck_assert(!nc_socket_destroyed(rx.s));
	ck_assert_int_eq(sockopt(rx.s, IPPROTO_TCP, TCP_NODELAY), 1);
	ck_assert_int_eq(sockopt(rx.s, SOL_SOCKET, SO_KEEPALIVE), 1);
	ck_assert_int_eq(sockopt(rx.s, IPPROTO_TCP, TCP_KEEPIDLE), 7);
	/* The encoding too: the server's bytes come as hex. */
	ck_assert_int_eq(nc_socket_write(fx.accepted[1]->s, "\x01\xff", 2,
	    NULL, NULL), 1);
	ck_assert(run_until(fx.base, &rx.datas, WAIT));
	ck_assert_str_eq(rx.text, "01ff");
	ck_assert_uint_eq(nc_socket_bytes_read(rx.s), 2);
	ck_assert_int_eq(q->connect_cb_calls, 1);
	nc_socket_destroy(rx.s);
	ck_assert(run_until_count(fx.base, &rx.closes, 2, WAIT));
	nc_socket_release(rx.s);
}
END_TEST

/*
 * Between destroy() and `close`: refused (NC_ERR_SOCKET_CLOSED). Node
 * connects there and then emits the old connection's `close` while the
 * new one connects; a caveat in libnetcluster(3).
 */
START_TEST(test_reconnect_before_close_refused)
{
	fx.on_connection = on_conn_echo;
	server_start();
	rx_socket();
	rx.round = 1;
	nc_socket_hold(rx.s);
	ck_assert_int_eq(nc_socket_connect_port(rx.s, fx.port, "127.0.0.1",
	    NULL, NULL), 0);
	ck_assert(run_until(fx.base, &fx.connections, WAIT));
	nc_socket_destroy(rx.s);
	ck_assert_int_eq(nc_socket_connect_port(rx.s, fx.port, "127.0.0.1",
	    NULL, NULL), NC_ERR_SOCKET_CLOSED);
	ck_assert(run_until(fx.base, &rx.closes, WAIT));
	ck_assert_int_eq(nc_socket_connect_port(rx.s, fx.port, "127.0.0.1",
	    NULL, NULL), 0);
	ck_assert(run_until_count(fx.base, &fx.connections, 2, WAIT));
	nc_socket_destroy(rx.s);
	ck_assert(run_until_count(fx.base, &rx.closes, 2, WAIT));
	nc_socket_release(rx.s);
}
END_TEST

/* After an error: the error is gone, `close` is clean the next time. */
START_TEST(test_reconnect_after_error)
{
	int	closed_port;

	fx.on_connection = on_conn_end;
	server_start();
	closed_port = free_port();
	rx_socket();
	rx.round = 1;
	nc_socket_hold(rx.s);
	ck_assert_int_eq(nc_socket_connect_port(rx.s, closed_port, "127.0.0.1",
	    NULL, NULL), 0);
	ck_assert(run_until(fx.base, &rx.closes, WAIT));
	ck_assert_ptr_nonnull(strstr(rx.log, "close hadError=1"));
	ck_assert_ptr_nonnull(strstr(rx.log, "error -111"));
	rx.log[0] = '\0';
	ck_assert_int_eq(nc_socket_connect_port(rx.s, fx.port, "127.0.0.1",
	    NULL, NULL), 0);
	ck_assert(run_until_count(fx.base, &rx.closes, 2, WAIT));
	ck_assert_ptr_nonnull(strstr(rx.log, "close hadError=0"));
	ck_assert_ptr_null(strstr(rx.log, "error"));
	nc_socket_release(rx.s);
}
END_TEST

/* A server's connection, once closed, connects out as Node's does. */
START_TEST(test_reconnect_server_side)
{
	struct nc_socket	*a;

	fx.on_connection = on_conn_echo;
	server_start();
	(void)client_connected();
	a = fx.accepted[0]->s;
	nc_socket_destroy(a);
	ck_assert(run_until(fx.base, &fx.accepted[0]->rec.counts[NC_EV_CLOSE],
	    WAIT));
	ck_assert_int_eq(nc_socket_connect_port(a, fx.port, "127.0.0.1", NULL,
	    NULL), 0);
	ck_assert(run_until_count(fx.base, &fx.connections, 2, WAIT));
	ck_assert(run_until(fx.base, &fx.accepted[0]->rec.counts[NC_EV_CONNECT],
	    WAIT));
	ck_assert(!nc_socket_destroyed(a));
	nc_socket_destroy(a);
	ck_assert(run_until_count(fx.base,
	    &fx.accepted[0]->rec.counts[NC_EV_CLOSE], 2, WAIT));
	/* Closed once per connection; teardown checks for one. */
	fx.accepted[0]->rec.counts[NC_EV_CLOSE] = 1;
}
END_TEST

/*
 * destroy().
 */

/* destroy(): `close(false)` on a later turn, never inside the call. */
START_TEST(test_destroy_close_later)
{
	struct peer	*p, *srv;

	server_start();
	p = client_connected();
	srv = fx.accepted[0];
	nc_socket_destroy(p->s);
	ck_assert(nc_socket_destroyed(p->s));
	ck_assert_int_eq(nc_socket_fd(p->s), -1);
	ck_assert_int_eq(p->rec.counts[NC_EV_CLOSE], 0);
	nc_socket_destroy(p->s);		/* twice: harmless */
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "connect,close");
	ck_assert(!p->rec.had_error);
	run_for(fx.base, 20);
	ck_assert_int_eq(p->rec.counts[NC_EV_CLOSE], 1);
	/* What the socket knew stays readable after close. */
	ck_assert_str_eq(nc_socket_remote_address(p->s), "127.0.0.1");
	ck_assert_int_eq(nc_socket_remote_port(p->s), fx.port);
	/* The peer sees the end. */
	ck_assert(run_until(fx.base, &srv->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_int_eq(srv->rec.counts[NC_EV_END], 1);
}
END_TEST

/* destroy(err): `error` with that code, then `close(true)`. */
START_TEST(test_destroy_error)
{
	struct peer	*p;

	server_start();
	p = client_connected();
	nc_socket_destroy_error(p->s, NC_ECONNRESET);
	ck_assert_int_eq(p->rec.counts[NC_EV_ERROR], 0);
	ck_assert_int_eq(p->rec.counts[NC_EV_CLOSE], 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "connect,error,close");
	ck_assert_int_eq(p->err_code, NC_ECONNRESET);
	ck_assert(p->rec.had_error);
	/* A second destroy changes nothing. */
	nc_socket_destroy_error(p->s, NC_EPIPE);
	run_for(fx.base, 20);
	ck_assert_int_eq(p->rec.counts[NC_EV_ERROR], 1);
	ck_assert_int_eq(p->rec.counts[NC_EV_CLOSE], 1);
}
END_TEST

/* An `error` nobody listens to is logged and the socket closed. */
static void
log_cb(int level, const char *msg, void *arg)
{
	size_t	len = strlen(fx.log);

	(void)arg;
	ck_assert_int_le(level, NC_LOG_DEBUG);
	snprintf(fx.log + len, sizeof fx.log - len, "%s\n", msg);
	fx.log_lines++;
}

static void
count_close_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct peer	*p = arg;

	(void)emitter;
	p->rec.counts[NC_EV_CLOSE]++;
	p->rec.had_error = ev->had_error;
}

START_TEST(test_unhandled_error_logged)
{
	struct nc_socket	*s;
	struct peer		*p = peer_new(), *q = peer_new();
	char			 want[64];
	int			 port = free_port();

	nc_set_log_cb(log_cb, NULL);
	ck_assert_int_eq(nc_connect_port(fx.base, port, "127.0.0.1", NULL,
	    NULL, &s), 0);
	/* Only a close listener: no `error` listener. */
	p->s = s;
	nc_socket_hold(s);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_CLOSE, count_close_cb, p), 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert(p->rec.had_error);
	snprintf(want, sizeof want, "connect ECONNREFUSED 127.0.0.1:%d",
	    port);
	ck_assert_ptr_nonnull(strstr(fx.log, want));

	/* destroy(err) on an open socket, without a listener. */
	server_start();
	ck_assert_int_eq(nc_connect_port(fx.base, fx.port, "127.0.0.1", NULL,
	    NULL, &s), 0);
	q->s = s;
	nc_socket_hold(s);
	ck_assert_int_eq(nc_socket_on(s, NC_EV_CLOSE, count_close_cb, q), 0);
	ck_assert(run_until(fx.base, &fx.connections, WAIT));
	ck_assert_uint_eq(nc_socket_listener_count(s, NC_EV_ERROR), 0);
	fx.log[0] = '\0';
	nc_socket_destroy_error(s, NC_ETIMEDOUT);
	ck_assert(run_until(fx.base, &q->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert(q->rec.had_error);
	ck_assert_ptr_nonnull(strstr(fx.log, "ETIMEDOUT"));
}
END_TEST

/* A listener may destroy the socket inside `data`, `connect`, `end` or
 * `lookup`; nothing runs after on a dead socket. */
static void
destroy_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	nc_socket_destroy(emitter);
	/* Writes on it now fail quietly. */
	ck_assert_int_eq(nc_socket_write(emitter, "x", 1, NULL, NULL), 0);
}

static void
on_conn_hello_twice(struct peer *p)
{
	ck_assert_int_eq(nc_socket_write(p->s, "hello", 5, NULL, NULL), 1);
	ck_assert_int_eq(nc_socket_end(p->s, "world", 5), 0);
}

static int	data_after_calls;

static void
data_after_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ck_assert(nc_socket_destroyed(emitter));
	data_after_calls++;
}

START_TEST(test_destroy_inside_listeners)
{
	struct lookup_ctl	 l;
	struct peer		*p, *q, *r, *t;

	data_after_calls = 0;
	server_start();
	fx.on_connection = on_conn_hello_twice;

	/* In `data`; the next listener of that emit still runs. */
	p = client_port(fx.port, "127.0.0.1");
	p->destroy_on_data = true;
	ck_assert_int_eq(nc_socket_on(p->s, NC_EV_DATA, data_after_cb, NULL),
	    0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	run_for(fx.base, 30);
	ck_assert_int_eq(p->data_events, 1);
	ck_assert_int_eq(data_after_calls, 1);
	ck_assert_str_eq(p->rec.log, "connect,close");
	ck_assert(!p->rec.had_error);

	/* In `connect`. */
	q = client_port(fx.port, "127.0.0.1");
	ck_assert_int_eq(nc_socket_on(q->s, NC_EV_CONNECT, destroy_cb, NULL),
	    0);
	ck_assert(run_until(fx.base, &q->rec.counts[NC_EV_CLOSE], WAIT));
	run_for(fx.base, 30);
	ck_assert_str_eq(q->rec.log, "connect,close");
	ck_assert_int_eq(q->data_events, 0);

	/* In `end`. */
	r = client_port(fx.port, "127.0.0.1");
	ck_assert_int_eq(nc_socket_on(r->s, NC_EV_END, destroy_cb, NULL), 0);
	ck_assert(run_until(fx.base, &r->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(r->rec.log, "connect,end,close");

	/* In `lookup`: no connection is made. */
	memset(&l, 0, sizeof l);
	l.mode = LK_SYNC;
	l.address = "127.0.0.1";
	l.family = 4;
	t = client_lookup("dummy", fx.port, 0, &l);
	ck_assert_int_eq(nc_socket_on(t->s, NC_EV_LOOKUP, destroy_cb, NULL),
	    0);
	ck_assert(run_until(fx.base, &t->rec.counts[NC_EV_CLOSE], WAIT));
	run_for(fx.base, 30);
	ck_assert_str_eq(t->rec.log, "lookup,close");
	ck_assert_int_eq(t->connect_cb_calls, 0);
}
END_TEST

/* Destroyed while the lookup runs: the late answer is ignored. */
START_TEST(test_destroy_during_lookup)
{
	struct lookup_ctl	 l;
	struct peer		*p, *q;

	server_start();
	memset(&l, 0, sizeof l);
	l.mode = LK_ASYNC;
	p = client_lookup("slow.test", fx.port, 0, &l);
	ck_assert(run_until(fx.base, &l.calls, WAIT));
	nc_socket_destroy(p->s);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	nc_lookup_done(l.req, 0, "127.0.0.1", 4);
	run_for(fx.base, 30);
	ck_assert_str_eq(p->rec.log, "close");
	ck_assert_int_eq(p->connect_cb_calls, 0);
	ck_assert_int_eq(fx.connections, 0);

	/* The default resolver too (localhost from /etc/hosts). */
	if (hosts_has_localhost4()) {
		q = client_port(fx.port, "localhost");
		nc_socket_destroy(q->s);
		ck_assert(run_until(fx.base, &q->rec.counts[NC_EV_CLOSE],
		    WAIT));
		ck_assert_str_eq(q->rec.log, "close");
	}
}
END_TEST

/*
 * Listeners.
 */

static int	 late_calls, early_calls, victim_calls;

static void
late_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	late_calls++;
}

static void
victim_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	victim_calls++;
}

static void
early_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	if (early_calls++ == 0) {
		/* Takes effect from the next emit, both ways. */
		ck_assert_int_eq(nc_socket_on(emitter, NC_EV_DATA, late_cb,
		    NULL), 0);
		ck_assert_int_eq(nc_socket_off(emitter, NC_EV_DATA,
		    victim_cb, NULL), 0);
	}
}

START_TEST(test_listeners)
{
	struct peer	*p, *srv;

	late_calls = early_calls = victim_calls = 0;
	server_start();
	p = client_connected();
	srv = fx.accepted[0];

	/* on/once/off/listener_count. */
	ck_assert_uint_eq(nc_socket_listener_count(p->s, NC_EV_TIMEOUT), 1);
	ck_assert_int_eq(nc_socket_on(p->s, NC_EV_TIMEOUT, late_cb, NULL),
	    0);
	ck_assert_int_eq(nc_socket_once(p->s, NC_EV_TIMEOUT, late_cb, NULL),
	    0);
	ck_assert_uint_eq(nc_socket_listener_count(p->s, NC_EV_TIMEOUT), 3);
	ck_assert_int_eq(nc_socket_off(p->s, NC_EV_TIMEOUT, late_cb, NULL),
	    0);
	ck_assert_uint_eq(nc_socket_listener_count(p->s, NC_EV_TIMEOUT), 2);
	ck_assert_int_eq(nc_socket_off(p->s, NC_EV_TIMEOUT, late_cb, NULL),
	    0);
	ck_assert_int_eq(nc_socket_off(p->s, NC_EV_TIMEOUT, late_cb, NULL),
	    0);
	ck_assert_uint_eq(nc_socket_listener_count(p->s, NC_EV_TIMEOUT), 1);
	ck_assert_int_eq(nc_socket_on(p->s, NC_EV__COUNT, late_cb, NULL),
	    NC_ERR_INVALID_ARG_VALUE);
	ck_assert_int_eq(nc_socket_once(p->s, NC_EV_DATA, NULL, NULL),
	    NC_ERR_INVALID_ARG_VALUE);
	ck_assert_uint_eq(nc_socket_listener_count(p->s, NC_EV__COUNT), 0);
	ck_assert_uint_eq(nc_socket_listener_count(p->s, (enum nc_event)-1),
	    0);

	/* Added and removed during an emit: from the next emit on. */
	ck_assert_int_eq(nc_socket_on(p->s, NC_EV_DATA, early_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_on(p->s, NC_EV_DATA, victim_cb, NULL), 0);
	ck_assert_int_eq(nc_socket_once(p->s, NC_EV_DATA, late_cb, NULL), 0);
	ck_assert_uint_eq(nc_socket_listener_count(p->s, NC_EV_DATA), 4);
	ck_assert_int_eq(nc_socket_write(srv->s, "a", 1, NULL, NULL), 1);
	ck_assert(run_until(fx.base, &p->data_events, WAIT));
	ck_assert_int_eq(early_calls, 1);
	ck_assert_int_eq(victim_calls, 1);	/* removed, but this emit */
	ck_assert_int_eq(late_calls, 1);	/* the once one */
	/* peer_data_cb, early_cb, the added late_cb. */
	ck_assert_uint_eq(nc_socket_listener_count(p->s, NC_EV_DATA), 3);
	ck_assert_int_eq(nc_socket_write(srv->s, "b", 1, NULL, NULL), 1);
	ck_assert(run_until_count(fx.base, &p->data_events, 2, WAIT));
	ck_assert_int_eq(early_calls, 2);
	ck_assert_int_eq(victim_calls, 1);
	ck_assert_int_eq(late_calls, 2);
}
END_TEST

/*
 * pause() / resume().
 */

START_TEST(test_pause_resume)
{
	struct peer	*p, *srv;

	server_start();
	p = client_connected();
	srv = fx.accepted[0];
	ck_assert(!nc_socket_is_paused(p->s));
	nc_socket_pause(p->s);
	ck_assert(nc_socket_is_paused(p->s));
	ck_assert_int_eq(nc_socket_write(srv->s, "hello", 5, NULL, NULL), 1);
	ck_assert_int_eq(nc_socket_end(srv->s, NULL, 0), 0);
	run_for(fx.base, 100);
	ck_assert_int_eq(p->data_events, 0);
	ck_assert_int_eq(p->rec.counts[NC_EV_END], 0);
	ck_assert_uint_eq(nc_socket_bytes_read(p->s), 0);
	nc_socket_resume(p->s);
	ck_assert(!nc_socket_is_paused(p->s));
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert(buf_eq(p->in, "hello", 5));
	ck_assert_str_eq(p->rec.log, "connect,end,finish,close");
}
END_TEST

/* test-net-pause-resume-connecting.js: pause() and resume() before the
 * connection exists count. */
static void
on_conn_end_text(struct peer *p)
{
	ck_assert_int_eq(nc_socket_end_string(p->s,
	    "This was the year he fell to pieces.", NULL), 0);
}

START_TEST(test_pause_resume_connecting)
{
	struct peer	*c[5];
	int		 i, data = 0;

	server_start();
	fx.on_connection = on_conn_end_text;
	for (i = 0; i < 5; i++)
		c[i] = client_port(fx.port, "127.0.0.1");
	nc_socket_resume(c[0]->s);
	nc_socket_pause(c[1]->s);
	nc_socket_resume(c[1]->s);
	nc_socket_pause(c[2]->s);
	nc_socket_resume(c[3]->s);
	nc_socket_pause(c[3]->s);
	nc_socket_resume(c[3]->s);
	nc_socket_resume(c[4]->s);
	nc_socket_resume(c[4]->s);
	nc_socket_pause(c[4]->s);
	ck_assert(run_until_count(fx.base, &fx.connections, 5, WAIT));
	for (i = 0; i < 5; i++)
		ck_assert(run_until(fx.base, &c[i]->connect_cb_calls, WAIT));
	ck_assert(run_until(fx.base, &c[0]->rec.counts[NC_EV_END], WAIT));
	ck_assert(run_until(fx.base, &c[1]->rec.counts[NC_EV_END], WAIT));
	ck_assert(run_until(fx.base, &c[3]->rec.counts[NC_EV_END], WAIT));
	run_for(fx.base, 100);
	for (i = 0; i < 5; i++)
		data += c[i]->data_events > 0;
	ck_assert_int_eq(data, 3);
	ck_assert_int_eq(c[2]->data_events, 0);
	ck_assert_int_eq(c[4]->data_events, 0);
	/* scheduleTearDown: resumed, they read it all. */
	nc_socket_resume(c[2]->s);
	nc_socket_resume(c[4]->s);
	ck_assert(run_until(fx.base, &c[2]->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert(run_until(fx.base, &c[4]->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_int_eq(c[2]->nbytes, 36);
}
END_TEST

/*
 * setTimeout().
 */

static int	timeout_cb_calls;

static void
timeout_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct peer	*p = arg;

	ck_assert_ptr_eq(emitter, p->s);
	ck_assert_int_eq(ev->event, NC_EV_TIMEOUT);
	timeout_cb_calls++;
}

/* `timeout` after ms of idleness; the socket stays open; once listener;
 * fires again only after new activity. */
START_TEST(test_timeout_idle)
{
	struct peer	*p;
	int64_t		 t0;

	server_start();
	timeout_cb_calls = 0;
	p = client_connected();
	t0 = now_ms();
	ck_assert_int_eq(nc_socket_set_timeout(p->s, 100, timeout_cb, p), 0);
	ck_assert_uint_eq(nc_socket_listener_count(p->s, NC_EV_TIMEOUT), 2);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_TIMEOUT], WAIT));
	ck_assert_int_ge(now_ms() - t0, 95);
	ck_assert_int_eq(timeout_cb_calls, 1);
	ck_assert_uint_eq(nc_socket_listener_count(p->s, NC_EV_TIMEOUT), 1);
	ck_assert(!nc_socket_destroyed(p->s));
	/* Not again while idle. */
	run_for(fx.base, 250);
	ck_assert_int_eq(p->rec.counts[NC_EV_TIMEOUT], 1);
	/* Activity arms it again. */
	t0 = now_ms();
	ck_assert_int_eq(nc_socket_write(p->s, "x", 1, NULL, NULL), 1);
	ck_assert(run_until_count(fx.base, &p->rec.counts[NC_EV_TIMEOUT], 2,
	    WAIT));
	ck_assert_int_ge(now_ms() - t0, 95);
	ck_assert_int_eq(timeout_cb_calls, 1);	/* it was a once listener */
	ck_assert_str_eq(p->rec.log, "connect,timeout,timeout");
	ck_assert(run_until_count(fx.base, &fx.accepted[0]->nbytes, 1, WAIT));
}
END_TEST

/* Reads postpone the timeout. */
struct ticker {
	struct peer	*p;
	int		 ticks;
	int		 max;
	int64_t		 last;
};

static void
ticker_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ticker	*t = arg;

	(void)fd;
	(void)what;
	if (t->ticks >= t->max)
		return;
	ck_assert_int_eq(nc_socket_write(t->p->s, ".", 1, NULL, NULL), 1);
	t->last = now_ms();
	t->ticks++;
}

START_TEST(test_timeout_activity_postpones)
{
	struct ticker	 t;
	struct timeval	 tv = { 0, 50000 };
	struct peer	*p;

	server_start();
	p = client_connected();
	memset(&t, 0, sizeof t);
	t.p = fx.accepted[0];
	t.max = 10;
	fx.timers[fx.ntimers] = event_new(fx.base, -1, EV_PERSIST, ticker_cb,
	    &t);
	ck_assert_ptr_nonnull(fx.timers[fx.ntimers]);
	ck_assert_int_eq(event_add(fx.timers[fx.ntimers++], &tv), 0);
	ck_assert_int_eq(nc_socket_set_timeout(p->s, 300, NULL, NULL), 0);
	ck_assert(run_until_count(fx.base, &t.ticks, 10, 4 * WAIT));
	ck_assert_int_eq(p->rec.counts[NC_EV_TIMEOUT], 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_TIMEOUT], WAIT));
	ck_assert_int_ge(now_ms() - t.last, 290);
	ck_assert_int_ge(p->data_events, 1);
	ck_assert_int_eq(p->nbytes, 10);
	event_del(fx.timers[0]);
}
END_TEST

/* test-net-settimeout.js: setTimeout(0) disables it; with the callback it
 * removes the callback. */
START_TEST(test_timeout_zero_disables)
{
	struct peer	*p;

	server_start();
	fx.on_connection = on_conn_hello;
	p = client_port(fx.port, "127.0.0.1");
	ck_assert_int_eq(nc_socket_set_timeout(p->s, 100, must_not_call,
	    NULL), 0);
	ck_assert_int_eq(nc_socket_set_timeout(p->s, 0, NULL, NULL), 0);
	run_for(fx.base, 250);
	ck_assert_int_eq(p->rec.counts[NC_EV_TIMEOUT], 0);
	ck_assert_uint_eq(nc_socket_listener_count(p->s, NC_EV_TIMEOUT), 2);
	ck_assert_int_eq(nc_socket_set_timeout(p->s, 0, must_not_call, NULL),
	    0);
	ck_assert_uint_eq(nc_socket_listener_count(p->s, NC_EV_TIMEOUT), 1);
	ck_assert(buf_eq(p->in, "hello", 5));
}
END_TEST

/*
 * setTimeout(0) inside `timeout` frees the timer inside its own callback;
 * activity does not bring it back, a new setTimeout() does.
 */
static void
timeout_zero_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ck_assert_int_eq(nc_socket_set_timeout(emitter, 0, NULL, NULL), 0);
}

START_TEST(test_timeout_zero_inside_and_again)
{
	struct peer	*p;

	server_start();
	timeout_cb_calls = 0;
	p = client_connected();
	ck_assert_int_eq(nc_socket_set_timeout(p->s, 50, timeout_zero_cb,
	    NULL), 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_TIMEOUT], WAIT));
	ck_assert_int_eq(nc_socket_write(p->s, "x", 1, NULL, NULL), 1);
	ck_assert(run_until_count(fx.base, &fx.accepted[0]->nbytes, 1, WAIT));
	run_for(fx.base, 150);
	ck_assert_int_eq(p->rec.counts[NC_EV_TIMEOUT], 1);
	ck_assert_int_eq(nc_socket_set_timeout(p->s, 50, timeout_cb, p), 0);
	ck_assert(run_until_count(fx.base, &p->rec.counts[NC_EV_TIMEOUT], 2,
	    WAIT));
	ck_assert_int_eq(timeout_cb_calls, 1);
	ck_assert(!nc_socket_destroyed(p->s));
}
END_TEST

/* test-net-socket-timeout.js: bad delays are refused, good ones taken;
 * on a destroyed socket setTimeout is a no-op. */
static void
timeout_destroy_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	nc_socket_destroy(emitter);
	ck_assert_int_eq(nc_socket_set_timeout(emitter, 1, must_not_call,
	    NULL), 0);
}

START_TEST(test_timeout_args)
{
	struct nc_socket_options	 so;
	struct peer			*p = peer_new(), *q;
	static const int64_t		 bad[] = { -1, -1000, INT64_MIN };
	static const int64_t		 good[] = { 0, 1, 1000000 };
	size_t				 i;

	memset(&so, 0, sizeof so);
	so.base = fx.base;
	peer_attach(p, nc_socket_new(&so));
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_int_eq(nc_socket_set_timeout(p->s, bad[i],
		    must_not_call, NULL), NC_ERR_OUT_OF_RANGE);
	ck_assert_uint_eq(nc_socket_listener_count(p->s, NC_EV_TIMEOUT), 1);
	for (i = 0; i < sizeof good / sizeof good[0]; i++)
		ck_assert_int_eq(nc_socket_set_timeout(p->s, good[i], NULL,
		    NULL), 0);

	server_start();
	q = client_port(fx.port, "127.0.0.1");
	ck_assert_int_eq(nc_socket_set_timeout(q->s, 1, timeout_destroy_cb,
	    NULL), 0);
	ck_assert(run_until(fx.base, &q->rec.counts[NC_EV_CLOSE], WAIT));
	run_for(fx.base, 30);
	ck_assert_int_eq(q->rec.counts[NC_EV_TIMEOUT], 1);
	ck_assert(!q->rec.had_error);
}
END_TEST

/* test-net-socket-timeout-unref.js and test-net-connect-paused-
 * connection.js: an idle timer never keeps nc_run() going. */
static void
on_conn_unref(struct peer *p)
{
	nc_socket_unref(p->s);
}

START_TEST(test_timeout_does_not_keep_loop_alive)
{
	struct peer	*p, *c[3];
	int64_t		 t0;
	int		 i;

	server_start();
	fx.on_connection = on_conn_unref;
	/* Unref'd sockets with long timeouts. */
	for (i = 0; i < 3; i++) {
		c[i] = client_port(fx.port, "127.0.0.1");
		ck_assert_int_eq(nc_socket_set_timeout(c[i]->s,
		    (i + 2) * 1000, must_not_call, NULL), 0);
		nc_socket_unref(c[i]->s);
	}
	nc_server_unref(fx.server);
	t0 = now_ms();
	ck_assert_int_eq(nc_run(fx.base), 0);
	ck_assert_int_lt(now_ms() - t0, scaled_ms(1500));
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(c[i]->rec.counts[NC_EV_TIMEOUT], 0);

	/* A ref'd socket, connected, paused and idle: only its timer is
	 * left, and that is not enough. */
	p = client_port(fx.port, "127.0.0.1");
	nc_socket_pause(p->s);
	ck_assert_int_eq(nc_socket_set_timeout(p->s, 5000, must_not_call,
	    NULL), 0);
	t0 = now_ms();
	ck_assert_int_eq(nc_run(fx.base), 0);
	ck_assert_int_lt(now_ms() - t0, scaled_ms(1500));
	ck_assert_int_eq(p->connect_cb_calls, 1);
	ck_assert(!nc_socket_destroyed(p->s));
}
END_TEST

/* unref() outlasts setTimeout(0), which would otherwise free the timer
 * that holds it. */
START_TEST(test_unref_outlasts_timeout_zero)
{
	struct peer	*p;
	int64_t		 t0;

	server_start();
	fx.on_connection = on_conn_unref;
	nc_server_unref(fx.server);
	p = client_port(fx.port, "127.0.0.1");
	ck_assert_int_eq(nc_socket_set_timeout(p->s, 5000, must_not_call,
	    NULL), 0);
	nc_socket_unref(p->s);
	ck_assert_int_eq(nc_socket_set_timeout(p->s, 0, must_not_call, NULL),
	    0);
	t0 = now_ms();
	ck_assert_int_eq(nc_run(fx.base), 0);
	ck_assert_int_lt(now_ms() - t0, scaled_ms(1500));
	ck_assert_int_eq(p->rec.counts[NC_EV_TIMEOUT], 0);
}
END_TEST

/*
 * setNoDelay() / setKeepAlive().
 */

START_TEST(test_no_delay)
{
	struct nc_socket_options	 so;
	struct peer			*p, *q = peer_new(), *u;
	char				 path[256];

	server_start();
	p = client_connected();
	ck_assert_int_eq(nc_socket_set_no_delay(p->s, true), 0);
	ck_assert_int_eq(sockopt(p->s, IPPROTO_TCP, TCP_NODELAY), 1);
	ck_assert_int_eq(nc_socket_set_no_delay(p->s, false), 0);
	ck_assert_int_eq(sockopt(p->s, IPPROTO_TCP, TCP_NODELAY), 0);
	/* On an accepted socket too. */
	ck_assert_int_eq(nc_socket_set_no_delay(fx.accepted[0]->s, true), 0);
	ck_assert_int_eq(sockopt(fx.accepted[0]->s, IPPROTO_TCP,
	    TCP_NODELAY), 1);

	/* Before connect: applied once connected. */
	memset(&so, 0, sizeof so);
	so.base = fx.base;
	peer_attach(q, nc_socket_new(&so));
	ck_assert_int_eq(nc_socket_set_no_delay(q->s, true), 0);
	ck_assert_int_eq(nc_socket_connect_port(q->s, fx.port, "127.0.0.1",
	    connect_cb, q), 0);
	ck_assert(run_until(fx.base, &q->connect_cb_calls, WAIT));
	ck_assert_int_eq(sockopt(q->s, IPPROTO_TCP, TCP_NODELAY), 1);

	/* A unix socket: nothing to do, no error. */
	snprintf(path, sizeof path, "%s", tmpdir_path("nd.sock"));
	server_start_opts(NULL, path, false);
	u = peer_new();
	{
		struct nc_socket	*s;

		ck_assert_int_eq(nc_connect_path(fx.base, path, connect_cb,
		    u, &s), 0);
		peer_attach(u, s);
	}
	ck_assert_int_eq(nc_socket_set_no_delay(u->s, true), 0);
	ck_assert(run_until(fx.base, &u->connect_cb_calls, WAIT));
	ck_assert_int_eq(nc_socket_set_no_delay(u->s, true), 0);
	ck_assert_int_eq(u->rec.counts[NC_EV_ERROR], 0);
}
END_TEST

/* test-net-keepalive.js, checked on the fd. */
START_TEST(test_keep_alive)
{
	struct nc_socket_options	 so;
	struct peer			*p, *q = peer_new();

	server_start();
	p = client_connected();
	ck_assert_int_eq(sockopt(p->s, SOL_SOCKET, SO_KEEPALIVE), 0);
	ck_assert_int_eq(nc_socket_set_keep_alive(p->s, true, 5000), 0);
	ck_assert_int_eq(sockopt(p->s, SOL_SOCKET, SO_KEEPALIVE), 1);
	ck_assert_int_eq(sockopt(p->s, IPPROTO_TCP, TCP_KEEPIDLE), 5);
	/* 0 leaves the delay as it was. */
	ck_assert_int_eq(nc_socket_set_keep_alive(p->s, true, 0), 0);
	ck_assert_int_eq(sockopt(p->s, IPPROTO_TCP, TCP_KEEPIDLE), 5);
	ck_assert_int_eq(nc_socket_set_keep_alive(p->s, false, 0), 0);
	ck_assert_int_eq(sockopt(p->s, SOL_SOCKET, SO_KEEPALIVE), 0);
	/* The server side (test-net-keepalive.js sets it there). */
	ck_assert_int_eq(nc_socket_set_keep_alive(fx.accepted[0]->s, true,
	    2000), 0);
	ck_assert_int_eq(sockopt(fx.accepted[0]->s, SOL_SOCKET, SO_KEEPALIVE),
	    1);
	ck_assert_int_eq(sockopt(fx.accepted[0]->s, IPPROTO_TCP,
	    TCP_KEEPIDLE), 2);

	/* Before connect. */
	memset(&so, 0, sizeof so);
	so.base = fx.base;
	peer_attach(q, nc_socket_new(&so));
	ck_assert_int_eq(nc_socket_set_keep_alive(q->s, true, 7000), 0);
	ck_assert_int_eq(nc_socket_connect_port(q->s, fx.port, "127.0.0.1",
	    connect_cb, q), 0);
	ck_assert(run_until(fx.base, &q->connect_cb_calls, WAIT));
	ck_assert_int_eq(sockopt(q->s, SOL_SOCKET, SO_KEEPALIVE), 1);
	ck_assert_int_eq(sockopt(q->s, IPPROTO_TCP, TCP_KEEPIDLE), 7);
	/* Both connections stay open (test-net-keepalive.js). */
	run_for(fx.base, 100);
	ck_assert(!nc_socket_destroyed(p->s));
	ck_assert(!nc_socket_destroyed(q->s));
}
END_TEST

/* While connecting: kept, and applied with its delay once connected. */
START_TEST(test_keep_alive_while_connecting)
{
	struct nc_socket_options	 so;
	struct peer			*q = peer_new();

	server_start();
	memset(&so, 0, sizeof so);
	so.base = fx.base;
	peer_attach(q, nc_socket_new(&so));
	ck_assert_int_eq(nc_socket_connect_port(q->s, fx.port, "127.0.0.1",
	    connect_cb, q), 0);
	ck_assert(nc_socket_connecting(q->s));
	ck_assert_int_eq(nc_socket_set_keep_alive(q->s, true, 9000), 0);
	ck_assert(run_until(fx.base, &q->connect_cb_calls, WAIT));
	ck_assert_int_eq(sockopt(q->s, SOL_SOCKET, SO_KEEPALIVE), 1);
	ck_assert_int_eq(sockopt(q->s, IPPROTO_TCP, TCP_KEEPIDLE), 9);
}
END_TEST

/*
 * setEncoding().
 */

/* A UTF-8 character split across two reads is never cut. */
START_TEST(test_encoding_utf8_split)
{
	struct raw	*r;
	struct peer	*p = client_fd(true, true, &r);

	p->text = true;
	ck_assert_int_eq(nc_socket_set_encoding(p->s, "utf8"), 0);
	raw_send(r, "a\xe2\x82", 3);
	ck_assert(run_until(fx.base, &p->data_events, WAIT));
	ck_assert(buf_eq(p->in, "a", 1));
	/* The round trip: the library has read the first part. */
	ck_assert_uint_eq(nc_socket_bytes_read(p->s), 3);
	raw_send(r, "\xac" "b", 2);
	ck_assert(run_until_count(fx.base, &p->data_events, 2, WAIT));
	ck_assert(buf_eq(p->in, "a\xe2\x82\xac" "b", 5));
	ck_assert_int_eq(p->nbytes, 5);

	/* 4-byte characters, split in three. */
	raw_send(r, "\xf0\x9f", 2);
	wait_bytes_read(p->s, 7);
	ck_assert_int_eq(p->data_events, 2);
	raw_send(r, "\x98", 1);
	wait_bytes_read(p->s, 8);
	ck_assert_int_eq(p->data_events, 2);
	raw_send(r, "\x80", 1);
	ck_assert(run_until_count(fx.base, &p->data_events, 3, WAIT));
	ck_assert(buf_eq(p->in, "a\xe2\x82\xac" "b\xf0\x9f\x98\x80", 9));

	/* An incomplete character at the end becomes U+FFFD. */
	raw_send(r, "\xe2", 1);
	ck_assert_int_eq(shutdown(r->fd, SHUT_WR), 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_END], WAIT));
	ck_assert(buf_eq(p->in,
	    "a\xe2\x82\xac" "b\xf0\x9f\x98\x80\xef\xbf\xbd", 12));
}
END_TEST

/* Each encoding, with its text NUL-terminated; pending bytes flush at
 * the end. */
static void
encoding_case(const char *enc, const void *in1, size_t len1, const void *in2,
    size_t len2, const char *want)
{
	struct raw	*r;
	struct peer	*p = client_fd(true, true, &r);

	p->text = true;
	ck_assert_int_eq(nc_socket_set_encoding(p->s, enc), 0);
	raw_send(r, in1, len1);
	/* A round trip between the two parts. */
	wait_bytes_read(p->s, len1);
	if (len2 > 0)
		raw_send(r, in2, len2);
	ck_assert_int_eq(shutdown(r->fd, SHUT_WR), 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_END], WAIT));
	if (!buf_eq(p->in, want, strlen(want)))
		ck_abort_msg("%s: got %zu bytes \"%.*s\", want \"%s\"", enc,
		    evbuffer_get_length(p->in),
		    (int)evbuffer_get_length(p->in),
		    (char *)evbuffer_pullup(p->in, -1), want);
	ck_assert_int_eq(p->nbytes, (int)strlen(want));
	nc_socket_destroy(p->s);
}

START_TEST(test_encoding_variants)
{
	encoding_case("hex", "\x01\xab", 2, "\xff", 1, "01abff");
	encoding_case("base64", "hel", 3, "lo", 2, "aGVsbG8=");
	encoding_case("base64", "he", 2, "llo", 3, "aGVsbG8=");
	encoding_case("latin1", "h\xe9", 2, "\xff", 1, "h\xc3\xa9\xc3\xbf");
	encoding_case("binary", "\xe9", 1, NULL, 0, "\xc3\xa9");
	encoding_case("ascii", "h\xe9", 2, "i", 1, "hii");
	encoding_case("utf16le", "h\x00\xe9", 3, "\x00", 1, "h\xc3\xa9");
	encoding_case("ucs2", "\xac", 1, "\x20", 1, "\xe2\x82\xac");
	encoding_case("UTF-8", "\xc3", 1, "\xa9", 1, "\xc3\xa9");
}
END_TEST

/* NULL goes back to bytes; unknown names are refused. */
START_TEST(test_encoding_null_and_unknown)
{
	struct raw	*r;
	struct peer	*p = client_fd(true, true, &r);

	ck_assert_int_eq(nc_socket_set_encoding(p->s, "klingon"),
	    NC_ERR_UNKNOWN_ENCODING);
	/* Still bytes. */
	raw_send(r, "\xe9", 1);
	ck_assert(run_until(fx.base, &p->data_events, WAIT));
	ck_assert(buf_eq(p->in, "\xe9", 1));
	ck_assert_int_eq(p->nbytes, 1);

	ck_assert_int_eq(nc_socket_set_encoding(p->s, "hex"), 0);
	raw_send(r, "\xe9", 1);
	ck_assert(run_until_count(fx.base, &p->data_events, 2, WAIT));
	ck_assert(buf_eq(p->in, "\xe9" "e9", 3));

	ck_assert_int_eq(nc_socket_set_encoding(p->s, NULL), 0);
	raw_send(r, "\x00\xe9", 2);
	ck_assert(run_until_count(fx.base, &p->data_events, 3, WAIT));
	ck_assert(buf_eq(p->in, "\xe9" "e9" "\x00\xe9", 5));
	ck_assert_int_eq(p->nbytes, 5);
}
END_TEST

/*
 * Addresses and counters.
 */

/* test-net-remote-address-port.js, test-net-socket-local-address.js. */
START_TEST(test_address_ipv4)
{
	struct nc_socket_options	 so;
	struct nc_address		 a;
	struct peer			*p, *srv, *q = peer_new();

	server_start();
	memset(&so, 0, sizeof so);
	so.base = fx.base;
	peer_attach(q, nc_socket_new(&so));
	ck_assert_ptr_null(nc_socket_remote_address(q->s));
	ck_assert_ptr_null(nc_socket_remote_family(q->s));
	ck_assert_int_eq(nc_socket_remote_port(q->s), -1);
	ck_assert_ptr_null(nc_socket_local_address(q->s));
	ck_assert_int_eq(nc_socket_local_port(q->s), -1);
	ck_assert_int_lt(nc_socket_address(q->s, &a), 0);
	ck_assert_uint_eq(nc_socket_bytes_read(q->s), 0);
	ck_assert_uint_eq(nc_socket_bytes_written(q->s), 0);
	ck_assert_uint_eq(nc_socket_buffer_size(q->s), 0);

	p = client_connected();
	srv = fx.accepted[0];
	ck_assert_str_eq(nc_socket_remote_address(p->s), "127.0.0.1");
	ck_assert_str_eq(nc_socket_remote_family(p->s), "IPv4");
	ck_assert_int_eq(nc_socket_remote_port(p->s), fx.port);
	ck_assert_str_eq(nc_socket_local_address(p->s), "127.0.0.1");
	ck_assert_int_gt(nc_socket_local_port(p->s), 0);
	ck_assert_int_ne(nc_socket_local_port(p->s), fx.port);
	ck_assert_int_eq(nc_socket_address(p->s, &a), 0);
	ck_assert_str_eq(a.address, "127.0.0.1");
	ck_assert_str_eq(a.family, "IPv4");
	ck_assert_int_eq(a.port, nc_socket_local_port(p->s));
	/* Both ends agree on the ports used. */
	ck_assert_int_eq(nc_socket_remote_port(srv->s),
	    nc_socket_local_port(p->s));
	ck_assert_str_eq(nc_socket_remote_address(srv->s), "127.0.0.1");
	ck_assert_str_eq(nc_socket_remote_family(srv->s), "IPv4");
	ck_assert_int_eq(nc_socket_local_port(srv->s), fx.port);
	ck_assert_int_eq(nc_socket_address(srv->s, &a), 0);
	ck_assert_int_eq(a.port, fx.port);

	/* Still there after close. */
	nc_socket_destroy(p->s);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(nc_socket_remote_address(p->s), "127.0.0.1");
	ck_assert_str_eq(nc_socket_remote_family(p->s), "IPv4");
	ck_assert_int_eq(nc_socket_remote_port(p->s), fx.port);
	ck_assert_int_lt(nc_socket_address(p->s, &a), 0);
}
END_TEST

START_TEST(test_address_ipv6)
{
	struct nc_address	 a;
	struct peer		*p, *srv;

	if (!have_ipv6()) {
		fprintf(stderr, "skipped: no IPv6\n");
		return;
	}
	server_start_opts("::1", NULL, false);
	p = client_port(fx.port, "::1");
	ck_assert(run_until(fx.base, &p->connect_cb_calls, WAIT));
	ck_assert(run_until(fx.base, &fx.connections, WAIT));
	srv = fx.accepted[0];
	ck_assert_str_eq(nc_socket_remote_address(p->s), "::1");
	ck_assert_str_eq(nc_socket_remote_family(p->s), "IPv6");
	ck_assert_int_eq(nc_socket_remote_port(p->s), fx.port);
	ck_assert_str_eq(nc_socket_local_address(p->s), "::1");
	ck_assert_int_eq(nc_socket_address(p->s, &a), 0);
	ck_assert_str_eq(a.address, "::1");
	ck_assert_str_eq(a.family, "IPv6");
	ck_assert_int_eq(a.port, nc_socket_local_port(p->s));
	ck_assert_int_eq(nc_socket_remote_port(srv->s),
	    nc_socket_local_port(p->s));
	ck_assert_str_eq(nc_socket_remote_family(srv->s), "IPv6");
}
END_TEST

START_TEST(test_address_unix)
{
	struct nc_address	 a;
	struct peer		*p = peer_new(), *srv;
	struct nc_socket	*s;
	char			 path[256];

	snprintf(path, sizeof path, "%s", tmpdir_path("addr.sock"));
	server_start_opts(NULL, path, false);
	ck_assert_int_eq(nc_connect_path(fx.base, path, connect_cb, p, &s),
	    0);
	peer_attach(p, s);
	ck_assert(run_until(fx.base, &p->connect_cb_calls, WAIT));
	ck_assert(run_until(fx.base, &fx.connections, WAIT));
	srv = fx.accepted[0];
	ck_assert_ptr_null(nc_socket_remote_address(s));
	ck_assert_ptr_null(nc_socket_remote_family(s));
	ck_assert_int_eq(nc_socket_remote_port(s), -1);
	ck_assert_ptr_null(nc_socket_local_address(s));
	ck_assert_int_eq(nc_socket_local_port(s), -1);
	ck_assert_ptr_null(nc_socket_remote_address(srv->s));
	ck_assert_int_eq(nc_socket_remote_port(srv->s), -1);
	ck_assert_int_eq(nc_socket_local_port(srv->s), -1);
	/* The server end is bound to the path. */
	ck_assert_int_eq(nc_socket_address(srv->s, &a), 0);
	ck_assert_str_eq(a.address, path);
	ck_assert_str_eq(a.family, "");
	ck_assert_int_eq(a.port, -1);
	ck_assert_int_eq(nc_socket_address(s, &a), 0);
	ck_assert_int_eq(a.port, -1);
}
END_TEST

/* test-net-bytes-stats.js: two connections; "foo" then end("bar"): 12
 * bytes written and read in all. */
static void
stats_wcb(struct nc_socket *s, int status, void *arg)
{
	(void)arg;
	ck_assert_int_eq(status, 0);
	ck_assert_int_eq(nc_socket_end_string(s, "bar", NULL), 0);
}

static void
stats_connect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	ck_assert_int_eq(nc_socket_write(emitter, "foo", 3, stats_wcb, NULL),
	    1);
}

static int	stats_written;

static void
stats_finish_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	stats_written += (int)nc_socket_bytes_written(emitter);
}

START_TEST(test_bytes_stats)
{
	struct nc_socket	*s;
	struct peer		*p;
	int			 i, read = 0;

	stats_written = 0;
	server_start();
	for (i = 0; i < 2; i++) {
		p = peer_new();
		ck_assert_int_eq(nc_create_connection_port(fx.base, fx.port,
		    "127.0.0.1", stats_connect_cb, NULL, &s), 0);
		peer_attach(p, s);
		ck_assert_int_eq(nc_socket_on(s, NC_EV_FINISH,
		    stats_finish_cb, NULL), 0);
		ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE],
		    WAIT));
		ck_assert_str_eq(p->rec.log, "connect,finish,end,close");
		ck_assert(run_until_count(fx.base, &fx.connections, i + 1,
		    WAIT));
		ck_assert(run_until(fx.base,
		    &fx.accepted[i]->rec.counts[NC_EV_END], WAIT));
		read += (int)nc_socket_bytes_read(fx.accepted[i]->s);
		/* Kept after close. */
		ck_assert_uint_eq(nc_socket_bytes_written(s), 6);
	}
	ck_assert_int_eq(read, 12);
	ck_assert_int_eq(stats_written, 12);
}
END_TEST

/*
 * bufferSize while bytes are queued; bytesWritten counts them. Over a
 * unix socket whose peer does not read: its kernel buffers are fixed, so
 * what is queued stays queued (TCP on loopback grows its buffers by
 * itself, and a slow run, valgrind's, saw the kernel take the queue).
 */
START_TEST(test_buffer_size_queued)
{
	struct raw	*r;
	struct peer	*p = client_fd(true, true, &r);
	size_t		 total, queued;

	total = fill_until_full(p, NULL);
	queued = nc_socket_buffer_size(p->s);
	ck_assert_uint_gt(queued, 0);
	ck_assert_uint_le(queued, total);
	ck_assert_int_eq(nc_socket_write(p->s, "12345", 5, NULL, NULL), 0);
	ck_assert_uint_eq(nc_socket_buffer_size(p->s), queued + 5);
	ck_assert_uint_eq(nc_socket_bytes_written(p->s), total + 5);
	raw_start(r);
	ck_assert(run_until_count(fx.base, &r->nread, (int)total + 5, WAIT));
	ck_assert_uint_eq(nc_socket_buffer_size(p->s), 0);
	ck_assert_uint_eq(nc_socket_bytes_written(p->s), total + 5);
}
END_TEST

/*
 * Sockets over an fd.
 */

START_TEST(test_fd_socket)
{
	struct raw	*r;
	struct peer	*p = client_fd(true, true, &r);

	ck_assert(!nc_socket_connecting(p->s));
	ck_assert(!nc_socket_destroyed(p->s));
	raw_start(r);
	ck_assert_int_eq(nc_socket_write(p->s, "to raw", 6, NULL, NULL), 1);
	ck_assert(run_until_count(fx.base, &r->nread, 6, WAIT));
	ck_assert(buf_eq(r->buf, "to raw", 6));
	raw_send(r, "from raw", 8);
	ck_assert(run_until_count(fx.base, &p->nbytes, 8, WAIT));
	ck_assert(buf_eq(p->in, "from raw", 8));
	ck_assert_uint_eq(nc_socket_bytes_read(p->s), 8);
	ck_assert_uint_eq(nc_socket_bytes_written(p->s), 6);
	/* unix: no addresses. */
	ck_assert_ptr_null(nc_socket_remote_address(p->s));
	ck_assert_int_eq(nc_socket_remote_port(p->s), -1);
	/* The peer ends; we end after it (allowHalfOpen false). */
	ck_assert_int_eq(shutdown(r->fd, SHUT_WR), 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "end,finish,close");
	ck_assert(run_until(fx.base, &r->eof, WAIT));
	ck_assert_int_eq(nc_socket_fd(p->s), -1);
}
END_TEST

/* readable false: the fd is never read; end() finishes and closes. */
START_TEST(test_fd_socket_not_readable)
{
	struct raw	*r;
	struct peer	*p = client_fd(false, true, &r);

	raw_start(r);
	raw_send(r, "ignored", 7);
	run_for(fx.base, 50);
	ck_assert_int_eq(p->data_events, 0);
	ck_assert_uint_eq(nc_socket_bytes_read(p->s), 0);
	ck_assert_int_eq(nc_socket_write(p->s, "out", 3, NULL, NULL), 1);
	ck_assert_int_eq(nc_socket_end(p->s, NULL, 0), 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "finish,close");
	ck_assert_int_eq(p->data_events, 0);
	ck_assert(run_until(fx.base, &r->eof, WAIT));
	ck_assert(buf_eq(r->buf, "out", 3));
}
END_TEST

/* writable false: writes fail (write after end); test-net-end-close.js:
 * the peer's FIN gives `end` then `close`, no `finish`. */
START_TEST(test_fd_socket_not_writable)
{
	struct raw	*r, *r2;
	struct peer	*p = client_fd(true, false, &r), *q;

	raw_start(r);
	raw_send(r, "in", 2);
	ck_assert(run_until_count(fx.base, &p->nbytes, 2, WAIT));
	ck_assert_int_eq(shutdown(r->fd, SHUT_WR), 0);
	ck_assert(run_until(fx.base, &p->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(p->rec.log, "end,close");
	ck_assert(!p->rec.had_error);
	ck_assert_int_eq(r->nread, 0);

	q = client_fd(true, false, &r2);
	raw_start(r2);
	ck_assert_int_eq(nc_socket_write(q->s, "no", 2, wcb, WCB_ARG(1)), 0);
	ck_assert(run_until(fx.base, &q->rec.counts[NC_EV_CLOSE], WAIT));
	ck_assert_str_eq(q->rec.log, "error,close");
	ck_assert_int_eq(q->err_code, NC_ERR_STREAM_WRITE_AFTER_END);
	ck_assert_int_eq(fx.wcb_n, 1);
	ck_assert_int_eq(fx.wcb_status[0], NC_ERR_STREAM_WRITE_AFTER_END);
	ck_assert(run_until(fx.base, &r2->eof, WAIT));
	ck_assert_int_eq(r2->nread, 0);
}
END_TEST

/*
 * ref() / unref().
 */

START_TEST(test_ref_unref)
{
	struct peer	*p, *srv;
	int64_t		 t0;

	server_start();
	fx.on_connection = on_conn_unref;
	p = client_connected();
	srv = fx.accepted[0];
	nc_server_unref(fx.server);

	/* Unref'd: nc_run() returns with the socket still open. */
	nc_socket_unref(p->s);
	t0 = now_ms();
	ck_assert_int_eq(nc_run(fx.base), 0);
	ck_assert_int_lt(now_ms() - t0, scaled_ms(1000));
	ck_assert(!nc_socket_destroyed(p->s));
	ck_assert_int_eq(p->rec.counts[NC_EV_CLOSE], 0);

	/* ref'd again: nc_run() waits for it to close. */
	nc_socket_unref(p->s);
	nc_socket_ref(p->s);
	nc_socket_ref(p->s);
	ck_assert_int_eq(nc_socket_end(srv->s, NULL, 0), 0);
	ck_assert_int_eq(nc_run(fx.base), 0);
	ck_assert_int_eq(p->rec.counts[NC_EV_CLOSE], 1);
	ck_assert_str_eq(p->rec.log, "connect,end,finish,close");
}
END_TEST

/* test-net-connect-paused-connection.js: unref'd while connecting. */
START_TEST(test_unref_connecting)
{
	struct peer	*p;
	int64_t		 t0;

	server_start();
	nc_server_unref(fx.server);
	p = client_port(fx.port, "127.0.0.1");
	nc_socket_unref(p->s);
	t0 = now_ms();
	ck_assert_int_eq(nc_run(fx.base), 0);
	ck_assert_int_lt(now_ms() - t0, scaled_ms(1000));
	ck_assert_int_eq(p->rec.counts[NC_EV_CLOSE], 0);
}
END_TEST

static Suite *
socket_suite(void)
{
	Suite	*s = suite_create("socket");
	TCase	*tc;
	int	 timeout = scaled_ms(20000) / 1000;

	tc = tcase_create("connect");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout);
	tcase_add_test(tc, test_connect_options);
	tcase_add_test(tc, test_connect_port);
	tcase_add_test(tc, test_connect_path);
	tcase_add_test(tc, test_socket_connect_forms);
	tcase_add_test(tc, test_connect_default_host);
	tcase_add_test(tc, test_connect_family6);
	tcase_add_test(tc, test_connect_local_address_port);
	tcase_add_test(tc, test_connect_econnrefused);
	tcase_add_test(tc, test_connect_bad_args);
	tcase_add_test(tc, test_connect_enoent);
	tcase_add_test(tc, test_write_before_connect);
	tcase_add_test(tc, test_write_cb_destroy_before_connect);
	tcase_add_test(tc, test_connect_unix_backlog_full);
	tcase_add_test(tc, test_write_not_connected);
	tcase_add_test(tc, test_read_econnreset);
	suite_add_tcase(s, tc);

	tc = tcase_create("lookup");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout);
	tcase_add_test(tc, test_lookup_resolver);
	tcase_add_test(tc, test_lookup_custom_sync);
	tcase_add_test(tc, test_lookup_custom_async);
	tcase_add_test(tc, test_lookup_skipped_for_ip);
	tcase_add_test(tc, test_lookup_enotfound);
	tcase_add_test(tc, test_lookup_bad_answer);
	tcase_add_test(tc, test_destroy_during_lookup);
	suite_add_tcase(s, tc);

	tc = tcase_create("write");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout);
	tcase_add_test(tc, test_write_high_water_mark);
	tcase_add_test(tc, test_write_hwm_boundary);
	tcase_add_test(tc, test_write_callbacks);
	tcase_add_test(tc, test_write_cb_fail_on_destroy);
	tcase_add_test(tc, test_write_string_encodings);
	tcase_add_test(tc, test_write_buffer_moves);
	tcase_add_test(tc, test_big_transfer);
	tcase_add_test(tc, test_buffer_size_queued);
	tcase_add_test(tc, test_bytes_stats);
	suite_add_tcase(s, tc);

	tc = tcase_create("end");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout);
	tcase_add_test(tc, test_end_fin);
	tcase_add_test(tc, test_end_with_data);
	tcase_add_test(tc, test_allow_half_open_false);
	tcase_add_test(tc, test_allow_half_open_false_flushes);
	tcase_add_test(tc, test_write_after_peer_fin_epipe);
	tcase_add_test(tc, test_write_after_peer_fin_auto_end);
	tcase_add_test(tc, test_allow_half_open_true);
	tcase_add_test(tc, test_write_after_end);
	suite_add_tcase(s, tc);

	tc = tcase_create("destroy");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout);
	tcase_add_test(tc, test_destroy_close_later);
	tcase_add_test(tc, test_destroy_error);
	tcase_add_test(tc, test_unhandled_error_logged);
	tcase_add_test(tc, test_destroy_inside_listeners);
	tcase_add_test(tc, test_listeners);
	tcase_add_test(tc, test_reconnect_node_order);
	tcase_add_test(tc, test_reconnect_later_keeps_options);
	tcase_add_test(tc, test_reconnect_before_close_refused);
	tcase_add_test(tc, test_reconnect_after_error);
	tcase_add_test(tc, test_reconnect_server_side);
	suite_add_tcase(s, tc);

	tc = tcase_create("flow");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout);
	tcase_add_test(tc, test_pause_resume);
	tcase_add_test(tc, test_pause_resume_connecting);
	tcase_add_test(tc, test_timeout_idle);
	tcase_add_test(tc, test_timeout_activity_postpones);
	tcase_add_test(tc, test_timeout_zero_disables);
	tcase_add_test(tc, test_timeout_zero_inside_and_again);
	tcase_add_test(tc, test_timeout_args);
	tcase_add_test(tc, test_timeout_does_not_keep_loop_alive);
	tcase_add_test(tc, test_ref_unref);
	tcase_add_test(tc, test_unref_connecting);
	tcase_add_test(tc, test_unref_outlasts_timeout_zero);
	suite_add_tcase(s, tc);

	tc = tcase_create("options");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout);
	tcase_add_test(tc, test_no_delay);
	tcase_add_test(tc, test_keep_alive);
	tcase_add_test(tc, test_keep_alive_while_connecting);
	tcase_add_test(tc, test_encoding_utf8_split);
	tcase_add_test(tc, test_encoding_variants);
	tcase_add_test(tc, test_encoding_null_and_unknown);
	suite_add_tcase(s, tc);

	tc = tcase_create("address");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout);
	tcase_add_test(tc, test_address_ipv4);
	tcase_add_test(tc, test_address_ipv6);
	tcase_add_test(tc, test_address_unix);
	tcase_add_test(tc, test_fd_socket);
	tcase_add_test(tc, test_fd_socket_not_readable);
	tcase_add_test(tc, test_fd_socket_not_writable);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(socket_suite());
}
