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
import signal
import socket
import sys

from inherited import EchoLoop, listen_fds


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


class Stubborn(EchoLoop):
    """Ignores SIGTERM while the file named stubborn exists."""

    def __init__(self, stubborn):
        super().__init__()
        self.stubborn = stubborn

    def on_stop(self):
        if self.stubborn and os.path.exists(self.stubborn):
            log("pid %d ignores SIGTERM" % os.getpid())
            return False
        log("pid %d: SIGTERM, closing" % os.getpid())
        return True


def main():
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        print("<3>trees_prog: no sockets passed (LISTEN_FDS)",
              file=sys.stderr, flush=True)
        return 1
    nfds = int(os.environ.get("LISTEN_FDS", "0"))
    mode = os.environ.get("TREES_MODE", "forker")
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
    loop = Stubborn(os.environ.get("TREES_STUBBORN", ""))
    loop.serve(listen_fds())
    return loop.run()


if __name__ == "__main__":
    sys.exit(main())
