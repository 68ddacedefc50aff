#!/bin/bash
# The spec's echo server and client, as shipped in examples/: the client
# gets "hello" and its own "world!" back, over TCP (by address and by the
# default host, localhost) and over a unix socket. Waits read the server's
# output as it comes, each under a deadline.
set -eu
b=${top_builddir:-.}/examples
dir=$(mktemp -d "${TMPDIR:-/tmp}/nc-examples.XXXXXX")
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$dir"
}
trap cleanup EXIT

mkfifo "$dir/out"
"$b/echo-server" -p 0 -U "$dir/echo.sock" >"$dir/out" 2>&1 &
pid=$!
exec 3<"$dir/out"

# wait_lines PATTERN N: reads the server's lines until N match (10 s each).
port=
wait_lines() {
	local n=0 line
	while [ "$n" -lt "$2" ]; do
		if ! IFS= read -r -t 10 -u 3 line; then
			echo "timed out waiting for '$1' ($n of $2)"; exit 1
		fi
		case $line in
		*"server bound "*" port "*) port=${line##* port } ;;
		esac
		case $line in $1) n=$((n + 1)) ;; esac
	done
}

wait_lines 'server bound *' 2
[ -n "$port" ] || { echo "no port"; exit 1; }

check() {
	grep -q '^connected to server!$' "$1" &&
	grep -q '^hello' "$1" &&
	grep -q '^world!' "$1" &&
	grep -q '^disconnected from server$' "$1"
}

timeout 20 "$b/echo-client" -h 127.0.0.1 -p "$port" >"$dir/tcp.out"
check "$dir/tcp.out" || { echo "tcp client:"; cat "$dir/tcp.out"; exit 1; }
timeout 20 "$b/echo-client" -p "$port" >"$dir/localhost.out"
check "$dir/localhost.out" || { echo "localhost client:"; cat "$dir/localhost.out"; exit 1; }
timeout 20 "$b/echo-client" -U "$dir/echo.sock" >"$dir/unix.out"
check "$dir/unix.out" || { echo "unix client:"; cat "$dir/unix.out"; exit 1; }
wait_lines 'client disconnected' 3
echo "examples ok (port $port)"
