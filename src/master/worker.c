/*
 * One worker: netcluster-worker forked and executed with its channel in
 * NETCLUSTER_CHANNEL_FD (a program goes through program.c), its states,
 * its stop and its kill, and its end. What happens to a worker is told
 * to the files above through hooks (worker_hook()): the round-robin
 * hand-off, the reloads, the counts and the log of readiness each hear
 * of it without this file knowing them.
 */

#include <sys/prctl.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "master.h"
#include "nc-ipc.h"

#define WORKER_HOOKS	8	/* per event */

static void	(*hooks[WEV_GONE + 1][WORKER_HOOKS])(struct worker *);

/* What a worker sends goes to dispatch.c's table: worker_dispatch(). */
static void	(*dispatch_msg)(struct worker *, json_t *, int *, size_t);
static void	(*dispatch_frame)(struct worker *,
		    const struct nc_ipc_frame *, int *, size_t);

static const char *const state_names[] = {
	[W_STARTING] = "starting",
	[W_ONLINE] = "online",
	[W_STOPPING] = "stopping",
	[W_DEAD] = "dead",
};

const char *
worker_state_name(enum worker_state s)
{
	return state_names[s];
}

/* fn(w) on every ev from now on, in the order the hooks were set. */
void
worker_hook(enum worker_event ev, void (*fn)(struct worker *))
{
	int	i;

	for (i = 0; i < WORKER_HOOKS && hooks[ev][i] != NULL; i++)
		;
	if (i == WORKER_HOOKS)
		fatalx("too many hooks on worker event %d", (int)ev);
	hooks[ev][i] = fn;
}

void
worker_event(struct worker *w, enum worker_event ev)
{
	int	i;

	for (i = 0; i < WORKER_HOOKS && hooks[ev][i] != NULL; i++)
		hooks[ev][i](w);
}

/* Where every worker's messages and frames go from now on. */
void
worker_dispatch(void (*msg)(struct worker *, json_t *, int *, size_t),
    void (*frame)(struct worker *, const struct nc_ipc_frame *, int *,
    size_t))
{
	dispatch_msg = msg;
	dispatch_frame = frame;
}

const char *
worker_binary(void)
{
	static char	 path[PATH_MAX];
	const char	*env = getenv("NETCLUSTER_WORKER");
	char		 self[PATH_MAX], *slash;
	ssize_t		 n;

	if (env != NULL && *env != '\0')
		return env;
	if (path[0] != '\0')
		return path;
	/* Beside netclusterd (a build tree), else where make install put it. */
	n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n > 0) {
		self[n] = '\0';
		if ((slash = strrchr(self, '/')) != NULL) {
			*slash = '\0';
			if ((size_t)snprintf(path, sizeof path,
			    "%s/netcluster-worker", self) < sizeof path &&
			    access(path, X_OK) == 0)
				return path;
		}
	}
	snprintf(path, sizeof path, "%s/netcluster-worker", PKGLIBEXECDIR);
	return path;
}

/* A worker of p for slot s (or none), to run def: a new id. */
struct worker *
worker_new(struct pool *p, struct slot *s, struct pooldef *def)
{
	struct worker	*w;

	if ((w = calloc(1, sizeof *w)) == NULL ||
	    (w->rr = calloc(MAX_LISTENER_IDS, sizeof *w->rr)) == NULL ||
	    (w->listening = json_array()) == NULL)
		fatalx("out of memory");
	w->pool = p;
	w->def = pooldef_ref(def);
	w->generation = def != NULL ? def->generation : 0;
	w->slot = s != NULL ? s->index : -1;
	w->id = master.next_worker_id++;
	w->restarts = s != NULL ? s->restarts : 0;
	w->exec_fd = w->out_fd = w->notify_fd = w->statm_fd = -1;
	w->state = W_STARTING;
	w->jitter = 1.0;
	TAILQ_INIT(&w->inflights);
	clock_gettime(CLOCK_MONOTONIC, &w->started);
	w->heard = w->started;
	return w;
}

/*
 * In a child: drops to the user and group of what it runs, supplementary
 * groups cleared, for good. Async-signal-safe; 0 or -1.
 */
int
worker_drop(const struct pooldef *def)
{
	uid_t	uid = def->svc->uid;
	gid_t	gid = def->svc->gid;

	if (gid != (gid_t)-1 && (setgroups(0, NULL) == -1 ||
	    setresgid(gid, gid, gid) == -1))
		return -1;
	if (uid != (uid_t)-1 && setresuid(uid, uid, uid) == -1)
		return -1;
	/* The drop above must hold: no way back to root. */
	if (uid != (uid_t)-1 && uid != 0 && setuid(0) == 0)
		return -1;
	return 0;
}

/*
 * Whatever a worker says shows it is alive (heartbeat.c): one that was
 * silent serves again, and takes its share again.
 */
void
worker_heard(struct worker *w)
{
	clock_gettime(CLOCK_MONOTONIC, &w->heard);
	if (w->silent) {
		w->silent = false;
		log_info("service %s: worker %d [pid %d] (slot %d) answers "
		    "again", w->pool->name, w->id, (int)w->pid, w->slot);
		worker_event(w, WEV_CHANGED);
	}
}

static void
worker_msg_cb(struct nc_ipc *ipc, json_t *msg, int *fds, size_t nfds,
    void *arg)
{
	(void)ipc;
	worker_heard(arg);
	dispatch_msg(arg, msg, fds, nfds);
}

static void
worker_frame_cb(struct nc_ipc *ipc, const struct nc_ipc_frame *f, int *fds,
    size_t nfds, void *arg)
{
	(void)ipc;
	worker_heard(arg);
	dispatch_frame(arg, f, fds, nfds);
}

static void
worker_error_cb(struct nc_ipc *ipc, const char *reason, void *arg)
{
	struct worker	*w = arg;

	(void)ipc;
	if (strcmp(reason, "closed") == 0) {
		log_debug("worker %d [pid %d]: channel closed", w->id,
		    (int)w->pid);
		return;		/* its exit is reaped */
	}
	log_err("worker %d [pid %d]: protocol error: %s", w->id, (int)w->pid,
	    reason);
	worker_kill(w, "protocol error");
}

/* The master's end of w's channel. */
void
worker_attach(struct worker *w, int fd)
{
	w->ipc = nc_ipc_new(master.base, fd, worker_msg_cb, worker_error_cb,
	    w);
	if (w->ipc == NULL)
		fatalx("out of memory");
	nc_ipc_set_frame_cb(w->ipc, worker_frame_cb);
	worker_event(w, WEV_CHANGED);
}

/*
 * Forks and executes netcluster-worker for w with chan, the child's end
 * of its channel, at fd 3. The pid; fatal if fork fails.
 */
pid_t
worker_exec(struct worker *w, int chan)
{
	const char	*bin = worker_binary();
	char		 env[32];
	pid_t		 pid;

	switch (pid = fork()) {
	case -1:
		fatalx("fork: %s", strerror(errno));
	case 0:
		/* The child: only async-signal-safe calls until exec. */
		(void)setpgid(0, 0);	/* its process group: its tree */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (worker_drop(w->def) == -1)
			_exit(126);
		/* PR_SET_PDEATHSIG is cleared by a change of credentials. */
		(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (chan != 3) {
			if (dup2(chan, 3) == -1)
				_exit(127);
			close(chan);
		} else
			(void)fcntl(3, F_SETFD, 0);
		setenv("NETCLUSTER_CHANNEL_FD", "3", 1);
		snprintf(env, sizeof env, "%d", w->id);
		setenv("NETCLUSTER_WORKER_ID", env, 1);
		setenv("NETCLUSTER_SERVICE", w->pool->name, 1);
		setenv(NC_IPC_FRAMES_ENV, "1", 1);	/* reads message frames */
		/* systemd speaks to the master only. */
		unsetenv("NOTIFY_SOCKET");
		unsetenv("WATCHDOG_USEC");
		unsetenv("WATCHDOG_PID");
		execl(bin, "netcluster-worker", (char *)NULL);
		_exit(127);
	default:
		break;
	}
	(void)setpgid(pid, pid);	/* before the child's own, too */
	return pid;
}

/* w serves: it said `ready`, a program's exec succeeded or it listens. */
void
worker_online(struct worker *w)
{
	w->state = W_ONLINE;
	w->ever_online = true;
	log_info("service %s: worker %d [pid %d] (slot %d) online",
	    w->pool->name, w->id, (int)w->pid, w->slot);
	worker_event(w, WEV_ONLINE);
}

void
worker_send(struct worker *w, json_t *msg)
{
	if (msg == NULL) {
		log_err("out of memory sending to worker %d", w->id);
		return;
	}
	if (w->ipc != NULL)
		(void)nc_ipc_send(w->ipc, msg, NULL, 0);
	json_decref(msg);
}

static void
worker_kill_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;

	(void)fd;
	(void)what;
	log_warnx("worker %d [pid %d]: still running after %d ms; killing it",
	    w->id, (int)w->pid, gen_shutdown_ms());
	worker_signal(w, SIGKILL);
}

/*
 * sig to w's whole process group, so nothing a program started outlives
 * it (a worker from a master before process groups: to it alone).
 */
void
worker_signal(struct worker *w, int sig)
{
	if (w->pid > 0 && kill(-w->pid, sig) == -1 && errno == ESRCH)
		(void)kill(w->pid, sig);
}

/* `stop`: it closes its servers and drains; killed after the timeout. */
void
worker_stop(struct worker *w)
{
	struct timeval	tv;
	int		ms = gen_shutdown_ms();

	if (w->state == W_STOPPING || w->state == W_DEAD)
		return;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	w->state = W_STOPPING;
	/* A program without a channel: SIGTERM is its `stop`. */
	if (w->ipc == NULL)
		worker_signal(w, SIGTERM);
	else
		worker_send(w, json_pack("{s:s}", "type", "stop"));
	w->kill_ev = evtimer_new(master.base, worker_kill_cb, w);
	if (w->kill_ev != NULL)
		(void)evtimer_add(w->kill_ev, &tv);
	worker_event(w, WEV_CHANGED);
}

/*
 * Kills a worker that broke the protocol or cannot run. It gets nothing
 * more; its hand-offs are decided once it is reaped and everything it
 * sent has been read (worker_detach).
 */
void
worker_kill(struct worker *w, const char *why)
{
	if (w->killed || w->state == W_DEAD)
		return;
	log_warnx("worker %d [pid %d]: killing it: %s", w->id, (int)w->pid,
	    why);
	w->killed = true;
	worker_signal(w, SIGKILL);
	w->state = W_STOPPING;
	memset(w->rr, 0, MAX_LISTENER_IDS * sizeof *w->rr);
	worker_event(w, WEV_CHANGED);
}

/*
 * The worker is gone: everything it sent is read first (a connection it
 * took, its conn.ack behind its death, is never handed to a second
 * worker), then the files above let go of it, then the channel closes.
 */
void
worker_detach(struct worker *w)
{
	memset(w->rr, 0, MAX_LISTENER_IDS * sizeof *w->rr);
	if (w->ipc != NULL)
		nc_ipc_drain(w->ipc, NC_IPC_MAX_QUEUE);
	worker_event(w, WEV_DETACHED);
	if (w->ipc != NULL) {
		nc_ipc_free(w->ipc);
		w->ipc = NULL;
	}
}

void
worker_free(struct worker *w)
{
	worker_event(w, WEV_GONE);
	if (w->kill_ev != NULL)
		event_free(w->kill_ev);
	if (w->ready_ev != NULL)
		event_free(w->ready_ev);
	if (w->notify_ev != NULL)
		event_free(w->notify_ev);
	if (w->notify_fd != -1)
		close(w->notify_fd);
	if (w->statm_fd != -1)
		close(w->statm_fd);
	free(w->status);
	json_decref(w->last_count);
	json_decref(w->listening);
	pooldef_unref(w->def);
	free(w->granted);
	free(w->command);
	free(w->rr);
	free(w);
}
