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
import socket
import sys
import time

from inherited import EchoLoop, listen_fds


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


class Watchdog(EchoLoop):
    """Says WATCHDOG=1 every `every` seconds until the file mute exists."""

    def __init__(self, notify, every, mute):
        super().__init__()
        self.notify = notify
        self.every = every
        self.mute = mute
        self.muted = False
        self.next_ping = time.monotonic()

    def on_stop(self):
        log("SIGTERM, closing")
        return True

    def timeout(self):
        if self.every <= 0 or self.muted:
            return 1.0
        now = time.monotonic()
        if now >= self.next_ping:
            if os.path.exists(self.mute):
                self.muted = True
                log("no more WATCHDOG=1")
                return 1.0
            self.notify("WATCHDOG=1")
            self.next_ping = now + self.every
        return max(0.0, self.next_ping - time.monotonic())


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
    loop = Watchdog(notify, int(env.get("SV_WATCHDOG_MS", "0")) / 1000.0,
                    os.path.join(env.get("SV_DIR", "/nonexistent"),
                                 "mute-%d" % os.getpid()))

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
        if loop.stopping:
            log("SIGTERM before READY=1")
            return 0
        left = 1.0 if delay is None else delay - (time.monotonic() - start)
        for key, _ in loop.sel.select(max(0.0, left)):
            key.data(key)

    listeners = listen_fds()
    if not listeners:
        log("no sockets passed (LISTEN_FDS)")
        return 1
    loop.serve(listeners)
    notify("READY=1\nSTATUS=serving (pid %d)" % os.getpid())
    log("READY=1")
    return loop.run()


if __name__ == "__main__":
    sys.exit(main())
