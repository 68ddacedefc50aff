#!/usr/bin/env python3
"""A program on inherited sockets for tests/e2e/supervision.py, speaking
systemd's notify protocol (sd_notify(3)) to the NOTIFY_SOCKET netclusterd
gives it. Its environment says how it behaves:

  SV_EXIT=1         exits 3 at once, before anything (a broken version);
  SV_NEVER_READY=1  never says READY=1 and never accepts (a hung start);
  SV_READY_DELAY=S  warms up S seconds (STATUS=warming up) first;
  SV_WATCHDOG_MS=N  says WATCHDOG=1 every N ms, until SV_DIR holds a
                    file mute-PID (PID its own): then it goes silent.

Else it says READY=1 and STATUS=serving (pid P), and only then accepts:
each connection is greeted with "hello\\r\\n" and gets its bytes back.
Without a NOTIFY_SOCKET it just serves. On SIGTERM it closes its
listeners, lets open connections finish and exits 0. It first logs what
it was given: "supervision_notify: pid P notify N watchdog_usec U
watchdog_pid W"."""

import os
import resource
import selectors
import signal
import socket
import sys
import time


def log(text):
    print("supervision_notify: pid %d %s" % (os.getpid(), text),
          file=sys.stderr, flush=True)


class Notifier:
    """sd_notify(3): one datagram to NOTIFY_SOCKET ("@" is abstract)."""

    def __init__(self):
        addr = os.environ.get("NOTIFY_SOCKET")
        self.sock = None
        if addr:
            if addr.startswith("@"):
                addr = "\0" + addr[1:]
            self.addr = addr
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    def __call__(self, text):
        if self.sock is not None:
            self.sock.sendto(text.encode(), self.addr)


def main():
    # SIGABRT (a hung worker's end) leaves no core behind.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    env = os.environ
    if env.get("SV_EXIT") == "1":
        log("exiting before READY=1")
        return 3
    log("notify %s watchdog_usec %s watchdog_pid %s" % (
        env.get("NOTIFY_SOCKET"), env.get("WATCHDOG_USEC"),
        env.get("WATCHDOG_PID")))
    notify = Notifier()
    stopping = []
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(True))
    sel = selectors.DefaultSelector()
    sel.register(rfd, selectors.EVENT_READ, "signal")

    delay = float(env.get("SV_READY_DELAY", "0"))
    if env.get("SV_NEVER_READY") == "1":
        notify("STATUS=never ready")
        delay = None
    elif delay > 0:
        notify("STATUS=warming up")
        log("STATUS=warming up")
    # Warming up: nothing but SIGTERM.
    start = time.monotonic()
    while delay is None or time.monotonic() - start < delay:
        if stopping:
            log("SIGTERM before READY=1")
            return 0
        left = 1.0 if delay is None else delay - (time.monotonic() - start)
        for key, _ in sel.select(max(0.0, left)):
            os.read(rfd, 512)

    n = int(env.get("LISTEN_FDS", "0"))
    if env.get("LISTEN_PID") != str(os.getpid()) or n < 1:
        log("no sockets passed (LISTEN_FDS)")
        return 1
    listeners = [socket.socket(fileno=3 + i) for i in range(n)]
    for s in listeners:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "listener")
    notify("READY=1\nSTATUS=serving (pid %d)" % os.getpid())
    log("READY=1")

    every = int(env.get("SV_WATCHDOG_MS", "0")) / 1000.0
    mute = os.path.join(env.get("SV_DIR", "/nonexistent"),
                        "mute-%d" % os.getpid())
    muted = False
    next_ping = time.monotonic()
    conns = set()
    while True:
        if stopping and listeners:
            log("SIGTERM, closing")
            for s in listeners:
                sel.unregister(s)
                s.close()
            listeners = []
        if stopping and not conns:
            return 0
        timeout = 1.0
        if every > 0 and not muted:
            now = time.monotonic()
            if now >= next_ping:
                if os.path.exists(mute):
                    muted = True
                    log("no more WATCHDOG=1")
                else:
                    notify("WATCHDOG=1")
                    next_ping = now + every
            timeout = max(0.0, next_ping - time.monotonic())
        for key, _ in sel.select(timeout):
            if key.data == "signal":
                os.read(rfd, 512)
            elif key.data == "listener":
                try:
                    c, _ = key.fileobj.accept()
                except OSError:
                    continue
                c.setblocking(False)
                try:
                    c.send(b"hello\r\n")
                except OSError:
                    c.close()
                    continue
                conns.add(c)
                sel.register(c, selectors.EVENT_READ, "conn")
            else:
                c = key.fileobj
                try:
                    d = c.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    d = b""
                if d:
                    try:
                        c.setblocking(True)
                        c.sendall(d)
                        c.setblocking(False)
                        continue
                    except OSError:
                        pass
                sel.unregister(c)
                c.close()
                conns.discard(c)


if __name__ == "__main__":
    sys.exit(main())
