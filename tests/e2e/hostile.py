"""netclusterd against hostile workers and control clients: the master
stays responsive (a control `status` answers within 100 ms throughout,
beyond what the machine's own load costs a master nobody abuses, probed
side by side) and its fd count returns to where it was."""

import json
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, SCALE, WORKER, check, echo_clients, echo_service,
                     raise_nofile, run)

HOSTILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       "hostile_worker.py")
BOUND = 0.1     # seconds the abuse may add to a status, at any time


def status_once(path):
    """One status request on a fresh connection; (seconds, reply)."""
    start = time.monotonic()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        c.connect(path)     # blocking, as netclusterctl's
        c.settimeout(10 * SCALE)
        c.sendall(b'{"command": "status"}\n')
        got = b""
        while not got.endswith(b"\n"):
            d = c.recv(65536)
            if not d:
                break
            got += d
    finally:
        c.close()
    return time.monotonic() - start, json.loads(got)


class StatusProbe:
    """Asks for status over and over in a thread; keeps the slowest."""

    def __init__(self, path):
        self.path = path
        self.times = []
        self.errors = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.loop)
        self.t.start()

    def loop(self):
        while not self.stop.is_set():
            try:
                took, r = status_once(self.path)
                if not r.get("ok"):
                    self.errors.append(r)
                self.times.append(took)
            except (OSError, ValueError) as e:
                self.errors.append(repr(e))
            self.stop.wait(0.01)

    def finish(self):
        self.stop.set()
        self.t.join(30 * SCALE)
        check(self.times, "no status answered")
        check(not self.errors, "status failed: %s" % self.errors[:3])
        return len(self.times), max(self.times)


class Reference:
    """A master nobody abuses, probed the same way over the same time: on
    a busy machine, the scheduler alone can delay any process's answer,
    and that is not the abuse's doing."""

    def __init__(self):
        self.d = Daemon([echo_service()], workers=1)
        self.probe = None
        try:
            self.d.wait_online()
        except Exception:
            self.d.stop()
            raise

    def start(self):
        self.probe = StatusProbe(self.d.control)

    def bound(self):
        """BOUND, plus the reference's slowest answer meanwhile."""
        _, slowest = self.probe.finish()
        self.probe = None
        return BOUND * SCALE + slowest

    def stop(self):
        if self.probe is not None:
            self.probe.finish()
        self.d.stop()


def back_to(d, baseline, bound=10):
    deadline = time.monotonic() + bound * SCALE
    while d.fd_count() != baseline:
        check(time.monotonic() < deadline, "master fds %d, baseline %d" %
              (d.fd_count(), baseline))
        d.read_lines(0.1)


def baseline_fds():
    d = Daemon([echo_service()], workers=1)
    try:
        d.wait_online()
        return d.fd_count()
    finally:
        d.stop()


def test_hostile_workers():
    baseline = baseline_fds()
    fd, counter = tempfile.mkstemp(prefix="nc-hostile.")
    os.close(fd)
    env = {"NETCLUSTER_WORKER": HOSTILE, "HOSTILE_COUNTER": counter,
           "HOSTILE_REAL_WORKER": WORKER, "HOSTILE_SECONDS": "3"}
    ref = Reference()
    d = Daemon([echo_service()], workers=1, env=env)
    probe = None
    try:
        d.wait_log(" online", 1, timeout=30)
        probe = StatusProbe(d.control)
        ref.start()
        # flood, then 1,000 fds, then 100 listeners it was not given,
        # then the real worker.
        d.wait_log("too many fds", timeout=30)
        d.wait_log("(64 refused)", timeout=30)    # no kill: EACCES each
        d.wait_log("(slot 0) online", 2, timeout=30)
        asked, slowest = probe.finish()
        probe = None
        bound = ref.bound()
        sent = int(open(counter + ".sent").read())
        check(slowest < bound, "a status took %.3f s (bound %.3f s)" % (
            slowest, bound))
        ok, bad = echo_clients(("127.0.0.1", d.port()), 20)
        check(ok == 20 and not bad, "not serving after abuse: %s" % bad[:3])
        back_to(d, baseline)
        logged = sum("refused a handle for" in l for l in d.lines)
        check(logged == 7, "100 refusals logged %d times" % logged)
        check(not any("exited with status 3" in l for l in d.lines),
              "a listener it was not given was granted")
        print("  hostile workers: %d unsolicited messages in 3 s, 1,000 "
              "fds in 4 packets, 100 listeners it was not given (each "
              "refused, %d log lines); %d status requests meanwhile, the "
              "slowest %.1f ms (bound %.1f ms); master fds back to %d" % (
                  sent, logged, asked, slowest * 1000, bound * 1000,
                  baseline))
    finally:
        if probe is not None:
            probe.finish()
        try:
            d.stop()
        finally:
            ref.stop()
            for f in (counter, counter + ".sent"):
                if os.path.exists(f):
                    os.unlink(f)


def test_hostile_control_clients():
    raise_nofile()
    ref = Reference()
    d = Daemon([echo_service()], workers=1)
    held = []
    probe = None
    try:
        d.wait_online()
        baseline = d.fd_count()
        # 100 that say nothing (more than the 64 the master keeps), 20
        # with half a request. They come first: a client that connects in
        # the very burst and has not yet sent its request looks like them.
        for i in range(120):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(d.control)
            if i >= 100:
                c.sendall(b'{"command": "sta')
            held.append(c)
        # Of the 120 held, the master keeps at most 64.
        import select
        gone = set()
        deadline = time.monotonic() + 10 * SCALE
        while len(gone) < 120 - 64 and time.monotonic() < deadline:
            r, _, _ = select.select([c for c in held if c not in gone], [],
                                    [], 0.2)
            for c in r:
                if c.recv(4096) == b"":
                    gone.add(c)
        check(len(gone) >= 120 - 64, "the master holds %d clients" % (
            120 - len(gone)))
        probe = StatusProbe(d.control)
        ref.start()
        # 10 that send a 1 MiB line: one error each, then closed.
        answers = []

        def big():
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(10 * SCALE)
            c.connect(d.control)
            try:
                c.sendall(b"x" * (1 << 20) + b"\n")
            except OSError:
                pass        # the master closed it, as it should
            got = b""
            try:
                while True:
                    x = c.recv(65536)
                    if not x:
                        break
                    got += x
            except OSError:
                pass
            c.close()
            answers.append(got)
        ts = [threading.Thread(target=big) for _ in range(10)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30 * SCALE)
        # Keep the abuse up while the probe asks 50 times.
        deadline = time.monotonic() + 30 * SCALE
        while len(probe.times) < 50 and time.monotonic() < deadline:
            d.read_lines(0.05)
        evictions = [l for l in d.lines if "dropped the oldest idle" in l]
        check(evictions, "no eviction logged")
        dropped = int(evictions[-1].rsplit("(", 1)[1].split()[0])
        check(len(evictions) == dropped.bit_length(),
              "%d evictions, logged %d times" % (dropped, len(evictions)))
        asked, slowest = probe.finish()
        probe = None
        bound = ref.bound()
        check(slowest < bound, "a status took %.3f s (bound %.3f s)" % (
            slowest, bound))
        check(len(answers) == 10 and all(
            a.count(b"\n") == 1 and b"request longer than 66560 bytes" in a
            for a in answers), "1 MiB lines: %r" % [a[:80] for a in answers])
        for c in held:
            c.close()
        held = []
        back_to(d, baseline)
        print("  control: 100 silent and 20 half-request clients (%d of "
              "them dropped, the master keeps 64; %d log lines), 10 lines "
              "of 1 MiB (one error each, then closed); %d status requests "
              "meanwhile, the slowest %.1f ms (bound %.1f ms); master fds "
              "back to %d" % (len(gone), len(evictions), asked,
                              slowest * 1000, bound * 1000, baseline))
    finally:
        if probe is not None:
            probe.finish()
        for c in held:
            c.close()
        try:
            d.stop()
        finally:
            ref.stop()


if __name__ == "__main__":
    run([test_hostile_workers, test_hostile_control_clients])
