/*
 * What the master answers for the whole daemon over the network, beside
 * the control socket: GET /metrics, /ready and /live on the metrics
 * listener (libevent's evhttp), and HAProxy's agent-check on the agent
 * listener. Both are the master's own sockets, bound from the config
 * like a service's (any listen form), kept across reloads when their
 * text stays, and handed over by an upgrade.
 *
 * Neither may cost the master anything lasting: the HTTP server holds
 * at most HTTP_MAX_CLIENTS connections (the listener rests while full,
 * so the rest wait in the kernel's backlog), drops a silent one after
 * HTTP_TIMEOUT_S, and reads no more than HTTP_MAX_HEADERS of a request;
 * the agent writes one line and closes, holding nothing.
 */

#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "master.h"

#define HTTP_MAX_CLIENTS	64
#define HTTP_TIMEOUT_S		5	/* to ask, or take, an answer */
#define HTTP_MAX_HEADERS	8192	/* bytes of a request's head */
#define HTTP_READ_MAX		65536	/* read ahead, per client */
#define ENDPOINT_BACKLOG	4096	/* a storm waits there */

struct endpoint {
	const char		*what;		/* "metrics", "agent" */
	char			*text;		/* as listened */
	int			 fd;
	char			*unix_path;	/* a file we made */
	struct evconnlistener	*lev;
	struct lev_rest		 rest;		/* out of fds */
	bool			 full;		/* HTTP: no room */
	char			 bound[160];	/* what it bound */
	/* A reload's replacement, until it commits. */
	char			*next_text;
	int			 next_fd;
	char			*next_unix_path;
	bool			 next_off;	/* a reload ends it */
};

/* A GET /metrics waiting for the workers' figures. */
struct http_pending {
	struct evhttp_request	*req;		/* NULL: it went */
	struct http_pending	*prev, *next;
};

bool			 master_draining;

static struct http_pending *pending;
static bool		 may_resume(void *);
static struct endpoint	 metrics_ep = { .what = "metrics", .fd = -1,
    .next_fd = -1, .rest = { .what = "metrics", .may_resume = may_resume,
    .arg = &metrics_ep } };
static struct endpoint	 agent_ep = { .what = "agent", .fd = -1,
    .next_fd = -1, .rest = { .what = "agent", .may_resume = may_resume,
    .arg = &agent_ep } };
static struct evhttp	*http;
static struct bufferevent *http_bevs[HTTP_MAX_CLIENTS];
static bool		 http_asked[HTTP_MAX_CLIENTS]; /* made a request */
static int		 http_nbevs;
static struct event	*http_sweep_ev;
static json_t		*inherited;	/* {what: {text, fd}} */
static unsigned long	 agent_told;	/* "drain"s said */
static bool		 quiescing;	/* for an upgrade */

/* Readiness and draining. */

/*
 * Ready while not draining or stopping and some worker is online (every
 * worker runs every service, so one online serves them all). why gets
 * the reason when not.
 */
bool
health_ready(char *why, size_t len)
{
	const char	*reason = NULL;

	if (master_stopping)
		reason = "stopping";
	else if (master_draining)
		reason = "draining";
	else if (!supervisor_any_online())
		reason = "no worker is online";
	if (why != NULL && len > 0)
		snprintf(why, len, "%s", reason != NULL ? reason : "ready");
	return reason == NULL;
}

void
health_drain(bool on)
{
	if (master_draining == on)
		return;
	master_draining = on;
	agent_told = 0;
	metrics_changed();
	if (on) {
		log_notice("draining: /ready answers 503 and the agent drain; "
		    "listeners stay open");
		notify_status("draining");
	} else {
		log_notice("no longer draining");
		notify_status("running");
	}
}

/* Binding, keeping across reloads, handing over. */

static void	endpoint_start(struct endpoint *);

static void
endpoint_close_fd(int fd, char *unix_path)
{
	if (fd != -1)
		close(fd);
	if (unix_path != NULL) {
		(void)unlink(unix_path);
		free(unix_path);
	}
}

static void
endpoint_stop(struct endpoint *ep)
{
	struct http_pending	*p;

	if (ep->lev != NULL)
		lev_rest_stop(&ep->rest);
	if (ep == &metrics_ep && http != NULL) {
		/* Its requests go with it: the answers will have nobody. */
		for (p = pending; p != NULL; p = p->next)
			p->req = NULL;
		/* It frees the listener it was bound to, closing the fd. */
		evhttp_free(http);
		http = NULL;
		ep->lev = NULL;
		ep->fd = -1;
	}
	if (ep->lev != NULL) {
		evconnlistener_free(ep->lev);	/* closes ep->fd */
		ep->lev = NULL;
		ep->fd = -1;
	}
	endpoint_close_fd(ep->fd, ep->unix_path);
	ep->fd = -1;
	ep->unix_path = NULL;
	free(ep->text);
	ep->text = NULL;
}

/* The fd an upgrade handed over for this text, or -1. */
static int
inherited_take(const char *what, const char *text)
{
	json_t	*e = json_object_get(inherited, what);
	int	 fd;

	if (e == NULL || text == NULL || strcmp(json_string_value(
	    json_object_get(e, "text")), text) != 0)
		return -1;
	fd = (int)json_integer_value(json_object_get(e, "fd"));
	(void)json_object_del(inherited, what);
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	return fd;
}

/*
 * For a reload (and startup): binds what the configuration asks for and
 * the running one does not have, keeping it aside until the commit.
 */
static int
endpoint_prepare(struct endpoint *ep, const struct nc_endpoint *conf,
    char *err, size_t errlen)
{
	char	why[256];
	int	fd;

	ep->next_off = !conf->on;
	if (!conf->on || (ep->text != NULL &&
	    strcmp(ep->text, conf->listen.text) == 0))
		return 0;
	if ((fd = inherited_take(ep->what, conf->listen.text)) == -1 &&
	    (fd = listener_open(&conf->listen, ENDPOINT_BACKLOG,
	    &ep->next_unix_path, why, sizeof why)) == -1) {
		snprintf(err, errlen, "%s listener %s: %s", ep->what,
		    conf->listen.text, why);
		return -1;
	}
	if ((ep->next_text = strdup(conf->listen.text)) == NULL) {
		endpoint_close_fd(fd, ep->next_unix_path);
		ep->next_unix_path = NULL;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	ep->next_fd = fd;
	return 0;
}

static void
endpoint_abort(struct endpoint *ep)
{
	endpoint_close_fd(ep->next_fd, ep->next_unix_path);
	free(ep->next_text);
	ep->next_fd = -1;
	ep->next_unix_path = NULL;
	ep->next_text = NULL;
}

static void
endpoint_commit(struct endpoint *ep)
{
	if (ep->next_text == NULL) {
		if (ep->next_off && ep->text != NULL) {
			log_notice("%s listener %s closed", ep->what, ep->text);
			endpoint_stop(ep);
		}
		return;
	}
	if (ep->text != NULL)
		endpoint_stop(ep);
	ep->text = ep->next_text;
	ep->fd = ep->next_fd;
	ep->unix_path = ep->next_unix_path;
	ep->next_text = NULL;
	ep->next_fd = -1;
	ep->next_unix_path = NULL;
	endpoint_start(ep);
}

int
health_prepare(const struct nc_config *cfg, char *err, size_t errlen)
{
	if (endpoint_prepare(&metrics_ep, &cfg->metrics, err, errlen) == -1)
		return -1;
	if (endpoint_prepare(&agent_ep, &cfg->agent, err, errlen) == -1) {
		endpoint_abort(&metrics_ep);
		return -1;
	}
	return 0;
}

void
health_abort(void)
{
	endpoint_abort(&metrics_ep);
	endpoint_abort(&agent_ep);
}

void
health_commit(void)
{
	const char	*key;
	json_t		*e;

	endpoint_commit(&metrics_ep);
	endpoint_commit(&agent_ep);
	/* What the upgrade handed over and the config no longer has. */
	json_object_foreach(inherited, key, e)
		close((int)json_integer_value(json_object_get(e, "fd")));
	json_decref(inherited);
	inherited = NULL;
}

/* An fd: or systemd: listener held by one of these (the check skips it). */
bool
health_held(const struct nc_listen_addr *a)
{
	const char	*key;
	json_t		*e;

	if ((metrics_ep.text != NULL && strcmp(metrics_ep.text, a->text) ==
	    0) || (agent_ep.text != NULL && strcmp(agent_ep.text, a->text) ==
	    0))
		return true;
	json_object_foreach(inherited, key, e)
		if (strcmp(json_string_value(json_object_get(e, "text")),
		    a->text) == 0)
			return true;
	return false;
}

static void
endpoint_export(json_t *state, struct endpoint *ep)
{
	if (ep->fd == -1 || ep->text == NULL)
		return;
	(void)fcntl(ep->fd, F_SETFD, 0);
	(void)json_object_set_new(state, ep->what, json_pack("{s:s, s:i}",
	    "text", ep->text, "fd", ep->fd));
}

/* For an upgrade: the sockets stay open across exec. */
json_t *
health_export(void)
{
	json_t	*state;

	if ((state = json_object()) == NULL)
		return NULL;
	endpoint_export(state, &metrics_ep);
	endpoint_export(state, &agent_ep);
	return state;
}

void
health_inherit(json_t *state)
{
	const char	*key;
	json_t		*e;

	json_object_foreach(state, key, e) {
		if (!json_is_string(json_object_get(e, "text")) ||
		    !json_is_integer(json_object_get(e, "fd")))
			fatalx("upgrade: bad %s listener in the state", key);
	}
	inherited = json_deep_copy(state);
}

/* Out of fds, a listener rests; it may accept again unless full. */
static bool
may_resume(void *arg)
{
	struct endpoint	*ep = arg;

	return !ep->full && !quiescing;
}

/* The agent: one line, then close; nothing is kept. */

static void
agent_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	char	line[128], why[64], scratch[1024];

	(void)lev;
	(void)sa;
	(void)salen;
	lev_rest_accepted(&((struct endpoint *)arg)->rest);
	if (health_ready(why, sizeof why)) {
		if (master_config->agent.weight >= 0)
			snprintf(line, sizeof line, "up ready %d%%\n",
			    master_config->agent.weight);
		else
			snprintf(line, sizeof line, "up ready\n");
	} else if (master_draining && !master_stopping) {
		snprintf(line, sizeof line, "drain #%s\n", why);
		agent_told++;
	}
	else
		snprintf(line, sizeof line, "maint #%s\n", why);
	(void)send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
	/* What the balancer sent (agent-send), so the close is no reset. */
	(void)recv(fd, scratch, sizeof scratch, MSG_DONTWAIT);
	close(fd);
}

/* HTTP. */

/*
 * evhttp tells nobody when it frees a connection: each one's bufferevent
 * is made here and held by one more reference, and a connection whose
 * callbacks evhttp cleared (it let it go) is let go here too.
 */
static void
http_sweep(void)
{
	void	*arg;
	int	 i;

	for (i = 0; i < http_nbevs;) {
		bufferevent_getcb(http_bevs[i], NULL, NULL, NULL, &arg);
		if (arg != NULL) {
			i++;
			continue;
		}
		(void)bufferevent_decref(http_bevs[i]);
		http_bevs[i] = http_bevs[--http_nbevs];
		http_asked[i] = http_asked[http_nbevs];
	}
	if (http_nbevs == 0 && http_sweep_ev != NULL)
		(void)event_del(http_sweep_ev);
	if (metrics_ep.full && http_nbevs < HTTP_MAX_CLIENTS &&
	    metrics_ep.lev != NULL) {
		metrics_ep.full = false;
		if (!lev_rest_resting(&metrics_ep.rest) && !quiescing)
			(void)evconnlistener_enable(metrics_ep.lev);
	}
}

static void
http_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	http_sweep();
}

/*
 * A connection that made a request tells when evhttp frees it: the sweep
 * runs then, so a full listener takes the next client at once rather
 * than at the next tick.
 */
static void
http_closed_cb(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	(void)arg;
	if (http_sweep_ev != NULL)
		event_active(http_sweep_ev, EV_TIMEOUT, 0);
}

static struct bufferevent *
http_bev_cb(struct event_base *base, void *arg)
{
	struct bufferevent	*bev;
	struct timeval		 tv = { 1, 0 };

	(void)arg;
	lev_rest_accepted(&metrics_ep.rest);
	http_sweep();
	if (http_nbevs >= HTTP_MAX_CLIENTS)
		return NULL;	/* cannot happen: the listener rests */
	if ((bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE)) ==
	    NULL)
		return NULL;
	bufferevent_setwatermark(bev, EV_READ, 0, HTTP_READ_MAX);
	bufferevent_incref(bev);
	if (http_nbevs++ == 0)
		(void)event_add(http_sweep_ev, &tv);
	http_bevs[http_nbevs - 1] = bev;
	http_asked[http_nbevs - 1] = false;
	if (http_nbevs == HTTP_MAX_CLIENTS && metrics_ep.lev != NULL) {
		metrics_ep.full = true;
		(void)evconnlistener_disable(metrics_ep.lev);
	}
	return bev;
}

/*
 * Whether the balancer heard the drain: the agent answered "drain" since
 * it began. -1 without an agent listener (nobody to ask).
 */
int
health_agent_told(void)
{
	if (agent_ep.lev == NULL)
		return -1;
	return agent_told > 0;
}

/*
 * An upgrade is about to exec: neither listener accepts any more; the
 * clients that come wait in the backlog for the new master.
 */
void
health_quiesce(void)
{
	quiescing = true;
	if (metrics_ep.lev != NULL)
		(void)evconnlistener_disable(metrics_ep.lev);
	if (agent_ep.lev != NULL)
		(void)evconnlistener_disable(agent_ep.lev);
}

/*
 * No HTTP answer is under way: no scrape waits for the workers, no
 * connection holds a request read in part or an answer not yet sent,
 * and none is new (its first request may be on its way; a silent one
 * holds the upgrade up to its quiesce bound). Idle keep-alive ones may
 * close: HTTP lets a client retry on a persistent connection.
 */
bool
health_idle(void)
{
	int	i, n;

	if (pending != NULL)
		return false;
	http_sweep();
	for (i = 0; i < http_nbevs; i++) {
		if (evbuffer_get_length(bufferevent_get_output(http_bevs[i])) >
		    0 || evbuffer_get_length(bufferevent_get_input(
		    http_bevs[i])) > 0)
			return false;
		/* Its request may be on its way: not cut by the exec. */
		if (!http_asked[i])
			return false;
		if (bufferevent_getfd(http_bevs[i]) != -1 &&
		    ioctl(bufferevent_getfd(http_bevs[i]), FIONREAD, &n) ==
		    0 && n > 0)
			return false;
	}
	return true;
}

/* Where the metrics or agent listener is ("metrics", "agent"), or NULL. */
const char *
health_bound(const char *what)
{
	struct endpoint	*ep;

	ep = strcmp(what, "metrics") == 0 ? &metrics_ep : &agent_ep;
	return ep->lev != NULL ? ep->bound : NULL;
}

int
health_clients(void)
{
	return http_nbevs;
}

/*
 * evhttp sends a HEAD's body as it would a GET's: the answer to a HEAD
 * gets the length of what a GET would have, and no body.
 */
static void
http_reply(struct evhttp_request *req, int code, const char *reason,
    struct evbuffer *out)
{
	char	len[32];

	if (out != NULL && evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		snprintf(len, sizeof len, "%zu", evbuffer_get_length(out));
		(void)evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Length", len);
		(void)evbuffer_drain(out, evbuffer_get_length(out));
	}
	evhttp_send_reply(req, code, reason, out);
}

static void
http_text(struct evhttp_request *req, int code, const char *reason,
    const char *body)
{
	struct evbuffer	*out = evbuffer_new();

	(void)evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; charset=utf-8");
	if (out != NULL)
		(void)evbuffer_add_printf(out, "%s\n", body);
	http_reply(req, code, reason, out);
	if (out != NULL)
		evbuffer_free(out);
}

static void
http_metrics_done(json_t *families, void *arg)
{
	struct http_pending	*p = arg;
	struct evhttp_request	*req = p->req;
	struct evbuffer		*out;

	if (p->prev != NULL)
		p->prev->next = p->next;
	else
		pending = p->next;
	if (p->next != NULL)
		p->next->prev = p->prev;
	free(p);
	if (req == NULL)
		return;

	if (families == NULL || (out = evbuffer_new()) == NULL) {
		http_text(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	metrics_text(families, out);
	(void)evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	http_reply(req, HTTP_OK, "OK", out);
	evbuffer_free(out);
}

static void
http_request_cb(struct evhttp_request *req, void *arg)
{
	struct evhttp_connection *evcon;
	struct bufferevent	*bev;
	struct http_pending	*p;
	const char		*path;
	char			 why[64];
	int			 i;

	(void)arg;
	evcon = evhttp_request_get_connection(req);
	evhttp_connection_set_closecb(evcon, http_closed_cb, NULL);
	bev = evhttp_connection_get_bufferevent(evcon);
	for (i = 0; i < http_nbevs; i++)
		if (http_bevs[i] == bev)
			http_asked[i] = true;
	if ((evhttp_request_get_command(req) & (EVHTTP_REQ_GET |
	    EVHTTP_REQ_HEAD)) == 0) {
		(void)evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Allow", "GET, HEAD");
		http_text(req, HTTP_BADMETHOD, "Method Not Allowed", "method "
		    "not allowed: GET or HEAD");
		return;
	}
	path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	if (path == NULL)
		path = "";
	if (strcmp(path, "/metrics") == 0) {
		if ((p = calloc(1, sizeof *p)) == NULL) {
			http_text(req, 500, "Internal Server Error", "out of "
			    "memory");
			return;
		}
		p->req = req;
		if ((p->next = pending) != NULL)
			pending->prev = p;
		pending = p;
		metrics_collect(http_metrics_done, p);
	}
	else if (strcmp(path, "/live") == 0)
		http_text(req, HTTP_OK, "OK", "live");
	else if (strcmp(path, "/ready") == 0) {
		if (health_ready(why, sizeof why))
			http_text(req, HTTP_OK, "OK", why);
		else
			http_text(req, 503, "Service Unavailable", why);
	} else
		http_text(req, HTTP_NOTFOUND, "Not Found", "not found: the "
		    "paths are /metrics, /ready and /live");
}

static void
endpoint_start(struct endpoint *ep)
{
	if (ep == &agent_ep)
		ep->lev = evconnlistener_new(master_base, agent_accept_cb, ep,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, ep->fd);
	else {
		if ((http = evhttp_new(master_base)) == NULL)
			fatalx("out of memory");
		/*
		 * evhttp answers a method it does not allow 501; the other
		 * methods it knows are let through to be answered 405.
		 */
		evhttp_set_allowed_methods(http, EVHTTP_REQ_GET |
		    EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
		    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
		    EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
		evhttp_set_timeout(http, HTTP_TIMEOUT_S);
		evhttp_set_max_headers_size(http, HTTP_MAX_HEADERS);
		evhttp_set_max_body_size(http, 0);
		evhttp_set_gencb(http, http_request_cb, NULL);
		evhttp_set_bevcb(http, http_bev_cb, NULL);
		/* Its callback is evhttp's; only the error one is ours. */
		ep->lev = evconnlistener_new(master_base, NULL, NULL,
		    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, ep->fd);
		if (ep->lev != NULL && evhttp_bind_listener(http, ep->lev) ==
		    NULL)
			fatalx("metrics: cannot serve HTTP");
		if (http_sweep_ev == NULL && (http_sweep_ev = event_new(
		    master_base, -1, EV_PERSIST, http_sweep_cb, NULL)) == NULL)
			fatalx("out of memory");
	}
	if (ep->lev == NULL)
		fatalx("%s: out of memory", ep->what);
	lev_rest_watch(&ep->rest, ep->lev);
	(void)listener_describe_fd(ep->fd, ep->text, ep->bound,
	    sizeof ep->bound);
	log_notice("%s listener on %s", ep->what, ep->bound);
}

/* At startup: binds (or takes over) both; 0, or -1 saying why. */
int
health_open(char *err, size_t errlen)
{
	if (health_prepare(master_config, err, errlen) == -1)
		return -1;
	health_commit();
	return 0;
}

void
health_close(void)
{
	struct http_pending	*p;
	int			 i;

	endpoint_stop(&metrics_ep);
	/* Rounds cut short by the exit never answer them. */
	while ((p = pending) != NULL) {
		pending = p->next;
		free(p);
	}
	endpoint_stop(&agent_ep);
	health_abort();
	for (i = 0; i < http_nbevs; i++)
		(void)bufferevent_decref(http_bevs[i]);
	http_nbevs = 0;
	if (http_sweep_ev != NULL) {
		event_free(http_sweep_ev);
		http_sweep_ev = NULL;
	}
	json_decref(inherited);
	inherited = NULL;
}
