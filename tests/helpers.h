/*
 * Test helpers: a fresh event_base per test, loops bounded by a deadline,
 * port and fd bookkeeping. No test sleeps: every wait runs the loop until
 * a condition holds or the deadline passes.
 */

#ifndef TESTS_HELPERS_H
#define TESTS_HELPERS_H

#include <check.h>
#include <stdbool.h>
#include <stddef.h>

#include "netcluster.h"

struct event_base;

/* Timeouts are scaled by NC_TEST_TIMEOUT_SCALE (sanitizers, valgrind). */
int	 scaled_ms(int ms);

/*
 * Runs base until *flag is non-zero or ms (scaled) pass. Returns true if
 * the flag was set in time.
 */
bool	 run_until(struct event_base *base, const volatile int *flag, int ms);
/* Runs base until *counter >= n or ms pass. */
bool	 run_until_count(struct event_base *base, const volatile int *counter,
	    int n, int ms);
/* Runs the loop for ms (scaled) whatever happens: to check that something
 * does NOT happen. */
void	 run_for(struct event_base *base, int ms);

/* The port a listening server got. */
int	 bound_port(struct nc_server *);

/* An int socket option of a connected socket's fd (getsockopt). */
int	 sockopt(struct nc_socket *, int level, int name);

/* The number of open fds of this process (/proc/self/fd). */
int	 fd_count(void);

/* A fresh temporary directory (removed by tmpdir_cleanup) and a path in it. */
const char *tmpdir_make(void);
const char *tmpdir_path(const char *name);
void	 tmpdir_cleanup(void);

/* Is ::1 usable here? */
bool	 have_ipv6(void);

/* Runs a suite with CK_FORK and returns the exit status for main(). */
int	 run_suite(Suite *);

/*
 * Adds each of n tests to s in a test case of its own, named for the test,
 * so that one can be run alone (CK_RUN_CASE=test_net_reconnect), with the
 * fixture (setup and teardown may be NULL) and a timeout in seconds (0:
 * check's default).
 */
void	 add_cases(Suite *s, const TTest *const *tests, size_t n,
	    void (*setup)(void), void (*teardown)(void), int timeout);

/*
 * An event recorder: listeners that append "name" to a log so tests can
 * assert the order of events ("connect,data,end,finish,close").
 */
struct recorder {
	char	 log[4096];
	int	 counts[NC_EV__COUNT];
	int	 last_error;
	bool	 had_error;
};
void	 recorder_attach_socket(struct recorder *, struct nc_socket *);
void	 recorder_attach_server(struct recorder *, struct nc_server *);

#endif
