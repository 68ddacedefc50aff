#!/bin/sh
# netclusterctl's command line, without a daemon: bad usage exits 2 with
# one line saying what is wrong, before anything is sent; good usage gets
# as far as the socket (exit 1, nobody there); --help lists every
# command of the table (src/common/command.c).
set -eu
s=${srcdir:-.}
ctl=${top_builddir:-.}/netclusterctl
[ -x "$ctl" ] || { echo "no $ctl"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nc-ctl.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
NETCLUSTER_CONTROL_SOCKET=$tmp/none.sock
export NETCLUSTER_CONTROL_SOCKET
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# usage WANT ARGS...: exit 2, nothing on stdout, and stderr's first line
# is "netclusterctl: " and contains WANT (only line unless it is an
# unknown command, which the usage follows).
usage() {
	want=$1; shift
	rc=0
	"$ctl" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
	first=$(head -n 1 "$tmp/err")
	[ "$rc" = 2 ] || bad "netclusterctl $*: exit $rc, not 2"
	[ ! -s "$tmp/out" ] || bad "netclusterctl $*: wrote to stdout"
	case $first in
	"netclusterctl: "*"$want"*) ;;
	*) bad "netclusterctl $*: said \"$first\", not \"$want\"" ;;
	esac
	case $want in
	"unknown command"*) ;;
	*) [ "$(wc -l <"$tmp/err")" = 1 ] ||
	    bad "netclusterctl $*: more than one line: $(cat "$tmp/err")" ;;
	esac
}
usage 'unknown command "frobnicate"' frobnicate
usage 'scale takes SERVICE N|+K|-K' scale
usage 'scale takes SERVICE N|+K|-K' scale echo
usage 'scale: "x" is not a count' scale echo x
usage 'scale: "+0" is not a count' scale echo +0
usage 'scale: "-0" is not a count' scale echo -0
usage 'scale: "0" is not a count' scale echo 0
usage 'scale: "1025" is not a count' scale echo 1025
usage 'scale: "+1x" is not a count' scale echo +1x
usage 'scale takes SERVICE N|+K|-K' scale echo 2 3
usage '--batch: "0" is not a count' reload --batch 0
usage '--batch: "x" is not a count' reload echo --batch x
usage '--batch is for reload' --batch 2 status
usage '--batch is for reload' scale echo 2 --batch 2
usage '--wait and --stop are for drain' reload --wait
usage 'status takes no argument' status extra
usage 'reload takes [SERVICE] [--batch K]' reload echo extra
usage 'connections takes [SERVICE]' connections echo extra
usage 'send takes SERVICE JSON' send echo
usage 'the message is not JSON' send echo '{'

# Good usage: the request is made, and only the socket is missing.
for args in "scale echo 3" "scale echo +2" "scale echo -1" \
    "scale echo -- -1" "reload" "reload echo" "reload echo --batch 2" \
    "reload --batch=1024 echo" "connections echo" "drain --wait --stop" \
    "-j status"; do
	rc=0
	# shellcheck disable=SC2086
	"$ctl" $args >/dev/null 2>"$tmp/err" || rc=$?
	[ "$rc" = 1 ] && grep -q "is netclusterd running?" "$tmp/err" ||
	    bad "netclusterctl $args: exit $rc: $(cat "$tmp/err")"
done

# --help: every command of the table, each on a line of its own.
"$ctl" --help >"$tmp/help" || bad "netclusterctl --help: exit $?"
names=$(sed -n 's/^		"\([a-z]*\)", NC_CMD_[A-Z]*,.*/\1/p' \
    "$s/src/common/command.c")
enum=$(sed -n 's/^	NC_CMD_\([A-Z]*\),\{0,1\}$/\1/p' \
    "$s/src/common/nc-command.h" | tr A-Z a-z)
[ -n "$names" ] && [ "$names" = "$enum" ] ||
    bad "the table's commands ($(echo $names)) are not the enum's" \
    "($(echo $enum))"
for c in $names; do
	grep -Eq "^  $c( |\$)" "$tmp/help" || bad "--help lacks $c"
done
[ "$fail" = 0 ] && echo "netclusterctl: $(echo $names | wc -w) commands," \
    "usage errors ok"
exit "$fail"
