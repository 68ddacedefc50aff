#!/bin/sh
# Node's own net tests beside their ports. For every test-net-*.js that
# tests/node-net-tests.md marks `port`, runs the original with the
# installed node, netcluster's stand-in for Node's test/common
# (tests/node/common) beside it, then the port alone (its test case of
# check_node_net or check_isip, or its function of tests/e2e/node_net.py),
# and prints both results on one line. Fails if an original or a port
# fails, if a port is missing, or if the list does not name every
# test-net-*.js of the Node given, or names one it does not have.
#
# Node's tests are not in this tree: NC_NODE_TESTS names the test/ directory
# of a Node v20 source tree (its parallel/ is what is read).
# scripts/node-tests fetches them from Debian's source of Node 20, and
# scripts/test does so and sets NC_NODE_TESTS. Without it the test is
# skipped (77), unless NC_NODE_TESTS_REQUIRED is set: then it fails.
#
# A test's `// Flags:` line is given to node, as Node's own runner does.
# Where localhost does not resolve to ::1 (an /etc/hosts without Debian's
# `::1 localhost` line), and as root, the originals run in a mount
# namespace of their own with that line added to /etc/hosts.
set -eu
s=${srcdir:-.}
b=${top_builddir:-.}
list=$s/tests/node-net-tests.md
if [ -z "${NC_NODE_TESTS:-}" ]; then
	echo "node-originals: NC_NODE_TESTS is not set (scripts/node-tests" \
	    "fetches Node's tests and prints the value)"
	[ -n "${NC_NODE_TESTS_REQUIRED:-}" ] && exit 1
	exit 77
fi
if [ ! -f "$list" ]; then
	echo "node-originals: no $list"
	exit 1
fi
if ! ls "$NC_NODE_TESTS"/parallel/test-net-*.js >/dev/null 2>&1; then
	echo "node-originals: no parallel/test-net-*.js in $NC_NODE_TESTS"
	exit 1
fi
if ! command -v node >/dev/null 2>&1; then
	echo "node-originals: node is not installed (scripts/deps installs nodejs)"
	exit 1
fi
echo "node $(node --version); tests of" \
    "$(cat "$NC_NODE_TESTS/VERSION" 2>/dev/null || echo "$NC_NODE_TESTS")"

# The stand-in first: one that let everything pass would pass every
# original.
if ! node "$s/tests/node/common-check.js"; then
	echo "FAIL the stand-in for test/common (tests/node/common)"
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/nc-node-originals.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -p "$work/test/parallel" "$work/run"
cp -R "$s/tests/node/common" "$work/test/common"

# The list: every row of its table, `port` or `left out`, against the
# files Node has.
sed -n '/^## The tests/,/^## /s/^| \(test-net-[^ ]*\.js\) | `\([a-z ]*\)` |.*/\1 \2/p' \
    "$list" | sort >"$work/list"
(cd "$NC_NODE_TESTS/parallel" && printf '%s\n' test-net-*.js) | sort \
    >"$work/have"
fail=0
unlisted=$(cut -d' ' -f1 "$work/list" | comm -13 - "$work/have")
gone=$(cut -d' ' -f1 "$work/list" | comm -23 - "$work/have")
if [ -n "$unlisted" ]; then
	echo "FAIL in Node's tests, not in tests/node-net-tests.md:" $unlisted
	fail=1
fi
if [ -n "$gone" ]; then
	echo "FAIL in tests/node-net-tests.md, not in Node's tests:" $gone
	fail=1
fi

hosts=
if ! node -e "require('dns').lookup('localhost', { family: 6 },
    (e) => process.exit(e ? 1 : 0))"; then
	if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
		hosts=$work/hosts
		{ cat /etc/hosts; echo '::1 localhost ip6-localhost ip6-loopback'; } \
		    >"$hosts"
		echo "localhost does not resolve to ::1 here: the originals run" \
		    "with '::1 localhost' added to /etc/hosts (a mount namespace)"
	else
		echo "localhost does not resolve to ::1 here: originals that" \
		    "connect to localhost over IPv6 fail"
	fi
fi

now() {
	date +%s%N
}

secs() {
	echo $((($2 - $1) / 1000000)) | awk '{ printf "%.2f s", $1 / 1000 }'
}

# Runs a command, in the mount namespace with the hosts file if there is one.
with_hosts() {
	if [ -n "$hosts" ]; then
		unshare -m sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' \
		    "$hosts" "$@"
	else
		"$@"
	fi
}

# The original, with its flags, its own directory and tmpdir, bounded.
original() {
	f=$1
	cp "$NC_NODE_TESTS/parallel/$f" "$work/test/parallel/$f"
	flags=$(sed -n 's|^// Flags: ||p' "$work/test/parallel/$f" | head -n 1)
	dir=$work/run/${f%.js}
	mkdir -p "$dir"
	# shellcheck disable=SC2086
	(cd "$dir" && export NC_NODE_TMPDIR="$dir" &&
	    with_hosts timeout 120 node $flags "$work/test/parallel/$f")
}

# The port of test-net-<name>.js: test_net_<name>, where it is.
port() {
	n=$1
	if grep -q "^START_TEST($n)\$" "$s/tests/check_node_net.c"; then
		where=check_node_net
		CK_RUN_CASE=$n CK_VERBOSITY=normal "$b/tests/check_node_net"
	elif grep -q "^START_TEST($n)\$" "$s/tests/check_isip.c"; then
		where=check_isip
		CK_RUN_CASE=$n CK_VERBOSITY=normal "$b/tests/check_isip"
	elif grep -q "^def $n():\$" "$s/tests/e2e/node_net.py"; then
		where=node_net.py
		python3 "$s/tests/e2e/node_net.py" "$n"
	else
		where=none
		echo "no port: no START_TEST($n) in check_node_net.c or" \
		    "check_isip.c, no $n() in tests/e2e/node_net.py"
		return 1
	fi
}

ported=0 nodeok=0 nodeskip=0 portok=0
for f in $(sed -n 's/ port$//p' "$work/list"); do
	[ -f "$NC_NODE_TESTS/parallel/$f" ] || continue
	ported=$((ported + 1))
	n=$(basename "$f" .js | tr - _)
	t0=$(now)
	if original "$f" >"$work/node.log" 2>&1; then
		if grep -q '^1\.\.0 # Skipped' "$work/node.log"; then
			nres="skipped ($(sed -n 's/^1\.\.0 # Skipped: //p' \
			    "$work/node.log"))"
			nodeskip=$((nodeskip + 1))
		else
			nres=ok
			nodeok=$((nodeok + 1))
		fi
		nbad=0
	else
		nres="FAILED (exit $?)"
		nbad=1
	fi
	t1=$(now)
	if port "$n" >"$work/port.log" 2>&1 &&
	    { [ "$where" = node_net.py ] ||
	    grep -q 'Checks: 1, Failures: 0, Errors: 0' "$work/port.log"; }; then
		pres=ok
		pbad=0
		portok=$((portok + 1))
	else
		pres=FAILED
		pbad=1
	fi
	t2=$(now)
	if [ $nbad = 0 ] && [ $pbad = 0 ]; then
		tag=ok
	else
		tag=FAIL
		fail=1
	fi
	printf '%-4s %-58s node: %s, %s; port (%s): %s, %s\n' "$tag" "$f" \
	    "$nres" "$(secs "$t0" "$t1")" "$where" "$pres" "$(secs "$t1" "$t2")"
	if [ $nbad = 1 ]; then
		echo "--- node $f:"; tail -n 40 "$work/node.log"
	fi
	if [ $pbad = 1 ]; then
		echo "--- port $n:"; tail -n 40 "$work/port.log"
	fi
done
echo "$(wc -l <"$work/have") test-net-*.js files; $ported ported:" \
    "node passed $nodeok, skipped $nodeskip, failed" \
    "$((ported - nodeok - nodeskip)); ports passed $portok, failed" \
    "$((ported - portok))"
[ "$ported" -gt 0 ] || fail=1
exit $fail
