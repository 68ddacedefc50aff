/*
 * netclusterd: the master. It binds the listeners of the configuration,
 * forks and supervises the workers, answers their handle requests over
 * the channel, accepts for round-robin services, sums figures, and serves
 * the control socket.
 */

#ifndef MASTER_H
#define MASTER_H

#include <sys/types.h>

#include <stdbool.h>
#include <time.h>

#include <jansson.h>

#include "nc-accept.h"
#include "nc-config.h"

struct bufferevent;
struct event;
struct event_base;
struct nc_ipc;

enum worker_state {
	W_STARTING,	/* forked, no `ready` yet */
	W_ONLINE,	/* every listener up */
	W_STOPPING,	/* sent `stop`, draining */
	W_DEAD
};

/* A connection accepted by the master, on its way to a worker. */
struct handoff {
	int			 fd;
	struct listener		*listener;
	struct worker		*worker;	/* NULL while queued */
	long long		 seq;
	int			 tries;
	struct handoff		*next;
};

#define MAX_LISTENER_IDS	4096	/* listeners alive at once, reloads too */
#define PROGRAM_LINE_MAX	896	/* bytes of a program's log line, so
					   that it fits in one of ours */
#define PROGRAM_READ_MAX	65536	/* bytes read from it per event */
#define BROADCAST_QUEUE_MAX	(1024 * 1024)	/* bytes waiting for a worker */

/* One bound address of a service (one per worker slot for reuseport). */
struct listener {
	struct handoff		*qhead, *qtail;	/* accepted, not handed */
	size_t			 qlen;
	struct listener		*retired_next;	/* removed by a reload */
	struct service_rt	*service;
	const struct nc_listen_addr *addr;
	int			 id;		/* in `conn` and `listen.result` */
	int			*fds;		/* one, or one per slot */
	size_t			 nfds;
	char			 bound[160];	/* what it really bound */
	int			 port;		/* the real port, or -1 */
	bool			 unlink_path;	/* a unix socket we created */
	char			*unix_path;	/* to unlink on close */
	char			*text;		/* the listen string */
	bool			 taken;		/* by a reload being built */
	struct event		*accept_ev;	/* round-robin (per fd) */
	struct event		**slot_evs;	/* reuseport: orphan slots */
	size_t			 rr_next;
	unsigned long long	 accepted;
	unsigned long long	 handed;	/* taken by a worker */
	unsigned long long	 refused;	/* by a worker */
	unsigned long long	 requeued;
};

struct service_rt {
	const struct nc_service	*conf;
	struct listener		**listeners;
	size_t			 nlisteners;
};

struct worker {
	int			 slot;		/* 0 .. workers-1 */
	int			 id;		/* unique, grows */
	pid_t			 pid;
	enum worker_state	 state;
	struct nc_ipc		*ipc;
	struct timespec		 started;
	int			 restarts;	/* of this slot */
	int			 inflight;	/* round-robin handoffs */
	struct inflight		*inflights;	/* sent, oldest first */
	struct inflight		*staging;	/* a frame being built */
	bool			 frames;	/* reads conn frames */
	unsigned long long	 handed;	/* connections it accepted */
	unsigned long		 refused_listens; /* listeners not its own */
	bool			*rr;		/* by listener id: registered */
	struct event		*kill_ev;	/* shutdown deadline */
	json_t			*last_count;
	json_t			*listening;	/* what it reported */
	struct timespec		 refused_at;	/* last `accepted: false` */
	int			 generation;
	bool			 adopted;	/* from the master before */
	struct worker		*next;		/* on the draining list */
	bool			 refused;
	bool			 killed;	/* by us: only its answers count */
	bool			 program;	/* handler program (channel or not) */
	bool			*granted;	/* cluster program: by listener
						   id, reported listening */
	size_t			 ngranted;
	unsigned long		 dropped;	/* messages it did not read */
	struct bufferevent	*msg_bev;	/* inherit program: messages */
	struct timespec		 msg_progress;	/* msg_bev: last bytes out */
	bool			 bp_paused;	/* not read: receivers behind */
	char			*command;	/* program: its path, or NULL */
	int			 exec_fd;	/* program: EOF once exec'd */
	struct event		*exec_ev;
	int			 out_fd;	/* program: its stdout, stderr */
	struct event		*out_ev;
	char			 out_line[PROGRAM_LINE_MAX];
	size_t			 out_len;
	bool			 out_cut;	/* skipping to the next newline */
};

/* main.c */
extern struct event_base	*master_base;
extern struct nc_config		*master_config;
extern struct service_rt	*master_services;
extern size_t			 master_nservices;
extern struct listener		**master_listeners;	/* by id */
extern size_t			 master_nlisteners;
extern int			 master_nworkers;
extern struct worker		**master_workers;	/* by slot */
extern bool			 master_stopping;
extern bool			 master_upgrading;	/* quiescing for exec */
extern struct timespec		 master_started;
extern int			 master_cli_workers;	/* -w, or 0 */
extern uid_t			 master_worker_uid;	/* -1: as the master */
extern gid_t			 master_worker_gid;

void	 fatalx(const char *, ...) __attribute__((noreturn, format(printf, 1, 2)));
void	 log_msg(int, const char *, ...) __attribute__((format(printf, 2, 3)));
#define log_errx(...)	log_msg(3, __VA_ARGS__)
#define log_warnx(...)	log_msg(4, __VA_ARGS__)
#define log_notice(...)	log_msg(5, __VA_ARGS__)
#define log_info(...)	log_msg(6, __VA_ARGS__)
#define log_debug(...)	log_msg(7, __VA_ARGS__)
void	 master_worker_gone(void);
double	 elapsed_s(const struct timespec *);

/* listener.c */
int	 listener_bind_all(char *err, size_t errlen);
int	 listener_build(struct service_rt *, size_t, int nworkers,
	    struct listener ***, size_t *, char *err, size_t errlen);
void	 listener_commit(struct listener **, size_t);
void	 listener_retired_close(void);
int	 listener_inherit(json_t *);
void	 listener_inherit_done(void);
json_t	*listener_export(void);
void	 listener_close_all(void);
void	 listener_stop_accepting(void);
struct listener *listener_find(const char *address, const char *service,
	    long long index);
int	 listener_fd_for(struct listener *, struct worker *);
void	 listener_dispatch(struct listener *);
void	 listener_requeue(struct handoff *);
bool	 listener_touched(int);
int	 listener_dup(int);
int	 listener_systemd_fd(const char *, char *, size_t, void *);
bool	 listener_held(const struct nc_listen_addr *, void *);
int	 listener_open(const struct nc_listen_addr *, int backlog,
	    char **unix_path, char *err, size_t errlen);
int	 listener_describe_fd(int fd, const char *text, char *bound,
	    size_t len);
void	 listener_worker_changed(void);

/* supervisor.c */
void	 supervisor_start(void);
void	 supervisor_stop(void);
void	 supervisor_reap(void);
int	 supervisor_send_conn(struct worker *, struct handoff *);
void	 supervisor_flush_conns(void);
int	 supervisor_count(json_t *request, void (*done)(json_t *, void *),
	    void *arg);
size_t	 supervisor_alive(void);
void	 supervisor_retry_later(void);
bool	 supervisor_all_online(void);
void	 supervisor_reload(void (*)(const char *, void *), void *);
struct worker *supervisor_draining(void);
json_t	*supervisor_export(void);
bool	 supervisor_busy(void);
int	 supervisor_adopt(json_t *);
void	 supervisor_on_handover(void (*)(const char *, void *), void *);
void	 master_upgrade(int client_fd, void (*)(const char *, void *),
	    void *);
void	 master_upgrade_ready(void);
void	 master_upgrade_exec(int client_fd) __attribute__((noreturn));
void	 master_upgrade_client_gone(void);
int	 supervisor_inflight(void);
void	 supervisor_online(struct worker *);
int	 supervisor_drop(void);
const struct service_rt *supervisor_program(void);
int	 supervisor_send(const char *service, json_t *msg, char *err,
	    size_t len);
void	 supervisor_broadcast(struct worker *from, json_t *v, const char *raw,
	    size_t rawlen, bool draining);
void	 supervisor_messages_drained(void);
struct worker *supervisor_next(struct worker *);
bool	 supervisor_any_online(void);
int	 supervisor_generation(void);
struct service_rt *service_by_name(const char *);
#define UPGRADE_QUIESCE_MS	2000
#define UPGRADE_POLL_MS		5	/* checks that HTTP answers went out */

int	 master_check_config(struct nc_config *, char **errors);

/* upgrade.c */
/*
 * For -V and -t of the new binary together; with UPGRADE_QUIESCE_MS it
 * stays below the control socket's idle timeout (10 s), so the client
 * that asked still gets the answer.
 */
#define UPGRADE_CHECK_MS	5000
extern char	 master_binary[];	/* the path we were started from */
void	 upgrade_binary_init(const char *given, const char *argv0);
bool	 upgrade_binary_changed(void);
void	 upgrade_check(const char *config,
	    void (*)(const char *, const char *, int, void *), void *);
bool	 upgrade_check_running(void);
bool	 upgrade_check_reaped(pid_t, int);
void	 upgrade_check_stop(void);

/* sockdiag.c */
void	 sockdiag_count(const struct service_rt *, struct worker **, int n,
	    int *counts);

/* program.c */
pid_t	 program_spawn(struct worker *, const struct service_rt *, int chan);
void	 program_adopt(struct worker *, int out_fd, int msg_fd);
int	 program_export(struct worker *);
void	 program_messages_open(struct worker *, int fd);
void	 program_messages_close(struct worker *);
bool	 program_messages_send(struct worker *, const char *line, size_t len);
void	 program_close(struct worker *);

/* notify.c */
void	 notify_start(void);
void	 notify_stop(void);
void	 notify_ready(void);
void	 notify_reloading(void);
void	 notify_stopping(void);
void	 notify_status(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 notify(const char *);

/* rest.c: an evconnlistener of the master's that rests when out of fds. */
struct evconnlistener;
struct lev_rest {
	const char		*what;		/* in logs; the stats key */
	bool			(*may_resume)(void *);	/* NULL: always */
	void			*arg;
	struct evconnlistener	*lev;
	struct event		*retry_ev;
	struct nc_accept_pause	 pause;
	struct lev_rest		*next;
};
void	 lev_rest_watch(struct lev_rest *, struct evconnlistener *);
void	 lev_rest_accepted(struct lev_rest *);
bool	 lev_rest_resting(const struct lev_rest *);
void	 lev_rest_stop(struct lev_rest *);

/* control.c */
int	 control_open(const char *path, char *err, size_t errlen);
void	 control_close(void);
void	 control_adopt(int fd, const char *from_version);
int	 control_clients(void);

/* metrics.c */
void	 stats_add(const char *family, const char *key, json_int_t);
void	 stats_restart(int status, bool backoff);
void	 stats_reload_begin(void);
void	 stats_reload_end(bool ok);
void	 stats_worker_answered(struct worker *, json_t *msg);
void	 stats_worker_gone(struct worker *);
json_t	*stats_export(void);
void	 stats_adopt(json_t *);
void	 metrics_collect(void (*)(json_t *, void *), void *);
struct evbuffer;
void	 metrics_text(json_t *families, struct evbuffer *);
void	 metrics_changed(void);
void	 metrics_free(void);

/* health.c */
extern bool	 master_draining;
bool	 health_ready(char *why, size_t len);
void	 health_drain(bool);
int	 health_prepare(const struct nc_config *, char *err, size_t errlen);
void	 health_abort(void);
void	 health_commit(void);
bool	 health_held(const struct nc_listen_addr *);
json_t	*health_export(void);
void	 health_inherit(json_t *);
int	 health_clients(void);
const char *health_bound(const char *what);
int	 health_agent_told(void);
void	 health_quiesce(void);
bool	 health_idle(void);
int	 health_open(char *err, size_t errlen);
void	 health_close(void);

#endif /* MASTER_H */
