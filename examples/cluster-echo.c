/*
 * The spec's echo server as a cluster worker: run alone, it listens on
 * port 8124 (or the one given) by itself; run by netclusterd (a service
 * with "handler": "program" and "sockets": "cluster"), the same code
 * listens through the master, in whatever mode the service says, and
 * also hears the messages of the other workers and of the operator.
 * Nothing in it changes between the two.
 *
 *	cluster-echo [-p PORT] [-h HOST]
 *
 * Each client is greeted with "hello" and gets back what it sends. A
 * client that sends a line "broadcast JSON" makes this worker send JSON
 * to every other worker of its service ("broadcast-all JSON": to those
 * of older generations that still drain, too); each prints what it gets.
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netcluster.h"

static const char *
who(void)
{
	static char	name[64];

	if (!nc_cluster_is_worker())
		return "echo";
	snprintf(name, sizeof name, "worker %d", nc_cluster_worker_id());
	return name;
}

/* A line "broadcast JSON": JSON goes to every other worker. */
static void
broadcast_line(const char *p, size_t len)
{
	char	json[1024];
	size_t	skip;
	int	rc, flags = 0;

	if (len > 10 && memcmp(p, "broadcast ", 10) == 0)
		skip = 10;
	else if (len > 14 && memcmp(p, "broadcast-all ", 14) == 0) {
		skip = 14;
		flags = NC_BROADCAST_DRAINING;
	} else
		return;
	if (len - skip >= sizeof json)
		return;
	memcpy(json, p + skip, len - skip);
	json[len - skip] = '\0';
	json[strcspn(json, "\r")] = '\0';
	if ((rc = nc_cluster_broadcast(json, flags)) != 0) {
		printf("%s: broadcast: %s\n", who(), nc_strerror(rc));
		fflush(stdout);
	}
}

static void
on_data(void *emitter, const struct nc_event_args *ev, void *arg)
{
	const char	*p = ev->data, *end = ev->data + ev->len, *nl;

	(void)arg;
	/* c.pipe(c): everything read goes back. */
	(void)nc_socket_write(emitter, ev->data, ev->len, NULL, NULL);
	/* Lines that arrive whole in one read; enough for an example. */
	for (; p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL;
	    p = nl + 1)
		broadcast_line(p, (size_t)(nl - p));
}

static void
on_connection(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct nc_socket	*c = ev->socket;

	(void)emitter;
	(void)arg;
	nc_socket_on(c, NC_EV_DATA, on_data, NULL);
	nc_socket_write_string(c, "hello\r\n", NULL, NULL, NULL);
}

static void
on_listening(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct nc_address	a;

	(void)ev;
	(void)arg;
	if (nc_server_address(emitter, &a) == 0)
		printf("%s: listening on %s port %d\n", who(), a.address,
		    a.port);
	fflush(stdout);
}

static void
on_error(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	fprintf(stderr, "%s: %s\n", who(), ev->error->message);
	exit(1);
}

/* process.on('message') */
static void
on_message(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	if (ev->from == 0)
		printf("%s: message from the operator: %s\n", who(), ev->data);
	else
		printf("%s: message from worker %d: %s\n", who(), ev->from,
		    ev->data);
	fflush(stdout);
}

/* The master asks us to stop: our server closes after this. */
static void
on_disconnect(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	printf("%s: disconnecting\n", who());
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	struct nc_server	*server;
	const char		*host = NULL;
	int			 ch, port = 8124, rc;

	signal(SIGPIPE, SIG_IGN);
	while ((ch = getopt(argc, argv, "p:h:")) != -1) {
		switch (ch) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'h':
			host = optarg;
			break;
		default:
			fprintf(stderr, "usage: cluster-echo [-p port] "
			    "[-h host]\n");
			return 2;
		}
	}
	if (nc_cluster_is_worker()) {
		printf("%s of service %s\n", who(), nc_cluster_service());
		nc_cluster_on(NULL, NC_EV_MESSAGE, on_message, NULL);
		nc_cluster_on(NULL, NC_EV_DISCONNECT, on_disconnect, NULL);
	}
	if ((server = nc_create_server(NULL, on_connection, NULL)) == NULL)
		return 1;
	nc_server_on(server, NC_EV_ERROR, on_error, NULL);
	if ((rc = nc_server_listen(server, port, host, 0, on_listening,
	    NULL)) != 0) {
		fprintf(stderr, "cluster-echo: %s\n", nc_strerror(rc));
		return 1;
	}
	return nc_run(NULL) == 0 ? 0 : 1;
}
