"""Supervision beyond a worker's death, each test with a process spinning
beside it, as on a busy machine.

Hung workers: with worker_timeout_ms 2000, a worker SIGSTOPped under
load, in round-robin and shared mode, is killed (SIGABRT, then SIGKILL)
within the timeout and a second, logged and replaced at once; every
client is served, none waits past the timeout and a second (round-robin:
what was handed to the stopped worker goes to the other once it is
reaped; shared: the kernel gives its queue to the other). /ready answers
503 about two heartbeat intervals after the only worker stopped, and 200
once its replacement is online.

Readiness: a program with "notify" (supervision_notify.py) is online at
its READY=1: 20 reloads of one that warms up 2 s under load lose nothing
and each is answered only once the new workers said READY=1; its STATUS=
shows in `netclusterctl workers`. A version that exits before READY=1
fails the reload at once, one that never says it fails it at
ready_timeout_ms; without "notify", one that exits at start fails it
within settle_ms; each time the old workers serve on, nothing lost. A
slot whose program never says READY=1 is killed at each
ready_timeout_ms and restarted after a back-off the metrics count.

Watchdog: with worker_timeout_ms in the service, the program gets
WATCHDOG_USEC and WATCHDOG_PID and says WATCHDOG=1; once it stops, it
is killed, replaced, logged and counted (cause="timeout",
code="worker_timeout_ms").

Who is asked: only a worker that said "heartbeat" in its listen gets
`ping` (heartbeat_worker.py, all three ways); one that said 2 gets one
`beat` instead and serves on on its own pongs; one that said nothing, as
a worker of a libnetcluster from before would, is never asked and
serves on. A master stopped for twice worker_timeout_ms kills nobody
once it goes on: what the workers said meanwhile is read first. A
reuseport worker stopped long enough to be silent has the master serve
its slot's socket; once it goes on and answers, it takes its socket
back at once: the master accepts nothing more there."""

import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import (NETCLUSTERCTL, SCALE, check, echo_once, echo_service,
                     read_to_eof, run)

HERE = os.path.dirname(os.path.abspath(__file__))
PROGRAM = os.path.join(HERE, "supervision_notify.py")
HB_PROGRAM = os.path.join(HERE, "heartbeat_worker.py")
TIMEOUT_MS = 2000                       # worker_timeout_ms of the tests
INTERVAL_S = min(TIMEOUT_MS / 4, 1000) / 1000.0     # between two pings
# A hung worker is gone within the timeout and a second of its SIGSTOP,
# and so is the longest a client may wait for an answer.
HUNG_BOUND_S = (TIMEOUT_MS + 1000) / 1000.0 * SCALE
THREADS = 8
RELOADS = 20
READY_DELAY_S = 2.0                     # the program's warm-up
READY_TIMEOUT_MS = 3000


class Daemon(harness.Daemon):
    """harness.Daemon, noting when each log line was read."""

    def __init__(self, *args, **kw):
        self.times = []
        super().__init__(*args, **kw)

    def read_lines(self, timeout):
        new = super().read_lines(timeout)
        self.times.extend([time.monotonic()] * len(new))
        return new

    def wait_match(self, pattern, after=0, timeout=10):
        """The first line from index after that matches pattern, waited
        for (bounded): (match, its index, when it was read)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout * SCALE
        i = after
        while True:
            while i < len(self.lines):
                m = rx.search(self.lines[i])
                if m:
                    t = self.times[i] if i < len(self.times) else \
                        time.monotonic()
                    return m, i, t
                i += 1
            left = deadline - time.monotonic()
            check(left > 0, "timed out waiting for /%s/; log:\n%s" % (
                pattern, "\n".join(self.lines[-30:])))
            self.read_lines(min(left, 0.2))

    def slot_workers(self):
        return self.ctl("workers")["workers"]


class Busy:
    """A process spinning beside the test, as on a busy machine."""

    def __enter__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import time\nend = time.monotonic() + "
             "%d\nwhile time.monotonic() < end: pass" % (300 * SCALE)])
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        return False


class Load:
    """THREADS clients, one echo connection after another (echo_once(),
    each bounded), each noted with when it began, how long it took and
    what became of it. hold() waits until none is inside a connection
    and keeps them out until release()."""

    def __init__(self, port, client_timeout=10):
        self.port = port
        self.client_timeout = client_timeout
        self.cond = threading.Condition()
        self.done = []                  # (start, seconds, outcome)
        self.inside = 0
        self.held = False
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client)
                        for _ in range(THREADS)]
        for t in self.threads:
            t.start()

    def client(self):
        payload = os.urandom(16)
        while True:
            with self.cond:
                self.cond.wait_for(lambda: not self.held or
                                   self.stop.is_set(), 60 * SCALE)
                if self.stop.is_set():
                    return
                self.inside += 1
            start = time.monotonic()
            key = echo_once(self.port, payload, timeout=self.client_timeout)
            took = time.monotonic() - start
            with self.cond:
                self.inside -= 1
                self.done.append((start, took, key))
                self.cond.notify_all()

    def hold(self):
        with self.cond:
            self.held = True
            check(self.cond.wait_for(lambda: self.inside == 0, 10 * SCALE),
                  "clients still inside a connection")

    def release(self):
        with self.cond:
            self.held = False
            self.cond.notify_all()

    def made(self):
        with self.cond:
            return sum(1 for _, _, k in self.done if k == "made")

    def wait_made(self, n, timeout=30):
        """Until n more connections were made."""
        with self.cond:
            want = sum(1 for _, _, k in self.done if k == "made") + n
            check(self.cond.wait_for(lambda: sum(
                1 for _, _, k in self.done if k == "made") >= want,
                timeout * SCALE), "connections: %s" % self.outcomes())

    def outcomes(self):
        out = {}
        for _, _, k in list(self.done):
            out[k] = out.get(k, 0) + 1
        return out

    def close(self):
        self.stop.set()
        with self.cond:
            self.held = False
            self.cond.notify_all()
        for t in self.threads:
            t.join(30 * SCALE)
        return self.outcomes()


def clean(outcomes, why):
    bad = {k: n for k, n in outcomes.items() if k != "made"}
    check(not bad, "%s: failed connections: %s" % (why, bad))


def cont(pid):
    """A SIGSTOPped worker the test left behind may go on (and end)."""
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass



def get_ready(addr):
    """GET /ready on the metrics listener: (status, body)."""
    c = socket.create_connection(addr, timeout=5 * SCALE)
    try:
        c.sendall(b"GET /ready HTTP/1.0\r\n\r\n")
        data = read_to_eof(c)
    finally:
        c.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    check(len(status) >= 2 and status[0].startswith(b"HTTP/1."),
          "no HTTP answer: %r" % data[:80])
    return int(status[1]), body.decode()


def restarts(d, **labels):
    """netcluster_worker_restarts_total, summed over the samples whose
    labels include labels, from `netclusterctl metrics`."""
    p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "metrics"],
                       capture_output=True, text=True, timeout=20 * SCALE)
    check(p.returncode == 0, "netclusterctl metrics: %s" % p.stderr)
    total = 0.0
    for line in p.stdout.splitlines():
        m = re.match(r"netcluster_worker_restarts_total\{(.*)\} (\S+)$",
                     line)
        if m:
            got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(m.group(2))
    return total


# 1. Hung workers.

def hung_worker(mode):
    d = Daemon([echo_service(mode, worker_timeout_ms=TIMEOUT_MS)],
               workers=2)
    load = victim = None
    try:
        d.wait_online()
        port = d.port()
        pids = d.worker_pids()
        check(len(pids) == 2, "workers %s" % pids)
        load = Load(port)
        load.wait_made(200)
        victim, other = pids
        # Between two connections, so no client is inside the worker
        # that stops: SIGKILL ends what a worker holds.
        load.hold()
        mark = len(d.lines)
        os.kill(victim, signal.SIGSTOP)
        stopped = time.monotonic()
        load.release()
        _, _, t_silent = d.wait_match(
            r"service echo: worker \d+ \[pid %d\] \(slot \d+\) silent for "
            r"\d+ ms; it takes nothing until it answers" % victim, mark)
        # Silent, it takes nothing: fresh connections go to the other at
        # once, before the stopped one is killed.
        fresh = []
        for _ in range(10):
            start = time.monotonic()
            fresh.append((echo_once(port, timeout=10),
                          time.monotonic() - start))
        t_fresh = time.monotonic()
        m, i, t_kill = d.wait_match(
            r"service echo: worker \d+ \[pid %d\] \(slot (\d+)\) silent for "
            r"(\d+) ms \(worker_timeout_ms %d\); killing it \(SIGABRT, then "
            r"SIGKILL\)" % (victim, TIMEOUT_MS), mark)
        slot, silent = int(m.group(1)), int(m.group(2))
        m, i, t_reaped = d.wait_match(
            r"service echo: worker \[pid %d\] \(slot %d\) killed by signal 9 "
            r"after [\d.]+ s; restarting in 0 ms" % (victim, slot), i)
        m, i, t_online = d.wait_match(
            r"service echo: worker \d+ \[pid (\d+)\] \(slot %d\) online" %
            slot, i)
        new = int(m.group(1))
        load.wait_made(200)
        now = sorted(d.worker_pids())
        outcomes = load.close()
        load_done = load.done
        since = [(took, k) for start, took, k in load_done
                 if start >= stopped]
        load = None
        waits = sorted(took for took, _ in since)
        slow = sum(1 for took in waits if took > 1.0)
        print("  %s, 2 workers, worker_timeout_ms %d: SIGSTOP; taking "
              "nothing after %.2f s, killed after %.2f s (silent %d ms), "
              "reaped after %.2f s, pid %d online in its slot after %.2f s"
              % (mode, TIMEOUT_MS, t_silent - stopped, t_kill - stopped,
                 silent, t_reaped - stopped, new, t_online - stopped))
        print("  %s: %d connections since the SIGSTOP, %d of them waiting "
              "over 1 s; longest wait %.2f s, median %.3f s; %s" % (
                  mode, len(waits), slow, waits[-1], waits[len(waits) // 2],
                  outcomes))
        print("  %s: 10 fresh connections while it was silent: %s, the "
              "longest %.3f s, done %.2f s before the kill" % (
                  mode, sorted(set(k for k, _ in fresh)),
                  max(t for _, t in fresh), t_kill - t_fresh))
        check(all(k == "made" for k, _ in fresh) and
              max(t for _, t in fresh) < 0.5 * SCALE,
              "fresh connections while silent: %s" % fresh)
        check(silent >= TIMEOUT_MS, "killed silent %d ms" % silent)
        check(t_reaped - stopped <= HUNG_BOUND_S, "reaped %.2f s after the "
              "SIGSTOP" % (t_reaped - stopped))
        check(not os.path.exists("/proc/%d" % victim), "pid %d still there"
              % victim)
        check(victim not in now and other in now and new in now and
              len(now) == 2, "workers %s: stopped %d, other %d, new %d" % (
                  now, victim, other, new))
        clean(outcomes, mode)
        check(waits[-1] <= HUNG_BOUND_S, "%s: a client waited %.2f s" % (
            mode, waits[-1]))
        if mode == "round-robin":
            # What was handed to the stopped worker waited for its end,
            # then the other served it.
            check(slow > 0, "nothing was handed to the stopped worker")
            early = [took for start, took, _ in load_done
                     if took > 1.0 and start + took < t_kill]
            check(not early, "%d served before the stopped worker was "
                  "killed" % len(early))
        else:
            # The kernel wakes only a worker that waits to accept.
            check(waits[-1] < 1.0 * SCALE, "shared: a client waited %.2f s"
                  % waits[-1])
    finally:
        if load is not None:
            load.close()
        if victim is not None:
            cont(victim)
        d.stop()


def test_hung_worker_round_robin():
    with Busy():
        hung_worker("round-robin")


def test_hung_worker_shared():
    with Busy():
        hung_worker("shared")


def test_ready_while_hung():
    """/ready: 503 about two intervals after the only worker stopped
    (it takes nothing), 200 once its replacement is online."""
    with Busy():
        d = Daemon([echo_service("shared", worker_timeout_ms=TIMEOUT_MS)],
                   workers=1, extra={"metrics": {"listen": "127.0.0.1:0"}})
        victim = None
        try:
            d.wait_online()
            host, port = d.ctl("status")["metrics"].rsplit(":", 1)
            addr = (host.strip("[]"), int(port))
            check(get_ready(addr) == (200, "ready\n"), "/ready: %s" % (
                get_ready(addr),))
            victim = d.worker_pids()[0]
            mark = len(d.lines)
            os.kill(victim, signal.SIGSTOP)
            stopped = time.monotonic()
            polls = 0
            deadline = stopped + 10 * SCALE
            while True:
                code, body = get_ready(addr)
                polls += 1
                if code != 200:
                    break
                check(time.monotonic() < deadline, "/ready still 200")
                d.read_lines(0.02)
            t503 = time.monotonic() - stopped
            check((code, body) == (503, "no worker is online\n"),
                  "/ready: %d %r" % (code, body))
            while True:
                code, body = get_ready(addr)
                polls += 1
                if code != 503:
                    break
                check(time.monotonic() < deadline, "/ready still 503")
                d.read_lines(0.02)
            t200 = time.monotonic() - stopped
            check((code, body) == (200, "ready\n"), "/ready: %d %r" % (
                code, body))
            m, i, t_kill = d.wait_match(
                r"worker \d+ \[pid %d\] \(slot 0\) silent for \d+ ms "
                r"\(worker_timeout_ms %d\); killing it" % (victim,
                                                           TIMEOUT_MS), mark)
            m, i, _ = d.wait_match(r"service echo: worker \d+ \[pid (\d+)\] "
                                   r"\(slot 0\) online", i)
            new = int(m.group(1))
            check(d.worker_pids() == [new], "workers %s" % d.worker_pids())
            print("  1 worker stopped: /ready 503 after %.2f s (%.1f "
                  "intervals of %.2f s), 200 after %.2f s (killed after "
                  "%.2f s), %d requests" % (t503, t503 / INTERVAL_S,
                                            INTERVAL_S, t200,
                                            t_kill - stopped, polls))
            check(t503 <= (2 * INTERVAL_S + 0.5) * SCALE,
                  "/ready 503 only after %.2f s" % t503)
            check(t200 <= HUNG_BOUND_S + 0.5 * SCALE,
                  "/ready 200 again only after %.2f s" % t200)
        finally:
            if victim is not None:
                cont(victim)
            d.stop()


# 2-5. Programs on inherited sockets.

class Programs:
    """A daemon running supervision_notify.py as a service's program,
    with a temporary directory of the test's own (the program's cwd, and
    where it looks for mute-PID); set(**env) rewrites the config with
    that environment for the next reload."""

    def __init__(self, env=None, workers=2, **kw):
        self.tmp = tempfile.mkdtemp(prefix="nc-e2e-sv.")
        self.kw = kw
        self.d = None
        try:
            self.d = Daemon([self.service(env or {})], workers=workers,
                            extra={"shutdown_timeout_ms": 5000})
        except Exception:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise

    def service(self, env):
        s = {"name": "echo", "handler": "program", "mode": "shared",
             "listen": ["127.0.0.1:0"], "sockets": "inherit",
             "command": [sys.executable, PROGRAM], "cwd": self.tmp,
             "env": dict(env, SV_DIR=self.tmp)}
        s.update(self.kw)
        return s

    def set(self, **env):
        with open(self.d.config) as f:
            conf = json.load(f)
        conf["services"] = [self.service(env)]
        with open(self.d.config, "w") as f:
            json.dump(conf, f)

    def reload(self):
        """netclusterctl reload: (exit status, what it said, seconds).
        One refused while older generations still drain is asked again,
        as an operator would."""
        retry_until = time.monotonic() + 30 * SCALE
        while True:
            start = time.monotonic()
            p = subprocess.run([NETCLUSTERCTL, "-s", self.d.control,
                                "reload"], capture_output=True, text=True,
                               timeout=60 * SCALE)
            took = time.monotonic() - start
            self.d.read_lines(0)
            if (p.returncode == 0 or "still draining" not in p.stderr or
                    time.monotonic() > retry_until):
                return p.returncode, p.stdout + p.stderr, took
            self.d.read_lines(0.1)

    def close(self):
        try:
            if self.d is not None:
                self.d.stop()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def program_env(d, pid):
    """What supervision_notify.py pid was given: (NOTIFY_SOCKET,
    WATCHDOG_USEC, WATCHDOG_PID), as it logged them."""
    m, _, _ = d.wait_match(r"supervision_notify: pid %d notify (\S+) "
                           r"watchdog_usec (\S+) watchdog_pid (\S+)$" % pid)
    return m.group(1), m.group(2), m.group(3)


def serving(d, want=2):
    """The slot workers, once want of them are online with the STATUS=
    of a program that said READY=1; their pids."""
    ws = d.slot_workers()
    check(len(ws) == want and all(
        w["state"] == "online" and w.get("status") == "serving (pid %d)" %
        w["pid"] for w in ws), "workers: %s" % [
            (w["pid"], w["state"], w.get("status")) for w in ws])
    return sorted(w["pid"] for w in ws)


def test_notify_reloads():
    """20 reloads of a program that says READY=1 after a 2 s warm-up,
    under load: each is answered once the new workers said it (no
    sooner than 2 s), and no connection is lost; STATUS= shows in
    `netclusterctl --json workers`, "warming up", then "serving"."""
    with Busy():
        pr = Programs({"SV_READY_DELAY": str(READY_DELAY_S)}, notify=True)
        d = pr.d
        load = None
        try:
            # Starting: each slot's worker says it warms up.
            for i in range(2):
                d.wait_match(r"supervision_notify: pid \d+ STATUS=warming up")
            deadline = time.monotonic() + 10 * SCALE
            while True:
                ws = d.slot_workers()
                if all(w["state"] == "starting" and w.get("status") ==
                       "warming up" for w in ws) and len(ws) == 2:
                    break
                check(time.monotonic() < deadline and all(
                    w["state"] == "starting" for w in ws),
                    "workers: %s" % ws)
                d.read_lines(0.05)
            d.wait_online(timeout=20)
            pids = serving(d)
            for pid in pids:
                sock, usec, wpid = program_env(d, pid)
                check(sock.startswith("@netclusterd/") and usec == "None" and
                      wpid == "None", "pid %d: NOTIFY_SOCKET %s, "
                      "WATCHDOG_USEC %s, WATCHDOG_PID %s" % (pid, sock, usec,
                                                             wpid))
            port = d.port()
            load = Load(port)
            load.wait_made(100)
            took = []
            made = []
            for i in range(RELOADS):
                before = load.made()
                rc, out, t = pr.reload()
                check(rc == 0 and "reloaded" in out, "reload %d: %d %s" % (
                    i, rc, out))
                took.append(t)
                made.append(load.made() - before)
                # Answered: the new workers are online, each with the
                # STATUS= it sent with READY=1.
                now = serving(d)
                check(not set(now) & set(pids), "reload %d: pids %s, "
                      "before %s" % (i, now, pids))
                pids = now
            load.wait_made(100)
            outcomes = load.close()
            load = None
            d.wait_log("online; older workers drain", RELOADS)
            print("  %d reloads, READY=1 after a %.0f s warm-up: each "
                  "answered after %.2f to %.2f s (mean %.2f s); %s "
                  "connections during each, %s" % (
                      RELOADS, READY_DELAY_S, min(took), max(took),
                      sum(took) / len(took), min(made), outcomes))
            clean(outcomes, "reloads")
            check(min(took) >= READY_DELAY_S, "a reload answered after "
                  "%.2f s, before the new workers were ready" % min(took))
            check(min(made) > 0, "a reload without load: %s" % made)
        finally:
            if load is not None:
                load.close()
            pr.close()


def failed_reload(pr, load, want, bound, at_least=0.0):
    """A reload that must fail within bound seconds, saying want, the old
    workers serving on: (seconds, connections meanwhile, message)."""
    d = pr.d
    pids = sorted(d.worker_pids())
    before = load.made()
    rc, out, took = pr.reload()
    check(rc == 1 and re.match(r"netclusterctl: %s; the workers not yet "
                               r"replaced keep serving\n$" % want, out),
          "reload: %d %r, want /%s/" % (rc, out, want))
    check(at_least <= took <= bound, "reload failed after %.2f s, want "
          "%.2f to %.2f s" % (took, at_least, bound))
    check(sorted(d.worker_pids()) == pids, "workers %s, before %s" % (
        sorted(d.worker_pids()), pids))
    msg = out.split(": ", 1)[1].strip()
    d.wait_log("err: reload: " + msg)       # logged too
    pid = int(re.search(r"\[pid (\d+)\]", msg).group(1))
    check(not os.path.exists("/proc/%d" % pid), "pid %d is left" % pid)
    load.wait_made(50)
    return took, load.made() - before, msg


def test_notify_not_ready():
    """A version that exits before READY=1 fails the reload at once; one
    that never says it, within ready_timeout_ms and a second; the old
    workers serve on, the same pids, nothing lost. A good one then
    reloads."""
    with Busy():
        pr = Programs(notify=True, ready_timeout_ms=READY_TIMEOUT_MS)
        d = pr.d
        load = None
        try:
            d.wait_online()
            serving(d)
            load = Load(d.port())
            load.wait_made(100)
            pr.set(SV_EXIT="1")
            t_exit, n_exit, msg_exit = failed_reload(
                pr, load, r"service echo: batch 1 of 1 failed: its worker "
                r"\d+ \[pid \d+\] ended before it was online", 1.0 * SCALE)
            pr.set(SV_NEVER_READY="1")
            t_silent, n_silent, msg_silent = failed_reload(
                pr, load, r"service echo: batch 1 of 1 failed: its worker "
                r"\d+ \[pid \d+\] was not ready within %d ms "
                r"\(ready_timeout_ms\)" % READY_TIMEOUT_MS,
                (READY_TIMEOUT_MS + 1000) / 1000.0 * SCALE,
                READY_TIMEOUT_MS / 1000.0)
            d.wait_match(r"worker \d+ \[pid \d+\]: killing it: not ready "
                         r"after %d ms \(ready_timeout_ms\)" %
                         READY_TIMEOUT_MS)
            old = serving(d)
            pr.set()
            rc, out, took = pr.reload()
            check(rc == 0, "good reload: %s" % out)
            check(not set(serving(d)) & set(old), "not replaced")
            load.wait_made(50)
            outcomes = load.close()
            load = None
            print("  notify: exits before READY=1: reload failed after "
                  "%.2f s; never READY=1, ready_timeout_ms %d: failed after "
                  "%.2f s; %d and %d connections meanwhile, %s" % (
                      t_exit, READY_TIMEOUT_MS, t_silent, n_exit, n_silent,
                      outcomes))
            print("  %s\n  %s" % (msg_exit, msg_silent))
            clean(outcomes, "failed reloads")
        finally:
            if load is not None:
                load.close()
            pr.close()


def backoffs(d, service):
    """netcluster_worker_backoffs_total of service, from the metrics."""
    p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "metrics"],
                       capture_output=True, text=True, timeout=20 * SCALE)
    check(p.returncode == 0, "netclusterctl metrics: %s" % p.stderr)
    m = re.search(r'^netcluster_worker_backoffs_total\{service="%s"\} '
                  r'(\S+)$' % service, p.stdout, re.M)
    return float(m.group(1)) if m else 0.0


def test_never_ready_backs_off():
    """A slot whose program never says READY=1 is killed at each
    ready_timeout_ms and restarted after a growing back-off, which the
    crash-loop metric counts, as it counts a program that exits."""
    timeout_ms = 300
    with Busy():
        pr = Programs({"SV_NEVER_READY": "1"}, workers=1, notify=True,
                      ready_timeout_ms=timeout_ms)
        d = pr.d
        try:
            kill = (r"worker \d+ \[pid \d+\]: killing it: not ready after "
                    r"%d ms \(ready_timeout_ms\)" % timeout_ms)
            _, i, t1 = d.wait_match(kill)
            _, i, _ = d.wait_match(kill, after=i + 1)
            _, i, t3 = d.wait_match(kill, after=i + 1)
            ready = restarts(d, service="echo", cause="ready",
                             code="ready_timeout_ms")
            delayed = backoffs(d, "echo")
            print("  never ready: 3 kills in %.2f s; restarts{cause="
                  "\"ready\"} %d, backoffs %d" % (t3 - t1, ready, delayed))
            check(ready >= 2, "restarts{cause=\"ready\", code="
                  "\"ready_timeout_ms\"} %s after 3 kills" % ready)
            check(delayed >= 1, "backoffs %s after 3 kills" % delayed)
        finally:
            pr.close()


def test_settle_exit():
    """Without "notify", a program is online once it lived settle_ms: a
    version that exits at start fails the reload within settle_ms and a
    second, the old workers serving on; a good one reloads no sooner
    than settle_ms."""
    settle_ms = 1000
    with Busy():
        pr = Programs()
        d = pr.d
        load = None
        try:
            d.wait_online()
            for pid in d.worker_pids():
                sock, _, _ = program_env(d, pid)
                check(sock == "None", "NOTIFY_SOCKET %s without notify" %
                      sock)
            load = Load(d.port())
            load.wait_made(100)
            pr.set(SV_EXIT="1")
            t_exit, n_exit, msg = failed_reload(
                pr, load, r"service echo: batch 1 of 1 failed: its worker "
                r"\d+ \[pid \d+\] ended before it was online",
                (settle_ms + 1000) / 1000.0 * SCALE)
            pr.set()
            old = sorted(d.worker_pids())
            rc, out, took = pr.reload()
            check(rc == 0, "good reload: %s" % out)
            check(took >= settle_ms / 1000.0, "online after %.2f s, before "
                  "settle_ms" % took)
            check(not set(d.worker_pids()) & set(old), "not replaced")
            load.wait_made(50)
            outcomes = load.close()
            load = None
            print("  no notify, settle_ms %d: exits at start: reload failed "
                  "after %.2f s (%d connections meanwhile); a good one "
                  "reloaded after %.2f s; %s" % (settle_ms, t_exit, n_exit,
                                                 took, outcomes))
            print("  %s" % msg)
            clean(outcomes, "failed reload")
        finally:
            if load is not None:
                load.close()
            pr.close()


def test_watchdog():
    """"notify" and worker_timeout_ms 2000: the program gets
    WATCHDOG_USEC=2000000 and WATCHDOG_PID=its pid and says WATCHDOG=1
    every 500 ms, which keeps it past the timeout; muted, it is killed
    (SIGABRT ends it), logged, replaced within 3 s, and counted
    cause="timeout"."""
    with Busy():
        pr = Programs({"SV_WATCHDOG_MS": "500"}, notify=True,
                      worker_timeout_ms=TIMEOUT_MS)
        d = pr.d
        try:
            d.wait_online()
            pids = serving(d)
            for pid in pids:
                sock, usec, wpid = program_env(d, pid)
                check(sock.startswith("@netclusterd/") and
                      usec == str(TIMEOUT_MS * 1000) and wpid == str(pid),
                      "pid %d: NOTIFY_SOCKET %s, WATCHDOG_USEC %s, "
                      "WATCHDOG_PID %s" % (pid, sock, usec, wpid))
            # Alive past the timeout on WATCHDOG=1 alone (no channel).
            start = time.monotonic()
            while time.monotonic() - start < 1.5 * TIMEOUT_MS / 1000.0:
                d.read_lines(0.1)
            check(not any("killing it" in l for l in d.lines),
                  "killed while saying WATCHDOG=1")
            check(serving(d) == pids, "workers changed")
            victim, other = pids
            mark = len(d.lines)
            open(os.path.join(pr.tmp, "mute-%d" % victim), "w").close()
            muted = time.monotonic()
            _, _, t_muted = d.wait_match(r"supervision_notify: pid %d no more "
                                         r"WATCHDOG=1" % victim, mark)
            m, i, t_kill = d.wait_match(
                r"service echo: worker \d+ \[pid %d\] \(slot (\d+)\) silent "
                r"for (\d+) ms \(worker_timeout_ms %d\); killing it "
                r"\(SIGABRT, then SIGKILL\)" % (victim, TIMEOUT_MS), mark)
            slot, silent = int(m.group(1)), int(m.group(2))
            m, i, t_reaped = d.wait_match(
                r"service echo: worker \[pid %d\] \(slot %d\) killed by "
                r"signal 6 after [\d.]+ s; restarting in 0 ms" % (victim,
                                                                  slot), i)
            m, i, t_online = d.wait_match(
                r"service echo: worker \d+ \[pid (\d+)\] \(slot %d\) online"
                % slot, i)
            new = int(m.group(1))
            now = serving(d)
            count = restarts(d, service="echo", cause="timeout",
                             code="worker_timeout_ms")
            print("  watchdog: muted; killed after %.2f s (silent %d ms), "
                  "ended by SIGABRT after %.2f s, pid %d online after "
                  "%.2f s; restarts{cause=\"timeout\"} %d" % (
                      t_kill - muted, silent, t_reaped - muted, new,
                      t_online - muted, count))
            check(silent >= TIMEOUT_MS, "killed silent %d ms" % silent)
            check(t_online - muted <= HUNG_BOUND_S, "replaced %.2f s after "
                  "it stopped saying WATCHDOG=1" % (t_online - muted))
            check(sorted([other, new]) == now, "workers %s: other %d, new "
                  "%d" % (now, other, new))
            check(count == 1, "restarts{cause=\"timeout\"} %s" % count)
            sock, usec, wpid = program_env(d, new)
            check(usec == str(TIMEOUT_MS * 1000) and wpid == str(new),
                  "pid %d: WATCHDOG_USEC %s, WATCHDOG_PID %s" % (new, usec,
                                                                 wpid))
        finally:
            pr.close()


# 4. Who is asked, and a worker that answers again.

def lines_of(path, word):
    try:
        with open(path) as f:
            return sum(1 for line in f if line.strip() == word)
    except FileNotFoundError:
        return 0


def test_heartbeat_only_if_said():
    tmp = tempfile.mkdtemp(prefix="nc-e2e-hb.")
    levels = {"says": "1", "mute": "0", "beats": "2"}
    logs = {n: os.path.join(tmp, n + ".log") for n in levels}

    def service(name):
        return {"name": name, "handler": "program", "sockets": "cluster",
                "mode": "shared", "listen": ["127.0.0.1:0"],
                "command": [sys.executable, HB_PROGRAM],
                "worker_timeout_ms": 400,       # a ping each 100 ms
                "env": {"HB_SAYS": levels[name], "HB_LOG": logs[name]}}

    try:
        with Busy():
            d = Daemon([service(n) for n in levels], workers=1)
            try:
                d.wait_online(3)
                before = {w["service"]: w["pid"] for w in d.slot_workers()}
                # Ten pings to the one that says it answers: far past the
                # 400 ms the other would have had to answer its first.
                deadline = time.monotonic() + 10 * SCALE
                while lines_of(logs["says"], "ping") < 10:
                    check(time.monotonic() < deadline, "no 10 pings to the "
                          "worker that said it answers; log:\n%s" %
                          "\n".join(d.lines[-20:]))
                    d.read_lines(0.1)
                after = {w["service"]: (w["pid"], w["state"])
                         for w in d.slot_workers()}
                print("  heartbeat: %d pings to the worker that said "
                      "\"heartbeat\", %d to the one that did not; workers "
                      "%s" % (lines_of(logs["says"], "ping"),
                              lines_of(logs["mute"], "ping"), after))
                print("  heartbeat 2: told %s, pinged %d times" % (
                    [l for l in open(logs["beats"]).read().split("\n")
                     if l.startswith("beat ")], lines_of(logs["beats"],
                                                         "ping")))
                check(lines_of(logs["mute"], "ping") == 0,
                      "a worker that did not say \"heartbeat\" was pinged")
                # One that beats by itself is told how often, once, and
                # never pinged: its own pongs keep it online.
                check(lines_of(logs["beats"], "beat 100") == 1,
                      "the worker that beats was not told \"beat\" 100 "
                      "once")
                check(lines_of(logs["beats"], "ping") == 0,
                      "a worker that beats by itself was pinged")
                check(after == {n: (before[n], "online") for n in before},
                      "workers before %s, after %s" % (before, after))
                st = d.ctl("status")["services"]
                check(all(s["online"] == 1 for s in st),
                      "status: %s" % [(s["name"], s["online"]) for s in st])
            finally:
                d.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def master_accepted(d):
    """Connections the master accepted for echo's listener."""
    return d.ctl("status")["services"][0]["listeners"][0]["accepted"]


def test_silent_then_answers():
    timeout_ms = 6000           # silent at 2.1 s, killed at 6 s
    with Busy():
        d = Daemon([echo_service("reuseport",
                                 worker_timeout_ms=timeout_ms)])
        try:
            d.wait_online()
            port = d.port()
            pid = d.slot_workers()[0]["pid"]
            os.kill(pid, signal.SIGSTOP)
            try:
                _, i, t_silent = d.wait_match(
                    r"worker \d+ \[pid %d\] \(slot \d+\) silent for" % pid)
                acc0 = master_accepted(d)
                for _ in range(40):
                    got = echo_once(port)
                    check(got == "made", "a connection %s while worker %d "
                          "was silent" % (got, pid))
                acc1 = master_accepted(d)
            finally:
                cont(pid)
            _, _, t_back = d.wait_match(
                r"worker \d+ \[pid %d\] \(slot \d+\) answers again" % pid,
                after=i)
            for _ in range(40):
                got = echo_once(port)
                check(got == "made", "a connection %s after worker %d "
                      "answered again" % (got, pid))
            acc2 = master_accepted(d)
            print("  silent then answers: of 40 connections while it was "
                  "silent the master accepted %d; answering again %.2f s "
                  "after it was silent, of 40 more, %d" % (
                      acc1 - acc0, t_back - t_silent, acc2 - acc1))
            check(acc1 - acc0 > 0, "the master did not serve the silent "
                  "worker's socket")
            check(acc2 == acc1, "the master accepted %d connections on the "
                  "socket of a worker that answers again" % (acc2 - acc1))
            ws = d.slot_workers()
            check(pid in [w["pid"] for w in ws] and
                  all(w["state"] == "online" for w in ws),
                  "workers after: %s" % ws)
        finally:
            d.stop()


def test_master_stopped():
    """The master stopped (SIGSTOP) for twice worker_timeout_ms with 8
    workers beating: once it goes on, what they said meanwhile is read
    before anyone's silence is judged, and nobody is killed or taken out
    of rotation over the next two timeouts."""
    timeout_ms = 1000
    with Busy():
        d = Daemon([echo_service("shared", worker_timeout_ms=timeout_ms)],
                   workers=8)
        try:
            d.wait_online(8)
            before = sorted(w["pid"] for w in d.slot_workers())
            mark = len(d.lines)
            os.kill(d.proc.pid, signal.SIGSTOP)
            try:
                time.sleep(2 * timeout_ms / 1000.0)    # what is tested
            finally:
                os.kill(d.proc.pid, signal.SIGCONT)
            # Two timeouts more, watched: nothing is to happen in them.
            end = time.monotonic() + 2 * timeout_ms / 1000.0 * SCALE
            while time.monotonic() < end:
                d.read_lines(max(end - time.monotonic(), 0.01))
            after = sorted(w["pid"] for w in d.slot_workers())
            said = [l for l in d.lines[mark:]
                    if re.search(r"silent for|killing it", l)]
            print("  master stopped %.1f s: workers %s, then %s; %d lines "
                  "of silence" % (2 * timeout_ms / 1000.0,
                                  "same" if after == before else before,
                                  "same" if after == before else after,
                                  len(said)))
            check(not said, "workers judged silent after the master was "
                  "stopped:\n%s" % "\n".join(said))
            check(after == before, "workers %s, then %s" % (before, after))
            check(echo_once(d.port()) == "made", "no echo after")
        finally:
            d.stop()


if __name__ == "__main__":
    # A hung worker's SIGABRT leaves no core behind.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    run([test_hung_worker_round_robin, test_hung_worker_shared,
         test_ready_while_hung, test_notify_reloads, test_notify_not_ready,
         test_never_ready_backs_off, test_settle_exit, test_watchdog,
         test_heartbeat_only_if_said,
         test_silent_then_answers, test_master_stopped])
