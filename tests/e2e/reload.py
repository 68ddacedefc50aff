"""Reload without a single dropped connection: a steady load of echo
connections (each one checks its bytes come back) while the master
reloads 20 times, in shared, reuseport and round-robin mode. Then a bad
configuration: refused, the old one keeps serving. And exclusive mode,
where each worker has a socket of its own, kept across reloads too."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, NETCLUSTERCTL, NETCLUSTERD, SCALE, check,
                     free_port, reloads_under_load, run)

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


def test_reload_exclusive():
    """exclusive: each slot's socket is the master's, kept across reloads
    as reuseport's are: the new worker accepts on it before the old one
    stops, and nothing is refused or reset."""
    reload_under_load("exclusive", workers=1)


def test_exclusive_port_per_worker():
    """exclusive with a fixed port and two workers: refused at startup,
    naming the service and saying why; a unix socket path likewise."""
    for listen, want in (("127.0.0.1:%d", "use port 0"),
                         ("unix:%s/x.sock", "serves one worker")):
        d = tempfile.mkdtemp(prefix="nc-e2e-excl.")
        try:
            port = free_port()
            addr = listen % (port if "%d" in listen else d)
            conf = os.path.join(d, "c.json")
            with open(conf, "w") as f:
                json.dump({"workers": 2, "control_socket":
                           os.path.join(d, "ctl.sock"), "services": [
                               {"name": "echo", "mode": "exclusive",
                                "listen": [addr]}]}, f)
            p = subprocess.run([NETCLUSTERD, "-c", conf],
                               capture_output=True, text=True,
                               timeout=30 * SCALE)
            check(p.returncode == 1 and "service echo" in p.stderr and
                  want in p.stderr, "%s: rc %d: %s" % (addr, p.returncode,
                                                      p.stderr))
        finally:
            shutil.rmtree(d, ignore_errors=True)


run([test_bad_reload_keeps_serving, test_one_reload_at_a_time,
     test_reload_shared,
     test_reload_reuseport, test_reload_round_robin,
     test_reload_exclusive, test_exclusive_port_per_worker,
     test_upgrade_shared,
     test_upgrade_reuseport, test_upgrade_round_robin])
