/*
 * The layout of struct nc_socket, shared by the files of a socket's jobs
 * (socket.c: life and reading; socket-write.c; socket-timer.c;
 * socket-options.c; connect.c: resolving and connecting), and the hooks
 * between them and the server (server.c, server-accept.c).
 */

#ifndef SOCKET_INT_H
#define SOCKET_INT_H

#include <netinet/in.h>

#include <time.h>

#include <event2/event_struct.h>

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

/*
 * What connect() was asked, what its error should name, and options set
 * before there was a connection: made by connect() (or such an option),
 * gone once the socket is open.
 */
struct socket_connect {
	char			*host;
	char			*path;
	char			*local_address;
	char			*error_address;	/* what a connect error names */
	nc_lookup_fn		 lookup;
	void			*lookup_arg;
	struct event		*lookup_ev;	/* while resolving */
	int			 port;
	int			 local_port;
	int			 family;
	int			 error_port;
};

/*
 * The socket's part in nc_run()'s accounting, made by the first
 * setTimeout() or unref(): the idle timer never keeps the loop alive (as
 * in Node), and after unref() neither do the socket's events. A socket
 * without it counts as every other event does.
 */
struct socket_timer {
	struct nc__handle	 h;		/* first */
	struct nc_socket	*socket;
	struct event		 ev;
	int64_t			 timeout_ms;
	struct timespec		 last_activity;
};

/*
 * Text: the decoder of setEncoding() and the addresses' text, made by the
 * first call that needs either.
 */
struct socket_text {
	struct nc__decoder	 decoder;
	struct evbuffer		*decoded;	/* NULL until setEncoding() */
	char			 remote[NC_ADDRSTRLEN];
	char			 local[INET6_ADDRSTRLEN];
	bool			 has_remote, has_local;
};

/*
 * An address as getpeername() or getsockname() gave it, in 20 bytes;
 * its text is made when a program asks for it (socket_text).
 */
struct socket_addr {
	uint8_t			 family;	/* 4, 6, or 0: not known */
	uint16_t		 port;
	unsigned char		 addr[16];
};

/*
 * A socket, kept small: an idle connection is this struct, its listeners
 * and libevent's entry for the fd. What only some sockets use hangs off
 * it, made on first use.
 */
struct nc_socket {
	struct event_base	*base;
	/*
	 * The one I/O event: EV_READ while reading, EV_WRITE while a
	 * write waits or a connect is pending; ev_what says what it is
	 * assigned with (0: not yet).
	 */
	struct event		 ev;
	struct nc__listeners	 em;
	struct nc_server	*server;	/* accepted by; NULL once
						 * destroyed */
	struct nc__error	*err;		/* NULL until it fails */

	struct evbuffer		*out;		/* NULL until a write waits */
	struct socket_write	*writes;	/* newest; a ring (socket.c) */
	uint64_t		 bytes_flushed;	/* + what out holds: every
						 * byte written */
	uint64_t		 bytes_read;

	struct socket_connect	*conn;
	struct socket_timer	*timer;
	struct socket_text	*text;

	int			 refs;
	int			 fd;
	struct socket_addr	 remote, local;
	uint8_t			 state;		/* enum socket_state */
	uint8_t			 ev_what;

	bool			 allow_half_open:1;
	bool			 readable:1;	/* may read (fd option) */
	bool			 writable:1;	/* may write: not ended */
	bool			 paused:1;
	bool			 eof:1;		/* FIN received (`end`) */
	bool			 peer_ended:1;	/* FIN received, not half-open:
						 * writes after end() fail with
						 * EPIPE */
	bool			 ended:1;	/* end() called */
	bool			 finished:1;	/* our FIN sent (`finish`) */
	bool			 need_drain:1;
	bool			 after_write_queued:1;
	bool			 has_encoding:1;
	bool			 has_no_delay:1, no_delay:1;
	bool			 has_keep_alive:1, keep_alive:1;
	bool			 closed_early:1; /* destroyed before it was
						 * open, without an error */
	bool			 tcp:1;		/* an IP peer: TCP options
						 * apply */
	bool			 remote_named:1; /* remote is a PROXY header's
						 * unix path, in text */
	bool			 close_emitted:1; /* may connect again */
	uint16_t		 keep_alive_secs; /* setKeepAlive()'s delay,
						 * for each connection */
};

/* socket.c */
struct nc_socket *nc__socket_accepted(struct event_base *, int fd,
		    bool allow_half_open, bool paused);
void		nc__socket_set_state(struct nc_socket *, enum socket_state);
int		nc__socket_open_fd(struct nc_socket *, int fd);
int		nc__socket_update_io(struct nc_socket *);
void		nc__socket_update_read(struct nc_socket *);
void		nc__socket_became_open(struct nc_socket *);
void		nc__socket_fail(struct nc_socket *, int code,
		    const char *syscall);
void		nc__socket_maybe_destroy(struct nc_socket *);
void		nc__socket_emit(struct nc_socket *,
		    const struct nc_event_args *);
void		nc__socket_emit_simple(struct nc_socket *, enum nc_event);
int		nc__socket_reopen(struct nc_socket *);

/* socket-write.c */
size_t		nc__socket_queued(const struct nc_socket *);
void		nc__socket_flush(struct nc_socket *);
void		nc__socket_schedule_after_write(struct nc_socket *);
void		nc__socket_fail_writes(struct nc_socket *, int code);
void		nc__socket_writes_free(struct nc_socket *);

/* socket-timer.c */
void		nc__socket_activity(struct nc_socket *);
void		nc__socket_timer_free(struct nc_socket *);

/* socket-options.c */
void		nc__socket_apply_options(struct nc_socket *);
void		nc__socket_set_remote(struct nc_socket *,
		    const struct nc__proxy_info *);

/* connect.c */
void		nc__socket_connect_ready(struct nc_socket *);
void		nc__socket_connect_free(struct nc_socket *);

/* server-accept.c */
void		nc__server_connection_closed(struct nc_server *);
/* server.c */
void		nc__server_handed_over(struct nc_server *);

#endif /* SOCKET_INT_H */
