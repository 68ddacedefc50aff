/*
 * The control socket: a unix stream socket, mode 0600, that takes one
 * JSON request per line from a peer with our uid (or root) and answers
 * one JSON object per line: {"ok": true, ...} or {"ok": false, "error":
 * "..."}. Requests are bounded; a bad one gets an error, never a crash.
 */

#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "master.h"
#include "request.h"

#define CONTROL_MAX_REQUEST	66560	/* a message of 65000 bytes, and more */
#define CONTROL_MAX_CLIENTS	64
#define CONTROL_IDLE_S		10	/* for a request to come */
#define OOM_REPLY		"{\"ok\":false,\"error\":\"out of memory\"}\n"

struct answer;

struct client {
	struct bufferevent	*bev;
	bool			 busy;		/* an answer is pending */
	struct answer		*answer;	/* that answer */
	TAILQ_ENTRY(client)	 entry;
};

static void	client_link(struct client *);
static void	client_read_cb(struct bufferevent *, void *);
static void	client_event_cb(struct bufferevent *, short, void *);

static struct evconnlistener	*control_listener;
static struct lev_rest		 control_rest = { .what = "control" };
static unsigned long		 evicted;
static char			 control_path[108];
static TAILQ_HEAD(, client)	 clients = TAILQ_HEAD_INITIALIZER(clients);
static int			 nclients;

/* An answer on its way to a client, which may leave before it comes. */
struct answer {
	struct client	*client;	/* NULL once the client left */
	bool		 upgrade;	/* its fd would go to the new master */
};

static void
client_free(struct client *c)
{
	if (c->answer != NULL) {
		/* Its fd must not go to the new master once reused. */
		if (c->answer->upgrade)
			upgrade_client_gone();
		c->answer->client = NULL;
	}
	TAILQ_REMOVE(&clients, c, entry);
	bufferevent_free(c->bev);
	nclients--;
	stats_set("clients", "control", nclients);
	free(c);
}

/* A client that says nothing for CONTROL_IDLE_S is dropped. */
static void
client_idle(struct client *c)
{
	struct timeval	tv = { CONTROL_IDLE_S, 0 };

	bufferevent_set_timeouts(c->bev, &tv, NULL);
}

static void
client_reply(struct client *c, json_t *reply)
{
	char	*s;

	if (reply == NULL || (s = json_dumps(reply, JSON_COMPACT)) == NULL) {
		json_decref(reply);
		(void)bufferevent_write(c->bev, OOM_REPLY, strlen(OOM_REPLY));
		c->busy = false;
		return;
	}
	json_decref(reply);
	(void)bufferevent_write(c->bev, s, strlen(s));
	(void)bufferevent_write(c->bev, "\n", 1);
	free(s);
	c->busy = false;
	client_idle(c);
}

static void
client_error(struct client *c, const char *fmt, ...)
{
	char	msg[256];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	client_reply(c, json_pack("{s:b, s:s}", "ok", 0, "error", msg));
}

/* The answer to a request, whenever it comes: to the client, if there. */
static void
answer_cb(json_t *reply, void *arg)
{
	struct answer	*a = arg;
	struct client	*c = a->client;

	free(a);
	if (c == NULL) {
		json_decref(reply);
		return;
	}
	c->answer = NULL;
	client_reply(c, reply);
}

/* The client waits for an answer that may come later; NULL: none. */
static struct answer *
client_pending(struct client *c, bool upgrade)
{
	struct answer	*a;

	if ((a = calloc(1, sizeof *a)) == NULL) {
		client_error(c, "out of memory");
		return NULL;
	}
	a->client = c;
	a->upgrade = upgrade;
	c->answer = a;
	c->busy = true;
	/* Its answer may take a batched reload: it is not idle meanwhile. */
	bufferevent_set_timeouts(c->bev, NULL, NULL);
	return a;
}

static void
client_request(struct client *c, const char *line, size_t len)
{
	struct request	 req;
	struct answer	*a;
	char		 err[256];

	if (request_parse(line, len, &req, err, sizeof err) != 0) {
		client_error(c, "%s", err);
		return;
	}
	if ((a = client_pending(c, req.command == NC_CMD_UPGRADE)) == NULL) {
		json_decref(req.message);
		return;
	}
	command_run(&req, bufferevent_getfd(c->bev), answer_cb, a);
}

static void
client_flushed_cb(struct bufferevent *bev, void *arg)
{
	(void)bev;
	client_free(arg);
}

/*
 * A request past the bound: one error, then the client goes once it has
 * it (or CONTROL_IDLE_S later); nothing more of it is read.
 */
static void
client_too_long(struct client *c)
{
	struct timeval	tv = { CONTROL_IDLE_S, 0 };

	client_error(c, "request longer than %d bytes", CONTROL_MAX_REQUEST);
	(void)bufferevent_disable(c->bev, EV_READ);
	(void)evbuffer_drain(bufferevent_get_input(c->bev),
	    evbuffer_get_length(bufferevent_get_input(c->bev)));
	bufferevent_set_timeouts(c->bev, NULL, &tv);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_setcb(c->bev, NULL, client_flushed_cb, client_event_cb, c);
	c->busy = true;		/* nothing else is answered */
}

static void
client_read_cb(struct bufferevent *bev, void *arg)
{
	struct client	*c = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);
	char		*line;
	size_t		 len;

	while (!c->busy && (line = evbuffer_readln(in, &len,
	    EVBUFFER_EOL_LF)) != NULL) {
		if (len > CONTROL_MAX_REQUEST) {
			free(line);
			client_too_long(c);
			return;
		}
		client_request(c, line, len);
		free(line);
	}
	if (!c->busy && evbuffer_get_length(in) > CONTROL_MAX_REQUEST)
		client_too_long(c);
}

static void
client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct client	*c = arg;

	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
		client_free(c);
}

/*
 * Full: the oldest client not waiting for an answer, with nothing unread,
 * makes room, so that clients that hold connections and say nothing never
 * lock the operator out.
 */
static void
client_evict(void)
{
	struct client	*c, *oldest = NULL, *silent = NULL;
	int		 n;

	/* Newest first; a client whose request is on its way is spared. */
	TAILQ_FOREACH(c, &clients, entry) {
		if (c->busy)
			continue;
		oldest = c;
		if (ioctl(bufferevent_getfd(c->bev), FIONREAD, &n) == 0 &&
		    n == 0)
			silent = c;
	}
	if (silent != NULL)
		oldest = silent;
	if (oldest != NULL) {
		/* Logged the 1st, 2nd, 4th, 8th... time. */
		evicted++;
		stats_add("control", "evictions", 1);
		if ((evicted & (evicted - 1)) == 0)
			log_warnx("control: %d clients; dropped the oldest "
			    "idle one (%lu so far)", CONTROL_MAX_CLIENTS,
			    evicted);
		client_free(oldest);
	}
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int len, void *arg)
{
	struct client	*c;
	struct ucred	 cred;
	socklen_t	 clen = sizeof cred;

	(void)l;
	(void)sa;
	(void)len;
	(void)arg;
	lev_rest_accepted(&control_rest);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) == -1 ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		log_warnx("control: refused a client with uid %d",
		    (int)cred.uid);
		close(fd);
		return;
	}
	if (nclients >= CONTROL_MAX_CLIENTS)
		client_evict();
	if (nclients >= CONTROL_MAX_CLIENTS ||
	    (c = calloc(1, sizeof *c)) == NULL) {
		close(fd);
		return;
	}
	c->bev = bufferevent_socket_new(master.base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		close(fd);
		free(c);
		return;
	}
	client_link(c);
}

static void
client_link(struct client *c)
{
	/* A client that says nothing is dropped; it never blocks anyone. */
	client_idle(c);
	bufferevent_setcb(c->bev, client_read_cb, NULL, client_event_cb, c);
	(void)bufferevent_enable(c->bev, EV_READ);
	TAILQ_INSERT_HEAD(&clients, c, entry);
	nclients++;
	stats_set("clients", "control", nclients);
}

/*
 * The client that asked for the upgrade, from the master before us
 * (which ran from_version, or an unknown one if NULL): answered once the
 * new workers took over.
 */
void
control_adopt(int fd, const char *from_version)
{
	struct client	*c;
	struct answer	*a;

	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	if ((c = calloc(1, sizeof *c)) == NULL ||
	    (c->bev = bufferevent_socket_new(master.base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		close(fd);
		free(c);
		return;
	}
	client_link(c);
	if ((a = client_pending(c, false)) != NULL)
		command_upgraded(fd, from_version, answer_cb, a);
}

int
control_open(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un	sun;
	mode_t			old;
	char			dir[108];
	int			rc;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	/*
	 * Its directory (/run/netcluster) may not exist yet after a boot:
	 * made here, one level, as nc_config_check() found it can be.
	 */
	if ((rc = nc_config_socket_dir(path, dir, sizeof dir, err, errlen)) ==
	    -1)
		return -1;
	if (rc == 1 && mkdir(dir, 0755) == -1 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		return -1;
	}
	(void)unlink(path);
	old = umask(0177);	/* mode 0600 from birth */
	control_listener = evconnlistener_new_bind(master.base, accept_cb, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 128,
	    (struct sockaddr *)&sun, sizeof sun);
	umask(old);
	if (control_listener == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	lev_rest_watch(&control_rest, control_listener);
	snprintf(control_path, sizeof control_path, "%s", path);
	return 0;
}

void
control_close(void)
{
	struct client	*c;

	while ((c = TAILQ_FIRST(&clients)) != NULL)
		client_free(c);
	if (control_listener != NULL) {
		lev_rest_stop(&control_rest);
		evconnlistener_free(control_listener);
		control_listener = NULL;
		(void)unlink(control_path);
	}
}
