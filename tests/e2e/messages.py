"""Flow control of the messages between workers, with bench/cluster-msg
as the program of a "sockets": "cluster" service of 3 workers: one
broadcasts COUNT messages of SIZE bytes, the two others count them and
check their order (see the header of bench/cluster-msg.c).

A receiver that reads slowly (stopped 100 ms, running 200 ms, over and
over) loses nothing, and no drop is logged; with small messages and
stops of 400 ms, more than the master queues for a receiver would pile
up: the sender is held back instead (its broadcasts are refused for a
while). A receiver stopped for the whole broadcast is declared stalled
once it took nothing for 1 s: what is for it is dropped and logged (1st,
2nd, 4th... drop), the live receiver gets everything in order, the
master's RSS stays bounded, and once resumed the stopped one has what
waited for it (about 1 MiB), nothing out of order. Resumed while the
broadcast goes on, it gets messages again, to the last: one gap.

Messages as frames (docs/protocol.md): a pool of cluster-msg workers,
one of them run as a program built against an older library (it reads
and sends JSON), and hostile workers (tests/e2e/hostile_worker.py). A
payload that is not JSON, or not UTF-8, is dropped by each receiving
library and logged, and by the master for the older one, and a good
message after it reaches all three; a frame whose length, version, kind
or size is wrong gets its sender killed as a protocol error; no receiver
dies. Then messages of 64 B, 4 KiB and 65000 B (the most
nc_cluster_broadcast() takes) arrive whole and in order, from a worker
that sends frames to the older one and the others, and from the older
one (JSON) to the others. Across an upgrade, the adopted workers' messages
arrive in order too (the new master speaks JSON to them)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILD, NETCLUSTERCTL, NETCLUSTERD, Daemon, SCALE, check,
                     no_quarantine, run)

# The libtool wrapper execs the real binary: the worker's pid is its own.
CLUSTER_MSG = os.path.join(BUILD, "bench", "cluster-msg")
HOSTILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "hostile_worker.py")
ROLE = re.compile(r"worker (\d+) \[pid (\d+)\]: role (\w+)$")
COUNT = 20000
# Enough for the slow receiver to be stopped several times: the master
# relays 4 KiB messages at well over 50,000 a second.
SLOW_COUNT = 100000
SIZE = 4096
# Small ones go in batches, several hundred thousand a second: enough
# for several stops of the slow receiver.
SMALL_COUNT = 1000000
RSS_LIMIT_KIB = 16 * 1024
# Wall time for a broadcast of COUNT messages; the slow receiver's runs
# of 200 ms in 300 ms make it take longer.
BROADCAST_S = 120

RECEIVED = re.compile(r"worker (\d+) \[pid \d+\]: round (\d+): received "
                      r"(\d+) of (\d+) in ([\d.]+) s, missing (\d+), "
                      r"reordered (\d+)$")
SENT = re.compile(r"worker (\d+) \[pid \d+\]: round (\d+): sent (\d+) in "
                  r"([\d.]+) s, (\d+) retries$")
DROPPED = re.compile(r"worker (\d+) \[pid (\d+)\] does not read its "
                     r"channel: a message for it is dropped \((\d+) "
                     r"dropped\)$")
BEHIND = " is too far behind: a message for it is dropped"


def msg_daemon():
    # No heartbeat: a receiver stopped for a whole broadcast must stay
    # (a slow run could pass worker_timeout_ms' 30 s and see it killed
    # as hung, which supervision.py tests).
    return Daemon([{"name": "msg", "handler": "program",
                    "sockets": "cluster", "mode": "round-robin",
                    "worker_timeout_ms": 0,
                    "listen": ["127.0.0.1:0"],
                    "command": [CLUSTER_MSG, "-h", "127.0.0.1", "-p", "0"]}],
                  workers=3, env=no_quarantine())


def wait_workers(d, timeout=20):
    """The 3 workers, online and listening: {id: pid}."""
    deadline = time.monotonic() + timeout * SCALE
    while True:
        ws = [w for w in d.ctl("workers")["workers"]
              if w["state"] == "online"]
        if len(ws) == d.workers and all(w["listening"] for w in ws):
            return {w["id"]: w["pid"] for w in ws}
        check(time.monotonic() < deadline, "workers not online: %s" % ws)
        d.read_lines(0.1)


def order(d, **kw):
    d.ctl("send", "msg", json.dumps(kw))


def received(d, rnd, mark=0):
    """The "received" lines of round rnd after line mark: {id: figures}."""
    got = {}
    for line in d.lines[mark:]:
        m = RECEIVED.search(line)
        if m and int(m.group(2)) == rnd:
            got[int(m.group(1))] = {
                "got": int(m.group(3)), "n": int(m.group(4)),
                "t": float(m.group(5)), "missing": int(m.group(6)),
                "reordered": int(m.group(7))}
    return got


def sent(d, rnd):
    for line in d.lines:
        m = SENT.search(line)
        if m and int(m.group(2)) == rnd:
            return {"n": int(m.group(3)), "t": float(m.group(4)),
                    "retries": int(m.group(5))}
    return None


class Rss:
    """The master's VmRSS, sampled while the test waits: the most seen."""

    def __init__(self, d):
        self.d = d
        self.start = self.peak = d.rss_kib()
        with open("/proc/%d/maps" % d.proc.pid) as f:
            self.asan = "libasan" in f.read()

    def sample(self):
        self.peak = max(self.peak, self.d.rss_kib())

    def check(self):
        """Growth under RSS_LIMIT_KIB; built with ASan, whose allocator
        keeps records of its own, the plain builds assert it."""
        if self.asan:
            print("  (ASan build: RSS %d -> %d KiB, not asserted)" % (
                self.start, self.peak))
        else:
            check(self.peak - self.start < RSS_LIMIT_KIB, "the master's "
                  "RSS grew from %d to %d KiB" % (self.start, self.peak))


def wait_received(d, rnd, ids, timeout, rss=None):
    """Until every worker in ids said it received all of round rnd."""
    deadline = time.monotonic() + timeout * SCALE
    while True:
        if rss is not None:
            rss.sample()
        got = received(d, rnd)
        if all(i in got for i in ids):
            return got
        check(time.monotonic() < deadline, "round %d: only %s reported "
              "after %d s; log:\n%s" % (rnd, got, timeout * SCALE,
                                        "\n".join(d.lines[-30:])))
        d.read_lines(0.1)


def master_lines(d, text):
    """Lines of the master (not a worker's output) with text."""
    return [l for l in d.lines if text in l and not
            re.search(r"worker \d+ \[pid \d+\]: ", l)]


def wmem_default():
    try:
        with open("/proc/sys/net/core/wmem_default") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 4 * 1024 * 1024


def cont_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except OSError:
            pass


class Pacer(threading.Thread):
    """Stops pid for stop_s, lets it run for run_s, again and again,
    until told to stop or for limit seconds at most; leaves it running."""

    def __init__(self, pid, limit, stop_s, run_s):
        super().__init__(daemon=True)
        self.pid, self.limit = pid, limit
        self.stop_s, self.run_s = stop_s, run_s
        self.done = threading.Event()
        self.cycles = 0

    def run(self):
        end = time.monotonic() + self.limit
        try:
            while not self.done.is_set() and time.monotonic() < end:
                os.kill(self.pid, signal.SIGSTOP)
                self.done.wait(self.stop_s)
                os.kill(self.pid, signal.SIGCONT)
                self.cycles += 1
                self.done.wait(self.run_s)
        finally:
            cont_all([self.pid])

    def finish(self):
        self.done.set()
        self.join(10 * SCALE)
        cont_all([self.pid])


def slow_receiver(n, size, stop_s, run_s):
    """One receiver stopped for stop_s, running for run_s, over and over,
    while n messages of size are broadcast: every receiver gets them all,
    in order, and the master logs no drop. Returns the sender's figures."""
    d = msg_daemon()
    pacer = None
    pids = []
    try:
        d.wait_online()
        ws = wait_workers(d)
        pids = list(ws.values())
        sender, live, slow = sorted(ws)
        pacer = Pacer(ws[slow], BROADCAST_S * SCALE, stop_s, run_s)
        pacer.start()
        # A few cycles first: the broadcast starts on a receiver that is
        # already stopped now and then.
        d.read_lines(0.5)
        start = time.monotonic()
        cycles0 = pacer.cycles
        order(d, cmd="run", round=1, sender=sender, n=n, size=size)
        got = wait_received(d, 1, (live, slow), BROADCAST_S)
        wall = time.monotonic() - start
        cycles1 = pacer.cycles
        pacer.finish()
        for i in (live, slow):
            g = got[i]
            check(g["got"] == n and g["n"] == n and
                  g["missing"] == 0 and g["reordered"] == 0,
                  "worker %d: %s" % (i, g))
        d.wait_log(": round 1: sent %d in" % n)
        s = sent(d, 1)
        check(not master_lines(d, "does not read its channel") and
              not master_lines(d, BEHIND), "messages dropped:\n%s" %
              "\n".join(master_lines(d, "dropped")))
        check(cycles1 - cycles0 >= 2, "stopped only %d times during the "
              "broadcast" % (cycles1 - cycles0))
        print("  %d x %d B to 2 receivers, one stopped %d times for %d ms: "
              "%.1f s, sender %.1f s with %d retries" % (
                  n, size, cycles1 - cycles0, stop_s * 1000, wall, s["t"],
                  s["retries"]))
        return s
    finally:
        if pacer is not None:
            pacer.finish()
        cont_all(pids)
        d.stop()


def test_slow_receiver_loses_nothing():
    """Stopped 100 ms, running 200 ms."""
    slow_receiver(SLOW_COUNT, SIZE, 0.1, 0.2)


def test_slow_receiver_holds_the_sender():
    """Small messages, stopped 400 ms at a time: more than the master
    queues for a receiver (MSG_HARD_PKTS) would pile up if the sender
    were not held back; it is, until its own queue is full (retries)."""
    s = slow_receiver(SMALL_COUNT, 64, 0.4, 0.3)
    check(s["retries"] > 0, "the sender was never refused: %s" % s)


def test_stalled_receiver_is_dropped():
    """Stopped for the whole broadcast: what is for it is dropped from
    when it is stalled on (the rest, after what waited in its queue, so
    it reports fewer than COUNT; cluster-msg counts as "missing" only
    the gaps before the last message it got)."""
    d = msg_daemon()
    pids = []
    try:
        d.wait_online()
        ws = wait_workers(d)
        pids = list(ws.values())
        sender, live, stopped = sorted(ws)
        os.kill(ws[stopped], signal.SIGSTOP)
        rss = Rss(d)
        start = time.monotonic()
        order(d, cmd="run", round=1, sender=sender, n=COUNT, size=SIZE)
        got = wait_received(d, 1, (live,), BROADCAST_S, rss)
        wall = time.monotonic() - start
        d.wait_log(": round 1: sent %d in" % COUNT)
        rss.sample()
        g = got[live]
        check(g["got"] == COUNT and g["missing"] == 0 and
              g["reordered"] == 0, "live worker %d: %s" % (live, g))
        check(stopped not in got, "the stopped worker reported: %s" % got)
        drops = [m for m in (DROPPED.search(l) for l in d.lines) if m]
        check(drops and all(int(m.group(1)) == stopped and
                            int(m.group(2)) == ws[stopped] for m in drops),
              "drops: %s" % [m.group(0) for m in drops])
        counts = [int(m.group(3)) for m in drops]
        check(counts == [2 ** k for k in range(len(counts))],
              "drop counts logged: %s" % counts)
        check(counts[-1] * 2 > COUNT - 2000, "only %d drops logged" %
              counts[-1])
        rss.check()

        # Resumed, it reads what was queued for it, then the report.
        os.kill(ws[stopped], signal.SIGCONT)
        v = report(d, 1, stopped)
        check(0 < v["got"] < COUNT and v["reordered"] == 0,
              "stopped worker %d: %s" % (stopped, v))
        check(v["got"] + v["missing"] + counts[-1] <= COUNT,
              "stopped worker: %s, %d drops logged" % (v, counts[-1]))
        # What it got waited for it: at most about 1 MiB in the master,
        # and what the kernel holds of the channel (wmem_default).
        check(v["got"] * SIZE <= 1024 * 1024 + wmem_default() + 4 * SIZE,
              "the stopped worker got %d messages of %d B: more than "
              "1 MiB waited for it in the master" % (v["got"], SIZE))
        print("  %d x %d B, one receiver stopped: live one got all in "
              "%.1f s; master RSS %d KiB, at most %d during; %d drops "
              "logged last; the stopped one got %d, missing %d" % (
                  COUNT, SIZE, wall, rss.start, rss.peak, counts[-1],
                  v["got"], v["missing"]))
    finally:
        cont_all(pids)
        d.stop()


def report(d, rnd, wid):
    """Asks for reports of round rnd until worker wid gave one (what was
    queued for it comes first, and a report order for a worker that is
    still behind may be dropped too)."""
    deadline = time.monotonic() + 60 * SCALE
    while wid not in received(d, rnd):
        check(time.monotonic() < deadline, "worker %d did not report; "
              "log:\n%s" % (wid, "\n".join(d.lines[-30:])))
        order(d, cmd="report", round=rnd)
        end = time.monotonic() + 1
        while wid not in received(d, rnd) and time.monotonic() < end:
            d.read_lines(0.1)
    return received(d, rnd)[wid]


def test_stalled_receiver_comes_back():
    """Stopped until the master dropped 256 messages for it, then
    resumed while the broadcast goes on (SLOW_COUNT: long enough to
    still run then): it gets messages again, up to the last, with one
    gap and nothing out of order."""
    d = msg_daemon()
    pids = []
    try:
        d.wait_online()
        ws = wait_workers(d)
        pids = list(ws.values())
        sender, live, stopped = sorted(ws)
        os.kill(ws[stopped], signal.SIGSTOP)
        rss = Rss(d)
        order(d, cmd="run", round=1, sender=sender, n=SLOW_COUNT,
              size=SIZE)
        d.wait_log("does not read its channel: a message for it is "
                   "dropped (256 dropped)", timeout=BROADCAST_S)
        os.kill(ws[stopped], signal.SIGCONT)
        check(sent(d, 1) is None, "the broadcast ended before SIGCONT")
        got = wait_received(d, 1, (live,), BROADCAST_S, rss)
        d.wait_log(": round 1: sent %d in" % SLOW_COUNT)
        g = got[live]
        check(g["got"] == SLOW_COUNT and g["missing"] == 0 and
              g["reordered"] == 0, "live worker %d: %s" % (live, g))
        # It prints its line by itself once it got the last message.
        v = wait_received(d, 1, (stopped,), 30, rss)[stopped]
        check(v["missing"] >= 256 and v["reordered"] == 0 and
              v["got"] + v["missing"] == SLOW_COUNT,
              "resumed worker %d: %s" % (stopped, v))
        rss.check()
        drops = [int(m.group(3)) for m in (DROPPED.search(l)
                                           for l in d.lines) if m]
        print("  resumed after 256 drops: got %d, missing %d (last drop "
              "count logged %d); master RSS %d KiB, at most %d" % (
                  v["got"], v["missing"], drops[-1], rss.start, rss.peak))
    finally:
        cont_all(pids)
        d.stop()


def roles(d):
    """{role: [worker ids]}, from the "role" lines of hostile_worker.py."""
    out = {}
    for line in d.lines:
        m = ROLE.search(line)
        if m:
            out.setdefault(m.group(3), []).append(int(m.group(1)))
    return out


def wait_for(d, pred, what, timeout=20):
    deadline = time.monotonic() + timeout * SCALE
    while not pred():
        check(time.monotonic() < deadline, "no %s after %d s; log:\n%s" % (
            what, timeout * SCALE, "\n".join(d.lines[-40:])))
        d.read_lines(0.1)


def lines_of(d, wid, text):
    """Lines of worker wid's output (or of the master about it) with text."""
    return [l for l in d.lines if re.search(r"worker %d \[pid \d+\]: " %
                                            wid, l) and text in l]


def test_frames_hostile_and_older():
    tmp = tempfile.mkdtemp(prefix="nc-e2e-frames.")
    counter = os.path.join(tmp, "starts")
    d = Daemon([{"name": "msg", "handler": "program", "sockets": "cluster",
                 "mode": "round-robin", "listen": ["127.0.0.1:0"],
                 "command": [sys.executable, HOSTILE],
                 "env": {"HOSTILE_COUNTER": counter,
                         "HOSTILE_MESSAGES": CLUSTER_MSG}}],
               workers=4, env=no_quarantine())
    try:
        d.wait_online()
        wait_workers(d)
        wait_for(d, lambda: sum(len(v) for v in roles(d).values()) >= 4,
                 "role of every worker")
        r = roles(d)
        hostile, older = r["payloads"][0], r["older"][0]
        reals = r["real"]
        check(len(reals) == 2, "roles: %s" % r)
        pids = {w["id"]: w["pid"] for w in d.ctl("workers")["workers"]}

        # Payloads that are not JSON: dropped by each receiver, logged.
        order(d, cmd="hostile", step="payloads")
        for wid in reals:
            for k in (1, 2):
                wait_for(d, lambda: lines_of(
                    d, wid, "cluster: a message from worker %d is not JSON "
                    % hostile) and lines_of(d, wid, "dropped (%d dropped)"
                                            % k), "drop %d logged by worker "
                         "%d" % (k, wid))
        for k in (1, 2):
            wait_for(d, lambda: lines_of(
                d, hostile, "a message that is not JSON") and lines_of(
                    d, hostile, "goes to no worker that reads no frames "
                    "(%d such)" % k), "the master's drop %d for the older "
                     "worker" % k)
        for wid in reals + [older]:
            wait_for(d, lambda: lines_of(
                d, wid, 'message from worker %d: {"hostile":"ok"}' %
                hostile), "the good message at worker %d" % wid)
        check(not lines_of(d, older, "is not JSON"), "the older worker "
              "got a payload that is not JSON")

        # Bad frames: the sender is killed, each in turn, nobody else.
        order(d, cmd="hostile", step="length")
        for role, why in (("payloads", "malformed frame: wrong size"),
                          ("version", "frame version 2 not understood"),
                          ("message", "unexpected message frame"),
                          ("size", "malformed frame: payload of 65001 "
                           "bytes")):
            wait_for(d, lambda: role in roles(d), "worker of role %s" %
                     role)
            wid = roles(d)[role][0]
            wait_for(d, lambda: lines_of(d, wid, "protocol error: " + why),
                     "protocol error of the %s worker" % role)
        wait_for(d, lambda: len(roles(d).get("real", [])) == 3,
                 "the last replacement")
        ws = wait_workers(d)
        for wid in reals + [older]:
            check(ws.get(wid) == pids[wid], "worker %d is gone or another "
                  "(%s, was %d)" % (wid, ws.get(wid), pids[wid]))
        check(d.proc.poll() is None, "the master exited")

        # Every size, in order, frames to the older worker and JSON back.
        new = roles(d)["real"][2]
        rnd = 0
        for sender, n, size in ((reals[0], 2000, 64), (reals[0], 500, 4096),
                                (reals[0], 200, 65000), (older, 500, 4096),
                                (older, 100, 65000)):
            rnd += 1
            live = [w for w in reals + [older, new] if w != sender]
            order(d, cmd="run", round=rnd, sender=sender, n=n, size=size)
            got = wait_received(d, rnd, live, BROADCAST_S)
            for wid in live:
                g = got[wid]
                check(g["got"] == n and g["missing"] == 0 and
                      g["reordered"] == 0, "round %d (%d x %d B from %d): "
                      "worker %d: %s" % (rnd, n, size, sender, wid, g))
        check(not master_lines(d, "dropped"), "messages dropped:\n%s" %
              "\n".join(master_lines(d, "dropped")))
        print("  frames: 2 bad payloads dropped by 3 receivers, 4 bad frames "
              "killed their senders; 64 B to 65000 B in order both ways")
    finally:
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def test_messages_across_upgrade():
    """netclusterctl upgrade (the same binary, from a copy): the new master
    does not know which workers said `frames`, so it sends the workers it
    adopts JSON messages, and takes their broadcast frames. The file's
    command is made to fail first, so that the rollover fails and the
    adopted workers serve on: messages among them arrive whole and in
    order, before the upgrade and after it."""
    tmp = tempfile.mkdtemp(prefix="nc-e2e-upg.")
    binary = os.path.join(tmp, "netclusterd")
    shutil.copy(NETCLUSTERD, binary)
    svc = {"name": "msg", "handler": "program", "sockets": "cluster",
           "mode": "round-robin", "listen": ["127.0.0.1:0"],
           "command": [CLUSTER_MSG, "-h", "127.0.0.1", "-p", "0"]}
    d = Daemon([svc], workers=3, env=no_quarantine(), binary=binary)
    try:
        d.wait_online()
        ws = wait_workers(d)
        sender, a, b = sorted(ws)
        order(d, cmd="run", round=1, sender=sender, n=2000, size=4096)
        got = wait_received(d, 1, (a, b), BROADCAST_S)
        for wid in (a, b):
            check(got[wid]["got"] == 2000 and got[wid]["missing"] == 0 and
                  got[wid]["reordered"] == 0, "before: %s" % got)
        with open(d.config) as f:
            conf = json.load(f)
        conf["services"][0]["command"] = ["/bin/false"]
        conf["services"][0]["ready_timeout_ms"] = 2000
        with open(d.config, "w") as f:
            json.dump(conf, f)
        p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "upgrade"],
                           capture_output=True, text=True,
                           timeout=60 * SCALE)
        # It answers with the failed rollover; the upgrade itself held.
        check("keep serving" in p.stderr, "upgrade: %r" % p.stderr)
        d.wait_log("upgraded in place")
        d.wait_log("adopted", count=3)
        d.wait_log("the workers not yet replaced keep serving",
                   timeout=30)
        # Adopted, they are online (their listening is not handed over).
        now = {w["id"]: w["pid"] for w in d.ctl("workers")["workers"]
               if w["state"] == "online"}
        check(now == ws, "the adopted workers: %s, before %s" % (now, ws))
        for rnd, size in ((2, 64), (3, 65000)):
            order(d, cmd="run", round=rnd, sender=sender, n=1000,
                  size=size)
            got = wait_received(d, rnd, (a, b), BROADCAST_S)
            for wid in (a, b):
                check(got[wid]["got"] == 1000 and
                      got[wid]["missing"] == 0 and
                      got[wid]["reordered"] == 0, "after: %s" % got)
        check(not master_lines(d, "protocol error"), "protocol errors:\n%s"
              % "\n".join(master_lines(d, "protocol error")))
        print("  upgraded, the rollover failed: the adopted workers' "
              "messages in order")
    finally:
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run([test_frames_hostile_and_older, test_messages_across_upgrade,
         test_slow_receiver_loses_nothing, test_slow_receiver_holds_the_sender,
         test_stalled_receiver_is_dropped,
         test_stalled_receiver_comes_back])
