/*
 * The spec's echo server in C: says hello to each client and echoes what
 * it sends, on TCP port 8124 (or the port given) and, with -U PATH, on a
 * unix socket too.
 *
 *	echo-server [-p PORT] [-U PATH]
 *	telnet localhost 8124
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netcluster.h"

static void
on_end(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	printf("client disconnected\n");
	fflush(stdout);
}

static void
on_data(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	/* c.pipe(c): everything read goes back. */
	(void)nc_socket_write(emitter, ev->data, ev->len, NULL, NULL);
}

static void
on_connection(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct nc_socket	*c = ev->socket;

	(void)emitter;
	(void)arg;
	printf("client connected\n");
	fflush(stdout);
	nc_socket_on(c, NC_EV_END, on_end, NULL);
	nc_socket_on(c, NC_EV_DATA, on_data, NULL);
	nc_socket_write_string(c, "hello\r\n", NULL, NULL, NULL);
}

static void
on_listening(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct nc_address	a;

	(void)ev;
	(void)arg;
	if (nc_server_address(emitter, &a) == 0 && a.port >= 0)
		printf("server bound %s port %d\n", a.address, a.port);
	else if (nc_server_address(emitter, &a) == 0)
		printf("server bound %s\n", a.address);
	fflush(stdout);
}

static void
on_error(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	fprintf(stderr, "echo-server: %s\n", ev->error->message);
	exit(1);
}

int
main(int argc, char **argv)
{
	struct nc_server	*tcp, *local = NULL;
	const char		*path = NULL;
	int			 ch, port = 8124, rc;

	signal(SIGPIPE, SIG_IGN);
	while ((ch = getopt(argc, argv, "p:U:")) != -1) {
		switch (ch) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'U':
			path = optarg;
			break;
		default:
			fprintf(stderr, "usage: echo-server [-p port] "
			    "[-U path]\n");
			return 2;
		}
	}

	tcp = nc_create_server(NULL, on_connection, NULL);
	if (tcp == NULL)
		return 1;
	nc_server_on(tcp, NC_EV_ERROR, on_error, NULL);
	if ((rc = nc_server_listen(tcp, port, NULL, 0, on_listening,
	    NULL)) != 0) {
		fprintf(stderr, "echo-server: %s\n", nc_strerror(rc));
		return 1;
	}
	if (path != NULL) {
		local = nc_create_server(NULL, on_connection, NULL);
		if (local == NULL)
			return 1;
		nc_server_on(local, NC_EV_ERROR, on_error, NULL);
		if ((rc = nc_server_listen_path(local, path, on_listening,
		    NULL)) != 0) {
			fprintf(stderr, "echo-server: %s\n", nc_strerror(rc));
			return 1;
		}
	}
	return nc_run(NULL) == 0 ? 0 : 1;
}
