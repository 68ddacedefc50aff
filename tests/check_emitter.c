/*
 * The event emitter: Node's EventEmitter order and once/off semantics.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "nc-int.h"

/* A string literal as a listener argument. */
#define S(x)	((void *)(uintptr_t)(x))

static char	trace[256];

static void
append(const char *s)
{
	strncat(trace, s, sizeof trace - strlen(trace) - 1);
}

static void
cb_a(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	append("a");
}

static void
cb_b(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	append(arg != NULL ? arg : "b");
}

static struct nc__emitter	em;

static void
setup(void)
{
	memset(&em, 0, sizeof em);
	trace[0] = '\0';
}

static void
teardown(void)
{
	nc__emitter_free(&em);
}

static void
emit(enum nc_event event)
{
	struct nc_event_args	args;

	memset(&args, 0, sizeof args);
	args.event = event;
	(void)nc__emitter_emit(&em, NULL, &args);
}

START_TEST(test_order_is_registration_order)
{
	ck_assert_int_eq(nc__emitter_add(&em, NC_EV_DATA, cb_a, NULL, false), 0);
	ck_assert_int_eq(nc__emitter_add(&em, NC_EV_DATA, cb_b, S("b"), false), 0);
	ck_assert_int_eq(nc__emitter_add(&em, NC_EV_DATA, cb_b, S("c"), false), 0);
	emit(NC_EV_DATA);
	emit(NC_EV_DATA);
	ck_assert_str_eq(trace, "abcabc");
	/* Other events are untouched. */
	emit(NC_EV_END);
	ck_assert_str_eq(trace, "abcabc");
}
END_TEST

START_TEST(test_once_runs_once)
{
	ck_assert_int_eq(nc__emitter_add(&em, NC_EV_END, cb_a, NULL, true), 0);
	ck_assert_int_eq(nc__emitter_add(&em, NC_EV_END, cb_b, S("b"), false), 0);
	emit(NC_EV_END);
	emit(NC_EV_END);
	ck_assert_str_eq(trace, "abb");
	ck_assert_uint_eq(em.count[NC_EV_END], 1);
}
END_TEST

START_TEST(test_off_removes_most_recent)
{
	/* Node: removeListener removes the most recently added instance. */
	ck_assert_int_eq(nc__emitter_add(&em, NC_EV_DATA, cb_b, S("x"), false), 0);
	ck_assert_int_eq(nc__emitter_add(&em, NC_EV_DATA, cb_a, NULL, false), 0);
	ck_assert_int_eq(nc__emitter_add(&em, NC_EV_DATA, cb_b, S("x"), true), 0);
	ck_assert_int_eq(nc__emitter_remove(&em, NC_EV_DATA, cb_b, S("x")), 0);
	emit(NC_EV_DATA);
	emit(NC_EV_DATA);
	/* The persistent first "x" stays; the once one went. */
	ck_assert_str_eq(trace, "xaxa");
	/* Removing what is not there is not an error. */
	ck_assert_int_eq(nc__emitter_remove(&em, NC_EV_DATA, cb_b, S("zz")), 0);
	ck_assert_uint_eq(em.count[NC_EV_DATA], 2);
}
END_TEST

static void
cb_adds(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	append("+");
	ck_assert_int_eq(nc__emitter_add(&em, NC_EV_DATA, cb_b, S("n"), false),
	    0);
}

static void
cb_removes(void *emitter, const struct nc_event_args *ev, void *arg)
{
	(void)emitter;
	(void)ev;
	(void)arg;
	append("-");
	ck_assert_int_eq(nc__emitter_remove(&em, NC_EV_DATA, cb_a, NULL), 0);
}

START_TEST(test_changes_during_emit_apply_next_time)
{
	/* Node copies the listener array: a listener added during an emit is
	 * not called by it, one removed during it still is. */
	ck_assert_int_eq(nc__emitter_add(&em, NC_EV_DATA, cb_adds, NULL, true),
	    0);
	ck_assert_int_eq(nc__emitter_add(&em, NC_EV_DATA, cb_removes, NULL,
	    true), 0);
	ck_assert_int_eq(nc__emitter_add(&em, NC_EV_DATA, cb_a, NULL, false),
	    0);
	emit(NC_EV_DATA);
	ck_assert_str_eq(trace, "+-a");
	emit(NC_EV_DATA);
	ck_assert_str_eq(trace, "+-an");
}
END_TEST

START_TEST(test_many_listeners)
{
	static char	names[40][4];
	char		want[256] = "";
	int		i;

	for (i = 0; i < 40; i++) {
		snprintf(names[i], sizeof names[i], "%c", 'A' + (i % 26));
		strcat(want, names[i]);
		ck_assert_int_eq(nc__emitter_add(&em, NC_EV_CLOSE, cb_b,
		    names[i], false), 0);
	}
	emit(NC_EV_CLOSE);
	ck_assert_str_eq(trace, want);
}
END_TEST

START_TEST(test_bad_arguments)
{
	ck_assert_int_eq(nc__emitter_add(&em, NC_EV__COUNT, cb_a, NULL, false),
	    NC_ERR_INVALID_ARG_VALUE);
	ck_assert_int_eq(nc__emitter_add(&em, NC_EV_DATA, NULL, NULL, false),
	    NC_ERR_INVALID_ARG_VALUE);
	ck_assert_int_eq(nc__emitter_remove(&em, (enum nc_event)-1, cb_a,
	    NULL), NC_ERR_INVALID_ARG_VALUE);
}
END_TEST

START_TEST(test_event_names)
{
	ck_assert_str_eq(nc_event_name(NC_EV_LISTENING), "listening");
	ck_assert_str_eq(nc_event_name(NC_EV_CONNECTION), "connection");
	ck_assert_str_eq(nc_event_name(NC_EV_CLOSE), "close");
	ck_assert_str_eq(nc_event_name(NC_EV_ERROR), "error");
	ck_assert_str_eq(nc_event_name(NC_EV_DROP), "drop");
	ck_assert_str_eq(nc_event_name(NC_EV_LOOKUP), "lookup");
	ck_assert_str_eq(nc_event_name(NC_EV_CONNECT), "connect");
	ck_assert_str_eq(nc_event_name(NC_EV_DATA), "data");
	ck_assert_str_eq(nc_event_name(NC_EV_END), "end");
	ck_assert_str_eq(nc_event_name(NC_EV_FINISH), "finish");
	ck_assert_str_eq(nc_event_name(NC_EV_TIMEOUT), "timeout");
	ck_assert_str_eq(nc_event_name(NC_EV_DRAIN), "drain");
	ck_assert_str_eq(nc_event_name(NC_EV__COUNT), "unknown");
}
END_TEST

int
main(void)
{
	Suite	*s = suite_create("emitter");
	TCase	*tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_order_is_registration_order);
	tcase_add_test(tc, test_once_runs_once);
	tcase_add_test(tc, test_off_removes_most_recent);
	tcase_add_test(tc, test_changes_during_emit_apply_next_time);
	tcase_add_test(tc, test_many_listeners);
	tcase_add_test(tc, test_bad_arguments);
	tcase_add_test(tc, test_event_names);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
