#!/bin/sh
# The systemd units pass systemd-analyze verify, with paths into this
# build tree.
set -eu
b=$(cd "${top_builddir:-.}" && pwd)
s=$(cd "${srcdir:-.}" && pwd)
dir=$(mktemp -d "${TMPDIR:-/tmp}/nc-units.XXXXXX")
trap 'rm -rf "$dir"' EXIT
sed -e "s|@sbindir@|$b|g" -e "s|@sysconfdir@/netcluster.json|$s/conf/echo.json|g" \
	"$s/conf/netclusterd.service.in" >"$dir/netclusterd.service"
cp "$s/conf/netclusterd.socket" "$dir/"
systemd-analyze verify --man=no "$dir/netclusterd.service" \
	"$dir/netclusterd.socket"
grep -q '^Type=notify$' "$dir/netclusterd.service"
grep -q '^ExecReload=' "$dir/netclusterd.service"
grep -q '^KillMode=' "$dir/netclusterd.service"
echo "units ok"
