#!/bin/sh
# What `make install` installs, tested as installed: the units pass
# systemd-analyze verify as they are (no substitution here), every path
# they name is in the install tree, and the installed netclusterd checks
# the installed configuration, found at its default path.
#
# The install goes to a DESTDIR; a private mount namespace then puts it at
# its real prefix (a bind mount seen by this test alone), so the units and
# the binaries see the paths they were built for.
set -eu
b=$(cd "${top_builddir:-.}" && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/nc-install.XXXXXX")
trap 'rm -rf "$dir"' EXIT
dest=$dir/root

# A make of its own, not the jobs of the make that runs the tests.
unset MAKEFLAGS MFLAGS MAKELEVEL
make -s --no-print-directory -C "$b" install DESTDIR="$dest" \
    >"$dir/install.log" 2>&1 || { cat "$dir/install.log"; exit 1; }
eval "$(make -s --no-print-directory -C "$b" print-install-dirs)"
svc=$dest$systemdsystemunitdir/netclusterd.service
sock=$dest$systemdsystemunitdir/netclusterd.socket
fail=0
for f in "$svc" "$sock" "$dest$sbindir/netclusterd" \
    "$dest$bindir/netclusterctl" "$dest$pkglibexecdir/netcluster-worker" \
    "$dest$sysconfdir/netcluster/netcluster.json"; do
	[ -e "$f" ] || { echo "not installed: ${f#"$dest"}"; fail=1; }
done
[ "$fail" = 0 ] || exit 1
if grep -n '@[a-z]*@' "$svc" "$sock"; then
	echo "unsubstituted patterns in the installed units"; exit 1
fi
# Every absolute path in the service's commands is in the install tree,
# or is the system's own (/bin/kill).
for p in $(sed -n 's/^Exec[A-Za-z]*=[-@:+!]*//p' "$svc" | tr ' ' '\n' |
    grep '^/'); do
	if [ -e "$dest$p" ]; then
		echo "installed: $p"
	elif [ "${p#"$prefix"}" = "$p" ] && [ -e "$p" ]; then
		echo "system: $p"
	else
		echo "the unit names $p, which is not installed"; fail=1
	fi
done
[ "$fail" = 0 ] || exit 1
grep -q '^Type=notify$' "$svc"
grep -q '^ExecReload=' "$svc"
grep -q '^KillMode=' "$svc"

# In a mount namespace of our own (a user namespace too when not root),
# the install tree is at its prefix, and at its sysconfdir when that is
# not under the prefix (/etc for --prefix=/usr). The tree lies over what
# is there (overlayfs) rather than hiding it (a bind mount): with
# --prefix=/usr, as in the Debian build, /usr holds systemd-analyze too.
if [ "$(id -u)" = 0 ]; then ns="unshare -m"; else ns="unshare -rm"; fi
$ns sh -eu -c '
	over() {
		mount -t overlay nc-install -o "lowerdir=$1$2:$2" "$2" \
		    2>/dev/null || mount --bind "$1$2" "$2"
	}
	over "$1" "$2"
	case $6 in "$2"/*) ;; *) over "$1" "$6";; esac
	systemd-analyze verify --man=no "$3" "$4"
	"$5/netclusterd" -t
	"$5/netclusterd" -t -c "$6/netcluster/netcluster.json"
' sh "$dest" "$prefix" "$svc" "$sock" "$sbindir" "$sysconfdir"
echo "installed files ok"
