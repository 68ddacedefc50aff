/*
 * When a worker is ready (online), and what a program on inherited
 * sockets tells of itself. netcluster-worker says `ready`, a program
 * linked with libnetcluster is ready once it listens on every listener
 * (dispatch.c). A program on inherited sockets with "notify": true gets
 * a NOTIFY_SOCKET of its own, as systemd gives a Type=notify service:
 * READY=1 makes it online, WATCHDOG=1 shows it alive (heartbeat.c),
 * STATUS= shows in `netclusterctl workers`; each datagram must come,
 * by its SO_PASSCRED credentials, from the worker's own process group.
 * Without "notify", such a program is online once it lived settle_ms
 * (einhorn's timer ack): one that exits before never was. Any worker
 * not online within its service's ready_timeout_ms is killed; a reload
 * that waits for it fails, the old workers serving on.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "master.h"

#define NOTIFY_MAX	4096	/* bytes of a datagram, as systemd's */
#define STATUS_MAX	200	/* bytes of a STATUS= kept */

static void
ready_arm(struct worker *w, int ms, event_callback_fn cb)
{
	struct timeval	tv = { ms / 1000, (ms % 1000) * 1000 };

	if (w->ready_ev != NULL)
		event_free(w->ready_ev);
	if ((w->ready_ev = evtimer_new(master.base, cb, w)) == NULL ||
	    evtimer_add(w->ready_ev, &tv) == -1)
		fatalx("out of memory");
}

static void
ready_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;
	char		 why[96];

	(void)fd;
	(void)what;
	if (w->state != W_STARTING || w->killed)
		return;
	snprintf(why, sizeof why, "not ready after %d ms (ready_timeout_ms)",
	    w->def->svc->ready_timeout_ms);
	w->cause = "ready";
	w->cause_code = "ready_timeout_ms";
	worker_kill(w, why);
}

/* A worker started: it has ready_timeout_ms to be online. */
static void
ready_started(struct worker *w)
{
	if (w->def != NULL)
		ready_arm(w, w->def->svc->ready_timeout_ms, ready_timeout_cb);
}

static void
ready_online(struct worker *w)
{
	if (w->ready_ev != NULL)
		(void)event_del(w->ready_ev);
}

static void
ready_settled_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;

	(void)fd;
	(void)what;
	if (w->state == W_STARTING && !w->killed)
		worker_online(w);
}

/*
 * A program on inherited sockets runs (its exec succeeded): online at
 * its READY=1, or once it lived settle_ms, which the configuration
 * keeps below ready_timeout_ms: that timer gives way to this one.
 */
void
ready_exec(struct worker *w)
{
	const struct nc_service	*svc = w->def->svc;

	if (svc->notify) {
		if (w->notify_fd == -1)
			worker_kill(w, "it has no NOTIFY_SOCKET to say READY=1 "
			    "on (see above)");
		return;
	}
	if (svc->settle_ms == 0) {
		worker_online(w);
		return;
	}
	ready_arm(w, svc->settle_ms, ready_settled_cb);
}

/* Whether the sender pid is w or in w's process group. */
static bool
ready_sender(const struct worker *w, pid_t pid)
{
	return pid == w->pid || getpgid(pid) == w->pid;
}

/* Its STATUS=, bounded, printable ASCII only (it goes out as JSON). */
static void
ready_status(struct worker *w, const char *s, size_t len)
{
	size_t	i;

	if (len > STATUS_MAX)
		len = STATUS_MAX;
	free(w->status);
	if ((w->status = strndup(s, len)) == NULL)
		return;
	for (i = 0; w->status[i] != '\0'; i++)
		if (w->status[i] < ' ' || w->status[i] > '~')
			w->status[i] = '?';
}

/* One line of a datagram: KEY=value, as sd_notify(3) says. */
static void
ready_line(struct worker *w, const char *line, size_t len)
{
	if (len == 7 && memcmp(line, "READY=1", 7) == 0) {
		if (w->state == W_STARTING && !w->killed)
			worker_online(w);
	} else if (len == 10 && memcmp(line, "WATCHDOG=1", 10) == 0)
		worker_heard(w);
	else if (len == 16 && memcmp(line, "WATCHDOG=trigger", 16) == 0)
		heartbeat_hung(w, "asked for it (WATCHDOG=trigger)");
	else if (len >= 7 && memcmp(line, "STATUS=", 7) == 0)
		ready_status(w, line + 7, len - 7);
}

static void
ready_notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker	*w = arg;
	char		 buf[NOTIFY_MAX + 1], *p, *nl;
	char		 cbuf[CMSG_SPACE(sizeof(struct ucred)) +
			    CMSG_SPACE(sizeof(int) * 8)];
	struct iovec	 iov = { buf, NOTIFY_MAX };
	struct msghdr	 msg;
	struct cmsghdr	*cm;
	struct ucred	*cred = NULL;
	ssize_t		 n;
	int		 i;

	(void)what;
	for (i = 0; i < 16; i++) {	/* bounded work per event */
		memset(&msg, 0, sizeof msg);
		msg.msg_iov = &iov;
		msg.msg_iovlen = 1;
		msg.msg_control = cbuf;
		msg.msg_controllen = sizeof cbuf;
		if ((n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)) ==
		    -1)
			return;
		cred = NULL;
		for (cm = CMSG_FIRSTHDR(&msg); cm != NULL;
		    cm = CMSG_NXTHDR(&msg, cm)) {
			if (cm->cmsg_level == SOL_SOCKET &&
			    cm->cmsg_type == SCM_CREDENTIALS)
				cred = (struct ucred *)(void *)CMSG_DATA(cm);
			else if (cm->cmsg_level == SOL_SOCKET &&
			    cm->cmsg_type == SCM_RIGHTS) {
				int	*fds = (int *)(void *)CMSG_DATA(cm);
				size_t	 k, nfds = (cm->cmsg_len -
				    CMSG_LEN(0)) / sizeof(int);

				for (k = 0; k < nfds; k++)
					close(fds[k]);	/* FDSTORE: not kept */
			}
		}
		if (cred == NULL || !ready_sender(w, cred->pid)) {
			/* Logged the 1st, 2nd, 4th... time. */
			w->foreign_notes++;
			if ((w->foreign_notes & (w->foreign_notes - 1)) == 0)
				log_warnx("service %s: worker %d [pid %d]: a "
				    "notification from pid %d, not of its "
				    "processes, is ignored (%lu ignored)",
				    w->pool->name, w->id, (int)w->pid,
				    cred != NULL ? (int)cred->pid : -1,
				    w->foreign_notes);
			continue;
		}
		buf[n] = '\0';
		for (p = buf; p < buf + n; p = nl + 1) {
			if ((nl = memchr(p, '\n', (size_t)(buf + n - p))) ==
			    NULL)
				nl = buf + n;
			ready_line(w, p, (size_t)(nl - p));
		}
	}
}

/*
 * Before a notify program's fork: its NOTIFY_SOCKET, an abstract unix
 * datagram socket of its own, and the address for its environment in
 * addr. 0, or -1 (addr is then empty).
 */
int
ready_socket(struct worker *w, char *addr, size_t len)
{
	struct sockaddr_un	sun;
	socklen_t		slen;
	int			fd, on = 1;

	addr[0] = '\0';
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path + 1, sizeof sun.sun_path - 1,
	    "netclusterd/%d/notify/%d", (int)getpid(), w->id);
	slen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
	    strlen(sun.sun_path + 1));
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) == -1)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == -1)
		goto fail;
	if (bind(fd, (struct sockaddr *)&sun, slen) == -1) {
		/* Its name taken: one the kernel picks (autobind). */
		slen = sizeof sun;
		if (errno != EADDRINUSE || bind(fd, (struct sockaddr *)&sun,
		    sizeof(sa_family_t)) == -1 || getsockname(fd,
		    (struct sockaddr *)&sun, &slen) == -1 ||
		    slen <= offsetof(struct sockaddr_un, sun_path) + 1)
			goto fail;
	}
	w->notify_fd = fd;
	w->notify_ev = event_new(master.base, fd, EV_READ | EV_PERSIST,
	    ready_notify_cb, w);
	if (w->notify_ev == NULL || event_add(w->notify_ev, NULL) == -1)
		fatalx("out of memory");
	snprintf(addr, len, "@%.*s", (int)(slen -
	    offsetof(struct sockaddr_un, sun_path) - 1), sun.sun_path + 1);
	return 0;

fail:
	log_warnx("service %s: worker %d: NOTIFY_SOCKET: %s", w->pool->name,
	    w->id, strerror(errno));
	close(fd);
	return -1;
}

void
ready_init(void)
{
	worker_hook(WEV_STARTED, ready_started);
	worker_hook(WEV_ONLINE, ready_online);
}
