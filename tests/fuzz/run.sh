#!/bin/sh
# Runs each libFuzzer target for a bounded time from its seed corpus:
#   run.sh FUZZDIR SECONDS TARGET...
# Seeds come from FUZZDIR/corpus/NAME (never written to); what the run
# finds goes to a scratch directory removed afterwards. A crash, leak or
# broken invariant fails the run and prints the reproducer (hex and the
# command that replays it). Each target's exec count and coverage is
# printed as "fuzz NAME: N execs, cov C, ft F, corpus K".
set -u
dir=$1
secs=$2
shift 2
work=$(mktemp -d "${TMPDIR:-/tmp}/nc-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
failed=0
for t in "$@"; do
	name=$(basename "$t")
	seeds="$dir/corpus/$name"
	mkdir -p "$work/$name"
	dict=
	[ -f "$dir/${name#fuzz_}.dict" ] && dict="-dict=$dir/${name#fuzz_}.dict"
	log="$work/$name.log"
	"$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
	    -max_len=4096 -print_final_stats=1 \
	    -artifact_prefix="$work/$name-" $dict \
	    "$work/$name" "$seeds" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
	cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
	corp=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\).*/\1/p')
	echo "fuzz $name: ${execs:-?} execs, cov ${cov:-?}, ft ${ft:-?}," \
	    "corpus ${corp:-?} in ${secs} s"
	if [ $rc -ne 0 ]; then
		failed=1
		echo "fuzz $name: FAILED (exit $rc)" >&2
		grep -vE '^#[0-9]+|^INFO:' "$log" | tail -n 60 >&2
		for a in "$work/$name"-*; do
			[ -f "$a" ] || continue
			echo "--- reproducer $(basename "$a"), $(wc -c <"$a") bytes:" >&2
			od -An -c "$a" | head -n 40 >&2
			echo "--- base64:" >&2
			base64 "$a" >&2
			echo "--- replay: base64 -d > crash; $t crash" >&2
		done
	fi
done
exit $failed
