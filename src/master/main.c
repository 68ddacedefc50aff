/*
 * netclusterd: reads and checks the configuration, builds the first
 * generation (every listener bound, or taken over after an upgrade),
 * starts each service's pool of workers, and runs until SIGTERM or
 * SIGINT, when it stops accepting, lets the workers drain up to
 * shutdown_timeout_ms, and exits 0. Signals are libevent events: their
 * handlers run in the loop.
 */

#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "master.h"
#include "netcluster.h"

static const int	 signums[] = { SIGTERM, SIGINT, SIGCHLD, SIGHUP };
#define NSIGNALS	 (sizeof signums / sizeof signums[0])

static const char *const level_words[] = {
	"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"
};

static int
level_from_word(const char *w)
{
	int	i;

	for (i = NC_LOG_ERR; i <= NC_LOG_DEBUG; i++)
		if (strcmp(w, level_words[i]) == 0)
			return i;
	return strcmp(w, "error") == 0 ? NC_LOG_ERR : -1;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: netclusterd [-c FILE] [-t] [-w N] [-l LEVEL] [-V] [-h]\n"
	    "Runs the services of FILE (default %s), each on a\n"
	    "pool of workers of its own, in the foreground, logging to "
	    "stderr.\n"
	    "  -c FILE   the configuration (netcluster.json(5))\n"
	    "  -t        check the configuration as startup does, short of "
	    "binding\n"
	    "            (hosts resolve, fd: and systemd: sockets are there, "
	    "modules\n"
	    "            load, users and groups exist and can run what their "
	    "services\n"
	    "            run, the control socket's directory can be made), "
	    "print\n"
	    "            \"FILE: configuration OK\" or its errors, and exit 0 "
	    "or 1\n"
	    "            (1 as startup refuses)\n"
	    "  -w N      N workers for each service that does not set its "
	    "own\n"
	    "            (overrides the top-level \"workers\")\n"
	    "  -l LEVEL  log threshold: error, warning, notice, info, debug\n"
	    "  -V        print the version and exit\n"
	    "  -h        print this help and exit\n", SYSCONFDIR
	    "/netcluster/netcluster.json");
}

static void
hup_done(const char *error, void *arg)
{
	(void)arg;
	if (error == NULL)
		log_notice("SIGHUP: reloaded");
}

/* Stopping, and the last worker is gone: the loop ends. */
static void
main_worker_gone(struct worker *w)
{
	(void)w;
	if (master.stopping && gen_alive() == 0)
		event_base_loopbreak(master.base);
}

/* Every slot has its worker online: ready (again, after a restart). */
static void
main_worker_online(struct worker *w)
{
	(void)w;
	if (master.operation == NULL && gen_all_online())
		notify_ready();
}

/*
 * SIGCHLD: every child that ended. A worker's process group goes with
 * it: what it started is killed while the worker is still a zombie,
 * which keeps its pid, the group's id, from being taken again. Anything
 * else is reaped and forgotten: as PID 1 in a container, the orphans
 * the kernel hands over.
 */
static void
main_reap(void)
{
	siginfo_t	si;
	pid_t		pid;
	int		status;

	for (;;) {
		memset(&si, 0, sizeof si);
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == -1 ||
		    (pid = si.si_pid) == 0)
			break;
		if (gen_worker_by_pid(pid) != NULL)
			(void)kill(-pid, SIGKILL);
		if (waitpid(pid, &status, WNOHANG) != pid)
			break;
		if (!binary_reaped(pid, status) &&
		    !check_reaped(pid, status))
			(void)pool_reaped(pid, status);
	}
}

static void
main_stop(int sig)
{
	if (master.stopping)
		return;
	log_notice("%s: stopping; open connections have %d ms to finish",
	    sig == SIGINT ? "SIGINT" : "SIGTERM", gen_shutdown_ms());
	notify_stopping();
	notify_status("stopping");
	master.stopping = true;
	reload_stop();
	scale_stop();
	recycle_stop();
	handoff_accepting();
	pool_stop_all();
	main_worker_gone(NULL);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (sig == SIGCHLD)
		main_reap();
	else if (sig == SIGHUP)
		reload(NULL, 0, hup_done, NULL);
	else
		main_stop(sig);
}

/* Options: the file, and 0, or an exit status to return now. */
static int
main_options(int argc, char **argv, const char **file, bool *test,
    const char **level)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	int	ch;

	while ((ch = getopt_long(argc, argv, "c:tw:l:Vh", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'c':
			*file = optarg;
			break;
		case 't':
			*test = true;
			break;
		case 'w':
			master.cli_workers = atoi(optarg);
			if (master.cli_workers < 1 ||
			    master.cli_workers > 1024) {
				fprintf(stderr, "netclusterd: -w: expected 1 "
				    "to 1024 workers, got \"%s\"\n", optarg);
				return 2;
			}
			break;
		case 'l':
			*level = optarg;
			if ((master.cli_level = level_from_word(optarg)) ==
			    -1) {
				fprintf(stderr, "netclusterd: -l: expected "
				    "error, warning, notice, info or debug, got "
				    "\"%s\"\n", optarg);
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
	return -1;
}

/*
 * The first generation from cfg, swapped in; after an upgrade, with the
 * listeners, the connections they queued and the workers of the master
 * before. Fatal if it cannot be built.
 */
static void
main_build(struct nc_config *cfg, json_t *upgrade)
{
	struct build	 b;
	struct conf	*conf;
	json_t		*q;
	char		 err[512];
	size_t		 i;

	if ((conf = conf_new(cfg)) == NULL)
		fatalx("out of memory");
	memset(&b, 0, sizeof b);
	b.kind = BUILD_ALL;
	b.conf = conf;
	err[0] = '\0';
	if (build_prepare(&b, err, sizeof err) == -1) {
		listener_close_all();
		fatalx("%s", err);
	}
	build_commit(&b);
	free(b.renew);
	conf_unref(conf);
	for (i = 0; upgrade != NULL && i < master.gen->nlisteners; i++)
		if ((q = listener_take_queued(master.gen->listeners[i])) !=
		    NULL) {
			handoff_queue_fds(master.gen->listeners[i], q);
			json_decref(q);
		}
	listener_inherit_done();
}

/* After an upgrade: what the master before counted, and its workers. */
static void
main_adopt(json_t *upgrade)
{
	const char	*from = json_string_value(json_object_get(upgrade,
	    "version"));

	stats_adopt(json_object_get(upgrade, "stats"));
	stats_add("upgrades", "success", 1);
	pool_adopt(json_object_get(upgrade, "workers"));
	log_notice("upgraded in place: pid %d, netclusterd %s -> %s, from %s",
	    (int)getpid(), from != NULL ? from : "(unknown)", PACKAGE_VERSION,
	    binary_path());
}

static void
main_exit(struct event **sigs)
{
	sigset_t	 set;
	struct pool	*p;
	size_t		 i;

	/*
	 * On the way out, a signal waits: freeing the signal events gives
	 * them back their default action, and a second SIGTERM now would
	 * kill a master that is stopping cleanly.
	 */
	sigemptyset(&set);
	for (i = 0; i < NSIGNALS; i++)
		sigaddset(&set, signums[i]);
	(void)sigprocmask(SIG_BLOCK, &set, NULL);
	notify_stop();
	control_close();
	endpoint_close();
	http_close();
	upgrade_close();
	reload_stop();
	scale_stop();
	recycle_stop();
	heartbeat_stop();
	for (i = 0; i < NSIGNALS; i++)
		event_free(sigs[i]);
	for (i = 0; i < master.gen->npools; i++)
		pool_free(master.gen->pools[i]);
	while ((p = TAILQ_FIRST(&master.retired)) != NULL) {
		TAILQ_REMOVE(&master.retired, p, entry);
		pool_free(p);
	}
	build_free(master.gen);
	master.gen = NULL;
	listener_close_all();
	handoff_close();
	metrics_free();
	stats_free();
	event_base_free(master.base);
	log_notice("stopped");
}

/*
 * The log, the loop, its signals, and the hooks by which the files above
 * worker.c hear of the workers.
 */
static void
main_loop_init(struct event **sigs, int level)
{
	size_t	i;

	nc__log_open("netclusterd", false);
	nc__log_set_ident("netclusterd[%d]", (int)getpid());
	nc_set_log_level(level);
	signal(SIGPIPE, SIG_IGN);
	clock_gettime(CLOCK_MONOTONIC, &master.started);
	if ((master.base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	for (i = 0; i < NSIGNALS; i++) {
		sigs[i] = evsignal_new(master.base, signums[i], signal_cb, NULL);
		if (sigs[i] == NULL || evsignal_add(sigs[i], NULL) == -1)
			fatalx("cannot watch signal %d", signums[i]);
	}
	dispatch_init();
	handoff_init();
	broadcast_init();
	count_init();
	stats_init();
	rollout_init();
	scale_init();
	ready_init();
	heartbeat_init();
	recycle_init();
	worker_hook(WEV_ONLINE, main_worker_online);
	worker_hook(WEV_GONE, main_worker_gone);
}

int
main(int argc, char **argv)
{
	const char		*file = SYSCONFDIR "/netcluster/netcluster.json";
	const char		*level = NULL;
	struct nc_config	*cfg;
	struct event		*sigs[NSIGNALS];
	json_t			*upgrade;
	char			*errors, err[512];
	bool			 test = false;
	size_t			 i;
	int			 rc;

	if ((rc = main_options(argc, argv, &file, &test, &level)) != -1)
		return rc;
	if (nc_config_load(file, &cfg, &errors) != 0) {
		fputs(errors, stderr);
		free(errors);
		return 1;
	}
	/*
	 * The new master of an upgrade takes its listeners as they are:
	 * the check does not look at them again.
	 */
	upgrade = test ? NULL : upgrade_state(argv);
	if (upgrade != NULL &&
	    listener_inherit(json_object_get(upgrade, "listeners")) == -1)
		fatalx("upgrade: bad listeners in the state");
	if (upgrade != NULL)
		endpoint_inherit(json_object_get(upgrade, "endpoints"));
	/* -t and startup refuse alike: the same check, text and status. */
	if (check_config(cfg, &errors) != 0) {
		fputs(errors, stderr);
		free(errors);
		nc_config_free(cfg);
		json_decref(upgrade);
		return 1;
	}
	if (test) {
		printf("%s: configuration OK\n", file);
		nc_config_free(cfg);
		return 0;
	}

	main_loop_init(sigs, level != NULL ? master.cli_level :
	    cfg->log_level);
	main_build(cfg, upgrade);
	if (control_open(gen_config()->control_socket, err, sizeof err) == -1)
		fatalx("control socket %s", err);
	/* Where the next upgrade finds its binary. */
	binary_init(json_string_value(json_object_get(upgrade, "binary")),
	    argv[0]);
	log_notice("netclusterd %s started: %zu services, %d workers",
	    PACKAGE_VERSION, master.gen->npools, gen_slots());
	notify_start();
	if (upgrade != NULL) {
		main_adopt(upgrade);
		reload_start_all();
		/*
		 * The client waits for the rollover from now on, before any
		 * reaping may end it (a new worker that already failed).
		 */
		if (json_integer_value(json_object_get(upgrade, "client")) > 2)
			control_adopt((int)json_integer_value(json_object_get(
			    upgrade, "client")), json_string_value(
			    json_object_get(upgrade, "version")));
		/* Adopted workers that exited during the exec: reap them. */
		main_reap();
		json_decref(upgrade);
	} else
		for (i = 0; i < master.gen->npools; i++)
			pool_start(master.gen->pools[i]);
	handoff_accepting();

	event_base_dispatch(master.base);
	main_exit(sigs);
	return 0;
}
