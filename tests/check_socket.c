#include <check.h>
#include <stdlib.h>
#include "helpers.h"

START_TEST(test_placeholder)
{
	ck_assert(1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("socket");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_placeholder);
	suite_add_tcase(s, tc);
	return run_suite(s);
}
