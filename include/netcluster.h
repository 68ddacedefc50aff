/*
 * netcluster: the Node.js net module in C, on libevent.
 *
 * This is the only installed header. Every name is Node's in snake_case
 * under the nc_ prefix, the object second: net.createServer is
 * nc_create_server, socket.setTimeout is nc_socket_set_timeout.
 *
 * Conventions:
 * - Functions that can fail return 0 (or a documented non-negative value)
 *   or a negative code: -errno for system errors (NC_EADDRINUSE is
 *   -EADDRINUSE) and codes of their own below NC__ERR_BASE for Node's
 *   errors (NC_ERR_SERVER_NOT_RUNNING). nc_err_name() and nc_strerror()
 *   name any code.
 * - Bad arguments are returned (where Node throws); operational failures
 *   (EADDRINUSE on bind, ECONNREFUSED on connect) are emitted as `error`
 *   on a later turn of the loop, never from inside the call. A call that
 *   returned an error emits nothing for itself.
 * - Every object lives on one libevent event_base, given in its options
 *   or nc_default_base(). The library never blocks the loop.
 * - The library owns sockets and frees each one after its `close` event
 *   has been emitted; a program that keeps a pointer past that takes a
 *   hold (nc_socket_hold()) and releases it. A server belongs to the
 *   program from nc_create_server() to nc_server_release() (it may listen
 *   again after it closed); the library holds it while it has connections.
 * - Sockets write with MSG_NOSIGNAL, so writing to a closed peer never
 *   raises SIGPIPE; the library does not touch signal dispositions.
 */

#ifndef NETCLUSTER_H
#define NETCLUSTER_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define NC_EXTERN __attribute__((visibility("default")))

struct event_base;
struct evbuffer;

struct nc_server;
struct nc_socket;
struct nc_lookup_req;

/*
 * Error codes. System errors are -errno; the ones Node names are listed
 * so programs can compare against them. Node's own codes and the resolver's
 * sit below NC__ERR_BASE, far from any errno.
 */
#define NC__ERR_BASE	(-30000)

#define NC_ERRNO_MAP(XX)						\
	XX(ERR_SERVER_NOT_RUNNING, -30001, "Server is not running.")	\
	XX(ERR_SERVER_ALREADY_LISTEN, -30002,				\
	    "Listen method has been called more than once without closing.") \
	XX(ERR_SOCKET_CLOSED, -30003, "Socket is closed")		\
	XX(ERR_SOCKET_BAD_PORT, -30004,					\
	    "Port should be >= 0 and < 65536")				\
	XX(ERR_MISSING_ARGS, -30005,					\
	    "The \"options\" or \"port\" or \"path\" argument must be specified") \
	XX(ERR_INVALID_ARG_VALUE, -30006, "The argument is invalid")	\
	XX(ERR_UNKNOWN_ENCODING, -30007, "Unknown encoding")		\
	XX(ERR_OUT_OF_RANGE, -30008, "The value is out of range")	\
	XX(ERR_STREAM_WRITE_AFTER_END, -30009, "write after end")	\
	XX(ERR_STREAM_DESTROYED, -30010,				\
	    "Cannot call write after a stream was destroyed")		\
	XX(ERR_SOCKET_CLOSED_BEFORE_CONNECTION, -30011,			\
	    "Socket closed before the connection was established")	\
	XX(ERR_IPC_CHANNEL_CLOSED, -30012, "Channel closed")		\
	XX(ENOTFOUND, -30100, "name or service not known")		\
	XX(EAI_AGAIN, -30101, "temporary failure in name resolution")	\
	XX(EAI_FAIL, -30102, "non-recoverable failure in name resolution") \
	XX(EAI_FAMILY, -30103, "address family not supported")		\
	XX(EOF, -30200, "end of file")

enum {
#define NC__ERRNO_ENUM(name, value, msg) NC_##name = (value),
	NC_ERRNO_MAP(NC__ERRNO_ENUM)
#undef NC__ERRNO_ENUM
	NC_EADDRINUSE = -EADDRINUSE,
	NC_EADDRNOTAVAIL = -EADDRNOTAVAIL,
	NC_EACCES = -EACCES,
	NC_ECONNREFUSED = -ECONNREFUSED,
	NC_ECONNRESET = -ECONNRESET,
	NC_ECANCELED = -ECANCELED,
	NC_EINVAL = -EINVAL,
	NC_ENOENT = -ENOENT,
	NC_ENOMEM = -ENOMEM,
	NC_EPIPE = -EPIPE,
	NC_ETIMEDOUT = -ETIMEDOUT,
	NC_EMFILE = -EMFILE,
	NC_ENOTSOCK = -ENOTSOCK,
	NC_EMSGSIZE = -EMSGSIZE,
	NC_ENOBUFS = -ENOBUFS
};

/* "EADDRINUSE" for NC_EADDRINUSE; "Unknown system error N" if unknown. */
NC_EXTERN const char	*nc_err_name(int code);
/* "Address already in use" for NC_EADDRINUSE. */
NC_EXTERN const char	*nc_strerror(int code);

/*
 * An error as Node reports it: code, syscall and address, and the message
 * Node would print ("listen EADDRINUSE: address already in use :::8124").
 * Valid only during the callback that receives it.
 */
struct nc_error {
	int		 code;		/* NC_* code, negative */
	const char	*syscall;	/* "listen", "connect", ... or NULL */
	const char	*address;	/* or NULL */
	int		 port;		/* -1 when there is none */
	const char	*message;
};

/* Addresses as address() reports them. */
#define NC_ADDRSTRLEN	128
struct nc_address {
	char	address[NC_ADDRSTRLEN];	/* "127.0.0.1", "::1", or a path */
	char	family[8];		/* "IPv4", "IPv6", or "" for a path */
	int	port;			/* -1 for a path */
};

/*
 * Events. Each object is an event emitter: any number of listeners per
 * event, called in the order they were added; a listener added or removed
 * during an emit takes effect from the next emit. `once` listeners are
 * removed before they are called. An `error` with no listener is logged
 * and the object destroyed.
 *
 * Server events: LISTENING, CONNECTION, CLOSE, ERROR, DROP.
 * Socket events: LOOKUP, CONNECT, DATA, END, FINISH, TIMEOUT, DRAIN, ERROR,
 * CLOSE.
 * Cluster events (nc_cluster_on): MESSAGE, DISCONNECT.
 */
enum nc_event {
	NC_EV_LISTENING,
	NC_EV_CONNECTION,
	NC_EV_CLOSE,
	NC_EV_ERROR,
	NC_EV_DROP,
	NC_EV_LOOKUP,
	NC_EV_CONNECT,
	NC_EV_DATA,
	NC_EV_END,
	NC_EV_FINISH,
	NC_EV_TIMEOUT,
	NC_EV_DRAIN,
	NC_EV_MESSAGE,
	NC_EV_DISCONNECT,
	NC_EV__COUNT
};

/* "listening", "connection", ... */
NC_EXTERN const char	*nc_event_name(enum nc_event);

/*
 * What a listener receives. Which fields are set depends on the event:
 *   CONNECTION	socket: the new connection (owned by the library)
 *   DATA	data, len: the bytes read; with an encoding set, the decoded
 *		text as UTF-8, NUL-terminated (len excludes the NUL). Valid
 *		only during the call.
 *   ERROR	error
 *   CLOSE	had_error (sockets); error (server close callback only:
 *		ERR_SERVER_NOT_RUNNING when the server was not open)
 *   LOOKUP	error (NULL on success), address, family, host
 *   DROP	local, remote: the addresses of the dropped connection
 *   MESSAGE	data, len: the message, JSON text, NUL-terminated; from:
 *		the sending worker's id, 0 when the operator sent it
 *		(netclusterctl send)
 *   DISCONNECT	nothing: the master asked this worker to stop
 */
struct nc_event_args {
	enum nc_event		 event;
	const struct nc_error	*error;
	struct nc_socket	*socket;
	const char		*data;
	size_t			 len;
	bool			 had_error;
	const char		*address;
	int			 family;
	const char		*host;
	const struct nc_address	*local;
	const struct nc_address	*remote;
	int			 from;
};

/* emitter is the struct nc_server * or struct nc_socket * that emitted. */
typedef void	(*nc_listener_cb)(void *emitter,
		    const struct nc_event_args *ev, void *arg);
/* Write completion: status 0, or the error that failed the write. */
typedef void	(*nc_write_cb)(struct nc_socket *, int status, void *arg);
/* getConnections: status 0 and the count, or an error. */
typedef void	(*nc_count_cb)(struct nc_server *, int status, int count,
		    void *arg);

/*
 * A custom resolver for nc_socket_connect (Node's `lookup` option). It is
 * called with the host and the family asked for (4 or 6) and must call
 * nc_lookup_done() exactly once, now or later, with status 0 and an
 * address literal, or a negative code.
 */
typedef void	(*nc_lookup_fn)(const char *host, int family,
		    struct nc_lookup_req *req, void *arg);
NC_EXTERN void	 nc_lookup_done(struct nc_lookup_req *, int status,
		    const char *address, int family);

/* Loop. */

/* A process-wide base, created on first use. */
NC_EXTERN struct event_base	*nc_default_base(void);
/*
 * Runs the loop until nothing keeps it alive, as Node's process does:
 * returns when no ref'd server or socket has an event pending and no other
 * event is on the base. Unref'd servers and sockets do not count, nor does
 * a socket's idle timer; as in Node, a paused socket with nothing to write
 * does not either. Returns 0, or -1 if libevent fails.
 */
NC_EXTERN int	 nc_run(struct event_base *);

/* Logging: the library logs through this hook (stderr by default). */
enum {
	NC_LOG_ERR = 3,
	NC_LOG_WARNING = 4,
	NC_LOG_NOTICE = 5,
	NC_LOG_INFO = 6,
	NC_LOG_DEBUG = 7
};
typedef void	(*nc_log_cb)(int level, const char *msg, void *arg);
NC_EXTERN void	 nc_set_log_cb(nc_log_cb, void *arg);
NC_EXTERN void	 nc_set_log_level(int level);
NC_EXTERN int	 nc_log_level(void);

/* Addresses: net.isIP, net.isIPv4, net.isIPv6 with Node v20's rules. */
NC_EXTERN int	 nc_is_ip(const char *input);	/* 4, 6 or 0 */
NC_EXTERN bool	 nc_is_ipv4(const char *input);
NC_EXTERN bool	 nc_is_ipv6(const char *input);

/* Servers. */

/* net.createServer options; a zeroed struct means Node's defaults. */
struct nc_server_options {
	struct event_base	*base;		/* NULL: nc_default_base() */
	bool			 allow_half_open;
	bool			 pause_on_connect;
	/*
	 * Every connection starts with a PROXY protocol header (v1 or v2, as
	 * HAProxy sends it): the socket's remote address is the client it
	 * names, and the header never reaches `data`. A malformed, oversized
	 * or late header (proxy_timeout_ms, 0: 3000) closes the connection
	 * before `connection`, counted in nc_server_proxy_errors().
	 */
	bool			 proxy_protocol;
	int			 proxy_timeout_ms;
};

/*
 * net.createServer([options][, connectionListener]): options may be NULL;
 * connection_listener, if not NULL, is added as a `connection` listener.
 * Returns NULL only when out of memory.
 */
NC_EXTERN struct nc_server *nc_create_server(const struct nc_server_options *,
		    nc_listener_cb connection_listener, void *arg);

/*
 * server.listen(port[, host][, backlog][, callback]): port 0 picks one;
 * host NULL is `::` where IPv6 is available, else 0.0.0.0; backlog 0 is
 * 511. listening, if not NULL, is added as a once `listening` listener.
 * Returns ERR_SOCKET_BAD_PORT, ERR_OUT_OF_RANGE (backlog < 0) or
 * ERR_SERVER_ALREADY_LISTEN; bind and listen failures are emitted.
 */
NC_EXTERN int	 nc_server_listen(struct nc_server *, int port,
		    const char *host, int backlog, nc_listener_cb listening,
		    void *arg);
/* server.listen(path[, callback]): a unix socket server. */
NC_EXTERN int	 nc_server_listen_path(struct nc_server *, const char *path,
		    nc_listener_cb listening, void *arg);
/*
 * server.listen(handle) and listen({fd}): accept on fd, a socket already
 * bound (and possibly listening); it is not bound again. The server takes
 * the fd over and closes it on close.
 */
NC_EXTERN int	 nc_server_listen_handle(struct nc_server *, int fd,
		    nc_listener_cb listening, void *arg);

struct nc_listen_options {
	int		 port;
	const char	*host;
	const char	*path;		/* a unix socket instead of port/host */
	int		 backlog;	/* 0: 511 */
	bool		 exclusive;	/* never share the handle (cluster) */
	bool		 has_fd;	/* listen on fd instead */
	int		 fd;
	bool		 ipv6_only;
};
/* server.listen(options[, callback]). */
NC_EXTERN int	 nc_server_listen_options(struct nc_server *,
		    const struct nc_listen_options *, nc_listener_cb listening,
		    void *arg);

/*
 * server.close([callback]): stop accepting; `close` is emitted once every
 * connection has ended, as in Node on the turn after the last one is
 * destroyed: before that connection's own `close` (libnetcluster(3)).
 * callback, if not NULL, is added as a once `close`
 * listener; if the server was not listening it is called instead on a
 * later turn with error ERR_SERVER_NOT_RUNNING, and `close` is still
 * emitted.
 */
NC_EXTERN int	 nc_server_close(struct nc_server *, nc_listener_cb callback,
		    void *arg);
/* server.address(): 0, or ERR_SERVER_NOT_RUNNING when not listening. */
NC_EXTERN int	 nc_server_address(struct nc_server *, struct nc_address *);
NC_EXTERN void	 nc_server_ref(struct nc_server *);
NC_EXTERN void	 nc_server_unref(struct nc_server *);
/* server.maxConnections: 0 means no limit; past it, connections are closed
 * at once and `drop` is emitted. */
NC_EXTERN int	 nc_server_max_connections(const struct nc_server *);
NC_EXTERN int	 nc_server_set_max_connections(struct nc_server *, int);
/* server.connections: the count, or -1 (Node's null) once the handle or
 * its connections were handed to other processes. */
NC_EXTERN int	 nc_server_connections(const struct nc_server *);
/* server.getConnections(callback): called on a later turn. */
NC_EXTERN int	 nc_server_get_connections(struct nc_server *, nc_count_cb,
		    void *arg);
NC_EXTERN bool	 nc_server_listening(const struct nc_server *);
/*
 * A PROXY protocol header (version 1 or 2) for a connection from src to
 * dst (IP literals; anything else gives UNKNOWN / LOCAL) in out: its
 * length, or -1 when out is too small.
 */
NC_EXTERN int	 nc_proxy_header(int version, const char *src, int src_port,
		    const char *dst, int dst_port, unsigned char *out,
		    size_t outlen);
/* Connections closed for a bad or missing PROXY header. */
NC_EXTERN unsigned long long nc_server_proxy_errors(const struct nc_server *);
/* The listening fd, or -1. */
NC_EXTERN int	 nc_server_fd(const struct nc_server *);
NC_EXTERN struct event_base *nc_server_base(const struct nc_server *);

NC_EXTERN int	 nc_server_on(struct nc_server *, enum nc_event,
		    nc_listener_cb, void *arg);
NC_EXTERN int	 nc_server_once(struct nc_server *, enum nc_event,
		    nc_listener_cb, void *arg);
/* Removes the most recently added listener with this callback and arg. */
NC_EXTERN int	 nc_server_off(struct nc_server *, enum nc_event,
		    nc_listener_cb, void *arg);
NC_EXTERN size_t nc_server_listener_count(const struct nc_server *,
		    enum nc_event);
NC_EXTERN void	 nc_server_hold(struct nc_server *);
NC_EXTERN void	 nc_server_release(struct nc_server *);

/* Sockets. */

/* new net.Socket(options); a zeroed struct means Node's defaults. */
struct nc_socket_options {
	struct event_base	*base;		/* NULL: nc_default_base() */
	bool			 has_fd;	/* wrap an existing fd */
	int			 fd;
	bool			 allow_half_open;
	bool			 readable;	/* with fd only */
	bool			 writable;	/* with fd only */
};
/* Returns NULL only when out of memory. */
NC_EXTERN struct nc_socket *nc_socket_new(const struct nc_socket_options *);

/* socket.connect(options) and net.connect(options). */
struct nc_connect_options {
	int		 port;
	const char	*host;		/* NULL: "localhost" */
	const char	*path;		/* a unix socket instead */
	const char	*local_address;
	int		 local_port;
	int		 family;	/* 4 or 6; 0: 4, as the spec says */
	nc_lookup_fn	 lookup;	/* NULL: asynchronous DNS */
	void		*lookup_arg;
	/* Used by nc_connect() and nc_create_connection() only. */
	struct event_base *base;
	bool		 allow_half_open;
};

/*
 * socket.connect(...): connect_listener, if not NULL, is added as a once
 * `connect` listener. A NULL or empty host is "localhost". Returns
 * ERR_MISSING_ARGS (no port and no path), ERR_SOCKET_BAD_PORT,
 * ERR_INVALID_ARG_VALUE (family, local_address), ERR_SOCKET_CLOSED (a
 * destroyed socket), -EISCONN or -EALREADY (connected or connecting);
 * failures to resolve or connect are emitted.
 */
NC_EXTERN int	 nc_socket_connect(struct nc_socket *,
		    const struct nc_connect_options *,
		    nc_listener_cb connect_listener, void *arg);
NC_EXTERN int	 nc_socket_connect_port(struct nc_socket *, int port,
		    const char *host, nc_listener_cb connect_listener, void *arg);
NC_EXTERN int	 nc_socket_connect_path(struct nc_socket *, const char *path,
		    nc_listener_cb connect_listener, void *arg);

/*
 * net.connect() / net.createConnection() in their three forms: a new
 * socket in *sockp, connecting. base may be NULL.
 */
NC_EXTERN int	 nc_connect(const struct nc_connect_options *,
		    nc_listener_cb connect_listener, void *arg,
		    struct nc_socket **sockp);
NC_EXTERN int	 nc_connect_port(struct event_base *, int port,
		    const char *host, nc_listener_cb connect_listener, void *arg,
		    struct nc_socket **sockp);
NC_EXTERN int	 nc_connect_path(struct event_base *, const char *path,
		    nc_listener_cb connect_listener, void *arg,
		    struct nc_socket **sockp);
NC_EXTERN int	 nc_create_connection(const struct nc_connect_options *,
		    nc_listener_cb connect_listener, void *arg,
		    struct nc_socket **sockp);
NC_EXTERN int	 nc_create_connection_port(struct event_base *, int port,
		    const char *host, nc_listener_cb connect_listener, void *arg,
		    struct nc_socket **sockp);
NC_EXTERN int	 nc_create_connection_path(struct event_base *,
		    const char *path, nc_listener_cb connect_listener, void *arg,
		    struct nc_socket **sockp);

/*
 * socket.write(data[, encoding][, callback]). Returns 1 when the queue is
 * below the high-water mark (Node's true), 0 when it is at or above it
 * (false: wait for `drain`), or a negative code for a bad argument. cb, if
 * not NULL, is called once the data has gone to the kernel, or with the
 * error that failed it. Writes before the connection is made are queued.
 * Writing after end() fails the write with ERR_STREAM_WRITE_AFTER_END,
 * and after the peer ended a socket that is not half-open, with EPIPE;
 * both are also emitted as `error`. A socket that never connected fails
 * writes with ERR_SOCKET_CLOSED.
 */
NC_EXTERN int	 nc_socket_write(struct nc_socket *, const void *data,
		    size_t len, nc_write_cb cb, void *arg);
/* Writes a NUL-terminated UTF-8 string in encoding (NULL: utf8). */
NC_EXTERN int	 nc_socket_write_string(struct nc_socket *, const char *str,
		    const char *encoding, nc_write_cb cb, void *arg);
/* Writes the contents of buf, moving its chains (no copy); buf is empty
 * afterwards (unless the write was refused) and stays the caller's. */
NC_EXTERN int	 nc_socket_write_buffer(struct nc_socket *, struct evbuffer *buf,
		    nc_write_cb cb, void *arg);
/* socket.end([data]): data may be NULL. */
NC_EXTERN int	 nc_socket_end(struct nc_socket *, const void *data,
		    size_t len);
NC_EXTERN int	 nc_socket_end_string(struct nc_socket *, const char *str,
		    const char *encoding);
/* socket.destroy(): no more I/O; pending writes fail with ECANCELED
 * (ERR_SOCKET_CLOSED_BEFORE_CONNECTION if it never connected); `close`
 * follows on a later turn. */
NC_EXTERN void	 nc_socket_destroy(struct nc_socket *);
/* socket.destroy(err): pending writes fail with code; emits `error` with
 * code, then `close(true)`. */
NC_EXTERN void	 nc_socket_destroy_error(struct nc_socket *, int code);
/*
 * Hands the connection over to another process, as Node's
 * child.send(socket): returns a duplicate of its fd (close-on-exec) for
 * the program to pass on, and destroys the socket here (`close` follows,
 * without error). A server whose connection was handed over reports
 * nc_server_connections() as -1 from then on. Returns a negative code if
 * the socket is not connected.
 */
NC_EXTERN int	 nc_socket_detach(struct nc_socket *);
NC_EXTERN void	 nc_socket_pause(struct nc_socket *);
NC_EXTERN void	 nc_socket_resume(struct nc_socket *);
NC_EXTERN bool	 nc_socket_is_paused(const struct nc_socket *);
/*
 * socket.setTimeout(timeout[, callback]): `timeout` after ms of no reads
 * and no writes; 0 disables it (and removes callback if given). callback,
 * if not NULL, is added as a once `timeout` listener. The socket is not
 * closed. Returns ERR_OUT_OF_RANGE for a negative timeout.
 */
NC_EXTERN int	 nc_socket_set_timeout(struct nc_socket *, int64_t ms,
		    nc_listener_cb callback, void *arg);
NC_EXTERN int	 nc_socket_set_no_delay(struct nc_socket *, bool no_delay);
NC_EXTERN int	 nc_socket_set_keep_alive(struct nc_socket *, bool enable,
		    unsigned int initial_delay_ms);
/* socket.setEncoding(): utf8, hex, base64, latin1 (binary), ascii,
 * utf16le (ucs2); NULL goes back to bytes. */
NC_EXTERN int	 nc_socket_set_encoding(struct nc_socket *,
		    const char *encoding);
NC_EXTERN int	 nc_socket_address(struct nc_socket *, struct nc_address *);
NC_EXTERN void	 nc_socket_ref(struct nc_socket *);
NC_EXTERN void	 nc_socket_unref(struct nc_socket *);

/* remoteAddress, remoteFamily ("IPv4"/"IPv6"), remotePort, localAddress,
 * localPort: NULL or -1 when not known (not connected, unix sockets). */
NC_EXTERN const char *nc_socket_remote_address(const struct nc_socket *);
NC_EXTERN const char *nc_socket_remote_family(const struct nc_socket *);
NC_EXTERN int	 nc_socket_remote_port(const struct nc_socket *);
NC_EXTERN const char *nc_socket_local_address(const struct nc_socket *);
NC_EXTERN int	 nc_socket_local_port(const struct nc_socket *);
/* bufferSize: bytes queued and not yet handed to the kernel. */
NC_EXTERN size_t nc_socket_buffer_size(const struct nc_socket *);
NC_EXTERN uint64_t nc_socket_bytes_read(const struct nc_socket *);
/* bytesWritten: bytes handed to the kernel plus bytes still queued. */
NC_EXTERN uint64_t nc_socket_bytes_written(const struct nc_socket *);
NC_EXTERN bool	 nc_socket_connecting(const struct nc_socket *);
NC_EXTERN bool	 nc_socket_destroyed(const struct nc_socket *);
NC_EXTERN int	 nc_socket_fd(const struct nc_socket *);
NC_EXTERN struct event_base *nc_socket_base(const struct nc_socket *);

NC_EXTERN int	 nc_socket_on(struct nc_socket *, enum nc_event,
		    nc_listener_cb, void *arg);
NC_EXTERN int	 nc_socket_once(struct nc_socket *, enum nc_event,
		    nc_listener_cb, void *arg);
NC_EXTERN int	 nc_socket_off(struct nc_socket *, enum nc_event,
		    nc_listener_cb, void *arg);
NC_EXTERN size_t nc_socket_listener_count(const struct nc_socket *,
		    enum nc_event);
NC_EXTERN void	 nc_socket_hold(struct nc_socket *);
NC_EXTERN void	 nc_socket_release(struct nc_socket *);

/*
 * Cluster: the worker's side of Node's cluster module. When netclusterd
 * runs a program as a worker ("sockets": "cluster" in netcluster.json),
 * the program's listens go through the master, which shares, hands round
 * or lets it bind the service's listeners as the service's mode says,
 * and its connections count in the cluster's getConnections. On its own,
 * the same program binds by itself: nothing here needs to be called.
 */

/* cluster.isWorker: is this process a worker of netclusterd? */
NC_EXTERN bool	 nc_cluster_is_worker(void);
/* cluster.worker.id: this worker's id (1, 2, ...), or -1 if not a worker. */
NC_EXTERN int	 nc_cluster_worker_id(void);
/* The name of the service this worker runs, or NULL if not a worker. */
NC_EXTERN const char *nc_cluster_service(void);

/*
 * Adds a listener for a cluster event, on base (NULL: nc_default_base()),
 * the base the process's servers run on:
 *   MESSAGE	a message from another worker (nc_cluster_broadcast) or
 *		from the operator (netclusterctl send). As Node's
 *		process.on('message'), a MESSAGE listener keeps nc_run()
 *		going.
 *   DISCONNECT	the master asks the worker to stop (a stop, a reload, an
 *		upgrade). Its servers that listen through the master are
 *		closed right after the listeners ran; once they are closed
 *		(their connections ended) the channel is closed too, so the
 *		program exits when nothing else of its own is left (Node's
 *		worker.disconnect()). The master kills it after
 *		shutdown_timeout_ms.
 * The emitter passed to the listener is NULL. Returns 0,
 * ERR_IPC_CHANNEL_CLOSED when this process is not a worker, or NC_ENOMEM.
 */
NC_EXTERN int	 nc_cluster_on(struct event_base *, enum nc_event,
		    nc_listener_cb, void *arg);
NC_EXTERN int	 nc_cluster_off(enum nc_event, nc_listener_cb, void *arg);

/* Largest message nc_cluster_broadcast() takes, in bytes of JSON. */
#define NC_CLUSTER_MESSAGE_MAX	65000
/* nc_cluster_broadcast() flags. */
#define NC_BROADCAST_DRAINING	0x1	/* also to older generations */

/*
 * Sends json (any JSON value, as text) through the master to every other
 * live worker of the service, where it is emitted as MESSAGE. Messages of
 * one sender arrive in the order sent. Workers of an older generation
 * that drain after a reload or an upgrade get it only with
 * NC_BROADCAST_DRAINING. Returns 0 once the message is queued, or
 * ERR_IPC_CHANNEL_CLOSED (not a worker, or its channel closed),
 * ERR_INVALID_ARG_VALUE (not JSON), NC_EMSGSIZE (over
 * NC_CLUSTER_MESSAGE_MAX) or NC_ENOBUFS (its queue to the master is full:
 * nothing was sent; try again on a later turn). The channel runs on the
 * base of the first listen or nc_cluster_on() of the process, else on
 * nc_default_base(): a program on a base of its own calls one of those
 * first.
 */
NC_EXTERN int	 nc_cluster_broadcast(const char *json, int flags);

#ifdef __cplusplus
}
#endif

#endif /* NETCLUSTER_H */
