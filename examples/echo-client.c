/*
 * The spec's echo client in C: connects to the echo server, writes
 * "world!\r\n", prints what comes back, and ends after the echo.
 *
 *	echo-client [-p PORT] [-h HOST] [-U PATH]
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netcluster.h"

static size_t	received;

static void
on_connect(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	printf("connected to server!\n");
	nc_socket_write_string(emitter, "world!\r\n", NULL, NULL, NULL);
}

static void
on_data(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	fwrite(ev->data, 1, ev->len, stdout);
	fflush(stdout);
	received += ev->len;
	/* "hello\r\n" then the echo of "world!\r\n": done. */
	if (received >= strlen("hello\r\n") + strlen("world!\r\n"))
		nc_socket_end(emitter, NULL, 0);
}

static void
on_end(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	printf("disconnected from server\n");
}

static void
on_error(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)arg;
	fprintf(stderr, "echo-client: %s\n", ev->error->message);
	exit(1);
}

int
main(int argc, char **argv)
{
	struct nc_socket	*client;
	const char		*host = NULL, *path = NULL;
	int			 ch, port = 8124, rc;

	signal(SIGPIPE, SIG_IGN);
	while ((ch = getopt(argc, argv, "h:p:U:")) != -1) {
		switch (ch) {
		case 'h':
			host = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 'U':
			path = optarg;
			break;
		default:
			fprintf(stderr, "usage: echo-client [-h host] "
			    "[-p port] [-U path]\n");
			return 2;
		}
	}
	if (path != NULL)
		rc = nc_connect_path(NULL, path, on_connect, NULL, &client);
	else
		rc = nc_connect_port(NULL, port, host, on_connect, NULL,
		    &client);
	if (rc != 0) {
		fprintf(stderr, "echo-client: %s\n", nc_strerror(rc));
		return 1;
	}
	nc_socket_on(client, NC_EV_DATA, on_data, NULL);
	nc_socket_on(client, NC_EV_END, on_end, NULL);
	nc_socket_on(client, NC_EV_ERROR, on_error, NULL);
	return nc_run(NULL) == 0 ? 0 : 1;
}
