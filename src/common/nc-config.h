/*
 * netcluster.json: the daemon's configuration, parsed and checked into a
 * value that is swapped in only when complete. Shared by the programs
 * (netclusterd checks and applies it, workers receive it from the master);
 * not installed.
 */

#ifndef NC_CONFIG_H
#define NC_CONFIG_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define NC_CONFIG_MAX_SIZE	(1024 * 1024)	/* bytes of a config file */
#define NC_CONFIG_MAX_ERRORS	20

enum nc_listen_kind {
	NC_LISTEN_TCP,		/* "PORT", "HOST:PORT", "[V6]:PORT" */
	NC_LISTEN_UNIX,		/* "unix:PATH" */
	NC_LISTEN_FD,		/* "fd:N" */
	NC_LISTEN_SYSTEMD	/* "systemd:NAME" */
};

struct nc_listen_addr {
	enum nc_listen_kind	 kind;
	char			*text;	/* as written */
	char			*host;	/* TCP: NULL for all interfaces */
	char			*address; /* TCP: host resolved by the check */
	int			 port;	/* TCP */
	char			*path;	/* UNIX */
	int			 fd;	/* FD */
	char			*name;	/* SYSTEMD */
};

enum nc_handler_kind {
	NC_HANDLER_ECHO,
	NC_HANDLER_PROXY,
	NC_HANDLER_MODULE,
	NC_HANDLER_PROGRAM	/* the operator's executable, no channel */
};

enum nc_balance {
	NC_BALANCE_ROUND_ROBIN,
	NC_BALANCE_LEAST_CONNECTIONS
};

enum nc_mode {
	NC_MODE_SHARED,
	NC_MODE_ROUND_ROBIN,
	NC_MODE_EXCLUSIVE,
	NC_MODE_REUSEPORT
};

/* How a program gets its sockets: sd_listen_fds(3), or libnetcluster. */
enum nc_sockets {
	NC_SOCKETS_INHERIT,	/* fds from 3, LISTEN_FDS: shared, reuseport */
	NC_SOCKETS_CLUSTER	/* NETCLUSTER_CHANNEL_FD: every mode */
};

struct nc_service {
	char			*name;
	enum nc_handler_kind		 handler;
	struct nc_listen_addr	*listen;
	size_t			 nlisten;
	enum nc_mode		 mode;
	int			 backlog;
	int			 max_connections;
	bool			 allow_half_open;
	bool			 pause_on_connect;
	int			 idle_timeout_ms;
	bool			 no_delay;
	bool			 keep_alive;
	int			 keep_alive_initial_delay_ms;
	char			**upstream;
	size_t			 nupstream;
	enum nc_balance		 balance;
	int			 connect_timeout_ms;
	int			 down_ms;	/* an upstream that failed */
	int			 send_proxy;	/* 0, or PROXY header version */
	bool			 proxy_protocol; /* clients send a header */
	char			*module;
	json_t			*options;	/* the "options" object or NULL */
	char			**command;	/* program: argv, NULL-ended */
	size_t			 ncommand;
	char			**env;		/* program: "K=V", NULL-ended */
	size_t			 nenv;
	char			*cwd;		/* program, or NULL */
	enum nc_sockets		 sockets;	/* program: how it gets them */
	bool			 messages;	/* inherit program: a line channel */
	/*
	 * Its pool: "workers", "user" and "group" of the service, else the
	 * top-level ones (the defaults); has_workers tells which. uid and
	 * gid are set by the check (nc_config_check()), else -1.
	 */
	int			 workers;
	bool			 has_workers;
	char			*user;		/* or NULL: as the master */
	char			*group;
	uid_t			 uid;
	gid_t			 gid;
	int			 reload_batch;	/* 0: the whole pool at once */
	/*
	 * Supervision beyond death: a worker silent worker_timeout_ms is
	 * killed (0: never; has_worker_timeout: set in the service, which
	 * alone gives a notify program WATCHDOG_USEC); one not ready within
	 * ready_timeout_ms too. A program on inherited sockets is ready at
	 * its READY=1 (notify), else once it lived settle_ms.
	 */
	int			 worker_timeout_ms;
	bool			 has_worker_timeout;
	int			 ready_timeout_ms;
	bool			 notify;
	int			 settle_ms;
	struct nc_recycle {	/* 0: that limit is off */
		int		 connections;
		int		 age_ms;
		int		 rss_mib;
		int		 jitter_percent;
	}			 recycle;
};

/*
 * What the master serves itself (nothing of the workers'): the metrics
 * over HTTP, and the answer to HAProxy's agent-check. Off unless set.
 */
struct nc_endpoint {
	bool			 on;
	struct nc_listen_addr	 listen;
	int			 max_age_ms;	/* metrics: of the workers' figures */
	int			 weight;	/* agent: a percentage, or -1 */
};

struct nc_config {
	char			*file;
	int			 workers;
	char			*user;
	char			*group;
	char			*control_socket;
	int			 log_level;	/* NC_LOG_* */
	int			 shutdown_timeout_ms;
	struct nc_service	*services;
	size_t			 nservices;
	struct nc_endpoint	 metrics;
	struct nc_endpoint	 agent;
	char			*text;	/* the file as read, for positions */
	size_t			 textlen;
};

/*
 * Loads and checks path. On success returns 0 and *cfgp; on failure
 * returns -1 and *errors holds every error found (at most
 * NC_CONFIG_MAX_ERRORS), one per line, each "FILE:LINE:COL: KEY: message";
 * the caller frees it.
 */
int		 nc_config_load(const char *path, struct nc_config **cfgp,
		    char **errors);
/* The same from text in memory; name stands for the file in messages. */
int		 nc_config_parse(const char *name, const char *text, size_t len,
		    struct nc_config **cfgp, char **errors);
void		 nc_config_free(struct nc_config *);

/* Parses one listen string; 0, or -1 with a message in err. */
int		 nc_config_parse_listen(const char *text,
		    struct nc_listen_addr *, char *err, size_t errlen);
void		 nc_config_listen_clear(struct nc_listen_addr *);
/* Whether two listeners would bind the same thing (port 0 never does). */
bool		 nc_config_listen_same(const struct nc_listen_addr *,
		    const struct nc_listen_addr *);
/* Whether two listen strings say the same address (hosts as written). */
bool		 nc_config_listen_equal(const struct nc_listen_addr *,
		    const struct nc_listen_addr *);

/*
 * Appends to *errors (allocated, or NULL) one line "FILE:LINE:COL: PATH:
 * message", the position being where PATH (such as
 * "services[0].listen[1]" or "user") is in the file's text.
 */
void		 nc_config_error(const struct nc_config *, char **errors,
		    const char *path, const char *fmt, ...)
		    __attribute__((format(printf, 4, 5)));

#define NC_CONFIG_RESOLVE_MS	5000	/* bound on resolving one host */
#define NC_CONFIG_MODULE_MS	10000	/* bound on loading one module */

/*
 * What the check cannot know by itself, from the program that will run
 * the listeners. systemd_fd: the fd systemd passed under name, or -1 and
 * a message (netclusterd asks libsystemd, and keeps the answer for when
 * it binds: the environment is read once). held: whether an fd: or
 * systemd: listener is one the program holds already (a reload, an
 * upgrade), which is not looked at again. Either may be NULL.
 */
struct nc_config_check_env {
	int	(*systemd_fd)(const char *name, char *err, size_t errlen,
		    void *arg);
	bool	(*held)(const struct nc_listen_addr *, void *arg);
	void	*arg;
	/*
	 * The netcluster-worker the daemon runs for built-in services, or
	 * NULL: checked executable by each such service's user.
	 */
	const char *worker_binary;
};

/*
 * Everything the daemon checks before it binds, beyond what parsing
 * found: fd:N and systemd:NAME listeners are sockets there to listen on;
 * listen hosts resolve (the address goes in each TCP listener's
 * `address`, which is what the daemon binds); proxy upstreams resolve;
 * modules load (in a child process, which exits) and are built for this
 * handler API; each service's user and group exist (their ids go in its
 * uid and gid), and only root may run workers as them; what each
 * service's workers open (a program's command and cwd, worker_binary, a
 * module) is theirs to open, asked as their user in a child process;
 * the control socket's directory is there or can be made. 0, or -1 with
 * every error in *errors as nc_config_load() gives them; the caller
 * frees it. It blocks (names, children): run it where that is allowed.
 */
int		 nc_config_check(struct nc_config *,
		    const struct nc_config_check_env *, char **errors);

/*
 * What nc_config_check() set in cfg (each TCP listener's `address`, each
 * service's uid and gid), as a JSON value (NULL: out of memory; the
 * caller owns it); and the same set into a cfg parsed from the same
 * text, for a check run in another process: 0, or -1 when the value
 * does not fit cfg (counts, types, an address for a listener that has
 * none), and then cfg is left unchanged.
 */
json_t		*nc_config_check_result(const struct nc_config *);
int		 nc_config_check_apply(struct nc_config *, const json_t *);

/*
 * fd is a stream socket a listener can take: 0, *listening telling
 * whether it listens already (if not, the daemon calls listen() on it),
 * or -1 with a message.
 */
int		 nc_config_check_fd(int fd, bool *listening, char *err,
		    size_t errlen);

/*
 * The directory of the socket path: 0 when it is there and writable, 1
 * when it is not there and can be made (it is made and removed again to
 * know), -1 with a message otherwise. dir gets the directory.
 */
int		 nc_config_socket_dir(const char *path, char *dir,
		    size_t dirlen, char *err, size_t errlen);

const char	*nc_config_mode_name(enum nc_mode);
const char	*nc_config_handler_name(enum nc_handler_kind);

#endif /* NC_CONFIG_H */
