/*
 * The binary an upgrade executes (upgrade.c), and its check before the
 * exec.
 *
 * The master learns at start the path it was started from (argv[0] made
 * absolute, as nginx and HAProxy do; the link name is kept, so a symlink
 * an upgrade re-points is followed) and hands it over in the upgrade
 * state, so every master after an upgrade knows it too. /proc/self/exe is
 * no path for that: once the file is replaced it names the old, deleted
 * inode.
 *
 * Before an upgrade executes the file at that path, it runs it twice in
 * a child, never blocking the loop and under one deadline: `PATH -V` must
 * print "netclusterd VERSION" and `PATH -t -c CONFIG` must accept the
 * running configuration. main.c's SIGCHLD loop hands the check's child
 * over (binary_reaped), so it is never taken for a worker.
 */

#include <sys/types.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "master.h"

#define CHECK_OUTPUT_MAX	4096	/* what is kept of a check's output */

extern char	**environ;

static char	 path_file[PATH_MAX];	/* path_file() */

enum check_step {
	CHECK_IDLE,
	CHECK_VERSION,		/* PATH -V */
	CHECK_CONFIG		/* PATH -t -c CONFIG */
};

static struct {
	enum check_step	  step;
	pid_t		  pid;		/* running, or killed and not reaped */
	int		  status;
	bool		  exited;	/* reaped, status is set */
	int		  out;		/* its stdout and stderr, or -1 */
	bool		  eof;
	struct event	 *out_ev;
	struct event	 *timer;
	char		  output[CHECK_OUTPUT_MAX];
	size_t		  len;
	int		  fd;		/* the binary checked, for the exec */
	struct stat	  st;		/* of the path when the check began */
	char		  version[64];
	char		  config[PATH_MAX];
	void		(*done)(const char *, const char *, int, void *);
	void		 *arg;
} check = { .step = CHECK_IDLE, .pid = -1, .out = -1, .fd = -1 };

static void	check_next(void);

/*
 * path, made absolute and clean in out: its directory resolved (no ".",
 * "..", or links), its last name kept as it is, a link's own name.
 */
static int
binary_absolute(const char *path, char *out, size_t len)
{
	char		 dir[PATH_MAX], real[PATH_MAX];
	const char	*base = strrchr(path, '/');

	if (base == NULL) {
		base = path;
		snprintf(dir, sizeof dir, ".");
	} else if ((size_t)snprintf(dir, sizeof dir, "%.*s",
	    (int)(base == path ? 1 : base - path), path) >= sizeof dir)
		return -1;
	else
		base++;
	if (*base == '\0' || realpath(dir, real) == NULL)
		return -1;
	return (size_t)snprintf(out, len, "%s/%s", strcmp(real, "/") == 0 ?
	    "" : real, base) < len ? 0 : -1;
}

/* Where argv0 (no slash in it) was found in PATH, as execvp() looks. */
static int
binary_search_path(const char *argv0, char *out, size_t len)
{
	const char	*p = getenv("PATH"), *colon;
	size_t		 n;

	if (p == NULL)
		p = "/usr/local/bin:/usr/bin:/bin";
	for (; *p != '\0'; p = *colon == '\0' ? colon : colon + 1) {
		if ((colon = strchr(p, ':')) == NULL)
			colon = p + strlen(p);
		n = (size_t)(colon - p);
		if ((size_t)snprintf(out, len, "%.*s/%s", (int)n, n == 0 ?
		    "." : p, argv0) < len && access(out, X_OK) == 0)
			return 0;
	}
	return -1;
}

/* Is path (absolute) a name of the running file, not of /proc or fds? */
static bool
binary_is_self(const char *path)
{
	struct stat	self, st;

	if (strncmp(path, "/proc/", 6) == 0 || strncmp(path, "/dev/fd/", 8) == 0)
		return false;
	return stat("/proc/self/exe", &self) == 0 && stat(path, &st) == 0 &&
	    st.st_dev == self.st_dev && st.st_ino == self.st_ino;
}

/*
 * Sets path_file: given (from the master before an upgrade), else
 * the path this process was executed by (AT_EXECFN, else argv0 looked up
 * as the shell did) if it names the running file, else what
 * /proc/self/exe reads. A master before this one that executed
 * /proc/self/exe itself hands no path over: argv0 then.
 */
void
binary_init(const char *given, const char *argv0)
{
	const char	*names[2];
	char		 path[PATH_MAX], found[PATH_MAX];
	ssize_t		 n;
	size_t		 dl, i;

	if (given != NULL && binary_absolute(given, path_file,
	    sizeof path_file) == 0)
		return;
	names[0] = (const char *)getauxval(AT_EXECFN);
	names[1] = argv0;
	for (i = 0; i < 2; i++) {
		if (names[i] == NULL || *names[i] == '\0')
			continue;
		if (strchr(names[i], '/') == NULL) {
			if (binary_search_path(names[i], found,
			    sizeof found) == -1)
				continue;
			names[i] = found;
		}
		if (binary_absolute(names[i], path, sizeof path) == 0 &&
		    binary_is_self(path)) {
			snprintf(path_file, sizeof path_file, "%s",
			    path);
			return;
		}
	}
	n = readlink("/proc/self/exe", path_file, sizeof path_file - 1);
	if (n <= 0) {
		path_file[0] = '\0';
		return;
	}
	path_file[n] = '\0';
	/* Started from a file already gone: name the path, not its state. */
	dl = strlen(" (deleted)");
	if ((size_t)n > dl && strcmp(path_file + n - dl, " (deleted)") == 0)
		path_file[n - dl] = '\0';
}

/* The path the master was started from: what an upgrade executes. */
const char *
binary_path(void)
{
	return path_file;
}

/*
 * Is the file at path_file another one than the one running (its
 * device and inode differ from /proc/self/exe's, or it is gone)?
 */
bool
binary_changed(void)
{
	struct stat	self, st;

	if (stat("/proc/self/exe", &self) == -1)
		return false;
	return stat(path_file, &st) == -1 || st.st_dev != self.st_dev ||
	    st.st_ino != self.st_ino;
}

bool
binary_checking(void)
{
	return check.step != CHECK_IDLE;
}

/*
 * The first line of what the check printed, for a one-line reason: what
 * is not printable ASCII (control characters, bytes that may not be
 * UTF-8, which a JSON answer cannot carry) reads '?'.
 */
static const char *
check_first_line(void)
{
	size_t	i;

	check.output[check.len] = '\0';
	for (i = 0; i < check.len; i++) {
		if (check.output[i] == '\n') {
			check.output[i] = '\0';
			break;
		}
		if (check.output[i] < ' ' || check.output[i] > '~')
			check.output[i] = '?';
	}
	return check.output;
}

static void
check_close_output(void)
{
	if (check.out_ev != NULL) {
		event_free(check.out_ev);
		check.out_ev = NULL;
	}
	if (check.out != -1) {
		close(check.out);
		check.out = -1;
	}
}

/* The check ends: done(error or NULL, version, fd of the binary). */
static void
check_finish(const char *error)
{
	void	(*done)(const char *, const char *, int, void *) = check.done;
	void	 *arg = check.arg;
	int	  fd = check.fd;

	check_close_output();
	(void)evtimer_del(check.timer);
	check.step = CHECK_IDLE;
	check.done = NULL;
	check.fd = -1;
	if (error != NULL && fd != -1) {
		close(fd);
		fd = -1;
	}
	done(error, error == NULL ? check.version : NULL, fd, arg);
}

static void
check_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
check_fail(const char *fmt, ...)
{
	char	msg[512];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	check_finish(msg);
}

/* Both the child's exit and the end of its output are in: judge. */
static void
check_judge(void)
{
	const char	*line = check_first_line();
	const char	*what = check.step == CHECK_VERSION ? "-V" : "-t";
	struct stat	 st;
	char		 why[64];
	size_t		 i;

	if (WIFSIGNALED(check.status))
		snprintf(why, sizeof why, "killed by signal %d",
		    WTERMSIG(check.status));
	else
		snprintf(why, sizeof why, "exited with status %d",
		    WEXITSTATUS(check.status));
	if (check.step == CHECK_VERSION) {
		if (!WIFEXITED(check.status) || WEXITSTATUS(check.status) != 0 ||
		    strncmp(line, "netclusterd ", 12) != 0 ||
		    strlen(line + 12) == 0 ||
		    strlen(line + 12) >= sizeof check.version) {
			check_fail("%s is not a netclusterd: %s %s %s%s%.100s%s",
			    path_file, path_file, what, why,
			    *line != '\0' ? " (\"" : "", line,
			    *line != '\0' ? "\")" : "");
			return;
		}
		snprintf(check.version, sizeof check.version, "%s", line + 12);
		for (i = 0; check.version[i] != '\0'; i++)
			if (check.version[i] <= ' ' || check.version[i] > '~')
				check.version[i] = '?';
		check.step = CHECK_CONFIG;
		check_next();
		return;
	}
	if (!WIFEXITED(check.status) || WEXITSTATUS(check.status) != 0) {
		check_fail("%s -t -c %s %s%s%.200s", path_file,
		    check.config, why, *line != '\0' ? ": " : "", line);
		return;
	}
	/* What was checked must be what the descriptor holds. */
	if (stat(path_file, &st) == -1 || st.st_dev != check.st.st_dev ||
	    st.st_ino != check.st.st_ino) {
		check_fail("%s was replaced during the check; try again",
		    path_file);
		return;
	}
	check_finish(NULL);
}

static void
check_read_cb(evutil_socket_t fd, short what, void *arg)
{
	char	buf[1024];
	ssize_t	n;
	size_t	room;

	(void)what;
	(void)arg;
	n = read(fd, buf, sizeof buf);
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		check.eof = true;
		check_close_output();
		if (check.exited)
			check_judge();
		return;
	}
	room = sizeof check.output - 1 - check.len;
	if ((size_t)n > room)
		n = (ssize_t)room;
	memcpy(check.output + check.len, buf, (size_t)n);
	check.len += (size_t)n;
}

static void
check_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	/* Reaped later, and recognised then, by its pid. */
	if (check.pid > 0)
		(void)kill(-check.pid, SIGKILL);
	check_fail("%s %s did not finish within %d ms", path_file,
	    check.step == CHECK_VERSION ? "-V" : "-t", UPGRADE_CHECK_MS);
}

/* The child of a check exited; false if pid is none of ours. */
bool
binary_reaped(pid_t pid, int status)
{
	if (pid != check.pid || pid == -1)
		return false;
	check.pid = -1;
	if (check.step == CHECK_IDLE)
		return true;	/* it timed out before: nobody waits */
	check.status = status;
	check.exited = true;
	if (check.eof)
		check_judge();
	return true;
}

/* Starts the child of the current step, in its own process group. */
static void
check_next(void)
{
	posix_spawn_file_actions_t	 fa;
	posix_spawnattr_t		 attr;
	sigset_t			 none, def;
	char				*argv[6];
	int				 p[2], rc;

	argv[0] = path_file;
	if (check.step == CHECK_VERSION) {
		argv[1] = (char *)"-V";
		argv[2] = NULL;
	} else {
		argv[1] = (char *)"-t";
		argv[2] = (char *)"-c";
		argv[3] = check.config;
		argv[4] = NULL;
	}
	check.len = 0;
	check.exited = false;
	check.eof = false;
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) == -1) {
		check_fail("upgrade check: pipe: %s", strerror(errno));
		return;
	}
	sigemptyset(&none);
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE);
	if (posix_spawn_file_actions_init(&fa) != 0 ||
	    posix_spawnattr_init(&attr) != 0)
		fatalx("out of memory");
	(void)posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null",
	    O_RDONLY, 0);
	(void)posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
	(void)posix_spawn_file_actions_adddup2(&fa, p[1], STDERR_FILENO);
	(void)posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	(void)posix_spawnattr_setpgroup(&attr, 0);
	(void)posix_spawnattr_setsigmask(&attr, &none);
	(void)posix_spawnattr_setsigdefault(&attr, &def);
	/* glibc reports a failed exec here (and reaps that child). */
	rc = posix_spawn(&check.pid, path_file, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(p[1]);
	if (rc != 0) {
		check.pid = -1;
		close(p[0]);
		check_fail("cannot execute %s: %s", path_file,
		    strerror(rc));
		return;
	}
	check.out = p[0];
	if ((check.out_ev = event_new(master.base, check.out,
	    EV_READ | EV_PERSIST, check_read_cb, NULL)) == NULL ||
	    event_add(check.out_ev, NULL) == -1)
		fatalx("out of memory");
}

/*
 * Checks path_file before an upgrade executes it, against the
 * configuration file config. done(error, version, fd, arg) comes once
 * it is decided (from inside this call if the file cannot be opened):
 * error is a one-line reason, or NULL and version is what the binary
 * said and fd an open descriptor of the file checked (the caller
 * executes that very file, or closes it). One check at a time.
 */
void
binary_check(const char *config,
    void (*done)(const char *, const char *, int, void *), void *arg)
{
	struct timeval	tv = { UPGRADE_CHECK_MS / 1000,
			    (UPGRADE_CHECK_MS % 1000) * 1000 };

	check.done = done;
	check.arg = arg;
	check.version[0] = '\0';
	snprintf(check.config, sizeof check.config, "%s", config);
	if (check.timer == NULL && (check.timer = evtimer_new(master.base,
	    check_timeout_cb, NULL)) == NULL)
		fatalx("out of memory");
	if (evtimer_add(check.timer, &tv) == -1)
		fatalx("cannot arm the upgrade check's timer");
	check.step = CHECK_VERSION;
	if (path_file[0] == '\0') {
		check_fail("the path of netclusterd's binary is unknown");
		return;
	}
	if ((check.fd = open(path_file, O_RDONLY | O_CLOEXEC)) == -1 ||
	    fstat(check.fd, &check.st) == -1) {
		check_fail("cannot open %s: %s", path_file,
		    strerror(errno));
		return;
	}
	check_next();
}

/* At exit: a check still running is killed, its caller told why. */
void
binary_check_stop(void)
{
	if (check.step != CHECK_IDLE) {
		if (check.pid > 0)
			(void)kill(-check.pid, SIGKILL);
		check_fail("netclusterd is stopping");
	}
	if (check.timer != NULL) {
		event_free(check.timer);
		check.timer = NULL;
	}
}
