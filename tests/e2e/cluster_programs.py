"""Programs linked with libnetcluster as workers ("handler": "program",
"sockets": "cluster"): examples/cluster-echo, unchanged, in shared,
round-robin, reuseport and exclusive mode. In each mode traffic reaches
every worker (the library's "accepted" count says so); a worker killed
with SIGKILL is replaced and the new one serves; 20 reloads under load
lose no connection (exclusive too: each slot keeps its socket and port);
a stop drains (each worker hears "disconnecting",
closes its server, and exits 0 once its connection ends, before the
timeout). Messages: a worker's broadcasts reach every other worker of
its generation, in order, not itself; broadcast-all reaches a draining
older generation too, broadcast does not; netclusterctl send reaches
every worker, and is refused for an unknown service, a message that is
not JSON and a program without a channel. An upgrade adopts the workers
with their channels. netclusterd -t accepts the service in round-robin
and exclusive mode, and the example still runs alone, without
netclusterd."""

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILD, Daemon, NETCLUSTERCTL, NETCLUSTERD, SCALE, check,
                     echo_clients, run)
from harness import reloads_under_load as harness_reloads

HERE = os.path.dirname(os.path.abspath(__file__))
# The libtool wrapper execs the real binary: the worker's pid is its own.
CLUSTER_ECHO = os.path.join(BUILD, "examples", "cluster-echo")
DURATION = 10.0         # seconds of load
RELOADS = 20
THREADS = 8
# Long enough that a worker killed at the timeout would show; each wait
# of the test is far shorter.
SHUTDOWN_MS = 60000 * SCALE

MSG = re.compile(r"worker (\d+) \[pid (\d+)\]: worker (\d+): message from "
                 r"(?:worker (\d+)|the operator): (.*)$")


def ce_service(mode, **kw):
    s = {"name": "ce", "handler": "program", "sockets": "cluster",
         "mode": mode, "listen": ["127.0.0.1:0"],
         "command": [CLUSTER_ECHO, "-p", "0", "-h", "127.0.0.1"]}
    s.update(kw)
    return s


def ce_daemon(mode, workers):
    return Daemon([ce_service(mode)], workers=workers,
                  extra={"shutdown_timeout_ms": SHUTDOWN_MS})


def ctl_text(d, *args):
    """netclusterctl without --json: the CompletedProcess."""
    return subprocess.run([NETCLUSTERCTL, "-s", d.control] + list(args),
                          capture_output=True, text=True, timeout=30 * SCALE)


def online(d):
    return [w for w in d.ctl("workers")["workers"] if w["state"] == "online"]


def wait_workers(d, mode, exclude=(), timeout=20):
    """Until d.workers workers are online, none of the pids in exclude,
    each listening on the service's one listener: on its own port in
    exclusive mode, on the master's otherwise. Returns them."""
    deadline = time.monotonic() + timeout * SCALE
    while True:
        ws = online(d)
        if (len(ws) == d.workers and not {w["pid"] for w in ws} &
                set(exclude) and all(len(w["listening"]) == 1 for w in ws)):
            break
        check(time.monotonic() < deadline, "workers not online: %s" % ws)
        d.read_lines(0.1)
    ports = [w["listening"][0]["port"] for w in ws]
    check(all(w["listening"][0]["service"] == "ce" and
              w["listening"][0]["address"] == "127.0.0.1" for w in ws),
          "listening %s" % [w["listening"] for w in ws])
    if mode == "exclusive":
        check(all(p > 0 for p in ports) and len(set(ports)) == len(ports),
              "exclusive ports %s" % ports)
        check(d.ctl("status")["services"][0]["listeners"][0]["port"] == -1,
              "exclusive listener has a port of its own")
    else:
        check(ports == [d.port()] * len(ws), "ports %s, the service's %d" %
              (ports, d.port()))
    return ws


def check_exclusive_ports_kept(d, before):
    """exclusive: each slot keeps its socket, and so its port, across its
    workers' restarts and reloads."""
    ws = d.ctl("workers")["workers"]
    after = {w["slot"]: w["listening"][0]["port"] for w in ws}
    check(after == before, "ports by slot %s, before %s" % (after, before))


def targets(d, mode, ws):
    """Where clients connect: each worker's port, or the service's."""
    if mode == "exclusive":
        return [w["listening"][0]["port"] for w in ws]
    return [d.port()]


def reach_all(d, mode, ws, timeout=30):
    """Echo clients until every worker in ws accepted some; returns how
    many connections it took."""
    deadline = time.monotonic() + timeout * SCALE
    pids = {w["pid"] for w in ws}
    made = 0
    while True:
        for port in targets(d, mode, ws):
            ok, failures = echo_clients(("127.0.0.1", port), 6)
            check(not failures, "port %d: %s" % (port, failures[:3]))
            made += ok
        now = {w["pid"]: w for w in online(d)}
        check(pids <= set(now), "workers gone: %s, online %s" % (
            pids, sorted(now)))
        if all(now[p]["accepted"] > 0 for p in pids):
            return made
        check(time.monotonic() < deadline, "after %d connections, accepted"
              " %s" % (made, {p: now[p]["accepted"] for p in pids}))
        d.read_lines(0)


def connect(port):
    """A client that got its hello."""
    c = socket.create_connection(("127.0.0.1", port), timeout=10 * SCALE)
    got = b""
    while len(got) < 7:
        x = c.recv(7 - len(got))
        check(x, "closed before hello")
        got += x
    check(got == b"hello\r\n", "greeting %r" % got)
    return c


def echo(c, line):
    c.sendall(line)
    got = b""
    while len(got) < len(line):
        x = c.recv(4096)
        check(x, "closed after %r" % got)
        got += x
    check(got == line, "echo %r of %r" % (got, line))


def holder(d, timeout=10):
    """The online worker with the one open connection."""
    deadline = time.monotonic() + timeout * SCALE
    while True:
        ws = [w for w in online(d) if w["count"] == 1]
        if len(ws) == 1:
            return ws[0]
        check(time.monotonic() < deadline, "no worker counts the "
              "connection: %s" % online(d))
        d.read_lines(0.1)


def wait_since(d, mark, text, count=1, timeout=10):
    """Until text appeared count times in the log after line mark."""
    deadline = time.monotonic() + timeout * SCALE
    while sum(text in l for l in d.lines[mark:]) < count:
        check(time.monotonic() < deadline, "timed out waiting for %r x%d;"
              " log:\n%s" % (text, count, "\n".join(d.lines[-30:])))
        d.read_lines(0.2)


def messages(d):
    """Messages the workers logged: (to id, to pid, from id, message);
    from 0 is the operator."""
    out = []
    for l in d.lines:
        m = MSG.search(l)
        if m:
            check(m.group(1) == m.group(3), "worker %s says it is %s" % (
                m.group(1), m.group(3)))
            out.append((int(m.group(1)), int(m.group(2)),
                        int(m.group(4) or 0), json.loads(m.group(5))))
    return out


def wait_messages(d, want, timeout=20):
    """Until want(messages(d)) is true."""
    deadline = time.monotonic() + timeout * SCALE
    while not want(messages(d)):
        check(time.monotonic() < deadline, "messages not delivered; log:"
              "\n%s" % "\n".join(d.lines[-30:]))
        d.read_lines(0.2)


class Ports:
    """The port of each exclusive worker online, in turn, for load(): a
    worker that stopped listening refuses its port until the list is read
    again after the reload; a client that saw a refusal waits for that
    instead of trying the same list again at once."""

    def __init__(self, ports, stats, lock, stop):
        self.ports, self.stats, self.stop = ports, stats, stop
        self.cond = threading.Condition(lock)
        self.version = self.turn = 0
        self.local = threading.local()

    def __call__(self):
        me = self.local
        with self.cond:
            if (getattr(me, "version", None) == self.version and
                    self.stats.get("refused", 0) > me.refused):
                self.cond.wait_for(lambda: self.version != me.version or
                                   self.stop.is_set(), 30 * SCALE)
            me.version = self.version
            me.refused = self.stats.get("refused", 0)
            self.turn += 1
            return self.ports[self.turn % len(self.ports)]

    def update(self, ports):
        with self.cond:
            self.ports = ports
            self.version += 1
            self.cond.notify_all()


def reloads_under_load(d, mode):
    """RELOADS reloads spread over DURATION s of echo connections. In
    exclusive mode, the clients follow the ports of the workers online,
    read again after each reload."""
    stats = {}
    lock = threading.Lock()
    stop = threading.Event()
    ports = Ports(targets(d, mode, online(d)), stats, lock, stop)
    exclusive = mode == "exclusive"
    done, stats, elapsed = harness_reloads(
        d, ports if exclusive else d.port(), RELOADS, DURATION, THREADS,
        after=lambda i: exclusive and ports.update(
            targets(d, mode, online(d))),
        finish=lambda: ports.update(ports.ports), stats=stats, lock=lock,
        stop=stop)
    d.wait_log("online; older workers drain", RELOADS)
    return done, stats, elapsed


def mode_suite(mode, workers=2):
    d = ce_daemon(mode, workers)
    try:
        d.wait_online()
        # 1. Traffic reaches every worker.
        ws = wait_workers(d, mode)
        for w in ws:
            d.wait_log("[pid %d]: worker %d: listening on 127.0.0.1 port %d"
                       % (w["pid"], w["id"], w["listening"][0]["port"]))
            d.wait_log("[pid %d]: worker %d of service ce" % (w["pid"],
                                                             w["id"]))
        made = reach_all(d, mode, ws)
        print("  %s: %d workers reached in %d connections" % (
            mode, len(ws), made))
        ports = {w["slot"]: w["listening"][0]["port"] for w in ws}

        # 2. SIGKILL: replaced, and the new one serves.
        victim = ws[0]["pid"]
        os.kill(victim, signal.SIGKILL)
        d.wait_log("[pid %d] (slot" % victim)
        d.wait_log("killed by signal 9")
        ws = wait_workers(d, mode, exclude=[victim])
        reach_all(d, mode, ws)
        if mode == "exclusive":
            check_exclusive_ports_kept(d, ports)

        # 3. Reloads under load lose nothing.
        done, stats, elapsed = reloads_under_load(d, mode)
        made = stats.get("made", 0)
        failed = sum(v for k, v in stats.items() if k != "made")
        print("  %s: %d reloads in %.1f s: made %d failed %d %s" % (
            mode, done, elapsed, made, failed, stats))
        check(done == RELOADS, "%d reloads" % done)
        check(failed == 0, "%s lost connections during reloads: %s" % (
            mode, stats))
        check(made >= 2 * RELOADS, "load too light: %s" % stats)
        ws = wait_workers(d, mode)
        reach_all(d, mode, ws)
        if mode == "exclusive":
            check_exclusive_ports_kept(d, ports)

        # 4. Stop drains: the connection still echoes, the worker exits 0
        # once it ends, the others at once; nobody is killed.
        c = connect(targets(d, mode, ws)[0])
        try:
            h = holder(d)
            others = [w["pid"] for w in ws if w["pid"] != h["pid"]]
            mark = len(d.lines)
            p = ctl_text(d, "stop")
            check(p.returncode == 0 and p.stdout == "stopping\n",
                  "stop: %r %r" % (p.stdout, p.stderr))
            wait_since(d, mark, ": disconnecting", len(ws))
            for w in ws:
                wait_since(d, mark, "[pid %d]: worker %d: disconnecting" % (
                    w["pid"], w["id"]))
            for pid in others:
                wait_since(d, mark, "[pid %d] (slot" % pid)
            echo(c, b"still here\n")
            check(d.proc.poll() is None, "the master left")
            check(not any("[pid %d] (slot" % h["pid"] in l
                          for l in d.lines[mark:]),
                  "the worker with a connection exited")
        finally:
            c.close()
        wait_since(d, mark, "notice: stopped")
        d.proc.wait(timeout=10 * SCALE)
        check(d.proc.returncode == 0, "master exited %d" %
              d.proc.returncode)
    finally:
        d.stop()
    tail = d.lines[mark:]
    for w in ws:
        check(any("[pid %d] (slot" % w["pid"] in l and
                  "exited with status 0" in l for l in tail),
              "pid %d did not exit 0:\n%s" % (w["pid"], "\n".join(tail)))
    check(not any("killing it" in l for l in tail), "killed at stop:\n%s" %
          "\n".join(tail))


def test_shared():
    mode_suite("shared")


def test_round_robin():
    mode_suite("round-robin")


def test_reuseport():
    mode_suite("reuseport")


def test_exclusive():
    mode_suite("exclusive")


def messages_suite(mode):
    """Broadcasts between workers, from the operator, to a draining
    generation or not."""
    d = ce_daemon(mode, 3)
    c = c2 = None
    try:
        d.wait_online()
        ws = wait_workers(d, mode)
        c = connect(targets(d, mode, ws)[0])
        s = holder(d)
        n = 200
        for i in range(n):
            # One line at a time: the example reads lines that arrive
            # whole in one read.
            echo(c, b'broadcast {"seq": %d}\n' % i)
        others = [w["id"] for w in ws if w["id"] != s["id"]]

        def got(ms, to, frm, key):
            return [m[key] for t, _, f, m in ms if t == to and f == frm and
                    isinstance(m, dict) and key in m]
        wait_messages(d, lambda ms: all(len(got(ms, o, s["id"], "seq")) >= n
                                        for o in others))
        # Not JSON: the sender is told, nobody gets it.
        echo(c, b"broadcast {bad\n")
        d.wait_log("[pid %d]: worker %d: broadcast: " % (s["pid"], s["id"]))
        # The operator's message is a barrier: a broadcast of the sender's
        # own, or the one that was not JSON, would have reached it before.
        p = ctl_text(d, "send", "ce", '{"op": 1}')
        check(p.returncode == 0 and p.stdout == "sent to 3 workers\n",
              "send: %r %r" % (p.stdout, p.stderr))
        wait_messages(d, lambda ms: all(len(got(ms, w["id"], 0, "op")) == 1
                                        for w in ws))
        ms = messages(d)
        for o in others:
            check(got(ms, o, s["id"], "seq") == list(range(n)),
                  "worker %d got %s" % (o, got(ms, o, s["id"], "seq")))
        check(not [m for m in ms if m[0] == s["id"] and m[2] != 0],
              "the sender heard: %s" % [m for m in ms if m[0] == s["id"]])
        check(all(m[3] == {"op": 1} for m in ms if m[2] == 0), ms)
        check(len(ms) == (len(ws) - 1) * n + len(ws), "messages: %s" % [
            m for m in ms if not isinstance(m[3], dict) or not
            ({"seq", "op"} & set(m[3]))])
        print("  %s: %d broadcasts from worker %d reached workers %s in "
              "order" % (mode, n, s["id"], others))

        # A reload: the sender drains with its connection open.
        mark = len(d.lines)
        p = ctl_text(d, "reload")
        check(p.returncode == 0, "reload: %s" % p.stderr)
        wait_since(d, mark, "online; older workers drain")
        wait_since(d, mark, "[pid %d]: worker %d: disconnecting" % (
            s["pid"], s["id"]))
        # The others of generation 1 had no connection: they are gone.
        for w in ws:
            if w["pid"] != s["pid"]:
                wait_since(d, mark, "[pid %d] of generation 1 exited with "
                           "status 0 after draining" % w["pid"])
        new = wait_workers(d, mode)
        check(not {w["id"] for w in new} & {w["id"] for w in ws},
              "old ids online: %s" % new)
        echo(c, b"draining\n")
        c2 = connect(targets(d, mode, new)[0])
        s2 = holder(d)
        others2 = [w["id"] for w in new if w["id"] != s2["id"]]
        echo(c2, b'broadcast {"only": "current"}\n')
        wait_messages(d, lambda ms: all(got(ms, o, s2["id"], "only")
                                        for o in others2))
        echo(c2, b'broadcast-all {"all": "generations"}\n')
        wait_messages(d, lambda ms: all(got(ms, o, s2["id"], "all")
                                        for o in others2 + [s["id"]]))
        # The operator's reach the draining worker too.
        p = ctl_text(d, "send", "ce", '{"op": 2}')
        check(p.returncode == 0 and p.stdout == "sent to 4 workers\n",
              "send while draining: %r %r" % (p.stdout, p.stderr))
        wait_messages(d, lambda ms: all(got(ms, w, 0, "op")[-1:] == [2]
                                        for w in others2 + [s["id"],
                                                            s2["id"]]))
        ms = messages(d)
        # Both came the same way: the draining worker heard the second,
        # so the first was never sent to it.
        check(not got(ms, s["id"], s2["id"], "only"),
              "a draining worker got a broadcast")
        check(not got(ms, s2["id"], s2["id"], "all"), "the sender heard")
        c.close()
        c = None
        d.wait_log("[pid %d] of generation 1 exited with status 0 after "
                   "draining" % s["pid"])

        # Refused sends.
        p = ctl_text(d, "send", "nope", "1")
        check(p.returncode == 1 and 'no service named "nope"' in p.stderr,
              "send nope: %d %r" % (p.returncode, p.stderr))
        p = ctl_text(d, "send", "ce", "{bad")
        check(p.returncode == 2 and "the message is not JSON" in p.stderr,
              "send {bad: %d %r" % (p.returncode, p.stderr))
        # NC_CLUSTER_MESSAGE_MAX bytes of JSON go, one more does not.
        mark = len(d.lines)
        p = ctl_text(d, "send", "ce", json.dumps("x" * 64998))
        check(p.returncode == 0 and p.stdout == "sent to 3 workers\n",
              "send 65000 bytes: %r %r" % (p.stdout, p.stderr))
        for w in new:
            wait_since(d, mark, '[pid %d]: worker %d: message from the '
                       'operator: "xxxx' % (w["pid"], w["id"]))
        p = ctl_text(d, "send", "ce", json.dumps("x" * 64999))
        check(p.returncode == 1 and "message of 65001 bytes, over the "
              "limit of 65000" in p.stderr, "send 65001 bytes: %d %r" % (
                  p.returncode, p.stderr))
    finally:
        for x in (c, c2):
            if x is not None:
                x.close()
        d.stop()


def test_messages_shared():
    messages_suite("shared")


def test_messages_round_robin():
    messages_suite("round-robin")


def test_messages_reuseport():
    messages_suite("reuseport")


def test_messages_exclusive():
    messages_suite("exclusive")


def test_upgrade_keeps_channels():
    """netclusterctl upgrade: the new master adopts the workers with their
    channels; an adopted one that drains still hears the operator and the
    new generation's broadcast-all, and its broadcasts reach the new
    generation."""
    d = ce_daemon("round-robin", 2)
    c = c2 = None
    try:
        d.wait_online()
        ws = wait_workers(d, "round-robin")
        port = d.port()
        c = connect(port)
        s = holder(d)
        mark = len(d.lines)
        p = ctl_text(d, "upgrade")
        check(p.returncode == 0 and p.stdout.startswith("upgraded: "),
              "upgrade: %r %r" % (p.stdout, p.stderr))
        check(d.proc.poll() is None, "the master's pid changed")
        for w in ws:
            wait_since(d, mark, "[pid %d] of generation 1 adopted" % w["pid"])
        wait_since(d, mark, "[pid %d]: worker %d: disconnecting" % (
            s["pid"], s["id"]))
        for w in ws:
            if w["pid"] != s["pid"]:
                wait_since(d, mark, "[pid %d] of generation 1 exited with "
                           "status 0 after draining" % w["pid"])
        new = wait_workers(d, "round-robin")
        ids = [w["id"] for w in new]
        p = ctl_text(d, "send", "ce", '{"op": 3}')
        check(p.returncode == 0 and p.stdout == "sent to 3 workers\n",
              "send after the upgrade: %r %r" % (p.stdout, p.stderr))
        echo(c, b'broadcast {"from": "adopted"}\n')
        c2 = connect(port)
        s2 = holder(d)
        echo(c2, b'broadcast-all {"from": "new"}\n')

        def heard(ms, to, frm, m):
            return any(t == to and f == frm and x == m for t, _, f, x in ms)
        wait_messages(d, lambda ms: all(
            heard(ms, i, 0, {"op": 3}) for i in ids + [s["id"]]) and all(
            heard(ms, i, s["id"], {"from": "adopted"}) for i in ids) and all(
            heard(ms, i, s2["id"], {"from": "new"})
            for i in ids + [s["id"]] if i != s2["id"]))
        c.close()
        c = None
        d.wait_log("[pid %d] of generation 1 exited with status 0 after "
                   "draining" % s["pid"])
    finally:
        for x in (c, c2):
            if x is not None:
                x.close()
        d.stop()


def test_send_needs_a_channel():
    """A program on inherited sockets has no channel: send is refused."""
    d = Daemon([{"name": "echo", "handler": "program",
                 "listen": ["127.0.0.1:0"], "mode": "shared",
                 "sockets": "inherit", "command": [
                     sys.executable, os.path.join(HERE, "inherit_echo.py")],
                 "cwd": HERE}], workers=1)
    try:
        d.wait_online()
        p = ctl_text(d, "send", "echo", '{"op": 1}')
        check(p.returncode == 1 and "echo runs a program without a channel"
              in p.stderr, "send: %d %r" % (p.returncode, p.stderr))
    finally:
        d.stop()


def test_configtest():
    """-t accepts a cluster program in each mode."""
    dir = tempfile.mkdtemp(prefix="nc-cluster.")
    path = os.path.join(dir, "netcluster.json")
    try:
        for mode in ("round-robin", "exclusive", "shared", "reuseport"):
            with open(path, "w") as f:
                json.dump({"control_socket": os.path.join(dir, "c.sock"),
                           "services": [ce_service(mode)]}, f)
            p = subprocess.run([NETCLUSTERD, "-t", "-c", path],
                               capture_output=True, text=True,
                               timeout=30 * SCALE)
            check(p.returncode == 0 and "configuration OK" in
                  p.stdout + p.stderr, "%s: %d %r" % (
                      mode, p.returncode, p.stdout + p.stderr))
    finally:
        if os.path.exists(path):
            os.unlink(path)
        os.rmdir(dir)


def test_standalone():
    """The same program without netclusterd listens by itself."""
    p = subprocess.Popen([CLUSTER_ECHO, "-p", "0", "-h", "127.0.0.1"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    try:
        out = b""
        deadline = time.monotonic() + 10 * SCALE
        while b"\n" not in out:
            left = deadline - time.monotonic()
            check(left > 0, "no line: %r" % out)
            r, _, _ = select.select([p.stdout], [], [], left)
            if r:
                x = os.read(p.stdout.fileno(), 4096)
                check(x, "exited %s: %r" % (p.poll(), out))
                out += x
        m = re.match(rb"echo: listening on 127\.0\.0\.1 port (\d+)\n$", out)
        check(m, "said %r" % out)
        c = connect(int(m.group(1)))
        try:
            echo(c, b"alone\n")
            # No cluster: a broadcast says the channel is closed.
            echo(c, b'broadcast {"x": 1}\n')
            while b"echo: broadcast: " not in out:
                left = deadline - time.monotonic()
                check(left > 0, "no broadcast error: %r" % out)
                r, _, _ = select.select([p.stdout], [], [], left)
                if r:
                    x = os.read(p.stdout.fileno(), 4096)
                    check(x, "exited %s: %r" % (p.poll(), out))
                    out += x
        finally:
            c.close()
        check(p.poll() is None, "exited %s" % p.returncode)
    finally:
        p.kill()
        p.wait()
        err = p.stderr.read()
        p.stdout.close()
        p.stderr.close()
    check(not err, "stderr %r" % err)


if __name__ == "__main__":
    run([test_configtest, test_standalone, test_send_needs_a_channel,
         test_messages_shared, test_messages_round_robin,
         test_messages_reuseport, test_messages_exclusive,
         test_upgrade_keeps_channels, test_shared, test_round_robin,
         test_reuseport, test_exclusive])
