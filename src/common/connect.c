/*
 * socket.connect() and net.connect(): resolve the host (never on the
 * loop), emit `lookup`, bind a local address if asked, connect without
 * blocking, and emit `connect` or the error Node would.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "nc-int.h"
#include "socket-int.h"

struct nc_lookup_req {
	struct nc_socket	*socket;
};

static void	connect_to(struct nc_socket *, const char *address);

/* What a connect error names: the host, the path or the peer. */
static void
connect_name(struct nc_socket *s, const char *address, int port)
{
	free(s->conn->error_address);
	/* NULL: named without */
	s->conn->error_address = strdup(address);
	s->conn->error_port = port;
}

static void
connect_error_at(struct nc_socket *s, int code, const char *syscall,
    const char *address, int port)
{
	if (address != NULL)
		connect_name(s, address, port);
	nc__socket_fail(s, code, syscall);
}

/* The answer of a lookup: `lookup`, then connect or fail. */
static void
connect_resolved(struct nc_socket *s, int status, const char *address,
    int family)
{
	struct nc_event_args	args;
	struct nc__error	e;

	s->conn->lookup_ev = NULL;
	if (s->state != S_LOOKUP)
		return;		/* destroyed meanwhile */
	memset(&args, 0, sizeof args);
	args.event = NC_EV_LOOKUP;
	args.host = s->conn->host;
	if (status != 0) {
		nc__error_set(&e, status, "getaddrinfo", s->conn->host, -1);
		args.error = &e.pub;
	} else {
		args.address = address;
		args.family = family;
	}
	nc__socket_emit(s, &args);
	if (s->state != S_LOOKUP)
		return;
	if (status != 0) {
		/* Node: "getaddrinfo ENOTFOUND host" */
		connect_name(s, s->conn->host, -1);
		nc__socket_fail(s, status, "getaddrinfo");
		return;
	}
	connect_to(s, address);
}

static void
connect_lookup_cb(int status, const char *address, int family, void *arg)
{
	struct nc_socket	*s = arg;

	connect_resolved(s, status, address, family);
	nc_socket_release(s);	/* the lookup's hold */
}

void
nc_lookup_done(struct nc_lookup_req *req, int status, const char *address,
    int family)
{
	struct nc_socket	*s = req->socket;

	free(req);
	if (status == 0 && (address == NULL || nc_is_ip(address) == 0))
		status = NC_ERR_INVALID_ARG_VALUE;
	if (status == 0 && family != 4 && family != 6)
		family = nc_is_ip(address);
	connect_resolved(s, status, address, family);
	nc_socket_release(s);
}

/* Runs on the turn after connect(): resolve, or connect at once. */
static void
connect_start_cb(void *arg)
{
	struct nc_socket	*s = arg;
	struct nc_lookup_req	*req;
	int			 rc;

	if (s->state != S_LOOKUP) {
		nc_socket_release(s);
		return;
	}
	if (s->conn->path != NULL) {
		connect_to(s, NULL);
		nc_socket_release(s);
		return;
	}
	if (nc_is_ip(s->conn->host) != 0) {
		/* An IP literal skips the resolver and `lookup`, as in Node. */
		connect_to(s, s->conn->host);
		nc_socket_release(s);
		return;
	}
	if (s->conn->lookup != NULL) {
		if ((req = malloc(sizeof *req)) == NULL) {
			nc__socket_fail(s, NC_ENOMEM, "getaddrinfo");
			nc_socket_release(s);
			return;
		}
		req->socket = s;	/* keeps the start's hold */
		s->conn->lookup(s->conn->host, s->conn->family, req,
		    s->conn->lookup_arg);
		return;
	}
	rc = nc__lookup_start(s->base, s->conn->host, s->conn->family,
	    connect_lookup_cb, s, &s->conn->lookup_ev);
	if (rc != 0) {
		nc__socket_fail(s, rc, "getaddrinfo");
		nc_socket_release(s);
	}
}

static void
connect_done(struct nc_socket *s)
{
	struct nc_event_args	args;

	nc__socket_became_open(s);
	if (s->state != S_OPEN)
		return;
	/* setNoDelay/setKeepAlive called before: now there is a TCP fd. */
	nc__socket_apply_options(s);
	nc__socket_connect_free(s);	/* connected: nothing more to name */
	nc_socket_hold(s);
	memset(&args, 0, sizeof args);
	args.event = NC_EV_CONNECT;
	nc__socket_emit(s, &args);
	nc_socket_release(s);
}

/* The fd became writable while connecting: did it connect? */
void
nc__socket_connect_ready(struct nc_socket *s)
{
	int		err = 0;
	socklen_t	len = sizeof err;

	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		nc__socket_fail(s, -err, "connect");
		return;
	}
	connect_done(s);
}

static int
connect_bind_local(struct nc_socket *s, int fd, int af)
{
	struct sockaddr_storage	ss;
	socklen_t		len;
	const char		*addr = s->conn->local_address;
	int			 rc;

	/* localPort alone: any address of the family connected to. */
	if (addr == NULL)
		addr = af == AF_INET6 ? "::" : "0.0.0.0";
	if ((rc = nc__sockaddr_from(addr, s->conn->local_port, &ss, &len)) != 0)
		return rc;
	if (bind(fd, (struct sockaddr *)&ss, len) == -1)
		return -errno;
	return 0;
}

/* Connects to address (an IP literal) or to s->conn->path. */
static void
connect_to(struct nc_socket *s, const char *address)
{
	struct sockaddr_storage	ss;
	struct sockaddr_un	sun;
	struct sockaddr		*sa;
	socklen_t		len;
	int			fd, rc;

	if (s->conn->path != NULL) {
		if ((rc = nc__sockaddr_unix(s->conn->path, &sun, &len)) != 0) {
			connect_error_at(s, rc, "connect", s->conn->path, -1);
			return;
		}
		sa = (struct sockaddr *)&sun;
		connect_name(s, s->conn->path, -1);
	} else {
		rc = nc__sockaddr_from(address, s->conn->port, &ss, &len);
		if (rc != 0) {
			connect_error_at(s, rc, "connect", address,
			    s->conn->port);
			return;
		}
		sa = (struct sockaddr *)&ss;
		connect_name(s, address, s->conn->port);
	}

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		nc__socket_fail(s, -errno, "connect");
		return;
	}
	if (s->conn->path == NULL && (s->conn->local_address != NULL ||
	    s->conn->local_port != 0)) {
		if ((rc = connect_bind_local(s, fd, sa->sa_family)) != 0) {
			close(fd);
			connect_error_at(s, rc, "bind", s->conn->local_address,
			    s->conn->local_port);
			return;
		}
	}
	if (nc__socket_open_fd(s, fd) != 0) {
		close(fd);
		nc__socket_fail(s, NC_ENOMEM, "connect");
		return;
	}
	nc__socket_set_state(s, S_CONNECTING);
	if (connect(fd, sa, len) == 0) {
		connect_done(s);
		return;
	}
	/*
	 * Only EINPROGRESS (or EINTR) leaves the connection pending.
	 * EAGAIN is a failure: no local port left (TCP), or the listener's
	 * backlog full (unix), where nothing is pending and the fd would
	 * look writable at once.
	 */
	if (errno != EINPROGRESS && errno != EINTR) {
		nc__socket_fail(s, -errno, "connect");
		return;
	}
	if (nc__socket_update_io(s) != 0)
		nc__socket_fail(s, NC_ENOMEM, "connect");
}

/* What connect() kept: gone once open, or with the socket. */
void
nc__socket_connect_free(struct nc_socket *s)
{
	struct socket_connect	*c = s->conn;

	if (c == NULL)
		return;
	free(c->host);
	free(c->path);
	free(c->local_address);
	free(c->error_address);
	free(c);
	s->conn = NULL;
}

static int
connect_dup(char **dst, const char *src)
{
	free(*dst);
	*dst = NULL;
	if (src != NULL && (*dst = strdup(src)) == NULL)
		return NC_ENOMEM;
	return 0;
}

/* The checks Node makes before anything happens (it throws). */
static int
connect_check(const struct nc_connect_options *o)
{
	if (o == NULL || (o->path == NULL && o->port == 0))
		return NC_ERR_MISSING_ARGS;
	if (o->path == NULL && (o->port < 0 || o->port > 65535))
		return NC_ERR_SOCKET_BAD_PORT;
	if (o->local_port < 0 || o->local_port > 65535)
		return NC_ERR_SOCKET_BAD_PORT;
	if (o->family != 0 && o->family != 4 && o->family != 6)
		return NC_ERR_INVALID_ARG_VALUE;
	if (o->local_address != NULL && nc_is_ip(o->local_address) == 0)
		return NC_ERR_INVALID_ARG_VALUE;
	return 0;
}

int
nc_socket_connect(struct nc_socket *s, const struct nc_connect_options *o,
    nc_listener_cb connect_listener, void *arg)
{
	int	family, rc;

	if ((rc = connect_check(o)) != 0)
		return rc;
	family = o->family == 0 ? 4 : o->family;
	/* After `close`, the same socket again, as in Node. */
	if (s->state == S_DESTROYED && (rc = nc__socket_reopen(s)) != 0)
		return rc;
	if (s->state != S_IDLE)
		return s->state == S_OPEN ? -EISCONN : -EALREADY;

	if (s->conn == NULL && (s->conn = calloc(1, sizeof *s->conn)) == NULL)
		return NC_ENOMEM;
	if ((rc = connect_dup(&s->conn->path, o->path)) != 0 ||
	    (rc = connect_dup(&s->conn->host, o->path != NULL ? NULL :
	    o->host != NULL && o->host[0] != '\0' ? o->host :
	    "localhost")) != 0 ||
	    (rc = connect_dup(&s->conn->local_address, o->local_address)) != 0)
		return rc;
	if (connect_listener != NULL &&
	    (rc = nc__listeners_add(&s->em, NC_EV_CONNECT, connect_listener,
	    arg, true)) != 0)
		return rc;
	s->conn->port = o->port;
	s->conn->local_port = o->local_port;
	s->conn->family = family;
	s->conn->lookup = o->lookup;
	s->conn->lookup_arg = o->lookup_arg;
	s->conn->error_port = -1;
	nc__socket_set_state(s, S_LOOKUP);
	nc_socket_hold(s);
	if ((rc = nc__defer(s->base, connect_start_cb, s)) != 0) {
		nc_socket_release(s);
		return rc;
	}
	return 0;
}

int
nc_socket_connect_port(struct nc_socket *s, int port, const char *host,
    nc_listener_cb connect_listener, void *arg)
{
	struct nc_connect_options	o;

	memset(&o, 0, sizeof o);
	o.port = port;
	o.host = host;
	return nc_socket_connect(s, &o, connect_listener, arg);
}

int
nc_socket_connect_path(struct nc_socket *s, const char *path,
    nc_listener_cb connect_listener, void *arg)
{
	struct nc_connect_options	o;

	if (path == NULL)
		return NC_ERR_MISSING_ARGS;
	memset(&o, 0, sizeof o);
	o.path = path;
	return nc_socket_connect(s, &o, connect_listener, arg);
}

int
nc_connect(const struct nc_connect_options *o, nc_listener_cb connect_listener,
    void *arg, struct nc_socket **sockp)
{
	struct nc_socket_options	 so;
	struct nc_socket		*s;
	int				 rc;

	*sockp = NULL;
	/* Bad arguments create nothing (not even the default base). */
	if ((rc = connect_check(o)) != 0)
		return rc;
	memset(&so, 0, sizeof so);
	so.base = o->base;
	so.allow_half_open = o->allow_half_open;
	if ((s = nc_socket_new(&so)) == NULL)
		return NC_ENOMEM;
	if ((rc = nc_socket_connect(s, o, connect_listener, arg)) != 0) {
		nc_socket_release(s);
		return rc;
	}
	*sockp = s;
	return 0;
}

int
nc_connect_port(struct event_base *base, int port, const char *host,
    nc_listener_cb connect_listener, void *arg, struct nc_socket **sockp)
{
	struct nc_connect_options	o;

	memset(&o, 0, sizeof o);
	o.base = base;
	o.port = port;
	o.host = host;
	return nc_connect(&o, connect_listener, arg, sockp);
}

int
nc_connect_path(struct event_base *base, const char *path,
    nc_listener_cb connect_listener, void *arg, struct nc_socket **sockp)
{
	struct nc_connect_options	o;

	if (path == NULL) {
		*sockp = NULL;
		return NC_ERR_MISSING_ARGS;
	}
	memset(&o, 0, sizeof o);
	o.base = base;
	o.path = path;
	return nc_connect(&o, connect_listener, arg, sockp);
}

int
nc_create_connection(const struct nc_connect_options *o,
    nc_listener_cb connect_listener, void *arg, struct nc_socket **sockp)
{
	return nc_connect(o, connect_listener, arg, sockp);
}

int
nc_create_connection_port(struct event_base *base, int port, const char *host,
    nc_listener_cb connect_listener, void *arg, struct nc_socket **sockp)
{
	return nc_connect_port(base, port, host, connect_listener, arg, sockp);
}

int
nc_create_connection_path(struct event_base *base, const char *path,
    nc_listener_cb connect_listener, void *arg, struct nc_socket **sockp)
{
	return nc_connect_path(base, path, connect_listener, arg, sockp);
}
