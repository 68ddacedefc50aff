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
import sys

from inherited import EchoLoop, listen_fds


def resident_mib():
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


class Leaky(EchoLoop):
    def __init__(self, leak):
        super().__init__()
        self.leak = leak
        self.kept = []  # the leak: never freed while the process lives

    def on_accept(self, conn):
        self.kept.append(bytearray(b"\x01") * self.leak)

    def on_stop(self):
        print("recycle_leaky: SIGTERM with %d connections taken, "
              "%.0f MiB resident" % (len(self.kept), resident_mib()),
              file=sys.stderr, flush=True)
        return True


def main():
    if sys.argv[1:] == ["--rss"]:
        print("%.1f" % resident_mib())
        return 0
    listeners = listen_fds()
    if not listeners:
        print("<3>recycle_leaky: no sockets passed (LISTEN_FDS)",
              file=sys.stderr, flush=True)
        return 1
    loop = Leaky(int(os.environ.get("RECYCLE_LEAK_MIB", "4")) << 20)
    loop.serve(listeners)
    print("recycle_leaky: pid %d serving, %.1f MiB resident" % (
        os.getpid(), resident_mib()), file=sys.stderr, flush=True)
    return loop.run()


if __name__ == "__main__":
    sys.exit(main())
