#!/bin/sh
# Node's own order of events when a server closes with connections open:
# runs tests/node/close-order.js under node for each scenario and checks
# that it prints the order tests/check_server.c asserts (its NODE_ORDER_*
# lines). node is required (scripts/deps installs Debian's nodejs).
set -eu
s=${srcdir:-.}
if ! command -v node >/dev/null 2>&1; then
	echo "node-order.sh: node is not installed (scripts/deps installs nodejs)"
	exit 1
fi
echo "node $(node --version)"
fail=0
for scenario in end two destroy reset; do
	name=$(echo "$scenario" | tr a-z A-Z)
	want=$(sed -n "s/^#define NODE_ORDER_$name[[:space:]]*\"\(.*\)\"\$/\1/p" \
	    "$s/tests/check_server.c")
	if [ -z "$want" ]; then
		echo "$scenario: no NODE_ORDER_$name in check_server.c"
		fail=1
		continue
	fi
	got=$(node "$s/tests/node/close-order.js" "$scenario" | paste -sd, -)
	if [ "$got" = "$want" ]; then
		echo "$scenario: $got"
	else
		echo "$scenario: node prints  $got"
		echo "$scenario: check_server $want"
		fail=1
	fi
done
exit $fail
