/*
 * GET /metrics, /ready and /live on the metrics listener (libevent's
 * evhttp). It may cost the master nothing lasting: it holds at most
 * HTTP_MAX_CLIENTS connections (the listener rests while full, so the
 * rest wait in the kernel's backlog), drops a silent one after
 * HTTP_TIMEOUT_S, and reads no more than HTTP_MAX_HEADERS of a request.
 * Its socket is bound and handed over by endpoint.c.
 */

#include <sys/types.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

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

/* A GET /metrics waiting for the workers' figures. */
struct http_pending {
	struct evhttp_request	*req;		/* NULL: it went */
	struct http_pending	*prev, *next;
};

static bool		 may_resume(void *);
static struct evhttp	*http;
static struct evconnlistener *http_lev;	/* evhttp's, bound to our fd */
static struct lev_rest	 http_rest = { .what = "metrics",
    .may_resume = may_resume };
static bool		 full;		/* no room for a client */
static bool		 quiescing;	/* for an upgrade */
static struct http_pending *pending;
static struct bufferevent *http_bevs[HTTP_MAX_CLIENTS];
static bool		 http_asked[HTTP_MAX_CLIENTS]; /* made a request */
static int		 http_nbevs;
static struct event	*http_sweep_ev;

/* Out of fds, the listener rests; it may accept again unless full. */
static bool
may_resume(void *arg)
{
	(void)arg;
	return !full && !quiescing;
}

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
	stats_set("clients", "metrics", http_nbevs);
	if (full && http_nbevs < HTTP_MAX_CLIENTS && http_lev != NULL) {
		full = false;
		if (!lev_rest_resting(&http_rest) && !quiescing)
			(void)evconnlistener_enable(http_lev);
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
	lev_rest_accepted(&http_rest);
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
	stats_set("clients", "metrics", http_nbevs);
	if (http_nbevs == HTTP_MAX_CLIENTS && http_lev != NULL) {
		full = true;
		(void)evconnlistener_disable(http_lev);
	}
	return bev;
}



/*
 * No HTTP answer is under way: no scrape waits for the workers, no
 * connection holds a request read in part or an answer not yet sent,
 * and none is new (its first request may be on its way; a silent one
 * holds the upgrade up to its quiesce bound). Idle keep-alive ones may
 * close: HTTP lets a client retry on a persistent connection.
 */
bool
http_idle(void)
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

/* HTTP on fd (a listening socket, now ours). */
void
http_start(int fd)
{
	if ((http = evhttp_new(master.base)) == NULL)
		fatalx("out of memory");
	/*
	 * evhttp answers a method it does not allow 501; the other
	 * methods it knows are let through to be answered 405.
	 */
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
	    EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
	    EVHTTP_REQ_PATCH);
	evhttp_set_timeout(http, HTTP_TIMEOUT_S);
	evhttp_set_max_headers_size(http, HTTP_MAX_HEADERS);
	evhttp_set_max_body_size(http, 0);
	evhttp_set_gencb(http, http_request_cb, NULL);
	evhttp_set_bevcb(http, http_bev_cb, NULL);
	/*
	 * Its callback is evhttp's; only the error one is ours. The socket
	 * listens already (backlog 0: libevent's -1 would listen again, 128
	 * deep).
	 */
	http_lev = evconnlistener_new(master.base, NULL, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (http_lev == NULL || evhttp_bind_listener(http, http_lev) == NULL)
		fatalx("metrics: cannot serve HTTP");
	if (http_sweep_ev == NULL && (http_sweep_ev = event_new(master.base,
	    -1, EV_PERSIST, http_sweep_cb, NULL)) == NULL)
		fatalx("out of memory");
	lev_rest_watch(&http_rest, http_lev);
	if (quiescing)
		(void)evconnlistener_disable(http_lev);
}

/*
 * The listener closes, and its connections with it: the answers of the
 * scrapes waiting will have nobody to go to.
 */
void
http_stop(void)
{
	struct http_pending	*p;
	int			 i;

	if (http != NULL) {
		lev_rest_stop(&http_rest);
		for (p = pending; p != NULL; p = p->next)
			p->req = NULL;
		/* It frees the listener it was bound to, closing the fd. */
		evhttp_free(http);
		http = NULL;
		http_lev = NULL;
	}
	for (i = 0; i < http_nbevs; i++)
		(void)bufferevent_decref(http_bevs[i]);
	http_nbevs = 0;
	stats_set("clients", "metrics", 0);
	if (http_sweep_ev != NULL) {
		event_free(http_sweep_ev);
		http_sweep_ev = NULL;
	}
}

/*
 * An upgrade is about to exec: the listener accepts no more; the clients
 * that come wait in the backlog for the new master.
 */
void
http_quiesce(void)
{
	quiescing = true;
	if (http_lev != NULL)
		(void)evconnlistener_disable(http_lev);
}

/* At exit: rounds cut short never answer their scrapes. */
void
http_close(void)
{
	struct http_pending	*p;

	http_stop();
	while ((p = pending) != NULL) {
		pending = p->next;
		free(p);
	}
}
