#!/bin/sh
# Runs one check program under valgrind: any error or leak fails it.
exec valgrind -q --error-exitcode=99 --leak-check=full \
	--show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
	--child-silent-after-fork=no "$@"
