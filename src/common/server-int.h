/*
 * The layout of struct nc_server, shared by server.c (its life, its
 * listening, its properties) and server-accept.c (taking connections).
 */

#ifndef SERVER_INT_H
#define SERVER_INT_H

#include <stdbool.h>

#include <event2/event.h>

#include "nc-accept.h"
#include "nc-int.h"

struct nc_server {
	struct nc__handle	 h;		/* first: nc_run() accounting */
	struct nc__emitter	 em;
	struct event_base	*base;
	int			 refs;
	int			 fd;
	struct event		*aev;		/* accept */
	int			 xfd;		/* see nc__server_start() */
	struct event		*retry;		/* accept again after EMFILE */
	struct nc_accept_pause	 pause;
	bool			 listening;	/* handle open */
	bool			 own_socket;	/* bound here: its backlog dies
						   with it */
	bool			 allow_half_open;
	bool			 pause_on_connect;
	bool			 using_workers;
	int			 max_connections;
	int			 connections;
	char			*unix_path;	/* unlinked on close */
	unsigned int		 generation;	/* bumped by close() */
	struct nc__error	 listen_error;
	bool			 proxy_protocol;	/* PROXY header first */
	int			 proxy_timeout_ms;
	unsigned long long	 proxy_errors;
	bool			 cluster_pending; /* asked the master */
	unsigned int		 cluster_generation;
	bool			 cluster_rr;	/* the master accepts for us */
	struct nc_address	 cluster_address;
};

/* server.c */
void	nc__server_emit(struct nc_server *, const struct nc_event_args *);
void	nc__server_close_handle(struct nc_server *);
void	nc__server_emit_close_if_drained(struct nc_server *);

/* server-accept.c */
int	nc__server_start(struct nc_server *, int fd, bool shared);

#endif /* SERVER_INT_H */
