/*
 * Error codes and messages, logging, and the loop (deferred calls and
 * nc_run()).
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "helpers.h"
#include "nc-int.h"

START_TEST(test_err_names_of_errnos)
{
	ck_assert_int_eq(NC_EADDRINUSE, -EADDRINUSE);
	ck_assert_str_eq(nc_err_name(NC_EADDRINUSE), "EADDRINUSE");
	ck_assert_str_eq(nc_err_name(NC_ECONNREFUSED), "ECONNREFUSED");
	ck_assert_str_eq(nc_err_name(NC_EACCES), "EACCES");
	ck_assert_str_eq(nc_err_name(NC_EPIPE), "EPIPE");
	ck_assert_str_eq(nc_err_name(-ENOENT), "ENOENT");
	ck_assert_str_eq(nc_strerror(NC_EADDRINUSE), "Address already in use");
	ck_assert_str_eq(nc_err_name(1), "Unknown system error 1");
	ck_assert_str_eq(nc_err_name(-29999), "Unknown system error -29999");
	ck_assert_str_eq(nc_strerror(-31000), "Unknown system error -31000");
}
END_TEST

START_TEST(test_err_names_of_node_codes)
{
#define CHECK_NAME(name, value, msg) do {				\
	ck_assert_int_eq(NC_##name, value);				\
	ck_assert_int_lt(NC_##name, NC__ERR_BASE);			\
	ck_assert_str_eq(nc_err_name(NC_##name), #name);		\
	ck_assert_str_eq(nc_strerror(NC_##name), msg);			\
} while (0);
	NC_ERRNO_MAP(CHECK_NAME)
#undef CHECK_NAME
	ck_assert_str_eq(nc_strerror(NC_ERR_SERVER_NOT_RUNNING),
	    "Server is not running.");
}
END_TEST

START_TEST(test_error_messages_as_node)
{
	struct nc__error	e;

	nc__error_set(&e, NC_EADDRINUSE, "listen", "::", 8124);
	ck_assert_str_eq(e.pub.message,
	    "listen EADDRINUSE: address already in use :::8124");
	ck_assert_str_eq(e.pub.syscall, "listen");
	ck_assert_str_eq(e.pub.address, "::");
	ck_assert_int_eq(e.pub.port, 8124);
	ck_assert_int_eq(e.pub.code, NC_EADDRINUSE);

	nc__error_set(&e, NC_ECONNREFUSED, "connect", "127.0.0.1", 9);
	ck_assert_str_eq(e.pub.message, "connect ECONNREFUSED 127.0.0.1:9");

	nc__error_set(&e, NC_ENOENT, "connect", "/tmp/x.sock", -1);
	ck_assert_str_eq(e.pub.message, "connect ENOENT /tmp/x.sock");

	/* Port 0 is not shown, as in Node. */
	nc__error_set(&e, NC_EACCES, "listen", "0.0.0.0", 0);
	ck_assert_str_eq(e.pub.message,
	    "listen EACCES: permission denied 0.0.0.0");

	nc__error_set(&e, NC_ECONNRESET, "read", NULL, -1);
	ck_assert_str_eq(e.pub.message, "read ECONNRESET");

	nc__error_set(&e, NC_ENOTFOUND, "getaddrinfo", "nothere", -1);
	ck_assert_str_eq(e.pub.message, "getaddrinfo ENOTFOUND nothere");

	nc__error_set(&e, NC_ERR_SERVER_NOT_RUNNING, NULL, NULL, -1);
	ck_assert_str_eq(e.pub.message, "Server is not running.");
	ck_assert_ptr_null(e.pub.syscall);
	ck_assert_ptr_null(e.pub.address);
	ck_assert_int_eq(e.pub.port, -1);
}
END_TEST

static char	logged[4][1100];
static int	nlogged;

static void
log_cb(int level, const char *msg, void *arg)
{
	(void)arg;
	if (nlogged < 4)
		snprintf(logged[nlogged++], sizeof logged[0], "%d %s", level,
		    msg);
}

START_TEST(test_log_hook_level_and_escaping)
{
	char	big[3000];

	nlogged = 0;
	nc_set_log_cb(log_cb, NULL);
	nc_set_log_level(NC_LOG_INFO);
	ck_assert_int_eq(nc_log_level(), NC_LOG_INFO);
	log_debug("hidden %d", 1);
	log_info("shown %d", 2);
	log_err("bad\nline\x1b[31m");
	ck_assert_int_eq(nlogged, 2);
	ck_assert_str_eq(logged[0], "6 shown 2");
	/* Control characters from peers never reach the log raw. */
	ck_assert_str_eq(logged[1], "3 bad\\x0aline\\x1b[31m");

	/* Long messages are bounded. */
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	log_err("%s", big);
	ck_assert_int_eq(nlogged, 3);
	ck_assert_uint_lt(strlen(logged[2]), 1100);

	nc_set_log_level(99);
	ck_assert_int_eq(nc_log_level(), NC_LOG_DEBUG);
	nc_set_log_level(-5);
	ck_assert_int_eq(nc_log_level(), NC_LOG_ERR);
	nc_set_log_cb(NULL, NULL);
}
END_TEST

static char	order[64];
static char	s1[] = "1", s2[] = "2", s3[] = "3", sz[] = "z";

static void
defer_cb(void *arg)
{
	strncat(order, arg, sizeof order - strlen(order) - 1);
}

static void
defer_nested_cb(void *arg)
{
	struct event_base	*base = arg;

	strncat(order, "N", sizeof order - strlen(order) - 1);
	ck_assert_int_eq(nc__defer(base, defer_cb, sz), 0);
}

START_TEST(test_defer_runs_later_in_order)
{
	struct event_base	*base = event_base_new();

	order[0] = '\0';
	ck_assert_int_eq(nc__defer(base, defer_cb, s1), 0);
	ck_assert_int_eq(nc__defer(base, defer_nested_cb, base), 0);
	ck_assert_int_eq(nc__defer(base, defer_cb, s2), 0);
	ck_assert_int_eq(nc__defer(base, defer_cb, s3), 0);
	/* Nothing runs inside the call. */
	ck_assert_str_eq(order, "");
	ck_assert_int_eq(nc_run(base), 0);
	ck_assert_str_eq(order, "1N23z");
	event_base_free(base);
}
END_TEST

static int	fired;

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	fired++;
}

START_TEST(test_run_returns_when_nothing_is_left)
{
	struct event_base	*base = event_base_new();
	struct event		*t = evtimer_new(base, timer_cb, NULL);
	struct timeval		 tv = { 0, 20000 };

	/* An empty base returns at once. */
	ck_assert_int_eq(nc_run(base), 0);
	/* A program's own timer keeps the loop alive until it fired. */
	fired = 0;
	ck_assert_int_eq(evtimer_add(t, &tv), 0);
	ck_assert_int_eq(nc_run(base), 0);
	ck_assert_int_eq(fired, 1);
	event_free(t);
	event_base_free(base);
}
END_TEST

START_TEST(test_default_base)
{
	ck_assert_ptr_nonnull(nc_default_base());
	ck_assert_ptr_eq(nc_default_base(), nc_default_base());
	ck_assert_ptr_eq(nc__base(NULL), nc_default_base());
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("error");
	TCase	*tc = tcase_create("errors");
	TCase	*tl = tcase_create("log");
	TCase	*tp = tcase_create("loop");

	tcase_add_test(tc, test_err_names_of_errnos);
	tcase_add_test(tc, test_err_names_of_node_codes);
	tcase_add_test(tc, test_error_messages_as_node);
	tcase_add_test(tl, test_log_hook_level_and_escaping);
	tcase_add_test(tp, test_defer_runs_later_in_order);
	tcase_add_test(tp, test_run_returns_when_nothing_is_left);
	tcase_add_test(tp, test_default_base);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, tl);
	suite_add_tcase(s, tp);
	return run_suite(s);
}
