/*
 * The echo handler: the spec's echo server. Says "hello\r\n", then sends
 * back every byte the client sends, with the service's socket options.
 */

#include <stdlib.h>

#include "worker.h"

static void
echo_drain(void *sock, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	nc_socket_resume(sock);
}

/*
 * Backpressure: stop reading while the client does not read. The `drain`
 * listener is there only while paused, so an idle connection holds one
 * listener fewer.
 */
static void
echo_data(void *sock, const struct nc_event_args *ev, void *arg)
{
	(void)arg;
	if (nc_socket_write(sock, ev->data, ev->len, NULL, NULL) != 0)
		return;
	if (nc_socket_once(sock, NC_EV_DRAIN, echo_drain, NULL) == 0)
		nc_socket_pause(sock);
}

static void
echo_end(void *sock, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	nc_socket_end(sock, NULL, 0);
}

/* Still idle another idle_timeout_ms after our FIN: the client goes. */
static void
echo_idle_again(void *sock, const struct nc_event_args *ev, void *arg)
{
	(void)ev;
	(void)arg;
	nc_socket_destroy(sock);
}

/* Idle: a FIN first, so what was written still arrives. */
static void
echo_idle(void *sock, const struct nc_event_args *ev, void *arg)
{
	const struct nc_service	*c = arg;

	(void)ev;
	nc_socket_end(sock, NULL, 0);
	(void)nc_socket_set_timeout(sock, c->idle_timeout_ms, echo_idle_again,
	    NULL);
}

static void
echo_error(void *sock, const struct nc_event_args *ev, void *arg)
{
	(void)sock;
	(void)arg;
	/* A client's reset is routine; the socket closes itself. */
	(void)ev;
}

void
echo_connection(struct service *svc, struct nc_socket *sock)
{
	const struct nc_service	*c = svc->conf;

	(void)nc_socket_on(sock, NC_EV_DATA, echo_data, NULL);
	(void)nc_socket_on(sock, NC_EV_ERROR, echo_error, NULL);
	if (c->allow_half_open)
		(void)nc_socket_on(sock, NC_EV_END, echo_end, NULL);
	if (c->idle_timeout_ms > 0)
		(void)nc_socket_set_timeout(sock, c->idle_timeout_ms,
		    echo_idle, (void *)c);
	(void)nc_socket_set_no_delay(sock, c->no_delay);
	if (c->keep_alive)
		(void)nc_socket_set_keep_alive(sock, true,
		    (unsigned int)c->keep_alive_initial_delay_ms);
	(void)nc_socket_write_string(sock, "hello\r\n", NULL, NULL, NULL);
}
