#!/usr/bin/env python3
"""A connection handed to a worker is never served by two workers.

A worker (tests/e2e/handoff_worker.py) takes the first connection the
master handed it and dies while the master is stopped, so that when the
master runs again, the worker's death (its exit, and the ECONNRESET its
unread messages leave on the channel) and its last words wait together:
  - it answered for the connection and greeted it: the master must read
    the answer behind the reset and never hand the connection on;
  - it greeted it, or read from it, without answering: the master must
    see from the socket that it was served and close it, not hand it on;
and every other connection it was handed goes to the real worker, once.
Round-robin, and a reuseport slot whose worker is gone (whose
connections the master hands over the same way); with connections as JSON
`conn` messages, and as conn frames of several connections (the fake
then takes only the first of its frame)."""

import os
import signal
import socket
import subprocess
import tempfile
import time

from harness import (Daemon, NETCLUSTERCTL, SCALE, WORKER, check,
                     echo_service, run)

HERE = os.path.dirname(os.path.abspath(__file__))


def read_some(sock, n, timeout=10):
    """Up to n bytes, fewer at EOF or after timeout seconds."""
    sock.settimeout(timeout * SCALE)
    data = b""
    try:
        while len(data) < n:
            x = sock.recv(n - len(data))
            if not x:
                break
            data += x
    except socket.timeout:
        pass
    return data


def wait_until(cond, what, timeout=20):
    deadline = time.monotonic() + timeout * SCALE
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.01)


def zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def accepted(d):
    return d.ctl("status")["services"][0]["listeners"][0]["accepted"]


def scenario(act, mode, frames=False):
    tmp = tempfile.mkdtemp(prefix="nc-handoff.")
    env = {"NETCLUSTER_WORKER": os.path.join(HERE, "handoff_worker.py"),
           "HANDOFF_DIR": tmp, "HANDOFF_ACT": act,
           "HANDOFF_REAL_WORKER": WORKER,
           "HANDOFF_FRAMES": "1" if frames else "0"}
    workers = 1 if mode == "round-robin" else 2
    # The fake reads nothing until it acts: no heartbeat, or it would
    # stop counting as serving (and take nothing) after two pings.
    d = Daemon([echo_service(mode, worker_timeout_ms=0)], workers=workers,
               env=env)
    clients = []
    try:
        d.wait_online(workers)
        wait_until(lambda: os.path.exists(os.path.join(tmp, "fake.pid")),
                   "the fake worker")
        fake = int(open(os.path.join(tmp, "fake.pid")).read())
        port = d.port()
        if mode == "reuseport":
            # The real worker dies and its successor waits: its slot's
            # socket is the master's to accept from, for the fake.
            real = [p for p in d.worker_pids() if p != fake][0]
            os.kill(real, signal.SIGKILL)
            d.wait_log(") started", workers + 1)
        # Clients until the master has handed at least 3 to the fake (in
        # reuseport, the kernel spreads them over both slots' sockets).
        while accepted(d) < 3:
            check(len(clients) < 64, "the master accepted too few")
            for _ in range(4):
                c = socket.create_connection(("127.0.0.1", port),
                                             timeout=10 * SCALE)
                if act == "read":
                    c.sendall(b"x")
                clients.append(c)
        # The fake acts and dies while the master is stopped.
        os.kill(d.proc.pid, signal.SIGSTOP)
        try:
            open(os.path.join(tmp, "go"), "w").close()
            wait_until(lambda: zombie(fake), "the fake worker to exit")
        finally:
            os.kill(d.proc.pid, signal.SIGCONT)
        open(os.path.join(tmp, "go-real"), "w").close()
        served = touched = 0
        for c in clients:
            got = read_some(c, 7)
            if got == b"hello\r\n":
                want = b"x" if act == "read" else b""
                c.sendall(b"ping\n")
                got = read_some(c, len(want) + 5)
                check(got == want + b"ping\n", "a client served by the "
                      "real worker got %r after its greeting" % got)
                served += 1
            else:
                # The fake's: its greeting (none if it only read), then
                # the end; a second worker's greeting is the bug.
                check(got == (b"" if act == "read" else b"FAKE!\r\n"),
                      "a client got %r" % got)
                rest = read_some(c, 64)
                check(rest == b"", "the connection the fake worker served "
                      "was served again: %r after %r" % (rest, got))
                touched += 1
        check(touched == 1, "%d clients were the fake's" % touched)
        check(served == len(clients) - 1, "served %d of %d" % (
            served, len(clients) - 1))
        errors = [l for l in d.lines if "protocol error" in l]
        check(not errors, "logged: %s" % errors)
        if act != "ack":
            d.wait_log("closed, not handed to another worker")
        print("%s, %s%s: %d clients, the fake's served once, %d by the "
              "real worker" % (mode, act, ", frames" if frames else "",
                               len(clients), served))
    finally:
        for c in clients:
            c.close()
        try:
            d.stop()
        finally:
            for name in os.listdir(tmp):
                os.unlink(os.path.join(tmp, name))
            os.rmdir(tmp)


def test_round_robin_acked():
    scenario("ack", "round-robin")


def test_round_robin_written_unanswered():
    scenario("write", "round-robin")


def test_round_robin_read_unanswered():
    scenario("read", "round-robin")


def test_reuseport_orphan_acked():
    scenario("ack", "reuseport")


def test_reuseport_orphan_written_unanswered():
    scenario("write", "reuseport")


def burst(d, port, n):
    """n clients connect while the master is stopped (their handshakes
    done by the kernel), then it runs: every one must be greeted."""
    import select
    socks = []
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        for _ in range(n):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", port))
            socks.append(c)
        p = select.poll()
        for c in socks:
            p.register(c.fileno(), select.POLLOUT)
        left = {c.fileno() for c in socks}
        deadline = time.monotonic() + 10 * SCALE
        while left and time.monotonic() < deadline:
            for fd, _ in p.poll(100):
                left.discard(fd)
                p.unregister(fd)
        check(not left, "%d of %d connects not done" % (len(left), n))
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    try:
        p = select.poll()
        got = {}
        for c in socks:
            p.register(c.fileno(), select.POLLIN)
            got[c.fileno()] = (c, b"")
        left = set(got)
        deadline = time.monotonic() + 20 * SCALE
        while left and time.monotonic() < deadline:
            for fd, _ in p.poll(100):
                c, b = got[fd]
                data = c.recv(64)
                got[fd] = (c, b + data)
                if not data or len(b + data) >= 7:
                    check(b + data == b"hello\r\n", "a client got %r" %
                          (b + data))
                    left.discard(fd)
                    p.unregister(fd)
        check(not left, "%d of %d clients not greeted in %.0f s" % (
            len(left), n, 20 * SCALE))
    finally:
        for c in socks:
            c.close()


def test_round_robin_bursts():
    """Bursts of connections queued at once go out in frames of up to 16
    to 4 workers whose windows (64 each) fill and free unevenly, while
    reloads make two generations take them: every client is greeted."""
    d = Daemon([echo_service("round-robin", backlog=1024)], workers=4,
               extra={"shutdown_timeout_ms": 5000})
    try:
        d.wait_online(4)
        port = d.port()
        for i in range(6):
            burst(d, port, 1000)
            if i % 2 == 0:
                p = subprocess.run([NETCLUSTERCTL, "-s", d.control,
                                    "reload"], capture_output=True,
                                   text=True, timeout=60 * SCALE)
                check(p.returncode == 0, "reload: %s" % p.stderr)
        print("  6 bursts of 1000 to 4 workers, 3 reloads: every client "
              "greeted")
    finally:
        d.stop()


# The same with connections in conn frames, several per packet.
def test_round_robin_acked_frames():
    scenario("ack", "round-robin", True)


def test_round_robin_written_unanswered_frames():
    scenario("write", "round-robin", True)


def test_round_robin_read_unanswered_frames():
    scenario("read", "round-robin", True)


def test_reuseport_orphan_written_unanswered_frames():
    scenario("write", "reuseport", True)


if __name__ == "__main__":
    run([test_round_robin_acked, test_round_robin_written_unanswered,
         test_round_robin_read_unanswered, test_reuseport_orphan_acked,
         test_reuseport_orphan_written_unanswered,
         test_round_robin_acked_frames,
         test_round_robin_written_unanswered_frames,
         test_round_robin_read_unanswered_frames,
         test_reuseport_orphan_written_unanswered_frames,
         test_round_robin_bursts])
