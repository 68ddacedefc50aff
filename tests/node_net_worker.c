/*
 * The worker side of two of Node's net tests that need a cluster, run
 * by netclusterd as a program service ("sockets": "cluster") from
 * tests/e2e/node_net.py:
 *
 *	node_net_worker exclusive
 *	    test-net-listen-exclusive-random-ports.js: listens through the
 *	    master on the service's listener (127.0.0.1:0), and with
 *	    exclusive on a port 0 of its own; prints "exclusive port N" and
 *	    serves until stopped.
 *	node_net_worker close-before-ipc
 *	    test-net-server-close-before-ipc-response.js: listens through
 *	    the master and closes before the answer; prints how many
 *	    `listening` events came once nothing keeps the loop going, and
 *	    exits 0.
 */

#include <stdio.h>
#include <string.h>

#include "netcluster.h"

static int		 listening;
static struct nc_server	*own;

/* `stop`: the library closes what it listens on through the master;
 * the server bound here is ours to close. */
static void
disconnect_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	(void)nc_server_close(own, NULL, NULL);
}

static void
listening_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct nc_address	a;

	(void)ev;
	listening++;
	if (arg != NULL && nc_server_address(emitter, &a) == 0) {
		printf("exclusive port %d\n", a.port);
		fflush(stdout);
	}
}

int
main(int argc, char **argv)
{
	struct nc_listen_options	 o;
	struct nc_server		*shared;

	if (argc != 2)
		return 2;
	shared = nc_create_server(NULL, NULL, NULL);
	if (shared == NULL ||
	    nc_server_listen(shared, 0, "127.0.0.1", 0, listening_cb,
	    NULL) != 0)
		return 1;
	if (strcmp(argv[1], "close-before-ipc") == 0) {
		if (nc_server_close(shared, NULL, NULL) != 0 ||
		    nc_run(NULL) != 0)
			return 1;
		printf("listening %d, loop ended\n", listening);
		nc_server_release(shared);
		return 0;
	}
	if (strcmp(argv[1], "exclusive") != 0)
		return 2;
	memset(&o, 0, sizeof o);
	o.host = "127.0.0.1";
	o.exclusive = true;
	own = nc_create_server(NULL, NULL, NULL);
	if (own == NULL ||
	    nc_server_listen_options(own, &o, listening_cb, own) != 0 ||
	    nc_cluster_on(NULL, NC_EV_DISCONNECT, disconnect_cb, NULL) != 0)
		return 1;
	return nc_run(NULL) == 0 ? 0 : 1;
}
