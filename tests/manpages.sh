#!/bin/sh
# The man pages: lint-clean (groff -ww), and every configuration key,
# every option and every command is in its page.
set -eu
s=${srcdir:-.}
fail=0
for p in "$s"/man/*.[0-9]; do
	out=$(groff -ww -z -mandoc "$p" 2>&1 || true)
	if [ -n "$out" ]; then
		echo "$p: $out"; fail=1
	fi
done
# Keys: every row of the config parser's key tables.
keys=$(grep -o 'KEY_[A-Z]*("[a-z_]*"' "$s/src/common/config.c" |
    sed 's/.*"\(.*\)"/\1/' | sort -u)
[ "$(echo "$keys" | wc -w)" -ge 30 ] ||
    { echo "found only $(echo "$keys" | wc -w) keys in config.c"; fail=1; }
for k in $keys; do
	grep -q "^\.It Ic $k\b" "$s/man/netcluster.json.5" ||
	    grep -q "Ic $k" "$s/man/netcluster.json.5" ||
	    { echo "netcluster.json(5) lacks the key $k"; fail=1; }
done
# netclusterd's options, from its getopt string.
opts=$(sed -n 's/.*getopt_long(argc, argv, "\([^"]*\)".*/\1/p' \
    "$s/src/master/main.c" | tr -d ':' | fold -w1)
for o in $opts; do
	grep -q "Fl $o" "$s/man/netclusterd.8" ||
	    { echo "netclusterd(8) lacks -$o"; fail=1; }
done
# netclusterctl's commands, from the table (its --help comes from the
# same rows: tests/ctl.sh), and its options.
for c in $(sed -n 's/^		"\([a-z]*\)", NC_CMD_[A-Z]*,.*/\1/p' \
    "$s/src/common/command.c"); do
	grep -q "It Cm $c\b" "$s/man/netclusterctl.8" ||
	    { echo "netclusterctl(8) lacks $c"; fail=1; }
done
for o in s j h -batch -wait -stop; do
	grep -q "Fl $o" "$s/man/netclusterctl.8" ||
	    { echo "netclusterctl(8) lacks -$o"; fail=1; }
done
[ "$fail" = 0 ] && echo "man pages ok"
exit "$fail"
