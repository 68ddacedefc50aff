/*
 * An example handler module: a line service that answers each line with
 * the line in upper case, after an optional greeting from its options:
 *
 *	{ "name": "upper", "handler": "module",
 *	  "module": "/usr/local/lib/netcluster/uppercase.so",
 *	  "listen": ["7000"], "options": { "greeting": "ready" } }
 *
 * Written only against netcluster.h and netcluster-handler.h.
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "netcluster-handler.h"

#define LINE_MAX_BYTES	4096

struct upper {
	char	greeting[256];
};

struct line {
	char	buf[LINE_MAX_BYTES];
	size_t	len;
};

/* The one option, "greeting": a string; a tiny scan of the JSON text. */
static int
upper_init(const char *options, void **state)
{
	struct upper	*u;
	const char	*p, *q;

	if ((u = calloc(1, sizeof *u)) == NULL)
		return NC_ENOMEM;
	if ((p = strstr(options, "\"greeting\"")) != NULL &&
	    (p = strchr(p + 10, '"')) != NULL &&
	    (q = strchr(p + 1, '"')) != NULL &&
	    (size_t)(q - p - 1) < sizeof u->greeting)
		memcpy(u->greeting, p + 1, (size_t)(q - p - 1));
	*state = u;
	return 0;
}

static void
upper_data(void *sock, const struct nc_event_args *ev, void *arg)
{
	struct line	*l = arg;
	size_t		 i;

	for (i = 0; i < ev->len; i++) {
		char	c = ev->data[i];

		if (c == '\n') {
			l->buf[l->len++] = '\n';
			(void)nc_socket_write(sock, l->buf, l->len, NULL, NULL);
			l->len = 0;
			continue;
		}
		if (l->len >= LINE_MAX_BYTES - 1) {
			/* A line too long: the client is told and dropped. */
			(void)nc_socket_end_string(sock, "ERR line too long\n",
			    NULL);
			return;
		}
		l->buf[l->len++] = (char)toupper((unsigned char)c);
	}
}

static void
upper_close(void *sock, const struct nc_event_args *ev, void *arg)
{
	(void)sock;
	(void)ev;
	free(arg);
}

static void
upper_error(void *sock, const struct nc_event_args *ev, void *arg)
{
	(void)sock;
	(void)ev;
	(void)arg;
}

static void
upper_connection(struct nc_socket *sock, void *state)
{
	struct upper	*u = state;
	struct line	*l;

	if ((l = calloc(1, sizeof *l)) == NULL) {
		nc_socket_destroy(sock);
		return;
	}
	(void)nc_socket_on(sock, NC_EV_DATA, upper_data, l);
	(void)nc_socket_on(sock, NC_EV_ERROR, upper_error, l);
	(void)nc_socket_on(sock, NC_EV_CLOSE, upper_close, l);
	if (u->greeting[0] != '\0') {
		(void)nc_socket_write_string(sock, u->greeting, NULL, NULL,
		    NULL);
		(void)nc_socket_write_string(sock, "\n", NULL, NULL, NULL);
	}
}

static void
upper_fini(void *state)
{
	free(state);
}

NC_HANDLER_EXPORT const struct nc_handler nc_handler = {
	.api_version = NC_HANDLER_API_VERSION,
	.name = "uppercase",
	.init = upper_init,
	.connection = upper_connection,
	.fini = upper_fini,
};
