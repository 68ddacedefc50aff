/*
 * The configuration checked as startup would refuse it (nc_config_check()
 * with this master's view of systemd's sockets and of what it holds), for
 * -t, startup, a reload and an upgrade alike. At startup and for -t it
 * runs in place. A running master must never wait on a name server or a
 * module: there the check runs in a child, the loop goes on (hand-offs,
 * control requests, scrapes), and the child's findings (the addresses
 * resolved, the users' ids) come back over a pipe, bounded by
 * CHECK_TIMEOUT_MS.
 */

#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "master.h"

#define CHECK_TIMEOUT_MS	30000	/* a name takes 5 s at most */
#define CHECK_OUTPUT_MAX	(1024 * 1024)

struct check_job {
	struct nc_config	*cfg;
	pid_t			 pid;
	int			 fd;
	struct event		*read_ev;
	struct event		*timer;
	struct evbuffer		*out;
	void			(*done)(struct nc_config *, const char *,
				    void *);
	void			*arg;
};

static struct check_job	*running;	/* one at a time */
static pid_t		 orphan = -1;	/* a child cancelled, not reaped */

static bool
check_held(const struct nc_listen_addr *a, void *arg)
{
	(void)arg;
	return listener_held(a) || endpoint_held(a);
}

/* In place: 0, or -1 with every error in *errors (freed by the caller). */
int
check_config(struct nc_config *cfg, char **errors)
{
	struct nc_config_check_env	env;

	memset(&env, 0, sizeof env);
	env.systemd_fd = listener_systemd_fd;
	env.held = check_held;
	env.worker_binary = worker_binary();
	return nc_config_check(cfg, &env, errors);
}

/* The child: checks, writes {"errors": ..., "result": ...}, exits. */
static void __attribute__((noreturn))
check_child(struct nc_config *cfg, int fd)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGHUP, SIGCHLD };
	json_t		*out;
	char		*errors = NULL, *text;
	size_t		 i, len, off = 0;
	ssize_t		 n;

	/* The master's signal handlers would wake its loop, not ours. */
	for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		(void)signal(sigs[i], SIG_DFL);
	if (check_config(cfg, &errors) == 0)
		out = json_pack("{s:n, s:o}", "errors", "result",
		    nc_config_check_result(cfg));
	else
		out = json_pack("{s:s}", "errors", errors != NULL ? errors :
		    "?");
	if (out == NULL || (text = json_dumps(out, JSON_COMPACT)) == NULL)
		_exit(2);
	len = strlen(text);
	while (off < len && (n = write(fd, text + off, len - off)) > 0)
		off += (size_t)n;
	_exit(off == len ? 0 : 2);
}

static void
check_free(struct check_job *j)
{
	if (j->read_ev != NULL)
		event_free(j->read_ev);
	if (j->timer != NULL)
		event_free(j->timer);
	if (j->out != NULL)
		evbuffer_free(j->out);
	if (j->fd != -1)
		close(j->fd);
	nc_config_free(j->cfg);
	if (running == j)
		running = NULL;
	free(j);
}

/* The child said what it found (or died): the caller hears it. */
static void
check_finish(struct check_job *j, const char *fail)
{
	json_error_t	 jerr;
	json_t		*v = NULL;
	const char	*errors = fail;
	char		*text = NULL;
	void		(*done)(struct nc_config *, const char *, void *) =
			    j->done;
	void		*arg = j->arg;
	struct nc_config *cfg = NULL;

	if (errors == NULL) {
		evbuffer_add(j->out, "", 1);
		v = json_loads((const char *)evbuffer_pullup(j->out, -1), 0,
		    &jerr);
		if (v == NULL)
			errors = "the check of the configuration died";
		else if (json_is_string(json_object_get(v, "errors")))
			errors = json_string_value(json_object_get(v,
			    "errors"));
		else if (nc_config_check_apply(j->cfg, json_object_get(v,
		    "result")) == -1)
			errors = "the check of the configuration answered "
			    "nonsense";
	}
	if (errors != NULL)
		text = strdup(errors);
	else {
		cfg = j->cfg;	/* the caller's from now on */
		j->cfg = NULL;
	}
	json_decref(v);
	if (j->pid != -1) {
		(void)kill(j->pid, SIGKILL);
		orphan = j->pid;
	}
	check_free(j);
	done(cfg, text != NULL ? text : errors, arg);
	free(text);
}

static void
check_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct check_job	*j = arg;
	int			 n;

	(void)what;
	n = evbuffer_read(j->out, fd, 65536);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (evbuffer_get_length(j->out) > CHECK_OUTPUT_MAX) {
		check_finish(j, "the check of the configuration said too "
		    "much");
		return;
	}
	if (n <= 0) {
		j->pid = -1;	/* it is done: it exits, and is reaped */
		check_finish(j, NULL);
	}
}

static void
check_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	char	msg[160];

	(void)fd;
	(void)what;
	snprintf(msg, sizeof msg, "the check of the configuration took more "
	    "than %d ms (a name server or a module that does not answer)",
	    CHECK_TIMEOUT_MS);
	check_finish(arg, msg);
}

/*
 * Reads path and checks it in a child. done(cfg, NULL, arg) once it
 * answered, cfg (then the caller's) as check_config() would have left
 * it; or done(NULL, errors, arg), from inside this call when the file
 * does not parse. The job, or NULL once done was called; one check at
 * a time.
 */
struct check_job *
check_file(const char *path, void (*done)(struct nc_config *, const char *,
    void *), void *arg)
{
	struct check_job	*j;
	struct timeval		 tv = { CHECK_TIMEOUT_MS / 1000,
	    (CHECK_TIMEOUT_MS % 1000) * 1000 };
	char			*errors = NULL;
	int			 p[2];

	if (running != NULL || (j = calloc(1, sizeof *j)) == NULL) {
		done(NULL, running != NULL ? "a check of the configuration "
		    "runs already" : "out of memory", arg);
		return NULL;
	}
	j->fd = -1;
	j->pid = -1;
	j->done = done;
	j->arg = arg;
	if (nc_config_load(path, &j->cfg, &errors) != 0) {
		check_free(j);
		done(NULL, errors != NULL ? errors : "?", arg);
		free(errors);
		return NULL;
	}
	if (pipe2(p, O_CLOEXEC) == -1) {
		check_finish(j, "cannot check the configuration: no pipe");
		return NULL;
	}
	switch (j->pid = fork()) {
	case -1:
		close(p[0]);
		close(p[1]);
		check_finish(j, "cannot check the configuration: no fork");
		return NULL;
	case 0:
		close(p[0]);
		check_child(j->cfg, p[1]);
		/* NOTREACHED */
	default:
		break;
	}
	close(p[1]);
	j->fd = p[0];
	(void)fcntl(j->fd, F_SETFL, O_NONBLOCK);
	if ((j->out = evbuffer_new()) == NULL ||
	    (j->read_ev = event_new(master.base, j->fd, EV_READ | EV_PERSIST,
	    check_read_cb, j)) == NULL || event_add(j->read_ev, NULL) == -1 ||
	    (j->timer = evtimer_new(master.base, check_timeout_cb, j)) ==
	    NULL || evtimer_add(j->timer, &tv) == -1) {
		check_finish(j, "cannot check the configuration: out of "
		    "memory");
		return NULL;
	}
	running = j;
	return j;
}

/* Nobody waits for j any more (the master stops): the child goes. */
void
check_cancel(struct check_job *j)
{
	if (j == NULL)
		return;
	if (j->pid != -1) {
		(void)kill(j->pid, SIGKILL);
		orphan = j->pid;
	}
	check_free(j);
}

/* SIGCHLD: whether pid was a check's child (reaped: nothing else). */
bool
check_reaped(pid_t pid, int status)
{
	(void)status;
	if (pid == orphan) {
		orphan = -1;
		return true;
	}
	if (running != NULL && running->pid == pid) {
		running->pid = -1;	/* its output tells the rest */
		return true;
	}
	return false;
}
