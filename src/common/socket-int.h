/*
 * The layout of struct nc_socket, shared by socket.c (streams) and
 * connect.c (resolving and connecting), and the hooks between them and
 * server.c.
 */

#ifndef SOCKET_INT_H
#define SOCKET_INT_H

#include <netinet/in.h>

#include <time.h>

#include "nc-int.h"

enum socket_state {
	S_IDLE,
	S_LOOKUP,
	S_CONNECTING,
	S_OPEN,
	S_DESTROYED
};

/* A write with a callback: done once bytes_flushed reaches end. */
struct socket_write {
	uint64_t		 end;
	nc_write_cb		 cb;
	void			*arg;
	struct nc_socket	*socket;	/* refused writes only */
	int			 status;	/* refused writes only */
	struct socket_write	*next;
};

struct nc_socket {
	struct nc__handle	 h;		/* first: nc_run() accounting */
	struct nc__emitter	 em;
	struct event_base	*base;
	int			 refs;
	int			 fd;
	enum socket_state	 state;
	struct nc_server	*server;	/* accepted by; NULL once
						 * destroyed */

	bool			 allow_half_open;
	bool			 readable;	/* may read (fd option) */
	bool			 writable;	/* may write: not ended */
	bool			 paused;
	bool			 eof;		/* FIN received (`end`) */
	bool			 peer_ended;	/* FIN received, not half-open:
						 * writes after end() fail with
						 * EPIPE */
	bool			 ended;		/* end() called */
	bool			 finished;	/* our FIN sent (`finish`) */
	bool			 need_drain;
	bool			 after_write_queued;

	struct event		*rev;
	struct event		*wev;
	struct event		*tev;		/* idle timeout */
	struct event		*lookup_ev;	/* while resolving */

	struct evbuffer		*out;
	struct socket_write	*writes, *writes_tail;
	uint64_t		 bytes_queued;
	uint64_t		 bytes_flushed;
	uint64_t		 bytes_read;

	int64_t			 timeout_ms;
	struct timespec		 last_activity;

	bool			 has_encoding;
	struct nc__decoder	 decoder;
	struct evbuffer		*decoded;

	bool			 has_no_delay, no_delay;
	bool			 has_keep_alive, keep_alive;
	unsigned int		 keep_alive_delay;

	bool			 has_remote, has_local;
	char			 remote_address[NC_ADDRSTRLEN];
	char			 remote_family[8];
	int			 remote_port;
	char			 local_address[INET6_ADDRSTRLEN];
	int			 local_port;

	/* connect(): what was asked, and what the error should name. */
	char			*host;
	char			*path;
	char			*local_address_opt;
	int			 port;
	int			 local_port_opt;
	int			 family;
	nc_lookup_fn		 lookup;
	void			*lookup_arg;
	char			*error_address;	/* what a connect error names */
	int			 error_port;

	struct nc__error	*err;		/* NULL until it fails */
	int			 write_error;	/* queued writes fail with */
};

/* socket.c */
struct nc_socket *nc__socket_accepted(struct event_base *, int fd,
		    bool allow_half_open, bool paused);
void		nc__socket_set_state(struct nc_socket *, enum socket_state);
int		nc__socket_open_fd(struct nc_socket *, int fd);
int		nc__socket_watch_write(struct nc_socket *);
void		nc__socket_became_open(struct nc_socket *);
void		nc__socket_fail(struct nc_socket *, int code,
		    const char *syscall);
void		nc__socket_emit(struct nc_socket *,
		    const struct nc_event_args *);
void		nc__socket_apply_options(struct nc_socket *);
void		nc__socket_set_remote(struct nc_socket *,
		    const struct nc__proxy_info *);

/* connect.c */
void		nc__socket_connect_ready(struct nc_socket *);

/* server.c */
void		nc__server_connection_closed(struct nc_server *);
void		nc__server_handed_over(struct nc_server *);

#endif /* SOCKET_INT_H */
