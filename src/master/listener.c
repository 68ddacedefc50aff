/*
 * Listeners: the master binds every address of the configuration once
 * (one socket per worker slot for reuseport; none for exclusive, where
 * each worker binds its own), keeps them open for its whole life, and for
 * round-robin (and reuseport slots whose worker is gone) accepts itself
 * and hands each connection to a worker. A connection the master accepted
 * is never dropped: it waits in the listener's queue until a worker takes
 * it.
 */

#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <linux/tcp.h>		/* tcp_info's byte counters */
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "master.h"
#include "nc-accept.h"
#include "netcluster.h"

#define ACCEPT_BATCH	64	/* accepts per event */
#define QUEUE_MAX	4096	/* accepted, not yet handed over */
#define WORKER_WINDOW	64	/* handoffs in flight per worker */
#define REFUSED_PAUSE_S	0.1	/* before asking a full worker again */
#define TCPS_ESTABLISHED 1	/* tcpi_state, the kernel's tcp_states.h */
#define TCPS_CLOSE_WAIT	8

static char		**sd_names;	/* systemd's fd names */
static bool		 ids[MAX_LISTENER_IDS];	/* in use */
static struct listener	*retired;	/* removed, closed once drained */
static struct nc_accept_pause accept_pause;	/* out of fds: not accepting */
static struct event	*accept_retry_ev;

/*
 * fds kept for handing connections over: a worker gets a dup of each,
 * which needs a free slot even when accepting has filled the table. New
 * connections are accepted only while the reserve is full.
 */
#define FD_RESERVE	2
static int		 reserve_fds[FD_RESERVE] = { -1, -1 };

/* Sockets handed over by the master this one replaced (upgrade). */
struct inherited {
	char	*text;
	int	*fds;
	size_t	 nfds;
	char	*unix_path;
	json_t	*queued;	/* accepted connections, not yet handed */
	json_t	*counters;	/* [handed, refused, requeued] */
	bool	 used;
};
static struct inherited	*inherited;
static size_t		 ninherited;
static int		 sd_nfds = -1;

static void	listener_accept_cb(evutil_socket_t, short, void *);
static bool	listener_adopt(struct listener *, size_t);
static void	listener_requeue_inherited(struct listener *, json_t *);
static int	queue_push(struct listener *, int);
static void	describe(struct listener *);
static int	set_flags(int);

static int
set_flags(int fd)
{
	int	flags;

	if ((flags = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) == -1)
		return -1;
	return 0;
}

static int
bind_tcp(const char *host, int port, int backlog, bool reuseport, int *fd,
    char *err, size_t errlen)
{
	struct sockaddr_storage	ss;
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t		len;
	int			s, on = 1, off = 0;

	memset(&ss, 0, sizeof ss);
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		len = sizeof *sin;
	} else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		len = sizeof *sin6;
	} else {
		snprintf(err, errlen, "%s is not an address", host);
		return -1;
	}
	s = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	(void)setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	if (reuseport)
		(void)setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
	if (ss.ss_family == AF_INET6)
		(void)setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off,
		    sizeof off);
	if (bind(s, (struct sockaddr *)&ss, len) == -1 ||
	    listen(s, backlog) == -1) {
		snprintf(err, errlen, "%s port %d: %s (%s)", host, port,
		    strerror(errno), nc_err_name(-errno));
		close(s);
		return -1;
	}
	*fd = s;
	return 0;
}

static int
bind_unix(const char *path, int backlog, char **unix_path, char *err,
    size_t errlen)
{
	struct sockaddr_un	sun;
	struct stat		st;
	int			s, probe;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	/* A socket file nobody answers on is left from a crash: replace it. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe != -1 && connect(probe, (struct sockaddr *)&sun,
		    sizeof sun) == -1 && errno == ECONNREFUSED)
			(void)unlink(path);
		if (probe != -1)
			close(probe);
	}
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s == -1 || bind(s, (struct sockaddr *)&sun, sizeof sun) == -1 ||
	    listen(s, backlog) == -1) {
		snprintf(err, errlen, "%s: %s (%s)", path, strerror(errno),
		    nc_err_name(-errno));
		if (s != -1)
			close(s);
		return -1;
	}
	if ((*unix_path = strdup(path)) == NULL) {
		close(s);
		(void)unlink(path);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return s;
}

static int
take_fd(int fd, int backlog, char *err, size_t errlen)
{
	bool	listening;

	/* What netclusterd -t checked (nc_config_check()). */
	if (nc_config_check_fd(fd, &listening, err, errlen) == -1)
		return -1;
	if (!listening && listen(fd, backlog) == -1) {
		snprintf(err, errlen, "fd %d: listen: %s", fd, strerror(errno));
		return -1;
	}
	if (set_flags(fd) == -1) {
		snprintf(err, errlen, "fd %d: %s", fd, strerror(errno));
		return -1;
	}
	return fd;
}

static int
systemd_fd(const char *name, char *err, size_t errlen)
{
	int	i;

	if (sd_nfds == -1) {
		sd_nfds = sd_listen_fds_with_names(1, &sd_names);
		if (sd_nfds < 0)
			sd_nfds = 0;
	}
	for (i = 0; i < sd_nfds; i++)
		if (sd_names != NULL && strcmp(sd_names[i], name) == 0)
			return SD_LISTEN_FDS_START + i;
	snprintf(err, errlen, "no socket named %s was passed by systemd "
	    "(FileDescriptorName=)", name);
	return -1;
}

/*
 * For nc_config_check(): the same lookup, which reads the environment
 * once and keeps the answer for the bind that follows.
 */
int
listener_systemd_fd(const char *name, char *err, size_t errlen, void *arg)
{
	(void)arg;
	return systemd_fd(name, err, errlen);
}

/*
 * For nc_config_check(): an fd: or systemd: listener held already, by
 * this master (a reload keeps it) or handed over by the one before (an
 * upgrade), is taken as it is and not looked at again.
 */
bool
listener_held(const struct nc_listen_addr *a, void *arg)
{
	size_t	i;

	(void)arg;
	for (i = 0; i < master_nlisteners; i++)
		if (strcmp(master_listeners[i]->text, a->text) == 0)
			return true;
	for (i = 0; i < ninherited; i++)
		if (strcmp(inherited[i].text, a->text) == 0)
			return true;
	return health_held(a);
}

/* What a TCP listener binds: its address as checked, or every one. */
static const char *
tcp_host(const struct nc_listen_addr *a)
{
	int	fd;

	if (a->host == NULL) {
		/* `::` dual-stack where IPv6 exists, else 0.0.0.0. */
		fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd != -1)
			close(fd);
		return fd != -1 ? "::" : "0.0.0.0";
	}
	return a->address != NULL ? a->address : a->host;
}

/*
 * One socket for a, listening: bound (a unix socket's path, which the
 * caller unlinks once done, goes in *unix_path), or taken from an fd:
 * or from systemd. The fd, or -1 with a message.
 */
int
listener_open(const struct nc_listen_addr *a, int backlog, char **unix_path,
    char *err, size_t errlen)
{
	int	fd = -1;

	*unix_path = NULL;
	switch (a->kind) {
	case NC_LISTEN_TCP:
		if (bind_tcp(tcp_host(a), a->port, backlog, false, &fd, err,
		    errlen) == -1)
			return -1;
		return fd;
	case NC_LISTEN_UNIX:
		return bind_unix(a->path, backlog, unix_path, err, errlen);
	case NC_LISTEN_FD:
		return take_fd(a->fd, backlog, err, errlen);
	case NC_LISTEN_SYSTEMD:
		if ((fd = systemd_fd(a->name, err, errlen)) == -1)
			return -1;
		return take_fd(fd, backlog, err, errlen);
	}
	snprintf(err, errlen, "unknown listener kind");
	return -1;
}

/*
 * What fd really bound, "HOST:PORT", "[V6]:PORT" or "unix:PATH"; else
 * the listen text. The port, or -1.
 */
int
listener_describe_fd(int fd, const char *text, char *bound, size_t len)
{
	struct sockaddr_storage	ss;
	socklen_t		sslen = sizeof ss;
	char			host[NC_ADDRSTRLEN];
	int			port = -1;

	snprintf(bound, len, "%s", text);
	if (fd == -1 || getsockname(fd, (struct sockaddr *)&ss, &sslen) == -1)
		return -1;
	if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
		inet_ntop(ss.ss_family, ss.ss_family == AF_INET ?
		    (void *)&((struct sockaddr_in *)&ss)->sin_addr :
		    (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr, host,
		    sizeof host);
		port = ntohs(ss.ss_family == AF_INET ?
		    ((struct sockaddr_in *)&ss)->sin_port :
		    ((struct sockaddr_in6 *)&ss)->sin6_port);
		snprintf(bound, len, ss.ss_family == AF_INET6 ?
		    "[%s]:%d" : "%s:%d", host, port);
	} else if (ss.ss_family == AF_UNIX)
		snprintf(bound, len, "unix:%s",
		    ((struct sockaddr_un *)&ss)->sun_path);
	return port;
}

static void
describe(struct listener *l)
{
	l->port = listener_describe_fd(l->nfds > 0 ? l->fds[0] : -1, l->addr->text,
	    l->bound, sizeof l->bound);
}

static int
listener_bind(struct listener *l, int nworkers, char *err, size_t errlen)
{
	const struct nc_listen_addr	*a = l->addr;
	const struct nc_service		*c = l->service->conf;
	const char			*host;
	int				 port, i;
	size_t				 n = 1;

	if ((c->mode == NC_MODE_REUSEPORT || c->mode == NC_MODE_EXCLUSIVE) &&
	    a->kind == NC_LISTEN_TCP)
		n = (size_t)nworkers;
	if (c->mode == NC_MODE_EXCLUSIVE && a->kind == NC_LISTEN_UNIX &&
	    nworkers > 1) {
		snprintf(err, errlen, "exclusive mode gives each worker a "
		    "socket of its own: a unix socket path serves one worker, "
		    "not %d", nworkers);
		return -1;
	}
	if ((l->fds = calloc(n, sizeof *l->fds)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (i = 0; i < (int)n; i++)
		l->fds[i] = -1;
	l->nfds = n;

	switch (a->kind) {
	case NC_LISTEN_TCP:
		host = tcp_host(a);
		port = a->port;
		/*
		 * reuseport: one port, a socket per slot (port 0: the first
		 * one's). exclusive: a socket per slot, each its own port
		 * with port 0, and a fixed port serves one worker.
		 */
		for (i = 0; i < (int)n; i++) {
			if (bind_tcp(host, port, c->backlog,
			    c->mode == NC_MODE_REUSEPORT, &l->fds[i], err,
			    errlen) == -1) {
				if (c->mode == NC_MODE_EXCLUSIVE && i > 0)
					snprintf(err + strlen(err), errlen -
					    strlen(err), "; exclusive mode "
					    "gives each of the %d workers a "
					    "socket of its own: use port 0",
					    nworkers);
				return -1;
			}
			if (port == 0 && c->mode == NC_MODE_REUSEPORT) {
				describe(l);
				port = l->port;
			}
		}
		break;
	case NC_LISTEN_UNIX:
	case NC_LISTEN_FD:
	case NC_LISTEN_SYSTEMD:
		if ((l->fds[0] = listener_open(a, c->backlog, &l->unix_path,
		    err, errlen)) == -1)
			return -1;
		l->unlink_path = l->unix_path != NULL;
		break;
	}
	describe(l);
	if (c->mode == NC_MODE_EXCLUSIVE && n > 1) {
		/* Each worker has its port: `workers` lists them. */
		snprintf(l->bound, sizeof l->bound, "%s (per worker)", a->text);
		l->port = -1;
	}
	return 0;
}

static int
listener_alloc_id(void)
{
	int	i;

	for (i = 0; i < MAX_LISTENER_IDS; i++) {
		if (!ids[i]) {
			ids[i] = true;
			return i;
		}
	}
	return -1;
}

/* Accept events as the listener's (possibly new) mode wants them. */
static int
listener_events(struct listener *l)
{
	size_t	j;

	if (l->accept_ev != NULL) {
		event_free(l->accept_ev);
		l->accept_ev = NULL;
	}
	for (j = 0; l->slot_evs != NULL && j < l->nfds; j++)
		event_free(l->slot_evs[j]);
	free(l->slot_evs);
	l->slot_evs = NULL;
	/* Round-robin: the master accepts, paused, and hands fds over. */
	if (l->service->conf->mode == NC_MODE_ROUND_ROBIN && l->nfds == 1) {
		l->accept_ev = event_new(master_base, l->fds[0],
		    EV_READ | EV_PERSIST, listener_accept_cb, l);
		return l->accept_ev != NULL ? 0 : -1;
	}
	/*
	 * reuseport: each slot's socket, served here while its worker is
	 * gone. Not for a program without a channel: nobody could be handed
	 * what the master accepted; the slot's connections wait in its
	 * backlog for the successor, which gets the same socket.
	 */
	if (l->nfds > 1 && l->service->conf->mode == NC_MODE_REUSEPORT &&
	    (l->service->conf->handler != NC_HANDLER_PROGRAM ||
	    l->service->conf->sockets == NC_SOCKETS_CLUSTER)) {
		if ((l->slot_evs = calloc(l->nfds, sizeof *l->slot_evs)) == NULL)
			return -1;
		for (j = 0; j < l->nfds; j++) {
			l->slot_evs[j] = event_new(master_base, l->fds[j],
			    EV_READ | EV_PERSIST, listener_accept_cb, l);
			if (l->slot_evs[j] == NULL)
				return -1;
		}
	}
	return 0;
}

static void
listener_free(struct listener *l)
{
	struct handoff	*h;
	size_t		 j;

	if (l->accept_ev != NULL)
		event_free(l->accept_ev);
	for (j = 0; l->slot_evs != NULL && j < l->nfds; j++)
		event_free(l->slot_evs[j]);
	free(l->slot_evs);
	while ((h = l->qhead) != NULL) {
		l->qhead = h->next;
		close(h->fd);
		free(h);
	}
	for (j = 0; j < l->nfds; j++)
		if (l->fds[j] != -1)
			close(l->fds[j]);
	if (l->unix_path != NULL) {
		(void)unlink(l->unix_path);
		free(l->unix_path);
	}
	free(l->fds);
	free(l->text);
	if (l->id >= 0)
		ids[l->id] = false;
	free(l);
}

/*
 * How many fds the listen address wants: reuseport and exclusive, one
 * per slot, kept across its workers' restarts and reloads.
 */
static size_t
listener_nfds_for(const struct nc_service *c, const struct nc_listen_addr *a,
    int nworkers)
{
	if ((c->mode == NC_MODE_REUSEPORT || c->mode == NC_MODE_EXCLUSIVE) &&
	    a->kind == NC_LISTEN_TCP)
		return (size_t)nworkers;
	return 1;
}

/*
 * Builds the listeners of services: an address already bound with the
 * same number of sockets keeps its sockets and queue (a reload changes no
 * fd); any other is bound now. On failure nothing changed: what was bound
 * is closed, and the current listeners are untouched.
 */
int
listener_build(struct service_rt *svcs, size_t nsvcs, int nworkers,
    struct listener ***outp, size_t *noutp, char *err, size_t errlen)
{
	struct listener		**out, *l, **taken_from;
	const struct nc_service	*c;
	const struct nc_listen_addr *a;
	size_t			 i, j, k, n = 0, total = 0, nfds;
	char			 why[256];

	for (i = 0; i < nsvcs; i++)
		total += svcs[i].conf->nlisten;
	out = calloc(total + 1, sizeof *out);
	taken_from = calloc(total + 1, sizeof *taken_from);
	if (out == NULL || taken_from == NULL)
		goto nomem;
	for (i = 0; i < nsvcs; i++) {
		c = svcs[i].conf;
		for (j = 0; j < c->nlisten; j++) {
			a = &c->listen[j];
			nfds = listener_nfds_for(c, a, nworkers);
			for (k = 0; k < master_nlisteners; k++) {
				l = master_listeners[k];
				if (!l->taken && nfds > 0 && l->nfds == nfds &&
				    strcmp(l->text, a->text) == 0)
					break;
			}
			if (k < master_nlisteners) {
				l->taken = true;
				taken_from[n] = l;
				out[n++] = l;
				continue;
			}
			if ((l = calloc(1, sizeof *l)) == NULL ||
			    (l->text = strdup(a->text)) == NULL) {
				free(l);
				goto nomem;
			}
			out[n++] = l;
			l->service = &svcs[i];
			l->addr = a;
			if ((l->id = listener_alloc_id()) == -1) {
				snprintf(err, errlen, "more than %d listeners",
				    MAX_LISTENER_IDS);
				goto fail;
			}
			if (listener_adopt(l, nfds))
				continue;
			if (listener_bind(l, nworkers, why, sizeof why) == -1) {
				snprintf(err, errlen, "service %s: listen %s: "
				    "%s", c->name, a->text, why);
				goto fail;
			}
		}
	}
	/* Everything is bound: point the listeners at their services. */
	n = 0;
	for (i = 0; i < nsvcs; i++) {
		svcs[i].nlisteners = svcs[i].conf->nlisten;
		svcs[i].listeners = &out[n];
		for (j = 0; j < svcs[i].nlisteners; j++, n++) {
			l = out[n];
			l->service = &svcs[i];
			l->addr = &svcs[i].conf->listen[j];
			if (l->addr->kind == NC_LISTEN_UNIX && l->nfds > 0 &&
			    l->unix_path == NULL && l->unlink_path &&
			    (l->unix_path = strdup(l->addr->path)) == NULL)
				goto nomem;
			if (listener_events(l) == -1)
				goto nomem;
			if (taken_from[n] == NULL)
				log_info("service %s (%s): listening on %s",
				    svcs[i].conf->name, nc_config_mode_name(
				    svcs[i].conf->mode), l->bound);
		}
	}
	free(taken_from);
	*outp = out;
	*noutp = n;
	return 0;
nomem:
	snprintf(err, errlen, "out of memory");
fail:
	for (i = 0; i < n; i++) {
		if (taken_from != NULL && taken_from[i] != NULL)
			taken_from[i]->taken = false;
		else if (out[i] != NULL)
			listener_free(out[i]);
	}
	free(out);
	free(taken_from);
	return -1;
}

/*
 * Makes list the listeners: those of the old set nobody took stop
 * accepting now and close once the workers that hold them are gone
 * (listener_retired_close()).
 */
void
listener_commit(struct listener **list, size_t n)
{
	struct listener	*l;
	size_t		 i;

	for (i = 0; i < master_nlisteners; i++) {
		l = master_listeners[i];
		if (l->taken) {
			l->taken = false;
			continue;
		}
		if (l->accept_ev != NULL)
			(void)event_del(l->accept_ev);
		for (size_t j = 0; l->slot_evs != NULL && j < l->nfds; j++)
			(void)event_del(l->slot_evs[j]);
		l->retired_next = retired;
		retired = l;
		log_info("listener %s retired", l->bound);
	}
	free(master_listeners);
	master_listeners = list;
	master_nlisteners = n;
	for (i = 0; i < n; i++)
		list[i]->taken = false;
}

void
listener_retired_close(void)
{
	struct listener	*l;

	while ((l = retired) != NULL) {
		retired = l->retired_next;
		log_info("listener %s closed", l->bound);
		listener_free(l);
	}
}

/*
 * An upgrade hands the sockets over across exec: state names each
 * listener's text and fds. They are taken as they are, never bound again.
 */
int
listener_inherit(json_t *list)
{
	json_t	*e, *fds, *v;
	size_t	 i, j;

	if (!json_is_array(list))
		return -1;
	inherited = calloc(json_array_size(list) + 1, sizeof *inherited);
	if (inherited == NULL)
		return -1;
	json_array_foreach(list, i, e) {
		struct inherited	*in = &inherited[ninherited];

		fds = json_object_get(e, "fds");
		if (!json_is_string(json_object_get(e, "text")) ||
		    !json_is_array(fds) || json_array_size(fds) == 0)
			return -1;
		in->text = strdup(json_string_value(json_object_get(e,
		    "text")));
		in->nfds = json_array_size(fds);
		in->fds = calloc(in->nfds, sizeof *in->fds);
		if (in->text == NULL || in->fds == NULL)
			return -1;
		json_array_foreach(fds, j, v) {
			in->fds[j] = (int)json_integer_value(v);
			(void)set_flags(in->fds[j]);
		}
		if (json_is_string(json_object_get(e, "unix_path")))
			in->unix_path = strdup(json_string_value(
			    json_object_get(e, "unix_path")));
		in->queued = json_incref(json_object_get(e, "queued"));
		in->counters = json_incref(json_object_get(e, "counters"));
		ninherited++;
	}
	return 0;
}

static bool
listener_adopt(struct listener *l, size_t nfds)
{
	struct inherited	*in;
	size_t			 i;

	for (i = 0; i < ninherited; i++) {
		in = &inherited[i];
		if (in->used || in->nfds != nfds ||
		    strcmp(in->text, l->text) != 0)
			continue;
		in->used = true;
		l->fds = in->fds;
		l->nfds = in->nfds;
		in->fds = NULL;
		if (in->unix_path != NULL) {
			l->unlink_path = true;
			l->unix_path = in->unix_path;
			in->unix_path = NULL;
		}
		describe(l);
		l->handed = (unsigned long long)json_integer_value(
		    json_array_get(in->counters, 0));
		l->refused = (unsigned long long)json_integer_value(
		    json_array_get(in->counters, 1));
		l->requeued = (unsigned long long)json_integer_value(
		    json_array_get(in->counters, 2));
		listener_requeue_inherited(l, in->queued);
		log_info("service %s: took over %s from the previous master",
		    l->service->conf->name, l->bound);
		return true;
	}
	return false;
}

/* A connection accepted here waits at the tail of l's queue. */
static int
queue_push(struct listener *l, int fd)
{
	struct handoff	*h;

	if ((h = calloc(1, sizeof *h)) == NULL)
		return -1;
	h->fd = fd;
	h->listener = l;
	if (l->qtail != NULL)
		l->qtail->next = h;
	else
		l->qhead = h;
	l->qtail = h;
	l->qlen++;
	return 0;
}

static void
listener_requeue_inherited(struct listener *l, json_t *queued)
{
	json_t		*v;
	size_t		 i;

	json_array_foreach(queued, i, v) {
		(void)set_flags((int)json_integer_value(v));
		if (queue_push(l, (int)json_integer_value(v)) == -1)
			fatalx("out of memory");
	}
	json_array_clear(queued);
}

/* What the new configuration did not take closes now. */
void
listener_inherit_done(void)
{
	size_t	i, j;
	json_t	*v;

	for (i = 0; i < ninherited; i++) {
		json_array_foreach(inherited[i].queued, j, v)
			close((int)json_integer_value(v));
		json_decref(inherited[i].queued);
		json_decref(inherited[i].counters);
		for (j = 0; inherited[i].fds != NULL && j < inherited[i].nfds;
		    j++)
			close(inherited[i].fds[j]);
		if (inherited[i].unix_path != NULL)
			(void)unlink(inherited[i].unix_path);
		free(inherited[i].fds);
		free(inherited[i].text);
		free(inherited[i].unix_path);
	}
	free(inherited);
	inherited = NULL;
	ninherited = 0;
}

/* The listeners for an upgrade: fds kept open across exec. */
json_t *
listener_export(void)
{
	struct listener	*l;
	struct handoff	*h;
	json_t		*list, *fds, *queued;
	size_t		 i, j;

	if ((list = json_array()) == NULL)
		return NULL;
	for (i = 0; i < master_nlisteners; i++) {
		l = master_listeners[i];
		if (l->nfds == 0)
			continue;
		fds = json_array();
		for (j = 0; j < l->nfds; j++) {
			(void)fcntl(l->fds[j], F_SETFD, 0);
			(void)json_array_append_new(fds, json_integer(l->fds[j]));
		}
		/* Accepted, not yet handed: they wait for the new master. */
		queued = json_array();
		for (h = l->qhead; h != NULL; h = h->next) {
			(void)fcntl(h->fd, F_SETFD, 0);
			(void)json_array_append_new(queued, json_integer(h->fd));
		}
		(void)json_array_append_new(list, json_pack(
		    "{s:s, s:o, s:s?, s:o, s:[I, I, I]}", "text", l->text,
		    "fds", fds, "unix_path", l->unix_path, "queued", queued,
		    "counters", (json_int_t)l->handed, (json_int_t)l->refused,
		    (json_int_t)l->requeued));
	}
	return list;
}

int
listener_bind_all(char *err, size_t errlen)
{
	struct listener	**list;
	size_t		  n;

	if (listener_build(master_services, master_nservices, master_nworkers,
	    &list, &n, err, errlen) == -1)
		return -1;
	listener_commit(list, n);
	return 0;
}

struct listener *
listener_find(const char *address, const char *service, long long index)
{
	struct nc_listen_addr	 want;
	const struct nc_listen_addr *a;
	struct service_rt	*svc = NULL;
	struct listener		*l, *found = NULL;
	char			 err[256];
	size_t			 i, n;

	if (service != NULL && (svc = service_by_name(service)) == NULL)
		return NULL;
	/* A named listener: that one, if its address is the one asked for. */
	if (svc != NULL && index >= 0) {
		if ((size_t)index >= svc->nlisteners ||
		    strcmp(svc->listeners[index]->text, address) != 0)
			return NULL;
		return svc->listeners[index];
	}
	/* Else by address: among the service's (a program's), or all. */
	if (nc_config_parse_listen(address, &want, err, sizeof err) != 0)
		return NULL;
	n = svc != NULL ? svc->nlisteners : master_nlisteners;
	for (i = 0; i < n && found == NULL; i++) {
		l = svc != NULL ? svc->listeners[i] : master_listeners[i];
		a = l->addr;
		if (a->kind != want.kind)
			continue;
		if ((a->kind == NC_LISTEN_TCP && a->port == want.port &&
		    ((a->host == NULL && want.host == NULL) ||
		    (a->host != NULL && want.host != NULL &&
		    strcmp(a->host, want.host) == 0))) ||
		    (a->kind == NC_LISTEN_UNIX &&
		    strcmp(a->path, want.path) == 0) ||
		    (a->kind == NC_LISTEN_FD && a->fd == want.fd) ||
		    (a->kind == NC_LISTEN_SYSTEMD &&
		    strcmp(a->name, want.name) == 0))
			found = l;
	}
	nc_config_listen_clear(&want);
	return found;
}

int
listener_fd_for(struct listener *l, struct worker *w)
{
	if (l->nfds == 0)
		return -1;
	if (l->nfds > 1)
		return l->fds[w->slot % (int)l->nfds];
	return l->fds[0];
}

static bool
worker_can_take(struct worker *w, struct listener *l)
{
	if (w == NULL || w->state != W_ONLINE || w->rr == NULL ||
	    !w->rr[l->id] || w->inflight >= WORKER_WINDOW)
		return false;
	/*
	 * A worker that refused (full) is asked again only after a pause,
	 * so a connection nobody can take waits here instead of bouncing
	 * between full workers (Node's #54882).
	 */
	if (w->refused && elapsed_s(&w->refused_at) < REFUSED_PAUSE_S) {
		supervisor_retry_later();	/* or nothing asks it again */
		return false;
	}
	w->refused = false;
	return true;
}

/* Hands queued connections to workers, round-robin, while any can take. */
void
listener_dispatch(struct listener *l)
{
	struct handoff	*h;
	struct worker	*w, *w2;
	int		 i, n = master_nworkers;

	if (master_upgrading)
		return;		/* the queue goes to the new master */
	while ((h = l->qhead) != NULL) {
		w = NULL;
		for (i = 0; i < n; i++) {
			w = master_workers[(l->rr_next + (size_t)i) %
			    (size_t)n];
			if (worker_can_take(w, l))
				break;
			w = NULL;
		}
		/* While a reload starts, the older generation still serves. */
		for (w2 = supervisor_draining(); w == NULL && w2 != NULL;
		    w2 = w2->next)
			if (worker_can_take(w2, l))
				w = w2;
		if (w == NULL)
			break;
		l->rr_next = ((size_t)w->slot + 1) % (size_t)n;
		l->qhead = h->next;
		if (l->qhead == NULL)
			l->qtail = NULL;
		l->qlen--;
		h->next = NULL;
		if (supervisor_send_conn(w, h) == -1) {
			/*
			 * Back to the front, and again soon: the worker is
			 * being replaced, or we are out of fds for a dup.
			 */
			h->next = l->qhead;
			l->qhead = h;
			if (l->qtail == NULL)
				l->qtail = h;
			l->qlen++;
			supervisor_retry_later();
			break;
		}
	}
	supervisor_flush_conns();
	/* Back-pressure: stop accepting while the queue is full. */
	listener_worker_changed();
}

void
listener_requeue(struct handoff *h)
{
	struct listener	*l = h->listener;

	h->worker = NULL;
	h->tries++;
	l->requeued++;
	h->next = l->qhead;	/* it waited longest */
	l->qhead = h;
	if (l->qtail == NULL)
		l->qtail = h;
	l->qlen++;
}

/*
 * Whether a connection a worker held was served: bytes went to its client
 * (sent or queued), bytes of its client were read, or it was shut down.
 * The kernel's own counts say it (TCP_INFO); a connection that cannot say
 * (a unix socket) counts as untouched.
 */
bool
listener_touched(int fd)
{
	struct tcp_info	ti;
	socklen_t	len = sizeof ti;
	int		inq = 0;
	uint64_t	fin;

	memset(&ti, 0, sizeof ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == -1 ||
	    len < offsetof(struct tcp_info, tcpi_notsent_bytes) +
	    sizeof ti.tcpi_notsent_bytes)
		return false;
	if (ti.tcpi_bytes_sent > 0 || ti.tcpi_notsent_bytes > 0)
		return true;
	/* Only these two states are ours alone: no FIN sent by us. */
	if (ti.tcpi_state != TCPS_ESTABLISHED &&
	    ti.tcpi_state != TCPS_CLOSE_WAIT)
		return true;
	/* Received but not in the queue: read. A FIN counts one byte. */
	fin = ti.tcpi_state == TCPS_CLOSE_WAIT ? 1 : 0;
	if (ioctl(fd, SIOCINQ, &inq) == -1 || inq < 0)
		return false;
	return ti.tcpi_bytes_received > (uint64_t)inq + fin;
}

static bool
reserve_fill(void)
{
	size_t	i;

	for (i = 0; i < FD_RESERVE; i++)
		if (reserve_fds[i] == -1 && (reserve_fds[i] = open("/dev/null",
		    O_RDONLY | O_CLOEXEC)) == -1 && nc_accept_must_pause(errno))
			return false;
	return true;
}

/* A close-on-exec dup of fd, spending the reserve if it must. */
int
listener_dup(int fd)
{
	size_t	i;
	int	nfd;

	for (i = 0; i <= FD_RESERVE; i++) {
		if ((nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3)) != -1 ||
		    (errno != EMFILE && errno != ENFILE) || i == FD_RESERVE)
			break;
		if (reserve_fds[i] != -1) {
			close(reserve_fds[i]);
			reserve_fds[i] = -1;
		}
	}
	return nfd;
}

static void
accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	listener_worker_changed();
}

/* Out of fds: every listener waits NC_ACCEPT_PAUSE_MS, then tries again. */
static void
accept_pause_now(struct listener *l, int err)
{
	struct timeval	tv = { 0, NC_ACCEPT_PAUSE_MS * 1000 };

	if (nc_accept_pause_begin(&accept_pause)) {
		stats_add("accept_pauses", "service", 1);
		log_warnx("service %s: accept on %s: %s; pausing accepts, "
		    "retrying every %d ms", l->service->conf->name, l->bound,
		    strerror(err), NC_ACCEPT_PAUSE_MS);
	}
	if (accept_retry_ev == NULL)
		accept_retry_ev = evtimer_new(master_base, accept_retry_cb,
		    NULL);
	if (accept_retry_ev == NULL || evtimer_add(accept_retry_ev, &tv) == -1)
		return;		/* without memory: try again at once */
	listener_worker_changed();
}

static void
listener_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct listener	*l = arg;
	unsigned long	 pauses;
	long		 ms;
	int		 fd, i;

	(void)what;
	for (i = 0; i < ACCEPT_BATCH && l->qlen < QUEUE_MAX; i++) {
		if (!reserve_fill()) {
			accept_pause_now(l, errno);
			break;
		}
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd == -1) {
			if (nc_accept_must_pause(errno))
				accept_pause_now(l, errno);
			else if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				log_warnx("service %s: accept on %s: %s",
				    l->service->conf->name, l->bound,
				    strerror(errno));
			break;
		}
		if (nc_accept_pause_end(&accept_pause, &ms, &pauses))
			log_warnx("accepting again after %ld ms (%lu pauses)",
			    ms, pauses);
		if (queue_push(l, fd) == -1) {
			log_errx("out of memory; closing a connection");
			close(fd);
			break;
		}
		l->accepted++;
	}
	listener_dispatch(l);
}

/* Which accept events should run now (worker states changed). */
void
listener_worker_changed(void)
{
	struct listener	*l;
	struct worker	*w;
	size_t		 i, j;
	bool		 want, paused;

	paused = accept_retry_ev != NULL &&
	    evtimer_pending(accept_retry_ev, NULL);
	for (i = 0; i < master_nlisteners; i++) {
		l = master_listeners[i];
		if (l->accept_ev != NULL) {
			want = !master_stopping && !master_upgrading &&
			    !paused && l->qlen < QUEUE_MAX;
			if (want && !event_pending(l->accept_ev, EV_READ, NULL))
				(void)event_add(l->accept_ev, NULL);
			else if (!want)
				(void)event_del(l->accept_ev);
		}
		/* reuseport: a slot without its worker is served from here. */
		for (j = 0; l->slot_evs != NULL && j < l->nfds; j++) {
			w = master_workers[j];
			want = !master_stopping && !master_upgrading &&
			    !paused && l->qlen < QUEUE_MAX &&
			    (w == NULL || w->state != W_ONLINE);
			if (want && !event_pending(l->slot_evs[j], EV_READ,
			    NULL))
				(void)event_add(l->slot_evs[j], NULL);
			else if (!want)
				(void)event_del(l->slot_evs[j]);
		}
	}
}

void
listener_stop_accepting(void)
{
	listener_worker_changed();
}

void
listener_close_all(void)
{
	size_t	i;

	for (i = 0; i < master_nlisteners; i++)
		listener_free(master_listeners[i]);
	free(master_listeners);
	master_listeners = NULL;
	master_nlisteners = 0;
	listener_retired_close();
	if (accept_retry_ev != NULL) {
		event_free(accept_retry_ev);
		accept_retry_ev = NULL;
	}
	for (i = 0; i < FD_RESERVE; i++)
		if (reserve_fds[i] != -1) {
			close(reserve_fds[i]);
			reserve_fds[i] = -1;
		}
	if (sd_names != NULL) {
		for (i = 0; i < (size_t)sd_nfds; i++)
			free(sd_names[i]);
		free(sd_names);
	}
}
