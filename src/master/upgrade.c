/*
 * netclusterctl upgrade: the binary at the path the master was started
 * from (binary_path(), which make install or a package may have replaced
 * since) is executed in place, same pid, so systemd keeps tracking it,
 * once the configuration passed its check (check.c, off the loop) and the
 * file passed its own (binary.c: -V and -t). The listening sockets, the
 * workers' channels and what the master counted stay open across exec,
 * described in a memfd named by NETCLUSTER_UPGRADE_FD; the new master
 * takes the sockets as they are, gives the running workers their slots
 * back and replaces them by the reload path (a rollout of every pool).
 *
 * Before the exec, round-robin accepts no more and the master waits
 * (bounded) until every connection on its way to a worker was taken;
 * the queued ones go over to the new master. The metrics and agent
 * listeners accept no more either (clients wait in their backlog), and
 * the HTTP answers under way go out first.
 */

#include <sys/mman.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "master.h"

extern char	**environ;

enum upgrade_step {
	UP_IDLE,
	UP_CONFIG,		/* the configuration's check runs */
	UP_BINARY,		/* the binary's check runs */
	UP_QUIESCE		/* waiting for the hand-offs to land */
};

static struct {
	enum upgrade_step step;
	int		 client;	/* answered by the new master, or -1 */
	struct check_job *job;
	int		 fd;		/* the binary checked */
	char		 version[64];	/* what it said it is */
	struct event	*timer;
	struct event	*poll;
	void		(*done)(const char *, void *);
	void		*arg;
} up = { .step = UP_IDLE, .client = -1, .fd = -1 };

static char	**saved_argv;

/* The client that asked for the upgrade left: nobody to answer. */
void
upgrade_client_gone(void)
{
	up.client = -1;
}

/* The upgrade will not happen (error says why): the caller hears it. */
static void
upgrade_refused(const char *error)
{
	char	msg[600];

	snprintf(msg, sizeof msg, "upgrade refused: %s", error);
	log_err("%s; netclusterd %s [pid %d] serves on", msg, PACKAGE_VERSION,
	    (int)getpid());
	up.step = UP_IDLE;
	master.operation = NULL;
	up.client = -1;
	up.done(msg, up.arg);
}

/* Hands the state over in a memfd and executes the binary checked. */
static void __attribute__((noreturn))
upgrade_exec(void)
{
	json_t	*state;
	char	*text, env[32];
	int	 fd;

	state = json_pack("{s:o, s:o, s:i, s:s, s:s, s:o, s:o}", "listeners",
	    listener_export(), "workers", pool_export(), "client", up.client,
	    "binary", binary_path(), "version", PACKAGE_VERSION, "endpoints",
	    endpoint_export(), "stats", stats_export());
	text = state != NULL ? json_dumps(state, JSON_COMPACT) : NULL;
	json_decref(state);
	fd = memfd_create("netclusterd-upgrade", 0);
	if (text == NULL || fd == -1 ||
	    write(fd, text, strlen(text)) != (ssize_t)strlen(text) ||
	    lseek(fd, 0, SEEK_SET) == -1)
		fatalx("upgrade: cannot hand the state over: %s",
		    strerror(errno));
	free(text);
	if (up.client != -1)
		(void)fcntl(up.client, F_SETFD, 0);
	snprintf(env, sizeof env, "%d", fd);
	setenv("NETCLUSTER_UPGRADE_FD", env, 1);
	log_notice("upgrading: executing %s (netclusterd %s -> %s) in place",
	    binary_path(), PACKAGE_VERSION, up.version);
	/* The very file that was checked, whatever the path holds now. */
	fexecve(up.fd, saved_argv, environ);
	fatalx("upgrade: exec %s failed: %s", binary_path(), strerror(errno));
}

/* Once nothing is on its way to a worker and no HTTP answer is. */
static void
upgrade_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (handoff_inflight() == 0 && http_idle())
		upgrade_exec();
}

static void
upgrade_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_warnx("upgrade: connections still in flight after %d ms; going "
	    "on", UPGRADE_QUIESCE_MS);
	upgrade_exec();
}

/* The new binary passed its check, or not (error says why). */
static void
upgrade_binary_checked(const char *error, const char *version, int fd,
    void *unused)
{
	struct timeval	 tv = { 0, UPGRADE_QUIESCE_MS * 1000 };
	struct timeval	 poll_tv = { 0, UPGRADE_POLL_MS * 1000 };

	(void)unused;
	if (error == NULL && master.stopping) {
		close(fd);
		error = "netclusterd is stopping";
	}
	if (error != NULL) {
		upgrade_refused(error);
		return;
	}
	up.fd = fd;
	snprintf(up.version, sizeof up.version, "%s", version);
	log_notice("upgrade: %s is netclusterd %s and accepts %s",
	    binary_path(), version, gen_config()->file);
	notify_reloading();
	up.step = UP_QUIESCE;
	master.upgrading = true;
	handoff_accepting();
	http_quiesce();
	health_quiesce();
	if ((up.timer = evtimer_new(master.base, upgrade_timeout_cb,
	    NULL)) == NULL || evtimer_add(up.timer, &tv) == -1 ||
	    (up.poll = event_new(master.base, -1, EV_PERSIST, upgrade_poll_cb,
	    NULL)) == NULL || event_add(up.poll, &poll_tv) == -1)
		fatalx("out of memory");
	upgrade_poll_cb(-1, 0, NULL);
}

/* The configuration the new master will read passed its check. */
static void
upgrade_config_checked(struct nc_config *cfg, const char *errors, void *arg)
{
	(void)arg;
	up.job = NULL;
	nc_config_free(cfg);
	if (errors != NULL) {
		upgrade_refused(errors);
		return;
	}
	if (master.stopping) {
		upgrade_refused("netclusterd is stopping");
		return;
	}
	log_notice("upgrade: checking %s", binary_path());
	up.step = UP_BINARY;
	binary_check(gen_config()->file, upgrade_binary_checked, NULL);
}

/*
 * netclusterctl upgrade. client_fd, if not -1, gets the answer from the
 * new master. done() is called only if the upgrade cannot happen, with
 * the reason.
 */
void
upgrade(int client_fd, void (*done)(const char *, void *), void *arg)
{
	char	why[128];

	if (gen_busy(why, sizeof why)) {
		done(why, arg);
		return;
	}
	master.operation = "upgrade";
	up.done = done;
	up.arg = arg;
	up.client = client_fd;
	up.step = UP_CONFIG;
	up.job = check_file(gen_config()->file, upgrade_config_checked, NULL);
}

/*
 * The state an upgrade handed over, if this master is the new one (and
 * argv, for the next upgrade's exec).
 */
json_t *
upgrade_state(char **argv)
{
	const char	*s = getenv("NETCLUSTER_UPGRADE_FD");
	json_error_t	 jerr;
	json_t		*state;
	FILE		*f;
	int		 fd;

	saved_argv = argv;
	if (s == NULL)
		return NULL;
	fd = atoi(s);
	unsetenv("NETCLUSTER_UPGRADE_FD");
	if (fd < 3 || (f = fdopen(fd, "r")) == NULL)
		fatalx("upgrade: bad NETCLUSTER_UPGRADE_FD");
	state = json_loadf(f, 0, &jerr);
	fclose(f);
	if (state == NULL)
		fatalx("upgrade: bad state: %s", jerr.text);
	return state;
}

/* At exit: the checks stop, nobody waits. */
void
upgrade_close(void)
{
	check_cancel(up.job);
	up.job = NULL;
	binary_check_stop();
	if (up.timer != NULL)
		event_free(up.timer);
	if (up.poll != NULL)
		event_free(up.poll);
	up.timer = up.poll = NULL;
}
