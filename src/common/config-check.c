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
	char		*slash;

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
	/*
	 * Not there: the daemon will make it with mkdir(2), one level. Ask
	 * mkdir itself, as asking access(2) of the parent is not the same
	 * (root may "write" to /proc, where nothing can be made), and take
	 * it away again at once.
	 */
	if (mkdir(dir, 0755) == -1) {
		if (errno == EEXIST)
			return 0;	/* made meanwhile by someone else */
		snprintf(err, errlen, "directory %s cannot be made: %s", dir,
		    strerror(errno));
		return -1;
	}
	(void)rmdir(dir);
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


/*
 * Who the workers of each service run as. A name is looked up where it
 * is written: a service's own user or group at services[N], the
 * top-level ones (the defaults) once, however many services take them.
 */
struct check_creds {
	uid_t	uid;		/* of user, or -1 */
	gid_t	user_gid;	/* user's primary group, or -1 */
	gid_t	gid;		/* of group, or -1 */
	bool	user_bad;	/* did not resolve (said already) */
	bool	group_bad;
};

#define CHECK_CREDS_INIT						\
	{ (uid_t)-1, (gid_t)-1, (gid_t)-1, false, false }

static void
check_user(struct nc_config *cfg, const char *name, const char *path,
    struct check_creds *cr, char **errors)
{
	struct passwd	*pw;

	if (name == NULL)
		return;
	if ((pw = getpwnam(name)) == NULL) {
		nc_config_error(cfg, errors, path, "no user named \"%s\"",
		    name);
		cr->user_bad = true;
		return;
	}
	cr->uid = pw->pw_uid;
	cr->user_gid = pw->pw_gid;
}

static void
check_group(struct nc_config *cfg, const char *name, const char *path,
    struct check_creds *cr, char **errors)
{
	struct group	*gr;

	if (name == NULL)
		return;
	if ((gr = getgrnam(name)) == NULL) {
		nc_config_error(cfg, errors, path, "no group named \"%s\"",
		    name);
		cr->group_bad = true;
		return;
	}
	cr->gid = gr->gr_gid;
}

/*
 * Whether a service's user (or group) is its own: one the same as the
 * top-level one is taken as that one, and checked with it.
 */
static bool
check_own(const char *svc, const char *top)
{
	return svc != NULL && (top == NULL || strcmp(svc, top) != 0);
}

/*
 * Where service i's credentials are written: its own user or group
 * (the path in buf), else the top-level user or group; NULL if none.
 */
static const char *
check_creds_path(const struct nc_config *cfg, size_t i, char *buf,
    size_t len)
{
	const struct nc_service	*s = &cfg->services[i];

	if (check_own(s->user, cfg->user))
		snprintf(buf, len, "services[%zu].user", i);
	else if (check_own(s->group, cfg->group))
		snprintf(buf, len, "services[%zu].group", i);
	else if (s->user != NULL || s->group != NULL)
		return s->user != NULL ? "user" : "group";
	else
		return NULL;
	return buf;
}

/*
 * The service's uid and gid: its user's (its own or the top-level one)
 * uid and primary group, unless a group is given. Left -1 when a name is
 * unknown, or when we are not root, who alone may run workers as anyone.
 */
static void
check_service_credentials(struct nc_config *cfg, size_t i,
    const struct check_creds *top, bool *top_said, char **errors)
{
	struct nc_service	*s = &cfg->services[i];
	struct check_creds	 cr = CHECK_CREDS_INIT;
	const char		*path;
	char			 buf[64];

	snprintf(buf, sizeof buf, "services[%zu].user", i);
	if (check_own(s->user, cfg->user))
		check_user(cfg, s->user, buf, &cr, errors);
	else if (s->user != NULL)
		cr = *top;
	snprintf(buf, sizeof buf, "services[%zu].group", i);
	cr.gid = (gid_t)-1;
	cr.group_bad = false;
	if (check_own(s->group, cfg->group))
		check_group(cfg, s->group, buf, &cr, errors);
	else if (s->group != NULL) {
		cr.gid = top->gid;
		cr.group_bad = top->group_bad;
	}
	if (cr.user_bad || cr.group_bad ||
	    (path = check_creds_path(cfg, i, buf, sizeof buf)) == NULL)
		return;
	if (geteuid() != 0) {
		if (path == buf || !*top_said)
			nc_config_error(cfg, errors, path, "netclusterd must "
			    "start as root to run workers as another user");
		if (path != buf)
			*top_said = true;
		return;
	}
	s->uid = cr.uid;
	s->gid = s->group != NULL ? cr.gid : cr.user_gid;
}

static void
check_credentials(struct nc_config *cfg, char **errors)
{
	struct check_creds	top = CHECK_CREDS_INIT;
	size_t			i;
	bool			top_said = false;

	check_user(cfg, cfg->user, "user", &top, errors);
	check_group(cfg, cfg->group, "group", &top, errors);
	for (i = 0; i < cfg->nservices; i++)
		check_service_credentials(cfg, i, &top, &top_said, errors);
}

/*
 * What the workers of a service open as their own user: a program's
 * command and cwd, netcluster-worker for a built-in handler, a module.
 */
enum check_access_kind {
	ACCESS_EXEC,		/* a regular file it may execute */
	ACCESS_DIR,		/* a directory it may enter */
	ACCESS_READ		/* a regular file it may read */
};

struct check_access {
	const char		*file;
	enum check_access_kind	 kind;
	char			 path[64];	/* the key an error is at */
};

#define CHECK_ACCESS_MAX	3

/*
 * In the child, as the workers' user: "" or why not. A path that cannot
 * be reached (a directory on the way this user may not enter, such as a
 * home directory of mode 0700) says so, naming the user.
 */
static void
check_access_one(const struct check_access *ca, const char *who, char *msg,
    size_t len)
{
	struct stat	st;
	int		mode = ca->kind == ACCESS_READ ? R_OK : X_OK;

	msg[0] = '\0';
	if (stat(ca->file, &st) == -1) {
		if (errno == EACCES)
			snprintf(msg, len, "%s: not accessible to %s: %s",
			    ca->file, who, strerror(errno));
		else if (errno == ENOTDIR && ca->kind == ACCESS_DIR)
			snprintf(msg, len, "%s: not a directory", ca->file);
		else
			snprintf(msg, len, "%s: %s", ca->file, strerror(errno));
	} else if (ca->kind == ACCESS_DIR ? !S_ISDIR(st.st_mode) :
	    !S_ISREG(st.st_mode))
		snprintf(msg, len, "%s: not a %s", ca->file,
		    ca->kind == ACCESS_DIR ? "directory" : "regular file");
	else if (access(ca->file, mode) == 0)
		return;
	else if (ca->kind == ACCESS_DIR)
		snprintf(msg, len, "%s: the workers' user (uid %d) cannot "
		    "enter it: %s", ca->file, (int)getuid(), strerror(errno));
	else
		snprintf(msg, len, "%s: not %s by the workers' user (uid %d, "
		    "gid %d): %s", ca->file, mode == X_OK ? "executable" :
		    "readable", (int)getuid(), (int)getgid(), strerror(errno));
}

/*
 * The child: drops privileges exactly as a worker does (no supplementary
 * groups), then writes a line "INDEX message" per file it cannot use.
 */
static void __attribute__((noreturn))
check_access_child(const struct nc_service *s, const struct check_access *ca,
    size_t n, const char *who, int fd)
{
	char	msg[600], line[640];
	size_t	i;
	int	len, rc = 0;

	msg[0] = '\0';
	if (s->gid != (gid_t)-1 && (setgroups(0, NULL) == -1 ||
	    setresgid(s->gid, s->gid, s->gid) == -1))
		snprintf(msg, sizeof msg, "cannot become group %d: %s",
		    (int)s->gid, strerror(errno));
	else if (s->uid != (uid_t)-1 && setresuid(s->uid, s->uid,
	    s->uid) == -1)
		snprintf(msg, sizeof msg, "cannot become user %d: %s",
		    (int)s->uid, strerror(errno));
	if (msg[0] != '\0') {
		/* Nothing else is worth asking when we could not. */
		len = snprintf(line, sizeof line, "0 %s\n", msg);
		_exit(write(fd, line, (size_t)len) == -1 ? 2 : 0);
	}
	for (i = 0; i < n; i++) {
		check_access_one(&ca[i], who, msg, sizeof msg);
		if (msg[0] == '\0')
			continue;
		len = snprintf(line, sizeof line, "%zu %s\n", i, msg);
		if (write(fd, line, (size_t)len) == -1)
			rc = 2;
	}
	_exit(rc);
}

/* "user NAME (uid N)", or "user N" when the uid has no name. */
static void
check_who(const struct nc_service *s, char *who, size_t len)
{
	struct passwd	*pw;
	uid_t		 uid = s->uid != (uid_t)-1 ? s->uid : geteuid();

	if ((pw = getpwuid(uid)) != NULL)
		snprintf(who, len, "user %s (uid %u)", pw->pw_name,
		    (unsigned)uid);
	else
		snprintf(who, len, "user %u", (unsigned)uid);
}

/* Asks the child, and places each error it gives at its key. */
static void
check_access_run(struct nc_config *cfg, const struct nc_service *s,
    const struct check_access *ca, size_t n, char **errors)
{
	char		 buf[2048], who[128], *line, *next, *end;
	unsigned long	 idx;
	ssize_t		 r;
	size_t		 got = 0;
	pid_t		 pid;
	int		 p[2], status;
	bool		 said = false;

	check_who(s, who, sizeof who);
	if (pipe2(p, O_CLOEXEC) == -1) {
		nc_config_error(cfg, errors, ca[0].path, "cannot check %s: "
		    "pipe: %s", ca[0].file, strerror(errno));
		return;
	}
	if ((pid = fork()) == -1) {
		nc_config_error(cfg, errors, ca[0].path, "cannot check %s: "
		    "fork: %s", ca[0].file, strerror(errno));
		close(p[0]);
		close(p[1]);
		return;
	}
	if (pid == 0) {
		close(p[0]);
		check_access_child(s, ca, n, who, p[1]);
	}
	close(p[1]);
	while (got < sizeof buf - 1) {
		r = read(p[0], buf + got, sizeof buf - 1 - got);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	buf[got] = '\0';
	close(p[0]);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	for (line = buf; (next = strchr(line, '\n')) != NULL; line = next + 1) {
		*next = '\0';
		idx = strtoul(line, &end, 10);
		if (end == line || *end != ' ' || idx >= n)
			continue;
		nc_config_error(cfg, errors, ca[idx].path, "%s", end + 1);
		said = true;
	}
	if (!said && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
		nc_config_error(cfg, errors, ca[0].path, "cannot check %s",
		    ca[0].file);
}

static void
check_access_add(struct check_access *ca, size_t *n, const char *file,
    enum check_access_kind kind, const char *path)
{
	ca[*n].file = file;
	ca[*n].kind = kind;
	snprintf(ca[*n].path, sizeof ca[*n].path, "%s", path);
	(*n)++;
}

/*
 * Service i's files, asked as its user. netcluster-worker is asked once
 * for all the services that run as the top-level user and group.
 */
static void
check_service_access(struct nc_config *cfg, size_t i,
    const struct nc_config_check_env *env, bool *top_done, char **errors)
{
	struct nc_service	*s = &cfg->services[i];
	struct check_access	 ca[CHECK_ACCESS_MAX];
	const char		*credpath;
	char			 path[64], buf[64];
	size_t			 n = 0;
	bool			 other;

	other = s->uid != (uid_t)-1 || s->gid != (gid_t)-1;
	credpath = check_creds_path(cfg, i, buf, sizeof buf);
	if (s->handler == NC_HANDLER_PROGRAM) {
		snprintf(path, sizeof path, "services[%zu].command[0]", i);
		if (s->ncommand > 0)
			check_access_add(ca, &n, s->command[0], ACCESS_EXEC,
			    path);
		snprintf(path, sizeof path, "services[%zu].cwd", i);
		if (s->cwd != NULL)
			check_access_add(ca, &n, s->cwd, ACCESS_DIR, path);
	} else if (other && env != NULL && env->worker_binary != NULL &&
	    credpath != NULL && (credpath == buf || !*top_done)) {
		check_access_add(ca, &n, env->worker_binary, ACCESS_EXEC,
		    credpath);
		if (credpath != buf)
			*top_done = true;
	}
	snprintf(path, sizeof path, "services[%zu].module", i);
	if (s->handler == NC_HANDLER_MODULE && other && s->module != NULL)
		check_access_add(ca, &n, s->module, ACCESS_READ, path);
	if (n > 0)
		check_access_run(cfg, s, ca, n, errors);
}

/* Inherited fds first, before resolving or loading opens one of its own. */
static void
check_fds(struct nc_config *cfg, const struct nc_config_check_env *env,
    char **errors)
{
	struct nc_listen_addr	*a;
	char			 path[64];
	size_t			 i, k;

	for (i = 0; i < cfg->nservices; i++) {
		for (k = 0; k < cfg->services[i].nlisten; k++) {
			a = &cfg->services[i].listen[k];
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
}

/* Service i's names resolve and its module loads. */
static void
check_service_names(struct nc_config *cfg, size_t i, char **errors)
{
	struct nc_service	*s = &cfg->services[i];
	struct nc_listen_addr	 u;
	char			 path[64], err[512], address[64];
	size_t			 k;

	for (k = 0; k < s->nlisten; k++) {
		snprintf(path, sizeof path, "services[%zu].listen[%zu]", i, k);
		check_listen_resolve(cfg, &s->listen[k], path, errors);
	}
	for (k = 0; k < s->nupstream; k++) {
		if (nc_config_parse_listen(s->upstream[k], &u, err,
		    sizeof err) != 0)
			continue;	/* parsing said so */
		snprintf(path, sizeof path, "services[%zu].upstream[%zu]", i,
		    k);
		/* As the proxy connects: IPv4 unless an IPv6 literal. */
		if (u.kind == NC_LISTEN_TCP && u.host != NULL &&
		    check_resolve(u.host, nc_is_ipv6(u.host) ? 6 : 4, address,
		    sizeof address, err, sizeof err) == -1)
			nc_config_error(cfg, errors, path, "%s", err);
		nc_config_listen_clear(&u);
	}
	if (s->handler == NC_HANDLER_MODULE && s->module != NULL) {
		snprintf(path, sizeof path, "services[%zu].module", i);
		if (check_module(s->module, err, sizeof err) == -1)
			nc_config_error(cfg, errors, path, "%s", err);
	}
}

int
nc_config_check(struct nc_config *cfg, const struct nc_config_check_env *env,
    char **errors)
{
	char	err[512], dir[PATH_MAX];
	size_t	i;
	bool	top_done = false;

	*errors = NULL;
	check_fds(cfg, env, errors);
	if (cfg->metrics.on)
		check_listen_resolve(cfg, &cfg->metrics.listen,
		    "metrics.listen", errors);
	if (cfg->agent.on)
		check_listen_resolve(cfg, &cfg->agent.listen, "agent.listen",
		    errors);
	for (i = 0; i < cfg->nservices; i++)
		check_service_names(cfg, i, errors);
	check_credentials(cfg, errors);
	/* After the credentials: as the user each service will run as. */
	for (i = 0; i < cfg->nservices; i++)
		check_service_access(cfg, i, env, &top_done, errors);
	if (cfg->control_socket != NULL &&
	    nc_config_socket_dir(cfg->control_socket, dir, sizeof dir, err,
	    sizeof err) == -1)
		nc_config_error(cfg, errors, "control_socket", "%s", err);
	return *errors != NULL ? -1 : 0;
}

/*
 * The check's result as a value:
 *	{"services": [{"uid": N, "gid": N, "listen": [ADDR, ...]}, ...],
 *	 "metrics": ADDR, "agent": ADDR}
 * with ADDR a TCP listener's resolved address or null, N an id or -1.
 */
static json_t *
result_address(const struct nc_listen_addr *a)
{
	return a->address != NULL ? json_string(a->address) : json_null();
}

static json_t *
result_id(unsigned int id)
{
	return json_integer(id == (unsigned int)-1 ? -1 : (json_int_t)id);
}

static json_t *
result_service(const struct nc_service *s)
{
	json_t	*o, *listen;
	size_t	 k;

	if ((o = json_object()) == NULL)
		return NULL;
	if ((listen = json_array()) == NULL ||
	    json_object_set_new(o, "listen", listen) == -1 ||
	    json_object_set_new(o, "uid", result_id(s->uid)) == -1 ||
	    json_object_set_new(o, "gid", result_id(s->gid)) == -1)
		goto fail;
	for (k = 0; k < s->nlisten; k++)
		if (json_array_append_new(listen,
		    result_address(&s->listen[k])) == -1)
			goto fail;
	return o;
fail:
	json_decref(o);
	return NULL;
}

json_t *
nc_config_check_result(const struct nc_config *cfg)
{
	json_t	*r, *services;
	size_t	 i;

	if ((r = json_object()) == NULL)
		return NULL;
	if ((services = json_array()) == NULL ||
	    json_object_set_new(r, "services", services) == -1 ||
	    json_object_set_new(r, "metrics",
	    result_address(&cfg->metrics.listen)) == -1 ||
	    json_object_set_new(r, "agent",
	    result_address(&cfg->agent.listen)) == -1)
		goto fail;
	for (i = 0; i < cfg->nservices; i++)
		if (json_array_append_new(services,
		    result_service(&cfg->services[i])) == -1)
			goto fail;
	return r;
fail:
	json_decref(r);
	return NULL;
}

/* One listener's address in a result, and the copy to set. */
struct apply_addr {
	struct nc_listen_addr	*a;
	const json_t		*v;
	char			*copy;
};

/* An address fits a TCP listener with a host; null fits any. */
static bool
apply_addr_fits(const struct apply_addr *p)
{
	if (json_is_null(p->v))
		return true;
	return json_is_string(p->v) && p->a->kind == NC_LISTEN_TCP &&
	    p->a->host != NULL && json_string_length(p->v) > 0 &&
	    json_string_length(p->v) < 64 &&
	    strlen(json_string_value(p->v)) == json_string_length(p->v);
}

static bool
apply_id_fits(const json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) >= -1 &&
	    json_integer_value(v) < (json_int_t)(uid_t)-1;
}

/* Pairs each listener of cfg with its address in value: n, or -1. */
static int
apply_collect(struct nc_config *cfg, const json_t *value,
    struct apply_addr *p)
{
	struct nc_service	*s;
	const json_t		*services, *o, *listen;
	size_t			 i, k, n = 0;

	services = json_object_get(value, "services");
	if (!json_is_object(value) || json_object_size(value) != 3 ||
	    !json_is_array(services) ||
	    json_array_size(services) != cfg->nservices)
		return -1;
	for (i = 0; i < cfg->nservices; i++) {
		s = &cfg->services[i];
		o = json_array_get(services, i);
		listen = json_object_get(o, "listen");
		if (!json_is_object(o) || json_object_size(o) != 3 ||
		    !apply_id_fits(json_object_get(o, "uid")) ||
		    !apply_id_fits(json_object_get(o, "gid")) ||
		    !json_is_array(listen) ||
		    json_array_size(listen) != s->nlisten)
			return -1;
		for (k = 0; k < s->nlisten; k++) {
			p[n].a = &s->listen[k];
			p[n++].v = json_array_get(listen, k);
		}
	}
	p[n].a = &cfg->metrics.listen;
	p[n++].v = json_object_get(value, "metrics");
	p[n].a = &cfg->agent.listen;
	p[n++].v = json_object_get(value, "agent");
	for (i = 0; i < n; i++)
		if (p[i].v == NULL || !apply_addr_fits(&p[i]))
			return -1;
	return (int)n;
}

/*
 * All or nothing: the value is checked and copied whole before cfg is
 * touched, so -1 (a value that does not fit, or no memory) leaves cfg
 * as it was.
 */
int
nc_config_check_apply(struct nc_config *cfg, const json_t *value)
{
	struct apply_addr	*p;
	const json_t		*o;
	size_t			 i, total = 2;
	int			 n, rc = -1;

	for (i = 0; i < cfg->nservices; i++)
		total += cfg->services[i].nlisten;
	if ((p = calloc(total, sizeof *p)) == NULL)
		return -1;
	if ((n = apply_collect(cfg, value, p)) == -1)
		goto out;
	for (i = 0; i < (size_t)n; i++)
		if (json_is_string(p[i].v) &&
		    (p[i].copy = strdup(json_string_value(p[i].v))) == NULL)
			goto out;
	for (i = 0; i < (size_t)n; i++) {
		free(p[i].a->address);
		p[i].a->address = p[i].copy;
		p[i].copy = NULL;
	}
	for (i = 0; i < cfg->nservices; i++) {
		o = json_array_get(json_object_get(value, "services"), i);
		cfg->services[i].uid = (uid_t)json_integer_value(
		    json_object_get(o, "uid"));
		cfg->services[i].gid = (gid_t)json_integer_value(
		    json_object_get(o, "gid"));
	}
	rc = 0;
out:
	for (i = 0; i < total; i++)
		free(p[i].copy);
	free(p);
	return rc;
}
