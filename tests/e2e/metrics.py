"""Metrics and health, checked against the real things: promtool passes
on /metrics and on `netclusterctl metrics` in every mode (the same
families both ways, and in --json); a real Prometheus scraping the
master reads exactly the traffic, kills, reloads and upstream failures
the test made; hostile HTTP clients (silent, garbage, 10,000 requests at
once) cost the master nothing lasting and do not slow the control
socket (median answer under 100 ms, none past 1 s); /ready, /live and the agent follow drain and
undrain; reloads and an upgrade keep the metrics listener and its
counters; bad requests and configs are refused naming what is wrong."""

import json
import multiprocessing
import os
import random
import resource
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ASAN, BUILD, Daemon, Failure, NETCLUSTERCTL, NETCLUSTERD,
                     SCALE, WORKER, check, echo_clients, echo_once,
                     free_port, no_quarantine, raise_nofile, read_to_eof,
                     run)

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
NEXT = os.path.join(BUILD, "tests", "netclusterd-next")
ENV = {"NETCLUSTER_WORKER": WORKER}


def with_health(services, workers=2, metrics=None, agent=None, **kw):
    extra = {"metrics": metrics or {"listen": "127.0.0.1:0"},
             "agent": agent or {"listen": "127.0.0.1:0"}}
    extra.update(kw.pop("extra", {}))
    return Daemon(services, workers=workers, extra=extra,
                  env=dict(ENV, **kw.pop("env", {})), **kw)


def addr_of(text):
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


def endpoints(d):
    """(metrics address, agent address) as status gives them."""
    st = d.ctl("status")
    check(st["metrics"] is not None, "no metrics listener: %s" % st)
    return addr_of(st["metrics"]), (addr_of(st["agent"]) if st["agent"]
                                    else None)


def listen_backlog(addr):
    """The backlog of the TCP listener on addr, as the kernel has it
    (ss shows a listener's backlog as its Send-Q)."""
    out = subprocess.run(["ss", "-Hltn", "sport = :%d" % addr[1]],
                         capture_output=True, text=True, timeout=10,
                         check=True).stdout.split()
    check(len(out) >= 3 and out[0] == "LISTEN", "ss: %r" % out)
    return int(out[2])


def http(addr, method="GET", path="/metrics", timeout=10):
    """(status, headers dict, body) of one HTTP/1.0 request to addr, a
    (host, port) or a unix socket path."""
    if isinstance(addr, str):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.settimeout(timeout * SCALE)
    try:
        c.connect(addr)
        c.sendall(("%s %s HTTP/1.0\r\n\r\n" % (method, path)).encode())
        data = read_to_eof(c)
    finally:
        c.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    check(lines[0].startswith("HTTP/1."), "no HTTP answer: %r" % data[:80])
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(lines[0].split()[1]), headers, body.decode()


def control(d, request, timeout=10):
    """One raw control request; (reply, seconds it took)."""
    start = time.monotonic()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(timeout * SCALE)
    try:
        c.connect(d.control)
        c.sendall(json.dumps(request).encode() + b"\n")
        got = b""
        while not got.endswith(b"\n"):
            x = c.recv(65536)
            if not x:
                break
            got += x
    finally:
        c.close()
    return json.loads(got), time.monotonic() - start


def ctl_text(d, *args):
    p = subprocess.run([NETCLUSTERCTL, "-s", d.control] + list(args),
                       capture_output=True, text=True, timeout=20 * SCALE)
    check(p.returncode == 0, "netclusterctl %s: %s" % (args, p.stderr))
    return p.stdout


def promtool(text, what):
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=30 * SCALE)
    check(p.returncode == 0 and not p.stdout.strip() and
          not p.stderr.strip(), "promtool check metrics on %s: %d %s%s" % (
              what, p.returncode, p.stdout, p.stderr))


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def parse(text):
    """{family: (type, [(labels, value)])} of an exposition text."""
    fams = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            check(name not in fams, "family %s twice" % name)
            fams[name] = (typ, [])
        elif line.startswith("#") or not line:
            continue
        else:
            m = SAMPLE.match(line)
            check(m is not None, "bad sample line %r" % line)
            labels = dict(LABEL.findall(m.group(3) or ""))
            check(m.group(1) in fams, "sample before its TYPE: %r" % line)
            fams[m.group(1)][1].append((labels, float(m.group(4))))
    return fams


def shape(fams):
    """What must agree between two answers: names, types, label sets."""
    return {name: (typ, sorted(sorted(l.items()) for l, _ in samples))
            for name, (typ, samples) in fams.items()}


def json_shape(families):
    return {f["name"]: (f["type"], sorted(sorted(s["labels"].items())
                                          for s in f["samples"]))
            for f in families}


def value(fams, name, **labels):
    """The sum of name's samples whose labels include labels."""
    return sum(v for l, v in fams[name][1]
               if all(l.get(k) == x for k, x in labels.items()))


class EchoUpstream:
    """A TCP echo server that sends nothing but what it gets; counts
    what it received; close() stops it (its port then refuses)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        c.settimeout(30 * SCALE)
        try:
            while True:
                x = c.recv(65536)
                if not x:
                    break
                self.received += len(x)
                c.sendall(x)
        except OSError:
            pass
        c.close()

    def close(self):
        self.stop.set()
        self.thread.join(5 * SCALE)
        self.sock.close()


def echo_ok(port, payload=b"x" * 16):
    got = echo_once(port, payload, timeout=10)
    check(got == "made", "an echo connection: %s" % got)


# 1. promtool, every mode; HTTP and the control socket agree.

def test_promtool_every_mode():
    up = EchoUpstream()
    try:
        modes = [("shared", [{"name": "e", "listen": ["127.0.0.1:0"],
                              "mode": "shared"}]),
                 ("round-robin", [{"name": "e", "listen": ["127.0.0.1:0"],
                                   "mode": "round-robin"}]),
                 ("exclusive", [{"name": "e", "listen": ["127.0.0.1:0"],
                                 "mode": "exclusive"}]),
                 ("reuseport", [{"name": "e", "listen": ["127.0.0.1:0"],
                                 "mode": "reuseport"}]),
                 ("proxy", [{"name": "p", "handler": "proxy",
                             "listen": ["127.0.0.1:0"],
                             "upstream": ["127.0.0.1:%d" % up.port]}]),
                 ("proxy_protocol", [{"name": "pp", "handler": "proxy",
                                      "listen": ["127.0.0.1:0"],
                                      "proxy_protocol": True,
                                      "upstream": ["127.0.0.1:%d" %
                                                   up.port]}])]
        for mode, services in modes:
            d = with_health(services)
            try:
                d.wait_online()
                maddr, _ = endpoints(d)
                port = d.ctl("workers")["workers"][0]["listening"][0][
                    "port"]
                c = socket.create_connection(("127.0.0.1", port),
                                             timeout=10 * SCALE)
                if mode == "proxy_protocol":
                    c.sendall(b"not a PROXY header\r\n")
                else:
                    c.sendall(b"ping")
                try:
                    c.settimeout(10 * SCALE)
                    c.recv(64)
                except ConnectionResetError:    # the bad PROXY header
                    pass
                c.close()
                status, headers, body = http(maddr)
                check(status == 200 and headers.get("content-type") ==
                      "text/plain; version=0.0.4; charset=utf-8",
                      "%s: /metrics %d %s" % (mode, status, headers))
                promtool(body, "GET /metrics (%s)" % mode)
                text = ctl_text(d, "metrics")
                promtool(text, "netclusterctl metrics (%s)" % mode)
                js = d.ctl("metrics")
                check(js["ok"] is True, "metrics --json: %s" % js)
                a, b = shape(parse(body)), shape(parse(text))
                check(a == b, "%s: /metrics and netclusterctl metrics "
                      "differ: %s" % (mode, [k for k in set(a) | set(b)
                                             if a.get(k) != b.get(k)]))
                check(list(parse(body)) == [f["name"] for f in
                                            js["metrics"]],
                      "%s: --json families in another order" % mode)
                j = json_shape(js["metrics"])
                check(j == b, "%s: --json differs from the text: %s" % (
                    mode, [k for k in set(j) | set(b)
                           if j.get(k) != b.get(k)]))
                fams = parse(text)
                svc = services[0]["name"]
                want_mode = services[0].get("mode", "shared")
                check(fams["netcluster_connections_accepted_total"][1] != [],
                      "%s: no accepted_total sample" % mode)
                if mode == "round-robin":
                    check("netcluster_handoff_queue_length" in fams and
                          fams["netcluster_handoff_queue_length"][1],
                          "round-robin without a queue length sample")
                if mode.startswith("proxy"):
                    check(value(fams, "netcluster_upstream_up",
                                service=svc) == 1,
                          "%s: upstream not up" % mode)
                if mode == "proxy_protocol":
                    check(fams["netcluster_proxy_header_errors_total"][1],
                          "no proxy_header_errors_total sample")
                check(all(l.get("mode") == want_mode for l, _ in
                          fams["netcluster_connections_accepted_total"][1]),
                      "%s: mode labels %s" % (
                          mode, fams["netcluster_connections_accepted_total"]))
                print("  %s: %d families, %d samples; promtool passes on "
                      "both; ctl text and --json agree" % (
                          mode, len(fams), sum(len(s) for _, s in
                                               fams.values())))
            finally:
                d.stop()
    finally:
        up.close()


# 2. A real Prometheus reads exactly what was done.

class Prometheus:
    def __init__(self, target):
        self.dir = tempfile.mkdtemp(prefix="nc-prom.")
        conf = os.path.join(self.dir, "prometheus.yml")
        with open(conf, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: netcluster\n"
                    "    static_configs:\n      - targets: ['%s:%d']\n" %
                    target)
        self.port = free_port()
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + conf,
             "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port],
            stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, cwd=self.dir)

    def query(self, expr):
        """The value of expr's single sample, or None (no sample)."""
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (
            self.port, urllib.parse.urlencode({"query": expr}))
        with urllib.request.urlopen(url, timeout=10 * SCALE) as r:
            ans = json.load(r)
        check(ans["status"] == "success", "query %s: %s" % (expr, ans))
        res = ans["data"]["result"]
        check(len(res) <= 1, "query %s: %d samples" % (expr, len(res)))
        return float(res[0]["value"][1]) if res else None

    def try_query(self, expr):
        try:
            return self.query(expr)
        except (OSError, ValueError):
            return None

    def scraped_at(self):
        return self.try_query('timestamp(up{job="netcluster"})')

    def wait(self, expr, want=None, timeout=60):
        """Until expr reads want (bounded); then it must stay want over
        two more scrapes. expr may be a dict {expr: want}: all of them."""
        wants = expr if isinstance(expr, dict) else {expr: want}
        deadline = time.monotonic() + timeout * SCALE
        while True:
            check(self.proc.poll() is None, "prometheus exited:\n" +
                  self.tail())
            got = {e: self.try_query(e) for e in wants}
            if got == wants:
                break
            check(time.monotonic() < deadline, "read %s, want %s" % (
                got, wants))
            time.sleep(0.2)
        for _ in range(2):
            at = self.scraped_at()
            limit = time.monotonic() + 30 * SCALE
            while self.scraped_at() == at:
                check(time.monotonic() < limit, "no more scrapes")
                time.sleep(0.2)
            got = {e: self.query(e) for e in wants}
            check(got == wants, "read %s, then %s" % (wants, got))

    def tail(self):
        self.log.flush()
        with open(os.path.join(self.dir, "log"), "rb") as f:
            return f.read()[-2000:].decode("utf-8", "replace")

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20 * SCALE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_replaced(d, old_pids, timeout=30):
    """Until workers online number d.workers and none is in old_pids."""
    deadline = time.monotonic() + timeout * SCALE
    while True:
        pids = d.worker_pids()
        if len(pids) == d.workers and not set(pids) & set(old_pids):
            return pids
        check(time.monotonic() < deadline, "no replacement: %s" % pids)
        d.read_lines(0.1)


def test_prometheus_reads_exactly():
    up = EchoUpstream()
    d = with_health([{"name": "rr", "listen": ["127.0.0.1:0"],
                      "mode": "round-robin"},
                     {"name": "sh", "listen": ["127.0.0.1:0"],
                      "mode": "shared"},
                     {"name": "px", "handler": "proxy",
                      "listen": ["127.0.0.1:0"], "down_ms": 600000,
                      "upstream": ["127.0.0.1:%d" % up.port]}],
                    metrics={"listen": "127.0.0.1:0", "max_age_ms": 0})
    prom = None
    try:
        d.wait_online()
        maddr, _ = endpoints(d)
        prom = Prometheus(maddr)
        start = time.monotonic()
        prom.wait('up{job="netcluster"}', 1.0, timeout=90)
        first = time.monotonic() - start
        rr, sh, px = d.port(0), d.port(1), d.port(2)

        # N connections round-robin, M shared: each echoed, closed.
        n, m = 25, 17
        for _ in range(n):
            echo_ok(rr)
        for _ in range(m):
            echo_ok(sh)
        counts = {"sum(netcluster_handoffs_total)": float(n),
                  'netcluster_connections_accepted_total{service="rr"}':
                  float(n),
                  'netcluster_connections_accepted_total{service="sh"}':
                  float(m)}
        prom.wait(counts)

        # B bytes through the proxy, back from the echo upstream.
        payload = os.urandom(100000)
        c = socket.create_connection(("127.0.0.1", px), timeout=10 * SCALE)
        c.sendall(payload)
        got = b""
        while len(got) < len(payload):
            x = c.recv(65536)
            check(x, "proxy closed after %d bytes" % len(got))
            got += x
        check(got == payload, "proxy echo differs")
        c.close()
        b = len(payload)
        counts.update({
            'netcluster_upstream_sent_bytes_total{service="px"}': float(b),
            'netcluster_upstream_received_bytes_total{service="px"}':
            float(b),
            'netcluster_upstream_connect_failures_total{service="px"}': 0.0,
            'netcluster_upstream_up{service="px"}': 1.0})
        prom.wait(counts)
        check(up.received == b, "upstream got %d bytes" % up.received)

        # K kills, each replaced before the next.
        k = 3
        for i in range(k):
            pids = d.worker_pids()
            victim = pids[i % len(pids)]
            os.kill(victim, signal.SIGKILL)
            wait_replaced(d, [victim], timeout=60)
        counts.update({
            'sum(netcluster_worker_restarts_total{cause="signal",'
            'code="SIGKILL"})': float(k),
            "sum(netcluster_worker_restarts_total)": float(k)})
        prom.wait(counts)

        # R reloads, then one that fails; what came before survives.
        r = 2
        for i in range(r):
            old = d.worker_pids()
            ctl_text(d, "reload")
            wait_replaced(d, old, timeout=60)
        counts.update({'netcluster_reloads_total{result="success"}':
                       float(r),
                       'netcluster_reloads_total{result="failure"}': 0.0,
                       # Every service's workers: the generation r + 1.
                       "min(netcluster_generation)": float(r + 1),
                       "max(netcluster_generation)": float(r + 1)})
        prom.wait(counts)
        good = open(d.config).read()
        with open(d.config, "w") as f:
            f.write(good.replace('"workers": 2', '"workers": "two"'))
        p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "reload"],
                           capture_output=True, text=True,
                           timeout=30 * SCALE)
        with open(d.config, "w") as f:
            f.write(good)
        check(p.returncode != 0, "a bad reload passed: %s" % p.stdout)
        counts['netcluster_reloads_total{result="failure"}'] = 1.0
        prom.wait(counts)

        # The upstream taken down: one client, one connect that fails.
        up.close()
        c = socket.create_connection(("127.0.0.1", px), timeout=10 * SCALE)
        c.settimeout(10 * SCALE)
        check(read_to_eof(c) == b"", "the proxy answered without upstream")
        c.close()
        counts.update({
            'netcluster_upstream_connect_failures_total{service="px"}': 1.0,
            'netcluster_upstream_up{service="px"}': 0.0})
        prom.wait(counts)
        print("  prometheus: first scrape after %.1f s; %d round-robin "
              "(%d hand-offs), %d shared, %d bytes each way through the "
              "proxy, %d SIGKILLs, %d reloads + 1 failed, 1 connect "
              "failure with the upstream down: all exact" % (
                  first, n, n, m, b, k, r))
    finally:
        if prom is not None:
            prom.close()
        up.close()
        d.stop()


# 3. Hostile metrics clients; /ready, /live and the agent.

def storm_silent(addr, n, hold, conn):
    """n clients that connect and say nothing, held until hold is set."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(addr)
        except BlockingIOError:
            pass
        socks.append(s)
    conn.send(("ready", len(socks)))
    hold.wait(120)
    for s in socks:
        s.close()
    conn.send(("done", len(socks)))


def garbage(i):
    kind = i % 4
    if kind == 0:
        return random.randbytes(random.randint(1, 4096))
    if kind == 1:
        return b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 102400 + \
            b"\r\n\r\n"
    if kind == 2:
        return b"GET /metrics\r\n\r\n"
    return b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000" \
        b"\r\n\r\n" + b"b" * 1000


def storm_requests(addr, n, payload_of, timeout, conn):
    """n clients at once, each sends payload_of(i) and reads to EOF.
    Sends (answers by status line, failures, seconds)."""
    raise_nofile()
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    st = {}
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(addr)
        except BlockingIOError:
            pass
        st[s] = [payload_of(i), b""]
        sel.register(s, selectors.EVENT_WRITE)
    conn.send(("ready", n))
    answers = {}
    failures = {}
    deadline = start + timeout
    while st and time.monotonic() < deadline:
        for key, ev in sel.select(timeout=0.5):
            s = key.fileobj
            out, got = st[s]
            try:
                if ev & selectors.EVENT_WRITE:
                    k = s.send(out)
                    st[s][0] = out = out[k:]
                    if not out:
                        sel.modify(s, selectors.EVENT_READ)
                    continue
                x = s.recv(65536)
                if x:
                    st[s][1] += x
                    continue
                line = st[s][1].split(b"\r\n", 1)[0][:12].decode(
                    "latin-1") or "closed"
                answers[line] = answers.get(line, 0) + 1
            except OSError as e:
                name = type(e).__name__
                failures[name] = failures.get(name, 0) + 1
            sel.unregister(s)
            s.close()
            del st[s]
    if st:
        failures["unanswered"] = len(st)
    for s in st:
        s.close()
    conn.send(("done", (answers, failures, time.monotonic() - start)))


def settle(d, base_fds, what, timeout=40):
    """Until the master's fds are back to base_fds (bounded)."""
    deadline = time.monotonic() + timeout * SCALE
    start = time.monotonic()
    while True:
        n = d.settled_fd_count()
        if n <= base_fds:
            return time.monotonic() - start
        check(time.monotonic() < deadline, "%s: the master holds %d fds, "
              "%d before" % (what, n, base_fds))
        d.read_lines(0.2)


def run_storm(d, target, args, what, timeout=180):
    """target(*args, conn) in a process of its own; while it runs, the
    control socket is asked for status every 100 ms. Returns (what the
    storm sent back, control latencies)."""
    ours, theirs = multiprocessing.Pipe()
    p = multiprocessing.Process(target=target, args=args + (theirs,))
    p.start()
    lat = []
    result = None
    try:
        check(ours.poll(60 * SCALE), "%s: the storm did not start" % what)
        check(ours.recv()[0] == "ready", "storm")
        deadline = time.monotonic() + timeout * SCALE
        while result is None:
            check(time.monotonic() < deadline, "%s: storm unfinished" % what)
            reply, took = control(d, {"command": "status"})
            check(reply.get("ok") is True, "status: %s" % reply)
            lat.append(took)
            if hasattr(args[-1], "set") and len(lat) >= 20:
                args[-1].set()         # a held storm: let it go
            if ours.poll(0.1):
                result = ours.recv()[1]
            d.read_lines(0)
    finally:
        p.join(30 * SCALE)
        if p.is_alive():
            p.kill()
            p.join()
    return result, lat


def test_hostile_metrics_clients():
    d = with_health([{"name": "e", "listen": ["127.0.0.1:0"],
                      "mode": "round-robin"}], env=no_quarantine())
    try:
        d.wait_online()
        maddr, _ = endpoints(d)
        for _ in range(20):              # evhttp's and libevent's first use
            check(http(maddr)[0] == 200, "warm-up")
        deadline = time.monotonic() + 20 * SCALE
        while value(parse(ctl_text(d, "metrics")),
                    "netcluster_metrics_clients") != 0:
            check(time.monotonic() < deadline, "warm-up clients stay")
            d.read_lines(0.2)
        base_fds = d.settled_fd_count()
        base_rss = d.rss_kib()
        report = ["baseline %d fds, %d KiB RSS" % (base_fds, base_rss)]
        worst = 0.0
        every = []                      # every control latency
        ctx = multiprocessing.get_context("fork")

        # (a) 200 silent clients, held through 20 status requests.
        hold = ctx.Event()
        res, lat = run_storm(d, storm_silent, (maddr, 200, hold), "silent")
        back = settle(d, base_fds, "silent clients")
        worst = max(worst, max(lat))
        every.extend(lat)
        report.append("200 silent: control max %.1f ms over %d, fds back "
                      "in %.1f s, RSS %d KiB" % (max(lat) * 1000, len(lat),
                                                 back, d.rss_kib()))

        # (b) 200 garbage clients.
        res, lat = run_storm(d, storm_requests, (maddr, 200, garbage,
                                                 60 * SCALE), "garbage")
        answers, failures, took = res
        check(not any(k.endswith(" 200") or "200 OK" in k for k in answers),
              "garbage got a 200: %s" % answers)
        back = settle(d, base_fds, "garbage clients")
        worst = max(worst, max(lat))
        every.extend(lat)
        report.append("200 garbage (%s %s) in %.1f s: control max %.1f ms "
                      "over %d, fds back in %.1f s, RSS %d KiB" % (
                          answers, failures, took, max(lat) * 1000,
                          len(lat), back, d.rss_kib()))

        # (c) 10,000 GET /metrics at once.
        n = 10000
        res, lat = run_storm(d, storm_requests, (
            maddr, n, lambda i: b"GET /metrics HTTP/1.0\r\n\r\n",
            150 * SCALE), "10,000 requests")
        answers, failures, took = res
        ok = answers.get("HTTP/1.0 200", 0) + answers.get("HTTP/1.1 200", 0)
        back = settle(d, base_fds, "10,000 requests")
        worst = max(worst, max(lat))
        every.extend(lat)
        rss = d.rss_kib()
        report.append("%d GET /metrics at once: %d answered 200 in %.1f s "
                      "(%s %s); control max %.1f ms over %d, median %.1f "
                      "ms; fds back in %.1f s, RSS %d KiB (%+d)" % (
                          n, ok, took, answers, failures, max(lat) * 1000,
                          len(lat), sorted(lat)[len(lat) // 2] * 1000, back,
                          rss, rss - base_rss))
        print("  " + "\n  ".join(report))
        # Every one answered: a storm waits in the backlog, nothing lost.
        # (With the backlog 128 deep, the clients past it waited on the
        # kernel's retransmissions: an ASan build took 127 s and the
        # kernel reset those it held past a minute.)
        check(ok == n and not failures,
              "%d of %d requests answered 200: %s %s" % (
                  ok, n, answers, failures))
        # The master answers its control socket through the storms: half
        # the answers within 100 ms and none past 1 s (scaled). The
        # latency is the test's own, as a client sees it: on a machine
        # loaded well past its cores the client's own waits for a CPU
        # (500 ms seen) are in it, hence the median.
        mid = sorted(every)[len(every) // 2]
        check(mid < 0.100 * SCALE and worst < 1.0 * SCALE,
              "the control socket took %.1f ms at most, %.1f ms the median "
              "of %d, during the storms" % (worst * 1000, mid * 1000,
                                            len(every)))
        check(rss - base_rss <= (8192 if ASAN else 2048),
              "RSS %d KiB, %d before" % (rss, base_rss))
    finally:
        d.stop()


def agent_line(addr):
    c = socket.create_connection(addr, timeout=10 * SCALE)
    c.settimeout(10 * SCALE)
    try:
        return read_to_eof(c).decode()
    finally:
        c.close()


def test_ready_live_agent():
    d = with_health([{"name": "e", "listen": ["127.0.0.1:0"],
                      "mode": "shared"}],
                    agent={"listen": "127.0.0.1:0", "weight": 50})
    try:
        d.wait_online()
        maddr, aaddr = endpoints(d)
        # A storm waits in a backlog 4096 deep (or net.core.somaxconn's).
        with open("/proc/sys/net/core/somaxconn") as f:
            deep = min(4096, int(f.read()))
        for what, addr in (("metrics", maddr), ("agent", aaddr)):
            n = listen_backlog(addr)
            check(n == deep, "the %s listener's backlog is %d, not %d" % (
                what, n, deep))
        print("  metrics and agent listeners: backlog %d" % deep)
        for method in ("GET", "HEAD"):
            for path, code, body in (("/ready", 200, "ready\n"),
                                     ("/live", 200, "live\n"),
                                     ("/nope", 404, None),
                                     ("/metrics", 200, None)):
                status, headers, got = http(maddr, method, path)
                check(status == code, "%s %s: %d" % (method, path, status))
                if method == "HEAD":
                    check(got == "", "HEAD %s has a body %r" % (path, got))
                    check(int(headers.get("content-length", -1)) > 0,
                          "HEAD %s: %s" % (path, headers))
                elif body is not None:
                    check(got == body, "%s %s: %r" % (method, path, got))
        for method in ("POST", "PUT", "DELETE"):
            for path in ("/metrics", "/ready"):
                status, headers, _ = http(maddr, method, path)
                check(status == 405 and headers.get("allow") == "GET, HEAD",
                      "%s %s: %d %s" % (method, path, status, headers))
        check(agent_line(aaddr) == "up ready 50%\n", "agent: %r" %
              agent_line(aaddr))
        out = ctl_text(d, "drain")
        st = d.ctl("status")
        check(st["draining"] is True and st["ready"] is False,
              "status after drain: %s" % st)
        check(http(maddr, "GET", "/ready")[:3:2] == (503, "draining\n"),
              "/ready while draining: %s" % (http(maddr, "GET", "/ready"),))
        check(http(maddr, "GET", "/live")[0] == 200, "/live while draining")
        check(agent_line(aaddr) == "drain #draining\n", "agent draining")
        check(value(parse(ctl_text(d, "metrics")), "netcluster_draining")
              == 1, "netcluster_draining not 1")
        echo_ok(d.port())              # nothing is refused
        ctl_text(d, "undrain")
        check(http(maddr, "GET", "/ready")[:3:2] == (200, "ready\n"),
              "/ready after undrain")
        check(agent_line(aaddr) == "up ready 50%\n", "agent after undrain")
        print("  GET/HEAD /ready /live /nope /metrics, 405 for POST PUT "
              "DELETE; drain: %r" % out.strip())
    finally:
        d.stop()
    d = with_health([echo_service_shared()])
    try:
        d.wait_online()
        _, aaddr = endpoints(d)
        check(agent_line(aaddr) == "up ready\n", "agent without weight")
    finally:
        d.stop()


def echo_service_shared():
    return {"name": "e", "listen": ["127.0.0.1:0"], "mode": "shared"}


# 4. Reloads and an upgrade keep the listener and its counters.

class Prober:
    """GET /live on addr in a loop until stopped: what became of each."""

    def __init__(self, addr):
        self.addr = addr
        self.stats = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop.is_set():
            try:
                key = "ok" if http(self.addr, "GET", "/live")[0] == 200 \
                    else "bad"
            except Failure:
                key = "bad"
            except ConnectionRefusedError:
                key = "refused"
            except OSError:
                key = "error"
            self.stats[key] = self.stats.get(key, 0) + 1

    def finish(self):
        self.stop.set()
        self.thread.join(30 * SCALE)
        return dict(self.stats)


def test_reload_upgrade_keep_listener():
    bindir = tempfile.mkdtemp(prefix="nc-bin.")
    path = os.path.join(bindir, "netclusterd")
    shutil.copy(NETCLUSTERD, path)
    d = with_health([echo_service_shared()], binary=path)
    try:
        d.wait_online()
        maddr, _ = endpoints(d)
        probe = Prober(maddr)
        for _ in range(2):
            old = d.worker_pids()
            ctl_text(d, "reload")
            wait_replaced(d, old, timeout=60)
        check(endpoints(d)[0] == maddr, "the metrics listener moved")
        before = parse(ctl_text(d, "metrics"))
        check(value(before, "netcluster_reloads_total", result="success")
              == 2, "reloads_total")
        tmp = path + ".new"
        shutil.copy(NEXT, tmp)
        os.rename(tmp, path)
        p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "upgrade"],
                           capture_output=True, text=True,
                           timeout=60 * SCALE)
        check(p.returncode == 0, "upgrade: %s %s" % (p.stdout, p.stderr))
        d.wait_online(d.workers * 4, timeout=60)
        stats = probe.finish()
        check(endpoints(d)[0] == maddr, "the metrics listener moved")
        status, _, body = http(maddr)
        check(status == 200, "/metrics after the upgrade: %d" % status)
        after = parse(body)
        check(value(after, "netcluster_upgrades_total", result="success")
              == 1, "upgrades_total %s" % (after["netcluster_upgrades_total"],))
        check(value(after, "netcluster_reloads_total", result="success")
              == 2, "reloads_total after the upgrade: %s" %
              (after["netcluster_reloads_total"],))
        version = after["netcluster_build_info"][1][0][0]["version"]
        check(version.endswith("+next"), "build_info version %s" % version)
        check(set(stats) == {"ok"} and stats["ok"] > 0,
              "GET /live through 2 reloads and an upgrade: %s" % stats)

        # Another address: the old one refuses, the new one answers.
        conf = json.load(open(d.config))
        sock = os.path.join(d.dir, "metrics.sock")
        conf["metrics"] = {"listen": "unix:" + sock}
        with open(d.config, "w") as f:
            json.dump(conf, f)
        old = d.worker_pids()
        ctl_text(d, "reload")
        wait_replaced(d, old, timeout=60)
        check(d.ctl("status")["metrics"] == "unix:" + sock or
              sock in d.ctl("status")["metrics"], "status: %s" %
              d.ctl("status")["metrics"])
        check(http(sock, "GET", "/live")[0] == 200, "the new address")
        try:
            http(maddr, "GET", "/live")
            raise Failure("the old metrics address still answers")
        except ConnectionRefusedError:
            pass
        print("  GET /live through 2 reloads and an upgrade to %s: %s; "
              "moved to %s" % (version, stats, sock))
    finally:
        d.stop()
        shutil.rmtree(bindir)


# 5. Requests and configs refused, naming what is wrong.

def socket_inodes(pid):
    """The inodes of the sockets pid holds."""
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(int(link[8:-1]))
    return out


def tcp_inode(local_port, remote_port):
    """The inode of the IPv4 TCP socket local_port <-> remote_port."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            field = line.split()
            if (int(field[1].split(":")[1], 16) == local_port and
                    int(field[2].split(":")[1], 16) == remote_port):
                return int(field[9])
    return None


def test_clients_stay_in_the_master():
    """A worker started while metrics and agent clients are connected
    holds none of their sockets (they are close-on-exec)."""
    d = with_health([echo_service_shared()])
    try:
        d.wait_online()
        maddr, aaddr = endpoints(d)
        c = socket.create_connection(maddr, timeout=10 * SCALE)
        deadline = time.monotonic() + 10 * SCALE
        while value(parse(ctl_text(d, "metrics")),
                    "netcluster_metrics_clients") < 1:
            check(time.monotonic() < deadline, "the client is not in")
            d.read_lines(0.1)
        inode = tcp_inode(maddr[1], c.getsockname()[1])
        check(inode is not None and inode in socket_inodes(d.proc.pid),
              "the master does not hold the metrics client's socket")
        old = d.worker_pids()
        os.kill(old[0], signal.SIGKILL)
        new = [p for p in wait_replaced(d, old[:1]) if p not in old]
        check(len(new) == 1, "replacement: %s" % new)
        check(inode not in socket_inodes(new[0]),
              "worker %d holds the metrics client's socket" % new[0])
        c.close()
        print("  a worker started with a metrics client connected holds "
              "no socket of it")
    finally:
        d.stop()


def ctl_exit(d, *args):
    p = subprocess.run([NETCLUSTERCTL, "-s", d.control] + list(args),
                       capture_output=True, text=True, timeout=30 * SCALE)
    return p.returncode, p.stdout, p.stderr


def test_drain_wait():
    """drain --wait: bounded by shutdown_timeout_ms; done only once no
    connection is open and the agent has told a balancer; status says
    where the listeners are and that it drains."""
    d = with_health([echo_service_shared()],
                    extra={"shutdown_timeout_ms": 1500})
    try:
        d.wait_online()
        maddr, aaddr = endpoints(d)
        text = ctl_text(d, "status")
        check("metrics on 127.0.0.1:%d\n" % maddr[1] in text and
              "agent-check on 127.0.0.1:%d\n" % aaddr[1] in text and
              "draining" not in text, "status: %s" % text)
        # Nobody asks the agent: the bound passes, and it says why.
        rc, out, err = ctl_exit(d, "drain", "--wait")
        check(rc == 1 and "no balancer asked the agent (127.0.0.1:%d) "
              "within 1500 ms" % aaddr[1] in err, "drain --wait: %d %r %r"
              % (rc, out, err))
        check("draining: the balancer is told to send nothing new\n" in
              ctl_text(d, "status"), "status does not say it drains")
        check(d.ctl("status")["agent_told_drain"] is False,
              "agent_told_drain before the agent answered")
        check(agent_line(aaddr) == "drain #draining\n", "agent")
        check(d.ctl("status")["agent_told_drain"] is True,
              "agent_told_drain after the agent answered")
        # A connection open: the bound passes, and it says how many.
        c = socket.create_connection(addr_of(d.ctl("status")["services"][0]
                                             ["listeners"][0]["bound"]),
                                     timeout=10 * SCALE)
        check(c.recv(64).startswith(b"hello"), "no greeting")
        rc, out, err = ctl_exit(d, "drain", "--wait")
        if not (rc == 1 and "1 connection still open after 1500 ms" in err):
            # Whether the server still holds it, and what the log says.
            c.setblocking(False)
            try:
                held = "closed by it" if c.recv(64) == b"" else "open"
            except BlockingIOError:
                held = "open"
            except OSError as e:
                held = "reset (%s)" % e
            d.read_lines(0.5)
            raise Failure("drain --wait with one open: %d %r %r; the "
                          "connection: %s; log:\n%s" % (
                              rc, out, err, held, "\n".join(d.lines[-30:])))
        c.close()
        rc, out, err = ctl_exit(d, "drain", "--wait")
        check(rc == 0 and out.startswith("draining") and "drained: no "
              "connection open after" in out, "drain --wait: %d %r %r" %
              (rc, out, err))
        # --stop: then the master stops cleanly.
        rc, out, err = ctl_exit(d, "drain", "--wait", "--stop")
        check(rc == 0 and out.rstrip().endswith("stopping"),
              "drain --wait --stop: %d %r %r" % (rc, out, err))
        check(d.proc.wait(30 * SCALE) == 0, "the master did not exit 0")
        print("  drain --wait: bounded with nobody asking the agent and "
              "with a connection open; drained, then --stop stopped it")
    finally:
        d.stop()


def test_last_words_count():
    """Connections a worker took after its last count answer still reach
    the totals when it stops: its last words carry its counters. N
    connections, no count round, a reload; once the old workers are
    gone, accepted_total is N."""
    d = with_health([echo_service_shared()])
    try:
        d.wait_online()
        port = d.port()
        n = 30
        ok, bad = echo_clients(("127.0.0.1", port), n)
        check(ok == n and not bad, "clients: %s" % bad[:3])
        ctl_text(d, "reload")
        d.wait_log("after draining", d.workers)
        got = value(parse(ctl_text(d, "metrics")),
                    "netcluster_connections_accepted_total", service="e")
        check(got == n, "accepted_total %s after the reload, %d made" %
              (got, n))
        print("  %d connections, a reload: accepted_total %d from the old "
              "workers' last words" % (n, got))
    finally:
        d.stop()


def test_out_of_fds():
    """Out of fds, the metrics and agent listeners rest and retry (never
    spin, never crash), count the pause, and serve again once fds are
    back."""
    d = with_health([echo_service_shared()])
    try:
        d.wait_online()
        maddr, aaddr = endpoints(d)
        pid = d.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        # The agent first: it keeps no fd, where an HTTP client's is let
        # go up to a sweep later, and would free one under the limit.
        for what, addr in (("agent", aaddr), ("metrics", maddr)):
            # Every control client gone, and then at its lowest free fd,
            # no accept() can have an fd.
            d.settled_fd_count()
            held = {int(f) for f in os.listdir("/proc/%d/fd" % pid)}
            lowest = min(n for n in range(len(held) + 1) if n not in held)
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest, hard))
            try:
                c = socket.create_connection(addr, timeout=10 * SCALE)
                d.wait_log("%s: accept: Too many open files; pausing" %
                           what)
            finally:
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
            d.wait_log("%s: accepting again after" % what)
            if what == "metrics":
                c.sendall(b"GET /live HTTP/1.0\r\n\r\n")
            got = read_to_eof(c)
            c.close()
            check(got.startswith(b"HTTP/1.0 200") if what == "metrics"
                  else got == b"up ready\n", "%s after the pause: %r" %
                  (what, got[:80]))
        m = parse(ctl_text(d, "metrics"))
        for what in ("metrics", "agent"):
            check(value(m, "netcluster_accept_pauses_total", socket=what)
                  == 1, "accept_pauses %s: %s" % (
                      what, m["netcluster_accept_pauses_total"]))
        print("  out of fds: the metrics and agent listeners paused once "
              "each and served the waiting client after")
    finally:
        d.stop()


def test_refused_requests_and_configs():
    d = with_health([echo_service_shared()])
    try:
        d.wait_online()
        r, _ = control(d, {"command": "metrics", "format": "xml"})
        check(r.get("ok") is False and "format" in r.get("error", ""),
              "metrics format xml: %s" % r)
        r, _ = control(d, {"command": "drain", "format": "text"})
        check(r.get("ok") is False and "format" in r.get("error", ""),
              "drain with a format: %s" % r)
        check(d.ctl("status")["draining"] is False, "drained anyway")
        r, _ = control(d, {"command": "metrics", "format": "json"})
        check(r.get("ok") is True and r["metrics"], "metrics json: %s" % r)
    finally:
        d.stop()
    tmp = tempfile.mkdtemp(prefix="nc-conf.")
    try:
        svc = {"name": "e", "listen": ["127.0.0.1:%d" % free_port()],
               "mode": "shared"}
        cases = [("metrics.listen", {"metrics": {}}),
                 ("metrics.listen", {"metrics": {"listen":
                                                 svc["listen"][0]}}),
                 ("agent.weight", {"agent": {"listen": "127.0.0.1:0",
                                             "weight": 300}}),
                 ("metrics.nope", {"metrics": {"listen": "127.0.0.1:0",
                                               "nope": 1}})]
        for key, extra in cases:
            conf = {"workers": 1, "control_socket":
                    os.path.join(tmp, "c.sock"), "services": [svc]}
            conf.update(extra)
            path = os.path.join(tmp, "netcluster.json")
            with open(path, "w") as f:
                json.dump(conf, f)
            p = subprocess.run([NETCLUSTERD, "-t", "-c", path],
                               capture_output=True, text=True,
                               timeout=30 * SCALE)
            check(p.returncode == 1 and all(k in p.stderr for k in
                                            key.split(".")),
                  "-t on %s: %d %r" % (extra, p.returncode, p.stderr))
            print("  %s: %s" % (key, p.stderr.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    run([test_promtool_every_mode, test_ready_live_agent,
         test_refused_requests_and_configs, test_reload_upgrade_keep_listener,
         test_clients_stay_in_the_master, test_drain_wait,
         test_last_words_count, test_out_of_fds,
         test_prometheus_reads_exactly,
         test_hostile_metrics_clients])
