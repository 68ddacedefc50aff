"""Chaos under load: bench/ncload drives connections (connect, greeting,
echo, close) while a random online worker is killed with SIGKILL every
200 ms for 20 s, in shared, reuseport and round-robin modes: the three
storms side by side, with a process spinning beside them, so the machine
is busy as CI's is. The only connections that may fail are those a
killed worker had already taken: greeted, or (at most one per kill)
between its accept() and its greeting. None may be refused, left
unanswered, answered wrong (a second greeting: two workers serving one
connection), or lost from a queue; no kill is taken for a protocol error
or a crash."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD, Daemon, SCALE, check, run

NCLOAD = os.path.join(BUILD, "bench", "ncload")
SECONDS = float(os.environ.get("NC_CHAOS_SECONDS", "20"))
RATE = 1500         # connections a second asked of each ncload
MIN_RATE = 300      # each storm's floor, three of them on two cores
WORKERS = 4
ONLINE = re.compile(r"worker \d+ \[pid (\d+)\] \(slot \d+\) online")


def children(pid):
    """The master's live children (its workers), from /proc."""
    pids = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
            pids += [int(p) for p in f.read().split()]
    return pids


def chaos(mode, seed):
    d = Daemon([{"name": "echo", "listen": ["127.0.0.1:0"], "mode": mode}],
               workers=WORKERS)
    load = None
    try:
        d.wait_online()
        port = d.port()
        load = subprocess.Popen(
            [NCLOAD, "-b", "-c", "64", "-r", str(RATE), "-t", "5000",
             "-d", str(SECONDS), "127.0.0.1:%d" % port],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        rng = random.Random(seed)
        kills = 0
        killed = set()
        online = set()
        seen = 0
        start = time.monotonic()
        next_kill = start + 0.2
        while time.monotonic() < start + SECONDS:
            d.read_lines(max(0.0, next_kill - time.monotonic()))
            if time.monotonic() < next_kill:
                continue
            next_kill += 0.2
            # Only a worker that is online: a starting one is not serving.
            # Not one already killed: it stays a child until reaped. The
            # master's log says which came online (asking it would slow
            # this loop down on a busy machine).
            for line in d.lines[seen:]:
                m = ONLINE.search(line)
                if m:
                    online.add(int(m.group(1)))
            seen = len(d.lines)
            alive = [p for p in children(d.proc.pid)
                     if p in online and p not in killed]
            if alive:
                victim = rng.choice(alive)
                os.kill(victim, signal.SIGKILL)
                killed.add(victim)
                kills += 1
        out, err = load.communicate(timeout=(SECONDS + 30) * SCALE)
        load = None
        check(out, "ncload printed nothing: %s" % err.decode())
        r = json.loads(out)
        # Each kill is replaced at once: SIGKILL is no crash loop.
        d.wait_log("restarting in 0 ms", kills, timeout=10)
        restarts = sum("restarting in 0 ms" in l for l in d.lines)
        print("  %s, %d workers, %d kills in %.0f s: %d connections "
              "(%.0f/s); refused %d, reset before greeting %d, unanswered "
              "%d, wrong %d, other %d; reset after greeting (on a killed "
              "worker) %d; p99 %.1f ms" % (
                  mode, WORKERS, kills, SECONDS, r["made"], r["rate"],
                  r["refused"], r["reset_before_greeting"], r["unanswered"],
                  r["wrong"], r["other"], r["reset_after_greeting"],
                  r["p99_us"] / 1000.0))
        # A kill every 200 ms, while a worker is online to be killed.
        check(kills >= SECONDS * 5 * 0.8, "only %d kills" % kills)
        check(restarts >= kills, "%d kills, %d immediate restarts" % (
            kills, restarts))
        check(r["rate"] >= MIN_RATE, "load too low: %.0f/s" % r["rate"])
        errors = [l for l in d.lines if "protocol error" in l or
                  "killing it" in l]
        check(not errors, "%s: a SIGKILL taken for a protocol error: %s" %
              (mode, errors[:3]))
        for k in ("refused", "unanswered", "wrong", "other"):
            check(r[k] == 0, "%s: %d %s" % (mode, r[k], k))
        # A worker serves one connection at a time between accept() (or
        # its conn.ack) and the greeting: a kill can cut at most that one.
        check(r["reset_before_greeting"] <= kills, "%s: %d resets before "
              "the greeting in %d kills" % (mode, r["reset_before_greeting"],
                                            kills))
        check(r["reset_after_greeting"] <= kills * 64,
              "more resets than connections on killed workers")
        return r
    finally:
        if load is not None:
            load.kill()
            load.communicate()
        d.stop()


def test_chaos_side_by_side():
    """The three storms at once, and a spinning process beside them."""
    results = {}

    def storm(mode, seed):
        try:
            results[mode] = chaos(mode, seed)
        except Exception as e:      # reported below, with the others
            results[mode] = e

    spin = subprocess.Popen(
        [sys.executable, "-c", "import time\nend = time.monotonic() + %f\n"
         "while time.monotonic() < end: pass" % (SECONDS + 10)])
    try:
        threads = [threading.Thread(target=storm, args=(m, i + 1))
                   for i, m in enumerate(("shared", "reuseport",
                                          "round-robin"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        spin.kill()
        spin.wait()
    failed = ["%s: %s" % (m, r) for m, r in sorted(results.items())
              if isinstance(r, Exception)]
    check(not failed, "; ".join(failed))


if __name__ == "__main__":
    run([test_chaos_side_by_side])
