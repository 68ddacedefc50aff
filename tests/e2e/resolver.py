#!/usr/bin/env python3
"""A reload never blocks the master's loop on a name server. The test
makes a network namespace of its own whose only name server is a black
hole (a UDP socket on 127.0.0.1:53 that reads queries and never answers)
and runs netclusterd, the black hole and every client inside it. Once the
daemon is online, the configuration names a host only DNS could resolve
(a listener's host, then a proxy's upstream), and while `netclusterctl
reload` waits on the check, round-robin connections are handed off and
control requests answered, each promptly. The reload then fails after
the 5 s bound (NC_CONFIG_RESOLVE_MS), naming the host, and the old
workers go on serving.

Run as root: the namespace needs CAP_SYS_ADMIN. The outer process makes
the namespace and /etc/netns/NAME (resolv.conf, hosts, nsswitch.conf,
which `ip netns exec` mounts over /etc's), runs this file again inside
it with --inner, and removes both whatever happened."""

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, NETCLUSTERCTL, SCALE, check, echo_once,
                     echo_service, run)

THIS = os.path.abspath(__file__)
RESOLVE_MS = 5000               # NC_CONFIG_RESOLVE_MS
PROMPT = 1.0 * SCALE            # a hand-off or a control answer, at most
MIN_SERVED = 10                 # of each, while the name server hangs

# Reads queries on 127.0.0.1:53 and never answers; prints "ready", then
# "MONOTONIC NAME" per query. Gone after 120 s without a query.
BLACK_HOLE = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
s.settimeout(120)
print("ready", flush=True)
while True:
    try:
        q, _ = s.recvfrom(4096)
    except socket.timeout:
        sys.exit(0)
    t = time.monotonic()
    labels, i = [], 12
    while i < len(q) and q[i] != 0 and len(labels) < 64:
        labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
        i += 1 + q[i]
    print("%.6f %s" % (t, ".".join(labels)), flush=True)
"""


class BlackHole:
    """The name server that never answers, and the queries it got."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", BLACK_HOLE],
                                     stdout=subprocess.PIPE)
        self.buf = b""
        self.queries = []       # (monotonic time, name)
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + 10 * SCALE
        try:
            while b"\n" not in self.buf:
                left = deadline - time.monotonic()
                check(left > 0 and self.proc.poll() is None,
                      "the black hole did not bind 127.0.0.1:53")
                if select.select([fd], [], [], left)[0]:
                    self.buf += os.read(fd, 65536)
            line, self.buf = self.buf.split(b"\n", 1)
            check(line == b"ready", "black hole: %r" % line)
        except BaseException:
            self.stop()
            raise
        os.set_blocking(fd, False)

    def read(self):
        """Takes the queries reported so far."""
        while True:
            try:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.buf += chunk
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            t, name = line.decode().split(" ", 1)
            self.queries.append((float(t), name))

    def asked(self, host):
        """When host was first asked for, or None."""
        self.read()
        times = [t for t, name in self.queries if name == host]
        return min(times) if times else None

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def handoff(port):
    """One round-robin connection, greeted and echoed: its latency."""
    start = time.monotonic()
    got = echo_once(port)
    check(got == "made", "a hand-off: %s" % got)
    return time.monotonic() - start


def status(d):
    """One `netclusterctl status`, answered: its latency."""
    start = time.monotonic()
    p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "--json", "status"],
                       capture_output=True, text=True, timeout=5 * SCALE)
    took = time.monotonic() - start
    check(p.returncode == 0, "status: %d %s" % (p.returncode, p.stderr))
    check(json.loads(p.stdout)["services"], "status: no services")
    return took


def reload_on_a_silent_name(edit, host, what):
    """edit(conf) names host; the reload must fail after the bound while
    the loop serves. Returns nothing; prints the figures."""
    hole = BlackHole()
    d = None
    reload = None
    try:
        d = Daemon([echo_service("round-robin")], workers=2)
        d.wait_online()
        port = d.port()
        pids = sorted(d.worker_pids())
        handoff(port)
        good = open(d.config).read()
        conf = json.loads(good)
        edit(conf)
        with open(d.config, "w") as f:
            json.dump(conf, f)
        start = time.monotonic()
        reload = subprocess.Popen([NETCLUSTERCTL, "-s", d.control,
                                   "reload"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        served = []             # (kind, started, ended, latency)
        deadline = start + (RESOLVE_MS / 1000 + 20) * SCALE
        while reload.poll() is None:
            check(time.monotonic() < deadline, "the reload never answered")
            for kind, fn in (("handoff", lambda: handoff(port)),
                             ("status", lambda: status(d))):
                t0 = time.monotonic()
                took = fn()
                served.append((kind, t0, time.monotonic(), took))
            d.read_lines(0)
        ended = time.monotonic()
        out, err = reload.communicate(timeout=10 * SCALE)
        took = ended - start
        asked = hole.asked(host)
        check(asked is not None, "the name server was never asked for %s "
              "(queries: %s); is nscd answering?" % (host, hole.queries))
        want = "cannot resolve %s: no answer within %d ms" % (host,
                                                            RESOLVE_MS)
        check(reload.returncode != 0 and
              err.startswith("netclusterctl: reload failed: ") and
              want in err, "reload: %d %r %r" % (reload.returncode, out, err))
        check(RESOLVE_MS / 1000 - 0.1 <= took <= RESOLVE_MS / 1000 +
              2 * SCALE, "the reload failed after %.2f s" % took)
        # What was served while the name server hung.
        hang = [s for s in served if s[1] >= asked and s[2] <= ended]
        for kind in ("handoff", "status"):
            mine = [s[3] for s in hang if s[0] == kind]
            check(len(mine) >= MIN_SERVED, "%d %s answered during the %.1f "
                  "s hang" % (len(mine), kind, ended - asked))
        worst = max(s[3] for s in served)
        check(worst <= PROMPT, "an answer took %.3f s (at most %.1f s): %s"
              % (worst, PROMPT, sorted(served, key=lambda s: -s[3])[:3]))
        # The old workers stay and serve; the log says why.
        d.wait_log("reload failed, the running configuration stays")
        line = [l for l in d.lines if "reload failed" in l][-1]
        check(want in line, "log: %r" % line)
        check(sorted(d.worker_pids()) == pids, "workers replaced: %s, now "
              "%s" % (pids, d.worker_pids()))
        handoff(port)
        # Nothing was left half-done: the next reload goes through.
        with open(d.config, "w") as f:
            f.write(good)
        p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "reload"],
                           capture_output=True, text=True,
                           timeout=60 * SCALE)
        check(p.returncode == 0, "good reload after: %s" % p.stderr)
        n = {k: sum(s[0] == k for s in hang) for k in ("handoff", "status")}
        w = {k: max([s[3] for s in hang if s[0] == k]) * 1000
             for k in ("handoff", "status")}
        print("  %s %s: the reload failed after %.2f s; during the %.2f s "
              "the name server hung, %d hand-offs (worst %.1f ms) and %d "
              "status answers (worst %.1f ms); queries that reached it: "
              "%d\n    %s" % (
                  what, host, took, ended - asked, n["handoff"],
                  w["handoff"], n["status"], w["status"],
                  sum(q[1] == host for q in hole.queries), err.strip()))
    finally:
        if reload is not None and reload.poll() is None:
            reload.kill()
            reload.wait()
        if d is not None:
            d.stop()
        hole.stop()


def test_listen_host():
    """A listener's host: resolved by the check (both families)."""
    host = "nosuch.example.test"

    def edit(conf):
        conf["services"][0]["listen"] = ["%s:0" % host]
    reload_on_a_silent_name(edit, host, "listen")


def test_upstream_host():
    """A proxy's upstream, in a service the reload adds."""
    host = "upstream.example.test"

    def edit(conf):
        conf["services"].append({"name": "proxy", "handler": "proxy",
                                 "listen": ["127.0.0.1:0"],
                                 "upstream": ["%s:80" % host]})
    reload_on_a_silent_name(edit, host, "upstream")


def inner():
    """In the namespace: loopback up, the resolver as the outer wrote it."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    conf = open("/etc/resolv.conf").read()
    check("nameserver 127.0.0.1" in conf, "resolv.conf: %r" % conf)
    run([test_listen_host, test_upstream_host])


def outer():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("skipped: needs root and ip(8) for a network namespace")
        sys.exit(77)
    name = "ncres-%s" % os.urandom(4).hex()
    etc = os.path.join("/etc/netns", name)
    made_netns = not os.path.isdir("/etc/netns")
    added = False
    rc = 1
    try:
        subprocess.run(["ip", "netns", "add", name], check=True)
        added = True
        os.makedirs(etc)
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:30 attempts:1\n")
        # Mounted over /etc's only where there is one to mount over.
        if os.path.exists("/etc/hosts"):
            with open(os.path.join(etc, "hosts"), "w") as f:
                f.write("127.0.0.1 localhost\n::1 localhost\n")
        if os.path.exists("/etc/nsswitch.conf"):
            with open(os.path.join(etc, "nsswitch.conf"), "w") as f:
                f.write("hosts: files dns\n")
        p = subprocess.Popen(["ip", "netns", "exec", name, sys.executable,
                              THIS, "--inner"], start_new_session=True)
        try:
            rc = p.wait(timeout=120 * SCALE)
        except subprocess.TimeoutExpired:
            print("FAIL: the test in namespace %s took more than %d s" % (
                name, 120 * SCALE))
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    finally:
        if added:
            subprocess.run(["ip", "netns", "del", name])
        shutil.rmtree(etc, ignore_errors=True)
        if made_netns:
            try:
                os.rmdir("/etc/netns")
            except OSError:
                pass
    sys.exit(rc)


if len(sys.argv) > 1 and sys.argv[1] == "--inner":
    inner()
else:
    outer()
