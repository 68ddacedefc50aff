#!/usr/bin/env python3
"""A program on inherited sockets (sd_listen_fds(3)) that starts
processes of its own, for trees.py. It serves echo (greeting
"hello\\r\\n", then the bytes back) and, by TREES_MODE:

forker   It forks a child first, which keeps the listening sockets,
         ignores SIGTERM and sleeps: what a careless program leaves
         behind. It logs "trees_prog: pid P child C serving". On SIGTERM
         it closes its listeners, lets open connections finish and exits
         0, unless the file TREES_STUBBORN names exists then: it then
         ignores SIGTERM (a program that does not stop).
orphans  It forks a child that forks TREES_ORPHANS (default 1)
         grandchildren and exits at once, which it reaps: the
         grandchildren are orphans, each in a session of its own, handed
         to the PID 1 of their namespace. Each closes the sockets,
         connects to the unix socket TREES_ORPHAN_SOCKET, says "orphan
         PID\\n" (its pid in its namespace), and exits 3 once the other
         end closed. It logs "trees_prog: pid P child C exited 0". On
         SIGTERM it exits 0 as above."""

import os
import selectors
import signal
import socket
import sys


def log(text):
    print("trees_prog: " + text, file=sys.stderr, flush=True)


def sleeper(nfds):
    """The forker's child: keeps the sockets, ignores SIGTERM, sleeps."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        signal.pause()


def orphan(nfds, path):
    """A grandchild: its own session, none of the sockets; says its pid
    on path and exits 3 once the other end closes."""
    os.setsid()
    for i in range(nfds):
        os.close(3 + i)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b"orphan %d\n" % os.getpid())
    while s.recv(256):
        pass
    os._exit(3)


def orphans(nfds):
    n = int(os.environ.get("TREES_ORPHANS", "1"))
    path = os.environ["TREES_ORPHAN_SOCKET"]
    child = os.fork()
    if child == 0:
        try:
            for _ in range(n):
                if os.fork() == 0:
                    try:
                        orphan(nfds, path)
                    finally:
                        os._exit(1)
        finally:
            os._exit(0)
    _, st = os.waitpid(child, 0)
    log("pid %d child %d exited %d" % (os.getpid(), child,
                                       os.waitstatus_to_exitcode(st)))


def main():
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        print("<3>trees_prog: no sockets passed (LISTEN_FDS)",
              file=sys.stderr, flush=True)
        return 1
    nfds = int(os.environ.get("LISTEN_FDS", "0"))
    mode = os.environ.get("TREES_MODE", "forker")
    stubborn = os.environ.get("TREES_STUBBORN", "")
    if mode == "forker":
        child = os.fork()
        if child == 0:
            try:
                sleeper(nfds)
            finally:
                os._exit(1)
        log("pid %d child %d serving" % (os.getpid(), child))
    else:
        orphans(nfds)
    listeners = [socket.socket(fileno=3 + i) for i in range(nfds)]
    sel = selectors.DefaultSelector()
    stopping = []
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(True))
    sel.register(rfd, selectors.EVENT_READ, "signal")
    for s in listeners:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, "listener")
    conns = set()
    while True:
        if stopping and stubborn and os.path.exists(stubborn):
            log("pid %d ignores SIGTERM" % os.getpid())
            stopping.clear()
        if stopping and listeners:
            for s in listeners:
                sel.unregister(s)
                s.close()
            listeners = []
            log("pid %d: SIGTERM, closing" % os.getpid())
        if stopping and not conns:
            return 0
        for key, _ in sel.select(timeout=1):
            if key.data == "signal":
                os.read(rfd, 512)
            elif key.data == "listener":
                try:
                    c, _ = key.fileobj.accept()
                    c.sendall(b"hello\r\n")
                except OSError:
                    continue
                c.setblocking(False)
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
