/*
 * netcluster.json against the machine: what parsing cannot know and the
 * daemon would refuse before it binds. One function for netclusterd -t,
 * startup, reload and upgrade, so they never disagree; errors are placed
 * in the file as parse errors are.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nc-config.h"
#include "nc-int.h"
#include "nc-module.h"

int
nc_config_check_fd(int fd, bool *listening, char *err, size_t errlen)
{
	struct sockaddr_storage	ss;
	socklen_t		len;
	int			type, acc;

	if (fcntl(fd, F_GETFD) == -1) {
		snprintf(err, errlen, "fd %d is not open", fd);
		return -1;
	}
	len = sizeof type;
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == -1) {
		snprintf(err, errlen, "fd %d is not a socket", fd);
		return -1;
	}
	if (type != SOCK_STREAM) {
		snprintf(err, errlen, "fd %d is not a stream socket", fd);
		return -1;
	}
	len = sizeof acc;
	*listening = getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) ==
	    0 && acc;
	/* listen(2) refuses a socket connected to a peer (EINVAL). */
	len = sizeof ss;
	if (!*listening && getpeername(fd, (struct sockaddr *)&ss, &len) == 0) {
		snprintf(err, errlen, "fd %d is a connected socket, not one to "
		    "listen on", fd);
		return -1;
	}
	return 0;
}

int
nc_config_socket_dir(const char *path, char *dir, size_t dirlen, char *err,
    size_t errlen)
{
	struct stat	 st;
	char		 parent[PATH_MAX], *slash;

	snprintf(dir, dirlen, "%s", path);
	if ((slash = strrchr(dir, '/')) == NULL)
		snprintf(dir, dirlen, ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "%s is not a directory", dir);
			return -1;
		}
		if (access(dir, W_OK | X_OK) == -1) {
			snprintf(err, errlen, "directory %s: %s", dir,
			    strerror(errno));
			return -1;
		}
		return 0;
	}
	if (errno != ENOENT) {
		snprintf(err, errlen, "directory %s cannot be made: %s", dir,
		    strerror(errno));
		return -1;
	}
	/* Not there: made with mkdir(2), one level, as the daemon does. */
	snprintf(parent, sizeof parent, "%s", dir);
	if ((slash = strrchr(parent, '/')) == NULL)
		snprintf(parent, sizeof parent, ".");
	else if (slash == parent)
		parent[1] = '\0';
	else
		*slash = '\0';
	if (stat(parent, &st) == -1 || (!S_ISDIR(st.st_mode) &&
	    (errno = ENOTDIR) != 0) || access(parent, W_OK | X_OK) == -1) {
		snprintf(err, errlen, "directory %s cannot be made: %s", dir,
		    strerror(errno));
		return -1;
	}
	return 1;
}

/*
 * Loads the module in a child, which reports dlerror() or the version
 * found and exits: no module code runs in the checking process.
 */
static int
check_module(const char *path, char *err, size_t errlen)
{
	const struct nc_handler	*h;
	struct pollfd		 pfd;
	struct timespec		 start, now;
	void			*dl;
	char			 msg[512];
	size_t			 got = 0;
	ssize_t			 n;
	pid_t			 pid;
	int			 p[2], status, left;

	if (pipe2(p, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "cannot check %s: pipe: %s", path,
		    strerror(errno));
		return -1;
	}
	switch (pid = fork()) {
	case -1:
		snprintf(err, errlen, "cannot check %s: fork: %s", path,
		    strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	case 0:
		close(p[0]);
		if (nc_module_load(path, false, &h, &dl, msg, sizeof msg) == 0)
			_exit(0);
		n = write(p[1], msg, strlen(msg));
		_exit(n == -1 ? 2 : 1);
	default:
		break;
	}
	close(p[1]);
	clock_gettime(CLOCK_MONOTONIC, &start);
	pfd.fd = p[0];
	pfd.events = POLLIN;
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		left = NC_CONFIG_MODULE_MS - (int)((now.tv_sec -
		    start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) /
		    1000000);
		if (left <= 0 || (poll(&pfd, 1, left) == -1 && errno != EINTR))
			break;
		n = read(p[0], msg + got, sizeof msg - 1 - got);
		if (n == -1 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == sizeof msg - 1)
			break;
	}
	msg[got] = '\0';
	close(p[0]);
	if (left <= 0)
		(void)kill(pid, SIGKILL);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	if (left <= 0) {
		snprintf(err, errlen, "loading %s took more than %d ms", path,
		    NC_CONFIG_MODULE_MS);
		return -1;
	}
	if (got > 0) {
		snprintf(err, errlen, "%s", msg);
		return -1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (WIFSIGNALED(status))
			snprintf(err, errlen, "loading %s was killed by signal "
			    "%d", path, WTERMSIG(status));
		else
			snprintf(err, errlen, "loading %s exited with status "
			    "%d", path, WEXITSTATUS(status));
		return -1;
	}
	return 0;
}

/* host resolves, as who will use it resolves it (family 0, 4 or 6). */
static int
check_resolve(const char *host, int family, char *address, size_t len,
    char *err, size_t errlen)
{
	int	rc, rfamily;

	if (nc_is_ip(host) != 0) {
		snprintf(address, len, "%s", host);
		return 0;
	}
	rc = nc__lookup_wait(host, family, NC_CONFIG_RESOLVE_MS, address, len,
	    &rfamily);
	if (rc == NC_ETIMEDOUT)
		snprintf(err, errlen, "cannot resolve %s: no answer within %d "
		    "ms", host, NC_CONFIG_RESOLVE_MS);
	else if (rc != 0)
		snprintf(err, errlen, "cannot resolve %s: %s (%s)", host,
		    nc_strerror(rc), nc_err_name(rc));
	return rc != 0 ? -1 : 0;
}

static void
check_listen_fd(struct nc_config *cfg, const struct nc_config_check_env *env,
    struct nc_listen_addr *a, const char *path, char **errors)
{
	char	err[512], why[256];
	bool	listening;
	int	fd = a->fd;

	if (env != NULL && env->held != NULL && env->held(a, env->arg))
		return;
	if (a->kind == NC_LISTEN_SYSTEMD) {
		if (env == NULL || env->systemd_fd == NULL) {
			nc_config_error(cfg, errors, path, "no socket named %s "
			    "was passed by systemd (FileDescriptorName=)",
			    a->name);
			return;
		}
		if ((fd = env->systemd_fd(a->name, err, sizeof err,
		    env->arg)) == -1) {
			nc_config_error(cfg, errors, path, "%s", err);
			return;
		}
	}
	if (nc_config_check_fd(fd, &listening, why, sizeof why) == -1) {
		if (a->kind == NC_LISTEN_SYSTEMD)
			nc_config_error(cfg, errors, path, "systemd socket %s: "
			    "%s", a->name, why);
		else
			nc_config_error(cfg, errors, path, "%s", why);
	}
}

static void
check_endpoint_fd(struct nc_config *cfg, const struct nc_config_check_env *env,
    struct nc_endpoint *ep, const char *path, char **errors)
{
	if (ep->on && (ep->listen.kind == NC_LISTEN_FD ||
	    ep->listen.kind == NC_LISTEN_SYSTEMD))
		check_listen_fd(cfg, env, &ep->listen, path, errors);
}

/* A TCP listener's host, resolved once into `address`, what is bound. */
static void
check_listen_resolve(struct nc_config *cfg, struct nc_listen_addr *a,
    const char *path, char **errors)
{
	char	address[64], err[512];

	if (a->kind != NC_LISTEN_TCP || a->host == NULL)
		return;
	free(a->address);
	a->address = NULL;
	/* As netclusterd always bound it: IPv4 loopback. */
	if (strcmp(a->host, "localhost") == 0)
		snprintf(address, sizeof address, "127.0.0.1");
	else if (check_resolve(a->host, 0, address, sizeof address, err,
	    sizeof err) == -1) {
		nc_config_error(cfg, errors, path, "%s", err);
		return;
	}
	if ((a->address = strdup(address)) == NULL)
		nc_config_error(cfg, errors, path, "out of memory");
}

static void
check_credentials(struct nc_config *cfg, char **errors)
{
	struct passwd	*pw;
	struct group	*gr;
	uid_t		 uid = (uid_t)-1;
	gid_t		 gid = (gid_t)-1;
	bool		 bad = false;

	if (cfg->user != NULL) {
		if ((pw = getpwnam(cfg->user)) == NULL) {
			nc_config_error(cfg, errors, "user", "no user named "
			    "\"%s\"", cfg->user);
			bad = true;
		} else {
			uid = pw->pw_uid;
			gid = pw->pw_gid;	/* unless group says */
		}
	}
	if (cfg->group != NULL) {
		if ((gr = getgrnam(cfg->group)) == NULL) {
			nc_config_error(cfg, errors, "group", "no group named "
			    "\"%s\"", cfg->group);
			bad = true;
		} else
			gid = gr->gr_gid;
	}
	if (!bad && (cfg->user != NULL || cfg->group != NULL) &&
	    geteuid() != 0) {
		nc_config_error(cfg, errors, cfg->user != NULL ? "user" :
		    "group", "netclusterd must start as root to run workers "
		    "as another user");
		bad = true;
	}
	if (!bad) {
		cfg->uid = uid;
		cfg->gid = gid;
	}
}

/*
 * What a program service runs: its command a file the worker's user may
 * execute, its cwd a directory it may enter. With user or group set, this
 * is asked as that user, in a child that drops privileges exactly as a
 * worker does (no supplementary groups); else as ourselves. 0, or -1
 * with a message in err and *which the key it is about.
 */
static int
check_program_access(const struct nc_config *cfg, const struct nc_service *s,
    char *err, size_t errlen, const char **which)
{
	struct stat	 st;
	char		 msg[512];
	ssize_t		 n;
	size_t		 got = 0;
	pid_t		 pid;
	int		 p[2], status;

	if (pipe2(p, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "cannot check %s: pipe: %s",
		    s->command[0], strerror(errno));
		*which = "command";
		return -1;
	}
	switch (pid = fork()) {
	case -1:
		snprintf(err, errlen, "cannot check %s: fork: %s",
		    s->command[0], strerror(errno));
		close(p[0]);
		close(p[1]);
		*which = "command";
		return -1;
	case 0:
		close(p[0]);
		msg[0] = '\0';
		if (cfg->gid != (gid_t)-1 && (setgroups(0, NULL) == -1 ||
		    setresgid(cfg->gid, cfg->gid, cfg->gid) == -1))
			snprintf(msg, sizeof msg, "Ccannot become group %d: %s",
			    (int)cfg->gid, strerror(errno));
		else if (cfg->uid != (uid_t)-1 && setresuid(cfg->uid,
		    cfg->uid, cfg->uid) == -1)
			snprintf(msg, sizeof msg, "Ccannot become user %d: %s",
			    (int)cfg->uid, strerror(errno));
		else if (stat(s->command[0], &st) == -1)
			snprintf(msg, sizeof msg, "C%s: %s", s->command[0],
			    strerror(errno));
		else if (!S_ISREG(st.st_mode))
			snprintf(msg, sizeof msg, "C%s: not a regular file",
			    s->command[0]);
		else if (access(s->command[0], X_OK) == -1)
			snprintf(msg, sizeof msg, "C%s: not executable by the "
			    "workers' user (uid %d, gid %d): %s", s->command[0],
			    (int)getuid(), (int)getgid(), strerror(errno));
		else if (s->cwd != NULL && (stat(s->cwd, &st) == -1 ||
		    !S_ISDIR(st.st_mode)))
			snprintf(msg, sizeof msg, "W%s: not a directory",
			    s->cwd);
		else if (s->cwd != NULL && access(s->cwd, X_OK) == -1)
			snprintf(msg, sizeof msg, "W%s: the workers' user "
			    "(uid %d) cannot enter it: %s", s->cwd,
			    (int)getuid(), strerror(errno));
		n = write(p[1], msg, strlen(msg));
		_exit(n == -1 ? 2 : 0);
	default:
		break;
	}
	close(p[1]);
	while (got < sizeof msg - 1) {
		n = read(p[0], msg + got, sizeof msg - 1 - got);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	msg[got] = '\0';
	close(p[0]);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	if (got > 1) {
		*which = msg[0] == 'W' ? "cwd" : "command";
		snprintf(err, errlen, "%s", msg + 1);
		return -1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		*which = "command";
		snprintf(err, errlen, "cannot check %s", s->command[0]);
		return -1;
	}
	return 0;
}

int
nc_config_check(struct nc_config *cfg, const struct nc_config_check_env *env,
    char **errors)
{
	struct nc_service	*s;
	struct nc_listen_addr	*a, u;
	char			 path[128], err[512], address[64], dir[PATH_MAX];
	const char		*which;
	size_t			 i, k;

	*errors = NULL;
	/*
	 * Inherited fds first, before resolving or loading anything opens
	 * (and perhaps keeps) an fd of its own.
	 */
	for (i = 0; i < cfg->nservices; i++) {
		s = &cfg->services[i];
		for (k = 0; k < s->nlisten; k++) {
			a = &s->listen[k];
			if (a->kind != NC_LISTEN_FD &&
			    a->kind != NC_LISTEN_SYSTEMD)
				continue;
			snprintf(path, sizeof path, "services[%zu].listen[%zu]",
			    i, k);
			check_listen_fd(cfg, env, a, path, errors);
		}
	}
	check_endpoint_fd(cfg, env, &cfg->metrics, "metrics.listen", errors);
	check_endpoint_fd(cfg, env, &cfg->agent, "agent.listen", errors);
	if (cfg->metrics.on)
		check_listen_resolve(cfg, &cfg->metrics.listen,
		    "metrics.listen", errors);
	if (cfg->agent.on)
		check_listen_resolve(cfg, &cfg->agent.listen, "agent.listen",
		    errors);
	for (i = 0; i < cfg->nservices; i++) {
		s = &cfg->services[i];
		for (k = 0; k < s->nlisten; k++) {
			snprintf(path, sizeof path, "services[%zu].listen[%zu]",
			    i, k);
			check_listen_resolve(cfg, &s->listen[k], path, errors);
		}
		for (k = 0; k < s->nupstream; k++) {
			if (nc_config_parse_listen(s->upstream[k], &u, err,
			    sizeof err) != 0)
				continue;	/* parsing said so */
			snprintf(path, sizeof path,
			    "services[%zu].upstream[%zu]", i, k);
			/* As the proxy connects: IPv4 unless an IPv6 literal. */
			if (u.kind == NC_LISTEN_TCP && u.host != NULL &&
			    check_resolve(u.host, nc_is_ipv6(u.host) ? 6 : 4,
			    address, sizeof address, err, sizeof err) == -1)
				nc_config_error(cfg, errors, path, "%s", err);
			nc_config_listen_clear(&u);
		}
		if (s->handler == NC_HANDLER_MODULE && s->module != NULL) {
			snprintf(path, sizeof path, "services[%zu].module", i);
			if (check_module(s->module, err, sizeof err) == -1)
				nc_config_error(cfg, errors, path, "%s", err);
		}
	}
	check_credentials(cfg, errors);
	/* After the credentials: as the user the program will run as. */
	for (i = 0; i < cfg->nservices; i++) {
		s = &cfg->services[i];
		if (s->handler != NC_HANDLER_PROGRAM || s->ncommand == 0)
			continue;
		if (check_program_access(cfg, s, err, sizeof err,
		    &which) == -1) {
			snprintf(path, sizeof path, "services[%zu].%s%s", i,
			    which, strcmp(which, "command") == 0 ? "[0]" : "");
			nc_config_error(cfg, errors, path, "%s", err);
		}
	}
	if (cfg->control_socket != NULL &&
	    nc_config_socket_dir(cfg->control_socket, dir, sizeof dir, err,
	    sizeof err) == -1)
		nc_config_error(cfg, errors, "control_socket", "%s", err);
	return *errors != NULL ? -1 : 0;
}
