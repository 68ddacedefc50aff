/*
 * netclusterd: reads and checks the config, binds every listener, starts
 * the workers, and runs until SIGTERM or SIGINT, when it stops accepting,
 * lets the workers drain up to shutdown_timeout_ms, and exits 0.
 */

#include <sys/mman.h>
#include <sys/types.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "master.h"
#include "netcluster.h"

struct event_base	*master_base;
struct nc_config	*master_config;
struct service_rt	*master_services;
size_t			 master_nservices;
struct listener		**master_listeners;
size_t			 master_nlisteners;
int			 master_nworkers;
struct worker		**master_workers;
bool			 master_stopping;
bool			 master_upgrading;
struct timespec		 master_started;

static int		 log_threshold = 6;
static bool		 log_journal;

static const char *const level_words[] = {
	"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"
};

static void
log_line(int level, const char *msg)
{
	struct timespec	ts;
	struct tm	tm;
	char		when[32];

	if (level > log_threshold)
		return;
	if (log_journal) {
		/* sd-daemon(3) prefixes; journald adds the time. */
		fprintf(stderr, "<%d>%s\n", level, msg);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(stderr, "%s netclusterd[%d]: %s: %s\n", when, (int)getpid(),
	    level_words[level & 7], msg);
}

void
log_msg(int level, const char *fmt, ...)
{
	char	msg[1024];
	va_list	ap;

	if (level > log_threshold)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_line(level, msg);
}

void
fatalx(const char *fmt, ...)
{
	char	msg[1024];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_line(3, msg);
	exit(1);
}

static void
library_log_cb(int level, const char *msg, void *arg)
{
	(void)arg;
	log_line(level, msg);
}

double
elapsed_s(const struct timespec *since)
{
	struct timespec	now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - since->tv_sec) +
	    (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

/* Is stderr the journal (JOURNAL_STREAM, systemd.exec(5))? */
static bool
stderr_is_journal(void)
{
	const char	*js = getenv("JOURNAL_STREAM");
	struct stat	 st;
	unsigned long	 dev, ino;

	if (js == NULL || sscanf(js, "%lu:%lu", &dev, &ino) != 2 ||
	    fstat(STDERR_FILENO, &st) == -1)
		return false;
	return st.st_dev == dev && st.st_ino == ino;
}

static int
level_from_word(const char *w)
{
	int	i;

	for (i = 3; i <= 7; i++)
		if (strcmp(w, level_words[i]) == 0)
			return i;
	return strcmp(w, "error") == 0 ? 3 : -1;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: netclusterd [-c FILE] [-t] [-w N] [-l LEVEL] [-V] [-h]\n"
	    "Runs the services of FILE (default %s) on a master and its\n"
	    "workers, in the foreground, logging to stderr.\n"
	    "  -c FILE   the configuration (netcluster.json(5))\n"
	    "  -t        check the configuration as startup does, short of "
	    "binding\n"
	    "            (hosts resolve, fd: and systemd: sockets are there, "
	    "modules\n"
	    "            load, user and group exist, the control socket's "
	    "directory\n"
	    "            can be made), print \"FILE: configuration OK\" or "
	    "its errors,\n"
	    "            and exit 0 or 1 (1 as startup refuses)\n"
	    "  -w N      run N workers (overrides \"workers\")\n"
	    "  -l LEVEL  log threshold: error, warning, notice, info, debug\n"
	    "  -V        print the version and exit\n"
	    "  -h        print this help and exit\n", SYSCONFDIR
	    "/netcluster/netcluster.json");
}

static int		 upgrade_client = -1;
static struct event	*upgrade_timer;
static struct event	*upgrade_poll;
static void		 upgrade_timeout_cb(evutil_socket_t, short, void *);
static void		 upgrade_poll_cb(evutil_socket_t, short, void *);
static char	**saved_argv;
static int		 upgrade_fd = -1;	/* the binary checked */
static char		 upgrade_version[64];	/* what it said it is */
static void		(*upgrade_done)(const char *, void *);
static void		*upgrade_arg;

static void	upgrade_checked(const char *, const char *, int, void *);

/*
 * netclusterctl upgrade: executes the binary at the path we were started
 * from (master_binary, which make install or a package may have replaced
 * since) in place (same pid, so systemd keeps tracking it), once that
 * file passed its check (upgrade_check: -V and -t on our configuration).
 * The listening sockets and the workers' channels stay open across exec,
 * described in a memfd named by NETCLUSTER_UPGRADE_FD; the new master
 * takes the sockets as they are, adopts the running workers as an older
 * generation, and replaces them by the reload path. client_fd, if not -1,
 * gets the answer from the new master. done() is called only if the
 * upgrade cannot start, with the reason.
 */
void
master_upgrade(int client_fd, void (*done)(const char *, void *), void *arg)
{
	struct nc_config	*cfg;
	char			*errors;

	if (master_stopping || master_upgrading || supervisor_busy() ||
	    upgrade_check_running()) {
		done(master_stopping ? "netclusterd is stopping" : "a reload or "
		    "an upgrade is already running; try again once it is done",
		    arg);
		return;
	}
	/* The configuration the new master will read must be good. */
	if (nc_config_load(master_config->file, &cfg, &errors) != 0 ||
	    master_check_config(cfg, &errors) != 0) {
		log_errx("upgrade refused: %s", errors);
		done(errors, arg);
		free(errors);
		nc_config_free(cfg);
		return;
	}
	nc_config_free(cfg);
	log_notice("upgrade: checking %s", master_binary);
	upgrade_client = client_fd;
	upgrade_done = done;
	upgrade_arg = arg;
	upgrade_check(master_config->file, upgrade_checked, NULL);
}

/* The client that asked for the upgrade left: nobody to answer. */
void
master_upgrade_client_gone(void)
{
	upgrade_client = -1;
}

/* The new binary passed its check, or not (error says why). */
static void
upgrade_checked(const char *error, const char *version, int fd, void *unused)
{
	struct timeval	 tv = { 0, UPGRADE_QUIESCE_MS * 1000 };
	struct timeval	 poll_tv = { 0, UPGRADE_POLL_MS * 1000 };
	char		 msg[600];

	(void)unused;
	if (error == NULL && (master_stopping || supervisor_busy())) {
		close(fd);
		error = master_stopping ? "netclusterd is stopping" : "a reload "
		    "started during the upgrade's check; try again once it is "
		    "done";
	}
	if (error != NULL) {
		snprintf(msg, sizeof msg, "upgrade refused: %s", error);
		log_errx("%s; netclusterd %s [pid %d] serves on", msg,
		    PACKAGE_VERSION, (int)getpid());
		upgrade_client = -1;
		upgrade_done(msg, upgrade_arg);
		return;
	}
	upgrade_fd = fd;
	snprintf(upgrade_version, sizeof upgrade_version, "%s", version);
	log_notice("upgrade: %s is netclusterd %s and accepts %s",
	    master_binary, version, master_config->file);
	/*
	 * Round-robin: accept no more and wait (bounded) until every
	 * connection on its way to a worker was taken; the queued ones go
	 * over to the new master. The metrics and agent listeners accept no
	 * more either (clients wait in their backlog for the new master),
	 * and the HTTP answers under way go out first.
	 */
	notify_reloading();
	master_upgrading = true;
	listener_worker_changed();
	health_quiesce();
	if ((upgrade_timer = evtimer_new(master_base, upgrade_timeout_cb,
	    NULL)) == NULL || evtimer_add(upgrade_timer, &tv) == -1 ||
	    (upgrade_poll = event_new(master_base, -1, EV_PERSIST,
	    upgrade_poll_cb, NULL)) == NULL || event_add(upgrade_poll,
	    &poll_tv) == -1)
		fatalx("out of memory");
	master_upgrade_ready();
}

/* Hands the state over in a memfd and executes the binary checked. */
void
master_upgrade_exec(int client_fd)
{
	json_t	*state;
	char	*text, env[32];
	int	 fd;

	state = json_pack("{s:o, s:o, s:i, s:s, s:s, s:o, s:o}", "listeners",
	    listener_export(), "workers", supervisor_export(), "client",
	    client_fd, "binary", master_binary, "version", PACKAGE_VERSION,
	    "endpoints", health_export(), "stats", stats_export());
	text = state != NULL ? json_dumps(state, JSON_COMPACT) : NULL;
	json_decref(state);
	fd = memfd_create("netclusterd-upgrade", 0);
	if (text == NULL || fd == -1 ||
	    write(fd, text, strlen(text)) != (ssize_t)strlen(text) ||
	    lseek(fd, 0, SEEK_SET) == -1)
		fatalx("upgrade: cannot hand the state over: %s",
		    strerror(errno));
	free(text);
	if (client_fd != -1)
		(void)fcntl(client_fd, F_SETFD, 0);
	snprintf(env, sizeof env, "%d", fd);
	setenv("NETCLUSTER_UPGRADE_FD", env, 1);
	log_notice("upgrading: executing %s (netclusterd %s -> %s) in place",
	    master_binary, PACKAGE_VERSION, upgrade_version);
	/* The very file that was checked, whatever the path holds now. */
	fexecve(upgrade_fd, saved_argv, environ);
	fatalx("upgrade: exec %s failed: %s", master_binary, strerror(errno));
}

/*
 * Called as handoffs complete: once no connection is on its way to a
 * worker, the state is complete and the exec can happen.
 */
void
master_upgrade_ready(void)
{
	if (master_upgrading && supervisor_inflight() == 0 && health_idle())
		master_upgrade_exec(upgrade_client);
}

/* What the HTTP server does is not told: looked at every few ms. */
static void
upgrade_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	master_upgrade_ready();
}

static void
upgrade_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_warnx("upgrade: connections still in flight after %d ms; going "
	    "on", UPGRADE_QUIESCE_MS);
	master_upgrade_exec(upgrade_client);
}

/* The state an upgrade handed over, if this master is the new one. */
static json_t *
upgrade_state(void)
{
	const char	*s = getenv("NETCLUSTER_UPGRADE_FD");
	json_error_t	 jerr;
	json_t		*state;
	FILE		*f;
	int		 fd;

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

static void
hup_done(const char *error, void *arg)
{
	(void)arg;
	if (error == NULL)
		log_notice("SIGHUP: reloaded");
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGCHLD) {
		supervisor_reap();
		return;
	}
	if (sig == SIGHUP) {
		supervisor_reload(hup_done, NULL);
		return;
	}
	if (master_stopping)
		return;
	log_notice("%s: stopping; open connections have %d ms to finish",
	    sig == SIGINT ? "SIGINT" : "SIGTERM",
	    master_config->shutdown_timeout_ms);
	notify_stopping();
	notify_status("stopping");
	master_stopping = true;
	listener_stop_accepting();
	supervisor_stop();
	master_worker_gone();
}

int	master_cli_workers;
uid_t	master_worker_uid = (uid_t)-1;
gid_t	master_worker_gid = (gid_t)-1;

/*
 * Everything startup refuses short of binding, for -t, startup, reload
 * and upgrade alike (nc_config_check(), with this master's view of the
 * systemd sockets and of the listeners it holds). On success cfg->uid
 * and cfg->gid are who the workers run as: the child cannot call
 * getpwnam() between fork and exec.
 */
int
master_check_config(struct nc_config *cfg, char **errors)
{
	struct nc_config_check_env	env;

	memset(&env, 0, sizeof env);
	env.systemd_fd = listener_systemd_fd;
	env.held = listener_held;
	return nc_config_check(cfg, &env, errors);
}

void
master_worker_gone(void)
{
	if (master_stopping && supervisor_alive() == 0)
		event_base_loopbreak(master_base);
}

int
main(int argc, char **argv)
{
	const char	*file = SYSCONFDIR "/netcluster/netcluster.json";
	const char	*level = NULL;
	json_t		*upgrade;
	struct event	*sigs[4];
	sigset_t	 sigset;
	static const int signums[] = { SIGTERM, SIGINT, SIGCHLD, SIGHUP };
	char		*errors, err[512];
	bool		 test = false;
	int		 ch, workers = 0, i;
	size_t		 k;

	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};

	saved_argv = argv;
	while ((ch = getopt_long(argc, argv, "c:tw:l:Vh", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c':
			file = optarg;
			break;
		case 't':
			test = true;
			break;
		case 'w':
			workers = atoi(optarg);
			if (workers < 1 || workers > 1024) {
				fprintf(stderr, "netclusterd: -w: expected 1 "
				    "to 1024 workers, got \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'l':
			level = optarg;
			if (level_from_word(level) == -1) {
				fprintf(stderr, "netclusterd: -l: expected "
				    "error, warning, notice, info or debug, got "
				    "\"%s\"\n", level);
				return 2;
			}
			break;
		case 'V':
			printf("netclusterd %s\n", PACKAGE_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}

	if (nc_config_load(file, &master_config, &errors) != 0) {
		fputs(errors, stderr);
		free(errors);
		return 1;
	}
	/*
	 * The new master of an upgrade takes its listeners as they are:
	 * the check does not look at them again.
	 */
	upgrade = test ? NULL : upgrade_state();
	if (upgrade != NULL &&
	    listener_inherit(json_object_get(upgrade, "listeners")) == -1)
		fatalx("upgrade: bad listeners in the state");
	if (upgrade != NULL)
		health_inherit(json_object_get(upgrade, "endpoints"));
	/* -t and startup refuse alike: the same check, text and status. */
	if (master_check_config(master_config, &errors) != 0) {
		fputs(errors, stderr);
		free(errors);
		nc_config_free(master_config);
		json_decref(upgrade);
		return 1;
	}
	master_worker_uid = master_config->uid;
	master_worker_gid = master_config->gid;
	if (test) {
		printf("%s: configuration OK\n", file);
		nc_config_free(master_config);
		return 0;
	}

	log_journal = stderr_is_journal();
	log_threshold = level != NULL ? level_from_word(level) :
	    master_config->log_level;
	nc_set_log_cb(library_log_cb, NULL);
	nc_set_log_level(log_threshold);
	signal(SIGPIPE, SIG_IGN);
	clock_gettime(CLOCK_MONOTONIC, &master_started);
	master_cli_workers = workers;
	master_nworkers = workers > 0 ? workers : master_config->workers;

	if ((master_base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	master_nservices = master_config->nservices;
	master_services = calloc(master_nservices, sizeof *master_services);
	if (master_services == NULL)
		fatalx("out of memory");
	for (k = 0; k < master_nservices; k++)
		master_services[k].conf = &master_config->services[k];
	for (i = 0; i < 4; i++) {
		sigs[i] = evsignal_new(master_base, signums[i], signal_cb, NULL);
		if (sigs[i] == NULL || evsignal_add(sigs[i], NULL) == -1)
			fatalx("cannot watch signal %d", signums[i]);
	}
	if (listener_bind_all(err, sizeof err) == -1) {
		listener_close_all();
		fatalx("%s", err);
	}
	listener_inherit_done();
	if (control_open(master_config->control_socket, err, sizeof err) == -1) {
		listener_close_all();
		fatalx("control socket %s", err);
	}
	if (health_open(err, sizeof err) == -1) {
		control_close();
		listener_close_all();
		fatalx("%s", err);
	}
	/* Where the next upgrade finds its binary. */
	upgrade_binary_init(json_string_value(json_object_get(upgrade,
	    "binary")), argv[0]);
	log_notice("netclusterd %s started: %zu services, %d workers",
	    PACKAGE_VERSION, master_nservices, master_nworkers);
	notify_start();
	if (upgrade != NULL) {
		stats_adopt(json_object_get(upgrade, "stats"));
		stats_add("upgrades", "success", 1);
		(void)supervisor_adopt(json_object_get(upgrade, "workers"));
		log_notice("upgraded in place: pid %d, netclusterd %s -> %s, "
		    "from %s", (int)getpid(), json_string_value(json_object_get(
		    upgrade, "version")) != NULL ? json_string_value(
		    json_object_get(upgrade, "version")) : "(unknown)",
		    PACKAGE_VERSION, master_binary);
	}
	supervisor_start();
	listener_worker_changed();
	/* Adopted workers that exited during the exec: reap them now. */
	if (upgrade != NULL)
		supervisor_reap();
	if (upgrade != NULL) {
		if (json_integer_value(json_object_get(upgrade, "client")) > 2)
			control_adopt((int)json_integer_value(json_object_get(
			    upgrade, "client")), json_string_value(
			    json_object_get(upgrade, "version")));
		json_decref(upgrade);
	}

	event_base_dispatch(master_base);

	/*
	 * On the way out, a signal waits: freeing the signal events gives
	 * them back their default action, and a second SIGTERM now would
	 * kill a master that is stopping cleanly.
	 */
	sigemptyset(&sigset);
	for (i = 0; i < 4; i++)
		sigaddset(&sigset, signums[i]);
	(void)sigprocmask(SIG_BLOCK, &sigset, NULL);
	notify_stop();
	health_close();
	control_close();
	upgrade_check_stop();
	listener_close_all();
	for (i = 0; i < 4; i++)
		event_free(sigs[i]);
	free(master_workers);
	free(master_services);
	nc_config_free(master_config);
	metrics_free();
	event_base_free(master_base);
	log_notice("stopped");
	return 0;
}
