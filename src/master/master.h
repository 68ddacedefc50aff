/*
 * netclusterd: the master. It binds the listeners of the configuration,
 * runs a pool of workers per service, answers their handle requests over
 * the channel, accepts for round-robin services, sums figures, and serves
 * the control socket, the metrics and the agent.
 *
 * The state is one value, struct generation: the configuration, its
 * pools and their listeners. It is built aside by one builder (build.c)
 * for startup, a reload, a reload of one service, a scale and an upgrade,
 * and swapped in by one pointer (master.gen). Pools and listeners live
 * across generations; what a pool's workers run is a pooldef, shared by
 * its slots and workers and freed with the last of them.
 *
 * The files call down, never up: a worker's news (online, gone, its
 * state changed) reaches the files above through the hooks of worker.c.
 */

#ifndef MASTER_H
#define MASTER_H

#include <sys/queue.h>
#include <sys/types.h>

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "nc-accept.h"
#include "nc-config.h"
#include "nc-ipc.h"
#include "nc-log.h"

#ifndef TAILQ_FOREACH_SAFE
#define TAILQ_FOREACH_SAFE(var, head, field, tvar)			\
	for ((var) = TAILQ_FIRST(head);					\
	    (var) != NULL && ((tvar) = TAILQ_NEXT(var, field), 1);	\
	    (var) = (tvar))
#endif

struct bufferevent;
struct evbuffer;
struct event;
struct event_base;
struct evconnlistener;
struct nc_ipc;

#define MAX_LISTENER_IDS	4096	/* listeners alive at once, reloads too */
#define PROGRAM_LINE_MAX	896	/* bytes of a program's log line */
#define PROGRAM_READ_MAX	65536	/* bytes read from it per event */
#define BROADCAST_QUEUE_MAX	(1024 * 1024)	/* bytes waiting for a worker */
#define UPGRADE_QUIESCE_MS	2000
#define UPGRADE_POLL_MS		5	/* checks that the exec may happen */
#define UPGRADE_CHECK_MS	5000	/* -V and -t of the new binary */

/* A checked configuration, shared by what was built from it. */
struct conf {
	int			 refs;
	struct nc_config	*cfg;
	int			 text_fd;	/* its text, sealed: init */
};

/* A connection accepted by the master, on its way to a worker. */
struct handoff {
	int			 fd;
	struct listener		*listener;
	struct worker		*worker;	/* NULL while queued */
	int			 tries;
	TAILQ_ENTRY(handoff)	 entry;
};
TAILQ_HEAD(handoff_queue, handoff);

/*
 * One listen address of a service: one socket, or one per slot
 * (reuseport, exclusive). Kept by every pooldef that listens there;
 * closed with the last one.
 */
struct listener {
	int			 refs;
	int			 id;		/* in `conn` and `listen.result` */
	struct conf		*conf;		/* holds svc and addr */
	const struct nc_service	*svc;
	const struct nc_listen_addr *addr;
	char			*text;		/* the listen string */
	int			*fds;		/* one, or one per slot */
	size_t			 nfds;
	char			 bound[160];	/* what it really bound */
	int			 port;		/* the real port, or -1 */
	char			*unix_path;	/* a file we made: unlinked */
	struct pool		*pool;		/* whose it is */
	unsigned		 build;		/* the last build that took it */
	/* Round-robin, and reuseport slots without a worker (handoff.c). */
	struct handoff_queue	 queue;		/* accepted, not handed */
	size_t			 qlen;
	struct event		*accept_ev;
	struct event		**slot_evs;	/* reuseport: per socket */
	size_t			 nslot_evs;
	size_t			 rr_next;
	unsigned long long	 accepted;
	unsigned long long	 handed;
	unsigned long long	 refused;
	unsigned long long	 requeued;
};

/* What a pool's workers run: a service as one configuration defines it. */
struct pooldef {
	int			 refs;
	struct conf		*conf;
	const struct nc_service	*svc;
	struct listener		**listeners;	/* in the order of "listen" */
	size_t			 nlisteners;
	int			 generation;	/* of the workers it starts */
};

enum worker_state {
	W_STARTING,	/* forked, not yet online */
	W_ONLINE,	/* serves */
	W_STOPPING,	/* told to stop, draining */
	W_DEAD
};

struct inflight;

struct worker {
	int			 id;		/* unique, grows */
	pid_t			 pid;
	enum worker_state	 state;
	struct pool		*pool;
	struct pooldef		*def;		/* what it runs (a ref) */
	int			 generation;	/* of its def, or adopted */
	int			 slot;		/* its slot's number */
	bool			 incoming;	/* a rollout's, not yet in */
	TAILQ_ENTRY(worker)	 entry;		/* the pool's draining list */
	struct nc_ipc		*ipc;
	struct timespec		 started;
	int			 restarts;	/* of its slot, when started */
	bool			 ever_online;
	bool			 killed;	/* by us: only answers count */
	const char		*cause;		/* why we ended it, for the
						   metrics: "timeout", ... */
	const char		*cause_code;
	/* heartbeat.c, ready.c, recycle.c */
	struct timespec		 heard;		/* its last word, or ping */
	struct timespec		 pinged;
	bool			 heartbeat;	/* answers `ping` */
	bool			 beats;		/* and `beat`: pongs unasked */
	int			 beat_ms;	/* the `beat` it was sent */
	bool			 silent;	/* not heard of late */
	unsigned long long	 accepted;	/* connections it took */
	double			 jitter;	/* its recycle limits' factor */
	double			 recycle_after;	/* s of master.started */
	struct event		*ready_ev;	/* settle, or ready timeout */
	int			 notify_fd;	/* its NOTIFY_SOCKET, or -1 */
	int			 statm_fd;	/* its /proc/PID/statm, once
						   read (recycle.c), or -1 */
	struct event		*notify_ev;
	char			*status;	/* its STATUS= */
	unsigned long		 foreign_notes;	/* from other processes */
	bool			 adopted;	/* from the master before */
	struct event		*kill_ev;	/* the stop's deadline */
	/* handoff.c */
	bool			*rr;		/* by listener id: takes conns */
	bool			 frames;	/* reads conn frames */
	int			 inflight;
	TAILQ_HEAD(, inflight)	 inflights;	/* sent, oldest first */
	struct inflight		*staging;	/* a frame being built */
	bool			 refused;	/* a full worker: wait */
	struct timespec		 refused_at;
	unsigned long long	 handed;
	/* dispatch.c */
	unsigned long		 refused_listens;
	json_t			*listening;	/* what it reported */
	bool			*granted;	/* cluster program: listeners */
	size_t			 ngranted;
	/* count.c, stats.c */
	json_t			*last_count;
	/* broadcast.c */
	unsigned long		 dropped;
	bool			 msg_frames;	/* reads message frames */
	unsigned long		 bad_messages;	/* its payloads not JSON */
	struct bufferevent	*msg_bev;	/* inherit program: messages */
	struct timespec		 msg_progress;
	bool			 bp_paused;
	/* program.c */
	bool			 program;
	char			*command;
	int			 exec_fd;
	struct event		*exec_ev;
	int			 out_fd;
	struct event		*out_ev;
	char			 out_line[PROGRAM_LINE_MAX];
	size_t			 out_len;
	bool			 out_cut;
};
TAILQ_HEAD(worker_list, worker);

/* A place in a pool: one worker at a time, restarted when it dies. */
struct slot {
	struct pool		*pool;
	int			 index;
	struct pooldef		*def;		/* what it starts (a ref) */
	struct worker		*worker;	/* serving, or NULL */
	struct worker		*next;		/* a rollout's, starting */
	int			 deaths;	/* young, in a row */
	int			 backoff_ms;
	int			 restarts;
	struct event		*restart_ev;
};

struct rollout;

/* One service's workers; lives across generations. */
struct pool {
	char			*name;
	struct pooldef		*def;		/* what new slots run */
	int			 size;		/* slots wanted */
	int			 file_size;	/* the configuration's */
	struct slot		**slots;
	int			 nslots;	/* >= size while shrinking */
	struct worker_list	 draining;	/* told to stop */
	struct rollout		*rollout;	/* a reload under way */
	bool			 retired;	/* gone from the configuration */
	unsigned long long	 restarts;
	TAILQ_ENTRY(pool)	 entry;		/* master.retired */
};
TAILQ_HEAD(pool_list, pool);

/* What runs now: built aside, swapped in whole. */
struct generation {
	struct conf		*conf;		/* the top-level settings */
	struct pool		**pools;	/* a pool per service, in order */
	size_t			 npools;
	struct listener		**listeners;	/* every pool's */
	size_t			 nlisteners;
};

struct master {
	struct event_base	*base;
	struct generation	*gen;
	struct pool_list	 retired;	/* removed pools, draining */
	bool			 stopping;
	bool			 upgrading;	/* quiescing for the exec */
	bool			 draining;	/* netclusterctl drain */
	const char		*operation;	/* "reload", "scale", "upgrade" */
	struct timespec		 started;
	int			 cli_workers;	/* -w, or 0 */
	int			 cli_level;	/* -l, or 0 */
	int			 next_worker_id;
	int			 next_generation;
};
extern struct master	 master;

/* gen.c: the state and walks over it (no file below it). */
double	 gen_elapsed_s(const struct timespec *);
long	 gen_ms_between(const struct timespec *, const struct timespec *);
struct pool *gen_pool(const char *name);
struct worker *gen_next_worker(struct worker *);
struct worker *gen_worker_by_id(int id);
struct worker *gen_worker_by_pid(pid_t);
int	 gen_slots(void);
int	 gen_alive(void);
int	 gen_online(void);
bool	 gen_all_online(void);
const struct nc_config *gen_config(void);
bool	 gen_busy(char *why, size_t len);
int	 gen_shutdown_ms(void);
bool	 gen_worker_serves(const struct worker *);
int	 gen_pool_alive(const struct pool *);
int	 gen_pool_online(const struct pool *);

/* conf.c: a checked configuration, shared. */
struct conf *conf_new(struct nc_config *);
struct conf *conf_ref(struct conf *);
void	 conf_unref(struct conf *);

/* pooldef.c: what a pool's workers run. */
struct pooldef *pooldef_new(struct conf *, const struct nc_service *,
	    struct listener **, size_t, int generation);
struct pooldef *pooldef_ref(struct pooldef *);
void	 pooldef_unref(struct pooldef *);

/* worker.c: one worker, and the hooks that carry its news up. */
enum worker_event {
	WEV_STARTED,		/* forked, its pid known */
	WEV_ONLINE,		/* it serves now */
	WEV_CHANGED,		/* stopping, killed, or its listeners */
	WEV_DETACHED,		/* gone: its channel was read to the end */
	WEV_GONE		/* reaped and unlinked, about to be freed */
};
void	 worker_hook(enum worker_event, void (*)(struct worker *));
void	 worker_event(struct worker *, enum worker_event);
struct worker *worker_new(struct pool *, struct slot *,
	    struct pooldef *);
pid_t	 worker_exec(struct worker *, int chan);
void	 worker_attach(struct worker *, int fd);
void	 worker_online(struct worker *);
void	 worker_send(struct worker *, json_t *);
void	 worker_stop(struct worker *);
void	 worker_kill(struct worker *, const char *why);
void	 worker_signal(struct worker *, int sig);
void	 worker_heard(struct worker *);
void	 worker_detach(struct worker *);
void	 worker_free(struct worker *);
const char *worker_state_name(enum worker_state);
int	 worker_drop(const struct pooldef *);
const char *worker_binary(void);
void	 worker_dispatch(void (*)(struct worker *, json_t *, int *, size_t),
	    void (*)(struct worker *, const struct nc_ipc_frame *, int *,
	    size_t));

/* program.c: a program in place of netcluster-worker. */
pid_t	 program_spawn(struct worker *, int chan);
void	 program_adopt(struct worker *, int out_fd);
void	 program_export(struct worker *);
void	 program_close(struct worker *);

/* pool.c: slots, spawning, reaping, back-off, scaling. */
struct pool *pool_new(const char *name);
void	 pool_free(struct pool *);
void	 pool_set(struct pool *, struct pooldef *, int size);
void	 pool_slots(struct pool *, int n);
void	 pool_spawn(struct slot *, bool incoming);
void	 pool_renew(struct slot *);
struct worker *pool_take_over(struct slot *);
void	 pool_cancel_next(struct pool *);
void	 pool_start(struct pool *);
int	 pool_resize(struct pool *, int size);
void	 pool_refill(struct pool *);
void	 pool_retire(struct pool *);
void	 pool_stop_all(void);
void	 pool_drain_worker(struct worker *);
bool	 pool_reaped(pid_t, int status);
json_t	*pool_export(void);
void	 pool_adopt(json_t *);

/* listener.c: binding, keeping across reloads, handing over. */
struct listener *listener_get(struct conf *, const struct nc_service *,
	    const struct nc_listen_addr *, int nslots, unsigned build,
	    bool any, char *err, size_t errlen);
int	 listener_grow(struct listener *, int nslots, char *err, size_t);
void	 listener_claim(struct listener *, struct pool *, struct conf *,
	    const struct nc_service *, const struct nc_listen_addr *);
struct listener *listener_ref(struct listener *);
void	 listener_unref(struct listener *);
void	 listener_shrink(struct listener *, int nslots);
int	 listener_fd_for(const struct listener *, int slot);
struct listener *listener_find(const struct pooldef *, const char *address,
	    long long index);
int	 listener_systemd_fd(const char *, char *, size_t, void *);
bool	 listener_held(const struct nc_listen_addr *);
int	 listener_open(const struct nc_listen_addr *, int backlog,
	    char **unix_path, char *err, size_t errlen);
int	 listener_describe_fd(int fd, const char *text, char *bound,
	    size_t len);
int	 listener_inherit(json_t *);
json_t	*listener_take_queued(struct listener *);
void	 listener_inherit_done(void);
json_t	*listener_export(void);
void	 listener_close_all(void);

/* handoff.c: round-robin, from the accept to the worker's ack. */
int	 handoff_events(struct listener *);
void	 handoff_dispatch(struct listener *);
void	 handoff_dispatch_all(void);
void	 handoff_accepting(void);
void	 handoff_quiet(struct listener *);
void	 handoff_queue_fds(struct listener *, json_t *fds);
const char *handoff_conn_ack(struct worker *, long long seq,
	    uint64_t accepted, size_t n, bool frame);
int	 handoff_inflight(void);
int	 handoff_dup(int);
void	 handoff_init(void);
void	 handoff_close(void);

/* dispatch.c: what a worker may send, and the answers. */
void	 dispatch_init(void);

/* broadcast.c: messages between workers, and from the operator. */
void	 broadcast(struct worker *from, json_t *v, const char *raw,
	    size_t rawlen, bool draining);
void	 broadcast_frame(struct worker *from, const char *payload,
	    size_t len, bool draining);
int	 broadcast_send(const char *service, json_t *v, char *err, size_t);
void	 broadcast_line_open(struct worker *, int fd);
void	 broadcast_line_close(struct worker *);
int	 broadcast_line_fd(struct worker *);
void	 broadcast_init(void);

/* count.c: getConnections over every worker. */
int	 count_round(void (*)(json_t *, void *), void *);
void	 count_reply(struct worker *, json_t *msg);
void	 count_init(void);

/* sockdiag.c */
void	 sockdiag_count(const struct pooldef *, struct worker **, int n,
	    int *counts);

/* check.c: the configuration checked off the loop, in a child. */
int	 check_config(struct nc_config *, char **errors);
struct check_job;
struct check_job *check_file(const char *path,
	    void (*)(struct nc_config *, const char *errors, void *), void *);
void	 check_cancel(struct check_job *);
bool	 check_reaped(pid_t, int);

/* build.c: a generation built aside, swapped in. */
enum build_kind {
	BUILD_ALL,		/* startup, reload: every pool renewed */
	BUILD_SERVICE,		/* reload SERVICE */
	BUILD_SCALE		/* scale SERVICE */
};
struct build {
	enum build_kind		 kind;
	struct conf		*conf;		/* ALL, SERVICE: the new one */
	const char		*service;	/* SERVICE, SCALE */
	int			 size;		/* SCALE */
	struct generation	*gen;		/* built */
	bool			*renew;		/* by pool: a new generation */
};
int	 build_prepare(struct build *, char *err, size_t errlen);
void	 build_abort(struct build *);
void	 build_commit(struct build *);
void	 build_free(struct generation *);

/* reload.c: reloads, whole or of one service. */
void	 reload(const char *service, int batch, void (*)(const char *,
	    void *), void *);
void	 reload_on_handover(void (*)(const char *, void *), void *);
void	 reload_start_all(void);
void	 reload_stop(void);

/* rollout.c: a pool brought over to its new definition, in batches. */
void	 rollout_start(struct pool *, int batch,
	    void (*)(struct pool *, const char *));
json_t	*rollout_progress(const struct pool *);
void	 rollout_stop_all(void);
void	 rollout_init(void);

/* scale.c: a pool's size changed while it serves. */
void	 scale(const char *service, int size, int delta,
	    void (*)(const char *, json_t *, void *), void *);
void	 scale_stop(void);
void	 scale_init(void);

/* ready.c: when a worker is online; a program's NOTIFY_SOCKET. */
int	 ready_socket(struct worker *, char *addr, size_t len);
void	 ready_exec(struct worker *);
void	 ready_init(void);

/* heartbeat.c: hung workers. */
void	 heartbeat_hung(struct worker *, const char *why);
void	 heartbeat_pong(struct worker *, json_t *);
void	 heartbeat_init(void);
void	 heartbeat_stop(void);

/* recycle.c: workers replaced at their limits. */
void	 recycle_init(void);
void	 recycle_stop(void);

/* stats.c: what the master counts, and the workers' counters summed. */
void	 stats_add(const char *family, const char *key, json_int_t);
void	 stats_set(const char *family, const char *key, json_int_t);
json_int_t stats_get(const char *family, const char *key);
void	 stats_restart(const char *service, int status);
void	 stats_restart_cause(const char *service, const char *cause,
	    const char *code);
void	 stats_reload_begin(void);
void	 stats_reload_end(bool ok);
double	 stats_reload_seconds(void);
void	 stats_worker_answered(struct worker *, json_t *msg);
json_t	*stats_counters(void);
json_t	*stats_workers_sum(void);
json_t	*stats_export(void);
void	 stats_adopt(json_t *);
void	 stats_free(void);
void	 stats_init(void);

/* metrics.c: Prometheus families from stats and a count round. */
void	 metrics_collect(void (*)(json_t *, void *), void *);
void	 metrics_text(json_t *families, struct evbuffer *);
void	 metrics_free(void);

/* health.c: ready, drain, the agent's answer. */
bool	 health_ready(char *why, size_t len);
void	 health_drain(bool);
void	 health_agent_start(int fd);
void	 health_agent_stop(void);
int	 health_agent_told(void);
void	 health_quiesce(void);

/* http.c: GET /metrics, /ready, /live. */
void	 http_start(int fd);
void	 http_stop(void);
void	 http_quiesce(void);
void	 http_close(void);
bool	 http_idle(void);

/* endpoint.c: the metrics and agent listeners' sockets. */
int	 endpoint_prepare(const struct nc_config *, char *err, size_t);
void	 endpoint_abort(void);
void	 endpoint_commit(void);
bool	 endpoint_held(const struct nc_listen_addr *);
const char *endpoint_bound(const char *what);
json_t	*endpoint_export(void);
void	 endpoint_inherit(json_t *);
void	 endpoint_close(void);

/* notify.c: systemd's notification protocol. */
void	 notify_start(void);
void	 notify_stop(void);
void	 notify_ready(void);
void	 notify_reloading(void);
void	 notify_stopping(void);
void	 notify_status(const char *, ...) __attribute__((format(printf, 1, 2)));
void	 notify(const char *);

/* rest.c: an evconnlistener of the master's that rests out of fds. */
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

/* binary.c: the binary an upgrade executes, and its check. */
const char *binary_path(void);
void	 binary_init(const char *given, const char *argv0);
bool	 binary_changed(void);
bool	 binary_checking(void);
bool	 binary_reaped(pid_t, int);
void	 binary_check(const char *config,
	    void (*)(const char *, const char *, int, void *), void *);
void	 binary_check_stop(void);

/* upgrade.c: the binary replaced in place, same pid. */
void	 upgrade(int client_fd, void (*)(const char *, void *), void *);
void	 upgrade_client_gone(void);
json_t	*upgrade_state(char **argv);
void	 upgrade_close(void);

/* command.c: what the operator asks, from one table. */
struct request;
void	 command_run(const struct request *, int client_fd,
	    void (*reply)(json_t *, void *), void *);
void	 command_upgraded(int client_fd, const char *from_version,
	    void (*reply)(json_t *, void *), void *);

/* control.c: the control socket. */
int	 control_open(const char *path, char *err, size_t errlen);
void	 control_close(void);
void	 control_adopt(int fd, const char *from_version);

#endif /* MASTER_H */
