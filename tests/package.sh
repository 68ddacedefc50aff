#!/bin/sh
# The Debian packages as an operator gets them: built from a clean copy of
# the tree (no checks: make check is the rest of scripts/test), linted,
# installed, checked (netclusterd -t), run without systemd, the README's C
# example built against libnetcluster-dev, upgraded to a newer build while
# the daemon serves a steady load (then `netclusterctl upgrade`), stopped
# and purged. As root on Debian; scripts/test runs it.
#
# The daemon and the example run in network and mount namespaces of their
# own (loopback up, a tmpfs on /run), so a netclusterd already serving port
# 8124 and /run/netcluster/control.sock on this machine is not in the way;
# the clients enter the same namespaces with nsenter.
#
# The newer build has the upstream version VERSION+pkgtest1 (AC_INIT in
# the copy's configure.ac) and the package version VERSION+pkgtest1-1, so
# netclusterd -V, and the version the master reports, change with it.
#
# Every wait is bounded; the trap stops what the test started, purges what
# it installed and removes its files, on failure too.
# shellcheck disable=SC2086,SC2046,SC2016,SC2009
# ($pkgs and $(debs ...) are lists; sh -c scripts are single-quoted)
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
jobs=$(nproc 2>/dev/null || echo 2)
[ "$jobs" -le 2 ] || jobs=2
export DEBIAN_FRONTEND=noninteractive
unset NETCLUSTER_CONTROL_SOCKET
pkgs="netcluster libnetcluster0 libnetcluster-dev"
apt_get() {
	timeout 600 apt-get -y -q --no-install-recommends \
	    -o DPkg::Lock::Timeout=300 "$@"
}

say() { printf '== package: %s\n' "$*"; }
die() { printf '== package: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"
for c in dpkg-buildpackage lintian apt-get unshare nsenter ip python3 git \
    pkg-config cc timeout; do
	command -v "$c" >/dev/null || die "$c is not installed (scripts/deps)"
done
for p in $pkgs; do
	if dpkg-query -W -f '${db:Status-Abbrev}' "$p" 2>/dev/null |
	    grep -q '^.[iUFHWt]'; then
		die "$p is installed already; purge it first"
	fi
done
if getent passwd netcluster >/dev/null; then had_user=1; else had_user=0; fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nc-package.XXXXXX")
dpid='' xpid='' lpid='' installed=0

# Sends SIGTERM to $1, waits up to $2 s for it to go, then SIGKILL.
stop_pid() {
	kill -TERM "$1" 2>/dev/null || return 0
	wait_gone "$1" "$2" || { kill -KILL "$1" 2>/dev/null; wait_gone "$1" 5; }
	wait "$1" 2>/dev/null || true
}

# Waits up to $2 s for process $1 to exit; 1 if it is still there.
wait_gone() {
	n=$(($2 * 20))
	while kill -0 "$1" 2>/dev/null; do
		# A zombie child of ours has exited: reap it.
		case $(ps -o stat= -p "$1" 2>/dev/null) in Z*) return 0;; esac
		n=$((n - 1))
		[ "$n" -gt 0 ] || return 1
		sleep 0.05
	done
}

# Waits up to $3 s for process $1 to run $2: then its namespaces are the
# new ones (before, nsenter would enter this shell's).
wait_exec() {
	n=$(($3 * 20))
	while [ "$(readlink "/proc/$1/exe" 2>/dev/null)" != "$2" ]; do
		n=$((n - 1))
		[ "$n" -gt 0 ] && kill -0 "$1" 2>/dev/null || return 1
		sleep 0.05
	done
}

cleanup() {
	rc=$?
	set +e
	[ -z "$lpid" ] || stop_pid "$lpid" 5
	[ -z "$xpid" ] || stop_pid "$xpid" 5
	[ -z "$dpid" ] || stop_pid "$dpid" 40
	if [ "$installed" = 1 ]; then
		say "cleanup: purging $pkgs"
		apt_get purge $pkgs >"$tmp/cleanup-purge.log" 2>&1 ||
		    cat "$tmp/cleanup-purge.log"
	fi
	# The package keeps its user on purge; the test removes the one the
	# package made for it.
	if [ "$had_user" = 0 ] && getent passwd netcluster >/dev/null; then
		deluser --quiet --system netcluster >/dev/null 2>&1
		getent group netcluster >/dev/null &&
		    delgroup --quiet --system netcluster >/dev/null 2>&1
	fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

cat >"$tmp/client.py" <<'EOF'
"""Clients of the echo service: greet (wait, bounded, for one to get the
greeting and an echo) and load (connect, greeting, echo, close, until a
file appears or the time is up; counts what failed)."""
import json, os, socket, sys, time

def once(host, port, n):
    with socket.create_connection((host, port), timeout=5) as s:
        s.settimeout(5)
        got = b""
        while not got.endswith(b"hello\r\n"):
            b = s.recv(256)
            if not b:
                raise OSError("closed before the greeting: %r" % got)
            got += b
            if len(got) > 64:
                raise OSError("bad greeting %r" % got)
        line = b"line %d\r\n" % n
        s.sendall(line)
        got = b""
        while len(got) < len(line):
            b = s.recv(256)
            if not b:
                raise OSError("closed before the echo: %r" % got)
            got += b
        if got != line:
            raise OSError("echo %r for %r" % (got, line))

def greet(host, port, secs):
    end = time.monotonic() + float(secs)
    while True:
        try:
            once(host, int(port), 0)
            print("greeting and echo from %s:%s" % (host, port))
            return 0
        except OSError as e:
            if time.monotonic() > end:
                print("no greeting from %s:%s: %s" % (host, port, e))
                return 1
            time.sleep(0.05)

def load(host, port, stop, secs, out):
    end = time.monotonic() + float(secs)
    ok = failed = 0
    errors = []
    while not os.path.exists(stop) and time.monotonic() < end:
        try:
            once(host, int(port), ok + failed)
            ok += 1
        except OSError as e:
            failed += 1
            if len(errors) < 10:
                errors.append(str(e))
        if (ok + failed) % 20 == 0:
            with open(out + ".tmp", "w") as f:
                json.dump({"ok": ok, "failed": failed}, f)
            os.rename(out + ".tmp", out)
        time.sleep(0.005)
    with open(out + ".tmp", "w") as f:
        json.dump({"ok": ok, "failed": failed, "errors": errors,
                   "stopped": os.path.exists(stop)}, f)
    os.rename(out + ".tmp", out)
    return 0

mode = sys.argv[1]
sys.exit(greet(*sys.argv[2:]) if mode == "greet" else load(*sys.argv[2:]))
EOF

# Reads key $2 of the JSON object in file $1 (empty when absent).
json_get() {
	python3 -c 'import json, sys
try:
    v = json.load(open(sys.argv[1])).get(sys.argv[2], "")
except (OSError, ValueError):
    v = ""
print(v)' "$1" "$2"
}

# 1, 2. The sources, as git has them, in two copies: the second with a
# newer upstream and package version.
v1=$(sed -n 's/^AC_INIT(\[netcluster\], \[\([^]]*\)\].*/\1/p' \
    "$top/configure.ac")
[ -n "$v1" ] || die "no version in configure.ac's AC_INIT"
v2=$v1+pkgtest1
d1=$(sed -n '1s/^netcluster (\([^)]*\)).*/\1/p' "$top/debian/changelog")
d2=$v2-1
arch=$(dpkg --print-architecture)
triplet=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
mkdir -p "$tmp/b1/netcluster-$v1" "$tmp/b2/netcluster-$v2"
git -C "$top" ls-files | while IFS= read -r f; do
	if [ -e "$top/$f" ] || [ -L "$top/$f" ]; then printf '%s\n' "$f"; fi
done | tar -C "$top" -cf - --no-recursion -T - |
    tar -C "$tmp/b1/netcluster-$v1" -xf -
[ -f "$tmp/b1/netcluster-$v1/debian/rules" ] || die "debian/ is not in git"
(cd "$tmp/b1/netcluster-$v1" && tar -cf - .) |
    tar -C "$tmp/b2/netcluster-$v2" -xf -
s2=$tmp/b2/netcluster-$v2
sed -i "s/^AC_INIT(\[netcluster\], \[$v1\]/AC_INIT([netcluster], [$v2]/" \
    "$s2/configure.ac"
grep -q "^AC_INIT(\[netcluster\], \[$v2\]" "$s2/configure.ac" ||
    die "could not set the version in the copy's configure.ac"
maint=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' "$top/debian/changelog" | head -n 1)
{
	printf 'netcluster (%s) unstable; urgency=medium\n\n' "$d2"
	printf '  * Newer build for the upgrade of tests/package.sh.\n\n'
	printf ' -- %s  %s\n\n' "$maint" "$(date -R)"
	cat "$s2/debian/changelog"
} >"$tmp/changelog" && mv "$tmp/changelog" "$s2/debian/changelog"

build() {
	say "building $1 ($(basename "$2"))"
	(cd "$2" && DEB_BUILD_OPTIONS="nocheck parallel=$jobs" \
	    DEB_BUILD_PROFILES=nocheck \
	    timeout 900 dpkg-buildpackage -us -uc -b) >"$2.log" 2>&1 ||
	    { tail -n 60 "$2.log"; die "dpkg-buildpackage of $1 failed"; }
}
build "$d1" "$tmp/b1/netcluster-$v1"
build "$d2" "$s2"
for d in "$tmp/b1:$d1" "$tmp/b2:$d2"; do
	for p in $pkgs; do
		[ -f "${d%%:*}/${p}_${d#*:}_$arch.deb" ] ||
		    die "not built: ${p}_${d#*:}_$arch.deb"
	done
done

say "lintian $tmp/b1/netcluster_${d1}_$arch.changes"
timeout 300 lintian -I --pedantic "$tmp/b1/netcluster_${d1}_$arch.changes" \
    >"$tmp/lintian.log" 2>&1 || true
grep -v '^running with root privileges' "$tmp/lintian.log" || true
if grep -q '^E:' "$tmp/lintian.log"; then
	die "lintian reports errors"
fi

# 3. The older version.
debs() {
	for p in $pkgs; do printf '%s ' "$1/${p}_$2_$arch.deb"; done
}
say "installing $d1"
installed=1
apt_get install $(debs "$tmp/b1" "$d1") >"$tmp/install1.log" 2>&1 ||
    { cat "$tmp/install1.log"; die "apt-get install of $d1 failed"; }
for p in $pkgs; do
	[ "$(dpkg-query -W -f '${Version}' "$p")" = "$d1" ] ||
	    die "$p $d1 is not installed"
	say "dpkg -L $p"
	dpkg -L "$p"
done
getent passwd netcluster || die "no user netcluster"
getent group netcluster || die "no group netcluster"
[ -f /etc/netcluster/netcluster.json ] || die "no /etc/netcluster/netcluster.json"
dpkg-query -W -f '${Conffiles}\n' netcluster |
    grep -q '^ /etc/netcluster/netcluster.json ' ||
    die "/etc/netcluster/netcluster.json is not a conffile"
[ "$(netclusterd -V)" = "netclusterd $v1" ] ||
    die "netclusterd -V: $(netclusterd -V), not $v1"

# 4. The packaged configuration, at netclusterd's default path.
say "netclusterd -t"
netclusterd -t || die "netclusterd -t refused the packaged configuration"

# 5. The installed daemon, without systemd, in its namespaces.
say "starting /usr/sbin/netclusterd"
unshare --net --mount sh -c 'ip link set lo up &&
    mount -t tmpfs -o mode=0755 netcluster-run /run &&
    exec /usr/sbin/netclusterd' >"$tmp/daemon.log" 2>&1 &
dpid=$!
in_ns() { nsenter -t "$dpid" -n -m "$@"; }
wait_exec "$dpid" /usr/sbin/netclusterd 20 ||
    { cat "$tmp/daemon.log"; die "netclusterd did not start"; }

# 6. The echo, the control socket at its default path, the workers' user.
in_ns timeout 30 python3 "$tmp/client.py" greet 127.0.0.1 8124 20 ||
    { cat "$tmp/daemon.log"; die "no echo from the packaged daemon"; }
say "netclusterctl status"
in_ns timeout 30 netclusterctl status ||
    { cat "$tmp/daemon.log"; die "netclusterctl status failed"; }
say "netclusterctl metrics | promtool check metrics"
in_ns timeout 30 netclusterctl metrics >"$tmp/metrics.txt" ||
    { cat "$tmp/daemon.log"; die "netclusterctl metrics failed"; }
promtool check metrics <"$tmp/metrics.txt" ||
    die "promtool refused the packaged daemon's metrics"
grep -q "^netcluster_build_info{version=\"$v1\"," "$tmp/metrics.txt" ||
    die "the metrics do not give version $v1"
say "the installed alert rules and Grafana dashboard"
promtool check rules /usr/share/netcluster/netcluster-alerts.yml ||
    die "promtool refused /usr/share/netcluster/netcluster-alerts.yml"
python3 -m json.tool /usr/share/netcluster/grafana-netcluster.json \
    >/dev/null || die "/usr/share/netcluster/grafana-netcluster.json is not JSON"
n=400
while [ "$(ps -o args= --ppid "$dpid" | grep -c netcluster-worker)" -lt 2 ]
do
	n=$((n - 1))
	[ "$n" -gt 0 ] || die "the two workers did not start"
	sleep 0.05
done
ps -o user:32=,pid=,args= --ppid "$dpid" | tee "$tmp/workers"
if grep netcluster-worker "$tmp/workers" | grep -qv '^netcluster '; then
	die "a worker does not run as netcluster"
fi

# 7. The README's example, built against libnetcluster-dev.
say "the README's C example"
awk '/^## A server and a client in C/ { s = 1; next }
    s && /^```c$/ { c = 1; next }
    c && /^```$/ { exit }
    c' "$top/README.md" >"$tmp/echo.c"
[ -s "$tmp/echo.c" ] || die "no C example in README.md"
say "pkg-config: $(pkg-config --cflags --libs netcluster)"
cc -o "$tmp/echo" "$tmp/echo.c" $(pkg-config --cflags --libs netcluster) ||
    die "the README's example does not build"
unshare --net sh -c 'ip link set lo up && exec "$0"' "$tmp/echo" \
    >"$tmp/echo.log" 2>&1 &
xpid=$!
wait_exec "$xpid" "$tmp/echo" 20 ||
    { cat "$tmp/echo.log"; die "the example did not start"; }
nsenter -t "$xpid" -n timeout 30 python3 "$tmp/client.py" greet \
    127.0.0.1 8124 20 || { cat "$tmp/echo.log"; die "no greeting from it"; }
stop_pid "$xpid" 5
xpid=

# 8. The newer packages under load, then netclusterctl upgrade. What the
# upgrade is found lacking is reported, and the test goes on to the purge.
say "load on the daemon"
in_ns python3 "$tmp/client.py" load 127.0.0.1 8124 "$tmp/stop" 300 \
    "$tmp/load.json" &
lpid=$!
# Waits up to $1 s for the load to pass $2 connections.
load_past() {
	n=$(($1 * 20))
	while [ "$(json_get "$tmp/load.json" ok)" -lt "$2" ] 2>/dev/null ||
	    [ ! -s "$tmp/load.json" ]; do
		n=$((n - 1))
		[ "$n" -gt 0 ] || return 1
		kill -0 "$lpid" 2>/dev/null || return 1
		sleep 0.05
	done
}
load_past 30 100 || die "the load did not start: $(cat "$tmp/load.json")"
say "installing $d2 over $d1"
apt_get install $(debs "$tmp/b2" "$d2") >"$tmp/install2.log" 2>&1 ||
    { cat "$tmp/install2.log"; die "apt-get install of $d2 failed"; }
for p in $pkgs; do
	[ "$(dpkg-query -W -f '${Version}' "$p")" = "$d2" ] ||
	    die "$p $d2 is not installed"
done
[ "$(netclusterd -V)" = "netclusterd $v2" ] ||
    die "netclusterd -V: $(netclusterd -V), not $v2"
kill -0 "$dpid" 2>/dev/null || die "the upgrade of the package stopped it"
say "exe before the upgrade: $(readlink "/proc/$dpid/exe")"
say "netclusterctl upgrade"
upgrade_failed=
in_ns timeout 60 netclusterctl upgrade ||
    upgrade_failed="$upgrade_failed; netclusterctl upgrade failed"
kill -0 "$dpid" 2>/dev/null || die "netclusterd is gone after the upgrade"
in_ns timeout 30 netclusterctl --json status >"$tmp/status.json" ||
    die "netclusterctl --json status failed after the upgrade"
cat "$tmp/status.json"; echo
running=$(json_get "$tmp/status.json" version)
[ "$running" = "$v2" ] || upgrade_failed="$upgrade_failed; status reports \
version \"$running\", not \"$v2\""
exe=$(readlink "/proc/$dpid/exe")
say "exe after the upgrade: $exe"
case $exe in *" (deleted)") upgrade_failed="$upgrade_failed; the master \
still runs the old binary ($exe)";; esac
before=$(json_get "$tmp/load.json" ok)
load_past 30 $((before + 100)) || die "the load stalled after the upgrade"
: >"$tmp/stop"
wait_gone "$lpid" 30 || die "the load did not stop"
wait "$lpid" || die "the load failed"
lpid=
say "load: $(cat "$tmp/load.json")"
failed=$(json_get "$tmp/load.json" failed)
[ "$failed" = 0 ] || upgrade_failed="$upgrade_failed; $failed connections \
failed under the upgrade"

# 9. Stop, purge, and nothing of the packages is left.
say "stopping netclusterd"
kill -TERM "$dpid"
wait_gone "$dpid" 40 || die "netclusterd did not stop within 40 s"
wait "$dpid" || die "netclusterd exited $?: $(tail -n 20 "$tmp/daemon.log")"
dpid=
say "purging $pkgs"
apt_get purge $pkgs >"$tmp/purge.log" 2>&1 ||
    { cat "$tmp/purge.log"; die "apt-get purge failed"; }
installed=0
for p in $pkgs; do
	s=$(dpkg-query -W -f '${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case $s in ""|un*|pn*) ;; *) die "$p is left: $s";; esac
done
for f in /etc/netcluster /usr/sbin/netclusterd /usr/bin/netclusterctl \
    /usr/libexec/netcluster /lib/systemd/system/netclusterd.service \
    /lib/systemd/system/netclusterd.socket \
    /usr/lib/systemd/system/netclusterd.service \
    /usr/lib/systemd/system/netclusterd.socket \
    "/usr/lib/$triplet/netcluster" "/usr/lib/$triplet/libnetcluster.so" \
    "/usr/lib/$triplet/libnetcluster.so.0" \
    "/usr/lib/$triplet/pkgconfig/netcluster.pc" /usr/include/netcluster.h \
    /usr/include/netcluster-handler.h /usr/share/netcluster \
    /usr/share/doc/netcluster /usr/share/man/man8/netclusterd.8.gz; do
	if [ -e "$f" ] || [ -L "$f" ]; then die "left after the purge: $f"; fi
done
say "dpkg -l after the purge: $(dpkg -l $pkgs 2>&1 | grep netcluster ||
    echo none)"
getent passwd netcluster >/dev/null ||
    die "the purge removed the user netcluster (it keeps it)"
say "the user netcluster is kept: $(getent passwd netcluster)"

if [ -n "$upgrade_failed" ]; then
	die "the upgrade under load:${upgrade_failed#;}"
fi
say "ok"
