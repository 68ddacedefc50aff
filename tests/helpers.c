/*
 * Test helpers: bounded loops, ports, fds and temporary directories.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <netinet/in.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "helpers.h"

static char	tmpdir[PATH_MAX];
static char	tmppath[PATH_MAX];

int
scaled_ms(int ms)
{
	const char	*s = getenv("NC_TEST_TIMEOUT_SCALE");
	int		 scale = 1;

	if (s != NULL && atoi(s) > 1)
		scale = atoi(s);
	return ms * scale;
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(int *)arg = 1;
}

static bool
run_while(struct event_base *base, const volatile int *counter, int n, int ms)
{
	struct event	*deadline;
	struct timeval	 tv;
	int		 expired = 0;

	tv.tv_sec = scaled_ms(ms) / 1000;
	tv.tv_usec = (scaled_ms(ms) % 1000) * 1000;
	deadline = evtimer_new(base, deadline_cb, &expired);
	ck_assert_ptr_nonnull(deadline);
	ck_assert_int_eq(evtimer_add(deadline, &tv), 0);
	while (!expired && (counter == NULL || *counter < n))
		ck_assert_int_ge(event_base_loop(base, EVLOOP_ONCE), 0);
	event_free(deadline);
	return counter != NULL && *counter >= n;
}

bool
run_until(struct event_base *base, const volatile int *flag, int ms)
{
	return run_while(base, flag, 1, ms);
}

bool
run_until_count(struct event_base *base, const volatile int *counter, int n,
    int ms)
{
	return run_while(base, counter, n, ms);
}

void
run_for(struct event_base *base, int ms)
{
	(void)run_while(base, NULL, 0, ms);
}

int
bound_port(struct nc_server *server)
{
	struct nc_address	a;

	ck_assert_int_eq(nc_server_address(server, &a), 0);
	ck_assert_int_gt(a.port, 0);
	return a.port;
}

int
sockopt(struct nc_socket *s, int level, int name)
{
	int		v = -1;
	socklen_t	len = sizeof v;

	ck_assert_int_ne(nc_socket_fd(s), -1);
	ck_assert_int_eq(getsockopt(nc_socket_fd(s), level, name, &v, &len),
	    0);
	return v;
}

int
fd_count(void)
{
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	d = opendir("/proc/self/fd");
	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;	/* the directory itself */
}

const char *
tmpdir_make(void)
{
	const char	*base = getenv("TMPDIR");

	if (base == NULL || *base == '\0')
		base = "/tmp";
	snprintf(tmpdir, sizeof tmpdir, "%s/nc-test.XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	return tmpdir;
}

const char *
tmpdir_path(const char *name)
{
	if (tmpdir[0] == '\0')
		tmpdir_make();
	if ((size_t)snprintf(tmppath, sizeof tmppath, "%s/%s", tmpdir, name) >=
	    sizeof tmppath)
		ck_abort_msg("path too long: %s/%s", tmpdir, name);
	return tmppath;
}

void
tmpdir_cleanup(void)
{
	DIR		*d;
	struct dirent	*de;
	char		 p[PATH_MAX];

	if (tmpdir[0] == '\0')
		return;
	if ((d = opendir(tmpdir)) != NULL) {
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 ||
			    strcmp(de->d_name, "..") == 0)
				continue;
			if ((size_t)snprintf(p, sizeof p, "%s/%s", tmpdir,
			    de->d_name) < sizeof p)
				(void)unlink(p);
		}
		closedir(d);
	}
	(void)rmdir(tmpdir);
	tmpdir[0] = '\0';
}

bool
have_ipv6(void)
{
	struct sockaddr_in6	sin6;
	int			fd, ok;

	if ((fd = socket(AF_INET6, SOCK_STREAM, 0)) == -1)
		return false;
	memset(&sin6, 0, sizeof sin6);
	sin6.sin6_family = AF_INET6;
	sin6.sin6_addr = in6addr_loopback;
	ok = bind(fd, (struct sockaddr *)&sin6, sizeof sin6) == 0;
	close(fd);
	return ok;
}

int
run_suite(Suite *s)
{
	SRunner	*sr;
	int	 failed;

	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

void
add_cases(Suite *s, const TTest *const *tests, size_t n, void (*setup)(void),
    void (*teardown)(void), int timeout)
{
	TCase	*tc;
	size_t	 i;

	for (i = 0; i < n; i++) {
		tc = tcase_create(tests[i]->name);
		if (setup != NULL || teardown != NULL)
			tcase_add_checked_fixture(tc, setup, teardown);
		if (timeout > 0)
			tcase_set_timeout(tc, timeout);
		tcase_add_test(tc, tests[i]);
		suite_add_tcase(s, tc);
	}
}

static void
recorder_cb(void *emitter, const struct nc_event_args *ev, void *arg)
{
	struct recorder	*r = arg;
	size_t		 len = strlen(r->log);

	(void)emitter;
	r->counts[ev->event]++;
	if (ev->event == NC_EV_ERROR && ev->error != NULL)
		r->last_error = ev->error->code;
	if (ev->event == NC_EV_CLOSE)
		r->had_error = ev->had_error;
	snprintf(r->log + len, sizeof r->log - len, "%s%s",
	    len == 0 ? "" : ",", nc_event_name(ev->event));
}

void
recorder_attach_socket(struct recorder *r, struct nc_socket *s)
{
	static const enum nc_event evs[] = { NC_EV_LOOKUP, NC_EV_CONNECT,
	    NC_EV_END, NC_EV_FINISH, NC_EV_TIMEOUT, NC_EV_DRAIN, NC_EV_ERROR,
	    NC_EV_CLOSE };
	size_t	i;

	for (i = 0; i < sizeof evs / sizeof evs[0]; i++)
		ck_assert_int_eq(nc_socket_on(s, evs[i], recorder_cb, r), 0);
}

void
recorder_attach_server(struct recorder *r, struct nc_server *s)
{
	static const enum nc_event evs[] = { NC_EV_LISTENING, NC_EV_CLOSE,
	    NC_EV_ERROR, NC_EV_DROP };
	size_t	i;

	for (i = 0; i < sizeof evs / sizeof evs[0]; i++)
		ck_assert_int_eq(nc_server_on(s, evs[i], recorder_cb, r), 0);
}
