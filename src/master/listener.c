/*
 * Listeners: the master binds every address of the configuration once
 * (one socket per worker slot for reuseport and exclusive; exclusive
 * workers bind nothing themselves), and keeps a socket for as long as a
 * pool's definition names it: a reload, a scale or an upgrade that keeps
 * the listen text keeps the socket, its queue and its port. The
 * round-robin queue and the accept events are handoff.c's.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <arpa/inet.h>
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
#include "netcluster.h"

/* Every listener alive, by id: current ones, and those still held. */
static struct listener	*by_id[MAX_LISTENER_IDS];
static char		**sd_names;	/* systemd's fd names */
static int		 sd_nfds = -1;

/* Sockets handed over by the master this one replaced (upgrade). */
struct inherited {
	char	*text;
	int	*fds;
	size_t	 nfds;
	bool	 per_slot;
	char	*unix_path;
	json_t	*queued;	/* accepted connections, not yet handed */
	json_t	*counters;	/* [accepted, handed, refused, requeued] */
};
static struct inherited	*inherited;
static size_t		 ninherited;

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
listener_held(const struct nc_listen_addr *a)
{
	size_t	i;

	for (i = 0; i < MAX_LISTENER_IDS; i++)
		if (by_id[i] != NULL && strcmp(by_id[i]->text, a->text) == 0)
			return true;
	for (i = 0; i < ninherited; i++)
		if (strcmp(inherited[i].text, a->text) == 0)
			return true;
	return false;
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
	l->port = listener_describe_fd(l->nfds > 0 ? l->fds[0] : -1, l->text,
	    l->bound, sizeof l->bound);
	if (l->svc->mode == NC_MODE_EXCLUSIVE && l->nfds > 1) {
		/* Each worker has its port: `workers` lists them. */
		snprintf(l->bound, sizeof l->bound, "%s (per worker)", l->text);
		l->port = -1;
	}
}

/* A socket per slot: reuseport and exclusive on TCP. */
static bool
per_slot(const struct nc_service *svc, const struct nc_listen_addr *a)
{
	return (svc->mode == NC_MODE_REUSEPORT ||
	    svc->mode == NC_MODE_EXCLUSIVE) && a->kind == NC_LISTEN_TCP;
}

/*
 * Grows l to a socket per slot of nslots. reuseport: the same port (the
 * first socket's, for port 0); exclusive: each its own (port 0), and a
 * fixed port serves one worker. On failure l keeps what it had.
 */
int
listener_grow(struct listener *l, int nslots, char *err, size_t errlen)
{
	const struct nc_service	*c = l->svc;
	int			*fds, port;
	size_t			 i, n = (size_t)nslots;

	if (!per_slot(c, l->addr) || n <= l->nfds)
		return 0;
	if ((fds = realloc(l->fds, n * sizeof *fds)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	l->fds = fds;
	/* reuseport: the first socket's port; exclusive: each its own. */
	port = c->mode == NC_MODE_REUSEPORT && l->nfds > 0 ? l->port :
	    l->addr->port;
	for (i = l->nfds; i < n; i++) {
		if (bind_tcp(tcp_host(l->addr), port, c->backlog,
		    c->mode == NC_MODE_REUSEPORT, &l->fds[i], err,
		    errlen) == -1) {
			if (c->mode == NC_MODE_EXCLUSIVE && i > 0)
				snprintf(err + strlen(err), errlen -
				    strlen(err), "; exclusive mode gives each "
				    "of the %d workers a socket of its own: "
				    "use port 0", nslots);
			while (i-- > l->nfds)
				close(l->fds[i]);
			return -1;
		}
		if (i == 0 && c->mode == NC_MODE_REUSEPORT) {
			l->nfds = 1;
			describe(l);
			port = l->port;
		}
	}
	l->nfds = n;
	describe(l);
	return 0;
}

/*
 * Slots of l's pool at nslots and above are gone. exclusive: their
 * sockets close (each was its worker's own port). reuseport: the kernel
 * would reset what waits in a socket that closes, unless it may move
 * them to the group's other sockets (net.ipv4.tcp_migrate_req); without
 * that, the socket stays and the master hands its connections on, as it
 * does for a slot whose worker is gone.
 */
void
listener_shrink(struct listener *l, int nslots)
{
	char	 c = '0';
	int	 fd;
	size_t	 n = (size_t)(nslots > 0 ? nslots : 1);

	if (!per_slot(l->svc, l->addr) || n >= l->nfds)
		return;
	if (l->svc->mode == NC_MODE_REUSEPORT) {
		fd = open("/proc/sys/net/ipv4/tcp_migrate_req", O_RDONLY |
		    O_CLOEXEC);
		if (fd == -1 || read(fd, &c, 1) != 1)
			c = '0';
		if (fd != -1)
			close(fd);
		if (c != '1')
			return;
	}
	/* Their accept events go first: the fds are reused. */
	while (l->nslot_evs > n)
		event_free(l->slot_evs[--l->nslot_evs]);
	while (l->nfds > n)
		close(l->fds[--l->nfds]);
	describe(l);
}

static int
listener_alloc_id(void)
{
	int	i;

	for (i = 0; i < MAX_LISTENER_IDS; i++)
		if (by_id[i] == NULL)
			return i;
	return -1;
}

static bool
listener_adopt(struct listener *l, bool slots)
{
	struct inherited	*in;
	size_t			 i;

	for (i = 0; i < ninherited; i++) {
		in = &inherited[i];
		if (in->fds == NULL || in->per_slot != slots ||
		    strcmp(in->text, l->text) != 0)
			continue;
		l->fds = in->fds;
		l->nfds = in->nfds;
		in->fds = NULL;
		l->unix_path = in->unix_path;
		in->unix_path = NULL;
		describe(l);
		l->accepted = (unsigned long long)json_integer_value(
		    json_array_get(in->counters, 0));
		l->handed = (unsigned long long)json_integer_value(
		    json_array_get(in->counters, 1));
		l->refused = (unsigned long long)json_integer_value(
		    json_array_get(in->counters, 2));
		l->requeued = (unsigned long long)json_integer_value(
		    json_array_get(in->counters, 3));
		log_info("service %s: took over %s from the previous master",
		    l->svc->name, l->bound);
		return true;
	}
	return false;
}

/* Binds l's address once (one socket, or the first of a slot's). */
static int
listener_bind(struct listener *l, int nslots, char *err, size_t errlen)
{
	const struct nc_service	*c = l->svc;

	if (c->mode == NC_MODE_EXCLUSIVE && l->addr->kind == NC_LISTEN_UNIX &&
	    nslots > 1) {
		snprintf(err, errlen, "exclusive mode gives each worker a "
		    "socket of its own: a unix socket path serves one worker, "
		    "not %d", nslots);
		return -1;
	}
	if (per_slot(c, l->addr))
		return listener_grow(l, nslots, err, errlen);
	if ((l->fds = calloc(1, sizeof *l->fds)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if ((l->fds[0] = listener_open(l->addr, c->backlog, &l->unix_path,
	    err, errlen)) == -1)
		return -1;
	l->nfds = 1;
	describe(l);
	return 0;
}

/* Frees a listener nothing holds, or one that failed to bind. */
static void
listener_free(struct listener *l)
{
	struct handoff	*h;
	size_t		 j;

	if (l->accept_ev != NULL)
		event_free(l->accept_ev);
	for (j = 0; j < l->nslot_evs; j++)
		event_free(l->slot_evs[j]);
	free(l->slot_evs);
	while ((h = TAILQ_FIRST(&l->queue)) != NULL) {
		TAILQ_REMOVE(&l->queue, h, entry);
		close(h->fd);
		free(h);
	}
	for (j = 0; j < l->nfds; j++)
		close(l->fds[j]);
	if (l->unix_path != NULL) {
		(void)unlink(l->unix_path);
		free(l->unix_path);
	}
	if (l->id >= 0 && by_id[l->id] == l)
		by_id[l->id] = NULL;
	free(l->fds);
	free(l->text);
	conf_unref(l->conf);
	free(l);
}

/*
 * The live listener build may take for svc's address a: one of svc's own
 * pool that listens there already, else (any) one of another pool, or of
 * none, that nobody took in this build; NULL when there is none.
 */
static struct listener *
listener_held_by(const struct nc_service *svc,
    const struct nc_listen_addr *a, unsigned build, bool any)
{
	struct listener	*l;
	int		 i, pass;

	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < MAX_LISTENER_IDS; i++) {
			l = by_id[i];
			if (l == NULL || l->build == build ||
			    strcmp(l->text, a->text) != 0 ||
			    per_slot(l->svc, l->addr) != per_slot(svc, a))
				continue;
			if (pass == 0 && l->pool != NULL &&
			    strcmp(l->pool->name, svc->name) == 0)
				return l;
			if (pass == 1 && (any || l->pool == NULL ||
			    l->pool->retired))
				return l;
		}
	return NULL;
}

/*
 * The listener of svc's address a (in conf) for a pool of nslots, for
 * build: the one that holds that text already (listener_held_by()),
 * grown to nslots where it has a socket per slot; one the master before
 * an upgrade handed over; or a new one, bound now. A new reference, or
 * NULL with a message. What an existing listener says of its service
 * changes only with listener_claim().
 */
struct listener *
listener_get(struct conf *conf, const struct nc_service *svc,
    const struct nc_listen_addr *a, int nslots, unsigned build, bool any,
    char *err, size_t errlen)
{
	struct listener	*l;
	char		 why[256];

	if ((l = listener_held_by(svc, a, build, any)) != NULL) {
		if (listener_grow(l, nslots, why, sizeof why) == -1) {
			snprintf(err, errlen, "service %s: listen %s: %s",
			    svc->name, a->text, why);
			return NULL;
		}
		l->build = build;
		return listener_ref(l);
	}
	if ((l = calloc(1, sizeof *l)) == NULL ||
	    (l->text = strdup(a->text)) == NULL) {
		free(l);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	TAILQ_INIT(&l->queue);
	l->refs = 1;
	l->conf = conf_ref(conf);
	l->svc = svc;
	l->addr = a;
	l->port = -1;
	if ((l->id = listener_alloc_id()) == -1) {
		snprintf(err, errlen, "more than %d listeners",
		    MAX_LISTENER_IDS);
		listener_free(l);
		return NULL;
	}
	if (!listener_adopt(l, per_slot(svc, a)) && listener_bind(l, nslots,
	    why, sizeof why) == -1) {
		snprintf(err, errlen, "service %s: listen %s: %s", svc->name,
		    a->text, why);
		listener_free(l);
		return NULL;
	}
	if (listener_grow(l, nslots, why, sizeof why) == -1) {
		snprintf(err, errlen, "service %s: listen %s: %s", svc->name,
		    a->text, why);
		listener_free(l);
		return NULL;
	}
	by_id[l->id] = l;
	l->build = build;
	log_info("service %s (%s): listening on %s", svc->name,
	    nc_config_mode_name(svc->mode), l->bound);
	return l;
}

/*
 * A new generation takes l over for pool p: what it says of its service
 * (mode, backlog, the log's name) is conf's from now on.
 */
void
listener_claim(struct listener *l, struct pool *p, struct conf *conf,
    const struct nc_service *svc, const struct nc_listen_addr *a)
{
	struct conf	*old = l->conf;

	l->pool = p;
	l->conf = conf_ref(conf);
	l->svc = svc;
	l->addr = a;
	conf_unref(old);
	describe(l);
}

struct listener *
listener_ref(struct listener *l)
{
	l->refs++;
	return l;
}

/* The last reference: nothing can use the socket any more; it closes. */
void
listener_unref(struct listener *l)
{
	if (l == NULL || --l->refs > 0)
		return;
	log_info("listener %s closed", l->bound);
	listener_free(l);
}

/* The socket of slot for a worker (the only one, unless per slot). */
int
listener_fd_for(const struct listener *l, int slot)
{
	if (l->nfds == 0)
		return -1;
	if (l->nfds > 1 && slot >= 0)
		return l->fds[(size_t)slot % l->nfds];
	return l->fds[0];
}

/*
 * What a worker running def asks for: listener index of its service if
 * that is address, else (index < 0) the first whose address parses to
 * the same. Only its own service's: NULL for anything else.
 */
struct listener *
listener_find(const struct pooldef *def, const char *address,
    long long index)
{
	struct nc_listen_addr	 want;
	struct listener		*found = NULL;
	char			 err[256];
	size_t			 i;

	if (index >= 0) {
		if ((size_t)index >= def->nlisteners ||
		    strcmp(def->listeners[index]->text, address) != 0)
			return NULL;
		return def->listeners[index];
	}
	if (nc_config_parse_listen(address, &want, err, sizeof err) != 0)
		return NULL;
	for (i = 0; i < def->nlisteners && found == NULL; i++)
		if (nc_config_listen_equal(def->listeners[i]->addr,
		    &want))
			found = def->listeners[i];
	nc_config_listen_clear(&want);
	return found;
}

/*
 * An upgrade hands the sockets over across exec: state names each
 * listener's text and fds. They are taken as they are, never bound again.
 */
int
listener_inherit(json_t *list)
{
	struct inherited	*in;
	json_t			*e, *fds, *v;
	size_t			 i, j;

	if (!json_is_array(list))
		return -1;
	inherited = calloc(json_array_size(list) + 1, sizeof *inherited);
	if (inherited == NULL)
		return -1;
	json_array_foreach(list, i, e) {
		in = &inherited[ninherited];
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
		in->per_slot = json_is_true(json_object_get(e, "per_slot"));
		if (json_is_string(json_object_get(e, "unix_path")))
			in->unix_path = strdup(json_string_value(
			    json_object_get(e, "unix_path")));
		in->queued = json_incref(json_object_get(e, "queued"));
		in->counters = json_incref(json_object_get(e, "counters"));
		ninherited++;
	}
	return 0;
}

/*
 * The connections the master before accepted for l and never handed
 * (fds), once, for handoff.c; NULL when there are none.
 */
json_t *
listener_take_queued(struct listener *l)
{
	json_t	*q;
	size_t	 i;

	for (i = 0; i < ninherited; i++) {
		if (strcmp(inherited[i].text, l->text) != 0 ||
		    inherited[i].fds != NULL || inherited[i].queued == NULL)
			continue;
		q = inherited[i].queued;
		inherited[i].queued = NULL;
		return q;
	}
	return NULL;
}

/* What the new configuration did not take closes now. */
void
listener_inherit_done(void)
{
	struct inherited	*in;
	size_t			 i, j;
	json_t			*v;

	for (i = 0; i < ninherited; i++) {
		in = &inherited[i];
		json_array_foreach(in->queued, j, v)
			close((int)json_integer_value(v));
		json_decref(in->queued);
		json_decref(in->counters);
		for (j = 0; in->fds != NULL && j < in->nfds; j++)
			close(in->fds[j]);
		if (in->unix_path != NULL)
			(void)unlink(in->unix_path);
		free(in->fds);
		free(in->text);
		free(in->unix_path);
	}
	free(inherited);
	inherited = NULL;
	ninherited = 0;
}

/* The current listeners for an upgrade: fds kept open across exec. */
json_t *
listener_export(void)
{
	struct listener	*l;
	struct handoff	*h;
	json_t		*list, *fds, *queued;
	size_t		 i, j;

	if ((list = json_array()) == NULL)
		return NULL;
	for (i = 0; i < master.gen->nlisteners; i++) {
		l = master.gen->listeners[i];
		if (l->nfds == 0)
			continue;
		fds = json_array();
		for (j = 0; j < l->nfds; j++) {
			(void)fcntl(l->fds[j], F_SETFD, 0);
			(void)json_array_append_new(fds, json_integer(l->fds[j]));
		}
		/* Accepted, not yet handed: they wait for the new master. */
		queued = json_array();
		TAILQ_FOREACH(h, &l->queue, entry) {
			(void)fcntl(h->fd, F_SETFD, 0);
			(void)json_array_append_new(queued, json_integer(h->fd));
		}
		(void)json_array_append_new(list, json_pack(
		    "{s:s, s:o, s:b, s:s?, s:o, s:[I, I, I, I]}", "text",
		    l->text, "fds", fds, "per_slot", per_slot(l->svc, l->addr),
		    "unix_path", l->unix_path, "queued", queued, "counters",
		    (json_int_t)l->accepted, (json_int_t)l->handed,
		    (json_int_t)l->refused, (json_int_t)l->requeued));
	}
	return list;
}

/* At exit: whatever is still held closes. */
void
listener_close_all(void)
{
	int	i;

	for (i = 0; i < MAX_LISTENER_IDS; i++)
		if (by_id[i] != NULL)
			listener_free(by_id[i]);
	listener_inherit_done();
	if (sd_names != NULL) {
		for (i = 0; i < sd_nfds; i++)
			free(sd_names[i]);
		free(sd_names);
		sd_names = NULL;
	}
}
