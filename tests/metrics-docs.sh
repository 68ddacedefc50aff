#!/bin/sh
# The metrics' documentation and the files built on it stay true to
# src/master/metrics.c: the alerting rules pass promtool (syntax, and
# fire on the series they are meant for), the Grafana dashboard is JSON
# whose queries parse, every metric name they and docs/metrics.md use
# exists, and netcluster.json(5) lists every metric with its type.
set -eu
s=$(cd "${srcdir:-.}" && pwd)
fail=0
bad() { echo "FAIL: $*"; fail=1; }

rules=$s/conf/netcluster-alerts.yml
dash=$s/conf/grafana-netcluster.json
doc=$s/docs/metrics.md
man=$s/man/netcluster.json.5
src=$s/src/master/metrics.c

if ! command -v promtool >/dev/null 2>&1; then
	echo "FAIL: promtool is not installed (Debian: apt-get install" \
	    "prometheus); it checks conf/netcluster-alerts.yml"
	exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# Every family metrics.c makes, with its type: family(list, "NAME", "TYPE".
python3 - "$src" >"$tmp/families" <<'PY' || bad "cannot read $src"
import re, sys
text = open(sys.argv[1]).read()
for name, kind in re.findall(
        r'family\(\s*\w+,\s*"(netcluster_[a-z_]+)",\s*"(gauge|counter)"',
        text):
    print(name, kind)
PY
cut -d' ' -f1 "$tmp/families" | sort -u >"$tmp/names"
n=$(wc -l <"$tmp/names")
[ "$n" -ge 20 ] || bad "only $n metric families found in $src: the" \
    "pattern of this test no longer matches the code"

# 1. The alerting rules.
promtool check rules "$rules" >"$tmp/out" 2>&1 ||
    { cat "$tmp/out"; bad "promtool check rules $rules"; }

# ... and they fire on what they are about, and not otherwise (on a
# copy without the annotations, which promtool would compare too).
sed -e '/^ *annotations:$/d' -e '/^ *summary:/d' -e '/^ *description:/d' \
    "$rules" >"$tmp/alerts.yml"
cat >"$tmp/alerts-test.yml" <<YML
rule_files:
  - $tmp/alerts.yml
evaluation_interval: 15s
tests:
  - interval: 15s
    input_series:
      - series: 'netcluster_worker_backoffs_total{instance="h1"}'
        values: '0 0 1 2 3 4 5 6 7 8'
      - series: 'netcluster_upstream_up{instance="h1",service="px",upstream="10.0.0.5:80"}'
        values: '1 0 0 0 0 0 0 0 0 0'
      - series: 'netcluster_upstream_up{instance="h1",service="px",upstream="10.0.0.6:80"}'
        values: '1x10'
      - series: 'netcluster_handoff_queue_length{instance="h1",service="echo",listener="0.0.0.0:8124"}'
        values: '0+3x40'
      - series: 'netcluster_ready{instance="h1"}'
        values: '0x200'
      - series: 'netcluster_draining{instance="h1"}'
        values: '1x200'
      - series: 'netcluster_ready{instance="h2"}'
        values: '0x10'
      - series: 'netcluster_draining{instance="h2"}'
        values: '0x10'
    alert_rule_test:
      - eval_time: 2m
        alertname: NetclusterWorkerCrashLooping
        exp_alerts:
          - exp_labels: { severity: critical, instance: h1 }
      - eval_time: 2m
        alertname: NetclusterUpstreamDown
        exp_alerts:
          - exp_labels: { severity: warning, instance: h1, service: px, upstream: "10.0.0.5:80" }
      - eval_time: 2m
        alertname: NetclusterAllUpstreamsDown
        exp_alerts: []
      - eval_time: 8m
        alertname: NetclusterHandoffQueueGrowing
        exp_alerts:
          - exp_labels: { severity: warning, instance: h1, service: echo, listener: "0.0.0.0:8124" }
      - eval_time: 2m
        alertname: NetclusterNotReady
        exp_alerts:
          - exp_labels: { severity: critical, instance: h2 }
      - eval_time: 20m
        alertname: NetclusterDrainingLong
        exp_alerts: []
      - eval_time: 40m
        alertname: NetclusterDrainingLong
        exp_alerts:
          - exp_labels: { severity: warning, instance: h1 }
YML
promtool test rules "$tmp/alerts-test.yml" >"$tmp/out" 2>&1 ||
    { cat "$tmp/out"; bad "the alerts of $rules do not fire as expected"; }

# 2. The dashboard: JSON, and every query PromQL (as recording rules,
# with the instance variable replaced by a regex).
if python3 -m json.tool "$dash" >/dev/null 2>"$tmp/out"; then
	python3 - "$dash" >"$tmp/dash-rules.yml" <<'PY' ||
import json, sys
d = json.load(open(sys.argv[1]))
exprs = []
def walk(ps):
    for p in ps:
        exprs.extend(t["expr"] for t in p.get("targets", []) if "expr" in t)
        walk(p.get("panels", []))
walk(d["panels"])
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    e = e.replace("$instance", ".*")
    print("      - record: dashboard_query_%d\n        expr: %s"
          % (i, json.dumps(e)))
if d.get("schemaVersion", 0) < 36 or not exprs:
    sys.exit(1)
PY
	    bad "$dash: no queries, or schemaVersion under 36"
	promtool check rules "$tmp/dash-rules.yml" >"$tmp/out" 2>&1 ||
	    { cat "$tmp/out"; bad "$dash: a query is not valid PromQL"; }
else
	cat "$tmp/out"
	bad "$dash is not valid JSON"
fi

# 3. Every metric name used exists in metrics.c (a name ending in "_" is
# the prefix, not a name).
for f in "$dash" "$rules" "$doc"; do
	for m in $(grep -o 'netcluster_[a-z_]*' "$f" | grep -v '_$' |
	    sort -u); do
		grep -qx "$m" "$tmp/names" ||
		    bad "$f uses $m, which src/master/metrics.c does not make"
	done
done

# 4. netcluster.json(5) lists every family, with its type.
while read -r m kind; do
	grep -Eq "^\.It Li $m Pq $kind(;| |\$)" "$man" ||
	    bad "netcluster.json(5) lacks \".It Li $m Pq $kind\" (a" \
	    "family src/master/metrics.c makes)"
done <"$tmp/families"

[ "$fail" = 0 ] && echo "metrics docs ok: $n families"
exit "$fail"
