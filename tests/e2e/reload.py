"""Reload without a single dropped connection: a steady load of echo
connections (each one checks its bytes come back) while the master
reloads 20 times, in shared, reuseport and round-robin mode. Then a bad
configuration: refused, the old one keeps serving. And exclusive mode,
where each worker has a socket of its own, kept across reloads too."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILD, Daemon, NETCLUSTERCTL, NETCLUSTERD, SCALE,
                     check, free_port, reloads_under_load, run)

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


def ctl_reload(d, *args, timeout=60):
    """netclusterctl reload ARGS: (exit status, output, seconds)."""
    import time
    start = time.monotonic()
    p = subprocess.run([NETCLUSTERCTL, "-s", d.control, "reload"] +
                       list(args), capture_output=True, text=True,
                       timeout=timeout * SCALE)
    return p.returncode, p.stdout + p.stderr, time.monotonic() - start


def test_long_reload_answered():
    """A batched reload that outlasts the control socket's idle time
    (10 s): each old worker holds a connection, so each batch waits for
    its old worker's shutdown_timeout_ms (11 s); the client that asked is
    answered all the same, once the last batch is online."""
    d = Daemon([{"name": "echo", "listen": ["127.0.0.1:0"],
                 "mode": "round-robin"}], workers=2,
               extra={"shutdown_timeout_ms": 11000})
    held = []
    try:
        d.wait_online()
        port = d.port()
        # Round-robin: one connection for each of the two workers.
        for _ in range(2):
            c = socket.create_connection(("127.0.0.1", port),
                                         timeout=10 * SCALE)
            check(c.recv(7) == b"hello\r\n", "no greeting")
            held.append(c)
        rc, out, took = ctl_reload(d, "--batch", "1", timeout=120)
        check(rc == 0 and "reloaded" in out, "reload: %d %r" % (rc, out))
        check(took >= 10.0, "answered after %.1f s: the old worker's "
              "connection did not hold the batch" % took)
        d.wait_log("batch 2 of 2")
        print("  a batched reload answered after %.1f s" % took)
    finally:
        for c in held:
            c.close()
        d.stop()


def test_failed_batch_keeps_slots():
    """A reload that grows a pool of programs from 2 to 3 and whose new
    program cannot start fails at its first batch: the 2 old workers
    keep their slots and pids, the slot it added goes. Then a batch that
    fails while an old worker died meanwhile: that slot starts its old
    program again, and the pool is whole."""
    tmp = tempfile.mkdtemp(prefix="nc-e2e-failbatch.")
    ce = os.path.join(BUILD, "examples", "cluster-echo")
    good = os.path.join(tmp, "good.sh")
    bad = os.path.join(tmp, "bad.sh")
    gate = os.path.join(tmp, "gate")
    with open(good, "w") as f:
        f.write("#!/bin/sh\nexec %s -p 0 -h 127.0.0.1\n" % ce)
    with open(bad, "w") as f:
        # Waits, when a gate is there, for the test to open it; then fails.
        f.write("#!/bin/sh\n[ -p %s ] && read -r _ <%s\n"
                "echo '<3>bad.sh: cannot start' >&2\nexit 1\n" % (gate,
                                                                 gate))
    os.chmod(good, 0o755)
    os.chmod(bad, 0o755)
    svc = {"name": "ce", "handler": "program", "sockets": "cluster",
           "mode": "round-robin", "listen": ["127.0.0.1:0"],
           "command": [good]}
    d = Daemon([svc], workers=2)

    def write(command, workers):
        conf = json.load(open(d.config))
        conf["services"][0]["command"] = [command]
        conf["services"][0]["workers"] = workers
        with open(d.config, "w") as f:
            json.dump(conf, f)

    def pool():
        st = d.ctl("status")["services"][0]
        ws = sorted((w["slot"], w["pid"], w["state"])
                    for w in d.ctl("workers")["workers"])
        return st["workers"], st["online"], ws

    try:
        d.wait_online()
        before = pool()
        write(bad, 3)
        rc, out, _ = ctl_reload(d)
        check(rc == 1 and "batch 1 of 1 failed" in out and "keep "
              "serving" in out, "reload: %d %r" % (rc, out))
        after = pool()
        check(after == before and after[:2] == (2, 2),
              "after the failed reload: %s, before %s" % (after, before))
        c = socket.create_connection(("127.0.0.1", d.port()),
                                     timeout=10 * SCALE)
        check(c.recv(7) == b"hello\r\n", "not serving")
        c.close()
        # Again, the old worker of slot 0 killed while the batch waits.
        write(bad, 2)
        os.mkfifo(gate)
        first = subprocess.Popen([NETCLUSTERCTL, "-s", d.control, "reload",
                                  "--batch", "1"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        d.wait_log("batch 1 of 2: slots 0 to 0")
        victim = [pid for slot, pid, _ in after[2] if slot == 0][0]
        os.kill(victim, signal.SIGKILL)
        d.wait_log("[pid %d] (slot 0) killed by signal 9" % victim)
        with open(gate, "w") as g:
            g.write("go\n")
        out, _ = first.communicate(timeout=60 * SCALE)
        check(first.returncode == 1 and "batch 1 of 2 failed" in out,
              "reload: %d %r" % (first.returncode, out))
        # Two at the start, and slot 0's old program again.
        d.wait_log(") started: " + good, 3)
        d.wait_log("(slot 0) online", 2)
        workers, online, ws = pool()
        check((workers, online) == (2, 2) and ws[1] == after[2][1] and
              ws[0][1] != victim, "after the second: %s" % ((workers,
                                                            online, ws),))
        print("  failed batches: the pool stayed %d of %d online" % (
            online, workers))
    finally:
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


run([test_bad_reload_keeps_serving, test_one_reload_at_a_time,
     test_reload_shared,
     test_reload_reuseport, test_reload_round_robin,
     test_reload_exclusive, test_exclusive_port_per_worker,
     test_upgrade_shared,
     test_upgrade_reuseport, test_upgrade_round_robin,
     test_long_reload_answered, test_failed_batch_keeps_slots])
