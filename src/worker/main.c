/*
 * netcluster-worker: started by netclusterd with its channel in
 * NETCLUSTER_CHANNEL_FD. It waits for `init` (the configuration the
 * master checked, as text in a sealed memfd, and the service to run),
 * runs that one service, reports `ready` once all its listeners are up,
 * answers `count`, and on `stop` (or SIGTERM) closes its servers, lets
 * open connections finish, and exits. Without its master it exits at
 * once.
 */

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "nc-cluster.h"
#include "nc-config.h"
#include "nc-module.h"
#include "netcluster.h"
#include "worker.h"

struct event_base	*worker_base;
int			 worker_id = -1;

static struct nc_config	*config;
static struct service	*services;
static size_t		 nservices;
static bool		 stopping;
static bool		 ready_sent;
static bool		 last_words;	/* the master takes "stats" at the end */

static long long	 worker_stats(json_t *, json_t *);

/* A fatal error: the master hears what was queued for it first. */
static void
worker_flush(void)
{
	nc_cluster_flush(100);
}

static void
worker_send(json_t *msg)
{
	if (msg == NULL)
		fatalx("out of memory");
	(void)nc_cluster_send(msg, NULL, 0);
	json_decref(msg);
}

/* A module's service: load it, check it, give it its options. */
static void
worker_module_init(struct service *svc)
{
	const struct nc_service	*c = svc->conf;
	char			 err[512], *opts;
	int			 rc;

	if (nc_module_load(c->module, true, &svc->module, NULL, err,
	    sizeof err) != 0)
		fatalx("service %s: %s", c->name, err);
	opts = c->options != NULL ? json_dumps(c->options, JSON_COMPACT) :
	    strdup("{}");
	if (opts == NULL)
		fatalx("out of memory");
	if ((rc = svc->module->init(opts, &svc->module_state)) != 0)
		fatalx("service %s: module %s: init failed: %s", c->name,
		    svc->module->name != NULL ? svc->module->name : c->module,
		    nc_strerror(rc));
	free(opts);
}

static void
worker_exit_if_done(void)
{
	json_t	*last;
	size_t	 i;

	for (i = 0; i < nservices; i++)
		if (services[i].closed < services[i].nservers)
			return;
	for (i = 0; i < nservices; i++)
		if (services[i].module != NULL &&
		    services[i].module->fini != NULL)
			services[i].module->fini(services[i].module_state);
	/* The counters as they end, for the master's totals. */
	if (last_words && (last = json_pack("{s:s}", "type", "stats")) !=
	    NULL) {
		(void)worker_stats(last, NULL);
		worker_send(last);
	}
	nc_cluster_flush(1000);
	exit(0);
}

static void
worker_server_closed(void *server, const struct nc_event_args *ev, void *arg)
{
	struct service	*svc = arg;

	(void)server;
	(void)ev;
	svc->closed++;
	if (stopping)
		worker_exit_if_done();
}

/* stop: close every server; exit once their connections have ended. */
static void
worker_stop(void)
{
	size_t	i, j;

	if (stopping)
		return;
	stopping = true;
	for (i = 0; i < nservices; i++)
		for (j = 0; j < services[i].nservers; j++)
			(void)nc_server_close(services[i].servers[j], NULL, NULL);
	worker_exit_if_done();
}

static void
worker_check_ready(void)
{
	size_t	i;

	if (ready_sent)
		return;
	for (i = 0; i < nservices; i++)
		if (services[i].listening < services[i].nservers)
			return;
	ready_sent = true;
	worker_send(json_pack("{s:s, s:i}", "type", "ready", "pid",
	    (int)getpid()));
}

static void
worker_listening(void *server, const struct nc_event_args *ev, void *arg)
{
	struct service		*svc = arg;
	struct nc_address	 a;

	(void)ev;
	svc->listening++;
	if (nc_server_address(server, &a) == 0)
		worker_send(json_pack("{s:s, s:s, s:s, s:i}", "type",
		    "listening", "service", svc->conf->name, "address",
		    a.address, "port", a.port));
	worker_check_ready();
}

static void
worker_listen_error(void *server, const struct nc_event_args *ev, void *arg)
{
	struct service	*svc = arg;

	(void)server;
	/* The master decides: it logs this and replaces the worker. */
	worker_send(json_pack("{s:s, s:s, s:s, s:i}", "type", "fatal",
	    "service", svc->conf->name, "message", ev->error->message,
	    "code", ev->error->code));
	fatalx("service %s: %s", svc->conf->name, ev->error->message);
}

static void
worker_connection(void *server, const struct nc_event_args *ev, void *arg)
{
	struct service	*svc = arg;

	(void)server;
	svc->accepted++;
	if (svc->conf->handler == NC_HANDLER_PROXY)
		proxy_connection(svc, ev->socket);
	else if (svc->conf->handler == NC_HANDLER_MODULE)
		svc->module->connection(ev->socket, svc->module_state);
	else
		echo_connection(svc, ev->socket);
}

/* Listens on one address, through the master, whatever the mode. */
static int
worker_listen(struct service *svc, struct nc_server *srv,
    const struct nc_listen_addr *a)
{
	return nc_cluster_server_listen(srv, a->text, svc->conf->backlog,
	    svc->conf->name, (int)(a - svc->conf->listen), worker_listening,
	    svc);
}

static void
worker_start(const char *name)
{
	struct nc_server_options	 so;
	const struct nc_service		*c = NULL;
	struct service			*svc;
	struct nc_server		*srv;
	size_t				 i, j;
	int				 rc;

	for (i = 0; i < config->nservices; i++)
		if (strcmp(config->services[i].name, name) == 0)
			c = &config->services[i];
	if (c == NULL)
		fatalx("init: no service \"%.64s\" in the configuration",
		    name);
	nservices = 1;
	if ((services = calloc(nservices, sizeof *services)) == NULL)
		fatalx("out of memory");
	svc = &services[0];
	svc->conf = c;
	if (c->handler == NC_HANDLER_MODULE)
		worker_module_init(svc);
	if (c->handler == NC_HANDLER_PROXY && proxy_init(svc) != 0)
		fatalx("service %s: bad upstreams", c->name);
	svc->servers = calloc(c->nlisten, sizeof *svc->servers);
	if (svc->servers == NULL)
		fatalx("out of memory");
	memset(&so, 0, sizeof so);
	so.base = worker_base;
	so.allow_half_open = c->allow_half_open;
	so.pause_on_connect = c->pause_on_connect;
	so.proxy_protocol = c->proxy_protocol;
	for (j = 0; j < c->nlisten; j++) {
		srv = nc_create_server(&so, worker_connection, svc);
		if (srv == NULL)
			fatalx("out of memory");
		svc->servers[svc->nservers++] = srv;
		(void)nc_server_set_max_connections(srv, c->max_connections);
		(void)nc_server_on(srv, NC_EV_ERROR, worker_listen_error, svc);
		(void)nc_server_on(srv, NC_EV_CLOSE, worker_server_closed, svc);
		if ((rc = worker_listen(svc, srv, &c->listen[j])) != 0)
			fatalx("service %s: listen %s: %s", c->name,
			    c->listen[j].text, nc_strerror(rc));
	}
	worker_check_ready();
}

/* The text of the memfd the master sent: what it checked, whole. */
static char *
worker_config_text(int fd, size_t *lenp)
{
	struct stat	 st;
	char		*text;
	size_t		 got = 0;
	ssize_t		 n;

	if (fstat(fd, &st) == -1 || st.st_size < 0 ||
	    st.st_size > NC_CONFIG_MAX_SIZE)
		fatalx("init: the configuration cannot be read");
	if ((text = malloc((size_t)st.st_size + 1)) == NULL)
		fatalx("out of memory");
	while (got < (size_t)st.st_size) {
		n = pread(fd, text + got, (size_t)st.st_size - got,
		    (off_t)got);
		if (n <= 0)
			fatalx("init: the configuration cannot be read");
		got += (size_t)n;
	}
	text[got] = '\0';
	*lenp = got;
	return text;
}

static void
worker_init(json_t *msg, int *fds, size_t nfds)
{
	const char	*name;
	char		*text, *errors;
	size_t		 len;

	if (config != NULL)
		fatalx("init received twice");
	if (nfds != 1)
		fatalx("init came with %zu fds, not the configuration's", nfds);
	worker_id = (int)json_integer_value(json_object_get(msg, "id"));
	nc__log_set_ident("netcluster-worker %d [pid %d]", worker_id,
	    (int)getpid());
	last_words = json_is_true(json_object_get(msg, "last_stats"));
	if ((name = json_string_value(json_object_get(msg, "service"))) ==
	    NULL)
		fatalx("init without a service");
	text = worker_config_text(fds[0], &len);
	close(fds[0]);
	if (nc_config_parse("(from the master)", text, len, &config,
	    &errors) != 0)
		fatalx("config from the master refused: %s", errors);
	free(text);
	nc_set_log_level(json_is_integer(json_object_get(msg, "log_level")) ?
	    (int)json_integer_value(json_object_get(msg, "log_level")) :
	    config->log_level);
	worker_start(name);
}

/*
 * One service's cumulative counters for count.reply's "stats": only
 * integers and objects of them, since the master sums the trees of all
 * workers without knowing their keys.
 */
static json_t *
worker_service_stats(const struct service *svc)
{
	unsigned long long	 perr = 0;
	json_t			*st, *up;
	size_t			 i;

	for (i = 0; i < svc->nservers; i++)
		perr += nc_server_proxy_errors(svc->servers[i]);
	st = json_pack("{s:I, s:I}", "accepted", (json_int_t)svc->accepted,
	    "proxy_header_errors", (json_int_t)perr);
	if (st == NULL || svc->conf->handler != NC_HANDLER_PROXY)
		return st;
	if ((up = json_object()) == NULL ||
	    json_object_set_new(st, "upstreams", up) != 0 ||
	    proxy_stats(svc, up) != 0) {
		json_decref(st);
		return NULL;
	}
	return st;
}

/*
 * The counters of every service ("stats") and the proxies' upstreams
 * down now, into reply; what count.reply and the last words carry. The
 * connections open, by service, go in per if it is not NULL.
 */
static long long
worker_stats(json_t *reply, json_t *per)
{
	const struct service	*svc;
	json_t			*stats, *down;
	long long		 accepted = 0;
	size_t			 i, j;
	int			 n;

	stats = json_object();
	down = json_object();
	if (stats == NULL || down == NULL)
		fatalx("out of memory");
	for (i = 0; i < nservices; i++) {
		svc = &services[i];
		n = 0;
		for (j = 0; j < svc->nservers; j++)
			n += nc_server_connections(svc->servers[j]);
		accepted += (long long)svc->accepted;
		if ((per != NULL && json_object_set_new(per, svc->conf->name,
		    json_integer(n)) != 0) ||
		    json_object_set_new(stats, svc->conf->name,
		    worker_service_stats(svc)) != 0)
			fatalx("out of memory");
		if (svc->conf->handler == NC_HANDLER_PROXY &&
		    json_object_set_new(down, svc->conf->name,
		    proxy_down(svc)) != 0)
			fatalx("out of memory");
	}
	if (json_object_set_new(reply, "stats", stats) != 0 ||
	    json_object_set_new(reply, "upstreams_down", down) != 0)
		fatalx("out of memory");
	return accepted;
}

static void
worker_count(json_t *msg)
{
	json_t		*per, *reply;
	long long	 accepted;

	if ((per = json_object()) == NULL || (reply = json_pack("{s:s, s:I, "
	    "s:i, s:o}", "type", "count.reply", "ack", json_integer_value(
	    json_object_get(msg, "seq")), "count", nc_cluster_connections(),
	    "services", per)) == NULL)
		fatalx("out of memory");
	accepted = worker_stats(reply, per);
	(void)json_object_set_new(reply, "accepted", json_integer(accepted));
	worker_send(reply);
}

static void
worker_msg_cb(json_t *msg, int *fds, size_t nfds, void *arg)
{
	const char	*type = json_string_value(json_object_get(msg, "type"));
	size_t		 i;

	(void)arg;
	if (strcmp(type, "init") == 0) {
		worker_init(msg, fds, nfds);
		json_decref(msg);
		return;
	}
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	if (nfds > 0)
		fatalx("message %s came with %zu fds", type, nfds);
	if (strcmp(type, "count") == 0)
		worker_count(msg);
	else if (strcmp(type, "stop") == 0)
		worker_stop();
	else
		fatalx("unknown message type \"%.64s\"", type);
	json_decref(msg);
}

static void
worker_lost_cb(const char *reason, void *arg)
{
	(void)arg;
	log_info("master gone (%s); exiting", reason);
	exit(0);
}

static void
worker_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	worker_stop();
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: netcluster-worker\n"
	    "Runs the services netclusterd sends it; started by netclusterd\n"
	    "with its channel in NETCLUSTER_CHANNEL_FD, never by hand.\n");
}

int
main(int argc, char **argv)
{
	struct event	*term, *intr;

	if (argc > 1) {
		if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
			usage(stdout);
			return 0;
		}
		usage(stderr);
		return 2;
	}
	/*
	 * No orphans: the kernel tells us when the master dies. Should it
	 * have died before prctl(), the channel's end tells us (its other
	 * end closed): a parent of pid 1 is no sign, for the master is PID 1
	 * in a container.
	 */
	(void)prctl(PR_SET_PDEATHSIG, SIGTERM);
	signal(SIGPIPE, SIG_IGN);
	nc__log_open("netcluster-worker -1", true);
	nc__log_set_ident("netcluster-worker -1 [pid %d]", (int)getpid());
	nc__log_at_fatal(worker_flush);

	if (!nc_cluster_is_worker()) {
		fprintf(stderr, "netcluster-worker: NETCLUSTER_CHANNEL_FD is "
		    "not set to a channel; netclusterd starts workers\n");
		return 2;
	}
	if ((worker_base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	if (nc_cluster_attach(worker_base, worker_msg_cb, worker_lost_cb,
	    NULL) != 0)
		fatalx("cannot attach to the channel");
	term = evsignal_new(worker_base, SIGTERM, worker_signal_cb, NULL);
	intr = evsignal_new(worker_base, SIGINT, worker_signal_cb, NULL);
	if (term == NULL || intr == NULL || evsignal_add(term, NULL) == -1 ||
	    evsignal_add(intr, NULL) == -1)
		fatalx("cannot watch signals");
	worker_send(json_pack("{s:s, s:i}", "type", "hello", "pid",
	    (int)getpid()));
	event_base_dispatch(worker_base);
	return 0;
}
