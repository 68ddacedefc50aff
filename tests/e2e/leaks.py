"""Leaks over time: 200 worker restarts (SIGKILL) and 50 reloads, with
clients between them, leave the master's fd count where it started and
its resident memory within a small margin (read from /proc)."""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, check, echo_clients, no_quarantine, run)

RESTARTS = 200
RELOADS = 50
RSS_MARGIN_KIB = 512    # allocator noise, not growth per cycle


def cycle(d, port, restarts, reloads):
    """restarts kills and reloads reloads, interleaved, with clients."""
    online = sum(") online" in l for l in d.lines)
    for i in range(restarts):
        os.kill(d.worker_pids()[i % d.workers], signal.SIGKILL)
        online += 1
        d.wait_log(") online", online)
        if i % 20 == 0:
            ok, bad = echo_clients(("127.0.0.1", port), 10)
            check(ok == 10 and not bad, "clients failed: %s" % bad[:3])
    gens = sum("older workers drain" in l for l in d.lines)
    for i in range(reloads):
        d.ctl("reload")
        gens += 1
        d.wait_log("older workers drain", gens)
        if i % 10 == 0:
            ok, bad = echo_clients(("127.0.0.1", port), 10)
            check(ok == 10 and not bad, "clients failed: %s" % bad[:3])
    # The last generation drained: nothing old holds anything.
    d.wait_log("after draining", gens * d.workers)


def test_restarts_and_reloads():
    d = Daemon([{"name": "echo", "listen": ["127.0.0.1:0"],
                 "mode": "round-robin"}], workers=2, env=no_quarantine())
    try:
        d.wait_online()
        port = d.port()
        cycle(d, port, 10, 5)       # warm up: the allocator's first pages
        fds0, rss0 = d.settled_fd_count(), d.rss_kib()
        cycle(d, port, RESTARTS, RELOADS)
        fds1, rss1 = d.settled_fd_count(), d.rss_kib()
        kills = sum("killed by signal 9" in l for l in d.lines)
        gens = sum("older workers drain" in l for l in d.lines)
        check(kills == RESTARTS + 10 and gens == RELOADS + 5,
              "%d kills, %d generations" % (kills, gens))
        print("  %d worker restarts and %d reloads: master fds %d -> %d, "
              "RSS %d -> %d KiB" % (RESTARTS, RELOADS, fds0, fds1, rss0,
                                    rss1))
        check(fds1 == fds0, "master fds %d, were %d" % (fds1, fds0))
        # Built with ASan, the allocator keeps its own records (the stack
        # depot grows); there LeakSanitizer checks for leaks at exit, and
        # RSS is asserted in the plain builds.
        with open("/proc/%d/maps" % d.proc.pid) as f:
            asan = "libasan" in f.read()
        if asan:
            print("  (ASan build: RSS not asserted, LeakSanitizer checks)")
        else:
            check(rss1 <= rss0 + RSS_MARGIN_KIB, "master RSS grew %d KiB"
                  % (rss1 - rss0))
    finally:
        d.stop()


if __name__ == "__main__":
    run([test_restarts_and_reloads])
