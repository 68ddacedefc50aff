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
	struct client		*prev, *next;
};

static void	client_link(struct client *);
static void	client_read_cb(struct bufferevent *, void *);
static void	client_event_cb(struct bufferevent *, short, void *);

static struct evconnlistener	*control_listener;
static struct lev_rest		 control_rest = { .what = "control" };
static unsigned long		 evicted;
static char			 control_path[108];
static char			 upgraded_from[64];	/* version before */
static struct client		*clients;
static int			 nclients;

struct answer {
	struct client	*client;	/* NULL once the client left */
	char		 command[16];
	char		 service[65];
	bool		 json;		/* metrics: as JSON */
};

static void
client_free(struct client *c)
{
	if (c->answer != NULL) {
		/* Its fd must not go to the new master once reused. */
		if (strcmp(c->answer->command, "upgrade") == 0)
			master_upgrade_client_gone();
		c->answer->client = NULL;
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		clients = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	bufferevent_free(c->bev);
	nclients--;
	free(c);
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

static json_t *
services_json(json_t *counts, const char *only)
{
	struct service_rt	*svc;
	struct listener		*l;
	json_t			*list, *addrs, *w, *n;
	size_t			 i, j, k;
	json_int_t		 total;
	bool			 unknown;

	if ((list = json_array()) == NULL)
		return NULL;
	for (i = 0; i < master_nservices; i++) {
		svc = &master_services[i];
		if (only != NULL && strcmp(only, svc->conf->name) != 0)
			continue;
		addrs = json_array();
		for (j = 0; j < svc->nlisteners; j++) {
			l = svc->listeners[j];
			(void)json_array_append_new(addrs, json_pack(
			    "{s:s, s:s, s:i, s:I}", "listen", l->addr->text,
			    "bound", l->bound, "port", l->port, "accepted",
			    (json_int_t)l->accepted));
		}
		total = 0;
		unknown = false;
		json_array_foreach(json_object_get(counts, "workers"), k, w) {
			n = json_object_get(json_object_get(w, "services"),
			    svc->conf->name);
			if (json_is_integer(n))
				total += json_integer_value(n);
			else if (json_is_null(n))
				unknown = true;	/* a program's: not known */
		}
		(void)json_array_append_new(list, json_pack(
		    "{s:s, s:s, s:s, s:o, s:o}", "name", svc->conf->name,
		    "handler", nc_config_handler_name(svc->conf->handler),
		    "mode", nc_config_mode_name(svc->conf->mode),
		    "listeners", addrs, "connections", unknown ? json_null() :
		    json_integer(total)));
	}
	return list;
}

static void
answer_cb(json_t *counts, void *arg)
{
	struct answer	*a = arg;
	struct client	*c = a->client;
	json_t		*reply, *w, *missing;
	json_int_t	 total = 0;
	size_t		 i;
	bool		 unknown = false;

	if (c == NULL) {
		free(a);
		return;
	}
	c->answer = NULL;
	missing = json_array();
	json_array_foreach(json_object_get(counts, "workers"), i, w) {
		if (json_is_true(json_object_get(w, "answered")))
			total += json_integer_value(json_object_get(w,
			    "count"));
		else if (json_is_null(json_object_get(w, "count")))
			unknown = true;	/* a program: nobody to ask */
		else if (strcmp(json_string_value(json_object_get(w,
		    "state")), "dead") != 0)
			(void)json_array_append_new(missing, json_integer(
			    json_integer_value(json_object_get(w, "id"))));
	}
	if (strcmp(a->command, "workers") == 0)
		reply = json_pack("{s:b, s:O, s:o}", "ok", 1, "workers",
		    json_object_get(counts, "workers"), "missing", missing);
	else if (strcmp(a->command, "connections") == 0) {
		w = services_json(counts, a->service[0] != '\0' ?
		    a->service : NULL);
		if (a->service[0] != '\0') {
			total = json_integer_value(json_object_get(
			    json_array_get(w, 0), "connections"));
			unknown = json_is_null(json_object_get(
			    json_array_get(w, 0), "connections"));
		}
		reply = json_pack("{s:b, s:o, s:o, s:o}", "ok", 1,
		    "connections", unknown ? json_null() : json_integer(total),
		    "services", w, "missing", missing);
	} else
		reply = json_pack("{s:b, s:i, s:s, s:s, s:b, s:i, s:f, s:i, "
		    "s:o, s:o, s:o, s:b, s:b}", "ok", 1, "pid", (int)getpid(),
		    "version", PACKAGE_VERSION, "binary", master_binary,
		    "binary_changed", upgrade_binary_changed(), "workers",
		    master_nworkers, "uptime_s", elapsed_s(&master_started),
		    "alive", (int)supervisor_alive(), "connections", unknown ?
		    json_null() : json_integer(total), "services",
		    services_json(counts, NULL), "missing", missing, "ready",
		    health_ready(NULL, 0), "draining", master_draining);
	if (reply != NULL && strcmp(a->command, "status") == 0) {
		(void)json_object_set_new(reply, "metrics", health_bound(
		    "metrics") != NULL ? json_string(health_bound("metrics")) :
		    json_null());
		(void)json_object_set_new(reply, "agent", health_bound(
		    "agent") != NULL ? json_string(health_bound("agent")) :
		    json_null());
		/* Draining: whether the agent said so to the balancer yet. */
		(void)json_object_set_new(reply, "agent_told_drain",
		    health_agent_told() == -1 || !master_draining ?
		    json_null() : json_boolean(health_agent_told()));
	}
	client_reply(c, reply);
	free(a);
}

/* The client waits for an answer that comes later; NULL without memory. */
static struct answer *
client_pending(struct client *c, const char *command, const char *service)
{
	struct answer	*a;

	if ((a = calloc(1, sizeof *a)) == NULL) {
		client_error(c, "out of memory");
		return NULL;
	}
	a->client = c;
	snprintf(a->command, sizeof a->command, "%s", command);
	if (service != NULL)
		snprintf(a->service, sizeof a->service, "%s", service);
	c->answer = a;
	c->busy = true;
	return a;
}

static void
metrics_answer_cb(json_t *families, void *arg)
{
	struct answer	*a = arg;
	struct client	*c = a->client;
	struct evbuffer	*text;
	char		*s;
	size_t		 len;

	if (c == NULL) {
		free(a);
		return;
	}
	c->answer = NULL;
	if (families == NULL)
		client_error(c, "out of memory");
	else if (a->json)
		client_reply(c, json_pack("{s:b, s:O}", "ok", 1, "metrics",
		    families));
	else if ((text = evbuffer_new()) == NULL)
		client_error(c, "out of memory");
	else {
		metrics_text(families, text);
		len = evbuffer_get_length(text);
		s = (char *)evbuffer_pullup(text, -1);
		client_reply(c, json_pack("{s:b, s:s%}", "ok", 1, "text",
		    s != NULL ? s : "", s != NULL ? len : 0));
		evbuffer_free(text);
	}
	free(a);
}

static void
drain_reply(struct client *c, bool on)
{
	health_drain(on);
	client_reply(c, json_pack("{s:b, s:b, s:s, s:i}", "ok", 1, "draining",
	    on, "message", on ? "draining: /ready answers 503 and the agent "
	    "drain; listeners stay open" : "not draining",
	    "shutdown_timeout_ms", master_config->shutdown_timeout_ms));
}

static void
reload_done(const char *error, void *arg)
{
	struct answer	*a = arg;
	struct client	*c = a->client;
	char		 command[16], msg[160];

	snprintf(command, sizeof command, "%s", a->command);
	free(a);
	if (error != NULL && strcmp(command, "upgrade") == 0)
		stats_add("upgrades", "failure", 1);
	if (c == NULL)
		return;
	c->answer = NULL;
	if (error != NULL)
		client_error(c, "%s", error);
	else if (strcmp(command, "upgrade") == 0) {
		/* We are the new master, answering for the one before. */
		snprintf(msg, sizeof msg, "upgraded: netclusterd %s -> %s "
		    "(pid %d)", upgraded_from, PACKAGE_VERSION, (int)getpid());
		client_reply(c, json_pack("{s:b, s:s, s:s, s:s, s:i, s:s}",
		    "ok", 1, "message", msg, "previous_version", upgraded_from,
		    "version", PACKAGE_VERSION, "pid", (int)getpid(), "binary",
		    master_binary));
	} else
		client_reply(c, json_pack("{s:b, s:s}", "ok", 1, "message",
		    "reloaded"));
}

static void
client_request(struct client *c, const char *line, size_t len)
{
	struct request	 req;
	struct answer	*a;
	char		 err[256];
	const char	*svc;
	int		 n;

	if (request_parse(line, len, &req, err, sizeof err) != 0) {
		client_error(c, "%s", err);
		return;
	}
	svc = req.has_service ? req.service : NULL;
	if (svc != NULL && service_by_name(svc) == NULL) {
		client_error(c, "no service named \"%s\"", svc);
		json_decref(req.message);
		return;
	}
	switch (req.command) {
	case REQ_SEND:
		n = supervisor_send(svc, req.message, err, sizeof err);
		json_decref(req.message);
		if (n == -1) {
			client_error(c, "%s", err);
			return;
		}
		snprintf(err, sizeof err, "sent to %d worker%s", n,
		    n == 1 ? "" : "s");
		client_reply(c, json_pack("{s:b, s:i, s:s}", "ok", 1, "sent",
		    n, "message", err));
		return;
	case REQ_STOP:
		client_reply(c, json_pack("{s:b, s:s}", "ok", 1, "message",
		    "stopping"));
		(void)kill(getpid(), SIGTERM);
		return;
	case REQ_UPGRADE:
		if ((a = client_pending(c, "upgrade", NULL)) == NULL)
			return;
		/* The new master answers on this connection once it is up. */
		master_upgrade(bufferevent_getfd(c->bev), reload_done, a);
		return;
	case REQ_RELOAD:
		if ((a = client_pending(c, "reload", NULL)) != NULL)
			supervisor_reload(reload_done, a);
		return;
	case REQ_METRICS:
		if ((a = client_pending(c, "metrics", NULL)) != NULL) {
			a->json = req.json;
			metrics_collect(metrics_answer_cb, a);
		}
		return;
	case REQ_DRAIN:
	case REQ_UNDRAIN:
		drain_reply(c, req.command == REQ_DRAIN);
		return;
	case REQ_STATUS:
	case REQ_WORKERS:
	case REQ_CONNECTIONS:
		break;
	}
	if ((a = client_pending(c, request_name(req.command), svc)) == NULL)
		return;
	if (supervisor_count(NULL, answer_cb, a) != 0) {
		c->answer = NULL;
		free(a);
		client_error(c, "out of memory");
	}
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
	for (c = clients; c != NULL; c = c->next) {
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
	c->bev = bufferevent_socket_new(master_base, fd, BEV_OPT_CLOSE_ON_FREE);
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
	struct timeval	tv = { CONTROL_IDLE_S, 0 };

	/* A client that says nothing is dropped; it never blocks anyone. */
	bufferevent_set_timeouts(c->bev, &tv, NULL);
	bufferevent_setcb(c->bev, client_read_cb, NULL, client_event_cb, c);
	(void)bufferevent_enable(c->bev, EV_READ);
	c->next = clients;
	if (clients != NULL)
		clients->prev = c;
	clients = c;
	nclients++;
}

/*
 * The client that asked for the upgrade, from the master before us
 * (which ran from_version, or an unknown one if NULL).
 */
void
control_adopt(int fd, const char *from_version)
{
	struct client	*c;
	struct answer	*a;

	snprintf(upgraded_from, sizeof upgraded_from, "%s",
	    from_version != NULL ? from_version : "(unknown)");
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	if ((c = calloc(1, sizeof *c)) == NULL ||
	    (c->bev = bufferevent_socket_new(master_base, fd,
	    BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		close(fd);
		free(c);
		return;
	}
	client_link(c);
	if ((a = client_pending(c, "upgrade", NULL)) != NULL)
		supervisor_on_handover(reload_done, a);
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
	control_listener = evconnlistener_new_bind(master_base, accept_cb, NULL,
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

	while ((c = clients) != NULL)
		client_free(c);
	if (control_listener != NULL) {
		lev_rest_stop(&control_rest);
		evconnlistener_free(control_listener);
		control_listener = NULL;
		(void)unlink(control_path);
	}
}

int
control_clients(void)
{
	return nclients;
}
