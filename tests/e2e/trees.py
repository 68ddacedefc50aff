"""Process trees: each worker leads a process group of its own, which the
master signals as one (SIGTERM to stop a program without a channel, its
kills) and SIGKILLs when the worker ends, so nothing a program started
outlives it; and netclusterd as PID 1 of a PID namespace reaps the
orphans handed to it without taking them for workers.

a. trees_prog.py forks a child that keeps the listening socket and
   ignores SIGTERM. The child is in the worker's group. A SIGKILL to the
   worker takes the child with it at once; a reload whose programs exit
   at SIGTERM, and one whose programs ignore it (killed at
   shutdown_timeout_ms), leave nothing of the old trees within
   shutdown_timeout_ms; after `netclusterctl stop` nothing is left, the
   master exited 0 and the port refuses connections (no child holds the
   socket).
b. The same with gunicorn (a master and 2 workers of its own, each
   netclusterd worker; its socket from LISTEN_FDS) serving a WSGI app
   of the test's: it answers HTTP, its workers are in its group, and
   none of them outlives it, after a SIGKILL (at once), a reload or a
   stop.
c. netclusterd as PID 1 (unshare --pid --fork --mount-proc), as the
   entry point of a container: a program whose child forks 5
   grandchildren and exits, so they are orphans in sessions of their
   own, reparented to netclusterd; once they exit (status 3),
   netclusterd reaps them (no zombie in the namespace), logs nothing of
   them, and its workers and counts are as before. SIGTERM from outside
   (its pid here) stops it: exit 0, "stopped". Its built-in workers
   (netcluster-worker) come online and serve there as anywhere."""

import http.client
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Daemon, Failure, NETCLUSTERCTL, NETCLUSTERD, SCALE,
                     check, echo_once, run)

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
PROG = os.path.join(HERE, "trees_prog.py")
GUNICORN = "/usr/bin/gunicorn"
SHUTDOWN_MS = 2000
AT_ONCE_S = 1.0         # a SIGKILLed worker's tree is gone within

APP = '''"""trees.py's WSGI app: who answered."""
import os


def app(environ, start_response):
    body = b"trees_app pid %d\\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''


def stat(pid):
    """(state, ppid, pgrp, session, starttime) of pid, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (fields[0], int(fields[1]), int(fields[2]), int(fields[3]),
            int(fields[19]))


def tree(pid):
    """pid and its descendants, the live ones (not zombies)."""
    out = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        st = stat(p)
        if st is None or st[0] in "ZX":
            continue
        out.add(p)
        try:
            for tid in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, tid)) as f:
                    todo += [int(x) for x in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


class Seen:
    """Every process of the trees a test saw, by its start time, and
    every one with marker (the test's directory) in its environment:
    what is left of them at the end is killed (and fails the test)."""

    def __init__(self, marker):
        self.procs = {}
        self.marker = marker.encode()

    def add(self, pids):
        for pid in pids:
            st = stat(pid)
            if st is not None:
                self.procs[pid] = st[4]

    def kill_left(self):
        for name in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open("/proc/%s/environ" % name, "rb") as f:
                    if self.marker in f.read():
                        self.add([int(name)])
            except OSError:
                pass
        left = {}
        for pid, start in self.procs.items():
            st = stat(pid)
            if st is not None and st[4] == start and st[0] not in "ZX":
                left[pid] = st
                os.kill(pid, signal.SIGKILL)
        return left


class Watched:
    """Processes watched through pidfds: each is readable once its
    process ended (whoever its parent is)."""

    def __init__(self, pids):
        self.fds = {}
        for pid in pids:
            self.fds[os.pidfd_open(pid)] = pid
        self.ended = {}

    def wait(self, timeout, d=None, start=None):
        """Until every one ended, at most timeout s (scaled) from start:
        {pid: seconds from start to its end}; reads the daemon's log
        meanwhile while it runs."""
        start = start or time.monotonic()
        deadline = start + timeout * SCALE
        while len(self.ended) < len(self.fds):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            fds = [fd for fd, pid in self.fds.items()
                   if pid not in self.ended]
            live = d is not None and d.proc.poll() is None
            r, _, _ = select.select(
                fds + ([d.proc.stderr] if live else []), [], [], left)
            now = time.monotonic()
            for fd in r:
                if fd in self.fds:
                    self.ended[self.fds[fd]] = now - start
            if live and d.proc.stderr in r:
                try:
                    d.read_lines(0)
                except Failure:
                    pass        # it exited (a stop): read to the end
        left = {pid: stat(pid) for pid in self.fds.values()
                if pid not in self.ended}
        check(not left, "still running %.1f s after: %s" % (
            timeout * SCALE, left))
        return self.ended

    def close(self):
        for fd in self.fds:
            os.close(fd)
        self.fds = {}


def ctl(d, *args):
    p = subprocess.run([NETCLUSTERCTL, "-s", d.control] + list(args),
                       capture_output=True, text=True, timeout=60 * SCALE)
    check(p.returncode == 0, "netclusterctl %s: %d %s" % (
        " ".join(args), p.returncode, p.stderr))
    return p.stdout


def online_pids(d):
    return {w["pid"] for w in d.ctl("workers")["workers"]
            if w["state"] == "online"}


def wait_trees(d, n, complete, seen, exclude=(), timeout=30):
    """Until n workers are online, none in exclude, and complete(pid)
    says each one's tree is up (its processes then): {pid: tree}, each
    added to seen, and each in its worker's process group."""
    deadline = time.monotonic() + timeout * SCALE
    while True:
        pids = online_pids(d) - set(exclude)
        trees = {p: complete(p) for p in pids}
        if len(pids) == n and all(trees.values()):
            for pid, members in trees.items():
                seen.add(members)
            for pid, members in trees.items():
                check_group(pid, members, "the tree of worker %d" % pid)
            return trees
        check(time.monotonic() < deadline, "trees not up: %s; log:\n%s" % (
            trees, "\n".join(d.lines[-20:])))
        d.read_lines(0.1)


def check_group(leader, members, what):
    """leader leads a process group, and each of members (its tree) is
    in it."""
    st = stat(leader)
    check(st is not None and st[2] == leader, "%s: pid %d in group %s" % (
        what, leader, st and st[2]))
    for pid in members - {leader}:
        st = stat(pid)
        check(st is not None and st[2] == leader, "%s: pid %d in group %s, "
              "not the worker's %d" % (what, pid, st and st[2], leader))
    check(leader in members and len(members) > 1, "%s: group %s" % (
        what, members))


def forker_tree(d):
    """complete() for trees_prog.py's forker: its child (from its log
    line) is alive and in its group."""
    def complete(pid):
        for l in d.lines:
            m = re.search(r"\[pid %d\]: trees_prog: pid %d child (\d+) "
                          r"serving" % (pid, pid), l)
            if m:
                members = tree(pid)
                if int(m.group(1)) in members:
                    return members
        return None
    return complete


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5 * SCALE)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def sigkill_one(d, trees, complete, seen, n, what):
    """SIGKILL to one worker: its whole tree ends at once, its slot gets
    a new one, the other trees stay. Returns the trees and a figure."""
    victim = min(trees)
    w = Watched(trees[victim])
    try:
        start = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        ended = w.wait(AT_ONCE_S, d, start)
    finally:
        w.close()
    deadline = time.monotonic() + 10 * SCALE
    while not any("[pid %d] (slot" % victim in l and "killed by signal 9"
                  in l for l in d.lines):
        check(time.monotonic() < deadline, "%d's end not logged" % victim)
        d.read_lines(0.1)
    after = wait_trees(d, n, complete, seen, exclude=[victim])
    for pid, members in trees.items():
        if pid != victim:
            check(after.get(pid) == members, "%s: tree %d changed: %s" % (
                what, pid, after.get(pid)))
    return after, "SIGKILL to %d: its %d processes gone in %.0f ms" % (
        victim, len(ended), 1000 * max(ended.values()))


def reload_all(d, trees, complete, seen, n, stubborn=None):
    """A reload: every old tree ends within shutdown_timeout_ms of the
    answer (killed at it, with stubborn programs), the new ones come."""
    w = Watched(set().union(*trees.values()))
    mark = len(d.lines)
    try:
        if stubborn:
            open(stubborn, "w").close()
        ctl(d, "reload")
        ended = w.wait((SHUTDOWN_MS + 1000) / 1000, d)
    finally:
        w.close()
        if stubborn:
            os.unlink(stubborn)
    if stubborn:
        for pid in trees:
            d.wait_log("[pid %d]: still running after %d ms; killing it" % (
                pid, SHUTDOWN_MS))
    after = wait_trees(d, n, complete, seen, exclude=trees)
    return after, "reload%s: %d old processes gone in %.0f ms" % (
        " (programs ignore SIGTERM)" if stubborn else "", len(ended),
        1000 * max(ended.values()))


def stop_all(d, trees, port):
    """netclusterctl stop: every tree ends, the master exits 0, the port
    refuses (nothing holds the socket)."""
    w = Watched(set().union(*trees.values()))
    try:
        start = time.monotonic()
        ctl(d, "stop")
        ended = w.wait((SHUTDOWN_MS + 1000) / 1000, d, start)
    finally:
        w.close()
    try:
        d.proc.wait(10 * SCALE)
    except subprocess.TimeoutExpired:
        check(False, "netclusterd still running after stop")
    d.read_to_end()
    check(d.proc.returncode == 0 and any(l.endswith("notice: stopped")
                                         for l in d.lines),
          "netclusterd exited %s; log:\n%s" % (d.proc.returncode,
                                             "\n".join(d.lines[-10:])))
    check(refused(port), "port %d still takes connections" % port)
    return "stop: %d processes gone in %.0f ms, exit 0, port refuses" % (
        len(ended), 1000 * max(ended.values()))


def program(name, command, tmp, **kw):
    s = {"name": name, "handler": "program", "sockets": "inherit",
         "listen": ["127.0.0.1:0"], "mode": "shared", "workers": 2,
         "command": command, "cwd": tmp}
    s.update(kw)
    return s


def test_forked_child():
    """a. A program's child: in its group, gone with it."""
    tmp = tempfile.mkdtemp(prefix="nc-trees.")
    stubborn = os.path.join(tmp, "stubborn")
    d = Daemon([program("fork", [PYTHON, PROG], tmp, settle_ms=200,
                        env={"TREES_MODE": "forker",
                             "TREES_STUBBORN": stubborn})],
               extra={"shutdown_timeout_ms": SHUTDOWN_MS})
    seen = Seen(tmp)
    try:
        d.wait_online()
        port = d.port()
        complete = forker_tree(d)
        trees = wait_trees(d, 2, complete, seen)
        for pid, members in trees.items():
            check(len(members) == 2, "tree of %d: %s" % (pid, members))
        check(echo_once(port) == "made", "no echo")
        figures = []
        trees, f = sigkill_one(d, trees, complete, seen, 2, "fork")
        figures.append(f)
        trees, f = reload_all(d, trees, complete, seen, 2)
        figures.append(f)
        trees, f = reload_all(d, trees, complete, seen, 2, stubborn)
        figures.append(f)
        check(echo_once(port) == "made", "no echo")
        figures.append(stop_all(d, trees, port))
        for f in figures:
            print("  " + f)
    finally:
        d.stop()
        left = seen.kill_left()
        shutil.rmtree(tmp, ignore_errors=True)
    check(not left, "left running (killed now): %s" % left)


def http_get(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10 * SCALE)
    try:
        c.request("GET", "/")
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def gunicorn_tree(d):
    """complete() for gunicorn: its 2 workers booted (by its log) and
    alive in its group."""
    def complete(pid):
        booted = set()
        for l in d.lines:
            m = re.search(r"\[pid %d\]: .*Booting worker with pid: (\d+)" %
                          pid, l)
            if m:
                booted.add(int(m.group(1)))
        members = tree(pid)
        return members if len(members) == 3 and members - {pid} <= booted \
            else None
    return complete


def check_http(port, trees, n=6):
    """n requests answered 200 by gunicorn workers of the trees."""
    workers = set().union(*trees.values()) - set(trees)
    for _ in range(n):
        status, body = http_get(port)
        m = re.match(rb"trees_app pid (\d+)\n$", body)
        check(status == 200 and m and int(m.group(1)) in workers,
              "answered %d %r; workers %s" % (status, body, workers))


def test_gunicorn():
    """b. gunicorn's workers go with their master."""
    check(os.access(GUNICORN, os.X_OK), "no %s: scripts/deps installs it"
          % GUNICORN)
    tmp = tempfile.mkdtemp(prefix="nc-trees.")
    with open(os.path.join(tmp, "trees_app.py"), "w") as f:
        f.write(APP)
    # gunicorn takes the socket from LISTEN_FDS, as from systemd; with
    # "--bind fd://3" too it would take fd 3 twice (it closes it after
    # the first and exits 1 on the second).
    d = Daemon([program("gunicorn", [
        GUNICORN, "-w", "2", "--chdir", tmp, "trees_app:app"], tmp,
        env={"PYTHONPATH": tmp})],
        extra={"shutdown_timeout_ms": SHUTDOWN_MS})
    seen = Seen(tmp)
    try:
        d.wait_online()
        port = d.port()
        complete = gunicorn_tree(d)
        trees = wait_trees(d, 2, complete, seen)
        check_http(port, trees)
        figures = []
        trees, f = sigkill_one(d, trees, complete, seen, 2, "gunicorn")
        figures.append(f)
        check_http(port, trees)
        trees, f = reload_all(d, trees, complete, seen, 2)
        figures.append(f)
        check_http(port, trees)
        figures.append(stop_all(d, trees, port))
        for f in figures:
            print("  " + f)
    finally:
        d.stop()
        left = seen.kill_left()
        shutil.rmtree(tmp, ignore_errors=True)
    check(not left, "left running (killed now): %s" % left)


class Pid1:
    """netclusterd as PID 1 of a PID namespace of its own (and a mount
    namespace with its /proc), through unshare; pid is its pid here."""

    def __init__(self, tmp, services):
        wrapper = os.path.join(tmp, "pid1.sh")
        with open(wrapper, "w") as f:
            # --kill-child: if unshare is killed, so is netclusterd.
            f.write('#!/bin/sh\nexec unshare --pid --fork --kill-child '
                    '--mount-proc %s "$@"\n' % NETCLUSTERD)
        os.chmod(wrapper, 0o755)
        self.pid = None
        self.d = Daemon(services, workers=1, binary=wrapper,
                        extra={"shutdown_timeout_ms": SHUTDOWN_MS})
        try:
            self.d.wait_log("notice: netclusterd ")
            kids = []
            for tid in os.listdir("/proc/%d/task" % self.d.proc.pid):
                with open("/proc/%d/task/%s/children" % (self.d.proc.pid,
                                                         tid)) as f:
                    kids += [int(x) for x in f.read().split()]
            check(len(kids) == 1, "unshare's children: %s" % kids)
            self.pid = kids[0]
            check(nspid(self.pid) == [self.pid, 1], "netclusterd's NSpid: "
                  "%s" % nspid(self.pid))
            self.ns = os.readlink("/proc/%d/ns/pid" % self.pid)
        except BaseException:
            self.close()
            raise

    def procs(self):
        """Every process of the namespace here: {pid: stat}."""
        out = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if os.readlink("/proc/%s/ns/pid" % name) != self.ns:
                    continue
            except OSError:
                continue
            st = stat(int(name))
            if st is not None:
                out[int(name)] = st
        return out

    def sigterm(self):
        """SIGTERM from outside: netclusterd exits 0 (as unshare then
        does), having logged "stopped"."""
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.d.proc.wait(10 * SCALE)
        except subprocess.TimeoutExpired:
            check(False, "netclusterd still running after SIGTERM")
        self.d.read_to_end()
        check(self.d.proc.returncode == 0 and any(
            l.endswith("notice: stopped") for l in self.d.lines) and any(
            "SIGTERM: stopping" in l for l in self.d.lines),
            "exit %s; log:\n%s" % (self.d.proc.returncode,
                                   "\n".join(self.d.lines[-10:])))

    def close(self):
        if self.d.proc.poll() is None and self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.d.proc.wait(10 * SCALE)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.d.stop()


def nspid(pid):
    with open("/proc/%d/status" % pid) as f:
        for l in f:
            if l.startswith("NSpid:"):
                return [int(x) for x in l.split()[1:]]
    return []


def test_pid1_orphans():
    """c. As PID 1, orphans are reaped and are not workers."""
    check(os.geteuid() == 0, "a PID namespace of its own needs root")
    tmp = tempfile.mkdtemp(prefix="nc-trees.")
    path = os.path.join(tmp, "orphans.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(16)
    srv.settimeout(30 * SCALE)
    n = 5
    conns = []
    p1 = None
    try:
        p1 = Pid1(tmp, [program("orphans", [PYTHON, PROG], tmp, workers=1,
                                settle_ms=200, env={
                                    "TREES_MODE": "orphans",
                                    "TREES_ORPHANS": str(n),
                                    "TREES_ORPHAN_SOCKET": path})])
        d = p1.d
        d.wait_online()
        # The orphans, by their pid inside and (SO_PEERCRED) here.
        orphans = {}
        for _ in range(n):
            c, _ = srv.accept()
            c.settimeout(10 * SCALE)
            conns.append(c)
            got = b""
            while not got.endswith(b"\n"):
                x = c.recv(64)
                check(x, "an orphan closed after %r" % got)
                got += x
            inside = int(re.match(rb"orphan (\d+)\n$", got).group(1))
            here = struct.unpack("3i", c.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED,
                struct.calcsize("3i")))[0]
            check(nspid(here) == [here, inside], "NSpid of %d: %s" % (
                here, nspid(here)))
            orphans[here] = inside
        worker = d.worker_pids()
        check(len(worker) == 1, "workers %s" % worker)
        d.wait_log("trees_prog: pid %d child " % worker[0])
        # Their parent exited: each is netclusterd's now, in a session
        # of its own.
        for here, inside in orphans.items():
            st = stat(here)
            check(st is not None and st[1] == p1.pid and st[3] == here,
                  "orphan %d (%d inside): %s, netclusterd %d" % (
                      here, inside, st, p1.pid))
        before = (d.ctl("workers")["workers"], d.ctl("status")["alive"])
        mark = len(d.lines)
        w = Watched(orphans)
        try:
            start = time.monotonic()
            for c in conns:
                c.close()
            w.wait(10, d, start)
        finally:
            w.close()
        # Reaped: no zombie of theirs, none in the namespace.
        deadline = time.monotonic() + 10 * SCALE
        while any(stat(p) is not None for p in orphans):
            check(time.monotonic() < deadline, "not reaped: %s" % {
                p: stat(p) for p in orphans})
            d.read_lines(0.02)
        reaped = time.monotonic() - start
        zombies = {p: s for p, s in p1.procs().items() if s[0] in "ZX"}
        check(not zombies, "zombies in the namespace: %s" % zombies)
        d.read_lines(0.3)
        after = (d.ctl("workers")["workers"], d.ctl("status")["alive"])
        check([(w["pid"], w["id"], w["state"]) for w in after[0]] ==
              [(w["pid"], w["id"], w["state"]) for w in before[0]] and
              after[1] == before[1], "workers before %s, after %s" % (
                  before, after))
        said = [l for l in d.lines[mark:] if any(
            "[pid %d]" % p in l or "pid %d " % p in l
            for p in orphans.values()) or "protocol error" in l or
            "status 3" in l or "restarting" in l or "killing" in l]
        check(not said, "the master took note of the orphans: %s" % said)
        check(echo_once(d.port()) == "made", "no echo")
        p1.sigterm()
        print("  %d orphans of a program, reparented to netclusterd (PID 1)"
              ", exited 3 and reaped within %.0f ms; SIGTERM: exit 0" % (
                  n, 1000 * reaped))
    finally:
        for c in conns:
            c.close()
        srv.close()
        if p1 is not None:
            p1.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_pid1_workers():
    """c. As PID 1, netcluster-worker serves as anywhere: its workers come
    online and stay, and answer."""
    check(os.geteuid() == 0, "a PID namespace of its own needs root")
    tmp = tempfile.mkdtemp(prefix="nc-trees.")
    p1 = None
    try:
        p1 = Pid1(tmp, [{"name": "echo", "listen": ["127.0.0.1:0"],
                         "workers": 2}])
        d = p1.d
        try:
            d.wait_online(timeout=15)
        except Exception:
            ends = [l for l in d.lines if "exited" in l or "killed" in l]
            check(False, "netcluster-worker under a PID 1 master: not "
                  "online; %s" % "\n".join(ends[:4]))
        port = d.port()
        for _ in range(20):
            check(echo_once(port) == "made", "no echo")
        check(not any("restarting" in l for l in d.lines),
              "a worker restarted")
        p1.sigterm()
    finally:
        if p1 is not None:
            p1.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run([test_forked_child, test_gunicorn, test_pid1_orphans,
         test_pid1_workers])
