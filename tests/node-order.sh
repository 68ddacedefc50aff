#!/bin/sh
# Node's own order of events when a server closes with connections open:
# runs tests/node/close-order.js under node for each scenario and checks
# that it prints the order tests/check_server.c asserts (its NODE_ORDER_*
# lines); and tests/node/reconnect.js, a socket connecting again after
# `close`, against tests/check_socket.c's NODE_RECONNECT. node is
# required (scripts/deps installs Debian's nodejs).
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
# A socket that connects again after `close` (tests/check_socket.c,
# NODE_RECONNECT: its string literals, joined).
want=$(python3 - "$s/tests/check_socket.c" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r'#define NODE_RECONNECT \\\n((?:.*\\\n)*.*\n)', text)
lits = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)) if m else []
sys.stdout.write("".join(lits).replace("\\n", "\n"))
PY
)
got=$(node "$s/tests/node/reconnect.js")
if [ -n "$want" ] && [ "$got" = "$want" ]; then
	echo "reconnect: $(printf '%s\n' "$got" | wc -l) lines as check_socket's"
else
	echo "reconnect: node prints:"; printf '%s\n' "$got"
	echo "reconnect: check_socket's NODE_RECONNECT:"; printf '%s' "$want"
	fail=1
fi
exit $fail
