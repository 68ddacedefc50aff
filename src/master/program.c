/*
 * Programs: a service with "handler": "program" runs the operator's own
 * executable in place of netcluster-worker. With "sockets": "inherit" it
 * gets its listening sockets as systemd passes them (sd_listen_fds(3):
 * fds from 3, LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES) and has no channel
 * to the master: it is online once exec() succeeded (a close-on-exec pipe
 * reports a failure, EOF a success) and is stopped with SIGTERM. With
 * "sockets": "cluster" it links libnetcluster and gets the channel at fd
 * 3 (NETCLUSTER_CHANNEL_FD), as netcluster-worker does: it is online once
 * it listens on every listener of its service, and `stop` stops it.
 * Either way, what it writes on stdout and stderr goes into the master's
 * log, a line at a time, with its worker id, and it finds its id and
 * service in NETCLUSTER_WORKER_ID and NETCLUSTER_SERVICE.
 */

#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "master.h"
#include "netcluster.h"

/* What the child reports on the exec pipe when it cannot run the program. */
enum program_stage {
	PS_DROP = 1,	/* setgroups, setresgid, setresuid */
	PS_FDS,		/* placing the sockets at 3, 4, ... */
	PS_CWD,		/* chdir to cwd */
	PS_EXEC		/* execv */
};

static const char *const stage_names[] = {
	[PS_DROP] = "dropping privileges",
	[PS_FDS] = "placing its sockets",
	[PS_CWD] = "changing to its cwd",
	[PS_EXEC] = "exec",
};

static void	program_exec_cb(evutil_socket_t, short, void *);
static void	program_output_cb(evutil_socket_t, short, void *);

static void __attribute__((noreturn))
program_child_fail(int fd, enum program_stage stage)
{
	int	rep[2] = { (int)stage, errno };
	ssize_t	n;

	n = write(fd, rep, sizeof rep);
	(void)n;
	_exit(127);
}

/*
 * The child, between fork and exec: only async-signal-safe calls, except
 * for the environment (the master runs one thread). fds are the
 * service's listening sockets, in the order of "listen", or (chan) the
 * channel alone.
 */
/* What the child's environment says of it, beyond its service's. */
struct program_env {
	const char	*names;		/* LISTEN_FDNAMES */
	const char	*notify;	/* NOTIFY_SOCKET, or NULL */
	bool		 chan;		/* NETCLUSTER_CHANNEL_FD at 3 */
	int		 id;		/* NETCLUSTER_WORKER_ID */
	int		 mfd;		/* its line channel, or -1 */
};

static void __attribute__((noreturn))
program_child(const struct pooldef *def, const int *fds, int *tmp, int n,
    int ep, int op, const struct program_env *pe)
{
	const struct nc_service	*conf = def->svc;
	sigset_t	 none;
	char		 num[32];
	int		 lo = 3 + n, out, devnull, j, sig;

	/*
	 * A clean slate of signals first: the master's handlers would write
	 * into its own signal pipe, and dispositions and mask survive exec.
	 */
	for (sig = 1; sig < NSIG; sig++)
		(void)signal(sig, SIG_DFL);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	/* A process group of its own: its whole tree is signalled as one. */
	(void)setpgid(0, 0);
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (worker_drop(def) == -1)
		program_child_fail(ep, PS_DROP);
	/* PR_SET_PDEATHSIG is cleared by a change of credentials. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);

	/* Everything we keep goes above 3 + n first, then into place. */
	if ((ep = fcntl(ep, F_DUPFD_CLOEXEC, lo)) == -1)
		_exit(127);
	if ((out = fcntl(op, F_DUPFD_CLOEXEC, lo)) == -1)
		program_child_fail(ep, PS_FDS);
	for (j = 0; j < n; j++)
		if ((tmp[j] = fcntl(fds[j], F_DUPFD_CLOEXEC, lo)) == -1)
			program_child_fail(ep, PS_FDS);
	for (j = 0; j < n; j++)
		if (dup2(tmp[j], 3 + j) == -1)	/* clears FD_CLOEXEC */
			program_child_fail(ep, PS_FDS);
	if ((devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1 ||
	    dup2(devnull, 0) == -1 || dup2(out, 1) == -1 || dup2(out, 2) == -1)
		program_child_fail(ep, PS_FDS);
	/* Nothing else of the master's reaches the program. */
	if (close_range((unsigned)lo, ~0U, CLOSE_RANGE_CLOEXEC) == -1)
		for (j = lo; j < 65536; j++)
			(void)fcntl(j, F_SETFD, FD_CLOEXEC);

	unsetenv("NOTIFY_SOCKET");	/* systemd speaks to the master */
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	unsetenv("NETCLUSTER_CHANNEL_FD");
	unsetenv("NETCLUSTER_MESSAGE_FD");
	unsetenv(NC_IPC_FRAMES_ENV);
	unsetenv("NODE_CHANNEL_FD");
	unsetenv("NODE_CHANNEL_SERIALIZATION_MODE");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	for (j = 0; j < (int)conf->nenv; j++)
		(void)putenv(conf->env[j]);
	snprintf(num, sizeof num, "%d", pe->id);
	setenv("NETCLUSTER_WORKER_ID", num, 1);
	if (pe->notify != NULL) {
		/* systemd's Type=notify, from the master. */
		setenv("NOTIFY_SOCKET", pe->notify, 1);
		if (conf->has_worker_timeout && conf->worker_timeout_ms > 0) {
			snprintf(num, sizeof num, "%lld",
			    (long long)conf->worker_timeout_ms * 1000);
			setenv("WATCHDOG_USEC", num, 1);
			snprintf(num, sizeof num, "%d", (int)getpid());
			setenv("WATCHDOG_PID", num, 1);
		}
	}
	setenv("NETCLUSTER_SERVICE", conf->name, 1);
	if (pe->chan) {
		setenv("NETCLUSTER_CHANNEL_FD", "3", 1);
		setenv(NC_IPC_FRAMES_ENV, "1", 1);	/* reads message frames */
	} else {
		/* The message channel, if any, is the last fd: not a socket
		 * of LISTEN_FDS. */
		snprintf(num, sizeof num, "%d", pe->mfd != -1 ? n - 1 : n);
		setenv("LISTEN_FDS", num, 1);
		snprintf(num, sizeof num, "%d", (int)getpid());
		setenv("LISTEN_PID", num, 1);
		setenv("LISTEN_FDNAMES", pe->names, 1);
	}
	if (pe->mfd != -1) {
		/* Newline-delimited JSON: Node's own IPC channel. */
		snprintf(num, sizeof num, "%d", 3 + n - 1);
		setenv("NETCLUSTER_MESSAGE_FD", num, 1);
		setenv("NODE_CHANNEL_FD", num, 1);
		setenv("NODE_CHANNEL_SERIALIZATION_MODE", "json", 1);
	}
	if (conf->cwd != NULL && chdir(conf->cwd) == -1)
		program_child_fail(ep, PS_CWD);
	execv(conf->command[0], conf->command);
	program_child_fail(ep, PS_EXEC);
}

static int
program_nonblock(int fd)
{
	int	flags = fcntl(fd, F_GETFL);

	return flags == -1 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static void
program_watch_output(struct worker *w, int fd)
{
	w->out_fd = fd;
	(void)program_nonblock(fd);
	w->out_ev = event_new(master.base, fd, EV_READ | EV_PERSIST,
	    program_output_cb, w);
	if (w->out_ev == NULL || event_add(w->out_ev, NULL) == -1)
		fatalx("out of memory");
}

/*
 * Forks and execs the program of w's definition (its slot picks the
 * reuseport sockets); chan, if not -1, is the child's end of its channel,
 * which it gets in place of the sockets. Returns the pid; fatal only
 * where spawning a netcluster-worker is (fork, pipes, memory).
 */
pid_t
program_spawn(struct worker *w, int chan)
{
	const struct pooldef	*def = w->def;
	const struct nc_service	*conf = def->svc;
	struct program_env	 pe;
	char			*names, notify[128];
	size_t			 len, j;
	int			 ep[2], op[2], mp[2] = { -1, -1 }, *fds, *tmp, n;
	pid_t			 pid;

	if (chan == -1 && conf->messages && socketpair(AF_UNIX,
	    SOCK_STREAM | SOCK_CLOEXEC, 0, mp) == -1)
		fatalx("socketpair: %s", strerror(errno));
	n = chan != -1 ? 1 : (int)def->nlisteners + (mp[1] != -1);
	len = (strlen(conf->name) + 1) * (size_t)(n > 0 ? n : 1);
	fds = calloc((size_t)n + 1, sizeof *fds);
	tmp = calloc((size_t)n + 1, sizeof *tmp);
	names = calloc(1, len + 1);
	if (fds == NULL || tmp == NULL || names == NULL)
		fatalx("out of memory");
	if (chan != -1)
		fds[0] = chan;
	if (mp[1] != -1)
		fds[n - 1] = mp[1];
	/* Every socket is named for the service, in the order of listen. */
	for (j = 0; chan == -1 && j < def->nlisteners; j++) {
		fds[j] = listener_fd_for(def->listeners[j], w->slot);
		if (j > 0)
			strcat(names, ":");
		strcat(names, conf->name);
	}
	if (pipe2(ep, O_CLOEXEC) == -1 || pipe2(op, O_CLOEXEC) == -1)
		fatalx("pipe: %s", strerror(errno));
	memset(&pe, 0, sizeof pe);
	pe.names = names;
	pe.chan = chan != -1;
	pe.id = w->id;
	pe.mfd = mp[1];
	if (chan == -1 && conf->notify && ready_socket(w, notify,
	    sizeof notify) == 0)
		pe.notify = notify;

	switch (pid = fork()) {
	case -1:
		fatalx("fork: %s", strerror(errno));
	case 0:
		close(ep[0]);
		close(op[0]);
		program_child(def, fds, tmp, n, ep[1], op[1], &pe);
		/* NOTREACHED */
	default:
		break;
	}
	(void)setpgid(pid, pid);	/* before the child's own, too */
	free(fds);
	free(tmp);
	free(names);
	close(ep[1]);
	close(op[1]);
	w->pid = pid;
	if (mp[1] != -1) {
		close(mp[1]);
		broadcast_line_open(w, mp[0]);
	}
	w->program = true;
	/* For the log: a reload may free the configuration before it runs. */
	w->command = strdup(conf->command[0]);
	w->exec_fd = ep[0];
	(void)program_nonblock(ep[0]);
	w->exec_ev = event_new(master.base, ep[0], EV_READ | EV_PERSIST,
	    program_exec_cb, w);
	if (w->exec_ev == NULL || event_add(w->exec_ev, NULL) == -1)
		fatalx("out of memory");
	program_watch_output(w, op[0]);
	return pid;
}

/*
 * EOF on the exec pipe: the program runs; a report: it could not. Also
 * read once more when the child is reaped first, so the reason of a
 * failed exec is never lost (then it does not go online).
 */
static void
program_exec_read(struct worker *w, bool reaped)
{
	int	 rep[2];
	ssize_t	 n;

	n = read(w->exec_fd, rep, sizeof rep);
	if (n == -1 && (errno == EAGAIN || errno == EINTR) && !reaped)
		return;
	event_free(w->exec_ev);
	w->exec_ev = NULL;
	close(w->exec_fd);
	w->exec_fd = -1;
	if (n == (ssize_t)sizeof rep && rep[0] >= PS_DROP && rep[0] <= PS_EXEC) {
		log_err("worker %d [pid %d]: cannot run %s: %s: %s", w->id,
		    (int)w->pid, w->command != NULL ? w->command :
		    "its command", stage_names[rep[0]], strerror(rep[1]));
		return;		/* it exits 127 and is reaped */
	}
	/*
	 * It runs: online at its READY=1 or once it settled (ready.c); a
	 * cluster program, once it listens (dispatch.c).
	 */
	if (n == 0 && !reaped && w->state == W_STARTING && !w->killed &&
	    w->ipc == NULL)
		ready_exec(w);
}

static void
program_exec_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	program_exec_read(arg, false);
}

/*
 * One line of the program's output: a leading "<N>" (sd-daemon(3)) is
 * its priority, else info. The log escapes it.
 */
static void
program_output_line(struct worker *w, bool cut)
{
	const char	*p = w->out_line;
	size_t		 len = w->out_len;
	int		 level = NC_LOG_INFO;

	if (len >= 3 && p[0] == '<' && p[1] >= '0' && p[1] <= '7' &&
	    p[2] == '>') {
		level = p[1] - '0';
		p += 3;
		len -= 3;
	}
	if (len > 0 && p[len - 1] == '\r')
		len--;
	if (level < NC_LOG_ERR)
		level = NC_LOG_ERR;
	nc__log(level, NULL, "worker %d [pid %d]: %.*s%s", w->id, (int)w->pid,
	    (int)len, p, cut ? " [line cut]" : "");
	w->out_len = 0;
}

static void
program_output_feed(struct worker *w, const char *buf, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			if (!w->out_cut)
				program_output_line(w, false);
			w->out_cut = false;
			w->out_len = 0;
		} else if (w->out_cut)
			continue;
		else if (w->out_len + (buf[i] == '\0' ? 4 : 1) >
		    sizeof w->out_line) {
			/* Too long: logged as far as it goes, the rest skipped. */
			program_output_line(w, true);
			w->out_cut = true;
		} else if (buf[i] == '\0') {
			/* A NUL would end the line the log writes: spelled out. */
			memcpy(w->out_line + w->out_len, "\\x00", 4);
			w->out_len += 4;
		} else
			w->out_line[w->out_len++] = buf[i];
	}
}

/*
 * Reads what the program wrote, at most PROGRAM_READ_MAX bytes per call,
 * so a chatty program gets the loop in turns with everything else; what
 * it writes beyond waits in the pipe (and blocks the program, not us).
 * Returns -1 at EOF.
 */
static int
program_output_read(struct worker *w)
{
	char	buf[4096];
	size_t	total = 0;
	ssize_t	n;

	while (total < PROGRAM_READ_MAX) {
		n = read(w->out_fd, buf, sizeof buf);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return -1;
		program_output_feed(w, buf, (size_t)n);
		total += (size_t)n;
	}
	return 0;
}

static void
program_output_close(struct worker *w)
{
	if (w->out_len > 0 && !w->out_cut)
		program_output_line(w, false);
	if (w->out_ev != NULL)
		event_free(w->out_ev);
	w->out_ev = NULL;
	if (w->out_fd != -1)
		close(w->out_fd);
	w->out_fd = -1;
}

static void
program_output_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;

	(void)fd;
	(void)what;
	if (program_output_read(w) == -1)
		program_output_close(w);
}

/* A program worker from the master before an upgrade: its output pipe. */
void
program_adopt(struct worker *w, int out_fd)
{
	w->program = true;
	w->exec_fd = -1;
	if (out_fd < 0) {
		w->out_fd = -1;
		return;
	}
	(void)fcntl(out_fd, F_SETFD, FD_CLOEXEC);
	program_watch_output(w, out_fd);
}

/* For an upgrade: the output pipe stays open across exec. */
void
program_export(struct worker *w)
{
	if (w->out_fd != -1)
		(void)fcntl(w->out_fd, F_SETFD, 0);
}

/*
 * The worker is gone: its last words are read (bounded: a child it left
 * may hold the pipe open) and its pipes closed.
 */
void
program_close(struct worker *w)
{
	if (w->exec_ev != NULL)
		program_exec_read(w, true);
	if (w->out_fd != -1)
		(void)program_output_read(w);
	program_output_close(w);
}
