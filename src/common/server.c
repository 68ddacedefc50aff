/*
 * net.Server: binds and listens (TCP, unix, or an fd already bound),
 * accepts with accept4() from a raw event, and hands each connection to
 * `connection` listeners as a socket, or drops it past maxConnections.
 *
 * As in Node, listen() binds at once but reports on a later turn:
 * `listening`, or `error` followed by nothing else. close() stops
 * accepting at once and emits `close` when the last connection is gone.
 *
 * This file is a server's life, its listening (by itself, or through the
 * master under netclusterd) and its properties; taking connections is
 * server-accept.c, struct nc_server server-int.h.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "nc-cluster.h"
#include "nc-config.h"
#include "nc-int.h"
#include "server-int.h"
#include "socket-int.h"

#define SERVER_BACKLOG		511


/* A deferred report of listen(): for the generation it was made in. */
struct server_report {
	struct nc_server	*server;
	unsigned int		 generation;
};

static int
server_unref_events(struct nc__handle *h)
{
	struct nc_server	*s = (struct nc_server *)h;

	if (!h->unref)
		return 0;
	return nc__event_pending(s->aev) + nc__event_pending(s->retry);
}

struct nc_server *
nc_create_server(const struct nc_server_options *opts,
    nc_listener_cb connection_listener, void *arg)
{
	struct nc_server	*s;
	struct event_base	*base;

	base = nc__base(opts != NULL ? opts->base : NULL);
	if (base == NULL || (s = calloc(1, sizeof *s)) == NULL)
		return NULL;
	s->base = base;
	s->refs = 1;	/* the program's, dropped by nc_server_release() */
	s->fd = -1;
	s->xfd = -1;
	s->proxy_timeout_ms = 3000;
	if (opts != NULL) {
		s->allow_half_open = opts->allow_half_open;
		s->pause_on_connect = opts->pause_on_connect;
		s->proxy_protocol = opts->proxy_protocol;
		if (opts->proxy_timeout_ms > 0)
			s->proxy_timeout_ms = opts->proxy_timeout_ms;
	}
	if (connection_listener != NULL &&
	    nc__emitter_add(&s->em, NC_EV_CONNECTION, connection_listener,
	    arg, false) != 0) {
		free(s);
		return NULL;
	}
	nc__handle_init(&s->h, base, server_unref_events);
	return s;
}

void
nc_server_hold(struct nc_server *s)
{
	s->refs++;
}

void
nc_server_release(struct nc_server *s)
{
	if (s == NULL || --s->refs > 0)
		return;
	if (s->aev != NULL)
		event_free(s->aev);
	if (s->retry != NULL)
		event_free(s->retry);
	if (s->xfd != -1)
		close(s->xfd);
	if (s->fd != -1)
		close(s->fd);
	nc__handle_remove(&s->h);
	nc__emitter_free(&s->em);
	free(s->unix_path);
	free(s);
}

void
nc__server_emit(struct nc_server *s, const struct nc_event_args *args)
{
	nc__emitter_emit(&s->em, s, args);
}

void
nc__server_close_handle(struct nc_server *s)
{
	if (s->aev != NULL) {
		event_free(s->aev);
		s->aev = NULL;
	}
	if (s->retry != NULL) {
		event_free(s->retry);
		s->retry = NULL;
	}
	if (s->xfd != -1) {
		close(s->xfd);
		s->xfd = -1;
	}
	if (s->fd != -1) {
		close(s->fd);
		s->fd = -1;
	}
	if (s->unix_path != NULL) {
		(void)unlink(s->unix_path);
		free(s->unix_path);
		s->unix_path = NULL;
	}
	s->listening = false;
}

static void
server_close_emit_cb(void *arg)
{
	struct nc_server	*s = arg;
	struct nc_event_args	 args;

	memset(&args, 0, sizeof args);
	args.event = NC_EV_CLOSE;
	nc__server_emit(s, &args);
	nc_server_release(s);
}

/* Node's _emitCloseIfDrained. */
void
nc__server_emit_close_if_drained(struct nc_server *s)
{
	if (s->listening || s->connections > 0)
		return;
	nc_server_hold(s);
	if (nc__defer(s->base, server_close_emit_cb, s) != 0) {
		log_err("server: out of memory, emitting close at once");
		server_close_emit_cb(s);
	}
}

/* A connection went to another process: counts are not ours any more. */
void
nc__server_handed_over(struct nc_server *s)
{
	s->using_workers = true;
}

static void
server_report_cb(void *arg)
{
	struct server_report	*r = arg;
	struct nc_server	*s = r->server;
	struct nc_event_args	 args;

	if (r->generation == s->generation) {
		memset(&args, 0, sizeof args);
		if (s->listen_error.pub.code != 0) {
			args.event = NC_EV_ERROR;
			args.error = &s->listen_error.pub;
			if (s->em.count[NC_EV_ERROR] == 0)
				log_err("unhandled server error: %s",
				    s->listen_error.message);
			else
				nc__server_emit(s, &args);
			s->listen_error.pub.code = 0;
		} else if (s->listening) {
			args.event = NC_EV_LISTENING;
			nc__server_emit(s, &args);
		}
	}
	free(r);
	nc_server_release(s);
}

static int
server_report_later(struct nc_server *s)
{
	struct server_report	*r;

	if ((r = malloc(sizeof *r)) == NULL)
		return NC_ENOMEM;
	r->server = s;
	r->generation = s->generation;
	nc_server_hold(s);
	if (nc__defer(s->base, server_report_cb, r) != 0) {
		nc_server_release(s);
		free(r);
		return NC_ENOMEM;
	}
	return 0;
}

/* A listen that failed: the error goes out on a later turn. */
static int
server_fail_later(struct nc_server *s, int code, const char *address,
    int port)
{
	nc__error_set(&s->listen_error, code, "listen", address, port);
	return server_report_later(s);
}

static int
server_check_can_listen(struct nc_server *s, int backlog)
{
	if (s->listening || s->cluster_pending)
		return NC_ERR_SERVER_ALREADY_LISTEN;
	if (backlog < 0)
		return NC_ERR_OUT_OF_RANGE;
	return 0;
}

static int
server_bind_listen(struct nc_server *s, const struct sockaddr *sa,
    socklen_t len, int backlog, bool ipv6_only, const char *address, int port)
{
	int	fd, on = 1, v6only = ipv6_only ? 1 : 0;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1)
		return server_fail_later(s, -errno, address, port);
	/* All sockets in Node set SO_REUSEADDR. */
	if (sa->sa_family != AF_UNIX)
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	if (sa->sa_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only,
		    sizeof v6only);
	if (bind(fd, sa, len) == -1 || listen(fd,
	    backlog > 0 ? backlog : SERVER_BACKLOG) == -1) {
		int	code = -errno;

		close(fd);
		return server_fail_later(s, code, address, port);
	}
	if (nc__server_start(s, fd, false) != 0)
		return NC_ENOMEM;
	s->own_socket = true;
	return server_report_later(s);
}

struct server_listen_lookup {
	struct nc_server	*server;
	unsigned int		 generation;
	int			 port;
	int			 backlog;
	bool			 ipv6_only;
};

static void
server_lookup_cb(int status, const char *address, int family, void *arg)
{
	struct server_listen_lookup	*l = arg;
	struct nc_server		*s = l->server;
	struct sockaddr_storage		 ss;
	socklen_t			 len;

	(void)family;
	if (l->generation != s->generation || s->listening)
		goto done;
	if (status != 0) {
		nc__error_set(&s->listen_error, status, "getaddrinfo", NULL,
		    -1);
		(void)server_report_later(s);
		goto done;
	}
	if (nc__sockaddr_from(address, l->port, &ss, &len) == 0)
		(void)server_bind_listen(s, (struct sockaddr *)&ss, len,
		    l->backlog, l->ipv6_only, address, l->port);
done:
	free(l);
	nc_server_release(s);
}

/*
 * Under netclusterd, a listen that is not exclusive asks the master for
 * the handle of address (netcluster.json's listen syntax), as Node's
 * workers do; the answer comes to nc__server_cluster_listening().
 */
static int
server_listen_cluster(struct nc_server *s, const char *address, int backlog,
    const char *service, int index)
{
	int	rc;

	if ((rc = server_check_can_listen(s, backlog)) != 0)
		return rc;
	if ((rc = nc__cluster_listen(s, s->base, address,
	    backlog > 0 ? backlog : SERVER_BACKLOG, service, index)) != 0)
		return rc;
	s->cluster_pending = true;
	s->cluster_generation = s->generation;
	return 0;
}

/* After a listen call: the callback becomes a once `listening` listener. */
static int
server_listened(struct nc_server *s, int rc, nc_listener_cb listening,
    void *arg)
{
	if (rc != 0)
		return rc;
	if (listening != NULL)
		(void)nc__emitter_add(&s->em, NC_EV_LISTENING, listening, arg,
		    true);
	return 0;
}

int
nc_cluster_server_listen(struct nc_server *s, const char *address,
    int backlog, const char *service, int index, nc_listener_cb listening,
    void *arg)
{
	if (!nc_cluster_is_worker())
		return NC_EINVAL;
	return server_listened(s, server_listen_cluster(s, address, backlog,
	    service, index), listening, arg);
}

/* The master's "[::]:80", "1.2.3.4:80" or "unix:PATH" as address(). */
static void
server_parse_bound(struct nc_address *a, const char *bound, int port)
{
	const char	*end;

	memset(a, 0, sizeof *a);
	a->port = -1;
	if (bound == NULL)
		return;
	if (strncmp(bound, "unix:", 5) == 0) {
		snprintf(a->address, sizeof a->address, "%s", bound + 5);
		return;
	}
	a->port = port;
	if (bound[0] == '[' && (end = strchr(bound, ']')) != NULL) {
		snprintf(a->address, sizeof a->address, "%.*s",
		    (int)(end - bound - 1), bound + 1);
		strcpy(a->family, "IPv6");
	} else if ((end = strrchr(bound, ':')) != NULL) {
		snprintf(a->address, sizeof a->address, "%.*s",
		    (int)(end - bound), bound);
		strcpy(a->family, "IPv4");
	}
}

static int	server_listen_tcp(struct nc_server *, int, const char *, int,
		    bool, bool);
static int	server_listen_unix(struct nc_server *, const char *, int,
		    bool);

/*
 * The master lets this server bind its address itself (the service's
 * mode is exclusive): address is what it asked for.
 */
static int
server_listen_exclusive(struct nc_server *s, const char *address, int backlog)
{
	struct nc_listen_addr	a;
	char			err[256];
	int			rc;

	if (nc_config_parse_listen(address, &a, err, sizeof err) != 0)
		return server_fail_later(s, NC_EINVAL, address, -1);
	if (a.kind == NC_LISTEN_TCP)
		rc = server_listen_tcp(s, a.port, a.host, backlog, false, true);
	else if (a.kind == NC_LISTEN_UNIX)
		rc = server_listen_unix(s, a.path, backlog, true);
	else
		rc = server_fail_later(s, NC_EINVAL, address, -1);
	nc_config_listen_clear(&a);
	return rc;
}

void
nc__server_cluster_listening(struct nc_server *s, int code, int fd,
    bool shared, const char *address, int port, const char *exclusive,
    int backlog)
{
	s->cluster_pending = false;
	if (s->listening || s->generation != s->cluster_generation) {
		/* Closed (or listening again) meanwhile. */
		if (fd != -1)
			close(fd);
		if (code == 0 && fd == -1)
			nc__cluster_forget(s);
		return;
	}
	if (code != 0) {
		(void)server_fail_later(s, code, address, port);
		return;
	}
	if (exclusive != NULL) {
		if (fd != -1)
			close(fd);
		if ((code = server_listen_exclusive(s, exclusive,
		    backlog)) != 0)
			(void)server_fail_later(s, code, exclusive, -1);
		return;
	}
	memset(&s->cluster_address, 0, sizeof s->cluster_address);
	if (fd != -1) {
		if (nc__server_start(s, fd, shared) != 0) {
			close(fd);
			(void)server_fail_later(s, NC_ENOMEM, address, port);
			return;
		}
	} else {
		/* Round-robin: no fd here; connections come from the master. */
		s->cluster_rr = true;
		s->listening = true;
		server_parse_bound(&s->cluster_address, address, port);
	}
	s->using_workers = false;
	(void)server_report_later(s);
}

static int
server_listen_tcp(struct nc_server *s, int port, const char *host,
    int backlog, bool ipv6_only, bool exclusive)
{
	struct sockaddr_storage		 ss;
	struct server_listen_lookup	*l;
	socklen_t			 len;
	int				 fd, rc;

	if (port < 0 || port > 65535)
		return NC_ERR_SOCKET_BAD_PORT;
	if ((rc = server_check_can_listen(s, backlog)) != 0)
		return rc;
	if (!exclusive && nc_cluster_is_worker()) {
		char	address[NC_ADDRSTRLEN + 16];

		if (host == NULL)
			snprintf(address, sizeof address, "%d", port);
		else
			snprintf(address, sizeof address, nc_is_ipv6(host) ?
			    "[%s]:%d" : "%s:%d", host, port);
		return server_listen_cluster(s, address, backlog, NULL, -1);
	}
	if (host == NULL) {
		/* `::` where IPv6 is available, else 0.0.0.0. */
		fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd != -1) {
			close(fd);
			host = "::";
		} else
			host = "0.0.0.0";
	}
	if (nc__sockaddr_from(host, port, &ss, &len) == 0)
		return server_bind_listen(s, (struct sockaddr *)&ss, len,
		    backlog, ipv6_only, host, port);

	/* A name: resolve it off the loop, then bind the first address. */
	if ((l = calloc(1, sizeof *l)) == NULL)
		return NC_ENOMEM;
	l->server = s;
	l->generation = s->generation;
	l->port = port;
	l->backlog = backlog;
	l->ipv6_only = ipv6_only;
	nc_server_hold(s);
	if ((rc = nc__lookup_start(s->base, host, 0, server_lookup_cb, l,
	    NULL)) != 0) {
		nc_server_release(s);
		free(l);
		return rc;
	}
	return 0;
}

int
nc_server_listen(struct nc_server *s, int port, const char *host, int backlog,
    nc_listener_cb listening, void *arg)
{
	return server_listened(s, server_listen_tcp(s, port, host, backlog,
	    false, false), listening, arg);
}

static int
server_listen_unix(struct nc_server *s, const char *path, int backlog,
    bool exclusive)
{
	struct sockaddr_un	sun;
	socklen_t		len;
	char			address[NC_ADDRSTRLEN + 8];
	int			rc;

	if ((rc = server_check_can_listen(s, backlog)) != 0)
		return rc;
	if (!exclusive && nc_cluster_is_worker()) {
		snprintf(address, sizeof address, "unix:%s", path);
		return server_listen_cluster(s, address, backlog, NULL, -1);
	}
	if ((rc = nc__sockaddr_unix(path, &sun, &len)) != 0)
		return server_fail_later(s, rc, path, -1);
	if ((rc = server_bind_listen(s, (struct sockaddr *)&sun, len, backlog,
	    false, path, -1)) != 0)
		return rc;
	if (s->listening && (s->unix_path = strdup(path)) == NULL)
		log_warnx("server: out of memory; %s will not be unlinked",
		    path);
	return 0;
}

int
nc_server_listen_path(struct nc_server *s, const char *path,
    nc_listener_cb listening, void *arg)
{
	if (path == NULL)
		return NC_ERR_MISSING_ARGS;
	return server_listened(s, server_listen_unix(s, path, 0, false),
	    listening, arg);
}

static int
server_listen_fd(struct nc_server *s, int fd, int backlog)
{
	struct stat	st;
	int		type, acc, flags, rc;
	socklen_t	len;

	if ((rc = server_check_can_listen(s, backlog)) != 0)
		return rc;
	if (fd < 0)
		return NC_ERR_INVALID_ARG_VALUE;
	len = sizeof type;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1) {
		/*
		 * Node guesses the handle's type first: neither a socket
		 * nor a pipe (a file, a terminal) is EINVAL; a pipe is
		 * taken for one and fails at listen(), ENOTSOCK.
		 */
		rc = -errno;
		if (rc == NC_ENOTSOCK && (fstat(fd, &st) == -1 ||
		    !S_ISFIFO(st.st_mode)))
			rc = NC_EINVAL;
		return server_fail_later(s, rc, NULL, -1);
	}
	if (type != SOCK_STREAM)
		return server_fail_later(s, NC_EINVAL, NULL, -1);
	len = sizeof acc;
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) == -1)
		acc = 0;
	if (!acc && listen(fd, backlog > 0 ? backlog : SERVER_BACKLOG) == -1)
		return server_fail_later(s, -errno, NULL, -1);
	if ((flags = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) == -1)
		return server_fail_later(s, -errno, NULL, -1);
	if (nc__server_start(s, fd, false) != 0)
		return NC_ENOMEM;
	return server_report_later(s);
}

int
nc_server_listen_handle(struct nc_server *s, int fd, nc_listener_cb listening,
    void *arg)
{
	return server_listened(s, server_listen_fd(s, fd, 0), listening,
	    arg);
}

int
nc_server_listen_options(struct nc_server *s,
    const struct nc_listen_options *o, nc_listener_cb listening, void *arg)
{
	int	rc;

	if (o == NULL)
		return NC_ERR_MISSING_ARGS;
	if (o->has_fd && !o->exclusive && nc_cluster_is_worker()) {
		/* Node: listen({fd}) in a worker is the master's fd. */
		char	address[32];

		snprintf(address, sizeof address, "fd:%d", o->fd);
		rc = server_listen_cluster(s, address, o->backlog, NULL, -1);
	} else if (o->has_fd)
		rc = server_listen_fd(s, o->fd, o->backlog);
	else if (o->path != NULL)
		rc = server_listen_unix(s, o->path, o->backlog, o->exclusive);
	else
		rc = server_listen_tcp(s, o->port, o->host, o->backlog,
		    o->ipv6_only, o->exclusive);
	return server_listened(s, rc, listening, arg);
}

/* server.close(cb) on a server that was not open: cb gets the error. */
struct server_close_cb {
	nc_listener_cb	 cb;
	void		*arg;
};

static void
server_not_running_cb(void *emitter, const struct nc_event_args *ev,
    void *arg)
{
	struct server_close_cb	*c = arg;
	struct nc_event_args	 args = *ev;
	struct nc__error	 e;

	nc__error_set(&e, NC_ERR_SERVER_NOT_RUNNING, NULL, NULL, -1);
	args.error = &e.pub;
	c->cb(emitter, &args, c->arg);
	free(c);
}

int
nc_server_close(struct nc_server *s, nc_listener_cb cb, void *arg)
{
	struct server_close_cb	*c;
	int			 rc;

	if (cb != NULL) {
		if (!s->listening) {
			if ((c = malloc(sizeof *c)) == NULL)
				return NC_ENOMEM;
			c->cb = cb;
			c->arg = arg;
			if ((rc = nc__emitter_add(&s->em, NC_EV_CLOSE,
			    server_not_running_cb, c, true)) != 0) {
				free(c);
				return rc;
			}
		} else if ((rc = nc__emitter_add(&s->em, NC_EV_CLOSE, cb, arg,
		    true)) != 0)
			return rc;
	}
	s->generation++;	/* cancels a pending `listening` */
	nc__cluster_forget(s);
	s->cluster_rr = false;
	s->cluster_pending = false;
	nc__server_close_handle(s);
	nc__server_emit_close_if_drained(s);
	return 0;
}

int
nc_server_address(struct nc_server *s, struct nc_address *a)
{
	struct sockaddr_storage	ss;
	socklen_t		len = sizeof ss;

	if (s->listening && s->cluster_rr) {
		*a = s->cluster_address;
		return 0;
	}
	if (!s->listening || s->fd == -1)
		return NC_ERR_SERVER_NOT_RUNNING;
	if (getsockname(s->fd, (struct sockaddr *)&ss, &len) == -1)
		return -errno;
	return nc__sockaddr_to_address((struct sockaddr *)&ss, len, a);
}

void
nc_server_ref(struct nc_server *s)
{
	s->h.unref = false;
}

void
nc_server_unref(struct nc_server *s)
{
	s->h.unref = true;
}

int
nc_server_max_connections(const struct nc_server *s)
{
	return s->max_connections;
}

int
nc_server_set_max_connections(struct nc_server *s, int max)
{
	if (max < 0)
		return NC_ERR_OUT_OF_RANGE;
	s->max_connections = max;
	return 0;
}

int
nc_server_connections(const struct nc_server *s)
{
	return s->using_workers ? -1 : s->connections;
}

struct server_count {
	struct nc_server	*server;
	nc_count_cb		 cb;
	void			*arg;
};

static void
server_count_cb(void *arg)
{
	struct server_count	*c = arg;

	c->cb(c->server, 0, c->server->connections, c->arg);
	nc_server_release(c->server);
	free(c);
}

int
nc_server_get_connections(struct nc_server *s, nc_count_cb cb, void *arg)
{
	struct server_count	*c;

	if (cb == NULL)
		return NC_ERR_INVALID_ARG_VALUE;
	if ((c = malloc(sizeof *c)) == NULL)
		return NC_ENOMEM;
	c->server = s;
	c->cb = cb;
	c->arg = arg;
	nc_server_hold(s);
	if (nc__defer(s->base, server_count_cb, c) != 0) {
		nc_server_release(s);
		free(c);
		return NC_ENOMEM;
	}
	return 0;
}

unsigned long long
nc_server_proxy_errors(const struct nc_server *s)
{
	return s->proxy_errors;
}

bool
nc_server_listening(const struct nc_server *s)
{
	return s->listening;
}

int
nc_server_fd(const struct nc_server *s)
{
	return s->fd;
}

struct event_base *
nc_server_base(const struct nc_server *s)
{
	return s->base;
}

int
nc_server_on(struct nc_server *s, enum nc_event ev, nc_listener_cb cb,
    void *arg)
{
	return nc__emitter_add(&s->em, ev, cb, arg, false);
}

int
nc_server_once(struct nc_server *s, enum nc_event ev, nc_listener_cb cb,
    void *arg)
{
	return nc__emitter_add(&s->em, ev, cb, arg, true);
}

int
nc_server_off(struct nc_server *s, enum nc_event ev, nc_listener_cb cb,
    void *arg)
{
	return nc__emitter_remove(&s->em, ev, cb, arg);
}

size_t
nc_server_listener_count(const struct nc_server *s, enum nc_event ev)
{
	if ((unsigned int)ev >= NC_EV__COUNT)
		return 0;
	return s->em.count[ev];
}
