#!/usr/bin/env python3
"""An echo server on inherited sockets (sd_listen_fds(3): LISTEN_PID,
LISTEN_FDS, fds from 3) that leaks: each connection it accepts leaves
RECYCLE_LEAK_MIB (default 4) MiB behind, a bytearray written through so
that it is resident, for recycle.py's "rss_mib". Each connection is
greeted with "hello\\r\\n" and gets its bytes back. On SIGTERM it closes
its listeners, lets open connections finish, and exits 0.

With --rss it prints its resident MiB (/proc/self/statm) once it has
loaded what it serves with, and exits: the baseline of the limit."""

import os
import selectors
import signal
import socket
import sys


def resident_mib():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def main():
    if sys.argv[1:] == ["--rss"]:
        print("%.1f" % resident_mib())
        return 0
    leak = int(os.environ.get("RECYCLE_LEAK_MIB", "4")) << 20
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        print("<3>recycle_leaky: no sockets passed (LISTEN_FDS)",
              file=sys.stderr, flush=True)
        return 1
    listeners = [socket.socket(fileno=3 + i)
                 for i in range(int(os.environ.get("LISTEN_FDS", "0")))]
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
    kept = []           # the leak: never freed while the process lives
    conns = set()
    print("recycle_leaky: pid %d serving, %.1f MiB resident" % (
        os.getpid(), resident_mib()), file=sys.stderr, flush=True)
    while True:
        if stopping and listeners:
            print("recycle_leaky: SIGTERM with %d connections taken, "
                  "%.0f MiB resident" % (len(kept), resident_mib()),
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
            elif key.data == "listener":
                try:
                    c, _ = key.fileobj.accept()
                except OSError:
                    continue
                kept.append(bytearray(b"\x01") * leak)
                try:
                    c.sendall(b"hello\r\n")
                except OSError:
                    c.close()
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
