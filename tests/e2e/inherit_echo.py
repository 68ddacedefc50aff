#!/usr/bin/env python3
"""An echo server that does not link libnetcluster: it takes its
listening sockets as systemd passes them (sd_listen_fds(3): LISTEN_PID,
LISTEN_FDS, fds from 3), as netclusterd's "handler": "program" does.
Each connection is greeted with "hello\\r\\n" and gets its bytes back; a
connection whose first bytes are "pid\\n" gets instead one line saying
who answered ("pid P listen_pid L fds N names NAMES"). On SIGTERM it
closes its listeners, lets open connections finish, and exits 0. With
INHERIT_ECHO_NOISE=N, it first writes N long lines on stderr.

With a message channel ("messages": true: NETCLUSTER_MESSAGE_FD, lines
of JSON), a client line "broadcast JSON" sends JSON to the other
workers, and each message that comes is logged as "inherit_echo: pid P
message from ID: JSON"."""

import json
import os
import selectors
import signal
import socket
import sys


def listen_fds():
    """The sockets passed to us, as sd_listen_fds(3) finds them."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    n = int(os.environ.get("LISTEN_FDS", "0"))
    return [socket.socket(fileno=3 + i) for i in range(n)]


def main():
    sel = selectors.DefaultSelector()
    listeners = listen_fds()
    if not listeners:
        print("<3>inherit_echo: no sockets passed (LISTEN_FDS)",
              file=sys.stderr, flush=True)
        return 1
    stopping = []
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(True))
    sel.register(rfd, selectors.EVENT_READ, "signal")
    for s in listeners:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "listener")
    chan = None
    inbox = b""
    if os.environ.get("NETCLUSTER_MESSAGE_FD"):
        chan = socket.socket(fileno=int(os.environ["NETCLUSTER_MESSAGE_FD"]))
        sel.register(chan, selectors.EVENT_READ, "messages")
    # For the tests of the master's log: lines too long, with a control
    # character, at warning priority, NOISE of them.
    for _ in range(int(os.environ.get("INHERIT_ECHO_NOISE", "0"))):
        print("<4>noise \x01" + "x" * 2000, file=sys.stderr)
    print("inherit_echo: pid %d serving %d sockets (%s)" % (
        os.getpid(), len(listeners), os.environ.get("LISTEN_FDNAMES")),
        file=sys.stderr, flush=True)
    conns = {}
    while True:
        if stopping and listeners:
            print("<5>inherit_echo: SIGTERM, closing %d listeners, "
                  "%d connections open" % (len(listeners), len(conns)),
                  file=sys.stderr, flush=True)
            for s in listeners:
                sel.unregister(s)
                s.close()
            listeners = []
        if stopping and not conns:
            return 0
        for key, _ in sel.select(timeout=1):
            if key.data == "signal":
                os.read(rfd, 512)
            elif key.data == "messages":
                d = chan.recv(65536)
                if not d:
                    sel.unregister(chan)
                    continue
                inbox += d
                while b"\n" in inbox:
                    line, inbox = inbox.split(b"\n", 1)
                    m = json.loads(line)
                    print("inherit_echo: pid %d message from %d: %s" % (
                        os.getpid(), m["from"], json.dumps(
                            m["message"], separators=(",", ":"))),
                        file=sys.stderr, flush=True)
            elif key.data == "listener":
                try:
                    c, _ = key.fileobj.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    continue
                c.setblocking(False)
                try:
                    c.send(b"hello\r\n")
                except OSError:
                    c.close()
                    continue
                conns[c] = True
                sel.register(c, selectors.EVENT_READ, "conn")
            else:
                c = key.fileobj
                try:
                    d = c.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    d = b""
                if d and conns[c] is True and d.startswith(b"pid\n"):
                    d = ("pid %d listen_pid %s fds %s names %s\n" % (
                        os.getpid(), os.environ.get("LISTEN_PID"),
                        os.environ.get("LISTEN_FDS"),
                        os.environ.get("LISTEN_FDNAMES"))).encode()
                conns[c] = False
                if chan is not None:
                    for line in d.split(b"\n"):
                        if line.startswith(b"broadcast "):
                            chan.sendall(line[10:].strip() + b"\n")
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
                del conns[c]


if __name__ == "__main__":
    sys.exit(main())
