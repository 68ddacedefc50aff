"""Reload without a single dropped connection: a steady load of echo
connections (each one checks its bytes come back) while the master
reloads 20 times, in shared, reuseport and round-robin mode. Then a bad
configuration: refused, the old one keeps serving. And exclusive mode,
where the cost of a reload is measured and reported."""

import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, NETCLUSTERCTL, SCALE, check, load,
                     reloads_under_load, run)

DURATION = 10.0         # seconds of load
RELOADS = 20
THREADS = 12
# Enough that every reload happens under load (500 connections between two
# reloads), on a busy machine too; sanitizer builds run slower.
MIN_RATE = 1000 / SCALE  # connections/s


def reload_under_load(mode, workers=2, command="reload"):
    d = Daemon([{"name": "echo", "listen": ["127.0.0.1:0"], "mode": mode}],
               workers=workers, extra={"shutdown_timeout_ms": 5000})
    try:
        d.wait_online()
        port = d.port()
        reloads, stats, elapsed = reloads_under_load(
            d, port, RELOADS, DURATION, THREADS, command=command)
        total = sum(stats.values())
        rate = total / elapsed
        # The last generation may come online after the load ended.
        if reloads == RELOADS:
            d.wait_log("online; older workers drain", RELOADS)
        gens = sum("online; older workers drain" in l for l in d.lines)
        print("  %s: %d %ss in %.1f s, %d connections (%.0f/s): %s"
              % (mode, reloads, command, elapsed, total, rate, stats))
        if command == "upgrade":
            check(d.proc.poll() is None, "the master's pid changed")
            # The last one may have ended after the load did.
            d.wait_log("upgraded in place: pid %d" % d.proc.pid, RELOADS)
        check(reloads == RELOADS and gens == RELOADS,
              "%d reloads, %d generations" % (reloads, gens))
        bad = {k: v for k, v in stats.items() if k != "made"}
        check(not bad, "%s lost connections during reloads: %s" % (mode, bad))
        check(rate >= MIN_RATE, "load too light: %.0f/s" % rate)
        return stats
    finally:
        d.stop()


def test_reload_shared():
    reload_under_load("shared")


def test_reload_reuseport():
    reload_under_load("reuseport")


def test_reload_round_robin():
    reload_under_load("round-robin")


def test_upgrade_shared():
    reload_under_load("shared", command="upgrade")


def test_upgrade_reuseport():
    reload_under_load("reuseport", command="upgrade")


def test_upgrade_round_robin():
    reload_under_load("round-robin", command="upgrade")


def test_bad_reload_keeps_serving():
    d = Daemon([{"name": "echo", "listen": ["127.0.0.1:0"]}], workers=2)
    try:
        d.wait_online()
        port = d.port()
        pids = sorted(d.worker_pids())
        good = open(d.config).read()
        with open(d.config, "w") as f:
            f.write(good.replace('"mode"', '"mdoe"').replace(
                '"workers": 2', '"workers": 0'))
        p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "reload"],
                           capture_output=True, text=True,
                           timeout=30 * SCALE)
        check(p.returncode == 1, "bad reload exit %d" % p.returncode)
        check(p.stderr.startswith("netclusterctl: reload failed: ") and
              "workers: expected an integer from 1 to 1024, got 0" in
              p.stderr, "message: %r" % p.stderr)
        check(sorted(d.worker_pids()) == pids, "workers replaced")
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        check(c.recv(7) == b"hello\r\n", "not serving after bad reload")
        c.close()
        d.wait_log("reload failed, the running configuration stays")
        # A good one again works.
        with open(d.config, "w") as f:
            f.write(good)
        p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "reload"],
                           capture_output=True, text=True,
                           timeout=30 * SCALE)
        check(p.returncode == 0, "good reload: %s" % p.stderr)
        check(d.port() == port, "the listener changed its port")
    finally:
        d.stop()


def test_one_reload_at_a_time():
    """A reload asked for while one runs is refused, saying why; the
    first one then completes. netclusterctl stop ends the daemon."""
    import tempfile
    from harness import WORKER
    gate_dir = tempfile.mkdtemp(prefix="nc-gate.")
    gate = os.path.join(gate_dir, "gate")
    gated = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "gated_worker.sh")
    d = Daemon([{"name": "echo", "listen": ["127.0.0.1:0"]}], workers=1,
               env={"NETCLUSTER_WORKER": gated, "NC_GATE": gate,
                    "NC_REAL_WORKER": WORKER})
    first = None
    try:
        d.wait_online()
        os.mkfifo(gate)
        first = subprocess.Popen([NETCLUSTERCTL, "-s", d.control, "reload"],
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        d.wait_log("reloading ")
        p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "reload"],
                           capture_output=True, text=True,
                           timeout=30 * SCALE)
        check(p.returncode == 1 and "a reload or an upgrade is already "
              "running; try again once it is done" in p.stderr,
              "second reload: %d %r" % (p.returncode, p.stderr))
        p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "upgrade"],
                           capture_output=True, text=True,
                           timeout=30 * SCALE)
        check(p.returncode == 1 and "already running" in p.stderr,
              "upgrade during a reload: %r" % p.stderr)
        with open(gate, "w") as g:     # let the new worker through
            g.write("go\n")
        out, err = first.communicate(timeout=30 * SCALE)
        check(first.returncode == 0 and "reloaded" in out,
              "first reload: %r %r" % (out, err))
        os.unlink(gate)
        p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "stop"],
                           capture_output=True, text=True,
                           timeout=30 * SCALE)
        check(p.returncode == 0 and p.stdout == "stopping\n",
              "stop: %r" % p.stdout)
        d.proc.wait(timeout=10 * SCALE)
        check(d.proc.returncode == 0, "exit %d" % d.proc.returncode)
    finally:
        if first is not None and first.poll() is None:
            first.kill()
            first.wait()
        d.stop()
        if os.path.exists(gate):
            os.unlink(gate)
        os.rmdir(gate_dir)


def test_reload_exclusive_cost():
    """exclusive: each worker binds its own socket, so what was queued on
    an old worker's socket when it closes is lost. Measured, reported."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    d = Daemon([{"name": "echo", "listen": ["127.0.0.1:%d" % port],
                 "mode": "exclusive"}], workers=1)
    try:
        d.wait_online()
        stats = {}
        lock = threading.Lock()
        stop = threading.Event()
        ts = [threading.Thread(target=load, args=(port, stop, stats, lock))
              for _ in range(4)]
        for t in ts:
            t.start()
        start = time.monotonic()
        try:
            for i in range(5):
                p = subprocess.run([NETCLUSTERCTL, "-s", d.control,
                                    "reload"], capture_output=True,
                                   text=True, timeout=60 * SCALE)
                check(p.returncode == 0, "reload %d: %s" % (i, p.stderr))
        finally:
            stop.set()
            for t in ts:
                t.join(30 * SCALE)
        took = time.monotonic() - start
        check(stats.get("made", 0) > 0, "no load: %s" % stats)
        print("  exclusive, 1 worker, fixed port: 5 reloads in %.1f s cost"
              " %s" % (took, stats))
    finally:
        d.stop()


run([test_bad_reload_keeps_serving, test_one_reload_at_a_time,
     test_reload_shared,
     test_reload_reuseport, test_reload_round_robin,
     test_reload_exclusive_cost, test_upgrade_shared,
     test_upgrade_reuseport, test_upgrade_round_robin])
