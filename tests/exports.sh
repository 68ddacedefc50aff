#!/bin/sh
# Only the public nc_* API leaves libnetcluster.so: no nc__ internals, no
# helpers without the prefix.
set -eu
lib=${top_builddir:-.}/.libs/libnetcluster.so
[ -f "$lib" ] || { echo "no $lib"; exit 1; }
syms=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRW]$/ { print $3 }')
[ -n "$syms" ] || { echo "no symbols exported"; exit 1; }
bad=$(printf '%s\n' "$syms" | grep -v '^nc_' || true)
internal=$(printf '%s\n' "$syms" | grep '^nc__' || true)
if [ -n "$bad$internal" ]; then
	echo "exported but not public API:"; printf '%s\n' $bad $internal
	exit 1
fi
# Every function the header declares is exported.
hdr=${srcdir:-.}/include/netcluster.h
missing=
for f in $(grep -oE '\bnc_[a-z0-9_]+\(' "$hdr" | tr -d '(' | sort -u); do
	printf '%s\n' "$syms" | grep -qx "$f" || missing="$missing $f"
done
if [ -n "$missing" ]; then
	echo "declared but not exported:$missing"
	exit 1
fi
echo "exports ok: $(printf '%s\n' "$syms" | wc -l) symbols"
