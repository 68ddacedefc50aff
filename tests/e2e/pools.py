"""A pool of workers per service: one configuration runs the built-in echo
service (shared, 2 workers), a Python program on inherited sockets
(inherit_echo.py, shared, 2, with an env and a cwd of its own), a Node.js
one (inherit_echo.js, reuseport, 3, with its own env and cwd) and
examples/cluster-echo linked with libnetcluster (round-robin, 2, its own
env and cwd). status and workers show each pool with its count, and each
service answers.

Then, with clients on every service at once and a process spinning
beside them, one after another: a worker of one pool killed with
SIGKILL (between two of its service's connections: those it holds die
with it), and only its slot gets a new one; a pool scaled up and down
(+2, to an absolute count, -2: its untouched slots keep their workers,
the removed slots are the highest and their workers exit 0 after
draining); a reload of one service (all of its workers replaced, no
other; a scaled pool keeps its count over another service's reload, and
its own brings it back to the file's); a reload of one service a batch
at a time (--batch 1) and a full reload with "reload_batch" in the file
for two pools, while the master's children are counted from /proc and
from its status: never more than N + K alive in a pool, and the log
shows the batches in order (a batch's old workers exit after draining
before the next batch starts). No connection fails on any service, and
every other pool keeps its workers (pids) throughout.

Last, a batch that does not come online (the program exits 1 at start,
as a file in the test's directory tells its wrapper): the reload answers
1 saying which batch failed and why, the workers not yet replaced keep
their pids and go on serving, and no connection fails."""

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BUILD, Daemon, NETCLUSTERCTL, SCALE, check,
                     echo_clients, echo_once, run)

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
NODE = shutil.which("node")
CLUSTER_ECHO = os.path.join(BUILD, "examples", "cluster-echo")
COUNTS = {"echo": 2, "py": 2, "node": 3, "ce": 2}
THREADS = 3             # clients per service
# Each step of the load test waits for this many more connections on
# every service once it is done: the pools serve after it.
AFTER = 20
# Long enough that a worker killed at the timeout would show; each wait
# of the test is far shorter.
SHUTDOWN_MS = 60000 * SCALE

LINE = re.compile(r"service (\S+): worker (\d+) \[pid (\d+)\] (?:\(slot (\d+)"
                  r"\) (started|online)|of generation (\d+) (exited with "
                  r"status 0 after draining))")
SERVING = re.compile(r"\[pid (\d+)\]: inherit_echo(?:\.js)?: pid (\d+) "
                     r"serving")


def services(tmp, ce_command=None, ce_workers=None):
    """The four pools; the programs' env and cwd are their own."""
    return [
        {"name": "echo", "listen": ["127.0.0.1:0"], "mode": "shared",
         "workers": COUNTS["echo"]},
        {"name": "py", "handler": "program", "sockets": "inherit",
         "listen": ["127.0.0.1:0"], "mode": "shared",
         "workers": COUNTS["py"],
         "command": [PYTHON, os.path.join(HERE, "inherit_echo.py")],
         "env": {"NC_POOL_TAG": "python"}, "cwd": tmp},
        {"name": "node", "handler": "program", "sockets": "inherit",
         "listen": ["127.0.0.1:0"], "mode": "reuseport",
         "workers": COUNTS["node"],
         "command": [NODE, os.path.join(HERE, "inherit_echo.js")],
         "env": {"NC_POOL_TAG": "node"}, "cwd": "/"},
        {"name": "ce", "handler": "program", "sockets": "cluster",
         "listen": ["127.0.0.1:0"], "mode": "round-robin",
         "workers": ce_workers or COUNTS["ce"],
         "command": ce_command or [CLUSTER_ECHO, "-p", "0", "-h",
                                   "127.0.0.1"],
         "env": {"NC_POOL_TAG": "cluster"}, "cwd": HERE},
    ]


def ctl(d, *args, timeout=60):
    """netclusterctl ARGS: the CompletedProcess, whatever its status."""
    return subprocess.run([NETCLUSTERCTL, "-s", d.control] + list(args),
                          capture_output=True, text=True,
                          timeout=timeout * SCALE)


def ports(d):
    return {s["name"]: s["listeners"][0]["port"]
            for s in d.ctl("status")["services"]}


def snapshot(d):
    """Each pool's slots: {service: {slot: (pid, generation, state)}}."""
    out = {}
    for w in d.ctl("workers")["workers"]:
        out.setdefault(w["service"], {})[w["slot"]] = (
            w["pid"], w["generation"], w["state"])
    return out


def pids(pool):
    return {slot: v[0] for slot, v in pool.items()}


def serving(d):
    """The pids of the programs on inherited sockets that said they
    serve (their listeners taken and SIGTERM handled)."""
    return {int(m.group(1)) for m in map(SERVING.search, d.lines)
            if m and m.group(1) == m.group(2)}


def wait_pools(d, counts, exclude=(), timeout=30):
    """Until each service has counts[service] slots, each online with a
    pid not in exclude, and each program on inherited sockets said it
    serves: the snapshot."""
    deadline = time.monotonic() + timeout * SCALE
    while True:
        snap = snapshot(d)
        ok = set(snap) == set(counts)
        for s, n in counts.items():
            pool = snap.get(s, {})
            ok = ok and sorted(pool) == list(range(n)) and all(
                st == "online" and pid not in exclude
                for pid, _, st in pool.values())
            if ok and s in ("py", "node"):
                ok = set(pids(pool).values()) <= serving(d)
        if ok:
            return snap
        check(time.monotonic() < deadline, "pools not online as %s: %s; "
              "log:\n%s" % (counts, snap, "\n".join(d.lines[-20:])))
        d.read_lines(0.1)


def same_except(before, after, pool, why):
    """Every pool but pool kept its workers, slot by slot."""
    for s in before:
        if s != pool:
            check(after[s] == before[s], "%s: pool %s changed: %s, before "
                  "%s" % (why, s, after[s], before[s]))


def wait_since(d, mark, text, count=1, timeout=15):
    """Until text appeared count times in the log after line mark."""
    deadline = time.monotonic() + timeout * SCALE
    while sum(text in l for l in d.lines[mark:]) < count:
        check(time.monotonic() < deadline, "timed out waiting for %r x%d;"
              " log:\n%s" % (text, count, "\n".join(d.lines[-30:])))
        d.read_lines(0.2)


def drained(d, mark, service, pid, timeout=30):
    """pid, a worker of service, exits 0 after draining."""
    deadline = time.monotonic() + timeout * SCALE
    pat = re.compile(r"service %s: worker \d+ \[pid %d\] of generation \d+ "
                     r"exited with status 0 after draining" % (service, pid))
    while not any(pat.search(l) for l in d.lines[mark:]):
        gone = [l for l in d.lines[mark:] if "[pid %d] " % pid in l and
                ("exited" in l or "killed" in l)]
        check(not gone, "pid %d of %s: %s" % (pid, service, gone))
        check(time.monotonic() < deadline, "pid %d of %s did not drain; "
              "log:\n%s" % (pid, service, "\n".join(d.lines[-30:])))
        d.read_lines(0.2)


class Load:
    """THREADS clients on each service, a connection after another (the
    greeting and an echo each), counted by service, and a process
    spinning beside them, as on a busy machine. hold(service) waits until
    none of that service's clients is inside a connection and keeps them
    out until release(service): a worker killed with SIGKILL takes the
    connections it holds with it, so a kill comes between two."""

    def __init__(self, ports):
        self.ports = ports
        self.cond = threading.Condition()
        self.stats = {s: {} for s in ports}
        self.inside = {s: 0 for s in ports}
        self.held = set()
        self.stop = threading.Event()
        self.spin = subprocess.Popen(
            [sys.executable, "-c", "import time\nend = time.monotonic() + "
             "%d\nwhile time.monotonic() < end: pass" % (300 * SCALE)])
        self.threads = [threading.Thread(target=self.client, args=(s,))
                        for s in ports for _ in range(THREADS)]
        for t in self.threads:
            t.start()

    def client(self, service):
        payload = os.urandom(16)
        while True:
            with self.cond:
                self.cond.wait_for(lambda: service not in self.held or
                                   self.stop.is_set(), 60 * SCALE)
                if self.stop.is_set():
                    return
                self.inside[service] += 1
            key = echo_once(self.ports[service], payload)
            with self.cond:
                self.inside[service] -= 1
                st = self.stats[service]
                st[key] = st.get(key, 0) + 1
                self.cond.notify_all()

    def hold(self, service):
        with self.cond:
            self.held.add(service)
            check(self.cond.wait_for(lambda: self.inside[service] == 0,
                                     10 * SCALE),
                  "%s: clients still inside a connection" % service)

    def release(self, service):
        with self.cond:
            self.held.discard(service)
            self.cond.notify_all()

    def counts(self):
        with self.cond:
            return {s: dict(v) for s, v in self.stats.items()}

    def wait_made(self, n, timeout=30):
        """Until every service made n more connections."""
        with self.cond:
            start = {s: v.get("made", 0) for s, v in self.stats.items()}
            check(self.cond.wait_for(lambda: all(
                v.get("made", 0) >= start[s] + n
                for s, v in self.stats.items()), timeout * SCALE),
                "connections made: %s, before %s" % (self.stats, start))

    def check_clean(self, why):
        bad = {s: {k: n for k, n in v.items() if k != "made"}
               for s, v in self.counts().items()}
        bad = {s: v for s, v in bad.items() if v}
        check(not bad, "%s: failed connections: %s" % (why, bad))

    def close(self):
        self.stop.set()
        with self.cond:
            self.held.clear()
            self.cond.notify_all()
        for t in self.threads:
            t.join(30 * SCALE)
        self.spin.kill()
        self.spin.wait()


class Steps:
    """Runs each step under the load: figures by step, no failure."""

    def __init__(self, load):
        self.load = load

    def __call__(self, name, fn):
        before = self.load.counts()
        start = time.monotonic()
        extra = fn()
        took = time.monotonic() - start
        self.load.wait_made(AFTER)
        self.load.check_clean(name)
        after = self.load.counts()
        made = {s: after[s].get("made", 0) - before[s].get("made", 0)
                for s in after}
        print("  %-34s %5.2f s, made %s%s" % (
            name, took, " ".join("%s %d" % x for x in made.items()),
            extra or ""))
        sys.stdout.flush()


def pool_children(master):
    """The master's live children, counted by pool: each program and
    worker has its service in NETCLUSTER_SERVICE. A child not yet exec'd
    (the master's environment) or already a zombie (none) has none."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % master):
        try:
            with open("/proc/%d/task/%s/children" % (master, tid)) as f:
                kids = f.read().split()
        except FileNotFoundError:
            continue
        for pid in kids:
            try:
                with open("/proc/%s/environ" % pid, "rb") as f:
                    env = f.read().split(b"\0")
            except (FileNotFoundError, ProcessLookupError):
                continue
            for kv in env:
                if kv.startswith(b"NETCLUSTER_SERVICE="):
                    s = kv[19:].decode()
                    out[s] = out.get(s, 0) + 1
    return out


def events(d, mark, service):
    """The pool's starts, onlines and exits after draining since mark:
    (what, id, pid, slot or generation), in the log's order."""
    out = []
    for l in d.lines[mark:]:
        m = LINE.search(l)
        if m and m.group(1) == service:
            if m.group(5):
                out.append((m.group(5), int(m.group(2)), int(m.group(3)),
                            int(m.group(4))))
            else:
                out.append(("drained", int(m.group(2)), int(m.group(3)),
                            int(m.group(6))))
    return out


def check_batches(d, mark, service, old, n, k):
    """The log since mark: the pool's n slots came a batch of k at a
    time, in slot order; each batch started once the one before was
    online and its old workers (of the pids in old) had exited after
    draining; every old worker exited 0 after draining."""
    ev = events(d, mark, service)
    starts = [i for i, e in enumerate(ev) if e[0] == "started"]
    check(len(starts) == n, "%s: %d started, not %d: %s" % (
        service, len(starts), n, ev))
    new = {ev[i][1] for i in starts}
    check([ev[i][3] for i in starts] == list(range(n)),
          "%s: slots started in the order %s" % (
              service, [ev[i][3] for i in starts]))
    for j, i in enumerate(starts):
        batch = j // k
        online = sum(e[0] == "online" and e[1] in new for e in ev[:i])
        exited = sum(e[0] == "drained" and e[2] in old for e in ev[:i])
        check(online >= batch * k and exited >= batch * k,
              "%s: the worker of slot %d (batch %d) started when %d new "
              "were online and %d old had exited: %s" % (
                  service, ev[i][3], batch + 1, online, exited, ev))
    drained_ = {e[2] for e in ev if e[0] == "drained"}
    check(set(old) <= drained_, "%s: old workers %s did not exit 0 after "
          "draining: %s" % (service, sorted(set(old) - drained_), ev))


class Sampler:
    """Counts each pool's workers alive, as often as it can: the master's
    children from /proc each time, and the status "alive" of each
    service as often as the master answers (a status takes it a while:
    one request is out at a time, /proc is read meanwhile). Checks each
    count against limits[service] (N + K) and the progress status shows
    of a reload by batches[service] (K); keeps the peaks."""

    def __init__(self, d, limits, batches):
        self.d, self.limits, self.batches = d, limits, batches
        self.progress = {}
        self.peaks = {}
        self.procs = self.statuses = 0
        self.sock = None
        self.got = b""

    def count(self, s, n, where):
        self.peaks[s] = max(self.peaks.get(s, 0), n)
        check(n <= self.limits[s], "%s: %d workers alive (%s), over %d" % (
            s, n, where, self.limits[s]))

    def ask(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10 * SCALE)
        self.sock.connect(self.d.control)
        self.sock.sendall(b'{"command": "status"}\n')
        self.sock.setblocking(False)
        self.got = b""
        self.asked = time.monotonic()

    def answer(self):
        x = self.sock.recv(65536)
        check(x, "the control socket closed after %r" % self.got)
        self.got += x
        if not self.got.endswith(b"\n"):
            return
        self.close()
        st = json.loads(self.got)
        check(st.get("ok") is True, "status: %s" % st)
        for s in st["services"]:
            self.count(s["name"], s["alive"], "status")
            r = s["reloading"]
            if r is not None and s["name"] in self.batches:
                k = self.batches[s["name"]]
                n = self.limits[s["name"]] - k
                check((r["batch_size"], r["batches"]) == (
                    k, (n + k - 1) // k) and 1 <= r["batch"] <= r["batches"]
                    and r["batch"] >= self.progress.get(s["name"], 1),
                    "%s reloading: %s, before batch %s" % (
                        s["name"], r, self.progress.get(s["name"])))
                self.progress[s["name"]] = r["batch"]
        self.statuses += 1

    def poll(self, timeout=0.002):
        """One count from /proc, and the status's answer if it came."""
        for s, n in pool_children(self.d.proc.pid).items():
            self.count(s, n, "/proc")
        self.procs += 1
        if self.sock is None:
            self.ask()
        check(time.monotonic() < self.asked + 10 * SCALE, "no status")
        r, _, _ = select.select([self.sock, self.d.proc.stderr], [], [],
                                timeout)
        if self.sock in r:
            self.answer()
        if self.d.proc.stderr in r:
            self.d.read_lines(0)

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def figures(self):
        return ("%d counts from /proc, %d statuses (batches seen %s), at "
                "most %s alive" % (self.procs, self.statuses, self.progress,
                                   ", ".join("%s %d" % x for x in
                                             sorted(self.peaks.items()))))


def batched_reload(d, args, limits, batches, renewed, timeout=60):
    """netclusterctl reload ARGS while a Sampler counts each pool's
    workers alive, until every old worker of the renewed pools exited.
    Returns (answer, seconds, sampler, mark, before)."""
    before = snapshot(d)
    old = {s: set(pids(before[s]).values()) for s in renewed}
    mark = len(d.lines)
    sampler = Sampler(d, limits, batches)
    start = time.monotonic()
    p = subprocess.Popen([NETCLUSTERCTL, "-s", d.control] + list(args),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        while p.poll() is None:
            sampler.poll()
            check(time.monotonic() < start + timeout * SCALE,
                  "reload %s did not answer" % args)
        took = time.monotonic() - start
        out, err = p.communicate()
        check(p.returncode == 0, "reload %s: %d %r %r" % (
            args, p.returncode, out, err))
        # The answer comes once the last batch is online.
        after = snapshot(d)
        for s in renewed:
            check(all(st == "online" and pid not in old[s]
                      for pid, _, st in after[s].values()),
                  "%s after the answer: %s, old %s" % (s, after[s], old[s]))
        deadline = time.monotonic() + 30 * SCALE
        while not all({e[2] for e in events(d, mark, s)
                       if e[0] == "drained"} >= old[s] for s in renewed):
            sampler.poll(0.01)
            check(time.monotonic() < deadline, "old workers still alive; "
                  "log:\n%s" % "\n".join(d.lines[-30:]))
    finally:
        sampler.close()
        if p.poll() is None:
            p.kill()
            p.communicate()
    return out, took, sampler, mark, before


def test_mixed_pools():
    """The four pools, each with its count, env and cwd; each answers."""
    tmp = tempfile.mkdtemp(prefix="nc-pools.")
    d = Daemon(services(tmp), workers=1,
               extra={"shutdown_timeout_ms": SHUTDOWN_MS})
    try:
        d.wait_online()
        snap = wait_pools(d, COUNTS)
        st = d.ctl("status")
        check(st["workers"] == st["alive"] == sum(COUNTS.values()),
              "status: %d workers, %d alive" % (st["workers"], st["alive"]))
        for s in st["services"]:
            n = COUNTS[s["name"]]
            check((s["workers"], s["file_workers"], s["online"], s["alive"],
                   s["reloading"]) == (n, n, n, n, None),
                  "status of %s: %s" % (s["name"], s))
        check([s["name"] for s in st["services"]] == list(COUNTS),
              "services %s" % [s["name"] for s in st["services"]])
        gens = {s: {g for _, g, _ in pool.values()}
                for s, pool in snap.items()}
        check(gens == {s["name"]: {s["generation"]} for s in
                       st["services"]}, "generations %s, status %s" % (
                           gens, [s["generation"] for s in st["services"]]))
        # The text shows each pool apart.
        p = ctl(d, "workers")
        groups = re.split(r"^service (\S+):\n", p.stdout, flags=re.M)[1:]
        rows = {groups[i]: [r for r in groups[i + 1].splitlines()
                            if r[:1].isdigit()]
                for i in range(0, len(groups), 2)}
        check({s: len(r) for s, r in rows.items()} == COUNTS,
              "workers text:\n%s" % p.stdout)
        # Each program runs in its cwd with its env; nobody else's.
        want = {"py": ("python", tmp), "node": ("node", "/"),
                "ce": ("cluster", HERE)}
        for s, pool in snap.items():
            for pid in pids(pool).values():
                with open("/proc/%d/environ" % pid, "rb") as f:
                    env = dict(kv.split(b"=", 1) for kv in
                               f.read().split(b"\0") if b"=" in kv)
                tag = env.get(b"NC_POOL_TAG")
                check(env.get(b"NETCLUSTER_SERVICE") == s.encode(),
                      "pid %d of %s: NETCLUSTER_SERVICE %s" % (
                          pid, s, env.get(b"NETCLUSTER_SERVICE")))
                cwd = os.readlink("/proc/%d/cwd" % pid)
                if s in want:
                    check(tag == want[s][0].encode() and
                          cwd == os.path.realpath(want[s][1]),
                          "pid %d of %s: env %s, cwd %s" % (pid, s, tag, cwd))
                else:
                    check(tag is None, "pid %d of echo has %s" % (pid, tag))
        # Each answers.
        for s, port in ports(d).items():
            ok, failures = echo_clients(("127.0.0.1", port), 20)
            check(ok == 20 and not failures, "%s: %d ok, %s" % (
                s, ok, failures[:3]))
        print("  %s" % ", ".join("%s %d workers" % (s, len(pool))
                                 for s, pool in snap.items()))
    finally:
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def kill_one(d, load, service, slot):
    """SIGKILL to the worker of service's slot, between two connections:
    only that slot gets a new worker."""
    before = wait_pools(d, COUNTS)
    victim = before[service][slot][0]
    mark = len(d.lines)
    load.hold(service)
    try:
        os.kill(victim, signal.SIGKILL)
    finally:
        load.release(service)
    wait_since(d, mark, "[pid %d] (slot %d) killed by signal 9" % (
        victim, slot))
    after = wait_pools(d, COUNTS, exclude=[victim])
    same_except(before, after, service, "SIGKILL to %s" % service)
    want = dict(pids(before[service]))
    want[slot] = after[service][slot][0]
    check(pids(after[service]) == want, "%s after the kill: %s, before "
          "%s" % (service, pids(after[service]), pids(before[service])))
    return " (pid %d -> %d)" % (victim, after[service][slot][0])


def scale(d, service, count, was, want):
    """netclusterctl scale SERVICE COUNT, from was workers to want: the
    other pools and the untouched slots keep their workers; the slots
    added start, the highest ones go and their workers drain."""
    counts = dict(COUNTS)
    counts[service] = was
    before = wait_pools(d, counts)
    mark = len(d.lines)
    p = ctl(d, "--json", "scale", service, count)
    check(p.returncode == 0, "scale %s %s: %d %r" % (
        service, count, p.returncode, p.stderr))
    reply = json.loads(p.stdout)
    check((reply["service"], reply["workers"], reply["file_workers"]) ==
          (service, want, COUNTS[service]), "scale %s %s: %s" % (
              service, count, reply))
    counts[service] = want
    after = wait_pools(d, counts)
    same_except(before, after, service, "scale %s %s" % (service, count))
    kept = {i: pid for i, pid in pids(before[service]).items() if i < want}
    check({i: pid for i, pid in pids(after[service]).items() if i < was}
          == kept, "scale %s %s: %s, before %s" % (
              service, count, pids(after[service]), pids(before[service])))
    for i in range(was, want):
        check(after[service][i][0] not in pids(before[service]).values(),
              "slot %d's pid" % i)
    for i in range(want, was):
        drained(d, mark, service, before[service][i][0])
    s = [x for x in d.ctl("status")["services"] if x["name"] == service][0]
    check((s["workers"], s["file_workers"]) == (want, COUNTS[service]),
          "status of %s: %s" % (service, s))
    return " (%d -> %d)" % (was, want)


def reload_one(d, service, counts=COUNTS):
    """netclusterctl reload SERVICE, the pools at counts: all of its
    workers replaced (they drain), at the file's count again; every
    other pool keeps its workers, and its count if scaled."""
    before = wait_pools(d, counts)
    mark = len(d.lines)
    start = time.monotonic()
    p = ctl(d, "reload", service)
    took = time.monotonic() - start
    check(p.returncode == 0 and p.stdout == "service %s reloaded\n" %
          service, "reload %s: %d %r %r" % (service, p.returncode, p.stdout,
                                            p.stderr))
    old = pids(before[service]).values()
    counts = dict(counts)
    counts[service] = COUNTS[service]
    after = wait_pools(d, counts, exclude=old)
    same_except(before, after, service, "reload %s" % service)
    gens = {g for _, g, _ in after[service].values()}
    check(len(gens) == 1 and min(gens) > max(
        g for _, g, _ in before[service].values()), "generations %s" %
        after[service])
    gen = gens.pop()
    wait_since(d, mark, "service %s: generation %d online; older workers "
               "drain" % (service, gen))
    st = {x["name"]: x for x in d.ctl("status")["services"]}
    check(st[service]["generation"] == gen and all(
        {st[s]["generation"]} == {g for _, g, _ in before[s].values()}
        for s in before if s != service), "status generations %s" % {
            s: x["generation"] for s, x in st.items()})
    check(all((x["workers"], x["file_workers"]) == (counts[s], COUNTS[s])
              for s, x in st.items()), "status counts %s" % {
                  s: (x["workers"], x["file_workers"])
                  for s, x in st.items()})
    for pid in old:
        drained(d, mark, service, pid)
    return " (answered in %.2f s)" % took


def test_pools_under_load():
    """Kill, scale, reload and batched reloads, one pool at a time, with
    clients on every service and a process spinning beside them."""
    tmp = tempfile.mkdtemp(prefix="nc-pools.")
    d = Daemon(services(tmp), workers=1,
               extra={"shutdown_timeout_ms": SHUTDOWN_MS})
    load = None
    try:
        d.wait_online()
        wait_pools(d, COUNTS)
        load = Load(ports(d))
        load.wait_made(AFTER)
        step = Steps(load)

        # a. SIGKILL: only the slot is replaced.
        step("SIGKILL node slot 1 (reuseport)",
             lambda: kill_one(d, load, "node", 1))
        step("SIGKILL ce slot 0 (round-robin)",
             lambda: kill_one(d, load, "ce", 0))
        step("SIGKILL echo slot 1 (shared)",
             lambda: kill_one(d, load, "echo", 1))

        # b. Scale up and down.
        step("scale py +2", lambda: scale(d, "py", "+2", 2, 4))
        step("scale py 3", lambda: scale(d, "py", "3", 4, 3))
        step("scale py -2", lambda: scale(d, "py", "-2", 3, 1))
        step("scale py 2", lambda: scale(d, "py", "2", 1, 2))
        step("scale ce +2", lambda: scale(d, "ce", "+2", 2, 4))

        # c. A reload of one service. ce's count holds over another
        # service's reload, and its own reload brings it back to the
        # file's.
        scaled = dict(COUNTS, ce=4)
        step("reload echo (ce at 4)", lambda: reload_one(d, "echo", scaled))
        step("reload ce (4 -> 2)", lambda: reload_one(d, "ce", scaled))
        step("reload py", lambda: reload_one(d, "py"))

        # d. A batch at a time: N + K alive at most, batches in order.
        def batch_node():
            wait_pools(d, COUNTS)
            limits = {s: n for s, n in COUNTS.items()}
            limits["node"] = COUNTS["node"] + 1
            out, took, sampler, mark, before = batched_reload(
                d, ["reload", "node", "--batch", "1"], limits, {"node": 1},
                ["node"])
            check(out == "service node reloaded\n", "answer %r" % out)
            check_batches(d, mark, "node", set(pids(
                before["node"]).values()), COUNTS["node"], 1)
            after = wait_pools(d, COUNTS)
            same_except(before, after, "node", "reload node --batch 1")
            return " (answered in %.2f s; %s)" % (took, sampler.figures())
        step("reload node --batch 1", batch_node)

        def batch_file():
            wait_pools(d, COUNTS)
            with open(d.config) as f:
                conf = json.load(f)
            batch = {"ce": 1, "node": 2}
            for s in conf["services"]:
                if s["name"] in batch:
                    s["reload_batch"] = batch[s["name"]]
            with open(d.config + ".new", "w") as f:
                json.dump(conf, f)
            os.rename(d.config + ".new", d.config)
            limits = {s: n + batch.get(s, n) for s, n in COUNTS.items()}
            out, took, sampler, mark, before = batched_reload(
                d, ["reload"], limits, batch, list(COUNTS))
            check(out.startswith("reloaded"), "answer %r" % out)
            for s, k in batch.items():
                check_batches(d, mark, s, set(pids(before[s]).values()),
                              COUNTS[s], k)
            after = wait_pools(d, COUNTS)
            for s in COUNTS:
                check(not set(pids(after[s]).values()) &
                      set(pids(before[s]).values()), "%s kept workers "
                      "across the reload: %s, %s" % (s, after[s], before[s]))
            return " (answered in %.2f s; %s)" % (took, sampler.figures())
        step("reload, reload_batch ce 1 node 2", batch_file)
        load.check_clean("the load")
        total = load.counts()
    finally:
        if load is not None:
            load.close()
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("  in all: %s" % ", ".join("%s %d" % (s, v.get("made", 0))
                                    for s, v in total.items()))
    check(not any("killing it" in l for l in d.lines), "a worker was "
          "killed at the drain timeout")


def test_failed_batch():
    """ce's second generation exits 1 at start (its wrapper sees a file):
    a batched reload stops at the batch that failed, says so, and the
    workers not yet replaced go on. A batch of two whose one worker came
    online and the other failed after: the one online is stopped and
    drains (exit 0), not killed."""
    tmp = tempfile.mkdtemp(prefix="nc-pools.")
    wrapper = os.path.join(tmp, "ce.sh")
    fail = os.path.join(tmp, "fail")
    token = os.path.join(tmp, "pass-once")
    slow = os.path.join(tmp, "slow")
    go = os.path.join(tmp, "go")
    with open(wrapper, "w") as f:
        # With fail: exit 1 at start, but for one start if token is
        # there (rmdir takes it, once); with slow, only once go is there
        # (waited for 30 s at most).
        f.write("#!/bin/sh\n"
                "if [ -e %s ] && ! rmdir %s 2>/dev/null; then\n"
                "\tn=0\n"
                "\twhile [ -e %s ] && [ ! -e %s ] && [ $n -lt 600 ]; do\n"
                "\t\tsleep 0.05; n=$((n + 1))\n"
                "\tdone\n"
                "\techo '<3>ce.sh: told to fail' >&2\n"
                "\texit 1\n"
                "fi\n"
                "exec %s -p 0 -h 127.0.0.1\n" % (fail, token, slow, go,
                                                 CLUSTER_ECHO))
    os.chmod(wrapper, 0o755)
    counts = dict(COUNTS)
    counts["ce"] = 3
    d = Daemon(services(tmp, ce_command=[wrapper], ce_workers=3), workers=1,
               extra={"shutdown_timeout_ms": SHUTDOWN_MS})
    load = None
    try:
        d.wait_online()
        wait_pools(d, counts)
        load = Load(ports(d))
        load.wait_made(AFTER)
        step = Steps(load)

        def failed(batch, passing):
            """A reload --batch 1 whose batch fails; passing batches
            before it come online."""
            before = wait_pools(d, counts)
            ce = pids(before["ce"])
            with open(fail, "w"):
                pass
            if passing:
                os.mkdir(token)
            mark = len(d.lines)
            start = time.monotonic()
            p = ctl(d, "reload", "ce", "--batch", "1")
            took = time.monotonic() - start
            check(p.returncode == 1 and p.stdout == "", "reload: %d %r %r"
                  % (p.returncode, p.stdout, p.stderr))
            check(re.match(r"netclusterctl: service ce: batch %d of 3 "
                           r"failed: its worker \d+ \[pid \d+\] ended before "
                           r"it was online; the workers not yet replaced "
                           r"keep serving\n$" % batch, p.stderr),
                  "reload answered %r" % p.stderr)
            wait_since(d, mark, "ce.sh: told to fail")
            after = wait_pools(d, counts)
            same_except(before, after, "ce", "the failed reload")
            now = pids(after["ce"])
            for i in range(3):
                if i < batch - 1:
                    check(now[i] != ce[i], "slot %d not replaced" % i)
                    drained(d, mark, "ce", ce[i])
                else:
                    check(now[i] == ce[i], "slot %d: pid %d, before %d" % (
                        i, now[i], ce[i]))
            check(not os.path.exists(token), "the token was not taken")
            # The workers not replaced go on serving.
            served = {w["slot"]: w["accepted"] for w in
                      d.ctl("workers")["workers"] if w["service"] == "ce"}
            load.wait_made(AFTER)
            deadline = time.monotonic() + 30 * SCALE
            while True:
                now = {w["slot"]: w["accepted"] for w in
                       d.ctl("workers")["workers"] if w["service"] == "ce"}
                if all(now[i] > served[i] for i in range(batch - 1, 3)):
                    break
                check(time.monotonic() < deadline, "slots not serving: %s, "
                      "before %s" % (now, served))
                load.wait_made(1)
            os.unlink(fail)
            return " (answered 1 in %.2f s: %s)" % (
                took, p.stderr.split(": ", 1)[1].split(";")[0])

        step("reload ce --batch 1, batch 1 fails", lambda: failed(1, False))
        step("reload ce --batch 1, batch 2 fails", lambda: failed(2, True))

        def failed_late():
            """--batch 2: one new worker online, then the other fails."""
            before = wait_pools(d, counts)
            old = set(pids(before["ce"]).values())
            for path in (fail, slow):
                with open(path, "w"):
                    pass
            os.mkdir(token)
            mark = len(d.lines)
            reload = subprocess.Popen(
                [NETCLUSTERCTL, "-s", d.control, "reload", "ce", "--batch",
                 "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True)
            try:
                # `workers` lists the slots' workers, not a batch's.
                online = re.compile(r"service ce: worker \d+ \[pid (\d+)\] "
                                    r"\(slot \d+\) online")
                deadline = time.monotonic() + 30 * SCALE
                while True:
                    new = [int(m.group(1)) for m in map(
                        online.search, d.lines[mark:]) if m]
                    if new:
                        break
                    check(time.monotonic() < deadline, "no new ce worker "
                          "online; log:\n%s" % "\n".join(d.lines[-20:]))
                    d.read_lines(0.05)
                check(new[0] not in old, "pid %d was online before" % new[0])
                with open(go, "w"):
                    pass
                out, err = reload.communicate(timeout=60 * SCALE)
            finally:
                if reload.poll() is None:
                    reload.kill()
                    reload.wait()
            check(reload.returncode == 1 and re.match(
                r"netclusterctl: service ce: batch 1 of 2 failed: its "
                r"worker \d+ \[pid \d+\] ended before it was online",
                err), "reload: %d %r" % (reload.returncode, err))
            drained(d, mark, "ce", new[0])
            check(not any("killing it" in l for l in d.lines[mark:]),
                  "a worker was killed: %s" % [
                      l for l in d.lines[mark:] if "killing it" in l])
            after = wait_pools(d, counts)
            check(pids(after["ce"]) == pids(before["ce"]), "ce: %s, before "
                  "%s" % (pids(after["ce"]), pids(before["ce"])))
            for path in (fail, slow, go):
                os.unlink(path)
            return " (its online worker %d drained)" % new[0]
        step("reload ce --batch 2, the second of batch 1 fails later",
             failed_late)

        def good():
            before = wait_pools(d, counts)
            p = ctl(d, "reload", "ce", "--batch", "1")
            check(p.returncode == 0, "reload: %r" % p.stderr)
            after = wait_pools(d, counts, exclude=pids(
                before["ce"]).values())
            same_except(before, after, "ce", "the good reload")
        step("reload ce --batch 1, good again", good)
        load.check_clean("the load")
    finally:
        if load is not None:
            load.close()
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run([test_mixed_pools, test_pools_under_load, test_failed_batch])
